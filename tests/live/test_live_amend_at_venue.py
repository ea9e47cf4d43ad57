"""An amend made at the venue while the live daemon runs or is down is taken as an amend of the order, at once.

A user amends a working order on the venue's web page (the venue's own amend endpoint, signed with the account's
keys): OKX ``amend-order``, Bybit ``/v5/order/amend``, Binance USD-M ``PUT /fapi/v1/order`` (``x=AMENDMENT``) and
Binance spot ``PUT /api/v3/order/amend/keepPriority`` (``x=REPLACED``; it renames the order unless the user sends its
own client id). With no reconciliation round and no check of silent orders, the daemon holds the venue's terms
(the order, what the account holds for it) as soon as the frame arrives, with one WARNING naming both terms, one
``OrderModified`` journaled, and no query sent. A renamed Binance spot order stays the order: a round finds no
external order, a query names it by its ``orderId``, a restart resumes it with the venue's quantity, a cancel
cancels it. A frame of this process's own amend is not taken twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import msgspec
import pytest
from loguru import logger

from tests.live.live_harness import KEY, SECRET, until
from tests.live.node_testdata import BINANCE_INSTRUMENT, IID, SPOT_FRAMES, SPOT_SNAPSHOT
from tests.live.test_live_unheard_amend import CASES, _amend_at_venue, _held, _journaled_modifications, _placed, _session
from tests.live.venue_kits import BYBIT, OKX, PASSPHRASE, KitTape, VenueKit, kit_harness
from tradebus.adapters.binance import private_emulator as binance_emu
from tradebus.adapters.common.account_emulator import AccountEmulator, RestFault
from tradebus.adapters.common.local_server import VenueProtocol
from tradebus.engine.messages import CancelOrder, ModifyOrder, OrderModified, OrderSide, OrderStatus, OrderType, SubmitOrder
from tradebus.execution.venue import OrderStatusReport
from tradebus.node.live import LiveNode
from tradebus.node.reconcile import Reconciler

#: Every WARNING of an amend taken from the venue, heard from its stream or not.
WARNING = "amended at the venue"
T0 = 1_786_310_819_680_000_000


def _binance_protocol(frames: list[tuple[int, str]], account: AccountEmulator) -> VenueProtocol:
    return binance_emu.MatchingProtocol(SPOT_SNAPSHOT, account=account, instrument_ids={"btcusdt": IID})


BINANCE = VenueKit(
    venue="binance",
    iid=IID,
    instrument={**BINANCE_INSTRUMENT, "margin": False},
    frames=[(t, raw) for t, raw in SPOT_FRAMES if "@trade" in raw],
    channels=["trade"],
    base="BTC",
    make_emulator=binance_emu.BinancePrivateEmulator,
    make_protocol=_binance_protocol,
    env={"TRADEBUS_BINANCE_API_KEY": KEY, "TRADEBUS_BINANCE_API_SECRET": SECRET},
    place_path="/api/v3/order",
    fill_frame='"x": "TRADE"',
)
#: A limit buy of 0.002 @ 20,000 (below every trade of the recording) cut at the venue to 0.0012, its price kept.
KEEP_PRIORITY = ((0.002, 20_000.0), (0.0012, 20_000.0))


async def _keep_priority(emulator: AccountEmulator, venue_order_id: str, qty: float, new_client_id: str = "") -> dict[str, Any]:
    """``PUT /api/v3/order/amend/keepPriority`` of the order ``venue_order_id``, signed with the account's keys as the
    venue's web page would send it (ccxt has no method for it)."""
    params = {"symbol": "BTCUSDT", "orderId": venue_order_id, "newQty": f"{qty}", "timestamp": str(int(time.time() * 1000))}
    if new_client_id:
        params["newClientOrderId"] = new_client_id
    query = urlencode(params)
    signature = hmac.new(SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()
    async with aiohttp.ClientSession() as session:
        async with session.put(f"{emulator.rest_url}/api/v3/order/amend/keepPriority?{query}&signature={signature}",
                               headers={"X-MBX-APIKEY": KEY}) as response:
            body = await response.json()
            assert response.status == 200, body
            return body


def _warnings() -> tuple[list[str], int]:
    lines: list[str] = []
    return lines, logger.add(lambda m: lines.append(str(m)), level="WARNING", filter=lambda r: WARNING in r["message"])


#: Per case: the kit, the limit buy placed (quantity, price), the terms a user amends it to at the venue, and for a
#: Binance spot amend keeping priority the client id the user sends (``None``: none, the venue makes one).
STREAM_CASES: dict[str, tuple[VenueKit, tuple[float, float], tuple[float, float], str | None]] = {
    **{name: (kit, placed, amended, None) for name, (kit, placed, amended) in CASES.items()},
    "binance-keep-priority": (BINANCE, *KEEP_PRIORITY, None),
    "binance-keep-priority-same-id": (BINANCE, *KEEP_PRIORITY, "same"),
    "binance-keep-priority-frame-without-former-id": (BINANCE, *KEEP_PRIORITY, None),
}
#: The cases whose ``x=REPLACED`` frame leaves ``C`` empty: whether Binance names there the id the order had is
#: unconfirmed, and the frame's order must be found without it, by its instrument and ``orderId`` (``i``), which an
#: amend keeping priority keeps (the answer's ``amendedOrder.orderId``); it was dropped as another process's order's.
WITHOUT_FORMER_ID = {"binance-keep-priority-frame-without-former-id"}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(STREAM_CASES), ids=list(STREAM_CASES))
async def test_an_amend_made_at_the_venue_while_the_daemon_runs_is_held_from_its_frame_before_any_round(
    case: str, tmp_path: Path,
) -> None:
    kit, (qty, price), (new_qty, new_price), client_id = STREAM_CASES[case]
    lines, sink = _warnings()
    seen: dict[str, Any] = {}

    async def amend_at_venue(node: LiveNode) -> None:
        order = node.kernel.orders.orders()[0]
        seen["coid"] = order.client_order_id
        seen["queries"] = node.venue.requests["query"]
        if kit is BINANCE:
            answer = await _keep_priority(emulator, order.venue_order_id, new_qty,
                                          order.client_order_id if client_id == "same" else "")
            seen["venue_name"] = answer["amendedOrder"]["clientOrderId"]
        else:
            await _amend_at_venue(kit, emulator, node, order, new_qty, new_price)

    def amended(node: LiveNode) -> bool:
        order = _placed(node)
        if order is None or "coid" not in seen or math.isclose(order.quantity, qty):
            return order is not None and "coid" not in seen
        seen["terms"] = (order.quantity, order.price)
        seen["locked"] = node.kernel.portfolio.account.locked("USDT")
        seen["queries_after"] = node.venue.requests["query"]
        return True

    try:
        async with kit.make_emulator(KEY, SECRET, kit.instruments(), {"USDT": 100_000.0}, passphrase=PASSPHRASE) as emulator:
            if case in WITHOUT_FORMER_ID:
                emulator.replaced_names_former_id = False
            node = await _session(kit, emulator, tmp_path, kit.frames, amended, (qty, price), amend_at_venue,
                                  reconcile_interval=None, check_interval=None)
            coid = seen["coid"]
            assert emulator.orders[coid].status is OrderStatus.ACCEPTED  # left working
            if kit is BINANCE:
                assert (seen["venue_name"] == coid) is (client_id == "same")
                assert emulator.client_id_of(emulator.orders[coid]) == seen["venue_name"]
    finally:
        logger.remove(sink)
    assert seen["terms"] == (new_qty, new_price)
    assert seen["locked"] == pytest.approx(_held(node, kit, new_qty, new_price), rel=1e-12)
    assert seen["queries_after"] == seen["queries"]  # from the frame, not from an answer
    assert len(lines) == 1 and coid in lines[0], lines
    assert f"{qty} @ {price}" in lines[0] and f"{new_qty} @ {new_price}" in lines[0]
    [journaled] = _journaled_modifications(tmp_path / "journal.sqlite", coid)
    assert (journaled.quantity, journaled.price) == (new_qty, new_price)


