"""Data reading and writing: the only part of mlp_core that imports TensorFlow."""
