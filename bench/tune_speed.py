"""Tuning's cost: K trials as one vmapped population vs K trials one after another vs K train processes.

    python -m bench.tune_speed --dataset out/dataset [--trials 16] [--epochs 3] [--processes 16]
    python -m bench.tune_speed --npz data/mnist.npz --population-sizes 1 8 32 64     # a GPU, no TensorFlow

Every trial is the seed's MLP (784-512-512-10, batch 128) at its own step size (log-spaced 1e-3..1e-1) and seed.
Printed: wall time of each way, the population's epoch time per trial as a fraction of one trial's epoch, trials
per second per device for each population size, and memory: the compiled epoch's device bytes (XLA's
memory_analysis) for 1 and K trials, hence per trial, and the K that fits in the device's memory.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from bench.train_speed import load_from_dataset, load_npz
from mlp_core import tune
from mlp_core.config import TrainConfig
from mlp_core.model import init_network_params
from mlp_core.train import EpochRunner

SIZES = (784, 512, 512, 10)


def population_run(images, labels, k: int, epochs: int) -> "tuple[float, list[float]]":
    """Wall seconds for ``k`` trials x ``epochs`` as one population, and each epoch's seconds."""
    step_sizes = jnp.asarray(np.geomspace(1e-3, 1e-1, k), jnp.float32)
    seeds = jnp.arange(k)
    started = time.perf_counter()
    params = tune.init_population(SIZES, seeds, 1e-2)
    epoch_seconds = []
    for epoch in range(epochs):
        t = time.perf_counter()
        params, losses, _ = tune.population_epoch(params, step_sizes, tune._keys(seeds, epoch), images, labels,
                                                  batch_size=128, num_classes=10, shuffle=True)
        losses.block_until_ready()
        epoch_seconds.append(time.perf_counter() - t)
    return time.perf_counter() - started, epoch_seconds


def sequential_run(images, labels, k: int, epochs: int) -> float:
    """Wall seconds for ``k`` trials trained one after another in this process (the one training loop's epoch)."""
    started = time.perf_counter()
    for step_size, seed in zip(np.geomspace(1e-3, 1e-1, k), range(k)):
        runner = EpochRunner(TrainConfig(layer_sizes=SIZES, step_size=float(step_size), seed=seed), len(labels))
        params = init_network_params(SIZES, jax.random.key(seed), 1e-2)
        for epoch in range(epochs):
            out = runner.run_epoch(params, images, labels, epoch)
            params = out.params
        out.loss.block_until_ready()
    return time.perf_counter() - started


def process_runs(dataset: Path, n: int, epochs: int) -> "list[float]":
    """Wall seconds of each of ``n`` separate ``python -m components.train`` processes (one trial each)."""
    seconds = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, step_size in enumerate(np.geomspace(1e-3, 1e-1, n)):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "components.train", "--dataset", str(dataset), "--model",
                            f"{tmp}/model-{i}", "--epochs", str(epochs), "--step-size", f"{step_size:.6g}",
                            "--seed", str(i), "--placement", "device"], check=True, capture_output=True)
            seconds.append(time.perf_counter() - started)
    return seconds


def epoch_bytes(images, labels, k: int) -> int:
    """Device bytes the compiled population epoch needs for ``k`` trials: arguments, outputs and temporaries."""
    params = jax.eval_shape(lambda: tune.init_population(SIZES, jnp.arange(k), 1e-2))
    keys = jax.eval_shape(lambda: tune._keys(jnp.arange(k), 0))
    compiled = tune.population_epoch.lower(params, jax.ShapeDtypeStruct((k,), jnp.float32), keys, images, labels,
                                           batch_size=128, num_classes=10, shuffle=True).compile()
    m = compiled.memory_analysis()
    return m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", type=Path, help="a Dataset artifact (make out/dataset)")
    src.add_argument("--npz", type=Path, help=".npz with train_x, train_y (make bench-npz): no TensorFlow needed")
    p.add_argument("--trials", type=int, default=16, help="K, for the three-way comparison (default: 16)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per trial (default: 3)")
    p.add_argument("--processes", type=int, default=None,
                   help="separate train processes to time (default: --trials; fewer are extrapolated to K; 0: skip)")
    p.add_argument("--population-sizes", type=int, nargs="*", default=[], metavar="K",
                   help="also time populations of these sizes alone (trials per second per device)")
    args = p.parse_args(argv)
    if args.trials < 1 or args.epochs < 2:
        p.error("--trials must be >= 1 and --epochs >= 2 (the first epoch compiles)")
    if args.dataset:
        data, _ = load_from_dataset(args.dataset, log=lambda *a: None)
    else:
        data = load_npz(args.npz)
    images, labels = jax.device_put((data["train_x"].reshape(len(data["train_y"]), -1),
                                     np.asarray(data["train_y"], np.int32)))
    k, epochs = args.trials, args.epochs
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), {len(labels)} training examples, "
          f"784-512-512-10, batch 128, {epochs} epochs per trial")

    one_wall, one_epochs = population_run(images, labels, 1, epochs)
    alone_epoch = statistics.median(one_epochs[1:])
    pop_wall, pop_epochs = population_run(images, labels, k, epochs)
    pop_epoch = statistics.median(pop_epochs[1:])
    seq_wall = sequential_run(images, labels, k, epochs)
    print(f"\n{k} trials x {epochs} epochs                     wall s   per trial s")
    print(f"  one population (vmap, one program)   {pop_wall:8.1f}   {pop_wall / k:8.2f}")
    print(f"  one after another, in process        {seq_wall:8.1f}   {seq_wall / k:8.2f}")
    processes = k if args.processes is None else args.processes
    if processes and args.dataset:
        runs = process_runs(args.dataset, processes, epochs)
        mean = statistics.mean(runs)
        said = "" if processes == k else f"  ({processes} timed, x{k / processes:g})"
        print(f"  separate train processes             {mean * k:8.1f}   {mean:8.2f}{said}")
    print(f"\nepoch time: one trial {alone_epoch:.3f} s; {k} trials as one population {pop_epoch:.3f} s "
          f"= {pop_epoch / k:.3f} s per trial = {pop_epoch / k / alone_epoch:.2f} of one trial's epoch "
          f"({pop_epoch / alone_epoch:.1f}x one trial's epoch for {k}x the work)")

    for size in args.population_sizes:
        _, seconds = population_run(images, labels, size, 2)
        print(f"  K={size:3d}: epoch {seconds[1]:.4f} s, {size / seconds[1]:.1f} trial-epochs/s per device, "
              f"{seconds[1] / alone_epoch:.2f}x one trial's epoch")

    one, many = epoch_bytes(images, labels, 1), epoch_bytes(images, labels, k)
    per_trial = (many - one) / (k - 1) if k > 1 else one
    limit, which = tune.device_memory()
    fits = int((limit - (one - per_trial)) // per_trial)
    print(f"\nmemory (XLA memory_analysis of the compiled epoch): 1 trial {one / 2**20:.1f} MiB, {k} trials "
          f"{many / 2**20:.1f} MiB, {per_trial / 2**20:.2f} MiB per trial beyond the shared data; "
          f"{which} {limit / 2**30:.1f} GiB: K <= {fits} fits")
    return 0


if __name__ == "__main__":
    sys.exit(main())
