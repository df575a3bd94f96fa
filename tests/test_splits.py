"""The split by row content: the same set for a row in every data set, capped held-out sets whose extra
rows are never trained on, warm starts that never test on their parent's training rows, a team of
workers splitting as one process does, and the sample of training rows a run keeps."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

from taxifare.core.errors import InputError
from taxifare.preprocessing.run import preprocess
from taxifare.registry.store import SAMPLE_FILE
from taxifare.training import splits
from taxifare.training.data import open_processed, prepare_rows, read_prepared_rows, read_rows, span_rows
from taxifare.training.loop import train
from taxifare.training.shards import prepare_share
from taxifare.training.splits import TrainingRowSample, assign_sets, identity_positions, row_hashes, sample_keys
from tests.training_data import demo_settings, processed_demo, with_registry

SMALL = {"chunk_size": 1000, "batch_size": 128, "hidden_units": (16,), "learning_rate": 0.005, "epochs": 1, "members": 1}
CAP = 60


@pytest.fixture
def small_caps(monkeypatch):
    """Caps the held-out sets reach on a few thousand rows (as 50,000 and 100,000 do on millions)."""
    monkeypatch.setattr(splits, "VALIDATION_MAX_ROWS", CAP)
    monkeypatch.setattr(splits, "TEST_MAX_ROWS", CAP)


def _training_rows(path, chunk_size, row_file):
    data = open_processed(path, span_rows(chunk_size))
    prepared = prepare_rows(data, row_file)
    trained = read_prepared_rows(row_file, len(data.columns), prepared, range(len(prepared.span_starts) - 1))
    return data, prepared, trained


def _union_shuffled(folder, *raw_files):
    """A raw file of the rides of `raw_files`, in another order (as another query or export may give)."""
    rides = pd.concat([pd.read_csv(path, dtype=str) for path in raw_files]).sample(frac=1.0, random_state=3)
    settings = demo_settings(folder, chunk_size=50_000, data_size="both")
    settings.raw_cache_path.parent.mkdir(parents=True)
    rides.to_csv(settings.raw_cache_path, index=False)
    return settings


def test_a_warm_start_never_tests_on_rows_its_parent_trained_on(tmp_path, small_caps):
    first = processed_demo(tmp_path / "a", rides=3000, seed=7)
    second = processed_demo(tmp_path / "b", rides=3000, seed=99)
    both = _union_shuffled(tmp_path / "ab", first.raw_cache_path, second.raw_cache_path)
    preprocess(both)
    registry = tmp_path / "registry"
    parent = train(with_registry(first, registry, **SMALL)).run
    child = train(with_registry(both, registry, **SMALL), from_run=parent.run_id).run

    parent_rows = TrainingRowSample.load(parent.path / SAMPLE_FILE)
    assert parent_rows.complete and 0.95 * parent.params["data"]["train_rows"] < len(parent_rows.keys) <= parent.params["data"]["train_rows"]
    data, prepared, child_trained = _training_rows(both.processed_path, SMALL["chunk_size"], tmp_path / "rows.f32")
    for held_out in (prepared.test, prepared.validation):
        checked, seen = parent_rows.look_up(row_hashes(held_out, data.identity))
        assert (checked, seen) == (CAP, 0), "a row the parent trained on is in the child's held-out rows"
    assert len(prepared.test) == len(prepared.validation) == CAP and prepared.left_out > 0
    assert child.params["split"]["left_out_rows"] == prepared.left_out
    # The child's sample holds its own training rows and its parent's.
    child_rows = TrainingRowSample.load(child.path / SAMPLE_FILE)
    assert np.isin(parent_rows.keys, child_rows.keys).all()
    assert np.isin(np.unique(sample_keys(row_hashes(child_trained, data.identity))), child_rows.keys).all()
    assert child.params["data"]["training_sample"]["covers_parents"] is True


def test_a_row_has_the_same_set_in_every_data_set_and_extra_held_out_rows_are_left_out(tmp_path, small_caps):
    demo = processed_demo(tmp_path, rides=4000)
    data, prepared, trained = _training_rows(demo.processed_path, 700, tmp_path / "rows.f32")
    rows = read_rows(data, data.spans)
    sets = assign_sets(row_hashes(rows, data.identity))
    # Each row's set from its own values: the same alone as among thousands, in a file of any size.
    single = np.array([assign_sets(row_hashes(rows[i : i + 1], data.identity))[0] for i in range(0, len(rows), 97)])
    np.testing.assert_array_equal(single, sets[::97])
    assert 0.07 < np.mean(sets == splits.TEST) < 0.13 and 0.07 < np.mean(sets == splits.VALIDATION) < 0.13
    # Held out: the first CAP candidates in file order; the others are in no set.
    np.testing.assert_array_equal(prepared.test, rows[sets == splits.TEST][:CAP])
    np.testing.assert_array_equal(prepared.validation, rows[sets == splits.VALIDATION][:CAP])
    assert len(trained) == (sets == splits.TRAIN).sum()
    assert prepared.left_out == (sets != splits.TRAIN).sum() - 2 * CAP
    assert not np.isin(row_hashes(trained, data.identity), row_hashes(rows[sets != splits.TRAIN], data.identity)).any()


def test_columns_beside_the_identity_columns_move_no_row_between_sets(tmp_path):
    """Features a later preprocessor version appends or changes leave every row in its set, so the validation
    and test figures of two versions are of the same rows; a version-3 file splits as row-hash-1 did."""
    demo = processed_demo(tmp_path, rides=3000)
    data = open_processed(demo.processed_path, span_rows(1000))
    rows, columns = read_rows(data, data.spans), data.columns
    data.file.close()
    sets = assign_sets(row_hashes(rows, identity_positions(columns)))
    assert len(columns) > len(splits.IDENTITY_COLUMNS)
    rng = np.random.default_rng(3)
    # Another version's file: the fare first, a column appended, every non-identity column changed.
    other_columns = [columns[-1], *columns[:-1], "a_new_feature"]
    other = np.column_stack([rows[:, -1], rows[:, :-1], rng.normal(size=len(rows))]).astype(np.float32)
    changed = [other_columns.index(name) for name in other_columns if name not in splits.IDENTITY_COLUMNS]
    other[:, changed] = rng.normal(size=(len(rows), len(changed)))
    np.testing.assert_array_equal(assign_sets(row_hashes(other, identity_positions(other_columns))), sets)
    version_3 = np.column_stack([rows[:, : len(splits.IDENTITY_COLUMNS) - 1], rows[:, -1]])
    every_column = identity_positions(splits.IDENTITY_COLUMNS, splits.ALL_COLUMNS_METHOD)
    np.testing.assert_array_equal(assign_sets(row_hashes(version_3, every_column)), sets)
    with pytest.raises(InputError, match="lacks 1 of the columns that decide each row's set"):
        identity_positions([name for name in columns if name != "hour_sin"])


class ThreadTeam:
    """Workers as threads of one process, exchanging arrays through a barrier: the `team.sum` that
    shards.py needs (distributed.Team does it with TensorFlow's all-reduce between processes)."""

    def __init__(self, size: int):
        self.size, self.timeout = size, 30
        self._barrier = threading.Barrier(size, timeout=60)
        self._slots: list = [None] * size

    def member(self, index: int) -> "ThreadTeam.Member":
        return ThreadTeam.Member(self, index)

    class Member:
        def __init__(self, team: "ThreadTeam", index: int):
            self.team, self.index, self.size, self.timeout = team, index, team.size, team.timeout

        def sum(self, values: np.ndarray, timeout: float | None = None) -> np.ndarray:
            self.team._slots[self.index] = np.asarray(values)
            self.team._barrier.wait()
            total = np.sum(self.team._slots, axis=0)
            self.team._barrier.wait()
            return total


def test_a_team_of_workers_splits_as_one_process(tmp_path, small_caps):
    demo = processed_demo(tmp_path, rides=4000)
    _, alone, _ = _training_rows(demo.processed_path, 300, tmp_path / "alone.f32")
    team, results = ThreadTeam(3), [None] * 3

    def work(index: int) -> None:
        data = open_processed(demo.processed_path, span_rows(300))
        results[index] = prepare_share(team.member(index), data, tmp_path / f"worker-{index}.f32")

    threads = [threading.Thread(target=work, args=(index,)) for index in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for prepared, share in results:
        np.testing.assert_array_equal(prepared.validation, alone.validation)
        np.testing.assert_array_equal(prepared.test, alone.test)
        np.testing.assert_array_equal(prepared.span_starts, alone.span_starts)
        assert prepared.left_out == alone.left_out > 0
        np.testing.assert_array_equal(prepared.sample.keys, alone.sample.keys)
        assert prepared.statistics.count == alone.statistics.count
        np.testing.assert_allclose(prepared.statistics.mean, alone.statistics.mean, rtol=1e-9)
    trained = np.concatenate([share.read(share.owned) for _, share in results])
    assert len(trained) == alone.train_rows


def test_a_full_sample_keeps_the_smallest_keys_of_the_union(monkeypatch):
    monkeypatch.setattr(splits, "SAMPLE_CAPACITY", 100)
    hashes = np.random.default_rng(5).integers(0, 2**63, 1000, dtype=np.uint64) * np.uint64(2)
    one, other, both = TrainingRowSample.empty(), TrainingRowSample.empty(), TrainingRowSample.empty()
    one.add(hashes[:600])
    other.add(hashes[400:])
    both.add(hashes)
    one.merge(other)
    np.testing.assert_array_equal(one.keys, np.sort(sample_keys(hashes))[:100])
    np.testing.assert_array_equal(one.keys, both.keys)
    assert not one.complete and one.threshold == one.keys[-1]
    checked, seen = one.look_up(hashes[:500])
    assert seen == checked == np.sum(sample_keys(hashes[:500]) <= one.threshold) > 0
    assert one.look_up(hashes[:500] + np.uint64(1))[1] == 0


def test_a_sample_made_under_a_smaller_capacity_keeps_its_range(monkeypatch):
    monkeypatch.setattr(splits, "SAMPLE_CAPACITY", 100)
    hashes = np.random.default_rng(6).integers(0, 2**63, 1000, dtype=np.uint64)
    full = TrainingRowSample.empty()
    full.add(hashes)
    monkeypatch.setattr(splits, "SAMPLE_CAPACITY", 200)
    others = hashes[np.argsort(sample_keys(hashes))][100:110]  # rows beyond the full sample's range
    full.merge(TrainingRowSample(np.sort(sample_keys(others))))
    assert len(full.keys) == 100, "keys beyond a full sample's threshold would pass for a complete range"
    assert full.look_up(others) == (0, 0)
