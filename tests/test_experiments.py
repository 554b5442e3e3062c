"""Vertex AI Experiments and TensorBoard: the track step against the recording stand-in (tests/vertex_experiments_stand_in.py).

The step runs the real google-cloud-aiplatform SDK (its TensorBoard uploader,
ExperimentRun) over REST; the stand-in answers as Vertex AI's v1 API documents
it and keeps what was created, so a test reads back the experiment, the run,
its parameters and metrics, and every point written to TensorBoard.
"""

import json

import pytest

from kfp_launcher_stand_in import all_tasks
from conftest import run_cli, run_main

from mlp_core.tensorboard import SCALARS, read_scalars

PROJECT, REGION = "stand-in-project", "us-central1"
TENSORBOARD = f"projects/{PROJECT}/locations/{REGION}/tensorboards/4242"
JOB_ID = "jax-mlp-pipeline-20261127103000"
JOB = f"projects/{PROJECT}/locations/{REGION}/pipelineJobs/{JOB_ID}"
STORE = f"projects/{PROJECT}/locations/{REGION}/metadataStores/default"


@pytest.fixture(scope="module")
def trained(small_dataset, tmp_path_factory):
    """A real train (2 epochs, with its event files) and evaluate, through their CLIs."""
    out = tmp_path_factory.mktemp("tracked")
    run_main("-m", "components.train", "--dataset", str(small_dataset), "--model", str(out / "model"),
             "--metrics", str(out / "train_metrics.json"), "--tensorboard", str(out / "tensorboard"), "--epochs", "2")
    run_main("-m", "components.evaluate", "--model", str(out / "model"), "--dataset", str(small_dataset),
             "--metrics", str(out / "test_metrics.json"))
    return out


@pytest.fixture
def vertex(gcs_emulator, monkeypatch):
    from vertex_experiments_stand_in import VertexExperimentsStandIn

    with VertexExperimentsStandIn(tensorboards=(TENSORBOARD,)) as stand_in:
        monkeypatch.setenv("JAX_MLP_VERTEX_ENDPOINT", stand_in.url)
        yield stand_in


def _track(out, vertex, *extra, check=True, job=JOB):
    import os

    return run_cli("-m", "components.track", "--job", job, "--experiment", "mnist-mlp",
                   "--train-metrics", str(out / "train_metrics.json"), "--test-metrics", str(out / "test_metrics.json"),
                   *extra, env={"JAX_MLP_VERTEX_ENDPOINT": vertex.url,
                                "STORAGE_EMULATOR_HOST": os.environ["STORAGE_EMULATOR_HOST"]}, check=check)


