"""A cancel or amend the venue refuses while the order is still working: sent again when the venue says "try
again later", and the strategy told when the refusal is final (``OrderCancelRejected``).

Bybit answers ``110079`` ("the order is processing and can not be operated, please try again later", v5 error
codes) to a cancel or amend of an order the venue is still busy with. It was a final refusal: the cancel was
never sent again, the order kept working at the venue, and nothing told the strategy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from loguru import logger
from pydantic import SecretStr

from tests.live.live_harness import KEY, SECRET, WAIT, until
from tests.live.venue_kits import BYBIT, KIT_ANSWERED, OKX, PASSPHRASE, KitTape, VenueKit, kit_harness
from tradebus.adapters.common.account_emulator import RestFault, StreamFault
from tradebus.engine.clock import LiveClock
from tradebus.engine.messages import (
    CancelOrder,
    ModifyOrder,
    OrderCanceled,
    OrderCancelRejected,
    OrderModified,
    OrderSide,
    OrderStatus,
    OrderTimedOut,
    OrderType,
    SubmitOrder,
)
from tradebus.execution.engine import OrderTimeouts
from tradebus.execution.journal import Journal
from tradebus.execution.live import BUSY_RETRY_DELAYS
from tradebus.node.live import ApiKeys, kill_switch, parse_live_config
from tradebus.strategies.base import Strategy

CANCEL = "/v5/order/cancel"
AMEND = "/v5/order/amend"
OKX_CANCEL = "/api/v5/trade/cancel-order"
T0 = 1_786_310_819_680_000_000
#: No submit or cancel timeout fires before the venue's last answer, however late it comes (no timing asserted);
#: give the REST client ``request_timeout=WAIT`` with it.
CALM = KIT_ANSWERED


class CancelWatcher(Strategy):
    """Records the cancel refusals its hook is called with."""

    def __init__(self, instrument_id: str = BYBIT.iid) -> None:
        super().__init__(instrument_id, strategy_id="s1")
        self.refused: list[OrderCancelRejected] = []
        self.canceled: list[OrderCanceled] = []

    def on_order_cancel_rejected(self, event: OrderCancelRejected) -> None:
        self.refused.append(event)

    def on_order_canceled(self, event: OrderCanceled) -> None:
        self.canceled.append(event)


def _posts(emulator: Any, path: str) -> list[str]:
    return [c for m, p, c in emulator.requests if m == "POST" and p == path]


async def test_a_cancel_refused_as_busy_is_sent_again_and_the_order_canceled() -> None:
    busy = RestFault("refuse", "POST", CANCEL, code="110079")
    async with kit_harness(BYBIT, rest_faults=[busy], timeouts=CALM, request_timeout=WAIT) as h:
        execution = h.kernel.execution
        order = execution.submit(SubmitOrder("s1", BYBIT.iid, "", OrderSide.BUY, 0.002, 0, 0, OrderType.LIMIT, 1_000.0))
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        execution.cancel(CancelOrder("s1", BYBIT.iid, order.client_order_id, 0, 0))
        await until(lambda: order.status is OrderStatus.CANCELED)
        await h.venue.drain()
        assert busy.fired
        assert h.emulator.orders[order.client_order_id].status is OrderStatus.CANCELED
    assert _posts(h.emulator, CANCEL) == [order.client_order_id, order.client_order_id]
    assert h.venue.requests["cancel"] == 2


async def test_a_cancel_refused_while_the_order_works_tells_the_strategy_and_the_order_works_on() -> None:
    faults = [RestFault("refuse", "POST", CANCEL, code=code) for code in ("110079",) * 4]
    watcher = CancelWatcher()
    async with kit_harness(BYBIT, rest_faults=faults, strategies=[watcher], timeouts=CALM, request_timeout=WAIT) as h:
        timed_out: list[OrderTimedOut] = []
        h.kernel.bus.subscribe(OrderTimedOut, timed_out.append)
        execution = h.kernel.execution
        order = execution.submit(SubmitOrder("s1", BYBIT.iid, "", OrderSide.BUY, 0.002, 0, 0, OrderType.LIMIT, 1_000.0))
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        execution.cancel(CancelOrder("s1", BYBIT.iid, order.client_order_id, 0, 0))
        await until(lambda: watcher.refused, timeout=WAIT)
        await h.venue.drain()
        (refused,) = watcher.refused
        assert refused.client_order_id == order.client_order_id and "110079" in refused.reason
        assert order.status is OrderStatus.ACCEPTED
        assert h.emulator.orders[order.client_order_id].status is OrderStatus.ACCEPTED
        assert not timed_out
        # The next cancel (the faults are spent) is sent and done.
        execution.cancel(CancelOrder("s1", BYBIT.iid, order.client_order_id, 0, 0))
        await until(lambda: order.status is OrderStatus.CANCELED)
        await h.venue.drain()
    assert all(f.fired for f in faults)  # the cancel and its three re-sends, then the next cancel that went through
    assert len(_posts(h.emulator, CANCEL)) == 5


async def test_a_cancel_refused_finally_is_told_at_once_without_re_sending() -> None:
    refused_code = RestFault("refuse", "POST", CANCEL, code="10001")
    watcher = CancelWatcher()
    async with kit_harness(BYBIT, rest_faults=[refused_code], strategies=[watcher], timeouts=CALM, request_timeout=WAIT) as h:
        execution = h.kernel.execution
        order = execution.submit(SubmitOrder("s1", BYBIT.iid, "", OrderSide.BUY, 0.002, 0, 0, OrderType.LIMIT, 1_000.0))
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        execution.cancel(CancelOrder("s1", BYBIT.iid, order.client_order_id, 0, 0))
        await until(lambda: watcher.refused, timeout=WAIT)
        await h.venue.drain()
        assert "10001" in watcher.refused[0].reason and order.status is OrderStatus.ACCEPTED
    assert _posts(h.emulator, CANCEL) == [order.client_order_id]


async def test_an_amend_refused_as_busy_is_sent_again_and_applied() -> None:
    busy = RestFault("refuse", "POST", AMEND, code="110079")
    async with kit_harness(BYBIT, rest_faults=[busy], timeouts=CALM, request_timeout=WAIT) as h:
        modified: list[OrderModified] = []
        h.kernel.bus.subscribe(OrderModified, modified.append)
        execution = h.kernel.execution
        order = execution.submit(SubmitOrder("s1", BYBIT.iid, "", OrderSide.BUY, 0.002, 0, 0, OrderType.LIMIT, 1_000.0))
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        execution.modify(ModifyOrder("s1", BYBIT.iid, order.client_order_id, 0, 0, price=1_100.0))
        await until(lambda: order.price == 1_100.0)
        await h.venue.drain()
        assert busy.fired and len(modified) == 1
        assert h.emulator.orders[order.client_order_id].order.price == 1_100.0
    assert _posts(h.emulator, AMEND) == [order.client_order_id, order.client_order_id]


async def test_an_okx_cancel_refused_while_the_order_works_tells_the_strategy() -> None:
    """Any venue: a cancel refused (OKX ``51000``, a parameter error) while the order works reaches the strategy."""
    refused_code = RestFault("refuse", "POST", "/api/v5/trade/cancel-order", code="51000")
    got: list[OrderCancelRejected] = []
    async with kit_harness(OKX, rest_faults=[refused_code], timeouts=CALM, request_timeout=WAIT) as h:
        h.kernel.bus.subscribe(OrderCancelRejected, got.append)
        execution = h.kernel.execution
        order = execution.submit(SubmitOrder("s1", OKX.iid, "", OrderSide.BUY, 0.002, 0, 0, OrderType.LIMIT, 1_000.0))
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        execution.cancel(CancelOrder("s1", OKX.iid, order.client_order_id, 0, 0))
        await until(lambda: got, timeout=WAIT)
        await h.venue.drain()
        assert "51000" in got[0].reason and order.status is OrderStatus.ACCEPTED
        assert h.emulator.orders[order.client_order_id].status is OrderStatus.ACCEPTED


async def test_a_cancel_refused_while_the_order_works_is_journaled_and_a_restart_replays_it_unchanged(tmp_path: Path) -> None:
    """The journal holds the cancel's outcome (not only the WARNING log), and a new process on it replays the entry
    without touching the order: it is recovered from ACCEPTED, resolved working at the venue and cancelable."""
    journal = tmp_path / "journal.sqlite"
    emu = BYBIT.emulator([RestFault("refuse", "POST", CANCEL, code="10001")])
    kit = VenueKit(**{**BYBIT.__dict__, "make_emulator": lambda *a, **k: emu})  # one account across both processes
    watcher = CancelWatcher()
    async with kit_harness(kit, journal=journal, strategies=[watcher], timeouts=CALM, request_timeout=WAIT) as h:
        execution = h.kernel.execution
        order = execution.submit(SubmitOrder("s1", BYBIT.iid, "", OrderSide.BUY, 0.002, 0, 0, OrderType.LIMIT, 1_000.0))
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        execution.cancel(CancelOrder("s1", BYBIT.iid, order.client_order_id, 0, 0))
        await until(lambda: watcher.refused, timeout=WAIT)
        await h.venue.drain()
        coid = order.client_order_id
    store = Journal(journal)
    try:
        kinds = [(e.kind, type(e.message).__name__) for e in store.entries() if e.message.client_order_id == coid]
    finally:
        store.close()
    assert kinds[-2:] == [("command", "CancelOrder"), ("event", "OrderCancelRejected")]
    async with kit_harness(kit, journal=journal, timeouts=CALM, request_timeout=WAIT) as h:  # a new process on the same journal
        again = h.kernel.orders.order(coid)
        assert again.status is OrderStatus.UNKNOWN and again.reason == "recovered after restart from ACCEPTED"
        h.venue.track(again)
        h.kernel.execution.resolve_unknown(coid)  # as the daemon's start does: a query
        await until(lambda: again.status is OrderStatus.ACCEPTED)
        h.kernel.execution.cancel(CancelOrder("s1", BYBIT.iid, coid, 0, 0))
        await until(lambda: again.status is OrderStatus.CANCELED)
        await h.venue.drain()


async def test_the_kill_switch_sends_a_cancel_refused_as_busy_again_as_the_daemon_does(tmp_path: Path) -> None:
    """Three "try again later" answers in a row: the daemon's cancel goes through on its fourth request; the kill
    switch (one cancel a round, three rounds) stopped with the order still open and the user told to run it again."""
    faults = [RestFault("refuse", "POST", CANCEL, code="110079") for _ in BUSY_RETRY_DELAYS]
    async with kit_harness(BYBIT, rest_faults=faults, timeouts=CALM, request_timeout=WAIT) as h:
        order = h.kernel.execution.submit(SubmitOrder("s1", BYBIT.iid, "", OrderSide.BUY, 0.002, 0, 0, OrderType.LIMIT, 1_000.0))
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        config = parse_live_config(BYBIT.config(tmp_path, "ws://127.0.0.1:9", h.emulator, request_timeout=WAIT), "<test>")
        h.stream.stop()  # the daemon is stopped before the kill
        await until(lambda: not h.emulator.sessions)
        canceled = await kill_switch(config, ApiKeys(SecretStr(KEY), SecretStr(SECRET)), "test kill")
        assert canceled == [order.client_order_id]
        assert h.emulator.orders[order.client_order_id].status is OrderStatus.CANCELED
    assert all(f.fired for f in faults)
    assert len(_posts(h.emulator, CANCEL)) == len(BUSY_RETRY_DELAYS) + 1  # in one round (by venue order id)


async def test_a_cancel_timeout_shorter_than_the_busy_re_sends_times_each_re_send_and_the_order_is_not_unknown() -> None:
    """A cancel timeout of 0.5 s, under the re-sends' 0.7 s: the venue answered every request, yet the order went
    ``UNKNOWN`` ("cancel not confirmed within 0.5 s") before the last re-send. The timeout counts from the latest.

    Shown here with re-sends 1 s apart under a 2 s cancel timeout (each answer may take up to 1 s on a loaded
    machine) and no submit timeout (its ``OrderTimedOut`` would be one more)."""
    delays = (1.0, 1.0, 1.0)
    quick = OrderTimeouts(submit_ns=int(WAIT * 1e9), cancel_ns=2_000_000_000, retry_ns=200_000_000, check_ns=None)
    assert sum(delays) > quick.cancel_ns / 1e9
    done = [RestFault("refuse", "POST", CANCEL, code="110079") for _ in delays]  # the last re-send goes through
    refused = [RestFault("refuse", "POST", CANCEL, code="110079") for _ in (*delays, 0)]
    for faults, final in ((done, OrderStatus.CANCELED), (refused, OrderStatus.ACCEPTED)):
        watcher = CancelWatcher()
        async with kit_harness(BYBIT, rest_faults=faults, strategies=[watcher], timeouts=quick, request_timeout=WAIT) as h:
            h.venue.busy_delays = delays
            timed_out: list[OrderTimedOut] = []
            h.kernel.bus.subscribe(OrderTimedOut, timed_out.append)
            execution = h.kernel.execution
            order = execution.submit(SubmitOrder("s1", BYBIT.iid, "", OrderSide.BUY, 0.002, 0, 0, OrderType.LIMIT, 1_000.0))
            await until(lambda: order.status is OrderStatus.ACCEPTED)
            execution.cancel(CancelOrder("s1", BYBIT.iid, order.client_order_id, 0, 0))
            await until(lambda: order.status is OrderStatus.CANCELED or watcher.refused)
            await h.venue.drain()
            # Closed, or its refusal told: no timeout of this cancel can fire after.
            assert all(f.fired for f in faults) and not timed_out and order.status is final
            assert h.emulator.orders[order.client_order_id].status is final
            assert len(watcher.refused) == (final is OrderStatus.ACCEPTED)


class GatedClock(LiveClock):
    """A live clock whose alerts named with ``gated`` run with the clock pinned at their due time, as a loop never
    late would run them, and those due before :meth:`open` wait for it: what they judge is judged once the test has
    set the scene, as at their due time, however late the loop read the venue's answers or fired them."""

    def __init__(self, gated: str) -> None:
        super().__init__()
        self.gated = gated
        self.opened = False
        self._waiting: dict[str, Callable[[], None]] = {}

    def set_alert(self, name: str, at_ns: int, callback: Any) -> None:
        if self.gated not in name:
            super().set_alert(name, at_ns, callback)
            return

        def fire(event: Any) -> None:
            def run() -> None:
                with self.pinned(event.ts_event):
                    callback(event)

            if self.opened:
                run()
            else:
                self._waiting[name] = run

        super().set_alert(name, at_ns, fire)

    def cancel(self, name: str) -> None:
        self._waiting.pop(name, None)
        super().cancel(name)

    def open(self) -> None:
        self.opened = True
        waiting, self._waiting = self._waiting, {}
        for run in waiting.values():
            run()


