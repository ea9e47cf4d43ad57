"""Binance spot user data stream: the private events of one account, parsed into core events.

Since the listenKey streams of spot were retired (2026-02-20), the current documented form
is the WebSocket API (``wss://ws-api.binance.com:443/ws-api/v3``; testnet
``wss://ws-api.testnet.binance.vision/ws-api/v3``): after connecting, the client sends
``userDataStream.subscribe.signature`` with ``apiKey``, ``timestamp`` and an HMAC-SHA256
``signature`` of those parameters sorted by name; the answer carries a ``subscriptionId``
and every event then arrives as ``{"subscriptionId": 0, "event": {...}}``. The parser also
takes the legacy envelopes (``{"stream": ..., "data": {...}}`` and a bare event), as in
the documentation examples of ``tests/fixtures/binance/user_data``.

``executionReport`` by execution type ``x``:

===================  ==========================================================
``NEW``              ``OrderAccepted`` (venue order id ``i``)
``TRADE``            ``OrderFilled`` (trade id ``t``, ``l`` @ ``L``, fee ``n`` in asset
                     ``N``, kept in that asset (``fee_asset``: base, quote or BNB); maker ``m``;
                     the order's cumulative filled ``z``)
``CANCELED``         ``OrderCanceled`` (cumulative filled ``z``)
``REJECTED``         ``OrderRejected`` (reason ``r``)
``EXPIRED``          ``OrderExpired`` (``z``)
``TRADE_PREVENTION`` ``OrderExpired`` (self-trade prevention)
``REPLACED``         ``OrderTermsReported`` (quantity ``q``, price ``p``, stop price ``P``) when
                     they differ from the order's: an amend a user made at the venue keeping the
                     order's priority (``PUT /api/v3/order/amend/keepPriority``; tradebus sends
                     none), which gives the order the new client id ``c`` unless the user sent
                     its own: the order is found by its instrument and ``orderId`` ``i``, which
                     the amend keeps (else by ``C``, the id it had, if the frame names it: not
                     confirmed), and its frames under the new id are its own until it closes
===================  ==========================================================

``outboundAccountPosition`` -> one :class:`~tradebus.execution.live.AccountBalance` per asset.
Events of orders this process does not know: fills are kept (the engine books them as
external fills), the rest is logged and dropped.

USD-M perpetuals
----------------

Binance USD-M user data stream: order, balance and position events of one futures account.

The USD-M stream is a listen-key stream (Binance USD-M "User Data Streams"): the client gets
a ``listenKey`` with ``POST /fapi/v1/listenKey`` (``X-MBX-APIKEY`` header, no signature),
connects to ``<ws base>/ws/<listenKey>`` and extends the key with ``PUT /fapi/v1/listenKey``
every 30 minutes (it lapses after 60); every reconnect asks for the key again (``POST``
returns the active key or a new one). Events arrive bare or in a ``{"stream", "data"}`` envelope:

``ORDER_TRADE_UPDATE``
    its ``o`` object carries the same one-letter fields as spot's ``executionReport``
    (``x`` execution type, ``c`` client id, ``l``/``L`` last fill, ``n``/``N`` fee, ``t``
    trade id, ``m`` maker) and is parsed by the spot rules
    (:class:`~tradebus.adapters.binance.user_stream.UserStreamParser`). The venue's liquidation
    order (``x=CALCULATED``, ``o=LIQUIDATION`` or client id ``autoclose-...``; not the order a
    triggered stop placed, which is the stop's): each fill
    (``l`` @ ``L``, fee ``n``) -> ``OrderFilled`` of strategy ``"liquidation"``, which the kernel
    books as a liquidation (``PositionLiquidated``); its other events are logged. ``AMENDMENT``
    (a user's modify at the venue, ``PUT /fapi/v1/order``: tradebus modifies no USD-M order in
    place) -> ``OrderTermsReported`` (``q``, ``p``, ``sp``) when they differ from the order's.
``ALGO_UPDATE`` (a stop: a conditional order of the Algo Service, by its ``o.X``)
    ``NEW`` -> ``OrderAccepted`` (venue order id ``aid``); ``TRIGGERED`` -> ``OrderTriggered``
    (``tt``), the order it placed (``ai``) then reported by ``ORDER_TRADE_UPDATE`` as the stop's;
    ``CANCELED`` -> ``OrderCanceled``; ``REJECTED`` (the placed order refused) -> ``OrderCanceled``
    with the reason ``rm``; ``EXPIRED`` -> ``OrderExpired``; ``TRIGGERING`` and ``FINISHED``
    nothing (the placed order's events tell it). An ``ORDER_TRADE_UPDATE`` whose client id
    ``c`` is no order of this process but whose ``i`` is a triggered stop's ``ai`` is that stop's.
``ACCOUNT_UPDATE``
    ``a.B``: wallet balance ``wb`` of each asset -> :class:`AccountBalance` (``free``);
    ``a.P``: position amount ``pa`` and entry price ``ep`` of each symbol (one-way mode,
    ``ps=BOTH``) -> :class:`AccountPosition`. With reason ``a.m=FUNDING_FEE``, each balance's
    change ``bc`` is also the venue's funding payment -> ``FundingPaid`` (the kernel books it:
    live, the venue's funding is the one booked). Binance names the symbol only for an
    isolated position (its ``P`` row; a cross position's update has no ``P``): a cross
    payment in an asset a perpetual of the run settles in -> :class:`FundingUnattributed`
    (the daemon reads ``GET /fapi/v1/income``, which names it: the account may hold a position
    outside the run in the same asset, whose payment is not the run's).
``listenKeyExpired``
    the connection is closed, so the next attempt takes a fresh key.

On spot, an ``eventStreamTerminated`` event (the venue ended the subscription: a revoked key,
a logout) closes the connection too: the next one subscribes again (a refused key then stops
the stream with its error) and, once confirmed, the open orders are queried. A subscription refused for its
``timestamp`` (``-1021``: it is stamped on Binance's clock as the trading API last measured it, and this machine's
clock may have been set since) has the stream measure Binance's clock and subscribe again
(:class:`~tradebus.adapters.common.user_stream.UserStream`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import math
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from loguru import logger
from pydantic import SecretStr

from tradebus.adapters.binance.client import MAX_CONNECTION_AGE, binance_keepalive
from tradebus.adapters.common.client import Sink
from tradebus.adapters.common.policy import Backoff, ConnectionPolicy
from tradebus.adapters.common.recorder import FrameRecorder
from tradebus.adapters.common.user_stream import PrivateStreamParser, UserStream, deliver, venue_fee, venue_number
from tradebus.adapters.common.venue import LiveAccount, lazy_trading
from tradebus.adapters.common.venue_clock import VenueClock
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import (
    FundingPaid,
    Liquidity,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderSide,
    OrderStatus,
    OrderTriggered,
)
from tradebus.engine.perpetuals import LIQUIDATION_STRATEGY
from tradebus.errors import ParseError
from tradebus.execution.live import AccountBalance, AccountPosition, FundingUnattributed, NoAnswer
from tradebus.execution.orders import Order

__all__ = ["BinanceFuturesUserStream", "BinanceUserStream", "FuturesStreamParser", "LIVE_ACCOUNT", "LIVE_PERPETUAL", "UserStreamParser", "is_liquidation", "sign_params"]

_MS = 1_000_000
_UNACKNOWLEDGED = frozenset({OrderStatus.INITIALIZED, OrderStatus.SUBMITTED, OrderStatus.UNKNOWN})
# Order statuses (``X``) after which no frame of the order follows.
_CLOSED_STATUSES = frozenset({"FILLED", "CANCELED", "REJECTED", "EXPIRED", "EXPIRED_IN_MATCH"})
# Triggered stops remembered before the first sweep of those the live venue forgot (FuturesStreamParser._placed).
_PLACED_SWEEP = 256


class SubscriptionEnded(ParseError):
    """The venue ended the stream's subscription (spot ``eventStreamTerminated``): the connection is dropped and subscribed again."""


