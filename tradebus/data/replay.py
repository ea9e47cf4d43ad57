"""Historical replay: stream catalog datasets or files as merged market-data messages.

A :class:`Replay` merges several :class:`ReplaySource` streams into one
sequence ordered by ``(ts_init, source index, row)``: at equal ``ts_init`` the
source listed first comes first, and rows of one source keep their stored order.

Catalog sources are streamed one Parquet row group at a time
(``ParquetFile.iter_batches``), so memory does not grow with the length of
the history; only the current chunk of each source is held. The merge keeps a
heap over the head ``ts_init`` of every source and cuts the head chunk of the
smallest source right before the next source's head (one ``searchsorted``),
so :meth:`Replay.batches` yields the longest runs the order allows and
:meth:`Replay.__iter__` turns those same runs into messages: both have the
same order by construction.

File sources (CSV, Parquet, Coinbase JSON) are read whole and validated by
:mod:`tradebus.data.ingest`, then cut into chunks.

A :class:`MemorySource` holds a source's rows in memory, with the chunks a replay read
them in (:meth:`Replay.read_memory`): a replay of such sources (the lookahead detector's,
on perturbed copies) yields the same batches, mixed ones included, as the replay that read them.

Every catalog kind replays (:data:`~tradebus.data.catalog.KINDS`): bars, trades,
quotes, L2 book rows, mark prices, funding rates, open interest and percentage-depth
bands (one :class:`~tradebus.engine.messages.BookDepth` per band). Book rows are
turned into one :class:`~tradebus.engine.messages.BookSnapshot` or
:class:`~tradebus.engine.messages.BookDelta` per ``(ts_init, sequence)`` group of
consecutive rows (a group is never split between two batches: the rows of one that a read
batch cuts are held back and joined to the next batch's). The merge key is
``(ts_init, source index, row)``; rows of a book dataset are stored in
``(ts_init, sequence)`` order, so the replay order of a book is ``(ts_init, sequence)``.

Time filtering keeps rows with ``start_ns <= ts_init <= end_ns`` (both
inclusive, ``None`` = unbounded); catalog files and row groups outside the
range are skipped using the manifest and the Parquet statistics. A book source
with rows before ``start_ns`` (and some in the range) starts with the book as it
was then: one :class:`~tradebus.engine.messages.BookSnapshot` at ``start_ns`` holding
the levels the last snapshot before ``start_ns`` and the rows after it up to
``start_ns`` leave (stamped with the ``ts_event`` and ``sequence`` of the last of those
rows), which are never replayed themselves; a book with rows before ``start_ns`` but
no snapshot at or before it is refused. A window that starts at or before a book's
first row, or at a snapshot's time, replays its rows as they are.

A catalog source's files are opened at once when its reading starts (:meth:`~tradebus.data.catalog.Catalog.pinned`),
a book's from its first when its book is rebuilt at ``start_ns``: an ``--overwrite`` of the dataset in another
process meanwhile leaves the read, book included, the version it began with.
"""

from __future__ import annotations

import heapq
import os
from bisect import bisect_left, bisect_right
from collections.abc import Generator, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tradebus.data.catalog import BOOK_SNAPSHOT, Catalog, FileEntry, Manifest, open_parquet, schema_for
from tradebus.data.ingest import parse_interval, read_bars, read_trades, validate_bars, validate_trades
from tradebus.data.prefetch import prefetched
from tradebus.data.trade_ids import trade_ids
from tradebus.engine.clock import iso_ns
from tradebus.engine.messages import (
    Bar,
    BookDelta,
    BookDepth,
    BookSnapshot,
    FundingRate,
    MarkPrice,
    OpenInterest,
    Quote,
    Trade,
)
from tradebus.errors import DataError

__all__ = ["MemorySource", "MixedBatch", "Replay", "ReplayBatch", "ReplaySource"]

DEFAULT_BATCH_ROWS = 65_536
_BAR_FIELDS = ("open", "high", "low", "close", "volume")
_TRADE_FIELDS = ("price", "size", "aggressor")
_NOT_FIELDS = frozenset(("ts_event", "ts_init", "trade_id"))


def _fields(kind: str) -> tuple[str, ...]:
    """The value columns of a kind, as arrays in a chunk (everything but the times and trade ids)."""
    return tuple(n for n in schema_for(kind).names if n not in _NOT_FIELDS)


