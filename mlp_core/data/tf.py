"""Import TensorFlow for data work only: it must never take a GPU from JAX."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

# TF shares the machine with JAX; keep it off any GPU (a no-op with tensorflow-cpu).
tf.config.set_visible_devices([], "GPU")

__all__ = ["tf"]
