"""One immutable settings object, built once from flags, environment, `.env` and defaults.

Precedence: command-line flag > process environment > `.env` file > default.
No other module reads `os.environ`; everything that needs configuration receives a `Settings`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import functools
import logging
import os
import re
from pathlib import Path
from typing import Any, Callable, Mapping

from dotenv.parser import parse_stream

from taxifare.core.dates import UTC_LABELS, WALL_CLOCK, parse_datetime
from taxifare.core.errors import InputError

log = logging.getLogger("taxifare")

# BigQuery naming rules: project ids are 6-30 lowercase letters, digits and hyphens (some legacy
# ids carry a "domain:" prefix); dataset and table names are letters, digits and underscores.
_PROJECT_RE = re.compile(r"^([a-z][a-z0-9.-]*:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_DATASET_RE = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
_DATA_SIZE_RE = re.compile(r"^[A-Za-z0-9_]{1,64}$")
MAX_CHUNK_SIZE = 10_000_000


@dataclasses.dataclass(frozen=True)
class Settings:
    # New York wall-clock times (naive), as taxifare.core.dates reads every date.
    min_date: dt.datetime
    max_date: dt.datetime
    # What " UTC" after a time means: the New York wall clock (the public NYC data), or an instant.
    utc_label: str
    data_size: str
    chunk_size: int
    local_data_path: Path
    local_registry_path: Path
    gcp_project: str | None
    gcp_project_data: str
    bq_dataset: str
    bigquery_emulator_host: str | None
    bq_deadline: float
    learning_rate: float
    batch_size: int
    epochs: int
    patience: int
    lr_patience: int
    eval_every: int
    hidden_units: tuple[int, ...]
    dropout: float
    loss: str
    members: int
    seed: int
    dask_scheduler_address: str | None
    workers: int | None
    # Multi-worker training (see training/distributed.py): the cluster and this task, as JSON; None alone.
    tf_config: str | None = None
    collective_timeout: float = 120.0
    # MLflow tracking (tracking.py): where every train logs a run; None: no tracking.
    mlflow_tracking_uri: str | None = None
    mlflow_experiment_name: str | None = None  # None: taxifare-<data set>
    # The settings that a flag, the environment or `.env` set; the others hold their defaults.
    given: frozenset[str] = frozenset()

    @property
    def window_tag(self) -> str:
        return f"{_date_tag(self.min_date)}_{_date_tag(self.max_date)}_{self.data_size}"

    @property
    def raw_cache_path(self) -> Path:
        return self.local_data_path / "raw" / f"query_{self.window_tag}.csv"

    @property
    def processed_path(self) -> Path:
        return self.local_data_path / "processed" / f"processed_{self.window_tag}.csv"

    @property
    def bq_table(self) -> str:
        return f"{self.gcp_project_data}.{self.bq_dataset}.raw_{self.data_size}"


def _date_tag(value: dt.datetime) -> str:
    return f"{value:%Y-%m-%d}" if value.time() == dt.time(0) else f"{value:%Y-%m-%dT%H%M%S}"


def parse_date(name: str, text: str, utc_label: str = WALL_CLOCK) -> dt.datetime:
    """An ISO 8601 date or datetime (the grammar of taxifare.core.dates) as a naive New York wall-clock datetime."""
    try:
        return parse_datetime(str(text), utc_label)
    except ValueError as error:
        raise InputError(f"{name}: {error}") from None


def _int_in(low: int, high: int) -> Callable[[str, str], int]:
    def parse(name: str, text: str) -> int:
        try:
            value = int(str(text).strip())
        except ValueError:
            raise InputError(f"{name}: expected a whole number, received {text!r}") from None
        if not low <= value <= high:
            raise InputError(f"{name}: expected a number from {low} to {high}, received {value}")
        return value

    return parse


def _number(name: str, text: str) -> float:
    try:
        return float(str(text).strip())
    except ValueError:
        raise InputError(f"{name}: expected a number, received {text!r}") from None


def _positive_float(name: str, text: str) -> float:
    value = _number(name, text)
    if not 0 < value < float("inf"):
        raise InputError(f"{name}: expected a positive finite number, received {text!r}")
    return value


def _matching(pattern: re.Pattern[str], what: str) -> Callable[[str, str], str]:
    def parse(name: str, text: str) -> str:
        text = str(text).strip()
        if not pattern.fullmatch(text):
            raise InputError(f"{name}: {text!r} is not {what}")
        return text

    return parse


def _units(name: str, text: str) -> tuple[int, ...]:
    parts = [part.strip() for part in str(text).split(",")]
    if not all(part.isdigit() and 1 <= int(part) <= 65_536 for part in parts) or len(parts) > 16:
        raise InputError(f"{name}: expected layer widths separated by commas, e.g. 256,128,64; received {text!r}")
    return tuple(int(part) for part in parts)


def _share(name: str, text: str) -> float:
    value = _number(name, text)
    if not 0 <= value < 1:
        raise InputError(f"{name}: expected a number from 0 to below 1, received {text!r}")
    return value


def _one_of(*choices: str) -> Callable[[str, str], str]:
    def parse(name: str, text: str) -> str:
        value = str(text).strip().lower()
        if value not in choices:
            raise InputError(f"{name}: expected one of {', '.join(choices)}; received {text!r}")
        return value

    return parse


LOSSES = ("huber", "mse", "mae")


def _path(name: str, text: str) -> Path:
    return Path(str(text)).expanduser()


def _text(name: str, text: str) -> str:
    return str(text).strip()


# setting -> (environment variable, default, parser)
_FIELDS: dict[str, tuple[str, Any, Callable[[str, str], Any]]] = {
    "utc_label": ("UTC_LABEL", WALL_CLOCK, _one_of(*UTC_LABELS)),  # before the dates, which it reads
    "min_date": ("MIN_DATE", "2009-01-01", parse_date),
    "max_date": ("MAX_DATE", "2015-01-01", parse_date),
    "data_size": ("DATA_SIZE", "demo", _matching(_DATA_SIZE_RE, "a plain name of letters, digits and underscores")),
    "chunk_size": ("CHUNK_SIZE", "100000", _int_in(1, MAX_CHUNK_SIZE)),
    "local_data_path": ("LOCAL_DATA_PATH", "~/.taxifare/data", _path),
    "local_registry_path": ("LOCAL_REGISTRY_PATH", "~/.taxifare/registry", _path),
    "gcp_project": ("GCP_PROJECT", None, _matching(_PROJECT_RE, "a valid Google Cloud project id")),
    "gcp_project_data": (
        "GCP_PROJECT_DATA",
        "wagon-public-datasets",
        _matching(_PROJECT_RE, "a valid Google Cloud project id"),
    ),
    "bq_dataset": ("BQ_DATASET", "taxifare", _matching(_DATASET_RE, "a valid BigQuery dataset name")),
    "bigquery_emulator_host": ("BIGQUERY_EMULATOR_HOST", None, _text),
    "bq_deadline": ("BQ_DEADLINE", "120", _positive_float),
    "learning_rate": ("LEARNING_RATE", "0.002", _positive_float),
    "batch_size": ("BATCH_SIZE", "256", _int_in(1, 1_000_000)),
    "epochs": ("EPOCHS", "100", _int_in(1, 10_000)),
    "patience": ("PATIENCE", "8", _int_in(1, 10_000)),
    "lr_patience": ("LR_PATIENCE", "3", _int_in(1, 10_000)),
    "eval_every": ("EVAL_EVERY", "10", _int_in(1, 1_000_000)),
    "hidden_units": ("HIDDEN_UNITS", "128,64", _units),
    "dropout": ("DROPOUT", "0.1", _share),
    "loss": ("LOSS", "mae", _one_of(*LOSSES)),
    # Five networks: chosen on the validation split of the real sample (benchmarks/bench_quality.py).
    "members": ("MEMBERS", "5", _int_in(1, 64)),
    "seed": ("SEED", "42", _int_in(0, 2**31 - 1)),
    "dask_scheduler_address": ("DASK_SCHEDULER_ADDRESS", None, _text),
    "workers": ("DASK_WORKERS", None, _int_in(1, 1024)),
    "tf_config": ("TF_CONFIG", None, _text),
    "collective_timeout": ("COLLECTIVE_TIMEOUT", "120", _positive_float),
    "mlflow_tracking_uri": ("MLFLOW_TRACKING_URI", None, _text),
    "mlflow_experiment_name": ("MLFLOW_EXPERIMENT_NAME", None, _text),
}


_DATES = ("min_date", "max_date")
SETTING_NAMES = tuple(env_name for env_name, _, _ in _FIELDS.values())
# How close (difflib ratio) an unknown .env key must be to a setting's name to be taken for a typo of it.
_TYPO_CUTOFF = 0.75
# MLflow's own variables (MLFLOW_TRACKING_USERNAME, ...) are close to MLFLOW_TRACKING_URI, yet no typos of it.
_OTHER_TOOLS_PREFIXES = ("MLFLOW_",)


def read_dotenv(path: Path) -> dict[str, str]:
    """The settings of a .env file, read as python-dotenv reads it: comments, quotes, `export` prefixes.

    Values are literal (no ${VAR} expansion). A key that looks like a misspelt setting is an error; any
    other unknown key is ignored with a warning, since taxifare passes .env values on to nothing else.
    """
    if not path.is_file():
        return {}
    values = {}
    with path.open(encoding="utf-8", errors="replace") as stream:
        for binding in parse_stream(stream):
            where = f"{path}:{binding.original.line}"
            if binding.error:
                raise InputError(f"{where}: expected KEY=VALUE, received {binding.original.string.strip()[:60]!r}")
            if binding.key is not None and _known_setting(where, binding.key) and binding.value is not None:
                values[binding.key] = binding.value
    return values


def _known_setting(where: str, key: str) -> bool:
    if key in SETTING_NAMES:
        return True
    near = [] if key.upper().startswith(_OTHER_TOOLS_PREFIXES) else difflib.get_close_matches(key.upper(), SETTING_NAMES, n=1, cutoff=_TYPO_CUTOFF)
    if near:
        raise InputError(f"{where}: unknown setting {key} in .env; did you mean {near[0]}?")
    log.warning("%s: %s is not a taxifare setting; ignored (taxifare does not export .env values)", where, key)
    return False


def load_settings(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    dotenv_path: Path | None = Path(".env"),
) -> Settings:
    """Merge the sources by precedence and validate every value."""
    flags = {key: value for key, value in (flags or {}).items() if value is not None}
    environ = os.environ if environ is None else environ
    dotenv = read_dotenv(dotenv_path) if dotenv_path else {}
    values, given = {}, set()
    for field, (env_name, default, parse) in _FIELDS.items():
        given.add(field)
        if field in flags:
            raw, origin = flags[field], "--" + field.replace("_", "-")
        elif environ.get(env_name, "") != "":
            raw, origin = environ[env_name], env_name
        elif dotenv.get(env_name, "") != "":
            raw, origin = dotenv[env_name], f"{env_name} (.env)"
        else:
            raw, origin = default, env_name
            given.discard(field)
        if field in _DATES:
            parse = functools.partial(parse_date, utc_label=values["utc_label"])
        values[field] = None if raw is None else parse(origin, raw)
    settings = Settings(**values, given=frozenset(given))
    if settings.min_date >= settings.max_date:
        raise InputError(
            f"min_date {settings.min_date:%Y-%m-%d %H:%M:%S} must be before max_date {settings.max_date:%Y-%m-%d %H:%M:%S}"
        )
    return settings
