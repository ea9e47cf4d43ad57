"""Shared helpers of the paper-daemon and playback tests (not a test module).

Market data are cuts of real captures already in ``tests/fixtures`` (see
``tests/fixtures/SOURCES.md``): the Binance spot BTCUSDT hftbacktest capture (trades,
bookTicker, depth diffs and the REST depth snapshot) and the OKX v5 public recording.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

from tests.live.live_harness import answered
from tradebus.adapters.binance.emulator import BinanceProtocol, split_capture
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.adapters.registry import warm_up as warm_up_books
from tradebus.adapters.common.recorder import iter_hftbacktest, read_frames
from tradebus.execution.journal import Journal
from tradebus.features.warmup import warm_up
from tradebus.node.daemon import PaperNode
from tradebus.node.config import PaperConfig, parse_paper_config

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SPOT_CAPTURE = FIXTURES / "binance" / "spot_btcusdt_20240808_head4000.gz"
OKX_RECORDING = FIXTURES / "okx" / "okx_v5_public_2022-05-13.jsonl.gz"
IID = "BTCUSDT.BINANCE"
OKX_IID = "BTC-USDT.OKX"

SPOT_LINES = list(iter_hftbacktest(SPOT_CAPTURE))
SPOT_FRAMES, SPOT_SNAPSHOT = split_capture(SPOT_LINES)
SPOT_TRADE_IDS = [str(json.loads(raw)["data"]["t"]) for _, raw in SPOT_FRAMES if "@trade" in raw]
SPOT_QUOTES = sum("@bookTicker" in raw for _, raw in SPOT_FRAMES)
#: The first trade of the capture's second half (where the restart tests hold the stream: :class:`Valve`).
SPOT_HALFWAY_TRADE = next(raw for _, raw in SPOT_FRAMES[len(SPOT_FRAMES) // 2 :] if "@trade" in raw)

BINANCE_INSTRUMENT = {
    "venue": "BINANCE",
    "symbol": "BTCUSDT",
    "base": "BTC",
    "quote": "USDT",
    "tick_size": 0.01,
    "lot_size": 1.0e-5,
    "taker_fee": 0.001,
    "maker_fee": 0.001,
    "margin": True,  # the test strategies trade long/short
}
OKX_INSTRUMENT = {
    "venue": "OKX",
    "symbol": "BTC-USDT",
    "base": "BTC",
    "quote": "USDT",
    "tick_size": 0.1,
    "lot_size": 1.0e-8,
    "taker_fee": 0.001,
    "maker_fee": 0.0008,
    "margin": True,  # the test strategies trade long/short
}


def okx_frames() -> list[tuple[int, str]]:
    """(recv_ns, raw) of the OKX recording."""
    return [(t, raw if isinstance(raw, str) else raw.decode()) for t, _, raw in read_frames(OKX_RECORDING)]


class ServedCapture(threading.Thread):
    """The Binance spot capture served on 127.0.0.1 at once from a thread of its own, for a test that runs the
    CLI (which runs its own loop); up for ``lifetime`` seconds or until :meth:`close`."""

    def __init__(self, lifetime: float = 60.0) -> None:
        super().__init__(daemon=True)
        self.lifetime = lifetime
        self.ready = threading.Event()
        self.urls: tuple[str, str] = ("", "")
        self._done: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop, self._done = asyncio.get_running_loop(), asyncio.Event()
        protocol = BinanceProtocol(SPOT_SNAPSHOT)
        async with LocalVenueServer(protocol, SPOT_FRAMES, speed=None, lifetime=self.lifetime) as server:
            self.urls = (server.ws_url, server.http_url)
            self.ready.set()
            await self._done.wait()

    def close(self) -> None:
        if self._loop is not None and self._done is not None:
            self._loop.call_soon_threadsafe(self._done.set)
        self.join(10)


def binance_config(
    ws_url: str | None,
    rest_url: str | None,
    channels: list[str],
    *,
    tmp: Path | None = None,
    journal: bool = False,
    record: bool = False,
    stale_after: float = 30.0,
    strategy: dict[str, Any] | None = None,
    risk: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A paper config mapping for the Binance spot BTCUSDT capture (trade-driven TickEmaCross)."""
    data: dict[str, Any] = {
        "instruments": [BINANCE_INSTRUMENT],
        "strategy": strategy
        or {
            "name": "tradebus.strategies.tick_ema:TickEmaCross",
            "instruments": [IID],
            "params": {"fast": 2, "slow": 8, "quantity": 0.01},
        },
        "venue": {"fill_on": "trades"},
        "feeds": [
            {
                "venue": "binance",
                "market": "spot",
                "ws_url": ws_url,
                "rest_url": rest_url,
                "subscriptions": {IID: channels},
                "stale_after": stale_after,
                "backoff": {"base": 0.05, "cap": 0.2, "min_delay": 0.01},
                "snapshot_fetcher": "http",
            }
        ],
        "warm_up": True,
    }
    if risk:
        data["risk"] = risk
    if journal:
        assert tmp is not None
        data["journal"] = str(tmp / "journal.sqlite")
    if record:
        assert tmp is not None
        data["record"] = str(tmp / "frames.jsonl.gz")
    return data


