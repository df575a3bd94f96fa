"""How the workers of a team share the processed rows (see distributed.py for the whole scheme).

Worker k of n owns the spans k, k+n, k+2n... It splits only those (by row content, as a single process
does), then the workers exchange per-span counts, so that the caps on the validation and test sets cut
where a single process would cut; statistics and the training-row sample are merged from every worker's.
In a pass, each worker trains its own spans in the single-process chunk order, padded with rows of
weight zero so that every worker takes the same number of steps.

The exchanges go through `team.sum` (an all-reduce); `team.index`, `team.size` and `team.timeout` say
who this worker is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from taxifare.training import splits
from taxifare.training.data import SPANS_PER_CHUNK, FeatureStatistics, PreparedRows, ProcessedData, chunk_plan, read_ahead, read_rows
from taxifare.training.splits import TEST, TRAIN, VALIDATION, TrainingRowSample, assign_sets, row_hashes
from taxifare.training.state import Position

# The exchange right after the split pass waits for the slowest worker's pass over its share.
_PREPARE_TIMEOUT_FACTOR = 30


@dataclass
class Share:
    """This worker's training rows in its row file: the spans it owns and where each one's rows lie."""

    row_file: Path
    columns: int
    owned: list[int]
    ranges: dict  # span -> (first row, end row) in the row file
    span_rows: np.ndarray  # training rows of every span of the file, all workers together

    def read(self, spans: Sequence[int]) -> np.ndarray:
        parts = []
        with self.row_file.open("rb") as file:
            for span in spans:
                start, end = self.ranges[span]
                file.seek(start * self.columns * 4)
                parts.append(np.fromfile(file, dtype=np.float32, count=(end - start) * self.columns).reshape(-1, self.columns))
        return np.concatenate(parts) if parts else np.empty((0, self.columns), dtype=np.float32)


@dataclass
class TeamChunk:
    rows: int  # of all the workers together
    batches: tuple | None  # this worker's (features, fares, weights), each steps x per-worker batch; None: no step


def prepare_share(team, data: ProcessedData, row_file: Path) -> tuple[PreparedRows, Share]:
    """Split this worker's spans; exchange counts, statistics, held-out rows and training-row samples so
    that every worker holds the whole file's PreparedRows as a single process would, and its Share of the
    training rows."""
    span_count, columns = len(data.spans), len(data.columns)
    owned = list(range(team.index, span_count, team.size))
    groups = [owned[i : i + SPANS_PER_CHUNK] for i in range(0, len(owned), SPANS_PER_CHUNK)]
    statistics, sample = FeatureStatistics.empty(columns), TrainingRowSample.empty()
    counts = np.zeros((3, span_count))  # training rows, validation and test candidates of each span
    candidates: dict[int, dict[int, np.ndarray]] = {VALIDATION: {}, TEST: {}}
    with row_file.open("wb") as target:
        load = lambda group: read_rows(data, [data.spans[span] for span in group])  # noqa: E731
        for group, rows in zip(groups, read_ahead(groups, load)):
            hashes = row_hashes(rows, data.identity)
            sets = assign_sets(hashes)
            trainable = sets == TRAIN
            target.write(rows[trainable].tobytes())
            statistics.add(rows[trainable])
            sample.add(hashes[trainable])
            bounds = np.cumsum([0] + [data.spans[span].rows for span in group])
            for span, start, end in zip(group, bounds[:-1], bounds[1:]):
                counts[0, span] = trainable[start:end].sum()
                for row, name in ((1, VALIDATION), (2, TEST)):
                    candidates[name][span] = rows[start:end][sets[start:end] == name]
                    counts[row, span] = len(candidates[name][span])
    ends = np.cumsum(counts[0, owned]).astype(np.int64)
    ranges = {span: (int(end - counts[0, span]), int(end)) for span, end in zip(owned, ends)}
    counts = team.sum(counts, team.timeout * _PREPARE_TIMEOUT_FACTOR)
    held_out, left_out = {}, 0
    for row, name, cap in ((1, VALIDATION, splits.VALIDATION_MAX_ROWS), (2, TEST, splits.TEST_MAX_ROWS)):
        # The first `cap` candidates in file order are held out, as in a single process; the rest are left out.
        kept = np.clip(cap - np.concatenate([[0], np.cumsum(counts[row])[:-1]]), 0, counts[row]).astype(np.int64)
        starts = np.concatenate([[0], np.cumsum(kept)])
        gathered = np.zeros((int(starts[-1]), columns), dtype=np.float32)
        for span in owned:
            gathered[starts[span] : starts[span + 1]] = candidates[name][span][: kept[span]]
        held_out[name] = team.sum(gathered)
        left_out += int(counts[row].sum() - kept.sum())
    share = Share(row_file, columns, owned, ranges, counts[0].astype(np.int64))
    span_starts = np.concatenate([[0], np.cumsum(counts[0], dtype=np.int64)])
    merged = PreparedRows(
        held_out[VALIDATION], held_out[TEST], _merged(team, statistics), span_starts, left_out, _merged_sample(team, sample)
    )
    return merged, share


def _merged_sample(team, mine: TrainingRowSample) -> TrainingRowSample:
    """Every worker's sample of its training rows, merged. The 64-bit keys and thresholds travel as two
    32-bit halves each, which a sum in float64 keeps exact."""
    sizes = np.zeros(team.size)
    sizes[team.index] = len(mine.keys)
    starts = np.concatenate([[0], np.cumsum(team.sum(sizes))]).astype(np.int64)
    values = np.zeros(int(starts[-1]) + team.size, dtype=np.uint64)  # every worker's keys, then thresholds
    values[starts[team.index] : starts[team.index + 1]] = mine.keys
    values[starts[-1] + team.index] = mine.threshold
    halves = np.stack([values >> np.uint64(32), values & np.uint64(0xFFFFFFFF)]).astype(np.float64)
    high, low = team.sum(halves).astype(np.uint64)
    values = (high << np.uint64(32)) | low
    merged = TrainingRowSample.empty()
    for worker in range(team.size):
        merged.merge(TrainingRowSample(values[starts[worker] : starts[worker + 1]], values[starts[-1] + worker]))
    return merged


def _merged(team, mine: FeatureStatistics) -> FeatureStatistics:
    """Every worker's statistics, merged."""
    fields = (mine.mean, mine.m2, mine.minimum, mine.maximum)
    table = np.zeros((team.size, 1 + len(mine.mean) * 4))
    table[team.index] = np.concatenate([[mine.count], *fields])
    merged = FeatureStatistics.empty(len(mine.mean))
    for count, *parts in ((row[0], *np.split(row[1:], 4)) for row in team.sum(table)):
        merged.merge(FeatureStatistics(int(count), *parts))
    return merged


