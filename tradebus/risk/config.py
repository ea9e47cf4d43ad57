"""Configuration of the pre-trade risk gate."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from tradebus.config.base import StrictModel


__all__ = ["LIMIT_RTOL", "RiskConfig", "notional_slack", "quantity_slack"]

#: Relative slack of a limit, in the gate and the breakers alike: a figure at the limit but for
#: float noise (105 / 100 - 1 > 0.05) is within it. An order's quantity, notional or exposure gets
#: at most half a lot's worth of it (:func:`quantity_slack`, :func:`notional_slack`).
LIMIT_RTOL = 1e-9


def quantity_slack(limit: float, lot: float) -> float:
    """The slack of a quantity compared with ``limit`` (an order's, a position, a holding): float noise, never a lot.

    ``LIMIT_RTOL`` of ``limit``, but at most half a ``lot``: quantities on the lot grid differ by a
    whole lot or not at all, and ``LIMIT_RTOL`` alone would let one lot of 1e-8 through on 20 BTC
    (``20 * 1e-9 = 2e-8``).

    Parameters
    ----------
    limit
        The quantity compared with (its sign does not matter).
    lot
        The instrument's lot size (``inf``: no lot known, ``LIMIT_RTOL`` alone).
    """
    return min(abs(limit) * LIMIT_RTOL, 0.5 * lot)


def notional_slack(limit: float, lot: float, unit_value: float) -> float:
    """The slack of a notional compared with ``limit`` (an order's, an exposure): float noise, never a lot's worth.

    :func:`quantity_slack` in money: ``LIMIT_RTOL`` of ``limit``, but at most half a lot's notional
    (``lot * unit_value``); ``LIMIT_RTOL`` alone would let one lot of 1e-8 at 100,000 through on a
    limit of 1,000,000 (``1e6 * 1e-9 = 1e-3``, the lot's notional).

    Parameters
    ----------
    limit
        The notional compared with.
    lot
        The instrument's lot size.
    unit_value
        The value of one unit of quantity in the limit's units: ``contract_size * price`` (over
        equity, of an exposure ratio).
    """
    return quantity_slack(limit, lot * unit_value)


class RiskConfig(StrictModel):
    """Limits checked on every order; every limit is optional (``None`` = off).

    Parameters
    ----------
    max_order_quantity
        Largest quantity of one order (of a modified order, its new quantity, the part already
        filled included).
    max_order_notional
        Largest ``quantity * contract_size * price`` of one order (price: the limit, else the
        trigger, else the last price; of a modified order, its new quantity at its new price).
    max_position
        Largest absolute position per instrument *after* the order and every working order
        on the same side would fill completely; of a cash-only (spot) instrument, the base asset
        held (coins of ``balances`` included), which the cash-only instruments trading it share.
    price_band_pct
        Largest distance, in percent, of a limit or trigger price from the last price.
    max_orders_per_window, order_rate_window_ns
        At most ``max_orders_per_window`` orders may pass the gate within any sliding window
        of ``order_rate_window_ns`` nanoseconds (default one second) on the run's clock.
    max_open_orders
        Largest number of open orders (a new order is denied when this many are open).
    max_gross_exposure
        Largest ``sum |position * contract_size * last price| / equity`` (2.0 = 200 %): an
        order that would raise it above the limit, counting working orders, is denied, and the
        ``gross_exposure`` breaker moves to REDUCING while marks keep it above. The position of
        the cash-only instruments trading one base asset is the asset held (coins of ``balances``
        included).
    max_drawdown_pct
        Equity drawdown from its peak, in percent, at which the breaker trips (in a kernel:
        evaluated once every price of a time is in, and before each order check).
    drawdown_action
        Trading state the breaker moves to: ``"halt"`` (HALTED) or ``"reduce"`` (REDUCING).
    max_daily_loss_pct, daily_loss_action
        Loss from the UTC day's start-of-day equity, in percent, at which the ``daily_loss``
        breaker trips, and the state it moves to.
    max_consecutive_losses, loss_streak_action
        Number of losing round trips in a row at which the ``loss_streak`` breaker trips, and
        the state it moves to.

    How each breaker trips and re-arms: :mod:`tradebus.risk.breakers`. ``order_rate_window_ns``
    and each ``*_action`` written without its limit are refused (they would change nothing),
    unless the limit is written too, as ``null``, with the setting at its default: the form of a
    dumped config, which spells every key out.
    """

    max_order_quantity: float | None = Field(default=None, gt=0)
    max_order_notional: float | None = Field(default=None, gt=0)
    max_position: float | None = Field(default=None, ge=0)
    price_band_pct: float | None = Field(default=None, gt=0)
    max_orders_per_window: int | None = Field(default=None, gt=0)
    order_rate_window_ns: int = Field(default=1_000_000_000, gt=0)
    max_open_orders: int | None = Field(default=None, ge=0)
    max_drawdown_pct: float | None = Field(default=None, gt=0, le=100)
    drawdown_action: Literal["halt", "reduce"] = "halt"
    max_gross_exposure: float | None = Field(default=None, gt=0)
    max_daily_loss_pct: float | None = Field(default=None, gt=0, le=100)
    daily_loss_action: Literal["halt", "reduce"] = "halt"
    max_consecutive_losses: int | None = Field(default=None, ge=1)
    loss_streak_action: Literal["halt", "reduce"] = "halt"

    @model_validator(mode="after")
    def _refuse_settings_without_their_limit(self) -> Self:
        """A setting that acts only with a limit, written without that limit, is an error.

        (A dumped config, which spells every key out, its limits ``null`` and their settings at
        their defaults, reloads.)
        """
        written = self.model_fields_set
        for setting, limit in _NEEDS_LIMIT:
            if getattr(self, limit) is not None:
                continue
            default = type(self).model_fields[setting].default
            if getattr(self, setting) != default or (setting in written and limit not in written):
                raise ValueError(
                    f"{setting} {getattr(self, setting)!r} acts only with {limit}, which is not set "
                    f"(set {limit} or remove {setting})"
                )
        return self

    @property
    def breakers_on_marks(self) -> bool:
        """Whether a breaker evaluates marks: drawdown, daily loss or gross exposure."""
        return (
            self.max_drawdown_pct is not None
            or self.max_daily_loss_pct is not None
            or self.max_gross_exposure is not None
        )


#: (setting, the limit it acts with): the order rate's window, and each breaker's action.
_NEEDS_LIMIT = (
    ("order_rate_window_ns", "max_orders_per_window"),
    ("drawdown_action", "max_drawdown_pct"),
    ("daily_loss_action", "max_daily_loss_pct"),
    ("loss_streak_action", "max_consecutive_losses"),
)