class Valve:
    """A :class:`LocalVenueServer` ``gate`` that holds a paced stream at one frame until the test opens it.

    A paced server goes on printing while no connection streams, so a daemon restarted after a kill
    meets the recording where the clock is: on a loaded machine, past its end (no trade, no fill,
    and a test waiting for one fails or proves nothing). Held at the valve, the killed daemon's
    connection still counts as streaming: the server prints nothing until the valve opens, and the
    restarted daemon's connection starts at the held frame (less the resume overlap), so it meets
    the rest of the recording however long it took to start.

    Parameters
    ----------
    frame
        The raw text of the frame to hold (the first time a connection is about to send it).
    """

    def __init__(self, frame: str) -> None:
        self.frame = frame
        self.held = 0  # send loops waiting at the valve
        self._open = asyncio.Event()

    async def __call__(self, raw: str) -> None:
        if self._open.is_set() or raw != self.frame:
            return
        self.held += 1
        try:
            await self._open.wait()
        finally:
            self.held -= 1

    def open(self) -> None:
        """Let every held connection go on (for good)."""
        self._open.set()


def assert_journal_intact(path: Path, *, closed: bool = True) -> None:
    """The journal at ``path`` passes SQLite's integrity check; with ``closed``, its daemon let go of it too
    (a new :class:`Journal` opens it exclusively)."""
    if closed:
        Journal(path, exclusive=True).close()
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        db.close()


def config_of(data: dict[str, Any]) -> PaperConfig:
    """Validate a config mapping."""
    return parse_paper_config(data, "<test config>")


#: Bound on a daemon's start (its warm-up compiles the feature and the book kernels on a cold Numba cache: 295 s
#: measured for one worker on a loaded 2-core machine; the tests compile them first, ``compiled_kernels`` in
#: conftest.py, so a daemon then loads them); not part of a run's ``timeout``. Half the pytest timeout
#: (pyproject.toml, 600 s, by a thread that ends the worker with no stack of the test): a start that never comes fails
#: here, naming it, with room left for the run's own ``timeout`` (at most 120 s) and its stop.
START_BOUND = 300.0


def kernels_compiled() -> None:
    """Compile (or load from the disk cache) in this process what a daemon's warm-up does: the feature and the book
    kernels. Called before a test's local server starts and before a daemon whose ``warm_up`` is off runs: on a cold
    cache and a loaded machine their compile takes minutes (295 s measured), which outlasted the server's lifetime or,
    done on the daemon's loop at its first frames, the run's bound."""
    warm_up()
    warm_up_books()


