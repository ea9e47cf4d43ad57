"""A cancel-replace in flight when the live daemon is killed: the replacement keeps the order's links.

The daemon (``tradebus live``, a subprocess) holds 0.02 BTC on the Binance spot account emulator, a
trailing sell stop (0.01, 500 below the best trade) and a take-profit (0.01 at 65,000), one OCO
group. A trade at 61,000 moves the stop from 59,500 to 60,500 by ``POST /api/v3/order/cancelReplace``;
the emulator does it and holds its answer, and the daemon is killed (SIGKILL) meanwhile. Restarted
on its journal, it finds the stop canceled and the replacement working at the venue: the replacement
trails (62,000 moves it to 61,500) and, once it sold, its OCO sibling is canceled.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.live.kill_harness import _Daemon
from tests.live.live_harness import KEY, SECRET
from tests.live.node_testdata import IID, SPOT_FRAMES, SPOT_SNAPSHOT
from tests.live.test_live_daemon import SPOT, _config as daemon_config
from tests.live.test_node_restart import wait_for
from tradebus.adapters.binance.private_emulator import BinancePrivateEmulator, MatchingProtocol, RestFault
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import OrderStatus, OrderType

pytestmark = pytest.mark.usefixtures("compiled_kernels")

REPLACE = "/api/v3/order/cancelReplace"
PRICES = [60_000.0, 60_000.0, 61_000.0, 62_000.0, 61_400.0, 61_400.0]
#: The recorded spot trade frame the tests' trades are made from.
TRADE_TEMPLATE = next(frame for frame in SPOT_FRAMES if "@trade" in frame[1])


def trade_frames(template: tuple[int, str], prices: list[float], decimals: int = 8) -> list[tuple[int, str]]:
    """One public trade frame per price, 10 ms apart, made from the recorded trade frame ``template``."""
    ts, raw = template
    frames = []
    for n, price in enumerate(prices):
        msg = json.loads(raw)
        data = msg["data"]
        data["t"] += n
        data["p"] = f"{price:.{decimals}f}"
        data["T"] += 10 * n
        data["E"] += 10 * n
        frames.append((ts + n * 10_000_000, json.dumps(msg, separators=(",", ":"))))
    return frames


class TradeGate:
    """Lets the public stream of :func:`trade_frames` send its frames only up to ``allowed`` (the test moves the market)."""

    def __init__(self, template: tuple[int, str]) -> None:
        self.first_id = json.loads(template[1])["data"]["t"]
        self.allowed = 0

    async def __call__(self, raw: str) -> None:
        index = json.loads(raw)["data"]["t"] - self.first_id
        while index >= self.allowed:
            await asyncio.sleep(0.01)


def _config(tmp: Path, srv: LocalVenueServer, emulator: BinancePrivateEmulator, *, enter: bool) -> Path:
    data: dict[str, Any] = daemon_config(tmp, srv.ws_url, srv.http_url, emulator)
    data.pop("record")
    data["strategy"] = {
        "name": "tests.live.trailing_oco_strategy:TrailingOco",
        "instruments": [IID],
        "params": {"quantity": 0.01, "offset": 500.0, "take_profit": 65_000.0, "enter": enter},
    }
    data["live"].update(request_timeout=10.0, not_found_grace=1.0, stop_timeout=2.0)
    path = tmp / f"live-{'enter' if enter else 'resume'}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _venue_stops(emulator: BinancePrivateEmulator) -> list[float]:
    return sorted(r.order.trigger_price for r in emulator.open_orders() if r.order.order_type is OrderType.STOP_MARKET)


async def _kill_in_the_replace_and_restart(tmp: Path, srv: LocalVenueServer, emulator: BinancePrivateEmulator, gate: TradeGate) -> str:
    """Kill the daemon while its cancel-replace waits for the venue's answer, restart it, drive the market; the target's id."""
    first = _Daemon(_config(tmp, srv, emulator, enter=True), tmp / "daemon-0.log", [])
    await first.start()
    assert first.proc is not None
    try:
        # a trade before the start-up reconciliation ended would meet the entry denied
        await wait_for(lambda: "reconciled BTCUSDT.BINANCE" in first.text(), first.proc, 90, "the start-up reconciliation", first.log)
        gate.allowed = 1  # 60,000: the entry, a market buy
        await wait_for(lambda: any(m == "POST" for m, _, _ in emulator.requests), first.proc, 90, "the entry", first.log)
        gate.allowed = 2  # 60,000: fills it
        await wait_for(lambda: _venue_stops(emulator) == [59_500.0] and len(emulator.open_orders()) == 2,
                       first.proc, 30, "the stop and the take-profit working", first.log)
        gate.allowed = 3  # 61,000: the stop is cancel-replaced to 60,500
        await wait_for(lambda: any(p == REPLACE for _, p, _ in emulator.requests), first.proc, 30, "the cancel-replace", first.log)
    finally:
        await first.kill()
    assert _venue_stops(emulator) == [60_500.0]
    target = next(r.order.client_order_id for r in emulator.open_orders() if r.order.order_type is OrderType.LIMIT)

    second = _Daemon(_config(tmp, srv, emulator, enter=False), tmp / "daemon-1.log", [])
    await second.start()
    assert second.proc is not None
    try:
        await wait_for(lambda: "reconciled BTCUSDT.BINANCE" in second.text(), second.proc, 90, "the start-up reconciliation", second.log)
        gate.allowed = 4  # 62,000: the replacement trails to 61,500
        await wait_for(lambda: _venue_stops(emulator) == [61_500.0], second.proc, 20, "the replacement trailing", second.log)
        gate.allowed = 6  # 61,400: the stop sells 0.01; its sibling is canceled
        await wait_for(lambda: emulator.orders[target].status is OrderStatus.CANCELED, second.proc, 20, "the take-profit canceled", second.log)
    finally:
        second.proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(second.proc.wait(), 30)
    return target


async def test_a_replacement_in_flight_at_a_kill_keeps_trailing_and_its_oco_sibling_after_the_restart(tmp_path: Path) -> None:
    inst = Instrument(**{**SPOT, "margin": False})
    emulator = BinancePrivateEmulator(KEY, SECRET, {IID: inst}, {"USDT": 100_000.0},
                                      rest_faults=[RestFault("slow", "POST", REPLACE, seconds=5.0)])
    gate = TradeGate(TRADE_TEMPLATE)
    async with emulator:
        protocol = MatchingProtocol(SPOT_SNAPSHOT, account=emulator, instrument_ids={"btcusdt": IID})
        async with LocalVenueServer(protocol, trade_frames(TRADE_TEMPLATE, PRICES), gate=gate, lifetime=300) as srv:
            try:
                target = await _kill_in_the_replace_and_restart(tmp_path, srv, emulator, gate)
            finally:
                gate.allowed = len(PRICES)  # the killed daemon's connection waits at the gate: let it end
    assert emulator.balances.get("BTC", 0.0) == pytest.approx(0.01)
    assert [c for m, p, c in emulator.requests if m == "DELETE"] == [target]
