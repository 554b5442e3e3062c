"""Statistics of a Dataset artifact per split, as tensorflow_metadata's ``DatasetFeatureStatisticsList``.

Per split, ``image`` (pixel values: num_stats, a histogram over 0..255, shape, dtype, duplicate and leaked images) and
``label`` (rank histograms by class name), as TFDV would describe them; computed one verified shard at a time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from google.protobuf.message import DecodeError
from tensorflow_metadata.proto.v0 import statistics_pb2

from artifacts import storage
from mlp_core.errors import UserError

IMAGE = "image"
LABEL = "label"
PIXEL_BUCKETS = 32
PIXEL_VALUES = 256  # uint8
SHAPE_STAT = "image_shape"
DTYPE_STAT = "dtype"
CLASSES_STAT = "classes"
DUPLICATES_STAT = "duplicate_images"
ALSO_IN_PREFIX = "images_also_in_"
_HASH_BYTES = 16
# bincount over a slice this size stays in cache: 0.09 s for MNIST's training pixels, 1.3 s in one call
_COUNT_CHUNK = 1 << 16


@dataclass
class SplitCounts:
    """What one split's statistics are computed from, accumulated shard by shard."""

    num_classes: int
    num_examples: int = 0
    class_counts: np.ndarray = field(default=None)  # type: ignore[assignment]
    pixel_counts: np.ndarray = field(default_factory=lambda: np.zeros(PIXEL_VALUES, np.int64))
    hashes: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self):
        if self.class_counts is None:
            self.class_counts = np.zeros(self.num_classes, np.int64)

    def add(self, images: np.ndarray, labels: np.ndarray) -> None:
        """Count one batch of uint8 images ``[n, ...]`` and their int labels."""
        self.num_examples += len(labels)
        self.class_counts += np.bincount(labels, minlength=self.num_classes)[: self.num_classes]
        flat = images.reshape(-1)
        for start in range(0, flat.size, _COUNT_CHUNK):
            self.pixel_counts += np.bincount(flat[start : start + _COUNT_CHUNK], minlength=PIXEL_VALUES)
        rows = images.reshape(len(images), int(np.prod(images.shape[1:])))
        digests = b"".join(hashlib.blake2b(row.tobytes(), digest_size=_HASH_BYTES).digest() for row in rows)
        self.hashes.append(np.frombuffer(digests, dtype=f"S{_HASH_BYTES}"))

    def image_hashes(self) -> np.ndarray:
        return np.concatenate(self.hashes) if self.hashes else np.zeros(0, f"S{_HASH_BYTES}")


