"""Small processed data sets for the training and prediction tests, made by the real pipeline."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from taxifare.core.config import Settings, load_settings
from taxifare.preprocessing.run import preprocess
from taxifare.sources.demo import write_demo_rides


def demo_settings(folder: Path, **flags) -> Settings:
    """Settings for data and registry under `folder`, from flags only (no environment, no .env)."""
    base = {"local_data_path": str(folder / "data"), "local_registry_path": str(folder / "registry"), "data_size": "demo"}
    return load_settings({**base, **flags}, environ={}, dotenv_path=None)


def processed_demo(folder: Path, rides: int, seed: int = 7) -> Settings:
    """Preprocess `rides` synthetic rides into folder/data; the settings point at the processed file."""
    settings = demo_settings(folder, chunk_size=50_000)
    write_demo_rides(settings.raw_cache_path, rows=rides, seed=seed)
    preprocess(settings)
    return settings


def with_registry(settings: Settings, registry: Path, **changes) -> Settings:
    return dataclasses.replace(settings, local_registry_path=registry, **changes)


def trained_demo(folder: Path, rides: int, **training) -> Settings:
    """`rides` synthetic rides preprocessed into folder/data and one run trained on them (the `training`
    settings, such as epochs) into folder/registry; the settings point at both."""
    from taxifare.training.loop import train

    settings = with_registry(processed_demo(folder, rides), folder / "registry", **training)
    train(settings)
    return settings
