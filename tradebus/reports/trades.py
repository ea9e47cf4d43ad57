"""Round trips of a run (``trades.csv``), matched from its fills first in, first out.

Each fill that opens or adds to a position is a *lot* of its strategy and instrument, of the
quantity it added (:attr:`~tradebus.engine.kernel.FillRecord.position_change`: a live buy of 0.01
BTC whose fee the venue took out of the coins bought is a lot of 0.00999). A fill on the
other side closes the oldest lots first (FIFO, per strategy and instrument, as ``attribution.csv``
keeps the strategies' positions apart): every (lot, closing fill) pair is one :class:`Trade` -- so a
partial close gives a trade for the closed part and leaves the rest of the lot open, and a closing
fill larger than the position closes every lot and opens a lot of the other side with the remainder
(a flip). One strategy's fill never closes another's lot: where several strategies trade an
instrument, a sell of one is its own (its short, or the close of its own long), though the account
nets them. A liquidation fill, or a flatten's (:data:`~tradebus.execution.orders.ACCOUNT_CLOSES`: no
strategy sent them), closes the same fraction of every strategy's position in the instrument -- the
fraction of their net position it closed, as the kernel and ``attribution.csv`` book it -- each part
paying a share of its fee in proportion to its size. Lots still open when the run ends are not trades.

A trade's ``pnl`` is ``quantity * contract_size * (exit_price - entry_price)`` (negated for a short);
``fees`` are the parts of the entry and exit fills' fees pro rata to the matched
quantity; ``net_pnl = pnl - fees``; ``holding_s`` is ``exit_ts - entry_ts`` in seconds
(venue time, as every ``ts_event``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from tradebus.engine.kernel import FillRecord
from tradebus.execution.orders import ACCOUNT_CLOSES

__all__ = ["TRADE_COLUMNS", "Trade", "match_trades"]

#: Columns of ``trades.csv`` (``*_time`` are the ISO-8601 texts of the ``*_ts`` before them; ``strategy_id`` the
#: strategy whose lot it was, as in ``attribution.csv``).
TRADE_COLUMNS = (
    "strategy_id",
    "instrument",
    "side",
    "quantity",
    "entry_ts",
    "entry_time",
    "entry_price",
    "exit_ts",
    "exit_time",
    "exit_price",
    "pnl",
    "fees",
    "net_pnl",
    "holding_s",
    "entry_reason",
    "exit_reason",
)


@dataclass(frozen=True, slots=True)
class Trade:
    """One closed round trip: a lot (or part of one) of strategy ``strategy_id`` and the fill that closed it."""

    strategy_id: str
    instrument_id: str
    side: str  # "LONG" or "SHORT"
    quantity: float
    entry_ns: int
    entry_price: float
    exit_ns: int
    exit_price: float
    pnl: float
    fees: float
    entry_reason: str
    exit_reason: str

    @property
    def net_pnl(self) -> float:
        """``pnl - fees``."""
        return self.pnl - self.fees

    @property
    def holding_s(self) -> float:
        """Seconds from entry to exit."""
        return (self.exit_ns - self.entry_ns) / 1e9


@dataclass(slots=True)
class _Lot:
    quantity: float  # signed: > 0 long, < 0 short
    price: float
    ts: int
    fee_per_unit: float
    reason: str


def match_trades(
    fills: Sequence[FillRecord],
    lot_sizes: dict[str, float] | None = None,
    contract_sizes: dict[str, float] | None = None,
) -> list[Trade]:
    """The closed round trips of ``fills`` (in fill order), FIFO per strategy and instrument (see the module doc).

    Parameters
    ----------
    fills
        The run's fills in the order they happened.
    lot_sizes
        Per instrument, the lot size: a lot with less than a thousandth of it left counts as
        closed (1e-12 when not given).
    contract_sizes
        Per instrument, the base units of one unit of quantity (1 when not given), which PnL is
        multiplied by.
    """
    books: dict[tuple[str, str], deque[_Lot]] = {}
    trades: list[Trade] = []
    sizes = contract_sizes or {}
    for fill in fills:
        iid = fill.instrument_id
        eps = (lot_sizes or {}).get(iid, 1e-9) * 1e-3
        size = sizes.get(iid, 1.0)
        change = fill.position_change
        sign = 1.0 if change > 0.0 else -1.0
        remaining = abs(change)
        fee_per_unit = fill.fee / remaining if remaining > 0.0 else 0.0
        if fill.strategy_id in ACCOUNT_CLOSES:
            remaining, fee_per_unit = _liquidate(fill, books, trades, eps, size)
            if remaining <= eps:
                continue
        lots = books.setdefault((fill.strategy_id, iid), deque())
        remaining = _close(fill.strategy_id, lots, sign, remaining, fee_per_unit, fill, trades, eps, size)
        if remaining > eps:
            lots.append(_Lot(sign * remaining, fill.price, fill.ts_event, fee_per_unit, fill.reason))
    return trades


def _close(strategy_id: str, lots: deque[_Lot], sign: float, remaining: float, fee_per_unit: float,
           fill: FillRecord, trades: list[Trade], eps: float, size: float) -> float:
    """Close the oldest of ``lots`` (strategy ``strategy_id``'s) opposite to ``sign`` with up to ``remaining`` of
    ``fill``; the quantity left."""
    while remaining > eps and lots and (lots[0].quantity > 0.0) != (sign > 0.0):
        lot = lots[0]
        matched = min(remaining, abs(lot.quantity))
        long = lot.quantity > 0.0
        trades.append(
            Trade(
                strategy_id,
                fill.instrument_id,
                "LONG" if long else "SHORT",
                matched,
                lot.ts,
                lot.price,
                fill.ts_event,
                fill.price,
                matched * size * (fill.price - lot.price) * (1.0 if long else -1.0),
                matched * (lot.fee_per_unit + fee_per_unit),
                lot.reason,
                fill.reason,
            )
        )
        remaining -= matched
        lot.quantity -= matched if long else -matched
        if abs(lot.quantity) <= eps:
            lots.popleft()
    return remaining


def _liquidate(fill: FillRecord, books: dict[tuple[str, str], deque[_Lot]], trades: list[Trade], eps: float,
               size: float) -> tuple[float, float]:
    """Close the fraction of each strategy's position in ``fill``'s instrument that the liquidation ``fill`` closed
    of their net position.

    Returns the quantity of ``fill`` left beyond that net position (0 but for a flip, all of it when no strategy
    holds the instrument) and its fee per unit, which every part closed paid too.
    """
    held = [(strategy, lots) for (strategy, iid), lots in books.items() if iid == fill.instrument_id and lots]
    net = sum(lot.quantity for _, lots in held for lot in lots)
    change = fill.position_change
    if abs(net) <= eps:
        return abs(change), fill.fee / abs(change) if change else 0.0
    left = net + change
    closed = 1.0 - max(left / net, 0.0)
    parts = [(strategy, lots, closed * abs(sum(lot.quantity for lot in lots))) for strategy, lots in held]
    rest = abs(left) if left * net < 0.0 else 0.0
    total = sum(part for _, _, part in parts) + rest
    fee_per_unit = fill.fee / total if total > 0.0 else 0.0
    for strategy, lots, part in parts:
        _close(strategy, lots, -1.0 if lots[0].quantity > 0.0 else 1.0, part, fee_per_unit, fill, trades, eps, size)
    return rest, fee_per_unit
