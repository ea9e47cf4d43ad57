"""A live bracket whose resting limit entry fills in parts: its exits protect each part as it fills.

Against the local OKX swap account emulator (reduce-only exits; quantities in contracts of 0.01 BTC; its stops
amended in place), the Binance USD-M one (BTC; its stops are algo orders, cancel-replaced) and the Bybit linear
one (BTC; amended in place, ``/v5/order/amend``), each public trade
filling at most its own size (one unit, ``Perp.unit``). The exits are read at the emulator, the venue's own
account, never from the daemon's view of itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.live.live_harness import until
from tests.live.node_testdata import BYBIT_IID, BYBIT_INSTRUMENT
from tests.live.test_live_okx_swap import OKX_SWAP
from tests.live.test_live_resolved_contingent import T0, Contingent
from tests.live.test_live_usdm_stops import USDM
from tests.live.venue_kits import KitHarness, KitTape, VenueKit, kit_harness
from tradebus.adapters.bybit.private_emulator import BybitLinearEmulator
from tradebus.engine.messages import OrderDenied, OrderSide, OrderStatus, OrderType
from tradebus.risk.config import RiskConfig

IID = OKX_SWAP.iid
STOP, TARGET = 59_000.0, 61_000.0


@dataclass(frozen=True)
class Perp:
    """A perpetual kit, its venue symbol and the quantity each public trade fills at most."""

    kit: VenueKit
    symbol: str
    unit: float


BYBIT_LINEAR = VenueKit(
    venue="bybit", iid=BYBIT_IID, instrument=BYBIT_INSTRUMENT, frames=[], channels=["publicTrade"], base="BTC",
    make_emulator=BybitLinearEmulator, make_protocol=lambda frames, account: None,  # type: ignore[arg-type,return-value]
    env={}, place_path="/v5/order/create", fill_frame='"topic": "execution"', market="perpetual", feed_market="linear",
)
PERPS = {
    "okx-swap": Perp(OKX_SWAP, "BTC-USDT-SWAP", 1.0),
    "binance-usdm": Perp(USDM, "BTCUSDT", 0.001),
    "bybit-linear": Perp(BYBIT_LINEAR, "BTCUSDT", 0.001),
}


def _resting(h: KitHarness) -> list[tuple[OrderType, float, float, bool]]:
    """The exits open at the emulator: (type, quantity, price or trigger, reduce-only), sorted."""
    return sorted(
        (r.order.order_type, r.order.quantity, r.order.price if r.order.order_type is OrderType.LIMIT
         else r.order.trigger_price, r.order.reduce_only)
        for r in h.emulator.open_orders() if r.order.side is OrderSide.SELL
    )


def _exits_for(qty: float) -> list[tuple[OrderType, float, float, bool]]:
    return [(OrderType.LIMIT, qty, TARGET, True), (OrderType.STOP_MARKET, qty, STOP, True)]


async def _entry(h: KitHarness, strategy: Contingent, quantity: float, iid: str = IID) -> str:
    """A bracket's limit entry (buy ``quantity`` at 60,000; stop-loss 59,000, take-profit 61,000) resting at the
    venue; its id."""
    entry_id = strategy.submit_bracket(iid, OrderSide.BUY, quantity, entry_price=60_000.0, stop_loss=STOP,
                                       take_profit=TARGET)
    assert entry_id is not None
    await until(lambda: h.kernel.orders.order(entry_id).status is OrderStatus.ACCEPTED)
    return entry_id


async def _filled_to(h: KitHarness, tape: KitTape, entry_id: str, price: float, filled: float) -> None:
    """A trade at ``price`` fills the entry to ``filled``; the exits at the venue are for that much."""
    tape.trade(price)
    await until(lambda: h.kernel.orders.order(entry_id).filled_qty == pytest.approx(filled))
    await until(lambda: _resting(h) == _exits_for(filled))
    await h.venue.drain()


@asynccontextmanager
async def _one_unit_filled(
    perp: Perp, risk: RiskConfig | None = None, strategy: Contingent | None = None
) -> AsyncIterator[tuple[KitHarness, KitTape, str]]:
    """A bracket's entry of 3 units resting on ``perp``'s emulator (submitted by ``strategy``, default a new one),
    1 unit filled and its exits of 1 resting: the harness, its tape and the entry's id."""
    strategy = strategy or Contingent(perp.kit.iid)
    async with kit_harness(perp.kit, strategies=[strategy], trade_size_limit=True, risk_config=risk) as h:
        tape = KitTape(h, perp.kit.iid, T0, size=perp.unit)
        entry_id = await _entry(h, strategy, 3 * perp.unit, perp.kit.iid)
        await _filled_to(h, tape, entry_id, 59_990.0, perp.unit)
        yield h, tape, entry_id


