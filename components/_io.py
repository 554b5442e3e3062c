"""Writing outputs so that a failure never leaves something that looks finished."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _check_parent(path: Path) -> None:
    """Make ``path``'s parent and prove it writable by creating (and removing) a file in it."""
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise NotADirectoryError(f"output location is a file, expected a folder: {parent}")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as e:
        raise PermissionError(f"output location is not writable: {parent} ({e.strerror or e})") from None


def check_output_dir(path: "str | Path") -> None:
    """Fail now, before any work, if ``path`` cannot become an output folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"output path is a file, expected a folder: {path}")
    _check_parent(path)


def check_output_file(path: "str | Path") -> None:
    """Fail now, before any work, if ``path`` cannot become an output file."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"output path is a folder, expected a file: {path}")
    _check_parent(path)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``path`` in one rename."""
    path = Path(path)
    check_output_dir(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; an artifact is read by other users (containers)
    try:
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically (temp file + rename)."""
    path = Path(path)
    check_output_file(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.partial-", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
