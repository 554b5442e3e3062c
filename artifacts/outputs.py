"""Artifact folders committed by a marker written last (``_COMPLETE.json``: every file's size and sha256).

``artifact_writer`` is the one writer per output (``_WRITING.json``, locked); single-file outputs are written whole.
Why: docs/design.md, "Failure behaviour".
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from artifacts import storage
from artifacts.locations import check_local, is_remote, member, resolve
from mlp_core.errors import UserError

COMPLETE = "_COMPLETE.json"
WRITING = "_WRITING.json"
FORMAT = "jax-mlp-pipeline artifact"


class OutputConflictError(OSError):
    """An output path holds something this program did not write; it is left alone."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() or p.is_symlink())


def _write_file(path: Path, text: str) -> None:
    """Write ``path`` whole (a temp file, then a file rename: ``storage.write_bytes``)."""
    storage.write_bytes(str(path), text.encode())


def read_marker(folder: str | Path, kind: str, verify: bool = True) -> dict[str, Any]:
    """``folder``'s marker, every listed file inside it at its size and (``verify``) its sha256."""
    folder = Path(check_local(folder, f"{kind} artifact"))
    path = folder / COMPLETE
    if not path.is_file():
        why = "it was not finished (the step that wrote it failed or was killed)" if (folder / WRITING).exists() else f"{COMPLETE} is missing"
        raise UserError(f"{folder} is not a complete {kind} artifact: {why}")
    try:
        marker = json.loads(storage.read_bytes(path, storage.MANIFEST))
    except storage.StorageError as e:
        raise UserError(str(e)) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(marker, dict) or marker.get("format") != FORMAT or not isinstance(marker.get("files"), dict):
        raise UserError(f"{path} is not a {FORMAT} marker")
    if marker.get("kind") != kind:
        raise UserError(f"{folder} is a {marker.get('kind')} artifact, expected a {kind}")
    for name, info in marker["files"].items():
        try:
            file = member(folder, name, f"{kind} artifact")
        except UserError as e:
            raise UserError(f"{e} (its {COMPLETE} is not to be trusted)") from None
        if not isinstance(info, dict) or not isinstance(info.get("bytes"), int) or not isinstance(info.get("sha256"), str):
            raise UserError(f"{path}: the entry for {name!r} has no bytes and sha256")
        if not file.is_file():
            raise UserError(f"{folder} is not a complete {kind} artifact: {name} is missing")
        if file.stat().st_size != info["bytes"]:
            raise UserError(
                f"{folder}: {name} has {file.stat().st_size} bytes, {COMPLETE} says {info['bytes']} (truncated or altered)"
            )
        if verify and _sha256(file) != info["sha256"]:
            raise UserError(f"{folder}: {name} does not match the sha256 in {COMPLETE} (altered)")
    return marker


def _marker_or_none(folder: Path) -> dict[str, Any] | None:
    """``folder``'s marker as written, without checks; None when absent or unreadable."""
    try:
        return json.loads(storage.read_bytes(folder / COMPLETE, storage.MANIFEST))
    except (OSError, ValueError):
        return None


def _writing_kind(folder: Path) -> str | None:
    try:
        return json.loads(storage.read_bytes(folder / WRITING, storage.RECORD)).get("kind")
    except (OSError, ValueError, AttributeError):
        return None


