"""The fare model: built once and compiled once, so Adam's state carries across chunks and passes.

Inputs are standardized inside the model (a Normalization layer holding the training rows' per-feature
mean and variance), or for some members of the ensemble read as normal scores of the training rows'
quantiles (spec.MEMBER_DESIGNS); then each numeric feature is embedded (embeddings.py). A saved model takes
the processed features as they are, and prediction needs nothing but the model file.

Keras (and TensorFlow under it) is imported inside these functions only, so that `taxifare --help` and
`preprocess` never pay for it.
"""

from __future__ import annotations

import os

import numpy as np

from taxifare.model.spec import FLAT_FARE_RADIUS_KM, METER_RISE, METER_START, METER_STEPS, ModelSpec
from taxifare.rides.features import DISTANCE_SCALE_KM, FEATURE_NAMES, PREFIX_VERSIONS, days_feature, is_one_hot

# Huber's loss is squared below this error and linear above it: dollars, so that it trains towards
# the absolute error that users read while big fare outliers pull on it no harder than any other error.
HUBER_DELTA = 1.0
PREDICT_BATCH_SIZE = 16384
# Training steps per call into TensorFlow: a step of this small model takes less time than the Python
# round trip around it; running 32 in one call nearly halves training time on two cores.
STEPS_PER_EXECUTION = 32
# Below this many rows a direct call beats `predict`, which compiles a function first.
_EAGER_ROWS = 1024
QUANTILE_INTERVALS = 64
# At most this many training rows, evenly spaced through the row file, give the quantiles.
QUANTILE_SAMPLE_ROWS = 100_000
# Where a distance-rate member's fare starts: NYC's meter drops its flag at $2.50 (plus surcharges) and
# charges $2.50 a mile, about $1.55 a kilometre.
START_BASE_FARE, START_RATE_PER_KM = 3.0, 1.5
_JFK_COLUMNS = [FEATURE_NAMES.index("pickup_distance_jfk"), FEATURE_NAMES.index("dropoff_distance_jfk")]
_FLAT_FARE_RADIUS = FLAT_FARE_RADIUS_KM / DISTANCE_SCALE_KM  # in the processed table's distance units
_METER_RISE_DAY = float(days_feature(METER_RISE))  # in the date feature's units
# The name of the layer that holds the date within the training window (embeddings.TrainingRange).
DATE_HOLD_LAYER = "training_range"


def import_keras():
    # TensorFlow reads these when it is first imported; quiet its C++ start-up chatter (the CLI sets it
    # to 3, or 0 with --verbose, before this).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # This model's operations are too small to split across threads: on two cores, splitting them cost
    # more in thread wake-ups than it saved (training ~20% slower). TensorFlow's own variable; override it.
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    return keras


def numeric_columns(feature_count: int) -> list[int]:
    """The columns to embed: the processed table's features that are not one-hot, or every column of
    inputs that are not that table."""
    if feature_count == len(FEATURE_NAMES):
        return [column for column, name in enumerate(FEATURE_NAMES) if not is_one_hot(name)]
    return list(range(feature_count))


def _processed_table(feature_count: int) -> bool:
    """Whether inputs of this width are the processed table's features, of this or an earlier version (version
    3's columns are the first of every later version's), so that a feature's column is its index in FEATURE_NAMES."""
    return feature_count in (len(FEATURE_NAMES), *PREFIX_VERSIONS.values())


def date_column(feature_count: int) -> int | None:
    """The processed table's date column; None for inputs that are not that table."""
    return FEATURE_NAMES.index("days_since_2009") if _processed_table(feature_count) else None


def distance_column(feature_count: int) -> int:
    """The column a distance-rate member multiplies: the processed table's Manhattan distance, or the first
    column of inputs that are not that table."""
    return FEATURE_NAMES.index("manhattan_distance") if _processed_table(feature_count) else 0


def quantile_knots(rows: np.ndarray, intervals: int = QUANTILE_INTERVALS) -> np.ndarray:
    """Each numeric feature's quantiles at 0, 1/intervals, ..., 1 of `rows` (features only): (numeric features, intervals + 1)."""
    numeric = numeric_columns(rows.shape[1])
    return np.quantile(rows[:, numeric].astype(np.float64), np.linspace(0.0, 1.0, intervals + 1), axis=0).T


def normal_knots(mean: np.ndarray, variance: np.ndarray, intervals: int = QUANTILE_INTERVALS) -> np.ndarray:
    """The knots that normal features of this mean and variance would have: for callers with no rows at hand."""
    from taxifare.model.embeddings import normal_scores

    numeric = numeric_columns(len(mean))
    return mean[numeric, None] + np.sqrt(variance[numeric, None]) * np.array(normal_scores(intervals))


