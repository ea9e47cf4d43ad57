"""A paper daemon restarted after missing whole hours of a margin loan prices them with the venue's klines.

The journal holds a short of 0.5 BTC sold at 20,000, borrowed 2 h 40 min before the last whole
hour (a kernel on a simulated clock wrote it): the restarted daemon owes the hourly interest of
the three whole hours since. A running daemon fed by trades values each at the last trade
before the hour, which is the close of the 1-minute kline ending at the hour. The local Binance
emulator serves the feed, ``exchangeInfo`` and ``klines`` (each minute's close distinct, so the
kline starting at the hour would give another number). Before, every such hour was charged at
the journal's 20,000 (``hour_last_fill``).
"""

from __future__ import annotations

import asyncio
import gzip
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from tradebus.adapters.binance.emulator import BinanceProtocol
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.engine.clock import SimulatedClock
from tradebus.engine.interest import HOUR_NS, HOURS_PER_YEAR
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import InterestCharged, OrderSide, Trade
from tradebus.execution.config import VenueConfig
from tradebus.execution.journal import Journal
from tradebus.node.config import PaperConfig
from tradebus.node.daemon import PaperNode
from tradebus.strategies.base import Strategy

from .node_testdata import FIXTURES, IID, binance_config, config_of, run_node

MIN_NS = 60_000_000_000
RATE = 0.10
EXCHANGE_INFO = gzip.decompress((FIXTURES / "binance" / "exchangeInfo_spot_2021-10-12.json.gz").read_bytes()).decode()


class _Short(Strategy):
    def __init__(self) -> None:
        super().__init__(IID, strategy_id="short")
        self.sent = False

    def on_trade(self, trade: Trade) -> None:
        if not self.sent:
            self.sent = True
            self.submit_market(IID, OrderSide.SELL, 0.5)


def _journal_a_short(config: PaperConfig, borrowed_at: int) -> None:
    """Sell 0.5 BTC at 20,000 (a loan of 0.5 BTC from ``borrowed_at``) into the config's journal."""
    assert config.journal is not None
    journal = Journal(config.journal)
    kernel = Kernel(config.instrument_map().values(), clock=SimulatedClock(borrowed_at - MIN_NS), initial_cash=config.initial_cash,
                    venue_config=VenueConfig(fill_on="trades"), borrow_rates={"BTC": RATE}, journal=journal)  # fmt: skip
    kernel.add_strategy(_Short())
    for n, ts in enumerate((borrowed_at - MIN_NS, borrowed_at)):
        kernel.process(Trade(IID, ts, ts, 20_000.0, 1.0, 1, str(n)))
    kernel.stop()
    journal.close()
    assert [c.kind for c in kernel.result.interest or []] == ["borrow"]


