"""The market guard in front of the risk gate, and the simulated venue's arrival alerts on a wall clock."""

from __future__ import annotations

import asyncio
import json
import math

from tradebus.engine.bus import MessageBus
from tradebus.engine.clock import LiveClock, SimulatedClock
from tradebus.engine.instrument import Instrument
from tradebus.adapters.binance.emulator import BinanceProtocol, split_capture
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.adapters.common.recorder import iter_hftbacktest
from tradebus.engine.messages import (
    BookResynced,
    FeedStale,
    MarkPrice,
    OrderAccepted,
    OrderSide,
    OrderType,
    SubmitOrder,
    Trade,
)
from tradebus.node.daemon import PaperNode
from tradebus.node.playback import Playback
from tradebus.risk.guard import GuardedRiskGate, MarketGuard
from tradebus.engine.portfolio import Portfolio
from tradebus.execution.config import VenueConfig
from tradebus.execution.orders import Order
from tradebus.execution.simulated import SimulatedVenue
from tradebus.risk.config import RiskConfig

from .node_testdata import (
    OKX_IID,
    OKX_INSTRUMENT,
    USDM_CAPTURE,
    USDM_IID,
    config_of,
    run_node,
    stream_config,
    usdm_config,
)

IID = "BTCUSDT.BINANCE"
INSTRUMENT = Instrument(venue="BINANCE", symbol="BTCUSDT", tick_size=0.01, lot_size=1e-5)
T0 = 1_723_161_253_000_000_000


def submit(qty: float = 0.01) -> SubmitOrder:
    return SubmitOrder("s", IID, "s-1", OrderSide.BUY, qty, T0, T0)


def gate(guard: MarketGuard, **limits: float) -> GuardedRiskGate:
    portfolio = Portfolio({IID: INSTRUMENT}, 1000.0)
    return GuardedRiskGate(RiskConfig(**limits), portfolio, SimulatedClock(T0), MessageBus(), guard)


def test_stale_feed_denies_orders_on_its_instruments_until_data_arrives() -> None:
    guard = MarketGuard()
    guard.register_feed("binance-spot", [IID], {})
    risk = gate(guard)
    assert risk.check(submit()) is None
    guard.on_stale(FeedStale("binance-spot", T0 - 3_000_000_000, T0, T0))
    assert risk.check(submit()) == "feed stale: binance-spot delivered nothing for 3.0 s"
    guard.on_stale(FeedStale("okx-public", T0, T0, T0))  # another feed's silence changes nothing here
    guard.on_data(IID)
    assert risk.check(submit()) is None


def test_a_stale_trades_only_feed_is_live_again_once_its_connection_answers_a_book_feed_only_with_data() -> None:
    """A trades-only feed stale over a dead connection stayed blocked on a quiet market after a healthy
    reconnect, until its next trade; its connection's proof of life (received after the FeedStale) now ends
    the episode. A feed without that proof (a book feed) still waits for its data."""
    other = "ETHUSDT.BINANCE"
    live_ns = [T0 - 3_000_000_000]  # the dead connection's last frame
    guard = MarketGuard()
    guard.register_feed("binance-trades", [IID], {}, connection_live_ns=lambda: live_ns[0])
    guard.register_feed("binance-book", [other], {})
    guard.on_stale(FeedStale("binance-trades", T0 - 3_000_000_000, T0, T0))
    guard.on_stale(FeedStale("binance-book", T0 - 3_000_000_000, T0, T0))
    assert guard.block_reason(IID) == "feed stale: binance-trades delivered nothing for 3.0 s"
    live_ns[0] = T0  # nothing received after the FeedStale yet
    assert guard.stale(IID)
    live_ns[0] = T0 + 1  # the new connection answered
    assert guard.block_reason(IID) is None and not guard.stale(IID)
    assert guard.stale_reason(other) == "feed stale: binance-book delivered nothing for 3.0 s"
    guard.on_data(other)
    assert guard.block_reason(other) is None


def test_an_instrument_on_two_stale_feeds_stays_blocked_until_each_is_live_again_by_its_own_rule() -> None:
    """A trades feed and a book feed of one instrument both stale: the guard kept only the latest FeedStale,
    so the trades feed's connection proof alone lifted the block while the book feed was still silent."""
    live_ns = [T0 - 3_000_000_000]
    guard = MarketGuard()
    guard.register_feed("binance-book", [IID], {})
    guard.register_feed("binance-trades", [IID], {}, connection_live_ns=lambda: live_ns[0])
    guard.on_stale(FeedStale("binance-book", T0 - 5_000_000_000, T0, T0))
    guard.on_stale(FeedStale("binance-trades", T0 - 3_000_000_000, T0 + 1, T0 + 1))
    assert guard.block_reason(IID) == (
        "feed stale: binance-book delivered nothing for 5.0 s; feed stale: binance-trades delivered nothing for 3.0 s"
    )
    live_ns[0] = T0 + 2  # the trades feed's new connection answered
    assert guard.block_reason(IID) == "feed stale: binance-book delivered nothing for 5.0 s"
    assert guard.stale(IID)
    guard.on_stale(FeedStale("binance-trades", T0 - 1_000_000_000, T0 + 3, T0 + 3))  # silent again
    guard.on_data(IID)  # the instrument's market data flows
    assert guard.block_reason(IID) is None and not guard.stale(IID)


