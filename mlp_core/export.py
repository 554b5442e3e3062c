"""Serving export: a TensorFlow SavedModel of the trained MLP, in plain TensorFlow ops.

TF Serving and Vertex AI's prebuilt TensorFlow prediction containers serve it.
Signature ``serving_default``: ``images`` uint8 ``[N, *image_shape]`` (any N; the
shape of the dataset the model was trained on, e.g. ``[N, 28, 28, 1]`` for MNIST) ->
``probabilities`` float32 ``[N, classes]``, ``classes`` int32 ``[N]`` (the index of
the most probable class) and, when the export is given the dataset's class names,
``class_names`` string ``[N]`` (that class's name). TF Serving answers every output by
name, so a served response then carries the names (one per image in the row format).
The column order of ``probabilities`` is the order of the dataset's ``class_names``
(the model's ``dataset.json``).

The graph is the seed's ``predict`` written with TensorFlow's own ops (``MatMul``,
``Relu``, a log-softmax as ``logits - logsumexp(logits)``), the weights as
constants, not ``jax2tf``: jax2tf wraps the JAX program in one ``XlaCallModule``
op holding serialized StableHLO, which only a TensorFlow about as new as the
exporting JAX can load (JAX's calling convention 10 needs XlaCallModule from May
2025, TensorFlow 2.20; its StableHLO targets a 12-week compatibility window).
Vertex AI's newest prebuilt TensorFlow prediction container runs TensorFlow
2.15, and KServe's TensorFlow runtime (``kserve-tensorflow-serving``) runs
``tensorflow/serving:2.6.2``: a jax2tf SavedModel fails there with "Cannot
deserialize computation" (seen in TensorFlow 2.15; ``tests/test_export_predict.py``
serves this one there on every CI run). These ops are older than TensorFlow 2
and run on CPU or GPU. The tests hold the graph to JAX's
predictions on 1000 real test images (and every class decision).

It lies in TF Serving's layout, ``<model>/saved_model/1/saved_model.pb``: TF
Serving (and KServe's TensorFlow runtime, which runs it with
``--model_base_path`` = the storage URI) loads the numbered version folders of
its base path, so ``saved_model/`` is the base path to serve and
``saved_model/1/`` the folder Vertex AI's prebuilt containers take as
``artifact_uri``. Models written before this layout hold the SavedModel in
``saved_model/`` itself; ``saved_model_dir`` finds either.
"""

from pathlib import Path

SAVED_MODEL_DIR = "saved_model"
SERVING_VERSION = "1"


def saved_model_dir(model: "str | Path") -> Path:
    """The folder holding ``saved_model.pb`` in the Model artifact ``model`` (either layout)."""
    versioned = Path(model) / SAVED_MODEL_DIR / SERVING_VERSION
    return versioned if (versioned / "saved_model.pb").is_file() else Path(model) / SAVED_MODEL_DIR


def export_saved_model(params, image_shape, directory: "str | Path", class_names: "list[str] | None" = None) -> Path:
    """Write the SavedModel of ``params`` (the seed's ``[(w, b), ...]``, ``w`` as ``[out, in]``) to ``directory``.

    ``image_shape`` and ``class_names`` are the dataset's (its metadata, the model's ``dataset.json``);
    without ``class_names`` the signature has no ``class_names`` output.
    """
    import math

    import numpy as np

    from mlp_core.data.tf import tf

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
