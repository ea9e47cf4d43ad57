"""Durations and moments in config files, as integer nanoseconds."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

__all__ = ["parse_duration", "to_ns"]

_DURATION = re.compile(r"^\s*(\d+)\s*(ns|us|ms|s|m|h|d|w)\s*$")
_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
    "w": 604_800_000_000_000,
}


def parse_duration(value: str | int) -> int:
    """Parse ``"30s"``, ``"1m"`` (minute), ``"4h"``, ``"1d"``, ``"1w"`` or an int of ns into ns.

    Raises
    ------
    ValueError
        If the value is not a positive duration in one of those forms.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '1h' or '15m', got {value!r}")
    if isinstance(value, int):
        ns = value
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise ValueError(f"expected a duration like '1h', '15m' or '1d', got {value!r}")
        ns = int(match.group(1)) * _UNIT_NS[match.group(2)]
    if ns <= 0:
        raise ValueError(f"duration must be > 0, got {value!r}")
    return ns


def to_ns(moment: datetime | date) -> int:
    """Nanoseconds since the epoch of a datetime (naive = UTC) or a date (its midnight UTC)."""
    if not isinstance(moment, datetime):
        moment = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    elif moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000
