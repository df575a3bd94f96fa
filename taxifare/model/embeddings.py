"""The model's own layers: periodic embeddings of the numeric features, learned inside the model ("PLR":
periodic, linear, ReLU); the members' mean; what the member designs of network.py add (quantile
normal scores, a base-plus-rate-times-distance fare); the flat fares of rides to or from JFK; the meter's
steps; and the date held to the training rows' range.

An MLP on standardized scalars draws sharp price steps (flat airport fares, distance bands, surcharge
hours) poorly. Gorishniy, Rubachev and Babenko ("On Embeddings for Numerical Features in Tabular Deep
Learning", NeurIPS 2022) give each numeric feature x a vector instead:
v = ReLU(W_f [sin(2 pi c_f x), cos(2 pi c_f x)] + b_f), with trainable frequencies c_f drawn from
N(0, sigma) and a linear layer of its own per feature f. The other columns (one-hot) pass through
unchanged, and so, with `scalars`, do the numeric ones: beside their embeddings, which are periodic, they
let the network extrapolate to rides longer than most it trained on.

Imported only when a model is built or loaded (it imports Keras). The layers are registered for Keras
serialization, so a saved model loads in safe mode with no extra argument, wherever this module is
imported first (saved.load_model does it).
"""

from __future__ import annotations

import math
from statistics import NormalDist

import keras
from keras import initializers, layers, ops


@ops.custom_gradient
def _sines_and_cosines(angles):
    """[sin, cos] of the angles along the last axis. Its gradient reuses them: the default one evaluates each
    function's derivative, a cosine and a sine, anew."""
    sines, cosines = ops.sin(angles), ops.cos(angles)

    def gradient(*args, upstream=None):
        upstream = args[0] if upstream is None else upstream
        of_sines, of_cosines = ops.split(upstream, 2, axis=-1)
        return of_sines * cosines - of_cosines * sines

    return ops.concatenate([sines, cosines], axis=-1), gradient