@pytest.mark.parametrize("perp", list(PERPS.values()), ids=list(PERPS))
async def test_a_partly_filled_entry_has_exits_for_its_filled_part_grown_as_it_fills(perp: Perp) -> None:
    """Buy 3 units at 60,000; trades of 1 unit fill 1, then 2, then 3. At the first fill the venue holds a
    reduce-only stop-loss and take-profit of 1 unit while the entry rests for 2; they grow to 2, then 3 (amended,
    or cancel-replaced: the bracket follows the replacements), in one OCO group throughout; nothing is denied.
    Before, no exit rested until the entry completed: the first wait below ran out with 1 unit held and no exit."""
    unit = perp.unit
    async with _one_unit_filled(perp) as (h, tape, entry_id):
        assert h.kernel.orders.order(entry_id).status is OrderStatus.PARTIALLY_FILLED
        exits = [o.client_order_id for o in h.kernel.orders.open_orders() if o.client_order_id != entry_id]
        assert h.kernel.portfolio.account.oco_groups()[exits[0]] == tuple(exits)
        await _filled_to(h, tape, entry_id, 59_995.0, 2 * unit)
        await _filled_to(h, tape, entry_id, 59_998.0, 3 * unit)
        assert h.kernel.orders.order(entry_id).status is OrderStatus.FILLED
        assert [o.status for o in h.kernel.orders.orders() if o.status in (OrderStatus.DENIED, OrderStatus.REJECTED)] == []
        exits = [o.client_order_id for o in h.kernel.orders.open_orders()]
        assert len(exits) == 2 and h.kernel.portfolio.account.oco_groups()[exits[0]] == tuple(exits)
        assert h.emulator.position(perp.symbol) == pytest.approx(3 * unit)
        tape.size = 3 * unit
        tape.trade(58_900.0)  # the stop-loss sells the 3; the OCO cancels the take-profit
        await until(lambda: h.emulator.open_orders() == [])
        await until(lambda: h.emulator.position(perp.symbol) == pytest.approx(0.0, abs=1e-12))


async def test_a_partly_filled_entry_protected_before_a_restart_grows_its_exits_after_it(tmp_path: Path) -> None:
    """Buy 3 contracts at 60,000, journaled; a trade fills 1 and the exits of 1 rest; the daemon stops. Restarted on
    the journal, it knows them as the bracket's: the next trade fills 2 and they grow to 2 -- no second pair. Before
    the journal's partial protection was taken back, the restart forgot the exits and the entry's completion would
    arm a second pair."""
    journal = tmp_path / "journal.sqlite"
    emulator = OKX_SWAP.emulator(trade_size_limit=True)
    await emulator.start()
    try:
        strategy = Contingent(IID)
        async with kit_harness(OKX_SWAP, journal=journal, strategies=[strategy], emulator=emulator) as h:
            tape = KitTape(h, IID, T0)
            entry_id = await _entry(h, strategy, 3.0)
            await _filled_to(h, tape, entry_id, 59_990.0, 1.0)
            first = {r.order.client_order_id for r in emulator.open_orders()}
        strategy = Contingent(IID)
        async with kit_harness(OKX_SWAP, journal=journal, strategies=[strategy], emulator=emulator) as h:
            for order in h.kernel.orders.open_orders():  # as a restarted daemon's start-up does
                h.venue.track(order)
            tape = KitTape(h, IID, T0 + 10**9)
            await _filled_to(h, tape, entry_id, 59_995.0, 2.0)
            assert {r.order.client_order_id for r in emulator.open_orders()} == first
            await _filled_to(h, tape, entry_id, 59_998.0, 3.0)
            assert {r.order.client_order_id for r in emulator.open_orders()} == first - {entry_id}
    finally:
        await emulator.stop()


