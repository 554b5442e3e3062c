"""The device mesh of data-parallel training, and how it shares the seed's batches."""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh


def data_mesh(devices: list | None = None) -> Mesh:
    """A 1-D mesh named ``batch`` over ``devices`` (default: all local devices)."""
    devices = jax.local_devices() if devices is None else devices
    return Mesh(np.asarray(devices), ("batch",))


class MeshSplit(NamedTuple):
    """Whether the mesh splits the full batches and the last, partial one."""

    devices: int
    full: bool
    last: bool


def mesh_split(mesh: Mesh | None, num_examples: int, batch_size: int) -> MeshSplit:
    """How ``mesh`` shares the seed's batches of ``num_examples`` (see ``EpochRunner``)."""
    n = 1 if mesh is None else mesh.devices.size
    remainder = num_examples % batch_size
    full = n > 1 and batch_size % n == 0
    return MeshSplit(n, full, full and remainder > 0 and remainder % n == 0)


def describe_mesh(mesh: Mesh | None, num_examples: int, batch_size: int) -> str:
    """One log line: how the batches are shared among the devices, and what could not be split."""
    n, full, last = mesh_split(mesh, num_examples, batch_size)
    if n == 1:
        return "devices: 1 (no data parallelism)"
    platform = mesh.devices.flat[0].platform
    if not full:
        return (f"devices: {n} {platform}, but the batch size {batch_size} does not divide over {n} devices: "
                f"training on one device (choose a batch size that is a multiple of {n})")
    text = f"devices: {n} {platform}, data parallel: each batch of {batch_size} is split {batch_size // n} per device"
    remainder = num_examples % batch_size
    if remainder and not last:
        text += f"; the last batch of {remainder} does not divide over {n} devices, so each device computes it whole"
    return text
