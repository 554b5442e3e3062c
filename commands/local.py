"""Running the whole pipeline on this machine with kfp.local: in this environment or in the project image.

Every run is a folder ``<pipeline root>/<run name>`` (``commands.local_runs``) that holds kfp.local's task folders,
the run's record (``run.json``), its whole log (``pipeline.log``) and kfp.local's cache of its completed tasks. A run
that stopped (Ctrl-C, SIGTERM, a kill, a failed step) resumes with ``run --resume``: the same run name and run id,
so its completed tasks hit the cache and the train step resumes from its own checkpoints.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import sys
import time
from pathlib import Path

from commands import local_runs
from mlp_core.errors import UserError as ClusterError

RUNNERS = ("subprocess", "docker")
DEFAULT_ROOT = "local_outputs"  # the pipeline root of run and runs


class Interrupted(BaseException):
    """SIGINT or SIGTERM during a run: raised in the main thread once the tasks' processes are stopped."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def plan_run(arguments: dict, pipeline_root: "str | Path" = DEFAULT_ROOT, image: "str | None" = None,
             runner: "str | None" = None, gpus: "bool | None" = None, resume: "str | None" = None) -> dict:
    """Check a run's inputs before any work: what ``run_local`` runs. ``None``: not given.

    ``resume``: a run folder name or path under the root, "" for the newest unfinished one; its recorded
    parameters are used, and any given value that differs from them is refused (``ClusterError``, one line).
    """
    from artifacts.locations import check_local
    from pipeline import DEFAULT_IMAGE, pipeline_parameters

    # kfp.local writes every artifact under this folder: a gs:// or other remote-looking text is refused, never
    # turned into a folder named "gs:" here (kfp.local has no object-store backend).
    root = Path(check_local(pipeline_root, "--pipeline-root"))
    if runner is not None and runner not in RUNNERS:
        raise ValueError(f"runner must be subprocess or docker, got {runner!r}")
    from commands.arguments import LOCATION_PARAMETERS, parameter_types

    arguments = local_runs.absolute(arguments, LOCATION_PARAMETERS)  # fixed now: a resume from elsewhere is the same run
    if resume is None:
        return {"root": root, "folder": None, "arguments": dict(arguments), "image": image or DEFAULT_IMAGE,
                "runner": runner or "subprocess", "gpus": bool(gpus)}
    folder, record = local_runs.find(root, resume)
    local_runs.check_parameters(folder, record, parameter_types())
    defaults = {name: p.default for name, p in pipeline_parameters().items()}
    recorded = {**defaults, **record["parameters"]}
    for name, value in arguments.items():
        if name in recorded and value != recorded[name] and not _same_location(name, value, recorded[name]):
            flag = "--" + name.replace("_", "-")
            raise ClusterError(f"{flag} {value}: run {folder.name} was started with {recorded[name]!r}; a resumed run "
                               f"keeps its parameters (leave {flag} out, or start a new run)")
    for name, value in (("runner", runner), ("image", image), ("gpus", gpus)):
        if value is not None and value != record.get(name):
            raise ClusterError(f"--{name} {value}: run {folder.name} ran with {record.get(name)!r}; a resumed run keeps "
                               f"it (leave --{name} out)")
    # run.json is input like any other: its parameters pass the same checks as the command line's
    unknown = sorted(set(record["parameters"]) - set(defaults))
    if unknown or record.get("runner", "subprocess") not in RUNNERS:
        raise ClusterError(f"--resume {folder.name}: its {local_runs.RUN_FILE} names "
                           f"{'parameters the pipeline does not have: ' + ', '.join(unknown) if unknown else 'no known runner'}")
    from commands.arguments import validate_arguments

    validate_arguments(dict(record["parameters"]))
    return {"root": root, "folder": folder, "arguments": dict(record["parameters"]),
            "image": record.get("image") or DEFAULT_IMAGE, "runner": record.get("runner", "subprocess"),
            "gpus": bool(record.get("gpus"))}


def _same_location(name: str, given, recorded) -> bool:
    """--tfds-data-dir given relative, recorded resolved (the docker runner resolves it)."""
    return name == "tfds_data_dir" and isinstance(given, str) and not given.startswith("gs://") \
        and str(Path(given).resolve()) == recorded


