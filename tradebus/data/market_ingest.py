"""Import quotes, L2 books, mark prices and funding rates into the catalog.

Three sources, each streamed (memory bounded by the writer's row groups, whatever the
file's length):

* **recordings** (:func:`tradebus.node.recording_import.import_recording`, in the node
  package since it runs the feed parsers; it writes through :class:`CatalogSink`): a paper daemon's recorder file or a
  hftbacktest capture, parsed by the very feed parsers a paper run uses (through the
  recording's paper config), so every paper session becomes backtest data. Every message
  the feeds emit becomes rows: trades, quotes (best bid/ask), book (the snapshot the book
  sync seeded, then every delta it applied), mark prices, funding rates and bars.
  ``ts_init`` is the frame's recorded receive time, as in ``tradebus replay``.
* **Tardis-style CSV** (:func:`import_tardis`): ``incremental_book_L2``, ``book_snapshot_N``,
  ``quotes`` and ``trades`` files (told apart by their header). ``ts_event`` is
  ``timestamp`` (the exchange's), ``ts_init`` is ``local_timestamp`` (µs → ns).
* **Bybit orderbook archives** (:func:`import_bybit_archive`): the ``*_ob500.data.zip``
  dumps (one v5 ``orderbook`` frame per line). The dump has no receive time:
  ``ts_init = ts_event =`` the frame's ``ts``. The ``u`` chain is checked (a lost or
  repeated delta refuses the file), since a replay cannot see the gap.

Book rows carry the sequence id of their message (Binance ``u``/``lastUpdateId``, Bybit
``u``, a running message number for Tardis) and the :data:`~tradebus.data.catalog.BOOK_SNAPSHOT`
flag on the rows of a full snapshot. Datasets are named after their kind
(``<venue>/<market>/<symbol>/<kind><suffix>``).
"""

from __future__ import annotations

import io
import math
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from tradebus.data.catalog import BOOK_SNAPSHOT, Catalog, DatasetWriter, Kind, Manifest, schema_for
from tradebus.data.sources import require_file
from tradebus.engine.messages import (
    Bar,
    BookDelta,
    BookSnapshot,
    FundingRate,
    MarkPrice,
    OpenInterest,
    Quote,
    Trade,
)
from tradebus.errors import ConfigError, DataError

__all__ = ["CatalogSink", "import_bybit_archive", "import_tardis"]

_FLUSH_ROWS = 65_536
_US = 1_000
_MS = 1_000_000


class _KindBuffer:
    """Rows of one (dataset, kind), as column lists, flushed to a :class:`DatasetWriter`."""

    __slots__ = ("columns", "names", "rows", "writer")

    def __init__(self, writer: DatasetWriter, kind: str) -> None:
        self.writer = writer
        self.names = schema_for(kind).names
        self.columns: list[list[Any]] = [[] for _ in self.names]
        self.rows = 0

    def flush(self) -> None:
        if self.rows:
            schema = schema_for(self.writer.kind)
            self.writer.write(pa.table([pa.array(c, type=f.type) for c, f in zip(self.columns, schema, strict=True)], schema=schema))
            self.columns = [[] for _ in self.names]
            self.rows = 0


