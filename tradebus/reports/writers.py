"""Run outputs and the run directory that holds them.

Files
-----
A run writes only its own files (:data:`OWN_FILES`, the one place that says which they are):

* ``fills.csv`` (:data:`FILL_COLUMNS`; a live run's also ``fee_in_kind``, :func:`fill_columns`),
  ``orders.csv`` (:data:`ORDER_COLUMNS`), ``equity.csv`` (:data:`EQUITY_COLUMNS`: with
  ``funding_paid``, the initial and maintenance ``margin`` of perpetual positions at mark and,
  last, ``interest_paid``, so that every row has ``equity - initial_cash = realized_pnl +
  unrealized_pnl - fees_paid - funding_paid - interest_paid``),
  ``funding.csv``
  (:data:`FUNDING_COLUMNS`: one row per funding settlement of a perpetual position;
  positive ``payment`` paid, negative received; ``fills_before``: how many rows of ``fills.csv``
  were booked before it, so that a rebuilt attribution places it among the fills of its time as
  the run did), ``interest.csv`` (:data:`INTEREST_COLUMNS`:
  one row per charge of borrowing interest, :mod:`tradebus.engine.interest`; written only by a
  run that sets ``annual_borrow_rates``; an earlier run's is rewritten, with no rows, by one that
  does not),
  ``metrics.json``
  (:func:`tradebus.reports.metrics.compute_metrics`), ``config.yaml`` (the resolved
  config, between the comment lines :data:`CONFIG_HEAD` and :data:`CONFIG_END`: a copy cut short lacks the
  last), ``trades.csv`` (the round trips, :data:`tradebus.reports.trades.TRADE_COLUMNS`)
  and ``prices.csv`` (:data:`PRICE_COLUMNS`: each instrument's last price at every
  equity sample, and its first price where that came between samples or moved at its sample's time), for every
  kind of run;
* ``tearsheet.html`` (:mod:`tradebus.reports.tearsheet`) with ``--report`` or
  ``tradebus report``; while a run that writes it (or rewrites an earlier run's) has its other files in
  place and renders it, :data:`UNWRITTEN_PAGE` stands there, moved in with them (and, over an earlier
  run's page, from a daemon's first streamed row on);
* ``attribution.csv`` (:data:`~tradebus.reports.attribution.ATTRIBUTION_COLUMNS`): each
  strategy's fills, position, realised/unrealised PnL, fees, funding and interest per
  instrument, and its total (:mod:`tradebus.reports.attribution`);
* ``node.json`` for a paper or live run, ``playback.json`` for a replay.

Clocks, one per column
----------------------
Every timestamp is int ns UTC, followed where useful by its ISO-8601 text. Two clocks
exist (as on every message): *venue time* (``ts_event``: the exchange's timestamp of
the market data, and of a simulated fill the trade or bar it filled on) and *receive
time* (``ts_init``: the process clock when the run saw or did something -- the data's
``ts_init`` in a backtest, the recorded receive time in a replay, the wall clock in a
paper run). Each column holds one clock:

* ``fills.csv``: ``ts_event``/``time`` venue time (a liquidation's fill: the mark's time,
  reason ``liquidation``).
* ``funding.csv``: ``ts_event``/``time`` the funding time.
* ``interest.csv``: ``ts_event``/``time`` the whole hour of an hourly charge, the fill's venue
  time of a charge at borrowing (``kind`` ``hour`` / ``borrow``; ``hour_kline``: an hour a
  restarted daemon missed, at the close of the venue's 1-minute kline ending at it;
  ``hour_last_fill``: such an hour whose kline could not be fetched, at the journal's last
  fill price).
* ``orders.csv``: ``ts_created`` receive time (when the strategy decided: the one
  receive-time column); ``ts_last_fill`` venue time of the order's last fill (empty
  without a fill). A denied order's row has ``ts_created`` = the denial's time.
* ``equity.csv`` and ``prices.csv``: ``ts``/``time`` receive time (the kernel samples on its clock).
* ``trades.csv``: ``entry_ts``/``exit_ts`` venue time (those of the fills).
* ``metrics.json``: ``start``/``end`` and every span (exposure, annualisation) in
  venue time.

A venue whose quotes carry no venue time (Binance spot ``bookTicker``) has its quotes
stamped with their receive time by the parser; a fill on such a quote inherits it.

So a paper run and a replay of the same frames agree column for column except the
receive-time columns (``orders.csv`` ``ts_created``, ``equity.csv`` ``ts``/``time``).

Outputs are deterministic: the same run gives byte-identical files. Floats are
written with ``repr`` (the shortest text that reads back to the same float), NaN as
an empty field, and nothing depends on the wall clock (except the receive times of
a paper run). A float is never rounded to a decimal precision on its way out: what is
rebuilt from the files (:mod:`tradebus.reports.rundata`'s attribution from ``fills.csv``
and ``funding.csv``, ``equity.csv``'s identity) equals the run's bit for bit, where a
payment rounded to the quote's decimals (-4000 * 1.05591 * 0.0001 is -0.42236399999999996
in float, -0.422364 in decimal) would differ from the ``funding_paid`` that summed it.

The output directory (``--out``)
--------------------------------
:class:`RunDirectory` never deletes or replaces anything but the run's own files:

* before the run, a directory that holds anything else -- except the files the run's
  config names (journal, recording, log files) -- is refused with a :class:`ConfigError`
  (exit 2) naming the directory and those files, unless ``force`` (then they are
  left untouched; an entry at one of the run's own names that is not a plain file,
  such as a symlink, is replaced by the run's file, never written through);
* the hidden temporary of one of its own files (``.fills.csv.tmp-<pid>``, :func:`temporary_path`) that
  a run killed while writing it left is the run's own too: the next run that writes into the
  directory removes it (and no temporary of another name), once it holds the directory (on a file
  system that cannot lock, none is removed: a warning names them, :func:`remove_temporaries`);
* a directory another run holds (a running daemon streaming into it, a backtest still
  running) is refused too, ``force`` or not, naming that run's process: a run holds its
  directory until :meth:`RunDirectory.close` (see its notes);
* each output is written to a temporary file in the same directory and moved over
  its final name with :func:`os.replace`; while the moves happen the directory holds
  an ``INCOMPLETE`` marker, so a run interrupted there leaves a directory that says
  so; a run that fails before its outputs are complete changes nothing;
* except that a paper or live daemon with an output directory writes the
  :data:`STREAMED_FILES` (fills, orders, equity, funding, prices) row by row while it
  runs (:mod:`tradebus.reports.stream`: each row flushed as it happens, so a crash loses
  none written): they are replaced by new, empty files when the daemon starts, the ``INCOMPLETE`` marker
  stands until it stopped cleanly, and the other files are written (as above) at the end.
  The files are byte-identical to those a run writing them at the end would write.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TextIO

from loguru import logger

from tradebus.engine.instrument import grid_of
from tradebus.engine.kernel import EquitySample, FillRecord, RunResult
from tradebus.engine.messages import FundingPaid, InterestCharged, OrderDenied
from tradebus.errors import ConfigError, describe_os_error
from tradebus.execution.orders import Order
from tradebus.locks import cannot_lock, held_shared, take_lock
from tradebus.reports.attribution import ATTRIBUTION_COLUMNS, attribute
from tradebus.reports.metrics import format_ns
from tradebus.reports.trades import TRADE_COLUMNS, Trade, match_trades

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "remove_temporaries",
    "temporary_of",
    "temporary_path",
    "EQUITY_COLUMNS",
    "CONFIG_END",
    "CONFIG_HEAD",
    "FEE_IN_KIND_COLUMN",
    "FUNDING_COLUMNS",
    "FILL_COLUMNS",
    "INCOMPLETE_MARKER",
    "INTEREST_COLUMNS",
    "INTEREST_FILE",
    "ORDER_COLUMNS",
    "OPTIONAL_FILES",
    "OWN_FILES",
    "PRICE_COLUMNS",
    "REPORT_FILE",
    "RunDirectory",
    "RunKind",
    "STREAMED_FILES",
    "UNWRITTEN_PAGE",
    "EquityRows",
    "denial_row",
    "file_identity",
    "fill_columns",
    "fill_row",
    "funding_row",
    "hold_directory",
    "interest_row",
    "is_unwritten_page",
    "order_row",
    "trade_row",
    "output_error",
    "write_csv_header",
    "write_csv_rows",
    "write_file",
    "write_parquet_file",
    "write_run",
]

RunKind = Literal["backtest", "paper", "replay", "live"]

_COMMON_FILES = (
    "fills.csv",
    "orders.csv",
    "equity.csv",
    "funding.csv",
    "interest.csv",  # INTEREST_FILE
    "metrics.json",
    "config.yaml",
    "trades.csv",
    "prices.csv",
    "attribution.csv",
    "tearsheet.html",
)
#: Written only on request (``--report``, ``tradebus report``).
REPORT_FILE = "tearsheet.html"
#: What ``tearsheet.html`` holds from the moment a run's other files are in place until its page replaces it: moved
#: in with them, so that a run stopped in between leaves no earlier run's page beside its files (a daemon streaming
#: beside an earlier run's page puts it there before its first row, :meth:`tradebus.reports.stream.OutputStream.start`).
UNWRITTEN_PAGE = (
    '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>tearsheet not written</title></head><body>'
    "<h1>This run's tearsheet was not written</h1><p>The run in this directory stopped after writing its files "
    "before writing this page, or (a paper or live daemon) is still writing them. "
    "<code>tradebus report &lt;this directory&gt;</code> writes it once the run has finished.</p></body></html>\n"
)
#: The first and the last line of a run's ``config.yaml`` (YAML comments): a file that begins with the first and
#: lacks the last was cut short (a copy or a disk that stopped mid-way), wherever the cut fell.
CONFIG_HEAD = "# tradebus: the config this run ran with, resolved; the file ends with the line '# end of the run config'"
CONFIG_END = "# end of the run config"
#: Written only by a run that sets ``annual_borrow_rates`` (borrowing interest).
INTEREST_FILE = "interest.csv"
#: The own files a run writes only when asked to; every other own file is written by every run.
OPTIONAL_FILES = (REPORT_FILE, INTEREST_FILE)
#: The files each kind of run writes: the only files it ever creates or replaces.
OWN_FILES: dict[RunKind, tuple[str, ...]] = {
    "backtest": _COMMON_FILES,
    "paper": (*_COMMON_FILES, "node.json"),
    "replay": (*_COMMON_FILES, "playback.json"),
    "live": (*_COMMON_FILES, "node.json"),
}
#: Present in a run directory only while (or if interrupted while) its outputs are replaced.
INCOMPLETE_MARKER = "INCOMPLETE"
_MARKER_TEXT = (
    "tradebus was replacing the run outputs in this directory and did not finish:\n"
    "the output files here may come from different runs. Run again to rewrite them.\n"
)
_STREAMING_TEXT = (
    "a tradebus daemon is writing its outputs here (or was, and stopped before it finished):\n"
    "the rows of fills.csv, orders.csv, equity.csv, funding.csv and prices.csv are complete as far\n"
    "as they go; the other files are written when the daemon stops, and may be missing or older.\n"
    "An order a late venue event changed after its row was written has a row more in orders.csv:\n"
    "its last row is its state.\n"
)

FILL_COLUMNS = (
    "ts_event",
    "time",
    "instrument",
    "side",
    "quantity",
    "price",
    "fee",
    "liquidity",
    "client_order_id",
    "strategy_id",
    "trade_id",
    "reason",
)
#: The ``fills.csv`` column of a live run: the part of a fill's fee the venue took in the base
#: asset, out of the coins bought (:attr:`FillRecord.fee_in_kind <tradebus.engine.kernel.FillRecord.fee_in_kind>`).
FEE_IN_KIND_COLUMN = "fee_in_kind"
ORDER_COLUMNS = (
    "client_order_id",
    "strategy_id",
    "instrument",
    "side",
    "type",
    "quantity",
    "price",
    "trigger_price",
    "time_in_force",
    "post_only",
    "reduce_only",
    "status",
    "filled_qty",
    "avg_px",
    "fee_paid",
    "ts_created",
    "ts_last_fill",
    "submit_reason",
    "status_reason",
)
EQUITY_COLUMNS = (
    "ts",
    "time",
    "equity",
    "cash",
    "position_value",
    "realized_pnl",
    "unrealized_pnl",
    "fees_paid",
    "funding_paid",
    "margin",
    "maintenance_margin",
    "drawdown",
    "interest_paid",
)
FUNDING_COLUMNS = ("ts_event", "time", "instrument", "quantity", "mark_price", "rate", "payment", "fills_before")
PRICE_COLUMNS = ("ts", "time", "instrument", "price")
INTEREST_COLUMNS = ("ts_event", "time", "asset", "kind", "borrowed", "price", "annual_rate", "interest", "quote")


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


def write_csv_header(handle: TextIO, columns: Sequence[str]) -> None:
    """Write the header line of a run's CSV file."""
    csv.writer(handle, lineterminator="\n").writerow(columns)