def worker_chunks(span_count: int, seed: int, pass_index: int, workers: int) -> list[list[list[int]]]:
    """Spans of each worker's chunks in a pass: the single-process order, each worker's own spans."""
    order = [span for chunk in chunk_plan(span_count, seed, pass_index) for span in chunk]
    per_chunk = -(-SPANS_PER_CHUNK // workers)
    mine = [[span for span in order if span % workers == worker] for worker in range(workers)]
    chunks = -(-len(mine[0]) // per_chunk)
    return [[spans[c * per_chunk : (c + 1) * per_chunk] for c in range(chunks)] for spans in mine]


def load_team_chunk(team, share: Share, training, position: Position) -> TeamChunk:
    """This worker's rows of chunk `position`, shuffled and padded to the steps of the largest share."""
    settings, pass_index, chunk = training.settings, position.pass_index, position.chunk
    plan = worker_chunks(len(training.data.spans), settings.seed, pass_index, team.size)
    rows_by_worker = [int(share.span_rows[plan[worker][chunk]].sum()) for worker in range(team.size)]
    batch = settings.batch_size // team.size
    steps = -(-max(rows_by_worker) // batch)
    if not steps:
        return TeamChunk(0, None)
    rows = share.read(plan[team.index][chunk])
    order = np.random.default_rng([settings.seed, pass_index, chunk, team.index]).permutation(len(rows))
    # Padding: rows of weight zero (repeats of this chunk's rows), so that every worker takes `steps` steps.
    picks = np.resize(order, steps * batch) if len(order) else np.zeros(steps * batch, dtype=np.int64)
    table = rows[picks] if len(rows) else np.zeros((steps * batch, rows.shape[1]), dtype=np.float32)
    weights = (np.arange(steps * batch) < len(rows)).astype(np.float32)
    shape = (steps, batch)
    return TeamChunk(sum(rows_by_worker), (table[:, :-1].reshape(*shape, -1), table[:, -1].reshape(shape), weights.reshape(shape)))
