"""The :class:`Account` protocol: what the risk gate, the venue and the portfolio ask of an account."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from tradebus.engine.messages import OrderFilled, SubmitOrder

__all__ = ["Account", "working_quantity"]


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
        ``price(instrument_id)`` the last price (NaN if none).
        """

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
    group; an OCO group (``oco``: :meth:`Account.oco_groups`) counts once, as its largest member.

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
    total = 0.0
    groups: dict[tuple[str, ...], float] = {}
    for order in orders:
        if (order.side > 0) != buy or order.client_order_id in skip or (plain and order.reduce_only):
            continue
        group = oco.get(order.client_order_id) if oco else None
        if group is None:
            total += order.leaves_qty
        elif order.leaves_qty > groups.get(group, 0.0):
            groups[group] = order.leaves_qty
    total += sum(groups.values())
    return total if buy else -total
