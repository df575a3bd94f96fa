"""Score a registry run on a labelled raw CSV of any size, streamed span by span in flat memory.

Every figure is a running sum or a fixed-size histogram, never the rows themselves:
- MAE and RMSE, overall, by pickup year (New York time) and by haversine distance band; the same for the run's
  predict-the-mean baseline (its `train_mean_fare`).
- The median absolute error, from a histogram of absolute errors in 1-cent bins: exact to half a cent
  up to $1,000 (larger errors share the last bin).
- The plot of predicted against actual fares, from a 2-D histogram of 50-cent cells up to $100 on
  each axis; rides beyond it are counted in the figures but not drawn.
Rows are rejected by the rules of `pred`, plus unusable fares (see rides.FARE_RULES), each counted.
"""

from __future__ import annotations

import dataclasses
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from taxifare.core.config import Settings
from taxifare.core.errors import InputError
from taxifare.core.files import atomic_write_bytes, describe_os_error
from taxifare.core.progress import Progress
from taxifare.model.network import predict_fares
from taxifare.registry.store import Run
from taxifare.registry.tracking import log_evaluation
from taxifare.rides.features import TARGET, haversine_km
from taxifare.rides.layout import CsvFormat
from taxifare.serving.in_sample import InSampleCheck
from taxifare.serving.predict import load_run, trained_features
from taxifare.serving.ride_blocks import RIDE_COLUMNS, Rejections, format_window, iter_ride_blocks, open_rides, outside_training_window
from taxifare.sources.parquet_file import ParquetText
from taxifare.sources.raw_csv import RawCsv

log = logging.getLogger("taxifare")

CENT_BINS = 100_000  # 1-cent bins of absolute error: $0 to $1,000
DISTANCE_BANDS_KM = (1, 2, 5, 10, 20)  # upper edges; a distance on an edge falls in the band above
BAND_NAMES = ("0-1", "1-2", "2-5", "5-10", "10-20", "20+")
PLOT_MAX_FARE = 100.0
PLOT_BINS = 200


@dataclass
class ErrorSums:
    """Running sums of prediction errors: enough for MAE and RMSE."""

    rows: int = 0
    absolute: float = 0.0
    squared: float = 0.0

    def add(self, errors: np.ndarray) -> None:
        self.rows += len(errors)
        self.absolute += float(np.abs(errors).sum())
        self.squared += float(np.square(errors).sum())

    @property
    def mae(self) -> float:
        return self.absolute / self.rows

    @property
    def rmse(self) -> float:
        return float(np.sqrt(self.squared / self.rows))


@dataclass(frozen=True)
class GroupFigures:
    group: str
    rows: int
    mae: float
    rmse: float
    baseline_mae: float


Groups = dict[str, tuple[ErrorSums, ErrorSums]]  # group name -> (model, baseline) errors


@dataclass
class Scores:
    """Everything `evaluate` accumulates, span by span."""

    mean_fare: float
    model: ErrorSums = field(default_factory=ErrorSums)
    baseline: ErrorSums = field(default_factory=ErrorSums)
    years: Groups = field(default_factory=dict)
    bands: Groups = field(default_factory=dict)
    cents: np.ndarray = field(default_factory=lambda: np.zeros(CENT_BINS, dtype=np.int64))
    plot: np.ndarray = field(default_factory=lambda: np.zeros((PLOT_BINS, PLOT_BINS), dtype=np.int64))
    outside_training_window: int = 0

    def add(self, fares: np.ndarray, predicted: np.ndarray, years: np.ndarray, distance_km: np.ndarray) -> None:
        errors, baseline_errors = predicted - fares, self.mean_fare - fares
        self.model.add(errors)
        self.baseline.add(baseline_errors)
        self.cents += np.bincount(np.minimum(np.abs(errors) * 100, CENT_BINS - 1).astype(np.int64), minlength=CENT_BINS)
        self.plot += np.histogram2d(fares, predicted, bins=PLOT_BINS, range=[[0, PLOT_MAX_FARE]] * 2)[0].astype(np.int64)
        bands = np.asarray(BAND_NAMES)[np.searchsorted(DISTANCE_BANDS_KM, distance_km, side="right")]
        _add_to_groups(self.years, years.astype(str), errors, baseline_errors)
        _add_to_groups(self.bands, bands, errors, baseline_errors)


