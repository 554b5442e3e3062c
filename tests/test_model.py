import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import grad, jit, random

from mlp_core import accuracy, batched_predict, init_network_params, loss, one_hot, predict, update

SIZES = [784, 512, 512, 10]


@pytest.fixture(scope="module")
def params():
    return init_network_params(SIZES, random.key(0))


def test_layer_shapes_and_parameter_count(params):
    assert [(w.shape, b.shape) for w, b in params] == [((512, 784), (512,)), ((512, 512), (512,)), ((10, 512), (10,))]
    assert sum(leaf.size for leaf in jax.tree_util.tree_leaves(params)) == 669_706


def test_init_is_the_seeds_scaled_normal(params):
    # The seed: keys = split(key(0), len(sizes)); w, b = scale * normal(split(k)).
    keys = random.split(random.key(0), len(SIZES))
    w_key, b_key = random.split(keys[1])
    np.testing.assert_array_equal(params[1][0], 1e-2 * random.normal(w_key, (512, 512)))
    np.testing.assert_array_equal(params[1][1], 1e-2 * random.normal(b_key, (512,)))


def test_predict_takes_one_image_and_rejects_a_batch(params):
    image = random.normal(random.key(1), (28 * 28,))
    out = predict(params, image)
    assert out.shape == (10,)
    np.testing.assert_allclose(jnp.sum(jnp.exp(out)), 1.0, rtol=1e-5)  # log-softmax
    with pytest.raises(TypeError):
        predict(params, random.normal(random.key(1), (10, 28 * 28)))
    assert batched_predict(params, random.normal(random.key(1), (10, 28 * 28))).shape == (10, 10)


def _seed_update(params, x, y, step_size):
    """The notebook's ``update``, transcribed literally (global step_size made a closure)."""

    def seed_loss(params, images, targets):
        preds = batched_predict(params, images)
        return -jnp.mean(preds * targets)

    @jit
    def seed_update(params, x, y):
        grads = grad(seed_loss)(params, x, y)
        return [(w - step_size * dw, b - step_size * db) for (w, b), (dw, db) in zip(params, grads)]

    return seed_update(params, x, y)


def test_one_sgd_step_equals_the_seed_update(params):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.integers(0, 256, (32, 784), dtype=np.uint8))
    y = one_hot(jnp.asarray(rng.integers(0, 10, 32)), 10)
    ours = jit(update)(params, x, y, 0.01)
    theirs = _seed_update(params, x, y, 0.01)
    for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(theirs)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_loss_decreases_and_accuracy_is_a_fraction(params):
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.integers(0, 256, (64, 784), dtype=np.uint8))
    y = one_hot(jnp.asarray(rng.integers(0, 10, 64)), 10)
    p = params
    before = float(loss(p, x, y))
    step = jit(update)
    for _ in range(5):
        p = step(p, x, y, 0.01)
    assert float(loss(p, x, y)) < before
    acc = float(accuracy(p, x, y))
    assert 0.0 <= acc <= 1.0


def test_one_hot_matches_the_seed():
    np.testing.assert_array_equal(one_hot(jnp.array([0, 2]), 3), [[1, 0, 0], [0, 0, 1]])