def iter_split(dataset_dir: str | Path, metadata: dict, split: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(uint8 images [n, *image_shape], int labels [n])`` of ``split``, one verified shard at a time."""
    from mlp_core.data.artifact import _load_shard, verify_shards  # here: artifact loads TensorFlow, validation need not

    shape = list(metadata["image_shape"])
    shards = metadata["splits"][split]["shards"]
    for path, shard in zip(verify_shards(dataset_dir, metadata, split, check_sha256=False), shards):
        count = shard["num_records"]
        images, labels = np.empty((count, *shape), np.uint8), np.empty((count,), np.int64)
        try:
            # read_split's own per-shard reader: sha256, every record's CRC, the record count.
            _load_shard(path, shard, shape, images, labels)
        except UserError:
            raise
        except Exception as e:  # tf.errors.DataLossError and friends, as one line (as read_split)
            raise UserError(f"cannot read {shard['name']} of {dataset_dir}: {type(e).__name__}: "
                               f"{str(e).splitlines()[0]}") from None
        bad = (labels < 0) | (labels >= metadata["num_classes"])
        if bad.any():
            raise UserError(f"{split} holds label {int(labels[bad][0])}, outside the "
                               f"{metadata['num_classes']} classes 0..{metadata['num_classes'] - 1}")
        yield images, labels


def count_dataset(dataset_dir: str | Path, metadata: dict | None = None) -> dict[str, SplitCounts]:
    """Each split's ``SplitCounts`` (splits in the metadata's order)."""
    from mlp_core.data.artifact import load_metadata

    metadata = metadata if metadata is not None else load_metadata(dataset_dir)
    counts = {}
    for split in metadata["splits"]:
        counts[split] = SplitCounts(metadata["num_classes"])
        for images, labels in iter_split(dataset_dir, metadata, split):
            counts[split].add(images, labels)
    return counts


def compute_statistics(dataset_dir: str | Path) -> statistics_pb2.DatasetFeatureStatisticsList:
    """The statistics of every split of the Dataset artifact at ``dataset_dir``."""
    from mlp_core.data.artifact import load_metadata

    metadata = load_metadata(dataset_dir)
    return statistics_from_counts(count_dataset(dataset_dir, metadata), metadata["image_shape"], metadata["class_names"])


def statistics_from_counts(counts: dict[str, SplitCounts], image_shape: list[int], class_names: list[str],
                           dtype: str = "uint8") -> statistics_pb2.DatasetFeatureStatisticsList:
    """The ``DatasetFeatureStatisticsList`` of accumulated splits."""
    hashes = {split: c.image_hashes() for split, c in counts.items()}
    result = statistics_pb2.DatasetFeatureStatisticsList()
    for split, c in counts.items():
        dataset = result.datasets.add(name=split, num_examples=c.num_examples)
        also_in = {other: int(np.isin(hashes[split], hashes[other]).sum()) for other in counts if other != split}
        duplicates = c.num_examples - len(np.unique(hashes[split]))
        _image_feature(dataset.features.add(), c, image_shape, dtype, duplicates, also_in)
        _label_feature(dataset.features.add(), c, class_names)
    return result


def _image_feature(feature, c: SplitCounts, image_shape: list[int], dtype: str, duplicates: int,
                   also_in: dict[str, int]) -> None:
    feature.name, feature.type = IMAGE, statistics_pb2.FeatureNameStatistics.INT
    pixels_per_image = int(np.prod(image_shape))
    num = feature.num_stats
    _common(num.common_stats, c.num_examples, pixels_per_image)
    total = int(c.pixel_counts.sum())
    values = np.arange(PIXEL_VALUES, dtype=np.float64)
    if total:
        mean = float((values * c.pixel_counts).sum() / total)
        num.mean = mean
        num.std_dev = float(np.sqrt(max(0.0, (values**2 * c.pixel_counts).sum() / total - mean**2)))
        present = np.flatnonzero(c.pixel_counts)
        num.min, num.max = float(present[0]), float(present[-1])
        num.median = float(np.searchsorted(np.cumsum(c.pixel_counts), (total + 1) / 2))
    num.num_zeros = int(c.pixel_counts[0])
    histogram = num.histograms.add(type=statistics_pb2.Histogram.STANDARD)
    width = PIXEL_VALUES // PIXEL_BUCKETS
    for i, count in enumerate(c.pixel_counts.reshape(PIXEL_BUCKETS, width).sum(axis=1)):
        histogram.buckets.add(low_value=i * width, high_value=(i + 1) * width, sample_count=float(count))
    feature.custom_stats.add(name=SHAPE_STAT, str=",".join(str(d) for d in image_shape))
    feature.custom_stats.add(name=DTYPE_STAT, str=dtype)
    feature.custom_stats.add(name=DUPLICATES_STAT, num=duplicates)
    for other, n in also_in.items():
        feature.custom_stats.add(name=ALSO_IN_PREFIX + other, num=n)


def _label_feature(feature, c: SplitCounts, class_names: list[str]) -> None:
    feature.name, feature.type = LABEL, statistics_pb2.FeatureNameStatistics.INT
    strings = feature.string_stats
    _common(strings.common_stats, c.num_examples, 1)
    order = sorted((i for i in range(len(class_names)) if c.class_counts[i]), key=lambda i: (-c.class_counts[i], i))
    strings.unique = len(order)
    for rank, i in enumerate(order):
        strings.top_values.add(value=class_names[i], frequency=float(c.class_counts[i]))
        strings.rank_histogram.buckets.add(low_rank=rank, high_rank=rank, label=class_names[i],
                                           sample_count=float(c.class_counts[i]))
    declared = feature.custom_stats.add(name=CLASSES_STAT).rank_histogram
    for i, name in enumerate(class_names):
        declared.buckets.add(low_rank=i, high_rank=i, label=name, sample_count=float(c.class_counts[i]))


def _common(common, num_examples: int, values_per_example: int) -> None:
    common.num_non_missing = num_examples
    common.num_missing = 0
    common.min_num_values = common.max_num_values = values_per_example if num_examples else 0
    common.avg_num_values = values_per_example if num_examples else 0
    common.tot_num_values = num_examples * values_per_example


# ---- reading statistics back (this module's format; a baseline's too)


@dataclass(frozen=True)
class SplitSummary:
    """One split's statistics as plain values (what validation and the report read)."""

    name: str
    num_examples: int
    image_shape: tuple[int, ...]
    dtype: str
    class_names: tuple[str, ...]
    class_counts: tuple[int, ...]
    label_counts: dict[str, float]  # the rank histogram: classes with examples only
    pixel_histogram: tuple[tuple[float, float, float], ...]  # (low, high, count) per bucket
    pixel_min: float
    pixel_max: float
    pixel_mean: float
    pixel_std: float
    duplicates: int
    also_in: dict[str, int]


