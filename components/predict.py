"""Predict: the class of each image, from a Model artifact (native params or its SavedModel) or a served model.

    python -m components.predict --model DIR image.png photos/ [more.jpg ...]
    python -m components.predict --model DIR --resize photos/          # images of another size or channels
    python -m components.predict --model DIR --backend saved_model batch.npy
    python -m components.predict --server http://HOST:8501 --model-name mnist-mlp batch.npy   # TF Serving REST
    python -m components.predict --server http://HOST:8501 --model-name mnist-mlp --model DIR batch.npy

Prints ``<file>: <class name> (p=...)`` per image; bad arguments are refused before TensorFlow or JAX is imported.
"""

import argparse
import json
import math
import sys
import urllib.parse
from pathlib import Path

from artifacts import bounded_http, storage
from artifacts.bounded_http import HttpError, check_url, request
from artifacts.locations import check_segment
from artifacts.outputs import read_marker
from components._cli import error_line, exit_on_error
from mlp_core.data.image_files import RESIZE_FLAG, check_shapes, decode, find_inputs
from mlp_core.data.image_header import check_shape
from mlp_core.errors import UserError


def predict_images(model: "str | Path", images, backend: str = "native", params=None, trained_on=None):
    """``(probabilities [N, classes], classes [N])`` of uint8 ``images``; a SavedModel is held to ``trained_on``."""
    import numpy as np

    from mlp_core.export import saved_model_dir

    if backend == "saved_model":
        from mlp_core.data.tf import tf

        path = saved_model_dir(model)
        if not (path / "saved_model.pb").is_file():
            raise UserError(f"no SavedModel in {model}")
        serve = tf.saved_model.load(str(path)).signatures["serving_default"]
        takes = list(serve.structured_input_signature[1]["images"].shape[1:])
        if trained_on is not None and takes != list(trained_on["image_shape"]):
            raise UserError(f"{path} takes images of {takes}, its dataset.json says {trained_on['image_shape']}")
        out = serve(images=tf.constant(images))
        classes = out["classes"].numpy()
        if trained_on is not None and "class_names" in out:
            named = [n.decode("utf-8") for n in out["class_names"].numpy()]
            if named != [trained_on["class_names"][int(c)] for c in classes]:
                raise UserError(f"{path} names its classes otherwise than its model's dataset.json "
                                 f"({trained_on['class_names']})")
        return out["probabilities"].numpy(), classes
    import jax.numpy as jnp

    from mlp_core.model import batched_predict
    from mlp_core.model_io import load_model

    params = load_model(model)[0] if params is None else params
    log_probs = batched_predict(params, jnp.asarray(images).reshape(len(images), -1))
    return np.exp(np.asarray(log_probs)), np.asarray(jnp.argmax(log_probs, axis=1))


def check_server(server: str) -> str:
    """``--server``: an ``http(s)://`` URL of a host (no userinfo, query or fragment), without its trailing ``/``."""
    parts = urllib.parse.urlsplit(server) if isinstance(server, str) else None
    try:
        check_url(server, "--server")
    except HttpError as e:
        raise UserError(str(e)) from None
    if (not parts or parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment
            or any(c.isspace() or ord(c) < 32 for c in server)):
        raise UserError(f"--server {server!r}: give the model server's URL, http://HOST[:PORT] or https://HOST[:PORT]")
    return server.rstrip("/")


