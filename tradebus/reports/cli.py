"""``tradebus report RUN_DIR`` and ``tradebus report compare RUN_A RUN_B``.

``report RUN_DIR`` writes ``RUN_DIR/tearsheet.html`` (a file the run directory owns, see
:data:`tradebus.reports.writers.OWN_FILES`), or ``--out``. ``report compare RUN_A RUN_B``
writes the side-by-side page to ``--out`` (default ``compare-<A>-vs-<B>.html`` in the
current directory). An existing ``--out`` file other than the run's own tearsheet is
refused unless ``--force``; an ``--out`` that is one of the files of the run reported or
compared (``metrics.json``, ``fills.csv``, ...: :data:`tradebus.reports.rundata.RUN_FILES`) is
refused even with ``--force``. ``report RUN_DIR`` holds the run directory while it reads it and
writes the page, as a run writing there does (:class:`tradebus.reports.writers.RunDirectory`):
a directory a running backtest or daemon holds is refused, naming its process. ``--screenshot
PNG`` also saves a screenshot of the page taken in headless Chromium.

Exit codes: 0 success, 2 a bad argument or run directory (the message names the file), 1 any
other error (Chromium missing or failing for ``--screenshot``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from tradebus.errors import ConfigError, TradebusError
from tradebus.reports.writers import REPORT_FILE, hold_directory

__all__ = ["report"]


def report(
    args: Annotated[
        list[str],
        typer.Argument(
            help="RUN_DIR, or: compare RUN_A RUN_B.", show_default=False, metavar="RUN_DIR | compare RUN_A RUN_B"
        ),
    ],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Where to write the page.")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing --out file (never one of the run's own files).")
    ] = False,
    screenshot: Annotated[
        Path | None, typer.Option(help="Also save a PNG screenshot of the page (headless Chromium).")
    ] = None,
) -> None:
    """Write the HTML tearsheet of a run (RUN_DIR/tearsheet.html), or compare two runs side by side."""
    from tradebus.reports.compare import write_compare
    from tradebus.reports.rundata import refuse_run_file
    from tradebus.reports.tearsheet import write_tearsheet

    console = Console()
    try:
        if screenshot is not None:
            _check_screenshot(screenshot)
        if len(args) == 3 and args[0] == "compare":
            run_a, run_b = Path(args[1]), Path(args[2])
            target = out if out is not None else Path(f"compare-{run_a.name}-vs-{run_b.name}.html")
            refuse_run_file(target, [run_a, run_b])
            _refuse_existing(target, force)
            written = write_compare(run_a, run_b, target)
        elif len(args) == 1:
            own_page = Path(args[0]) / REPORT_FILE
            if out is not None:
                refuse_run_file(out, [args[0]], allowed=own_page)
            if out is not None and out.absolute() != own_page.absolute():
                _refuse_existing(out, force)
            # Held as a run writing there holds it: a backtest rewriting the directory meanwhile would remove this
            # page's temporary as its own, or have its fresh page replaced by one of the files it replaced.
            run_dir = Path(args[0])
            held = hold_directory(run_dir, "Report it once that run has finished") if run_dir.is_dir() else None
            try:
                written = write_tearsheet(args[0], out)
            finally:
                if held is not None:
                    os.close(held)
        else:
            raise ConfigError(f"report takes RUN_DIR or `compare RUN_A RUN_B`, not {' '.join(args)!r}")
        if screenshot is not None:
            _screenshot(written, screenshot)
    except TradebusError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(2 if isinstance(exc, ConfigError) else 1) from None
    console.print(f"report written to {written}" + (f" (screenshot {screenshot})" if screenshot else ""))


def _refuse_existing(target: Path, force: bool) -> None:
    if target.exists() and not force:
        raise ConfigError(f"{target} exists; choose another --out or pass --force to replace it")


def _check_screenshot(png: Path) -> None:
    """Refuse a ``--screenshot`` path that cannot be written, before any page is written or rendered."""
    if png.is_dir():
        raise ConfigError(f"--screenshot {png}: is a directory; give the PNG file to write")
    parent = png.absolute().parent
    if not parent.is_dir():
        raise ConfigError(f"--screenshot {png}: cannot be written: {parent} is not a directory")


def _screenshot(page: Path, png: Path) -> None:
    from tradebus.reports.browser import render

    rendering = render(page, width=1280, height=1000)
    if rendering.errors:
        raise TradebusError(f"{page}: the page logged errors in Chromium: {'; '.join(rendering.errors)}")
    try:
        png.write_bytes(rendering.png)
    except OSError as exc:
        raise ConfigError(f"--screenshot {png}: cannot be written ({exc.strerror})") from None
