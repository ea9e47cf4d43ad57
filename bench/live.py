"""Tick-to-order latency of the live daemon against the local Binance account emulator, beside the paper daemon's.

Usage::

    NUMBA_CACHE_DIR=.cache/numba .venv/bin/python bench/live.py [--json] [--copies N] [--speed X] [--same-process]

Both sides replay the same Binance spot BTCUSDT capture (trades and bookTicker) from a
:class:`~tradebus.adapters.common.local_server.LocalVenueServer`, with the strategy of
``bench/market_data_latency.py`` (``Flipper``: one market order per trade; long/short on the
paper side, long/flat on the live side, whose spot account is cash-only):

* reference: the paper daemon (:class:`~tradebus.node.daemon.PaperNode`), ``tick_to_accept``
  = receive time of the trade -> ``OrderAccepted`` of the simulated venue;
* live: :class:`~tradebus.node.live.LiveNode` against
  :class:`~tradebus.adapters.binance.private_emulator.BinancePrivateEmulator` (signed REST
  through ccxt, HMAC verified, user stream), ``tick_to_sent`` = receive time -> the POST
  handed to the socket (aiohttp's ``on_request_headers_sent`` trace of ccxt's session: the
  request has no body, its bytes are written right after), ``tick_to_arrival`` = receive
  time -> the POST's arrival at the emulator (adds loopback and the emulator process's
  scheduling), and ``tick_to_accept`` = receive time -> ``OrderAccepted`` (REST ack).
  ``tick_to_submit`` (receive -> ``OrderSubmitted``: parse, kernel, strategy, risk, journal)
  and ``submit_to_sent`` (``OrderSubmitted`` -> socket: the send path -- task start, rate
  budget, ccxt signing, aiohttp) split ``tick_to_sent``.

The servers (public replay, and the account emulator on the live side) run in a **separate
process** with their own event loop, on both sides: in the daemon's process they would share
its loop (and its core), and their work -- matching, answering, pushing the user stream --
would be measured as the daemon's latency. ``--same-process`` runs them in the daemon's loop
(what this bench did first), to see that share.

Target (issue 9): live p99 tick-to-sent no worse than the paper p99 tick-to-accept. Prints both.

``--send-vs-log N`` measures what the router's decision log lines cost the send instead: two live runs in one
invocation, with ``Burst`` (``N`` market orders on every trade, several decisions in one frame), the decisions of a
frame logged at the frame's end as the paper daemon does (``log_at_frame_end``, the live daemon before the change)
against logged once the requests have started (``log_after_sends``, :attr:`NodeRouter.log_later`), and prints
``submit_to_sent`` (``OrderSubmitted`` -> the request's headers on the socket) of each side, and of the frame's
first and last decision.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from checkout import use_this_checkout

ROOT = use_this_checkout()

import aiohttp  # noqa: E402
from loguru import logger  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from market_data_latency import DECIDED_ON, DECIDING_ON, Flipper, frames, percentiles  # noqa: E402,F401
from market_data_latency import run as paper_run  # noqa: E402
from tradebus.adapters.binance.emulator import BinanceProtocol  # noqa: E402
from tradebus.adapters.binance.private_emulator import BinancePrivateEmulator, MatchingProtocol  # noqa: E402
from tradebus.adapters.common.local_server import LocalVenueServer  # noqa: E402
from tradebus.engine.messages import OrderAccepted, OrderSubmitted  # noqa: E402
from tradebus.node.live import ApiKeys, LiveNode, parse_live_config  # noqa: E402

IID = "BTCUSDT.BINANCE"
KEY, SECRET = "bench-key", "bench-secret"
INSTRUMENT = {"venue": "BINANCE", "symbol": "BTCUSDT", "base": "BTC", "quote": "USDT", "tick_size": 0.01,
              "lot_size": 1e-5, "taker_fee": 0.001, "maker_fee": 0.001}
# A live spot account is cash-only (the spot API neither borrows nor sells short): the strategy flips
# between long and flat, and the account holds coins, so that a sell decided while the buy before
# it is in flight is covered (one order per trade, as on the paper side).
STRATEGY = {"name": "market_data_latency:Flipper", "instruments": [IID], "params": {"low": 0.0}}
BALANCES = {"USDT": 100_000.0, "BTC": 1.0}


def _instruments() -> dict[str, Any]:
    probe = parse_live_config({"instruments": [INSTRUMENT],
                               "strategy": STRATEGY,
                               "feeds": [{"venue": "binance", "market": "spot", "subscriptions": {IID: ["trade"]}}]})
    return probe.instrument_map()


@contextlib.asynccontextmanager
async def _servers(copies: int, speed: float | None, live: bool) -> Any:
    """The public replay (and, ``live``, the account emulator fed by it) on this loop; yields (endpoints, emulator)."""
    data = frames(copies)
    async with contextlib.AsyncExitStack() as stack:
        emulator = None
        protocol: BinanceProtocol = BinanceProtocol(None)
        endpoints: dict[str, str] = {}
        if live:
            emulator = await stack.enter_async_context(BinancePrivateEmulator(KEY, SECRET, _instruments(), BALANCES))
            protocol = MatchingProtocol(None, account=emulator, instrument_ids={"btcusdt": IID})
            endpoints = {"rest_url": emulator.rest_url, "ws_api_url": emulator.ws_api_url}
        srv = await stack.enter_async_context(LocalVenueServer(protocol, data, speed=speed, lifetime=3600.0))
        yield endpoints | {"ws_url": srv.ws_url}, emulator


def _serve(conn: Connection, copies: int, speed: float | None, live: bool) -> None:
    """Child process: run the servers on its own loop until told to stop; send back the emulator's arrival times."""

    async def main() -> None:
        logger.remove()
        async with _servers(copies, speed, live) as (endpoints, emulator):
            conn.send(endpoints)
            await asyncio.get_running_loop().run_in_executor(None, conn.recv)
            conn.send(dict(emulator.placed_ns) if emulator is not None else {})

    asyncio.run(main())