@pytest.mark.parametrize("perp", list(PERPS.values()), ids=list(PERPS))
async def test_an_exit_filling_while_the_entry_rests_cancels_the_entrys_rest(perp: Perp) -> None:
    """Buy 3 units at 60,000; a trade fills 1 and the exits of 1 rest. The price runs to 61,100: the take-profit
    sells the 1 while the entry still rests for 2. The bracket's trade is over: the OCO cancels the stop-loss and
    the entry's rest is canceled, so no later fill opens a position without exits; the venue holds nothing, flat."""
    unit = perp.unit
    async with _one_unit_filled(perp) as (h, tape, entry_id):
        tape.trade(61_100.0)
        await until(lambda: h.emulator.open_orders() == [])
        entry = h.kernel.orders.order(entry_id)
        await until(lambda: entry.status is OrderStatus.CANCELED)
        assert entry.filled_qty == pytest.approx(unit)
        assert h.emulator.position(perp.symbol) == pytest.approx(0.0, abs=1e-12)
        tape.trade(59_900.0)  # would have filled the entry's rest
        await h.venue.drain()
        assert h.emulator.position(perp.symbol) == pytest.approx(0.0, abs=1e-12)
        assert len(h.kernel.orders.orders()) == 3


async def test_an_entry_canceled_with_nothing_filled_sends_no_exit() -> None:
    """Buy 3 contracts at 60,000, canceled before any fill: no exit is ever placed."""
    strategy = Contingent(IID)
    async with kit_harness(OKX_SWAP, strategies=[strategy], trade_size_limit=True) as h:
        entry_id = await _entry(h, strategy, 3.0)
        strategy.cancel(entry_id)
        await until(lambda: h.kernel.orders.order(entry_id).status is OrderStatus.CANCELED)
        await h.venue.drain()
        assert [o.client_order_id for o in h.kernel.orders.orders()] == [entry_id]
        assert h.emulator.open_orders() == []


async def test_a_growth_the_order_rate_would_deny_waits_for_the_window() -> None:
    """``max_orders_per_window: 3`` in 2 s: the entry and its two exits of 1 contract fill the window, so the
    growth to 2 at the second fill would be denied (``max_order_rate``): it waits, nothing sent or denied. Trades at
    60,500 (filling nothing) follow until the exits are at 2 at the venue: those inside the window send nothing (the
    gate is asked first, before each exit's growth: the window frees one order at a time), later ones grow both.
    Before the growth was held and sent again, both were denied at the fill and the exits stayed at 1 with 2 held."""
    perp = PERPS["okx-swap"]
    risk = RiskConfig(max_orders_per_window=3, order_rate_window_ns=2_000_000_000)
    async with _one_unit_filled(perp, risk) as (h, tape, entry_id):
        denied: list[OrderDenied] = []
        h.kernel.bus.subscribe(OrderDenied, denied.append)
        tape.trade(59_995.0)
        await until(lambda: h.kernel.orders.order(entry_id).filled_qty == pytest.approx(2.0))
        await h.venue.drain()
        assert denied == []
        assert _resting(h) == _exits_for(1.0)
        loop = asyncio.get_running_loop()
        end = loop.time() + 30.0
        while _resting(h) != _exits_for(2.0):
            assert loop.time() < end, f"exits not grown to 2 within 30 s: {_resting(h)}"
            tape.trade(60_500.0)
            await h.venue.drain()
            await asyncio.sleep(0.1)
        assert denied == []
        assert len(h.kernel.orders.orders()) == 3


