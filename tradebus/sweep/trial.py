"""One trial of a sweep, as run inside a worker: config + overrides -> backtest -> metrics row.

A :class:`TrialSpec` holds only paths and text (the config file, ``--set`` style
overrides, the stress variant): the worker reads the config and the catalog data itself,
so nothing but a few hundred bytes travels from the driver to a worker and back. A worker
keeps the bars of its last few data selections for its next accelerated trials (re-read
once a file they came from changes).
"""

from __future__ import annotations

import os
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from tradebus.errors import ConfigError, StrategyError, TradebusError
from tradebus.reports.metrics import EquityCurve, format_ns
from tradebus.sweep.stress import StressVariant

if TYPE_CHECKING:
    from tradebus.data.replay import Replay
    from tradebus.engine.accelerated import BarArrays

__all__ = ["METRIC_COLUMNS", "TIERS", "TIMING_COLUMNS", "TrialSpec", "override_text", "run_trial"]

#: How a trial's backtest runs: ``event`` (:meth:`Kernel.run`), ``accelerated``
#: (:func:`~tradebus.engine.accelerated.run_accelerated`; an error when the strategy or config
#: does not allow it) or ``auto`` (accelerated when allowed, else event).
TIERS = ("auto", "event", "accelerated")

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
    tier
        One of :data:`TIERS`; the row's ``tier`` says which one ran.
    """

    number: int
    config_path: str
    params: dict[str, Any]
    window: tuple[int, int] | None = None
    stress: dict[str, Any] | None = None
    keep_equity: bool = False
    tier: str = "auto"

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
    """Run one trial; return its row: ``trial``, ``status``, ``error``, ``tier``, metrics, ``worker_s``, ``worker_cpu_s``.

    ``status`` is ``"ok"``, ``"invalid"`` (the parameters make an invalid config, e.g.
    ``fast >= slow``; ``error`` says why) or ``"failed"`` (the run raised: a tradebus error's
    message, or any other exception's type, message and the line that raised it).
    Metrics of a trial that did not run are ``None``.
    """
    from tradebus.config import load_config
    from tradebus.reports.metrics import compute_metrics

    t0, cpu0 = time.perf_counter(), time.process_time()
    row: dict[str, Any] = {"trial": spec.number, "status": "ok", "error": None, "tier": None}
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
                variant.check_data(config)
                config = variant.apply_config(config)
            kernel, result, row["tier"], curve = run_tier(config, variant, spec.tier)
            lot_sizes = {iid: inst.lot_size for iid, inst in kernel.instruments.items()}
            metrics = compute_metrics(result, lot_sizes, equity=curve)
            row.update({name: metrics.get(name) for name in METRIC_COLUMNS})
            if spec.keep_equity:
                equity = list(zip(curve.ts.tolist(), curve.equity.tolist(), strict=True))
        except StrategyError as exc:  # the row names the trial; the exception and its line say the rest
            row.update(status="failed", error=_describe(exc.__cause__ if isinstance(exc.__cause__, Exception) else exc))
        except TradebusError as exc:
            row.update(status="failed", error=str(exc))
        except Exception as exc:  # a bug in a strategy (or the engine) at these parameters: the row says where
            row.update(status="failed", error=_describe(exc))
    for name in METRIC_COLUMNS:
        row.setdefault(name, None)
    row["worker_s"] = time.perf_counter() - t0
    row["worker_cpu_s"] = time.process_time() - cpu0
    if spec.keep_equity:
        row["equity"] = equity
    return row


def _describe(exc: Exception) -> str:
    """``"ZeroDivisionError: message (at file.py:12 in on_bar)"``: an exception and the line that raised it."""
    text = f"{type(exc).__name__}: {exc}"
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        text += f" (at {last.filename}:{last.lineno} in {last.name})"
    return text


def run_tier(config: Any, variant: StressVariant | None, tier: str) -> tuple[Any, Any, str, EquityCurve]:
    """Run ``config``'s backtest in ``tier``; return ``(kernel, result, tier that ran, equity curve)``.

    The accelerated tier leaves ``result.equity`` empty: its samples come as the curve's columns,
    which is all a trial reads of them.

    ``auto`` runs the accelerated tier when :func:`~tradebus.engine.accelerated.unsupported`
    allows it, and the event tier otherwise or when the accelerated run meets something it does
    not model (an order below the instrument's minimum quantity, a liquidation); both give the same result where
    both run.

    Raises
    ------
    ConfigError
        ``tier: accelerated`` for a run the accelerated tier cannot do (says why), or an unknown tier.
    """
    from tradebus.cli import build_kernel, build_replay, perpetual_data
    from tradebus.engine.accelerated import AcceleratedUnsupported, BarArrays, collect, simulate, unsupported

    if tier not in TIERS:
        raise ConfigError(f"tier: {tier!r} is not one of {', '.join(TIERS)}")

    def replay() -> Any:
        source = build_replay(config)
        return variant.wrap(source) if variant is not None else source

    def new_kernel() -> Any:
        if variant is None or not (config.data.marks or config.data.funding):
            return build_kernel(config)
        return build_kernel(config, variant.shock_marks(perpetual_data(config)))

    kernel = new_kernel()
    if tier != "event":
        why = unsupported(kernel)
        if why is None:
            try:
                iid = kernel.strategies[0].instrument_ids[0]
                bars = BarArrays.from_replay(replay(), iid) if variant is not None else _bars(build_replay(config), iid)
                run = simulate(kernel, bars)
                collect(kernel, bars, run, equity=False)
                curve = EquityCurve(run.sample_ts, np.ascontiguousarray(run.sample_values[:, 0]))
                return kernel, kernel.result, "accelerated", curve
            except AcceleratedUnsupported as exc:
                if tier == "accelerated":
                    raise ConfigError(f"tier: accelerated: {exc}") from None
            kernel = new_kernel()  # the accelerated attempt used this one up
        elif tier == "accelerated":
            raise ConfigError(f"tier: accelerated: {why}; use tier: event or auto")
        else:
            kernel = new_kernel()  # the check ran on_start with the clock at 0: start anew at the first bar
    result = kernel.run(replay())
    return kernel, result, "event", EquityCurve.of(result.equity)


#: The bars of the last data selections this worker process read, by :func:`_data_key`: the
#: trials of a sweep replay the same data, and reading it is most of an accelerated trial.
#: At most ``_BARS_KEPT`` selections and ``_BARS_BYTES`` bytes.
_BARS: OrderedDict[tuple[Any, ...], BarArrays] = OrderedDict()
_BARS_KEPT = 4
#: At most this many bytes of bars kept (beyond it only the latest read stays).
_BARS_BYTES = 1 << 30


def _bars(replay: Replay, instrument_id: str) -> BarArrays:
    """:meth:`BarArrays.from_replay <tradebus.engine.accelerated.BarArrays.from_replay>`, kept for the next trials.

    Kept under :func:`_data_key`, so a file rewritten since (a new catalog version, an edited
    CSV) is read again; a replay that verifies hashes is always read.
    """
    from tradebus.engine.accelerated import BarArrays

    with replay.pinned() as opened:  # the key and the bars read are those of one version of each catalog dataset
        key = None if replay.verify else _data_key(replay, instrument_id, opened)
        bars = _BARS.get(key) if key is not None else None
        if bars is None:
            bars = BarArrays.from_replay(replay, instrument_id)
            if key is not None:
                _BARS[key] = bars
                while len(_BARS) > 1 and (len(_BARS) > _BARS_KEPT or _kept_bytes() > _BARS_BYTES):
                    _BARS.popitem(last=False)
        else:
            _BARS.move_to_end(key)
    return bars


def _kept_bytes() -> int:
    return sum(column.nbytes for bars in _BARS.values() for column in vars(bars).values())


def _data_key(replay: Replay, instrument_id: str, opened: dict[int, tuple[Any, list[Any]]]) -> tuple[Any, ...]:
    """What the bars of ``replay`` depend on: its range, and every source with the identity of each file it reads.

    A file is identified by path, inode, modification time and size (a catalog writes new
    files and renames them into place); a catalog source by the files ``opened`` holds open for the read
    (:meth:`Replay.pinned <tradebus.data.replay.Replay.pinned>`), the very files its bars are read from.
    """
    key: list[Any] = [instrument_id, replay.start_ns, replay.end_ns]
    for i, src in enumerate(replay.sources):
        if src.path is not None:
            files = [(Path(src.path), Path(src.path).stat())]
        else:
            files = [(path, os.fstat(handle.fileno())) for path, _, handle in opened[i][1]]
        key.append((src.instrument_id, src.kind, src.interval, src.ts_unit, src.bar_time))
        for path, st in files:
            key.append((str(path), st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(key)
