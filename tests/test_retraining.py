"""Retraining that follows the data, end to end through ``pipeline.py run`` (kfp.local), on real MNIST images.

The story of a team's schedule: span 1 lands -> a champion is published; span 2
lands -> the next run trains on it, re-scores the champion on span 2's test set
and publishes if better; nothing lands -> the run stops after ingest; a drifted
span lands -> validate stops the run and the champion stays.
(The compiled conditions are evaluated as CEL in tests/test_conditions.py.)
"""

import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from image_folders import mnist_slice, write_split_folder

pytestmark = pytest.mark.slow

SPANS = {1: ("train[:1000]", "test[:300]"), 2: ("train[1000:2000]", "test[300:600]"),
         3: ("train[2000:3000]", "test[600:900]")}


def _run(tmp_path, *flags) -> "subprocess.CompletedProcess":
    return subprocess.run(
        [sys.executable, "pipeline.py", "run", "--source", str(tmp_path / "spans" / "span-{SPAN}"),
         "--publish-uri", str(tmp_path / "published"), "--pipeline-root", str(tmp_path / "runs"),
         "--epochs", "2", "--records-per-shard", "500", "--blessing-threshold", "0.5", "--blessing-tolerance", "0.05",
         *flags],
        cwd=ROOT, capture_output=True, text=True, timeout=900)


def _land(tmp_path, mnist_data_dir, number, transform=lambda images: images) -> None:
    train, test = (mnist_slice(mnist_data_dir, split) for split in SPANS[number])
    staging = tmp_path / f"staging-{number}"
    write_split_folder(staging, (transform(train[0]), train[1]), (transform(test[0]), test[1]))
    staging.rename(tmp_path / "spans" / f"span-{number}")  # a span lands whole


def _latest(tmp_path) -> str:
    return (tmp_path / "published" / "LATEST").read_text().strip()


def _ran(result, task: str) -> bool:
    log = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)  # kfp.local colours its lines
    return f"Task '{task}' finished with status SUCCESS" in log


def test_a_schedule_follows_the_data(mnist_data_dir, tmp_path):
    (tmp_path / "spans").mkdir()

    # Span 1: no champion yet -> trained, blessed, published.
    _land(tmp_path, mnist_data_dir, 1)
    first = _run(tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    champion = _latest(tmp_path)
    assert "no champion yet" in first.stdout + first.stderr

    # Span 2 lands: trained on span 2; the champion re-scored on span 2's test set beside the new model.
    _land(tmp_path, mnist_data_dir, 2)
    second = _run(tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    log = second.stdout + second.stderr
    assert _ran(second, "train") and f"champion {champion}" in log
    assert "span-2" in log or "span 2" in log
    promoted = _latest(tmp_path)
    assert promoted != champion  # with a 0.05 tolerance the new model, on the same test set, is not worse

    # Nothing new: the same span, the same settings -> stops after ingest, nothing trained or published.
    third = _run(tmp_path)
    assert third.returncode == 0, third.stderr[-3000:]
    log = third.stdout + third.stderr
    assert f"no new data since champion {promoted}" in log
    assert not _ran(third, "train") and not _ran(third, "validate") and _latest(tmp_path) == promoted

    # A drifted span (inverted pixels) lands: validate stops the run before training; the champion stays.
    _land(tmp_path, mnist_data_dir, 3, transform=lambda images: (255 - images).astype(np.uint8))
    fourth = _run(tmp_path)
    assert fourth.returncode != 0
    log = fourth.stdout + fourth.stderr
    assert "anomaly" in log and "Jensen" in log or "pixel" in log
    assert not _ran(fourth, "train") and _latest(tmp_path) == promoted
    shutil.rmtree(tmp_path / "runs")
