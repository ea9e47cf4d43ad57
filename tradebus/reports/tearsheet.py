"""The HTML tearsheet of a run: one self-contained file (plotly, with plotly.js inlined).

Sections: the metrics table (annualisation stated), equity with its high-water mark and a
buy-and-hold benchmark, drawdown, the underwater plot, monthly returns, rolling Sharpe and
volatility, the distribution of returns, each instrument's price with the trades' entries
and exits, the net exposure (position value / equity: not metrics.json's ``exposure``, the time in
market), fees (and funding and borrowing interest, when the run paid or received any), the
per-instrument table, the trade list, and the stress variants when the run directory holds
``stress.json``.

The page needs no network: plotly.js is inlined once and every figure is drawn from data
embedded in the page. Figure ids are fixed, so the same run gives the same bytes.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from tradebus.reports.formatting import format_duration, format_metric
from tradebus.reports.metrics import (
    EquityCurve,
    daily_returns,
    last_of_each_day,
    periods_per_year,
    returns_flat,
    simple_returns,
)
from tradebus.reports.rundata import RunData, buy_and_hold, buy_and_hold_curve, load_run, refuse_run_file
from tradebus.reports.summary import INSTRUMENT_COLUMNS, instrument_rows, summary_rows
from tradebus.reports.writers import REPORT_FILE, write_file

__all__ = [
    "ANNUALISATION_NOTE",
    "MAX_POINTS",
    "MAX_TRADE_ROWS",
    "daily_closes",
    "daily_return_series",
    "figure_html",
    "page",
    "render_tearsheet",
    "table",
    "write_html",
    "write_tearsheet",
]

_YEAR_DAYS = 365
#: How the tearsheet and the metrics annualise (shown under the metrics table).
ANNUALISATION_NOTE = (
    "Annualised with 365 periods a year (crypto trades every day): volatility, Sharpe and Sortino from daily "
    "returns × √365 (× √(365 / d) when the equity is sampled every d days), CAGR over a 365-day year; risk-free "
    "rate 0. Runs shorter than 30 days have no annualised figures."
)
#: Time series with more samples than this are drawn from this many evenly spaced buckets
#: (the last sample of each; the deepest drawdown of each in the underwater plot).
MAX_POINTS = 3000
#: The trade list shows at most this many trades (the first ones); trades.csv has them all.
MAX_TRADE_ROWS = 500
_PLOT_CONFIG = {"displaylogo": False, "responsive": True}
_LAYOUT = {"template": "plotly_white", "margin": {"l": 60, "r": 20, "t": 40, "b": 40}, "hovermode": "x unified"}
_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1f2933;background:#f7f8fa}
header{background:#1f2933;color:#fff;padding:14px 24px}header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;font-size:13px;color:#cbd2d9}
main{padding:12px 24px;max-width:1400px;margin:auto}
section{background:#fff;border:1px solid #e4e7eb;border-radius:6px;margin:12px 0;padding:10px 14px}
h2{font-size:16px;margin:4px 0 8px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:12px}
table{border-collapse:collapse;font-size:13px}td,th{padding:3px 10px;border-bottom:1px solid #eef0f2;text-align:right}
th{background:#f0f2f5}td:first-child,th:first-child{text-align:left}
.metrics td:nth-child(3){padding-left:28px}.metrics td[data-metric]{max-width:260px;overflow:hidden}.note{font-size:12px;color:#616e7c}
.scroll{max-height:420px;overflow:auto}
"""


def daily_closes(run: RunData) -> pd.Series:
    """Equity at the last sample of each UTC day (the closes the metrics' daily returns use)."""
    if run.equity.empty:
        return pd.Series(dtype=float)
    series = run.equity.set_index("dt")["equity"]
    return series.groupby(series.index.floor("D")).last()


def _initial(run: RunData, closes: pd.Series) -> float:
    return float(run.metrics.get("initial_cash") or (closes.iloc[0] if len(closes) else 1.0))


