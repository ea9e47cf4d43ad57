"""An order whose fills the venue's trade history no longer lists: flagged and its instrument held, nothing invented.

The account emulators (every dialect) forget fills older than their history window
(``trade_history_ns``, as OKX's 3 days or Bybit's 7), while its order still says it filled.
The fill's stream frame is dropped, so only the query after the refused cancel could have booked it.
A history that only lags (``listed_late``: Binance and Bybit list a fill seconds after its order
counts it) is read again until it lists the fill, which is booked once and the hold lifted.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec
import pytest
from loguru import logger
from pydantic import SecretStr

from tests.live.live_harness import ANSWERED, FAST, IID, INST, KEY, SECRET, T0, WAIT, Harness, harness, later_than, settled, until
from tests.live.venue_kits import KITS, KitTape, VenueKit, kit_harness
from tradebus.adapters.binance.trading import BinanceTrading
from tradebus.engine.clock import LiveClock
from tradebus.engine.kernel import Kernel
from tradebus.adapters.binance.private_emulator import StreamFault
from tradebus.engine.messages import AnomalyKind, CancelOrder, ModifyOrder, OrderAnomaly, OrderSide, OrderStatus, OrderType
from tradebus.execution.engine import MISSING_FILLS_READS
from tradebus.execution.journal import Journal
from tradebus.execution.live import CLOCK_MARGIN_NS, LiveVenue
from tradebus.execution.orders import Order
from tradebus.node.reconcile import Reconciler


async def test_an_order_whose_fill_the_venue_no_longer_lists_is_flagged_and_its_instrument_held() -> None:
    async with harness(stream_faults=[StreamFault("drop", '"x": "TRADE"')]) as h:
        holds: dict[str, str] = {}

        def hold(iid: str, reason: str) -> None:
            if reason:
                holds[iid] = reason
            else:
                holds.pop(iid, None)

        reconciler = Reconciler(h.kernel, h.venue, hold, 2.0)
        anomalies: list[OrderAnomaly] = []
        h.kernel.bus.subscribe(OrderAnomaly, anomalies.append)
        order = h.submit(OrderSide.BUY, 0.01, 60_000.0)
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        h.trade(59_000.0)  # fills at the venue; its frame is lost
        h.trade(61_000.0)  # a millisecond later: the fill is beyond the history window
        h.emulator.trade_history_ns = 0
        assert h.emulator.orders[order.client_order_id].status is OrderStatus.FILLED
        h.kernel.execution.cancel(CancelOrder("s1", IID, order.client_order_id, 0, 0))  # refused: filled; queried
        await until(lambda: order.status is OrderStatus.FILLED)
        assert order.filled_qty == 0.0 and h.kernel.result.fills == []  # nothing invented
        [anomaly] = [a for a in anomalies if a.kind is AnomalyKind.MISSING_FILLS]
        assert anomaly.client_order_id == order.client_order_id and anomaly.instrument_id == IID
        assert "says 0.01 filled but lists fills for 0.0" in anomaly.detail
        assert order.client_order_id in holds[IID]
        await reconciler.round()  # the holding here differs from the venue's: still held
        assert order.client_order_id in holds[IID]
        h.emulator.balances["BTC"] = 0.0  # the account holds what this process booked again
        await reconciler.round()
        assert holds == {}


async def test_an_order_whose_fills_are_all_listed_is_neither_flagged_nor_held() -> None:
    async with harness(stream_faults=[StreamFault("drop", '"x": "TRADE"')]) as h:
        holds: dict[str, str] = {}
        Reconciler(h.kernel, h.venue, holds.__setitem__, 2.0)
        anomalies: list[OrderAnomaly] = []
        h.kernel.bus.subscribe(OrderAnomaly, anomalies.append)
        order = h.submit(OrderSide.BUY, 0.01, 60_000.0)
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        h.trade(59_000.0)  # its frame is lost; the venue's trade history lists it
        h.trade(61_000.0)
        h.kernel.execution.cancel(CancelOrder("s1", IID, order.client_order_id, 0, 0))
        await until(lambda: order.status is OrderStatus.FILLED)
        await settled(h)  # every query's answer and every stream frame handled: an anomaly would be there
        assert order.filled_qty == pytest.approx(0.01) and len(h.kernel.result.fills) == 1
        assert [a for a in anomalies if a.kind is AnomalyKind.MISSING_FILLS] == [] and holds == {}


def _hold_to(holds: dict[str, str]) -> Callable[[str, str], None]:
    """A Reconciler's ``hold`` keeping the holds in ``holds``."""

    def hold(iid: str, reason: str) -> None:
        if reason:
            holds[iid] = reason
        else:
            holds.pop(iid, None)

    return hold