def sign_params(params: dict[str, Any], secret: SecretStr) -> str:
    """HMAC-SHA256 (hex) of ``params`` sorted by name as ``k=v&...`` (the WebSocket API's signature payload)."""
    payload = "&".join(f"{k}={params[k]}" for k in sorted(params))
    return hmac.new(secret.get_secret_value().encode(), payload.encode(), hashlib.sha256).hexdigest()


class UserStreamParser(PrivateStreamParser):
    """Parses Binance user-data frames into core order events and balances (see the module docstring).

    Parameters as :class:`~tradebus.adapters.common.user_stream.PrivateStreamParser`, and ``on_first_fill``: called
    with each first fill of an order of the account (a ``TRADE`` whose cumulative ``z`` is its own ``l``), of this
    process or not, given its transaction time (ms) and the venue's order id (spot's order limits count unfilled orders: :meth:`~tradebus.adapters.binance.trading.BinanceTrading.first_fill_heard`);
    ``by_venue_id``: the open order of an instrument id and a venue order id (the live daemon's
    :meth:`~tradebus.node.reconcile.Reconciler.open_order_at_venue`), which finds the order of an ``x=REPLACED`` frame
    under a client id it does not know (``None``: by ``C`` only).
    """

    def __init__(
        self,
        instruments: dict[str, Instrument],
        lookup: Callable[[str], Order | None],
        clock_ns: Callable[[], int] = time.time_ns,
        on_first_fill: Callable[[int, str], object] | None = None,
        by_venue_id: Callable[[str, str], Order | None] | None = None,
    ) -> None:
        super().__init__(instruments, lookup, clock_ns, venue="BINANCE")
        self.on_first_fill = on_first_fill
        self.by_venue_id = by_venue_id
        #: The client id an amend made at the venue gave an order (``x=REPLACED``, ``c``) -> the order's own, until it
        #: closes: its later frames carry the new id.
        self.renamed: dict[str, str] = {}

    def parse(self, raw: str | bytes) -> list[Any]:
        """The events of one frame (empty for answers to requests and unhandled event types).

        Raises
        ------
        ParseError
            Not JSON, or an event missing a field (named).
        ~tradebus.adapters.common.policy.FatalVenueError
            The venue refused the subscription (an error answer to a request); :class:`~tradebus.execution.live.CredentialsRefused`
            when it refused the key or its signature.
        """
        msg = self.decode(raw, "binance")
        if "status" in msg and "id" in msg:
            if msg["status"] != 200:
                error = msg.get("error", {})
                refused = f"binance user stream: request refused: {error.get('code')} {error.get('msg')}"
                from tradebus.adapters.binance.trading import stream_refusal  # ccxt's import, only on a refusal

                raise stream_refusal(refused, error.get("code"))
            return []
        event = msg.get("event", msg.get("data", msg))
        if not isinstance(event, dict):
            raise ParseError(f"binance user stream: no event object in {str(raw)[:120]!r}")
        kind = event.get("e")
        try:
            if kind == "executionReport":
                return self._execution_report(event)
            if kind == "outboundAccountPosition":
                ts = int(event["u"]) * _MS
                return [AccountBalance(b["a"], float(b["f"]), float(b["l"]), ts) for b in event["B"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ParseError(f"binance user stream: bad {kind} event: {type(exc).__name__}: {exc}") from None
        if kind == "eventStreamTerminated":
            raise SubscriptionEnded("binance user stream: the venue terminated the subscription (eventStreamTerminated)")
        return []

    def _execution_report(self, ev: dict[str, Any]) -> list[Any]:
        coid = str(ev["c"])
        x = ev["x"]
        if x == "CANCELED" and ev.get("C"):
            coid = str(ev["C"])  # a cancel carries the original id in C and the cancel's id in c
        symbol = str(ev["s"])
        frame = self.context(self.renamed.get(coid, coid), symbol)
        if frame[0] is None and x == "REPLACED":  # renamed by this amend, which keeps the order's orderId
            found = self.by_venue_id(frame[2], str(ev["i"])) if self.by_venue_id is not None else None
            former = found.client_order_id if found is not None else str(ev.get("C") or "")
            if former:
                frame = self.context(self.renamed.get(former, former), symbol)
        order, sid, iid, inst = frame
        if order is not None and order.client_order_id != coid:
            if x == "REPLACED" and coid not in self.renamed:
                logger.warning("binance user stream: order {} is called {} at the venue now (an amend keeping priority renamed "
                               "it); its events under that id are the order's", order.client_order_id, coid)
            self.renamed[coid] = order.client_order_id
            if ev.get("X") in _CLOSED_STATUSES:
                del self.renamed[coid]
            coid = order.client_order_id
        now = self.clock_ns()
        ts = int(ev.get("T") or ev["E"]) * _MS
        if x == "TRADE":
            if self.on_first_fill is not None and float(ev.get("z") or 0.0) == float(ev["l"]):
                self.on_first_fill(ts // _MS, str(ev["i"]))
            px = float(ev["L"])
            fee, fee_asset = venue_fee(float(ev["n"] or 0.0), ev.get("N"), inst)
            return [
                OrderFilled(
                    sid,
                    iid,
                    coid,
                    str(ev["i"]),
                    str(ev["t"]),
                    OrderSide.BUY if ev["S"] == "BUY" else OrderSide.SELL,
                    float(ev["l"]),
                    px,
                    fee,
                    Liquidity.MAKER if ev["m"] else Liquidity.TAKER,
                    ts,
                    now,
                    fee_asset,
                    float(ev.get("z") or 0.0),
                )
            ]
        if order is None:
            logger.info("binance user stream: {} of order {} not sent by this process; ignored", x, coid)
            return []
        if x == "NEW":
            if order.status not in _UNACKNOWLEDGED:
                return []  # the REST answer told it first
            return [OrderAccepted(sid, iid, coid, str(ev["i"]), ts, now)]
        if x == "CANCELED":
            return [OrderCanceled(sid, iid, coid, "canceled", ts, now, float(ev["z"]))]
        if x == "REJECTED":
            return [OrderRejected(sid, iid, coid, f"rejected by Binance: {ev.get('r', '')}", ts, now)]
        if x in ("REPLACED", "AMENDMENT"):  # spot's amend keeping priority, USD-M's modify: made at the venue
            trigger = ev.get("P", ev.get("sp"))
            return self.terms(order, frame, venue_number(ev["q"]), venue_number(ev.get("p")), venue_number(trigger), ts)
        if x in ("EXPIRED", "TRADE_PREVENTION"):
            why = "expired" if x == "EXPIRED" else "self-trade prevention"
            return [OrderExpired(sid, iid, coid, why, ts, now, float(ev["z"]))]
        logger.debug("binance user stream: execution type {} of {} not mapped", x, coid)
        return []


class BinanceUserStream(UserStream):
    """The account's user data stream over the WebSocket API, reconnecting per policy.

    Every parsed order event goes to ``sink`` and every balance to ``on_balance``. After a
    reconnect (events may have been missed while disconnected) ``on_reconnect`` is called once
    the venue answered the subscription request with status 200.

    Parameters
    ----------
    ws_api_url
        ``wss://ws-api.testnet.binance.vision/ws-api/v3`` (testnet) or the emulator's URL.
    api_key, api_secret
        The account's keys (secrets; only the signature and the key go on the wire, never logged).
    parser
        The frame parser.
    sink, on_balance, on_reconnect
        Where events go.
    recorder
        Records the raw frames received (never the signed request sent).
    """

    def __init__(
        self,
        ws_api_url: str,
        api_key: SecretStr,
        api_secret: SecretStr,
        parser: UserStreamParser,
        sink: Sink,
        on_balance: Callable[[AccountBalance], Any] | None = None,
        on_reconnect: Callable[[], Any] | None = None,
        recorder: FrameRecorder | None = None,
    ) -> None:
        policy = ConnectionPolicy(
            backoff=Backoff(base=0.2, cap=10.0, min_delay=0.05),
            keepalive=binance_keepalive(),
            max_connection_age=MAX_CONNECTION_AGE,
            stale_after=1e9,  # an idle account is silent: silence is not staleness
        )
        super().__init__("binance-user", sink, policy, on_balance, on_reconnect, recorder)
        self.url = ws_api_url
        self._key = api_key
        self._secret = api_secret
        self.parser = parser
        self._ids = itertools.count(1)
        #: The clock the subscription's ``timestamp`` is read from, seconds (Binance's, as the trading API measured it).
        self.now: Callable[[], float] = time.time

    def connect_url(self) -> str:
        return self.url

    def subscribe_frames(self) -> list[str]:
        params: dict[str, Any] = {"apiKey": self._key.get_secret_value(), "timestamp": int(self.now() * 1000)}
        params["signature"] = sign_params(params, self._secret)
        return [json.dumps({"id": f"uds-{next(self._ids)}", "method": "userDataStream.subscribe.signature", "params": params})]

    def on_frame(self, raw: str | bytes, recv_ns: int) -> None:
        try:
            events = self.parser.parse(raw)  # a refused subscription raises
        except SubscriptionEnded as exc:
            self.drop_connection(str(exc))
            return
        if not events and not self.subscribed.is_set() and self.parser.decode(raw, self.name).get("status") == 200:
            self.confirmed()  # the only request sent is the subscription
            return
        deliver(events, self.sink, self.on_balance)


def _user_stream(
    ws_url: str,
    api_key: SecretStr,
    api_secret: SecretStr,
    instruments: dict[str, Instrument],
    lookup: Callable[[str], Order | None],
    sink: Sink,
    on_balance: Callable[[AccountBalance], Any] | None = None,
    on_reconnect: Callable[[], Any] | None = None,
    *,
    venue_clock: VenueClock | None = None,
    trading: Any = None,
    by_venue_id: Callable[[str, str], Order | None] | None = None,
    **_: Any,
) -> BinanceUserStream:
    first_fill = getattr(trading, "first_fill_heard", None)
    parser = UserStreamParser(instruments, lookup, on_first_fill=first_fill, by_venue_id=by_venue_id)
    stream = BinanceUserStream(ws_url, api_key, api_secret, parser, sink, on_balance, on_reconnect)
    if venue_clock is not None:
        stream.venue_clock = venue_clock  # a subscription refused for its timestamp (-1021) measures it again
        stream.now = venue_clock.now
    return stream


#: Binance's real-money domain: spot ``api.binance.com``, ``api1``-``api4``, ``api-gcp``, USD-M ``fapi``, ``ws-api`` ...
#: (the testnets are ``testnet.binance.vision`` and ``testnet.binancefuture.com``).
MAINNET_DOMAINS = ("binance.com",)

#: Binance spot live trading, as the registry's adapter offers it (:class:`~tradebus.adapters.common.venue.LiveAccount`).
LIVE_ACCOUNT = LiveAccount(
    endpoints={
        "testnet": ("https://testnet.binance.vision", "wss://ws-api.testnet.binance.vision/ws-api/v3"),
        "mainnet": ("https://api.binance.com", "wss://ws-api.binance.com:443/ws-api/v3"),
    },
    trading=lazy_trading("tradebus.adapters.binance.trading", "BinanceTrading"),
    user_stream=_user_stream,
    mainnet_domains=MAINNET_DOMAINS,
    fee_assets=("BNB",),
)


#: Seconds between two keep-alives of the listen key (Binance: valid 60 minutes).
KEY_KEEPALIVE = 30 * 60.0


class FuturesStreamParser(UserStreamParser):
    """Parses USD-M user-data frames into order events, balances and positions (module docstring)."""

    def __init__(
        self,
        instruments: dict[str, Instrument],
        lookup: Callable[[str], Order | None],
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        super().__init__(instruments, lookup, clock_ns)
        #: ``orderId`` of the order a triggered stop placed -> the stop's client id; those of stops ``lookup`` no
        #: longer finds (forgotten once closed, :meth:`~tradebus.execution.live.LiveVenue.forget`) are dropped
        #: once it has doubled since the last sweep.
        self.placed_by: dict[str, str] = {}
        self._placed_swept = _PLACED_SWEEP

    def parse(self, raw: str | bytes) -> list[Any]:
        """The events of one frame.

        Raises
        ------
        ParseError
            Not JSON, or an event missing a field (named).
        """
        msg = self.decode(raw, "binance usdm")
        event = msg.get("data", msg)
        if not isinstance(event, dict):
            raise ParseError(f"binance usdm user stream: no event object in {str(raw)[:120]!r}")
        kind = event.get("e")
        try:
            if kind == "ORDER_TRADE_UPDATE":
                o = event["o"]
                coid = self.placed_by.get(str(o["i"]))
                if coid is None and is_liquidation(o):
                    return self._liquidation(o, event)
                if o["x"] == "CALCULATED":
                    logger.warning("binance usdm user stream: {} of order {} not mapped", o["x"], o.get("c"))
                    return []
                if coid is not None and self.lookup(str(o["c"])) is None:
                    o = {**o, "c": coid}
                return self._execution_report({**o, "E": event["E"]})
            if kind == "ALGO_UPDATE":
                return self._algo_update(event)
            if kind == "ACCOUNT_UPDATE":
                return self._account_update(event)
        except (KeyError, TypeError, ValueError) as exc:
            raise ParseError(f"binance usdm user stream: bad {kind} event: {type(exc).__name__}: {exc}") from None
        if kind == "listenKeyExpired":
            raise ListenKeyExpired("binance usdm user stream: the listen key expired")
        return []

    def _algo_update(self, event: dict[str, Any]) -> list[Any]:
        o = event["o"]
        coid, status = str(o["caid"]), str(o["X"])
        if o.get("ai"):
            self._placed(str(o["ai"]), coid)
        order, sid, iid, _ = self.context(coid, str(o["s"]))
        if order is None:
            logger.info("binance usdm user stream: algo order {} {} not sent by this process; ignored", coid, status)
            return []
        ts, now = int(event.get("T") or event["E"]) * _MS, self.clock_ns()
        if status == "NEW":
            return [OrderAccepted(sid, iid, coid, str(o["aid"]), ts, now)] if order.status in _UNACKNOWLEDGED else []
        if status == "TRIGGERED":
            return [OrderTriggered(sid, iid, coid, int(o.get("tt") or 0) * _MS or ts, now)]
        if status == "CANCELED":
            return [OrderCanceled(sid, iid, coid, "canceled", ts, now, 0.0)]
        if status == "REJECTED":
            why = f"the triggered order was rejected by Binance: {o.get('rm') or ''}".rstrip(": ")
            if order.status in _UNACKNOWLEDGED:
                return [OrderRejected(sid, iid, coid, why, ts, now)]
            return [OrderCanceled(sid, iid, coid, why, ts, now, 0.0)]
        if status == "EXPIRED":
            return [OrderExpired(sid, iid, coid, "expired", ts, now, 0.0)]
        return []

    def _placed(self, order_id: str, coid: str) -> None:
        """Map the order a triggered stop placed to the stop; the next sweep waits until the map has doubled."""
        placed_by = self.placed_by
        placed_by[order_id] = coid
        if len(placed_by) > self._placed_swept:
            lookup = self.lookup
            self.placed_by = {oid: stop for oid, stop in placed_by.items() if lookup(stop) is not None}
            self._placed_swept = max(_PLACED_SWEEP, 2 * len(self.placed_by))

    def _liquidation(self, o: dict[str, Any], event: dict[str, Any]) -> list[Any]:
        """The fill of the venue's liquidation order (none for its other events: ``NEW``, a status)."""
        qty = float(o["l"])
        if qty <= 0.0:
            logger.warning("binance usdm user stream: venue liquidation order {} of {}: {}", o["c"], o["s"], o["X"])
            return []
        _, _, iid, inst = self.context(str(o["c"]), str(o["s"]))
        fee, fee_asset = venue_fee(float(o["n"] or 0.0), o.get("N"), inst)
        ts = int(o.get("T") or event["E"]) * _MS
        side = OrderSide.BUY if o["S"] == "BUY" else OrderSide.SELL
        return [
            OrderFilled(
                LIQUIDATION_STRATEGY, iid, str(o["c"]), str(o["i"]), str(o["t"]), side, qty, float(o["L"]), fee,
                Liquidity.TAKER, ts, self.clock_ns(), fee_asset,
            )
        ]  # fmt: skip

    def _funding(self, event: dict[str, Any], ts: int) -> list[FundingPaid | FundingUnattributed]:
        """The venue's funding payments of an ``ACCOUNT_UPDATE`` with reason ``FUNDING_FEE``.

        ``bc`` (the balance change, negative when the account paid) is the payment; the
        instrument is the isolated position's ``P`` row (one). Quantity, mark and rate are NaN: the
        kernel books the payment on its own position
        (:meth:`~tradebus.engine.perpetuals.Perpetuals.on_venue_funding`). A cross position's
        update has no ``P``: the venue names no symbol, and the payment may be any perpetual of
        the account settled in the asset, in the run or not, so it is a
        :class:`FundingUnattributed`. A payment of a symbol, or in an asset, of no perpetual of
        the run is not the run's: not booked.
        """
        data = event["a"]
        rows = [str(p["s"]) for p in data.get("P", [])]
        named = [self.by_symbol[s] for s in rows if s in self.by_symbol]
        out: list[FundingPaid | FundingUnattributed] = []
        nan = math.nan
        for b in data.get("B", []):
            change = float(b["bc"])
            if change == 0.0:
                continue
            asset = str(b["a"])
            if len(rows) == 1:
                if named:
                    out.append(FundingPaid(named[0].instrument_id, nan, nan, nan, -change, ts, self.clock_ns()))
                else:
                    logger.info("binance usdm user stream: a funding payment of {} {} on {} not booked: not a symbol of this run",
                                -change, asset, rows[0])
                continue
            if not any(i.is_perpetual and i.quote == asset for i in self.by_symbol.values()):
                logger.info("binance usdm user stream: a funding payment of {} {} not booked: no perpetual of this run settles in {}",
                            -change, asset, asset)
                continue
            logger.info("binance usdm user stream: a funding payment of {} {} names no symbol: GET /fapi/v1/income tells which",
                        -change, asset)
            out.append(FundingUnattributed(asset, -change, ts))
        return out

    def _account_update(self, event: dict[str, Any]) -> list[Any]:
        ts = int(event.get("T") or event["E"]) * _MS
        data = event["a"]
        out: list[Any] = [AccountBalance(b["a"], float(b["wb"]), 0.0, ts) for b in data.get("B", [])]
        if data.get("m") == "FUNDING_FEE":
            out += self._funding(event, ts)
        for p in data.get("P", []):
            inst = self.by_symbol.get(str(p["s"]))
            if inst is None or p.get("ps", "BOTH") != "BOTH":
                continue
            out.append(AccountPosition(inst.instrument_id, float(p["pa"]), float(p["ep"]), ts))
        return out


def is_liquidation(o: dict[str, Any]) -> bool:
    """Whether an ``ORDER_TRADE_UPDATE``'s order object is the venue's liquidation order.

    Binance: execution type ``x=CALCULATED`` ("Liquidation Execution"), order type
    ``o=LIQUIDATION``, client id ``autoclose-...`` (``adl_autoclose`` is an auto-deleveraging close,
    not a liquidation: booked as an external fill).
    """
    return o.get("x") == "CALCULATED" or o.get("o") == "LIQUIDATION" or str(o.get("c", "")).startswith("autoclose-")


class ListenKeyExpired(SubscriptionEnded):
    """The venue said the listen key lapsed: the connection is dropped and a new key taken."""


class BinanceFuturesUserStream(UserStream):
    """The USD-M account's user data stream (listen key), reconnecting per policy.

    Order events go to ``sink``; balances and positions to ``on_balance``; after a
    reconnect ``on_reconnect`` is called (events may have been missed). The listen key is the
    subscription: the connection is subscribed once open.

    Parameters
    ----------
    rest_url
        The futures REST base (listen key requests).
    ws_url
        The user-stream WebSocket base (``<ws_url>/ws/<listenKey>``).
    api_key
        The account's key (only in the listen-key request's header; never logged).
    parser, sink, on_balance, on_reconnect
        As :class:`~tradebus.adapters.binance.user_stream.BinanceUserStream`.
    timeout
        Seconds a listen-key request may take (the daemon's ``live.request_timeout``): one unanswered by then is
        :class:`~tradebus.execution.live.NoAnswer`, and the connection is attempted again after the backoff.
    """

    def __init__(
        self,
        rest_url: str,
        ws_url: str,
        api_key: SecretStr,
        parser: FuturesStreamParser,
        sink: Sink,
        on_balance: Callable[[Any], Any] | None = None,
        on_reconnect: Callable[[], Any] | None = None,
        timeout: float = 10.0,
    ) -> None:
        policy = ConnectionPolicy(
            backoff=Backoff(base=0.2, cap=10.0, min_delay=0.05),
            keepalive=binance_keepalive(),
            max_connection_age=MAX_CONNECTION_AGE,
            stale_after=1e9,  # an idle account is silent
        )
        super().__init__("binance-usdm-user", sink, policy, on_balance, on_reconnect)
        self.rest_url = rest_url.rstrip("/")
        self.url = ws_url.rstrip("/")
        self._key = api_key
        self.parser = parser
        self.timeout = timeout
        self._listen_key = ""
        self._keepalive: asyncio.Task[None] | None = None

    async def _listen_key_request(self, method: str) -> dict[str, Any]:
        headers = {"X-MBX-APIKEY": self._key.get_secret_value()}
        params = {"listenKey": self._listen_key} if method == "PUT" else None
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as http:
                async with http.request(method, f"{self.rest_url}/fapi/v1/listenKey", headers=headers, params=params) as resp:
                    body = await resp.json(content_type=None)
                    if resp.status in (401, 403) or (400 <= resp.status < 500 and resp.status not in (418, 429)):
                        refused = f"binance usdm listen key: refused: HTTP {resp.status} {body.get('code')} {body.get('msg')}"
                        from tradebus.adapters.binance.trading import stream_refusal  # ccxt's import, only on a refusal

                        raise stream_refusal(refused, body.get("code"))
                    if resp.status != 200:
                        raise NoAnswer(f"binance usdm listen key: HTTP {resp.status}")
                    return dict(body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise NoAnswer(f"binance usdm listen key: {type(exc).__name__}") from None

    async def before_connect(self) -> None:
        self._listen_key = str((await self._listen_key_request("POST"))["listenKey"])

    def connect_url(self) -> str:
        return f"{self.url}/ws/{self._listen_key}"

    def shown_url(self, url: str) -> str:
        return f"{self.url}/ws/<listenKey>"  # the key reads the account's events: never logged

    def subscribe_frames(self) -> list[str]:
        return []

    def on_frame(self, raw: str | bytes, recv_ns: int) -> None:
        try:
            events = self.parser.parse(raw)
        except ListenKeyExpired as exc:
            self.drop_connection(f"{exc}; a new one is taken")
            return
        deliver(events, self.sink, self.on_balance)

    async def on_connected(self) -> None:
        if self._keepalive is None or self._keepalive.done():
            self._keepalive = asyncio.get_running_loop().create_task(self._extend_key(), name=f"{self.name}:listen-key")
        self.confirmed()

    async def _extend_key(self) -> None:
        while True:
            await asyncio.sleep(KEY_KEEPALIVE)
            try:
                await self._listen_key_request("PUT")
            except Exception as exc:  # noqa: BLE001 - the key lapses; the reconnect takes a new one
                logger.warning("{}: listen key keep-alive failed: {}", self.name, exc)

    async def on_stopped(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            await asyncio.gather(self._keepalive, return_exceptions=True)


def _futures_user_stream(
    ws_url: str,
    api_key: SecretStr,
    api_secret: SecretStr,
    instruments: dict[str, Instrument],
    lookup: Callable[[str], Order | None],
    sink: Sink,
    on_balance: Callable[[Any], Any] | None = None,
    on_reconnect: Callable[[], Any] | None = None,
    *,
    rest_url: str,
    timeout: float = 10.0,
    **_: Any,
) -> BinanceFuturesUserStream:
    return BinanceFuturesUserStream(
        rest_url, ws_url, api_key, FuturesStreamParser(instruments, lookup), sink, on_balance, on_reconnect, timeout
    )


#: Binance USD-M perpetual live trading (:class:`~tradebus.adapters.common.venue.LiveAccount`).
LIVE_PERPETUAL = LiveAccount(
    endpoints={
        "testnet": ("https://testnet.binancefuture.com", "wss://stream.binancefuture.com"),
        "mainnet": ("https://fapi.binance.com", "wss://fstream.binance.com/private"),
    },
    trading=lazy_trading("tradebus.adapters.binance.trading", "BinanceFuturesTrading"),
    user_stream=_futures_user_stream,
    mainnet_domains=MAINNET_DOMAINS,
    fee_assets=("BNB",),  # the BNB fee discount (POST /fapi/v1/feeBurn): fees paid from the futures wallet's BNB
)
