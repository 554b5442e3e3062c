import json
import os
import re
from pathlib import Path

import pytest
import yaml

import pipeline
from commands.cli import compile_pipeline
from conftest import ROOT, run_cli

GOLDEN = Path(__file__).parent / "golden"
IMAGE = "registry.example.com/jax-mlp-pipeline:1.2.3-cuda"


def normalise(text: str) -> list[dict]:
    """The compiled spec (and its platform spec, kfp-kubernetes's) with the fields that legitimately vary blanked out."""
    spec, *platform = yaml.safe_load_all(text)
    spec.pop("sdkVersion", None)
    for executor in spec["deploymentSpec"]["executors"].values():
        executor["container"]["image"] = "<image>"
        executor["container"]["command"] = [re.sub(r"kfp==[\w.]+", "kfp==<version>", c) for c in executor["container"]["command"]]
    return [spec, *platform]


@pytest.mark.parametrize(("target", "flags", "name"), [
    ("kfp", [], "pipeline_kfp.yaml"),
    ("vertex", [], "pipeline_vertex.yaml"),
    ("vertex", ["--replicas", "3"], "pipeline_vertex_multihost.yaml"),  # the train step as a 3-replica custom job
    ("kfp", ["--replicas", "2"], "pipeline_kfp_trainer.yaml"),  # the train step starts a 2-node Kubeflow Trainer job
])
def test_compiled_yaml_equals_golden(tmp_path, target, flags, name):
    out = tmp_path / "pipeline.yaml"
    run_cli("pipeline.py", "compile", "--target", target, *flags, "--output", str(out), "--image", IMAGE)
    golden = GOLDEN / name
    text = out.read_text()
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert normalise(text) == normalise(golden.read_text()), "recompile with UPDATE_GOLDEN=1 if the change is intended"


def test_every_step_runs_on_the_image_without_pip(tmp_path):
    spec = yaml.safe_load(compile_pipeline(tmp_path / "p.yaml", IMAGE).read_text())
    executors = spec["deploymentSpec"]["executors"]
    # ingest, new_data, validate, tune-plan, tune, tune-choose, untuned, train, evaluate, publish
    assert len(executors) == 10
    for executor in executors.values():
        assert executor["container"]["image"] == IMAGE
        assert "pip install" not in " ".join(executor["container"]["command"])


def test_every_hyperparameter_is_a_pipeline_parameter_with_the_seeds_default(tmp_path):
    spec = yaml.safe_load(compile_pipeline(tmp_path / "p.yaml").read_text())
    params = spec["root"]["inputDefinitions"]["parameters"]
    defaults = {name: p.get("defaultValue") for name, p in params.items()}
    assert defaults["step_size"] == 0.01 and defaults["batch_size"] == 128 and defaults["epochs"] == 10
    assert defaults["seed"] == 0 and defaults["hidden_sizes"] == "512,512" and defaults["dataset_name"] == "mnist"
    assert spec["root"]["dag"]["tasks"]["new-data"]["dependentTasks"] == ["ingest"]
    # Everything after new_data runs under its condition: validate, then train on what passed, then evaluate.
    dag = spec["components"]["comp-condition-1"]["dag"]["tasks"]
    assert dag["validate"]["componentRef"]["name"] == "comp-validate"
    # train waits for validate and for the tune branches (tuned or not: one of them gives best_hyperparameters)
    assert sorted(dag["train"]["dependentTasks"]) == ["condition-branches-2", "validate"]
    assert dag["train"]["inputs"]["parameters"]["best_hyperparameters"]["taskOutputParameter"]["producerTask"] \
        == "condition-branches-2"
    assert sorted(dag["evaluate"]["dependentTasks"]) == ["train"]


def test_cli_help():
    assert "compile" in run_cli("pipeline.py", "--help").stdout
    assert "--no-shuffle" in run_cli("pipeline.py", "run", "--help").stdout


@pytest.mark.slow
def test_whole_dag_through_kfp_local_on_real_mnist(mnist_data_dir, tmp_path):
    """The README's run command, 1 epoch, seed config: test accuracy >= 0.92."""
    result = run_cli("pipeline.py", "run", "--epochs", "1", "--no-shuffle", "--tfds-data-dir", mnist_data_dir,
                     "--pipeline-root", str(tmp_path / "outputs"))
    last = result.stdout.strip().splitlines()[-1]
    accuracy = float(re.match(r"test accuracy ([\d.]+)", last).group(1))
    assert accuracy >= 0.92, last
    assert (tmp_path / "outputs").is_dir()
    run = Path(re.search(r"^pipeline finished in [\d.]+ s: (.+)$", result.stdout, re.M).group(1))  # the run folder
    paths = {name: ROOT / run / name for name in ("train/model", "train/metrics", "train/tensorboard", "validate/report")}
    assert (paths["train/model"] / "params.npz").is_file() and (paths["validate/report"]).is_file()
    from mlp_core.tensorboard import read_scalars

    history = json.loads(paths["train/metrics"].read_text())["history"]
    assert read_scalars(paths["train/tensorboard"])["test/accuracy"] == [(1, pytest.approx(history[0]["test_accuracy"]))]
    # kfp.local keeps the Metrics artifact's logged values in the executor output beside it: hyperparameters too.
    executor_output = json.loads((paths["train/metrics"].parent / "executor_output.json").read_text())
    logged = executor_output["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    assert logged["param_epochs"] == 1 and logged["param_shuffle"] == 0 and logged["hidden_sizes"] == "512,512"


@pytest.mark.slow
def test_blessed_run_publishes_and_a_strict_one_does_not(mnist_data_dir, tmp_path):
    from components.publish import read_champion

    publish_uri = str(tmp_path / "published")
    common = ["--epochs", "1", "--no-shuffle", "--tfds-data-dir", mnist_data_dir, "--publish-uri", publish_uri,
              "--pipeline-root", str(tmp_path / "outputs")]
    run_cli("pipeline.py", "run", "--blessing-threshold", "0.9", *common)
    champion = read_champion(publish_uri)
    assert champion is not None and champion["metrics"]["test_accuracy"] >= 0.92
    same = run_cli("pipeline.py", "run", "--blessing-threshold", "1.0", *common).stdout
    assert f"no new data since champion {champion['version']}" in same and "nothing new" in same
    strict = run_cli("pipeline.py", "run", "--blessing-threshold", "1.0", "--force", *common).stdout
    assert "not blessed: test accuracy" in strict and "below the threshold 1.0000" in strict
    assert read_champion(publish_uri)["version"] == champion["version"]
    assert len([p for p in (tmp_path / "published").iterdir() if p.is_dir()]) == 1
