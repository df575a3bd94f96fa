"""A saved model file: checked without TensorFlow (checksums, members, taxifare's own layers), then loaded in
Keras' safe mode; a damaged file or a layer this taxifare does not know is an InputError of one line."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from taxifare import __version__
from taxifare.core.errors import InputError, first_line
from taxifare.model.network import import_keras

_KERAS_MEMBERS = ("config.json", "model.weights.h5")
# The layers of embeddings.py, which Keras looks up as "taxifare>NAME" when loading.
OWN_LAYERS = ("PeriodicEmbedding", "MemberMean", "QuantileNormal", "DistanceRate", "FlatFare", "MeterSteps", "TrainingRange")


def check_model_file(path: Path) -> None:
    """A cheap check that needs no TensorFlow: zip checksums, the expected members, and no layer of
    taxifare's own that this version does not have."""
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
            names = set(archive.namelist())
            config = archive.read("config.json") if "config.json" in names and not damaged else b"{}"
    except FileNotFoundError:
        raise InputError(f"{path}: model file missing") from None
    except (OSError, zipfile.BadZipFile) as error:
        raise InputError(f"{path}: model file is corrupt ({error})") from None
    missing = [name for name in _KERAS_MEMBERS if name not in names]
    if damaged or missing:
        raise InputError(f"{path}: model file is corrupt ({'bad checksum in ' + damaged if damaged else 'no ' + ', '.join(missing)})")
    try:
        unknown = sorted(_taxifare_layers(json.loads(config)) - {f"taxifare>{name}" for name in OWN_LAYERS})
    except ValueError as error:
        raise InputError(f"{path}: model file is corrupt (config.json: {error})") from None
    if unknown:
        raise InputError(
            f"{path}: the model has layer {unknown[0]}, which this taxifare ({__version__}) does not know: another "
            "version saved it; predict with the taxifare that trained it, or train a new run"
        )


def _taxifare_layers(config) -> set[str]:
    """The registered names of taxifare's own layers in a saved model's config (Keras' are "keras>...")."""
    if isinstance(config, dict):
        found = {config["registered_name"]} if str(config.get("registered_name")).startswith("taxifare>") else set()
        return found.union(*(_taxifare_layers(value) for value in config.values()))
    if isinstance(config, list):
        return set().union(*(_taxifare_layers(value) for value in config))
    return set()


def load_model(path: Path, compile: bool = False):
    """A saved model, loaded in Keras safe mode (no arbitrary code); a damaged file is an InputError."""
    check_model_file(path)
    keras = import_keras()
    import taxifare.model.embeddings  # noqa: F401  (registers the layer that Keras looks up by name)

    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=True)
    except Exception as error:  # Keras raises many types for a damaged archive
        reason = first_line(error) or type(error).__name__
        raise InputError(f"{path}: model file is unreadable ({reason[:200]})") from None
