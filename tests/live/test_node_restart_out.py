"""A paper daemon restarts on an ``--out`` directory holding the files its config names.

The journal, the recording and the log file (``ops.log.file``, with the copies loguru's
rotation leaves beside it) are the config's, not foreign files: a restart on the same
``--out`` runs without ``--force`` and leaves them as they were. The feed is a closed port
on 127.0.0.1, so the daemon runs (reconnecting) until ``--max-seconds`` stops it.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tradebus.cli import app
from tradebus.engine.messages import Liquidity, OrderAccepted, OrderFilled, OrderSide, OrderSubmitted, SubmitOrder
from tradebus.execution.journal import Journal

from .node_testdata import IID, binance_config

pytestmark = pytest.mark.usefixtures("_loguru_to_current_stderr")


def paper_config(tmp_path: Path, rotation: str) -> Path:
    """A paper config keeping its journal and its JSON log file in ``run/``, the directory given to ``--out``."""
    data = binance_config("ws://127.0.0.1:9", "http://127.0.0.1:9", ["trade"])
    data["journal"] = "run/journal.sqlite"
    data["warm_up"] = False
    data["ops"] = {"log": {"file": "run/daemon.jsonl", "serialize": True, "rotation": rotation}}
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.mark.parametrize("rotation", ["100 MB", "1 KB"])
def test_a_restart_keeps_the_log_file_and_its_rotated_copies_inside_out(tmp_path: Path, rotation: str) -> None:
    config, out = paper_config(tmp_path, rotation), tmp_path / "run"
    paper = ["paper", str(config), "--out", str(out), "--max-seconds", "1"]

    first = CliRunner().invoke(app, paper)
    assert first.exit_code == 0, first.output
    logs = sorted(p.name for p in out.glob("daemon*"))
    assert "daemon.jsonl" in logs
    if rotation == "1 KB":
        assert len(logs) > 1, logs  # rotated copies: daemon.<time>.jsonl
    rotated = {name: (out / name).read_bytes() for name in logs if name != "daemon.jsonl"}

    restart = CliRunner().invoke(app, paper)
    assert restart.exit_code == 0, restart.output
    assert "does not write" not in restart.output
    assert {name: (out / name).read_bytes() for name in rotated} == rotated  # untouched
    assert (out / "node.json").is_file()

    (out / "notes.jsonl").write_text("mine\n")
    refused = CliRunner().invoke(app, paper)
    assert refused.exit_code == 2
    assert f"output directory {out} holds files a paper run does not write: notes.jsonl." in refused.output


def journal_of_a_buy(out: Path) -> None:
    """``out/journal.sqlite`` holding a paper buy of 0.01 BTC at 61000, fee 0.61 USDT."""
    out.mkdir()
    journal = Journal(out / "journal.sqlite")
    t0, coid = 1_723_161_253_000_000_000, "TickEmaCross0"
    journal.record_command(SubmitOrder("TickEmaCross", IID, coid, OrderSide.BUY, 0.01, t0, t0), coid)
    journal.record_event(OrderSubmitted("TickEmaCross", IID, coid, t0, t0))
    journal.record_event(OrderAccepted("TickEmaCross", IID, coid, "SIM-1", t0 + 5, t0 + 5))
    journal.record_event(OrderFilled("TickEmaCross", IID, coid, "SIM-1", "SIM-T1", OrderSide.BUY, 0.01, 61_000.0, 0.61,
                                     Liquidity.TAKER, t0 + 6, t0 + 6))
    journal.close()


def test_a_restart_that_sees_no_market_data_values_the_journal_position_at_its_fill_price(tmp_path: Path) -> None:
    """metrics.json said final_equity 100000.0 and total_return 0 beside fees_paid 0.61: with no equity
    sample the metrics fell back to the initial cash, as if the journal's fill had cost nothing."""
    config, out = paper_config(tmp_path, "100 MB"), tmp_path / "run"
    journal_of_a_buy(out)

    res = CliRunner().invoke(app, ["paper", str(config), "--out", str(out), "--max-seconds", "1"])
    assert res.exit_code == 0, res.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["start"] is None and metrics["fills"] == 1 and metrics["fees_paid"] == 0.61
    # cash 100000 - 610 - 0.61, plus 0.01 BTC at its fill price 61000 (no mark yet)
    assert metrics["final_equity"] == pytest.approx(99_999.39, rel=1e-12)
    assert metrics["total_return"] == pytest.approx(-0.61 / 100_000, rel=1e-6)
    assert metrics["max_drawdown"] == pytest.approx(0.61 / 100_000, rel=1e-6)
    assert metrics["turnover"] == pytest.approx(610.0 / 99_999.39, rel=1e-12)


def test_a_restart_that_sees_no_market_data_attributes_the_journal_position_at_its_fill_price(tmp_path: Path) -> None:
    """attribution.csv left last_price, unrealized_pnl and net_pnl empty for the journal's position and its
    ALL row (RunResult.last_prices held only instruments that had market data), beside a final_equity
    valuing the position at its fill price."""
    config, out = paper_config(tmp_path, "100 MB"), tmp_path / "run"
    journal_of_a_buy(out)

    res = CliRunner().invoke(app, ["paper", str(config), "--out", str(out), "--max-seconds", "1"])
    assert res.exit_code == 0, res.output
    with (out / "attribution.csv").open(newline="") as handle:
        rows = {row["instrument"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"BTCUSDT.BINANCE", "ALL"}
    position, total = rows["BTCUSDT.BINANCE"], rows["ALL"]
    assert (position["position"], position["avg_price"], position["last_price"]) == ("0.01", "61000.0", "61000.0")
    # 0.01 * (61000 - 61000) unrealised, less the fee 0.61
    assert float(position["unrealized_pnl"]) == 0.0 and float(total["unrealized_pnl"]) == 0.0
    assert float(position["net_pnl"]) == pytest.approx(-0.61, rel=1e-12)
    assert float(total["net_pnl"]) == pytest.approx(-0.61, rel=1e-12)
    final_equity = json.loads((out / "metrics.json").read_text())["final_equity"]
    assert float(total["net_pnl"]) == pytest.approx(final_equity - 100_000.0, abs=1e-9)
