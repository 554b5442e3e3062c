"""The local runs of ``python pipeline.py run``: each a folder under the pipeline root with its ``run.json``.

A run folder is ``<pipeline root>/<run name>``, the name and the run id chosen here (not by kfp.local: see
``commands.local.run_identity``) and recorded in ``run.json`` with the run's parameters, so a resumed run
(``run --resume``) is the same run to kfp.local: the same task folders, the same cache keys, the same run id (the
train step's checkpoint folder). ``run.json`` is what marks a folder as this program's: ``runs`` lists and removes
only those. A run holds an exclusive ``flock`` on its folder while it runs: the lock ends with the process, so a
run killed without a word (``kill -9``, a lost machine) shows as interrupted, never as running.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from datetime import datetime
from pathlib import Path

from artifacts import storage
from artifacts.locations import is_remote, is_resource_name, resolve
from artifacts.schemas import excerpt
from mlp_core.errors import UserError as ClusterError

RUN_FILE = "run.json"
LOG_FILE = "pipeline.log"
CACHE_FOLDER = ".kfp_cache"
FORMAT = "jax-mlp-pipeline local run"
STATUSES = ("running", "finished", "failed", "interrupted")


def read(folder: Path) -> "dict | None":
    """The run record of ``folder``, or None when it has none (a folder this program did not make); one that
    cannot be read or is not a run record is a ``ClusterError``."""
    path = folder / RUN_FILE
    if not os.path.lexists(path):
        return None
    try:
        raw = storage.read_bytes(path, storage.RUN_JSON)
    except storage.StorageError as e:
        raise ClusterError(str(e)) from None
    try:
        record = json.loads(raw)
    except ValueError:
        record = None
    if not isinstance(record, dict) or record.get("format") != FORMAT or not isinstance(record.get("name"), str) \
            or not isinstance(record.get("parameters"), dict) or not isinstance(record.get("run_id"), str):
        raise ClusterError(f"{path} is malformed (not a run record of pipeline.py run): it begins {excerpt(raw)}")
    return record


_KIND_WORDS = {int: "an integer", float: "a number", str: "a text", bool: "true or false"}


def check_parameters(folder: Path, record: dict, types: "dict[str, type]") -> None:
    """Every parameter ``run.json`` records that the pipeline has is of its declared type (the values' own checks
    are the command line's: ``commands.arguments.validate_arguments``)."""
    for name, value in record["parameters"].items():
        kind = types.get(name)
        if kind is None:  # plan_run names them all
            continue
        if isinstance(value, bool) != (kind is bool) or not isinstance(value, float if kind is float else kind):
            if not (kind is float and isinstance(value, int) and not isinstance(value, bool)):
                raise ClusterError(f"{folder.name}: its {RUN_FILE} gives {name} {excerpt(value)}, not "
                                   f"{_KIND_WORDS.get(kind, kind.__name__)}")


def absolute(arguments: dict, names) -> dict:
    """``arguments`` with each local location among ``names`` made absolute, so that a resumed run reads and writes
    where the run did, from whatever folder it is resumed."""
    return {name: str(Path(value).absolute()) if name in names and isinstance(value, str) and value
            and not is_remote(value) and not is_resource_name(value) else value
            for name, value in arguments.items()}


def write(folder: Path, record: dict) -> None:
    """Replace ``folder``'s run record whole (a reader sees the old one or the new)."""
    storage.write_bytes(str(folder / RUN_FILE), (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())


def lock(folder: Path) -> "int | None":
    """An exclusive lock on ``folder`` (its open descriptor), or None while another process holds it."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)  # not inherited by the tasks' processes (PEP 446)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def running(folder: Path) -> bool:
    """True while a live ``pipeline.py run`` holds ``folder``'s lock."""
    from artifacts.outputs import locked

    return locked(folder, os.O_RDONLY | os.O_DIRECTORY)


def status(folder: Path, record: dict) -> str:
    """finished, failed, interrupted or running: a record that says running without a live holder was interrupted."""
    said = record.get("status")
    if said == "running" or said not in STATUSES:
        return "running" if running(folder) else "interrupted"
    return said


def new_name(pipeline_name: str, now: "datetime | None" = None) -> str:
    """``<pipeline>-YYYY-MM-DD-HH-MM-SS``: kfp.local's own form (executor_input_utils.get_local_pipeline_resource_name)
    without the microseconds."""
    return f"{pipeline_name}-{(now or datetime.now()).strftime('%Y-%m-%d-%H-%M-%S')}"


def create(root: Path, pipeline_name: str, record: dict) -> "tuple[Path, int]":
    """A new run folder under ``root`` (made here, so never one that existed), locked, with its record."""
    import uuid

    base = new_name(pipeline_name)
    for n in range(1, 100):
        folder = root / (base if n == 1 else f"{base}-{n}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        fd = lock(folder)
        record = {"format": FORMAT, "name": folder.name, "run_id": str(uuid.uuid4()), "pipeline": pipeline_name,
                  **record, "status": "running", "started_at": _now(), "attempts": 1}
        write(folder, record)
        return folder, fd
    raise ClusterError(f"--pipeline-root {root}: no free run name {base}[-N]")


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def runs(root: Path) -> "list[tuple[Path, dict]]":
    """This program's runs under ``root``, oldest first."""
    if not root.is_dir():
        return []
    found = []
    for folder in root.iterdir():
        if folder.is_dir() and not folder.is_symlink():
            try:
                record = read(folder)
            except ClusterError:  # not listed, as a folder without one: ``--resume`` and ``--remove`` say why
                continue
            if record is not None:
                found.append((folder, record))
    return sorted(found, key=lambda item: (item[1].get("started_at", ""), item[0].name))


def find(root: Path, text: str) -> "tuple[Path, dict]":
    """The run ``--resume TEXT`` names (a folder name or path under ``root``); "" is the newest unfinished one."""
    if not root.is_dir():
        raise ClusterError(f"--resume: --pipeline-root {root} does not exist, so it has no run to resume")
    if text == "":
        unfinished = [(f, r) for f, r in runs(root) if status(f, r) in ("interrupted", "failed")]
        if not unfinished:
            raise ClusterError(f"--resume: no interrupted or failed run under {root} to resume "
                               f"(python pipeline.py runs --pipeline-root {root} lists them)")
        return unfinished[-1]
    folder = _under(root, text, "--resume")
    record = read(folder)
    if record is None:
        raise ClusterError(f"--resume {text}: {folder} has no {RUN_FILE}, so it is not a run of pipeline.py run")
    state = status(folder, record)
    if state == "running":
        raise ClusterError(f"--resume {text}: the run is running now (another pipeline.py run holds it)")
    if state == "finished":
        raise ClusterError(f"--resume {text}: the run finished; there is nothing to resume")
    return folder, record


def _under(root: Path, text: str, flag: str) -> Path:
    """``text`` as a run folder directly under ``root``: a name, or a path whose folder is ``root``."""
    path = Path(text)
    folder = root / text if len(path.parts) == 1 and text not in (".", "..") else path
    if resolve(folder, flag).parent != resolve(root, "--pipeline-root"):
        raise ClusterError(f"{flag} {text}: not a run folder directly under --pipeline-root {root}")
    if not folder.is_dir():
        raise ClusterError(f"{flag} {text}: no run {folder.name} under {root} "
                           f"(python pipeline.py runs --pipeline-root {root} lists them)")
    return folder


def remove(root: Path, names: "list[str]") -> "list[str]":
    """Remove the named runs (all checked first: ours, not running); returns their names."""
    folders = []
    for text in names:
        folder = _under(root, text, "--remove")
        if read(folder) is None:
            raise ClusterError(f"--remove {text}: {folder} has no {RUN_FILE}, so pipeline.py run did not make it; "
                               "left alone")
        if running(folder):
            raise ClusterError(f"--remove {text}: the run is running now; stop it first")
        folders.append(folder)
    return [_remove(folder) for folder in dict.fromkeys(folders)]


def keep(root: Path, newest: int) -> "list[str]":
    """Remove all but the ``newest`` runs (running ones stay); returns the removed names."""
    if newest < 0:
        raise ClusterError(f"--keep must be 0 or more, got {newest}")
    old = runs(root)[:-newest] if newest else runs(root)
    return [_remove(folder) for folder, _ in old if not running(folder)]


def _remove(folder: Path) -> str:
    fd = lock(folder)  # held while removing: a resume started meanwhile is refused
    if fd is None:
        raise ClusterError(f"{folder.name}: the run started running; left alone")
    try:
        shutil.rmtree(folder)
    finally:
        os.close(fd)
    return folder.name


@contextlib.contextmanager
def held(folder: Path, fd: int):
    """Release ``folder``'s lock when the block ends."""
    try:
        yield
    finally:
        os.close(fd)
