"""The train step as a Kubeflow Trainer TrainJob (compile --target kfp --replicas N), and the object-store artifacts it
needs (gs://, s3://, Kubeflow's minio://).

Real parts: the train CLI against gcp-storage-emulator (google-cloud-storage) and an S3 server (moto, boto3),
the real ``kubernetes`` client, real multi-process JAX on loopback (gloo), the
compiled pipeline run by Kubeflow's launcher stand-in. Stand-in: the Kubernetes
API and Trainer's controller (``kubernetes_api_stand_in.py``).
"""

import json
import subprocess
import sys

import pytest

from conftest import SMALL_TEST, SMALL_TRAIN
from artifacts import remote as remote_artifacts, storage
from uploads import upload_tree


def _upload_dataset(local, uri: str) -> str:
    upload_tree(local, uri)
    return uri


def _train_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "components.train", *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def bucket(gcs_emulator):
    gcs_emulator.create_bucket("trainer")
    return "gs://trainer"


@pytest.fixture(params=["gs", "s3"])
def store(request):
    """A bucket in Cloud Storage or in S3."""
    if request.param == "gs":
        return request.getfixturevalue("bucket")
    request.getfixturevalue("s3_server")
    return "s3://mlpipeline/trainer"


def test_the_train_cli_reads_its_dataset_from_a_store_and_commits_its_model_there_marker_last(store, small_dataset):
    bucket = store
    dataset = _upload_dataset(small_dataset, f"{bucket}/cli/dataset")
    model, metrics = f"{bucket}/cli/model", f"{bucket}/cli/train_metrics.json"
    result = _train_cli("--dataset", dataset, "--model", model, "--metrics", metrics, "--epochs", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"wrote {model}" in result.stdout
    names = storage.list_names(model)
    assert "_COMPLETE.json" in names and "params.npz" in names and "_WRITING.json" not in names
    from mlp_core.model_io import load_model

    folder = remote_artifacts.download(model, "model")
    _, config, _, history = load_model(folder)
    assert config.epochs == 2 and len(json.loads(storage.read_bytes(metrics))["history"]) == 2
    assert storage.list_names(f"{bucket}/cli/.model.checkpoints") == []  # durable while training, gone once written

    again = _train_cli("--dataset", dataset, "--model", model, "--epochs", "1")  # a rerun replaces its own model
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(storage.read_bytes(f"{model}/config.json"))["epochs"] == 1


def test_gs_locations_it_must_not_use_are_refused_before_any_work(bucket, small_dataset):
    dataset = _upload_dataset(small_dataset, f"{bucket}/refused/dataset")
    storage.write_bytes(f"{bucket}/refused/theirs/notes.txt", b"not ours")
    result = _train_cli("--dataset", dataset, "--model", f"{bucket}/refused/theirs", "--epochs", "1")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "holds objects this program did not write" in result.stderr
    assert storage.list_names(f"{bucket}/refused/theirs") == ["notes.txt"]

    storage.write_bytes(f"{bucket}/refused/half/shard-0.tfrecord", b"x")  # an upload that never got its marker
    result = _train_cli("--dataset", f"{bucket}/refused/half", "--model", f"{bucket}/refused/model", "--epochs", "1")
    assert result.returncode == 2 and "is not a complete dataset artifact" in result.stderr, result.stderr
    assert storage.list_names(f"{bucket}/refused/model") == []

    shard = next(n for n in storage.list_names(dataset) if n.endswith(".tfrecord") or "shard" in n)
    original = storage.read_bytes(f"{dataset}/{shard}")
    storage.write_bytes(f"{dataset}/{shard}", bytes(len(original)))  # same size, other bytes
    result = _train_cli("--dataset", dataset, "--model", f"{bucket}/refused/model", "--epochs", "1")
    assert result.returncode == 2 and f"{shard} does not match the sha256" in result.stderr, result.stderr


# ---- the Kubernetes API (stand-in) through the real kubernetes client

def _job(**trainer):
    from platforms.kubeflow.trainer import job_spec, manifest

    spec = json.loads(job_spec(2, "registry.example.com/jax-mlp-pipeline:0.1.0"))
    spec.update(trainer)
    return manifest("jax-mlp-train-0123456789abcdef", spec, ["--epochs", "1"], "run-1")


@pytest.mark.parametrize(("kubeconfig", "job", "expected"), [
    ({"token": "wrong"}, {}, "cannot create TrainJob team-a/jax-mlp-train-0123456789abcdef: 401 Unauthorized"),
    ({"namespace": "team-b"}, {}, 'cannot create TrainJob team-b/jax-mlp-train-0123456789abcdef: 403 '
                                  'trainjobs.trainer.kubeflow.org is forbidden'),
    ({}, {"runtime": "jax-tuned"}, 'ClusterTrainingRuntime.trainer.kubeflow.org "jax-tuned" not found'),
])
def test_the_api_servers_refusals_fail_the_step_with_one_line(tmp_path, monkeypatch, kubeconfig, job, expected):
    from platforms.kubeflow.trainer import TrainJobFailed, run
    from kubernetes_api_stand_in import KubernetesApiStandIn

    with KubernetesApiStandIn() as api:
        monkeypatch.setenv("KUBECONFIG", str(api.kubeconfig(tmp_path / "kubeconfig", **kubeconfig)))
        with pytest.raises(TrainJobFailed) as failed:
            run(_job(**job), poll_seconds=0.1, log=lambda line: None)
    assert expected in str(failed.value) and "\n" not in str(failed.value)
    assert api.jobs == {}


def test_a_trainjob_of_another_owner_with_the_same_name_is_left_alone(tmp_path, monkeypatch):
    from platforms.kubeflow.trainer import TrainJobFailed, run
    from kubernetes_api_stand_in import KubernetesApiStandIn

    with KubernetesApiStandIn() as api:
        monkeypatch.setenv("KUBECONFIG", str(api.kubeconfig(tmp_path / "kubeconfig")))
        theirs = _job()
        theirs["metadata"]["labels"] = {}
        theirs["spec"]["trainer"].update(command=["true"], numNodes=1, args=[])
        assert api.handle("POST", "/apis/trainer.kubeflow.org/v1alpha1/namespaces/team-a/trainjobs",
                          "Bearer stand-in-token", theirs)[0] == 201
        with pytest.raises(TrainJobFailed, match="exists and is not this pipeline's; it is left alone"):
            run(_job(), poll_seconds=0.1, log=lambda line: None)
    assert [r["method"] for r in api.requests] == ["POST", "GET"]


# ---- the compiled pipeline's train step, run by Kubeflow's launcher (stand-in), starting a TrainJob

@pytest.fixture(scope="module")
def compiled_for_trainer(tmp_path_factory):
    import pipeline
    from commands.cli import compile_pipeline
    from platforms.options import ClusterOptions

    path = tmp_path_factory.mktemp("spec") / "pipeline.yaml"
    return compile_pipeline(path, "registry.example.com/jax-mlp-pipeline:0.1.0",
                                     ClusterOptions(target="kfp", accelerator=None, replicas=2))


@pytest.fixture(params=["minio", "gs"])
def pipeline_store(request):
    """A pipeline root in Kubeflow's bundled S3-compatible store (its default root) or in Cloud Storage; secrets."""
    from conftest import S3_KEYS

    if request.param == "gs":
        return f"{request.getfixturevalue('bucket')}/root", {}
    request.getfixturevalue("s3_server")
    return "minio://mlpipeline/v2/artifacts", {"mlpipeline-minio-artifact": S3_KEYS}


@pytest.mark.slow
def test_the_train_step_runs_as_a_two_node_trainjob_and_its_model_is_the_steps_artifact(
        compiled_for_trainer, pipeline_store, mnist_data_dir, tmp_path, monkeypatch):
    """No {{$.pipeline_root}} (never substituted): the pods stage the model beside the step's own Model URI."""
    from kfp_launcher_stand_in import LauncherStandIn, StepFailed
    from kubernetes_api_stand_in import KubernetesApiStandIn

    root, secrets = pipeline_store
    arguments = {"tfds_data_dir": mnist_data_dir, "train_split": SMALL_TRAIN, "test_split": SMALL_TEST,
                 "records_per_shard": 200, "epochs": 2, "blessing_threshold": 0.5}
    launcher = LauncherStandIn(compiled_for_trainer, root, "job-trainjob", arguments, secrets)
    ingest = launcher.run_task("ingest")
    untuned = launcher.run_task("untuned")
    with KubernetesApiStandIn(logs=tmp_path) as api:
        api.secrets = secrets
        monkeypatch.setenv("KUBECONFIG", str(api.kubeconfig(tmp_path / "kubeconfig")))
        train = launcher.run_task("train", {"ingest": ingest, "untuned": untuned})
        created = [r["body"] for r in api.requests if r["method"] == "POST"]
        assert len(created) == 1
        trainer = created[0]["spec"]["trainer"]
        assert created[0]["spec"]["runtimeRef"] == {"apiGroup": "trainer.kubeflow.org", "kind": "ClusterTrainingRuntime",
                                                    "name": "jax-distributed"}
        assert trainer["numNodes"] == 2 and trainer["image"] == "registry.example.com/jax-mlp-pipeline:0.1.0"
        assert trainer["resourcesPerNode"] == {"requests": {"cpu": "4", "memory": "4Gi"},
                                               "limits": {"cpu": "8", "memory": "8Gi"}}
        # The pods read the object store; Kubeflow's minio:// is handed over as the s3:// it is.
        assert trainer["args"][:2] == ["--dataset", storage.as_s3(ingest.artifacts["dataset"])[0]]
        staging = f"{launcher.task_root('train')}/trainjob"
        assert trainer["args"][2:6] == ["--model", storage.as_s3(f"{staging}/model")[0],
                                        "--metrics", storage.as_s3(f"{staging}/metrics.json")[0]]
        assert {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {
            "name": "mlpipeline-minio-artifact", "key": "accesskey", "optional": True}}} in trainer["env"]
        assert "TrainJob jax-mlp-train-" in train.log and "Complete=True" in train.log
        pods = [(tmp_path / f"{created[0]['metadata']['name']}-node-{i}.log").read_text() for i in (0, 1)]
        assert "processes: 2, this is process 0" in pods[0] and "process 1 done" in pods[1], pods
        # The step's Model artifact is the TrainJob's model, uploaded by the launcher from the step's path.
        assert sorted({n.split("/")[0] for n in train.uploaded}) == ["metrics", "model", "tensorboard"]
        assert storage.exists(f"{train.artifacts['model']}/_COMPLETE.json")
        assert storage.list_names(f"{staging}/.model.checkpoints") == []  # the pods removed theirs
        assert storage.exists(f"{staging}/model/_COMPLETE.json")

        retry = launcher.run_task("train", {"ingest": ingest, "untuned": untuned})  # a retry of the step: no second TrainJob
        assert "already wrote" in retry.log and len([r for r in api.requests if r["method"] == "POST"]) == 1

        evaluate = launcher.run_task("evaluate", {"ingest": ingest, "train": train})
        assert evaluate.parameters["test_accuracy"] > 0.5

        failing = LauncherStandIn(compiled_for_trainer, root, "job-failing", {**arguments, "epochs": 0}, secrets)
        with pytest.raises(StepFailed) as failed:
            failing.run_task("train", {"ingest": ingest, "untuned": untuned})
    assert "failed: JobsFailed: jobset failed: pod jax-mlp-train-" in failed.value.log
    assert "exited with code 2" in failed.value.log and "kubectl -n team-a logs" in failed.value.log


def test_a_retry_replaces_this_runs_failed_trainjob_and_watches_a_running_one(tmp_path, monkeypatch):
    """A step retry after a failed TrainJob starts it again (its pods resume from the run's checkpoints)."""
    from platforms.kubeflow.trainer import TrainJobFailed, run
    from kubernetes_api_stand_in import KubernetesApiStandIn

    def job(command):
        body = _job()
        body["spec"]["trainer"].update(command=command, args=[], numNodes=2)
        return body

    lines = []
    with KubernetesApiStandIn() as api:
        monkeypatch.setenv("KUBECONFIG", str(api.kubeconfig(tmp_path / "kubeconfig")))
        with pytest.raises(TrainJobFailed, match="failed: JobsFailed: jobset failed: pod .* exited with code 1"):
            run(job(["false"]), poll_seconds=0.1, log=lines.append)
        finished = run(job(["true"]), poll_seconds=0.1, log=lines.append)
    assert any("failed in an earlier attempt; starting it again" in line for line in lines), lines
    assert [c["type"] for c in finished["status"]["conditions"]] == ["Complete"]
    assert [r["method"] for r in api.requests if r["method"] != "GET"] == ["POST", "POST", "DELETE", "POST"]
