"""Trade-log analysis: round trips with their exit reason, PnL by reason, hold times and tails.

Round trips come from :func:`tradebus.reports.metrics.round_trips` (average-cost
accounting, fees included). A trip's *exit reason* is the submit reason of the fill that
closed it (not of another fill at the same time, such as the next trip's entry):
``"bracket stop-loss"``, ``"bracket take-profit"`` and ``"timed exit"`` from
:mod:`tradebus.execution.contingent`, mapped to ``stop``, ``take_profit`` and ``timed``;
any other reason is kept as it is (a strategy's own exit).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from tradebus.engine.kernel import FillRecord
from tradebus.reports.metrics import round_trips

__all__ = ["EXIT_REASONS", "trade_log", "trade_summary"]

#: Submit reason of a contingent exit -> its short name.
EXIT_REASONS = {"bracket stop-loss": "stop", "bracket take-profit": "take_profit", "timed exit": "timed"}

_COLUMNS = ["instrument_id", "entry_ns", "exit_ns", "side", "net_pnl", "pnl", "fees", "exit_reason", "hold_bars"]


def trade_log(fills: Sequence[FillRecord], bar_ns: int | None = None,
              fill_bars: Mapping[str, int] | None = None, *, contract_sizes: Mapping[str, float] | None = None,
              lot_sizes: Mapping[str, float] | None = None) -> pd.DataFrame:
    """One row per closed round trip: times, side, PnL (gross, fees, net), exit reason, hold.

    Parameters
    ----------
    fills
        The run's fills in time order.
    bar_ns
        Bar interval; ``hold_bars = (exit_ns - entry_ns) / bar_ns`` when given and ``fill_bars`` is not.
    fill_bars
        ``trade_id -> position`` of the bar each fill came on (as
        :attr:`~tradebus.research.edge_strategy.EdgeGated.fill_bars`): ``hold_bars`` is the exit
        fill's bar position less the entry fill's, a count of bars whatever their times (bars
        sharing a time, irregular bars). ``hold_bars`` is NaN with neither.
    contract_sizes, lot_sizes
        ``instrument_id -> contract size`` (what a price move is worth per unit of quantity; 1 when
        absent) and ``-> lot size`` (a position within a thousandth of it is flat), as for
        :func:`~tradebus.reports.metrics.round_trips`.

    Raises
    ------
    KeyError
        A trip's entry or exit fill missing from ``fill_bars``.
    """
    rows = []
    for trip in round_trips(list(fills), dict(lot_sizes or {}), dict(contract_sizes or {})):
        if not trip.closed or trip.exit_fill is None:
            continue
        reason = trip.exit_fill.reason
        if fill_bars is not None and trip.entry_fill is not None:
            hold = float(fill_bars[trip.exit_fill.trade_id] - fill_bars[trip.entry_fill.trade_id])
        else:
            hold = (trip.exit_ns - trip.entry_ns) / bar_ns if bar_ns else float("nan")
        rows.append((trip.instrument_id, trip.entry_ns, trip.exit_ns, "long" if trip.direction > 0 else "short",
                     trip.net_pnl, trip.pnl, trip.fees, EXIT_REASONS.get(reason, reason), hold))
    return pd.DataFrame(rows, columns=_COLUMNS)


def _stats(net: np.ndarray) -> dict[str, Any]:
    return {"trades": len(net), "net_pnl": float(net.sum()), "mean": float(net.mean()) if len(net) else None,
            "win_rate": float((net > 0).mean()) if len(net) else None}


def trade_summary(log: pd.DataFrame) -> dict[str, Any]:
    """Totals, per exit reason and per side, hold times and the tails of the net PnL per trade."""
    net = log["net_pnl"].to_numpy(dtype=np.float64)
    out: dict[str, Any] = {"all": _stats(net)}
    out["by_exit_reason"] = {reason: _stats(group["net_pnl"].to_numpy(dtype=np.float64))
                             for reason, group in log.groupby("exit_reason", sort=True)}
    out["by_side"] = {side: _stats(group["net_pnl"].to_numpy(dtype=np.float64))
                      for side, group in log.groupby("side", sort=True)}
    hold = log["hold_bars"].to_numpy(dtype=np.float64)
    out["hold_bars"] = ({"mean": float(np.mean(hold)), "median": float(np.median(hold)), "max": float(np.max(hold))}
                        if len(hold) else None)
    if len(net):
        qs = (0.01, 0.05, 0.5, 0.95, 0.99)
        worst = np.sort(net)
        losses = -net[net < 0]
        out["tails"] = {
            "quantiles": {f"q{int(q * 100):02d}": float(np.quantile(net, q)) for q in qs},
            "worst": [float(v) for v in worst[:3]],
            "best": [float(v) for v in worst[::-1][:3]],
            "worst_trade_share_of_losses": float(losses.max() / losses.sum()) if losses.sum() > 0 else None,
        }
    else:
        out["tails"] = None
    return out
