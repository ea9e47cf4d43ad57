"""After a private user stream reconnects, the open orders are queried once the venue confirmed the subscription.

A fill the venue makes after the query's answer but before the new connection's
subscription is active reaches no connection: if the query went out before the
confirmation, that fill waits for the next reconciliation round. Each venue whose stream
confirms its subscription with an answer (Binance spot's WebSocket API, OKX and Bybit's
login then subscribe) is tried against its account emulator holding the new connection's
frames until the fill is made. (Binance USD-M's listen-key stream is subscribed by the
connection itself: nothing to wait for.) The live daemon whose first subscription is
confirmed only after ``live.request_timeout`` (it went on without it) queries them too.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from pydantic import SecretStr

from tests.live.live_harness import KEY, SECRET, until
from tests.live.venue_kits import PASSPHRASE
from tradebus.adapters.binance.private_emulator import BinancePrivateEmulator
from tradebus.adapters.bybit.private_emulator import BybitPrivateEmulator
from tradebus.adapters.common.account_emulator import AccountEmulator
from tradebus.adapters.okx.private_emulator import OkxPrivateEmulator
from tradebus.engine.clock import LiveClock
from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import OrderSide, OrderStatus, OrderType, SubmitOrder, Trade
from tradebus.execution.engine import OrderTimeouts
from tradebus.execution.live import LiveVenue
from tradebus.adapters.binance.emulator import BinanceProtocol
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.node.live import ApiKeys, LiveNode, LiveSettings, parse_live_config
from tests.live.node_testdata import BINANCE_INSTRUMENT, SPOT_FRAMES, SPOT_SNAPSHOT, binance_config

EMULATORS: dict[str, type[AccountEmulator]] = {
    "binance": BinancePrivateEmulator,
    "okx": OkxPrivateEmulator,
    "bybit": BybitPrivateEmulator,
}
SYMBOLS = {"binance": "BTCUSDT", "okx": "BTC-USDT", "bybit": "BTCUSDT"}
TIMEOUTS = OrderTimeouts(submit_ns=500_000_000, cancel_ns=500_000_000, retry_ns=200_000_000, check_ns=None, not_found_grace_ns=10**9)


@asynccontextmanager
async def _account(venue: str) -> AsyncIterator[tuple[AccountEmulator, Kernel, LiveVenue, Any]]:
    """The venue's emulator, live venue and user stream (registry factories); a reconnect queries every open order, as the daemon's."""
    inst = Instrument(venue.upper(), SYMBOLS[venue], base="BTC", quote="USDT", tick_size=0.01, lot_size=1e-6, margin=False)
    instruments = {inst.instrument_id: inst}
    emulator = EMULATORS[venue](KEY, SECRET, instruments, {"USDT": 100_000.0}, passphrase=PASSPHRASE)
    await emulator.start()
    account = LiveSettings(venue=venue).account()
    options = {"passphrase": SecretStr(PASSPHRASE), "environment": "testnet"}
    clock = LiveClock()
    venue_ = LiveVenue(account.trading(emulator.rest_url, SecretStr(KEY), SecretStr(SECRET), instruments, 1.0, **options), clock)
    kernel = Kernel([inst], clock=clock, venue=venue_, timeouts=TIMEOUTS, initial_cash=100_000.0)
    venue_.on_answer = kernel.execution.reconcile_order

    def on_reconnect() -> None:
        for order in kernel.orders.open_orders():
            kernel.execution.reconcile_order(order.client_order_id)

    stream = account.user_stream(
        emulator.ws_url, SecretStr(KEY), SecretStr(SECRET), instruments, venue_.order, venue_.emit,
        None, on_reconnect, rest_url=emulator.rest_url, **options,
    )
    task = asyncio.create_task(stream.run())
    try:
        await until(lambda: any(s.authed and s.topics for s in emulator.sessions))
        kernel.start()
        yield emulator, kernel, venue_, stream
    finally:
        stream.stop()
        await task
        await venue_.aclose()
        await emulator.stop()


@pytest.mark.parametrize("venue", list(EMULATORS))
async def test_a_fill_before_the_resubscription_is_confirmed_is_seen_at_once(venue: str) -> None:
    async with _account(venue) as (emulator, kernel, live, stream):
        iid = next(iter(kernel.instruments))
        t = emulator.clock.now_ns() or 1_723_161_255_000_000_000
        emulator.on_trade(Trade(iid, t, t, 60_000.0, 1.0, 1, "1"))
        order = kernel.execution.submit(SubmitOrder("s1", iid, "", OrderSide.BUY, 0.01, 0, 0, OrderType.LIMIT, 59_000.0))
        await until(lambda: order.status is OrderStatus.ACCEPTED)

        emulator.hold_frames = asyncio.Event()
        old = list(emulator.sessions)
        await emulator.drop_sessions()
        await until(lambda: emulator.held_frames >= 1 and not set(map(id, old)) & set(map(id, emulator.sessions)))
        await live.drain(2.0)  # a query sent on reconnecting, before the confirmation, is answered: the order is open
        assert emulator.orders[order.client_order_id].status is OrderStatus.ACCEPTED
        t += 10**9
        emulator.on_trade(Trade(iid, t, t, 58_900.0, 1.0, -1, "2"))  # fills it; no connection is subscribed yet
        assert emulator.orders[order.client_order_id].status is OrderStatus.FILLED
        emulator.hold_frames.set()  # the venue confirms the subscription now

        await until(lambda: order.status is OrderStatus.FILLED, timeout=3.0)
        assert [f.trade_id for f in kernel.result.fills] == [str(f.trade_id) for f in emulator.fills]
        assert stream.connections == 2


@pytest.mark.parametrize("venue", list(EMULATORS))
async def test_a_resubscription_the_venue_never_answers_is_recycled_and_made_again(venue: str) -> None:
    """The venue leaves the reconnected stream's login or subscription unanswered: the stream waited on that
    connection for good, saying nothing, without the account's events. It now recycles the connection once
    ``policy.confirm_timeout`` has passed (a WARNING names what was waited for) and subscribes on the next."""
    async with _account(venue) as (emulator, kernel, live, stream):
        stream.policy.confirm_timeout = 1.0
        hold = emulator.hold_frames = asyncio.Event()  # never answered: only the test releases it
        await emulator.drop_sessions()
        await until(lambda: emulator.held_frames >= 1)  # connection 2's first request, unanswered
        await until(lambda: stream.connections >= 3)
        emulator.hold_frames = None
        hold.set()
        await until(stream.subscribed.is_set)
        assert any(s.authed and s.topics for s in emulator.sessions)


async def test_a_binance_stream_the_venue_terminated_subscribes_again_and_books_later_fills() -> None:
    async with _account("binance") as (emulator, kernel, live, stream):
        assert isinstance(emulator, BinancePrivateEmulator)
        iid = next(iter(kernel.instruments))
        t = emulator.clock.now_ns() or 1_723_161_255_000_000_000
        emulator.on_trade(Trade(iid, t, t, 60_000.0, 1.0, 1, "1"))
        order = kernel.execution.submit(SubmitOrder("s1", iid, "", OrderSide.BUY, 0.01, 0, 0, OrderType.LIMIT, 59_000.0))
        await until(lambda: order.status is OrderStatus.ACCEPTED)

        emulator.terminate_streams()  # the connection stays open, its events stop
        await until(lambda: any("user" in s.topics for s in emulator.sessions))  # subscribed again
        t += 10**9
        emulator.on_trade(Trade(iid, t, t, 58_900.0, 1.0, -1, "2"))
        await until(lambda: order.status is OrderStatus.FILLED)
        assert [f.trade_id for f in kernel.result.fills] == [str(f.trade_id) for f in emulator.fills]


async def test_a_fill_before_a_late_first_confirmation_is_seen_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The venue confirms the live daemon's first subscription only after ``live.request_timeout``: the
    daemon goes on, and an order fills before the confirmation. That late confirmation was connection
    1's, so no open-order query followed it: the fill waited for the next reconciliation round."""
    monkeypatch.setenv("TRADEBUS_BINANCE_API_KEY", KEY)
    monkeypatch.setenv("TRADEBUS_BINANCE_API_SECRET", SECRET)
    spot = {**BINANCE_INSTRUMENT, "margin": False}
    iid = f"{spot['symbol']}.{spot['venue']}"
    emulator = BinancePrivateEmulator(KEY, SECRET, {iid: Instrument(**spot)}, {"USDT": 100_000.0})
    emulator.hold_frames = asyncio.Event()  # the logon and the subscription wait, unanswered
    trades = [f for f in SPOT_FRAMES if '@trade"' in f[1]][:5]
    async with emulator, LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), trades, lifetime=60.0) as srv:
        data = binance_config(srv.ws_url, srv.http_url, ["trade"], strategy={
            "name": "tradebus.strategies.tick_ema:TickEmaCross", "instruments": [iid],
            "params": {"fast": 2, "slow": 1000, "quantity": 0.01, "mode": "long_only"},  # never ready: no order
        })  # fmt: skip
        data.update(instruments=[spot], warm_up=False, balances={"USDT": 100_000.0})
        data["live"] = {
            "rest_url": emulator.rest_url,
            "ws_api_url": emulator.ws_api_url,
            "request_timeout": 0.5,
            "reconcile_interval": 3600.0,  # no round during the test: only a query can bring the fill
        }
        config = parse_live_config(data, "<test>")
        node = LiveNode(config, ApiKeys.from_env(config.live), handle_signals=False)
        kernel = node.kernel
        task = asyncio.create_task(node.run())
        try:
            await until(lambda: task.done() or node.running.is_set(), timeout=20)
            await until(lambda: kernel.result.trades == len(trades) and node.guard.holds == {}, timeout=10)
            assert not node.stream.subscribed.is_set() and emulator.held_frames >= 1
            t = 1_723_161_255_000_000_000
            emulator.on_trade(Trade(iid, t, t, 60_000.0, 1.0, 1, "1"))
            now = node.clock.now_ns()
            kernel.submit(SubmitOrder("s", iid, "buy-1", OrderSide.BUY, 0.01, now, now, OrderType.LIMIT, 59_000.0))
            order = kernel.orders.get("buy-1")
            await until(lambda: order.status is OrderStatus.ACCEPTED, timeout=5)
            emulator.on_trade(Trade(iid, t + 10**9, t + 10**9, 58_900.0, 1.0, -1, "2"))  # fills it: no stream is live
            assert emulator.orders["buy-1"].status is OrderStatus.FILLED
            emulator.hold_frames.set()  # the venue confirms the subscription now
            await until(node.stream.subscribed.is_set, timeout=5)
            await until(lambda: order.status is OrderStatus.FILLED, timeout=3.0)
        finally:
            node.stop("test done")
            await asyncio.wait_for(task, 20)
    assert node.stream.connections == 1
    assert [f.trade_id for f in kernel.result.fills] == [str(f.trade_id) for f in emulator.fills]