@pytest.mark.slow
async def test_a_binance_spot_order_renamed_by_an_amend_at_the_venue_stays_the_order(tmp_path: Path) -> None:
    """Binance spot's amend keeping priority, the venue naming the order anew (the user sent no client id): while the
    daemon runs, a reconciliation round and a query find it as the order (no external order, its quantity the venue's),
    renamed twice; amended again while the daemon is down, the restart resumes it with the venue's
    quantity (the query names it by ``orderId``: its first client id names no order at the venue any more), reports
    no external order, and a cancel of it cancels it."""
    kit, ((qty, price), (new_qty, _)) = BINANCE, KEEP_PRIORITY
    seen: dict[str, Any] = {}

    async def amend_then_round(node: LiveNode) -> None:
        order = node.kernel.orders.orders()[0]
        seen["coid"] = order.client_order_id
        await _keep_priority(emulator, order.venue_order_id, new_qty)
        await node.reconciler.round()
        await until(lambda: order.quantity == new_qty)
        seen["external"] = list(node.reconciler.external)
        queries = node.venue.requests["query"]
        node.kernel.execution.reconcile_order(order.client_order_id)
        await until(lambda: node.venue.requests["query"] > queries and order.client_order_id not in node.venue._querying)  # noqa: SLF001
        seen["after_query"] = (order.status, order.quantity)
        await _keep_priority(emulator, order.venue_order_id, 0.0011)  # renamed again
        await node.reconciler.round()
        await until(lambda: order.quantity == 0.0011)
        seen["external"] += node.reconciler.external

    def done(node: LiveNode) -> bool:
        return "after_query" in seen or (_placed(node) is not None and "coid" not in seen)

    async with kit.make_emulator(KEY, SECRET, kit.instruments(), {"USDT": 100_000.0}) as emulator:
        await _session(kit, emulator, tmp_path, kit.frames, done, (qty, price), amend_then_round,
                       reconcile_interval=None, check_interval=None)
        coid = seen["coid"]
        assert seen["external"] == []
        assert seen["after_query"] == (OrderStatus.ACCEPTED, new_qty)
        # Down: the user cuts it again; the venue renames it again.
        answer = await _keep_priority(emulator, str(emulator.orders[coid].order_id), 0.001)
        assert answer["amendedOrder"]["clientOrderId"] not in (coid, "")
        lines, sink = _warnings()
        restarted: dict[str, Any] = {}

        def resumed(node: LiveNode) -> bool:
            held = node.kernel.orders.get(coid)
            if "locked" in restarted:
                return held is not None and held.status is OrderStatus.CANCELED
            if held is None or held.status is not OrderStatus.ACCEPTED or held.quantity != 0.001:
                return False
            restarted["locked"] = node.kernel.portfolio.account.locked("USDT")
            restarted["external"] = list(node.reconciler.external)
            return True

        async def cancel(node: LiveNode) -> None:
            now = node.clock.now_ns()
            node.kernel.execution.cancel(CancelOrder(node.kernel.orders.get(coid).strategy_id, kit.iid, coid, now, now))

        try:
            node = await _session(kit, emulator, tmp_path, [], resumed, (qty, price), cancel,
                                  reconcile_interval=None, check_interval=None)
        finally:
            logger.remove(sink)
        assert restarted["external"] == []
        assert restarted["locked"] == pytest.approx(_held(node, kit, 0.001, price), rel=1e-12)
        assert len(lines) == 1 and "0.0011 @ 20000.0" in lines[0] and "0.001 @ 20000.0" in lines[0], lines
        assert emulator.orders[coid].status is OrderStatus.CANCELED  # the cancel named it by its orderId
    assert [m.quantity for m in _journaled_modifications(tmp_path / "journal.sqlite", coid)] == [new_qty, 0.0011, 0.001]


