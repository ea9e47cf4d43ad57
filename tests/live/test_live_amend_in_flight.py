"""A second amend of an order while its first is unanswered, on the venues that amend in place (OKX, Bybit).

A trailing stop moves at each better price; a trade that comes while the venue holds the stop's last amend
unprocessed makes another. Two amends of one order in flight may be processed in either order (two
requests racing): the venue may end at the older trigger while the kernel holds the newer, or the answers
may come in the other order than the venue applied them. The live venue sends one amend of an order at a
time: a newer one due meanwhile is kept (the latest terms only) and sent once the first is answered,
refused or not; one due on an order that closed or is being canceled meanwhile is dropped
(``OrderModifyRejected``). The account emulator holds the first amend (a ``hold`` fault, processed only once
released), which is how the venue sees two racing requests when the second overtakes the first.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from tests.live.live_harness import until
from tests.live.test_live_amend import HELD, _one_account
from tests.live.test_live_resolved_contingent import Contingent
from tests.live.venue_kits import KITS, KitTape, VenueKit, kit_harness
from tradebus.adapters.common.account_emulator import RestFault
from tradebus.engine.messages import CancelOrder, ModifyOrder, OrderModified, OrderModifyRejected, OrderSide, OrderStatus, OrderType

T0 = 1_786_310_819_680_000_000
#: Where each venue amends an untriggered stop, and an ordinary order; a code it refuses an amend with.
STOP_AMEND = {"okx": "/api/v5/trade/amend-algos", "bybit": "/v5/order/amend"}
LIMIT_AMEND = {"okx": "/api/v5/trade/amend-order", "bybit": "/v5/order/amend"}
REFUSED = {"okx": "51000", "bybit": "10001"}


def _venue_trigger(h: Any, coid: str) -> float:
    """The trigger the venue holds for the untriggered stop ``coid`` (NaN: none)."""
    return h.emulator.orders[coid].order.trigger_price if coid in h.emulator.untriggered else math.nan


async def _trailing(h: Any, kit: VenueKit, strategy: Contingent, t0: int = T0) -> tuple[KitTape, str]:
    """Long 0.01 bought at 60,000, and a trailing sell stop of 0.01 500 below it (59,500) working at the venue."""
    tape = KitTape(h, kit.iid, t0, size=100.0)
    await tape.fill(OrderSide.BUY, 0.01, 60_000.0)
    coid = strategy.submit_trailing_stop(kit.iid, OrderSide.SELL, 0.01, offset=500.0)
    stop = h.kernel.orders.order(coid)
    await until(lambda: stop.status is OrderStatus.ACCEPTED and _venue_trigger(h, coid) == 59_500.0)
    return tape, coid


async def _second_move_while_held(h: Any, tape: KitTape, held: RestFault, path: str) -> list[str]:
    """A trade at 61,000 moves the stop to 60,500, an amend the venue holds unprocessed; one at 62,000 moves it to
    61,500 meanwhile. Returns the client ids of the amends the venue had received when the first is released."""
    tape.trade(61_000.0)
    await until(lambda: held.fired)
    tape.trade(62_000.0)
    await until(lambda: h.venue.in_flight == 1)  # a second amend sent meanwhile has been answered
    return tape.posts(path)


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_a_trailing_stops_move_during_its_unanswered_amend_is_sent_once_that_is_answered(kit: VenueKit) -> None:
    """The amend to 60,500 is held at the venue; the move to 61,500 comes meanwhile. Before, its amend went at once,
    overtook the first and was applied first: the venue ended at 60,500 (the first, applied last) while the
    trailing stop counted on 61,500, and a fall to 61,400 sold nothing. Now the venue gets one amend of the stop at a
    time: 61,500 leaves once 60,500 is answered, and 61,400 triggers the stop."""
    path = STOP_AMEND[kit.venue]
    release = asyncio.Event()
    held = RestFault("hold", "POST", path, release=release)
    strategy = Contingent(kit.iid)
    async with kit_harness(kit, rest_faults=[held], strategies=[strategy], **HELD) as h:
        tape, coid = await _trailing(h, kit, strategy)
        stop = h.kernel.orders.order(coid)
        at_release = await _second_move_while_held(h, tape, held, path)
        release.set()
        await until(lambda: h.venue.in_flight == 0 and stop.trigger_price != 59_500.0)
        assert (at_release, _venue_trigger(h, coid), stop.trigger_price) == ([coid], 61_500.0, 61_500.0)
        tape.trade(61_400.0)  # through 61,500: triggers the stop, which sells at 61,400
        await until(lambda: stop.status is OrderStatus.FILLED)
        await h.venue.drain()
    assert tape.posts(path) == [coid, coid]
    assert [f.last_px for f in h.emulator.orders[coid].fills] == [61_400.0]
    assert h.kernel.portfolio.position(kit.iid) == pytest.approx(0.0)


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_the_move_kept_during_an_amend_the_venue_refuses_is_sent_after_the_refusal(kit: VenueKit) -> None:
    """As above, but the venue refuses the held amend to 60,500: the move to 61,500 kept meanwhile is still sent, the
    stop ends at 61,500 at the venue and here, and the strategy hears of no refusal (the move it made last was applied)."""
    path = STOP_AMEND[kit.venue]
    release = asyncio.Event()
    held = RestFault("refuse", "POST", path, code=REFUSED[kit.venue], release=release)
    strategy = Contingent(kit.iid)
    async with kit_harness(kit, rest_faults=[held], strategies=[strategy], **HELD) as h:
        refused: list[OrderModifyRejected] = []
        h.kernel.bus.subscribe(OrderModifyRejected, refused.append)
        tape, coid = await _trailing(h, kit, strategy)
        stop = h.kernel.orders.order(coid)
        at_release = await _second_move_while_held(h, tape, held, path)
        release.set()
        await until(lambda: h.venue.in_flight == 0 and len(tape.posts(path)) == 2)
        assert (at_release, _venue_trigger(h, coid), stop.trigger_price) == ([coid], 61_500.0, 61_500.0)
        assert refused == []
        tape.trade(61_400.0)
        await until(lambda: stop.status is OrderStatus.FILLED)
        await h.venue.drain()
    assert tape.posts(path) == [coid, coid]  # no third amend: the trailing stop holds 61,500 as the venue does
    assert [f.last_px for f in h.emulator.orders[coid].fills] == [61_400.0]


async def _limit_with_second_modify(h: Any, kit: VenueKit, held: RestFault) -> Any:
    """A resting limit buy of 0.002 at 1,000 modified to 1,010 (held at the venue), then to 1,020 meanwhile."""
    execution = h.kernel.execution
    tape = KitTape(h, kit.iid, T0, size=0.001)
    order = tape.submit(OrderSide.BUY, 0.002, OrderType.LIMIT, price=1_000.0)
    await until(lambda: order.status is OrderStatus.ACCEPTED)
    coid = order.client_order_id
    execution.modify(ModifyOrder("s1", kit.iid, coid, 0, 0, price=1_010.0))
    await until(lambda: held.fired)
    execution.modify(ModifyOrder("s1", kit.iid, coid, 0, 0, price=1_020.0))
    await until(lambda: h.venue.in_flight == 1)
    return order


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_a_modify_kept_during_an_amend_is_dropped_when_the_order_fills_meanwhile(kit: VenueKit) -> None:
    """A limit buy at 1,000 modified to 1,010, held at the venue, and to 1,020 meanwhile; a trade at 999 fills it
    before the first amend is processed. The venue refuses that amend (the order is filled) and the second is never
    sent: the strategy gets an ``OrderModifyRejected`` for each, the order is filled at 1,000."""
    path = LIMIT_AMEND[kit.venue]
    release = asyncio.Event()
    held = RestFault("hold", "POST", path, release=release)
    async with kit_harness(kit, rest_faults=[held], trade_size_limit=True, **HELD) as h:
        refused: list[OrderModifyRejected] = []
        h.kernel.bus.subscribe(OrderModifyRejected, refused.append)
        order = await _limit_with_second_modify(h, kit, held)
        KitTape(h, kit.iid, T0 + 10**9, size=0.002).trade(999.0)
        await until(lambda: order.status is OrderStatus.FILLED)
        release.set()
        await until(lambda: h.venue.in_flight == 0 and len(refused) == 2)
        await h.venue.drain()
    assert KitTape(h, kit.iid, 0).posts(path) == [order.client_order_id]
    assert (order.price, order.filled_qty, h.emulator.orders[order.client_order_id].order.price) == (1_000.0, pytest.approx(0.002), 1_000.0)
    assert "FILLED" in refused[1].reason


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_a_modify_kept_during_an_amend_is_dropped_by_a_cancel(kit: VenueKit) -> None:
    """As above, but the strategy cancels the order instead: the kept modify is refused at once (the cancel wins), the
    first amend is refused by the venue once the cancel is done, and no second amend is sent."""
    path = LIMIT_AMEND[kit.venue]
    release = asyncio.Event()
    held = RestFault("hold", "POST", path, release=release)
    async with kit_harness(kit, rest_faults=[held], **HELD) as h:
        refused: list[OrderModifyRejected] = []
        h.kernel.bus.subscribe(OrderModifyRejected, refused.append)
        order = await _limit_with_second_modify(h, kit, held)
        h.kernel.execution.cancel(CancelOrder("s1", kit.iid, order.client_order_id, 0, 0))
        assert len(refused) == 1 and "cancel" in refused[0].reason
        await until(lambda: order.status is OrderStatus.CANCELED)
        release.set()
        await until(lambda: h.venue.in_flight == 0 and len(refused) == 2)
        await h.venue.drain()
    assert KitTape(h, kit.iid, 0).posts(path) == [order.client_order_id]
    assert h.emulator.orders[order.client_order_id].status is OrderStatus.CANCELED


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_two_modifies_kept_during_an_amend_leave_as_one_with_the_latest_terms(kit: VenueKit) -> None:
    """A limit buy of 0.002 at 1,000 modified to 1,010 (held at the venue), then to 0.003 in all, then to 1,030: once
    the first is answered one amend leaves, for 0.003 at 1,030 (each term its latest), answered by one
    ``OrderModified``."""
    path = LIMIT_AMEND[kit.venue]
    release = asyncio.Event()
    held = RestFault("hold", "POST", path, release=release)
    async with kit_harness(kit, rest_faults=[held], **HELD) as h:
        modified: list[OrderModified] = []
        h.kernel.bus.subscribe(OrderModified, modified.append)
        order = await _limit_with_second_modify(h, kit, held)
        coid = order.client_order_id
        h.kernel.execution.modify(ModifyOrder("s1", kit.iid, coid, 0, 0, quantity=0.003))
        h.kernel.execution.modify(ModifyOrder("s1", kit.iid, coid, 0, 0, price=1_030.0))
        release.set()
        await until(lambda: h.venue.in_flight == 0 and len(modified) == 2)
        await h.venue.drain()
        venue_order = h.emulator.orders[coid].order
        assert KitTape(h, kit.iid, 0).posts(path) == [coid, coid]
        assert [(m.quantity, m.price) for m in modified] == [(0.002, 1_010.0), (0.003, 1_030.0)]
        assert (venue_order.quantity, venue_order.price) == (0.003, 1_030.0) == (order.quantity, order.price)


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_a_restart_with_a_move_kept_takes_the_venues_trigger_and_trails_on(kit: VenueKit, tmp_path: Path) -> None:
    """The daemon stops while the amend to 60,500 is held at the venue and the move to 61,500 is kept. The venue then
    applies 60,500. The restart holds 60,500 (the venue's answer), not the kept 61,500, which it does not send by
    itself; the next trade at 62,000 moves the stop to 61,500, once, at the venue and here."""
    path = STOP_AMEND[kit.venue]
    journal = tmp_path / "journal.sqlite"
    release = asyncio.Event()
    held = RestFault("hold", "POST", path, release=release)
    emu = kit.emulator([held])
    one_account = _one_account(kit, emu)
    strategy = Contingent(kit.iid)
    async with kit_harness(one_account, journal=journal, strategies=[strategy], **HELD) as h:
        tape, coid = await _trailing(h, kit, strategy)
        at_release = await _second_move_while_held(h, tape, held, path)
    assert at_release == [coid]
    release.set()
    await until(lambda: _venue_trigger(h, coid) == 60_500.0)
    async with kit_harness(one_account, journal=journal, strategies=[Contingent(kit.iid)], **HELD) as h:
        stop = h.kernel.orders.order(coid)
        h.venue.track(stop)
        h.kernel.execution.resolve_unknown(coid)  # as the daemon's start does: a query
        await until(lambda: stop.status is OrderStatus.ACCEPTED and h.venue.in_flight == 0)
        assert stop.trigger_price == 60_500.0 == _venue_trigger(h, coid)
        assert tape.posts(path) == [coid]
        KitTape(h, kit.iid, T0 + 10**9, size=100.0).trade(62_000.0)
        await until(lambda: _venue_trigger(h, coid) == 61_500.0 and stop.trigger_price == 61_500.0)
        await h.venue.drain()
    assert tape.posts(path) == [coid, coid]



@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_an_order_is_not_forgotten_while_its_amend_is_out_and_a_modify_kept(kit: VenueKit) -> None:
    """As above, the order filled while its first amend is held; the order manager then asks to forget it (released,
    its window over). Before, the venue forgot it at once, the kept modify with it: once the first amend was refused
    only one ``OrderModifyRejected`` came, the strategy never told that its modify to 1,020 went nowhere. Now the
    order is kept while the amend is out, and forgotten once it ended and the kept modify was refused."""
    path = LIMIT_AMEND[kit.venue]
    release = asyncio.Event()
    held = RestFault("hold", "POST", path, release=release)
    async with kit_harness(kit, rest_faults=[held], trade_size_limit=True, **HELD) as h:
        refused: list[OrderModifyRejected] = []
        h.kernel.bus.subscribe(OrderModifyRejected, refused.append)
        order = await _limit_with_second_modify(h, kit, held)
        coid = order.client_order_id
        KitTape(h, kit.iid, T0 + 10**9, size=0.002).trade(999.0)
        await until(lambda: order.status is OrderStatus.FILLED)
        kept_while_out = h.venue.forget(coid)
        release.set()
        await until(lambda: h.venue.in_flight == 0 and len(refused) == 2)
        await h.venue.drain()
        assert (kept_while_out, h.venue.forget(coid), h.venue.order(coid)) == (False, True, None)
    assert "FILLED" in refused[1].reason


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_a_kept_modify_is_checked_by_the_risk_gate_again_as_it_leaves(kit: VenueKit) -> None:
    """Prices within 5 % of the last trade (price_band_pct 5). A limit buy of 0.002 at 1,000, the last trade at 1,000,
    modified to 990 (held at the venue), then to 960 meanwhile (4 % below 1,000: passes). A trade at 1,015 (above the
    buy: nothing fills) moves the band to 964.25-1,065.75 before the first amend is answered. Before, the kept 960 left
    as it was, 5.4 % below the last trade: the venue ended at 960. Now the gate, asked again as it leaves, denies it
    (``OrderDenied`` "modify: price_band: ..."), it is not sent, and the venue and the order stay at 990."""
    from tradebus.engine.messages import OrderDenied
    from tradebus.risk.config import RiskConfig

    path = LIMIT_AMEND[kit.venue]
    release = asyncio.Event()
    held = RestFault("hold", "POST", path, release=release)
    async with kit_harness(kit, rest_faults=[held], risk_config=RiskConfig(price_band_pct=5.0), **HELD) as h:
        denied: list[OrderDenied] = []
        h.kernel.bus.subscribe(OrderDenied, denied.append)
        execution = h.kernel.execution
        tape = KitTape(h, kit.iid, T0, size=0.001)
        tape.trade(1_000.0)
        order = tape.submit(OrderSide.BUY, 0.002, OrderType.LIMIT, price=1_000.0)
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        coid = order.client_order_id
        execution.modify(ModifyOrder("s1", kit.iid, coid, 0, 0, price=990.0))
        await until(lambda: held.fired)
        execution.modify(ModifyOrder("s1", kit.iid, coid, 0, 0, price=960.0))
        assert denied == []
        tape.trade(1_015.0)
        release.set()
        await until(lambda: h.venue.in_flight == 0 and order.price == 990.0 and len(denied) == 1)
        await h.venue.drain()
        assert tape.posts(path) == [coid]
        assert (order.price, h.emulator.orders[coid].order.price, order.status) == (990.0, 990.0, OrderStatus.ACCEPTED)
    assert denied[0].client_order_id == coid and denied[0].reason.startswith("modify: price_band: price 960.0")


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_the_check_of_a_kept_modify_as_it_leaves_does_not_count_it_in_the_order_rate_again(kit: VenueKit) -> None:
    """Three orders a minute (max_orders_per_window 3): the limit buy, its modify to 1,010 (held at the venue) and its
    modify to 1,020 meanwhile are the three. The check as the kept 1,020 leaves does not count it a fourth time: it
    leaves, and the venue and the order end at 1,020 with no ``OrderDenied``."""
    from tradebus.engine.messages import OrderDenied
    from tradebus.risk.config import RiskConfig

    path = LIMIT_AMEND[kit.venue]
    release = asyncio.Event()
    held = RestFault("hold", "POST", path, release=release)
    risk = RiskConfig(max_orders_per_window=3, order_rate_window_ns=60 * 10**9)
    async with kit_harness(kit, rest_faults=[held], risk_config=risk, **HELD) as h:
        denied: list[OrderDenied] = []
        h.kernel.bus.subscribe(OrderDenied, denied.append)
        order = await _limit_with_second_modify(h, kit, held)
        release.set()
        await until(lambda: h.venue.in_flight == 0 and order.price == 1_020.0)
        await h.venue.drain()
        assert (denied, h.emulator.orders[order.client_order_id].order.price) == ([], 1_020.0)


def _short_window(h: Any, seconds: float) -> None:
    """A request's window of ``seconds`` at the venue and in the client: Bybit's ``X-BAPI-RECV-WINDOW`` the client sends
    (the emulator reads it from the request), OKX's expiry of the signed timestamp (a venue constant: set on both) and an
    amend's ``expTime`` (the client's 1 s timeout otherwise)."""
    if hasattr(h.venue.api, "recv_window_ms"):
        h.venue.api.recv_window_ms = int(seconds * 1000)
    else:
        h.venue.api.timestamp_expiry_s = seconds
        h.emulator.timestamp_expiry_s = seconds
        h.venue.api.amend_deadline_s = seconds


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_a_modify_kept_behind_an_unanswered_amend_waits_for_its_window_and_the_venue_ends_at_the_newest(kit: VenueKit) -> None:
    """A request's window of 2 s. A limit buy at 1,000 modified to 1,010, an amend the venue holds (the client's 1 s
    timeout runs out: unanswered), and to 1,020 meanwhile. The venue then processes the held amend, within its window,
    once the client gave up on it. Before, 1,020 left at the timeout, was applied first, and the late 1,010 overwrote it:
    the venue at 1,010 (and the order too, once the frame of the late amend had it queried), the strategy's last modify
    lost. Now 1,020 leaves only once the first's window has passed (3 s: 2 s and
    Bybit's 1 s of clock skew; OKX's alike) and a query has told the venue's 1,010: the venue and the order end at
    1,020, the venue having got the two amends in the order they were made."""
    path = LIMIT_AMEND[kit.venue]
    release = asyncio.Event()
    held = RestFault("hold", "POST", path, release=release, windowed=True)
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="WARNING", filter=lambda r: "no answer" in r["message"])
    processed: list[str] = []
    late = logger.add(lambda m: processed.append(str(m)), level="INFO", filter=lambda r: "within its window" in r["message"])
    try:
        async with kit_harness(kit, rest_faults=[held]) as h:
            _short_window(h, 2.0)
            execution = h.kernel.execution
            tape = KitTape(h, kit.iid, T0, size=0.001)
            order = tape.submit(OrderSide.BUY, 0.002, OrderType.LIMIT, price=1_000.0)
            await until(lambda: order.status is OrderStatus.ACCEPTED)
            coid = order.client_order_id
            execution.modify(ModifyOrder("s1", kit.iid, coid, 0, 0, price=1_010.0))
            await until(lambda: held.fired)
            execution.modify(ModifyOrder("s1", kit.iid, coid, 0, 0, price=1_020.0))
            # Unanswered: before, the kept 1,020 left at once and was answered; now it waits.
            await until(lambda: bool(lines) and (coid in h.venue._withheld or h.venue.in_flight == 0))  # noqa: SLF001
            posts_at_release = len(tape.posts(path))
            release.set()  # the venue processes the held 1,010 now, within its 2 s window
            venue_order = h.emulator.orders[coid].order
            await until(lambda: h.venue.in_flight == 0 and len(processed) == 1 and order.price == venue_order.price)
            await h.venue.drain()
            assert (h.emulator.orders[coid].order.price, order.price) == (1_020.0, 1_020.0)
            assert (posts_at_release, tape.posts(path)) == (1, [coid, coid])
    finally:
        logger.remove(sink)
        logger.remove(late)


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_an_unanswered_amend_the_venue_holds_past_its_window_is_never_applied(kit: VenueKit) -> None:
    """As above, but the venue holds the amend to 1,010 until the kept 1,020 has reached it, past the first's 2 s
    window: the venue refuses the first as expired (Bybit ``10002``, OKX ``50102``), nothing applied, and the venue
    and the order end at 1,020. Before, 1,020 left at the timeout, inside the first's window, which the venue then
    applied: 1,010 at the venue."""
    path = LIMIT_AMEND[kit.venue]
    release = asyncio.Event()
    held = RestFault("hold", "POST", path, release=release, windowed=True)
    expired: list[str] = []
    sink = logger.add(lambda m: expired.append(str(m)), level="INFO", filter=lambda r: "past its window" in r["message"])
    try:
        await _held_past_its_window(kit, path, release, held, expired)
    finally:
        logger.remove(sink)


async def _held_past_its_window(kit: VenueKit, path: str, release: asyncio.Event, held: RestFault, expired: list[str]) -> None:
    async with kit_harness(kit, rest_faults=[held]) as h:
        _short_window(h, 2.0)
        execution = h.kernel.execution
        tape = KitTape(h, kit.iid, T0, size=0.001)
        order = tape.submit(OrderSide.BUY, 0.002, OrderType.LIMIT, price=1_000.0)
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        coid = order.client_order_id
        execution.modify(ModifyOrder("s1", kit.iid, coid, 0, 0, price=1_010.0))
        await until(lambda: held.fired)
        execution.modify(ModifyOrder("s1", kit.iid, coid, 0, 0, price=1_020.0))
        await until(lambda: h.emulator.orders[coid].order.price == 1_020.0)
        release.set()
        await until(lambda: h.venue.in_flight == 0 and order.price == 1_020.0 and len(expired) == 1)
        await h.venue.drain()
        assert (h.emulator.orders[coid].order.price, order.price, tape.posts(path)) == (1_020.0, 1_020.0, [coid, coid])


async def test_an_okx_amend_carries_an_exptime_so_the_modify_kept_behind_it_leaves_long_before_the_30_s_timestamp_window() -> None:
    """OKX's 30 s expiry of the signed timestamp as it is, the client's timeout 1 s. A limit buy at 1,000 modified to
    1,010, an amend the venue holds unanswered, and to 1,020 meanwhile. Before, 1,020 waited 31 s after the timeout (the
    first could be processed for 30 s after its signed time). Now ``amend-order`` carries OKX's ``expTime`` header, its
    signed time and the 1 s timeout: 1,020 leaves 2 s after the timeout, well inside the first's 30 s, and the first,
    released then, is refused by the venue (past its ``expTime``: ``50036``), never applied: the venue and the order at
    1,020. A stop's amend (``amend-algos``, which takes no ``expTime``) still waits 31 s."""
    kit = KITS["okx"]
    path = LIMIT_AMEND["okx"]
    release = asyncio.Event()
    held = RestFault("hold", "POST", path, release=release, windowed=True)
    expired: list[str] = []
    sink = logger.add(lambda m: expired.append(str(m)), level="INFO", filter=lambda r: "past its window" in r["message"])
    try:
        async with kit_harness(kit, rest_faults=[held]) as h:
            loop = asyncio.get_running_loop()
            execution = h.kernel.execution
            tape = KitTape(h, kit.iid, T0, size=0.001)
            order = tape.submit(OrderSide.BUY, 0.002, OrderType.LIMIT, price=1_000.0)
            await until(lambda: order.status is OrderStatus.ACCEPTED)
            coid = order.client_order_id
            execution.modify(ModifyOrder("s1", kit.iid, coid, 0, 0, price=1_010.0))
            await until(lambda: held.fired)
            first_at = loop.time()
            execution.modify(ModifyOrder("s1", kit.iid, coid, 0, 0, price=1_020.0))
            await until(lambda: h.emulator.orders[coid].order.price == 1_020.0)
            kept_after = loop.time() - first_at
            release.set()
            await until(lambda: h.venue.in_flight == 0 and order.price == 1_020.0 and len(expired) == 1)
            await h.venue.drain()
            assert (h.emulator.orders[coid].order.price, order.price, tape.posts(path)) == (1_020.0, 1_020.0, [coid, coid])
            assert kept_after < h.emulator.timestamp_expiry_s == 30.0
            stop = tape.submit(OrderSide.SELL, 0.001, OrderType.STOP_MARKET, trigger=900.0)
            assert (h.venue.api.amend_expiry_s(order), h.venue.api.amend_expiry_s(stop)) == (2.0, 31.0)
    finally:
        logger.remove(sink)


