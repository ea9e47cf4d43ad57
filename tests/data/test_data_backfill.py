"""ccxt backfill against a local server speaking Binance's public REST (exchangeInfo, klines, aggTrades).

The server answers with the real ADABTC 1m klines of 2021-11-27 (first 120 minutes) and the
real 2021-10-12 spot exchangeInfo, honours startTime/endTime/limit like Binance (without a startTime: the latest
``limit`` bars), leaves out
five minutes (a gap the exchange has), and answers the first klines request with HTTP 429.
Its aggTrades are 2,001 real BTCUSDT trades of 2021-01-08 (22 of them in one millisecond),
served like Binance: startTime/endTime inclusive, or from the id ``fromId`` on (refused with
startTime/endTime, as Binance refuses that combination), sorted by id, at most ``limit``.
Two more local servers speak Bybit's recent-trade (refused) and OKX's history-trades (``OkxVenue``).
"""

from __future__ import annotations

import gzip
import http.server
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from loguru import logger
from typer.testing import CliRunner

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from tradebus.data.backfill import BackfillResult, backfill_ohlcv, backfill_trades, make_exchange
from tradebus.data.catalog import Catalog
from tradebus.data.cli import data_app
from tradebus.data.ingest import read_bars
from tradebus.errors import DataError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
KLINES = FIXTURES / "data" / "ADABTC-1m-2021-11-27_head120.csv"
TRADES = pq.read_table(FIXTURES / "data" / "btcusdt-trades.parquet").to_pandas()


def trade_millis() -> np.ndarray:
    return TRADES.timestamp.dt.as_unit("ms").astype("int64").to_numpy()  # ms since the epoch, UTC



FIRST_MS = 1_637_971_200_000
MINUTE_MS = 60_000
GAP = range(40, 45)  # rows the exchange does not have


class Venue:
    def __init__(self) -> None:
        rows = [line.split(",") for line in KLINES.read_text().splitlines()]
        self.klines = [r for i, r in enumerate(rows) if i not in GAP]
        self.info = gzip.decompress((FIXTURES / "binance" / "exchangeInfo_spot_2021-10-12.json.gz").read_bytes())
        self.coinm_info = (FIXTURES / "binance" / "exchangeInfo_coinm_btcusd_perp.json").read_bytes()
        self.requests: list[tuple[float, dict[str, list[str]]]] = []
        self.trade_ms = trade_millis()
        self.throttle_next = 1
        self.trades_per_page = 1000  # Binance's cap on aggTrades, whatever the limit asked
        self.first_without_since = False  # klines without a startTime: the latest bars (Binance), or the first ones
        venue = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

            def do_GET(self) -> None:  # noqa: N802
                url = urlsplit(self.path)
                if url.path == "/api/v3/exchangeInfo":
                    return self._send(200, venue.info)
                if url.path == "/dapi/v1/exchangeInfo":
                    return self._send(200, venue.coinm_info)
                if url.path in ("/api/v3/klines", "/dapi/v1/klines"):
                    query = parse_qs(url.query)
                    venue.requests.append((time.monotonic(), query))
                    if venue.throttle_next:
                        venue.throttle_next -= 1
                        return self._send(429, b'{"code":-1003,"msg":"Too many requests"}', retry_after="0")
                    start = int(query.get("startTime", ["0"])[0])
                    end = int(query.get("endTime", [str(2**62)])[0])
                    limit = int(query.get("limit", ["500"])[0])
                    page = [r for r in venue.klines if start <= int(r[0]) <= end]
                    # no startTime: the latest bars
                    page = page[:limit] if "startTime" in query or venue.first_without_since else page[-limit:]
                    body = [[int(r[0]), r[1], r[2], r[3], r[4], r[5], int(r[6]), r[7], int(r[8]), r[9], r[10], r[11]]
                            for r in page]
                    return self._send(200, json.dumps(body).encode())
                if url.path == "/api/v3/aggTrades":
                    query = parse_qs(url.query)
                    venue.requests.append((time.monotonic(), query))
                    if venue.throttle_next:
                        venue.throttle_next -= 1
                        return self._send(429, b'{"code":-1003,"msg":"Too many requests"}', retry_after="0")
                    limit = min(venue.trades_per_page, int(query.get("limit", ["500"])[0]))
                    if "fromId" in query:
                        if "startTime" in query or "endTime" in query:
                            return self._send(400, b'{"code":-1128,"msg":"Combination of optional parameters invalid."}')
                        pick = np.flatnonzero(TRADES.trade_id.to_numpy() >= int(query["fromId"][0]))[:limit]
                    else:
                        start = int(query.get("startTime", ["0"])[0])
                        end = int(query.get("endTime", [str(2**62)])[0])
                        pick = np.flatnonzero((venue.trade_ms >= start) & (venue.trade_ms <= end))[:limit]
                    body = [{"a": int(TRADES.trade_id[i]), "p": f"{TRADES.price[i]:.2f}", "q": f"{TRADES.quantity[i]:.6f}",
                             "f": int(TRADES.trade_id[i]), "l": int(TRADES.trade_id[i]), "T": int(venue.trade_ms[i]),
                             "m": TRADES.buyer_maker[i] == "True", "M": True} for i in pick]
                    return self._send(200, json.dumps(body).encode())
                return self._send(404, b'{"code":-1,"msg":"not found"}')

            def _send(self, code: int, body: bytes, retry_after: str | None = None) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                if retry_after is not None:
                    self.send_header("Retry-After", retry_after)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def venue() -> Iterator[Venue]:
    server = Venue()
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def exchange(venue: Venue, rate_limit_ms: int = 40):
    return make_exchange("binance", api_base=venue.url, rate_limit_ms=rate_limit_ms,
                         options={"fetchMarkets": {"types": ["spot"]}})


def test_backfill_pages_through_a_gap_and_a_429_and_matches_the_file(venue: Venue, tmp_path: Path) -> None:
    sleeps: list[float] = []
    client = exchange(venue, rate_limit_ms=200)
    sent: list[int] = []  # ccxt's time of each request, set after its limiter's wait (the client's side of the pacing)
    fetch = client.fetch

    def paced_fetch(*args: object, **kwargs: object) -> object:
        sent.append(client.lastRestRequestTimestamp)
        return fetch(*args, **kwargs)

    client.fetch = paced_fetch
    result = backfill_ohlcv(
        tmp_path, client, "ADA/BTC", "1m", since_ms=FIRST_MS,
        until_ms=FIRST_MS + 120 * MINUTE_MS, venue="binance", market="spot", catalog_symbol="ADABTC", limit=25,
        sleep=sleeps.append,
    )
    assert result.retries == 1 and len(sleeps) == 1  # the 429, retried once after a backoff
    assert result.rows == 115 and result.pages >= 5
    stored = Catalog(tmp_path).read("binance", "spot", "ADABTC", "bars_1m").to_pandas()
    expected = read_bars(KLINES, interval="1m").to_pandas().drop(index=list(GAP)).reset_index(drop=True)
    assert stored.equals(expected)  # close stamps, values exact, nothing filled in the gap
    manifest = Catalog(tmp_path).manifest("binance", "spot", "ADABTC", "bars_1m")
    assert (manifest.gaps, manifest.missing_bars) == (1, 5)
    assert manifest.quality is not None and manifest.quality["gaps"] == 1
    starts = [int(q["startTime"][0]) for _, q in venue.requests]
    assert starts[0] == starts[1] == FIRST_MS  # the throttled page is asked again
    assert all(b > a for a, b in zip(starts[1:], starts[2:], strict=False))  # each page starts after the last bar
    # ccxt's limiter: rateLimit (200 ms) times the endpoint's weight (Binance klines with limit < 100: 0.4) between
    # two requests, in its whole milliseconds (so 1 ms less); timed at the client, as the server's arrival times
    # bunch on a loaded machine
    assert len(sent) >= len(venue.requests) and min(b - a for a, b in itertools.pairwise(sent)) >= 0.4 * 200 - 1