def check_artifact_output(path: str | Path, kind: str, _holding_lock: bool = False) -> str:
    """``"new"`` (missing or empty), ``"resume"`` (an unfinished one of ours) or ``"replace"`` (a complete one of ours,
    nothing else in it); anything else is refused now."""
    path = Path(check_local(path, f"{kind} output"))
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"output path is a file, expected a folder: {path}")
    if not path.exists() or not any(path.iterdir()):
        check_writable_parent(path)
        return "new"
    if not _holding_lock and _being_written(path):
        raise OutputConflictError(f"another run is writing {path} now (it holds the lock on {path / WRITING}); "
                                  "wait for it to finish, or choose another output")
    marker = _marker_or_none(path)
    if isinstance(marker, dict) and marker.get("format") == FORMAT and marker.get("kind") == kind:
        files = marker.get("files")
        names = list(files) if isinstance(files, dict) else []
        for name in names:  # a marker is input: its names are deleted on replace, so each must be inside
            try:
                member(path, name, f"{kind} artifact")
            except UserError as e:
                raise OutputConflictError(f"{e}; refusing to replace it (its {COMPLETE} was not written by "
                                          "this program)") from None
        listed = set(names) | {COMPLETE, WRITING}  # a _WRITING.json beside a marker: a replace of ours was killed
        if stray := [name for name in _files(path) if name not in listed]:
            raise OutputConflictError(
                f"output folder {path} holds {stray[0]}, which is not part of the {kind} artifact there; "
                "refusing to replace it (move that file away, or choose another output)"
            )
        check_writable_parent(path)  # the new files are staged beside it, in its parent
        return "replace"
    if _writing_kind(path) == kind and not (path / COMPLETE).exists():
        return "resume"
    try:
        lock_file_only = _files(path) == [WRITING] and (path / WRITING).stat().st_size == 0
    except OSError:  # gone meanwhile: a writer that failed cleaned up
        lock_file_only = False
    if lock_file_only:
        # an empty _WRITING.json: a writer between creating and locking it, or killed there; the lock decides
        return "resume"
    raise OutputConflictError(
        f"output folder {path} is not empty and is not a {kind} artifact written by this program; "
        "refusing to overwrite it (choose a new or empty folder)"
    )


def check_apart(inputs: dict[str, "str | Path | None"], outputs: dict[str, "str | Path | None"]) -> None:
    """Refuse an output that is, contains or lies inside an input or another output (local paths, symlinks resolved)."""
    def resolved(items):
        return [(name, str(path), resolve(path, name)) for name, path in items.items()
                if path not in (None, "") and not is_remote(str(path))]

    ins, outs = resolved(inputs), resolved(outputs)
    for i, (out_name, out_text, out) in enumerate(outs):
        others = [(name, text, path, "input") for name, text, path in ins] + \
                 [(name, text, path, "output") for name, text, path in outs[i + 1:]]
        for name, text, path, role in others:
            if out == path:
                how = "is"
            elif path in out.parents:
                how = "lies inside"
            elif out in path.parents:
                how = "contains"
            else:
                continue
            raise OutputConflictError(
                f"{out_name} {out_text} {how} the {role} {name} {text}: writing it would destroy that {role}; "
                "choose a location apart from it"
            )


def check_outside_artifacts(path: "str | Path", flag: str) -> None:
    """Refuse a local ``path`` that is or lies inside an artifact of this program (symlinks followed)."""
    if path in (None, "") or is_remote(str(path)):
        return
    for folder in (resolved := resolve(path, flag), *resolved.parents):
        if (folder / COMPLETE).is_file() or (folder / WRITING).is_file():
            how = "is" if folder == resolved else "lies inside"
            raise OutputConflictError(f"{flag} {path} {how} the artifact {folder}: writing there would change that "
                                      "artifact; choose a location apart from it")


def check_writable_parent(path: Path) -> None:
    """Make ``path``'s parent and prove it writable (a file created and removed in it)."""
    parent = Path(check_local(path, "output")).parent
    if parent.exists() and not parent.is_dir():
        raise NotADirectoryError(f"output location is a file, expected a folder: {parent}")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as e:
        raise PermissionError(f"output location is not writable: {parent} ({e.strerror or e})") from None


def _remove_listed(folder: Path, names: list[str]) -> None:
    """Delete ``names`` (files under ``folder``), then their folders that became empty; nothing else."""
    parents: set[Path] = set()
    for name in names:
        member(folder, name)  # never a file outside the folder, whatever a marker said (checked before, again here)
        (folder / name).unlink(missing_ok=True)
        parents.update(p for p in (folder / name).parents if folder in p.parents)
    for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):  # not empty: something not ours is in it
            parent.rmdir()


