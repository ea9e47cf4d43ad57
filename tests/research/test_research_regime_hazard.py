"""The regime + hazard system in research: one command, determinism, report vs runs, no lookahead, risk only."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import tradebus.strategies.regime_hazard as rh
from tradebus.cli import app
from tradebus.strategies.models import CalibratedLogit, ModelSchedule
from tradebus.data.catalog import Catalog
from tradebus.errors import ConfigError
from tradebus.research.regime_hazard import (
    RegimeHazardConfig,
    _meta_samples,
    _metrics,
    _schedule,
    load_config,
    load_trades,
    lookahead_by_layer,
    pipeline_trace,
    regime_states,
    regime_study,
    run_pipeline,
    segment_bounds,
    simulate,
)
from tradebus.research.lookahead import SourceFrame, detect_lookahead
from tradebus.strategies.regime_hazard import HAZARD_FEATURES, META_FEATURES

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "systems" / "regime_hazard.yaml"
OUTPUTS = ("report.json", "report.md", "decisions_baseline.jsonl", "decisions_enhanced.jsonl", "trades_baseline.csv",
           "trades_enhanced.csv", "models.json")


@pytest.fixture(scope="module")
def setup() -> tuple:
    config, base = load_config(CONFIG)
    return config, load_trades(base / config.data.trades)


@pytest.fixture(scope="module")
def pipeline(setup: tuple):
    config, frame = setup
    return run_pipeline(frame, config)


def _config_copy(tmp: Path, **changes: object) -> Path:
    data = yaml.safe_load(CONFIG.read_text())
    data["data"]["trades"] = str(REPO / "data" / "systems" / Path(data["data"]["trades"]).name)
    data["regime_study"]["catalog"] = str(REPO / "data" / "catalog")
    for key, value in changes.items():
        section, _, name = key.partition("__")
        if name:
            data[section][name] = value
        else:
            data[section] = value
    path = tmp / "rh.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_research_run_is_deterministic_and_the_report_matches_the_runs(tmp_path: Path) -> None:
    config = _config_copy(tmp_path, lookahead__cuts=0, regime_study=None)
    runner = CliRunner()
    for name in ("a", "b"):
        result = runner.invoke(app, ["research", "run", str(config), "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
    for name in OUTPUTS:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    raw = pd.read_csv(REPO / "data" / "systems" / "binance_xrpeth_trades_2019-10-11_13.csv.gz")
    ts, price = raw["ts_ms"].to_numpy() * 1_000_000, raw["price"].to_numpy()
    fee, slip = 7.5e-4, 2e-4
    for run in ("baseline", "enhanced"):
        trades = pd.read_csv(tmp_path / "a" / f"trades_{run}.csv")
        decisions = [json.loads(x) for x in (tmp_path / "a" / f"decisions_{run}.jsonl").read_text().splitlines()]
        # rebuild every round trip from the decisions and the raw file: fill = the next trade's price +- slippage
        acts = [d for d in decisions if d["action"] in ("enter", "exit")]
        pnl = []
        for enter, exit_ in zip(acts[::2], acts[1::2], strict=False):
            assert enter["action"] == "enter" and exit_["action"] == "exit"
            assert enter["entry_id"] == exit_["entry_id"] and enter["reason"] and exit_["reason"]
            i, j = (int(np.searchsorted(ts, d["ts"], side="left")) for d in (enter, exit_))
            side = enter["side"]
            px_in, px_out = price[i + 1] * (1 + side * slip), price[j + 1] * (1 - side * slip)
            pnl.append(side * (px_out / px_in - 1) - 2 * fee)
        assert len(pnl) == len(trades) == report[run]["trades"]
        assert np.allclose(pnl, trades["pnl"], rtol=0, atol=1e-9)
        assert report[run]["pnl_pct"] == pytest.approx(100 * sum(pnl), abs=1e-5)
        assert report[run]["hit_rate"] == pytest.approx(np.mean(np.array(pnl) > 0), abs=1e-6)
        assert report[run]["turnover"] == 2 * len(pnl)
        assert sum(s["trades"] for s in report[run]["per_segment"]) == len(pnl)
        assert sum(s["pnl_pct"] for s in report[run]["per_segment"]) == pytest.approx(100 * sum(pnl), abs=1e-4)
        assert report[run]["trades_by_exit"] == trades["exit"].value_counts().to_dict()
        assert report[run]["max_drawdown_pct"] >= 0
    assert "| pnl_pct |" in (tmp_path / "a" / "report.md").read_text()


def test_bad_config_and_data_give_clear_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = _config_copy(tmp_path, params__entry_interval="7m")
    result = runner.invoke(app, ["research", "run", str(bad), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "intervals must nest" in result.output
    data = yaml.safe_load(CONFIG.read_text())
    data["system"] = "nope"
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
    result = runner.invoke(app, ["research", "run", str(tmp_path / "s.yaml")])
    assert result.exit_code == 2 and "system: must be one of" in result.output
    for shipped in ("research_btc.yaml", "quickstart.yaml"):  # the newcomer's guess: it said "got None"
        result = runner.invoke(app, ["research", "run", str(CONFIG.parents[1] / shipped)])
        message = " ".join(result.output.split())
        assert result.exit_code == 2, message
        assert "no system: key; research run runs a system config (system: one of ['ml_gated', 'regime_hazard']" in message
        assert "goes to research dataset, labels, cv, walkforward or alpha, a run config to backtest" in message
    (tmp_path / "t.csv").write_text("ts_ms,trade_id,price,size,side\n1,1,1.0,1.0,buy\n2,2,1.0,1.0,hold\n")
    data = yaml.safe_load(CONFIG.read_text())
    data["data"]["trades"] = "t.csv"
    (tmp_path / "d.yaml").write_text(yaml.safe_dump(data))
    result = runner.invoke(app, ["research", "run", str(tmp_path / "d.yaml"), "--out", str(tmp_path / "o2")])
    assert result.exit_code == 3 and "row 3" in result.output and "hold" in result.output
    assert not (tmp_path / "o2" / "report.json").exists()


@pytest.mark.parametrize(("row", "column", "shown"), [
    ("abc,2,1.0,1.0,buy", "ts_ms", "'abc'"),
    (",2,1.0,1.0,buy", "ts_ms", "nan"),
    ("2.5,2,1.0,1.0,buy", "ts_ms", "2.5"),
    ("2,2,x,1.0,buy", "price", "'x'"),
    ("2,2,1.0,1e,buy", "size", "'1e'"),
])
def test_a_trade_whose_time_price_or_size_is_not_a_number_is_a_data_error_naming_row_and_column(
        tmp_path: Path, row: str, column: str, shown: str) -> None:
    (tmp_path / "t.csv").write_text(f"ts_ms,trade_id,price,size,side\n1,1,1.0,1.0,buy\n{row}\n3,3,1.0,1.0,sell\n")
    data = yaml.safe_load(CONFIG.read_text())
    data["data"]["trades"] = "t.csv"
    (tmp_path / "d.yaml").write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(app, ["research", "run", str(tmp_path / "d.yaml"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 3, result.output
    assert f"row 3: {column} must be" in result.output and shown in result.output
    assert not (tmp_path / "o").exists()


def test_figures_undefined_without_trades_are_null_not_zero(tmp_path: Path) -> None:
    """The first 2,000 trades end inside the regime warm-up: no trade, so no hit rate, hold time or Sharpe."""
    raw = pd.read_csv(REPO / "data" / "systems" / "binance_xrpeth_trades_2019-10-11_13.csv.gz", nrows=2000)
    raw.to_csv(tmp_path / "head.csv", index=False)
    config = _config_copy(tmp_path, data__trades=str(tmp_path / "head.csv"), lookahead__cuts=0, regime_study=None)
    result = CliRunner().invoke(app, ["research", "run", str(config), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output

    def refuse(constant: str) -> None:
        raise ValueError(f"report.json holds {constant}, which is not JSON")

    report = json.loads((tmp_path / "o" / "report.json").read_text(), parse_constant=refuse)
    for run in ("baseline", "enhanced"):
        assert report[run]["trades"] == 0 and report[run]["pnl_pct"] == 0.0
        assert report[run]["hit_rate"] is None and report[run]["avg_hold_min"] is None
        assert report[run]["sharpe_hourly_annualised"] is None
        assert [s["hit_rate"] for s in report[run]["per_segment"]] == [None] * 5
    assert report["candidates"]["meta_positive_rate"] is None and report["hazard_positive_rate"] is None
    assert "| hit_rate | n/a | n/a |" in (tmp_path / "o" / "report.md").read_text()


@pytest.mark.parametrize(("section", "key", "value", "message"), [
    ("params", "base_interval", "7q", "params.base_interval: expected a duration like"),
    ("walkforward", "embargo", "xx", "walkforward.embargo: expected a duration like"),
    ("params", "trend_entr", 0.5, "params.trend_entr: unknown key (not allowed here), did you mean 'trend_enter'?"),
    ("regime_study", "dataset", "coinbase/BTC-USD", "regime_study.dataset: expected exchange/market/symbol/dataset"),
    # a KeyError 'RANGE' at the first RANGE entry, and a take-profit 1 ATR *below* a long's entry, before
    ("params", "barriers", {"TREND": [2.0, 1.0]}, "params.barriers: needs [take-profit, stop] ATRs for each entering "
                                                  "regime, missing ['RANGE']"),
    ("params", "barriers", {"TREND": [2.0, 1.0], "RANGE": [-1.0, 1.0]},
     "params.barriers: RANGE: take-profit and stop must be positive ATR multiples, got [-1.0, 1.0]"),
    # after the pipeline ran to the first warm regime bar, 'hysteresis: exit (0.6) must not be above enter (0.5)'
    ("params", "trend_exit", 0.6, "params.trend_exit: 0.6 above trend_enter 0.5: the state would be left before"),
    ("params", "hazard_exit", 2.0, "params.hazard_exit: 2.0 above hazard_enter 1.8: the state would be left before"),
    # the efficiency ratio |net move| / sum |moves| lies in [0, 1]: above 1 TREND was never entered, without a word
    ("params", "trend_enter", 1.2, "params.trend_enter: 1.2 outside [0, 1], the range of the efficiency ratio"),
    ("params", "trend_exit", -0.1, "params.trend_exit: -0.1 outside [0, 1], the range of the efficiency ratio"),
    ("regime_study", "params", {"trend_enter": 1.5, "trend_exit": 1.1},
     "regime_study.params.trend_enter: 1.5 outside [0, 1], the range of the efficiency ratio it is compared with; "
     "regime_study.params.trend_exit: 1.1 outside [0, 1]"),
    # a fast EMA slower than the slow one turned the pullback's trend check around
    ("params", "ema_fast", 36, "params.ema_slow: 36 not above ema_fast 36: the fast EMA must have the shorter span"),
    ("params", "ema_slow", 10, "params.ema_slow: 10 not above ema_fast 12: the fast EMA must have the shorter span"),
    # ... against the default ema_slow (36) too, which the check skipped: ema_fast 40 alone passed
    ("regime_study", "params", {"ema_fast": 40},
     "regime_study.params.ema_slow: 36 not above ema_fast 40: the fast EMA must have the shorter span"),
    # an enter below the default exit (0.3, 1.3) left out of the config: the hysteresis was checked only at run time
    ("regime_study", "params", {"trend_enter": 0.2},
     "regime_study.params.trend_exit: 0.3 above trend_enter 0.2: the state would be left before"),
    ("regime_study", "params", {"hazard_enter": 1.0},
     "regime_study.params.hazard_exit: 1.3 above hazard_enter 1.0: the state would be left before"),
])
def test_a_bad_config_value_is_named_with_the_file(tmp_path: Path, section: str, key: str, value: object,
                                                    message: str) -> None:
    config = _config_copy(tmp_path, **{f"{section}__{key}": value})
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert str(info.value).startswith(f"{config}: {message}")


def test_regime_study_intervals_are_checked_before_the_run(tmp_path: Path) -> None:
    study = yaml.safe_load(CONFIG.read_text())["regime_study"]
    study["params"]["entry_interval"] = "3h"  # does not divide the 4h regime interval
    config = _config_copy(tmp_path, regime_study=study)
    with pytest.raises(ConfigError, match=r"rh\.yaml: regime_study\.params: regime_hazard: intervals must nest"):
        load_config(config)


def test_no_lookahead_in_any_layer(setup: tuple) -> None:
    """The detector perturbs the trades after random cuts and re-runs the pipeline, training included."""
    config, frame = setup
    config = config.model_copy(update={"lookahead": config.lookahead.model_copy(update={"cuts": 2, "seed": 3})})
    found = lookahead_by_layer(frame, config)
    assert found["ok"] and all(found[k]["ok"] for k in "ABC")
    assert found["records_checked"] > 500


def test_the_detector_finds_a_leak_in_the_hazard_layer_only(setup: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hazard feature that reads the last price of the data is caught, and attributed to layer C."""
    config, frame = setup
    config = config.model_copy(update={"lookahead": config.lookahead.model_copy(update={"cuts": 1, "seed": 1})})
    original = rh.RegimeHazardSystem._hazard_row
    leaked: dict[str, float] = {}

    def leaky_simulate(frame_: pd.DataFrame, *args: object, **kwargs: object):
        leaked["last"] = float(frame_["price"].iloc[-1])
        return simulate(frame_, *args, **kwargs)

    def leaky_row(self, *args: object) -> list[float]:
        row = original(self, *args)
        row[2] += leaked["last"]
        return row

    monkeypatch.setattr("tradebus.research.regime_hazard.simulate", leaky_simulate)
    monkeypatch.setattr(rh.RegimeHazardSystem, "_hazard_row", leaky_row)
    found = lookahead_by_layer(frame, config)
    assert not found["ok"] and not found["C"]["ok"]
    assert found["A"]["ok"]


