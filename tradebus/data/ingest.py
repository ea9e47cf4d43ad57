"""Importers: bar and trade files -> validated tables in the catalog layout, streamed in chunks.

Supported inputs (read by :mod:`tradebus.data.sources`)
-------------------------------------------------------
* CSV (optionally ``.gz``), with or without a header. A first line none of
  whose fields is a number is a header. Without a header the columns are
  positional: bars ``time, open, high, low, close, volume[, ...ignored]`` (the
  Binance-vision kline layout); trades the Binance-vision ``trades``
  (``id, price, qty, quote_qty, time, is_buyer_maker[, is_best_match]``) or
  ``aggTrades`` (``id, price, qty, first_id, last_id, time, is_buyer_maker[, ...]``)
  layouts, told apart by the position of the boolean column. The futures archives'
  headers (``id,price,qty,quote_qty,time,is_buyer_maker``;
  ``agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker``)
  are matched by name.
* Parquet (any column names below; timestamp columns of Arrow timestamp type).
* Coinbase candles JSON (optionally ``.gz``):
  ``{"candles": [{"start", "low", "high", "open", "close", "volume"}, ...]}``,
  values as strings, ``start`` in Unix seconds (the bar OPEN time). The
  exchange API returns the newest candle first; a list that is entirely in
  descending order is reversed (logged), any other disorder is an error.

Header names are matched case-insensitively against aliases (``timestamp``,
``open_time``, ``qty``, ...); extra columns are ignored (logged at debug level).

Memory
------
A file is read, converted, validated and written one chunk at a time (4 MB of
CSV, 262,144 Parquet rows), so an import's peak memory does not grow with the
file's size. State carried from chunk to chunk: the last time and row (order and
duplicate checks), the time unit and bar interval found in the first chunk, the
last integer trade id, and the symbols seen.

One symbol per dataset
----------------------
A file with a symbol column (``symbol``, ``instrument``, ``instrument_id``,
``inst_id``, ``ticker``, ``pair``, ``product_id``) that holds more than one value
is refused, naming the column and the symbols found with their first rows,
unless ``split_by`` names that column: then each symbol's rows become a dataset
of their own (the symbol value is the catalog symbol).

Timestamps
----------
Integers/floats in s, ms, us or ns, or ISO-8601 strings (naive = UTC). With
``ts_unit="auto"`` the unit is the one under which the first value falls in
years 2000..2100; every value must then be plausible under that unit. An
explicit ``ts_unit`` (``"s"``, ``"ms"``, ``"us"``, ``"ns"``, ``"iso"``) skips
the detection but not the plausibility check.

Bars: open time -> close time
-----------------------------
A :class:`~tradebus.engine.messages.Bar` is stamped with its CLOSE time. Files
almost always give the OPEN time (Binance ``open_time``, Coinbase ``start``,
ccxt/freqtrade ``timestamp``), so by default (``bar_time="auto"``) the time column
is taken as the open time and ``ts_event = open + interval``, except when the
column is named ``ts_event`` (this package's own layout), which is already a
close time. ``bar_time="open"`` or ``"close"`` says it explicitly; the shift
applied is returned in :class:`ImportResult` and recorded in the manifest's notes.
``interval`` is given (``"4h"``, ``"1m"``, ns int) or detected as the most
frequent spacing between consecutive bars of the first chunk (ties -> the
smallest); a spacing shorter than the interval (overlapping bars) is an error.
``ts_init`` equals ``ts_event`` (historical data has no receive time).

Validation
----------
Every error is a :class:`~tradebus.errors.DataError` naming the file, the
1-based data row (header not counted; for JSON the candle's position) and the
field, e.g. ``bars.csv row 17: high 99.0 < low 100.0``: missing columns,
unparsable values, implausible timestamps, unsorted or duplicate bar times
(trades may share a timestamp), NaN/inf/zero/negative prices, ``high < low``,
open/close outside ``[low, high]`` (beyond a relative 1e-9 float tolerance),
NaN/inf/negative volume, non-positive trade size, unknown aggressor values,
duplicate trade ids (ids that are increasing integers, as every exchange's are,
are checked over the whole file in constant memory; other ids within each chunk
and against the previous chunk). The "(and N more invalid rows)" count covers the
chunk of the first error.
"""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
import dataclasses
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from loguru import logger

from tradebus.data.catalog import (
    BAR_SCHEMA,
    TRADE_SCHEMA,
    Catalog,
    DatasetExists,
    DatasetWriter,
    Manifest,
    Period,
    check_name,
)
from tradebus.data.quality import QualityCheck
from tradebus.data.sources import DEFAULT_BLOCK_BYTES, Frame, Source, column_key, is_number, open_source
from tradebus.engine.clock import iso_ns
from tradebus.errors import DataError

__all__ = [
    "SYMBOL_COLUMNS",
    "BarStream",
    "BarTime",
    "ImportResult",
    "TradeStream",
    "TsUnit",
    "check_given_interval",
    "detect_interval",
    "format_interval",
    "import_file",
    "bars_dataset",
    "import_path",
    "iter_bars",
    "iter_trades",
    "parse_interval",
    "read_bars",
    "read_trades",
    "split_contract_size",
    "to_float",
    "to_ns",
    "validate_bars",
    "validate_trades",
]

TsUnit = Literal["auto", "s", "ms", "us", "ns", "iso"]
BarTime = Literal["auto", "open", "close"]

_NS_PER: dict[str, int] = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
_INTERVAL_UNITS: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "min": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
    "w": 604_800_000_000_000,
}
_UNITS_SAID = ", ".join(_INTERVAL_UNITS)
_INTERVAL_RE = re.compile(r"^\s*(\d+)\s*([a-zA-Z]+)\s*$")
# Plausible times: [2000-01-01, 2100-01-01) UTC, in ns.
TS_MIN_NS = 946_684_800_000_000_000
TS_MAX_NS = 4_102_444_800_000_000_000
_PRICE_RTOL = 1e-9

_TIME_ALIASES = (
    "ts_event",
    "open_time",
    "opentime",
    "start",
    "timestamp",
    "time",
    "datetime",
    "date",
    "trade_time_ms",
    "trade_time",
    "transact_time",
    "created_time",
    "ts",
    "t",
)
_BAR_ALIASES: dict[str, tuple[str, ...]] = {
    "open": ("open", "o"),
    "high": ("high", "h"),
    "low": ("low", "l"),
    "close": ("close", "c"),
    "volume": ("volume", "vol", "v", "base_volume"),
}
_TRADE_ALIASES: dict[str, tuple[str, ...]] = {
    "price": ("price", "p"),
    "size": ("size", "qty", "quantity", "amount", "q", "volume"),
    "trade_id": ("trade_id", "id", "tid", "agg_trade_id", "trdmatchid"),
}
SYMBOL_COLUMNS = ("symbol", "instrument", "instrument_id", "instrument_name", "inst_id", "instid", "ticker", "pair",
                  "product_id")
"""Column names taken as a symbol column (a file may hold one symbol unless split)."""
_MAX_SYMBOLS = 1000
_QUALITY_IN_FLIGHT = 2  # chunks handed to the quality thread and not yet checked (bounds the memory they hold)
# Rows gathered before the bar interval is detected (all of a smaller file), so the
# detection does not depend on how the file is cut into chunks.
_DETECT_ROWS = 4096
_AGGRESSOR_ALIASES = ("aggressor", "side", "taker_side", "aggressor_side")
_MAKER_ALIASES = ("is_buyer_maker", "buyer_maker", "isbuyermaker", "m")
_BUY_WORDS = ("buy", "b", "bid", "1", "+1")
_SELL_WORDS = ("sell", "s", "ask", "-1")
_UNKNOWN_WORDS = ("", "0", "unknown", "none", "n/a")
_TRUE_WORDS = ("true", "t", "1", "yes")
_FALSE_WORDS = ("false", "f", "0", "no")


# --------------------------------------------------------------------------- intervals


