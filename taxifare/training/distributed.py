"""Synchronous data-parallel training on several machines with tf.distribute.MultiWorkerMirroredStrategy.

Every worker runs the same `taxifare train` command with its own TF_CONFIG (the standard variable set by
Vertex AI custom jobs, Kubeflow's TFJob and most schedulers). The loop (loop.py) is the same; a `Team`
stands in for the single process at the few places where the workers must agree:

- Sharding (shards.py): worker k of n owns the spans k, k+n, k+2n... of the processed CSV. It parses, hashes and
  splits only those (its own row file, statistics and held-out candidates); the workers then exchange
  per-span counts, so the caps on the validation and test sets cut at the same place in file order as a
  single process would, and the same rows land in each set. Rows a cap gives back to training stay with
  the worker that read them. Statistics are merged from each worker's, the held-out rows gathered.
- Steps: each pass walks the single-process chunk order; worker k trains the spans it owns, a chunk of
  ceil(SPANS_PER_CHUNK / n) of them at a time, so a chunk of all the workers together is still about
  SPANS_PER_CHUNK spans. Every worker knows every span's row count, so all take the same number of steps
  (the largest share's rows / the per-worker batch); the shorter shares are padded with rows of weight
  zero. `--batch-size` is the global batch: each worker takes batch_size / n rows per step, the loss is
  summed and divided by batch_size, and the optimizer sums the gradients across workers.
- Decisions: the chief alone scores the validation rows; the figures are broadcast, so early stopping and
  the learning-rate schedule take the same steps on every worker. The chief alone writes checkpoints,
  scores the test rows and publishes the run; the others get its folder name and exit 0.
- Failures: every exchange has a deadline (COLLECTIVE_TIMEOUT); a lost peer or a timeout is a one-line
  TaxifareError on every survivor; rerunning the same commands resumes from the chief's last checkpoint,
  its weights and state broadcast to the others.

Keras' `fit` fails under this strategy (keras-team/keras#20585), so a chunk is trained by our own step:
`strategy.run` over the same Keras model, built in the strategy's scope.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np

from taxifare.core.errors import InputError, TaxifareError, first_line
from taxifare.core.files import describe_os_error
from taxifare.model.network import STEPS_PER_EXECUTION, fare_loss, import_keras, training_variables
from taxifare.registry.store import Run
from taxifare.training.data import PreparedRows, ProcessedData
from taxifare.training.report import fare_errors
from taxifare.training.shards import Share, TeamChunk, load_team_chunk, prepare_share, worker_chunks
from taxifare.training.state import Position, TrainingState
from taxifare.training.tf_cluster import Cluster, configure_coordination, parse_tf_config, wait_for_peers

log = logging.getLogger("taxifare")
T = TypeVar("T")

def join_team(settings) -> "Team | None":
    """This worker's team when settings.tf_config names a cluster of several tasks; None otherwise."""
    cluster = parse_tf_config(settings.tf_config)
    if cluster is None:
        return None
    if settings.batch_size % cluster.size:
        raise InputError(
            f"--batch-size {settings.batch_size} is the global batch and must split evenly across the "
            f"{cluster.size} workers of TF_CONFIG; received {settings.batch_size}, expected a multiple of {cluster.size}"
        )
    return Team.join(cluster, settings.collective_timeout)