def test_the_detector_sees_a_meta_model_leak_too_small_to_flip_a_decision(setup: tuple,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """P(win) moved by 1e-9 x the last price of the data: no veto flips and its reason (2 decimals) is the same."""
    config, frame = setup
    original = CalibratedLogit.predict
    leaked: dict[str, float] = {}

    def leaky_simulate(frame_: pd.DataFrame, *args: object, **kwargs: object):
        leaked["last"] = float(frame_["price"].iloc[-1])
        return simulate(frame_, *args, **kwargs)

    def leaky_predict(self: CalibratedLogit, row: list[float]) -> float:
        q = original(self, row)
        return q + 1e-9 * leaked["last"] if self.columns == META_FEATURES else q

    monkeypatch.setattr("tradebus.research.regime_hazard.simulate", leaky_simulate)
    monkeypatch.setattr(CalibratedLogit, "predict", leaky_predict)
    ts = frame["ts_event"].to_numpy()
    cut = int(ts[int(len(ts) * 0.97)])  # after the meta models' first vetoes
    source = SourceFrame(config.data.instrument, "trades", frame)
    report = detect_lookahead([source], lambda s: pipeline_trace(run_pipeline(s[0].frame, config)), cuts=[cut], seed=2)
    kinds = {v["kind"] for v in report.violations}
    assert kinds == {"B"}, report.violations[:3]


def _constant(p: float) -> ModelSchedule:
    k = len(HAZARD_FEATURES)
    model = CalibratedLogit(HAZARD_FEATURES, (0.0,) * k, (1.0,) * k, (0.0,) * k, 0.0, (0.0, 1.0), (p, p), 0, p)
    return ModelSchedule(((0, model),))


def _acts(res) -> list[tuple]:
    return [(d.ts, d.action, d.entry_id, d.side) for d in res.system.decisions if d.action != "regime"]


def test_hazard_only_reduces_risk(setup: tuple, pipeline) -> None:
    config, frame = setup
    p, costs, meta = config.params, config.costs, pipeline.meta
    calm = simulate(frame, p, costs, meta=meta, hazard=_constant(0.0), use_hazard=True)
    assert _acts(calm) == _acts(pipeline.baseline)  # a silent meter changes nothing
    alarm = simulate(frame, p, costs, meta=meta, hazard=_constant(1.0), use_hazard=True)
    assert len(alarm.trades) == 0  # a screaming meter never adds risk: every entry blocked
    assert {d.action for d in alarm.system.decisions if d.layer == "C"} == {"block"}
    # the trained meter: layer C only exits or blocks, and a trade it shares with the baseline ends no later
    enh, base = pipeline.enhanced, pipeline.baseline
    assert {d.action for d in enh.system.decisions if d.layer == "C"} <= {"exit", "block"}
    assert any(d.layer == "C" for d in enh.system.decisions)
    shared = enh.trades.merge(base.trades, on="entry_id", suffixes=("_e", "_b"))
    assert len(shared) > 0 and (shared["exit_ts_e"] <= shared["exit_ts_b"]).all()
    assert (shared["side_e"] == shared["side_b"]).all()
    for d in enh.system.decisions:
        if d.layer == "C":
            assert "hazard p=" in d.reason and "drivers:" in d.reason


def test_models_are_trained_only_on_labels_ended_before_their_segment(setup: tuple, pipeline) -> None:
    config, frame = setup
    embargo = 30 * 60 * 1_000_000_000
    starts = segment_bounds(frame, config.walkforward.segments)[1:-1]
    for samples, log in ((pipeline.meta_samples, pipeline.meta_log), (pipeline.hazard_samples, pipeline.hazard_log)):
        for start, row in zip(starts, log, strict=True):
            assert row["samples"] == int((samples["t1"] < start - embargo).sum())
    assert any(row["trained"] == "yes" for row in pipeline.hazard_log)
    for start, model in pipeline.hazard.entries:
        assert model.n_train == int((pipeline.hazard_samples["t1"] < start - embargo).sum())
    assert all(math.isnan(m["p"]) for m in pipeline.enhanced.system.open_minutes if m["ts"] < pipeline.hazard.entries[0][0])


def test_regime_study_on_the_long_4h_series(setup: tuple) -> None:
    """Layer A alone on 9.5 years of BTC-USD 4h: numbers recomputed with pandas from the states."""
    config, _ = setup
    study = config.regime_study
    assert study is not None
    out = regime_study(study, CONFIG.parent)
    bars = Catalog(REPO / "data" / "catalog").read("coinbase", "spot", "BTC-USD", "bars_4h").to_pandas()
    states, dirs, switches = regime_states(bars, study.params)
    fwd = np.log(bars["close"].shift(-6) / bars["close"])
    frame = pd.DataFrame({"state": states, "fwd": fwd, "payoff": dirs * fwd}).dropna()
    assert sum(v["bars"] for v in out["by_regime"].values()) == len(frame) == len(bars) - 6
    for state, part in frame.groupby("state"):
        row = out["by_regime"][state]
        assert row["mean_abs_fwd_bps"] == pytest.approx(part["fwd"].abs().mean() * 1e4, abs=1e-3)
        assert row["trend_payoff_bps"] == pytest.approx(part["payoff"].mean() * 1e4, abs=1e-3)
    assert out["switches"] == switches < out["switches_without_hysteresis"] / 1.5
    # on this data HAZARD is followed by larger moves than the other states (what layer A claims)
    hazard = out["by_regime"]["HAZARD"]["mean_abs_fwd_bps"]
    assert hazard > 1.2 * max(out["by_regime"][s]["mean_abs_fwd_bps"] for s in ("TREND", "RANGE"))


def test_models_json_refuses_a_strategy_whose_features_differ_from_training(tmp_path: Path) -> None:
    """``models.json`` records the training parameters; the strategy must compute its features the same way.

    The docs' paper snippet (``quantity``, ``models``, ``use_hazard`` only) runs the default ``vol_window``
    24 where the shipped config trained with 16: every meta-label volatility ratio would differ.
    """
    config = _config_copy(tmp_path, lookahead__cuts=0, regime_study=None)
    result = CliRunner().invoke(app, ["research", "run", str(config), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    models = str(tmp_path / "o" / "models.json")
    trained = yaml.safe_load(config.read_text())["params"]
    assert trained["vol_window"] != rh.RegimeHazardParams().vol_window
    with pytest.raises(ConfigError, match=r"models\.json were trained with other parameters.*vol_window: 24 \(trained "
                                          r"with 16\)"):
        rh.RegimeHazard("XRPETH.BINANCE", quantity=100, models=models, use_hazard=True)
    with pytest.raises(ConfigError, match=r"flow_window: 20 \(trained with 30\)"):
        rh.RegimeHazard("XRPETH.BINANCE", models=models, **{**trained, "flow_window": 20})
    # the training parameters load, with other thresholds (they act on the probabilities, not the features)
    strategy = rh.RegimeHazard("XRPETH.BINANCE", models=models,
                               **{**trained, "meta_threshold": 0.7, "exit_threshold": 0.8, "block_threshold": 0.9})
    assert strategy.system.meta is not None and strategy.system.hazard is not None


# ---------------------------------------------------------------------------- entry and regime buckets

_S, _M = 1_000_000_000, 60_000_000_000
_T0 = 888_889 * 1800 * _S  # a 30-minute boundary


def _feed(system: rh.RegimeHazardSystem, start: int, stop: int, *, lose_after: int | None = None,
          until: int | None = None) -> None:
    """A trade every 10 s from ``start`` to ``stop`` (inclusive); with ``lose_after``, the trades after it up to
    ``until`` are lost for good (the system told so at the next trade, as a daemon's TradesMissed)."""
    rng = np.random.default_rng(3)
    price = 100.0
    for ts in range(start, stop + 1, 10 * _S):
        if lose_after is not None and until is not None and lose_after < ts <= until:
            continue
        if lose_after is not None and until is not None and ts > until and system.builder_ts <= lose_after:
            system.lose(until)
        price *= math.exp(rng.normal(0.0, 1e-3))
        system.on_trade(ts, price, 1.0, 1)


def test_a_base_bar_lost_inside_a_regime_bucket_leaves_that_bucket_without_a_bar() -> None:
    # trades every 10 s for 150 min; those after 40:00 up to 42:05 are lost: the base bars of 40..41, 41..42 and
    # 42..43 are not built, so the 5-minute bucket 40..45 and the 30-minute bucket 30..60 have no bar; every other
    # one has
    system = rh.RegimeHazardSystem(rh.RegimeHazardParams())
    _feed(system, _T0, _T0 + 150 * _M, lose_after=_T0 + 40 * _M, until=_T0 + 42 * _M + 5 * _S)
    assert [b[0] for b in system.bars if _T0 + 39 * _M < b[0] < _T0 + 45 * _M] == [_T0 + m * _M for m in (40, 44)]
    assert [r[0] for r in system.regimes] == [_T0 + m * _M for m in (30, 90, 120, 150)]
    assert system._entry_bars == 30 - 1


@pytest.mark.parametrize(("start", "mid_stream", "first_entry", "first_regime"), [
    (7 * _M + 30 * _S, False, 15, 60),  # research from mid-bucket data: buckets 5..10 and 0..30 are partial
    (7 * _M, False, 15, 60),  # a whole first base bar does not make its buckets whole
    (11 * _S, False, 5, 30),  # data starting in the buckets' first base bar: kept (as the first base bar)
    (5 * _M + 500_000_000, True, 15, 60),  # a daemon joining mid-bar drops that base bar, hence its buckets
    (5 * _M, True, 10, 60),  # a daemon joining at a bucket's first trade
])
def test_entry_and_regime_buckets_starting_before_the_first_trade_give_no_bar(
        start: int, mid_stream: bool, first_entry: int, first_regime: int) -> None:
    system = rh.RegimeHazardSystem(rh.RegimeHazardParams())
    if mid_stream:
        system.join_mid_stream()
    _feed(system, _T0 + start, _T0 + 65 * _M + 10 * _S)
    assert [r[0] for r in system.regimes] == [_T0 + m * _M for m in range(first_regime, 61, 30)]
    assert system._entry_bars == (65 - first_entry) // 5 + 1


def test_the_first_hours_move_from_the_starting_capital_counts_in_the_hourly_sharpe() -> None:
    """A trade opened in the first hour: its +1 % by that hour's end is the first hourly return, not dropped."""
    hour, minute = 3_600_000_000_000, 60_000_000_000
    day = 1_570_752_000_000_000_000  # 2019-10-11 00:00 UTC
    stamps = [day + 10 * minute, day + 50 * minute, day + hour + 30 * minute, day + 2 * hour + 20 * minute]
    equity = pd.Series([-0.002, 0.01, 0.03, 0.02], index=stamps, name="equity")
    trades = pd.DataFrame({"pnl": [0.02], "hold_min": [140.0], "exit": ["take_profit"]})
    # hourly closes 1.01, 1.03, 1.02 after a start at 1: returns +1 %, 1.03/1.01 - 1, 1.02/1.03 - 1
    rets = np.array([0.01, 1.03 / 1.01 - 1.0, 1.02 / 1.03 - 1.0])
    expected = rets.mean() / rets.std(ddof=1) * math.sqrt(24 * 365)
    assert _metrics(trades, equity)["sharpe_hourly_annualised"] == pytest.approx(expected, rel=1e-6)


def test_a_candidate_whose_label_is_incomplete_at_the_data_end_is_no_meta_sample(setup: tuple) -> None:
    """The trades cut at the last candidate's: its triple barrier has two base bars of data and its vertical barrier
    lies an hour (max_hold_bars) past the end; its return, cut at the last close, was a meta-label (y = 0) counted in
    meta_samples and meta_positive_rate, where research walkforward drops such labels."""
    config, frame = setup
    full = simulate(frame, config.params, config.costs)
    last = full.system.candidates[-1]
    cut = simulate(frame[frame["ts_event"] <= last["ts"]].reset_index(drop=True), config.params, config.costs)
    assert cut.system.candidates[-1]["ts"] == last["ts"]
    assert last["ts"] + config.params.max_hold_bars * cut.system.entry_ns > cut.system.bars[-1][0]
    samples = _meta_samples(cut, config.params, config.costs)
    before = _meta_samples(full, config.params, config.costs)
    assert samples["t0"].tolist() == before.loc[before["t0"] < last["ts"], "t0"].tolist()


def test_a_purged_fold_left_without_training_samples_names_the_model_and_the_keys() -> None:
    """Twelve samples whose hour-long labels overlap all the others: the purge leaves fold 0 nothing to train on.
    The error said only 'PurgedKFold: fold 0 has no training samples left ...; lower the embargo or use more samples'."""
    minute = 60_000_000_000
    t0 = np.arange(12, dtype=np.int64) * minute
    samples = pd.DataFrame({"t0": t0, "t1": t0 + 60 * minute, "y": [0, 1] * 6,
                            **{name: np.arange(12.0) * (k + 1) for k, name in enumerate(META_FEATURES)}})
    config = RegimeHazardConfig.model_validate({"system": "regime_hazard", "data": {"trades": "t.csv"},
                                                "walkforward": {"min_samples": 10, "folds": 4, "embargo": "1m"}})
    with pytest.raises(ConfigError) as info:
        _schedule("meta-label", samples, META_FEATURES, [200 * minute], config.walkforward)
    message = str(info.value)
    assert message.startswith("walkforward: meta-label models: the model valid from 1970-01-01T03:20:00Z (12 samples): "
                              "PurgedKFold: fold 0 has no training samples left")
    assert message.endswith("raise walkforward.min_samples 10 (a segment with fewer samples keeps the previous model), "
                            "or lower walkforward.folds 4 or walkforward.embargo 1m")
