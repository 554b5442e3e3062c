"""The placement budget follows the container's memory limit (its cgroup), not the node's memory."""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from conftest import ROOT
from mlp_core.memory import available_memory, cgroup_memory

# 240,000 images of 784 bytes + labels (four MNISTs): `auto` places them on the device when they fit twice.
DATA_BYTES = 240_000 * 788
LIMIT = 400 << 20  # room for Python with JAX imported, too little for the data

_PROBE = """
import json
from mlp_core.memory import available_memory, cgroup_memory
from mlp_core.memory import choose_placement, device_memory_budget
print(json.dumps({"cgroup": cgroup_memory(), "available": available_memory(), "budget": device_memory_budget(),
                  "placement": choose_placement(%d)}))
""" % DATA_BYTES


def _own_v1_memory_cgroup() -> Path | None:
    """This process's cgroup v1 memory folder, if this machine has one we may create children in."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            for mount in Path("/proc/self/mountinfo").read_text().splitlines():
                fields = mount.split()
                sep = fields.index("-")
                if fields[sep + 1] == "cgroup" and "memory" in fields[sep + 3].split(","):
                    folder = Path(fields[4], os.path.relpath(path, fields[3]))
                    return folder if folder.is_dir() and os.access(folder, os.W_OK) else None
    return None


def test_a_real_memory_cgroup_limit_shrinks_the_budget():
    """A child process in a 400 MiB memory cgroup on a machine with GiBs free: the budget follows the cgroup."""
    parent = _own_v1_memory_cgroup()
    if parent is None:
        pytest.skip("no writable cgroup v1 memory controller here (needs root; CI runs as root)")
    group = parent / f"jax-mlp-test-{uuid.uuid4().hex[:8]}"
    group.mkdir()
    try:
        (group / "memory.limit_in_bytes").write_text(str(LIMIT))
        outside = json.loads(subprocess.run([sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True, text=True,
                                            check=True).stdout)
        # The shell joins the cgroup, then becomes Python (no preexec_fn: this process has JAX's threads).
        inside = json.loads(subprocess.run(
            ["sh", "-c", 'echo $$ > "$1" && exec "$2" -c "$3"', "sh", str(group / "cgroup.procs"), sys.executable, _PROBE],
            cwd=ROOT, capture_output=True, text=True, check=True).stdout)
    finally:
        group.rmdir()
    assert inside["cgroup"][0] == LIMIT
    assert inside["available"] <= LIMIT and inside["budget"] <= LIMIT // 2
    assert inside["placement"] == "stream"  # 2 x 189 MB does not fit in half of what is left of 400 MiB
    assert outside["placement"] == "device" and outside["available"] > inside["available"]


def _fake_proc(tmp_path: Path, cgroup: str, mountinfo: str) -> Path:
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "cgroup").write_text(cgroup)
    (proc / "mountinfo").write_text(mountinfo)
    return proc


def test_cgroup_v2_limit_in_a_pod(tmp_path):
    """cgroup v2 as containerd gives a pod (a cgroup namespace: the pod's cgroup is the mount's root)."""
    fs = tmp_path / "sys" / "fs" / "cgroup"
    fs.mkdir(parents=True)
    (fs / "memory.max").write_text(f"{4 << 30}\n")
    (fs / "memory.current").write_text(f"{1 << 30}\n")
    (fs / "memory.stat").write_text(f"anon 1\ninactive_file {256 << 20}\n")
    proc = _fake_proc(tmp_path, "0::/\n",
                      f"30 25 0:26 / {fs} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n")
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(f"MemTotal: {256 << 20} kB\nMemAvailable: {250 << 20} kB\n")  # a 256 GiB node
    assert cgroup_memory(str(proc)) == (4 << 30, (1 << 30) - (256 << 20))
    assert available_memory(str(proc), str(meminfo)) == (4 << 30) - (1 << 30) + (256 << 20)


def test_cgroup_v2_nested_limits_and_no_limit(tmp_path):
    fs = tmp_path / "cg"
    leaf = fs / "kubepods" / "pod1" / "ctr"
    leaf.mkdir(parents=True)
    (fs / "kubepods" / "memory.max").write_text("max\n")
    (fs / "kubepods" / "pod1" / "memory.max").write_text(f"{2 << 30}\n")  # the pod's limit binds its container
    (leaf / "memory.max").write_text("max\n")
    (leaf / "memory.current").write_text("0\n")
    proc = _fake_proc(tmp_path, "0::/kubepods/pod1/ctr\n", f"30 25 0:26 / {fs} rw - cgroup2 cgroup2 rw\n")
    assert cgroup_memory(str(proc)) == (2 << 30, 0)
    (fs / "kubepods" / "pod1" / "memory.max").write_text("max\n")
    assert cgroup_memory(str(proc)) is None  # unlimited: the host's figure decides


def test_no_cgroup_information_falls_back_to_the_host(tmp_path):
    proc = _fake_proc(tmp_path, "", "")
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemAvailable: 1024 kB\n")
    assert cgroup_memory(str(proc)) is None and available_memory(str(proc), str(meminfo)) == 1 << 20
