"""Registry of the shipped research-to-trading systems run by ``tradebus research run CONFIG``.

A system config names its system in a top-level ``system:`` key; :data:`SYSTEMS` maps the
name to ``"module:function"``, a function ``run(config_path, out) -> dict`` that writes the
system's outputs into ``out`` and returns its report (with a flat ``summary`` dict the
command prints; ``summary["lookahead"] == "FOUND"`` exits 4, as ``research lookahead``).
A new system is one line here.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tradebus.config.load import read_yaml
from tradebus.errors import ConfigError, TradebusError
from tradebus.reports.summary import print_titled

__all__ = ["SYSTEMS", "run", "run_system", "system_name"]

#: System name -> ``"module:function"``.
SYSTEMS: dict[str, str] = {
    "regime_hazard": "tradebus.research.regime_hazard:run",
    "ml_gated": "tradebus.research.ml_gated:run",
}


def system_name(config_path: str | Path) -> str:
    """The ``system:`` key of a config, checked against :data:`SYSTEMS`."""
    path = Path(config_path)
    data = read_yaml(path)
    name = data.get("system") if isinstance(data, dict) else None
    if name is None:
        raise ConfigError(f"{path}: no system: key; research run runs a system config (system: one of "
                          f"{sorted(SYSTEMS)}, as configs/systems/*.yaml); a research config (dataset:, labels:, ...) "
                          "goes to research dataset, labels, cv, walkforward or alpha, a run config to backtest or "
                          "research lookahead")
    if name not in SYSTEMS:
        raise ConfigError(f"{path}: system: must be one of {sorted(SYSTEMS)}, got {name!r}")
    return str(name)


def run_system(config_path: str | Path, out: str | Path) -> dict[str, Any]:
    """Run the system a config names; return its report."""
    module, _, func = SYSTEMS[system_name(config_path)].partition(":")
    return getattr(importlib.import_module(module), func)(config_path, out)  # type: ignore[no-any-return]


def run(
    config: Annotated[Path, typer.Argument(help="System config (YAML with a 'system:' key).", show_default=False)],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output directory.", show_default="runs/research/<stem>")]
    = None,
) -> None:
    """Run a shipped research-to-trading system end to end (data, training, backtests, report)."""
    from tradebus.research.cli import LOOKAHEAD_FOUND, _fail, _out_path  # the command lives in research_app

    target = _out_path(out, config)  # the system creates it when it writes its outputs
    try:
        report = run_system(config, target)
    except TradebusError as exc:
        _fail(exc, config)
    table = Table(show_header=False)
    for key, value in report.get("summary", {}).items():
        table.add_row(key, str(value))
    print_titled(Console(), f"{report.get('system', config.stem)} -> {target}", table)
    if report.get("summary", {}).get("lookahead") == "FOUND":
        raise typer.Exit(LOOKAHEAD_FOUND)
