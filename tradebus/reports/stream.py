"""A daemon's outputs written while it runs: each row appended and flushed as it happens.

A backtest keeps its orders, fills and equity samples in memory and writes them at the end
(:func:`tradebus.reports.outputs.write_outputs`). A daemon runs for days: an
:class:`OutputStream` writes ``fills.csv``, ``orders.csv``, ``equity.csv``, ``funding.csv`` and
``prices.csv`` (:data:`~tradebus.reports.writers.STREAMED_FILES`) row by row instead, so that

* a crash (``kill -9`` included) loses no row already written: every row is flushed to the
  operating system as soon as it is complete, and a file holds whole rows only;
* memory stays bounded: a fill is written and not kept in the kernel's results; an order's row
  is written once it is closed, after which the order manager may forget it
  (:meth:`~tradebus.execution.orders.OrderManager.release`: the latest 1,000 stay known for late
  venue events), and its submit reason is dropped; denials are counted, not kept;
* the files are byte-identical to those written at the end of the same run
  (:func:`tradebus.reports.writers.write_run`): ``orders.csv`` lists the orders in creation
  order, so a closed order's row waits for every earlier order to close (the orders still
  working when the daemon stops are written then, in their final state), and the rows of
  denials that never became orders come last, at the end.

The other files (metrics, round trips, attribution, config, ``node.json``) are written when
the daemon stops, from the fills read back from ``fills.csv``.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO, TypeVar

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
from tradebus.errors import DataError
from tradebus.execution.orders import Order
from tradebus.reports.writers import (
    EQUITY_COLUMNS,
    FILL_COLUMNS,
    FUNDING_COLUMNS,
    ORDER_COLUMNS,
    PRICE_COLUMNS,
    EquityRows,
    RunDirectory,
    denial_row,
    fill_row,
    funding_row,
    order_row,
    write_csv_header,
    write_csv_rows,
)

__all__ = ["FillSink", "OutputStream", "read_fills"]

T = TypeVar("T")

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

    Notes
    -----
    Call :meth:`start` after the journal was replayed into the kernel and before
    ``kernel.start()``, and :meth:`finish` after ``kernel.stop()``.
    """

    def __init__(self, run_dir: RunDirectory, kernel: Kernel) -> None:
        self.run_dir = run_dir
        self.kernel = kernel
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
        self._equity_rows = EquityRows(kernel.result.instruments)
        self._started = False
        self._finished = False

    # ------------------------------------------------------------------ lifecycle

    @property
    def started(self) -> bool:
        """Whether :meth:`start` ran (the row files are this run's)."""
        return self._started

    def start(self) -> None:
        """Open the files, write what the journal replay brought back, and hook into the kernel."""
        if self._started:
            return
        self._started = True
        kernel = self.kernel
        result = kernel.result
        for name, columns in (
            ("fills.csv", FILL_COLUMNS),
            ("orders.csv", ORDER_COLUMNS),
            ("equity.csv", EQUITY_COLUMNS),
            ("funding.csv", FUNDING_COLUMNS),
            ("prices.csv", PRICE_COLUMNS),
        ):
            handle = self._files[name] = self.run_dir.stream(name)
            write_csv_header(handle, columns)
            handle.flush()
        self._register_new_orders()
        recovered = result.fills
        for fill in recovered:
            self._write_fill(fill)
        result.fills = FillSink(self._write_fill, len(recovered))  # type: ignore[assignment]
        for sample in result.equity:
            self._write_equity(sample)
        result.equity = _WrittenList(result.equity, self._write_equity)
        for paid in result.funding:
            self._write_funding(paid)
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

    def finish(self) -> None:
        """Write the orders still without a row and the denial rows, close the files, read the fills back.

        Afterwards ``kernel.result.fills`` is the list of every fill again (read from ``fills.csv``),
        for the files written at the end.
        """
        if not self._started or self._finished:
            return
        self._finished = True
        self._register_new_orders()
        self._write_closed()
        rows = [self._order_row(order) for order in self._pending.values()]
        self.orders += len(rows)
        self._pending.clear()
        rows += self._denial_rows
        self._denial_rows = []
        handle = self._files["orders.csv"]
        write_csv_rows(handle, rows)
        for handle in self._files.values():
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
        self.kernel.result.fills = read_fills(self.run_dir.path / "fills.csv")

    # ------------------------------------------------------------------ rows

    def _write(self, name: str, rows: Iterable[tuple[Any, ...]]) -> None:
        handle = self._files[name]
        write_csv_rows(handle, rows)
        handle.flush()

    def _write_fill(self, fill: FillRecord) -> None:
        self._write("fills.csv", (fill_row(fill),))
        coid = fill.client_order_id
        if coid in self._pending:
            last = self._last_fill.get(coid)
            self._last_fill[coid] = fill.ts_event if last is None else max(last, fill.ts_event)

    def _write_equity(self, sample: EquitySample) -> None:
        rows = self._equity_rows
        self._write("equity.csv", (rows.equity(sample, self.kernel.result.initial_cash),))
        self._write("prices.csv", rows.prices(sample))

    def _write_funding(self, paid: FundingPaid) -> None:
        self._write("funding.csv", (funding_row(paid),))

    def _order_row(self, order: Order) -> tuple[Any, ...]:
        coid = order.client_order_id
        return order_row(order, self._last_fill.pop(coid, ""), self.kernel.result.submit_reasons.pop(coid, ""))

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
        release = self.kernel.orders.release
        for coid in released:
            release(coid)

    def _on_order_event(self, event: Any) -> None:
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
        The file's header is not :data:`~tradebus.reports.writers.FILL_COLUMNS` or a row is malformed
        (the message names the file and line).
    """
    fills: list[FillRecord] = []
    with Path(path).open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or tuple(header) != FILL_COLUMNS:
            raise DataError(f"{path}: not a fills.csv (header {header!r})")
        for row in reader:
            try:
                ts, _, iid, side, qty, px, fee, liquidity, coid, sid, trade_id, reason = row
                fills.append(
                    FillRecord(int(ts), iid, side, float(qty), float(px), _float(fee), liquidity.upper(), coid, sid,
                               trade_id, reason)
                )
            except ValueError as exc:
                raise DataError(f"{path}, line {reader.line_num}: malformed fill row {row!r}: {exc}") from None
    return fills


def _float(text: str) -> float:
    return math.nan if text == "" else float(text)