async def test_a_busy_cancel_whose_re_send_gets_no_answer_still_times_out_and_is_queried() -> None:
    """The timeout counts from the latest request, so a re-send without an answer (a 503 before processing) moves the
    order to ``UNKNOWN`` all the same, 2 s after that re-send, and the query finds it working. The cancel timeout is
    judged only once the re-send went unanswered, as at its due time (:class:`GatedClock`): with the busy refusal
    read more than 2 s late it fired before any re-send, and the test proved only a plain cancel timeout."""
    quick = OrderTimeouts(submit_ns=int(WAIT * 1e9), cancel_ns=2_000_000_000, retry_ns=200_000_000, check_ns=None)
    faults = [RestFault("refuse", "POST", CANCEL, code="110079"), RestFault("error5xx", "POST", CANCEL)]
    clock = GatedClock("order-cancel-")
    async with kit_harness(BYBIT, rest_faults=faults, timeouts=quick, request_timeout=WAIT, clock=clock) as h:
        timed_out: list[OrderTimedOut] = []
        h.kernel.bus.subscribe(OrderTimedOut, timed_out.append)
        execution = h.kernel.execution
        order = execution.submit(SubmitOrder("s1", BYBIT.iid, "", OrderSide.BUY, 0.002, 0, 0, OrderType.LIMIT, 1_000.0))
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        execution.cancel(CancelOrder("s1", BYBIT.iid, order.client_order_id, 0, 0))
        await until(lambda: faults[1].fired and h.venue.in_flight == 0)  # refused busy, sent again, no answer to that
        resent = h.venue.cancel_resent_ns(order.client_order_id)
        assert resent is not None and not timed_out and order.status is OrderStatus.ACCEPTED
        clock.open()
        await until(lambda: timed_out)
        assert timed_out[0].ts_event == resent + quick.cancel_ns  # from the re-send, not from the first request
        await until(lambda: order.status is OrderStatus.ACCEPTED)  # resolved by the query
        await h.venue.drain()
        assert len(_posts(h.emulator, CANCEL)) == 2 and len(timed_out) == 1
        assert h.emulator.orders[order.client_order_id].status is OrderStatus.ACCEPTED


