"""Bad input, second round: outputs never overwrite inputs, poisoned numbers are refused."""

import hashlib
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from artifacts.outputs import commit


def _digest(folder: Path) -> str:
    """One hash over every file under ``folder`` (names and bytes): any change shows."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode() + hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


@pytest.fixture(scope="module")
def trained(small_model):
    return small_model / "model"  # one epoch on small_dataset (conftest)


def _refused(result, message: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, last
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("flag", "where"), [
    ("--model", "{dataset}"),
    ("--model", "{dataset}/model"),
    ("--metrics", "{dataset}/metadata.json"),
    ("--checkpoint-dir", "{dataset}"),
])
def test_train_never_writes_into_its_dataset(small_dataset, tmp_path, flag, where):
    dataset = tmp_path / "dataset"
    shutil.copytree(small_dataset, dataset)
    before = _digest(dataset)
    args = {"--model": str(tmp_path / "model"), flag: where.format(dataset=dataset)}
    r = run_cli("-m", "components.train", "--dataset", str(dataset), "--epochs", "1",
                *[x for kv in args.items() for x in kv], check=False)
    _refused(r, f"{flag} {where.format(dataset=dataset)}")
    assert _digest(dataset) == before and not (tmp_path / "model").exists()


def test_an_output_reached_through_a_symlink_is_recognised(small_dataset, tmp_path):
    dataset = tmp_path / "dataset"
    shutil.copytree(small_dataset, dataset)
    (tmp_path / "link").symlink_to(dataset)
    before = _digest(dataset)
    r = run_cli("-m", "components.train", "--dataset", str(dataset), "--model", str(tmp_path / "link"), "--epochs", "1",
                check=False)
    _refused(r, f"--model {tmp_path / 'link'} is the input --dataset {dataset}")
    assert _digest(dataset) == before


def test_evaluate_never_writes_over_the_model_or_the_dataset(trained, small_dataset, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(trained, model)
    before = _digest(model)
    for flag, target in (("--metrics", model / "params.npz"), ("--report", model / "report.html"),
                         ("--report-markdown", small_dataset / "report.md")):
        r = run_cli("-m", "components.evaluate", "--model", str(model), "--dataset", str(small_dataset),
                    flag, str(target), check=False)
        _refused(r, f"{flag} {target} lies inside the input")
    assert _digest(model) == before


def test_ingest_never_writes_into_the_tfds_data_dir(mnist_data_dir, tmp_path):
    data_dir = tmp_path / "tfds"
    data_dir.mkdir()
    r = run_cli("-m", "components.ingest", "--tfds-data-dir", str(data_dir), "--output", str(data_dir / "out"),
                check=False)
    _refused(r, "--output")
    assert list(data_dir.iterdir()) == []


def test_publish_never_publishes_into_the_model(trained, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(trained, model)
    before = _digest(model)
    r = run_cli("-m", "components.publish", "--model", str(model), "--publish-uri", str(model / "published"),
                "--metrics-by-hand", "--test-accuracy", "0.9", "--test-loss", "0.2", check=False)
    _refused(r, "--publish-uri")
    assert _digest(model) == before


@pytest.mark.parametrize("value", ["nan", "inf", "-0.1", "1.5"])
def test_publish_refuses_a_poisoned_accuracy(trained, tmp_path, value):
    r = run_cli("-m", "components.publish", "--model", str(trained), "--publish-uri", str(tmp_path / "p"),
                "--metrics-by-hand", "--test-accuracy", value, "--test-loss", "0.2", check=False)
    _refused(r, f"--test-accuracy must be a number from 0 to 1, got {float(value)!r}")
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize(("flag", "value"), [("--blessing-threshold", "nan"), ("--blessing-tolerance", "-1")])
def test_evaluate_refuses_a_poisoned_blessing_flag(trained, small_dataset, tmp_path, flag, value):
    r = run_cli("-m", "components.evaluate", "--model", str(trained), "--dataset", str(small_dataset),
                "--metrics", str(tmp_path / "m.json"), flag, value, check=False)
    _refused(r, f"{flag} must be a number from 0 to 1")
    assert not (tmp_path / "m.json").exists()


def test_a_champion_with_a_poisoned_manifest_stops_blessing(trained, small_dataset, tmp_path):
    """Before: a NaN champion accuracy compared False, so every later model was blessed against it."""
    from components.publish import publish_model

    published = tmp_path / "published"
    version = publish_model(trained, str(published), 0.9).version
    manifest_path = published / version / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["metrics"]["test_accuracy"] = math.nan
    manifest_path.write_text(json.dumps(manifest))  # Python writes the non-JSON token NaN
    r = run_cli("-m", "components.evaluate", "--model", str(trained), "--dataset", str(small_dataset),
                "--metrics", str(tmp_path / "m.json"), "--publish-uri", str(published), "--blessing-threshold", "0", check=False)
    _refused(r, "the champion cannot be read, so nothing is blessed against it")
    assert "is not valid JSON: NaN is not valid JSON" in r.stderr
    manifest["metrics"]["test_accuracy"] = 7
    manifest_path.write_text(json.dumps(manifest))
    r = run_cli("-m", "components.evaluate", "--model", str(trained), "--dataset", str(small_dataset),
                "--publish-uri", str(published), check=False)
    _refused(r, "metrics.test_accuracy: 7 is greater than the maximum of 1")
    (published / "LATEST").write_text("../../etc\n")
    r = run_cli("-m", "components.publish", "--model", str(trained), "--publish-uri", str(published),
                "--metrics-by-hand", "--test-accuracy", "0.9", "--test-loss", "0.2", check=False)
    _refused(r, "names '../../etc', not a published version")


def test_published_manifests_are_strict_json(trained, tmp_path):
    from components.publish import publish_model

    version = publish_model(trained, str(tmp_path / "p"), 0.9, test_loss=0.3).version
    text = (tmp_path / "p" / version / "manifest.json").read_text()
    json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in a manifest"))


def test_a_model_with_non_finite_weights_is_refused_everywhere(trained, small_dataset, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(trained, model)
    with np.load(model / "params.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["layer_1_b"][3] = np.inf
    np.savez(model / "params.npz", **arrays)
    commit(model, "model")  # signed again, as a model trained into overflow would be
    np.save(tmp_path / "x.npy", np.zeros((1, 28, 28, 1), np.uint8))
    message = "layer_1_b holds non-finite weights; the model is unusable"
    _refused(run_cli("-m", "components.evaluate", "--model", str(model), "--dataset", str(small_dataset), check=False), message)
    _refused(run_cli("-m", "components.predict", "--model", str(model), str(tmp_path / "x.npy"), check=False), message)
    _refused(run_cli("-m", "components.publish", "--model", str(model), "--publish-uri", str(tmp_path / "p"),
                     "--metrics-by-hand", "--test-accuracy", "0.9", "--test-loss", "0.2", check=False), message)
    assert not (tmp_path / "p").exists()
    assert os.path.exists(model / "params.npz")


@pytest.mark.parametrize(("flags", "message"), [
    (["--epochs", "0"], "--epochs must be a positive integer, got 0"),
    (["--blessing-threshold", "nan"], "--blessing-threshold must be a number from 0 to 1, got nan"),
    (["--hidden-sizes", "5,x"], "--hidden-sizes must be positive integers separated by commas, got '5,x'"),
    (["--placement", "gpu"], "--placement must be auto, device or stream, got 'gpu'"),
    (["--records-per-shard", "-3"], "--records-per-shard must be a positive integer, got -3"),
    (["--publish-uri", "/proc/published"], "--publish-uri /proc/published cannot be written"),
])
def test_a_whole_run_is_checked_before_its_first_step(tmp_path, flags, message):
    """Before: `pipeline.py run --epochs 0` ran ingest for a minute, then failed in train."""
    r = run_cli("pipeline.py", "run", "--pipeline-root", str(tmp_path / "root"), *flags, check=False)
    _refused(r, message)
    assert not (tmp_path / "root").exists() and "Executing task" not in r.stderr


def test_submit_sends_nothing_when_an_argument_is_bad():
    from kfp_api_stand_in import RecordingKfpApi

    with RecordingKfpApi() as api:
        r = run_cli("pipeline.py", "submit", "--host", api.url, "--param", "epochs=0", check=False)
        sent = list(api.requests)
    _refused(r, "--param epochs must be a positive integer, got 0")  # named as the user gave it
    assert sent == []


@pytest.mark.parametrize(("name", "message"), [("p.txt", "written as .yaml (or .json), not .txt"),
                                               ("folder.yaml", "is a folder, expected a file")])
def test_compile_refuses_an_output_it_cannot_write(tmp_path, name, message):
    (tmp_path / "folder.yaml").mkdir()
    r = run_cli("pipeline.py", "compile", "--output", str(tmp_path / name), check=False)
    _refused(r, message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.yaml"]


def test_damaged_npy_inputs_and_a_seed_too_large_for_64_bits_are_one_line(trained, small_dataset, tmp_path):
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "header.npy").write_bytes(b"\x93NUMPY\x01\x00garbage")
    for name, message in (("objects.npy", "images must be uint8 (0..255), got object"),
                          ("header.npy", "not a readable .npy of images (EOF: reading array header")):
        r = run_cli("-m", "components.predict", "--model", str(trained), str(tmp_path / name), check=False)
        _refused(r, f"{tmp_path / name}: ")
        assert message in r.stderr
    r = run_cli("-m", "components.train", "--dataset", str(small_dataset), "--model", str(tmp_path / "m"),
                "--seed", str(2**70), check=False)
    _refused(r, f"--seed must be an integer from 0 to 2**63 - 1, got {2**70}")
    assert not (tmp_path / "m").exists()