@keras.saving.register_keras_serializable(package="taxifare")
class PeriodicEmbedding(layers.Layer):
    """(batch, features) -> (batch, len(numeric) * dims + the columns passed through), the embeddings first."""

    def __init__(self, numeric: list[int], frequencies: int, dims: int, sigma: float, scalars: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.numeric = [int(column) for column in numeric]
        self.frequency_count, self.dims, self.sigma, self.scalars = int(frequencies), int(dims), float(sigma), bool(scalars)

    def build(self, input_shape):
        features, count, periodic = int(input_shape[-1]), len(self.numeric), 2 * self.frequency_count
        self.passed = [column for column in range(features) if self.scalars or column not in set(self.numeric)]
        self.frequencies = self.add_weight(
            name="frequencies", shape=(count, self.frequency_count), initializer=initializers.RandomNormal(0.0, self.sigma)
        )
        # Each feature's linear layer as PyTorch's nn.Linear starts one (Keras' glorot would count the
        # features as fan-in as well).
        bound = 1 / math.sqrt(periodic)
        self.kernel = self.add_weight(name="kernel", shape=(count, periodic, self.dims), initializer=initializers.RandomUniform(-bound, bound))
        self.bias = self.add_weight(name="bias", shape=(count, self.dims), initializer=initializers.RandomUniform(-bound, bound))

    def call(self, inputs):
        # Feature-major (features, batch, ...): each feature's linear layer is then one batched matmul, where
        # the batch-major einsum transposed the (wider) periodic values there and back, forward and backward:
        # the same products, a quarter less training time.
        by_feature = ops.expand_dims(ops.transpose(ops.take(inputs, self.numeric, axis=1)), -1)
        periodic = _sines_and_cosines(by_feature * ops.expand_dims(2 * math.pi * self.frequencies, 1))
        embedded = ops.relu(ops.matmul(periodic, self.kernel) + ops.expand_dims(self.bias, 1))
        flat = ops.reshape(ops.transpose(embedded, (1, 0, 2)), (-1, len(self.numeric) * self.dims))
        return ops.concatenate([flat, ops.take(inputs, self.passed, axis=1)], axis=1) if self.passed else flat

    def compute_output_shape(self, input_shape):
        passed = int(input_shape[-1]) - (0 if self.scalars else len(self.numeric))
        return (input_shape[0], len(self.numeric) * self.dims + passed)

    def get_config(self):
        fields = {"numeric": self.numeric, "frequencies": self.frequency_count, "dims": self.dims, "sigma": self.sigma, "scalars": self.scalars}
        return {**super().get_config(), **fields}


@keras.saving.register_keras_serializable(package="taxifare")
class MemberMean(layers.Layer):
    """The members' fares (batch, members) as they are while training, so that the loss trains each member on
    its own; their mean (batch, 1) otherwise: the ensemble's prediction.

    With `columns` (the ends' distances to JFK) and `radius`, the inputs are [inputs, fares], and a ride
    within `radius` of JFK takes the members' median instead: there fares gather on a few flat values
    (FlatFare), and the mean of members that picked different ones is a fare between them."""

    def __init__(self, columns=(), radius: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.columns, self.radius = [int(column) for column in columns], float(radius)

    def call(self, inputs, training=False):
        raw, fares = inputs if self.columns else (None, inputs)
        if training:
            return fares
        mean = ops.mean(fares, axis=-1, keepdims=True)
        if not self.columns:
            return mean
        return ops.where(_near(raw, self.columns, self.radius), ops.median(fares, axis=-1, keepdims=True), mean)

    def get_config(self):
        return {**super().get_config(), "columns": self.columns, "radius": self.radius}


def _near(raw, columns: list[int], radius: float):
    """(batch, 1): whether the smaller of the rides' values in `columns` (distances) is below `radius`."""
    return ops.min(ops.take(raw, columns, axis=1), axis=1, keepdims=True) < radius


def normal_scores(intervals: int) -> list[float]:
    """The normal scores of the quantile levels 0, 1/intervals, ..., 1, the outermost taken at 0.1% and 99.9%."""
    return [NormalDist().inv_cdf(min(max(index / intervals, 0.001), 0.999)) for index in range(intervals + 1)]


@keras.saving.register_keras_serializable(package="taxifare")
class QuantileNormal(layers.Layer):
    """[inputs, standardized inputs] -> (batch, features): each numeric feature's normal score, read off its
    training quantiles (`knots`, one row per feature) by linear interpolation, then the other columns as
    standardized.

    A distance's or a landmark distance's long tail squeezes most rides into a sliver of the standardized
    range; its quantiles spread them evenly (clamped at the outermost knots, so these members do not
    extrapolate: the standardized members beside them do). The knots are weights that are not trained:
    saved and loaded with the model like the others."""

    def __init__(self, numeric: list[int], intervals: int, knots=None, **kwargs):
        super().__init__(**kwargs)
        self.numeric, self.intervals = [int(column) for column in numeric], int(intervals)
        self._initial_knots = knots

    def build(self, input_shape):
        initial = initializers.Constant(self._initial_knots) if self._initial_knots is not None else "zeros"
        self.knots = self.add_weight(name="knots", shape=(len(self.numeric), self.intervals + 1), initializer=initial, trainable=False)
        self.others = [column for column in range(int(input_shape[0][-1])) if column not in set(self.numeric)]
        scores = normal_scores(self.intervals)
        self.first_score, self.score_steps = scores[0], [high - low for low, high in zip(scores, scores[1:])]

    def call(self, inputs):
        raw, standardized = inputs
        values = ops.expand_dims(ops.take(raw, self.numeric, axis=1), -1)
        # Knots that coincide (a discrete feature) make a step rather than a division by zero.
        widths = ops.maximum(self.knots[:, 1:] - self.knots[:, :-1], 1e-6)
        filled = ops.clip((values - self.knots[:, :-1]) / widths, 0.0, 1.0)
        scores = self.first_score + ops.sum(filled * ops.convert_to_tensor(self.score_steps, dtype=filled.dtype), axis=-1)
        return ops.concatenate([scores, ops.take(standardized, self.others, axis=1)], axis=1) if self.others else scores

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], int(input_shape[0][-1]))

    def get_config(self):
        return {**super().get_config(), "numeric": self.numeric, "intervals": self.intervals}


@keras.saving.register_keras_serializable(package="taxifare")
class DistanceRate(layers.Layer):
    """[inputs, (batch, 2) base and rate] -> (batch, 1): base + rate x the ride's distance, in kilometres
    (inputs' column `column` times `scale`): a meter's shape, drawn by the network per ride."""

    def __init__(self, column: int, scale: float, **kwargs):
        super().__init__(**kwargs)
        self.column, self.scale = int(column), float(scale)

    def call(self, inputs):
        raw, priced = inputs
        distance = ops.take(raw, [self.column], axis=1) * self.scale
        return priced[:, :1] + priced[:, 1:] * distance

    def compute_output_shape(self, input_shape):
        return (input_shape[1][0], 1)

    def get_config(self):
        return {**super().get_config(), "column": self.column, "scale": self.scale}


