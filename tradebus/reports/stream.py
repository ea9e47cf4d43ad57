"""A daemon's outputs written while it runs: each row appended and flushed as it happens.

A backtest keeps its orders, fills and equity samples in memory and writes them at the end
(:func:`tradebus.reports.outputs.write_outputs`). A daemon runs for days: an
:class:`OutputStream` writes ``fills.csv``, ``orders.csv``, ``equity.csv``, ``funding.csv`` and
``prices.csv`` (:data:`~tradebus.reports.writers.STREAMED_FILES`) row by row instead, so that

* a crash (``kill -9`` included) loses no row already written: every row is flushed to the
  operating system as soon as it is complete, and a file holds whole rows only;
* memory stays bounded: a fill is written and not kept in the kernel's results; an order's row
  is written once it is closed, after which the order manager may forget it
  (:meth:`~tradebus.execution.orders.OrderManager.release`: the latest 1,000, and those released in the
  last 5 minutes, stay known for late venue events; the live venue forgets them with it), and its submit
  reason is dropped with it; denials are counted, not kept;
* the files are byte-identical to those written at the end of the same run
  (:func:`tradebus.reports.writers.write_run`): ``orders.csv`` lists the orders in creation
  order, so a closed order's row waits for every earlier order to close (the orders still
  working when the daemon stops are written then, in their final state), and the rows of
  denials that never became orders come last, at the end.

A closed order is still changed by a late venue event while the order manager knows it: a fill
whose frame came after the cancel's answer (``FILL_AFTER_CLOSE``), an order believed REJECTED
that the venue had after all (``REOPENED``: accepted, filled, canceled later). Its new state is
appended to ``orders.csv`` as one more row of the same ``client_order_id`` (the file stays
append-only): while the daemon runs, an order's *last* row is its state. :meth:`OutputStream.finish`
then rewrites ``orders.csv`` with each such order's last row in place of its first, so that the
file equals ``write_run``'s. An event after the order manager forgot the order is an unknown
order's (its fill is booked, the order's row stays as written).

The other files (metrics, round trips, attribution, config, ``node.json``) are written when
the daemon stops, from the fills read back from ``fills.csv``.

A row that cannot be written (a full disk, a file size limit) is the stream's :attr:`OutputStream.failure`
(a :class:`~tradebus.errors.ConfigError` naming the file and the errno, :func:`~tradebus.reports.writers.output_error`):
the files are closed, nothing more is written, and ``on_failure`` is called with it -- the daemon stops
on it. A daemon with a journal loses nothing: the journal holds every order and fill, and a restart
rewrites the files from it.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Iterable
from itertools import islice
from pathlib import Path
from typing import Any, TextIO, TypeVar

from loguru import logger

from tradebus.engine.kernel import EquitySample, FillRecord, Kernel
from tradebus.engine.messages import (
    FundingPaid,
    OrderAccepted,
    OrderCanceled,
    OrderDenied,
    OrderExpired,
    OrderFilled,
    OrderModified,
    OrderRejected,
    OrderResolved,
    OrderSubmitted,
    OrderTimedOut,
    OrderTriggered,
)
from tradebus.errors import ConfigError, DataError
from tradebus.execution.orders import Order
from tradebus.reports.writers import (
    EQUITY_COLUMNS,
    FEE_IN_KIND_COLUMN,
    FILL_COLUMNS,
    FUNDING_COLUMNS,
    ORDER_COLUMNS,
    PRICE_COLUMNS,
    REPORT_FILE,
    UNWRITTEN_PAGE,
    EquityRows,
    RunDirectory,
    denial_row,
    fill_columns,
    fill_row,
    funding_row,
    is_unwritten_page,
    order_row,
    output_error,
    write_csv_header,
    write_csv_rows,
    write_file,
)

__all__ = ["FillSink", "OutputStream", "read_fills"]

T = TypeVar("T")

_TS_LAST_FILL = ORDER_COLUMNS.index("ts_last_fill")
_SUBMIT_REASON = ORDER_COLUMNS.index("submit_reason")

_ORDER_EVENTS = (
    OrderSubmitted,
    OrderAccepted,
    OrderRejected,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderModified,
    OrderTriggered,
    OrderTimedOut,
    OrderResolved,
)


class FillSink:
    """Stands in for :attr:`RunResult.fills` while a daemon streams: each fill is written, none kept.

    ``len()`` is the number of fills so far.
    """

    __slots__ = ("_write", "count")

    def __init__(self, write: Callable[[FillRecord], None], count: int = 0) -> None:
        self._write = write
        self.count = count

    def append(self, fill: FillRecord) -> None:
        """Write ``fill`` (the kernel records its fills with ``append``)."""
        self._write(fill)
        self.count += 1

    def __len__(self) -> int:
        return self.count


class _WrittenList(list[T]):
    """A list that writes every item appended to it (small results the metrics still need: equity, funding)."""

    def __init__(self, items: Iterable[T], write: Callable[[T], None]) -> None:
        super().__init__(items)
        self._write = write

    def append(self, item: T) -> None:
        super().append(item)
        self._write(item)


class OutputStream:
    """Writes a daemon's row files into ``run_dir`` as the kernel produces them (see the module docstring).

    Parameters
    ----------
    run_dir
        The run's output directory (not opened yet; :meth:`finish` is called before the files
        written at the end).
    kernel
        The daemon's kernel.
    on_failure
        Called once with :attr:`failure` when a row cannot be written (from the bus handler
        that wrote it: it must not raise).

    Notes
    -----
    Call :meth:`start` after the journal was replayed into the kernel and before
    ``kernel.start()``, and :meth:`finish` after ``kernel.stop()``.
    """

    def __init__(
        self, run_dir: RunDirectory, kernel: Kernel, on_failure: Callable[[ConfigError], None] | None = None
    ) -> None:
        self.run_dir = run_dir
        self.kernel = kernel
        self.on_failure = on_failure
        #: The first write that failed (names the file and the errno); nothing is written after it.
        self.failure: ConfigError | None = None
        #: Rows written to ``orders.csv`` for orders (denials that never became orders not counted).
        self.orders = 0
        #: ``OrderDenied`` messages of the run (journaled ones included).
        self.denied = 0
        self._files: dict[str, TextIO] = {}
        # Orders without a row yet, in creation order; the first is still working.
        self._pending: dict[str, Order] = {}
        self._seen = 0
        self._last_fill: dict[str, int] = {}
        self._denial_rows: list[tuple[Any, ...]] = []
        # Rows written of orders the order manager still knows (a late event may change them), in writing order.
        self._written: dict[str, tuple[Any, ...]] = {}
        # Orders with more than one row in orders.csv (finish keeps the last of each).
        self._rewritten: set[str] = set()
        self._equity_rows = EquityRows(kernel.result.instruments)
        self._started = False
        self._finished = False
        self._fee_in_kind = False  # whether fills.csv has the fee_in_kind column (set by start)

    # ------------------------------------------------------------------ lifecycle

    @property
    def started(self) -> bool:
        """Whether :meth:`start` ran (the row files are this run's)."""
        return self._started

    def start(self) -> None:
        """Open the files, write what the journal replay brought back, and hook into the kernel.

        A tearsheet an earlier run left in the directory is replaced by
        :data:`~tradebus.reports.writers.UNWRITTEN_PAGE` before the first row (the end of the run writes this run's).

        Raises
        ------
        ConfigError
            A file cannot be created or written (:attr:`failure`; the files are closed).
        """
        if self._started:
            return
        self._started = True
        kernel = self.kernel
        result = kernel.result
        fill_header = fill_columns(self.run_dir.kind)
        self._fee_in_kind = FEE_IN_KIND_COLUMN in fill_header
        for name, columns in (
            ("fills.csv", fill_header),
            ("orders.csv", ORDER_COLUMNS),
            ("equity.csv", EQUITY_COLUMNS),
            ("funding.csv", FUNDING_COLUMNS),
            ("prices.csv", PRICE_COLUMNS),
        ):
            try:
                handle = self._files[name] = self.run_dir.stream(name)
                write_csv_header(handle, columns)
                handle.flush()
            except OSError as exc:
                self._fail(name, exc)
            except ConfigError as error:
                self.failure = error
                self._close_files()
            if self.failure is not None:
                raise self.failure
        page = self.run_dir.path / REPORT_FILE
        if page.is_file() and not is_unwritten_page(page):  # an earlier run's: not this run's beside its rows
            try:
                write_file(page, UNWRITTEN_PAGE)
            except ConfigError as error:
                self.failure = error
                self._close_files()
                raise
        self._register_new_orders()
        recovered = result.fills
        for fill in recovered:
            self._write_fill(fill)
        result.fills = FillSink(self._write_fill, len(recovered))  # type: ignore[assignment]
        for sample in result.equity:
            self._write_equity(sample)
        result.equity = _WrittenList(result.equity, self._write_equity)
        for paid, fills_before in zip(result.funding, result.funding_fills, strict=True):
            self._write("funding.csv", (funding_row(paid, fills_before),))
        result.funding = _WrittenList(result.funding, self._write_funding)
        if kernel.perpetuals is not None:
            kernel.perpetuals.funding = result.funding
        for denial in list(result.denials):
            self._on_denied(denial)
        bus = kernel.bus
        for event_type in _ORDER_EVENTS:
            bus.subscribe(event_type, self._on_order_event)
        bus.subscribe(OrderDenied, self._on_denied)
        self._write_closed()
        if self.failure is not None:
            raise self.failure

    def finish(self) -> None:
        """Write the orders still without a row and the denial rows, close the files, read the fills back.

        Afterwards ``kernel.result.fills`` is the list of every fill again (read from ``fills.csv``),
        for the files written at the end.

        Raises
        ------
        ConfigError
            A row cannot be written, now or earlier in the run (:attr:`failure`; the files are closed).
        """
        if not self._started or self._finished:
            return
        self._finished = True
        if self.failure is None:
            self._register_new_orders()
            self._write_closed()
            rows = [self._order_row(order) for order in self._pending.values()]
            self.orders += len(rows)
            reasons = self.kernel.result.submit_reasons
            for coid in (*self._written, *self._pending):
                reasons.pop(coid, None)
            self._written.clear()
            self._pending.clear()
            rows += self._denial_rows
            self._denial_rows = []
            self._write("orders.csv", rows)
        for name, handle in list(self._files.items()):
            if self.failure is not None:
                break
            try:
                os.fsync(handle.fileno())
                handle.close()
            except OSError as exc:
                self._fail(name, exc)
        if self.failure is None and self._rewritten:
            self._keep_last_rows()
        if self.failure is not None:
            raise self.failure
        self.kernel.result.fills = read_fills(self.run_dir.path / "fills.csv")

    # ------------------------------------------------------------------ rows

    def _write(self, name: str, rows: Iterable[tuple[Any, ...]]) -> None:
        if self.failure is not None:
            return
        handle = self._files[name]
        try:
            write_csv_rows(handle, rows)
            handle.flush()
        except OSError as exc:
            self._fail(name, exc)

    def _fail(self, name: str, exc: OSError | ConfigError) -> None:
        """Keep the first failed write as :attr:`failure`, close the files and tell ``on_failure``.

        ``exc`` is the OS error writing ``name``, or the :func:`~tradebus.reports.writers.output_error` it made.
        """
        if self.failure is not None:
            return
        self.failure = error = exc if isinstance(exc, ConfigError) else output_error(self.run_dir.path / name, exc)
        logger.error("{}: no more rows are written", error)
        self._close_files()
        if self.on_failure is not None:
            self.on_failure(error)

    def _close_files(self) -> None:
        """Close every file, the one that failed included (its buffered rest cannot be written)."""
        for handle in self._files.values():
            try:
                handle.close()
            except OSError:
                pass  # close() closed the descriptor and then raised what its flush could not write

    def _write_fill(self, fill: FillRecord) -> None:
        self._write("fills.csv", (fill_row(fill, self._fee_in_kind),))
        coid = fill.client_order_id
        if coid in self._pending:
            last = self._last_fill.get(coid)
            self._last_fill[coid] = fill.ts_event if last is None else max(last, fill.ts_event)

    def _write_equity(self, sample: EquitySample) -> None:
        rows = self._equity_rows
        self._write("equity.csv", (rows.equity(sample, self.kernel.result.initial_cash),))
        self._write("prices.csv", rows.prices(sample))

    def _write_funding(self, paid: FundingPaid) -> None:
        # A new payment is booked after every fill so far (the kernel's RunResult.funding_fills).
        self._write("funding.csv", (funding_row(paid, len(self.kernel.result.fills)),))

    def _order_row(self, order: Order) -> tuple[Any, ...]:
        coid = order.client_order_id
        return order_row(order, self._last_fill.pop(coid, ""), self.kernel.result.submit_reasons.get(coid, ""))

    def _keep_last_rows(self) -> None:
        """Rewrite the closed ``orders.csv`` with one row per order written again: its last, in place of its first.

        Two passes over the file (not held in memory); the new file replaces it in one move.
        """
        path = self.run_dir.path / "orders.csv"
        rewritten = self._rewritten

        def rewrite(temp: Path) -> None:
            last: dict[str, list[str]] = {}
            with path.open(encoding="utf-8", newline="") as handle:
                for row in islice(csv.reader(handle), 1, None):
                    if row[0] in rewritten:
                        last[row[0]] = row
            with path.open(encoding="utf-8", newline="") as source, temp.open("w", encoding="utf-8", newline="") as out:
                writer = csv.writer(out, lineterminator="\n")
                reader = csv.reader(source)
                writer.writerow(next(reader))
                for row in reader:
                    coid = row[0]
                    if coid in rewritten:
                        if coid not in last:
                            continue  # its last row was written in place of its first
                        row = last.pop(coid)
                    writer.writerow(row)

        try:
            write_file(path, rewrite)
        except ConfigError as error:
            self._fail("orders.csv", error)

    # ------------------------------------------------------------------ orders

    def _register_new_orders(self) -> None:
        orders = self.kernel.orders
        new = orders.created - self._seen
        if new:
            self._seen = orders.created
            for order in orders.latest(new):
                self._pending[order.client_order_id] = order

    def _write_closed(self) -> None:
        """Write the rows of the closed orders at the head of the creation order; release them."""
        pending = self._pending
        rows = []
        released = []
        for coid, order in pending.items():
            if not order.is_closed:
                break
            rows.append(self._order_row(order))
            released.append(coid)
        if not rows:
            return
        for coid in released:
            del pending[coid]
        self._write("orders.csv", rows)
        self.orders += len(rows)
        orders = self.kernel.orders
        written = self._written
        for coid, row in zip(released, rows, strict=True):
            written[coid] = row
            orders.release(coid)
        self._forget_written()

    def _forget_written(self) -> None:
        """Drop the written rows (and submit reasons) of the orders the order manager forgot, oldest first."""
        written = self._written
        known = self.kernel.orders.get
        reasons = self.kernel.result.submit_reasons
        while written:
            coid = next(iter(written))
            if known(coid) is not None:
                break
            del written[coid]
            reasons.pop(coid, None)

    def _write_again(self, coid: str, event: Any) -> None:
        """Append the new row of an order a late event changed after its row was written (see the module docstring)."""
        order = self.kernel.orders.get(coid)
        if order is None:
            return
        before = self._written[coid]
        ts_last_fill = before[_TS_LAST_FILL]
        if type(event) is OrderFilled:
            ts_last_fill = event.ts_event if ts_last_fill == "" else max(ts_last_fill, event.ts_event)
        row = order_row(order, ts_last_fill, before[_SUBMIT_REASON])
        if row == before:
            return
        self._written[coid] = row
        self._rewritten.add(coid)
        self._write("orders.csv", (row,))

    def _on_order_event(self, event: Any) -> None:
        if event.client_order_id in self._written:
            self._write_again(event.client_order_id, event)
        if self.kernel.orders.created != self._seen:
            self._register_new_orders()
        pending = self._pending
        if pending and next(iter(pending.values())).is_closed:
            self._write_closed()

    def _on_denied(self, event: OrderDenied) -> None:
        self.denied += 1
        self.kernel.result.denials.clear()  # counted; the kernel appended it there before
        if self.kernel.orders.get(event.client_order_id) is None and event.client_order_id not in self._pending:
            reason = self.kernel.result.submit_reasons.get(event.client_order_id, "")
            self._denial_rows.append(denial_row(event, reason))
        self._on_order_event(event)


def read_fills(path: str | os.PathLike[str]) -> list[FillRecord]:
    """The fills of a ``fills.csv`` a run wrote (floats are ``repr``-exact, so they read back unchanged).

    Raises
    ------
    DataError
        The file's header is not :data:`~tradebus.reports.writers.FILL_COLUMNS` (a live run's:
        with ``fee_in_kind``) or a row is malformed (the message names the file and line).
    """
    fills: list[FillRecord] = []
    with Path(path).open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        in_kind = header is not None and tuple(header) == (*FILL_COLUMNS, FEE_IN_KIND_COLUMN)
        if header is None or (tuple(header) != FILL_COLUMNS and not in_kind):
            raise DataError(f"{path}: not a fills.csv (header {header!r})")
        width = len(header)
        for row in reader:
            try:
                if len(row) != width:
                    raise ValueError(f"{len(row)} fields, not {width}")
                ts, _, iid, side, qty, px, fee, liquidity, coid, sid, trade_id, reason = row[:12]
                fills.append(
                    FillRecord(int(ts), iid, side, float(qty), float(px), _float(fee), liquidity.upper(), coid, sid,
                               trade_id, reason, float(row[12]) if in_kind else 0.0)
                )
            except ValueError as exc:
                raise DataError(f"{path}, line {reader.line_num}: malformed fill row {row!r}: {exc}") from None
    return fills


def _float(text: str) -> float:
    return math.nan if text == "" else float(text)
