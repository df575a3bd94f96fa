import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from taxifare.progress import Progress
from tests.conftest import RAW_HEADER, REFERENCE_ROW, assert_clean_error, cli_env, run_cli, write_csv

IMPORTS_AFTER = """
import sys
from taxifare.cli import main
try:
    main({args!r})
except SystemExit:
    pass
print(sorted(name for name in ("tensorflow", "keras", "pandas", "pyarrow", "google.cloud.bigquery", "dask", "distributed", "fsspec") if name in sys.modules))
"""


def modules_imported_by(tmp_path, *args):
    done = subprocess.run(
        [sys.executable, "-c", IMPORTS_AFTER.format(args=list(args))],
        cwd=tmp_path, env=cli_env(tmp_path), capture_output=True, text=True,
    )
    return done.stdout.strip().splitlines()[-1]


def test_help_imports_no_heavy_library(tmp_path):
    assert modules_imported_by(tmp_path, "--help") == "[]"
    assert modules_imported_by(tmp_path, "preprocess", "--help") == "[]"


def test_preprocess_without_dask_says_how_to_install_it(tmp_path):
    (tmp_path / "raw.csv").write_text(RAW_HEADER + "\n")
    program = "import sys; sys.modules['distributed'] = None\n" + IMPORTS_AFTER.format(
        args=["preprocess", "--input", str(tmp_path / "raw.csv"), "--scheduler", "tcp://127.0.0.1:8786"]
    )
    done = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, env=cli_env(tmp_path), capture_output=True, text=True)
    assert done.stderr.splitlines() == [
        "taxifare: error: --scheduler and --workers need Dask, an optional extra: pip install 'taxifare[dask]'"
    ]


def test_preprocess_never_imports_tensorflow(tmp_path):
    (tmp_path / "raw.csv").write_text(RAW_HEADER + "\n")
    assert modules_imported_by(tmp_path, "preprocess", "--input", str(tmp_path / "raw.csv")) == "['pandas', 'pyarrow']"


def test_help_documents_every_option_and_its_environment_variable(tmp_path):
    done = run_cli(tmp_path, "preprocess", "--help", env={**cli_env(tmp_path), "COLUMNS": "200"})
    assert done.returncode == 0
    for option, variable in [("--min-date", "MIN_DATE"), ("--max-date", "MAX_DATE"), ("--data-size", "DATA_SIZE"),
                             ("--chunk-size", "CHUNK_SIZE")]:
        assert option in done.stdout and variable in done.stdout
    assert "--input" in done.stdout and "--force" in done.stdout
    assert "--scheduler" in done.stdout and "DASK_SCHEDULER_ADDRESS" in done.stdout and "--workers" in done.stdout


def test_global_path_flags_come_before_environment_and_dotenv(tmp_path):
    (tmp_path / ".env").write_text(f"LOCAL_DATA_PATH={tmp_path / 'dotenv-data'}  # a comment, not part of the path\n")
    demo = ("demo-data", "--rows", "10")
    cache = "raw/query_2009-01-01_2015-01-01_demo.csv"
    without_environment = {key: value for key, value in cli_env(tmp_path).items() if key != "LOCAL_DATA_PATH"}
    assert run_cli(tmp_path, *demo, env=without_environment).stdout.strip() == str(tmp_path / "dotenv-data" / cache)
    assert run_cli(tmp_path, *demo).stdout.strip() == str(tmp_path / "data" / cache)
    flagged = run_cli(tmp_path, "--local-data-path", str(tmp_path / "flag-data"), *demo)
    assert flagged.stdout.strip() == str(tmp_path / "flag-data" / cache)
    registry = tmp_path / "flag-registry"
    assert_clean_error(run_cli(tmp_path, "--local-registry-path", str(registry), "pred"), 2, f"no trained model in {registry}")
    usage = run_cli(tmp_path, "--help", env={**cli_env(tmp_path), "COLUMNS": "200"}).stdout
    assert "--local-data-path" in usage and "LOCAL_DATA_PATH" in usage
    assert "--local-registry-path" in usage and "LOCAL_REGISTRY_PATH" in usage


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_draws_a_bar_with_rate_and_eta_on_a_terminal():
    screen = FakeTerminal()
    progress = Progress("preprocess", total=1000, stream=screen)
    progress.advance(250, note="kept 200")
    progress.close()
    last = screen.getvalue().split("\r")[-1]
    assert last.startswith("\033[K[######") and "250 rows of ~1,000 (25%)" in last
    assert "rows/s" in last and "ETA" in last and "kept 200" in last


