"""Kubeflow Trainer: the train step as a TrainJob of N JAX processes, started and watched from the kfp step.

``compile --target kfp --replicas N`` makes the train step create a ``TrainJob`` (``trainer.kubeflow.org/v1alpha1``,
runtime ``jax-distributed``) running ``python -m components.train`` in N pods, wait for it and copy the model the pods
staged beside the step's Model URI (``artifacts.remote``) into the step's output. A retry finds its TrainJob by name.
Why a TrainJob, and how retries resume: docs/design.md, "Kubeflow Trainer" and "More than one process".
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from pathlib import Path

from typing import TYPE_CHECKING

from artifacts.bounded_http import HttpError, bound_pool
from mlp_core.errors import UserError

if TYPE_CHECKING:  # annotations only: trainer_job reads the compile options it is given
    from platforms.options import ClusterOptions, StepPolicy

GROUP = "trainer.kubeflow.org"
VERSION = "v1alpha1"
PLURAL = "trainjobs"
DEFAULT_RUNTIME = "jax-distributed"
MANAGED_BY = "jax-mlp-pipeline"
SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
# The artifact store's keys: the secret and its keys Kubeflow's launcher reads.
ARTIFACT_STORE_SECRET = "mlpipeline-minio-artifact"
SECRET_KEYS = {"AWS_ACCESS_KEY_ID": "accesskey", "AWS_SECRET_ACCESS_KEY": "secretkey"}
# Where an S3-compatible store is, when the step was told (artifacts.storage): the pods are told the same.
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION")


class TrainJobFailed(RuntimeError):
    """The TrainJob ended Failed (or could not be started); the step fails with this one line."""


def job_spec(nodes: int, image: str, runtime: str = DEFAULT_RUNTIME, resources_per_node: "dict | None" = None) -> str:
    """The train step's ``trainer_job`` value (compile time): what its TrainJob needs beside the step's parameters."""
    return json.dumps({"nodes": nodes, "image": image, "runtime": runtime, "resources_per_node": resources_per_node or {}},
                      sort_keys=True)


def job_name(run_id: str) -> str:
    """One TrainJob per pipeline run: a DNS-1035 label (<= 63 chars) derived from the run id.

    Whatever the run id holds, the name is 30 characters of ``[a-z0-9-]``, a letter first. The JAX plugin's
    coordinator is ``{name}-node-0-0.{name}`` (Kubeflow Trainer's JAX runtime plugin): a
    headless Service named ``{name}``, and Service names are DNS-1035 labels (Kubernetes "Object Names and IDs"),
    and a pod host name ``{name}-node-0-0``, a DNS-1123 label of at most 63 characters
    (tests/test_trust_clusters.py checks both for generated run ids).
    """
    return f"jax-mlp-train-{hashlib.sha256(run_id.encode('utf-8', 'surrogatepass')).hexdigest()[:16]}"


def pod_env(environ: "dict | None" = None, endpoint: "str | None" = None) -> list[dict]:
    """The pods' variables for the object store: keys from the artifact store's secret, endpoint as the step has it
    (``endpoint``: the bundled store's, when the step's artifacts are there and the step's variables name none)."""
    environ = dict(os.environ if environ is None else environ)
    if endpoint and not (environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL")):
        environ["AWS_ENDPOINT_URL_S3"] = endpoint
    env = [{"name": name, "valueFrom": {"secretKeyRef": {"name": ARTIFACT_STORE_SECRET, "key": key, "optional": True}}}
           for name, key in SECRET_KEYS.items()]
    return env + [{"name": name, "value": environ[name]} for name in ENDPOINT_VARIABLES if environ.get(name)]


def manifest(name: str, spec: dict, args: list[str], run_id: str, env: "list[dict] | None" = None) -> dict:
    """The TrainJob resource: ``spec`` from ``job_spec``, ``args`` for ``python3 -m components.train``."""
    trainer = {"image": spec["image"], "command": ["python3", "-m", "components.train"], "args": args,
               "numNodes": spec["nodes"]}
    if env:
        trainer["env"] = env
    if spec.get("resources_per_node"):
        trainer["resourcesPerNode"] = spec["resources_per_node"]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainJob",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": MANAGED_BY},
                     "annotations": {f"{MANAGED_BY}/run-id": run_id}},
        "spec": {"runtimeRef": {"apiGroup": GROUP, "kind": "ClusterTrainingRuntime", "name": spec["runtime"]},
                 "trainer": trainer},
    }


