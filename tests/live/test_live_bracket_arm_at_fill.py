"""A live bracket's exits go to the venue when its entry's fill is known, not at the next public trade.

Against the OKX and Bybit account emulators (two orders, reduce-only where the venue has it) and the
Binance spot one (one OCO order list). After the trade that fills the entry, no public trade comes:
the stop-loss and take-profit must rest at the venue all the same. Before, they waited for the
instrument's next trade or quote (seconds in a quiet market, as long as a dropped stream is down),
the position at the venue unprotected meanwhile.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from loguru import logger

from tests.live.live_harness import IID, harness, until
from tests.live.test_live_resolved_contingent import T0, Contingent
from tests.live.venue_kits import KITS, KitHarness, KitTape, VenueKit, kit_harness
from tradebus.adapters.common.account_emulator import AccountEmulator
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import ContingentLinked, OrderDenied, OrderFilled, OrderRejected, OrderSide, OrderStatus, OrderType, Trade, TradingState
from tradebus.execution.contingent import ContingentOrders
from tradebus.execution.orders import Order
from tradebus.risk.gate import HALTED_REASON


def _exits(h: KitHarness, entry_id: str) -> list[Order]:
    return [o for o in h.kernel.orders.orders() if o.client_order_id != entry_id]


def _resting(h: KitHarness) -> list[tuple[str, float, float]]:
    """The orders open at the emulator: (client order id, quantity, price or trigger)."""
    return sorted((r.order.client_order_id, r.order.quantity, r.order.price if r.order.price == r.order.price
                   else r.order.trigger_price) for r in h.emulator.open_orders())


def _placed(emulator: AccountEmulator) -> list[str]:
    """The client order ids of the emulator's order placements (an OKX stop is an algo order): the first, then
    the others sorted (a bracket's two exits are sent at once, their requests race)."""
    placed = [c for m, p, c in emulator.requests if m == "POST" and p.rsplit("/", 1)[-1] in ("order", "order-algo", "create")]
    return placed[:1] + sorted(placed[1:])


def _links(journal: Path) -> int:
    """How many contingent links ``journal`` holds."""
    with closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True)) as db:
        return db.execute("SELECT count(*) FROM journal WHERE type = 'ContingentLinked'").fetchone()[0]


def _track(h: KitHarness) -> None:
    """Know the journal's open orders at the venue, as a restarted daemon's start-up does."""
    for order in h.kernel.orders.open_orders():
        h.venue.track(order)


