"""A bracket on Binance spot (a cash-only instrument) through the live venue and the local account emulator.

Binance spot has no reduce-only orders, and the stop-loss and take-profit both sell the BTC the
entry bought: the children go as plain orders, and the account holds that BTC once for the pair.
The emulator locks the balance of every open order as Binance does: the children go as one OCO
order list (``POST /api/v3/orderList/oco``), which locks the BTC once for both.
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import msgspec
import pytest
from loguru import logger
from pydantic import SecretStr

from tests.live.live_harness import IID, KEY, SECRET, Harness, harness, settled, until
from tests.live.node_testdata import SPOT_SNAPSHOT
from tests.live.test_live_daemon import SPOT, _run_until
from tests.live.test_live_daemon import _config as daemon_config
from tests.live.test_live_replace_crash import TRADE_TEMPLATE, TradeGate, trade_frames
from tradebus.adapters.binance.private_emulator import BinancePrivateEmulator, MatchingProtocol, TrailingStop
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.engine.instrument import Instrument
from tradebus.node.live import ApiKeys, LiveConfig, LiveNode, parse_live_config
from tradebus.adapters.binance.trading import BinanceTrading
from tradebus.engine.messages import (
    ContingentLinked, ModifyOrder, OrderDenied, OrderFilled, OrderModifyRejected, OrderRejected, OrderSide, OrderStatus,
)
from tradebus.errors import OrderError
from tradebus.execution.contingent import ContingentOrders


class TwoOrderTrading(BinanceTrading):
    """Binance spot sent each exit as its own order (as a venue without OCO order lists gets them)."""

    supports_oco = False


async def _bracket_armed(h: Harness, take_profit: float = 61_000.0, trail_percent: float | None = None) -> str:
    """A bracket (buy 0.01 at market, stop-loss 59,000, take-profit 61,000) whose entry fills at the trade
    60,000 and whose children the next trade arms; the entry's client order id."""
    contingent = ContingentOrders(h.kernel)
    entry = contingent.bracket(
        "s1", IID, OrderSide.BUY, 0.01, stop_loss=59_000.0, take_profit=take_profit, trail_percent=trail_percent
    )
    assert entry is not None
    await until(lambda: h.kernel.orders.order(entry).status is OrderStatus.ACCEPTED)
    h.trade(60_000.0)
    await until(lambda: h.kernel.orders.order(entry).status is OrderStatus.FILLED)
    h.trade(60_000.0)  # arms the children
    return entry


async def test_a_binance_spot_bracket_rests_both_children_and_the_filled_one_cancels_the_other() -> None:
    """Buy 0.01 BTC at market (fills at the trade 60,000); the next trade arms the stop-loss 59,000
    and the take-profit 61,000, both resting at the venue. A trade at 61,100 fills the take-profit
    at the venue; the stop-loss is then canceled there. Refused before: both children were
    reduce-only (refused locally), and the take-profit was denied for the BTC the stop holds.
    Both exits rest as one OCO order list: the venue locks the 0.01 BTC once and cancels the stop
    itself (the kernel sends no cancel); the fills are booked once and the kernel ends flat."""
    async with harness() as h:
        fills: list[OrderFilled] = []
        h.kernel.bus.subscribe(OrderFilled, fills.append)
        refused: list[OrderDenied | OrderRejected] = []
        h.kernel.bus.subscribe(OrderDenied, refused.append)
        h.kernel.bus.subscribe(OrderRejected, refused.append)
        entry = await _bracket_armed(h)
        await until(lambda: len(h.emulator.open_orders()) == 2 or bool(refused))
        assert refused == []
        stop, target = h.kernel.orders.orders()[1:]
        assert {r.order.client_order_id for r in h.emulator.open_orders()} == {stop.client_order_id, target.client_order_id}
        assert (stop.order_type.name, stop.trigger_price, target.order_type.name, target.price) == (
            "STOP_MARKET", 59_000.0, "LIMIT", 61_000.0)
        assert not stop.reduce_only and not target.reduce_only
        ids = (target.client_order_id, stop.client_order_id)  # a sell's limit is the above leg
        assert h.emulator.lists[ids[0]][2] == ids and [p for m, p, _ in h.emulator.requests if m == "POST"] == [
            "/api/v3/order", "/api/v3/orderList/oco"]
        assert (h.emulator.locked("BTC"), h.emulator.free("BTC")) == pytest.approx((0.01, 0.0))
        h.trade(61_100.0)
        await until(lambda: target.status is OrderStatus.FILLED and stop.status is OrderStatus.CANCELED)
        await h.venue.drain()
        assert h.venue.requests["cancel"] == 0  # the venue canceled the stop
        assert refused == []
    assert h.emulator.orders[stop.client_order_id].status is OrderStatus.CANCELED
    assert h.emulator.open_orders() == [] and h.emulator.locked("BTC") == 0.0
    assert [(f.client_order_id, f.last_qty, f.last_px) for f in fills] == [
        (entry, 0.01, 60_000.0), (target.client_order_id, 0.01, 61_000.0)]
    assert h.kernel.portfolio.position(IID) == pytest.approx(0.0)
    assert h.kernel.portfolio.account.balance("BTC") == pytest.approx(0.0, abs=1e-12)
    assert h.kernel.portfolio.account.balance("USDT") == pytest.approx(h.emulator.balances["USDT"])


