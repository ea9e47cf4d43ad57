"""Research configs word their errors like every other config: file, field path, what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from typer.testing import CliRunner

from tradebus.cli import app
from tradebus.errors import ConfigError
from tradebus.research.config import CVConfig, LabelsConfig, load_research_config

ROOT = Path(__file__).resolve().parents[2]


class Whole(dict):
    """A section that replaces the shipped one instead of being merged into it."""


def write(tmp: Path, change: dict) -> Path:
    data = yaml.safe_load((ROOT / "configs" / "research_btc.yaml").read_text())
    data["dataset"]["catalog"] = str(ROOT / "data" / "catalog")
    for section, values in change.items():
        if isinstance(values, Whole):
            data[section] = dict(values)
        elif isinstance(values, dict):
            data[section] = {**data.get(section, {}), **values}
        else:
            data[section] = values
    path = tmp / "research.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_the_sample_research_config_loads(tmp_path: Path) -> None:
    load_research_config(write(tmp_path, {}))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"labelz": {"horizon": 3}}, "labelz: unknown key (not allowed here)"),
        ({"dataset": {"warmup_rows": 5}}, "dataset.warmup_rows: unknown key (not allowed here)"),
        ({"dataset": {"timeframes": None}}, "dataset.timeframes: "),
        ({"dataset": {"sources": [{"instrument": "BTC-USD.COINBASE", "dataset": "coinbase/spot/BTC-USD/bars_4h"}] * 2}},
         "dataset.sources: sources 0 and 1 are both instrument 'BTC-USD.COINBASE'"),
        ({"dataset": {"features": [{"name": "x", "kind": "ema", "params": {"span": 3}, "input": "clsoe"}]}},
         "dataset.features: feature 'x': unknown input 'clsoe' (not an event field or feature)"),
        ({"dataset": {"timeframes": {"1d": [{"name": "m", "kind": "no_such_kind", "input": "close"}]}}},
         "dataset.timeframes.1d: "),
        ({"walkforward": {"upper": 0.3, "lower": 0.7}}, "walkforward: upper (0.3) is below lower (0.7)"),
        ({"walkforward": {"upper": 55, "lower": 45}}, "walkforward.upper: Input should be less than or equal to 1 (got 55)"),
        ({"walkforward": {"lower": -0.2}}, "walkforward.lower: Input should be greater than or equal to 0 (got -0.2)"),
        ({"walkforward": {"instrument": {"venue": "COINBASE", "symbol": "ETH-USD", "tick_size": 0.01, "lot_size": 1e-8}}},
         "walkforward.instrument: ETH-USD.COINBASE (its symbol.venue) is no instrument of dataset.sources (they are: "
         "BTC-USD.COINBASE); name the source's instrument to walk forward on"),
        ({"labels": Whole(method="forward", horizons=[1, 0])}, "labels.horizons.1: Input should be greater than 0 (got 0)"),
        ({"labels": Whole(method="forward", clip_quantile=0.7)}, "labels.clip_quantile: Input should be less than 0.5 (got 0.7)"),
        ({"labels": {"clip_quantile": 0.1}},
         "labels.clip_quantile: only with labels.method: forward (triple_barrier labels are not clipped)"),
        ({"alpha": {"horizons": [-6]}}, "alpha.horizons.0: Input should be greater than 0 (got -6)"),
        ({"cv": {"embargo": 1.5}},
         "cv.embargo: embargo 1.5 is neither a number of samples (a whole number) nor a fraction of the samples (< 1)"),
    ],
)
def test_a_bad_research_config_names_the_file_the_key_and_the_problem(tmp_path: Path, change: dict, message: str) -> None:
    path = write(tmp_path, change)
    with pytest.raises(ConfigError) as info:
        load_research_config(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"lables": {"method": "forward"}}, "lables: unknown key (not allowed here), did you mean 'labels'?"),
        ({"labels": {"max_bar": 3}}, "labels.max_bar: unknown key (not allowed here), did you mean 'max_bars'?"),
        ({"dataset": {"end": 3}}, "dataset.end: unknown key (not allowed here), did you mean 'end_ns'?"),
        ({"dataset": {"sources": [{"instrument": "BTC-USD.COINBASE", "dataset": "coinbase/spot/BTC-USD/bars_4h",
                                   "timeframe": {}}]}},
         "dataset.sources.0.timeframe: unknown key (not allowed here), did you mean 'timeframes'?"),
        ({"walkforward": {"retrain_every_tim": "30d"}},
         "walkforward.retrain_every_tim: unknown key (not allowed here), did you mean 'retrain_every_time'?"),
        ({"walkforward": {"venue": {"fill_onn": "bars"}}},
         "walkforward.venue.fill_onn: unknown key (not allowed here), did you mean 'fill_on'?"),
        ({"alpha": {"qauntiles": 4}}, "alpha.qauntiles: unknown key (not allowed here), did you mean 'quantiles'?"),
        ({"cv": {"zzz": 1}}, "cv.zzz: unknown key (not allowed here)"),  # no key close to it: no guess
    ],
)
def test_a_misspelt_research_config_key_names_the_key_it_is_close_to(tmp_path: Path, change: dict, message: str) -> None:
    """A misspelt key said only 'unknown key (not allowed here)', leaving the reader to find the key meant."""
    path = write(tmp_path, change)
    with pytest.raises(ConfigError) as info:
        load_research_config(path)
    assert str(info.value) == f"{path}: {message}"


@pytest.mark.parametrize(("name", "edit", "message"), [
    ("regime_hazard", {"walkforward": {"segmnts": 4}}, "walkforward.segmnts: unknown key (not allowed here), "
                                                       "did you mean 'segments'?"),
    ("ml_gated", {"model": {"prune_kep": 4}}, "model.prune_kep: unknown key (not allowed here), "
                                              "did you mean 'prune_keep'?"),
    ("ml_gated", {"strategy": {"exits": {"stop_atrr": 1.5}}}, "strategy.exits.stop_atrr: unknown key (not allowed "
                                                              "here), did you mean 'stop_atr'?"),
])
def test_a_misspelt_system_config_key_names_the_key_it_is_close_to(tmp_path: Path, name: str, edit: dict,
                                                                   message: str) -> None:
    from tradebus.research.ml_gated import load_ml_gated_config
    from tradebus.research.regime_hazard import load_config

    path = _system(tmp_path, name, edit)
    with pytest.raises(ConfigError) as info:
        (load_config if name == "regime_hazard" else load_ml_gated_config)(path)
    assert str(info.value) == f"{path}: {message}"


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"params": {"n_estimators": 5, "max_dept": 3}},
         "model.params: 'max_dept' is not a parameter of XGBClassifier; did you mean 'max_depth'?"),
        ({"kind": "logistic", "params": {"n_estimators": 5}}, "model.params: 'n_estimators' is not a parameter of LogisticRegression"),
        ({"params": {"max_depth": -1}},
         "model.params: XGBClassifier refuses these parameters: value -1 for Parameter max_depth should be greater equal to 0"),
        ({"kind": "random_forest", "params": {"n_estimators": 0}},
         "model.params: RandomForestClassifier refuses these parameters: The 'n_estimators' parameter of "
         "RandomForestClassifier must be an int in the range [1, inf). Got 0 instead."),
        ({"kind": "logistic", "params": {"C": -1.0}}, "model.params: LogisticRegression refuses these parameters: The 'C' parameter"),
        ({"params": {"random_state": 7}}, "model.params: 'random_state' is set by walkforward.seed"),
        ({"kind": "random_forest", "params": {"random_state": 7}}, "model.params: 'random_state' is set by walkforward.seed"),
    ],
)
def test_model_params_the_estimator_would_ignore_or_refuse_are_config_errors(tmp_path: Path, model: dict, message: str) -> None:
    path = write(tmp_path, {"model": {"kind": "xgboost", "columns": ["vol", "rsi"], **model}})
    with pytest.raises(ConfigError) as info:
        load_research_config(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


@pytest.mark.parametrize("kind", ["xgboost", "logistic", "random_forest"])
def test_model_params_each_estimator_takes_load(tmp_path: Path, kind: str) -> None:
    params = {"xgboost": {"n_estimators": 5, "max_depth": 2, "eta": 0.1, "lambda": 1.0},
              "logistic": {"C": 0.5}, "random_forest": {"n_estimators": 5, "max_depth": 2}}[kind]
    config, _ = load_research_config(write(tmp_path, {"model": {"kind": kind, "columns": ["vol"], "params": params}}))
    assert config.model is not None and config.model.params == params


_BARRIER_FIELDS = {"vol_method": "atr", "vol_span": 30, "pt": 2.0, "sl": 1.0, "max_bars": 24, "side": -1,
                   "tie_break": "profit", "cusum": 2.0}
_FORWARD_FIELDS = {"horizons": [6], "kind": "log", "clip_quantile": None}


@pytest.mark.parametrize(("labels", "field", "method"), [
    *((Whole(method="forward", horizons=[6], **{f: v}), f, "forward") for f, v in _BARRIER_FIELDS.items()),
    # at its default, written, it is still a setting the researcher believes acts
    (Whole(method="forward", pt=1.0), "pt", "forward"),
    *(({f: v}, f, "triple_barrier") for f, v in _FORWARD_FIELDS.items()),
    (Whole(horizons=[1]), "horizons", "triple_barrier"),  # triple_barrier is the default method
])
def test_a_label_field_the_method_does_not_read_is_refused_naming_the_field_and_the_method(
        tmp_path: Path, labels: dict, field: str, method: str) -> None:
    path = write(tmp_path, {"labels": labels})
    with pytest.raises(ConfigError) as info:
        load_research_config(path)
    reader = "forward" if method == "triple_barrier" else "triple_barrier"
    assert str(info.value) == (f"{path}: labels.{field}: only with labels.method: {reader} "
                               f"({method} labels do not read it; remove it or change labels.method)")


def test_research_labels_with_a_field_the_method_ignores_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    path = write(tmp_path, {"labels": Whole(method="forward", horizons=[6], pt=3.0)})
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["research", "labels", str(path), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "labels.pt: only with labels.method: triple_barrier" in " ".join(result.output.split())
    assert not out.exists()


def test_every_label_field_belongs_to_one_method() -> None:
    from tradebus.research.config import _LABELS_READ_BY

    assert set(_LABELS_READ_BY) == set(LabelsConfig.model_fields) - {"method"}
    assert set(_LABELS_READ_BY.values()) == {"forward", "triple_barrier"}


@pytest.mark.parametrize("change", [{"labels": Whole(method="forward", horizons=[3, 6], kind="bps", clip_quantile=0.05)},
                                    {"cv": Whole(method="walkforward", test_size=50, gap=2)},
                                    {"cv": Whole(method="cpcv", n_test_folds=3)}, {}])
def test_a_dumped_research_config_reloads_as_itself(tmp_path: Path, change: dict) -> None:
    config, _ = load_research_config(write(tmp_path, change))
    dumped = tmp_path / "dumped.yaml"
    dumped.write_text(yaml.safe_dump(config.model_dump(mode="json")), encoding="utf-8")
    reloaded, _ = load_research_config(dumped)
    assert reloaded == config


def test_a_dumped_labels_section_edited_to_set_a_field_the_method_ignores_is_refused(tmp_path: Path) -> None:
    config, _ = load_research_config(write(tmp_path, {"labels": Whole(method="forward", horizons=[3])}))
    data = config.model_dump(mode="json")
    data["labels"]["pt"] = 2.5
    dumped = tmp_path / "dumped.yaml"
    dumped.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"labels\.pt: only with labels\.method: triple_barrier"):
        load_research_config(dumped)



@pytest.mark.parametrize(("cv", "field", "reader"), [
    ({"test_size": 100}, "test_size", "walkforward"),  # the shipped kfold section
    ({"train_size": 500}, "train_size", "walkforward"),
    ({"expanding": False}, "expanding", "walkforward"),
    ({"gap": 3}, "gap", "walkforward"),
    ({"n_test_folds": 3}, "n_test_folds", "cpcv"),
    (Whole(method="cpcv", n_splits=6, test_size=10), "test_size", "walkforward"),
    (Whole(method="walkforward", n_splits=3, n_test_folds=2), "n_test_folds", "cpcv"),
])
def test_a_cv_field_the_splitter_does_not_read_is_refused_naming_the_field_and_the_method(
        tmp_path: Path, cv: dict, field: str, reader: str) -> None:
    path = write(tmp_path, {"cv": cv})
    method = cv.get("method", "kfold")
    with pytest.raises(ConfigError) as info:
        load_research_config(path)
    assert str(info.value) == (f"{path}: cv.{field}: only with cv.method: {reader} "
                               f"({method} splits do not read it; remove it or change cv.method)")


def test_research_cv_with_a_field_the_splitter_ignores_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    path = write(tmp_path, {"cv": {"test_size": 100}})
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["research", "cv", str(path), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "cv.test_size: only with cv.method: walkforward" in " ".join(result.output.split())
    assert not out.exists()


@pytest.mark.parametrize("command", ["dataset", "cv"])
@pytest.mark.parametrize(("n_splits", "n_test_folds"), [(3, 3), (4, 6)])
def test_cpcv_test_folds_leaving_no_fold_to_train_on_are_refused_at_load_naming_both_keys(
        tmp_path: Path, command: str, n_splits: int, n_test_folds: int) -> None:
    """cv: {method: cpcv, n_splits: 3, n_test_folds: 3}: research dataset (labels, alpha, walkforward) ran to exit 0 on
    it, and research cv said only 'CombinatorialPurgedCV: need 1 <= n_test_folds < n_folds, got 3, 3', naming neither
    key (n_folds is cv.n_splits)."""
    path = write(tmp_path, {"cv": Whole(method="cpcv", n_splits=n_splits, n_test_folds=n_test_folds)})
    result = CliRunner().invoke(app, ["research", command, str(path), "--out", str(tmp_path / "out")])
    said = " ".join(result.output.split())
    assert result.exit_code == 2, said
    assert said.startswith(f"error: {path}: cv.n_test_folds: {n_test_folds} test groups of cv.n_splits {n_splits} "
                           "leave no group to train on; give at most "
                           f"{n_splits - 1} (or more cv.n_splits)"), said
    assert not (tmp_path / "out").exists()


def test_every_cv_field_a_splitter_alone_reads_names_a_splitter() -> None:
    from tradebus.research.config import _CV_READ_BY

    assert set(_CV_READ_BY) == set(CVConfig.model_fields) - {"method", "n_splits", "embargo"}
    assert set(_CV_READ_BY.values()) == {"cpcv", "walkforward"}


def _system(tmp: Path, name: str, edit: dict[str, dict[str, str]]) -> Path:
    """The shipped system config ``name`` with absolute data paths and ``edit`` merged into its sections."""
    text = (ROOT / "configs" / "systems" / f"{name}.yaml").read_text()
    data = yaml.safe_load(text.replace("../../data/", f"{ROOT}/data/"))
    for section, values in edit.items():
        data[section] = {**data[section], **values}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _run_config(tmp: Path) -> Path:
    data = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    data["data"]["catalog"] = str(ROOT / "data" / "catalog")
    data["data"]["sources"][0]["dataset"] = "coinbase/spot/BTC-USD/bars_9h"
    path = tmp / "run.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.mark.parametrize(("command", "make", "message"), [
    (["alpha"], lambda tmp: write(tmp, {"dataset": {"sources": [{"instrument": "BTC-USD.COINBASE",
                                                                  "dataset": "coinbase/spot/BTC-USD/bars_9h"}]}}),
     "dataset.sources.0.dataset: no dataset 'coinbase/spot/BTC-USD/bars_9h' in catalog"),
    (["walkforward"], lambda tmp: write(tmp, {"model": {"columns": ["volx", "rsi"]}}),
     "model.columns: ['volx'] are not columns of the features"),
    (["lookahead", "--cuts", "1"], _run_config,
     "data.sources.0.dataset: no dataset 'coinbase/spot/BTC-USD/bars_9h' in catalog"),
    (["run"], lambda tmp: _system(tmp, "ml_gated", {"data": {"dataset": "freqtrade/spot/ETH-BTC/bars_9m"}}),
     "data.dataset: no dataset 'freqtrade/spot/ETH-BTC/bars_9m' in catalog"),
    (["run"], lambda tmp: _system(tmp, "regime_hazard", {"data": {"trades": "no_such_trades.csv.gz"}}),
     "data.trades: no such file "),
    (["run"], lambda tmp: _system(tmp, "regime_hazard", {"regime_study": {"dataset": "coinbase/spot/BTC-USD/bars_9h"}}),
     "regime_study.dataset: no dataset 'coinbase/spot/BTC-USD/bars_9h' in catalog"),
], ids=["alpha-dataset", "walkforward-column", "lookahead-dataset", "ml_gated-dataset", "regime_hazard-trades",
        "regime_hazard-study"])
def test_a_research_command_names_the_config_file_and_key_exit_2(tmp_path: Path, command: list[str], make: Any,
                                                                  message: str) -> None:
    """A dataset or file the config names but the disk lacks, or a model column no feature gives: the error
    starts with the config's path and the key (they said only 'no dataset ...' with exit 3, or named no file)."""
    path = make(tmp_path)
    result = CliRunner().invoke(app, ["research", command[0], str(path), *command[1:], "--out", str(tmp_path / "out")])
    said = " ".join(result.output.split())
    assert result.exit_code == 2, said
    assert said.startswith(f"error: {path}: {message}"), said
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["dataset", "labels", "cv", "alpha", "walkforward"])
def test_a_model_column_no_feature_gives_is_refused_by_every_command_that_loads_the_config(
        tmp_path: Path, command: str) -> None:
    """model.columns [volx, rsi] on research_btc.yaml's features (r, vol, rsi, macd, z, atr): only walkforward,
    which reads the model section, said so; dataset, labels and cv ran to exit 0 on the broken config."""
    path = write(tmp_path, {"model": {"columns": ["volx", "rsi"]}})
    result = CliRunner().invoke(app, ["research", command, str(path), "--out", str(tmp_path / "out")])
    said = " ".join(result.output.split())
    assert result.exit_code == 2, said
    assert said.startswith(f"error: {path}: model.columns: ['volx'] are not columns of the features (they are: r, vol, "
                           "rsi, macd.macd, macd.signal, macd.hist, z, atr)"), said
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["dataset", "labels", "cv", "walkforward", "alpha"])
@pytest.mark.parametrize("factors", [["rsi", "rsix"], ["rsi", "fwd_1"]], ids=["misspelt", "forward-return"])
def test_an_alpha_factor_that_is_no_dataset_column_is_refused_by_every_command_that_loads_the_config(
        tmp_path: Path, command: str, factors: list[str]) -> None:
    """alpha.factors [rsi, rsix] on research_btc.yaml's features: only alpha, which reads the alpha section, said
    so, and dataset, labels, cv and walkforward ran to exit 0; alpha took fwd_1, the forward return it joins to the
    dataset, as a factor (an IC of 1 from the label itself)."""
    path = write(tmp_path, {"alpha": {"factors": factors}})
    result = CliRunner().invoke(app, ["research", command, str(path), "--out", str(tmp_path / "out")])
    said = " ".join(result.output.split())
    assert result.exit_code == 2, said
    assert said.startswith(f"error: {path}: alpha.factors: {[factors[1]]} are not columns of the dataset (they are: "
                           "r, vol, rsi, macd.macd, macd.signal, macd.hist, z, atr)"), said
    assert not (tmp_path / "out").exists()