async def _entered(h: KitHarness, strategy: Contingent, tape: KitTape, quantity: float, **kwargs: float) -> str:
    """A bracket (stop-loss 59,000, take-profit 61,000) whose entry is working at the venue; its id."""
    entry_id = strategy.submit_bracket(tape.iid, OrderSide.BUY, quantity, stop_loss=59_000.0, take_profit=61_000.0,
                                       **kwargs)
    assert entry_id is not None
    entry = h.kernel.orders.order(entry_id)
    await until(lambda: entry.status is OrderStatus.ACCEPTED)
    return entry_id


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_a_live_bracket_sends_its_exits_at_the_entrys_fill_with_no_trade_after_it(kit: VenueKit) -> None:
    """Buy 0.002 at market; the trade at 60,000 fills it, and no trade follows. Both exits (stop-loss 59,000,
    take-profit 61,000, 0.002 each) rest at the venue as one OCO group, sent once. Before, none was sent: the
    wait below ran out with the position at the venue and no exit."""
    strategy = Contingent(kit.iid)
    async with kit_harness(kit, strategies=[strategy]) as h:
        refused: list[OrderDenied | OrderRejected] = []
        h.kernel.bus.subscribe(OrderDenied, refused.append)
        h.kernel.bus.subscribe(OrderRejected, refused.append)
        tape = KitTape(h, kit.iid, T0)
        entry_id = await _entered(h, strategy, tape, 0.002)
        tape.trade(60_000.0)  # fills the entry; the last trade of the test but the take-profit's
        await until(lambda: len(h.emulator.open_orders()) == 2 or bool(refused))
        await h.venue.drain()
        assert refused == []
        stop, target = _exits(h, entry_id)
        assert _resting(h) == sorted([(stop.client_order_id, 0.002, 59_000.0), (target.client_order_id, 0.002, 61_000.0)])
        assert (stop.order_type, target.order_type) == (OrderType.STOP_MARKET, OrderType.LIMIT)
        assert h.kernel.portfolio.account.oco_groups()[stop.client_order_id] == (stop.client_order_id, target.client_order_id)
        assert _placed(h.emulator) == [entry_id, *sorted([stop.client_order_id, target.client_order_id])]
        tape.trade(61_100.0)  # fills the take-profit; the OCO cancels the stop
        await until(lambda: target.status is OrderStatus.FILLED and stop.status is OrderStatus.CANCELED)
        assert h.emulator.open_orders() == []


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_a_live_bracket_entry_filled_in_parts_sends_its_exits_at_the_last_fill(kit: VenueKit) -> None:
    """Buy 0.003 at 60,000 (a limit); three trades of 0.001 fill it in parts. The exits wait while the entry
    works (a bracket arms once its entry closed) and go at the fill that completes it, for 0.003, with no
    trade after it. Before, the third fill left them unsent until a next trade."""
    strategy = Contingent(kit.iid)
    async with kit_harness(kit, strategies=[strategy], trade_size_limit=True) as h:
        tape = KitTape(h, kit.iid, T0, size=0.001)
        entry_id = await _entered(h, strategy, tape, 0.003, entry_price=60_000.0)
        entry = h.kernel.orders.order(entry_id)
        for n, price in enumerate((59_990.0, 59_995.0), 1):
            tape.trade(price)
            await until(lambda n=n: entry.filled_qty == pytest.approx(0.001 * n))  # type: ignore[misc]
            assert _exits(h, entry_id) == []
        tape.trade(59_998.0)
        await until(lambda: len(h.emulator.open_orders()) == 2)
        await h.venue.drain()
        stop, target = _exits(h, entry_id)
        assert _resting(h) == sorted([(stop.client_order_id, 0.003, 59_000.0), (target.client_order_id, 0.003, 61_000.0)])


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_a_live_bracket_entry_canceled_partly_filled_sends_its_exits_for_the_filled_part_at_the_cancel(
    kit: VenueKit,
) -> None:
    """Buy 0.003 at 60,000; two trades of 0.001 fill 0.002, then the entry is canceled. The exits go for the
    0.002 at the cancel, with no trade after it. Before, they waited for a next trade."""
    strategy = Contingent(kit.iid)
    async with kit_harness(kit, strategies=[strategy], trade_size_limit=True) as h:
        tape = KitTape(h, kit.iid, T0, size=0.001)
        entry_id = await _entered(h, strategy, tape, 0.003, entry_price=60_000.0)
        entry = h.kernel.orders.order(entry_id)
        tape.trade(59_990.0)
        tape.trade(59_995.0)
        await until(lambda: entry.filled_qty == pytest.approx(0.002))
        strategy.cancel(entry_id)
        await until(lambda: len(h.emulator.open_orders()) == 2)
        await h.venue.drain()
        assert entry.status is OrderStatus.CANCELED
        stop, target = _exits(h, entry_id)
        assert _resting(h) == sorted([(stop.client_order_id, 0.002, 59_000.0), (target.client_order_id, 0.002, 61_000.0)])


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_a_live_bracket_whose_entry_filled_while_the_daemon_was_down_is_armed_once_at_the_booked_fill(
    kit: VenueKit, tmp_path: Path,
) -> None:
    """Buy 0.002 at 60,000 (a limit), journaled; the daemon stops with it working. A trade fills it at the venue
    while the daemon is down. Restarted on the journal, the daemon's query books the fill: the exits go then, with
    no trade after it, once. A third start on the journal finds them working and sends nothing (the journaled
    ``children`` link): the venue holds two exits, not four. Before, the second start sent none."""
    journal = tmp_path / "journal.sqlite"
    emulator = kit.emulator()
    await emulator.start()
    try:
        strategy = Contingent(kit.iid)
        async with kit_harness(kit, journal=journal, strategies=[strategy], emulator=emulator) as h:
            tape = KitTape(h, kit.iid, T0)
            entry_id = await _entered(h, strategy, tape, 0.002, entry_price=60_000.0)
            await h.venue.drain()
        emulator.on_trade(Trade(kit.iid, T0 + 10**9, T0 + 10**9, 60_000.0, 1.0, 1, "while down"))  # the venue alone
        assert emulator.orders[entry_id].status is OrderStatus.FILLED
        strategy = Contingent(kit.iid)
        async with kit_harness(kit, journal=journal, strategies=[strategy], emulator=emulator) as h:
            entry = h.kernel.orders.order(entry_id)
            assert entry.is_open  # as the journal left it (UNKNOWN: to be asked)
            _track(h)
            h.kernel.execution.reconcile_order(entry_id)  # asks the venue; its answer books the fill
            await until(lambda: len(emulator.open_orders()) == 2)
            await h.venue.drain()
            assert entry.status is OrderStatus.FILLED
            stop, target = _exits(h, entry_id)
            resting = _resting(h)
            assert resting == sorted([(stop.client_order_id, 0.002, 59_000.0), (target.client_order_id, 0.002, 61_000.0)])
        strategy = Contingent(kit.iid)
        async with kit_harness(kit, journal=journal, strategies=[strategy], emulator=emulator) as h:
            _track(h)
            tape = KitTape(h, kit.iid, T0 + 2 * 10**9)
            tape.trade(60_000.0)  # a market event: a bracket left to arm would arm here
            await h.venue.drain()
            assert _resting(h) == resting
            assert _placed(emulator) == [entry_id, *sorted([stop.client_order_id, target.client_order_id])]
            tape.trade(58_900.0)  # triggers the stop; the OCO cancels the take-profit
            await until(lambda: emulator.open_orders() == [])
            await until(lambda: h.kernel.orders.order(target.client_order_id).status is OrderStatus.CANCELED)
            assert h.kernel.orders.order(stop.client_order_id).status is OrderStatus.FILLED
    finally:
        await emulator.stop()


