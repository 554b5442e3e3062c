"""The one training loop (``fit``) and the sources of its batches.

``SplitOnDevice`` (the whole split on the device, one compiled call per epoch), ``BatchStream`` (tf.data batches,
one jitted step each) and ``mlp_core.multiprocess.ProcessShare`` all train with ``_step``, compiled by
``EpochRunner``; docs/design.md, "One training path", says how.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax, random
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mlp_core.config import TrainConfig
from mlp_core.errors import UserError
from mlp_core.evaluation import CHUNK, evaluate, evaluate_batches
from mlp_core.mesh import mesh_split
from mlp_core.model import Params, init_network_params, loss, one_hot, sgd

if TYPE_CHECKING:
    from mlp_core.checkpoint import Checkpoints

# Folded into the seed's key for the shuffle stream: shuffling never reuses the keys that initialised the params.
_SHUFFLE_STREAM = 0x5EED


@dataclass(frozen=True)
class EpochMetrics:
    """What one epoch measured; the seed prints the same accuracies."""

    epoch: int
    loss: float
    train_accuracy: float
    test_accuracy: float | None
    test_loss: float | None
    seconds: float
    examples_per_second: float
    # How many examples of each class the epoch trained on (each example exactly once).
    class_counts: list[int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def batch_layout(num_examples: int, batch_size: int) -> tuple[int, int]:
    """``(full_batches, remainder)`` of the seed's loop over ``num_examples``."""
    if num_examples <= 0:
        raise UserError("the training split is empty")
    if batch_size > num_examples:
        raise UserError(f"batch_size {batch_size} is larger than the training split ({num_examples} examples)",
                          field="batch_size")
    return divmod(num_examples, batch_size)


class EpochOutput(NamedTuple):
    """What one compiled epoch returns (device arrays)."""

    params: Params
    loss: jax.Array  # mean per-example loss over the epoch
    class_counts: jax.Array  # examples of each class trained on
    first_nonfinite_step: jax.Array  # 0-based step of the first non-finite batch loss, -1 if none


def _first_nonfinite(losses) -> jax.Array:
    bad = ~jnp.isfinite(losses)
    return jnp.where(jnp.any(bad), jnp.argmax(bad), -1)


def _step(params: Params, images, labels, num_classes: int, step_size: float):
    """One SGD step: the seed's ``update``, also returning the batch loss and class counts."""
    targets = one_hot(labels, num_classes)
    batch_loss, grads = jax.value_and_grad(loss)(params, images, targets)
    return sgd(params, grads, step_size), (batch_loss, jnp.sum(targets, axis=0).astype(jnp.int32))


