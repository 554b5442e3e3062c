"""A step's parameters, declared once in its kfp component function (signature, defaults, docstring ``Args:``),
as command-line flags and values (kfp copies the same declaration into the compiled YAML)."""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable
from typing import Any

import docstring_parser

# The parameter types kfp passes as plain values (artifacts are everything else).
PARAMETER_TYPES = (str, int, float, bool)


def parameters(func: Callable) -> dict[str, inspect.Parameter]:
    """The step's plain-value parameters (not its artifacts), in declaration order."""
    return {name: p for name, p in inspect.signature(func).parameters.items() if p.annotation in PARAMETER_TYPES}


def descriptions(func: Callable) -> dict[str, str]:
    """Each argument's text from the docstring's ``Args:`` section (what kfp puts in the YAML)."""
    return {p.arg_name: " ".join(p.description.split()) for p in docstring_parser.parse(func.__doc__ or "").params}


def flag(name: str) -> str:
    """``step_size`` -> ``--step-size``: a step's flag for each parameter."""
    return "--" + name.replace("_", "-")


def add_flags(parser: argparse.ArgumentParser, declared: dict[str, inspect.Parameter], texts: dict[str, str],
              all_optional: bool = False, choices: "dict[str, tuple] | None" = None) -> None:
    """One flag per declared parameter: its type, its default, its text as help.

    ``all_optional``: every flag defaults to None (unset), for a command that
    passes on only what was given (``pipeline.py run``: the pipeline fills in the rest).
    """
    for name, p in declared.items():
        has_default = p.default is not inspect.Parameter.empty
        text = texts.get(name, "") + (f" (default: {p.default})" if has_default and p.default != "" else "")
        kind = {"action": argparse.BooleanOptionalAction} if p.annotation is bool else {"type": p.annotation}
        if choices and name in choices:
            kind["choices"] = choices[name]
        parser.add_argument(flag(name), dest=name, default=None if all_optional or not has_default else p.default,
                            required=not has_default and not all_optional, help=text.replace("%", "%%"), **kind)


def add_parameter_flags(parser: argparse.ArgumentParser, func: Callable, choices: "dict[str, tuple] | None" = None) -> None:
    """A step's CLI flags: one per parameter of its component function ``func``."""
    add_flags(parser, parameters(func), descriptions(func), choices=choices)


def values(args: argparse.Namespace, func: Callable) -> dict[str, Any]:
    """The parsed values of ``func``'s parameter flags, by parameter name."""
    return {name: getattr(args, name) for name in parameters(func)}


def bind(func: Callable, given: dict[str, Any]) -> dict[str, Any]:
    """Every parameter of ``func``: its declared default, overridden by ``given`` (unknown names refused)."""
    declared = parameters(func)
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise TypeError(f"{func.__name__} has no parameter(s) {', '.join(unknown)}")
    return {name: given.get(name, p.default) for name, p in declared.items()}
