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

None found is one process, as before: nothing is initialised. More than one set found
must agree (coordinator, number of processes, process id); else ``detect`` refuses,
naming both sources.

``jax.distributed.initialize`` ends the process from C++ (SIGABRT and a stack trace,
or a segfault when the coordinator port is taken) on every misconfiguration of a
process group, so ``initialize`` finds them first. Of the two ways the issue
weighed, this is a pre-flight rendezvous, not a supervising parent: kfp's executor
runs the train step's function in its own process and reads its outputs as Python
objects afterwards, and a Kubernetes pod signals its main process; a parent that
ran JAX in a child would have to forward both, and could only name a failure after
it happened. The rendezvous names most of them before JAX starts:

- ``detect``: at most ``MAX_PROCESSES`` processes, a process id below their number,
  a coordinator ``host:port`` with a port in 1..65535, sources that agree.
- process 0: enough open files for a connection per peer (``ulimit -n``); the
  coordinator port free (bound here first, as gRPC binds it); then every other
  process says hello on that port (its number of processes and its id) before JAX
  is given the port. A peer that disagrees, two peers with one id, peers that
  never come: one line on process 0, and the same line on every peer waiting.
- the other processes: process 0 answers on the coordinator port, and answers
  this handshake (not another program, not a run that started without them).

What happens after JAX starts cannot be checked beforehand: a process killed,
preempted or out of memory mid-run. The handshake connections stay open as a
lifeline until ``training_done``: a lifeline that closes before that names the
process that stopped, in one line, and ends this one with status 2 (before JAX's
heartbeat timeout would abort it). A host that vanishes without closing its
connections (power, network) is still JAX's heartbeat abort.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Mapping
from typing import NamedTuple

from mlp_core.errors import UserError

# The worker pools whose replicas take part, in process order (pool 2 is Vertex's reduction
# server or parameter servers, pool 3 its evaluators: neither trains here).
TRAINING_POOLS = ("workerpool0", "workerpool1")
# Process 0 holds one connection per peer for the handshake and gRPC another for the run. Vertex AI
# worker pools, JAXJobs and TrainJobs of this pipeline are a few hosts; 4096 is far beyond any of them
# (and beyond any data-parallel batch of MNIST worth training: each process needs a share of every batch),
# while a typo (an extra digit, a byte count) is caught before JAX sizes its service by it.
MAX_PROCESSES = 4096
# Files process 0 keeps for itself besides the peers' connections (data, checkpoints, libraries).
RESERVED_FILES = 64
_ADDRESS = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")
_HELLO = "jax-mlp-pipeline/rendezvous/1"


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

    def says(self) -> str:
        """What this source says, for a message that compares two."""
        return f"{self.source} says process {self.process_id} of {self.num_processes}, coordinator {self.coordinator}"

    def me(self) -> str:
        return f"process {self.process_id} of {self.num_processes}"


SINGLE = ProcessGroup(None, 1, 0, "no multi-process environment found")


def _integer(name: str, text: str | None, lowest: int = 0) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be an integer, got {text!r}") from None
    if value < lowest:
        raise UserError(f"{name} must be >= {lowest}, got {value}")
    return value


def _checked(coordinator: str, num_processes: int, process_id: int, source: str) -> ProcessGroup:
    """The group, or ``UserError`` for anything JAX would abort on: a bad address or port, a count, an id."""
    if not isinstance(coordinator, str) or not _ADDRESS.fullmatch(coordinator) or not coordinator.rpartition(":")[0]:
        raise UserError(f"{source}: the coordinator address must be host:port, got {coordinator!r:.200}")
    port = int(coordinator.rpartition(":")[2])
    if not 1 <= port <= 65535:
        raise UserError(f"{source}: the coordinator port must be 1 .. 65535, got {port} in {coordinator!r}")
    if not 1 <= num_processes <= MAX_PROCESSES:
        raise UserError(f"{source}: the number of processes must be 1 .. {MAX_PROCESSES} (MAX_PROCESSES), "
                          f"got {num_processes}")
    if not 0 <= process_id < num_processes:
        raise UserError(f"{source}: process id {process_id} is not in 0 .. {num_processes - 1} "
                          f"(below the number of processes {num_processes})")
    return ProcessGroup(coordinator, num_processes, process_id, source)


