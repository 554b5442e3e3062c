"""TFRecord codec: one ``tf.train.Example`` per image, raw uint8 bytes + int64 label."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from artifacts import storage
from mlp_core.data.fast_records import decode_records, decode_uniform_records
from mlp_core.data.tf import tf

IMAGE_KEY = "image"
LABEL_KEY = "label"
_FEATURES = {
    IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
    LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
}
# Large batches make parsing cheap per record; 8192 MNIST records are 6.4 MB.
READ_BATCH = 8192


def encode_example(image: np.ndarray, label: int) -> bytes:
    """Serialize one uint8 image and its label as a ``tf.train.Example``."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {image.dtype}")
    example = tf.train.Example(
        features=tf.train.Features(
            feature={
                IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image.tobytes()])),
                LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
            }
        )
    )
    # deterministic: map fields otherwise serialize in hash order, other bytes (and sha256s) in another process
    return example.SerializeToString(deterministic=True)


def parse_batch(serialized, image_shape: Sequence[int]):
    """A batch of serialized examples -> ``(uint8 [B, *image_shape], int64 [B])``."""
    parsed = tf.io.parse_example(serialized, _FEATURES)
    size = int(np.prod(image_shape))
    # Never decode_raw(fixed_length=...): it pads or truncates images of the wrong size silently.
    lengths = tf.strings.length(parsed[IMAGE_KEY])
    with tf.control_dependencies(
        [tf.debugging.assert_equal(lengths, size, message=f"an image does not hold {size} bytes (uint8 {list(image_shape)})")]
    ):
        images = tf.io.decode_raw(parsed[IMAGE_KEY], tf.uint8)
    return tf.reshape(images, [-1, *image_shape]), parsed[LABEL_KEY]


@dataclass(frozen=True)
class ShardInfo:
    name: str
    num_records: int
    num_bytes: int
    sha256: str

    def to_dict(self) -> dict:
        return {"name": self.name, "num_records": self.num_records, "num_bytes": self.num_bytes, "sha256": self.sha256}


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def shard_names(prefix: str, num_shards: int) -> list[str]:
    return [f"{prefix}-{i:05d}-of-{num_shards:05d}.tfrecord" for i in range(num_shards)]


def write_shards(
    directory: str | Path,
    prefix: str,
    examples: Iterable[tuple[np.ndarray, int]],
    num_examples: int,
    records_per_shard: int,
) -> list[ShardInfo]:
    """Write ``examples`` in order into ``ceil(num_examples / records_per_shard)`` shards."""
    directory = Path(directory)
    num_shards = max(1, -(-num_examples // records_per_shard))
    names = shard_names(prefix, num_shards)
    shards: list[ShardInfo] = []
    iterator = iter(examples)
    written = 0
    for name in names:
        count = min(records_per_shard, num_examples - written)
        with tf.io.TFRecordWriter(str(directory / name)) as writer:
            for _ in range(count):
                image, label = next(iterator)
                writer.write(encode_example(image, label))
        written += count
        path = directory / name
        shards.append(ShardInfo(name, count, path.stat().st_size, sha256_file(path)))
    return shards


def record_dataset(
    paths: Sequence[str | Path],
    image_shape: Sequence[int],
    batch_size: int = READ_BATCH,
    shuffle_seed: int | None = None,
    seed: int = 0,
    shuffle_buffer: int = 100_000,
):
    """Parsed ``(images, labels)`` batches from shards, prefetched: in order, or shuffled by ``shuffle_seed``."""
    files = [str(p) for p in paths]
    ds = tf.data.TFRecordDataset(files, buffer_size=8 << 20)
    if shuffle_seed is not None:
        ds = ds.shuffle(shuffle_buffer, seed=seed * 1_000_003 + shuffle_seed, reshuffle_each_iteration=False)
    ds = ds.batch(batch_size).map(lambda s: parse_batch(s, image_shape), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def read_shards(paths: Sequence[str | Path], image_shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """All records of ``paths`` (in order) as ``(uint8 [N, *image_shape], int64 [N])``, CRCs checked (``fast_records``)."""
    image_size = int(np.prod(image_shape))
    images, labels = [], []
    for path in paths:
        raw = storage.read_bytes(path, storage.FILE)
        decoded = decode_uniform_records(raw, image_size, path)
        if decoded is None:
            decoded = decode_records(raw, image_size, path)
        images.append(decoded[0].reshape(-1, *image_shape))
        labels.append(decoded[1])
    if not images:
        return np.zeros((0, *image_shape), np.uint8), np.zeros((0,), np.int64)
    return np.concatenate(images), np.concatenate(labels)