def check_answer(url: str, answer, count: int, class_names: "list[str] | None" = None):
    """``(probabilities [N, C], classes [N], names)`` of a served answer (row format), or one line on what is wrong.

    Each row: ``probabilities`` (a softmax), ``classes`` (its arg max) and, for all rows or none, ``class_names``
    (one name per class index, the model's ``class_names`` when given). ``names``: the served ones, else the model's.
    """
    import numpy as np

    predictions = answer.get("predictions") if isinstance(answer, dict) else None
    if not isinstance(predictions, list) or len(predictions) != count:
        raise UserError(f"{url} answered no predictions for the {count} image(s)")
    rows, classes, served_names, named = [], [], [], False
    for i, p in enumerate(predictions):
        probs = p.get("probabilities") if isinstance(p, dict) else None
        cls = p.get("classes") if isinstance(p, dict) else None
        what = f"{url}: the served model's answer for image {i + 1}"
        if not isinstance(probs, list) or not probs or cls is None:
            raise UserError(f"{url}: the served model's outputs are not probabilities and classes")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in probs):
            raise UserError(f"{what} has probabilities that are not numbers")
        if rows and len(probs) != len(rows[0]):
            raise UserError(f"{what} has {len(probs)} probabilities, image 1 had {len(rows[0])}")
        if class_names is not None and len(probs) != len(class_names):
            raise UserError(f"{what} has {len(probs)} probabilities, the model has {len(class_names)} classes")
        if not all(math.isfinite(v) and 0 <= v <= 1 for v in probs) or abs(math.fsum(probs) - 1) > 1e-3:
            raise UserError(f"{what} has probabilities that are not finite numbers in [0, 1] summing to 1")
        if not isinstance(cls, int) or isinstance(cls, bool) or not 0 <= cls < len(probs):
            raise UserError(f"{what} has class {str(cls)[:20]!r}, not an index of its {len(probs)} classes")
        if probs[cls] < max(probs):
            raise UserError(f"{what} has class {cls}, which is not its most probable class")
        if i == 0:
            named = "class_names" in p
        elif ("class_names" in p) != named:
            raise UserError(f"{what} {'lacks' if named else 'has'} class_names, unlike image 1")
        if named:
            name = p["class_names"]
            if not isinstance(name, str) or not name or not name.isprintable() or len(name) > 200:  # printed below
                raise UserError(f"{what} has class name {str(name)[:40]!r}, not a name")
            if class_names is not None and name != class_names[cls]:
                raise UserError(f"{what} names class {cls} {name[:40]!r}, the model calls it {class_names[cls]!r}")
            if any(c == cls and n != name for c, n in zip(classes, served_names)):
                raise UserError(f"{what} names class {cls} {name[:40]!r}, an earlier image named it otherwise")
            served_names.append(name)
        rows.append(probs)
        classes.append(cls)
    names = served_names or ([class_names[c] for c in classes] if class_names is not None else None)
    return np.array(rows, np.float32), np.array(classes, np.int64), names


def _model_url(server: str, model_name: str) -> str:
    """``<server>/v1/models/<name>``, the name checked and quoted as one path segment."""
    server = check_server(server)
    # one path segment for TF Serving, a DNS label for KServe: check_segment is within both
    name = urllib.parse.quote(check_segment(model_name, "--model-name", "served model name"), safe="")
    return f"{server}/v1/models/{name}"


def _call(url: str, body: "dict | None", timeout: float, limit: "int | None" = None):
    """The JSON a TF Serving REST endpoint answers (``POST`` with ``body``, else ``GET``), bounded; one line on failure."""
    data = None if body is None else json.dumps(body).encode()
    try:
        status, raw = request(url, data, {"Content-Type": "application/json"}, "GET" if body is None else "POST",
                              timeout, limit or bounded_http.MAX_ANSWER)
    except HttpError as e:
        raise UserError(str(e)) from None
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = None
    if status >= 400:
        reason = answer.get("error") if isinstance(answer, dict) else None
        raise UserError(f"{url} answered {status}: {' '.join(str(reason or 'no reason given').split())[:200]}")
    if answer is None:
        raise UserError(f"{url} did not answer JSON")
    return answer


def served_image_shape(server: str, model_name: str, timeout: float = 60) -> list[int]:
    """The image shape (without N) the served ``serving_default`` signature takes, from the model's metadata.

    Sizes are int64, so JSON strings; ``-1`` is the batch dimension.
    """
    url = f"{_model_url(server, model_name)}/metadata"
    answer = _call(url, None, timeout)
    try:
        images = answer["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]["images"]
        dtype, shape = images["dtype"], images["tensor_shape"]
        sizes = None if shape.get("unknown_rank") else [d["size"] for d in shape["dim"]]
    except (KeyError, TypeError, AttributeError):
        raise UserError(f"{url}: the served model has no serving_default signature taking images") from None
    if not sizes or not all(isinstance(s, (str, int)) and not isinstance(s, bool) and str(s).lstrip("-").isdigit()
                            and len(str(s)) < 10 for s in sizes):
        raise UserError(f"{url}: the served model's images input has no known shape")
    sizes = [int(s) for s in sizes]
    if dtype != "DT_UINT8" or len(sizes) < 2 or sizes[0] != -1 or min(sizes[1:]) < 1:
        raise UserError(f"{url}: the served model takes {str(dtype)[:20]} {sizes}, not uint8 images [N, ...] of any N")
    check_shape(url, sizes[1:], "the served model takes images of")  # before any image is converted to it
    return sizes[1:]


def served_predictions(server: str, model_name: str, images, class_names: "list[str] | None" = None,
                       timeout: float = 60):
    """``(probabilities, classes, names)`` from TF Serving's REST API (KServe's TF runtime too), checked."""
    url = f"{_model_url(server, model_name)}:predict"
    answer = _call(url, {"signature_name": "serving_default", "instances": images.tolist()}, timeout)
    return check_answer(url, answer, len(images), class_names)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m components.predict", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="Model artifact folder (from components.train or a published version); with "
                   "--server, where the image shape and class names come from")
    p.add_argument("--server", help="a TF Serving REST endpoint serving the model, e.g. http://localhost:8501 "
                   "(KServe: the InferenceService's URL; no user:password@); without --model, the image shape comes "
                   "from its model metadata. Each answer is read up to 64 MiB, within 60 s")
    p.add_argument("--model-name", help="with --server: the served model's name")
    p.add_argument("--backend", choices=("native", "saved_model"), default="native",
                   help="native: params.npz with JAX; saved_model: the SavedModel (saved_model/1) with TensorFlow (default: native)")
    p.add_argument("--resize", action="store_true",
                   help="convert images of another size or channels to the model's image shape, as the image-folder "
                   "ingest's --resize does (TensorFlow: grey <-> RGB, alpha dropped or added; tf.image.resize, "
                   "bilinear, antialiased); without it such an image is refused")
    p.add_argument("inputs", nargs="+", help="PNG or JPEG images, folders of them (walked recursively, sorted; other "
                   "files skipped) or .npy uint8 batches [N, *image shape], at the image shape of the model's dataset "
                   "(its dataset.json, or the served signature's input). An image file is at most 64 MiB and 64 MiB "
                   "decoded (height x width x channels)")
    return p


