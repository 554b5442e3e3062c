"""Reading image-classification datasets from TensorFlow Datasets, in tfds's order."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlp_core.data.artifact import DatasetError
from mlp_core.data.tf import tf  # noqa: F401 - imported first: keeps TF off the GPU


@dataclass(frozen=True)
class SourceInfo:
    name: str
    version: str
    image_shape: tuple[int, ...]
    num_classes: int
    class_names: list[str]


def _tfds():
    import tensorflow_datasets as tfds

    return tfds


def open_builder(name: str, data_dir: str | None):
    """The tfds builder of ``name``, prepared (downloading only if it is not yet prepared)."""
    tfds = _tfds()
    if data_dir and not str(data_dir).startswith("gs://"):
        path = Path(data_dir)
        if not path.exists():
            raise DatasetError(f"TFDS data dir does not exist: {data_dir}")
        if not path.is_dir():
            raise DatasetError(f"TFDS data dir is a file, expected a folder: {data_dir}")
        if not os.access(path, os.R_OK | os.X_OK):
            raise DatasetError(f"TFDS data dir is not readable: {data_dir}")
    try:
        builder = tfds.builder(name, data_dir=data_dir or None)
    except tfds.core.registered.DatasetNotFoundError:
        close = difflib.get_close_matches(name, tfds.list_builders(with_community_datasets=False), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise DatasetError(f"unknown tfds dataset {name!r}{hint}") from None
    if not builder.is_prepared():
        try:
            builder.download_and_prepare()
        except Exception as e:  # noqa: BLE001 - any download failure, as one line
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise DatasetError(
                f"{name} is not prepared in {builder.data_dir_root} and could not be downloaded ({first[:200]}); "
                f"with no network, run: python -m components.ingest seed-tfds-cache --data-dir {builder.data_dir_root}"
            ) from None
    return builder


def source_info(builder) -> SourceInfo:
    features = builder.info.features
    if "image" not in features or "label" not in features:
        raise DatasetError(f"{builder.name} is not an image classification dataset with 'image' and 'label' features")
    label = features["label"]
    return SourceInfo(
        name=builder.name,
        version=str(builder.version),
        image_shape=tuple(int(d) for d in features["image"].shape),
        num_classes=int(label.num_classes),
        class_names=list(label.names),
    )


def num_examples(builder, split: str) -> int:
    try:
        return int(builder.info.splits[split].num_examples)
    except (KeyError, ValueError) as e:
        raise DatasetError(f"{builder.name} has no split {split!r} ({e})") from None


def iter_examples(builder, split: str) -> Iterator[tuple[np.ndarray, int]]:
    """``(uint8 image, label)`` pairs of ``split`` in the order ``tfds.load`` yields them."""
    ds = builder.as_dataset(split=split, as_supervised=True, shuffle_files=False)
    try:
        for images, labels in _tfds().as_numpy(ds.batch(1024)):
            yield from zip(images, labels.tolist())
    except tf.errors.OpError as e:
        raise DatasetError(f"cannot read {builder.name} {split} from {builder.data_dir}: {e.message.splitlines()[0]}") from None
