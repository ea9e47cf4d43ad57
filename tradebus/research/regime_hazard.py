"""The regime + entries + hazard-meter system in research: walk-forward training, baseline vs enhanced.

``tradebus research run CONFIG`` with ``system: regime_hazard`` runs, on one instrument's
trades (:class:`~tradebus.strategies.regime_hazard.RegimeHazardSystem` builds every bar
from them):

1. *candidates*: layers A+B without filters; each primary signal gets a triple-barrier
   label (:func:`~tradebus.research.labels.triple_barrier` with the regime's barrier
   multipliers) and the meta-label ``ret >`` round-trip cost;
2. the meta-label models, one per walk-forward segment, trained on the candidates whose
   label ended before the segment start minus the embargo
   (:func:`~tradebus.research.calibration.walk_forward_schedule`);
3. *baseline* (A+B with the meta filter); each minute a baseline trade is open gets the
   hazard label "stop touched or an adverse move of ``adverse_atr`` ATRs within the next
   ``horizon_bars`` base bars"; the hazard models are trained walk-forward on them the same way;
4. *enhanced* (A+B+C): the same with the hazard meter acting.

Fills: a decision taken on a trade fills at the *next* trade's price, moved against the
order by ``slippage_bps``, plus ``fee_bps`` per fill; one unit of notional per trade on a
capital of 1. The lookahead detector (:func:`~tradebus.research.lookahead.detect_lookahead`)
re-runs the whole pipeline, training included, with the trades after random cuts
perturbed, and compares every record of each layer up to the cut.

Outputs in ``--out``: ``report.json``, ``report.md``, ``decisions_{baseline,enhanced}.jsonl``,
``trades_{baseline,enhanced}.csv``, ``models.json`` (the schedules and the parameters they
were trained with, loadable by the :class:`~tradebus.strategies.regime_hazard.RegimeHazard`
strategy, which refuses other parameters: :func:`~tradebus.strategies.regime_hazard.load_models`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field, ValidationError, field_validator

from tradebus.config.base import StrictModel
from tradebus.config.units import parse_duration
from tradebus.errors import ConfigError, DataError
from tradebus.execution.costs import MAX_FEE_RATE, MAX_SLIPPAGE_BPS
from tradebus.research.calibration import walk_forward_schedule
from tradebus.research.config import read_yaml, validation_problems
from tradebus.research.dataset import load_events
from tradebus.strategies.models import ModelSchedule
from tradebus.research.labels import known_returns, triple_barrier
from tradebus.research.lookahead import SourceFrame, Trace, detect_lookahead
from tradebus.research.output import json_text, write_json, write_text
from tradebus.strategies.base import duration_ns
from tradebus.strategies.regime_hazard import (
    HAZARD_FEATURES,
    META_FEATURES,
    RegimeHazardParams,
    RegimeHazardSystem,
    models_document,
)

__all__ = ["RegimeHazardConfig", "load_config", "load_trades", "run", "run_pipeline"]

_HOUR = 3_600_000_000_000


_Model = StrictModel


class DataConfig(_Model):
    """The trades: CSV(.gz) with ``ts_ms, trade_id, price, size, side`` (``buy``/``sell``)."""

    trades: str
    instrument: str = "XRPETH.BINANCE"


class CostsConfig(_Model):
    """Costs per fill in basis points of notional."""

    fee_bps: float = Field(default=7.5, ge=0.0, lt=MAX_FEE_RATE * 1e4)  # 1,000 bps: the backtest's fee rates' bound
    slippage_bps: float = Field(default=2.0, ge=0.0, lt=MAX_SLIPPAGE_BPS)  # 100 % or more: a sell at no positive price


class WalkForwardConfig(_Model):
    """Equal-time segments; a model per segment start from labels ended ``embargo`` before it."""

    segments: int = Field(default=5, ge=2)
    embargo: str = "30m"
    min_samples: int = Field(default=20, ge=2)
    folds: int = Field(default=4, ge=2)

    @field_validator("embargo")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)  # a ValueError: pydantic names the field
        return value


class HazardLabelConfig(_Model):
    """Hazard label: stop or an adverse move of ``adverse_atr`` ATRs within ``horizon_bars`` base bars."""

    horizon_bars: int = Field(default=15, ge=1)
    adverse_atr: float = Field(default=0.75, gt=0.0)


class LookaheadConfig(_Model):
    """Lookahead detector runs (0 cuts: skipped)."""

    cuts: int = Field(default=3, ge=0)
    seed: int = 0


class RegimeStudyConfig(_Model):
    """Layer A alone on a long bar series of a catalog: does the regime say anything about what follows?"""

    catalog: str
    dataset: str = "coinbase/spot/BTC-USD/bars_4h"
    horizon_bars: int = Field(default=6, ge=1)
    params: RegimeHazardParams = RegimeHazardParams()

    @field_validator("dataset")
    @classmethod
    def _four_parts(cls, value: str) -> str:
        if len(value.split("/")) != 4:
            raise ValueError(f"expected exchange/market/symbol/dataset, got {value!r}")
        return value


class RegimeHazardConfig(_Model):
    """The ``system: regime_hazard`` research config."""

    system: str
    data: DataConfig
    params: RegimeHazardParams = RegimeHazardParams()
    costs: CostsConfig = CostsConfig()
    walkforward: WalkForwardConfig = WalkForwardConfig()
    hazard_labels: HazardLabelConfig = HazardLabelConfig()
    lookahead: LookaheadConfig = LookaheadConfig()
    regime_study: RegimeStudyConfig | None = None


def load_config(path: str | Path) -> tuple[RegimeHazardConfig, Path]:
    """Validate a config file; return it and its directory (relative paths start there).

    Raises
    ------
    ConfigError
        Missing file, bad YAML, an invalid or unknown field (named with the file), intervals
        that do not nest (``params`` or ``regime_study.params``).
    """
    path = Path(path)
    raw = read_yaml(path)
    try:
        config = RegimeHazardConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {validation_problems(exc, RegimeHazardConfig)}") from None
    if config.params.book_features:
        raise ConfigError(f"{path}: params.book_features needs a book; the research runner reads trades only")
    sections = [("params", config.params)]
    if config.regime_study is not None:
        sections.append(("regime_study.params", config.regime_study.params))
    for where, params in sections:
        try:
            params.intervals_ns()
        except ConfigError as exc:
            raise ConfigError(f"{path}: {where}: {exc}") from None
    return config, path.parent


def load_trades(path: str | Path) -> pd.DataFrame:
    """Trades as the lookahead detector's rows: ``ts_event, ts_init, price, size, aggressor, trade_id``."""
    path = Path(path)
    try:
        raw = pd.read_csv(path, dtype={"trade_id": str})
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read trades: {exc}") from None
    missing = {"ts_ms", "trade_id", "price", "size", "side"} - set(raw.columns)
    if missing:
        raise DataError(f"{path}: missing columns {sorted(missing)}")
    side = raw["side"].map({"buy": 1, "sell": -1})
    if side.isna().any():
        row = int(np.flatnonzero(side.isna().to_numpy())[0])
        raise DataError(f"{path}: row {row + 2}: side must be 'buy' or 'sell', got {raw['side'].iloc[row]!r}")
    numbers: dict[str, np.ndarray] = {}
    for column in ("ts_ms", "price", "size"):
        values = pd.to_numeric(raw[column], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values)
        if column == "ts_ms":
            bad |= values != np.round(values)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            what = "a whole number of milliseconds" if column == "ts_ms" else "a number"
            raise DataError(f"{path}: row {row + 2}: {column} must be {what}, got {raw[column].iloc[row]!r}")
        numbers[column] = values
    ts = raw["ts_ms"].to_numpy(dtype=np.int64) * 1_000_000
    price, size = numbers["price"], numbers["size"]
    bad = ~(np.isfinite(price) & (price > 0) & np.isfinite(size) & (size > 0))
    if bad.any():
        raise DataError(f"{path}: row {int(np.flatnonzero(bad)[0]) + 2}: price and size must be positive")
    if (np.diff(ts) < 0).any():
        raise DataError(f"{path}: row {int(np.flatnonzero(np.diff(ts) < 0)[0]) + 3}: trades are not in time order")
    return pd.DataFrame({"ts_event": ts, "ts_init": ts, "price": price, "size": size,
                         "aggressor": side.to_numpy(dtype=np.int64), "trade_id": raw["trade_id"].to_numpy()})


