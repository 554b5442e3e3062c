"""Pipeline arguments from a command line: typed by the steps' declarations, checked before anything runs."""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path

from artifacts.locations import check_location, check_publish_target, is_remote, is_resource_name
from components.train import config_of
from components.tune import search_space
from mlp_core.blessing import check_fraction
from mlp_core.errors import UserError
from mlp_core.memory import choose_placement

# pipeline is imported in the functions: at module level, chains of imports would pass test_layout's 8 modules.


def parameter_types() -> dict[str, type]:
    """Each pipeline parameter's type, as its step declares it."""
    from pipeline import pipeline_parameters

    return {name: p.annotation for name, p in pipeline_parameters().items()}


def parse_params(items: "list[str]") -> dict:
    """``["epochs=3", "shuffle=false"]`` -> typed pipeline arguments; unknown names are refused."""
    types = parameter_types()
    arguments = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep:
            raise UserError(f"--param must be name=value, got {item!r}")
        if name not in types:
            raise UserError(f"the pipeline has no parameter {name!r}; it has: {', '.join(sorted(types))}")
        if name in arguments:
            raise UserError(f"--param {name} is given twice; give each parameter once")
        kind = types[name]
        try:
            if kind is bool:
                if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(text)
                arguments[name] = text.lower() in ("true", "1", "yes")
            else:
                arguments[name] = kind(text)
        except ValueError:
            raise UserError(f"--param {name} needs a {kind.__name__}, got {text!r}") from None
    return arguments


def validate_arguments(arguments: dict) -> dict:
    """Every pipeline argument checked by its step's own validation, before any step runs; returns them all."""
    from pipeline import pipeline_parameters

    values = {name: p.default for name, p in pipeline_parameters().items()} | arguments
    # Each error names its parameter as a UserError field: the command line says it as the user gave it
    # (components._cli.error_line: --records-per-shard for pipeline.py run).
    if not isinstance(values["records_per_shard"], int) or values["records_per_shard"] <= 0:
        raise UserError(f"records_per_shard must be a positive integer, got {values['records_per_shard']!r}",
                          field="records_per_shard")
    if not values["dataset_name"]:
        raise UserError("dataset_name must not be empty", field="dataset_name")
    config_of(values["hidden_sizes"], values["step_size"], values["batch_size"], values["epochs"], values["seed"],
              values["shuffle"])
    search_space(values["trials"], values["tune_step_size_range"], values["tune_batch_sizes"],
                 values["tune_hidden_sizes"], values["validation_fraction"], values["tune_eta"])
    choose_placement(1, values["placement"]) if values["placement"] != "auto" else None
    check_fraction("blessing_threshold", values["blessing_threshold"])
    check_fraction("blessing_tolerance", values["blessing_tolerance"])
    for name, check in LOCATION_PARAMETERS.items():  # well formed, before any step runs or anything is sent
        with _naming(name):
            if values[name]:
                check(values[name], name)
    for name in ("publish_uri", "checkpoint_root"):
        location = values[name]
        if location and not is_remote(location) and not is_resource_name(location):
            with _naming(name):
                check_writable_folder(name, Path(location))
    return values


@contextmanager
def _naming(name: str):
    """A location error about parameter ``name`` (its message begins with the name) as a UserError about it."""
    try:
        yield
    except UserError as e:
        raise UserError(str(e), field=name) from None


# Parameters whose value is a location, and the rule of artifacts.locations each must pass (an empty value is the
# step's default): a publish target may also be a Vertex AI Model Registry model; the others are folders.
def check_tfds_data_dir(location: str, name: str) -> str:
    """A TFDS data dir: a local folder or gs:// (what tfds reads), checked as any location."""
    check_location(location, name)
    if is_remote(location) and not location.startswith("gs://"):
        raise UserError(f"{name} {location}: tfds reads a local folder or gs:// only")
    return location


LOCATION_PARAMETERS = {"publish_uri": check_publish_target, "checkpoint_root": check_location,
                       "tfds_data_dir": check_tfds_data_dir}


def check_writable_folder(name: str, path: Path) -> None:
    """``path`` is, or can become, a folder this user can write (probed in its nearest existing parent)."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{name} {path}: {existing} is a file, not a folder")
    try:  # os.access says yes to root everywhere, even on /proc: try it
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise UserError(f"{name} {path} cannot be written (cannot create a file in {existing}: {e.strerror or e})") from None