def _both_fill_frames_dropped() -> list[StreamFault]:
    return [StreamFault("drop", '"x": "TRADE"'), StreamFault("drop", '"x": "TRADE"', at=1)]


async def _filled_twice_unseen(h: Harness, late_reads: int) -> tuple[Order, str]:
    """An order of 0.02 filled by two public trades whose frames are lost, the second listed by the
    venue's trade history only after ``late_reads`` reads; its refused cancel queries it. Its trade id."""
    order = h.submit(OrderSide.BUY, 0.02, 60_000.0)
    await until(lambda: order.status is OrderStatus.ACCEPTED)
    h.trade(59_000.0, 0.01)
    h.trade(59_000.0, 0.01)
    first, second = h.emulator.fills
    assert h.emulator.orders[order.client_order_id].status is OrderStatus.FILLED
    h.emulator.listed_late[second.trade_id] = late_reads
    h.kernel.execution.cancel(CancelOrder("s1", IID, order.client_order_id, 0, 0))  # refused: filled; queried
    await until(lambda: order.status is OrderStatus.FILLED)
    return order, str(second.trade_id)


async def test_a_fill_the_venue_lists_late_is_read_again_booked_once_and_the_hold_lifted() -> None:
    async with harness(stream_faults=_both_fill_frames_dropped(), trade_size_limit=True, timeouts=ANSWERED, request_timeout=WAIT) as h:
        holds: dict[str, str] = {}
        reconciler = Reconciler(h.kernel, h.venue, _hold_to(holds), 2.0)
        anomalies: list[OrderAnomaly] = []
        h.kernel.bus.subscribe(OrderAnomaly, anomalies.append)
        order, late = await _filled_twice_unseen(h, late_reads=2)
        [missing] = [a for a in anomalies if a.kind is AnomalyKind.MISSING_FILLS]
        assert "says 0.02 filled but lists fills for 0.01" in missing.detail
        assert order.client_order_id in holds[IID]
        await until(lambda: order.filled_qty == pytest.approx(0.02))
        await settled(h)
        assert h.venue.requests["query"] == 3  # the query, then two reads again: the second lists it
        fills = h.kernel.result.fills
        assert [f.trade_id for f in fills][1] == late and len({f.trade_id for f in fills}) == len(fills) == 2
        assert h.kernel.portfolio.account.balance("BTC") == pytest.approx(0.02)
        assert [a.kind for a in anomalies] == [AnomalyKind.MISSING_FILLS, AnomalyKind.FILL_AFTER_CLOSE]
        await reconciler.round()  # the holding here equals the venue's again
        assert holds == {}
        assert h.venue.requests["query"] == 3 and len(h.kernel.result.fills) == 2


async def test_a_fill_the_venue_never_lists_is_read_again_a_bounded_number_of_times_and_stays_held() -> None:
    quick = msgspec.structs.replace(ANSWERED, retry_ns=40_000_000)
    async with harness(stream_faults=_both_fill_frames_dropped(), trade_size_limit=True, timeouts=quick, request_timeout=WAIT) as h:
        holds: dict[str, str] = {}
        reconciler = Reconciler(h.kernel, h.venue, _hold_to(holds), 2.0)
        anomalies: list[OrderAnomaly] = []
        h.kernel.bus.subscribe(OrderAnomaly, anomalies.append)
        order, _ = await _filled_twice_unseen(h, late_reads=10**6)
        await until(lambda: h.venue.requests["query"] == 1 + MISSING_FILLS_READS)
        await settled(h)
        await later_than(h.kernel.clock, 2 * (quick.retry_ns << MISSING_FILLS_READS))  # past when a next read would be due
        await settled(h)
        assert h.venue.requests["query"] == 1 + MISSING_FILLS_READS
        assert order.filled_qty == pytest.approx(0.01) and len(h.kernel.result.fills) == 1
        assert [a.kind for a in anomalies] == [AnomalyKind.MISSING_FILLS]
        await reconciler.round()
        assert order.client_order_id in holds[IID]


