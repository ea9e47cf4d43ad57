"""Durations and moments in config files, as integer nanoseconds."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any

from pydantic import BeforeValidator, SerializerFunctionWrapHandler, TypeAdapter, ValidationError, WrapSerializer

__all__ = ["Moment", "moment_ns", "parse_duration", "sub_microsecond_digits", "to_ns"]

#: The moments a run config's ``data.start``/``data.end`` take (naive = UTC, a date its midnight UTC).
_MOMENT: TypeAdapter[datetime | date] = TypeAdapter(datetime | date)

#: The fraction of a second of an ISO-8601 time; pydantic's datetime keeps its first 6 digits (the microsecond).
_FRACTION = re.compile(r":\d{2}[.,](\d+)")
#: The seconds of a time as pydantic writes it (``T00:00:00``) and their fraction if any (``.123456``).
_SECONDS = re.compile(r"(T\d{2}:\d{2}:\d{2})(\.\d+)?")
#: A date alone (``2024-01-01``), as a written config holds a date field's value.
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
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
    """Nanoseconds since the epoch of a datetime (naive = UTC; a ``pandas.Timestamp``'s nanoseconds
    included) or a date (its midnight UTC)."""
    if not isinstance(moment, datetime):
        moment = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    elif moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    micro = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return micro * 1_000 + getattr(moment, "nanosecond", 0)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def sub_microsecond_digits(value: Any) -> str:
    """The digits of a second past the microsecond that the ISO-8601 text ``value`` gives and a ``datetime``
    cannot hold (``'...T00:00:00.123456789Z'`` gives ``'789'``; ``""``: none, or not text); trailing zeros are
    dropped, as they change nothing."""
    if not isinstance(value, str):
        return ""
    fraction = _FRACTION.search(value)
    return "" if fraction is None else fraction.group(1)[6:].rstrip("0")


def _keep_nanoseconds(value: Any) -> Any:
    """``value``, the ``date`` of a date's text, or the ``pandas.Timestamp`` of an ISO-8601 text finer than a
    microsecond, which pydantic's datetime would cut to the microsecond (a ``Timestamp`` is a datetime: the field
    keeps it as it is).

    Raises
    ------
    ValueError
        A time finer than a nanosecond.
    """
    if isinstance(value, str) and _DATE.fullmatch(value):
        return date.fromisoformat(value)  # pydantic would read the text as a datetime, written back with a time
    if not (digits := sub_microsecond_digits(value)):
        return value
    try:
        moment = _MOMENT.validate_python(value)
    except ValidationError:
        return value  # the field's own error names it
    if len(digits) > 3:
        raise ValueError(f"a time finer than a nanosecond ({6 + len(digits)} digits after the second), got {value!r}")
    import pandas as pd

    return pd.Timestamp(moment) + pd.Timedelta(int(digits.ljust(3, "0")), "ns")


def _moment_text(value: datetime | date, handler: SerializerFunctionWrapHandler) -> str:
    """pydantic's ISO-8601 text of ``value``, with the digits of its nanoseconds if it has any."""
    text = handler(value)
    nanosecond = getattr(value, "nanosecond", 0)
    if not nanosecond or not isinstance(value, datetime):
        return text
    return _SECONDS.sub(lambda m: f"{m[1]}.{value.microsecond:06d}{nanosecond:03d}", text, count=1)


#: A moment in a config field typed as a datetime (naive = UTC) or a date (its midnight UTC), kept to the
#: nanosecond: a time finer than a microsecond (an ISO text or a ``pandas.Timestamp`` with nanoseconds) is
#: held as a ``pandas.Timestamp`` and written back (``model_dump(mode="json")``) with all its digits.
#: :func:`to_ns` gives its nanoseconds.
Moment = Annotated[datetime | date, BeforeValidator(_keep_nanoseconds), WrapSerializer(_moment_text, when_used="json")]


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
        return to_ns(_MOMENT.validate_python(_keep_nanoseconds(value)))
    except ValidationError:
        raise ValueError(f"expected epoch nanoseconds or an ISO-8601 date or time (2020-01-01, 2020-01-01T04:00:00Z), "
                         f"got {value!r}") from None
