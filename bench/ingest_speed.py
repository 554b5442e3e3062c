"""Image-folder ingest vs a plain tf.data decode loop on the same PNG files.

    python -m bench.ingest_speed [--images 20000] [--folder DIR] [--repeats 3]

Exports the first N MNIST training images (``tfds.load('mnist', split='train[:N]')``, the cache
``make setup`` prepares) as PNGs in tfds ImageFolder's layout, N in ``train/`` and N/10 in
``test/`` (unless ``--folder`` already holds them), then times, on the same files:

- **ingest**: ``python -m components.ingest --source DIR``'s work (``mlp_core.data.image_folder``):
  list, read, sha256, decode, check the shape, encode ``tf.train.Example``, write TFRecord shards,
  sha256 them, metadata;
- **limit**: ``tf.data.Dataset.list_files -> tf.io.read_file -> tf.io.decode_png -> batch``, iterated
  to the end: decoding alone, in TensorFlow's own parallel pipeline.

Printed per side: wall seconds, images/s, CPU seconds (user + system of this process, every thread)
and images/s per core (images / CPU seconds), best of ``--repeats`` (the files are in the page cache
after the first); then the ratio ingest/limit per core. Figures are printed, never asserted.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def export_pngs(folder: Path, images: int, data_dir: "str | None") -> int:
    """Write ``train[:images]`` and ``test[:images // 10]`` of MNIST as PNGs under ``folder``; returns the count."""
    import numpy as np
    import tensorflow_datasets as tfds
    from PIL import Image

    total = 0
    for split, tfds_split in (("train", f"train[:{images}]"), ("test", f"test[:{max(images // 10, 10)}]")):
        data = tfds.as_numpy(tfds.load("mnist", split=tfds_split, data_dir=data_dir, batch_size=-1))
        for i, (image, label) in enumerate(zip(data["image"], data["label"])):
            path = folder / split / str(int(label)) / f"{i:06d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.asarray(image)[..., 0], "L").save(path)
        total += len(data["label"])
    return total


def timed(work) -> tuple[float, float]:
    """``(wall seconds, CPU seconds)`` of ``work()``: CPU is user + system time of every thread of this process."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def ingest_once(folder: Path, output: Path) -> None:
    from mlp_core.data.image_folder import ingest_image_folder

    ingest_image_folder(output, source=str(folder), span_window=1, image_shape="", resize=False, train_split="train",
                        test_split="test", records_per_shard=10_000, progress=False)


def tf_data_once(folder: Path, batch: int = 1024) -> int:
    """The limit: list_files -> read_file -> decode_png -> batch, every image decoded; returns the count."""
    from mlp_core.data.tf import tf

    files = tf.data.Dataset.list_files(str(folder / "*" / "*" / "*.png"), shuffle=False)
    ds = files.map(lambda path: tf.io.decode_png(tf.io.read_file(path), channels=0),
                   num_parallel_calls=tf.data.AUTOTUNE).batch(batch).prefetch(tf.data.AUTOTUNE)
    return sum(int(images.shape[0]) for images in ds)


def report(name: str, images: int, wall: float, cpu: float) -> float:
    per_core = images / cpu
    print(f"{name:<7} {wall:7.2f} s wall {images / wall:10,.0f} images/s   {cpu:7.2f} s CPU {per_core:10,.0f} images/s per core")
    return per_core


def main(argv: "list[str] | None" = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ingest_speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=20_000, help="MNIST training images to export (default: 20000)")
    p.add_argument("--folder", type=Path, default=None, help="an image folder to use (exported there if empty)")
    p.add_argument("--tfds-data-dir", default=None, help="TFDS data dir holding prepared mnist")
    p.add_argument("--repeats", type=int, default=3, help="runs of each side; the best is reported (default: 3)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as scratch:
        folder = args.folder or Path(scratch) / "images"
        if not folder.is_dir() or not any(folder.iterdir()):
            wall, _ = timed(lambda: export_pngs(folder, args.images, args.tfds_data_dir))
            print(f"exported MNIST train[:{args.images}] + test as PNG to {folder} in {wall:.1f} s")
        images = sum(1 for _ in folder.glob("*/*/*.png"))
        print(f"{images} PNG images, {os.cpu_count()} core(s) on this machine, best of {args.repeats}")
        counted = tf_data_once(folder)  # warm-up: page cache, TensorFlow's start-up
        assert counted == images, (counted, images)
        limit = min((timed(lambda: tf_data_once(folder)) for _ in range(args.repeats)), key=lambda t: t[1])
        runs = []
        for i in range(args.repeats):
            runs.append(timed(lambda: ingest_once(folder, Path(scratch) / f"dataset-{i}")))
        ours = min(runs, key=lambda t: t[1])
        per_core_limit = report("tf.data", images, *limit)
        per_core_ours = report("ingest", images, *ours)
        print(f"ingest / tf.data limit, per core: {per_core_ours / per_core_limit:.2f}   "
              f"(wall: {limit[0] / ours[0]:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