def test_a_run_reaches_vertex_experiments_with_its_parameters_metrics_and_curves(trained, vertex):
    result = _track(trained, vertex, "--tensorboard-dir", str(trained / "tensorboard"),
                    "--tensorboard-instance", TENSORBOARD)
    assert result.stdout.strip().splitlines()[-1] == (
        f"logged run {JOB_ID} to Vertex AI experiment mnist-mlp, its curves to {TENSORBOARD}")
    train = json.loads((trained / "train_metrics.json").read_text())
    test = json.loads((trained / "test_metrics.json").read_text())

    experiment = vertex.resources[f"{STORE}/contexts/mnist-mlp"]
    assert experiment["schemaTitle"] == "system.Experiment"
    assert experiment["metadata"]["backing_tensorboard_resource"] == TENSORBOARD  # the console shows the curves
    run_name = f"{STORE}/contexts/mnist-mlp-{JOB_ID}"
    run = vertex.resources[run_name]
    assert run["schemaTitle"] == "system.ExperimentRun" and run["displayName"] == JOB_ID
    assert vertex.children[experiment["name"]] == [run_name]
    assert run["metadata"]["_state"] == "COMPLETE"
    assert run["metadata"]["_params"] == {
        "epochs": 2, "batch_size": 128, "step_size": 0.01, "seed": 0, "shuffle": 1, "hidden_sizes": "512,512",
        "placement": train["hyperparameters"]["param_placement"]}
    metrics = run["metadata"]["_metrics"]
    assert metrics["test_accuracy"] == pytest.approx(test["test_accuracy"])
    assert metrics["macro_f1"] == pytest.approx(test["macro_f1"])
    assert metrics["final_loss"] == pytest.approx(train["history"][-1]["loss"])

    # The TensorBoard run of the same name, linked to the experiment run, holds every point of the event files.
    tb_run = f"{TENSORBOARD}/experiments/mnist-mlp/runs/{JOB_ID}"
    assert tb_run in vertex.resources
    link = vertex.resources[f"{STORE}/artifacts/mnist-mlp-{JOB_ID}-tb-run"]
    assert link["schemaTitle"] == "google.VertexTensorboardRun" and link["metadata"]["resourceName"] == tb_run
    assert link["name"] in vertex.children[run_name]
    written = vertex.scalars(tb_run)
    local = read_scalars(trained / "tensorboard")
    assert set(local) == {tag for tag in SCALARS.values() if tag in written} and local
    for tag, points in local.items():
        assert written[tag] == [(step, pytest.approx(value, rel=1e-6)) for step, value in points], tag
    assert [(step, value) for step, value in local["train/loss"]] == [
        (m["epoch"], pytest.approx(m["loss"], rel=1e-6)) for m in train["history"]]


def test_a_retried_step_sends_nothing_twice(trained, vertex):
    """A retry after a complete attempt (the pod went before kfp recorded its outputs) finds the run done."""
    events = ("--tensorboard-dir", str(trained / "tensorboard"), "--tensorboard-instance", TENSORBOARD)
    _track(trained, vertex, *events)
    sent = len([r for r in vertex.requests if r["method"] != "GET"])
    again = _track(trained, vertex, *events)
    assert f"run {JOB_ID} of experiment mnist-mlp already holds its metrics: nothing to do" in again.stdout
    assert len([r for r in vertex.requests if r["method"] != "GET"]) == sent  # no second upload, no second run
    runs = vertex.of_kind(rf"{STORE}/contexts/mnist-mlp-.*")
    assert list(runs) == [f"{STORE}/contexts/mnist-mlp-{JOB_ID}"]
    assert vertex.children[f"{STORE}/contexts/mnist-mlp"] == list(runs)
    tb_run = f"{TENSORBOARD}/experiments/mnist-mlp/runs/{JOB_ID}"
    assert vertex.scalars(tb_run)["train/loss"] == [(s, pytest.approx(v, rel=1e-6))
                                                    for s, v in read_scalars(trained / "tensorboard")["train/loss"]]


def test_a_run_left_without_metrics_is_finished_by_the_retry(trained, vertex):
    """An attempt that stopped after creating the run (before its metrics): the retry logs into that run."""
    _track(trained, vertex)
    run = vertex.resources[f"{STORE}/contexts/mnist-mlp-{JOB_ID}"]
    run["metadata"] = {"_state": "RUNNING", "_params": {}, "_metrics": {}}  # what such an attempt leaves
    again = _track(trained, vertex)
    assert "nothing to do" not in again.stdout
    assert run["metadata"]["_metrics"]["test_accuracy"] > 0 and run["metadata"]["_state"] == "COMPLETE"
    assert len(vertex.of_kind(rf"{STORE}/contexts/mnist-mlp-.*")) == 1


