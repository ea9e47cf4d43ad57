"""Bybit public trade archives (``public.bybit.com``): download, verify and import them.

Bybit publishes one gzip CSV per symbol and UTC day, with no checksum beside it::

    <base>/trading/BTCUSDT/BTCUSDT2024-12-01.csv.gz        (linear and inverse contracts)
    <base>/spot/BTCUSDT/BTCUSDT_2024-12-01.csv.gz          (spot)

The contract files' header is ``timestamp,symbol,side,size,price,tickDirection,trdMatchID,grossValue,
homeNotional,foreignNotional`` (``timestamp`` in seconds with a fraction, ``side`` ``Buy``/``Sell`` of the
taker, ``size`` in base units for linear contracts and in USD contracts for inverse ones); the spot files'
is ``id,timestamp,price,volume,side`` (``timestamp`` in milliseconds, ``volume`` in base units). Newer files
may add columns after these (``rpi``); they are ignored.

:func:`fetch` downloads them through :func:`tradebus.data.archive_fetch.fetch` (parallel, resumable, retried).
Bybit publishes no checksum, so an archive is verified as far as it can be: the whole gzip stream is read
(its CRC-32 and length trailer checked: a truncated or corrupt file is refused) and its header must be the
one of its market. :func:`import_archives` then streams the files, in date order, into one catalog dataset
through :func:`tradebus.data.ingest.import_path`, which checks every row (nothing is written unless all are
valid).
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Literal

from tradebus.data import archive_fetch
from tradebus.data.archive_fetch import Archive, FetchReport, Verify, day_window
from tradebus.data.catalog import Catalog, check_name
from tradebus.data.ingest import ImportResult, import_path
from tradebus.errors import DataError

__all__ = ["DEFAULT_BASE_URL", "archives", "fetch", "import_archives"]

DEFAULT_BASE_URL = "https://public.bybit.com"
Market = Literal["linear", "inverse", "spot"]
_MARKETS = ("linear", "inverse", "spot")
#: The leading columns of each market's header.
_HEADER = {
    "contract": ("timestamp", "symbol", "side", "size", "price", "tickdirection", "trdmatchid"),
    "spot": ("id", "timestamp", "price", "volume", "side"),
}
#: Markets whose trade sizes are in base units: contract size 1 (inverse sizes count USD contracts).
_BASE_UNIT_TRADES = {"linear": 1.0, "spot": 1.0}
_CHUNK = 1 << 20


def archives(market: Market, symbol: str, start: date, end: date) -> list[Archive]:
    """The daily trade archives of ``[start, end]`` (inclusive).

    Raises
    ------
    DataError
        On an unknown market, a symbol that is not a catalog name, or ``end < start``; each named by the
        flag of ``tradebus data download bybit`` that sets it.
    """
    check_name("symbol", symbol)
    if market not in _MARKETS:
        raise DataError(f"--market {market!r} is not a Bybit archive market: {', '.join(_MARKETS)}")
    if end < start:
        raise DataError(f"--end {end} is before --start {start}")
    days = [(start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]
    if market == "spot":
        return [Archive(d, f"spot/{symbol}/{symbol}_{d}.csv.gz") for d in days]
    return [Archive(d, f"trading/{symbol}/{symbol}{d}.csv.gz") for d in days]


def _verifier(market: str) -> Verify:
    """Why a Bybit archive of ``market`` cannot be imported: a broken gzip stream or another header."""
    expected = _HEADER["spot" if market == "spot" else "contract"]

    def verify(path: Path) -> str | None:
        try:
            with gzip.open(path, "rb") as fh:
                header = fh.readline()
                while fh.read(_CHUNK):  # the whole stream: its CRC-32 and length are checked at its end
                    pass
        except (OSError, EOFError, zlib.error) as exc:
            return f"is not a complete gzip file ({type(exc).__name__}: {exc}); truncated or corrupt archive"
        columns = tuple(c.strip().lower() for c in header.decode("utf-8", "replace").split(","))
        if columns[: len(expected)] != expected:
            return (f"header {header[:120].decode('utf-8', 'replace').strip()!r} is not Bybit's {market} trade header "
                    f"({','.join(expected)},...)")
        return None

    return verify


def fetch(
    items: list[Archive],
    cache_dir: Path,
    *,
    market: Market,
    base_url: str = DEFAULT_BASE_URL,
    workers: int = 4,
    timeout: float = 60.0,
    on_done: Callable[[Archive, str], None] | None = None,
) -> FetchReport:
    """Download archives into ``cache_dir``, each verified as a whole gzip stream with its market's header.

    As :func:`tradebus.data.archive_fetch.fetch` (its parameters, its errors): Bybit publishes no checksum,
    so a day is missing when its archive answers HTTP 404, and a cached archive is reused when it verifies.
    """
    return archive_fetch.fetch(items, cache_dir, base_url=base_url, venue="bybit", home=DEFAULT_BASE_URL,
                               verify=_verifier(market), workers=workers, timeout=timeout, on_done=on_done)


def import_archives(
    catalog: Catalog | str | os.PathLike[str],
    paths: list[Path],
    *,
    market: Market,
    symbol: str,
    mode: Literal["create", "append", "overwrite"] = "create",
    days: tuple[date, date] | None = None,
) -> ImportResult:
    """Import verified archives (from :func:`fetch`) as the dataset ``bybit/<market>/<symbol>/trades``, in order.

    Parameters
    ----------
    days
        ``(start, end)``, UTC days, inclusive: only the trades of these days are imported. ``None``: every row.

    Raises
    ------
    DataError
        Naming the archive, the row and field of the first bad value, or no row in ``days``; nothing is written.
    ConfigError
        An OS error writing the catalog; nothing is written.
    """
    if not paths:
        raise DataError("no verified archives to import")
    ordered = sorted(paths)
    window = day_window(days)
    return import_path(
        catalog,
        ordered,
        venue="bybit",
        market=market,
        symbol=symbol,
        kind="trades",
        mode=mode,
        window_ns=window,
        notes=[f"Bybit public data: {len(ordered)} verified trade archives ({ordered[0].name} .. {ordered[-1].name})"],
        contract_size=_BASE_UNIT_TRADES.get(market),
    )
