"""``tradebus_rate_limit_headroom_ratio`` of a live daemon, read from ``/metrics``, is what the venue's last answer left.

The live daemon (start-up reconciliation only, a strategy that never orders) runs against each
venue's local account emulator; once its start-up requests are answered, ``/metrics`` is
scraped over HTTP. Binance's answers say the weight used this minute (``X-MBX-USED-WEIGHT-1M``,
limit 6000), Bybit's the requests left to the endpoint (``X-Bapi-Limit-Status`` of
``X-Bapi-Limit``); OKX's say nothing, and the metric is not set.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from tradebus.adapters.binance.private_emulator import BinancePrivateEmulator, MatchingProtocol
from tradebus.adapters.common.account_emulator import AccountEmulator
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.engine.instrument import Instrument
from tradebus.node.live import ApiKeys, LiveNode, parse_live_config

from live.live_harness import KEY, SECRET, WAIT, until
from live.node_testdata import BINANCE_INSTRUMENT, IID, SPOT_FRAMES, SPOT_SNAPSHOT, binance_config
from live.venue_kits import KITS

from .test_metrics_health import samples

NEVER_ORDERS = {"fast": 2, "slow": 1000, "quantity": 0.001, "mode": "long_only"}
HEADROOM = "tradebus_rate_limit_headroom_ratio"


def _binance(tmp_path: Path) -> tuple[AccountEmulator, Any, Any, dict[str, str]]:
    spot = {**BINANCE_INSTRUMENT, "margin": False}
    emulator = BinancePrivateEmulator(KEY, SECRET, {IID: Instrument(**spot)}, {"USDT": 100_000.0})
    protocol = MatchingProtocol(SPOT_SNAPSHOT, account=emulator, instrument_ids={"btcusdt": IID})
    frames = [f for f in SPOT_FRAMES if '@trade"' in f[1]][:20]

    def config(srv: Any) -> dict[str, Any]:
        data = binance_config(srv.ws_url, srv.http_url, ["trade"], strategy={
            "name": "tradebus.strategies.tick_ema:TickEmaCross", "instruments": [IID], "params": NEVER_ORDERS,
        })
        data.update(instruments=[spot], warm_up=False)
        data["live"] = {"rest_url": emulator.rest_url, "ws_api_url": emulator.ws_api_url, "request_timeout": WAIT}
        return data

    env = {"TRADEBUS_BINANCE_API_KEY": KEY, "TRADEBUS_BINANCE_API_SECRET": SECRET}
    return emulator, LocalVenueServer(protocol, frames), config, env


def _kit(venue: str, tmp_path: Path) -> tuple[AccountEmulator, Any, Any, dict[str, str]]:
    kit = KITS[venue]
    emulator = kit.emulator()

    def config(srv: Any) -> dict[str, Any]:
        data = kit.config(tmp_path, srv.ws_url, emulator)
        data["strategy"]["params"] = NEVER_ORDERS
        del data["record"], data["journal"]
        data["live"]["request_timeout"] = WAIT  # the start-up's requests are answered, however slowly
        return data

    return emulator, LocalVenueServer(kit.make_protocol(kit.frames, emulator), kit.frames[:200]), config, kit.env


@pytest.mark.parametrize("venue", ["binance", "bybit", "okx"])
async def test_headroom_on_metrics_is_what_the_venues_last_answer_left(venue: str, tmp_path: Path) -> None:
    emulator, server, make_config, env = _binance(tmp_path) if venue == "binance" else _kit(venue, tmp_path)
    async with emulator, server as srv:
        data = make_config(srv)
        data["live"]["reconcile_interval"] = None  # no request after the start-up's
        data["ops"] = {"port": 0}
        config = parse_live_config(data, "<test>")
        node = LiveNode(config, ApiKeys.from_env(config.live, env), handle_signals=False)
        task = asyncio.create_task(node.run())
        try:
            await until(lambda: task.done() or (node.running.is_set() and node._startup_task is not None
                                                and node._startup_task.done()))
            await node.venue.drain(WAIT)
            assert node.ops is not None and node.ops.server is not None
            async with httpx.AsyncClient(timeout=WAIT) as http:
                text = (await http.get(f"http://127.0.0.1:{node.ops.server.port}/metrics")).text
        finally:
            node.stop("test done")
            await asyncio.wait_for(task, WAIT)
    found = samples(text).get(HEADROOM, [])
    label = next(iter(config.instrument_map().values())).venue
    if venue == "binance":
        assert isinstance(emulator, BinancePrivateEmulator) and emulator.weight > 0
        assert found == [({"venue": label}, pytest.approx(1.0 - emulator.weight / 6000))]
    elif venue == "bybit":
        status = getattr(emulator, "last_limit_status")
        assert status is not None and status < 10
        assert found == [({"venue": label}, pytest.approx(status / 10))]
    else:
        assert found == []  # OKX sends no rate-limit header
