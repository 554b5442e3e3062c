"""Predict: the digit in each image, from a Model artifact (native params or its SavedModel) or a served model.

    python -m components.predict --model DIR digit.png [more.png ...]
    python -m components.predict --model DIR --backend saved_model batch.npy
    python -m components.predict --server http://HOST:8501 --model-name mnist-mlp digit.png   # TF Serving REST
"""

import argparse
import sys
from pathlib import Path

from components._cli import InputError, exit_on_error


def load_inputs(paths: list[str], image_shape: list[int]):
    """``(names, uint8 [N, *image_shape])`` from PNG files and ``.npy`` batches."""
    import numpy as np

    names, batches = [], []
    for path in map(Path, paths):
        if not path.is_file():
            raise InputError(f"input not found: {path}")
        if path.suffix.lower() == ".npy":
            try:
                array = np.load(path, allow_pickle=False)
            except (ValueError, OSError, EOFError) as e:  # a .npy of objects, a damaged header
                raise InputError(f"{path} is not a readable .npy of images: {str(e).splitlines()[0]}") from None
            if array.ndim == len(image_shape):  # one image
                array = array[None]
            names += [f"{path.name}[{i}]" for i in range(len(array))]
        elif path.suffix.lower() == ".png":
            from mlp_core.data.tf import tf

            try:
                array = tf.io.decode_png(path.read_bytes(), channels=image_shape[-1]).numpy()[None]
            except tf.errors.InvalidArgumentError:
                raise InputError(f"{path} is not a readable PNG") from None
            names.append(path.name)
        else:
            raise InputError(f"{path}: inputs are .png images or .npy batches")
        if array.dtype != np.uint8:
            raise InputError(f"{path}: images must be uint8 (0..255), got {array.dtype}")
        if list(array.shape[1:]) != list(image_shape):
            raise InputError(f"{path}: images must be {list(image_shape)}, got {list(array.shape[1:])}")
        batches.append(array)
    return names, np.concatenate(batches)


def predict_images(model: "str | Path", images, backend: str = "native", params=None):
    """``(probabilities [N, classes], classes [N])`` of uint8 ``images`` (``params``: already loaded, native only)."""
    import numpy as np

    from mlp_core.export import saved_model_dir

    if backend == "saved_model":
        from mlp_core.data.tf import tf
        from mlp_core.model_io import ModelError

        path = saved_model_dir(model)
        if not (path / "saved_model.pb").is_file():
            raise ModelError(f"no SavedModel in {model}")
        serve = tf.saved_model.load(str(path)).signatures["serving_default"]
        out = serve(images=tf.constant(images))
        return out["probabilities"].numpy(), out["classes"].numpy()
    import jax.numpy as jnp

    from mlp_core.model import batched_predict
    from mlp_core.model_io import load_model

    params = load_model(model)[0] if params is None else params
    log_probs = batched_predict(params, jnp.asarray(images).reshape(len(images), -1))
    return np.exp(np.asarray(log_probs)), np.asarray(jnp.argmax(log_probs, axis=1))


def check_server(server: str) -> str:
    """``--server``: an ``http://`` or ``https://`` URL of a host (no query or fragment), without its trailing ``/``."""
    from urllib.parse import urlsplit

    parts = urlsplit(server) if isinstance(server, str) else None
    if (not parts or parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment
            or any(c.isspace() or ord(c) < 32 for c in server)):
        raise InputError(f"--server {server!r}: give the model server's URL, http://HOST[:PORT] or https://HOST[:PORT]")
    return server.rstrip("/")


