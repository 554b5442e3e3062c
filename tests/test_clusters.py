"""Compiling for Kubeflow and Vertex AI, submitting and scheduling.

No cluster runs here. Kubeflow calls go to RecordingKfpApi, a stand-in API
server on loopback; Vertex AI objects are built with anonymous credentials and
inspected, with no network call.
"""

from datetime import datetime, timezone

import pytest
import yaml

import pipeline
from commands.cli import compile_pipeline
from platforms import cron
from platforms.vertex import pipelines as vertex
from platforms.options import ClusterOptions
from mlp_core.errors import UserError
from conftest import run_cli
from kfp_api_stand_in import RecordingKfpApi

IMAGE = "registry.example.com/jax-mlp-pipeline:1.2.3-cuda"


def _compile(tmp_path, *flags: str) -> dict:
    out = tmp_path / "p.yaml"
    run_cli("pipeline.py", "compile", "--output", str(out), "--image", IMAGE, *flags)
    spec, *platform = yaml.safe_load_all(out.read_text())  # kfp-kubernetes settings: a second document
    for doc in platform:
        spec.update(doc)
    return spec


def _sent(pipeline_spec: dict) -> dict:
    """The PipelineSpec of a request: kfp.Client sends {pipeline_spec, platform_spec} when kfp-kubernetes adds one."""
    return pipeline_spec.get("pipeline_spec", pipeline_spec)


def _executors(spec: dict) -> dict:
    return {name.removeprefix("exec-"): e["container"] for name, e in spec["deploymentSpec"]["executors"].items()}


def _tasks(spec: dict) -> dict:
    tasks = dict(spec["root"]["dag"]["tasks"])
    for comp in spec["components"].values():  # tasks inside dsl.If sub-DAGs
        tasks.update(comp.get("dag", {}).get("tasks", {}))
    return tasks


@pytest.mark.parametrize(("target", "accelerator"), [("kfp", "nvidia.com/gpu"), ("vertex", "NVIDIA_L4")])
def test_gpu_on_train_only_resources_everywhere(tmp_path, target, accelerator):
    executors = _executors(_compile(tmp_path, "--target", target))
    assert executors["train"]["resources"]["accelerator"]["resourceType"] == accelerator
    assert executors["train"]["resources"]["accelerator"]["resourceCount"] == "1"
    for step in ("ingest", "evaluate", "publish"):
        assert "accelerator" not in executors[step]["resources"]
    for step, container in executors.items():
        assert container["image"] == IMAGE
        assert container["resources"]["resourceCpuRequest"] and container["resources"]["resourceMemoryRequest"], step
    assert executors["train"]["resources"]["resourceMemoryRequest"] == "4Gi"


def test_retries_and_caching_in_the_yaml(tmp_path):
    tasks = _tasks(_compile(tmp_path))
    assert tasks["train"]["retryPolicy"]["maxRetryCount"] == 3 and tasks["train"]["retryPolicy"]["backoffFactor"] == 2.0
    assert tasks["ingest"]["retryPolicy"]["backoffDuration"] == "30s"
    assert "retryPolicy" not in tasks["evaluate"]
    cached = {name for name, t in tasks.items() if t.get("cachingOptions", {}).get("enableCache")}
    # No step is cached: ingest (a source), new_data, validate and evaluate (the champion) and publish (LATEST) read
    # or write state that is not an input, so a hit would serve stale truth; train's key holds the run id, so a hit
    # could never happen (cacheutils/cache.go); new_data is what skips work when nothing is new.
    assert cached == set()
    no_cache = _tasks(_compile(tmp_path, "--no-cache"))
    assert not any(t.get("cachingOptions", {}).get("enableCache") for t in no_cache.values())


@pytest.mark.parametrize("target", ["kfp", "vertex"])
def test_placeholders_are_whole_parameter_values(tmp_path, target):
    """The Kubeflow backend substitutes a placeholder only as a parameter's whole value (driver/resolve.go)."""
    spec = _compile(tmp_path, "--target", target)
    constants = {(name, key): p["runtimeValue"]["constant"] for name, t in _tasks(spec).items()
                 for key, p in t.get("inputs", {}).get("parameters", {}).items() if "runtimeValue" in p}
    with_placeholders = {k: v for k, v in constants.items() if isinstance(v, str) and "{{$" in v}
    assert with_placeholders == {
        ("train", "run_id"): "{{$.pipeline_job_uuid}}",
        ("publish", "run_id"): "{{$.pipeline_job_uuid}}",
    }
    assert constants[("train", "require_gpu")] is True


