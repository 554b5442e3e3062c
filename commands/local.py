"""``python pipeline.py run``: the whole DAG on this machine with kfp.local, in this environment or in the image.

A run is a folder (``commands.local_runs``); ``run --resume`` continues one under its own name and run id, so its
finished steps are cache hits and train resumes from its checkpoints. The terminal gets a line per step, the lines a
step marks for a person (``components._console``) and a summary; the run's ``pipeline.log`` gets everything.
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import logging
import os
import re
import shlex
import shutil
import signal
import sys
import threading
import time
import uuid
import warnings
from pathlib import Path
from unittest import mock

import psutil
from kfp import local
from kfp.local import executor_input_utils, placeholder_utils

from artifacts import storage
from artifacts.locations import check_local, is_remote, is_resource_name
from commands import local_runs
from commands.arguments import LOCATION_PARAMETERS, parameter_types, validate_arguments
from components._console import ENV, MARK
from mlp_core.errors import UserError
from platforms.options import ClusterOptions

RUNNERS = ("subprocess", "docker")
DEFAULT_ROOT = "local_outputs"  # the pipeline root of run and runs
CONTAINER_LABEL = "jax-mlp-pipeline.run-id"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# kfp.local's records about tasks (task_dispatcher.py, orchestrator/task_executor.py), colours stripped
_STARTED = re.compile(r"Executing task '([^']+)'")
_REUSED = re.compile(r"Task (\S+) cache hit")
_FAILED = re.compile(r"Task '([^']+)' finished with status FAILURE")
_MODULE_PATH = re.compile(r"^(?:[A-Za-z_]\w*\.)+(?=[A-Za-z_]\w*(?:Error|Exception|Interrupt|Exit)\w*(?::|$))")


def plan_run(arguments: dict, pipeline_root: "str | Path" = DEFAULT_ROOT, image: "str | None" = None,
             runner: "str | None" = None, gpus: "bool | None" = None, resume: "str | None" = None) -> dict:
    """What ``run_local`` runs, checked before any work; ``None``: not given.

    ``resume``: a run's folder name or path under the root, "" for the newest stopped one; the run keeps its recorded
    parameters, and a given value that differs from them is refused (``UserError``, one line).
    """
    from pipeline import DEFAULT_IMAGE, pipeline_parameters  # not above: a longer import chain (test_layout)

    root = Path(check_local(pipeline_root, "--pipeline-root"))  # kfp.local has no object-store backend
    if runner is not None and runner not in RUNNERS:
        raise ValueError(f"runner must be subprocess or docker, got {runner!r}")
    # absolute now, so that a run resumed from another folder reads and writes where it did
    arguments = {name: str(Path(value).absolute()) if name in LOCATION_PARAMETERS and isinstance(value, str) and value
                 and not is_remote(value) and not is_resource_name(value) else value
                 for name, value in arguments.items()}
    if resume is None:
        return {"root": root, "folder": None, "arguments": arguments, "image": image or DEFAULT_IMAGE,
                "runner": runner or "subprocess", "gpus": bool(gpus), "run_id": str(uuid.uuid4())}
    folder, record = local_runs.find(root, resume)
    local_runs.check_types(folder, record, parameter_types())
    defaults = {name: p.default for name, p in pipeline_parameters().items()}
    recorded = {**defaults, **record["parameters"]}
    for name, value in arguments.items():
        # the docker runner records --tfds-data-dir resolved
        same_dir = name == "tfds_data_dir" and isinstance(value, str) and str(Path(value).resolve()) == recorded[name]
        if name in recorded and value != recorded[name] and not same_dir:
            flag = "--" + name.replace("_", "-")
            raise UserError(f"{flag} {value}: run {folder.name} was started with {recorded[name]!r}; a resumed run "
                               f"keeps its parameters (leave {flag} out, or start a new run)")
    for name, value in (("runner", runner), ("image", image), ("gpus", gpus)):
        if value is not None and value != record.get(name):
            raise UserError(f"--{name} {value}: run {folder.name} ran with {record.get(name)!r}; a resumed run keeps "
                               f"it (leave --{name} out)")
    unknown = sorted(set(record["parameters"]) - set(defaults))
    if unknown or record.get("runner", "subprocess") not in RUNNERS:
        raise UserError(f"--resume {folder.name}: its {local_runs.RUN_FILE} names "
                           f"{'parameters the pipeline does not have: ' + ', '.join(unknown) if unknown else 'no known runner'}")
    validate_arguments(dict(record["parameters"]))  # run.json is input: checked as the command line's values are
    return {"root": root, "folder": folder, "arguments": dict(record["parameters"]),
            "image": record.get("image") or DEFAULT_IMAGE, "runner": record.get("runner", "subprocess"),
            "gpus": bool(record.get("gpus")), "run_id": record["run_id"]}


def run_local(plan: dict, verbose: bool = False, out=None, err=None) -> "LocalRun":
    """Run the DAG of ``plan`` (``plan_run``) with kfp.local; returns the run, ended."""
    from pipeline import PIPELINE_NAME, build_pipeline

    root, arguments, run_id = plan["root"], dict(plan["arguments"]), plan["run_id"]
    runner = _docker_runner(arguments, plan["gpus"], run_id) if plan["runner"] == "docker" else \
        local.SubprocessRunner(use_venv=False)  # every step in this Python environment
    root.mkdir(parents=True, exist_ok=True)
    if plan["folder"] is None:
        folder, fd = local_runs.create(root, PIPELINE_NAME, {"run_id": run_id, "parameters": arguments,
                                                             **{k: plan[k] for k in ("runner", "image", "gpus")}})
    else:
        folder, fd = plan["folder"], local_runs.reopen(plan["folder"])
    run, log = LocalRun(folder), folder / local_runs.LOG_FILE
    console = Console(log, verbose, out, err)
    try:
        # every step cached, in a cache of this run's own: a hit is a step an earlier attempt of this run completed
        local.init(runner=runner, pipeline_root=str(root), enable_caching=True,
                   cache_root=str(folder / local_runs.CACHE_FOLDER))
        pipeline_func = build_pipeline(plan["image"], ClusterOptions(cache_every_step=True))
        console.say(f"{'resuming run' if plan['folder'] else 'run'} {folder.name} under {_shown(root)} "
                    f"(its whole log: {_shown(log)})")
        started = time.perf_counter()
        try:
            # ENV: the steps' processes mark the lines a person reads (components/__init__.py)
            with warnings.catch_warnings(), mock.patch.dict(os.environ, {ENV: "1"}), \
                    run_identity(folder.name, run_id), _stopping_children(run_id), console.routed():
                # the subprocess runner runs the image's steps in this environment: its point
                warnings.filterwarnings("ignore", message=".*non-Python base image", category=RuntimeWarning)
                pipeline_func(**arguments)
            run.status = "finished"
        except RuntimeError as e:  # kfp.local: "Pipeline ... finished with status FAILURE. Inner task failed: ..."
            run.status, run.error = "failed", ANSI.sub("", str(e).splitlines()[0])
        except Interrupted as e:
            run.status, run.error = "interrupted", str(e)
        except BaseException as e:
            run.status, run.error = "failed", f"{type(e).__name__}: {e}"
            raise
        finally:
            run.seconds = time.perf_counter() - started
            summary = run.end()
        if run.status == "interrupted":
            console.say(f"interrupted: resume with python pipeline.py run --resume {folder.name} --pipeline-root "
                        f"{shlex.quote(str(root))}", error=True)
        for line in summary:
            console.say(line)
        if run.status == "failed":
            console.say(f"error: {run.error} (the whole log: {_shown(log)})", error=True)
    finally:
        console.close()
        os.close(fd)
    return run


@contextlib.contextmanager
def run_identity(name: str, run_id: str):
    """kfp.local runs the pipeline in the folder ``name`` with the job id ``run_id``: a resumed run's own."""
    ids, own_id = iter([run_id]), placeholder_utils.make_random_id
    # kfp.local has no option for either; its pipeline runner looks both up per run, the job id its first id drawn
    with mock.patch.object(executor_input_utils, "get_local_pipeline_resource_name", lambda pipeline_name: name), \
            mock.patch.object(placeholder_utils, "make_random_id", lambda: next(ids, None) or own_id()):
        yield


