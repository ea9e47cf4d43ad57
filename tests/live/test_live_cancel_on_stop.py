"""A live daemon stopping with ``live.cancel_on_stop`` leaves no order open at the venue, whatever its strategies
still send while it stops (a repeating timer, ``on_stop``).

Against the local Binance spot account emulator and the recorded public stream (all on 127.0.0.1).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from tradebus.adapters.common.local_server import Fault, FaultKind
from tradebus.engine.messages import OrderSide, OrderStatus, OrderType
from tradebus.execution.orders import Order
from tradebus.node.daemon import PaperNode
from tradebus.node.live import LiveNode, _left_reason, _order_left

from .node_testdata import IID
from .test_live_stop_failures import account_and_market, node_on, open_at_venue, resting, run_until_it_stops

pytestmark = pytest.mark.usefixtures("_loguru_to_current_stderr")


def repeating(strategy_id: str, **params: Any) -> dict[str, Any]:
    """A limit buy far below the market at every firing of a timer (:class:`tests.live.resting_strategy.RepeatingBuy`)."""
    return {"name": "tests.live.resting_strategy:RepeatingBuy", "id": strategy_id, "instruments": [IID], "params": params}


def journaled_statuses(node: LiveNode) -> dict[str, OrderStatus]:
    """Each order's status as the daemon's journal holds it (read by a new daemon on it)."""
    again = PaperNode(node.config, handle_signals=False)
    assert again.journal is not None
    try:
        again.journal.replay(again.kernel.orders, again.kernel.portfolio, again.clock.now_ns())
        return {o.client_order_id: o.status for o in again.kernel.orders.orders()}
    finally:
        again.journal.close()


@pytest.mark.timeout(300, method="thread")  # see the next test
async def test_a_sigterm_while_a_timer_keeps_sending_orders_leaves_none_open_at_the_venue(tmp_path: Path) -> None:
    """Before: the stop's cancels went out while the feeds and the 20 ms timer still ran; the timer's orders sent
    during the wait for the cancels (3 s, live.stop_timeout) were never canceled: about 150 orders left open at
    the venue ('stopping with 153 order(s) still open at the venue'), ACCEPTED in the journal."""
    async with account_and_market() as (emulator, srv):
        node = node_on(tmp_path, emulator, srv, [repeating("quoter", every_ms=20)])
        node.handle_signals = True
        strategy = node.kernel.strategies[0]
        signaled = False

        def placed() -> list[str]:  # those sent once the start-up reconciliation ended (those before it are denied)
            orders = [node.kernel.orders.order(c) for c in strategy.sent]  # type: ignore[attr-defined]
            return [o.client_order_id for o in orders if o is not None and o.status is not OrderStatus.DENIED]

        def five_sent() -> bool:
            nonlocal signaled
            if len(placed()) >= 5 and not signaled:
                signaled = True
                os.kill(os.getpid(), signal.SIGTERM)
            return False  # the signal stops the daemon

        await run_until_it_stops(node, five_sent)
        assert node.summary.stop_reason == "signal SIGTERM"
        sent = placed()
        assert len(sent) >= 5 and open_at_venue(emulator) == []
        # every order the strategy sent (and the start-up did not deny) reached the venue and was canceled there, as
        # the daemon and its journal saw
        assert sorted(emulator.orders) == sorted(sent)
        assert {emulator.orders[c].status for c in sent} == {OrderStatus.CANCELED}
        assert {node.kernel.orders.order(c).status for c in sent} == {OrderStatus.CANCELED}  # type: ignore[union-attr]
        journaled = journaled_statuses(node)
        assert {c: s for c, s in journaled.items() if s is not OrderStatus.DENIED} == dict.fromkeys(sent, OrderStatus.CANCELED)


@pytest.mark.timeout(300, method="thread")  # a daemon that never stops: the signal method's error is lost in the loop
async def test_a_timer_sends_no_order_once_the_daemon_stops_while_its_market_stream_is_hung(tmp_path: Path) -> None:
    """Before: the shutdown stopped the timers only once the feeds had ended: the hung market connection took its
    close timeout (2 s) to end, and the 20 ms timer sent about 100 orders after 'live daemon stopping: signal
    SIGTERM'. On a busy loop each of those orders (its submit, its timeout, its queries) made the next wait
    longer: the daemon never reached its clock's stop, still sending orders minutes after the SIGTERM. The
    timers are stopped (and the feeds told to stop) before the shutdown's first await now."""
    at_stop: list[int] = []
    async with account_and_market(market_faults=[Fault(FaultKind.HANG, at=0)]) as (emulator, srv):
        node = node_on(tmp_path, emulator, srv, [repeating("quoter", every_ms=20)])
        node.handle_signals = True
        strategy = node.kernel.strategies[0]
        signaled = False

        def stopping(message: Any) -> None:
            if message.record["message"].startswith("live daemon stopping"):
                at_stop.append(len(strategy.sent))  # type: ignore[attr-defined]

        def five_placed() -> bool:
            nonlocal signaled
            orders = [node.kernel.orders.order(c) for c in strategy.sent]  # type: ignore[attr-defined]
            placed = [o for o in orders if o is not None and o.status is not OrderStatus.DENIED]
            if len(placed) >= 5 and not signaled:
                signaled = True
                os.kill(os.getpid(), signal.SIGTERM)
            return False  # the signal stops the daemon

        sink = logger.add(stopping, level="INFO")
        try:
            await run_until_it_stops(node, five_placed)
        finally:
            logger.remove(sink)
        assert node.summary.stop_reason == "signal SIGTERM"
        sent = strategy.sent  # type: ignore[attr-defined]
        assert sent[at_stop[0]:] == []
        assert open_at_venue(emulator) == []


