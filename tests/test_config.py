import math
import re

import pytest

from mlp_core.config import ConfigError, TrainConfig, parse_layer_sizes


def test_defaults_are_the_seeds():
    c = TrainConfig()
    assert (c.layer_sizes, c.step_size, c.batch_size, c.num_epochs, c.seed) == ((784, 512, 512, 10), 0.01, 128, 10, 0)
    assert c.init_scale == 1e-2


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": -3}, "batch_size"),
        ({"num_epochs": 0}, "num_epochs"),
        ({"step_size": 0.0}, "step_size"),
        ({"step_size": -0.1}, "step_size"),
        ({"step_size": math.nan}, "step_size"),
        ({"step_size": math.inf}, "step_size"),
        ({"layer_sizes": ()}, "layer_sizes"),
        ({"layer_sizes": (784,)}, "layer_sizes"),
        ({"layer_sizes": (784, 0, 10)}, "layer_sizes[1]"),
        ({"layer_sizes": (784, -5, 10)}, "layer_sizes[1]"),
        ({"seed": -1}, "seed"),
    ],
)
def test_invalid_values_fail_where_built_naming_the_field(change, field):
    with pytest.raises(ConfigError, match="^" + re.escape(field) + " "):
        TrainConfig(**change)


def test_frozen_and_round_trips_through_json_dict():
    c = TrainConfig(num_epochs=3, shuffle=False)
    with pytest.raises(AttributeError):
        c.num_epochs = 4  # type: ignore[misc]
    assert TrainConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ConfigError, match="unknown config field"):
        TrainConfig.from_dict({"epochs": 3})


def test_parse_layer_sizes():
    assert parse_layer_sizes("784, 512,10") == (784, 512, 10)
    with pytest.raises(ConfigError, match="layer_sizes"):
        parse_layer_sizes("784,abc")
