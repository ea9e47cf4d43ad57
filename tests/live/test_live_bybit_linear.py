"""Live trading of Bybit v5 linear perpetuals (USDT, ``category=linear``) against the local account emulator.

The order mapping and the position parsers are checked against Bybit's documentation
examples; the account's position, entry price and USDT wallet against numbers worked out
by hand; a whole daemon session against the emulator's own account (its fill list and the
matching venue's position), never against the daemon's view of itself.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from loguru import logger
from pydantic import SecretStr

from tests.live.live_harness import (
    KEY, SECRET, answered, open_long, reconciled, second_funding_refused, session_trades, trade_after_market_orders, until,
)
from tests.live.node_testdata import BYBIT_IID, BYBIT_INSTRUMENT, bybit_linear_frames
from tradebus.account import MarginAccount
from tradebus.adapters.bybit.parse import BybitParser
from tradebus.adapters.bybit.private_emulator import BybitLinearEmulator, MatchingProtocol
from tradebus.adapters.bybit.trading import BybitLinearTrading, linear_order_params
from tradebus.adapters.bybit.user_stream import UserStreamParser, position_from_row
from tradebus.adapters.common.account_emulator import RestFault, StreamFault
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.engine.bus import MessageBus
from tradebus.engine.clock import LiveClock
from tradebus.engine.instrument import Instrument, InstrumentKind
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import FundingPaid, FundingRate, ModifyOrder, OrderSide, OrderStatus, OrderType, SubmitOrder, TimeInForce, Trade, TradingState
from tradebus.engine.portfolio import Portfolio
from tradebus.errors import ConfigError
from tradebus.execution.engine import OrderTimeouts
from tradebus.execution.journal import Journal
from tradebus.execution.live import AccountBalance, AccountMargin, AccountPosition, LiveVenue, VenueRejected
from tradebus.execution.orders import Order, OrderManager
from tradebus.node.flatten import KILL_STRATEGY
from tradebus.node.live import ApiKeys, LiveNode, LiveSettings, kill_switch, load_live_config, parse_live_config
from tradebus.node.reconcile import InstrumentHeld, Reconciler

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "bybit" / "user_data"
CONFIG = Path(__file__).resolve().parents[2] / "configs" / "live_bybit_linear_testnet.yaml"
INST = Instrument(**{**BYBIT_INSTRUMENT, "kind": InstrumentKind.PERPETUAL})
SYMBOL = "BTCUSDT"
T0 = 1_786_310_819_680_000_000
#: The recorded linear stream's BTCUSDT trade frames (the stream also carries other symbols).
TRADE_FRAMES = [(t, raw) for t, raw in bybit_linear_frames() if '"topic":"publicTrade.BTCUSDT"' in raw]


def _emulator() -> BybitLinearEmulator:
    return BybitLinearEmulator(KEY, SECRET, {BYBIT_IID: INST}, {"USDT": 10_000.0})


# ---------------------------------------------------------------------- mapping and parsing


def test_linear_order_params_one_way_reduce_only_post_only_and_lot_rounding() -> None:
    order = Order("c1", "s", BYBIT_IID, OrderSide.SELL, OrderType.LIMIT, 0.0123, 65_000.04, post_only=True, reduce_only=True)
    assert linear_order_params(order, INST) == {
        "category": "linear", "symbol": "BTCUSDT", "side": "Sell", "orderType": "Limit", "qty": "0.012",
        "orderLinkId": "c1", "positionIdx": 0, "reduceOnly": True, "price": "65000.0", "timeInForce": "PostOnly",
    }
    for tif, wire in ((TimeInForce.GTC, "GTC"), (TimeInForce.IOC, "IOC"), (TimeInForce.FOK, "FOK")):
        limit = Order("c2", "s", BYBIT_IID, OrderSide.BUY, OrderType.LIMIT, 0.002, 65_000.0, tif=tif)
        assert linear_order_params(limit, INST)["timeInForce"] == wire
    market = linear_order_params(Order("c3", "s", BYBIT_IID, OrderSide.BUY, OrderType.MARKET, 0.0019), INST)
    assert market == {"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Market", "qty": "0.001", "orderLinkId": "c3", "positionIdx": 0}
    with pytest.raises(VenueRejected, match="post_only"):
        linear_order_params(Order("c4", "s", BYBIT_IID, OrderSide.BUY, OrderType.MARKET, 0.001, post_only=True), INST)
    with pytest.raises(VenueRejected, match="rounds to 0"):
        linear_order_params(Order("c5", "s", BYBIT_IID, OrderSide.BUY, OrderType.MARKET, 0.0009), INST)


def test_the_documented_position_rows_parse_signed_with_their_entry_price() -> None:
    eth = Instrument("BYBIT", "ETHUSDT-LINEAR", kind=InstrumentKind.PERPETUAL, base="ETH", quote="USDT", tick_size=0.01, lot_size=0.01)
    parser = UserStreamParser({eth.instrument_id: eth, BYBIT_IID: INST}, lambda c: None)
    # Bybit's position push example: a one-way ETHUSDT short of 0.01 entered at 3641.075
    assert parser.parse((FIX / "ws_account_position.json").read_text()) == [
        AccountPosition("ETHUSDT-LINEAR.BYBIT", -0.01, 3641.075, 1762199125472 * 1_000_000)
    ]
    # a hedge-mode side is a position the one-way orders here cannot trade: not one_way
    frame = json.loads((FIX / "ws_account_position.json").read_text())
    frame["data"][0]["positionIdx"] = 2
    assert parser.parse(json.dumps(frame)) == [
        AccountPosition("ETHUSDT-LINEAR.BYBIT", -0.01, 3641.075, 1762199125472 * 1_000_000, one_way=False)
    ]
    frame["data"][0]["symbol"] = "SOLUSDT"  # another symbol: not this account's
    assert parser.parse(json.dumps(frame)) == []
    # GET /v5/position/list example: a long, a short (not traded here) and a flat row
    rows = json.loads((FIX / "http_get_positions.json").read_text())["result"]["list"]
    assert position_from_row(rows[0], INST) == AccountPosition(BYBIT_IID, 0.5, 50_000.0, 1697673600012 * 1_000_000)
    assert position_from_row(rows[1], INST).quantity == -5.0
    assert position_from_row(rows[2], INST).quantity == 0.0


# ---------------------------------------------------------------------- a kernel on the registry's pieces


@dataclass
class Linear:
    emulator: BybitLinearEmulator
    kernel: Kernel
    venue: LiveVenue
    pushed: list[Any]
    stream: Any
    n: int = 0

    def trade(self, price: float, size: float = 1.0, aggressor: int = 1) -> None:
        """One public trade, seen by the account emulator (matching) and the kernel (marks)."""
        self.n += 1
        ts = T0 + self.n * 1_000_000
        tr = Trade(BYBIT_IID, ts, ts, price, size, aggressor, f"t{self.n}")
        self.emulator.on_trade(tr)
        self.kernel.process(tr)

    def submit(self, side: OrderSide, qty: float, price: float = math.nan, **kw: Any) -> Order:
        typ = OrderType.MARKET if math.isnan(price) else OrderType.LIMIT
        return self.kernel.execution.submit(SubmitOrder("s1", BYBIT_IID, "", side, qty, 0, 0, typ, price, **kw))

    async def fill_market(self, side: OrderSide, qty: float, price: float) -> Order:
        """A market order, acknowledged, then filled by a public trade at ``price``."""
        order = self.submit(side, qty)
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        self.trade(price, aggressor=1 if side is OrderSide.BUY else -1)
        await until(lambda: order.status is OrderStatus.FILLED)
        return order

    def last(self, kind: type) -> Any:
        return [e for e in self.pushed if isinstance(e, kind)][-1]


@asynccontextmanager
async def linear_account(
    rest_faults: list[RestFault] | None = None, stream_faults: list[StreamFault] | None = None, journal: Path | None = None
) -> AsyncIterator[Linear]:
    """A kernel trading through the registry's Bybit linear account (REST and user stream) against the emulator (journaled to ``journal``)."""
    emulator = BybitLinearEmulator(KEY, SECRET, {BYBIT_IID: INST}, {"USDT": 10_000.0}, rest_faults, stream_faults)
    await emulator.start()
    account = LiveSettings(venue="bybit", market="perpetual").account()
    clock = LiveClock()
    instruments = {BYBIT_IID: INST}
    api = account.trading(emulator.rest_url, SecretStr(KEY), SecretStr(SECRET), instruments, 1.0, passphrase=None, environment="testnet")
    assert isinstance(api, BybitLinearTrading)
    venue = LiveVenue(api, clock)
    timeouts = OrderTimeouts(submit_ns=500_000_000, cancel_ns=500_000_000, retry_ns=200_000_000, check_ns=None, not_found_grace_ns=1_000_000_000)
    store = Journal(journal) if journal is not None else None
    kernel = Kernel([INST], clock=clock, venue=venue, timeouts=timeouts, initial_cash=10_000.0, journal=store)
    venue.on_answer = kernel.execution.reconcile_order
    pushed: list[Any] = []
    stream = account.user_stream(
        emulator.ws_url, SecretStr(KEY), SecretStr(SECRET), instruments, venue.order, venue.emit, pushed.append,
        passphrase=None, environment="testnet", rest_url=emulator.rest_url,
    )
    task = asyncio.create_task(stream.run())
    try:
        await until(lambda: any(s.authed and "position" in s.topics for s in emulator.sessions), timeout=5.0)
        kernel.start()
        yield Linear(emulator, kernel, venue, pushed, stream)
    finally:
        stream.stop()
        await task
        await venue.aclose()
        await emulator.stop()
        if store is not None:
            store.close()


