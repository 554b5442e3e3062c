"""Per-epoch training checkpoints, written atomically, resumed bit for bit.

Layout::

    <dir>/ckpt-000002/params.npz    params after epoch 2
    <dir>/ckpt-000002/state.json    epoch, what the run was (config, data), metrics so far

A checkpoint is complete once its folder has its final name: it is written under
a temporary name and renamed, so a kill at any point leaves either the previous
complete checkpoint or the new one, never half of one. The shuffle key of each
epoch is a pure function of (seed, epoch), so no RNG state beyond the epoch
number is needed to continue exactly where the run stopped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlp_core.model import Params
from mlp_core.model_io import ModelError, load_params, save_params

_NAME = re.compile(r"^ckpt-(\d{6})$")
KEEP = 2


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    epoch: int  # epochs completed
    params: Params
    history: list[dict]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(directory: str | Path, epoch: int, params: Params, run: dict[str, Any], history: list[dict]) -> Path:
    """Write the checkpoint of ``epoch`` completed epochs; keep the newest ``KEEP``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"ckpt-{epoch:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=directory))
    try:
        save_params(tmp / "params.npz", params)
        state = {"epoch": epoch, "run": run, "history": history}
        (tmp / "state.json").write_text(json.dumps(state, indent=2) + "\n")
        for name in ("params.npz", "state.json"):
            with open(tmp / name, "rb") as f:
                os.fsync(f.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)  # the commit point
        _fsync_dir(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in sorted(_complete(directory))[:-KEEP]:
        shutil.rmtree(directory / f"ckpt-{old:06d}", ignore_errors=True)
    return final


def _complete(directory: Path) -> list[int]:
    if not directory.is_dir():
        return []
    return [int(m.group(1)) for p in directory.iterdir() if (m := _NAME.match(p.name)) and p.is_dir()]


def latest_checkpoint(directory: str | Path, run: dict[str, Any], layer_sizes) -> tuple[Checkpoint | None, str]:
    """The newest complete checkpoint of this same ``run``, and why one was or was not taken."""
    directory = Path(directory)
    for epoch in sorted(_complete(directory), reverse=True):
        path = directory / f"ckpt-{epoch:06d}"
        try:
            state = json.loads((path / "state.json").read_text())
            params = load_params(path / "params.npz", tuple(layer_sizes))
        except (OSError, json.JSONDecodeError, ModelError) as e:
            return None, f"checkpoint {path} is unreadable ({e}); starting from scratch"
        if state.get("run") != run:
            return None, f"checkpoint {path} is of a different run (config or data differ); starting from scratch"
        return Checkpoint(path, epoch, params, state["history"]), f"resuming from {path} ({epoch} epoch(s) done)"
    return None, ""