class CatalogSink:
    """Collect market-data messages into catalog datasets (one per instrument and kind).

    Parameters
    ----------
    catalog
        Where to write.
    locate
        ``instrument_id -> (venue, market, symbol)`` of the datasets.
    suffix
        Appended to the kind to name each dataset (``"book"`` + ``"_20240808"``).
    mode
        :class:`DatasetWriter` mode (``"create"`` refuses to replace a dataset).
    notes
        Stored in every manifest.

    Attributes
    ----------
    unsynced
        ``instrument_id -> [(start_ns, end_ns), ...]``: the stretches its book rows leave out, stored
        in its book dataset's manifest (:attr:`~tradebus.data.catalog.Manifest.unsynced`).
    stale
        ``instrument_id -> [(start_ns, end_ns, feed), ...]``: the stretches its recorded feed was stale,
        stored in the manifest of every dataset of the instrument (:attr:`~tradebus.data.catalog.Manifest.stale`).
    missed_trades
        ``instrument_id -> [(start_ns, end_ns, first_id, last_id, lost), ...]``: the gaps in trade ids its
        trade rows leave, stored in its trades dataset's manifest (:attr:`~tradebus.data.catalog.Manifest.missed_trades`).
    contract_sizes
        ``instrument_id -> contract size`` of the instruments the importer knows: base units per
        unit of trade size, stored in its trades dataset's manifest
        (:attr:`~tradebus.data.catalog.Manifest.contract_size`); an instrument not in it records none.
    last_book_ns
        ``instrument_id -> ts_init`` of its last book row so far.

    Call it with each message, then :meth:`commit` (or :meth:`abort`).
    """

    def __init__(
        self,
        catalog: Catalog,
        locate: Callable[[str], tuple[str, str, str]],
        suffix: str = "",
        mode: str = "create",
        notes: tuple[str, ...] = (),
    ) -> None:
        self.catalog = catalog
        self.locate = locate
        self.suffix = suffix
        self.mode = mode
        self.notes = notes
        self.unsynced: dict[str, list[tuple[int, int]]] = {}
        self.stale: dict[str, list[tuple[int, int, str]]] = {}
        self.missed_trades: dict[str, list[tuple[int, int, int, int, int]]] = {}
        self.contract_sizes: dict[str, float] = {}
        self.last_book_ns: dict[str, int] = {}
        self._buffers: dict[tuple[str, str], _KindBuffer] = {}
        self._seq: dict[str, int] = {}
        self.skipped: dict[str, int] = {}

    def _buffer(self, iid: str, kind: Kind) -> _KindBuffer:
        key = (iid, kind)
        buf = self._buffers.get(key)
        if buf is None:
            venue, market, symbol = self.locate(iid)
            writer = self.catalog.writer(venue, market, symbol, kind + self.suffix, "day", kind=kind, mode=self.mode)  # type: ignore[arg-type]
            buf = self._buffers[key] = _KindBuffer(writer, kind)
        return buf

    def add(self, iid: str, kind: Kind, *row: Any) -> None:
        """Append one row (values in the stored column order of ``kind``)."""
        buf = self._buffer(iid, kind)
        for column, value in zip(buf.columns, row, strict=True):
            column.append(value)
        buf.rows += 1
        if buf.rows >= _FLUSH_ROWS:
            buf.flush()

    def add_levels(self, iid: str, ts_event: int, ts_init: int, seq: int, bids: Any, asks: Any, flags: int) -> None:
        """Append the rows of one book message (``bids``/``asks``: (n, 2) price, size)."""
        if seq < 0:
            seq = self._seq.get(iid, 0) + 1
        self._seq[iid] = seq
        self.last_book_ns[iid] = ts_init
        buf = self._buffer(iid, "book")
        cols = buf.columns
        for side, levels in ((1, bids), (-1, asks)):
            for price, size in np.asarray(levels, dtype=np.float64).reshape(-1, 2).tolist():
                cols[0].append(ts_event)
                cols[1].append(ts_init)
                cols[2].append(seq)
                cols[3].append(side)
                cols[4].append(price)
                cols[5].append(size)
                cols[6].append(flags)
                buf.rows += 1
        if buf.rows >= _FLUSH_ROWS:
            buf.flush()

    def __call__(self, msg: Any) -> None:
        """Store one message from a feed parser (other message types are counted in ``skipped``)."""
        cls = type(msg)
        iid = msg.instrument_id if hasattr(msg, "instrument_id") else ""
        if cls is Trade:
            self.add(iid, "trades", msg.ts_event, msg.ts_init, msg.price, msg.size, msg.aggressor, msg.trade_id)
        elif cls is Quote:
            self.add(iid, "quotes", msg.ts_event, msg.ts_init, msg.bid_price, msg.bid_size, msg.ask_price, msg.ask_size)
        elif cls is BookSnapshot:
            self.add_levels(iid, msg.ts_event, msg.ts_init, msg.last_seq, msg.bids, msg.asks, BOOK_SNAPSHOT)
        elif cls is BookDelta:
            self.add_levels(iid, msg.ts_event, msg.ts_init, msg.last_seq, msg.bids, msg.asks, 0)
        elif cls is MarkPrice:
            self.add(iid, "mark_prices", msg.ts_event, msg.ts_init, msg.mark_price, msg.index_price)
        elif cls is FundingRate:
            self.add(iid, "funding_rates", msg.ts_event, msg.ts_init, msg.rate, msg.next_funding_ns)
        elif cls is OpenInterest:
            self.add(iid, "open_interest", msg.ts_event, msg.ts_init, msg.open_interest)
        elif cls is Bar:
            self.add(iid, "bars", msg.ts_event, msg.ts_init, msg.open, msg.high, msg.low, msg.close, msg.volume)
        else:
            self.skipped[cls.__name__] = self.skipped.get(cls.__name__, 0) + 1

    def commit(self) -> dict[tuple[str, str], Manifest]:
        """Flush and commit every dataset; return their manifests by ``(instrument_id, kind)``."""
        out = {}
        try:
            for key in sorted(self._buffers):
                buf = self._buffers[key]
                buf.flush()
            for key in sorted(self._buffers):
                iid, kind = key
                unsynced = self.unsynced.get(iid, ()) if kind == "book" else ()
                missed = self.missed_trades.get(iid, ()) if kind == "trades" else ()
                out[key] = self._buffers[key].writer.commit(
                    notes=self.notes, unsynced=unsynced, stale=self.stale.get(iid, ()), missed_trades=missed,
                    contract_size=self.contract_sizes.get(iid) if kind == "trades" else None,
                )
        except BaseException:
            self.abort()
            raise
        return out

    def abort(self) -> None:
        """Drop every dataset not committed yet (the catalog is left as it was)."""
        # last opened first: the first writer made the directories the later ones share, and
        # can remove them only once those writers have removed their staging directories
        for buf in reversed(self._buffers.values()):
            buf.writer.abort()


