"""An amend the venue applied while the live daemon did not hear it is taken from the venue's answer.

A user amends a working order on the venue's web page (the venue's own amend endpoint) while the
daemon is stopped, or while its private stream is down and the amend's frame is lost. The restarted
(reconnected) daemon holds the venue's quantity and price: the order, what the account holds for it,
the journal (a second restart says nothing new), on every venue that amends in place: OKX
(``amend-order``), Bybit (``/v5/order/amend``) and Binance USD-M (``PUT /fapi/v1/order``). Binance
spot amends no order in place here (its cancel-replace makes a new order, which reconciliation finds
as it finds any order).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from tests.live.live_harness import KEY, SECRET, until
from tests.live.node_testdata import USDM_CAPTURE, USDM_IID, USDM_INSTRUMENT
from tests.live.venue_kits import BYBIT, OKX, PASSPHRASE, VenueKit, kit_harness
from tradebus.adapters.binance.emulator import split_capture
from tradebus.adapters.binance.private_emulator import BinanceFuturesEmulator, MatchingProtocol
from tradebus.adapters.common.account_emulator import AccountEmulator, RestFault, StreamFault
from tradebus.adapters.common.local_server import LocalVenueServer, VenueProtocol
from tradebus.adapters.common.recorder import iter_hftbacktest
from tradebus.engine.messages import ModifyOrder, OrderModified, OrderSide, OrderStatus, OrderType, SubmitOrder
from tradebus.execution.journal import Journal
from tradebus.execution.orders import Order
from tradebus.node.live import ApiKeys, LiveNode, parse_live_config
from tradebus.node.reconcile import Reconciler

WARNING = "amended at the venue unheard here"


def _usdm_protocol(frames: list[tuple[int, str]], account: AccountEmulator) -> VenueProtocol:
    return MatchingProtocol(_USDM_SNAPSHOT, futures=True, account=account, instrument_ids={"btcusdt": USDM_IID})  # type: ignore[arg-type]


_USDM_FRAMES, _USDM_SNAPSHOT = split_capture(list(iter_hftbacktest(USDM_CAPTURE)))
USDM = VenueKit(
    venue="binance",
    iid=USDM_IID,
    instrument=USDM_INSTRUMENT,
    frames=[(t, raw) for t, raw in _USDM_FRAMES if "@trade" in raw],
    channels=["trade"],
    base="BTC",
    make_emulator=BinanceFuturesEmulator,
    make_protocol=_usdm_protocol,
    env={"TRADEBUS_BINANCE_API_KEY": KEY, "TRADEBUS_BINANCE_API_SECRET": SECRET},
    place_path="/fapi/v1/order",
    fill_frame='"x": "TRADE"',
    market="perpetual",
    feed_market="usdm",
)

#: Per venue: the limit buy placed (quantity, price; below every trade of the recording: it never fills) and the
#: quantity and price a user amends it to at the venue (the Bybit session's 0.001 @ 64,546.9 -> 0.0015 @ 64,566.26).
CASES = {
    "okx": (OKX, (0.001, 20_000.0), (0.0015, 20_012.3)),
    "bybit": (BYBIT, (0.001, 64_546.9), (0.0015, 64_566.26)),
    "binance-usdm": (USDM, (0.002, 20_000.0), (0.003, 20_010.5)),
}


async def _amend_at_venue(
    kit: VenueKit, emulator: AccountEmulator, node: LiveNode, order: Order, qty: float, price: float, trigger: float = math.nan,
) -> None:
    """Amend ``order`` through the venue's own REST endpoint, signed with the account's keys (a user's web page)."""
    config = node.config
    keys = ApiKeys.from_env(config.live, kit.env)
    api = config.live.account().trading(emulator.rest_url, keys.key, keys.secret, config.instrument_map(), 5.0,
                                        **keys.options(config.live))
    try:
        if api.supports_amend:
            await api.amend(order, qty, price, trigger)
        else:  # Binance USD-M: tradebus never modifies in place, the venue does (PUT /fapi/v1/order)
            inst = config.instrument_map()[order.instrument_id]
            await api._call("fapiprivate_put_order", {  # noqa: SLF001 - the venue's endpoint, as a user's page sends it
                "symbol": inst.symbol, "origClientOrderId": order.client_order_id, "side": "BUY",
                "quantity": f"{qty}", "price": f"{price}",
            }, 1)
    finally:
        await api.close()


async def _session(
    kit: VenueKit, emulator: AccountEmulator, tmp: Path, frames: list[tuple[int, str]], done: Callable[[LiveNode], bool],
    order: tuple[float, float], act: Any = None, **live: Any,
) -> LiveNode:
    """One daemon session resting a limit buy (``order``: quantity, price), ``frames`` served on its public stream, until
    ``done(node)``; then ``act(node)`` (a coroutine) if given, until ``done(node)`` again; then stopped (``live``: more
    ``live`` settings)."""
    async with LocalVenueServer(kit.make_protocol(frames, emulator), frames) as srv:
        raw = kit.config(tmp, srv.ws_url, emulator, cancel_on_stop=False, **live)
        raw["strategy"] = {"name": "tests.live.resting_strategy:RestingBuy", "instruments": [kit.iid],
                           "params": {"quantity": order[0], "price": order[1]}}
        config = parse_live_config(raw, "<test>")
        node = LiveNode(config, ApiKeys.from_env(config.live, kit.env), handle_signals=False)
        task = asyncio.create_task(node.run())
        try:
            await until(lambda: task.done() or (node.running.is_set() and not node.guard.holds and done(node)))
            if act is not None:
                await act(node)
                await until(lambda: task.done() or done(node))
            assert not task.done(), "the daemon stopped early"
        finally:
            node.stop("test done")
            await asyncio.wait_for(task, 30)
    return node


def _placed(node: LiveNode) -> Order | None:
    orders = node.kernel.orders.orders()
    return orders[0] if orders and orders[0].status is OrderStatus.ACCEPTED else None


def _held(node: LiveNode, kit: VenueKit, qty: float, price: float) -> float:
    """What the account must hold for a working limit buy of ``qty`` at ``price``, by the account's rules: a cash
    account its cost with the larger fee rate, a margin account its initial margin."""
    inst = node.kernel.instruments[kit.iid]
    if kit.market == "perpetual":
        return qty * price / inst.leverage
    return qty * price * (1.0 + max(inst.maker_fee, inst.taker_fee))


def _journaled_modifications(path: Path, coid: str) -> list[OrderModified]:
    journal = Journal(path)
    try:
        return [e.message for e in journal.entries() if type(e.message) is OrderModified and e.message.client_order_id == coid]
    finally:
        journal.close()


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
async def test_an_amend_made_at_the_venue_while_the_daemon_was_down_is_held_after_the_restart(case: str, tmp_path: Path) -> None:
    kit, (qty, price), (new_qty, new_price) = CASES[case]
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="INFO", filter=lambda r: WARNING in r["message"])
    try:
        async with kit.make_emulator(KEY, SECRET, kit.instruments(), {"USDT": 100_000.0}, passphrase=PASSPHRASE) as emulator:
            first = await _session(kit, emulator, tmp_path, kit.frames, lambda n: _placed(n) is not None, (qty, price))
            order = first.kernel.orders.orders()[0]
            coid = order.client_order_id
            assert (order.quantity, order.price) == (qty, price)
            assert first.kernel.portfolio.account.locked("USDT") == pytest.approx(_held(first, kit, qty, price), rel=1e-12)
            # Down: the user amends the order on the venue's page.
            await _amend_at_venue(kit, emulator, first, order, new_qty, new_price)
            venue = emulator.orders[coid].order
            assert (venue.quantity, venue.price) == (new_qty, new_price)

            seen: dict[str, Any] = {}

            def restarted(node: LiveNode) -> bool:
                held = node.kernel.orders.get(coid)
                if held is None or held.status is not OrderStatus.ACCEPTED:
                    return False
                seen["terms"] = (held.quantity, held.price)
                seen["locked"] = node.kernel.portfolio.account.locked("USDT")
                return True

            second = await _session(kit, emulator, tmp_path, [], restarted, (qty, price))
            assert seen["terms"] == (new_qty, new_price)
            assert seen["locked"] == pytest.approx(_held(second, kit, new_qty, new_price), rel=1e-12)
            assert len(lines) == 1 and coid in lines[0]
            assert f"{qty} @ {price}" in lines[0] and f"{new_qty} @ {new_price}" in lines[0]
            # Journaled: a second restart holds the same without hearing of an amend again.
            [journaled] = _journaled_modifications(tmp_path / "journal.sqlite", coid)
            assert (journaled.quantity, journaled.price) == (new_qty, new_price)
            seen.clear()
            await _session(kit, emulator, tmp_path, [], restarted, (qty, price))
            assert seen["terms"] == (new_qty, new_price)
            assert len(lines) == 1
            assert len(_journaled_modifications(tmp_path / "journal.sqlite", coid)) == 1
            assert emulator.orders[coid].status is OrderStatus.ACCEPTED  # left working throughout
            assert not emulator.fills
    finally:
        logger.remove(sink)


