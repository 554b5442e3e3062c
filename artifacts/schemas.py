"""Strict JSON for the files we read: no NaN or Infinity, and one JSON Schema per file (``jsonschema``).

Python's ``json`` accepts ``NaN`` and ``Infinity``, which are not JSON and which
compare False with everything: a champion whose accuracy is NaN would make every
later model look better. ``loads`` refuses them; ``validate`` checks a document
against its schema and names the file and the field in one line.
"""

from __future__ import annotations

import json
from typing import Any
from mlp_core.errors import UserError

VERSION_PATTERN = r"^\d{8}T\d{6}Z-[0-9a-f]{12}$"

_FRACTION = {"type": "number", "minimum": 0, "maximum": 1}
_LOSS = {"type": ["number", "null"], "minimum": 0}

PUBLISH_MANIFEST = {
    "type": "object",
    "required": ["version", "content_sha256", "metrics", "config", "dataset", "files"],
    "properties": {
        "version": {"type": "string", "pattern": VERSION_PATTERN},
        "content_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "metrics": {
            "type": "object",
            "required": ["test_accuracy"],
            "properties": {"test_accuracy": _FRACTION, "test_loss": _LOSS, "epochs": {"type": "integer", "minimum": 1}},
        },
        "config": {"type": "object"},
        "dataset": {"type": "object"},
        "files": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        # The image's lock file digest (its label io.github.jax-mlp-pipeline.lock-sha256); "" outside the image.
        "image_lock_sha256": {"type": "string", "pattern": "^([0-9a-f]{64})?$"},
    },
}


_COUNT = {"type": "integer", "minimum": 0, "maximum": 2**40}
_SHARD = {
    "type": "object",
    "required": ["name", "num_records", "num_bytes", "sha256"],
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z]+-\d{5}-of-\d{5}\.tfrecord$"},
        "num_records": _COUNT,
        "num_bytes": _COUNT,
        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
    },
}
_SPLIT = {
    "type": "object",
    "required": ["num_examples", "class_counts", "shards"],
    "properties": {
        "tfds_split": {"type": "string"},
        "folder": {"type": "string"},  # an image folder source: the split folder read (mlp_core.data.image_folder)
        "num_examples": _COUNT,
        "class_counts": {"type": "array", "items": _COUNT},
        "shards": {"type": "array", "items": _SHARD, "minItems": 1, "maxItems": 100_000},
    },
}
_SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
# Where an image folder Dataset came from (mlp_core.data.image_folder, mlp_core.data.spans): the spans read, every
# file's name, size and sha256, and one fingerprint over them, which a later step compares to decide "nothing new".
_SOURCE = {
    "type": "object",
    "required": ["kind", "pattern", "spans", "files", "fingerprint"],
    "properties": {
        "kind": {"enum": ["image_folder"]},
        "pattern": {"type": "string", "minLength": 1},
        "base": {"type": "string"},
        "span_window": {"type": "integer", "minimum": 1},
        "spans": {"type": "array", "items": {
            "type": "object",
            "required": ["span", "name", "location"],
            "properties": {"span": {"type": "integer"}, "name": {"type": "string"}, "location": {"type": "string"}},
        }},
        "image_shape_from": {"type": "string"},
        "resize": {"type": "boolean"},
        "resized": _COUNT,
        "files": {"type": "array", "minItems": 1, "items": {
            "type": "object",
            "required": ["name", "size", "sha256"],
            "properties": {"name": {"type": "string", "minLength": 1}, "size": _COUNT, "sha256": _SHA256},
        }},
        "fingerprint": _SHA256,
    },
}
# The Dataset artifact's metadata.json (mlp_core.data.artifact).
DATASET_METADATA = {
    "type": "object",
    "required": ["format_version", "dataset", "image_shape", "image_dtype", "num_classes", "class_names", "splits"],
    "properties": {
        "format_version": {"const": 1},
        "dataset": {
            "type": "object",
            "required": ["name", "version"],
            "properties": {"name": {"type": "string", "minLength": 1}, "version": {"type": "string"},
                           "tfds_data_dir": {"type": "string"}},
        },
        "image_shape": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 65536},
                        "minItems": 1, "maxItems": 4},
        "image_dtype": {"const": "uint8"},
        "num_classes": {"type": "integer", "minimum": 2, "maximum": 100_000},
        "class_names": {"type": "array", "items": {"type": "string"}},
        "splits": {"type": "object", "required": ["train", "test"], "additionalProperties": _SPLIT},
        "source": _SOURCE,  # absent for a tfds dataset
    },
}


def check_dataset_metadata(metadata: Any, where: str) -> dict:
    """``metadata.json`` against ``DATASET_METADATA``, then what one schema cannot say across fields."""
    validate(metadata, DATASET_METADATA, where)
    classes = metadata["num_classes"]
    if len(metadata["class_names"]) != classes:
        raise UserError(f"{where}: class_names has {len(metadata['class_names'])} names for {classes} classes")
    for name, split in metadata["splits"].items():
        if len(split["class_counts"]) != classes:
            raise UserError(f"{where}: splits.{name}.class_counts has {len(split['class_counts'])} counts for {classes} classes")
        if sum(split["class_counts"]) != split["num_examples"]:
            raise UserError(f"{where}: splits.{name}.class_counts add up to {sum(split['class_counts'])}, "
                              f"num_examples is {split['num_examples']}")
        records = sum(s["num_records"] for s in split["shards"])
        if records != split["num_examples"]:
            raise UserError(f"{where}: splits.{name}.shards hold {records} records, num_examples is {split['num_examples']}")
        names = [s["name"] for s in split["shards"]]
        if len(set(names)) != len(names) or not all(n.startswith(f"{name}-") for n in names):
            raise UserError(f"{where}: splits.{name}.shards must have distinct names starting with {name}-")
    return metadata


