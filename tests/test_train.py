import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax import jit, random

from mlp_core import TrainConfig, init_network_params, one_hot, update
from mlp_core.errors import UserError
from mlp_core.data.artifact import read_split
from mlp_core.train import EpochRunner, SplitOnDevice, batch_layout, fit, flatten_images

# The seed code's per-epoch test accuracy on this MNIST, in tfds's order (issue #2).
SEED_TRAJECTORY = [0.9249, 0.9401, 0.9487, 0.9550, 0.9578, 0.9611, 0.9632, 0.9651, 0.9674, 0.9691]


@pytest.fixture(scope="module")
def small(small_dataset):
    images, labels = read_split(small_dataset, "train")
    return flatten_images(images), labels


def test_batch_layout_is_the_seeds():
    assert batch_layout(60_000, 128) == (468, 96)
    with pytest.raises(UserError, match="larger than the training split"):
        batch_layout(100, 128)
    with pytest.raises(UserError, match="empty"):
        batch_layout(0, 128)


def test_epoch_equals_the_per_step_reference_loop(small):
    """One compiled epoch = the seed's Python loop of jitted updates (4 batches of 120 + one of 32)."""
    images, labels = small
    config = TrainConfig(batch_size=120, epochs=1, shuffle=False)
    start = init_network_params(config.layer_sizes, random.key(0))
    reference = start
    step = jit(update)
    for i in range(0, len(images), config.batch_size):
        reference = step(reference, images[i : i + 120], one_hot(labels[i : i + 120], 10), config.step_size)
    ours, history = fit(config, SplitOnDevice(images, labels))
    for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(reference)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert history[0].epoch == 1 and np.isfinite(history[0].loss)


def test_no_retrace_after_the_first_epoch(small):
    images, labels = small
    config = TrainConfig(epochs=3)
    runner = EpochRunner(config, len(images))
    params = init_network_params(config.layer_sizes, random.key(0))
    params, x, y = runner.place(params, images, labels)
    for epoch in range(config.epochs):
        params = runner.run_epoch(params, x, y, epoch).params
    assert runner.trace_count == 1


def test_unrolled_loop_computes_the_same_epoch(small):
    """``unroll`` changes only the compiled loop: 5 full batches at 4 per iteration, then the partial one."""
    images, labels = small
    config = TrainConfig(batch_size=100, shuffle=True)
    results = []
    for unroll in (1, 4):
        runner = EpochRunner(config, len(images), unroll=unroll)
        params = init_network_params(config.layer_sizes, random.key(0))
        params, x, y = runner.place(params, images, labels)
        out = runner.run_epoch(params, x, y, 0)
        results.append((jax.tree_util.tree_leaves(out.params), float(out.loss), out.class_counts.tolist()))
    (a, loss_a, counts_a), (b, loss_b, counts_b) = results
    for leaf_a, leaf_b in zip(a, b):
        np.testing.assert_allclose(leaf_a, leaf_b, rtol=1e-6, atol=1e-7)
    assert loss_a == pytest.approx(loss_b, rel=1e-6) and counts_a == counts_b
    with pytest.raises(ValueError, match="unroll"):
        EpochRunner(config, len(images), unroll=0)


def test_shuffle_differs_by_epoch_and_is_reproducible(small):
    images, labels = small
    config = TrainConfig(epochs=2, shuffle=True)
    a, _ = fit(config, SplitOnDevice(images, labels))
    b, _ = fit(config, SplitOnDevice(images, labels))
    c, _ = fit(config.replace(shuffle=False), SplitOnDevice(images, labels))
    np.testing.assert_array_equal(a[0][0], b[0][0])  # same seed, same data: same params (CPU)
    assert not np.allclose(a[0][0], c[0][0])


def test_test_metrics_reported_per_epoch(small, small_dataset):
    test_images, test_labels = read_split(small_dataset, "test")
    _, history = fit(TrainConfig(epochs=2), SplitOnDevice(*small, test_images, test_labels))
    assert [m.epoch for m in history] == [1, 2]
    assert all(0.0 <= m.test_accuracy <= 1.0 and m.test_loss > 0 for m in history)
    assert history[1].loss < history[0].loss


_TWO_DEVICES = """
import json, sys
import jax, numpy as np
from mlp_core import TrainConfig
from mlp_core.mesh import data_mesh
from mlp_core.train import SplitOnDevice, fit
data = np.load(sys.argv[1])
mesh = data_mesh() if len(jax.devices()) > 1 else None
params, hist = fit(TrainConfig(epochs=2, batch_size=64), SplitOnDevice(data["x"], data["y"], mesh=mesh))
np.save(sys.argv[2], np.concatenate([np.ravel(l) for l in jax.tree_util.tree_leaves(params)]))
print(json.dumps({"devices": len(jax.devices()), "loss": hist[-1].loss}))
"""


