"""One trial of a sweep, as run inside a worker: config + overrides -> backtest -> metrics row.

A :class:`TrialSpec` holds only paths and text (the config file, ``--set`` style
overrides, the stress variant): the worker reads the config and the catalog data itself,
so nothing but a few hundred bytes travels from the driver to a worker and back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import yaml

from tradebus.errors import ConfigError, TradebusError
from tradebus.reports.metrics import format_ns
from tradebus.sweep.stress import StressVariant

__all__ = ["METRIC_COLUMNS", "TIMING_COLUMNS", "TrialSpec", "override_text", "run_trial"]

#: Metrics of ``metrics.json`` kept per trial: name -> Arrow type.
METRIC_COLUMNS: dict[str, str] = {
    "total_return": "float64",
    "cagr": "float64",
    "annualised_volatility": "float64",
    "sharpe": "float64",
    "sortino": "float64",
    "max_drawdown": "float64",
    "calmar": "float64",
    "hit_rate": "float64",
    "profit_factor": "float64",
    "turnover": "float64",
    "exposure": "float64",
    "fees_paid": "float64",
    "final_equity": "float64",
    "bars": "int64",
    "trades": "int64",
    "orders": "int64",
    "denied": "int64",
    "fills": "int64",
    "round_trips": "int64",
}
#: Columns that measure time, not results (they differ between two runs of one sweep).
TIMING_COLUMNS = ("worker_s", "worker_cpu_s", "wall_s")


@dataclass(frozen=True, slots=True)
class TrialSpec:
    """What a worker needs to run one trial.

    Attributes
    ----------
    number
        Trial number (grid index or Optuna trial number).
    config_path
        The run config (absolute path).
    params
        ``{dotted path: value}`` of the swept parameters.
    window
        ``(start, end)`` ns of the replayed data, or ``None`` for the config's own.
    stress
        A stress variant as a dict (:class:`StressVariant`), or ``None``.
    keep_equity
        Return the equity curve (``[(ts, equity)]``) too.
    """

    number: int
    config_path: str
    params: dict[str, Any]
    window: tuple[int, int] | None = None
    stress: dict[str, Any] | None = None
    keep_equity: bool = False

    def overrides(self) -> list[str]:
        """The ``--set`` overrides of this trial (parameters, then the window)."""
        out = [override_text(path, value) for path, value in self.params.items()]
        if self.window is not None:
            out += [override_text("data.start", format_ns(self.window[0])),
                    override_text("data.end", format_ns(self.window[1]))]
        return out


def override_text(path: str, value: Any) -> str:
    """``"path=value"`` with the value written as YAML, for :func:`tradebus.config.apply_overrides`."""
    text = yaml.safe_dump([value], default_flow_style=True, width=10_000).strip()
    return f"{path}={text[1:-1]}"


def run_trial(spec: TrialSpec) -> dict[str, Any]:
    """Run one trial; return its row: ``trial``, ``status``, ``error``, metrics, ``worker_s`` and ``worker_cpu_s``.

    ``status`` is ``"ok"``, ``"invalid"`` (the parameters make an invalid config, e.g.
    ``fast >= slow``; ``error`` says why) or ``"failed"`` (the run raised a tradebus error).
    Metrics of a trial that did not run are ``None``.
    """
    from tradebus.cli import build_kernel, build_replay
    from tradebus.config import load_config
    from tradebus.reports.metrics import compute_metrics

    t0, cpu0 = time.perf_counter(), time.process_time()
    row: dict[str, Any] = {"trial": spec.number, "status": "ok", "error": None}
    equity: list[tuple[int, float]] = []
    try:
        config = load_config(spec.config_path, overrides=spec.overrides())
    except ConfigError as exc:
        row.update(status="invalid", error=str(exc).split(":", 1)[-1].strip())
        config = None
    if config is not None:
        try:
            variant = StressVariant.model_validate(spec.stress) if spec.stress is not None else None
            if variant is not None:
                config = variant.apply_config(config)
            kernel = build_kernel(config)
            replay = build_replay(config)
            result = kernel.run(variant.wrap(replay) if variant is not None else replay)
            lot_sizes = {iid: inst.lot_size for iid, inst in kernel.instruments.items()}
            metrics = compute_metrics(result, lot_sizes)
            row.update({name: metrics.get(name) for name in METRIC_COLUMNS})
            if spec.keep_equity:
                equity = [(s.ts, s.equity) for s in result.equity]
        except TradebusError as exc:
            row.update(status="failed", error=str(exc))
    for name in METRIC_COLUMNS:
        row.setdefault(name, None)
    row["worker_s"] = time.perf_counter() - t0
    row["worker_cpu_s"] = time.process_time() - cpu0
    if spec.keep_equity:
        row["equity"] = equity
    return row