@keras.saving.register_keras_serializable(package="taxifare")
class FlatFare(layers.Layer):
    """[inputs, fare (batch, 1), logits (batch, 1 + len(starts))] -> (batch, 1): on a ride with an end within
    `radius` of JFK (the smaller of inputs' columns `columns`, its ends' distances to the airport), the fare
    moved towards a learned flat fare by a learned gate (the first logit; the others choose among the flat
    fares, which start at `starts`); on any other ride the fare as it is.

    A trip between JFK and Manhattan is a flat fare, alone or with a tunnel's toll: the fares of such rides
    gather on a few exact values, between which a network on the absolute error settles, where the median
    is one of them."""

    def __init__(self, columns, radius: float, starts, **kwargs):
        super().__init__(**kwargs)
        self.columns, self.radius, self.starts = [int(column) for column in columns], float(radius), [float(start) for start in starts]

    def build(self, input_shape):
        self.fares = self.add_weight(shape=(len(self.starts),), initializer=initializers.Constant(self.starts), name="fares")

    def call(self, inputs):
        raw, fare, logits = inputs
        gate = ops.sigmoid(logits[:, :1]) * ops.cast(_near(raw, self.columns, self.radius), fare.dtype)
        flat = ops.sum(ops.softmax(logits[:, 1:], axis=-1) * self.fares, axis=-1, keepdims=True)
        return fare + gate * (flat - fare)

    def compute_output_shape(self, input_shape):
        return input_shape[1]

    def get_config(self):
        return {**super().get_config(), "columns": self.columns, "radius": self.radius, "starts": self.starts}


@keras.saving.register_keras_serializable(package="taxifare")
class MeterSteps(layers.Layer):
    """[inputs, fare (batch, 1)] -> (batch, 1): at prediction, the fare at the nearest step of the meter in
    force on the ride's date (inputs' column `date_column`): `start` plus a whole number of `steps[0]` before
    the day `change` (in the date feature's units), of `steps[1]` from it. With `jfk_columns` (the ends'
    distances to JFK) and `radius`, rides with an end within `radius` of JFK keep their fare: flat fares,
    off those steps. In training the fare passes unchanged, so that the loss has a gradient.

    The meter adds a step at a time, so a metered fare is one of these values and so is the median, the
    best guess under the absolute error, of the fares a ride could have; a fare between two steps is off by
    up to half a step more than the nearer step would be on most rides."""

    def __init__(self, date_column: int, change: float, steps, start: float, jfk_columns=(), radius: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.date_column, self.change, self.steps, self.start = int(date_column), float(change), [float(step) for step in steps], float(start)
        self.jfk_columns, self.radius = [int(column) for column in jfk_columns], float(radius)

    def call(self, inputs, training=False):
        raw, fare = inputs
        if training:
            return fare
        step = ops.where(raw[:, self.date_column : self.date_column + 1] < self.change, self.steps[0], self.steps[1])
        stepped = ops.cast(self.start + ops.round((fare - self.start) / step) * step, fare.dtype)
        if not self.jfk_columns:
            return stepped
        return ops.where(_near(raw, self.jfk_columns, self.radius), fare, stepped)

    def compute_output_shape(self, input_shape):
        return input_shape[1]

    def get_config(self):
        return {
            **super().get_config(),
            **{name: getattr(self, name) for name in ("date_column", "change", "steps", "start", "jfk_columns", "radius")},
        }


@keras.saving.register_keras_serializable(package="taxifare")
class TrainingRange(layers.Layer):
    """(batch, features) -> the same, with the `columns` held within [`low`, `high`]: the range of the rows
    the model trained on.

    For the date feature: a network has no evidence for the fare trend past the last day it trained on,
    and the periodic embeddings of a day it never saw are arbitrary. Held at the window's edge, a ride
    after the window is priced as one on its last day. On the real sample, a model trained on 2009-2013
    priced the 2014 rides (training and validation rows of the default split) about 5 cents closer this
    way (README, train). Inside the window it changes nothing."""

    def __init__(self, columns: list[int], low: list[float], high: list[float], **kwargs):
        super().__init__(**kwargs)
        self.columns, self.low, self.high = [int(column) for column in columns], [float(x) for x in low], [float(x) for x in high]

    def build(self, input_shape):
        features = int(input_shape[-1])
        low, high = [-math.inf] * features, [math.inf] * features
        for column, lowest, highest in zip(self.columns, self.low, self.high):
            low[column], high[column] = lowest, highest
        self.bounds = (low, high)

    def call(self, inputs):
        low, high = (ops.convert_to_tensor(bound, dtype=inputs.dtype) for bound in self.bounds)
        return ops.minimum(ops.maximum(inputs, low), high)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "columns": self.columns, "low": self.low, "high": self.high}