async def test_position_entry_and_usdt_wallet_equal_the_emulator_and_the_hand_computed_numbers() -> None:
    async with linear_account() as h:
        kernel, emulator = h.kernel, h.emulator
        assert isinstance(kernel.portfolio.account, MarginAccount)
        h.trade(65_000.0)
        buy = await h.fill_market(OrderSide.BUY, 0.010, 65_000.0)
        # opening buy: 0.010 @ 65000, taker fee 0.010 * 65000 * 0.00055 = 0.3575
        h.trade(65_100.0)
        part = await h.fill_market(OrderSide.SELL, 0.004, 65_100.0)
        # partial close: 0.004 @ 65100, realized 0.004 * 100 = 0.4, fee 0.004 * 65100 * 0.00055 = 0.14322
        flip = await h.fill_market(OrderSide.SELL, 0.010, 64_900.0)
        # flip to short: closes 0.006 @ 64900, realized 0.006 * -100 = -0.6, fee 0.010 * 64900 * 0.00055 = 0.35695;
        # the short's 0.004 is entered at 64900
        wallet = 10_000.0 - 0.3575 + 0.4 - 0.14322 - 0.6 - 0.35695
        assert wallet == pytest.approx(9_998.94233, abs=1e-9)
        assert emulator.position(SYMBOL) == pytest.approx(-0.004, abs=1e-12)
        assert emulator.entry[SYMBOL] == pytest.approx(64_900.0)
        assert emulator.balances["USDT"] == pytest.approx(wallet, abs=1e-9)
        # the account as the daemon reads it: REST ...
        (pos,) = await h.venue.api.positions()
        assert (pos.instrument_id, pos.quantity, pos.entry_price) == (BYBIT_IID, pytest.approx(-0.004, abs=1e-12), pytest.approx(64_900.0))
        (usdt,) = await h.venue.api.balances()
        assert (usdt.asset, usdt.free + usdt.locked) == ("USDT", pytest.approx(wallet, abs=1e-9))
        # ... and the user stream's last position and wallet pushes
        await until(lambda: len([e for e in h.pushed if isinstance(e, AccountPosition)]) == 3)
        assert h.last(AccountPosition).quantity == pytest.approx(-0.004, abs=1e-12)
        assert h.last(AccountPosition).entry_price == pytest.approx(64_900.0)
        assert h.last(AccountBalance).free == pytest.approx(wallet, abs=1e-9)
        # the kernel's own margin account books the same fills to the same wallet and position
        assert kernel.portfolio.position(BYBIT_IID) == pytest.approx(-0.004, abs=1e-12)
        assert kernel.portfolio.account.balance("USDT") == pytest.approx(wallet, abs=1e-9)
        assert sorted(f.trade_id for f in kernel.result.fills) == sorted(str(f.trade_id) for f in emulator.fills)
        posts = [body for m, p, body in emulator.requests if m == "POST" and p == "/v5/order/create"]
        assert posts == [buy.client_order_id, part.client_order_id, flip.client_order_id]


