"""The ingest step's work: a TensorFlow Datasets dataset, or a folder of labelled images -> a Dataset artifact.

Modules that load TensorFlow are imported in the functions: the step refuses bad arguments before it loads.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from artifacts.outputs import artifact_writer, check_apart, check_artifact_output
from mlp_core.data.image_folder import ingest_image_folder
from mlp_core.errors import UserError


def ingest(
    output: "str | Path",
    *,
    source: str,
    span_window: int,
    image_shape: str,
    resize: bool,
    dataset_name: str,
    tfds_data_dir: str,
    train_split: str,
    test_split: str,
    records_per_shard: int,
    progress: bool = True,
) -> dict[str, Any]:
    """The ingest step: ``source`` "" reads the tfds dataset ``dataset_name``; else the image folder (or span
    pattern) ``source`` (``mlp_core.data.image_folder``). Returns the metadata written."""
    if records_per_shard <= 0:  # before TensorFlow loads
        raise UserError(f"records_per_shard must be a positive integer, got {records_per_shard}",
                          field="records_per_shard")
    if source:
        return ingest_image_folder(output, source=source, span_window=span_window, image_shape=image_shape,
                                   resize=resize, train_split=train_split, test_split=test_split,
                                   records_per_shard=records_per_shard, progress=progress)
    if span_window != 1 or image_shape or resize:
        raise UserError("--span-window, --image-shape and --resize apply to an image folder --source; "
                           f"without one, ingest reads the tfds dataset {dataset_name!r}")
    return ingest_tfds(output, dataset_name=dataset_name, tfds_data_dir=tfds_data_dir, train_split=train_split,
                       test_split=test_split, records_per_shard=records_per_shard, progress=progress)


def ingest_tfds(
    output: "str | Path",
    *,
    dataset_name: str,
    tfds_data_dir: str,
    train_split: str,
    test_split: str,
    records_per_shard: int,
    progress: bool = True,
) -> dict[str, Any]:
    """Write a tfds dataset's train and test splits under ``output``; returns the metadata.

    The arguments are the ingest step's parameters (``components.ingest.ingest`` declares their defaults);
    ``tfds_data_dir`` "" is tfds's own ($TFDS_DATA_DIR or ~/tensorflow_datasets).
    """
    from mlp_core.data import tfds_source
    from mlp_core.data.artifact import write_metadata
    from mlp_core.data.records import write_shards

    dataset, tfds_data_dir = dataset_name, tfds_data_dir or None
    tfds_source.check_dataset_name(dataset)
    source = tfds_data_dir or os.environ.get("TFDS_DATA_DIR") or str(Path.home() / "tensorflow_datasets")
    check_apart({"--tfds-data-dir": source}, {"--output": output})
    check_artifact_output(output, "dataset")
    builder = tfds_source.open_builder(dataset, tfds_data_dir, progress=progress)
    info = tfds_source.source_info(builder)
    splits: dict[str, Any] = {}
    with artifact_writer(output, "dataset") as tmp:
        for name, split in (("train", train_split), ("test", test_split)):
            count = tfds_source.num_examples(builder, split)
            if count == 0:
                raise UserError(f"split {split!r} of {dataset} is empty")
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
