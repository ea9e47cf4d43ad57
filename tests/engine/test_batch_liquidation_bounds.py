"""The trade loops check a margin position's liquidation only at prices outside its bounds.

A lone margin spot instrument's liquidation is bounded by ``Perpetuals.lo`` and ``hi``: the batch
trade loops skip ``Perpetuals.check`` at its trades strictly between them, the trades they do not
show the venue and those they do (while an order works, and the trade that fills it). ``process()``
checks at every trade: on random positions, at trade prices on, next to and around the liquidation
price and its bounds, both liquidate at the same trade and price.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from tradebus.data.replay import Replay
from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import OrderFilled, OrderSide, Trade
from tradebus.execution.config import VenueConfig
from tradebus.strategies.base import Strategy, feature_only

from tests.engine.test_kernel_batches import IID, T0, assert_same, run_both, trade_source

#: Trades at the limit price's safe side before the one that fills the resting order.
BEFORE = 20


class Resting(Strategy):
    """A limit order resting at ``limit`` from the first trade; once it fills, a reduce-only order far away
    that never fills, so that the venue is shown every later trade."""

    def __init__(self, side: OrderSide, quantity: float, limit: float) -> None:
        super().__init__(IID, strategy_id="resting")
        self.side, self.quantity, self.limit = side, quantity, limit
        self.first = ""

    def on_trade(self, trade: Trade | None) -> None:
        if not self.first:
            self.first = self.submit_limit(IID, self.side, self.quantity, self.limit)

    def on_order_filled(self, event: OrderFilled) -> None:
        if event.client_order_id != self.first or self.ctx.orders.get(self.first).is_open:
            return
        away = OrderSide.SELL if self.side is OrderSide.BUY else OrderSide.BUY
        far = self.limit * 100.0 if away is OrderSide.SELL else self.limit / 100.0
        self.submit_limit(IID, away, self.quantity, round(far, 2), reduce_only=True)


class LeanResting(Resting):
    """:class:`Resting` whose trade handler reads no trade: the lean loop."""

    @feature_only
    def on_trade(self, trade: Trade | None) -> None:
        super().on_trade(trade)


def _case(rng: random.Random) -> dict[str, Any]:
    """A random leveraged position: side, leverage, maintenance rate, cash, quantity and limit price."""
    leverage = rng.choice([2.0, 3.0, 5.0, 10.0, 20.0, 50.0])
    maintenance = rng.uniform(0.02, 0.9) / leverage
    cash = rng.choice([100.0, 1_234.56, 50_000.0, 3e6])
    limit = round(rng.uniform(0.5, 80_000.0), 2)
    # Borrowing (the position worth more than the cash) up to nearly the leverage allows.
    use = rng.uniform(1.2 / leverage if leverage > 1.2 else 0.9, 0.97)
    quantity = max(math.floor(cash * leverage * use / limit / 1e-4), 1) * 1e-4
    side = rng.choice([OrderSide.BUY, OrderSide.SELL])
    return {"leverage": leverage, "maintenance": maintenance, "cash": cash, "limit": limit,
            "quantity": round(quantity, 4), "side": side}  # fmt: skip


def _build(case: dict[str, Any], lean: bool) -> Kernel:
    inst = Instrument("SIM", "BTCUSDT", tick_size=0.01, lot_size=1e-4, taker_fee=0.0005, maker_fee=0.0002,
                      margin=True, leverage=case["leverage"], maintenance_rate=case["maintenance"])  # fmt: skip
    kernel = Kernel([inst], venue_config=VenueConfig(fill_on="trades"), initial_cash=case["cash"])
    kernel.add_strategy((LeanResting if lean else Resting)(case["side"], case["quantity"], case["limit"]))
    return kernel


def _table(prices: list[float]) -> pa.Table:
    n = len(prices)
    ts = T0 + np.arange(n, dtype=np.int64) * 1_000_000
    return pa.table({"ts_event": ts, "ts_init": ts, "price": np.array(prices, dtype=np.float64),
                     "size": np.full(n, 0.5), "aggressor": np.ones(n, dtype=np.int8),
                     "trade_id": [str(k) for k in range(n)]})  # fmt: skip


def _near(price: float, rng: random.Random) -> list[float]:
    """``price``, the floats next to it and prices within a few 1e-12 to 1e-7 of it on either side."""
    near = [price, math.nextafter(price, math.inf), math.nextafter(price, -math.inf)]
    near += [price * (1.0 + sign * 10.0 ** rng.uniform(-12, -7)) for sign in (1, -1) for _ in range(3)]
    return near


def _prices(case: dict[str, Any], bounds: list[float], rng: random.Random) -> list[float]:
    """Trades on the limit's safe side, the one filling it (some at a price near the liquidation), then prices
    near the liquidation price and its bounds in random order, then past the liquidation price."""
    limit, buy = case["limit"], case["side"] is OrderSide.BUY
    safe = limit * (1.001 if buy else 0.999)
    near = [p for b in bounds for p in _near(b, rng) if p > 0.0]
    rng.shuffle(near)
    if rng.random() < 0.5:
        fill = near.pop()  # a limit far in the money for the trade that fills it: liquidated there, or nearly
    else:
        fill = limit * (0.9999 if buy else 1.0001)
    if (fill >= limit) if buy else (fill <= limit):
        fill = limit * (0.9999 if buy else 1.0001)  # it must fill the order
    past = min(bounds) * 0.9 if buy else max(bounds) * 1.1
    return [safe] * BEFORE + [fill] + near + [past] * 3


def _bounds(case: dict[str, Any], lean: bool, tmp_path: Path) -> list[float]:
    """The liquidation price and its finite bounds once the order has filled at its limit (one message at a time)."""
    kernel = _build(case, lean)
    limit = case["limit"]
    safe = limit * (1.001 if case["side"] is OrderSide.BUY else 0.999)
    for msg in Replay([trade_source(tmp_path, _table([safe] * BEFORE + [limit, limit]))]):
        kernel.process(msg)
    perps = kernel.perpetuals
    assert perps is not None and perps.bounded and perps.watching
    price = kernel.portfolio.account.liquidation_price(IID)  # type: ignore[attr-defined]
    return [p for p in (price, perps.lo, perps.hi) if 0.0 < p < math.inf]


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "full"])
def test_random_positions_are_liquidated_at_the_same_trade_as_process_near_their_bounds(
    tmp_path: Path, lean: bool
) -> None:
    rng = random.Random(20261207)
    at_fill = after_fill = 0
    for k in range(40):
        case = _case(rng)
        bounds = _bounds(case, lean, tmp_path / f"probe{k}")
        if not bounds:
            continue  # a long that is never liquidated
        prices = _prices(case, bounds, rng)
        fast, slow = run_both([trade_source(tmp_path / f"c{k}", _table(prices))], lambda: _build(case, lean),  # noqa: B023
                              batch_rows=len(prices))  # fmt: skip
        assert fast.perpetuals is not None and fast.perpetuals.bounded
        assert_same(fast, slow, min_fills=1)
        assert fast.result.liquidations == slow.result.liquidations, case
        [liquidation] = slow.result.liquidations  # every case ends past its liquidation price
        at_fill += liquidation.ts_event == T0 + BEFORE * 1_000_000
        after_fill += liquidation.ts_event > T0 + (BEFORE + 1) * 1_000_000  # at a trade shown the venue: an order works
    # Both ways of reaching the check at a trade shown the venue were taken, many times.
    assert at_fill >= 5 and after_fill >= 10, (at_fill, after_fill)
