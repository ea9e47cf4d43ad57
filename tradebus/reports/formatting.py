"""How a metric is shown: the one formatter of the printed summary and the tearsheet.

Amounts in the quote (reporting) currency are shown to the quote's precision -- the number
of decimals of the finest ``tick_size`` among the run's instruments, at least 2 -- so a
coin-quoted run shows ``100,000.00`` and not ``99,999.99999999997``. Rates are shown as
percentages with two decimals, ratios with three, counts as integers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

__all__ = ["MONEY", "PERCENT", "RATIO", "format_metric", "quote_decimals"]

#: Metrics that are fractions, shown as percentages.
PERCENT = frozenset(
    {"total_return", "cagr", "annualised_volatility", "max_drawdown", "hit_rate", "exposure", "benchmark_return"}
)
#: Metrics that are amounts of the quote (reporting) currency.
MONEY = frozenset(
    {"initial_cash", "final_equity", "average_win", "average_loss", "fees_paid", "funding_paid", "pnl", "net_pnl"}
)
#: Metrics that are ratios (no unit).
RATIO = frozenset({"sharpe", "sortino", "calmar", "profit_factor", "turnover"})


def quote_decimals(tick_sizes: Iterable[float]) -> int:
    """Decimals of the finest tick size (at least 2; 2 when there is none)."""
    decimals = 2
    for tick in tick_sizes:
        if tick and math.isfinite(tick) and tick > 0.0:
            exponent = Decimal(repr(float(tick))).normalize().as_tuple().exponent
            decimals = max(decimals, -int(exponent))
    return decimals


def format_metric(key: str, value: Any, decimals: int = 2, reasons: Mapping[str, str] | None = None) -> str:
    """The text of metric ``key`` (see the module doc); ``-`` with its reason when it is ``None``."""
    if value is None:
        reason = (reasons or {}).get(key)
        return f"- ({reason})" if reason else "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, int):
        return f"{value:,}"
    if not isinstance(value, float):
        return str(value)
    if key in PERCENT:
        return f"{value * 100:,.2f} %"
    if key in MONEY:
        return f"{value:,.{decimals}f}"
    if key in RATIO:
        return f"{value:,.3f}"
    return f"{value:,.4f}"
