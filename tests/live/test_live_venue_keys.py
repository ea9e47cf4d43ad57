"""A live config's ``venue:`` section: the simulated venue's fill settings are refused, not silently ignored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tests.live.live_harness import KEY, SECRET
from tests.live.node_testdata import BINANCE_INSTRUMENT, IID
from tradebus.cli import app
from tradebus.errors import ConfigError
from tradebus.node.config import parse_paper_config
from tradebus.node.live import parse_live_config


def _live(venue: dict[str, Any]) -> dict[str, Any]:
    return {
        "instruments": [{**BINANCE_INSTRUMENT, "margin": False}],
        "strategy": {"name": "tradebus.strategies.tick_ema:TickEmaCross", "instruments": [IID],
                     "params": {"fast": 2, "slow": 8, "quantity": 0.01}},
        "feeds": [{"venue": "binance", "market": "spot", "subscriptions": {IID: ["trade"]}}],
        "venue": venue,
        "live": {"rest_url": "http://127.0.0.1:9", "ws_api_url": "ws://127.0.0.1:9"},
    }


@pytest.mark.parametrize(
    "venue, named",
    [
        ({"slippage_bps": 2.0}, "slippage_bps: 2.0"),
        ({"slippage": {"model": "fixed", "bps": 3.0}}, "slippage: {"),
        ({"latency_ns": 5_000_000}, "latency_ns: 5000000"),
        ({"limit_fill": "through"}, "limit_fill: 'through'"),
        ({"trade_size_limit": True}, "trade_size_limit: True"),
        ({"reduce_only_mode": "reject"}, "reduce_only_mode: 'reject'"),
        ({"contingent": "native"}, "contingent: 'native'"),
    ],
)
def test_a_simulated_venue_setting_in_a_live_config_is_a_config_error_naming_it(venue: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match="simulated-venue settings have no effect on a live account") as info:
        parse_live_config(_live({"fill_on": "trades", **venue}), "live.yaml")
    assert named in str(info.value)


def test_the_fee_overrides_and_fill_on_stay_and_a_default_value_is_no_error() -> None:
    """A paper config runs live as it is: its fee overrides are the account checks', ``fill_on`` picks the channel."""
    config = parse_live_config(_live({"fill_on": "trades", "taker_fee": 0.0005, "maker_fee": 0.0, "latency_ns": 0,
                                      "slippage_bps": 0.0}))
    assert (config.venue.taker_fee, config.venue.maker_fee) == (0.0005, 0.0)


@pytest.mark.parametrize(
    "venue, channels",
    [
        ({"taker_fee": 0.001}, ["trade"]),  # was VenueConfig's own fill_on default, 'bars': "needs one of ['kline']"
        ({"fill_on": "trades"}, ["trade", "bookTicker"]),
        ({"fill_on": "quotes"}, ["trade"]),  # "needs one of ['bookTicker']"
        ({"fill_on": "book"}, ["trade"]),  # "'book' is for backtests of recorded books"
    ],
    ids=["fee-override-alone", "trades", "quotes-unsubscribed", "book"],
)
def test_a_live_config_is_not_refused_for_a_fill_on_channel_its_feeds_do_not_subscribe(venue: dict[str, Any], channels: list[str]) -> None:
    """The exchange fills a live order: ``venue.fill_on`` asks nothing of the feeds. Before, a live config whose
    ``venue:`` held only the fee override it is allowed (``taker_fee``) was refused, 'venue.fill_on: 'bars' needs one of
    the binance channels ['kline']' (the section's own fill_on default), as were the others above, each naming a
    simulated venue's fill that never happens live. A paper config keeps the check; without ``fill_on`` it fills on
    trades, the paper default, as a config with no ``venue:`` does."""
    data = _live(venue)
    data["feeds"][0]["subscriptions"] = {IID: channels}
    config = parse_live_config(data, "live.yaml")
    assert config.venue.model_dump(exclude_unset=True) == {"fill_on": "trades"} | venue
    paper = {k: v for k, v in data.items() if k != "live"}
    if "fill_on" not in venue:
        assert parse_paper_config(paper, "paper.yaml").venue.fill_on == "trades"
    elif venue != {"fill_on": "trades"}:
        with pytest.raises(ConfigError, match="venue.fill_on"):
            parse_paper_config(paper, "paper.yaml")


def test_tradebus_live_refuses_them_all_by_name_before_it_connects_or_writes(tmp_path: Path) -> None:
    path = tmp_path / "live.yaml"
    path.write_text(yaml.safe_dump(_live({"fill_on": "trades", "slippage_bps": 1.5, "latency_ns": 2_000_000,
                                          "limit_fill": "through"})))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["live", str(path), "--out", str(out)],
                                env={"TRADEBUS_BINANCE_API_KEY": KEY, "TRADEBUS_BINANCE_API_SECRET": SECRET})
    text = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "venue: slippage_bps: 1.5, latency_ns: 2000000, limit_fill: 'through': simulated-venue settings" in text
    assert not out.exists()
