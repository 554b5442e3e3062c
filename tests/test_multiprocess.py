"""The train step as N processes with real multi-process JAX on loopback (gloo collectives).

Each process is `python -m components.train` given CLUSTER_SPEC as Vertex AI writes it in
every replica of a custom job; the reference is one process with as many (forced) host
devices. Batch 96 over 3 processes splits 32 per device; 512 examples leave a last batch
of 32, which 2 devices split and 3 do not (each then computes it whole).
"""

import json
import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, run_cli

pytestmark = pytest.mark.slow
FLAGS = ["--epochs", "2", "--batch-size", "96"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cluster_spec(port: int, processes: int, process_id: int) -> str:
    """CLUSTER_SPEC of replica ``process_id``: pool 0 the primary, pool 1 the others."""
    task = {"type": "workerpool0", "index": 0} if process_id == 0 else {"type": "workerpool1", "index": process_id - 1}
    return json.dumps({"cluster": {"workerpool0": [f"127.0.0.1:{port}"],
                                   "workerpool1": [f"127.0.0.1:{port + 1 + i}" for i in range(processes - 1)]},
                       "environment": "cloud", "task": {**task, "trial": ""}, "job": "{}"})


def _train_as(processes: int, dataset, model, extra=()) -> list[subprocess.CompletedProcess]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    procs = [subprocess.Popen([sys.executable, "-m", "components.train", "--dataset", str(dataset), "--model", str(model),
                               *FLAGS, *extra], cwd=ROOT, env={**env, "CLUSTER_SPEC": cluster_spec(port, processes, i)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(processes)]
    results = []
    for i, proc in enumerate(procs):
        out, err = proc.communicate(timeout=600)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
        assert proc.returncode == 0, f"process {i} exited {proc.returncode}:\n{err[-3000:]}"
    return results


def _model(folder):
    with np.load(folder / "params.npz", allow_pickle=False) as params:
        history = json.loads((folder / "history.json").read_text())
        return {k: params[k] for k in params.files}, history


@pytest.mark.parametrize("processes", [2, 3])
def test_n_processes_train_what_one_process_with_n_devices_trains(small_dataset, tmp_path, processes):
    reference = tmp_path / "one-process"
    run_cli("-m", "components.train", "--dataset", str(small_dataset), "--model", str(reference), *FLAGS,
            env={"XLA_FLAGS": f"--xla_force_host_platform_device_count={processes}"})
    shared = tmp_path / "shared-model"  # every replica is given the same output, as on Vertex AI
    results = _train_as(processes, small_dataset, shared)
    assert f"processes: {processes}, this is process 1" in results[1].stdout
    assert "from Vertex AI CLUSTER_SPEC" in results[1].stdout
    assert "(written by process 0)" in results[1].stdout and "process 1 done" in results[1].stdout
    assert f"wrote {shared}" in results[0].stdout and all(f"wrote {shared}" not in r.stdout for r in results[1:])
    expected = "is split 48 per device" if processes == 2 else "is split 32 per device"
    assert expected in results[0].stdout

    ours, ours_history = _model(shared)
    theirs, their_history = _model(reference)
    worst = max(float(np.max(np.abs(ours[k] - theirs[k]))) for k in theirs)
    print(f"\n{processes} processes vs 1 process with {processes} devices: largest parameter difference {worst:.2e}")
    assert worst < 1e-6
    for a, b in zip(ours_history, their_history):  # after each epoch
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-6)
        assert a["test_accuracy"] == b["test_accuracy"] and a["train_accuracy"] == b["train_accuracy"]
    # Only process 0 wrote: one model, no checkpoints left, nothing else beside it.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one-process", "shared-model"]


def test_a_cluster_spec_that_is_not_json_is_one_line(small_dataset, tmp_path):
    r = run_cli("-m", "components.train", "--dataset", str(small_dataset), "--model", str(tmp_path / "m"), *FLAGS,
                env={"CLUSTER_SPEC": "{workerpool0"}, check=False)
    assert r.returncode == 2 and r.stderr.startswith("error: Vertex AI CLUSTER_SPEC is not JSON") and r.stderr.count("\n") == 1
    assert not (tmp_path / "m").exists()


def test_an_unreachable_coordinator_is_one_line_after_the_timeout(small_dataset, tmp_path):
    port = _free_port()  # nothing listens there
    r = run_cli("-m", "components.train", "--dataset", str(small_dataset), "--model", str(tmp_path / "m"), *FLAGS,
                "--coordinator-timeout", "3", env={"CLUSTER_SPEC": cluster_spec(port, 2, 1)}, check=False)
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.startswith(f"error: process 1 of 2: the coordinator 127.0.0.1:{port} (Vertex AI CLUSTER_SPEC) "
                               "did not answer within 3 s") and r.stderr.count("\n") == 1
    assert not (tmp_path / "m").exists()


def test_a_killed_process_fails_the_run_and_a_rerun_resumes_from_the_checkpoint(small_dataset, tmp_path):
    """SIGKILL of process 1 mid-run: process 0 stops at once with one line (its lifeline to process 1 closed,
    ``mlp_core.distributed``); both rerun, resume, and end with the parameters of a run never interrupted."""
    import signal
    import time

    flags = ["--epochs", "6", "--batch-size", "96", "--heartbeat-timeout", "10"]
    unbroken = tmp_path / "unbroken"
    run_cli("-m", "components.train", "--dataset", str(small_dataset), "--model", str(unbroken), *flags,
            env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})

    model, port = tmp_path / "model", _free_port()
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    logs = [tmp_path / f"process-{i}.log" for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-m", "components.train", "--dataset", str(small_dataset),
                               "--model", str(model), *flags], cwd=ROOT, stdout=logs[i].open("w"), stderr=subprocess.STDOUT,
                              env={**env, "CLUSTER_SPEC": cluster_spec(port, 2, i)}) for i in range(2)]
    deadline = time.monotonic() + 300
    while "epoch 3/6" not in logs[0].read_text():
        assert time.monotonic() < deadline and procs[0].poll() is None, logs[0].read_text()[-2000:]
        time.sleep(0.1)
    procs[1].send_signal(signal.SIGKILL)
    started = time.monotonic()
    assert procs[0].wait(timeout=120) != 0
    print(f"\nprocess 0 stopped {time.monotonic() - started:.0f} s after process 1 was killed")
    log = logs[0].read_text()
    assert "error: process 0 of 2: process 1 stopped before training was done" in log, log[-2000:]
    assert procs[0].returncode == 2 and "Traceback" not in log and "stack trace" not in log, log[-2000:]
    assert not (model / "_COMPLETE.json").exists()

    results = _train_as(2, small_dataset, model, extra=["--epochs", "6", "--heartbeat-timeout", "10"])
    resumed = re.search(r"resuming from .* \((\d) epoch\(s\) done\)", results[0].stdout)
    assert resumed and int(resumed.group(1)) >= 3, results[0].stdout[-2000:]
    assert "resuming from" in results[1].stdout  # every process resumes from process 0's checkpoint
    ours, _ = _model(model)
    theirs, _ = _model(unbroken)
    assert max(float(np.max(np.abs(ours[k] - theirs[k]))) for k in theirs) < 1e-6


