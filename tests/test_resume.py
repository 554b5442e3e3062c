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
from artifacts import storage
from mlp_core.checkpoint import Checkpoints
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


@pytest.mark.slow
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
    assert [p.relative_to(checkpoints).as_posix() for p in sorted(checkpoints.glob("*/*/*"))] == [
        f"{run}/ckpt-000001/{f}" for run in [p.name for p in checkpoints.iterdir()] for f in ("params.npz", "state.json")]

    rerun = run_cli(*_train_args(full_dataset, model))
    assert "resuming from" in rerun.stdout and "(1 epoch(s) done)" in rerun.stdout
    assert "epoch 1/4" not in rerun.stdout and "epoch 2/4" in rerun.stdout
    assert _params_bytes(model) == _params_bytes(unbroken)
    assert _comparable(load_model(model)[3]) == _comparable(load_model(unbroken)[3])
    assert not checkpoints.exists()  # removed once the model is written


_RUN = {"config": {"step_size": 0.01}, "dataset": {"name": "x"}, "placement": "device", "devices": {"count": 1}}
_SIZES = (4, 3, 2)


def _params(seed: int = 0):
    return init_network_params(list(_SIZES), jax.random.key(seed))


def test_kill_between_params_and_state_keeps_the_previous(tmp_path, monkeypatch):
    checkpoints = Checkpoints(str(tmp_path), _RUN)
    checkpoints.save(1, _params(), [{"epoch": 1}])
    real_write = storage.write_bytes

    def killed_at_the_commit(uri, data):
        if uri.endswith("state.json"):
            raise KeyboardInterrupt("killed before state.json")
        real_write(uri, data)

    monkeypatch.setattr(storage, "write_bytes", killed_at_the_commit)
    with pytest.raises(KeyboardInterrupt):
        checkpoints.save(2, _params(1), [{"epoch": 1}, {"epoch": 2}])
    monkeypatch.undo()
    assert (Path(checkpoints.uri) / "ckpt-000002" / "params.npz").is_file()  # written, never committed
    latest = checkpoints.latest(_SIZES)
    assert latest.epoch == 1 and latest.history == [{"epoch": 1}]


def test_an_unreadable_newest_checkpoint_falls_back_to_the_previous(tmp_path):
    checkpoints = Checkpoints(str(tmp_path), _RUN)
    checkpoints.save(1, _params(), [{"epoch": 1}])
    checkpoints.save(2, _params(1), [{"epoch": 1}, {"epoch": 2}])
    newest = Path(checkpoints.uri) / "ckpt-000002" / "params.npz"
    newest.write_bytes(newest.read_bytes()[:-10])  # a torn upload
    said = []
    latest = checkpoints.latest(_SIZES, log=said.append)
    assert latest.epoch == 1
    np.testing.assert_array_equal(latest.params[0][0], _params()[0][0])
    assert len(said) == 1 and "ckpt-000002" in said[0] and "trying an older one" in said[0]


def test_checkpoints_of_another_run_are_neither_resumed_nor_pruned(tmp_path):
    other = Checkpoints(str(tmp_path), {**_RUN, "config": {"step_size": 0.1}})
    other.save(5, _params(5), [])
    other.save(6, _params(6), [])
    ours = Checkpoints(str(tmp_path), _RUN)
    assert ours.uri != other.uri
    assert ours.latest(_SIZES) is None  # never someone else's
    ours.save(1, _params(), [{"epoch": 1}])
    assert ours.latest(_SIZES).epoch == 1  # not pruned as "older than 5 and 6"
    assert other.latest(_SIZES).epoch == 6
    ours.remove()
    assert other.latest(_SIZES).epoch == 6 and not Path(ours.uri).exists()


def test_the_placement_and_the_device_count_are_part_of_the_run(tmp_path):
    a = Checkpoints(str(tmp_path), _RUN)
    a.save(1, _params(), [])
    for changed in ({**_RUN, "placement": "stream"}, {**_RUN, "devices": {"count": 2}}):
        assert Checkpoints(str(tmp_path), changed).latest(_SIZES) is None