def run_local(plan: dict, verbose: bool = False, out=None, err=None) -> "LocalRun":
    """Run the DAG of ``plan`` (``plan_run``) with kfp.local; returns the run (``LocalRun``: folder, status, summary).

    ``runner="subprocess"``: every step in this Python environment.
    ``runner="docker"``: every step in ``image`` with ``kfp.local.DockerRunner``,
    as the cluster runs it; the TFDS data dir is mounted read-only, steps run as
    this user (so the artifacts they write are yours), and ``gpus`` passes all
    local GPUs through (NVIDIA container toolkit needed).

    Quiet unless ``verbose``: a line per task and the steps' own lines on ``out``; everything in the run's log.
    """
    from kfp import local

    from commands.local_console import ENV, Console, routed
    from platforms.options import ClusterOptions
    from pipeline import PIPELINE_NAME, build_pipeline

    out, err = out or sys.stdout, err or sys.stderr
    root, arguments = plan["root"], dict(plan["arguments"])
    if plan["runner"] == "docker":
        _check_docker(arguments)  # before the run folder: a resumed run mounts the same folder
    root.mkdir(parents=True, exist_ok=True)
    # Every step cached, in a cache of this run's own: a hit is always one of its completed steps, on a resume.
    pipeline_func = build_pipeline(plan["image"], ClusterOptions(cache_every_step=True))
    if plan["runner"] != "docker":
        import warnings

        # Running the steps in this environment instead of the image is the point of this runner.
        warnings.filterwarnings("ignore", message=".*non-Python base image", category=RuntimeWarning)

    resuming = plan["folder"] is not None
    if not resuming:
        folder, fd = local_runs.create(root, PIPELINE_NAME, {
            "parameters": arguments, "runner": plan["runner"], "image": plan["image"], "gpus": plan["gpus"]})
        record = local_runs.read(folder)
    else:
        folder = plan["folder"]
        fd = local_runs.lock(folder)
        if fd is None:
            raise ClusterError(f"--resume {folder.name}: the run is running now (another pipeline.py run holds it)")
        record = local_runs.read(folder)
        record.update(status="running", attempts=record.get("attempts", 1) + 1, resumed_at=local_runs._now())
        for key in ("ended_at", "error", "seconds"):
            record.pop(key, None)
        local_runs.write(folder, record)
    run = LocalRun(folder, record)
    with local_runs.held(folder, fd):
        if plan["runner"] == "docker":
            local_runner = _docker_runner(arguments, plan["gpus"], record["run_id"])
        else:
            local_runner = local.SubprocessRunner(use_venv=False)
        local.init(runner=local_runner, pipeline_root=str(root), enable_caching=True,
                   cache_root=str(folder / local_runs.CACHE_FOLDER))
        console = Console(folder / local_runs.LOG_FILE, verbose, out, err)
        console.say(f"{'resuming run' if resuming else 'run'} {folder.name} under {_shown(root)} "
                    f"(its whole log: {_shown(folder / local_runs.LOG_FILE)})")
        started = time.perf_counter()
        previous = os.environ.get(ENV)
        os.environ[ENV] = "1"  # the tasks' processes mark their own lines (components/__init__.py)
        try:
            with run_identity(folder.name, record["run_id"]), _stopping_children(record["run_id"]), routed(console):
                pipeline_func(**arguments)
            run.status = "finished"
        except RuntimeError as e:  # kfp.local: "Pipeline ... finished with status FAILURE. Inner task failed: ..."
            from commands.local_console import ANSI

            run.status, run.error = "failed", ANSI.sub("", str(e).splitlines()[0])  # kfp colours its messages
        except Interrupted as e:
            run.status, run.error = "interrupted", e.args[0]
        except BaseException as e:
            run.status, run.error = "failed", f"{type(e).__name__}: {e}"
            raise
        finally:
            if previous is None:
                os.environ.pop(ENV, None)
            else:
                os.environ[ENV] = previous
            run.seconds = time.perf_counter() - started
            run.failed, run.reused = dict(console.failed), list(console.reused)
            run.record_end()
        if run.status == "interrupted":
            console.say(f"interrupted: resume with python pipeline.py run --resume {folder.name} --pipeline-root "
                        f"{shlex.quote(str(root))}", error=True)
        else:
            for line in run.summary():
                console.say(line)
            if run.status == "failed":
                console.say(f"error: {run.error} (the whole log: {_shown(folder / local_runs.LOG_FILE)})", error=True)
        console.close()
    return run


