"""One way to write a run's outputs: the backtest, the paper daemon and a playback all call :func:`write_outputs`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from loguru import logger

from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import RunResult
from tradebus.reports.metrics import compute_metrics
from tradebus.reports.writers import REPORT_FILE, UNWRITTEN_PAGE, RunDirectory, is_unwritten_page, write_run

if TYPE_CHECKING:
    from tradebus.reports.stream import OutputStream

__all__ = ["write_outputs"]


def write_outputs(
    run_dir: RunDirectory,
    result: RunResult,
    instruments: Mapping[str, Instrument],
    config_yaml: str,
    extra: Mapping[str, str] | None = None,
    stream: OutputStream | None = None,
    report: bool = False,
) -> dict[str, Any]:
    """Compute the run's metrics and write its files into ``run_dir``; return the metrics.

    The tearsheet (``tearsheet.html``, :mod:`tradebus.reports.tearsheet`) is written after
    them when asked (``report``), and rewritten when the directory holds an earlier run's:
    the page would otherwise show that run's numbers beside this run's files. Either way
    :data:`~tradebus.reports.writers.UNWRITTEN_PAGE` is moved in with the other files and the
    page replaces it, so a run stopped in between leaves files and page that agree.

    Parameters
    ----------
    run_dir
        The (not yet opened) run directory: it is opened and committed here.
    result
        The finished run.
    instruments
        ``instrument_id -> Instrument`` of the run (lot sizes round the metrics' quantities).
    config_yaml
        The run's config as written to ``config.yaml``.
    extra
        Further files of this kind of run, name -> text (``node.json``, ``playback.json``).
    stream
        The daemon's :class:`~tradebus.reports.stream.OutputStream` that wrote the row files
        during the run: it is finished here (``result.fills`` read back), and only the other
        files are written.
    report
        Write the tearsheet too.
    """
    lot_sizes = {iid: inst.lot_size for iid, inst in instruments.items()}
    streamed = stream is not None and stream.started
    if stream is not None and streamed:
        stream.finish()
        metrics = compute_metrics(result, lot_sizes, orders=stream.orders, denied=stream.denied)
    else:
        metrics = compute_metrics(result, lot_sizes)
    page = run_dir.path / REPORT_FILE
    earlier = page.is_file()
    unwritten = is_unwritten_page(page)
    with run_dir:
        if report or earlier:
            with run_dir.open(REPORT_FILE) as handle:
                handle.write(UNWRITTEN_PAGE)
        write_run(run_dir, result, metrics, config_yaml, extra, lot_sizes, streamed=streamed)
    logger.info("run outputs written to {}", run_dir.path)
    if report or earlier:
        from tradebus.reports.tearsheet import write_tearsheet

        write_tearsheet(run_dir.path)
        logger.info("tearsheet {} {}", "written to" if report else
                    "written in place of the note a run stopped before its page left there:" if unwritten else
                    "of the earlier run rewritten for this one:", page)
    return metrics