class EpochRunner:
    """The compiled programs of training, each traced once and run epoch after epoch, all with ``_step``."""

    def __init__(self, config: TrainConfig, num_examples: int, mesh: Mesh | None = None, unroll: int = 1):
        if unroll < 1:
            raise ValueError(f"unroll must be >= 1, got {unroll}")
        self.config = config
        # Steps per iteration of the compiled loop: fewer iterations cut per-iteration
        # overhead on accelerators; every step computes the same numbers either way.
        self.unroll = unroll
        self.num_examples = num_examples
        self.full_batches, self.remainder = batch_layout(num_examples, config.batch_size)
        # The mesh splits each full batch when the devices divide it; the last, partial
        # batch is split too when they divide it, else every device computes it whole.
        split = mesh_split(mesh, num_examples, config.batch_size)
        self.mesh = mesh if split.full else None
        self.split_last = split.last
        self.trace_count = 0  # traces of the epoch function: 1 after any number of epochs of one data shape
        self._epoch = jax.jit(self._epoch_fn, donate_argnums=(0,))
        self._batched = jax.jit(self._batches_fn, donate_argnums=(0,))
        self._one_step = jax.jit(self._step_fn, donate_argnums=(0,))

    def _batch_sharded(self, x, axis: int, split: bool = True):
        """Split ``x`` across the mesh along its batch ``axis``."""
        if self.mesh is None or not split:
            return x
        spec = [None] * x.ndim
        spec[axis] = "batch"
        return lax.with_sharding_constraint(x, NamedSharding(self.mesh, PartitionSpec(*spec)))

    def _step_fn(self, params: Params, images, labels):
        return _step(params, images, labels, self.config.num_classes, self.config.step_size)

    def _epoch_fn(self, params: Params, images, labels, key):
        """The epoch from the whole split on the device: shuffle there, cut into the seed's batches, train."""
        cfg = self.config
        if cfg.shuffle:
            order = random.permutation(key, self.num_examples)
            images, labels = images[order], labels[order]
        n_full = self.full_batches * cfg.batch_size
        full_images = images[:n_full].reshape(self.full_batches, cfg.batch_size, -1)
        full_labels = labels[:n_full].reshape(self.full_batches, cfg.batch_size)
        return self._batches_fn(params, full_images, full_labels, images[n_full:], labels[n_full:])

    def _batches_fn(self, params: Params, full_images, full_labels, last_images, last_labels):
        """The epoch program: ``lax.scan`` over the full batches, then the last, partial one."""
        self.trace_count += 1
        cfg = self.config
        full_images = self._batch_sharded(full_images, axis=1)
        full_labels = self._batch_sharded(full_labels, axis=1)

        def body(p, batch):
            return _step(p, batch[0], batch[1], cfg.num_classes, cfg.step_size)

        params, (losses, counts) = lax.scan(body, params, (full_images, full_labels), unroll=self.unroll)
        loss_sum = jnp.sum(losses) * cfg.batch_size
        class_counts = jnp.sum(counts, axis=0)
        if self.remainder:
            last_images = self._batch_sharded(last_images, axis=0, split=self.split_last)
            last_labels = self._batch_sharded(last_labels, axis=0, split=self.split_last)
            params, (last_loss, last_counts) = _step(params, last_images, last_labels, cfg.num_classes, cfg.step_size)
            loss_sum = loss_sum + last_loss * self.remainder
            class_counts = class_counts + last_counts
            losses = jnp.concatenate([losses, last_loss[None]])
        # Mean of per-batch losses weighted by batch size (= mean per-example loss).
        return EpochOutput(params, loss_sum / self.num_examples, class_counts, _first_nonfinite(losses))

    def place(self, params: Params, images, labels):
        """Put params and data on the device(s): replicated over the mesh, if any."""
        if self.mesh is None:
            return jax.device_put((params, images, labels))
        replicated = NamedSharding(self.mesh, PartitionSpec())
        return jax.device_put((params, images, labels), replicated)

    def epoch_key(self, epoch: int) -> jax.Array:
        """The shuffle key of ``epoch`` (0-based): a pure function of seed and epoch."""
        return random.fold_in(random.fold_in(random.key(self.config.seed), _SHUFFLE_STREAM), epoch)

    def run_epoch(self, params: Params, images, labels, epoch: int) -> EpochOutput:
        """Train one epoch (0-based ``epoch`` picks the shuffle key)."""
        return self._epoch(params, images, labels, self.epoch_key(epoch))

    def run_batches(self, params: Params, full_images, full_labels, last_images, last_labels) -> EpochOutput:
        """Train one epoch already cut into batches (``[batches, batch_size, ...]`` and the last one)."""
        return self._batched(params, full_images, full_labels, last_images, last_labels)

    def run_step(self, params: Params, images, labels):
        """One SGD step on one batch (a streamed epoch): ``(params, (batch loss, class counts))``."""
        return self._one_step(params, images, labels)


def flatten_images(images: np.ndarray) -> np.ndarray:
    """``[N, H, W, C]`` -> ``[N, H*W*C]`` without copying or changing dtype."""
    return images.reshape(len(images), -1)


class BatchSource:
    """Where each epoch's batches come from; ``fit`` does everything else."""

    num_examples: int  # the train split's size
    features: int | None = None  # values per example, when known before training (checked against layer_sizes[0])
    mesh: Mesh | None = None  # the devices each batch is split over (None: one device)
    primary: bool = True  # this process writes the checkpoints (of several processes, only process 0 does)

    def place(self, runner: EpochRunner, params: Params) -> Params:
        """Put the params (and the data, if it lives on the devices) where the epochs run."""
        return params

    def run_epoch(self, runner: EpochRunner, params: Params, epoch: int) -> EpochOutput:
        """Train one epoch (0-based ``epoch``) with ``runner``'s compiled step."""
        raise NotImplementedError

    def evaluate(self, params: Params) -> tuple[float, float | None, float | None]:
        """After an epoch: ``(train accuracy, test loss or None, test accuracy or None)``."""
        raise NotImplementedError

    def host_params(self, params: Params) -> Params:
        """The params as checkpoints, ``on_epoch`` and the caller take them."""
        return params

    def finish(self, error: BaseException | None) -> None:
        """The epochs are over: all done (``error`` None), or one raised ``error``."""


class SplitOnDevice(BatchSource):
    """The whole split on the device(s), flattened and put there once, replicated over ``mesh``: one call per epoch."""

    def __init__(self, train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray | None = None,
                 test_labels: np.ndarray | None = None, *, mesh: Mesh | None = None):
        self.images = flatten_images(train_images)
        self.labels = np.asarray(train_labels, np.int32)
        self.num_examples, self.features = self.images.shape
        self.mesh = mesh
        self.test = None if test_images is None else (flatten_images(test_images), np.asarray(test_labels, np.int32))

    def place(self, runner: EpochRunner, params: Params) -> Params:
        params, self.images, self.labels = runner.place(params, self.images, self.labels)
        if self.test is not None:
            self.test = jax.device_put(self.test)
        return params

    def run_epoch(self, runner: EpochRunner, params: Params, epoch: int) -> EpochOutput:
        return runner.run_epoch(params, self.images, self.labels, epoch)

    def evaluate(self, params: Params) -> tuple[float, float | None, float | None]:
        train_accuracy = evaluate(params, self.images, self.labels).accuracy
        if self.test is None:
            return train_accuracy, None, None
        tested = evaluate(params, *self.test)
        return train_accuracy, tested.loss, tested.accuracy