async def test_a_reduce_only_order_that_would_increase_the_position_is_refused_with_110017() -> None:
    async with linear_account() as h:
        h.trade(65_000.0)
        await h.fill_market(OrderSide.SELL, 0.003, 65_000.0)
        grow = h.submit(OrderSide.SELL, 0.001, 70_000.0, reduce_only=True)  # would add to the short
        shrink = h.submit(OrderSide.BUY, 0.001, 60_000.0, reduce_only=True)  # rests below the market
        await until(lambda: grow.status is OrderStatus.REJECTED and shrink.status is OrderStatus.ACCEPTED)
        assert "110017" in grow.reason
        assert grow.client_order_id not in h.emulator.open_orders() and h.emulator.orders[grow.client_order_id].status is OrderStatus.REJECTED
        assert h.emulator.orders[shrink.client_order_id].order.reduce_only
        assert h.emulator.position(SYMBOL) == pytest.approx(-0.003, abs=1e-12)
        # the refusal is final: never re-sent
        posts = [c for m, p, c in h.emulator.requests if m == "POST" and p == "/v5/order/create"]
        assert posts.count(grow.client_order_id) == 1


async def test_a_post_only_order_that_would_take_is_acknowledged_then_canceled_and_one_that_rests_fills_as_maker() -> None:
    async with linear_account() as h:
        h.trade(65_000.0)
        taking = h.submit(OrderSide.BUY, 0.002, 65_010.0, post_only=True)  # above the last trade: would take
        resting = h.submit(OrderSide.BUY, 0.002, 64_990.0, post_only=True)
        await until(lambda: taking.status is OrderStatus.CANCELED and resting.status is OrderStatus.ACCEPTED)
        assert taking.reason == "EC_PostOnlyWillTakeLiquidity" and taking.filled_qty == 0.0
        h.trade(64_980.0, aggressor=-1)
        await until(lambda: resting.status is OrderStatus.FILLED)
        (fill,) = h.kernel.result.fills
        assert (fill.price, fill.liquidity, fill.fee) == (64_990.0, "MAKER", pytest.approx(0.002 * 64_990.0 * 0.0002))
        assert h.emulator.position(SYMBOL) == pytest.approx(0.002, abs=1e-12)


async def test_a_lost_acknowledgement_and_a_dropped_fill_push_are_settled_by_linear_queries_booked_once() -> None:
    lost = RestFault("lose", "POST", "/v5/order/create")
    silent = [StreamFault("drop", '"New"'), StreamFault("drop", '"topic": "execution"')]
    async with linear_account([lost], silent) as h:
        h.trade(65_000.0)
        order = h.submit(OrderSide.BUY, 0.003)
        await until(lambda: lost.fired and order.client_order_id in h.emulator.orders)
        h.trade(65_050.0, aggressor=-1)
        await until(lambda: order.status is OrderStatus.FILLED, timeout=5.0)
        assert all(f.fired for f in silent)
        (fill,) = h.kernel.result.fills
        (booked,) = h.emulator.fills
        assert (fill.trade_id, fill.price, fill.quantity) == (str(booked.trade_id), 65_050.0, 0.003)
        assert h.kernel.portfolio.position(BYBIT_IID) == pytest.approx(h.emulator.position(SYMBOL), abs=1e-12)
        queried = [q for m, path, q in h.emulator.requests if m == "GET" and path in ("/v5/order/realtime", "/v5/order/history")]
        assert order.client_order_id in queried
        assert [c for m, path, c in h.emulator.requests if m == "POST" and path == "/v5/order/create"] == [order.client_order_id]


async def test_a_linear_order_is_amended_in_place_and_only_the_amended_price_fills() -> None:
    async with linear_account() as h:
        h.trade(65_000.0)
        order = h.submit(OrderSide.BUY, 0.002, 64_000.0)
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        coid = order.client_order_id
        h.kernel.execution.modify(ModifyOrder("s1", BYBIT_IID, coid, 0, 0, quantity=0.003, price=64_500.0))
        await until(lambda: order.price == 64_500.0 and order.quantity == 0.003)
        h.trade(64_400.0, aggressor=-1)  # below the amended price, above the original 64,000
        await until(lambda: order.status is OrderStatus.FILLED)
        assert h.emulator.position(SYMBOL) == pytest.approx(0.003, abs=1e-12) and h.venue.requests["amend"] == 1
        assert [c for m, p, c in h.emulator.requests if m == "POST" and p == "/v5/order/create"] == [coid]


async def test_duplicated_and_reordered_pushes_book_each_fill_once_and_leave_the_last_position() -> None:
    faults = [StreamFault("duplicate", '"topic": "execution"'), StreamFault("reorder", '"topic": "position"'), StreamFault("duplicate", '"topic": "position"', at=1)]
    async with linear_account(stream_faults=faults) as h:
        h.trade(65_000.0)
        await h.fill_market(OrderSide.SELL, 0.002, 65_000.0)
        second = h.submit(OrderSide.SELL, 0.001)
        await until(lambda: second.status is OrderStatus.ACCEPTED)
        h.trade(64_900.0, aggressor=-1)
        await until(lambda: second.status is OrderStatus.FILLED and all(f.fired for f in faults))
        await until(lambda: h.last(AccountPosition).quantity == pytest.approx(-0.003, abs=1e-12))
        assert len(h.kernel.result.fills) == len(h.emulator.fills) == 2
        assert h.kernel.portfolio.position(BYBIT_IID) == pytest.approx(h.emulator.position(SYMBOL), abs=1e-12)