def fare_loss(name: str, reduction: str | None = "sum_over_batch_size"):
    """The training objective, one definition for `fit` and the multi-worker step (reduction="sum")."""
    keras = import_keras()
    losses = {"huber": keras.losses.Huber, "mse": keras.losses.MeanSquaredError, "mae": keras.losses.MeanAbsoluteError}
    options = {"delta": HUBER_DELTA} if name == "huber" else {}
    return losses[name](reduction=reduction, **options)


def build_model(
    spec: ModelSpec,
    learning_rate: float,
    seed: int,
    mean: np.ndarray,
    variance: np.ndarray,
    initial_fare: float,
    knots: np.ndarray | None = None,
    date_range: tuple[float, float] | None = None,
):
    """A compiled model for features with the given training-row `mean` and `variance`, and numeric features'
    quantile `knots` (quantile_knots; by default those of normal features); a standardized member's output
    starts at `initial_fare` (the mean fare), so training begins at the predict-the-mean baseline. The date
    feature is held within `date_range` (its values at the training window's first and last pickup)."""
    keras = import_keras()
    from keras import layers

    from taxifare.model.embeddings import MemberMean, MeterSteps, QuantileNormal, TrainingRange

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((len(mean),))
    features = inputs
    date = date_column(len(mean))
    if date_range is not None and date is not None:
        features = TrainingRange([date], [date_range[0]], [date_range[1]], name=DATE_HOLD_LAYER)(inputs)
    # A constant column (a district no training ride touched) would be divided by ~0 at prediction.
    scale = np.where(variance > 1e-12, variance, 1.0)
    standardized = layers.Normalization(mean=mean, variance=scale, name="standardize")(features)
    designs = spec.member_designs()
    numeric = numeric_columns(len(mean))
    scored = None
    if "quantile" in designs:
        knots = normal_knots(mean, variance) if knots is None else knots
        scored = QuantileNormal(numeric, knots.shape[1] - 1, knots, name="quantile_normal")([features, standardized])
    member_inputs = {"standardized": standardized, "quantile": scored, "distance-rate": standardized}
    prefixes = [""] if spec.members == 1 else [f"member_{member}_" for member in range(1, spec.members + 1)]
    plan = zip(designs, spec.member_scales(), prefixes)
    fares = [_member(spec, features, member_inputs[design], design, scale, initial_fare, prefix) for design, scale, prefix in plan]
    if spec.members == 1:
        output = fares[0]
    elif _has_flat_fares(spec, len(mean)):
        output = MemberMean(_JFK_COLUMNS, _FLAT_FARE_RADIUS, name="member_mean")([features, layers.Concatenate(name="members")(fares)])
    else:
        output = MemberMean(name="member_mean")(layers.Concatenate(name="members")(fares))
    if spec.meter_steps and _processed_table(len(mean)):
        # Without flat-fare heads, every ride is on the meter.
        near_jfk = (_JFK_COLUMNS, _FLAT_FARE_RADIUS) if _has_flat_fares(spec, len(mean)) else ()
        output = MeterSteps(date, _METER_RISE_DAY, METER_STEPS, METER_START, *near_jfk, name="meter_steps")([features, output])
    model = keras.Model(inputs, output, name="taxifare")
    model.compile(
        loss=fare_loss(spec.loss),
        optimizer=keras.optimizers.Adam(learning_rate),
        metrics=["mae"],
        steps_per_execution=STEPS_PER_EXECUTION,
    )
    return model


def _member(spec: ModelSpec, inputs, member_inputs, design: str, frequency_scale: float, initial_fare: float, prefix: str):
    """One network of the ensemble, of `design` (spec.MEMBER_DESIGNS) and `frequency_scale`, from its inputs to a
    fare; its layers' names start with `prefix`."""
    from keras import layers

    flow = member_inputs
    if spec.frequencies:
        from taxifare.model.embeddings import PeriodicEmbedding

        numeric = numeric_columns(inputs.shape[-1])
        # QuantileNormal puts the numeric features' scores first.
        embedded = list(range(len(numeric))) if design == "quantile" else numeric
        flow = PeriodicEmbedding(
            embedded, spec.frequencies, spec.embedding_dims, frequency_scale, spec.scalars, name=f"{prefix}numeric_embedding"
        )(flow)
    for index, units in enumerate(spec.hidden_units, 1):
        flow = layers.Dense(units, activation="relu", name=f"{prefix}hidden_{index}")(flow)
        if spec.dropout:
            flow = layers.Dropout(spec.dropout, name=f"{prefix}dropout_{index}")(flow)
    fare = _fare(inputs, flow, design, initial_fare, prefix)
    if not _has_flat_fares(spec, inputs.shape[-1]):
        return fare
    from taxifare.model.embeddings import FlatFare

    # The gate's and the choice's logits; the gate starts half open, each flat fare equally likely.
    logits = layers.Dense(1 + len(spec.flat_fares), name=f"{prefix}flat_fare_logits")(flow)
    return FlatFare(_JFK_COLUMNS, _FLAT_FARE_RADIUS, spec.flat_fares, name=f"{prefix}flat_fare")([inputs, fare, logits])


