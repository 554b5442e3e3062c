"""The seed notebook's model and math, as pure functions over its params: a list of ``(w, b)``, ``w`` ``(n_out, n_in)``.

Every function is a transcription of the notebook; only ``update`` takes ``step_size`` as an argument instead of
reading a global (a global captured by ``jit`` freezes at the first trace).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import grad, random, vmap
from jax.scipy.special import logsumexp

Params = list[tuple[jax.Array, jax.Array]]


def random_layer_params(m: int, n: int, key: jax.Array, scale: float = 1e-2):
    """Weights ``(n, m)`` and biases ``(n,)`` drawn as ``scale * normal``."""
    w_key, b_key = random.split(key)
    return scale * random.normal(w_key, (n, m)), scale * random.normal(b_key, (n,))


def init_network_params(sizes: Sequence[int], key: jax.Array, scale: float = 1e-2) -> Params:
    """All layers of a fully connected network with layer widths ``sizes``."""
    keys = random.split(key, len(sizes))
    return [random_layer_params(m, n, k, scale) for m, n, k in zip(sizes[:-1], sizes[1:], keys)]


def relu(x):
    return jnp.maximum(0, x)


def predict(params: Params, image: jax.Array) -> jax.Array:
    """Log-probabilities for one flattened image (the seed's per-example predict)."""
    activations = image
    for w, b in params[:-1]:
        outputs = jnp.dot(w, activations) + b
        activations = relu(outputs)

    final_w, final_b = params[-1]
    logits = jnp.dot(final_w, activations) + final_b
    return logits - logsumexp(logits)


batched_predict = vmap(predict, in_axes=(None, 0))


def one_hot(x: jax.Array, k: int, dtype=jnp.float32) -> jax.Array:
    """One-hot encoding of integer labels ``x`` over ``k`` classes."""
    return jnp.array(x[:, None] == jnp.arange(k), dtype)


def accuracy(params: Params, images: jax.Array, targets: jax.Array) -> jax.Array:
    """Fraction of ``images`` whose argmax prediction matches one-hot ``targets``."""
    target_class = jnp.argmax(targets, axis=1)
    predicted_class = jnp.argmax(batched_predict(params, images), axis=1)
    return jnp.mean(predicted_class == target_class)


def loss(params: Params, images: jax.Array, targets: jax.Array) -> jax.Array:
    """The seed's loss: ``-mean(log_softmax(logits) * one_hot)`` over batch and classes."""
    preds = batched_predict(params, images)
    return -jnp.mean(preds * targets)


def sgd(params: Params, grads: Params, step_size) -> Params:
    """Plain SGD, written as the seed writes it."""
    return [(w - step_size * dw, b - step_size * db) for (w, b), (dw, db) in zip(params, grads)]


def update(params: Params, x: jax.Array, y: jax.Array, step_size) -> Params:
    """One SGD step on a batch (the seed's ``update`` with ``step_size`` passed in)."""
    return sgd(params, grad(loss)(params, x, y), step_size)
