"""VertexExperimentsStandIn: Vertex AI's Experiments, TensorBoard and pipeline-job REST APIs (v1), on loopback.

No Google Cloud project is reachable from these tests. This stand-in answers
what the real ``google-cloud-aiplatform`` SDK (REST transport) sends for
``PipelineJob.submit(experiment=...)`` and ``aiplatform.upload_tb_log(...)``,
as the v1 REST reference documents the calls, records every request, and keeps
the rules the project depends on:

- MetadataService (Vertex AI Experiments are Metadata contexts): the store
  ``metadataStores/default`` must be created before use (a long-running
  operation, answered done); ``contexts?contextId=`` creates a context (409
  ``ALREADY_EXISTS`` for a taken id; 400 for a context, artifact or execution id
  that is not 4-128 of ``[a-z0-9-]``: aiplatform_v1 ``CreateContextRequest.context_id``,
  ``CreateArtifactRequest.artifact_id``), ``GET``/``PATCH`` read and update one (404
  ``NOT_FOUND`` for an unknown one), ``:addContextChildren`` links child
  contexts, which must exist (an experiment's runs are its children);
- PipelineService: ``pipelineJobs?pipelineJobId=`` creates a job (409 for a
  taken id), ``schedules`` a schedule (its runs are not made); as on Vertex AI, the job's ``system.PipelineRun`` context is made
  asynchronously: the job's first ``GET`` answers without
  ``jobDetail.pipelineRunContext``, later ones with it (the SDK polls for it
  before it associates the run with an experiment);
- TensorboardService: only the TensorBoard instances given to the stand-in
  exist (a user creates one in the console); experiments, runs and time series
  under it are created (409 for a taken id, 400 for an id outside
  ``[a-z0-9][a-z0-9-]{0,127}``), listed and read; ``experiments/E:write`` stores
  each run's points, which must name an existing run and time series.

Errors are ``{"error": {"code", "message", "status"}}``. Not modelled: the
pipeline job actually running (its state stays ``PIPELINE_STATE_RUNNING``),
Metadata executions and artifacts, blob (image/graph) uploads, IAM, filters
beyond ``display_name``.

Mirrors: googleapis ``google/cloud/aiplatform/v1/metadata_service.proto``, ``tensorboard_service.proto`` and
``pipeline_service.proto`` (request and resource types); the services' behaviour is closed source: unverified
beyond their REST reference.
"""

from __future__ import annotations

import json
import re
import threading
from urllib.parse import parse_qs, unquote

from loopback_json_server import LoopbackJsonServer

LOCATION = r"projects/[^/]+/locations/[^/]+"
ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,127}$")
# google/cloud/aiplatform_v1/types/metadata_service.py: Metadata context, artifact and execution ids "Must be 4-128
# characters in length. Valid characters are /[a-z][0-9]-/."
METADATA_ID = re.compile(r"^[a-z0-9-]{4,128}$")


def _error(code: int, status: str, message: str) -> tuple[int, dict]:
    return code, {"error": {"code": code, "message": message, "status": status}}


def _not_found(name: str) -> tuple[int, dict]:
    return _error(404, "NOT_FOUND", f'"{name}" is not found.')


def _done(parent: str, kind: str, resource: dict) -> dict:
    return {"name": f"{parent}/operations/1", "done": True,
            "response": {"@type": f"type.googleapis.com/google.cloud.aiplatform.v1.{kind}", **resource}}