def test_coinm_backfill_pages_on_past_a_gap_longer_than_one_page(venue: Venue, tmp_path: Path) -> None:
    """ccxt asks COIN-M for ``limit`` bars from ``since`` (startTime and endTime): a longer gap answers an empty page.
    Before, that page ended the backfill: 40 of the 80 bars, exit 0."""
    venue.throttle_next = 0
    rows = [line.split(",") for line in KLINES.read_text().splitlines()]
    venue.klines = rows[:40] + rows[80:]  # 40 minutes missing, four pages of 10
    coinm = make_exchange("binance", api_base=venue.url, rate_limit_ms=1, options={"fetchMarkets": {"types": ["inverse"]}})
    result = backfill_ohlcv(tmp_path, coinm, "BTC/USD:BTC", "1m", since_ms=FIRST_MS, until_ms=FIRST_MS + 120 * MINUTE_MS,
                            venue="binance", market="coinm", catalog_symbol="BTCUSD_PERP", limit=10)
    ends = [int(q["endTime"][0]) - int(q["startTime"][0]) for _, q in venue.requests]
    assert set(ends) == {10 * MINUTE_MS - 1}  # the venue was asked bounded windows, as Binance COIN-M is
    assert result.rows == 80
    manifest = Catalog(tmp_path).manifest("binance", "coinm", "BTCUSD_PERP", "bars_1m")
    assert (manifest.gaps, manifest.missing_bars) == (1, 40)
    stored = Catalog(tmp_path).read("binance", "coinm", "BTCUSD_PERP", "bars_1m").column("ts_event").to_numpy()
    assert stored[-1] == (FIRST_MS + 120 * MINUTE_MS) * 1_000_000  # the last bar, opened at 01:59, closes at 02:00


@pytest.mark.parametrize("market", ["spot", "coinm"])
def test_backfill_of_a_market_without_bars_stops_at_once_naming_it(venue: Venue, tmp_path: Path, market: str) -> None:
    """A market the venue has no bars of, backfilled from five years back, paged through every one-page window of
    empty answers (2,630 requests for 1m bars) and ended with exit 0 and "0 new bars"; after its first empty page the
    backfill now asks for the venue's latest page (no since), which is empty too: exit 3 naming the market and what
    to check, after 2 requests, nothing written."""
    venue.throttle_next = 0
    venue.klines = []
    symbol, types = ("ADA/BTC", "spot") if market == "spot" else ("BTC/USD:BTC", "inverse")
    result = CliRunner().invoke(data_app, [
        "backfill", "--exchange", "binance", "--symbol", symbol, "--timeframe", "1m", "--since", "2016-11-27",
        "--until", "2021-11-27", "--api-base", venue.url, "--rate-limit-ms", "1", "--market-types", types,
        "--catalog", str(tmp_path / "cat"),
    ])
    assert result.exit_code == 3, result.output
    assert (f"backfill ccxt binance {symbol} 1m: the venue has no bars at all (its pages from --since "
            "2016-11-27T00:00:00Z and without a since are empty); check the symbol") in " ".join(result.output.split())
    assert len(venue.requests) == 2 and "startTime" not in venue.requests[1][1]
    assert not (tmp_path / "cat").exists()


def test_coinm_backfill_from_before_the_markets_first_bar_says_what_the_empty_windows_cost_and_misses_nothing(
    venue: Venue, tmp_path: Path
) -> None:
    """COIN-M answers ``limit`` bars from ``since``: from 50 minutes before its first bar, pages of 10 are empty five
    times. The backfill says so once (WARNING: the venue's latest bar, the requests it may take) and still fetches
    every bar (the empty windows are paged through, as a real gap in the data would be)."""
    venue.throttle_next = 0
    coinm = make_exchange("binance", api_base=venue.url, rate_limit_ms=1, options={"fetchMarkets": {"types": ["inverse"]}})

    def backfill() -> None:
        backfill_ohlcv(tmp_path, coinm, "BTC/USD:BTC", "1m", since_ms=FIRST_MS - 50 * MINUTE_MS,
                       until_ms=FIRST_MS + 120 * MINUTE_MS, venue="binance", market="coinm", catalog_symbol="BTCUSD_PERP",
                       limit=10)

    assert warnings_of(backfill) == [
        "backfill ccxt binance BTC/USD:BTC 1m: no bars in the venue's page from --since 2021-11-26T23:10:00Z; its "
        "latest page holds bars opening up to 2021-11-27T01:59:00Z; the backfill asks for the rest 10 bars at a time, "
        "up to 16 more requests to --until 2021-11-27T02:00:00Z: a --since nearer the market's first bar saves them"
    ]
    stored = Catalog(tmp_path).read("binance", "coinm", "BTCUSD_PERP", "bars_1m").to_pandas()
    expected = read_bars(KLINES, interval="1m").to_pandas().drop(index=list(GAP)).reset_index(drop=True)
    prices = ["ts_event", "open", "high", "low", "close"]  # ccxt reads COIN-M's volume from another column
    assert stored[prices].equals(expected[prices])


@pytest.mark.parametrize("market", ["spot", "coinm"])
def test_backfill_from_after_the_venues_latest_bar_stops_after_three_requests(
    venue: Venue, tmp_path: Path, market: str
) -> None:
    """The venue's bars end at 01:59 (2021-11-27); a backfill from 03:20 to a day later, 10 bars a request, paged
    through every 10-minute window to --until: 146 requests, exit 0 with nothing. The page from --since is empty, the
    venue's latest page (no since) ends before --since and its page from the next bar is empty: the backfill now ends
    there, after those 3 requests, with a warning, nothing written."""
    venue.throttle_next = 0
    symbol, types = ("ADA/BTC", "spot") if market == "spot" else ("BTC/USD:BTC", "inverse")
    client = make_exchange("binance", api_base=venue.url, rate_limit_ms=1, options={"fetchMarkets": {"types": [types]}})
    since = FIRST_MS + 200 * MINUTE_MS

    def backfill() -> BackfillResult:
        return backfill_ohlcv(tmp_path, client, symbol, "1m", since_ms=since, until_ms=since + 24 * 60 * MINUTE_MS,
                              venue="binance", market=market, catalog_symbol="X", limit=10)

    said = warnings_of(backfill)
    assert said == [f"backfill ccxt binance {symbol} 1m: the venue has no bars from --since 2021-11-27T03:20:00Z: its "
                    "latest bar opens at 2021-11-27T01:59:00Z and its page from the next one holds none before "
                    "--until; nothing fetched after 3 requests"]
    asked = [q for _, q in venue.requests]
    assert len(asked) == 3 and "startTime" not in asked[1]
    assert [int(q["startTime"][0]) for q in (asked[0], asked[2])] == [since, FIRST_MS + 120 * MINUTE_MS]
    assert not (tmp_path / "binance").exists()