def write_csv_rows(handle: TextIO, rows: Iterable[Sequence[Any]]) -> None:
    """Write rows of a run's CSV file (floats as ``repr``, NaN empty, booleans ``true``/``false``)."""
    writer = csv.writer(handle, lineterminator="\n")
    for row in rows:
        writer.writerow([_cell(v) for v in row])


def _write_csv(handle: TextIO, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    write_csv_header(handle, columns)
    write_csv_rows(handle, rows)


def _on_lots(quantity: float, lot: float | None) -> float:
    """A sum of fill quantities rounded to a thousandth of ``lot`` (the lot's decimals and three more).

    That strips the float noise of the sum (0.060000000000000005 of lots of 0.001 is 0.06) and keeps
    what a thousandth of a lot tells from flat, as the attribution does: a live buy whose fee the
    venue took out of the coins bought is off the lot grid (0.00999 of lots of 0.001).
    """
    if not lot or not math.isfinite(quantity):
        return quantity
    return round(quantity, round(math.log10(grid_of(lot)[1])) + 3) + 0.0  # + 0.0: no -0.0


def _json_ready(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    return value


def fill_columns(kind: RunKind) -> tuple[str, ...]:
    """The columns of ``fills.csv`` of a ``kind`` run.

    A live run's add ``fee_in_kind`` after :data:`FILL_COLUMNS`: a live venue may take a buy's fee
    out of the coins bought (Binance without BNB), so the position moved by less than the
    quantity, and the reports read back from the file need to know by how much. A simulated
    venue never does: the files of backtests, paper runs and replays have :data:`FILL_COLUMNS`.
    """
    return (*FILL_COLUMNS, FEE_IN_KIND_COLUMN) if kind == "live" else FILL_COLUMNS


def fill_row(f: FillRecord, fee_in_kind: bool = False) -> tuple[Any, ...]:
    """The ``fills.csv`` row of a fill (:data:`FILL_COLUMNS`, then ``fee_in_kind`` if asked: :func:`fill_columns`)."""
    row = (
        f.ts_event,
        format_ns(f.ts_event),
        f.instrument_id,
        f.side,
        f.quantity,
        f.price,
        f.fee,
        f.liquidity.lower(),
        f.client_order_id,
        f.strategy_id,
        f.trade_id,
        f.reason,
    )
    return (*row, f.fee_in_kind) if fee_in_kind else row


def order_row(o: Order, ts_last_fill: int | str, submit_reason: str) -> tuple[Any, ...]:
    """The ``orders.csv`` row of an order (:data:`ORDER_COLUMNS`); ``ts_last_fill`` ``""`` without a fill.

    Its ``time_in_force`` is ``GTD`` for a good-till-date order (:attr:`Order.expire_ns`), sent as ``GTC``.
    """
    return (
        o.client_order_id,
        o.strategy_id,
        o.instrument_id,
        o.side.name,
        str(o.order_type),
        o.quantity,
        o.price,
        o.trigger_price,
        "GTD" if o.expire_ns else str(o.tif),
        o.post_only,
        o.reduce_only,
        str(o.status),
        o.filled_qty,
        o.avg_px,
        o.fee_paid,
        o.ts_created,
        ts_last_fill,
        submit_reason,
        o.reason,
    )


def denial_row(d: OrderDenied, submit_reason: str) -> tuple[Any, ...]:
    """The ``orders.csv`` row of a denial whose client order id never became an order."""
    return (d.client_order_id, d.strategy_id, d.instrument_id, "", "", "", "", "", "", "", "", "DENIED",
            "", "", "", d.ts_event, "", submit_reason, d.reason)


def funding_row(f: FundingPaid, fills_before: int) -> tuple[Any, ...]:
    """The ``funding.csv`` row of a funding settlement (:data:`FUNDING_COLUMNS`), booked after ``fills_before``
    of the run's fills (:attr:`RunResult.funding_fills <tradebus.engine.kernel.RunResult.funding_fills>`)."""
    return (f.ts_event, format_ns(f.ts_event), f.instrument_id, f.quantity, f.mark_price, f.rate, f.payment,
            fills_before)


def trade_row(t: Trade) -> tuple[Any, ...]:
    """The ``trades.csv`` row of a round trip (:data:`~tradebus.reports.trades.TRADE_COLUMNS`)."""
    return (t.strategy_id, t.instrument_id, t.side, t.quantity, t.entry_ns, format_ns(t.entry_ns), t.entry_price,
            t.exit_ns, format_ns(t.exit_ns), t.exit_price, t.pnl, t.fees, t.net_pnl, t.holding_s, t.entry_reason,
            t.exit_reason)


def interest_row(c: InterestCharged) -> tuple[Any, ...]:
    """The ``interest.csv`` row of a charge of borrowing interest (:data:`INTEREST_COLUMNS`)."""
    return (c.ts_event, format_ns(c.ts_event), c.asset, c.kind, c.borrowed, c.price, c.annual_rate, c.interest, c.quote)


class EquityRows:
    """Rows of ``equity.csv`` and ``prices.csv``, one sample after the other (the drawdown's peak is kept).

    Parameters
    ----------
    instruments
        The run's instruments, in the order of :attr:`EquitySample.marks`.
    """

    def __init__(self, instruments: Sequence[str]) -> None:
        self.instruments = tuple(instruments)
        self.peak: float | None = None

    def equity(self, s: EquitySample, initial_cash: float) -> tuple[Any, ...]:
        """The ``equity.csv`` row of ``s`` (:data:`EQUITY_COLUMNS`); the peak starts at ``initial_cash``."""
        peak = max(initial_cash if self.peak is None else self.peak, s.equity)
        self.peak = peak
        drawdown = 1.0 - s.equity / peak if peak > 0.0 else 0.0
        return (
            s.ts,
            format_ns(s.ts),
            s.equity,
            s.cash,
            s.position_value,
            s.realized_pnl,
            s.unrealized_pnl,
            s.fees_paid,
            s.funding_paid,
            s.margin,
            s.maintenance_margin,
            drawdown,
            s.interest_paid,
        )

    def prices(self, s: EquitySample) -> list[tuple[Any, ...]]:
        """The ``prices.csv`` rows of ``s`` (:data:`PRICE_COLUMNS`): each instrument with a price.

        The first price of an instrument ``s`` is the first to price (:attr:`EquitySample.first_prices`)
        comes first, at its own time (which may be ``s``'s: the sample's row is that time's last price):
        buy & hold starts there.
        """
        time = format_ns(s.ts)
        rows = [(ts, format_ns(ts), iid, price) for ts, iid, price in s.first_prices]
        rows.extend((s.ts, time, iid, price) for iid, price in zip(self.instruments, s.marks, strict=False) if price == price)
        return rows


def output_error(path: Path, exc: OSError) -> ConfigError:
    """The error of a run output that cannot be written (a full disk, a file size limit, ...).

    It names the file and the errno, e.g. ``output runs/x/fills.csv: cannot write it (ENOSPC: No space
    left on device)``.
    """
    return ConfigError(f"output {path}: cannot write it ({describe_os_error(exc)})")


def write_file(path: Path, content: bytes | str | Callable[[Path], object]) -> Path:
    """Write ``content`` to ``path`` atomically; return ``path``.

    ``content`` is the file's bytes, its text (UTF-8), or a writer called with the path to write
    (e.g. ``lambda p: pq.write_table(table, p)``). The file is written to a hidden temporary name
    in the same folder, fsynced and renamed, so ``path`` is either absent (or the previous file)
    or complete, also after a power loss; a failed write leaves nothing of itself.

    Raises
    ------
    ConfigError
        An OS error (a full disk, a file size limit), naming ``path`` (:func:`output_error`).
    """
    temp = temporary_path(path)
    try:
        try:
            if callable(content):
                content(temp)
            else:
                temp.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
            fd = os.open(temp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise output_error(path, exc) from None
    return path


def is_unwritten_page(path: Path) -> bool:
    """Whether the file at ``path`` is :data:`UNWRITTEN_PAGE` (a run stopped before writing its tearsheet there)."""
    text = UNWRITTEN_PAGE.encode("utf-8")
    try:
        return path.stat().st_size == len(text) and path.read_bytes() == text
    except OSError:
        return False


def file_identity(path: Path) -> tuple[int, int] | None:
    """``path``'s inode and modification time (``None``: no such file); a file replaced since has another."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


_TEMPORARY = re.compile(r"\.(?P<name>.+)\.tmp-[0-9]+")


def temporary_path(path: Path) -> Path:
    """The hidden temporary ``path`` is written to before it is renamed over it: ``.<name>.tmp-<pid>`` beside it.

    The one name every output written by renaming uses (:func:`write_file`, :meth:`RunDirectory.open`,
    the streamed files), so that :func:`temporary_of` recognises what a killed process left.
    """
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def temporary_of(name: str) -> str | None:
    """The name of the file whose temporary (:func:`temporary_path`) is named ``name``, else ``None``.

    ``.best.json.tmp-4242`` (``.<name>.tmp-<pid>``) gives ``best.json``: one a process killed while
    writing it left behind.
    """
    match = _TEMPORARY.fullmatch(name)
    return None if match is None else match["name"]


def remove_temporaries(folder: Path, own: Callable[[str], bool], what: str = "a run", *, held: bool) -> None:
    """Remove from ``folder`` the temporaries (:func:`temporary_path`) of the files ``own`` accepts.

    They are what a process killed while writing one of those files left. Only plain files
    whose name :func:`temporary_of` decodes to a name ``own`` accepts are removed (a symlink or
    a folder, and the temporaries of other names, are left). ``held``: whether the caller holds
    ``folder`` against other writers (:func:`hold_directory`); only then is a temporary known to be
    no running writer's. Without it (a file system that cannot lock) none is removed: they are
    warned of by name, to be removed by hand once no run writes there (another process, possibly
    on another host, may be writing one; its pid says nothing here). ``what`` names the writer in
    the log lines.
    """
    if not folder.is_dir() or folder.is_symlink():
        return
    found = []
    for path in sorted(folder.iterdir()):
        target = temporary_of(path.name)
        if target is None or path.is_symlink() or not path.is_file() or not own(target):
            continue
        if not held:
            found.append(path.name)
            continue
        path.unlink(missing_ok=True)
        logger.info("{}: removed {}, left by {} stopped while writing {}", folder, path.name, what, target)
    if found:
        logger.warning(
            "{}: left {}: the directory cannot be locked, so they may be another {}'s files being written; "
            "remove them once no {} writes there",
            folder, ", ".join(found), what.removeprefix("a "), what.removeprefix("a "),
        )


def write_parquet_file(table: pa.Table, path: Path, **options: Any) -> Path:
    """Write ``table`` to ``path`` as Parquet (``options``: :func:`pyarrow.parquet.write_table`'s), atomically.

    See :func:`write_file`; returns ``path``.

    Raises
    ------
    ConfigError
        An OS error (a full disk, a file size limit), naming ``path`` (:func:`output_error`).
    """
    import pyarrow.parquet as pq

    return write_file(path, lambda temp: pq.write_table(table, temp, **options))


#: The files a daemon writes row by row while it runs (:mod:`tradebus.reports.stream`).
STREAMED_FILES = ("fills.csv", "orders.csv", "equity.csv", "funding.csv", "prices.csv")


def write_run(
    run_dir: RunDirectory,
    result: RunResult,
    metrics: dict[str, Any],
    config_yaml: str,
    extra: Mapping[str, str] | None = None,
    lot_sizes: Mapping[str, float] | None = None,
    *,
    streamed: bool = False,
) -> None:
    """Write a run's files into ``run_dir`` (inside its ``with`` block; see :class:`RunDirectory`).

    Parameters
    ----------
    run_dir
        The open run directory.
    result, metrics, config_yaml
        What ``fills.csv``, ``orders.csv``, ``equity.csv``, ``metrics.json`` and ``config.yaml`` hold (``config_yaml``
        between :data:`CONFIG_HEAD` and :data:`CONFIG_END`; empty, or ending in a newline).
    extra
        Further files of this kind of run, name -> text (``node.json``, ``playback.json``).
    lot_sizes
        Per instrument, the lot size below a thousandth of which a lot counts as closed
        (``trades.csv``; see :func:`tradebus.reports.trades.match_trades`) and to a thousandth of
        which ``attribution.csv``'s ``bought``, ``sold`` and ``position`` are rounded.
    streamed
        The :data:`STREAMED_FILES` were written during the run (:class:`~tradebus.reports.stream.OutputStream`):
        write only the others.
    """
    if not streamed:
        _write_streamed_files(run_dir, result)
    with run_dir.open("trades.csv") as handle:
        _write_csv(handle, TRADE_COLUMNS,
                   (trade_row(t) for t in match_trades(result.fills, dict(lot_sizes or {}), result.contract_sizes)))
    lots = lot_sizes or {}
    with run_dir.open("attribution.csv") as handle:
        _write_csv(
            handle,
            ATTRIBUTION_COLUMNS,
            (
                (a.strategy_id, a.instrument, a.fills,
                 *(_on_lots(q, lots.get(a.instrument)) for q in (a.bought, a.sold, a.position)),
                 a.avg_price, a.last_price, a.realized_pnl, a.unrealized_pnl, a.fees, a.funding, a.interest, a.net_pnl)
                for a in attribute(
                    result.fills, result.last_prices, result.contract_sizes,
                    funding=result.funding, funding_fills=result.funding_fills, interest=result.interest,
                    borrow_assets=result.borrow_assets, lot_sizes=lot_sizes,
                )
            ),
        )
    if result.interest is not None or (run_dir.path / INTEREST_FILE).exists():
        # An earlier run's file is rewritten, not deleted: no rows when this run charges no interest.
        with run_dir.open(INTEREST_FILE) as handle:
            _write_csv(handle, INTEREST_COLUMNS, (interest_row(c) for c in result.interest or ()))
    with run_dir.open("metrics.json") as handle:
        handle.write(json.dumps(_json_ready(metrics), indent=2, allow_nan=False) + "\n")
    with run_dir.open("config.yaml") as handle:
        handle.write(f"{CONFIG_HEAD}\n{config_yaml}{CONFIG_END}\n")
    for name, text in (extra or {}).items():
        with run_dir.open(name) as handle:
            handle.write(text + "\n")


def _write_streamed_files(run_dir: RunDirectory, result: RunResult) -> None:
    """``fills.csv``, ``orders.csv``, ``equity.csv``, ``funding.csv`` and ``prices.csv`` of a finished run."""
    last_fill: dict[str, int] = {}
    for f in result.fills:
        last_fill[f.client_order_id] = max(f.ts_event, last_fill.get(f.client_order_id, f.ts_event))
    with run_dir.open("fills.csv") as handle:
        columns = fill_columns(run_dir.kind)
        in_kind = FEE_IN_KIND_COLUMN in columns
        _write_csv(handle, columns, (fill_row(f, in_kind) for f in result.fills))
    known_ids = {o.client_order_id for o in result.orders}
    reasons = result.submit_reasons
    with run_dir.open("orders.csv") as handle:
        _write_csv(
            handle,
            ORDER_COLUMNS,
            [order_row(o, last_fill.get(o.client_order_id, ""), reasons.get(o.client_order_id, ""))
             for o in result.orders]
            + [denial_row(d, reasons.get(d.client_order_id, "")) for d in result.denials
               if d.client_order_id not in known_ids],
        )
    rows = EquityRows(result.instruments)
    with run_dir.open("equity.csv") as handle:
        _write_csv(handle, EQUITY_COLUMNS, (rows.equity(s, result.initial_cash) for s in result.equity))
    with run_dir.open("funding.csv") as handle:
        _write_csv(handle, FUNDING_COLUMNS,
                   (funding_row(f, n) for f, n in zip(result.funding, result.funding_fills, strict=True)))
    with run_dir.open("prices.csv") as handle:
        _write_csv(handle, PRICE_COLUMNS, (row for s in result.equity for row in rows.prices(s)))


class RunDirectory:
    """The output directory of a run: checked before the run, written file by file after it.

    Construct it before the run starts: that is when a directory holding files the run
    would not write is refused. Then write the outputs inside ``with run_dir:`` through
    :meth:`open`; on a clean exit each is moved over its final name, on an exception the
    temporary files are removed and the directory is as it was (see the module docstring).

    Parameters
    ----------
    path
        The output directory (created on writing if missing).
    kind
        The kind of run: its own files are ``OWN_FILES[kind]``.
    keep
        Files the run knows but does not write (its journal, recording, log files): allowed in
        the directory, never touched.
    force
        Write beside foreign files instead of refusing (they are left untouched).

    Raises
    ------
    ConfigError
        ``path`` is not a directory, cannot be created or written, or holds files other than
        the run's own and ``keep`` (without ``force``). The message names the directory and those files.
        Or another run holds the directory (with or without ``force``; the message names its process).

    Notes
    -----
    From construction (or, for a directory that does not exist yet, from its creation) until
    :meth:`close`, the directory is held with an exclusive ``flock`` on the directory itself
    (:mod:`tradebus.locks`): a second run on it is refused instead of replacing the files this
    one writes, a daemon's streamed files included. The lock leaves nothing in the directory
    and goes with the process (``kill -9`` included); one the file system cannot take (some
    network file systems) is warned of, and the run goes on without it, leaving in the directory
    the temporaries a killed run may have left (:func:`remove_temporaries`).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        kind: RunKind,
        *,
        keep: Iterable[str | os.PathLike[str]] = (),
        force: bool = False,
    ) -> None:
        self.path = Path(path)
        self.kind = kind
        self.own = OWN_FILES[kind]
        self._keep = {Path(p).absolute() for p in keep}
        self._pending: dict[str, Path] = {}
        self._created = False
        self._swept = False  # the temporaries a killed run left were removed
        self._lock: weakref.finalize | None = None  # closes the locked descriptor (also when forgotten)
        if self.path.is_dir():
            self._hold()
        try:
            foreign = self.foreign()
        except BaseException:
            self.close()
            raise
        if foreign and not force:
            self.close()
            raise ConfigError(
                f"output directory {self.path} holds files a {kind} run does not write: {', '.join(foreign)}. "
                f"A run only writes {', '.join(self.own)} there and never touches anything else; "
                "choose another --out, or pass --force to write beside them"
            )
        if foreign:
            logger.warning("output directory {}: writing beside {} (--force; left untouched)", self.path, foreign)

    def _hold(self) -> None:
        """Take the directory's lock (see the class notes), or refuse a directory another run holds."""
        if self._lock is not None:
            return
        fd = hold_directory(
            self.path,
            "Wait for it to finish or stop it, or choose another --out (--force does not override this)",
        )
        if fd is not None:
            self._lock = weakref.finalize(self, os.close, fd)

    def close(self) -> None:
        """Release the directory (the run is over, or failed): another run may write there again."""
        if self._lock is not None:
            self._lock()

    def foreign(self) -> list[str]:
        """Names in the directory that are neither the run's own files nor kept files (sorted)."""
        if not self.path.exists():
            self._check_creatable()
            return []
        if not self.path.is_dir():
            raise ConfigError(f"output directory {self.path} exists and is not a directory")
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise ConfigError(f"output directory {self.path} is not writable")
        names = []
        for entry in self.path.iterdir():
            if (self._own(entry.name) or self._own(temporary_of(entry.name))) and _is_plain_file(entry):
                continue  # the run's file, or the temporary of one a killed run left (removed when it writes)
            if self._kept(entry):
                continue
            names.append(entry.name + ("/" if entry.is_dir() else ""))
        return sorted(names)

    def _check_creatable(self) -> None:
        """Refuse, before the run, a missing directory that cannot be created where it is asked for."""
        ancestor = self.path.absolute().parent
        while not ancestor.exists():
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise ConfigError(f"output directory {self.path} cannot be created: {ancestor} is not a directory")
        if not os.access(ancestor, os.W_OK | os.X_OK):
            raise ConfigError(f"output directory {self.path} cannot be created: {ancestor} is not writable")
        # access() says yes to root, and knows nothing of /proc or a read-only mount: make the folder the run
        # would make, and remove it again
        first = self.path.absolute()
        while first.parent != ancestor:
            first = first.parent
        try:
            first.mkdir()
        except FileExistsError:  # made meanwhile by another process: there now
            return
        except OSError as exc:
            raise ConfigError(
                f"output directory {self.path} cannot be created: {first} ({describe_os_error(exc)})"
            ) from None
        try:
            first.rmdir()
        except OSError:
            pass  # something was put in it meanwhile: not ours to remove

    def _own(self, name: str | None) -> bool:
        """Whether ``name`` is one of the run's own files or its ``INCOMPLETE`` marker."""
        return name in self.own or name == INCOMPLETE_MARKER

    def _remove_temporaries(self) -> None:
        """Remove the temporaries of the run's own files a run killed while writing them left (once, held)."""
        if not self._swept:
            self._swept = True
            # the directory the run writes in and holds: an --out symlink's target, as its files go there
            remove_temporaries(self.path.resolve(), self._own, held=self._lock is not None)

    def _kept(self, entry: Path) -> bool:
        entry = entry.absolute()
        for kept in self._keep:
            if entry == kept or entry in kept.parents:
                return True
            # SQLite keeps -wal / -shm / -journal files beside a database.
            if entry.parent == kept.parent and entry.name.startswith(kept.name + "-"):
                return True
        return False

    def __enter__(self) -> RunDirectory:
        if not self.path.exists():
            try:
                self.path.mkdir(parents=True)
            except OSError as exc:
                raise output_error(self.path, exc) from None
            self._created = True
        self._hold()
        self._remove_temporaries()
        return self

    @contextmanager
    def open(self, name: str) -> Iterator[TextIO]:
        """A text handle on the temporary file of the run's own file ``name``."""
        if name not in self.own:
            raise ValueError(f"{name!r} is not a file a {self.kind} run writes ({', '.join(self.own)})")
        temp = temporary_path(self.path / name)
        self._pending[name] = temp
        try:
            with temp.open("w", encoding="utf-8", newline="") as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise output_error(self.path / name, exc) from None

    def stream(self, name: str) -> TextIO:
        """A text handle on the run's own file ``name`` itself, for writing it row by row during the run.

        The file is a new, empty one that replaces what was at ``name`` (a symlink itself, never
        the file it points to, as :meth:`open` does); the directory is created if missing and holds
        the ``INCOMPLETE`` marker until the ``with`` block that writes the other files ends cleanly.
        The caller closes the handle before that block.

        Raises
        ------
        ConfigError
            The directory, the marker or the file cannot be written (:func:`output_error`).
        """
        if name not in self.own:
            raise ValueError(f"{name!r} is not a file a {self.kind} run writes ({', '.join(self.own)})")
        marker = self.path / INCOMPLETE_MARKER
        target = self.path
        try:
            if not self.path.exists():
                self.path.mkdir(parents=True)
                self._created = True
            self._hold()
            self._remove_temporaries()
            target = marker
            if not _is_plain_file(marker):
                _write_marker(marker, _STREAMING_TEXT)
            target = self.path / name
            return _replace_with_new_file(target)
        except OSError as exc:
            raise output_error(target, exc) from None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            for temp in self._pending.values():
                temp.unlink(missing_ok=True)
            if self._created and not any(self.path.iterdir()):
                self.path.rmdir()
            return
        marker = self.path / INCOMPLETE_MARKER
        try:
            _write_marker(marker, _MARKER_TEXT)
            for name, temp in self._pending.items():
                os.replace(temp, self.path / name)
        except BaseException as error:
            for temp in self._pending.values():
                temp.unlink(missing_ok=True)
            if isinstance(error, OSError):  # the marker stays: the directory is a mix of old and new outputs
                raise output_error(Path(error.filename2 or error.filename or self.path), error) from None
            raise
        marker.unlink()


def hold_directory(
    path: Path, advice: str, *, kind: str = "output", runs: str = "tradebus run", shared: bool = False
) -> int | None:
    """Hold the ``kind`` directory ``path`` against other ``runs`` (:mod:`tradebus.locks`; :class:`RunDirectory`'s
    notes); the descriptor to close to release it.

    ``shared``: a reader's hold (a report reading a run, or writing its page there), which keeps out a
    run but not another reader.

    ``None`` when the file system cannot lock (warned of: another run could write into it at the same time).

    A holder that ends while its hold is told apart (a run's from a report's) leaves ``path`` to this call: held,
    not refused as in use by a report that is none.

    Raises
    ------
    ConfigError
        ``path`` cannot be opened, or another run holds it: the message names that run's process, says
        whether it writes there (a run) or reads (a report, holding it shared; it may write its page there),
        and ends with ``advice``.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise ConfigError(f"{kind} directory {path} cannot be opened ({describe_os_error(exc)})") from None
    try:
        holder = take_lock(fd, shared=shared)
    except OSError as exc:
        os.close(fd)
        logger.warning("{}; another {} could write into it at the same time", cannot_lock(f"{kind} directory {path}", exc),
                       runs)
        return None
    if holder is not None:
        reading = not shared and held_shared(fd)  # only reports hold shared: they read runs and write pages
        if reading and take_lock(fd) is None:  # no holder at all by then: the one refusing it ended meanwhile
            return fd
        os.close(fd)
        if reading:
            raise ConfigError(
                f"{kind} directory {path} is in use by a running tradebus report ({holder}): it reads the files "
                f"there, or writes its page there. {advice}"
            )
        raise ConfigError(
            f"{kind} directory {path} is in use by another running {runs} ({holder}): it writes its "
            f"outputs there. {advice}"
        )
    return fd


def _replace_with_new_file(path: Path) -> TextIO:
    """A text handle on a new, empty file that replaced ``path`` (a symlink there is replaced, not followed).

    The file is created under a temporary name in the same directory (removing a stale one this
    process id left) and moved over ``path`` with :func:`os.replace`; the temporary file is removed
    if the move fails.
    """
    temp = temporary_path(path)
    temp.unlink(missing_ok=True)
    handle = temp.open("x", encoding="utf-8", newline="")
    try:
        os.replace(temp, path)
    except BaseException:
        handle.close()
        temp.unlink(missing_ok=True)
        raise
    return handle


def _is_plain_file(path: Path) -> bool:
    """Whether ``path`` is a regular file and not a symlink (a run's own file, not a link to another)."""
    return path.is_file() and not path.is_symlink()


def _write_marker(marker: Path, text: str) -> None:
    """Write the ``INCOMPLETE`` marker as a new file (replacing, never following, a symlink there)."""
    with _replace_with_new_file(marker) as handle:
        handle.write(text)
