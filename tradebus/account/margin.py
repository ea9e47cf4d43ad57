"""Margin account for perpetuals (linear and inverse) and margin spot instruments next to cash spot balances.

Wallet
    Balances per asset as in :class:`~tradebus.account.spot.SpotCashAccount` (spot fills
    are booked and checked exactly as there). A perpetual settles in its quote asset (the
    *settle asset*): a fill moves the wallet by its realised PnL minus its fee (a fee charged
    in another asset, ``OrderFilled.fee_asset``, is debited from that asset), funding by
    the payment; the notional never moves the wallet.

Inverse contracts (``Instrument.inverse``)
    Settle in the *base* asset (BTC for BTCUSD): a contract is worth ``contract_size`` units of
    the quote (USD). Every amount below is then in the base asset, with ``N = |quantity| *
    contract_size / mark``. The account keeps each inverse position's *entry value*
    ``sum(q_i * contract_size / p_i)`` of its opening fills (the harmonic average entry, as the
    venues compute it), so a close of ``c`` of ``|q|`` realises ``s * (V c / |q| - c *
    contract_size / exit)`` (``s`` +1 long, -1 short) and the unrealised PnL is ``s * (V -
    |q| * contract_size / mark)``. A fill's ``fee`` is taken as given, in the base asset.

Margin spot instruments (``Instrument.margin``)
    Booked in the wallet as cash spot (a buy pays its notional, a sell receives it; a base
    balance below zero is a short, a quote balance below zero a loan), but margined like a
    linear perpetual settling in the quote asset and always cross: the position's *value*
    ``quantity * contract_size * mark`` counts in the cross balance (so the wallet plus the
    value is the cash put in plus the position's PnL, as a perpetual's wallet plus unrealised
    PnL), its initial margin is ``N / leverage`` and its orders are checked as below. So at
    ``leverage: 1`` a long may spend the available balance and a short may sell as much again;
    ``leverage: 3`` borrows up to three times it. Their maintenance margin is
    ``Instrument.maintenance_margin(N, quantity)`` and they are liquidated with the cross positions of
    their quote asset (below). Initial holdings of a base asset are not collateral.

Borrowing (margin spot)
    The assets of margin spot instruments are *borrowable* (:attr:`MarginAccount.borrowable`):
    a wallet balance of one below zero is a loan of that asset (:meth:`MarginAccount.borrowed`),
    whatever made it negative; a cash-only instrument never borrows. A run with borrowing
    interest (:mod:`tradebus.engine.interest`) asks after each fill how much more the fill
    borrowed (:meth:`MarginAccount.new_borrowing`) and debits each charge from a quote asset
    (:meth:`MarginAccount.charge_interest`): the wallet, and so the cross balance that backs the
    positions, falls by it.

Marks
    Unrealised PnL and margin are valued at each position's ``last_price``, which the
    portfolio sets from ``MarkPrice`` messages once an instrument has one, else from the last
    trade, bar close or quote mid (the documented fallback).

Margin (amounts in the settle asset; ``N = |quantity| * contract_size * mark``)
    - initial margin of a position ``N / leverage``; of a working order the part of it that
      would add to the position, ``opening * contract_size * price / leverage`` (reduce-only
      orders and the part of an order that reduces the position need none);
    - maintenance margin ``Instrument.maintenance_margin(N, quantity)`` (tiered by notional:
      ``rate * N - amount``; by size in contracts, OKX: the rate of the tier of ``|quantity|``
      on the whole ``N``; :class:`~tradebus.engine.instrument.MarginTier`),
      plus, for a perpetual, its venue's fee to close (:meth:`MarginAccount.position_maintenance`,
      ``Instrument.maintenance_close_fee``);
    - isolated positions hold their own margin: ``entry notional / leverage`` set aside when
      the position opens or grows, released pro rata as it shrinks; the funding the position
      pays comes out of it (received: is added to it), as Binance, Bybit and OKX book an
      isolated position's funding to its isolated margin;
    - **available** (cross) ``= wallet - isolated margins + unrealised of cross positions
      (value of margin spot positions) - initial margin of cross positions - initial margin
      of working orders``.

Checks
    :meth:`MarginAccount.check_order` (risk gate) and :meth:`MarginAccount.check_fill` (venue
    at match time) deny an order whose initial margin plus taker fee exceeds the available
    balance less what working cash-only orders hold of it (so an order accepted before keeps what
    it needs to fill; an order that reverses the position counts the margin the close releases: a
    cross position's initial margin, an isolated one's margin plus its unrealised PnL; only
    the part beyond the position needs margin), or whose resulting position's notional falls
    in a tier whose ``max_leverage`` is below the instrument's leverage (for an order, the position it
    reaches with the working orders on its side that may add to it, valued at its price: Binance and Bybit
    choose the tier by the position and the open orders, "position value and active order value" in
    Bybit's words; a fill, by the position alone); the reason starts
    with ``"margin: "`` (both up to the float noise of the wallet balance, as the cash account's
    :func:`~tradebus.account.spot.exceeds`). A cash-only order (or fill) is checked as in the cash account and,
    when it spends a settle asset, may use no more than the available balance less what other
    cash-only orders hold (it may not spend the margin of the positions).

Liquidation
    Cross positions of a settle asset are liquidated together when the *cross margin balance*
    (``wallet - isolated margins + unrealised of cross positions + value of margin spot
    positions``, :meth:`MarginAccount.cross_balance`) falls below their maintenance margin; an
    isolated position when ``its margin + its unrealised`` does. The
    kernel closes them at the mark that breached (see :meth:`MarginAccount.liquidation_price`
    for the price at which that happens, holding everything else fixed), on the terms of
    :meth:`MarginAccount.liquidation_closes`.

Insurance fund (the venues' rule: Binance, Bybit, OKX)
    A liquidated position never costs more than the margin backing it: an isolated position's
    margin, or the cross margin balance of its settle asset. The liquidation fee is taken from
    what is left of that margin at the mark (no more). A mark gapped beyond the *bankruptcy
    price*, where that margin is used up, would leave a loss the margin cannot pay: the
    insurance fund takes it, and the position is closed at the bankruptcy price with no fee,
    as the venues book it. The amount the fund absorbed, ``|q| * c * |mark - close price|``,
    is the event's ``insurance_fund_cover``. So an isolated position's wallet loses exactly
    its margin, and a cross wallet falls to zero, never below.

    Bybit (``CloseFee.BANKRUPTCY``) settles every liquidation at the bankruptcy price: the margin
    is lost even when the mark has not reached it (the rest goes to the insurance fund, not
    reported), and the fee to close at that price is charged, an isolated position's in full
    (Bybit holds it in the position margin), so its wallet loses its margin plus that fee.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from tradebus.account.base import KeptTotals, WorkingLeaves, WorkingOrders, working_quantity
from tradebus.account.exact import exact, exact_sum
from tradebus.account.spot import SpotCashAccount, asset_names, exceeds
from tradebus.engine.instrument import CloseFee, Instrument, MarginMode
from tradebus.engine.messages import OrderFilled, OrderType, SubmitOrder

__all__ = ["MarginAccount", "PositionLike", "borrow_assets", "margin_reason"]

_NAN = math.nan
_LIMIT = OrderType.LIMIT
_STOP_LIMIT = OrderType.STOP_LIMIT
_STOP_MARKET = OrderType.STOP_MARKET
_CROSS = MarginMode.CROSS


class PositionLike(Protocol):
    """What the account reads of the portfolio's positions."""

    quantity: float
    avg_price: float
    last_price: float


