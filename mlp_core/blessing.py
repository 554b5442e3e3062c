"""The blessing gate: is a newly trained model good enough to publish?"""

from __future__ import annotations

import math
from typing import Any

from mlp_core.config import ConfigError

class ChampionError(ValueError):
    """The published champion cannot be trusted (unreadable, not JSON, out of range): blessing against it stops."""


# The lowest test accuracy a model is blessed (and published) with; the seed's MLP reaches about 0.98.
DEFAULT_THRESHOLD = 0.95
# A retrained model may be this much below the champion and still replace it (run-to-run noise).
DEFAULT_TOLERANCE = 0.002


def check_fraction(name: str, value: Any) -> float:
    """``value`` as a float in [0, 1] (an accuracy, a threshold); ``ConfigError`` naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 <= value <= 1:
        raise ConfigError(f"{name} must be a number from 0 to 1, got {value!r}")
    return float(value)


def check_loss(name: str, value: Any) -> float | None:
    """``value`` as a finite float >= 0, or None; ``ConfigError`` naming ``name`` otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def bless(accuracy: float, threshold: float, tolerance: float, champion_accuracy: float | None) -> tuple[bool, str]:
    """Blessed when ``accuracy >= threshold`` and ``>= champion_accuracy - tolerance``.

    With no champion (nothing published yet), only the threshold applies. Every
    number must be finite and in range: a NaN would compare False everywhere and
    bless or refuse for no reason (``ConfigError`` instead).
    """
    check_fraction("test accuracy", accuracy)
    if threshold != float("-inf"):  # publish's re-check has no threshold
        check_fraction("threshold", threshold)
    check_fraction("tolerance", tolerance)
    if champion_accuracy is not None:
        check_fraction("the champion's test accuracy", champion_accuracy)
    if accuracy < threshold:
        return False, f"test accuracy {accuracy:.4f} is below the threshold {threshold:.4f}"
    passed = f"test accuracy {accuracy:.4f}" + (f" >= threshold {threshold:.4f}" if threshold != float("-inf") else "")
    if champion_accuracy is None:
        return True, f"{passed}; no champion yet"
    floor = champion_accuracy - tolerance
    if accuracy < floor:
        return False, (
            f"test accuracy {accuracy:.4f} is below the champion's {champion_accuracy:.4f} "
            f"minus tolerance {tolerance:.4f} ({floor:.4f})"
        )
    return True, (
        f"{passed}{' and' if threshold != float('-inf') else ''} >= champion {champion_accuracy:.4f} "
        f"minus tolerance {tolerance:.4f}"
    )