def test_backfill_from_after_a_venues_first_page_when_it_answers_its_first_bars_without_a_since_pages_on(
    venue: Venue, tmp_path: Path
) -> None:
    """A venue answering its first bars without a since: they end before --since, yet bars follow; the page from the
    bar after them holds some, so the backfill pages on from --since and fetches every bar from there."""
    venue.throttle_next = 0
    rows = [line.split(",") for line in KLINES.read_text().splitlines()]
    venue.klines = rows[:20] + rows[40:]  # 20 minutes missing: the 10-bar window from 00:25 is empty
    venue.first_without_since = True
    coinm = make_exchange("binance", api_base=venue.url, rate_limit_ms=1, options={"fetchMarkets": {"types": ["inverse"]}})
    result = backfill_ohlcv(tmp_path, coinm, "BTC/USD:BTC", "1m", since_ms=FIRST_MS + 25 * MINUTE_MS,
                            until_ms=FIRST_MS + 120 * MINUTE_MS, venue="binance", market="coinm", catalog_symbol="X",
                            limit=10)
    assert result.rows == 80  # every bar from 00:40 to 01:59
    stored = Catalog(tmp_path).read("binance", "coinm", "X", "bars_1m").column("ts_event").to_numpy()
    assert stored[0] == (FIRST_MS + 41 * MINUTE_MS) * 1_000_000 and stored[-1] == (FIRST_MS + 120 * MINUTE_MS) * 1_000_000
    asked = [q for _, q in venue.requests]
    assert "startTime" not in asked[1] and int(asked[2]["startTime"][0]) == FIRST_MS + 10 * MINUTE_MS


def test_backfill_resumes_from_the_catalogs_last_bar_without_duplicates(venue: Venue, tmp_path: Path) -> None:
    venue.throttle_next = 0
    half = FIRST_MS + 60 * MINUTE_MS
    first = backfill_ohlcv(tmp_path, exchange(venue, 1), "ADA/BTC", "1m", since_ms=FIRST_MS, until_ms=half,
                           venue="binance", market="spot", catalog_symbol="ADABTC", limit=1000)
    assert first.rows == 55
    venue.requests.clear()
    again = backfill_ohlcv(tmp_path, exchange(venue, 1), "ADA/BTC", "1m", since_ms=FIRST_MS,
                           until_ms=FIRST_MS + 120 * MINUTE_MS, venue="binance", market="spot", catalog_symbol="ADABTC",
                           limit=1000)
    assert int(venue.requests[0][1]["startTime"][0]) == half  # resumed after the last stored bar
    assert again.rows == 60
    stored = Catalog(tmp_path).read("binance", "spot", "ADABTC", "bars_1m").to_pandas()
    assert len(stored) == 115 and stored["ts_event"].is_unique and stored["ts_event"].is_monotonic_increasing
    nothing = backfill_ohlcv(tmp_path, exchange(venue, 1), "ADA/BTC", "1m", since_ms=FIRST_MS,
                             until_ms=FIRST_MS + 120 * MINUTE_MS, venue="binance", market="spot",
                             catalog_symbol="ADABTC")
    assert nothing.manifest is None and nothing.rows == 0


def logged(call: Callable[[], object], level: str, keep: Callable[[Any], bool] = lambda record: True) -> list[str]:
    """The messages ``call`` logs at ``level`` or above that ``keep`` keeps."""
    messages: list[str] = []
    sink = logger.add(lambda m: messages.append(m.record["message"]), level=level, filter=keep)
    try:
        call()
    finally:
        logger.remove(sink)
    return messages


def warnings_of(call: Callable[[], object]) -> list[str]:
    """Every WARNING or worse ``call`` logs."""
    return logged(call, "WARNING")


def test_backfill_from_before_the_datasets_first_bar_says_the_older_bars_are_not_fetched(
    venue: Venue, tmp_path: Path
) -> None:
    """A backfill from 00:00 onto a dataset of the bars opening 01:00-01:29 resumed at 01:30 without a word:
    the hour asked before the dataset's first bar was never fetched. It is still not (a backfill appends), but says so."""
    venue.throttle_next = 0
    hour = FIRST_MS + 60 * MINUTE_MS

    def backfill(since_ms: int) -> None:
        backfill_ohlcv(tmp_path, exchange(venue, 1), "ADA/BTC", "1m", since_ms=since_ms,
                       until_ms=FIRST_MS + 120 * MINUTE_MS if since_ms == FIRST_MS else hour + 30 * MINUTE_MS,
                       venue="binance", market="spot", catalog_symbol="ADABTC")

    assert warnings_of(lambda: backfill(hour)) == []
    assert warnings_of(lambda: backfill(hour)) == []  # a resume from the same --since says nothing
    messages = warnings_of(lambda: backfill(FIRST_MS))
    assert messages == [
        "binance/spot/ADABTC/bars_1m holds bars opening from 2021-11-27T01:00:00Z to 2021-11-27T01:29:00Z: a backfill "
        "appends after its last row only, so nothing before 2021-11-27T01:00:00Z is fetched from --since "
        "2021-11-27T00:00:00Z; the venue has bars opening from 2021-11-27T00:00:00Z; for that older history backfill into an empty catalog (--catalog) or delete "
        f"{tmp_path / 'binance' / 'spot' / 'ADABTC' / 'bars_1m'} and run again"
    ]
    stored = Catalog(tmp_path).read("binance", "spot", "ADABTC", "bars_1m").column("ts_event").to_numpy()
    assert stored[0] == (hour + MINUTE_MS) * 1_000_000  # appended after 01:29 only


def messages_of(call: Callable[[], object], level: str) -> list[str]:
    """The backfill's messages ``call`` logs at exactly ``level``."""
    return logged(call, level, lambda r: r["level"].name == level and "backfill" in r["message"])


def test_backfill_from_before_the_venues_first_bar_says_the_venue_has_nothing_older(
    venue: Venue, tmp_path: Path
) -> None:
    """The venue's first bar opens 2021-11-27 00:00. A resume from --since 2021-11-26 12:00 warned that the dataset
    starts at 00:00 and nothing before is fetched, as if twelve hours were missed: the venue has none of them."""
    venue.throttle_next = 0
    since = FIRST_MS - 12 * 60 * MINUTE_MS

    def backfill() -> None:
        backfill_ohlcv(tmp_path, exchange(venue, 1), "ADA/BTC", "1m", since_ms=since, until_ms=FIRST_MS + 30 * MINUTE_MS,
                       venue="binance", market="spot", catalog_symbol="ADABTC")

    backfill()
    assert messages_of(backfill, "WARNING") == []
    assert messages_of(backfill, "INFO") == [
        "binance/spot/ADABTC/bars_1m holds bars opening from 2021-11-27T00:00:00Z: the venue has nothing older from "
        "--since 2021-11-26T12:00:00Z (its first from there is at 2021-11-27T00:00:00Z), so the backfill misses "
        "nothing before the dataset"
    ]


def test_trades_backfill_from_before_the_venues_first_trade_says_the_venue_has_nothing_older(
    venue: Venue, tmp_path: Path
) -> None:
    """The venue's first trade is at 2021-01-08 00:00:00.278; a resume from a minute before warned of trades not fetched."""
    venue.throttle_next = 0
    first = int(venue.trade_ms[0])

    def backfill() -> None:
        backfill_trades(tmp_path, exchange(venue, 1), "BTC/USDT", since_ms=first - MINUTE_MS, until_ms=first + 500,
                        venue="binance", market="spot", catalog_symbol="BTCUSDT", limit=1000)

    backfill()
    assert messages_of(backfill, "WARNING") == []
    assert messages_of(backfill, "INFO") == [
        "binance/spot/BTCUSDT/trades holds trades from 2021-01-08T00:00:00.278Z: the venue has nothing older from "
        "--since 2021-01-07T23:59:00.278Z (its first from there is at 2021-01-08T00:00:00.278Z), so the backfill "
        "misses nothing before the dataset"
    ]


