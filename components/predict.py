"""Predict: the digit in each image, from a Model artifact (native params or its SavedModel).

    python -m components.predict --model DIR digit.png [more.png ...]
    python -m components.predict --model DIR --backend saved_model batch.npy
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

    from mlp_core.export import SAVED_MODEL_DIR

    if backend == "saved_model":
        from mlp_core.data.tf import tf
        from mlp_core.model_io import ModelError

        path = Path(model) / SAVED_MODEL_DIR
        if not path.is_dir():
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


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m components.predict", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="Model artifact folder (from components.train or a published version)")
    p.add_argument("--backend", choices=("native", "saved_model"), default="native",
                   help="native: params.npz with JAX; saved_model: the jax2tf SavedModel with TensorFlow (default: native)")
    p.add_argument("inputs", nargs="+", help="PNG images (28x28 grayscale) or .npy uint8 batches [N, 28, 28, 1]")
    return p


@exit_on_error
def main(argv: "list[str] | None" = None) -> int:
    from mlp_core.model_io import load_model

    args = _parser().parse_args(argv)
    model = Path(args.model)
    params, _, trained_on, _ = load_model(model)  # the marker, every file's schema, finite weights
    names, images = load_inputs(args.inputs, trained_on["image_shape"])
    probabilities, classes = predict_images(model, images, args.backend, params)  # loaded once
    for name, probs, cls in zip(names, probabilities, classes):
        print(f"{name}: {trained_on['class_names'][int(cls)]} (p={float(probs[int(cls)]):.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
