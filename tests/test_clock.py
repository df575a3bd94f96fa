"""One clock, the New York wall clock: the same rides written the ways the public data and users write them
give the same processed rows and the same fares, and outputs made on the old clock are refused."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
import re
import shutil
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from taxifare.core.config import load_settings
from taxifare.core.errors import InputError
from taxifare.preprocessing.run import preprocess
from taxifare.preprocessing.sink import manifest_path
from taxifare.rides.features import PREPROCESSOR_VERSION
from taxifare.serving.predict import REFERENCE_RIDE, predict_ride
from taxifare.training.loop import train
from tests.conftest import RAW_HEADER, assert_clean_error, cli_env, run_cli
from tests.training_data import processed_demo, trained_demo, with_registry

NEW_YORK = ZoneInfo("America/New_York")
UTC = dt.timezone.utc
_LABELLED = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) UTC$")
# Rides at the clock changes of 2013: 02:30 on 10 March never showed on a New York clock; 01:30 on
# 3 November showed twice, first at -04:00 (05:30 UTC), then at -05:00 (06:30 UTC).
_CLOCK_CHANGE_RIDES = [
    ("dst-1", "2013-03-10 01:59:59", "2013-03-10T01:59:59-05:00"),
    ("dst-2", "2013-03-10 03:00:00", "2013-03-10T07:00:00Z"),
    ("dst-3", "2013-11-03 01:30:00", "2013-11-03T01:30:00-04:00"),
    ("dst-4", "2013-11-03 01:30:00", "2013-11-03T06:30:00Z"),
    ("dst-5", "2013-11-03 02:00:00", "2013-11-03T02:00:00-05:00"),
    ("dst-6", "2013-12-31 23:59:59", "2014-01-01T04:59:59Z"),
]


def _instant(wall_clock: str, row: int) -> str | None:
    """The instant of a New York wall-clock time, as an offset (even rows) or in UTC with Z (odd rows);
    None for a time the clocks skipped, which no instant shows."""
    local = dt.datetime.fromisoformat(wall_clock).replace(tzinfo=NEW_YORK)
    if local.astimezone(UTC).astimezone(NEW_YORK).replace(tzinfo=None) != local.replace(tzinfo=None):
        return None
    return local.isoformat() if row % 2 == 0 else f"{local.astimezone(UTC):%Y-%m-%dT%H:%M:%S}Z"


def spellings(raw: Path, folder: Path) -> dict[str, Path]:
    """The rides of a Kaggle-style file (" UTC" on New York wall-clock times), and the clock-change rides,
    written four ways: naive (TLC style), " UTC" (Kaggle style), instants with offsets or Z, and instants
    labelled " UTC" (a source whose UTC is real). Lines that are not rides are kept as they are; rides
    whose time no instant shows are left out of every file."""
    rows = {name: [] for name in ("naive", "kaggle", "instants", "utc_instants")}
    lines = raw.read_text().splitlines()
    assert lines[0] == RAW_HEADER  # the clock-change rides below are written in its order
    header = lines[0].split(",")
    column = header.index("pickup_datetime")
    for number, line in enumerate(lines[1:]):
        fields = next(csv.reader([line]))
        labelled = _LABELLED.match(fields[column]) if len(fields) == len(header) else None
        try:
            instant = labelled and _instant(labelled[1], number)
        except ValueError:  # not a real date: a dirty row, the same in every file
            labelled = instant = None
        if labelled and instant is None:
            continue
        for name, text in _four_ways(fields[column], labelled and labelled[1], instant).items():
            rows[name].append(_with(fields, column, text) if labelled else line)
    for key, wall_clock, instant in _CLOCK_CHANGE_RIDES:
        fare = 10 + len(rows["naive"]) % 7
        for name, text in _four_ways(f"{wall_clock} UTC", wall_clock, instant).items():
            rows[name].append(f"{key},{fare},{text},-73.95,40.78,-73.98,40.76,1")
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in rows.items():
        (folder / f"{name}.csv").write_text("\n".join([RAW_HEADER, *body]) + "\n")
    return {name: folder / f"{name}.csv" for name in rows}


def _four_ways(kaggle: str, wall_clock: str | None, instant: str | None) -> dict[str, str]:
    if wall_clock is None:
        return dict.fromkeys(("naive", "kaggle", "instants", "utc_instants"), kaggle)
    as_utc = dt.datetime.fromisoformat(instant.replace("Z", "+00:00")).astimezone(UTC)
    return {"naive": wall_clock, "kaggle": kaggle, "instants": instant, "utc_instants": f"{as_utc:%Y-%m-%d %H:%M:%S} UTC"}


def _with(fields: list[str], column: int, text: str) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow([*fields[:column], text, *fields[column + 1 :]])
    return out.getvalue()


def _preprocessed(folder: Path, raw: Path, **flags):
    settings = load_settings({"local_data_path": str(folder), "data_size": raw.stem, "chunk_size": 3000, **flags}, environ={}, dotenv_path=None)
    return preprocess(settings, input_path=raw)


def test_the_same_rides_written_four_ways_give_the_same_processed_rows(tmp_path, rides_10k):
    files = spellings(rides_10k, tmp_path / "raw")
    data = tmp_path / "data"
    results = {name: _preprocessed(data, path, utc_label="instant" if name == "utc_instants" else "wall-clock") for name, path in files.items()}
    kaggle = results["kaggle"]
    assert kaggle.manifest["rows_kept"] > 5000
    for name, result in results.items():
        assert result.output.read_bytes() == kaggle.output.read_bytes(), name
        assert result.manifest["rejected"] == kaggle.manifest["rejected"], name
    # The label matters: instants read as wall-clock times are other rides, 4 or 5 hours off; an output
    # made with the other reading is not taken for this one's.
    with pytest.raises(InputError, match="was made with utc_label instant; this run has utc_label wall-clock; pass --force"):
        _preprocessed(data, files["utc_instants"])
    misread = _preprocessed(data, files["utc_instants"], data_size="misread")
    assert misread.output.read_bytes() != kaggle.output.read_bytes()


def test_the_dask_engine_reads_the_clock_setting_and_refuses_an_output_of_the_old_clock(tmp_path, synthetic_10k):
    files = spellings(synthetic_10k, tmp_path / "raw")
    local = _preprocessed(tmp_path / "local", files["kaggle"])
    command = ["--local-data-path", str(tmp_path / "data"), "preprocess", "--input", str(files["utc_instants"]),
               "--data-size", "kaggle", "--chunk-size", "3000", "--workers", "1"]
    first = run_cli(tmp_path, *command, "--utc-label", "instant")
    assert first.returncode == 0, first.stderr[-2000:]
    processed = Path(first.stdout.strip())
    assert processed.read_bytes() == local.output.read_bytes()

    manifest = json.loads(manifest_path(processed).read_text())
    manifest_path(processed).write_text(json.dumps({**manifest, "preprocessor_version": PREPROCESSOR_VERSION - 1}))
    old = run_cli(tmp_path, *command, env=cli_env(tmp_path, UTC_LABEL="instant"))
    assert_clean_error(old, 2, f"was made with preprocessor_version {PREPROCESSOR_VERSION - 1}", "pass --force to replace it")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return trained_demo(tmp_path_factory.mktemp("clock"), 2000, chunk_size=2000, epochs=2, learning_rate=0.005, batch_size=128, members=1)


def _fare(settings, pickup: str) -> float:
    return predict_ride(settings, {**REFERENCE_RIDE, "pickup_datetime": pickup})


def test_pred_prices_the_reference_ride_written_four_ways_alike(trained, tmp_path):
    spelt = ["2013-07-06 17:18:00", "2013-07-06 17:18:00 UTC", "2013-07-06T17:18:00-04:00", "2013-07-06T21:18:00Z",
             "2013-07-06 16:18:00 America/Chicago"]
    fares = [_fare(trained, text) for text in spelt]
    assert fares == [fares[0]] * len(spelt)
    assert _fare(dataclasses.replace(trained, utc_label="instant"), "2013-07-06 21:18:00 UTC") == fares[0]
    # Not because the hour goes unheard: 21:18 in New York is another fare.
    assert _fare(trained, "2013-07-06 21:18:00 UTC") != fares[0]

    env = cli_env(tmp_path, LOCAL_DATA_PATH=str(trained.local_data_path), LOCAL_REGISTRY_PATH=str(trained.local_registry_path))
    done = run_cli(tmp_path, "pred", "--utc-label", "instant", "--pickup-datetime", "2013-07-06 21:18:00 UTC", env=env)
    assert done.returncode == 0 and done.stdout.strip() == f"{fares[0]:.2f}", done.stderr[-2000:]


def test_a_processed_file_and_a_run_of_the_old_clock_are_refused_in_one_line(trained, tmp_path):
    """Version 2 read " UTC" as an instant: its processed files and runs say what to rerun."""
    old = 2
    settings = processed_demo(tmp_path / "own", rides=500)
    manifest = json.loads(manifest_path(settings.processed_path).read_text())
    manifest_path(settings.processed_path).write_text(json.dumps({**manifest, "preprocessor_version": old}))
    with pytest.raises(InputError, match=f"made by preprocessor version {old}.*rerun `taxifare preprocess --force`"):
        train(settings)
    with pytest.raises(InputError, match=f"was made with preprocessor_version {old}; .*pass --force"):
        preprocess(settings)

    registry = tmp_path / "registry"
    shutil.copytree(trained.local_registry_path, registry)
    run = next(path for path in registry.iterdir() if not path.name.startswith("."))
    params = json.loads((run / "params.json").read_text())
    (run / "params.json").write_text(json.dumps({**params, "preprocessor_version": old}))
    with pytest.raises(InputError, match=f"trained on preprocessor version {old}.*train a new run"):
        predict_ride(with_registry(trained, registry), REFERENCE_RIDE)