def parse_interval(value: str | int | np.integer, *, ints: bool = True) -> int:
    """Return an interval in ns from ``"4h"``, ``"1m"``, ``"15min"``, ``"1d"`` or an int of ns.

    ``"m"`` is minutes; ``"M"`` (months in ccxt and Binance: ``1M``) is refused, months
    being no fixed interval. ``ints`` false (a command-line option, which is text): a refusal does not offer an int
    of ns, a form only a config's value can take.

    Raises
    ------
    DataError
        If the value is not a positive interval, or is in months.
    """
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if value <= 0:
            raise DataError(f"interval must be > 0 ns, got {value}")
        return int(value)
    if isinstance(value, str):
        match = _INTERVAL_RE.match(value)
        if match and match.group(2) == "M":
            raise DataError(f"interval {value!r} is in months (1M is a month for ccxt and Binance), which are no fixed "
                            f"interval and are not supported; minutes are '{match.group(1)}m'")
        if match and match.group(2).lower() in _INTERVAL_UNITS and int(match.group(1)) > 0:
            return int(match.group(1)) * _INTERVAL_UNITS[match.group(2).lower()]
    raise DataError(f"interval {value!r} is not understood; expected a whole number and a unit ({_UNITS_SAID}), e.g. "
                    f"'1m', '15m', '4h', '1d'" + (", or an integer of ns" if ints else ""))


def format_interval(interval_ns: int) -> str:
    """Return the shortest label of an interval in ns (``14_400_000_000_000`` -> ``"4h"``, a week -> ``"1w"``)."""
    for unit in ("w", "d", "h", "m", "s", "ms", "us"):
        if interval_ns % _INTERVAL_UNITS[unit] == 0:
            return f"{interval_ns // _INTERVAL_UNITS[unit]}{unit}"
    return f"{interval_ns}ns"


def bars_dataset(catalog: Catalog, venue: str, market: str, symbol: str, interval_ns: int) -> str:
    """Return the name of the dataset of ``interval_ns`` bars: ``bars_<format_interval>`` (``bars_1w``).

    Catalogs written before weeks had a label of their own named a week ``bars_7d``: such a
    dataset keeps its name (it is resumed or appended to) while no ``bars_1w`` exists beside it.
    """
    name = f"bars_{format_interval(interval_ns)}"
    if interval_ns % _INTERVAL_UNITS["w"] == 0 and not catalog.exists(venue, market, symbol, name):
        legacy = f"bars_{interval_ns // _INTERVAL_UNITS['d']}d"
        if catalog.exists(venue, market, symbol, legacy):
            return legacy
    return name


def detect_interval(ts: np.ndarray) -> int:
    """Return the most frequent positive spacing of sorted timestamps (ties -> smallest).

    Raises
    ------
    DataError
        If there are fewer than two distinct timestamps.
    """
    steps = np.diff(ts)
    steps = steps[steps > 0]
    if steps.size == 0:
        raise DataError("cannot detect the bar interval from fewer than two distinct timestamps; pass interval=")
    values, counts = np.unique(steps, return_counts=True)
    return int(values[np.argmax(counts)])


# --------------------------------------------------------------------------- helpers


