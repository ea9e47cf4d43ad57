"""The node router hands a simulated order's arrival to the venue by the end of the frame it was decided on."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from loguru import logger

from tests.live.live_harness import until
from tests.live.node_testdata import SPOT_SNAPSHOT
from tradebus.adapters.binance.client import BinanceClient
from tradebus.adapters.binance.config import BinanceConfig
from tradebus.adapters.binance.parse import parse_depth_snapshot
from tradebus.adapters.common.policy import Backoff, ConnectionPolicy
from tradebus.engine.messages import (
    OrderAccepted,
    OrderFilled,
    OrderSide,
    OrderType,
    SubmitOrder,
    Trade,
    TradingState,
    TradingStateChanged,
)
from tradebus.node.config import parse_paper_config
from tradebus.node.daemon import PaperNode
from tradebus.strategies.base import Strategy

IID = "BTCUSDT.BINANCE"


class BuyOnce(Strategy):
    """One market buy on the first trade."""

    def on_trade(self, trade: Trade) -> None:
        if not self.orders_sent:
            self.orders_sent = 1
            self.submit_market(self.instrument_id, OrderSide.BUY, 0.01)

    orders_sent = 0


class BuyThenFail(Strategy):
    """A market buy on the first trade; the second one's hook raises."""

    def on_trade(self, trade: Trade) -> None:
        self.trades += 1
        if self.trades == 1:
            self.submit_market(self.instrument_id, OrderSide.BUY, 0.01)
        elif self.trades == 2:
            raise RuntimeError("the strategy's bug")

    trades = 0


def _config(latency_ns: int, tmp: Path, strategy: str = "BuyOnce", **extra: Any) -> Any:
    return parse_paper_config(
        {
            **extra,
            "instruments": [{"venue": "BINANCE", "symbol": "BTCUSDT", "base": "BTC", "quote": "USDT",
                             "tick_size": 0.01, "lot_size": 1e-5}],
            "strategy": {"name": f"{__name__}:{strategy}", "instruments": [IID]},
            "venue": {"fill_on": "trades", "latency_ns": latency_ns},
            "feeds": [{"venue": "binance", "market": "spot", "ws_url": "ws://127.0.0.1:9/",
                       "subscriptions": {IID: ["trade"]}}],
            "journal": str(tmp / "journal.sqlite"),
        },
        "<test>",
    )


def _trade(price: float, trade_id: int, received: int | None = None) -> Trade:
    now = time.time_ns() if received is None else received
    return Trade(IID, now - 1_000_000, now, price, 0.5, 1, str(trade_id))


async def test_an_order_decided_on_a_message_arrives_before_the_router_returns(tmp_path: Path) -> None:
    node = PaperNode(_config(0, tmp_path), handle_signals=False)
    events: list[Any] = []
    node.kernel.bus.subscribe(OrderAccepted, events.append)
    node.kernel.bus.subscribe(OrderFilled, events.append)
    node.kernel.start()
    try:
        node.router(_trade(60_000.0, 1))  # outside a frame: a frame of its own, ended when the router returns
        # no await in between: the event loop has not run a callback since the decision
        assert [type(e) for e in events] == [OrderAccepted]
        node.router(_trade(60_001.0, 2))  # the first trade after its arrival fills it
        assert [type(e) for e in events] == [OrderAccepted, OrderFilled]
        assert events[1].last_px == 60_001.0
    finally:
        node.kernel.stop()
        node.journal.close()


async def test_an_order_decided_on_a_frames_first_message_arrives_once_the_frame_ends(tmp_path: Path) -> None:
    # The messages of one frame were received at one instant: a replay's clock fires nothing between them.
    node = PaperNode(_config(0, tmp_path), handle_signals=False)
    events: list[Any] = []
    node.kernel.bus.subscribe(OrderAccepted, events.append)
    node.kernel.bus.subscribe(OrderFilled, events.append)
    node.kernel.start()
    try:
        received = time.time_ns()
        node.router.frame_started(received)
        node.router(_trade(60_000.0, 1, received))  # decides
        node.router(_trade(60_001.0, 2, received))
        assert events == []  # the order has not reached the venue between the frame's messages
        node.router.frame_ended()
        assert [type(e) for e in events] == [OrderAccepted]
        node.router.frame_started(time.time_ns())
        node.router(_trade(60_002.0, 3))  # the next frame's trade fills it, not the second of the first frame
        node.router.frame_ended()
        assert [type(e) for e in events] == [OrderAccepted, OrderFilled] and events[1].last_px == 60_002.0
    finally:
        node.kernel.stop()
        node.journal.close()


