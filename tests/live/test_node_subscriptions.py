"""Subscriptions at the daemon level: a rejected one stops the daemon on every venue (non-zero exit)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tradebus.adapters.binance.emulator import BinanceProtocol
from tradebus.adapters.bybit.emulator import BybitProtocol
from tradebus.adapters.common.local_server import LocalVenueServer, VenueProtocol
from tradebus.adapters.common.policy import SubscriptionRejected
from tradebus.adapters.okx.emulator import OkxProtocol
from tradebus.cli import app
from tradebus.node.daemon import PaperNode

from .node_testdata import (
    BYBIT_IID,
    BYBIT_INSTRUMENT,
    OKX_IID,
    OKX_INSTRUMENT,
    SPOT_FRAMES,
    SPOT_SNAPSHOT,
    binance_config,
    bybit_linear_frames,
    config_of,
    okx_frames,
    stream_config,
)


def venue_case(venue: str) -> tuple[VenueProtocol, list[tuple[int, str]], Any, str]:
    """(server protocol refusing one subscription, frames, config builder(ws, http), expected message)."""
    if venue == "binance":
        proto: VenueProtocol = BinanceProtocol(SPOT_SNAPSHOT, rejected_streams=frozenset({"btcusdt@bookTicker"}))

        def binance(ws: str, http: str) -> dict[str, Any]:
            data = binance_config(ws, http, ["trade", "bookTicker", "depth"])
            data["warm_up"] = False
            return data

        return proto, SPOT_FRAMES, binance, "binance-spot: binance refused the streams .*invalid stream btcusdt@bookTicker"
    if venue == "okx":
        frames = okx_frames()
        return (
            OkxProtocol(frames, rejected=frozenset({"books:BTC-USDT"})),
            frames,
            lambda ws, http: stream_config(OKX_INSTRUMENT, OKX_IID, "okx", "spot", ["trades", "books"], ws_url=ws),
            "okx-public: OKX rejected a subscription: code 60018 .*channel:books,instId:BTC-USDT",
        )
    frames = bybit_linear_frames()
    return (
        BybitProtocol(frames, rejected=frozenset({"orderbook.200.BTCUSDT"})),
        frames,
        lambda ws, http: stream_config(
            BYBIT_INSTRUMENT, BYBIT_IID, "bybit", "linear", ["publicTrade", "orderbook.200"], ws_url=ws
        ),
        "bybit-linear: Bybit linear rejected a subscribe: 'Invalid topic: orderbook.200.BTCUSDT'",
    )


@pytest.mark.parametrize("venue", ["binance", "okx", "bybit"])
async def test_rejected_subscription_stops_the_daemon_with_a_clear_error(venue: str) -> None:
    proto, frames, make_config, message = venue_case(venue)
    async with LocalVenueServer(proto, frames, lifetime=60.0) as srv:
        node = PaperNode(config_of(make_config(srv.ws_url, srv.http_url)), handle_signals=False)
        with pytest.raises(SubscriptionRejected, match=message):
            await asyncio.wait_for(node.run(), 30)
    assert node.summary.stop_reason.startswith("feed ") and "failed" in node.summary.stop_reason


@pytest.mark.usefixtures("_loguru_to_current_stderr")
def test_paper_cli_exits_non_zero_naming_the_rejected_stream(tmp_path: Path) -> None:
    proto, frames, make_config, _ = venue_case("binance")
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    server = LocalVenueServer(proto, frames, lifetime=60.0)

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        assert ready.wait(10)
        cfg = tmp_path / "paper.yaml"
        cfg.write_text(yaml.safe_dump(make_config(server.ws_url, server.http_url)), encoding="utf-8")
        res = CliRunner().invoke(app, ["paper", str(cfg), "--max-seconds", "20"])
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
    assert res.exit_code == 1, res.output
    assert "invalid stream btcusdt@bookTicker" in res.output
