"""The blessing gate: is a newly trained model good enough to publish?

The champion is compared on this run's test split only (``components.evaluate`` scores both).
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from mlp_core.errors import UserError

# The lowest test accuracy a model is blessed (and published) with; the seed's MLP reaches about 0.98.
DEFAULT_THRESHOLD = 0.95
# A retrained model may be this much below the champion and still replace it (run-to-run noise).
DEFAULT_TOLERANCE = 0.002


def _field(name: str) -> "str | None":
    """``name`` as a ``UserError`` field when it is a parameter (``test_accuracy``) or a flag, not words."""
    return name if name.isidentifier() or name.startswith("--") else None


def check_fraction(name: str, value: Any) -> float:
    """``value`` as a float in [0, 1] (an accuracy, a threshold); ``UserError`` naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 <= value <= 1:
        raise UserError(f"{name} must be a number from 0 to 1, got {value!r}", field=_field(name))
    return float(value)


def check_loss(name: str, value: Any) -> float | None:
    """``value`` as a finite float >= 0, or None; ``UserError`` naming ``name`` otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise UserError(f"{name} must be a finite number >= 0, got {value!r}", field=_field(name))
    return float(value)


def bless(accuracy: float, threshold: float, tolerance: float, champion_accuracy: float | None) -> tuple[bool, str]:
    """Blessed when ``accuracy >= threshold`` and ``>= champion_accuracy - tolerance`` (no champion: the threshold only).

    Every number must be in range (``UserError``): a NaN would compare False everywhere.
    """
    check_fraction("test accuracy", accuracy)
    if threshold != float("-inf"):  # publish's re-check has no threshold
        check_fraction("the threshold", threshold)
    check_fraction("the tolerance", tolerance)
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


def bless_against_champion(accuracy: float, threshold: float, tolerance: float, champion: "dict | None",
                           force: bool = False) -> tuple[bool, str]:
    """The evaluate step's decision (``bless``); ``champion`` is its re-scoring on this run's test split, or None.

    ``champion``: ``version``, ``comparable``, then ``test_accuracy`` or, incomparable, why. An incomparable champion
    is replaced only with ``force``, which changes nothing else.
    """
    if champion is None:
        return bless(accuracy, threshold, tolerance, None)
    if champion["comparable"]:
        blessed, reason = bless(accuracy, threshold, tolerance, champion["test_accuracy"])
        if accuracy < threshold:
            return False, reason
        theirs = f"champion {champion['version']}'s {champion['test_accuracy']:.4f} on this run's test split"
        floor = champion["test_accuracy"] - tolerance
        if not blessed:
            return False, (f"test accuracy {accuracy:.4f} is below {theirs} minus tolerance {tolerance:.4f} "
                           f"({floor:.4f})")
        return True, f"test accuracy {accuracy:.4f} >= threshold {threshold:.4f} and >= {theirs} minus tolerance {tolerance:.4f}"
    blessed, reason = bless(accuracy, threshold, tolerance, None)
    if not blessed:
        return False, reason
    passed = reason.split(";", 1)[0]
    if force:
        return True, f"{passed}; champion {champion['version']} is incomparable ({champion['incomparable']}): replaced, force is set"
    return False, (f"champion {champion['version']} is incomparable ({champion['incomparable']}): "
                   "not replaced without force")


def test_set_sha256(test_shards_sha256: list[str]) -> str:
    """One fingerprint of a test split, from its shards' sha256 (what a Dataset's metadata and a model record)."""
    return hashlib.sha256("\n".join(test_shards_sha256).encode()).hexdigest()
