"""LauncherStandIn: runs one task of a compiled pipeline as Kubeflow Pipelines' v2 driver and launcher would.

No Kubeflow backend runs in these tests. This stand-in takes the compiled IR
YAML (what ``pipeline.py compile`` writes) and runs one task's container command
on this machine with the semantics of the v2 backend that matter to a step.
It mirrors these files of kubeflow/pipelines **2.17.0** (commit
4a3592cb2dd0a91a4652ab93893ec8beda1f3158), ``backend/src/v2/``:

- ``driver/resolve.go`` (``resolveInputParameter``, the ``RuntimeValue`` case):
  a task input that is a constant is passed as it is, except that
  ``{{$.workspace_path}}`` is replaced wherever it appears and exactly seven
  placeholders are replaced when they are the *whole* value:
  ``pipeline_job_name`` (the run's display name), ``pipeline_job_resource_name``,
  ``pipeline_job_uuid`` (the run id), ``pipeline_task_name``, ``pipeline_task_uuid``
  (the DAG execution id), ``pipeline_job_create_time_utc``,
  ``pipeline_job_schedule_time_utc``. Everything else, ``{{$.pipeline_root}}``
  included, reaches the step literally (``PLACEHOLDERS`` below; 2.5.0 to 2.15
  substitute the first five only, 2.4 none).
- ``driver/driver.go`` ``provisionOutputs`` and ``metadata/client.go``
  ``GenerateOutputURI`` / ``GetPipeline``: an output artifact's URI is
  ``<pipeline root>/<pipeline name>/<run id>/<task name>/<uuid>/<artifact>``, the
  uuid drawn once when the driver runs (``driver/container.go``: ``uuid.NewString()``).
- ``compiler/argocompiler/container.go``: a task's retry policy becomes Argo's
  ``retryStrategy`` on the executor template only (``system-container-impl``), after
  the driver: every retry runs with the same pod spec patch, so the same executor
  input and the same output URIs. ``run_task`` on the same task again is such a retry.
- ``component/launcher_v2.go`` (``LocalPathForURI``, ``uploadOutputArtifacts``) and
  ``objectstore/object_store.go`` (``UploadBlob``): the step sees each artifact at
  ``/gcs/``, ``/minio/`` or ``/s3/`` + the URI's bucket and path; every attempt gets a
  fresh, empty scratch folder (the pod's ``emptyDir``); after the step exits 0 only
  each output artifact's own path is uploaded, files only (empty folders are lost),
  and anything beside the path is lost with the pod. A failed or killed attempt
  uploads nothing.
- ``driver/k8s.go`` (``secretAsEnv``): the step's environment holds the container's
  own ``env`` and the secrets the platform spec maps (kfp-kubernetes
  ``use_secret_as_env``, ``optional`` honoured), nothing else of the store's
  credentials: the launcher's own keys (``config/env.go``: the
  ``mlpipeline-minio-artifact`` secret) are not the step's. The network (emulator and
  S3 endpoints) is passed through, as a cluster's DNS would be.

- ``component/launcher_v2.go`` (``uploadOutputArtifacts``: ``mergeRuntimeArtifacts``
  of the executor output's artifact into the output artifact), ``metadata/client.go``
  (``RecordArtifact``: ``display_name`` and ``store_session_info`` added as custom
  properties unless present) and ``metadata/converter.go`` (``toMLMDArtifact``,
  ``StructValueToMLMDValue``, ``toRuntimeArtifact``, which ``driver/resolve.go`` uses for
  the next task's input): an artifact's metadata reaches a later step only through
  MLMD, so a bool comes back as 0 or 1, a number as a double (which ``protojson``
  writes as an int when integral: ``1.0`` comes back as ``1``), a list as
  ``{"list": [...]}``, a dict as ``{"struct": {...}}``, a ``None`` fails the step
  (after its upload), a ``NaN`` in the executor output fails it too, and the two
  custom properties come along (``mlmd_round_trip`` below). The input's name is the
  MLMD id and its type an empty ``instanceSchema``.

The kfp SDK maps the URIs under ``/gcs/``, ``/minio/``, ``/s3/``
(``kfp/dsl/types/artifact_types.py``); here those mount points are folders inside
the attempt's scratch: a ``sitecustomize`` on the step's ``PYTHONPATH``
(``kfp_stand_in_site/``) points the prefixes there, as kfp's own executor tests do.
The object store is gcp-storage-emulator (``gs://``) or an S3 server
(``s3://``, ``minio://``), through ``artifacts.storage``. Not modelled: Argo, MLMD's
queries and lineage (only its round trip of an artifact's metadata), the cache,
conditions between tasks (a test runs tasks in order and passes their outputs on).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from artifacts import storage
from uploads import upload_tree

# driver/resolve.go (2.17.0): the placeholders substituted when they are a parameter's whole value, and no other.
PLACEHOLDERS = ("{{$.pipeline_job_name}}", "{{$.pipeline_job_resource_name}}", "{{$.pipeline_job_uuid}}",
                "{{$.pipeline_task_name}}", "{{$.pipeline_task_uuid}}", "{{$.pipeline_job_create_time_utc}}",
                "{{$.pipeline_job_schedule_time_utc}}")
WORKSPACE_PLACEHOLDER = "{{$.workspace_path}}"
WORKSPACE_MOUNT_PATH = "/kfp-workspace"  # component/constants.go
MOUNTS = {"gs": "gcs", "minio": "minio", "s3": "s3"}  # launcher_v2.go LocalPathForURI
CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


class StepFailed(RuntimeError):
    def __init__(self, task: str, returncode: int, log: str):
        super().__init__(f"task {task} exited {returncode}; its log ends:\n{log[-3000:]}")
        self.returncode = returncode
        self.log = log


@dataclass
class TaskResult:
    artifacts: dict[str, str]  # output artifact name -> object-store URI
    parameters: dict[str, object]
    log: str
    uploaded: list[str] = field(default_factory=list)  # object names under the task's prefix
    metadata: dict[str, dict] = field(default_factory=dict)  # output artifact name -> its metadata, as MLMD gives it back


class LauncherStandIn:
    """One pipeline run: ``run_task`` runs an attempt of a task; a second ``run_task`` of the task is its retry.

    ``secrets``: the namespace's Kubernetes secrets, ``{name: {key: value}}``, which the
    platform spec may map into a step's environment.
    """

    def __init__(self, spec_path: str | Path, pipeline_root: str, job_id: str, arguments: dict | None = None,
                 secrets: dict | None = None):
        documents = [d for d in yaml.safe_load_all(Path(spec_path).read_text()) if d]
        self.spec = documents[0]
        self.platform = next((d["platforms"].get("kubernetes", {}) for d in documents[1:] if "platforms" in d), {})
        self.pipeline_root = pipeline_root.rstrip("/")
        self.job_id = job_id
        self.arguments = arguments or {}
        self.secrets = secrets or {}
        self.scratch_dirs: list[Path] = []  # every attempt's scratch folder, to show they are gone
        self.executions: dict[str, tuple[int, str]] = {}  # task -> (DAG execution id, output URI salt), once per run
        self.environments: list[dict] = []  # every attempt's environment, as the step saw it

    def _execution(self, task: str) -> tuple[int, str]:
        """What the driver decides once per task (the executor's retries reuse it): an id and the URI salt."""
        if task not in self.executions:
            self.executions[task] = (1000 + len(self.executions), str(uuid.uuid4()))
        return self.executions[task]

    def _substitute(self, value, task: str):
        """A constant as resolve.go passes it: ``{{$.workspace_path}}`` anywhere, the seven names as whole values."""
        if not isinstance(value, str):
            return value
        if WORKSPACE_PLACEHOLDER in value:
            return value.replace(WORKSPACE_PLACEHOLDER, WORKSPACE_MOUNT_PATH)
        whole = {"{{$.pipeline_job_name}}": f"run-{self.job_id}",
                 "{{$.pipeline_job_resource_name}}": f"{self.pipeline_name}-{self.job_id[:5]}",
                 "{{$.pipeline_job_uuid}}": self.job_id, "{{$.pipeline_task_name}}": task,
                 "{{$.pipeline_task_uuid}}": str(self._execution(task)[0]),
                 "{{$.pipeline_job_create_time_utc}}": "2026-11-29T10:00:00Z",
                 "{{$.pipeline_job_schedule_time_utc}}": "2026-11-29T10:00:00Z"}
        assert set(whole) == set(PLACEHOLDERS)
        return whole.get(value, value)

    @property
    def pipeline_name(self) -> str:
        return self.spec["pipelineInfo"]["name"]

    def task_root(self, task: str) -> str:
        """``<pipeline root>/<pipeline name>/<run id>/<task>/<uuid>``: where the task's output artifacts go."""
        return storage.join(self.pipeline_root, self.pipeline_name, self.job_id, task, self._execution(task)[1])

    def _environment(self, component: dict, executor: dict) -> dict:
        """The step's variables: this machine's, less the store's credentials; the container's env; mapped secrets."""
        env = {k: v for k, v in os.environ.items() if k not in CREDENTIALS}
        env.update({e["name"]: e.get("value", "") for e in executor.get("env", [])})
        config = self.platform.get("deploymentSpec", {}).get("executors", {}).get(component["executorLabel"], {})
        for mapping in config.get("secretAsEnv", []):
            secret = self.secrets.get(mapping["secretName"])
            if secret is None and not mapping.get("optional"):
                raise StepFailed(component["executorLabel"], -1,
                                 f"CreateContainerConfigError: secret \"{mapping['secretName']}\" not found")
            for pair in mapping.get("keyToEnv", []):
                if secret is not None and pair["secretKey"] in secret:
                    env[pair["envVar"]] = secret[pair["secretKey"]]
        return env

    def task_spec(self, task: str) -> dict:
        """``task``'s spec, in the root DAG or in a condition's DAG (a ``dsl.If`` compiles to a sub-DAG component)."""
        return all_tasks(self.spec)[task]

    def _channel(self, key: str, upstream: dict[str, TaskResult], kind: str):
        """A condition DAG's input ``pipelinechannel--X``: a pipeline parameter ``X``, or ``<task>-<output>``.

        The driver resolves them from the parent DAG, which passes its own parameters and its tasks' outputs
        in as the sub-DAG's inputs (``driver/resolve.go``, ``resolveInputs``); here they come from the
        arguments and from the upstream results the test passes on.
        """
        name = key.removeprefix("pipelinechannel--")
        roots = self.spec["root"]["inputDefinitions"]["parameters"]
        if kind == "parameter" and name in roots:
            return self.arguments.get(name, roots[name].get("defaultValue"))
        for producer in sorted(upstream, key=len, reverse=True):
            if name.startswith(producer + "-"):
                output = name[len(producer) + 1:]
                result = upstream[producer]
                return result.parameters[output] if kind == "parameter" else result.artifacts[output]
        raise KeyError(f"{key}: no pipeline parameter or upstream output of that name")

    def _parameters(self, task: str, spec: dict, component: dict, upstream: dict[str, TaskResult]) -> dict:
        root_defaults = {name: p.get("defaultValue") for name, p in self.spec["root"]["inputDefinitions"]["parameters"].items()}
        values = {}
        for name, source in spec.get("inputs", {}).get("parameters", {}).items():
            if "componentInputParameter" in source:
                key = source["componentInputParameter"]
                values[name] = (self._channel(key, upstream, "parameter") if key.startswith("pipelinechannel--")
                                else self.arguments.get(key, root_defaults.get(key)))
            elif "runtimeValue" in source:
                values[name] = self._substitute(source["runtimeValue"]["constant"], task)
            elif "taskOutputParameter" in source:
                ref = source["taskOutputParameter"]
                values[name] = self._task_output(ref["producerTask"], ref["outputParameterKey"], upstream)
        for name, definition in component.get("inputDefinitions", {}).get("parameters", {}).items():
            if name not in values and "defaultValue" in definition:
                values[name] = definition["defaultValue"]
            kind = definition.get("parameterType")
            if kind == "NUMBER_INTEGER" and values.get(name) is not None:
                values[name] = int(values[name])
        return values

    def _task_output(self, producer: str, key: str, upstream: dict[str, TaskResult]):
        """Output parameter ``key`` of ``producer``: a task the test ran, or a sub-DAG (a condition, or the branches
        of a ``dsl.OneOf``) whose output is a selector of a subtask's output. ``driver/resolve.go``
        (``resolveUpstreamParameters``): ``valueFromParameter`` names one subtask, ``valueFromOneof`` the first
        of its selectors whose task ran."""
        if producer in upstream:
            return upstream[producer].parameters[key]
        component = self.spec["components"][all_tasks(self.spec)[producer]["componentRef"]["name"]]
        output = component.get("dag", {}).get("outputs", {}).get("parameters", {}).get(key)
        if output is None:
            raise KeyError(f"{producer}.{key}: the test ran no such task")
        selectors = ([output["valueFromParameter"]] if "valueFromParameter" in output
                     else output["valueFromOneof"]["parameterSelectors"])
        for selector in selectors:
            try:
                return self._task_output(selector["producerSubtask"], selector["outputParameterKey"], upstream)
            except KeyError:
                continue
        raise KeyError(f"{producer}.{key}: none of its branches ran")

    def run_task(self, task: str, upstream: dict[str, TaskResult] | None = None,
                 kill_when: Callable[[str], bool] | None = None, timeout: float = 900) -> TaskResult:
        """One attempt of ``task``: fresh scratch, download inputs, run, upload only the artifact paths."""
        upstream = upstream or {}
        spec = self.task_spec(task)
        component = self.spec["components"][spec["componentRef"]["name"]]
        container = self.spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]
        scratch = Path(tempfile.mkdtemp(prefix=f"emptydir-{task}-"))
        self.scratch_dirs.append(scratch)
        try:
            mount = scratch / "mnt"  # the pod's /: kfp maps gs://B/P to <mount>/gcs/B/P
            inputs = {}
            for name, source in spec.get("inputs", {}).get("artifacts", {}).items():
                if "componentInputArtifact" in source:  # in a condition's DAG: the parent's task output
                    uri = self._channel(source["componentInputArtifact"], upstream, "artifact")
                else:
                    ref = source["taskOutputArtifact"]
                    uri = upstream[ref["producerTask"]].artifacts[ref["outputArtifactKey"]]
                _download(uri, _local(mount, uri))
                # driver/resolve.go: the MLMD artifact as OutputArtifact.ToRuntimeArtifact gives it (metadata/
                # client.go): its id as the name, its metadata, and an empty instanceSchema (the schema is not read
                # back: "TODO(Bobgy)"), so kfp's executor takes the class from the parameter's annotation.
                artifact_id, recorded = _recorded(uri, upstream)
                inputs[name] = {"artifacts": [{"name": artifact_id, "uri": uri, "metadata": recorded,
                                               "type": {"instanceSchema": ""}}]}
            prefix = self.task_root(task)
            outputs = {}
            for name, definition in component.get("outputDefinitions", {}).get("artifacts", {}).items():
                schema = definition["artifactType"]
                outputs[name] = {"artifacts": [{"name": name, "uri": storage.join(prefix, name), "metadata": {},
                                                "type": {"schemaTitle": schema["schemaTitle"]}}]}
            output_parameters = {name: {"outputFile": str(scratch / "outputs" / "parameters" / name)}
                                 for name in component.get("outputDefinitions", {}).get("parameters", {})}
            (scratch / "outputs" / "parameters").mkdir(parents=True)
            executor_input = {
                "inputs": {"parameterValues": self._parameters(task, spec, component, upstream), "artifacts": inputs},
                "outputs": {"artifacts": outputs, "parameters": output_parameters,
                            "outputFile": str(scratch / "outputs" / "executor_output.json")},
            }
            args = [json.dumps(executor_input) if a == "{{$}}" else a for a in container.get("args", [])]
            env = self._environment(component, container)
            log = self._execute([*container["command"], *args], scratch, task, kill_when, timeout, mount, env)
            executor_output = {}
            output_file = scratch / "outputs" / "executor_output.json"
            if output_file.exists():  # launcher_v2.go getExecutorOutputFile: protojson, which has no NaN literal
                try:
                    executor_output = json.loads(output_file.read_text(), parse_constant=_no_constant)
                except ValueError as error:
                    raise StepFailed(task, 1, f"{log}failed to parse executor output file: {error}")
            artifacts, uploaded, metadata = {}, [], {}
            for name in outputs:  # uploadOutputArtifacts: per artifact, upload, then RecordArtifact
                uri = storage.join(prefix, name)
                uploaded += [f"{name}/{n}" if n else name for n in _upload(_local(mount, uri), uri)]
                artifacts[name] = uri
                written = executor_output.get("artifacts", {}).get(name, {}).get("artifacts") or [{}]
                try:  # mergeRuntimeArtifacts(executor output's first artifact, the output artifact)
                    metadata[name] = mlmd_round_trip({**outputs[name]["artifacts"][0]["metadata"],
                                                      **(written[0].get("metadata") or {})}, name, self.pipeline_root)
                except ValueError as error:  # RecordArtifact fails: uploadOutputArtifacts returns the error
                    raise StepFailed(task, 1, f"{log}unable to produce MLMD artifact for output {name!r}: {error}")
            return TaskResult(artifacts, executor_output.get("parameterValues", {}), log, uploaded, metadata)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)  # the pod, and its emptyDir, are gone

    def _execute(self, command: list[str], scratch: Path, task: str, kill_when, timeout: float, mount: Path,
                 step_env: dict) -> str:
        workdir = scratch / "work"
        workdir.mkdir()
        site = str(Path(__file__).parent / "kfp_stand_in_site")
        env = {**step_env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               "PYTHONUNBUFFERED": "1", "TMPDIR": str(scratch), "KFP_STAND_IN_MOUNT": f"{mount}/",
               "PYTHONPATH": os.pathsep.join(p for p in (site, os.environ.get("PYTHONPATH")) if p)}
        self.environments.append(env)
        proc = subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if kill_when is not None and kill_when(line):
                os.killpg(proc.pid, signal.SIGKILL)  # preemption: the node is gone, no clean-up runs
                break
        proc.wait(timeout=timeout)
        log = "".join(lines)
        if proc.returncode != 0:
            raise StepFailed(task, proc.returncode, log)
        return log


