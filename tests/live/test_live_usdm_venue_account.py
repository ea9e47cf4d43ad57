"""Funding and liquidation made by a Binance USD-M account itself, booked by the live daemon.

The venue settles funding (``ACCOUNT_UPDATE`` with reason ``FUNDING_FEE``) and liquidates
(``ORDER_TRADE_UPDATE`` of its ``autoclose-`` order, ``x=CALCULATED``) on its own; the
daemon books both as the venue made them, once. Checked against the local futures account
emulator's wallet and position.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from tests.live.live_harness import KEY, SECRET, open_long, rounds_after, second_funding_refused, until
from tests.live.node_testdata import USDM_IID, USDM_INSTRUMENT
from tests.live.test_live_usdm import INST, SYMBOL, TRADE_FRAMES, _emulator, _run
from tradebus.adapters.binance.private_emulator import BinanceFuturesEmulator, RestFault, StreamFault
from tradebus.adapters.binance.user_stream import FuturesStreamParser
from tradebus.engine.instrument import Instrument, InstrumentKind
from tradebus.engine.messages import FundingPaid, FundingRate, OrderFilled, OrderSide, OrderStatus, OrderType, SubmitOrder, Trade
from tradebus.execution.journal import Journal
from tradebus.execution.orders import Order
from tradebus.execution.live import AccountBalance, FundingUnattributed
from tradebus.node.live import LiveNode
from tradebus.reports.attribution import attribute

PRICE = 28_000.0


async def _open_long(node: LiveNode, emulator: BinanceFuturesEmulator, qty: float = 0.01, strategy: str = "TickEmaCross") -> None:
    """Buy ``qty`` at market, filled by a public trade at :data:`PRICE`; wait until the daemon booked it."""
    await open_long(node, emulator, USDM_IID, qty, PRICE, strategy=strategy)


def _income_reads(emulator: BinanceFuturesEmulator) -> int:
    """Requests of the income history (``GET /fapi/v1/income``) the emulator answered so far."""
    return sum(1 for _, path, _ in emulator.requests if path == "/fapi/v1/income")


def _wallet(node: LiveNode) -> float:
    return node.kernel.portfolio.account.balance("USDT")


@pytest.mark.slow
async def test_the_venues_funding_payment_is_booked_once_and_the_wallet_stays_the_venues(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite"
    seen: dict[str, float] = {}

    async def act(node: LiveNode) -> None:
        kernel = node.kernel
        await _open_long(node, emulator)
        assert _wallet(node) == pytest.approx(emulator.balances["USDT"], abs=1e-9)
        # the funding feed announces the rate and its time passes: the venue's payment is the one booked
        now = node.clock.now_ns()
        kernel.bus.publish(FundingRate(USDM_IID, now, now, 0.0001, now - 1))
        seen["paid"] = emulator.settle_funding(SYMBOL, 0.0001, PRICE)
        # the venue's payment is heard (an estimate of the announced rate would have been booked before it)
        venue_ns = emulator.income[-1]["time"] * 1_000_000
        await until(lambda: any(f.ts_event == venue_ns for f in kernel.result.funding))
        seen["wallet"] = _wallet(node)

    async with _emulator() as emulator:
        node = await _run(tmp_path, emulator, TRADE_FRAMES[:1], journal, act)
        funding = node.kernel.result.funding
        assert seen["paid"] == pytest.approx(0.01 * PRICE * 0.0001)
        assert [f.payment for f in funding] == pytest.approx([seen["paid"]], abs=1e-8)
        # the position paid on; the income record holds no mark nor rate: none is made up (they were the last
        # price and the rate the payment implies at it)
        assert funding[0].quantity == pytest.approx(0.01)
        assert math.isnan(funding[0].mark_price) and math.isnan(funding[0].rate)
        assert seen["wallet"] == pytest.approx(emulator.balances["USDT"], abs=1e-8)
        assert not node.guard.holds
    # journaled once, as the kernel's own payments are
    j = Journal(journal)
    try:
        paid = [e.message for e in j.entries() if type(e.message) is FundingPaid]
    finally:
        j.close()
    assert [p.payment for p in paid] == pytest.approx([seen["paid"]], abs=1e-8)


@pytest.mark.slow
async def test_a_venue_liquidation_flattens_the_position_at_the_venues_price_and_fee(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite"
    seen: dict[str, float] = {}

    async def act(node: LiveNode) -> None:
        kernel = node.kernel
        await _open_long(node, emulator)
        emulator.liquidate(SYMBOL, 25_000.0, 1.25)
        await until(lambda: kernel.portfolio.position(USDM_IID) == 0.0)
        await rounds_after(node.reconciler, 2)  # a difference with the venue's position would now be held
        seen["wallet"] = _wallet(node)

    async with _emulator() as emulator:
        node = await _run(tmp_path, emulator, TRADE_FRAMES[:1], journal, act)
        kernel = node.kernel
        assert emulator.position(SYMBOL) == 0.0
        [liq] = kernel.result.liquidations
        assert (liq.quantity, liq.price, liq.fee) == pytest.approx((0.01, 25_000.0, 1.25))
        [closing] = [f for f in kernel.result.fills if f.strategy_id == "liquidation"]
        assert (closing.side, closing.quantity, closing.price, closing.fee) == ("SELL", pytest.approx(0.01), 25_000.0, 1.25)
        assert closing.reason == "liquidation"
        assert seen["wallet"] == pytest.approx(emulator.balances["USDT"], abs=1e-8)
        assert not node.guard.holds


@pytest.mark.slow
async def test_a_partial_venue_liquidation_shrinks_each_strategys_share_pro_rata(tmp_path: Path) -> None:
    """Two strategies long 0.03 and 0.01 at 28,000; the venue liquidates 0.02 of the 0.04 at 25,000 (fee 1.0).

    Half the net position is left, so each strategy keeps half of its own (0.015, 0.005), the sum
    the venue's remaining 0.02; in the attribution each realises its closed half at 25,000
    (0.015 * -3,000 = -45, 0.005 * -3,000 = -15) and pays the fee by those parts (0.75, 0.25).
    """
    journal = tmp_path / "journal.sqlite"
    seen: dict[str, float] = {}

    def two_strategies(config: dict[str, Any]) -> None:
        one = config.pop("strategy")
        config["strategies"] = [{**one, "id": "a"}, {**one, "id": "b"}]

    async def act(node: LiveNode) -> None:
        kernel = node.kernel
        await _open_long(node, emulator, 0.03, "a")
        await _open_long(node, emulator, 0.01, "b")
        emulator.liquidate(SYMBOL, 25_000.0, 1.0, quantity=0.02)
        await until(lambda: len(kernel.result.liquidations) == 1)
        await rounds_after(node.reconciler, 2)  # a difference with the venue's position would now be held
        seen.update(a=kernel.strategy_position("a", USDM_IID), b=kernel.strategy_position("b", USDM_IID))

    async with _emulator() as emulator:
        node = await _run(tmp_path, emulator, TRADE_FRAMES[:1], journal, act, edit=two_strategies)
        kernel = node.kernel
        assert emulator.position(SYMBOL) == pytest.approx(0.02, abs=1e-12)
        assert kernel.portfolio.position(USDM_IID) == pytest.approx(0.02, abs=1e-12)
        assert (seen["a"], seen["b"]) == pytest.approx((0.015, 0.005), abs=1e-12)
        [liq] = kernel.result.liquidations
        assert (liq.quantity, liq.price, liq.fee) == pytest.approx((0.02, 25_000.0, 1.0))
        rows = {r.strategy_id: r for r in attribute(kernel.result.fills, kernel.result.last_prices) if r.instrument == USDM_IID}
        assert set(rows) == {"a", "b"}
        opening = {f.strategy_id: f.fee for f in kernel.result.fills if f.strategy_id != "liquidation"}
        assert (rows["a"].position, rows["a"].realized_pnl, rows["a"].fees - opening["a"]) == pytest.approx((0.015, -45.0, 0.75))
        assert (rows["b"].position, rows["b"].realized_pnl, rows["b"].fees - opening["b"]) == pytest.approx((0.005, -15.0, 0.25))
        assert not node.guard.holds


def _journaled_funding(journal: Path) -> list[FundingPaid]:
    j = Journal(journal)
    try:
        return [e.message for e in j.entries() if type(e.message) is FundingPaid]
    finally:
        j.close()


@pytest.mark.slow
async def test_funding_settled_while_the_daemon_was_down_is_booked_once_at_restart_and_never_again(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite"
    seen: dict[str, float] = {}

    async def open_long(node: LiveNode) -> None:
        await _open_long(node, emulator)

    async def booked(node: LiveNode) -> None:
        # the retried read answered and booked (a repeated read would be asked right after it)
        await until(lambda: len(node.kernel.result.funding) >= 2 and not node.reconciler.funding_pending)
        seen["wallet"] = _wallet(node)

    async with _emulator() as emulator:
        await _run(tmp_path, emulator, TRADE_FRAMES[:1], journal, open_long)
        # the daemon is down (no user stream): two settlements reach only the venue's income history
        paid = [emulator.settle_funding(SYMBOL, 0.0001, PRICE), emulator.settle_funding(SYMBOL, -0.0003, PRICE)]
        # the first read of it gets no answer: asked again later, while trading and reconciliation go on
        emulator.rest_faults.append(RestFault("error5xx", "GET", "/fapi/v1/income"))
        lines: list[str] = []
        sink = logger.add(lambda m: lines.append(m.record["message"]), level="INFO", format="{message}")
        try:
            node = await _run(tmp_path, emulator, TRADE_FRAMES[:1], journal, booked)
        finally:
            logger.remove(sink)
        # the time read from is logged as a time (it was raw epoch nanoseconds: 'since 1680652800123000000')
        told = [line for line in lines if "funding payment(s) at the venue since" in line]
        assert any(re.fullmatch(r"reconciliation: 2 funding payment\(s\) at the venue since "
                                r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z, 2 missed and booked", line) for line in told), told
        assert [p for m, p, _ in emulator.requests if p == "/fapi/v1/income"] == ["/fapi/v1/income"] * 2
        assert not node.guard.holds
        assert [f.payment for f in node.kernel.result.funding] == pytest.approx(paid, abs=1e-8)
        assert [f.ts_event // 1_000_000 for f in node.kernel.result.funding] == [r["time"] for r in emulator.income]
        assert seen["wallet"] == pytest.approx(emulator.balances["USDT"], abs=1e-8)
        assert node.reconciler.funding_caught_up == 2
        assert [p.payment for p in _journaled_funding(journal)] == pytest.approx(paid, abs=1e-8)
        # a second restart reads the same history and books nothing more
        again = await _run(tmp_path, emulator, TRADE_FRAMES[:1], journal)
        assert again.reconciler.funding_caught_up == 0
        assert [f.payment for f in again.kernel.result.funding] == pytest.approx(paid, abs=1e-8)
        assert _wallet(again) == pytest.approx(emulator.balances["USDT"], abs=1e-8)
    assert [p.payment for p in _journaled_funding(journal)] == pytest.approx(paid, abs=1e-8)


@pytest.mark.slow
async def test_funding_settled_while_the_user_stream_was_disconnected_is_booked_once_after_the_reconnect(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite"
    seen: dict[str, Any] = {}

    async def act(node: LiveNode) -> None:
        kernel = node.kernel
        await _open_long(node, emulator)
        # the settlement's ACCOUNT_UPDATE never arrives (the connection was lost), then the stream reconnects
        emulator.stream_faults.append(StreamFault("drop", "FUNDING_FEE"))
        seen["paid"] = emulator.settle_funding(SYMBOL, 0.0002, PRICE)
        assert emulator.stream_faults[-1].fired and kernel.result.funding == []
        connections = node.stream.connections
        await emulator.drop_sessions()
        await until(lambda: node.stream.connections > connections and len(kernel.result.funding) >= 1)
        # a settlement heard on the stream after the reconnect is booked once too
        seen["live"] = emulator.settle_funding(SYMBOL, 0.0001, PRICE)
        await until(lambda: len(kernel.result.funding) >= 2)
        # another reconnect reads both from the history again (one booked by the stream): nothing doubled
        reads = _income_reads(emulator)
        await emulator.drop_sessions()
        await until(lambda: _income_reads(emulator) > reads
                    and not node.reconciler.funding_pending)  # that read answered and booked
        seen["wallet"] = _wallet(node)
        seen["caught_up"] = node.reconciler.funding_caught_up

    async with _emulator() as emulator:
        node = await _run(tmp_path, emulator, TRADE_FRAMES[:1], journal, act)
        assert [f.payment for f in node.kernel.result.funding] == pytest.approx([seen["paid"], seen["live"]], abs=1e-8)
        assert seen["caught_up"] == 2  # the cross payment heard on the stream names no symbol: read from the history too
        assert seen["wallet"] == pytest.approx(emulator.balances["USDT"], abs=1e-8)
    assert [p.payment for p in _journaled_funding(journal)] == pytest.approx([seen["paid"], seen["live"]], abs=1e-8)


@pytest.mark.slow
async def test_a_funding_read_after_a_flip_is_booked_on_the_long_it_was_paid_on_not_the_short_after(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite"
    seen: dict[str, Any] = {}

    async def act(node: LiveNode) -> None:
        kernel = node.kernel
        await _open_long(node, emulator)
        # the venue pays the long's funding; the cross payment pushed names no symbol, and its read of the income
        # history is held at the venue while a sell of 0.02 flips the position to a short 0.01
        release = asyncio.Event()
        emulator.rest_faults.append(RestFault("hold", "GET", "/fapi/v1/income", release=release))
        reads = _income_reads(emulator)
        seen["paid"] = emulator.settle_funding(SYMBOL, 0.0001, PRICE)
        await until(lambda: _income_reads(emulator) > reads)
        now = node.clock.now_ns()
        order = kernel.execution.submit(SubmitOrder("TickEmaCross", USDM_IID, "", OrderSide.SELL, 0.02, now, now, OrderType.MARKET))
        await until(lambda: order.client_order_id in emulator.orders)
        at = emulator.clock.now_ns() + 10**6
        emulator.on_trade(Trade(USDM_IID, at, at, PRICE, 1.0, -1, "x-flip"))
        await until(lambda: math.isclose(kernel.portfolio.position(USDM_IID), -0.01, abs_tol=1e-12))
        release.set()
        await until(lambda: len(kernel.result.funding) >= 1)

    async with _emulator() as emulator:
        node = await _run(tmp_path, emulator, TRADE_FRAMES[:1], journal, act)
        # the long 0.01 paid 0.01 * 28,000 * 0.0001 = 0.028 at the venue's funding time, before the flip's fill
        assert seen["paid"] == pytest.approx(0.028)
        assert [(f.quantity, f.payment) for f in node.kernel.result.funding] == [(pytest.approx(0.01), pytest.approx(0.028))]
    assert [(p.quantity, p.payment) for p in _journaled_funding(journal)] == [(pytest.approx(0.01), pytest.approx(0.028))]


@pytest.mark.slow
async def test_a_funding_the_user_stream_tells_before_the_journal_is_replayed_books_no_earlier_one_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    journal = tmp_path / "journal.sqlite"
    seen: dict[str, Any] = {}

    async def first(node: LiveNode) -> None:
        await _open_long(node, emulator)
        seen["first"] = emulator.settle_funding(SYMBOL, 0.0001, PRICE)
        await until(lambda: len(node.kernel.result.funding) == 1 and not node.reconciler.funding_pending)

    async def booked(node: LiveNode) -> None:
        await until(lambda: len(node.kernel.result.funding) >= 2 and not node.reconciler.funding_pending)
        seen["wallet"] = _wallet(node)

    # the restart's user stream is subscribed, and the venue pays the next funding (a cross payment: no symbol)
    # before the journal is replayed: the daemon hears it with no payment booked yet and no position
    told = asyncio.Event()
    on_balance, connect = LiveNode._on_balance, LiveNode._connect

    def spy(self: LiveNode, balance: Any) -> None:
        on_balance(self, balance)
        if isinstance(balance, FundingUnattributed):
            told.set()

    async def settle_once_subscribed(self: LiveNode) -> None:
        await connect(self)
        seen["second"] = emulator.settle_funding(SYMBOL, 0.0002, PRICE)
        await told.wait()
        await asyncio.sleep(0.2)  # a read of the income history it started meanwhile answers

    async with _emulator() as emulator:
        await _run(tmp_path, emulator, TRADE_FRAMES[:1], journal, first)
        monkeypatch.setattr(LiveNode, "_on_balance", spy)
        monkeypatch.setattr(LiveNode, "_connect", settle_once_subscribed)
        node = await _run(tmp_path, emulator, TRADE_FRAMES[:1], journal, booked)
        paid = [seen["first"], seen["second"]]
        assert paid == pytest.approx([0.028, 0.056])  # 0.01 * 28,000 * 0.0001, then * 0.0002, on the long 0.01
        assert [(f.quantity, f.payment) for f in node.kernel.result.funding] == [(0.01, pytest.approx(p)) for p in paid]
        assert seen["wallet"] == pytest.approx(emulator.balances["USDT"], abs=1e-8)
    assert [(f.quantity, f.payment) for f in _journaled_funding(journal)] == [(0.01, pytest.approx(p)) for p in paid]


@pytest.mark.slow
async def test_a_funding_paid_after_a_fill_made_while_down_is_booked_at_restart_on_the_position_after_it(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite"
    seen: dict[str, Any] = {}

    async def rest_a_sell(node: LiveNode) -> None:
        await _open_long(node, emulator)
        now = node.clock.now_ns()
        order = node.kernel.execution.submit(
            SubmitOrder("TickEmaCross", USDM_IID, "", OrderSide.SELL, 0.02, now, now, OrderType.LIMIT, price=PRICE + 100.0))
        await until(lambda: order.client_order_id in emulator.orders)

    async def booked(node: LiveNode) -> None:
        await until(lambda: len(node.kernel.result.funding) >= 1 and not node.reconciler.funding_pending)

    def leave_orders(raw: dict[str, Any]) -> None:
        raw["live"]["cancel_on_stop"] = False

    async with _emulator() as emulator:
        await _run(tmp_path, emulator, TRADE_FRAMES[:1], journal, rest_a_sell, leave_orders)
        # while the daemon is down the resting sell fills (the long 0.01 flips to a short 0.01), then the venue pays
        # the short's funding: 0.01 * 28,100 * 0.0001 = 0.0281 received
        at = emulator.clock.now_ns() + 10**6
        emulator.on_trade(Trade(USDM_IID, at, at, PRICE + 100.0, 1.0, -1, "x-down"))
        assert emulator.position(SYMBOL) == pytest.approx(-0.01)
        seen["paid"] = emulator.settle_funding(SYMBOL, 0.0001, PRICE + 100.0)
        # the restart's read of the fills made while it was down answers late (held until the income history is
        # read, at most 2 s)
        release = asyncio.Event()
        emulator.rest_faults.append(RestFault("hold", "GET", "/fapi/v1/userTrades", release=release))

        async def release_later() -> None:
            loop = asyncio.get_running_loop()
            end = loop.time() + 2.0
            while _income_reads(emulator) == 0 and loop.time() < end:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)
            release.set()

        releasing = asyncio.create_task(release_later())
        try:
            node = await _run(tmp_path, emulator, TRADE_FRAMES[:1], journal, booked, leave_orders)
        finally:
            release.set()
            await releasing
        assert seen["paid"] == pytest.approx(-0.0281)
        assert node.kernel.portfolio.position(USDM_IID) == pytest.approx(-0.01)
        assert [(f.quantity, f.payment) for f in node.kernel.result.funding] == [(pytest.approx(-0.01), pytest.approx(-0.0281))]
    assert [(f.quantity, f.payment) for f in _journaled_funding(journal)] == [(pytest.approx(-0.01), pytest.approx(-0.0281))]


@pytest.mark.slow
async def test_a_fill_the_user_stream_tells_before_the_journal_is_replayed_is_booked_once_on_its_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    journal = tmp_path / "journal.sqlite"
    seen: dict[str, Any] = {}

    async def rest_a_sell(node: LiveNode) -> None:
        await _open_long(node, emulator)
        now = node.clock.now_ns()
        order = node.kernel.execution.submit(
            SubmitOrder("TickEmaCross", USDM_IID, "", OrderSide.SELL, 0.02, now, now, OrderType.LIMIT, price=PRICE + 100.0))
        await until(lambda: order.client_order_id in emulator.orders)
        seen["sell"] = order.client_order_id

    async def reconciled(node: LiveNode) -> None:
        startup = node._startup_task
        await until(lambda: startup is not None and startup.done())
        await rounds_after(node.reconciler, 1)

    def leave_orders(raw: dict[str, Any]) -> None:
        raw["live"]["cancel_on_stop"] = False

    # the restart's user stream is subscribed, and the journaled resting sell of 0.02 fills (the long 0.01 flips to
    # a short 0.01) before the journal is replayed: the daemon hears the fill with no order and no position yet
    told = asyncio.Event()
    on_event, connect = LiveNode._on_stream_event, LiveNode._connect

    def spy(self: LiveNode, event: Any) -> None:
        if isinstance(event, OrderFilled):
            told.set()
        on_event(self, event)

    async def fill_once_subscribed(self: LiveNode) -> None:
        await connect(self)
        at = emulator.clock.now_ns() + 10**6
        emulator.on_trade(Trade(USDM_IID, at, at, PRICE + 100.0, 1.0, -1, "x-early"))
        await told.wait()
        await asyncio.sleep(0.1)

    async with _emulator() as emulator:
        await _run(tmp_path, emulator, TRADE_FRAMES[:1], journal, rest_a_sell, leave_orders)
        monkeypatch.setattr(LiveNode, "_on_stream_event", spy)
        monkeypatch.setattr(LiveNode, "_connect", fill_once_subscribed)
        node = await _run(tmp_path, emulator, TRADE_FRAMES[:1], journal, reconciled, leave_orders)
        assert emulator.position(SYMBOL) == pytest.approx(-0.01)
        kernel = node.kernel
        sell = kernel.orders.get(seen["sell"])
        assert sell is not None and sell.status is OrderStatus.FILLED and sell.filled_qty == pytest.approx(0.02)
        assert kernel.portfolio.position(USDM_IID) == pytest.approx(-0.01)
        booked = [(f.strategy_id, f.side, f.quantity, f.price) for f in kernel.result.fills if f.client_order_id == seen["sell"]]
        assert booked == [("TickEmaCross", "SELL", pytest.approx(0.02), PRICE + 100.0)]
        assert [f.client_order_id for f in kernel.result.fills if f.side == "SELL"] == [seen["sell"]]
        assert not node.guard.holds
    j = Journal(journal)
    try:
        fills = [e.message for e in j.entries() if type(e.message) is OrderFilled]
    finally:
        j.close()
    assert [(f.client_order_id, f.strategy_id, f.last_qty) for f in fills if f.side is OrderSide.SELL] == [
        (seen["sell"], "TickEmaCross", pytest.approx(0.02))
    ]


async def test_a_cancel_the_user_stream_tells_before_the_journal_is_replayed_is_not_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A resting sell journaled open; on the restart the venue cancels it once the user stream is subscribed and
    before the journal is replayed: the parser, which knows no order yet, drops the CANCELED event ('not sent by
    this process; ignored'). Nothing is lost: the replay leaves the order UNKNOWN and the start-up reconciliation
    reads the open orders again after the replay (or queries it), so the order ends CANCELED, journaled."""
    journal = tmp_path / "journal.sqlite"
    seen: dict[str, Any] = {}

    async def rest_a_sell(node: LiveNode) -> None:
        now = node.clock.now_ns()
        order = node.kernel.execution.submit(
            SubmitOrder("TickEmaCross", USDM_IID, "", OrderSide.SELL, 0.01, now, now, OrderType.LIMIT, price=PRICE + 100.0))
        await until(lambda: order.client_order_id in emulator.orders and order.status is OrderStatus.ACCEPTED)
        seen["sell"] = order.client_order_id

    async def reconciled(node: LiveNode) -> None:
        startup = node._startup_task
        await until(lambda: startup is not None and startup.done())

    def leave_orders(raw: dict[str, Any]) -> None:
        raw["live"]["cancel_on_stop"] = False

    dropped: list[str] = []
    connect = LiveNode._connect

    async def cancel_once_subscribed(self: LiveNode) -> None:
        await connect(self)
        sink = logger.add(lambda m: dropped.append(m.record["message"]), level="INFO",
                          filter=lambda r: "not sent by this process" in r["message"])
        try:
            assert emulator.cancel(emulator.orders[seen["sell"]])
            await until(lambda: bool(dropped))
        finally:
            logger.remove(sink)

    async with _emulator() as emulator:
        await _run(tmp_path, emulator, TRADE_FRAMES[:1], journal, rest_a_sell, leave_orders)
        monkeypatch.setattr(LiveNode, "_connect", cancel_once_subscribed)
        node = await _run(tmp_path, emulator, TRADE_FRAMES[:1], journal, reconciled, leave_orders)
        assert dropped == [f"binance user stream: CANCELED of order {seen['sell']} not sent by this process; ignored"]
        assert node.kernel.orders.get(seen["sell"]).status is OrderStatus.CANCELED
    j = Journal(journal)
    try:
        kinds = [type(e.message).__name__ for e in j.entries() if getattr(e.message, "client_order_id", "") == seen["sell"]]
    finally:
        j.close()
    assert kinds[-1] in ("OrderResolved", "OrderCanceled"), kinds