async def _cancel_twice_while_okx_cancels(h: Any, release: asyncio.Event) -> Any:
    """An OKX order canceled twice: the first cancel is held at the venue (the order "being canceled"), the second is
    answered ``51410`` (cancellation failed as the order is already under cancelling status); then the first is done."""
    execution = h.kernel.execution
    order = execution.submit(SubmitOrder("s1", OKX.iid, "", OrderSide.BUY, 0.002, 0, 0, OrderType.LIMIT, 1_000.0))
    await until(lambda: order.status is OrderStatus.ACCEPTED)
    execution.cancel(CancelOrder("s1", OKX.iid, order.client_order_id, 0, 0))
    await until(lambda: len(_posts(h.emulator, OKX_CANCEL)) == 1)
    execution.cancel(CancelOrder("s1", OKX.iid, order.client_order_id, 0, 0))
    # The second cancel's answer handled, and whatever it started (a query) over: only the held cancel is in flight.
    await until(lambda: len(_posts(h.emulator, OKX_CANCEL)) == 2 and h.venue.in_flight == 1)
    assert order.status is OrderStatus.ACCEPTED and h.emulator.orders[order.client_order_id].status is OrderStatus.ACCEPTED
    release.set()
    return order


async def test_an_okx_cancel_answered_cancel_pending_tells_the_strategy_nothing_but_the_cancel() -> None:
    """OKX ``51410`` refuses a cancel because an earlier one is being done: not a refusal of the cancel. The query after
    it found the order still working, and the strategy got ``OrderCancelRejected``, then ``OrderCanceled``."""
    release = asyncio.Event()
    faults = [RestFault("hold", "POST", OKX_CANCEL, release=release), RestFault("refuse", "POST", OKX_CANCEL, code="51410")]
    watcher = CancelWatcher(OKX.iid)
    async with kit_harness(OKX, rest_faults=faults, strategies=[watcher], timeouts=CALM, request_timeout=WAIT) as h:
        order = await _cancel_twice_while_okx_cancels(h, release)
        await until(lambda: order.status is OrderStatus.CANCELED)
        await h.venue.drain()
        assert all(f.fired for f in faults)
        assert not watcher.refused and [e.client_order_id for e in watcher.canceled] == [order.client_order_id]
    assert h.venue.requests["query"] == 0