def _close(open_ms: int) -> float:
    """The close of the 1m kline opening at ``open_ms``: one a minute apart, none alike."""
    return 20_000.0 + (open_ms // 60_000) % 10_000


def _klines(first_ms: int, last_ms: int, missing: set[int]) -> list[list[Any]]:
    return [[t, "20000.00", "30000.00", "20000.00", f"{_close(t):.2f}", "1.5", t + 59_999, "0", 1, "0", "0", "0"]
            for t in range(first_ms, last_ms + 1, 60_000) if t not in missing]  # fmt: skip


async def _restart(tmp_path: Path, klines: list[list[Any]] | None) -> tuple[list[InterestCharged], list[int], list[str]]:
    """Journal a short, restart a daemon on it; its charges, the hours it missed and its warnings."""
    last_hour = time.time_ns() // HOUR_NS * HOUR_NS
    borrowed_at = last_hour - 2 * HOUR_NS - 40 * MIN_NS
    protocol = BinanceProtocol(exchange_info=EXCHANGE_INFO, klines=None if klines is None else {"BTCUSDT": klines})
    lines: list[str] = []
    async with LocalVenueServer(protocol, [], lifetime=120.0) as srv:
        data = {**binance_config(srv.ws_url, srv.http_url, ["trade"], tmp=tmp_path, journal=True),
                "annual_borrow_rates": {"BTC": RATE}, "warm_up": False}  # fmt: skip
        config = config_of(data)
        _journal_a_short(config, borrowed_at)
        node = PaperNode(config, handle_signals=False)
        interest = node.kernel.interest
        assert interest is not None
        sink = logger.add(lines.append, level="WARNING", format="{message}")
        try:
            await run_node(node, lambda: len(interest.charges) >= 4)
        finally:
            logger.remove(sink)
    missed = list(range(last_hour - 2 * HOUR_NS, last_hour + 1, HOUR_NS))
    return interest.charges, missed, lines


def _kline_window(missed: list[int]) -> tuple[int, int]:
    return (missed[0] - 3 * HOUR_NS) // 1_000_000, (missed[-1] + 2 * HOUR_NS) // 1_000_000


async def test_hours_missed_while_down_are_charged_at_the_close_of_the_kline_ending_at_each_hour(tmp_path: Path) -> None:
    last_hour = time.time_ns() // HOUR_NS * HOUR_NS
    first_ms, last_ms = _kline_window([last_hour - 2 * HOUR_NS, last_hour])
    charges, missed, lines = await _restart(tmp_path, _klines(first_ms, last_ms, set()))
    hourly = [c for c in charges if c.kind != "borrow"][:3]
    assert [c.ts_event for c in hourly] == missed
    for c in hourly:
        price = _close(c.ts_event // 1_000_000 - 60_000)  # the kline [hour - 1 min, hour)
        assert (c.kind, c.asset, c.borrowed, c.price, c.quote) == ("hour_kline", "BTC", 0.5, price, "USDT")
        assert c.interest == pytest.approx(0.5 * price * RATE / HOURS_PER_YEAR, rel=1e-12)
        assert c.price != _close(c.ts_event // 1_000_000)  # not the kline starting at the hour
    assert not [line for line in lines if "interest" in line]


async def test_an_hour_the_venue_has_no_kline_for_falls_back_to_the_last_fill_naming_why(tmp_path: Path) -> None:
    last_hour = time.time_ns() // HOUR_NS * HOUR_NS
    first_ms, last_ms = _kline_window([last_hour - 2 * HOUR_NS, last_hour])
    gap = (last_hour - HOUR_NS) // 1_000_000 - 60_000  # the minute before the middle hour
    charges, missed, lines = await _restart(tmp_path, _klines(first_ms, last_ms, {gap}))
    hourly = [c for c in charges if c.kind != "borrow"][:3]
    assert [(c.kind, c.ts_event) for c in hourly] == [("hour_kline", missed[0]), ("hour_last_fill", missed[1]),
                                                      ("hour_kline", missed[2])]  # fmt: skip
    assert hourly[1].price == 20_000.0
    (line,) = [line for line in lines if "interest" in line]
    assert "the last fill price of BTCUSDT.BINANCE" in line and "binance has no BTC/USDT 1m candle ending at that hour" in line


async def test_a_venue_without_klines_leaves_every_missed_hour_at_the_last_fill_naming_the_error(tmp_path: Path) -> None:
    charges, missed, lines = await _restart(tmp_path, None)  # the emulator answers klines with 404
    hourly = [c for c in charges if c.kind != "borrow"][:3]
    assert [(c.kind, c.ts_event, c.price) for c in hourly] == [("hour_last_fill", h, 20_000.0) for h in missed]
    warned = [line for line in lines if "interest" in line]
    assert len(warned) >= 3 and all("binance BTC/USDT" in line for line in warned[:3])


async def test_hours_after_a_failed_kline_request_say_they_were_not_asked_naming_the_hour_that_failed(tmp_path: Path) -> None:
    from tradebus.node.missed_hours import fetch_missed_prices

    last_hour = time.time_ns() // HOUR_NS * HOUR_NS
    missed = list(range(last_hour - 2 * HOUR_NS, last_hour + 1, HOUR_NS))
    async with LocalVenueServer(BinanceProtocol(exchange_info=EXCHANGE_INFO, klines=None), [], lifetime=60.0) as srv:
        config = config_of(binance_config(srv.ws_url, srv.http_url, ["trade"], tmp=tmp_path))
        prices, failures = await asyncio.to_thread(fetch_missed_prices, config, {IID: missed})
    assert prices == {}
    first = failures[(IID, missed[0])]
    assert f"startTime={missed[0] // 1_000_000 - 60_000}" in first  # the request of that hour, as the exchange failed it
    hour = datetime.fromtimestamp(missed[0] / 1e9, UTC).strftime("%Y-%m-%d %H:%M UTC")
    for later in missed[1:]:
        why = failures[(IID, later)]
        assert why.startswith(f"not asked: the request for the hour {hour} failed") and "startTime" not in why
