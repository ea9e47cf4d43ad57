"""Seeded fuzzer of the sweep's tier choice: ``tier: auto`` never runs accelerated what it cannot express.

Each seed draws a config over the 2022 Coinbase 4h fixture: a strategy with a signal kernel
(ema_cross, macd_cross, rsi_reversion, bollinger_reversion) and random parameters, random
instrument grids, fees, slippage, cash, risk limits, extra features and equity interval, then
adds, with some probability each, what the accelerated tier cannot express: a second
instrument or strategy, a strategy without a kernel (donchian_breakout), venue latency, a
perpetual, fee tiers, borrowing interest, starting holdings, ``max_open_orders: 0``. A trial
with any of them must run in the event tier (``tier`` says so); every trial's metrics under
``auto`` must equal the event tier's.

CI runs a few seeds; ``TRADEBUS_FUZZ_SEEDS=300`` (and ``TRADEBUS_FUZZ_FIRST``) runs more.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytest
from sweep_helpers import IID, file_config, write_yaml

from tradebus.sweep.trial import METRIC_COLUMNS, TrialSpec, run_trial

FIRST = int(os.environ.get("TRADEBUS_FUZZ_FIRST", "0"))
SEEDS = range(FIRST, FIRST + int(os.environ.get("TRADEBUS_FUZZ_SEEDS", "4")))


def strategy(rng: random.Random) -> dict[str, Any]:
    mode = rng.choice(["long_only", "long_short"])
    quantity = rng.choice([0.01, 0.5, 3.0])
    name = rng.choice(["ema_cross", "macd_cross", "rsi_reversion", "bollinger_reversion"])
    if name == "ema_cross":
        slow = rng.randrange(2, 60)
        params: dict[str, Any] = {"fast": rng.choice([slow - 1, rng.randrange(1, slow)]), "slow": slow}
    elif name == "macd_cross":
        slow = rng.randrange(3, 40)
        params = {"fast": rng.choice([slow - 1, rng.randrange(2, slow)]), "slow": slow, "signal": rng.randrange(1, 12)}
    elif name == "rsi_reversion":
        params = {"window": rng.choice([2, 14, 30]), "oversold": rng.choice([1.0, 30.0]),
                  "overbought": rng.choice([70.0, 99.0])}  # fmt: skip
    else:
        params = {"window": rng.choice([2, 20, 50]), "k": rng.choice([0.01, 1.0, 2.5])}
    return {"name": name, "instruments": [IID], "params": {**params, "mode": mode, "quantity": quantity}}


#: What the accelerated tier cannot express, as edits of a config.
def _second_instrument(config: dict[str, Any]) -> None:
    config["instruments"].append({**config["instruments"][0], "symbol": "ETH-USD", "base": "ETH"})


def _second_strategy(config: dict[str, Any]) -> None:
    first = config.pop("strategy")
    config["strategies"] = [{**first, "id": "a"}, {**first, "id": "b"}]


def _no_kernel(config: dict[str, Any]) -> None:
    quantity = config["strategy"]["params"]["quantity"]
    config["strategy"] = {"name": "donchian_breakout", "instruments": [IID], "params": {"quantity": quantity}}


def _latency(config: dict[str, Any]) -> None:
    config.setdefault("venue", {})["latency_ns"] = 1_000_000


def _perpetual(config: dict[str, Any]) -> None:
    config["instruments"][0].update(kind="perpetual", margin=False, leverage=3)


def _fee_tiers(config: dict[str, Any]) -> None:
    config["instruments"][0]["fee_tiers"] = [{"min_volume": 1e5, "maker_fee": 0.001, "taker_fee": 0.002}]
    config.get("venue", {}).pop("taker_fee", None)  # an override voids the tiers


def _borrowing(config: dict[str, Any]) -> None:
    config["instruments"][0]["margin"] = True
    config["annual_borrow_rates"] = {"BTC": 0.1, "USD": 0.05}


def _holdings(config: dict[str, Any]) -> None:
    config["balances"] = {"USD": config["initial_cash"], "BTC": 0.5}


def _no_open_orders(config: dict[str, Any]) -> None:
    config.setdefault("risk", {})["max_open_orders"] = 0


INEXPRESSIBLE = [_second_instrument, _second_strategy, _no_kernel, _latency, _perpetual, _fee_tiers, _borrowing,
                 _holdings, _no_open_orders]  # fmt: skip


def draw_config(rng: random.Random, directory: Path) -> tuple[dict[str, Any], list[str]]:
    """A random config and the names of the inexpressible edits it carries."""
    config = file_config(directory)
    inst = config["instruments"][0]
    inst.update(margin=rng.random() < 0.5, lot_size=rng.choice([1e-8, 0.001, 0.01]),
                tick_size=rng.choice([0.01, 1.0]), min_notional=rng.choice([0.0, 10.0, 20_000.0]),
                taker_fee=rng.choice([0.0, 0.001, 0.006]))  # fmt: skip
    config["strategy"] = strategy(rng)
    config["initial_cash"] = rng.choice([50.0, 10_000.0, 100_000.0, 1e7])
    venue: dict[str, Any] = {}
    if rng.random() < 0.5:
        venue["slippage"] = rng.choice([{"model": "fixed", "bps": 3.0},
                                        {"model": "volume", "bps": 1.0, "impact_bps": 50.0},
                                        {"model": "volatility", "k": 0.05, "max_bps": 30.0}])  # fmt: skip
    if rng.random() < 0.3:
        venue["taker_fee"] = rng.choice([0.0, 0.0005])
    config["venue"] = venue
    risk: dict[str, Any] = {}
    for field, values in (("max_drawdown_pct", (2.0, 20.0)), ("max_daily_loss_pct", (0.5, 3.0)),
                          ("max_gross_exposure", (0.3, 2.0)), ("max_position", (0.4, 10.0)),
                          ("max_order_notional", (30_000.0,)), ("max_consecutive_losses", (2, 4)),
                          ("max_open_orders", (1, 3))):  # fmt: skip
        if rng.random() < 0.2:
            risk[field] = rng.choice(values)
    config["risk"] = risk
    if rng.random() < 0.3:
        config["features"] = [{"name": "sma_7", "kind": "sma", "params": {"window": 7}, "input": "close"}]
    if rng.random() < 0.3:
        config["balances"] = {"USD": config["initial_cash"]}
    config["report"] = {"equity_interval": rng.choice(["1h", "4h", "1d"])}
    edits = [edit for edit in INEXPRESSIBLE if rng.random() < 0.15]
    for edit in edits:
        if edit is _no_kernel and "strategy" not in config:
            continue
        edit(config)
    return config, [edit.__name__ for edit in edits]


@pytest.mark.parametrize("seed", SEEDS)
def test_auto_runs_accelerated_only_what_it_expresses_with_the_event_tiers_metrics(seed: int, tmp_path: Path) -> None:
    rng = random.Random(f"tier fuzz {seed}")
    config, edits = draw_config(rng, tmp_path)
    path = write_yaml(tmp_path / "run.yaml", config)
    auto = run_trial(TrialSpec(0, str(path), {}, tier="auto"))
    event = run_trial(TrialSpec(0, str(path), {}, tier="event"))
    assert (auto["status"], auto["error"]) == (event["status"], event["error"]), edits
    if auto["status"] != "ok":
        return
    assert event["tier"] == "event"
    if edits:
        assert auto["tier"] == "event", edits
    assert {k: auto[k] for k in METRIC_COLUMNS} == {k: event[k] for k in METRIC_COLUMNS}


def test_a_funded_perpetual_runs_in_the_event_tier() -> None:
    config = Path(__file__).resolve().parents[2] / "configs" / "perp_xrp_funding.yaml"
    auto = run_trial(TrialSpec(0, str(config), {}, tier="auto"))
    assert (auto["status"], auto["tier"]) == ("ok", "event") and auto["fills"] > 0