class MarginAccount(KeptTotals):
    """Wallet, margin and liquidation of perpetuals; margin spot margined, cash spot as a cash account (module docstring).

    Parameters
    ----------
    instruments
        ``instrument_id -> Instrument`` of the run.
    balances
        Initial ``asset -> amount`` (as for :class:`SpotCashAccount`).
    positions
        The portfolio's live positions by instrument id (read, never written).
    fee_assets
        Assets no instrument trades that the venue charges fees in (as for :class:`SpotCashAccount`).
    """

    def __init__(
        self,
        instruments: Mapping[str, Instrument],
        balances: Mapping[str, float],
        positions: Mapping[str, PositionLike],
        fee_assets: Iterable[str] = (),
    ) -> None:
        self.instruments = instruments
        self._spot = SpotCashAccount(instruments, balances, fee_assets=fee_assets)
        self._positions = positions
        self._perps = {iid: inst for iid, inst in instruments.items() if inst.is_perpetual}
        # Perpetuals and margin spot instruments: the positions margin is held for.
        self._margined = {iid: inst for iid, inst in instruments.items() if not inst.cash_only}
        self._settle = {iid: asset_names(inst)[0 if inst.inverse else 1] for iid, inst in self._margined.items()}
        self._settle_assets = frozenset(self._settle.values())
        self._cash_only = any(inst.cash_only for inst in instruments.values())
        # Each settle asset's margined instruments in instrument order, bound once for the checks of every order.
        self._by_asset: dict[str, tuple[tuple[str, Instrument], ...]] = {
            asset: tuple((iid, inst) for iid, inst in self._margined.items() if self._settle[iid] == asset)
            for asset in self._settle_assets
        }
        # Instruments alone among the margined ones of their settle asset: their checks loop over no others.
        self._alone = frozenset(iid for iid, asset in self._settle.items() if len(self._by_asset[asset]) == 1)
        # Margin spot instruments (cross, no close fee) alone on their settle asset, without margin tiers:
        # iid -> (settle asset, contract size, maintenance rate), for liquidation_price.
        self._lone_spot = {
            iid: (self._settle[iid], inst.contract_size, inst.maintenance_rate)
            for iid, inst in self._margined.items()
            if iid in self._alone and iid not in self._perps and not inst.margin_tiers
        }
        # What _margin_check reads of each margined instrument, twice an order (the instruments are frozen); the fee
        # rate an order's check reserves is the greater of the taker and maker fees, not below 0.
        self._check_terms = {
            iid: (
                inst.contract_size, inst.inverse, inst.leverage, inst.margin_mode == _CROSS, self._settle[iid],
                max(inst.taker_fee, inst.maker_fee, 0.0), iid in self._perps,
            )
            for iid, inst in self._margined.items()
        }  # fmt: skip
        self._isolated: dict[str, float] = dict.fromkeys(self._perps, 0.0)
        # Entry value (base asset) of each inverse position: sum of q_i * contract_size / p_i.
        self._entry_value: dict[str, float] = {iid: 0.0 for iid, inst in self._perps.items() if inst.inverse}
        #: Assets a wallet may owe: the base and quote assets of the margin spot instruments.
        self.borrowable: frozenset[str] = frozenset(
            asset for inst in self._margined.values() if not inst.is_perpetual for asset in asset_names(inst)
        )
        self._working: Callable[[], Iterable[Any]] = tuple
        self._price: Callable[[str], float] = _nan_price
        self._count: Callable[[], int] = _zero
        # Tracked working orders of margined instruments (track; kept while TRACK_FROM work): (instrument_id, buy) -> exact sum of the initial
        # margin of its orders of a fixed price (limit, stop-limit, stop-market) were each to open in full, and
        # {client order id: order} of them; settle asset -> {client order id: order} of the others (valued at the
        # last price at each check); client order id -> ((instrument_id, buy), settle asset, exact margin or None
        # for the others, order, leaves). Reduce-only orders hold none and are not kept. (instrument_id, buy) ->
        # heap of (-leaves, client order id) of its orders of a fixed price, stale entries dropped when on top: on
        # the side against a position, only an order larger than the position holds margin.
        self._leaves: WorkingLeaves | None = None
        self._live = False
        self._full: dict[tuple[str, bool], int] = {}
        self._sides: dict[tuple[str, bool], dict[str, Any]] = {}
        self._largest: dict[tuple[str, bool], list[tuple[float, str]]] = {}
        self._floating: dict[str, dict[str, Any]] = {}
        self._records: dict[str, tuple[tuple[str, bool], str, int | None, Any, float]] = {}

    def bind(
        self, working: Callable[[], Iterable[Any]], price: Callable[[str], float], count: Callable[[], int]
    ) -> None:
        """Use ``working()`` as the open orders (``count()`` of them) and ``price(instrument_id)`` as last prices."""
        self._spot.bind(working, price, count)
        self._working, self._price, self._count = working, price, count

    def track(self, orders: WorkingOrders) -> None:
        """Keep what the working orders of ``orders`` (those :meth:`bind` gave) hold and their margin as they change."""
        self._spot.track(orders)
        self._leaves = orders.leaves
        orders.watch(self.order_changed)

    def _forget(self) -> None:
        for kept in (self._full, self._sides, self._floating, self._records, self._largest):
            kept.clear()

    def _count_order(self, order: Any) -> None:
        coid = order.client_order_id
        old = self._records.pop(coid, None)
        if old is not None:
            if old[2] is None:
                del self._floating[old[1]][coid]
            else:
                self._full[old[0]] -= old[2]
                del self._sides[old[0]][coid]
        iid = order.instrument_id
        inst = self._margined.get(iid)
        if inst is None or not order.is_open or order.reduce_only:
            return
        leaves = order.leaves_qty
        if leaves <= 0.0:
            return
        key = (iid, order.side > 0)
        asset = self._settle[iid]
        typ = order.order_type
        if typ == _LIMIT or typ == _STOP_LIMIT or (typ == _STOP_MARKET and order.trigger_price == order.trigger_price):
            px = order.price if typ != _STOP_MARKET else order.trigger_price
            # _orders_margin's term of an order that opens in full: the same operations in the same order
            margin = leaves * _unit(inst, px) / inst.leverage
            if margin - margin == 0.0:
                n = exact(margin)
                self._full[key] = self._full.get(key, 0) + n
                side = self._sides.setdefault(key, {})
                side[coid] = order
                self._records[coid] = (key, asset, n, order, leaves)
                heap = self._largest.setdefault(key, [])
                if len(heap) > 2 * len(side) + 32:  # mostly stale: rebuilt from the orders
                    heap[:] = [(-self._records[c][4], c) for c in side]
                    heapq.heapify(heap)
                else:
                    heapq.heappush(heap, (-leaves, coid))
                return
        self._floating.setdefault(asset, {})[coid] = order
        self._records[coid] = (key, asset, None, order, leaves)

    def link_oco(self, client_order_ids: Iterable[str], room: Mapping[str, float] | None = None) -> None:
        """Count orders ``client_order_ids`` as one OCO group in what cash-only orders hold, each member with
        ``room`` left to fill if given (:meth:`SpotCashAccount.link_oco <tradebus.account.spot.SpotCashAccount.link_oco>`)."""
        self._spot.link_oco(client_order_ids, room)

    def unlink_oco(self, client_order_id: str) -> None:
        """Count order ``client_order_id`` on its own again."""
        self._spot.unlink_oco(client_order_id)

    def oco_room(self, client_order_id: str) -> float:
        """How much more a cash-only OCO member may fill
        (:meth:`SpotCashAccount.oco_room <tradebus.account.spot.SpotCashAccount.oco_room>`)."""
        return self._spot.oco_room(client_order_id)

    def oco_groups(self) -> Mapping[str, tuple[str, ...]]:
        """``client order id -> the ids of its OCO group`` (itself included), for every linked order (read-only)."""
        return self._spot.oco_groups()

    @property
    def margined(self) -> Mapping[str, Instrument]:
        """``instrument_id -> Instrument`` of the perpetuals and margin spot instruments (those margin is held for)."""
        return self._margined

    # ------------------------------------------------------------------ updates

    def apply_fill(self, fill: OrderFilled) -> None:
        """Book a fill; for a perpetual, before the portfolio moves the position (it reads it)."""
        inst = self._perps.get(fill.instrument_id)
        if inst is None:
            self._spot.apply_fill(fill)
            return
        pos = self._positions[fill.instrument_id]
        old = pos.quantity
        signed = fill.last_qty if fill.side > 0 else -fill.last_qty
        cs = inst.contract_size
        iid = fill.instrument_id
        realised = 0.0
        if old != 0.0 and (old > 0.0) != (signed > 0.0):
            closed = min(abs(signed), abs(old))
            side = 1.0 if old > 0.0 else -1.0
            if inst.inverse:
                share = self._entry_value[iid] * closed / abs(old)
                realised = side * (share - closed * cs / fill.last_px)
                self._entry_value[iid] -= share
            else:
                realised = closed * cs * (fill.last_px - pos.avg_price) * side
            if inst.margin_mode == MarginMode.ISOLATED:
                self._isolated[iid] *= 1.0 - closed / abs(old)
            opened = abs(signed) - closed
        else:
            opened = abs(signed)
        if opened > 0.0:
            value = opened * _unit(inst, fill.last_px)
            if inst.inverse:
                self._entry_value[iid] += value
            if inst.margin_mode == MarginMode.ISOLATED:
                self._isolated[iid] += value / inst.leverage
        settle = self._settle[iid]
        if fill.fee_asset and fill.fee_asset != settle:
            self._spot.credit(settle, realised)
            self._spot.credit(fill.fee_asset, -fill.fee)
        else:
            self._spot.credit(settle, realised - fill.fee)

    def apply_funding(self, instrument_id: str, payment: float) -> None:
        """Debit a funding ``payment`` (negative: received) from the instrument's settle asset.

        An open isolated position pays it out of its own margin (the venues' isolated wallet),
        not out of the cross balance.
        """
        asset = self._settle.get(instrument_id)
        if asset is not None:
            self._spot.credit(asset, -payment)
            if instrument_id in self._isolated and self._positions[instrument_id].quantity != 0.0:
                if self._margined[instrument_id].margin_mode == MarginMode.ISOLATED:
                    self._isolated[instrument_id] -= payment

    def charge_interest(self, asset: str, amount: float) -> None:
        """Debit borrowing interest ``amount`` from ``asset`` (a quote asset)."""
        self._spot.credit(asset, -amount)

    # ------------------------------------------------------------------ borrowing

    def borrowed(self, asset: str) -> float:
        """How much of ``asset`` the wallet owes: ``-balance`` when negative and borrowable, else 0."""
        balance = self._spot.balance(asset)
        return -balance if balance < 0.0 and asset in self.borrowable else 0.0

    def new_borrowing(self, fill: OrderFilled) -> list[tuple[str, float]]:
        """``(asset, amount)`` of each asset a margin spot fill (already booked) borrowed beyond what was owed before it.

        A buy pays ``last_qty * last_px + fee`` of the quote asset and a sell takes ``last_qty``
        of the base asset (as booked); only what takes a balance further below zero counts.
        Empty for any other fill.
        """
        inst = self._margined.get(fill.instrument_id)
        if inst is None or inst.is_perpetual:
            return []
        base, quote = asset_names(inst)
        if fill.side > 0:
            fee = fill.fee if fill.fee_asset in ("", quote) else 0.0
            asset, moved = quote, fill.last_qty * fill.last_px + fee
        else:
            asset, moved = base, fill.last_qty
        after = self._spot.balance(asset)
        more = min(moved, -after) if after < 0.0 else 0.0
        return [(asset, more)] if more > 0.0 else []

    # ------------------------------------------------------------------ margin figures

    def unrealized(self, instrument_id: str) -> float:
        """Unrealised PnL of a perpetual position at its mark (0 when flat or unpriced)."""
        pos = self._positions[instrument_id]
        q, mark = pos.quantity, pos.last_price
        if q == 0.0 or mark != mark:
            return 0.0
        inst = self._perps[instrument_id]
        if inst.inverse:
            side = 1.0 if q > 0.0 else -1.0
            return side * (self._entry_value[instrument_id] - abs(q) * inst.contract_size / mark)
        return q * inst.contract_size * (mark - pos.avg_price)

    def position_notional(self, instrument_id: str) -> float:
        """``|quantity| * contract_size * mark`` (inverse: ``/ mark``) of a margined position (0 when flat or unpriced)."""
        pos = self._positions[instrument_id]
        mark = pos.last_price
        if pos.quantity == 0.0 or mark != mark:
            return 0.0
        inst = self._margined[instrument_id]
        return abs(pos.quantity) * (inst.contract_size / mark if inst.inverse else inst.contract_size * mark)

    def initial_margin(self, asset: str | None = None) -> float:
        """Initial margin of the open margined positions (settling in ``asset``; all when ``None``)."""
        total = 0.0
        for iid, inst in self._margined.items():
            if asset is None or self._settle[iid] == asset:
                if inst.margin_mode == MarginMode.ISOLATED:
                    total += self._isolated[iid]
                else:
                    total += self.position_notional(iid) / inst.leverage
        return total

    def maintenance_margin(self, asset: str | None = None) -> float:
        """Maintenance margin of the open margined positions (settling in ``asset``; all when ``None``)."""
        total = 0.0
        for iid, inst in self._margined.items():
            if (asset is None or self._settle[iid] == asset) and self._positions[iid].quantity != 0.0:
                total += self.position_maintenance(iid)
        return total

    def position_maintenance(self, instrument_id: str) -> float:
        """Maintenance margin of one margined position at its mark: tiered, plus its venue's fee to close.

        ``Instrument.maintenance_margin(N, quantity)`` plus, by ``Instrument.maintenance_close_fee``
        (:class:`~tradebus.engine.instrument.CloseFee`): the taker fee on the position's value at
        its bankruptcy price ``entry * (1 - s / leverage)`` (``s`` +1 long, -1 short), or on ``N``.
        """
        inst = self._margined[instrument_id]
        notional = self.position_notional(instrument_id)
        quantity = self._positions[instrument_id].quantity
        return inst.maintenance_margin(notional, quantity) + self._close_fee(instrument_id, inst, notional)

    def _close_fee(self, instrument_id: str, inst: Instrument, notional: float) -> float:
        """The fee to close the position its maintenance margin counts (:meth:`position_maintenance`)."""
        rule = inst.maintenance_close_fee
        if rule == CloseFee.NONE or notional == 0.0:
            return 0.0
        if rule == CloseFee.MARK:
            return notional * inst.taker_fee
        pos = self._positions[instrument_id]
        side = 1.0 if pos.quantity > 0.0 else -1.0
        return abs(pos.quantity) * _unit(inst, pos.avg_price * (1.0 - side / inst.leverage)) * inst.taker_fee

    def cross_balance(self, asset: str) -> float:
        """``wallet - isolated margins + unrealised of cross perpetuals + margin spot positions' value`` of an asset."""
        return self._cross_balance(asset, self._spot.balance(asset))

    def _cross_balance(self, asset: str, wallet: float) -> float:
        """:meth:`cross_balance` of ``asset`` with its ``wallet`` balance."""
        total = wallet
        for iid, inst in self._by_asset.get(asset, ()):
            if iid not in self._perps:
                pos = self._positions[iid]
                if pos.quantity != 0.0 and pos.last_price == pos.last_price:
                    total += pos.quantity * inst.contract_size * pos.last_price
            elif inst.margin_mode == MarginMode.ISOLATED:
                total -= self._isolated[iid]
            else:
                total += self.unrealized(iid)
        return total

    def available(self, asset: str, exclude: str = "") -> float:
        """What new positions in ``asset`` may use (module docstring), ignoring working order ``exclude``."""
        return self._available(asset, exclude, self._spot.balance(asset))

    def _available(self, asset: str, exclude: str, wallet: float) -> float:
        """:meth:`available` of ``asset`` with its ``wallet`` balance."""
        total = self._cross_balance(asset, wallet)
        for iid, inst in self._by_asset.get(asset, ()):
            if inst.margin_mode == MarginMode.CROSS:
                pos = self._positions[iid]
                mark = pos.last_price
                if pos.quantity != 0.0 and mark == mark:  # position_notional, without the calls
                    cs = inst.contract_size
                    total -= abs(pos.quantity) * (cs / mark if inst.inverse else cs * mark) / inst.leverage
        if self._count():
            total -= self._orders_margin(asset, exclude)
        return total

    def liquidations(self) -> list[str]:
        """Margined instruments whose positions must be liquidated now (module docstring), in instrument order."""
        out: list[str] = []
        cross_checked: dict[str, bool] = {}
        for iid, inst in self._margined.items():
            pos = self._positions[iid]
            if pos.quantity == 0.0 or pos.last_price != pos.last_price:
                continue
            if inst.margin_mode == MarginMode.ISOLATED:
                if self._isolated[iid] + self.unrealized(iid) < self.position_maintenance(iid):
                    out.append(iid)
                continue
            asset = self._settle[iid]
            if asset not in cross_checked:
                mm = sum(
                    self.position_maintenance(j)
                    for j, other in self._margined.items()
                    if self._settle[j] == asset and other.margin_mode == MarginMode.CROSS
                )
                cross_checked[asset] = self.cross_balance(asset) < mm
            if cross_checked[asset]:
                out.append(iid)
        return out

    def liquidation_closes(self, instrument_ids: Iterable[str]) -> list[tuple[str, float, float, float]]:
        """How each position of ``instrument_ids`` is closed by liquidation (module docstring).

        ``instrument_ids`` are positions :meth:`liquidations` returned (a cross asset's positions
        all together). Positions sharing a margin are one group: an isolated position alone, the
        cross positions of a settle asset together. With ``B`` the group's margin at the marks
        (isolated: its margin plus unrealised PnL; cross: :meth:`cross_balance`, which closing
        at the marks leaves unchanged), the positions close at their marks and each fee
        (:meth:`_liquidation_fee`: by the instrument's
        :class:`~tradebus.engine.instrument.CloseFee`) is taken while ``B`` lasts, in the given
        order. Where the venue settles a liquidation at the bankruptcy price (``BANKRUPTCY``,
        Bybit), the margin is lost: an isolated position closes at ``entry - M / (q c)`` (``M``
        its margin) and pays its fee to close in full; cross positions give what is left of
        ``B`` after the fees to the insurance fund, each moving its close price against it by
        its share of ``B`` by notional. When ``B < 0`` the fund covers ``d = -B``: each
        position's share ``d * loss_i / sum(loss)`` (``loss_i`` its loss at the mark) moves its
        close price towards its entry by ``share / (|q| c)``, which for one position is its
        bankruptcy price ``entry - B_0 / (q c)`` (``B_0``: ``B`` without its own unrealised
        PnL); no fee then (but a ``BANKRUPTCY`` isolated position's). Only trading losses are
        covered: a wallet already below zero without them stays so by that much. Linear
        instruments (the portfolio trades no inverse ones).

        Returns
        -------
        list of tuple
            ``(instrument_id, close price, fee, insurance_fund_cover)`` in the given order.
        """
        groups: dict[str, list[str]] = {}
        for iid in instrument_ids:
            isolated = self._margined[iid].margin_mode == MarginMode.ISOLATED
            groups.setdefault(iid if isolated else self._settle[iid], []).append(iid)
        terms: dict[str, tuple[float, float, float]] = {}
        for key, members in groups.items():
            if key in self._margined:  # an isolated position
                pos, inst = self._positions[key], self._margined[key]
                backing = self._isolated[key] + pos.quantity * inst.contract_size * (pos.last_price - pos.avg_price)
                if inst.maintenance_close_fee == CloseFee.BANKRUPTCY:
                    price = pos.avg_price - self._isolated[key] / (pos.quantity * inst.contract_size)
                    terms[key] = (price, self._liquidation_fee(key), max(0.0, -backing))
                    continue
            else:
                backing = self.cross_balance(key)
            if backing >= 0.0:
                for iid in members:
                    fee = min(self._liquidation_fee(iid), backing)
                    backing -= fee
                    terms[iid] = (self._positions[iid].last_price, fee, 0.0)
                lost = [iid for iid in members if self._margined[iid].maintenance_close_fee == CloseFee.BANKRUPTCY]
                notional = sum(self.position_notional(iid) for iid in lost)
                for iid in lost if backing > 0.0 and notional > 0.0 else ():
                    pos, inst = self._positions[iid], self._margined[iid]
                    share = backing * self.position_notional(iid) / notional
                    price, fee, _ = terms[iid]
                    terms[iid] = (price - share / (pos.quantity * inst.contract_size), fee, 0.0)
                continue
            losses: dict[str, float] = {}
            for iid in members:
                pos = self._positions[iid]
                loss = pos.quantity * self._margined[iid].contract_size * (pos.avg_price - pos.last_price)
                losses[iid] = max(0.0, loss)
            total = sum(losses.values())
            covered = min(-backing, total)
            for iid in members:
                pos, inst = self._positions[iid], self._margined[iid]
                share = covered * losses[iid] / total if total > 0.0 else 0.0
                terms[iid] = (pos.last_price + share / (pos.quantity * inst.contract_size), 0.0, share)
        return [(iid, *terms[iid]) for iid in instrument_ids]

    def _liquidation_fee(self, instrument_id: str) -> float:
        """The fee a liquidation of the position charges, by its venue's :class:`CloseFee`.

        ``NONE`` (Binance): ``liquidation_fee`` on the notional at the mark; ``MARK`` (OKX): the
        taker fee on it; ``BANKRUPTCY`` (Bybit): the fee to close its maintenance margin counts,
        the taker fee on its value at the bankruptcy price.
        """
        inst, pos = self._margined[instrument_id], self._positions[instrument_id]
        if inst.maintenance_close_fee == CloseFee.BANKRUPTCY:
            return self._close_fee(instrument_id, inst, 1.0)
        rate = inst.taker_fee if inst.maintenance_close_fee == CloseFee.MARK else inst.liquidation_fee
        return abs(pos.quantity) * inst.contract_size * pos.last_price * rate

    def breached(self, instrument_id: str) -> bool:
        """Whether the position is below maintenance margin, when it is the only margined instrument of the run.

        The condition of :meth:`liquidations` for a run with one margined instrument (no other
        position shares its cross balance or holds isolated margin), computed without the loops.
        """
        pos = self._positions[instrument_id]
        q, mark = pos.quantity, pos.last_price
        if q == 0.0 or mark != mark:
            return False
        inst = self._margined[instrument_id]
        if instrument_id not in self._perps:  # margin spot (never inverse): the wallet plus the position's value
            backing = self._spot.balance(self._settle[instrument_id]) + q * inst.contract_size * mark
            return backing < inst.maintenance_margin(abs(q) * (inst.contract_size * mark), q)
        if inst.inverse:
            unrealised = self.unrealized(instrument_id)
        else:
            unrealised = q * inst.contract_size * (mark - pos.avg_price)
        if inst.margin_mode == MarginMode.ISOLATED:
            backing = self._isolated[instrument_id] + unrealised
        else:
            backing = self._spot.balance(self._settle[instrument_id]) + unrealised
        return backing < self.position_maintenance(instrument_id)

    def liquidation_price(self, instrument_id: str) -> float:
        """Mark at which this position is liquidated, everything else held fixed (NaN if never).

        With ``q`` contracts of size ``c`` entered at ``a``, maintenance rate ``m`` and amount
        ``k`` of the position's current tier, and ``E`` the margin backing it apart from its
        own unrealised PnL (isolated: its margin; cross: the cross balance without this
        position's unrealised PnL minus the other cross positions' maintenance margin), the
        position is liquidated where ``E + q c (P - a) = m |q| c P - k``:
        ``P = (q c a - E - k) / (c (q - m |q|))``. Inverse, with ``V`` the entry value and ``s``
        the side (+1/-1): ``E + s (V - |q| c / P) = m |q| c / P - k``, so
        ``P = (m + s) |q| c / (E + s V + k)``. Margin spot, whose value ``q c P`` counts in the
        cross balance (``E`` is the cross balance without it): ``E + q c P = m |q| c P - k``, so
        ``P = (-E - k) / (c (q - m |q|))``. With margin tiers, ``m`` and ``k`` are those of the
        tier the position's notional is in at ``P`` (the maintenance margin is continuous across
        tiers, so exactly one tier's ``P`` lies in it); with tiers by size (OKX), those of the
        tier of ``|q|``, which the price does not move.
        """
        pos = self._positions[instrument_id]
        q = pos.quantity
        if q == 0.0 or pos.last_price != pos.last_price:
            return _NAN
        lone = self._lone_spot.get(instrument_id)
        if lone is not None:
            # The computation below for this case (asked after every fill), inlined: E is the cross balance, wallet
            # plus the position's value, less that value; no close fee (the rate + 0.0 is the rate, -E - 0.0 is -E).
            asset, cs, rate = lone
            value = q * cs * pos.last_price
            price = -((self._spot.balance(asset) + value) - value) / (cs * (q - rate * abs(q)))
            return price if price > 0.0 and math.isfinite(price) else _NAN
        inst = self._margined[instrument_id]
        backing = self._liquidation_backing(instrument_id, inst, q)
        # The venue's fee to close: on the notional at P, a rate; at the bankruptcy price, an amount.
        fee_rate = inst.taker_fee if inst.maintenance_close_fee == CloseFee.MARK else 0.0
        fee_amount = self._close_fee(instrument_id, inst, 1.0) if inst.maintenance_close_fee == CloseFee.BANKRUPTCY else 0.0
        if not inst.margin_tiers:  # maintenance_bracket without tiers, whatever the notional (0.0 - x: bracket[1] - x)
            rate = inst.maintenance_rate + fee_rate
            return self._liquidation_at(instrument_id, inst, q, backing, rate, 0.0 - fee_amount)
        bracket = inst.maintenance_bracket(self.position_notional(instrument_id), q)
        price = self._liquidation_at(instrument_id, inst, q, backing, bracket[0] + fee_rate, bracket[1] - fee_amount)
        if inst.tiered_by_size:
            return price
        if price == price and _in_tier(inst, abs(q) * _unit(inst, price), bracket):
            return price
        for tier in inst.margin_tiers:  # the breach lies in another tier: the one whose price is in it
            other = inst.maintenance_bracket(tier.max_notional)
            price = self._liquidation_at(instrument_id, inst, q, backing, other[0] + fee_rate, other[1] - fee_amount)
            if price == price and _in_tier(inst, abs(q) * _unit(inst, price), other):
                return price
        return _NAN

    def _liquidation_backing(self, instrument_id: str, inst: Instrument, q: float) -> float:
        """``E`` of :meth:`liquidation_price`: the margin backing the position apart from its own PnL or value."""
        if inst.margin_mode == MarginMode.ISOLATED:
            return self._isolated[instrument_id]
        asset = self._settle[instrument_id]
        pos = self._positions[instrument_id]
        perpetual = instrument_id in self._perps
        own = self.unrealized(instrument_id) if perpetual else q * inst.contract_size * pos.last_price
        backing = self.cross_balance(asset) - own
        for j, other in self._by_asset[asset]:
            if j != instrument_id and other.margin_mode == MarginMode.CROSS:
                backing -= self.position_maintenance(j)
        return backing

    def _liquidation_at(
        self, instrument_id: str, inst: Instrument, q: float, backing: float, rate: float, amount: float
    ) -> float:
        """:meth:`liquidation_price`'s formula with maintenance ``rate`` and ``amount`` (NaN: no positive price)."""
        cs = inst.contract_size
        if inst.inverse:
            side = 1.0 if q > 0.0 else -1.0
            denominator = backing + side * self._entry_value[instrument_id] + amount
            price = (rate + side) * abs(q) * cs / denominator if denominator != 0.0 else _NAN
        elif instrument_id not in self._perps:
            price = (-backing - amount) / (cs * (q - rate * abs(q)))
        else:
            price = (q * cs * self._positions[instrument_id].avg_price - backing - amount) / (cs * (q - rate * abs(q)))
        return price if price > 0.0 and math.isfinite(price) else _NAN

    # ------------------------------------------------------------------- checks

    def check_order(self, cmd: SubmitOrder, price: float) -> str | None:
        """Why ``cmd`` cannot be covered (cash spot: balances; perpetual or margin spot: margin), or ``None``."""
        inst = self._margined.get(cmd.instrument_id)
        if inst is None:
            reason = self._spot.check_order(cmd, price)
            if reason is None and cmd.instrument_id in self._spot.instruments:
                need, asset = self._spot.order_need(cmd, price)
                side = "BUY" if cmd.side > 0 else "SELL"
                reason = self._cash_check(side, cmd.quantity, cmd.instrument_id, need, asset, cmd.client_order_id)
            return reason
        px = _order_price(cmd.order_type, cmd.price, cmd.trigger_price, price)
        if px != px or cmd.reduce_only:
            return None
        side = "BUY" if cmd.side > 0 else "SELL"
        return self._margin_check(inst, cmd.instrument_id, cmd.side, cmd.quantity, px, cmd.client_order_id, side)

    def check_fill(self, order: Any, quantity: float, price: float, fee: float) -> str | None:
        """Why the venue cannot fill ``quantity`` of ``order`` at ``price`` now, or ``None``."""
        inst = self._margined.get(order.instrument_id)
        if inst is None:
            reason = self._spot.check_fill(order, quantity, price, fee)
            if reason is None and order.instrument_id in self._spot.instruments:
                need, asset = self._spot.fill_need(order, quantity, price, fee)
                reason = self._cash_check("fill", quantity, order.instrument_id, need, asset, order.client_order_id)
            return reason
        if getattr(order, "reduce_only", False):
            return None
        return self._margin_check(
            inst, order.instrument_id, order.side, quantity, price, order.client_order_id, "fill", fee,
            getattr(order, "is_open", False),
        )

    def _margin_check(
        self,
        inst: Instrument,
        iid: str,
        side: int,
        quantity: float,
        price: float,
        exclude: str,
        what: str,
        fee: float | None = None,
        working: bool = False,
    ) -> str | None:
        """The check of :meth:`check_order` (``fee`` None) and :meth:`check_fill` (``working``: the filled order
        ``exclude`` is among the working orders)."""
        old = self._positions[iid].quantity
        signed = quantity if side > 0 else -quantity
        # _opening(old, signed), inlined (this runs twice an order: its check and its fill's), max() as comparisons
        if old == 0.0 or (old > 0.0) == (signed > 0.0):
            opening = abs(signed)
        else:
            opening = abs(signed) - abs(old)
            if not opening > 0.0:  # max(0.0, x) is 0.0 unless x > 0.0 (-0.0 and NaN too)
                opening = 0.0
        if opening <= 0.0:
            return None
        cs, inverse, leverage, cross, asset, fee_rate, perpetual = self._check_terms[iid]
        unit = cs / price if inverse else cs * price
        if inst.margin_tiers:
            adding = self._working_side(iid, side, exclude) if fee is None and self._count() else 0.0
            size = abs(old + signed + adding)
            after = size * unit
            made = f"a position of {size:.10g} contracts" if inst.tiered_by_size else f"a position of notional {after:.10g}"
            if adding:
                made += f" with the working orders on its side ({adding:.10g})"
            if not inst.within_tiers(after, size):
                return f"margin: {what} {quantity} {iid} makes {made} above the last tier"
            tier = inst.margin_tier(after, size)
            if leverage > tier.max_leverage:
                return (
                    f"margin: {what} {quantity} {iid} makes {made}, whose tier "
                    f"allows leverage {tier.max_leverage:g} < the instrument's {leverage:g}"
                )
        cost = quantity * unit * fee_rate if fee is None else fee
        need = opening * unit / leverage + cost
        wallet = self._spot.balance(asset)
        held = self._spot.held(asset) if self._cash_only else 0.0
        if iid in self._alone:
            # _available and position_notional of the one position, inlined: the same operations in the same order.
            mark = self._positions[iid].last_price
            priced = old != 0.0 and mark == mark
            total = wallet
            if not perpetual:
                if priced:
                    total += old * cs * mark
            elif not cross:
                total -= self._isolated[iid]
            else:
                total += self.unrealized(iid)
            notional = abs(old) * (cs / mark if inverse else cs * mark) if priced else 0.0
            if cross and priced:
                total -= notional / leverage
            # Orders working besides exclude (none at the fill of the only working order: no margin to take off).
            if self._count() > working:
                if self._live:
                    total -= self._orders_margin(asset, exclude)
                else:  # _orders_margin, inlined
                    margins = self._margins(self._working(), asset, exclude)
                    if margins:
                        total -= exact_sum(0, margins)
            available = total - held
        else:
            available = self._available(asset, exclude, wallet) - held
            notional = None
        if opening < abs(signed):  # a reversal closes the position first, which releases its margin
            if not cross:
                available += self._isolated[iid] + self.unrealized(iid)
            else:
                available += (self.position_notional(iid) if notional is None else notional) / leverage
        if exceeds(need, available, wallet):
            return margin_reason(what, quantity, iid, need, asset, available, wallet, self.initial_margin(asset), held)
        return None

    def _working_side(self, iid: str, side: int, exclude: str) -> float:
        """Signed remaining quantity of the working orders of ``iid`` on ``side`` that may add to the position
        (not reduce-only), except ``exclude`` and its OCO group; an OCO group counts once, as its largest member."""
        if self._leaves is not None:
            return self._leaves.total((iid,), self._spot.oco_groups(), side > 0, exclude, plain=True)
        working = (order for order in self._working() if order.instrument_id == iid)
        return working_quantity(working, self._spot.oco_groups(), side > 0, exclude, plain=True)

    def _cash_check(self, what: str, quantity: float, iid: str, need: float, asset: str, exclude: str) -> str | None:
        """Why a cash-only order (or fill) spending ``need`` of a settle asset would spend the positions' margin.

        It may use what new positions may (:meth:`available`) less what other cash-only orders hold.
        """
        if need != need or asset not in self._settle_assets:
            return None
        held = self._spot.held(asset, exclude)
        available = self.available(asset) - held
        if exceeds(need, available, self._spot.balance(asset)):
            return (
                f"margin: {what} {quantity} {iid} needs {need:.10g} {asset} > available {available:.10g} {asset} "
                f"(wallet {self._spot.balance(asset):.10g}, position margin {self.initial_margin(asset):.10g}, "
                f"held by working orders {held:.10g})"
            )
        return None

    def _orders_margin(self, asset: str, exclude: str) -> float:
        """Initial margin of the working orders of margined instruments settling in ``asset`` (except ``exclude``):
        the correctly rounded sum of the orders'."""
        if not self._live:
            # None but exclude, at a fill of a lone order: no sum to take (0.0, as exact_sum gives)
            margins = self._margins(self._working(), asset, exclude)
            return exact_sum(0, margins) if margins else 0.0
        total = 0
        records = self._records
        for iid, _ in self._by_asset.get(asset, ()):
            position = self._positions[iid].quantity
            for buy in (True, False):
                key = (iid, buy)
                if position == 0.0 or (position > 0.0) == buy:  # every order on this side opens in full
                    total += self._full.get(key, 0)
                    record = records.get(exclude)
                    if record is not None and record[0] == key and record[2] is not None:
                        total -= record[2]
                else:  # the part of each order beyond the position opens it the other way
                    size = abs(position)
                    if self._sides.get(key) and self._largest_leaves(key) > size:
                        for margin in self._margins(self._larger_than(key, size), asset, exclude):
                            total += exact(margin)  # finite: its margin in full is
        floating = self._floating.get(asset)
        return exact_sum(total, self._margins(floating.values(), asset, exclude) if floating else ())

    def _largest_leaves(self, key: tuple[str, bool]) -> float:
        """The largest remaining quantity of the tracked orders of a fixed price of ``key`` (0 when none)."""
        heap = self._largest.get(key)
        records = self._records
        while heap:
            leaves, coid = heap[0]
            record = records.get(coid)
            if record is not None and record[0] == key and record[2] is not None and record[4] == -leaves:
                return -leaves
            heapq.heappop(heap)
        return 0.0

    def _larger_than(self, key: tuple[str, bool], size: float) -> list[Any]:
        """The tracked orders of a fixed price of ``key`` whose remaining quantity is above ``size`` (the others
        hold no margin against a position of ``size``): a walk of the heap's entries above it, not of every order."""
        heap = self._largest.get(key, [])
        records = self._records
        found: dict[str, Any] = {}
        stack = [0]
        while stack:
            i = stack.pop()
            if i >= len(heap):
                continue
            leaves, coid = heap[i]
            if -leaves <= size:
                continue  # and so are the entries below it
            record = records.get(coid)
            if record is not None and record[0] == key and record[2] is not None and record[4] == -leaves:
                found[coid] = record[3]  # an order counted again with the same leaves has several entries
            stack.append(2 * i + 1)
            stack.append(2 * i + 2)
        return list(found.values())

    def _margins(self, orders: Iterable[Any], asset: str, exclude: str) -> list[float]:
        """The initial margin of each of ``orders`` of margined instruments settling in ``asset`` but ``exclude``."""
        margins: list[float] = []
        for order in orders:
            inst = self._margined.get(order.instrument_id)
            if inst is None or order.client_order_id == exclude or self._settle[order.instrument_id] != asset:
                continue
            if order.reduce_only or order.leaves_qty <= 0.0:
                continue
            signed = order.leaves_qty if order.side > 0 else -order.leaves_qty
            opening = _opening(self._positions[order.instrument_id].quantity, signed)
            px = _order_price(order.order_type, order.price, order.trigger_price, self._price(order.instrument_id))
            if opening > 0.0 and px == px:
                margins.append(opening * _unit(inst, px) / inst.leverage)
        return margins

    # ------------------------------------------------------------------ queries

    def balance(self, asset: str) -> float:
        """Wallet balance of ``asset`` (0 if none)."""
        return self._spot.balance(asset)

    def locked(self, asset: str) -> float:
        """Held by spot orders plus, for a settle asset, the initial margin of positions and orders."""
        locked = self._spot.locked(asset)
        if asset in self._settle.values():
            locked += self.initial_margin(asset) + self._orders_margin(asset, "")
        return locked

    def free(self, asset: str) -> float:
        """``balance - locked``."""
        return self.balance(asset) - self.locked(asset)

    def balances(self) -> dict[str, float]:
        """``asset -> wallet balance`` in the order the instruments name the assets."""
        return self._spot.balances()


