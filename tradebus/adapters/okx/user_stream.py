"""OKX v5 private channels, parsed into core events: ``orders`` and ``account`` (after ``login``).

``orders`` (one update per order change; ``arg.channel == "orders"``):

=================================  ==================================================
``tradeId`` set, ``fillSz`` > 0    ``OrderFilled`` (trade id ``tradeId``, ``fillSz`` @ ``fillPx``,
                                   fee ``-fee`` -- OKX reports a charge as negative -- in
                                   ``feeCcy``, valued in the quote asset; ``execType`` M/T)
``state == "live"``                ``OrderAccepted`` (venue order id ``ordId``)
``canceled`` / ``mmp_canceled``    ``OrderCanceled`` (cumulative filled ``accFillSz``)
=================================  ==================================================

A ``filled`` or ``partially_filled`` update carries its fill (booked as above); the order
manager derives the status from the fills. ``account`` -> one
:class:`~tradebus.execution.live.AccountBalance` per currency of ``details`` (``availBal``
free, ``frozenBal`` locked). ``login``/``subscribe`` answers yield nothing; an ``error``
event is fatal. Not wired to a live venue yet (no OKX ``trading.py``).
"""

from __future__ import annotations

from typing import Any

from tradebus.adapters.common.policy import FatalVenueError
from tradebus.adapters.common.user_stream import PrivateStreamParser
from tradebus.engine.messages import Liquidity, OrderAccepted, OrderCanceled, OrderFilled, OrderSide
from tradebus.errors import ParseError
from tradebus.execution.live import AccountBalance

__all__ = ["UserStreamParser"]

_MS = 1_000_000


class UserStreamParser(PrivateStreamParser):
    """OKX ``orders`` / ``account`` frames -> core events (see the module docstring)."""

    def parse(self, raw: str | bytes) -> list[Any]:
        msg = self.decode(raw, "okx")
        if "event" in msg:
            if msg["event"] == "error":
                raise FatalVenueError(f"okx user stream: {msg.get('code')} {msg.get('msg')}")
            return []
        channel = (msg.get("arg") or {}).get("channel")
        data = msg.get("data")
        if not isinstance(data, list):
            raise ParseError(f"okx user stream: no data list in {str(raw)[:120]!r}")
        try:
            if channel == "orders":
                return [event for row in data for event in self._order(row)]
            if channel == "account":
                return [
                    AccountBalance(d["ccy"], float(d["availBal"] or 0.0), float(d["frozenBal"] or 0.0), int(row["uTime"]) * _MS)
                    for row in data
                    for d in row["details"]
                ]
        except (KeyError, TypeError, ValueError) as exc:
            raise ParseError(f"okx user stream: bad {channel} update: {type(exc).__name__}: {exc}") from None
        return []

    def _order(self, row: dict[str, Any]) -> list[Any]:
        coid = str(row["clOrdId"])
        order, sid, iid, inst = self.context(coid, str(row["instId"]))
        now = self.clock_ns()
        state = row["state"]
        out: list[Any] = []
        if row.get("tradeId") and float(row.get("fillSz") or 0.0) > 0.0:
            px = float(row["fillPx"])
            ts = int(row.get("fillTime") or row["uTime"]) * _MS
            fee = self.quote_fee(-float(row.get("fillFee") or row.get("fee") or 0.0), str(row.get("feeCcy")), px, inst)
            out.append(
                OrderFilled(
                    sid,
                    iid,
                    coid,
                    str(row["ordId"]),
                    str(row["tradeId"]),
                    OrderSide.BUY if row["side"] == "buy" else OrderSide.SELL,
                    float(row["fillSz"]),
                    px,
                    fee,
                    Liquidity.MAKER if row.get("execType") == "M" else Liquidity.TAKER,
                    ts,
                    now,
                )
            )
        if order is None:
            return out
        ts = int(row["uTime"]) * _MS
        if state == "live":
            out.append(OrderAccepted(sid, iid, coid, str(row["ordId"]), ts, now))
        elif state in ("canceled", "mmp_canceled"):
            why = row.get("cancelSourceReason") or "canceled"
            out.append(OrderCanceled(sid, iid, coid, str(why), ts, now, float(row.get("accFillSz") or 0.0)))
        return out