@pytest.mark.slow
@pytest.mark.parametrize("running", ["reconnect", "round"])
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
async def test_an_amend_made_at_the_venue_while_the_daemon_runs_is_held_after_the_reconnect_or_the_next_round(
    case: str, running: str, tmp_path: Path,
) -> None:
    """The amend's frame is lost (the private stream was down: an amend's frame is taken at once,
    ``test_live_amend_at_venue.py``); ``reconnect``: then the stream reconnects (no reconciliation round runs);
    ``round``: the next reconciliation round finds it, not the check of silent orders (``live.check_interval``, 30 s
    by default), which would query it too."""
    kit, (qty, price), (new_qty, new_price) = CASES[case]
    seen: dict[str, Any] = {}

    async def amend_unheard(node: LiveNode) -> None:
        order = node.kernel.orders.orders()[0]
        seen["coid"] = order.client_order_id
        emulator.stream_faults.append(StreamFault("drop", order.client_order_id))
        await _amend_at_venue(kit, emulator, node, order, new_qty, new_price)
        assert emulator.stream_faults[-1].fired
        if running == "reconnect":  # (a round may have run since the amend's answer)
            assert (order.quantity, order.price) == (qty, price)
            connections = node.stream.connections
            await emulator.drop_sessions()
            await until(lambda: node.stream.connections > connections)

    def amended(node: LiveNode) -> bool:
        order = _placed(node)
        if order is None or "coid" not in seen or math.isclose(order.quantity, qty):
            return order is not None and "coid" not in seen
        seen["terms"] = (order.quantity, order.price)
        seen["locked"] = node.kernel.portfolio.account.locked("USDT")
        return True

    async with kit.make_emulator(KEY, SECRET, kit.instruments(), {"USDT": 100_000.0}, passphrase=PASSPHRASE) as emulator:
        interval = 0.5 if running == "round" else None  # no other query than the path's: no check of silent orders
        node = await _session(kit, emulator, tmp_path, kit.frames, amended, (qty, price), amend_unheard,
                              reconcile_interval=interval, check_interval=None)
    assert seen["terms"] == (new_qty, new_price)
    assert seen["locked"] == pytest.approx(_held(node, kit, new_qty, new_price), rel=1e-12)
    [journaled] = _journaled_modifications(tmp_path / "journal.sqlite", seen["coid"])
    assert (journaled.quantity, journaled.price) == (new_qty, new_price)