def test_two_host_devices_equal_one(small, tmp_path):
    np.savez(tmp_path / "data.npz", x=small[0], y=small[1])
    results = {}
    for count in (1, 2):
        env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={count}", "JAX_PLATFORMS": "cpu"}
        out = tmp_path / f"params{count}.npy"
        proc = subprocess.run(
            [sys.executable, "-c", _TWO_DEVICES, str(tmp_path / "data.npz"), str(out)],
            capture_output=True, text=True, env=env, check=True,
        )
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        assert info["devices"] == count
        results[count] = np.load(out)
    np.testing.assert_allclose(results[1], results[2], rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_seed_faithful_trajectory_on_real_mnist(full_dataset):
    """10 epochs in the seed's order reproduce the seed's per-epoch test accuracy within 0.002."""
    train_images, train_labels = read_split(full_dataset, "train")
    test_images, test_labels = read_split(full_dataset, "test")
    _, history = fit(TrainConfig(shuffle=False), SplitOnDevice(train_images, train_labels, test_images, test_labels))
    got = [round(m.test_accuracy, 4) for m in history]
    print("seed-faithful trajectory:", got)
    np.testing.assert_allclose(got, SEED_TRAJECTORY, atol=0.002)


def test_every_example_seen_once_per_epoch_in_both_orders(small):
    images, labels = small
    expected = np.bincount(labels, minlength=10).tolist()
    for shuffle in (False, True):
        _, history = fit(TrainConfig(epochs=2, batch_size=100, shuffle=shuffle), SplitOnDevice(images, labels))
        assert [m.class_counts for m in history] == [expected, expected]


def test_placement_by_size():
    from mlp_core.memory import choose_placement

    assert choose_placement(60_000 * 788, budget=1 << 30) == "device"
    assert choose_placement(60_000 * 788, budget=50 << 20) == "stream"
    assert choose_placement(10, "stream") == "stream"
    with pytest.raises(UserError, match="placement"):
        choose_placement(10, "gpu")


def test_streaming_and_on_device_paths_give_the_same_model(small_dataset, tmp_path):
    from components.train import train_on_dataset
    from mlp_core.config import TrainConfig
    from mlp_core.model_io import load_model

    runs = {}
    for placement in ("device", "stream"):
        history = train_on_dataset(small_dataset, tmp_path / placement, TrainConfig(epochs=2, batch_size=100, shuffle=False),
                                   placement=placement, log=lambda *_: None)
        runs[placement] = (load_model(tmp_path / placement)[0], history)
    for a, b in zip(jax.tree_util.tree_leaves(runs["device"][0]), jax.tree_util.tree_leaves(runs["stream"][0])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(runs["device"][1], runs["stream"][1]):
        assert a["class_counts"] == b["class_counts"]
        assert a["test_accuracy"] == pytest.approx(b["test_accuracy"], abs=1e-6)
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)


_MESH_PROBE = """
import json, sys
import jax, numpy as np
from mlp_core import TrainConfig
from mlp_core.mesh import data_mesh, describe_mesh
from mlp_core.train import EpochRunner, SplitOnDevice, fit
from mlp_core.model import init_network_params
data = np.load(sys.argv[1])
x, y = data["x"][: int(sys.argv[2])], data["y"][: int(sys.argv[2])]
config = TrainConfig(epochs=1, batch_size=128)
mesh = data_mesh()
runner = EpochRunner(config, len(x), mesh=mesh)
params = init_network_params(config.layer_sizes, jax.random.key(0))
placed = runner.place(params, x.reshape(len(x), -1), y.astype(np.int32))
hlo = runner._epoch.lower(*placed, runner.epoch_key(0)).compile().as_text()
trained, _ = fit(config, SplitOnDevice(x, y, mesh=mesh))
print(json.dumps({"log": describe_mesh(mesh, len(x), 128), "split_last": runner.split_last,
                  "mesh": runner.mesh is not None, "hlo_all_reduce": "all-reduce" in hlo,
                  "per_device_rows": sorted(set(int(n) for n in __import__("re").findall(r"f32\\[(\\d+),784\\]", hlo))),
                  "params_sharding": str(jax.tree_util.tree_leaves(trained)[0].sharding.spec),
                  "params_devices": len(jax.tree_util.tree_leaves(trained)[0].sharding.device_set)}))
"""


@pytest.mark.parametrize(("examples", "split_last"), [(500, True), (501, False)])
def test_two_devices_really_split_each_batch_and_say_so_when_the_last_does_not_divide(small, tmp_path, examples, split_last):
    """The compiled epoch on 2 forced host devices: each device multiplies 64 rows and gradients are all-reduced."""
    np.savez(tmp_path / "data.npz", x=small[0], y=small[1])
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", _MESH_PROBE, str(tmp_path / "data.npz"), str(examples)],
                          capture_output=True, text=True, env=env, check=True)
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["mesh"] and info["split_last"] is split_last
    assert info["hlo_all_reduce"]  # the gradients of the two halves are summed across devices
    assert 64 in info["per_device_rows"] and 128 not in info["per_device_rows"]  # a batch of 128 is 64 rows per device
    assert info["params_devices"] == 2 and info["params_sharding"] in ("P()", "PartitionSpec()")  # replicated on both
    remainder = examples % 128
    if split_last:
        assert info["log"] == "devices: 2 cpu, data parallel: each batch of 128 is split 64 per device"
    else:
        assert info["log"].endswith(f"the last batch of {remainder} does not divide over 2 devices, "
                                    "so each device computes it whole")
        assert remainder in info["per_device_rows"]


def test_a_batch_size_the_devices_cannot_divide_is_reported():
    import jax

    from mlp_core.mesh import describe_mesh, mesh_split

    class FakeMesh:  # only the device count and platform matter to the message
        devices = np.array(jax.devices() * 3)

    assert not mesh_split(FakeMesh, 1000, 100).full
    assert describe_mesh(FakeMesh, 1000, 100) == (
        "devices: 3 cpu, but the batch size 100 does not divide over 3 devices: training on one device "
        "(choose a batch size that is a multiple of 3)")