async def test_a_live_binance_spot_bracket_sends_its_oco_list_at_the_entrys_fill_with_no_trade_after_it() -> None:
    """Binance spot: buy 0.01 at market, filled by the trade at 60,000, no trade after it. The stop-loss 59,000
    and the take-profit 61,000 rest as one OCO order list (``POST /api/v3/orderList/oco``). Before, nothing was
    sent until a next trade."""
    async with harness() as h:
        contingent = ContingentOrders(h.kernel)
        entry = contingent.bracket("s1", IID, OrderSide.BUY, 0.01, stop_loss=59_000.0, take_profit=61_000.0)
        assert entry is not None
        await until(lambda: h.kernel.orders.order(entry).status is OrderStatus.ACCEPTED)
        h.trade(60_000.0)  # fills the entry, the last trade
        await until(lambda: len(h.emulator.open_orders()) == 2)
        await h.venue.drain()
        stop, target = h.kernel.orders.orders()[1:]
        assert [p for m, p, _ in h.emulator.requests if m == "POST"] == ["/api/v3/order", "/api/v3/orderList/oco"]
        assert h.emulator.lists[target.client_order_id][2] == (target.client_order_id, stop.client_order_id)
        assert (stop.trigger_price, target.price, stop.quantity, target.quantity) == (59_000.0, 61_000.0, 0.01, 0.01)


@pytest.mark.parametrize("halted_trades", [0, 1, 20], ids=["active_at_the_next_trade", "halted_at_the_next_trade",
                                                         "halted_over_20_trades"])
