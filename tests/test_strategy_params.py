"""A user strategy's ``Params`` written as a plain pydantic ``BaseModel`` (as the README's example is) refuses a
misspelt parameter, as the built-in strategies' ``StrictModel`` parameters do."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from typer.testing import CliRunner

from tradebus.cli import app
from tradebus.strategies.base import Strategy

REPO = Path(__file__).resolve().parent.parent
BARS = REPO / "tests" / "fixtures" / "kernel" / "coinbase_btc_usd_4h_2022_1200.csv"
IID = "BTC-USD.COINBASE"

MODULE = textwrap.dedent('''
    from pydantic import BaseModel
    from tradebus.strategies.base import Strategy


    class PlainParams(BaseModel):
        window: int = 50


    class Plain(Strategy):
        Params = PlainParams

        def __init__(self, instrument_ids, *, window=50, strategy_id=None):
            super().__init__(instrument_ids, strategy_id=strategy_id)
            self.window = window

        def on_bar(self, bar):
            pass
''')


def run(tmp_path: Path, params: dict[str, object]) -> tuple[int, str]:
    # a module name per test: a module once imported is the one a later test of the worker gets
    name = f"plain_params_{tmp_path.name}".replace("-", "_")
    (tmp_path / f"{name}.py").write_text(MODULE, encoding="utf-8")
    shutil.copy(BARS, tmp_path / "bars.csv")
    body = {
        "data": {"sources": [{"instrument": IID, "file": "bars.csv"}]},
        "instruments": [{"venue": "COINBASE", "symbol": "BTC-USD", "base": "BTC", "quote": "USD", "tick_size": 0.01,
                         "lot_size": 1.0e-8, "min_notional": 1.0, "maker_fee": 0.004, "taker_fee": 0.006}],
        "strategy": {"name": f"{name}:Plain", "instruments": [IID], "params": params},
        "initial_cash": 100_000.0,
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    result = CliRunner().invoke(app, ["backtest", str(path), "--out", str(tmp_path / "out")], catch_exceptions=False)
    return result.exit_code, " ".join(result.output.split())


def test_a_misspelt_parameter_of_a_plain_basemodel_params_is_a_config_error_naming_it(tmp_path: Path) -> None:
    # it ran with the default window 50 and exit 0
    code, text = run(tmp_path, {"windw": 5})
    assert code == 2, text
    where = tmp_path / "run.yaml"
    assert text == f"error: {where}: invalid config: strategy.params.windw: unknown key (not allowed here), did you mean 'window'?"
    assert not (tmp_path / "out").exists()


def test_the_known_parameters_of_a_plain_basemodel_params_still_run(tmp_path: Path) -> None:
    code, text = run(tmp_path, {"window": 5})
    assert code == 0, text
    assert yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())["strategy"]["params"] == {"window": 5}


class Allowing(BaseModel):
    model_config = ConfigDict(extra="allow")
    window: int = 50


class Ignoring(BaseModel):
    model_config = ConfigDict(extra="ignore")
    window: int = 50


class Plain(BaseModel):
    window: int = 50


def strategy_with(params: type[BaseModel]) -> type[Strategy]:
    return type("S", (Strategy,), {"Params": params})


def test_validate_params_keeps_an_extra_setting_the_model_states_itself() -> None:
    assert strategy_with(Allowing).validate_params({"window": 3, "other": 1}).model_dump() == {"window": 3, "other": 1}
    assert strategy_with(Ignoring).validate_params({"window": 3, "other": 1}).model_dump() == {"window": 3}
    with pytest.raises(ValidationError, match="other"):
        strategy_with(Plain).validate_params({"window": 3, "other": 1})
    validated = strategy_with(Plain).validate_params({"window": 3})
    assert type(validated) is Plain and validated.window == 3  # the model's own class, not the checking copy
