"""A TF_CONFIG as a cluster of workers: reading and checking it, and waiting, within a bound, for every
peer to answer before TensorFlow's own join (which waits forever, holding Python's lock)."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass

from taxifare.core.errors import InputError, TaxifareError

TF_CONFIG_EXAMPLE = '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}'
_JOBS = ("chief", "worker")


@dataclass(frozen=True)
class Cluster:
    """The workers of a TF_CONFIG, chief first (the chief job's task, else worker 0), and this task."""

    jobs: dict  # job name -> list of "host:port"
    task_type: str
    task_index: int

    @property
    def tasks(self) -> list[tuple[str, int]]:
        return [(job, index) for job in _JOBS for index in range(len(self.jobs.get(job, [])))]

    @property
    def size(self) -> int:
        return len(self.tasks)

    @property
    def index(self) -> int:
        return self.tasks.index((self.task_type, self.task_index))

    def address(self, index: int) -> str:
        job, task = self.tasks[index]
        return self.jobs[job][task]

    def name(self, index: int) -> str:
        return f"{self.tasks[index][0]} {self.tasks[index][1]} ({self.address(index)})"


def parse_tf_config(text: str | None) -> Cluster | None:
    """The cluster of a TF_CONFIG; None without one, or for a cluster of one task (the single-process
    path). InputError for anything a worker could not join with."""
    if not text:
        return None
    try:
        config = json.loads(text)
    except ValueError as error:
        raise InputError(f"TF_CONFIG is not valid JSON ({error}); expected e.g. {TF_CONFIG_EXAMPLE}") from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict) or not isinstance(config.get("task"), dict):
        raise InputError(f"TF_CONFIG: expected an object with \"cluster\" and \"task\"; received {text[:120]!r}")
    jobs, task = config["cluster"], config["task"]
    other = sorted(set(jobs) - set(_JOBS))
    if other:
        raise InputError(f"TF_CONFIG: job(s) {', '.join(other)} are not supported; expected chief and worker only")
    for job, addresses in jobs.items():
        if not isinstance(addresses, list) or not all(_is_address(address) for address in addresses):
            raise InputError(f"TF_CONFIG: cluster.{job} must be a list of \"host:port\" addresses; received {addresses!r}"[:300])
    if len(jobs.get("chief", [])) > 1:
        raise InputError(f"TF_CONFIG: at most one chief; received {len(jobs['chief'])}")
    everyone = [address for job in _JOBS for address in jobs.get(job, [])]
    if len(set(everyone)) != len(everyone):
        raise InputError(f"TF_CONFIG: an address appears twice in the cluster: {everyone}"[:300])
    task_type, task_index = task.get("type"), task.get("index", 0)
    if task_type not in jobs or not isinstance(task_index, int) or not 0 <= task_index < len(jobs[task_type]):
        raise InputError(
            f"TF_CONFIG: task {task_type!r} {task_index!r} is not in the cluster "
            f"({', '.join(f'{job}: {len(jobs[job])}' for job in jobs)})"
        )
    cluster = Cluster({job: list(jobs[job]) for job in _JOBS if job in jobs}, task_type, task_index)
    return cluster if cluster.size > 1 else None


def _is_address(address) -> bool:
    host, _, port = str(address).rpartition(":")
    return isinstance(address, str) and bool(host) and port.isdigit() and 0 < int(port) < 65536


def configure_coordination(cluster: Cluster, timeout: float) -> None:
    """Bounded waits in TensorFlow's coordination service (registration, heartbeats, shutdown), set before
    the strategy sets its own defaults; skipped if this TensorFlow has no such (private) hook."""
    try:
        from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
        from tensorflow.python.eager import context
    except ImportError:
        return
    leader = f"/job:{cluster.tasks[0][0]}/replica:0/task:0"
    milliseconds = int(timeout * 1000)
    context.context().configure_coordination_service(
        service_type="standalone",
        service_leader=leader,
        coordinated_jobs=[coordination_config_pb2.CoordinatedJob(name=job, num_tasks=len(cluster.jobs[job])) for job in cluster.jobs],
        cluster_register_timeout_in_ms=milliseconds,
        heartbeat_timeout_in_ms=min(milliseconds, 30_000),
        shutdown_barrier_timeout_in_ms=min(milliseconds, 30_000),
    )


def wait_for_peers(cluster: Cluster, timeout: float) -> None:
    """Listen on this task's port and connect to every peer's until all answered, at most `timeout`
    seconds; then free the port for TensorFlow. A peer seen up joins: each is in this loop or listening."""
    own = cluster.address(cluster.index)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("", int(own.rpartition(":")[2])))
        listener.listen(64)
    except OSError as error:
        listener.close()
        raise TaxifareError(f"cannot listen on {own}, this task's address in TF_CONFIG ({error.strerror or error})") from None
    waiting = [index for index in range(cluster.size) if index != cluster.index]
    deadline = time.monotonic() + timeout
    try:
        while waiting and time.monotonic() < deadline:
            waiting = [index for index in waiting if not _answers(cluster.address(index))]
            time.sleep(0.2 if waiting else 0)
    finally:
        listener.close()
    if waiting:
        peers = ", ".join(cluster.name(index) for index in waiting)
        raise TaxifareError(
            f"the other workers did not all join within {timeout:.0f} s (no answer from {peers}); check that each "
            "runs `taxifare train` with its own TF_CONFIG and that every address is reachable (COLLECTIVE_TIMEOUT sets the wait)"
        )


def _answers(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
        return True
    except OSError:
        return False


def local_tf_configs(count: int) -> list[str]:
    """TF_CONFIGs of a cluster of `count` workers on 127.0.0.1, at ports free now: one per worker."""
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    workers = [f"127.0.0.1:{sock.getsockname()[1]}" for sock in sockets]
    for sock in sockets:
        sock.close()
    return [json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}) for index in range(count)]