def test_an_alpha_factor_of_an_extra_timeframe_is_a_dataset_column(tmp_path: Path) -> None:
    """A slower timeframe's columns are named <timeframe>:<column> in the dataset: a factor may name one."""
    path = write(tmp_path, {"alpha": {"factors": ["rsi", "1d:r"]}})
    data = yaml.safe_load(path.read_text())
    data["dataset"]["sources"][0]["timeframes"] = {"1d": "coinbase/spot/BTC-USD/bars_4h"}
    data["dataset"]["timeframes"] = {"1d": [{"name": "r", "kind": "log_ret", "input": "close"}]}
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    config, dataset = load_research_config(path)
    assert config.alpha is not None and config.alpha.factors == ["rsi", "1d:r"]
    assert dataset.feature_columns()[-1] == "1d:r"


@pytest.mark.parametrize("command", [["research", "lookahead", "--cuts", "1"], ["backtest"]])
def test_a_research_config_given_to_a_run_command_is_refused_naming_the_commands_that_read_it(
        tmp_path: Path, command: list[str]) -> None:
    """research lookahead configs/research_btc.yaml listed 'dataset: unknown key', 'labels: ...', 'cv: ...',
    'model: ...' and said nothing of what kind of config it had been given or which command reads it."""
    path = write(tmp_path, {})
    result = CliRunner().invoke(app, [*command[:2], str(path), *command[2:], "--out", str(tmp_path / "out")])
    said = " ".join(result.output.split())
    assert result.exit_code == 2, said
    assert said.startswith(f"error: {path}: a research config (it has a dataset: section) is read by 'tradebus "
                           "research dataset', 'labels', 'cv', 'walkforward' or 'alpha'; this command takes a run "
                           "config (instruments:, data:, strategy:, as configs/quickstart.yaml)"), said
    assert "unknown key" not in said
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("config", "runs"), [
    ("quickstart.yaml", "'tradebus backtest' (or paper) and checked by 'tradebus research lookahead'"),
    ("live_binance_testnet.yaml", "'tradebus live'"),
])
@pytest.mark.parametrize("command", ["walkforward", "dataset"])
def test_a_run_config_given_to_a_research_command_is_refused_naming_the_command_that_runs_it(
        tmp_path: Path, command: str, config: str, runs: str) -> None:
    """research walkforward configs/quickstart.yaml said 'dataset: required field is missing; data: unknown key;
    instruments: unknown key; strategy: unknown key; ...' as if a research config had been misspelt."""
    path = ROOT / "configs" / config
    result = CliRunner().invoke(app, ["research", command, str(path), "--out", str(tmp_path / "out")])
    said = " ".join(result.output.split())
    assert result.exit_code == 2, said
    assert said.startswith(f"error: {path}: a run config (it has an instruments: section) is run by {runs}; this "
                           "command takes a research config (dataset:, labels:, model:, ..., as "
                           "configs/research_btc.yaml)"), said
    assert "unknown key" not in said
    assert not (tmp_path / "out").exists()


