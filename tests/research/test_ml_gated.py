"""The ML-gated system: gates, edge model, live == precomputed, no lookahead, determinism, trade log, CLI."""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import yaml
from loguru import logger
from typer.testing import CliRunner

from tradebus.cli import app
from tradebus.config import InstrumentConfig
from tradebus.data.catalog import Catalog
from tradebus.engine.instrument import InstrumentKind
from tradebus.engine.kernel import EquitySample, FillRecord, RunResult
from tradebus.errors import ConfigError
from tradebus.execution.config import VenueConfig
from tradebus.research.dataset import load_events
from tradebus.research.edge import HorizonEdge, calibrate_edge, combined_target, fit_edge, tune_edge
from tradebus.research.edge_walkforward import TrainedEdges, run_edges, segment_table, train_segments
from tradebus.research.lookahead import SourceFrame, Trace, detect_lookahead
from tradebus.research.ml_gated import load_ml_gated_config, out_of_sample_run, run_system
from tradebus.research.splitters import PurgedKFold
from tradebus.reports.metrics import compute_metrics
from tradebus.research.tradelog import trade_log, trade_summary
from tradebus.research.edge_strategy import PrecomputedEdges
from tradebus.strategies.gates import EdgeGates, GatesConfig

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "systems" / "ml_gated.yaml"
CATALOG = REPO / "data" / "catalog"
DATASET = "freqtrade/spot/ETH-BTC/bars_5m"
BAR = 300_000_000_000

SPECS = [
    {"name": "r1", "kind": "log_ret", "input": "close"},
    {"name": "r6", "kind": "log_ret", "params": {"lag": 6}, "input": "close"},
    {"name": "vol", "kind": "ewm_std", "params": {"span": 48}, "input": "r1"},
    {"name": "rsi", "kind": "rsi", "params": {"window": 14}, "input": "close"},
    {"name": "bb", "kind": "bollinger", "params": {"window": 20, "k": 2}, "input": "close"},
    {"name": "atr", "kind": "atr", "params": {"window": 14}},
]
COLUMNS = ["r1", "r6", "vol", "rsi", "bb.pctb"]
WEIGHTS = {1: 0.25, 3: 0.25, 6: 0.5}
INSTRUMENT = InstrumentConfig(venue="FREQTRADE", symbol="ETH-BTC", tick_size=1e-6, lot_size=0.001, taker_fee=0.0003,
                              maker_fee=0.0003, margin=True).to_instrument()
VENUE = VenueConfig(fill_on="bars", slippage_bps=0.5)
# loose gates: the small models of the tests must trade
STRATEGY: dict[str, Any] = {
    "features": SPECS,
    "gates": {"warmup": {"bars": 50, "vol_floor_bps": 1.0}, "cost": {"round_trip_bps": 0.5},
              "zscore": {"window": 100, "threshold": 1.0}, "persistence": {"k": 2}},
    "exits": {"stop_atr": 1.5, "take_atr": 2.0, "max_hold_bars": 6, "cooldown_bars": 2},
    "sizing": {"base_weight": 0.2, "edge_scale_bps": 2.0, "max_weight": 0.5},
}


def _bars(rows: int = 1600) -> pd.DataFrame:
    return load_events(CATALOG, DATASET)[1].iloc[:rows].reset_index(drop=True)


def _train(bars: pd.DataFrame, **kwargs: Any) -> TrainedEdges:
    options: dict[str, Any] = {"min_train": 800, "retrain_every": 400, "params": {"n_estimators": 15, "max_depth": 2},
                               "cv_splits": 3, "embargo": 6, "calibrate": False}
    options.update(kwargs)
    weights = options.pop("weights", WEIGHTS)
    return train_segments(bars, SPECS, COLUMNS, weights, **options)


# ---------------------------------------------------------------------------- gates


def _only(gate: str, **params: Any) -> GatesConfig:
    """Every gate off except ``gate`` (with ``params``)."""
    off = {name: {"enabled": False} for name in ("warmup", "cost", "zscore", "quantile", "persistence")}
    off[gate] = {"enabled": True, **params}
    return GatesConfig.model_validate(off)


def _feed(config: GatesConfig, edges: list[float], vol: float = 10.0) -> list[tuple[int, str, str]]:
    gates = EdgeGates(config)
    return [gates.update(e, vol) for e in edges]


def test_every_gate_off_lets_any_nonzero_edge_through() -> None:
    off = GatesConfig.model_validate({name: {"enabled": False} for name in
                                      ("warmup", "cost", "zscore", "quantile", "persistence")})
    out = _feed(off, [0.1, -0.2, float("nan"), 0.0])
    assert [o[0] for o in out] == [1, -1, 0, 0]
    assert [o[1] for o in out] == ["pass", "pass", "edge", "edge"]


def test_cost_gate_blocks_an_edge_below_the_round_trip_cost() -> None:
    out = _feed(_only("cost", round_trip_bps=7.0), [6.9, 7.0, 7.1, -8.0])
    assert [o[:2] for o in out] == [(0, "cost"), (0, "cost"), (1, "pass"), (-1, "pass")]


def test_warmup_and_volatility_floor() -> None:
    out = _feed(_only("warmup", bars=3, vol_floor_bps=5.0), [1.0] * 5)
    assert [o[1] for o in out] == ["warmup"] * 3 + ["pass"] * 2
    gates = EdgeGates(_only("warmup", bars=0, vol_floor_bps=5.0))
    assert gates.update(1.0, 4.99)[1] == "vol"
    assert gates.update(1.0, float("nan"))[1] == "vol"
    assert gates.update(1.0, 5.0)[1] == "pass"


def test_zscore_gate_against_a_hand_computed_zscore() -> None:
    history = [1.0, -2.0, 0.5, 3.0, -1.0]
    gates = EdgeGates(_only("zscore", window=5, threshold=1.5))
    for e in history:
        assert gates.update(e, 10.0)[1] == "zscore"  # the window fills first
    z = (4.0 - statistics.mean(history)) / statistics.stdev(history)
    direction, gate, _ = gates.update(4.0, 10.0)
    assert gates.z == pytest.approx(z, rel=1e-12)
    assert (direction, gate) == ((1, "pass") if z > 1.5 else (0, "zscore"))
    # a positive edge below the window mean has a negative z: no long entry
    assert gates.update(0.1, 10.0)[:2] == (0, "zscore")
    # a short needs z below -threshold
    assert gates.update(-6.0, 10.0)[:2] == (-1, "pass")


def test_quantile_gate_needs_the_recent_tail() -> None:
    history = [float(v) for v in range(1, 11)]  # 1..10; quantiles 0.1 -> 1.9, 0.9 -> 9.1
    gates = EdgeGates(_only("quantile", window=10, q=0.1))
    for e in history:
        gates.update(e, 10.0)
    assert gates.update(9.2, 10.0)[:2] == (1, "pass")
    assert gates.update(5.0, 10.0)[:2] == (0, "quantile")  # window now 2..10, 9.2: 0.9 quantile ~ 9.2
    gates = EdgeGates(_only("quantile", window=10, q=0.1))
    for e in [-v for v in history]:
        gates.update(e, 10.0)
    assert gates.update(-9.5, 10.0)[:2] == (-1, "pass")
    assert gates.update(-3.0, 10.0)[:2] == (0, "quantile")


def test_persistence_vote_buffer() -> None:
    out = _feed(_only("persistence", k=3), [1.0, 1.0, -1.0, 1.0, 1.0, 1.0])
    assert [o[0] for o in out] == [0, 0, 0, 0, 0, 1]
    out = _feed(_only("persistence", k=3, votes=2), [1.0, -1.0, 1.0, -1.0, -1.0])
    assert [o[0] for o in out] == [0, 0, 1, -1, -1]  # 2 of the last 3 signs agree
    with pytest.raises(ValueError, match="votes"):
        GatesConfig.model_validate({"persistence": {"k": 2, "votes": 3}})


