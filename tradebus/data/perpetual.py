"""Mark-price and funding-rate histories from files, as ``MarkPrice`` / ``FundingRate`` messages.

A backtest of perpetuals replays them next to its bars or trades
(:meth:`Kernel.feed_perpetual_data`). Files are Feather (freqtrade's futures test data),
Parquet or CSV, one instrument each, with a time column ``date`` (datetime, or ISO text in a
CSV, or Unix time in s, ms, µs or ns, the unit found as every import finds it) or ``ts_event`` (ns
since the epoch) and:

* mark prices: ``mark_price``, or OHLC mark bars (freqtrade ``*-mark.feather``) whose time is
  the bar's **open**: the open price is the mark at that instant, so each bar gives one
  ``MarkPrice`` stamped at its open time (the close, known only at the bar's end, is not
  used: it is the next bar's open);
* funding rates: ``rate``, or freqtrade's ``*-funding_rate.feather`` whose rate is in ``open``;
  each row is a settled funding at its time (``next_funding_ns`` = the row's time).

Times must increase. A CSV ``date`` that is not ISO time (``2021-11-15T06:00:00+00:00``), a
``ts_event`` or value that is not a number, a missing value (an empty cell, a null), a value
that is not finite (NaN, ±inf, in any of the three formats), a time not after the row before it
and an impossible value are refused naming the file and the row (1 = the first row of data), as
every import refuses them: a row is never dropped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.parquet as pq

from tradebus.data.ingest import to_float, to_ns
from tradebus.engine.clock import iso_ns
from tradebus.engine.messages import FundingRate, MarkPrice
from tradebus.engine.perpetuals import funding_rate_problem
from tradebus.errors import DataError

__all__ = ["mark_gaps", "marks_in_window", "read_funding_rates", "read_mark_prices", "row_gaps"]

_ISO = "%Y-%m-%dT%H:%M:%S%z"
#: The units :func:`row_gaps` rounds a file's interval to: the largest one not above it (s, ms, ns). Not
#: the minute: a file of marks 90 s apart would be checked at 2 min, and one missing row (180 s) missed.
_INTERVAL_ROUNDING = (1_000_000_000, 1_000_000, 1)


def _read(path: Path) -> pa.Table:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        if path.suffix == ".feather":
            return feather.read_table(path)
        if path.suffix == ".parquet":
            return pq.read_table(path)
        if path.suffix == ".csv":
            return pacsv.read_csv(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: unreadable: {exc}") from None
    raise DataError(f"{path}: expected a .feather, .parquet or .csv file")


def _times(table: pa.Table, path: Path) -> np.ndarray:
    if "ts_event" in table.column_names:
        ts = to_ns(str(path), table.column("ts_event").combine_chunks(), "ts_event", "ns")
    elif "date" in table.column_names:
        col = table.column("date")
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            parsed = pc.strptime(col, format=_ISO, unit="ns", error_is_null=True)
            bad = pc.and_(pc.is_null(parsed), pc.is_valid(col)).to_numpy(zero_copy_only=False)
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise DataError(
                    f"{path} row {row + 1}: date {col[row].as_py()!r} is not an ISO time with its offset "
                    "(like 2021-11-15T06:00:00+00:00)"
                )
            col = pc.cast(parsed, pa.timestamp("ns", "UTC"))
        ts = to_ns(str(path), col.combine_chunks(), "date")
    else:
        raise DataError(f"{path}: no time column ('date' or 'ts_event') in {table.column_names}")
    behind = np.flatnonzero(ts[1:] <= ts[:-1])
    if behind.size:
        row = int(behind[0]) + 2
        raise DataError(
            f"{path} row {row}: times must strictly increase ({iso_ns(ts[row - 1])} after row {row - 1}'s {iso_ns(ts[row - 2])})"
        )
    return ts


def _values(table: pa.Table, names: tuple[str, ...], path: Path) -> np.ndarray:
    for name in names:
        if name in table.column_names:
            return to_float(str(path), table.column(name).combine_chunks(), name)
    raise DataError(f"{path}: no value column (one of {list(names)}) in {table.column_names}")


def read_mark_prices(path: str | Path, instrument_id: str) -> list[MarkPrice]:
    """``MarkPrice`` messages of a file (module docstring); ``index_price`` is NaN.

    Raises
    ------
    DataError
        Missing or unreadable file, missing columns, times not increasing, a missing or non-finite
        mark, or a mark <= 0.
    """
    path = Path(path)
    table = _read(path)
    ts = _times(table, path)
    marks = _values(table, ("mark_price", "open"), path)
    out: list[MarkPrice] = []
    for row, (t, mark) in enumerate(zip(ts.tolist(), marks.tolist(), strict=True), start=1):
        if not math.isfinite(mark):
            raise DataError(f"{path} row {row}: mark price {mark} at {iso_ns(t)} is not a finite number")
        if mark <= 0.0:
            raise DataError(f"{path} row {row}: mark price {mark} at {iso_ns(t)} must be > 0")
        out.append(MarkPrice(instrument_id, t, t, mark, math.nan))
    return out


def marks_in_window(marks: Sequence[MarkPrice], start_ns: int | None, end_ns: int | None) -> list[MarkPrice]:
    """The marks of one instrument (in time order) that value its positions in a window ``[start_ns, end_ns)``.

    Those stamped in the window, led by the mark in force at ``start_ns`` (the last one before
    it) when none is stamped at ``start_ns``: a run starting between two marks is valued at the
    earlier one from its start, not at its bars or trades until the next. That mark keeps its
    ``ts_event`` and is delivered at the start (``ts_init = start_ns``). ``None``: the window
    is open on that side.
    """
    out = [m for m in marks if (start_ns is None or m.ts_init >= start_ns) and (end_ns is None or m.ts_init < end_ns)]
    if start_ns is None or (out and out[0].ts_init == start_ns):
        return out
    before = [m for m in marks if m.ts_init < start_ns]
    if not before:
        return out
    last = before[-1]
    return [MarkPrice(last.instrument_id, last.ts_event, start_ns, last.mark_price, last.index_price), *out]


def read_funding_rates(path: str | Path, instrument_id: str) -> list[FundingRate]:
    """``FundingRate`` messages of a file, each settled at its own time (module docstring).

    Raises
    ------
    DataError
        Missing or unreadable file, missing columns, times not increasing, a missing or non-finite
        rate, or a rate beyond :data:`~tradebus.engine.perpetuals.MAX_FUNDING_RATE`.
    """
    path = Path(path)
    table = _read(path)
    ts = _times(table, path)
    rates = _values(table, ("rate", "funding_rate", "open"), path)
    out: list[FundingRate] = []
    for row, (t, rate) in enumerate(zip(ts.tolist(), rates.tolist(), strict=True), start=1):
        problem = funding_rate_problem(rate)
        if problem is not None:
            raise DataError(f"{path} row {row}: funding rate {rate} at {iso_ns(t)} {problem}")
        out.append(FundingRate(instrument_id, t, t, rate, t))
    return out


def row_gaps(
    rows: Sequence[MarkPrice | FundingRate], start_ns: int | None, end_ns: int | None
) -> tuple[int, list[tuple[int, int]]]:
    """The interval of one instrument's mark or funding rows and the stretches of a window where a row is missing.

    The interval is the median spacing of ``rows`` (all rows of a file, in time order), to the
    second (the millisecond under a second): the file's own cadence, 90 s for marks 90 s apart. A stretch is missing rows when the window's start (inclusive) is more than the
    interval before its first row, its end (exclusive) more than the interval after its last,
    or two rows are more than 1.5 intervals apart (a periodic row fell there; 1 % of the
    interval is left for the venues' late stamps, ``00:00:00.017``). A window with no row is
    one stretch when longer than the interval. ``None``: the window is open on that side.

    Returns
    -------
    tuple
        ``(interval_ns, [(from_ns, to_ns), ...])``; ``(0, [])`` for fewer than two rows or rows mostly sharing their time.
    """
    times = [r.ts_event for r in rows]
    if len(times) < 2:
        return 0, []
    median = float(np.median(np.diff(np.asarray(times, dtype=np.int64))))
    if median < 1.0:  # most rows share their time: no period to check against
        return 0, []
    unit = next(u for u in _INTERVAL_ROUNDING if median >= u)
    interval = round(median / unit) * unit
    inside = [t for t in times if (start_ns is None or t >= start_ns) and (end_ns is None or t < end_ns)]
    slack = interval * 1.01
    gaps: list[tuple[int, int]] = []
    if not inside:
        if start_ns is not None and end_ns is not None and end_ns - start_ns > slack:
            gaps.append((start_ns, end_ns))
        return interval, gaps
    if start_ns is not None and inside[0] - start_ns > slack:
        gaps.append((start_ns, inside[0]))
    gaps.extend((a, b) for a, b in zip(inside, inside[1:], strict=False) if b - a > 1.5 * interval)
    if end_ns is not None and end_ns - inside[-1] > slack:
        gaps.append((inside[-1], end_ns))
    return interval, gaps


def mark_gaps(
    marks: Sequence[MarkPrice], start_ns: int | None, end_ns: int | None
) -> tuple[int, list[tuple[int, int]]]:
    """:func:`row_gaps` of mark rows, counting the mark in force at ``start_ns`` (:func:`marks_in_window`).

    A window starting in a stretch without rows is valued from its start at the mark before
    that stretch, which stands still: the part of that stretch within the window is a gap,
    however short, as is any other. Returns as :func:`row_gaps`, stretches within the window.
    """
    if start_ns is None:
        return row_gaps(marks, start_ns, end_ns)
    before = [m.ts_init for m in marks if m.ts_init < start_ns]
    interval, gaps = row_gaps(marks, before[-1] if before else start_ns, end_ns)
    return interval, [(max(a, start_ns), b) for a, b in gaps if b > start_ns]