def _has_flat_fares(spec: ModelSpec, feature_count: int) -> bool:
    """Whether the model has flat-fare heads: inputs other than the processed table have no distances to JFK."""
    return bool(spec.flat_fares) and _processed_table(feature_count)


def _fare(inputs, flow, design: str, initial_fare: float, prefix: str):
    """A member's own fare, from its last hidden layer `flow`."""
    from keras import initializers, layers

    if design != "distance-rate":
        return layers.Dense(1, bias_initializer=initializers.Constant(initial_fare), name=f"{prefix}fare")(flow)
    from taxifare.model.embeddings import DistanceRate

    starts = initializers.Constant([START_BASE_FARE, START_RATE_PER_KM])
    priced = layers.Dense(2, bias_initializer=starts, name=f"{prefix}base_and_rate")(flow)
    return DistanceRate(distance_column(inputs.shape[-1]), DISTANCE_SCALE_KM, name=f"{prefix}fare")([inputs, priced])


def holds_dates(model) -> bool:
    """Whether a model holds the date feature within its training window (TrainingRange): runs before it
    extrapolate the fare trend instead."""
    return any(layer.name == DATE_HOLD_LAYER for layer in model.layers)


def input_statistics(model) -> tuple[np.ndarray, np.ndarray]:
    """The mean and variance a model standardizes its inputs with."""
    layer = model.get_layer("standardize")
    return np.asarray(layer.mean, dtype=np.float64).reshape(-1), np.asarray(layer.variance, dtype=np.float64).reshape(-1)


def predict_fares(model, features: np.ndarray) -> np.ndarray:
    if len(features) <= _EAGER_ROWS:
        return np.asarray(model(features, training=False), dtype=np.float64).reshape(-1)
    # `predict_on_batch` per slice: `predict` would first build a dataset, ~0.1 s for every call.
    starts = range(0, len(features), PREDICT_BATCH_SIZE)
    parts = [model.predict_on_batch(features[start : start + PREDICT_BATCH_SIZE]) for start in starts]
    return np.concatenate(parts).astype(np.float64).reshape(-1)


def shuffled_batches(rows: np.ndarray, order: np.ndarray, batch_size: int):
    """A tf.data dataset of `rows` (features, then target) in batches, taken in `order`. Built in the
    reader thread: it copies the rows into tensors there, which `fit` on plain arrays would do on the
    training thread at every call."""
    import tensorflow as tf

    # The fares as a column: the loss compares each with every member's fare of an ensemble.
    table = tf.data.Dataset.from_tensors((tf.constant(rows[:, :-1]), tf.constant(rows[:, -1:]))).repeat()
    options = tf.data.Options()
    # The default rewrites serialize the pipeline, the rows with it, every time an epoch starts.
    options.experimental_optimization.apply_default_optimizations = False
    # tf.data's autotuner stalled many passes on 2 cores, by up to their whole length (a pass took 2.55 or
    # 5.1 s, against ~1.9 s without it). The gathers are cheap: two at a time and two batches ahead keep
    # the trainer fed.
    options.autotune.enabled = False

    def gather(index, tensors):
        return tf.gather(tensors[0], index), tf.gather(tensors[1], index)

    whole = len(order) - len(order) % batch_size
    indices = tf.data.Dataset.from_tensor_slices(order[:whole].reshape(-1, batch_size))
    if whole < len(order):
        indices = indices.concatenate(tf.data.Dataset.from_tensors(order[whole:]))
    return (
        tf.data.Dataset.zip((indices, table))
        .map(gather, num_parallel_calls=2)
        .with_options(options)
        .prefetch(2)
    )


def training_variables(model) -> list:
    """Every variable training changes: weights, batch-norm statistics, the dropout layers' random
    generators, and Adam's moments and step count (built here if no step has run yet)."""
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    return [*model.variables, *model.optimizer.variables]
