"""Open-interest histories from venue files into the catalog's ``open_interest`` datasets.

:func:`import_open_interest` reads one file and writes its rows (``ts_event``, ``ts_init``,
``open_interest``) sorted by time. The format is recognised from the content:

* **Binance** ``GET /futures/data/openInterestHist`` (USD-M and COIN-M), saved as JSON: an
  array of ``{"symbol", "sumOpenInterest", "sumOpenInterestValue", "timestamp"}`` (ms; numbers
  as strings). ``open_interest`` is ``sumOpenInterest`` (base units on USD-M, contracts on
  COIN-M).
* **Binance** ``GET /fapi/v1/openInterest``: one ``{"openInterest", "symbol", "time"}`` object.
* **Binance Vision** daily ``metrics`` CSV (``create_time,symbol,sum_open_interest,...``,
  ``create_time`` as ``YYYY-MM-DD HH:MM:SS`` UTC).
* **Bybit** v5 ``GET /v5/market/open-interest``: ``{"result": {"symbol", "list": [{"openInterest",
  "timestamp"}]}}`` (newest first; sorted here).

History files carry the venue's time only, so ``ts_init = ts_event``. A row of another symbol
than the one imported, a value that is not a finite number >= 0, a missing field or two rows
at the same time is a :class:`~tradebus.errors.DataError` naming the file, the row and the
field; nothing is written then.
"""

from __future__ import annotations

import csv
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from tradebus.data.catalog import Catalog, Manifest
from tradebus.data.ingest import TS_MAX_NS, TS_MIN_NS
from tradebus.errors import DataError

__all__ = ["import_open_interest", "read_open_interest"]

_MS = 1_000_000


def read_open_interest(path: str | Path, symbol: str) -> tuple[np.ndarray, np.ndarray, str]:
    """``(ts_event ns, open_interest, format name)`` of an open-interest file, sorted by time.

    Raises
    ------
    DataError
        Unreadable or unknown content, another symbol, a bad or missing value, a repeated time.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: not valid JSON: {exc}") from None
        rows, fmt = _json_rows(doc, path)
    else:
        rows, fmt = _vision_rows(text, path), "binance vision metrics CSV"
    if not rows:
        raise DataError(f"{path}: no open-interest rows")
    out = []
    for k, row in enumerate(rows, start=1):
        where = f"{path} row {k}"
        got = row.get("symbol")
        if got is not None and got != symbol:
            raise DataError(f"{where}: symbol {got!r}, importing {symbol!r}")
        out.append((_time(row, where), _value(row, where)))
    out.sort(key=lambda pair: pair[0])
    ts = np.array([t for t, _ in out], np.int64)
    dup = np.flatnonzero(np.diff(ts) == 0)
    if dup.size:
        raise DataError(f"{path}: two rows at time {int(ts[dup[0]])} ns")
    return ts, np.array([v for _, v in out], np.float64), fmt


def import_open_interest(
    path: str | Path,
    catalog: Catalog | str | Path,
    venue: str,
    market: str,
    symbol: str,
    *,
    suffix: str = "",
    mode: Literal["create", "append", "overwrite"] = "create",
) -> Manifest:
    """Import one open-interest file as the ``open_interest`` dataset of ``venue/market/symbol``.

    Raises
    ------
    DataError
        See :func:`read_open_interest`; the catalog is left as it was.
    """
    path = Path(path)
    ts, values, fmt = read_open_interest(path, symbol)
    cat = catalog if isinstance(catalog, Catalog) else Catalog(catalog)
    table = pa.table({"ts_event": ts, "ts_init": ts, "open_interest": values})
    return cat.write(
        table, venue, market, symbol, f"open_interest{suffix}", kind="open_interest", mode=mode,
        notes=(f"imported from {fmt} {path.name}",),
    )


def _json_rows(doc: Any, path: Path) -> tuple[list[dict[str, Any]], str]:
    if isinstance(doc, list):
        if not all(isinstance(row, dict) for row in doc):
            raise DataError(f"{path}: a JSON array of objects expected (Binance openInterestHist)")
        return [
            {"symbol": row.get("symbol"), "ms": row.get("timestamp"), "value": row.get("sumOpenInterest"),
             "field": "sumOpenInterest"}
            for row in doc
        ], "binance openInterestHist JSON"
    if isinstance(doc, dict) and "openInterest" in doc and "time" in doc:
        return [{"symbol": doc.get("symbol"), "ms": doc["time"], "value": doc["openInterest"],
                 "field": "openInterest"}], "binance openInterest JSON"
    result = doc.get("result") if isinstance(doc, dict) else None
    if isinstance(result, dict) and isinstance(result.get("list"), list):
        symbol = result.get("symbol")
        return [
            {"symbol": symbol, "ms": row.get("timestamp"), "value": row.get("openInterest"), "field": "openInterest"}
            for row in result["list"]
            if isinstance(row, dict)
        ], "bybit open-interest JSON"
    raise DataError(f"{path}: not a known open-interest file (Binance openInterestHist/openInterest, Bybit v5)")


def _vision_rows(text: str, path: Path) -> list[dict[str, Any]]:
    reader = csv.DictReader(text.splitlines())
    names = reader.fieldnames or []
    if "create_time" not in names or "sum_open_interest" not in names:
        raise DataError(f"{path}: a CSV needs the columns create_time and sum_open_interest (Binance Vision metrics)")
    rows = []
    for k, row in enumerate(reader, start=1):
        stamp = row.get("create_time") or ""
        try:
            moment = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        except ValueError:
            raise DataError(f"{path} row {k}: create_time {stamp!r} is not YYYY-MM-DD HH:MM:SS") from None
        rows.append({"symbol": row.get("symbol"), "ms": int(moment.timestamp()) * 1000,
                     "value": row.get("sum_open_interest"), "field": "sum_open_interest"})
    return rows


def _time(row: dict[str, Any], where: str) -> int:
    ms = row.get("ms")
    try:
        value = int(ms)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DataError(f"{where}: timestamp {ms!r} is not a whole number of milliseconds") from None
    if value <= 0:
        raise DataError(f"{where}: timestamp {value} must be > 0")
    if not TS_MIN_NS <= value * _MS < TS_MAX_NS:
        raise DataError(f"{where}: timestamp {value} is not a plausible time in milliseconds, as the venue writes "
                        "it (expected years 2000..2100; seconds or microseconds?)")
    return value * _MS


def _value(row: dict[str, Any], where: str) -> float:
    raw = row.get("value")
    field = row["field"]
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DataError(f"{where}: {field} {raw!r} is not a number") from None
    if not (math.isfinite(value) and value >= 0.0):
        raise DataError(f"{where}: {field} {raw!r} must be a finite number >= 0")
    return value
