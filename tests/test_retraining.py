"""Retraining that follows the data: docs/own-data.md's story, run as written (kfp.local, real MNIST images).

The story of a team's schedule: span 1 lands -> a champion is published; a small
span 2 lands -> trained, the champion re-scored on span 2's test set beats it, nothing
published, and the next run on it trains nothing; span 3 lands -> trained, re-scored
and promoted; nothing lands -> the run stops after ingest; a drifted span lands ->
validate stops the run and the champion stays.
(The compiled conditions are evaluated as CEL in tests/test_conditions.py.)
"""

import re
import subprocess

import pytest

from conftest import ROOT
from test_readme import SMALL_DATA_TOLERANCE, _environment, _workdir, blocks, same_figures, same_lines

pytestmark = pytest.mark.slow
STORY = ROOT / "docs" / "own-data.md"


def _ran(log: str, task: str) -> bool:
    return task in log.splitlines()  # pipeline.py run's line as the task starts


def test_the_retraining_story_runs_as_written(mnist_data_dir, tmp_path):
    cwd, env = _workdir(tmp_path), _environment(mnist_data_dir)
    story = blocks(("run: retraining",), (STORY,))
    assert len(story) == 7, [code for _, code, _ in story]

    def week(number: int) -> str:
        _, code, shown = story[number]
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=cwd, env=env, text=True, timeout=900,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        log = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout)  # kfp.local colours its lines
        if shown:
            same_figures(shown, log, SMALL_DATA_TOLERANCE[STORY.name])
            same_lines(shown, log)
        return f"{log}\nexit status {result.returncode}"

    def latest() -> str:
        return (cwd / "retrained" / "LATEST").read_text().strip()

    assert week(0).endswith("exit status 0") and (cwd / "incoming" / "span-4").is_dir()

    # Span 1: no champion yet -> trained, blessed, published.
    log = week(1)
    assert log.endswith("exit status 0"), log[-3000:]
    assert "read span-1 of" in log and "no champion yet" in log
    first = latest()

    # A small span 2: its model, scored beside the champion on span 2's test split, loses; nothing published.
    log = week(2)
    assert log.endswith("exit status 0") and "read span-2 of" in log and _ran(log, "train"), log[-3000:]
    assert f"below champion {first}'s" in log and "on this run's test split" in log and latest() == first
    # ... and the next run on the same span trains nothing: that model already lost to this champion.
    log = week(3)
    assert f"no new data since champion {first}: a model of this data and these settings lost to it" in log, log[-3000:]
    assert not _ran(log, "validate") and not _ran(log, "train")

    # Span 3 lands (more data): trained, the champion re-scored on span 3's test split, promoted.
    log = week(4)
    assert log.endswith("exit status 0") and _ran(log, "train") and _ran(log, "publish"), log[-3000:]
    assert f"champion {first}" in log
    second = latest()
    assert second != first

    # Nothing new: the champion's own data and settings -> stops after ingest, nothing trained or published.
    log = week(5)
    assert f"no new data since champion {second}: the same data and settings trained it" in log, log[-3000:]
    assert "nothing new since the champion: stopped after ingest" in log
    assert not _ran(log, "validate") and not _ran(log, "train") and latest() == second

    # A drifted span (inverted pixels) lands: validate stops the run before training; the champion stays.
    log = week(6)
    assert not log.endswith("exit status 0") and (cwd / "spans" / "span-4").is_dir()
    assert "anomaly: train: pixel intensities drifted from the baseline: Jensen-Shannon divergence" in log, log[-3000:]
    assert "validate failed: DataAnomalyError: " in log
    assert not _ran(log, "train") and latest() == second