async def test_an_okx_cancel_answered_cancel_pending_keeps_the_cancel_timeout_that_finds_the_order_canceled() -> None:
    """The first cancel is done but neither its answer nor the stream tells it: only the cancel timeout (the second
    cancel's, which replaced the first's) queries the order. The false refusal stopped it, and with no periodic check
    the order stayed ACCEPTED here, canceled at the venue."""
    release = asyncio.Event()
    faults = [RestFault("hold", "POST", OKX_CANCEL, release=release), RestFault("refuse", "POST", OKX_CANCEL, code="51410")]
    timeouts = OrderTimeouts(submit_ns=5_000_000_000, cancel_ns=2_000_000_000, retry_ns=200_000_000, check_ns=None)
    watcher = CancelWatcher(OKX.iid)
    async with kit_harness(OKX, [StreamFault("drop", '"state": "canceled"')], rest_faults=faults, strategies=[watcher],
                           timeouts=timeouts, request_timeout=WAIT) as h:
        timed_out: list[OrderTimedOut] = []
        h.kernel.bus.subscribe(OrderTimedOut, timed_out.append)
        order = await _cancel_twice_while_okx_cancels(h, release)
        await until(lambda: h.emulator.orders[order.client_order_id].status is OrderStatus.CANCELED)
        await until(lambda: order.status is OrderStatus.CANCELED, timeout=WAIT)
        await h.venue.drain()
        assert not watcher.refused and len(timed_out) == 1


