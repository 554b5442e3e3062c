"""The Dataset artifact: ``metadata.json`` (name, version, image shape, classes, counts, shard sha256s) beside
``<split>-NNNNN-of-NNNNN.tfrecord`` shards, ``_COMPLETE.json`` last (``artifacts.outputs``).

``metadata.json`` is the one home of the dataset's facts; train and evaluate read them from here.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from mlp_core.errors import UserError
from mlp_core.data.fast_records import decode_uniform_records
from mlp_core.data.records import read_shards, sha256_file
from artifacts import storage
from artifacts.locations import resolve
from artifacts.outputs import read_marker
from artifacts.schemas import check_dataset_metadata, loads

METADATA_FILE = "metadata.json"
FORMAT_VERSION = 1


def load_metadata(dataset_dir: str | Path) -> dict[str, Any]:
    dataset_dir = Path(dataset_dir)
    resolve(dataset_dir, "dataset")
    if not dataset_dir.exists():
        raise UserError(f"dataset folder does not exist: {dataset_dir}")
    if not dataset_dir.is_dir():
        raise UserError(f"dataset path is a file, expected a folder: {dataset_dir}")
    path = dataset_dir / METADATA_FILE
    if not path.is_file():
        raise UserError(f"{dataset_dir} is not a Dataset artifact: {METADATA_FILE} is missing")
    read_marker(dataset_dir, "dataset")
    try:
        metadata = loads(storage.read_bytes(path, storage.MANIFEST), str(path))
        if isinstance(metadata, dict):  # these two get a sentence of their own
            if metadata.get("format_version") != FORMAT_VERSION:
                raise UserError(f"{path}: unsupported format_version {metadata.get('format_version')!r}")
            if metadata.get("image_dtype") != "uint8":
                raise UserError(f"{path}: images must be uint8, metadata says {metadata.get('image_dtype')!r}")
        return check_dataset_metadata(metadata, str(path))
    except storage.StorageError as e:
        raise UserError(str(e)) from None


def verify_shards(dataset_dir: str | Path, metadata: dict[str, Any], split: str, check_sha256: bool = True) -> list[Path]:
    """Paths of ``split``'s shards, after checking none is missing, extra, resized or (sha256) altered."""
    dataset_dir = Path(dataset_dir)
    if split not in metadata["splits"]:
        raise UserError(f"split {split!r} is not in {dataset_dir} (it has {', '.join(metadata['splits'])})")
    shards = metadata["splits"][split]["shards"]
    listed = {s["name"] for s in shards}
    present = {p.name for p in dataset_dir.glob(f"{split}-*.tfrecord")}
    if missing := sorted(listed - present):
        raise UserError(f"shard {missing[0]} listed in {METADATA_FILE} is missing from {dataset_dir}")
    if extra := sorted(present - listed):
        raise UserError(f"shard {extra[0]} in {dataset_dir} is not listed in {METADATA_FILE}")
    paths = []
    for shard in shards:
        path = dataset_dir / shard["name"]
        try:
            storage.check_regular(path)
        except storage.StorageError as e:
            raise UserError(f"shard {shard['name']}: {e}") from None
        size = path.stat().st_size
        if size != shard["num_bytes"]:
            raise UserError(f"shard {shard['name']} has {size} bytes, {METADATA_FILE} says {shard['num_bytes']} (truncated or altered)")
        if check_sha256:
            _check_sha256(shard, sha256_file(path))
        paths.append(path)
    return paths


def _check_sha256(shard: dict[str, Any], digest: str) -> None:
    if digest != shard["sha256"]:
        raise UserError(f"shard {shard['name']} has sha256 {digest[:12]}…, {METADATA_FILE} says {shard['sha256'][:12]}…")


def _load_shard(path: Path, shard: dict[str, Any], image_shape: list[int], images: np.ndarray, labels: np.ndarray) -> int:
    """Read one shard once: check its sha256, decode it into ``images``/``labels``; returns its count."""
    raw = storage.read_bytes(path, shard["num_bytes"])
    # Records' CRCs first: a flipped byte is then reported as the record it broke.
    decoded = decode_uniform_records(raw, int(np.prod(image_shape)), path.name)
    _check_sha256(shard, hashlib.sha256(raw).hexdigest())
    if decoded is None:
        decoded = read_shards([path], image_shape)
    shard_images, shard_labels = decoded
    count = len(shard_labels)
    if count != shard["num_records"]:
        raise UserError(f"shard {shard['name']} holds {count} records, {METADATA_FILE} says {shard['num_records']}")
    images[:count] = shard_images.reshape(count, *image_shape)
    labels[:count] = shard_labels
    return count


def read_split(dataset_dir: str | Path, split: str, metadata: dict[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Verified ``(uint8 images [N, *image_shape], int32 labels [N])`` of one split, shards read in parallel."""
    metadata = metadata if metadata is not None else load_metadata(dataset_dir)
    paths = verify_shards(dataset_dir, metadata, split, check_sha256=False)
    shards = metadata["splits"][split]["shards"]
    shape = list(metadata["image_shape"])
    total = sum(s["num_records"] for s in shards)
    if total != metadata["splits"][split]["num_examples"] or total == 0:
        raise UserError(f"split {split!r} of {dataset_dir} is empty" if total == 0 else
                           f"{split} shards hold {total} records, {METADATA_FILE} says {metadata['splits'][split]['num_examples']}")
    images = np.empty((total, *shape), np.uint8)
    labels = np.empty((total,), np.int64)
    starts = np.cumsum([0] + [s["num_records"] for s in shards])
    try:
        with ThreadPoolExecutor(max_workers=min(len(shards), os.cpu_count() or 1)) as pool:
            counts = list(pool.map(
                lambda i: _load_shard(paths[i], shards[i], shape, images[starts[i] : starts[i + 1]], labels[starts[i] : starts[i + 1]]),
                range(len(shards)),
            ))
    except UserError:
        raise
    except Exception as e:  # tf.errors.DataLossError and friends, as one line
        raise UserError(f"cannot read {split} shards of {dataset_dir}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    assert sum(counts) == total
    num_classes = metadata["num_classes"]
    if labels.min() < 0 or labels.max() >= num_classes:
        bad = int(labels[(labels < 0) | (labels >= num_classes)][0])
        raise UserError(f"{split} holds label {bad}, outside the {num_classes} classes 0..{num_classes - 1}")
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
