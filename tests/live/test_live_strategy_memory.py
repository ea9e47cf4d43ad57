"""The README's example of a strategy rebuilding its memory in ``on_start`` (Strategy API), run on a live restart.

``tradebus live`` (``live.cancel_on_stop: false``) on the Binance spot account emulator and its recorded public
stream, on 127.0.0.1: a bracket buys 0.01 BTC at market and leaves its stop-loss and take-profit working at the venue
when the daemon stops; the daemon restarted on its journal runs the README's strategy, whose ``on_start`` must find
the position's entry price and the two exits as the venue holds them.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from pydantic import SecretStr

from tests.live.live_harness import IID, KEY, SECRET
from tests.live.node_testdata import SPOT_SNAPSHOT
from tests.live.test_live_daemon import SPOT, _run_until
from tests.live.test_live_daemon import _config as daemon_config
from tests.live.test_live_replace_crash import TRADE_TEMPLATE, TradeGate, trade_frames
from tests.test_readme_examples import README, fenced
from tradebus.adapters.binance.private_emulator import BinancePrivateEmulator, MatchingProtocol
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.engine.instrument import Instrument
from tradebus.node.live import ApiKeys, LiveConfig, LiveNode, parse_live_config

#: The README's strategy, recording what its on_start rebuilt.
RECORDED = '''
from readme_resumable import Resumable


class Recorded(Resumable):
    seen: list = []

    def on_start(self):
        super().on_start()
        Recorded.seen.append((self.position(self.instrument_id), self.entry_price, self.take_profit_id, self.stop_loss_id))
'''


async def test_the_readme_strategy_rebuilds_its_entry_price_and_exits_in_on_start_after_a_restart(tmp_path: Path) -> None:
    (where, body), = [b for b in fenced(README, "python") if "class Resumable" in b[1]]
    (tmp_path / "readme_resumable.py").write_text(body, encoding="utf-8")
    (tmp_path / "recorded.py").write_text(RECORDED, encoding="utf-8")
    emulator = BinancePrivateEmulator(KEY, SECRET, {IID: Instrument(**SPOT)}, {"USDT": 100_000.0})
    gate = TradeGate(TRADE_TEMPLATE)
    keys = ApiKeys(SecretStr(KEY), SecretStr(SECRET))

    def config(strategy: dict[str, object]) -> LiveConfig:
        data = daemon_config(tmp_path, srv.ws_url, srv.http_url, emulator)
        data.pop("record")
        data["live"]["cancel_on_stop"] = False
        data["strategy"] = {"instruments": [IID], "id": "OneBracket", **strategy}
        return parse_live_config(data, "<test>")

    def resting() -> dict[str, float]:
        return {r.order.client_order_id: r.order.trigger_price if math.isnan(r.order.price) else r.order.price
                for r in emulator.open_orders()}

    sys.path.insert(0, str(tmp_path))
    try:
        async with emulator:
            protocol = MatchingProtocol(SPOT_SNAPSHOT, account=emulator, instrument_ids={"btcusdt": IID})
            async with LocalVenueServer(protocol, trade_frames(TRADE_TEMPLATE, [60_000.0] * 3), gate=gate, lifetime=300) as srv:
                try:
                    first = LiveNode(config({"name": "tests.live.bracket_strategy:OneBracket", "params": {
                        "quantity": 0.01, "stop_loss": 59_000.0, "take_profit": 61_000.0}}), keys, handle_signals=False)

                    def entered() -> bool:
                        if gate.allowed == 1 and emulator.orders:
                            gate.allowed = 2  # 60,000: fills the entry
                        elif gate.allowed == 2 and first.kernel.portfolio.position(IID) > 0.0:
                            gate.allowed = 3  # 60,000: arms the children
                        return len(resting()) == 2

                    gate.allowed = 1  # 60,000: the entry, a market buy
                    await _run_until(first, entered)
                    second = LiveNode(config({"name": "recorded:Recorded", "module_dir": str(tmp_path)}), keys,
                                      handle_signals=False)
                    recorded = sys.modules["recorded"].Recorded
                    await _run_until(second, lambda: bool(recorded.seen))
                finally:
                    gate.allowed = 3
    finally:
        sys.path.remove(str(tmp_path))
        for name in ("readme_resumable", "recorded"):
            sys.modules.pop(name, None)
    entry, stop, target = (emulator.orders[o.client_order_id] for o in first.kernel.orders.orders())
    bought = sum(f.last_qty for f in entry.fills)
    paid = sum(f.last_qty * f.last_px for f in entry.fills)
    assert resting() == {target.order.client_order_id: 61_000.0, stop.order.client_order_id: 59_000.0}
    assert recorded.seen == [(bought, paid / bought, target.order.client_order_id, stop.order.client_order_id)]
