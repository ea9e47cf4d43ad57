"""Binance public data (``data.binance.vision``): download, verify and import the archives.

Binance publishes one zip per symbol and day (``daily``) or month (``monthly``), each
holding one CSV, next to a ``.CHECKSUM`` file (``<sha256>  <zip name>``)::

    <base>/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2021-01-08.zip[.CHECKSUM]
    <base>/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2021-01-08.zip
    <base>/futures/um/monthly/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2021-01.zip

``market`` is ``spot``, ``um`` (USD-M futures) or ``cm`` (COIN-M futures). Spot klines
have no header, futures ones do; spot archives from 2025 on stamp in microseconds,
older ones in milliseconds: the importer detects both per file.

Steps
-----
1. :func:`archives` lists the zips of a date range.
2. :func:`fetch` downloads them through :func:`tradebus.data.archive_fetch.fetch` (parallel,
   resumable, retried; see there) into a cache directory. A zip already there whose sha256 matches
   its ``.CHECKSUM`` is reused. A zip whose sha256 differs from its checksum, or that is not a
   readable zip holding one CSV, is refused: removed and reported; so is one whose ``.CHECKSUM``
   names another zip (before it is downloaded). A day without a ``.CHECKSUM`` (HTTP 404) is missing.
3. :func:`import_archives` streams the verified CSVs, in date order, into one
   catalog dataset through :func:`tradebus.data.ingest.import_path`; nothing is
   written to the catalog unless every archive was verified and every row is valid.

Only the URL prefix is configurable (``base_url``); tests serve the same layout from
a local HTTP server.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Literal


from tradebus.data import archive_fetch
from tradebus.data.archive_fetch import (
    RETRIES, RETRY_CAP_S, Archive, FetchReport, check_zip_csv, day_window, import_zipped_csvs
)
from tradebus.data.book_depth import import_book_depth
from tradebus.data.catalog import Catalog, check_name
from tradebus.data.ingest import ImportResult
from tradebus.errors import DataError

__all__ = [
    "DEFAULT_BASE_URL",
    "RETRIES",
    "RETRY_CAP_S",
    "Archive",
    "FetchReport",
    "archives",
    "catalog_market",
    "fetch",
    "import_archives",
]

DEFAULT_BASE_URL = "https://data.binance.vision/data"
Market = Literal["spot", "um", "cm"]
DataType = Literal["klines", "trades", "aggTrades", "bookDepth"]
_PREFIX = {"spot": "spot", "um": "futures/um", "cm": "futures/cm"}
_CATALOG_MARKET = {"spot": "spot", "um": "usdm", "cm": "coinm"}
#: Markets whose trade archives' ``qty`` is in base units: contract size 1 (COIN-M's counts contracts of USD).
_BASE_UNIT_TRADES = {"spot": 1.0, "um": 1.0}


def catalog_market(market: str) -> str:
    """The catalog's market name of a Binance archive market (``um`` -> ``usdm``)."""
    return _CATALOG_MARKET[market]


