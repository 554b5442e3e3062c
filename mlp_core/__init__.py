"""Pure-JAX MLP from the JAX docs' "training with tensorflow/datasets" notebook.

Nothing here imports kfp; TensorFlow is imported only by ``mlp_core.data``.
"""

from mlp_core.config import ConfigError, TrainConfig
from mlp_core.model import (
    accuracy,
    batched_predict,
    init_network_params,
    loss,
    one_hot,
    predict,
    update,
)

__all__ = [
    "ConfigError",
    "TrainConfig",
    "accuracy",
    "batched_predict",
    "init_network_params",
    "loss",
    "one_hot",
    "predict",
    "update",
]
