"""LauncherStandIn: runs one task of a compiled pipeline as Kubeflow Pipelines' v2 driver and launcher would.

No Kubeflow backend runs in these tests. This stand-in takes the compiled IR
YAML (what ``pipeline.py compile`` writes) and runs one task's container command
on this machine with the semantics of the v2 backend that matter to a step's
files (../shared/BACKENDS.md; kubeflow/pipelines ``backend/src/v2``):

- **placeholders**: a task input that is a placeholder constant is substituted
  only when it is the parameter's *whole* value (``driver/resolve.go``, backend
  >= 2.5); a placeholder inside a longer string reaches the step unsubstituted;
- **scratch**: every attempt of a step gets a fresh, empty scratch folder (the
  pod's ``emptyDir``); input artifacts are downloaded into it from the object
  store, outputs are written into it;
- **upload**: after the step exits 0, only each output artifact's own path is
  uploaded to ``<pipeline root>/<job id>/<task>/<artifact>`` (files only: empty
  folders are lost; ``launcher_v2.go`` ``uploadOutputArtifacts``,
  ``objectstore/object_store.go``); anything beside the path is not; then the
  scratch folder is deleted with the pod. A failed or killed attempt uploads
  nothing.

- **URIs and paths**: the executor input gives each artifact its object-store
  URI (``gs://...``), and the kfp SDK maps it to a local path under ``/gcs/``
  (``artifact_types._GCS_LOCAL_MOUNT_PREFIX``), where the launcher downloaded
  the inputs and from where it uploads the outputs. Here that mount point is a
  folder inside the attempt's scratch: a ``sitecustomize`` on the step's
  ``PYTHONPATH`` (``kfp_stand_in_site/``) points the prefix there, as kfp's own
  executor tests do.

The object store is Cloud Storage (here gcp-storage-emulator, through
google-cloud-storage). Not modelled: Argo, MLMD, the cache, conditions between
tasks (a test runs tasks in order and passes their outputs on).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mlp_core import storage

PLACEHOLDERS = ("{{$.pipeline_root}}", "{{$.pipeline_job_uuid}}", "{{$.pipeline_job_name}}", "{{$.pipeline_task_name}}")


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


class LauncherStandIn:
    def __init__(self, spec_path: str | Path, pipeline_root: str, job_id: str, arguments: dict | None = None):
        self.spec = yaml.safe_load(Path(spec_path).read_text())
        self.pipeline_root = pipeline_root.rstrip("/")
        self.job_id = job_id
        self.arguments = arguments or {}
        self.scratch_dirs: list[Path] = []  # every attempt's scratch folder, to show they are gone

    def _substitute(self, value, task: str):
        """A constant as the backend passes it: a placeholder replaced only when it is the whole value."""
        whole = {"{{$.pipeline_root}}": self.pipeline_root, "{{$.pipeline_job_uuid}}": self.job_id,
                 "{{$.pipeline_job_name}}": f"job-{self.job_id}", "{{$.pipeline_task_name}}": task}
        return whole.get(value, value) if isinstance(value, str) else value

    def _parameters(self, task: str, spec: dict, component: dict, upstream: dict[str, TaskResult]) -> dict:
        root_defaults = {name: p.get("defaultValue") for name, p in self.spec["root"]["inputDefinitions"]["parameters"].items()}
        values = {}
        for name, source in spec.get("inputs", {}).get("parameters", {}).items():
            if "componentInputParameter" in source:
                key = source["componentInputParameter"]
                values[name] = self.arguments.get(key, root_defaults.get(key))
            elif "runtimeValue" in source:
                values[name] = self._substitute(source["runtimeValue"]["constant"], task)
            elif "taskOutputParameter" in source:
                ref = source["taskOutputParameter"]
                values[name] = upstream[ref["producerTask"]].parameters[ref["outputParameterKey"]]
        for name, definition in component.get("inputDefinitions", {}).get("parameters", {}).items():
            if name not in values and "defaultValue" in definition:
                values[name] = definition["defaultValue"]
            kind = definition.get("parameterType")
            if kind == "NUMBER_INTEGER" and values.get(name) is not None:
                values[name] = int(values[name])
        return values

    def run_task(self, task: str, upstream: dict[str, TaskResult] | None = None,
                 kill_when: Callable[[str], bool] | None = None, timeout: float = 900) -> TaskResult:
        """One attempt of ``task``: fresh scratch, download inputs, run, upload only the artifact paths."""
        upstream = upstream or {}
        spec = self.spec["root"]["dag"]["tasks"][task]
        component = self.spec["components"][spec["componentRef"]["name"]]
        container = self.spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]
        scratch = Path(tempfile.mkdtemp(prefix=f"emptydir-{task}-"))
        self.scratch_dirs.append(scratch)
        try:
            mount = scratch / "gcs"  # the pod's /gcs/: kfp maps gs://B/P to <mount>/B/P
            inputs = {}
            for name, source in spec.get("inputs", {}).get("artifacts", {}).items():
                ref = source["taskOutputArtifact"]
                uri = upstream[ref["producerTask"]].artifacts[ref["outputArtifactKey"]]
                _download(uri, _local(mount, uri))
                schema = component["inputDefinitions"]["artifacts"][name]["artifactType"]
                inputs[name] = {"artifacts": [{"name": name, "uri": uri, "metadata": {},
                                               "type": {"schemaTitle": schema["schemaTitle"]}}]}
            prefix = storage.join(self.pipeline_root, self.job_id, task)
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
            log = self._execute([*container["command"], *args], scratch, task, kill_when, timeout, mount)
            result_parameters = {}
            output_file = scratch / "outputs" / "executor_output.json"
            if output_file.exists():
                result_parameters = json.loads(output_file.read_text()).get("parameterValues", {})
            artifacts, uploaded = {}, []
            for name in outputs:
                uri = storage.join(prefix, name)
                uploaded += [f"{name}/{n}" if n else name for n in _upload(_local(mount, uri), uri)]
                artifacts[name] = uri
            return TaskResult(artifacts, result_parameters, log, uploaded)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)  # the pod, and its emptyDir, are gone

    def _execute(self, command: list[str], scratch: Path, task: str, kill_when, timeout: float, mount: Path) -> str:
        workdir = scratch / "work"
        workdir.mkdir()
        site = str(Path(__file__).parent / "kfp_stand_in_site")
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               "PYTHONUNBUFFERED": "1", "TMPDIR": str(scratch), "KFP_STAND_IN_GCS_MOUNT": f"{mount}/",
               "PYTHONPATH": os.pathsep.join(p for p in (site, os.environ.get("PYTHONPATH")) if p)}
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


def _local(mount: Path, uri: str) -> Path:
    """Where kfp's SDK puts ``uri`` in the pod (``/gcs/<bucket>/<path>``), with the stand-in's mount point."""
    assert uri.startswith("gs://"), uri
    return mount / uri[len("gs://"):]


def _upload(local: Path, uri: str) -> list[str]:
    """What the launcher uploads of one output path: the file, or every file under the folder."""
    if local.is_file():
        storage.write_bytes(uri, local.read_bytes())
        return [""]
    if not local.is_dir():
        return []  # a missing output is only a warning in launcher_v2.go
    return storage.upload_tree(local, uri)


def _download(uri: str, local: Path) -> None:
    """What the launcher downloads for one input artifact: the object, or every object under the prefix."""
    names = storage.list_names(uri)
    if not names:
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(storage.read_bytes(uri))
        return
    for name in names:
        target = local / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(storage.read_bytes(storage.join(uri, *name.split("/"))))