@pytest.mark.parametrize(("gate", "blocking"), [
    ("cost", {"round_trip_bps": 1e6}),
    ("zscore", {"window": 50, "threshold": 1e6}),
    ("quantile", {"window": 50, "q": 1e-9}),
    ("warmup", {"bars": 10_000}),
    ("persistence", {"k": 400}),
])
def test_each_gate_gates_the_strategy_in_a_run(gate: str, blocking: dict[str, Any]) -> None:
    bars = _bars(600)
    ts = bars["ts_event"].to_numpy()
    edges = 20.0 * np.sin(np.arange(len(ts)) / 7.0)  # a wave: both directions, every size
    params = {**STRATEGY, "gates": {name: {"enabled": False} for name in
                                    ("warmup", "cost", "zscore", "quantile", "persistence")}}
    _, open_run = run_edges(bars, INSTRUMENT, params, PrecomputedEdges(ts, edges), venue=VENUE, initial_cash=10.0)
    assert len(open_run.entries) > 5
    params["gates"] = {**params["gates"], gate: {"enabled": True, **blocking}}
    _, gated = run_edges(bars, INSTRUMENT, params, PrecomputedEdges(ts, edges), venue=VENUE, initial_cash=10.0)
    assert gated.entries == []
    assert gated.gate_counts[gate] > 0


@pytest.mark.parametrize(("min_notional", "trades"), [(1.0, True), (50.0, False)])
def test_the_minimum_notional_counts_the_contract_size(min_notional: float, trades: bool) -> None:
    """In contracts of 0.01, entries are worth 2-5 (the quote asset): above a minimum of 1, below one of 50.

    Counted without the contract size they were worth 100 times that, and cleared 50.
    """
    contract_size = 0.01
    bars = _bars(600)
    ts = bars["ts_event"].to_numpy()
    edges = 20.0 * np.sin(np.arange(len(ts)) / 7.0)
    params = {**STRATEGY, "gates": {name: {"enabled": False} for name in
                                    ("warmup", "cost", "zscore", "quantile", "persistence")},
              "sizing": {**STRATEGY["sizing"], "min_notional": min_notional}}  # fmt: skip
    instrument = msgspec.structs.replace(INSTRUMENT, kind=InstrumentKind.PERPETUAL, contract_size=contract_size)
    _, strategy = run_edges(bars, instrument, params, PrecomputedEdges(ts, edges), venue=VENUE, initial_cash=10.0)
    assert bool(strategy.entries) is trades, strategy.entries[:3]


def test_exits_are_stop_take_profit_and_timed_with_cooldown() -> None:
    bars = _bars(1500)
    ts = bars["ts_event"].to_numpy()
    edges = 20.0 * np.sin(np.arange(len(ts)) / 5.0)
    params = {**STRATEGY, "gates": {"warmup": {"bars": 20}, "cost": {"enabled": False},
                                    "zscore": {"enabled": False}, "persistence": {"enabled": False}}}
    result, strategy = run_edges(bars, INSTRUMENT, params, PrecomputedEdges(ts, edges), venue=VENUE, initial_cash=10.0)
    log = trade_log(result.fills, BAR)
    assert set(log["exit_reason"]) == {"stop", "take_profit", "timed"}
    # timed exit: decided after 6 bars past the fill bar, filled at the next bar's open
    assert log.loc[log["exit_reason"] == "timed", "hold_bars"].max() <= 7.0
    # cooldown: no entry in the 2 bars after an exit (the exit bar counts)
    exits = log["exit_ns"].to_numpy()
    entries = np.array([e[0] for e in strategy.entries])
    for x in exits:
        assert not ((entries >= x) & (entries < x + BAR)).any()
    # the stop is never hit in the bar the entry filled in: every trip lasts at least one bar
    assert (log["hold_bars"] >= 1.0).all()


# ---------------------------------------------------------------------------- edge model


def test_calibration_recovers_a_known_line_and_floors_a_negative_slope() -> None:
    x = np.linspace(-3.0, 3.0, 50)
    model = HorizonEdge({1: None}, {1: 1.0})
    fit = calibrate_edge(model, x, 1.0 + 2.0 * x)
    assert fit["scale"] == pytest.approx(2.0) and fit["offset"] == pytest.approx(1.0)
    fit = calibrate_edge(model, x, 5.0 - 2.0 * x)
    assert fit["scale"] == 0.0 and fit["offset"] == pytest.approx(5.0)


def test_a_flat_edge_is_blocked_by_the_zscore_gate_and_by_the_cost_gate_only_within_the_round_trip() -> None:
    """edge.py said no gate passes the flat edge of a model without skill; the cost, quantile and persistence
    gates do (a 12 bps offset against a 7 bps round trip), only the z-score gate always blocks it."""
    x = np.linspace(-3.0, 3.0, 50)
    model = HorizonEdge({1: None}, {1: 1.0})
    fit = calibrate_edge(model, x, 12.0 - 2.0 * x)  # a negative out-of-fold slope: floored, the edge is flat
    assert fit["scale"] == 0.0 and fit["offset"] == pytest.approx(12.0)
    for flat in (fit["offset"], 3.3, -0.1):  # 3.3 x 20: the window's mean is 3.3 but for rounding
        edges = [flat] * 60
        zscore = _feed(_only("zscore", window=20, threshold=1.0), edges)
        assert {o[:2] for o in zscore} == {(0, "zscore")}
        cost = {o[:2] for o in _feed(_only("cost", round_trip_bps=7.0), edges)}
        assert cost == ({(1 if flat > 0 else -1, "pass")} if abs(flat) > 7.0 else {(0, "cost")})
        quantile = [o[:2] for o in _feed(_only("quantile", window=20, q=0.1), edges)]
        assert quantile[20:] == [(1 if flat > 0 else -1, "pass")] * 40
        assert {o[:2] for o in _feed(_only("persistence", k=3), edges)[2:]} == {(1 if flat > 0 else -1, "pass")}
    # the defaults (z-score on, threshold 1.5) never pass it
    assert {o[1] for o in _feed(GatesConfig(), [fit["offset"]] * 400)} <= {"zscore", "warmup", "cost", "persistence"}
    assert all(o[0] == 0 for o in _feed(GatesConfig(), [fit["offset"]] * 400))


def test_combined_target_and_edge_weights() -> None:
    fwd = {1: np.array([1.0, 2.0]), 3: np.array([10.0, np.nan])}
    out = combined_target(fwd, {1: 0.5, 3: 0.25})
    assert out[0] == 0.5 + 2.5 and math.isnan(out[1])
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    y1, y3 = X[:, 0] * 4.0, -X[:, 1] * 2.0
    edge = fit_edge(X, {1: y1, 3: y3}, {1: 0.5, 3: 0.5}, {"n_estimators": 30})
    alone = fit_edge(X, {1: y1}, {1: 1.0}, {"n_estimators": 30}).predict(X)
    other = fit_edge(X, {3: y3}, {3: 1.0}, {"n_estimators": 30}).predict(X)
    np.testing.assert_allclose(edge.predict(X), 0.5 * alone + 0.5 * other, rtol=1e-12)


def test_tuning_picks_the_best_purged_oof_ic() -> None:
    rng = np.random.default_rng(1)
    n = 400
    X = rng.normal(size=(n, 2))
    y = X[:, 0] * 3.0 + rng.normal(size=n)
    t = np.arange(n, dtype=np.int64)
    cv = PurgedKFold(3, t0=t, t1=t + 1)
    result = tune_edge(X, {1: y}, {1: 1.0}, {"max_depth": [1, 2], "n_estimators": [1, 40]}, cv)
    assert len(result.scores) == 4
    best = max(result.scores, key=lambda s: s["oof_ic"])
    assert {k: result.params[k] for k in ("max_depth", "n_estimators")} == {
        "max_depth": best["max_depth"], "n_estimators": best["n_estimators"]}
    assert result.params["n_estimators"] == 40  # one tree of a noisy target ranks worse than forty


# ---------------------------------------------------------------------------- runs