def _api():
    """``CustomObjectsApi`` and the namespace: in a pod, its service account's; elsewhere, the kubeconfig's."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
        namespace = Path(SERVICE_ACCOUNT_NAMESPACE).read_text().strip()
    except config.ConfigException:
        try:
            # KUBECONFIG as it is now (the client reads the variable once, when it is imported).
            kubeconfig = os.environ.get("KUBECONFIG") or None
            config.load_kube_config(config_file=kubeconfig)
            _, context = config.list_kube_config_contexts(config_file=kubeconfig)
        except (config.ConfigException, OSError) as e:
            raise TrainJobFailed(f"no Kubernetes API to create the TrainJob in: not in a pod, and no kubeconfig ({e})") from None
        namespace = (context.get("context") or {}).get("namespace") or "default"
    api_client = client.ApiClient()
    bound_pool(api_client.rest_client.pool_manager)  # every answer read bounded (artifacts.bounded_http)
    return client.CustomObjectsApi(api_client), namespace


def _api_error(e) -> str:
    """The Kubernetes API's message, as one line without credentials (``artifacts.redaction``)."""
    from artifacts.redaction import one_line

    try:
        return one_line(json.loads(e.body).get("message") or e.reason)
    except (TypeError, ValueError, AttributeError):
        return one_line(e.reason)


def _condition(job: dict, kind: str) -> "dict | None":
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind and c.get("status") == "True":
            return c
    return None


def run(body: dict, poll_seconds: float = 10, log=functools.partial(print, flush=True)) -> dict:
    """Create the TrainJob ``body`` (or take over this run's) and wait until it completes; returns it."""
    try:
        return _run(body, poll_seconds, log)
    except HttpError as e:  # an answer too large or too late (artifacts.bounded_http)
        raise TrainJobFailed(f"TrainJob {body['metadata']['name']}: {e}") from None


def _run(body: dict, poll_seconds: float, log) -> dict:
    from kubernetes.client.exceptions import ApiException

    api, namespace = _api()
    name = body["metadata"]["name"]
    where = dict(group=GROUP, version=VERSION, namespace=namespace, plural=PLURAL)
    try:
        api.create_namespaced_custom_object(body=body, **where)
        log(f"created TrainJob {namespace}/{name}: {body['spec']['trainer']['numNodes']} node(s), "
            f"runtime {body['spec']['runtimeRef']['name']}, image {body['spec']['trainer']['image']}")
    except ApiException as e:
        if e.status != 409:
            raise TrainJobFailed(f"cannot create TrainJob {namespace}/{name}: {e.status} {_api_error(e)}") from None
        existing = api.get_namespaced_custom_object(name=name, **where)
        labels = existing.get("metadata", {}).get("labels") or {}
        if labels.get("app.kubernetes.io/managed-by") != MANAGED_BY:
            raise TrainJobFailed(f"TrainJob {namespace}/{name} exists and is not this pipeline's; it is left alone") from None
        if _condition(existing, "Failed"):  # an earlier attempt of this run: replace it, the pods resume
            log(f"TrainJob {namespace}/{name} failed in an earlier attempt; starting it again (it resumes from checkpoints)")
            api.delete_namespaced_custom_object(name=name, **where)
            for _ in range(60):
                try:
                    api.get_namespaced_custom_object(name=name, **where)
                except ApiException as gone:
                    if gone.status == 404:
                        break
                    raise
                time.sleep(1)
            api.create_namespaced_custom_object(body=body, **where)
        else:
            log(f"TrainJob {namespace}/{name} exists (an earlier attempt of this run): watching it")
    seen: set[tuple] = set()
    while True:
        try:
            job = api.get_namespaced_custom_object(name=name, **where)
        except ApiException as e:
            raise TrainJobFailed(f"cannot read TrainJob {namespace}/{name}: {e.status} {_api_error(e)}") from None
        for c in (job.get("status") or {}).get("conditions") or []:
            key = (c.get("type"), c.get("status"), c.get("reason"))
            if key not in seen:
                seen.add(key)
                log(f"TrainJob {name}: {c.get('type')}={c.get('status')}"
                    + (f" ({c.get('reason')})" if c.get("reason") else "")
                    + (f": {c.get('message')}" if c.get("message") else ""))
        failed = _condition(job, "Failed")
        if failed:
            raise TrainJobFailed(f"TrainJob {namespace}/{name} failed: {failed.get('reason', '')}: "
                                 f"{failed.get('message', '')} (kubectl -n {namespace} logs -l "
                                 f"jobset.sigs.k8s.io/jobset-name={name})")
        if _condition(job, "Complete"):
            return job
        time.sleep(poll_seconds)