_KFP_STEP = """
import sys
from kfp.dsl import Artifact, Dataset, Metrics, Model
from components.train import train
model, metrics = Model(name="model", uri=sys.argv[2]), Metrics(name="metrics", uri=sys.argv[3])
train(dataset=Dataset(name="dataset", uri=sys.argv[1]), model=model, metrics=metrics,
      tensorboard=Artifact(name="tensorboard", uri=sys.argv[2] + "-tensorboard"), hidden_sizes="512,512",
      step_size=0.01, batch_size=96, epochs=1, seed=0, shuffle=True, placement="auto", checkpoint_root="",
      run_id="", require_gpu=False, trainer_job="", best_hyperparameters="{}")
print("returned to kfp's executor with metrics", sorted(metrics.metadata))
"""


def test_in_a_multi_host_custom_job_only_process_0_returns_to_kfps_executor(small_dataset, tmp_path):
    """Every replica of a Vertex custom job runs the kfp train function with the same output paths; kfp's
    executor writes executor_output.json after the function returns, so the others must exit before that."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    procs = [subprocess.Popen([sys.executable, "-c", _KFP_STEP, str(small_dataset), str(tmp_path / "model"),
                               str(tmp_path / "metrics")], cwd=ROOT, env={**env, "CLUSTER_SPEC": cluster_spec(port, 2, i)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[1][-2000:]
    assert "returned to kfp's executor with metrics ['examples_per_second', 'final_loss'" in outputs[0]
    assert "returned to kfp's executor" not in outputs[1]
    assert (tmp_path / "model" / "_COMPLETE.json").exists()
    assert (tmp_path / "model-tensorboard" / "_COMPLETE.json").exists()  # written once, by process 0
