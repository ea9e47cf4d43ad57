"""A kernel trading through the live Binance venue against the local account emulator (not a test module)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from pydantic import SecretStr

from tradebus.adapters.binance.private_emulator import BinancePrivateEmulator, RestFault, StreamFault
from tradebus.adapters.binance.trading import BinanceTrading
from tradebus.adapters.binance.user_stream import BinanceUserStream, UserStreamParser
from tradebus.engine.clock import LiveClock
from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import OrderSide, OrderType, SubmitOrder, Trade
from tradebus.execution.engine import OrderTimeouts
from tradebus.execution.live import LiveVenue
from tradebus.execution.orders import Order

KEY = "tbLiveKey0123456789abcdefABCDEF"
SECRET = "tbLiveSecret9876543210zyxwvuZYXWVU"
INST = Instrument("BINANCE", "BTCUSDT", base="BTC", quote="USDT", tick_size=0.01, lot_size=1e-5, margin=False)
IID = INST.instrument_id
T0 = 1_723_161_255_000_000_000
FAST = OrderTimeouts(
    submit_ns=300_000_000, cancel_ns=300_000_000, retry_ns=150_000_000, check_ns=None, not_found_grace_ns=600_000_000
)


@dataclass
class Harness:
    emulator: BinancePrivateEmulator
    kernel: Kernel
    venue: LiveVenue
    stream: BinanceUserStream
    n: int = 0

    def trade(self, price: float, size: float = 1.0) -> None:
        """One public trade, seen by the account emulator (matching) and the kernel (marks)."""
        self.n += 1
        tr = Trade(IID, T0 + self.n * 1_000_000, T0 + self.n * 1_000_000, price, size, 1, str(self.n))
        self.emulator.on_trade(tr)
        self.kernel.process(tr)

    def submit(self, side: OrderSide, qty: float, price: float = math.nan) -> Order:
        typ = OrderType.MARKET if price != price else OrderType.LIMIT
        return self.kernel.execution.submit(SubmitOrder("s1", IID, "", side, qty, 0, 0, typ, price))

    def posts(self, coid: str) -> int:
        return sum(1 for method, path, c in self.emulator.requests if method == "POST" and c == coid)


async def until(check: object, timeout: float = 3.0) -> None:
    """Wait until ``check()`` is true (fails the test after ``timeout`` seconds)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not check():  # type: ignore[operator]
        if loop.time() > end:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.01)


@asynccontextmanager
async def harness(
    rest_faults: list[RestFault] | None = None,
    stream_faults: list[StreamFault] | None = None,
    secret: str = SECRET,
) -> AsyncIterator[Harness]:
    emulator = BinancePrivateEmulator(KEY, SECRET, {IID: INST}, {"USDT": 100_000.0}, rest_faults, stream_faults)
    await emulator.start()
    clock = LiveClock()
    api = BinanceTrading(emulator.rest_url, SecretStr(KEY), SecretStr(secret), {IID: INST}, timeout=0.25)
    venue = LiveVenue(api, clock)
    kernel = Kernel([INST], clock=clock, venue=venue, timeouts=FAST, initial_cash=100_000.0)
    venue.on_answer = kernel.execution.reconcile_order
    stream = BinanceUserStream(
        emulator.ws_api_url, SecretStr(KEY), SecretStr(SECRET), UserStreamParser({IID: INST}, venue.order), venue.emit
    )
    task = asyncio.create_task(stream.run())
    h = Harness(emulator, kernel, venue, stream)
    try:
        await until(lambda: any(s.authed for s in emulator.sessions))
        kernel.start()
        h.trade(60_000.0)
        yield h
    finally:
        stream.stop()
        await task
        await venue.aclose()
        await emulator.stop()
