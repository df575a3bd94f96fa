"""Training: processed chunks -> one Keras model -> a run in the registry.

`data` (the processed CSV, its three splits, feature statistics, chunk plans) -> `loop` (passes, early
stopping, the learning-rate schedule, checkpoints through `checkpoint` and `state`) -> `report` (test
figures, params, metrics, history and plot, published to the registry).
"""

from taxifare.training.loop import TrainResult, checkpoint_folder, train

__all__ = ["TrainResult", "checkpoint_folder", "train"]