# ----------------------------------------------------------------------------- Tardis CSV


def _tardis_kind(names: list[str]) -> str:
    cols = set(names)
    if {"is_snapshot", "side", "price", "amount"} <= cols:
        return "incremental_book_L2"
    if "asks[0].price" in cols:
        return "book_snapshot"
    if {"ask_amount", "ask_price", "bid_price", "bid_amount"} <= cols:
        return "quotes"
    if {"id", "side", "price", "amount"} <= cols:
        return "trades"
    raise DataError(f"not a Tardis incremental_book_L2, book_snapshot, quotes or trades file: columns {names}")


def import_tardis(
    path: str | Path,
    catalog: Catalog | str | Path,
    venue: str,
    market: str,
    symbol: str,
    *,
    suffix: str = "",
    mode: str = "create",
    block_size: int = 1 << 20,
    contract_size: float | None = None,
) -> Manifest:
    """Import one Tardis CSV (plain or ``.gz``) into a catalog dataset; return its manifest.

    ``incremental_book_L2`` and ``book_snapshot_N`` become a ``book`` dataset (a
    ``book_snapshot_N`` row is a full snapshot of N levels a side), ``quotes`` a ``quotes``
    dataset, ``trades`` a ``trades`` one. Tardis files carry no venue update ids, so a lost
    book update cannot be detected here (the stored sequence is a running message number);
    an ``incremental_book_L2`` file must start with a snapshot (``is_snapshot`` rows).

    A Tardis ``amount`` is the venue's trade size (contracts on an OKX swap) and the file does
    not say its unit: ``contract_size``, the instrument's when the caller knows it, is recorded
    in a trades dataset's manifest (:attr:`~tradebus.data.catalog.Manifest.contract_size`) so
    ``data bars`` counts base units; ``None``: not recorded.

    Raises
    ------
    ConfigError
        A ``contract_size`` that is not a finite number > 0, or given for a file of another kind.
    DataError
        Unknown columns, a side other than bid/ask or buy/sell, a book price that is not a
        finite number > 0 or an amount not one >= 0, an update before the first snapshot
        (naming the row), unsorted local timestamps.
    """
    path = Path(path)
    cat = catalog if isinstance(catalog, Catalog) else Catalog(catalog)
    try:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=block_size),
            convert_options=pacsv.ConvertOptions(strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: not a readable CSV: {exc}") from None
    names = reader.schema.names
    tkind = _tardis_kind(names)
    kind: Kind = "book" if tkind in ("incremental_book_L2", "book_snapshot") else tkind  # type: ignore[assignment]
    sink = CatalogSink(cat, lambda _iid: (venue, market, symbol), suffix, mode, notes=(f"imported from Tardis CSV {path.name}",))
    if contract_size is not None:
        if not (contract_size > 0 and math.isfinite(contract_size)):
            raise ConfigError(f"{path}: contract size must be a finite number > 0, got {contract_size!r}")
        if kind != "trades":
            raise ConfigError(f"{path}: a {tkind} file: a contract size applies to trades only")
        sink.contract_sizes[""] = contract_size
    row = 0
    state = {"seq": 0, "key": None, "seeded": False}
    try:
        for batch in reader:
            table = pa.Table.from_batches([batch])
            _tardis_rows(sink, tkind, table, path, row, state)
            row += table.num_rows
        return sink.commit()[("", kind)]
    except pa.ArrowInvalid as exc:
        sink.abort()
        raise DataError(f"{path}: after row {row}: {exc}") from None
    except BaseException:
        sink.abort()
        raise


def _tardis_rows(sink: CatalogSink, tkind: str, table: pa.Table, path: Path, first: int, state: dict[str, Any]) -> None:
    ts_event = (table.column("timestamp").to_numpy().astype(np.int64) * _US).tolist()
    ts_init = (table.column("local_timestamp").to_numpy().astype(np.int64) * _US).tolist()
    if tkind == "quotes":
        cols = [table.column(c).to_numpy().astype(np.float64).tolist() for c in ("bid_price", "bid_amount", "ask_price", "ask_amount")]
        for te, ti, bp, bs, ap, as_ in zip(ts_event, ts_init, *cols, strict=True):
            sink.add("", "quotes", te, ti, bp, bs, ap, as_)
        return
    if tkind == "trades":
        sides = table.column("side").to_pylist()
        ids = [str(x) for x in table.column("id").to_pylist()]
        price = table.column("price").to_numpy().astype(np.float64).tolist()
        amount = table.column("amount").to_numpy().astype(np.float64).tolist()
        for i, (te, ti, side, p, a, tid) in enumerate(zip(ts_event, ts_init, sides, price, amount, ids, strict=True)):
            aggressor = 1 if side == "buy" else -1 if side == "sell" else 0 if side in ("unknown", "") else None
            if aggressor is None:
                raise DataError(f"{path} row {first + i + 2}: side {side!r} is not buy, sell or unknown")
            sink.add("", "trades", te, ti, p, a, aggressor, tid)
        return
    if tkind == "book_snapshot":
        depth = sum(1 for n in table.column_names if n.startswith("asks[") and n.endswith("].price"))
        asks = [_level_columns(table, f"asks[{k}]", path, first) for k in range(depth)]
        bids = [_level_columns(table, f"bids[{k}]", path, first) for k in range(depth)]
        for i, (te, ti) in enumerate(zip(ts_event, ts_init, strict=True)):
            b = [(float(p[i]), float(a[i])) for p, a in bids if not math.isnan(float(p[i]))]
            a_ = [(float(p[i]), float(a[i])) for p, a in asks if not math.isnan(float(p[i]))]
            state["seq"] += 1
            sink.add_levels("", te, ti, state["seq"], b, a_, BOOK_SNAPSHOT)
        return
    snap = table.column("is_snapshot").to_pylist()
    sides = table.column("side").to_pylist()
    price = _level_column(table, "price", path, first).tolist()
    amount = _level_column(table, "amount", path, first).tolist()
    for i, (te, ti, s, side, p, a) in enumerate(zip(ts_event, ts_init, snap, sides, price, amount, strict=True)):
        is_snap = s is True or s == "true"
        if not is_snap and not state["seeded"]:
            raise DataError(
                f"{path} row {first + i + 2}: an update (is_snapshot false) before the file's first snapshot: it "
                "would update a book that was never seeded (a Tardis incremental_book_L2 file starts with the "
                "snapshot of the book; was it cut?)"
            )
        state["seeded"] = True
        key = (te, ti, is_snap)
        if key != state["key"]:
            state["seq"] += 1
            state["key"] = key
        if side == "bid":
            sign = 1
        elif side == "ask":
            sign = -1
        else:
            raise DataError(f"{path} row {first + i + 2}: side {side!r} is not bid or ask")
        sink.add("", "book", te, ti, state["seq"], sign, p, a, BOOK_SNAPSHOT if is_snap else 0)


def _level_column(table: pa.Table, name: str, path: Path, first: int, absent: np.ndarray | None = None) -> np.ndarray:
    """Column ``name`` (``price``: finite and > 0, else finite and >= 0) as float64, rows ``absent`` left as read.

    Raises
    ------
    DataError
        A value that is not such a number, naming the file, row, column and value.
    """
    column = table.column(name)
    try:
        values = column.to_numpy(zero_copy_only=False).astype(np.float64)
    except (ValueError, TypeError):  # text in the column: every unreadable cell becomes NaN and is named below
        values = np.array([_float_or_nan(v) for v in column.to_pylist()], dtype=np.float64)
    price = name.endswith("price")
    ok = np.isfinite(values) & ((values > 0.0) if price else (values >= 0.0))
    if absent is not None:
        ok |= absent
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        cell = column[i].as_py()
        shown = "(empty or NaN)" if cell is None else repr(cell)
        need = "> 0" if price else ">= 0"
        raise DataError(f"{path} row {first + i + 2}: {name} {shown} is not a finite number {need}")
    return values


def _level_columns(table: pa.Table, level: str, path: Path, first: int) -> tuple[np.ndarray, np.ndarray]:
    """``(price, amount)`` of the snapshot level ``level`` (``asks[0]``); an empty price is a level the row lacks."""
    raw = table.column(f"{level}.price")
    absent = np.asarray(raw.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    if raw.type != pa.string():
        absent |= np.isnan(raw.to_numpy(zero_copy_only=False).astype(np.float64))
    price = _level_column(table, f"{level}.price", path, first, absent)
    return price, _level_column(table, f"{level}.amount", path, first, absent)


def _float_or_nan(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


# ----------------------------------------------------------------------------- Bybit archive


_Price = Annotated[float, msgspec.Meta(gt=0.0, le=sys.float_info.max)]  # NaN fails too
_Size = Annotated[float, msgspec.Meta(ge=0.0, le=sys.float_info.max)]


class _BybitBook(msgspec.Struct):
    u: int
    b: list[tuple[_Price, _Size]] = []  # the strings Bybit sends, read as numbers (the decoder is not strict)
    a: list[tuple[_Price, _Size]] = []


class _BybitFrame(msgspec.Struct):
    topic: str
    type: str
    ts: int
    data: _BybitBook


def import_bybit_archive(
    path: str | Path,
    catalog: Catalog | str | Path,
    symbol: str,
    *,
    market: str = "linear",
    suffix: str = "",
    mode: str = "create",
) -> Manifest:
    """Import a Bybit orderbook archive (a zip of v5 ``orderbook.N.SYMBOL`` frames) as a ``book`` dataset.

    Rows are stored under ``bybit/<market>/<symbol>/book<suffix>``; ``ts_init = ts_event``
    = the frame's ``ts`` (the archive has no receive time); the sequence is the frame's ``u``.
    The ``u`` chain is checked as the live feed checks it
    (:class:`~tradebus.adapters.bybit.sync.BybitRule`): a ``snapshot``, or any frame with
    ``u == 1`` (Bybit's service restarted), replaces the book and restarts the chain; a
    ``delta`` must carry the previous ``u`` plus one.

    Raises
    ------
    DataError
        Not a file (missing, a folder), not a zip, a malformed frame, one without ``u`` or with a level whose price is not
        finite and > 0 or whose size is not finite and >= 0, as the live parser refuses it
        (names the member, line and level),
        another symbol's topic, a ``type`` other than ``snapshot`` or ``delta``, a ``ts``
        going back, a delta before the first snapshot, a delta whose ``u`` does
        not follow the previous one (a lost or repeated message: names the member, the line
        and both ids). Nothing is written.
    """
    # the venue package loads its client and websockets: imported by this importer alone
    from tradebus.adapters.bybit.sync import BybitRule, is_snapshot
    from tradebus.adapters.common.sync import Verdict

    path = Path(path)
    require_file(path)
    cat = catalog if isinstance(catalog, Catalog) else Catalog(catalog)
    decoder = msgspec.json.Decoder(_BybitFrame, strict=False)
    sink = CatalogSink(cat, lambda _iid: ("bybit", market, symbol), suffix, mode, notes=(f"imported from Bybit archive {path.name}",))
    rule = BybitRule(str(path))
    last_ts = -1
    try:
        with zipfile.ZipFile(path) as zf:
            for member in zf.namelist():
                with zf.open(member) as fh:
                    for lineno, line in enumerate(io.TextIOWrapper(fh, encoding="utf-8"), 1):
                        if not line.strip():
                            continue
                        try:
                            frame = decoder.decode(line)
                        except msgspec.DecodeError as exc:
                            raise DataError(f"{path}:{member} line {lineno}: malformed frame: {exc}") from None
                        where = f"{path}:{member} line {lineno}"
                        if not frame.topic.endswith(f".{symbol}"):
                            raise DataError(f"{where}: topic {frame.topic!r} is not {symbol}'s")
                        if frame.type not in ("snapshot", "delta"):
                            raise DataError(f"{where}: type {frame.type!r} is not snapshot or delta")
                        if frame.ts < last_ts:
                            raise DataError(f"{where}: ts {frame.ts} goes back from {last_ts}")
                        last_ts = frame.ts
                        ts = frame.ts * _MS
                        d = frame.data
                        bids, asks = d.b, d.a
                        msg: BookSnapshot | BookDelta
                        if is_snapshot(frame.type, d.u):
                            msg = BookSnapshot("", ts, ts, bids, asks, d.u)
                            rule.reset(msg)
                        else:
                            msg = BookDelta("", ts, ts, bids, asks, d.u, d.u, d.u - 1)
                            if rule.last == -1:
                                raise DataError(f"{where}: a delta (u={d.u}) before the first snapshot")
                            if rule.check(msg) is not Verdict.APPLY:
                                rule.where = where
                                raise DataError(rule.gap_reason(msg))
                            rule.advance(msg)
                        sink(msg)
        return sink.commit()[("", "book")]
    except zipfile.BadZipFile as exc:
        sink.abort()
        raise DataError(f"{path}: not a zip archive: {exc}") from None
    except BaseException:
        sink.abort()
        raise