def test_progress_logs_plain_lines_when_not_a_terminal(caplog):
    plain = io.StringIO()
    progress = Progress("train", total=None, unit="rows", stream=plain)
    with caplog.at_level("INFO", logger="taxifare"):
        progress.advance(10)
    assert plain.getvalue() == ""
    assert caplog.records and "train: 10 rows" in caplog.records[0].getMessage()


TAXIFARE_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR) ")


def test_train_and_pred_print_no_line_of_tensorflow_absl_or_onednn(tmp_path):
    env = cli_env(tmp_path)
    env.pop("TF_CPP_MIN_LOG_LEVEL")  # as cron runs it: the CLI alone must keep TensorFlow quiet
    assert run_cli(tmp_path, "demo-data", "--rows", "2000", env=env).returncode == 0
    quiet = run_cli(tmp_path, "--quiet", "preprocess", env=env)
    assert quiet.returncode == 0 and quiet.stdout and quiet.stderr == ""
    for args in (["train", "--epochs", "1", "--chunk-size", "1000"], ["pred"]):
        done = run_cli(tmp_path, *args, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stderr and all(TAXIFARE_LOG_LINE.match(line) for line in done.stderr.splitlines()), done.stderr


def test_a_data_path_under_a_file_is_one_line_naming_the_path_and_the_operation(tmp_path):
    (tmp_path / "file.txt").write_text("not a folder\n")
    data = tmp_path / "file.txt" / "data"
    raw = write_csv(tmp_path / "raw.csv", [REFERENCE_ROW])
    done = run_cli(tmp_path, "preprocess", "--input", str(raw), env=cli_env(tmp_path, LOCAL_DATA_PATH=str(data)))
    assert_clean_error(done, 1, f"could not write {data / 'processed'} (creating the processed file): Not a directory")
    registry = tmp_path / "file.txt" / "registry"
    done = run_cli(tmp_path, "demo-data", "--rows", "10", env=cli_env(tmp_path, LOCAL_DATA_PATH=str(data)))
    assert_clean_error(done, 1, f"could not write {data / 'raw'} (writing the demo rides): Not a directory")
    assert run_cli(tmp_path, "demo-data", "--rows", "500").returncode == 0
    assert run_cli(tmp_path, "preprocess").returncode == 0
    done = run_cli(tmp_path, "train", "--epochs", "1", env=cli_env(tmp_path, LOCAL_REGISTRY_PATH=str(registry)))
    assert_clean_error(done, 1, f"could not write {registry}", "(creating the training checkpoint for processed_", "Not a directory")


def test_a_read_only_data_path_is_one_line_naming_the_path_and_the_operation(tmp_path):
    # sysfs refuses new folders even to root, so this runs where a chmod-based test would be skipped.
    data = Path("/sys/taxifare-test/data")
    try:
        data.mkdir(parents=True)
    except PermissionError:
        pass
    except OSError as error:
        pytest.skip(f"no read-only /sys here ({error})")
    else:
        pytest.skip("this system lets /sys have new folders")
    done = run_cli(tmp_path, "demo-data", "--rows", "10", env=cli_env(tmp_path, LOCAL_DATA_PATH=str(data)))
    assert_clean_error(done, 1, "could not write /sys/taxifare-test (writing the demo rides): ", "not permitted")
    assert "internal error" not in done.stderr