def _curve(run: RunData) -> EquityCurve:
    return EquityCurve(run.equity["ts"].to_numpy(np.int64), run.equity["equity"].to_numpy(np.float64))


def daily_return_series(run: RunData) -> pd.Series:
    """The metrics' daily returns (:func:`~tradebus.reports.metrics.daily_returns`) by UTC day.

    A day whose previous close is at or below 0 has no return (left out), as in the metrics.
    """
    closes = daily_closes(run)
    if closes.empty:
        return pd.Series(dtype=float)
    returns = pd.Series(daily_returns(_curve(run), _initial(run, closes)), index=closes.index)
    return returns[np.isfinite(returns)]


def _thin(frame: pd.DataFrame, deepest: str | None = None) -> pd.DataFrame:
    """At most :data:`MAX_POINTS` rows: the last of each bucket (the largest ``deepest`` of it)."""
    if len(frame) <= MAX_POINTS:
        return frame
    buckets = np.arange(len(frame)) * MAX_POINTS // len(frame)
    grouped = frame.groupby(buckets, sort=True)
    thinned = grouped.last()
    if deepest is not None:
        thinned[deepest] = grouped[deepest].max()
    return thinned.reset_index(drop=True)


def figure_html(fig: go.Figure, div_id: str, height: int = 380) -> str:
    """The ``<div>`` of one figure (plotly.js not included; fixed id for byte-identical pages)."""
    fig.update_layout(height=height, **_LAYOUT)
    return pio.to_html(fig, include_plotlyjs=False, full_html=False, div_id=div_id, config=_PLOT_CONFIG)


