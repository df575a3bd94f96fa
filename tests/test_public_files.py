"""The public NYC files as users download them: the TLC headers of each era, Parquet and gzip copies give
the same processed rows as taxifare's own layout; months with taxi zones instead of coordinates are
refused in one line."""

from __future__ import annotations

import gzip
import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from taxifare.core.config import load_settings
from taxifare.core.errors import InputError
from taxifare.preprocessing.run import preprocess
from taxifare.sources.demo import demo_rides
from tests.conftest import assert_clean_error, run_cli

ROWS = 3000
TLC_2009 = ("vendor_name,Trip_Pickup_DateTime,Trip_Dropoff_DateTime,Passenger_Count,Trip_Distance,Start_Lon,Start_Lat,Rate_Code,"
            "store_and_forward,End_Lon,End_Lat,Payment_Type,Fare_Amt,surcharge,mta_tax,Tip_Amt,Tolls_Amt,Total_Amt")
TLC_2010 = ("vendor_id,pickup_datetime,dropoff_datetime,passenger_count,trip_distance,pickup_longitude,pickup_latitude,rate_code,"
            "store_and_fwd_flag,dropoff_longitude,dropoff_latitude,payment_type,fare_amount,surcharge,mta_tax,tip_amount,tolls_amount,total_amount")
TLC_2015 = ("VendorID,tpep_pickup_datetime,tpep_dropoff_datetime,passenger_count,trip_distance,pickup_longitude,pickup_latitude,RatecodeID,"
            "store_and_fwd_flag,dropoff_longitude,dropoff_latitude,payment_type,fare_amount,extra,mta_tax,tip_amount,tolls_amount,"
            "improvement_surcharge,total_amount")
TLC_2017 = ("VendorID,tpep_pickup_datetime,tpep_dropoff_datetime,passenger_count,trip_distance,RatecodeID,store_and_fwd_flag,"
            "PULocationID,DOLocationID,payment_type,fare_amount,extra,mta_tax,tip_amount,tolls_amount,improvement_surcharge,total_amount")
# Each era's name for taxifare's columns; the other columns are filled with plausible values.
ERA_NAMES = {
    TLC_2009: {"pickup_datetime": "Trip_Pickup_DateTime", "pickup_longitude": "Start_Lon", "pickup_latitude": "Start_Lat",
               "dropoff_longitude": "End_Lon", "dropoff_latitude": "End_Lat", "passenger_count": "Passenger_Count", "fare_amount": "Fare_Amt"},
    TLC_2010: {},
    TLC_2015: {"pickup_datetime": "tpep_pickup_datetime"},
}


@pytest.fixture(scope="module")
def rides() -> pd.DataFrame:
    """Synthetic rides on the New York wall clock, as the TLC writes them (no ' UTC')."""
    frame = demo_rides(ROWS, seed=11)
    return frame.assign(pickup_datetime=frame["pickup_datetime"].str.removesuffix(" UTC"))


def settings_for(tmp_path, data_size: str):
    return load_settings({"local_data_path": str(tmp_path / "data"), "chunk_size": 700, "data_size": data_size}, environ={}, dotenv_path=None)


def tlc_csv(path, rides: pd.DataFrame, header: str, space_after_commas: bool = False, blank_second_line: bool = False):
    names = header.split(",")
    era = {ours: theirs for ours, theirs in ERA_NAMES[header].items()}
    columns = {era.get(name, name): rides[name] for name in rides.columns if name != "key"}
    frame = pd.DataFrame({name: columns.get(name, "1") for name in names})
    text = frame.to_csv(index=False, header=False)
    top = (", " if space_after_commas else ",").join(names) + "\n" + ("\n" if blank_second_line else "")
    path.write_text(top + text)
    return path


def processed(tmp_path, name: str, input_path) -> bytes:
    return preprocess(settings_for(tmp_path, name), input_path=input_path).output.read_bytes()


def test_tlc_headers_of_every_era_gzip_and_parquet_give_the_same_processed_rows(tmp_path, rides):
    reference = processed(tmp_path, "own", _own_layout(tmp_path / "own.csv", rides))
    assert reference.count(b"\n") > ROWS / 2
    copies = {
        "tlc2009": tlc_csv(tmp_path / "yellow_tripdata_2009-01.csv", rides, TLC_2009),
        "tlc2010": tlc_csv(tmp_path / "yellow_tripdata_2014-01.csv", rides, TLC_2010, space_after_commas=True, blank_second_line=True),
        "tlc2015": tlc_csv(tmp_path / "yellow_tripdata_2015-01.csv", rides, TLC_2015),
        "gzip": _gzip(tmp_path / "own.csv.gz", _own_layout(tmp_path / "own_copy.csv", rides)),
        "parquet": _parquet(tmp_path / "yellow_tripdata_2015-01.parquet", rides),
    }
    for name, path in copies.items():
        assert processed(tmp_path, name, path) == reference, name


