"""A kernel trading through the live Binance venue against the local account emulator (not a test module)."""

from __future__ import annotations

import asyncio
import math
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from tradebus.adapters.common.account_emulator import AccountEmulator
from tradebus.adapters.common.ratelimit import WeightBudget
from tradebus.adapters.binance.private_emulator import BinanceFuturesEmulator, BinancePrivateEmulator, RestFault, StreamFault
from tradebus.adapters.binance.trading import BinanceFuturesTrading, BinanceTrading
from tradebus.adapters.binance.user_stream import (
    BinanceFuturesUserStream,
    BinanceUserStream,
    FuturesStreamParser,
    UserStreamParser,
)
from tradebus.engine.clock import LiveClock
from tradebus.engine.instrument import Instrument, InstrumentKind
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import OrderSide, OrderStatus, OrderType, SubmitOrder, Trade
from tradebus.execution.engine import OrderTimeouts
from tradebus.execution.journal import Journal
from tradebus.execution.live import LiveVenue
from tradebus.execution.orders import Order
from tradebus.node.reconcile import Reconciler

from tests.live.venue_tls import self_signed, venue_url

KEY = "tbLiveKey0123456789abcdefABCDEF"
SECRET = "tbLiveSecret9876543210zyxwvuZYXWVU"
INST = Instrument("BINANCE", "BTCUSDT", base="BTC", quote="USDT", tick_size=0.01, lot_size=1e-5, margin=False)
IID = INST.instrument_id
#: A Binance USD-M perpetual: the venue amends nothing here and has no one-request cancel-replace.
USDM_INST = Instrument("BINANCE_USDM", "BTCUSDT", base="BTC", quote="USDT", tick_size=0.1, lot_size=0.001, kind=InstrumentKind.PERPETUAL)
USDM_IID = USDM_INST.instrument_id
T0 = 1_723_161_255_000_000_000
FAST = OrderTimeouts(
    submit_ns=300_000_000, cancel_ns=300_000_000, retry_ns=150_000_000, check_ns=None, not_found_grace_ns=600_000_000
)


def held_window() -> float:
    """A spot emulator's ``weight_clock`` that never leaves its first minute: the weight a test sets is the weight
    the next request counts on (on the wall clock a minute may turn in between and reset it)."""
    return 0.0


