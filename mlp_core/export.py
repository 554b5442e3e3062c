"""Serving export: a TensorFlow SavedModel of the trained MLP, made with jax2tf.

TF Serving and Vertex AI's prebuilt TensorFlow prediction containers serve it.
Signature ``serving_default``: ``images`` uint8 ``[N, 28, 28, 1]`` (any N) ->
``probabilities`` float32 ``[N, classes]`` and ``classes`` int32 ``[N]``. It is
lowered for both CPU and CUDA, so a model trained on a GPU serves on a CPU.

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


def export_saved_model(params, image_shape, directory: "str | Path") -> Path:
    """Write the SavedModel of ``params`` to ``directory``."""
    import jax.numpy as jnp
    from jax.experimental import jax2tf

    from mlp_core.data.tf import tf
    from mlp_core.model import batched_predict

    params = [(jnp.asarray(w), jnp.asarray(b)) for w, b in params]

    def serve(images):
        log_probs = batched_predict(params, jnp.reshape(images, (images.shape[0], -1)))
        return jnp.exp(log_probs), jnp.argmax(log_probs, axis=1).astype(jnp.int32)

    dims = ", ".join(str(d) for d in image_shape)
    converted = jax2tf.convert(
        serve, polymorphic_shapes=[f"(batch, {dims})"], with_gradient=False, native_serialization_platforms=("cpu", "cuda")
    )
    module = tf.Module()
    module.serve = tf.function(
        lambda images: dict(zip(("probabilities", "classes"), converted(images))),
        input_signature=[tf.TensorSpec([None, *image_shape], tf.uint8, name="images")],
        autograph=False,
    )
    tf.saved_model.save(module, str(directory), signatures={"serving_default": module.serve})
    return Path(directory)