#: Per venue that amends a stop in place (OKX ``amend-algos``, Bybit ``/v5/order/amend`` with ``triggerPrice``): a
#: stop-limit buy above every trade of the recording (quantity, limit, trigger) and what a user amends it to.
STOP_CASES = {
    "okx": (OKX, (0.001, 40_100.0, 40_000.0), (0.0015, 40_600.0, 40_500.0)),
    "bybit": (BYBIT, (0.001, 80_100.0, 80_000.0), (0.0015, 80_600.0, 80_500.0)),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(STOP_CASES), ids=list(STOP_CASES))
async def test_a_stop_amended_at_the_venue_while_the_daemon_was_down_holds_the_venues_trigger_after_the_restart(
    case: str, tmp_path: Path,
) -> None:
    kit, (qty, price, trigger), (new_qty, new_price, new_trigger) = STOP_CASES[case]
    placed: dict[str, Order] = {}

    async def place_stop(node: LiveNode) -> None:
        now = node.clock.now_ns()
        placed["stop"] = node.kernel.execution.submit(SubmitOrder(
            "RestingBuy", kit.iid, "", OrderSide.BUY, qty, now, now, OrderType.STOP_LIMIT, price, trigger,
        ))

    def stop_accepted(node: LiveNode) -> bool:
        return _placed(node) is not None and ("stop" not in placed or placed["stop"].status is OrderStatus.ACCEPTED)

    async with kit.make_emulator(KEY, SECRET, kit.instruments(), {"USDT": 100_000.0}, passphrase=PASSPHRASE) as emulator:
        first = await _session(kit, emulator, tmp_path, kit.frames, stop_accepted, (0.001, 20_000.0), place_stop)
        stop = placed["stop"]
        coid = stop.client_order_id
        await _amend_at_venue(kit, emulator, first, stop, new_qty, new_price, new_trigger)
        venue = emulator.orders[coid].order
        assert (venue.quantity, venue.price, venue.trigger_price) == (new_qty, new_price, new_trigger)
        seen: dict[str, Any] = {}

        def restarted(node: LiveNode) -> bool:
            held = node.kernel.orders.get(coid)
            if held is None or held.status is not OrderStatus.ACCEPTED:
                return False
            seen["terms"] = (held.quantity, held.price, held.trigger_price)
            return True

        await _session(kit, emulator, tmp_path, [], restarted, (0.001, 20_000.0))
    assert seen["terms"] == (new_qty, new_price, new_trigger)
    [journaled] = _journaled_modifications(tmp_path / "journal.sqlite", coid)
    assert (journaled.quantity, journaled.price, journaled.trigger_price) == (new_qty, new_price, new_trigger)


