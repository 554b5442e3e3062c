"""Decoding TFRecord shards with numpy: a shard whose records all have one length and layout (MNIST's) in one pass
(``decode_uniform_records``), any other record by record (``decode_records``).

Every record's CRCs are checked; a damaged shard is one ``UserError`` line naming the shard, the record and the fault.
"""

from __future__ import annotations

import google_crc32c
import numpy as np
from google.protobuf.message import DecodeError

from mlp_core.data.tf import tf
from mlp_core.errors import UserError

_MASK_DELTA = 0xA282EAD8


def _masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def decode_records(raw: bytes, image_size: int, path="<bytes>") -> tuple[np.ndarray, np.ndarray]:
    """``(uint8 [n, image_size], int64 [n])`` of any shard's bytes, every record's framing, CRCs and Example checked."""
    images, labels, at, index = [], [], 0, 0
    while at < len(raw):
        if at + 12 > len(raw):
            raise UserError(f"{path}: truncated: record {index} at byte {at} has no complete length field")
        if int.from_bytes(raw[at + 8:at + 12], "little") != _masked_crc(raw[at:at + 8]):
            raise UserError(f"{path}: record {index} at byte {at}: its length field fails its checksum (CRC)")
        length = int.from_bytes(raw[at:at + 8], "little")
        end = at + 12 + length + 4
        if end > len(raw):
            raise UserError(f"{path}: truncated: record {index} at byte {at} declares {length} bytes, "
                                   f"{end - len(raw)} more than the shard holds")
        data = raw[at + 12:at + 12 + length]
        if int.from_bytes(raw[end - 4:end], "little") != _masked_crc(data):
            raise UserError(f"{path}: corrupted record {index} (CRC mismatch)")
        parsed = _parse(data, path, index)
        if parsed is None:
            raise UserError(f"{path}: record {index} is not an Example of one image and one label")
        if len(parsed[0]) != image_size:
            raise UserError(f"{path}: record {index}: an image holds {len(parsed[0])} bytes, the metadata's "
                                   f"uint8 image_shape needs {image_size}")
        images.append(np.frombuffer(parsed[0], np.uint8))
        labels.append(parsed[1])
        at, index = end, index + 1
    if not images:
        return np.zeros((0, image_size), np.uint8), np.zeros((0,), np.int64)
    return np.stack(images), np.array(labels, np.int64)


def decode_uniform_records(raw: bytes, image_size: int, path="<bytes>") -> tuple[np.ndarray, np.ndarray] | None:
    """``(uint8 [n, image_size], int64 [n])`` of a shard's bytes, or None if its records are not uniform.

    Record 0 is parsed by protobuf to locate the image and label bytes; every other record must equal it elsewhere.
    """
    if len(raw) < 16:
        return None
    length = int.from_bytes(raw[:8], "little")
    frame = length + 16
    if length == 0 or len(raw) % frame:
        return None
    framed = np.frombuffer(raw, np.uint8).reshape(-1, frame)
    if not (framed[:, :12] == framed[0, :12]).all():  # same length (and length CRC) everywhere
        return None
    if int.from_bytes(raw[8:12], "little") != _masked_crc(raw[:8]):
        raise UserError(f"{path}: corrupted record header at record 0")
    stored = framed[:, 12 + length :].copy().view("<u4")[:, 0]
    for i in range(len(framed)):
        start = i * frame + 12
        if _masked_crc(raw[start : start + length]) != stored[i]:
            raise UserError(f"{path}: corrupted record {i} (CRC mismatch)")
    payload = framed[:, 12 : 12 + length]
    layout = _layout(bytes(payload[0]), image_size, path)
    if layout is None:
        return None
    image_at, label_at = layout
    fixed = np.ones(length, bool)
    fixed[image_at : image_at + image_size] = False
    fixed[label_at] = False
    if not (payload[:, fixed] == payload[0, fixed]).all():
        return None
    labels = payload[:, label_at].astype(np.int64)
    if (labels >= 0x80).any():  # a multi-byte varint: not this layout
        return None
    images = payload[:, image_at : image_at + image_size]
    for i in {0, len(payload) // 2, len(payload) - 1}:  # belt and braces: protobuf agrees
        example = _parse(bytes(payload[i]), path, i)
        if example is None or example != (images[i].tobytes(), int(labels[i])):
            return None
    return images, labels


def _parse(record: bytes, path, index: int) -> tuple[bytes, int] | None:
    """``(image bytes, label)`` of a serialized Example, parsed by protobuf (None: not that Example)."""
    try:
        features = tf.train.Example.FromString(record).features.feature
    except DecodeError:
        raise UserError(f"{path}: record {index} is not a tf.train.Example (protobuf cannot parse it)") from None
    if "image" not in features or "label" not in features:
        return None
    image = features["image"].bytes_list.value
    label = features["label"].int64_list.value
    if len(image) != 1 or len(label) != 1:
        return None
    return image[0], label[0]


def _layout(record: bytes, image_size: int, path) -> tuple[int, int] | None:
    """Offsets of the image bytes and the one-byte label varint in an Example."""
    parsed = _parse(record, path, 0)
    if parsed is not None and len(parsed[0]) != image_size:
        raise UserError(f"{path}: record 0: an image holds {len(parsed[0])} bytes, the metadata's uint8 "
                               f"image_shape needs {image_size}")
    if parsed is None or not 0 <= parsed[1] < 0x80:
        return None
    image, label = (parsed[0],), (parsed[1],)
    image_at = record.find(image[0])
    # The label's Feature: int64_list (field 3) holding a packed list (field 1) of one varint.
    label_field = bytes([0x1A, 0x03, 0x0A, 0x01, label[0]])
    label_at = record.find(label_field)
    if image_at < 0 or label_at < 0:
        return None
    label_at += 4
    if image_at <= label_at < image_at + image_size:
        return None
    return image_at, label_at