@contextlib.contextmanager
def run_identity(name: str, run_id: str):
    """kfp.local runs the pipeline under ``name`` with ``run_id``, not a name and id of its own.

    kfp.local 2.17 names a run's folder ``executor_input_utils.get_local_pipeline_resource_name`` (the pipeline's
    name and the time) and draws its job id (``{{$.pipeline_job_uuid}}``: the train step's run id, its checkpoint
    folder) from ``placeholder_utils.make_random_id`` (kfp/local/pipeline_orchestrator.py,
    ``_run_local_pipeline_implementation``; that call is the run's first, before any task's id). Both module
    attributes are looked up when called, so replacing them for the run's duration gives a resumed run its
    first run's folder (the same task folders and cache keys) and run id (the same checkpoints).
    """
    from kfp.local import executor_input_utils, placeholder_utils

    own_name, own_id = executor_input_utils.get_local_pipeline_resource_name, placeholder_utils.make_random_id
    ids = iter([run_id])

    def make_random_id() -> str:
        return next(ids, None) or own_id()

    executor_input_utils.get_local_pipeline_resource_name = lambda pipeline_name: name
    placeholder_utils.make_random_id = make_random_id
    try:
        yield
    finally:
        executor_input_utils.get_local_pipeline_resource_name = own_name
        placeholder_utils.make_random_id = own_id


@contextlib.contextmanager
def _stopping_children(run_id: str):
    """On SIGINT or SIGTERM: stop every process the run started, then raise ``Interrupted`` here.

    A terminal's Ctrl-C signals the whole process group, but ``kill -INT <pid>`` (or a service manager's SIGTERM)
    only this process: kfp.local's task processes would run on, writing checkpoints, with nobody reading them.
    """
    stopping = []

    def handler(signum, frame):
        if stopping:  # a second Ctrl-C while the first one's stopping the tasks
            return
        stopping.append(signum)
        stop_children(run_id)
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def stop_children(run_id: str = "", timeout: float = 10.0) -> None:
    """Terminate every descendant process (SIGTERM, then SIGKILL after ``timeout`` s) and this run's containers.

    psutil (a dependency of tensorflow-datasets, so always installed) walks the process tree; the tasks' shells
    and their Python processes are children and grandchildren of this one.
    """
    import psutil

    children = psutil.Process().children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=timeout)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()
    psutil.wait_procs(alive, timeout=5)
    if run_id:
        _stop_containers(run_id)


CONTAINER_LABEL = "jax-mlp-pipeline.run-id"


def _stop_containers(run_id: str) -> None:
    """The docker runner's containers of this run (labelled with its id): kfp.local starts them detached."""
    try:
        import docker
    except ImportError:
        return
    with contextlib.suppress(Exception):  # no engine, or the containers already gone: nothing to stop
        client = docker.from_env()
        for container in client.containers.list(filters={"label": f"{CONTAINER_LABEL}={run_id}"}):
            container.stop(timeout=10)


