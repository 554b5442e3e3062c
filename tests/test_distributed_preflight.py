"""A misconfigured process group ends each process with one line (exit 2), never JAX's C++ abort.

``jax.distributed.initialize`` aborts (SIGABRT, exit 134, a C++ stack trace) or segfaults
on these; ``mlp_core.distributed`` finds them first (its docstring says how). Every case
runs the real train CLI, as the replicas of a job would, and bounds how long it took.
The pure checks of ``detect`` are also run on generated variable sets (Hypothesis).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import ROOT
from mlp_core.errors import UserError
from mlp_core.distributed import MAX_PROCESSES, SINGLE, ProcessGroup, _environment_groups, check_open_files, detect

ABORT_SIGNS = ("Traceback", "SIGABRT", "Aborted", "Check failure stack trace", "Segmentation fault", "*** ")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spec(port: int, processes: int, process_id: int) -> str:
    task = {"type": "workerpool0", "index": 0} if process_id == 0 else {"type": "workerpool1", "index": process_id - 1}
    return json.dumps({"cluster": {"workerpool0": [f"127.0.0.1:{port}"],
                                   "workerpool1": [f"127.0.0.1:{port + 1 + i}" for i in range(processes - 1)]},
                       "task": task})


def _train(tmp_path, *flags: str, env: dict | None = None, dataset=None, name: str = "m",
           stdout=subprocess.PIPE) -> subprocess.Popen:
    """``python -m components.train`` as one replica; the pre-flight fails before the dataset (an empty folder,
    which passes the check that it exists) is read."""
    if dataset is None:
        (tmp_path / "no-dataset").mkdir(exist_ok=True)
    base = {k: v for k, v in os.environ.items()
            if k not in ("XLA_FLAGS", "CLUSTER_SPEC", "JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS")}
    return subprocess.Popen(
        [sys.executable, "-m", "components.train", "--dataset", str(dataset or tmp_path / "no-dataset"),
         "--model", str(tmp_path / name), "--epochs", "1", "--batch-size", "96", *flags],
        cwd=ROOT, env={**base, **(env or {})}, stdout=stdout, stderr=subprocess.PIPE, text=True)


def _ends_in_one_line(proc: subprocess.Popen, within: float, started: float | None = None) -> str:
    """Wait for ``proc``; assert exit 2, one ``error:`` line, no abort; return that line."""
    started = started or time.monotonic()
    try:
        _, err = proc.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"still running after {within} s: {proc.communicate()[1][-2000:]}")
    took = time.monotonic() - started
    assert proc.returncode == 2, f"exit {proc.returncode} after {took:.0f} s:\n{err[-3000:]}"
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err[-3000:]
    assert not [sign for sign in ABORT_SIGNS if sign in err], err[-3000:]
    return errors[0]


# ---- checks that need nothing but the variables: before anything starts ----

@pytest.mark.slow
@pytest.mark.parametrize(("flags", "env", "message"), [
    (["--coordinator", "127.0.0.1:6666", "--num-processes", "100000", "--process-id", "0"], {},
     f"error: the command line: the number of processes must be 1 .. {MAX_PROCESSES} (MAX_PROCESSES), got 100000"),
    (["--coordinator", "127.0.0.1:6666", "--num-processes", "2", "--process-id", "2"], {},
     "error: the command line: process id 2 is not in 0 .. 1"),
    (["--coordinator", "127.0.0.1:70000", "--num-processes", "2", "--process-id", "0"], {},
     "error: the command line: the coordinator port must be 1 .. 65535, got 70000"),
    ([], {"CLUSTER_SPEC": _spec(6666, 2, 1), "JAX_COORDINATOR_ADDRESS": "127.0.0.1:6666", "JAX_NUM_PROCESSES": "3",
          "JAX_PROCESS_ID": "1"},
     "error: two sets of cluster variables disagree: Vertex AI CLUSTER_SPEC says process 1 of 2, coordinator "
     "127.0.0.1:6666; Kubeflow Trainer (TrainJob, jax-distributed runtime) says process 1 of 3"),
    (["--coordinator", "127.0.0.1:6666", "--num-processes", "2", "--process-id", "0"], {"CLUSTER_SPEC": _spec(6666, 2, 1)},
     "error: two sets of cluster variables disagree: the command line says process 0 of 2, coordinator 127.0.0.1:6666; "
     "Vertex AI CLUSTER_SPEC says process 1 of 2"),
])
def test_a_group_that_cannot_be_is_one_line_before_anything(tmp_path, flags, env, message):
    line = _ends_in_one_line(_train(tmp_path, *flags, env=env), within=120)
    assert line.startswith(message), line
    assert not (tmp_path / "m").exists()


# ---- process 0 ----

@pytest.mark.slow
def test_a_coordinator_port_held_by_another_program_is_one_line(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))  # a listener on loopback only: JAX's bind to all interfaces segfaults on it
        holder.listen()
        port = holder.getsockname()[1]
        line = _ends_in_one_line(_train(tmp_path, env={"CLUSTER_SPEC": _spec(port, 2, 0)}), within=120)
    assert line.startswith(f"error: process 0 of 2: the coordinator port {port} (127.0.0.1:{port}, from Vertex AI "
                           "CLUSTER_SPEC) cannot be bound on this host"), line


@pytest.mark.slow
def test_peers_that_never_join_are_one_line_after_the_timeout(tmp_path):
    port = _free_port()
    started = time.monotonic()
    line = _ends_in_one_line(_train(tmp_path, "--coordinator-timeout", "3", env={"CLUSTER_SPEC": _spec(port, 3, 0)}),
                             within=120, started=started)
    assert line.startswith(f"error: process 0 of 3: processes 1, 2 did not join within 3 s on the coordinator port "
                           f"127.0.0.1:{port} (Vertex AI CLUSTER_SPEC)"), line


@pytest.mark.slow
def test_replicas_given_different_numbers_of_processes_both_stop_with_one_line(tmp_path):
    port = _free_port()
    primary = _train(tmp_path, "--coordinator-timeout", "60", env={"CLUSTER_SPEC": _spec(port, 2, 0)}, name="a")
    peer = _train(tmp_path, "--coordinator-timeout", "60", env={"CLUSTER_SPEC": _spec(port, 3, 1)}, name="b")
    first = _ends_in_one_line(primary, within=120)
    second = _ends_in_one_line(peer, within=60)
    assert first.startswith("error: process 0 of 2 (Vertex AI CLUSTER_SPEC) was joined by a process that says it is "
                            "process 1 of 3 (Vertex AI CLUSTER_SPEC): the replicas were given different cluster "
                            "variables"), first
    assert second == f"error: process 1 of 3: process 0 refused to start the run: {first[len('error: '):]}"


@pytest.mark.slow
def test_two_replicas_with_one_process_id_are_refused(tmp_path):
    port = _free_port()
    primary = _train(tmp_path, "--coordinator-timeout", "60", env={"CLUSTER_SPEC": _spec(port, 3, 0)}, name="a")
    peers = [_train(tmp_path, "--coordinator-timeout", "60", env={"CLUSTER_SPEC": _spec(port, 3, 1)}, name=n)
             for n in ("b", "c")]
    first = _ends_in_one_line(primary, within=120)
    assert "two processes say they are process 1" in first, first
    for peer in peers:
        assert "process 0 refused to start the run" in _ends_in_one_line(peer, within=60)


# ---- the other processes ----

@pytest.mark.slow
def test_a_coordinator_that_does_not_answer_is_one_line(tmp_path):
    port = _free_port()  # nothing listens there
    line = _ends_in_one_line(_train(tmp_path, "--coordinator-timeout", "3", env={"CLUSTER_SPEC": _spec(port, 2, 1)}),
                             within=120)
    assert line.startswith(f"error: process 1 of 2: the coordinator 127.0.0.1:{port} (Vertex AI CLUSTER_SPEC) "
                           "did not answer within 3 s"), line


@pytest.mark.slow
def test_a_coordinator_port_answered_by_another_program_is_one_line(tmp_path):
    """Something else (here a server that says a word and hangs up) on the port the peer was told is process 0's."""
    import threading

    holder = socket.create_server(("127.0.0.1", 0))
    port = holder.getsockname()[1]

    def answer():
        for _ in range(20):
            try:
                connection, _ = holder.accept()
            except OSError:
                return
            with connection:
                connection.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")

    threading.Thread(target=answer, daemon=True).start()
    try:
        line = _ends_in_one_line(_train(tmp_path, "--coordinator-timeout", "30", env={"CLUSTER_SPEC": _spec(port, 2, 1)}),
                                 within=120)
    finally:
        holder.close()
    assert line.startswith(f"error: process 1 of 2: the coordinator 127.0.0.1:{port} (Vertex AI CLUSTER_SPEC) "
                           "answered, but not as process 0 of this train step"), line