async def test_binance_spot_refuses_a_take_profit_sent_after_the_stop_that_locks_the_btc() -> None:
    """Sent as two orders (a venue without order lists), the stop-loss locks the 0.01 BTC and the
    take-profit is refused (-2010 "Account has insufficient balance"), as Binance spot refuses it."""
    async with harness(trading=TwoOrderTrading) as h:
        rejected: list[OrderRejected] = []
        h.kernel.bus.subscribe(OrderRejected, rejected.append)
        await _bracket_armed(h)
        await until(lambda: bool(rejected))
        await h.venue.drain()
    stop, target = h.kernel.orders.orders()[1:]
    assert [r.client_order_id for r in rejected] == [target.client_order_id]
    assert "Account has insufficient balance for requested action." in rejected[0].reason  # -2010
    assert [r.order.client_order_id for r in h.emulator.open_orders()] == [stop.client_order_id]


async def _trailing_bracket_resting(h: Harness, refused: list[OrderRejected], links: list[ContingentLinked]) -> tuple[str, str, str]:
    """A bracket whose stop-loss trails 1 % (floor 59,000) and whose take-profit is 62,000, armed at 60,000:
    both exits rest at the venue as one OCO list; the entry's, stop's and take-profit's client order ids."""
    h.kernel.bus.subscribe(OrderRejected, refused.append)
    h.kernel.bus.subscribe(ContingentLinked, links.append)
    entry = await _bracket_armed(h, take_profit=62_000.0, trail_percent=1.0)
    await until(lambda: len(h.emulator.open_orders()) == 2 or bool(refused))
    assert refused == []
    stop, target = h.kernel.orders.orders()[1:]
    assert (stop.order_type.name, target.order_type.name, target.price) == ("STOP_MARKET", "LIMIT", 62_000.0)
    assert [p for m, p, _ in h.emulator.requests if m == "POST"] == ["/api/v3/order", "/api/v3/orderList/oco"]
    assert h.emulator.lists[target.client_order_id][2] == (target.client_order_id, stop.client_order_id)
    assert stop.client_order_id in h.emulator.trailing  # Binance trails it: belowTrailingDelta=100 BIPS, no stop price
    assert (h.emulator.trailing[stop.client_order_id].delta, h.emulator.orders[stop.client_order_id].order.trigger_price) == (
        100, pytest.approx(float("nan"), nan_ok=True))
    assert (h.emulator.locked("BTC"), h.emulator.free("BTC")) == pytest.approx((0.01, 0.0))
    # The kernel does not trail a stop the venue trails: a restart takes it over as a plain OCO leg.
    assert "trailing" not in [link.kind for link in links]
    return entry, stop.client_order_id, target.client_order_id


async def test_a_binance_spot_trailing_bracket_rests_as_one_oco_list_and_its_take_profit_cancels_the_stop() -> None:
    """A bracket whose stop-loss trails 1 %: before, the stop and the take-profit went as two orders and
    the take-profit was refused (-2010, the BTC locked by the stop). Both now rest as one OCO order
    list whose stop leg Binance trails; a trade at 62,100 fills the take-profit and the venue cancels
    the trailing stop (the kernel sends no cancel); the kernel ends flat."""
    async with harness() as h:
        fills: list[OrderFilled] = []
        h.kernel.bus.subscribe(OrderFilled, fills.append)
        refused: list[OrderRejected] = []
        entry, stop, target = await _trailing_bracket_resting(h, refused, [])
        h.trade(61_000.0)
        h.trade(62_100.0)
        await until(lambda: h.kernel.orders.order(target).status is OrderStatus.FILLED
                    and h.kernel.orders.order(stop).status is OrderStatus.CANCELED)
        await h.venue.drain()
        assert (h.venue.requests["cancel"], h.venue.requests["replace"]) == (0, 0)
        assert refused == []
    assert h.emulator.orders[stop].status is OrderStatus.CANCELED and h.emulator.trailing == {}
    assert h.emulator.open_orders() == [] and h.emulator.locked("BTC") == 0.0
    assert [(f.client_order_id, f.last_qty, f.last_px) for f in fills] == [(entry, 0.01, 60_000.0), (target, 0.01, 62_000.0)]
    assert h.kernel.portfolio.position(IID) == pytest.approx(0.0)


