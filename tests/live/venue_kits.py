"""Per-venue pieces of the live end-to-end tests: account emulator, public stream, config (not a test module).

A :class:`VenueKit` builds, for one venue, the local account emulator, the public stream
server whose trades the account matches against, and the live config of a daemon trading
on them. The tests in ``test_live_venues.py`` run the same scenario on every kit.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.live.live_harness import KEY, SECRET, WAIT, until
from tests.live.node_testdata import BYBIT_RECORDING, OKX_IID, OKX_INSTRUMENT, okx_frames
from tradebus.adapters.bybit import private_emulator as bybit_emu
from tradebus.adapters.common.recorder import read_frames
from tradebus.adapters.common.account_emulator import AccountEmulator, RestFault, StreamFault, WsSession
from tradebus.adapters.common.local_server import VenueProtocol
from tradebus.adapters.okx import private_emulator as okx_emu
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import Trade
from tradebus.execution.engine import OrderTimeouts

PASSPHRASE = "tbLivePassphrase42xyz"
#: :func:`kit_harness`'s engine timeouts, short ones.
KIT_TIMEOUTS = OrderTimeouts(submit_ns=500_000_000, cancel_ns=500_000_000, retry_ns=200_000_000, check_ns=None, not_found_grace_ns=1_000_000_000)
#: KIT_TIMEOUTS but for submits and cancels, whose answers may take up to WAIT (give it ``request_timeout=WAIT``
#: too), as :data:`~tests.live.live_harness.ANSWERED`.
KIT_ANSWERED = OrderTimeouts(
    submit_ns=int(WAIT * 1e9), cancel_ns=int(WAIT * 1e9), retry_ns=KIT_TIMEOUTS.retry_ns, check_ns=None,
    not_found_grace_ns=KIT_TIMEOUTS.not_found_grace_ns,
)


@dataclass(frozen=True)
class VenueKit:
    """One venue's emulator, public stream and config (see the module docstring)."""

    venue: str
    iid: str
    instrument: dict[str, Any]
    frames: list[tuple[int, str]]
    channels: list[str]
    base: str
    make_emulator: Callable[..., AccountEmulator]
    make_protocol: Callable[[list[tuple[int, str]], AccountEmulator], VenueProtocol]
    env: dict[str, str]
    place_path: str
    #: A substring of the private-stream frame that carries a fill (and only such frames).
    fill_frame: str
    #: The live account's market (``live.market``) and the public feed's.
    market: str = "spot"
    feed_market: str = "spot"

    def instruments(self) -> dict[str, Instrument]:
        inst = Instrument(**self.instrument)
        return {inst.instrument_id: inst}

    def emulator(
        self, rest_faults: list[RestFault] | None = None, stream_faults: list[StreamFault] | None = None,
        trade_size_limit: bool = False,
    ) -> AccountEmulator:
        return self.make_emulator(KEY, SECRET, self.instruments(), {"USDT": 100_000.0}, rest_faults, stream_faults,
                                  passphrase=PASSPHRASE, trade_size_limit=trade_size_limit)

    def config(self, tmp: Path, ws_url: str, emulator: AccountEmulator, **live: Any) -> dict[str, Any]:
        """A testnet live config: trade-driven TickEmaCross (long only), journal and recording in ``tmp``."""
        return {
            "instruments": [self.instrument],
            "strategy": {
                "name": "tradebus.strategies.tick_ema:TickEmaCross",
                "instruments": [self.iid],
                "params": {"fast": 2, "slow": 5, "quantity": 0.001, "mode": "long_only"},
            },
            "venue": {"fill_on": "trades"},
            "feeds": [
                {
                    "venue": self.venue,
                    "market": self.feed_market,
                    "ws_url": ws_url,
                    "subscriptions": {self.iid: self.channels},
                    "backoff": {"base": 0.05, "cap": 0.2, "min_delay": 0.01},
                }
            ],
            "warm_up": False,
            "journal": str(tmp / "journal.sqlite"),
            "record": str(tmp / "frames.jsonl.gz"),
            "live": {
                "market": self.market,
                "rest_url": emulator.rest_url,
                "ws_api_url": emulator.ws_url,
                "request_timeout": 1.0,
                "submit_timeout": 1.0,
                "cancel_timeout": 1.0,
                "retry_interval": 0.3,
                "not_found_grace": 2.0,
                **live,
            },
        }