async def test_a_restart_books_the_fill_a_journaled_filled_order_lacked_once_the_venue_lists_it(tmp_path: Path) -> None:
    slow = msgspec.structs.replace(FAST, retry_ns=60_000_000_000)  # the first process stops before it reads again
    path = tmp_path / "journal.sqlite"
    first = Journal(path)
    async with harness(stream_faults=_both_fill_frames_dropped(), trade_size_limit=True, timeouts=slow, journal=first) as h:
        order, late = await _filled_twice_unseen(h, late_reads=10**6)
        assert order.filled_qty == pytest.approx(0.01)
        first.close()  # the process stops: its journal holds the order FILLED with 0.01 of 0.02 booked
        h.emulator.listed_late.clear()  # the venue's trade history lists the second fill now
        async with _restarted(h, path) as (kernel, holds):
            restored = kernel.orders.order(order.client_order_id)
            assert restored.status is OrderStatus.FILLED and restored.filled_qty == pytest.approx(0.02)
            assert kernel.portfolio.account.balance("BTC") == pytest.approx(0.02) and holds == {}
            assert [f.trade_id for f in kernel.result.fills][-1] == late
            assert len({f.trade_id for f in kernel.result.fills}) == len(kernel.result.fills) == 2


async def test_the_missing_fills_hold_lifts_as_soon_as_the_late_fills_are_booked_without_waiting_for_a_round() -> None:
    async with harness(stream_faults=_both_fill_frames_dropped(), trade_size_limit=True) as h:
        holds: dict[str, str] = {}
        reconciler = Reconciler(h.kernel, h.venue, _hold_to(holds), 2.0)  # no rounds run: a large reconcile_interval
        order, _ = await _filled_twice_unseen(h, late_reads=2)
        assert order.client_order_id in holds[IID]
        await until(lambda: order.filled_qty == pytest.approx(0.02))
        await until(lambda: holds == {})  # new orders allowed again
        assert reconciler.rounds == 0 and reconciler.checks == 1
        await reconciler.aclose()


async def test_a_hold_for_a_holdings_mismatch_stays_when_the_late_fills_are_booked() -> None:
    async with harness(stream_faults=_both_fill_frames_dropped(), trade_size_limit=True) as h:
        holds: dict[str, str] = {}
        reconciler = Reconciler(h.kernel, h.venue, _hold_to(holds), 2.0)
        order, _ = await _filled_twice_unseen(h, late_reads=2)
        h.emulator.balances["BTC"] += 0.5  # the account holds more than this process booked, apart from this order
        await until(lambda: order.filled_qty == pytest.approx(0.02))
        await until(lambda: reconciler.checks == 1)
        assert order.client_order_id in holds[IID]
        await reconciler.round()
        await reconciler.round()  # the difference, seen in two rounds: a holdings mismatch
        assert "held here but" in holds[IID] and order.client_order_id not in holds[IID]
        await reconciler.aclose()



async def test_a_restart_does_not_query_a_journaled_filled_order_older_than_the_venue_lists_its_fills(tmp_path: Path) -> None:
    slow = msgspec.structs.replace(FAST, retry_ns=60_000_000_000)
    path = tmp_path / "journal.sqlite"
    first = Journal(path)
    async with harness(stream_faults=_both_fill_frames_dropped(), trade_size_limit=True, timeouts=slow, journal=first) as h:
        order, _ = await _filled_twice_unseen(h, late_reads=10**6)  # the venue no longer lists its second fill
        first.close()

        def window(api: BinanceTrading, clock: LiveClock) -> None:
            api.fills_history_ns = clock.now_ns() - order.ts_last - 1  # the order's last event is just beyond the window

        anomalies: list[OrderAnomaly] = []
        async with _restarted(h, path, window, anomalies) as (kernel, holds):
            assert kernel.venue.requests["query"] == 0 and anomalies == []  # type: ignore[attr-defined]  # not asked again, nothing republished
            assert kernel.orders.order(order.client_order_id).filled_qty == pytest.approx(0.01)
            assert "0.01 BTC held here but 0.02 at the venue" in holds[IID]  # the holdings still decide