async def test_a_binance_spot_trailing_stop_loss_fills_at_the_trailed_level_and_cancels_the_take_profit() -> None:
    """Armed at 60,000 with a 1 % trail: the price rises to 61,000, so the stop trails to 61,000 × 0.99 =
    60,390 (the kernel would have moved it there too, from the floor 59,000's 59,400). 60,400 does not
    reach it; 60,390 does: the stop fills there and the venue cancels the take-profit."""
    async with harness() as h:
        fills: list[OrderFilled] = []
        h.kernel.bus.subscribe(OrderFilled, fills.append)
        refused: list[OrderRejected] = []
        entry, stop, target = await _trailing_bracket_resting(h, refused, [])
        for price in (60_500.0, 61_000.0, 60_400.0):
            h.trade(price)
        assert [r.order.client_order_id for r in h.emulator.open_orders()] == [target, stop]
        h.trade(60_390.0)
        await until(lambda: h.kernel.orders.order(stop).status is OrderStatus.FILLED
                    and h.kernel.orders.order(target).status is OrderStatus.CANCELED)
        await h.venue.drain()
        assert (h.venue.requests["cancel"], h.venue.requests["replace"]) == (0, 0)
        assert refused == []
    assert h.emulator.orders[target].status is OrderStatus.CANCELED
    assert h.emulator.open_orders() == [] and h.emulator.locked("BTC") == 0.0
    assert [(f.client_order_id, f.last_qty, f.last_px) for f in fills] == [(entry, 0.01, 60_000.0), (stop, 0.01, 60_390.0)]
    assert h.kernel.portfolio.position(IID) == pytest.approx(0.0)


def test_the_emulated_trailing_stop_follows_the_binance_trailing_stop_faq_scenarios() -> None:
    """Scenarios B (a sell with a stop price: tracking starts at the first trade <= it) and E (a sell
    without one: tracking starts at the next trade) of Binance's Spot Trailing Stop FAQ, and A (a buy)."""
    b = TrailingStop(sell=True, delta=1000, activation=39_000.0)
    assert not any(b.triggers_at(p) for p in (40_000.0, 41_500.0, 39_000.0, 37_000.0, 41_000.0, 36_901.0))
    assert b.triggers_at(36_900.0)  # 41,000 × 0.90
    e = TrailingStop(sell=True, delta=700)
    assert not any(e.triggers_at(p) for p in (40_000.0, 42_000.0, 39_500.0, 45_500.0, 42_316.0))
    assert e.triggers_at(42_315.0)  # 45,500 × 0.93
    a = TrailingStop(sell=False, delta=500, activation=44_000.0)
    assert not any(a.triggers_at(p) for p in (40_000.0, 37_000.0, 44_000.0, 45_000.0, 46_000.0, 42_000.0, 44_099.0))
    assert a.triggers_at(44_100.0)  # 42,000 × 1.05


async def test_a_bracket_whose_entry_paid_its_fee_in_btc_exits_what_the_buy_left() -> None:
    """Binance takes a buy's fee from the BTC bought: 0.6 USDT at 60,000 is 0.00001 BTC, the entry
    leaves 0.00999 BTC, and both children sell 0.00999 (selling 0.01 would be denied: unprotected)."""
    from tradebus.engine.instrument import Instrument

    btc = Instrument("BINANCE", "BTCUSDT", base="BTC", quote="USDT", tick_size=0.01, lot_size=1e-5, taker_fee=0.001, margin=False)
    async with harness(inst=btc, balances={"USDT": 100_000.0}) as h:
        h.emulator.fee_in_received = True
        denied: list[OrderDenied] = []
        h.kernel.bus.subscribe(OrderDenied, denied.append)
        entry = await _bracket_armed(h)
        children = [o for o in h.kernel.orders.orders() if o.client_order_id != entry]
        await until(lambda: len(children) == 2 and all(o.status is OrderStatus.ACCEPTED for o in children))
        assert denied == []
        assert [o.quantity for o in children] == [0.01 - 0.00001] * 2 == [h.emulator.balances["BTC"]] * 2
        h.trade(61_100.0)  # the take-profit fills and the venue cancels the stop
        await until(lambda: all(not o.is_open for o in children))
        assert h.kernel.portfolio.position(IID) == h.emulator.balances["BTC"] == 0.0


