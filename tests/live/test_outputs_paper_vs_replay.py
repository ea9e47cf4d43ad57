"""Paper and replay outputs of one recorded stream agree column for column, except receive time.

A paper daemon (wall clock) trades a capture served by the local venue server; ``tradebus
replay`` plays the same capture on a simulated clock at its recorded receive times. The
venue times (exchange timestamps in the frames) are the same in both, the receive times
are two years apart, so every column in venue time must agree and only the receive-time
columns may differ (see :mod:`tradebus.reports.writers`).
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from loguru import logger
from typer.testing import CliRunner

from tradebus.adapters.binance.emulator import BinanceProtocol
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.cli import app
from tradebus.node.config import dump_paper_config
from tradebus.node.daemon import PaperNode, kept_files
from tradebus.reports.outputs import write_outputs
from tradebus.reports.writers import ORDER_COLUMNS, RunDirectory

from .node_testdata import (
    SPOT_CAPTURE,
    SPOT_FRAMES,
    SPOT_QUOTES,
    SPOT_SNAPSHOT,
    SPOT_TRADE_IDS,
    binance_config,
    config_of,
    run_node,
)

#: The columns in receive time (the process clock): the only ones that may differ.
RECEIVE_TIME_COLUMNS = {"orders.csv": {"ts_created"}}
#: metrics.json's figures on the equity samples' clock, the kernel's: the paper run's wall clock (frames served faster
#: than recorded), the replay's recorded receive times.
RECEIVE_TIME_METRICS = ("longest_drawdown_days",)


@pytest.fixture(autouse=True)
def _loguru_to_current_stderr() -> Iterator[None]:
    """The CLI points loguru at the CliRunner's stderr, closed after the call: log to the live stderr again."""
    yield
    logger.remove()
    logger.add(lambda message: sys.stderr.write(message), level="DEBUG")


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


async def test_paper_and_replay_outputs_agree_column_for_column_except_receive_time(tmp_path: Path) -> None:
    data = binance_config("ws://unused", "http://unused", ["trade", "bookTicker"], tmp=tmp_path, journal=True)
    # Equity samples fall on boundaries of the kernel's clock (receive time): one interval
    # longer than the run keeps both runs at their first and last sample.
    data["report"] = {"equity_interval": "1w"}
    async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), SPOT_FRAMES) as srv:
        data["feeds"][0].update(ws_url=srv.ws_url, rest_url=srv.http_url)
        config = config_of(data)
        paper = tmp_path / "paper"
        # The daemon writes its row files as it runs (tradebus.reports.stream), the rest when it stops.
        run_dir = RunDirectory(paper, "paper", keep=kept_files(config))
        node = PaperNode(config, handle_signals=False, run_dir=run_dir)
        result = node.kernel.result
        await run_node(node, lambda: result.trades == len(SPOT_TRADE_IDS) and result.quotes == SPOT_QUOTES)
    assert result.trades == len(SPOT_TRADE_IDS)
    write_outputs(
        run_dir, node.kernel.result, node.kernel.instruments, dump_paper_config(node.config), {"node.json": "{}"},
        node.outputs,
    )

    replay_config = tmp_path / "replay.yaml"
    replay_config.write_text(yaml.safe_dump(data), encoding="utf-8")
    replay = tmp_path / "replay"
    res = CliRunner().invoke(app, ["replay", str(SPOT_CAPTURE), "--config", str(replay_config), "--out", str(replay)])
    assert res.exit_code == 0, res.output

    for name in ("fills.csv", "orders.csv", "funding.csv", "trades.csv", "attribution.csv"):
        paper_columns, paper_rows = read_csv(paper / name)
        replay_columns, replay_rows = read_csv(replay / name)
        assert paper_columns == replay_columns
        assert len(paper_rows) == len(replay_rows) >= (15 if name in ("fills.csv", "orders.csv") else 0), name
        differ = RECEIVE_TIME_COLUMNS.get(name, set())
        for column in paper_columns:
            if column == "client_order_id":
                # the paper journal's run id and epoch vs the backtest's: the same orders, other ids
                assert len({p[column] for p in paper_rows}) == len({r[column] for r in replay_rows}), (name, column)
            elif column in differ:
                # two years apart: the wall clock of the paper run, the recorded receive times of the replay
                assert all(int(p[column]) > int(r[column]) + 10**16 for p, r in zip(paper_rows, replay_rows)), column
            else:
                assert [row[column] for row in paper_rows] == [row[column] for row in replay_rows], (name, column)
    assert "ts_last_fill" in ORDER_COLUMNS

    paper_metrics = json.loads((paper / "metrics.json").read_text())
    replay_metrics = json.loads((replay / "metrics.json").read_text())
    assert paper_metrics["max_drawdown"] > 0.0
    for key in RECEIVE_TIME_METRICS:
        assert paper_metrics.pop(key) > 0.0 and replay_metrics.pop(key) > 0.0, key
    assert paper_metrics == replay_metrics
    assert 0.0 < paper_metrics["exposure"] <= 1.0
    assert paper_metrics["start"].startswith("2024-08-08T")  # the capture's venue time, not the wall clock
    assert paper_metrics["cagr"] is None and "annualised figures need at least 30 days" in (
        paper_metrics["null_reasons"]["cagr"]
    )
