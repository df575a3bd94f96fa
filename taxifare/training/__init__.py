"""Training: processed chunks -> one Keras model -> a run in the registry.

`data` (the processed CSV, its three splits, feature statistics, chunk plans) -> `start` (a run fresh,
warm-started or resumed) -> `loop` (passes, early stopping, the learning-rate schedule, checkpoints
through `checkpoint` and `state`) -> `report` (test figures, params, metrics, history and plot, published
to the registry). On several machines, `distributed` (the team of workers) and `shards` (their rows).
"""

from taxifare.training.loop import TrainResult, checkpoint_folder, train

__all__ = ["TrainResult", "checkpoint_folder", "train"]