# ---- after JAX has started: a process that dies ----

@pytest.mark.slow
@pytest.mark.parametrize("killed", [1, 0])
def test_a_process_killed_mid_run_ends_the_others_with_one_line(small_dataset, tmp_path, killed):
    """SIGKILL of one process while the others train: they stop at once, with one line naming it, long
    before JAX's heartbeat timeout (100 s here) would abort them."""
    port = _free_port()
    logs = [tmp_path / f"process-{i}.log" for i in range(2)]
    procs = [_train(tmp_path, "--epochs", "200", "--heartbeat-timeout", "100", env={"CLUSTER_SPEC": _spec(port, 2, i)},
                    dataset=small_dataset, name="model", stdout=logs[i].open("w")) for i in range(2)]
    survivor = procs[1 - killed]
    deadline = time.monotonic() + 300
    while "epoch 2/200" not in logs[1 - killed].read_text():  # training runs, collectives and all
        assert time.monotonic() < deadline and survivor.poll() is None, logs[1 - killed].read_text()[-2000:]
        time.sleep(0.1)
    procs[killed].send_signal(signal.SIGKILL)
    procs[killed].wait(timeout=30)
    started = time.monotonic()
    line = _ends_in_one_line(survivor, within=60, started=started)
    took = time.monotonic() - started
    who = "process 1" if killed else f"process 0 (the coordinator 127.0.0.1:{port})"
    assert line.startswith(f"error: process {1 - killed} of 2: {who} stopped before training was done"), line
    assert took < 30, f"took {took:.0f} s"
    print(f"\nprocess {1 - killed} stopped {took:.1f} s after process {killed} was killed")