def _feature(dataset, name: str, where: str):
    for feature in dataset.features:
        if feature.name == name or (feature.path.step and feature.path.step[-1] == name):
            return feature
    raise UserError(f"{where}: split {dataset.name!r} has no feature {name!r}")


def _custom(feature, name: str, where: str):
    for stat in feature.custom_stats:
        if stat.name == name:
            return stat
    raise UserError(f"{where}: feature {feature.name!r} has no custom statistic {name!r} "
                          f"(statistics not written by mlp_core.data.statistics?)")


def summarize(dataset, where: str = "statistics") -> SplitSummary:
    """A ``DatasetFeatureStatistics`` of this module's format as a ``SplitSummary``."""
    image, label = _feature(dataset, IMAGE, where), _feature(dataset, LABEL, where)
    classes = _custom(label, CLASSES_STAT, where).rank_histogram.buckets
    histograms = [h for h in image.num_stats.histograms if h.type == statistics_pb2.Histogram.STANDARD]
    if not histograms:
        raise UserError(f"{where}: split {dataset.name!r}: feature 'image' has no STANDARD histogram")
    try:
        shape = tuple(int(d) for d in _custom(image, SHAPE_STAT, where).str.split(","))
    except ValueError:
        raise UserError(f"{where}: split {dataset.name!r}: image_shape is not a list of integers") from None
    return SplitSummary(
        name=dataset.name,
        num_examples=int(dataset.num_examples),
        image_shape=shape,
        dtype=_custom(image, DTYPE_STAT, where).str,
        class_names=tuple(b.label for b in classes),
        class_counts=tuple(int(b.sample_count) for b in classes),
        label_counts={b.label: b.sample_count for b in label.string_stats.rank_histogram.buckets},
        pixel_histogram=tuple((b.low_value, b.high_value, b.sample_count) for b in histograms[0].buckets),
        pixel_min=image.num_stats.min, pixel_max=image.num_stats.max,
        pixel_mean=image.num_stats.mean, pixel_std=image.num_stats.std_dev,
        duplicates=int(_custom(image, DUPLICATES_STAT, where).num),
        also_in={s.name[len(ALSO_IN_PREFIX):]: int(s.num) for s in image.custom_stats if s.name.startswith(ALSO_IN_PREFIX)},
    )


def summaries(statistics: statistics_pb2.DatasetFeatureStatisticsList, where: str = "statistics") -> dict[str, SplitSummary]:
    """Each split's ``SplitSummary``, by split name."""
    return {dataset.name: summarize(dataset, where) for dataset in statistics.datasets}


def write_statistics(statistics: statistics_pb2.DatasetFeatureStatisticsList, path: str | Path) -> None:
    """Write ``statistics`` as a binary proto (what ``tfdv.load_stats_binary`` reads)."""
    storage.write_bytes(str(path), statistics.SerializeToString(deterministic=True))


def read_statistics(uri: str | Path) -> statistics_pb2.DatasetFeatureStatisticsList:
    """A binary ``DatasetFeatureStatisticsList`` from a path or object-store URI, checked to be of this format."""
    statistics = statistics_pb2.DatasetFeatureStatisticsList()
    try:
        statistics.ParseFromString(storage.read_bytes(str(uri), storage.STATISTICS))
    except DecodeError as e:
        raise UserError(f"{uri} is not a binary DatasetFeatureStatisticsList: {str(e)[:160]}") from None
    except storage.StorageError as e:
        raise UserError(f"cannot read statistics: {e}") from None
    if not statistics.datasets:
        raise UserError(f"{uri} holds no dataset statistics")
    summaries(statistics, str(uri))  # every split has what validation reads
    return statistics

