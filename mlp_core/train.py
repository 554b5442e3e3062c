"""The training loop: one compiled call per epoch, data parallel over local devices.

Each epoch is a single jitted function: ``lax.scan`` over the full batches, then
the last partial batch exactly as the seed's loop takes it (60,000 examples at
batch 128 are 468 steps of 128 and one of 96; nothing dropped, nothing
repeated). Parameters are donated, so the epoch updates them in place.

Data too big for the device streams instead (``fit_streaming``: one jitted step
per batch). Either way one loop (``run_epochs``) times each epoch, checks it stayed
finite, evaluates, and keeps the history.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax, random
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mlp_core.config import ConfigError, TrainConfig
from mlp_core.evaluation import evaluate
from mlp_core.mesh import mesh_split
from mlp_core.model import Params, init_network_params, loss, one_hot, sgd

# Folded into the seed's key to derive the shuffle stream, so that shuffling
# never reuses the keys that initialised the parameters.
_SHUFFLE_STREAM = 0x5EED


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss."""


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
        raise ConfigError("the training split is empty")
    if batch_size > num_examples:
        raise ConfigError(f"batch_size {batch_size} is larger than the training split ({num_examples} examples)")
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
    """Compiles the whole-epoch program once and runs it epoch after epoch.

    ``trace_count`` counts how often JAX traced the epoch function: it is 1
    after any number of epochs of the same data shape.
    """

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
        self.trace_count = 0
        self._epoch = jax.jit(self._epoch_fn, donate_argnums=(0,))
        self._batched = jax.jit(self._batches_fn, donate_argnums=(0,))

    def _batch_sharded(self, x, axis: int, split: bool = True):
        """Split ``x`` across the mesh along its batch ``axis``."""
        if self.mesh is None or not split:
            return x
        spec = [None] * x.ndim
        spec[axis] = "batch"
        return lax.with_sharding_constraint(x, NamedSharding(self.mesh, PartitionSpec(*spec)))

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
        """Train one epoch already cut into batches (``[batches, batch_size, ...]`` and the last one), as
        processes that each hold only their slice of every batch feed it (``mlp_core.multiprocess``)."""
        return self._batched(params, full_images, full_labels, last_images, last_labels)


def flatten_images(images: np.ndarray) -> np.ndarray:
    """``[N, H, W, C]`` -> ``[N, H*W*C]`` without copying or changing dtype."""
    return images.reshape(len(images), -1)


# Per epoch: (params, mean loss, class counts, 0-based step of the first non-finite batch loss or -1).
EpochFn = Callable[[Params, int], EpochOutput]
# After an epoch: (train accuracy, test loss or None, test accuracy or None).
EvaluateFn = Callable[[Params], "tuple[float, float | None, float | None]"]


def run_epochs(
    config: TrainConfig,
    num_examples: int,
    run_epoch: EpochFn,
    evaluate_fn: EvaluateFn,
    params: Params,
    start_epoch: int,
    history: list[EpochMetrics] | None,
    on_epoch: Callable[[Params, EpochMetrics, list[EpochMetrics]], None] | None,
) -> tuple[Params, list[EpochMetrics]]:
    """The one training loop: epochs ``start_epoch..num_epochs``, each timed, checked, evaluated, recorded."""
    full_batches, remainder = batch_layout(num_examples, config.batch_size)
    history = list(history or [])
    for epoch in range(start_epoch, config.num_epochs):
        started = time.perf_counter()
        params, epoch_loss, class_counts, first_bad = run_epoch(params, epoch)
        epoch_loss = float(epoch_loss)  # waits for the epoch to finish
        seconds = time.perf_counter() - started
        if int(first_bad) >= 0:
            raise DivergenceError(
                f"training diverged: non-finite loss at epoch {epoch + 1}, step {int(first_bad) + 1} of "
                f"{full_batches + bool(remainder)}; try a smaller step size (now {config.step_size})"
            )
        train_accuracy, test_loss, test_accuracy = evaluate_fn(params)
        metrics = EpochMetrics(
            epoch=epoch + 1,
            loss=epoch_loss,
            train_accuracy=train_accuracy,
            test_accuracy=test_accuracy,
            test_loss=test_loss,
            seconds=seconds,
            examples_per_second=num_examples / seconds,
            class_counts=np.asarray(class_counts).tolist(),
        )
        history.append(metrics)
        if on_epoch is not None:
            on_epoch(params, metrics, history)
    return params, history