async def test_an_iceberg_canceled_whose_tip_cancel_is_refused_cancels_it_again_and_ends_canceled() -> None:
    """The venue refused the tip's cancel (``10001``) and works it on: the iceberg, which sent each child's cancel once,
    stayed ``canceling`` for the rest of the run with its tip working. It sends the cancel again at its next poll."""
    from tests.live.iceberg_strategy import IcebergBuy

    refused_code = RestFault("refuse", "POST", CANCEL, code="10001")
    strategy = IcebergBuy(BYBIT.iid, quantity=0.004, price=1_000.0, display=0.002, poll="100ms", strategy_id="s1")
    got: list[OrderCancelRejected] = []
    async with kit_harness(BYBIT, rest_faults=[refused_code], strategies=[strategy], timeouts=CALM, request_timeout=WAIT) as h:
        h.kernel.bus.subscribe(OrderCancelRejected, got.append)
        algo = strategy.algo
        assert algo is not None
        await until(lambda: algo.children and h.kernel.orders.order(algo.children[0]).status is OrderStatus.ACCEPTED)
        algo.cancel("test")
        await until(lambda: algo.status != "canceling", timeout=WAIT)
        await h.venue.drain()
        (tip,) = algo.children
        assert algo.status == "canceled" and len(got) == 1
        assert h.kernel.orders.order(tip).status is OrderStatus.CANCELED
        assert h.emulator.orders[tip].status is OrderStatus.CANCELED
    assert _posts(h.emulator, CANCEL) == [tip, tip]