def test_gpu_request_with_the_cpu_image_is_refused_and_an_unknown_image_warned(tmp_path):
    out = str(tmp_path / "p.yaml")
    refused = run_cli("pipeline.py", "compile", "--output", out, "--image", "reg/jax-mlp-pipeline:1.2.3", check=False)
    assert refused.returncode == 2 and not (tmp_path / "p.yaml").exists()
    assert refused.stderr.strip() == (
        "error: the train step requests a GPU (nvidia.com/gpu) but reg/jax-mlp-pipeline:1.2.3 is the project's CPU "
        "image: use reg/jax-mlp-pipeline:1.2.3-cuda (docker build --build-arg ACCELERATOR=cuda), or --accelerator none "
        "to train on CPUs")
    cpu = run_cli("pipeline.py", "compile", "--output", out, "--image", "reg/jax-mlp-pipeline:1.2.3", "--accelerator", "none")
    assert cpu.stderr == ""
    assert _tasks(next(yaml.safe_load_all((tmp_path / "p.yaml").read_text())))["train"]["inputs"]["parameters"]["require_gpu"][
        "runtimeValue"]["constant"] is False
    other = run_cli("pipeline.py", "compile", "--output", out, "--image", "reg/team-trainer:7")
    assert "cannot tell from 'reg/team-trainer:7' whether it has JAX with CUDA" in other.stderr
    default = run_cli("pipeline.py", "compile", "--output", out).stdout
    assert "image jax-mlp-pipeline:0.1.0-cuda" in default
    default_cpu = run_cli("pipeline.py", "compile", "--output", out, "--accelerator", "none").stdout
    assert "image jax-mlp-pipeline:0.1.0)" in default_cpu


def test_local_runs_do_not_retry(tmp_path):
    """kfp.local honours retry policies: a local run must fail at once, not after minutes of backoff."""
    from kfp import compiler

    out = tmp_path / "local.yaml"
    compiler.Compiler().compile(pipeline.build_pipeline(IMAGE), str(out))
    assert not any("retryPolicy" in t for t in _tasks(yaml.safe_load(out.read_text())).values())