@pytest.mark.parametrize("perp", list(PERPS.values()), ids=list(PERPS))
async def test_an_entry_canceled_after_a_part_filled_keeps_its_exits_for_that_part(perp: Perp) -> None:
    """Buy 3 units at 60,000; trades fill 1, then 2, and the exits grow to 2; the strategy cancels the entry's rest.
    The exits stay as they are, for the 2 held (no second pair, no growth to 3); a trade at 58,900 sells the 2 with
    the stop-loss and the OCO cancels the take-profit: flat, nothing open."""
    unit, strategy = perp.unit, Contingent(perp.kit.iid)
    async with _one_unit_filled(perp, strategy=strategy) as (h, tape, entry_id):
        await _filled_to(h, tape, entry_id, 59_995.0, 2 * unit)
        strategy.cancel(entry_id)
        entry = h.kernel.orders.order(entry_id)
        await until(lambda: entry.status is OrderStatus.CANCELED)
        await h.venue.drain()
        tape.trade(60_500.0)  # a market event: a growth still due would go here
        await h.venue.drain()
        assert _resting(h) == _exits_for(2 * unit)
        assert len(h.kernel.orders.open_orders()) == 2
        assert h.emulator.position(perp.symbol) == pytest.approx(2 * unit)
        tape.size = 2 * unit
        tape.trade(58_900.0)
        await until(lambda: h.emulator.open_orders() == [])
        await until(lambda: h.emulator.position(perp.symbol) == pytest.approx(0.0, abs=1e-12))
        await until(lambda: h.kernel.orders.open_orders() == [])


@pytest.mark.parametrize("exits_first", [False, True], ids=["cancel_all", "exits-then-entry"])
@pytest.mark.parametrize("perp", list(PERPS.values()), ids=list(PERPS))
async def test_the_strategy_canceling_all_while_the_entry_rests_partly_filled_leaves_nothing(perp: Perp, exits_first: bool) -> None:
    """Buy 3 units at 60,000; a trade fills 1 and the exits of 1 rest; the strategy cancels its orders: with
    ``cancel_all`` (the entry's cancel answered first), or the two exits and, once they are canceled, the entry (as
    ``cancel_all`` ends when the venue answers the exits' cancels first). Either way nothing rests after, no order
    is sent: the 1 unit is the strategy's to close, as after it cancels an armed bracket's exits. Before, the entry
    canceled after its exits armed a new pair of 1 (5 orders, 2 resting) -- the outcome of ``cancel_all`` hung on the
    order the venue answered its cancels in."""
    unit, strategy = perp.unit, Contingent(perp.kit.iid)
    async with _one_unit_filled(perp, strategy=strategy) as (h, tape, entry_id):
        if exits_first:
            exits = [o for o in h.kernel.orders.open_orders() if o.client_order_id != entry_id]
            for order in exits:
                strategy.cancel(order.client_order_id)
            await until(lambda: all(o.status is OrderStatus.CANCELED for o in exits))
            await h.venue.drain()
            strategy.cancel(entry_id)
        else:
            assert strategy.cancel_all() == 3
        await until(lambda: h.kernel.orders.order(entry_id).status is OrderStatus.CANCELED)
        await h.venue.drain()
        tape.trade(60_500.0)  # a market event: exits armed again would go here
        await h.venue.drain()
        assert (_resting(h), len(h.kernel.orders.orders())) == ([], 3)
        assert h.kernel.orders.open_orders() == []
        assert h.emulator.position(perp.symbol) == pytest.approx(unit)