def _to_mlmd_value(value):
    """``metadata/converter.go`` ``StructValueToMLMDValue``: a JSON value as MLMD stores it."""
    if isinstance(value, bool):  # before int: a bool is an int in Python
        return ("int", int(value))
    if isinstance(value, str):
        return ("string", value)
    if isinstance(value, (int, float)):  # structpb has one number kind, a double
        return ("double", float(value))
    if isinstance(value, list):
        return ("struct", {"list": value})
    if isinstance(value, dict):
        return ("struct", {"struct": value})
    raise ValueError(f"unknown/unsupported value type {type(value).__name__}")  # "TODO: support null"


def _as_protojson_gives_it(value):
    """A JSON value as the step reads it: the launcher writes the executor input with ``protojson.Marshal``
    (``launcher_v2.go``), which writes an integral double below 1e21 without a fraction (``10``, not ``10.0``),
    so kfp's ``json.loads`` gives an int; lists and structs alike, all the way down."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        number = float(value)
        return int(number) if number.is_integer() and abs(number) < 1e21 else number
    if isinstance(value, list):
        return [_as_protojson_gives_it(v) for v in value]
    return {k: _as_protojson_gives_it(v) for k, v in value.items()}


def _from_mlmd_value(kind: str, value):
    """``toRuntimeArtifact``'s ``propertiesToMetadata``: an MLMD value back as the step reads it (an int value
    becomes a double, then as ``_as_protojson_gives_it`` writes it)."""
    return _as_protojson_gives_it(float(value) if kind in ("double", "int") else value)


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON (protojson.Unmarshal refuses it)")


def _recorded(uri: str, upstream: dict) -> tuple[str, dict]:
    """The MLMD artifact at ``uri`` among the upstream tasks' outputs: its id and its metadata."""
    for result in upstream.values():
        for name, produced in result.artifacts.items():
            if produced == uri:
                return str(zlib.crc32(uri.encode())), result.metadata.get(name, {})  # an id, as MLMD's
    raise KeyError(f"{uri}: no upstream task produced it")


