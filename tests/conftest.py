"""Shared fixtures: real MNIST from a prepared TFDS data dir, ingested once per session."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMALL_TRAIN = "train[:512]"
SMALL_TEST = "test[:256]"


def tfds_data_dir() -> str:
    return os.environ.get("TFDS_DATA_DIR") or str(Path.home() / "tensorflow_datasets")


@pytest.fixture(scope="session")
def mnist_data_dir() -> str:
    """A TFDS data dir holding prepared ``mnist`` (seeded offline on first use)."""
    from mlp_core.data.offline_mnist import is_prepared, seed_tfds_cache

    data_dir = tfds_data_dir()
    if not is_prepared(data_dir):
        seed_tfds_cache(data_dir)
    return data_dir


def run_cli(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python <args>`` from the project root, as a user would."""
    result = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="session")
def small_dataset(mnist_data_dir, tmp_path_factory) -> Path:
    """Dataset artifact of the first 512 train and 256 test MNIST examples, 3 train shards."""
    from components.ingest import ingest_dataset

    out = tmp_path_factory.mktemp("small") / "dataset"
    ingest_dataset(out, tfds_data_dir=mnist_data_dir, train_split=SMALL_TRAIN, test_split=SMALL_TEST, records_per_shard=200, progress=False)
    return out


@pytest.fixture(scope="session")
def full_dataset(mnist_data_dir, tmp_path_factory) -> Path:
    """Dataset artifact of all of MNIST (60,000 train, 10,000 test)."""
    from components.ingest import ingest_dataset

    out = tmp_path_factory.mktemp("full") / "dataset"
    ingest_dataset(out, tfds_data_dir=mnist_data_dir, progress=False)
    return out