@dataclass(frozen=True, slots=True)
class ReplaySource:
    """One stream of a replay: a catalog dataset or a file, for one instrument.

    Build it with :meth:`from_catalog` or :meth:`from_file`.

    Attributes
    ----------
    instrument_id
        Instrument the rows belong to (``"BTC-USD.COINBASE"``).
    kind
        ``"bars"`` or ``"trades"``.
    catalog_root, venue, market, symbol, dataset
        The catalog dataset (catalog sources).
    path, interval, ts_unit, bar_time
        The file, the bar interval (``None`` = detect), the time unit and whether the
        bar time column stamps the bar's open or close (``"auto"``: see
        :mod:`tradebus.data.ingest`) (file sources).
    """

    instrument_id: str
    kind: str
    catalog_root: Path | None = None
    venue: str = ""
    market: str = ""
    symbol: str = ""
    dataset: str = ""
    path: Path | None = None
    interval: str | int | None = None
    ts_unit: Literal["auto", "s", "ms", "us", "ns", "iso"] = "auto"
    bar_time: Literal["auto", "open", "close"] = "auto"

    @classmethod
    def from_catalog(
        cls,
        catalog: Catalog | str | os.PathLike[str],
        instrument_id: str,
        venue: str,
        market: str,
        symbol: str,
        dataset: str,
    ) -> ReplaySource:
        """Return a source over a catalog dataset; its kind comes from the manifest.

        Raises
        ------
        DataError
            If the dataset does not exist or its manifest is invalid.
        """
        cat = catalog if isinstance(catalog, Catalog) else Catalog(catalog)
        manifest = cat.manifest(venue, market, symbol, dataset)
        return cls(
            instrument_id=instrument_id,
            kind=manifest.kind,  # type: ignore[arg-type]
            catalog_root=cat.root,
            venue=venue,
            market=market,
            symbol=symbol,
            dataset=dataset,
        )

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        instrument_id: str,
        kind: Literal["bars", "trades"],
        interval: str | int | None = None,
        ts_unit: Literal["auto", "s", "ms", "us", "ns", "iso"] = "auto",
        bar_time: Literal["auto", "open", "close"] = "auto",
    ) -> ReplaySource:
        """Return a source over a CSV/Parquet/Coinbase-JSON file of bars or trades (validated like an import)."""
        if kind not in ("bars", "trades"):
            raise DataError(
                f"unknown data kind {kind!r} for a file source (bars or trades); import other kinds into a catalog"
            )
        return cls(
            instrument_id=instrument_id, kind=kind, path=Path(path), interval=interval, ts_unit=ts_unit, bar_time=bar_time
        )

    def describe(self) -> str:
        """Return a short human-readable name of the source."""
        if self.path is not None:
            return str(self.path)
        return f"{self.catalog_root}/{self.venue}/{self.market}/{self.symbol}/{self.dataset}"

    def span(self) -> tuple[int, int] | None:
        """First and last ``ts_init`` of the whole source, whatever a replay's window (``None``: no rows).

        A catalog dataset answers from its manifest; a file is read.
        """
        if self.catalog_root is not None:
            manifest = Catalog(self.catalog_root).manifest(self.venue, self.market, self.symbol, self.dataset)
            return (manifest.start_ns, manifest.end_ns) if manifest.rows else None
        bounds = [(int(b.ts_init[0]), int(b.ts_init[-1])) for b in Replay([self]).batches() if len(b)]
        return (min(b[0] for b in bounds), max(b[1] for b in bounds)) if bounds else None

    def unsynced(self) -> list[tuple[int, int]]:
        """``(start_ns, end_ns)`` of each stretch where a book dataset's recorded book was out of sync.

        From the manifest (:attr:`~tradebus.data.catalog.Manifest.unsynced`): the book the rows
        rebuild is unreliable from ``start_ns`` until the snapshot at ``end_ns``. Empty for a file
        and for a dataset that has none.
        """
        if self.catalog_root is None:
            return []
        manifest = Catalog(self.catalog_root).manifest(self.venue, self.market, self.symbol, self.dataset)
        return [(int(a), int(b)) for a, b in manifest.unsynced]

    def shared_times(self) -> bool:
        """Whether several bars of the source may share one ``ts_event`` (volume, dollar, tick bars ...).

        From the manifest (:attr:`~tradebus.data.catalog.Manifest.shared_times`); ``False`` for a
        file and for every other dataset.
        """
        if self.catalog_root is None or self.kind != "bars":
            return False
        return Catalog(self.catalog_root).manifest(self.venue, self.market, self.symbol, self.dataset).shared_times

    def timed_bars(self) -> bool:
        """Whether the source's bars have a fixed time interval (each lasts it, a longer spacing is a gap).

        A file's bars do (their interval given or detected as they are read), and a catalog dataset's
        with an interval in its manifest (:attr:`~tradebus.data.catalog.Manifest.interval_ns`); bars
        closed by an amount (volume, dollar, tick, imbalance bars built from trades) have none: each
        opens right after the previous one's close, however long it lasts. ``False`` for trades.
        """
        if self.kind != "bars":
            return False
        if self.catalog_root is None:
            return True
        manifest = Catalog(self.catalog_root).manifest(self.venue, self.market, self.symbol, self.dataset)
        return manifest.interval_ns is not None

    def bar_interval_ns(self) -> int | None:
        """The fixed interval of the source's bars (ns) when it is known before they are read, else ``None``.

        A catalog dataset's from its manifest (:attr:`~tradebus.data.catalog.Manifest.interval_ns`), a file's
        when it is given (``interval``; one detected as the file is read is not known here). ``None`` for
        trades and for bars of no fixed time interval (:meth:`timed_bars`).
        """
        if self.kind != "bars":
            return None
        if self.catalog_root is None:
            return None if self.interval is None else parse_interval(self.interval)
        return Catalog(self.catalog_root).manifest(self.venue, self.market, self.symbol, self.dataset).interval_ns

    def stale(self) -> list[tuple[int, int, str]]:
        """``(start_ns, end_ns, feed)`` of each stretch where the recorded feed of the dataset's instrument was stale.

        From the manifest (:attr:`~tradebus.data.catalog.Manifest.stale`): the paper daemon that
        recorded the rows denied every new order on the instrument from ``start_ns`` until
        ``end_ns`` (exclusive). Empty for a file and for a dataset that has none.
        """
        if self.catalog_root is None:
            return []
        manifest = Catalog(self.catalog_root).manifest(self.venue, self.market, self.symbol, self.dataset)
        return [(int(a), int(b), str(feed)) for a, b, feed in manifest.stale]

    def contract_size(self) -> float | None:
        """Base units per unit of a trades dataset's ``size``, as its manifest records it.

        From the manifest (:attr:`~tradebus.data.catalog.Manifest.contract_size`). ``None`` for a
        file, another kind, and a dataset that records none.
        """
        if self.catalog_root is None or self.kind != "trades":
            return None
        return Catalog(self.catalog_root).manifest(self.venue, self.market, self.symbol, self.dataset).contract_size

    def missed_trades(self) -> list[tuple[int, int, int, int, int]]:
        """``(start_ns, end_ns, first_id, last_id, lost)`` of each gap in trade ids a trades dataset leaves.

        From the manifest (:attr:`~tradebus.data.catalog.Manifest.missed_trades`): ``lost`` trades of
        the ids ``first_id..last_id``, printed between the rows at ``start_ns`` and ``end_ns``, are not
        in the dataset. Empty for a file and for a dataset that has none.
        """
        if self.catalog_root is None:
            return []
        manifest = Catalog(self.catalog_root).manifest(self.venue, self.market, self.symbol, self.dataset)
        return [(int(a), int(b), int(first), int(last), int(lost)) for a, b, first, last, lost in manifest.missed_trades]


@dataclass(frozen=True, eq=False)
class MemorySource:
    """One stream of a replay held in memory: the rows of one source, and the chunks they are read in.

    :meth:`Replay.read_memory` gives a replay's sources as it read them; a :class:`Replay` over
    them (with the same ``batch_rows``) cuts and merges them as that replay did, so its
    :meth:`~Replay.batches` and :meth:`~Replay.mixed_batches` are the same batches.

    Attributes
    ----------
    instrument_id, kind
        As in :class:`ReplaySource`.
    ts_event, ts_init
        int64 ns arrays, sorted by ``ts_init``.
    columns
        Every value column of the kind (:func:`~tradebus.data.catalog.schema_for`), by name.
    trade_id
        The trade ids (trades), else ``None``.
    chunks
        Rows of each chunk, in order (they add up to the rows): read as given, already checked and
        cut where the replay that read them cut (a book message never split). ``None``: chunks of
        ``batch_rows`` rows, checked as a file's are.
    timed
        Whether the bars have a fixed time interval (:meth:`ReplaySource.timed_bars` of the source read).
    interval_ns
        Their interval when the source read knew it (:meth:`ReplaySource.bar_interval_ns`), else ``None``.
    """

    instrument_id: str
    kind: str
    ts_event: np.ndarray
    ts_init: np.ndarray
    columns: dict[str, np.ndarray]
    trade_id: list[str] | None = None
    chunks: tuple[int, ...] | None = None
    timed: bool = True
    interval_ns: int | None = None

    def describe(self) -> str:
        """Return a short human-readable name of the source."""
        return f"in-memory {self.kind} of {self.instrument_id}"

    def shared_times(self) -> bool:
        """``False``: rows in memory record no bar type (see :meth:`ReplaySource.shared_times`)."""
        return False

    def timed_bars(self) -> bool:
        """Whether these are bars of a fixed time interval (see :meth:`ReplaySource.timed_bars`)."""
        return self.kind == "bars" and self.timed

    def bar_interval_ns(self) -> int | None:
        """The bars' fixed interval when known (see :meth:`ReplaySource.bar_interval_ns`)."""
        return self.interval_ns if self.kind == "bars" else None