def test_the_step_reads_its_inputs_as_the_pipeline_passes_them(trained, vertex, monkeypatch):
    """The component function itself, with kfp artifacts: the train Metrics file, the evaluate Metrics' metadata."""
    from kfp.dsl import Artifact, Metrics

    from components.track import track

    test = json.loads((trained / "test_metrics.json").read_text())
    evaluated = Metrics(name="metrics", uri=str(trained / "unused"))
    for name in ("test_accuracy", "test_loss", "macro_f1"):
        evaluated.log_metric(name, test[name])
    run = track(train_metrics=Metrics(name="metrics", uri=str(trained / "train_metrics.json")), test_metrics=evaluated,
                tensorboard=Artifact(name="tensorboard", uri=str(trained / "tensorboard")), experiment="nightly",
                tensorboard_instance="", job=JOB)
    assert run == JOB_ID
    logged = vertex.resources[f"{STORE}/contexts/nightly-{JOB_ID}"]["metadata"]
    assert logged["_metrics"]["test_loss"] == pytest.approx(test["test_loss"]) and logged["_params"]["epochs"] == 2
    assert not vertex.of_kind(rf"{TENSORBOARD}/.*")  # no instance given: nothing uploaded


@pytest.mark.parametrize("extra, job, message", [
    ((), "local-pipeline-train", "is not a Vertex AI pipeline job"),
    (("--tensorboard-dir", "X", "--tensorboard-instance", f"projects/{PROJECT}/locations/europe-west4/tensorboards/1"),
     JOB,
     "is in europe-west4, the pipeline runs in us-central1"),
    (("--tensorboard-instance", TENSORBOARD), JOB, "--tensorboard-instance needs --tensorboard-dir"),
    (("--tensorboard-dir", "X", "--tensorboard-instance", TENSORBOARD.replace("4242", "7")), JOB,
     "Vertex AI refused: 404"),
])
def test_bad_input_is_one_line_and_creates_nothing(trained, vertex, extra, job, message):
    extra = tuple(str(trained / "tensorboard") if e == "X" else e for e in extra)
    result = _track(trained, vertex, *extra, check=False, job=job)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
    assert not [r for r in vertex.requests if r["method"] != "GET"]  # nothing created, in Metadata or TensorBoard


def test_metrics_files_of_the_wrong_shape_are_refused_before_any_call(trained, vertex, tmp_path):
    import os

    (tmp_path / "nan.json").write_text('{"history": [], "hyperparameters": {"param_epochs": NaN}}')
    for train, test, message in (
        (trained / "test_metrics.json", trained / "test_metrics.json", "'history' is a required property"),
        (tmp_path / "nan.json", trained / "test_metrics.json", "is not valid JSON"),
        (trained / "train_metrics.json", tmp_path / "missing.json", "not found: "),
    ):
        result = run_cli("-m", "components.track", "--job", JOB, "--experiment", "mnist-mlp", "--train-metrics",
                         str(train), "--test-metrics", str(test), check=False,
                         env={"JAX_MLP_VERTEX_ENDPOINT": vertex.url,
                              "STORAGE_EMULATOR_HOST": os.environ["STORAGE_EMULATOR_HOST"]})
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert message in result.stderr
    assert vertex.requests == []


def test_compiled_for_vertex_the_step_gets_the_job_and_the_instance(tmp_path):
    import yaml

    path = tmp_path / "p.yaml"
    run_cli("pipeline.py", "compile", "--target", "vertex", "--accelerator", "none", "--experiment", "mnist-mlp",
            "--tensorboard", TENSORBOARD, "--output", str(path))
    spec = yaml.safe_load(path.read_text())
    task = all_tasks(spec)["track"]
    params = {k: v["runtimeValue"]["constant"] for k, v in task["inputs"]["parameters"].items()}
    assert params == {"experiment": "mnist-mlp", "tensorboard_instance": TENSORBOARD,
                      "job": "{{$.pipeline_job_resource_name}}"}  # whole values (driver/resolve.go)
    artifacts = {k: (v["taskOutputArtifact"]["producerTask"], v["taskOutputArtifact"]["outputArtifactKey"])
                 for k, v in task["inputs"]["artifacts"].items()}
    assert artifacts == {"train_metrics": ("train", "metrics"), "test_metrics": ("evaluate", "metrics"),
                         "tensorboard": ("train", "tensorboard")}
    assert task["cachingOptions"] == {}  # never cached: it writes to Vertex AI

    run_cli("pipeline.py", "compile", "--target", "vertex", "--accelerator", "none", "--output", str(path))
    assert "track" not in all_tasks(yaml.safe_load(path.read_text()))
    refused = run_cli("pipeline.py", "compile", "--experiment", "mnist-mlp", "--output", str(path), check=False)
    assert refused.returncode == 2 and "is a Vertex AI option" in refused.stderr


