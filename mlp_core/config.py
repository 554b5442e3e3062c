"""The one training config: the seed notebook's hyperparameters, validated once."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

from mlp_core.errors import UserError


# Where training data lives: "auto" (the default) picks by size, "device" holds the whole split on the
# device (one compiled call per epoch), "stream" feeds batches from tf.data (mlp_core.train.choose_placement).
PLACEMENTS = ("auto", "device", "stream")


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UserError(f"{name} must be a positive integer, got {value!r}", field=name)


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run; defaults are the seed notebook's."""

    layer_sizes: tuple[int, ...] = (784, 512, 512, 10)
    step_size: float = 0.01
    batch_size: int = 128
    epochs: int = 10
    seed: int = 0
    init_scale: float = 1e-2
    # False is the seed-faithful order: examples in the order the data holds them.
    shuffle: bool = True

    def __post_init__(self) -> None:
        sizes = self.layer_sizes
        if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
            raise UserError(f"layer_sizes must be a sequence of positive integers, got {sizes!r}")
        sizes = tuple(sizes)
        object.__setattr__(self, "layer_sizes", sizes)
        if len(sizes) < 2:
            raise UserError(f"layer_sizes needs at least an input and an output size, got {sizes!r}")
        for i, size in enumerate(sizes):  # no field: the index counts the input and output sizes, no flag's
            if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
                raise UserError(f"layer_sizes[{i}] must be a positive integer, got {size!r}")
        _positive_int("batch_size", self.batch_size)
        _positive_int("epochs", self.epochs)
        for name in ("step_size", "init_scale"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise UserError(f"{name} must be a finite number > 0, got {value!r}", field=name)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            # jax.random.key takes a 64-bit integer: a larger one is an OverflowError deep inside JAX
            raise UserError(f"seed must be an integer from 0 to 2**63 - 1, got {self.seed!r}", field="seed")
        if not isinstance(self.shuffle, bool):
            raise UserError(f"shuffle must be true or false, got {self.shuffle!r}", field="shuffle")

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
            raise UserError(f"unknown config field(s): {', '.join(unknown)}")
        d = dict(d)
        if "layer_sizes" in d and isinstance(d["layer_sizes"], list):
            d["layer_sizes"] = tuple(d["layer_sizes"])
        return cls(**d)

    @property
    def hidden_sizes(self) -> str:
        """The hidden layers' widths as the train step's parameter gives them: ``"512,512"``."""
        return ",".join(map(str, self.layer_sizes[1:-1]))

    def for_data(self, features: int, num_classes: int) -> "TrainConfig":
        """This config for data of ``features`` values per example in ``num_classes`` classes."""
        return self.replace(layer_sizes=(features, *self.layer_sizes[1:-1], num_classes))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def parse_hidden_sizes(text: str) -> tuple[int, ...]:
    """``"512,512"`` -> ``(512, 512)``; ``""`` -> ``()`` (no hidden layer)."""
    if not text.strip():
        return ()
    try:
        sizes = tuple(int(p.strip()) for p in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) <= 0:
        raise UserError(f"hidden_sizes must be positive integers separated by commas, got {text!r}",
                        field="hidden_sizes")
    return sizes
