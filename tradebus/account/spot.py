"""Cash spot account: balances per asset that never go below zero.

Balances
    One total per asset: each instrument's base and quote asset (``Instrument.base`` /
    ``quote``; an instrument that names none gets ``"<symbol> base"`` and ``"quote"``). A
    fill of ``q`` at ``px`` with fee ``f`` (in the quote asset) moves a buy's base by ``+q``
    and quote by ``-(q * px + f)``, a sell's base by ``-q`` and quote by ``+(q * px - f)``.
    A fee the venue charged in another asset (``OrderFilled.fee_asset``: the base asset, or a
    third one such as BNB) is debited from that asset's balance instead (a third asset starts
    at its ``balances`` amount when it is one of ``fee_assets``, else it gets a balance at
    its first fee, below zero), and the quote asset moves by the notional alone.

Held by working orders (locked)
    A working buy holds ``leaves * price * (1 + fee rate)`` of the quote asset, where price is
    its limit (limit, stop-limit), its trigger raised by ``market_buffer`` (stop-market) or the
    instrument's last price raised by ``market_buffer`` (market); the fee rate is the larger
    of the instrument's maker and taker rates. A working sell holds ``leaves`` of the base
    asset. ``free = balance - locked``. The members of an OCO group (:meth:`SpotCashAccount.link_oco`:
    a bracket's stop-loss and take-profit, which sell the same holding) can together fill no
    more than the largest of them: a group holds what its largest member holds, once, and an
    order is checked against what is held outside its own group. On a cash-only instrument a fill
    of a member leaves each other member room for no more than the filler's unfilled quantity
    (none once it filled completely), as a venue holding the group reduces them
    (:meth:`SpotCashAccount.oco_room`; the simulated venue fills no more than that), even when
    the balance holds more of the asset (coins held before a bracket bought): both exits of one
    bracket never fill. A restart links a group again with the room its members' fills left
    (``link_oco(ids, room)``), not with none.

Checks
    :meth:`SpotCashAccount.check_order` (called by the risk gate) denies an order that its
    asset's free balance cannot cover, with a reason naming the asset, the amount needed and
    the amount available (a market buy of an instrument with no price yet cannot be valued:
    it passes, and holds nothing while it works). :meth:`SpotCashAccount.check_fill` is the
    exchange's own check at match time (the simulated venue calls it before each fill of a
    cash-only instrument and cancels the order when it fails): a market order may fill above
    its estimate, and it is never allowed to spend what other working orders hold. Together they keep every balance
    of a cash-only instrument at or above zero but for float noise: a fill passes only if it needs
    no more than the free balance, up to :func:`exceeds`' slack of ``LOTS_RTOL`` of the balance (a
    sell of exactly the 0.2 left of 0.7 less 0.5 held passes though ``0.7 - 0.5`` is
    0.19999999999999996; a shortfall of one lot of 1e-8 passes only on a balance of 1e6 coins).
    A fill that leaves a balance within float noise of zero leaves exactly 0.0 (:func:`settle`:
    selling 0.3, 0.2 and 0.5 of 1.0 BTC would leave -5.6e-17).

Instruments that are not cash-only (``Instrument.margin``, perpetuals) are booked in the
same balances but never checked here: a base balance below zero is a short, a quote balance
below zero a loan. Their margin rules belong to a margin account (see :mod:`tradebus.account`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tradebus.account.base import KeptTotals, WorkingOrders
from tradebus.account.exact import exact, exact_sum, rounded
from tradebus.engine.instrument import LOTS_RTOL, Instrument
from tradebus.engine.messages import OrderFilled, OrderType, SubmitOrder
from tradebus.errors import ConfigError
from tradebus.risk.shown import shown

__all__ = [
    "SpotCashAccount", "asset_names", "buying_power_reason", "exceeds", "insufficient_balance_reason", "settle",
]  # fmt: skip

_NAN = math.nan
_INF = math.inf
_LIMIT = OrderType.LIMIT
_MARKET = OrderType.MARKET
_STOP_LIMIT = OrderType.STOP_LIMIT
_STOP_MARKET = OrderType.STOP_MARKET


def asset_names(instrument: Instrument) -> tuple[str, str]:
    """``(base, quote)`` asset names of an instrument (placeholders when it names none)."""
    return instrument.base or f"{instrument.symbol} base", instrument.quote or "quote"


def _no_orders() -> Iterable[Any]:
    return ()


def _no_price(instrument_id: str) -> float:
    return _NAN


def _no_count() -> int:
    return 0


def exceeds(need: float, available: float, balance: float) -> bool:
    """Whether ``need`` is more than ``available`` beyond the float noise of ``balance`` it was taken from.

    Parameters
    ----------
    need
        What an order or a fill spends (NaN: nothing priced, never more).
    available
        What it may spend: ``balance`` less what working orders hold (or margin).
    balance
        The wallet balance of the asset; the slack is ``LOTS_RTOL * |balance|`` (the gate's
        ``LIMIT_RTOL``, 1e-9, would let one more lot of 1e-8 through on a balance of 10 BTC).

    Returns
    -------
    bool
        ``True`` when ``need`` cannot be paid.
    """
    return need - available > LOTS_RTOL * (balance if balance >= 0.0 else -balance)  # abs() without the call


def settle(balance: float, amount: float) -> float:
    """``balance + amount``, exactly 0.0 when that is float noise of the two (``LOTS_RTOL`` of the larger).

    A fill of exactly what is left (``0.3 - 0.1 - 0.2`` is -2.8e-17) leaves nothing, not a balance
    below zero; a remainder of one lot of 1e-8 stays on any balance below 1e6 coins.
    """
    after = balance + amount
    # abs() and max() without the builtin calls (four settles per fill); NaN compares as before
    larger = balance if balance >= 0.0 else -balance
    other = amount if amount >= 0.0 else -amount
    if other > larger:
        larger = other
    slack = LOTS_RTOL * larger
    if -slack <= after <= slack:
        return 0.0
    return after


def buying_power_reason(
    buy: bool, quantity: float, instrument_id: str, need: float, asset: str, balance: float, held: float
) -> str:
    """The denial of an order whose cost (``need`` of ``asset``) exceeds the balance less what is ``held``."""
    side = "BUY" if buy else "SELL"
    return (
        f"buying_power: {side} {shown(quantity)} {instrument_id} needs {need:.10g} {asset} > available "
        f"{balance - held:.10g} {asset} (balance {balance:.10g}, held by working orders {held:.10g})"
    )


def insufficient_balance_reason(
    need: float, asset: str, quantity: float, price: float, available: float, held: float
) -> str:
    """Why a fill of ``quantity`` at ``price`` (costing ``need`` of ``asset``) cannot be paid."""
    return (
        f"insufficient balance: {need:.10g} {asset} needed to fill {shown(quantity)} at {shown(price)} > "
        f"available {available:.10g} {asset} (held by other working orders {held:.10g})"
    )


class SpotCashAccount(KeptTotals):
    """Balances per asset for cash spot trading (see the module docstring).

    Parameters
    ----------
    instruments
        ``instrument_id -> Instrument`` of the run.
    balances
        Initial ``asset -> amount`` (finite, >= 0); every asset must be the base or quote
        asset of an instrument, or one of ``fee_assets``.
    market_buffer
        Fraction a market (or stop-market) buy's price estimate is raised by (0.02 = 2 %).
    fee_assets
        Assets no instrument trades that the venue charges fees in (a live Binance account's
        ``BNB``): each has a balance, moved only by the fees charged in it.

    Raises
    ------
    ConfigError
        An unknown asset, or an amount that is negative or not finite.
    """

    __slots__ = (
        "_buffer", "_count", "_fixed", "_floating", "_leaves_of", "_live", "_oco", "_oco_room", "_price", "_records",
        "_specs", "_total", "_working", "instruments",
    )  # fmt: skip

    def __init__(
        self,
        instruments: Mapping[str, Instrument],
        balances: Mapping[str, float],
        *,
        market_buffer: float = 0.02,
        fee_assets: Iterable[str] = (),
    ) -> None:
        if not (market_buffer >= 0.0 and math.isfinite(market_buffer)):
            raise ConfigError(f"account: market_buffer must be a finite fraction >= 0, got {market_buffer!r}")
        self.instruments = instruments
        self._buffer = 1.0 + market_buffer
        # instrument_id -> (base, quote, cash-only, fee rate used to hold a buy's cost)
        self._specs: dict[str, tuple[str, str, bool, float]] = {}
        self._total: dict[str, float] = {}
        for iid, inst in instruments.items():
            base, quote = asset_names(inst)
            self._specs[iid] = (base, quote, inst.cash_only, max(inst.maker_fee, inst.taker_fee, 0.0))
            self._total.setdefault(base, 0.0)
            self._total.setdefault(quote, 0.0)
        traded = sorted(self._total)
        for asset in fee_assets:
            self._total.setdefault(asset, 0.0)
        for asset, amount in balances.items():
            if asset not in self._total:
                raise ConfigError(
                    f"account: balance of {asset!r} names no instrument's base or quote asset "
                    f"(assets: {traded}) and no fee asset ({sorted(set(fee_assets))})"
                )
            if not (amount >= 0.0 and math.isfinite(amount)):
                raise ConfigError(f"account: balance of {asset!r} must be finite and >= 0, got {amount!r}")
            self._total[asset] = float(amount)
        self._working: Callable[[], Iterable[Any]] = _no_orders
        self._price: Callable[[str], float] = _no_price
        self._count: Callable[[], int] = _no_count
        # client order id -> its remaining quantity while it works (0.0 after): track gives the order manager's
        self._leaves_of: Callable[[str], float] = self._walked_leaves
        # client order id -> the ids of its OCO group (itself included)
        self._oco: dict[str, tuple[str, ...]] = {}
        # linked client order id -> the most it may still fill, once a member of its group filled
        self._oco_room: dict[str, float] = {}
        # Tracked working orders (track; kept while TRACK_FROM work): asset -> exact sum of what the orders of a fixed price hold of it (limit
        # and stop-limit buys, sells) outside OCO groups; asset -> {client order id: order} of the others, valued at
        # each check (a market or stop-market buy's price moves, a group holds its largest member); client order
        # id -> (asset, exact amount held or None for the others, order).
        self._live = False
        self._fixed: dict[str, int] = {}
        self._floating: dict[str, dict[str, Any]] = {}
        self._records: dict[str, tuple[str, int | None, Any]] = {}

    def bind(
        self, working: Callable[[], Iterable[Any]], price: Callable[[str], float], count: Callable[[], int]
    ) -> None:
        """Use ``working()`` as the open orders (``count()`` of them) and ``price(instrument_id)`` as last prices."""
        self._working = working
        self._price = price
        self._count = count

    def track(self, orders: WorkingOrders) -> None:
        """Keep what the working orders of ``orders`` (those :meth:`bind` gave) hold as they change, while at least
        :data:`~tradebus.account.base.TRACK_FROM` work, and read an order's remaining quantity from it."""
        self._leaves_of = orders.leaves.leaves_of
        orders.watch(self.order_changed)

    def _forget(self) -> None:
        self._fixed.clear()
        self._floating.clear()
        self._records.clear()

    def _count_order(self, order: Any) -> None:
        coid = order.client_order_id
        old = self._records.pop(coid, None)
        if old is not None:
            if old[1] is None:
                del self._floating[old[0]][coid]
            else:
                self._fixed[old[0]] -= old[1]
        if not order.is_open:
            return
        spec = self._specs.get(order.instrument_id)
        if spec is None or not spec[2]:
            return
        if order.side > 0:
            asset = spec[1]
            typ = order.order_type
            fixed = typ == _LIMIT or typ == _STOP_LIMIT
        else:
            asset = spec[0]
            fixed = True
        if fixed and coid not in self._oco and coid not in self._oco_room:
            leaves = order.leaves_qty
            hold = (leaves * order.price * (1.0 + spec[3]) if order.side > 0 else leaves) if leaves > 0.0 else 0.0
            if hold - hold == 0.0:  # finite (a NaN limit holds nothing: valued at each check as before)
                n = exact(hold)
                self._fixed[asset] = self._fixed.get(asset, 0) + n
                self._records[coid] = (asset, n, order)
                return
        self._floating.setdefault(asset, {})[coid] = order
        self._records[coid] = (asset, None, order)

    def link_oco(self, client_order_ids: Iterable[str], room: Mapping[str, float] | None = None) -> None:
        """Count orders ``client_order_ids`` (working or about to be submitted) as one OCO group.

        ``room``: the most each member may still fill, of a group some member of which filled before it was
        linked here (a restart: the room its fills left, which :meth:`oco_room` tells).
        """
        group = tuple(client_order_ids)
        for coid in group:
            self._oco[coid] = group
        if room:
            self._oco_room.update((coid, room[coid]) for coid in group if coid in room)
        for coid in group:
            record = self._records.get(coid)
            if record is not None and record[1] is not None:
                self._count_order(record[2])  # valued at each check from now on, as a member

    def unlink_oco(self, client_order_id: str) -> None:
        """Count order ``client_order_id`` on its own again (it ended, or left its group)."""
        self._oco.pop(client_order_id, None)
        self._oco_room.pop(client_order_id, None)
        record = self._records.get(client_order_id)
        if record is not None and record[1] is None:
            self._count_order(record[2])

    def oco_groups(self) -> Mapping[str, tuple[str, ...]]:
        """``client order id -> the ids of its OCO group`` (itself included), for every linked order (read-only)."""
        return self._oco

    # ------------------------------------------------------------------ updates

    def apply_fill(self, fill: OrderFilled) -> None:
        """Book a fill (see the module docstring); unknown instruments are the portfolio's error."""
        spec = self._specs.get(fill.instrument_id)
        if spec is None:
            return
        if self._oco and spec[2] and fill.client_order_id in self._oco:
            self._oco_fill(fill)
        total = self._total
        base, quote = spec[0], spec[1]
        qty = fill.last_qty
        moved = qty if fill.side > 0 else -qty
        fee_asset = fill.fee_asset
        fee = fill.fee
        if fee_asset and fee_asset != quote:
            # charged in another asset: the quote asset moves by the notional alone
            if fee_asset == base:
                moved -= fee  # as the portfolio moves the position, to the last bit
            else:
                total[fee_asset] = settle(total.get(fee_asset, 0.0), -fee)
            fee = 0.0
        total[base] = settle(total[base], moved)
        if fill.side > 0:
            total[quote] = settle(total[quote], -(qty * fill.last_px + fee))
        else:
            total[quote] = settle(total[quote], qty * fill.last_px - fee)

    def apply_funding(self, instrument_id: str, payment: float) -> None:
        """Debit a funding ``payment`` (negative: received) from the instrument's quote asset."""
        spec = self._specs.get(instrument_id)
        if spec is not None:
            self._total[spec[1]] -= payment

    def credit(self, asset: str, amount: float) -> None:
        """Add ``amount`` (negative: debit) to ``asset``'s balance: a margin account books
        realised PnL, fees and funding of derivatives this way."""
        self._total[asset] = self._total.get(asset, 0.0) + amount

    def _oco_fill(self, fill: OrderFilled) -> None:
        """Leave the other members of the filler's group room for no more than its unfilled quantity."""
        coid = fill.client_order_id
        room = self._oco_room
        # The order manager books a fill before the account: a filled order is no longer working.
        leaves = room[coid] = min(self._leaves_of(coid), room.get(coid, math.inf) - fill.last_qty)
        for other in self._oco[coid]:
            if other != coid:
                room[other] = min(room.get(other, math.inf), leaves)

    def _walked_leaves(self, client_order_id: str) -> float:
        """The remaining quantity of working order ``client_order_id`` found among ``working()`` (0.0: not there)."""
        return next((o.leaves_qty for o in self._working() if o.client_order_id == client_order_id), 0.0)

    def oco_room(self, client_order_id: str) -> float:
        """How much more order ``client_order_id`` may fill as a member of its OCO group (``inf``:
        no member of its group has filled, or it is in none, or not of a cash-only instrument)."""
        return self._oco_room.get(client_order_id, _INF) if self._oco_room else _INF

    # ------------------------------------------------------------------- checks

    def check_order(self, cmd: SubmitOrder, price: float) -> str | None:
        """Why the free balance cannot cover ``cmd`` (counting working orders), or ``None``.

        ``price`` values a market buy (the last price; it is raised by the market buffer). A
        market buy of an instrument that has no price yet passes: :meth:`check_fill` still
        refuses a fill the balance cannot pay.
        """
        spec = self._specs.get(cmd.instrument_id)
        if spec is None or not spec[2]:
            return None
        qty = cmd.quantity
        # order_need inline (a call less per order; a market buy's price without _buy_price's)
        if cmd.side > 0:
            typ = cmd.order_type
            px = price * self._buffer if typ is _MARKET else self._buy_price(typ, cmd.price, cmd.trigger_price, price)
            need = qty * px * (1.0 + spec[3])
            if need != need:
                return None  # nothing priced yet: only the venue's check at fill time applies
            asset = spec[1]
        else:
            need = qty
            asset = spec[0]
        # The order being checked is not working yet: with nothing working nothing is held.
        held = self._held(asset, cmd.client_order_id) if self._count() else 0.0
        balance = self._total[asset]
        # exceeds(need, balance - held, balance) inline (a call less per order; a test holds the two equal)
        if need - (balance - held) > LOTS_RTOL * (balance if balance >= 0.0 else -balance):
            return buying_power_reason(cmd.side > 0, qty, cmd.instrument_id, need, asset, balance, held)
        return None

    def check_fill(self, order: Any, quantity: float, price: float, fee: float) -> str | None:
        """Why ``quantity`` of ``order`` cannot fill at ``price`` with ``fee`` now, or ``None``."""
        spec = self._specs.get(order.instrument_id)
        if spec is None or not spec[2]:
            return None
        # fill_need inline (a call and a tuple less per fill; a test holds the two equal)
        if order.side > 0:
            need = quantity * price + fee
            asset = spec[1]
        else:
            need = quantity
            asset = spec[0]
        balance = self._total[asset]
        count = self._count()
        # Only the filling order itself working: nothing else holds funds.
        if count > 1 or not order.is_open:
            held = self._held(asset, order.client_order_id)
            available = balance - held
        else:
            held, available = 0.0, balance
        # exceeds(need, available, balance) inline (a call less per fill, as in check_order)
        if need - available > LOTS_RTOL * (balance if balance >= 0.0 else -balance):
            return insufficient_balance_reason(need, asset, quantity, price, available, held)
        return None

    def order_need(self, cmd: SubmitOrder, price: float) -> tuple[float, str]:
        """``(amount, asset)`` a cash-only order spends (module docstring; amount NaN: a market buy not priced yet)."""
        spec = self._specs[cmd.instrument_id]
        if cmd.side > 0:
            px = self._buy_price(cmd.order_type, cmd.price, cmd.trigger_price, price)
            return cmd.quantity * px * (1.0 + spec[3]), spec[1]
        return cmd.quantity, spec[0]

    def fill_need(self, order: Any, quantity: float, price: float, fee: float) -> tuple[float, str]:
        """``(amount, asset)`` a fill of ``quantity`` of a cash-only order at ``price`` with ``fee`` spends."""
        spec = self._specs[order.instrument_id]
        if order.side > 0:
            return quantity * price + fee, spec[1]
        return quantity, spec[0]

    def held(self, asset: str, exclude: str = "") -> float:
        """``asset`` held by the working orders of cash-only instruments, except order ``exclude`` and its OCO group."""
        return self._held(asset, exclude) if self._count() else 0.0

    def _buy_price(self, order_type: OrderType, limit: float, trigger: float, last: float) -> float:
        if order_type == _LIMIT or order_type == _STOP_LIMIT:
            return limit
        if order_type == _STOP_MARKET:
            return max(trigger, last) * self._buffer if last == last else trigger * self._buffer
        return last * self._buffer

    def _held(self, asset: str, exclude: str) -> float:
        """``asset`` held by the working orders of cash-only instruments, except order ``exclude`` and its
        OCO group; an OCO group holds what its largest member holds (the correctly rounded sum of the orders')."""
        oco = self._oco
        skip = oco.get(exclude, (exclude,)) if oco else (exclude,)
        if not self._live:
            return exact_sum(0, self._holds(self._working(), asset, skip))
        total = self._fixed.get(asset, 0)
        records = self._records
        for coid in skip:
            record = records.get(coid)
            if record is not None and record[0] == asset and record[1] is not None:
                total -= record[1]
        floating = self._floating.get(asset)
        if floating:
            return exact_sum(total, self._holds(floating.values(), asset, skip))
        return rounded(total)

    def _holds(self, orders: Iterable[Any], asset: str, skip: tuple[str, ...]) -> list[float]:
        """What each of ``orders`` (but those in ``skip``) holds of ``asset``, an OCO group once as its largest."""
        holds: list[float] = []
        specs = self._specs
        oco = self._oco
        groups: dict[tuple[str, ...], float] = {}
        for order in orders:
            spec = specs.get(order.instrument_id)
            if spec is None or not spec[2] or order.client_order_id in skip:
                continue
            leaves = order.leaves_qty
            if self._oco_room:
                leaves = min(leaves, self._oco_room.get(order.client_order_id, leaves))  # it fills no more
            if leaves <= 0.0:
                continue
            hold = 0.0
            if order.side > 0:
                if spec[1] == asset:
                    last = self._price(order.instrument_id)
                    px = self._buy_price(order.order_type, order.price, order.trigger_price, last)
                    if px == px:
                        hold = leaves * px * (1.0 + spec[3])
            elif spec[0] == asset:
                hold = leaves
            group = oco.get(order.client_order_id) if oco else None
            if group is None:
                holds.append(hold)
            elif hold > groups.get(group, 0.0):
                groups[group] = hold
        holds.extend(groups.values())
        return holds

    # ------------------------------------------------------------------ queries

    def balance(self, asset: str) -> float:
        """Total balance of ``asset`` (0 if none)."""
        return self._total.get(asset, 0.0)

    def locked(self, asset: str) -> float:
        """Part of ``asset``'s balance held by working orders."""
        return self._held(asset, "")

    def free(self, asset: str) -> float:
        """``balance - locked``."""
        return self.balance(asset) - self.locked(asset)

    def balances(self) -> dict[str, float]:
        """``asset -> total balance``, in the order the instruments name the assets."""
        return dict(self._total)