def mlmd_round_trip(metadata: dict, output_name: str, pipeline_root: str) -> dict:
    """An output artifact's metadata as the next task's input gets it: recorded, then read back from MLMD.

    ``toMLMDArtifact`` (every key but ``_kfp_workspace`` becomes a custom property), ``RecordArtifact``
    (``display_name``, ``store_session_info`` unless present), ``toRuntimeArtifact`` (custom properties back).
    """
    custom = {key: _to_mlmd_value(value) for key, value in metadata.items() if key != "_kfp_workspace"}
    custom.setdefault("display_name", ("string", output_name))
    # json.Marshal(bucketConfig.SessionInfo) (objectstore/config.go: Provider, Params): compact JSON; the Params
    # are the launcher's store configuration (endpoint, region, secret names), left empty here.
    provider = pipeline_root.split("://", 1)[0]
    custom.setdefault("store_session_info", ("string", json.dumps({"Provider": provider, "Params": {}},
                                                                  separators=(",", ":"))))
    return {key: _from_mlmd_value(kind, value) for key, (kind, value) in custom.items()}


def all_tasks(spec: dict) -> dict:
    """Every task of a compiled pipeline by name: the root DAG's and those inside conditions' sub-DAGs."""
    found = dict(spec["root"]["dag"]["tasks"])
    for component in spec["components"].values():
        found.update(component.get("dag", {}).get("tasks", {}))
    return found


def _local(mount: Path, uri: str) -> Path:
    """Where the launcher and kfp's SDK put ``uri`` in the pod (``/gcs/``, ``/minio/``, ``/s3/`` + bucket/path)."""
    scheme, _, rest = uri.partition("://")
    return mount / MOUNTS[scheme] / rest


def _upload(local: Path, uri: str) -> list[str]:
    """What the launcher uploads of one output path: the file, or every file under the folder."""
    if local.is_file():
        storage.write_bytes(uri, local.read_bytes())
        return [""]
    if not local.is_dir():
        return []  # a missing output is only a warning in launcher_v2.go
    return upload_tree(local, uri)


def _download(uri: str, local: Path) -> None:
    """What the launcher downloads for one input artifact: every object under the prefix, the object itself, or
    nothing when there is none (``objectstore/object_store.go`` ``DownloadBlob`` lists the prefix and copies what
    it finds: a Metrics artifact, which is all metadata, has no object and is no error)."""
    names = storage.list_names(uri)
    if not names:
        if storage.exists(uri):
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(storage.read_bytes(uri))
        return
    for name in names:
        target = local / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(storage.read_bytes(storage.join(uri, *name.split("/"))))
