"""What a venue's error answer means, as ccxt raises it: :class:`VenueErrors`.

Every ccxt-based :class:`~tradebus.execution.live.TradingApi` (Binance spot and USD-M, OKX,
Bybit) sends a request and hands the ccxt exception of a failed one to
:meth:`VenueErrors.classify`, which answers the error to raise and what the account's
:class:`~tradebus.adapters.common.ratelimit.WeightBudget` observes of it. A venue declares only
its data: its name, its error codes that leave the outcome unknown or refuse for a rate limit,
and the HTTP statuses that refuse for a rate limit whatever ccxt makes of them.

Read from the exception's message (ccxt writes ``<id> <body>`` from a venue's ``handle_errors``,
``<id> <method> <url> <status> <reason> <body>`` from an HTTP status; Binance's own ``<id> <status>
<reason> <body>`` for 418 and 429):

- the HTTP status, when the message carries one (0 when not);
- the venue's error code (:func:`error_code`), as text whatever the JSON's type (Binance's
  ``-2013`` int, OKX's ``"51603"``, Bybit's ``retCode`` ``10002``), ``""`` when there is none.

The classification, in order (the code decides, whatever ccxt class it maps a code to: ccxt maps
some codes by the request's URL, Binance spot's ``-2021`` to ``BadResponse``, OKX's ``51410`` to
``CancelPending``):

1. ccxt's ``RateLimitExceeded``, a status of :attr:`VenueErrors.rate_limit_statuses` or a code of
   :attr:`VenueErrors.rate_limit_codes`: :class:`~tradebus.execution.live.RateLimited`; the budget
   observes the status, 429 if the message has none (a code alone pauses the account as a 429 does).
2. ccxt's ``NetworkError`` family (timeouts, dropped connections, 5xx, busy codes):
   :class:`~tradebus.execution.live.NoAnswer`, unless it has a code not among
   :attr:`VenueErrors.unknown_outcome_codes` (ccxt's ``InvalidNonce`` of Binance ``-1021``, Bybit
   ``10002``, OKX ``50102``: the request's time outside its window, refused unprocessed):
   :class:`~tradebus.execution.live.VenueRejected`, observed as a 400.
3. Any other: a code of :attr:`VenueErrors.unknown_outcome_codes`, or no code on ccxt's
   ``OperationFailed``, is :class:`~tradebus.execution.live.NoAnswer` (observed as 0); a code of
   :attr:`VenueErrors.busy_codes` (Bybit ``110079``: the order is being processed, try again later)
   :class:`~tradebus.execution.live.OrderBusy` (observed as a 400); a code of
   :attr:`VenueErrors.cancel_pending_codes` (OKX ``51410``: the order is already being canceled)
   :class:`~tradebus.execution.live.CancelPending` (observed as a 400); a code of
   :attr:`VenueErrors.credential_codes` (the key, its signature or passphrase refused)
   :class:`~tradebus.execution.live.CredentialsRefused`; any other
   :class:`~tradebus.execution.live.VenueRejected` (both observed as a 400).

A refusal whose code is in :attr:`VenueErrors.advice` (a key the venue refuses, a clock off the venue's, an order
breaking a symbol's filters), or whose message holds a text of :attr:`VenueErrors.message_advice` (a code that
stands for several refusals, or one ccxt drops from the message), ends with what to do about it.

Messages carry the request's endpoint name and never the request's query (it may carry a signature).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ccxt.base.errors import BaseError, NetworkError, OperationFailed, RateLimitExceeded

from tradebus.adapters.common.venue_clock import TimestampRefused
from tradebus.execution.live import AccountRefused, CancelPending, CredentialsRefused, NoAnswer, OrderBusy, RateLimited, VenueRejected

__all__ = ["Classified", "VenueErrors", "error_body", "error_code", "redacted"]

_QUERY = re.compile(r"\?[^\s{]*")
#: The HTTP status in a ccxt error's message: ``binance 429 Too Many Requests ...`` or ``bybit POST <url> 403 Forbidden ...``.
_STATUS = re.compile(r"^\w+ (?:[A-Z]+ \S+ )?(\d{3}) ")
#: Keys of a venue's error code in its answer's JSON: OKX's per-order ``sCode``, then the envelope's (Binance, OKX
#: ``code``; Bybit ``retCode``).
_CODE_KEYS = ("sCode", "code", "retCode")


def error_body(exc: Exception) -> dict[str, Any]:
    """The venue's JSON answer in a ccxt exception's message (``binance {"code":-2013,...}``); ``{}`` if there is none."""
    text = str(exc)
    start = text.find("{")
    if start < 0:
        return {}
    try:
        body = json.loads(text[start:])
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def error_code(exc: Exception) -> str:
    """The venue's error code in a ccxt exception's message, as text (``okx {"code":"1","data":[{"sCode":"51603"}]}``).

    A per-order code (OKX ``sCode`` of a ``data`` row) wins over the envelope's; ``""`` when there is none.
    """
    body = error_body(exc)
    rows = body.get("data")
    for row in rows if isinstance(rows, list) else ():
        if isinstance(row, dict) and str(row.get("sCode", "0")) != "0":
            return str(row["sCode"])
    for key in _CODE_KEYS:
        if key in body:
            return str(body[key])
    return ""


def redacted(exc: Exception) -> str:
    """A ccxt error message without the request URL's query."""
    return _QUERY.sub("?...", str(exc))


