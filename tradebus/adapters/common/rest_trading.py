"""What the ccxt-based :class:`~tradebus.execution.live.TradingApi` of OKX and Bybit share.

:class:`CcxtTrading` sends one implicit (signed) ccxt endpoint at a time through
:meth:`CcxtTrading.call`: the request first takes its weight from the account's shared
:class:`~tradebus.adapters.common.ratelimit.WeightBudget`, and the answer feeds it back
(a 429 pauses every caller for ``Retry-After``). ccxt's own throttle is off. A failed request is
classified by the venue's :attr:`CcxtTrading.errors` (:meth:`~tradebus.adapters.common.venue_errors.VenueErrors.classify`:
:class:`~tradebus.execution.live.NoAnswer`, :class:`~tradebus.execution.live.RateLimited` or
:class:`~tradebus.execution.live.VenueRejected`, by ccxt's class, the HTTP status and the venue's error code).
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from ccxt.base.errors import BaseError

from tradebus.adapters.common.ratelimit import WeightBudget
from tradebus.adapters.common.venue_clock import VenueClock, resynced
from tradebus.adapters.common.venue_errors import VenueErrors
from tradebus.engine.instrument import Instrument
from tradebus.execution.live import TradingApi, VenueRejected
from tradebus.execution.orders import Order

__all__ = ["CcxtTrading", "decimal_text"]


def decimal_text(value: float, step: float) -> str:
    """``value``, a multiple of ``step`` up to float noise, as the plain decimal a venue takes.

    Both numbers are read as their shortest decimal (``repr``): the text is the multiple of
    ``step`` nearest ``value``, with as many decimals as ``step`` has (``1.75`` at a tick of
    ``0.25`` is ``"1.75"``, ``1e-05`` at a lot of ``1e-08`` is ``"0.00001000"``, ``120.0`` at
    ``10.0`` is ``"120"``), never in exponent form and without float noise.

    Parameters
    ----------
    value
        A price or quantity already rounded to the grid (``Instrument.round_price``, ``round_quantity``).
    step
        The grid: the instrument's tick or lot size (positive).
    """
    grid = Decimal(repr(step))
    places = Decimal(1).scaleb(min(int(grid.normalize().as_tuple().exponent), 0))
    steps = (Decimal(repr(value)) / grid).to_integral_value(ROUND_HALF_EVEN)
    return format((steps * grid).quantize(places), "f")


class CcxtTrading(TradingApi):
    """Base of the ccxt-based venue trading APIs (see the module docstring).

    Parameters
    ----------
    exchange
        The ccxt async exchange, its keys set and its URLs pointed at the venue (or an emulator).
    instruments
        ``instrument_id -> Instrument`` traded on this account.
    budget
        The account's shared weight budget.
    weights
        Weight of each implicit endpoint name (1 when absent).
    """

    #: The venue's error answers (its name in messages, its unknown-outcome and rate-limit codes).
    errors: VenueErrors = VenueErrors("")

    def __init__(self, exchange: Any, instruments: dict[str, Instrument], budget: WeightBudget, weights: dict[str, int]) -> None:
        self._ccxt = exchange
        self.instruments = instruments
        self.budget = budget
        self.weights = weights
        #: The response headers of the last request.
        self.last_headers: dict[str, str] = {}
        #: The account's id, when the venue reports it.
        self.account_id = ""
        #: This machine's clock as the venue takes it: stamps the signed requests and the user stream's login.
        self.venue_clock = VenueClock(self.errors.venue, exchange)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    async def call(self, name: str, params: dict[str, Any]) -> Any:
        """Send the implicit endpoint ``name`` with ``params`` (see the module docstring); refused for its timestamp, sent
        again after a measure of the venue's clock (:func:`~tradebus.adapters.common.venue_clock.resynced`)."""
        return await resynced(self.venue_clock, name, lambda: self._send(name, params), lambda: self.budget.acquire(1), self.refused)

    async def _send(self, name: str, params: dict[str, Any]) -> Any:
        budget = self.budget
        await budget.acquire(self.weights.get(name, 1))
        self._ccxt.last_response_headers = None
        status, code = 200, ""
        try:
            return await getattr(self._ccxt, name)(params)
        except BaseError as exc:
            error, status, code = self.errors.classify(exc, name)
            raise self.refused(error) from None
        finally:
            self.last_headers = dict(self._ccxt.last_response_headers or {})
            budget.observe(status, self.last_headers, code)

    def instrument(self, order: Order) -> Instrument:
        """The instrument of ``order`` (:class:`VenueRejected` if this account does not trade it)."""
        inst = self.instruments.get(order.instrument_id)
        if inst is None:
            raise VenueRejected(f"order {order.client_order_id}: {order.instrument_id} is not traded on this account")
        return inst

    async def close(self) -> None:
        """Close ccxt's HTTP session."""
        await self._ccxt.close()
