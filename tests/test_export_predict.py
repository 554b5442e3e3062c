"""The jax2tf SavedModel serves what the JAX model computes; the predict CLI uses either."""

import numpy as np
import pytest

from conftest import run_cli
from mlp_core.data.artifact import read_split
from mlp_core.data.tf import tf


@pytest.fixture(scope="module")
def trained(full_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("served") / "model"
    run_cli("-m", "components.train", "--dataset", str(full_dataset), "--model", str(out), "--epochs", "1")
    return out


def test_saved_model_equals_jax_on_1000_test_images(trained, full_dataset):
    from components.predict import predict_images

    images, _ = read_split(full_dataset, "test")
    images = images[:1000]
    serve = tf.saved_model.load(str(trained / "saved_model")).signatures["serving_default"]
    assert serve.structured_input_signature[1]["images"].dtype == tf.uint8
    out = serve(images=tf.constant(images))
    jax_probs, jax_classes = predict_images(trained, images, "native")
    assert out["probabilities"].shape == (1000, 10)
    np.testing.assert_allclose(out["probabilities"].numpy(), jax_probs, atol=1e-5)
    np.testing.assert_array_equal(out["classes"].numpy(), jax_classes)


def test_predict_cli_on_png_and_npy(trained, full_dataset, tmp_path):
    images, labels = read_split(full_dataset, "test")
    (tmp_path / "digit.png").write_bytes(tf.io.encode_png(images[0]).numpy())
    np.save(tmp_path / "batch.npy", images[1:4])
    outputs = {}
    for backend in ("native", "saved_model"):
        out = run_cli("-m", "components.predict", "--model", str(trained), "--backend", backend,
                      str(tmp_path / "digit.png"), str(tmp_path / "batch.npy")).stdout.strip().splitlines()
        assert [line.split(":")[0] for line in out] == ["digit.png", "batch.npy[0]", "batch.npy[1]", "batch.npy[2]"]
        outputs[backend] = out
    assert outputs["native"] == outputs["saved_model"]
    predicted = [int(line.split(": ")[1].split()[0]) for line in outputs["native"]]
    assert predicted == labels[:4].tolist()  # after one epoch (92% test accuracy) these four are right


def test_predict_refuses_bad_inputs(trained, tmp_path):
    np.save(tmp_path / "floats.npy", np.zeros((2, 28, 28, 1), np.float32))
    r = run_cli("-m", "components.predict", "--model", str(trained), str(tmp_path / "floats.npy"), check=False)
    assert r.returncode == 2 and "images must be uint8" in r.stderr.strip().splitlines()[-1]
    np.save(tmp_path / "wrong.npy", np.zeros((2, 32, 32, 1), np.uint8))
    r = run_cli("-m", "components.predict", "--model", str(trained), str(tmp_path / "wrong.npy"), check=False)
    assert r.returncode == 2 and "images must be [28, 28, 1], got [32, 32, 1]" in r.stderr