ETH_INSTRUMENT = {**USDM_INSTRUMENT, "symbol": "ETHUSDT", "base": "ETH"}
ETH = Instrument(**{**ETH_INSTRUMENT, "kind": InstrumentKind.PERPETUAL})


@pytest.mark.slow
async def test_cross_margin_funding_of_two_perpetuals_is_booked_on_each_from_the_income_history_at_once(tmp_path: Path) -> None:
    """Two USDT perpetuals in cross margin: Binance's ``FUNDING_FEE`` update names no symbol (no ``P``).

    Each payment is booked on its own instrument as soon as it is heard, from ``GET /fapi/v1/income``
    (which names the symbol), once: no restart or reconnect needed, the wallet the venue's.
    """
    journal = tmp_path / "journal.sqlite"
    seen: dict[str, Any] = {}

    def two_perpetuals(config: dict[str, Any]) -> None:
        config["instruments"].append(ETH_INSTRUMENT)

    async def act(node: LiveNode) -> None:
        kernel = node.kernel
        await _open_long(node, emulator)
        now = node.clock.now_ns()
        order = kernel.execution.submit(SubmitOrder("TickEmaCross", ETH.instrument_id, "", OrderSide.SELL, 0.5, now, now, OrderType.MARKET))
        await until(lambda: order.client_order_id in emulator.orders)
        at = emulator.clock.now_ns() + 10**6
        emulator.on_trade(Trade(ETH.instrument_id, at, at, 2_000.0, 1.0, -1, "x-eth"))
        await until(lambda: kernel.portfolio.position(ETH.instrument_id) == pytest.approx(-0.5, abs=1e-12))
        reads = _income_reads(emulator)
        seen["paid"] = {USDM_IID: emulator.settle_funding(SYMBOL, 0.0001, PRICE),
                        ETH.instrument_id: emulator.settle_funding("ETHUSDT", 0.0003, 2_000.0)}
        await until(lambda: len(kernel.result.funding) >= 2 and not node.reconciler.funding_pending)
        await rounds_after(node.reconciler, 2)  # a payment booked twice, or a wallet apart, would now show
        seen["reads"] = _income_reads(emulator) - reads
        seen["wallet"] = _wallet(node)

    emulator = BinanceFuturesEmulator(KEY, SECRET, {USDM_IID: INST, ETH.instrument_id: ETH}, {"USDT": 10_000.0})
    async with emulator:
        node = await _run(tmp_path, emulator, TRADE_FRAMES[:1], journal, act, edit=two_perpetuals)
        funding = node.kernel.result.funding
        assert {f.instrument_id: f.payment for f in funding} == pytest.approx(seen["paid"], abs=1e-8)
        assert len(funding) == 2
        assert seen["paid"][ETH.instrument_id] == pytest.approx(-0.5 * 2_000.0 * 0.0003)  # the short receives
        assert 1 <= seen["reads"] <= 2  # read when heard, not at a restart
        assert seen["wallet"] == pytest.approx(emulator.balances["USDT"], abs=1e-8)
        assert not node.guard.holds
    assert sorted(p.payment for p in _journaled_funding(journal)) == pytest.approx(sorted(seen["paid"].values()), abs=1e-8)


