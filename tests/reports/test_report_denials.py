"""A run whose orders are denied says why at the default log level: one WARNING per check, with its count."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml
from loguru import logger

from tradebus.cli import run_backtest
from tradebus.engine.messages import OrderDenied
from tradebus.reports.denials import DenialTally

ROOT = Path(__file__).resolve().parents[2]

# A user's strategy: a spot short of 0.1 BTC on every bar (the account holds no BTC: buying_power denies it),
# and a buy of 2 BTC on every tenth bar (max_position 1.0 denies it).
STRATEGY = """\
from tradebus.engine.messages import OrderSide
from tradebus.strategies.base import Strategy


class Shorts(Strategy):
    def on_start(self):
        self.bars_seen = 0

    def on_bar(self, bar):
        self.bars_seen += 1
        self.submit_market(self.instrument_id, OrderSide.SELL, 0.1, reason="short")
        if self.bars_seen % 10 == 0:
            self.submit_market(self.instrument_id, OrderSide.BUY, 2.0, reason="too big")
"""


def _config(tmp_path: Path) -> Path:
    (tmp_path / "shorts.py").write_text(STRATEGY)
    config = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    config["data"]["catalog"] = str(ROOT / "data" / "catalog")
    config["data"]["start"] = "2024-01-01"
    config["data"]["end"] = "2024-02-01"
    config["strategy"] = {"name": "shorts:Shorts", "instruments": ["BTC-USD.COINBASE"]}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_backtest_whose_orders_are_denied_warns_once_per_check_with_its_count(tmp_path: Path) -> None:
    warnings: list[str] = []
    sink = logger.add(lambda m: warnings.append(m.record["message"]), level="WARNING")
    try:
        run_backtest(_config(tmp_path), tmp_path / "out")
    finally:
        logger.remove(sink)
    orders = pd.read_csv(tmp_path / "out" / "orders.csv")
    denied = orders[orders["status"] == "DENIED"]
    assert len(denied) == len(orders) > 0  # nothing traded
    checks = denied["status_reason"].str.split(":").str[0]
    counts = checks.value_counts()
    assert set(counts.index) == {"buying_power", "max_position"}
    told = [m for m in warnings if m.startswith("backtest: ")]
    assert len(told) == 2, warnings  # one per check, not one per denial
    for check in ("buying_power", "max_position"):
        first = denied[checks == check].sort_values("ts_created").iloc[0]
        when = pd.Timestamp(int(first["ts_created"]), tz="UTC").isoformat()
        line = next(m for m in told if f" denied by {check}," in m)
        assert line.startswith(f"backtest: {counts[check]} order(s) denied by {check}, the first at {when} ")
        assert line.endswith(f": {first['status_reason']}")


def test_the_tally_keeps_the_first_denial_of_each_check_in_order() -> None:
    tally = DenialTally("paper daemon")
    for ts, reason in [(3, "max_position: |0 + 5| = 5 > 1"), (1, "buying_power: SELL"), (2, "max_position: again"),
                       (4, "no colon here")]:
        tally.add(OrderDenied("s", "X.V", f"c{ts}", reason, ts, ts))
    warnings: list[str] = []
    sink = logger.add(lambda m: warnings.append(m.record["message"]), level="WARNING")
    try:
        tally.warn()
    finally:
        logger.remove(sink)
    assert tally.total == 4
    assert [m.split(",")[0] for m in warnings] == [
        "paper daemon: 2 order(s) denied by max_position", "paper daemon: 1 order(s) denied by buying_power",
        "paper daemon: 1 order(s) denied by no colon here",
    ]


async def test_a_paper_daemon_and_the_replay_of_its_recording_warn_of_their_denials(tmp_path: Path) -> None:
    from tests.live.node_testdata import (
        IID,
        SPOT_FRAMES,
        SPOT_SNAPSHOT,
        binance_config,
        config_of,
        kernels_compiled,
        run_node,
    )
    from tradebus.adapters.binance.emulator import BinanceProtocol
    from tradebus.adapters.common.local_server import LocalVenueServer
    from tradebus.node.daemon import PaperNode
    from tradebus.node.playback import run_playback

    trades = [frame for frame in SPOT_FRAMES if "@trade" in frame[1]][:5]
    strategy = {"name": "tests.live.short_strategy:ShortOnce", "instruments": [IID], "params": {"quantity": 0.5}}
    warnings: list[str] = []
    kernels_compiled()  # on a cold cache the daemon's warm-up outlasted the server's 60 s lifetime
    sink = logger.add(lambda m: warnings.append(m.record["message"]), level="WARNING")
    try:
        async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), trades) as srv:
            data = binance_config(srv.ws_url, srv.http_url, ["trade"], tmp=tmp_path, record=True, strategy=strategy,
                                  risk={"max_position": 0.1})
            node = PaperNode(config_of(data), handle_signals=False)
            await run_node(node, lambda: bool(node.denials.total))
        (tmp_path / "paper.yaml").write_text(yaml.safe_dump(data))
        run_playback(tmp_path / "frames.jsonl.gz", tmp_path / "paper.yaml", tmp_path / "replay")
    finally:
        logger.remove(sink)
    for what in ("paper daemon", "replay"):
        told = [m for m in warnings if m.startswith(f"{what}: ")]
        assert len(told) == 1 and told[0].startswith(f"{what}: 1 order(s) denied by max_position, the first at "), warnings
        assert told[0].endswith(f"ShortOnce {IID}): max_position: |0.0 + -0.5| = 0.5 > 0.1")
