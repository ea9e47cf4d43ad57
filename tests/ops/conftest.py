"""Shared parts of the ops tests: a paper daemon on the USD-M capture served on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from tradebus.adapters.binance.emulator import BinanceProtocol, split_capture
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.adapters.common.recorder import iter_hftbacktest
from tradebus.node.config import dump_paper_config
from tradebus.node.daemon import PaperNode
from tradebus.reports.outputs import write_outputs
from tradebus.reports.writers import RunDirectory

from live.node_testdata import USDM_CAPTURE, usdm_config

USDM_FRAMES, USDM_SNAPSHOT = split_capture(list(iter_hftbacktest(USDM_CAPTURE)))


@asynccontextmanager
async def served_usdm(speed: float | None = 20.0, frames: list[tuple[int, str]] | None = None) -> AsyncIterator[Any]:
    """The USD-M capture served on 127.0.0.1 (``speed=None``: as fast as the socket drains)."""
    proto = BinanceProtocol(USDM_SNAPSHOT, futures=True)
    async with LocalVenueServer(proto, frames or USDM_FRAMES, speed=speed, lifetime=600.0) as srv:
        yield srv


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
