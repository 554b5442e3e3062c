"""Training as N processes (hosts), data parallel over all their devices, with the same epoch program.

Each epoch the global batch sequence is what one process would train on: the
same permutation (a pure function of seed and epoch, ``EpochRunner.epoch_key``)
cut into the seed's batches. Every process puts on its devices only its slice of
every batch (``jax.make_array_from_process_local_data``); params are replicated;
the gradient of each batch is summed over all devices by XLA's collectives (gloo
between CPU processes, NCCL between GPUs). So the numbers equal one process with
the same number of devices, for any process count.

Each process reads the whole train split from the Dataset artifact (60,000
MNIST images are 47 MB) and keeps its slices; the test metrics and train accuracy
are computed by every process on its host copy, so all agree without a collective.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np
from jax import random
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mlp_core.config import ConfigError, TrainConfig
from mlp_core.distributed import training_done, training_failed
from mlp_core.evaluation import evaluate
from mlp_core.model import Params, init_network_params
from mlp_core.train import EpochMetrics, EpochOutput, EpochRunner, check_input_size, flatten_images, run_epochs


def _local(x: jax.Array):
    """This process's copy of a replicated global array."""
    return x.addressable_data(0)


def _global(local_source: np.ndarray, sharding: NamedSharding, axis: int | None) -> jax.Array:
    """The global array whose ``axis`` the sharding splits over all processes, from this process's rows only.

    ``local_source`` is the whole array (every process computes the same one); the
    rows this process's devices hold are taken from it and nothing else is transferred.
    """
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


def fit_multiprocess(
    config: TrainConfig,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    *,
    mesh: Mesh,
    params: Params | None = None,
    start_epoch: int = 0,
    history: list[EpochMetrics] | None = None,
    on_epoch: Callable[[Params, EpochMetrics, list[EpochMetrics]], None] | None = None,
) -> tuple[Params, list[EpochMetrics]]:
    """``train.fit`` over every process's devices; returns this process's copy of the final params.

    Every process calls it with the same arguments; ``on_epoch`` gets this
    process's copy of the params (only process 0 should write them).
    """
    train_images = flatten_images(train_images)
    check_input_size(config, train_images)
    labels = np.asarray(train_labels, np.int32)
    runner = EpochRunner(config, len(train_images), mesh=mesh)
    devices, processes = mesh.devices.size, jax.process_count()
    if runner.mesh is None:
        raise ConfigError(f"batch_size {config.batch_size} does not divide over the {devices} devices of {processes} "
                          f"processes: choose a batch size that is a multiple of {devices}")
    if params is None:
        params = init_network_params(config.layer_sizes, random.key(config.seed), config.init_scale)
    params = replicate(jax.tree.map(np.asarray, params), mesh)
    batched = NamedSharding(mesh, PartitionSpec(None, "batch"))
    last = NamedSharding(mesh, PartitionSpec("batch")) if runner.split_last else NamedSharding(mesh, PartitionSpec())
    n_full = runner.full_batches * config.batch_size
    test = (flatten_images(test_images), np.asarray(test_labels, np.int32))

    def run_epoch(params, epoch: int) -> EpochOutput:
        order = epoch_order(runner, epoch)
        x, y = (train_images[order], labels[order]) if order is not None else (train_images, labels)
        full_x = _global(x[:n_full].reshape(runner.full_batches, config.batch_size, -1), batched, axis=1)
        full_y = _global(y[:n_full].reshape(runner.full_batches, config.batch_size), batched, axis=1)
        last_x = last_y = None
        if runner.remainder:
            axis = 0 if runner.split_last else None
            last_x, last_y = _global(x[n_full:], last, axis), _global(y[n_full:], last, axis)
        params, loss, class_counts, first_bad = runner.run_batches(params, full_x, full_y, last_x, last_y)
        return EpochOutput(params, _local(loss), _local(class_counts), _local(first_bad))

    def evaluate_fn(params):
        mine = local_params(params)
        tested = evaluate(mine, *test)
        return evaluate(mine, train_images, labels).accuracy, tested.loss, tested.accuracy

    def on_epoch_local(params, metrics, history):
        if on_epoch is not None:
            on_epoch(local_params(params), metrics, history)

    try:
        params, history = run_epochs(config, len(train_images), run_epoch, evaluate_fn, params, start_epoch, history,
                                     on_epoch_local)
    except BaseException as e:
        # A killed peer: one line naming it. Else the others stop now (pointing at this log), not at JAX's heartbeat.
        training_failed(e)
        raise
    training_done()  # the last collective is behind this process: from here its exit is no failure
    return local_params(params), history
