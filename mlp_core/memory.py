"""How much memory this process may still use (the host's, or its container's cgroup limit), and so where
the training data can live: on the device, or streamed (``choose_placement``).

In a pod ``/proc/meminfo`` describes the node; the limit is the memory cgroup's (docs/design.md, "Training speed").
"""

from __future__ import annotations

import os
from pathlib import Path

from mlp_core.config import PLACEMENTS
from mlp_core.errors import UserError

_UNLIMITED_V1 = 1 << 62  # v1 reports "no limit" as a page-rounded LONG_MAX


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return None if value >= _UNLIMITED_V1 else value


def _stat(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _mounts(mountinfo: Path) -> list[tuple[str, str, str, set[str]]]:
    """``(root, mount point, fs type, super options)`` of each cgroup mount."""
    found = []
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        fstype = fields[sep + 1]
        if fstype in ("cgroup", "cgroup2"):
            found.append((fields[3], fields[4], fstype, set(fields[sep + 3].split(","))))
    return found


def _cgroup_dir(mount_root: str, mount_point: str, path: str) -> Path:
    """The folder of cgroup ``path`` under a mount of ``mount_root`` (the leaf, if visible)."""
    relative = os.path.relpath(path, mount_root) if path.startswith(mount_root) else "."
    leaf = Path(mount_point, relative)
    return leaf if leaf.is_dir() else Path(mount_point)


def cgroup_memory(proc: str = "/proc/self") -> tuple[int, int] | None:
    """``(limit, working set)`` in bytes of this process's memory cgroup; None when unlimited or unknown."""
    proc = Path(proc)
    try:
        lines = (proc / "cgroup").read_text().splitlines()
    except OSError:
        return None
    v2_path = v1_path = None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            v2_path = path
        elif "memory" in controllers.split(","):
            v1_path = path
    for root, point, fstype, options in _mounts(proc / "mountinfo"):
        if fstype == "cgroup" and "memory" in options and v1_path is not None:
            leaf = _cgroup_dir(root, point, v1_path)
            limit_file, usage_file, inactive = "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"
        elif fstype == "cgroup2" and v2_path is not None and v1_path is None:
            leaf = _cgroup_dir(root, point, v2_path)
            limit_file, usage_file, inactive = "memory.max", "memory.current", "inactive_file"
        else:
            continue
        limits = []
        folder = leaf
        while True:
            if (limit := _read_int(folder / limit_file)) is not None:
                limits.append(limit)
            if folder == Path(point) or folder.parent == folder:
                break
            folder = folder.parent
        if not limits:
            return None
        usage = _read_int(leaf / usage_file) or 0
        working_set = max(0, usage - _stat(leaf / "memory.stat", inactive))
        return min(limits), working_set
    return None


def host_available(meminfo: str = "/proc/meminfo") -> int | None:
    """``MemAvailable`` of the host in bytes."""
    try:
        with open(meminfo) as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None


def available_memory(proc: str = "/proc/self", meminfo: str = "/proc/meminfo") -> int | None:
    """Bytes this process may still allocate: the smaller of the host's and its cgroup's headroom."""
    candidates = []
    if (host := host_available(meminfo)) is not None:
        candidates.append(host)
    if (cgroup := cgroup_memory(proc)) is not None:
        limit, working_set = cgroup
        candidates.append(max(0, limit - working_set))
    return min(candidates) if candidates else None


# Placement: where the training data lives during training.

def device_memory_budget(device=None) -> int:
    """Bytes the training data may take on ``device``: half of what it (on a CPU: this process) has free."""
    import jax  # here: the command lines check --placement with this module before JAX loads

    device = device or jax.local_devices()[0]
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "bytes_limit" in stats:
        return (stats["bytes_limit"] - stats.get("bytes_in_use", 0)) // 2
    available = available_memory()
    return (4 << 30 if available is None else available) // 2


def choose_placement(data_bytes: int, placement: str = "auto", budget: int | None = None) -> str:
    """``"device"`` (whole dataset on the device, one call per epoch) or ``"stream"``."""
    if placement not in PLACEMENTS:
        raise UserError(f"placement must be {', '.join(PLACEMENTS[:-1])} or {PLACEMENTS[-1]}, got {placement!r}",
                          field="placement")
    if placement != "auto":
        return placement
    budget = device_memory_budget() if budget is None else budget  # the epoch holds the data twice (a shuffled copy)
    return "device" if 2 * data_bytes <= budget else "stream"
