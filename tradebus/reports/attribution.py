"""Per-strategy attribution: PnL, fees and positions of each strategy of a run.

The portfolio nets every strategy's fills per instrument; attribution keeps them apart.
For every ``(strategy, instrument)`` it replays the strategy's own fills in order with
average-cost accounting:

* buying into a flat or long position (selling into a flat or short one) moves the
  average entry price: ``avg = (avg * |pos| + px * q) / (|pos| + q)``;
* the part of a fill that reduces the position realises ``q * (px - avg) * sign(pos)``;
  what is left of it opens a position the other way at ``px``;
* ``unrealized_pnl = position * (last_price - avg)`` at the price the portfolio values the
  position at when the run ends (``RunResult.last_prices``: a perpetual's mark price once it
  has one, else its latest trade, close or mid);
* PnL of a contract instrument is multiplied by its contract size (``RunResult.contract_sizes``);
* ``net_pnl = realized_pnl + unrealized_pnl - fees``.

Net PnL is linear in the fills, so the strategies' net PnL sums to the run's trading PnL
(final equity minus starting equity, plus the funding paid), however the netting of their
positions happens to realise it. A run that starts with holdings of a base asset
(``balances: {BTC: 1}``) also gains or loses their value as prices move: that part of the
equity's change belongs to no strategy and is in no row.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tradebus.engine.kernel import FillRecord

__all__ = ["ATTRIBUTION_COLUMNS", "ALL_INSTRUMENTS", "Attribution", "attribute"]

ATTRIBUTION_COLUMNS = (
    "strategy_id",
    "instrument",
    "fills",
    "bought",
    "sold",
    "position",
    "avg_price",
    "last_price",
    "realized_pnl",
    "unrealized_pnl",
    "fees",
    "net_pnl",
)
#: The ``instrument`` of a strategy's total row.
ALL_INSTRUMENTS = "ALL"


@dataclass(slots=True)
class Attribution:
    """One strategy's fills on one instrument (or its total over instruments)."""

    strategy_id: str
    instrument: str
    fills: int = 0
    bought: float = 0.0
    sold: float = 0.0
    position: float = 0.0
    avg_price: float = math.nan
    last_price: float = math.nan
    realized_pnl: float = 0.0
    unrealized_pnl: float = 0.0
    fees: float = 0.0
    #: Quote currency per unit of quantity per unit of price (a contract's size; 1 for spot).
    multiplier: float = 1.0

    @property
    def net_pnl(self) -> float:
        """Realised plus unrealised PnL, less fees."""
        return self.realized_pnl + self.unrealized_pnl - self.fees

    def add_fill(self, side: int, quantity: float, price: float, fee: float) -> None:
        """Account one fill (``side`` +1 buy, -1 sell) with average-cost accounting."""
        self.fills += 1
        self.fees += fee
        if side > 0:
            self.bought += quantity
        else:
            self.sold += quantity
        pos = self.position
        if pos == 0.0 or (pos > 0) == (side > 0):
            held = abs(pos)
            avg = 0.0 if pos == 0.0 else self.avg_price
            self.avg_price = (avg * held + price * quantity) / (held + quantity)
            self.position = pos + side * quantity
            return
        closed = min(quantity, abs(pos))
        self.realized_pnl += closed * (price - self.avg_price) * (1.0 if pos > 0 else -1.0) * self.multiplier
        rest = quantity - closed
        self.position = pos + side * closed
        if rest > 0.0:
            self.position = side * rest
            self.avg_price = price
        elif abs(self.position) <= 1e-12 * max(1.0, abs(pos)):
            self.position = 0.0
            self.avg_price = math.nan

    def mark(self, price: float) -> None:
        """Value the open position at ``price``."""
        self.last_price = price
        self.unrealized_pnl = self.position * (price - self.avg_price) * self.multiplier if self.position else 0.0


def attribute(
    fills: Iterable[FillRecord], last_prices: Mapping[str, float], contract_sizes: Mapping[str, float] | None = None
) -> list[Attribution]:
    """Attribution rows, per strategy (in order of first fill): one per instrument, then its ``ALL`` total."""
    sizes = contract_sizes or {}
    rows: dict[tuple[str, str], Attribution] = {}
    for fill in fills:
        key = (fill.strategy_id, fill.instrument_id)
        row = rows.get(key)
        if row is None:
            row = rows[key] = Attribution(
                fill.strategy_id, fill.instrument_id, multiplier=sizes.get(fill.instrument_id, 1.0)
            )
        row.add_fill(1 if fill.side == "BUY" else -1, fill.quantity, fill.price, fill.fee)
    out: list[Attribution] = []
    for strategy in dict.fromkeys(sid for sid, _ in rows):
        # quantities of different instruments do not add up: the total row leaves them empty
        total = Attribution(strategy, ALL_INSTRUMENTS, bought=math.nan, sold=math.nan, position=math.nan)
        for (sid, iid), row in rows.items():
            if sid != strategy:
                continue
            row.mark(last_prices.get(iid, math.nan))
            out.append(row)
            total.fills += row.fills
            total.realized_pnl += row.realized_pnl
            total.unrealized_pnl += row.unrealized_pnl
            total.fees += row.fees
        out.append(total)
    return out