async def test_an_order_with_latency_arrives_only_when_due(tmp_path: Path) -> None:
    node = PaperNode(_config(50_000_000, tmp_path), handle_signals=False)  # 50 ms
    accepted: list[OrderAccepted] = []
    node.kernel.bus.subscribe(OrderAccepted, accepted.append)
    node.kernel.start()
    try:
        decided = time.time_ns()
        node.router(_trade(60_000.0, 1))
        assert accepted == []  # not due yet: nothing arrives early
        later = asyncio.Event()  # due after the arrival (50 ms): the arrival's alert has fired before this one
        node.clock.set_alert("later", decided + 100_000_000, lambda _event: later.set())
        await asyncio.wait_for(later.wait(), timeout=5)
        assert len(accepted) == 1 and accepted[0].ts_event >= decided + 50_000_000
    finally:
        node.kernel.stop()
        node.journal.close()


@contextlib.contextmanager
def _arrivals_and_decision_lines(tmp_path: Path) -> Iterator[tuple[PaperNode, list[str]]]:
    """A started node (no latency) and, in the order they came, its orders' arrivals and its decision log lines."""
    node = PaperNode(_config(0, tmp_path), handle_signals=False)
    seen: list[str] = []
    node.kernel.bus.subscribe(OrderAccepted, lambda e: seen.append(f"accepted {e.client_order_id}"))
    sink = logger.add(lambda m: seen.append(m.record["message"]), level="INFO", filter=lambda r: "decision" in r["extra"])
    node.kernel.start()
    try:
        yield node, seen
    finally:
        logger.remove(sink)
        node.kernel.stop()
        node.journal.close()


def _assert_arrived_then_logged(seen: list[str]) -> None:
    """``seen`` is one buy's arrival, then its decision line."""
    (coid,) = [s.split()[1] for s in seen if s.startswith("accepted")]
    assert seen == [f"accepted {coid}", seen[1]] and seen[1].startswith(f"decision {coid} BuyOnce: BUY 0.01 {IID}")


async def test_a_decision_on_a_message_is_logged_once_its_order_is_on_its_way(tmp_path: Path) -> None:
    with _arrivals_and_decision_lines(tmp_path) as (node, seen):
        node.router(_trade(60_000.0, 1))
        _assert_arrived_then_logged(seen)
        # a decision taken outside a message (a timer, a venue's answer, here a direct call) is logged at once
        seen.clear()
        now = node.clock.now_ns()
        order = node.kernel.execution.submit(SubmitOrder("BuyOnce", IID, "", OrderSide.SELL, 0.01, now, now, OrderType.MARKET))
        assert len(seen) == 1 and seen[0].startswith(f"decision {order.client_order_id} BuyOnce: SELL")


async def test_a_decision_on_a_frames_message_is_logged_once_its_order_has_arrived(tmp_path: Path) -> None:
    # A feed routes every message inside a frame: the order's arrival fires when the frame ends, and the log
    # line (as costly as the rest of the decision) waits for it, as it does for a message outside a frame.
    with _arrivals_and_decision_lines(tmp_path) as (node, seen):
        received = time.time_ns()
        node.router.frame_started(received)
        node.router(_trade(60_000.0, 1, received))  # decides
        node.router(_trade(60_001.0, 2, received))
        assert seen == []  # neither arrived nor logged between the frame's messages
        node.router.frame_ended()
        _assert_arrived_then_logged(seen)


async def test_a_drawdown_breaker_trips_on_the_message_that_falls_without_waiting_for_the_next(tmp_path: Path) -> None:
    """The kernel defers mark breakers to the end of a message's time; live, each message ends its own."""
    node = PaperNode(
        _config(0, tmp_path, initial_cash=1_000.0, risk={"max_drawdown_pct": 10.0}), handle_signals=False
    )
    changes: list[TradingStateChanged] = []
    node.kernel.bus.subscribe(TradingStateChanged, changes.append)
    node.kernel.start()
    try:
        node.router(_trade(60_000.0, 1))  # buys 0.01 (600 of the 1,000)
        node.router(_trade(60_000.0, 2))  # fills it
        assert node.kernel.portfolio.position(IID) == 0.01 and changes == []
        node.router(_trade(50_000.0, 3))  # equity 900: 10 % below the peak
        assert [c.state for c in changes] == [TradingState.HALTED]
        assert changes[0].reason.startswith("max_drawdown: 10")
    finally:
        node.kernel.stop()
        node.journal.close()


class BuyWhenFlat(Strategy):
    """A market buy of 0.01 on a trade of its instrument while flat (and no order of its own is working)."""

    def on_trade(self, trade: Trade) -> None:
        if self.position(self.instrument_id) == 0.0 and not self.ctx.orders.open_orders(self.instrument_id):
            self.submit_market(self.instrument_id, OrderSide.BUY, 0.01)