async def test_the_emulator_verifies_signatures_and_refuses_hedge_mode_orders() -> None:
    async with _emulator() as emulator:
        bad = BybitLinearTrading(emulator.rest_url, SecretStr(KEY), SecretStr(SECRET + "x"), {BYBIT_IID: INST}, 2.0)
        with pytest.raises(VenueRejected, match="10004") as info:
            await bad.positions()
        await bad.close()
        assert SECRET not in str(info.value) and emulator.requests == []
        good = BybitLinearTrading(emulator.rest_url, SecretStr(KEY), SecretStr(SECRET), {BYBIT_IID: INST}, 2.0)
        try:
            assert [(p.quantity, p.entry_price) for p in await good.positions()] == [(0.0, 0.0)]
            body = linear_order_params(Order("hedge1", "", BYBIT_IID, OrderSide.BUY, OrderType.MARKET, 0.001), INST) | {"positionIdx": 1}
            with pytest.raises(VenueRejected, match="10001"):
                await good.call("private_post_v5_order_create", body)
            assert "hedge1" not in emulator.orders
        finally:
            await good.close()


def _reconciled(emulator: Any) -> tuple[BybitLinearTrading, LiveVenue, Reconciler, dict[str, str]]:
    """A journal-less kernel trading ``emulator``'s account and its reconciler; ``holds``: instrument -> hold reason."""
    api = BybitLinearTrading(emulator.rest_url, SecretStr(KEY), SecretStr(SECRET), {BYBIT_IID: INST}, 2.0)
    return api, *reconciled(api, INST)


async def test_a_position_difference_holds_the_perpetual_only_when_it_persists() -> None:
    async with _emulator() as emulator:
        api, venue, reconciler, holds = _reconciled(emulator)
        try:
            await reconciler.round()
            assert holds == {}

            async def trade_by_hand(coid: str, side: OrderSide) -> None:
                await api.place(Order(coid, "", BYBIT_IID, side, OrderType.MARKET, 0.004))
                last = emulator.clock.now_ns() + 10**6
                emulator.on_trade(Trade(BYBIT_IID, last, last, 65_000.0, 1.0, 1 if side is OrderSide.SELL else -1, coid))

            await trade_by_hand("byhand1", OrderSide.SELL)  # outside this journal: the venue is short 0.004
            await reconciler.round()
            assert holds == {}  # once could be a fill in flight
            await reconciler.round()
            assert "0.0 BTC position held here but -0.004 at the venue" in holds[BYBIT_IID]
            await trade_by_hand("byhand2", OrderSide.BUY)
            await reconciler.round()
            assert holds == {} and reconciler.rounds == 4
        finally:
            await venue.aclose()


async def test_a_foreign_position_at_start_up_is_held_with_advice_a_perpetual_can_follow() -> None:
    """A perpetual's position is no balance: ``balances: {BTC: ...}`` cannot start the journal at the venue's position."""
    async with _emulator() as emulator:
        api, venue, reconciler, holds = _reconciled(emulator)
        try:
            await api.place(Order("byhand1", "", BYBIT_IID, OrderSide.BUY, OrderType.MARKET, 0.004))
            last = emulator.clock.now_ns() + 10**6
            emulator.on_trade(Trade(BYBIT_IID, last, last, 65_000.0, 1.0, -1, "x1"))
            await reconciler.compare_balances(startup=True)  # as the daemon's start does, once the journal is replayed
            reason = holds[BYBIT_IID]
            assert "0.0 BTC position held here but 0.004 at the venue" in reason
            assert "balances" not in reason and "close the position at the venue" in reason
        finally:
            await venue.aclose()