@dataclass
class Harness:
    emulator: BinancePrivateEmulator
    kernel: Kernel
    venue: LiveVenue
    stream: BinanceUserStream | BinanceFuturesUserStream
    n: int = 0
    iid: str = IID
    #: The time of trade 0: an hour past the wall clock, so that the account emulator, whose clock is the wall
    #: clock unless a trade is later, stamps its fills with these trades' times, 1 ms apart.
    t0: int = field(default_factory=lambda: (time.time_ns() // 10**9 + 3600) * 10**9)

    def trade(self, price: float, size: float = 1.0) -> None:
        """One public trade at ``t0`` + n ms, seen by the account emulator (matching) and the kernel (marks)."""
        self.n += 1
        tr = Trade(self.iid, self.t0 + self.n * 1_000_000, self.t0 + self.n * 1_000_000, price, size, 1, str(self.n))
        self.emulator.on_trade(tr)
        self.kernel.process(tr)

    def submit(self, side: OrderSide, qty: float, price: float = math.nan, reduce_only: bool = False) -> Order:
        """Submit an order of strategy ``s1`` at the clock's time, as a strategy does (a restart on the journal
        reads the trade history from the time of the orders it holds open)."""
        typ = OrderType.MARKET if price != price else OrderType.LIMIT
        now = self.kernel.clock.now_ns()
        return self.kernel.execution.submit(SubmitOrder("s1", self.iid, "", side, qty, now, now, typ, price, reduce_only=reduce_only))

    def posts(self, coid: str) -> int:
        return sum(1 for method, path, c in self.emulator.requests if method == "POST" and c == coid)


def session_trades(kernel: Kernel) -> Callable[[], int]:
    """How many trades ``kernel`` handles from now on (``RunResult.trades`` of a daemon restarted on its
    journal also counts every earlier session's, taken back from the journal)."""
    seen = [0]

    def count(_: Trade) -> None:
        seen[0] += 1

    for iid in kernel.instruments:
        kernel.bus.subscribe(Trade, count, iid)
    return lambda: seen[0]


def stepping_budget(limit: int, header: str, hold: asyncio.Event | None = None) -> WeightBudget:
    """A Binance weight budget of ``limit`` per minute (``header``: its used-weight header) on a clock that moves
    only when a request waits out a pause or a full window (a pause lasts until one does, however slowly the
    test runs); with ``hold``, the first request it stops waits until ``hold`` is set. The clock starts at a
    minute's start: a full window's wait is a minute, never shorter than a submit timeout (on the wall clock's
    second, one in 200 would be under FAST's 0.3 s)."""
    now = [math.floor(time.time() / 60.0) * 60.0]
    paused: list[float] = []

    async def sleep(delay: float) -> None:
        paused.append(delay)
        await (hold.wait() if hold is not None and len(paused) == 1 else asyncio.sleep(0))
        now[0] += delay

    return WeightBudget(limit, 60.0, header=header, monotonic=lambda: now[0], sleep=sleep)


WAIT = 60.0  # how long a wait for what normally takes milliseconds may take on a loaded machine before failing
#: FAST but for submits and cancels, whose answers may take up to WAIT (give it ``request_timeout=WAIT`` too): a
#: test counting the queries it means (a frame's, a refused cancel's, a read again) counts none a loaded machine
#: caused by delaying an answer past FAST's 0.3 s.
ANSWERED = OrderTimeouts(
    submit_ns=int(WAIT * 1e9), cancel_ns=int(WAIT * 1e9), retry_ns=FAST.retry_ns, check_ns=None,
    not_found_grace_ns=FAST.not_found_grace_ns,
)


async def until(check: object, timeout: float = WAIT) -> None:
    """Wait until ``check()`` is true (fails the test after ``timeout`` seconds)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not check():  # type: ignore[operator]
        if loop.time() > end:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.01)


async def rounds_after(reconciler: Reconciler, n: int, timeout: float = WAIT) -> None:
    """Wait until ``n`` reconciliation rounds begun after this call have ended (a round running now does not count)."""
    start = reconciler.rounds
    await until(lambda: reconciler.rounds >= start + n + 1, timeout)


async def answered(kernel: Kernel, timeout: float = WAIT) -> None:
    """Wait until no order of ``kernel`` waits for the venue: none unanswered and no market order unfilled."""
    waiting = {OrderStatus.INITIALIZED, OrderStatus.SUBMITTED, OrderStatus.UNKNOWN}
    await until(lambda: not any(o.status in waiting or o.order_type is OrderType.MARKET for o in kernel.orders.open_orders()), timeout)


def reconciled(api: Any, inst: Instrument) -> tuple[LiveVenue, Reconciler, dict[str, str]]:
    """A journal-less kernel trading through ``api`` (10,000 of cash), and its reconciler (2 s rounds);
    ``holds``: instrument -> the reason the reconciler holds it."""
    clock = LiveClock()
    venue = LiveVenue(api, clock)
    kernel = Kernel([inst], clock=clock, venue=venue, initial_cash=10_000.0)
    holds: dict[str, str] = {}
    reconciler = Reconciler(kernel, venue, lambda iid, why: holds.__setitem__(iid, why) if why else holds.pop(iid, None), 2.0)
    return venue, reconciler, holds


async def trade_after_market_orders(kernel: Kernel, emulator: AccountEmulator, last: Trade) -> None:
    """Once every market order of ``kernel`` is at ``emulator``, one more public trade there, at ``last``'s price
    and size, if one still works there (``last``: the replay's last public trade).

    An account emulator fills a market order at the next public trade. A replay whose strategy crosses a few ms
    before its last trade sends an order that, on a loaded machine, reaches the emulator after that trade: the
    market, unlike the recording, trades on. An order the daemon never sends never reaches the emulator: the
    wait fails.
    """
    await until(lambda: all(o.client_order_id in emulator.orders for o in kernel.orders.open_orders() if o.order_type is OrderType.MARKET))
    if any(rec.order.order_type is OrderType.MARKET for rec in emulator.open_orders()):
        at = emulator.clock.now_ns() + 10**6
        emulator.on_trade(Trade(last.instrument_id, at, at, last.price, last.size, last.aggressor, "after-replay"))


async def settled(h: Harness, timeout: float = WAIT) -> None:
    """Wait until nothing is on its way to the daemon: no request of the venue in flight, no stream frame
    a fault holds back or delays, and every frame queued to the stream's (one) connection handled."""

    def quiet() -> bool:
        emulator = h.emulator
        sent = sum(s.queued for s in emulator.sessions)
        return h.venue.in_flight == 0 and emulator.frames_pending == 0 and h.stream.frames >= sent

    await until(quiet, timeout)


async def later_than(clock: LiveClock, delay_ns: int, timeout: float = WAIT) -> None:
    """Wait until an alert set now on ``clock`` ``delay_ns`` ahead has fired: every timer and alert due before it has fired too."""
    fired = asyncio.Event()
    clock.set_alert(f"test-later-{clock.now_ns()}", clock.now_ns() + delay_ns, lambda _event: fired.set())
    await asyncio.wait_for(fired.wait(), timeout)


@asynccontextmanager
async def harness(
    rest_faults: list[RestFault] | None = None,
    stream_faults: list[StreamFault] | None = None,
    secret: str = SECRET,
    trading: type[BinanceTrading] = BinanceTrading,
    inst: Instrument = INST,
    balances: dict[str, float] | None = None,
    trade_size_limit: bool = False,
    timeouts: OrderTimeouts = FAST,
    journal: Journal | None = None,
    budget: WeightBudget | None = None,
    weight_clock: Callable[[], float] = time.time,
    venue_host: str | None = None,
    request_timeout: float = 0.25,
) -> AsyncIterator[Harness]:
    """The kernel and the account emulator of ``inst`` (``balances``: the emulator's, default 100 000 USDT;
    ``trade_size_limit``: a public trade fills at most its own size; ``timeouts``: the engine's;
    ``journal``: the kernel's, replayed into it; ``budget``: the REST client's weight budget, default Binance spot's;
    ``weight_clock``: the emulator's, whose minutes are its weight windows: :func:`held_window` for a test that
    sets the emulator's weight; ``venue_host``: REST over TLS under a URL ccxt takes for that Binance host,
    :func:`~tests.live.venue_tls.venue_url`; ``request_timeout``: the REST client's, seconds)."""
    iid = inst.instrument_id
    emulator = BinancePrivateEmulator(
        KEY, SECRET, {iid: inst}, balances or {"USDT": 100_000.0}, rest_faults, stream_faults,
        trade_size_limit=trade_size_limit, weight_clock=weight_clock,
    )
    with tempfile.TemporaryDirectory() as certs:
        tls, cafile = self_signed(Path(certs)) if venue_host else (None, "")
        await emulator.start(tls)
        clock = LiveClock()
        url = venue_url(venue_host, emulator.tls_port) if venue_host else emulator.rest_url
        api = trading(url, SecretStr(KEY), SecretStr(secret), {iid: inst}, timeout=request_timeout, budget=budget)
        if cafile:
            api._ccxt.cafile = cafile  # trust the emulator's certificate (read at the first request)
        async with _harness(emulator, api, inst, clock, timeouts, journal) as h:
            yield h


@asynccontextmanager
async def _harness(
    emulator: BinancePrivateEmulator, api: BinanceTrading, inst: Instrument, clock: LiveClock, timeouts: OrderTimeouts,
    journal: Journal | None, strategies: Sequence[Any] = (), first_trade: float | None = 60_000.0,
) -> AsyncIterator[Harness]:
    """The kernel (``strategies`` added before it starts), live venue and user stream on a started ``emulator``;
    a public trade at ``first_trade`` once the kernel started (``None``: none)."""
    iid = inst.instrument_id
    venue = LiveVenue(api, clock)
    kernel = Kernel([inst], clock=clock, venue=venue, timeouts=timeouts, initial_cash=100_000.0, journal=journal)
    if journal is not None:
        journal.replay(kernel.orders, kernel.portfolio, clock.now_ns(), risk=kernel.risk, on_message=kernel.record_journaled)
    venue.on_answer = kernel.execution.reconcile_order
    venue.on_cancel = kernel.execution.cancel
    stream = BinanceUserStream(
        emulator.ws_api_url, SecretStr(KEY), SecretStr(SECRET), UserStreamParser({iid: inst}, venue.order), venue.emit
    )
    task = asyncio.create_task(stream.run())
    h = Harness(emulator, kernel, venue, stream, iid=iid)
    try:
        await until(lambda: any(s.authed for s in emulator.sessions))
        for strategy in strategies:
            kernel.add_strategy(strategy)
        kernel.start()
        if first_trade is not None:
            h.trade(first_trade)
        yield h
    finally:
        stream.stop()
        await task
        await venue.aclose()
        await emulator.stop()


@asynccontextmanager
async def usdm_harness(
    stream_faults: list[StreamFault] | None = None,
    trade_size_limit: bool = False,
    rest_faults: list[RestFault] | None = None,
    timeout: float = 0.25,
    timeouts: OrderTimeouts = FAST,
    budget: WeightBudget | None = None,
    venue_host: str | None = None,
) -> AsyncIterator[Harness]:
    """As :func:`harness` on the Binance USD-M account emulator (a perpetual; listen-key user stream;
    ``timeout``: the REST client's, s; ``timeouts``: the engine's; ``budget``: the REST client's weight budget,
    default USD-M's; ``venue_host``: as :func:`harness`)."""
    emulator = BinanceFuturesEmulator(
        KEY, SECRET, {USDM_IID: USDM_INST}, {"USDT": 100_000.0}, rest_faults, stream_faults, trade_size_limit=trade_size_limit
    )
    with tempfile.TemporaryDirectory() as certs:
        tls, cafile = self_signed(Path(certs)) if venue_host else (None, "")
        await emulator.start(tls)
        url = venue_url(venue_host, emulator.tls_port) if venue_host else emulator.rest_url
        api = BinanceFuturesTrading(url, SecretStr(KEY), SecretStr(SECRET), {USDM_IID: USDM_INST}, timeout=timeout, budget=budget)
        if cafile:
            api._ccxt.cafile = cafile  # trust the emulator's certificate (read at the first request)
        async with _usdm_harness(emulator, api, timeouts) as h:
            yield h


@asynccontextmanager
async def _usdm_harness(emulator: BinanceFuturesEmulator, api: BinanceFuturesTrading, timeouts: OrderTimeouts) -> AsyncIterator[Harness]:
    clock = LiveClock()
    venue = LiveVenue(api, clock)
    kernel = Kernel([USDM_INST], clock=clock, venue=venue, timeouts=timeouts, initial_cash=100_000.0)
    venue.on_answer = kernel.execution.reconcile_order
    venue.on_cancel = kernel.execution.cancel
    venue.on_replace = kernel.execution.submit
    venue.on_replacing = kernel.execution.replacing
    stream = BinanceFuturesUserStream(
        emulator.rest_url, emulator.ws_url, SecretStr(KEY), FuturesStreamParser({USDM_IID: USDM_INST}, venue.order), venue.emit
    )
    task = asyncio.create_task(stream.run())
    h = Harness(emulator, kernel, venue, stream, iid=USDM_IID)
    try:
        await until(lambda: stream.subscribed.is_set())
        kernel.start()
        h.trade(60_000.0)
        yield h
    finally:
        stream.stop()
        await task
        await venue.aclose()
        await emulator.stop()


async def open_long(
    node: Any, emulator: AccountEmulator, iid: str, qty: float, price: float, *, size: float = 1.0,
    strategy: str = "TickEmaCross",
) -> None:
    """Buy ``qty`` of ``iid`` at market through a daemon's kernel, filled by a public trade of ``size`` at
    ``price`` at the emulator; wait until the daemon booked it."""
    kernel = node.kernel
    before = kernel.portfolio.position(iid)
    now = node.clock.now_ns()
    order = kernel.execution.submit(SubmitOrder(strategy, iid, "", OrderSide.BUY, qty, now, now, OrderType.MARKET))
    await until(lambda: order.client_order_id in emulator.orders)
    at = emulator.clock.now_ns() + 10**6
    emulator.on_trade(Trade(iid, at, at, price, size, -1, "x-open"))
    await until(lambda: math.isclose(kernel.portfolio.position(iid), before + qty, abs_tol=1e-12))


def second_funding_refused(emulator: AccountEmulator, symbol: str, mark: float, match: str, rows: Callable[[], list[Any]]) -> float:
    """Settle a funding of ``symbol`` at rate 0.0001 and ``mark``, then the same one again, which the emulator refuses
    (``match``: the error) leaving the wallet and ``rows()`` (its funding history) as after the first; one at twice
    the rate goes through. Returns the first payment."""
    paid = emulator.settle_funding(symbol, 0.0001, mark)  # type: ignore[attr-defined]
    wallet, told = emulator.balances["USDT"], rows()
    with pytest.raises(ValueError, match=match):
        emulator.settle_funding(symbol, 0.0001, mark)  # type: ignore[attr-defined]
    assert rows() == told and emulator.balances["USDT"] == wallet
    assert emulator.settle_funding(symbol, 0.0002, mark) == pytest.approx(2 * paid)  # type: ignore[attr-defined]
    return paid
