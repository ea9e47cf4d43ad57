"""Bybit v5 private topics, parsed into core events: ``order``, ``execution``, ``wallet``, ``position`` (after ``auth``).

``execution`` with ``execType == "Trade"`` -> ``OrderFilled`` (trade id ``execId``,
``execQty`` @ ``execPrice``, fee ``execFee`` in ``feeCurrency`` (the quote asset when absent), ``isMaker``;
the order's cumulative filled quantity ``orderQty - leavesQty``: the execution carries no ``cumExecQty``,
and the ``order`` push that does may come before its execution's);
with ``execType == "Funding"`` (a linear position's funding settlement: ``execFee`` the fee paid,
negative when received, ``feeRate`` the rate, ``execPrice`` the mark) -> the venue's
``FundingPaid`` of the traded perpetual (the kernel books it: live, the venue's funding is the
one booked; quantity, mark and rate NaN, as every venue payment).
``order`` by ``orderStatus``:

==========================================  ==========================================
``New`` / ``Untriggered``                   ``OrderAccepted`` (venue order id ``orderId``;
                                            ``Untriggered``: a conditional order waiting)
``Triggered``                               ``OrderTriggered`` (a conditional order's trigger
                                            was reached; it goes on as ``New``, fills ...)
``Cancelled`` / ``PartiallyFilledCanceled``  ``OrderCanceled`` (cumulative ``cumExecQty``;
                                            reason ``rejectReason``, else ``cancelType``)
``Rejected``                                ``OrderRejected`` (``rejectReason``)
``Deactivated``                             ``OrderExpired``
``PartiallyFilled`` / ``Filled``            ``OrderFillsReported`` (cumulative ``cumExecQty``;
                                            the fills come from ``execution``, before or
                                            after it: the engine queries the order only if
                                            still short after a grace)
``New`` / ``PartiallyFilled`` /             also ``OrderTermsReported`` (``qty``, ``price``,
``Untriggered``                             ``triggerPrice``) when they differ from the
                                            order's: an amend, made by a user at the venue
                                            unless this process's own is on its way
==========================================  ==========================================

``wallet`` -> one :class:`~tradebus.execution.live.AccountBalance` per ``coin``
(``walletBalance`` total, of which ``availableToWithdraw`` free). ``position`` -> one
:class:`~tradebus.execution.live.AccountPosition` per row of a traded perpetual in one-way
mode (``positionIdx`` 0): ``size`` signed by ``side`` (``Buy`` long, ``Sell`` short, ``""``
flat), entry ``entryPrice``. ``auth``/``subscribe``
answers yield nothing; a failed one is fatal, but for an ``auth`` refused for its ``expires`` (:data:`AUTH_EXPIRED_WORDS`:
Bybit's clock is measured and the stream logs in again). Linear instruments are named
``<SYMBOL>-LINEAR`` in tradebus and ``<SYMBOL>`` on the wire.

:func:`auth_frame` signs the ``auth`` op; :data:`LIVE_ACCOUNT` runs the parser on a
:class:`~tradebus.adapters.common.user_stream.PrivateStream` (auth, then ``order``,
``execution`` and ``wallet``; ``{"op":"ping"}`` every 20 s) and the REST side of ``trading.py``;
:data:`LIVE_PERPETUAL` the same for USDT perpetuals (``category=linear``), also subscribed to
``position``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
from collections.abc import Callable
from typing import Any

from pydantic import SecretStr

from tradebus.adapters.bybit.client import bybit_keepalive
from tradebus.adapters.common.client import Sink
from tradebus.adapters.common.policy import Backoff, ConnectionPolicy, FatalVenueError
from tradebus.adapters.common.user_stream import UNACKNOWLEDGED, PrivateStream, PrivateStreamParser, venue_fee, venue_number
from tradebus.adapters.common.venue import LiveAccount, lazy_trading
from tradebus.adapters.common.venue_clock import TimestampRefused, VenueClock
from tradebus.engine.instrument import Instrument, InstrumentKind
from tradebus.engine.messages import (
    FundingPaid,
    Liquidity,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderFillsReported,
    OrderRejected,
    OrderSide,
    OrderTriggered,
)
from tradebus.errors import ParseError
from tradebus.execution.live import AccountBalance, AccountPosition, CredentialsRefused
from tradebus.execution.orders import Order

__all__ = ["AUTH_EXPIRED_WORDS", "LIVE_ACCOUNT", "LIVE_PERPETUAL", "SUBSCRIBE", "SUBSCRIBE_LINEAR", "UserStreamParser", "auth_frame", "position_from_row", "wire_symbol"]

_MS = 1_000_000


def wire_symbol(inst: Instrument) -> str:
    """The instrument's symbol on Bybit's wire (a linear one is ``<SYMBOL>-LINEAR`` in tradebus)."""
    return inst.symbol.removesuffix("-LINEAR")


def position_from_row(row: dict[str, Any], instrument: Instrument) -> AccountPosition:
    """An :class:`AccountPosition` from a position row (REST ``avgPrice``, stream ``entryPrice``; ``side`` gives the sign).

    A row of ``positionIdx`` 1 or 2 (a side of a hedge-mode account) is not ``one_way``.
    """
    size = float(row.get("size") or 0.0)
    sign = {"Buy": 1.0, "Sell": -1.0}.get(str(row.get("side") or ""), 0.0)
    entry = float(row.get("avgPrice") or row.get("entryPrice") or 0.0)
    one_way = int(row.get("positionIdx") or 0) == 0
    return AccountPosition(instrument.instrument_id, sign * size, entry, int(row.get("updatedTime") or 0) * _MS, one_way)


#: Bybit's words refusing an ``auth`` whose ``expires`` has passed on its clock (lower case, found in ``ret_msg``): V5's
#: "Params Error" (users meet it for an ``expires`` 1 s ahead where 10 s passes, pybit issues 152 and 300: "check your API
#: keys and resync your system time"; the WebSocket trade API's auth table has ``10001`` "param error" beside ``10004``
#: "invalid sign") and the v2 private stream's "error:request expired". A key or signature refused is worded otherwise:
#: :class:`~tradebus.execution.live.CredentialsRefused`; these are
#: :class:`~tradebus.adapters.common.venue_clock.TimestampRefused`: the stream measures Bybit's clock and logs in again
#: (:class:`~tradebus.adapters.common.user_stream.PrivateStream`).
AUTH_EXPIRED_WORDS = ("params error", "request expired")


class UserStreamParser(PrivateStreamParser):
    """Bybit ``order`` / ``execution`` / ``wallet`` / ``position`` frames -> core events (see the module docstring)."""

    def __init__(self, instruments: dict[str, Instrument], lookup: Callable[[str], Order | None], **kw: Any) -> None:
        super().__init__(instruments, lookup, symbol_of=wire_symbol, venue="BYBIT", **kw)

    def parse(self, raw: str | bytes) -> list[Any]:
        msg = self.decode(raw, "bybit")
        if "op" in msg:
            if msg.get("success") is False:
                text = str(msg.get("ret_msg"))
                if msg.get("op") == "auth" and any(words in text.lower() for words in AUTH_EXPIRED_WORDS):
                    # the stream measures Bybit's clock, then logs in again
                    raise TimestampRefused(f"bybit user stream: auth refused for its expires, {text!r} (Bybit's answer "
                                           "to an auth whose expires has passed on its clock)")
                refusal = CredentialsRefused if msg.get("op") == "auth" else FatalVenueError  # else the key or secret
                raise refusal(f"bybit user stream: {msg.get('op')} refused: {text}")
            return []
        topic = str(msg.get("topic", ""))
        data = msg.get("data")
        if not isinstance(data, list):
            raise ParseError(f"bybit user stream: no data list in {str(raw)[:120]!r}")
        try:
            if topic == "execution":
                return [event for row in data for event in self._execution(row)]
            if topic == "order":
                return [event for row in data for event in self._order(row)]
            if topic == "wallet":
                ts = int(msg.get("creationTime") or 0) * _MS
                out = []
                for account in data:
                    for coin in account["coin"]:
                        total = float(coin["walletBalance"] or 0.0)
                        free = float(coin.get("availableToWithdraw") or total)
                        out.append(AccountBalance(coin["coin"], free, total - free, ts))
                return out
            if topic == "position":
                return [position_from_row(row, inst) for row in data if (inst := self._perpetual(row)) is not None]
        except (KeyError, TypeError, ValueError) as exc:
            raise ParseError(f"bybit user stream: bad {topic} update: {type(exc).__name__}: {exc}") from None
        return []

    def _perpetual(self, row: dict[str, Any]) -> Instrument | None:
        """The traded perpetual of a position row (``None``: another symbol; a hedge-mode side is not ``one_way``)."""
        inst = self.by_symbol.get(str(row["symbol"]))
        if inst is None or inst.kind is not InstrumentKind.PERPETUAL:
            return None
        return inst

    def _execution(self, row: dict[str, Any]) -> list[OrderFilled | FundingPaid]:
        """A trade's fill, or the venue's funding payment of a traded perpetual (other kinds: nothing)."""
        kind = row.get("execType")
        if kind == "Trade":
            return [self._fill(row)]
        if kind == "Funding" and (inst := self._perpetual(row)) is not None:
            # the settlement's mark price and funding rate are the row's execPrice and feeRate
            mark, rate = (float(row.get(key) or math.nan) for key in ("execPrice", "feeRate"))
            return [FundingPaid(inst.instrument_id, math.nan, mark, rate, float(row["execFee"]), int(row["execTime"]) * _MS,
                                self.clock_ns())]
        return []

    def _fill(self, row: dict[str, Any]) -> OrderFilled:
        coid = str(row["orderLinkId"])
        _, sid, iid, inst = self.context(coid, str(row["symbol"]))
        ts = int(row["execTime"]) * _MS
        fee, fee_asset = venue_fee(float(row["execFee"] or 0.0), row.get("feeCurrency"), inst)
        leaves, quantity = row.get("leavesQty"), row.get("orderQty")
        filled = float(quantity) - float(leaves) if leaves and quantity else 0.0
        return OrderFilled(
            sid,
            iid,
            coid,
            str(row["orderId"]),
            str(row["execId"]),
            OrderSide.BUY if row["side"] == "Buy" else OrderSide.SELL,
            float(row["execQty"]),
            float(row["execPrice"]),
            fee,
            Liquidity.MAKER if row.get("isMaker") else Liquidity.TAKER,
            ts,
            self.clock_ns(),
            fee_asset,
            filled,
        )

    def _order(self, row: dict[str, Any]) -> list[Any]:
        coid = str(row["orderLinkId"])
        frame = self.context(coid, str(row["symbol"]))
        order, sid, iid, _ = frame
        if order is None:
            return []
        ts = int(row["updatedTime"]) * _MS
        now = self.clock_ns()
        status = row["orderStatus"]
        terms: list[Any] = []
        if status in ("New", "PartiallyFilled", "Untriggered"):  # an amend's push tells the new qty / price / triggerPrice
            terms = self.terms(order, frame, venue_number(row.get("qty")), venue_number(row.get("price")),
                               venue_number(row.get("triggerPrice")), ts)
        if status in ("New", "Untriggered") and order.status in UNACKNOWLEDGED:  # else the REST answer told it first
            return [OrderAccepted(sid, iid, coid, str(row["orderId"]), ts, now), *terms]
        if status == "Triggered":
            return [OrderTriggered(sid, iid, coid, ts, now)]
        if status in ("Cancelled", "PartiallyFilledCanceled"):
            reject = row.get("rejectReason")
            why = reject if reject not in (None, "", "EC_NoError") else row.get("cancelType") or "canceled"
            return [OrderCanceled(sid, iid, coid, str(why), ts, now, float(row.get("cumExecQty") or 0.0))]
        if status == "Rejected":
            return [OrderRejected(sid, iid, coid, f"rejected by Bybit: {row.get('rejectReason', '')}", ts, now)]
        if status == "Deactivated":
            return [OrderExpired(sid, iid, coid, "deactivated", ts, now, float(row.get("cumExecQty") or 0.0))]
        if status in ("PartiallyFilled", "Filled"):
            return [OrderFillsReported(sid, iid, coid, float(row.get("cumExecQty") or 0.0), ts, now), *terms]
        return terms


def auth_frame(api_key: SecretStr, api_secret: SecretStr, now: Callable[[], float] = time.time, ttl: float = 10.0) -> str:
    """Bybit's ``auth`` op: ``[key, expires (ms), hex HMAC-SHA256 of "GET/realtime" + expires]``."""
    expires = int((now() + ttl) * 1000)
    sign = hmac.new(api_secret.get_secret_value().encode(), f"GET/realtime{expires}".encode(), hashlib.sha256).hexdigest()
    return json.dumps({"op": "auth", "args": [api_key.get_secret_value(), expires, sign]})