async def test_a_restarted_live_daemon_rearms_a_bracket_whose_entry_paid_its_fee_in_btc_for_what_it_left(
    tmp_path: Path,
) -> None:
    """``tradebus live`` on the Binance spot account emulator, which takes a buy's fee out of the BTC
    bought: the bracket's entry (0.01 at 60,000) leaves 0.00999 BTC and its children rest for 0.00999.
    The daemon stops (canceling them); restarted on its journal, it arms the bracket again for the
    0.00999 the journaled fill left. Before, the restart sized it on the entry's filled quantity: both
    children for 0.01, denied (0.00999 BTC free), the position left unprotected."""
    emulator = BinancePrivateEmulator(KEY, SECRET, {IID: Instrument(**SPOT)}, {"USDT": 100_000.0})
    emulator.fee_in_received = True
    gate = TradeGate(TRADE_TEMPLATE)
    keys = ApiKeys(SecretStr(KEY), SecretStr(SECRET))
    denied: list[OrderDenied] = []

    def config(enter: bool) -> LiveConfig:
        data = daemon_config(tmp_path, srv.ws_url, srv.http_url, emulator)
        data.pop("record")
        data["strategy"] = {
            "name": "tests.live.bracket_strategy:OneBracket",
            "instruments": [IID],
            "params": {"quantity": 0.01, "stop_loss": 59_000.0, "take_profit": 61_000.0, "enter": enter},
        }
        return parse_live_config(data, "<test>")

    def resting() -> list[float]:
        return sorted(r.order.quantity for r in emulator.open_orders())

    async with emulator:
        protocol = MatchingProtocol(SPOT_SNAPSHOT, account=emulator, instrument_ids={"btcusdt": IID})
        async with LocalVenueServer(protocol, trade_frames(TRADE_TEMPLATE, [60_000.0] * 4), gate=gate, lifetime=300) as srv:
            try:
                first = LiveNode(config(enter=True), keys, handle_signals=False)
                first.kernel.bus.subscribe(OrderDenied, denied.append)

                def entered() -> bool:
                    if gate.allowed == 1 and emulator.orders:
                        gate.allowed = 2  # 60,000: fills the entry
                    elif gate.allowed == 2 and first.kernel.portfolio.position(IID) > 0.0:
                        gate.allowed = 3  # 60,000: arms the children
                    return len(resting()) == 2 or bool(denied)

                gate.allowed = 1  # 60,000: the entry, a market buy
                await _run_until(first, entered)
                assert denied == [] and emulator.balances["BTC"] == 0.01 - 0.00001
                assert [o.quantity for o in first.kernel.orders.orders()[1:]] == [0.00999] * 2
                assert resting() == []  # the stop canceled them
                gate.allowed = 0  # the restarted daemon's trades wait for its start-up reconciliation
                second = LiveNode(config(enter=False), keys, handle_signals=False)
                second.kernel.bus.subscribe(OrderDenied, denied.append)

                def armed() -> bool:
                    if not second.guard.holds and second.running.is_set():
                        gate.allowed = 4
                    return len(resting()) == 2 or bool(denied)

                await _run_until(second, armed)
            finally:
                gate.allowed = 4
    assert [d.reason for d in denied] == []
    assert resting() == [] and [o.quantity for o in second.kernel.orders.orders()[-2:]] == [0.00999] * 2


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ({"trail_offset": 500.0}, "trails by trail_offset 500.0, and the venue's trailing stop trails in percent only"),
        ({"trail_percent": 0.125}, "trail_percent 0.125 is no trailing delta the venue takes"),
        ({"trail_percent": 1.0, "stop_loss": 59_500.0},
         "floor stop_loss 59500.0 is above the trigger 59400.0 trailed 1.0 % from 60000.0"),
        ({"trail_percent": 1.0, "stop_loss": 58_900.0, "entry_price": 59_400.0},
         "floor stop_loss 58900.0 is above the trigger 58806.0 trailed 1.0 % from 59400.0"),
    ],
)
async def test_a_binance_spot_trailing_bracket_its_oco_list_cannot_hold_is_refused_at_submit(
    options: dict[str, float], why: str
) -> None:
    """A bracket with a take-profit whose stop-loss trails by a fixed offset (or a percent Binance does not
    take, or whose floor binds at the entry price): before, the entry was sent and filled, its stop and
    take-profit went as two orders and Binance refused the take-profit (-2010, the BTC the stop locks),
    a warning only. Refused now at submit, naming why, before anything is sent."""
    async with harness() as h:
        contingent = ContingentOrders(h.kernel)
        kwargs = {"stop_loss": 59_000.0, "take_profit": 62_000.0} | options
        with pytest.raises(OrderError, match="must rest as one OCO order list") as caught:
            contingent.bracket("s1", IID, OrderSide.BUY, 0.01, **kwargs)  # type: ignore[arg-type]
        assert why in str(caught.value)
        await h.venue.drain()
        assert h.kernel.orders.orders() == [] and h.emulator.requests == []


