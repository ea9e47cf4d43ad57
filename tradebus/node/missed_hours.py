"""The prices of the interest hours a restarted paper daemon missed, from the venue's REST klines.

A margin loan owed while the daemon was down is charged at its restart for every whole hour
it missed (:mod:`tradebus.engine.interest`). A running daemon values such a charge at the last
price it saw before the hour; the restarted one saw none. Before it starts, it asks the venue
of each instrument valuing a loan for the close of the 1-minute kline ending at each missed
hour (:func:`~tradebus.data.backfill.close_before`, ccxt ``fetch_ohlcv`` on the feed's REST
endpoint: :attr:`VenueAdapter.rest_klines <tradebus.adapters.common.venue.VenueAdapter.rest_klines>`):
the last trade before the hour. An hour it cannot price (network, venue error, no candle for
that minute) keeps the journal's last fill price, with the reason in the charge's warning.

The daemon records what it fetched in its ``run:start`` line (:func:`missed_record`, under
:data:`RUN_START_KEY`, ``"missed_hours"``), and a replay of the session gives the kernel those
prices and reasons (:func:`read_missed_record`): it asks the venue nothing and charges the hours
as the daemon did.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from loguru import logger

from tradebus.account import asset_names
from tradebus.adapters.registry import VENUES
from tradebus.errors import ConfigError, DataError
from tradebus.node.config import PaperConfig

__all__ = ["RUN_START_KEY", "fetch_missed_prices", "missed_record", "read_missed_record"]

#: The key of a :func:`missed_record` in the ``run:start`` line (written by the daemon, read by a replay).
RUN_START_KEY = "missed_hours"

MissedPrices = dict[tuple[str, int], float]
MissedFailures = dict[tuple[str, int], str]

_MS = 1_000_000


def _utc(ts_ns: int) -> str:
    """``2024-08-08 11:00 UTC`` of a time in ns, as the interest charge's warning names its hour."""
    return datetime.fromtimestamp(ts_ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M UTC")


def fetch_missed_prices(
    config: PaperConfig, missed: Mapping[str, list[int]], *, timeout_s: float = 10.0
) -> tuple[MissedPrices, MissedFailures]:
    """The price of each missed hour (``instrument id -> hours`` in ns), fetched from its feed's venue.

    Blocking (run it off the event loop). After an exchange or network error the instrument's
    later hours are not asked for: their reason names the hour whose request failed.

    Returns
    -------
    tuple[dict, dict]
        ``(instrument id, hour) -> price``, and ``(instrument id, hour) -> why`` for the hours
        without one.
    """
    from tradebus.data.backfill import close_before, make_exchange

    prices: MissedPrices = {}
    failures: MissedFailures = {}
    instruments = config.instrument_map()
    feed_of = {iid: feed for feed in config.feeds for iid in feed.subscriptions}
    for iid, hours in missed.items():
        feed = feed_of.get(iid)
        if feed is None:
            failures.update(dict.fromkeys(((iid, h) for h in hours), f"no feed subscribes to {iid}"))
            continue
        where = VENUES[feed.venue].rest_klines(feed)
        base, quote = asset_names(instruments[iid])
        symbol = f"{base}/{quote}"
        try:
            exchange = make_exchange(where.exchange_id, api_base=where.api_base, options=where.options)
        except ConfigError as exc:
            failures.update(dict.fromkeys(((iid, h) for h in hours), str(exc)))
            continue
        exchange.timeout = int(timeout_s * 1000)
        try:
            for n, hour in enumerate(hours):
                try:
                    close = close_before(exchange, symbol, hour // _MS)
                except DataError as exc:
                    failures[(iid, hour)] = str(exc)
                    skipped = f"not asked: the request for the hour {_utc(hour)} failed ({exchange.id} {symbol})"
                    failures.update(dict.fromkeys(((iid, h) for h in hours[n + 1 :]), skipped))
                    break
                if close is None:
                    failures[(iid, hour)] = f"{exchange.id} has no {symbol} 1m candle ending at that hour"
                else:
                    prices[(iid, hour)] = close
        finally:
            exchange.close()
    if prices:
        logger.info("interest: {} missed hour(s) priced by the venue's klines", len(prices))
    return prices, failures


def missed_record(prices: Mapping[tuple[str, int], float], failures: Mapping[tuple[str, int], str]) -> dict[str, Any]:
    """What :func:`fetch_missed_prices` gave, as JSON for the daemon's ``run:start`` line (sorted: deterministic).

    ``{"prices": [[instrument id, hour ns, price], ...], "failures": [[instrument id, hour ns, why], ...]}``.
    """
    return {
        "prices": [[iid, hour, price] for (iid, hour), price in sorted(prices.items())],
        "failures": [[iid, hour, why] for (iid, hour), why in sorted(failures.items())],
    }


def read_missed_record(record: object, where: str) -> tuple[MissedPrices, MissedFailures]:
    """The prices and reasons a :func:`missed_record` holds, for :meth:`BorrowInterest.price_missed
    <tradebus.engine.interest.BorrowInterest.price_missed>`.

    Raises
    ------
    DataError
        ``record`` is not such a record (names ``where`` and the entry).
    """

    def entries(key: str, valid: type) -> list[tuple[str, int, Any]]:
        rows = record.get(key) if isinstance(record, dict) else None
        if not isinstance(rows, list):
            raise DataError(f"{where}: missed_hours must be {{\"prices\": [...], \"failures\": [...]}}, not {record!r:.80}")
        out = []
        for row in rows:
            if not (isinstance(row, list) and len(row) == 3 and isinstance(row[0], str) and type(row[1]) is int
                    and isinstance(row[2], valid) and not isinstance(row[2], bool)):
                raise DataError(f"{where}: missed_hours {key}: an entry is [instrument id, hour ns, "
                                f"{'price' if valid is not str else 'why'}], not {row!r:.80}")
            out.append((row[0], row[1], row[2]))
        return out

    prices = {(iid, hour): float(price) for iid, hour, price in entries("prices", int | float)}
    bad = next((p for p in prices.values() if not (math.isfinite(p) and p > 0.0)), None)
    if bad is not None:
        raise DataError(f"{where}: missed_hours prices: a price must be finite and > 0, not {bad!r}")
    return prices, {(iid, hour): why for iid, hour, why in entries("failures", str)}