@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_live_bracket_exits_denied_at_the_fill_are_sent_at_the_next_trade(
    kit: VenueKit, halted_trades: int, tmp_path: Path,
) -> None:
    """Buy 0.002 at market; trading is HALTED when the trade at 60,000 fills it: the risk gate denies both exits
    at the fill. Trading ACTIVE again, the next trade (60,030) sends exactly them, as it would have before arming at
    the fill. Without the fall-back, the denied exits were the bracket's last: the position stayed without any.
    ``halted_trades``: trades that come while trading is still HALTED; they create no order, deny nothing and
    journal no link (the gate is asked first), and the trade after ACTIVE sends the exits all the same. Before
    c598f9ee the exits denied at such a trade were the bracket's last; before the gate was asked first, each such
    trade created two exits more and denied them (over 20 trades, 40 more orders and denials, a "children" link and
    a WARNING each)."""
    journal = tmp_path / "journal.sqlite"
    strategy = Contingent(kit.iid)
    waits: list[str] = []
    handle = logger.add(lambda m: waits.append(m.record["message"]) if "stay unsent while" in m.record["message"]
                        else None, level="WARNING")
    try:
        async with kit_harness(kit, strategies=[strategy], journal=journal) as h:
            denied: list[OrderDenied] = []
            h.kernel.bus.subscribe(OrderDenied, denied.append)
            tape = KitTape(h, kit.iid, T0)
            entry_id = await _entered(h, strategy, tape, 0.002)
            h.kernel.risk.set_state(TradingState.HALTED, "test: halted at the fill")
            tape.trade(60_000.0)
            await until(lambda: len(denied) == 2)
            links = _links(journal)
            for n in range(halted_trades):
                tape.trade(60_001.0 + n)
            await h.venue.drain()
            assert h.kernel.orders.order(entry_id).status is OrderStatus.FILLED
            assert [d.reason.split(":")[0] for d in denied] == ["trading_state"] * 2
            assert len(h.kernel.orders.orders()) == 3
            assert _links(journal) == links
            assert h.emulator.open_orders() == []
            # the user is told once that the exits wait, and why (not once per trade)
            assert [w.split("(")[1].split(")")[0] for w in waits] == [HALTED_REASON] * min(halted_trades, 1)
            assert all(w.startswith(f"bracket {entry_id}: ") for w in waits)
            h.kernel.risk.set_state(TradingState.ACTIVE, "test: active again")
            tape.trade(60_030.0)
            await until(lambda: len(h.emulator.open_orders()) == 2)
            await h.venue.drain()
            assert len(denied) == 2
            assert len(h.kernel.orders.orders()) == 5
            sent = [o for o in _exits(h, entry_id) if o.status is not OrderStatus.DENIED]
            assert sorted((o.quantity, o.order_type) for o in sent) == [(0.002, OrderType.LIMIT), (0.002, OrderType.STOP_MARKET)]
            assert all(o.status is OrderStatus.ACCEPTED for o in sent)
            assert _placed(h.emulator) == [entry_id, *sorted(o.client_order_id for o in sent)]
    finally:
        logger.remove(handle)


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_a_live_bracket_exit_denied_at_the_fill_beside_one_sent_is_sent_at_the_next_trade(kit: VenueKit) -> None:
    """``max_orders_per_window: 2`` (10 min): buy 0.002 at market (one order), filled by the trade at 60,000; at the
    fill the stop-loss passes (two) and the take-profit is denied by the order rate. The stop rests alone. A trade
    inside the window (60,005) denies the take-profit again; once the window has passed, the next trade (60,010)
    sends it (0.002 at 61,000), linked with the stop in one OCO group, and its fill at 61,100 cancels the stop.
    Before, the fall-back covered only exits all denied: the
    take-profit was never sent again, the position kept its stop alone (the entry and the fill come milliseconds
    apart, so a rate that an arming at a later trade would pass denies it at the fill). The window is 10 min, which
    no stall passes; the trade after it comes with the kernel's clock pinned past it."""
    from tradebus.risk.config import RiskConfig

    window = 600_000_000_000
    strategy = Contingent(kit.iid)
    risk = RiskConfig(max_orders_per_window=2, order_rate_window_ns=window)
    async with kit_harness(kit, strategies=[strategy], risk_config=risk) as h:
        denied: list[OrderDenied] = []
        h.kernel.bus.subscribe(OrderDenied, denied.append)
        tape = KitTape(h, kit.iid, T0)
        passed = h.kernel.clock.now_ns()
        entry_id = await _entered(h, strategy, tape, 0.002)
        tape.trade(60_000.0)  # fills the entry
        await until(lambda: len(denied) == 1 and len(h.emulator.open_orders()) == 1)
        await h.venue.drain()
        assert h.kernel.clock.now_ns() - passed < window, "the rate window passed: the test proves nothing"
        stop, target = _exits(h, entry_id)
        assert denied[0].client_order_id == target.client_order_id
        assert denied[0].reason.startswith("max_order_rate:")
        assert _resting(h) == [(stop.client_order_id, 0.002, 59_000.0)]
        tape.trade(60_005.0)  # inside the window: the gate, asked first, would deny it again; nothing is created
        assert len(denied) == 1 and len(h.kernel.orders.orders()) == 3
        await h.venue.drain()
        assert _resting(h) == [(stop.client_order_id, 0.002, 59_000.0)]
        with h.kernel.clock.pinned(passed + window + 100_000_000):
            tape.trade(60_010.0)  # the window has passed: the take-profit goes
        await until(lambda: len(h.emulator.open_orders()) == 2)
        await h.venue.drain()
        again = [o for o in _exits(h, entry_id) if o.status is not OrderStatus.DENIED and o is not stop]
        assert [(o.order_type, o.side, o.quantity, o.price) for o in again] == [(OrderType.LIMIT, OrderSide.SELL, 0.002, 61_000.0)]
        (target,) = again
        assert _resting(h) == sorted([(stop.client_order_id, 0.002, 59_000.0), (target.client_order_id, 0.002, 61_000.0)])
        assert h.kernel.portfolio.account.oco_groups()[stop.client_order_id] == (stop.client_order_id, target.client_order_id)
        assert len(denied) == 1
        tape.trade(61_100.0)  # fills the take-profit; the OCO cancels the stop
        await until(lambda: target.status is OrderStatus.FILLED and stop.status is OrderStatus.CANCELED)
        assert h.emulator.open_orders() == []


