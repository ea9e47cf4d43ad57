"""A live daemon's request for an order starts before the router logs the decision that submitted it."""

from __future__ import annotations

import asyncio
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


async def test_a_frames_requests_start_before_its_decisions_are_logged_and_leave_in_decision_order(tmp_path: Path) -> None:
    # One sequence of what happened: a POST's headers handed to the socket (aiohttp's trace of ccxt's session) and a
    # decision's log line (the router's, bound decision="submitted"), with the submit requests started by then.
    seen: list[tuple[str, str]] = []
    started_at_log: dict[str, int] = {}
    nodes: list[LiveNode] = []

    def sink(message: Any) -> None:
        extra = message.record["extra"]
        if extra.get("decision") == "submitted":
            seen.append(("logged", extra["client_order_id"]))
            started_at_log[extra["client_order_id"]] = nodes[0].venue.requests["place"]

    async def on_headers_sent(_session: Any, _ctx: Any, params: aiohttp.TraceRequestHeadersSentParams) -> None:
        coid = params.url.query.get("newClientOrderId")
        if params.method == "POST" and coid:
            seen.append(("sent", coid))

    strategy = {"name": "tests.live.burst_strategy:BurstBuy", "instruments": [IID],
                "params": {"per_trade": PER_TRADE, "trades": TRADES}}
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
                n = PER_TRADE * TRADES
                await until(lambda: sum(kind == "logged" for kind, _ in seen) == n
                            and sum(kind == "sent" for kind, _ in seen) == n, timeout=60)
                node.stop("test done")
                await asyncio.wait_for(task, 20)
    finally:
        logger.remove(handle)
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