def test_submit_and_schedule_on_vertex_send_the_pipeline_with_the_track_step(vertex, gcs_emulator):
    """``pipeline.py submit|schedule --vertex --experiment``: the PipelineJob and schedule the SDK creates (recorded)."""
    import os
    from pathlib import Path

    if not gcs_emulator.bucket("stand-in-bucket").exists():  # the pipeline root's bucket, the project's own
        gcs_emulator.create_bucket("stand-in-bucket")
    bucket = gcs_emulator.get_bucket("stand-in-bucket")
    site = str(Path(__file__).parent / "vertex_stand_in_site")

    result = run_cli("pipeline.py", "submit", "--vertex", "--project", PROJECT, "--region", REGION, "--pipeline-root",
                     "gs://stand-in-bucket/root", "--accelerator", "none", "--experiment", "mnist-mlp", "--tensorboard",
                     TENSORBOARD, "--param", "epochs=3", "--name", "nightly",
                     env={"JAX_MLP_VERTEX_ENDPOINT": vertex.url, "STORAGE_EMULATOR_HOST": os.environ["STORAGE_EMULATOR_HOST"],
                          "PYTHONPATH": os.pathsep.join(filter(None, [site, os.environ.get("PYTHONPATH")])),
                          "JAX_MLP_STAND_IN_PROJECT_NUMBER": str(bucket.project_number)})
    assert "Traceback" not in result.stderr  # the SDK logs a failed bucket check and goes on: none here
    assert result.stdout.strip().splitlines()[-1].startswith(
        f"submitted: https://console.cloud.google.com/vertex-ai/locations/{REGION}/pipelines/runs/jax-mlp-pipeline-")
    (create,) = [r for r in vertex.requests if r["method"] == "POST"]
    assert create["path"] == f"/v1/projects/{PROJECT}/locations/{REGION}/pipelineJobs"
    body = create["body"]
    assert body["displayName"] == "nightly" and body["runtimeConfig"] == {
        "gcsOutputDirectory": "gs://stand-in-bucket/root", "parameterValues": {"epochs": 3.0}}
    task = all_tasks(body["pipelineSpec"])["track"]
    assert task["inputs"]["parameters"]["tensorboard_instance"]["runtimeValue"]["constant"] == TENSORBOARD
    assert task["dependentTasks"] == ["evaluate", "train"]

    # A schedule's runs are tracked the same way: the step is in the pipeline it creates runs of.
    run_cli("pipeline.py", "schedule", "--vertex", "--project", PROJECT, "--region", REGION, "--pipeline-root",
            "gs://stand-in-bucket/root", "--accelerator", "none", "--experiment", "nightly", "--cron", "0 3 * * 1",
            env={"JAX_MLP_VERTEX_ENDPOINT": vertex.url})
    schedule = vertex.requests[-1]
    assert schedule["path"] == f"/v1/projects/{PROJECT}/locations/{REGION}/schedules"
    spec = schedule["body"]["createPipelineJobRequest"]["pipelineJob"]["pipelineSpec"]
    assert all_tasks(spec)["track"]["inputs"]["parameters"]["experiment"]["runtimeValue"] == {
        "constant": "nightly"}

    refused = run_cli("pipeline.py", "submit", "--host", "http://127.0.0.1:9", "--tensorboard", TENSORBOARD,
                      check=False)
    assert refused.returncode == 2 and "submit or schedule with --vertex" in refused.stderr
