"""What the local account emulators of Binance, OKX and Bybit share: matching, the order book of the account, faults, sessions.

A venue's ``private_emulator.py`` subclasses :class:`AccountEmulator` with its dialect: the
REST routes and their signature check, the private WebSocket's login and subscriptions, and
how an order, a fill and a balance are written on its wire. The base runs an aiohttp server
on 127.0.0.1 and keeps the account:

* orders are matched by a :class:`~tradebus.execution.simulated.SimulatedVenue` (fills on
  trades) against the public trades given to :meth:`AccountEmulator.on_trade`, and a new limit
  order is judged marketable against the best bid and ask given to :meth:`AccountEmulator.on_quote`
  (against the last trade until the first): a venue's ``MatchingProtocol`` feeds it every trade
  frame the public emulator sends and every best bid and ask its recording carries, whether the
  client subscribed to them or not (Binance ``bookTicker`` and the depth book, OKX ``tickers``,
  ``bbo-tbt`` and books, Bybit books); the account's
  clock is the venue's server time, the wall clock at each request and trade (a trade stamped
  later keeps its time: the clock never goes back), so an order fills at the first trade after
  it arrived and the account's orders, fills and events carry the times the client's clock
  knows, whatever the times of a replayed capture;
* every order (:class:`EmulatedOrder`), every fill (:attr:`AccountEmulator.fills`) and the
  balances, spot style (a buy adds the base asset and pays the quote asset and the fee), or,
  for a derivatives dialect (:attr:`AccountEmulator.linear_positions`), one-way linear
  positions: the position of each symbol is the matching venue's, its entry price the average
  of the fills that opened it (:attr:`AccountEmulator.entry`), and the quote wallet moves by
  realized PnL (``closed * (price - entry) * contract_size``, signed) and fees;
* faults (:class:`RestFault`, :class:`StreamFault`), each firing once on the ``at``-th
  matching request or frame (0-based):

  ``lose``        REST: processed, then the connection is closed unanswered
  ``error5xx``    REST: ``503`` from the gateway (an HTML body) before processing (nothing happens)
  ``rate_limit``  REST: the dialect's rate-limit answer (:meth:`AccountEmulator.rate_limited`;
                  ``429`` with ``Retry-After`` unless the venue says otherwise) before processing
  ``ban``         REST: the dialect's IP-ban answer (:meth:`AccountEmulator.banned`; ``418`` with
                  ``Retry-After`` unless the venue says otherwise) before processing
  ``refuse``      REST: the dialect's refusal of the request with the venue's error code ``code``
                  (:meth:`AccountEmulator.refused_with`) before processing (nothing happens); with
                  ``processed``, after processing (an answer such as Bybit's ``10016``, "server error /
                  service restarting", that says nothing of what was done)
  ``busy``        REST: the dialect's server-busy answer (:meth:`AccountEmulator.busy_answer`: HTTP ``503``
                  with :attr:`AccountEmulator.busy_code` unless the venue says otherwise) before processing
                  (nothing happens)
  ``slow``        REST: processed, answered ``seconds`` later (the answer tells the state
                  at processing: what happens meanwhile is not in it)
  ``hold``        REST: processed and answered once ``release`` is set (the venue busy with the
                  request meanwhile: an OKX cancel, whose order is "being canceled" until then)
  ``late``        REST: processed (its stream frames sent), answered once ``release`` is set; the
                  answer as at processing (a slow network: the stream's frames come first)

  A held request of a ``windowed`` fault is processed only if its signature's time window still
  holds at its release (the dialect's check made again: Bybit's ``X-BAPI-RECV-WINDOW``, OKX's
  :attr:`~tradebus.adapters.okx.private_emulator.OkxPrivateEmulator.timestamp_expiry_s`), else refused
  as the venue refuses an expired request: the venue applying a request late, within its window.

  A fault of another kind given a ``release`` is held so first, then does what its kind does:
  two faults on one request (a fill racing a request the venue then refuses).
  ``duplicate``   stream: the frame is sent twice
  ``drop``        stream: the frame is not sent
  ``delay``       stream: sent after ``seconds``
  ``reorder``     stream: held back and sent after the next frame

Departures from the venues, documented by each dialect: a MARKET order is acknowledged and
fills at the next public trade; locked balances are not tracked (the Binance spot dialect tracks them).
"""

from __future__ import annotations

import asyncio
import math
import ssl
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
from aiohttp import WSMsgType, web
from loguru import logger