def table(
    columns: Sequence[str], rows: Iterable[Sequence[Any]], *, css: str = "", cell_attrs: Sequence[str] | None = None
) -> str:
    """An HTML table; ``cell_attrs[n]`` (already escaped attribute text) is added to every row's n-th cell."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for n, value in enumerate(row):
            attrs = f" {cell_attrs[n]}" if cell_attrs and n < len(cell_attrs) and cell_attrs[n] else ""
            cells.append(f"<td{attrs}>{html.escape(str(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    klass = f' class="{css}"' if css else ""
    return f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _metrics_table(run: RunData) -> str:
    reasons = run.metrics.get("null_reasons", {}) or {}
    cells = []
    for key, label, text in summary_rows(run):
        attrs = f' data-metric="{html.escape(key)}"' if key is not None else f' data-derived="{html.escape(label)}"'
        if key is not None and run.metrics.get(key) is None and key in reasons:
            attrs += f' title="{html.escape(reasons[key])}"'
        cells.append(f"<td>{html.escape(label)}</td><td{attrs}>{html.escape(text)}</td>")
    half = (len(cells) + 1) // 2
    rows = [cells[n] + (cells[n + half] if n + half < len(cells) else "<td></td><td></td>") for n in range(half)]
    body = "".join(f"<tr>{row}</tr>" for row in rows)
    return (
        f'<table class="metrics"><tbody>{body}</tbody></table>'
        f'<p class="note" id="annualisation">{html.escape(ANNUALISATION_NOTE)}</p>'
    )


def _benchmark_curve(run: RunData, initial: float) -> pd.Series | None:
    curve = buy_and_hold_curve(run, initial)
    if curve is None:
        return None
    return _thin(curve.rename("v").reset_index()).set_index("dt")["v"]


def _equity_figures(run: RunData) -> list[str]:
    full = run.equity
    initial = float(run.metrics.get("initial_cash") or (full["equity"].iloc[0] if len(full) else 0.0))
    full = full.assign(peak=full["equity"].cummax().clip(lower=initial))
    full["below"] = full["equity"] - full["peak"]
    eq = _thin(full.assign(neg_below=-full["below"]), "neg_below")
    eq["below"] = -eq["neg_below"]
    under_frame = _thin(full, "drawdown") if "drawdown" in full else full
    peak = eq["peak"]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.04)
    fig.add_trace(go.Scatter(x=eq["dt"], y=eq["equity"], name="equity", line={"color": "#1f77b4"}), row=1, col=1)
    fig.add_trace(go.Scatter(x=eq["dt"], y=peak, name="high-water mark", line={"color": "#9aa5b1", "dash": "dot"}),
                  row=1, col=1)
    bench = _benchmark_curve(run, initial)
    if bench is not None:
        fig.add_trace(go.Scatter(x=bench.index, y=bench.values, name="buy & hold", line={"color": "#f0a202"}),
                      row=1, col=1)
    fig.add_trace(go.Scatter(x=eq["dt"], y=eq["below"], name="drawdown", fill="tozeroy",
                             line={"color": "#d64545"}), row=2, col=1)
    top = max(float(eq["equity"].max()), float(bench.max()) if bench is not None else 0.0) if len(eq) else 0.0
    low = min(float(eq["equity"].min()), float(bench.min()) if bench is not None else math.inf) if len(eq) else 0.0
    log = low > 0.0 and top / low > 20.0
    fig.update_yaxes(title_text="equity (log)" if log else "equity", type="log" if log else "linear", row=1, col=1)
    fig.update_yaxes(title_text="drawdown", row=2, col=1)
    under = make_subplots()
    under.add_trace(go.Scatter(x=under_frame["dt"], y=-under_frame["drawdown"] * 100.0 if "drawdown" in full else [],
                               name="underwater",
                               fill="tozeroy", line={"color": "#d64545"}))
    under.update_yaxes(title_text="% below the high-water mark")
    return [
        _section("Equity and drawdown", figure_html(fig, "fig-equity", 460)),
        _section("Underwater", figure_html(under, "fig-underwater", 280)),
    ]


def _monthly_figure(run: RunData) -> str:
    closes = daily_closes(run)
    if closes.empty:
        return _section("Monthly returns", '<p class="note">no equity samples</p>')
    month_ends = closes.groupby([closes.index.year, closes.index.month]).last()
    previous = month_ends.shift(1)
    previous.iloc[0] = _initial(run, closes)
    returns = pd.Series(simple_returns(month_ends.to_numpy(), previous.to_numpy()) * 100.0, index=month_ends.index)
    years = sorted({y for y, _ in returns.index})
    grid = [[returns.get((y, m), np.nan) for m in range(1, 13)] for y in years]
    z = [[None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), 4) for v in row]
         for row in grid]
    months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    fig = go.Figure(go.Heatmap(z=z, x=months, y=[str(y) for y in years], colorscale="RdYlGn", zmid=0.0,
                               texttemplate="%{z:.1f}", hovertemplate="%{y} %{x}: %{z:.2f} %<extra></extra>",
                               colorbar={"title": {"text": "%"}}))
    fig.update_yaxes(autorange="reversed", type="category")
    return _section("Monthly returns (%)", figure_html(fig, "fig-monthly", 120 + 28 * len(years)))


def _period_name(ns: int) -> str:
    """``"daily"``, ``"7-day"``, ``"36-hour"``: the name of returns ``ns`` apart."""
    for unit_ns, unit in ((86_400 * 10**9, "day"), (3600 * 10**9, "hour"), (60 * 10**9, "minute")):
        if ns % unit_ns == 0:
            return "daily" if ns == unit_ns and unit == "day" else f"{ns // unit_ns}-{unit}"
    return f"{ns / 1e9:g}-second"


def _returns_named(run: RunData, periods: float) -> tuple[str, str, int | None]:
    """The daily returns' name (``"7-day returns"``), the rolling section's title, its count a year ``periods``, and
    the days between every two closes (``None``: not the same number of days between all of them).

    The closes a whole number of days apart (a close every day, or every d days with ``equity_interval: 7d``)
    are ``365 / d`` returns of d days a year. Otherwise the metrics' annualisation counts ``365 / d`` periods a
    year, d the mean number of days between the closes' dates (:func:`periods_per_year`), which is not how
    many returns of their spacing a year holds (``36h`` from midnight, 120 samples: 244, not 243.3; a 7-day
    interval whose last return is shorter) and the title says so. Returns are named by the spacing of most of
    them (not the first and last: from the run's start, to its stop; not one across a stretch without data),
    else "returns between daily closes".
    """
    ts = run.equity["ts"].to_numpy(np.int64)
    closes = ts[last_of_each_day(ts)]
    days = np.diff(closes // (86_400 * 10**9))
    if not len(days) or (days == days[0]).all():
        every = int(days[0]) if len(days) else 1
        name = f"{_period_name(every * 86_400 * 10**9) if len(days) else 'daily'} returns"
        return name, f"Rolling Sharpe and volatility (annualised: {periods:.4g} {name} a year)", every
    spacings, counts = np.unique(np.diff(closes), return_counts=True)
    most = int(np.argmax(counts))
    name = "returns between daily closes"
    if 2 * counts[most] > counts.sum():
        name = f"{_period_name(int(spacings[most]))} returns"
    return name, (f"Rolling Sharpe and volatility of {name} (annualised: {periods:.4g} a year, 365 / the "
                  f"{_YEAR_DAYS / periods:.4g} days between their closes' dates on average)"), None


def _rolling_figures(run: RunData) -> list[str]:
    returns = daily_return_series(run)
    n = len(returns)
    periods = periods_per_year(_curve(run))
    name, title, every = _returns_named(run, periods)
    if n >= 60:
        window = 30
    elif n >= 6:
        window = max(3, n // 3)
    else:
        window = 0
    if window:
        # a window of returns unevenly apart spans no set number of days: named by its count, its days the mean's
        days = (f"{window * every}-day" if every is not None else
                f"{window}-return (about {window * _YEAR_DAYS / periods:.0f}-day)")
        mean = returns.rolling(window).mean()
        # pandas' running sums leave ~1e-9 of std in a window of equal returns after varied ones:
        # such a window has no volatility and no Sharpe (a gap in the chart: 0 / 0, or a mean left
        # by the same running sums over 0). Equal within rounding, as the run's metrics count them.
        flat = returns_flat(returns.rolling(window).min().to_numpy(), returns.rolling(window).max().to_numpy())
        std = returns.rolling(window).std(ddof=1).mask(flat, 0.0)
        sharpe = (mean / std * math.sqrt(periods)).replace([np.inf, -np.inf], np.nan)
        fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.06)
        fig.add_trace(go.Scatter(x=returns.index, y=sharpe, name=f"{days} Sharpe"),
                      row=1, col=1)
        fig.add_trace(go.Scatter(x=returns.index, y=std * math.sqrt(periods) * 100.0,
                                 name=f"{days} volatility %", line={"color": "#8e44ad"}), row=2, col=1)
        fig.update_yaxes(title_text="Sharpe", row=1, col=1)
        fig.update_yaxes(title_text="volatility %", row=2, col=1)
        rolling = figure_html(fig, "fig-rolling", 400)
    else:
        rolling = f'<p class="note">{n} {name}: too few for rolling figures</p>'
    if n >= 10:
        values, label = returns * 100.0, f"{name} (%)"
    else:
        equity = run.equity["equity"].to_numpy(np.float64)
        between = simple_returns(equity[1:], equity[:-1])
        values, label = between[np.isfinite(between)] * 100.0, "returns between equity samples (%)"
    hist = go.Figure(go.Histogram(x=values, nbinsx=60, name=label, marker={"color": "#3e7cb1"}))
    hist.update_xaxes(title_text=label)
    hist.update_layout(hovermode="closest")
    return [
        _section(title, rolling),
        _section("Return distribution", figure_html(hist, "fig-returns", 320)),
    ]


def _price_figure(run: RunData) -> str:
    instruments = run.instruments
    if not instruments:
        return _section("Prices and trades", '<p class="note">no instruments</p>')
    fig = make_subplots(rows=len(instruments), cols=1, shared_xaxes=True, subplot_titles=instruments,
                        vertical_spacing=0.08 / max(len(instruments), 1))
    trades = run.trades
    for row, iid in enumerate(instruments, start=1):
        prices = _thin(run.prices[run.prices["instrument"] == iid])
        fig.add_trace(go.Scatter(x=prices["dt"], y=prices["price"], name=f"{iid} price", line={"color": "#52606d"}),
                      row=row, col=1)
        mine = trades[trades["instrument"] == iid]
        for side, symbol, color in (("LONG", "triangle-up", "#2f9e44"), ("SHORT", "triangle-down", "#c92a2a")):
            part = mine[mine["side"] == side]
            if part.empty:
                continue
            fig.add_trace(go.Scatter(x=part["entry_dt"], y=part["entry_price"], mode="markers",
                                     name=f"{side.lower()} entry", marker={"symbol": symbol, "size": 9, "color": color},
                                     text=part["entry_reason"], hovertemplate="entry %{y}<br>%{text}<extra></extra>"),
                          row=row, col=1)
        if not mine.empty:
            colors = np.where(mine["net_pnl"] > 0.0, "#2f9e44", "#c92a2a")
            fig.add_trace(go.Scatter(x=mine["exit_dt"], y=mine["exit_price"], mode="markers", name="exit",
                                     marker={"symbol": "x", "size": 8, "color": colors},
                                     text=[f"net {v:,.{run.decimals}f}" for v in mine["net_pnl"]],
                                     hovertemplate="exit %{y}<br>%{text}<extra></extra>"), row=row, col=1)
    fig.update_layout(hovermode="closest")
    return _section("Prices and trades (▲ long entry, ▼ short entry, × exit)",
                    figure_html(fig, "fig-prices", 140 + 300 * len(instruments)))


def _exposure_and_costs(run: RunData) -> list[str]:
    eq = _thin(run.equity)
    exposure = (eq["position_value"] / eq["equity"].where(eq["equity"] != 0.0)) * 100.0
    fig = go.Figure(go.Scatter(x=eq["dt"], y=exposure, name="net exposure %", fill="tozeroy",
                               line={"color": "#0b7285"}))
    fig.update_yaxes(title_text="position value / equity (%)")
    note = ('<p class="note">the value of the positions (negative when short) over equity; the metrics\' exposure is '
            "the time in market</p>")
    costs = go.Figure(go.Scatter(x=eq["dt"], y=eq["fees_paid"], name="fees paid (cumulative)",
                                 line={"color": "#e8590c"}))
    shown: list[str] = []
    # Cumulative funding (perpetuals) and borrowing interest (margin spot loans): a column of zeros,
    # or none in a run directory written before it existed, is not shown.
    for what, columns, color in (("funding", ("funding_paid", "funding"), "#5f3dc4"),
                                 ("interest", ("interest_paid",), "#c2255c")):
        column = next((c for c in columns if c in eq.columns and eq[c].fillna(0.0).ne(0.0).any()), None)
        if column is not None:
            costs.add_trace(go.Scatter(x=eq["dt"], y=eq[column], name=f"{what} paid (cumulative)",
                                       line={"color": color}))
            shown.append(what)
    parts = ["Fees", *shown]
    title = (", ".join(parts[:-1]) + " and " + parts[-1] if shown else "Fees") + " over time"
    return [
        _section("Net exposure (position value / equity)", figure_html(fig, "fig-exposure", 280) + note),
        _section(title, figure_html(costs, "fig-costs", 280)),
    ]


def _instrument_table(run: RunData) -> str:
    return _section("Instruments", table(INSTRUMENT_COLUMNS, instrument_rows(run)))


def _trade_table(run: RunData) -> str:
    trades = run.trades
    shown = trades.head(MAX_TRADE_ROWS)
    d = run.decimals
    rows = [
        (t.strategy_id, t.instrument, t.side, f"{t.quantity:.12g}", t.entry_dt.strftime("%Y-%m-%d %H:%M:%S"), f"{t.entry_price:.12g}",
         t.exit_dt.strftime("%Y-%m-%d %H:%M:%S"), f"{t.exit_price:.12g}", f"{t.pnl:,.{d}f}", f"{t.fees:,.{d}f}",
         f"{t.net_pnl:,.{d}f}", format_duration(t.holding_s), t.exit_reason)
        for t in shown.itertuples()
    ]
    columns = ("strategy", "instrument", "side", "quantity", "entry", "entry price", "exit", "exit price", "PnL", "fees",
               "net PnL", "held", "exit reason")
    note = ""
    if len(trades) > len(shown):
        note = f'<p class="note">first {len(shown):,} of {len(trades):,} trades; all are in trades.csv</p>'
    return _section(f"Trades ({len(trades):,})", f'<div class="scroll">{table(columns, rows)}</div>{note}')


def _stress_table(run: RunData) -> str:
    if run.stress is None:
        return ""
    noted = any("note" in s for s in run.stress)
    rows = [
        (s["variant"], *(format_metric(key, None if s[key] is None else float(s[key]))
                         for key in ("total_return", "sharpe", "max_drawdown")),
         "-" if s["fills"] is None else f"{int(s['fills']):,}")
        + ((str(s.get("note", "")),) if noted else ())
        for s in run.stress
    ]
    columns = ("variant", "total return", "Sharpe", "max drawdown", "fills") + (("note",) if noted else ())
    return _section("Stress", table(columns, rows, css="stress"), section_id="stress")


def _section(title: str, body: str, section_id: str | None = None) -> str:
    ident = f' id="{section_id}"' if section_id else ""
    return f"<section{ident}><h2>{html.escape(title)}</h2>{body}</section>"


def page(title: str, subtitle: str, sections: Sequence[str]) -> str:
    """A whole self-contained HTML page with plotly.js inlined and ``sections`` in ``<main>``."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style>"
        f"<script type=\"text/javascript\">{get_plotlyjs()}</script></head><body>"
        f"<header><h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p></header>"
        f"<main>{''.join(sections)}</main></body></html>\n"
    )


