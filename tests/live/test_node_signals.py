"""SIGINT and SIGTERM to a daemon: its stop, and once it is stopping, the end of the step under way.

Against the local Binance spot account emulator and the recorded public stream on 127.0.0.1; the
second-signal case runs ``tradebus live`` as a subprocess (a signal's default action would end the test run).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr

from tests.live.live_harness import KEY, SECRET, until
from tests.live.node_testdata import IID, SPOT_FRAMES, SPOT_SNAPSHOT
from tests.live.test_live_daemon import SPOT, _config, _minimal
from tradebus.adapters.binance.private_emulator import BinancePrivateEmulator, MatchingProtocol, RestFault
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.engine.messages import OrderStatus
from tradebus.node.live import ApiKeys, LiveNode, parse_live_config

ROOT = Path(__file__).resolve().parents[2]
RESTING = {"name": "tests.live.resting_strategy:RestingBuy", "instruments": [IID], "params": {"quantity": 0.01, "price": 20_000.0}}


def _emulator() -> BinancePrivateEmulator:
    instruments = {IID: parse_live_config({"instruments": [SPOT], **_minimal()}).instrument_map()[IID]}
    return BinancePrivateEmulator(KEY, SECRET, instruments, {"USDT": 100_000.0})


async def test_the_handlers_a_daemon_found_are_put_back_when_it_has_stopped(tmp_path: Path) -> None:
    """The daemon removed its handlers and left SIGTERM at its default action (``SIG_DFL``) and SIGINT at
    ``default_int_handler``, whatever was there before (the CLI's SIGTERM handler, which ends a command by an exception
    so that its files are cleaned up; ``asyncio.run``'s SIGINT handler): a SIGTERM while ``tradebus live`` wrote its
    outputs afterwards killed it outright. The handlers found are put back."""

    def before(signum: int, frame: Any) -> None:
        raise AssertionError("not called")

    previous = signal.signal(signal.SIGTERM, before)
    sigint = signal.getsignal(signal.SIGINT)
    try:
        async with _emulator() as emulator:
            protocol = MatchingProtocol(SPOT_SNAPSHOT, account=emulator, instrument_ids={"btcusdt": IID})
            async with LocalVenueServer(protocol, SPOT_FRAMES) as srv:
                config = parse_live_config(_config(tmp_path, srv.ws_url, srv.http_url, emulator), "<test>")
                node = LiveNode(config, ApiKeys(SecretStr(KEY), SecretStr(SECRET)), handle_signals=True)
                task = asyncio.create_task(node.run())
                await until(lambda: task.done() or node.running.is_set(), timeout=30)
                assert signal.getsignal(signal.SIGTERM) is not before  # the daemon's while it runs
                node.stop("test done")
                await asyncio.wait_for(task, 20)
        assert signal.getsignal(signal.SIGTERM) is before
        assert signal.getsignal(signal.SIGINT) is sigint
    finally:
        signal.signal(signal.SIGTERM, previous)


async def test_a_second_sigterm_while_the_live_daemon_cancels_its_orders_cuts_that_step_short_and_exits_143(tmp_path: Path) -> None:
    """``tradebus live`` stopped by SIGTERM cancels its resting order (``live.cancel_on_stop``), the venue holding the
    cancel unanswered. A second SIGTERM meanwhile killed the process outright (the handlers were removed before the
    shutdown: the default action), nothing of the stop done, no ``node.json``, exit -15. It now cuts the cancels'
    wait short, the rest of the shutdown runs (journal closed, outputs written), and the command exits 143, as the
    CLI documents for SIGTERM; the order left is logged and listed in ``node.json``'s ``orders_left`` (a stop
    that left nothing lists none)."""
    release = asyncio.Event()
    log = tmp_path / "daemon.log"
    proc: asyncio.subprocess.Process | None = None
    async with _emulator() as emulator:
        emulator.rest_faults.append(RestFault("hold", "DELETE", "/api/v3/order", release=release))
        protocol = MatchingProtocol(SPOT_SNAPSHOT, account=emulator, instrument_ids={"btcusdt": IID})
        async with LocalVenueServer(protocol, SPOT_FRAMES) as srv:
            data = _config(tmp_path, srv.ws_url, srv.http_url, emulator)
            data["strategy"] = RESTING
            data["live"]["stop_timeout"] = 20.0
            path = tmp_path / "live.yaml"
            path.write_text(yaml.safe_dump(data), encoding="utf-8")
            env = {**os.environ, "PYTHONPATH": str(ROOT), "TRADEBUS_BINANCE_API_KEY": KEY, "TRADEBUS_BINANCE_API_SECRET": SECRET}
            try:
                with log.open("wb") as err:
                    proc = await asyncio.create_subprocess_exec(
                        sys.executable, "-m", "tradebus.cli", "live", str(path), "--out", str(tmp_path / "out"),
                        stdin=asyncio.subprocess.DEVNULL, stdout=err, stderr=err, cwd=str(ROOT), env=env,
                    )
                await until(lambda: any(o.status is OrderStatus.ACCEPTED for o in emulator.orders.values())
                            or proc.returncode is not None, timeout=120)
                assert proc.returncode is None, log.read_text()
                proc.send_signal(signal.SIGTERM)
                await until(lambda: any(m == "DELETE" for m, _, _ in emulator.requests), timeout=30)
                await asyncio.sleep(0.5)  # the stop waits for the cancel's answer
                assert proc.returncode is None, log.read_text()
                proc.send_signal(signal.SIGTERM)
                returncode = await asyncio.wait_for(proc.wait(), 60)
            finally:
                release.set()
                if proc is not None and proc.returncode is None:
                    proc.kill()
                    await proc.wait()
    text = log.read_text()
    assert returncode == 143, text
    assert "signal SIGTERM while stopping (signal SIGTERM): the step of the shutdown under way is cut short" in text
    summary = json.loads((tmp_path / "out" / "node.json").read_text())
    assert summary["stop_reason"] == "signal SIGTERM"
    # the resting buy whose cancel was cut short: node.json tells this stop from a clean one
    [left] = summary["orders_left"]
    assert (left["instrument_id"], left["side"], left["quantity"], left["price"]) == (IID, "buy", 0.01, 20_000.0)
    assert f"stopping: order {left['client_order_id']} " in text and "not confirmed canceled" in text
