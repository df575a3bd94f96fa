"""`evaluate`: streamed figures checked against a direct computation on a small labelled file."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from taxifare.core.errors import InputError
from taxifare.model.network import predict_fares
from taxifare.model.saved import load_model
from taxifare.preprocessing.run import preprocess
from taxifare.registry.store import SAMPLE_FILE, Registry
from taxifare.rides.features import haversine_km, ride_features
from taxifare.serving.evaluate import evaluate, median_from_cents
from taxifare.training import splits
from taxifare.training.data import open_processed, prepare_rows, read_prepared_rows, span_rows
from taxifare.training.loop import train
from tests.conftest import assert_clean_error, cli_env, run_cli, write_csv
from tests.training_data import demo_settings, processed_demo, with_registry

BAD_ROWS = {
    "malformed_line": ["b1,7.5,2013-07-06 17:18:00 UTC,-73.95,40.78"],
    "missing_fare": ["b2,,2013-07-06 17:18:00 UTC,-73.95,40.78,-73.98,40.77,1"],
    "unparseable_fare": ["b3,seven,2013-07-06 17:18:00 UTC,-73.95,40.78,-73.98,40.77,1"],
    "fare_out_of_range": [
        "b4,-3,2013-07-06 17:18:00 UTC,-73.95,40.78,-73.98,40.77,1",
        "b5,450,2013-07-06 17:18:00 UTC,-73.95,40.78,-73.98,40.77,1",
    ],
    "missing_value": ["b6,7.5,2013-07-06 17:18:00 UTC,,40.78,-73.98,40.77,1"],
    "unparseable_number": ["b7,7.5,2013-07-06 17:18:00 UTC,-73.95,north,-73.98,40.77,1"],
    "bad_datetime": ["b8,7.5,2013-02-30 17:18:00 UTC,-73.95,40.78,-73.98,40.77,1"],
    "passenger_count_out_of_range": ["b9,7.5,2013-07-06 17:18:00 UTC,-73.95,40.78,-73.98,40.77,9"],
    "outside_nyc": ["b10,7.5,2013-07-06 17:18:00 UTC,-73.95,41.5,-73.98,40.77,1"],
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("evaluate")
    settings = with_registry(processed_demo(folder, rides=1500), folder / "registry")
    train(with_registry(settings, settings.local_registry_path, chunk_size=2000, epochs=2, learning_rate=0.01, batch_size=64, members=1))
    return with_registry(settings, settings.local_registry_path, chunk_size=7)


def _good_rides(count: int, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    seconds = rng.integers(0, 6 * 365 * 86400, count)
    rides = pd.DataFrame(
        {
            "key": [f"g{i}" for i in range(count)],
            "pickup_datetime": (np.datetime64("2009-01-01T00:00:00") + seconds.astype("timedelta64[s]")),
            "pickup_longitude": rng.uniform(-74.02, -73.78, count).round(6),
            "pickup_latitude": rng.uniform(40.62, 40.85, count).round(6),
            "dropoff_longitude": rng.uniform(-74.02, -73.78, count).round(6),
            "dropoff_latitude": rng.uniform(40.62, 40.85, count).round(6),
            "passenger_count": rng.integers(1, 7, count),
        }
    )
    km = haversine_km(rides.pickup_latitude, rides.pickup_longitude, rides.dropoff_latitude, rides.dropoff_longitude)
    rides.insert(1, "fare_amount", (2.5 + 1.6 * km + rng.normal(0, 2, count)).clip(2.6, 390).round(2))
    return rides


def _write_rides(path, good: pd.DataFrame) -> None:
    lines = [
        f"{r.key},{r.fare_amount},{r.pickup_datetime:%Y-%m-%d %H:%M:%S} UTC,{r.pickup_longitude},{r.pickup_latitude},"
        f"{r.dropoff_longitude},{r.dropoff_latitude},{r.passenger_count}"
        for r in good.itertuples()
    ]
    for bad in BAD_ROWS.values():
        lines[3:3] = bad  # among the good rows, not after them
    write_csv(path, lines)


def _expected(settings, good: pd.DataFrame) -> dict:
    """The figures computed directly, with pandas, on the whole table at once."""
    run = Registry(settings.local_registry_path).latest()
    rides = good  # New York wall-clock pickups, written with " UTC" as the public data writes them
    predicted = predict_fares(load_model(run.model_path), pd.DataFrame(ride_features(rides)).to_numpy(np.float32))
    errors = predicted - good.fare_amount.to_numpy()
    mean_fare = run.metrics["final"]["train_mean_fare"]
    km = haversine_km(good.pickup_latitude, good.pickup_longitude, good.dropoff_latitude, good.dropoff_longitude)
    frame = pd.DataFrame(
        {
            "error": np.abs(errors),
            "year": rides.pickup_datetime.dt.year.astype(str),
            "band": pd.cut(km, [0, 1, 2, 5, 10, 20, np.inf], right=False, labels=["0-1", "1-2", "2-5", "5-10", "10-20", "20+"]),
        }
    )
    return {
        "mae": np.mean(np.abs(errors)),
        "rmse": np.sqrt(np.mean(errors**2)),
        "median": np.median(np.abs(errors)),
        "baseline_mae": np.mean(np.abs(mean_fare - good.fare_amount)),
        "baseline_rmse": np.sqrt(np.mean((mean_fare - good.fare_amount) ** 2)),
        "by_year": frame.groupby("year")["error"].agg(["count", "mean"]),
        "by_band": frame.groupby("band", observed=True)["error"].agg(["count", "mean"]),
    }


def test_figures_match_a_direct_computation(trained, tmp_path):
    good = _good_rides(240)
    rides = tmp_path / "rides.csv"
    _write_rides(rides, good)
    expected = _expected(trained, good)

    result = evaluate(trained, rides, plot_path=tmp_path / "plot.png")  # chunk_size 7: many spans

    bad_count = sum(len(rows) for rows in BAD_ROWS.values())
    assert (result.rows_read, result.rows_scored) == (240 + bad_count, 240)
    assert {rule: count for rule, count in result.rejected.items() if count} == {
        rule: len(rows) for rule, rows in BAD_ROWS.items()
    }
    assert result.mae == pytest.approx(expected["mae"], abs=1e-4)
    assert result.rmse == pytest.approx(expected["rmse"], abs=1e-4)
    assert result.median_absolute_error == pytest.approx(expected["median"], abs=0.0051)
    assert result.baseline_mae == pytest.approx(expected["baseline_mae"], abs=1e-6)
    assert result.baseline_rmse == pytest.approx(expected["baseline_rmse"], abs=1e-6)
    by_year = {group.group: (group.rows, group.mae) for group in result.by_year}
    assert list(by_year) == list(expected["by_year"].index)
    for year, (count, mae) in expected["by_year"].iterrows():
        assert by_year[year] == (count, pytest.approx(mae, abs=1e-4))
    by_band = {group.group: (group.rows, group.mae) for group in result.by_distance_km}
    assert list(by_band) == list(expected["by_band"].index)
    for band, (count, mae) in expected["by_band"].iterrows():
        assert by_band[band] == (count, pytest.approx(mae, abs=1e-4))
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("values", [[0.0], [0.013, 0.5, 2.0], [1.0, 1.0, 3.0, 3.0], [0.1, 0.2, 0.3, 999.0, 5000.0]])
def test_median_from_one_cent_bins_is_within_half_a_cent(values):
    counts = np.bincount(np.minimum(np.array(values) * 100, 99_999).astype(int), minlength=100_000)
    assert median_from_cents(counts) == pytest.approx(np.median(values), abs=0.005 + 1e-9)


def test_no_scorable_row_is_an_error(trained, tmp_path):
    rides = write_csv(tmp_path / "rides.csv", [row for rows in BAD_ROWS.values() for row in rows])
    with pytest.raises(
        InputError,
        match=r"no row can be scored \(10 read: fare_out_of_range 2 \(first on line 5: fare_amount=-3\); "
        r"malformed_line 1 \(first on line 2: b1,7.5,2013-07-06 17:18:00 UTC,-73.95,40.78\); "
        r"missing_fare 1 \(first on line 3: fare_amount=\); 6 more reasons\)",
    ):
        evaluate(trained, rides, plot_path=tmp_path / "plot.png")
    assert not (tmp_path / "plot.png").exists()


def test_cli_prints_json_and_writes_the_default_plot(trained, tmp_path):
    good = _good_rides(30)
    rides = tmp_path / "rides.csv"
    _write_rides(rides, good)
    env = cli_env(tmp_path, LOCAL_REGISTRY_PATH=str(trained.local_registry_path))
    done = run_cli(tmp_path, "evaluate", "--input", str(rides), "--json", env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout)
    run_id = Registry(trained.local_registry_path).latest().run_id
    assert (figures["run_id"], figures["rows_scored"], figures["rejected"]["outside_nyc"]) == (run_id, 30, 1)
    assert figures["mae"] == pytest.approx(_expected(trained, good)["mae"], abs=1e-4)
    assert (tmp_path / f"evaluate_rides_{run_id}.png").is_file()

    empty = write_csv(tmp_path / "empty.csv", [])
    assert_clean_error(run_cli(tmp_path, "evaluate", "--input", str(empty), env=env), 2, "no row can be scored")


def test_cli_scores_a_headerless_tab_separated_export_from_stdin(trained, tmp_path):
    rides = tmp_path / "rides.csv"
    _write_rides(rides, _good_rides(40))
    from_file = evaluate(trained, rides, plot_path=tmp_path / "plot.png")
    header, *lines = rides.read_text().splitlines()
    env = cli_env(tmp_path, LOCAL_REGISTRY_PATH=str(trained.local_registry_path))
    done = run_cli(
        tmp_path, "evaluate", "--input", "-", "--columns", header, "--delimiter", "\\t", "--json",
        env=env, input="\n".join(line.replace(",", "\t") for line in lines) + "\n",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout)
    assert figures["input"] == "stdin"
    assert (figures["rows_read"], figures["rows_scored"], figures["rejected"]) == (from_file.rows_read, 40, from_file.rejected)
    assert figures["mae"] == pytest.approx(from_file.mae, abs=1e-6)
    assert "line 13: not scored: wrong number of fields" in done.stderr  # numbered as lines of the headerless input
    assert (tmp_path / f"evaluate_stdin_{from_file.run_id}.png").is_file()


def test_rides_the_run_trained_on_are_recognised_and_counted(tmp_path, caplog):
    raw = tmp_path / "rides.csv"
    _write_rides(raw, _good_rides(800, seed=8))  # real rides would do as well: no key says synthetic
    settings = with_registry(demo_settings(tmp_path, chunk_size=50_000, data_size="mine"), tmp_path / "registry")
    preprocess(settings, input_path=raw)
    run = train(with_registry(settings, settings.local_registry_path, chunk_size=2000, epochs=1, batch_size=64, members=1)).run
    assert run.params["data"]["synthetic"] is False

    result = evaluate(settings, raw, plot_path=tmp_path / "plot.png")
    # Every scored ride is a row of the processed file, so exactly its training rows were trained on.
    trained_rows = run.params["data"]["train_rows"]
    assert result.rows_scored == 800 and 0.7 * 800 < trained_rows < 0.9 * 800
    assert result.seen_in_training == f"{trained_rows:,} of the 800 rows scored ({trained_rows / 800:.1%})"
    assert result.seen_in_training_share == trained_rows / 800
    warnings = [record.getMessage() for record in caplog.records if "in-sample" in record.getMessage()]
    assert warnings == [
        f"run {run.run_id} trained on {result.seen_in_training}: these figures are partly in-sample, not a fair test; "
        "score it on rides it never saw (its test MAE was measured on such rides)"
    ]

    caplog.clear()
    fresh = tmp_path / "fresh.csv"
    _write_rides(fresh, _good_rides(300, seed=9))
    result = evaluate(settings, fresh, plot_path=tmp_path / "plot.png")
    assert (result.seen_in_training, result.seen_in_training_share) == ("0 of the 300 rows scored (0.0%)", 0.0)
    assert "in-sample" not in caplog.text


def test_a_run_split_by_a_hash_of_all_its_columns_is_looked_up_as_it_was_split(tmp_path):
    """A run of the previous taxifare (row-hash-1: a hash of all the columns of a version-4 file) keeps the
    hashes it made: evaluate computes them the same way; a method it does not know is said to be unknown;
    such a run is no parent (its training rows would be in a new run's test set)."""
    raw = tmp_path / "rides.csv"
    _write_rides(raw, _good_rides(800, seed=8))
    settings = with_registry(demo_settings(tmp_path, chunk_size=50_000, data_size="mine"), tmp_path / "registry")
    preprocess(settings, input_path=raw)
    tiny = with_registry(settings, settings.local_registry_path, chunk_size=2000, epochs=1, batch_size=64, members=1)
    run = train(tiny).run
    data = open_processed(settings.processed_path, span_rows(2000))
    with data.file:
        prepared = prepare_rows(data, tmp_path / "rows.f32")
    trained = read_prepared_rows(tmp_path / "rows.f32", len(data.columns), prepared, range(len(prepared.span_starts) - 1))
    assert len(data.columns) > len(splits.IDENTITY_COLUMNS)
    every_column = splits.TrainingRowSample.empty()
    every_column.add(splits.row_hashes(trained, np.arange(len(data.columns))))
    every_column.save(run.path / SAMPLE_FILE)
    params = json.loads((run.path / "params.json").read_text())

    def record(method: str) -> None:
        params["split"]["method"] = method
        (run.path / "params.json").write_text(json.dumps(params))

    record("row-hash-1")
    result = evaluate(settings, raw, plot_path=tmp_path / "plot.png")
    assert result.seen_in_training == f"{len(trained):,} of the 800 rows scored ({len(trained) / 800:.1%})"
    with pytest.raises(InputError, match=f"cannot continue run {run.run_id}: its rows were split by row-hash-1"):
        train(tiny, from_run=run.run_id)
    record("row-hash-9")
    result = evaluate(settings, raw, plot_path=tmp_path / "plot.png")
    assert result.seen_in_training == "not known (the run was split by row-hash-9, which this taxifare does not know)"
    assert result.seen_in_training_share is None