def test_a_regime_hazard_slippage_of_100_percent_or_more_names_the_key_and_the_bound(tmp_path: Path) -> None:
    """costs.slippage_bps: 20000 loaded, and the simulation filled every sell at price * (1 - 2), below 0;
    it is refused as the venue's slippage is, below 10,000 bps."""
    from tradebus.research.regime_hazard import load_config

    path = _system(tmp_path, "regime_hazard", {"costs": {"slippage_bps": 20_000.0}})
    with pytest.raises(ConfigError, match=r"costs\.slippage_bps: Input should be less than 10000 \(got 20000\.0\)") as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ")


@pytest.mark.parametrize("fee_bps", [1_000.0, 20_000.0, float("inf")])
def test_a_regime_hazard_fee_of_10_percent_or_more_names_the_key_and_the_bound(tmp_path: Path, fee_bps: float) -> None:
    """costs.fee_bps: 20000 loaded (a fill paying twice its notional in fees, 40,000 bps per round trip); it
    is refused as the backtest's fee rates are (``taker_fee`` below 0.1), below 1,000 bps."""
    from tradebus.research.regime_hazard import load_config

    path = _system(tmp_path, "regime_hazard", {"costs": {"fee_bps": fee_bps}})
    with pytest.raises(ConfigError, match=rf"costs\.fee_bps: Input should be less than 1000 \(got {fee_bps}\)") as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ")
    assert load_config(_system(tmp_path, "regime_hazard", {"costs": {"fee_bps": 999.0}}))[0].costs.fee_bps == 999.0
