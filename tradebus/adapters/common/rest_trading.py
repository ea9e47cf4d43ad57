"""What the ccxt-based :class:`~tradebus.execution.live.TradingApi` of OKX and Bybit share.

:class:`CcxtTrading` sends one implicit (signed) ccxt endpoint at a time through
:meth:`CcxtTrading.call`: the request first takes its weight from the account's shared
:class:`~tradebus.adapters.common.ratelimit.WeightBudget`, and the answer feeds it back
(a 429 pauses every caller for ``Retry-After``). ccxt's own throttle is off. Errors:
ccxt's ``NetworkError`` family (timeouts, dropped connections, 5xx, the venues'
"system busy" codes) is :class:`~tradebus.execution.live.NoAnswer`, unless the answer has a venue code that is not
one of the venue's :attr:`CcxtTrading.unknown_outcome_codes` (ccxt maps Bybit's ``10002`` and OKX's ``50102``, the
request's timestamp outside its window, refused unprocessed, to its ``InvalidNonce``):
:class:`~tradebus.execution.live.VenueRejected` with that code; its ``RateLimitExceeded``
(HTTP 429, OKX ``50011``, Bybit ``10006``: refused unprocessed; Bybit's IP ban, HTTP 403, which pauses the
budget as its ``ban_status``) is
:class:`~tradebus.execution.live.RateLimited`; any other answer with a venue error code is classified
by its code, whatever ccxt class it arrives as: a code of the venue's :attr:`CcxtTrading.rate_limit_codes`
(ccxt maps Bybit's ``429``, "high server load, please retry", and OKX's ``50061``, the sub-account's
limit, to a plain ``ExchangeError``) is :class:`~tradebus.execution.live.RateLimited` and pauses the
account's budget as a 429 does, a code of the venue's
:attr:`CcxtTrading.unknown_outcome_codes` (server error, timeout, service restarting: ccxt maps Bybit's
``10016`` to a plain ``ExchangeError``) is :class:`~tradebus.execution.live.NoAnswer`, a code of the venue's
:attr:`CcxtTrading.busy_codes` (Bybit ``110079``: the order is being processed, try again later) is
:class:`~tradebus.execution.live.OrderBusy`, any other
:class:`~tradebus.execution.live.VenueRejected` with that code (:func:`error_code`; OKX ``51410``, a cancel
of an order being canceled: ccxt's ``CancelPending``); ccxt's ``OperationFailed`` without a code is
:class:`~tradebus.execution.live.NoAnswer`. Messages never carry the request's query (it may carry a signature).
"""

from __future__ import annotations

import json
import re
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from ccxt.base.errors import BaseError, NetworkError, OperationFailed, RateLimitExceeded

from tradebus.adapters.common.ratelimit import WeightBudget
from tradebus.engine.instrument import Instrument
from tradebus.execution.live import NoAnswer, OrderBusy, RateLimited, TradingApi, VenueRejected
from tradebus.execution.orders import Order

__all__ = ["CcxtTrading", "decimal_text", "error_code"]

_QUERY = re.compile(r"\?[^\s{]*")
#: The HTTP status in a ccxt error's message: ``okx 429 Too Many Requests ...`` or ``bybit POST <url> 403 Forbidden ...``.
_STATUS = re.compile(r"^\w+ (?:[A-Z]+ \S+ )?(\d{3}) ")
_CODE_KEYS = ("sCode", "code", "retCode")


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


def error_code(exc: Exception) -> str:
    """The venue's error code in a ccxt exception's message (``okx {"code":"1","data":[{"sCode":"51603"}]}``).

    A per-order code (OKX ``sCode``) wins over the envelope's; ``""`` when there is none.
    """
    text = str(exc)
    start = text.find("{")
    if start < 0:
        return ""
    try:
        body = json.loads(text[start:])
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    for row in body.get("data") or []:
        if isinstance(row, dict) and str(row.get("sCode", "0")) != "0":
            return str(row["sCode"])
    for key in _CODE_KEYS:
        if key in body:
            return str(body[key])
    return ""


def redacted(exc: Exception) -> str:
    """A ccxt error message without the request URL's query."""
    return _QUERY.sub("?...", str(exc))


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

    #: The venue's name in messages.
    venue = ""
    #: The venue's error codes of an answer that leaves the outcome unknown (:class:`NoAnswer`: the order is queried).
    unknown_outcome_codes: frozenset[str] = frozenset()
    #: The venue's error codes of a request refused unprocessed for a rate limit (:class:`RateLimited`: the budget pauses).
    rate_limit_codes: frozenset[str] = frozenset()
    #: The venue's error codes of a cancel or amend refused because the venue is still processing the order, "try again
    #: later" (:class:`OrderBusy`: the live venue sends it again).
    busy_codes: frozenset[str] = frozenset()

    def __init__(self, exchange: Any, instruments: dict[str, Instrument], budget: WeightBudget, weights: dict[str, int]) -> None:
        self._ccxt = exchange
        self.instruments = instruments
        self.budget = budget
        self.weights = weights
        #: The response headers of the last request.
        self.last_headers: dict[str, str] = {}
        #: The account's id, when the venue reports it.
        self.account_id = ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    async def call(self, name: str, params: dict[str, Any]) -> Any:
        """Send the implicit endpoint ``name`` with ``params`` (see the module docstring)."""
        budget = self.budget
        await budget.acquire(self.weights.get(name, 1))
        self._ccxt.last_response_headers = None
        status, code = 200, ""
        try:
            return await getattr(self._ccxt, name)(params)
        except RateLimitExceeded as exc:
            found = _STATUS.search(str(exc))
            status, code = (int(found.group(1)) if found else 429), error_code(exc)
            raise RateLimited(f"{name}: {self.venue} rate limit {code or status}: {redacted(exc)}") from None
        except NetworkError as exc:
            found = _STATUS.search(str(exc))
            status, code = (int(found.group(1)) if found else 0), error_code(exc)
            if code and code not in self.unknown_outcome_codes:  # Bybit 10002, OKX 50102 (timestamp expired): ccxt's InvalidNonce
                status = 400
                raise VenueRejected(f"{name}: {self.venue} error {code}: {redacted(exc)}") from None
            raise NoAnswer(f"{name}: {type(exc).__name__}: {redacted(exc)}") from None
        except BaseError as exc:  # the code decides, whatever ccxt class it maps it to (OKX 51410: CancelPending; Bybit 10016: ExchangeError)
            code = error_code(exc)
            if code in self.rate_limit_codes:
                status = 429
                raise RateLimited(f"{name}: {self.venue} rate limit {code}: {redacted(exc)}") from None
            if code in self.unknown_outcome_codes:
                status = 0
                raise NoAnswer(f"{name}: {self.venue} error {code}: {redacted(exc)}") from None
            status = 400
            if code in self.busy_codes:
                raise OrderBusy(f"{name}: {self.venue} error {code} (busy with the order): {redacted(exc)}") from None
            if not code and isinstance(exc, OperationFailed):
                status = 0
                raise NoAnswer(f"{name}: {type(exc).__name__}: {redacted(exc)}") from None
            raise VenueRejected(f"{name}: {self.venue} error {code}: {redacted(exc)}") from None
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
