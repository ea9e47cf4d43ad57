"""How a metric is shown: the one formatter of the printed summary and the tearsheet.

Amounts in the reporting currency (the first instrument's quote asset) are shown to that
asset's precision: cents (2 decimals) for fiat and stablecoins (:data:`CASH_QUOTES`), 8
decimals (a satoshi) for a coin -- so a USDT-quoted run shows ``100,000.00`` and not
``99,999.99999999997``, and a BTC-quoted one ``1.23456789``. Rates are shown as
percentages with two decimals, ratios with three, spans of time in the unit that reads best
(:func:`format_duration`: ``38 s``, ``25.0 min``, ``6.5 h``, ``12.5 days``), counts as integers, amounts
per asset (``fees_unvalued``) as ``0.0012 BNB``.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

__all__ = [
    "CASH_QUOTES", "DAYS", "MONEY", "PERCENT", "RATIO", "format_duration", "format_metric", "metric_label",
    "quote_decimals",
]

#: Quote assets whose amounts are shown in cents.
CASH_QUOTES = frozenset(
    {"USD", "USDT", "USDC", "BUSD", "FDUSD", "TUSD", "USDP", "DAI", "USDE", "EUR", "GBP", "AUD", "CAD", "CHF", "TRY"}
)
#: Metrics that are fractions, shown as percentages.
PERCENT = frozenset(
    {"total_return", "cagr", "annualised_volatility", "max_drawdown", "hit_rate", "exposure", "benchmark_return"}
)
#: Metrics that are amounts of the quote (reporting) currency.
MONEY = frozenset(
    {
        "initial_cash", "final_equity", "average_win", "average_loss", "fees_paid", "funding_paid", "interest_paid",
        "insurance_fund_cover", "pnl", "net_pnl",
    }
)
#: Metrics that are spans of days (shown by :func:`format_duration`).
DAYS = frozenset({"longest_drawdown_days"})
#: Metrics that are ratios (no unit).
RATIO = frozenset({"sharpe", "sortino", "calmar", "profit_factor", "turnover"})
# Labels that differ from the metrics.json key: its ``trades`` are the market trades the run saw,
# and "trades" on a page or in the summary are the round trips of trades.csv; its ``exposure`` is the
# time in market, not the size of the positions (the tearsheet's net exposure chart).
_LABELS = {"trades": "market trades", "exposure": "exposure (time in market)"}


def metric_label(key: str) -> str:
    """The label of metrics.json key ``key`` in the summary and on the pages."""
    return _LABELS.get(key, key)


def format_duration(seconds: float) -> str:
    """A span of ``seconds`` in the unit that reads best: ``38 s`` below a minute, ``25.0 min`` below an hour,
    ``6.5 h`` below a day, else ``12.5 days``; a span that rounds to the next unit's one is written in it
    (3599 s: ``1.0 h``), a fraction of a second without an exponent (``0.00001 s``)."""
    text = format(Decimal(f"{seconds:.3g}"), "f")  # 3 significant digits, 1e-05 as 0.00001
    if abs(float(text)) < 60:
        return f"{text} s"
    if abs(round(seconds / 60, 1)) < 60:
        return f"{seconds / 60:.1f} min"
    if abs(round(seconds / 3600, 1)) < 24:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:,.1f} days"


def quote_decimals(quote: str | None) -> int:
    """Decimals of amounts of the asset ``quote``: 2 for fiat and stablecoins (and unknown), else 8."""
    if not quote or quote.upper() in CASH_QUOTES:
        return 2
    return 8


def format_metric(key: str, value: Any, decimals: int = 2, reasons: Mapping[str, str] | None = None) -> str:
    """The text of metric ``key`` (see the module doc); ``-`` with its reason when it is ``None``."""
    if value is None:
        reason = (reasons or {}).get(key)
        return f"- ({reason})" if reason else "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, Mapping):  # amounts per asset (fees_unvalued)
        return ", ".join(f"{amount:.10g} {asset}" for asset, amount in value.items())
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
    if key in DAYS:
        return format_duration(value * 86_400)
    return f"{value:,.4f}"