def archives(
    market: Market,
    data: DataType,
    symbol: str,
    start: date,
    end: date,
    *,
    interval: str | None = None,
    monthly: bool = False,
) -> list[Archive]:
    """The archives of ``[start, end]`` (inclusive; monthly: every month touched).

    Raises
    ------
    DataError
        On an unknown market or data type, a symbol or interval that is not a catalog name (each
        is a directory of the archive's path in the cache), klines without an interval, monthly
        bookDepth (Binance publishes it daily only), or ``end < start``; each named by the flag of
        ``tradebus data download binance`` that sets it (``--end``, ``--interval``, ...).
    """
    check_name("symbol", symbol)
    if interval is not None:
        check_name("interval", interval)
    if market not in _PREFIX:
        raise DataError(f"--market {market!r} is not a Binance archive market: {', '.join(sorted(_PREFIX))}")
    if data not in ("klines", "trades", "aggTrades", "bookDepth"):
        raise DataError(f"--data {data!r} is not klines, trades, aggTrades or bookDepth")
    if data == "bookDepth" and market == "spot":
        raise DataError("--data bookDepth is published for futures only (--market um or cm)")
    if data == "bookDepth" and monthly:
        raise DataError("bookDepth is published as daily archives only: drop --monthly (the days of --start..--end "
                        "are fetched one archive each)")
    if (data == "klines") != (interval is not None):
        raise DataError("--data klines needs --interval (1m, 1h, ...)" if interval is None
                        else f"--interval {interval} is for klines only, not --data {data}")
    if end < start:
        raise DataError(f"--end {end} is before --start {start}")
    if monthly:
        labels, month = [], date(start.year, start.month, 1)
        while month <= end:
            labels.append(month.strftime("%Y-%m"))
            month = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    else:
        labels = [(start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]
    folder = f"{_PREFIX[market]}/{'monthly' if monthly else 'daily'}/{data}/{symbol}"
    if interval is not None:
        return [Archive(p, f"{folder}/{interval}/{symbol}-{interval}-{p}.zip") for p in labels]
    return [Archive(p, f"{folder}/{symbol}-{data}-{p}.zip") for p in labels]


def fetch(
    items: list[Archive],
    cache_dir: Path,
    *,
    base_url: str = DEFAULT_BASE_URL,
    workers: int = 4,
    timeout: float = 60.0,
    on_done: Callable[[Archive, str], None] | None = None,
) -> FetchReport:
    """Download archives into ``cache_dir``, each verified against its ``.CHECKSUM`` and as a zip of one CSV.

    As :func:`tradebus.data.archive_fetch.fetch` (its parameters, its errors); ``base_url`` is the URL
    prefix of the ``spot/`` and ``futures/`` trees.
    """
    return archive_fetch.fetch(items, cache_dir, base_url=base_url, venue="binance vision", home=DEFAULT_BASE_URL,
                               verify=check_zip_csv,
                               checksum=".CHECKSUM",
                               workers=workers, timeout=timeout, on_done=on_done)


def import_archives(
    catalog: Catalog | str | os.PathLike[str],
    zips: list[Path],
    *,
    market: Market,
    data: DataType,
    symbol: str,
    interval: str | None = None,
    dataset: str | None = None,
    mode: Literal["create", "append", "overwrite"] = "create",
    days: tuple[date, date] | None = None,
) -> ImportResult:
    """Import verified archives (from :func:`fetch`) into one dataset, in order.

    The dataset is ``binance/<spot|usdm|coinm>/<symbol>/<bars_<interval>|trades|aggtrades|book_depth>``.
    The CSV of one archive at a time is extracted to a temporary directory (``bookDepth``
    zips are read in place by :func:`tradebus.data.book_depth.import_book_depth`).

    Parameters
    ----------
    days
        ``(start, end)``, UTC days, inclusive: only the trades of these days, or the bars opening
        in them, are imported (a monthly archive holds the whole month). ``None``: every row.

    Raises
    ------
    DataError
        Naming the archive (its zip in the cache) and its CSV, the row and field of the first bad
        value, or no row in ``days``; nothing is written.
    ConfigError
        An OS error extracting a CSV (a full disk, a file size limit; naming the zip and the
        temporary folder) or writing the catalog; nothing is written, the temporary folder is removed.
    """
    if not zips:
        raise DataError("no verified archives to import")
    if data == "bookDepth":
        manifest = import_book_depth(sorted(zips), catalog, symbol, market=catalog_market(market), mode=mode)
        return ImportResult([manifest], "timestamp")
    kind: Literal["bars", "trades"] = "bars" if data == "klines" else "trades"
    name = dataset or ("aggtrades" if data == "aggTrades" else None)
    window = day_window(days)
    return import_zipped_csvs(
        catalog,
        zips,
        venue="binance",
        market=catalog_market(market),
        symbol=symbol,
        kind=kind,
        interval=interval,
        dataset=name,
        bar_time="open" if kind == "bars" else "auto",
        mode=mode,
        window_ns=window,
        notes=[f"Binance public data: {len(zips)} verified {data} archives ({zips[0].name} .. {zips[-1].name})"],
        contract_size=_BASE_UNIT_TRADES.get(market),
    )
