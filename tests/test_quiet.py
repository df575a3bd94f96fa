"""What reaches the user's terminal: no line of TensorFlow's runtime without --verbose, and under --quiet one
line for the rows left out of a messy file. Real commands in subprocesses."""

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REFERENCE_ROW, cli_env, run_cli, write_csv

TAXIFARE_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR) |taxifare: )")
ONEDNN_NOTICE = "oneDNN custom operations are on"
BAD_DATE_ROW = "k9,6.5,not a date,-73.97,40.76,-73.98,40.75,1"


def env_of(home):
    # oneDNN forced on: TensorFlow's runtime writes its notice as it loads, on any CPU (on some it does anyway).
    env = cli_env(home, TF_ENABLE_ONEDNN_OPTS="1")
    env.pop("TF_CPP_MIN_LOG_LEVEL")  # as cron runs it: the CLI alone must keep TensorFlow quiet
    return env


def only_taxifare_lines(stderr: str) -> bool:
    return all(TAXIFARE_LINE.match(line) for line in stderr.splitlines())


@dataclass
class Home:
    """A folder with a trained run, and what the train command that made it printed."""

    path: Path
    train: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Home:
    home = tmp_path_factory.mktemp("quiet")
    assert run_cli(home, "demo-data", "--rows", "2000", env=env_of(home)).returncode == 0
    quiet = run_cli(home, "--quiet", "preprocess", env=env_of(home))
    assert quiet.returncode == 0 and quiet.stdout and quiet.stderr == ""
    train = run_cli(home, "train", "--epochs", "1", "--members", "1", "--chunk-size", "1000", env=env_of(home))
    assert train.returncode == 0, train.stderr[-2000:]
    return Home(home, train)


@pytest.fixture
def home(trained) -> Path:
    return trained.path


def test_train_and_pred_print_no_line_of_tensorflow_absl_or_onednn_unless_verbose(trained, home):
    assert trained.train.stderr and only_taxifare_lines(trained.train.stderr), trained.train.stderr
    quiet = run_cli(home, "--quiet", "pred", env=env_of(home))
    assert quiet.returncode == 0 and quiet.stdout, quiet.stderr
    assert only_taxifare_lines(quiet.stderr) and ONEDNN_NOTICE not in quiet.stderr, quiet.stderr
    verbose = run_cli(home, "--verbose", "pred", env=env_of(home))
    assert verbose.returncode == 0 and verbose.stdout == quiet.stdout
    assert ONEDNN_NOTICE in verbose.stderr  # what the runtime wrote, which the other runs kept from the user


def test_an_error_while_tensorflow_loads_is_still_shown(home):
    # train loads TensorFlow in another thread while it opens the data, which fails at once here.
    done = run_cli(home, "train", "--data-size", "absent", env=env_of(home))
    assert done.returncode == 2
    assert done.stderr.startswith("taxifare: error: no processed data at ") and only_taxifare_lines(done.stderr), done.stderr


def test_bad_rows_are_one_warning_each_up_to_twenty_and_one_line_in_all_under_quiet(home):
    rides = write_csv(home / "messy.csv", [REFERENCE_ROW, *[BAD_DATE_ROW] * 25])
    default = run_cli(home, "pred", "--input", str(rides), "--output", str(home / "out.csv"), env=env_of(home))
    assert default.returncode == 0 and only_taxifare_lines(default.stderr), default.stderr
    assert len(re.findall(r"WARNING line \d+: not predicted: pickup_datetime", default.stderr)) == 20
    assert "... and 5 more lines not predicted" in default.stderr
    for command, verb in (("pred", "predicted"), ("evaluate", "scored")):
        output = ["--output", str(home / "out.csv")] if command == "pred" else ["--plot", str(home / "plot.png")]
        quiet = run_cli(home, "--quiet", command, "--input", str(rides), *output, env=env_of(home))
        assert quiet.returncode == 0, quiet.stderr
        rows_left_out = [line for line in quiet.stderr.splitlines() if f"not {verb}" in line]
        assert len(rows_left_out) == 1 and only_taxifare_lines(quiet.stderr), quiet.stderr
        assert rows_left_out[0].endswith(f" WARNING 25 lines not {verb}: bad_datetime 25 (first on line 3: pickup_datetime=not a date)")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/mem, which fails with an I/O error on Linux")
def test_a_file_that_cannot_be_read_is_named_with_the_read_that_failed(home):
    done = run_cli(home, "pred", "--input", "/proc/self/mem", env=env_of(home))
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == "taxifare: error: could not read the rides from /proc/self/mem: Input/output error"