# read(split, batch_size, shuffle_epoch): the split's (images, labels) numpy batches in order, shuffled for that
# 0-based epoch unless it is None.
ReadFn = Callable[[str, int, "int | None"], Iterator[tuple[np.ndarray, np.ndarray]]]


class BatchStream(BatchSource):
    """Batches read as the epoch goes, for data that does not fit in device memory: one jitted step per batch."""

    def __init__(self, read: ReadFn, num_examples: int):
        self.read = read
        self.num_examples = num_examples

    def run_epoch(self, runner: EpochRunner, params: Params, epoch: int) -> EpochOutput:
        config = runner.config
        loss_sum = jnp.zeros(())
        class_counts = jnp.zeros(config.num_classes, jnp.int32)
        first_bad = jnp.array(-1)
        seen = steps = 0
        for images, labels in self.read("train", config.batch_size, epoch if config.shuffle else None):
            images = flatten_images(images)
            params, (batch_loss, batch_counts) = runner.run_step(params, images, np.asarray(labels, np.int32))
            loss_sum = loss_sum + batch_loss * len(images)
            class_counts = class_counts + batch_counts
            first_bad = jnp.where((first_bad < 0) & ~jnp.isfinite(batch_loss), steps, first_bad)
            seen += len(images)
            steps += 1
        if seen != self.num_examples:
            raise ValueError(f"epoch {epoch + 1} streamed {seen} examples, the split has {self.num_examples}")
        return EpochOutput(params, loss_sum / seen, class_counts, first_bad)

    def evaluate(self, params: Params) -> tuple[float, float | None, float | None]:
        tested = evaluate_batches(params, self.read("test", CHUNK, None))
        return evaluate_batches(params, self.read("train", CHUNK, None)).accuracy, tested.loss, tested.accuracy


OnEpoch = Callable[[Params, EpochMetrics, "list[EpochMetrics]"], None]


def fit(
    config: TrainConfig,
    source: BatchSource,
    *,
    checkpoints: Checkpoints | None = None,
    on_epoch: OnEpoch | None = None,
    log: Callable[[str], None] = print,
) -> tuple[Params, list[EpochMetrics]]:
    """The one training loop, resumed from ``checkpoints``' newest: the final params and each epoch's metrics."""
    if source.features is not None and source.features != config.layer_sizes[0]:
        raise UserError(f"images have {source.features} values each but layer_sizes[0] is {config.layer_sizes[0]}")
    runner = EpochRunner(config, source.num_examples, mesh=source.mesh)
    resume = checkpoints.latest(config.layer_sizes, log) if checkpoints is not None else None
    if resume is not None:
        log(f"resuming from {resume.uri} ({resume.epoch} epoch(s) done)")
        params, start_epoch, history = resume.params, resume.epoch, [EpochMetrics(**h) for h in resume.history]
    else:
        params = init_network_params(config.layer_sizes, random.key(config.seed), config.init_scale)
        start_epoch, history = 0, []
    params = source.place(runner, params)
    try:
        for epoch in range(start_epoch, config.epochs):
            started = time.perf_counter()
            params, epoch_loss, class_counts, first_bad = source.run_epoch(runner, params, epoch)
            epoch_loss = float(epoch_loss)  # waits for the epoch to finish
            seconds = time.perf_counter() - started
            if int(first_bad) >= 0:
                raise UserError(
                    f"training diverged: non-finite loss at epoch {epoch + 1}, step {int(first_bad) + 1} of "
                    f"{runner.full_batches + bool(runner.remainder)}; try a smaller step size (now {config.step_size})"
                )
            train_accuracy, test_loss, test_accuracy = source.evaluate(params)
            metrics = EpochMetrics(
                epoch=epoch + 1,
                loss=epoch_loss,
                train_accuracy=train_accuracy,
                test_accuracy=test_accuracy,
                test_loss=test_loss,
                seconds=seconds,
                examples_per_second=source.num_examples / seconds,
                class_counts=np.asarray(class_counts).tolist(),
            )
            history.append(metrics)
            host = source.host_params(params)
            if checkpoints is not None and source.primary:
                checkpoints.save(metrics.epoch, host, [h.to_dict() for h in history])
            if on_epoch is not None:
                on_epoch(host, metrics, history)
    except BaseException as e:
        source.finish(e)
        raise
    source.finish(None)
    return source.host_params(params), history
