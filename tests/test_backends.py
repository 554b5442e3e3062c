"""Every step under the file semantics of the backends it runs on, through stand-ins that reproduce them.

- Vertex AI: outputs on Cloud Storage FUSE (``gcsfuse_stand_in.py``, a real FUSE mount);
- Kubeflow Pipelines: the v2 driver's placeholders and URIs, the launcher's scratch folder and upload
  (``kfp_launcher_stand_in.py``), with the object store on gcp-storage-emulator or an S3 server (``s3_server.py``).
"""

import errno
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from kfp_launcher_stand_in import all_tasks

from conftest import ROOT, SMALL_TEST, SMALL_TRAIN, run_cli
from artifacts import storage

STAND_IN = Path(__file__).parent / "gcsfuse_stand_in.py"


def _fuse_unavailable() -> str | None:
    import shutil

    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse on this machine"
    if not shutil.which("fusermount3"):
        return "fusermount3 is not installed (apt-get install fuse3)"
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as e:
        return f"the mfusepy binding cannot load libfuse: {e}"
    return None


@pytest.fixture(scope="module")
def gcs_fuse(tmp_path_factory):
    """A folder with Cloud Storage FUSE's semantics (a real FUSE mount of the stand-in)."""
    why = _fuse_unavailable()
    if why:
        if os.environ.get("JAX_MLP_REQUIRE_FUSE"):
            pytest.fail(f"FUSE is required here (JAX_MLP_REQUIRE_FUSE) but {why}")
        pytest.skip(why)
    base = tmp_path_factory.mktemp("gcsfuse")
    backing, mountpoint = base / "bucket", base / "gcs"
    backing.mkdir()
    mountpoint.mkdir()
    proc = subprocess.Popen([sys.executable, str(STAND_IN), str(backing), str(mountpoint)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 20
    while not os.path.ismount(mountpoint):
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            message = f"cannot mount the FUSE stand-in: {(proc.stderr.read() or '').strip()[-300:]}"
            if os.environ.get("JAX_MLP_REQUIRE_FUSE"):
                pytest.fail(message)
            pytest.skip(message)
        time.sleep(0.1)
    try:
        yield mountpoint
    finally:
        subprocess.run(["fusermount3", "-u", str(mountpoint)], check=False)
        proc.wait(timeout=20)


def test_the_stand_in_refuses_what_gcsfuse_refuses(gcs_fuse):
    """Without this, the tests below would prove nothing: a plain folder allows all of it."""
    root = gcs_fuse / "semantics"
    (root / "full").mkdir(parents=True)
    (root / "full" / "a.txt").write_text("a")
    with pytest.raises(OSError) as e:
        os.rename(root / "full", root / "renamed")
    assert e.value.errno == errno.EMFILE  # gcsfuse: "too many open files"
    (root / "empty").mkdir()
    os.rename(root / "empty", root / "empty2")  # an empty folder renames
    os.rename(root / "full" / "a.txt", root / "full" / "b.txt")  # a file renames
    os.chmod(root / "full" / "b.txt", 0o600)
    assert (root / "full" / "b.txt").stat().st_mode & 0o777 == 0o644  # chmod is ignored
    with pytest.raises(OSError) as e:
        os.link(root / "full" / "b.txt", root / "full" / "c.txt")
    assert e.value.errno == errno.EPERM
    with pytest.raises(OSError) as e:
        os.open(root, os.O_TMPFILE | os.O_RDWR, 0o600)
    assert e.value.errno == errno.EOPNOTSUPP


def _small_ingest(output: Path, data_dir: str, *extra: str):
    return run_cli("-m", "components.ingest", "--output", str(output), "--tfds-data-dir", data_dir,
                   "--train-split", SMALL_TRAIN, "--test-split", SMALL_TEST, "--records-per-shard", "200",
                   "--no-progress", *extra)


@pytest.mark.slow
def test_every_step_on_cloud_storage_fuse(gcs_fuse, mnist_data_dir, tmp_path):
    """ingest, train, evaluate, publish and predict with every output on the FUSE mount, then a rerun over each."""
    root = gcs_fuse / "steps"
    dataset, model, published = root / "dataset", root / "model", root / "published"
    _small_ingest(dataset, mnist_data_dir)
    assert json.loads((dataset / "_COMPLETE.json").read_text())["kind"] == "dataset"
    train = run_cli("-m", "components.train", "--dataset", str(dataset), "--model", str(model),
                    "--metrics", str(root / "train_metrics.json"), "--epochs", "2")
    assert "wrote" in train.stdout
    evaluate = run_cli("-m", "components.evaluate", "--model", str(model), "--dataset", str(dataset),
                       "--metrics", str(root / "test_metrics.json"), "--report", str(root / "report.html"),
                       "--blessing-threshold", "0.5", "--publish-uri", str(published))
    assert "blessed" in evaluate.stdout
    publish = run_cli("-m", "components.publish", "--model", str(model), "--publish-uri", str(published),
                      "--test-metrics", str(root / "test_metrics.json"))
    assert "LATEST moved" in publish.stdout
    np.save(tmp_path / "batch.npy", np.zeros((2, 28, 28, 1), np.uint8))
    predict = run_cli("-m", "components.predict", "--model", str(model), str(tmp_path / "batch.npy"))
    assert "batch.npy[1]" in predict.stdout
    # Reruns over complete artifacts replace them by file renames (a folder rename would fail here).
    first = json.loads((model / "_COMPLETE.json").read_text())
    _small_ingest(dataset, mnist_data_dir)
    run_cli("-m", "components.train", "--dataset", str(dataset), "--model", str(model), "--epochs", "1")
    second = json.loads((model / "_COMPLETE.json").read_text())
    assert len(json.loads((model / "history.json").read_text())) == 1
    assert set(second["files"]) == set(first["files"])
    assert not [p.name for p in root.iterdir() if p.name.startswith(".")]  # no staging or checkpoint folder left


@pytest.mark.slow
def test_a_killed_train_on_cloud_storage_fuse_leaves_nothing_complete_and_the_rerun_resumes(gcs_fuse, small_dataset):
    root = gcs_fuse / "killed"
    model = root / "model"
    args = [sys.executable, "-m", "components.train", "--dataset", str(small_dataset), "--model", str(model), "--epochs", "3"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in proc.stdout:
        if line.startswith("epoch 2/3"):
            proc.kill()
            break
    proc.wait()
    assert not (model / "_COMPLETE.json").exists()
    rerun = run_cli(*args[1:])
    assert "resuming from" in rerun.stdout and "(2 epoch(s) done)" in rerun.stdout
    assert (model / "_COMPLETE.json").exists()


@pytest.mark.slow
def test_whole_dag_with_its_pipeline_root_on_cloud_storage_fuse(gcs_fuse, mnist_data_dir):
    """``pipeline.py run`` with kfp.local's pipeline root on the mount: every artifact is written there."""
    result = run_cli("pipeline.py", "run", "--pipeline-root", str(gcs_fuse / "root"), "--tfds-data-dir", mnist_data_dir,
                     "--train-split", SMALL_TRAIN, "--test-split", SMALL_TEST, "--epochs", "2",
                     "--blessing-threshold", "0.5", "--publish-uri", str(gcs_fuse / "published"))
    assert "test accuracy" in result.stdout.splitlines()[-1]
    run = Path(re.search(r"^pipeline finished in [\d.]+ s: (.+)$", result.stdout, re.M).group(1))  # its summary
    assert run.parent == gcs_fuse / "root"
    for name in ("ingest/dataset", "train/model", "train/tensorboard"):  # <run>/<task>/<artifact>
        assert (run / name / "_COMPLETE.json").is_file()
    assert (gcs_fuse / "published" / "LATEST").is_file()
    assert list((gcs_fuse / "root").rglob("*.checkpoints")) == []  # this run's checkpoints removed once the model was written


def test_a_tuned_run_with_its_pipeline_root_on_cloud_storage_fuse(gcs_fuse, mnist_data_dir):
    """The tune steps' artifacts (a population's trials, best_hyperparameters, the report, the HParams runs) are
    whole-file writes that Cloud Storage FUSE takes, as the other steps' are."""
    result = run_cli("pipeline.py", "run", "--pipeline-root", str(gcs_fuse / "tuned"), "--tfds-data-dir", mnist_data_dir,
                     "--train-split", SMALL_TRAIN, "--test-split", SMALL_TEST, "--epochs", "2", "--trials", "4",
                     "--tune-batch-sizes", "32,64")  # the search seed's 4 draws take both batch sizes
    run = Path(re.search(r"^pipeline finished in [\d.]+ s: (.+)$", result.stdout, re.M).group(1))
    assert run.parent == gcs_fuse / "tuned"
    assert json.loads((run / "tune-choose" / "best_hyperparameters").read_text())["trials"] == 4
    assert (run / "tune-choose" / "tensorboard" / "_COMPLETE.json").is_file()
    assert "Tuning report" in (run / "tune-choose" / "report").read_text()
    populations = sorted(run.glob("for-loop-*-iteration-*/tune/trials_out"))  # kfp.local: one folder per iteration
    assert len(populations) == 2 and all(json.loads(p.read_text())["trials"] for p in populations)


# ---- Kubeflow's launcher, with the object store on gcp-storage-emulator or an S3 server

@pytest.fixture(scope="module")
def compiled_for_kubeflow(tmp_path_factory):
    import pipeline
    from commands.cli import compile_pipeline
    from platforms.options import ClusterOptions

    path = tmp_path_factory.mktemp("spec") / "pipeline.yaml"
    return compile_pipeline(path, "jax-mlp-pipeline:0.1.0", ClusterOptions(target="kfp", accelerator=None))


@pytest.fixture(params=["minio", "gs"])
def kubeflow_store(request):
    """A pipeline root in each store a Kubeflow install uses: its bundled S3-compatible store (the default root,
    ``minio://mlpipeline/v2/artifacts``: backend/src/v2/config/env.go) and Cloud Storage; the secrets of its namespace."""
    from conftest import S3_KEYS

    if request.param == "gs":
        client = request.getfixturevalue("gcs_emulator")
        if client.lookup_bucket("kfp") is None:
            client.create_bucket("kfp")
        return "gs://kfp/root", {}
    request.getfixturevalue("s3_server")
    return "minio://mlpipeline/v2/artifacts", {"mlpipeline-minio-artifact": S3_KEYS}


@pytest.mark.slow
def test_kubeflow_launcher_retry_after_sigkill_resumes_from_durable_checkpoints(compiled_for_kubeflow, kubeflow_store,
                                                                              mnist_data_dir):
    """A train pod killed at epoch 2 loses its scratch; the retry, on a fresh one, resumes bit for bit from the
    checkpoints beside its Model artifact's URI (the same URI for every retry), with no checkpoint_root set."""
    from kfp_launcher_stand_in import LauncherStandIn, StepFailed, all_tasks

    root, secrets = kubeflow_store
    arguments = {"tfds_data_dir": mnist_data_dir, "train_split": SMALL_TRAIN, "test_split": SMALL_TEST,
                 "records_per_shard": 200, "epochs": 3, "blessing_threshold": 0.5, "publish_uri": f"{root}/published"}
    assert "checkpoint_root" not in arguments
    unbroken = LauncherStandIn(compiled_for_kubeflow, root, "job-unbroken", arguments, secrets)
    ingest = unbroken.run_task("ingest")
    assert ingest.artifacts["dataset"].startswith(f"{root}/jax-mlp-pipeline/job-unbroken/ingest/")
    assert storage.list_names(ingest.artifacts["dataset"])[0] == "_COMPLETE.json"
    untuned = unbroken.run_task("untuned")  # trials 0: the no-tuning branch gives train "{}" (dsl.OneOf)
    assert untuned.parameters["Output"] == "{}"
    reference = unbroken.run_task("train", {"ingest": ingest, "untuned": untuned})
    # Only the artifact paths reached the store: nothing the step needs was kept beside them.
    assert sorted({name.split("/")[0] for name in reference.uploaded}) == ["metrics", "model", "tensorboard"]

    broken = LauncherStandIn(compiled_for_kubeflow, root, "job-preempted", arguments, secrets)
    with pytest.raises(StepFailed) as killed:
        broken.run_task("train", {"ingest": ingest, "untuned": untuned}, kill_when=lambda line: line.startswith("epoch 2/3"))
    assert killed.value.returncode == -9
    assert not broken.scratch_dirs[-1].exists()  # the pod and its emptyDir are gone
    task_root = broken.task_root("train")
    assert storage.list_names(f"{task_root}/model") == []  # a killed attempt uploads nothing
    checkpoints = storage.list_names(f"{task_root}/.model.checkpoints")
    assert [n.split("/", 1)[1] for n in checkpoints] == [
        f"ckpt-00000{e}/{f}" for e in (1, 2) for f in ("params.npz", "state.json")]
    if secrets:  # the step wrote them with the keys the pipeline wired from the secret, not the launcher's
        assert broken.environments[-1]["AWS_ACCESS_KEY_ID"] == secrets["mlpipeline-minio-artifact"]["accesskey"]

    retry = broken.run_task("train", {"ingest": ingest, "untuned": untuned})  # same run, same task: Argo's retry of the executor pod
    assert f"resuming from {task_root}/.model.checkpoints/run-" in retry.log
    assert "(2 epoch(s) done)" in retry.log and "epoch 1/3" not in retry.log
    assert retry.artifacts["model"] == f"{task_root}/model"
    assert (storage.read_bytes(f"{retry.artifacts['model']}/params.npz")
            == storage.read_bytes(f"{reference.artifacts['model']}/params.npz"))
    assert storage.list_names(f"{task_root}/.model.checkpoints") == []  # this run's checkpoints deleted

    evaluate = broken.run_task("evaluate", {"ingest": ingest, "train": retry})
    assert evaluate.parameters["blessed"] is True and evaluate.parameters["test_accuracy"] > 0.5

    # publish reads evaluate's numbers from its Metrics artifact's metadata, which reaches it through MLMD
    # (launcher_v2.go -> RecordArtifact -> toRuntimeArtifact): numbers as protojson writes them, and two custom
    # properties of the launcher's.
    metrics = evaluate.metadata["metrics"]
    assert metrics["display_name"] == "metrics" and metrics["test_accuracy"] == evaluate.parameters["test_accuracy"]
    upstream = {"ingest": ingest, "train": retry, "evaluate": evaluate, "validate": broken.run_task("validate", {"ingest": ingest})}
    published = broken.run_task("publish", upstream)
    assert f"test accuracy {metrics['test_accuracy']:.4f}, test loss {metrics['test_loss']:.4f}" in published.log
    assert "from the evaluate step's metrics" in published.log
    version = published.parameters["Output"]
    assert storage.read_bytes(f"{arguments['publish_uri']}/LATEST").decode().strip() == version


def test_artifact_metadata_comes_back_from_mlmd_as_the_backend_converts_it():
    """What a later step reads of an earlier step's artifact metadata on Kubeflow: ``mlmd_round_trip`` mirrors
    ``metadata/converter.go`` and ``RecordArtifact`` (kubeflow/pipelines 2.17.0)."""
    from components.publish import metrics_from_artifact
    from kfp_launcher_stand_in import mlmd_round_trip

    from artifacts.schemas import TEST_METRICS, validate

    logged = {"test_accuracy": 0.9, "test_loss": 0.25, "macro_f1": 0.89, **{f"f1_class_{c}": 0.9 for c in range(10)}}
    back = mlmd_round_trip(logged, "metrics", "minio://mlpipeline/v2/artifacts")
    assert back["display_name"] == "metrics" and json.loads(back["store_session_info"])["Provider"] == "minio"
    validate(dict(back), TEST_METRICS, "the evaluate step's metrics")  # what components.track checks
    tested = metrics_from_artifact(back, "the evaluate step's metrics")  # what components.publish reads
    assert (tested.test_accuracy, tested.test_loss, tested.num_classes) == (0.9, 0.25, 10)
    back = mlmd_round_trip({"n": 10.0, "x": 0.5, "ok": True, "spans": [1.0, 2], "_kfp_workspace": True}, "d", "gs://b")
    assert back == {"n": 10, "x": 0.5, "ok": 1, "spans": {"list": [1, 2]}, "display_name": "d",
                    "store_session_info": '{"Provider":"gs","Params":{}}'}
    # as protojson writes them and json.loads reads them: an integral double is an int, a bool is gone
    assert [type(back[k]) for k in ("n", "x", "ok")] == [int, float, int] and type(back["spans"]["list"][0]) is int
    with pytest.raises(ValueError, match="unsupported value type"):
        mlmd_round_trip({"champion": None}, "metrics", "gs://b")  # the launcher fails the step's upload


def test_without_the_secret_the_train_step_has_no_keys_for_the_store(compiled_for_kubeflow, tmp_path, s3_server):
    """The launcher's keys are not the step's: only the secret the compiled spec maps reaches its environment."""
    from kfp_launcher_stand_in import LauncherStandIn

    launcher = LauncherStandIn(compiled_for_kubeflow, "minio://mlpipeline/v2/artifacts", "job-1")
    task = all_tasks(launcher.spec)["train"]
    component = launcher.spec["components"][task["componentRef"]["name"]]
    executor = launcher.spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]
    assert "AWS_ACCESS_KEY_ID" not in launcher._environment(component, executor)
    launcher.secrets = {"mlpipeline-minio-artifact": {"accesskey": "a", "secretkey": "s"}}
    env = launcher._environment(component, executor)
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == ("a", "s")
    ingest = launcher.spec["components"][all_tasks(launcher.spec)["ingest"]["componentRef"]["name"]]
    # every step may read or write the store itself (a source, checkpoints, the champion): each gets the keys
    assert launcher._environment(ingest, executor)["AWS_ACCESS_KEY_ID"] == "a"


def test_kubeflow_launcher_gives_a_placeholder_only_as_a_whole_value(compiled_for_kubeflow):
    """What resolve.go substitutes (seven names, whole values) and nothing else; the spec asks for nothing more."""
    from kfp_launcher_stand_in import PLACEHOLDERS, LauncherStandIn, TaskResult

    launcher = LauncherStandIn(compiled_for_kubeflow, "gs://kfp/root", "job-1")
    task = all_tasks(launcher.spec)["train"]
    component = launcher.spec["components"][task["componentRef"]["name"]]
    untuned = TaskResult(artifacts={}, parameters={"Output": "{}"}, log="")
    values = launcher._parameters("train", task, component, {"untuned": untuned})
    assert values["best_hyperparameters"] == "{}"  # through the dsl.OneOf of the tuning branches
    assert values["run_id"] == "job-1" and "pipeline_root" not in values
    assert launcher._substitute("{{$.pipeline_root}}", "train") == "{{$.pipeline_root}}"  # never substituted
    assert launcher._substitute("{{$.pipeline_job_uuid}}/x", "train") == "{{$.pipeline_job_uuid}}/x"  # not whole
    assert all(launcher._substitute(p, "train") != p for p in PLACEHOLDERS)
    # Every placeholder the compiled Kubeflow spec passes is one the backend fills in, as a whole value.
    constants = [source["runtimeValue"]["constant"] for t in all_tasks(launcher.spec).values()
                 for source in t.get("inputs", {}).get("parameters", {}).values() if "runtimeValue" in source]
    assert [c for c in constants if isinstance(c, str) and "{{" in c and c not in PLACEHOLDERS] == []
    assert "pipeline_root" not in Path(compiled_for_kubeflow).read_text()


@pytest.mark.slow
def test_a_multi_host_train_step_writes_once_on_cloud_storage_fuse(gcs_fuse, small_dataset):
    """A Vertex custom job of 2 replicas: both processes are handed the same /gcs model and metrics paths and
    checkpoint beside the model on the mount; process 0 alone writes, through marker commits, no folder rename."""
    from test_multiprocess import _train_as

    root = gcs_fuse / "multihost"
    model, metrics = root / "model", root / "train_metrics.json"
    results = _train_as(2, small_dataset, model, extra=["--metrics", str(metrics)])
    assert f"wrote {model}" in results[0].stdout and "process 1 done" in results[1].stdout
    assert json.loads((model / "_COMPLETE.json").read_text())["kind"] == "model"
    assert len(json.loads(metrics.read_text())["history"]) == 2
    assert sorted(p.name for p in root.iterdir()) == ["model", "train_metrics.json"]  # checkpoints removed