@pytest.mark.parametrize("cancel_frame", ["delivered", "dropped"])
async def test_a_restart_books_the_late_fill_of_a_canceled_order_once_the_venue_lists_it(tmp_path: Path, cancel_frame: str) -> None:
    """The partial fill's frame is lost and the venue lists it late; the order is canceled (its cancel frame
    saying 0.01 filled, or a query after the cancel's timeout), the process stops before a read lists the fill."""
    slow = msgspec.structs.replace(FAST, retry_ns=60_000_000_000)  # the first process stops before it reads again
    faults = [StreamFault("drop", '"x": "TRADE"')]
    if cancel_frame == "dropped":
        faults.append(StreamFault("drop", '"x": "CANCELED"'))
    path = tmp_path / "journal.sqlite"
    first = Journal(path)
    async with harness(stream_faults=faults, trade_size_limit=True, timeouts=slow, journal=first) as h:
        anomalies: list[OrderAnomaly] = []
        h.kernel.bus.subscribe(OrderAnomaly, anomalies.append)
        order = h.submit(OrderSide.BUY, 0.02, 60_000.0)
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        h.trade(59_000.0, 0.01)  # fills half at the venue; its frame is lost
        [fill] = h.emulator.fills
        h.emulator.listed_late[fill.trade_id] = 10**6
        h.kernel.execution.cancel(CancelOrder("s1", IID, order.client_order_id, 0, 0))
        await until(lambda: order.status is OrderStatus.CANCELED and any(a.kind is AnomalyKind.MISSING_FILLS for a in anomalies))
        assert order.filled_qty == 0.0
        first.close()  # the process stops: its journal holds the order CANCELED with nothing booked
        h.emulator.listed_late.clear()  # the venue's trade history lists the fill now
        async with _restarted(h, path) as (kernel, holds):
            restored = kernel.orders.order(order.client_order_id)
            assert restored.status is OrderStatus.CANCELED and restored.filled_qty == pytest.approx(0.01)
            assert kernel.portfolio.account.balance("BTC") == pytest.approx(0.01) and holds == {}
            assert [f.trade_id for f in kernel.result.fills] == [str(fill.trade_id)]
            assert kernel.venue.requests["query"] == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_a_fill_the_okx_or_bybit_venue_lists_late_is_read_again_and_booked_once(kit: VenueKit) -> None:
    faults = [StreamFault("drop", kit.fill_frame), StreamFault("drop", kit.fill_frame, at=1)]
    async with kit_harness(kit, faults, trade_size_limit=True) as h:
        holds: dict[str, str] = {}
        reconciler = Reconciler(h.kernel, h.venue, _hold_to(holds), 2.0)
        anomalies: list[OrderAnomaly] = []
        h.kernel.bus.subscribe(OrderAnomaly, anomalies.append)
        tape = KitTape(h, kit.iid, T0, size=0.001)
        order = tape.submit(OrderSide.BUY, 0.002, OrderType.LIMIT, price=60_000.0)
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        tape.trade(59_990.0)
        tape.trade(59_995.0)  # both fills' frames are lost
        first, second = h.emulator.fills
        assert h.emulator.orders[order.client_order_id].status is OrderStatus.FILLED
        h.emulator.listed_late[second.trade_id] = 2
        h.kernel.execution.cancel(CancelOrder("s1", kit.iid, order.client_order_id, 0, 0))  # refused: filled; queried
        await until(lambda: order.status is OrderStatus.FILLED)
        [missing] = [a for a in anomalies if a.kind is AnomalyKind.MISSING_FILLS]
        assert "says 0.002 filled but lists fills for 0.001" in missing.detail and order.client_order_id in holds[kit.iid]
        await until(lambda: order.filled_qty == pytest.approx(0.002), timeout=5.0)
        await until(lambda: holds == {})
        await h.venue.drain()
        assert h.emulator.listed_late[second.trade_id] == 0  # both reads that left it out were made
        fills = h.kernel.result.fills
        assert sorted(f.trade_id for f in fills) == sorted([str(first.trade_id), str(second.trade_id)])
        assert [a.kind for a in anomalies] == [AnomalyKind.MISSING_FILLS, AnomalyKind.FILL_AFTER_CLOSE]
        assert h.kernel.portfolio.position(kit.iid) == pytest.approx(0.002)
        await reconciler.aclose()


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_an_okx_or_bybit_order_whose_fill_the_venue_no_longer_lists_is_flagged_and_its_instrument_held(kit: VenueKit) -> None:
    """Their emulators ignored ``trade_history_ns``: the fill stayed listed, so no test could show the
    daemon's missing-fills path on OKX (3 days of ``/trade/fills``) or Bybit (7 days of executions)."""
    async with kit_harness(kit, [StreamFault("drop", kit.fill_frame)], trade_size_limit=True) as h:
        holds: dict[str, str] = {}
        reconciler = Reconciler(h.kernel, h.venue, _hold_to(holds), 2.0)
        anomalies: list[OrderAnomaly] = []
        h.kernel.bus.subscribe(OrderAnomaly, anomalies.append)
        tape = KitTape(h, kit.iid, T0, size=0.001)
        order = tape.submit(OrderSide.BUY, 0.001, OrderType.LIMIT, price=60_000.0)
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        tape.trade(59_990.0)  # fills at the venue; its frame is lost
        tape.trade(61_000.0)  # a millisecond later: the fill is beyond the history window
        h.emulator.trade_history_ns = 0
        assert h.emulator.orders[order.client_order_id].status is OrderStatus.FILLED
        h.kernel.execution.cancel(CancelOrder("s1", kit.iid, order.client_order_id, 0, 0))  # refused: filled; queried
        await until(lambda: order.status is OrderStatus.FILLED)
        await h.venue.drain()
        assert order.filled_qty == 0.0 and h.kernel.result.fills == []  # nothing invented
        [anomaly] = [a for a in anomalies if a.kind is AnomalyKind.MISSING_FILLS]
        assert anomaly.client_order_id == order.client_order_id and anomaly.instrument_id == kit.iid
        assert "says 0.001 filled but lists fills for 0.0" in anomaly.detail
        assert order.client_order_id in holds[kit.iid]
        await reconciler.aclose()


