"""Import OKX v5 candle pages (``GET /api/v5/market/candles`` / ``history-candles``) as bars.

A page is the JSON body the REST API returns, the envelope or its ``data`` list::

    {"code": "0", "msg": "", "data": [
        ["1747094040000", "102806.1", "102820.4", "102806.1", "102820.4",
         "1040.37", "10.4037", "1069603.34883", "1"], ...]}

Each candle is ``[ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]``, all strings: ``ts``
the candle's OPEN time in Unix milliseconds, newest candle first. Volume units depend on the
instrument (OKX's field descriptions, followed by ccxt's ``okx.parse_ohlcv``): on SPOT ``vol``
is in the base currency and ``volCcy`` in the quote currency; on SWAP, FUTURES and OPTION
``vol`` counts contracts and ``volCcy`` is in the base currency. The stored ``volume`` is
always base currency: ``vol`` for ``market="spot"``, ``volCcy`` otherwise (the manifest's notes
say which). ``confirm`` is ``1`` for a finished candle and ``0`` for the one still forming.
OKX's data-download page publishes trades and order books, not candles, so candles come only
from these pages.

Rules (a bad candle is refused naming the file, its 1-based position in the page and the
field; nothing is written):

* the envelope's ``code`` is ``"0"``; a candle has the nine fields; numbers parse; ``ts`` is
  an integer millisecond time in 2015..2100; prices and volumes pass the bar checks of
  :func:`tradebus.data.ingest.validate_bars` (finite positive prices, ``low <= open, close <=
  high``, volume >= 0) and consecutive candles are at least one interval apart; an interval given
  is one that two consecutive candles of the first page in time are apart (when it has three or
  more), as :func:`tradebus.data.ingest.check_given_interval` asks of a file: daily candles read as
  ``1H`` would be stamped 23 hours before they closed;
* ``confirm`` is ``0`` or ``1``. An unfinished candle (``0``) is dropped, and noted in the
  manifest, when it is the newest candle of the whole import (the API's first row when the
  pages were fetched from now backwards); anywhere else it is refused, since a candle that
  was still forming would be stored as if final;
* pages may come in any order and overlap (a page fetched twice, or ``before``/``after``
  cursors that share a candle): a candle repeated at the same time must equal the one
  already taken from an earlier page (it is then skipped), else it is refused, naming both.

The pages are read twice (their time ranges first, then the candles in time order), so at
most two pages are held in memory whatever their number. Bars are stamped with their close
time, ``ts_event = ts_init = ts + interval``, as every bar in the catalog.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
import pyarrow as pa
from loguru import logger

from tradebus.data.catalog import BAR_SCHEMA, Catalog, Manifest
from tradebus.data.ingest import (
    _default_period,
    bars_dataset,
    check_given_interval,
    detect_interval,
    format_interval,
    parse_interval,
    validate_bars,
)
from tradebus.data.quality import QualityCheck
from tradebus.data.sources import require_file
from tradebus.errors import ConfigError, DataError

__all__ = ["import_okx_candles"]

MARKETS = ("spot", "swap", "futures", "option")
_MS = 1_000_000
_MIN_MS, _MAX_MS = 1_420_070_400_000, 4_102_444_800_000  # 2015-01-01 .. 2100-01-01
_FIELDS = ("ts", "o", "h", "l", "c", "vol", "volCcy", "volCcyQuote", "confirm")


@dataclass
class _Page:
    """The candles of one page in time order, with their positions in the file."""

    name: str
    ts_ms: np.ndarray
    values: np.ndarray  # open, high, low, close, volume per row
    confirm: np.ndarray  # bool: finished candle
    rows: np.ndarray  # 1-based position of each candle in the page


def _read_page(path: Path, volume_index: int) -> _Page:
    require_file(path)
    try:
        doc = msgspec.json.decode(path.read_bytes())
    except msgspec.DecodeError as exc:
        raise DataError(f"{path}: not valid JSON: {exc}") from None
    if isinstance(doc, dict):
        if str(doc.get("code")) != "0":
            raise DataError(f"{path}: OKX error response code {doc.get('code')!r}: {doc.get('msg')!r}")
        doc = doc.get("data")
    if not isinstance(doc, list):
        raise DataError(f'{path}: expected an OKX candles response {{"code": "0", "data": [[ts, o, h, l, c, ...]]}}')
    n = len(doc)
    ts = np.empty(n, dtype=np.int64)
    values = np.empty((n, 5), dtype=np.float64)
    confirm = np.empty(n, dtype=bool)
    for i, candle in enumerate(doc):
        where = f"{path} row {i + 1}"
        if not isinstance(candle, list) or len(candle) != len(_FIELDS):
            got = len(candle) if isinstance(candle, list) else type(candle).__name__
            raise DataError(f"{where}: expected the {len(_FIELDS)} fields {list(_FIELDS)}, got {got}")
        text = str(candle[0])
        if not text.isdigit() or not _MIN_MS <= int(text) < _MAX_MS:
            raise DataError(f"{where}: field ts: {candle[0]!r} is not a Unix time in ms (2015..2100)")
        ts[i] = int(text)
        for j, k in enumerate((1, 2, 3, 4, volume_index)):
            try:
                values[i, j] = float(candle[k])
            except (TypeError, ValueError):
                raise DataError(f"{where}: field {_FIELDS[k]}: {candle[k]!r} is not a number") from None
        if str(candle[8]) not in ("0", "1"):
            raise DataError(f"{where}: field confirm: {candle[8]!r} is not 0 (forming) or 1 (finished)")
        confirm[i] = str(candle[8]) == "1"
    order = np.argsort(ts, kind="stable")
    return _Page(str(path), ts[order], values[order], confirm[order], order.astype(np.int64) + 1)


def import_okx_candles(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    catalog: Catalog | str | os.PathLike[str],
    symbol: str,
    *,
    interval: str | int | None = None,
    market: str = "spot",
    dataset: str | None = None,
    mode: str = "create",
) -> Manifest:
    """Import OKX candle pages as the bar dataset ``okx/<market>/<symbol>/bars_<interval>``.

    Parameters
    ----------
    paths
        One page or several, in any order (JSON bodies of ``market/candles`` or
        ``market/history-candles``).
    catalog
        Catalog (or its root directory).
    symbol
        The OKX instrument id (``BTC-USDT``, ``BTC-USDT-SWAP``): the catalog symbol.
    interval
        The ``bar`` the pages were fetched with (``"1m"``, ``"1H"``, ``"1D"``, ``"1Dutc"``, ns int);
        detected from the most frequent spacing when ``None``. A ``utc`` bar (``6Hutc`` .. ``1Wutc``:
        opening at UTC boundaries, not Hong Kong time's) lasts as long as the bar without the suffix;
        months (``1M``, ``3Mutc``) are no fixed interval and are refused.
    market
        ``spot``, ``swap``, ``futures`` or ``option``: the dataset's market directory and the
        volume field taken (see the module docstring).
    dataset, mode
        Dataset name (default ``bars_<interval>``); ``create``, ``append`` or ``overwrite``.

    Returns
    -------
    Manifest
        The committed dataset's manifest (with the quality summary).

    Raises
    ------
    ConfigError
        An unknown ``market`` or an ``interval`` that is no bar length.
    DataError
        A page breaking a rule of the module docstring, naming the file, row and field;
        nothing is left in the catalog.
    """
    if market not in MARKETS:
        raise ConfigError(f"market {market!r} is not one of {', '.join(MARKETS)}")
    interval_ns = _bar_ns(interval) if interval is not None else None
    files = [Path(paths)] if isinstance(paths, str | os.PathLike) else [Path(p) for p in paths]
    if not files:
        raise DataError("no OKX candle pages to import")
    volume_index = 5 if market == "spot" else 6
    ranges = []
    for path in files:
        page = _read_page(path, volume_index)
        if page.ts_ms.size:
            ranges.append((int(page.ts_ms[0]), int(page.ts_ms[-1]), path.name, path))
    if not ranges:
        raise DataError(f"{files[0]}: no candles")
    ranges.sort(key=lambda r: (r[0], r[1], r[2]))
    newest = max(r[1] for r in ranges)
    first = _read_page(ranges[0][3], volume_index)
    if interval_ns is None:
        try:
            interval_ns = detect_interval(first.ts_ms * _MS)
        except DataError as exc:
            raise DataError(f"{first.name}: {exc}") from None
    else:  # daily candles read as 1H would be stamped 23 hours before they closed
        check_given_interval(first.name, first.ts_ms * _MS, interval_ns, "ts")
    interval_ms = interval_ns // _MS
    cat = catalog if isinstance(catalog, Catalog) else Catalog(catalog)
    name = dataset or bars_dataset(cat, "okx", market, symbol, interval_ns)
    writer = cat.writer("okx", market, symbol, name, _default_period("bars", interval_ns), kind="bars",  # type: ignore[arg-type]
                        interval_ns=interval_ns, mode=mode)  # type: ignore[arg-type]
    check = QualityCheck("bars", interval_ns)
    prev: _Page | None = None
    last_ms: int | None = None
    skipped = dropped = 0
    try:
        for _, _, _, path in ranges:
            page = _read_page(path, volume_index)
            keep = np.ones(page.ts_ms.size, dtype=bool)
            if last_ms is not None:
                for i in np.flatnonzero(page.ts_ms <= last_ms).tolist():
                    _same_as_taken(page, i, prev)
                    keep[i] = False
                skipped += int(np.count_nonzero(~keep))
            forming = np.flatnonzero(keep & ~page.confirm)
            for i in forming.tolist():
                where = f"{page.name} row {int(page.rows[i])}"
                if int(page.ts_ms[i]) != newest:
                    raise DataError(f"{where}: field confirm: '0' (a candle still forming) is not the newest candle "
                                    "of the import; fetch the page again once the candle has closed")
                logger.info("{}: dropped the candle still forming at {} ms (confirm 0)", where, int(page.ts_ms[i]))
                keep[i] = False
                dropped += 1
            rows = page.rows[keep]
            ts = page.ts_ms[keep]
            values = page.values[keep]
            if ts.size:
                joined = ts if last_ms is None else np.concatenate(([last_ms], ts))
                short = np.flatnonzero(np.diff(joined) < interval_ms)
                if short.size:
                    i = int(short[0]) + (0 if last_ms is None else -1) + 1
                    raise DataError(f"{page.name} row {int(rows[i])}: field ts: {int(ts[i])} is less than the interval "
                                    f"{format_interval(interval_ns)} after the previous candle (overlapping bars)")
                stamped = pa.array((ts + interval_ms) * _MS)
                table = pa.Table.from_arrays([stamped, stamped, *(pa.array(values[:, j]) for j in range(5))],
                                             schema=BAR_SCHEMA)
                validate_bars(table, page.name, rows)
                writer.write(table)
                check.feed(table)
                last_ms = int(ts[-1])
            prev = page
        notes = [
            f"OKX candles: {len(ranges)} page(s), {ranges[0][2]} .. {ranges[-1][2]}",
            f"bar time: ts is the candle OPEN time; shifted +{format_interval(interval_ns)} to the close stamp",
            "volume: vol (base currency, spot)" if market == "spot"
            else "volume: volCcy (base currency; vol counts contracts)",
        ]
        if skipped:
            notes.append(f"{skipped} candle(s) repeated by overlapping pages skipped (equal to the ones taken)")
        if dropped:
            notes.append("the newest candle was still forming (confirm 0) and was dropped")
        return writer.commit(notes, quality=check.report().summary())
    except BaseException:
        writer.abort()
        raise


def _bar_ns(bar: str | int) -> int:
    """The length in ns of an OKX ``bar`` (``1m``, ``4H``, ``1D``, ``1Dutc``) or of an int of ns."""
    length = bar[:-3] if isinstance(bar, str) and bar.endswith("utc") else bar
    try:
        return parse_interval(length, ints=not isinstance(bar, str))
    except DataError as exc:
        raise ConfigError(str(exc) if length == bar else f"interval {bar!r}: {exc}") from None


def _same_as_taken(page: _Page, i: int, prev: _Page | None) -> None:
    """Refuse a repeated candle that differs from the one taken from the previous page."""
    t = int(page.ts_ms[i])
    where = f"{page.name} row {int(page.rows[i])}"
    j = int(np.searchsorted(prev.ts_ms, t)) if prev is not None else -1
    if prev is None or j >= prev.ts_ms.size or int(prev.ts_ms[j]) != t:
        raise DataError(f"{where}: field ts: {t} is before the last candle taken and not in the page before "
                        f"({prev.name if prev else '-'}); pages overlap by more than one page")
    if not np.array_equal(page.values[i], prev.values[j]) or page.confirm[i] != prev.confirm[j]:
        raise DataError(f"{where}: candle at {t} ms differs from {prev.name} row {int(prev.rows[j])} "
                        f"({page.values[i].tolist()} vs {prev.values[j].tolist()})")
