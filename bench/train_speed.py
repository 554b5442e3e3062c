"""The notebook's training loop vs this project's trainer, side by side, one process.

    python -m bench.train_speed --dataset DIR [--tfds-data-dir DIR] [--epochs 3]
    python -m bench.train_speed --npz mnist.npz [--epochs 10]      # no TensorFlow (GPU machines)
    python -m bench.train_speed --dataset DIR --write-npz mnist.npz

Both train the same model on the same data in the same order (our seed-faithful
mode) with the same config, and print: compile time (first epoch minus the
median of the others), median epoch time over epochs 2..N, examples per second,
peak host memory (RSS sampled during each phase), per-epoch test accuracy, and
the ratio notebook/ours. Ours runs first so that its RSS is not inflated by the
notebook's arrays.
"""

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np


class PeakRss:
    """Peak resident set size of this process while the ``with`` block runs (sampled)."""

    def __init__(self, interval: float = 0.005):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    @staticmethod
    def current() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.current())
            time.sleep(self.interval)

    def __enter__(self):
        self.peak = self.current()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.current())


def summarise(name: str, epoch_seconds: list[float], accuracies: list[float], peak_rss: int, n: int) -> dict:
    later = epoch_seconds[1:] or epoch_seconds
    median = statistics.median(later)
    return {
        "name": name,
        "compile_s": max(0.0, epoch_seconds[0] - median),
        "median_epoch_s": median,
        "examples_per_s": n / median,
        "peak_rss_gib": peak_rss / 2**30,
        "accuracies": accuracies,
    }


def epoch_flop(layer_sizes, num_examples: int) -> float:
    """FLOP of one training epoch: forward, weight gradients, and the hidden layers' input gradients."""
    macs = [m * n for m, n in zip(layer_sizes[:-1], layer_sizes[1:])]
    return 2.0 * num_examples * (2 * sum(macs) + sum(macs[1:]))


def matmul_rate(n: int = 2048, repeats: int = 5) -> float:
    """Best float32 FLOP/s of a jitted n x n matmul on the default device (default precision)."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - started)
    return 2.0 * n**3 / best


def run_ours(data: dict, epochs: int, log, unroll: int = 1) -> dict:
    """This project's trainer, seed-faithful order, data already on the device."""
    import jax
    from jax import random

    from mlp_core import TrainConfig, init_network_params
    from mlp_core.train import EpochRunner, data_mesh, evaluate

    config = TrainConfig(num_epochs=epochs, shuffle=False)
    with PeakRss() as rss:
        runner = EpochRunner(config, len(data["train_y"]), mesh=data_mesh(), unroll=unroll)
        params = init_network_params(config.layer_sizes, random.key(config.seed))
        params, x, y = runner.place(params, data["train_x"], data["train_y"])
        test = jax.device_put((data["test_x"], data["test_y"]))
        seconds, accuracies = [], []
        for epoch in range(epochs):
            started = time.perf_counter()
            params, loss, _, _ = runner.run_epoch(params, x, y, epoch)
            jax.block_until_ready((params, loss))
            seconds.append(time.perf_counter() - started)
            accuracies.append(evaluate(params, *test)[1])
            log(f"  ours  epoch {epoch + 1}: {seconds[-1]:.3f} s, test accuracy {accuracies[-1]:.4f}")
    name = "ours (one compiled call per epoch)" + (f", unroll {unroll}" if unroll > 1 else "")
    result = summarise(name, seconds, accuracies, rss.peak, len(data["train_y"]))
    result["traces"] = runner.trace_count
    result["flop"] = epoch_flop(config.layer_sizes, len(data["train_y"]))
    return result


def run_seed(batches_of_epoch, data: dict, epochs: int, log, label: str) -> dict:
    """The notebook's loop: one jitted ``update`` per batch, its own ``accuracy`` after each epoch."""
    import functools

    import jax.numpy as jnp
    from jax import jit, random

    from mlp_core.model import accuracy, init_network_params, one_hot
    from mlp_core.model import update as seed_update

    step_size, num_labels, num_pixels = 0.01, 10, 784
    # The notebook's jitted ``update`` (mlp_core.model transcribes it; step_size is its global).
    update = jit(functools.partial(seed_update, step_size=step_size))

    with PeakRss() as rss:
        params = init_network_params([784, 512, 512, 10], random.key(0))
        test_images, test_labels = jnp.asarray(data["test_x"]), one_hot(jnp.asarray(data["test_y"]), num_labels)
        seconds, accuracies = [], []
        for epoch in range(epochs):
            start_time = time.time()
            for x, y in batches_of_epoch():
                x = jnp.reshape(x, (len(x), num_pixels))
                y = one_hot(y, num_labels)
                params = update(params, x, y)
            params[-1][1].block_until_ready()
            seconds.append(time.time() - start_time)
            accuracies.append(float(accuracy(params, test_images, test_labels)))
            log(f"  seed  epoch {epoch + 1}: {seconds[-1]:.3f} s, test accuracy {accuracies[-1]:.4f}")
    return summarise(label, seconds, accuracies, rss.peak, len(data["train_y"]))


def load_from_dataset(dataset: Path, log) -> tuple[dict, dict]:
    """Arrays from a Dataset artifact, timing TFRecords -> device arrays."""
    import jax

    from mlp_core.data.artifact import load_metadata, read_split

    metadata = load_metadata(dataset)
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        train_x, train_y = read_split(dataset, "train", metadata)
        on_device = jax.device_put(train_x.reshape(len(train_x), -1))
        on_device.block_until_ready()
        timings.append(time.perf_counter() - started)
        del on_device
    test_x, test_y = read_split(dataset, "test", metadata)
    n = len(train_y)
    reading = {"first_s": timings[0], "best_s": min(timings), "examples_per_s": n / min(timings), "n": n}
    data = {
        "train_x": train_x.reshape(n, -1),
        "train_y": train_y,
        "test_x": test_x.reshape(len(test_y), -1),
        "test_y": test_y,
    }
    return data, reading