def test_backfill_whose_probe_of_older_bars_fails_still_appends_and_says_so(venue: Venue, tmp_path: Path) -> None:
    """A resume from --since 00:00 onto bars opening 01:00-01:29: the venue's page from 00:00, asked only to word the
    warning, was throttled past the 2 retries and failed the backfill ("giving up after 2 retries") that needed it
    not; the bars after 01:29 are now appended and the warning says the venue could not be asked."""
    venue.throttle_next = 0
    hour = FIRST_MS + 60 * MINUTE_MS
    backfill_ohlcv(tmp_path, exchange(venue, 1), "ADA/BTC", "1m", since_ms=hour, until_ms=hour + 30 * MINUTE_MS,
                   venue="binance", market="spot", catalog_symbol="ADABTC")
    venue.throttle_next = 3  # the probe's three tries; the pages after 01:29 are answered
    messages = warnings_of(lambda: backfill_ohlcv(
        tmp_path, exchange(venue, 1), "ADA/BTC", "1m", since_ms=FIRST_MS, until_ms=hour + 60 * MINUTE_MS,
        venue="binance", market="spot", catalog_symbol="ADABTC", retries=2, sleep=lambda _s: None))
    probe = [m for m in messages if "holds bars opening" in m]
    assert len(probe) == 1 and "the venue could not be asked for its page from --since (" in probe[0], messages
    assert "giving up after 2 retries" in probe[0]
    stored = Catalog(tmp_path).read("binance", "spot", "ADABTC", "bars_1m").column("ts_event").to_numpy()
    assert (len(stored), stored[0], stored[-1]) == (60, (hour + MINUTE_MS) * 1_000_000, (hour + 60 * MINUTE_MS) * 1_000_000)


def test_backfill_gives_up_after_the_retries_and_writes_nothing(venue: Venue, tmp_path: Path) -> None:
    venue.throttle_next = 10
    with pytest.raises(Exception, match="giving up after 2 retries"):
        backfill_ohlcv(tmp_path, exchange(venue, 1), "ADA/BTC", "1m", since_ms=FIRST_MS,
                       until_ms=FIRST_MS + 120 * MINUTE_MS, venue="binance", market="spot", catalog_symbol="ADABTC",
                       retries=2, sleep=lambda s: None)
    assert Catalog(tmp_path).datasets() == []


def test_cli_backfill(venue: Venue, tmp_path: Path) -> None:
    venue.throttle_next = 0
    result = CliRunner().invoke(data_app, [
        "backfill", "--exchange", "binance", "--symbol", "ADA/BTC", "--timeframe", "1m",
        "--since", "2021-11-27T00:00:00", "--until", "2021-11-27T02:00:00", "--api-base", venue.url,
        "--rate-limit-ms", "1", "--market-types", "spot", "--catalog", str(tmp_path),
    ])
    assert result.exit_code == 0, result.output
    assert "binance/spot/ADABTC/bars_1m: 115 rows" in result.output
    bad = CliRunner().invoke(data_app, ["backfill", "--exchange", "nosuchexchange", "--symbol", "X/Y",
                                        "--since", "2021-11-27", "--catalog", str(tmp_path)])
    assert bad.exit_code == 2 and "not a ccxt exchange id" in bad.output


def test_cli_backfill_never_stores_a_bar_that_has_not_closed_whatever_the_until(venue: Venue, tmp_path: Path) -> None:
    venue.throttle_next = 0
    now_ms = int(time.time() * 1000)
    # the venue's last two bars: the one open now and the next (so a minute turning during the test changes nothing)
    shift = now_ms - now_ms % MINUTE_MS + MINUTE_MS - int(venue.klines[-1][0])
    venue.klines = [[str(int(r[0]) + shift), *r[1:6], str(int(r[6]) + shift), *r[7:]] for r in venue.klines]
    since = pd.Timestamp(int(venue.klines[0][0]), unit="ms", tz="UTC").isoformat()
    result = CliRunner().invoke(data_app, [
        "backfill", "--exchange", "binance", "--symbol", "ADA/BTC", "--timeframe", "1m", "--since", since,
        "--until", "2100-01-01", "--api-base", venue.url, "--rate-limit-ms", "1", "--market-types", "spot",
        "--catalog", str(tmp_path),
    ])
    done_ns = time.time_ns()
    assert result.exit_code == 0, result.output
    assert "is after the last closed bar" in result.output
    stored = Catalog(tmp_path).read("binance", "spot", "ADABTC", "bars_1m").column("ts_event").to_numpy()
    assert stored.size >= 110 and int(stored[-1]) <= done_ns  # every bar stored had closed when the command ended


def test_cli_backfill_never_stores_a_week_still_forming_though_the_venue_starts_weeks_on_another_day(
    venue: Venue, tmp_path: Path
) -> None:
    """Binance's weeks open on Monday, the epoch's on Thursday: the cap at now floored to a Thursday kept the
    week opened on Monday, stored as closed next Monday."""
    venue.throttle_next = 0
    week_ms = 7 * 24 * 60 * MINUTE_MS
    now_ms = int(time.time() * 1000)
    forming = now_ms - now_ms % MINUTE_MS - week_ms + 2 * MINUTE_MS  # closes a minute or two from now
    rows = [line.split(",") for line in KLINES.read_text().splitlines()][:6]
    venue.klines = [[str(forming + (i - 4) * week_ms), *r[1:6], str(forming + (i - 3) * week_ms - 1), *r[7:]]
                    for i, r in enumerate(rows)]  # four closed weeks, the one forming, the next
    since = pd.Timestamp(int(venue.klines[0][0]), unit="ms", tz="UTC").isoformat()
    result = CliRunner().invoke(data_app, [
        "backfill", "--exchange", "binance", "--symbol", "ADA/BTC", "--timeframe", "1w", "--since", since,
        "--api-base", venue.url, "--rate-limit-ms", "1", "--market-types", "spot", "--catalog", str(tmp_path),
    ])
    done_ns = time.time_ns()
    assert result.exit_code == 0, result.output
    stored = Catalog(tmp_path).read("binance", "spot", "ADABTC", "bars_1w").column("ts_event").to_numpy()
    assert stored.size >= 4 and int(stored[-1]) <= done_ns  # every bar stored had closed when the command ended


def test_backfill_1w_resumes_the_bars_7d_dataset_of_an_older_catalog(venue: Venue, tmp_path: Path) -> None:
    """Weekly bars were once stored as bars_7d: a 1w backfill continues that dataset rather than start a second."""
    venue.throttle_next = 0
    week_ms = 7 * 24 * 60 * MINUTE_MS
    monday = 1_635_724_800_000  # 2021-11-01
    rows = [line.split(",") for line in KLINES.read_text().splitlines()][:6]
    venue.klines = [[str(monday + i * week_ms), *r[1:6], str(monday + (i + 1) * week_ms - 1), *r[7:]]
                    for i, r in enumerate(rows)]
    first = backfill_ohlcv(tmp_path, exchange(venue, 1), "ADA/BTC", "1w", since_ms=monday, until_ms=monday + 3 * week_ms,
                           venue="binance", market="spot", catalog_symbol="ADABTC", limit=1000)
    assert first.manifest is not None and first.manifest.dataset == "bars_1w"
    old = tmp_path / "binance" / "spot" / "ADABTC"
    (old / "bars_1w").rename(old / "bars_7d")
    manifest = json.loads((old / "bars_7d" / "manifest.json").read_text())
    (old / "bars_7d" / "manifest.json").write_text(json.dumps({**manifest, "dataset": "bars_7d"}))
    again = backfill_ohlcv(tmp_path, exchange(venue, 1), "ADA/BTC", "1w", since_ms=monday, until_ms=monday + 6 * week_ms,
                           venue="binance", market="spot", catalog_symbol="ADABTC", limit=1000)
    assert again.manifest is not None and again.manifest.dataset == "bars_7d" and again.rows == 3
    assert [r.dataset for r in Catalog(tmp_path).datasets()] == ["bars_7d"]
    assert Catalog(tmp_path).read("binance", "spot", "ADABTC", "bars_7d").num_rows == 6