def test_only_the_newest_two_are_kept(tmp_path):
    checkpoints = Checkpoints(str(tmp_path), _RUN)
    for epoch in range(1, 5):
        checkpoints.save(epoch, _params(), [])
    assert sorted(p.name for p in Path(checkpoints.uri).iterdir()) == ["ckpt-000003", "ckpt-000004"]


@pytest.mark.parametrize("store", ["gs", "s3", "minio"])
def test_checkpoints_in_an_object_store(store, request):
    """Cloud Storage (emulator), S3 and Kubeflow's bundled store (minio://, an S3 server here)."""
    if store == "gs":
        client = request.getfixturevalue("gcs_emulator")
        if client.lookup_bucket("ckpt") is None:
            client.create_bucket("ckpt")
        bucket = "gs://ckpt"
    else:
        request.getfixturevalue("s3_server")
        bucket = f"{store}://mlpipeline/ckpt-{store}"
    location = f"{bucket}/root/checkpoints/job-1/train"
    storage.write_bytes(f"{location}/README", b"not ours")
    checkpoints = Checkpoints(location, _RUN)
    for epoch in (1, 2, 3):
        checkpoints.save(epoch, _params(epoch), [{"epoch": e} for e in range(1, epoch + 1)])
    key = checkpoints.uri.rsplit("/", 1)[-1]
    assert storage.list_names(location) == ["README"] + [
        f"{key}/ckpt-00000{e}/{f}" for e in (2, 3) for f in ("params.npz", "state.json")]
    latest = Checkpoints(location, _RUN).latest(_SIZES)  # as a fresh pod would
    assert latest.epoch == 3
    np.testing.assert_array_equal(latest.params[1][0], _params(3)[1][0])
    checkpoints.remove()
    assert storage.list_names(location) == ["README"]


def test_a_checkpoint_folder_holding_other_files_keeps_them(small_dataset, tmp_path):
    """train --checkpoint-dir pointed at a folder of the user's: only this run's checkpoint files go."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("my notes")
    (folder / "ckpt-000001").mkdir()  # looks like ours, is not: not under this run's folder
    (folder / "ckpt-000001" / "state.json").write_text("{}")
    out = run_cli("-m", "components.train", "--dataset", str(small_dataset), "--model", str(tmp_path / "model"),
                  "--epochs", "2", "--checkpoint-dir", str(folder)).stdout
    assert "checkpoints: " + str(folder) in out
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) == [
        "ckpt-000001", "ckpt-000001/state.json", "notes.txt"]
    assert (folder / "notes.txt").read_text() == "my notes"


def test_a_pipeline_steps_checkpoints_go_where_the_backend_gives_a_durable_place():
    """What the Kubeflow backend provides: the Model artifact's URI (the same on every retry), or checkpoint_root."""
    from components.train import pipeline_checkpoint_dir

    model = "minio://mlpipeline/v2/artifacts/jax-mlp-pipeline/run-1/train/5f0c/model"
    lines = []
    assert (pipeline_checkpoint_dir("", model, "run-1", lines.append)
            == "minio://mlpipeline/v2/artifacts/jax-mlp-pipeline/run-1/train/5f0c/.model.checkpoints")
    assert pipeline_checkpoint_dir("s3://ckpt/root", model, "run-1") == "s3://ckpt/root/checkpoints/run-1/train"
    # A backend before 2.5 leaves the run id literal: checkpoint_root cannot be used, the model's URI still can.
    assert pipeline_checkpoint_dir("s3://ckpt/root", model, "{{$.pipeline_job_uuid}}", lines.append).endswith(
        "/5f0c/.model.checkpoints")
    assert lines == ["warning: a placeholder was not substituted ('s3://ckpt/root', '{{$.pipeline_job_uuid}}'); "
                     "checkpoint_root is not used"]
    assert pipeline_checkpoint_dir("", "/local/runs/train/model", "run-1") is None  # kfp.local: beside the model
    lines.clear()
    assert pipeline_checkpoint_dir("", "oci://registry/model", "run-1", lines.append) is None
    assert "they stay in this pod" in lines[0]
