"""Adam that keeps an exponential moving average of the weights, for the caller to score and publish.

Keras' optimizers keep one with `use_ema=True`, but every `fit` call ends by writing the averages over the
weights: right for one `fit`, wrong for the chunk loop, which calls `fit` once per chunk and would then
train on from the averages. Here `fit` leaves the weights alone; `averaged_weights` puts the averages in
their place for a while (to score the model, or to keep its best weights), then the trained values back.
The averages are optimizer variables, so checkpoints and warm starts carry them like Adam's moments.

Imported only when a model is built or loaded (it imports Keras); registered for Keras serialization.
"""

from __future__ import annotations

import contextlib

import keras


@keras.saving.register_keras_serializable(package="taxifare")
class AveragingAdam(keras.optimizers.Adam):
    def finalize_variable_values(self, var_list):
        """What `fit` calls when it ends: nothing here (see the module's docstring)."""

    def write_averages(self, var_list) -> None:
        super().finalize_variable_values(var_list)


@contextlib.contextmanager
def averaged_weights(model):
    """Within, the model's trainable weights are their moving averages if its optimizer keeps them."""
    optimizer = model.optimizer
    if not isinstance(optimizer, AveragingAdam) or not optimizer.built:
        yield
        return
    trained = [variable.numpy() for variable in model.trainable_variables]
    optimizer.write_averages(model.trainable_variables)
    try:
        yield
    finally:
        for variable, value in zip(model.trainable_variables, trained):
            variable.assign(value)