@pytest.mark.parametrize(("kit", "path"), [(OKX, "/api/v5/trade/amend-order"), (BYBIT, "/v5/order/amend")], ids=["okx", "bybit"])
async def test_the_frame_of_our_own_amend_is_not_taken_as_one_made_at_the_venue(kit: VenueKit, path: str) -> None:
    """The strategy amends a limit buy of 0.001 @ 20,000 to 0.0015 @ 20,012.3; the venue applies it and pushes its
    frame, and the amend's answer is held back: the frame is this process's own amend on its way, neither applied
    nor logged nor queried; the answer applies it once. A user's amend at the venue afterwards (0.002 @ 20,010.5)
    is then applied with one WARNING (asked of the venue: a frame after an amend of ours may be one sent before it)."""
    release = asyncio.Event()
    late = RestFault("late", "POST", path, release=release)
    lines, sink = _warnings()
    try:
        async with kit_harness(kit, rest_faults=[late]) as h:
            modified: list[OrderModified] = []
            h.kernel.bus.subscribe(OrderModified, modified.append)
            execution = h.kernel.execution
            order = execution.submit(SubmitOrder("s1", kit.iid, "", OrderSide.BUY, 0.001, 0, 0, OrderType.LIMIT, 20_000.0))
            await until(lambda: order.status is OrderStatus.ACCEPTED)
            coid = order.client_order_id
            execution.modify(ModifyOrder("s1", kit.iid, coid, 0, 0, quantity=0.0015, price=20_012.3))
            await until(lambda: late.fired)
            assert (h.emulator.orders[coid].order.quantity, h.emulator.orders[coid].order.price) == (0.0015, 20_012.3)
            # Every frame the emulator sent (the amend's among them) received, and so parsed and handed on.
            await until(lambda: h.emulator.frames_pending == 0 and h.stream.frames >= sum(s.queued for s in h.emulator.sessions))
            assert (order.quantity, order.price) == (0.001, 20_000.0)  # the frame did not apply it
            assert h.venue.requests["query"] == 0
            release.set()
            await until(lambda: (order.quantity, order.price) == (0.0015, 20_012.3))
            assert [(e.quantity, e.price) for e in modified] == [(0.0015, 20_012.3)]
            assert lines == []
            await _amend_at_venue_direct(h.venue.api, order, 0.002, 20_010.5)
            await until(lambda: (order.quantity, order.price) == (0.002, 20_010.5))
            assert [(e.quantity, e.price) for e in modified] == [(0.0015, 20_012.3), (0.002, 20_010.5)]
    finally:
        logger.remove(sink)
    assert len(lines) == 1 and "0.0015 @ 20012.3" in lines[0] and "0.002 @ 20010.5" in lines[0], lines