class VertexExperimentsStandIn(LoopbackJsonServer):
    def __init__(self, tensorboards: "tuple[str, ...]" = ()):
        self.resources: dict[str, dict] = {}  # resource name -> its JSON, for everything created
        self.children: dict[str, list[str]] = {}  # context name -> child context names
        self.points: dict[tuple[str, str], list[dict]] = {}  # (run name, time series display name) -> points
        self._job_reads: dict[str, int] = {}
        for name in tensorboards:
            self.resources[name] = {"name": name, "displayName": name.rsplit("/", 1)[-1],
                                    "blobStoragePathPrefix": "stand-in-tensorboard-bucket/" + name.rsplit("/", 1)[-1]}
        self.lock = threading.Lock()
        super().__init__()

    def answer(self, method: str, path: str, headers, raw: bytes):
        body = json.loads(raw) if raw else None
        route, _, query = path.partition("?")
        route, query = unquote(route), {k: v[0] for k, v in parse_qs(query).items()}
        self.requests[-1].update(path=route, query=query, body=body)
        with self.lock:
            return self.handle(method, route.removeprefix("/v1/"), query, body or {})

    # ---- what a test looks at

    def scalars(self, run: str) -> dict[str, list[tuple[int, float]]]:
        """The points written to TensorBoard run ``run`` (a resource name): tag -> [(step, value), ...]."""
        return {tag: [(int(p["step"]), p["scalar"]["value"]) for p in points if "scalar" in p]
                for (r, tag), points in self.points.items() if r == run}

    def of_kind(self, pattern: str) -> dict[str, dict]:
        return {name: r for name, r in self.resources.items() if re.fullmatch(pattern, name)}

    # ---- the API

    def handle(self, method: str, path: str, query: dict, body: dict) -> tuple[int, dict]:
        if method == "GET" and path in self.resources:
            if "/pipelineJobs/" in path:
                return 200, self._read_job(path)
            return 200, self.resources[path]
        if method == "PATCH":
            if path not in self.resources:
                return _not_found(path)
            self.resources[path].update({k: v for k, v in body.items() if k != "name"})
            return 200, self.resources[path]
        if m := re.fullmatch(rf"({LOCATION})/metadataStores", path):
            return self._create(m.group(1), "metadataStores", query.get("metadataStoreId", ""), body, lro="MetadataStore")
        if m := re.fullmatch(rf"({LOCATION}/metadataStores/[^/]+)/(contexts|artifacts|executions)", path):
            if method == "GET":
                return 200, {m.group(2): self._list(path, query)}
            resource_id = query.get(m.group(2)[:-1] + "Id", "")
            if resource_id and not METADATA_ID.match(resource_id):
                return _error(400, "INVALID_ARGUMENT", f"{m.group(2)[:-1]}_id {resource_id!r} must be 4-128 characters "
                                                       "of [a-z0-9-]")
            return self._create(m.group(1), m.group(2), resource_id, body)
        if method == "DELETE" and re.fullmatch(rf"{LOCATION}/metadataStores/[^/]+/(contexts|artifacts|executions)/[^/:]+", path):
            if self.resources.pop(path, None) is None:
                return _not_found(path)
            return 200, _done(path, "DeleteOperationMetadata", {})
        if method == "POST" and (m := re.fullmatch(rf"({LOCATION}/metadataStores/[^/]+/contexts/[^/:]+):addContextChildren", path)):
            return self._add_children(m.group(1), body.get("childContexts") or [])
        if method == "POST" and (m := re.fullmatch(rf"({LOCATION}/metadataStores/[^/]+/contexts/[^/:]+):addContextArtifactsAndExecutions", path)):
            return self._add_children(m.group(1), (body.get("artifacts") or []) + (body.get("executions") or []))
        if m := re.fullmatch(rf"({LOCATION})/pipelineJobs", path):
            return self._create(m.group(1), "pipelineJobs", query.get("pipelineJobId", ""), body,
                                extra={"state": "PIPELINE_STATE_RUNNING"})
        if method == "POST" and (m := re.fullmatch(rf"({LOCATION})/schedules", path)):
            # ScheduleService: the id is the server's; a schedule starts active, its runs are not modelled
            resource_id = str(sum(1 for n in self.resources if n.startswith(m.group(1) + "/schedules/")) + 1)
            return self._create(m.group(1), "schedules", resource_id, body, extra={"state": "ACTIVE"})
        if m := re.fullmatch(rf"({LOCATION}/tensorboards/[^/]+)/experiments", path):
            return self._under(m.group(1), method, path, query, body, "tensorboardExperimentId")
        if m := re.fullmatch(rf"({LOCATION}/tensorboards/[^/]+/experiments/[^/:]+)/runs", path):
            return self._under(m.group(1), method, path, query, body, "tensorboardRunId")
        if method == "POST" and (m := re.fullmatch(rf"({LOCATION}/tensorboards/[^/]+/experiments/[^/:]+)/runs:batchCreate", path)):
            made = []
            for request in body.get("requests") or []:
                status, reply = self._under(m.group(1), "POST", path, {"tensorboardRunId": request.get("tensorboardRunId", "")},
                                            request.get("tensorboardRun") or {}, "tensorboardRunId")
                if status != 200:
                    return status, reply
                made.append(reply)
            return 200, {"tensorboardRuns": made}
        if m := re.fullmatch(rf"({LOCATION}/tensorboards/[^/]+/experiments/[^/:]+/runs/[^/:]+)/timeSeries", path):
            return self._under(m.group(1), method, path, query, body, None)
        if method == "POST" and (m := re.fullmatch(rf"({LOCATION}/tensorboards/[^/]+/experiments/[^/:]+):batchCreate", path)):
            made = []
            for request in body.get("requests") or []:
                parent = request.get("parent", "")
                if not parent.startswith(m.group(1) + "/runs/"):
                    return _error(400, "INVALID_ARGUMENT", f"time series parent {parent} is not a run of {m.group(1)}")
                status, reply = self._under(parent, "POST", parent + "/timeSeries", {}, request.get("tensorboardTimeSeries") or {}, None)
                if status != 200:
                    return status, reply
                made.append(reply)
            return 200, {"tensorboardTimeSeries": made}
        if method == "POST" and (m := re.fullmatch(rf"({LOCATION}/tensorboards/[^/]+/experiments/[^/:]+):write", path)):
            return self._write(m.group(1), body.get("writeRunDataRequests") or [])
        if method in ("GET", "POST"):
            return _not_found(path)
        return _error(405, "METHOD_NOT_ALLOWED", f"{method} {path}")

    def _create(self, parent: str, collection: str, resource_id: str, body: dict, lro: str = "", extra=None):
        if not resource_id:
            return _error(400, "INVALID_ARGUMENT", f"creating in {parent}/{collection} needs an id here")
        name = f"{parent}/{collection}/{resource_id}"
        if name in self.resources:
            return _error(409, "ALREADY_EXISTS", f'"{name}" already exists.')
        if collection in ("contexts", "artifacts", "executions") and not body.get("schemaTitle"):
            return _error(400, "INVALID_ARGUMENT", f"a Metadata {collection[:-1]} needs a schema_title")
        self.resources[name] = {**body, **(extra or {}), "name": name}
        return 200, (_done(parent, lro, self.resources[name]) if lro else self.resources[name])

    def _under(self, parent: str, method: str, path: str, query: dict, body: dict, id_key: "str | None"):
        """Create (POST) or list (GET) a TensorBoard experiment, run or time series under ``parent``."""
        if parent not in self.resources:
            return _not_found(parent)
        collection = path.rsplit("/", 1)[-1].split(":")[0]
        if method == "GET":
            return 200, {{"experiments": "tensorboardExperiments", "runs": "tensorboardRuns",
                          "timeSeries": "tensorboardTimeSeries"}[collection]: self._list(f"{parent}/{collection}", query)}
        if id_key is None:  # time series get a server-made id, and a display name unique in their run
            if any(t.get("displayName") == body.get("displayName") for t in self._list(f"{parent}/timeSeries", {})):
                return _error(409, "ALREADY_EXISTS", f'time series "{body.get("displayName")}" exists in {parent}')
            resource_id = str(sum(1 for n in self.resources if n.startswith(parent + "/timeSeries/")) + 1)
        else:
            resource_id = query.get(id_key, "")
            if not ID.match(resource_id):
                return _error(400, "INVALID_ARGUMENT", f"{id_key} {resource_id!r} must match [a-z0-9][a-z0-9-]{{0,127}}")
        return self._create(parent, collection, resource_id, body)

    def _list(self, collection: str, query: dict) -> list[dict]:
        found = [r for n, r in self.resources.items() if n.rsplit("/", 1)[0] == collection]
        if m := re.search(r'display_name\s*=\s*"([^"]*)"', query.get("filter", "")):
            found = [r for r in found if r.get("displayName") == m.group(1)]
        return found

    def _read_job(self, name: str) -> dict:
        reads = self._job_reads[name] = self._job_reads.get(name, 0) + 1
        job = self.resources[name]
        if reads > 1 and "jobDetail" not in job:  # Vertex AI has made the run's Metadata context by now
            store = name.split("/pipelineJobs/")[0] + "/metadataStores/default"
            context = f"{store}/contexts/{name.rsplit('/', 1)[-1]}"
            self.resources[context] = {"name": context, "displayName": name.rsplit("/", 1)[-1],
                                       "schemaTitle": "system.PipelineRun", "schemaVersion": "0.0.1"}
            job["jobDetail"] = {"pipelineRunContext": self.resources[context]}
        return job

    def _add_children(self, parent: str, children: list[str]):
        if parent not in self.resources:
            return _not_found(parent)
        for child in children:
            if child not in self.resources:
                return _not_found(child)
        self.children.setdefault(parent, []).extend(c for c in children if c not in self.children.get(parent, []))
        return 200, {}

    def _write(self, experiment: str, requests: list[dict]):
        if experiment not in self.resources:
            return _not_found(experiment)
        for request in requests:
            run = request.get("tensorboardRun", "")
            if not run.startswith(experiment + "/runs/") or run not in self.resources:
                return _not_found(run)
            for data in request.get("timeSeriesData") or []:
                series = f"{run}/timeSeries/{data.get('tensorboardTimeSeriesId')}"
                if series not in self.resources:
                    return _not_found(series)
                tag = self.resources[series].get("displayName", "")
                self.points.setdefault((run, tag), []).extend(data.get("values") or [])
        return 200, {}