def test_the_summary_names_the_layout_it_recognised(tmp_path, rides):
    tlc_csv(tmp_path / "yellow.csv", rides, TLC_2009)
    result = run_cli(tmp_path, "preprocess", "--input", str(tmp_path / "yellow.csv"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "TLC yellow taxi, 2009" in result.stderr
    _parquet(tmp_path / "yellow.parquet", rides)
    result = run_cli(tmp_path, "preprocess", "--input", str(tmp_path / "yellow.parquet"), "--data-size", "parquet")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Parquet, TLC yellow taxi, 2015-2016" in result.stderr


def test_pred_and_evaluate_read_tlc_and_parquet_files_as_the_csv(tmp_path, rides):
    for command in (("demo-data", "--rows", "3000"), ("preprocess",), ("train", "--epochs", "1", "--members", "1")):
        result = run_cli(tmp_path, *command)
        assert result.returncode == 0, result.stderr[-2000:]
    some = rides.head(400)
    files = {"csv": _own_layout(tmp_path / "own.csv", some), "tlc": tlc_csv(tmp_path / "yellow.csv", some, TLC_2009),
             "parquet": _parquet(tmp_path / "yellow.parquet", some)}
    predicted, scored = {}, {}
    for name, path in files.items():
        result = run_cli(tmp_path, "pred", "--input", str(path), "--output", str(tmp_path / f"out_{name}.csv"))
        assert result.returncode == 0, result.stderr[-2000:]
        predicted[name] = pd.read_csv(tmp_path / f"out_{name}.csv")
        result = run_cli(tmp_path, "evaluate", "--input", str(path), "--json")
        assert result.returncode == 0, result.stderr[-2000:]
        scored[name] = json.loads(result.stdout)
    assert list(predicted["tlc"].columns[:len(TLC_2009.split(","))]) == TLC_2009.split(",")  # the file's own names
    assert list(predicted["parquet"].columns[:2]) == ["fare_amount", "tpep_pickup_datetime"]
    for name in ("tlc", "parquet"):
        pd.testing.assert_series_equal(predicted[name]["predicted_fare"], predicted["csv"]["predicted_fare"])
        assert (predicted[name]["not_predicted_reason"].fillna("") == predicted["csv"]["not_predicted_reason"].fillna("")).all()
        assert scored[name]["mae"] == scored["csv"]["mae"] and scored[name]["rows_scored"] == scored["csv"]["rows_scored"] > 300


def test_a_month_with_taxi_zones_is_refused_in_one_line(tmp_path, rides):
    path = tmp_path / "yellow_tripdata_2017-01.csv"
    path.write_text(TLC_2017 + "\n" + "2,2017-01-09 11:13:28,2017-01-09 11:25:45,1,3.30,1,N,263,161,1,12.5,0,0.5,2,0,0.3,15.3\n")
    result = run_cli(tmp_path, "preprocess", "--input", str(path))
    assert_clean_error(result, 2, "taxi zones (PULocationID, DOLocationID) instead of pickup and dropoff coordinates")
    with pytest.raises(InputError, match="July 2016"):
        preprocess(settings_for(tmp_path, "zones"), input_path=path)


def test_a_parquet_file_with_a_wrong_schema_or_bytes_is_refused_in_one_line(tmp_path, rides):
    pq.write_table(pa.table({"x": [1, 2]}), tmp_path / "other.parquet")
    assert_clean_error(run_cli(tmp_path, "preprocess", "--input", str(tmp_path / "other.parquet")), 2, "missing column(s) fare_amount")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet at all\n")
    assert_clean_error(run_cli(tmp_path, "preprocess", "--input", str(tmp_path / "broken.parquet")), 2, "not a readable Parquet file")
    damaged = bytearray(_parquet(tmp_path / "damaged.parquet", rides).read_bytes())
    damaged[len(damaged) // 2 : len(damaged) // 2 + 4000] = b"\xff" * 4000  # inside a compressed page
    (tmp_path / "damaged.parquet").write_bytes(bytes(damaged))
    assert_clean_error(run_cli(tmp_path, "preprocess", "--input", str(tmp_path / "damaged.parquet")), 2, "is not readable Parquet")


def _own_layout(path, rides: pd.DataFrame):
    rides.assign(pickup_datetime=rides["pickup_datetime"] + " UTC").to_csv(path, index=False)
    return path


def _gzip(path, source):
    path.write_bytes(gzip.compress(source.read_bytes()))
    return path


def _parquet(path, rides: pd.DataFrame):
    """The rides typed as the TLC's Parquet files type them: naive timestamps, doubles, integers; in
    several row groups."""
    frame = rides.drop(columns="key").rename(columns={"pickup_datetime": "tpep_pickup_datetime"})
    frame["tpep_pickup_datetime"] = pd.to_datetime(frame["tpep_pickup_datetime"]).astype("datetime64[us]")
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=1000)
    return path


def test_a_damaged_gzip_file_is_bad_input_in_one_line(tmp_path, rides):
    whole = gzip.compress(_own_layout(tmp_path / "own.csv", rides).read_bytes())
    (tmp_path / "cut.csv.gz").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "plain.csv.gz").write_bytes(b"key,fare_amount\n")
    for name, reason in (("cut.csv.gz", "ended before the end-of-stream marker"), ("plain.csv.gz", "Not a gzipped file")):
        failed = run_cli(tmp_path, "preprocess", "--input", str(tmp_path / name), "--data-size", "damaged")
        assert_clean_error(failed, 2, f"{name}: not a whole gzip file", reason)
        assert not (tmp_path / "data" / "processed" / "processed_2009-01-01_2015-01-01_damaged.csv").exists()