from tradebus.adapters.common.book import OrderBook
from tradebus.engine.clock import SimulatedClock
from tradebus.engine.instrument import Instrument
from tradebus.engine.perpetuals import VENUE_FUNDING_MATCH_NS
from tradebus.engine.messages import (
    ModifyOrder,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderSide,
    OrderStatus,
    Quote,
    Trade,
)
from tradebus.execution.config import VenueConfig
from tradebus.execution.orders import Order
from tradebus.execution.simulated import SimulatedVenue

__all__ = ["AccountEmulator", "EmulatedFill", "EmulatedOrder", "RestFault", "StreamFault", "WsSession"]

_MS = 1_000_000
_Seen = TypeVar("_Seen", Trade, Quote)
#: Statuses of an order still working at the venue.
OPEN = frozenset({OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED})


@dataclass
class RestFault:
    """One REST fault: ``kind`` on the ``at``-th request of ``method`` ``path`` (see the module docstring)."""

    kind: str
    method: str
    path: str
    at: int = 0
    retry_after: float = 1
    seconds: float = 0.0
    seen: int = 0
    fired: bool = False
    #: The venue's error code of a ``refuse`` fault.
    code: str = ""
    #: A ``refuse`` fault answers after processing the request (default: before, nothing happens).
    processed: bool = False
    #: What a ``hold`` fault (or one of another kind held first) waits for before processing the request; a ``late``
    #: fault, before answering it.
    release: asyncio.Event | None = None
    #: A held request is processed only while its signature's time window lasts (the dialect's check of the request,
    #: :meth:`AccountEmulator.authenticate`, made again at its release: Bybit's ``X-BAPI-RECV-WINDOW``, OKX's 30 s):
    #: one released later is refused as the venue refuses an expired request, nothing done.
    windowed: bool = False


@dataclass
class StreamFault:
    """One private-stream fault: ``kind`` on the ``at``-th frame containing ``match``."""

    kind: str
    match: str
    at: int = 0
    seconds: float = 0.0
    seen: int = 0
    fired: bool = False


@dataclass
class EmulatedOrder:
    """One order of the account (``order_id`` is the venue's id, ``status`` the core status)."""

    order: Order
    symbol: str
    order_id: int
    time_ms: int
    status: OrderStatus = OrderStatus.ACCEPTED
    update_ms: int = 0
    filled: float = 0.0
    reason: str = ""
    #: The order's fills, in order (its quote volume is their sum).
    fills: list[OrderFilled] = field(default_factory=list)


@dataclass(frozen=True)
class EmulatedFill:
    """One fill of the account: the order, the simulated fill, the venue's trade id, the fee as charged.

    ``fee`` is an amount of ``fee_asset`` (``""``: the quote asset, the simulated fill's fee);
    ``filled`` the order's cumulative filled quantity once this fill was made.
    """

    rec: EmulatedOrder
    fill: OrderFilled
    trade_id: int
    fee: float = 0.0
    fee_asset: str = ""
    filled: float = 0.0


@dataclass
class WsSession:
    """One private WebSocket connection: logged in or not, its subscriptions, its send queue.

    ``queued`` counts the frames given to :meth:`send` (answers and pushes): once the client has
    received that many on this connection, it has everything the emulator sent it so far.
    """

    ws: web.WebSocketResponse
    authed: bool = False
    topics: set[str] = field(default_factory=set)
    queue: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    queued: int = 0

    def send(self, frame: str) -> None:
        """Queue ``frame`` for this connection (sent in order by the emulator's sender task)."""
        self.queued += 1
        self.queue.put_nowait(frame)