def _trace(bars: pd.DataFrame, *, leak: bool = False) -> Trace:
    trained = _train(bars)
    edges = trained.edges
    if leak:  # each bar sees the next bar's edge
        edges = np.append(edges[1:], np.nan)
    result, strategy = run_edges(bars, INSTRUMENT, STRATEGY, PrecomputedEdges(trained.ts, edges), venue=VENUE,
                                 initial_cash=10.0)
    trace = Trace()
    for ts, value in strategy.outputs:
        trace.add("output", ts, "edge", [value])
    for order in result.orders:
        trace.add("decision", order.ts_created, "order", [str(order.side), order.quantity, str(order.order_type),
                                                          order.price, order.trigger_price])
    for fill in result.fills:
        trace.add("decision", fill.ts_event, "fill", [fill.side, fill.quantity, fill.price])
    trace.records.sort(key=lambda r: (r[1], r[0]))
    return trace


def test_live_predictions_give_the_same_decisions_as_precomputed_ones() -> None:
    bars = _bars()
    trained = _train(bars, prune_keep=3, calibrate=True)
    assert {len(s.step.columns) for s in trained.segments} == {3}
    pre, pre_strategy = run_edges(bars, INSTRUMENT, STRATEGY, trained.precomputed_source(), venue=VENUE,
                                  initial_cash=10.0)
    live, live_strategy = run_edges(bars, INSTRUMENT, STRATEGY, trained.live_source(), venue=VENUE, initial_cash=10.0)
    assert len(pre_strategy.entries) > 2
    live_out, pre_out = np.array(live_strategy.outputs), np.array(pre_strategy.outputs)
    assert np.isfinite(pre_out[:, 1]).sum() == 800
    np.testing.assert_array_equal(live_out, pre_out)  # exact: same floats, NaN where the other has NaN
    assert live_strategy.entries == pre_strategy.entries
    assert [(o.ts_created, o.side, o.quantity, o.price, o.trigger_price) for o in live.orders] == [
        (o.ts_created, o.side, o.quantity, o.price, o.trigger_price) for o in pre.orders]
    assert live.fills == pre.fills


def test_a_saved_model_step_drives_the_strategy_from_its_params(tmp_path: Path) -> None:
    bars = _bars(1300)
    trained = _train(bars)
    last = trained.segments[-1]
    path = last.step.save(tmp_path / "model.joblib")
    _, from_file = run_edges(bars, INSTRUMENT, {**STRATEGY, "model": str(path)}, None, venue=VENUE, initial_cash=10.0)
    edges = np.array([v for _, v in from_file.outputs])
    np.testing.assert_array_equal(edges[last.start:], trained.edges[last.start:])
    with pytest.raises(ConfigError, match="edge source or params.model"):
        run_edges(bars, INSTRUMENT, STRATEGY, None, venue=VENUE)


def test_the_pipeline_has_no_lookahead_and_the_detector_sees_a_leak() -> None:
    bars = _bars(1400)
    source = [SourceFrame(INSTRUMENT.instrument_id, "bars", bars.assign(ts_init=bars["ts_event"]))]
    ts = bars["ts_event"].to_numpy()
    cuts = [int(ts[900]), int(ts[1150]), int(ts[1300])]  # inside the traded segments

    def runner(leak: bool):
        return lambda frames: _trace(frames[0].frame, leak=leak)

    clean = detect_lookahead(source, runner(False), cuts=cuts, seed=3)
    assert clean.ok, clean.violations[:3]
    assert clean.records_checked > 1000
    leaky = detect_lookahead(source, runner(True), cuts=cuts, seed=3)
    assert not leaky.ok
    assert {v["kind"] for v in leaky.violations} >= {"output"}


def test_a_label_leaking_into_the_model_features_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """A feature column that is the 1-bar forward return (the label: a user adding the labels frame's column to the
    features) makes every edge after training depend on the next bar."""
    import tradebus.research.edge_walkforward as walkforward
    from tradebus.research.labels import forward_returns

    def with_label(bars: pd.DataFrame, specs: Any, event: str) -> pd.DataFrame:
        features = compute(bars, specs, event=event)
        features["leak"] = forward_returns(bars, [1], kind="bps")["fwd_1"].to_numpy()
        return features

    compute = walkforward.compute_features
    monkeypatch.setattr(walkforward, "compute_features", with_label)
    bars = _bars(1400)
    source = [SourceFrame(INSTRUMENT.instrument_id, "bars", bars.assign(ts_init=bars["ts_event"]))]
    ts = bars["ts_event"].to_numpy()

    def runner(frames: list[SourceFrame]) -> Trace:
        trained = train_segments(frames[0].frame, SPECS, [*COLUMNS, "leak"], WEIGHTS, min_train=800,
                                 retrain_every=400, params={"n_estimators": 15, "max_depth": 2}, cv_splits=3,
                                 embargo=6, calibrate=False)
        trace = Trace()
        for t, edge in zip(trained.ts, trained.edges, strict=True):
            trace.add("output", int(t), "edge", [float(edge)])
        return trace

    report = detect_lookahead(source, runner, cuts=[int(ts[900]), int(ts[1150]), int(ts[1300])], seed=3)
    assert not report.ok and {v["kind"] for v in report.violations} == {"output"}
    assert all(v["ts"] <= v["cut"] for v in report.violations)


def test_training_rows_are_purged_before_each_segment() -> None:
    bars = _bars(1400)
    trained = _train(bars)
    ts = trained.ts
    for seg in trained.segments:
        # the longest horizon (6 bars) must end before the segment starts: the last 6 bars are out
        assert seg.train_rows <= seg.start - 6
    # changing bars at or after a segment start leaves that segment's model unchanged
    shocked = bars.copy()
    later = np.arange(len(bars)) >= trained.segments[1].start
    for col in ("open", "high", "low", "close"):
        shocked.loc[later, col] = shocked.loc[later, col] * 1.2
    again = _train(shocked)
    a, b = trained.segments[1].start, trained.segments[1].end
    np.testing.assert_array_equal(trained.edges[:a], again.edges[:a])
    assert not np.array_equal(trained.edges[a:b], again.edges[a:b], equal_nan=True)
    assert ts[a] == again.ts[a]


def test_a_calibration_fold_the_purge_and_embargo_leave_one_training_row_is_refused_not_fitted() -> None:
    """52 bars before the segment, labels 12 bars long: 40 training rows, the 40 that 4 folds need; with an
    embargo of 7 rows, fold 1 (rows 10-19) keeps only row 39 (purging takes 0-9 and 20-31, the embargo 32-38).
    It was fitted on that one row and predicted its fold's edge from it, silently."""
    with pytest.raises(ConfigError) as info:
        _train(_bars(1000), train_window=52, weights={12: 1.0}, cv_splits=4, embargo=7, calibrate=True)
    assert str(info.value) == (
        "edge walk-forward: segment 0 (bar 800, 2018-01-12T23:40:00+00:00), 40 training rows: PurgedKFold: fold 1 "
        "has only 1 training sample left, fewer than the 10 asked for: of 40 samples 10 are tested and the other "
        "29 are purged or embargoed (embargo 7 samples); lower the embargo or use more samples")


def test_trade_log_by_exit_reason_hand_derived() -> None:
    def fill(ts: int, side: str, qty: float, price: float, fee: float, reason: str) -> FillRecord:
        return FillRecord(ts, "X.V", side, qty, price, fee, "TAKER", f"o{ts}", "s", str(ts), reason)

    fills = [
        fill(1 * BAR, "BUY", 2.0, 100.0, 0.2, "edge"), fill(4 * BAR, "SELL", 2.0, 110.0, 0.22, "bracket take-profit"),
        fill(6 * BAR, "SELL", 1.0, 50.0, 0.05, "edge"), fill(7 * BAR, "BUY", 1.0, 52.0, 0.05, "bracket stop-loss"),
        fill(9 * BAR, "BUY", 1.0, 10.0, 0.0, "edge"), fill(21 * BAR, "SELL", 1.0, 10.5, 0.0, "timed exit"),
    ]
    log = trade_log(fills, BAR)
    assert list(log["exit_reason"]) == ["take_profit", "stop", "timed"]
    assert list(log["side"]) == ["long", "short", "long"]
    np.testing.assert_allclose(log["net_pnl"], [20.0 - 0.42, -2.0 - 0.1, 0.5])
    assert list(log["hold_bars"]) == [3.0, 1.0, 12.0]
    summary = trade_summary(log)
    assert summary["by_exit_reason"]["stop"] == {"trades": 1, "net_pnl": pytest.approx(-2.1), "mean": pytest.approx(-2.1),
                                                 "win_rate": 0.0}
    assert summary["hold_bars"]["median"] == 3.0
    assert summary["tails"]["worst"][0] == pytest.approx(-2.1)
    assert summary["tails"]["worst_trade_share_of_losses"] == 1.0