async def test_an_order_sent_in_on_stop_is_canceled_at_the_venue_too(tmp_path: Path) -> None:
    """Before: on_stop ran after the stop's cancels and after the journal closed: its order was accepted and left
    open at the venue, and the acceptance failed in the journal ('Cannot operate on a closed database')."""
    async with account_and_market() as (emulator, srv):
        node = node_on(tmp_path, emulator, srv, [repeating("quoter", every_ms=60_000, on_stop_price=10_002.0)])
        strategy = node.kernel.strategies[0]
        await run_until_it_stops(node, lambda: node.kernel.result.trades >= 3)
        sent = strategy.sent  # type: ignore[attr-defined]
        assert len(sent) == 1 and open_at_venue(emulator) == []
        assert emulator.orders[sent[0]].status is OrderStatus.CANCELED
        assert node.kernel.orders.order(sent[0]).status is OrderStatus.CANCELED  # type: ignore[union-attr]
        assert journaled_statuses(node) == {sent[0]: OrderStatus.CANCELED}


@pytest.mark.parametrize(("price", "shown"), [(20_000.0, "20000"), (19_999.99, "19999.99")])
async def test_a_stop_with_cancel_on_stop_false_names_each_order_it_leaves_working_and_says_so_in_node_json(
    tmp_path: Path, price: float, shown: str
) -> None:
    """Before: with ``live.cancel_on_stop: false`` the stop left the resting buy (BTCUSDT 0.01 @ 20,000) working at the
    venue and said nothing of it: no log line, and ``node.json`` read as a clean stop's. Each order left is now logged
    (client and venue id, instrument, side, type, quantity, price, filled, status) and listed in ``orders_left``.
    The price as the order has it: one at 19,999.99 read ``@ 20000`` (six significant digits; a take-profit at
    61,854.49 read ``@ 61854.5``), which is no order at the venue."""
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="WARNING", format="{message}")
    try:
        async with account_and_market() as (emulator, srv):
            node = node_on(tmp_path, emulator, srv, [resting("steady", quantity=0.01, price=price)],
                           cancel_on_stop=False)
            strategy = node.kernel.strategies[0]

            def accepted() -> bool:
                order = node.kernel.orders.order(strategy.placed) if strategy.placed else None  # type: ignore[attr-defined]
                return order is not None and order.status is OrderStatus.ACCEPTED

            await run_until_it_stops(node, accepted)
            placed = strategy.placed  # type: ignore[attr-defined]
            assert open_at_venue(emulator) == [placed]
            venue_id = node.kernel.orders.order(placed).venue_order_id  # type: ignore[union-attr]
    finally:
        logger.remove(sink)
    assert venue_id
    assert json.loads(node.summary.to_json())["orders_left"] == [{
        "client_order_id": placed, "venue_order_id": venue_id, "instrument_id": IID, "side": "buy", "type": "limit",
        "quantity": 0.01, "price": price, "trigger_price": None, "filled": 0.0, "status": "ACCEPTED",
    }]
    assert (f"stopping: order {placed} (venue id {venue_id}) {IID} buy limit 0.01 @ {shown}, filled 0, ACCEPTED: "
            "left working at the venue (live.cancel_on_stop: false)") in lines
    assert any(line.startswith("stopping with 1 order(s) left open or of unknown state at the venue") for line in lines)


async def test_a_clean_stop_lists_no_order_left(tmp_path: Path) -> None:
    """The other side of ``orders_left``: the same resting buy canceled by ``live.cancel_on_stop`` leaves none."""
    async with account_and_market() as (emulator, srv):
        node = node_on(tmp_path, emulator, srv, [resting("steady", quantity=0.01, price=20_000.0)])
        strategy = node.kernel.strategies[0]
        await run_until_it_stops(node, lambda: bool(strategy.placed) and bool(open_at_venue(emulator)))  # type: ignore[attr-defined]
        assert open_at_venue(emulator) == []
    assert json.loads(node.summary.to_json())["orders_left"] == []


def test_a_stop_order_left_is_listed_with_its_trigger_price() -> None:
    """Before: a stop-market sell left working (trigger 19,000) was listed with ``price: null`` and no trigger, so
    ``node.json`` did not say at what price it would sell."""
    order = Order("c1", "s", IID, OrderSide.SELL, OrderType.STOP_MARKET, 0.01, trigger_price=19_000.0,
                  status=OrderStatus.ACCEPTED, venue_order_id="42")
    entry = _order_left(order)
    assert (entry["type"], entry["price"], entry["trigger_price"]) == ("stop_market", None, 19_000.0)


def test_a_dry_run_does_not_say_its_orders_were_left_by_cancel_on_stop_false() -> None:
    """Before: a dry run (which sends no cancel) with ``live.cancel_on_stop: true`` logged the orders its journal
    holds open as 'left working at the venue (live.cancel_on_stop: false)', a setting it did not have."""
    assert "dry run" in _left_reason(cancel_on_stop=True, dry_run=True)
    assert "cancel_on_stop: false" not in _left_reason(cancel_on_stop=True, dry_run=True)
    assert _left_reason(cancel_on_stop=False, dry_run=False) == "left working at the venue (live.cancel_on_stop: false)"
    assert _left_reason(cancel_on_stop=True, dry_run=False) == "not confirmed canceled"