class Bracketing(Strategy):
    """A strategy the test drives by hand, with contingent orders."""

    contingent = True

    def __init__(self, instrument_id: str) -> None:
        super().__init__(instrument_id, strategy_id="s1")


#: A stop's cancel path and a final refusal code of each venue (OKX places a stop as an algo order).
STOP_CANCEL = {"bybit": (BYBIT, CANCEL, "10001"), "okx": (OKX, "/api/v5/trade/cancel-algos", "51000")}


@pytest.mark.parametrize("venue", list(STOP_CANCEL))
async def test_a_bracket_whose_stop_loss_cancel_is_refused_after_the_take_profit_filled_cancels_it_again(venue: str) -> None:
    """Buy 0.002 at market (fills at 60,000), stop-loss 59,000, take-profit 61,000 (spot). A trade at 61,100 fills the
    take-profit; the venue refuses the stop-loss's cancel and works it on. The OCO sent that cancel once: the stop kept
    working alone, a sell of coins already sold. It is sent again at the next trade, and nothing works after."""
    kit, path, code = STOP_CANCEL[venue]
    strategy = Bracketing(kit.iid)
    async with kit_harness(kit, rest_faults=[RestFault("refuse", "POST", path, code=code)], strategies=[strategy],
                           timeouts=CALM, request_timeout=WAIT) as h:
        got: list[OrderCancelRejected] = []
        h.kernel.bus.subscribe(OrderCancelRejected, got.append)
        tape = KitTape(h, kit.iid, T0)
        entry_id = strategy.submit_bracket(kit.iid, OrderSide.BUY, 0.002, stop_loss=59_000.0, take_profit=61_000.0)
        assert entry_id is not None
        await until(lambda: h.kernel.orders.order(entry_id).status is OrderStatus.ACCEPTED)
        tape.trade(60_000.0)
        await until(lambda: h.kernel.orders.order(entry_id).status is OrderStatus.FILLED)
        tape.trade(60_000.0)  # arms the children
        children = lambda: [o for o in h.kernel.orders.orders() if o.client_order_id != entry_id]  # noqa: E731
        await until(lambda: len(children()) == 2 and all(o.status is OrderStatus.ACCEPTED for o in children()))
        stop, target = children()
        tape.trade(61_100.0)  # fills the take-profit
        await until(lambda: target.status is OrderStatus.FILLED and len(got) == 1, timeout=WAIT)
        await h.venue.drain()
        assert got[0].client_order_id == stop.client_order_id and stop.status is OrderStatus.ACCEPTED
        tape.trade(61_050.0)  # the cancel is sent again
        await until(lambda: stop.status is OrderStatus.CANCELED, timeout=WAIT)
        await h.venue.drain()
        assert h.emulator.orders[stop.client_order_id].status is OrderStatus.CANCELED
        assert [o.client_order_id for o in h.kernel.orders.open_orders()] == []
        assert len(tape.posts(path)) == 2
        tape.trade(61_000.0)
        await h.venue.drain()
        assert len(tape.posts(path)) == 2  # closed: not sent again