def from_cluster_spec(text: str) -> ProcessGroup:
    """Vertex AI's ``CLUSTER_SPEC``: this replica's process id among the training pools' replicas."""
    source = "Vertex AI CLUSTER_SPEC"
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{source} is not JSON ({e.msg} at character {e.pos})") from None
    except (TypeError, ValueError, RecursionError) as e:  # not text, a number too long to read
        raise UserError(f"{source} cannot be read: {str(e).splitlines()[0][:200] if str(e) else type(e).__name__}") from None
    cluster = spec.get("cluster") if isinstance(spec, dict) else None
    task = spec.get("task") if isinstance(spec, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise UserError(f"{source} has no 'cluster' and 'task' objects")
    pools = [cluster.get(pool) or [] for pool in TRAINING_POOLS]
    if not all(isinstance(p, list) and all(isinstance(a, str) for a in p) for p in pools) or len(pools[0]) != 1:
        raise UserError(f"{source}: workerpool0 must list exactly one replica (the primary), "
                          f"got {cluster.get('workerpool0')!r:.200}")
    kind, index = task.get("type"), task.get("index")
    if kind not in TRAINING_POOLS or isinstance(index, bool) or not isinstance(index, int):
        raise UserError(f"{source}: this task ({kind!r:.100}, index {index!r:.100}) is not a replica of "
                          f"{' or '.join(TRAINING_POOLS)}")
    position = TRAINING_POOLS.index(kind)
    if not 0 <= index < len(pools[position]):
        raise UserError(f"{source}: task index {index} is not among the {len(pools[position])} replicas of {kind}")
    process_id = sum(len(p) for p in pools[:position]) + index
    return _checked(pools[0][0], sum(len(p) for p in pools), process_id, source)


def _environment_groups(environ: Mapping[str, str]) -> list[ProcessGroup]:
    """Every set of cluster variables in ``environ``, each read and checked, in order of precedence."""
    groups = []
    if "CLUSTER_SPEC" in environ:
        groups.append(from_cluster_spec(environ["CLUSTER_SPEC"]))
    trainer_v2 = [name for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID") if name in environ]
    if trainer_v2:
        if "JAX_COORDINATOR_ADDRESS" not in environ:
            raise UserError(f"{' and '.join(trainer_v2)} set without JAX_COORDINATOR_ADDRESS "
                              "(Kubeflow Trainer's jax-distributed runtime sets all three)")
        groups.append(_checked(environ["JAX_COORDINATOR_ADDRESS"],
                               _integer("JAX_NUM_PROCESSES", environ.get("JAX_NUM_PROCESSES"), 1),
                               _integer("JAX_PROCESS_ID", environ.get("JAX_PROCESS_ID")),
                               "Kubeflow Trainer (TrainJob, jax-distributed runtime)"))
    if "COORDINATOR_ADDRESS" in environ:
        address = environ["COORDINATOR_ADDRESS"]
        if "COORDINATOR_PORT" in environ and not re.search(r":\d+$", address):
            address = f"{address}:{_integer('COORDINATOR_PORT', environ['COORDINATOR_PORT'], 1)}"
        groups.append(_checked(address, _integer("NUM_PROCESSES", environ.get("NUM_PROCESSES"), 1),
                               _integer("PROCESS_ID", environ.get("PROCESS_ID")), "Kubeflow Trainer (JAXJob)"))
    return groups


def check_process_flags(num_processes: "int | None", process_id: "int | None", coordinator_timeout: int,
                heartbeat_timeout: int) -> None:
    """The process flags' own ranges, each named (None: not given); ``detect`` then checks them together."""
    for flag, value, least in (("--num-processes", num_processes, 1), ("--process-id", process_id, 0),
                               ("--coordinator-timeout", coordinator_timeout, 1),
                               ("--heartbeat-timeout", heartbeat_timeout, 1)):
        if value is not None and value < least:
            raise UserError(f"{flag} must be {least} or more, got {value}")


def detect(environ: Mapping[str, str], coordinator: str = "", num_processes: int = 0,
           process_id: int = -1) -> ProcessGroup:
    """The process group this process belongs to, from explicit values and the engines' variables.

    Every source present must say the same; ``UserError`` (one line, naming two
    of them) when they do not.
    """
    groups = []
    if coordinator or num_processes != 0 or process_id != -1:
        if not coordinator or num_processes == 0 or process_id == -1:
            raise UserError("--coordinator, --num-processes and --process-id go together: give all three")
        groups.append(_checked(coordinator, num_processes, process_id, "the command line"))
    groups += _environment_groups(environ)
    if not groups:
        return SINGLE
    first = groups[0]
    for other in groups[1:]:
        if other[:3] != first[:3]:
            raise UserError(f"two sets of cluster variables disagree: {first.says()}; {other.says()}. "
                              f"Give only one of them")
    return first


def check_open_files(group: ProcessGroup, soft_limit: int) -> None:
    """Process 0 keeps a connection to every peer twice over (handshake, gRPC): refuse a limit too low for that."""
    needed = 2 * (group.num_processes - 1) + RESERVED_FILES
    if group.is_primary and 0 <= soft_limit < needed:
        raise UserError(f"process 0 of {group.num_processes} ({group.source}) needs {needed} open files "
                          f"(two connections per process, {RESERVED_FILES} for itself) but may open {soft_limit}: "
                          "raise `ulimit -n` or train as fewer processes")


def _open_files_limit() -> int:
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        return -1 if soft == resource.RLIM_INFINITY else soft
    except (ImportError, OSError, ValueError):
        return -1


def initialize(group: ProcessGroup, timeout_seconds: int = 300, heartbeat_seconds: int = 100) -> None:
    """Join the process group (``jax.distributed.initialize``); nothing for a single process.

    First the pre-flight rendezvous on the coordinator port (this module's docstring):
    every misconfiguration it finds is a ``UserError``, within ``timeout_seconds``.
    Then JAX; a process that stops before ``training_done`` ends the others with one
    line (status 2). A process silent without closing its connections (a host gone)
    is JAX's: after ``heartbeat_seconds`` its coordination service ends every other
    process with "Task N heartbeat timeout ... has failed, got preempted, or crashed"
    (a fatal error, exit status 134). A rerun resumes from the last checkpoint.
    """
    if group.num_processes == 1:
        return
    deadline = time.monotonic() + timeout_seconds
    if group.is_primary:
        check_open_files(group, _open_files_limit())
        lifelines = _gather(group, _listen(group), timeout_seconds)
    else:
        lifelines = {0: _join(group, timeout_seconds)}
        # The handshake's listener is closed before "go": wait until JAX's own service listens on the port.
        _wait_for_coordinator(group, max(30.0, deadline - time.monotonic()))
    global _LIFELINES
    _LIFELINES = _Lifelines(group, lifelines)
    import jax

    # Collectives between CPU processes (tests, CPU-only clusters) go through gloo; GPUs use NCCL regardless.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(group.coordinator, group.num_processes, group.process_id,
                                   initialization_timeout=timeout_seconds, heartbeat_timeout_seconds=heartbeat_seconds)
    except Exception as e:  # XlaRuntimeError (DEADLINE_EXCEEDED, UNAVAILABLE), RuntimeError
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"process {group.process_id} of {group.num_processes} could not join the coordinator "
                          f"{group.coordinator} within {timeout_seconds} s ({group.source}): {first[:300]}") from None


