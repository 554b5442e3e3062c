"""Import TensorFlow for data work only: it must never take a GPU from JAX."""

from __future__ import annotations

import os

# TF only parses records here: its oneDNN kernels (and their start-up notice) buy nothing.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

# TF shares the machine with JAX; keep it off any GPU (a no-op with tensorflow-cpu).
tf.config.set_visible_devices([], "GPU")

__all__ = ["tf"]