async def test_a_live_binance_spot_bracket_whose_buy_paid_its_fee_in_btc_sends_its_oco_list_for_the_btc_held() -> None:
    """Binance spot, 0.1 % taker fee taken from the coins bought: buy 0.01 at market, filled by the trade at 60,000,
    no trade after it. The venue keeps 0.6 USDT / 60,000 = 0.00001 BTC of fee and credits 0.00999: the OCO order
    list sent at the fill sells 0.00999 (stop-loss 59,000, take-profit 61,000), which the venue takes, not the 0.01
    bought, which it would refuse for want of balance."""
    inst = Instrument("BINANCE", "BTCUSDT", base="BTC", quote="USDT", tick_size=0.01, lot_size=1e-5, margin=False,
                      taker_fee=0.001)
    async with harness(inst=inst) as h:
        h.emulator.fee_in_received = True
        rejected: list[OrderDenied | OrderRejected] = []
        h.kernel.bus.subscribe(OrderDenied, rejected.append)
        h.kernel.bus.subscribe(OrderRejected, rejected.append)
        contingent = ContingentOrders(h.kernel)
        entry = contingent.bracket("s1", IID, OrderSide.BUY, 0.01, stop_loss=59_000.0, take_profit=61_000.0)
        assert entry is not None
        await until(lambda: h.kernel.orders.order(entry).status is OrderStatus.ACCEPTED)
        h.trade(60_000.0)  # fills the entry, the last trade
        await until(lambda: len(h.emulator.open_orders()) == 2 or bool(rejected))
        await h.venue.drain()
        assert rejected == []
        assert h.emulator.balances["BTC"] == pytest.approx(0.00999, abs=1e-12)
        stop, target = h.kernel.orders.orders()[1:]
        assert (stop.quantity, target.quantity) == (pytest.approx(0.00999, abs=1e-12), pytest.approx(0.00999, abs=1e-12))
        resting = {r.order.client_order_id: (r.order.quantity, r.order.price, r.order.trigger_price)
                   for r in h.emulator.open_orders()}
        assert resting[stop.client_order_id][::2] == (pytest.approx(0.00999, abs=1e-12), 59_000.0)
        assert resting[target.client_order_id][:2] == (pytest.approx(0.00999, abs=1e-12), 61_000.0)


