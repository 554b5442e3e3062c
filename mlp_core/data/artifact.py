"""The Dataset artifact: sharded TFRecords per split plus ``metadata.json``.

Layout::

    <dataset>/metadata.json
    <dataset>/train-00000-of-00006.tfrecord ...
    <dataset>/test-00000-of-00001.tfrecord ...

``metadata.json`` is the one home of the dataset's facts (name, version, image
shape, classes, counts, shard checksums); train and evaluate read them from here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mlp_core.data.records import read_shards, sha256_file

METADATA_FILE = "metadata.json"
FORMAT_VERSION = 1


class DatasetError(ValueError):
    """A Dataset artifact is missing, malformed or does not match its metadata."""


def load_metadata(dataset_dir: str | Path) -> dict[str, Any]:
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.exists():
        raise DatasetError(f"dataset folder does not exist: {dataset_dir}")
    if not dataset_dir.is_dir():
        raise DatasetError(f"dataset path is a file, expected a folder: {dataset_dir}")
    path = dataset_dir / METADATA_FILE
    if not path.is_file():
        raise DatasetError(f"{dataset_dir} is not a Dataset artifact: {METADATA_FILE} is missing")
    try:
        metadata = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path} is not valid JSON: {e}") from None
    if metadata.get("format_version") != FORMAT_VERSION:
        raise DatasetError(f"{path}: unsupported format_version {metadata.get('format_version')!r}")
    return metadata


def verify_shards(dataset_dir: str | Path, metadata: dict[str, Any], split: str) -> list[Path]:
    """Paths of ``split``'s shards, after checking none is missing, extra or altered."""
    dataset_dir = Path(dataset_dir)
    if split not in metadata["splits"]:
        raise DatasetError(f"split {split!r} is not in {dataset_dir} (it has {', '.join(metadata['splits'])})")
    shards = metadata["splits"][split]["shards"]
    listed = {s["name"] for s in shards}
    present = {p.name for p in dataset_dir.glob(f"{split}-*.tfrecord")}
    if missing := sorted(listed - present):
        raise DatasetError(f"shard {missing[0]} listed in {METADATA_FILE} is missing from {dataset_dir}")
    if extra := sorted(present - listed):
        raise DatasetError(f"shard {extra[0]} in {dataset_dir} is not listed in {METADATA_FILE}")
    paths = []
    for shard in shards:
        path = dataset_dir / shard["name"]
        size = path.stat().st_size
        if size != shard["num_bytes"]:
            raise DatasetError(f"shard {shard['name']} has {size} bytes, {METADATA_FILE} says {shard['num_bytes']} (truncated or altered)")
        digest = sha256_file(path)
        if digest != shard["sha256"]:
            raise DatasetError(f"shard {shard['name']} has sha256 {digest[:12]}…, {METADATA_FILE} says {shard['sha256'][:12]}…")
        paths.append(path)
    return paths


def read_split(dataset_dir: str | Path, split: str, metadata: dict[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Verified ``(uint8 images [N, *image_shape], int32 labels [N])`` of one split."""
    metadata = metadata if metadata is not None else load_metadata(dataset_dir)
    paths = verify_shards(dataset_dir, metadata, split)
    shape = metadata["image_shape"]
    try:
        images, labels = read_shards(paths, shape)
    except Exception as e:  # tf.errors.DataLossError and friends, as one line
        raise DatasetError(f"cannot read {split} shards of {dataset_dir}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    expected = metadata["splits"][split]["num_examples"]
    if len(labels) != expected:
        raise DatasetError(f"{split} has {len(labels)} records, {METADATA_FILE} says {expected}")
    if len(labels) == 0:
        raise DatasetError(f"split {split!r} of {dataset_dir} is empty")
    num_classes = metadata["num_classes"]
    if labels.min() < 0 or labels.max() >= num_classes:
        bad = int(labels[(labels < 0) | (labels >= num_classes)][0])
        raise DatasetError(f"{split} holds label {bad}, outside the {num_classes} classes 0..{num_classes - 1}")
    return images, labels.astype(np.int32)


def write_metadata(dataset_dir: str | Path, metadata: dict[str, Any]) -> None:
    path = Path(dataset_dir) / METADATA_FILE
    path.write_text(json.dumps({"format_version": FORMAT_VERSION, **metadata}, indent=2) + "\n")


def dataset_identity(metadata: dict[str, Any]) -> dict[str, Any]:
    """What a model records about the data it was trained on."""
    return {
        "name": metadata["dataset"]["name"],
        "version": metadata["dataset"]["version"],
        "image_shape": metadata["image_shape"],
        "num_classes": metadata["num_classes"],
        "class_names": metadata["class_names"],
        "shards": {split: [s["sha256"] for s in info["shards"]] for split, info in metadata["splits"].items()},
    }