#: The private topics subscribed once authenticated (spot; linear adds ``position``).
SUBSCRIBE = json.dumps({"op": "subscribe", "args": ["order", "execution", "wallet"]})
SUBSCRIBE_LINEAR = json.dumps({"op": "subscribe", "args": ["order", "execution", "position", "wallet"]})


def _is_auth_ack(msg: dict[str, Any]) -> bool:
    return msg.get("op") == "auth" and msg.get("success") is True


def _is_subscribe_ack(msg: dict[str, Any]) -> bool:
    return msg.get("op") == "subscribe" and msg.get("success") is True


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
    subscribe: str = SUBSCRIBE,
    venue_clock: VenueClock | None = None,
    **_: Any,
) -> PrivateStream:
    policy = ConnectionPolicy(backoff=Backoff(base=0.2, cap=10.0, min_delay=0.05), keepalive=bybit_keepalive(), stale_after=1e9)
    now = venue_clock.now if venue_clock is not None else time.time
    return PrivateStream(
        "bybit-private", ws_url, policy, UserStreamParser(instruments, lookup), lambda: auth_frame(api_key, api_secret, now),
        _is_auth_ack, subscribe, _is_subscribe_ack, sink, on_balance, on_reconnect, venue_clock=venue_clock,
    )


def _linear_user_stream(*args: Any, **kwargs: Any) -> PrivateStream:
    return _user_stream(*args, **kwargs, subscribe=SUBSCRIBE_LINEAR)