class ReplayBatch:
    """A run of consecutive rows of ONE source, in replay order.

    A book message (a snapshot of many levels included) is never split between two batches.

    Attributes
    ----------
    source
        Index of the source in ``Replay.sources``.
    instrument_id, kind
        From the source.
    ts_event, ts_init
        int64 ns arrays.
    open, high, low, close, volume
        float64 arrays (bars; ``None`` for trades).
    price, size, aggressor, trade_id
        float64, float64, int8 arrays and a sequence of str (trades; ``None`` for bars): a list, or
        read from a catalog or file the stored column, each id decoded when read
        (:class:`~tradebus.data.trade_ids.TradeIds`).
    columns
        Every value column by name, for every kind (quotes: ``bid_price`` ...; book:
        ``sequence``, ``side``, ``price``, ``size``, ``flags``; see :mod:`tradebus.data.catalog`).
    ordered
        ``True``: the replay checked as it read the source that its ``ts_init`` never decreases (a
        :class:`MemorySource` given with its ``chunks`` was checked when first read, not here: ``False``),
        so the backtest loop does not check the batch's rows again.

    Arrays may be read-only views of the Parquet buffers: copy before writing.
    """

    __slots__ = (
        "aggressor",
        "close",
        "columns",
        "high",
        "instrument_id",
        "kind",
        "low",
        "open",
        "ordered",
        "price",
        "size",
        "source",
        "trade_id",
        "ts_event",
        "ts_init",
        "volume",
    )

    def __init__(
        self,
        source: int,
        instrument_id: str,
        kind: str,
        ts_event: np.ndarray,
        ts_init: np.ndarray,
        columns: dict[str, np.ndarray],
        trade_id: Sequence[str] | None = None,
        ordered: bool = False,
    ) -> None:
        self.source = source
        self.instrument_id = instrument_id
        self.kind = kind
        self.ts_event = ts_event
        self.ts_init = ts_init
        self.open = columns.get("open")
        self.high = columns.get("high")
        self.low = columns.get("low")
        self.close = columns.get("close")
        self.volume = columns.get("volume")
        self.price = columns.get("price")
        self.size = columns.get("size")
        self.aggressor = columns.get("aggressor")
        self.trade_id = trade_id
        self.columns = columns
        self.ordered = ordered

    def __len__(self) -> int:
        return int(self.ts_init.shape[0])

    def __repr__(self) -> str:
        return f"ReplayBatch(source={self.source}, instrument_id={self.instrument_id!r}, kind={self.kind!r}, rows={len(self)})"

    def messages(self) -> list[Any]:
        """Return the rows as messages (:class:`Bar`, :class:`Trade`, :class:`Quote`, book messages ...)."""
        if self.kind == "book":
            return _book_messages(self.instrument_id, self.ts_event, self.ts_init, self.columns)
        return _to_messages(self.instrument_id, self.kind, self.ts_event, self.ts_init, self.columns, self.trade_id)


class MixedBatch:
    """Rows of several bar sources in merged ``(ts_init, source, row)`` order (:meth:`Replay.mixed_batches`).

    Attributes
    ----------
    kind
        ``"mixed_bars"``.
    instrument_ids
        Instrument of each source, by source index.
    source
        int32 array: the source index of each row.
    ts_event, ts_init, open, high, low, close, volume, ordered
        As in :class:`ReplayBatch` (a replay's mixed batches are sorted by ``ts_init``: ``ordered``).
    """

    __slots__ = (
        "close", "high", "instrument_ids", "low", "open", "ordered", "source", "ts_event", "ts_init", "volume",
    )  # fmt: skip
    kind = "mixed_bars"

    def __init__(
        self,
        instrument_ids: tuple[str, ...],
        source: np.ndarray,
        ts_event: np.ndarray,
        ts_init: np.ndarray,
        columns: dict[str, np.ndarray],
        ordered: bool = False,
    ) -> None:
        self.instrument_ids = instrument_ids
        self.source = source
        self.ts_event = ts_event
        self.ts_init = ts_init
        self.open = columns["open"]
        self.high = columns["high"]
        self.low = columns["low"]
        self.close = columns["close"]
        self.volume = columns["volume"]
        self.ordered = ordered

    def __len__(self) -> int:
        return int(self.ts_init.shape[0])

    def __repr__(self) -> str:
        return f"MixedBatch(instrument_ids={self.instrument_ids!r}, rows={len(self)})"

    def messages(self) -> list[Bar]:
        """Return the rows as :class:`Bar` messages, in order."""
        ids = self.instrument_ids
        return [
            Bar(ids[s], te, ti, o, h, lo, c, v)
            for s, te, ti, o, h, lo, c, v in zip(
                self.source.tolist(),
                self.ts_event.tolist(),
                self.ts_init.tolist(),
                self.open.tolist(),
                self.high.tolist(),
                self.low.tolist(),
                self.close.tolist(),
                self.volume.tolist(),
                strict=True,
            )
        ]


def _to_messages(
    iid: str,
    kind: str,
    ts_event: np.ndarray,
    ts_init: np.ndarray,
    columns: dict[str, np.ndarray | None],
    trade_id: Sequence[str] | None,
) -> list[Any]:
    """Build the messages of aligned columns."""
    if kind == "book":
        return _book_messages(iid, ts_event, ts_init, columns)  # type: ignore[arg-type]
    simple = _SIMPLE.get(kind)
    if simple is not None:
        cls, names = simple
        return [
            cls(iid, *row)
            for row in zip(ts_event.tolist(), ts_init.tolist(), *(columns[f].tolist() for f in names), strict=True)  # type: ignore[union-attr]
        ]
    if kind == "bars":
        return [
            Bar(iid, te, ti, o, h, lo, c, v)
            for te, ti, o, h, lo, c, v in zip(
                ts_event.tolist(),
                ts_init.tolist(),
                *(columns[f].tolist() for f in _BAR_FIELDS),  # type: ignore[union-attr]
                strict=True,
            )
        ]
    return [
        Trade(iid, te, ti, p, sz, a, tid)
        for te, ti, p, sz, a, tid in zip(
            ts_event.tolist(),
            ts_init.tolist(),
            *(columns[f].tolist() for f in _TRADE_FIELDS),  # type: ignore[union-attr]
            trade_id,  # type: ignore[arg-type]
            strict=True,
        )
    ]


_SIMPLE: dict[str, tuple[type, tuple[str, ...]]] = {
    "quotes": (Quote, ("bid_price", "bid_size", "ask_price", "ask_size")),
    "mark_prices": (MarkPrice, ("mark_price", "index_price")),
    "funding_rates": (FundingRate, ("rate", "next_funding_ns")),
    "open_interest": (OpenInterest, ("open_interest",)),
    "book_depth": (BookDepth, ("percentage", "depth", "notional")),
}


