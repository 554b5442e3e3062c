"""The runs of ``python pipeline.py run``: a folder ``<pipeline root>/<run name>`` each, marked by its ``run.json``.

``run.json`` holds the run's name, run id and parameters, so ``run --resume`` is the same run to kfp.local; ``runs``
lists and removes only folders that have one. A run holds an ``flock`` on its folder while it runs: the lock ends
with the process, so a killed run shows as interrupted, never as running.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import uuid
from datetime import datetime
from pathlib import Path

from artifacts import storage
from artifacts.locations import resolve
from artifacts.outputs import locked
from artifacts.schemas import excerpt
from mlp_core.errors import UserError

RUN_FILE, LOG_FILE, CACHE_FOLDER = "run.json", "pipeline.log", ".kfp_cache"
FORMAT = "jax-mlp-pipeline local run"
ENDED = ("finished", "failed", "interrupted")
_KINDS = {int: "an integer", float: "a number", str: "a text", bool: "true or false"}


def read(folder: Path) -> "dict | None":
    """``folder``'s run record, or None when it has none; one that is not a run record is a ``UserError``."""
    path = folder / RUN_FILE
    if not os.path.lexists(path):
        return None
    try:
        raw = storage.read_bytes(path, storage.RUN_JSON)
    except storage.StorageError as e:
        raise UserError(str(e)) from None
    try:
        record = json.loads(raw)
    except ValueError:
        record = None
    if not isinstance(record, dict) or record.get("format") != FORMAT or not all(
            isinstance(record.get(key), kind) for key, kind in (("name", str), ("parameters", dict), ("run_id", str))):
        raise UserError(f"{path} is malformed (not a run record of pipeline.py run): it begins {excerpt(raw)}")
    return record


def check_types(folder: Path, record: dict, types: "dict[str, type]") -> None:
    """Each recorded parameter the pipeline has is of its declared type (its value is checked as a flag's is)."""
    for name, value in record["parameters"].items():
        kind = types.get(name)
        if kind and not (isinstance(value, kind) and isinstance(value, bool) == (kind is bool)
                         or kind is float and type(value) is int):
            raise UserError(f"{folder.name}: its {RUN_FILE} gives {name} {excerpt(value)}, "
                               f"not {_KINDS.get(kind, kind.__name__)}")


