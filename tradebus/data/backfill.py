"""Backfill OHLCV bars and trades from any ccxt exchange into the catalog, resumable and rate-limited.

:func:`backfill_ohlcv` pages through ``exchange.fetch_ohlcv(symbol, timeframe, since,
limit)`` from ``since`` (or, when the dataset exists, from the bar after its last
one: a backfill only appends, so a ``since`` before the dataset's first bar fetches
nothing older, with a warning naming the dataset's range unless the venue's page from
``since`` shows it has nothing older) up to ``until``:

* pagination: the next page starts one interval after the last bar received; a page
  with nothing after the last bar ends the backfill. An empty page does not: an exchange
  may answer ``since`` with a bounded window (ccxt asks Binance COIN-M for ``limit`` bars
  from ``since``), empty where the venue has a gap longer than one page, so the next page
  starts one window later (``limit`` bars, or ccxt's documented maximum per request if
  lower), up to ``until``. A venue whose bars end before ``until`` costs one request per
  window left. When the first page is empty, the venue's page without a ``since`` is asked
  for once: empty too, the venue has no bars of the market at all and the backfill stops at
  once (a :class:`~tradebus.errors.DataError`); all its bars opening before ``since`` (a
  delisted market, a resume of one), the page from the bar after its last is asked for, and
  when that holds no bar before ``until`` either the backfill ends there, with a warning,
  after three requests (that page tells a venue answering its first bars without a ``since``
  from one answering its latest; one of the first kind whose bars then pause for a whole
  window or more would be taken as ended); otherwise a warning says how many requests
  the windows up to ``until`` may take (a ``since`` years before a market's first bar);
* overlaps and duplicates are removed (a bar at or before the last one kept is
  dropped; within a page the first of a repeated time is kept);
* rate limit: ccxt's own throttle (``enableRateLimit``, the exchange's ``rateLimit``
  in ms between requests); a ``RateLimitExceeded``/``DDoSProtection`` (HTTP 429/418)
  or a network error is retried after a capped exponential backoff, at most
  ``retries`` times, then raised as a :class:`~tradebus.errors.DataError`;
* every page is validated like an import (order, interval, OHLC, prices) and the
  quality checks run on it; gaps the exchange has are kept as gaps (counted in the
  manifest), never filled;
* the bars are stamped at their close (ccxt gives the open time); the partial bar
  still forming is never fetched by the command, which caps ``until`` at one timeframe
  before now (bars opening then or later have not closed, however the venue aligns them:
  Binance's weeks open on Monday); a caller of :func:`backfill_ohlcv` passes such an ``until_ms``.

:func:`backfill_trades` pages through ``exchange.fetch_trades(symbol, since, limit)`` the
same way, with the rules trades need:

* the next page starts at the **time of the last trade received** (not after it: more
  trades may share that millisecond), and the trades already kept at that time are
  recognised by their trade id and dropped; a page holding nothing new ends the
  backfill, unless it held only trades of the millisecond it started at while later ones
  exist: the page was full, at ``limit`` or at the venue's own cap per request (Binance:
  1000), whichever is lower, and that millisecond may hold more trades than one page
  returns, which no ``since`` can page past. From there on the backfill pages by **trade
  id** (the next page starts at the id after the highest received) where the venue's
  public REST can (Binance spot, USD-M and COIN-M: ``aggTrades`` with ``fromId``); where it
  cannot, an error names the millisecond. A page cut
  short by the venue's cap is otherwise paged on from like any other, so ``limit`` may
  exceed the cap;
* OKX pages by trade id from the start, through ``GET /api/v5/market/history-trades``
  (ccxt's ``publicGetMarketHistoryTrades``; its ``fetch_trades`` serves the recent trades
  whatever the ``since``): see :func:`_okx_history`. The endpoint serves about the last
  three months; a ``since`` before its oldest trade is an error;
* on resume, the catalog's last trade time and the ids stored at that time play the
  same part; trades are stamped at their exchange time (ms), the aggressor is ccxt's
  ``side`` (the taker's), the trade id is kept;
* an exchange whose public REST serves only its recent trades, whatever the ``since``
  (Bybit), is refused before any request: its pages would hold the last trades, not those
  of the range asked;
* an exchange that answers ``since`` with a bounded window (Binance's aggTrades: one
  hour) returns an empty page for a window without trades, which ends the backfill: run
  it again from a later ``--since`` for markets that trade less than once an hour.

:func:`close_before` fetches one price the same way: the close of the 1-minute candle that ends
at a time (its last trade before that time), for a paper daemon pricing an hour it missed.

Nothing is written to the catalog unless the whole range was fetched and validated.
``api_base`` points every URL of the exchange's ``urls['api']`` at another host (the
tests use a local server speaking Binance's REST).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import ccxt
import numpy as np
import pyarrow as pa
from loguru import logger

from tradebus.data.catalog import Catalog, DatasetRef, Manifest, open_parquet
from tradebus.data.ingest import BarStream, TradeStream, bars_dataset, parse_interval
from tradebus.data.quality import QualityCheck
from tradebus.data.sources import Frame, Source
from tradebus.engine.clock import iso_ns
from tradebus.errors import ConfigError, DataError

__all__ = ["BackfillResult", "backfill_ohlcv", "backfill_trades", "check_trades_history", "close_before", "make_exchange"]

_RETRYABLE = (ccxt.RateLimitExceeded, ccxt.DDoSProtection, ccxt.NetworkError)
#: Exchanges whose ccxt ``fetch_trades`` serves the most recent trades whatever the ``since``, and what to do instead.
_RECENT_TRADES_ONLY: dict[type[ccxt.Exchange], str] = {
    ccxt.bybit: "Bybit's public REST serves only its recent trades (v5/market/recent-trade takes no time or id "
                "to page from); import its public trading-history files with `tradebus data import FILE --kind trades`",
}
#: Trades per request of OKX's ``GET /api/v5/market/history-trades``: its maximum, and its default.
_OKX_PAGE = 100
_BACKOFF_CAP_S = 30.0
_T = TypeVar("_T")


def _rebase(value: object, base: str) -> object:
    if isinstance(value, dict):
        return {k: _rebase(v, base) for k, v in value.items()}
    if isinstance(value, str) and value.startswith(("http://", "https://")):
        target = urlsplit(base)
        parts = urlsplit(value)
        return urlunsplit((target.scheme, target.netloc, target.path.rstrip("/") + parts.path, parts.query, ""))
    return value


def make_exchange(exchange_id: str, *, api_base: str | None = None, rate_limit_ms: int | None = None,
                  options: dict[str, object] | None = None) -> ccxt.Exchange:
    """A public (no keys) ccxt exchange with its rate limiter on.

    Parameters
    ----------
    exchange_id
        A ccxt id (``binance``, ``bybit``, ``okx``, ``kraken``, ``mercado``, ``deepcoin``, ...).
    api_base
        Scheme and host (and optional path prefix) to send every REST call to instead
        of the exchange's.
    rate_limit_ms
        Milliseconds between requests (default: the exchange's own ``rateLimit``).
    options
        Merged into the exchange's ``options`` (e.g. the market types to load).

    Raises
    ------
    ConfigError
        If ccxt has no such exchange.
    """
    cls = getattr(ccxt, exchange_id, None)
    if not isinstance(cls, type) or not issubclass(cls, ccxt.Exchange):
        raise ConfigError(f"--exchange {exchange_id!r} is not a ccxt exchange id")
    config: dict[str, object] = {"enableRateLimit": True}
    if rate_limit_ms is not None:
        config["rateLimit"] = rate_limit_ms
    exchange = cls(config)
    if options:
        exchange.options.update(options)
    if api_base is not None:
        exchange.urls["api"] = _rebase(exchange.urls["api"], api_base)
    return exchange


@dataclass(frozen=True)
class BackfillResult:
    """What a backfill did: the manifest after it (``None`` if nothing new), pages, rows and retries."""

    manifest: Manifest | None
    pages: int
    rows: int
    retries: int
    since_ms: int


def backfill_ohlcv(
    catalog: Catalog | str | os.PathLike[str],
    exchange: ccxt.Exchange,
    symbol: str,
    timeframe: str,
    *,
    since_ms: int,
    until_ms: int,
    venue: str,
    market: str,
    catalog_symbol: str,
    limit: int = 1000,
    retries: int = 5,
    sleep: Callable[[float], None] = time.sleep,
) -> BackfillResult:
    """Fetch ``[since_ms, until_ms)`` (bar open times) and write them to ``<venue>/<market>/<catalog_symbol>/bars_<tf>``.

    When the dataset exists, the backfill resumes at the bar after its last one and
    appends. See the module docstring for pagination, deduplication and retries.

    Raises
    ------
    DataError
        An invalid bar (naming the page and row), retries exhausted, an exchange error, or a venue that has no bars
        of ``symbol`` at all.
    """
    interval_ns = parse_interval(timeframe)
    step_ms = interval_ns // 1_000_000
    cat = catalog if isinstance(catalog, Catalog) else Catalog(catalog)
    dataset = bars_dataset(cat, venue, market, catalog_symbol, interval_ns)
    mode = "create"
    if cat.exists(venue, market, catalog_symbol, dataset):
        done = cat.manifest(venue, market, catalog_symbol, dataset)
        _warn_older_skipped(cat, (venue, market, catalog_symbol, dataset), since_ms,
                            (done.start_ns - interval_ns, done.end_ns - interval_ns), "bars opening",
                            lambda: [int(r[0]) for r in _fetch(exchange, symbol, lambda: exchange.fetch_ohlcv(
                                symbol, timeframe, since=since_ms, limit=limit), retries, sleep)[0]])
        since_ms = max(since_ms, done.end_ns // 1_000_000)  # the close of the last bar opens the next
        mode = "append"
    name = f"ccxt {exchange.id} {symbol} {timeframe}"
    stream = BarStream(Source(name, ".ccxt", True, iter(())), interval=interval_ns, ts_column="open_time",
                        ts_unit="ms", bar_time="open", duplicates="error")
    check = QualityCheck("bars", interval_ns)
    pages = rows = retried = 0
    start = since_ms
    last_open: int | None = None
    probed = False
    with cat.writer(venue, market, catalog_symbol, dataset, "month" if step_ms < 3_600_000 else "year", kind="bars",
                    interval_ns=interval_ns, mode=mode) as writer:  # type: ignore[arg-type]
        while since_ms < until_ms:
            page, tries = _fetch(exchange, symbol, lambda: exchange.fetch_ohlcv(symbol, timeframe, since=since_ms,
                                                                                limit=limit), retries, sleep)
            pages, retried = pages + 1, retried + tries
            fresh = _fresh(page, last_open, until_ms)
            if fresh.shape[0] == 0:
                if page:
                    break
                window_bars = _bars_per_request(exchange, symbol, limit)
                if rows == 0 and not probed:
                    probed = True
                    latest, tries = _latest_opens(exchange, symbol, timeframe, limit, retries, sleep)
                    pages, retried = pages + 1, retried + tries
                    if latest and max(latest) < since_ms:
                        # the venue's latest page, or its first one (some answer that without a since): the page
                        # after its last bar tells which
                        after = max(latest) + step_ms
                        beyond, tries = _fetch(exchange, symbol, lambda: exchange.fetch_ohlcv(
                            symbol, timeframe, since=after, limit=limit), retries, sleep)
                        pages, retried = pages + 1, retried + tries
                        if _fresh(beyond, max(latest), until_ms).shape[0] == 0:
                            logger.warning(
                                "backfill {}: the venue has no bars from --since {}: its latest bar opens at {} and "
                                "its page from the next one holds none before --until; nothing fetched after {} "
                                "requests", name,
                                iso_ns(since_ms * 1_000_000), iso_ns(max(latest) * 1_000_000), pages)
                            break
                    _page_on(name, since_ms, until_ms, window_bars, step_ms, latest)
                window_ms = window_bars * step_ms
                logger.info("{}: no bars in the page from {} ms; the next one starts {} ms later", name, since_ms,
                            window_ms)
                since_ms += window_ms
                continue
            frame = Frame(f"{name} page {pages}", {
                "open_time": pa.array(fresh[:, 0].astype(np.int64)),
                **{c: pa.array(fresh[:, i + 1]) for i, c in enumerate(("open", "high", "low", "close", "volume"))},
            })
            table = stream.convert(frame)
            writer.write(table)
            check.feed(table)
            rows += table.num_rows
            last_open = int(fresh[-1, 0])
            since_ms = last_open + step_ms
        if writer.rows == 0:
            return BackfillResult(None, pages, 0, retried, start)
        manifest = writer.commit(
            [f"backfilled from {name} ({pages} pages, {retried} retries), opens {start} .. {last_open} ms"],
            quality=check.report().summary(),
        )
    return BackfillResult(manifest, pages, rows, retried, start)


def _contract_size(exchange: ccxt.Exchange, symbol: str) -> float | None:
    """Base units per unit of a ccxt trade's ``amount`` of ``symbol``, for the trades manifest.

    ccxt gives a contract market's trade amounts in contracts (OKX BTC-USDT-SWAP: 0.01 BTC each)
    and a spot market's in the base currency: 1. ``None`` for an inverse contract, whose contract is
    worth an amount of the quote currency, not of the base.
    """
    exchange.load_markets()
    market = exchange.market(symbol)
    if not market.get("contract"):
        return 1.0
    if market.get("inverse") or market.get("contractSize") is None:
        return None
    return float(market["contractSize"])


def _warn_older_skipped(cat: Catalog, ref: tuple[str, str, str, str], since_ms: int, held_ns: tuple[int, int],
                        rows: str, first_page: Callable[[], list[int]] | None) -> None:
    """Say what a ``since_ms`` before the dataset's first row leaves: a backfill only appends.

    ``first_page`` asks the venue for its page from ``since_ms`` (the times of its rows, ms; ``None``: the venue
    cannot be asked by time). A page whose rows all start at or after the dataset's first row tells that the
    venue has nothing older from ``since_ms``: said at INFO, nothing is missed. Otherwise (older rows, an empty
    page, a request that failed -- it does not fail the backfill -- or no way to ask) the warning names the range
    not fetched and how to get it.
    """
    if since_ms * 1_000_000 >= held_ns[0]:
        return
    page, failed = [], ""
    try:
        page = first_page() if first_page is not None else []
    except DataError as exc:  # only words the warning: the backfill, after the dataset, does not need it
        failed = str(exc)
    first_ms = held_ns[0] // 1_000_000
    if page and min(page) >= first_ms:
        logger.info(
            "{} holds {} from {}: the venue has nothing older from --since {} (its first from there is at {}), "
            "so the backfill misses nothing before the dataset", "/".join(ref), rows, iso_ns(held_ns[0]),
            iso_ns(since_ms * 1_000_000), iso_ns(min(page) * 1_000_000))
        return
    venue_says = (f"the venue has {rows} from {iso_ns(min(page) * 1_000_000)}; " if page else
                  f"the venue could not be asked for its page from --since ({failed}); " if failed else
                  "the venue's page from --since held none, so it may have nothing older; " if first_page else "")
    logger.warning(
        "{} holds {} from {} to {}: a backfill appends after its last row only, so nothing before {} is fetched "
        "from --since {}; {}for that older history backfill into an empty catalog (--catalog) or delete {} and run "
        "again", "/".join(ref), rows, iso_ns(held_ns[0]), iso_ns(held_ns[1]), iso_ns(held_ns[0]),
        iso_ns(since_ms * 1_000_000), venue_says, cat.dataset_dir(*ref))


def close_before(
    exchange: ccxt.Exchange, symbol: str, ts_ms: int, *, retries: int = 2, sleep: Callable[[float], None] = time.sleep
) -> float | None:
    """The close of ``symbol``'s 1-minute candle ``[ts_ms - 1 min, ts_ms)``: its last trade price before ``ts_ms``.

    One ``fetch_ohlcv(symbol, "1m", since=ts_ms - 60_000, limit=1)``, retried as a backfill's pages
    are; ``None`` when the exchange has no candle opening at ``ts_ms - 60_000``.

    Raises
    ------
    DataError
        Retries exhausted, an exchange error, or a malformed candle.
    """
    since_ms = ts_ms - 60_000
    page, _ = _fetch(exchange, symbol, lambda: exchange.fetch_ohlcv(symbol, "1m", since=since_ms, limit=1), retries,
                     sleep)  # fmt: skip
    rows = _fresh(page, since_ms - 1, ts_ms)
    if rows.shape[0] == 0 or int(rows[0, 0]) != since_ms:
        return None
    close = float(rows[0, 4])
    if not (math.isfinite(close) and close > 0.0):
        raise DataError(f"{exchange.id} {symbol}: the 1m candle opening at {since_ms} ms closes at {close}")
    return close


def _latest_opens(exchange: ccxt.Exchange, symbol: str, timeframe: str, limit: int, retries: int,
                  sleep: Callable[[float], None]) -> tuple[list[int] | None, int]:
    """The open times of the venue's page without a ``since`` (ms), and the retries; ``None`` if it was refused.

    Without ``since`` a venue answers its latest bars (Binance) or its first ones (ccxt: some do): either way, an
    empty answer means it has no bars of ``symbol`` at all.
    """
    try:
        page, tries = _fetch(exchange, symbol, lambda: exchange.fetch_ohlcv(symbol, timeframe, limit=limit), retries,
                             sleep)  # fmt: skip
    except DataError as exc:  # a venue that needs a since: the backfill pages on as it would have
        logger.info("{} {}: the page without a since was refused ({})", exchange.id, symbol, exc)
        return None, 0
    return [int(row[0]) for row in page], tries


def _page_on(name: str, since_ms: int, until_ms: int, window_bars: int, step_ms: int, latest: list[int] | None) -> None:
    """Check that a backfill whose first page held no bar has something to page on to, one window per request.

    Raises
    ------
    DataError
        When the venue has no bar at all (``latest`` empty): nothing to wait for. Otherwise a warning says how many
        requests the empty windows may take.
    """
    if latest == []:
        raise DataError(f"backfill {name}: the venue has no bars at all (its pages from --since "
                        f"{iso_ns(since_ms * 1_000_000)} and without a since are empty); check the symbol, its market "
                        f"type and the timeframe; nothing was written")
    left = -(-(until_ms - since_ms) // (window_bars * step_ms)) - 1
    if left > 0:
        seen = f"its latest page holds bars opening up to {iso_ns(max(latest) * 1_000_000)}; " if latest else ""
        logger.warning("backfill {}: no bars in the venue's page from --since {}; {}the backfill asks for the rest {} "
                       "bars at a time, up to {} more requests to --until {}: a --since nearer the market's first bar "
                       "saves them", name, iso_ns(since_ms * 1_000_000), seen, window_bars, left,
                       iso_ns(until_ms * 1_000_000))


def _bars_per_request(exchange: ccxt.Exchange, symbol: str, limit: int) -> int:
    """The bars a ``fetch_ohlcv`` page surely spans from ``since``: ``limit``, or ccxt's maximum for the market if lower."""
    market = exchange.market(symbol)
    features = (exchange.features or {}).get(market["type"]) or {}
    if "fetchOHLCV" not in features:  # per settlement: {"linear": {...}, "inverse": {...}}
        features = features.get("inverse" if market.get("inverse") else "linear") or {}
    most = (features.get("fetchOHLCV") or {}).get("limit")
    return min(limit, int(most)) if most else limit


def _fresh(page: list[list[float]], last_open: int | None, until_ms: int) -> np.ndarray:
    """The page's bars after ``last_open`` and before ``until_ms``, sorted, first of a repeated time kept."""
    if not page:
        return np.empty((0, 6))
    try:
        rows = np.array([r[:6] for r in page], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"exchange returned malformed OHLCV rows: {exc}") from None
    rows = rows[np.argsort(rows[:, 0], kind="stable")]
    keep = rows[:, 0] < until_ms
    if last_open is not None:
        keep &= rows[:, 0] > last_open
    rows = rows[keep]
    if rows.shape[0] > 1:
        rows = rows[np.concatenate(([True], np.diff(rows[:, 0]) > 0))]
    return rows


def check_trades_history(exchange: ccxt.Exchange) -> None:
    """Refuse, before any request, an exchange whose public REST serves only its recent trades.

    Raises
    ------
    ConfigError
        ``exchange`` is one of them (Bybit), naming what to do instead.
    """
    for cls, instead in _RECENT_TRADES_ONLY.items():
        if isinstance(exchange, cls):
            raise ConfigError(f"--exchange {exchange.id}: a trades backfill cannot page through its history: {instead}")


def backfill_trades(
    catalog: Catalog | str | os.PathLike[str],
    exchange: ccxt.Exchange,
    symbol: str,
    *,
    since_ms: int,
    until_ms: int,
    venue: str,
    market: str,
    catalog_symbol: str,
    limit: int = 1000,
    retries: int = 5,
    sleep: Callable[[float], None] = time.sleep,
) -> BackfillResult:
    """Fetch the trades of ``[since_ms, until_ms)`` and write them to ``<venue>/<market>/<catalog_symbol>/trades``.

    When the dataset exists, the backfill resumes at its last trade's time and appends
    only trades it does not hold. See the module docstring for pagination and retries.

    Raises
    ------
    ConfigError
        An exchange whose public REST serves only its recent trades (Bybit).
    DataError
        An invalid trade (naming the page and row), a millisecond with more trades
        than one page returns on a venue that cannot page by trade id, OKX serving
        no trade before ``since_ms``, retries exhausted, or an exchange error.
    """
    check_trades_history(exchange)
    contract_size, _ = _fetch(exchange, symbol, lambda: _contract_size(exchange, symbol), retries, sleep)
    cat = catalog if isinstance(catalog, Catalog) else Catalog(catalog)
    mode = "create"
    seen: set[str] = set()
    last_ms: int | None = None
    if cat.exists(venue, market, catalog_symbol, "trades"):
        done, last_ms, seen = _stored_tail(cat, venue, market, catalog_symbol)
        _warn_older_skipped(cat, (venue, market, catalog_symbol, "trades"), since_ms, (done.start_ns, done.end_ns),
                            "trades", None if isinstance(exchange, ccxt.okx) else lambda: [
                                _trade_ms(t, symbol) for t in _fetch(exchange, symbol, lambda: exchange.fetch_trades(
                                    symbol, since=since_ms, limit=limit), retries, sleep)[0]])
        since_ms = max(since_ms, last_ms)
        mode = "append"
    name = f"ccxt {exchange.id} {symbol} trades"
    stream = TradeStream(Source(name, ".ccxt", True, iter(())), ts_column="time", ts_unit="ms")
    check = QualityCheck("trades", None)
    pages = rows = retried = 0
    start = since_ms
    by_id: _IdPages | None = None  # from the start on OKX, or once a millisecond outgrew a page
    from_id = 0
    if isinstance(exchange, ccxt.okx):
        by_id, from_id, pages, retried = _okx_history(exchange, symbol, name, since_ms, until_ms, retries, sleep)
    with cat.writer(venue, market, catalog_symbol, "trades", "day", kind="trades", mode=mode) as writer:  # type: ignore[arg-type]
        while since_ms < until_ms and not (by_id is not None and by_id.last_id is not None
                                           and from_id > by_id.last_id):
            if by_id is None:
                page, tries = _fetch(exchange, symbol, lambda: exchange.fetch_trades(symbol, since=since_ms,
                                                                                     limit=limit), retries, sleep)
            else:
                pager = by_id
                (page, from_id), tries = _fetch(exchange, symbol, lambda: pager.fetch(from_id, limit), retries, sleep)
            pages, retried = pages + 1, retried + tries
            fresh = [t for t in sorted(page, key=_trade_key) if _trade_ms(t, name) < until_ms
                     and not (_trade_ms(t, name) == last_ms and str(t.get("id")) in seen)
                     and (last_ms is None or _trade_ms(t, name) >= last_ms)]
            if not fresh:
                if by_id is not None and by_id.last_id is not None:
                    continue  # ids without a trade to keep: the next window of ids may hold some
                if by_id is None and page and {_trade_ms(t, name) for t in page} == {since_ms} and _page_was_cut(
                        exchange, symbol, since_ms, len(page), limit, retries, sleep):
                    by_id = _by_trade_id(exchange, symbol, name, since_ms, len(page), limit)
                    from_id = max(_trade_number(i, name) for i in seen) + 1
                    logger.info("{}: more than {} trades at {} ms; paging by trade id from {}", name, len(page),
                                since_ms, from_id)
                    continue
                break
            frame = Frame(f"{name} page {pages}", {
                "time": pa.array([_trade_ms(t, name) for t in fresh], pa.int64()),
                "price": pa.array([t.get("price") for t in fresh], pa.float64()),
                "size": pa.array([t.get("amount") for t in fresh], pa.float64()),
                "side": pa.array([t.get("side") or "" for t in fresh], pa.string()),
                "trade_id": pa.array([str(t.get("id") or "") for t in fresh], pa.string()),
            })
            table = stream.convert(frame)
            writer.write(table)
            check.feed(table)
            rows += table.num_rows
            newest = _trade_ms(fresh[-1], name)
            if newest != last_ms:
                seen = set()
            seen.update(str(t.get("id")) for t in fresh if _trade_ms(t, name) == newest)
            last_ms = since_ms = newest
        if writer.rows == 0:
            return BackfillResult(None, pages, 0, retried, start)
        manifest = writer.commit(
            [f"backfilled from {name} ({pages} pages, {retried} retries), trades {start} .. {last_ms} ms"],
            quality=check.report().summary(),
            contract_size=contract_size,
        )
    return BackfillResult(manifest, pages, rows, retried, start)


def _page_was_cut(exchange: ccxt.Exchange, symbol: str, at_ms: int, got: int, limit: int, retries: int,
                  sleep: Callable[[float], None]) -> bool:
    """Whether a page of ``got`` trades, all at ``at_ms`` and all held already, was cut by the page size.

    It was when it is as long as ``limit``, or when trades after ``at_ms`` exist (the venue would
    have sent them had the page had room): then ``at_ms`` may hold trades no page starting there returns.
    """
    if got >= limit:
        return True
    later, _ = _fetch(exchange, symbol, lambda: exchange.fetch_trades(symbol, since=at_ms + 1, limit=limit), retries,
                      sleep)
    return bool(later)


@dataclass(frozen=True)
class _IdPages:
    """A venue's trades paged by trade id.

    ``fetch(from_id, size)`` returns up to ``size`` trades with ids from ``from_id`` on, and the id the
    next page starts at. ``last_id`` is the last id to fetch when known in advance; then a page with no
    trade to keep does not end the backfill (ids the venue skips), else it does.
    """

    fetch: Callable[[int, int], tuple[list, int]]
    last_id: int | None = None


def _okx_history(exchange: ccxt.okx, symbol: str, name: str, since_ms: int, until_ms: int, retries: int,
                 sleep: Callable[[float], None]) -> tuple[_IdPages, int, int, int]:
    """OKX's trades of ``[since_ms, until_ms)`` by trade id: the pages, the first id, and the requests and retries spent.

    ``GET /api/v5/market/history-trades`` (instId, ``type`` 1: ``after``/``before`` are trade ids,
    2: ``after`` is a time in ms; ``after``: records earlier than it, ``before``: newer; ``limit`` at
    most 100; newest first). ``type=2&after=<ms>`` answers the trades before a time: the newest before
    ``since_ms`` and the newest before ``until_ms`` bound the ids to fetch. Each page then asks for one
    window of ids, ``type=1&before=<from_id - 1>&after=<from_id + size>`` (both bounds exclusive, so
    at most ``size`` trades): ``before`` alone answers the venue's latest trades, not those right after
    the id. A window may hold fewer trades than ids (ids the venue does not serve, such as the earlier
    fills of a push standing for several); the next one starts after it whatever it held.

    Raises
    ------
    DataError
        OKX serves no trade before ``since_ms`` (the endpoint keeps about three months): the first
        trade at ``since_ms`` cannot be told from the first the venue still has.
    """
    _fetch(exchange, symbol, exchange.load_markets, retries, sleep)
    market = exchange.market(symbol)
    spent = [0, 0]

    def ask(params: dict[str, str]) -> list[dict[str, object]]:
        answer = exchange.publicGetMarketHistoryTrades({"instId": market["id"], **params})
        return exchange.parse_trades((answer or {}).get("data") or [], market)

    def newest_before(ms: int) -> int | None:
        after = {"type": "2", "after": str(ms)}
        while True:
            page, tries = _fetch(exchange, symbol, lambda: ask({**after, "limit": str(_OKX_PAGE)}), retries, sleep)
            spent[0], spent[1] = spent[0] + 1, spent[1] + tries
            if not page:
                return None
            ids = [(_trade_ms(t, name), _trade_number(str(t.get("id")), name)) for t in page]
            older = [i for ts, i in ids if ts < ms]
            if older:
                return max(older)
            after = {"type": "1", "after": str(min(i for _, i in ids))}  # a time read as inclusive: step back by id

    def window(from_id: int, size: int) -> tuple[list, int]:
        size = min(size, _OKX_PAGE)
        page = ask({"type": "1", "before": str(from_id - 1), "after": str(from_id + size), "limit": str(size)})
        return [t for t in page if from_id <= _trade_number(str(t.get("id")), name) < from_id + size], from_id + size

    first = newest_before(since_ms)
    if first is None:
        raise DataError(f"{name}: OKX serves no trade before --since ({since_ms} ms), so the first trade at it cannot "
                        "be found (history-trades keeps about the last three months): give a later --since, within "
                        "that history and after the instrument's first trade")
    last = newest_before(until_ms)
    logger.info("{}: trade ids {} .. {} (the newest before {} and {} ms)", name, first + 1, last, since_ms, until_ms)
    return _IdPages(window, last if last is not None else first), first + 1, spent[0], spent[1]


def _by_trade_id(exchange: ccxt.Exchange, symbol: str, name: str, at_ms: int, got: int,
                 limit: int) -> _IdPages:
    """``fetch(from_id, limit)``: up to ``limit`` trades from trade id ``from_id`` on (inclusive), oldest first.

    Binance (spot, USD-M, COIN-M) takes ``fromId`` on ``aggTrades``, sent without ``startTime``/``endTime``,
    which it does not combine with ``fromId``.

    Raises
    ------
    DataError
        Where the venue's public REST cannot page by trade id: no page can get past ``at_ms``.
    """
    method = str(exchange.options.get("fetchTradesMethod") or "AggTrades")
    if isinstance(exchange, ccxt.binance) and not exchange.market(symbol).get("option") and "AggTrades" in method:
        def fetch(from_id: int, size: int) -> tuple[list, int]:
            page = exchange.fetch_trades(symbol, limit=size, params={"fromId": from_id})
            return page, max((_trade_number(str(t.get("id")), name) + 1 for t in page), default=from_id)

        return _IdPages(fetch)
    cap = "--limit; raise it to get past them" if got >= limit else "the most the venue returns per request"
    raise DataError(f"{name}: the page starting at {at_ms} ms held only trades of that millisecond ({got}, {cap}); "
                    f"there may be more than {got} trades at {at_ms} ms, and {exchange.id}'s public REST cannot page "
                    "by trade id to get past them (Binance and OKX can)")


def _trade_number(ident: str, name: str) -> int:
    if not ident.isdigit():
        raise DataError(f"{name}: trade id {ident!r} is not a number, which paging by trade id needs")
    return int(ident)


def _trade_ms(trade: dict[str, object], name: str) -> int:
    stamp = trade.get("timestamp")
    if not isinstance(stamp, int | float) or isinstance(stamp, bool):
        raise DataError(f"{name}: trade {trade.get('id')!r} has no timestamp ({stamp!r})")
    return int(stamp)


def _trade_key(trade: dict[str, object]) -> tuple[int, int, str]:
    """Time, then the id numerically where it is a number (exchanges number trades in order)."""
    ident = str(trade.get("id") or "")
    stamp = trade.get("timestamp")
    return (int(stamp) if isinstance(stamp, int | float) else 0, int(ident) if ident.isdigit() else 0, ident)


def _stored_tail(cat: Catalog, venue: str, market: str, symbol: str) -> tuple[Manifest, int, set[str]]:
    """The trades dataset's manifest, its last trade time (ms) and the ids of the trades stored at that millisecond.

    They may lie in more than one file: an earlier resume may have appended trades at the time the
    dataset ended with. The files are read under the catalog's read lock (:meth:`Catalog.holding`): an
    overwrite in another process waits for them, so they are the manifest's.
    """
    ref = DatasetRef(venue, market, symbol, "trades")
    with cat.holding([ref]) as held:
        manifest, paths = held[ref]
        last = manifest.end_ns // 1_000_000
        ids: set[str] = set()
        for path, entry in zip(paths, manifest.files, strict=True):
            if entry.end_ns // 1_000_000 == last:
                tail = open_parquet(path, "trades").read(columns=["ts_event", "trade_id"])
                ms = tail.column("ts_event").to_numpy() // 1_000_000
                ids.update(tail.column("trade_id").to_numpy(zero_copy_only=False)[ms == last].tolist())
    return manifest, last, ids


def _fetch(exchange: ccxt.Exchange, symbol: str, call: Callable[[], _T], retries: int,
           sleep: Callable[[float], None]) -> tuple[_T, int]:
    for attempt in range(retries + 1):
        try:
            return call(), attempt
        except _RETRYABLE as exc:
            if attempt == retries:
                raise DataError(f"{exchange.id} {symbol}: giving up after {retries} retries: {exc}") from None
            sleep(min(_BACKOFF_CAP_S, exchange.rateLimit / 1000.0 * 2 ** (attempt + 1)))
        except ccxt.BaseError as exc:
            raise DataError(f"{exchange.id} {symbol}: {type(exc).__name__}: {exc}") from None
    raise AssertionError("unreachable")