@pytest.mark.parametrize(
    ("trading", "options"),
    [
        (BinanceTrading, {"trail_offset": 500.0, "take_profit": None}),  # a lone trailing stop needs no list
        (BinanceTrading, {"trail_percent": 1.0, "stop_loss": 59_400.0}),  # the floor is the trailed trigger
        (TwoOrderTrading, {"trail_offset": 500.0}),  # a venue without order lists: two orders, as before
    ],
)
async def test_a_trailing_bracket_the_venue_can_hold_is_sent(trading: type[BinanceTrading], options: dict[str, float | None]) -> None:
    async with harness(trading=trading) as h:
        contingent = ContingentOrders(h.kernel)
        kwargs = {"stop_loss": 59_000.0, "take_profit": 62_000.0} | options
        entry = contingent.bracket("s1", IID, OrderSide.BUY, 0.01, **kwargs)  # type: ignore[arg-type]
        assert entry is not None
        await until(lambda: h.kernel.orders.order(entry).status is OrderStatus.ACCEPTED)


@pytest.mark.parametrize("venue", ["bybit", "okx"])
async def test_a_spot_bracket_timed_exit_sells_once_its_childrens_cancels_are_confirmed(venue: str) -> None:
    """Buy 0.002 at market (fills at 60,000), stop-loss 59,000, take-profit 61,000, ``exit_after_bars=1`` (spot, the
    venue's account emulator). The bar after the fill's bar cancels both children and exits. Before, the exit was sent
    in the same step as the cancels: the children still held the 0.002 BTC, the risk gate denied it ("held by working
    orders"), the children were canceled and the position stayed open, unprotected. Now the exit is sent once both
    cancels are confirmed, and the next trade fills it: flat at the venue and in the kernel."""
    from tests.live.test_live_cancel_busy import CALM, T0, Bracketing
    from tests.live.venue_kits import KITS, KitTape, kit_harness
    from tradebus.engine.messages import Bar

    kit = KITS[venue]
    strategy = Bracketing(kit.iid)
    async with kit_harness(kit, strategies=[strategy], timeouts=CALM) as h:
        refused: list[OrderDenied | OrderRejected] = []
        h.kernel.bus.subscribe(OrderDenied, refused.append)
        h.kernel.bus.subscribe(OrderRejected, refused.append)
        tape = KitTape(h, kit.iid, T0)
        entry_id = strategy.submit_bracket(kit.iid, OrderSide.BUY, 0.002, stop_loss=59_000.0, take_profit=61_000.0,
                                           exit_after_bars=1)
        assert entry_id is not None
        await until(lambda: h.kernel.orders.order(entry_id).status is OrderStatus.ACCEPTED)
        tape.trade(60_000.0)
        await until(lambda: h.kernel.orders.order(entry_id).status is OrderStatus.FILLED)
        tape.trade(60_000.0)  # arms the children
        children = [o for o in h.kernel.orders.orders() if o.client_order_id != entry_id]
        await until(lambda: len(children) == 2 and all(o.status is OrderStatus.ACCEPTED for o in children))
        for n in (1, 2):  # the fill's bar, then one more: the timed exit
            ts = T0 + n * 60_000_000_000
            h.kernel.process(Bar(kit.iid, ts, ts, 60_000.0, 60_000.0, 60_000.0, 60_000.0, 1.0))
        exits = lambda: [o for o in h.kernel.orders.orders() if h.kernel.result.submit_reasons.get(o.client_order_id) == "timed exit"]  # noqa: E731
        await until(lambda: len(exits()) == 1 and exits()[0].status is OrderStatus.ACCEPTED or bool(refused), timeout=5.0)
        assert refused == []
        assert [o.status for o in children] == [OrderStatus.CANCELED] * 2
        tape.trade(60_100.0)  # fills the exit
        await until(lambda: exits()[0].status is OrderStatus.FILLED, timeout=5.0)
        await h.venue.drain()
        (exit_order,) = exits()
        assert (exit_order.side, exit_order.quantity, exit_order.reduce_only) == (OrderSide.SELL, 0.002, False)
        assert h.kernel.portfolio.position(kit.iid) == pytest.approx(0.0, abs=1e-12)
        assert h.emulator.open_orders() == [] and h.emulator.balances.get(kit.base, 0.0) == pytest.approx(0.0, abs=1e-12)
        assert refused == []