@contextlib.asynccontextmanager
async def _remote_servers(copies: int, speed: float | None, live: bool) -> Any:
    """:func:`_servers` in a child process; yields (endpoints, placed_ns) -- ``placed_ns`` filled on exit."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(child, copies, speed, live), daemon=True)
    proc.start()
    child.close()  # the child's end: its death is an EOFError here, not a hang
    loop = asyncio.get_running_loop()
    placed: dict[str, int] = {}
    try:
        endpoints = await loop.run_in_executor(None, parent.recv)
        yield endpoints, placed
        parent.send("stop")
        placed.update(await loop.run_in_executor(None, parent.recv))
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()


async def live_run(
    copies: int, speed: float | None, same_process: bool = False, per_trade: int = 0, log_at_frame_end: bool = False
) -> dict[str, Any]:
    """One live run; ``per_trade``: ``Burst`` with that many orders per trade (0: ``Flipper``); ``log_at_frame_end``:
    the router logs a frame's decisions as the frame ends, before its requests start."""
    data = frames(copies)
    n_trades = sum("@trade" in raw for _, raw in data)
    DECIDED_ON.clear()
    sent_ns: dict[str, int] = {}
    submit_ns: dict[str, int] = {}
    accept_ns: list[int] = []
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        logger.remove()
        logger.add(tmp / "live.log", level="INFO")
        async with contextlib.AsyncExitStack() as stack:
            if same_process:
                endpoints, emulator = await stack.enter_async_context(_servers(copies, speed, True))
                placed = emulator.placed_ns
            else:
                endpoints, placed = await stack.enter_async_context(_remote_servers(copies, speed, True))
            config = parse_live_config(
                {
                    "instruments": [INSTRUMENT],
                    "strategy": STRATEGY if not per_trade else
                    {"name": "market_data_latency:Burst", "instruments": [IID], "params": {"per_trade": per_trade}},
                    "balances": BALANCES,
                    "venue": {"fill_on": "trades"},
                    "feeds": [{"venue": "binance", "market": "spot", "ws_url": endpoints["ws_url"],
                               "subscriptions": {IID: ["trade", "bookTicker"]}}],
                    "journal": str(tmp / "journal.sqlite"),
                    "live": {"rest_url": endpoints["rest_url"], "ws_api_url": endpoints["ws_api_url"]},
                },
                "<bench>",
            )
            node = LiveNode(config, ApiKeys(SecretStr(KEY), SecretStr(SECRET)), handle_signals=False)
            if log_at_frame_end:
                node.router.log_later = None
            clock_ns = time.time_ns
            wire_ns: dict[str, int] = {}

            async def on_headers_sent(_session: Any, _ctx: Any, params: aiohttp.TraceRequestHeadersSentParams) -> None:
                if params.method == "POST":
                    wire_ns.setdefault(params.url.query.get("newClientOrderId", ""), clock_ns())

            trace = aiohttp.TraceConfig()
            trace.on_request_headers_sent.append(on_headers_sent)
            node.venue.api._ccxt.session = aiohttp.ClientSession(trace_configs=[trace])  # ccxt sends through it, closes it

            def on_submitted(event: OrderSubmitted) -> None:
                DECIDED_ON[event.client_order_id] = DECIDING_ON[0]
                submit_ns[event.client_order_id] = clock_ns()

            def on_accepted(event: OrderAccepted) -> None:
                accept_ns.append(clock_ns() - DECIDED_ON[event.client_order_id])

            node.kernel.bus.subscribe(OrderSubmitted, on_submitted)
            node.kernel.bus.subscribe(OrderAccepted, on_accepted)
            result = node.kernel.result
            task = asyncio.create_task(node.run())
            t0 = time.perf_counter()
            while not task.done() and (result.trades < n_trades or len(accept_ns) < len(DECIDED_ON)
                                         and (not per_trade or node.venue.in_flight)):
                await asyncio.sleep(0.05)
                if time.perf_counter() - t0 > 600:
                    break
            elapsed = time.perf_counter() - t0
            node.stop("bench done")
            await task
        arrival_ns = {c: placed[c] - t for c, t in DECIDED_ON.items() if c in placed}
        sent_ns = {c: wire_ns[c] - t for c, t in DECIDED_ON.items() if c in wire_ns}
    order = sorted(DECIDED_ON, key=submit_ns.__getitem__)
    first = [c for i, c in enumerate(order) if c in sent_ns and (i == 0 or DECIDED_ON[order[i - 1]] != DECIDED_ON[c])]
    last = [c for i, c in enumerate(order)
            if c in sent_ns and (i == len(order) - 1 or DECIDED_ON[order[i + 1]] != DECIDED_ON[c])]
    return {
        "decisions": len(DECIDED_ON),
        "strategy": f"Burst per_trade={per_trade}" if per_trade else "Flipper",
        "decision_log": "at frame end" if log_at_frame_end else "after the sends",
        "frame_first_submit_to_sent": percentiles([wire_ns[c] - submit_ns[c] for c in first]),
        "frame_last_submit_to_sent": percentiles([wire_ns[c] - submit_ns[c] for c in last]),
        "placed": len(arrival_ns),
        "trades": result.trades,
        "elapsed_s": elapsed,
        "servers": "same process" if same_process else "separate process",
        "tick_to_submit": percentiles([submit_ns[c] - t for c, t in DECIDED_ON.items()]),
        "submit_to_sent": percentiles([wire_ns[c] - submit_ns[c] for c in sent_ns]),
        "tick_to_sent": percentiles(list(sent_ns.values())),
        "tick_to_arrival": percentiles(list(arrival_ns.values())),
        "tick_to_accept": percentiles(accept_ns),
    }


