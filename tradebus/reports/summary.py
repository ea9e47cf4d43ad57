"""The summary a run prints: its metrics, the buy-and-hold benchmark and one row per instrument.

Read back from the run directory (:func:`tradebus.reports.rundata.load_run`), so a backtest,
a paper run and a replay print the same thing. ``trades`` are the round trips of
``trades.csv``, shown next to ``fills``; the market data the run saw are ``bars`` and
``market trades``. ``hit_rate``, ``profit_factor``, ``average_win`` and ``average_loss`` are
figures of ``round_trips`` (a position of the account from flat back to flat,
:func:`tradebus.reports.metrics.round_trips`), which a run that scales in or closes in parts has
fewer of than rows of ``trades.csv`` (matched per strategy: strategies sharing an instrument may have
another number of): it is then shown after ``trades``. Amounts are shown to the quote's precision
(:func:`tradebus.reports.formatting.quote_decimals`).

An instrument's ``net PnL`` is its row of ``attribution.csv`` summed over the strategies
(realised and unrealised PnL less fees, funding and interest: open positions count), so the
instruments' net PnL adds up to the run's (``final_equity - initial_cash``) -- but for the value
change of initial holdings (``balances: {BTC: 1}``), which is no instrument's.
"""

from __future__ import annotations

from rich.console import Console, RenderableType
from rich.table import Table

from tradebus.reports.attribution import ALL_INSTRUMENTS
from tradebus.reports.formatting import format_metric, metric_label
from tradebus.reports.rundata import RunData, buy_and_hold

__all__ = ["INSTRUMENT_COLUMNS", "instrument_rows", "print_titled", "summary_rows", "summary_tables"]

# ``round_trips`` is shown after ``trades`` only where the two counts differ.
_SKIP = {"null_reasons", "round_trips"}


def summary_rows(run: RunData) -> list[tuple[str | None, str, str]]:
    """``(metrics.json key or None, label, text)`` of every row of the main table, in order.

    The key is ``None`` for the rows that are not in ``metrics.json``: ``trades`` (after
    ``fills``) and ``buy & hold`` (after ``total_return``). ``round_trips`` follows ``trades``
    when it is not the number of rows of ``trades.csv``.
    """
    m = run.metrics
    reasons = m.get("null_reasons", {}) or {}
    bench, _ = buy_and_hold(run)
    rows: list[tuple[str | None, str, str]] = []
    for key, value in m.items():
        if key in _SKIP:
            continue
        rows.append((key, metric_label(key), format_metric(key, value, run.decimals, reasons)))
        if key == "fills":
            rows.append((None, "trades", f"{len(run.trades):,}"))
            trips = m.get("round_trips")
            if trips is not None and trips != len(run.trades):
                rows.append(("round_trips", metric_label("round_trips"), f"{trips:,}"))
        elif key == "total_return":
            rows.append((None, "buy & hold", format_metric("benchmark_return", bench)))
    return rows


def instrument_rows(run: RunData) -> list[tuple[str, ...]]:
    """Per instrument: fills, trades (round trips), net PnL (attribution, see the module doc), fees, buy-and-hold return."""
    _, bench = buy_and_hold(run)
    attribution = run.attribution[run.attribution["instrument"] != ALL_INSTRUMENTS]
    net = attribution.groupby("instrument")["net_pnl"].sum()
    rows = []
    for iid in run.instruments:
        fills = run.fills[run.fills["instrument"] == iid]
        trades = run.trades[run.trades["instrument"] == iid]
        rows.append((
            iid,
            f"{len(fills):,}",
            f"{len(trades):,}",
            format_metric("net_pnl", float(net.get(iid, 0.0)), run.decimals),
            format_metric("fees_paid", float(fills["fee"].sum()), run.decimals),
            format_metric("benchmark_return", bench.get(iid)),
        ))
    return rows


INSTRUMENT_COLUMNS = ("instrument", "fills", "trades", "net PnL", "fees", "buy & hold")


def print_titled(console: Console, title: str, *renderables: RenderableType) -> None:
    """Print ``title`` on a line of its own, then ``renderables``.

    A command's title names the path it wrote (``dataset -> runs/research/x/dataset.parquet``).
    As a table's title it would be wrapped at the table's width, cutting the path inside a name;
    this line is never wrapped or cropped, so the path can be copied whole.
    """
    console.print(title, soft_wrap=True, highlight=False, markup=False, emoji=False)
    for renderable in renderables:
        console.print(renderable)


def summary_tables(run: RunData) -> list[Table]:
    """The rich tables the CLI prints for ``run`` (under its title, :func:`print_titled`)."""
    main = Table(show_header=True, header_style="bold")
    main.add_column("metric")
    main.add_column("value", justify="right")
    for _, label, text in summary_rows(run):
        main.add_row(label, text)
    per = Table(title="per instrument", show_header=True, header_style="bold")
    for n, column in enumerate(INSTRUMENT_COLUMNS):
        per.add_column(column, justify="left" if n == 0 else "right", no_wrap=True)
    for row in instrument_rows(run):
        per.add_row(*row)
    return [main, per]