def _canceled_filled_qty(path: Path, strip: bool) -> list[float]:
    """The ``filled_qty`` of the ``OrderCanceled`` entries journaled at ``path`` (``strip``: first removed, as an
    earlier tradebus journaled a cancel-replace's close: NaN when read)."""
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT seq, payload FROM journal WHERE type = 'OrderCanceled'").fetchall()
        told = []
        for seq, payload in rows:
            entry = msgspec.msgpack.decode(payload)
            told.append(entry.get("filled_qty", math.nan))
            if strip:
                entry.pop("filled_qty", None)
                db.execute("UPDATE journal SET payload = ? WHERE seq = ?", (msgspec.msgpack.encode(entry), seq))
        db.commit()
        return told
    finally:
        db.close()


@pytest.mark.parametrize("journaled_by", ["this tradebus", "an earlier tradebus"])
async def test_a_restart_books_the_late_fill_of_an_order_whose_cancel_replace_answer_closed_it(
    tmp_path: Path, journaled_by: str
) -> None:
    """Binance spot's ``cancelReplace``: the partial fill's frame is lost and the venue lists it late, the user
    stream's cancel frame is lost too; the order's cancel comes from the request's answer. It told no filled
    quantity (its ``cancelResponse.executedQty`` was not read), and the restart did not query a close that told
    none: the process stopped before a read listed the fill, which was never booked, and the instrument stayed
    held (0.0 BTC here, 0.01 at the venue). Now the close tells 0.01, and one that tells nothing (an earlier
    tradebus's journal) is queried."""
    slow = msgspec.structs.replace(FAST, retry_ns=60_000_000_000)  # the first process stops before it reads again
    faults = [StreamFault("drop", '"x": "TRADE"'), StreamFault("drop", '"x": "CANCELED"')]
    path = tmp_path / "journal.sqlite"
    first = Journal(path)
    async with harness(stream_faults=faults, trade_size_limit=True, timeouts=slow, journal=first) as h:
        h.venue.on_replace = h.kernel.execution.submit  # as the live node wires it
        anomalies: list[OrderAnomaly] = []
        h.kernel.bus.subscribe(OrderAnomaly, anomalies.append)
        order = h.submit(OrderSide.BUY, 0.02, 60_000.0)
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        h.trade(59_000.0, 0.01)  # fills half at the venue; its frame is lost
        [fill] = h.emulator.fills
        h.emulator.listed_late[fill.trade_id] = 10**6
        h.kernel.execution.modify(ModifyOrder("s1", IID, order.client_order_id, 0, 0, price=58_000.0))
        await until(lambda: order.status is OrderStatus.CANCELED and any(a.kind is AnomalyKind.MISSING_FILLS for a in anomalies))
        # the answer told 0.01 filled, which the replacement (0.02, sized on 0 known filled) did not count: a
        # second cancel-replace cuts it to what is left, 0.01 (f206034)
        await until(lambda: h.venue.requests["replace"] == 2 and [
            o.order.quantity for o in h.emulator.orders.values() if o.status is OrderStatus.ACCEPTED
        ] == [pytest.approx(0.01)])
        assert order.filled_qty == 0.0
        first.close()  # the process stops: its journal holds the order CANCELED with nothing booked
        # the order's close told 0.01; the first replacement's (cut, nothing filled) 0
        assert _canceled_filled_qty(path, strip=journaled_by != "this tradebus") == [pytest.approx(0.01), 0.0]
        h.emulator.listed_late.clear()  # the venue's trade history lists the fill now
        async with _restarted(h, path) as (kernel, holds):
            restored = kernel.orders.order(order.client_order_id)
            assert restored.status is OrderStatus.CANCELED and restored.filled_qty == pytest.approx(0.01)
            assert kernel.portfolio.account.balance("BTC") == pytest.approx(0.01) and holds == {}
            assert [f.trade_id for f in kernel.result.fills] == [str(fill.trade_id)]


