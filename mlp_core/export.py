"""Serving export: a TensorFlow SavedModel of the trained MLP in plain TensorFlow ops, in TF Serving's layout.

Signature ``serving_default``: ``images`` uint8 ``[N, *image_shape]`` -> ``probabilities`` float32 ``[N, classes]``,
``classes`` int32 ``[N]`` and, given the dataset's class names, ``class_names`` string ``[N]``. Why not jax2tf, and
the layout ``<model>/saved_model/1/``: docs/design.md, "Blessing, publishing, serving".
"""

import math
from pathlib import Path

import numpy as np

SAVED_MODEL_DIR = "saved_model"
SERVING_VERSION = "1"


def saved_model_dir(model: "str | Path") -> Path:
    """The folder holding ``saved_model.pb`` in the Model artifact: ``saved_model/1/``, or older ``saved_model/``."""
    versioned = Path(model) / SAVED_MODEL_DIR / SERVING_VERSION
    return versioned if (versioned / "saved_model.pb").is_file() else Path(model) / SAVED_MODEL_DIR


def export_saved_model(params, image_shape, directory: "str | Path", class_names: "list[str] | None" = None) -> Path:
    """Write the SavedModel of ``params`` (the seed's ``[(w, b), ...]``) for the dataset's images and class names."""
    from mlp_core.data.tf import tf  # here: publishing and serving import this module's names without TensorFlow

    num_classes = int(np.shape(params[-1][1])[0])
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for a model of {num_classes} classes")
    if math.prod(image_shape) != int(np.shape(params[0][0])[1]):
        raise ValueError(f"images of shape {list(image_shape)} do not fit a model of {np.shape(params[0][0])[1]} inputs")
    name_table = None if class_names is None else tf.constant([str(n) for n in class_names], tf.string)

    # x @ w.T for each layer: the seed's per-example jnp.dot(w, activations), for a batch of rows
    layers = [(tf.constant(np.asarray(w, np.float32).T), tf.constant(np.asarray(b, np.float32))) for w, b in params]
    pixels = math.prod(image_shape)

    def serve(images):
        activations = tf.reshape(tf.cast(images, tf.float32), [-1, pixels])  # raw 0..255 pixels, as trained
        for w, b in layers[:-1]:
            activations = tf.nn.relu(tf.matmul(activations, w) + b)
        final_w, final_b = layers[-1]
        logits = tf.matmul(activations, final_w) + final_b
        log_probs = logits - tf.reduce_logsumexp(logits, axis=1, keepdims=True)
        classes = tf.argmax(log_probs, axis=1, output_type=tf.int32)
        outputs = {"probabilities": tf.exp(log_probs), "classes": classes}
        if name_table is not None:
            outputs["class_names"] = tf.gather(name_table, classes)
        return outputs

    module = tf.Module()
    module.serve = tf.function(serve, input_signature=[tf.TensorSpec([None, *image_shape], tf.uint8, name="images")],
                               autograph=False)
    tf.saved_model.save(module, str(directory), signatures={"serving_default": module.serve})
    return Path(directory)
