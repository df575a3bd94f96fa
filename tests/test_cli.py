import io
import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from taxifare.core.progress import Progress
from tests.conftest import REFERENCE_ROW, assert_clean_error, cli_env, run_cli, write_csv

# The command's exit status, then the heavy libraries it imported.
IMPORTS_AFTER = """
import sys
from taxifare.cli import main
try:
    main({args!r})
    status = 0
except SystemExit as stop:
    status = stop.code or 0
print(status, sorted(name for name in ("tensorflow", "keras", "pandas", "pyarrow", "google.cloud.bigquery", "dask", "distributed", "fsspec") if name in sys.modules))
"""


def modules_imported_by(tmp_path, *args, prelude: str = "", status: int = 0):
    """The heavy libraries that `taxifare ARGS` imported, once it exited with `status`."""
    done = subprocess.run(
        [sys.executable, "-c", prelude + IMPORTS_AFTER.format(args=list(args))],
        cwd=tmp_path, env=cli_env(tmp_path), capture_output=True, text=True,
    )
    exited, modules = done.stdout.strip().splitlines()[-1].split(" ", 1)
    assert int(exited) == status, done.stderr[-2000:]
    return modules


def test_help_imports_no_heavy_library(tmp_path):
    assert modules_imported_by(tmp_path, "--help") == "[]"
    assert modules_imported_by(tmp_path, "preprocess", "--help") == "[]"
    assert modules_imported_by(tmp_path, "--version") == "[]"


def test_version_is_the_package_version(tmp_path):
    done = run_cli(tmp_path, "--version")
    assert (done.returncode, done.stdout, done.stderr) == (0, f"taxifare {version('taxifare')}\n", "")


def test_preprocess_without_dask_says_how_to_install_it(tmp_path):
    raw = write_csv(tmp_path / "raw.csv", [REFERENCE_ROW])
    args = ["preprocess", "--input", str(raw), "--scheduler", "tcp://127.0.0.1:8786"]
    done = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['distributed'] = None\n" + IMPORTS_AFTER.format(args=args)],
        cwd=tmp_path, env=cli_env(tmp_path), capture_output=True, text=True,
    )
    assert done.stdout.startswith("2 ")
    assert done.stderr.splitlines() == [
        "taxifare: error: --scheduler and --workers need Dask, an optional extra: pip install 'taxifare[dask]'"
    ]


def test_preprocess_imports_neither_tensorflow_nor_pandas(tmp_path):
    """pandas' import alone costs as much as cleaning 300,000 rides: preprocess does without it, also when it
    samples rejected rows."""
    dirty = ["x,abc,2013-07-06 17:18:00 UTC,-73.95,40.78,-73.98,40.76,1", "y,5,someday,-73.95,40.78,-73.98,40.76,1",
             "z,5,2013-07-06 17:18:00 UTC,0,0,0,0,1", "w,5,2013-07-06 17:18:00 UTC,-73.95,40.78,-73.98,40.76,9", "v,5,2013"]
    raw = write_csv(tmp_path / "raw.csv", [REFERENCE_ROW, *dirty, REFERENCE_ROW])
    assert modules_imported_by(tmp_path, "preprocess", "--input", str(raw)) == "['pyarrow']"
    manifest = json.loads(next((tmp_path / "data" / "processed").glob("*.json")).read_text())
    assert set(manifest["rejected_samples"]) == {"unparseable_number", "bad_datetime", "zero_coordinates", "passenger_count_out_of_range",
                                                 "malformed_line", "duplicate"}


def test_help_documents_every_option_and_its_environment_variable(tmp_path):
    done = run_cli(tmp_path, "preprocess", "--help", env={**cli_env(tmp_path), "COLUMNS": "200"})
    assert done.returncode == 0
    for option, variable in [("--min-date", "MIN_DATE"), ("--max-date", "MAX_DATE"), ("--data-size", "DATA_SIZE"),
                             ("--chunk-size", "CHUNK_SIZE"), ("--gcp-project", "GCP_PROJECT"),
                             ("--gcp-project-data", "GCP_PROJECT_DATA"), ("--bq-dataset", "BQ_DATASET"),
                             ("--bq-deadline", "BQ_DEADLINE"), ("--bigquery-emulator-host", "BIGQUERY_EMULATOR_HOST")]:
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