def commit(folder: str | Path, kind: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``folder``'s marker, listing every file in it: after this, readers accept it."""
    folder = Path(folder)
    names = [n for n in _files(folder) if n not in (COMPLETE, WRITING)]
    marker = {
        "format": FORMAT,
        "kind": kind,
        "completed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **(extra or {}),
        "files": {n: {"bytes": (folder / n).stat().st_size, "sha256": _sha256(folder / n)} for n in names},
    }
    _write_file(folder / COMPLETE, json.dumps(marker, indent=2) + "\n")
    (folder / WRITING).unlink(missing_ok=True)
    return marker


def locked(path: Path, flags: int = os.O_RDONLY) -> bool:
    """True while a live process holds an exclusive ``flock`` on ``path`` (a killed holder holds none)."""
    try:
        fd = os.open(path, flags)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _being_written(folder: Path) -> bool:
    """True while a live writer holds the lock on ``folder``'s ``_WRITING.json`` (``_lock``)."""
    return locked(folder / WRITING)


def _lock(path: Path, kind: str) -> int:
    """Hold an exclusive ``flock`` on ``path/_WRITING.json`` (written in place, never replaced); a second writer is
    refused."""
    for _ in range(5):
        try:
            fd = os.open(path / WRITING, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as e:  # ELOOP: a link planted in its place is never written through
            raise OutputConflictError(f"{path / WRITING} cannot be opened ({e.strerror}); it is left alone") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputConflictError(f"another run is writing {path} now (it holds the lock on {path / WRITING}); "
                                      "wait for it to finish, or choose another output") from None
        try:
            current = os.stat(path / WRITING).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:  # not a file the previous writer unlinked after we opened it
            os.ftruncate(fd, 0)
            os.write(fd, (json.dumps({"kind": kind, "pid": os.getpid(),
                                      "started_at": datetime.now(timezone.utc).isoformat()}) + "\n").encode())
            return fd
        os.close(fd)
    raise OutputConflictError(f"{path} kept changing under another writer; choose another output")


@contextlib.contextmanager
def artifact_writer(path: str | Path, kind: str) -> Iterator[Path]:
    """Yield the folder to write ``kind``'s files into; on success, the artifact at ``path`` is committed."""
    path = Path(path)
    check_artifact_output(path, kind)
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    try:
        fd = _lock(path, kind)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                path.rmdir()
        raise
    try:
        mode = check_artifact_output(path, kind, _holding_lock=True)  # again, under the lock: the folder may have changed meanwhile
        _remove_staging(path)
        if mode == "replace":
            yield from _replace(path, kind)
            return
        # new or resume (an unfinished write of ours: every file in it is ours, but for the lock file)
        _remove_listed(path, [n for n in _files(path) if n != WRITING])
        try:
            yield path
            commit(path, kind)
        except BaseException:
            _remove_listed(path, _files(path))
            if created:
                with contextlib.suppress(OSError):
                    path.rmdir()
            raise
    finally:
        os.close(fd)


def _remove_staging(path: Path) -> None:
    """Remove the staging folders killed replaces of ``path`` left beside it (the caller holds its lock)."""
    staged = re.compile(rf"^\.{re.escape(path.name)}\.partial-[a-z0-9_]{{8}}$")  # tempfile.mkdtemp's names
    for stale in path.parent.iterdir():
        if staged.match(stale.name) and stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale)


def _replace(path: Path, kind: str) -> Iterator[Path]:
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # our own temp folder; the old artifact is untouched
        (path / WRITING).unlink(missing_ok=True)  # our lock file: the old artifact is as it was
        raise
    old = json.loads(storage.read_bytes(path / COMPLETE, storage.MANIFEST))
    # From here the old artifact is given up: first it stops being complete, then its files go.
    (path / COMPLETE).unlink()
    _remove_listed(path, list(old["files"]))
    for name in _files(staging):
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / name, path / name)  # a file rename: works on Cloud Storage FUSE
    commit(path, kind)
    for folder in sorted((p for p in staging.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        folder.rmdir()
    staging.rmdir()


# Single-file outputs (metrics, reports): a temp file, then a file rename (atomic on Cloud Storage FUSE too).

def check_output_file(path: "str | Path") -> None:
    """Fail now, before any work, if ``path`` cannot become an output file."""
    path = Path(check_local(path, "output file"))
    if path.is_dir():
        raise IsADirectoryError(f"output path is a folder, expected a file: {path}")
    check_writable_parent(path)


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically (temp file + rename)."""
    path = Path(path)
    check_output_file(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.partial-", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(data, indent=2, allow_nan=False) + "\n")  # strict JSON: a NaN is a bug, not a value
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