async def paper(copies: int, speed: float | None, same_process: bool = False) -> dict[str, Any]:
    """The reference: the paper daemon on the same capture, its public server likewise placed."""
    if same_process:
        return await paper_run(copies, speed, True)
    async with _remote_servers(copies, speed, False) as (endpoints, _):
        return await paper_run(copies, speed, True, ws_url=endpoints["ws_url"])


def send_vs_log(args: argparse.Namespace) -> None:
    """Print ``submit_to_sent`` with the decision log at frame end and after the sends (same invocation)."""
    sides = {name: asyncio.run(live_run(args.copies, args.speed or None, args.same_process, args.send_vs_log, at_end))
             for name, at_end in (("log_at_frame_end", True), ("log_after_sends", False))}
    before, after = sides["log_at_frame_end"], sides["log_after_sends"]
    report = sides | {"submit_to_sent_p50_ratio": after["submit_to_sent"]["p50_us"] / before["submit_to_sent"]["p50_us"]}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"decision -> request on the socket, {args.send_vs_log} orders per trade, {before['decisions']:,} / "
          f"{after['decisions']:,} decisions, {args.copies} copies at {args.speed or 'max'}x, servers in {after['servers']}")
    for key in ("submit_to_sent", "frame_first_submit_to_sent", "frame_last_submit_to_sent", "tick_to_sent"):
        for name, side in sides.items():
            p = side[key]
            print(f"  {key:<27} {name:<17} p50 {p['p50_us']:8.1f} us   p99 {p['p99_us']:8.1f} us   max {p['max_us']:9.1f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--copies", type=int, default=1, help="capture repetitions (1 -> 676 trades)")
    parser.add_argument("--speed", type=float, default=2.0, help="replay pace; 0 = as fast as possible")
    parser.add_argument("--same-process", action="store_true", help="run the servers on the daemon's event loop")
    parser.add_argument("--send-vs-log", type=int, default=0, metavar="N",
                        help="compare the decision log at frame end with after the sends, N orders per trade")
    args = parser.parse_args()
    if args.send_vs_log:
        send_vs_log(args)
        return
    ref = asyncio.run(paper(args.copies, args.speed or None, args.same_process))
    live = asyncio.run(live_run(args.copies, args.speed or None, args.same_process))
    ratio = live["tick_to_sent"]["p99_us"] / ref["tick_to_accept"]["p99_us"]
    report = {"paper": ref, "live": live, "live_p99_sent_over_paper_p99_accept": ratio}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"tick-to-order, {live['decisions']:,} live decisions ({ref['decisions']:,} paper), "
          f"{args.copies} copies at {args.speed or 'max'}x, servers in {live['servers']}")
    rows = [("paper tick_to_submit", ref["tick_to_submit"]), ("paper tick_to_accept", ref["tick_to_accept"]),
            ("live tick_to_submit", live["tick_to_submit"]), ("live submit_to_sent", live["submit_to_sent"]),
            ("live tick_to_sent", live["tick_to_sent"]), ("live tick_to_arrival", live["tick_to_arrival"]),
            ("live tick_to_accept", live["tick_to_accept"])]
    for name, p in rows:
        print(f"  {name:<22} p50 {p['p50_us']:8.1f} us   p99 {p['p99_us']:8.1f} us   max {p['max_us']:9.1f} us")
    print(f"  live p99 tick-to-sent / paper p99 tick-to-accept = {ratio:.2f} (target <= 1)")


if __name__ == "__main__":
    main()
