"""Data that arrives over time: span and date patterns (``{SPAN}``, ``{YYYY}/{MM}/{DD}``, as TFX ExampleGen's), the
newest span or a window of them, and content fingerprints (equal iff the same names hold the same bytes).

Stricter than TFX: a span part must be digits to match, ``{VERSION}`` is refused, two folders of one span are refused.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from dataclasses import dataclass

from mlp_core.errors import UserError

SPAN_SPEC = "{SPAN}"
DATE_SPECS = ("{YYYY}", "{MM}", "{DD}")
VERSION_SPEC = "{VERSION}"
_SPEC_REGEX = {SPAN_SPEC: r"(?P<span>[0-9]+)", "{YYYY}": r"(?P<year>[0-9]{4})", "{MM}": r"(?P<month>[0-9]{2})",
               "{DD}": r"(?P<day>[0-9]{2})"}
_ANY_SPEC = re.compile("|".join(re.escape(s) for s in (*_SPEC_REGEX, VERSION_SPEC)))
UNIX_EPOCH = datetime.date(1970, 1, 1)


@dataclass(frozen=True)
class Span:
    """One span of a pattern: its number, its folder name relative to the pattern's base, and its location."""

    number: int
    name: str
    location: str

    def to_dict(self) -> dict:
        return {"span": self.number, "name": self.name, "location": self.location}


def has_spec(pattern: str) -> bool:
    """True if ``pattern`` holds a span or date placeholder (or a ``{VERSION}``, which ``split_pattern`` refuses)."""
    return bool(_ANY_SPEC.search(pattern))


def split_pattern(pattern: str) -> tuple[str, str]:
    """``(base, rest)``: the fixed location before the first part with a placeholder, and the parts from it on, checked."""
    if VERSION_SPEC in pattern:
        raise UserError(f"source: {VERSION_SPEC} is not supported (use {SPAN_SPEC} or {{YYYY}}/{{MM}}/{{DD}})",
                        field="source")
    is_span = SPAN_SPEC in pattern
    is_date = any(spec in pattern for spec in DATE_SPECS)
    if is_span and is_date:
        raise UserError(f"source: {pattern!r} holds both {SPAN_SPEC} and a date part; use one or the other",
                        field="source")
    if is_span and pattern.count(SPAN_SPEC) != 1:
        raise UserError(f"source: {pattern!r} holds {SPAN_SPEC} more than once", field="source")
    if is_date and not all(pattern.count(spec) == 1 for spec in DATE_SPECS):
        raise UserError(f"source: {pattern!r} must hold each of {', '.join(DATE_SPECS)} exactly once", field="source")
    parts = pattern.rstrip("/").split("/")
    first = next(i for i, part in enumerate(parts) if has_spec(part))
    if "://" in pattern and first < 3:  # gs://BUCKET/...: parts "gs:", "", "BUCKET"
        raise UserError(f"source: {pattern!r}: a placeholder cannot be part of the bucket", field="source")
    base = "/".join(parts[:first]) or ("/" if pattern.startswith("/") else ".")
    return base, "/".join(parts[first:])


def _regex(rest: str) -> re.Pattern:
    """The pattern's parts from the first placeholder on, as an anchored regex over a name relative to the base."""
    pieces = []
    for piece in re.split(f"({_ANY_SPEC.pattern})", rest):
        pieces.append(_SPEC_REGEX[piece] if piece in _SPEC_REGEX else re.escape(piece))
    return re.compile("^(?P<root>" + "".join(pieces) + ")/")


def _number(match: re.Match, name: str) -> int:
    if match.groupdict().get("span") is not None:
        return int(match.group("span"))
    try:
        date = datetime.date(int(match.group("year")), int(match.group("month")), int(match.group("day")))
    except ValueError:
        raise UserError(f"source: {name!r} matches the date pattern but is no date", field="source") from None
    return (date - UNIX_EPOCH).days


def resolve(pattern: str, names: list[str], window: int, join) -> list[Span]:
    """The ``window`` newest spans of ``pattern``, oldest first, from ``names`` (every file under its base).

    ``join(base, name)`` makes a span's location; ``span-1`` beside ``span-01``, or no match at all, is refused.
    """
    if window < 1:
        raise UserError(f"span_window must be at least 1, got {window}", field="span_window")
    base, rest = split_pattern(pattern)
    regex = _regex(rest)
    found: dict[int, str] = {}
    for name in names:
        match = regex.match(name)
        if not match:
            continue
        root = match.group("root")
        number = _number(match, root)
        if found.setdefault(number, root) != root:
            raise UserError(f"source: {found[number]!r} and {root!r} are both span {number} of {pattern!r}",
                            field="source")
    if not found:
        raise UserError(f"source: no folder under {base or '.'} matches {pattern!r}", field="source")
    newest = sorted(found)[-window:]
    return [Span(number, found[number], join(base, found[number])) for number in newest]


def file_record(name: str, data: bytes) -> dict:
    """What the fingerprint keeps of one file read: its name (relative to the source), size and sha256."""
    return {"name": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def fingerprint(records: list[dict]) -> str:
    """sha256 over the per-file records sorted by name: equal iff the same names hold the same bytes."""
    digest = hashlib.sha256()
    for record in sorted(records, key=lambda r: r["name"]):
        digest.update(f"{record['name']}\t{record['size']}\t{record['sha256']}\n".encode())
    return digest.hexdigest()
