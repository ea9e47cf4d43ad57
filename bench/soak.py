"""Soak: a paper daemon fed a looped recording at full speed for the equivalent of 24 h of market data.

Usage::

    NUMBA_CACHE_DIR=.cache/numba .venv/bin/python bench/soak.py [--json] [--hours 24] [--speed 100] [--samples 40]

A :class:`~tradebus.node.daemon.PaperNode` with its ops layer on (``/metrics`` and
``/health`` on a free port, scraped at every sample like Prometheus would) connects to a
:class:`~tradebus.adapters.common.local_server.LocalVenueServer` serving the Binance spot
BTCUSDT capture of ``tests/fixtures/binance`` (trade and bookTicker streams) at ``--speed``
times its recorded pace (100: 24 h in about 15 min, ~9,400 messages/s) in a loop: copy
``k`` has its trade ids, venue times and receive times shifted by ``k`` times the capture's
span, so that the daemon sees one continuous market (no duplicate trade, time always
forward). The frames are generated lazily (the server indexes a virtual sequence), so the
recording's size in memory does not depend on ``--hours``. The server does not ping: at
``--speed 0`` (as fast as the socket drains) a daemon that falls behind is paced by TCP
alone -- though its own keepalive pings may then time out behind the backlog (a reconnect,
reported). The strategy is
``TickEmaCross`` (fast 8 / slow 30 trades), so the daemon trades all along.

Figures: samples over time of RSS, open file descriptors, asyncio tasks, messages, fills
(from ``/proc/self``); RSS growth from the end of the warm-up (the first ``--warm-up``
share of the market hours) to the end, as a ratio of the RSS at the end of the warm-up,
and the growth of tasks and descriptors over the same interval.

Targets: RSS growth <= 5 % after the warm-up; no growth in tasks or descriptors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing as mp
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, overload

from checkout import use_this_checkout

ROOT = use_this_checkout()

import httpx  # noqa: E402
import msgspec  # noqa: E402
from loguru import logger  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from tradebus.adapters.binance.emulator import BinanceProtocol, split_capture  # noqa: E402
from tradebus.adapters.common.local_server import LocalVenueServer  # noqa: E402
from tradebus.adapters.common.recorder import iter_hftbacktest  # noqa: E402
from tradebus.node.config import parse_paper_config  # noqa: E402
from tradebus.node.daemon import PaperNode, kept_files  # noqa: E402
from tradebus.node.config import dump_paper_config  # noqa: E402
from tradebus.reports.outputs import write_outputs  # noqa: E402
from tradebus.reports.writers import RunDirectory  # noqa: E402

CAPTURE = ROOT / "tests" / "fixtures" / "binance" / "spot_btcusdt_20240808_head4000.gz"
IID = "BTCUSDT.BINANCE"
_PAGE = os.sysconf("SC_PAGE_SIZE")


class LoopedFrames(Sequence[tuple[int, str]]):
    """``copies`` back-to-back copies of ``base`` with shifted trade ids and times, made on access."""

    def __init__(self, base: list[tuple[int, str]], copies: int) -> None:
        self.base = base
        self.copies = copies
        self.span_ns = base[-1][0] - base[0][0] + 1_000_000
        self._decode = msgspec.json.decode
        self._encode = msgspec.json.encode
        # The capture's trade ids are consecutive: copy k continues them (a jump would be a gap the
        # daemon fetches from the venue's history, as after a lost frame).
        ids = [self._decode(raw)["data"]["t"] for _, raw in base if "@trade" in raw]
        self.id_span = max(ids) - min(ids) + 1 if ids else 0

    def __len__(self) -> int:
        return len(self.base) * self.copies

    @overload
    def __getitem__(self, i: int) -> tuple[int, str]: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[tuple[int, str]]: ...
    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        k, j = divmod(i, len(self.base))
        recv_ns, raw = self.base[j]
        if k and "@trade" in raw:
            msg = self._decode(raw)
            data = msg["data"]
            shift_ms = k * (self.span_ns // 1_000_000)
            data["t"] += k * self.id_span
            data["T"] += shift_ms
            data["E"] += shift_ms
            raw = self._encode(msg).decode()
        return recv_ns + k * self.span_ns, raw

    def market_hours(self, frames: int) -> float:
        """Hours of market data in the first ``frames`` frames."""
        return frames / len(self.base) * self.span_ns / 3.6e12


def base_frames() -> list[tuple[int, str]]:
    frames, _ = split_capture(list(iter_hftbacktest(CAPTURE)))
    return [(t, raw) for t, raw in frames if "@trade" in raw or "@bookTicker" in raw]


def config(ws_url: str, tmp: Path) -> Any:
    return parse_paper_config(
        {
            "instruments": [
                {"venue": "BINANCE", "symbol": "BTCUSDT", "base": "BTC", "quote": "USDT", "tick_size": 0.01,
                 "lot_size": 1e-5, "taker_fee": 0.001, "maker_fee": 0.001, "margin": True}
            ],
            "strategy": {"name": "tradebus.strategies.tick_ema:TickEmaCross", "instruments": [IID],
                         "params": {"fast": 8, "slow": 30, "quantity": 0.01}},
            "venue": {"fill_on": "trades"},
            "feeds": [{"venue": "binance", "market": "spot", "ws_url": ws_url,
                       "subscriptions": {IID: ["trade", "bookTicker"]}, "stale_after": 600}],
            "journal": str(tmp / "journal.sqlite"),
            "ops": {"port": 0, "log": {"file": str(tmp / "daemon.jsonl"), "serialize": True}},
        },
        "<soak>",
    )


def serve(copies: int, speed: float | None, url_out: Any, cursor: Any, stop: Any) -> None:
    """Child process: serve ``copies`` loops of the capture; publish the server's cursor."""
    frames = LoopedFrames(base_frames(), copies)
    logger.remove()
    logger.add(sys.stderr, level="WARNING")

    async def main() -> None:
        server = LocalVenueServer(BinanceProtocol(None), frames, speed=speed, lifetime=6 * 3600.0, ping_interval=None)
        async with server as srv:
            url_out.send(srv.ws_url)
            while not stop.is_set():
                cursor.value = srv.cursor
                await asyncio.sleep(0.05)

    asyncio.run(main())