class Interrupted(BaseException):
    """SIGINT or SIGTERM during a run: raised in the main thread once the run's processes are stopped."""


@contextlib.contextmanager
def _stopping_children(run_id: str):
    """On SIGINT or SIGTERM, stop every process and container of the run (``kill -INT`` reaches this process alone),
    then raise ``Interrupted``."""
    signals = (signal.SIGINT, signal.SIGTERM)

    def handler(signum, frame):
        for s in signals:  # a second Ctrl-C while the first one stops the steps
            signal.signal(s, signal.SIG_IGN)
        children = psutil.Process().children(recursive=True)
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.terminate()
        _, alive = psutil.wait_procs(children, timeout=10)
        for child in alive:
            with contextlib.suppress(psutil.Error):
                child.kill()
        psutil.wait_procs(alive, timeout=5)
        with contextlib.suppress(Exception):  # no docker package, no engine, or no containers
            import docker  # kfp.local starts the docker runner's containers detached

            for container in docker.from_env().containers.list(filters={"label": f"{CONTAINER_LABEL}={run_id}"}):
                container.stop(timeout=10)
        raise Interrupted(signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _docker_runner(arguments: dict, gpus: bool, run_id: str) -> local.DockerRunner:
    """A DockerRunner, once an engine answers: steps run as this user, with the TFDS data dir of ``arguments`` (set
    to the resolved one) mounted read-only, labelled with the run id, and with ``gpus`` all local GPUs."""
    try:
        import docker
    except ImportError:
        raise UserError("--runner docker needs the docker package: pip install -e '.[docker]'") from None
    try:
        docker.from_env(timeout=10).close()  # it asks the engine for its API version
    except docker.errors.DockerException:
        where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        raise UserError(f"--runner docker: no Docker engine answers at {where}; start Docker (Docker Desktop, or "
                           "sudo systemctl start docker) or run without --runner docker") from None
    data_dir = arguments.get("tfds_data_dir") or os.environ.get("TFDS_DATA_DIR") or str(Path.home() / "tensorflow_datasets")
    mounts = []
    if not data_dir.startswith("gs://"):
        arguments["tfds_data_dir"] = data_dir = str(Path(data_dir).resolve())
        mounts = [docker.types.Mount(target=data_dir, source=data_dir, type="bind", read_only=True)]
    extra = {"device_requests": [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]} if gpus else {}
    # HOME: this user has none in the image
    return local.DockerRunner(user=f"{os.getuid()}:{os.getgid()}", environment={"HOME": "/tmp", ENV: "1"},
                              labels={CONTAINER_LABEL: run_id}, mounts=mounts, **extra)


def _shown(path: Path) -> str:
    """A path as short as it reads: relative to the working folder when under it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(Path(path).resolve())


def error_of(lines: "list[str]") -> str:
    """A failed step's error in one line: its last ``error: ...`` line, else its exception's, else its last line."""
    said = [line[len("error: "):] for line in lines if line.startswith("error: ")]
    if said:
        return said[-1]
    tracebacks = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")]
    if tracebacks:  # the exception: the first unindented line after the last traceback's frames
        lines = [line for line in lines[tracebacks[-1] + 1:] if line and not line[0].isspace()][:1] or lines
    return _MODULE_PATH.sub("", next((line for line in reversed(lines) if line.strip()), "no output"))


class Console(io.TextIOBase):
    """Where a run's lines go: all to its log; to the terminal a line per step, the steps' marked lines and failures
    (every line with ``verbose``). While ``routed``, it is this process's stdout and stderr, where kfp.local prints
    its records and the steps' output, and a filter on the root logger, where it sees kfp.local's records."""

    encoding = "utf-8"

    def __init__(self, log: Path, verbose: bool = False, out=None, err=None):
        super().__init__()
        self.out, self.err = out or sys.stdout, err or sys.stderr
        self.verbose, self.colour = verbose, verbose and getattr(self.out, "isatty", bool)()
        self.log = open(log, "a", encoding="utf-8", errors="replace")
        self.recent: collections.deque[str] = collections.deque(maxlen=400)  # the running step's last lines
        self._partial = ""
        self._lock = threading.RLock()

    def say(self, text: str = "", error: bool = False) -> None:
        """A line of ours: on the terminal and in the log."""
        with self._lock:
            self.log.write(text + "\n")
            self.log.flush()
            self._show(self.err if error else self.out, text)

    def write(self, text: str) -> int:
        """Whole lines to ``line``; a partial one waits for its end."""
        with self._lock:
            *lines, self._partial = (self._partial + text).split("\n")
            for line in lines:
                self.line(line)
        return len(text)

    def line(self, raw: str) -> None:
        """One line printed during the run."""
        plain = ANSI.sub("", raw).rstrip("\r")
        own = plain[4:] if plain.startswith("    ") else plain  # kfp.local indents a step's lines by four spaces
        human = MARK in plain
        if human:
            before, _, rest = own.partition(MARK)
            own = (before if before.strip() else "") + rest.replace(MARK, "")
        self.log.write(plain.replace(MARK, "") + "\n")
        self.log.flush()
        if own.strip():
            self.recent.append(own)
        if self.verbose:
            self._show(self.out, (raw if self.colour else plain).replace(MARK, ""))
        elif human:
            self._show(self.out, "  " + own)

    def filter(self, record: logging.LogRecord) -> bool:
        """kfp.local's records about tasks: a line when one starts (quiet only), is reused, or fails."""
        message = ANSI.sub("", record.getMessage())
        with self._lock:
            if match := _STARTED.match(message):
                self.recent.clear()
                if not self.verbose:
                    self._show(self.out, match[1])
            elif (match := _REUSED.match(message)) and not self.verbose:
                self._show(self.out, f"{match[1]}: reused (done in an earlier attempt of this run)")
            elif match := _FAILED.match(message):
                self._show(self.err, f"{match[1]} failed: {error_of(list(self.recent))}")
        return True

    @contextlib.contextmanager
    def routed(self):
        """This process's stdout, stderr, warnings and log records through the console for the block."""
        root = logging.getLogger()
        level, handlers = root.level, root.handlers[:]
        handler = logging.StreamHandler(self)  # kfp.local's own, while a task runs, also writes to sys.stdout
        handler.setFormatter(logging.Formatter("%(asctime)s - %(levelname)s - %(message)s", "%H:%M:%S"))
        root.handlers[:] = [handler]
        root.setLevel(logging.INFO)
        root.addFilter(self)
        try:
            with contextlib.redirect_stdout(self), contextlib.redirect_stderr(self):
                yield self
        finally:
            root.removeFilter(self)
            root.handlers[:] = handlers
            root.setLevel(level)
            if self._partial:
                self.line(self._partial)
                self._partial = ""

    def close(self) -> None:
        self.log.close()
        super().close()

    @staticmethod
    def _show(stream, text: str) -> None:
        stream.write(text + "\n")
        stream.flush()


class LocalRun:
    """A run: its folder, its record, how it ended. What its tasks made is read from their ``executor_output.json``
    (kfp.local writes each task's outputs there): the pipeline returns only what every run makes."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.record = local_runs.read(self.folder) or {}
        self.status, self.error, self.seconds = self.record.get("status", ""), self.record.get("error", ""), 0.0

    def outputs(self, task: str) -> "dict | None":
        """The task's executor output, or None when the task did not run."""
        try:
            return json.loads(storage.read_bytes(self.folder / task / "executor_output.json", storage.METRICS))
        except (OSError, ValueError):
            return None

    def parameter(self, task: str, name: str):
        return ((self.outputs(task) or {}).get("parameterValues") or {}).get(name)

    def published(self) -> "tuple[str, str]":
        """(version, "") when this run published one, else ("", why not)."""
        if version := self.parameter("publish", "Output"):
            return version, ""
        if not self.record.get("parameters", {}).get("publish_uri"):
            return "", "no --publish-uri"
        if self.parameter("new-data", "Output") is False:
            return "", "nothing new since the champion"
        if self.parameter("evaluate", "blessed") is False:
            return "", f"not blessed: {self.parameter('evaluate', 'reason')}"
        return "", "the run did not get that far"

    def end(self) -> "list[str]":
        """Write how the run ended into its ``run.json``; returns its summary (none when interrupted)."""
        accuracy, loss = self.parameter("evaluate", "test_accuracy"), self.parameter("evaluate", "test_loss")
        version, why = self.published()
        self.record = dict(self.record, status=self.status, ended_at=local_runs.now(), seconds=round(self.seconds, 1),
                           published=version, not_published=why)
        if self.error:
            self.record["error"] = self.error
        if accuracy is not None:
            self.record.update(test_accuracy=accuracy, test_loss=loss)
        local_runs.write(self.folder, self.record)
        if self.status == "interrupted":
            return []
        lines = ["", f"pipeline {self.status} in {self.seconds:.1f} s: {_shown(self.folder)}",
                 f"  log        {_shown(self.folder / local_runs.LOG_FILE)}"]
        for label, task, name in (("report", "evaluate", "report.html"), ("tuning", "tune-choose", "tune-report.html"),
                                  ("validation", "validate", "validation-report.html")):
            # a copy named .html: kfp names an artifact after its output, and a browser shows that file (or a link
            # to it) as text
            if (self.folder / task / "report").is_file():
                (self.folder / name).unlink(missing_ok=True)
                shutil.copyfile(self.folder / task / "report", self.folder / name)
                lines.append(f"  {label:<10} {(self.folder / name).absolute().as_uri()}")
        if self.status == "finished":
            lines.append(f"  published  {version or 'nothing: ' + why}")
        if self.status == "finished" and self.parameter("new-data", "Output") is False:
            lines.append("nothing new since the champion: stopped after ingest (the new-data step says why)")
        elif accuracy is not None:
            lines.append(f"test accuracy {accuracy:.4f}, test loss {loss:.4f} "
                         "(the notebook's loss: -mean(log_softmax(logits) * one_hot))")
        return lines
