"""Binance USD-M user data stream: order, balance and position events of one futures account.

The USD-M stream is a listen-key stream (Binance USD-M "User Data Streams"): the client gets
a ``listenKey`` with ``POST /fapi/v1/listenKey`` (``X-MBX-APIKEY`` header, no signature),
connects to ``<ws base>/ws/<listenKey>`` and extends the key with ``PUT /fapi/v1/listenKey``
every 30 minutes (it lapses after 60); every reconnect asks for the key again (``POST``
returns the active key or a new one). Events arrive bare or in a ``{"stream", "data"}`` envelope:

``ORDER_TRADE_UPDATE``
    its ``o`` object carries the same one-letter fields as spot's ``executionReport``
    (``x`` execution type, ``c`` client id, ``l``/``L`` last fill, ``n``/``N`` fee, ``t``
    trade id, ``m`` maker) and is parsed by the spot rules
    (:class:`~tradebus.adapters.binance.user_stream.UserStreamParser`). ``x=CALCULATED``
    (a liquidation) and ``AMENDMENT`` are logged, not mapped.
``ACCOUNT_UPDATE``
    ``a.B``: wallet balance ``wb`` of each asset -> :class:`AccountBalance` (``free``);
    ``a.P``: position amount ``pa`` and entry price ``ep`` of each symbol (one-way mode,
    ``ps=BOTH``) -> :class:`AccountPosition`.
``listenKeyExpired``
    the connection is closed, so the next attempt takes a fresh key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
from loguru import logger
from pydantic import SecretStr

from tradebus.adapters.binance.client import MAX_CONNECTION_AGE, binance_keepalive
from tradebus.adapters.binance.user_stream import UserStreamParser
from tradebus.adapters.common.client import Sink, WsClient
from tradebus.adapters.common.policy import Backoff, ConnectionPolicy, FatalVenueError
from tradebus.adapters.common.venue import LiveAccount
from tradebus.engine.instrument import Instrument
from tradebus.errors import ParseError
from tradebus.execution.live import AccountBalance, AccountPosition, NoAnswer
from tradebus.execution.orders import Order

__all__ = ["LIVE_PERPETUAL", "BinanceFuturesUserStream", "FuturesStreamParser"]

_MS = 1_000_000
#: Seconds between two keep-alives of the listen key (Binance: valid 60 minutes).
KEY_KEEPALIVE = 30 * 60.0


class FuturesStreamParser(UserStreamParser):
    """Parses USD-M user-data frames into order events, balances and positions (module docstring)."""

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
                if o["x"] in ("CALCULATED", "AMENDMENT"):
                    logger.warning("binance usdm user stream: {} of order {} not mapped", o["x"], o.get("c"))
                    return []
                return self._execution_report({**o, "E": event["E"]})
            if kind == "ACCOUNT_UPDATE":
                return self._account_update(event)
        except (KeyError, TypeError, ValueError) as exc:
            raise ParseError(f"binance usdm user stream: bad {kind} event: {type(exc).__name__}: {exc}") from None
        if kind == "listenKeyExpired":
            raise ListenKeyExpired("binance usdm user stream: the listen key expired")
        return []

    def _account_update(self, event: dict[str, Any]) -> list[Any]:
        ts = int(event.get("T") or event["E"]) * _MS
        data = event["a"]
        out: list[Any] = [AccountBalance(b["a"], float(b["wb"]), 0.0, ts) for b in data.get("B", [])]
        for p in data.get("P", []):
            inst = self.by_symbol.get(str(p["s"]))
            if inst is None or p.get("ps", "BOTH") != "BOTH":
                continue
            out.append(AccountPosition(inst.instrument_id, float(p["pa"]), float(p["ep"]), ts))
        return out


class ListenKeyExpired(ParseError):
    """The venue said the listen key lapsed: the connection is dropped and a new key taken."""


class BinanceFuturesUserStream(WsClient):
    """The USD-M account's user data stream (listen key), reconnecting per policy.

    Order events go to ``sink``; balances and positions to ``on_balance``; after a
    reconnect ``on_reconnect`` is called (events may have been missed).

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
        super().__init__("binance-usdm-user", sink, policy)
        self.rest_url = rest_url.rstrip("/")
        self.url = ws_url.rstrip("/")
        self._key = api_key
        self.parser = parser
        self.on_balance = on_balance
        self.on_reconnect = on_reconnect
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
                        raise FatalVenueError(f"binance usdm listen key: refused: HTTP {resp.status} {body.get('code')} {body.get('msg')}")
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
        except ListenKeyExpired:
            logger.warning("{}: listen key expired; reconnecting with a new one", self.name)
            if self._ws is not None:
                asyncio.get_running_loop().create_task(self._ws.close())
            return
        for event in events:
            if isinstance(event, (AccountBalance, AccountPosition)):
                if self.on_balance is not None:
                    self.on_balance(event)
            else:
                self.sink(event)

    async def on_connected(self) -> None:
        if self._keepalive is None or self._keepalive.done():
            self._keepalive = asyncio.get_running_loop().create_task(self._extend_key(), name=f"{self.name}:listen-key")
        if self.connections > 1 and self.on_reconnect is not None:
            self.on_reconnect()

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


def _user_stream(
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
    **_: Any,
) -> BinanceFuturesUserStream:
    return BinanceFuturesUserStream(rest_url, ws_url, api_key, FuturesStreamParser(instruments, lookup), sink, on_balance, on_reconnect)


def _trading(
    rest_url: str, api_key: SecretStr, api_secret: SecretStr, instruments: dict[str, Instrument], timeout: float, **_: Any
) -> Any:
    from tradebus.adapters.binance.futures_trading import BinanceFuturesTrading

    return BinanceFuturesTrading(rest_url, api_key, api_secret, instruments, timeout)


#: Binance USD-M perpetual live trading (:class:`~tradebus.adapters.common.venue.LiveAccount`).
LIVE_PERPETUAL = LiveAccount(
    endpoints={
        "testnet": ("https://testnet.binancefuture.com", "wss://stream.binancefuture.com"),
        "mainnet": ("https://fapi.binance.com", "wss://fstream.binance.com/private"),
    },
    trading=_trading,
    user_stream=_user_stream,
)
