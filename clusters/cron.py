"""Cron expressions: validated with croniter before anything is sent."""

from __future__ import annotations

from datetime import datetime, timezone

from clusters.options import ClusterError


def validate(expression: str) -> str:
    """A standard five-field cron expression, checked; an optional ``TZ=Area/City`` prefix is kept."""
    from croniter import croniter

    tz, fields = _split_tz(expression)
    if len(fields.split()) != 5:
        raise ClusterError(f"cron must have five fields (minute hour day month weekday), got {fields!r}")
    if not croniter.is_valid(fields):
        raise ClusterError(f"invalid cron expression {fields!r}")
    if tz:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ClusterError(f"unknown time zone {tz!r} in cron") from None
    return expression.strip()


def _split_tz(expression: str) -> tuple[str | None, str]:
    expression = expression.strip()
    if expression.startswith(("TZ=", "CRON_TZ=")):
        head, _, rest = expression.partition(" ")
        return head.split("=", 1)[1], rest.strip()
    return None, expression


def to_kfp(expression: str) -> str:
    """Kubeflow's cron has six fields, seconds first: ``0 3 * * 1`` -> ``0 0 3 * * 1``."""
    tz, fields = _split_tz(validate(expression))
    if tz:
        raise ClusterError("Kubeflow recurring runs take no TZ= in cron; they run in the cluster's time zone")
    return "0 " + fields


def next_runs(expression: str, count: int = 3, start: datetime | None = None) -> list[datetime]:
    """The next ``count`` times ``expression`` fires, in its time zone (UTC when none)."""
    from zoneinfo import ZoneInfo

    from croniter import croniter

    tz, fields = _split_tz(validate(expression))
    zone = ZoneInfo(tz) if tz else timezone.utc
    it = croniter(fields, (start or datetime.now(timezone.utc)).astimezone(zone))
    return [it.get_next(datetime) for _ in range(count)]
