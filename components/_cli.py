"""What every component CLI shares: one-line errors and a non-zero exit, bad input refused before TF and JAX load.

A step's ``main`` checks its flags and its local inputs first, with light imports only: TensorFlow and JAX take
4-10 s to load (measured on 2 cores), and a refusal that waited for them took as long.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path

from artifacts.locations import is_remote
from mlp_core.errors import UserError


def expected_errors() -> tuple[type[BaseException], ...]:
    """What a command line prints as one line: a user's mistake, I/O, and Google credentials if google-auth is loaded."""
    return (UserError, OSError, *_google_auth_errors())


def _google_auth_errors() -> tuple[type[BaseException], ...]:
    """No (or unusable) Google credentials: the environment, not a bug (``error_line`` says how to provide them)."""
    exceptions = sys.modules.get("google.auth.exceptions")  # not loaded: none of its errors happened
    return (exceptions.GoogleAuthError,) if exceptions else ()


def check_inputs(given: "dict[str, str | None]") -> None:
    """Every local input ``{flag: path}`` given is there (an object-store one is read later)."""
    for flag, path in given.items():
        if path and not is_remote(str(path)) and not Path(path).exists():
            raise UserError(f"{flag} {path} does not exist")


def loss_note(num_classes: "int | None" = None) -> str:
    """What a printed loss is, said once where a command shows it: the seed notebook's (``mlp_core.model.loss``)."""
    classes = f"the {num_classes} classes" if num_classes else "the classes"
    return f"the notebook's loss: cross-entropy averaged over {classes} too"


def flag_for(field: str) -> str:
    """The flag a command line gives ``field`` by: ``blessing_threshold`` -> ``--blessing-threshold``."""
    return field if field.startswith("-") else "--" + field.replace("_", "-")


def error_line(error: BaseException, name: Callable[[str], str] = flag_for) -> str:
    """The one line an expected error prints; for a Google credentials error, how to provide credentials.

    A ``UserError`` about one field names it as the user gave it: ``name(field)``, by default its flag
    (the library keeps the field's name for Python callers: ``TrainConfig(num_epochs=0)``).
    """
    if isinstance(error, _google_auth_errors()):
        from platforms.vertex.endpoint import credentials_message

        return credentials_message(error)
    from artifacts.redaction import redact  # every error line passes the one redaction function

    named = isinstance(error, UserError) and error.field
    text = redact(error.naming(name(error.field)) if named else error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def exit_on_error(main: Callable[..., int | None]) -> Callable[..., int]:
    """Run ``main``; turn an expected error into ``error: <message>`` and exit status 2."""

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> int:
        try:
            return main(argv) or 0
        except (SystemExit, KeyboardInterrupt):  # --help, argparse's usage errors: nothing to import for them
            raise
        except expected_errors() as e:
            print(f"error: {error_line(e)}", file=sys.stderr)
            return 2

    return wrapper
