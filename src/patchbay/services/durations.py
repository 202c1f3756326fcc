"""Durations as people type them: ``30d``, ``12h``, ``15m``, ``90s``, ``2w``, or ``1d12h``."""

from __future__ import annotations

import re
from datetime import timedelta

from patchbay.errors import InvalidInput

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_WHOLE = re.compile(r"(?:\d+[smhdw])+")
_PART = re.compile(r"(\d+)([smhdw])")
MAX_DURATION = timedelta(days=3650)


def parse_duration(text: str) -> timedelta:
    """A positive duration of at most ten years, or InvalidInput."""
    value = text.strip().lower()
    if not _WHOLE.fullmatch(value):
        raise InvalidInput(f"{text!r} is not a duration; write e.g. 30d, 12h, 15m or 90s")
    seconds = 0
    for amount, unit in _PART.findall(value):
        if len(amount) > 12:
            raise InvalidInput(f"duration {text!r} is too long (at most {MAX_DURATION.days} days)")
        seconds += int(amount) * _UNITS[unit]
    if seconds <= 0:
        raise InvalidInput(f"duration {text!r} must be longer than zero")
    if seconds > MAX_DURATION.total_seconds():
        raise InvalidInput(f"duration {text!r} is too long (at most {MAX_DURATION.days} days)")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """The shortest ``1d12h``-style spelling of a whole number of seconds."""
    seconds = int(delta.total_seconds())
    if seconds <= 0:
        return "0s"
    parts: list[str] = []
    for unit in ("d", "h", "m", "s"):
        amount, seconds = divmod(seconds, _UNITS[unit])
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts)
