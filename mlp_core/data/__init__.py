"""Datasets: sources (tfds, image folders and spans), records (TFRecord shards, the Dataset artifact), statistics and
validation (tensorflow-metadata's protos).

Imports: ``artifacts`` and ``mlp_core.report``; nothing of the model, its training or evaluation (a contract). The
only part of ``mlp_core`` that imports TensorFlow.
"""