def _v(value: object) -> str:
    """Format a cell value for an error message (numpy scalars as plain Python values)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _pick(frame: Frame, aliases: Sequence[str], field: str, *, required: bool = True) -> str | None:
    for alias in aliases:
        if alias in frame.columns:
            return alias
    if required:
        raise DataError(f"{frame.name}: missing column {field!r} (accepted names: {list(aliases)}); got {list(frame.columns)}")
    return None


def _time_column(frame: Frame, ts_column: str | None) -> str:
    if ts_column is not None:
        key = column_key(ts_column)
        if key not in frame.columns:
            raise DataError(f"{frame.name}: ts_column {ts_column!r} not found; got {list(frame.columns)}")
        return key
    for alias in _TIME_ALIASES:
        if alias in frame.columns:
            return alias
    raise DataError(f"{frame.name}: missing time column (accepted names: {list(_TIME_ALIASES)}); got {list(frame.columns)}")


def to_float(frame_name: str, array: pa.Array, field: str, rows: np.ndarray | None = None) -> np.ndarray:
    """A numeric column as float64, text cells parsed (as :func:`to_ns` for times).

    Raises
    ------
    DataError
        Naming the file, row and field of the first cell that is not a number, or is missing.
    """
    return _to_float(Frame(frame_name, {}, rows=rows), array, field)


def _to_float(frame: Frame, array: pa.Array, field: str) -> np.ndarray:
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        trimmed = pc.utf8_trim_whitespace(array)
        try:
            array = pc.cast(trimmed, pa.float64())
        except pa.ArrowInvalid:
            text = trimmed.to_pylist()
            index = next(i for i, t in enumerate(text) if t is not None and not is_number(t))
            raise frame.error(index, f"{field} {_v(text[index])} is not a number") from None
    elif not (pa.types.is_floating(array.type) or pa.types.is_integer(array.type) or pa.types.is_decimal(array.type)):
        raise DataError(f"{frame.name}: column {field} has type {array.type}, expected numbers")
    if array.null_count:
        index = int(np.flatnonzero(array.is_null().to_numpy(zero_copy_only=False))[0])
        raise frame.error(index, f"{field} is missing")
    return np.asarray(pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def _check_plausible(frame: Frame, ns: np.ndarray, field: str, unit: str, raw: Callable[[int], object]) -> None:
    bad = np.flatnonzero((ns < TS_MIN_NS) | (ns >= TS_MAX_NS))
    if bad.size:
        i = int(bad[0])
        raise frame.error(i, f"{field} {_v(raw(i))} is not a plausible time as {unit} (expected years 2000..2100)")


def _iso_to_ns(frame: Frame, text: pa.Array, field: str) -> np.ndarray:
    series = pd.Series(text.to_pylist(), dtype="object")
    parsed = pd.to_datetime(series, utc=True, format="ISO8601", errors="coerce")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if bad.size:
        i = int(bad[0])
        raise frame.error(i, f"{field} {series.iloc[i]!r} is not a Unix time or an ISO-8601 date")
    lo, hi = pd.Timestamp(TS_MIN_NS, unit="ns", tz="UTC"), pd.Timestamp(TS_MAX_NS, unit="ns", tz="UTC")
    out = np.flatnonzero(((parsed < lo) | (parsed >= hi)).to_numpy())
    if out.size:
        i = int(out[0])
        raise frame.error(i, f"{field} {series.iloc[i]!r} is not a plausible time (expected years 2000..2100)")
    return parsed.dt.tz_convert(None).dt.as_unit("ns").to_numpy().astype(np.int64)


def to_ns(frame_name: str, array: pa.Array, field: str, ts_unit: TsUnit = "auto", rows: np.ndarray | None = None) -> np.ndarray:
    """Convert a time column to int64 ns UTC, detecting the unit (see module docstring).

    Parameters
    ----------
    frame_name
        File name used in error messages.
    array
        Arrow array of integers, floats, strings (numeric or ISO-8601) or timestamps.
    field
        Column name used in error messages.
    ts_unit
        ``"auto"`` or a fixed unit ``"s"``/``"ms"``/``"us"``/``"ns"``/``"iso"``.
    rows
        1-based file row of each element (default: position + 1).

    Raises
    ------
    DataError
        Naming the file, row and field of the first unparsable or implausible value.
    """
    return _to_ns_unit(Frame(frame_name, {}, rows=rows), array, field, ts_unit)[0]


def _to_ns_unit(frame: Frame, array: pa.Array, field: str, ts_unit: str) -> tuple[np.ndarray, str]:
    """:func:`to_ns` on one chunk; also return the unit used, to hold it for the next chunks."""
    frame_name = frame.name
    if ts_unit not in ("auto", "iso", *_NS_PER):
        raise DataError(f"ts_unit {ts_unit!r} is not one of auto, s, ms, us, ns, iso")
    if array.null_count:
        index = int(np.flatnonzero(array.is_null().to_numpy(zero_copy_only=False))[0])
        raise frame.error(index, f"{field} is missing")
    if len(array) == 0:
        return np.empty(0, dtype=np.int64), ts_unit
    if pa.types.is_timestamp(array.type) or pa.types.is_date(array.type):
        if ts_unit not in ("auto", "iso"):
            raise DataError(f"{frame_name}: {field} is already a {array.type} column; ts_unit={ts_unit!r} does not apply")
        ns = pc.cast(pc.cast(array, pa.timestamp("ns")), pa.int64()).to_numpy().astype(np.int64)
        _check_plausible(frame, ns, field, "timestamp", lambda i: str(array[i]))
        return ns, ts_unit
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        text = pc.utf8_trim_whitespace(array)
        if ts_unit == "iso":
            return _iso_to_ns(frame, text, field), "iso"
        try:
            array = pc.cast(text, pa.int64())
        except pa.ArrowInvalid:
            try:
                array = pc.cast(text, pa.float64())
            except pa.ArrowInvalid:
                values = text.to_pylist()
                # A column whose first time is a number holds Unix times: the cell that is not one is the error.
                if ts_unit != "auto" or is_number(values[0]):
                    index = next(i for i, t in enumerate(values) if not is_number(t))
                    unit = f"ts_unit={ts_unit!r}" if ts_unit != "auto" else "the column holds Unix times"
                    raise frame.error(index, f"{field} {_v(values[index])} is not a number ({unit})") from None
                return _iso_to_ns(frame, text, field), "iso"
    elif ts_unit == "iso":
        raise DataError(f"{frame_name}: {field} is numeric; ts_unit='iso' needs strings")
    if not (pa.types.is_integer(array.type) or pa.types.is_floating(array.type)):
        raise DataError(f"{frame_name}: column {field} has type {array.type}, expected a time")
    values = array.to_numpy(zero_copy_only=False)
    if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
        index = int(np.flatnonzero(~np.isfinite(values))[0])
        raise frame.error(index, f"{field} {_v(values[index])} is not a time")
    unit = ts_unit
    if unit == "auto":
        first = float(values[0])
        unit = next((u for u, f in _NS_PER.items() if TS_MIN_NS <= first * f < TS_MAX_NS), "")
        if not unit:
            raise frame.error(
                0,
                f"{field} {_v(values[0])} is not a plausible Unix time in s, ms, us or ns (years 2000..2100); pass ts_unit=",
            )
    factor = _NS_PER[unit]
    if values.dtype.kind == "f":
        # A float64 holds today's time in ns only to ~256 ns: fractional times (Bybit's seconds with four
        # decimals) are rounded to the microsecond, which a float64 holds exactly, then scaled.
        micros = np.rint(values * (factor / 1000.0)) if factor >= 1000 else values / 1000.0
        ok = (micros >= TS_MIN_NS // 1000) & (micros < TS_MAX_NS // 1000)
        ns = np.where(ok, micros, 0).astype(np.int64) * 1000 if factor >= 1000 else np.where(
            ok, np.rint(values), 0).astype(np.int64)
    else:
        wide = values.astype(np.int64)
        limit = TS_MAX_NS // factor
        ok = (wide >= 0) & (wide < limit)
        ns = np.where(ok, wide, 0) * factor
    _check_plausible(frame, np.where(ok, ns, 0), field, unit, lambda i: values[i].item())
    return ns, unit


# --------------------------------------------------------------------------- validation


def _first(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


def _raise_first(frame: Frame, checks: Iterable[tuple[np.ndarray, Callable[[int], str]]]) -> None:
    """Raise for the earliest row failing any check (ties: the first check listed)."""
    best: tuple[int, Callable[[int], str]] | None = None
    total = None
    for mask, message in checks:
        index = _first(mask)
        total = mask if total is None else (total | mask)
        if index is not None and (best is None or index < best[0]):
            best = (index, message)
    if best is not None and total is not None:
        more = int(np.count_nonzero(total)) - 1
        suffix = f" (and {more} more invalid row{'s' if more != 1 else ''})" if more > 0 else ""
        raise frame.error(best[0], best[1](best[0]) + suffix)


def _earlier_row(frame: Frame, i: int, prev_row: int | None, prev_name: str | None) -> str:
    """Name the row a time went back from: row ``i`` of ``frame`` (``-1``: ``prev_row`` of file ``prev_name``).

    "the previous row's" when it is the line before, else its row (and file): the rows of one
    symbol of a file split by symbol need not be adjacent.
    """
    before = frame.row(i) if i >= 0 else prev_row
    if before is None or before == frame.row(i + 1) - 1:
        return "the previous row's"
    if i < 0 and prev_name is not None and prev_name != frame.name:
        return f"{prev_name} row {before}'s"
    return f"row {before}'s"


def _check_time_order(
    frame: Frame, ts: np.ndarray, field: str, *, strict: bool, prev_ts: int | None = None, prev_row: int | None = None,
    prev_name: str | None = None,
) -> None:
    """Raise on the first time before its predecessor (``strict``: or equal to it).

    ``prev_ts``/``prev_row``/``prev_name`` are the last time, file row and file of the previous chunk.
    """
    full = ts if prev_ts is None else np.concatenate(([prev_ts], ts))
    if full.size < 2:
        return
    s = 0 if prev_ts is None else 1
    step = np.diff(full)
    back = _first(step < 0)
    dup = _first(step == 0) if strict else None
    if back is not None and (dup is None or back < dup):
        raise frame.error(
            back + 1 - s,
            f"{field} {iso_ns(full[back + 1])} is before {_earlier_row(frame, back - s, prev_row, prev_name)} {iso_ns(full[back])} "
            "(rows must be sorted by time)",
        )
    if dup is not None:
        i = dup + 1 - s
        before = frame.row(i - 1) if i > 0 else prev_row
        raise frame.error(i, f"duplicate {field} {iso_ns(full[dup + 1])} (same as row {before})")


def _bar_checks(
    o: np.ndarray, h: np.ndarray, low: np.ndarray, c: np.ndarray, v: np.ndarray
) -> list[tuple[np.ndarray, Callable[[int], str]]]:
    checks: list[tuple[np.ndarray, Callable[[int], str]]] = []
    with np.errstate(invalid="ignore"):
        for field, arr in (("open", o), ("high", h), ("low", low), ("close", c)):
            checks.append(
                (~(np.isfinite(arr) & (arr > 0)), lambda i, f=field, a=arr: f"{f} {_v(a[i])} is not a finite positive price")
            )
        checks.append((h < low, lambda i: f"high {_v(h[i])} < low {_v(low[i])}"))
        tol = _PRICE_RTOL * np.abs(h)
        for field, arr in (("open", o), ("close", c)):
            checks.append(
                (
                    (arr < low - tol) | (arr > h + tol),
                    lambda i, f=field, a=arr: f"{f} {_v(a[i])} is outside [low {_v(low[i])}, high {_v(h[i])}]",
                )
            )
        checks.append((~np.isfinite(v), lambda i: f"volume {_v(v[i])} is not a finite number"))
        checks.append((v < 0, lambda i: f"volume {_v(v[i])} is negative"))
    return checks


def validate_bars(table: pa.Table, name: str, rows: np.ndarray | None = None, *, distinct_times: bool = True) -> None:
    """Check a bar table in the stored layout; raise on the first bad row.

    Parameters
    ----------
    table
        Columns ``ts_event, ts_init, open, high, low, close, volume``.
    name
        File (or dataset) name for messages.
    rows
        1-based row number of each table row in the source (default position + 1).
    distinct_times
        Refuse a ``ts_event`` equal to the previous row's (``False``: bars closed by an amount,
        which may share a time, :attr:`~tradebus.data.catalog.Manifest.shared_times`).

    Raises
    ------
    DataError
        ``"<name> row <n>: <field> ..."`` for unsorted/duplicate ``ts_event``,
        unsorted ``ts_init``, bad prices, ``high < low``, open/close outside the
        range or bad volume.
    """
    frame = Frame(name, {}, rows=rows)
    _check_time_order(frame, table.column("ts_event").to_numpy(), "ts_event", strict=distinct_times)
    _check_time_order(frame, table.column("ts_init").to_numpy(), "ts_init", strict=False)
    cols = [np.asarray(table.column(n).to_numpy(), dtype=np.float64) for n in ("open", "high", "low", "close", "volume")]
    _raise_first(frame, _bar_checks(*cols))


def validate_trades(table: pa.Table, name: str, rows: np.ndarray | None = None) -> None:
    """Check a trade table in the stored layout; raise on the first bad row.

    Timestamps must be non-decreasing (equal allowed), prices and sizes finite
    and positive, aggressor in {-1, 0, 1}, non-empty trade ids unique.

    Raises
    ------
    DataError
        ``"<name> row <n>: <field> ..."``.
    """
    frame = Frame(name, {}, rows=rows)
    _check_time_order(frame, table.column("ts_event").to_numpy(), "ts_event", strict=False)
    _check_time_order(frame, table.column("ts_init").to_numpy(), "ts_init", strict=False)
    price = np.asarray(table.column("price").to_numpy(), dtype=np.float64)
    size = np.asarray(table.column("size").to_numpy(), dtype=np.float64)
    aggressor = table.column("aggressor").to_numpy()
    with np.errstate(invalid="ignore"):
        checks: list[tuple[np.ndarray, Callable[[int], str]]] = [
            (~(np.isfinite(price) & (price > 0)), lambda i: f"price {_v(price[i])} is not a finite positive price"),
            (~(np.isfinite(size) & (size > 0)), lambda i: f"size {_v(size[i])} is not a finite positive size"),
            (~np.isin(aggressor, (-1, 0, 1)), lambda i: f"aggressor {int(aggressor[i])} is not 1, -1 or 0"),
        ]
    _raise_first(frame, checks)
    ids = table.column("trade_id").combine_chunks()
    nonempty = pc.not_equal(ids, "")
    if pc.sum(pc.cast(nonempty, pa.int64())).as_py() > pc.count_distinct(pc.filter(ids, nonempty)).as_py():
        seen: dict[str, int] = {}
        for i, tid in enumerate(ids.to_pylist()):
            if tid and tid in seen:
                raise frame.error(i, f"duplicate trade_id {tid!r} (same as row {frame.row(seen[tid])})")
            seen[tid] = i


# --------------------------------------------------------------------------- symbols


class _Symbols:
    """The symbol column of a file: refuse a second symbol, or split the rows by symbol."""

    def __init__(self, name: str, column: str | None, split: bool) -> None:
        self.name, self.column, self.split = name, column, split
        self.first_rows: dict[str, int] = {}

    @classmethod
    def find(cls, frame: Frame, split_by: str | None) -> _Symbols:
        if split_by is not None:
            key = column_key(split_by)
            if key not in frame.columns:
                raise DataError(f"{frame.name}: --split-by column {split_by!r} not found; got {list(frame.columns)}")
            return cls(frame.name, key, True)
        return cls(frame.name, next((c for c in SYMBOL_COLUMNS if c in frame.columns), None), False)

    def groups(self, frame: Frame) -> list[tuple[str | None, Frame]]:
        if self.column is None:
            return [(None, frame)]
        values = pc.utf8_trim_whitespace(pc.cast(frame.columns[self.column], pa.string()))
        if values.null_count:
            index = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
            raise frame.error(index, f"{self.column} is missing")
        encoded = pc.dictionary_encode(values)
        labels = [str(v) for v in encoded.dictionary.to_pylist()]
        codes = encoded.indices.to_numpy(zero_copy_only=False)
        for code, label in enumerate(labels):
            if label not in self.first_rows:
                self.first_rows[label] = frame.row(int(np.argmax(codes == code)))
        if not self.split:
            if len(self.first_rows) > 1:
                found = ", ".join(f"{s!r} (row {r})" for s, r in sorted(self.first_rows.items(), key=lambda x: x[1]))
                raise DataError(
                    f"{self.name}: column {self.column!r} holds more than one symbol: {found}; import one symbol "
                    f"per file, or split the file into one dataset per symbol with --split-by {self.column}"
                )
            return [(None, frame)]
        if len(self.first_rows) > _MAX_SYMBOLS:
            raise DataError(f"{self.name}: column {self.column!r} holds more than {_MAX_SYMBOLS} symbols")
        if len(labels) == 1:
            return [(labels[0], frame)]
        return [(label, frame.take(np.flatnonzero(codes == code))) for code, label in enumerate(labels)]


def _find_symbols(frame: Frame, has_header: bool, split_by: str | None) -> _Symbols:
    if split_by is not None and not has_header:
        raise DataError(f"{frame.name}: --split-by needs a file with a header")
    return _Symbols.find(frame, split_by) if has_header else _Symbols(frame.name, None, False)


# --------------------------------------------------------------------------- bars


class BarStream:
    """Converts and validates the chunks of one bar series, carrying state between chunks."""

    def __init__(
        self,
        source: Source,
        *,
        interval: str | int | None,
        ts_column: str | None,
        ts_unit: TsUnit,
        bar_time: BarTime,
        duplicates: Literal["error", "keep_first"],
    ) -> None:
        if duplicates not in ("error", "keep_first"):
            raise DataError(f"duplicates={duplicates!r} is not 'error' or 'keep_first'")
        if bar_time not in ("auto", "open", "close"):
            raise DataError(f"bar time {bar_time!r} is not 'auto', 'open' or 'close'")
        self.source = source
        self.interval_ns = parse_interval(interval) if interval is not None else None
        self.interval_detected = False
        self.ts_column, self.unit, self.bar_time, self.duplicates = ts_column, ts_unit, bar_time, duplicates
        self.requested_unit: str = ts_unit
        self.ts_name = ""
        self.fields: dict[str, str] = {}
        self.prev_ts: int | None = None
        self.prev_row: int | None = None
        self.prev_name: str | None = None  # the file of prev_row
        self.prev_values: dict[str, float] = {}
        self.dropped = 0
        self.rows = 0
        self._pending: Frame | None = None

    @property
    def shift_ns(self) -> int:
        """What is added to the time column: the interval for open stamps, 0 for close stamps."""
        return (self.interval_ns or 0) if self.bar_time == "open" else 0

    def layout(self, frame: Frame) -> set[str]:
        """Find the time and OHLCV columns of ``frame`` (a chunk or a preview); return the names used."""
        if not self.source.has_header:
            if len(frame.columns) < 6:
                raise DataError(
                    f"{frame.name}: headerless bar CSV needs at least 6 columns (time, open, high, low, close, volume); "
                    f"got {len(frame.columns)}"
                )
            names = list(frame.columns)
            self.ts_name = names[0]
            self.fields = dict(zip(("open", "high", "low", "close", "volume"), names[1:6], strict=True))
            shown = "time"
        else:
            self.ts_name = _time_column(frame, self.ts_column)
            self.fields = {f: _pick(frame, aliases, f) for f, aliases in _BAR_ALIASES.items()}  # type: ignore[misc]
            used = {self.ts_name, *self.fields.values()}
            extra = [n for n in frame.columns if n not in used]
            if extra:
                logger.debug("{}: ignoring columns {}", frame.name, extra)
            shown = self.ts_name
        if self.bar_time == "auto":
            self.bar_time = "close" if self.ts_name == "ts_event" else "open"
        self.display_ts = shown
        return {self.ts_name, *self.fields.values()}

    def convert(self, frame: Frame) -> pa.Table:
        """Return the chunk in the stored bar layout, validated against the rows before it.

        Until the interval is known, chunks are held back (an empty table returned)
        until :data:`_DETECT_ROWS` rows are in hand or :meth:`finish` is called.
        """
        if not self.fields:
            self.layout(frame)
        if self.interval_ns is None and self.source.suffix != ".json":
            frame = frame if self._pending is None else self._pending.concat(frame)
            if len(frame) < _DETECT_ROWS:
                self._pending = frame
                return BAR_SCHEMA.empty_table()
            self._pending = None
        return self._convert(frame)

    def use(self, source: Source) -> pa.Table:
        """Go on with the next file of the same series; return the rows held back from the last one.

        The layout and the time unit are found again (a Binance archive of 2025 is in
        µs where one of 2024 is in ms); order, duplicate and interval checks go on
        across the files.
        """
        held = self.finish()
        self.source, self.fields, self.unit = source, {}, self.requested_unit
        return held

    def finish(self) -> pa.Table:
        """Convert the chunks still held back for the interval detection (end of file)."""
        pending, self._pending = self._pending, None
        return BAR_SCHEMA.empty_table() if pending is None else self._convert(pending)

    def _convert(self, frame: Frame) -> pa.Table:
        ts, self.unit = _to_ns_unit(frame, frame.columns[self.ts_name], self.display_ts, self.unit)  # type: ignore[assignment]
        cols = {f: _to_float(frame, frame.columns[name], f) for f, name in self.fields.items()}
        if self.source.suffix == ".json":
            ts = _reverse_if_descending(frame, ts, cols)
        if self.duplicates == "keep_first":
            ts, cols, frame = self._drop_duplicates(frame, ts, cols)
        _check_time_order(frame, ts, self.display_ts, strict=True, prev_ts=self.prev_ts, prev_row=self.prev_row,
                          prev_name=self.prev_name)
        if ts.size == 0:
            return BAR_SCHEMA.empty_table()
        if self.interval_ns is None:
            if ts.size < 2:
                raise DataError(f"{frame.name}: cannot detect the bar interval from a single bar; pass interval=")
            self.interval_ns = detect_interval(ts)
            self.interval_detected = True
        elif not self.interval_detected and self.prev_ts is None and ts.size > 2:
            check_given_interval(frame.name, ts, self.interval_ns, self.display_ts)
        if self.prev_ts is None:
            _refuse_close_times_less_1ms(frame, ts, self.interval_ns, self.display_ts)
        full = ts if self.prev_ts is None else np.concatenate(([self.prev_ts], ts))
        short = _first(np.diff(full) < self.interval_ns)
        if short is not None:
            s = 0 if self.prev_ts is None else 1
            raise frame.error(
                short + 1 - s,
                f"{self.display_ts} is {format_interval(int(full[short + 1] - full[short]))} after the previous bar, "
                f"shorter than the interval {format_interval(self.interval_ns)} (overlapping bars)",
            )
        _raise_first(frame, _bar_checks(cols["open"], cols["high"], cols["low"], cols["close"], cols["volume"]))
        last = ts.size - 1
        self.prev_ts, self.prev_row, self.prev_name = int(ts[last]), frame.row(last), frame.name
        self.prev_values = {n: float(a[last]) for n, a in cols.items()}
        self.rows += ts.size
        stamped = pa.array(ts + self.shift_ns)
        return pa.Table.from_arrays(
            [stamped, stamped, *(pa.array(cols[n]) for n in ("open", "high", "low", "close", "volume"))], schema=BAR_SCHEMA
        )

    def _drop_duplicates(
        self, frame: Frame, ts: np.ndarray, cols: dict[str, np.ndarray]
    ) -> tuple[np.ndarray, dict[str, np.ndarray], Frame]:
        full = ts if self.prev_ts is None else np.concatenate(([self.prev_ts], ts))
        s = 0 if self.prev_ts is None else 1
        step = np.diff(full)
        back = _first(step < 0)
        if back is not None:
            raise frame.error(
                back + 1 - s,
                f"{self.display_ts} {iso_ns(full[back + 1])} is before "
                f"{_earlier_row(frame, back - s, self.prev_row, self.prev_name)} "
                f"{iso_ns(full[back])} (rows must be sorted by time)",
            )
        dup = np.flatnonzero(step == 0) + 1 - s
        if dup.size == 0:
            return ts, cols, frame
        keep = np.ones(ts.size, dtype=bool)
        keep[dup] = False
        kept_index = np.maximum.accumulate(np.where(keep, np.arange(ts.size), -1))
        names = ("open", "high", "low", "close", "volume")
        for i in dup.tolist():
            k = int(kept_index[i])
            values = ", ".join(f"{n}={_v(cols[n][i])}" for n in names)
            if k >= 0:
                kept_row, kept = frame.row(k), ", ".join(f"{n}={_v(cols[n][k])}" for n in names)
            else:
                kept_row, kept = self.prev_row, ", ".join(f"{n}={self.prev_values[n]!r}" for n in names)
            logger.warning(
                "{} row {}: dropped duplicate bar at {} ({}); kept row {} ({})",
                frame.name, frame.row(i), pd.Timestamp(int(ts[i]), unit="ns", tz="UTC").isoformat(), values, kept_row, kept,
            )
        self.dropped += int(dup.size)
        kept_frame = Frame(frame.name, {}, rows=frame.row_numbers()[keep])
        return ts[keep], {n: a[keep] for n, a in cols.items()}, kept_frame


def check_given_interval(name: str, ts: np.ndarray, interval_ns: int, ts_name: str) -> None:
    """Refuse a given interval that no two consecutive bars of the first chunk are apart.

    Bars of 4h read as 1h would be stamped at open + 1h: their closes three hours before the
    bars closed, which is lookahead, and every bar would count as a gap of three missing ones.

    Parameters
    ----------
    name
        The file (page) the bars are from, named in the error.
    ts
        Their times (ns, sorted), open or close stamps alike.
    interval_ns
        The interval given.
    ts_name
        The time column or field, named in the error.

    Raises
    ------
    DataError
        With at least three bars, no two consecutive ones are ``interval_ns`` apart.
    """
    steps = np.diff(ts)
    steps = steps[steps > 0]
    if steps.size >= 2 and int(steps.min()) > interval_ns:
        spacing = format_interval(detect_interval(ts))
        given = format_interval(interval_ns)
        raise DataError(
            f"{name}: the interval given is {given}, but no two consecutive bars of the first {ts.size} are "
            f"{given} apart ({ts_name}: the closest {format_interval(int(steps.min()))}, most {spacing}): read as "
            f"{given} bars, {spacing} bars would be stamped before they closed and counted as gaps; give the "
            f"interval {spacing} or leave it out to detect it"
        )


_MS_NS = 1_000_000
_SECOND_NS = 1_000_000_000


def _refuse_close_times_less_1ms(frame: Frame, ts: np.ndarray, interval_ns: int, ts_name: str) -> None:
    """Refuse bar times that are all 1 ms before a whole second: Binance's ``close_time``, open + interval - 1 ms.

    Read as open times they stamp each bar an interval less 1 ms after it closed (its close at
    00:01:59.999 for the bar of 00:00-00:01), off the grid of every other dataset; read as close
    times, 1 ms before it closed.
    """
    if interval_ns >= _SECOND_NS and ts.size > 1 and not np.any((ts + _MS_NS) % _SECOND_NS):
        raise frame.error(0, f"{ts_name} {iso_ns(int(ts[0]))} is 1 ms before a whole second, as are all {ts.size} "
                             "times of the first chunk: a kline close_time (open + interval - 1 ms), not a bar's open "
                             "or close; import the bars' open_time column instead")


def _reverse_if_descending(frame: Frame, ts: np.ndarray, columns: dict[str, np.ndarray]) -> np.ndarray:
    """Coinbase API order: newest first. Reverse a strictly descending list (logged)."""
    if ts.size > 1 and np.all(np.diff(ts) < 0):
        logger.info("{}: candles are newest-first (Coinbase API order); reversing {} rows", frame.name, ts.size)
        frame.rows = np.arange(ts.size, 0, -1, dtype=np.int64)
        for key in columns:
            columns[key] = columns[key][::-1].copy()
        return ts[::-1].copy()
    return ts


# --------------------------------------------------------------------------- trades


class TradeStream:
    """Converts and validates the chunks of one trade series, carrying state between chunks."""

    def __init__(self, source: Source, *, ts_column: str | None, ts_unit: TsUnit) -> None:
        if source.suffix == ".json":
            raise DataError(f"{source.name}: JSON input is only supported for Coinbase candles (bars)")
        self.source, self.ts_column, self.unit = source, ts_column, ts_unit
        self.requested_unit: str = ts_unit
        self.names: dict[str, str | None] = {}
        self.prev_ts: int | None = None
        self.prev_row: int | None = None
        self.prev_name: str | None = None  # the file of prev_row
        self.last_int_id: int | None = None
        self.prev_ids: pa.Array | None = None
        self.prev_id_rows: np.ndarray | None = None
        self.prev_id_file = ""
        self.int_ids: np.ndarray | None = None
        self.rows = 0

    def use(self, source: Source) -> pa.Table:
        """Go on with the next file of the same series (layout and unit found again)."""
        if source.suffix == ".json":
            raise DataError(f"{source.name}: JSON input is only supported for Coinbase candles (bars)")
        self.source, self.names, self.unit = source, {}, self.requested_unit
        return TRADE_SCHEMA.empty_table()

    def finish(self) -> pa.Table:
        """Nothing is held back for trades."""
        return TRADE_SCHEMA.empty_table()

    def layout(self, frame: Frame) -> set[str]:
        """Find the time, price, size, side and id columns of ``frame`` (a chunk or a preview); return them."""
        if not self.source.has_header:
            names = list(frame.columns)
            first = [str(frame.columns[n][0]).strip().lower() for n in names] if len(frame) else []
            flags = [i for i, v in enumerate(first) if v in ("true", "false")]
            if flags and flags[0] == 5 and len(names) in (6, 7):
                time_index = 4  # trades: id, price, qty, quote_qty, time, is_buyer_maker[, is_best_match]
            elif flags and flags[0] == 6 and len(names) in (7, 8):
                time_index = 5  # aggTrades: id, price, qty, first_id, last_id, time, is_buyer_maker[, is_best_match]
            else:
                raise DataError(
                    f"{frame.name}: headerless trade CSV with {len(names)} columns is not a Binance trades/aggTrades "
                    "layout; add a header (time, price, size[, side, trade_id])"
                )
            self.names = {"time": names[time_index], "price": names[1], "size": names[2],
                          "side": names[flags[0]], "trade_id": names[0]}
            self.display = {"time": "time", "side": "is_buyer_maker"}
            return {n for n in self.names.values() if n is not None}
        side = next((a for a in (*_AGGRESSOR_ALIASES, *_MAKER_ALIASES) if a in frame.columns), None)
        self.names = {
            "time": _time_column(frame, self.ts_column),
            "price": _pick(frame, _TRADE_ALIASES["price"], "price"),
            "size": _pick(frame, _TRADE_ALIASES["size"], "size"),
            "side": side,
            "trade_id": _pick(frame, _TRADE_ALIASES["trade_id"], "trade_id", required=False),
        }
        self.display = {"time": self.names["time"] or "time", "side": side or ""}
        return {n for n in self.names.values() if n is not None}

    def convert(self, frame: Frame) -> pa.Table:
        """Return the chunk in the stored trade layout, validated against the rows before it."""
        if not self.names:
            self.layout(frame)
        n = self.names
        ts, self.unit = _to_ns_unit(frame, frame.columns[n["time"]], self.display["time"], self.unit)  # type: ignore[index,assignment]
        price = _to_float(frame, frame.columns[n["price"]], "price")  # type: ignore[index]
        size = _to_float(frame, frame.columns[n["size"]], "size")  # type: ignore[index]
        if n["side"] is None:
            aggressor = np.zeros(ts.size, dtype=np.int8)
        else:
            is_maker = n["side"] in _MAKER_ALIASES or not self.source.has_header
            aggressor = _aggressor(frame, self.display["side"], frame.columns[n["side"]], is_maker)
        ids = frame.columns[n["trade_id"]] if n["trade_id"] is not None else None
        trade_id = pa.array([""] * ts.size, pa.string()) if ids is None else pc.cast(ids, pa.string())
        _check_time_order(frame, ts, "ts_event", strict=False, prev_ts=self.prev_ts, prev_row=self.prev_row,
                          prev_name=self.prev_name)
        with np.errstate(invalid="ignore"):
            _raise_first(frame, [
                (~(np.isfinite(price) & (price > 0)), lambda i: f"price {_v(price[i])} is not a finite positive price"),
                (~(np.isfinite(size) & (size > 0)), lambda i: f"size {_v(size[i])} is not a finite positive size"),
            ])
        # Integer ids as read, for the quality check: their text is canonical, so casting it back gives them again.
        self.int_ids = None
        if ids is not None:
            self._check_ids(frame, ids, trade_id)
            if pa.types.is_integer(ids.type) and ids.null_count == 0:
                self.int_ids = ids.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        if ts.size:
            self.prev_ts, self.prev_row, self.prev_name = int(ts[-1]), frame.row(ts.size - 1), frame.name
        self.rows += ts.size
        stamped = pa.array(ts)
        return pa.Table.from_arrays(
            [stamped, stamped, pa.array(price), pa.array(size), pa.array(aggressor), trade_id], schema=TRADE_SCHEMA
        )

    def _check_ids(self, frame: Frame, raw: pa.Array, ids: pa.Array) -> None:
        """Duplicate trade ids: O(1) state for increasing integer ids, else per chunk and its predecessor."""
        if len(ids) == 0:
            return
        try:
            ints = pc.cast(raw, pa.int64()).to_numpy(zero_copy_only=False) if raw.null_count == 0 else None
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            ints = None
        increasing = False
        if ints is not None and (self.last_int_id is not None or self.prev_ids is None):
            full = ints if self.last_int_id is None else np.concatenate(([self.last_int_id], ints))
            increasing = bool(np.all(np.diff(full) > 0))
        if increasing:
            self.last_int_id = int(ints[-1])  # type: ignore[index]
        else:
            self.last_int_id = None
            both = ids if self.prev_ids is None else pa.concat_arrays([self.prev_ids, ids])
            nonempty = pc.not_equal(both, "")
            if pc.sum(pc.cast(nonempty, pa.int64())).as_py() > pc.count_distinct(pc.filter(both, nonempty)).as_py():
                prev_rows = self.prev_id_rows if self.prev_id_rows is not None else np.empty(0, dtype=np.int64)
                rows = np.concatenate((prev_rows, frame.row_numbers()))
                seen: dict[str, int] = {}
                for j, tid in enumerate(both.to_pylist()):
                    if tid and tid in seen:
                        first = seen[tid]
                        where = f" of {self.prev_id_file}" if first < len(prev_rows) and self.prev_id_file != frame.name else ""
                        raise frame.error(j - len(prev_rows), f"duplicate trade_id {tid!r} (same as row {rows[first]}{where})")
                    seen[tid] = j
        self.prev_ids, self.prev_id_rows, self.prev_id_file = ids, frame.row_numbers(), frame.name


def _aggressor(frame: Frame, name: str, array: pa.Array, is_maker: bool) -> np.ndarray:
    if pa.types.is_boolean(array.type):
        if array.null_count:
            raise frame.error(int(np.flatnonzero(array.is_null().to_numpy(zero_copy_only=False))[0]), f"{name} is missing")
        flags = array.to_numpy(zero_copy_only=False)
        return np.where(flags.astype(bool), -1, 1).astype(np.int8)
    if pa.types.is_integer(array.type) and not is_maker:
        values = array.to_numpy(zero_copy_only=False)
        bad = _first(~np.isin(values, (-1, 0, 1)))
        if bad is not None:
            raise frame.error(bad, f"{name} {int(values[bad])} is not 1, -1 or 0")
        return values.astype(np.int8)
    words = pc.utf8_lower(pc.utf8_trim_whitespace(pc.cast(array, pa.string())))
    words = pc.fill_null(words, "")
    out = np.zeros(len(words), dtype=np.int8)
    if is_maker:
        yes = pc.is_in(words, pa.array(_TRUE_WORDS)).to_numpy(zero_copy_only=False)
        no = pc.is_in(words, pa.array(_FALSE_WORDS)).to_numpy(zero_copy_only=False)
        out[yes], out[no] = -1, 1
        bad, expected = _first(~(yes | no)), "true/false"
    else:
        buy = pc.is_in(words, pa.array(_BUY_WORDS)).to_numpy(zero_copy_only=False)
        sell = pc.is_in(words, pa.array(_SELL_WORDS)).to_numpy(zero_copy_only=False)
        unknown = pc.is_in(words, pa.array(_UNKNOWN_WORDS)).to_numpy(zero_copy_only=False)
        out[buy], out[sell] = 1, -1
        bad, expected = _first(~(buy | sell | unknown)), "buy/sell"
    if bad is not None:
        raise frame.error(bad, f"{name} {words[bad].as_py()!r} is not {expected}")
    return out


# --------------------------------------------------------------------------- streams


def _stream(
    paths: Iterable[str | os.PathLike[str]],
    kind: str,
    make: Callable[[Source], BarStream | TradeStream],
    split_by: str | None,
    block_bytes: int,
    streams: dict[str | None, BarStream | TradeStream],
) -> Iterator[tuple[str | None, pa.Table]]:
    names: list[str] = []
    for path in paths:
        source = open_source(Path(path), block_bytes=block_bytes)
        names.append(source.name)
        try:
            for key, stream in streams.items():
                held = stream.use(source)
                if held.num_rows:
                    yield key, held
            symbols: _Symbols | None = None
            if source.preview is not None:
                symbols = _find_symbols(source.preview, source.has_header, split_by)
                # The layout is found on the column names (and a headerless file's first row) before any chunk is
                # parsed, so that the reader converts only the columns used.
                if symbols.split:
                    probe = make(source)  # the streams of the symbols find the same columns by name on each chunk
                else:
                    if None not in streams:
                        streams[None] = make(source)
                    probe = streams[None]
                source.narrow(probe.layout(source.preview) | ({symbols.column} if symbols.column else set()))
            for frame in source.frames:
                if symbols is None:
                    symbols = _find_symbols(frame, source.has_header, split_by)
                for key, part in symbols.groups(frame):
                    stream = streams.get(key)
                    if stream is None:
                        stream = streams[key] = make(source)
                    table = stream.convert(part)
                    if table.num_rows:
                        yield key, table
        finally:
            close = getattr(source.frames, "close", None)
            if close is not None:
                close()  # a generator left at a chunk (an error, or the consumer stopped) stops its reader now
    for key, stream in streams.items():
        table = stream.finish()
        if table.num_rows:
            yield key, table
    if not any(s.rows for s in streams.values()):
        raise DataError(f"{', '.join(names) or 'no input files'}: no {kind}")


def iter_bars(
    path: str | os.PathLike[str],
    *,
    interval: str | int | None = None,
    ts_column: str | None = None,
    ts_unit: TsUnit = "auto",
    bar_time: BarTime = "auto",
    duplicates: Literal["error", "keep_first"] = "error",
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> Iterator[pa.Table]:
    """Yield a bar file as validated chunks in the stored layout (see :func:`read_bars`)."""
    streams: dict[str | None, BarStream | TradeStream] = {}

    def make(source: Source) -> BarStream:
        return BarStream(source, interval=interval, ts_column=ts_column, ts_unit=ts_unit, bar_time=bar_time,
                          duplicates=duplicates)

    for _, table in _stream([path], "bars", make, None, block_bytes, streams):
        yield table


def iter_trades(
    path: str | os.PathLike[str],
    *,
    ts_column: str | None = None,
    ts_unit: TsUnit = "auto",
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> Iterator[pa.Table]:
    """Yield a trade file as validated chunks in the stored layout (see :func:`read_trades`)."""
    streams: dict[str | None, BarStream | TradeStream] = {}
    for _, table in _stream(
        [path], "trades", lambda source: TradeStream(source, ts_column=ts_column, ts_unit=ts_unit), None, block_bytes,
        streams,
    ):
        yield table


def read_bars(
    path: str | os.PathLike[str],
    *,
    interval: str | int | None = None,
    ts_column: str | None = None,
    ts_unit: TsUnit = "auto",
    time_is: BarTime = "auto",
    duplicates: Literal["error", "keep_first"] = "error",
) -> pa.Table:
    """Read and validate a whole bar file into the stored bar layout (see module docstring).

    Parameters
    ----------
    path
        CSV (with or without header, optionally gzipped), Parquet, or Coinbase candles JSON(.gz).
    interval
        Bar interval (``"4h"``, ns int); detected from the modal spacing when ``None``.
    ts_column
        Name of the time column (default: the first known alias present).
    ts_unit
        ``"auto"`` or ``"s"``/``"ms"``/``"us"``/``"ns"``/``"iso"``.
    time_is
        Whether the time column is the bar ``"open"`` or ``"close"`` time; ``"auto"``
        means close only for a column named ``ts_event``.
    duplicates
        ``"error"`` (default) raises on a repeated bar time; ``"keep_first"``
        drops repeats, logging every dropped row with its values at WARNING.

    Returns
    -------
    pyarrow.Table
        ``ts_event`` (close time, ns), ``ts_init`` (= ``ts_event``), OHLCV float64.

    Raises
    ------
    DataError
        Naming the file, 1-based row and field of the first problem.
    """
    chunks = list(iter_bars(path, interval=interval, ts_column=ts_column, ts_unit=ts_unit, bar_time=time_is,
                            duplicates=duplicates))
    return pa.concat_tables(chunks).combine_chunks()


def read_trades(path: str | os.PathLike[str], *, ts_column: str | None = None, ts_unit: TsUnit = "auto") -> pa.Table:
    """Read and validate a whole trade file into the stored trade layout.

    Columns (case-insensitive aliases): time (``timestamp``, ``time``,
    ``trade_time_ms``, ...), ``price``, ``size`` (``qty``, ``quantity``, ``amount``),
    optional side (``side``/``aggressor``: buy/sell/1/-1/0, or
    ``is_buyer_maker``/``buyer_maker``: true = seller-initiated) and optional
    ``trade_id`` (``id``). Missing side -> aggressor 0; missing id -> ``""``.

    Returns
    -------
    pyarrow.Table
        ``ts_event`` (ns), ``ts_init`` (= ``ts_event``), ``price``, ``size``, ``aggressor`` (int8), ``trade_id``.

    Raises
    ------
    DataError
        Naming the file, 1-based row and field of the first problem.
    """
    return pa.concat_tables(list(iter_trades(path, ts_column=ts_column, ts_unit=ts_unit))).combine_chunks()


# --------------------------------------------------------------------------- import


@dataclass(frozen=True)
class ImportResult:
    """What an import wrote and how it read the file.

    Attributes
    ----------
    manifests
        One manifest per dataset written (several with ``split_by``), in symbol order.
    time_column
        The file's time column.
    bar_time
        Bars: ``"open"`` or ``"close"``, what the time column was taken to stamp;
        ``None`` for trades.
    shift_ns
        What was added to the time column to get the close stamp (bars; 0 for trades).
    interval_ns, interval_detected
        The bar interval and whether it was detected from the data.
    dropped_duplicates
        Repeated bars dropped (``duplicates="keep_first"``).
    """

    manifests: list[Manifest]
    time_column: str
    bar_time: str | None = None
    shift_ns: int = 0
    interval_ns: int | None = None
    interval_detected: bool = False
    dropped_duplicates: int = 0

    @property
    def notes(self) -> list[str]:
        """What the manifest records about how the file was read (bars: the time convention, drops)."""
        if self.bar_time is None:
            return []
        drops = [f"{self.dropped_duplicates} duplicate rows dropped (first kept)"] if self.dropped_duplicates else []
        return [self.describe_time(), *drops]

    def describe_time(self) -> str:
        """One line saying how the bar time column was read and the shift applied."""
        if self.bar_time is None:
            return f"time column {self.time_column!r}: trade times, not shifted"
        interval = format_interval(self.interval_ns or 0)
        detected = " (detected)" if self.interval_detected else ""
        if self.bar_time == "open":
            return (f"bar time: {self.time_column!r} holds bar OPEN times; shifted +{interval}{detected} "
                    "to the close stamp (ts_event = open + interval)")
        return f"bar time: {self.time_column!r} holds bar CLOSE times; not shifted (interval {interval}{detected})"


def _within(table: pa.Table, stream: BarStream | TradeStream, window_ns: tuple[int, int]) -> pa.Table:
    """The rows of ``table`` whose time (a bar's open time) lies in ``[first, stop)``."""
    ts = table.column("ts_event").to_numpy()
    if isinstance(stream, BarStream):
        ts = ts - (stream.interval_ns or 0)
    keep = (ts >= window_ns[0]) & (ts < window_ns[1])
    return table if keep.all() else table.filter(pa.array(keep))


def _default_period(kind: str, interval_ns: int | None) -> Period:
    if kind == "bars" and interval_ns is not None:
        if interval_ns >= _INTERVAL_UNITS["h"]:
            return "year"
        if interval_ns >= _INTERVAL_UNITS["m"]:
            return "month"
    return "day"


def split_contract_size(contract_size: float) -> str:
    """Why a contract size other than 1 is refused for a file split by symbol (the reason, as a message).

    One size would be recorded for every symbol in the file, where the symbols' contracts differ in
    general (OKX BTC-USDT-SWAP 0.01 BTC, ETH-USDT-SWAP 0.1 ETH); 1, sizes in base units, holds for all.
    """
    return (f"--contract-size {contract_size:g} with --split-by would record that size for every symbol in the file, "
            "whose contract sizes differ in general (OKX BTC-USDT-SWAP 0.01 BTC, ETH-USDT-SWAP 0.1 ETH): import each "
            "symbol with --symbol and its own --contract-size (1, sizes in base units, applies to every symbol)")


def import_path(
    catalog: Catalog | str | os.PathLike[str],
    path: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    venue: str,
    market: str,
    symbol: str | None,
    kind: Literal["bars", "trades"] = "bars",
    interval: str | int | None = None,
    dataset: str | None = None,
    period: Period | None = None,
    ts_column: str | None = None,
    ts_unit: TsUnit = "auto",
    bar_time: BarTime = "auto",
    duplicates: Literal["error", "keep_first"] = "error",
    mode: Literal["create", "append", "overwrite"] = "create",
    split_by: str | None = None,
    notes: Iterable[str] = (),
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    window_ns: tuple[int, int] | None = None,
    contract_size: float | None = None,
) -> ImportResult:
    """Stream one file into the catalog: read, validate and write it chunk by chunk.

    Nothing is swapped into the catalog until the whole file has been read and
    validated; on any error every staged dataset is removed. The quality checks of
    :mod:`tradebus.data.quality` run on the rows as they are written; their summary
    (status and non-zero counts; of the whole dataset after an append) is stored in the manifest.

    Parameters
    ----------
    catalog
        A :class:`Catalog` or its root directory.
    path
        Input file (see the module docstring), or several files of one series in time
        order, read one after the other into the same dataset (an iterable is consumed
        lazily: a file may be produced just before it is read).
    venue, market, symbol
        Destination; ``symbol`` is ignored (may be ``None``) with ``split_by``.
    kind
        ``"bars"`` or ``"trades"``.
    interval
        Bar interval (detected when ``None``).
    dataset
        Dataset name; default ``"bars_<interval>"`` (``bars_4h``) or ``"trades"``.
    period
        Partition period; default ``"year"`` for bars of 1h or more, ``"month"``
        for minute bars, ``"day"`` otherwise.
    ts_column, ts_unit, duplicates
        See :func:`read_bars`.
    bar_time
        ``"open"``, ``"close"`` or ``"auto"`` (see the module docstring).
    mode
        ``"create"``, ``"append"`` or ``"overwrite"`` (see :meth:`Catalog.write`).
    split_by
        A symbol column: one dataset per value (the value is the catalog symbol).
    notes
        Lines recorded in the manifest (the source and the time convention are always added).
    block_bytes
        CSV bytes read per chunk.
    window_ns
        ``(first, stop)``: keep only the rows whose time lies in ``[first, stop)`` (ns), a bar's
        open time (``ts_event`` less the interval) or a trade's time; every row is still validated.
    contract_size
        Trades: base units per unit of the rows' size, recorded in each manifest
        (:attr:`~tradebus.data.catalog.Manifest.contract_size`); ``None``: none recorded. With
        ``split_by`` only 1 (sizes in base units, every symbol's unit): see :func:`split_contract_size`.

    Raises
    ------
    DataError
        Naming the file, row and field of the first problem; or, with ``window_ns``, no row in it.
    """
    if kind not in ("bars", "trades"):
        raise DataError(f"kind {kind!r} is not 'bars' or 'trades'")
    paths: Iterable[str | os.PathLike[str]] = [path] if isinstance(path, (str, os.PathLike)) else path
    label = Path(path).name if isinstance(path, (str, os.PathLike)) else "input"
    if kind == "trades" and interval is not None:
        raise DataError(f"{label}: interval applies to bars only, not to trades")
    if symbol is None and split_by is None:
        raise DataError(f"{label}: a symbol is needed (or split_by, to take it from a column)")
    if kind == "trades" and split_by is not None and contract_size is not None and contract_size != 1.0:
        raise DataError(f"{label}: {split_contract_size(contract_size)}")
    cat = catalog if isinstance(catalog, Catalog) else Catalog(catalog)
    # What can be refused without the data is refused before any file is opened (a reader runs threads).
    for what, value in (("venue", venue), ("market", market), ("symbol", symbol), ("dataset", dataset)):
        if value is not None and (what != "symbol" or split_by is None):
            check_name(what, value)
    if period is not None and period not in get_args(Period):
        raise DataError(f"unknown partition period {period!r}; expected one of {sorted(get_args(Period))}")
    if mode not in ("create", "append", "overwrite"):
        raise DataError(f"unknown write mode {mode!r}")
    if mode == "create" and dataset is not None and split_by is None and cat.exists(venue, market, symbol, dataset):  # type: ignore[arg-type]
        raise DatasetExists(cat.dataset_dir(venue, market, symbol, dataset))  # type: ignore[arg-type]
    sources: list[str] = []

    def named(items: Iterable[str | os.PathLike[str]]) -> Iterator[str | os.PathLike[str]]:
        for item in items:
            sources.append(Path(item).name)
            yield item

    streams: dict[str | None, BarStream | TradeStream] = {}
    writers: dict[str | None, DatasetWriter] = {}
    checks: dict[str | None, QualityCheck] = {}
    # The quality checks run on a thread of their own (numpy releases the GIL), in order, while the next chunk is read.
    quality_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-quality")
    judged: deque[Future[None]] = deque()
    fed = 0

    def make(src: Source) -> BarStream | TradeStream:
        if kind == "bars":
            return BarStream(src, interval=interval, ts_column=ts_column, ts_unit=ts_unit, bar_time=bar_time,
                              duplicates=duplicates)
        return TradeStream(src, ts_column=ts_column, ts_unit=ts_unit)

    chunks = _stream(named(paths), kind, make, split_by, block_bytes, streams)
    try:
        for key, table in chunks:
            if window_ns is not None:
                table = _within(table, streams[key], window_ns)
                if not table.num_rows:
                    continue
            writer = writers.get(key)
            if writer is None:
                interval_ns = streams[key].interval_ns if isinstance(streams[key], BarStream) else None  # type: ignore[union-attr]
                name = dataset or ("trades" if not interval_ns else
                                   bars_dataset(cat, venue, market, key if key is not None else symbol, interval_ns))  # type: ignore[arg-type]
                writer = writers[key] = cat.writer(
                    venue, market, key if key is not None else symbol, name,  # type: ignore[arg-type]
                    period or _default_period(kind, interval_ns), kind=kind, interval_ns=interval_ns, mode=mode,
                )
                checks[key] = QualityCheck(kind, interval_ns)
            writer.write(table)
            stream = streams[key]
            int_ids = stream.int_ids if isinstance(stream, TradeStream) else None
            if fed == 0:  # the first chunk here: a one-chunk file (a month of klines) never starts the thread
                checks[key].feed(table, int_ids=int_ids)
            else:
                while len(judged) >= _QUALITY_IN_FLIGHT:
                    judged.popleft().result()
                judged.append(quality_pool.submit(checks[key].feed, table, int_ids=int_ids))
            fed += 1
        while judged:
            judged.popleft().result()
        first = next(iter(streams.values()))
        shown = ", ".join(sources) if len(sources) <= 3 else f"{sources[0]} ... {sources[-1]} ({len(sources)} files)"
        if not writers and window_ns is not None:
            raise DataError(f"{shown}: no {kind} from {iso_ns(window_ns[0])} to before {iso_ns(window_ns[1])} UTC")
        if isinstance(first, BarStream):
            result = ImportResult([], first.display_ts, first.bar_time, first.shift_ns, first.interval_ns,
                                  first.interval_detected, sum(s.dropped for s in streams.values()))  # type: ignore[union-attr]
        else:
            result = ImportResult([], first.display["time"])
        lines = [f"imported from {shown}", *result.notes]
        for writer in writers.values():
            writer.check()
        manifests = [
            writers[k].commit([*lines, *notes], quality=checks[k].report().summary(),
                              contract_size=contract_size if kind == "trades" else None)
            for k in sorted(writers, key=lambda k: k or "")
        ]
    finally:
        chunks.close()
        for future in judged:
            future.cancel()
        quality_pool.shutdown(wait=True)
        for writer in writers.values():
            writer.abort()
    return dataclasses.replace(result, manifests=manifests)


def import_file(
    catalog: Catalog | str | os.PathLike[str],
    path: str | os.PathLike[str],
    *,
    venue: str,
    market: str,
    symbol: str,
    kind: Literal["bars", "trades"] = "bars",
    interval: str | int | None = None,
    dataset: str | None = None,
    period: Period | None = None,
    ts_column: str | None = None,
    ts_unit: TsUnit = "auto",
    bar_time: BarTime = "auto",
    duplicates: Literal["error", "keep_first"] = "error",
    mode: Literal["create", "append", "overwrite"] = "create",
    notes: Iterable[str] = (),
) -> Manifest:
    """Read, validate and write one single-symbol file into the catalog; return its manifest.

    See :func:`import_path` for the parameters (this is it without ``split_by``).
    """
    return import_path(
        catalog, path, venue=venue, market=market, symbol=symbol, kind=kind, interval=interval, dataset=dataset,
        period=period, ts_column=ts_column, ts_unit=ts_unit, bar_time=bar_time, duplicates=duplicates, mode=mode,
        notes=notes,
    ).manifests[0]
