"""Tuning: many configurations trained at once as one vmapped program, chosen on a validation split.

A population (trials sharing batch and layer sizes) trains as one jitted epoch, ``vmap`` over the trials; successive
halving keeps the best 1/eta at each rung, and a diverged trial is dropped alone (docs/design.md, "Tuning").
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import psutil
from jax import lax, random

from mlp_core.config import TrainConfig
from mlp_core.errors import UserError
from mlp_core.evaluation import CHUNK
from mlp_core.model import batched_predict, init_network_params
from mlp_core.train import _SHUFFLE_STREAM, _step, batch_layout, flatten_images


@dataclass(frozen=True)
class Trial:
    number: int
    step_size: float
    seed: int
    batch_size: int
    hidden_sizes: tuple[int, ...]


@dataclass
class TrialResult:
    trial: Trial
    status: str = "running"  # then "completed", "stopped" (halving) or "diverged"
    val_accuracy: list[float] = field(default_factory=list)  # after each epoch it trained
    loss: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {**asdict(self.trial), "status": self.status, "val_accuracy": self.val_accuracy, "loss": self.loss}


def validation_split(labels: np.ndarray, fraction: float, num_classes: int, seed: int = 0):
    """``(train indices, validation indices)``: ``fraction`` of each class, drawn with ``seed``, both sorted."""
    if not 0 < fraction < 1:
        raise UserError(f"validation_fraction must be between 0 and 1, got {fraction}", field="validation_fraction")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    held = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        n = round(fraction * len(members))
        if n == 0 or n == len(members):
            raise UserError(f"validation_fraction {fraction} leaves class {c} ({len(members)} examples) with no "
                              f"{'validation' if n == 0 else 'training'} example", field="validation_fraction")
        held.append(rng.permutation(members)[:n])
    validation = np.sort(np.concatenate(held))
    return np.setdiff1d(np.arange(len(labels)), validation), validation


def sample_trials(num_trials: int, step_size_range: tuple[float, float], batch_sizes, hidden_sizes,
                  search_seed: int = 0) -> list[Trial]:
    """``num_trials`` draws: step size log-uniform over the range, a random seed, batch and hidden sizes chosen."""
    lo, hi = step_size_range
    if not 0 < lo <= hi or not math.isfinite(hi):
        raise UserError(f"the step size range must be 0 < low <= high, got {lo}..{hi}", field="step_size_range")
    if num_trials < 1:
        raise UserError(f"trials must be at least 1, got {num_trials}", field="trials")
    rng = np.random.default_rng(search_seed)
    return [Trial(number=i, step_size=float(np.exp(rng.uniform(np.log(lo), np.log(hi)))),
                  seed=int(rng.integers(0, 2**31)), batch_size=int(batch_sizes[rng.integers(len(batch_sizes))]),
                  hidden_sizes=tuple(hidden_sizes[rng.integers(len(hidden_sizes))]))
            for i in range(num_trials)]


def _keys(seeds, epoch=None):
    """Each trial's init key (``epoch`` None) or its shuffle key of ``epoch``, as ``fit`` derives them."""
    keys = jax.vmap(random.key)(seeds)
    if epoch is None:
        return keys
    return jax.vmap(lambda k: random.fold_in(random.fold_in(k, _SHUFFLE_STREAM), epoch))(keys)


@functools.partial(jax.jit, static_argnames=("batch_size", "num_classes", "shuffle"), donate_argnums=(0,))
def population_epoch(params, step_sizes, keys, images, labels, *, batch_size: int, num_classes: int, shuffle: bool):
    """One epoch of every trial, each on the batches ``fit`` gives it alone: ``(params, mean loss, non-finite)``."""
    n = labels.shape[0]
    full, remainder = divmod(n, batch_size)
    orders = jax.vmap(lambda k: random.permutation(k, n) if shuffle else jnp.arange(n))(keys)
    step = jax.vmap(lambda p, x, y, s: _step(p, x, y, num_classes, s))

    def body(p, index):
        return step(p, images[index], labels[index], step_sizes)

    batches = orders[:, :full * batch_size].reshape(len(step_sizes), full, batch_size).swapaxes(0, 1)
    params, (losses, _) = lax.scan(body, params, batches)
    loss_sum = jnp.sum(losses, axis=0) * batch_size
    if remainder:
        last = orders[:, full * batch_size:]
        params, (last_loss, _) = step(params, images[last], labels[last], step_sizes)
        loss_sum = loss_sum + last_loss * remainder
        losses = jnp.concatenate([losses, last_loss[None]])
    return params, loss_sum / n, ~jnp.all(jnp.isfinite(losses), axis=0)


