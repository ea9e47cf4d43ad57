"""OKX v5 private channels, parsed into core events: ``orders``, ``orders-algo``, ``account`` and ``positions`` (after ``login``).

``orders`` (one update per order change; ``arg.channel == "orders"``):

=================================  ==================================================
``tradeId`` set, ``fillSz`` > 0    ``OrderFilled`` (trade id ``tradeId``, ``fillSz`` @ ``fillPx``,
                                   fee ``-fillFee`` -- OKX reports a charge as negative, a
                                   rebate positive -- in ``fillFeeCcy`` (else ``feeCcy``),
                                   kept in that asset; without ``fillFee``, the change of the
                                   order's cumulative ``fee`` (a spot buy's ``rebate`` in
                                   ``rebateCcy`` when that moved, a maker fill's only) since
                                   its last fill (after
                                   fills unseen, a lost push or a restart: its ``fillSz`` share
                                   of the change); ``execType`` M/T;
                                   the order's cumulative filled ``accFillSz``)
``state == "live"``                ``OrderAccepted`` (venue order id ``ordId``)
``canceled`` / ``mmp_canceled``    ``OrderCanceled`` (cumulative filled ``accFillSz``)
``live`` / ``partially_filled``    also ``OrderTermsReported`` (size ``sz``, price ``px``) when they
                                   differ from the order's: an amend (``amendResult``,
                                   ``amendSource``), made by a user at the venue unless this
                                   process's own is on its way
=================================  ==================================================

A ``filled`` or ``partially_filled`` update carries its fill (booked as above); the order
manager derives the status from the fills. An order OKX placed for a triggered stop carries the
stop's ``algoClOrdId`` and ``algoId``: its events are the stop's (client order id
``algoClOrdId``, venue order id ``algoId``).

``orders-algo`` (a stop, an algo order; by ``state``):

=================================  ==================================================
``live``                           ``OrderAccepted`` (venue order id ``algoId``); of an accepted
                                   stop, ``OrderTermsReported`` (size ``sz``, trigger
                                   ``slTriggerPx``, limit price ``slOrdPx``, ``-1`` a market
                                   stop's) when they differ from the order's: an amend
                                   (``amend-algos``), made by a user at the venue unless this
                                   process's own is on its way
``effective``                      ``OrderTriggered`` (its order follows on ``orders``)
``canceled``                       ``OrderCanceled`` (nothing filled)
``order_failed``                   ``OrderCanceled`` (the order it was to place was refused;
                                   reason ``failCode``)
=================================  ==================================================

``account`` -> one
:class:`~tradebus.execution.live.AccountBalance` per currency of ``details`` (``availBal``
free, ``frozenBal`` locked). ``positions`` -> one
:class:`~tradebus.execution.live.AccountPosition` per traded instrument (``pos`` in contracts,
signed in net mode; ``avgPx`` the entry price; :func:`positions_from_rows`).
``login``/``subscribe`` answers yield nothing; an ``error`` event is fatal, except a login that failed for a
reason of OKX's own (:data:`LOGIN_RETRY_CODES`): the connection is dropped and made again after the policy's
backoff, and the login sent again; and a login refused for its timestamp (:data:`LOGIN_CLOCK_CODES`), made again
after a measure of OKX's clock (:class:`~tradebus.adapters.common.user_stream.PrivateStream`).

:func:`login_frame` signs the ``login`` op; :data:`LIVE_ACCOUNT` runs the parser on a
:class:`~tradebus.adapters.common.user_stream.PrivateStream` (login, then ``orders`` of SPOT
``orders-algo`` of SPOT and ``account``; ``"ping"`` when idle 25 s) and the REST side of ``trading.py``;
:data:`LIVE_PERPETUAL` the same for swaps (``orders``, ``orders-algo`` and ``positions`` of SWAP, ``account``)
with :class:`~tradebus.adapters.okx.trading.OkxSwapTrading`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from loguru import logger
from pydantic import SecretStr

from tradebus.adapters.common.client import Sink
from tradebus.adapters.common.policy import Backoff, ConnectionPolicy, FatalVenueError
from tradebus.adapters.common.user_stream import UNACKNOWLEDGED, PrivateStream, PrivateStreamParser, venue_fee, venue_number
from tradebus.adapters.common.venue import LiveAccount
from tradebus.adapters.common.venue_clock import TimestampRefused, VenueClock
from tradebus.adapters.okx.client import okx_keepalive
from tradebus.engine.instrument import Instrument
from tradebus.execution.orders import Order
from tradebus.engine.messages import Liquidity, OrderAccepted, OrderCanceled, OrderFilled, OrderSide, OrderTriggered
from tradebus.errors import ParseError, VenueError
from tradebus.execution.live import AccountBalance, AccountPosition, AccountRefused, CredentialsRefused

__all__ = ["ACCOUNT_ADVICE", "FREEZE_ADVICE", "KEY_ADVICE", "LIVE_ACCOUNT", "LIVE_PERPETUAL", "LOGIN_CLOCK_CODES", "LOGIN_REFUSED_CODES", "LOGIN_RETRY_CODES", "SUBSCRIBE", "SUBSCRIBE_SWAP", "UserStreamParser", "login_frame", "positions_from_rows"]

_MS = 1_000_000
#: ``orders`` states after which an order has no more fills.
_DONE = frozenset({"filled", "canceled", "mmp_canceled"})


_KEY_VARIABLES = "the variables named by live.api_key_env, live.api_secret_env and live.api_passphrase_env"

#: OKX's refusals of a key for its state, what OKX's error table (REST, "API Class") words as: ``50100`` "API frozen,
#: please contact customer service." (HTTP 400), ``50114`` "Invalid authorization." (401), ``50120`` "This API key
#: doesn't have permission to use this function", ``50121`` "You can't access our services through the IP address
#: ({param0})", and of its "General Class" ``50008`` "User doesn't exist." (a deleted sub-account's key): every later
#: request of the account would be refused alike, so they are
#: :class:`~tradebus.execution.live.CredentialsRefused` (the daemon stops, exit 2), with what to do, from REST
#: (:attr:`~tradebus.adapters.okx.trading.OkxTrading.errors`) and from the WebSocket login (``50100`` as users meet it
#: there: ``{"event": "error", "code": "50100", "msg": "API frozen, please contact customer service."}``).
KEY_ADVICE: dict[str, str] = {
    "50100": (
        "OKX has frozen this API key: ask OKX customer service why and to unfreeze it, or create a new key and put it in "
        + _KEY_VARIABLES
    ),
    "50114": "OKX refused the key's authorization: check the key at OKX (API management) and " + _KEY_VARIABLES,
    "50120": (
        "the API key lacks the permission this request needs: give it the Trade permission at OKX (API management; "
        "Read alone cannot place or cancel orders)"
    ),
    "50121": (
        "OKX does not serve this machine's IP address: run the daemon from a network OKX serves (a region it does not "
        "serve is refused whatever the key)"
    ),
    "50008": (
        "OKX knows no user of this API key (a deleted sub-account's key): create a key of an existing account and put it "
        "in " + _KEY_VARIABLES
    ),
}


_START_AGAIN = ", then start the daemon again"
#: OKX's refusals of the account itself, whatever the request, that its error table (REST, "General Class", all HTTP 200)
#: words as: ``50007`` "User blocked.", ``50012`` "Account status invalid. Check account status", ``50027`` "This account
#: is restricted from trading. Please contact customer support for assistance.", ``50029`` "Your account has triggered
#: OKX risk control and is temporarily restricted from conducting transactions. ...", ``50059`` "... complete additional
#: steps as required by your local regulators ...", ``50060`` "... complete the identity verification process to
#: continue using our services.": every later request would be refused alike until the user acts at OKX, so they stop
#: the daemon as :data:`KEY_ADVICE`'s codes do (exit 2), as :class:`~tradebus.execution.live.AccountRefused`, with what
#: to do. The codes of that class that refuse for the moment (:data:`FREEZE_ADVICE`), or one instrument, currency or
#: feature (``50018`` and ``50021``, a currency "frozen due to ADL" or "to liquidation. Operation restricted.", which OKX
#: does not word as passing; ``50028``, ``50030``, ``50032``, ``50033``, ``50051``, ``50052``), stay the refusal of the
#: request that met them. ``50008`` "User doesn't exist." (a deleted sub-account's key) is the key's: :data:`KEY_ADVICE`.
ACCOUNT_ADVICE: dict[str, str] = {
    "50007": "OKX has blocked this account: ask OKX customer service why and to unblock it" + _START_AGAIN,
    "50012": (
        "OKX finds the account's status invalid: check the account's status at OKX (web or app) and do what it asks"
        + _START_AGAIN
    ),
    "50027": "OKX has restricted this account from trading: ask OKX customer support why and to lift it" + _START_AGAIN,
    "50029": (
        "OKX's risk control has restricted the account's trading: answer the e-mail OKX's customer support sent to the "
        "account's registered address" + _START_AGAIN
    ),
    "50059": (
        "OKX requires the steps its local regulator requires of the account first: complete them on OKX's web or app"
        + _START_AGAIN
    ),
    "50060": "complete OKX's identity verification of the account on its web or app" + _START_AGAIN,
}


def _frozen_while(what: str, cause: str) -> str:
    """What to do about ``what`` frozen by OKX for the moment while ``cause`` runs (:data:`FREEZE_ADVICE`)."""
    return (f"OKX has frozen {what} for the moment while {cause} runs: wait for it to end, check the account's positions "
            f"at OKX (web or app){_START_AGAIN} if it stopped")


#: What to do about OKX's freezes of the account for the moment, its error table's (REST, "General Class", HTTP 200)
#: ``50009`` "Account is frozen due to stop-out." (frozen while OKX's stop-out, its forced liquidation, closes the
#: positions, which ends with it) and those it words "Please try again later": ``50017`` "Position frozen and related
#: operations restricted due to auto-deleveraging (ADL). ...", ``50019`` "Account frozen ... due to auto-deleveraging
#: (ADL). ...", ``50020`` "Position frozen ... due to forced liquidation. ...", ``50022`` "Account frozen ... due to
#: forced liquidation. ...", ``50023`` "Funding fees frozen and related operations are restricted. ...". Each is
#: appended to the refusal of the request that met it (the account's read at start-up: the daemon stops, exit 1; an
#: order of a running daemon: its rejection); a running daemon's stream login meeting one logs in again after its
#: backoff (:data:`LOGIN_RETRY_CODES`).
FREEZE_ADVICE: dict[str, str] = {
    "50009": (
        "OKX has frozen the account for the moment while its stop-out (a forced liquidation) closes the account's "
        "positions: wait for the liquidation to end, check the account's positions at OKX (web or app)" + _START_AGAIN
        + " if it stopped"
    ),
    "50017": _frozen_while("a position of the account", "its auto-deleveraging (ADL)"),
    "50019": _frozen_while("the account", "its auto-deleveraging (ADL)"),
    "50020": _frozen_while("a position of the account", "its forced liquidation"),
    "50022": _frozen_while("the account", "its forced liquidation"),
    "50023": _frozen_while("the account's funding fees", "their settlement"),
}

#: The WebSocket login's refusals of the account's credentials (OKX's API docs, WebSocket error codes: ``60005``
#: invalid apiKey, ``60007`` invalid sign, ``60009`` login failed, ``60024`` wrong passphrase; "API key doesn't
#: exist": ``60032`` as users meet it (a key OKX does not know at this endpoint: an EEA account's key on the global
#: one, a deleted key) and as ccxt lists it, ``60031`` in OKX's current table, where ccxt has ``60031`` refuse a batch
#: login of several accounts, which one key never sends): :class:`~tradebus.execution.live.CredentialsRefused`, as the
#: REST codes of ``credential_codes`` (REST's "API key doesn't exist" is ``50119``).
LOGIN_REFUSED_CODES = frozenset({"60005", "60007", "60009", "60024", "60031", "60032", *KEY_ADVICE, *ACCOUNT_ADVICE})
#: The WebSocket login's failures that are OKX's and pass (the same list: ``63999`` "Login failed due to internal
#: error. Please try again later."; ``60014`` "Requests too frequent"; its REST table's "General Class", which the
#: login answers too: ``50013`` "System is busy, please try again later.", ``50026`` "System error. Try again later.",
#: those REST leaves the outcome unknown on): the stream reconnects with backoff and logs in again, at start-up as
#: while the daemon runs; so do :data:`FREEZE_ADVICE`'s freezes, which end with their liquidation, ADL or settlement.
#: ``60009`` "Login failure" stays a refusal: OKX words its own failure with ``63999``.
LOGIN_RETRY_CODES = frozenset({"63999", "60014", "50013", "50026", *FREEZE_ADVICE})
#: The WebSocket login's refusals of its timestamp (the same list: ``60004`` "Invalid timestamp", ``60006`` "Timestamp
#: request expired"; "the request will expire 30 seconds after the timestamp"): :class:`TimestampRefused`, the stream
#: measures OKX's clock and logs in again (:class:`~tradebus.adapters.common.user_stream.PrivateStream`).
LOGIN_CLOCK_CODES = frozenset({"60004", "60006"})


class UserStreamParser(PrivateStreamParser):
    """OKX ``orders`` / ``account`` / ``positions`` frames -> core events (see the module docstring).

    Parameters are :class:`~tradebus.adapters.common.user_stream.PrivateStreamParser`'s.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: ``ordId -> (client order id, cumulative fee, cumulative rebate, accFillSz)`` at the order's last
        #: pushed fill, until the order is done: by its own push, or by a REST query or a reconciliation
        #: the order manager learnt it from (dropped at the next ``orders`` frame).
        self._fee_booked: dict[str, tuple[str, float, float, float]] = {}

    def parse(self, raw: str | bytes) -> list[Any]:
        msg = self.decode(raw, "okx")
        if "event" in msg:
            if msg["event"] == "error":
                code = str(msg.get("code"))
                if code in LOGIN_RETRY_CODES:  # retryable (a VenueError): the stream reconnects after its backoff
                    raise VenueError(f"okx user stream: login failed, {code} {msg.get('msg')}; logging in again")
                if code in LOGIN_CLOCK_CODES:  # the stream measures OKX's clock, then logs in again
                    raise TimestampRefused(f"okx user stream: login refused for its timestamp, {code} {msg.get('msg')}")
                refusal = (AccountRefused if code in ACCOUNT_ADVICE else CredentialsRefused if code in LOGIN_REFUSED_CODES
                           else FatalVenueError)
                advice = KEY_ADVICE.get(code) or ACCOUNT_ADVICE.get(code)
                raise refusal(f"okx user stream: {code} {msg.get('msg')}" + (f"; {advice}" if advice else ""))
            return []
        channel = (msg.get("arg") or {}).get("channel")
        data = msg.get("data")
        if not isinstance(data, list):
            raise ParseError(f"okx user stream: no data list in {str(raw)[:120]!r}")
        try:
            if channel == "orders":
                events = [event for row in data for event in self._order(row)]
                self._forget_closed()
                return events
            if channel == "orders-algo":
                return [event for row in data for event in self._algo(row)]
            if channel == "account":
                return [
                    AccountBalance(d["ccy"], float(d["availBal"] or 0.0), float(d["frozenBal"] or 0.0), int(row["uTime"]) * _MS)
                    for row in data
                    for d in row["details"]
                ]
            if channel == "positions":
                return positions_from_rows(data, self.by_symbol)
        except (KeyError, TypeError, ValueError) as exc:
            raise ParseError(f"okx user stream: bad {channel} update: {type(exc).__name__}: {exc}") from None
        return []

    def _order(self, row: dict[str, Any]) -> list[Any]:
        coid, venue_id = str(row["clOrdId"]), str(row["ordId"])
        if row.get("algoClOrdId"):  # the order a triggered stop placed: the stop's events
            coid, venue_id = str(row["algoClOrdId"]), str(row.get("algoId") or venue_id)
        frame = self.context(coid, str(row["instId"]))
        order, sid, iid, inst = frame
        now = self.clock_ns()
        state = row["state"]
        out: list[Any] = []
        if row.get("tradeId") and float(row.get("fillSz") or 0.0) > 0.0:
            px = float(row["fillPx"])
            ts = int(row.get("fillTime") or row["uTime"]) * _MS
            fee, fee_asset = venue_fee(*self._fill_fee(row, coid), inst)
            out.append(
                OrderFilled(
                    sid,
                    iid,
                    coid,
                    venue_id,
                    str(row["tradeId"]),
                    OrderSide.BUY if row["side"] == "buy" else OrderSide.SELL,
                    float(row["fillSz"]),
                    px,
                    fee,
                    Liquidity.MAKER if row.get("execType") == "M" else Liquidity.TAKER,
                    ts,
                    now,
                    fee_asset,
                    float(row.get("accFillSz") or 0.0),
                )
            )
        if state in _DONE:
            self._fee_booked.pop(str(row["ordId"]), None)
        if order is None:
            return out
        ts = int(row["uTime"]) * _MS
        if state == "live" and order.status in UNACKNOWLEDGED:  # else the REST answer told it first
            out.append(OrderAccepted(sid, iid, coid, venue_id, ts, now))
        elif state in ("canceled", "mmp_canceled"):
            why = row.get("cancelSourceReason") or "canceled"
            out.append(OrderCanceled(sid, iid, coid, str(why), ts, now, float(row.get("accFillSz") or 0.0)))
        if state in ("live", "partially_filled"):  # an amend's push (amendResult, amendSource) tells the new sz / px
            out += self.terms(order, frame, venue_number(row.get("sz")), venue_number(row.get("px")), math.nan, ts)
        return out

    def _forget_closed(self) -> None:
        """Drop the fee memory of orders the order manager knows closed (a final push lost, the close learnt by REST)."""
        for ord_id, (coid, *_) in list(self._fee_booked.items()):
            order = self.lookup(coid)
            if order is not None and order.is_closed:
                del self._fee_booked[ord_id]

    def _fill_fee(self, row: dict[str, Any], coid: str) -> tuple[float, str | None]:
        """The fee of the fill an ``orders`` row carries, booked positive when charged, and its currency.

        ``fillFee`` / ``fillFeeCcy`` are this fill's (negative charged, positive a rebate, which
        on a spot buy OKX pays in the quote currency while ``feeCcy`` names the base one). A row
        without ``fillFee`` has only the order's cumulative ``fee`` (in ``feeCcy``) and, on a spot
        buy, its cumulative maker ``rebate`` (positive, in ``rebateCcy``; a sell's ``fee`` holds
        its rebate): its fill's fee is the change since the order's last booked fill, the
        rebate's when the rebate moved and the fill is not a taker's (which earns none); when fills of the order came unseen since (a lost push,
        its fill booked from ``/trade/fills``) or before this parser saw any (a restart), its
        ``fillSz`` share of the change over the quantity those fills and it filled.
        """
        ord_id = str(row["ordId"])
        total = float(row["fee"]) if row.get("fee") not in (None, "") else None
        rebate = float(row.get("rebate") or 0.0) if row.get("side") == "buy" else 0.0
        size, cumulative = float(row["fillSz"]), float(row.get("accFillSz") or 0.0)
        _, fee_before, rebate_before, filled_before = self._fee_booked.get(ord_id, (coid, 0.0, 0.0, 0.0))
        if total is not None:
            self._fee_booked[ord_id] = (coid, total, rebate, cumulative)
        if row.get("fillFee") not in (None, ""):
            return -float(row["fillFee"]), row.get("fillFeeCcy") or row.get("feeCcy")
        if total is None:
            return 0.0, None
        share = size / (cumulative - filled_before) if cumulative - filled_before > size else 1.0
        if share < 1.0:
            logger.warning("okx order {}: no fillFee and fills unseen since {}; fill {} booked its {} / {} share of the fee {} and rebate {}",
                           ord_id, filled_before, row.get("tradeId"), size, cumulative - filled_before,
                           total - fee_before, rebate - rebate_before)
        if rebate != rebate_before and row.get("execType") != "T":  # a taker earns no rebate: unseen fills moved it
            return -(rebate - rebate_before) * share, row.get("rebateCcy")
        return -(total - fee_before) * share, row.get("feeCcy")

    def _algo(self, row: dict[str, Any]) -> list[Any]:
        coid = str(row["algoClOrdId"])
        frame = self.context(coid, str(row["instId"]))
        order, sid, iid, _ = frame
        if order is None:
            return []
        ts, now, state = int(row["uTime"]) * _MS, self.clock_ns(), row["state"]
        if state == "live" and order.status in UNACKNOWLEDGED:  # else the REST answer told it first
            return [OrderAccepted(sid, iid, coid, str(row["algoId"]), ts, now)]
        if state == "live":  # an amend's push (amend-algos) tells the new sz / slTriggerPx / slOrdPx (-1: a market stop's)
            return self.terms(order, frame, venue_number(row.get("sz")), venue_number(row.get("slOrdPx")),
                              venue_number(row.get("slTriggerPx")), ts)
        if state == "effective":
            return [OrderTriggered(sid, iid, coid, int(row.get("triggerTime") or row["uTime"]) * _MS, now)]
        if state == "canceled":
            return [OrderCanceled(sid, iid, coid, "canceled", ts, now, 0.0)]
        if state == "order_failed":
            return [OrderCanceled(sid, iid, coid, f"the triggered order failed: {row.get('failCode') or ''}".rstrip(": "), ts, now, 0.0)]
        return []


