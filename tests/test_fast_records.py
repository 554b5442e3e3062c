import numpy as np
import pytest

from mlp_core.data.fast_records import decode_uniform_records
from mlp_core.errors import UserError
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
    with pytest.raises(UserError, match="CRC mismatch"):
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


def _frame(data: bytes) -> bytes:
    from mlp_core.data.fast_records import _masked_crc

    length = len(data).to_bytes(8, "little")
    return length + _masked_crc(length).to_bytes(4, "little") + data + _masked_crc(data).to_bytes(4, "little")


def _damaged_shards(raw: bytes) -> dict:
    """name -> (shard bytes, words the one line holds): cut, lengths past the end, images of other sizes, garbage."""
    from mlp_core.data.fast_records import _masked_crc

    frame = int.from_bytes(raw[:8], "little") + 16
    n = len(raw) // frame
    huge = (1 << 60).to_bytes(8, "little")
    cases = {}
    for i in (0, 1, n - 1):  # cut inside record i's length field, its data, its CRC
        for where, offset in (("length", 5), ("data", 12 + 300), ("crc", frame - 2)):
            cases[f"cut in record {i}'s {where}"] = (raw[:i * frame + offset], "truncated: record")
    for i in (0, 2):
        at = i * frame
        cases[f"huge length, record {i}"] = (raw[:at] + huge + _masked_crc(huge).to_bytes(4, "little") + raw[at + 12:],
                                             f"truncated: record {i} at byte {at} declares {1 << 60} bytes")
        cases[f"huge length, wrong crc, record {i}"] = (raw[:at] + huge + raw[at + 8:],
                                                        f"record {i} at byte {at}: its length field fails its checksum")
    for i in (0, n // 2, n - 1):
        for size in (785, 783, 0):
            bigger = encode_example(np.zeros(size, np.uint8), 3)
            cases[f"image of {size} bytes, record {i}"] = (
                raw[:i * frame] + _frame(bigger) + raw[(i + 1) * frame:],
                f"record {i}: an image holds {size} bytes, the metadata's uint8 image_shape needs 784")
        cases[f"not protobuf, record {i}"] = (raw[:i * frame] + _frame(b"\xff" * 40) + raw[(i + 1) * frame:],
                                              f"record {i} is not a tf.train.Example")
        cases[f"no label, record {i}"] = (
            raw[:i * frame] + _frame(tf.train.Example().SerializeToString()) + raw[(i + 1) * frame:],
            f"record {i} is not an Example of one image and one label")
        flipped = bytearray(raw)
        flipped[i * frame + 12 + 500] ^= 1
        cases[f"flipped pixel, record {i}"] = (bytes(flipped), f"corrupted record {i}")
    cases["trailing bytes"] = (raw + b"\0" * 5, f"truncated: record {n} at byte {len(raw)}")
    return cases


def test_damaged_shards_are_one_line_naming_the_shard_and_the_fault(small_dataset, tmp_path):
    """Generated damage to a real shard, read as every reader reads shards (read_split): no TensorFlow op text."""
    import hashlib
    import json
    import shutil

    from artifacts.outputs import commit
    from mlp_core.data.artifact import read_split

    name = "train-00001-of-00003.tfrecord"
    raw = (small_dataset / name).read_bytes()
    cases = _damaged_shards(raw)
    for case, (damaged, words) in cases.items():
        dataset = tmp_path / "ds"
        shutil.rmtree(dataset, ignore_errors=True)
        shutil.copytree(small_dataset, dataset)
        (dataset / name).write_bytes(damaged)
        metadata = json.loads((dataset / "metadata.json").read_text())  # a consistent artifact around the damage
        shard = next(s for s in metadata["splits"]["train"]["shards"] if s["name"] == name)
        shard.update(num_bytes=len(damaged), sha256=hashlib.sha256(damaged).hexdigest())
        (dataset / "metadata.json").write_text(json.dumps(metadata))
        (dataset / "_COMPLETE.json").unlink()
        commit(dataset, "dataset")
        with pytest.raises(UserError) as refused:
            read_split(dataset, "train")
        line = str(refused.value)
        assert name in line and words in line and len(line.splitlines()) == 1 and len(line) < 300, (case, line)
        assert not any(w in line for w in ("{{", "[Op:", "DataLossError", "Graph execution")), (case, line)
    assert len(cases) == 32