def _two_instruments(tmp: Path) -> Any:
    """BTCUSDT (traded by :class:`BuyWhenFlat`) and ETHUSDT, a drawdown breaker of 5 %, 1,000 USDT."""
    spec = {"venue": "BINANCE", "quote": "USDT", "tick_size": 0.01, "lot_size": 1e-5}
    return parse_paper_config(
        {
            "instruments": [{**spec, "symbol": "BTCUSDT", "base": "BTC"}, {**spec, "symbol": "ETHUSDT", "base": "ETH"}],
            "strategy": {"name": f"{__name__}:BuyWhenFlat", "instruments": [IID]},
            "venue": {"fill_on": "trades"},
            "feeds": [{"venue": "binance", "market": "spot", "ws_url": "ws://127.0.0.1:9/",
                       "subscriptions": {IID: ["trade"], "ETHUSDT.BINANCE": ["trade"]}}],
            "journal": str(tmp / "journal.sqlite"),
            "initial_cash": 1_000.0,
            "risk": {"max_drawdown_pct": 5.0},
        },
        "<test>",
    )


async def test_a_restarted_daemon_measures_its_drawdown_at_market_prices_not_at_the_journals_fill_prices(
    tmp_path: Path,
) -> None:
    """A paper daemon buys 0.01 BTC at 60,000 and BTC runs to 70,000: equity 1,100, the drawdown's peak. It stops
    and restarts on its journal, which valued the 0.01 BTC at its fill price, 60,000: equity 1,000 (now at its last
    equity sample's, 70,000: 1,100). Before, the
    first message after the restart, an ETH trade, halted trading ('max_drawdown: 9.091% >= 5.0% below the peak
    1100.0 (equity 1000.0)'), BTC never having fallen below 70,000: a halt an operator had to re-arm by hand.
    Now the breakers wait for a BTC price: at 69,000 the equity is 1,090 (0.9 % below the peak), and a fall to
    64,000 (1,040, 5.45 %) halts, measured from the peak of the session before."""
    from tradebus.node.daemon import recover_journal

    config = _two_instruments(tmp_path)
    eth = Trade("ETHUSDT.BINANCE", time.time_ns(), time.time_ns(), 3_000.0, 0.5, 1, "e1")
    node = PaperNode(config, handle_signals=False)
    assert node.journal is not None
    recover_journal(node.kernel, node.venue, node.journal, node.clock.now_ns())  # as the daemon starts: stores the risk state
    node.kernel.start()
    try:
        node.router(_trade(60_000.0, 1))  # buys 0.01 (600 of the 1,000)
        node.router(_trade(60_000.0, 2))  # fills it
        node.router(eth)
        node.router(_trade(70_000.0, 3))  # equity 1,100: the peak
        assert node.kernel.portfolio.position(IID) == 0.01 and node.kernel.risk.state is TradingState.ACTIVE
    finally:
        node.kernel.stop()
        node.journal.close()
    again = PaperNode(config, handle_signals=False)
    assert again.journal is not None
    changes: list[TradingStateChanged] = []
    again.kernel.bus.subscribe(TradingStateChanged, changes.append)
    recover_journal(again.kernel, again.venue, again.journal, again.clock.now_ns())
    again.kernel.start()
    try:
        assert again.kernel.portfolio.equity() == 1_100.0  # the last equity sample's price (70,000), not the fill's
        again.router(Trade("ETHUSDT.BINANCE", time.time_ns(), time.time_ns(), 3_000.0, 0.5, 1, "e2"))
        assert changes == [] and again.kernel.risk.state is TradingState.ACTIVE
        again.router(_trade(69_000.0, 4))  # equity 1,090: 0.9 % below the peak
        assert changes == [] and again.kernel.portfolio.equity() == 1_090.0
        again.router(_trade(64_000.0, 5))  # equity 1,040: 5.45 % below the peak of 1,100
        assert [c.state for c in changes] == [TradingState.HALTED]
        assert changes[0].reason.startswith("max_drawdown: 5.455% >= 5.0% below the peak 1100.0 (equity 1040.0")
    finally:
        again.kernel.stop()
        again.journal.close()


def test_a_starting_balance_no_feed_prices_is_refused_rather_than_leaving_the_breakers_off(tmp_path: Path) -> None:
    """balances: {ETH: 1.0} valued by ETHUSDT, which no feed subscribes: ETH never gets a price. Before, the daemon
    started and its drawdown breaker waited for an ETHUSDT price for good (the restore at start waits for every
    holding's), so BTC could fall any distance unguarded. Now the config is refused, naming the balance."""
    import pytest

    from tradebus.errors import ConfigError

    data = _two_instruments(tmp_path).model_dump(mode="json")
    data.pop("initial_cash")
    data["balances"] = {"USDT": 1_000.0, "ETH": 1.0}
    data["feeds"][0]["subscriptions"] = {IID: ["trade"]}
    config = parse_paper_config(data, "<test>")
    with pytest.raises(ConfigError, match=r"balances\.ETH: ETH is valued by ETHUSDT\.BINANCE, which no feed subscribes"):
        PaperNode(config, handle_signals=False)
    data["feeds"][0]["subscriptions"] = {IID: ["trade"], "ETHUSDT.BINANCE": ["trade"]}
    PaperNode(parse_paper_config(data, "<test>"), handle_signals=False).journal.close()  # fed: accepted