def train_as_trainer_job(spec: dict, dataset_uri: str, model_path: "str | Path", step_model_uri: str, given: dict,
                         step_argv: list[str], poll_seconds: float = 10,
                         log=functools.partial(print, flush=True)) -> list[dict]:
    """The train step as a TrainJob: pods train from ``dataset_uri``; the model lands in ``model_path``.

    ``step_model_uri``: the step's Model artifact URI (the staging prefix goes beside
    it); ``given``: the step's parameters (``run_id`` names the TrainJob);
    ``step_argv``: the same as train CLI flags. Returns the history.
    """
    from artifacts import locations, remote as remote_artifacts, storage

    run_id = given["run_id"]
    if not storage.is_remote(step_model_uri) or not storage.is_remote(dataset_uri):
        raise UserError(f"a Kubeflow Trainer train step reads and writes the object store itself and needs its "
                           f"artifacts there (got model {step_model_uri}, dataset at {dataset_uri})")
    for uri in (step_model_uri, dataset_uri):
        storage.parent(uri)  # a store artifacts.storage reads, with a bucket: else one line now, before any work
    if not run_id:
        raise UserError("a Kubeflow Trainer train step needs the run id (the pipeline passes it)")
    locations.check_segment(run_id, "run_id", "run id")
    staging = storage.join(storage.parent(step_model_uri), "trainjob")
    model_uri, metrics_uri = storage.join(staging, "model"), storage.join(staging, "metrics.json")
    # The train CLI takes gs:// and s3:// (artifacts.locations); Kubeflow's minio:// is S3 at the bundled endpoint.
    (pod_dataset, endpoint), (pod_model, _), (pod_metrics, _) = map(storage.as_s3, (dataset_uri, model_uri, metrics_uri))
    args = ["--dataset", pod_dataset, "--model", pod_model, "--metrics", pod_metrics, *step_argv]
    name = job_name(run_id)
    done = storage.exists(storage.join(model_uri, "_COMPLETE.json"))
    if done and storage.exists(metrics_uri):
        log(f"the TrainJob of this run already wrote {model_uri}: using it")
    else:
        if storage.exists(metrics_uri):  # a finished job's metrics whose model never got committed: ours, stale
            storage.delete(metrics_uri)
        run(manifest(name, spec, args, run_id, pod_env(endpoint=endpoint)), poll_seconds, log)
    remote_artifacts.download(model_uri, "model", model_path)
    history = json.loads(storage.read_bytes(metrics_uri))["history"]
    log(f"TrainJob {name} wrote the model: test accuracy {history[-1]['test_accuracy']:.4f}")
    return history


def trainer_job(image: str, options: ClusterOptions, policy: StepPolicy) -> str:
    """The train step's ``trainer_job`` for ``--target kfp --replicas N``: N pods, each with the step's resources."""
    requests = {"cpu": policy.cpu_request, "memory": policy.memory_request}
    limits = {"cpu": policy.cpu_limit, "memory": policy.memory_limit}
    if options.accelerator:
        limits[options.accelerator] = str(options.accelerator_count)
    return job_spec(options.trainer_nodes, image, options.trainer_runtime or DEFAULT_RUNTIME,
                    {"requests": requests, "limits": limits})