#: Bybit spot live trading, as the registry's adapter offers it (the testnet is its own host).
LIVE_ACCOUNT = LiveAccount(
    endpoints={
        "testnet": ("https://api-testnet.bybit.com", "wss://stream-testnet.bybit.com/v5/private"),
        "mainnet": ("https://api.bybit.com", "wss://stream.bybit.com/v5/private"),
    },
    trading=lazy_trading("tradebus.adapters.bybit.trading", "BybitTrading"),
    user_stream=_user_stream,
    # api.bybit.com and its alternative api.bytick.com; the testnet's hosts are the -testnet ones of bybit.com
    mainnet_domains=("bybit.com", "bytick.com"),
    # demo trading (docs/v5/demo): an account of its own with its own keys, not traded here
    other_hosts={"api-demo.bybit.com": "demo trading", "stream-demo.bybit.com": "demo trading"},
)

#: Bybit USDT-perpetual live trading (``category=linear``, one-way mode) on the same unified account and hosts.
LIVE_PERPETUAL = LiveAccount(
    endpoints=LIVE_ACCOUNT.endpoints,
    mainnet_domains=LIVE_ACCOUNT.mainnet_domains,
    other_hosts=LIVE_ACCOUNT.other_hosts,
    trading=lazy_trading("tradebus.adapters.bybit.trading", "BybitLinearTrading"),
    user_stream=_linear_user_stream,
)
