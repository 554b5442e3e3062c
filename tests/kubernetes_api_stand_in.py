"""KubernetesApiStandIn: the Kubernetes API for Kubeflow Trainer TrainJobs, and Trainer's controller, on loopback.

No Kubernetes cluster runs in these tests. The train step's TrainJob path
(``platforms/kubeflow/trainer.py``) talks to this stand-in with the real ``kubernetes``
client (a kubeconfig names it), and the stand-in answers as the API server
with Kubeflow Trainer v2 installed would, for what that code uses:

- ``POST/GET/DELETE /apis/trainer.kubeflow.org/v1alpha1/namespaces/{ns}/trainjobs[/{name}]``;
  a bearer token is required (401 ``Unauthorized`` without the right one, as the
  API server answers), the identity may use only its own namespaces (403
  ``Forbidden``, RBAC's answer), a name that exists is 409 ``AlreadyExists``,
  and the objects are validated as the CRD and Trainer's webhook do (422
  ``Invalid``: ``metadata.name`` a DNS-1035 label of at most 63 characters,
  ``spec.runtimeRef.name`` an installed ClusterTrainingRuntime,
  ``spec.trainer.numNodes`` >= 1). Errors are ``Status`` objects.
- the controller: for each new TrainJob it starts ``spec.trainer.numNodes``
  processes of ``command + args`` on this machine, each with the environment the
  ``jax-distributed`` runtime's JAX plugin gives a pod (``JAX_COORDINATOR_ADDRESS``
  = node 0 on a loopback port, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``;
  kubeflow/trainer ``pkg/runtime/framework/plugins/jax``), and sets the
  TrainJob's ``Complete`` or ``Failed`` condition when they end. The image is
  recorded, not pulled: the processes run this checkout with this Python. A
  pod's ``env`` is set as the kubelet sets it, ``valueFrom.secretKeyRef`` read
  from ``secrets`` (Kubernetes core/v1 ``EnvVarSource``).

Mirrors: kubeflow/trainer v2.2.0 ``pkg/runtime/framework/plugins/jax/jax.go`` (the
pods' variables) and its TrainJob CRD (``manifests/base/crds/trainer.kubeflow.org_trainjobs.yaml``:
the fields validated above); the API server's answers (status codes, ``Status``
bodies) are unverified against kubernetes/kubernetes source, taken from the API
conventions document.

Not modelled: JobSet and its restart policy (a failed process fails the job at
once), pod scheduling and resources (recorded only), watches, and the exact
reason strings of the conditions (the code under test reads only their types).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

import yaml

from loopback_json_server import LoopbackJsonServer

PREFIX = "/apis/trainer.kubeflow.org/v1alpha1/namespaces/"
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}


class KubernetesApiStandIn(LoopbackJsonServer):
    def __init__(self, token: str = "stand-in-token", namespaces: tuple[str, ...] = ("team-a",),
                 runtimes: tuple[str, ...] = ("jax-distributed",), logs: "Path | None" = None, env: "dict | None" = None):
        self.token = token
        self.namespaces = namespaces
        self.runtimes = runtimes
        self.logs = logs  # each pod's output goes to <logs>/<job>-node-<i>.log
        self.env = env or {}
        self.secrets: dict[str, dict[str, str]] = {}  # the namespace's Secrets, for env valueFrom.secretKeyRef
        self.jobs: dict[tuple[str, str], dict] = {}
        self.processes: dict[tuple[str, str], list[subprocess.Popen]] = {}
        self.lock = threading.Lock()
        super().__init__()

    def answer(self, method: str, path: str, headers, raw: bytes):
        body = json.loads(raw) if raw else None
        self.requests[-1]["body"] = body  # created objects as sent
        return self.handle(method, path, headers.get("Authorization", ""), body)

    def stop(self) -> None:
        for procs in self.processes.values():
            for p in procs:
                if p.poll() is None:
                    p.kill()

    def kubeconfig(self, path: Path, namespace: str = "team-a", token: "str | None" = None) -> Path:
        """A kubeconfig naming this stand-in (what ``kubectl config`` would write for it)."""
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "stand-in",
            "clusters": [{"name": "stand-in", "cluster": {"server": self.url}}],
            "users": [{"name": "pipeline-runner", "user": {"token": self.token if token is None else token}}],
            "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in", "user": "pipeline-runner",
                                                          "namespace": namespace}}],
        }
        path.write_text(yaml.safe_dump(config))
        return path

    # ---- the API server

    def handle(self, method: str, path: str, authorization: str, body: "dict | None") -> tuple[int, dict]:
        if authorization != f"Bearer {self.token}":
            return 401, _status(401, "Unauthorized", "Unauthorized")
        if not path.startswith(PREFIX):
            return 404, _status(404, "NotFound", "the server could not find the requested resource")
        parts = path[len(PREFIX):].split("?")[0].strip("/").split("/")
        namespace = parts[0]
        if len(parts) < 2 or parts[1] != "trainjobs":
            return 404, _status(404, "NotFound", "the server could not find the requested resource")
        name = parts[2] if len(parts) > 2 else None
        if namespace not in self.namespaces:
            return 403, _status(403, "Forbidden", f'trainjobs.trainer.kubeflow.org is forbidden: User '
                                f'"system:serviceaccount:{self.namespaces[0]}:pipeline-runner" cannot {method.lower()} '
                                f'resource "trainjobs" in API group "trainer.kubeflow.org" in the namespace "{namespace}"')
        with self.lock:
            if method == "POST" and name is None:
                return self._create(namespace, body or {})
            if method == "GET" and name is not None:
                job = self.jobs.get((namespace, name))
                if job is None:
                    return 404, _status(404, "NotFound", f'trainjobs.trainer.kubeflow.org "{name}" not found')
                return 200, job
            if method == "DELETE" and name is not None:
                job = self.jobs.pop((namespace, name), None)
                if job is None:
                    return 404, _status(404, "NotFound", f'trainjobs.trainer.kubeflow.org "{name}" not found')
                for p in self.processes.pop((namespace, name), []):
                    if p.poll() is None:
                        p.kill()
                return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success", "details": {"name": name}}
        return 405, _status(405, "MethodNotAllowed", f"{method} is not supported here")

    def _create(self, namespace: str, body: dict) -> tuple[int, dict]:
        name = (body.get("metadata") or {}).get("name", "")
        problems = []
        if body.get("apiVersion") != "trainer.kubeflow.org/v1alpha1" or body.get("kind") != "TrainJob":
            problems.append("apiVersion/kind: must be trainer.kubeflow.org/v1alpha1 TrainJob")
        if not DNS_1035.match(name) or len(name) > 63:
            problems.append(f"metadata.name: Invalid value: \"{name}\": must be a DNS-1035 label of at most 63 characters")
        spec = body.get("spec") or {}
        runtime = (spec.get("runtimeRef") or {}).get("name")
        trainer = spec.get("trainer") or {}
        if not runtime:
            problems.append("spec.runtimeRef.name: Required value")
        elif runtime not in self.runtimes:
            problems.append(f"spec.runtimeRef: Invalid value: ClusterTrainingRuntime.trainer.kubeflow.org \"{runtime}\" not found")
        nodes = trainer.get("numNodes", 1)
        if not isinstance(nodes, int) or isinstance(nodes, bool) or nodes < 1:
            problems.append(f"spec.trainer.numNodes: Invalid value: {nodes!r}: must be >= 1")
        if not trainer.get("command"):
            problems.append("spec.trainer.command: the jax-distributed runtime's image has no training entrypoint of ours")
        if problems:
            return 422, _status(422, "Invalid", f'TrainJob.trainer.kubeflow.org "{name}" is invalid: ' + "; ".join(problems))
        if (namespace, name) in self.jobs:
            return 409, _status(409, "AlreadyExists", f'trainjobs.trainer.kubeflow.org "{name}" already exists')
        job = json.loads(json.dumps(body))
        job["metadata"].update(namespace=namespace, uid=f"uid-{len(self.requests)}",
                               creationTimestamp=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        job["status"] = {"conditions": []}
        self.jobs[(namespace, name)] = job
        self._start(namespace, name, trainer, nodes)
        return 201, job

    # ---- the controller (Trainer + JobSet, run as local processes)

    def _start(self, namespace: str, name: str, trainer: dict, nodes: int) -> None:
        port = _free_port()
        procs = []
        for i in range(nodes):
            env = {**os.environ, **self.env, **self._env(trainer.get("env") or []),
                   "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}", "JAX_NUM_PROCESSES": str(nodes),
                   "JAX_PROCESS_ID": str(i), "PYTHONUNBUFFERED": "1"}
            command = [sys.executable if c in ("python", "python3") else c for c in trainer["command"]]
            out = open(self.logs / f"{name}-node-{i}.log", "w") if self.logs else subprocess.DEVNULL
            procs.append(subprocess.Popen([*command, *trainer.get("args", [])], cwd=REPO, env=env,
                                          stdout=out, stderr=subprocess.STDOUT))
        self.processes[(namespace, name)] = procs
        threading.Thread(target=self._watch, args=(namespace, name, procs), daemon=True).start()

    def _env(self, entries: list[dict]) -> dict:
        """A container's ``env`` as the kubelet sets it: ``value``, or ``valueFrom.secretKeyRef`` (an optional one
        that is missing leaves the variable unset; core/v1 ``EnvVarSource``)."""
        env = {}
        for e in entries:
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref is None:
                env[e["name"]] = e.get("value", "")
            elif ref["key"] in self.secrets.get(ref["name"], {}):
                env[e["name"]] = self.secrets[ref["name"]][ref["key"]]
            elif not ref.get("optional"):
                raise ValueError(f"secret {ref['name']} has no key {ref['key']}: the pod would not start")
        return env

    def _watch(self, namespace: str, name: str, procs: list[subprocess.Popen]) -> None:
        failed = None
        pending = list(enumerate(procs))
        while pending and failed is None:
            for i, p in list(pending):
                try:
                    rc = p.wait(timeout=0.2)
                except subprocess.TimeoutExpired:
                    continue
                pending.remove((i, p))
                if rc != 0:
                    failed = (i, rc)
        for _, p in pending:  # JobSet's failure policy: one failed pod fails the job; the others are stopped
            p.kill()
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with self.lock:
            job = self.jobs.get((namespace, name))
            if job is None or self.processes.get((namespace, name)) is not procs:
                return  # deleted meanwhile
            if failed is None:
                condition = {"type": "Complete", "status": "True", "reason": "JobsCompleted",
                             "message": "jobset completed successfully", "lastTransitionTime": now}
            else:
                condition = {"type": "Failed", "status": "True", "reason": "JobsFailed",
                             "message": f"jobset failed: pod {name}-node-0-{failed[0]} exited with code {failed[1]}",
                             "lastTransitionTime": now}
            job["status"]["conditions"].append(condition)