async def test_a_trailing_bracket_whose_floor_binds_at_arming_says_so() -> None:
    """A freqtrade-style bracket, stop-loss trailing 1 % with its floor at 1 % below the last price (59,400 at
    60,000: accepted at submit), whose entry fills at the trade 59,990, which arms its children (at the fill): the
    trigger trailed from there is 59,390.1, below the floor, so the exits go as two orders and Binance refuses
    the take-profit. The warning said the trailing stop-loss had "no venue trailing form here", though 1 % is
    one (100 BIPS); it now names the floor, the trigger and the price it was trailed from."""
    warnings: list[str] = []
    sink = logger.add(lambda m: warnings.append(m.record["message"]), level="WARNING")
    try:
        async with harness() as h:
            rejected: list[OrderRejected] = []
            h.kernel.bus.subscribe(OrderRejected, rejected.append)
            contingent = ContingentOrders(h.kernel)
            h.trade(60_000.0)
            entry = contingent.bracket("s1", IID, OrderSide.BUY, 0.01, stop_loss=59_400.0, take_profit=62_000.0,
                                       trail_percent=1.0)
            assert entry is not None
            await until(lambda: h.kernel.orders.order(entry).status is OrderStatus.ACCEPTED)
            h.trade(59_990.0)  # fills the entry, whose fill arms the children
            await until(lambda: bool(rejected))
            await h.venue.drain()
    finally:
        logger.remove(sink)
    said = [w for w in warnings if w.startswith(f"bracket {entry}:") and "two orders" in w]
    assert len(said) == 1
    assert "floor stop_loss 59400.0 is above the trigger 59390.1 trailed 1.0 % from 59990.0" in said[0]
    assert "no venue trailing form" not in said[0]


async def test_a_modify_of_an_exit_resting_in_an_oco_order_list_is_denied_and_the_list_kept() -> None:
    """A bracket's stop-loss (59,000) and take-profit (61,000) rest as one Binance OCO order list; the strategy
    then lowers the take-profit to 60,500 (a freqtrade ROI table's next step). Binance spot cannot amend a price:
    the modify went as a cancel-replace, whose cancel ended the take-profit's leg, its new order was refused
    (-2010, the BTC the stop still locks) and so was the take-profit placed again: the position kept its stop
    alone, its take-profit gone (on Binance, which cancels the whole list with one leg, the stop would go too).
    It is now denied before anything is sent, naming the list; both legs rest at the venue as they were."""
    async with harness() as h:
        refused: list[OrderDenied | OrderRejected | OrderModifyRejected] = []
        for cls in (OrderDenied, OrderRejected, OrderModifyRejected):
            h.kernel.bus.subscribe(cls, refused.append)
        h.kernel.contingent = contingent = ContingentOrders(h.kernel)  # as a kernel with a contingent strategy has
        entry = contingent.bracket("s1", IID, OrderSide.BUY, 0.01, stop_loss=59_000.0, take_profit=61_000.0)
        assert entry is not None
        await until(lambda: h.kernel.orders.order(entry).status is OrderStatus.ACCEPTED)
        h.trade(60_000.0)
        await until(lambda: h.kernel.orders.order(entry).status is OrderStatus.FILLED)
        h.trade(60_000.0)  # arms the children
        await until(lambda: len(h.emulator.open_orders()) == 2 or bool(refused))
        stop, target = h.kernel.orders.orders()[1:]
        now = h.kernel.clock.now_ns()
        h.kernel.modify(ModifyOrder("s1", IID, target.client_order_id, now, now, price=60_500.0))
        await h.venue.drain()
        h.trade(60_000.0)
        await h.venue.drain()
    assert [(type(r).__name__, r.client_order_id) for r in refused] == [("OrderDenied", target.client_order_id)]
    assert "rests in one OCO order list with" in refused[0].reason and stop.client_order_id in refused[0].reason
    assert [p for m, p, _ in h.emulator.requests if m in ("POST", "DELETE")] == ["/api/v3/order", "/api/v3/orderList/oco"]
    assert {r.order.client_order_id for r in h.emulator.open_orders()} == {stop.client_order_id, target.client_order_id}
    assert (target.price, stop.status, target.status) == (61_000.0, OrderStatus.ACCEPTED, OrderStatus.ACCEPTED)


