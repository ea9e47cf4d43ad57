"""Benchmark: the cost of one order event as the number of resting orders grows (a grid strategy).

Each figure is CPU microseconds per event with ``N`` orders resting, the best of ``--repeats``
batches of ``--k`` events: the orders a batch submits are canceled (untimed) before the next, so
each batch starts with ``N`` resting and ends with ``N + k - 1`` (the default ``k`` of 10 stays
below the 16 open orders from which the running totals are kept: ``N = 0`` times the plain sums).
The events:

* ``Kernel.submit`` of a resting limit buy (risk gate, account check, order manager, venue queue)
  with ``N`` limit buys resting below the market, for a cash spot instrument and a perpetual,
  without limits and with ``max_open_orders``, ``max_position`` or ``max_gross_exposure``;
* ``spot unpriced``: the same submit on a priced instrument under ``max_gross_exposure`` while the
  ``N`` buys rest on a second instrument no price has come for yet (the gate values it at the
  highest limit of its working orders);
* ``perp large order``: the same submit on a perpetual held long 1, the ``N`` orders resting being
  sells against that position, one of them (2) larger than it, so on that side the part beyond
  the position holds margin;
* ``spot OCO fill``: a fill, as a venue reports it (``ExecutionEngine.on_venue_event``), of part of
  a member of an OCO group (a bracket's take-profit and stop-loss) while the ``N`` resting orders
  are such groups, pairs of sells.

The count of open orders the execution engine hands the gate is a ``len``; the sums over the
working orders, what cash-only orders hold
(:meth:`SpotCashAccount.held <tradebus.account.spot.SpotCashAccount.held>`), the initial margin
of a perpetual's orders, and the gate's working quantity on a side (``max_position``, REDUCING)
and worst-case gross exposure, are running totals kept as orders change
(:mod:`tradebus.account.exact`): the cost should not grow with ``N``.

Usage::

    python bench/resting_orders.py [--resting 0 100 500 2000] [--k 10] [--repeats 50] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable

from checkout import use_this_checkout

use_this_checkout()

from tradebus.engine.instrument import Instrument, InstrumentKind  # noqa: E402
from tradebus.engine.kernel import Kernel  # noqa: E402
from tradebus.engine.messages import (  # noqa: E402
    Bar, CancelOrder, Liquidity, OrderFilled, OrderSide, OrderType, SubmitOrder,
)  # fmt: skip
from tradebus.risk.config import RiskConfig  # noqa: E402

BAR_NS = 60_000_000_000
LIMITS = {
    "no limits": RiskConfig(),
    "max_open_orders": RiskConfig(max_open_orders=1_000_000),
    "max_position": RiskConfig(max_position=1e6),
    "max_gross_exposure": RiskConfig(max_gross_exposure=100.0),
}


def _instrument(kind: str, symbol: str = "BTCUSDT") -> Instrument:
    if kind == "spot":
        return Instrument("BINANCE", symbol, tick_size=0.01, lot_size=0.0001)
    return Instrument("BINANCE", symbol, InstrumentKind.PERPETUAL, tick_size=0.01, lot_size=0.0001, leverage=5.0)


class _Book:
    """A kernel, the bars of its priced instrument, and orders submitted and canceled through it."""

    def __init__(self, kernel: Kernel, iid: str) -> None:
        self.kernel = kernel
        self.iid = iid
        self.bars = 0
        self.count = 0
        self.bar()

    def bar(self) -> None:
        self.bars += 1
        ts = self.bars * BAR_NS
        self.kernel.process(Bar(self.iid, ts, ts, 100.0, 101.0, 99.0, 100.0, 10.0))

    def order(
        self, iid: str, side: OrderSide, qty: float, typ: OrderType, price: float, trigger: float = float("nan")
    ) -> SubmitOrder:
        self.count += 1
        return SubmitOrder("grid", iid, f"grid-{self.count}", side, qty, 0, 0, typ, price, trigger)

    def grid_buy(self, iid: str | None = None) -> SubmitOrder:
        """A limit buy far below the market (it rests)."""
        return self.order(iid or self.iid, OrderSide.BUY, 0.01, OrderType.LIMIT, 50.0 + (self.count % 400) * 0.01)

    def expect(self, resting: int) -> None:
        if self.kernel.orders.open_count != resting:
            raise RuntimeError(f"expected {resting} resting orders, got {self.kernel.orders.open_count}")

    def per_submit_us(self, resting: int, k: int, repeats: int) -> float:
        """CPU us per submit of a resting grid buy with ``resting`` orders resting (the best of ``repeats`` batches
        of ``k``, each batch's orders canceled before the next)."""
        kernel = self.kernel
        best = float("inf")
        for _ in range(repeats):
            cmds = [self.grid_buy() for _ in range(k)]
            gc.collect()
            gc.disable()  # a collection walks every object (more with more orders): not the submit's own cost
            t0 = time.process_time_ns()
            for cmd in cmds:
                kernel.submit(cmd)
            spent = time.process_time_ns() - t0
            gc.enable()
            for cmd in cmds:
                kernel.cancel(CancelOrder("grid", self.iid, cmd.client_order_id, 0, 0))
            self.bar()
            self.expect(resting)
            best = min(best, spent / k / 1e3)
        return best


def grid(kind: str, risk: RiskConfig, resting: int, k: int, repeats: int) -> float:
    """A submit with ``resting`` limit buys resting on the same instrument."""
    inst = _instrument(kind)
    book = _Book(Kernel([inst], risk_config=risk, initial_cash=10_000_000.0), inst.instrument_id)
    for _ in range(resting):
        book.kernel.submit(book.grid_buy())
    book.bar()
    book.expect(resting)
    return book.per_submit_us(resting, k, repeats)


def unpriced(resting: int, k: int, repeats: int) -> float:
    """A submit under ``max_gross_exposure`` with ``resting`` limit buys on an instrument with no price yet."""
    priced, other = _instrument("spot"), _instrument("spot", "ETHUSDT")
    kernel = Kernel([priced, other], risk_config=RiskConfig(max_gross_exposure=100.0), initial_cash=10_000_000.0)
    book = _Book(kernel, priced.instrument_id)
    for _ in range(resting):
        kernel.submit(book.grid_buy(other.instrument_id))
    book.bar()
    book.expect(resting)
    return book.per_submit_us(resting, k, repeats)


def large_order(resting: int, k: int, repeats: int) -> float:
    """A submit on a perpetual held long 1 with ``resting`` sells resting, the first of them (2) larger than it."""
    inst = _instrument("perp")
    book = _Book(Kernel([inst], initial_cash=10_000_000.0), inst.instrument_id)
    book.kernel.submit(book.order(inst.instrument_id, OrderSide.BUY, 1.0, OrderType.MARKET, float("nan")))
    book.bar()
    for i in range(resting):
        qty = 2.0 if i == 0 else 0.01
        book.kernel.submit(book.order(inst.instrument_id, OrderSide.SELL, qty, OrderType.LIMIT, 150.0 + i * 0.01))
    book.bar()
    book.expect(resting)
    return book.per_submit_us(resting, k, repeats)


def oco_fill(resting: int, k: int, repeats: int) -> float:
    """CPU us per fill of part of an OCO member with ``resting`` orders (OCO pairs of sells) resting besides its group."""
    inst = _instrument("spot")
    iid = inst.instrument_id
    kernel = Kernel([inst], initial_cash=10_000_000.0, balances={"quote": 10_000_000.0, "BTCUSDT base": 1_000.0})
    book = _Book(kernel, iid)
    account = kernel.portfolio.account

    def pair(qty: float, take: float, stop: float) -> str:
        tp = book.order(iid, OrderSide.SELL, qty, OrderType.LIMIT, take)
        sl = book.order(iid, OrderSide.SELL, qty, OrderType.STOP_MARKET, float("nan"), stop)
        account.link_oco([tp.client_order_id, sl.client_order_id])  # as a bracket links its exits
        kernel.submit(tp)
        kernel.submit(sl)
        return tp.client_order_id

    for i in range(resting // 2):
        pair(0.01, 200.0 + i * 0.01, 20.0 - (i % 1000) * 0.01)
    hot = pair(100.0, 300.0, 5.0)
    book.bar()
    book.expect(resting // 2 * 2 + 2)
    best = float("inf")
    fills = 0
    for _ in range(repeats):
        batch = []
        for _ in range(k):
            fills += 1
            ts = book.bars * BAR_NS + fills
            batch.append(OrderFilled(
                "grid", iid, hot, "v-hot", f"t-{fills}", OrderSide.SELL, 0.01, 300.0, 0.0, Liquidity.MAKER, ts, ts
            ))  # fmt: skip
        gc.collect()
        gc.disable()
        t0 = time.process_time_ns()
        for fill in batch:
            kernel.execution.on_venue_event(fill)
        spent = time.process_time_ns() - t0
        gc.enable()
        best = min(best, spent / k / 1e3)
    book.expect(resting // 2 * 2 + 2)
    return best


def cases() -> dict[str, Callable[[int, int, int], float]]:
    """``name -> figure(resting, k, repeats)`` of every row."""
    rows: dict[str, Callable[[int, int, int], float]] = {}
    for kind in ("spot", "perp"):
        for name, risk in LIMITS.items():
            rows[f"{kind} {name}"] = lambda n, k, r, kind=kind, risk=risk: grid(kind, risk, n, k, r)
    rows["spot unpriced"] = unpriced
    rows["perp large order"] = large_order
    rows["spot OCO fill"] = oco_fill
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resting", type=int, nargs="+", default=[0, 100, 500, 2000], help="orders resting")
    parser.add_argument("--k", type=int, default=10, help="events timed per batch")
    parser.add_argument("--repeats", type=int, default=50, help="batches (the fastest is reported)")
    parser.add_argument("--only", nargs="+", default=None, help="rows to run (names as printed)")
    args = parser.parse_args()
    sys.stdout.write(f"CPU us per event, with N resting: N = {args.resting}\n")
    for name, figure in cases().items():
        if args.only is None or name in args.only:
            figures = [figure(n, args.k, args.repeats) for n in args.resting]
            sys.stdout.write(f"  {name:<24} " + " ".join(f"{f:9.1f}" for f in figures) + "\n")


if __name__ == "__main__":
    main()