def test_trade_log_exit_and_side_come_from_the_closing_fill_when_the_next_trip_opens_at_the_same_time() -> None:
    def fill(ts: int, side: str, price: float, reason: str) -> FillRecord:
        return FillRecord(ts, "X.V", side, 1.0, price, 0.0, "TAKER", f"o{ts}{side}", "s", f"{ts}{side}", reason)

    fills = [
        fill(1 * BAR, "BUY", 100.0, "edge"),
        fill(3 * BAR, "SELL", 95.0, "bracket stop-loss"), fill(3 * BAR, "BUY", 95.0, "edge"),  # stopped, re-entered
        fill(5 * BAR, "SELL", 99.0, "timed exit"),
        fill(6 * BAR, "SELL", 99.0, "edge"),
        fill(7 * BAR, "BUY", 97.0, "bracket take-profit"), fill(7 * BAR, "SELL", 97.0, "edge"),
        fill(8 * BAR, "BUY", 98.0, "timed exit"),
    ]
    log = trade_log(fills, BAR)
    assert list(log["exit_reason"]) == ["stop", "timed", "take_profit", "timed"]
    assert list(log["side"]) == ["long", "long", "short", "short"]
    np.testing.assert_allclose(log["net_pnl"], [-5.0, 4.0, 2.0, -1.0])
    assert list(log["entry_ns"]) == [1 * BAR, 3 * BAR, 6 * BAR, 7 * BAR]


# ---------------------------------------------------------------------------- system


def _small_config(tmp_path: Path, **edits: Any) -> Path:
    raw = yaml.safe_load(CONFIG.read_text())
    raw["data"]["catalog"] = str(CATALOG)
    raw["model"].update({"params": {"n_estimators": 10, "max_depth": 2}, "tune_grid": {"max_depth": [1, 2]},
                         "cv_splits": 2})
    raw["walkforward"].update({"min_train": 3500, "retrain_every": 900})
    raw["strategy"]["gates"]["cost"]["round_trip_bps"] = 0.5  # loose: the small model must trade
    raw["strategy"]["gates"]["zscore"]["threshold"] = 1.0
    for key, value in edits.items():
        raw[key] = value
    path = tmp_path / "ml_gated_small.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_a_system_run_is_byte_identical_twice(tmp_path: Path) -> None:
    config = load_ml_gated_config(_small_config(tmp_path))
    summary = run_system(config, tmp_path / "a")["summary"]
    run_system(config, tmp_path / "b")
    assert summary["round_trips"] > 5
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["edges.csv", "equity.csv", "model.joblib", "report.json", "report.md", "segments.csv",
                     "trades.csv"]
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    listed = re.search(r"writes\s+`runs/research/ml_gated/` \((.*?)\): a multi-horizon", readme, re.S)
    assert listed is not None and sorted(re.findall(r"`([\w.]+\.\w+)`", listed.group(1))) == names
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


DAY = 86_400_000_000_000


