"""Importers: bar and trade files -> validated tables in the catalog layout.

Supported inputs
----------------
* CSV (optionally ``.gz``), with or without a header. A first line none of
  whose fields is a number is a header. Without a header the columns are
  positional: bars ``time, open, high, low, close, volume[, ...ignored]`` (the
  Binance-vision kline layout); trades the Binance-vision ``trades``
  (``id, price, qty, quote_qty, time, is_buyer_maker[, is_best_match]``) or
  ``aggTrades`` (``id, price, qty, first_id, last_id, time, is_buyer_maker[, ...]``)
  layouts, told apart by the position of the boolean column.
* Parquet (any column names below; timestamp columns of Arrow timestamp type).
* Coinbase candles JSON (optionally ``.gz``):
  ``{"candles": [{"start", "low", "high", "open", "close", "volume"}, ...]}``,
  values as strings, ``start`` in Unix seconds (the bar OPEN time). The
  exchange API returns the newest candle first; a list that is entirely in
  descending order is reversed (logged), any other disorder is an error.

Header names are matched case-insensitively against aliases (``timestamp``,
``open_time``, ``qty``, ...); extra columns are ignored (logged at debug level).

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
ccxt/freqtrade ``timestamp``), so by default (``time_is="auto"``) the time column
is taken as the open time and ``ts_event = open + interval``, except when the
column is named ``ts_event`` (this package's own layout), which is already a
close time. ``interval`` is given (``"4h"``, ``"1m"``, ns int) or detected as the
most frequent spacing between consecutive bars (ties -> the smallest); a
spacing shorter than the interval (overlapping bars) is an error. ``ts_init``
equals ``ts_event`` (historical data has no receive time).

Validation
----------
Every error is a :class:`~tradebus.errors.DataError` naming the file, the
1-based data row (header not counted; for JSON the candle's position) and the
field, e.g. ``bars.csv row 17: high 99.0 < low 100.0``: missing columns,
unparsable values, implausible timestamps, unsorted or duplicate bar times
(trades may share a timestamp), NaN/inf/zero/negative prices, ``high < low``,
open/close outside ``[low, high]`` (beyond a relative 1e-9 float tolerance),
NaN/inf/negative volume, non-positive trade size, unknown aggressor values,
duplicate trade ids.
"""

from __future__ import annotations

import gzip
import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Literal

import msgspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from loguru import logger

from tradebus.data.catalog import BAR_SCHEMA, TRADE_SCHEMA, Catalog, Manifest, Period
from tradebus.errors import DataError

__all__ = [
    "TsUnit",
    "detect_interval",
    "format_interval",
    "import_file",
    "parse_interval",
    "read_bars",
    "read_trades",
    "to_ns",
    "validate_bars",
    "validate_trades",
]

TsUnit = Literal["auto", "s", "ms", "us", "ns", "iso"]

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
    "size": ("size", "qty", "quantity", "amount", "q"),
    "trade_id": ("trade_id", "id", "tid", "agg_trade_id"),
}
_AGGRESSOR_ALIASES = ("aggressor", "side", "taker_side", "aggressor_side")
_MAKER_ALIASES = ("is_buyer_maker", "buyer_maker", "isbuyermaker", "m")
_BUY_WORDS = frozenset({"buy", "b", "bid", "1", "+1"})
_SELL_WORDS = frozenset({"sell", "s", "ask", "-1"})
_UNKNOWN_WORDS = frozenset({"", "0", "unknown", "none", "n/a"})
_TRUE_WORDS = frozenset({"true", "t", "1", "yes"})
_FALSE_WORDS = frozenset({"false", "f", "0", "no"})


# --------------------------------------------------------------------------- intervals