def _drawn_lines(monkeypatch, columns: int, note: str) -> list[str]:
    """What a bar of 250 rows of 1,000 draws on a terminal of `columns`, redraw by redraw."""
    monkeypatch.setenv("COLUMNS", str(columns))
    screen = FakeTerminal()
    progress = Progress("preprocess", total=1000, stream=screen)
    progress.advance(250, note=note)
    progress.close()
    return [line.removeprefix("\033[K").rstrip("\n") for line in screen.getvalue().split("\r") if line]


def test_progress_draws_a_bar_with_rate_and_eta_on_a_terminal(monkeypatch):
    last = _drawn_lines(monkeypatch, 200, note="kept 200")[-1]
    assert last.startswith("[######") and "250 rows of ~1,000 (25%)" in last
    assert "rows/s" in last and "ETA" in last and "kept 200" in last


def test_progress_fits_the_terminal_width(monkeypatch):
    drawn = _drawn_lines(monkeypatch, 40, note="kept 200 of 250 rows read, 50 rejected")
    assert drawn and all(len(line) == 39 and line.startswith("preprocess: 250 rows") for line in drawn), drawn


def test_progress_of_a_resumed_run_starts_where_the_first_run_stopped(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    screen = FakeTerminal()
    progress = Progress("preprocess", total=1000, stream=screen, done=600)
    progress.advance(0, note="re-reading")
    assert "600 rows of ~1,000 (60%)" in screen.getvalue() and "re-reading" in screen.getvalue()
    progress.started -= 10  # ten seconds on, 100 more rows: 10 rows/s, not the 70 of 700 rows in 10 s
    progress.advance(100)
    progress.close()
    last = screen.getvalue().split("\r")[-1]
    assert "700 rows of ~1,000 (70%), 10 rows/s, ETA 0:30" in last


def test_progress_logs_plain_lines_when_not_a_terminal(caplog):
    plain = io.StringIO()
    progress = Progress("train", total=None, unit="rows", stream=plain)
    with caplog.at_level("INFO", logger="taxifare"):
        progress.advance(10)
    assert plain.getvalue() == ""
    assert caplog.records and "train: 10 rows" in caplog.records[0].getMessage()


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
    done = run_cli(tmp_path, "train", "--epochs", "1", "--members", "1", env=cli_env(tmp_path, LOCAL_REGISTRY_PATH=str(registry)))
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


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/mem, which fails with an I/O error on Linux")
def test_a_file_that_cannot_be_read_is_named_with_the_read_that_failed(tmp_path):
    done = run_cli(tmp_path, "preprocess", "--input", "/proc/self/mem")
    assert_clean_error(done, 1, "could not read the raw rides from /proc/self/mem: Input/output error")


def test_an_input_without_rows_exits_2_and_does_not_suggest_training_on_it(tmp_path):
    done = run_cli(tmp_path, "preprocess", "--input", str(write_csv(tmp_path / "raw.csv", [])))
    assert_clean_error(done, 2, "preprocess read no rows from CSV")
    assert "preprocess kept no row" in done.stderr and "train on it" not in done.stderr and "taxifare train" not in done.stderr


def test_a_long_rejected_value_is_cut_with_an_ellipsis(tmp_path):
    long_line = "k1,7.5," + "x" * 200
    raw = write_csv(tmp_path / "raw.csv", [REFERENCE_ROW, long_line, REFERENCE_ROW.replace("k0,7.5", "k2,-" + "9" * 100)])
    done = run_cli(tmp_path, "preprocess", "--input", str(raw))
    assert done.returncode == 0, done.stderr
    samples = json.loads(Path(done.stdout.strip()).with_suffix(".json").read_text())["rejected_samples"]
    assert samples["malformed_line"]["value"] == long_line[:77] + "..."
    assert samples["fare_out_of_range"]["value"] == "fare_amount=-" + "9" * 64 + "..."