@pytest.mark.parametrize(("kit", "path"), [(OKX, "/api/v5/trade/order"), (BYBIT, "/v5/order/realtime")], ids=["okx", "bybit"])
async def test_a_query_read_before_our_own_amend_and_answered_after_it_does_not_undo_the_amend(kit: VenueKit, path: str) -> None:
    """The periodic check's query of a limit buy of 0.001 @ 20,000 is read at the venue, then the strategy amends the
    order to 0.0015 @ 20,012.3 and the venue acknowledges it, then the query's answer (0.001 @ 20,000, as at its
    reading) arrives: it tells the terms before the amend, not an amend unheard; the order keeps the amended ones."""
    release = asyncio.Event()
    late = RestFault("late", "GET", path, release=release)
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="INFO", filter=lambda r: WARNING in r["message"])
    try:
        async with kit_harness(kit, rest_faults=[late]) as h:
            modified: list[OrderModified] = []
            h.kernel.bus.subscribe(OrderModified, modified.append)
            execution = h.kernel.execution
            order = execution.submit(SubmitOrder("s1", kit.iid, "", OrderSide.BUY, 0.001, 0, 0, OrderType.LIMIT, 20_000.0))
            await until(lambda: order.status is OrderStatus.ACCEPTED)
            coid = order.client_order_id
            execution.reconcile_order(coid)  # a query sent: read at the venue now, its answer held back
            await until(lambda: late.fired)
            execution.modify(ModifyOrder("s1", kit.iid, coid, 0, 0, quantity=0.0015, price=20_012.3))
            await until(lambda: (order.quantity, order.price) == (0.0015, 20_012.3))
            release.set()
            await until(lambda: coid not in h.venue._querying)  # noqa: SLF001 - the answer arrived and was applied
            assert (order.quantity, order.price, order.status) == (0.0015, 20_012.3, OrderStatus.ACCEPTED)
            assert [(e.quantity, e.price) for e in modified] == [(0.0015, 20_012.3)]  # the amend's acknowledgement only
    finally:
        logger.remove(sink)
    assert lines == []


@pytest.mark.parametrize(("kit", "path"), [(OKX, "/api/v5/trade/amend-order"), (BYBIT, "/v5/order/amend")], ids=["okx", "bybit"])
async def test_a_round_reading_the_open_orders_while_our_own_amend_is_unanswered_queries_nothing(kit: VenueKit, path: str) -> None:
    """The strategy amends a limit buy of 0.001 @ 20,000 to 0.0015 @ 20,012.3; the venue applies it and its answer is
    held back; a reconciliation round reads the open orders meanwhile: the venue lists the new terms, the order here
    still has the old. That is our own amend on its way, not one unheard: the round finds no difference, queries
    nothing and logs no WARNING; a round after the answer finds none either."""
    release = asyncio.Event()
    late = RestFault("late", "POST", path, release=release)
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="INFO",
                      filter=lambda r: WARNING in r["message"] or "reconciliation: order" in r["message"])
    try:
        async with kit_harness(kit, rest_faults=[late]) as h:
            execution = h.kernel.execution
            order = execution.submit(SubmitOrder("s1", kit.iid, "", OrderSide.BUY, 0.001, 0, 0, OrderType.LIMIT, 20_000.0))
            await until(lambda: order.status is OrderStatus.ACCEPTED)
            coid = order.client_order_id
            reconciler = Reconciler(h.kernel, h.venue, lambda iid, reason: None, 2.0)
            execution.modify(ModifyOrder("s1", kit.iid, coid, 0, 0, quantity=0.0015, price=20_012.3))
            await until(lambda: late.fired)
            queries = h.venue.requests["query"]
            marks = h.venue.amend_marks()
            listed = await h.venue.api.open_orders()
            assert [(r.quantity, r.price) for r in listed] == [(0.0015, 20_012.3)]  # the venue applied it
            assert (order.quantity, order.price) == (0.001, 20_000.0)  # its answer not here yet
            assert reconciler.compare_orders(listed, marks) == 0
            release.set()
            await until(lambda: (order.quantity, order.price) == (0.0015, 20_012.3))
            marks = h.venue.amend_marks()
            assert reconciler.compare_orders(await h.venue.api.open_orders(), marks) == 0
            assert h.venue.requests["query"] == queries
    finally:
        logger.remove(sink)
    assert lines == []