async def test_a_restart_inside_a_usdm_take_profits_cancel_replace_growth(tmp_path: Path) -> None:
    """Binance USD-M, journaled: buy 0.003 at 60,000; a trade fills 0.001 and the exits of 0.001 rest; the next fills
    0.002 and the take-profit's growth cancel-replaces it: it is canceled, its replacement's place held by the venue,
    unanswered, as the daemon stops. The venue then places it. Restarted on the journal (its start-up reconciliation),
    the daemon knows the replacement as the bracket's take-profit: the last 0.001 grows both exits to 0.003, no
    second pair; the stop-loss sells the 0.003 and nothing is left."""
    from tradebus.adapters.common.account_emulator import RestFault
    from tradebus.node.reconcile import Reconciler

    unit, journal = 0.001, tmp_path / "journal.sqlite"
    release = asyncio.Event()
    held = RestFault("hold", "POST", "/fapi/v1/order", at=2, release=release)  # the entry, the take-profit, its replacement
    emu = USDM.emulator([held], trade_size_limit=True)
    await emu.start()
    kit = VenueKit(**{**USDM.__dict__, "make_emulator": lambda *a, **k: emu})
    try:
        strategy = Contingent(USDM.iid)
        async with kit_harness(kit, journal=journal, strategies=[strategy], emulator=emu) as h:
            tape = KitTape(h, USDM.iid, T0, size=unit)
            entry_id = await _entry(h, strategy, 3 * unit, USDM.iid)
            await _filled_to(h, tape, entry_id, 59_990.0, unit)
            tape.trade(59_995.0)
            await until(lambda: held.fired)
            unanswered = [o.client_order_id for o in h.kernel.orders.orders() if o.status is OrderStatus.SUBMITTED]
            assert len(unanswered) == 1  # the take-profit's replacement
        release.set()
        await until(lambda: len(_resting_at(emu)) == 2)
        assert sorted((r.order.order_type, r.order.quantity) for r in _resting_at(emu)) == [
            (OrderType.LIMIT, 2 * unit), (OrderType.STOP_MARKET, 2 * unit)
        ]
        assert unanswered[0] in {r.order.client_order_id for r in _resting_at(emu)}
        strategy = Contingent(USDM.iid)
        async with kit_harness(kit, journal=journal, strategies=[strategy], emulator=emu) as h:
            journaled = h.kernel.orders.open_orders()
            for order in journaled:
                h.venue.track(order)
            reconciler = Reconciler(h.kernel, h.venue, lambda iid, why: None, 2.0)
            await reconciler.startup(journaled, await h.venue.api.open_orders())
            await h.venue.drain()
            tape = KitTape(h, USDM.iid, T0 + 10**9, size=unit)
            tape.trade(60_500.0)
            await h.venue.drain()
            await _filled_to(h, tape, entry_id, 59_998.0, 3 * unit)
            exits = {o.client_order_id for o in h.kernel.orders.open_orders()}
            assert exits == {r.order.client_order_id for r in _resting_at(emu)} and len(exits) == 2
            tape.size = 3 * unit
            tape.trade(58_900.0)
            await until(lambda: emu.open_orders() == [])
            await until(lambda: emu.position("BTCUSDT") == pytest.approx(0.0, abs=1e-12))
    finally:
        await emu.stop()


def _resting_at(emu: Any) -> list[Any]:
    return [r for r in emu.open_orders() if r.order.side is OrderSide.SELL]



