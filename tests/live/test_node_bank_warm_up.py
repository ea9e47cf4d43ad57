"""A daemon's warm-up compiles its strategies' feature banks too: their start and first messages compile nothing.

Each :class:`~tradebus.features.bank.FeatureBank` compiles the drivers generated for its features when it is
built, and the kernel builds the strategies' banks when it starts them: on the event loop, after the warm-up (0.3 s
for TickEmaCross's two trade EMAs on a cold cache, more for bigger banks, the loop held meanwhile). In a fresh
process a paper daemon's own warm-up runs, then its kernel starts and the first frames of the Binance spot capture
(tests/fixtures/SOURCES.md) go through its router; no Numba dispatcher of tradebus, the banks' generated driver
modules included, may gain a signature.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from .test_node_restart import ROOT

SCRIPT = r"""
import asyncio, json, sys
from numba.core.registry import CPUDispatcher

from tests.live.node_testdata import binance_config, config_of
from tradebus.adapters.binance.client import BinanceRouter
from tradebus.adapters.binance.config import BinanceConfig, BinanceMarket
from tradebus.adapters.binance.emulator import is_snapshot_line
from tradebus.adapters.common.recorder import iter_hftbacktest
from tradebus.node.daemon import PaperNode


def signatures():
    out = {}
    for name, module in list(sys.modules.items()):
        if "tradebus" in name:  # the generated driver modules are _tradebus_bank_<hash>
            for obj in list(vars(module).values()):
                if isinstance(obj, CPUDispatcher):
                    out[f"{obj.py_func.__module__}.{obj.py_func.__qualname__}"] = sorted(map(str, obj.signatures))
    return out


async def main():
    node = PaperNode(config_of(binance_config("ws://127.0.0.1:9", "http://127.0.0.1:9", ["trade"])),
                     handle_signals=False)
    node._stop = asyncio.Event()
    assert await node._warm_up()
    before = signatures()
    node.kernel.start()
    frames = [raw for _, raw in list(iter_hftbacktest(sys.argv[1]))[:600] if not is_snapshot_line(raw)]
    out = []
    parser = BinanceRouter(BinanceConfig(market=BinanceMarket.SPOT, symbols=["BTCUSDT"], channels=["trade"]),
                           out.append)
    for i, raw in enumerate(frames):
        parser.on_frame(raw, i)
    for msg in out:
        node.router(msg)
    after = signatures()
    gained = {k: sorted(set(v) - set(before.get(k, []))) for k, v in after.items()}
    banks = {k: v for k, v in before.items() if k.startswith("_tradebus_bank_") and v}
    trades = sum(type(m).__name__ == "Trade" for m in out)
    print(json.dumps({"trades": trades, "banks": banks, "gained": {k: v for k, v in gained.items() if v}}))


asyncio.run(main())
"""


def test_a_daemons_strategy_start_and_first_trades_compile_nothing_after_its_warm_up() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    capture = ROOT / "tests" / "fixtures" / "binance" / "spot_btcusdt_20240808_head4000.gz"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(capture)], capture_output=True, text=True, env=env, cwd=ROOT, check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["trades"] > 0  # the strategy's trade EMAs really ran
    assert report["gained"] == {}
    # the strategy's own bank (not only the shared field-only drivers) was compiled in the warm-up
    assert any(k.endswith(".on_trade") for k in report["banks"]), report["banks"]