def login_frame(api_key: SecretStr, api_secret: SecretStr, passphrase: SecretStr, now: Callable[[], float] = time.time) -> str:
    """OKX's ``login`` op: ``sign`` = base64 HMAC-SHA256 of ``timestamp + "GET" + "/users/self/verify"`` (seconds)."""
    ts = str(int(now()))
    digest = hmac.new(api_secret.get_secret_value().encode(), f"{ts}GET/users/self/verify".encode(), hashlib.sha256).digest()
    arg = {"apiKey": api_key.get_secret_value(), "passphrase": passphrase.get_secret_value(), "timestamp": ts, "sign": base64.b64encode(digest).decode()}
    return json.dumps({"op": "login", "args": [arg]})


#: The private channels subscribed once logged in (spot account).
SUBSCRIBE = json.dumps(
    {"op": "subscribe", "args": [{"channel": "orders", "instType": "SPOT"}, {"channel": "orders-algo", "instType": "SPOT"}, {"channel": "account"}]}
)
#: The private channels subscribed once logged in (swap account).
SUBSCRIBE_SWAP = json.dumps(
    {
        "op": "subscribe",
        "args": [
            {"channel": "orders", "instType": "SWAP"},
            {"channel": "orders-algo", "instType": "SWAP"},
            {"channel": "positions", "instType": "SWAP"},
            {"channel": "account"},
        ],
    }
)


