"""Training as N processes (hosts), data parallel over all their devices: the ``ProcessShare`` batch source.

Each epoch every process cuts the same permutation into the seed's batches and puts on its devices only its slice
of each; the numbers equal one process with as many devices (docs/design.md, "More than one process").
"""

from __future__ import annotations

import jax
import numpy as np
from jax import random
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mlp_core.errors import UserError
from mlp_core.distributed import training_done, training_failed
from mlp_core.evaluation import evaluate
from mlp_core.model import Params
from mlp_core.train import BatchSource, EpochOutput, EpochRunner, flatten_images


def _local(x: jax.Array):
    """This process's copy of a replicated global array."""
    return x.addressable_data(0)


def _global(local_source: np.ndarray, sharding: NamedSharding, axis: int | None) -> jax.Array:
    """The global array whose ``axis`` the sharding splits over all processes, from the rows this process holds."""
    shape = local_source.shape
    if axis is None:  # replicated: every process passes the whole value
        return jax.make_array_from_process_local_data(sharding, local_source, shape)
    indices = [index[axis] for index in sharding.addressable_devices_indices_map(shape).values()]
    start = min(i.start or 0 for i in indices)
    stop = max(shape[axis] if i.stop is None else i.stop for i in indices)
    rows = [slice(None)] * len(shape)
    rows[axis] = slice(start, stop)
    return jax.make_array_from_process_local_data(sharding, local_source[tuple(rows)], shape)


def replicate(params: Params, mesh: Mesh) -> Params:
    """Host params (the same in every process) as global arrays replicated over the mesh."""
    replicated = NamedSharding(mesh, PartitionSpec())
    return jax.tree.map(lambda x: jax.make_array_from_callback(np.shape(x), replicated, lambda i: np.asarray(x)[i]), params)


def local_params(params: Params) -> Params:
    """This process's copy of replicated params (what evaluation and the model file take)."""
    return jax.tree.map(_local, params)


def epoch_order(runner: EpochRunner, epoch: int) -> np.ndarray | None:
    """The epoch's permutation, computed on the CPU: the one ``EpochRunner`` draws on the device."""
    if not runner.config.shuffle:
        return None
    with jax.default_device(jax.local_devices(backend="cpu")[0]):
        return np.asarray(random.permutation(runner.epoch_key(epoch), runner.num_examples))


class ProcessShare(BatchSource):
    """This process's share of every global batch, for ``train.fit`` over every process's devices."""

    def __init__(self, train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray,
                 test_labels: np.ndarray, *, mesh: Mesh):
        self.images = flatten_images(train_images)
        self.labels = np.asarray(train_labels, np.int32)
        self.num_examples, self.features = self.images.shape
        self.test = (flatten_images(test_images), np.asarray(test_labels, np.int32))
        self.mesh = mesh
        self.primary = jax.process_index() == 0

    def place(self, runner: EpochRunner, params: Params) -> Params:
        if runner.mesh is None:
            devices, processes = self.mesh.devices.size, jax.process_count()
            raise UserError(f"batch_size {runner.config.batch_size} does not divide over the {devices} devices of "
                              f"{processes} processes: choose a batch size that is a multiple of {devices}",
                              field="batch_size")
        return replicate(jax.tree.map(np.asarray, params), self.mesh)

    def run_epoch(self, runner: EpochRunner, params: Params, epoch: int) -> EpochOutput:
        batch_size, n_full = runner.config.batch_size, runner.full_batches * runner.config.batch_size
        batched = NamedSharding(self.mesh, PartitionSpec(None, "batch"))
        last = NamedSharding(self.mesh, PartitionSpec("batch") if runner.split_last else PartitionSpec())
        order = epoch_order(runner, epoch)
        x, y = (self.images[order], self.labels[order]) if order is not None else (self.images, self.labels)
        full_x = _global(x[:n_full].reshape(runner.full_batches, batch_size, -1), batched, axis=1)
        full_y = _global(y[:n_full].reshape(runner.full_batches, batch_size), batched, axis=1)
        last_x = last_y = None
        if runner.remainder:
            axis = 0 if runner.split_last else None
            last_x, last_y = _global(x[n_full:], last, axis), _global(y[n_full:], last, axis)
        params, loss, class_counts, first_bad = runner.run_batches(params, full_x, full_y, last_x, last_y)
        return EpochOutput(params, _local(loss), _local(class_counts), _local(first_bad))

    def evaluate(self, params: Params) -> tuple[float, float | None, float | None]:
        # each process on its host copy of the whole split: all agree without a collective
        mine = local_params(params)
        tested = evaluate(mine, *self.test)
        return evaluate(mine, self.images, self.labels).accuracy, tested.loss, tested.accuracy

    def host_params(self, params: Params) -> Params:
        return local_params(params)

    def finish(self, error: BaseException | None) -> None:
        if error is None:
            training_done()  # the last collective is behind this process: from here its exit is no failure
        else:
            # A killed peer: one line naming it; else the others stop now, not at JAX's heartbeat.
            training_failed(error)
