"""OKX public trade archives (``static.okx.com/cdn/okex/traderecords``): download, verify and import them.

OKX publishes (``okx.com/data-download``) one zip per instrument and day, holding one CSV, with no checksum
beside it::

    <base>/trades/daily/20220513/BTC-USDT-trades-2022-05-13.zip

The CSV's header names ``trade_id``, ``side`` (the taker's, ``buy``/``sell``), ``price``, ``size`` (base units for
SPOT, contracts for SWAP/FUTURES) and ``created_time`` (milliseconds), after the instrument's column
(``instrument_name``). A day's file is cut at OKX's own day boundary (which has not always been UTC midnight),
so every row of every archive is imported, not only the rows of the asked UTC days.

:func:`fetch` downloads them through :func:`tradebus.data.archive_fetch.fetch` (parallel, resumable, retried).
OKX publishes no checksum, so an archive is verified as far as it can be: it must be a zip of one CSV whose
member passes its CRC-32 check (a truncated or corrupt zip is refused) and whose header holds those columns.
:func:`import_archives` then streams the CSVs, in date order, into one catalog dataset through
:func:`tradebus.data.ingest.import_path`, which checks every row (nothing is written unless all are valid).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Literal

from tradebus.data import archive_fetch
from tradebus.data.archive_fetch import Archive, FetchReport, check_zip_csv, import_zipped_csvs
from tradebus.data.catalog import Catalog, check_name
from tradebus.data.ingest import ImportResult
from tradebus.errors import DataError

__all__ = ["DEFAULT_BASE_URL", "archives", "fetch", "import_archives"]

DEFAULT_BASE_URL = "https://static.okx.com/cdn/okex/traderecords"
Market = Literal["spot", "swap", "futures"]
_MARKETS = ("spot", "swap", "futures")
_COLUMNS = ("trade_id", "side", "price", "size", "created_time")
#: Markets whose trade sizes are in base units: contract size 1 (swaps and futures count contracts).
_BASE_UNIT_TRADES = {"spot": 1.0}


def archives(market: Market, symbol: str, start: date, end: date) -> list[Archive]:
    """The daily trade archives of instrument ``symbol`` (``BTC-USDT``, ``BTC-USDT-SWAP``) for ``[start, end]``.

    Raises
    ------
    DataError
        On an unknown market, a symbol that is not a catalog name, or ``end < start``; each named by the flag of
        ``tradebus data download okx`` that sets it.
    """
    check_name("symbol", symbol)
    if market not in _MARKETS:
        raise DataError(f"--market {market!r} is not an OKX archive market: {', '.join(_MARKETS)}")
    if end < start:
        raise DataError(f"--end {end} is before --start {start}")
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    return [Archive(d.isoformat(), f"trades/daily/{d:%Y%m%d}/{symbol}-trades-{d.isoformat()}.zip") for d in days]


def _verify(path: Path) -> str | None:
    """Why an OKX trade archive cannot be imported: not a sound zip of one CSV, or a header without OKX's columns."""
    problem = check_zip_csv(path)
    if problem is not None:
        return problem
    with zipfile.ZipFile(path) as archive, archive.open(archive.namelist()[0]) as member:
        header = member.readline().decode("utf-8-sig", "replace").strip()
    columns = {c.strip().lower() for c in header.split(",")}
    if not columns.issuperset(_COLUMNS):
        return f"header {header[:120]!r} lacks OKX's trade columns {', '.join(_COLUMNS)}"
    return None


def fetch(
    items: list[Archive],
    cache_dir: Path,
    *,
    base_url: str = DEFAULT_BASE_URL,
    workers: int = 4,
    timeout: float = 60.0,
    on_done: Callable[[Archive, str], None] | None = None,
) -> FetchReport:
    """Download archives into ``cache_dir``, each verified as a zip of one CSV (CRC-32) with OKX's trade header.

    As :func:`tradebus.data.archive_fetch.fetch` (its parameters, its errors): OKX publishes no checksum,
    so a day is missing when its archive answers HTTP 404, and a cached archive is reused when it verifies.
    """
    return archive_fetch.fetch(items, cache_dir, base_url=base_url, venue="okx", home=DEFAULT_BASE_URL,
                               verify=_verify, workers=workers, timeout=timeout, on_done=on_done)


def import_archives(
    catalog: Catalog | str | os.PathLike[str],
    zips: list[Path],
    *,
    market: Market,
    symbol: str,
    mode: Literal["create", "append", "overwrite"] = "create",
) -> ImportResult:
    """Import verified archives (from :func:`fetch`) as the dataset ``okx/<market>/<symbol>/trades``, in order.

    Raises
    ------
    DataError
        Naming the archive (its zip in the cache) and its CSV, the row and field of the
        first bad value; nothing is written.
    ConfigError
        An OS error extracting a CSV or writing the catalog; nothing is written.
    """
    if not zips:
        raise DataError("no verified archives to import")
    ordered = sorted(zips)
    return import_zipped_csvs(
        catalog,
        ordered,
        venue="okx",
        market=market,
        symbol=symbol,
        kind="trades",
        mode=mode,
        notes=[f"OKX public data: {len(ordered)} verified trade archives ({ordered[0].name} .. {ordered[-1].name})"],
        contract_size=_BASE_UNIT_TRADES.get(market),
    )
