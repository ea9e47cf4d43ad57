"""The :class:`Account` protocol: what the risk gate, the venue and the portfolio ask of an account."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, Protocol

from tradebus.account.exact import exact, rounded
from tradebus.engine.messages import OrderFilled, SubmitOrder

__all__ = ["TRACK_FROM", "UNTRACK_AT", "Account", "KeptTotals", "WorkingLeaves", "WorkingOrders", "working_quantity"]

#: Open orders from which the running totals of what they hold are kept; with fewer, each check sums over them
#: afresh (as cheap for so few, and no bookkeeping per order). The two give the same result to the last bit.
TRACK_FROM = 16
#: Open orders at or below which the running totals are dropped again.
UNTRACK_AT = 4
_INF = float("inf")


class WorkingOrders(Protocol):
    """The order manager as an account tracks it (:meth:`Account.track`)."""

    leaves: WorkingLeaves

    def watch(self, callback: Callable[[Any], None]) -> None:
        """Call ``callback(order)`` after each change of an order that is or was working, when at least
        :data:`UNTRACK_AT` orders work after it (one order opens or closes a change)."""


class Account(Protocol):
    """Balances per asset and the buying-power rules of one kind of account.

    Implementations: :class:`~tradebus.account.spot.SpotCashAccount` (cash spot) and
    :class:`~tradebus.account.margin.MarginAccount` (perpetuals, margin spot), which answers from margin: its
    :meth:`check_order` compares the initial margin of the order with the available balance,
    its :meth:`check_fill` is the venue's margin check at match time, and it adds marks,
    funding and liquidation of its own.
    """

    def bind(
        self, working: Callable[[], Iterable[Any]], price: Callable[[str], float], count: Callable[[], int]
    ) -> None:
        """Give the account the run's working orders and last prices (the kernel does it once).

        ``working()`` returns the open orders (objects with ``client_order_id``,
        ``instrument_id``, ``side``, ``order_type``, ``price``, ``trigger_price``,
        ``leaves_qty``, ``is_open``), ``count()`` how many there are (cheaply);
        ``price(instrument_id)`` the last price (NaN if none). An order an account is asked about
        whose ``is_open`` is true is one of ``working()`` (a margin account's check of the fill of the
        only working order takes no other order's margin off without walking them).
        """

    def track(self, orders: WorkingOrders) -> None:
        """Keep what the working orders of ``orders`` hold as they change (the kernel does it once, after
        :meth:`bind`, with the order manager whose open orders ``working()`` returns): a check then costs
        the same however many orders rest. Without it every check sums over ``working()``, to the same result."""

    def link_oco(self, client_order_ids: Iterable[str], room: Mapping[str, float] | None = None) -> None:
        """Count orders ``client_order_ids`` (working or about to be submitted) as one OCO group:
        together they fill no more than the largest of them, so a cash account holds that once.
        ``room``: the most each member may still fill, when members filled before (a restart)."""

    def unlink_oco(self, client_order_id: str) -> None:
        """Count order ``client_order_id`` on its own again (it ended, or left its OCO group)."""

    def oco_room(self, client_order_id: str) -> float:
        """How much more order ``client_order_id`` may fill as a member of its OCO group once a
        member filled (``inf``: no limit); a venue fills no more (the simulated venue's ``fill_room``)."""

    def oco_groups(self) -> Mapping[str, tuple[str, ...]]:
        """``client order id -> the ids of its OCO group`` (itself included), for every linked order.

        The risk gate counts a group's working orders once too (their largest on each side).
        """

    def apply_fill(self, fill: OrderFilled) -> None:
        """Book a fill in the balances (never refused: the venue already filled it)."""

    def apply_funding(self, instrument_id: str, payment: float) -> None:
        """Debit a funding ``payment`` (negative: received) from the instrument's settle asset."""

    def check_order(self, cmd: SubmitOrder, price: float) -> str | None:
        """Why the balances cannot cover ``cmd`` counting the working orders, or ``None``.

        ``price`` is the order's price for a limit (its limit), else the best known estimate
        of where it fills (the last price; NaN if none).
        """

    def check_fill(self, order: Any, quantity: float, price: float, fee: float) -> str | None:
        """Why the venue cannot fill ``quantity`` of ``order`` at ``price`` now, or ``None``."""

    def balance(self, asset: str) -> float:
        """Total balance of ``asset`` (0 if none)."""

    def locked(self, asset: str) -> float:
        """Part of ``asset``'s balance held by working orders."""

    def free(self, asset: str) -> float:
        """``balance - locked``."""

    def balances(self) -> dict[str, float]:
        """``asset -> total balance`` of every asset the account knows, in a fixed order."""


def working_quantity(
    orders: Iterable[Any], oco: Mapping[str, tuple[str, ...]], buy: bool, exclude: str, *, plain: bool = False
) -> float:
    """Signed remaining quantity of the working ``orders`` on one side (``buy``), except order ``exclude`` and its OCO
    group; an OCO group (``oco``: :meth:`Account.oco_groups`) counts once, as its largest member. The correctly
    rounded sum (:mod:`tradebus.account.exact`): :meth:`WorkingLeaves.total` keeps it to the same bits.

    Parameters
    ----------
    orders
        Working orders (``client_order_id``, ``side``, ``leaves_qty``, ``reduce_only``).
    oco
        ``client order id -> the ids of its OCO group``.
    buy
        The side counted.
    exclude
        An order (and its group) left out: the one being checked.
    plain
        Count only the orders that are not reduce-only.
    """
    skip = oco.get(exclude, (exclude,)) if oco else (exclude,)
    total = 0
    groups: dict[tuple[str, ...], float] = {}
    for order in orders:
        if (order.side > 0) != buy or order.client_order_id in skip or (plain and order.reduce_only):
            continue
        group = oco.get(order.client_order_id) if oco else None
        if group is None:
            total += exact(order.leaves_qty)
        elif order.leaves_qty > groups.get(group, 0.0):
            groups[group] = order.leaves_qty
    for leaves in groups.values():
        total += exact(leaves)
    quantity = rounded(total)
    return quantity if buy else -quantity


class KeptTotals:
    """Running totals of the working orders, kept from :data:`TRACK_FROM` of them and dropped at :data:`UNTRACK_AT`.

    A keeper sets ``_live`` (keeping now), ``_count()`` (how many orders work) and ``_working()`` (them), and
    defines ``_count_order(order)`` (count an order as it is now) and ``_forget()`` (drop every total).
    """

    __slots__ = ()
    _live: bool
    _count: Callable[[], int]
    _working: Callable[[], Iterable[Any]]
    _count_order: Callable[[Any], None]
    _forget: Callable[[], None]

    def order_changed(self, order: Any) -> None:
        """Count ``order`` as it is now (nothing once it no longer works), while the totals are kept."""
        if not self._live:
            if self._count() >= TRACK_FROM:
                self._live = True
                for working in self._working():
                    self._count_order(working)
            return
        self._count_order(order)
        if self._count() <= UNTRACK_AT:
            self._live = False
            self._forget()


class WorkingLeaves(KeptTotals):
    """The remaining quantity of the working orders per instrument and side, kept exactly as they change.

    The order manager calls :meth:`~KeptTotals.order_changed` after each change of an order that is or was working
    (while at least :data:`UNTRACK_AT` work);
    :meth:`total` is then :func:`working_quantity` over the working orders (``open_orders``: the
    manager's, by client order id) without a walk over them once :data:`TRACK_FROM` work: the sums
    are exact (:mod:`tradebus.account.exact`), so they equal a fresh sum to the last bit. So is
    :meth:`highest_quote`, the highest limit or trigger of an instrument's working orders.
    """

    __slots__ = (
        "_by_instrument", "_count", "_live", "_open", "_quoted", "_quotes", "_seq", "_sums", "_terms", "_working",
    )  # fmt: skip

    def __init__(self, open_orders: Mapping[str, Any]) -> None:
        self._open = open_orders
        self._count = open_orders.__len__
        self._working = open_orders.values
        self._live = False  # keeping the totals (TRACK_FROM)
        # (instrument_id, buy) -> [exact leaves of its working orders, of those not reduce-only]
        self._sums: dict[tuple[str, bool], list[int]] = {}
        # client order id -> ((instrument_id, buy), exact leaves, leaves, not reduce-only)
        self._terms: dict[str, tuple[tuple[str, bool], int, float, bool]] = {}
        # instrument_id -> {client order id: when it became working}, in the order the orders became working
        self._by_instrument: dict[str, dict[str, int]] = {}
        self._seq = 0
        # Kept only for the instruments highest_quote was asked about (an instrument not priced yet: rare), from
        # then on: instrument_id -> heap of (-quote, client order id) of its working orders, an entry stale once its
        # order's quote is another or it no longer works; client order id -> its quote (_quote), if it has one.
        self._quoted: dict[str, float] = {}
        self._quotes: dict[str, list[tuple[float, str]]] = {}

    def _forget(self) -> None:
        self._sums.clear()
        self._terms.clear()
        self._by_instrument.clear()
        self._quoted.clear()
        self._quotes.clear()

    def _count_order(self, order: Any) -> None:
        coid = order.client_order_id
        old = self._terms.pop(coid, None)
        if old is not None:
            sums = self._sums[old[0]]
            sums[0] -= old[1]
            if old[3]:
                sums[1] -= old[1]
        iid = order.instrument_id
        if not order.is_open:
            working = self._by_instrument.get(iid)
            if working is not None and working.pop(coid, None) is not None and not working:
                del self._by_instrument[iid]
            self._quoted.pop(coid, None)
            return
        heap = self._quotes.get(iid)
        if heap is not None:
            self._requote(iid, coid, _quote(order), heap)
        leaves = order.leaves_qty
        key = (iid, order.side > 0)
        n = exact(leaves)
        plain = not order.reduce_only
        sums = self._sums.get(key)
        if sums is None:
            sums = self._sums[key] = [0, 0]
        sums[0] += n
        if plain:
            sums[1] += n
        self._terms[coid] = (key, n, leaves, plain)
        working = self._by_instrument.setdefault(iid, {})
        if coid not in working:
            self._seq += 1
            working[coid] = self._seq

    def _requote(self, iid: str, coid: str, quote: float, heap: list[tuple[float, str]]) -> None:
        """Keep working order ``coid`` of ``iid`` at ``quote`` (NaN: none) in ``heap``, the quotes of ``iid``."""
        quoted = self._quoted
        if quote == quoted.get(coid):
            return
        if quote != quote:
            quoted.pop(coid, None)
            return
        quoted[coid] = quote
        working = self._by_instrument.get(iid, {})
        if len(heap) > 2 * len(working) + 32:  # mostly stale: rebuilt from the orders
            heap[:] = [(-quoted[c], c) for c in working if c in quoted and c != coid]
            heapq.heapify(heap)
        heapq.heappush(heap, (-quote, coid))

    def total(
        self,
        instruments: Collection[str],
        oco: Mapping[str, tuple[str, ...]],
        buy: bool,
        exclude: str,
        *,
        plain: bool = False,
        groups: dict[tuple[tuple[str, ...], bool], tuple[float, int, str, int]] | None = None,
    ) -> float:
        """:func:`working_quantity` of the working orders of ``instruments`` (same arguments otherwise).

        ``groups``: the OCO groups are left out of the total and noted there instead, each once per side across
        calls, ``(group, buy) -> (its largest member's leaves, when that member became working, its instrument,
        when its first member with leaves became working)``; of members equally large, the first to work.
        """
        if not self._live:
            return self._fresh_total(instruments, oco, buy, exclude, plain, groups)
        index = 1 if plain else 0
        total = 0
        sums = self._sums
        for iid in instruments:
            side = sums.get((iid, buy))
            if side is not None:
                total += side[index]
        terms = self._terms
        skip = oco.get(exclude, (exclude,)) if oco else (exclude,)
        for coid in skip:
            term = terms.get(coid)
            if term is not None and term[0][1] == buy and term[0][0] in instruments and (term[3] or not plain):
                total -= term[1]
        if oco:
            largest: dict[tuple[str, ...], float] = {}
            for coid, group in oco.items():
                term = terms.get(coid)
                if (
                    term is None
                    or coid in skip
                    or term[0][1] != buy
                    or term[0][0] not in instruments
                    or (plain and not term[3])
                ):
                    continue
                total -= term[1]
                leaves = term[2]
                if groups is not None:
                    iid = term[0][0]
                    _note_group(groups, (group, buy), leaves, self._by_instrument[iid][coid], iid)
                elif leaves > largest.get(group, 0.0):
                    largest[group] = leaves
            for leaves in largest.values():
                total += exact(leaves)
        quantity = rounded(total)
        return quantity if buy else -quantity

    def _fresh_total(
        self,
        instruments: Collection[str],
        oco: Mapping[str, tuple[str, ...]],
        buy: bool,
        exclude: str,
        plain: bool,
        groups: dict[tuple[tuple[str, ...], bool], tuple[float, int, str, int]] | None,
    ) -> float:
        """:meth:`total` summed over the working orders (few: the totals are not kept)."""
        if groups is None:
            orders = [order for order in self._open.values() if order.instrument_id in instruments]
            return working_quantity(orders, oco, buy, exclude, plain=plain)
        skip = oco.get(exclude, (exclude,)) if oco else (exclude,)
        total = 0
        for seq, order in enumerate(self._open.values(), 1):
            coid = order.client_order_id
            if order.instrument_id not in instruments or (order.side > 0) != buy or coid in skip:
                continue
            if plain and order.reduce_only:
                continue
            group = oco.get(coid) if oco else None
            if group is None:
                total += exact(order.leaves_qty)
            else:
                _note_group(groups, (group, buy), order.leaves_qty, seq, order.instrument_id)
        quantity = rounded(total)
        return quantity if buy else -quantity

    def leaves_of(self, client_order_id: str) -> float:
        """The remaining quantity of order ``client_order_id`` while it works (0.0 once it no longer does)."""
        order = self._open.get(client_order_id)
        return 0.0 if order is None else order.leaves_qty

    def highest_quote(self, instrument_id: str, skip: Collection[str]) -> float:
        """The highest limit (else trigger) of the working orders of ``instrument_id`` not in ``skip`` (-inf: none).

        What the risk gate values an instrument at before its first price. Once :data:`TRACK_FROM` orders work, a
        heap of the instrument's quotes, kept from the first time it is asked, gives it without a walk over the
        orders (the entries it passes over: those of ``skip``, and of orders whose quote changed or that no longer
        work).
        """
        if not self._live:
            highest = -_INF
            for order in self._open.values():
                if order.instrument_id == instrument_id and order.client_order_id not in skip:
                    quote = _quote(order)
                    if quote > highest:
                        highest = quote
            return highest
        quoted = self._quoted
        heap = self._quotes.get(instrument_id)
        if heap is None:  # kept from now on
            heap = self._quotes[instrument_id] = []
            for coid in self._by_instrument.get(instrument_id, ()):
                self._requote(instrument_id, coid, _quote(self._open[coid]), heap)
        while heap and quoted.get(heap[0][1]) != -heap[0][0]:
            heapq.heappop(heap)  # stale on top
        # the entries in order from the top (a heap of their places), up to the first that counts
        frontier = [(heap[0], 0)] if heap else []
        while frontier:
            (quote, coid), i = heapq.heappop(frontier)
            if coid not in skip and quoted.get(coid) == -quote:
                return -quote
            for child in (2 * i + 1, 2 * i + 2):
                if child < len(heap):
                    heapq.heappush(frontier, (heap[child], child))
        return -_INF

    def first_working(self, instrument_id: str, skip: Collection[str]) -> int:
        """When the first order of ``instrument_id`` still working and not in ``skip`` became working (0: none);
        orders that became working later have larger values."""
        if not self._live:
            for seq, order in enumerate(self._open.values(), 1):
                if order.instrument_id == instrument_id and order.client_order_id not in skip:
                    return seq
            return 0
        for coid, seq in self._by_instrument.get(instrument_id, {}).items():
            if coid not in skip:
                return seq
        return 0

    def instruments(self) -> Iterable[str]:
        """The instruments that have working orders."""
        if not self._live:
            return list(dict.fromkeys(order.instrument_id for order in self._open.values()))
        return self._by_instrument.keys()


def _quote(order: Any) -> float:
    """An order's limit, else its trigger (NaN: neither, a market order)."""
    price = order.price
    return price if price == price else order.trigger_price


def _note_group(
    groups: dict[tuple[tuple[str, ...], bool], tuple[float, int, str, int]],
    key: tuple[tuple[str, ...], bool],
    leaves: float,
    seq: int,
    instrument_id: str,
) -> None:
    """Note an OCO member of ``leaves`` that became working at ``seq`` in ``groups`` (:meth:`WorkingLeaves.total`)."""
    if leaves <= 0.0:
        return
    known = groups.get(key)
    if known is None:
        groups[key] = (leaves, seq, instrument_id, seq)
    elif leaves > known[0] or (leaves == known[0] and seq < known[1]):
        groups[key] = (leaves, seq, instrument_id, min(seq, known[3]))
    elif seq < known[3]:
        groups[key] = (*known[:3], seq)
