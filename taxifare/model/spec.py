"""What a fare model is: its shape, objective and pricing rules (ModelSpec, recorded in every run's
params.json), and the choices they default to, each with why; network.py builds it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from taxifare.core.config import Settings

# Periodic embeddings of the numeric features (embeddings.py) with the numeric scalars beside them: chosen
# on the validation split of the real sample against the variants in benchmarks/bench_quality.py (with
# the default learning rate and ensemble size of config.py, chosen the same way).
# 8 dimensions per feature since preprocessor version 4's 38 numeric features: 16 took 10-40% longer to
# train for no better validation MAE.
FREQUENCIES = 16
EMBEDDING_DIMS = 8
# The frequency scale of each round of the member designs in turn: members 1-3 draw their frequencies
# from N(0, 0.25), members 4-6 from N(0, 0.75). Finer periods for the second round: its members err
# otherwise again (on validation, about half a cent better than every member at 0.25).
FREQUENCY_SCALES = (0.25, 0.75)
# What the members of an ensemble see and how they price, in turn (member 1 the first, member 4 the first
# again): "standardized" inputs; the numeric features as normal scores of their training quantiles
# ("quantile", QuantileNormal); standardized inputs with a fare of base + rate x the ride's Manhattan
# distance, both learned per ride ("distance-rate": a meter's shape, which a ReLU network draws poorly).
# Members that differ err differently, so their mean gains more than that of as many alike: on the real
# sample's validation split, 5 such members (with the L1 loss) beat 5 standardized ones by about a cent.
MEMBER_DESIGNS = ("standardized", "quantile", "distance-rate")
# Where each member's flat-fare head (embeddings.FlatFare) starts, on rides with an end within
# FLAT_FARE_RADIUS_KM of JFK (its terminals and their roads): the flat fare between JFK and Manhattan, $45
# until 4 September 2012 and $52 since, alone or with a tunnel's toll added ($49.57, $49.80, $56.80 and
# $57.33 as the tolls rose), the six commonest fares of such rides in the real sample. Without the heads,
# these rides made most of the network's gap to LightGBM (benchmarks/model-selection.md).
FLAT_FARES = (45.0, 49.57, 49.80, 52.0, 56.80, 57.33)
FLAT_FARE_RADIUS_KM = 2.0
# The meter in New York: $2.50 as the flag drops, then a step of $0.40 (a fifth of a mile, or a minute
# slow) until the fare rise of 4 September 2012 and of $0.50 since. 94% and 96% of the real sample's
# training fares before and after it are on those steps; the rest are mostly flat fares and tolls. A
# model with meter steps (embeddings.MeterSteps) gives each fare at its nearest step: on the real
# sample's validation, dev and test rows, 0.5-0.8 cents closer than between them.
METER_START = 2.50
METER_STEPS = (0.40, 0.50)
METER_RISE = dt.datetime(2012, 9, 4)


@dataclass(frozen=True)
class ModelSpec:
    """What fixes the model's shape and objective; recorded in every run's params.json."""

    hidden_units: tuple[int, ...]
    dropout: float
    loss: str
    members: int  # networks trained side by side, each on its own loss; the prediction is their mean
    frequencies: int = FREQUENCIES  # 0: the numeric features go in as standardized scalars
    embedding_dims: int = EMBEDDING_DIMS
    frequency_scales: tuple[float, ...] = FREQUENCY_SCALES  # of the rounds of designs in turn
    scalars: bool = True  # the numeric features also go in as standardized scalars, beside their embeddings
    designs: tuple[str, ...] = MEMBER_DESIGNS  # of the members in turn; a single network is of the first
    flat_fares: tuple[float, ...] = FLAT_FARES  # where the JFK flat-fare heads start; () for none
    meter_steps: bool = True  # fares given at the meter's nearest step (METER_STEPS)

    @classmethod
    def of(cls, settings: Settings) -> "ModelSpec":
        return cls(settings.hidden_units, settings.dropout, settings.loss, settings.members)

    def describe(self) -> str:
        dropout = f" -> Dropout({self.dropout:g})" if self.dropout else ""
        scales = " or ".join(f"{scale:g}" for scale in dict.fromkeys(self.member_scales()))
        hidden = "".join(f" -> Dense({units}, relu){dropout}" for units in self.hidden_units)
        embedding = (
            f" -> PeriodicEmbedding(numeric features: {self.frequencies} frequencies ~ N(0, {scales}), "
            f"Dense({self.embedding_dims}, relu) each{', beside the scalars' if self.scalars else ''})"
            if self.frequencies
            else ""
        )
        designs = self.member_designs()
        head = " -> Dense(1)" + (", or Dense(2) -> base + rate x distance" if "distance-rate" in designs else "")
        flat = (
            f" -> FlatFare(within {FLAT_FARE_RADIUS_KM:g} km of JFK: a gate towards {len(self.flat_fares)} learned flat fares)"
            if self.flat_fares
            else ""
        )
        member = f"{embedding}{hidden}{head}{flat}"
        if self.members > 1:
            counts = ", ".join(f"{designs.count(design)} {design}" for design in dict.fromkeys(designs))
            median = f" (their median within {FLAT_FARE_RADIUS_KM:g} km of JFK)" if self.flat_fares else ""
            member = f" -> {self.members} networks ({counts}), mean of their fares{median}: ({member.removeprefix(' -> ')})"
        quantiles = " and QuantileNormal(training-row quantiles)" if "quantile" in designs else ""
        meter = ""
        if self.meter_steps:
            before, after = METER_STEPS
            near_jfk = f", not within {FLAT_FARE_RADIUS_KM:g} km of JFK" if self.flat_fares else ""
            meter = f" -> MeterSteps(${METER_START:.2f} + steps of ${before:.2f}, of ${after:.2f} from {METER_RISE:%Y-%m-%d}{near_jfk})"
        return f"TrainingRange(date within the training window) -> Normalization(training-row mean and variance){quantiles}{member}{meter}"

    def member_designs(self) -> list[str]:
        return [self.designs[index % len(self.designs)] for index in range(self.members)]

    def member_scales(self) -> list[float]:
        rounds = [index // len(self.designs) for index in range(self.members)]
        return [self.frequency_scales[round_ % len(self.frequency_scales)] for round_ in rounds]