def _okx_books5(i: int, ts_ms: int) -> str:
    """An OKX ``books5`` push: a whole 5-level book, with no ``action`` (every push is a snapshot)."""
    px = 30_000 + i
    return json.dumps(
        {
            "arg": {"channel": "books5", "instId": "BTC-USDT"},
            "data": [{"asks": [[str(px + 1), "1", "0", "1"]], "bids": [[str(px), "1", "0", "1"]], "ts": str(ts_ms)}],
        }
    )


def test_a_stale_feed_whose_stream_pushes_book_snapshots_is_live_again_at_the_next_one() -> None:
    """An OKX feed of trades and books5 went stale; its new connection's books5 pushes (all snapshots) kept
    orders denied until the next trade, however long the market stayed quiet (every snapshot was taken for a
    REST resync's). A snapshot a Binance feed fetches over REST still proves nothing (the daemon test below)."""
    playback = Playback(config_of(stream_config(OKX_INSTRUMENT, OKX_IID, "okx", "spot", ["trades", "books5"])))
    start = 1_652_459_225_000_000_000
    playback.clock.set_time(start)
    playback.kernel.start()
    playback.feed_frame(start, "okx-public:1", _okx_books5(0, start // 1_000_000))
    assert playback.guard.block_reason(OKX_IID) is None
    stale_at = start + 40_000_000_000
    playback.router(FeedStale("okx-public", start, stale_at, stale_at))
    assert playback.guard.block_reason(OKX_IID) == "feed stale: okx-public delivered nothing for 40.0 s"
    recv = stale_at + 100_000_000
    playback.feed_frame(recv, "okx-public:2", _okx_books5(1, recv // 1_000_000))  # the resubscription's snapshot
    assert playback.guard.block_reason(OKX_IID) is None
    assert playback.router.counts["BookSnapshot"] == 2


def test_a_book_snapshot_lifts_no_stale_block_of_a_feed_whose_snapshots_come_over_rest() -> None:
    guard = MarketGuard()
    guard.register_feed("binance-spot", [IID], {})
    guard.register_feed("okx-public", ["BTC-USDT.OKX"], {}, snapshots_on_stream=True)
    guard.on_stale(FeedStale("binance-spot", T0 - 3_000_000_000, T0, T0))
    guard.on_stale(FeedStale("okx-public", T0 - 3_000_000_000, T0, T0))
    guard.on_snapshot(IID)
    guard.on_snapshot("BTC-USDT.OKX")
    assert guard.stale(IID) and not guard.stale("BTC-USDT.OKX")


def test_unsynced_book_denies_orders_and_the_risk_limits_still_apply_once_synced() -> None:
    synced = [False]
    guard = MarketGuard()
    guard.register_feed("binance-spot", [IID], {IID: lambda: synced[0]})
    risk = gate(guard, max_order_quantity=0.05)
    assert risk.check(submit()) == "book unsynced: the BTCUSDT.BINANCE order book is not in sync with the venue"
    synced[0] = True
    assert risk.check(submit()) is None
    assert risk.check(submit(0.1)) == "max_order_quantity: 0.1 > 0.05"


def order(coid: str = "s-1") -> Order:
    return Order(coid, "s", IID, OrderSide.BUY, OrderType.MARKET, 0.01, math.nan, math.nan, ts_created=T0)


async def test_with_a_live_clock_an_order_is_accepted_when_due_without_waiting_for_market_data() -> None:
    events: list = []
    venue = SimulatedVenue(LiveClock(), {IID: INSTRUMENT}, VenueConfig(fill_on="trades", latency_ns=1_000_000), events.append)
    venue.submit(order())
    assert events == []  # not before its arrival
    for _ in range(200):
        if events:
            break
        await asyncio.sleep(0.01)
    assert [type(e) for e in events] == [OrderAccepted]
    now = venue.clock.now_ns()
    venue.on_trade(Trade(IID, now, now + 1, 61830.0, 0.5, 1, "t1"))
    assert type(events[-1]).__name__ == "OrderFilled" and events[-1].last_px == 61830.0


async def test_closing_the_venue_cancels_its_pending_arrival_alerts() -> None:
    events: list = []
    venue = SimulatedVenue(LiveClock(), {IID: INSTRUMENT}, VenueConfig(fill_on="trades", latency_ns=20_000_000), events.append)
    venue.submit(order())
    venue.close()
    later = asyncio.Event()  # due after the order's arrival (20 ms): its alert would have fired before this one
    venue.clock.set_alert("later", venue.clock.now_ns() + 40_000_000, lambda _event: later.set())
    await asyncio.wait_for(later.wait(), timeout=5)
    assert events == []


def test_with_a_simulated_clock_arrival_waits_for_the_next_market_event_as_before() -> None:
    clock = SimulatedClock(T0)
    events: list = []
    venue = SimulatedVenue(clock, {IID: INSTRUMENT}, VenueConfig(fill_on="trades"), events.append)
    venue.submit(order())
    assert clock.next_due == 2**63 - 1  # no alert was set
    clock.advance_to(T0 + 10)
    assert events == []
    venue.on_trade(Trade(IID, T0 + 10, T0 + 10, 61830.0, 0.5, 1, "t1"))
    assert [type(e).__name__ for e in events] == ["OrderAccepted", "OrderFilled"]


async def test_a_stale_feed_stays_stale_after_the_rest_snapshot_of_its_reconnection() -> None:
    """The served USD-M capture ends and the server stays silent: the feed goes stale, the daemon
    recycles the connection and resyncs the book from a REST snapshot. That snapshot is not the
    stream delivering data: orders on the instrument stay denied (they were allowed again)."""
    frames, snapshot = split_capture(list(iter_hftbacktest(USDM_CAPTURE)))
    async with LocalVenueServer(BinanceProtocol(snapshot, futures=True), frames, lifetime=60.0) as srv:
        data = usdm_config(srv.ws_url, srv.http_url, depth_speed="0ms")
        data["feeds"][0]["stale_after"] = 1.0
        node = PaperNode(config_of(data), handle_signals=False)
        kernel = node.kernel
        stale: list[FeedStale] = []
        after_resync: list[tuple[bool, str | None]] = []
        kernel.bus.subscribe(FeedStale, stale.append)

        def resynced(msg: BookResynced) -> None:
            if stale:  # the book of the reconnection after the feed went stale
                now = kernel.clock.now_ns()
                coid = f"probe-{len(after_resync) + 1}"
                kernel.submit(SubmitOrder("probe", USDM_IID, coid, OrderSide.BUY, 0.01, now, now, reason="probe"))
                order = kernel.orders.get(coid)
                after_resync.append((node.guard.stale(USDM_IID), None if order is None else order.reason))

        kernel.bus.subscribe(BookResynced, resynced)
        await run_node(node, lambda: bool(after_resync), timeout=40.0)
    assert stale and after_resync, "the feed must go stale and its book be resynced"
    assert srv.cursor == len(frames) and srv.http_requests, "the capture was sent whole, the resync used REST"
    still_stale, reason = after_resync[0]
    assert still_stale
    assert reason is not None and reason.startswith("feed stale: binance-usdm delivered nothing for")


def test_a_stale_feed_is_live_again_at_the_next_mark_price_its_stream_pushes() -> None:
    """A USD-M feed of trades and mark prices went stale; its new connection pushed mark prices every second, which
    the watchdog counts as data (the feed never went stale again), but the guard kept orders denied until the next
    trade, however long the market stayed quiet. A mark price on the stream now lifts the block, as any pushed
    market data of the instrument does; the daemon and its replay share the router that decides it."""
    frames, _ = split_capture(list(iter_hftbacktest(USDM_CAPTURE)))
    data = usdm_config(None, None)
    data["feeds"][0]["subscriptions"] = {USDM_IID: ["trade", "markPrice"]}
    playback = Playback(config_of(data))
    published: list[MarkPrice] = []
    playback.kernel.bus.subscribe(MarkPrice, published.append)
    marks = [i for i, (_, raw) in enumerate(frames) if "@markPrice" in raw]
    start = frames[0][0]
    playback.clock.set_time(start)
    playback.kernel.start()
    for recv_ns, raw in frames[: marks[1]]:
        playback.feed_frame(recv_ns, "binance-usdm:1", raw)
    recv_ns, raw = frames[marks[1]]
    playback.feed_stale(recv_ns - 1, "binance-usdm", frames[marks[1] - 1][0])
    assert (playback.guard.block_reason(USDM_IID) or "").startswith("feed stale: binance-usdm delivered nothing")
    playback.feed_frame(recv_ns, "binance-usdm:2", raw)  # the new connection's first push: a mark price
    assert len(published) == 2
    assert playback.guard.block_reason(USDM_IID) is None