def test_node_selector_and_toleration_through_kfp_kubernetes(tmp_path):
    spec = _compile(tmp_path, "--node-selector", "cloud.google.com/gke-accelerator=nvidia-l4",
                    "--toleration", "nvidia.com/gpu:NoSchedule")
    train = spec["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]
    assert train["nodeSelector"]["labels"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert train["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_cpu_only_compile(tmp_path):
    executors = _executors(_compile(tmp_path, "--accelerator", "none"))
    assert "accelerator" not in executors["train"]["resources"]


def test_vertex_multihost_train_is_a_custom_job_of_pool_0_and_pool_1(tmp_path):
    """--replicas 3: google-cloud-pipeline-components' custom job, 1 primary + 2 workers, our image in both pools."""
    import json

    spec = _compile(tmp_path, "--target", "vertex", "--replicas", "3")
    train = spec["components"]["comp-train"]["inputDefinitions"]["parameters"]
    pools = train["worker_pool_specs"]["defaultValue"]
    pools = json.loads(pools) if isinstance(pools, str) else pools
    assert [p["replica_count"] for p in pools] == [1, 2]
    for pool in pools:
        assert pool["container_spec"]["image_uri"] == IMAGE
        assert pool["machine_spec"] == {"machine_type": "g2-standard-8", "accelerator_type": "NVIDIA_L4",
                                        "accelerator_count": 1}
    assert "custom_job.launcher" in " ".join(_executors(spec)["train"]["command"])
    # The other steps are unchanged: pipeline tasks with their own resources.
    assert _executors(spec)["evaluate"]["image"] == IMAGE


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["compile", "--target", "vertex", "--accelerator", "NVIDIA_FOO"], "unknown accelerator 'NVIDIA_FOO' for vertex; known: NVIDIA_TESLA_T4"),
        (["compile", "--accelerator", "nvidia.com/gpuu"], "unknown accelerator 'nvidia.com/gpuu' for kfp; known: nvidia.com/gpu"),
        (["compile", "--image", "reg/img:latest"], "has the tag :latest"),
        (["compile", "--image", "reg/img"], "has no tag"),
        (["schedule", "--host", "http://127.0.0.1:9", "--cron", "0 3 * *"], "cron must have five fields"),
        (["schedule", "--host", "http://127.0.0.1:9", "--cron", "0 25 * * *"], "invalid cron expression '0 25 * * *'"),
        (["submit", "--host", "http://127.0.0.1:9", "--param", "learning_rate=0.1"], "the pipeline has no parameter 'learning_rate'"),
        (["submit", "--host", "http://127.0.0.1:9", "--param", "epochs=three"], "--param epochs needs a int, got 'three'"),
        (["submit", "--vertex", "--project", "p", "--region", "us-central1", "--pipeline-root", "/tmp/root"],
         "Vertex AI needs a gs:// pipeline root, got '/tmp/root'"),
        (["submit", "--host", "http://127.0.0.1:9"], "failed at http://127.0.0.1:9: cannot reach it (connection refused"),
        (["compile", "--replicas", "2", "--machine-type", "g2-standard-8"], "--machine-type is the machine of each replica"),
        (["compile", "--target", "vertex", "--machine-type", "g2-standard-8"], "--machine-type is the machine of each replica"),
        (["compile", "--trainer-runtime", "jax-distributed"], "--trainer-runtime is the Kubeflow Trainer runtime"),
        (["compile", "--replicas", "2", "--node-selector", "pool=gpu"], "a Kubeflow Trainer job's pods are placed by its runtime"),
        (["submit", "--host", "http://127.0.0.1:9", "--replicas", "2", "--pipeline-root", "minio://mlpipeline/v2"],
         "give --pipeline-root gs://BUCKET/PATH (got minio://mlpipeline/v2)"),
        (["compile", "--target", "vertex", "--replicas", "0"], "replicas must be a positive integer, got 0"),
    ],
)
def test_bad_input_is_one_line_and_non_zero(tmp_path, flags, message):
    if flags[0] == "compile":
        flags = [*flags, "--output", str(tmp_path / "p.yaml")]
    result = run_cli("pipeline.py", *flags, check=False)
    assert result.returncode == 2, result.stderr[-1500:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, last
    assert not (tmp_path / "p.yaml").exists()


def test_mutable_image_allowed_when_asked(tmp_path):
    run_cli("pipeline.py", "compile", "--image", "reg/img:latest", "--allow-mutable-image", "--output", str(tmp_path / "p.yaml"))
    assert (tmp_path / "p.yaml").is_file()


def test_submit_to_kubeflow_sends_spec_parameters_experiment_and_root():
    with RecordingKfpApi() as api:
        out = run_cli("pipeline.py", "submit", "--host", api.url, "--experiment", "nightly", "--image", IMAGE,
                      "--param", "epochs=3", "--param", "shuffle=false", "--pipeline-root", "gs://bucket/root").stdout
        [experiment] = api.decoded("POST", "/apis/v2beta1/experiments")
        [run] = api.decoded("POST", "/apis/v2beta1/runs")
    assert experiment.display_name == "nightly"
    assert run.experiment_id == "exp-1"
    assert _sent(run.pipeline_spec)["pipelineInfo"]["name"] == "jax-mlp-pipeline"
    assert {e["container"]["image"] for e in _sent(run.pipeline_spec)["deploymentSpec"]["executors"].values()} == {IMAGE}
    assert run.runtime_config.parameters == {"epochs": 3, "shuffle": False}
    assert run.runtime_config.pipeline_root == "gs://bucket/root"
    assert out.strip().splitlines()[-1] == f"run run-2: {api.url}/#/runs/details/run-2"


def test_schedule_on_kubeflow_then_list_pause_delete():
    with RecordingKfpApi() as api:
        out = run_cli("pipeline.py", "schedule", "--host", api.url, "--cron", "0 3 * * 1", "--image", IMAGE,
                      "--param", "epochs=10", "--experiment", "weekly").stdout
        [recurring] = api.decoded("POST", "/apis/v2beta1/recurringruns")
        listed = run_cli("pipeline.py", "schedule", "--host", api.url, "--list").stdout
        run_cli("pipeline.py", "schedule", "--host", api.url, "--pause", recurring_id := "rr-2")
        paused = api.recurring_runs[recurring_id]["status"]
        run_cli("pipeline.py", "schedule", "--host", api.url, "--delete", recurring_id)
        remaining = dict(api.recurring_runs)
    assert "'0 3 * * 1' is sent as '0 0 3 * * 1'" in out
    assert "next runs: " in out and out.count("T03:00:00") == 3
    assert recurring.trigger.cron_schedule.cron == "0 0 3 * * 1"
    assert int(recurring.max_concurrency) == 1 and recurring.no_catchup is True
    assert recurring.display_name == "jax-mlp-pipeline-retrain" and recurring.experiment_id == "exp-1"
    assert recurring.runtime_config.parameters == {"epochs": 10}
    assert _sent(recurring.pipeline_spec)["pipelineInfo"]["name"] == "jax-mlp-pipeline"
    assert "rr-2  jax-mlp-pipeline-retrain  ENABLED  0 0 3 * * 1" in listed
    assert paused == "DISABLED" and remaining == {}


def test_vertex_job_and_schedule_objects(tmp_path):
    from google.auth.credentials import AnonymousCredentials

    package = compile_pipeline(tmp_path / "p.yaml", IMAGE, ClusterOptions(target="vertex", accelerator="NVIDIA_H100_80GB"))
    job = vertex.build_job(package, "my-project", "us-central1", "gs://bucket/root", {"epochs": 3, "publish_uri": "gs://bucket/models"},
                           enable_caching=False, credentials=AnonymousCredentials())
    config = job.runtime_config
    assert config.gcs_output_directory == "gs://bucket/root"
    assert config.parameter_values["epochs"] == 3 and config.parameter_values["publish_uri"] == "gs://bucket/models"
    resources = dict(job.pipeline_spec["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"])
    assert dict(resources["accelerator"])["resourceType"] == "NVIDIA_H100_80GB"
    assert job.project == "my-project" and job.location == "us-central1"
    schedule = vertex.build_schedule(job, "retrain", credentials=AnonymousCredentials())
    request = schedule._gca_resource.create_pipeline_job_request
    assert schedule._gca_resource.display_name == "jax-mlp-pipeline-retrain"
    assert request.pipeline_job.runtime_config.gcs_output_directory == "gs://bucket/root"
    assert request.parent == "projects/my-project/locations/us-central1"


def test_vertex_without_aiplatform_says_how_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_aiplatform(name, globals=None, locals=None, fromlist=(), level=0):
        if name == "google.cloud" and fromlist and "aiplatform" in fromlist:
            raise ImportError("No module named 'google.cloud.aiplatform'")
        return real_import(name, globals, locals, fromlist, level)

    monkeypatch.setattr(builtins, "__import__", no_aiplatform)
    with pytest.raises(UserError, match=r"pip install 'jax-mlp-pipeline\[vertex\]'"):
        vertex._aiplatform()


def test_cron_validation_and_next_runs():
    start = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
    assert [t.isoformat() for t in cron.next_runs("0 3 * * 1", start=start)] == [
        "2026-11-30T03:00:00+00:00", "2026-12-07T03:00:00+00:00", "2026-12-14T03:00:00+00:00"]
    berlin = cron.next_runs("TZ=Europe/Berlin 0 3 * * *", count=1, start=start)[0]
    assert berlin.isoformat() == "2026-11-27T03:00:00+01:00"
    assert cron.to_kfp("*/15 * * * *") == "0 */15 * * * *"
    with pytest.raises(UserError, match="unknown time zone"):
        cron.validate("TZ=Mars/Olympus 0 3 * * *")
    with pytest.raises(UserError, match="Kubeflow recurring runs take no TZ="):
        cron.to_kfp("TZ=Europe/Berlin 0 3 * * *")


STEP_TASKS = ("ingest", "train", "evaluate")


def _caching(spec: dict) -> dict:
    """Each step's caching as a request carries it (the submitting client may rewrite it)."""
    return {name: bool(t.get("cachingOptions", {}).get("enableCache")) for name, t in _tasks(spec).items()
            if name in STEP_TASKS}


@pytest.mark.parametrize(("flags", "cached"), [
    ([], set()),  # the compiled choice: no step cached
    (["--no-cache"], set()),
    (["--cache"], None),  # asked for: every task of every DAG, the steps inside the new-data condition too
])
def test_submit_and_schedule_send_the_compiled_caching_unless_told(flags, cached):
    """kfp.Client(enable_caching=True) would rewrite the root DAG's tasks only (kfp/client/client.py
    _override_caching_options); --cache and --no-cache set every task's in the package instead, None keeps it."""
    with RecordingKfpApi() as api:
        run_cli("pipeline.py", "submit", "--host", api.url, "--image", IMAGE, *flags)
        run_cli("pipeline.py", "schedule", "--host", api.url, "--image", IMAGE, "--cron", "0 3 * * 1", *flags)
        [run] = api.decoded("POST", "/apis/v2beta1/runs")
        [recurring] = api.decoded("POST", "/apis/v2beta1/recurringruns")
    for spec in (_sent(run.pipeline_spec), _sent(recurring.pipeline_spec)):
        if cached is None:
            assert all(t["cachingOptions"]["enableCache"] for t in _tasks(spec).values())
            assert set(STEP_TASKS) <= set(_tasks(spec))  # the steps inside the condition's DAG among them
        else:
            assert {name for name, on in _caching(spec).items() if on} == cached


def test_vertex_submit_and_schedule_send_the_compiled_caching(gcs_emulator):
    """aiplatform.PipelineJob(enable_caching=True) rewrites every task's caching (pipeline_jobs.py); None keeps it."""
    import os
    from pathlib import Path

    from vertex_experiments_stand_in import VertexExperimentsStandIn

    if not gcs_emulator.bucket("stand-in-bucket").exists():
        gcs_emulator.create_bucket("stand-in-bucket")
    bucket = gcs_emulator.get_bucket("stand-in-bucket")
    site = str(Path(__file__).parent / "vertex_stand_in_site")
    with VertexExperimentsStandIn() as vertex_api:
        env = {"JAX_MLP_VERTEX_ENDPOINT": vertex_api.url, "STORAGE_EMULATOR_HOST": os.environ["STORAGE_EMULATOR_HOST"],
               "PYTHONPATH": os.pathsep.join(filter(None, [site, os.environ.get("PYTHONPATH")])),
               "JAX_MLP_STAND_IN_PROJECT_NUMBER": str(bucket.project_number)}
        where = ["--vertex", "--project", "stand-in-project", "--region", "us-central1", "--pipeline-root",
                 "gs://stand-in-bucket/root", "--accelerator", "none"]
        run_cli("pipeline.py", "submit", *where, env=env)
        run_cli("pipeline.py", "schedule", *where, "--cron", "0 3 * * 1", env=env)
        posts = [r for r in vertex_api.requests if r["method"] == "POST"]
    job = next(r["body"] for r in posts if r["path"].endswith("/pipelineJobs"))
    schedule = next(r["body"] for r in posts if r["path"].endswith("/schedules"))
    for spec in (job["pipelineSpec"], schedule["createPipelineJobRequest"]["pipelineJob"]["pipelineSpec"]):
        assert {name for name, on in _caching(spec).items() if on} == set()


@pytest.mark.parametrize("command", [["submit"], ["schedule", "--cron", "0 3 * * *"]])
def test_a_malformed_pipeline_root_is_refused_before_any_credentials_are_looked_up(command):
    r = run_cli("pipeline.py", *command, "--vertex", "--project", "my-proj", "--region", "us-central1",
                "--pipeline-root", "gs:///root", check=False, env={"GOOGLE_APPLICATION_CREDENTIALS": "/nonexistent"})
    assert r.returncode == 2 and r.stderr == "error: --pipeline-root: 'gs:///root' names no bucket (gs://BUCKET/PATH)\n"