async def test_binance_spot_cancel_replace_of_one_oco_leg_ends_the_whole_list() -> None:
    """Binance documents ``POST /api/v3/order/cancelReplace`` of an order in an order list: "the result is the same
    as canceling the entire orderList". A cancel-replace of the take-profit leg (61,000 -> 60,500), sent past the
    kernel's denial as a version without it sent it: the emulator canceled that leg alone, its stop leg kept
    locking the 0.01 BTC and the new order was refused (-2010). Now both legs end (the list ALL_DONE) and the new
    take-profit rests alone for the BTC the list freed: the position has no stop, as it would on Binance."""
    async with harness() as h:
        h.venue.on_replace = h.kernel.execution.submit  # as the live node wires it
        await _bracket_armed(h)
        await until(lambda: len(h.emulator.open_orders()) == 2)
        stop, target = h.kernel.orders.orders()[1:]
        now = h.kernel.clock.now_ns()
        h.kernel.execution.modify(ModifyOrder("s1", IID, target.client_order_id, now, now, price=60_500.0))
        await until(lambda: not target.is_open)
        await h.venue.drain()
        await settled(h)
    assert [p for m, p, _ in h.emulator.requests if m == "POST"] == [
        "/api/v3/order", "/api/v3/orderList/oco", "/api/v3/order/cancelReplace"]
    assert (h.emulator.orders[stop.client_order_id].status, stop.status) == (OrderStatus.CANCELED, OrderStatus.CANCELED)
    (resting,) = h.emulator.open_orders()
    assert (resting.order.price, resting.order.quantity, resting.order.client_order_id in h.emulator.lists) == (60_500.0, 0.01, False)
    assert (h.emulator.locked("BTC"), h.emulator.free("BTC")) == pytest.approx((0.01, 0.0))


def _unflag_oco_links(path: Path) -> int:
    """Remove the ``listed`` flag from the ``"oco"`` links journaled at ``path``, as a tradebus before the flag journaled
    them; how many had it."""
    db = sqlite3.connect(path)
    try:
        flagged = 0
        for seq, payload in db.execute("SELECT seq, payload FROM journal WHERE type = 'ContingentLinked'").fetchall():
            entry = msgspec.msgpack.decode(payload)
            if entry.get("kind") == "oco" and entry["params"].pop("listed", None) is not None:
                flagged += 1
                db.execute("UPDATE journal SET payload = ? WHERE seq = ?", (msgspec.msgpack.encode(entry), seq))
        db.commit()
        return flagged
    finally:
        db.close()


