"""Durations and moments in config files, as integer nanoseconds."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any

from pydantic import BeforeValidator, TypeAdapter, ValidationError

__all__ = ["Moment", "moment_ns", "parse_duration", "sub_microsecond_digits", "to_ns"]

#: The moments a run config's ``data.start``/``data.end`` take (naive = UTC, a date its midnight UTC).
_MOMENT: TypeAdapter[datetime | date] = TypeAdapter(datetime | date)

#: The fraction of a second of an ISO-8601 time; pydantic's datetime keeps its first 6 digits (the microsecond).
_FRACTION = re.compile(r":\d{2}[.,](\d+)")
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


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def sub_microsecond_digits(value: Any) -> str:
    """The digits of a second past the microsecond that ``value`` gives and a ``datetime`` cannot hold (``""``: none).

    ``value`` is the text of an ISO-8601 time (``'...T00:00:00.123456789Z'`` gives ``'789'``) or a
    ``pandas.Timestamp`` (its ``nanosecond``); trailing zeros are dropped, as they change nothing.
    """
    if isinstance(value, str):
        fraction = _FRACTION.search(value)
        return "" if fraction is None else fraction.group(1)[6:].rstrip("0")
    nanosecond = getattr(value, "nanosecond", 0)
    return f"{nanosecond:03d}".rstrip("0") if isinstance(nanosecond, int) else ""


def _whole_microseconds(value: Any) -> Any:
    """``value`` unless it gives a time finer than a microsecond, which a ``datetime`` field would drop unsaid."""
    if digits := sub_microsecond_digits(value):
        raise ValueError(f"{str(value)!r} is {int(digits.ljust(3, '0'))} ns past a whole microsecond, which this "
                         "field (a datetime) cannot hold and would drop: give the time to the microsecond")
    return value


#: A moment in a config field typed as a datetime (naive = UTC) or a date (its midnight UTC): a time
#: finer than a microsecond (an ISO text or a ``pandas.Timestamp`` with nanoseconds) is refused naming the
#: field, where pydantic would drop the digits. :func:`to_ns` gives its nanoseconds.
Moment = Annotated[datetime | date, BeforeValidator(_whole_microseconds)]


def moment_ns(value: Any) -> Any:
    """Nanoseconds since the epoch of an ISO-8601 date or datetime (text, or as YAML reads it), read as
    a run config's ``data.start`` is (naive = UTC, a date its midnight UTC); a number (or its text: pydantic
    would read ``'1577836800.0'`` as Unix seconds) is taken as nanoseconds already and returned as it is, as is
    any other value, for the field's type to read or refuse.

    The digits of a second past the microsecond, which pydantic drops, are kept (to the nanosecond).

    Raises
    ------
    ValueError
        Text that is neither a number nor an ISO-8601 date or datetime, or a time finer than a nanosecond.
    """
    if isinstance(value, str) and _is_number(value):
        return value
    if not isinstance(value, str | date):  # datetime is a date
        return value
    try:
        ns = to_ns(_MOMENT.validate_python(value))
    except ValidationError:
        raise ValueError(f"expected epoch nanoseconds or an ISO-8601 date or time (2020-01-01, 2020-01-01T04:00:00Z), "
                         f"got {value!r}") from None
    if len(digits := sub_microsecond_digits(value)) > 3:
        raise ValueError(f"a time finer than a nanosecond ({6 + len(digits)} digits after the second), got {value!r}")
    return ns + int(digits.ljust(3, "0"))
