"""The daemon's kernel warm-up leaves nothing to compile for the first frames of every venue's book path.

A daemon compiles its book kernels before its sockets open (:func:`tradebus.adapters.registry.warm_up`);
whatever its first frames still compile runs on the event loop, which on a cold cache held it for minutes
(depth snapshot requests timed out, orders were denied "book unsynced"). Each venue's real capture
(tests/fixtures/SOURCES.md) is fed, as the live path does, after the warm-up in a fresh process, and no
Numba dispatcher of tradebus may gain a signature.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, sys
from numba.core.registry import CPUDispatcher

from tradebus.adapters.binance.client import BinanceRouter
from tradebus.adapters.binance.config import BinanceConfig, BinanceMarket
from tradebus.adapters.binance.emulator import is_snapshot_line
from tradebus.adapters.bybit.parse import BybitParser
from tradebus.adapters.common.recorder import iter_hftbacktest, read_frames
from tradebus.adapters.okx.parse import OkxParser
from tradebus.adapters.registry import warm_up

FIX = sys.argv[1]


def signatures():
    out = {}
    for name, module in list(sys.modules.items()):
        if name.startswith("tradebus"):
            for attr, obj in list(vars(module).items()):
                if isinstance(obj, CPUDispatcher):
                    out[f"{obj.py_func.__module__}.{obj.py_func.__qualname__}"] = sorted(map(str, obj.signatures))
    return out


warm_up()
before = signatures()
fed = {}
for market, name, speed in ((BinanceMarket.SPOT, "spot_btcusdt_20240808_head4000.gz", "100ms"),
                            (BinanceMarket.USDM, "usdm_btcusdt_20230404_head4000.gz", "0ms")):
    out = []
    router = BinanceRouter(BinanceConfig(market=market, symbols=["BTCUSDT"], channels=["trade", "depth"],
                                         depth_speed=speed), out.append)
    # in the recording's order: the deltas received before the REST snapshot are buffered until it comes
    for recv_ns, raw in list(iter_hftbacktest(f"{FIX}/binance/{name}"))[:600]:
        if is_snapshot_line(raw):
            router.on_snapshot_frame(raw, recv_ns, "BTCUSDT")
        else:
            router.on_frame(raw, recv_ns)
    fed[f"binance {market.value}"] = sum(type(m).__name__ == "BookDelta" for m in out)
out = []
okx = OkxParser()
for recv_ns, _, raw in read_frames(f"{FIX}/okx/okx_v5_public_2022-05-13.jsonl.gz"):
    out.extend(okx.parse_frame(raw, recv_ns))
fed["okx"] = sum(type(m).__name__ == "BookDelta" for m in out)
for category in ("linear", "spot"):
    out = []
    bybit = BybitParser(category)
    for recv_ns, conn, raw in read_frames(f"{FIX}/bybit/bybit_v5_public_2026-08-09.jsonl.gz"):
        if conn == category:
            out.extend(bybit.parse_frame(raw, recv_ns))
    fed[f"bybit {category}"] = sum(type(m).__name__ == "BookDelta" for m in out)
after = signatures()
gained = {k: sorted(set(v) - set(before.get(k, []))) for k, v in after.items()}
print(json.dumps({"fed": fed, "gained": {k: v for k, v in gained.items() if v}}))
"""


def test_first_frames_of_every_venue_compile_nothing_after_the_warm_up() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(ROOT / "tests" / "fixtures")],
        capture_output=True, text=True, env=env, cwd=ROOT, check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    # every venue's book really ran: deltas emitted after its snapshot
    assert all(n > 0 for n in report["fed"].values()), report["fed"]
    assert report["gained"] == {}
