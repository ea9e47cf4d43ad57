"""Every modify a strategy makes while an amend of its order is on its way gets one answer, on OKX and Bybit.

The live venue sends one amend of an order at a time: a modify made meanwhile is kept and sent once the first is
answered, refused, or unanswered and its window over. The table below is each way the first amend and the kept modify
can end, and the answers the strategy hears (``OrderModified``, ``OrderModifyRejected``, ``OrderDenied``), in order:
one for each modify, but a refusal of the first whose terms the kept one all sets again is told only when that one is
not applied either (after its own answer); applied, its ``OrderModified`` answers both. A daemon's stop while the first
is held answers neither and sends nothing more (``test_live_amend_in_flight.py``: the restart takes the venue's terms).

A limit buy of 0.002 at 1,000 (the last trade 1,000; prices within 5 % of it, ``price_band_pct`` 5) is modified to 990,
an amend the venue holds, then to 960 meanwhile (4 % below: the gate passes it).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from loguru import logger

from tests.live.live_harness import until
from tests.live.test_live_amend import HELD
from tests.live.test_live_amend_in_flight import LIMIT_AMEND, REFUSED, T0
from tests.live.venue_kits import KITS, KitTape, VenueKit, kit_harness
from tradebus.adapters.common.account_emulator import RestFault
from tradebus.engine.messages import (
    CancelOrder,
    ModifyOrder,
    OrderDenied,
    OrderModified,
    OrderModifyRejected,
    OrderSide,
    OrderStatus,
    OrderType,
)
from tradebus.risk.config import RiskConfig

#: Seconds a request stays valid at the venue (Bybit's X-BAPI-RECV-WINDOW, OKX's signed timestamp): the client's 1 s
#: timeout of the first amend runs out well inside it.
WINDOW = 4.0

M, R, D = "modified", "rejected", "denied"

#: (how the first amend, to 990, ends; how the kept modify, to 960, ends; the answers heard, in order; where the venue's
#: order ends). ``unanswered``: the client's timeout ran out; the venue then processes the amend within its window
#: (``applied``) or after it (``expired``: refused unseen). ``refused`` (kept): by the venue; ``denied``: by the risk
#: gate as it leaves, a trade at 1,015 having moved the band; ``quantity``: the kept modify is to 0.003 in all instead,
#: which does not set the first's price again; ``canceled``: the order is canceled while the first is
#: held; ``filled``: it fills meanwhile, and the order manager asks the venue to forget it.
CASES = [
    ("accepted", "accepted", [M, M], 960.0),
    ("accepted", "refused", [M, R], 990.0),
    ("accepted", "denied", [M, D], 990.0),
    ("refused", "accepted", [M], 960.0),
    ("refused", "refused", [R, R], 1_000.0),
    ("refused", "denied", [D, R], 1_000.0),
    ("unanswered_applied", "accepted", [M, M], 960.0),
    ("unanswered_applied", "refused", [M, R], 990.0),
    ("unanswered_applied", "denied", [M, D], 990.0),
    ("unanswered_expired", "accepted", [M], 960.0),
    ("unanswered_expired", "refused", [R, R], 1_000.0),
    ("unanswered_expired", "denied", [D, R], 1_000.0),
    ("refused", "quantity", [R, M], 1_000.0),
    ("unanswered_expired", "quantity", [R, M], 1_000.0),
    ("accepted", "canceled", [R, R], 1_000.0),
    ("accepted", "filled", [R, R], 1_000.0),
    ("unanswered_expired", "filled", [R, R], 1_000.0),
]


def _answers(h: Any, coid: str) -> list[tuple[str, str]]:
    """Subscribe to the answers to modifies of ``coid``: (kind, reason) each, in order."""
    heard: list[tuple[str, str]] = []
    for cls, kind in ((OrderModified, M), (OrderModifyRejected, R), (OrderDenied, D)):
        h.kernel.bus.subscribe(cls, lambda e, kind=kind: heard.append((kind, getattr(e, "reason", ""))) if e.client_order_id == coid else None)
    return heard


def _window(h: Any) -> None:
    if hasattr(h.venue.api, "recv_window_ms"):
        h.venue.api.recv_window_ms = int(WINDOW * 1000)
    else:
        h.venue.api.timestamp_expiry_s = WINDOW
        h.emulator.timestamp_expiry_s = WINDOW
        h.venue.api.amend_deadline_s = WINDOW


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
@pytest.mark.parametrize(("first", "kept", "expected", "venue_price"), CASES, ids=[f"{f}-{k}" for f, k, _, _ in CASES])
async def test_each_modify_made_while_an_amend_is_out_gets_one_answer(
    kit: VenueKit, first: str, kept: str, expected: list[str], venue_price: float
) -> None:
    await _case(kit, first, kept, expected, venue_price)


#: Where each venue answers the query of an order.
QUERY = {"okx": "/api/v5/trade/order", "bybit": "/v5/order/realtime"}
#: The queries after the unanswered amend's window the venue leaves unanswered (HTTP 503) before it answers one.
LOST_QUERIES = 3
LOST = [case for case in CASES if case[0].startswith("unanswered") and case[1] in ("accepted", "refused")]


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
@pytest.mark.parametrize(("first", "kept", "expected", "venue_price"), LOST, ids=[f"{f}-{k}" for f, k, _, _ in LOST])
async def test_an_unanswered_amend_whose_queries_go_unanswered_is_answered_once_one_is(
    kit: VenueKit, first: str, kept: str, expected: list[str], venue_price: float
) -> None:
    """The venue answers none of the first three queries made after the unanswered amend's window (a gateway's 503):
    the amend is answered all the same, after the fourth (the engine's ``retry_ns`` later, then twice as long each
    time), as in the table. Before, the first unanswered query left it unanswered for good: the kept modify was sent
    and answered alone (an applied amend's ``OrderModified`` never told, an expired one never refused)."""
    await _case(kit, first, kept, expected, venue_price, lost_queries=LOST_QUERIES)


async def _case(
    kit: VenueKit, first: str, kept: str, expected: list[str], venue_price: float, lost_queries: int = 0
) -> None:
    """Run one case of :data:`CASES`, the first ``lost_queries`` queries of the order unanswered (HTTP 503)."""
    path = LIMIT_AMEND[kit.venue]
    release = asyncio.Event()
    unanswered = first.startswith("unanswered")
    kind = "refuse" if first == "refused" else "hold"
    faults = [RestFault(kind, "POST", path, code=REFUSED[kit.venue], release=release, windowed=unanswered)]
    if kept == "refused":
        faults.append(RestFault("refuse", "POST", path, code=REFUSED[kit.venue]))
    lost = [RestFault("error5xx", "GET", QUERY[kit.venue]) for _ in range(lost_queries)]
    faults += lost
    timed_out: list[str] = []
    sink = logger.add(lambda m: timed_out.append(str(m)), level="WARNING", filter=lambda r: "no answer" in r["message"])
    processed: list[str] = []
    late = logger.add(lambda m: processed.append(str(m)), level="INFO", filter=lambda r: "its window" in r["message"] and "held" in r["message"])
    try:
        async with kit_harness(kit, rest_faults=faults, risk_config=RiskConfig(price_band_pct=5.0),
                               trade_size_limit=True, **HELD) as h:
            _window(h)
            tape = KitTape(h, kit.iid, T0, size=0.001)
            tape.trade(1_000.0)
            order = tape.submit(OrderSide.BUY, 0.002, OrderType.LIMIT, price=1_000.0)
            await until(lambda: order.status is OrderStatus.ACCEPTED)
            coid = order.client_order_id
            heard = _answers(h, coid)
            if unanswered:
                h.venue.api._ccxt.timeout = 1_000  # noqa: SLF001 - the amend's answer is not waited for
            execution = h.kernel.execution
            execution.modify(ModifyOrder("s1", kit.iid, coid, 0, 0, price=990.0))
            await until(lambda: faults[0].fired)
            terms = {"quantity": 0.003} if kept == "quantity" else {"price": 960.0}
            execution.modify(ModifyOrder("s1", kit.iid, coid, 0, 0, **terms))
            if kept == "denied":
                tape.trade(1_015.0)  # the band now 964.25-1,065.75: 960 is outside it
            elif kept == "canceled":
                execution.cancel(CancelOrder("s1", kit.iid, coid, 0, 0))
                await until(lambda: order.status is OrderStatus.CANCELED)
            elif kept == "filled":
                KitTape(h, kit.iid, T0 + 10**9, size=0.002).trade(999.0)
                await until(lambda: order.status is OrderStatus.FILLED)
                assert not h.venue.forget(coid)  # kept while its amend is out
            if first == "unanswered_applied":
                await until(lambda: bool(timed_out))
            elif first == "unanswered_expired":
                await until(lambda: bool(timed_out) and coid not in h.venue._withheld and h.venue.in_flight == 0)  # noqa: SLF001
            release.set()
            await until(lambda: h.venue.in_flight == 0 and len(heard) >= len(expected))
            if unanswered:  # the held amend processed (applied or refused as expired): nothing more comes of it
                await until(lambda: bool(processed))
            await h.venue.drain()
            assert [k for k, _ in heard] == expected, heard
            assert h.emulator.orders[coid].order.price == venue_price
            if order.is_open:
                assert order.price == venue_price
            assert all(fault.fired for fault in lost)
            if first == "unanswered_expired" and kept == "refused":  # its window and 1 s of clock skew
                assert heard[1] == (R, f"no answer, and not applied within the venue's window ({WINDOW + 1:g} s)"), heard
    finally:
        logger.remove(sink)
        logger.remove(late)

