"""Reading image-classification datasets from TensorFlow Datasets, in tfds's order."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlp_core.data.tf import tf  # imported before tfds: keeps TF off the GPU
import tensorflow_datasets as tfds  # noqa: E402

from mlp_core.data import tfds_download
from mlp_core.errors import UserError


@dataclass(frozen=True)
class SourceInfo:
    name: str
    version: str
    image_shape: tuple[int, ...]
    num_classes: int
    class_names: list[str]


def check_dataset_name(name: str) -> None:
    """Refuse, before any work, a ``--dataset-name`` that is a path (the image-folder source is ``--source``), that
    tfds cannot parse, or that names no tfds dataset (with tfds's close matches, as ``tfds.builder`` suggests)."""
    source_hint = (f"; a folder of your own images is read with --source {name} "
                   "(README: Train on your own images)")
    if not name.strip():
        raise UserError("dataset_name is empty: name a tfds dataset, e.g. mnist", field="dataset_name")
    if "://" in name or name.startswith(("/", ".", "~")) or "\\" in name:
        raise UserError(f"dataset_name {name!r} is a path, not a tfds dataset name{source_hint}", field="dataset_name")
    try:
        # 'dataset_name[/config_name][:version][/kwargs]', as tfds.builder parses it
        dataset, kwargs = tfds.core.naming.parse_builder_name_kwargs(name)
    except ValueError:
        hint = source_hint if Path(name).exists() else ""
        raise UserError(f"dataset_name {name!r} is not a tfds dataset name "
                        f"(dataset_name[/config_name][:version]){hint}", field="dataset_name") from None
    if dataset.namespace:
        return  # a community namespace (huggingface:, kaggle:...): tfds.builder resolves it
    try:
        cls = tfds.builder_cls(dataset.name)
    except tfds.core.registered.DatasetNotFoundError:
        if Path(name).exists():
            raise UserError(f"unknown tfds dataset {name!r}{source_hint}") from None
        # as tfds.builder's own error suggests, but up to three
        close = difflib.get_close_matches(dataset.name, tfds.list_builders(with_community_datasets=False), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UserError(f"unknown tfds dataset {name!r}{hint}") from None
    config = kwargs.get("config")
    configs = [c.name for c in cls.BUILDER_CONFIGS]
    if config is not None and config not in configs:
        close = difflib.get_close_matches(str(config), configs, n=3)
        if close:
            hint = f"; did you mean {', '.join(close)}?"
        else:
            hint = f"; its configs: {', '.join(configs[:12])}" if configs else "; it has none"
        raise UserError(f"tfds dataset {dataset.name} has no config {config!r}{hint}")


def open_builder(name: str, data_dir: str | None, progress: bool = True):
    """The tfds builder of ``name``, prepared: downloaded only when it is not prepared and its download hosts answer
    (``tfds_download.prepare``); otherwise one line saying how to prepare it."""
    check_dataset_name(name)
    if data_dir and not str(data_dir).startswith("gs://"):
        path = Path(data_dir)
        if not path.exists():
            raise UserError(f"TFDS data dir does not exist: {data_dir}")
        if not path.is_dir():
            raise UserError(f"TFDS data dir is a file, expected a folder: {data_dir}")
        if not os.access(path, os.R_OK | os.X_OK):
            raise UserError(f"TFDS data dir is not readable: {data_dir}")
    if not progress:
        tfds.disable_progress_bar()
    with tfds_download.quiet_library_logs(), tfds_download.own_temp_folder():
        try:
            builder = tfds.builder(name, data_dir=data_dir or None)
        except (ValueError, AssertionError, TypeError, ImportError) as e:  # a version or argument it does not have
            raise UserError(f"dataset_name {name!r}: {_first_line(e)}", field="dataset_name") from None
        if not builder.is_prepared():
            tfds_download.prepare(builder, name)
    return builder


def _first_line(error: BaseException) -> str:
    """The first line of ``error``, without the 'Failed to construct dataset ...: ' that tfds.builder puts first."""
    text = str(error).strip()
    text = text.splitlines()[0] if text else type(error).__name__
    return re.sub(r'^Failed to construct dataset "[^"]*", builder_kwargs "[^"]*": ', "", text)


def source_info(builder) -> SourceInfo:
    features = builder.info.features
    if "image" not in features or "label" not in features:
        raise UserError(f"{builder.name} is not an image classification dataset with 'image' and 'label' features")
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
        raise UserError(f"{builder.name} has no split {split!r} ({e})") from None


def iter_examples(builder, split: str) -> Iterator[tuple[np.ndarray, int]]:
    """``(uint8 image, label)`` pairs of ``split`` in the order ``tfds.load`` yields them."""
    ds = builder.as_dataset(split=split, as_supervised=True, shuffle_files=False)
    try:
        for images, labels in tfds.as_numpy(ds.batch(1024)):
            yield from zip(images, labels.tolist())
    except tf.errors.OpError as e:
        raise UserError(f"cannot read {builder.name} {split} from {builder.data_dir}: {e.message.splitlines()[0]}") from None
