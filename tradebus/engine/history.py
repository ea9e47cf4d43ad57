"""History windows: the last N bars or trades of an instrument as numpy arrays.

The kernel appends each bar (trade) to the instrument's :class:`History` right before
the strategies receive it, so a window read in a handler ends at the event being
handled and never holds a later one (in a batch backtest too: rows are appended one
by one as they are delivered, not per batch).

Storage is a ring buffer written twice (at slot ``i`` and ``i + capacity``), so the
last ``n`` rows are always one contiguous slice: reading a window is one copy, with no
wrap-around to stitch.

In the batch backtest loop the kernel does not write bar by bar: it hands the whole batch
to :meth:`History.begin_batch`, advances :attr:`History.cursor` as each bar is delivered
(a window then ends at row ``cursor - 1`` of the batch, never later), and
:meth:`History.end_batch` moves the batch's last rows into the ring in one vectorised write.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from tradebus.errors import ConfigError

__all__ = ["BarWindow", "History", "Ring", "TradeWindow"]


class BarWindow(NamedTuple):
    """The last bars, oldest first (``ts`` is each bar's ``ts_event``, int64 ns)."""

    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray


class TradeWindow(NamedTuple):
    """The last trades, oldest first (``aggressor`` +1 buy, -1 sell, 0 unknown)."""

    ts: np.ndarray
    price: np.ndarray
    size: np.ndarray
    aggressor: np.ndarray


class Ring:
    """The last ``capacity`` rows of ``width`` float columns plus an int64 time column.

    Parameters
    ----------
    capacity
        Rows kept (> 0).
    width
        Float columns per row.
    """

    __slots__ = ("_pos", "_ts", "_values", "capacity", "count")

    def __init__(self, capacity: int, width: int) -> None:
        if capacity <= 0:
            raise ConfigError(f"history: capacity must be > 0, got {capacity}")
        self.capacity = capacity
        self._values = np.full((2 * capacity, width), np.nan)
        self._ts = np.zeros(2 * capacity, dtype=np.int64)
        self._pos = 0
        #: Rows appended so far (may exceed ``capacity``).
        self.count = 0

    def append(self, ts: int, row: tuple[float, ...]) -> None:
        """Add one row (the oldest falls out once ``capacity`` rows are held)."""
        i = self._pos
        j = i + self.capacity
        self._values[i] = row
        self._values[j] = row
        self._ts[i] = ts
        self._ts[j] = ts
        self._pos = 0 if i + 1 == self.capacity else i + 1
        self.count += 1

    def extend(self, ts: np.ndarray, rows: np.ndarray) -> None:
        """Add many rows at once (``rows`` of shape ``(m, width)``), as ``m`` appends would."""
        m = len(ts)
        if m == 0:
            return
        cap = self.capacity
        keep = min(m, cap)
        slots = (self._pos + (m - keep) + np.arange(keep)) % cap
        self._values[slots] = rows[m - keep :]
        self._values[slots + cap] = rows[m - keep :]
        self._ts[slots] = ts[m - keep :]
        self._ts[slots + cap] = ts[m - keep :]
        self._pos = (self._pos + m) % cap
        self.count += m

    def last(self, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the last ``n`` rows (default: all held), oldest first: ``(ts, values)``.

        Fewer rows come back while fewer were appended.

        Raises
        ------
        ConfigError
            If ``n`` exceeds the capacity.
        """
        cap = self.capacity
        if n is None:
            n = cap
        elif n > cap or n < 0:
            raise ConfigError(f"history: asked for {n} rows, the window keeps {cap} (raise history_sizes)")
        n = min(n, self.count)
        end = self._pos + cap
        return self._ts[end - n : end].copy(), self._values[end - n : end].copy()


class History:
    """Bar and trade windows of one instrument (capacity 0: that kind is not kept).

    Parameters
    ----------
    bars, trades
        Rows kept of each kind.
    """

    __slots__ = ("_batch_rows", "_batch_ts", "_bars", "_trades", "cursor")

    def __init__(self, bars: int = 0, trades: int = 0) -> None:
        self._bars = Ring(bars, 5) if bars > 0 else None
        self._trades = Ring(trades, 3) if trades > 0 else None
        self._batch_ts: np.ndarray | None = None
        self._batch_rows: np.ndarray | None = None
        #: Bars of the current batch delivered so far (see :meth:`begin_batch`).
        self.cursor = 0

    @property
    def bar_capacity(self) -> int:
        """Bars kept (0: none)."""
        return 0 if self._bars is None else self._bars.capacity

    @property
    def trade_capacity(self) -> int:
        """Trades kept (0: none)."""
        return 0 if self._trades is None else self._trades.capacity

    @property
    def bar_count(self) -> int:
        """Bars seen so far."""
        return 0 if self._bars is None else self._bars.count + self.cursor

    @property
    def trade_count(self) -> int:
        """Trades seen so far."""
        return 0 if self._trades is None else self._trades.count

    def append_bar(self, ts: int, open_: float, high: float, low: float, close: float, volume: float) -> None:
        """Add a bar (a no-op when bars are not kept)."""
        ring = self._bars
        if ring is not None:
            ring.append(ts, (open_, high, low, close, volume))

    def append_trade(self, ts: int, price: float, size: float, aggressor: float) -> None:
        """Add a trade (a no-op when trades are not kept)."""
        ring = self._trades
        if ring is not None:
            ring.append(ts, (price, size, aggressor))

    def begin_batch(self, ts: np.ndarray, rows: np.ndarray) -> None:
        """Stage a batch of bars (``rows``: open, high, low, close, volume); none is visible yet.

        Advance :attr:`cursor` by one as each bar is delivered, then call :meth:`end_batch`.
        """
        self._batch_ts = ts
        self._batch_rows = rows
        self.cursor = 0

    def end_batch(self) -> None:
        """Move the delivered bars of the staged batch into the ring."""
        if self._batch_ts is not None and self._bars is not None:
            c = self.cursor
            self._bars.extend(self._batch_ts[:c], self._batch_rows[:c])  # type: ignore[index]
        self._batch_ts = self._batch_rows = None
        self.cursor = 0

    def bars(self, n: int | None = None) -> BarWindow:
        """The last ``n`` bars (default: all kept) as arrays, oldest first; copies.

        Raises
        ------
        ConfigError
            If bars are not kept or ``n`` exceeds their capacity.
        """
        ring = self._bars
        if ring is None:
            raise ConfigError("history: no bars kept for this instrument (history_sizes asks for none)")
        c = self.cursor if self._batch_ts is not None else 0
        if c == 0:
            ts, values = ring.last(n)
        else:
            wanted = ring.capacity if n is None else n
            if wanted > ring.capacity or wanted < 0:
                raise ConfigError(
                    f"history: asked for {wanted} rows, the window keeps {ring.capacity} (raise history_sizes)"
                )
            staged = min(wanted, c)
            batch_ts = self._batch_ts[c - staged : c]  # type: ignore[index]
            batch_rows = self._batch_rows[c - staged : c]  # type: ignore[index]
            if staged == wanted or ring.count == 0:
                ts, values = batch_ts.copy(), batch_rows.copy()
            else:
                old_ts, old_values = ring.last(wanted - staged)
                ts = np.concatenate((old_ts, batch_ts))
                values = np.concatenate((old_values, batch_rows))
        return BarWindow(ts, *values.T)

    def trades(self, n: int | None = None) -> TradeWindow:
        """The last ``n`` trades (default: all kept) as arrays, oldest first; copies.

        Raises
        ------
        ConfigError
            If trades are not kept or ``n`` exceeds their capacity.
        """
        if self._trades is None:
            raise ConfigError("history: no trades kept for this instrument (history_sizes asks for none)")
        ts, values = self._trades.last(n)
        return TradeWindow(ts, *values.T)
