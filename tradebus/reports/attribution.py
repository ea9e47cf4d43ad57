"""Per-strategy attribution: PnL, fees and positions of each strategy of a run.

The portfolio nets every strategy's fills per instrument; attribution keeps them apart.
For every ``(strategy, instrument)`` it replays the strategy's own fills in order with
average-cost accounting:

* a fill counts for what it moved the position by
  (:attr:`~tradebus.engine.kernel.FillRecord.position_change`, also in ``bought`` and ``sold``:
  a live buy of 0.01 BTC whose fee the venue took out of the coins bought counts 0.00999);
* buying into a flat or long position (selling into a flat or short one) moves the
  average entry price: ``avg = (avg * |pos| + px * q) / (|pos| + q)``;
* the part of a fill that reduces the position realises ``q * (px - avg) * sign(pos)``;
  what is left of it opens a position the other way at ``px``; a position left within a
  thousandth of a lot of flat is flat, as in the portfolio (float noise of the quantities);
* ``unrealized_pnl = position * (last_price - avg)`` at the price the portfolio values the
  position at when the run ends (``RunResult.last_prices``: a perpetual's mark price once it
  has one, else its latest trade, close or mid, else the fill price of a position never marked:
  a daemon restarted on its journal that has seen no market data yet);
* PnL of a contract instrument is multiplied by its contract size (``RunResult.contract_sizes``);
* ``funding``: each funding payment of a perpetual (``RunResult.funding``) is shared by the
  strategies holding the instrument in proportion to their signed positions then (one strategy
  alone pays all of it);
* ``interest``: each charge of borrowing interest (``RunResult.interest``) is shared by the rows
  of the margin spot instruments that trade the borrowed asset (``RunResult.borrow_assets``), in
  proportion to what they borrow at the charge: a base asset's loan to the short positions in
  instruments with that base (weight: quantity short), a quote asset's loan to the long positions
  in instruments quoted in it (weight: their cost, ``position * avg_price``). A loan no open
  position explains (a quote balance below zero from losses and fees alone) is shared equally by
  the rows of those instruments that have filled so far;
* a liquidation fill, or a flatten's (an operator's ``/flatten``, ``live-kill --flatten``: no strategy sent them,
  :data:`~tradebus.execution.orders.ACCOUNT_CLOSES`), closes the same fraction of the position of every
  strategy holding the instrument at its price: the fraction of their net position it closed (all
  of it for a whole liquidation; a venue's partial liquidation of a third leaves each strategy two
  thirds of its own position), each paying a share of its fee in proportion to the size of the part
  it closed;
* ``net_pnl = realized_pnl + unrealized_pnl - fees - funding - interest``.

A fill, a funding payment or an hourly charge at the same time are taken in the kernel's order:
an hourly charge before the fills at its time, the charge of a fill's borrowing after it, and a
funding payment after the fills the kernel booked before it (``RunResult.funding_fills``). Without
those counts (payments read back from a ``funding.csv`` older than its ``fills_before``), a payment goes before the fills at its time,
or after those of a bar stamped at its time when the net position it was paid on tells so (it cannot
when the bar's fills leave the net position where it was: one strategy's position handed to another).

Net PnL is linear in the fills and the payments are shared out in full, so the strategies' net
PnL sums to the run's PnL (final equity minus starting equity), however the netting of their
positions happens to realise it. A run that starts with holdings of a base asset
(``balances: {BTC: 1}``) also gains or loses their value as prices move: that part of the
equity's change belongs to no strategy and is in no row.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from tradebus.engine.kernel import FillRecord
from tradebus.engine.messages import FundingPaid, InterestCharged
from tradebus.execution.orders import ACCOUNT_CLOSES

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
    "funding",
    "interest",
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
    #: Funding paid (negative: received) on the position.
    funding: float = 0.0
    #: Borrowing interest charged for the position (see the module docstring).
    interest: float = 0.0
    #: Quote currency per unit of quantity per unit of price (a contract's size; 1 for spot).
    multiplier: float = 1.0
    #: A position this close to flat after a reducing fill is flat (float noise): a thousandth of
    #: the lot size, as the portfolio snaps it (and never less than 1e-12 of the position reduced).
    flat_eps: float = 0.0

    @property
    def net_pnl(self) -> float:
        """Realised plus unrealised PnL, less fees, funding and interest."""
        return self.realized_pnl + self.unrealized_pnl - self.fees - self.funding - self.interest

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
        position = pos + side * quantity
        if abs(position) <= max(self.flat_eps, 1e-12 * max(1.0, abs(pos))):
            self.position = 0.0
            self.avg_price = math.nan
        else:
            if (position > 0.0) != (pos > 0.0):
                self.avg_price = price  # flipped: the rest opened at this fill
            self.position = position

    def mark(self, price: float) -> None:
        """Value the open position at ``price``."""
        self.last_price = price
        self.unrealized_pnl = self.position * (price - self.avg_price) * self.multiplier if self.position else 0.0


def attribute(
    fills: Iterable[FillRecord],
    last_prices: Mapping[str, float],
    contract_sizes: Mapping[str, float] | None = None,
    *,
    funding: Iterable[FundingPaid] = (),
    funding_fills: Sequence[int] = (),
    interest: Iterable[InterestCharged] | None = None,
    borrow_assets: Mapping[str, tuple[str, str]] | None = None,
    lot_sizes: Mapping[str, float] | None = None,
) -> list[Attribution]:
    """Attribution rows, per strategy (in order of first fill): one per instrument, then its ``ALL`` total.

    Parameters
    ----------
    fills
        The run's fills, in order.
    last_prices
        ``instrument_id -> price`` the open positions are valued at.
    contract_sizes
        ``instrument_id -> contract size`` (1 when absent).
    funding, interest
        The run's funding payments and charges of borrowing interest, in order.
    funding_fills
        For each payment of ``funding``, how many of ``fills`` were booked before it
        (``RunResult.funding_fills``); empty: unknown (see the module docstring).
    borrow_assets
        ``instrument_id -> (base, quote)`` of the margin spot instruments (those that borrow).
    lot_sizes
        ``instrument_id -> lot size``: a position within a thousandth of it of flat is flat.

    Raises
    ------
    ValueError
        If ``funding_fills`` is given but not one count per payment of ``funding``.
    """
    sizes = contract_sizes or {}
    lots = lot_sizes or {}
    funding = list(funding)
    if funding_fills and len(funding_fills) != len(funding):
        raise ValueError(f"attribution: {len(funding_fills)} fill counts for {len(funding)} funding payments")
    assets = borrow_assets or {}
    rows: dict[tuple[str, str], Attribution] = {}
    # (ts, order at equal ts, sequence, kind, item): see the module docstring.
    events: list[tuple[int, int, int, str, object]] = []
    for n, fill in enumerate(fills):
        events.append((fill.ts_event, 1, n, "fill", fill))
    for n, paid in enumerate(funding):
        events.append((paid.ts_event, 0, n, "funding", paid))
    for n, charge in enumerate(interest or ()):
        events.append((charge.ts_event, 2 if charge.kind == "borrow" else 0, n, "interest", charge))
    events.sort(key=lambda e: e[:3])
    ordered = _funding_after_fills(events, funding_fills) if funding_fills else _funding_in_kernel_order(events, lots)
    for _, _, _, kind, item in ordered:
        if kind == "fill":
            assert isinstance(item, FillRecord)
            if item.strategy_id in ACCOUNT_CLOSES and _liquidate(item, rows):
                continue
            key = (item.strategy_id, item.instrument_id)
            row = rows.get(key)
            if row is None:
                row = rows[key] = Attribution(
                    item.strategy_id, item.instrument_id, multiplier=sizes.get(item.instrument_id, 1.0),
                    flat_eps=lots.get(item.instrument_id, 0.0) * 1e-3,
                )
            change = item.position_change
            row.add_fill(1 if change > 0.0 else -1, abs(change), item.price, item.fee)
        elif kind == "funding":
            assert isinstance(item, FundingPaid)
            holders = [r for (_, iid), r in rows.items() if iid == item.instrument_id]
            for row, share in _shares(holders, [r.position for r in holders]):
                row.funding += item.payment * share
        else:
            assert isinstance(item, InterestCharged)
            _charge_interest(item, rows, assets)
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
            total.funding += row.funding
            total.interest += row.interest
        out.append(total)
    return out


def _funding_after_fills(
    events: list[tuple[int, int, int, str, object]], counts: Sequence[int]
) -> list[tuple[int, int, int, str, object]]:
    """``events`` (sorted) with funding payment ``n`` moved before fill ``counts[n]`` (to the end when none is left)."""
    placed = [e for e in events if e[3] != "funding"]
    fill_at = {e[2]: k for k, e in enumerate(placed) if e[3] == "fill"}
    before: dict[int, list[tuple[int, int, int, str, object]]] = {}
    for event in events:
        if event[3] == "funding":
            before.setdefault(fill_at.get(counts[event[2]], len(placed)), []).append(event)
    out: list[tuple[int, int, int, str, object]] = []
    for k, event in enumerate(placed):
        out += before.get(k, ())
        out.append(event)
    out += before.get(len(placed), ())
    return out


def _funding_in_kernel_order(
    events: list[tuple[int, int, int, str, object]], lots: Mapping[str, float]
) -> list[tuple[int, int, int, str, object]]:
    """``events`` (sorted) with each funding payment moved after the fills of its time that it was paid after.

    The kernel settles a funding due at a message's time before the fills of a trade or quote then,
    but after those of a bar stamped then (they happen within the bar): the two orders share one
    time. The payment's ``quantity``, the net position it was paid on, tells which: it goes after
    the most of its instrument's fills of its time that leave the net position at that quantity
    (none when the position before them is that quantity, or when no count of them gives it): a
    bar's fills may pass through that quantity on their way to it (a strategy in and out within
    the bar), and the kernel settles after them all.
    """
    out: list[tuple[int, int, int, str, object]] = []
    net: dict[str, float] = {}
    start = 0
    while start < len(events):
        end = start
        while end < len(events) and events[end][0] == events[start][0]:
            end += 1
        group = events[start:end]
        placed = [e for e in group if e[3] != "funding"]
        for event in group:
            paid = event[4]
            if not isinstance(paid, FundingPaid):
                continue
            iid = paid.instrument_id
            eps = max(lots.get(iid, 0.0) * 1e-3, 1e-9 * max(1.0, abs(paid.quantity)))
            slot = next((k for k, e in enumerate(placed) if e[:3] > event[:3]), len(placed))
            position = net.get(iid, 0.0)
            if abs(position - paid.quantity) > eps:
                for k, e in enumerate(placed):
                    if isinstance(e[4], FillRecord) and e[4].instrument_id == iid:
                        position += e[4].position_change
                        if abs(position - paid.quantity) <= eps:
                            slot = k + 1
            placed.insert(slot, event)
        for e in placed:
            if isinstance(e[4], FillRecord):
                net[e[4].instrument_id] = net.get(e[4].instrument_id, 0.0) + e[4].position_change
        out.extend(placed)
        start = end
    return out


def _liquidate(fill: FillRecord, rows: Mapping[tuple[str, str], Attribution]) -> bool:
    """Close each strategy's part of the liquidated position at the fill; ``False`` if none holds one.

    The fill closes the fraction ``quantity / |net position|`` of the holders' net position (all of
    it within ``1e-9``, or when it is more or the holders are net flat), so each holder closes that
    fraction of its own position; the fee is shared by the size of those parts.
    """
    holders = [r for (_, iid), r in rows.items() if iid == fill.instrument_id and r.position != 0.0]
    net = abs(math.fsum(r.position for r in holders))
    part = fill.quantity / net if net > 0.0 else 1.0
    parts = [abs(r.position) * part if part < 1.0 - 1e-9 else abs(r.position) for r in holders]
    for (row, share), closed in zip(_shares(holders, parts), parts, strict=True):
        row.add_fill(-1 if row.position > 0.0 else 1, closed, fill.price, fill.fee * share)
    return bool(holders)


def _charge_interest(
    charge: InterestCharged, rows: Mapping[tuple[str, str], Attribution], assets: Mapping[str, tuple[str, str]]
) -> None:
    as_base = [r for (_, iid), r in rows.items() if assets.get(iid, ("", ""))[0] == charge.asset]
    as_quote = [r for (_, iid), r in rows.items() if assets.get(iid, ("", ""))[1] == charge.asset]
    weights = [max(-r.position, 0.0) * r.multiplier for r in as_base]
    weights += [r.position * r.avg_price * r.multiplier if r.position > 0.0 else 0.0 for r in as_quote]
    candidates = as_base + as_quote
    if not any(w > 0.0 for w in weights):
        weights = [1.0] * len(candidates)
    for row, share in _shares(candidates, weights):
        row.interest += charge.interest * share


def _shares(rows: list[Attribution], weights: list[float]) -> list[tuple[Attribution, float]]:
    """``(row, weight / total)``; equal shares when the weights sum to zero (none when there is no row)."""
    total = math.fsum(weights)
    if not rows:
        return []
    if total == 0.0:
        return [(r, 1.0 / len(rows)) for r in rows]
    return [(r, w / total) for r, w in zip(rows, weights, strict=True)]