class Team:
    """The workers of one multi-worker run, as the training loop sees them."""

    def __init__(self, cluster: Cluster, strategy, timeout: float):
        self.cluster, self.strategy, self.timeout = cluster, strategy, timeout
        self.index, self.size = cluster.index, cluster.size
        self.is_chief = self.index == 0
        self.share: Share | None = None
        self._steps = None
        self._plain = None

    # Joining -------------------------------------------------------------------------------------

    @classmethod
    def join(cls, cluster: Cluster, timeout: float) -> "Team":
        """Start this worker's TensorFlow server and wait, at most `timeout` seconds, for the others."""
        keras = import_keras()
        import tensorflow as tf

        # It warns at every eager exchange (a handful per chunk, ~20 ms each: not worth a traced function).
        tf.get_logger().setLevel("ERROR")
        log.info("joining %d workers as %s; waiting up to %.0f s for the others", cluster.size, cluster.name(cluster.index), timeout)
        configure_coordination(cluster, timeout)
        resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
            tf.train.ClusterSpec(cluster.jobs), task_type=cluster.task_type, task_id=cluster.task_index, rpc_layer="grpc"
        )
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.RING, timeout_seconds=timeout
        )
        # TensorFlow waits for every peer without end, holding the GIL (no watchdog thread can run): so the
        # bound is a check first that every peer is up and listening.
        wait_for_peers(cluster, timeout)
        try:
            strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver, communication_options=options)
        except (tf.errors.OpError, RuntimeError, ValueError) as error:
            raise TaxifareError(f"could not join the cluster as {cluster.name(cluster.index)}: {first_line(error)[:200]}") from None
        del keras
        return cls(cluster, strategy, timeout)

    def scope(self):
        return self.strategy.scope()

    # Exchanges -----------------------------------------------------------------------------------

    def sum(self, values: np.ndarray, timeout: float | None = None) -> np.ndarray:
        """The element-wise sum of `values` over the workers (every worker passes the same shape)."""
        import tensorflow as tf

        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout or self.timeout)

        def reduce(tensor):
            # tf.identity: an all-reduce of a function's own input finds no device to reduce to.
            return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, tf.identity(tensor), options=options)

        return self._exchange(lambda: self.strategy.experimental_local_results(self.strategy.run(reduce, args=(tf.constant(values),)))[0].numpy())

    def _exchange(self, call: Callable[[], T]) -> T:
        import tensorflow as tf

        try:
            return call()
        except tf.errors.OpError as error:
            raise TaxifareError(
                f"lost contact with the other workers ({type(error).__name__}: {first_line(error)[:160]}); "
                "rerun the same command on every worker to resume from the chief's last checkpoint"
            ) from None

    def gather_json(self, value, timeout: float | None = None) -> list:
        """Every worker's `value` (JSON-serializable), in worker order."""
        payload = np.frombuffer(json.dumps(value, default=np.ndarray.tolist).encode(), dtype=np.uint8)
        lengths = self.sum(self._mine(len(payload)), timeout).astype(np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)])
        buffer = np.zeros(int(starts[-1]), dtype=np.float32)
        buffer[starts[self.index] : starts[self.index + 1]] = payload
        gathered = self.sum(buffer, timeout).astype(np.uint8).tobytes()
        return [json.loads(gathered[starts[i] : starts[i + 1]]) for i in range(self.size)]

    def from_chief(self, value):
        """The chief's `value` (JSON-serializable; arrays become lists), on every worker."""
        return self.gather_json(value if self.is_chief else None)[0]

    def _mine(self, value: float) -> np.ndarray:
        slots = np.zeros(self.size)
        slots[self.index] = value
        return slots

    def check_in(self, step: Callable[[], T]) -> T:
        """Run `step` on every worker; if it fails on any, every worker stops with that worker's message."""
        try:
            result, error = step(), None
        except OSError as caught:
            result, error = None, describe_os_error(caught)
        except TaxifareError as caught:
            result, error = None, caught
        reports = self.gather_json(None if error is None else {"message": str(error), "exit_code": error.exit_code})
        if error is not None:
            raise error
        for index, report in enumerate(reports):
            if report:
                failure = TaxifareError(f"{self.cluster.name(index)} stopped: {report['message']}")
                failure.exit_code = report["exit_code"]
                raise failure
        return result

    def build(self, make_model: Callable[[], object]):
        """The model, built in the strategy's scope (its variables mirrored on every worker)."""
        with self.strategy.scope():
            model = make_model()
            training_variables(model)  # Adam's variables, in the scope too
        return model

    def share_training(self, training) -> None:
        """The chief's state and variables (fresh, warm-started or restored from its checkpoint) everywhere."""
        saved = self.from_chief(training.state.to_json())
        if not self.is_chief:
            training.state = TrainingState.from_json(saved)
        self.broadcast_variables(training_variables(training.model))

    def published(self, run: Run | bool) -> Run:
        """The run the chief published, on every worker (the others need no access to its registry)."""
        shared = self.from_chief(run and {"run_id": run.run_id, "path": str(run.path), "params": run.params, "metrics": run.metrics})
        if not self.is_chief:
            log.info("the chief published run %s", shared["run_id"])
        return Run(shared["run_id"], Path(shared["path"]), shared["params"], shared["metrics"])

    def broadcast_variables(self, variables: list) -> None:
        """Give every worker the chief's values of `variables`."""
        values = [np.asarray(variable.numpy()) for variable in variables]
        flat = np.concatenate([value.astype(np.float64).ravel() for value in values])
        shared = self.sum(flat if self.is_chief else np.zeros_like(flat))
        start = 0
        for variable, value in zip(variables, values):
            variable.assign(shared[start : start + value.size].reshape(value.shape).astype(value.dtype))
            start += value.size

    # Rows (shards.py) ---------------------------------------------------------------------------

    def prepare_rows(self, data: ProcessedData, row_file: Path) -> PreparedRows:
        """The whole file's PreparedRows on every worker, as a single process would have them; this
        worker's own training rows in `self.share`."""
        prepared, self.share = prepare_share(self, data, row_file)
        return prepared

    def chunks_per_pass(self, span_count: int, seed: int) -> int:
        return len(worker_chunks(span_count, seed, 0, self.size)[0])

    def load_chunk(self, training, position: Position) -> TeamChunk:
        return load_team_chunk(self, self.share, training, position)

    # Training and scoring ------------------------------------------------------------------------

    def fit(self, training, chunk: TeamChunk) -> dict:
        if chunk.batches is None:
            return {"loss": None, "mae": None}
        if self._steps is None:
            self._steps = _train_steps(self.strategy, training.model, training.settings.loss, training.settings.batch_size)
        features, fares, weights = chunk.batches
        sums = np.zeros(3)
        for start in range(0, len(features), STEPS_PER_EXECUTION):
            block = slice(start, start + STEPS_PER_EXECUTION)
            sums += self._exchange(lambda: self._steps(features[block], fares[block], weights[block]).numpy())
        loss_sum, error_sum, rows = self.sum(sums)
        return {"loss": float(loss_sum / rows), "mae": float(error_sum / rows)}

    def plain_model(self, training):
        """A model outside the strategy with the training model's current variables (for scoring and
        saving: Keras' predict and save are not for a multi-worker model)."""
        if self._plain is None:
            self._plain = training.make_model()
        source, target = training_variables(training.model), training_variables(self._plain)
        for variable, value in zip(target, source):
            variable.assign(value.numpy())
        return self._plain

    def score(self, training, rows: np.ndarray) -> tuple[float, float]:
        """The chief's MAE and RMSE of the training model on `rows`, on every worker."""
        figures = np.array(fare_errors(self.plain_model(training), rows)) if self.is_chief else np.zeros(2)
        mae, rmse = self.sum(figures)
        return float(mae), float(rmse)


