"""The sweep's backtest tier: auto, event or accelerated, per trial (no Ray: trials run in-process)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sweep_helpers import file_config, write_yaml

from tradebus.errors import ConfigError
from tradebus.sweep.runner import run_sweep
from tradebus.sweep.space import load_space
from tradebus.sweep.trial import METRIC_COLUMNS, TrialSpec, run_trial

PARAMS = {"strategy.params.fast": 8, "strategy.params.slow": 34, "venue.slippage_bps": 2.5}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_yaml(tmp_path / "run.yaml", file_config(tmp_path))


@pytest.fixture
def donchian(tmp_path: Path) -> Path:
    data = file_config(tmp_path)
    data["strategy"] = {"name": "donchian_breakout", "instruments": ["BTC-USD.COINBASE"], "params": {"quantity": 0.5}}
    return write_yaml(tmp_path / "donchian.yaml", data)


def test_accelerated_and_event_trials_give_the_same_metrics(config: Path) -> None:
    rows = {tier: run_trial(TrialSpec(0, str(config), PARAMS, tier=tier)) for tier in ("event", "accelerated", "auto")}
    assert [rows[t]["tier"] for t in ("event", "accelerated", "auto")] == ["event", "accelerated", "accelerated"]
    assert all(row["status"] == "ok" for row in rows.values())
    assert rows["event"]["fills"] > 10
    for name in METRIC_COLUMNS:
        assert rows["accelerated"][name] == rows["event"][name], name
        assert rows["auto"][name] == rows["event"][name], name


def test_strategy_without_signal_kernel_runs_event_in_auto_and_fails_clearly_when_forced(donchian: Path) -> None:
    auto = run_trial(TrialSpec(0, str(donchian), {}, tier="auto"))
    assert (auto["status"], auto["tier"]) == ("ok", "event") and auto["fills"] > 0
    forced = run_trial(TrialSpec(0, str(donchian), {}, tier="accelerated"))
    assert forced["status"] == "failed" and forced["fills"] is None
    assert "tier: accelerated" in forced["error"] and "DonchianBreakout" in forced["error"]
    assert "declares no signal kernel" in forced["error"]


def test_forced_accelerated_sweep_of_an_unsupported_config_fails_before_any_trial(donchian: Path, tmp_path: Path) -> None:
    space = write_yaml(tmp_path / "space.yaml", {"params": {"strategy.params.quantity": [0.1, 0.2]},
                                                 "tier": "accelerated"})  # fmt: skip
    out = tmp_path / "sweep"
    with pytest.raises(ConfigError, match=r"space\.yaml: tier: accelerated: .*declares no signal kernel"):
        run_sweep(donchian, space, out)
    assert not (out / "trials").exists()
    with pytest.raises(ConfigError, match="--tier: 'fast'"):
        run_sweep(donchian, space, out, tier="fast")


def test_auto_falls_back_to_event_when_the_risk_gate_would_deny(config: Path) -> None:
    # A flip of 2 x 0.5 BTC is worth ~40k at 2022 prices: max_order_notional denies it; only the event
    # tier records denials.
    params = {"risk.max_order_notional": 25_000.0}
    auto = run_trial(TrialSpec(0, str(config), params, tier="auto"))
    event = run_trial(TrialSpec(0, str(config), params, tier="event"))
    assert auto["tier"] == "event" and auto["denied"] > 0 and auto["fills"] > 0
    assert {k: auto[k] for k in METRIC_COLUMNS} == {k: event[k] for k in METRIC_COLUMNS}
    forced = run_trial(TrialSpec(0, str(config), params, tier="accelerated"))
    assert forced["status"] == "failed" and "would be denied" in forced["error"]


def test_space_tier_is_validated_and_not_part_of_the_fingerprint(tmp_path: Path) -> None:
    base = {"params": {"strategy.params.fast": [5, 10]}}
    auto = load_space(write_yaml(tmp_path / "a.yaml", base))
    event = load_space(write_yaml(tmp_path / "b.yaml", {**base, "tier": "event"}))
    assert (auto.tier, event.tier) == ("auto", "event") and auto.fingerprint() == event.fingerprint()
    with pytest.raises(ConfigError, match="tier"):
        load_space(write_yaml(tmp_path / "c.yaml", {**base, "tier": "fast"}))
