"""Two runs side by side (``tradebus report compare RUN_A RUN_B``): metrics, curves and the fills that differ.

Typical pairs: a backtest and a paper run of the same period, or one config with two
parameter sets. A fill is identified by its venue time, instrument, side, quantity and
price; the page lists the fills only one of the runs has (a multiset difference, so two
identical fills in A and one in B leave one listed).

The metrics table marks a row ``≠`` when the two values differ as shown, at the finer of the two
runs' precisions (:func:`~tradebus.reports.formatting.format_metric`), and, for numbers, by more
than a relative :data:`RELATIVE_TOLERANCE`: a last-bit difference of two floats (a run summing its
fees in another order) is not marked, nor is one that only rounds across a displayed digit.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from tradebus.reports.formatting import format_metric, metric_label
from tradebus.reports.metrics import format_ns
from tradebus.reports.rundata import RunData, buy_and_hold, load_run, refuse_run_file
from tradebus.reports.tearsheet import figure_html, page, table, write_html

__all__ = ["RELATIVE_TOLERANCE", "differing_fills", "metric_differs", "render_compare", "write_compare"]

_FILL_KEY = ("ts_event", "instrument", "side", "quantity", "price")
#: Two numbers closer than this (relative to the larger) are the same metric on the comparison page.
RELATIVE_TOLERANCE = 1e-9


def metric_differs(key: str, a: Any, b: Any, decimals: int = 2) -> bool:
    """Whether metric ``key`` differs visibly between two runs (the ``≠`` of the comparison page).

    Parameters
    ----------
    key
        The metrics.json key (it sets how the value is shown).
    a, b
        The two runs' values.
    decimals
        Decimals of amounts: the finer of the two runs' reporting currencies.

    Returns
    -------
    bool
        The values are shown differently and, for two numbers, differ by more than :data:`RELATIVE_TOLERANCE`.
    """
    if format_metric(key, a, decimals) == format_metric(key, b, decimals):
        return False
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b))
    return not (numbers and math.isclose(a, b, rel_tol=RELATIVE_TOLERANCE))


def differing_fills(a: RunData, b: RunData) -> list[tuple[str, tuple[object, ...]]]:
    """Fills only one run has, as ``("A" or "B", (ts_event, instrument, side, quantity, price))``, by time."""
    keys_a = Counter(tuple(r) for r in a.fills[list(_FILL_KEY)].itertuples(index=False, name=None))
    keys_b = Counter(tuple(r) for r in b.fills[list(_FILL_KEY)].itertuples(index=False, name=None))
    only = [("A", key) for key in (keys_a - keys_b).elements()] + [("B", key) for key in (keys_b - keys_a).elements()]
    return sorted(only, key=lambda item: (item[1][0], item[1][1], item[0]))


def render_compare(a: RunData, b: RunData, max_rows: int = 1000) -> str:
    """The comparison page of runs ``a`` and ``b``."""
    keys = [k for k in a.metrics if k != "null_reasons"] + [
        k for k in b.metrics if k not in a.metrics and k != "null_reasons"
    ]
    decimals = max(a.decimals, b.decimals)
    bench_a, _ = buy_and_hold(a)
    bench_b, _ = buy_and_hold(b)
    # In the summary's order (tradebus.reports.summary.summary_rows): trades and round_trips after fills,
    # buy & hold after total_return; round_trips always, as the two runs' counts may differ.
    trips = _metric_rows(a, b, ["round_trips"], decimals) if "round_trips" in keys else []
    derived = {
        "fills": [("trades", f"{len(a.trades):,}", f"{len(b.trades):,}", "" if len(a.trades) == len(b.trades) else "≠"),
                  *trips],
        "total_return": [("buy & hold", format_metric("benchmark_return", bench_a),
                          format_metric("benchmark_return", bench_b),
                          "≠" if metric_differs("benchmark_return", bench_a, bench_b) else "")],
    }
    rows = []
    for key in keys:
        if key == "round_trips" and "fills" in keys:
            continue
        rows += _metric_rows(a, b, [key], decimals)
        rows += derived.pop(key, [])
    for extra in derived.values():  # a metrics.json without fills or total_return: at the end (round_trips shown)
        rows += [row for row in extra if row not in trips]
    metrics_html = table(("metric", f"A: {a.path.resolve().name}", f"B: {b.path.resolve().name}", ""), rows,
                         cell_attrs=("", 'data-run="A"', 'data-run="B"', ""))
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.05)
    for label, run, color in (("A", a, "#1f77b4"), ("B", b, "#e8590c")):
        eq = run.equity
        initial = float(run.metrics.get("initial_cash") or (eq["equity"].iloc[0] if len(eq) else 1.0))
        fig.add_trace(go.Scatter(x=eq["dt"], y=(eq["equity"] / initial - 1.0) * 100.0,
                                 name=f"{label} return %", line={"color": color}), row=1, col=1)
        if "drawdown" in eq:
            fig.add_trace(go.Scatter(x=eq["dt"], y=-eq["drawdown"] * 100.0, name=f"{label} drawdown %",
                                     line={"color": color, "dash": "dot"}), row=2, col=1)
    only = differing_fills(a, b)
    fill_rows = [
        (run, format_ns(int(key[0])), key[1], key[2], repr(float(key[3])), repr(float(key[4])))
        for run, key in only[:max_rows]
    ]
    note = f'<p class="note">first {max_rows:,} of {len(only):,}</p>' if len(only) > max_rows else ""
    fills_html = (
        f'<p>{len(only):,} fills differ ({sum(1 for r, _ in only if r == "A"):,} only in A, '
        f'{sum(1 for r, _ in only if r == "B"):,} only in B; a fill is its time, instrument, side, quantity '
        f'and price).</p><div class="scroll">'
        + table(("only in", "time", "instrument", "side", "quantity", "price"), fill_rows, css="differing-fills")
        + f"</div>{note}"
    )
    sections = [
        f"<section id=\"metrics\"><h2>Metrics</h2>{metrics_html}</section>",
        f"<section><h2>Return and drawdown</h2>{figure_html(fig, 'fig-compare', 460)}</section>",
        f"<section id=\"fills\"><h2>Differing fills</h2>{fills_html}</section>",
    ]
    title = f"tradebus compare: {a.path.resolve().name} vs {b.path.resolve().name}"
    return page(title, f"A = {a.path} · B = {b.path}", sections)


def _metric_rows(a: RunData, b: RunData, keys: list[str], decimals: int) -> list[tuple[str, str, str, str]]:
    """The compare table's rows of the metrics.json ``keys``: label, A's text, B's text and ``≠`` or ``""``."""
    reasons_a = a.metrics.get("null_reasons", {}) or {}
    reasons_b = b.metrics.get("null_reasons", {}) or {}
    rows = []
    for key in keys:
        va, vb = a.metrics.get(key), b.metrics.get(key)
        rows.append((metric_label(key), format_metric(key, va, a.decimals, reasons_a),
                     format_metric(key, vb, b.decimals, reasons_b), "≠" if metric_differs(key, va, vb, decimals) else ""))
    return rows


def write_compare(run_a: str | Path, run_b: str | Path, out: str | Path) -> Path:
    """Write the comparison page of two run directories to ``out``.

    Raises
    ------
    ConfigError
        A run directory cannot be read, ``out`` is one of either run's files
        (:func:`~tradebus.reports.rundata.refuse_run_file`) or cannot be written.
    """
    target = Path(out)
    a, b = load_run(run_a), load_run(run_b)
    refuse_run_file(target, [a.path, b.path])
    write_html(target, render_compare(a, b))
    return target