async def run_node(
    node: PaperNode, done: Callable[[], bool], timeout: float = 30.0, act: Callable[[], Awaitable[None]] | None = None,
    after_replay: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Run ``node`` until ``done()`` (polled) or until it stops by itself, then stop it and wait for it.

    ``timeout`` bounds the run from the moment the daemon is running (after its warm-up and
    recovery), so a slow start leaves the run its whole time. ``act()``, when given, runs once
    ``done()`` is true and no order waits for the venue (:func:`~tests.live.live_harness.answered`),
    before the stop; ``after_replay()`` runs before that wait (a live daemon's
    :func:`~tests.live.live_harness.trade_after_market_orders`).

    Raises
    ------
    TimeoutError
        The daemon did not start within :data:`START_BOUND`, or ``done()`` did not hold and the
        daemon did not stop by itself within ``timeout`` seconds of running (after stopping it).
    """
    task = asyncio.create_task(node.run())
    reached = False
    try:
        running = asyncio.ensure_future(node.running.wait())
        try:
            await asyncio.wait([task, running], timeout=START_BOUND, return_when=asyncio.FIRST_COMPLETED)
        finally:
            running.cancel()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not task.done():
            if node.running.is_set() and done():
                reached = True
                if act is not None:
                    if after_replay is not None:
                        await after_replay()
                    await answered(node.kernel)
                    await act()
                break
            if loop.time() >= deadline:  # after done() was asked: a loop held past the deadline asks it once more
                break
            await asyncio.sleep(0.02)
    finally:
        ended_by_itself = task.done()
        started = "running" if node.running.is_set() else f"not running after {START_BOUND} s"  # stop() clears it
        node.stop("test done")
        await asyncio.wait_for(task, 20)
    if not (reached or ended_by_itself):
        raise TimeoutError(f"run_node: the condition did not hold and the daemon did not stop within {timeout} s ({started})")


def fill_keys(fills: list[Any]) -> list[tuple[Any, ...]]:
    """What must be equal between two runs of one stream: ids, sides, sizes, prices, liquidity, trades."""
    return [(f.client_order_id, f.side, f.quantity, f.price, f.liquidity, f.trade_id, f.ts_event) for f in fills]


def order_keys(orders: list[Any]) -> list[tuple[Any, ...]]:
    """Order identity and outcome (not its wall-clock times)."""
    return [
        (o.client_order_id, o.side, o.order_type, o.quantity, o.status, o.filled_qty, o.avg_px, o.reason)
        for o in orders
    ]


def _dict_levels(book: dict[float, float], descending: bool) -> np.ndarray:
    rows = sorted(book.items(), key=lambda kv: -kv[0] if descending else kv[0])
    return np.array(rows, dtype=np.float64).reshape(-1, 2)


def binance_reference_book() -> tuple[np.ndarray, np.ndarray, int]:
    """The spot capture's book after its last diff, rebuilt with dicts and the json module.

    Independent of the adapter: REST snapshot, then every diff with ``u`` above the
    snapshot's ``lastUpdateId`` (spot rule: the first straddles it, the next ones follow
    by one). Returns (bids best-first, asks best-first, last update id).
    """
    snap = json.loads(SPOT_SNAPSHOT or "{}")
    bids = {float(p): float(q) for p, q in snap["bids"] if float(q) > 0}
    asks = {float(p): float(q) for p, q in snap["asks"] if float(q) > 0}
    last = snap["lastUpdateId"]
    for _, raw in SPOT_FRAMES:
        if "@depth" not in raw:
            continue
        d = json.loads(raw)["data"]
        if d["u"] <= last:
            continue
        assert d["U"] <= last + 1 <= d["u"], f"capture gap at U={d['U']} after {last}"
        for side, key in ((bids, "b"), (asks, "a")):
            for p, q in d[key]:
                if float(q) == 0.0:
                    side.pop(float(p), None)
                else:
                    side[float(p)] = float(q)
        last = d["u"]
    return _dict_levels(bids, True), _dict_levels(asks, False), last


def okx_reference_book(inst_id: str) -> tuple[np.ndarray, np.ndarray]:
    """An OKX ``books`` channel's final book from the recording (snapshot + updates, by price string)."""
    bids: dict[str, str] = {}
    asks: dict[str, str] = {}
    for _, raw in okx_frames():
        msg = json.loads(raw)
        arg = msg.get("arg", {})
        if msg.get("event") or arg.get("channel") != "books" or arg.get("instId") != inst_id:
            continue
        for item in msg["data"]:
            if msg.get("action") == "snapshot":
                bids.clear()
                asks.clear()
            for side, key in ((bids, "bids"), (asks, "asks")):
                for level in item[key]:
                    if float(level[1]) == 0.0:
                        side.pop(level[0], None)
                    else:
                        side[level[0]] = level[1]
    as_float = {float(p): float(q) for p, q in bids.items()}, {float(p): float(q) for p, q in asks.items()}
    return _dict_levels(as_float[0], True), _dict_levels(as_float[1], False)


BYBIT_RECORDING = FIXTURES / "bybit" / "bybit_v5_public_2026-08-09.jsonl.gz"
BYBIT_IID = "BTCUSDT-LINEAR.BYBIT"
BYBIT_INSTRUMENT = {
    "venue": "BYBIT",
    "symbol": "BTCUSDT-LINEAR",
    "kind": "perpetual",
    "base": "BTC",
    "quote": "USDT",
    "tick_size": 0.1,
    "lot_size": 0.001,
    "taker_fee": 0.00055,
    "maker_fee": 0.0002,
}


def bybit_linear_frames() -> list[tuple[int, str]]:
    """(recv_ns, raw) of the linear connection of the Bybit recording."""
    out = []
    for t, conn, raw in read_frames(BYBIT_RECORDING):
        if conn == "linear":
            out.append((t, raw if isinstance(raw, str) else raw.decode()))
    return out