def _okx_protocol(frames: list[tuple[int, str]], account: AccountEmulator) -> VenueProtocol:
    return okx_emu.MatchingProtocol(frames, account=account, instrument_ids={"BTC-USDT": OKX_IID})


OKX = VenueKit(
    venue="okx",
    iid=OKX_IID,
    instrument={**OKX_INSTRUMENT, "margin": False},
    frames=okx_frames(),
    channels=["trades"],
    base="BTC",
    make_emulator=okx_emu.OkxPrivateEmulator,
    make_protocol=_okx_protocol,
    env={"TRADEBUS_OKX_API_KEY": KEY, "TRADEBUS_OKX_API_SECRET": SECRET, "TRADEBUS_OKX_API_PASSPHRASE": PASSPHRASE},
    place_path="/api/v5/trade/order",
    fill_frame='"fillFeeCcy": "USDT"',
)

def _bybit_protocol(frames: list[tuple[int, str]], account: AccountEmulator) -> VenueProtocol:
    return bybit_emu.MatchingProtocol(frames, account=account, instrument_ids={"BTCUSDT": "BTCUSDT.BYBIT"})


def bybit_spot_frames() -> list[tuple[int, str]]:
    """(recv_ns, raw) of the spot connection of the Bybit recording."""
    return [(t, raw if isinstance(raw, str) else raw.decode()) for t, conn, raw in read_frames(BYBIT_RECORDING) if conn == "spot"]


BYBIT = VenueKit(
    venue="bybit",
    iid="BTCUSDT.BYBIT",
    instrument={
        "venue": "BYBIT", "symbol": "BTCUSDT", "base": "BTC", "quote": "USDT", "tick_size": 0.01, "lot_size": 1.0e-6,
        "taker_fee": 0.001, "maker_fee": 0.001, "margin": False,
    },
    frames=bybit_spot_frames(),
    channels=["publicTrade"],
    base="BTC",
    make_emulator=bybit_emu.BybitPrivateEmulator,
    make_protocol=_bybit_protocol,
    env={"TRADEBUS_BYBIT_API_KEY": KEY, "TRADEBUS_BYBIT_API_SECRET": SECRET},
    place_path="/v5/order/create",
    fill_frame='"topic": "execution"',
)

KITS = {"okx": OKX, "bybit": BYBIT}


def counting(kit: VenueKit) -> Any:
    """The kit's emulator class, also keeping every private frame it sends (``sent``) and every public trade
    it matches against (``seen``)."""

    class Counting(kit.make_emulator):  # type: ignore[name-defined,misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.sent: list[str] = []
            self.seen: list[Trade] = []

        def on_trade(self, trade: Trade) -> None:
            self.seen.append(trade)
            super().on_trade(trade)

        async def _sender(self, session: WsSession) -> None:
            while True:
                frame = await session.queue.get()
                await session.ws.send_str(frame)
                self.sent.append(frame)

    return Counting


@dataclass
class KitHarness:
    """A kernel trading through the live venue of a kit against its account emulator (no public stream)."""

    emulator: AccountEmulator
    kernel: Any
    venue: Any
    stream: Any


