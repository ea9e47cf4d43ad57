"""Every venue's error answers through ccxt's own error handling, then :meth:`VenueErrors.classify`: one table.

Each row is an HTTP answer as the venue sends it. ccxt turns it into its exception as its ``fetch`` does
(the exchange's ``handle_errors``, then ``handle_http_status_code``; a transport failure as
``<id> <method> <url>``), so the message formats and the classes (some chosen by the request's URL) are
ccxt's own. A new venue is one ``VenueErrors`` in its package and its rows here.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

import ccxt.async_support as ccxt_async
import pytest
from ccxt.base.errors import BaseError, ExchangeNotAvailable, RequestTimeout

from tradebus.adapters.binance.trading import BinanceFuturesTrading, BinanceTrading
from tradebus.adapters.bybit.trading import BybitTrading
from tradebus.adapters.common.venue_clock import TimestampRefused
from tradebus.adapters.common.venue_errors import VenueErrors
from tradebus.adapters.okx.trading import OkxTrading
from tradebus.execution.live import AccountRefused, CancelPending, CredentialsRefused, NoAnswer, OrderBusy, RateLimited, VenueRejected

LOCAL = "https://127.0.0.1:8443"
SPOT = "https://api.binance.com/api/v3/order"
SPOT_LOCAL = f"{LOCAL}/api/v3/order"
USDM = "https://fapi.binance.com/fapi/v1/order"
OKX = f"{LOCAL}/api/v5/trade/order"
BYBIT = f"{LOCAL}/v5/order/create"
_VENUES: dict[str, tuple[VenueErrors, type[Any]]] = {
    "binance": (BinanceTrading.errors, ccxt_async.binance),
    "binanceusdm": (BinanceFuturesTrading.errors, ccxt_async.binanceusdm),
    "okx": (OkxTrading.errors, ccxt_async.okx),
    "bybit": (BybitTrading.errors, ccxt_async.bybit),
}


def _bn(code: int, msg: str) -> str:
    return json.dumps({"code": code, "msg": msg})


def _okx(code: str, s_code: str = "") -> str:
    data = [{"clOrdId": "c1", "ordId": "", "sCode": s_code, "sMsg": "refused"}] if s_code else []
    return json.dumps({"code": code, "msg": "" if s_code else "refused", "data": data})


def _bybit(code: int) -> str:
    return json.dumps({"retCode": code, "retMsg": "refused", "result": {}, "retExtInfo": {}, "time": 1})


#: (venue, HTTP status, URL, body or None for no answer) -> (error, status the budget observes, code).
CASES: list[tuple[str, str, int, str, str | None, type[Exception], int, str]] = [
    # Binance spot: ccxt raises 418/429 itself as DDoSProtection with the status in its message.
    ("binance-429", "binance", 429, SPOT, _bn(-1003, "Too much request weight used."), RateLimited, 429, "-1003"),
    ("binance-418-ban", "binance", 418, SPOT, _bn(-1003, "Way too many requests; IP banned."), RateLimited, 418, "-1003"),
    ("binance-1015-no-429", "binance", 400, SPOT_LOCAL, _bn(-1015, "Too many new orders."), RateLimited, 429, "-1015"),
    ("binance-1021-nonce", "binance", 400, SPOT, _bn(-1021, "Timestamp outside of the recvWindow."), TimestampRefused, 400, "-1021"),
    ("binance-1008-venue-url", "binance", 503, SPOT, _bn(-1008, "Server is currently overloaded."), NoAnswer, 0, "-1008"),
    ("binance-1008-other-url", "binance", 503, SPOT_LOCAL, _bn(-1008, "Server is currently overloaded."), NoAnswer, 0, "-1008"),
    ("binance-1004-busy", "binance", 503, SPOT_LOCAL, _bn(-1004, "Server is busy."), NoAnswer, 0, "-1004"),
    ("binance-1000-unknown", "binance", 500, SPOT_LOCAL, _bn(-1000, "An unknown error occurred."), NoAnswer, 0, "-1000"),
    ("binance-2021-bad-response", "binance", 409, SPOT, _bn(-2021, "Order cancel-replace partially failed."), VenueRejected, 400, "-2021"),
    ("binance-2013-not-found", "binance", 400, SPOT, _bn(-2013, "Order does not exist."), VenueRejected, 400, "-2013"),
    ("binance-2010-by-message", "binance", 400, SPOT_LOCAL, _bn(-2010, "Account has insufficient balance for requested action."), VenueRejected, 400, ""),
    ("binance-abnormality-by-message", "binance", 500, SPOT_LOCAL, _bn(-1000, "System abnormality"), NoAnswer, 0, ""),
    ("binance-503-html", "binance", 503, f"{SPOT_LOCAL}?signature=secret", "<html>busy</html>", NoAnswer, 503, ""),
    ("binance-timeout", "binance", 0, f"{SPOT_LOCAL}?signature=secret", None, NoAnswer, 0, ""),
    # Binance USD-M: -1004 is not one of its unknown-outcome codes.
    ("usdm-1008", "binanceusdm", 503, USDM, _bn(-1008, "Server is currently overloaded."), NoAnswer, 0, "-1008"),
    ("usdm-1004", "binanceusdm", 400, USDM, _bn(-1004, "Server is busy."), VenueRejected, 400, "-1004"),
    ("usdm-2021-would-trigger", "binanceusdm", 400, USDM, _bn(-2021, "Order would immediately trigger."), VenueRejected, 400, "-2021"),
    ("usdm-1003-429", "binanceusdm", 429, USDM, _bn(-1003, "Too many requests."), RateLimited, 429, "-1003"),
    # OKX: string codes, an order's sCode before the envelope's.
    ("okx-50011", "okx", 429, OKX, _okx("50011"), RateLimited, 429, "50011"),
    ("okx-429-without-code", "okx", 429, OKX, "<html>Too Many Requests</html>", RateLimited, 429, ""),
    ("okx-50061-exchange-error", "okx", 200, OKX, _okx("50061"), RateLimited, 429, "50061"),
    ("okx-50102-nonce", "okx", 401, OKX, _okx("50102"), TimestampRefused, 400, "50102"),
    ("okx-50001-unavailable", "okx", 503, OKX, _okx("50001"), NoAnswer, 0, "50001"),
    ("okx-50013-busy", "okx", 200, OKX, _okx("50013"), NoAnswer, 0, "50013"),
    ("okx-51149-timed-out", "okx", 200, OKX, _okx("1", "51149"), NoAnswer, 0, "51149"),
    ("okx-51410-cancel-pending", "okx", 200, OKX, _okx("1", "51410"), CancelPending, 400, "51410"),
    ("okx-51603-not-found", "okx", 200, OKX, _okx("1", "51603"), VenueRejected, 400, "51603"),
    ("okx-502-html", "okx", 502, f"{OKX}?x=secret", "<html>bad gateway</html>", NoAnswer, 502, ""),
    ("okx-timeout", "okx", 0, OKX, None, NoAnswer, 0, ""),
    # Bybit: retCode in an HTTP 200; the IP ban a bare 403.
    ("bybit-10006", "bybit", 200, BYBIT, _bybit(10006), RateLimited, 429, "10006"),
    ("bybit-10018", "bybit", 200, BYBIT, _bybit(10018), RateLimited, 429, "10018"),
    ("bybit-429-high-load", "bybit", 200, BYBIT, _bybit(429), RateLimited, 429, "429"),
    ("bybit-403-ban", "bybit", 403, BYBIT, "access too frequent", RateLimited, 403, ""),
    ("bybit-10002-nonce", "bybit", 200, BYBIT, _bybit(10002), TimestampRefused, 400, "10002"),
    ("bybit-10016-server-error", "bybit", 200, BYBIT, _bybit(10016), NoAnswer, 0, "10016"),
    ("bybit-10000-timeout", "bybit", 200, BYBIT, _bybit(10000), NoAnswer, 0, "10000"),
    ("bybit-170213-not-found", "bybit", 200, BYBIT, _bybit(170213), VenueRejected, 400, "170213"),
    ("bybit-110079-busy", "bybit", 200, BYBIT, _bybit(110079), OrderBusy, 400, "110079"),
    ("bybit-170191-busy", "bybit", 200, BYBIT, _bybit(170191), OrderBusy, 400, "170191"),
    ("bybit-timeout", "bybit", 0, BYBIT, None, NoAnswer, 0, ""),
]


def ccxt_error(exchange: Any, status: int, url: str, body: str | None) -> BaseError:
    """The exception ccxt's ``fetch`` raises for the answer ``status``/``body`` to ``POST url`` (``body`` None: a timeout)."""
    if body is None:
        return RequestTimeout(" ".join([exchange.id, "POST", url]))
    reason = HTTPStatus(status).phrase
    try:
        exchange.handle_errors(status, reason, url, "POST", {}, body, exchange.parse_json(body), {}, "")
        exchange.handle_http_status_code(status, reason, url, "POST", body)
    except BaseError as exc:
        return exc
    raise AssertionError(f"ccxt raised nothing for {status} {body}")