def scraped(text: str, name: str) -> float:
    """Sum of the samples of ``name`` in a Prometheus exposition."""
    # Only the metric's own sample lines are parsed: a label value elsewhere (a reject reason) may trip the parser.
    own = [line for line in text.splitlines() if line.split("{", 1)[0].split(" ", 1)[0] == name]
    return sum(s.value for f in text_string_to_metric_families("\n".join(own) + "\n") for s in f.samples)


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * _PAGE


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def run(hours: float, n_samples: int, warm_up: float, speed: float | None, out: bool = True) -> dict[str, Any]:
    base = base_frames()
    copies = max(2, math.ceil(hours * 3.6e12 / LoopedFrames(base, 1).span_ns))
    frames = LoopedFrames(base, copies)
    # The server runs in its own process: the figures are the daemon's alone.
    ctx = mp.get_context("spawn")
    url_in, url_out = ctx.Pipe(duplex=False)
    cursor = ctx.Value("q", 0, lock=False)
    stop = ctx.Event()
    server = ctx.Process(target=serve, args=(copies, speed, url_out, cursor, stop), daemon=True)
    server.start()
    try:
        with tempfile.TemporaryDirectory() as tmp_dir:
            logger.remove()
            logger.add(sys.stderr, level="WARNING")  # a reconnect or a stale feed would show here
            ws_url = await asyncio.get_running_loop().run_in_executor(None, url_in.recv)
            cfg = config(ws_url, Path(tmp_dir))
            fill_rows = None
            # As `tradebus paper --out`: the daemon streams its row files there and writes the rest at the end.
            run_dir = RunDirectory(Path(tmp_dir) / "out", "paper", keep=kept_files(cfg)) if out else None
            node = PaperNode(cfg, handle_signals=False, run_dir=run_dir)
            samples, elapsed = await drive(node, frames, cursor, n_samples)
            if run_dir is not None:
                kernel = node.kernel
                write_outputs(run_dir, kernel.result, kernel.instruments, dump_paper_config(cfg), {}, node.outputs)
                fill_rows = (run_dir.path / "fills.csv").read_text().count("\n") - 1
    finally:
        stop.set()
        server.join(10)
        if server.is_alive():
            server.kill()
    warm = next(s for s in samples if s["market_h"] >= warm_up * samples[-1]["market_h"])
    end = samples[-1]
    after = [s for s in samples if s["market_h"] >= warm["market_h"]]
    rss_growth = (end["rss_mb"] - warm["rss_mb"]) / warm["rss_mb"]
    tasks_max = max(s["tasks"] for s in after)
    fds_max = max(s["fds"] for s in after)
    return {
        "outputs": "streamed to --out" if out else "none (results in memory)",
        "market_hours": end["market_h"],
        "speed": speed,
        "copies": copies,
        "frames": len(frames),
        "messages": end["messages"],
        "fills": end["fills"],
        "fill_rows_written": fill_rows,
        "elapsed_s": round(elapsed, 1),
        "messages_per_s": round(end["messages"] / elapsed),
        "rss_start_mb": samples[0]["rss_mb"],
        "rss_warm_mb": warm["rss_mb"],
        "rss_end_mb": end["rss_mb"],
        "rss_growth_after_warm_up": round(rss_growth, 4),
        "tasks_warm": warm["tasks"],
        "tasks_max_after": tasks_max,
        "fds_warm": warm["fds"],
        "fds_max_after": fds_max,
        "target_rss_growth": 0.05,
        "rss_ok": rss_growth <= 0.05,
        "tasks_ok": tasks_max <= warm["tasks"],
        "fds_ok": fds_max <= warm["fds"],
        "reconnects": end["reconnects"],
        "rss_kb_per_fill_after_warm_up": round(
            1024 * (end["rss_mb"] - warm["rss_mb"]) / max(1, end["fills"] - warm["fills"]), 2
        ),
        "samples": samples,
    }


