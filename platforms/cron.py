"""Cron expressions: validated with croniter before anything is sent."""

from __future__ import annotations

from datetime import datetime, timezone

from mlp_core.errors import UserError


def validate(expression: str) -> str:
    """A standard five-field cron expression, checked; an optional ``TZ=Area/City`` prefix is kept."""
    from croniter import croniter

    tz, fields = _split_tz(expression)
    if len(fields.split()) != 5:
        raise UserError(f"cron must have five fields (minute hour day month weekday), got {fields!r}")
    if not croniter.is_valid(fields):
        raise UserError(f"invalid cron expression {fields!r}")
    for field in fields.split():
        for part in field.split(","):
            low, dash, high = part.partition("/")[0].partition("-")
            # croniter wraps 5-1 around; Kubeflow's robfig/cron refuses it ("beginning of range beyond end of range")
            if dash and low.isdigit() and high.isdigit() and int(low) > int(high):
                raise UserError(f"cron range {part!r} in {fields!r} runs backwards: write it low-high")
    if tz == "":
        raise UserError(f"cron {expression.strip()!r}: TZ= names no time zone")
    zone = timezone.utc
    if tz:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            zone = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise UserError(f"unknown time zone {tz!r} in cron") from None
    _check_fires(fields, zone)
    return expression.strip()


# Kubeflow's schedule controller gives up on a schedule that does not fire within five years; Vertex AI is held to
# the same bound.
FIRES_WITHIN_YEARS = 5


def _check_fires(fields: str, zone) -> None:
    """Refuse a valid-looking expression that never fires (``0 3 31 2 *``): it would create a schedule that never runs."""
    from croniter import CroniterBadDateError, croniter

    try:
        croniter(fields, datetime.now(timezone.utc).astimezone(zone),
                 max_years_between_matches=FIRES_WITHIN_YEARS).get_next(datetime)
    except CroniterBadDateError:
        raise UserError(f"cron {fields!r} never fires (no such date within {FIRES_WITHIN_YEARS} years, e.g. the 31st "
                           "of a 30-day month or February 30): check the day of month and month fields") from None


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
        raise UserError("Kubeflow recurring runs take no TZ= in cron; they run in the cluster's time zone")
    return "0 " + fields


def next_runs(expression: str, count: int = 3, start: datetime | None = None) -> list[datetime]:
    """The next ``count`` times ``expression`` fires, in its time zone (UTC when none)."""
    from zoneinfo import ZoneInfo

    from croniter import croniter

    tz, fields = _split_tz(validate(expression))
    zone = ZoneInfo(tz) if tz else timezone.utc
    it = croniter(fields, (start or datetime.now(timezone.utc)).astimezone(zone))
    return [it.get_next(datetime) for _ in range(count)]