def render_tearsheet(run: RunData) -> str:
    """The tearsheet page of ``run`` (see the module doc)."""
    m = run.metrics
    bench, _ = buy_and_hold(run)
    subtitle = (
        f"{', '.join(run.instruments)} · {m.get('start') or '?'} → {m.get('end') or '?'} · "
        f"total return {format_metric('total_return', m.get('total_return'))} · "
        f"buy & hold {format_metric('benchmark_return', bench)}"
    )
    sections = [
        _section("Metrics", _metrics_table(run), section_id="metrics"),
        *_equity_figures(run),
        _monthly_figure(run),
        *_rolling_figures(run),
        _price_figure(run),
        *_exposure_and_costs(run),
        _instrument_table(run),
        _trade_table(run),
        _stress_table(run),
    ]
    return page(f"tradebus tearsheet: {run.path.resolve().name}", subtitle, [s for s in sections if s])


def write_html(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`~tradebus.reports.writers.write_file`: never a partial page).

    Raises
    ------
    ConfigError
        The page cannot be written there (a missing or non-directory parent, no permission, a full
        disk), naming ``path`` and the errno (:func:`~tradebus.reports.writers.output_error`).
    """
    write_file(path, text)


def write_tearsheet(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the tearsheet of the run in ``run_dir`` to ``out`` (default ``run_dir/tearsheet.html``).

    Raises
    ------
    ConfigError
        ``run_dir`` cannot be read (:func:`~tradebus.reports.rundata.load_run`), ``out`` is another of the run's
        files (:func:`~tradebus.reports.rundata.refuse_run_file`) or cannot be written.
    """
    run = load_run(run_dir)
    own_page = run.path / REPORT_FILE
    target = Path(out) if out is not None else own_page
    refuse_run_file(target, [run.path], allowed=own_page)
    write_html(target, render_tearsheet(run))
    return target
