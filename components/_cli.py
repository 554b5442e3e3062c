"""What every component CLI shares: one-line errors and a non-zero exit."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable

from mlp_core.config import ConfigError

class InputError(ValueError):
    """A command-line input (an image, a file) cannot be used."""


# Errors that describe bad input or a bad environment, not a bug in this code.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (ConfigError, InputError, OSError)


def expected_errors() -> tuple[type[BaseException], ...]:
    from mlp_core.blessing import ChampionError
    from mlp_core.data.errors import DatasetError
    from mlp_core.data.offline_mnist import OfflineMnistError
    from platforms.vertex.experiments import ExperimentError
    from artifacts.locations import LocationError
    from mlp_core.model_io import ModelError
    from artifacts.outputs import IncompleteArtifactError
    from artifacts.schemas import SchemaError
    from mlp_core.train import DivergenceError

    return (*EXPECTED_ERRORS, DatasetError, OfflineMnistError, DivergenceError, ModelError, ChampionError,
            IncompleteArtifactError, SchemaError, ExperimentError, LocationError, *_google_auth_errors())


def _google_auth_errors() -> tuple[type[BaseException], ...]:
    """No (or unusable) Google credentials: the environment, not a bug (``error_line`` says how to provide them)."""
    try:
        from google.auth.exceptions import GoogleAuthError
    except ImportError:  # no Google client installed, so none of its errors can happen
        return ()
    return (GoogleAuthError,)


def loss_note(num_classes: "int | None" = None) -> str:
    """What a printed loss is, said once where a command shows it: the seed notebook's (``mlp_core.model.loss``)."""
    classes = f"the {num_classes} classes" if num_classes else "the classes"
    return f"the notebook's loss: cross-entropy averaged over {classes} too"


def flag_for(field: str) -> str:
    """The flag a command line gives ``field`` by: ``num_epochs`` -> ``--epochs``, ``blessing_threshold`` ->
    ``--blessing-threshold`` (a TrainConfig field by the train step's parameter: ``mlp_core.config.PARAMETER_NAMES``)."""
    from components._step import flag
    from mlp_core.config import PARAMETER_NAMES

    return field if field.startswith("-") else flag(PARAMETER_NAMES.get(field, field))


def error_line(error: BaseException, name: Callable[[str], str] = flag_for) -> str:
    """The one line an expected error prints; for a Google credentials error, how to provide credentials.

    A ``ConfigError`` about one field names it as the user gave it: ``name(field)``, by default its flag
    (the library keeps the field's name for Python callers: ``TrainConfig(num_epochs=0)``).
    """
    if isinstance(error, _google_auth_errors()):
        from platforms.vertex.endpoint import credentials_message

        return credentials_message(error)
    from artifacts.redaction import redact  # every error line passes the one redaction function

    named = isinstance(error, ConfigError) and error.field
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