def fit(
    config: TrainConfig,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray | None = None,
    test_labels: np.ndarray | None = None,
    *,
    params: Params | None = None,
    start_epoch: int = 0,
    history: list[EpochMetrics] | None = None,
    mesh: Mesh | None = None,
    on_epoch: Callable[[Params, EpochMetrics, list[EpochMetrics]], None] | None = None,
) -> tuple[Params, list[EpochMetrics]]:
    """Train on in-memory data; returns final params and one ``EpochMetrics`` per epoch.

    ``train_images`` are uint8 (or float) ``[N, ...]``; they are flattened and
    put on the device(s) once. ``on_epoch`` is called after each epoch (the
    hook the train component uses for progress and checkpoints).
    """
    train_images = flatten_images(train_images)
    check_input_size(config, train_images)
    runner = EpochRunner(config, len(train_images), mesh=mesh)
    if params is None:
        params = init_network_params(config.layer_sizes, random.key(config.seed), config.init_scale)
    params, images, labels = runner.place(params, train_images, np.asarray(train_labels, np.int32))
    test = None
    if test_images is not None:
        test = jax.device_put((flatten_images(test_images), np.asarray(test_labels, np.int32)))

    def evaluate_fn(params):
        train_accuracy = evaluate(params, images, labels).accuracy
        if test is None:
            return train_accuracy, None, None
        tested = evaluate(params, *test)
        return train_accuracy, tested.loss, tested.accuracy

    return run_epochs(config, len(train_images), lambda p, epoch: runner.run_epoch(p, images, labels, epoch), evaluate_fn,
                  params, start_epoch, history, on_epoch)


def check_input_size(config: TrainConfig, images: np.ndarray) -> None:
    if images.shape[1] != config.layer_sizes[0]:
        raise ConfigError(
            f"images have {images.shape[1]} values each but layer_sizes[0] is {config.layer_sizes[0]}"
        )


def fit_streaming(
    config: TrainConfig,
    batches: Callable[[int], Iterable[tuple[np.ndarray, np.ndarray]]],
    num_examples: int,
    *,
    params: Params | None = None,
    start_epoch: int = 0,
    history: list[EpochMetrics] | None = None,
    evaluate_fn: EvaluateFn | None = None,
    on_epoch: Callable[[Params, EpochMetrics, list[EpochMetrics]], None] | None = None,
) -> tuple[Params, list[EpochMetrics]]:
    """Train from a batch stream, for data that does not fit in device memory.

    ``batches(epoch)`` yields ``(images, labels)`` numpy batches of the epoch
    in order (a tf.data pipeline with prefetch overlaps reading with compute).
    One jitted step per batch: two compilations, full batch and last batch.
    ``evaluate_fn(params)`` returns ``(train_accuracy, test_loss, test_accuracy)``.
    """
    batch_layout(num_examples, config.batch_size)
    if params is None:
        params = init_network_params(config.layer_sizes, random.key(config.seed), config.init_scale)
    step = jax.jit(lambda p, x, y: _step(p, x, y, config.num_classes, config.step_size), donate_argnums=(0,))

    def run_epoch(params, epoch: int) -> EpochOutput:
        loss_sum = jnp.zeros(())
        class_counts = jnp.zeros(config.num_classes, jnp.int32)
        first_bad = jnp.array(-1)
        seen = steps = 0
        for images, labels in batches(epoch):
            images = flatten_images(images)
            params, (batch_loss, batch_counts) = step(params, images, np.asarray(labels, np.int32))
            loss_sum = loss_sum + batch_loss * len(images)
            class_counts = class_counts + batch_counts
            first_bad = jnp.where((first_bad < 0) & ~jnp.isfinite(batch_loss), steps, first_bad)
            seen += len(images)
            steps += 1
        if seen != num_examples:
            raise ValueError(f"epoch {epoch + 1} streamed {seen} examples, the split has {num_examples}")
        return EpochOutput(params, loss_sum / seen, class_counts, first_bad)

    return run_epochs(config, num_examples, run_epoch, evaluate_fn or (lambda _: (float("nan"), None, None)),
                  params, start_epoch, history, on_epoch)