# ---------------------------------------------------------------------------- simulation


@dataclass
class SimResult:
    """One pass: the system (its logs), round trips and the equity per base bar."""

    system: RegimeHazardSystem
    trades: pd.DataFrame
    equity: pd.Series
    metrics: dict[str, Any] = field(default_factory=dict)


def simulate(frame: pd.DataFrame, params: RegimeHazardParams, costs: CostsConfig, *,
             meta: ModelSchedule | None = None, hazard: ModelSchedule | None = None,
             use_hazard: bool = False) -> SimResult:
    """Feed every trade to a fresh system; fill its decisions at the next trade (see the module docstring)."""
    system = RegimeHazardSystem(params, meta=meta, hazard=hazard, use_hazard=use_hazard)
    ts = frame["ts_event"].to_numpy(dtype=np.int64)
    price = frame["price"].to_numpy(dtype=np.float64)
    size = frame["size"].to_numpy(dtype=np.float64)
    aggr = frame["aggressor"].to_numpy(dtype=np.int64)
    slip, fee = costs.slippage_bps / 1e4, costs.fee_bps / 1e4
    rows: list[dict[str, Any]] = []
    open_: dict[str, Any] | None = None
    n = ts.size
    for i in range(n):
        for d in system.on_trade(int(ts[i]), float(price[i]), float(size[i]), int(aggr[i])):
            if d.action not in ("enter", "exit") or i + 1 >= n:
                continue
            order_side = d.side if d.action == "enter" else -d.side
            fill = float(price[i + 1]) * (1.0 + order_side * slip)
            if d.action == "enter":
                open_ = {"entry_id": d.entry_id, "side": d.side, "entry_ts": int(ts[i + 1]), "entry_px": fill,
                         "regime": d.kind}
            elif open_ is not None:
                rows.append({**open_, "exit_ts": int(ts[i + 1]), "exit_px": fill, "exit": d.kind})
                open_ = None
    if open_ is not None:  # still open at the end: closed at the last trade
        rows.append({**open_, "exit_ts": int(ts[-1]), "exit_px": float(price[-1]) * (1 - open_["side"] * slip),
                     "exit": "end_of_data"})
    trades = pd.DataFrame(rows, columns=["entry_id", "side", "entry_ts", "entry_px", "regime", "exit_ts", "exit_px",
                                         "exit"])
    trades["pnl"] = trades["side"] * (trades["exit_px"] / trades["entry_px"] - 1.0) - 2 * fee
    trades["hold_min"] = (trades["exit_ts"] - trades["entry_ts"]) / 60e9
    equity = _equity(system, trades, fee)
    return SimResult(system, trades, equity, _metrics(trades, equity))


