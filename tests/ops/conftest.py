"""Shared parts of the ops tests: a paper daemon on the USD-M capture served on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tradebus.adapters.binance.emulator import BinanceProtocol, split_capture
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.adapters.common.recorder import iter_hftbacktest
from tradebus.node.config import dump_paper_config
from tradebus.node.daemon import PaperNode
from tradebus.reports.outputs import write_outputs
from tradebus.reports.writers import RunDirectory

from live.node_testdata import USDM_CAPTURE, kernels_compiled, usdm_config

USDM_FRAMES, USDM_SNAPSHOT = split_capture(list(iter_hftbacktest(USDM_CAPTURE)))


@pytest.fixture(scope="module", autouse=True)
def _kernels_compiled() -> None:
    """The feature and book kernels compiled (or loaded) before any test of the module starts a server (most
    with a 60 s lifetime) or a daemon: on a cold cache and a loaded machine their compile in the daemon's warm-up
    took minutes, outlasting the servers' lifetimes and the tests' bounds."""
    kernels_compiled()


class OnDemand:
    """A server gate that sends the capture only while the test waits for something market data brings.

    A test that acts on the daemon between its waits (an order, a chat command) would otherwise race the
    paced capture: on a loaded machine the capture can end before the daemon acts, and the order that needs
    one more trade never fills. Here the stream stops before a depth update while :meth:`until` waits for
    nothing, or for a condition already met (checked before each such frame), and what is left of the capture
    stays for the next wait. A held stream goes on with a depth update: trades that came after a pause with
    no book change would make the daemon's book liveness call its book frozen and resync it, denying
    orders meanwhile. Frames held back go out as fast as the socket drains once wanted (the paced clock ran on).
    A hold is meant to last while the test acts (ms to s): past the feed's ``stale_after`` (30 s) it goes stale.
    """

    def __init__(self) -> None:
        self._wanted: Callable[[], bool] | None = None
        self._released = False

    async def gate(self, raw: str) -> None:
        """The server's ``gate``: hold a depth update until it is wanted (or :meth:`release`)."""
        if '"depthUpdate"' not in raw:
            return
        while not self._released and (self._wanted is None or self._wanted()):
            await asyncio.sleep(0.005)

    async def until(self, cond: Callable[[], bool], timeout: float = 60.0) -> None:
        """Stream the capture until ``cond()`` holds (fails the test after ``timeout`` seconds)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._wanted = cond
        try:
            while not cond():
                assert loop.time() < deadline, "condition not met in time"
                await asyncio.sleep(0.02)
        finally:
            self._wanted = None

    def release(self) -> None:
        """Send the rest of the capture at its pace (a held gate would keep the server from stopping)."""
        self._released = True


@asynccontextmanager
async def served_usdm(
    speed: float | None = 20.0, frames: list[tuple[int, str]] | None = None, on_demand: OnDemand | None = None
) -> AsyncIterator[Any]:
    """The USD-M capture served on 127.0.0.1 (``speed=None``: as fast as the socket drains; ``on_demand``:
    sent only while that test waits for market data)."""
    proto = BinanceProtocol(USDM_SNAPSHOT, futures=True)
    gate = None if on_demand is None else on_demand.gate
    async with LocalVenueServer(proto, frames or USDM_FRAMES, speed=speed, lifetime=600.0, gate=gate) as srv:
        try:
            yield srv
        finally:
            if on_demand is not None:
                on_demand.release()


async def handled_all(srv: LocalVenueServer, node: PaperNode, timeout: float = 60.0) -> None:
    """Wait until ``srv`` has sent its whole capture and ``node``'s feeds have handled every frame it wrote (each
    stream frame and the one answer to each client message; a frame counted is handled): the server's cursor alone
    runs ahead of a loaded daemon by what the sockets hold, hundreds of frames."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while srv.cursor < len(srv.frames):
        assert loop.time() < deadline, f"the server sent {srv.cursor} of its {len(srv.frames)} frames in {timeout} s"
        await asyncio.sleep(0.02)
    written = sum(s.sent + len(s.received) for s in srv.sessions)
    while sum(feed.client.frames for feed in node.feeds if feed.client is not None) < written:
        assert loop.time() < deadline, f"the daemon handled not all {written} frames the server wrote in {timeout} s"
        await asyncio.sleep(0.02)


def usdm_paper(srv: Any, ops: dict[str, Any] | None) -> dict[str, Any]:
    """A paper config on the served capture (depth at the recorded 0ms, warm-up on) with an ``ops`` block."""
    data = usdm_config(srv.ws_url, srv.http_url, depth_speed="0ms")
    # compile (or load) the feature kernels before subscribing: a first compile inside the
    # loop would stall it for a minute while the server keeps streaming
    data["warm_up"] = True
    if ops is not None:
        data["ops"] = ops
    return data


def write_run(node: PaperNode, out: Path) -> None:
    """Write ``node``'s run outputs to ``out`` as ``tradebus paper --out`` does."""
    kernel = node.kernel
    run_dir = RunDirectory(out, "paper")
    write_outputs(run_dir, kernel.result, kernel.instruments, dump_paper_config(node.config), {})