def _model_image_shape(model: str) -> "list[int] | None":
    """The image shape a Model artifact's ``dataset.json`` names (None if unreadable: ``load_model`` refuses it)."""
    folder = Path(model)
    if not folder.exists():
        raise UserError(f"model folder does not exist: {model}")
    if not folder.is_dir():
        raise UserError(f"model path is a file, expected a folder: {model}")
    read_marker(folder, "model", verify=False)  # every file there at its size; the hashes: load_model
    try:
        shape = json.loads(storage.read_bytes(folder / "dataset.json", storage.MANIFEST))["image_shape"]
    except (OSError, ValueError, TypeError, KeyError):
        return None
    ok = isinstance(shape, list) and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape)
    return shape if ok and shape else None


def check_request(args: argparse.Namespace):
    """``(inputs, notes)`` after every check that needs neither TensorFlow nor JAX: flags, the model's marker, every
    input found and (when the model's image shape is known here) its shape."""
    if not args.model and not args.server:
        raise UserError("give --model DIR (a Model artifact), --server URL --model-name NAME (a served model), "
                         "or both")
    if args.server:
        if not args.model_name:
            raise UserError("--server needs --model-name (the name the model is served under)")
        if args.backend != "native":
            raise UserError("--backend is where --model runs here; with --server the server runs the model")
        _model_url(args.server, args.model_name)  # both checked, nothing sent
    elif args.model_name:
        raise UserError("--model-name names a served model: give it with --server URL")
    shape = _model_image_shape(args.model) if args.model else None
    inputs, notes = find_inputs(args.inputs)
    if shape is not None:
        check_shapes(inputs, shape, args.resize)
    return inputs, notes


def main(argv: "list[str] | None" = None) -> int:
    """The CLI: arguments refused in one line before TensorFlow or JAX is imported, then the prediction."""
    args = _parser().parse_args(argv)
    try:
        inputs, notes = check_request(args)
    except (UserError, OSError) as e:
        print(f"error: {error_line(e)}", file=sys.stderr)
        return 2
    return _predict((args, inputs, notes))


@exit_on_error
def _predict(checked) -> int:
    from mlp_core.model_io import load_model

    args, inputs, notes = checked
    params = trained_on = None
    if args.model:
        params, _, trained_on, _ = load_model(args.model)  # the marker, every file's sha256 and schema, finite weights
    shape = trained_on["image_shape"] if trained_on else served_image_shape(args.server, args.model_name)
    check_shapes(inputs, shape, args.resize)  # before any image is decoded or sent
    images, names, resized = decode(inputs, shape, args.resize)
    if args.server:
        probabilities, classes, class_names = served_predictions(
            args.server, args.model_name, images, trained_on["class_names"] if trained_on else None)
    else:
        probabilities, classes = predict_images(args.model, images, args.backend, params, trained_on)  # loaded once
        class_names = [trained_on["class_names"][int(c)] for c in classes]
    for note in notes + ([f"{RESIZE_FLAG}: {resized} image(s) converted to {list(shape)}"] if resized else []):
        print(note, file=sys.stderr)
    for name, probs, cls, shown in zip(names, probabilities, classes, class_names or [str(int(c)) for c in classes]):
        print(f"{name}: {shown} (p={float(probs[int(cls)]):.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