async def test_kill_flatten_buys_back_the_journaled_short_reduce_only_once_and_halts(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    async with linear_account(journal=path) as h:
        h.trade(65_000.0)
        await h.fill_market(OrderSide.SELL, 0.004, 65_000.0)
        resting = h.submit(OrderSide.BUY, 0.001, 60_000.0)
        await until(lambda: resting.status is OrderStatus.ACCEPTED)
        config = parse_live_config(_config(tmp_path, "ws://127.0.0.1:9", h.emulator, path), "<test>")
        h.stream.stop()  # the daemon is stopped before the kill (its journal is the kill's)
        await until(lambda: not h.emulator.sessions)

        async def market_moves() -> None:  # the flattening market order fills at the next trade
            await until(lambda: any(r.order.order_type is OrderType.MARKET and r.order.side is OrderSide.BUY for r in h.emulator.orders.values()), timeout=10)
            h.trade(64_800.0)

        mover = asyncio.create_task(market_moves())
        canceled = await kill_switch(config, ApiKeys(SecretStr(KEY), SecretStr(SECRET)), "test kill", flatten=True)
        await mover
    assert canceled == [resting.client_order_id]
    (kill,) = [r for r in h.emulator.orders.values() if r.order.order_type is OrderType.MARKET and r.order.side is OrderSide.BUY]
    assert kill.status is OrderStatus.FILLED and kill.order.reduce_only and kill.order.quantity == pytest.approx(0.004)
    assert h.emulator.position(SYMBOL) == pytest.approx(0.0, abs=1e-12)
    # closed 0.004 short at 64800 from 65000: +0.8, fees 0.004 * 65000 * 0.00055 + 0.004 * 64800 * 0.00055
    assert h.emulator.balances["USDT"] == pytest.approx(10_000.0 + 0.8 - 0.143 - 0.14256, abs=1e-9)
    journal = Journal(path)
    try:
        orders = OrderManager(MessageBus(), LiveClock())
        portfolio = Portfolio(config.instrument_map(), config.initial_cash, config.balances)
        journal.replay(orders, portfolio, 0)
        state = journal.load_risk_state()
    finally:
        journal.close()
    assert portfolio.position(BYBIT_IID) == pytest.approx(0.0, abs=1e-12)
    (flat,) = [o for o in orders.orders() if o.strategy_id == KILL_STRATEGY]
    assert flat.status is OrderStatus.FILLED and flat.client_order_id == kill.order.client_order_id
    assert state is not None and state.manual_state is TradingState.HALTED


# ---------------------------------------------------------------------- the daemon


def _config(tmp: Path, ws_url: str, emulator: BybitLinearEmulator, journal: Path) -> dict[str, Any]:
    return {
        "instruments": [BYBIT_INSTRUMENT],
        "strategy": {
            "name": "tradebus.strategies.tick_ema:TickEmaCross",
            "instruments": [BYBIT_IID],
            "params": {"fast": 2, "slow": 5, "quantity": 0.002, "mode": "long_short"},
        },
        "venue": {"fill_on": "trades"},
        "feeds": [
            {
                "venue": "bybit",
                "market": "linear",
                "ws_url": ws_url,
                "subscriptions": {BYBIT_IID: ["publicTrade"]},
                "backoff": {"base": 0.05, "cap": 0.2, "min_delay": 0.01},
            }
        ],
        "warm_up": False,
        "initial_cash": 10_000.0,
        "journal": str(journal),
        "record": str(tmp / "frames.jsonl.gz"),
        "live": {
            "market": "perpetual",
            "rest_url": emulator.rest_url,
            "ws_api_url": emulator.ws_url,
            "request_timeout": 1.0,
            "submit_timeout": 1.0,
            "cancel_timeout": 1.0,
            "retry_interval": 0.3,
            "not_found_grace": 2.0,
            "reconcile_interval": 0.5,
        },
    }


async def _run(tmp: Path, emulator: BybitLinearEmulator, frames: list[tuple[int, str]], journal: Path, act: Any = None) -> LiveNode:
    """One daemon session over ``frames``; ``act(node)`` runs once they are all processed, before the stop."""
    protocol = MatchingProtocol(frames, account=emulator, instrument_ids={SYMBOL: BYBIT_IID})
    trades = sum(len(json.loads(raw)["data"]) for _, raw in frames)
    async with LocalVenueServer(protocol, frames, speed=16.0) as srv:
        config = parse_live_config(_config(tmp, srv.ws_url, emulator, journal), "<test>")
        node = LiveNode(config, ApiKeys(SecretStr(KEY), SecretStr(SECRET)), handle_signals=False)
        seen = session_trades(node.kernel)
        task = asyncio.create_task(node.run())
        try:
            await until(lambda: node.running.is_set() and seen() == trades, timeout=60)
            *_, last = (m for m in BybitParser("linear").parse_frame(frames[-1][1], 0) if isinstance(m, Trade))
            await trade_after_market_orders(node.kernel, emulator, last)
            await answered(node.kernel)
            if act is not None:
                await act(node)
        finally:
            node.stop("test done")
            await asyncio.wait_for(task, 20)
    return node


async def test_a_switch_to_hedge_mode_while_running_stops_orders_on_the_instrument_naming_it_and_the_mode(tmp_path: Path) -> None:
    """The account is switched to hedge mode after the start: the next reconciliation round holds the
    perpetual with the start-up's reason (its positions are per side; one-way orders are refused), and a
    strategy's order is denied here, never sent; switched back, a round resumes it."""
    seen: dict[str, Any] = {}

    async def act(node: LiveNode) -> None:
        emulator.hedge_mode = True
        await until(lambda: BYBIT_IID in node.guard.holds, timeout=5.0)
        seen["reason"] = node.guard.holds[BYBIT_IID]
        placed = len([p for m, p, _ in emulator.requests if p == "/v5/order/create"])
        now = node.clock.now_ns()
        order = node.kernel.execution.submit(SubmitOrder("TickEmaCross", BYBIT_IID, "", OrderSide.BUY, 0.001, now, now, OrderType.MARKET))
        seen["order"] = order
        seen["sent"] = len([p for m, p, _ in emulator.requests if p == "/v5/order/create"]) - placed
        emulator.hedge_mode = False
        await until(lambda: BYBIT_IID not in node.guard.holds, timeout=5.0)

    async with _emulator() as emulator:
        await _run(tmp_path, emulator, TRADE_FRAMES[:1], tmp_path / "journal.sqlite", act)
    assert "BTCUSDT-LINEAR.BYBIT: the account is in hedge mode (positions per side); orders here are one-way" in seen["reason"]
    assert seen["order"].status is OrderStatus.DENIED and seen["sent"] == 0


async def test_a_switch_to_hedge_mode_pushed_on_the_position_stream_stops_orders_on_the_instrument(tmp_path: Path) -> None:
    """The position stream pushes the instrument's per-side rows of a switch to hedge mode: the daemon holds
    it at once, naming the instrument and the mode, before any reconciliation round asks."""
    held: list[InstrumentHeld] = []

    async def act(node: LiveNode) -> None:
        node.kernel.bus.subscribe(InstrumentHeld, held.append)
        emulator.switch_position_mode(hedge=True)
        await until(lambda: any(h.instrument_id == BYBIT_IID and h.reason.startswith("user stream:") for h in held), timeout=5.0)

    async with _emulator() as emulator:
        await _run(tmp_path, emulator, TRADE_FRAMES[:1], tmp_path / "journal.sqlite", act)
    first = held[0]
    assert first.state is TradingState.HALTED
    assert "BTCUSDT-LINEAR.BYBIT: the account is in hedge mode (positions per side); orders here are one-way" in first.reason


@pytest.mark.slow
async def test_bybit_linear_session_books_positions_once_honours_reduce_only_and_restarts_reconciled(tmp_path: Path) -> None:
    log = tmp_path / "daemon.log"
    sink = logger.add(log, level="DEBUG")
    journal = tmp_path / "journal.sqlite"
    seen: dict[str, Any] = {}

    async def act(node: LiveNode) -> None:
        kernel = node.kernel
        pos = kernel.portfolio.position(BYBIT_IID)
        assert pos != 0.0, "the strategy holds a position"
        now = node.clock.now_ns()
        grow = OrderSide.BUY if pos > 0 else OrderSide.SELL
        shrink = OrderSide.SELL if pos > 0 else OrderSide.BUY
        far = 1_000.0 if grow is OrderSide.BUY else 1_000_000.0  # never fills
        wrong = kernel.execution.submit(SubmitOrder("TickEmaCross", BYBIT_IID, "", grow, 0.001, now, now, OrderType.LIMIT, far, reduce_only=True))
        resting_px = 1_000_000.0 if shrink is OrderSide.SELL else 1_000.0
        right = kernel.execution.submit(SubmitOrder("TickEmaCross", BYBIT_IID, "", shrink, 0.001, now, now, OrderType.LIMIT, resting_px, reduce_only=True))
        await until(lambda: wrong.status is OrderStatus.REJECTED and right.status is OrderStatus.ACCEPTED)
        seen.update(wrong=wrong, right=right)

    try:
        async with _emulator() as emulator:
            node = await _run(tmp_path, emulator, TRADE_FRAMES, journal, act)
            kernel = node.kernel
            # every fill of the account booked once, and only those; the position and wallet are the venue's
            assert len(emulator.fills) > 2
            assert sorted(f.trade_id for f in kernel.result.fills) == sorted(str(f.trade_id) for f in emulator.fills)
            assert kernel.portfolio.position(BYBIT_IID) == pytest.approx(emulator.position(SYMBOL), abs=1e-12)
            assert kernel.portfolio.account.balance("USDT") == pytest.approx(emulator.balances["USDT"], abs=1e-9)
            assert node.positions[BYBIT_IID].quantity == pytest.approx(emulator.position(SYMBOL), abs=1e-12)
            assert node.positions[BYBIT_IID].entry_price == pytest.approx(emulator.entry[SYMBOL])
            assert node.balances["USDT"].free == pytest.approx(emulator.balances["USDT"], abs=1e-9)
            assert {f.fill.side for f in emulator.fills} == {OrderSide.BUY, OrderSide.SELL}
            assert "110017" in seen["wrong"].reason
            # each order placed once; the stop canceled the resting reduce-only one
            posts = [c for m, p, c in emulator.requests if m == "POST" and p == "/v5/order/create"]
            assert len(posts) == len(set(posts)) == len(emulator.orders)
            assert emulator.orders[seen["right"].client_order_id].status is OrderStatus.CANCELED
            assert not emulator.open_orders()
            assert not node.guard.holds and node.reconciler.rounds >= 1
            fills_before = len(kernel.result.fills)

            # restart on the same journal, nothing traded meanwhile: reconciled, not held, nothing re-sent
            again = await _run(tmp_path, emulator, TRADE_FRAMES[:1], journal)
            assert again.kernel.portfolio.position(BYBIT_IID) == pytest.approx(emulator.position(SYMBOL), abs=1e-12)
            assert not again.guard.holds
            assert len(again.kernel.result.fills) == fills_before
            assert [c for m, p, c in emulator.requests if m == "POST" and p == "/v5/order/create"] == posts

            # a trade placed by hand while the daemon is down: the restart finds the position differs and holds it
            manual = BybitLinearTrading(emulator.rest_url, SecretStr(KEY), SecretStr(SECRET), {BYBIT_IID: INST}, 2.0)
            await manual.place(Order("byhand1", "", BYBIT_IID, OrderSide.BUY, OrderType.MARKET, 0.005))
            await manual.close()
            last = emulator.clock.now_ns() + 10**6
            emulator.on_trade(Trade(BYBIT_IID, last, last, 65_000.0, 1.0, -1, "x1"))
            assert emulator.orders["byhand1"].status is OrderStatus.FILLED
            third = await _run(tmp_path, emulator, TRADE_FRAMES[:1], journal)
            reason = third.guard.holds.get(BYBIT_IID, "")
            assert "BTC position held here but" in reason
            assert float(reason.split(" but ")[1].split()[0]) == pytest.approx(emulator.position(SYMBOL), abs=1e-9)
            assert third.kernel.portfolio.position(BYBIT_IID) == pytest.approx(emulator.position(SYMBOL) - 0.005, abs=1e-12)
    finally:
        logger.remove(sink)
    # neither the key nor the secret in any file the runs wrote, nor in the log
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert log in files and len(files) > 2
    for path in files:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
        assert KEY.encode() not in raw and SECRET.encode() not in raw, path.name


def test_the_testnet_config_selects_the_linear_account_on_bybits_testnet_hosts() -> None:
    config = load_live_config(CONFIG)
    live = config.live
    assert (live.venue, live.market, live.environment) == ("bybit", "perpetual", "testnet")
    assert live.endpoints() == ("https://api-testnet.bybit.com", "wss://stream-testnet.bybit.com/v5/private")
    assert (live.api_key_env, live.api_secret_env) == ("TRADEBUS_BYBIT_API_KEY", "TRADEBUS_BYBIT_API_SECRET")
    api = live.account().trading(live.endpoints()[0], SecretStr(KEY), SecretStr(SECRET), config.instrument_map(), 1.0)
    assert isinstance(api, BybitLinearTrading) and api.category == "linear"
    asyncio.run(api.close())
    spot = live.model_copy(update={"market": "spot"})
    assert spot.account().trading is not live.account().trading


def test_tradebus_live_command_trades_bybit_linear_and_no_output_holds_a_key(tmp_path: Path, _loguru_to_current_stderr: None) -> None:
    """``tradebus live CONFIG --out DIR`` on the linear account: keys from the environment, the emulators on another thread."""
    import csv
    import threading

    import yaml
    from typer.testing import CliRunner

    from tradebus.cli import app

    ready = threading.Event()
    served: dict[str, Any] = {}

    def servers() -> None:
        async def main() -> None:
            async with _emulator() as emulator:
                protocol = MatchingProtocol(TRADE_FRAMES, account=emulator, instrument_ids={SYMBOL: BYBIT_IID})
                async with LocalVenueServer(protocol, TRADE_FRAMES, speed=16.0) as srv:
                    done = asyncio.Event()
                    data = _config(tmp_path, srv.ws_url, emulator, tmp_path / "journal.sqlite")
                    served.update(emulator=emulator, data=data, stop=(asyncio.get_running_loop(), done))
                    ready.set()
                    await done.wait()

        asyncio.run(main())

    thread = threading.Thread(target=servers, daemon=True)
    thread.start()
    assert ready.wait(30)
    try:
        path = tmp_path / "live.yaml"
        path.write_text(yaml.safe_dump(served["data"]))
        out = tmp_path / "out"
        env = {"TRADEBUS_BYBIT_API_KEY": KEY, "TRADEBUS_BYBIT_API_SECRET": SECRET}
        # The served stream lasts 2.5 s from the daemon's connection; a start takes up to ~10 s on a
        # loaded machine, and a stop before the stream's last fill would miss that fill.
        result = CliRunner().invoke(app, ["live", str(path), "--out", str(out), "--max-seconds", "20"], env=env)
    finally:
        loop, done = served["stop"]
        loop.call_soon_threadsafe(done.set)
        thread.join(20)
    assert result.exit_code == 0, result.output
    emulator = served["emulator"]
    assert any(p == "/v5/position/list" for _, p, _ in emulator.requests)  # reconciled against the venue's position
    with (out / "fills.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["trade_id"] for r in rows) == sorted(str(f.trade_id) for f in emulator.fills) and rows
    node = json.loads((out / "node.json").read_text())
    assert node["positions"][BYBIT_IID] == pytest.approx(emulator.position(SYMBOL), abs=1e-12)
    assert "TRADEBUS_BYBIT_API_SECRET" in (out / "config.yaml").read_text()
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {"config.yaml", "fills.csv", "journal.sqlite", "frames.jsonl.gz"} <= {p.name for p in files}
    for p in files:
        raw = p.read_bytes()
        if p.suffix == ".gz":
            raw = gzip.decompress(raw)
        assert KEY.encode() not in raw and SECRET.encode() not in raw, p.name
    assert KEY not in result.output and SECRET not in result.output


@pytest.mark.parametrize(
    ("account", "refusal"),
    [
        ({"leverage": 10.0}, "BTCUSDT-LINEAR.BYBIT: leverage 5 in the config, 10 at the venue"),
        ({"margin_mode": "ISOLATED_MARGIN"}, "BTCUSDT-LINEAR.BYBIT: margin_mode cross in the config, isolated at the venue"),
        ({"margin_mode": "PORTFOLIO_MARGIN"}, "BTCUSDT-LINEAR.BYBIT: margin_mode cross in the config, PORTFOLIO_MARGIN at the venue"),
        ({"hedge_mode": True}, "BTCUSDT-LINEAR.BYBIT: the account is in hedge mode"),
    ],
)
async def test_an_account_whose_leverage_margin_mode_or_position_mode_differs_from_the_config_is_refused_at_start(
    tmp_path: Path, account: dict[str, Any], refusal: str
) -> None:
    # the config's 5x cross is what the margin account here computes buying power with
    instrument = {**BYBIT_INSTRUMENT, "leverage": 5, "margin_mode": "cross"}
    emulator = BybitLinearEmulator(KEY, SECRET, {BYBIT_IID: Instrument(**{**instrument, "kind": InstrumentKind.PERPETUAL})}, {"USDT": 10_000.0})
    async with emulator:
        for key, value in account.items():
            if key == "leverage":
                emulator.leverage[SYMBOL] = value
            else:
                setattr(emulator, key, value)
        data = _config(tmp_path, "ws://127.0.0.1:9", emulator, tmp_path / "journal.sqlite") | {"instruments": [instrument]}
        node = LiveNode(parse_live_config(data, "<test>"), ApiKeys(SecretStr(KEY), SecretStr(SECRET)), handle_signals=False)
        with pytest.raises(ConfigError, match="margin settings differ from the config") as err:  # exit 2
            await asyncio.wait_for(node.run(), 20)
        assert refusal in str(err.value)
    assert not (tmp_path / "journal.sqlite").exists()  # refused before it traded: the run leaves nothing
    assert [p for m, p, _ in emulator.requests if m != "GET"] == [] and not emulator.sessions  # nothing placed, no stream opened
    assert ("GET", "/v5/account/info") in [(m, p) for m, p, _ in emulator.requests]


async def test_the_linear_emulator_answers_its_instrument_s_leverage_and_margin_mode_and_refuses_orders_in_hedge_mode() -> None:
    isolated = Instrument(**{**BYBIT_INSTRUMENT, "kind": InstrumentKind.PERPETUAL, "leverage": 3, "margin_mode": "isolated"})
    emulator = BybitLinearEmulator(KEY, SECRET, {BYBIT_IID: isolated}, {"USDT": 10_000.0})
    async with emulator:
        api = BybitLinearTrading(emulator.rest_url, SecretStr(KEY), SecretStr(SECRET), {BYBIT_IID: isolated}, 2.0)
        try:
            assert await api.margin_settings() == [AccountMargin(BYBIT_IID, 3.0, "isolated", True)]
            emulator.hedge_mode = True
            assert await api.margin_settings() == [AccountMargin(BYBIT_IID, 3.0, "isolated", False)]
            with pytest.raises(VenueRejected, match="10001"):
                await api.place(Order("hedged1", "", BYBIT_IID, OrderSide.BUY, OrderType.MARKET, 0.001))
        finally:
            await api.close()


# ---------------------------------------------------------------------- the venue's funding


FUNDING_PX = 65_000.0
#: The mark of a settlement, not the fill price (the last price the daemon knows).
SETTLE_PX = 65_130.5


async def _open_long(node: LiveNode, emulator: BybitLinearEmulator, qty: float = 0.01) -> None:
    """Buy ``qty`` at market, filled by a public trade at :data:`FUNDING_PX`; wait until the daemon booked it."""
    await open_long(node, emulator, BYBIT_IID, qty, FUNDING_PX)


def _journaled_funding(journal: Path) -> list[FundingPaid]:
    j = Journal(journal)
    try:
        return [e.message for e in j.entries() if type(e.message) is FundingPaid]
    finally:
        j.close()


async def test_the_venues_funding_settlement_is_booked_once_from_the_execution_stream_and_the_wallet_stays_the_venues(tmp_path: Path) -> None:
    """Bybit settles funding on its own (``execution`` with ``execType=Funding``): the daemon books that payment once,
    and no estimate of its own from an announced rate."""
    journal = tmp_path / "journal.sqlite"
    seen: dict[str, Any] = {}

    async def act(node: LiveNode) -> None:
        kernel = node.kernel
        await _open_long(node, emulator)
        now = node.clock.now_ns()
        kernel.bus.publish(FundingRate(BYBIT_IID, now, now, 0.0001, now - 1))
        seen["paid"] = emulator.settle_funding(SYMBOL, 0.0001, SETTLE_PX)
        # the venue's payment is heard (an estimate of the announced rate would have been booked before it)
        venue_ns = int(emulator.transaction_log[-1]["transactionTime"]) * 1_000_000
        await until(lambda: any(f.ts_event == venue_ns for f in kernel.result.funding))
        seen["wallet"] = kernel.portfolio.account.balance("USDT")

    async with _emulator() as emulator:
        node = await _run(tmp_path, emulator, TRADE_FRAMES[:1], journal, act)
        assert seen["paid"] == pytest.approx(0.01 * SETTLE_PX * 0.0001)
        assert [f.payment for f in node.kernel.result.funding] == pytest.approx([seen["paid"]], abs=1e-9)
        assert node.kernel.result.funding[0].quantity == pytest.approx(0.01)
        # the execution's execPrice and feeRate: the venue's mark and rate (they were the last price and the
        # rate the payment implies at it)
        assert (node.kernel.result.funding[0].mark_price, node.kernel.result.funding[0].rate) == (SETTLE_PX, 0.0001)
        assert seen["wallet"] == pytest.approx(emulator.balances["USDT"], abs=1e-8)
        assert not node.guard.holds
    assert [p.payment for p in _journaled_funding(journal)] == pytest.approx([seen["paid"]], abs=1e-9)


@pytest.mark.slow
async def test_funding_settled_while_the_daemon_was_down_is_booked_once_from_the_transaction_log_at_restart(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite"
    seen: dict[str, float] = {}

    async def open_long(node: LiveNode) -> None:
        await _open_long(node, emulator)

    async def booked(node: LiveNode) -> None:
        # the read answered and booked (a repeated read would be asked right after it)
        await until(lambda: len(node.kernel.result.funding) >= 2 and not node.reconciler.funding_pending, timeout=10.0)
        seen["wallet"] = node.kernel.portfolio.account.balance("USDT")

    async with _emulator() as emulator:
        await _run(tmp_path, emulator, TRADE_FRAMES[:1], journal, open_long)
        # the daemon is down (no user stream): two settlements reach only the transaction log
        paid = [emulator.settle_funding(SYMBOL, 0.0001, SETTLE_PX), emulator.settle_funding(SYMBOL, -0.0003, FUNDING_PX)]
        node = await _run(tmp_path, emulator, TRADE_FRAMES[:1], journal, booked)
        assert not node.guard.holds
        assert [f.payment for f in node.kernel.result.funding] == pytest.approx(paid, abs=1e-9)
        assert [f.ts_event // 1_000_000 for f in node.kernel.result.funding] == [int(r["transactionTime"]) for r in emulator.transaction_log]
        # the transaction log's tradePrice and feeRate: the venue's mark and rate
        assert [(f.mark_price, f.rate) for f in node.kernel.result.funding] == [(SETTLE_PX, 0.0001), (FUNDING_PX, -0.0003)]
        assert seen["wallet"] == pytest.approx(emulator.balances["USDT"], abs=1e-8)
        assert node.reconciler.funding_caught_up == 2
        # a second restart reads the same log and books nothing more
        again = await _run(tmp_path, emulator, TRADE_FRAMES[:1], journal)
        assert again.reconciler.funding_caught_up == 0
        assert [f.payment for f in again.kernel.result.funding] == pytest.approx(paid, abs=1e-9)
        assert again.kernel.portfolio.account.balance("USDT") == pytest.approx(emulator.balances["USDT"], abs=1e-8)
    assert [p.payment for p in _journaled_funding(journal)] == pytest.approx(paid, abs=1e-9)


async def test_the_emulator_refuses_a_second_funding_row_a_daemon_would_take_for_the_first_told_twice(tmp_path: Path) -> None:
    """As the OKX swap emulator's since 3cb063b7: two settlements of the same rate and mark (a long of 0.01 at 65,000:
    0.065 USDT each) were both stamped on the emulator's clock, milliseconds apart, in the transaction log (and pushed
    as two ``execType=Funding`` executions), a history Bybit cannot produce (it settles a symbol's funding once per
    funding time, hours apart), and a daemon takes two payments of one instrument and amount within 60 s
    (VENUE_FUNDING_MATCH_NS) for one told twice. The emulator now refuses the second settlement, naming the symbol,
    the amount and the first row; the log and the wallet are as after one settlement, and another amount goes through."""
    async with _emulator() as emulator:
        await _run(tmp_path, emulator, TRADE_FRAMES[:1], tmp_path / "journal.sqlite", lambda node: _open_long(node, emulator))
        paid = second_funding_refused(
            emulator, SYMBOL, FUNDING_PX,
            r"a second funding transaction-log row of BTCUSDT for -0\.065\d* within 60 s of transaction-log row funding-\d+: ",
            lambda: [r["change"] for r in emulator.transaction_log if r["type"] == "SETTLEMENT"])
        assert paid == pytest.approx(0.065)