def write(folder: Path, record: dict) -> None:
    """Replace ``folder``'s run record whole (a reader sees the old one or the new)."""
    storage.write_bytes(str(folder / RUN_FILE), (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())


def now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def lock(folder: Path) -> "int | None":
    """An exclusive lock on ``folder`` (its descriptor, which the tasks' processes do not inherit), or None while
    another process holds it."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def running(folder: Path) -> bool:
    """True while a live ``pipeline.py run`` holds ``folder``'s lock."""
    return locked(folder, os.O_RDONLY | os.O_DIRECTORY)


def status(folder: Path, record: dict) -> str:
    """finished, failed, interrupted or running: a record that says running without a live holder was interrupted."""
    if record.get("status") in ENDED:
        return record["status"]
    return "running" if running(folder) else "interrupted"


def create(root: Path, pipeline_name: str, record: dict) -> "tuple[Path, int]":
    """A new run folder ``<pipeline>-<time>[-N]`` under ``root`` (never one that existed), locked, with its record."""
    base = f"{pipeline_name}-{datetime.now():%Y-%m-%d-%H-%M-%S}"
    for n in range(1, 100):
        folder = root / (base if n == 1 else f"{base}-{n}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        fd = lock(folder)
        write(folder, {"format": FORMAT, "name": folder.name, "run_id": str(uuid.uuid4()), "pipeline": pipeline_name,
                       **record, "status": "running", "started_at": now(), "attempts": 1})
        return folder, fd
    raise UserError(f"--pipeline-root {root}: no free run name {base}[-N]")


def reopen(folder: Path) -> int:
    """Lock a stopped run's folder again and mark it running (one more attempt)."""
    fd = lock(folder)
    if fd is None:
        raise UserError(f"--resume {folder.name}: the run is running now (another pipeline.py run holds it)")
    record = {k: v for k, v in read(folder).items() if k not in ("ended_at", "error", "seconds")}
    write(folder, dict(record, status="running", attempts=record.get("attempts", 1) + 1, resumed_at=now()))
    return fd


def runs(root: Path) -> "list[tuple[Path, dict]]":
    """This program's runs under ``root``, oldest first (a malformed record is left out; naming it says why)."""
    found = []
    for folder in root.iterdir() if root.is_dir() else ():
        if folder.is_dir() and not folder.is_symlink():
            try:
                record = read(folder)
            except UserError:
                continue
            if record is not None:
                found.append((folder, record))
    return sorted(found, key=lambda item: (item[1].get("started_at", ""), item[0].name))


def find(root: Path, text: str) -> "tuple[Path, dict]":
    """The run ``--resume TEXT`` names (a folder name or path under ``root``); "" is the newest unfinished one."""
    if not root.is_dir():
        raise UserError(f"--resume: --pipeline-root {root} does not exist, so it has no run to resume")
    if text == "":
        unfinished = [(f, r) for f, r in runs(root) if status(f, r) in ("interrupted", "failed")]
        if not unfinished:
            raise UserError(f"--resume: no interrupted or failed run under {root} to resume "
                               f"(python pipeline.py runs --pipeline-root {root} lists them)")
        return unfinished[-1]
    folder = _under(root, text, "--resume")
    record = read(folder)
    if record is None:
        raise UserError(f"--resume {text}: {folder} has no {RUN_FILE}, so it is not a run of pipeline.py run")
    state = status(folder, record)
    if state == "running":
        raise UserError(f"--resume {text}: the run is running now (another pipeline.py run holds it)")
    if state == "finished":
        raise UserError(f"--resume {text}: the run finished; there is nothing to resume")
    return folder, record


def _under(root: Path, text: str, flag: str) -> Path:
    """``text`` as a run folder directly under ``root``: a name, or a path whose folder is ``root``."""
    folder = root / text if len(Path(text).parts) == 1 and text not in (".", "..") else Path(text)
    if resolve(folder, flag).parent != resolve(root, "--pipeline-root"):
        raise UserError(f"{flag} {text}: not a run folder directly under --pipeline-root {root}")
    if not folder.is_dir():
        raise UserError(f"{flag} {text}: no run {folder.name} under {root} "
                           f"(python pipeline.py runs --pipeline-root {root} lists them)")
    return folder


def remove(root: Path, names: "list[str]") -> "list[str]":
    """Remove the named runs (all checked first: ours, not running); returns their names."""
    folders = []
    for text in names:
        folder = _under(root, text, "--remove")
        if read(folder) is None:
            raise UserError(f"--remove {text}: {folder} has no {RUN_FILE}, so pipeline.py run did not make it; "
                               "left alone")
        if running(folder):
            raise UserError(f"--remove {text}: the run is running now; stop it first")
        folders.append(folder)
    return [_remove(folder) for folder in dict.fromkeys(folders)]


def keep(root: Path, newest: int) -> "list[str]":
    """Remove all but the ``newest`` runs (running ones stay); returns the removed names."""
    if newest < 0:
        raise UserError(f"--keep must be 0 or more, got {newest}")
    old = runs(root)[:-newest] if newest else runs(root)
    return [_remove(folder) for folder, _ in old if not running(folder)]


def _remove(folder: Path) -> str:
    """Remove a run folder, locked meanwhile so that a resume started now is refused."""
    fd = lock(folder)
    if fd is None:
        raise UserError(f"{folder.name}: the run started running; left alone")
    try:
        shutil.rmtree(folder)
    finally:
        os.close(fd)
    return folder.name