def _equity(system: RegimeHazardSystem, trades: pd.DataFrame, fee: float) -> pd.Series:
    """Mark-to-market equity (capital 1) at each base bar close."""
    bar_ts = np.array([b[0] for b in system.bars], dtype=np.int64)
    close = np.array([b[4] for b in system.bars])
    eq = np.zeros(bar_ts.size)
    for t in trades.itertuples():
        eq[bar_ts >= t.exit_ts] += t.pnl
        held = (bar_ts >= t.entry_ts) & (bar_ts < t.exit_ts)
        eq[held] += t.side * (close[held] / t.entry_px - 1.0) - fee
    return pd.Series(eq, index=bar_ts, name="equity")


def _metrics(trades: pd.DataFrame, equity: pd.Series) -> dict[str, Any]:
    curve = 1.0 + equity.to_numpy()
    peak = np.maximum.accumulate(np.concatenate([[1.0], curve]))[1:]
    hours = (equity.index.to_numpy() // _HOUR) if len(equity) else np.empty(0, dtype=np.int64)
    hourly = pd.Series(curve, index=hours).groupby(level=0).last()
    # the first hour's return is against the capital of 1 the run starts with
    rets = pd.Series(np.concatenate([[1.0], hourly.to_numpy()])).pct_change().dropna().to_numpy()
    sd = rets.std(ddof=1) if rets.size > 1 else 0.0
    return {
        "trades": len(trades),
        "pnl_pct": round(float(trades["pnl"].sum()) * 100, 6),
        "max_drawdown_pct": round(float(((peak - curve) / peak).max()) * 100 if curve.size else 0.0, 6),
        "sharpe_hourly_annualised": round(float(rets.mean() / sd * math.sqrt(24 * 365)), 6) if sd > 0 else None,
        "turnover": round(2.0 * len(trades), 6),
        "hit_rate": round(float((trades["pnl"] > 0).mean()), 6) if len(trades) else None,
        "avg_hold_min": round(float(trades["hold_min"].mean()), 6) if len(trades) else None,
        "pnl_pct_by_exit": {k: round(float(v) * 100, 6) for k, v in trades.groupby("exit")["pnl"].sum().items()},
        "trades_by_exit": {k: int(v) for k, v in trades.groupby("exit").size().items()},
    }


# ---------------------------------------------------------------------------- labels and training


def _meta_samples(res: SimResult, params: RegimeHazardParams, costs: CostsConfig) -> pd.DataFrame:
    """Triple-barrier meta-labels of the unfiltered pass's candidates: 1 if the return beats the round-trip cost."""
    sys_ = res.system
    cands = sys_.candidates
    if not cands:
        return pd.DataFrame(columns=["t0", "t1", "y", *META_FEATURES])
    bars = pd.DataFrame(sys_.bars, columns=["ts_event", "open", "high", "low", "close", "volume"])
    index = np.array([c["index"] for c in cands], dtype=np.int64)
    width = np.full(len(bars), np.nan)
    for c in cands:
        width[c["index"]] = c["atr"] / c["close"]
    regime = np.zeros(len(bars), dtype=np.int64)
    for c in cands:
        regime[c["index"]] = 1 if c["regime"] == "TREND" else 2
    mult = {1: params.barriers["TREND"], 2: params.barriers["RANGE"]}
    labels = triple_barrier(bars, index, width=width, side=np.array([c["side"] for c in cands], dtype=np.float64),
                            max_ns=params.max_hold_bars * sys_.entry_ns, regime=regime, regime_multipliers=mult)
    by_index = {int(i): k for k, i in enumerate(index)}
    cost = 2 * (costs.fee_bps + costs.slippage_bps) / 1e4
    out = []
    for row, ret in zip(labels.itertuples(), known_returns(labels), strict=True):
        if np.isnan(ret):  # incomplete: its return stops at the data's end, no class to learn or count
            continue
        c = cands[by_index[int(row.index)]]
        out.append({"t0": c["ts"], "t1": max(int(row.t1), c["ts"]), "y": int(ret > cost),
                    **dict(zip(META_FEATURES, c["features"], strict=True))})
    frame = pd.DataFrame(out, columns=["t0", "t1", "y", *META_FEATURES])
    return frame[np.isfinite(frame[list(META_FEATURES)].to_numpy(dtype=np.float64)).all(axis=1)].reset_index(drop=True)


def _hazard_samples(res: SimResult, labels: HazardLabelConfig) -> pd.DataFrame:
    """Per open-trade minute: 1 if the stop or an adverse move is touched within the horizon."""
    sys_ = res.system
    bar_ts = np.array([b[0] for b in sys_.bars], dtype=np.int64)
    high = np.array([b[2] for b in sys_.bars])
    low = np.array([b[3] for b in sys_.bars])
    horizon = labels.horizon_bars * sys_.base_ns
    out = []
    for m in sys_.open_minutes:
        t1 = m["ts"] + horizon
        if t1 > bar_ts[-1]:
            continue
        window = (bar_ts > m["ts"]) & (bar_ts <= t1)
        if not window.any():
            y = 0
        elif m["side"] > 0:
            y = int(low[window].min() <= max(m["stop"], m["close"] - labels.adverse_atr * m["atr"]))
        else:
            y = int(high[window].max() >= min(m["stop"], m["close"] + labels.adverse_atr * m["atr"]))
        out.append({"t0": m["ts"], "t1": t1, "y": y, **dict(zip(HAZARD_FEATURES, m["features"], strict=True))})
    frame = pd.DataFrame(out, columns=["t0", "t1", "y", *HAZARD_FEATURES])
    return frame[np.isfinite(frame[list(HAZARD_FEATURES)].to_numpy(dtype=np.float64)).all(axis=1)].reset_index(drop=True)


def _schedule(name: str, samples: pd.DataFrame, columns: tuple[str, ...], starts: list[int],
              wf: WalkForwardConfig) -> tuple[ModelSchedule, list[dict[str, Any]]]:
    if samples.empty:
        return ModelSchedule(), [{"valid_from": s, "samples": 0, "positives": 0, "trained": "no: 0 samples"}
                                 for s in starts]
    samples = samples.sort_values("t0", kind="stable")
    try:
        return walk_forward_schedule(samples[list(columns)].to_numpy(dtype=np.float64), samples["y"].to_numpy(),
                                     columns, t0=samples["t0"].to_numpy(), t1=samples["t1"].to_numpy(), starts=starts,
                                     embargo_ns=duration_ns(wf.embargo, "embargo"), min_samples=wf.min_samples,
                                     folds=wf.folds)
    except ConfigError as exc:
        raise ConfigError(f"walkforward: {name} models: {exc}; raise walkforward.min_samples {wf.min_samples} (a "
                          f"segment with fewer samples keeps the previous model), or lower walkforward.folds "
                          f"{wf.folds} or walkforward.embargo {wf.embargo}") from None


@dataclass
class PipelineResult:
    """The three passes, the samples and the model schedules of one pipeline run."""

    candidates: SimResult
    baseline: SimResult
    enhanced: SimResult
    meta_samples: pd.DataFrame
    hazard_samples: pd.DataFrame
    meta: ModelSchedule
    hazard: ModelSchedule
    meta_log: list[dict[str, Any]]
    hazard_log: list[dict[str, Any]]
    boundaries: list[int]


def segment_bounds(frame: pd.DataFrame, segments: int) -> list[int]:
    """Equal-time segment boundaries ``[t_first, ..., t_last + 1]`` of the trades."""
    ts = frame["ts_event"].to_numpy(dtype=np.int64)
    first, last = int(ts[0]), int(ts[-1]) + 1
    return [first + (last - first) * k // segments for k in range(segments + 1)]


def run_pipeline(frame: pd.DataFrame, config: RegimeHazardConfig) -> PipelineResult:
    """The four steps of the module docstring on ``frame``'s trades."""
    p, costs, wf = config.params, config.costs, config.walkforward
    bounds = segment_bounds(frame, wf.segments)
    starts = bounds[1:-1]
    cands = simulate(frame, p, costs)
    meta_samples = _meta_samples(cands, p, costs)
    meta, meta_log = _schedule("meta-label", meta_samples, META_FEATURES, starts, wf)
    base = simulate(frame, p, costs, meta=meta)
    hazard_samples = _hazard_samples(base, config.hazard_labels)
    hazard, hazard_log = _schedule("hazard", hazard_samples, HAZARD_FEATURES, starts, wf)
    enh = simulate(frame, p, costs, meta=meta, hazard=hazard, use_hazard=True)
    return PipelineResult(cands, base, enh, meta_samples, hazard_samples, meta, hazard, meta_log, hazard_log, bounds)


# ---------------------------------------------------------------------------- lookahead


def pipeline_trace(result: PipelineResult) -> Trace:
    """Every record of each layer, stamped with the time it was decided.

    A: each regime bar's state and ratios; B: each candidate's meta P(win) and features; C: each
    open-trade minute's hazard p and features; every decision of its layer with its reason,
    kind, side and exact values.
    """
    trace = Trace()
    for name, res in (("baseline", result.baseline), ("enhanced", result.enhanced)):
        sys_ = res.system
        for ts, now, state, er, vr in sys_.regimes:
            trace.add("A", now, f"{name}:regime@{ts}", (state, er, vr))
        for c in sys_.candidates:
            trace.add("B", c["ts"], f"{name}:candidate:{c['entry_id']}", (c["p_win"], *c["features"]))
        for m in sys_.open_minutes:
            trace.add("C", m["ts"], f"{name}:hazard:{m['entry_id']}", (m["p"], *m["features"]))
        for d in sys_.decisions:  # the values exactly: the reason rounds them
            values = [x for key in sorted(d.values) for x in (key, d.values[key])]
            trace.add(d.layer, d.ts, f"{name}:{d.action}:{d.entry_id}", (d.reason, d.kind, d.side, *values))
    return trace


def lookahead_by_layer(frame: pd.DataFrame, config: RegimeHazardConfig) -> dict[str, Any]:
    """The detector over the whole pipeline (training included); violations counted per layer."""
    source = SourceFrame(config.data.instrument, "trades", frame)

    def runner(sources: Any) -> Trace:
        return pipeline_trace(run_pipeline(sources[0].frame, config))

    report = detect_lookahead([source], runner, n_cuts=config.lookahead.cuts, seed=config.lookahead.seed)
    out: dict[str, Any] = {"cuts": report.cuts, "records_checked": report.records_checked}
    for layer in ("A", "B", "C"):
        bad = [v for v in report.violations if v["kind"] == layer]
        out[layer] = {"ok": not bad, "violations": len(bad)}
    out["ok"] = report.ok
    return out


# ---------------------------------------------------------------------------- layer A on long bars


def regime_states(bars: pd.DataFrame, params: RegimeHazardParams) -> tuple[list[str], np.ndarray, int]:
    """Layer A over closed bars (each bar a regime bar): state and trend direction per bar, switches."""
    system = RegimeHazardSystem(params)
    states, dirs = [], []
    for row in bars[["ts_event", "open", "high", "low", "close", "volume"]].itertuples(index=False):
        system.on_regime_bar(int(row.ts_event), int(row.ts_event), [row.open, row.high, row.low, row.close, row.volume])
        states.append(system.regime.state)
        dirs.append(system.regime_values["dir"])
    return states, np.array(dirs), system.regime.switches


def regime_study(study: RegimeStudyConfig, base: Path) -> dict[str, Any]:
    """Per regime: share of bars and the next ``horizon_bars`` log return (mean |r|, and trend-following payoff).

    The payoff ``dir * r`` (``dir``: the sign of the regime window's move, known at the bar) is positive
    when moves persist (what TREND bets on) and negative when they revert (what RANGE bets on). Also the
    number of switches without hysteresis (enter = exit, confirm 1) against the configured one.
    """
    root = Path(study.catalog)
    _, bars = load_events(root if root.is_absolute() else base / root, study.dataset, "regime_study.dataset")
    p = study.params
    states, dirs, switches = regime_states(bars, p)
    flat = p.model_copy(update={"trend_exit": p.trend_enter, "hazard_exit": p.hazard_enter, "confirm": 1})
    _, _, flat_switches = regime_states(bars, flat)
    close = bars["close"].to_numpy(dtype=np.float64)
    h = study.horizon_bars
    fwd = np.full(close.size, np.nan)
    fwd[:-h] = np.log(close[h:] / close[:-h])
    frame = pd.DataFrame({"state": states, "fwd": fwd, "payoff": dirs * fwd}).dropna()
    rows = {}
    for state, part in frame.groupby("state"):
        rows[str(state)] = {"bars": len(part), "share": round(len(part) / len(frame), 6),
                            "mean_abs_fwd_bps": round(float(part["fwd"].abs().mean()) * 1e4, 3),
                            "trend_payoff_bps": round(float(part["payoff"].mean()) * 1e4, 3)}
    ts = bars["ts_event"].to_numpy()
    return {"dataset": study.dataset, "bars": len(bars), "first": pd.Timestamp(int(ts[0]), tz="UTC").isoformat(),
            "last": pd.Timestamp(int(ts[-1]), tz="UTC").isoformat(), "horizon_bars": h, "by_regime": rows,
            "switches": switches, "switches_without_hysteresis": flat_switches}


# ---------------------------------------------------------------------------- report


def _per_segment(res: SimResult, bounds: list[int]) -> list[dict[str, Any]]:
    rows = []
    t = res.trades
    for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        part = t[(t["entry_ts"] >= a) & (t["entry_ts"] < b)]
        rows.append({"segment": k, "start": pd.Timestamp(a, tz="UTC").isoformat(), "trades": len(part),
                     "pnl_pct": round(float(part["pnl"].sum()) * 100, 6),
                     "hit_rate": round(float((part["pnl"] > 0).mean()), 6) if len(part) else None})
    return rows


def _decision_counts(res: SimResult) -> dict[str, int]:
    counts: dict[str, int] = {}
    for d in res.system.decisions:
        key = f"{d.layer}:{d.action}" + (":hazard" if d.kind == "hazard" else "")
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def build_report(result: PipelineResult, config: RegimeHazardConfig, frame: pd.DataFrame,
                 lookahead: dict[str, Any] | None, study: dict[str, Any] | None = None) -> dict[str, Any]:
    """The comparison: metrics, per segment, decisions, models and the lookahead check."""
    ts = frame["ts_event"].to_numpy()
    regimes = pd.Series([r[2] for r in result.baseline.system.regimes]).value_counts()
    b, e = result.baseline.metrics, result.enhanced.metrics
    summary = {f"{name} {key}": m[key] for name, m in (("baseline", b), ("enhanced", e))
               for key in ("trades", "pnl_pct", "max_drawdown_pct", "sharpe_hourly_annualised")}
    summary["lookahead"] = "not run" if lookahead is None else ("ok" if lookahead["ok"] else "FOUND")
    return {
        "system": "regime_hazard",
        "summary": summary,
        "data": {"trades": len(frame), "first": pd.Timestamp(int(ts[0]), tz="UTC").isoformat(),
                 "last": pd.Timestamp(int(ts[-1]), tz="UTC").isoformat(),
                 "base_bars": len(result.baseline.system.bars)},
        "costs": config.costs.model_dump(),
        "baseline": {**result.baseline.metrics, "per_segment": _per_segment(result.baseline, result.boundaries),
                     "decisions": _decision_counts(result.baseline)},
        "enhanced": {**result.enhanced.metrics, "per_segment": _per_segment(result.enhanced, result.boundaries),
                     "decisions": _decision_counts(result.enhanced)},
        "candidates": {"signals": len(result.candidates.system.candidates),
                       "meta_samples": len(result.meta_samples),
                       "meta_positive_rate": round(float(result.meta_samples["y"].mean()), 6)
                       if len(result.meta_samples) else None},
        "regime_bars": {str(k): int(v) for k, v in regimes.items()},
        "regime_switches": result.baseline.system.regime.switches,
        "hazard_samples": len(result.hazard_samples),
        "hazard_positive_rate": round(float(result.hazard_samples["y"].mean()), 6)
        if len(result.hazard_samples) else None,
        "models": {"meta": result.meta_log, "hazard": result.hazard_log},
        "lookahead": lookahead,
        "regime_study": study,
    }


def _cell(value: Any) -> str:
    return "n/a" if value is None else str(value)


def _markdown(report: dict[str, Any]) -> str:
    b, e = report["baseline"], report["enhanced"]
    keys = ("trades", "pnl_pct", "max_drawdown_pct", "sharpe_hourly_annualised", "turnover", "hit_rate",
            "avg_hold_min")
    lines = ["# regime_hazard: baseline (A+B) vs enhanced (A+B+C)", "",
             f"Data: {report['data']['trades']} trades, {report['data']['first']} -> {report['data']['last']}; "
             f"costs {report['costs']['fee_bps']} bps fee + {report['costs']['slippage_bps']} bps slippage per fill.",
             "", "| metric | baseline | enhanced |", "|---|---|---|"]
    lines += [f"| {k} | {_cell(b[k])} | {_cell(e[k])} |" for k in keys]
    lines += ["", "## Per segment (walk-forward; segment 0 trades without models)", "",
              "| segment | start | baseline trades | baseline pnl % | enhanced trades | enhanced pnl % |",
              "|---|---|---|---|---|---|"]
    for sb, se in zip(b["per_segment"], e["per_segment"], strict=True):
        lines.append(f"| {sb['segment']} | {sb['start']} | {sb['trades']} | {sb['pnl_pct']} | {se['trades']} | "
                     f"{se['pnl_pct']} |")
    lines += ["", "## Decisions", "", f"- baseline: {b['decisions']}", f"- enhanced: {e['decisions']}",
              f"- exits by kind, baseline: {b['trades_by_exit']}; enhanced: {e['trades_by_exit']}",
              f"- regime bars: {report['regime_bars']} ({report['regime_switches']} switches)", "",
              "## Models (walk-forward, purged + embargo)", ""]
    for name in ("meta", "hazard"):
        for row in report["models"][name]:
            lines.append(f"- {name} from {pd.Timestamp(row['valid_from'], tz='UTC').isoformat()}: "
                         f"{row['samples']} samples, {row['positives']} positive, trained: {row['trained']}")
    st = report["regime_study"]
    if st is not None:
        lines += ["", f"## Layer A alone on {st['dataset']} ({st['bars']} bars, {st['first']} -> {st['last']})", "",
                  f"Next {st['horizon_bars']} bars per regime; trend payoff = sign of the regime window's move x the "
                  "next return (> 0: moves persist, < 0: they revert).", "",
                  "| regime | bars | share | mean abs next return (bps) | trend payoff (bps) |", "|---|---|---|---|---|"]
        lines += [f"| {k} | {v['bars']} | {v['share']} | {v['mean_abs_fwd_bps']} | {v['trend_payoff_bps']} |"
                  for k, v in st["by_regime"].items()]
        lines += ["", f"Switches: {st['switches']} with hysteresis, {st['switches_without_hysteresis']} without."]
    la = report["lookahead"]
    lines += ["", "## Lookahead detector", ""]
    if la is None:
        lines.append("- not run (lookahead.cuts = 0)")
    else:
        lines += [f"- layer {k}: {'ok' if la[k]['ok'] else 'LOOKAHEAD'} ({la[k]['violations']} violations)"
                  for k in ("A", "B", "C")]
        lines.append(f"- {len(la['cuts'])} cuts, {la['records_checked']} records compared")
    return "\n".join(lines) + "\n"


def run(config_path: str | Path, out: str | Path) -> dict[str, Any]:
    """Run the system from its config and write the outputs into ``out``; return the report.

    Raises
    ------
    ConfigError
        ``data.trades`` is no file, ``regime_study.dataset`` not in its catalog (named with ``config_path``).
    """
    config, base = load_config(config_path)
    trades_path = Path(config.data.trades)
    trades_path = trades_path if trades_path.is_absolute() else base / trades_path
    if not trades_path.is_file():
        raise ConfigError(f"{config_path}: data.trades: no such file {trades_path}")
    frame = load_trades(trades_path)
    try:  # before the pipeline: a dataset missing is told at once
        study = regime_study(config.regime_study, base) if config.regime_study is not None else None
    except ConfigError as exc:
        raise ConfigError(f"{config_path}: {exc}") from None
    result = run_pipeline(frame, config)
    lookahead = lookahead_by_layer(frame, config) if config.lookahead.cuts else None
    report = build_report(result, config, frame, lookahead, study)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(report, out / "report.json")
    write_text(out / "report.md", _markdown(report))
    for name, res in (("baseline", result.baseline), ("enhanced", result.enhanced)):
        write_text(out / f"decisions_{name}.jsonl",
                   "".join(json_text(d.to_dict(), indent=None) + "\n" for d in res.system.decisions))
        write_text(out / f"trades_{name}.csv", res.trades.to_csv(index=False, float_format="%.10g"))
    write_json(models_document(config.params, result.meta, result.hazard), out / "models.json", indent=1)
    return report

