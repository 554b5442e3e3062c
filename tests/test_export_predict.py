"""The SavedModel serves what the JAX model computes, on today's TensorFlow and on the serving container's; the predict CLI uses either."""

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
    serve = tf.saved_model.load(str(trained / "saved_model" / "1")).signatures["serving_default"]
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


def test_saved_model_cli_runs_the_signature_on_real_test_images(trained, full_dataset, tmp_path):
    """TensorFlow's own tool, on the folder Vertex AI's prebuilt containers take (saved_model/1)."""
    import subprocess
    import sys
    from pathlib import Path

    from components.predict import predict_images

    images, _ = read_split(full_dataset, "test")
    np.save(tmp_path / "eight.npy", images[:8])
    cli = Path(sys.executable).parent / "saved_model_cli"
    shown = subprocess.run([str(cli) if cli.exists() else "saved_model_cli", "show", "--dir", str(trained / "saved_model" / "1"),
                            "--tag_set", "serve", "--signature_def", "serving_default"],
                           capture_output=True, text=True, check=True).stdout
    assert "inputs['images'] tensor_info:" in shown and "dtype: DT_UINT8" in shown and "shape: (-1, 28, 28, 1)" in shown
    assert "outputs['probabilities']" in shown and "outputs['classes']" in shown
    run = subprocess.run([str(cli) if cli.exists() else "saved_model_cli", "run", "--dir", str(trained / "saved_model" / "1"),
                          "--tag_set", "serve", "--signature_def", "serving_default",
                          "--inputs", f"images={tmp_path / 'eight.npy'}", "--outdir", str(tmp_path / "out")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    classes = np.load(tmp_path / "out" / "classes.npy")
    np.testing.assert_array_equal(classes, predict_images(trained, images[:8], "native")[1])


def test_predict_over_tf_servings_rest_api(trained, full_dataset, tmp_path):
    """``predict --server`` against TF Serving's REST API (stand-in) serving saved_model/ as its base path."""
    from tf_serving_stand_in import TfServingStandIn

    images, _ = read_split(full_dataset, "test")
    np.save(tmp_path / "batch.npy", images[:5])
    local = run_cli("-m", "components.predict", "--model", str(trained), str(tmp_path / "batch.npy")).stdout
    with TfServingStandIn({"mnist-mlp": trained / "saved_model"}) as serving:
        served = run_cli("-m", "components.predict", "--server", serving.url, "--model-name", "mnist-mlp",
                         str(tmp_path / "batch.npy")).stdout
        unknown = run_cli("-m", "components.predict", "--server", serving.url, "--model-name", "mnist",
                          str(tmp_path / "batch.npy"), check=False)
        request = serving.requests[0]  # then the 404 one
    assert served == local  # the same digits and probabilities (to 4 digits) as the JAX model
    body = __import__("json").loads(request["body"])
    assert request["path"] == "/v1/models/mnist-mlp:predict" and body["signature_name"] == "serving_default"
    assert np.array(body["instances"]).shape == (5, 28, 28, 1)
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == (f"error: {serving.url}/v1/models/mnist:predict answered 404: "
                                      "Servable not found for request: Latest(mnist)")
    gone = run_cli("-m", "components.predict", "--server", serving.url, "--model-name", "mnist-mlp",
                   str(tmp_path / "batch.npy"), check=False)
    assert gone.returncode == 2 and "cannot reach" in gone.stderr and "Connection refused" in gone.stderr


def test_kserve_manifest_for_the_champion_serves_from_its_storage_uri(trained, tmp_path):
    """The InferenceService's storageUri is a TF Serving base path: served as KServe's runtime would serve it."""
    import yaml

    from tf_serving_stand_in import TfServingStandIn

    published = tmp_path / "published"
    run_cli("-m", "components.publish", "--model", str(trained), "--publish-uri", str(published),
            "--test-accuracy", "0.93", "--test-loss", "0.02")
    result = run_cli("-m", "clusters.kserve", "--name", "mnist-mlp", "--publish-uri", str(published),
                     "--namespace", "team-a")
    manifest = yaml.safe_load(result.stdout)
    version = (published / "LATEST").read_text().strip()
    assert manifest["apiVersion"] == "serving.kserve.io/v1beta1" and manifest["kind"] == "InferenceService"
    assert manifest["metadata"] == {"name": "mnist-mlp", "namespace": "team-a",
                                    "labels": {"app.kubernetes.io/managed-by": "jax-mlp-pipeline"}}
    model = manifest["spec"]["predictor"]["model"]
    assert model["modelFormat"] == {"name": "tensorflow"}
    assert model["storageUri"] == str(published / version / "saved_model")
    assert "is a folder on this machine, which KServe cannot read" in result.stderr  # a local folder: a warning
    with TfServingStandIn({"mnist-mlp": model["storageUri"]}) as serving:
        status = __import__("json").loads(__import__("urllib.request").request.urlopen(
            f"{serving.url}/v1/models/mnist-mlp").read())
    assert status["model_version_status"][0]["state"] == "AVAILABLE"

    bad = run_cli("-m", "clusters.kserve", "--name", "MNIST_mlp", "--publish-uri", str(published), check=False)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "--name 'MNIST_mlp'" in bad.stderr and "lowercase letters" in bad.stderr  # the rule, named
    none = run_cli("-m", "clusters.kserve", "--name", "mnist", "--publish-uri", str(tmp_path / "empty"), check=False)
    assert none.returncode == 2 and "no champion at" in none.stderr


@pytest.fixture(scope="module")
def serving_tensorflow(tmp_path_factory):
    """A Python with the TensorFlow of the serving container the Model Registry publish names (tf2-cpu.2-15: 2.15).

    Installed from the package index into a virtual environment kept under ~/.cache between runs.
    """
    import os
    import re
    import subprocess
    import sys
    import venv
    from pathlib import Path

    from mlp_core.model_registry import SERVING_IMAGE

    major, minor = re.search(r"tf2-cpu\.(\d+)-(\d+):", SERVING_IMAGE).groups()
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jax-mlp-pipeline" / f"tensorflow-{major}.{minor}"
    python = home / "bin" / "python"
    if not python.exists():
        venv.create(home, with_pip=True)
        result = subprocess.run([str(python), "-m", "pip", "install", "--quiet", f"tensorflow-cpu=={major}.{minor}.*",
                                 "numpy<2"], capture_output=True, text=True)
        if result.returncode != 0:
            import shutil

            shutil.rmtree(home, ignore_errors=True)  # our own cache folder
            message = f"cannot install tensorflow-cpu {major}.{minor}: {result.stderr.strip().splitlines()[-1:]}"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
    version = subprocess.run([str(python), "-c", "import tensorflow as tf; print(tf.__version__)"], capture_output=True,
                             text=True, check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}).stdout.strip()
    assert version.startswith(f"{major}.{minor}."), version
    return python, version


_SERVE = """
import sys, numpy as np, tensorflow as tf
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
out = serve(images=tf.constant(np.load(sys.argv[2])))
np.save(sys.argv[3], out["probabilities"].numpy())
"""


@pytest.mark.slow
def test_the_serving_containers_tensorflow_serves_the_saved_model(trained, full_dataset, serving_tensorflow, tmp_path):
    """Vertex AI's prebuilt container (TensorFlow 2.15) loads saved_model/1 and computes what JAX does.

    A jax2tf SavedModel would not load there: its XlaCallModule op needs a TensorFlow about as new as JAX
    (mlp_core/export.py); this is the check that the export stays servable by the registered container.
    """
    import subprocess

    from components.predict import predict_images

    python, version = serving_tensorflow
    images, _ = read_split(full_dataset, "test")
    np.save(tmp_path / "images.npy", images[:1000])
    result = subprocess.run([str(python), "-c", _SERVE, str(trained / "saved_model" / "1"), str(tmp_path / "images.npy"),
                             str(tmp_path / "probabilities.npy")], capture_output=True, text=True)
    assert result.returncode == 0, f"TensorFlow {version}: {result.stderr[-2000:]}"
    jax_probs, jax_classes = predict_images(trained, images[:1000], "native")
    served = np.load(tmp_path / "probabilities.npy")
    np.testing.assert_allclose(served, jax_probs, atol=1e-5)
    np.testing.assert_array_equal(served.argmax(axis=1), jax_classes)
