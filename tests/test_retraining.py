"""Retraining that follows the data, end to end through ``pipeline.py run`` (kfp.local), on real MNIST images.

The story of a team's schedule: span 1 lands -> a champion is published; a small
span 2 lands -> trained, the champion re-scored on span 2's test set beats it, nothing
published, and the next run on it trains nothing; span 3 lands -> trained, re-scored
and promoted; nothing lands -> the run stops after ingest; a drifted span lands ->
validate stops the run and the champion stays.
(The compiled conditions are evaluated as CEL in tests/test_conditions.py.)
"""

import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from image_folders import mnist_slice, write_split_folder

pytestmark = pytest.mark.slow

SPANS = {1: ("train[:1000]", "test[:300]"), 2: ("train[1000:1150]", "test[300:600]"),
         3: ("train[2000:4000]", "test[600:900]"), 4: ("train[4000:5000]", "test[900:1200]")}


def _run(tmp_path, *flags) -> str:
    result = subprocess.run(
        [sys.executable, "pipeline.py", "run", "--source", str(tmp_path / "spans" / "span-{SPAN}"),
         "--publish-uri", str(tmp_path / "published"), "--pipeline-root", str(tmp_path / "runs"),
         "--epochs", "2", "--records-per-shard", "500", "--blessing-threshold", "0.3", *flags],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    log = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)  # kfp.local colours its lines
    return f"{log}\nexit status {result.returncode}"


def _land(tmp_path, mnist_data_dir, number, transform=lambda images: images) -> None:
    train, test = (mnist_slice(mnist_data_dir, split) for split in SPANS[number])
    staging = tmp_path / f"staging-{number}"
    write_split_folder(staging, (transform(train[0]), train[1]), (transform(test[0]), test[1]))
    staging.rename(tmp_path / "spans" / f"span-{number}")  # a span lands whole


def _latest(tmp_path) -> str:
    return (tmp_path / "published" / "LATEST").read_text().strip()


def _ran(log: str, task: str) -> bool:
    return task in log.splitlines()  # pipeline.py run's line as the task starts


def test_a_schedule_follows_the_data(mnist_data_dir, tmp_path):
    (tmp_path / "spans").mkdir()

    # Span 1: no champion yet -> trained, blessed, published.
    _land(tmp_path, mnist_data_dir, 1)
    log = _run(tmp_path)
    assert log.endswith("exit status 0"), log[-3000:]
    assert "read span-1 of" in log and "no champion yet" in log
    first = _latest(tmp_path)

    # A small span 2: its model, scored beside the champion on span 2's test split, loses; nothing published.
    _land(tmp_path, mnist_data_dir, 2)
    log = _run(tmp_path)
    assert log.endswith("exit status 0") and "read span-2 of" in log and _ran(log, "train"), log[-3000:]
    assert f"below champion {first}'s" in log and "on this run's test split" in log and _latest(tmp_path) == first
    # ... and the next run on the same span trains nothing: that model already lost to this champion.
    log = _run(tmp_path)
    assert f"no new data since champion {first}: a model of this data and these settings lost to it" in log, log[-3000:]
    assert not _ran(log, "validate") and not _ran(log, "train")

    # Span 3 lands (more data): trained, the champion re-scored on span 3's test split, promoted.
    _land(tmp_path, mnist_data_dir, 3)
    log = _run(tmp_path)
    assert log.endswith("exit status 0") and _ran(log, "train") and _ran(log, "publish"), log[-3000:]
    assert f"champion {first}" in log
    second = _latest(tmp_path)
    assert second != first

    # Nothing new: the champion's own data and settings -> stops after ingest, nothing trained or published.
    log = _run(tmp_path)
    assert f"no new data since champion {second}: the same data and settings trained it" in log, log[-3000:]
    assert "nothing new since the champion: stopped after ingest" in log
    assert not _ran(log, "validate") and not _ran(log, "train") and _latest(tmp_path) == second

    # A drifted span (inverted pixels) lands: validate stops the run before training; the champion stays.
    _land(tmp_path, mnist_data_dir, 4, transform=lambda images: (255 - images).astype(np.uint8))
    log = _run(tmp_path)
    assert not log.endswith("exit status 0")
    assert "anomaly: train: pixel intensities drifted from the baseline: Jensen-Shannon divergence" in log, log[-3000:]
    assert "validate failed: DataAnomalyError: " in log
    assert not _ran(log, "train") and _latest(tmp_path) == second
