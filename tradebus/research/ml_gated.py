"""The ML-gated system: an XGBoost edge model, walk-forward retrained, traded through gates.

One config (``configs/systems/ml_gated.yaml``, ``system: ml_gated``) drives the whole
pipeline from catalog bars to a report; ``tradebus research run CONFIG`` runs it:

1. the bars of ``data.dataset`` and the ``features`` of the bank on them;
2. :func:`~tradebus.research.edge_walkforward.train_segments`: per segment, a purged,
   optionally tuned, pruned and calibrated multi-horizon XGBoost edge (``model``);
3. :func:`~tradebus.research.edge_walkforward.run_edges`: the bars traded on the kernel
   by :class:`~tradebus.research.edge_strategy.EdgeGated` (``strategy``: gates, exits,
   sizing) on the batch predictions (``run.edges: precomputed``) or with the models
   predicting per bar (``live``; same decisions, slower);
4. the report: ``report.json`` (summary, out-of-sample metrics, per-segment IC / hit rate / denied orders / PnL /
   importance, trade analysis by exit reason, gate counts, tuning and calibration),
   ``report.md``, ``segments.csv``, ``trades.csv``, ``equity.csv``, ``edges.csv`` and
   ``model.joblib`` (the last segment's model step: ``params.model`` of
   :class:`~tradebus.research.edge_strategy.EdgeGated` in a paper or backtest run config).

The summary and ``metrics`` measure the out-of-sample span only, from the first segment's
first bar to the last bar (:func:`out_of_sample_run`; ``summary.oos_start``/``oos_end`` and
``metrics.start``/``end`` name it): the bars before it are only trained on, and counting their
flat equity would dilute every annualised figure.

Same config and data give byte-identical files (no wall-clock time is written).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, PositiveInt, ValidationError, create_model, model_validator

from tradebus.config import InstrumentConfig
from tradebus.config.base import StrictModel, describe_errors, resolve_path
from tradebus.engine.kernel import RunResult
from tradebus.errors import ConfigError, FeatureError
from tradebus.execution.config import VenueConfig
from tradebus.features.bank import FeatureBank
from tradebus.reports.metrics import compute_metrics, format_ns
from tradebus.research.config import read_yaml, validation_problems
from tradebus.research.dataset import load_events
from tradebus.research.edge import check_params, check_values
from tradebus.research.edge_walkforward import run_edges, segment_table, train_segments
from tradebus.research.output import json_ready, write_json, write_text
from tradebus.research.tradelog import trade_log, trade_summary
from tradebus.research.edge_strategy import EdgeGatedParams

__all__ = ["MLGatedConfig", "load_ml_gated_config", "out_of_sample_run", "run", "run_system"]

#: Shortest span (days) for which the report annualises (the shipped data has 13 out-of-sample days).
ANNUALISE_DAYS = 7.0


_Model = StrictModel


class DataSection(_Model):
    """The catalog and the bars dataset (``venue/market/symbol/name``)."""

    catalog: Path
    dataset: str


class ModelSection(_Model):
    """The edge model: columns, horizon weights, XGBoost parameters, tuning, pruning, calibration."""

    columns: list[str] = Field(min_length=1)
    horizons: dict[PositiveInt, float] = Field(min_length=1, description="horizon in bars -> weight")
    params: dict[str, Any] = Field(default_factory=dict)
    tune: Literal["none", "first", "every"] = "first"
    tune_grid: dict[str, list[Any]] = Field(default_factory=dict)
    cv_splits: int = Field(default=4, ge=2)
    embargo: int = Field(default=0, ge=0)
    prune_keep: int | None = Field(default=None, ge=1)
    calibrate: bool = True
    seed: int = 0
    nthread: int = Field(default=1, ge=1)


class WalkForwardSection(_Model):
    """Segments in bars."""

    min_train: int = Field(gt=0)
    retrain_every: int = Field(gt=0)
    train_window: int | None = Field(default=None, gt=0)


class RunSection(_Model):
    """How the strategy gets its edges."""

    edges: Literal["precomputed", "live"] = "precomputed"


#: The :class:`EdgeGatedParams` keys the system sets, not its ``strategy`` section: ``key -> why``.
_SYSTEM_KEYS = {
    "features": "the strategy computes the top-level features: (the model's), give them there",
    "model": "the system trains its model per segment (params.model is a paper or backtest run config's)",
}
#: The keys a ``strategy`` section takes (those a misspelt key is matched against).
_StrategySection = create_model("_StrategySection", __base__=_Model, **{
    name: (info.annotation, info) for name, info in EdgeGatedParams.model_fields.items() if name not in _SYSTEM_KEYS})


class MLGatedConfig(_Model):
    """Every section of an ML-gated system config."""

    system: Literal["ml_gated"]
    data: DataSection
    instrument: InstrumentConfig
    venue: VenueConfig = Field(default_factory=VenueConfig)
    initial_cash: float = Field(default=100_000.0, gt=0)
    features: list[dict[str, Any]] = Field(min_length=1)
    model: ModelSection
    walkforward: WalkForwardSection
    strategy: dict[str, Any] = Field(default_factory=dict)
    run: RunSection = Field(default_factory=RunSection)

    @model_validator(mode="after")
    def _no_system_key(self) -> MLGatedConfig:
        for key, why in _SYSTEM_KEYS.items():
            if key in self.strategy:
                raise ValueError(f"strategy.{key}: not a strategy key here: {why}")
        return self

    def strategy_params(self) -> dict[str, Any]:
        """The :class:`EdgeGatedParams` mapping (the config's features included)."""
        return {"features": self.features, **self.strategy}


def load_ml_gated_config(path: str | Path) -> MLGatedConfig:
    """Read and validate a system config; the catalog is resolved against the file's directory.

    Raises
    ------
    ConfigError
        Missing file, bad YAML, an invalid or unknown field (named with the file), a bad feature
        spec, a model or strategy column the features do not give, an unknown XGBoost parameter:
        all before any data is read.
    """
    path = Path(path)
    raw = read_yaml(path)
    try:
        config = MLGatedConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {validation_problems(exc, MLGatedConfig)}") from None
    try:
        params = EdgeGatedParams.model_validate(config.strategy_params())
    except ValidationError as exc:  # the params are the top-level features plus the strategy section
        problems = [line if error["loc"][:1] == ("features",) else f"strategy.{line}"
                    for error, line in zip(exc.errors(), describe_errors(exc, model=_StrategySection), strict=True)]
        raise ConfigError(f"{path}: {'; '.join(problems)}") from None
    try:
        columns = FeatureBank(config.features).columns
    except FeatureError as exc:
        raise ConfigError(f"{path}: features: {exc}") from None
    named = [("model.columns", c) for c in config.model.columns]
    named += [("strategy.atr_feature", params.atr_feature), ("strategy.vol_feature", params.vol_feature)]
    for where, name in named:
        if name not in columns:
            raise ConfigError(f"{path}: {where}: no feature column {name!r}; the features give {list(columns)}")
    for section, names in (("model.params", config.model.params), ("model.tune_grid", config.model.tune_grid)):
        try:
            check_params(names)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {section}.{exc}") from None
    grid = config.model.tune_grid
    points = [("model.params", config.model.params)]
    points += [(f"model.tune_grid.{name}", {**config.model.params, name: value}) for name in grid for value in grid[name]]
    for where, point in points:
        try:
            check_values(point)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {where}: {exc}") from None
    catalog = resolve_path(config.data.catalog, path.parent)
    return config.model_copy(update={"data": config.data.model_copy(update={"catalog": catalog})})


def out_of_sample_run(result: RunResult, start_ns: int, bars: int) -> RunResult:
    """The run seen from ``start_ns`` (the first out-of-sample bar) on, for :func:`compute_metrics`.

    The equity samples before ``start_ns`` are dropped and the curve is rebased at the last of
    them: its equity becomes ``initial_cash`` (the first daily return is measured against it),
    and the span of the annualised figures and of the exposure starts at ``start_ns``.

    Parameters
    ----------
    result
        The whole run (training-only bars included).
    start_ns
        Time of the first out-of-sample bar.
    bars
        How many bars the out-of-sample span holds.

    Raises
    ------
    ValueError
        A fill before ``start_ns``: the strategy traded before it had a model, and a position
        carried into the span would not be rebased.
    """
    early = [f for f in result.fills if f.ts_event < start_ns]
    if early:
        raise ValueError(f"{len(early)} fill(s) before the out-of-sample start {format_ns(start_ns)}")
    before = [e for e in result.equity if e.ts < start_ns]
    after = [e for e in result.equity if e.ts >= start_ns]
    return dataclasses.replace(
        result, initial_cash=before[-1].equity if before else result.initial_cash,
        start_ns=after[0].ts if after else result.start_ns, first_event_ns=start_ns, bars=bars, equity=after,
    )


def _markdown(report: dict[str, Any], segments: pd.DataFrame) -> str:
    s = report["summary"]
    lines = [f"# ML-gated system: {report['instrument']} ({report['dataset']})", "",
             f"Edges: {report['edges']}. Out-of-sample bars {s['oos_bars']} ({s['oos_start']} -> {s['oos_end']}), "
             f"segments {s['segments']}; every figure is measured over these bars.", "",
             "| figure | value |", "|---|---|"]
    for key in ("pnl", "total_return", "buy_and_hold_return", "max_drawdown", "sharpe", "mean_ic", "mean_hit_rate",
                "entries", "denied", "round_trips", "fees_paid", "turnover"):
        value = s.get(key)
        lines.append(f"| {key} | {value:.6g} |" if isinstance(value, float) else f"| {key} | {value} |")
    lines += ["", "## Segments", "", "| seg | bars | train | IC | hit | entries | denied | PnL | top features |",
              "|---|---|---|---|---|---|---|---|---|"]
    for row in segments.itertuples():
        lines.append(f"| {row.segment} | {row.bars} | {row.train_rows} | {row.ic:.4f} | {row.hit_rate:.3f} | "
                     f"{row.entries} | {row.denied} | {row.pnl:.6g} | {row.top_features} |")
    lines += ["", "## Trades by exit reason", "", "| reason | trades | net PnL | mean | win rate |", "|---|---|---|---|---|"]
    for reason, st in report["trades"]["by_exit_reason"].items():
        lines.append(f"| {reason} | {st['trades']} | {st['net_pnl']:.6g} | {st['mean']:.6g} | {st['win_rate']:.3f} |")
    lines += ["", "## Gates (bars blocked by the first failing gate)", "",
              *(f"- {gate}: {count}" for gate, count in report["gate_counts"].items()), ""]
    return "\n".join(lines)


def run(config_path: str | Path, out: str | Path) -> dict[str, Any]:
    """Entry of :data:`tradebus.research.systems.SYSTEMS`: load, run, return the report.

    The returned summary also holds the run time (``run_time_s``), which no file holds (the
    files are byte-identical between runs). A :class:`ConfigError` names ``config_path``.
    """
    started = time.perf_counter()
    config = load_ml_gated_config(config_path)
    try:
        report = run_system(config, Path(out))
    except ConfigError as exc:  # a dataset or walkforward value the data cannot satisfy: name the file too
        raise ConfigError(f"{config_path}: {exc}") from None
    report["summary"] = {**report["summary"], "run_time_s": round(time.perf_counter() - started, 1)}
    return report


def run_system(config: MLGatedConfig, out: Path) -> dict[str, Any]:
    """Run the pipeline of ``config`` and write its report into ``out``; returns the report.

    Raises
    ------
    ConfigError
        ``data.dataset`` not in the catalog, ``walkforward.min_train`` not below the number of bars,
        or too few training rows before a segment, or in one of its calibration folds, for the purged folds (named with the segment and
        fold, and the keys to change: ``walkforward.min_train``, ``train_window``, ``model.cv_splits``,
        ``model.embargo``).
    """
    _, bars = load_events(config.data.catalog, config.data.dataset, "data.dataset")
    m, wf = config.model, config.walkforward
    if wf.min_train >= len(bars):
        raise ConfigError(f"walkforward.min_train: {wf.min_train} leaves no bar to trade: {config.data.dataset} has "
                          f"{len(bars)} bars")
    try:
        trained = train_segments(
            bars, config.features, m.columns, m.horizons, min_train=wf.min_train, retrain_every=wf.retrain_every,
            train_window=wf.train_window, params=m.params, tune_grid=m.tune_grid, tune=m.tune,
            cv_splits=m.cv_splits, embargo=m.embargo, prune_keep=m.prune_keep, calibrate=m.calibrate, seed=m.seed,
            nthread=m.nthread,
        )
    except ConfigError as exc:  # too few training rows before a segment
        window = "null" if wf.train_window is None else wf.train_window
        raise ConfigError(f"walkforward.min_train {wf.min_train}, walkforward.train_window {window}: "
                          f"{str(exc).removeprefix('edge walk-forward: ')}: raise either, or lower model.cv_splits "
                          f"{m.cv_splits} or model.embargo {m.embargo}") from None
    source = trained.precomputed_source() if config.run.edges == "precomputed" else trained.live_source()
    instrument = config.instrument.to_instrument()
    result, strategy = run_edges(bars, instrument, config.strategy_params(), source, venue=config.venue,
                                 initial_cash=config.initial_cash)
    ts = trained.ts
    segments = segment_table(trained, result, strategy)
    log = trade_log(result.fills, fill_bars=strategy.fill_bars, contract_sizes=result.contract_sizes,
                    lot_sizes={instrument.instrument_id: instrument.lot_size})
    first = trained.segments[0].start
    metrics = compute_metrics(out_of_sample_run(result, int(ts[first]), len(ts) - first),
                              {instrument.instrument_id: instrument.lot_size}, min_annualised_days=ANNUALISE_DAYS)
    close = bars["close"].to_numpy()
    summary = {
        "segments": len(segments), "oos_bars": int(len(ts) - first), "oos_start": metrics["start"],
        "oos_end": metrics["end"],
        "pnl": float(segments["pnl"].sum()), "total_return": metrics["total_return"],
        "buy_and_hold_return": float(close[-1] / close[first - 1] - 1.0),
        "max_drawdown": metrics["max_drawdown"], "sharpe": metrics["sharpe"],
        "mean_ic": float(np.nanmean(segments["ic"])), "mean_hit_rate": float(np.nanmean(segments["hit_rate"])),
        "entries": len(strategy.entries), "denied": int(segments["denied"].sum()), "round_trips": len(log), "fees_paid": metrics["fees_paid"],
        "turnover": metrics["turnover"],
    }
    report = {
        "system": "ml_gated", "dataset": config.data.dataset, "instrument": instrument.instrument_id,
        "edges": config.run.edges, "summary": summary, "metrics": metrics,
        "segments": segments.to_dict(orient="records"),
        "models": [{"segment": k, "params": s.params, "calibration": s.calibration, "columns": list(s.step.columns),
                    "importance": s.importance, "tuning": s.tuning, "calibration_fold_params": s.fold_params,
                    "calibration_fold_tuning": s.fold_tuning}
                   for k, s in enumerate(trained.segments)],
        "trades": trade_summary(log), "gate_counts": dict(sorted(strategy.gate_counts.items())),
    }
    report = json_ready(report)
    out.mkdir(parents=True, exist_ok=True)
    write_json(report, out / "report.json")
    write_text(out / "report.md", _markdown(report, segments))
    write_text(out / "segments.csv", segments.to_csv(index=False))
    write_text(out / "trades.csv", log.to_csv(index=False))
    equity = pd.DataFrame([(e.ts, e.equity) for e in result.equity], columns=["ts", "equity"])
    write_text(out / "equity.csv", equity.to_csv(index=False))
    edges = pd.DataFrame({"ts_event": ts, "edge_bps": trained.edges, "target_bps": trained.target})
    write_text(out / "edges.csv", edges.to_csv(index=False))
    trained.segments[-1].step.save(out / "model.joblib")
    return report