def positions_from_rows(rows: list[dict[str, Any]], by_symbol: dict[str, Instrument]) -> list[AccountPosition]:
    """One signed :class:`AccountPosition` per traded instrument of OKX position rows (REST or the ``positions`` channel).

    ``pos`` is signed in net mode; a hedge-mode account's ``long`` and ``short`` rows are
    summed into the net position (their entry price is the last row's). Rows of other
    instruments are skipped.
    """
    net: dict[str, AccountPosition] = {}
    for row in rows:
        inst = by_symbol.get(str(row["instId"]))
        if inst is None:
            continue
        qty = float(row.get("pos") or 0.0)
        side = row.get("posSide", "net")
        if side == "long":
            qty = abs(qty)
        elif side == "short":
            qty = -abs(qty)
        prev = net.get(inst.instrument_id)
        total = qty + (prev.quantity if prev is not None else 0.0)
        ts = int(row.get("uTime") or 0) * _MS
        net[inst.instrument_id] = AccountPosition(inst.instrument_id, total, float(row.get("avgPx") or 0.0), ts)
    return list(net.values())


def _is_login_ack(msg: dict[str, Any]) -> bool:
    return msg.get("event") == "login" and str(msg.get("code", "0")) == "0"


def _is_subscribe_ack(msg: dict[str, Any]) -> bool:
    """OKX answers a subscription once per channel: ``{"event": "subscribe", "arg": {...}}``."""
    return msg.get("event") == "subscribe"