async def _amend_at_venue_direct(api: Any, order: Any, qty: float, price: float, trigger: float = math.nan) -> None:
    """The venue's own amend endpoint, as the user's page sends it: through the account's REST client, not the daemon's
    live venue (which would count it as its own)."""
    await api.amend(order, qty, price, trigger)


@pytest.mark.parametrize("kit", [BINANCE, OKX, BYBIT], ids=["binance", "okx", "bybit"])
async def test_an_unknown_client_id_is_the_order_with_its_venue_id_only_on_a_venue_that_renames(kit: VenueKit) -> None:
    """The venue lists an open order under a client id unknown here with the venue order id of a limit buy here: on
    Binance spot (an amend keeping priority renames an order) it is that order; on OKX and Bybit (whose amends keep
    the client id, and whose algo orders' ids are another id space) it is another order: external."""
    async with kit_harness(kit) as h:
        order = h.kernel.execution.submit(SubmitOrder("s1", kit.iid, "", OrderSide.BUY, 0.001, 0, 0, OrderType.LIMIT, 20_000.0))
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        reconciler = Reconciler(h.kernel, h.venue, lambda iid, reason: None, 2.0)
        listed = OrderStatusReport("someoneElses1", order.venue_order_id, OrderStatus.ACCEPTED, 0.0, 0, quantity=0.001, price=20_000.0,
                                   instrument_id=kit.iid)
        [seen] = reconciler.as_ours([listed])
        reconciler.report_external([listed])
    if kit is BINANCE:
        assert seen.client_order_id == order.client_order_id and reconciler.external == []
    else:
        assert seen.client_order_id == "someoneElses1" and [r.client_order_id for r in reconciler.external] == ["someoneElses1"]


async def test_a_binance_spot_order_of_another_symbol_with_the_venue_order_id_of_one_here_is_external() -> None:
    """Binance spot numbers ``orderId`` per symbol: an order a user placed on ETHUSDT, listed under its own client id
    with the ``orderId`` of a limit buy here on BTCUSDT, was taken for that buy renamed at the venue (its quantity, 1.0,
    applied to the buy; never reported external). The venue's listing names each order's instrument and an order is
    matched by instrument and venue order id: that one is external, and the buy's own row, renamed, is still the buy."""
    async with kit_harness(BINANCE) as h:
        order = h.kernel.execution.submit(SubmitOrder("s1", BINANCE.iid, "", OrderSide.BUY, 0.001, 0, 0, OrderType.LIMIT, 20_000.0))
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        [own] = await h.venue.api.open_orders()
        renamed = msgspec.structs.replace(own, client_order_id="renamedAtVenue")
        other = msgspec.structs.replace(own, client_order_id="someoneElses1", instrument_id="ETHUSDT.BINANCE", quantity=1.0, price=1_500.0)
        reconciler = Reconciler(h.kernel, h.venue, lambda iid, reason: None, 2.0)
        seen = reconciler.as_ours([renamed, other])
        reconciler.report_external([renamed, other])
    assert own.instrument_id == BINANCE.iid and own.venue_order_id == order.venue_order_id
    assert [r.client_order_id for r in seen] == [order.client_order_id, "someoneElses1"]
    assert [r.client_order_id for r in reconciler.external] == ["someoneElses1"]