@pytest.mark.slow
async def test_a_cross_margin_payment_not_yet_in_the_income_history_is_read_again_until_listed(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite"
    seen: dict[str, Any] = {}

    def two_perpetuals(config: dict[str, Any]) -> None:
        config["instruments"].append(ETH_INSTRUMENT)

    async def act(node: LiveNode) -> None:
        kernel = node.kernel
        await _open_long(node, emulator)
        reads = _income_reads(emulator)
        seen["paid"] = emulator.settle_funding(SYMBOL, 0.0001, PRICE)
        row = emulator.income.pop()  # the stream tells the payment before the history lists it
        # the emulator answers a request as it records it: that read found nothing to book
        await until(lambda: _income_reads(emulator) > reads)
        assert kernel.result.funding == [] and node.reconciler.funding_pending
        emulator.income.append(row)
        await until(lambda: len(kernel.result.funding) >= 1 and not node.reconciler.funding_pending)
        seen["wallet"] = _wallet(node)

    emulator = BinanceFuturesEmulator(KEY, SECRET, {USDM_IID: INST, ETH.instrument_id: ETH}, {"USDT": 10_000.0})
    async with emulator:
        node = await _run(tmp_path, emulator, TRADE_FRAMES[:1], journal, act, edit=two_perpetuals)
        assert [(f.instrument_id, f.payment) for f in node.kernel.result.funding] == [(USDM_IID, pytest.approx(seen["paid"], abs=1e-8))]
        assert seen["wallet"] == pytest.approx(emulator.balances["USDT"], abs=1e-8)


@pytest.mark.slow
async def test_a_cross_margin_payment_of_a_position_outside_the_run_is_not_booked_on_the_runs_perpetual(tmp_path: Path) -> None:
    """BTCUSDT is the run's one USDT perpetual; the account also holds ETHUSDT short 0.5, opened by hand at the venue
    before the daemon started.

    A cross ``FUNDING_FEE`` update names no symbol: ETH's payment (0.5 * 2,000 * 0.0003 = 0.3
    received) is read from ``GET /fapi/v1/income``, which names ETHUSDT, and is not the run's:
    nothing booked on BTCUSDT. BTC's payment then settles and is booked once on it.
    """
    journal = tmp_path / "journal.sqlite"
    seen: dict[str, Any] = {}

    async def act(node: LiveNode) -> None:
        kernel = node.kernel
        await _open_long(node, emulator)
        reads = _income_reads(emulator)
        seen["eth"] = emulator.settle_funding("ETHUSDT", 0.0003, 2_000.0)
        # the income read answered (or the payment was booked as heard)
        await until(lambda: kernel.result.funding != [] or (
            _income_reads(emulator) > reads and not node.reconciler.funding_pending))
        seen["after_eth"] = list(kernel.result.funding)
        seen["btc"] = emulator.settle_funding(SYMBOL, 0.0001, PRICE)
        await until(lambda: len(kernel.result.funding) >= 1 and not node.reconciler.funding_pending)
        await rounds_after(node.reconciler, 2)  # a payment booked twice would now show

    emulator = BinanceFuturesEmulator(KEY, SECRET, {USDM_IID: INST, ETH.instrument_id: ETH}, {"USDT": 10_000.0})
    async with emulator:
        by_hand = emulator.submit(Order("by-hand-1", "", ETH.instrument_id, OrderSide.SELL, OrderType.MARKET, 0.5), "ETHUSDT")
        at = emulator.clock.now_ns() + 10**6
        emulator.on_trade(Trade(ETH.instrument_id, at, at, 2_000.0, 1.0, -1, "x-eth"))
        assert by_hand.status is OrderStatus.FILLED and emulator.position("ETHUSDT") == pytest.approx(-0.5)
        node = await _run(tmp_path, emulator, TRADE_FRAMES[:1], journal, act)
        assert seen["eth"] == pytest.approx(-0.5 * 2_000.0 * 0.0003)
        assert seen["after_eth"] == []
        assert [(f.instrument_id, f.payment) for f in node.kernel.result.funding] == [(USDM_IID, pytest.approx(seen["btc"], abs=1e-8))]
        assert seen["btc"] == pytest.approx(0.01 * PRICE * 0.0001)
    assert [(p.instrument_id, p.payment) for p in _journaled_funding(journal)] == [(USDM_IID, pytest.approx(seen["btc"], abs=1e-8))]


@pytest.mark.slow
async def test_an_order_filled_by_hand_on_a_symbol_outside_the_run_neither_stops_the_daemon_nor_is_booked(tmp_path: Path) -> None:
    """The account's user stream pushes every symbol's orders: ETHUSDT sold by hand while the daemon trades BTCUSDT.

    The fill is the account's, not the run's: not booked, not journaled (a restart replays
    the journal), and the daemon goes on trading BTCUSDT.
    """
    journal = tmp_path / "journal.sqlite"

    async def act(node: LiveNode) -> None:
        by_hand = emulator.submit(Order("by-hand-1", "", ETH.instrument_id, OrderSide.SELL, OrderType.MARKET, 0.5), "ETHUSDT")
        at = emulator.clock.now_ns() + 10**6
        emulator.on_trade(Trade(ETH.instrument_id, at, at, 2_000.0, 1.0, -1, "x-eth"))
        assert by_hand.status is OrderStatus.FILLED
        await _open_long(node, emulator)  # the user stream handles the ETH frames before these

    emulator = BinanceFuturesEmulator(KEY, SECRET, {USDM_IID: INST, ETH.instrument_id: ETH}, {"USDT": 10_000.0})
    async with emulator:
        node = await _run(tmp_path, emulator, TRADE_FRAMES[:1], journal, act)
        fills = node.kernel.result.fills
        assert [(f.instrument_id, f.quantity) for f in fills] == [(USDM_IID, pytest.approx(0.01))]
        assert node.kernel.portfolio.position(USDM_IID) == pytest.approx(0.01)
        assert not node.guard.holds
    j = Journal(journal)
    try:
        journaled = [e.message for e in j.entries() if type(e.message) is OrderFilled]
    finally:
        j.close()
    assert [f.instrument_id for f in journaled] == [USDM_IID]


@pytest.mark.slow
async def test_fees_paid_in_bnb_debit_the_declared_bnb_not_the_usdt_wallet_and_bnb_is_reconciled(tmp_path: Path) -> None:
    """The BNB fee discount on USD-M (``POST /fapi/v1/feeBurn``): the futures wallet's BNB pays each fee.

    Hand-derived: a market buy of 0.01 at 28,000 with a 0.04 % taker fee pays 0.112 USDT, i.e.
    0.112 / 560 = 0.0002 BNB; the USDT wallet does not move (no realized PnL on an opening fill).
    """
    journal = tmp_path / "journal.sqlite"
    seen: dict[str, Any] = {}

    def bnb(config: dict[str, Any]) -> None:
        config["balances"] = {"USDT": 10_000.0, "BNB": 1.0}

    async def act(node: LiveNode) -> None:
        account = node.kernel.portfolio.account
        await _open_long(node, emulator)
        await rounds_after(node.reconciler, 2)  # a BNB or USDT difference would now be reported
        seen["here"] = (account.balance("BNB"), _wallet(node))
        seen["mismatches"] = dict(node.reconciler.asset_mismatches)
        emulator.balances["BNB"] -= 0.5  # moved out of the futures wallet behind the daemon's back
        await rounds_after(node.reconciler, 3)
        seen["after"] = dict(node.reconciler.asset_mismatches)

    emulator = BinanceFuturesEmulator(KEY, SECRET, {USDM_IID: INST}, {"USDT": 10_000.0, "BNB": 1.0})
    emulator.fee_in = ("BNB", 560.0)
    async with emulator:
        node = await _run(tmp_path, emulator, TRADE_FRAMES[:1], journal, act, edit=bnb)
        (fill,) = emulator.fills
        assert (fill.fee_asset, fill.fee) == ("BNB", pytest.approx(0.0002))
        assert emulator.balances["USDT"] == 10_000.0
        assert seen["here"] == (pytest.approx(1.0 - 0.0002, abs=1e-15), pytest.approx(10_000.0, abs=1e-9))
        assert seen["mismatches"] == {}
        assert seen["after"] == {"BNB": (pytest.approx(0.9998, abs=1e-12), pytest.approx(0.4998, abs=1e-12))}
        assert not node.guard.holds


def _funding_update(positions: list[dict[str, str]]) -> str:
    balance = {"a": "USDT", "wb": "9999.5", "cw": "9999.5", "bc": "-0.5"}
    return json.dumps({"e": "ACCOUNT_UPDATE", "E": 2_000, "T": 1_999, "a": {"m": "FUNDING_FEE", "B": [balance], "P": positions}})


def test_a_funding_fee_update_names_its_instrument_or_is_not_guessed_when_the_venue_leaves_it_ambiguous() -> None:
    told = [AccountBalance("USDT", 9999.5, 0.0, 1_999_000_000), FundingUnattributed("USDT", 0.5, 1_999_000_000)]
    one = FuturesStreamParser({USDM_IID: INST}, {}.get, clock_ns=lambda: 7)
    # a cross position: no P; even with one USDT perpetual in the run the account may hold another: not guessed
    assert one.parse(_funding_update([])) == told
    eth = Instrument(**{**USDM_INSTRUMENT, "kind": InstrumentKind.PERPETUAL, "symbol": "ETHUSDT", "base": "ETH"})
    two = FuturesStreamParser({USDM_IID: INST, eth.instrument_id: eth}, {}.get, clock_ns=lambda: 7)
    # which one paid is not said: not guessed, but told as unattributed (the income history names it)
    assert two.parse(_funding_update([])) == told
    isolated = {"s": "ETHUSDT", "pa": "1", "ep": "2000", "bep": "0", "cr": "0", "up": "0", "mt": "isolated", "iw": "10", "ps": "BOTH"}
    paid_eth = [e for e in two.parse(_funding_update([isolated])) if type(e) is FundingPaid]
    assert [(p.instrument_id, p.payment) for p in paid_eth] == [(eth.instrument_id, 0.5)]
    # an isolated ETHUSDT position outside the run: its payment is not the run's BTCUSDT's
    assert [e for e in one.parse(_funding_update([isolated])) if type(e) in (FundingPaid, FundingUnattributed)] == []


async def test_the_emulator_refuses_a_second_funding_row_a_daemon_would_take_for_the_first_told_twice(tmp_path: Path) -> None:
    """As the OKX swap emulator's since 3cb063b7: two settlements of the same rate and mark (a long of 0.01 at 28,000:
    0.028 USDT each) were both stamped on the emulator's clock, milliseconds apart, in the income history (and pushed
    as two ``ACCOUNT_UPDATE`` of the same ``bc``), a history Binance cannot produce (it settles a symbol's funding once
    per funding time, hours apart), and a daemon takes two payments of one instrument and amount within 60 s
    (VENUE_FUNDING_MATCH_NS) for one told twice: 0.028 of the 0.056 paid would be booked. The emulator now refuses
    the second settlement, naming the symbol, the amount and the first row; the history and the wallet are as after
    one settlement, and a settlement of another amount goes through."""
    async with _emulator() as emulator:
        await _run(tmp_path, emulator, TRADE_FRAMES[:1], tmp_path / "journal.sqlite", lambda node: _open_long(node, emulator))
        paid = second_funding_refused(
            emulator, SYMBOL, PRICE, r"a second funding income row of BTCUSDT for -0\.028 within 60 s of income row 9000000000: ",
            lambda: [r["income"] for r in emulator.income if r["incomeType"] == "FUNDING_FEE"])
        assert paid == pytest.approx(0.028)
        assert [r["income"] for r in emulator.income if r["incomeType"] == "FUNDING_FEE"] == ["-0.02800000", "-0.05600000"]
