"""Epoch time of the train step as 1 and N processes on this machine, and the communication share.

    python -m bench.multiprocess_speed --dataset out/dataset [--processes 2] [--epochs 3]
    python -m bench.multiprocess_speed --npz data/mnist.npz      # no TensorFlow (GPU machines)

Three runs of the same training (seed order, so all three compute the same numbers):
one process on one device; one process with N devices (on a CPU, N forced host
devices: the batch is split, the gradient summed inside the process); N processes
on loopback with one device each (the gradient summed between processes by gloo,
as hosts would). The communication share is the part of the N-process epoch the
in-process N-device run does not need: ``1 - t(1 process, N devices) / t(N processes)``.
On a GPU machine the N-device run is 1 process x all its GPUs (``--processes`` is ignored).
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

_WORKER = """
import json, os, sys, time
import numpy as np
import jax
mode, epochs, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if mode == "multi":
    from mlp_core.distributed import ProcessGroup, initialize
    n, i, port = int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
    initialize(ProcessGroup(f"127.0.0.1:{port}", n, i, "bench"))
from mlp_core.config import TrainConfig
from mlp_core.mesh import data_mesh
with np.load(path, allow_pickle=False) as npz:
    data = {k: npz[k] for k in ("train_x", "train_y", "test_x", "test_y")}
config = TrainConfig(epochs=epochs, shuffle=False)
arrays = (data["train_x"], data["train_y"], data["test_x"], data["test_y"])
from mlp_core.train import SplitOnDevice, fit
if mode == "multi":
    from mlp_core.multiprocess import ProcessShare
    _, history = fit(config, ProcessShare(*arrays, mesh=data_mesh(jax.devices())))
else:
    _, history = fit(config, SplitOnDevice(*arrays, mesh=data_mesh()))
if jax.process_index() == 0:
    print(json.dumps({"seconds": [h.seconds for h in history], "test_accuracy": [h.test_accuracy for h in history],
                      "devices": jax.device_count(), "platform": jax.default_backend()}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _WORKER, *args], env=env, stdout=subprocess.PIPE, text=True)


def _result(procs: list[subprocess.Popen]) -> dict:
    outputs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit(f"a training process failed: exit codes {[p.returncode for p in procs]}")
    return json.loads(outputs[0].strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.multiprocess_speed", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", type=Path, help="Dataset artifact (from components.ingest)")
    src.add_argument("--npz", type=Path, help=".npz with train_x, train_y, test_x, test_y (bench.train_speed --write-npz)")
    p.add_argument("--processes", type=int, default=2, help="N (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run, >= 2 (default: %(default)s)")
    args = p.parse_args(argv)
    if args.epochs < 2 or args.processes < 2:
        p.error("--epochs and --processes must be at least 2")
    npz = args.npz
    if npz is None:
        from bench.train_speed import load_from_dataset

        data, _ = load_from_dataset(args.dataset, lambda *_: None)
        npz = Path(os.environ.get("TMPDIR", "/tmp")) / f"multiprocess-bench-{os.getpid()}.npz"
        np.savez(npz, **data)
    base = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    n = args.processes
    runs = {}
    started = time.perf_counter()
    runs["1 process, 1 device"] = _result([_run(["single", str(args.epochs), str(npz)], base)])
    forced = {**base, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}"}
    gpu = runs["1 process, 1 device"]["platform"] == "gpu"
    label = "1 process, all its GPUs" if gpu else f"1 process, {n} devices"
    runs[label] = _result([_run(["single", str(args.epochs), str(npz)], base if gpu else forced)])
    if not gpu:
        port = _free_port()
        runs[f"{n} processes, 1 device each"] = _result(
            [_run(["multi", str(args.epochs), str(npz), str(n), str(i), str(port)], base) for i in range(n)])
    if args.npz is None:
        npz.unlink()

    print(f"\n{args.epochs} epochs each, seed order; median epoch over epochs 2..{args.epochs} "
          f"({time.perf_counter() - started:.0f} s in all)")
    print(f"{'':32}{'devices':>8}{'epoch s':>10}{'test acc':>10}")
    medians = {}
    for name, r in runs.items():
        medians[name] = statistics.median(r["seconds"][1:])
        print(f"{name:<32}{r['devices']:>8}{medians[name]:>10.3f}{r['test_accuracy'][-1]:>10.4f}")
    if not gpu:
        inside, across = medians[f"1 process, {n} devices"], medians[f"{n} processes, 1 device each"]
        print(f"communication share of the {n}-process epoch: {max(0.0, 1 - inside / across):.0%} "
              f"(the gradient all-reduce between processes: 669,706 floats, 2.7 MB, once per step)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
