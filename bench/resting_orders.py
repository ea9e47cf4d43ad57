"""Benchmark: the cost of one order submit as the number of resting orders grows (a grid strategy).

``Kernel.submit`` of a resting limit buy (risk gate, account check, order manager, venue queue)
with ``N`` limit buys already resting below the market, for a cash spot instrument and a
perpetual, without limits and with ``max_open_orders``, ``max_position`` or
``max_gross_exposure``. The count of open orders the execution engine hands the gate is a
``len``; the sums over the working orders, what cash-only orders hold
(:meth:`SpotCashAccount.held <tradebus.account.spot.SpotCashAccount.held>`), the initial margin
of a perpetual's orders, and the gate's working quantity on a side (``max_position``, REDUCING)
and worst-case gross exposure, are running totals kept as orders change
(:mod:`tradebus.account.exact`): the cost should not grow with ``N``.

Usage::

    python bench/resting_orders.py [--resting 0 100 500 2000] [--k 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time

from tradebus.engine.instrument import Instrument, InstrumentKind
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import Bar, OrderSide, OrderType, SubmitOrder
from tradebus.risk.config import RiskConfig

BAR_NS = 60_000_000_000
LIMITS = {
    "no limits": RiskConfig(),
    "max_open_orders": RiskConfig(max_open_orders=1_000_000),
    "max_position": RiskConfig(max_position=1e6),
    "max_gross_exposure": RiskConfig(max_gross_exposure=100.0),
}


def _instrument(kind: str) -> Instrument:
    if kind == "spot":
        return Instrument("BINANCE", "BTCUSDT", tick_size=0.01, lot_size=0.001)
    return Instrument("BINANCE", "BTCUSDT", InstrumentKind.PERPETUAL, tick_size=0.01, lot_size=0.001, leverage=5.0)


def per_submit_us(kind: str, risk: RiskConfig, resting: int, k: int, repeats: int) -> float:
    """CPU microseconds per submit of ``k`` more resting buys once ``resting`` rest (best of ``repeats`` batches)."""
    inst = _instrument(kind)
    iid = inst.instrument_id
    kernel = Kernel([inst], risk_config=risk, initial_cash=10_000_000.0)
    kernel.process(Bar(iid, BAR_NS, BAR_NS, 100.0, 101.0, 99.0, 100.0, 10.0))
    count = 0

    def submit() -> None:
        nonlocal count
        count += 1
        price = 50.0 + (count % 400) * 0.01  # far below the market: it rests
        kernel.submit(SubmitOrder("grid", iid, f"grid-{count}", OrderSide.BUY, 0.01, 0, 0, OrderType.LIMIT, price))

    for _ in range(resting):
        submit()
    kernel.process(Bar(iid, 2 * BAR_NS, 2 * BAR_NS, 100.0, 101.0, 99.0, 100.0, 10.0))
    if kernel.orders.open_count != resting:
        raise RuntimeError(f"expected {resting} resting orders, got {kernel.orders.open_count}")
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time_ns()
        for _ in range(k):
            submit()
        best = min(best, (time.process_time_ns() - t0) / k / 1e3)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resting", type=int, nargs="+", default=[0, 100, 500, 2000], help="orders resting first")
    parser.add_argument("--k", type=int, default=200, help="submits timed per batch")
    parser.add_argument("--repeats", type=int, default=3, help="batches (the fastest is reported)")
    args = parser.parse_args()
    sys.stdout.write(f"CPU us per submit of a resting limit buy, with N resting: N = {args.resting}\n")
    for kind in ("spot", "perp"):
        for name, risk in LIMITS.items():
            figures = [per_submit_us(kind, risk, n, args.k, args.repeats) for n in args.resting]
            sys.stdout.write(f"  {kind:<5} {name:<19} " + " ".join(f"{f:9.1f}" for f in figures) + "\n")


if __name__ == "__main__":
    main()