def training_done(failed: bool = False) -> None:
    """This process has passed its last collective (or ``failed`` in one): tell the others, stop watching them.

    After "done" a process that exits is no failure; after "failed" the others stop
    at once with one line pointing at this process's log (which says why).
    """
    global _LIFELINES
    if _LIFELINES is not None:
        _LIFELINES.close("failed" if failed else "done")
        _LIFELINES = None


def training_failed(error: BaseException) -> None:
    """This process's training raised ``error``; if another process's end caused it, say that and stop here.

    A killed peer shows first as a failed collective (gloo: "Connection reset by
    peer", a ``JaxRuntimeError``) in the very moment its lifeline closes: wait for
    the lifeline a few seconds, so that the line names the process that stopped.
    Else tell the others this one failed (its own error follows) and return.
    """
    lifelines = _LIFELINES
    if lifelines is None:
        return
    if type(error).__name__ in ("JaxRuntimeError", "XlaRuntimeError") and lifelines.lost.wait(LOST_GRACE_SECONDS):
        with _STOPPING:  # the watcher is ending this process with the line that names the lost one
            pass
    training_done(failed=True)


def _listen(group: ProcessGroup) -> socket.socket:
    """Process 0: the coordinator port, bound as gRPC binds it (all interfaces, ``SO_REUSEADDR``), or one line.

    ``SO_REUSEADDR`` lets the bind pass over connections of an earlier run in TIME_WAIT
    (gRPC's would too) but not over a socket listening there; the connections accepted
    from it inherit it, so gRPC can bind the port while they stay open as lifelines.
    """
    port = int(group.coordinator.rpartition(":")[2])
    attempts = [(socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")] if socket.has_ipv6 else [(socket.AF_INET, "0.0.0.0")]
    for family, host in attempts:
        try:
            listener = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            listener.bind((host, port))
            listener.listen(min(group.num_processes, 4096))
            return listener
        except OSError as e:
            listener.close()
            if e.errno in (98, 13, 48):  # EADDRINUSE (Linux, macOS), EACCES
                raise UserError(f"process 0 of {group.num_processes}: the coordinator port {port} "
                                  f"({group.coordinator}, from {group.source}) cannot be bound on this host "
                                  f"({e.strerror}): another program or an earlier run holds it; free it or "
                                  "choose another port") from None
            last = e  # no IPv6 on this host: try IPv4
    raise UserError(f"process 0 of {group.num_processes}: cannot listen on the coordinator port {port} "
                      f"({group.source}): {last.strerror or last}") from None


def _send_line(connection: socket.socket, text: str) -> None:
    try:
        connection.sendall(text.encode() + b"\n")
    except OSError:
        pass  # that peer is gone; its own line says why


def _gather(group: ProcessGroup, listener: socket.socket, timeout_seconds: float) -> dict[int, socket.socket]:
    """Process 0: accept every other process's hello, checked against this one, then close the port and say go."""
    import selectors

    n, deadline = group.num_processes, time.monotonic() + timeout_seconds
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    pending: dict[socket.socket, bytes] = {}  # connected, hello not read yet
    joined: dict[int, socket.socket] = {}
    problem = None
    try:
        while len(joined) < n - 1 and problem is None:
            left = deadline - time.monotonic()
            if left <= 0:
                missing = [i for i in range(1, n) if i not in joined]
                shown = ", ".join(map(str, missing[:10])) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
                problem = (f"process 0 of {n}: process{'es' if len(missing) > 1 else ''} {shown} did not join "
                           f"within {timeout_seconds:g} s on the coordinator port {group.coordinator} "
                           f"({group.source}): are they running, and can they reach this host?")
                break
            for key, _ in selector.select(min(left, 1.0)):
                connection = key.fileobj
                if connection is listener:
                    try:
                        peer, _ = listener.accept()
                    except OSError:
                        continue
                    peer.setblocking(False)
                    pending[peer] = b""
                    selector.register(peer, selectors.EVENT_READ)
                    continue
                try:
                    data = connection.recv(4096)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if connection in pending:
                    buffer = pending[connection] + data
                    if data and b"\n" not in buffer and len(buffer) < 4096:
                        pending[connection] = buffer
                        continue
                    del pending[connection]
                    hello = _read_hello(buffer)
                    if hello is None:  # not a process of this step (a probe, a scanner): not ours to judge
                        selector.unregister(connection)
                        connection.close()
                        continue
                    problem = _judge(group, hello, joined)
                    if problem is None:
                        joined[hello[1]] = connection
                    else:
                        _send_line(connection, f"refused {problem}")
                        selector.unregister(connection)
                        connection.close()
                elif not data:  # a peer that had joined went away: it may come back before the deadline
                    selector.unregister(connection)
                    gone = [i for i, c in joined.items() if c is connection]
                    for i in gone:
                        del joined[i]
                    connection.close()
        if problem is not None:
            for connection in [*joined.values(), *pending]:
                _send_line(connection, f"refused {problem}")
                connection.close()
            raise UserError(problem)
        for connection in pending:  # connected but silent: not one of ours
            connection.close()
        listener.close()  # before go: no peer's gRPC connection may land in this listener's queue
        for connection in joined.values():
            connection.setblocking(True)
            _send_line(connection, "go")
        return joined
    finally:
        selector.close()
        listener.close()


def _read_hello(buffer: bytes) -> tuple[int, int, str] | None:
    try:
        hello = json.loads(buffer.split(b"\n", 1)[0])
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(hello, dict) or hello.get("hello") != _HELLO:
        return None
    n, i, source = hello.get("num_processes"), hello.get("process_id"), hello.get("source")
    if not isinstance(n, int) or not isinstance(i, int) or not isinstance(source, str):
        return None
    return n, i, source


def _judge(group: ProcessGroup, hello: tuple[int, int, str], joined: dict[int, socket.socket]) -> str | None:
    """Why the run cannot start with this peer, or None."""
    n, i, source = hello
    if n != group.num_processes:
        return (f"process 0 of {group.num_processes} ({group.source}) was joined by a process that says it is "
                f"process {i} of {n} ({source}): the replicas were given different cluster variables")
    if not 1 <= i < n:
        return (f"process 0 of {n} ({group.source}) was joined by a process that says it is process {i} "
                f"({source}): only one process may be 0, and ids stop at {n - 1}")
    if i in joined:
        return (f"process 0 of {n} ({group.source}): two processes say they are process {i} ({source}): "
                "the replicas were given the same process id")
    return None


def _join(group: ProcessGroup, timeout_seconds: float) -> socket.socket:
    """A peer: say hello to process 0 and wait for its go (or its refusal); the connection stays open."""
    host, _, port = group.coordinator.rpartition(":")
    deadline = time.monotonic() + timeout_seconds
    me = group.me()
    while True:
        try:
            connection = socket.create_connection((host.strip("[]"), int(port)), timeout=2)
            break
        except OSError as e:
            if time.monotonic() >= deadline:
                raise UserError(f"{me}: the coordinator {group.coordinator} ({group.source}) did not answer "
                                  f"within {timeout_seconds:g} s ({e.strerror or e}); is process 0 running?") from None
            time.sleep(0.5)
    hello = {"hello": _HELLO, "num_processes": group.num_processes, "process_id": group.process_id,
             "source": group.source}
    reply = b""
    try:
        connection.sendall(json.dumps(hello).encode() + b"\n")
        # Process 0 answers when every process has joined, or at its own deadline (the same timeout, started
        # no later than this one's if it was started first): a few seconds more here let its refusal arrive.
        while b"\n" not in reply and len(reply) < 4096:
            connection.settimeout(max(0.1, deadline + 10 - time.monotonic()))
            data = connection.recv(4096)
            if not data:
                break
            reply += data
    except socket.timeout:
        connection.close()
        raise UserError(f"{me}: the coordinator {group.coordinator} ({group.source}) took this process's hello "
                          f"but did not start the run within {timeout_seconds:g} s") from None
    except OSError:
        pass
    line = reply.split(b"\n", 1)[0].decode(errors="replace")
    if line == "go":
        connection.settimeout(None)
        return connection
    connection.close()
    if line.startswith("refused "):
        raise UserError(f"{me}: process 0 refused to start the run: {line[len('refused '):]}")
    raise UserError(f"{me}: the coordinator {group.coordinator} ({group.source}) answered, but not as process 0 "
                      "of this train step: another program holds that port, or process 0 started without this "
                      "process (restart them together)")


def _wait_for_coordinator(group: ProcessGroup, timeout_seconds: float) -> None:
    """Return once the coordinator accepts TCP connections; ``UserError`` after ``timeout_seconds``."""
    host, _, port = group.coordinator.rpartition(":")
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=2):
                return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise UserError(f"{group.me()}: the coordinator {group.coordinator} ({group.source}) did not answer "
                                  f"within {timeout_seconds:g} s ({e.strerror or e}); is process 0 running?") from None
            time.sleep(0.2)


class _Lifelines:
    """The handshake's connections, kept until training is done; one that closes before ends this process.

    Process 0 holds one per peer, each peer one to process 0. The kernel closes a
    process's connections however it ends (killed, out of memory, crashed), so the
    others learn at once, long before JAX's heartbeat timeout would abort them.
    """

    def __init__(self, group: ProcessGroup, connections: dict[int, socket.socket]):
        import atexit

        self.group, self.connections = group, connections
        self.closing, self.lost = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._watch, name="process-group-lifelines", daemon=True)
        self.thread.start()
        # A process on its way out has said what it had to (its own error line, or nothing): from then
        # on the others stopping is no news. Registered after JAX's clean-up, so it runs before it.
        atexit.register(self.closing.set)

    def close(self, word: str) -> None:
        self.closing.set()
        for connection in self.connections.values():
            _send_line(connection, word)
        for connection in self.connections.values():
            try:
                connection.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _watch(self) -> None:
        import selectors

        selector = selectors.DefaultSelector()
        owner = {}
        for process_id, connection in self.connections.items():
            selector.register(connection, selectors.EVENT_READ)
            owner[connection] = process_id
        finished: set[int] = set()
        while owner:
            for key, _ in selector.select():
                connection = key.fileobj
                try:
                    data = connection.recv(4096)
                except OSError:
                    data = b""
                if b"failed" in data and not self.closing.is_set():
                    self.lost.set()
                    _stop(f"{self.group.me()}: {self._who(owner[connection])} failed during training (its log says "
                          f"why; {self.group.source})")
                if b"done" in data:
                    finished.add(owner[connection])
                if data:
                    continue
                selector.unregister(connection)
                process_id = owner.pop(connection)
                if process_id not in finished and not self.closing.is_set():
                    self.lost.set()
                    _stop(f"{self.group.me()}: {self._who(process_id)} stopped before training was done (killed, "
                          f"preempted, out of memory or failed: see its log; {self.group.source}); a rerun resumes "
                          "from the last checkpoint")
        selector.close()

    def _who(self, process_id: int) -> str:
        return f"process {process_id}" if process_id else f"process 0 (the coordinator {self.group.coordinator})"


_LIFELINES: _Lifelines | None = None
# How long a failed collective waits for the lifeline that explains it (a kill closes both at once).
LOST_GRACE_SECONDS = 5.0
_STOPPING = threading.Lock()


def _stop(message: str) -> None:
    """End this process now with ``error: message`` as the last word, whatever other threads print after it."""
    _STOPPING.acquire()  # one line, from one thread; a second caller waits here for the end
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        pass
    error_output = os.dup(2)
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 2)  # JAX's own abort and a collective's traceback would follow from other threads
    os.write(error_output, f"error: {message}\n".encode())
    os._exit(2)