def parse_interval(value: str | int | np.integer) -> int:
    """Return an interval in ns from ``"4h"``, ``"1m"``, ``"15min"``, ``"1d"`` or an int of ns.

    ``"m"`` is minutes (months are not a fixed interval and are not supported).

    Raises
    ------
    DataError
        If the value is not a positive interval.
    """
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if value <= 0:
            raise DataError(f"interval must be > 0 ns, got {value}")
        return int(value)
    if isinstance(value, str):
        match = _INTERVAL_RE.match(value)
        if match and match.group(2).lower() in _INTERVAL_UNITS and int(match.group(1)) > 0:
            return int(match.group(1)) * _INTERVAL_UNITS[match.group(2).lower()]
    raise DataError(f"interval {value!r} is not understood; expected e.g. '1m', '15m', '4h', '1d' or ns as int")


def format_interval(interval_ns: int) -> str:
    """Return the shortest label of an interval in ns (``14_400_000_000_000`` -> ``"4h"``)."""
    for unit, size in (("d", _INTERVAL_UNITS["d"]), ("h", _INTERVAL_UNITS["h"]), ("m", _INTERVAL_UNITS["m"]),
                       ("s", _INTERVAL_UNITS["s"]), ("ms", _INTERVAL_UNITS["ms"]), ("us", _INTERVAL_UNITS["us"])):
        if interval_ns % size == 0:
            return f"{interval_ns // size}{unit}"
    return f"{interval_ns}ns"


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


class _Frame:
    """Raw columns of one input file, before conversion to the stored layout."""

    def __init__(self, name: str, columns: dict[str, pa.Array], rows: np.ndarray | None = None) -> None:
        self.name = name
        self.columns = columns
        # rows[i] is the 1-based file row of table row i (None = i + 1).
        self.rows = rows

    def row(self, index: int) -> int:
        return int(self.rows[index]) if self.rows is not None else index + 1

    def error(self, index: int, message: str) -> DataError:
        return DataError(f"{self.name} row {self.row(index)}: {message}")


def _v(value: object) -> str:
    """Format a cell value for an error message (numpy scalars as plain Python values)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _iso(ns: int | np.integer) -> str:
    """Format ns since the epoch as ISO-8601 UTC (``2024-01-01T04:00:00Z``; sub-second digits if any)."""
    text = str(np.datetime64(int(ns), "ns"))
    text = text.rstrip("0").rstrip(".") if "." in text else text
    return text + "Z"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _open_text(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"{path.name}: corrupt gzip file: {exc}") from None
    return raw


def _strip_gz(name: str) -> str:
    return name[:-3] if name.lower().endswith(".gz") else name


def _read_source(path: Path) -> tuple[_Frame, bool]:
    """Load a file as string/native columns; return the frame and whether it had a header."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    suffix = Path(_strip_gz(path.name.lower())).suffix
    if suffix in (".csv", ".txt"):
        return _read_csv(path)
    if suffix in (".parquet", ".pq"):
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"{path.name}: cannot read Parquet: {exc}") from None
        return _Frame(path.name, {n.lower(): table.column(n).combine_chunks() for n in table.column_names}), True
    if suffix == ".json":
        return _read_coinbase_json(path), True
    raise DataError(f"{path.name}: unsupported file type {suffix!r}; expected .csv[.gz], .parquet or .json[.gz]")


def _read_csv(path: Path) -> tuple[_Frame, bool]:
    raw = _open_text(path)
    first = raw.split(b"\n", 1)[0].decode("utf-8", "replace").strip().lstrip("\ufeff")
    if not first:
        raise DataError(f"{path.name}: empty file")
    fields = [f.strip().strip('"') for f in first.split(",")]
    has_header = not any(_is_number(f) for f in fields)
    names = [f.lower() for f in fields] if has_header else [f"f{i}" for i in range(len(fields))]
    if has_header and len(set(names)) != len(names):
        raise DataError(f"{path.name}: duplicate column names in header {fields}")
    bad_rows: list[str] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        data_row = row.number - 1 if (has_header and row.number is not None) else row.number
        bad_rows.append(
            f"{path.name} row {data_row}: expected {row.expected_columns} fields, got {row.actual_columns}: {row.text!r}"
        )
        return "error"

    try:
        table = pacsv.read_csv(
            pa.py_buffer(raw),
            read_options=pacsv.ReadOptions(
                column_names=names, skip_rows=1 if has_header else 0, use_threads=False
            ),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names}, strings_can_be_null=False, quoted_strings_can_be_null=False
            ),
        )
    except pa.ArrowInvalid as exc:
        raise DataError(bad_rows[0] if bad_rows else f"{path.name}: cannot parse CSV: {exc}") from None
    return _Frame(path.name, {n: table.column(n).combine_chunks() for n in names}), has_header


