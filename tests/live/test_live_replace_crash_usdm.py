"""A two-request cancel-replace in flight when the live daemon is killed: the replacement is placed after the restart.

The daemon (``tradebus live``, a subprocess) works two limit buys of 0.01 BTC on the Binance USD-M
account emulator, at 27,000 and 26,000, one OCO group. A trade at 28,100 moves the first to 27,500:
USD-M cannot amend it, so it is canceled (``DELETE /fapi/v1/order``) and the replacement waits for
the cancel's confirmation. The emulator cancels it but holds the answer and drops the stream's
frame, and the daemon is killed (SIGKILL) meanwhile. Restarted on its journal, it finds the order
canceled and no replacement: it places one at 27,500, in the OCO group; 27,400 fills it and its
sibling at 26,000 is canceled. Before, the modification was lost: nothing was placed.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from tests.live.kill_harness import USDM_INST, USDM_SNAPSHOT, _USDM_TRADES, _Daemon
from tests.live.live_harness import KEY, SECRET
from tests.live.node_testdata import USDM_IID, USDM_INSTRUMENT
from tests.live.test_live_replace_crash import TradeGate, trade_frames
from tests.live.test_live_daemon import _config as daemon_config
from tests.live.test_node_restart import wait_for
from tradebus.adapters.binance.private_emulator import BinanceFuturesEmulator, MatchingProtocol, RestFault, StreamFault
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.engine.messages import OrderStatus, OrderType

pytestmark = pytest.mark.usefixtures("compiled_kernels")

CANCEL = "/fapi/v1/order"
PRICES = [28_000.0, 28_000.0, 28_100.0, 28_000.0, 27_400.0, 27_400.0]
def _config(tmp: Path, srv: LocalVenueServer, emulator: BinanceFuturesEmulator, *, enter: bool) -> Path:
    endpoints = SimpleNamespace(rest_url=emulator.rest_url, ws_api_url=emulator.ws_url)  # the user stream's URL
    data: dict[str, Any] = daemon_config(tmp, srv.ws_url, srv.http_url, endpoints)  # type: ignore[arg-type]
    data.pop("record")
    data["instruments"] = [USDM_INSTRUMENT]
    data["feeds"] = [{**data["feeds"][0], "market": "usdm", "subscriptions": {USDM_IID: ["trade"]}}]
    data["live"]["market"] = "perpetual"
    data["strategy"] = {
        "name": "tests.live.moved_oco_strategy:MovedOco",
        "instruments": [USDM_IID],
        "params": {"quantity": 0.01, "near": 27_000.0, "far": 26_000.0, "move_at": 28_100.0, "move_to": 27_500.0,
                   "enter": enter},
    }
    data["live"].update(request_timeout=10.0, not_found_grace=1.0, stop_timeout=2.0)
    path = tmp / f"live-{'enter' if enter else 'resume'}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _venue_buys(emulator: BinanceFuturesEmulator) -> list[float]:
    return sorted(r.order.price for r in emulator.open_orders() if r.order.order_type is OrderType.LIMIT)


async def _kill_in_the_cancel_and_restart(tmp: Path, srv: LocalVenueServer, emulator: BinanceFuturesEmulator, gate: TradeGate) -> str:
    """Kill the daemon while its cancel-replace waits for the cancel's answer, restart it, drive the market; the sibling's id."""
    first = _Daemon(_config(tmp, srv, emulator, enter=True), tmp / "daemon-0.log", [])
    await first.start()
    assert first.proc is not None
    try:
        # a trade before the start-up reconciliation ended would meet the buys denied
        await wait_for(lambda: "reconciled BTCUSDT.BINANCE_USDM" in first.text(), first.proc, 90, "the start-up reconciliation", first.log)
        gate.allowed = 2  # 28,000: the two buys
        await wait_for(lambda: _venue_buys(emulator) == [26_000.0, 27_000.0], first.proc, 90, "the two buys working", first.log)
        gate.allowed = 3  # 28,100: the buy at 27,000 is canceled, to be placed again at 27,500
        await wait_for(lambda: any(m == "DELETE" for m, _, _ in emulator.requests), first.proc, 30, "the cancel", first.log)
    finally:
        await first.kill()
    assert _venue_buys(emulator) == [26_000.0]
    sibling = next(r.order.client_order_id for r in emulator.open_orders())

    second = _Daemon(_config(tmp, srv, emulator, enter=False), tmp / "daemon-1.log", [])
    await second.start()
    assert second.proc is not None
    try:
        await wait_for(lambda: "reconciled BTCUSDT.BINANCE_USDM" in second.text(), second.proc, 90, "the start-up reconciliation", second.log)
        await wait_for(lambda: _venue_buys(emulator) == [26_000.0, 27_500.0], second.proc, 60, "the replacement at 27,500", second.log)
        gate.allowed = 6  # 27,400: fills the replacement; its sibling is canceled
        await wait_for(lambda: emulator.orders[sibling].status is OrderStatus.CANCELED, second.proc, 60, "the sibling canceled", second.log)
    finally:
        second.proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(second.proc.wait(), 30)
    return sibling


async def test_a_two_request_cancel_replace_in_flight_at_a_kill_is_placed_after_the_restart(tmp_path: Path) -> None:
    emulator = BinanceFuturesEmulator(
        KEY, SECRET, {USDM_IID: USDM_INST}, {"USDT": 100_000.0},
        rest_faults=[RestFault("slow", "DELETE", CANCEL, seconds=5.0)],
        stream_faults=[StreamFault("drop", '"X": "CANCELED"')],
    )
    gate = TradeGate(_USDM_TRADES[0])
    async with emulator:
        protocol = MatchingProtocol(USDM_SNAPSHOT, futures=True, account=emulator, instrument_ids={"btcusdt": USDM_IID})
        async with LocalVenueServer(protocol, trade_frames(_USDM_TRADES[0], PRICES, decimals=2), gate=gate, lifetime=300) as srv:
            try:
                sibling = await _kill_in_the_cancel_and_restart(tmp_path, srv, emulator, gate)
            finally:
                gate.allowed = len(PRICES)  # the killed daemon's connection waits at the gate: let it end
    filled = [r for r in emulator.orders.values() if r.status is OrderStatus.FILLED]
    assert [(r.order.price, r.order.quantity) for r in filled] == [(27_500.0, 0.01)]
    assert emulator.orders[sibling].status is OrderStatus.CANCELED