async def test_a_restart_cancels_the_stop_loss_whose_cancel_the_venue_refused_after_the_take_profit_filled(
    tmp_path: Path,
) -> None:
    """The take-profit filled and the venue refused the stop-loss's cancel; the daemon stopped before a market event.
    The restart restored the OCO group only with two members working: the stop worked on alone. It is canceled at the
    first trade after the restart."""
    journal = tmp_path / "journal.sqlite"
    emu = BYBIT.emulator([RestFault("refuse", "POST", CANCEL, code="10001")])
    kit = VenueKit(**{**BYBIT.__dict__, "make_emulator": lambda *a, **k: emu})  # one account across both processes
    strategy = Bracketing(BYBIT.iid)
    async with kit_harness(kit, journal=journal, strategies=[strategy], timeouts=CALM, request_timeout=WAIT) as h:
        got: list[OrderCancelRejected] = []
        h.kernel.bus.subscribe(OrderCancelRejected, got.append)
        tape = KitTape(h, BYBIT.iid, T0)
        entry_id = strategy.submit_bracket(BYBIT.iid, OrderSide.BUY, 0.002, stop_loss=59_000.0, take_profit=61_000.0)
        assert entry_id is not None
        await until(lambda: h.kernel.orders.order(entry_id).status is OrderStatus.ACCEPTED)
        tape.trade(60_000.0)
        await until(lambda: h.kernel.orders.order(entry_id).status is OrderStatus.FILLED)
        tape.trade(60_000.0)  # arms the children
        children = lambda: [o for o in h.kernel.orders.orders() if o.client_order_id != entry_id]  # noqa: E731
        await until(lambda: len(children()) == 2 and all(o.status is OrderStatus.ACCEPTED for o in children()))
        stop_id = children()[0].client_order_id
        tape.trade(61_100.0)  # fills the take-profit
        await until(lambda: len(got) == 1, timeout=WAIT)
        await h.venue.drain()
    assert emu.orders[stop_id].status is OrderStatus.ACCEPTED
    async with kit_harness(kit, journal=journal, strategies=[Bracketing(BYBIT.iid)], timeouts=CALM, request_timeout=WAIT) as h:
        stop = h.kernel.orders.order(stop_id)
        h.venue.track(stop)
        h.kernel.execution.resolve_unknown(stop_id)  # as the daemon's start does: a query
        await until(lambda: stop.status is OrderStatus.ACCEPTED)
        KitTape(h, BYBIT.iid, T0 + 10_000_000).trade(61_050.0)
        await until(lambda: stop.status is OrderStatus.CANCELED, timeout=WAIT)
        await h.venue.drain()
        assert emu.orders[stop_id].status is OrderStatus.CANCELED and not h.kernel.orders.open_orders()


