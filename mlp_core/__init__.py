"""The ML: the JAX docs' MLP ("training with tensorflow/datasets"), its training loop, evaluation and checkpoints.

Imports: ``artifacts`` and nothing else of this project; no cloud client and no kfp (pyproject.toml's contracts).
TensorFlow only through ``mlp_core.data``; JAX only when a module that computes is imported, not by the package.
"""

from mlp_core.config import TrainConfig
from mlp_core.errors import UserError

_MODEL_FUNCTIONS = ("accuracy", "batched_predict", "init_network_params", "loss", "one_hot", "predict", "update")


def __getattr__(name: str):
    """The model's functions, imported on first use (PEP 562): importing any ``mlp_core`` module does not load JAX."""
    if name in _MODEL_FUNCTIONS:
        from mlp_core import model

        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "UserError",
    "TrainConfig",
    "accuracy",
    "batched_predict",
    "init_network_params",
    "loss",
    "one_hot",
    "predict",
    "update",
]
