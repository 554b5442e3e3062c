"""Artifacts at object-store URIs, for steps that run without a kfp launcher (Kubeflow Trainer's pods).

``download``: every object under a URI into a new local folder, refused unless its marker lists each file with its
size and sha256. ``check_upload`` and ``upload``: into an empty URI or one holding an artifact of ours, marker last.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from artifacts import locations, storage
from artifacts.outputs import COMPLETE, FORMAT, WRITING, OutputConflictError, read_marker
from mlp_core.errors import UserError


def download(uri: str, kind: str, dest: "str | Path | None" = None) -> Path:
    """Copy the complete ``kind`` artifact at ``uri`` into ``dest`` (default: a new temp folder); returns it."""
    names = storage.list_names(uri)
    if COMPLETE not in names:
        why = "it was not finished (the step that wrote it failed or was killed)" if WRITING in names else (
            f"{COMPLETE} is missing" if names else "nothing is there")
        raise UserError(f"{uri} is not a complete {kind} artifact: {why}")
    folder = Path(dest) if dest is not None else Path(tempfile.mkdtemp(prefix=f"{kind}-"))
    folder.mkdir(parents=True, exist_ok=True)
    raw_marker = storage.read_bytes(storage.join(uri, COMPLETE), storage.MANIFEST)
    try:
        marker = json.loads(raw_marker)
        files = marker["files"]
        for name in files:  # a marker is input: each name must lie inside the artifact, here and there
            locations.check_object_path(name, f"{kind} artifact {uri}", "member")
    except (ValueError, KeyError, TypeError, UserError) as e:
        raise UserError(f"{uri}: its {COMPLETE} is not a marker of this program ({e})") from None
    for name, info in files.items():
        listed = info.get("bytes") if isinstance(info, dict) else None
        data = storage.read_bytes(storage.join(uri, *name.split("/")), listed if isinstance(listed, int) else storage.FILE)
        if isinstance(info, dict) and info.get("sha256") not in (None, hashlib.sha256(data).hexdigest()):
            raise UserError(f"{uri}: {name} does not match the sha256 in {COMPLETE} (altered)")
        target = locations.member(folder, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    (folder / COMPLETE).write_bytes(raw_marker)  # last, as everywhere: a copy cut short is never complete
    read_marker(folder, kind)  # the kind, every listed file and its size
    return folder


def _json_or_none(uri: str) -> "dict | None":
    try:
        value = json.loads(storage.read_bytes(uri, storage.MANIFEST))
    except (storage.StorageError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def check_upload(uri: str, kind: str) -> list[str]:
    """Refuse now unless ``uri`` is empty or holds a ``kind`` artifact of ours; returns the names that are ours."""
    names = storage.list_names(uri)
    if not names:
        return []
    marker = _json_or_none(storage.join(uri, COMPLETE)) if COMPLETE in names else None
    writing = _json_or_none(storage.join(uri, WRITING)) if WRITING in names else None
    if marker is not None and marker.get("format") == FORMAT and marker.get("kind") == kind:
        ours = {COMPLETE, WRITING, *(marker.get("files") or {})}
    elif marker is None and writing is not None and writing.get("kind") == kind:
        ours = set(names)  # an unfinished upload of ours: everything in it is ours
    else:
        raise OutputConflictError(f"{uri} holds objects this program did not write; choose an empty location")
    strangers = sorted(set(names) - ours)
    if strangers:
        raise OutputConflictError(f"{uri} holds objects this program did not write ({strangers[0]}, ...); "
                                  "choose an empty location")
    return names


def upload(folder: "str | Path", uri: str, kind: str) -> list[str]:
    """Upload the complete ``kind`` artifact ``folder`` to ``uri``, its marker last; returns the names written."""
    folder = Path(folder)
    marker = read_marker(folder, kind)
    old = check_upload(uri, kind)
    storage.write_bytes(storage.join(uri, WRITING), json.dumps(
        {"kind": kind, "started_at": datetime.now(timezone.utc).isoformat()}).encode())
    if COMPLETE in old:
        storage.delete(storage.join(uri, COMPLETE))  # from here the old artifact is no longer complete
    names = list(marker["files"])
    for name in names:
        storage.write_bytes(storage.join(uri, *name.split("/")), storage.read_bytes(folder / name))
    storage.write_bytes(storage.join(uri, COMPLETE), storage.read_bytes(folder / COMPLETE, storage.MANIFEST))
    for name in sorted(set(old) - set(names) - {COMPLETE, WRITING}):
        storage.delete(storage.join(uri, *name.split("/")))
    storage.delete(storage.join(uri, WRITING))
    return [*names, COMPLETE]
