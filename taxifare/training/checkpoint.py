"""A training run's progress, kept after every chunk so that a killed run resumes where it stopped.

The folder holds `state.json` (a TrainingState) and the weights file it names (`weights-<chunk>.npz`):
every variable training changes (`current/<name>`) and the model's variables at the best evaluation so
far (`best/<name>`), each under a name that says whose it is: `<layer>/<variable>` for the model's
(`hidden_1/kernel`, `dropout_1/seed_generator_state`), `optimizer/<variable>` for Adam's
(`optimizer/iteration`, `optimizer/hidden_1/kernel/momentum`). Restoring goes by those names, and a file
whose names or shapes are not exactly the model's is refused, so values never land in another
variable of the same shape. (Keras' own variable paths will not do: it numbers the optimizer and the
dropout generators per process, `adam_1/...`, `seed_generator_3/...`.)

Write order: the new weights file is written and flushed first, then state.json is replaced atomically,
then older weights files are removed, so a crash at any moment leaves a state.json naming a complete
weights file. No pickle: plain arrays and JSON only. The registry gets a full Keras file at the end; a
checkpoint needs only the numbers, which take a millisecond to write where `model.save` takes 50.
"""

from __future__ import annotations

import importlib.metadata
import io
import shutil
import zipfile
from pathlib import Path

import numpy as np

from taxifare.core.errors import InputError
from taxifare.core.files import atomic_write_bytes, atomic_write_json, fsync_path, read_json
from taxifare.model.network import training_variables
from taxifare.training.state import TrainingState

# The distributions TensorFlow comes in; the first one installed is this process's.
_TENSORFLOW_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tensorflow-intel", "tf-nightly")


