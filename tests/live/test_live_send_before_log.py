"""A live daemon's request for an order starts before the router logs the decision that submitted it."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from loguru import logger
from pydantic import SecretStr

from tests.live.live_harness import KEY, SECRET, until
from tests.live.node_testdata import BINANCE_INSTRUMENT, IID, SPOT_FRAMES, SPOT_SNAPSHOT, binance_config
from tradebus.adapters.binance.private_emulator import BinancePrivateEmulator, MatchingProtocol
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.node.live import ApiKeys, LiveNode, parse_live_config

SPOT = {**BINANCE_INSTRUMENT, "margin": False}
PER_TRADE, TRADES = 3, 2


Seen = list[tuple[str, str]]


async def _run(tmp_path: Path, params: dict[str, Any], seen: Seen, done: Callable[[], bool],
               started_at_log: dict[str, int] | None = None) -> None:
    """Run a live daemon trading ``BurstBuy`` (``params``) against the Binance spot emulator until ``done()``, adding to
    ``seen`` in the order they happened: ``("sent", id)`` as a POST's headers are handed to the socket (aiohttp's trace
    of ccxt's session), ``("logged", id)`` as the router logs the decision (bound ``decision="submitted"``), and
    ``("rejected", id)`` as the venue's refusal is logged; ``started_at_log``: the submit requests started when each
    decision was logged."""
    nodes: list[LiveNode] = []
    rejected = re.compile(r"order (\S+) rejected by the venue")

    def sink(message: Any) -> None:
        record = message.record
        extra = record["extra"]
        if extra.get("decision") == "submitted":
            seen.append(("logged", extra["client_order_id"]))
            if started_at_log is not None:
                started_at_log[extra["client_order_id"]] = nodes[0].venue.requests["place"]
        elif (match := rejected.match(record["message"])) is not None:
            seen.append(("rejected", match.group(1)))

    async def on_headers_sent(_session: Any, _ctx: Any, params: aiohttp.TraceRequestHeadersSentParams) -> None:
        coid = params.url.query.get("newClientOrderId")
        if params.method == "POST" and coid:
            seen.append(("sent", coid))

    strategy = {"name": "tests.live.burst_strategy:BurstBuy", "instruments": [IID], "params": params}
    instruments = parse_live_config({**binance_config(None, None, ["trade"], strategy=strategy),
                                     "instruments": [SPOT]}).instrument_map()
    handle = logger.add(sink, level="INFO")
    try:
        async with BinancePrivateEmulator(KEY, SECRET, {IID: instruments[IID]}, {"USDT": 100_000.0}) as emulator:
            protocol = MatchingProtocol(SPOT_SNAPSHOT, account=emulator, instrument_ids={"btcusdt": IID})
            async with LocalVenueServer(protocol, SPOT_FRAMES, speed=8.0) as srv:
                data = binance_config(srv.ws_url, srv.http_url, ["trade"], tmp=tmp_path, journal=True, strategy=strategy)
                data |= {"instruments": [SPOT], "warm_up": False,
                         "live": {"rest_url": emulator.rest_url, "ws_api_url": emulator.ws_api_url}}
                node = LiveNode(parse_live_config(data, "<test>"), ApiKeys(SecretStr(KEY), SecretStr(SECRET)),
                                handle_signals=False)
                nodes.append(node)
                trace = aiohttp.TraceConfig()
                trace.on_request_headers_sent.append(on_headers_sent)
                node.venue.api._ccxt.session = aiohttp.ClientSession(trace_configs=[trace])  # ccxt closes it
                task = asyncio.create_task(node.run())
                await until(done, timeout=60)
                node.stop("test done")
                await asyncio.wait_for(task, 20)
    finally:
        logger.remove(handle)


async def test_a_frames_requests_start_before_its_decisions_are_logged_and_leave_in_decision_order(tmp_path: Path) -> None:
    seen: Seen = []
    started_at_log: dict[str, int] = {}
    n = PER_TRADE * TRADES
    await _run(tmp_path, {"per_trade": PER_TRADE, "trades": TRADES}, seen,
               lambda: sum(kind == "logged" for kind, _ in seen) == n and sum(kind == "sent" for kind, _ in seen) == n,
               started_at_log)
    logged = [coid for kind, coid in seen if kind == "logged"]
    sent = [coid for kind, coid in seen if kind == "sent"]
    assert len(set(logged)) == PER_TRADE * TRADES
    # the requests leave in the order the strategy decided them (the log lines are in that order)
    assert sent == logged
    for frame in range(TRADES):
        ids = logged[frame * PER_TRADE:(frame + 1) * PER_TRADE]
        # every request of the frame had started (its task's first step: count, refusal check, rate budget, signing)
        # when the frame's first decision was logged: 3 and 6, not 0 and 3 as with the lines logged at frame end
        assert started_at_log[ids[0]] == (frame + 1) * PER_TRADE, started_at_log
        # and the frame's first request was on the socket before any of its decisions was logged
        assert seen.index(("sent", ids[0])) < seen.index(("logged", ids[0])), seen


async def test_a_decision_whose_request_is_refused_at_once_is_logged_before_the_refusal(tmp_path: Path) -> None:
    """3 market buys decided on a trade, then trading HALTED in the same frame (a breaker's trip): the venue withdraws
    each request in the step that starts it ("withdrawn, never sent: trading state HALTED") and logs the refusal.
    Each decision's line comes before its refusal's, in decision order. Before, the decision lines (deferred until
    the requests had started) came after all three refusals."""
    seen: Seen = []
    await _run(tmp_path, {"per_trade": PER_TRADE, "trades": 1, "halt": True}, seen,
               lambda: sum(kind == "logged" for kind, _ in seen) == PER_TRADE
               and sum(kind == "rejected" for kind, _ in seen) == PER_TRADE)
    assert not [coid for kind, coid in seen if kind == "sent"]
    logged = [coid for kind, coid in seen if kind == "logged"]
    assert [coid for kind, coid in seen if kind == "rejected"] == logged
    for coid in logged:
        assert seen.index(("logged", coid)) < seen.index(("rejected", coid)), seen