def _book_messages(
    iid: str,
    ts_event: np.ndarray,
    ts_init: np.ndarray,
    columns: dict[str, np.ndarray],
) -> list[BookSnapshot | BookDelta]:
    """One book message per run of rows sharing ``(ts_init, sequence, snapshot flag)``."""
    n = ts_init.shape[0]
    if n == 0:
        return []
    seq = columns["sequence"]
    snap = (columns["flags"] & BOOK_SNAPSHOT) != 0
    change = np.flatnonzero((np.diff(ts_init) != 0) | (np.diff(seq) != 0) | (np.diff(snap) != 0)) + 1
    bounds = [0, *change.tolist(), n]
    levels = np.column_stack((columns["price"], columns["size"]))
    bid = columns["side"] > 0
    out: list[BookSnapshot | BookDelta] = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        rows = levels[lo:hi]
        is_bid = bid[lo:hi]
        bids, asks = rows[is_bid], rows[~is_bid]
        s = int(seq[lo])
        if snap[lo]:
            out.append(BookSnapshot(iid, int(ts_event[lo]), int(ts_init[lo]), bids, asks, s))
        else:
            out.append(BookDelta(iid, int(ts_event[lo]), int(ts_init[lo]), bids, asks, s, s, -1))
    return out


class _Chunk:
    """Columns of one read batch of a source, plus where they came from (for errors).

    ``ts_list`` and ``messages`` are built on first use only: the merge needs the
    Python ``ts_init`` list only when several sources compete, and the messages
    only when iterating with :meth:`Replay.__iter__`.
    """

    __slots__ = ("_messages", "_ts_list", "columns", "first_row", "origin", "trade_id", "ts_event", "ts_init")

    def __init__(
        self,
        origin: str,
        first_row: int,
        ts_event: np.ndarray,
        ts_init: np.ndarray,
        columns: dict[str, np.ndarray],
        trade_id: Sequence[str] | None,
    ) -> None:
        self.origin = origin
        self.first_row = first_row  # 1-based row in the origin file of element 0
        self.ts_event = ts_event
        self.ts_init = ts_init
        self.columns = columns
        self.trade_id = trade_id
        self._ts_list: list[int] | None = None
        self._messages: list[Any] | None = None

    def __len__(self) -> int:
        return int(self.ts_init.shape[0])

    def ts_list(self) -> list[int]:
        if self._ts_list is None:
            self._ts_list = self.ts_init.tolist()
        return self._ts_list

    def messages(self, instrument_id: str, kind: str) -> list[Any]:
        if self._messages is None:
            self._messages = _to_messages(instrument_id, kind, self.ts_event, self.ts_init, self.columns, self.trade_id)
        return self._messages

    def join(self, after: _Chunk) -> _Chunk:
        """This chunk's rows followed by ``after``'s (rows are numbered from this chunk's first)."""
        return _Chunk(
            self.origin,
            self.first_row,
            np.concatenate((self.ts_event, after.ts_event)),
            np.concatenate((self.ts_init, after.ts_init)),
            {k: np.concatenate((v, after.columns[k])) for k, v in self.columns.items()},
            [*self.trade_id, *after.trade_id] if self.trade_id is not None and after.trade_id is not None else None,
        )

    def cut(self, lo: int, hi: int) -> _Chunk:
        return _Chunk(
            self.origin,
            self.first_row + lo,
            self.ts_event[lo:hi],
            self.ts_init[lo:hi],
            {k: v[lo:hi] for k, v in self.columns.items()},
            self.trade_id[lo:hi] if self.trade_id is not None else None,
        )


def _last_message_start(chunk: _Chunk) -> int:
    """The first row of the chunk's last book message (rows sharing ``ts_init``, ``sequence`` and snapshot flag)."""
    ts, seq = chunk.ts_init, chunk.columns["sequence"]
    snap = (chunk.columns["flags"] & BOOK_SNAPSHOT) != 0
    other = np.flatnonzero((ts != ts[-1]) | (seq != seq[-1]) | (snap != snap[-1]))
    return int(other[-1]) + 1 if other.size else 0


def _snapshot_times(path: Path, pf: pq.ParquetFile, group: int) -> np.ndarray:
    """The ``ts_init`` of the snapshot rows of one row group of a book file."""
    times = []
    for batch in _batches(pf, path, group, ["ts_init", "flags"], DEFAULT_BATCH_ROWS):
        ts, flags = batch.column(0).to_numpy(), batch.column(1).to_numpy()
        times.append(ts[(flags & BOOK_SNAPSHOT) != 0])
    return np.concatenate(times) if times else np.empty(0, dtype=np.int64)


_Opened = tuple[Path, FileEntry, pa.NativeFile]
"""A catalog file opened for a read (:meth:`~tradebus.data.catalog.Catalog.pinned`): its path, entry and handle."""


def _last_snapshot(files: list[_Opened], start_ns: int) -> int | None:
    """``ts_init`` of the last snapshot row at or before ``start_ns`` in a book dataset's files (``None``: none).

    Reads the files and row groups from the last one back, two columns at a time, until one has a snapshot.
    """
    for path, _, handle in reversed(files):
        pf = open_parquet(path, "book", handle)
        ts_col = pf.schema_arrow.get_field_index("ts_init")
        for group in reversed(range(pf.metadata.num_row_groups)):
            stats = pf.metadata.row_group(group).column(ts_col).statistics
            if stats is not None and stats.has_min_max and stats.min > start_ns:
                continue
            times = _snapshot_times(path, pf, group)
            times = times[times <= start_ns]
            if times.size:
                return int(times[-1])
    return None


def _first_snapshot(files: list[_Opened]) -> int | None:
    """``ts_init`` of the first snapshot row in a book dataset's files (``None``: none)."""
    for path, _, handle in files:
        pf = open_parquet(path, "book", handle)
        for group in range(pf.metadata.num_row_groups):
            times = _snapshot_times(path, pf, group)
            if times.size:
                return int(times[0])
    return None


def _range_mask(ts_init: np.ndarray, start_ns: int | None, end_ns: int | None) -> tuple[int, int]:
    """Return the [lo, hi) index range of sorted ``ts_init`` inside [start_ns, end_ns]."""
    lo = 0 if start_ns is None else int(np.searchsorted(ts_init, start_ns, side="left"))
    hi = ts_init.shape[0] if end_ns is None else int(np.searchsorted(ts_init, end_ns, side="right"))
    return lo, max(lo, hi)


def _row_groups_in_range(pf: pq.ParquetFile, start_ns: int | None, end_ns: int | None) -> list[tuple[int, int]]:
    """Return (row group index, first row in file) of the row groups that may hold rows in range."""
    meta = pf.metadata
    ts_col = pf.schema_arrow.get_field_index("ts_init")
    out = []
    first = 0
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        stats = group.column(ts_col).statistics
        keep = True
        if stats is not None and stats.has_min_max:
            if (start_ns is not None and stats.max < start_ns) or (end_ns is not None and stats.min > end_ns):
                keep = False
        if keep:
            out.append((g, first))
        first += group.num_rows
    return out


def _batches(pf: pq.ParquetFile, path: Path, group: int, names: list[str], rows: int) -> Iterator[pa.RecordBatch]:
    """The record batches of one row group; a file Parquet cannot decode is a :class:`DataError` naming it."""
    try:
        yield from pf.iter_batches(batch_size=rows, row_groups=[group], columns=names, use_threads=False)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(
            f"{path}: row group {group} cannot be decoded ({exc}); the file is damaged "
            "(`tradebus data verify` checks every file against its manifest)"
        ) from None


