import math
import re

import pytest

from mlp_core.config import TrainConfig, parse_hidden_sizes
from mlp_core.errors import UserError


def test_defaults_are_the_seeds():
    c = TrainConfig()
    assert (c.layer_sizes, c.step_size, c.batch_size, c.epochs, c.seed) == ((784, 512, 512, 10), 0.01, 128, 10, 0)
    assert c.init_scale == 1e-2


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": -3}, "batch_size"),
        ({"epochs": 0}, "epochs"),
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
    with pytest.raises(UserError, match="^" + re.escape(field) + " "):
        TrainConfig(**change)


def test_frozen_and_round_trips_through_json_dict():
    c = TrainConfig(epochs=3, shuffle=False)
    with pytest.raises(AttributeError):
        c.epochs = 4  # type: ignore[misc]
    assert TrainConfig.from_dict(c.to_dict()) == c
    with pytest.raises(UserError, match="unknown config field"):
        TrainConfig.from_dict({"num_epochs": 3})


def test_parse_hidden_sizes():
    assert parse_hidden_sizes("784, 512,10") == (784, 512, 10) and parse_hidden_sizes(" ") == ()
    for text in ("784,abc", "512,0", "512,-3", ","):
        with pytest.raises(UserError, match="^hidden_sizes must be positive integers separated by commas, got "):
            parse_hidden_sizes(text)


def test_the_train_steps_parameters_become_one_config():
    from components.train import config_of

    config = config_of("64", step_size=0.1, batch_size=32, epochs=2, seed=1, shuffle=False)
    assert config.layer_sizes == (784, 64, 10) and config.hidden_sizes == "64"
    assert config.for_data(12, 3).layer_sizes == (12, 64, 3)


def test_a_python_caller_reads_the_field_a_command_line_reads_its_flag():
    from components._cli import error_line

    with pytest.raises(UserError) as refused:
        TrainConfig(epochs=0)
    assert str(refused.value) == "epochs must be a positive integer, got 0" and refused.value.field == "epochs"
    assert error_line(refused.value) == "--epochs must be a positive integer, got 0"
    # a message naming no single field (or words, not a name) is printed as it is
    with pytest.raises(UserError) as refused:
        TrainConfig(layer_sizes=(784,))
    assert refused.value.field is None and error_line(refused.value) == str(refused.value)
    assert UserError("the threshold must be ...", field="threshold").field is None  # not what the message begins with


# ---- every TrainConfig field, given a bad value through each command line that takes it, is named by its flag

# field -> (the flag that gives it, bad values); the fields no command line can give a bad value are listed apart.
BAD_VALUES = {
    "layer_sizes": ("--hidden-sizes", ["512,0", "512,x", "-1", ",", "512,,10"]),
    "step_size": ("--step-size", ["0", "-0.5", "nan", "inf"]),
    "batch_size": ("--batch-size", ["0", "-3"]),
    "epochs": ("--epochs", ["0", "-1"]),
    "seed": ("--seed", ["-1", str(2**63)]),
}
NO_BAD_VALUE = {"init_scale": "no command line sets it", "shuffle": "--shuffle/--no-shuffle: a bool, argparse's"}
CASES = [(field, flag_, value) for field, (flag_, values) in BAD_VALUES.items() for value in values]


def test_every_field_has_its_cases():
    import dataclasses

    assert {f.name for f in dataclasses.fields(TrainConfig)} == set(BAD_VALUES) | set(NO_BAD_VALUE)


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0].removeprefix("error: ")


def _names_the_flag(line: str, field: str, flag_: str) -> None:
    assert line.startswith(flag_ + " "), line
    assert field not in line.replace(flag_, ""), line  # never the Python name (epochs, layer_sizes, step_size)


@pytest.mark.parametrize(("field", "flag_", "value"), CASES)
def test_train_names_the_flag(small_dataset, tmp_path, capsys, field, flag_, value):
    from components import train

    assert train.main(["--dataset", str(small_dataset), "--model", str(tmp_path / "m"), f"{flag_}={value}"]) == 2
    _names_the_flag(_one_error_line(capsys), field, flag_)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(("field", "flag_", "value"), CASES)
def test_pipeline_run_names_the_flag(tmp_path, capsys, field, flag_, value):
    from commands import cli

    assert cli.main(["run", "--pipeline-root", str(tmp_path / "root"), f"{flag_}={value}"]) == 2
    _names_the_flag(_one_error_line(capsys), field, flag_)
    assert not (tmp_path / "root").exists()


@pytest.mark.parametrize(("flags", "message"), [
    (["--batch-size", "100000"], "--batch-size 100000 is larger than the training split (512 examples)"),
    (["--blessing-threshold", "nan"], "--blessing-threshold must be a number from 0 to 1, got nan"),
    (["--records-per-shard", "0"], "--records-per-shard must be a positive integer, got 0"),
    (["--dataset-name", ""], "--dataset-name must not be empty"),
    (["--checkpoint-root", "ftp://x/y"], "--checkpoint-root: 'ftp://x/y' is not a location this program reads"),
])
def test_other_parameters_are_named_by_their_flags_too(small_dataset, tmp_path, capsys, flags, message):
    from commands import cli
    from components import train

    if flags[0] == "--batch-size":  # the split's size is known only to the step
        assert train.main(["--dataset", str(small_dataset), "--model", str(tmp_path / "m"), *flags]) == 2
    else:
        assert cli.main(["run", "--pipeline-root", str(tmp_path / "root"), *flags]) == 2
    assert _one_error_line(capsys).startswith(message)
