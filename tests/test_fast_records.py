import numpy as np
import pytest

from mlp_core.data.fast_records import RecordCorruption, decode_uniform_records
from mlp_core.data.records import encode_example, record_dataset, write_shards
from mlp_core.data.tf import tf


def _tf_read(path, shape):
    batches = list(record_dataset([path], shape).as_numpy_iterator())
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


def test_vectorised_reader_equals_tf_data_on_real_mnist(small_dataset):
    path = sorted(small_dataset.glob("train-*.tfrecord"))[0]
    images, labels = decode_uniform_records(path.read_bytes(), 784, path)
    tf_images, tf_labels = _tf_read(path, [28, 28, 1])
    np.testing.assert_array_equal(images.reshape(-1, 28, 28, 1), tf_images)
    np.testing.assert_array_equal(labels, tf_labels)


def test_a_flipped_byte_fails_the_crc(small_dataset, tmp_path):
    raw = bytearray(sorted(small_dataset.glob("train-*.tfrecord"))[0].read_bytes())
    frame = int.from_bytes(raw[:8], "little") + 16
    raw[3 * frame + 12 + 400] ^= 0x01  # a pixel of record 3
    with pytest.raises(RecordCorruption, match="CRC mismatch"):
        decode_uniform_records(bytes(raw), 784, "shard")
    path = tmp_path / "flipped.tfrecord"
    path.write_bytes(raw)
    with pytest.raises(tf.errors.DataLossError):  # tf.data agrees
        _tf_read(path, [28, 28, 1])


def test_records_of_other_shapes_fall_back_to_tf_data(tmp_path):
    rng = np.random.default_rng(0)
    # Labels >= 128 take two varint bytes: not the one-byte layout, so not "uniform".
    examples = [(rng.integers(0, 256, (4, 4, 1), dtype=np.uint8), label) for label in (3, 200, 7)]
    write_shards(tmp_path, "train", iter(examples), 3, 10)
    raw = (tmp_path / "train-00000-of-00001.tfrecord").read_bytes()
    assert decode_uniform_records(raw, 16) is None
    one = encode_example(examples[0][0], 3)
    assert decode_uniform_records(b"", 16) is None
    assert len(one) > 16