@pytest.mark.parametrize("journaled_by", ["this tradebus", "a tradebus before the listed flag"])
async def test_a_restarted_live_daemon_still_denies_a_modify_of_an_exit_resting_in_an_oco_order_list(
    tmp_path: Path, journaled_by: str
) -> None:
    """``tradebus live`` (``live.cancel_on_stop: false``) on the Binance spot account emulator: the bracket's
    stop-loss 59,000 and take-profit 61,000 rest as one OCO order list, and stay at the venue when the daemon stops.
    Restarted on its journal, the strategy lowers the take-profit to 60,500 (a freqtrade ROI step). Before, the
    restarted daemon did not know the exits were one list: the modify went as a cancel-replace, which ends the
    whole list at Binance, leaving the 0.01 BTC with a take-profit and no stop-loss. It is now denied before
    anything is sent, as it is before a restart, and both legs rest as they were. A journal written before the
    ``"oco"`` link's ``listed`` flag (by an older tradebus) lacks it, and its restart sent the cancel-replace still;
    the venue's open orders, read at the restart, carry each leg's ``orderListId`` (-1 for an order in no list):
    the restart now takes the two legs of one list as listed from them."""
    emulator = BinancePrivateEmulator(KEY, SECRET, {IID: Instrument(**SPOT)}, {"USDT": 100_000.0})
    gate = TradeGate(TRADE_TEMPLATE)
    keys = ApiKeys(SecretStr(KEY), SecretStr(SECRET))
    denied: list[OrderDenied] = []

    def config(enter: bool, lower_to: float | None = None) -> LiveConfig:
        data = daemon_config(tmp_path, srv.ws_url, srv.http_url, emulator)
        data.pop("record")
        data["live"]["cancel_on_stop"] = False
        data["strategy"] = {
            "name": "tests.live.bracket_strategy:OneBracket",
            "instruments": [IID],
            "params": {"quantity": 0.01, "stop_loss": 59_000.0, "take_profit": 61_000.0, "enter": enter,
                       "lower_take_profit_to": lower_to},
        }
        return parse_live_config(data, "<test>")

    def resting() -> dict[str, float]:
        """Each order resting at the venue: its limit price, or a stop's trigger."""
        return {r.order.client_order_id: r.order.trigger_price if math.isnan(r.order.price) else r.order.price
                for r in emulator.open_orders()}

    async with emulator:
        protocol = MatchingProtocol(SPOT_SNAPSHOT, account=emulator, instrument_ids={"btcusdt": IID})
        async with LocalVenueServer(protocol, trade_frames(TRADE_TEMPLATE, [60_000.0] * 4), gate=gate, lifetime=300) as srv:
            try:
                first = LiveNode(config(enter=True), keys, handle_signals=False)
                first.kernel.bus.subscribe(OrderDenied, denied.append)

                def entered() -> bool:
                    if gate.allowed == 1 and emulator.orders:
                        gate.allowed = 2  # 60,000: fills the entry
                    elif gate.allowed == 2 and first.kernel.portfolio.position(IID) > 0.0:
                        gate.allowed = 3  # 60,000: arms the children
                    return len(resting()) == 2 or bool(denied)

                gate.allowed = 1  # 60,000: the entry, a market buy
                await _run_until(first, entered)
                assert denied == []
                stop, target = (o.client_order_id for o in first.kernel.orders.orders()[1:])
                legs = {target: 61_000.0, stop: 59_000.0}
                assert resting() == legs and emulator.lists[target][2] == (target, stop)  # left working by the stop
                sent = len(emulator.requests)
                if journaled_by != "this tradebus":
                    assert _unflag_oco_links(first.config.journal) == 1
                gate.allowed = 3  # the restarted daemon's trades wait for its start-up reconciliation
                second = LiveNode(config(enter=False, lower_to=60_500.0), keys, handle_signals=False)
                second.kernel.bus.subscribe(OrderDenied, denied.append)

                def modified() -> bool:
                    if not second.guard.holds and second.running.is_set():
                        gate.allowed = 4  # 60,000: the strategy lowers its take-profit
                    return bool(denied) or any(p.endswith("cancelReplace") for _, p, _ in emulator.requests[sent:])

                await _run_until(second, modified)
            finally:
                gate.allowed = 4
    assert [(d.client_order_id, "rests in one OCO order list with" in d.reason) for d in denied] == [(target, True)]
    assert [(m, p) for m, p, _ in emulator.requests[sent:] if m in ("POST", "DELETE")] == []
    assert resting() == legs and emulator.lists[target][2] == (target, stop)


@pytest.mark.parametrize("venue", ["bybit", "okx"])
async def test_a_trailing_bracket_on_a_venue_without_oco_lists_arms_two_orders_without_a_warning(venue: str) -> None:
    """Buy 0.002 at market (fills at 60,000), stop-loss trailing 500 (floor 59,000), take-profit 61,000, on the
    venue's account emulator: the exits go as two orders, as every bracket's do there, and both rest. It warned
    "its stop-loss and take-profit go as two orders, not one OCO order list: ...; a venue that locks the balance per
    order refuses the second", meant for Binance spot (the one venue with lists), though this venue has none."""
    from tests.live.test_live_cancel_busy import CALM, T0, Bracketing
    from tests.live.venue_kits import KITS, KitTape, kit_harness

    kit = KITS[venue]
    strategy = Bracketing(kit.iid)
    warnings: list[str] = []
    sink = logger.add(lambda m: warnings.append(m.record["message"]), level="WARNING")
    try:
        async with kit_harness(kit, strategies=[strategy], timeouts=CALM) as h:
            tape = KitTape(h, kit.iid, T0)
            entry_id = strategy.submit_bracket(kit.iid, OrderSide.BUY, 0.002, stop_loss=59_000.0,
                                               take_profit=61_000.0, trail_offset=500.0)
            assert entry_id is not None
            await until(lambda: h.kernel.orders.order(entry_id).status is OrderStatus.ACCEPTED)
            tape.trade(60_000.0)
            await until(lambda: h.kernel.orders.order(entry_id).status is OrderStatus.FILLED)
            tape.trade(60_000.0)  # arms the children
            children = lambda: [o for o in h.kernel.orders.orders() if o.client_order_id != entry_id]  # noqa: E731
            await until(lambda: len(children()) == 2 and all(o.status is OrderStatus.ACCEPTED for o in children()))
            await h.venue.drain()
    finally:
        logger.remove(sink)
    assert len(h.emulator.open_orders()) == 2
    assert [w for w in warnings if "OCO" in w] == []