async def test_a_restart_cancels_the_children_whose_cancels_the_venue_refused_at_a_timed_exit(tmp_path: Path) -> None:
    """A bracket's timed exit (``exit_after_bars=1``) canceled its children; the venue refused both cancels and the
    daemon stopped before a market event. The restart linked the two children again, both working on. They are
    canceled at the first trade after the restart, and then the exit sells the 0.002 BTC (spot: the children held
    it until then). Before, the exit was sent with the refused cancels and denied for the BTC they held; after the
    restart the children were canceled and the position stayed open, unprotected."""
    from tradebus.engine.messages import Bar, OrderDenied

    journal = tmp_path / "journal.sqlite"
    emu = BYBIT.emulator([RestFault("refuse", "POST", CANCEL, code="10001") for _ in range(2)])
    kit = VenueKit(**{**BYBIT.__dict__, "make_emulator": lambda *a, **k: emu})  # one account across both processes
    strategy = Bracketing(BYBIT.iid)
    async with kit_harness(kit, journal=journal, strategies=[strategy], timeouts=CALM, request_timeout=WAIT) as h:
        got: list[OrderCancelRejected] = []
        h.kernel.bus.subscribe(OrderCancelRejected, got.append)
        denied: list[OrderDenied] = []
        h.kernel.bus.subscribe(OrderDenied, denied.append)
        tape = KitTape(h, BYBIT.iid, T0)
        entry_id = strategy.submit_bracket(BYBIT.iid, OrderSide.BUY, 0.002, stop_loss=59_000.0, take_profit=61_000.0,
                                           exit_after_bars=1)
        assert entry_id is not None
        await until(lambda: h.kernel.orders.order(entry_id).status is OrderStatus.ACCEPTED)
        tape.trade(60_000.0)
        await until(lambda: h.kernel.orders.order(entry_id).status is OrderStatus.FILLED)
        tape.trade(60_000.0)  # arms the children
        children = lambda: [o for o in h.kernel.orders.orders() if o.client_order_id != entry_id]  # noqa: E731
        await until(lambda: len(children()) == 2 and all(o.status is OrderStatus.ACCEPTED for o in children()))
        ids = [o.client_order_id for o in children()]
        for n in (1, 2):  # the fill's bar, then one more: the timed exit
            ts = T0 + n * 60_000_000_000
            h.kernel.process(Bar(BYBIT.iid, ts, ts, 60_000.0, 60_000.0, 60_000.0, 60_000.0, 1.0))
        await until(lambda: len(got) == 2, timeout=WAIT)
        await h.venue.drain()
        assert denied == [] and len(h.kernel.orders.orders()) == 3  # no exit sent while the children hold the BTC
    async with kit_harness(kit, journal=journal, strategies=[Bracketing(BYBIT.iid)], timeouts=CALM, request_timeout=WAIT) as h:
        h.kernel.bus.subscribe(OrderDenied, denied.append)
        orders = [h.kernel.orders.order(c) for c in ids]
        for order in orders:
            h.venue.track(order)
            h.kernel.execution.resolve_unknown(order.client_order_id)  # as the daemon's start does: a query
        await until(lambda: all(o.status is OrderStatus.ACCEPTED for o in orders))
        tape = KitTape(h, BYBIT.iid, T0 + 10_000_000)
        tape.trade(60_050.0)
        await until(lambda: all(o.status is OrderStatus.CANCELED for o in orders), timeout=WAIT)
        exits = lambda: [o for o in h.kernel.orders.orders() if o.client_order_id not in (entry_id, *ids)]  # noqa: E731
        await until(lambda: len(exits()) == 1 and exits()[0].status is OrderStatus.ACCEPTED or bool(denied), timeout=WAIT)
        assert denied == []
        tape.trade(60_100.0)  # fills the exit
        await until(lambda: exits()[0].status is OrderStatus.FILLED, timeout=WAIT)
        await h.venue.drain()
        assert not h.kernel.orders.open_orders()
        assert (exits()[0].side, exits()[0].quantity) == (OrderSide.SELL, 0.002)
        assert h.kernel.portfolio.position(BYBIT.iid) == pytest.approx(0.0, abs=1e-12)
        assert emu.balances.get("BTC", 0.0) == pytest.approx(0.0, abs=1e-12)


async def test_the_kill_switch_logs_a_cancel_answered_cancel_pending_as_pending_not_failed(tmp_path: Path) -> None:
    """OKX answers ``51410`` (an earlier cancel of the order is being done): the kill switch logged ``cancel of ...
    failed`` at WARNING for an order being canceled. It says pending; the next round lists the order again."""
    pending = RestFault("refuse", "POST", OKX_CANCEL, code="51410")
    async with kit_harness(OKX, rest_faults=[pending], timeouts=CALM, request_timeout=WAIT) as h:
        order = h.kernel.execution.submit(SubmitOrder("s1", OKX.iid, "", OrderSide.BUY, 0.002, 0, 0, OrderType.LIMIT, 1_000.0))
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        config = parse_live_config(OKX.config(tmp_path, "ws://127.0.0.1:9", h.emulator, request_timeout=WAIT), "<test>")
        h.stream.stop()  # the daemon is stopped before the kill
        await until(lambda: not h.emulator.sessions)
        lines: list[tuple[str, str]] = []
        sink = logger.add(lambda m: lines.append((m.record["level"].name, m.record["message"])), level="INFO")
        try:
            await kill_switch(config, ApiKeys(SecretStr(KEY), SecretStr(SECRET), SecretStr(PASSPHRASE)), "test kill")
        finally:
            logger.remove(sink)
        assert pending.fired and h.emulator.orders[order.client_order_id].status is OrderStatus.CANCELED
    mine = [(level, text) for level, text in lines if order.client_order_id in text]
    assert mine and all(level == "INFO" and " failed: " not in text for level, text in mine)
    assert any("pending" in text and "earlier cancel" in text for _, text in mine)