def _time_bounds(pf: pq.ParquetFile, group: int) -> dict[str, tuple[int, int]]:
    """``column -> (min, max)`` of ``ts_event`` and ``ts_init`` as the writer recorded them for a row group."""
    meta = pf.metadata.row_group(group)
    out = {}
    for name in ("ts_event", "ts_init"):
        stats = meta.column(pf.schema_arrow.get_field_index(name)).statistics
        if stats is not None and stats.has_min_max:
            out[name] = (int(stats.min), int(stats.max))
    return out


def _check_time_bounds(chunk: _Chunk, bounds: dict[str, tuple[int, int]]) -> None:
    """Refuse times outside the range the writer recorded: the data pages decoded to other values."""
    for name, (low, high) in bounds.items():
        values = chunk.ts_event if name == "ts_event" else chunk.ts_init
        if len(values) and (values.min() < low or values.max() > high):
            i = int(np.flatnonzero((values < low) | (values > high))[0])
            raise DataError(
                f"{chunk.origin} row {chunk.first_row + i}: {name} {int(values[i])} lies outside "
                f"[{low}, {high}], the range the file's statistics record for its row group; the file "
                "is damaged (`tradebus data verify` checks every file against its manifest)"
            )


class Replay:
    """Merge several sources into one time-ordered stream of messages or batches.

    Parameters
    ----------
    sources
        The streams; their order breaks ties at equal ``ts_init``. A :class:`MemorySource` is read in
        its own chunks (it is neither prefetched nor, with chunks given, checked again).
    start_ns, end_ns
        Inclusive ``ts_init`` range to replay (``None`` = unbounded); a book source starts
        with its book at ``start_ns`` (see the module docstring).
    batch_rows
        Maximum rows read at once from a source (bounds memory per source).
    verify
        Recompute every catalog file's sha256 against its manifest before reading it.
    prefetch
        Read each source's next chunk in a background thread while the current one is
        consumed (:func:`~tradebus.data.prefetch.prefetched`): the Parquet decoding then runs
        on another core. The rows and their order are the same either way; a source holds up
        to two chunks more in memory.

    Examples
    --------
    >>> src = ReplaySource.from_catalog("data/catalog", "BTC-USD.COINBASE", "coinbase", "spot", "BTC-USD", "bars_4h")
    >>> for bar in Replay([src]):                                   # doctest: +SKIP
    ...     ...
    """

    def __init__(
        self,
        sources: Sequence[ReplaySource | MemorySource],
        start_ns: int | None = None,
        end_ns: int | None = None,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        *,
        verify: bool = False,
        prefetch: bool = True,
    ) -> None:
        if not sources:
            raise DataError("Replay needs at least one source")
        if batch_rows < 1:
            raise DataError(f"batch_rows must be >= 1, got {batch_rows}")
        if start_ns is not None and end_ns is not None and end_ns < start_ns:
            raise DataError(f"end_ns {end_ns} is before start_ns {start_ns}")
        self.sources = list(sources)
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.batch_rows = batch_rows
        self.verify = verify
        self.prefetch = prefetch
        # source index -> its dataset's manifest and opened files, inside pinned() (None: each read opens its own)
        self._pins: dict[int, tuple[Manifest, list[_Opened]]] | None = None

    @contextmanager
    def pinned(self) -> Iterator[dict[int, tuple[Manifest, list[_Opened]]]]:
        """Hold one version of each catalog source while the block runs: every read in it reads that version.

        Each catalog source's files are opened now (:meth:`Catalog.pinned`; a book's from its first, for its book
        at ``start_ns``) and every read within the block (:meth:`validate`, then the run's :meth:`batches`,
        and the book rebuilt at ``start_ns`` of each) reads them: an ``--overwrite`` in another process meanwhile
        leaves the run the version validated. Outside the block, each read opens its version when it starts.
        A block inside another holds the outer one's version.

        Yields
        ------
        dict[int, tuple[Manifest, list[tuple[Path, FileEntry, pyarrow.NativeFile]]]]
            By source index, each catalog source's manifest and opened files (path, manifest entry, handle).

        Raises
        ------
        DataError
            As :meth:`batches` (a listed file missing, of another size, the files more than the process may open).
        """
        if self._pins is not None:  # nested: the outer block's version
            yield self._pins
            return
        with ExitStack() as stack:
            pins = {i: stack.enter_context(self._pin(src)) for i, src in enumerate(self.sources)
                    if isinstance(src, ReplaySource) and src.path is None}
            self._pins = pins
            try:
                yield pins
            finally:
                self._pins = None

    def _pin(self, src: ReplaySource) -> AbstractContextManager[tuple[Manifest, list[_Opened]]]:
        """Open the files of a catalog source a read of this replay needs (a book's rows before ``start_ns`` too)."""
        rebuilt = src.kind == "book" and self.start_ns is not None
        return Catalog(src.catalog_root).pinned(  # type: ignore[arg-type]
            src.venue, src.market, src.symbol, src.dataset, start_ns=None if rebuilt else self.start_ns,
            end_ns=self.end_ns, verify=self.verify,
        )

    # ------------------------------------------------------------------ per-source streams

    def _chunks(self, index: int, *, check_values: bool = False) -> Iterator[_Chunk]:
        """The checked chunks of source ``index``; with :attr:`prefetch` its reading starts now."""
        src = self.sources[index]
        if isinstance(src, MemorySource):
            return self._memory_chunks(src, check_values)
        raw = self._file_chunks(src) if src.path is not None else self._catalog_chunks(index)
        if self.prefetch:
            raw = prefetched(raw, name=f"tradebus-replay-{index}")
        return self._checked(src, raw, check_values)

    def _memory_chunks(self, src: MemorySource, check_values: bool) -> Iterator[_Chunk]:
        """The chunks of an in-memory source in range: as it gives them, or of ``batch_rows`` rows, checked."""
        whole = _Chunk(src.describe(), 1, src.ts_event, src.ts_init, src.columns, src.trade_id)
        lo, hi = _range_mask(src.ts_init, self.start_ns, self.end_ns)
        if src.chunks is None:
            cuts = [(a, min(a + self.batch_rows, hi)) for a in range(lo, hi, self.batch_rows)]
            return self._checked(src, (whole.cut(a, b) for a, b in cuts), check_values)  # type: ignore[arg-type]
        if sum(src.chunks) != len(whole):
            raise DataError(f"{src.describe()}: chunks of {sum(src.chunks)} rows in all, the source has {len(whole)}")
        ends = np.cumsum(src.chunks, dtype=np.int64).tolist()
        bounds = zip([0, *ends[:-1]], ends, strict=True)
        return (whole.cut(max(a, lo), min(b, hi)) for a, b in bounds if min(b, hi) > max(a, lo))

    def read_memory(self) -> list[MemorySource]:
        """Every row of every source in range, in memory, with the chunks this replay reads them in.

        A :class:`Replay` over them with this replay's ``batch_rows`` yields this replay's batches.

        Raises
        ------
        DataError
            As :meth:`batches`.
        """
        out = []
        for i, src in enumerate(self.sources):
            chunks = list(self._chunks(i))
            fields = _fields(src.kind)
            out.append(MemorySource(
                src.instrument_id,
                src.kind,
                np.concatenate([c.ts_event for c in chunks]) if chunks else np.empty(0, dtype=np.int64),
                np.concatenate([c.ts_init for c in chunks]) if chunks else np.empty(0, dtype=np.int64),
                {f: np.concatenate([c.columns[f] for c in chunks]) if chunks
                 else np.empty(0, dtype=schema_for(src.kind).field(f).type.to_pandas_dtype()) for f in fields},
                [t for c in chunks for t in c.trade_id] if src.kind == "trades" else None,  # type: ignore[union-attr]
                tuple(len(c) for c in chunks),
                src.timed_bars(),
                src.bar_interval_ns(),
            ))
        return out

    def _checked_sources(self) -> list[bool]:
        """Whether each source's chunks pass :meth:`_checked` (all but a :class:`MemorySource` given its chunks)."""
        return [not (isinstance(src, MemorySource) and src.chunks is not None) for src in self.sources]

    def _checked(self, src: ReplaySource | MemorySource, raw: Iterator[_Chunk], check_values: bool) -> Iterator[_Chunk]:
        prev_ts: int | None = None
        prev_event: int | None = None
        prev_where = ""
        held: _Chunk | None = None
        shared = check_values and src.shared_times()
        try:
            for chunk in raw:
                ts = chunk.ts_init
                if ts.shape[0] == 0:
                    continue
                if prev_ts is not None and int(ts[0]) < prev_ts:
                    raise DataError(
                        f"{chunk.origin} row {chunk.first_row}: ts_init {int(ts[0])} < previous {prev_ts} "
                        f"({prev_where}); the source is not sorted"
                    )
                back = np.flatnonzero(np.diff(ts) < 0)
                if back.size:
                    row = int(back[0]) + 1
                    raise DataError(
                        f"{chunk.origin} row {chunk.first_row + row}: ts_init {int(ts[row])} < previous {int(ts[row - 1])}; "
                        "the source is not sorted"
                    )
                if check_values:
                    self._check_chunk(src.kind, chunk, prev_event, shared)
                    prev_event = int(chunk.ts_event[-1])
                prev_ts = int(ts[-1])
                prev_where = f"{chunk.origin} row {chunk.first_row + len(chunk) - 1}"
                if src.kind != "book":
                    yield chunk
                    continue
                # A read batch may end inside a book message (a snapshot of many levels): hold the
                # chunk's last message and put it in front of the next chunk, so every message
                # is replayed whole (a snapshot's first part alone would empty the rest of the book).
                if held is not None:
                    chunk = held.join(chunk)
                start = _last_message_start(chunk)
                held = chunk.cut(start, len(chunk))
                if start:
                    yield chunk.cut(0, start)
            if held is not None:
                yield held
        finally:
            close = getattr(raw, "close", None)
            if close is not None:
                close()  # stops a read-ahead thread at once (an error or a consumer that stopped)

    @staticmethod
    def _check_chunk(kind: str, chunk: _Chunk, prev_event: int | None, shared_times: bool = False) -> None:
        """Check a chunk's rows like an import (``shared_times``: see :meth:`ReplaySource.shared_times`)."""
        rows = np.arange(chunk.first_row, chunk.first_row + len(chunk), dtype=np.int64)
        arrays = {"ts_event": chunk.ts_event, "ts_init": chunk.ts_init, **chunk.columns}
        if kind == "bars":
            first = int(chunk.ts_event[0])
            if prev_event is not None and (first < prev_event or (first == prev_event and not shared_times)):
                raise DataError(
                    f"{chunk.origin} row {chunk.first_row}: ts_event {first} is "
                    f"{'before' if first < prev_event else 'not after'} the previous bar {prev_event}"
                )
            table = pa.table(arrays, schema=schema_for("bars"))
            validate_bars(table, chunk.origin, rows, distinct_times=not shared_times)
        elif kind == "trades":
            arrays["trade_id"] = chunk.trade_id  # type: ignore[assignment]
            validate_trades(pa.table(arrays, schema=schema_for("trades")), chunk.origin, rows)

    def _catalog_chunks(self, index: int) -> Iterator[_Chunk]:
        """The chunks of catalog source ``index``, its book at ``start_ns`` first, all of one version.

        The files are those of :meth:`pinned`, else opened when it starts (:meth:`Catalog.pinned`): an overwrite of
        the dataset while it reads leaves it the version it began with.
        """
        src = self.sources[index]
        assert isinstance(src, ReplaySource)
        pin = None if self._pins is None else self._pins.get(index)
        with nullcontext(pin) if pin is not None else self._pin(src) as (manifest, files):
            if manifest.kind != src.kind:
                raise DataError(f"{src.describe()}: dataset holds {manifest.kind}, the source expects {src.kind}")
            rows = self._catalog_rows(src, files, self.start_ns, self.end_ns)
            try:
                if src.kind != "book" or self.start_ns is None:
                    yield from rows
                    return
                first = next((chunk for chunk in rows if len(chunk)), None)
                if first is None:
                    return
                book = self._book_at_start(src, manifest, files)
                if book is not None:
                    yield book
                yield first
                yield from rows
            finally:
                rows.close()

    def _book_at_start(self, src: ReplaySource, manifest: Manifest, files: list[_Opened]) -> _Chunk | None:
        """The book of ``src`` at :attr:`start_ns` as one snapshot message there (``None``: nothing to rebuild).

        The rows before the window hold the book's state at its start: without them the
        deltas in the window would update an empty book. The book is rebuilt from the last
        snapshot before ``start_ns`` and the rows after it up to ``start_ns`` (exclusive), read
        here and never delivered as messages. Nothing is rebuilt when the dataset has no row
        before ``start_ns`` or a snapshot at ``start_ns``.

        Raises
        ------
        DataError
            If the dataset has rows before ``start_ns`` but no snapshot at or before it (naming
            the instrument, the start and the dataset's first snapshot).
        """
        start = self.start_ns
        assert start is not None
        if not manifest.rows or manifest.start_ns >= start:
            return None
        snapshot_ns = _last_snapshot([f for f in files if f[1].overlaps(None, start)], start)
        if snapshot_ns == start:
            return None
        if snapshot_ns is None:
            later = _first_snapshot([f for f in files if f[1].overlaps(start, None)])
            since = (
                f"its first snapshot is at {iso_ns(later)}; set data.start at or after it"
                if later is not None
                else "it holds no snapshot"
            )
            raise DataError(
                f"{src.describe()}: the {src.instrument_id} book cannot be rebuilt at the start "
                f"{iso_ns(start)}: no snapshot at or before it (the dataset's rows begin at "
                f"{iso_ns(manifest.start_ns)}; the window's deltas would update an empty book); {since}"
            )
        bids: dict[float, float] = {}
        asks: dict[float, float] = {}
        last: tuple[int, int, bool] | None = None  # (ts_init, sequence, snapshot) of the previous row
        ts_event = sequence = 0
        for chunk in self._catalog_rows(src, files, snapshot_ns, start - 1):
            n = len(chunk)
            if not n:
                continue
            ts, seq = chunk.ts_init, chunk.columns["sequence"]
            snap = (chunk.columns["flags"] & BOOK_SNAPSHOT) != 0
            new = np.empty(n, dtype=bool)
            new[1:] = (np.diff(ts) != 0) | (np.diff(seq) != 0) | (np.diff(snap) != 0)
            new[0] = last != (int(ts[0]), int(seq[0]), bool(snap[0]))
            starts = np.flatnonzero(new & snap)
            begin = 0
            if starts.size:  # a snapshot replaces the book: only the rows from the last one count
                begin = int(starts[-1])
                bids, asks = {}, {}
            side = chunk.columns["side"][begin:]
            price = chunk.columns["price"][begin:]
            size = chunk.columns["size"][begin:]
            is_bid = side > 0
            bids.update(zip(price[is_bid].tolist(), size[is_bid].tolist(), strict=True))
            asks.update(zip(price[~is_bid].tolist(), size[~is_bid].tolist(), strict=True))
            last = (int(ts[-1]), int(seq[-1]), bool(snap[-1]))
            ts_event, sequence = int(chunk.ts_event[-1]), int(seq[-1])
        levels = [
            (side, price, size)
            for side, book, descending in ((1, bids, True), (-1, asks, False))
            for price, size in sorted(book.items(), reverse=descending)
            if size > 0.0
        ]
        n = len(levels)
        columns = {
            "sequence": np.full(n, sequence, dtype=np.int64),
            "side": np.array([lv[0] for lv in levels], dtype=np.int8),
            "price": np.array([lv[1] for lv in levels], dtype=np.float64),
            "size": np.array([lv[2] for lv in levels], dtype=np.float64),
            "flags": np.full(n, BOOK_SNAPSHOT, dtype=np.int8),
        }
        origin = f"{src.describe()} (book rebuilt at {iso_ns(start)})"
        return _Chunk(origin, 1, np.full(n, ts_event, dtype=np.int64), np.full(n, start, dtype=np.int64), columns, None)

    def _catalog_rows(
        self, src: ReplaySource, files: list[_Opened], start_ns: int | None, end_ns: int | None
    ) -> Generator[_Chunk, None, None]:
        """The rows of a catalog source's opened ``files`` with ``start_ns <= ts_init <= end_ns``, in stored order."""
        names = schema_for(src.kind).names
        fields = _fields(src.kind)
        for path, entry, handle in files:
            if not entry.overlaps(start_ns, end_ns):
                continue
            pf = open_parquet(path, src.kind, handle)
            if pf.metadata.num_rows != entry.rows:
                raise DataError(f"{path}: {pf.metadata.num_rows} rows, the manifest says {entry.rows}")
            inside = (start_ns is None or entry.start_ns >= start_ns) and (end_ns is None or entry.end_ns <= end_ns)
            for group, first in _row_groups_in_range(pf, start_ns, end_ns):
                offset = first
                bounds = _time_bounds(pf, group)
                for batch in _batches(pf, path, group, names, self.batch_rows):
                    cols = {n: batch.column(i) for i, n in enumerate(names)}
                    ts_init = cols["ts_init"].to_numpy()
                    chunk = _Chunk(
                        str(path),
                        offset + 1,
                        cols["ts_event"].to_numpy(),
                        ts_init,
                        {f: cols[f].to_numpy() for f in fields},
                        trade_ids(cols["trade_id"]) if src.kind == "trades" else None,
                    )
                    _check_time_bounds(chunk, bounds)
                    offset += batch.num_rows
                    if not inside:
                        lo, hi = _range_mask(ts_init, start_ns, end_ns)
                        if (lo, hi) != (0, len(chunk)):
                            chunk = chunk.cut(lo, hi)
                    yield chunk

    def _file_chunks(self, src: ReplaySource) -> Iterator[_Chunk]:
        path = src.path
        if src.kind == "bars":
            table = read_bars(path, interval=src.interval, ts_unit=src.ts_unit, time_is=src.bar_time)  # type: ignore[arg-type]
            fields = _BAR_FIELDS
        else:
            table = read_trades(path, ts_unit=src.ts_unit)  # type: ignore[arg-type]
            fields = _TRADE_FIELDS
        ts_init = table.column("ts_init").to_numpy()
        lo, hi = _range_mask(ts_init, self.start_ns, self.end_ns)
        ts_event = table.column("ts_event").to_numpy()
        columns = {f: table.column(f).to_numpy() for f in fields}
        ids = trade_ids(table.column("trade_id")) if src.kind == "trades" else None
        whole = _Chunk(str(path), 1, ts_event, ts_init, columns, ids)
        for start in range(lo, hi, self.batch_rows):
            yield whole.cut(start, min(start + self.batch_rows, hi))

    # ------------------------------------------------------------------ merged streams

    def _runs(self) -> Iterator[tuple[int, _Chunk, int, int]]:
        """Yield ``(source, chunk, lo, hi)``: rows ``lo:hi`` of ``chunk`` come next in merged order.

        The heap holds ``(head ts_init, source)`` of every live source; the top
        source's run extends up to the second-smallest head (a bisect on the
        chunk's ``ts_init``: ``<=`` it if the top source is listed first, ``<`` otherwise).
        """
        streams = [self._chunks(i) for i in range(len(self.sources))]
        try:
            heads: list[_Chunk | None] = [next(s, None) for s in streams]
            pos = [0] * len(streams)
            heap = [(int(c.ts_init[0]), i) for i, c in enumerate(heads) if c is not None]
            heapq.heapify(heap)
            while heap:
                i = heap[0][1]
                chunk = heads[i]
                assert chunk is not None
                p = pos[i]
                n = len(chunk)
                live = len(heap)
                if live == 1:
                    end = n
                else:
                    other_ts, other = heap[1] if live == 2 or heap[1] < heap[2] else heap[2]
                    ts = chunk.ts_list()
                    end = bisect_right(ts, other_ts, p) if i < other else bisect_left(ts, other_ts, p)
                yield i, chunk, p, end
                if end < n:
                    pos[i] = end
                    heapq.heapreplace(heap, (chunk.ts_list()[end], i))
                    continue
                nxt = next(streams[i], None)
                heads[i] = nxt
                pos[i] = 0
                if nxt is None:
                    heapq.heappop(heap)
                else:
                    heapq.heapreplace(heap, (int(nxt.ts_init[0]), i))
        finally:
            for stream in streams:
                stream.close()  # stops each source's read-ahead thread, asked for or not

    def batches(self) -> Iterator[ReplayBatch]:
        """Yield runs of consecutive rows of one source in merged ``(ts_init, source, row)`` order.

        Raises
        ------
        DataError
            If a source is unsorted, a catalog file is missing, corrupt or of the
            wrong schema, a file source fails validation, or a book source has rows
            before ``start_ns`` but no snapshot there to rebuild its book from.
        """
        sources = self.sources
        checked = self._checked_sources()
        new = object.__new__
        for i, chunk, lo, hi in self._runs():
            src = sources[i]
            if lo == 0 and hi == len(chunk):
                yield ReplayBatch(
                    i, src.instrument_id, src.kind, chunk.ts_event, chunk.ts_init, chunk.columns, chunk.trade_id,
                    checked[i],
                )  # fmt: skip
                continue
            # A cut run (merge of several sources, often one row): set the slots directly.
            batch = new(ReplayBatch)
            batch.ordered = checked[i]
            batch.source = i
            batch.instrument_id = src.instrument_id
            batch.kind = src.kind
            batch.ts_event = chunk.ts_event[lo:hi]
            batch.ts_init = chunk.ts_init[lo:hi]
            cols = chunk.columns
            if src.kind not in ("bars", "trades"):
                batch.columns = {k: v[lo:hi] for k, v in cols.items()}
                batch.open = batch.high = batch.low = batch.close = batch.volume = None
                batch.price = batch.columns.get("price")
                batch.size = batch.columns.get("size")
                batch.aggressor = batch.trade_id = None
                yield batch
                continue
            if src.kind == "bars":
                batch.open = cols["open"][lo:hi]
                batch.high = cols["high"][lo:hi]
                batch.low = cols["low"][lo:hi]
                batch.close = cols["close"][lo:hi]
                batch.volume = cols["volume"][lo:hi]
                batch.price = batch.size = batch.aggressor = batch.trade_id = None
                batch.columns = {
                    "open": batch.open, "high": batch.high, "low": batch.low, "close": batch.close, "volume": batch.volume
                }
            else:
                batch.price = cols["price"][lo:hi]
                batch.size = cols["size"][lo:hi]
                batch.aggressor = cols["aggressor"][lo:hi]
                batch.trade_id = chunk.trade_id[lo:hi]  # type: ignore[index]
                batch.open = batch.high = batch.low = batch.close = batch.volume = None
                batch.columns = {"price": batch.price, "size": batch.size, "aggressor": batch.aggressor}
            yield batch

    def mixed_batches(self) -> Iterator[ReplayBatch | MixedBatch]:
        """Yield the rows of :meth:`batches` in the same order, rows of several bar sources mixed.

        With two or more sources, all of bars, each step takes every source's rows up to the
        point where the merge order is known without reading further: rows before the
        horizon ``H`` (the earliest last ``ts_init`` of the sources' current chunks), and rows
        at ``H`` of the sources up to the first one whose chunk ends at ``H`` (a later source's
        rows at ``H`` may have to follow rows of that source still unread); when the time some
        source reaches in its next ``batch_rows // sources`` rows is earlier, every source's rows up
        to that time instead (about one batch a step). They are merged by
        one stable sort on ``ts_init`` of their concatenation in source order, which is the
        ``(ts_init, source, row)`` order, and yielded as :class:`MixedBatch` es of at most
        ``batch_rows`` rows (a step that takes rows of one source only yields a
        :class:`ReplayBatch`). Otherwise (one source, or other kinds) this is :meth:`batches`.

        Raises
        ------
        DataError
            As :meth:`batches`.
        """
        sources = self.sources
        if len(sources) < 2 or any(src.kind != "bars" for src in sources):
            yield from self.batches()
            return
        ids = tuple(src.instrument_id for src in sources)
        checked = self._checked_sources()
        streams = [self._chunks(i) for i in range(len(sources))]
        try:
            heads: list[_Chunk | None] = [next(stream, None) for stream in streams]
            pos = [0] * len(sources)
            while True:
                live = [i for i, chunk in enumerate(heads) if chunk is not None]
                if not live:
                    return
                lasts = [int(heads[i].ts_init[-1]) for i in live]  # type: ignore[union-attr]
                horizon = min(lasts)
                first_at_horizon = live[lasts.index(horizon)]
                # About batch_rows rows a step: a source's rows at a time before every chunk's last
                # are all read, and merging a few batches' worth at once (a chunk of every source)
                # made ten instruments wait for their first bar and merge outside the CPU cache.
                quota = max(self.batch_rows // len(live), 1)
                reach = min(
                    int(chunk.ts_init[min(pos[i] + quota, len(chunk)) - 1])  # type: ignore[union-attr]
                    for i, chunk in ((i, heads[i]) for i in live)
                )
                if reach < horizon:
                    horizon, first_at_horizon = reach, live[-1]
                parts: list[tuple[int, _Chunk, int, int]] = []
                for i in live:
                    chunk = heads[i]
                    assert chunk is not None
                    p = pos[i]
                    end = int(np.searchsorted(chunk.ts_init, horizon, "right" if i <= first_at_horizon else "left"))
                    if end > p:
                        parts.append((i, chunk, p, end))
                    if end == len(chunk):
                        heads[i], pos[i] = next(streams[i], None), 0
                    else:
                        pos[i] = end
                if len(parts) == 1:
                    i, chunk, p, end = parts[0]
                    cut = chunk if (p, end) == (0, len(chunk)) else chunk.cut(p, end)
                    yield ReplayBatch(i, ids[i], "bars", cut.ts_event, cut.ts_init, cut.columns, None, checked[i])
                    continue
                ts_init = np.concatenate([chunk.ts_init[p:end] for _, chunk, p, end in parts])
                order = np.argsort(ts_init, kind="stable")
                source = np.concatenate([np.full(end - p, i, dtype=np.int32) for i, _, p, end in parts])[order]
                columns = {
                    name: np.concatenate([chunk.columns[name][p:end] for _, chunk, p, end in parts])[order]
                    for name in _BAR_FIELDS
                }
                ts_event = np.concatenate([chunk.ts_event[p:end] for _, chunk, p, end in parts])[order]
                ts_init = ts_init[order]
                # At most batch_rows rows a batch, as one source's (longer ones made ten instruments ~10% slower).
                step = self.batch_rows
                for a in range(0, len(ts_init), step):
                    b = a + step
                    yield MixedBatch(
                        ids, source[a:b], ts_event[a:b], ts_init[a:b], {k: v[a:b] for k, v in columns.items()}, True
                    )  # fmt: skip
        finally:
            for stream in streams:
                stream.close()  # stops each source's read-ahead thread, asked for or not

    def __iter__(self) -> Iterator[Any]:
        """Yield messages (:class:`Bar`, :class:`Trade`, :class:`Quote`, book ...) in merged order (that of :meth:`batches`)."""
        sources = self.sources
        for i, chunk, lo, hi in self._runs():
            src = sources[i]
            if src.kind == "book":
                # Book messages group rows: build them from the run's rows, not by row index.
                cols = chunk.columns
                yield from _book_messages(
                    src.instrument_id,
                    chunk.ts_event[lo:hi],
                    chunk.ts_init[lo:hi],
                    {k: v[lo:hi] for k, v in cols.items()},
                )
                continue
            messages = chunk.messages(src.instrument_id, src.kind)
            if hi - lo == 1:
                yield messages[lo]
            elif lo == 0 and hi == len(messages):
                yield from messages
            else:
                yield from messages[lo:hi]

    def validate(self) -> int:
        """Read every source in range and check every row; return the number of rows.

        Catalog rows are checked like an import (prices, high/low, volume, order,
        duplicate bar times; trade ids unique within a chunk), naming the Parquet
        file and its 1-based row.

        Raises
        ------
        DataError
            On the first invalid row.
        """
        total = 0
        for i in range(len(self.sources)):
            for chunk in self._chunks(i, check_values=True):
                total += len(chunk)
        return total