def check_answer(url: str, answer, count: int):
    """``(probabilities [N, C], classes [N])`` of a served answer, or one line saying what is wrong with it.

    The row format answers one object per image (https://www.tensorflow.org/tfx/serving/api_rest#response_format_2);
    our signature's outputs are a softmax and its arg max: ``probabilities`` of one length C, each finite, in
    [0, 1], summing to 1, and ``classes`` the integer index (0 <= c < C) of the largest probability.
    """
    import math

    import numpy as np

    predictions = answer.get("predictions") if isinstance(answer, dict) else None
    if not isinstance(predictions, list) or len(predictions) != count:
        raise InputError(f"{url} answered no predictions for the {count} image(s)")
    rows, classes = [], []
    for i, p in enumerate(predictions):
        probs = p.get("probabilities") if isinstance(p, dict) else None
        cls = p.get("classes") if isinstance(p, dict) else None
        what = f"{url}: the served model's answer for image {i + 1}"
        if not isinstance(probs, list) or not probs or cls is None:
            raise InputError(f"{url}: the served model's outputs are not probabilities and classes")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in probs):
            raise InputError(f"{what} has probabilities that are not numbers")
        if rows and len(probs) != len(rows[0]):
            raise InputError(f"{what} has {len(probs)} probabilities, image 1 had {len(rows[0])}")
        if not all(math.isfinite(v) and 0 <= v <= 1 for v in probs) or abs(math.fsum(probs) - 1) > 1e-3:
            raise InputError(f"{what} has probabilities that are not finite numbers in [0, 1] summing to 1")
        if not isinstance(cls, int) or isinstance(cls, bool) or not 0 <= cls < len(probs):
            raise InputError(f"{what} has class {str(cls)[:20]!r}, not an index of its {len(probs)} classes")
        if probs[cls] < max(probs):
            raise InputError(f"{what} has class {cls}, which is not its most probable class")
        rows.append(probs)
        classes.append(cls)
    return np.array(rows, np.float32), np.array(classes, np.int64)


def predict_served(server: str, model_name: str, images, timeout: float = 60):
    """``(probabilities, classes)`` from a model served with TF Serving's REST API (TF Serving, KServe's TF runtime).

    ``POST <server>/v1/models/<name>:predict`` with ``{"signature_name": "serving_default", "instances": [...]}``
    (the row format: one image per instance); the answer holds one ``{"probabilities": [...], "classes": c}``
    per instance (https://www.tensorflow.org/tfx/serving/api_rest#predict_api), checked (``check_answer``)
    before anything is printed.
    """
    import json
    import urllib.error
    import urllib.parse
    import urllib.request

    from mlp_core.locations import check_segment

    server = check_server(server)
    # TF Serving takes the name as one path segment (tensorflow_serving/model_servers/http_rest_api_handler.cc:
    # "/v1/models/([^/:]+)..."); KServe's is a DNS label. check_segment is within both, and quoting keeps it one.
    name = urllib.parse.quote(check_segment(model_name, "--model-name", "served model name"), safe="")
    url = f"{server}/v1/models/{name}:predict"
    body = json.dumps({"signature_name": "serving_default", "instances": images.tolist()}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as e:
        try:
            reason = json.loads(e.read()).get("error", e.reason)
        except (ValueError, AttributeError):
            reason = e.reason
        raise InputError(f"{url} answered {e.code}: {' '.join(str(reason).split())[:300]}") from None
    except (urllib.error.URLError, OSError) as e:
        raise InputError(f"cannot reach {url}: {getattr(e, 'reason', e)}") from None
    except ValueError:
        raise InputError(f"{url} did not answer JSON") from None
    return check_answer(url, answer, len(images))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m components.predict", description=__doc__.split("\n\n")[0])
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="Model artifact folder (from components.train or a published version)")
    source.add_argument("--server", help="a TF Serving REST endpoint serving the model, e.g. http://localhost:8501 "
                        "(KServe: the InferenceService's URL)")
    p.add_argument("--model-name", help="with --server: the served model's name")
    p.add_argument("--backend", choices=("native", "saved_model"), default="native",
                   help="native: params.npz with JAX; saved_model: the SavedModel (saved_model/1) with TensorFlow (default: native)")
    p.add_argument("inputs", nargs="+", help="PNG images (28x28 grayscale) or .npy uint8 batches [N, 28, 28, 1]")
    return p


@exit_on_error
def main(argv: "list[str] | None" = None) -> int:
    from mlp_core.model_io import load_model

    args = _parser().parse_args(argv)
    if args.server:
        if not args.model_name:
            raise InputError("--server needs --model-name (the name the model is served under)")
        names, images = load_inputs(args.inputs, [28, 28, 1])  # the served signature's input
        probabilities, classes = predict_served(args.server, args.model_name, images)
        class_names = [str(c) for c in range(probabilities.shape[1])]
    else:
        model = Path(args.model)
        params, _, trained_on, _ = load_model(model)  # the marker, every file's schema, finite weights
        names, images = load_inputs(args.inputs, trained_on["image_shape"])
        probabilities, classes = predict_images(model, images, args.backend, params)  # loaded once
        class_names = trained_on["class_names"]
    for name, probs, cls in zip(names, probabilities, classes):
        print(f"{name}: {class_names[int(cls)]} (p={float(probs[int(cls)]):.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