@asynccontextmanager
async def _restarted(
    h: Harness,
    path: Path,
    setup: Callable[[BinanceTrading, LiveClock], None] | None = None,
    anomalies: list[OrderAnomaly] | None = None,
) -> AsyncIterator[tuple[Kernel, dict[str, str]]]:
    """A live process restarted on the journal at ``path`` against ``h``'s emulator, its start-up
    reconciliation run and answered; its kernel and the instruments it holds (``setup``: called on its API first;
    ``anomalies``: gets the order anomalies its reconciliation publishes).
    Each request is given up to WAIT: a slow answer on a loaded machine is no "no answer", which sends the query again."""
    journal = Journal(path)
    clock = LiveClock()
    api = BinanceTrading(h.emulator.rest_url, SecretStr(KEY), SecretStr(SECRET), {IID: INST}, timeout=WAIT)
    if setup is not None:
        setup(api, clock)
    venue = LiveVenue(api, clock)
    kernel = Kernel([INST], clock=clock, venue=venue, timeouts=FAST, initial_cash=100_000.0, journal=journal)
    try:
        unknown = journal.replay(kernel.orders, kernel.portfolio, clock.now_ns(), on_message=kernel.record_journaled)
        if anomalies is not None:
            kernel.bus.subscribe(OrderAnomaly, anomalies.append)
        venue.on_answer = kernel.execution.reconcile_order
        holds: dict[str, str] = {IID: "live start-up: reconciling positions with the venue"}
        reconciler = Reconciler(kernel, venue, _hold_to(holds), 2.0)
        await reconciler.startup(unknown, [])
        await venue.drain(WAIT)
        await reconciler.compare_balances(startup=True)
        yield kernel, holds
    finally:
        await venue.aclose()
        journal.close()


