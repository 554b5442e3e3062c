"""A killed training run resumes and ends bit-identical to one never interrupted."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from conftest import ROOT, run_cli
from mlp_core.checkpoint import latest_checkpoint, save_checkpoint
from mlp_core.model import init_network_params
from mlp_core.model_io import load_model


def _train_args(dataset, model: Path, epochs: int = 4) -> list[str]:
    return ["-m", "components.train", "--dataset", str(dataset), "--model", str(model), "--epochs", str(epochs)]


def _params_bytes(model: Path) -> dict[str, bytes]:
    with np.load(model / "params.npz", allow_pickle=False) as npz:
        return {k: npz[k].tobytes() for k in npz.files}


def _comparable(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in m.items() if k not in ("seconds", "examples_per_second")} for m in history]


@pytest.fixture(scope="module")
def unbroken(full_dataset, tmp_path_factory):
    model = tmp_path_factory.mktemp("unbroken") / "model"
    run_cli(*_train_args(full_dataset, model))
    return model


def test_kill_9_during_epoch_2_then_rerun_is_bit_identical(full_dataset, unbroken, tmp_path):
    model = tmp_path / "model"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, *_train_args(full_dataset, model)], cwd=ROOT, stdout=subprocess.PIPE, text=True, env=env)
    for line in proc.stdout:
        if line.startswith("epoch 1/4"):  # the epoch-1 checkpoint is written before this line
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not model.exists()
    checkpoints = tmp_path / ".model.checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir() if not p.name.startswith(".")) == ["ckpt-000001"]

    rerun = run_cli(*_train_args(full_dataset, model))
    assert "resuming from" in rerun.stdout and "(1 epoch(s) done)" in rerun.stdout
    assert "epoch 1/4" not in rerun.stdout and "epoch 2/4" in rerun.stdout
    assert _params_bytes(model) == _params_bytes(unbroken)
    assert _comparable(load_model(model)[3]) == _comparable(load_model(unbroken)[3])
    assert not checkpoints.exists()  # removed once the model is written


def test_kill_between_checkpoint_write_and_rename_keeps_the_previous(tmp_path, monkeypatch):
    params = init_network_params([4, 3, 2], jax.random.key(0))
    run = {"config": {"a": 1}, "dataset": {"name": "x"}}
    save_checkpoint(tmp_path, 1, params, run, [{"epoch": 1}])

    def killed(*_):
        raise KeyboardInterrupt("killed before the rename")

    monkeypatch.setattr("mlp_core.checkpoint.os.replace", killed)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, 2, params, run, [{"epoch": 1}, {"epoch": 2}])
    monkeypatch.undo()
    # As after a real kill: a partial folder may be left; it is never taken.
    (tmp_path / ".ckpt-000002.partial-x").mkdir()
    checkpoint, why = latest_checkpoint(tmp_path, run, (4, 3, 2))
    assert checkpoint.epoch == 1 and checkpoint.history == [{"epoch": 1}]
    assert "(1 epoch(s) done)" in why


def test_a_checkpoint_of_another_run_is_not_resumed(tmp_path):
    params = init_network_params([4, 3, 2], jax.random.key(0))
    save_checkpoint(tmp_path, 3, params, {"config": {"step_size": 0.1}}, [])
    checkpoint, why = latest_checkpoint(tmp_path, {"config": {"step_size": 0.2}}, (4, 3, 2))
    assert checkpoint is None and "different run" in why


def test_only_the_newest_two_are_kept(tmp_path):
    params = init_network_params([4, 3, 2], jax.random.key(0))
    for epoch in range(1, 5):
        save_checkpoint(tmp_path, epoch, params, {}, [])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-000003", "ckpt-000004"]