async def test_an_alert_due_before_a_book_snapshot_was_received_fires_before_the_snapshot_is_loaded(tmp_path: Path) -> None:
    # A replay fires what is due before the recorded snapshot line, then loads it. The daemon's loop may
    # read the answer before it runs the alert's callback: the alert must still see the book unsynced.
    node = PaperNode(_config(0, tmp_path), handle_signals=False)
    client = BinanceClient(
        BinanceConfig(symbols=["BTCUSDT"], channels=["depth"], ws_url="ws://127.0.0.1:9/", rest_url="http://127.0.0.1:9"),
        node.router,
        ConnectionPolicy(backoff=Backoff(base=0.02, cap=0.05, min_delay=0.01, seed=7)),
    )
    client.frame_listener = node.router
    sync = client.feed.books["BTCUSDT"]
    seen: list[bool] = []
    node.kernel.start()
    try:
        received = time.time_ns()
        node.clock.set_alert("probe", received - 1_000_000, lambda _event: seen.append(sync.synced))
        snapshot = parse_depth_snapshot(SPOT_SNAPSHOT or "", received, IID)
        client.as_frame(lambda: sync.on_snapshot(snapshot), received)
        assert seen == [False]
        assert sync.synced
    finally:
        node.kernel.stop()
        node.journal.close()


async def test_a_decision_taken_before_a_strategy_failed_is_logged_before_the_failure(tmp_path: Path) -> None:
    # A frame's decisions are logged once it ends: one taken on its first trade, whose second trade's hook raised,
    # was logged after the daemon's "stopping: <the failure>" line, as if the order had been decided after it.
    node = PaperNode(_config(0, tmp_path, "BuyThenFail"), handle_signals=False)
    lines: list[str] = []
    sink = logger.add(
        lambda m: lines.append(m.record["message"]), level="INFO",
        filter=lambda r: "decision" in r["extra"] or r["message"].startswith("stopping: "),
    )
    node.kernel.start()
    try:
        received = time.time_ns()
        node.router.frame_started(received)
        node.router(_trade(60_000.0, 1, received))  # decides
        node.router(_trade(60_001.0, 2, received))  # raises: reported to the daemon, which stops
        node.router.frame_ended()
        assert node.router.failure is not None and len(lines) == 2, lines
        assert lines[0].startswith("decision ") and " BuyThenFail: BUY 0.01 " in lines[0]
        assert lines[1].startswith("stopping: strategy 'BuyThenFail' on_trade") and "the strategy's bug" in lines[1]
    finally:
        logger.remove(sink)
        node.kernel.stop()
        node.journal.close()


class BuyAndStart(Strategy):
    """A market buy on every trade, and at once a callback on the event loop that stands for its request's task
    (a live venue's ``create_task``: its first step runs when the loop next runs what is ready)."""

    seen: list[tuple[str, str]]

    def on_trade(self, trade: Trade) -> None:
        coid = self.submit_market(self.instrument_id, OrderSide.BUY, 0.01)
        asyncio.get_running_loop().call_soon(self.seen.append, ("started", coid))


async def test_deferred_decision_lines_wait_for_the_requests_of_their_own_frame_only(tmp_path: Path) -> None:
    """The live daemon's ``log_later`` (``loop.call_soon``), two frames routed in one step of the loop (a read that
    held both): each frame's decision is logged after its request started and before the next frame's request
    starts. Before, the first frame's deferred log wrote the second frame's decision too, ahead of its request."""
    node = PaperNode(_config(0, tmp_path, "BuyAndStart"), handle_signals=False)
    seen: list[tuple[str, str]] = []
    (strategy,) = node.kernel.strategies
    strategy.seen = seen  # type: ignore[attr-defined]
    node.router.log_later = asyncio.get_running_loop().call_soon
    handle = logger.add(lambda m: seen.append(("logged", m.record["extra"]["client_order_id"]))
                        if m.record["extra"].get("decision") else None, level="INFO")
    node.kernel.start()
    try:
        for n in (1, 2):
            received = time.time_ns()
            node.router.frame_started(received)
            node.router(_trade(60_000.0 + n, n, received))
            node.router.frame_ended()
        assert seen == []  # logged only once the loop has run the requests' first steps
        await until(lambda: len(seen) == 4)
        first, second = (coid for kind, coid in seen if kind == "started")
        assert seen == [("started", first), ("logged", first), ("started", second), ("logged", second)]
    finally:
        logger.remove(handle)
        node.kernel.stop()
        node.journal.close()
