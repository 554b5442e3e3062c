"""Per-epoch training checkpoints in durable storage (a folder, ``gs://`` or ``s3://``), resumed bit for bit.

``<location>/run-<key>/ckpt-000002/params.npz``, then ``state.json`` (the commit point: epoch, run identity, history,
the params' sha256). ``<key>`` hashes the run identity, so no other run reads, prunes or deletes these files. Only
whole-file writes (no folder rename); an epoch's shuffle key is a function of (seed, epoch), so nothing more is kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artifacts import locations, storage
from mlp_core.model import Params
from mlp_core.model_io import params_from_bytes, params_to_bytes
from mlp_core.errors import UserError

# A checkpoint's files, and the temp files of a write killed before its rename (storage.write_bytes names them).
_CKPT = re.compile(r"^ckpt-(\d{6})/(params\.npz|state\.json|\.(?:params\.npz|state\.json)\.partial-[a-z0-9_]{8})$")
PARAMS = "params.npz"
STATE = "state.json"
KEEP = 2


@dataclass(frozen=True)
class Checkpoint:
    uri: str
    epoch: int  # epochs completed
    params: Params
    history: list[dict]


def run_key(run: dict[str, Any]) -> str:
    """``run-<16 hex>``: the folder of this run identity's checkpoints."""
    canonical = json.dumps(run, sort_keys=True, separators=(",", ":"))
    return "run-" + hashlib.sha256(canonical.encode()).hexdigest()[:16]


class Checkpoints:
    """The checkpoints of one run identity under ``location``."""

    def __init__(self, location: str, run: dict[str, Any], keep: int = KEEP):
        self.location = str(location)
        self.run = run
        self.keep = keep
        self.key = run_key(run)
        self.uri = locations.join(self.location, self.key, flag="--checkpoint-dir")

    def _name(self, epoch: int, file: str) -> str:
        # Locally, links followed, inside the location: nothing is written through a link planted in it.
        return locations.join(self.location, self.key, f"ckpt-{epoch:06d}", file, flag="--checkpoint-dir")

    def _ours(self) -> dict[int, set[str]]:
        """``{epoch: files}`` of this run's checkpoint files (complete or not)."""
        found: dict[int, set[str]] = {}
        for name in storage.list_names(self.uri):
            if m := _CKPT.match(name):
                found.setdefault(int(m.group(1)), set()).add(m.group(2))
        return found

    def save(self, epoch: int, params: Params, history: list[dict]) -> str:
        """Write the checkpoint of ``epoch`` completed epochs (params, then state); keep the newest ``keep``."""
        data = params_to_bytes(params)
        storage.write_bytes(self._name(epoch, PARAMS), data)
        state = {"epoch": epoch, "run": self.run, "history": history,
                 "params": {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}}
        storage.write_bytes(self._name(epoch, STATE), (json.dumps(state, indent=2) + "\n").encode())  # the commit point
        ours = self._ours()
        complete = sorted(e for e, files in ours.items() if STATE in files)
        for old in complete[: -self.keep]:
            self._delete(old, ours[old])
        return self._name(epoch, STATE)

    def _delete(self, epoch: int, files: "set[str]") -> None:
        """Delete ``files`` of the checkpoint of ``epoch``, state first, with the temp files a killed write left."""
        for file in sorted(files, key=lambda name: name != STATE):
            storage.delete(self._name(epoch, file))
        _rmdir_if_empty(storage.join(self.uri, f"ckpt-{epoch:06d}"))

    def latest(self, layer_sizes, log: Callable[[str], None] = print) -> Checkpoint | None:
        """The newest readable complete checkpoint; an unreadable one is reported and the previous one tried."""
        for epoch in sorted((e for e, files in self._ours().items() if STATE in files), reverse=True):
            uri = self._name(epoch, STATE)
            try:
                state = json.loads(storage.read_bytes(uri, storage.METRICS))  # it holds the history
                if state.get("run") != self.run or state.get("epoch") != epoch:
                    raise ValueError("its state.json names another run or epoch")
                data = storage.read_bytes(self._name(epoch, PARAMS), storage.PARAMS)
                if hashlib.sha256(data).hexdigest() != state["params"]["sha256"]:
                    raise ValueError(f"{PARAMS} does not match the sha256 in its state.json")
                params = params_from_bytes(data, self._name(epoch, PARAMS), tuple(layer_sizes))
                history = state["history"]
            except (OSError, ValueError, KeyError, TypeError, UserError) as e:
                log(f"checkpoint {uri} is unreadable ({str(e).splitlines()[0] if str(e) else type(e).__name__}); trying an older one")
                continue
            return Checkpoint(storage.join(self.uri, f"ckpt-{epoch:06d}"), epoch, params, history)
        return None

    def remove(self, location_is_ours: bool = False) -> None:
        """Delete this run's checkpoint files by name; the location too, if then empty, when ``location_is_ours``."""
        for epoch, files in self._ours().items():
            self._delete(epoch, files)
        _rmdir_if_empty(self.uri)
        if location_is_ours:
            _rmdir_if_empty(self.location)


def remove_empty_folders(uri: str, levels: int) -> None:
    """Remove the local folder ``uri`` and up to ``levels - 1`` of its parents, each only if empty."""
    for _ in range(levels):
        _rmdir_if_empty(uri)
        uri = str(Path(uri).parent)


def _rmdir_if_empty(uri: str) -> None:
    """Remove a local folder if nothing is left in it (object stores have no folders to remove)."""
    if storage.is_remote(uri):
        return
    with contextlib.suppress(OSError):
        Path(uri).rmdir()
