"""The validate step's time as a fraction of the train step's, on the same Dataset (full MNIST), and the drift measures.

    python -m bench.validate_speed --dataset out/dataset [--epochs 10] [--repeats 3] [--no-drift]

Both are timed in this process, as their steps run them (``components.validate.validate_dataset``:
read and verify every shard, statistics, schema, anomalies, report; ``components.train.train_on_dataset``:
the default config, data read, compile and every epoch), after one untimed warm-up validation so
that imports and matplotlib's font cache count for neither. Printed: the median of ``--repeats``
validations, the training time, their ratio; then the L-infinity distance and Jensen-Shannon
divergence of clean and drifted slices of the train split against ``train[:30000]`` (the figures
``mlp_core.data.validation`` bases its default thresholds on).
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def time_validation(dataset: Path, out: Path, repeats: int) -> float:
    from components.validate import validate_dataset

    def once(i):
        folder = out / f"validate-{i}"
        start = time.perf_counter()
        result = validate_dataset(dataset, folder / "statistics.pb", folder / "anomalies.pbtxt", folder / "schema.pbtxt",
                                  folder / "report.html", folder / "report.md")
        seconds = time.perf_counter() - start
        if result["anomalies"]:
            print("anomalies:", *result["anomalies"], sep="\n  ")
        return seconds

    once("warm-up")
    return statistics.median(once(i) for i in range(repeats))


def time_training(dataset: Path, out: Path, epochs: int) -> float:
    from components.train import train_on_dataset
    from mlp_core.config import TrainConfig

    start = time.perf_counter()
    train_on_dataset(dataset, out / "model", TrainConfig(epochs=epochs), log=lambda *a, **k: None)
    return time.perf_counter() - start


def drift_table(dataset: Path) -> list[tuple[str, int, float, float]]:
    """``(case, examples, L-infinity, JS divergence)`` of slices of the train split against ``train[:30000]``."""
    from mlp_core.data.artifact import load_metadata, read_split
    from mlp_core.data.statistics import SplitCounts, statistics_from_counts, summarize
    from mlp_core.data.validation import js_divergence, linf_distance

    metadata = load_metadata(dataset)
    images, labels = read_split(dataset, "train", metadata)
    half = len(labels) // 2

    def summary(x, y):
        counts = SplitCounts(metadata["num_classes"])
        counts.add(x, y)
        return summarize(statistics_from_counts({"s": counts}, metadata["image_shape"], metadata["class_names"]).datasets[0])

    base = summary(images[:half], labels[:half])
    rows = []

    def measure(case, x, y):
        s = summary(x, y)
        rows.append((case, len(y), linf_distance(s.label_counts, base.label_counts)[1],
                     js_divergence(s.pixel_histogram, base.pixel_histogram)))

    for n in (512, 5000, half):
        measure("clean", images[half : half + n], labels[half : half + n])
    x, y = images[half : half + 5000], labels[half : half + 5000]
    measure("only classes 0-4", x[y < 5], y[y < 5])
    measure("class 7 left out", x[y != 7], y[y != 7])
    measure("inverted 255 - x", 255 - x, y)
    measure("brightness +32", np.clip(x.astype(np.int16) + 32, 0, 255).astype(np.uint8), y)
    measure("brightness -32", np.clip(x.astype(np.int16) - 32, 0, 255).astype(np.uint8), y)
    measure("moved 3 px right", np.roll(x, 3, axis=2), y)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.validate_speed", description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True, type=Path, help="Dataset artifact (full MNIST: make out/dataset)")
    p.add_argument("--epochs", type=int, default=10, help="training epochs (default: 10, the notebook's)")
    p.add_argument("--repeats", type=int, default=3, help="validations timed (median)")
    p.add_argument("--no-drift", dest="drift", action="store_false", help="skip the drift table")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        validation_seconds = time_validation(args.dataset, out, args.repeats)
        training_seconds = time_training(args.dataset, out, args.epochs)
    print(f"validation: {validation_seconds:.2f} s (median of {args.repeats})")
    print(f"training ({args.epochs} epochs): {training_seconds:.2f} s")
    print(f"validation / training: {validation_seconds / training_seconds:.3f}")
    if args.drift:
        print(f"{'slice of train vs train[:half]':32} {'examples':>8} {'L-inf':>8} {'JS (bits)':>10}")
        for case, n, linf, js in drift_table(args.dataset):
            print(f"{case:32} {n:>8} {linf:>8.4f} {js:>10.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