#: Per venue: the raw amend a user's page sends of an order, to a price off the instrument's tick (OKX 0.1, Bybit 0.01).
_OFF_TICK = {
    "okx": ("private_post_trade_amend_order", lambda coid: {"instId": "BTC-USDT", "clOrdId": coid, "newPx": "1000.05"}),
    "bybit": ("private_post_v5_order_amend",
              lambda coid: {"category": "spot", "symbol": "BTCUSDT", "orderLinkId": coid, "price": "1000.005"}),
}


@pytest.mark.parametrize("kit", [OKX, BYBIT], ids=["okx", "bybit"])
async def test_terms_the_order_cannot_take_are_logged_once_not_at_every_frame(kit: VenueKit) -> None:
    """A user moves a limit buy of 0.002 @ 1,000 to 1,000.05 (OKX; Bybit 1,000.005) at the venue, a price off the
    instrument's tick here: not applied, one ERROR names it. The order then fills in four parts, the frames of the
    first three telling that price again (the last, FILLED, tells none): before, each logged the ERROR again (four
    in all); now there is one, and the order fills its 0.002."""
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="ERROR", filter=lambda r: "not applied" in r["message"])
    try:
        async with kit_harness(kit, trade_size_limit=True) as h:
            tape = KitTape(h, kit.iid, T0, size=0.0005)
            order = tape.submit(OrderSide.BUY, 0.002, OrderType.LIMIT, price=1_000.0)
            await until(lambda: order.status is OrderStatus.ACCEPTED)
            name, params = _OFF_TICK[kit.venue]
            await h.venue.api.call(name, params(order.client_order_id))
            await until(lambda: len(lines) == 1)
            for _ in range(4):
                tape.trade(999.0)
            await until(lambda: order.status is OrderStatus.FILLED)
            await until(lambda: h.emulator.frames_pending == 0 and h.stream.frames >= sum(s.queued for s in h.emulator.sessions))
    finally:
        logger.remove(sink)
    assert len(lines) == 1 and order.client_order_id in lines[0], lines
    assert (order.price, order.filled_qty) == (1_000.0, pytest.approx(0.002))


async def test_an_okx_stop_amended_at_the_venue_is_held_from_its_orders_algo_frame() -> None:
    """Long 0.01 bought at 60,000, a stop-limit sell of 0.01 (trigger 59,500, limit 59,400) moved by a user at OKX (``amend-algos``) to 0.008,
    trigger 59,800, limit 59,700: its ``orders-algo`` frame is parsed into the venue's terms, taken at once with one
    WARNING and no query. Before, the frame gave nothing and the stop kept its terms until a reconciliation round."""
    lines, sink = _warnings()
    try:
        async with kit_harness(OKX) as h:
            tape = KitTape(h, OKX.iid, T0, size=100.0)
            await tape.fill(OrderSide.BUY, 0.01, 60_000.0)
            stop = tape.submit(OrderSide.SELL, 0.01, OrderType.STOP_LIMIT, price=59_400.0, trigger=59_500.0)
            await until(lambda: stop.status is OrderStatus.ACCEPTED)
            await _amend_at_venue_direct(h.venue.api, stop, 0.008, 59_700.0, 59_800.0)
            await until(lambda: (stop.quantity, stop.price, stop.trigger_price) == (0.008, 59_700.0, 59_800.0))
            assert h.venue.requests["query"] == 0
    finally:
        logger.remove(sink)
    assert len(lines) == 1 and "0.01 @ 59400.0 (trigger 59500.0)" in lines[0] and "0.008 @ 59700.0 (trigger 59800.0)" in lines[0], lines
