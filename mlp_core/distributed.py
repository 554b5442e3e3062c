"""Which process of how many this one is: the one place that knows the training engines' environments.

``jax.distributed.initialize`` detects Open MPI, Slurm, Cloud TPU and Kubernetes
Jobs by itself (``jax/_src/clusters/``) but not the engines this pipeline's
train step runs under, so they are read here:

- Vertex AI custom jobs set ``CLUSTER_SPEC`` in every replica (Vertex AI docs,
  "Distributed training": ``{"cluster": {"workerpool0": ["host:port"],
  "workerpool1": [...]}, "task": {"type": "workerpool1", "index": 0}}``). Worker
  pool 0 holds the one primary replica; the other pools' replicas follow it in
  pool order. The coordinator is the primary replica's address.
- Kubeflow Trainer v1 ``JAXJob`` (training-operator >= 1.9): ``COORDINATOR_ADDRESS``,
  ``COORDINATOR_PORT``, ``NUM_PROCESSES``, ``PROCESS_ID``.
- Kubeflow Trainer v2 ``TrainJob`` with the ``jax-distributed`` runtime:
  ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``.
- explicit values (``--coordinator``, ``--num-processes``, ``--process-id``).

None found is one process, as before: nothing is initialised.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import NamedTuple

from mlp_core.config import ConfigError

# The worker pools whose replicas take part, in process order (pool 2 is Vertex's reduction
# server or parameter servers, pool 3 its evaluators: neither trains here).
TRAINING_POOLS = ("workerpool0", "workerpool1")
_ADDRESS = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")


class ProcessGroup(NamedTuple):
    """Where the coordinator is, how many processes there are, which one this is, and who said so."""

    coordinator: str | None
    num_processes: int
    process_id: int
    source: str

    @property
    def is_primary(self) -> bool:
        """Process 0: the one that writes checkpoints, the model and the metrics."""
        return self.process_id == 0

    def describe(self) -> str:
        if self.num_processes == 1:
            return f"processes: 1 ({self.source})"
        return (f"processes: {self.num_processes}, this is process {self.process_id}, "
                f"coordinator {self.coordinator} (from {self.source})")


SINGLE = ProcessGroup(None, 1, 0, "no multi-process environment found")


def _integer(name: str, text: str, lowest: int = 0) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be an integer, got {text!r}") from None
    if value < lowest:
        raise ConfigError(f"{name} must be >= {lowest}, got {value}")
    return value


def _checked(coordinator: str, num_processes: int, process_id: int, source: str) -> ProcessGroup:
    if not _ADDRESS.match(coordinator or ""):
        raise ConfigError(f"{source}: the coordinator address must be host:port, got {coordinator!r}")
    if not 0 <= process_id < num_processes:
        raise ConfigError(f"{source}: process id {process_id} is not below the number of processes {num_processes}")
    return ProcessGroup(coordinator, num_processes, process_id, source)


def from_cluster_spec(text: str) -> ProcessGroup:
    """Vertex AI's ``CLUSTER_SPEC``: this replica's process id among the training pools' replicas."""
    source = "Vertex AI CLUSTER_SPEC"
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{source} is not JSON ({e.msg} at character {e.pos})") from None
    cluster = spec.get("cluster") if isinstance(spec, dict) else None
    task = spec.get("task") if isinstance(spec, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise ConfigError(f"{source} has no 'cluster' and 'task' objects")
    pools = [cluster.get(pool) or [] for pool in TRAINING_POOLS]
    if not all(isinstance(p, list) and all(isinstance(a, str) for a in p) for p in pools) or len(pools[0]) != 1:
        raise ConfigError(f"{source}: workerpool0 must list exactly one replica (the primary), got {cluster.get('workerpool0')!r}")
    kind, index = task.get("type"), task.get("index")
    if kind not in TRAINING_POOLS or isinstance(index, bool) or not isinstance(index, int):
        raise ConfigError(f"{source}: this task ({kind!r}, index {index!r}) is not a replica of "
                          f"{' or '.join(TRAINING_POOLS)}")
    position = TRAINING_POOLS.index(kind)
    if not 0 <= index < len(pools[position]):
        raise ConfigError(f"{source}: task index {index} is not among the {len(pools[position])} replicas of {kind}")
    process_id = sum(len(p) for p in pools[:position]) + index
    return _checked(pools[0][0], sum(len(p) for p in pools), process_id, source)


def detect(environ: Mapping[str, str], coordinator: str = "", num_processes: int = 0,
           process_id: int = -1) -> ProcessGroup:
    """The process group this process belongs to: explicit values first, then the engines' variables."""
    if coordinator or num_processes or process_id >= 0:
        if not coordinator or num_processes < 1 or process_id < 0:
            raise ConfigError("--coordinator, --num-processes and --process-id go together: give all three")
        return _checked(coordinator, num_processes, process_id, "the command line")
    if "CLUSTER_SPEC" in environ:
        return from_cluster_spec(environ["CLUSTER_SPEC"])
    if "JAX_COORDINATOR_ADDRESS" in environ:
        source = "Kubeflow Trainer (TrainJob, jax-distributed runtime)"
        return _checked(environ["JAX_COORDINATOR_ADDRESS"],
                        _integer("JAX_NUM_PROCESSES", environ.get("JAX_NUM_PROCESSES"), 1),
                        _integer("JAX_PROCESS_ID", environ.get("JAX_PROCESS_ID")), source)
    if "COORDINATOR_ADDRESS" in environ:
        source = "Kubeflow Trainer (JAXJob)"
        address = environ["COORDINATOR_ADDRESS"]
        if "COORDINATOR_PORT" in environ and not re.search(r":\d+$", address):
            address = f"{address}:{_integer('COORDINATOR_PORT', environ['COORDINATOR_PORT'], 1)}"
        return _checked(address, _integer("NUM_PROCESSES", environ.get("NUM_PROCESSES"), 1),
                        _integer("PROCESS_ID", environ.get("PROCESS_ID")), source)
    return SINGLE


def initialize(group: ProcessGroup, timeout_seconds: int = 300, heartbeat_seconds: int = 100) -> None:
    """Join the process group (``jax.distributed.initialize``); nothing for a single process.

    An unreachable coordinator fails after ``timeout_seconds`` with one line, not JAX's traceback.
    A process that dies later (killed, preempted) stops sending heartbeats: after
    ``heartbeat_seconds`` JAX's coordination service ends every other process with
    "Task N heartbeat timeout ... has failed, got preempted, or crashed" (a fatal
    error, exit status 134); a rerun resumes from the last checkpoint.
    """
    if group.num_processes == 1:
        return
    if not group.is_primary:
        # JAX aborts the whole process (a C++ fatal error, not an exception) when the coordinator stays
        # unreachable: find that out first, and say so in one line.
        _wait_for_coordinator(group, timeout_seconds)
    import jax

    # Collectives between CPU processes (tests, CPU-only clusters) go through gloo; GPUs use NCCL regardless.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(group.coordinator, group.num_processes, group.process_id,
                                   initialization_timeout=timeout_seconds, heartbeat_timeout_seconds=heartbeat_seconds)
    except Exception as e:  # XlaRuntimeError (DEADLINE_EXCEEDED, UNAVAILABLE), RuntimeError
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"process {group.process_id} of {group.num_processes} could not join the coordinator "
                          f"{group.coordinator} within {timeout_seconds} s ({group.source}): {first[:300]}") from None


def _wait_for_coordinator(group: ProcessGroup, timeout_seconds: float) -> None:
    """Return once the coordinator accepts TCP connections; ``ConfigError`` after ``timeout_seconds``."""
    import socket
    import time

    host, _, port = group.coordinator.rpartition(":")
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=2):
                return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise ConfigError(f"process {group.process_id} of {group.num_processes}: the coordinator "
                                  f"{group.coordinator} ({group.source}) did not answer within {timeout_seconds:g} s "
                                  f"({e.strerror or e}); is process 0 running?") from None
            time.sleep(0.5)
