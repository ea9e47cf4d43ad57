"""``tradebus report RUN_DIR`` and ``tradebus report compare RUN_A RUN_B``.

``report RUN_DIR`` writes ``RUN_DIR/tearsheet.html`` (a file the run directory owns, see
:data:`tradebus.reports.writers.OWN_FILES`), or ``--out``. ``report compare RUN_A RUN_B``
writes the side-by-side page to ``--out`` (default ``compare-<A>-vs-<B>.html`` in the
current directory). An existing ``--out`` file other than the run's own tearsheet is
refused unless ``--force``, and so is an existing ``--screenshot`` file; an ``--out`` that
is one of the files of the run reported or compared (``metrics.json``, ``fills.csv``, ...: :data:`tradebus.reports.rundata.RUN_FILES`) is
refused even with ``--force``, and so is such a ``--screenshot`` or one naming the page itself.
Both hold the run directories they read and the directory they write the page into while they
read and write, against runs writing there (:class:`tradebus.reports.writers.RunDirectory`): a
directory a running backtest, daemon or sweep holds is refused, naming its process; other reports
are not. ``--screenshot PNG`` also saves a screenshot of the page
taken in headless Chromium, written through a temporary beside it (renamed over it once complete)
into a directory held the same way.

Exit codes: 0 success, 2 a bad argument or run directory (the message names the file), 1 any
other error (Chromium missing or failing for ``--screenshot``), 130 after Ctrl-C and 143 after SIGTERM, with one
line saying whether the page (and the screenshot) was written: a page is written whole or not at all.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from tradebus.errors import ConfigError, TradebusError
from tradebus.reports.writers import REPORT_FILE, file_identity, hold_directory, write_file

__all__ = ["interruption", "report"]


def interruption(exc: BaseException) -> tuple[int, str] | None:
    """The exit code and the name of the signal that stopped a command with ``exc``, or ``None`` for another exception.

    ``(130, "Ctrl-C")`` for a ``KeyboardInterrupt``, ``(143, "SIGTERM")`` for the ``SystemExit(143)`` the command
    line's SIGTERM handler raises (:mod:`tradebus.cli`).
    """
    if isinstance(exc, KeyboardInterrupt):
        return 130, "Ctrl-C"
    if isinstance(exc, SystemExit) and exc.code == 143:
        return 143, "SIGTERM"
    return None


def report(
    args: Annotated[
        list[str],
        typer.Argument(
            help="RUN_DIR, or: compare RUN_A RUN_B.", show_default=False, metavar="RUN_DIR | compare RUN_A RUN_B"
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Where to write the page.",
            show_default="RUN_DIR/tearsheet.html; compare: compare-<A>-vs-<B>.html in the current directory",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing --out or --screenshot file (never one of the run's "
                                           "own files).")
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
    if len(args) == 3 and args[0] == "compare":
        page: Path | None = out if out is not None else _compare_page(Path(args[1]), Path(args[2]))
    else:
        page = out if out is not None or len(args) != 1 else Path(args[0]) / REPORT_FILE
    before = (file_identity(page) if page is not None else None, file_identity(screenshot) if screenshot else None)
    try:
        if screenshot is not None:
            _check_screenshot(screenshot)
        if len(args) == 3 and args[0] == "compare":
            run_a, run_b = Path(args[1]), Path(args[2])
            target = out if out is not None else _compare_page(run_a, run_b)
            refuse_run_file(target, [run_a, run_b])
            _refuse_run_file_screenshot(screenshot, [run_a, run_b])
            _refuse_screenshot_over_page(screenshot, target)
            _refuse_existing(target, force)
            _refuse_existing_screenshot(screenshot, force)
            with _holding([run_a, run_b], target, screenshot):
                written = write_compare(run_a, run_b, target)
                if screenshot is not None:
                    _screenshot(written, screenshot)
        elif len(args) == 1:
            own_page = Path(args[0]) / REPORT_FILE
            if out is not None:
                refuse_run_file(out, [args[0]], allowed=own_page)
            _refuse_run_file_screenshot(screenshot, [args[0]])
            _refuse_screenshot_over_page(screenshot, out if out is not None else own_page)
            if out is not None and out.absolute() != own_page.absolute():
                _refuse_existing(out, force)
            _refuse_existing_screenshot(screenshot, force)
            with _holding([Path(args[0])], out if out is not None else own_page, screenshot):
                written = write_tearsheet(args[0], out)
                if screenshot is not None:
                    _screenshot(written, screenshot)
        else:
            raise ConfigError(f"report takes RUN_DIR or `compare RUN_A RUN_B`, not {' '.join(args)!r}")
    except TradebusError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(2 if isinstance(exc, ConfigError) else 1) from None
    except (KeyboardInterrupt, SystemExit) as exc:
        stop = interruption(exc)
        if stop is None:
            raise
        if page is None or file_identity(page) == before[0]:
            what = "no page was written" + (f" ({page} is as it was)" if page is not None else "")
        else:
            missing = screenshot is not None and file_identity(screenshot) == before[1]
            what = f"the page was written to {page}" + (f", the screenshot {screenshot} not" if missing else "")
        Console(stderr=True).print(f"report interrupted ({stop[1]}): {what}", markup=False, highlight=False,
                                   soft_wrap=True)
        raise typer.Exit(stop[0]) from None
    console.print(f"report written to {written}" + (f" (screenshot {screenshot})" if screenshot else ""))


def _compare_page(run_a: Path, run_b: Path) -> Path:
    """The default ``--out`` of ``report compare RUN_A RUN_B``: ``compare-<A>-vs-<B>.html`` in the current directory."""
    return Path(f"compare-{run_a.resolve().name}-vs-{run_b.resolve().name}.html")


@contextmanager
def _holding(run_dirs: list[Path], page: Path, screenshot: Path | None = None) -> Iterator[None]:
    """Hold the run directories read and the directories ``page`` and ``screenshot`` are written into against runs.

    A backtest rewriting one of them meanwhile would have its files half-read, remove the page's
    temporary as its own, or see its fresh files replaced by the page; one a run holds is refused
    (:func:`~tradebus.reports.writers.hold_directory`). The hold is shared: other reports reading or
    writing there at the same time are not refused (each writes its page through a temporary of its
    own). A directory is held once however it is named; a missing one is not held.
    """
    with ExitStack() as stack:
        seen: set[tuple[int, int]] = set()
        for folder, advice in [
            *((d, "Report it once that run has finished") for d in run_dirs),
            (page.parent, "Write the page once that run has finished, or choose another --out"),
            *(() if screenshot is None else
              ((screenshot.absolute().parent, "Save the screenshot once that run has finished, or choose another "
                "--screenshot"),)),
        ]:
            try:
                info = os.stat(folder)
            except OSError:
                continue  # a missing run directory is refused when it is read; a missing --out folder when written
            if (info.st_dev, info.st_ino) in seen or not Path(folder).is_dir():
                continue
            seen.add((info.st_dev, info.st_ino))
            held = hold_directory(folder, advice, shared=True)
            if held is not None:
                stack.callback(os.close, held)
        yield


def _refuse_existing(target: Path, force: bool) -> None:
    if target.exists() and not force:
        raise ConfigError(f"{target} exists; choose another --out or pass --force to replace it")


def _refuse_existing_screenshot(png: Path | None, force: bool) -> None:
    """Refuse a ``--screenshot`` over an existing file without ``force``, as :func:`_refuse_existing` an ``--out``."""
    if png is not None and (png.exists() or png.is_symlink()) and not force:
        raise ConfigError(f"--screenshot {png}: exists; choose another --screenshot or pass --force to replace it")


def _check_screenshot(png: Path) -> None:
    """Refuse a ``--screenshot`` path that cannot be written, before any page is written or rendered."""
    if png.is_dir():
        raise ConfigError(f"--screenshot {png}: is a directory; give the PNG file to write")
    parent = png.absolute().parent
    if not parent.is_dir():
        raise ConfigError(f"--screenshot {png}: cannot be written: {parent} is not a directory")


def _refuse_run_file_screenshot(png: Path | None, run_dirs: list[str] | list[Path]) -> None:
    """Refuse a ``--screenshot`` that would replace one of the files of a run reported (``metrics.json`` ...)."""
    from tradebus.reports.rundata import refuse_run_file

    if png is not None:
        try:
            refuse_run_file(png, run_dirs)
        except ConfigError as exc:
            raise ConfigError(f"--screenshot {exc}".replace("write the page elsewhere", "save it elsewhere")) from None


def _refuse_screenshot_over_page(png: Path | None, page: Path) -> None:
    """Refuse a ``--screenshot`` naming the page it is taken of: the PNG would replace the page just written."""
    from tradebus.reports.rundata import _same_entry

    if png is not None and _same_entry(png, page):
        raise ConfigError(f"--screenshot {png}: is the page itself ({page}); the PNG would replace it: save it elsewhere")


def _screenshot(page: Path, png: Path) -> None:
    from tradebus.reports.browser import render

    rendering = render(page, width=1280, height=1000)
    if rendering.errors:
        raise TradebusError(f"{page}: the page logged errors in Chromium: {'; '.join(rendering.errors)}")
    write_file(png, rendering.png)