def _shown(path: Path) -> str:
    """A path as short as it reads: relative to the working folder when under it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(Path(path).resolve())


class LocalRun:
    """A kfp.local run: its folder ``<pipeline root>/<run name>/<task>/<artifact>``, its record and its summary.

    kfp.local writes each task's outputs (artifact URIs and metadata, parameter values) to
    ``<task>/executor_output.json`` (kfp/local/executor_output_utils.py); the summary is read from there, since
    the pipeline returns only what every run makes (the steps after new_data run under a condition).
    """

    def __init__(self, folder: Path, record: "dict | None" = None):
        self.folder = Path(folder)
        self.record = record if record is not None else (local_runs.read(self.folder) or {})
        self.status = self.record.get("status", "")
        self.error = self.record.get("error", "")
        self.seconds = 0.0
        self.failed: dict[str, str] = {}
        self.reused: list[str] = []
        self.console = None

    def outputs(self, task: str) -> "dict | None":
        """The task's executor output, or None when the task did not run."""
        import json

        from artifacts import storage

        try:
            return json.loads(storage.read_bytes(self.folder / task / "executor_output.json", storage.METRICS))
        except (OSError, ValueError):
            return None

    def artifact(self, task: str, name: str) -> "dict | None":
        found = ((self.outputs(task) or {}).get("artifacts") or {}).get(name, {}).get("artifacts") or [None]
        return found[0]

    def parameter(self, task: str, name: str):
        return ((self.outputs(task) or {}).get("parameterValues") or {}).get(name)

    def page(self, task: str, name: str) -> "Path | None":
        """``name`` in the run folder: a copy of ``task``'s HTML report, or None when it wrote none.

        kfp names an artifact after its output, with no extension: a browser shows that file, or a link to it
        (it follows the link), as text.
        """
        report = self.folder / task / "report"
        if not report.is_file():
            return None
        page = self.folder / name
        page.unlink(missing_ok=True)  # a link, as runs made before showed the report
        shutil.copyfile(report, page)
        return page

    def published(self) -> "tuple[str, str]":
        """(version, "") when this run published one, else ("", why not)."""
        version = self.parameter("publish", "Output")
        if version:
            return version, ""
        if not self.record.get("parameters", {}).get("publish_uri"):
            return "", "no --publish-uri"
        if self.parameter("new-data", "Output") is False:
            return "", "nothing new since the champion"
        if self.parameter("evaluate", "blessed") is False:
            return "", f"not blessed: {self.parameter('evaluate', 'reason')}"
        return "", "the run did not get that far"

    def record_end(self) -> None:
        """Write how the run ended into its ``run.json``."""
        record = dict(self.record, status=self.status, ended_at=local_runs._now(), seconds=round(self.seconds, 1))
        if self.error:
            record["error"] = self.error
        accuracy, loss = self.parameter("evaluate", "test_accuracy"), self.parameter("evaluate", "test_loss")
        if accuracy is not None:
            record.update(test_accuracy=accuracy, test_loss=loss)
        version, why = self.published()
        record.update(published=version, not_published=why if not version else "")
        self.record = record
        local_runs.write(self.folder, record)

    def summary(self) -> "list[str]":
        """What the run did, in a few lines: where it is, its log and report, what was published, the test accuracy."""
        log = _shown(self.folder / local_runs.LOG_FILE)
        if self.status == "interrupted":
            return []
        lines = ["", f"pipeline {self.status} in {self.seconds:.1f} s: {_shown(self.folder)}",
                 f"  log        {log}"]
        for label, task, name in (("report", "evaluate", "report.html"), ("tuning", "tune-choose", "tune-report.html"),
                                  ("validation", "validate", "validation-report.html")):
            page = self.page(task, name)
            if page is not None:
                lines.append(f"  {label:<10} {page.absolute().as_uri()}")
        version, why = self.published()
        if self.status == "finished":
            lines.append(f"  published  {version or 'nothing: ' + why}")
        accuracy, loss = self.parameter("evaluate", "test_accuracy"), self.parameter("evaluate", "test_loss")
        if self.status == "finished" and self.parameter("new-data", "Output") is False:
            lines.append("nothing new since the champion: stopped after ingest (the new-data step says why)")
        elif accuracy is not None:
            lines.append(f"test accuracy {accuracy:.4f}, test loss {loss:.4f} "
                         "(the notebook's loss: -mean(log_softmax(logits) * one_hot))")
        return lines


def _check_docker(arguments: dict) -> None:
    """The docker package and a Docker engine that answers; ``arguments`` get the TFDS data dir the steps'
    containers see (this machine's, resolved)."""
    try:
        import docker
    except ImportError:
        raise ClusterError("--runner docker needs the docker package: pip install -e '.[docker]'") from None
    try:
        docker.from_env(timeout=10).close()  # it asks the engine for its API version
    except docker.errors.DockerException:
        where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        raise ClusterError(f"--runner docker: no Docker engine answers at {where}; start Docker (Docker Desktop, or "
                           "sudo systemctl start docker) or run without --runner docker") from None
    data_dir = arguments.get("tfds_data_dir") or os.environ.get("TFDS_DATA_DIR") or str(Path.home() / "tensorflow_datasets")
    if not data_dir.startswith("gs://"):
        arguments["tfds_data_dir"] = str(Path(data_dir).resolve())


def _docker_runner(arguments: dict, gpus: bool, run_id: str):
    """A DockerRunner that sees the TFDS data dir of ``arguments`` (``_check_docker``), read-only."""
    from docker.types import DeviceRequest, Mount
    from kfp import local

    from commands.local_console import ENV

    data_dir = arguments.get("tfds_data_dir", "")
    mounts = [] if data_dir.startswith("gs://") else [Mount(target=data_dir, source=data_dir, type="bind", read_only=True)]
    extra = {"device_requests": [DeviceRequest(count=-1, capabilities=[["gpu"]])]} if gpus else {}
    return local.DockerRunner(
        user=f"{os.getuid()}:{os.getgid()}",
        # a host uid has no home in the image; the steps mark the lines a person reads (commands/local_console.py)
        environment={"HOME": "/tmp", ENV: "1"},
        labels={CONTAINER_LABEL: run_id},  # what an interrupted run stops (_stop_containers)
        mounts=mounts,
        **extra,
    )