def expected_trades() -> tuple[np.ndarray, np.ndarray]:
    """Every fixture trade's time (ns) and aggressor (buyer is maker: the seller took, -1)."""
    ms = trade_millis()
    return ms * 1_000_000, np.where(TRADES.buyer_maker == "True", -1, 1)


def test_trades_backfill_pages_through_a_crowded_millisecond_and_a_429(venue: Venue, tmp_path: Path) -> None:
    since, until = int(venue.trade_ms[0]), int(venue.trade_ms[-1]) + 1
    sleeps: list[float] = []
    result = backfill_trades(tmp_path, exchange(venue, 1), "BTC/USDT", since_ms=since, until_ms=until,
                             venue="binance", market="spot", catalog_symbol="BTCUSDT", limit=25, sleep=sleeps.append)
    assert result.retries == 1 and len(sleeps) == 1
    stored = Catalog(tmp_path).read("binance", "spot", "BTCUSDT", "trades").to_pandas()
    ts, side = expected_trades()
    assert result.rows == len(stored) == len(TRADES) == 2001  # the 22 trades of one millisecond straddle pages
    assert np.array_equal(stored.ts_event.to_numpy(), ts)
    assert stored.trade_id.tolist() == [str(i) for i in TRADES.trade_id]
    assert np.array_equal(stored.price.to_numpy(), TRADES.price.to_numpy())
    np.testing.assert_allclose(stored["size"].to_numpy(), TRADES.quantity.to_numpy(), rtol=0, atol=5e-7)
    assert np.array_equal(stored.aggressor.to_numpy(), side)
    starts = [int(q["startTime"][0]) for _, q in venue.requests[1:]]
    assert all(b >= a for a, b in zip(starts, starts[1:], strict=False))  # a page starts at the last trade's ms


def test_trades_backfill_resumes_without_duplicates(venue: Venue, tmp_path: Path) -> None:
    venue.throttle_next = 0
    since, until = int(venue.trade_ms[0]), int(venue.trade_ms[-1]) + 1
    crowded = int(np.bincount(venue.trade_ms - since).argmax()) + since  # the millisecond of 22 trades
    first = backfill_trades(tmp_path, exchange(venue, 1), "BTC/USDT", since_ms=since, until_ms=crowded + 1,
                            venue="binance", market="spot", catalog_symbol="BTCUSDT", limit=30)
    assert first.rows == int((venue.trade_ms <= crowded).sum())
    venue.requests.clear()
    again = backfill_trades(tmp_path, exchange(venue, 1), "BTC/USDT", since_ms=since, until_ms=until,
                            venue="binance", market="spot", catalog_symbol="BTCUSDT", limit=30)
    assert int(venue.requests[0][1]["startTime"][0]) == crowded  # resumed at the last stored millisecond
    assert first.rows + again.rows == 2001
    stored = Catalog(tmp_path).read("binance", "spot", "BTCUSDT", "trades").to_pandas()
    assert stored.trade_id.is_unique and stored.ts_event.is_monotonic_increasing and len(stored) == 2001


def test_trades_backfill_from_before_the_datasets_first_trade_says_the_older_trades_are_not_fetched(
    venue: Venue, tmp_path: Path
) -> None:
    """The fixture's 1,001st trade is at 00:00:25.603 and the last before 00:00:26.103 at 00:00:26.035 (2021-01-08)."""
    venue.throttle_next = 0
    since, later = int(venue.trade_ms[0]), int(venue.trade_ms[1000])

    def backfill(since_ms: int) -> None:
        backfill_trades(tmp_path, exchange(venue, 1), "BTC/USDT", since_ms=since_ms, until_ms=later + 500,
                        venue="binance", market="spot", catalog_symbol="BTCUSDT", limit=1000)

    assert warnings_of(lambda: backfill(later)) == []
    assert warnings_of(lambda: backfill(since)) == [
        "binance/spot/BTCUSDT/trades holds trades from 2021-01-08T00:00:25.603Z to 2021-01-08T00:00:26.035Z: a backfill "
        "appends after its last row only, so nothing before 2021-01-08T00:00:25.603Z is fetched from --since "
        "2021-01-08T00:00:00.278Z; the venue has trades from 2021-01-08T00:00:00.278Z; for that older history backfill into an empty catalog (--catalog) or delete "
        f"{tmp_path / 'binance' / 'spot' / 'BTCUSDT' / 'trades'} and run again"
    ]
    assert len(Catalog(tmp_path).read("binance", "spot", "BTCUSDT", "trades")) == 11  # none of the first 1,000


@pytest.mark.parametrize(("limit", "per_page"), [(10, 1000), (30, 10)], ids=["at_the_limit", "at_the_venues_cap"])
def test_trades_backfill_pages_by_trade_id_past_a_millisecond_holding_more_trades_than_a_page(
        venue: Venue, tmp_path: Path, limit: int, per_page: int) -> None:
    """Before, a millisecond with more trades than one page (the 22 of one millisecond, 10 per page: at --limit,
    or at the venue's cap of 10 for a --limit of 30) stopped the backfill with "there may be more than 10 trades
    at ... ms, which no page can get past"; Binance's aggTrades page on by ``fromId``."""
    venue.throttle_next = 0
    venue.trades_per_page = per_page
    since, until = int(venue.trade_ms[0]), int(venue.trade_ms[-1]) + 1
    result = backfill_trades(tmp_path, exchange(venue, 1), "BTC/USDT", since_ms=since, until_ms=until,
                             venue="binance", market="spot", catalog_symbol="BTCUSDT", limit=limit)
    stored = Catalog(tmp_path).read("binance", "spot", "BTCUSDT", "trades").to_pandas()
    assert result.rows == len(stored) == 2001
    assert stored.trade_id.tolist() == [str(i) for i in TRADES.trade_id]  # each served trade once, in order
    assert np.array_equal(stored.ts_event.to_numpy(), expected_trades()[0])
    assert np.array_equal(stored.aggressor.to_numpy(), expected_trades()[1])
    by_id = [int(q["fromId"][0]) for _, q in venue.requests if "fromId" in q]
    crowded = int(np.flatnonzero(np.bincount(venue.trade_ms - since) > 10)[0]) + since  # the first such millisecond
    assert by_id[0] == int(TRADES.trade_id[np.flatnonzero(venue.trade_ms == crowded)[10]])  # the 11th trade there
    assert all(b > a for a, b in zip(by_id, by_id[1:], strict=False))


