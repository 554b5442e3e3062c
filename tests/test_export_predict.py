"""The SavedModel serves what the JAX model computes, on today's TensorFlow and on the serving container's; the predict CLI uses either."""

import numpy as np
import pytest

from conftest import run_cli, run_main
from mlp_core.data.artifact import read_split
from mlp_core.data.tf import tf
from test_champion import NAMED, named_rgb  # noqa: F401 - named_rgb is a fixture: 14x14x3 images, 3 named classes


@pytest.fixture(scope="module")
def trained(full_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("served") / "model"
    run_main("-m", "components.train", "--dataset", str(full_dataset), "--model", str(out), "--epochs", "1")
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
        assert [line.split(": ")[0] for line in out] == [str(tmp_path / name) for name in (  # each path as given
            "digit.png", "batch.npy[0]", "batch.npy[1]", "batch.npy[2]")]
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
        metadata, request = serving.requests[:2]  # the image shape, then the images; then the 404 one
    assert served == local  # the same digits and probabilities (to 4 digits) as the JAX model
    assert (metadata["method"], metadata["path"]) == ("GET", "/v1/models/mnist-mlp/metadata")
    body = __import__("json").loads(request["body"])
    assert request["path"] == "/v1/models/mnist-mlp:predict" and body["signature_name"] == "serving_default"
    assert np.array(body["instances"]).shape == (5, 28, 28, 1)
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == (f"error: {serving.url}/v1/models/mnist/metadata answered 404: "
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
            "--metrics-by-hand", "--test-accuracy", "0.93", "--test-loss", "0.02")
    result = run_cli("-m", "commands.kserve", "--name", "mnist-mlp", "--publish-uri", str(published),
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

    bad = run_cli("-m", "commands.kserve", "--name", "MNIST_mlp", "--publish-uri", str(published), check=False)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "--name 'MNIST_mlp'" in bad.stderr and "lowercase letters" in bad.stderr  # the rule, named
    none = run_cli("-m", "commands.kserve", "--name", "mnist", "--publish-uri", str(tmp_path / "empty"), check=False)
    assert none.returncode == 2 and "no champion at" in none.stderr


@pytest.fixture(scope="module")
def named_model(named_rgb, tmp_path_factory):
    """A model trained one epoch on 14x14x3 images of three named classes, and TF Serving base paths of its
    SavedModel with and without the ``class_names`` output (exported here, whatever the train step exports)."""
    from mlp_core.export import export_saved_model
    from mlp_core.model_io import load_model

    root = tmp_path_factory.mktemp("named")
    run_main("-m", "components.train", "--dataset", str(named_rgb), "--model", str(root / "model"), "--epochs", "1")
    params = load_model(root / "model")[0]
    export_saved_model(params, [14, 14, 3], root / "named" / "saved_model" / "1", NAMED)
    export_saved_model(params, [14, 14, 3], root / "unnamed" / "saved_model" / "1")
    return root / "model", root / "named" / "saved_model", root / "unnamed" / "saved_model"


def _lines(names, probabilities, classes, class_names):
    return [f"{n}: {class_names[c]} (p={float(p[c]):.4f})" for n, p, c in zip(names, probabilities, classes)]


def test_predict_names_the_classes_of_a_model_of_another_image_shape(named_model, named_rgb, tmp_path):
    """14x14x3 images, three named classes: read from the model's dataset.json, natively and in its SavedModel."""
    from components.predict import predict_images

    model = named_model[0]
    images, _ = read_split(named_rgb, "test")
    (tmp_path / "first.png").write_bytes(tf.io.encode_png(images[0]).numpy())
    np.save(tmp_path / "batch.npy", images[1:9])
    probabilities, classes = predict_images(model, images[:9], "native")
    expected = _lines([str(tmp_path / "first.png")] + [f"{tmp_path / 'batch.npy'}[{i}]" for i in range(8)],
                      probabilities, classes, NAMED)
    for backend in ("native", "saved_model"):
        out = run_cli("-m", "components.predict", "--model", str(model), "--backend", backend,
                      str(tmp_path / "first.png"), str(tmp_path / "batch.npy")).stdout.strip().splitlines()
        assert [line.split(" (p=")[0] for line in out] == [line.split(" (p=")[0] for line in expected], backend
        np.testing.assert_allclose([float(line.split("p=")[1][:-1]) for line in out],
                                   [float(line.split("p=")[1][:-1]) for line in expected], atol=2e-4)
    assert {line.split(": ")[1].split()[0] for line in expected} <= set(NAMED)


def test_a_saved_model_is_held_to_its_models_dataset_json(named_model, named_rgb):
    """--backend saved_model: the signature's input shape and its class_names output agree with dataset.json."""
    from components.predict import predict_images
    from mlp_core.model_io import load_model
    from mlp_core.errors import UserError

    model = named_model[0]
    trained_on = load_model(model)[2]
    images = read_split(named_rgb, "test")[0][:8]
    with pytest.raises(UserError, match=r"takes images of \[14, 14, 3\], its dataset.json says \[28, 28, 1\]"):
        predict_images(model, images, "saved_model", trained_on={**trained_on, "image_shape": [28, 28, 1]})
    named = named_model[1].parent  # a folder holding saved_model/1 with the class_names output
    assert predict_images(named, images, "saved_model", trained_on=trained_on)[1].shape == (8,)
    with pytest.raises(UserError, match=r"names its classes otherwise than its model's dataset.json \(\['a', 'b'"):
        predict_images(named, images, "saved_model", trained_on={**trained_on, "class_names": ["a", "b", "c"]})


def test_predict_refuses_images_of_another_shape_in_one_line(named_model, tmp_path):
    from tf_serving_stand_in import TfServingStandIn

    model, named, _ = named_model
    np.save(tmp_path / "mnist.npy", np.zeros((2, 28, 28, 1), np.uint8))
    (tmp_path / "gray.png").write_bytes(tf.io.encode_png(np.zeros((14, 14, 1), np.uint8)).numpy())
    batch = "(--resize converts image files, not .npy batches)"
    for name, got, why in (("mnist.npy", [28, 28, 1], batch),
                           ("gray.png", [14, 14, 1], "(give --resize to resize and convert it)")):  # not converted
        for backend in ("native", "saved_model"):
            r = run_cli("-m", "components.predict", "--model", str(model), "--backend", backend,
                        str(tmp_path / name), check=False)
            assert r.returncode == 2 and r.stdout == ""
            assert r.stderr.strip() == f"error: {tmp_path / name}: images must be [14, 14, 3], got {got} {why}"
    with TfServingStandIn({"digits-rgb": named}) as serving:  # the shape from the served model's metadata
        r = run_cli("-m", "components.predict", "--server", serving.url, "--model-name", "digits-rgb",
                    str(tmp_path / "mnist.npy"), check=False)
        sent = [request["path"] for request in serving.requests]
    assert r.returncode == 2
    assert r.stderr.strip() == f"error: {tmp_path / 'mnist.npy'}: images must be [14, 14, 3], got [28, 28, 1] {batch}"
    assert sent == ["/v1/models/digits-rgb/metadata"]  # no images sent


def test_predict_a_folder_of_real_photos_resized_with_relative_paths(named_model, named_rgb, tmp_path):
    """A folder (nested, a JPEG, a grey PNG of MNIST's size, a note beside them): refused without --resize, naming
    it; with --resize each image converted as ingest --resize converts it, printed by its path as given."""
    import os
    import subprocess
    import sys

    from PIL import Image

    from components.predict import predict_images
    from conftest import ROOT
    from mlp_core.data.image_files import check_shapes, decode, find_inputs

    model = named_model[0]
    images, _ = read_split(named_rgb, "test")
    photos = tmp_path / "photos"
    (photos / "b" / "deeper").mkdir(parents=True)
    Image.fromarray(images[0]).save(photos / "a.png")
    Image.fromarray(images[1]).save(photos / "b" / "deeper" / "c.jpg", quality=95)
    grey = np.kron(images[2].mean(-1).astype(np.uint8), np.ones((2, 2), np.uint8))  # 28x28, one channel
    Image.fromarray(grey).save(photos / "b" / "big.png")
    (photos / "README.txt").write_text("where these came from")
    Image.fromarray(images[3]).save(tmp_path / "single.png")

    def predict(*args):
        return subprocess.run([sys.executable, "-m", "components.predict", "--model", str(model), *args],
                              cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})

    refused = predict("photos", "single.png")
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.strip() == ("error: photos/b/big.png: images must be [14, 14, 3], got [28, 28, 1] "
                                      "(give --resize to resize and convert it)")
    shown = ["photos/a.png", "photos/b/big.png", "photos/b/deeper/c.jpg", "single.png"]
    inputs, _ = find_inputs([str(tmp_path / name) for name in shown])
    check_shapes(inputs, [14, 14, 3], resize=True)
    converted, _, resized = decode(inputs, [14, 14, 3], resize=True)
    assert resized == 1 and (converted[1] == converted[1][..., :1]).all()  # the grey one: three equal channels
    expected = _lines(shown, *predict_images(model, converted, "native"), NAMED)
    for backend in ("native", "saved_model"):
        result = predict("--resize", "--backend", backend, "photos", "single.png")
        assert result.returncode == 0, result.stderr[-2000:]
        out = result.stdout.splitlines()
        assert [line.split(" (p=")[0] for line in out] == [line.split(" (p=")[0] for line in expected], backend
        np.testing.assert_allclose([float(line.split("p=")[1][:-1]) for line in out],
                                   [float(line.split("p=")[1][:-1]) for line in expected], atol=2e-4)
        assert result.stderr.splitlines()[-2:] == ["photos: skipped 1 file(s) not named .jpg, .jpeg, .png",
                                                   "--resize: 1 image(s) converted to [14, 14, 3]"]


def test_predict_over_tf_serving_names_the_classes_of_a_model_of_another_image_shape(named_model, named_rgb, tmp_path):
    """The input shape from TF Serving's model metadata (or --model), the names from the served class_names output."""
    import json
    import urllib.request

    from tf_serving_stand_in import TfServingStandIn

    model, named, unnamed = named_model
    images, _ = read_split(named_rgb, "test")
    np.save(tmp_path / "batch.npy", images[:6])
    local = run_cli("-m", "components.predict", "--model", str(model), str(tmp_path / "batch.npy")).stdout
    server = ("-m", "components.predict", "--server")
    with TfServingStandIn({"digits-rgb": named, "unnamed": unnamed}) as serving:
        metadata = json.loads(urllib.request.urlopen(f"{serving.url}/v1/models/digits-rgb/metadata").read())
        before = len(serving.requests)
        served = run_cli(*server, serving.url, "--model-name", "digits-rgb", str(tmp_path / "batch.npy")).stdout
        asked, predicted = serving.requests[before:]
        bare = run_cli(*server, serving.url, "--model-name", "unnamed", str(tmp_path / "batch.npy")).stdout
        before = len(serving.requests)
        given = run_cli(*server, serving.url, "--model-name", "unnamed", "--model", str(model),
                        str(tmp_path / "batch.npy")).stdout
        given_sent = [request["path"] for request in serving.requests[before:]]
    signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert metadata["model_spec"] == {"name": "digits-rgb", "signature_name": "", "version": "1"}
    assert signature["inputs"]["images"]["dtype"] == "DT_UINT8"
    assert [d["size"] for d in signature["inputs"]["images"]["tensor_shape"]["dim"]] == ["-1", "14", "14", "3"]
    assert signature["outputs"]["class_names"]["dtype"] == "DT_STRING"

    shown = [line.split(": ")[1].split(" (p=")[0] for line in local.splitlines()]
    assert served == local and set(shown) <= set(NAMED)
    assert (asked["method"], asked["path"]) == ("GET", "/v1/models/digits-rgb/metadata")
    body = json.loads(predicted["body"])
    assert predicted["path"] == "/v1/models/digits-rgb:predict" and np.array(body["instances"]).shape == (6, 14, 14, 3)
    # no names served and no --model: the class indices; with --model: its names, and no metadata asked for
    assert bare.splitlines() == [line.replace(f": {name} (", f": {NAMED.index(name)} (")
                                 for line, name in zip(local.splitlines(), shown)]
    assert given == local and given_sent == ["/v1/models/unnamed:predict"]


def test_served_class_names_are_checked_against_the_classes():
    from mlp_core.errors import UserError
    from components.predict import check_answer

    def answer(*names):
        rows = [{"probabilities": [0.1, 0.8, 0.1], "classes": 1}, {"probabilities": [0.7, 0.2, 0.1], "classes": 0},
                {"probabilities": [0.2, 0.7, 0.1], "classes": 1}]
        return {"predictions": [{**row, **({} if name is None else {"class_names": name})}
                                for row, name in zip(rows, names)]}

    probabilities, classes, names = check_answer("URL", answer("one", "zero", "one"), 3, NAMED)
    assert classes.tolist() == [1, 0, 1] and names == ["one", "zero", "one"]
    assert check_answer("URL", answer(None, None, None), 3, NAMED)[2] == ["one", "zero", "one"]  # the model's names
    assert check_answer("URL", answer(None, None, None), 3)[2] is None  # none known: the indices are shown
    assert check_answer("URL", answer("b", "a", "b"), 3)[2] == ["b", "a", "b"]  # served names, no --model
    for names, expected, message in [
            (("one", "two", "one"), NAMED, "image 2 names class 0 'two', the model calls it 'zero'"),
            (("b", "a", "c"), None, "image 3 names class 1 'c', an earlier image named it otherwise"),
            (("one", None, "one"), None, "image 2 lacks class_names, unlike image 1"),
            ((None, "zero", None), None, "image 2 has class_names, unlike image 1"),
            (("one", 7, "one"), None, "image 2 has class name '7', not a name"),
            (("one", "zero\nx.png: two", "one"), None, "image 2 has class name 'zero\\nx.png: two', not a name"),
            (("one", "zero", "one"), NAMED[:2], "image 1 has 3 probabilities, the model has 2 classes")]:
        with pytest.raises(UserError) as refused:
            check_answer("URL", answer(*names), 3, expected)
        assert str(refused.value) == f"URL: the served model's answer for {message}"


def test_the_served_image_shape_comes_from_the_signatures_images_input(monkeypatch):
    import components.predict as predict
    from mlp_core.errors import UserError

    def metadata(dtype="DT_UINT8", sizes=("-1", "14", "14", "3"), unknown_rank=False, key="images"):
        shape = {"dim": [{"size": s, "name": ""} for s in sizes], "unknown_rank": unknown_rank}
        return {"model_spec": {"name": "m", "signature_name": "", "version": "1"}, "metadata": {"signature_def": {
            "signature_def": {"serving_default": {"inputs": {key: {"dtype": dtype, "tensor_shape": shape}}}}}}}

    url = "http://serving:8501/v1/models/m/metadata"
    for answer, message in [
            (metadata(), None),
            (metadata(key="x"), "the served model has no serving_default signature taking images"),
            ({"error": "x"}, "the served model has no serving_default signature taking images"),
            (metadata(unknown_rank=True, sizes=()), "the served model's images input has no known shape"),
            (metadata(sizes=("-1", "14", "x")), "the served model's images input has no known shape"),
            (metadata(dtype="DT_FLOAT"), "the served model takes DT_FLOAT [-1, 14, 14, 3], not uint8 images"),
            (metadata(sizes=("1", "14", "14", "3")), "the served model takes DT_UINT8 [1, 14, 14, 3], not uint8")]:
        monkeypatch.setattr(predict, "_call", lambda called, body, timeout, answer=answer: (
            answer if called == url and body is None else pytest.fail(called)))
        if message is None:
            assert predict.served_image_shape("http://serving:8501", "m") == [14, 14, 3]
            continue
        with pytest.raises(UserError) as refused:
            predict.served_image_shape("http://serving:8501", "m")
        assert str(refused.value).startswith(f"{url}: {message}") and len(str(refused.value).splitlines()) == 1


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

    from platforms.vertex.model_registry import SERVING_IMAGE

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
