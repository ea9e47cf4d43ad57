"""Events whose cost must not grow with the book of working orders (a grid strategy's hundreds of resting orders).

``bench/resting_orders.py`` times them; here the lines of the package's Python code that one event runs are
counted (``sys.settrace``, no clock): the same with 400 orders resting as with 20 (both past the 16 from which
the running totals are kept). A walk over the working orders runs lines for each of them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

import tradebus
from tradebus.engine.instrument import Instrument, InstrumentKind
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import Bar, Liquidity, OrderFilled, OrderSide, OrderType, SubmitOrder
from tradebus.risk.config import RiskConfig

PACKAGE = str(Path(tradebus.__file__).parent)
MIN = 60_000_000_000
SPOT = Instrument("BINANCE", "BTCUSDT", base="BTC", quote="USDT", tick_size=0.01, lot_size=0.0001)
PERP = Instrument("BINANCE", "BTCUSDT-PERP", InstrumentKind.PERPETUAL, base="BTC", quote="USDT", tick_size=0.01,
                  lot_size=0.0001, leverage=5.0)  # fmt: skip


def lines_run(action: Callable[[], Any]) -> int:
    """How many lines of the package's code ``action()`` runs."""
    count = 0

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return local

    def calls(frame: FrameType, event: str, arg: Any) -> Any:
        return local if frame.f_code.co_filename.startswith(PACKAGE) else None

    before = sys.gettrace()
    sys.settrace(calls)
    try:
        action()
    finally:
        sys.settrace(before)
    return count


def bar(kernel: Kernel, iid: str, minute: int) -> None:
    kernel.process(Bar(iid, minute * MIN, minute * MIN, 100.0, 101.0, 99.0, 100.0, 10.0))


def order(iid: str, coid: str, side: OrderSide, qty: float, typ: OrderType, price: float, trigger: float = float("nan")) -> SubmitOrder:
    return SubmitOrder("grid", iid, coid, side, qty, 0, 0, typ, price, trigger)


def oco_fill_lines(resting: int) -> int:
    """Lines run by a venue's fill of part of a take-profit linked with its stop-loss, ``resting`` orders resting
    besides them (such pairs)."""
    iid = SPOT.instrument_id
    kernel = Kernel([SPOT], balances={"USDT": 1_000_000.0, "BTC": 1_000.0})
    bar(kernel, iid, 1)
    account = kernel.portfolio.account
    pairs = resting // 2
    for i in range(pairs + 1):
        qty = 100.0 if i == pairs else 0.01
        take = order(iid, f"tp-{i}", OrderSide.SELL, qty, OrderType.LIMIT, 200.0 + i * 0.01)
        stop = order(iid, f"sl-{i}", OrderSide.SELL, qty, OrderType.STOP_MARKET, float("nan"), 50.0 - i * 0.01)
        account.link_oco([take.client_order_id, stop.client_order_id])  # as a bracket links its exits
        kernel.submit(take)
        kernel.submit(stop)
    bar(kernel, iid, 2)
    hot = f"tp-{pairs}"
    fills = [
        OrderFilled("grid", iid, hot, "v", f"t{i}", OrderSide.SELL, 0.25, 200.0, 0.0, Liquidity.MAKER, 3 * MIN, 3 * MIN)
        for i in range(2)
    ]
    kernel.execution.on_venue_event(fills[0])
    lines = lines_run(lambda: kernel.execution.on_venue_event(fills[1]))
    # the stop-loss may fill no more than the take-profit has left (the account's OCO room)
    assert kernel.orders.get(hot).leaves_qty == 99.5
    assert account.oco_room(f"sl-{pairs}") == 99.5
    assert kernel.orders.open_count == 2 * pairs + 2
    return lines


def large_order_lines(resting: int) -> int:
    """Lines run by the submit of a resting buy on a perpetual held long 1 with ``resting`` sells resting against
    it, the first (2) larger than the position."""
    iid = PERP.instrument_id
    kernel = Kernel([PERP], balances={"USDT": 1_000_000.0})
    bar(kernel, iid, 1)
    kernel.submit(order(iid, "long", OrderSide.BUY, 1.0, OrderType.MARKET, float("nan")))
    bar(kernel, iid, 2)
    assert kernel.portfolio.position(iid) == 1.0
    for i in range(resting):
        qty = 2.0 if i == 0 else 0.01
        kernel.submit(order(iid, f"sell-{i}", OrderSide.SELL, qty, OrderType.LIMIT, 150.0 + i * 0.01))
    bar(kernel, iid, 3)
    account = kernel.portfolio.account
    # only the large sell holds margin: the 1 it sells beyond the position, at 150, at leverage 5
    assert account.locked("USDT") - account.initial_margin("USDT") == 150.0 * 1.0 / 5.0
    lines = lines_run(lambda: kernel.submit(order(iid, "buy", OrderSide.BUY, 0.01, OrderType.LIMIT, 50.0)))
    assert kernel.orders.get("buy").is_open
    assert account.locked("USDT") - account.initial_margin("USDT") == 150.0 * 1.0 / 5.0 + 0.01 * 50.0 / 5.0
    return lines


def unpriced_lines(resting: int) -> int:
    """Lines run by the submit of a resting buy under ``max_gross_exposure`` with ``resting`` buys resting on an
    instrument no price has come for (the gate values it at the highest limit of its working orders)."""
    eth = Instrument("BINANCE", "ETHUSDT", base="ETH", quote="USDT", tick_size=0.01, lot_size=0.0001)
    iid, other = SPOT.instrument_id, eth.instrument_id
    kernel = Kernel([SPOT, eth], risk_config=RiskConfig(max_gross_exposure=1.0), balances={"USDT": 1_000_000.0})
    bar(kernel, iid, 1)
    for i in range(resting):
        kernel.submit(order(other, f"eth-{i}", OrderSide.BUY, 0.01, OrderType.LIMIT, 50.0 + i * 0.01))
    bar(kernel, iid, 2)
    assert kernel.orders.open_count == resting and not kernel.result.denials
    lines = lines_run(lambda: kernel.submit(order(iid, "buy", OrderSide.BUY, 0.01, OrderType.LIMIT, 50.0)))
    assert kernel.orders.get("buy").is_open
    return lines


@pytest.mark.parametrize(
    "lines", [oco_fill_lines, large_order_lines, unpriced_lines], ids=["oco fill", "large order", "unpriced"]
)
def test_an_event_runs_the_same_lines_with_hundreds_of_orders_resting_as_with_20(lines: Callable[[int], int]) -> None:
    assert lines(20) == lines(400)
