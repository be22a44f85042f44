"""Human durations such as ``90s``, ``6h``, ``1h30m`` or ``7d``, as used in settings and the CLI."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


MAX_DURATION = timedelta(days=3650)


def parse_duration(text: str | float | int | timedelta) -> timedelta:
    """Parse ``1h30m``-style text, or a number of seconds, into a timedelta (at most ten
    years: nothing here needs longer, and larger values overflow timers)."""
    try:
        parsed = _parse(text)
    except (OverflowError, ValueError) as err:
        if isinstance(err, OverflowError) or "out of range" in str(err) or "too large" in str(err):
            raise ValueError(f"duration {text!r} is too large (at most 3650d)") from None
        raise
    if abs(parsed) > MAX_DURATION:
        raise ValueError(f"duration {text!r} is too large (at most 3650d)")
    return parsed


def _parse(text: str | float | int | timedelta) -> timedelta:
    if isinstance(text, timedelta):
        return text
    if isinstance(text, int | float) and not isinstance(text, bool):
        return timedelta(seconds=float(text))
    if not isinstance(text, str):
        raise ValueError(f"expected a duration such as '6h', got {type(text).__name__}")
    cleaned = text.strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(\.\d+)?", cleaned):
        return timedelta(seconds=float(cleaned))
    pos, total = 0, 0.0
    for match in _PART.finditer(cleaned):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not cleaned or pos != len(cleaned):
        raise ValueError(
            f"invalid duration {text!r}: use a number with a unit, e.g. 90s, 30m, 6h, 1h30m, 7d"
        )
    return timedelta(seconds=total)


def format_duration(value: timedelta | float) -> str:
    """Render a duration compactly, e.g. ``1h30m``; the inverse of :func:`parse_duration`."""
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds <= 0:
        return "0s"
    if seconds >= 60:
        seconds = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{int(count)}{unit}")
    if seconds:
        parts.append(f"{round(seconds, 1):g}s")
    return "".join(parts)