async def test_a_closed_order_queried_at_a_restart_for_the_filled_quantity_its_close_did_not_tell_is_not_queried_again(
    tmp_path: Path,
) -> None:
    """A journal of an earlier tradebus holds a canceled order without the venue's filled quantity: the
    first restart queries it. Its answer was not journaled, so every later restart queried it again (a
    Binance spot account with thousands of such orders sent thousands of queries at every start); the
    venue's filled quantity it tells is journaled now."""
    path = tmp_path / "journal.sqlite"
    first = Journal(path)
    async with harness(journal=first, timeouts=ANSWERED, request_timeout=WAIT) as h:
        order = h.submit(OrderSide.BUY, 0.01, 50_000.0)
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        h.kernel.execution.cancel(CancelOrder("s1", IID, order.client_order_id, 0, 0))
        await until(lambda: order.status is OrderStatus.CANCELED)
        await settled(h)
        first.close()
        assert _canceled_filled_qty(path, strip=True) == [0.0]  # as an earlier tradebus journaled it: none told
        queries = ("GET", "/api/v3/order", order.client_order_id)
        before = h.emulator.requests.count(queries)
        for _ in range(2):
            async with _restarted(h, path) as (kernel, holds):
                restored = kernel.orders.order(order.client_order_id)
                assert restored.status is OrderStatus.CANCELED and restored.venue_filled_qty == 0.0 and holds == {}
        assert h.emulator.requests.count(queries) - before == 1


async def test_a_restart_logs_how_many_closed_orders_it_queries(tmp_path: Path) -> None:
    """Thousands of closed orders a journal of an earlier tradebus holds without the venue's filled quantity are
    each queried at the first restart: the start-up says how many before it sends them (it logged one line per
    order, no count); the second restart queries none. The first process waits for its submits' answers: one
    answered past FAST's 0.3 s on a loaded machine was queried there, a query this counted as the restart's."""
    path = tmp_path / "journal.sqlite"
    first = Journal(path)
    async with harness(journal=first, timeouts=ANSWERED, request_timeout=WAIT) as h:
        orders = [h.submit(OrderSide.BUY, 0.01, 50_000.0 - k) for k in range(3)]
        await until(lambda: all(o.status is OrderStatus.ACCEPTED for o in orders))
        for order in orders:
            h.kernel.execution.cancel(CancelOrder("s1", IID, order.client_order_id, 0, 0))
        await until(lambda: all(o.status is OrderStatus.CANCELED for o in orders))
        await settled(h)
        first.close()
        assert _canceled_filled_qty(path, strip=True) == [0.0] * 3
        lines: list[str] = []
        sink = logger.add(lines.append, level="INFO", format="{message}")
        try:
            async with _restarted(h, path):
                pass
            async with _restarted(h, path):
                pass
        finally:
            logger.remove(sink)
        counts = [line for line in lines if "closed order(s)" in line]
        assert counts == [
            "reconciliation: 3 closed order(s) journaled with fewer fills booked than the venue may have filled, "
            "last heard of within the venue's fills window: querying them (through the account's rate budget)\n"
        ]
        queried = [c for m, p, c in h.emulator.requests if (m, p) == ("GET", "/api/v3/order")]
        assert sorted(queried) == sorted(o.client_order_id for o in orders)


async def _canceled_as_an_earlier_tradebus_journaled_it(h: Harness, path: Path, first: Journal) -> Order:
    """A buy placed and canceled at ``h``'s emulator, nothing filled; ``first`` closed with the cancel stripped of
    the venue's filled quantity (as an earlier tradebus journaled it: a restart queries it). ``h`` waits for its
    submits' answers (``ANSWERED``): a submit answered late on a loaded machine is queried, and the answer, journaled,
    tells the filled quantity the stripped cancel does not."""
    order = h.submit(OrderSide.BUY, 0.01, 50_000.0)
    await until(lambda: order.status is OrderStatus.ACCEPTED)
    h.kernel.execution.cancel(CancelOrder("s1", IID, order.client_order_id, 0, 0))
    await until(lambda: order.status is OrderStatus.CANCELED)
    await settled(h)
    first.close()
    assert _canceled_filled_qty(path, strip=True) == [0.0]
    return order