def borrow_assets(instruments: Mapping[str, Instrument]) -> dict[str, tuple[str, str]]:
    """``instrument_id -> (base, quote)`` of the margin spot instruments of ``instruments``: those that borrow.

    Their assets are the :attr:`MarginAccount.borrowable` ones; a cash-only spot instrument or a
    perpetual borrows nothing.
    """
    return {
        iid: asset_names(inst) for iid, inst in instruments.items() if not inst.cash_only and not inst.is_perpetual
    }


def margin_reason(
    what: str,
    quantity: float,
    iid: str,
    need: float,
    asset: str,
    available: float,
    wallet: float,
    margin: float,
    held: float = 0.0,
) -> str:
    """The denial of an order (``what``: its side, or ``"fill"``) whose initial margin and fee exceed what is available
    (``held``: the part of the balance working cash-only orders hold, named when there is some)."""
    by_orders = f", held by cash-only orders {held:.10g}" if held else ""
    return (
        f"margin: {what} {quantity} {iid} needs initial margin and fee {need:.10g} {asset} > available "
        f"{available:.10g} {asset} (wallet {wallet:.10g}, position margin {margin:.10g}{by_orders})"
    )


def _unit(inst: Instrument, price: float) -> float:
    """Settle-asset value of one unit of quantity at ``price``: ``c * price``, inverse ``c / price``."""
    return inst.contract_size / price if inst.inverse else inst.contract_size * price


def _in_tier(inst: Instrument, notional: float, bracket: tuple[float, float]) -> bool:
    """Whether ``notional`` is in the maintenance tier of ``bracket`` (``(rate, amount)``), up to rounding."""
    return bracket in (
        inst.maintenance_bracket(notional),
        inst.maintenance_bracket(notional * (1.0 - 1e-12)),
        inst.maintenance_bracket(notional * (1.0 + 1e-12)),
    )


def _opening(position: float, signed: float) -> float:
    """How much of a signed order quantity adds to ``position`` (the rest reduces it)."""
    if position == 0.0 or (position > 0.0) == (signed > 0.0):
        return abs(signed)
    return max(0.0, abs(signed) - abs(position))


def _order_price(order_type: OrderType, limit: float, trigger: float, last: float) -> float:
    """Price an order is valued at: its limit, else its trigger, else the last price (NaN if none)."""
    if order_type == _LIMIT or order_type == _STOP_LIMIT:
        return limit
    if order_type == _STOP_MARKET and trigger == trigger:
        return trigger
    return last


def _nan_price(instrument_id: str) -> float:
    return _NAN


def _zero() -> int:
    return 0