_NUMBER_OR_NULL = {"type": ["number", "null"]}
# The Model artifact's files (mlp_core.model_io).
MODEL_CONFIG = {
    "type": "object",
    "required": ["layer_sizes", "step_size", "batch_size", "epochs", "seed", "shuffle", "init_scale"],
    "additionalProperties": False,
    "properties": {
        "layer_sizes": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 2**24},
                        "minItems": 2, "maxItems": 64},
        "step_size": {"type": "number", "exclusiveMinimum": 0},
        "batch_size": {"type": "integer", "minimum": 1, "maximum": 2**31},
        "epochs": {"type": "integer", "minimum": 1, "maximum": 2**31},
        "seed": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
        "shuffle": {"type": "boolean"},
        "init_scale": {"type": "number", "exclusiveMinimum": 0},
    },
}
MODEL_DATASET = {
    "type": "object",
    "required": ["name", "version", "image_shape", "num_classes", "class_names", "shards"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "version": {"type": "string"},
        "image_shape": DATASET_METADATA["properties"]["image_shape"],
        "num_classes": DATASET_METADATA["properties"]["num_classes"],
        "class_names": {"type": "array", "items": {"type": "string"}},
        "shards": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
    },
}
MODEL_HISTORY = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "required": ["epoch", "loss", "train_accuracy", "test_accuracy", "test_loss", "seconds",
                     "examples_per_second", "class_counts"],
        "properties": {
            "epoch": {"type": "integer", "minimum": 1},
            "loss": {"type": "number", "minimum": 0},
            "train_accuracy": _FRACTION,
            "test_accuracy": {"anyOf": [_FRACTION, {"type": "null"}]},
            "test_loss": _LOSS,
            "seconds": {"type": "number", "minimum": 0},
            "examples_per_second": {"type": "number", "minimum": 0},
            "class_counts": {"type": "array", "items": _COUNT},
        },
    },
}


# The train step's metrics file (its Metrics artifact, its --metrics JSON), as the track step reads it.
TRAIN_METRICS = {
    "type": "object",
    "required": ["history", "hyperparameters"],
    "properties": {
        "history": MODEL_HISTORY,
        "hyperparameters": {"type": "object", "propertyNames": {"pattern": "^param_[a-z_]+$"},
                            "additionalProperties": {"type": ["string", "number", "boolean"]}},
    },
}
# The evaluate step's --metrics JSON (the part the track step reads).
TEST_METRICS = {
    "type": "object",
    "required": ["test_accuracy", "test_loss"],
    "properties": {"test_accuracy": _FRACTION, "test_loss": {"type": "number", "minimum": 0}, "macro_f1": _FRACTION},
}


def check_model_files(config: Any, dataset: Any, history: Any, folder: str) -> None:
    """The Model artifact's three JSON files, each against its schema, then against each other."""
    import math

    validate(config, MODEL_CONFIG, f"{folder}/config.json")
    validate(dataset, MODEL_DATASET, f"{folder}/dataset.json")
    validate(history, MODEL_HISTORY, f"{folder}/history.json")
    sizes = config["layer_sizes"]
    if sizes[0] != math.prod(dataset["image_shape"]) or sizes[-1] != dataset["num_classes"]:
        raise UserError(f"{folder}: config.json's layer_sizes {sizes} do not fit dataset.json's images "
                          f"{dataset['image_shape']} and {dataset['num_classes']} classes")
    if len(dataset["class_names"]) != dataset["num_classes"]:
        raise UserError(f"{folder}/dataset.json: class_names has {len(dataset['class_names'])} names "
                          f"for {dataset['num_classes']} classes")
    if [m["epoch"] for m in history] != list(range(1, len(history) + 1)):
        raise UserError(f"{folder}/history.json: epochs must run 1, 2, ... without gaps")


def excerpt(value: Any, limit: int = 40) -> str:
    """A short, printable excerpt of ``value`` (a file's bytes, a parsed value) for an error line: never the whole."""
    if isinstance(value, bytes):
        value = value[: limit * 4].decode("utf-8", "replace")
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _no_constants(name: str):
    raise ValueError(f"{name} is not valid JSON")


def loads(text: str | bytes, where: str) -> Any:
    """Parse strict JSON (no NaN/Infinity) from the file ``where``; ``UserError`` in one line."""
    try:
        return json.loads(text, parse_constant=_no_constants)
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{where} is not valid JSON: {str(e).splitlines()[0]}") from None


def validate(document: Any, schema: dict, where: str) -> Any:
    """``document`` if it matches ``schema``; else ``UserError`` naming ``where`` and the first bad field."""
    import jsonschema

    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        error = errors[0]
        field = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        message = error.message.replace(repr(error.instance), excerpt(error.instance))  # never the whole file
        raise UserError(f"{where}: {field}: {message[:200]}")
    return document


def dumps(document: Any) -> str:
    """Strict JSON text (a NaN or Infinity is a bug: ``ValueError``), indented, with a final newline."""
    return json.dumps(document, indent=2, allow_nan=False) + "\n"