class Classified(NamedTuple):
    """What a failed request means: the error to raise, and what the account's budget observes
    (:meth:`~tradebus.adapters.common.ratelimit.WeightBudget.observe`)."""

    #: The error the request raises.
    error: NoAnswer | RateLimited | VenueRejected
    #: The HTTP status the budget observes (429 or the ban status pause the account).
    status: int
    #: The venue's error code (``""``: none), named in the budget's block reason.
    code: str


@dataclass(frozen=True, slots=True)
class VenueErrors:
    """A venue's error answers as data, and their classification (see the module docstring).

    Parameters
    ----------
    venue
        The venue's name in messages.
    unknown_outcome_codes
        Error codes of an answer that leaves the outcome unknown (:class:`NoAnswer`: the order is queried).
    rate_limit_codes
        Error codes of a request refused unprocessed for a rate limit (:class:`RateLimited`: the budget pauses),
        beyond those ccxt raises as ``RateLimitExceeded``.
    rate_limit_statuses
        HTTP statuses of a request refused for a rate limit or an IP ban, whatever ccxt raises
        (Binance's 418 is ccxt's ``DDoSProtection``).
    busy_codes
        Error codes of a cancel or amend refused because the venue is still processing the order, "try again later"
        (:class:`OrderBusy`: the live venue sends it again).
    cancel_pending_codes
        Error codes of a cancel refused because the venue is already canceling the order (:class:`CancelPending`:
        an earlier cancel is being done; the live venue waits for its outcome). Binance cancels at once and Bybit
        answers a second cancel "busy" (``110079``) or "not found" (the order closed): neither has one.
    clock_codes
        Error codes of a signed request refused unprocessed for its timestamp (Binance ``-1021``, OKX ``50102``, Bybit
        ``10002``): :class:`~tradebus.adapters.common.venue_clock.TimestampRefused` (observed as a 400); the trading
        API measures the venue's clock and sends the request again (:func:`~tradebus.adapters.common.venue_clock.resynced`).
    credential_codes
        Error codes of a request refused for the account's credentials (:class:`CredentialsRefused`: the key, its
        signature, its passphrase, its environment or IP restriction), a configuration problem.
    account_codes
        Error codes of a request refused for the account itself, whatever the request (:class:`AccountRefused`: the
        account blocked or restricted at the venue), which the user settles at the venue.
    advice
        What to do about a refusal, by error code: appended to the :class:`VenueRejected` message of a code
        in it (the operator reads the message at start-up and in an order's rejection).
    message_advice
        What to do about a refusal whose message holds the text of a key (when its code has no :attr:`advice`):
        Binance spot's ``-2010`` stands for any refused new order, and ccxt keeps only its message.
    """

    venue: str
    unknown_outcome_codes: frozenset[str] = frozenset()
    rate_limit_codes: frozenset[str] = frozenset()
    rate_limit_statuses: frozenset[int] = frozenset()
    busy_codes: frozenset[str] = frozenset()
    cancel_pending_codes: frozenset[str] = frozenset()
    clock_codes: frozenset[str] = frozenset()
    credential_codes: frozenset[str] = frozenset()
    account_codes: frozenset[str] = frozenset()
    advice: Mapping[str, str] = field(default_factory=dict)
    message_advice: Mapping[str, str] = field(default_factory=dict)

    def _rejected(self, message: str, code: str) -> VenueRejected:
        advice = self.advice.get(code) or next((a for text, a in self.message_advice.items() if text in message), None)
        refusal = (
            AccountRefused if code in self.account_codes else CredentialsRefused if code in self.credential_codes
            else TimestampRefused if code in self.clock_codes else VenueRejected
        )
        return refusal(f"{message}; {advice}" if advice else message)

    def classify(self, exc: BaseError, request: str) -> Classified:
        """What the ccxt exception ``exc`` of the request ``request`` (an endpoint name) means."""
        found = _STATUS.search(str(exc))
        status, code = (int(found.group(1)) if found else 0), error_code(exc)
        text = redacted(exc)
        if isinstance(exc, RateLimitExceeded) or status in self.rate_limit_statuses or code in self.rate_limit_codes:
            status = status or 429
            return Classified(RateLimited(f"{request}: {self.venue} rate limit {code or status}: {text}"), status, code)
        if isinstance(exc, NetworkError):
            if code and code not in self.unknown_outcome_codes:
                return Classified(self._rejected(f"{request}: {self.venue} error {code}: {text}", code), 400, code)
            return Classified(NoAnswer(f"{request}: {type(exc).__name__}: {text}"), status, code)
        if code in self.unknown_outcome_codes:
            return Classified(NoAnswer(f"{request}: {self.venue} error {code}: {text}"), 0, code)
        if code in self.busy_codes:
            return Classified(OrderBusy(f"{request}: {self.venue} error {code} (busy with the order): {text}"), 400, code)
        if code in self.cancel_pending_codes:
            return Classified(CancelPending(f"{request}: {self.venue} error {code} (already canceling the order): {text}"), 400, code)
        if not code and isinstance(exc, OperationFailed):
            return Classified(NoAnswer(f"{request}: {type(exc).__name__}: {text}"), 0, code)
        what = f"{self.venue} error {code}" if code else type(exc).__name__
        return Classified(self._rejected(f"{request}: {what}: {text}", code), 400, code)
