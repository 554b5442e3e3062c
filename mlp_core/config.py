"""The one training config: the seed notebook's hyperparameters, validated once."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any


# Where training data lives: "auto" (the default) picks by size, "device" holds the whole split on the
# device (one compiled call per epoch), "stream" feeds batches from tf.data (mlp_core.train.choose_placement).
PLACEMENTS = ("auto", "device", "stream")


class ConfigError(ValueError):
    """A hyperparameter has a value training cannot use."""


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run; defaults are the seed notebook's."""

    layer_sizes: tuple[int, ...] = (784, 512, 512, 10)
    step_size: float = 0.01
    batch_size: int = 128
    num_epochs: int = 10
    seed: int = 0
    init_scale: float = 1e-2
    # False is the seed-faithful order: examples in the order the data holds them.
    shuffle: bool = True

    def __post_init__(self) -> None:
        sizes = self.layer_sizes
        if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
            raise ConfigError(f"layer_sizes must be a sequence of positive integers, got {sizes!r}")
        sizes = tuple(sizes)
        object.__setattr__(self, "layer_sizes", sizes)
        if len(sizes) < 2:
            raise ConfigError(f"layer_sizes needs at least an input and an output size, got {sizes!r}")
        for i, size in enumerate(sizes):
            _positive_int(f"layer_sizes[{i}]", size)
        _positive_int("batch_size", self.batch_size)
        _positive_int("num_epochs", self.num_epochs)
        for name in ("step_size", "init_scale"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            # jax.random.key takes a 64-bit integer: a larger one is an OverflowError deep inside JAX
            raise ConfigError(f"seed must be an integer from 0 to 2**63 - 1, got {self.seed!r}")
        if not isinstance(self.shuffle, bool):
            raise ConfigError(f"shuffle must be true or false, got {self.shuffle!r}")

    @property
    def num_classes(self) -> int:
        return self.layer_sizes[-1]

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["layer_sizes"] = list(self.layer_sizes)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(unknown)}")
        d = dict(d)
        if "layer_sizes" in d and isinstance(d["layer_sizes"], list):
            d["layer_sizes"] = tuple(d["layer_sizes"])
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def parse_layer_sizes(text: str) -> tuple[int, ...]:
    """``"784,512,512,10"`` -> ``(784, 512, 512, 10)``; validation is TrainConfig's."""
    parts = [p.strip() for p in text.split(",")]
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"layer_sizes must be integers separated by commas, got {text!r}") from None
