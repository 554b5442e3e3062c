"""Strict JSON for the files we read: no NaN or Infinity, and one JSON Schema per file (``jsonschema``).

Python's ``json`` accepts ``NaN`` and ``Infinity``, which are not JSON and which
compare False with everything: a champion whose accuracy is NaN would make every
later model look better. ``loads`` refuses them; ``validate`` checks a document
against its schema and names the file and the field in one line.
"""

from __future__ import annotations

import json
from typing import Any

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
    },
}


class SchemaError(ValueError):
    """A JSON file we read is not valid JSON or does not have the shape we need."""


def _no_constants(name: str):
    raise ValueError(f"{name} is not valid JSON")


def loads(text: str | bytes, where: str) -> Any:
    """Parse strict JSON (no NaN/Infinity) from the file ``where``; ``SchemaError`` in one line."""
    try:
        return json.loads(text, parse_constant=_no_constants)
    except (ValueError, UnicodeDecodeError) as e:
        raise SchemaError(f"{where} is not valid JSON: {str(e).splitlines()[0]}") from None


def validate(document: Any, schema: dict, where: str) -> Any:
    """``document`` if it matches ``schema``; else ``SchemaError`` naming ``where`` and the first bad field."""
    import jsonschema

    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        error = errors[0]
        field = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        raise SchemaError(f"{where}: {field}: {error.message}")
    return document


def dumps(document: Any) -> str:
    """Strict JSON text (a NaN or Infinity is a bug: ``ValueError``), indented, with a final newline."""
    return json.dumps(document, indent=2, allow_nan=False) + "\n"
