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
from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import Bar, Liquidity, OrderFilled, OrderSide, OrderType, SubmitOrder

PACKAGE = str(Path(tradebus.__file__).parent)
MIN = 60_000_000_000
SPOT = Instrument("BINANCE", "BTCUSDT", base="BTC", quote="USDT", tick_size=0.01, lot_size=0.0001)


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
    """Lines run by a venue's fill of part of a take-profit linked with its stop-loss, ``resting`` such pairs resting."""
    iid = SPOT.instrument_id
    kernel = Kernel([SPOT], balances={"USDT": 1_000_000.0, "BTC": 1_000.0})
    bar(kernel, iid, 1)
    account = kernel.portfolio.account
    for i in range(resting + 1):
        qty = 100.0 if i == resting else 0.01
        take = order(iid, f"tp-{i}", OrderSide.SELL, qty, OrderType.LIMIT, 200.0 + i * 0.01)
        stop = order(iid, f"sl-{i}", OrderSide.SELL, qty, OrderType.STOP_MARKET, float("nan"), 50.0 - i * 0.01)
        account.link_oco([take.client_order_id, stop.client_order_id])  # as a bracket links its exits
        kernel.submit(take)
        kernel.submit(stop)
    bar(kernel, iid, 2)
    hot = f"tp-{resting}"
    fills = [
        OrderFilled("grid", iid, hot, "v", f"t{i}", OrderSide.SELL, 0.25, 200.0, 0.0, Liquidity.MAKER, 3 * MIN, 3 * MIN)
        for i in range(2)
    ]
    kernel.execution.on_venue_event(fills[0])
    lines = lines_run(lambda: kernel.execution.on_venue_event(fills[1]))
    # the stop-loss may fill no more than the take-profit has left (the account's OCO room)
    assert kernel.orders.get(hot).leaves_qty == 99.5
    assert account.oco_room(f"sl-{resting}") == 99.5
    assert kernel.orders.open_count == 2 * resting + 2
    return lines


@pytest.mark.parametrize("lines", [oco_fill_lines], ids=["oco fill"])
def test_an_event_runs_the_same_lines_with_400_orders_resting_as_with_20(lines: Callable[[int], int]) -> None:
    assert lines(200) == lines(10)
