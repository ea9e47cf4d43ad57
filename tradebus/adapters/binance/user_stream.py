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
``TRADE``            ``OrderFilled`` (trade id ``t``, ``l`` @ ``L``, fee ``n`` in ``N``
                     converted to the quote asset when it is the base asset; maker ``m``)
``CANCELED``         ``OrderCanceled`` (cumulative filled ``z``)
``REJECTED``         ``OrderRejected`` (reason ``r``)
``EXPIRED``          ``OrderExpired`` (``z``)
``TRADE_PREVENTION`` ``OrderExpired`` (self-trade prevention)
===================  ==========================================================

``outboundAccountPosition`` -> one :class:`~tradebus.execution.live.AccountBalance` per asset.
Events of orders this process does not know: fills are kept (the engine books them as
external fills), the rest is logged and dropped.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Callable
from typing import Any

from loguru import logger
from pydantic import SecretStr

from tradebus.adapters.common.client import Sink, WsClient
from tradebus.adapters.binance.client import MAX_CONNECTION_AGE, binance_keepalive
from tradebus.adapters.common.policy import Backoff, ConnectionPolicy, FatalVenueError
from tradebus.adapters.common.recorder import FrameRecorder
from tradebus.adapters.common.user_stream import PrivateStreamParser
from tradebus.adapters.common.venue import LiveAccount
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import (
    Liquidity,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderSide,
    OrderStatus,
)
from tradebus.errors import ParseError
from tradebus.execution.live import AccountBalance
from tradebus.execution.orders import Order

__all__ = ["LIVE_ACCOUNT", "BinanceUserStream", "UserStreamParser", "sign_params"]

_MS = 1_000_000
_UNACKNOWLEDGED = frozenset({OrderStatus.INITIALIZED, OrderStatus.SUBMITTED, OrderStatus.UNKNOWN})


def sign_params(params: dict[str, Any], secret: SecretStr) -> str:
    """HMAC-SHA256 (hex) of ``params`` sorted by name as ``k=v&...`` (the WebSocket API's signature payload)."""
    payload = "&".join(f"{k}={params[k]}" for k in sorted(params))
    return hmac.new(secret.get_secret_value().encode(), payload.encode(), hashlib.sha256).hexdigest()


class UserStreamParser(PrivateStreamParser):
    """Parses Binance user-data frames into core order events and balances (see the module docstring).

    Parameters as :class:`~tradebus.adapters.common.user_stream.PrivateStreamParser`.
    """

    def __init__(
        self,
        instruments: dict[str, Instrument],
        lookup: Callable[[str], Order | None],
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        super().__init__(instruments, lookup, clock_ns, venue="BINANCE")

    def parse(self, raw: str | bytes) -> list[Any]:
        """The events of one frame (empty for answers to requests and unhandled event types).

        Raises
        ------
        ParseError
            Not JSON, or an event missing a field (named).
        FatalVenueError
            The venue refused the subscription (an error answer to a request).
        """
        msg = self.decode(raw, "binance")
        if "status" in msg and "id" in msg:
            if msg["status"] != 200:
                error = msg.get("error", {})
                raise FatalVenueError(f"binance user stream: request refused: {error.get('code')} {error.get('msg')}")
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
            logger.warning("binance user stream: the venue terminated the subscription")
        return []

    def _execution_report(self, ev: dict[str, Any]) -> list[Any]:
        coid = str(ev["c"])
        x = ev["x"]
        if x == "CANCELED" and ev.get("C"):
            coid = str(ev["C"])  # a cancel carries the original id in C and the cancel's id in c
        order, sid, iid, inst = self.context(coid, str(ev["s"]))
        now = self.clock_ns()
        ts = int(ev.get("T") or ev["E"]) * _MS
        if x == "TRADE":
            px = float(ev["L"])
            fee = self.quote_fee(float(ev["n"] or 0.0), str(ev.get("N")), px, inst)
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
        if x in ("EXPIRED", "TRADE_PREVENTION"):
            why = "expired" if x == "EXPIRED" else "self-trade prevention"
            return [OrderExpired(sid, iid, coid, why, ts, now, float(ev["z"]))]
        logger.debug("binance user stream: execution type {} of {} not mapped", x, coid)
        return []


class BinanceUserStream(WsClient):
    """The account's user data stream over the WebSocket API, reconnecting per policy.

    Every parsed order event goes to ``sink`` and every balance to ``on_balance``. After a
    reconnect (events may have been missed while disconnected) ``on_reconnect`` is called.

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
        super().__init__("binance-user", sink, policy, recorder)
        self.url = ws_api_url
        self._key = api_key
        self._secret = api_secret
        self.parser = parser
        self.on_balance = on_balance
        self.on_reconnect = on_reconnect
        self._ids = itertools.count(1)

    def connect_url(self) -> str:
        return self.url

    def subscribe_frames(self) -> list[str]:
        params: dict[str, Any] = {"apiKey": self._key.get_secret_value(), "timestamp": int(time.time() * 1000)}
        params["signature"] = sign_params(params, self._secret)
        return [json.dumps({"id": f"uds-{next(self._ids)}", "method": "userDataStream.subscribe.signature", "params": params})]

    def on_frame(self, raw: str | bytes, recv_ns: int) -> None:
        for event in self.parser.parse(raw):
            if isinstance(event, AccountBalance):
                if self.on_balance is not None:
                    self.on_balance(event)
            else:
                self.sink(event)

    async def on_connected(self) -> None:
        if self.connections > 1 and self.on_reconnect is not None:
            self.on_reconnect()


def _user_stream(
    ws_url: str,
    api_key: SecretStr,
    api_secret: SecretStr,
    instruments: dict[str, Instrument],
    lookup: Callable[[str], Order | None],
    sink: Sink,
    on_balance: Callable[[AccountBalance], Any] | None = None,
    on_reconnect: Callable[[], Any] | None = None,
    **_: Any,
) -> BinanceUserStream:
    return BinanceUserStream(ws_url, api_key, api_secret, UserStreamParser(instruments, lookup), sink, on_balance, on_reconnect)


def _trading(
    rest_url: str, api_key: SecretStr, api_secret: SecretStr, instruments: dict[str, Instrument], timeout: float, **_: Any
) -> Any:
    from tradebus.adapters.binance.trading import BinanceTrading

    return BinanceTrading(rest_url, api_key, api_secret, instruments, timeout)


#: Binance spot live trading, as the registry's adapter offers it (:class:`~tradebus.adapters.common.venue.LiveAccount`).
LIVE_ACCOUNT = LiveAccount(
    endpoints={
        "testnet": ("https://testnet.binance.vision", "wss://ws-api.testnet.binance.vision/ws-api/v3"),
        "mainnet": ("https://api.binance.com", "wss://ws-api.binance.com:443/ws-api/v3"),
    },
    trading=_trading,
    user_stream=_user_stream,
)