def _read_coinbase_json(path: Path) -> _Frame:
    try:
        doc = msgspec.json.decode(_open_text(path))
    except msgspec.DecodeError as exc:
        raise DataError(f"{path.name}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("candles"), list):
        raise DataError(f'{path.name}: expected a Coinbase candles object {{"candles": [...]}}')
    keys = ("start", "open", "high", "low", "close", "volume")
    values: dict[str, list[str]] = {k: [] for k in keys}
    for i, candle in enumerate(doc["candles"]):
        if not isinstance(candle, dict):
            raise DataError(f"{path.name} row {i + 1}: candle is not an object")
        for key in keys:
            value = candle.get(key)
            if value is None:
                raise DataError(f"{path.name} row {i + 1}: {key} is missing")
            values[key].append(str(value))
    return _Frame(path.name, {k: pa.array(v, pa.string()) for k, v in values.items()})


def _pick(frame: _Frame, aliases: Sequence[str], field: str, *, required: bool = True) -> pa.Array | None:
    for alias in aliases:
        if alias in frame.columns:
            return frame.columns[alias]
    if required:
        raise DataError(f"{frame.name}: missing column {field!r} (accepted names: {list(aliases)}); got {list(frame.columns)}")
    return None


def _time_column(frame: _Frame, ts_column: str | None) -> tuple[str, pa.Array]:
    if ts_column is not None:
        key = ts_column.lower()
        if key not in frame.columns:
            raise DataError(f"{frame.name}: ts_column {ts_column!r} not found; got {list(frame.columns)}")
        return key, frame.columns[key]
    for alias in _TIME_ALIASES:
        if alias in frame.columns:
            return alias, frame.columns[alias]
    raise DataError(f"{frame.name}: missing time column (accepted names: {list(_TIME_ALIASES)}); got {list(frame.columns)}")


def _to_float(frame: _Frame, array: pa.Array, field: str) -> np.ndarray:
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        trimmed = pc.utf8_trim_whitespace(array)
        try:
            array = pc.cast(trimmed, pa.float64())
        except pa.ArrowInvalid:
            text = trimmed.to_pylist()
            index = next(i for i, t in enumerate(text) if not _is_number(t))
            raise frame.error(index, f"{field} {_v(text[index])} is not a number") from None
    elif not (pa.types.is_floating(array.type) or pa.types.is_integer(array.type) or pa.types.is_decimal(array.type)):
        raise DataError(f"{frame.name}: column {field} has type {array.type}, expected numbers")
    if array.null_count:
        index = int(np.flatnonzero(array.is_null().to_numpy(zero_copy_only=False))[0])
        raise frame.error(index, f"{field} is missing")
    return np.asarray(pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def _check_plausible(frame: _Frame, ns: np.ndarray, field: str, unit: str, raw: Callable[[int], object]) -> None:
    bad = np.flatnonzero((ns < TS_MIN_NS) | (ns >= TS_MAX_NS))
    if bad.size:
        i = int(bad[0])
        raise frame.error(i, f"{field} {_v(raw(i))} is not a plausible time as {unit} (expected years 2000..2100)")


def _iso_to_ns(frame: _Frame, text: pa.Array, field: str) -> np.ndarray:
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
    frame = _Frame(frame_name, {}, rows)
    if ts_unit not in ("auto", "iso", *_NS_PER):
        raise DataError(f"ts_unit {ts_unit!r} is not one of auto, s, ms, us, ns, iso")
    if array.null_count:
        index = int(np.flatnonzero(array.is_null().to_numpy(zero_copy_only=False))[0])
        raise frame.error(index, f"{field} is missing")
    if len(array) == 0:
        return np.empty(0, dtype=np.int64)
    if pa.types.is_timestamp(array.type) or pa.types.is_date(array.type):
        if ts_unit not in ("auto", "iso"):
            raise DataError(f"{frame_name}: {field} is already a {array.type} column; ts_unit={ts_unit!r} does not apply")
        ns = pc.cast(pc.cast(array, pa.timestamp("ns")), pa.int64()).to_numpy().astype(np.int64)
        _check_plausible(frame, ns, field, "timestamp", lambda i: str(array[i]))
        return ns
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        text = pc.utf8_trim_whitespace(array)
        if ts_unit == "iso":
            return _iso_to_ns(frame, text, field)
        try:
            array = pc.cast(text, pa.int64())
        except pa.ArrowInvalid:
            try:
                array = pc.cast(text, pa.float64())
            except pa.ArrowInvalid:
                if ts_unit != "auto":
                    values = text.to_pylist()
                    index = next(i for i, t in enumerate(values) if not _is_number(t))
                    raise frame.error(index, f"{field} {_v(values[index])} is not a number (ts_unit={ts_unit!r})") from None
                return _iso_to_ns(frame, text, field)
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
        scaled = values * float(factor)
        ok = (scaled >= TS_MIN_NS) & (scaled < TS_MAX_NS)
        ns = np.where(ok, np.rint(scaled), 0).astype(np.int64)
    else:
        wide = values.astype(np.int64)
        limit = TS_MAX_NS // factor
        ok = (wide >= 0) & (wide < limit)
        ns = np.where(ok, wide, 0) * factor
    _check_plausible(frame, np.where(ok, ns, 0), field, unit, lambda i: values[i].item())
    return ns


# --------------------------------------------------------------------------- validation


def _first(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


def _raise_first(frame: _Frame, checks: Iterable[tuple[np.ndarray, Callable[[int], str]]]) -> None:
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


def _check_time_order(frame: _Frame, ts: np.ndarray, field: str, *, strict: bool) -> None:
    if ts.size < 2:
        return
    step = np.diff(ts)
    back = _first(step < 0)
    dup = _first(step == 0) if strict else None
    if back is not None and (dup is None or back < dup):
        raise frame.error(
            back + 1,
            f"{field} {_iso(ts[back + 1])} is before the previous row's {_iso(ts[back])} (rows must be sorted by time)",
        )
    if dup is not None:
        raise frame.error(dup + 1, f"duplicate {field} {_iso(ts[dup + 1])} (same as row {frame.row(dup)})")


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


def validate_bars(table: pa.Table, name: str, rows: np.ndarray | None = None) -> None:
    """Check a bar table in the stored layout; raise on the first bad row.

    Parameters
    ----------
    table
        Columns ``ts_event, ts_init, open, high, low, close, volume``.
    name
        File (or dataset) name for messages.
    rows
        1-based row number of each table row in the source (default position + 1).

    Raises
    ------
    DataError
        ``"<name> row <n>: <field> ..."`` for unsorted/duplicate ``ts_event``,
        unsorted ``ts_init``, bad prices, ``high < low``, open/close outside the
        range or bad volume.
    """
    frame = _Frame(name, {}, rows)
    _check_time_order(frame, table.column("ts_event").to_numpy(), "ts_event", strict=True)
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
    frame = _Frame(name, {}, rows)
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


# --------------------------------------------------------------------------- bars


def _bar_columns(frame: _Frame, has_header: bool, ts_column: str | None) -> tuple[str, pa.Array, dict[str, pa.Array]]:
    if not has_header:
        if len(frame.columns) < 6:
            raise DataError(
                f"{frame.name}: headerless bar CSV needs at least 6 columns (time, open, high, low, close, volume); "
                f"got {len(frame.columns)}"
            )
        cols = list(frame.columns.values())
        return "time", cols[0], dict(zip(("open", "high", "low", "close", "volume"), cols[1:6], strict=True))
    ts_name, ts_array = _time_column(frame, ts_column)
    fields = {field: _pick(frame, aliases, field) for field, aliases in _BAR_ALIASES.items()}
    used = {ts_name} | {a for aliases in _BAR_ALIASES.values() for a in aliases if a in frame.columns}
    extra = [n for n in frame.columns if n not in used]
    if extra:
        logger.debug("{}: ignoring columns {}", frame.name, extra)
    return ts_name, ts_array, fields  # type: ignore[return-value]


def _reverse_if_descending(frame: _Frame, ts: np.ndarray, columns: dict[str, np.ndarray]) -> np.ndarray:
    """Coinbase API order: newest first. Reverse a strictly descending list (logged)."""
    if ts.size > 1 and np.all(np.diff(ts) < 0):
        logger.info("{}: candles are newest-first (Coinbase API order); reversing {} rows", frame.name, ts.size)
        frame.rows = np.arange(ts.size, 0, -1, dtype=np.int64)
        for key in columns:
            columns[key] = columns[key][::-1].copy()
        return ts[::-1].copy()
    return ts


def _drop_duplicate_bars(frame: _Frame, ts: np.ndarray, cols: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    if ts.size < 2:
        return ts, cols
    step = np.diff(ts)
    back = _first(step < 0)
    if back is not None:
        raise frame.error(
            back + 1, f"time {_iso(ts[back + 1])} is before the previous row's {_iso(ts[back])} (rows must be sorted by time)"
        )
    dup = np.flatnonzero(step == 0) + 1
    if dup.size == 0:
        return ts, cols
    keep = np.ones(ts.size, dtype=bool)
    keep[dup] = False
    kept_index = np.maximum.accumulate(np.where(keep, np.arange(ts.size), 0))
    for i in dup.tolist():
        k = int(kept_index[i])
        values = ", ".join(f"{n}={_v(cols[n][i])}" for n in ("open", "high", "low", "close", "volume"))
        kept = ", ".join(f"{n}={_v(cols[n][k])}" for n in ("open", "high", "low", "close", "volume"))
        logger.warning(
            "{} row {}: dropped duplicate bar at {} ({}); kept row {} ({})",
            frame.name, frame.row(i), pd.Timestamp(int(ts[i]), unit="ns", tz="UTC").isoformat(), values, frame.row(k), kept,
        )
    rows = frame.rows if frame.rows is not None else np.arange(1, ts.size + 1, dtype=np.int64)
    frame.rows = rows[keep]
    return ts[keep], {n: a[keep] for n, a in cols.items()}


def _load_bars(
    path: str | os.PathLike[str],
    *,
    interval: str | int | None,
    ts_column: str | None,
    ts_unit: TsUnit,
    time_is: Literal["auto", "open", "close"],
    duplicates: Literal["error", "keep_first"],
) -> tuple[pa.Table, int]:
    path = Path(path)
    frame, has_header = _read_source(path)
    is_coinbase = Path(_strip_gz(path.name.lower())).suffix == ".json"
    ts_name, ts_array, fields = _bar_columns(frame, has_header, ts_column)
    ts = to_ns(frame.name, ts_array, ts_name, ts_unit, frame.rows)
    cols = {field: _to_float(frame, array, field) for field, array in fields.items()}
    if is_coinbase:
        ts = _reverse_if_descending(frame, ts, cols)
    if duplicates == "keep_first":
        ts, cols = _drop_duplicate_bars(frame, ts, cols)
    elif duplicates != "error":
        raise DataError(f"duplicates={duplicates!r} is not 'error' or 'keep_first'")
    _check_time_order(frame, ts, ts_name, strict=True)
    if ts.size == 0:
        raise DataError(f"{frame.name}: no bars")
    if interval is not None:
        interval_ns = parse_interval(interval)
    elif ts.size >= 2:
        interval_ns = detect_interval(ts)
        logger.debug("{}: detected bar interval {}", frame.name, format_interval(interval_ns))
    else:
        raise DataError(f"{frame.name}: cannot detect the bar interval from a single bar; pass interval=")
    short = _first(np.diff(ts) < interval_ns)
    if short is not None:
        raise frame.error(
            short + 1,
            f"{ts_name} is {format_interval(int(ts[short + 1] - ts[short]))} after the previous bar, "
            f"shorter than the interval {format_interval(interval_ns)} (overlapping bars)",
        )
    if time_is == "auto":
        time_is = "close" if ts_name == "ts_event" else "open"
    if time_is == "open":
        ts = ts + interval_ns
    elif time_is != "close":
        raise DataError(f"time_is={time_is!r} is not 'auto', 'open' or 'close'")
    _raise_first(frame, _bar_checks(cols["open"], cols["high"], cols["low"], cols["close"], cols["volume"]))
    table = pa.Table.from_arrays(
        [pa.array(ts), pa.array(ts), *(pa.array(cols[n]) for n in ("open", "high", "low", "close", "volume"))],
        schema=BAR_SCHEMA,
    )
    return table, interval_ns


def read_bars(
    path: str | os.PathLike[str],
    *,
    interval: str | int | None = None,
    ts_column: str | None = None,
    ts_unit: TsUnit = "auto",
    time_is: Literal["auto", "open", "close"] = "auto",
    duplicates: Literal["error", "keep_first"] = "error",
) -> pa.Table:
    """Read and validate a bar file into the stored bar layout (see module docstring).

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
    return _load_bars(path, interval=interval, ts_column=ts_column, ts_unit=ts_unit, time_is=time_is, duplicates=duplicates)[0]


# --------------------------------------------------------------------------- trades


def _headerless_trade_columns(frame: _Frame) -> dict[str, pa.Array]:
    cols = list(frame.columns.values())
    first = [str(c[0]).strip().lower() for c in cols] if len(cols[0]) else []
    flags = [i for i, v in enumerate(first) if v in ("true", "false")]
    if flags and flags[0] == 5 and len(cols) in (6, 7):
        time_index = 4  # trades: id, price, qty, quote_qty, time, is_buyer_maker[, is_best_match]
    elif flags and flags[0] == 6 and len(cols) in (7, 8):
        time_index = 5  # aggTrades: id, price, qty, first_id, last_id, time, is_buyer_maker[, is_best_match]
    else:
        raise DataError(
            f"{frame.name}: headerless trade CSV with {len(cols)} columns is not a Binance trades/aggTrades layout; "
            "add a header (time, price, size[, side, trade_id])"
        )
    return {"time": cols[time_index], "price": cols[1], "size": cols[2], "is_buyer_maker": cols[flags[0]], "trade_id": cols[0]}


def _aggressor(frame: _Frame, name: str, array: pa.Array) -> np.ndarray:
    if pa.types.is_boolean(array.type):
        flags = array.to_numpy(zero_copy_only=False)
        return np.where(flags.astype(bool), -1, 1).astype(np.int8)
    if pa.types.is_integer(array.type) and name not in _MAKER_ALIASES:
        values = array.to_numpy(zero_copy_only=False)
        bad = _first(~np.isin(values, (-1, 0, 1)))
        if bad is not None:
            raise frame.error(bad, f"{name} {int(values[bad])} is not 1, -1 or 0")
        return values.astype(np.int8)
    words = [str(w).strip().lower() for w in array.to_pylist()]
    out = np.empty(len(words), dtype=np.int8)
    maker = name in _MAKER_ALIASES
    for i, word in enumerate(words):
        if maker:
            if word in _TRUE_WORDS:
                out[i] = -1
            elif word in _FALSE_WORDS:
                out[i] = 1
            else:
                raise frame.error(i, f"{name} {word!r} is not true/false")
        elif word in _BUY_WORDS:
            out[i] = 1
        elif word in _SELL_WORDS:
            out[i] = -1
        elif word in _UNKNOWN_WORDS:
            out[i] = 0
        else:
            raise frame.error(i, f"{name} {word!r} is not buy/sell")
    return out


def read_trades(
    path: str | os.PathLike[str],
    *,
    ts_column: str | None = None,
    ts_unit: TsUnit = "auto",
) -> pa.Table:
    """Read and validate a trade file into the stored trade layout.

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
    path = Path(path)
    if Path(_strip_gz(path.name.lower())).suffix == ".json":
        raise DataError(f"{path.name}: JSON input is only supported for Coinbase candles (bars)")
    frame, has_header = _read_source(path)
    if not has_header:
        frame.columns = _headerless_trade_columns(frame)
    ts_name, ts_array = _time_column(frame, ts_column)
    ts = to_ns(frame.name, ts_array, ts_name, ts_unit)
    price = _to_float(frame, _pick(frame, _TRADE_ALIASES["price"], "price"), "price")  # type: ignore[arg-type]
    size = _to_float(frame, _pick(frame, _TRADE_ALIASES["size"], "size"), "size")  # type: ignore[arg-type]
    side_name = next((a for a in (*_AGGRESSOR_ALIASES, *_MAKER_ALIASES) if a in frame.columns), None)
    if side_name is None:
        aggressor = np.zeros(ts.size, dtype=np.int8)
    else:
        aggressor = _aggressor(frame, side_name, frame.columns[side_name])
    ids = _pick(frame, _TRADE_ALIASES["trade_id"], "trade_id", required=False)
    trade_id = pa.array([""] * ts.size, pa.string()) if ids is None else pc.cast(ids, pa.string())
    table = pa.Table.from_arrays(
        [pa.array(ts), pa.array(ts), pa.array(price), pa.array(size), pa.array(aggressor), trade_id],
        schema=TRADE_SCHEMA,
    )
    validate_trades(table, frame.name)
    if table.num_rows == 0:
        raise DataError(f"{frame.name}: no trades")
    return table


# --------------------------------------------------------------------------- import


def _default_period(kind: str, interval_ns: int | None) -> Period:
    if kind == "bars" and interval_ns is not None:
        if interval_ns >= _INTERVAL_UNITS["h"]:
            return "year"
        if interval_ns >= _INTERVAL_UNITS["m"]:
            return "month"
    return "day"


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
    duplicates: Literal["error", "keep_first"] = "error",
    mode: Literal["create", "append", "overwrite"] = "create",
    notes: Iterable[str] = (),
) -> Manifest:
    """Read, validate and write one file into the catalog.

    Parameters
    ----------
    catalog
        A :class:`Catalog` or its root directory.
    path
        Input file (see :func:`read_bars` / :func:`read_trades`).
    venue, market, symbol
        Destination.
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
    mode
        ``"create"``, ``"append"`` or ``"overwrite"`` (see :meth:`Catalog.write`).
    notes
        Lines recorded in the manifest (the source file name is always added).

    Returns
    -------
    Manifest
        The dataset's manifest after the write.
    """
    cat = catalog if isinstance(catalog, Catalog) else Catalog(catalog)
    source = Path(path)
    interval_ns: int | None = None
    if kind == "bars":
        table, interval_ns = _load_bars(
            source, interval=interval, ts_column=ts_column, ts_unit=ts_unit, time_is="auto", duplicates=duplicates
        )
        dataset = dataset or f"bars_{format_interval(interval_ns)}"
    elif kind == "trades":
        if interval is not None:
            raise DataError(f"{source.name}: interval applies to bars only, not to trades")
        table = read_trades(source, ts_column=ts_column, ts_unit=ts_unit)
        dataset = dataset or "trades"
    else:
        raise DataError(f"kind {kind!r} is not 'bars' or 'trades'")
    period = period or _default_period(kind, interval_ns)
    return cat.write(
        table,
        venue,
        market,
        symbol,
        dataset,
        period,
        kind=kind,
        interval_ns=interval_ns,
        mode=mode,
        notes=[f"imported from {source.name}", *notes],
    )