@jax.jit
def _correct(params, images, labels):
    """Correct predictions of every trial on one chunk."""
    return jax.vmap(lambda p: jnp.sum(jnp.argmax(batched_predict(p, images), axis=1) == labels))(params)


def population_accuracy(params, images, labels) -> np.ndarray:
    """Accuracy of every trial on a split, chunk by chunk."""
    correct = sum(_correct(params, images[s:s + CHUNK], labels[s:s + CHUNK]) for s in range(0, len(labels), CHUNK))
    return np.asarray(correct) / len(labels)


def init_population(layer_sizes, seeds, init_scale: float):
    """Every trial's params, drawn as ``fit`` draws them alone (``init_network_params`` from ``random.key(seed)``)."""
    return jax.vmap(lambda k: init_network_params(layer_sizes, k, init_scale))(_keys(jnp.asarray(seeds)))


def rungs(epochs: int, eta: int) -> list[int]:
    """The epochs after which successive halving compares the trials: 1, eta, eta**2, ... below ``epochs``."""
    return [eta**i for i in range(epochs) if eta**i < epochs] if eta > 1 else []


def device_memory() -> "tuple[int, str]":
    """Bytes of the device's memory, and what they are: a GPU's ``bytes_limit``, else the host's available memory."""
    stats = jax.devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return stats["bytes_limit"], "the device's bytes_limit"
    return psutil.virtual_memory().available, "available host memory (a CPU device)"


def max_population(layer_sizes, batch_size: int, budget: "int | None" = None) -> int:
    """How many trials of these shapes one device holds at once, in half its memory (``budget`` bytes if given)."""
    if budget is None:
        budget = device_memory()[0] // 2
    params = sum(m * n + n for m, n in zip(layer_sizes[:-1], layer_sizes[1:]))
    # params, gradients and the updated params (float32), the batch's activations forward and back
    per_trial = 3 * 4 * params + 3 * 4 * batch_size * sum(layer_sizes[1:]) + batch_size * layer_sizes[0]
    return max(1, int(budget // per_trial))


def _take(tree, keep):
    return jax.tree.map(lambda x: x[keep], tree)


def train_population(base: TrainConfig, trials: list[Trial], train, validation, *, eta: int = 3,
                     log=print) -> list[TrialResult]:
    """Train trials sharing batch and layer sizes together for ``base.epochs``, halving at each rung."""
    images, labels = jax.device_put((flatten_images(train[0]), np.asarray(train[1], np.int32)))
    val_images, val_labels = jax.device_put((flatten_images(validation[0]), np.asarray(validation[1], np.int32)))
    batch_size, sizes = trials[0].batch_size, (images.shape[1], *trials[0].hidden_sizes, base.num_classes)
    assert all((t.batch_size, t.hidden_sizes) == (batch_size, trials[0].hidden_sizes) for t in trials)
    batch_layout(len(labels), batch_size)
    results = [TrialResult(t) for t in trials]
    live = list(range(len(trials)))
    seeds = jnp.asarray([t.seed for t in trials])
    params = init_population(sizes, seeds, base.init_scale)
    halving = set(rungs(base.epochs, eta))
    for epoch in range(base.epochs):
        step_sizes = jnp.asarray([trials[i].step_size for i in live], jnp.float32)
        params, losses, diverged = population_epoch(
            params, step_sizes, _keys(seeds[jnp.asarray(live)], epoch), images, labels,
            batch_size=batch_size, num_classes=base.num_classes, shuffle=base.shuffle)
        accuracy = population_accuracy(params, val_images, val_labels)
        for j, i in enumerate(live):
            results[i].loss.append(float(losses[j]))
            results[i].val_accuracy.append(float(accuracy[j]))
            if diverged[j]:
                results[i].status = "diverged"
        keep = [j for j, i in enumerate(live) if results[i].status != "diverged"]
        if epoch + 1 in halving and len(keep) > 1:
            best_first = sorted(keep, key=lambda j: -accuracy[j])
            for j in best_first[math.ceil(len(keep) / eta):]:
                results[live[j]].status = "stopped"
            keep = sorted(best_first[:math.ceil(len(keep) / eta)])
        log(f"  batch {batch_size}, hidden {','.join(map(str, trials[0].hidden_sizes))}: epoch {epoch + 1}, "
            f"{len(live)} trial(s), best validation accuracy {max(accuracy):.4f}")
        if not keep:
            break
        if len(keep) < len(live):
            params, live = _take(params, jnp.asarray(keep)), [live[j] for j in keep]
    for i in live:
        if results[i].status == "running":
            results[i].status = "completed"
    return results