def bybit_reference(topic: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A Bybit book's final state (snapshot + deltas, by price string) and the symbol's trade ids, in order."""
    bids: dict[str, str] = {}
    asks: dict[str, str] = {}
    trades: list[str] = []
    symbol = topic.rsplit(".", 1)[1]
    for _, raw in bybit_linear_frames():
        msg = json.loads(raw)
        if msg.get("topic") == f"publicTrade.{symbol}":
            trades.extend(t["i"] for t in msg["data"])
        if msg.get("topic") != topic:
            continue
        data = msg["data"]
        if msg["type"] == "snapshot":
            bids.clear()
            asks.clear()
        for side, key in ((bids, "b"), (asks, "a")):
            for price, size in data[key]:
                if float(size) == 0.0:
                    side.pop(price, None)
                else:
                    side[price] = size
    b = {float(p): float(q) for p, q in bids.items()}
    a = {float(p): float(q) for p, q in asks.items()}
    return _dict_levels(b, True), _dict_levels(a, False), trades


USDM_CAPTURE = FIXTURES / "binance" / "usdm_btcusdt_20230404_head4000.gz"
"""Binance USD-M BTCUSDT capture whose diff-depth stream is ``btcusdt@depth@0ms``."""
USDM_IID = "BTCUSDT.BINANCE_USDM"
USDM_INSTRUMENT = {
    "venue": "BINANCE_USDM",
    "symbol": "BTCUSDT",
    "kind": "perpetual",
    "base": "BTC",
    "quote": "USDT",
    "tick_size": 0.1,
    "lot_size": 0.001,
    "taker_fee": 0.0004,
    "maker_fee": 0.0002,
}


def usdm_config(
    ws_url: str | None, rest_url: str | None, *, depth_speed: str | None = None, book_max_idle: float | None = None
) -> dict[str, Any]:
    """A paper config mapping for the USD-M capture (trade, bookTicker, depth; trade-driven TickEmaCross)."""
    feed: dict[str, Any] = {
        "venue": "binance",
        "market": "usdm",
        "ws_url": ws_url,
        "rest_url": rest_url,
        "subscriptions": {USDM_IID: ["trade", "bookTicker", "depth"]},
        "backoff": {"base": 0.05, "cap": 0.2, "min_delay": 0.01},
        "snapshot_fetcher": "http",
    }
    if depth_speed is not None:
        feed["depth_speed"] = depth_speed
    if book_max_idle is not None:
        feed["book_max_idle"] = book_max_idle
    return {
        "instruments": [USDM_INSTRUMENT],
        "strategy": {
            "name": "tradebus.strategies.tick_ema:TickEmaCross",
            "instruments": [USDM_IID],
            "params": {"fast": 2, "slow": 8, "quantity": 0.01},
        },
        "venue": {"fill_on": "trades"},
        "feeds": [feed],
        "warm_up": False,
    }


def stream_config(
    instrument: dict[str, Any], iid: str, venue: str, market: str, channels: list[str], **feed: Any
) -> dict[str, Any]:
    """A paper config mapping with one feed subscribing ``channels`` of ``iid`` (TickEmaCross on trades)."""
    return {
        "instruments": [instrument],
        "strategy": {
            "name": "tradebus.strategies.tick_ema:TickEmaCross",
            "instruments": [iid],
            "params": {"fast": 2, "slow": 5, "quantity": 0.001},
        },
        "venue": {"fill_on": "trades"},
        "feeds": [
            {
                "venue": venue,
                "market": market,
                "subscriptions": {iid: channels},
                "backoff": {"base": 0.05, "cap": 0.2, "min_delay": 0.01},
                **feed,
            }
        ],
        "warm_up": False,
    }


#: The SUSHIUSDT perpetual of the cryptofeed USD-M capture (``adapters.binance_testdata.CF_USDM``), whose
#: kline frames the bar-feed tests serve.
SUSHI_IID = "SUSHIUSDT.BINANCE_USDM"
SUSHI_USDM = {
    "venue": "BINANCE_USDM",
    "symbol": "SUSHIUSDT",
    "kind": "perpetual",
    "base": "SUSHI",
    "quote": "USDT",
    "tick_size": 0.001,
    "lot_size": 1.0,
    "taker_fee": 0.0004,
    "maker_fee": 0.0002,
}


def sushi_kline_config(**feed: Any) -> dict[str, Any]:
    """A paper config mapping: EmaCross 2/3 on the bars of one Binance USD-M kline feed of SUSHIUSDT
    (``feed``: its other keys, or overrides)."""
    return {
        "instruments": [SUSHI_USDM],
        "strategy": {
            "name": "tradebus.strategies.ema_cross:EmaCross",
            "instruments": [SUSHI_IID],
            "params": {"fast": 2, "slow": 3, "quantity": 1.0},
        },
        "venue": {"fill_on": "bars"},
        "feeds": [{"venue": "binance", "market": "usdm", "subscriptions": {SUSHI_IID: ["kline"]}, **feed}],
        "warm_up": False,
    }