@pytest.mark.parametrize("perp", list(PERPS.values()), ids=list(PERPS))
async def test_the_strategys_move_of_an_exit_while_the_entry_rests_is_kept_as_the_exits_grow(perp: Perp) -> None:
    """Buy 3 units at 60,000; a trade fills 1 and the exits of 1 rest; the strategy moves its stop-loss to 59,500
    and tries to raise its take-profit to 3 units (above its OCO group: denied, ``modify: OCO``). The next fills grow
    both to 2, then 3, the stop-loss at 59,500, the take-profit at 61,000; 59,400 sells the 3 and nothing is left."""
    unit, strategy = perp.unit, Contingent(perp.kit.iid)
    async with _one_unit_filled(perp, strategy=strategy) as (h, tape, entry_id):
        denied: list[OrderDenied] = []
        h.kernel.bus.subscribe(OrderDenied, denied.append)
        by_type = {o.order_type: o.client_order_id for o in h.kernel.orders.open_orders() if o.client_order_id != entry_id}
        strategy.modify(by_type[OrderType.STOP_MARKET], trigger_price=59_500.0)
        await until(lambda: [r[2] for r in _resting(h) if r[0] is OrderType.STOP_MARKET] == [59_500.0])
        strategy.modify(by_type[OrderType.LIMIT], quantity=3 * unit)
        await until(lambda: len(denied) == 1)
        assert denied[0].reason.startswith("modify: OCO")
        for price, filled in ((59_995.0, 2 * unit), (59_998.0, 3 * unit)):
            tape.trade(price)
            await until(lambda: h.kernel.orders.order(entry_id).filled_qty == pytest.approx(filled))
            await until(lambda: _resting(h) == [(OrderType.LIMIT, filled, TARGET, True),
                                                (OrderType.STOP_MARKET, filled, 59_500.0, True)])
        tape.size = 3 * unit
        tape.trade(59_400.0)
        await until(lambda: h.emulator.open_orders() == [])
        await until(lambda: h.emulator.position(perp.symbol) == pytest.approx(0.0, abs=1e-12))


@pytest.mark.parametrize("perp", list(PERPS.values()), ids=list(PERPS))
async def test_a_growth_racing_the_take_profits_part_fill(perp: Perp) -> None:
    """Buy 3 units at 60,000; trades fill 1, then 2 (exits of 2). One trade fills the entry's last unit and the next,
    at 61,100, sells 1 of the take-profit's 2 before the growth to 3 reaches the venue. Held 2: the exits should be
    a take-profit with 2 left and a stop-loss of 2; 58,900 then sells the 2 and nothing is left. The OCO reduction
    at the take-profit's fill counts its growth on its way (3 - 1 = 2) and reduces the stop-loss from its growth to
    3 (OKX, Bybit: amended 3, then 2). On USD-M the growth is a cancel-replace: the reduction, refused while it is
    in flight, is kept (the stop-loss's 2 is not above it, its replacement's 3 is), carried to the replacement and
    sent again at the next market event."""
    unit = perp.unit
    async with _one_unit_filled(perp) as (h, tape, entry_id):
        await _filled_to(h, tape, entry_id, 59_995.0, 2 * unit)
        tape.trade(59_998.0)
        tape.trade(61_100.0)
        await until(lambda: h.kernel.orders.order(entry_id).status is OrderStatus.FILLED)
        await until(lambda: h.emulator.position(perp.symbol) == pytest.approx(2 * unit))
        await h.venue.drain()
        tape.trade(60_500.0)  # a market event: a reduction refused while a cancel-replace was in flight goes again
        await h.venue.drain()
        expected = [(OrderType.LIMIT, pytest.approx(2 * unit)), (OrderType.STOP_MARKET, pytest.approx(2 * unit))]
        await until(lambda: sorted((o.order_type, o.leaves_qty) for o in h.kernel.orders.open_orders()) == expected)
        stops = [r.order.quantity for r in h.emulator.open_orders() if r.order.order_type is OrderType.STOP_MARKET]
        assert stops == [pytest.approx(2 * unit)]
        tape.size = 3 * unit
        tape.trade(58_900.0)
        await until(lambda: h.emulator.open_orders() == [])
        await until(lambda: h.emulator.position(perp.symbol) == pytest.approx(0.0, abs=1e-12))
        await until(lambda: h.kernel.orders.open_orders() == [])