@pytest.mark.parametrize("between", [False, True], ids=["after", "between"])
@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_a_refused_modify_of_another_term_does_not_make_a_trailing_stop_send_its_kept_trigger_again(kit: VenueKit, between: bool) -> None:
    """The trailing stop at 59,500 modified to 0.005 (its quantity), an amend the venue holds and then refuses; a trade at
    61,000 moves the stop to 60,500 meanwhile, kept behind it. That move does not set the quantity: the refusal is told
    at once (``OrderModifyRejected``), and 60,500 leaves after it and is applied. The next trade, at 60,900 (the best
    price still 61,000), comes once 60,500 is applied (``after``) or while the venue holds it (``between``). Before, the
    refusal set the trailing stop back to the venue's 59,500 while 60,500 was still to leave, and that trade sent 60,500
    again: a third amend of a trigger the venue already held. Now the trailing stop takes the trigger applied
    (``OrderModified``) as the one it holds, and a move kept behind an amend that set its terms already is answered
    without a request: the venue gets two amends, and the stop is at 60,500 there and here."""
    path = STOP_AMEND[kit.venue]
    release, second = asyncio.Event(), asyncio.Event()
    held = RestFault("refuse", "POST", path, code=REFUSED[kit.venue], release=release)
    faults = [held, RestFault("hold", "POST", path, release=second)] if between else [held]
    strategy = Contingent(kit.iid)
    async with kit_harness(kit, rest_faults=faults, strategies=[strategy], **HELD) as h:
        refused: list[OrderModifyRejected] = []
        h.kernel.bus.subscribe(OrderModifyRejected, refused.append)
        tape, coid = await _trailing(h, kit, strategy)
        stop = h.kernel.orders.order(coid)
        h.kernel.execution.modify(ModifyOrder(stop.strategy_id, kit.iid, coid, 0, 0, quantity=0.005))
        await until(lambda: held.fired)
        tape.trade(61_000.0)
        assert coid in h.venue._withheld  # noqa: SLF001 - the move is kept behind the held amend
        release.set()
        if between:
            await until(lambda: faults[1].fired and len(refused) == 1)
            tape.trade(60_900.0)
            second.set()
        await until(lambda: h.venue.in_flight == 0 and stop.trigger_price == 60_500.0 and len(refused) == 1)
        if not between:
            tape.trade(60_900.0)
        await until(lambda: h.venue.in_flight == 0)
        await h.venue.drain()
        assert (tape.posts(path), _venue_trigger(h, coid), stop.trigger_price, stop.quantity) == ([coid, coid], 60_500.0, 60_500.0, 0.01)
