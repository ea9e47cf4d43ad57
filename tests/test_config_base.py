"""One base for backtest, paper and live configs: shared fields, cross-checks and path rule."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tradebus.config import RunBase, RunConfig, load_config
from tradebus.config.base import resolve_path
from tradebus.config.load import parse_yaml
from tradebus.errors import ConfigError
from tradebus.node.config import PaperConfig, load_paper_config
from tradebus.node.live import LiveConfig, load_live_config

ROOT = Path(__file__).resolve().parents[1]
IID = "BTCUSDT.BINANCE"
INSTRUMENT = {
    "venue": "BINANCE", "symbol": "BTCUSDT", "kind": "spot", "base": "BTC", "quote": "USDT",
    "tick_size": 0.01, "lot_size": 1.0e-5, "min_notional": 5.0,
}
STRATEGY = {"name": "tick_ema_cross", "instruments": [IID], "params": {"fast": 2, "slow": 8, "quantity": 0.01}}
PAPER: dict[str, Any] = {
    "instruments": [INSTRUMENT],
    "strategy": STRATEGY,
    "feeds": [{"venue": "binance", "market": "spot", "subscriptions": {IID: ["trade"]}}],
}
BACKTEST: dict[str, Any] = {
    "data": {"catalog": "catalog", "sources": [{"instrument": IID, "dataset": "binance/spot/BTCUSDT/trades", "kind": "trades"}]},
    "instruments": [INSTRUMENT],
    "strategy": STRATEGY,
}
LOADERS = {"backtest": (BACKTEST, load_config), "paper": (PAPER, load_paper_config), "live": (PAPER, load_live_config)}


def write(tmp: Path, data: dict[str, Any]) -> Path:
    path = tmp / "run.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.mark.parametrize("kind", list(LOADERS))
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["instruments"].append(dict(INSTRUMENT)), "instruments: duplicate instrument ids"),
        (lambda d: d.update(balances={"ETH": 1.0}), "balances.ETH: no instrument has 'ETH'"),
        (lambda d: d["strategy"].update(instruments=["ETHUSDT.BINANCE"]), "strategy.instruments.0: 'ETHUSDT.BINANCE' is not one"),
        (lambda d: d.update(strategies=[STRATEGY]), "strategies: give either 'strategy' (one) or 'strategies'"),
        (lambda d: d.update(initial_cash=5.0, balances={"USDT": 10.0}), "initial_cash 5.0 disagrees with balances.USDT"),
        # an account with nothing: the backtest ran with every order denied, then died on a ZeroDivisionError
        (lambda d: d.update(balances={}), "balances: no base or quote asset of an instrument has a positive balance"),
        (lambda d: d.update(balances={"USDT": 0.0, "BTC": 0.0}), "positive balance ({'BTC': 0.0, 'USDT': 0.0})"),
    ],
)
def test_every_run_config_refuses_the_shared_problems_alike(tmp_path: Path, kind: str, change: Any, message: str) -> None:
    data, load = LOADERS[kind]
    data = copy.deepcopy(data)
    change(data)
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


@pytest.mark.parametrize("kind", list(LOADERS))
def test_every_run_config_loads_its_sample_and_maps_instruments(tmp_path: Path, kind: str) -> None:
    data, load = LOADERS[kind]
    config = load(write(tmp_path, copy.deepcopy(data)))
    assert isinstance(config, RunBase)
    assert list(config.instrument_map()) == [IID]
    assert config.data_kinds()[IID] == {"trades"}


def test_the_run_configs_declare_only_their_own_fields() -> None:
    shared = set(RunBase.model_fields)
    assert shared >= {"instruments", "strategy", "strategies", "venue", "risk", "features", "initial_cash", "balances", "report"}
    assert set(RunConfig.__annotations__) & shared == set()
    assert set(PaperConfig.__annotations__) & shared == {"venue"}  # fill_on defaults to trades in paper runs
    assert set(LiveConfig.__annotations__) & shared == set()
    assert PaperConfig.model_fields["venue"].get_default(call_default_factory=True).fill_on == "trades"


def test_resolve_path_joins_relative_paths_to_the_config_directory(tmp_path: Path) -> None:
    assert resolve_path(Path("data/x.parquet"), tmp_path) == tmp_path / "data" / "x.parquet"
    assert resolve_path(Path("../x"), tmp_path / "cfg") == tmp_path / "x"
    assert resolve_path(tmp_path / "a" / ".." / "b", Path("/elsewhere")) == tmp_path / "b"
    assert resolve_path(None, tmp_path) is None


def test_a_backtest_and_a_paper_config_resolve_their_paths_by_the_same_rule(tmp_path: Path) -> None:
    backtest = load_config(write(tmp_path, copy.deepcopy(BACKTEST)))
    paper = load_paper_config(write(tmp_path, PAPER | {"journal": "state/j.sqlite", "record": "../rec.gz"}))
    assert backtest.data.catalog == tmp_path / "catalog"
    assert paper.journal == tmp_path / "state" / "j.sqlite"
    assert paper.record == tmp_path.parent / "rec.gz"


def _saved_model(path: Path, specs: list[dict[str, Any]]) -> Path:
    from sklearn.linear_model import LogisticRegression

    from tradebus.research.model import ModelStep

    x = np.array([[-1.0], [-0.5], [0.5], [1.0]])
    return ModelStep(LogisticRegression().fit(x, [0, 0, 1, 1]), ("r1",), tuple(specs)).save(path)


@pytest.mark.parametrize("name", ["ModelSignal", "EdgeGated", "RegimeHazard"])
def test_strategy_params_that_are_files_resolve_against_the_config_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    from tradebus.strategies.base import build_strategies

    specs = [{"name": "r1", "kind": "log_ret", "input": "close"}, {"name": "atr", "kind": "atr"},
             {"name": "vol", "kind": "ewm_std", "input": "r1"}]
    configs = tmp_path / "configs"
    models = configs / "models"
    _saved_model(models / "m.joblib", specs[:1])
    models.joinpath("models.json").write_text(json.dumps({"meta": [], "hazard": []}))
    params: dict[str, Any] = {
        "ModelSignal": {"model": "models/m.joblib", "quantity": 0.01},
        "EdgeGated": {"model": "models/m.joblib", "features": specs},
        "RegimeHazard": {"models": "models/models.json", "quantity": 0.01},
    }[name]
    module = {"ModelSignal": "tradebus.research.strategy", "EdgeGated": "tradebus.research.edge_strategy",
              "RegimeHazard": "tradebus.strategies.regime_hazard"}[name]
    data = copy.deepcopy(BACKTEST)
    data["data"]["sources"][0]["kind"] = "trades" if name == "RegimeHazard" else "bars"
    data["strategy"] = {"name": f"{module}:{name}", "instruments": [IID], "params": params}
    path = write(configs, data)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(path)
    key, file = next((k, v) for k, v in params.items() if k.startswith("model"))
    assert config.strategy is not None
    assert config.strategy.params[key] == str(configs / file)
    (strategy,) = build_strategies([config.strategy])
    assert type(strategy).__name__ == name


def test_the_shipped_ml_gated_backtest_finds_its_model_from_any_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = ROOT / "configs" / "systems" / "ml_gated_backtest.yaml"
    # where `tradebus research run configs/systems/ml_gated.yaml` writes it, run from the repository root
    expected = str(ROOT / "runs" / "research" / "ml_gated" / "model.joblib")
    for cwd in (ROOT, tmp_path):
        monkeypatch.chdir(cwd)
        config = load_config(shipped.relative_to(ROOT) if cwd == ROOT else shipped)
        assert config.strategy is not None
        assert config.strategy.params["model"] == expected


def test_a_run_config_must_say_what_market_data_it_delivers() -> None:
    class NoData(RunBase):
        pass

    instrument = {"venue": "X", "symbol": "A-B", "base": "A", "quote": "B", "tick_size": 0.01, "lot_size": 0.01}
    with pytest.raises(TypeError, match="data_kinds"):
        NoData.model_validate({"instruments": [instrument]})


def test_parse_yaml_reads_every_shipped_config_as_pyyaml_does_and_quotes_the_bad_line(tmp_path: Path) -> None:
    shipped = sorted((ROOT / "configs").rglob("*.yaml"))
    assert len(shipped) >= 10
    for path in shipped:
        text = path.read_text(encoding="utf-8")
        assert parse_yaml(text) == yaml.safe_load(text), path
    for text in ("", "1e3", "x: 1e3\ny: 1.0e+3\nz: 0x1f\nw: yes\nv: ~\nd: 2024-01-02", "- !!str 12\n- '07'"):
        assert parse_yaml(text) == yaml.safe_load(text), text
    bad = tmp_path / "run.yaml"
    bad.write_text("data: [1, 2\nstrategy: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert str(bad) in str(info.value) and "line 2, column 9:\n    strategy: 3\n            ^" in str(info.value)


def test_a_boolean_for_a_number_on_the_command_line_is_a_config_error_naming_the_field(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tradebus.cli import app

    path = write(tmp_path, BACKTEST)
    result = CliRunner().invoke(app, ["backtest", str(path), "--out", str(tmp_path / "out"),
                                      "--set", "strategy.params.fast=true"])
    assert result.exit_code == 2, result.output
    assert "strategy.params.fast: expected a number, got a boolean (True)" in result.output


@pytest.mark.parametrize("kind", list(LOADERS))
@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d["strategy"]["params"].update(quantity=True), "strategy.params.quantity"),
        (lambda d: d.update(risk={"max_position": True}), "risk.max_position"),
        (lambda d: d.update(risk={"max_open_orders": False}), "risk.max_open_orders"),
        (lambda d: d.update(venue={"slippage_bps": True}), "venue.slippage_bps"),
        (lambda d: d["instruments"][0].update(tick_size=True), "instruments.0.tick_size"),
    ],
)
def test_a_boolean_for_a_number_anywhere_in_a_run_config_is_refused(
    tmp_path: Path, kind: str, change: Any, field: str
) -> None:
    data, load = LOADERS[kind]
    data = copy.deepcopy(data)
    data["instruments"] = [dict(INSTRUMENT)]
    change(data)
    with pytest.raises(ConfigError, match=f"{field}: expected a number, got a boolean"):
        load(write(tmp_path, data))


def test_yaml_integers_still_fill_float_fields(tmp_path: Path) -> None:
    data = copy.deepcopy(BACKTEST)
    data["instruments"] = [{**INSTRUMENT, "tick_size": 1, "min_notional": 5}]
    data["risk"] = {"max_position": 2, "max_open_orders": 3}
    config = load_config(write(tmp_path, data))
    assert config.instruments[0].tick_size == 1.0 and isinstance(config.instruments[0].tick_size, float)
    assert config.risk.max_position == 2.0 and config.risk.max_open_orders == 3