def _add_to_groups(groups: Groups, keys: np.ndarray, errors: np.ndarray, baseline_errors: np.ndarray) -> None:
    for key in np.unique(keys):
        chosen = keys == key
        model, baseline = groups.setdefault(str(key), (ErrorSums(), ErrorSums()))
        model.add(errors[chosen])
        baseline.add(baseline_errors[chosen])


def group_figures(groups: Groups, order: list[str] | tuple[str, ...]) -> list[GroupFigures]:
    figures = []
    for name in order:
        if name in groups:
            model, baseline = groups[name]
            figures.append(GroupFigures(name, model.rows, model.mae, model.rmse, baseline.mae))
    return figures


def median_from_cents(counts: np.ndarray) -> float:
    """The median of values binned in 1-cent bins, each bin read as its middle (within half a cent)."""
    total = int(counts.sum())
    cumulative = np.cumsum(counts)
    middle = [(total + 1) // 2, total // 2 + 1]  # 1-based ranks of the middle value(s)
    bins = np.searchsorted(cumulative, middle)
    return float(np.mean(bins + 0.5) / 100)


@dataclass
class Evaluation:
    run_id: str
    input: str
    plot: str
    training_window: str
    rows_read: int
    rows_scored: int
    rejected: dict[str, int]
    outside_training_window: int
    seen_in_training: str  # how many of the rows scored the run trained on (in words)
    seen_in_training_share: float | None  # of the rows scored (None: not known)
    mae: float
    rmse: float
    median_absolute_error: float
    baseline_mean_fare: float
    baseline_mae: float
    baseline_rmse: float
    by_year: list[GroupFigures]
    by_distance_km: list[GroupFigures]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def evaluate(
    settings: Settings,
    input_path: Path,
    run_spec: str | None = None,
    plot_path: Path | None = None,
    csv_format: CsvFormat = CsvFormat(),
    data_set: str | None = None,
) -> Evaluation:
    """Score the run `run_spec` names (default latest; `data_set` narrows latest and best) on labelled
    rides from `input_path` ("-": stdin)."""
    with open_rides(input_path, csv_format, (TARGET, *RIDE_COLUMNS)) as rides_input:
        run, model = load_run(settings, run_spec, data_set, doing="scoring")
        mean_fare = run.metrics["final"].get("train_mean_fare")
        if not isinstance(mean_fare, (int, float)):
            raise InputError(f"run {run.run_id} records no train_mean_fare, the baseline's prediction; train a new run")
        scores, rejected, in_sample = Scores(float(mean_fare)), Rejections("scored", with_fare=True), InSampleCheck.of(run)
        rows_read = _score_blocks(settings, rides_input, run, model, scores, rejected, in_sample)
    if scores.model.rows == 0:
        raise InputError(f"{rides_input.name}: no row can be scored ({rows_read:,} read: {rejected.top_reasons()})")
    shown = Path(rides_input.name)  # "stdin" for stdin
    plot_path = plot_path or Path(f"evaluate_{shown.stem}_{run.run_id}.png")
    _write_plot(plot_path, scores.plot, f"run {run.run_id} on {shown.name}: {scores.model.rows:,} rides")
    window = run.pickup_window
    in_sample.warn(run, scores.model.rows)
    evaluation = Evaluation(
        run_id=run.run_id,
        input=rides_input.name,
        plot=str(plot_path),
        training_window=format_window(window) if window else "unknown",
        rows_read=rows_read,
        rows_scored=scores.model.rows,
        rejected=rejected.counts,
        outside_training_window=scores.outside_training_window,
        seen_in_training=in_sample.describe(scores.model.rows),
        seen_in_training_share=in_sample.share,
        mae=scores.model.mae,
        rmse=scores.model.rmse,
        median_absolute_error=median_from_cents(scores.cents),
        baseline_mean_fare=scores.mean_fare,
        baseline_mae=scores.baseline.mae,
        baseline_rmse=scores.baseline.rmse,
        by_year=group_figures(scores.years, sorted(scores.years)),
        by_distance_km=group_figures(scores.bands, BAND_NAMES),
    )
    log_evaluation(settings, run, evaluation.to_dict(), str(plot_path))
    return evaluation


def _score_blocks(settings, rides_input: RawCsv | ParquetText, run: Run, model, scores: Scores, rejected: Rejections, in_sample: InSampleCheck) -> int:
    progress = Progress("evaluate", total=None)
    rows_read = 0
    for block in iter_ride_blocks(rides_input, settings.chunk_size, rejected, settings.utc_label):
        rides = block.rides.take(block.usable)
        rows_read += block.rows_read
        if len(rides):
            features = trained_features(run, rides)
            predicted = predict_fares(model, features)
            in_sample.add(features, rides[TARGET])
            pickup = rides["pickup_datetime"].astype("datetime64[Y]").astype(np.int64) + 1970
            distance = haversine_km(rides["pickup_latitude"], rides["pickup_longitude"], rides["dropoff_latitude"], rides["dropoff_longitude"])
            scores.add(rides[TARGET], predicted, pickup, distance)
            scores.outside_training_window += int(outside_training_window(rides, run.pickup_window).sum())
        progress.advance(block.rows_read, note=f"scored {scores.model.rows:,}")
    progress.close()
    return rows_read


def _write_plot(path: Path, counts: np.ndarray, title: str) -> None:
    """Predicted against actual fare as a log-scaled density, with the line of perfect predictions."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import colors, pyplot

    figure, axes = pyplot.subplots(figsize=(6.5, 6))
    edges = np.linspace(0, PLOT_MAX_FARE, PLOT_BINS + 1)
    shown = np.ma.masked_equal(counts.T, 0)
    mesh = axes.pcolormesh(edges, edges, shown, norm=colors.LogNorm(vmin=1, vmax=max(int(counts.max()), 2)), cmap="viridis")
    axes.plot([0, PLOT_MAX_FARE], [0, PLOT_MAX_FARE], color="tab:red", linewidth=1, label="predicted = actual")
    axes.set_xlabel("actual fare ($)")
    axes.set_ylabel("predicted fare ($)")
    axes.set_title(title, fontsize=10)
    axes.legend(loc="upper left")
    figure.colorbar(mesh, ax=axes, label="rides")
    figure.tight_layout()
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=100)
    pyplot.close(figure)
    try:
        atomic_write_bytes(path, image.getvalue())
    except OSError as error:
        raise describe_os_error(error, path) from error


def format_evaluation(evaluation: Evaluation) -> str:
    """The evaluation as aligned text: the figures, the rejections by reason, then the breakdowns."""
    pairs = [
        ("run", evaluation.run_id),
        ("input", evaluation.input),
        ("rows read", f"{evaluation.rows_read:,}"),
        ("rows scored", f"{evaluation.rows_scored:,}"),
        ("rows rejected", f"{sum(evaluation.rejected.values()):,}"),
        *((f"  {rule}", f"{count:,}") for rule, count in evaluation.rejected.items() if count),
        ("outside training window", f"{evaluation.outside_training_window:,} ({evaluation.training_window})"),
        ("seen in training", evaluation.seen_in_training),
        ("MAE", f"${evaluation.mae:.3f}"),
        ("RMSE", f"${evaluation.rmse:.3f}"),
        ("median absolute error", f"${evaluation.median_absolute_error:.3f}"),
        ("baseline MAE", f"${evaluation.baseline_mae:.3f} (predicting the run's mean fare ${evaluation.baseline_mean_fare:.2f})"),
        ("baseline RMSE", f"${evaluation.baseline_rmse:.3f}"),
        ("plot", evaluation.plot),
    ]
    width = max(len(name) for name, _ in pairs)
    lines = [f"{name:<{width}}  {value}" for name, value in pairs]
    for title, groups in (("pickup year", evaluation.by_year), ("distance (km)", evaluation.by_distance_km)):
        lines += ["", f"{title:<14}{'rows':>10}{'MAE':>10}{'RMSE':>10}{'baseline MAE':>14}"]
        lines += [
            f"{group.group:<14}{group.rows:>10,}{group.mae:>10.3f}{group.rmse:>10.3f}{group.baseline_mae:>14.3f}"
            for group in groups
        ]
    return "\n".join(lines)