# ---- the pure checks, on generated variables ----

_addresses = st.one_of(
    st.sampled_from(["127.0.0.1:6666", "train-0.train:2222", "[::1]:8476", "h:0", "h:65536", "h:99999", "h", ":1",
                     "h:1\n", "", "h:-1", "a b:1"]),
    st.builds(lambda h, p: f"{h}:{p}", st.from_regex(r"[a-z0-9.\-]{1,12}", fullmatch=True), st.integers(-5, 70000)),
    st.text(max_size=20))
_counts = st.one_of(st.integers(-3, 10), st.integers(MAX_PROCESSES - 2, MAX_PROCESSES + 2), st.integers(),
                    st.sampled_from(["two", "", " 2", "2.0", "1e3", "0x10"]))


def _vertex_spec(coordinator: str, processes: int, process_id: int) -> dict:
    host, _, port = coordinator.rpartition(":")
    task = {"type": "workerpool0", "index": 0} if process_id == 0 else {"type": "workerpool1", "index": process_id - 1}
    return {"cluster": {"workerpool0": [coordinator], "workerpool1": [f"w{i}:{port}" for i in range(processes - 1)]},
            "task": task}


@st.composite
def _environments(draw) -> tuple[dict, tuple]:
    """One true group; each source present says it, or (now and then) something else: a value, a gap, garbage."""
    port = draw(st.integers(1, 65535))
    truth = (draw(st.sampled_from([f"127.0.0.1:{port}", f"train-0.train:{port}", f"[::1]:{port}"])),
             draw(st.integers(1, 5)), 0)
    truth = (truth[0], truth[1], draw(st.integers(0, truth[1] - 1)))
    wrong = st.integers(0, 19).map(lambda n: n == 0)  # one value in twenty is something else

    def value(true, other):
        return draw(other) if draw(wrong) else true

    environ = {}
    if draw(st.booleans()):
        spec = _vertex_spec(value(truth[0], _addresses), truth[1], truth[2])
        if draw(wrong):
            spec["cluster"]["workerpool1"] = spec["cluster"]["workerpool1"][: draw(st.integers(0, 4))]
        if draw(wrong):
            spec["task"] = {"type": draw(st.sampled_from(["workerpool0", "workerpool1", "workerpool2", None])),
                            "index": draw(st.one_of(st.integers(-1, 5), st.just(True), st.just("0")))}
        text = json.dumps(spec)
        environ["CLUSTER_SPEC"] = value(text, st.sampled_from([text[:-1], json.dumps([spec]), "{}", "null", ""]))
    for names in (("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"),
                  ("COORDINATOR_ADDRESS", "NUM_PROCESSES", "PROCESS_ID")):
        if draw(st.booleans()):
            for name, true, other in zip(names, truth, (_addresses, _counts, _counts)):
                if not draw(wrong):  # now and then one is missing
                    environ[name] = str(value(true, other))
    if "COORDINATOR_ADDRESS" in environ and draw(st.booleans()):
        environ["COORDINATOR_PORT"] = draw(st.sampled_from([str(port), "0", "x"]))
    flags = ()
    if draw(st.booleans()):
        flags = (value(truth[0], st.one_of(st.just(""), _addresses)),
                 value(truth[1], st.integers(-2, MAX_PROCESSES + 2)), value(truth[2], st.integers(-2, 6)))
    return environ, flags


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_environments())
def test_detect_gives_a_consistent_group_or_one_line(case):
    """Any variables and flags: a group every source agrees with and JAX can take, or a one-line UserError."""
    environ, flags = case
    try:
        group = detect(environ, *flags)
    except UserError as e:
        assert str(e) and "\n" not in str(e) and len(str(e)) < 1000, repr(str(e))
        event("refused with one line")
        return
    assert isinstance(group, ProcessGroup)
    if group == SINGLE:
        assert not flags and not _environment_groups(environ)
        event("one process")
        return
    assert 1 <= group.num_processes <= MAX_PROCESSES and 0 <= group.process_id < group.num_processes
    host, _, port = group.coordinator.rpartition(":")
    assert host and 1 <= int(port) <= 65535 and "\n" not in group.coordinator
    sources = _environment_groups(environ) + ([detect({}, *flags)] if flags else [])
    assert sources and all(s[:3] == group[:3] for s in sources)
    event(f"a group of {'several sources' if len(sources) > 1 else 'one source'}")


def test_each_engine_alone_and_two_that_agree():
    spec = _spec(6666, 3, 2)
    alone = detect({"CLUSTER_SPEC": spec})
    both = detect({"CLUSTER_SPEC": spec, "JAX_COORDINATOR_ADDRESS": "127.0.0.1:6666", "JAX_NUM_PROCESSES": "3",
                   "JAX_PROCESS_ID": "2"}, "127.0.0.1:6666", 3, 2)
    assert alone[:3] == both[:3] == ("127.0.0.1:6666", 3, 2)
    assert both.source == "the command line"  # the first that says it; the others agree


def test_trainer_variables_without_their_address_are_refused():
    with pytest.raises(UserError, match="JAX_NUM_PROCESSES and JAX_PROCESS_ID set without JAX_COORDINATOR_ADDRESS"):
        detect({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"})


def test_process_0_needs_two_open_files_per_peer():
    group = ProcessGroup("127.0.0.1:6666", 100, 0, "the command line")
    check_open_files(group, 2 * 99 + 64)
    with pytest.raises(UserError, match=r"process 0 of 100 \(the command line\) needs 262 open files .* may open 100"):
        check_open_files(group, 100)
    check_open_files(group._replace(process_id=1), 100)  # only process 0 holds them