async def drive(
    node: PaperNode, frames: LoopedFrames, cursor: Any, n_samples: int
) -> tuple[list[dict[str, Any]], float]:
    """Run ``node`` until the server sent every frame and the daemon processed them; sample along."""
    samples: list[dict[str, Any]] = []
    task = asyncio.create_task(node.run())
    try:
        while not node.running.is_set():
            if task.done():
                await task
            await asyncio.sleep(0.05)
        assert node.ops is not None and node.ops.server is not None
        t0 = time.perf_counter()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.ops.server.port}", timeout=30.0) as http:
            step = frames.market_hours(len(frames)) / n_samples
            next_at = 0.0
            while not task.done():
                finished = cursor.value >= len(frames)
                if finished:
                    await asyncio.sleep(1.0)  # the frames in flight reach the kernel
                if frames.market_hours(node.router.messages) >= next_at or finished:
                    scrape = await http.get("/metrics")
                    health = await http.get("/health")
                    messages = node.router.messages
                    covered = frames.market_hours(messages)  # one message per frame
                    samples.append(
                        {
                            "wall_s": round(time.perf_counter() - t0, 2),
                            "market_h": round(covered, 3),
                            "rss_mb": round(rss_bytes() / 2**20, 2),
                            "fds": open_fds(),
                            "tasks": len(asyncio.all_tasks()),
                            "messages": messages,
                            "fills": len(node.kernel.result.fills),
                            "reconnects": scraped(scrape.text, "tradebus_feed_reconnects_total"),
                            "loop_lag_ms": round(1e3 * scraped(scrape.text, "tradebus_event_loop_lag_seconds"), 2),
                            "health": health.status_code,
                            "served_all": finished,
                        }
                    )
                    if health.status_code != 200:
                        samples[-1]["health_problems"] = health.json().get("problems", [])
                    next_at = covered + step
                    print(json.dumps(samples[-1]), file=sys.stderr, flush=True)  # progress of a long soak
                if finished and len(samples) > 1 and samples[-1]["messages"] == samples[-2]["messages"]:
                    break
                await asyncio.sleep(0.2)
        elapsed = time.perf_counter() - t0
    finally:
        node.stop("soak done")
        await task
    return samples, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--hours", type=float, default=24.0, help="hours of market data to feed (default 24)")
    parser.add_argument("--samples", type=int, default=40, help="samples over the run")
    parser.add_argument(
        "--speed", type=float, default=100.0, help="times the recorded pace (0: as fast as the socket drains)"
    )
    parser.add_argument("--warm-up", type=float, default=0.1, help="share of the run before growth is measured")
    parser.add_argument(
        "--no-out", action="store_true", help="no output directory: the daemon keeps its results in memory"
    )
    args = parser.parse_args()
    report = asyncio.run(run(args.hours, args.samples, args.warm_up, args.speed or None, not args.no_out))
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for s in report["samples"]:
        print(
            f"{s['wall_s']:8.1f} s  {s['market_h']:7.2f} h  rss {s['rss_mb']:8.1f} MB  fds {s['fds']:3d}  "
            f"tasks {s['tasks']:3d}  messages {s['messages']:>10,}  fills {s['fills']:>7,}  "
            f"reconnects {s['reconnects']:.0f}  loop lag {s['loop_lag_ms']} ms"
        )
    print(
        f"{report['market_hours']:.1f} h of market data, {report['messages']:,} messages in {report['elapsed_s']} s "
        f"({report['messages_per_s']:,}/s); RSS start {report['rss_start_mb']} MB, after warm-up "
        f"{report['rss_warm_mb']} MB, end {report['rss_end_mb']} MB: growth {report['rss_growth_after_warm_up']:.2%} "
        f"(target <= 5 %); tasks {report['tasks_warm']} -> max {report['tasks_max_after']}; "
        f"fds {report['fds_warm']} -> max {report['fds_max_after']}; reconnects {report['reconnects']:.0f}; "
        f"{report['rss_kb_per_fill_after_warm_up']} kB of RSS growth per fill after the warm-up"
    )


if __name__ == "__main__":
    main()