@asynccontextmanager
async def kit_harness(
    kit: VenueKit,
    stream_faults: list[StreamFault] | None = None,
    journal: Path | None = None,
    rest_faults: list[RestFault] | None = None,
    strategies: Sequence[Any] = (),
    trade_size_limit: bool = False,
    timeouts: Any = None,
    risk_config: Any = None,
    request_timeout: float = 1.0,
    clock: Any = None,
    emulator: AccountEmulator | None = None,
) -> AsyncIterator[KitHarness]:
    """Emulator, live venue and user stream of ``kit`` (the venue's registry factories), a kernel on them
    (journaled to ``journal``; ``strategies`` added before it starts; ``trade_size_limit``: a public
    trade fills at most its own size; ``timeouts``: the engine's, default short ones; ``risk_config``:
    the risk gate's limits, default none; ``request_timeout``: the REST client's, seconds; ``clock``: the
    kernel's and the venue's, default a :class:`~tradebus.engine.clock.LiveClock`; ``emulator``: a started one of
    ``kit`` to trade on, left running at the end, as a restarted daemon finds the venue; default a new one)."""
    from tradebus.execution.journal import Journal

    from pydantic import SecretStr

    from tradebus.engine.clock import LiveClock
    from tradebus.engine.kernel import Kernel
    from tradebus.execution.live import LiveVenue
    from tradebus.node.live import LiveSettings

    own = emulator is None
    if emulator is None:
        emulator = kit.emulator(rest_faults, stream_faults, trade_size_limit)
        await emulator.start()
    settings = LiveSettings(venue=kit.venue, market=kit.market)
    account = settings.account()
    options = {"passphrase": SecretStr(PASSPHRASE), "environment": "testnet"}
    instruments = kit.instruments()
    clock = clock or LiveClock()
    api = account.trading(emulator.rest_url, SecretStr(KEY), SecretStr(SECRET), instruments, request_timeout, **options)
    venue = LiveVenue(api, clock)
    timeouts = timeouts or KIT_TIMEOUTS
    store = Journal(journal) if journal is not None else None
    kernel = Kernel(list(instruments.values()), clock=clock, venue=venue, timeouts=timeouts, initial_cash=100_000.0, journal=store, risk_config=risk_config)
    if store is not None:
        store.replay(kernel.orders, kernel.portfolio, clock.now_ns(), risk=kernel.risk, on_message=kernel.record_journaled)
    venue.on_answer = kernel.execution.reconcile_order
    venue.on_replace = kernel.execution.submit
    venue.on_cancel = kernel.execution.cancel
    stream = account.user_stream(emulator.ws_url, SecretStr(KEY), SecretStr(SECRET), instruments, venue.order, venue.emit, **options, rest_url=emulator.rest_url)
    task = asyncio.create_task(stream.run())
    try:
        loop = asyncio.get_running_loop()
        end = loop.time() + WAIT
        while not any(s.authed and s.topics for s in emulator.sessions):
            assert loop.time() < end, "the private stream did not subscribe"
            await asyncio.sleep(0.01)
        for strategy in strategies:
            kernel.add_strategy(strategy)
        kernel.start()
        yield KitHarness(emulator, kernel, venue, stream)
    finally:
        stream.stop()
        await task
        await venue.aclose()
        if own:
            await emulator.stop()
        if store is not None:
            store.close()


class KitTape:
    """Public trades of one instrument, seen by a kit's account emulator (matching) and the kernel (marks),
    and orders submitted through the kernel; ``triggered`` collects the kernel's ``OrderTriggered``."""

    def __init__(self, h: KitHarness, instrument_id: str, t0: int, size: float = 1.0) -> None:
        from tradebus.engine.messages import OrderTriggered

        self.h = h
        self.iid = instrument_id
        self.t0 = t0
        self.size = size
        self.n = 0
        self.triggered: list[Any] = []
        h.kernel.bus.subscribe(OrderTriggered, self.triggered.append)

    def trade(self, price: float) -> None:
        """A public trade at ``price``, 1 ms after the previous one."""
        from tradebus.engine.messages import Trade

        self.n += 1
        ts = self.t0 + self.n * 1_000_000
        trade = Trade(self.iid, ts, ts, price, self.size, 1, f"t{self.n}")
        self.h.emulator.on_trade(trade)
        self.h.kernel.process(trade)

    def submit(self, side: Any, qty: float, typ: Any = None, price: float = math.nan, trigger: float = math.nan, **kw: Any) -> Any:
        """Submit an order (a market order unless ``typ``) through the kernel's execution engine."""
        from tradebus.engine.messages import OrderType, SubmitOrder

        order_type = OrderType.MARKET if typ is None else typ
        return self.h.kernel.execution.submit(SubmitOrder("s1", self.iid, "", side, qty, 0, 0, order_type, price, trigger, **kw))

    async def fill(self, side: Any, qty: float, price: float) -> None:
        """A market order filled by a public trade at ``price``."""
        from tradebus.engine.messages import OrderStatus

        order = self.submit(side, qty)
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        self.trade(price)
        await until(lambda: order.status is OrderStatus.FILLED)

    def posts(self, path: str) -> list[str]:
        """The client order ids of the emulator's POST requests to ``path``, in order."""
        return [c for m, p, c in self.h.emulator.requests if m == "POST" and p == path]