def test_trades_backfill_with_a_limit_above_the_venues_cap_pages_on(venue: Venue, tmp_path: Path) -> None:
    """Before, a venue returning 10 trades per page to a --limit of 30 left the 22 trades of one millisecond
    at its first 10 and ended there, exit 0, with 67 of the 2,001 trades."""
    venue.throttle_next = 0
    since, until = int(venue.trade_ms[0]), int(venue.trade_ms[-1]) + 1
    venue.trades_per_page = 25  # shorter pages than asked: paged on from, every trade kept
    whole = backfill_trades(tmp_path, exchange(venue, 1), "BTC/USDT", since_ms=since, until_ms=until,
                            venue="binance", market="spot", catalog_symbol="BTCUSDT", limit=30)
    assert whole.rows == 2001
    assert not any("fromId" in q for _, q in venue.requests)  # no millisecond outgrew a page: paged by time only


def test_trades_backfill_resumes_when_the_catalog_holds_part_of_its_last_millisecond(
        venue: Venue, tmp_path: Path) -> None:
    venue.throttle_next = 0
    since, until = int(venue.trade_ms[0]), int(venue.trade_ms[-1]) + 1
    crowded = int(np.bincount(venue.trade_ms - since).argmax()) + since  # the millisecond of 22 trades
    backfill_trades(tmp_path, exchange(venue, 1), "BTC/USDT", since_ms=since, until_ms=crowded + 1,
                    venue="binance", market="spot", catalog_symbol="BTCUSDT", limit=30)
    cat = Catalog(tmp_path)
    held = cat.read("binance", "spot", "BTCUSDT", "trades")
    held = held.slice(0, held.num_rows - 10)  # the venue had sent 12 of the 22 trades of that millisecond
    cat.write(held, "binance", "spot", "BTCUSDT", "trades", kind="trades", mode="overwrite")
    rest = backfill_trades(tmp_path, exchange(venue, 1), "BTC/USDT", since_ms=since, until_ms=crowded + 1,
                           venue="binance", market="spot", catalog_symbol="BTCUSDT", limit=30)
    assert rest.rows == 10  # that millisecond now spans two files: the next resume reads the ids of both
    again = backfill_trades(tmp_path, exchange(venue, 1), "BTC/USDT", since_ms=since, until_ms=until,
                            venue="binance", market="spot", catalog_symbol="BTCUSDT", limit=30)
    assert held.num_rows + rest.rows + again.rows == 2001
    stored = cat.read("binance", "spot", "BTCUSDT", "trades").to_pandas()
    assert stored.trade_id.tolist() == [str(i) for i in TRADES.trade_id]
    assert np.array_equal(stored.ts_event.to_numpy(), expected_trades()[0])


def test_cli_backfill_trades(venue: Venue, tmp_path: Path) -> None:
    venue.throttle_next = 0
    result = CliRunner().invoke(data_app, [
        "backfill", "--exchange", "binance", "--symbol", "BTC/USDT", "--kind", "trades",
        "--since", "2021-01-08T00:00:00", "--until", "2021-01-08T00:01:00", "--api-base", venue.url,
        "--rate-limit-ms", "1", "--market-types", "spot", "--catalog", str(tmp_path),
    ])
    assert result.exit_code == 0, result.output
    assert "2001 new trades" in result.output and "binance/spot/BTCUSDT/trades: 2001 rows" in result.output
    bad = CliRunner().invoke(data_app, ["backfill", "--exchange", "binance", "--symbol", "BTC/USDT", "--kind", "quotes",
                                        "--since", "2021-01-08", "--catalog", str(tmp_path)])
    assert bad.exit_code == 2 and "--kind 'quotes' is not bars or trades" in bad.output


@pytest.mark.parametrize("kind", ["bars", "trades"])
def test_cli_backfill_refuses_an_until_not_after_the_since(venue: Venue, tmp_path: Path, kind: str) -> None:
    """Before, --until before --since fetched nothing and exited 0 ("0 requests, 0 new bars")."""
    venue.throttle_next = 0
    result = CliRunner().invoke(data_app, [
        "backfill", "--exchange", "binance", "--symbol", "ADA/BTC", "--kind", kind, "--since", "2021-11-27T02:00:00",
        "--until", "2021-11-27T00:00:00", "--api-base", venue.url, "--rate-limit-ms", "1", "--market-types", "spot",
        "--catalog", str(tmp_path),
    ])
    assert result.exit_code == 2, result.output
    assert "--until 2021-11-27T00:00:00 is not after --since 2021-11-27T02:00:00" in result.output
    assert venue.requests == [] and not (tmp_path / "binance").exists()