async def test_a_closed_order_binance_spot_archived_is_queried_at_one_restart_not_at_every_one(tmp_path: Path) -> None:
    """Binance spot archives a CANCELED order with nothing executed 90 days after it closed: its query answers
    ``-2026``. That was no answer here (asked again every retry, and at every restart, forever: spot has no fills
    window); it says the order filled nothing, which is journaled like any answer's quantity."""
    path = tmp_path / "journal.sqlite"
    first = Journal(path)
    async with harness(journal=first, timeouts=ANSWERED, request_timeout=WAIT) as h:
        order = await _canceled_as_an_earlier_tradebus_journaled_it(h, path, first)
        h.emulator.archive_after_ms = 0  # the 90 days have passed
        queries = ("GET", "/api/v3/order", order.client_order_id)
        before = h.emulator.requests.count(queries)
        for _ in range(3):
            async with _restarted(h, path) as (kernel, holds):
                restored = kernel.orders.order(order.client_order_id)
                assert restored.status is OrderStatus.CANCELED and restored.venue_filled_qty == 0.0 and holds == {}
        assert h.emulator.requests.count(queries) - before == 1


@pytest.mark.parametrize("closed", ["longer ago than the venue keeps it", "within the time the venue keeps it"])
async def test_a_closed_order_the_venue_no_longer_knows_is_settled_only_beyond_the_time_it_keeps_unfilled_ones(
    tmp_path: Path, closed: str
) -> None:
    """A venue that forgets a CANCELED or EXPIRED order without fills some time after it closed (and keeps those
    with fills) answers "no such order" (``-2013``) after that: nothing filled, journaled, not asked again. It was
    queried at every restart; an order closed more recently than that is not concluded unfilled."""
    path = tmp_path / "journal.sqlite"
    first = Journal(path)
    async with harness(journal=first, timeouts=ANSWERED, request_timeout=WAIT) as h:
        order = await _canceled_as_an_earlier_tradebus_journaled_it(h, path, first)
        del h.emulator.orders[order.client_order_id]  # the venue no longer knows it
        beyond = closed.startswith("longer")

        def keeps(api: BinanceTrading, clock: LiveClock) -> None:
            ago = clock.now_ns() - order.ts_last - CLOCK_MARGIN_NS
            api.forgets_unfilled_closed_ns = ago - 1_000_000_000 if beyond else ago + 3_600_000_000_000

        queries = ("GET", "/api/v3/order", order.client_order_id)
        before = h.emulator.requests.count(queries)
        for _ in range(3):
            async with _restarted(h, path, keeps) as (kernel, holds):
                restored = kernel.orders.order(order.client_order_id)
                assert restored.status is OrderStatus.CANCELED and holds == {}
                assert restored.venue_filled_qty == 0.0 if beyond else math.isnan(restored.venue_filled_qty)
        assert h.emulator.requests.count(queries) - before == (1 if beyond else 3)


async def test_a_released_order_whose_fills_are_read_again_is_forgotten_only_once_they_are_booked() -> None:
    """An order released while the venue still lists fewer fills than it says filled stays known (and in the
    venue) until the reads again booked them on it; forgotten earlier, the reads stopped and the fill went unbooked."""
    async with harness(stream_faults=_both_fill_frames_dropped(), trade_size_limit=True, timeouts=ANSWERED, request_timeout=WAIT) as h:
        om = h.kernel.orders
        om.keep_released, om.keep_released_ns = 0, 0
        order, late = await _filled_twice_unseen(h, late_reads=2)
        assert order.filled_qty == pytest.approx(0.01)  # the query's answer lacks the second fill
        om.release(order.client_order_id)  # as the daemon's outputs do once its FILLED row is written
        assert om.get(order.client_order_id) is order and h.venue.order(order.client_order_id) is order
        await until(lambda: order.filled_qty == pytest.approx(0.02))
        await settled(h)
        assert [f.trade_id for f in h.kernel.result.fills][1] == late and h.venue.requests["query"] == 3
        other = h.submit(OrderSide.BUY, 0.001)
        await until(lambda: other.client_order_id in h.emulator.orders)
        h.trade(60_000.0)
        await until(lambda: other.status is OrderStatus.FILLED)
        om.release(other.client_order_id)
        assert om.get(order.client_order_id) is None and h.venue.order(order.client_order_id) is None
        assert h.kernel.portfolio.position(IID) == pytest.approx(0.021)