@pytest.mark.parametrize("killed_in_resend", [False, True], ids=["stopped", "killed-in-resend"])
@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_a_live_bracket_exit_denied_at_the_fill_is_sent_after_a_restart_before_its_resend(
    kit: VenueKit, tmp_path: Path, killed_in_resend: bool,
) -> None:
    """``max_orders_per_window: 2``: buy 0.002 at market, filled by the trade at 60,000; the stop-loss (59,000) rests,
    the take-profit is denied by the order rate. The daemon stops before any trade sends it again
    (``killed_in_resend``: it is killed in the resend, the journal holding the ``"children"`` link that names the new
    take-profit, committed first, and no order of that id). Restarted on the journal (no rate limit now), the next
    trade (60,010) sends the take-profit (0.002 at 61,000) in one OCO group with the stop, and its fill at 61,100
    cancels the stop. Before, the restored bracket took the working stop for its exits and never sent the
    take-profit: the venue kept the stop alone."""
    from tradebus.risk.config import RiskConfig

    journal = tmp_path / "journal.sqlite"
    emulator = kit.emulator()
    await emulator.start()
    try:
        strategy = Contingent(kit.iid)
        risk = RiskConfig(max_orders_per_window=2, order_rate_window_ns=600_000_000_000)
        async with kit_harness(kit, journal=journal, strategies=[strategy], emulator=emulator, risk_config=risk) as h:
            denied: list[OrderDenied] = []
            h.kernel.bus.subscribe(OrderDenied, denied.append)
            tape = KitTape(h, kit.iid, T0)
            entry_id = await _entered(h, strategy, tape, 0.002)
            tape.trade(60_000.0)  # fills the entry
            await until(lambda: len(denied) == 1 and len(emulator.open_orders()) == 1)
            await h.venue.drain()
            stop, _ = _exits(h, entry_id)
            stop_id = stop.client_order_id
            if killed_in_resend:  # what ContingentOrders._send_denied_again commits before it submits
                now = h.kernel.clock.now_ns()
                new_id = h.kernel.orders.next_client_order_id(strategy.strategy_id)
                h.kernel.execution.journal_links(
                    ContingentLinked(strategy.strategy_id, kit.iid, entry_id, "children", (stop_id, new_id), {}, now, now)
                )
        assert [r.order.client_order_id for r in emulator.open_orders()] == [stop_id]
        strategy = Contingent(kit.iid)
        async with kit_harness(kit, journal=journal, strategies=[strategy], emulator=emulator) as h:
            _track(h)
            tape = KitTape(h, kit.iid, T0 + 2 * 10**9)
            tape.trade(60_010.0)
            await until(lambda: len(emulator.open_orders()) == 2)
            await h.venue.drain()
            stop = h.kernel.orders.order(stop_id)
            sent = [o for o in _exits(h, entry_id) if o.status is not OrderStatus.DENIED and o is not stop]
            assert [(o.order_type, o.side, o.quantity, o.price) for o in sent] == [(OrderType.LIMIT, OrderSide.SELL, 0.002, 61_000.0)]
            (target,) = sent
            assert _resting(h) == sorted([(stop_id, 0.002, 59_000.0), (target.client_order_id, 0.002, 61_000.0)])
            assert h.kernel.portfolio.account.oco_groups()[stop_id] == (stop_id, target.client_order_id)
            tape.trade(61_100.0)  # fills the take-profit; the OCO cancels the stop
            await until(lambda: target.status is OrderStatus.FILLED and stop.status is OrderStatus.CANCELED)
            assert emulator.open_orders() == []
    finally:
        await emulator.stop()


class _CancelsAtFill(Contingent):
    """Cancels its working orders of the instrument in ``on_order_filled`` (a common way to drop other entries)."""

    def __init__(self, instrument_id: str) -> None:
        super().__init__(instrument_id)
        self.open_at_fill: list[list[str]] = []

    def on_order_filled(self, event: OrderFilled) -> None:
        self.open_at_fill.append([o.client_order_id for o in self.ctx.orders.open_orders(event.instrument_id)])
        self.cancel_all(event.instrument_id)


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_a_live_brackets_exits_are_working_when_the_strategy_hears_of_its_entrys_fill(kit: VenueKit) -> None:
    """Pins the hook order a live venue has (README, Strategy API): buy 0.002 at market with stop-loss 59,000 and
    take-profit 61,000, filled by the trade at 60,000. The exits are sent at the fill, before the strategy's
    ``on_order_filled`` for the entry runs: there they are the strategy's open orders, and its ``cancel_all`` cancels
    them, leaving the position without exits. (A backtest or paper run arms them at the end of the market event
    that filled the entry, after that hook: the same ``cancel_all`` finds nothing to cancel.)"""
    strategy = _CancelsAtFill(kit.iid)
    async with kit_harness(kit, strategies=[strategy]) as h:
        tape = KitTape(h, kit.iid, T0)
        entry_id = await _entered(h, strategy, tape, 0.002)
        tape.trade(60_000.0)
        await until(lambda: len(strategy.open_at_fill) == 1)
        stop, target = _exits(h, entry_id)
        assert sorted(strategy.open_at_fill[0]) == sorted([stop.client_order_id, target.client_order_id])
        await until(lambda: stop.status is OrderStatus.CANCELED and target.status is OrderStatus.CANCELED)
        await h.venue.drain()
        assert h.emulator.open_orders() == []
