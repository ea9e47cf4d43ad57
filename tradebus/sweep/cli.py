"""``tradebus sweep CONFIG --space SPACE.yaml``: run or resume a parameter sweep (see :mod:`tradebus.sweep.runner`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from tradebus.errors import TradebusError
from tradebus.reports.cli import interruption
from tradebus.reports.summary import print_titled

__all__ = ["sweep"]


def sweep(
    config: Annotated[Path, typer.Argument(help="YAML run config.", show_default=False)],
    space: Annotated[Path, typer.Option("--space", "-s", help="YAML space file (params, objectives, method).")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Sweep directory (default: runs/sweep-<config stem>).")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Local Ray workers (default: the machine's cores; not with --address).")] = None,
    address: Annotated[str | None, typer.Option(help="Address of an existing Ray cluster.")] = None,
    stress: Annotated[bool, typer.Option("--stress", help="Run the stress variants with the best parameters.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Use a non-empty --out that is not a sweep directory.")] = False,
    tier: Annotated[
        str | None, typer.Option("--tier", help="auto | event | accelerated (default: the space's tier, auto).")
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="Log level on stderr.")] = "WARNING",
) -> None:
    """Sweep strategy, risk and venue parameters (grid or Optuna TPE) on Ray; resumes when re-run."""
    from tradebus.cli import _fail, check_log_level, setup_logging
    from tradebus.sweep.runner import default_out, run_sweep

    setup_logging(check_log_level(log_level))
    console = Console()
    progress = Progress(
        TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=True, disable=not console.is_terminal,
    )
    task: Any = None
    counts = [0, 0]  # trials in all, trials whose file is written

    def on_start(total: int, done: int) -> None:
        nonlocal task
        counts[:] = [total, done]
        task = progress.add_task("trials", total=total, completed=done)
        progress.start()

    def on_trial(row: dict[str, Any]) -> None:
        counts[1] += 1
        progress.advance(task)

    try:
        result = run_sweep(
            config, space, out, workers=workers, address=address, stress=stress, force=force, tier=tier,
            on_start=on_start, on_trial=on_trial,
        )
    except TradebusError as exc:
        progress.stop()
        _fail(exc, Console(stderr=True))
    except (KeyboardInterrupt, SystemExit) as exc:  # Ctrl-C; SIGTERM is a SystemExit(143) (tradebus.cli)
        progress.stop()
        stop = interruption(exc)
        if stop is None:
            raise
        where = out if out is not None else default_out(config)
        saved = (f"{min(counts[1], counts[0])} of {counts[0]} trials done, each saved in {where}" if task is not None
                 else "stopped before its first trial")
        Console(stderr=True).print(
            f"sweep interrupted: {saved}; run the same command again to resume it (finished trials are kept)",
            highlight=False, soft_wrap=True,
        )
        raise typer.Exit(stop[0]) from None
    progress.stop()
    table = Table(show_header=True, header_style="bold")
    table.add_column("")
    table.add_column("value", overflow="fold")
    failed = f", {result.failed} failed: see the warnings above" if result.failed else ""
    table.add_row("trials", f"{result.total} ({result.ran} run, {result.skipped} resumed{failed})")
    if result.mostly_denied:
        denied, orders = result.denied_orders
        table.add_row("denied", f"{result.mostly_denied} of {result.scored} trials had most orders denied ({denied:,} "
                                f"of their {orders:,} orders, {denied / orders:.1%}): see the warning above")
    if result.tiers:
        table.add_row("tier", ", ".join(f"{name} ({count} trials)" for name, count in sorted(result.tiers.items())))
    if result.best is not None:
        params = ", ".join(f"{k.removeprefix('param.')}={v}" for k, v in result.best.items() if k.startswith("param."))
        # a walk-forward's is the last fold's best, numbered among that fold's trials, with its train window's figures
        label = "best trial" if not result.folds else f"best trial (fold {result.folds[-1]['fold']}'s train window)"
        table.add_row(label, f"{result.best['trial']}: {params}")
        for key in ("total_return", "sharpe", "max_drawdown", "fills"):
            table.add_row(f"  {key}", _number(result.best.get(key)))
    if result.walk_forward is not None:
        for key, value in result.walk_forward.items():
            table.add_row(f"walk-forward {key}", _number(value))
    for row in result.stress or ():
        if row["fills"] is None:  # a default variant left out
            table.add_row(f"stress {row['variant']}", row["note"])
            continue
        table.add_row(
            f"stress {row['variant']}",
            f"return {_number(row['total_return'])}, sharpe {_number(row['sharpe'])}, "
            f"max dd {_number(row['max_drawdown'])}, fills {row['fills']}"
            + (f" ({row['note']})" if "note" in row else ""),
        )
    print_titled(console, f"sweep -> {result.out}", table)


def _number(value: Any) -> str:
    return f"{value:,.4f}" if isinstance(value, float) else str(value)