def load_npz(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in ("train_x", "train_y", "test_x", "test_y")}


def report(ours: list[dict], seed: dict, reading: dict | None, epochs: int, note: str, peak: float) -> None:
    import jax

    device = jax.devices()[0]
    print()
    print(
        f"device: {device.platform} ({device.device_kind}) x{len(jax.devices())}; jax {jax.__version__}; {epochs} epochs"
    )
    print(note)
    if reading:
        print(
            f"TFRecords -> device arrays (sha256 check, CRC check, decode, device_put), {reading['n']:,} examples: "
            f"{reading['best_s'] * 1000:.0f} ms best of 3 (first {reading['first_s'] * 1000:.0f} ms) = "
            f"{reading['examples_per_s']:,.0f} examples/s"
        )
    print()
    print(
        f"{'':46}{'compile s':>10}{'epoch s (median 2..N)':>23}{'examples/s':>12}{'peak RSS GiB':>14}{'final test acc':>16}"
    )
    for r in (seed, *ours):
        print(
            f"{r['name']:<46}{r['compile_s']:>10.3f}{r['median_epoch_s']:>23.4f}{r['examples_per_s']:>12,.0f}"
            f"{r['peak_rss_gib']:>14.2f}{r['accuracies'][-1]:>16.4f}"
        )
    print()
    for r in ours:
        diff = max(abs(a - b) for a, b in zip(seed["accuracies"], r["accuracies"]))
        print(f"{r['name']}:")
        print(f"  epoch time ratio notebook/ours: {seed['median_epoch_s'] / r['median_epoch_s']:.1f}x")
        print(f"  10 epochs after compile: {10 * r['median_epoch_s'] * 1000:.0f} ms")
        print(f"  per-epoch test accuracy, largest difference notebook vs ours: {diff:.4f}")
        print(f"  traced the epoch function {r['traces']} time(s) in {epochs} epochs")
    best = min(ours, key=lambda r: r["median_epoch_s"])
    flop, ours_s, seed_s = best["flop"], best["median_epoch_s"], seed["median_epoch_s"]
    print()
    print(f"arithmetic: {flop:.3g} FLOP per epoch; ours runs it at {flop / ours_s / 1e9:,.0f} GFLOP/s")
    print(
        f"  a 2048x2048 float32 matmul runs at {peak / 1e9:,.0f} GFLOP/s here: an epoch whose 128-row products "
        f"all ran that fast would take {flop / peak * 1000:.0f} ms"
    )
    target = 8 if device.platform == "cpu" else 300  # issue #3's targets
    print(
        f"  {target}x the notebook loop needs {seed_s / target * 1000:.1f} ms per epoch "
        f"= {flop * target / seed_s / 1e9:,.0f} GFLOP/s"
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.train_speed", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", type=Path, help="Dataset artifact (from components.ingest) of full MNIST")
    src.add_argument("--npz", type=Path, help=".npz with train_x, train_y, test_x, test_y (no TensorFlow needed)")
    p.add_argument("--tfds-data-dir", default=None, help="where the notebook's loop reads mnist with tfds")
    p.add_argument("--epochs", type=int, default=3, help="epochs for each trainer (default: %(default)s; >= 2)")
    p.add_argument("--write-npz", type=Path, help="with --dataset: write the .npz for --npz and exit")
    p.add_argument(
        "--unroll",
        type=int,
        nargs="+",
        default=[1],
        metavar="K",
        help="run ours once per K: training steps per iteration of the compiled loop (default: 1)",
    )
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    args = p.parse_args(argv)
    if args.epochs < 2:
        p.error("--epochs must be at least 2 (the median is taken over epochs 2..N)")
    if min(args.unroll) < 1:
        p.error("--unroll values must be at least 1")
    log = (lambda *_: None) if args.quiet else (lambda m: print(m, flush=True))

    if args.npz:
        data, reading = load_npz(args.npz), None
        batch = 128

        def seed_batches():
            for start in range(0, len(data["train_y"]), batch):
                yield data["train_x"][start : start + batch], data["train_y"][start : start + batch]

        note = "notebook loop fed numpy batches from the .npz (kinder to it than tfds: no tf.data, no PNG decoding)"
        seed_label = "notebook loop (numpy batches)"
    else:
        data, reading = load_from_dataset(args.dataset, log)
        if args.write_npz:
            np.savez_compressed(args.write_npz, **data)
            print(f"wrote {args.write_npz} ({args.write_npz.stat().st_size / 2**20:.1f} MiB)")
            return 0
        import tensorflow_datasets as tfds

        def seed_batches():
            ds = tfds.load(name="mnist", split="train", as_supervised=True, data_dir=args.tfds_data_dir)
            ds = ds.batch(128).prefetch(1)
            return tfds.as_numpy(ds)

        note = "notebook loop exactly as written: tfds.load(...).batch(128).prefetch(1) rebuilt every epoch"
        seed_label = "notebook loop (tfds as_numpy)"

    ours = []
    for unroll in args.unroll:
        log(f"ours (unroll {unroll}):")
        ours.append(run_ours(data, args.epochs, log, unroll))
    log("notebook:")
    seed = run_seed(seed_batches, data, args.epochs, log, seed_label)
    report(ours, seed, reading, args.epochs, note, matmul_rate())
    return 0


if __name__ == "__main__":
    sys.exit(main())