@pytest.mark.parametrize(("kind", "timeframe", "since"), [
    ("bars", "1m", "2099-01-01"),
    ("trades", "1m", "2099-01-01T00:00"),
    ("bars", "1w", "yesterday"),  # the weekly bar opening yesterday closes in 6 days
])
def test_cli_backfill_refuses_a_since_not_before_now(venue: Venue, tmp_path: Path, kind: str, timeframe: str,
                                                     since: str) -> None:
    """``--since 2099-01-01`` without ``--until`` (now) asked the venue for nothing and exited 0 ("0 requests,
    0 new bars"), as ``--until`` before ``--since`` did; it is refused the same way, naming now."""
    venue.throttle_next = 0
    if since == "yesterday":
        since = (pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    result = CliRunner().invoke(data_app, [
        "backfill", "--exchange", "binance", "--symbol", "ADA/BTC", "--kind", kind, "--timeframe", timeframe,
        "--since", since, "--api-base", venue.url, "--rate-limit-ms", "1", "--market-types", "spot",
        "--catalog", str(tmp_path),
    ])
    assert result.exit_code == 2, result.output
    closed = f" less one {timeframe} bar: no bar opening then has closed" if kind == "bars" else ""
    text = " ".join(result.output.split())
    assert f"--since {since} is not before now (" in text and f"UTC){closed}: nothing to fetch" in text, text
    assert venue.requests == [] and not (tmp_path / "binance").exists()


@pytest.mark.parametrize("since", ["", "NaT"])
def test_cli_backfill_refuses_a_since_that_is_no_time(venue: Venue, tmp_path: Path, since: str) -> None:
    """``--since "$START"`` with START unset (or ``NaT``) was pandas' not-a-time, read as 292 million years BC:
    the backfill asked the venue for bars from then. It is refused as no date, exit 2, before any request."""
    venue.throttle_next = 0
    result = CliRunner().invoke(data_app, [
        "backfill", "--exchange", "binance", "--symbol", "ADA/BTC", "--since", since, "--until", "2021-11-27T02:00:00",
        "--api-base", venue.url, "--rate-limit-ms", "1", "--market-types", "spot", "--catalog", str(tmp_path),
    ])
    assert result.exit_code == 2, result.output
    assert f"--since {since!r} is not a date or time (ISO 8601, UTC)" in " ".join(result.output.split())
    assert venue.requests == [] and not (tmp_path / "binance").exists()


def test_cli_backfill_reads_since_now_in_utc_on_a_machine_in_another_time_zone(
    venue: Venue, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a machine in New York ``--since now`` was the local wall clock read as UTC, 4 or 5 hours ago: a trades
    backfill asked the venue for those hours. It is now UTC's now, so nothing is left to fetch (refused, exit 2)."""
    venue.throttle_next = 0
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        result = CliRunner().invoke(data_app, [
            "backfill", "--exchange", "binance", "--symbol", "ADA/BTC", "--kind", "trades", "--since", "now",
            "--api-base", venue.url, "--rate-limit-ms", "1", "--market-types", "spot", "--catalog", str(tmp_path),
        ])
    finally:
        monkeypatch.undo()
        time.tzset()
    assert result.exit_code == 2, result.output
    assert "--since now is not before now (" in " ".join(result.output.split())
    assert venue.requests == []


@pytest.fixture
def bybit_url() -> Iterator[str]:
    """A local server speaking Bybit v5's spot instruments-info and recent-trade: the newest 60 fixture trades,
    newest first, whatever the request asks (the endpoint has no time or id to page from)."""
    info = (FIXTURES / "bybit" / "market_instruments-info_spot_2026-08-09_cut.json").read_bytes()
    ms = trade_millis()
    newest = [{"execId": str(TRADES.trade_id[i]), "symbol": "BTCUSDT", "price": f"{TRADES.price[i]:.2f}",
               "size": f"{TRADES.quantity[i]:.6f}", "side": "Sell" if TRADES.buyer_maker[i] == "True" else "Buy",
               "time": str(ms[i]), "isBlockTrade": False} for i in range(len(TRADES) - 1, len(TRADES) - 61, -1)]
    recent = json.dumps({"retCode": 0, "retMsg": "OK", "result": {"category": "spot", "list": newest},
                         "retExtInfo": {}, "time": int(ms[-1]) + 1000}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

        def do_GET(self) -> None:  # noqa: N802
            path = urlsplit(self.path).path
            body = {"/v5/market/instruments-info": info, "/v5/market/recent-trade": recent}.get(path)
            self.send_response(200 if body else 404)
            body = body or b'{"retCode":10001,"retMsg":"not found"}'
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_cli_backfill_trades_refuses_a_venue_serving_only_its_recent_trades(bybit_url: str, tmp_path: Path) -> None:
    """Before, Bybit's minute of 2,001 trades backfilled as its last 60 ("60 new trades"), exit 0."""
    result = CliRunner().invoke(data_app, [
        "backfill", "--exchange", "bybit", "--symbol", "BTC/USDT", "--kind", "trades",
        "--since", "2021-01-08T00:00:00", "--until", "2021-01-08T00:01:00", "--api-base", bybit_url,
        "--rate-limit-ms", "1", "--market-types", "spot", "--catalog", str(tmp_path),
    ])
    assert result.exit_code == 2, result.output
    assert "--exchange bybit: a trades backfill cannot page through its history" in result.output
    assert "serves only its recent trades" in result.output
    assert not (tmp_path / "bybit").exists()



def test_cli_backfill_trades_refuses_bybit_before_any_request(tmp_path: Path) -> None:
    """Before, the CLI loaded Bybit's markets first: with the venue unreachable (here a server
    answering 503 to everything) it exited 3 'cannot load the market BTC/USDT: ExchangeNotAvailable'."""
    requests: list[str] = []

    class Down(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

        def do_GET(self) -> None:  # noqa: N802
            requests.append(self.path)
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Down)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        result = CliRunner().invoke(data_app, [
            "backfill", "--exchange", "bybit", "--symbol", "BTC/USDT", "--kind", "trades",
            "--since", "2021-01-08T00:00:00", "--until", "2021-01-08T00:01:00",
            "--api-base", f"http://127.0.0.1:{httpd.server_address[1]}", "--rate-limit-ms", "1",
            "--catalog", str(tmp_path),
        ])
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert result.exit_code == 2, result.output
    assert "--exchange bybit: a trades backfill cannot page through its history" in result.output
    assert requests == []

OKX_HOLE = range(300, 550)  # fixture trades OKX does not serve: a whole page of ids whatever the alignment


class OkxVenue:
    """A local server speaking OKX v5's spot instruments and ``GET /api/v5/market/history-trades``.

    The 2,001 fixture trades as BTC-USDT's (their ids, times, prices, sizes; ``side`` the taker's), less
    ``hole`` (ids the venue does not serve: more than one page of them). history-trades as OKX documents it:
    ``type`` 1 (default) pages by trade id, 2 by time (``after`` only); ``after``: records earlier than it,
    ``before``: newer; newest first; at most 100 whatever the ``limit`` (more than 100 answered with the
    newest 100 of the range, so ``before`` alone answers the latest trades).
    """

    hole = OKX_HOLE
    served = [i for i in range(len(TRADES)) if i not in OKX_HOLE]

    def __init__(self, inst_type: str = "SPOT", inst_id: str = "BTC-USDT") -> None:
        info = (FIXTURES / "okx" / f"public_instruments_{inst_type}_2022-05-13_cut.json").read_bytes()
        ms = trade_millis()
        self.rows = {int(TRADES.trade_id[i]): {
            "instId": inst_id, "tradeId": str(TRADES.trade_id[i]), "px": f"{TRADES.price[i]:.2f}",
            "sz": f"{TRADES.quantity[i]:.6f}", "side": "sell" if TRADES.buyer_maker[i] == "True" else "buy",
            "ts": str(ms[i])} for i in self.served}
        self.requests: list[dict[str, str]] = []
        venue = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

            def do_GET(self) -> None:  # noqa: N802
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path == "/api/v5/public/instruments" and query.get("instType") == inst_type:
                    return self._send(info)
                if url.path == "/api/v5/market/history-trades" and query.get("instId") == inst_id:
                    venue.requests.append(query)
                    return self._send(json.dumps(venue.history(query)).encode())
                return self._send(json.dumps({"code": "51001", "msg": "Instrument ID does not exist", "data": []})
                                  .encode())

            def _send(self, body: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def history(self, query: dict[str, str]) -> dict[str, object]:
        rows = sorted(self.rows.values(), key=lambda r: -int(r["tradeId"]))
        if query.get("type", "1") == "2":
            if "before" in query:
                return {"code": "51000", "msg": "Parameter before error", "data": []}
            rows = [r for r in rows if "after" not in query or int(r["ts"]) < int(query["after"])]
        else:
            rows = [r for r in rows if ("after" not in query or int(r["tradeId"]) < int(query["after"]))
                    and ("before" not in query or int(r["tradeId"]) > int(query["before"]))]
        return {"code": "0", "msg": "", "data": rows[:min(100, int(query.get("limit", "100")))]}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def okx() -> Iterator[OkxVenue]:
    server = OkxVenue()
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def okx_exchange(venue: OkxVenue):
    return make_exchange("okx", api_base=venue.url, rate_limit_ms=1, options={"fetchMarkets": {"types": ["spot"]}})


BUSY_MS, UNTIL_MS = 1_610_064_002_573, 1_610_064_022_423  # 22 trades at the first, 19 at the second


def okx_served(since_ms: int, until_ms: int) -> list[int]:
    """Indices of the trades the OKX server serves in ``[since_ms, until_ms)``."""
    ms = trade_millis()
    return [i for i in OkxVenue.served if since_ms <= ms[i] < until_ms]


def assert_stored_okx_trades(tmp_path: Path, served: list[int]) -> None:
    stored = Catalog(tmp_path).read("okx", "spot", "BTC-USDT", "trades").to_pandas()
    ts, side = expected_trades()
    assert stored.trade_id.tolist() == [str(TRADES.trade_id[i]) for i in served]  # each served trade once, in order
    assert np.array_equal(stored.ts_event.to_numpy(), ts[served])
    assert np.array_equal(stored.aggressor.to_numpy(), side[served])
    assert np.array_equal(stored.price.to_numpy(), TRADES.price.to_numpy()[served])
    np.testing.assert_allclose(stored["size"].to_numpy(), TRADES.quantity.to_numpy()[served], rtol=0, atol=5e-7)


@pytest.mark.parametrize("limit", [10, 1000])
def test_okx_trades_backfill_pages_by_trade_id_through_busy_milliseconds(
        okx: OkxVenue, tmp_path: Path, limit: int) -> None:
    """Before, OKX was refused for --kind trades (ccxt's fetch_trades serves only the recent trades)."""
    result = backfill_trades(tmp_path, okx_exchange(okx), "BTC/USDT", since_ms=BUSY_MS, until_ms=UNTIL_MS,
                             venue="okx", market="spot", catalog_symbol="BTC-USDT", limit=limit)
    served = okx_served(BUSY_MS, UNTIL_MS)
    assert result.rows == len(served) == 732 - len(OkxVenue.hole)  # from the first of 22 trades at --since on
    assert_stored_okx_trades(tmp_path, served)  # no trade at or after --until (19 of them), none of the hole
    windows = [q for q in okx.requests if "before" in q]
    assert all("after" in q and int(q["after"]) - int(q["before"]) - 1 == min(limit, 100) for q in windows)
    assert all(int(q["limit"]) <= 100 for q in okx.requests)


def test_okx_trades_backfill_resumes_inside_a_busy_millisecond(okx: OkxVenue, tmp_path: Path) -> None:
    crowded = 1_610_064_006_929  # 15 trades
    backfill_trades(tmp_path, okx_exchange(okx), "BTC/USDT", since_ms=BUSY_MS, until_ms=crowded + 1, venue="okx",
                    market="spot", catalog_symbol="BTC-USDT", limit=30)
    cat = Catalog(tmp_path)
    held = cat.read("okx", "spot", "BTC-USDT", "trades")
    held = held.slice(0, held.num_rows - 7)  # 8 of the 15 trades of that millisecond stored
    cat.write(held, "okx", "spot", "BTC-USDT", "trades", kind="trades", mode="overwrite")
    again = backfill_trades(tmp_path, okx_exchange(okx), "BTC/USDT", since_ms=BUSY_MS, until_ms=UNTIL_MS,
                            venue="okx", market="spot", catalog_symbol="BTC-USDT", limit=30)
    served = okx_served(BUSY_MS, UNTIL_MS)
    assert held.num_rows + again.rows == len(served)
    assert_stored_okx_trades(tmp_path, served)


def test_okx_trades_backfill_refuses_a_since_before_the_venues_oldest_trade(okx: OkxVenue, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"OKX serves no trade before --since \(1610064000000 ms\)"):
        backfill_trades(tmp_path, okx_exchange(okx), "BTC/USDT", since_ms=1_610_064_000_000, until_ms=UNTIL_MS,
                        venue="okx", market="spot", catalog_symbol="BTC-USDT")
    assert Catalog(tmp_path).datasets() == []


def test_cli_backfill_trades_from_okx(okx: OkxVenue, tmp_path: Path) -> None:
    result = CliRunner().invoke(data_app, [
        "backfill", "--exchange", "okx", "--symbol", "BTC/USDT", "--kind", "trades",
        "--since", "2021-01-08T00:00:02.573", "--until", "2021-01-08T00:00:22.423", "--api-base", okx.url,
        "--rate-limit-ms", "1", "--market-types", "spot", "--catalog", str(tmp_path),
    ])
    assert result.exit_code == 0, result.output
    assert "482 new trades" in result.output and "okx/spot/BTC-USDT/trades: 482 rows" in result.output


@pytest.fixture
def okx_swap() -> Iterator[OkxVenue]:
    server = OkxVenue("SWAP", "BTC-USDT-SWAP")
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def test_dollar_bars_from_backfilled_okx_swap_trades_count_base_units_without_the_flag(
        okx_swap: OkxVenue, tmp_path: Path) -> None:
    """OKX swap trades are sized in contracts (BTC-USDT-SWAP: ctVal 0.01 BTC, the instruments fixture):
    the backfill records it and ``data bars`` uses it, so a dollar bar sums ``px * sz * 0.01``."""
    result = CliRunner().invoke(data_app, [
        "backfill", "--exchange", "okx", "--symbol", "BTC/USDT:USDT", "--kind", "trades",
        "--since", "2021-01-08T00:00:02.573", "--until", "2021-01-08T00:00:22.423", "--api-base", okx_swap.url,
        "--rate-limit-ms", "1", "--market-types", "swap", "--catalog", str(tmp_path),
    ])
    assert result.exit_code == 0, result.output
    rows = sorted((r for r in okx_swap.rows.values() if BUSY_MS <= int(r["ts"]) < UNTIL_MS),
                  key=lambda r: int(r["tradeId"]))
    base = [float(r["sz"]) * 0.01 for r in rows]  # contracts x 0.01 BTC
    quote = [float(r["px"]) * b for r, b in zip(rows, base)]
    threshold = round(sum(quote) / 4)
    want, value, volume = [], 0.0, 0.0  # the module docstring's rule: a bar closes on the trade reaching it
    for b, q in zip(base, quote):
        value, volume = value + q, volume + b
        if value >= threshold:
            want.append(volume)
            value = volume = 0.0
    assert len(want) == 3
    result = CliRunner().invoke(data_app, ["bars", "okx/swap/BTC-USDT-SWAP/trades", "--mode", "dollar",
                                           "--threshold", str(threshold), "--catalog", str(tmp_path)])
    assert result.exit_code == 0, result.output
    got = Catalog(tmp_path).read("okx", "swap", "BTC-USDT-SWAP", f"bars_dollar_{threshold}").to_pandas()
    np.testing.assert_allclose(got.volume.to_numpy(), want, rtol=1e-9)
    assert Catalog(tmp_path).manifest("okx", "swap", "BTC-USDT-SWAP", "trades").contract_size == 0.01
    result = CliRunner().invoke(data_app, ["bars", "okx/swap/BTC-USDT-SWAP/trades", "--mode", "dollar",
                                           "--threshold", str(threshold), "--name", "other", "--contract-size", "1",
                                           "--catalog", str(tmp_path)])
    assert result.exit_code != 0 and "contract size 1 given" in result.output
    assert "contract size 0.01" in result.output


def test_a_resume_racing_overwrites_in_another_process_finds_the_tail_of_one_version(tmp_path: Path) -> None:
    """A trades backfill resumes after the stored tail: the last trade time and the ids stored at it. It listed the
    files under the catalog's read lock and read the last one after it, then read the manifest again for the range
    it warns of: an ``--overwrite`` in another process meanwhile gave it a tail and a manifest of two versions (1 to
    15 of 2,000 to 9,000 resumes against 100 overwrites, in each of 4 runs), or one version's last time with the
    ids the other's file holds, or could fail on a file gone. The tail is now read under the lock with the manifest
    it returns: every tail is that of one version, with that version's manifest."""
    from tests.data.test_data_catalog import race_overwrites, raced_versions
    from tradebus.data.backfill import _stored_tail

    tails = []
    for table, _ in raced_versions("trades"):
        last = int(table.column("ts_event")[-1].as_py()) // 1_000_000
        tails.append((table.num_rows, last, {table.column("trade_id")[-1].as_py()}))
    assert tails[0][1] != tails[1][1]

    def tail() -> int | str:
        manifest, last, ids = _stored_tail(Catalog(tmp_path), "x", "spot", "S")
        found = (manifest.rows, last, ids)
        return tails.index(found) if found in tails else f"neither version's: {found}"

    outcomes = race_overwrites(tmp_path, tail, "trades")
    bad = [o for o in outcomes if not isinstance(o, int)]
    assert bad == [], f"{len(bad)} of {len(outcomes)} tails: {bad[:3]}"
    assert sorted(set(outcomes)) == [0, 1], len(outcomes)  # both versions were read
