"""The blessing gate: is a newly trained model good enough to publish?"""

from __future__ import annotations

# A retrained model may be this much below the champion and still replace it (run-to-run noise).
DEFAULT_TOLERANCE = 0.002


def bless(accuracy: float, threshold: float, tolerance: float, champion_accuracy: float | None) -> tuple[bool, str]:
    """Blessed when ``accuracy >= threshold`` and ``>= champion_accuracy - tolerance``.

    With no champion (nothing published yet), only the threshold applies.
    """
    if accuracy < threshold:
        return False, f"test accuracy {accuracy:.4f} is below the threshold {threshold:.4f}"
    if champion_accuracy is None:
        return True, f"test accuracy {accuracy:.4f} >= threshold {threshold:.4f}; no champion yet"
    floor = champion_accuracy - tolerance
    if accuracy < floor:
        return False, (
            f"test accuracy {accuracy:.4f} is below the champion's {champion_accuracy:.4f} "
            f"minus tolerance {tolerance:.4f} ({floor:.4f})"
        )
    return True, (
        f"test accuracy {accuracy:.4f} >= threshold {threshold:.4f} and >= champion {champion_accuracy:.4f} "
        f"minus tolerance {tolerance:.4f}"
    )