def _user_stream(
    subscribe: str,
    ws_url: str,
    api_key: SecretStr,
    api_secret: SecretStr,
    instruments: dict[str, Instrument],
    lookup: Callable[[str], Order | None],
    sink: Sink,
    on_balance: Callable[[AccountBalance], Any] | None = None,
    on_reconnect: Callable[[], Any] | None = None,
    *,
    passphrase: SecretStr | None = None,
    venue_clock: VenueClock | None = None,
    **_: Any,
) -> PrivateStream:
    assert passphrase is not None
    policy = ConnectionPolicy(backoff=Backoff(base=0.2, cap=10.0, min_delay=0.05), keepalive=okx_keepalive(), stale_after=1e9)
    parser = UserStreamParser(instruments, lookup, venue="OKX")
    now = venue_clock.now if venue_clock is not None else time.time
    return PrivateStream(
        "okx-private", ws_url, policy, parser, lambda: login_frame(api_key, api_secret, passphrase, now), _is_login_ack,
        subscribe, _is_subscribe_ack, sink, on_balance, on_reconnect, subscribe_acks=len(json.loads(subscribe)["args"]),
        venue_clock=venue_clock,
    )


def _trading(
    class_name: str, rest_url: str, api_key: SecretStr, api_secret: SecretStr, instruments: dict[str, Instrument], timeout: float,
    *, passphrase: SecretStr | None = None, environment: str = "testnet", **_: Any,
) -> Any:
    from tradebus.adapters.okx import trading

    assert passphrase is not None
    cls = getattr(trading, class_name)
    return cls(rest_url, api_key, api_secret, passphrase, instruments, timeout, demo=environment != "mainnet")


#: OKX's endpoints of each environment (demo trading is the testnet): REST base, private WebSocket.
_ENDPOINTS = {
    "testnet": ("https://www.okx.com", "wss://wspap.okx.com:8443/ws/v5/private"),
    "mainnet": ("https://www.okx.com", "wss://ws.okx.com:8443/ws/v5/private"),
}


#: OKX spot live trading, as the registry's adapter offers it (demo trading is the testnet).
LIVE_ACCOUNT = LiveAccount(
    endpoints=_ENDPOINTS, trading=partial(_trading, "OkxTrading"), user_stream=partial(_user_stream, SUBSCRIBE), passphrase=True
)
#: OKX swap (linear USDT perpetual) live trading, net position mode, cross margin.
LIVE_PERPETUAL = LiveAccount(
    endpoints=_ENDPOINTS, trading=partial(_trading, "OkxSwapTrading"), user_stream=partial(_user_stream, SUBSCRIBE_SWAP), passphrase=True
)