def _daily_run(closes: list[float], first_day: int) -> RunResult:
    """A run with one equity sample at noon of each day from ``first_day`` on, starting with 100."""
    noon = [(first_day + k) * DAY + DAY // 2 for k in range(len(closes))]
    equity = [EquitySample(ts=t, equity=e, cash=e, position_value=0.0, realized_pnl=0.0, unrealized_pnl=0.0,
                           fees_paid=0.0) for t, e in zip(noon, closes, strict=True)]
    return RunResult(instruments=("ETH-BTC.FREQTRADE",), initial_cash=100.0, start_ns=noon[0], end_ns=noon[-1],
                     first_event_ns=noon[0], last_event_ns=noon[-1], bars=len(closes), equity=equity)


def test_a_flat_training_warm_up_changes_no_out_of_sample_figure_hand_derived() -> None:
    returns = [0.01, -0.01, 0.02, 0.005]
    oos = [100.0 * math.prod(1.0 + r for r in returns[:k + 1]) for k in range(len(returns))]
    start = 7 * DAY + DAY // 2  # noon of day 7: 7 flat days of training before it
    run = _daily_run([100.0] * 7 + oos, 0)
    metrics = compute_metrics(out_of_sample_run(run, start, bars=4), min_annualised_days=1.0)
    mean, std = statistics.mean(returns), statistics.stdev(returns)
    assert metrics["start"] == "1970-01-08T12:00:00Z" and metrics["end"] == "1970-01-11T12:00:00Z"
    assert metrics["bars"] == 4 and metrics["initial_cash"] == 100.0
    assert metrics["sharpe"] == pytest.approx(mean / std * math.sqrt(365), rel=1e-12)
    assert metrics["annualised_volatility"] == pytest.approx(std * math.sqrt(365), rel=1e-12)
    downside = math.sqrt(0.01 ** 2 / 4)
    assert metrics["sortino"] == pytest.approx(mean / downside * math.sqrt(365), rel=1e-12)
    assert metrics["cagr"] == pytest.approx((oos[-1] / 100.0) ** (365 / 3) - 1.0, rel=1e-12)  # 3 days, not 10
    assert metrics["exposure"] == 0.0 and metrics["total_return"] == pytest.approx(oos[-1] / 100.0 - 1.0)
    # the same figures as a run that never had the warm-up
    alone = compute_metrics(_daily_run(oos, 7), min_annualised_days=1.0)
    assert (metrics["start"], metrics["end"]) == (alone["start"], alone["end"])
    for key in ("sharpe", "sortino", "annualised_volatility", "cagr", "calmar", "max_drawdown"):
        assert metrics[key] == pytest.approx(alone[key], rel=1e-12), key


def test_a_system_report_measures_the_out_of_sample_span_only(tmp_path: Path) -> None:
    config = load_ml_gated_config(_small_config(tmp_path))
    report = run_system(config, tmp_path / "run")
    bars = load_events(CATALOG, DATASET)[1]
    start = int(bars["ts_event"].iat[config.walkforward.min_train])
    summary, metrics = report["summary"], report["metrics"]
    assert summary["oos_start"] == metrics["start"] == pd.Timestamp(start, tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
    assert summary["oos_end"] == metrics["end"] == "2018-01-30T04:55:00Z"
    assert metrics["bars"] == summary["oos_bars"] == len(bars) - config.walkforward.min_train
    # hand-derived from equity.csv: the daily closes of the out-of-sample bars, the first against the equity
    # at the bar before them (the training bars hold no position: it is the initial cash)
    equity = pd.read_csv(tmp_path / "run" / "equity.csv")
    assert (equity.loc[equity["ts"] < start, "equity"] == config.initial_cash).all()
    oos = equity[equity["ts"] >= start]
    closes = oos.groupby(oos["ts"] // DAY)["equity"].last().to_numpy()
    daily = np.diff(np.concatenate(([config.initial_cash], closes))) / np.concatenate(([config.initial_cash],
                                                                                         closes[:-1]))
    assert summary["sharpe"] == pytest.approx(daily.mean() / daily.std(ddof=1) * math.sqrt(365), rel=1e-9)
    years = (int(bars["ts_event"].iat[-1]) - start) / (365 * DAY)
    assert metrics["cagr"] == pytest.approx((closes[-1] / config.initial_cash) ** (1 / years) - 1.0, rel=1e-9)
    assert f"({summary['oos_start']} -> {summary['oos_end']})" in (tmp_path / "run" / "report.md").read_text()


def test_bad_configs_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="model.colums"):
        bad = yaml.safe_load(CONFIG.read_text())
        bad["model"]["colums"] = ["r1"]
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump(bad))
        load_ml_gated_config(path)
    bad = yaml.safe_load(CONFIG.read_text())
    bad["strategy"]["gates"]["zscore"]["treshold"] = 2
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match=r"gates\.zscore\.treshold"):
        load_ml_gated_config(path)
    result = CliRunner().invoke(app, ["research", "run", str(path)])
    assert result.exit_code == 2 and "treshold" in result.output
    path.write_text("system: nope\n")
    result = CliRunner().invoke(app, ["research", "run", str(path)])
    assert result.exit_code == 2 and "ml_gated" in result.output
    result = CliRunner().invoke(app, ["research", "run", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2 and "missing.yaml" in result.output
    path.write_text("system: [ml_gated\n")
    result = CliRunner().invoke(app, ["research", "run", str(path)])
    assert result.exit_code == 2 and "not valid YAML" in result.output


def _edit(raw: dict[str, Any], where: str, value: Any) -> None:
    *keys, last = where.split(".")
    for key in keys:
        raw = raw[int(key)] if isinstance(raw, list) else raw[key]
    raw[last] = value


@pytest.mark.parametrize(("where", "value", "message"), [
    ("features.0.inptu", "close", "features: feature 'r1': invalid spec (inptu: "),
    ("features.0.kind", "nope", "features: feature 'r1' (kind 'nope'): unknown feature kind 'nope'"),
    ("model.columns", ["r1", "nope"], "model.columns: no feature column 'nope'; the features give ['r1', "),
    ("strategy.vol_feature", "vol_fast", "strategy.vol_feature: no feature column 'vol_fast'"),
    ("model.horizons", {0: 1.0}, "model.horizons.0.[key]: Input should be greater than 0"),
])
def test_features_columns_and_horizons_are_checked_at_load_naming_the_field(tmp_path: Path, where: str, value: Any,
                                                                             message: str) -> None:
    raw = yaml.safe_load(CONFIG.read_text())
    raw["data"]["catalog"] = str(tmp_path / "no_catalog")  # nothing is read before the config is checked
    _edit(raw, where, value)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as info:
        load_ml_gated_config(path)
    assert str(info.value).startswith(f"{path}: {message}")
    result = CliRunner().invoke(app, ["research", "run", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and message.split(":")[0] in result.output


def test_a_bad_strategy_key_is_named_by_its_path_in_the_file(tmp_path: Path) -> None:
    raw = yaml.safe_load(CONFIG.read_text())
    raw["strategy"]["exits"]["stop"] = 1.5
    raw["strategy"]["sizing"]["max_weight"] = -1
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as info:
        load_ml_gated_config(path)
    problems = str(info.value).removeprefix(f"{path}: ").split("; ")
    assert problems[0] == "strategy.exits.stop: unknown key (not allowed here), did you mean 'stop_atr'?"
    assert problems[1].startswith("strategy.sizing.max_weight: ")


@pytest.mark.parametrize(("key", "value", "message"), [
    ("features", [{"name": "atr", "kind": "atr"}, {"name": "vol", "kind": "ewm_std", "input": "close"}],
     "strategy.features: not a strategy key here: the strategy computes the top-level features:"),
    ("model", "model.joblib", "strategy.model: not a strategy key here: the system trains its model"),
    ("featurs", [], "strategy.featurs: unknown key (not allowed here)"),
    ("modl", "model.joblib", "strategy.modl: unknown key (not allowed here)"),
])
def test_a_strategy_key_the_system_sets_is_refused_and_never_suggested(tmp_path: Path, key: str, value: Any,
                                                                       message: str) -> None:
    """strategy.features silently replaced the strategy's features (not the model's) and strategy.model was
    ignored, and a misspelt strategy.featurs / modl was answered 'did you mean 'features' / 'model'?'."""
    raw = yaml.safe_load(CONFIG.read_text())
    raw["strategy"][key] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as info:
        load_ml_gated_config(path)
    assert str(info.value).startswith(f"{path}: {message}")
    assert "did you mean 'features'" not in str(info.value) and "did you mean 'model'" not in str(info.value)


@pytest.mark.parametrize(("section", "value", "message"), [
    ("params", {"n_estimators": 10, "max_dept": 2}, "model.params.max_dept: not a parameter of xgboost.XGBRegressor"),
    ("tune_grid", {"min_child_weigth": [1, 20]}, "model.tune_grid.min_child_weigth: not a parameter of xgboost"),
    ("params", {"random_state": 7}, "model.params.random_state: set by the model's 'seed'"),
])
def test_a_misspelt_xgboost_parameter_is_refused_not_ignored(tmp_path: Path, section: str, value: dict[str, Any],
                                                              message: str) -> None:
    raw = yaml.safe_load(CONFIG.read_text())
    raw["data"]["catalog"] = str(CATALOG)
    raw["model"][section] = value
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as info:
        load_ml_gated_config(path)
    assert str(info.value).startswith(f"{path}: {message}")
    raw["model"][section] = {"eta": 0.1, "lambda": 2.0} if section == "params" else {"eta": [0.05, 0.1]}
    path.write_text(yaml.safe_dump(raw))
    load_ml_gated_config(path)  # XGBoost's own names of the scikit-learn parameters are accepted


@pytest.mark.parametrize(("section", "value", "message"), [
    ("params", {"n_estimators": 10, "learning_rate": "abc"},
     "model.params: XGBoost refuses {'learning_rate': 'abc', 'n_estimators': 10}: Invalid Parameter format for "
     "learning_rate expect float but value='abc'"),
    ("tune_grid", {"max_depth": [-2, 3]}, "model.tune_grid.max_depth: XGBoost refuses "),
])
def test_an_xgboost_value_xgboost_refuses_is_a_config_error_not_a_traceback(tmp_path: Path, section: str,
                                                                            value: dict[str, Any], message: str) -> None:
    raw = yaml.safe_load(CONFIG.read_text())
    raw["data"]["catalog"] = str(CATALOG)
    raw["model"][section] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as info:
        load_ml_gated_config(path)
    assert str(info.value).startswith(f"{path}: {message}")
    assert "max_depth should be greater equal to 0" in str(info.value) or section == "params"


@pytest.mark.parametrize(("walkforward", "message"), [
    ({"min_train": 6000}, "walkforward.min_train: 6000 leaves no bar to trade: freqtrade/spot/ETH-BTC/bars_5m has "
                          "5760 bars"),
    ({"min_train": 5760}, "walkforward.min_train: 5760 leaves no bar to trade"),
    ({"train_window": 20}, "walkforward.min_train 2016, walkforward.train_window 20: only 8 training rows before bar "
                           "2016 (2018-01-17T05:00:00+00:00) (bars of the training window with every model column set "
                           "whose 12-bar label ends before it), fewer than the 40 that 4 purged folds need (10 a fold, "
                           "and each fold 10 training rows after its purge and embargo): raise either, or lower "
                           "model.cv_splits 4 or model.embargo 12"),
    ({"min_train": 30}, "walkforward.min_train 30, walkforward.train_window null: only 0 training rows before bar 30"),
])
def test_a_walkforward_the_data_cannot_satisfy_is_a_config_error_naming_file_and_key(
        tmp_path: Path, walkforward: dict[str, int], message: str) -> None:
    raw = yaml.safe_load(CONFIG.read_text())
    raw["data"]["catalog"] = str(CATALOG)
    raw["walkforward"].update(walkforward)
    path = tmp_path / "wf.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["research", "run", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert " ".join(result.output.split()).startswith(f"error: {path}: {message}")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_shipped_config_runs_from_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["research", "run", str(CONFIG), "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = yaml.safe_load((out / "report.json").read_text())  # JSON is YAML
    assert report["summary"]["segments"] == 5
    assert len(report["segments"]) == 5 and all("ic" in s for s in report["segments"])
    assert report["summary"]["round_trips"] == len(pd.read_csv(out / "trades.csv"))
    assert set(report["trades"]["by_exit_reason"]) <= {"stop", "take_profit", "timed"}
    # the saved model through the run-config path: the in-sample figures docs/systems/ml_gated.md quotes
    backtest = CliRunner().invoke(app, ["backtest", str(CONFIG.with_name("ml_gated_backtest.yaml")), "--out",
                                        str(tmp_path / "bt"), "--set", f"strategy.params.model={out / 'model.joblib'}"])
    assert backtest.exit_code == 0, backtest.output
    metrics = yaml.safe_load((tmp_path / "bt" / "metrics.json").read_text())
    doc = " ".join((REPO / "docs" / "systems" / "ml_gated.md").read_text(encoding="utf-8").split())
    quoted = re.search(r"\+([\d.]+) % from (\d+) round trips there against \+([\d.]+) % out of sample", doc)
    assert quoted is not None
    assert quoted.groups() == (f"{100 * metrics['total_return']:.1f}", str(metrics["round_trips"]),
                               f"{100 * report['summary']['total_return']:.1f}")
    # the results table and the figures around it, against the report and equity.csv
    s, m = report["summary"], report["metrics"]

    def signed(x: float, digits: int) -> str:
        return f"{x:+.{digits}f}".replace("-", "\u2212")

    def rate(x: float, digits: int) -> str:
        return f"{x:.{digits}f}".replace("-", "\u2212")

    by = report["trades"]["by_exit_reason"]
    rows = [f"| out-of-sample bars / segments | {s['oos_bars']:,} / {s['segments']} ",
            f"| PnL | {signed(s['pnl'], 3)} BTC on 10 BTC ({signed(100 * s['total_return'], 2)} %), fees "
            f"{s['fees_paid']:.3f} BTC |",
            f"| buy and hold over the same bars | {signed(100 * s['buy_and_hold_return'], 1)} % |",
            f"| max drawdown | {100 * s['max_drawdown']:.2f} % |",
            f"| Sharpe / CAGR (annualised, out-of-sample days) | {s['sharpe']:.2f} / {100 * m['cagr']:.0f} % |",
            f"| round trips | {s['round_trips']} ({by['take_profit']['trades']} take-profit "
            f"{signed(by['take_profit']['net_pnl'], 3)}, {by['stop']['trades']} stop {signed(by['stop']['net_pnl'], 3)}, "
            f"{by['timed']['trades']} timed {signed(by['timed']['net_pnl'], 3)} BTC) |",
            f"| mean segment rank IC / hit rate | {s['mean_ic']:.3f} / {s['mean_hit_rate']:.3f} (IC "
            + ", ".join(rate(seg["ic"], 2) for seg in report["segments"]) + ") |",
            f"Sharpe {s['sharpe']:.2f}, CAGR {100 * m['cagr']:.0f} %",
            "Twelve trades are far too few" if s["round_trips"] == 12 else "round trips changed: reword",
            f"segment 3's: {signed(report['segments'][3]['pnl'], 3)} BTC of the {signed(s['pnl'], 3)}"]
    scores = sorted(row["oof_ic"] for row in report["models"][0]["tuning"])
    rows.append(f"all four grid points negative ({rate(scores[-1], 3)} \u2026 {rate(scores[0], 3)})")
    offsets = [model["calibration"]["offset"] for model in report["models"]]
    scales = [model["calibration"]["scale"] for model in report["models"]]
    rows.append(f"offset ({signed(min(offsets), 2)} \u2026 {signed(max(offsets), 2)} bps)")
    rows.append(f"its scale is {min(scales):.2f} \u2026 {max(scales):.2f}")
    rows.append(f"blocks {100 * report['gate_counts']['cost'] / s['oos_bars']:.0f} % of the bars")
    # counting the training-only days: the whole equity curve, not rebased
    equity = pd.read_csv(out / "equity.csv")
    samples = [EquitySample(ts=int(t), equity=float(v), cash=float(v), position_value=0.0, realized_pnl=0.0,
                            unrealized_pnl=0.0, fees_paid=0.0) for t, v in zip(equity["ts"], equity["equity"], strict=True)]
    whole = RunResult(instruments=(report["instrument"],), initial_cash=10.0, start_ns=samples[0].ts,
                      end_ns=samples[-1].ts, first_event_ns=samples[0].ts, last_event_ns=samples[-1].ts,
                      bars=len(samples), equity=samples)
    counted = compute_metrics(whole, min_annualised_days=7.0)
    rows.append(f"gave a Sharpe of {counted['sharpe']:.2f} and a CAGR of {100 * counted['cagr']:.0f} %")
    missing = [row for row in rows if " ".join(row.split()) not in doc]
    assert not missing, missing


def test_precomputed_edges_of_bars_sharing_a_time_are_each_bars_own() -> None:
    """Pairs of bars share a time: the first bar of each pair was given the second's edge (a lookahead)."""
    bars = _bars(600)
    ts = bars["ts_event"].to_numpy()[::2].repeat(2)
    bars["ts_event"] = bars["ts_init"] = ts
    edges = 20.0 * np.sin(np.arange(len(ts)) / 7.0)
    params = {**STRATEGY, "gates": {name: {"enabled": False} for name in
                                    ("warmup", "cost", "zscore", "quantile", "persistence")}}
    source = PrecomputedEdges(ts, edges)
    for _ in range(2):  # a second run over the same source starts again from each time's first edge
        _, strategy = run_edges(bars, INSTRUMENT, params, source, venue=VENUE, initial_cash=10.0)
        assert [v for _, v in strategy.outputs] == edges.tolist()


def test_segments_of_bars_sharing_a_time_do_not_split_a_time_so_live_equals_precomputed() -> None:
    """Pairs of bars share a time: a start at bar 801 left bar 800 without a batch edge while the live
    model (switched by time) predicted it, and bar 1200 got segment 0's batch edge but segment 1's live one."""
    bars = _bars()
    ts = bars["ts_event"].to_numpy()[::2].repeat(2)
    bars["ts_event"] = bars["ts_init"] = ts
    trained = _train(bars, min_train=801)
    assert [(s.start, s.end) for s in trained.segments] == [(800, 1200), (1200, 1600)]
    assert ts[799] < ts[800] == ts[801] and ts[1199] < ts[1200] == ts[1201]
    _, pre = run_edges(bars, INSTRUMENT, STRATEGY, trained.precomputed_source(), venue=VENUE, initial_cash=10.0)
    _, live = run_edges(bars, INSTRUMENT, STRATEGY, trained.live_source(), venue=VENUE, initial_cash=10.0)
    live_out, pre_out = np.array(live.outputs), np.array(pre.outputs)
    assert np.isnan(pre_out[:800, 1]).all() and np.isfinite(pre_out[800:, 1]).all()
    np.testing.assert_array_equal(live_out, pre_out)
    assert live.entries == pre.entries


def _paired(bars: pd.DataFrame) -> pd.DataFrame:
    """``bars`` in pairs sharing a time (as threshold bars can), each bar's values kept."""
    ts = bars["ts_event"].to_numpy()[::2].repeat(2)[: len(bars)]
    return bars.assign(ts_event=ts, ts_init=ts)


def test_trade_log_counts_hold_bars_by_the_fills_bar_positions_hand_derived() -> None:
    def fill(ts: int, side: str, reason: str, trade_id: str) -> FillRecord:
        return FillRecord(ts, "X.V", side, 1.0, 100.0, 0.0, "TAKER", f"o{trade_id}", "s", trade_id, reason)

    # bars 0-1 at 1*BAR, 2-3 at 2*BAR, 4-5 at 3*BAR ...: entries on bars 1 and 5, exits on bars 2 and 12
    fills = [fill(1 * BAR, "BUY", "edge", "a"), fill(2 * BAR, "SELL", "bracket stop-loss", "b"),
             fill(3 * BAR, "BUY", "edge", "c"), fill(7 * BAR, "SELL", "timed exit", "d")]
    log = trade_log(fills, fill_bars={"a": 1, "b": 2, "c": 5, "d": 12})
    assert list(log["hold_bars"]) == [1.0, 7.0]
    assert trade_summary(log)["hold_bars"] == {"mean": 4.0, "median": 4.0, "max": 7.0}


def test_hold_bars_of_bars_sharing_a_time_are_those_of_the_same_bars_at_distinct_times() -> None:
    """Pairs of bars share a time: the median gap was 0 and every trade's hold_bars NaN."""
    bars = _bars(1200)
    paired = _paired(bars)
    edges = 20.0 * np.sin(np.arange(len(bars)) / 5.0)
    params = {**STRATEGY, "gates": {"warmup": {"bars": 20}, "cost": {"enabled": False},
                                    "zscore": {"enabled": False}, "persistence": {"enabled": False}}}
    result, strategy = run_edges(bars, INSTRUMENT, params, PrecomputedEdges(bars["ts_event"].to_numpy(), edges),
                                 venue=VENUE, initial_cash=10.0)
    result_p, strategy_p = run_edges(paired, INSTRUMENT, params, PrecomputedEdges(paired["ts_event"].to_numpy(), edges),
                                     venue=VENUE, initial_cash=10.0)
    same = [(f.side, f.quantity, f.price, f.reason) for f in result.fills]
    assert same == [(f.side, f.quantity, f.price, f.reason) for f in result_p.fills]
    log = trade_log(result.fills, BAR)  # regular 5m bars: the time held in bars is the count
    log_p = trade_log(result_p.fills, fill_bars=strategy_p.fill_bars)
    assert len(log) > 10 and set(log_p["exit_reason"]) == {"stop", "take_profit", "timed"}
    np.testing.assert_array_equal(log_p["hold_bars"], log["hold_bars"])
    np.testing.assert_array_equal(trade_log(result.fills, fill_bars=strategy.fill_bars)["hold_bars"], log["hold_bars"])
    # a timed exit is decided 6 bars after the entry's fill bar and fills on the next bar
    assert set(log_p.loc[log_p["exit_reason"] == "timed", "hold_bars"]) == {7.0}


def test_a_system_report_on_bars_sharing_a_time_counts_hold_bars(tmp_path: Path) -> None:
    """Pairs of bars share a time: report.json's trades.hold_bars were null and trades.csv's NaN, exit 0."""
    catalog = tmp_path / "catalog"
    cols = ["ts_event", "ts_init", "open", "high", "low", "close", "volume"]
    with Catalog(catalog).writer("sim", "spot", "ETH-BTC", "bars", "year", kind="bars", distinct_times=False) as w:
        w.write(pa.Table.from_pandas(_paired(_bars(4400))[cols], preserve_index=False))
        w.commit()
    path = _small_config(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["data"].update(catalog=str(catalog), dataset="sim/spot/ETH-BTC/bars")
    raw["walkforward"].update(min_train=3001, retrain_every=700)
    path.write_text(yaml.safe_dump(raw))
    report = run_system(load_ml_gated_config(path), tmp_path / "run")
    trades = pd.read_csv(tmp_path / "run" / "trades.csv")
    assert len(trades) > 5 and trades["hold_bars"].notna().all()
    assert (trades["hold_bars"] >= 1).all()
    timed = trades.loc[trades["exit_reason"] == "timed", "hold_bars"]
    assert len(timed) and (timed == raw["strategy"]["exits"]["max_hold_bars"] + 1).all()
    assert report["trades"]["hold_bars"] == {"mean": trades["hold_bars"].mean(), "median": trades["hold_bars"].median(),
                                             "max": trades["hold_bars"].max()}


def test_segment_pnl_on_irregular_bars_is_the_equity_change_over_its_bars_hand_derived() -> None:
    """Bars 60 s, 540 s, 540 s apart: equity was sampled on a grid of the median gap (540 s), a bar
    after a 60 s gap had no sample, and a segment ending on it lost its last bar's PnL to the next."""
    bars = _bars(1600)
    gaps = np.where(np.arange(len(bars) - 1) % 3 == 0, 60, 540) * 1_000_000_000
    ts = int(bars["ts_event"].iat[0]) + np.concatenate(([0], np.cumsum(gaps)))
    bars = bars.assign(ts_event=ts, ts_init=ts)
    trained = _train(bars, min_train=800, retrain_every=40)
    result, strategy = run_edges(bars, INSTRUMENT, STRATEGY, trained.precomputed_source(), venue=VENUE,
                                 initial_cash=10.0)
    assert [e.ts for e in result.equity] == ts.tolist()
    fill_ts = np.array([f.ts_event for f in result.fills])
    qty = np.array([f.quantity if f.side == "BUY" else -f.quantity for f in result.fills])
    cash = np.array([-q * f.price - f.fee for q, f in zip(qty, result.fills, strict=True)])
    close = bars["close"].to_numpy()

    def equity(i: int) -> float:  # cash and position after the fills up to bar i, marked at its close
        done = fill_ts <= ts[i]
        return 10.0 + cash[done].sum() + qty[done].sum() * close[i]

    want = [equity(s.end - 1) - equity(s.start - 1) for s in trained.segments]
    held = [s.end - 1 for s in trained.segments if (qty[fill_ts <= ts[s.end - 1]].sum() != 0.0)]
    # a segment ends in a position on a bar 60 s after the one before (no sample on the 540 s grid)
    assert any(ts[i] - ts[i - 1] == 60_000_000_000 for i in held)
    np.testing.assert_allclose(segment_table(trained, result, strategy)["pnl"], want, rtol=0, atol=1e-12)


def test_a_system_trade_log_of_contracts_counts_the_contract_size(tmp_path: Path) -> None:
    """A perpetual in contracts of 0.01 ETH: a trade's PnL is its quantity * 0.01 * the price move, so the round
    trips' net PnL sums to the run's (flat at its end, no funding). Before, trades.csv and report.json's trades
    took one contract for 1 ETH: a net PnL of +0.711 BTC for a run that lost 0.0158."""
    instrument = {"venue": "FREQTRADE", "symbol": "ETH-BTC", "base": "ETH", "quote": "BTC", "tick_size": 1e-6,
                  "lot_size": 1.0, "taker_fee": 0.0003, "maker_fee": 0.0003, "kind": "perpetual",
                  "contract_size": 0.01}
    config = load_ml_gated_config(_small_config(tmp_path, instrument=instrument))
    report = run_system(config, tmp_path / "run")
    trades = pd.read_csv(tmp_path / "run" / "trades.csv")
    equity = pd.read_csv(tmp_path / "run" / "equity.csv")["equity"].to_numpy()
    assert len(trades) > 5
    change = equity[-1] - config.initial_cash
    assert trades["net_pnl"].sum() == pytest.approx(change, rel=1e-9, abs=1e-12)
    assert report["trades"]["all"]["net_pnl"] == pytest.approx(change, rel=1e-9, abs=1e-12)


def test_pruning_for_the_calibration_sees_nothing_of_the_fold_it_predicts(monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe column that is 0, except on half of one calibration fold's test rows where it is the 1-bar
    forward return: the fold's out-of-fold edges on the other half must not move, since the columns that
    predict them are chosen on the fold's training rows (purged, embargoed), which the probe never reaches."""
    import tradebus.research.edge as edge
    import tradebus.research.edge_walkforward as walkforward
    from tradebus.research.labels import forward_returns

    bars = _bars(1200)
    probe = np.zeros(len(bars))
    compute, oof_edge = walkforward.compute_features, edge.oof_edge
    calls: list[tuple[Any, np.ndarray]] = []

    def with_probe(frame: pd.DataFrame, specs: Any, event: str) -> pd.DataFrame:
        return compute(frame, specs, event=event).assign(probe=probe)

    def recorded(*args: Any, **kwargs: Any) -> np.ndarray:
        out = oof_edge(*args, **kwargs)
        calls.append((args[3], out))
        return out

    monkeypatch.setattr(walkforward, "compute_features", with_probe)
    monkeypatch.setattr(walkforward, "oof_edge", recorded)

    def first_segment() -> tuple[tuple[str, ...], Any, np.ndarray]:
        calls.clear()
        trained = train_segments(bars, SPECS, [*COLUMNS, "probe"], WEIGHTS, min_train=900, retrain_every=400,
                                 params={"n_estimators": 15, "max_depth": 2}, cv_splits=3, embargo=6, prune_keep=2,
                                 calibrate=True, tune="none")
        return (trained.segments[0].step.columns, *calls[0])

    columns, cv, before = first_segment()
    ts = bars["ts_event"].to_numpy()
    bar_of_row = np.searchsorted(ts, cv.t0)
    test = list(cv.split(cv.t0))[1][1]
    probe[bar_of_row[test[::2]]] = forward_returns(bars, [1], kind="bps")["fwd_1"].to_numpy()[bar_of_row[test[::2]]]
    columns_after, _, after = first_segment()
    # pruned on all the rows, the segment's own model now keeps the probe; the fold's model must not
    assert "probe" not in columns and "probe" in columns_after
    assert (after[test[1::2]] == before[test[1::2]]).all()


@pytest.mark.parametrize(("segment", "fold"), [(0, 1), (1, 0)])
def test_tuning_for_the_calibration_sees_no_label_of_the_fold_it_predicts(monkeypatch: pytest.MonkeyPatch,
                                                                          segment: int, fold: int) -> None:
    """The forward returns (labels) of half of one calibration fold's test rows are scaled by -5: the fold's
    out-of-fold edges on the other half must not move. Before, the fold was fitted with the segment's tuned
    parameters, chosen by an IC over all the rows (the perturbed labels flip that choice); now each fold
    reruns the tuning on its own training rows (nested purged K-fold). Segment 1 keeps segment 0's choice
    (``tune: first``), whose rows its fold 0 tests."""
    import tradebus.research.edge as edge
    import tradebus.research.edge_walkforward as walkforward

    bars = _bars(1600)
    labels, oof_edge = walkforward.forward_returns, edge.oof_edge
    flipped = np.array([], dtype=np.int64)
    calls: list[tuple[Any, np.ndarray]] = []

    def perturbed(frame: pd.DataFrame, horizons: Any, kind: str) -> pd.DataFrame:
        out = labels(frame, horizons, kind=kind)
        for h in horizons:
            out[f"fwd_{h}"] = out[f"fwd_{h}"].to_numpy().copy()
            out.loc[flipped, f"fwd_{h}"] *= -5.0
        return out

    def recorded(*args: Any, **kwargs: Any) -> np.ndarray:
        out = oof_edge(*args, **kwargs)
        calls.append((args[3], out))
        return out

    monkeypatch.setattr(walkforward, "forward_returns", perturbed)
    monkeypatch.setattr(walkforward, "oof_edge", recorded)

    def run() -> tuple[Any, Any, np.ndarray]:
        calls.clear()
        trained = train_segments(bars, SPECS, COLUMNS, WEIGHTS, min_train=800, retrain_every=400,
                                 params={"n_estimators": 15}, tune_grid={"max_depth": [1, 3], "min_child_weight": [1, 20]},
                                 tune="first", cv_splits=3, embargo=6, calibrate=True)
        return (trained.segments[segment], *calls[segment])

    seg, cv, before = run()
    test = list(cv.split(cv.t0))[fold][1]
    flipped = np.searchsorted(bars["ts_event"].to_numpy(), cv.t0[test[::2]])
    seg_after, _, after = run()
    # the perturbed labels change the tuned parameters in force, but not the fold's own
    assert seg_after.params != seg.params
    assert (after[test[1::2]] == before[test[1::2]]).all()
    assert seg_after.fold_params[fold] == seg.fold_params[fold]


def test_a_later_fold_testing_the_first_window_is_tuned_on_its_own_training_rows(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``tune: first``, segment 2's calibration fold 0 tests all the rows segment 0 was tuned on: it used to
    get the untuned base parameters (``n_estimators`` alone) while the segment's model used the tuned ones; it
    now reruns the tuning on its own training rows, a nested purged K-fold, and says so."""
    import tradebus.research.edge as edge
    import tradebus.research.edge_walkforward as walkforward

    oof_edge, calls = edge.oof_edge, []

    def recorded(*args: Any, **kwargs: Any) -> np.ndarray:
        calls.append((args[0], args[1], args[3]))
        return oof_edge(*args, **kwargs)

    monkeypatch.setattr(walkforward, "oof_edge", recorded)
    bars = _bars(1600)
    grid = {"max_depth": [1, 3], "min_child_weight": [1, 20]}
    trained = train_segments(bars, SPECS, COLUMNS, WEIGHTS, min_train=400, retrain_every=400,
                             params={"n_estimators": 15}, tune_grid=grid, tune="first", cv_splits=3, embargo=6,
                             calibrate=True)
    (_, _, cv0), (X, forward, cv) = calls[0], calls[2]
    train, test = next(cv.split(X))
    assert np.isin(cv0.t0, cv.t0[test]).all()  # the fold tests the whole first window
    # the tuning rerun by hand on the fold's training rows, with its own purged K-fold
    inner = PurgedKFold(3, t0=cv.t0[train], t1=cv.t1[train], embargo=6)
    expected = tune_edge(X[train], {h: forward[h][train] for h in WEIGHTS}, WEIGHTS, grid, inner,
                         {"n_estimators": 15}).params
    seg = trained.segments[2]
    assert seg.fold_params[0] == expected and set(expected) == {"n_estimators", *grid}
    assert seg.fold_tuning[0] == (f"tuned on its {len(train)} training rows (only 0 of the {len(cv0.t0)} the "
                                  "parameters in force were tuned on)")
    assert seg.fold_tuning[1].startswith("the segment's choice")


def test_a_nested_tuning_fold_too_short_for_its_purged_folds_is_named_with_the_keys_to_change(
        tmp_path: Path) -> None:
    """150 training rows, 2 folds, embargo 20 rows, labels 12 bars long: the segment's purged folds train, but
    calibration fold 0's 37 training rows leave its nested purged K-fold a fold with none; the error names the
    segment, the fold, the rows and the keys (it was the bare PurgedKFold message, naming neither)."""
    raw = yaml.safe_load(_small_config(tmp_path).read_text())
    raw["model"]["embargo"] = 20
    raw["walkforward"]["train_window"] = 150
    path = tmp_path / "short.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["research", "run", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())
    assert said.startswith(f"error: {path}: walkforward.min_train 3500, walkforward.train_window 150: segment 0 "
                           "(bar 3500, 2018-01-22T08:40:00+00:00): calibration fold 0's nested tuning on 37 rows: "
                           "PurgedKFold: fold 0 has no training samples left"), said
    assert said.endswith("raise either, or lower model.cv_splits 2 or model.embargo 20"), said
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


def test_segments_count_and_warn_of_the_orders_denied_as_research_walkforward_does() -> None:
    """On a cash account (no margin) every short entry of the edge is a SELL of ETH the account does not hold:
    the segments showed entries with 0 fills and no reason (denials said only at INFO level)."""
    bars = _bars(1600)
    trained = _train(bars)
    cash_only = InstrumentConfig(venue="FREQTRADE", symbol="ETH-BTC", tick_size=1e-6, lot_size=0.001,
                                 taker_fee=0.0003, maker_fee=0.0003, margin=False).to_instrument()
    messages: list[str] = []
    sink = logger.add(lambda m: messages.append(m.record["message"]), level="WARNING")
    try:
        result, strategy = run_edges(bars, cash_only, STRATEGY, trained.precomputed_source(), venue=VENUE,
                                     initial_cash=10.0)
        table = segment_table(trained, result, strategy)
    finally:
        logger.remove(sink)
    denials = result.denials
    assert denials and any(d.reason.startswith("buying_power: SELL") for d in denials)
    ts = bars["ts_event"].to_numpy()
    bounds = [*(int(ts[s.start]) for s in trained.segments), int(ts[-1]) + 1]
    expected = [sum(1 for d in denials if a <= d.ts_event < b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    assert table["denied"].tolist() == expected and sum(expected) == len(denials)
    first = pd.Timestamp(denials[0].ts_event, tz="UTC").isoformat()
    told = [m for m in messages if m.startswith("edge walk-forward: ")]  # one line per check, each with its count
    checks = {d.reason.partition(":")[0] for d in denials}
    assert len(told) == len(checks) and sum(int(m.split()[2]) for m in told) == len(denials)
    assert f"the first at {first} " in told[0]
    assert told[0].endswith(f": {denials[0].reason}")