class AccountEmulator(ABC):
    """The emulated account (see the module docstring).

    Parameters
    ----------
    api_key, api_secret
        The one key pair it accepts (test values).
    instruments
        ``instrument_id -> Instrument`` it trades.
    balances
        Starting free balances per asset.
    rest_faults, stream_faults
        Faults to inject.
    passphrase
        The key's passphrase, for the venues that have one.
    trade_size_limit
        A public trade fills at most its own size of the working orders (in their order);
        default: every order its price reaches fills in full.
    """

    #: Path of the private WebSocket.
    ws_path: str = "/ws"
    #: The venue's error code of a rate-limited request.
    rate_limit_code: int = 429
    #: The venue's error code of an answer "server busy, try again" (the ``busy`` fault; ``None``: the dialect has none).
    busy_code: int | str | None = None
    #: A derivatives account: one-way linear positions and a quote wallet instead of spot balances.
    linear_positions: bool = False
    #: ``(asset, its price in the quote asset)``: a fill's fee (spot, or a derivatives account's) is
    #: charged in that asset, worth the simulated fee, while its balance covers it (Binance's BNB fee
    #: discount, the discount itself left out); ``None``: in the quote asset. A rebate (a negative fee)
    #: is not a fee paid: it is credited as without it (the quote asset, or per :attr:`fee_in_received`).
    fee_in: tuple[str, float] | None = None
    #: A spot buy's fee is charged in the base asset it receives, worth the simulated fee at the
    #: fill price, to 8 decimals (Binance without BNB: buy 0.01 BTC, receive 0.00999); a sell's
    #: stays in the quote asset it receives. :attr:`fee_in` comes first while its balance covers it.
    fee_in_received: bool = False
    #: With :attr:`fee_in_received`, a spot buy's rebate (a negative fee, a maker's) is paid in the
    #: quote asset, not the base asset it receives (OKX's ``rebateCcy``, Bybit's spot fee currency
    #: rule); set by each venue's emulator.
    rebate_in_quote: bool = False
    #: With :attr:`fee_in_received`, a spot sell's rebate is paid in the base asset it gives, not the
    #: quote asset it receives (Bybit's spot fee currency rule: maker, negative maker fee, Sell -> base);
    #: set by each venue's emulator.
    sell_rebate_in_base: bool = False

    def __init__(
        self,
        api_key: str,
        api_secret: str,
        instruments: dict[str, Instrument],
        balances: dict[str, float] | None = None,
        rest_faults: list[RestFault] | None = None,
        stream_faults: list[StreamFault] | None = None,
        passphrase: str = "",
        *,
        trade_size_limit: bool = False,
    ) -> None:
        self.key = api_key
        #: The venue's time, seconds since the epoch: what a signed request's or a login's timestamp is judged against
        #: and the time endpoint (:attr:`time_path`) answers. The wall clock unless a test sets its own (a venue's
        #: clock apart from this machine's).
        self.venue_time: Callable[[], float] = time.time
        self.secret = api_secret.encode()
        self.passphrase = passphrase
        self.instruments = {self.symbol_of(inst): inst for inst in instruments.values()}
        self.balances: dict[str, float] = dict(balances or {})
        self.rest_faults = list(rest_faults or [])
        #: The fault of the REST request whose handler runs now (``None``: none, or no handler running).
        self.firing: RestFault | None = None
        self.stream_faults = list(stream_faults or [])
        self.clock = SimulatedClock()
        self.venue = SimulatedVenue(self.clock, dict(instruments), VenueConfig(fill_on="trades", trade_size_limit=trade_size_limit), arrival_alerts=True)
        self.venue.bind(self._on_venue_event)
        self.orders: dict[str, EmulatedOrder] = {}
        #: Every fill of the account, in order.
        self.fills: list[EmulatedFill] = []
        #: How far back the own-trades lists reach (every dialect's: :meth:`beyond_history`), ns before the
        #: account's clock (``None``: every fill).
        #: A test setting, labelled as such: real venues keep a window (OKX ``/trade/fills`` 3 days, Bybit's
        #: execution list 7 days); an older fill is no longer listed though its order still counts it filled.
        self.trade_history_ns: int | None = None
        #: ``trade id -> how many more own-trades reads leave that fill out`` (every dialect's trade list:
        #: :meth:`listed_late_read`). A test setting: Binance and Bybit list a fill in their trade history a few
        #: seconds after its order counts it filled.
        self.listed_late: dict[int, int] = {}
        #: Entry price of each symbol's position (derivatives dialects only).
        self.entry: dict[str, float] = {}
        #: ``(method, path, client order id)`` of every authenticated request.
        self.requests: list[tuple[str, str, str]] = []
        self.sessions: list[WsSession] = []
        #: While an unset event, the frames clients send on the private WebSocket (but the keep-alive,
        #: :meth:`is_keepalive`) wait, unanswered, until it is set (a venue slow to confirm a login or a
        #: subscription; its gateway answers pings); :attr:`held_frames` counts them.
        self.hold_frames: asyncio.Event | None = None
        self.held_frames = 0
        self._held: dict[int, str] = {}
        self._delayed = 0
        self._order_ids = 0
        self._placing: EmulatedOrder | None = None
        self._placing_events: list[Any] = []
        self._runner: web.AppRunner | None = None
        self.port = 0
        #: The port serving the same app over TLS (0: none, see :meth:`start`).
        self.tls_port = 0

    # ------------------------------------------------------------------ dialect

    def symbol_of(self, inst: Instrument) -> str:
        """The venue's symbol of an instrument on the wire."""
        return inst.symbol

    @abstractmethod
    def routes(self) -> dict[tuple[str, str], Callable[[dict[str, Any]], web.Response]]:
        """``(method, path) -> handler(params)`` of the emulated REST endpoints."""

    @abstractmethod
    def authenticate(self, request: web.Request, body: str) -> web.Response | None:
        """The venue's error answer when the request's key, signature or timestamp is wrong, else ``None``."""

    @abstractmethod
    def params(self, request: web.Request, body: str) -> dict[str, Any]:
        """The request's parameters (query string, or JSON body)."""

    def malformed(self, params: dict[str, Any]) -> web.Response | None:
        """The venue's refusal of a parameter written in a form it does not take (a number, a client id), else ``None``."""
        return None

    @abstractmethod
    def client_id(self, params: dict[str, Any]) -> str:
        """The client order id a request names (``""``: none)."""

    @abstractmethod
    def error(self, status: int, code: int | str, msg: str, headers: dict[str, str] | None = None) -> web.Response:
        """An error answer in the venue's form."""

    def refused_with(self, code: str, params: dict[str, Any]) -> web.Response:
        """The venue's refusal of the request ``params`` with error ``code`` (default: HTTP ``400`` with :meth:`error`)."""
        return self.error(400, code, f"refused ({code})")

    def busy_answer(self) -> web.Response:
        """The venue's answer "server busy, try again" (the ``busy`` fault; default: HTTP ``503`` with :attr:`busy_code`)."""
        return self.error(503, self.busy_code, "Server is currently overloaded with other requests. Please try again in a few minutes.")  # type: ignore[arg-type]

    def rate_limited(self, seconds: float) -> web.Response:
        """The venue's answer to a request over its rate limit, which ends in ``seconds`` (default: ``429`` with ``Retry-After``)."""
        return self.error(429, self.rate_limit_code, "Too Many Requests", {"Retry-After": str(seconds)})

    def banned(self, seconds: float) -> web.Response:
        """The venue's answer to a request from a banned IP, the ban ending in ``seconds`` (default: ``418`` with ``Retry-After``)."""
        return self.error(418, self.rate_limit_code, "Way too many requests; IP banned.", {"Retry-After": str(seconds)})

    @abstractmethod
    def ws_message(self, text: str, session: WsSession) -> list[str]:
        """Answer a client frame (login, subscribe, ping)."""

    def is_keepalive(self, text: str) -> bool:
        """Whether a client frame is the dialect's keep-alive, answered even while :attr:`hold_frames` holds the
        others (the venue's gateway answers it; default: the text ``ping``, OKX's)."""
        return text == "ping"

    @abstractmethod
    def order_frames(self, rec: EmulatedOrder, fill: EmulatedFill | None) -> list[tuple[str, str]]:
        """``(topic, frame)`` pushes of an order change (``fill``: the fill that caused it)."""

    @abstractmethod
    def balance_frames(self, assets: list[str], symbol: str | None = None) -> list[tuple[str, str]]:
        """``(topic, frame)`` pushes of these assets' balances (and, in a derivatives dialect, ``symbol``'s position)."""

    # ------------------------------------------------------------------ server

    @property
    def rest_url(self) -> str:
        """Base URL of the REST API."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        """URL of the private WebSocket."""
        return f"ws://127.0.0.1:{self.port}{self.ws_path}"

    @property
    def rest_tls_url(self) -> str:
        """Base URL of the REST API over TLS (when started with a TLS context)."""
        return f"https://127.0.0.1:{self.tls_port}"

    async def start(self, tls: ssl.SSLContext | None = None) -> None:
        """Listen on a free port of 127.0.0.1, and with ``tls`` (a server context) on a second one over TLS."""
        app = web.Application()
        app.router.add_get(self.ws_path, self._ws)
        app.router.add_route("*", "/{tail:.*}", self._rest)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        if tls is not None:
            secure = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=tls)
            await secure.start()
            self.tls_port = secure._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        """Close every connection and stop listening."""
        for session in list(self.sessions):
            await session.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None  # stopped: a second stop is a no-op

    async def __aenter__(self) -> AccountEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ market data

    def on_trade(self, trade: Trade) -> None:
        """A public trade, seen by the venue now: stamped on the account's clock (:meth:`stamp`), then :meth:`match`."""
        self.match(self.stamp(trade))

    def on_quote(self, quote: Quote) -> None:
        """The venue's best bid and ask, seen now: stamped on the account's clock (:meth:`stamp`) and
        kept by the matching venue, which judges a new limit order marketable against them."""
        self.venue.on_quote(self.stamp(quote))

    def on_book(self, instrument_id: str, book: OrderBook) -> None:
        """A public order book of ``instrument_id`` once updated: its top is :meth:`on_quote` (nothing while a side is empty)."""
        top = book.top_of_book()
        if top is not None:
            self.on_quote(Quote(instrument_id, 0, 0, *top))

    def match(self, trade: Trade) -> None:
        """A public trade stamped on the account's clock: working orders are matched (a dialect's
        conditional orders it reaches are triggered first)."""
        self.venue.on_trade(trade)

    def tick(self) -> int:
        """Move the account's clock to the wall clock (never back): the venue's server time, ns."""
        now = max(time.time_ns(), self.clock.now_ns())
        self.clock.advance_to(now)
        return now

    def stamp(self, seen: _Seen) -> _Seen:
        """A trade or quote at the time the venue sees it: now (:meth:`tick`), or its own time when later.

        A replayed capture's trades carry the capture's times: a venue stamps its fills with its
        own clock, the one the client's orders are stamped with, so its trade history answers
        a query by time as the venue would.
        """
        now = max(seen.ts_init, self.tick())
        self.clock.advance_to(now)
        if seen.ts_event == seen.ts_init == now:
            return seen
        return msgspec.structs.replace(seen, ts_event=now, ts_init=now)

    def now_ms(self) -> int:
        """The account's time, ms: the wall clock at its latest request or trade, or later (:meth:`stamp`)."""
        return self.clock.now_ns() // _MS or int(time.time() * 1000)

    def refuse_twin_funding(
        self, symbol: str, change: float, now_ms: int, what: str, earlier: Iterable[tuple[str, int, float, str]]
    ) -> None:
        """Refuse a funding settlement of ``symbol`` moving the wallet by ``change`` at ``now_ms`` when an ``earlier``
        one (``(symbol, time ms, change, id)``, a venue's history rows, newest last) of the same symbol and change is
        within :data:`~tradebus.engine.perpetuals.VENUE_FUNDING_MATCH_NS` of it.

        A venue settles a perpetual's funding once per funding time, hours apart; the emulator stamps a settlement
        on its own clock, so two made in a row are milliseconds apart, and a daemon takes two payments of one
        instrument and amount that close for one payment told twice (its dedup, right for the venue's history).

        Raises
        ------
        ValueError
            Naming the symbol, the change, the earlier row (``what`` and its id) and how to settle it instead.
        """
        window_ms = VENUE_FUNDING_MATCH_NS // _MS
        twin = next((row_id for sym, ts, moved, row_id in reversed(list(earlier))
                     if sym == symbol and now_ms - ts <= window_ms
                     and math.isclose(moved, change, rel_tol=1e-9, abs_tol=1e-12)), None)
        if twin is not None:
            raise ValueError(
                f"a second funding {what} of {symbol} for {change!r} within {VENUE_FUNDING_MATCH_NS // 10**9} s of "
                f"{what} {twin}: a venue settles a perpetual's funding once per funding time, hours apart, and a daemon "
                "takes two payments of one instrument and amount that close for one told twice "
                "(VENUE_FUNDING_MATCH_NS); settle this one at another rate or mark"
            )

    # ------------------------------------------------------------------ REST

    def _fault(self, method: str, path: str) -> RestFault | None:
        for fault in self.rest_faults:
            if not fault.fired and fault.method == method and fault.path == path:
                fault.seen += 1
                if fault.seen - 1 == fault.at:
                    fault.fired = True
                    return fault
        return None

    #: The venue's public time endpoint (``GET``, unsigned), answered by :meth:`time_answer`.
    time_path: str

    @abstractmethod
    def time_answer(self, ms: int) -> web.Response:
        """The dialect's answer of its time endpoint: the venue's time ``ms`` (epoch milliseconds)."""

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        self.tick()
        if request.method == "GET" and request.path == self.time_path:
            self.requests.append(("GET", request.path, ""))
            return self.time_answer(int(self.venue_time() * 1000))
        body = await request.text() if request.can_read_body else ""
        refused = self.authenticate(request, body)
        if refused is not None:
            return refused
        params = self.params(request, body)
        refused = self.malformed(params)
        if refused is not None:
            return refused
        self.requests.append((request.method, request.path, self.client_id(params)))
        fault = self._fault(request.method, request.path)
        if fault is not None and fault.kind in ("hold", "late") and fault.release is None:
            raise ValueError(f"a {fault.kind!r} fault needs its release event")
        if fault is not None and fault.release is not None and fault.kind != "late":  # a hold, or another fault held first
            await fault.release.wait()
            if fault.windowed:
                expired = self.authenticate(request, body)
                if expired is not None:
                    logger.info("account emulator: {} {} held past its window; refused", request.method, request.path)
                    return expired
                logger.info("account emulator: {} {} held within its window; processed", request.method, request.path)
        if fault is not None and fault.kind == "error5xx":  # the gateway's answer: not the API's JSON
            return web.Response(status=503, text="<html><body>503 Service Temporarily Unavailable</body></html>", content_type="text/html")
        if fault is not None and fault.kind == "rate_limit":
            return self.rate_limited(fault.retry_after)
        if fault is not None and fault.kind == "ban":
            return self.banned(fault.retry_after)
        if fault is not None and fault.kind == "refuse" and not fault.processed:
            return self.refused_with(fault.code, params)
        if fault is not None and fault.kind == "busy":
            if self.busy_code is None:
                raise ValueError(f"{type(self).__name__} has no server-busy answer: no 'busy' fault")
            return self.busy_answer()
        handler = self.routes().get((request.method, request.path))
        if handler is None:
            return self.error(404, 404, f"{request.method} {request.path} is not emulated")
        self.firing = fault  # no wait between this and the handler: a dialect's handler reads its fault here
        try:
            response = handler(params)
        finally:
            self.firing = None
        if fault is not None and fault.kind == "refuse":
            return self.refused_with(fault.code, params)
        if fault is not None and fault.kind == "lose":
            logger.info("account emulator: {} {} processed, answer lost", request.method, request.path)
            assert request.transport is not None
            request.transport.close()
            await asyncio.sleep(0.05)
        elif fault is not None and fault.kind == "slow":
            await asyncio.sleep(fault.seconds)
        elif fault is not None and fault.kind == "late":
            assert fault.release is not None  # checked above
            await fault.release.wait()
        return response

    # ------------------------------------------------------------------ the account

    def submit(self, order: Order, symbol: str) -> EmulatedOrder:
        """Place ``order`` (its id is new: the caller checked); ``status`` REJECTED with ``reason`` if refused.

        What the arrival causes (an immediate fill) is pushed after the acknowledgement.
        """
        return self.enter(self.record(order, symbol))

    def record(self, order: Order, symbol: str) -> EmulatedOrder:
        """Give ``order`` (its id is new: the caller checked) a venue id and keep it in the account, unmatched."""
        self._order_ids += 1
        now = self.now_ms()
        rec = EmulatedOrder(order, symbol, self._order_ids, now, update_ms=now)
        self.orders[order.client_order_id] = rec
        return rec

    def enter(self, rec: EmulatedOrder) -> EmulatedOrder:
        """Hand the account's order ``rec`` to the matching venue (as :meth:`submit`; a dialect's
        conditional order when its trigger is reached, under the ids it was recorded with)."""
        order = rec.order
        self._placing, self._placing_events = rec, []
        try:
            self.venue.submit(order)
            self.clock.advance_to(self.clock.now_ns())
        finally:
            self._placing = None
        events = self._placing_events
        refused = [e for e in events if type(e) is OrderRejected]
        if refused:
            rec.status, rec.reason = OrderStatus.REJECTED, refused[0].reason
            return rec
        self._push(self.order_frames(rec, None))
        for event in events:
            self._on_venue_event(event)
        return rec

    def cancel(self, rec: EmulatedOrder) -> bool:
        """Cancel a working order (``False``: it is not working)."""
        if rec.status not in OPEN:
            return False
        self.venue.cancel(rec.order)
        self.clock.advance_to(self.clock.now_ns())
        return True

    def amend(self, rec: EmulatedOrder, quantity: float | None, price: float | None) -> bool:
        """Change a working order's total quantity and/or price in place (``False``: not working, or below its fills)."""
        if rec.status not in OPEN or (quantity is not None and quantity <= rec.filled):
            return False
        order = rec.order
        nan = float("nan")
        cmd = ModifyOrder(
            order.strategy_id, order.instrument_id, order.client_order_id, 0, 0,
            quantity=nan if quantity is None else quantity, price=nan if price is None else price,
        )
        self.venue.modify(order, cmd)
        self.clock.advance_to(self.clock.now_ns())
        if quantity is not None:
            order.quantity = quantity
        if price is not None:
            order.price = price
        rec.update_ms = self.now_ms()
        self._push(self.order_frames(rec, None))
        return True

    def find(self, client_order_id: str, order_id: str) -> EmulatedOrder | None:
        """The order with this client id, else with this venue id (``None``: no such order)."""
        if client_order_id:
            return self.orders.get(client_order_id)
        return next((r for r in self.orders.values() if str(r.order_id) == order_id), None)

    def open_orders(self, symbol: str | None = None) -> list[EmulatedOrder]:
        """Working orders, of ``symbol`` or all."""
        return [r for r in self.orders.values() if r.status in OPEN and symbol in (None, r.symbol)]

    def _on_venue_event(self, event: Any) -> None:
        rec = self.orders.get(getattr(event, "client_order_id", ""))
        if rec is None:
            return
        if rec is self._placing:
            self._placing_events.append(event)
            return
        cls = type(event)
        if cls is OrderAccepted:
            return  # acknowledged by the REST answer
        rec.update_ms = max(self.now_ms(), rec.time_ms)
        if cls is OrderFilled:
            self._book_fill(rec, event)
            return
        if cls is OrderCanceled:
            rec.status = OrderStatus.CANCELED
        elif cls is OrderExpired:
            rec.status = OrderStatus.EXPIRED
        elif cls is OrderRejected:
            rec.status, rec.reason = OrderStatus.REJECTED, event.reason
        else:
            return
        self._push(self.order_frames(rec, None))

    def position(self, symbol: str) -> float:
        """The account's signed position of ``symbol`` in order units (contracts where the venue counts them)."""
        return self.venue.position(self.instruments[symbol].instrument_id)

    def _book_fill(self, rec: EmulatedOrder, fill: OrderFilled) -> None:
        inst = self.instruments[rec.symbol]
        fee, fee_asset = fill.fee, ""
        # a rebate (negative fee) is no fee paid: credited as without fee_in (Binance pays fees in BNB)
        if self.fee_in is not None and fill.fee >= 0.0 and self.balances.get(self.fee_in[0], 0.0) >= fill.fee / self.fee_in[1]:
            fee_asset, fee = self.fee_in[0], fill.fee / self.fee_in[1]
            self.balances[fee_asset] -= fee
        if self.linear_positions:
            self._book_position(rec.symbol, inst, fill, 0.0 if fee_asset else fee)
            changed, symbol = [inst.quote, *([fee_asset] if fee_asset else [])], rec.symbol
        else:
            buy = fill.side is OrderSide.BUY
            notional = fill.last_qty * fill.last_px
            moved = fill.last_qty if buy else -fill.last_qty
            rebate = fill.fee < 0.0
            in_base = not (self.rebate_in_quote and rebate) if buy else self.sell_rebate_in_base and rebate
            if not fee_asset and self.fee_in_received and in_base:
                fee_asset, fee = inst.base, round(fill.fee / fill.last_px, 8)
                moved -= fee
            self.balances[inst.base] = self.balances.get(inst.base, 0.0) + moved
            self.balances[inst.quote] = self.balances.get(inst.quote, 0.0) + (-notional if buy else notional) - (0.0 if fee_asset else fee)
            changed, symbol = [inst.base, inst.quote, *([fee_asset] if fee_asset not in ("", inst.base) else [])], None
        booked = self.record_fill(rec, fill, fee, fee_asset)
        self._push(self.order_frames(rec, booked))
        self._push(self.balance_frames(changed, symbol))

    def _book_position(self, symbol: str, inst: Instrument, fill: OrderFilled, fee: float) -> None:
        qty = fill.last_qty if fill.side is OrderSide.BUY else -fill.last_qty
        after = self.position(symbol)  # the matching venue's position already includes this fill
        before = after - qty
        entry = self.entry.get(symbol, 0.0)
        realized = 0.0
        if before != 0.0 and (before > 0.0) != (qty > 0.0):
            closed = min(abs(qty), abs(before))
            realized = closed * (fill.last_px - entry) * (1.0 if before > 0.0 else -1.0) * inst.contract_size
        if abs(after) < 1e-12:
            self.entry[symbol] = 0.0
        elif before == 0.0 or (before > 0.0) != (after > 0.0):
            self.entry[symbol] = fill.last_px
        elif abs(after) > abs(before):
            self.entry[symbol] = (entry * abs(before) + fill.last_px * abs(qty)) / abs(after)
        self.balances[inst.quote] = self.balances.get(inst.quote, 0.0) + realized - fee

    def record_fill(self, rec: EmulatedOrder, fill: OrderFilled, fee: float | None = None, fee_asset: str = "") -> EmulatedFill:
        """Add ``fill`` to the order (filled quantity, status) and to the account's trade list.

        ``fee`` of ``fee_asset``: as charged (default: the simulated fill's fee, in the quote asset).
        """
        rec.filled += fill.last_qty
        rec.status = OrderStatus.FILLED if rec.filled >= rec.order.quantity - 1e-12 else OrderStatus.PARTIALLY_FILLED
        rec.fills.append(fill)
        booked = EmulatedFill(rec, fill, int(fill.trade_id.removeprefix("SIM-T")), fill.fee if fee is None else fee, fee_asset, rec.filled)
        self.fills.append(booked)
        return booked

    def beyond_history(self, f: EmulatedFill) -> bool:
        """Whether ``f`` is older than the trade history lists (:attr:`trade_history_ns`); its order still
        counts it filled. Every dialect's own-trades handler leaves such a fill out."""
        return self.trade_history_ns is not None and f.fill.ts_event < self.clock.now_ns() - self.trade_history_ns

    def listed_late_read(self, f: EmulatedFill) -> bool:
        """Whether a read of the trade history that would list ``f`` leaves it out (:attr:`listed_late`);
        such a read counts towards the reads that fill still waits for. A dialect's own-trades handler asks
        it last, of each fill its request's filters keep, before paging."""
        late = self.listed_late.get(f.trade_id, 0)
        if late > 0:
            self.listed_late[f.trade_id] = late - 1
            return True
        return False

    def trade_list(self, symbol: str, order_id: str | None, from_id: str | None, start_ms: str | None, end_ms: str | None, limit: int) -> list[EmulatedFill]:
        """The account's fills of ``symbol`` filtered as a venue's own-trades request asks, oldest first, at most ``limit``.

        ``order_id``: of that venue order; ``from_id``: trade id >= it; ``start_ms``/``end_ms``:
        trade time within (ms, inclusive). ``None`` leaves a filter out. Fills older than
        :attr:`trade_history_ns` are not listed, nor those :attr:`listed_late` still holds back.
        """
        out = []
        for f in self.fills:
            if f.rec.symbol != symbol or (order_id is not None and str(f.rec.order_id) != order_id):
                continue
            if self.beyond_history(f):
                continue
            if from_id is not None and f.trade_id < int(from_id):
                continue
            t = f.fill.ts_event // _MS
            if (start_ms is not None and t < int(start_ms)) or (end_ms is not None and t > int(end_ms)):
                continue
            if self.listed_late_read(f):
                continue
            out.append(f)
            if len(out) >= limit:
                break
        return out

    # ------------------------------------------------------------------ private stream

    def _push(self, frames: list[tuple[str, str]]) -> None:
        for topic, frame in frames:
            out = [frame]
            for fault in self.stream_faults:
                if fault.fired or fault.match not in frame:
                    continue
                fault.seen += 1
                if fault.seen - 1 != fault.at:
                    continue
                fault.fired = True
                if fault.kind == "duplicate":
                    out = [frame, frame]
                elif fault.kind == "drop":
                    logger.info("account emulator: stream frame dropped: {}", frame[:120])
                    out = []
                elif fault.kind == "reorder":
                    self._held[id(fault)] = frame
                    out = []
                elif fault.kind == "delay":
                    self._delayed += 1
                    asyncio.get_running_loop().call_later(fault.seconds, self._deliver_late, topic, frame)
                    out = []
            if out:
                held = list(self._held.values())
                self._held.clear()
                self._deliver(topic, out + held)

    @property
    def frames_pending(self) -> int:
        """Stream frames a fault holds back (``reorder``) or delays (``delay``), not yet queued to any connection."""
        return len(self._held) + self._delayed

    def _deliver_late(self, topic: str, frame: str) -> None:
        self._delayed -= 1
        self._deliver(topic, [frame])

    def _deliver(self, topic: str, frames: list[str]) -> None:
        for session in self.sessions:
            if session.authed and topic in session.topics:
                for frame in frames:
                    session.send(frame)

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        session = WsSession(ws)
        self.sessions.append(session)
        sender = asyncio.create_task(self._sender(session))
        held: list[str] = []
        answering: asyncio.Task[None] | None = None
        try:
            async for msg in ws:  # read on while frames are held: pings (and the protocol's) are answered
                if msg.type is not WSMsgType.TEXT:
                    continue
                hold = self.hold_frames
                if held or (hold is not None and not hold.is_set() and not self.is_keepalive(msg.data)):
                    if not held and hold is not None:
                        answering = asyncio.create_task(self._answer_held(hold, held, session))
                    self.held_frames += 1
                    held.append(msg.data)
                    continue
                self._answer(msg.data, session)
        finally:
            sender.cancel()
            if answering is not None:
                answering.cancel()  # what the session's closing left unanswered, never answered
            self.sessions.remove(session)
        return ws

    def _answer(self, text: str, session: WsSession) -> None:
        self.tick()
        for reply in self.ws_message(text, session):
            session.send(reply)

    async def _answer_held(self, hold: asyncio.Event, held: list[str], session: WsSession) -> None:
        """Answer the frames of ``session`` held since ``hold`` was found unset, in order, once it is set."""
        await hold.wait()
        while held:
            self._answer(held.pop(0), session)

    async def drop_sessions(self) -> None:
        """Close every private WebSocket connection (the clients reconnect) and wait until they are gone."""
        for session in list(self.sessions):
            await session.ws.close()

    async def _sender(self, session: WsSession) -> None:
        while True:
            frame = await session.queue.get()
            await session.ws.send_str(frame)