class Checkpoint:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.state_path = self.folder / "state.json"
        # Scratch: the training rows as raw float32, rewritten at every start (see data.prepare_rows).
        self.row_file = self.folder / "rows.f32"
        self._weights_path: Path | None = None  # the weights file named by the state that load() read

    def load(self) -> TrainingState | None:
        """The saved state, or None when there is no usable checkpoint."""
        if not self.state_path.is_file():
            return None
        saved = read_json(self.state_path, "training checkpoint")
        weights_path = self.folder / saved.get("weights_file", "")
        if not weights_path.is_file():
            return None
        try:
            state = TrainingState.from_json(saved)
        except (KeyError, TypeError) as error:
            raise InputError(f"{self.state_path}: training checkpoint is unreadable ({error}); pass --force to start afresh") from None
        self._weights_path = weights_path
        return state

    def save(self, model, state: TrainingState, best_weights: list[np.ndarray]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        weights_file = f"weights-{state.chunks_trained:06d}.npz"
        current = training_variables(model)
        arrays = {f"current/{name}": variable.numpy() for name, variable in zip(variable_names(model, current), current)}
        arrays |= {f"best/{name}": value for name, value in zip(variable_names(model, model.variables), best_weights)}
        weights = io.BytesIO()
        np.savez(weights, **arrays)
        atomic_write_bytes(self.folder / weights_file, weights.getvalue())
        atomic_write_json(self.state_path, {**state.to_json(), "weights_file": weights_file})
        for old in self.folder.glob("weights-*.npz"):
            if old.name != weights_file:
                old.unlink()
        fsync_path(self.folder)

    def restore(self, model) -> list[np.ndarray]:
        """Set the model's and its optimizer's variables to those saved last (the state load() returned);
        the best weights so far, in the order of `model.variables`."""
        path = self._weights_path
        try:
            with np.load(path, allow_pickle=False) as saved:
                arrays = {name: saved[name] for name in saved.files}
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
            raise InputError(f"{path}: training checkpoint is unreadable ({error}); pass --force to start afresh") from None
        current = training_variables(model)
        try:
            values = _named_values(_saved_under(arrays, "current"), variable_names(model, current), current, "current ")
            best = _named_values(_saved_under(arrays, "best"), variable_names(model, model.variables), model.variables, "best ")
        except ValueError as error:
            raise InputError(
                f"{path}: training checkpoint does not fit this model ({error}); pass --force to discard it and start afresh"
            ) from None
        assign_variables(current, values)
        return best

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def remove_scratch(self) -> None:
        """After a failure: the row file (every start rewrites it), and the folder unless it holds a state to
        resume from. A run killed outright leaves both; `taxifare models prune` removes them."""
        if (self.folder / "state.json").is_file():
            self.row_file.unlink(missing_ok=True)
        else:
            self.discard()


def framework_versions() -> dict:
    """TensorFlow's and Keras' versions, from the installed packages (importing them takes seconds)."""
    versions = {"tensorflow": None, "keras": importlib.metadata.version("keras")}
    for distribution in _TENSORFLOW_DISTRIBUTIONS:
        try:
            versions["tensorflow"] = importlib.metadata.version(distribution)
            break
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def variable_names(model, variables: list) -> list[str]:
    """Names of `variables` (the model's and its optimizer's) that are the same in every process."""
    owners = {id(variable): f"{layer.name}/{variable.name}" for layer in model.layers for variable in layer.variables}
    # Adam names a slot after the path of the variable it follows (`hidden_1_kernel_momentum`), which in a
    # Sequential model built here (runs before the numeric embeddings) also holds the model's name.
    followed = sorted(((variable.path.replace("/", "_") + "_", owners[id(variable)]) for variable in model.trainable_variables), key=lambda pair: -len(pair[0]))

    def optimizer_name(variable) -> str:
        for prefix, owner in followed:
            if variable.name.startswith(prefix):
                return f"optimizer/{owner}/{variable.name.removeprefix(prefix)}"
        return f"optimizer/{variable.name}"

    optimizer = {id(variable): optimizer_name(variable) for variable in model.optimizer.variables}
    return [owners.get(id(variable)) or optimizer[id(variable)] for variable in variables]


def copy_training_variables(source, target, source_name: str) -> None:
    """Give `target` the values of `source`'s training variables, matched by name (a warm start)."""
    sources, targets = training_variables(source), training_variables(target)
    values = {name: variable.numpy() for name, variable in zip(variable_names(source, sources), sources)}
    try:
        assign_variables(targets, _named_values(values, variable_names(target, targets), targets))
    except ValueError as error:
        raise InputError(
            f"cannot continue {source_name}: its model is not of this shape, or an earlier taxifare's ({error}); "
            "train afresh without --from"
        ) from None


def _named_values(saved: dict[str, np.ndarray], names: list[str], variables: list, what: str = "") -> list[np.ndarray]:
    """The arrays `saved` holds under `names`, checked against the variables' shapes; `what` says whose."""
    missing = [name for name in names if name not in saved]
    unknown = sorted(set(saved) - set(names))
    if missing or unknown:
        listed = [f"no {what}{name}" for name in missing] + [f"unknown {what}{name}" for name in unknown]
        raise ValueError(", ".join(listed[:3]) + (f" and {len(listed) - 3} more" if len(listed) > 3 else ""))
    for name, variable in zip(names, variables):
        if saved[name].shape != tuple(variable.shape):
            raise ValueError(f"{what}{name} has shape {saved[name].shape}, the model's {tuple(variable.shape)}")
    return [saved[name] for name in names]


def _saved_under(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {key.removeprefix(f"{prefix}/"): value for key, value in arrays.items() if key.startswith(f"{prefix}/")}


def check_shapes(variables: list, values: list[np.ndarray]) -> None:
    if [value.shape for value in values] != [tuple(variable.shape) for variable in variables]:
        raise ValueError("its variables are not this model's")


def assign_variables(variables: list, values: list[np.ndarray]) -> None:
    check_shapes(variables, values)
    for variable, value in zip(variables, values):
        variable.assign(value)