def _train_steps(strategy, model, loss: str, global_batch: int):
    """A function running a block of training steps, each `strategy.run` of one step on every worker."""
    import tensorflow as tf

    # The single process's objective (model.fare_loss), summed over this worker's weighted rows.
    summed_loss = fare_loss(loss, reduction="sum")

    def step(features, fares, weights):
        with tf.GradientTape() as tape:
            predictions = model(features, training=True)
            loss_sum = summed_loss(fares[:, None], predictions, sample_weight=weights)
            # Divided by the global batch; the optimizer sums the workers' gradients.
            objective = loss_sum / global_batch
        gradients = tape.gradient(objective, model.trainable_variables)
        model.optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        # Averaged over the members of an ensemble, as fit's "mae" metric is.
        error_sum = tf.reduce_sum(tf.reduce_mean(tf.abs(predictions - fares[:, None]), axis=1) * weights)
        return tf.stack([loss_sum, error_sum, tf.reduce_sum(weights)])

    @tf.function(
        input_signature=[tf.TensorSpec([None, None, None]), tf.TensorSpec([None, None]), tf.TensorSpec([None, None])]
    )
    def steps(features, fares, weights):
        sums = tf.zeros(3)
        for index in tf.range(tf.shape(features)[0]):
            sums += strategy.experimental_local_results(strategy.run(step, args=(features[index], fares[index], weights[index])))[0]
        return sums

    return steps
