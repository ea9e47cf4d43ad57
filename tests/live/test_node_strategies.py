"""Several strategies in a paper config, run by `tradebus replay` through the paper kernel."""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from loguru import logger
from typer.testing import CliRunner

from tradebus.cli import app
from tradebus.errors import ConfigError
from tradebus.node.playback import play

from .node_testdata import IID, SPOT_CAPTURE, binance_config, config_of


@pytest.fixture(autouse=True)
def _loguru_to_current_stderr() -> Iterator[None]:
    yield
    logger.remove()
    logger.add(lambda message: sys.stderr.write(message), level="DEBUG")


def tick_ema(sid: str, fast: int, slow: int) -> dict[str, object]:
    return {"name": "tick_ema_cross", "id": sid, "instruments": [IID],
            "params": {"fast": fast, "slow": slow, "quantity": 0.01}}


def test_two_strategies_of_a_paper_config_trade_side_by_side_with_attribution(tmp_path: Path) -> None:
    data = binance_config(None, None, ["trade", "bookTicker"])
    del data["strategy"]
    data["strategies"] = [tick_ema("quick", 2, 8), tick_ema("calm", 5, 30)]
    config = tmp_path / "paper.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    res = CliRunner().invoke(app, ["replay", str(SPOT_CAPTURE), "--config", str(config), "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    with (tmp_path / "o" / "fills.csv").open(newline="") as handle:
        fills = list(csv.DictReader(handle))
    assert {f["strategy_id"] for f in fills} == {"quick", "calm"}
    with (tmp_path / "o" / "attribution.csv").open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["instrument"] == "ALL"]
    counts = {r["strategy_id"]: int(r["fills"]) for r in rows}
    assert counts == {sid: sum(f["strategy_id"] == sid for f in fills) for sid in ("quick", "calm")}
    # each strategy holds at most its own quantity: neither trades against the other's position
    for sid in ("quick", "calm"):
        position = 0.0
        for f in fills:
            if f["strategy_id"] == sid:
                position += (1 if f["side"] == "BUY" else -1) * float(f["quantity"])
                assert abs(position) <= 0.01 + 1e-12
    recorded = yaml.safe_load((tmp_path / "o" / "config.yaml").read_text())
    assert [s["id"] for s in recorded["strategies"]] == ["quick", "calm"] and "strategy" not in recorded


def touch_quoter_config(channels: list[str]) -> dict[str, object]:
    data = binance_config("ws://unused", "http://unused", channels)
    data["strategy"] = {"name": "tradebus.strategies.touch_quoter:TouchQuoter", "instruments": [IID],
                        "params": {"quantity": 0.01, "max_position": 0.05}}
    data["venue"] = {"fill_on": "quotes"}
    return data


def test_a_book_strategy_runs_on_a_paper_feed_subscribing_the_book() -> None:
    # refused as "acts on book, but the run has only quotes, trades": the depth channel's books were not counted
    playback = play(SPOT_CAPTURE, config_of(touch_quoter_config(["trade", "bookTicker", "depth"])))
    result = playback.kernel.result
    assert len(result.orders) > 20 and len(result.fills) > 5  # it quoted the book it was given, and was filled


def test_a_book_strategy_on_a_paper_feed_without_a_book_channel_is_refused() -> None:
    with pytest.raises(ConfigError, match="acts on book, but the run has only quotes, trades"):
        config_of(touch_quoter_config(["trade", "bookTicker"]))