@pytest.mark.parametrize(
    ("venue", "status", "url", "body", "error", "observed", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_a_venue_error_answer_is_classified_by_its_code_status_and_ccxt_class(
    venue: str, status: int, url: str, body: str | None, error: type[Exception], observed: int, code: str
) -> None:
    errors, exchange_class = _VENUES[venue]
    exc = ccxt_error(exchange_class(), status, url, body)
    classified = errors.classify(exc, "private_post_order")
    assert (type(classified.error), classified.status, classified.code) == (error, observed, code), repr(exc)
    text = str(classified.error)
    assert text.startswith("private_post_order: ") and "secret" not in text
    if code:
        assert code in text


#: (venue, HTTP status, URL, body) of a refusal of the account's credentials.
CREDENTIAL_CASES: list[tuple[str, str, int, str, str]] = [
    ("binance-2015-key", "binance", 401, SPOT, _bn(-2015, "Invalid API-key, IP, or permissions for action.")),
    ("binance-1022-signature", "binance", 400, SPOT, _bn(-1022, "Signature for this request is not valid.")),
    ("usdm-2014-key-format", "binanceusdm", 400, USDM, _bn(-2014, "API-key format invalid.")),
    ("okx-50111-key", "okx", 401, OKX, _okx("50111")),
    ("okx-50113-signature", "okx", 401, OKX, _okx("50113")),
    ("okx-50105-passphrase", "okx", 401, OKX, _okx("50105")),
    ("bybit-10003-key", "bybit", 401, BYBIT, _bybit(10003)),
    ("bybit-10004-signature", "bybit", 200, BYBIT, _bybit(10004)),
]


@pytest.mark.parametrize(("venue", "status", "url", "body"), [c[1:5] for c in CREDENTIAL_CASES], ids=[c[0] for c in CREDENTIAL_CASES])
def test_a_refusal_of_the_key_or_its_signature_is_credentials_refused(venue: str, status: int, url: str, body: str) -> None:
    """The key unknown, malformed or of another IP, a signature of another secret, OKX's passphrase: CredentialsRefused,
    a VenueRejected (an order is rejected) on which ``tradebus live`` exits 2, as on a config error."""
    errors, exchange_class = _VENUES[venue]
    classified = errors.classify(ccxt_error(exchange_class(), status, url, body), "q")
    assert type(classified.error) is CredentialsRefused and classified.status == 400, classified


@pytest.mark.parametrize(
    ("s_code", "refused"),
    [("50007", AccountRefused), ("50029", AccountRefused), ("50120", CredentialsRefused), ("50008", CredentialsRefused)],
)
def test_an_okx_refusal_of_the_account_itself_says_so_and_one_of_the_key_does_not(s_code: str, refused: type[Exception]) -> None:
    """OKX refuses an order for the account (50007 user blocked, 50029 its risk control) or the key (50120 no
    permission; 50008 no user of the key, a deleted sub-account's, whose advice is a new key: it said the account):
    both stop the daemon (CredentialsRefused, exit 2), which names what was refused: the account, not its
    credentials, for the first two."""
    errors, exchange_class = _VENUES["okx"]
    error = errors.classify(ccxt_error(exchange_class(), 200, OKX, _okx("1", s_code)), "q").error
    assert type(error) is refused and isinstance(error, CredentialsRefused), error
    assert error.what == ("the account" if refused is AccountRefused else "the account's credentials")


@pytest.mark.parametrize(
    ("venue", "body", "code"),
    [("binance", _bn(-1021, "x"), "-1021"), ("okx", _okx("50102"), "50102"), ("bybit", _bybit(10002), "10002")],
)
def test_a_venue_code_is_text_whatever_its_json_type(venue: str, body: str, code: str) -> None:
    """Binance sends its code as a JSON number, OKX as a string, Bybit's retCode as a number: all are read as text."""
    errors, exchange_class = _VENUES[venue]
    assert errors.classify(ccxt_error(exchange_class(), 400, LOCAL, body), "q").code == code


@pytest.mark.parametrize("venue", sorted(_VENUES))
def test_a_dropped_connection_is_no_answer_on_every_venue(venue: str) -> None:
    errors, _ = _VENUES[venue]
    classified = errors.classify(ExchangeNotAvailable(f"{venue} POST {LOCAL}/x?signature=secret"), "private_post_order")
    assert isinstance(classified.error, NoAnswer) and classified[1:] == (0, "") and "secret" not in str(classified.error)
