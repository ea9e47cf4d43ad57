"""Parquet data catalog: partitioned datasets with a verified manifest.

Layout (one dataset per venue/market/symbol/name)::

    <root>/<venue>/<market>/<symbol>/<dataset>/manifest.json
    <root>/<venue>/<market>/<symbol>/<dataset>/date=YYYY-MM-DD/part-00000.parquet

A partition holds the rows whose ``ts_init`` falls in one *period* (``"day"``,
``"month"`` or ``"year"``); its directory is named after the period's first day.
Rows are sorted by ``ts_init`` (the replay key; for historical bars and trades it
equals ``ts_event``), so the files of a dataset, ordered by their first
timestamp, form one sorted stream.

Guarantees
----------
* Deterministic: the same table written with the same pyarrow version gives
  byte-identical Parquet files and ``manifest.json`` (fixed row-group size,
  fixed compression (zstd level 1), no schema metadata, no wall-clock time anywhere).
* Atomic: a dataset is built in a temporary directory next to it and swapped in
  with ``os.rename``; a failed write leaves the previous dataset (or nothing).
  Two writers of one dataset at once (two imports, downloads or backfills): the
  first to commit wins; the other's commit, under a ``flock`` of the symbol's
  directory, finds the dataset no longer as it was when it opened (created, or its
  manifest changed under an append) and is refused with nothing written, instead of
  replacing the rows the first one added. What a writer killed outright leaves (its staging
  directory, or the old version between the two renames) is recovered by the next writer or read
  of the dataset (:func:`_recover`): the dataset is the version before or after the write.
* One version per read: :meth:`Catalog.read`, :meth:`Catalog.verify` and :meth:`Catalog.entries`
  (:meth:`Catalog.files`) hold a shared ``flock`` of the symbol's directory from the manifest to
  the files, so a commit's swap (under the exclusive one) waits for them and they find the files
  of the manifest they read. A long read opens its files there, :meth:`Catalog.pinned` (a replay's
  streams: a commit removes the old version's files from the folder, not from open handles, and
  waits for the opening only); :meth:`Catalog.holding` keeps the locks while a block opens them by
  path (a query: writers wait for it). A caller opening the paths of :meth:`Catalog.files` later
  is not covered: an overwrite between the two makes its read fail on a missing file or one of
  another size.
* Verified: the manifest lists every file with its row count, time range, size and
  sha256; :meth:`Catalog.files` (so every read) fails on a missing file and on one whose size
  differs from the manifest's (another file copied over a part, a truncated one: one ``stat``,
  the call made anyway to find the file), and with ``verify=True`` on a hash mismatch (a change
  that keeps the size); an append refuses such a file too, before its new manifest would carry it
  forward; :func:`open_parquet` fails on a schema mismatch.

Stored columns (``SCHEMA_VERSION`` 1):

* bars: ``ts_event`` (int64 ns, the bar CLOSE time), ``ts_init`` (int64 ns),
  ``open``, ``high``, ``low``, ``close``, ``volume`` (float64, in base units: an OKX swap
  candle stores its ``volCcy``, not its contract count ``vol``).
* trades: ``ts_event``, ``ts_init``, ``price``, ``size`` (float64), ``aggressor``
  (int8: 1 buy, -1 sell, 0 unknown), ``trade_id`` (string).
* quotes (best bid/ask): ``ts_event``, ``ts_init``, ``bid_price``, ``bid_size``,
  ``ask_price``, ``ask_size`` (float64).
* book (L2 snapshots and deltas, one row per price level): ``ts_event``, ``ts_init``,
  ``sequence`` (int64: the venue message's update id, or a running message number
  where the source has none; the rows of one message share it), ``side`` (int8: 1 bid,
  -1 ask), ``price``, ``size`` (float64; size 0 removes the level), ``flags`` (int8:
  :data:`BOOK_SNAPSHOT` when the row belongs to a full snapshot, which replaces the book).
  Rows are ordered by ``(ts_init, sequence)``, the rows of one message contiguous.
* mark_prices: ``ts_event``, ``ts_init``, ``mark_price``, ``index_price`` (float64, NaN unknown).
* funding_rates: ``ts_event``, ``ts_init``, ``rate`` (float64), ``next_funding_ns`` (int64, 0 unknown).
* open_interest: ``ts_event``, ``ts_init``, ``open_interest`` (float64, in base units or contracts as the venue sends it).
* book_depth (percentage-depth snapshots, one row per band): ``ts_event``, ``ts_init``,
  ``percentage`` (float64: the band's distance from the mid in percent, negative on the
  bid side), ``depth`` (float64: cumulative size within the band, base units or contracts),
  ``notional`` (float64: the same in the quote currency).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import threading
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import BinaryIO, Literal

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from loguru import logger

from tradebus.data.quality import QualityCheck, QualityReport
from tradebus.engine.clock import iso_ns
from tradebus.errors import ConfigError, DataError, describe_os_error
from tradebus.locks import cannot_lock, take_lock

__all__ = [
    "BAR_SCHEMA",
    "BOOK_SCHEMA",
    "BOOK_SNAPSHOT",
    "DatasetExists",
    "DatasetNotFound",
    "FUNDING_SCHEMA",
    "KINDS",
    "MARK_SCHEMA",
    "OPEN_INTEREST_SCHEMA",
    "QUOTE_SCHEMA",
    "DatasetWriter",
    "SCHEMA_VERSION",
    "TRADE_SCHEMA",
    "Catalog",
    "DatasetRef",
    "FileEntry",
    "Kind",
    "Manifest",
    "Period",
    "check_name",
    "open_parquet",
    "quality_report",
    "schema_for",
    "sha256_file",
]

class DatasetExists(DataError):
    """A ``mode="create"`` write found the dataset already there (``path``: its directory)."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path}: dataset exists; use mode='append' or mode='overwrite'")
        self.path = path


class DatasetNotFound(DataError):
    """The catalog holds no such dataset (no manifest, or ``--catalog`` is not the catalog's folder).

    Mostly a name the user typed: the command line exits 2 on it, as on a missing file. A dataset an
    interrupted write left retired is a :class:`DataError` (exit 3): there is something to recover.
    """


SCHEMA_VERSION = 1
"""Version of the stored column layout; bumped on any incompatible change."""

Kind = Literal["bars", "trades", "quotes", "book", "mark_prices", "funding_rates", "open_interest", "book_depth"]
Period = Literal["day", "month", "year"]

BAR_SCHEMA = pa.schema(
    [
        ("ts_event", pa.int64()),
        ("ts_init", pa.int64()),
        ("open", pa.float64()),
        ("high", pa.float64()),
        ("low", pa.float64()),
        ("close", pa.float64()),
        ("volume", pa.float64()),
    ]
)
TRADE_SCHEMA = pa.schema(
    [
        ("ts_event", pa.int64()),
        ("ts_init", pa.int64()),
        ("price", pa.float64()),
        ("size", pa.float64()),
        ("aggressor", pa.int8()),
        ("trade_id", pa.string()),
    ]
)
QUOTE_SCHEMA = pa.schema(
    [
        ("ts_event", pa.int64()),
        ("ts_init", pa.int64()),
        ("bid_price", pa.float64()),
        ("bid_size", pa.float64()),
        ("ask_price", pa.float64()),
        ("ask_size", pa.float64()),
    ]
)
BOOK_SCHEMA = pa.schema(
    [
        ("ts_event", pa.int64()),
        ("ts_init", pa.int64()),
        ("sequence", pa.int64()),
        ("side", pa.int8()),
        ("price", pa.float64()),
        ("size", pa.float64()),
        ("flags", pa.int8()),
    ]
)
BOOK_SNAPSHOT = 1
"""``flags`` bit of a book row that belongs to a full snapshot (the book is replaced)."""
MARK_SCHEMA = pa.schema(
    [("ts_event", pa.int64()), ("ts_init", pa.int64()), ("mark_price", pa.float64()), ("index_price", pa.float64())]
)
FUNDING_SCHEMA = pa.schema(
    [("ts_event", pa.int64()), ("ts_init", pa.int64()), ("rate", pa.float64()), ("next_funding_ns", pa.int64())]
)
OPEN_INTEREST_SCHEMA = pa.schema([("ts_event", pa.int64()), ("ts_init", pa.int64()), ("open_interest", pa.float64())])
BOOK_DEPTH_SCHEMA = pa.schema(
    [("ts_event", pa.int64()), ("ts_init", pa.int64()), ("percentage", pa.float64()), ("depth", pa.float64()),
     ("notional", pa.float64())]
)
_SCHEMAS: dict[str, pa.Schema] = {
    "bars": BAR_SCHEMA,
    "trades": TRADE_SCHEMA,
    "quotes": QUOTE_SCHEMA,
    "book": BOOK_SCHEMA,
    "mark_prices": MARK_SCHEMA,
    "funding_rates": FUNDING_SCHEMA,
    "open_interest": OPEN_INTEREST_SCHEMA,
    "book_depth": BOOK_DEPTH_SCHEMA,
}
KINDS: tuple[str, ...] = tuple(_SCHEMAS)
"""Every dataset kind the catalog stores."""
_PRICES: dict[str, tuple[str, ...]] = {"bars": ("open", "high", "low", "close"), "trades": ("price",)}
"""The price columns of a kind that must be finite (as :mod:`tradebus.data.ingest` refuses them on import)."""
_PERIOD_UNITS: dict[str, str] = {"day": "D", "month": "M", "year": "Y"}

MANIFEST_NAME = "manifest.json"
DEFAULT_ROW_GROUP_ROWS = 65_536
_COMPRESSION = "zstd"
# zstd 1 with delta-encoded trade ids. Against zstd 3, 1M aggTrades: 17 % less CPU to write
# (0.17 s against 0.21 s), 12 % larger (12.2 MB against 10.8 MB); lz4 and snappy are 25 % faster
# still but 40 % larger. zstd 3 was itself 3.5x faster to write than zstd 9 with a dictionary.
_COMPRESSION_LEVEL = 1
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_HASH_CHUNK = 1 << 20
#: Files a process is taken to hold open besides a pinned read's (:func:`_room_for`): logs, sockets, other reads.
_FILES_HELD_ELSEWHERE = 256


class _Pinned:
    """The files the pinned reads of this process hold open now (:meth:`Catalog.pinned`): a replay of several
    sources holds every source's at once, so each read makes room for the others' too (:func:`_room_for`)."""

    lock = threading.Lock()
    count = 0

    @classmethod
    def add(cls, n: int) -> None:
        with cls.lock:
            cls.count += n


def schema_for(kind: str) -> pa.Schema:
    """Return the stored Arrow schema of a dataset kind (one of :data:`KINDS`).

    Raises
    ------
    DataError
        If ``kind`` is unknown.
    """
    try:
        return _SCHEMAS[kind]
    except KeyError:
        raise DataError(f"unknown data kind {kind!r}; expected one of {sorted(_SCHEMAS)}") from None


class FileEntry(msgspec.Struct, frozen=True):
    """One Parquet file of a dataset as recorded in the manifest.

    ``path`` is relative to the dataset directory (``date=2020-01-01/part-00000.parquet``);
    ``start_ns``/``end_ns`` are its first and last ``ts_init``; ``size`` its length in bytes
    (``None`` in a manifest written before sizes were kept: not checked until :meth:`Catalog.record_sizes`).
    """

    path: str
    rows: int
    start_ns: int
    end_ns: int
    sha256: str
    size: int | None = None

    def overlaps(self, start_ns: int | None, end_ns: int | None) -> bool:
        """Whether the file's rows may fall in ``[start_ns, end_ns]`` (``ts_init``, inclusive; ``None``: unbounded)."""
        return (start_ns is None or self.end_ns >= start_ns) and (end_ns is None or self.start_ns <= end_ns)


class Manifest(msgspec.Struct, frozen=True):
    """Description of one dataset, stored as ``manifest.json`` next to its partitions.

    Attributes
    ----------
    schema_version
        :data:`SCHEMA_VERSION` at write time.
    kind
        A dataset kind of :data:`~tradebus.data.catalog.KINDS` (``"bars"``, ``"trades"``, ``"book"`` ...).
    venue, market, symbol, dataset
        Where the dataset lives in the catalog.
    period
        Partition period: ``"day"``, ``"month"`` or ``"year"``.
    rows
        Total row count (sum over ``files``).
    start_ns, end_ns
        First and last ``ts_init`` of the dataset (inclusive).
    interval_ns
        Bar interval in ns (bars only; ``None`` when unknown or for trades).
    gaps, missing_bars
        Bars only, when ``interval_ns`` is known: number of places where two
        consecutive bars are more than one interval apart, and how many bars are
        missing in total across them.
    columns
        Stored column names and Arrow types, in order.
    compression, row_group_rows
        How the Parquet files were written.
    files
        Every file, ordered by time.
    notes
        Free text (provenance, cleaning applied).
    quality
        Summary of the quality report run on import (``status`` and the count
        of each finding; ``None`` when none was run).
    unsynced
        Book datasets: ``[start_ns, end_ns]`` of each stretch where the recorded book went out of
        sync (a lost update) until a snapshot resynced it: the rows stop at ``start_ns`` (the last
        row before the stretch) and resume with the snapshot at ``end_ns``, so the book the rows
        rebuild is unreliable from ``start_ns`` until ``end_ns`` (a manifest without the field:
        none).
    stale
        Datasets imported from a paper recording: ``[start_ns, end_ns, feed]`` of each stretch where
        the feed of the dataset's instrument was stale in the recorded daemon, from its watchdog's
        ``FeedStale`` to the moment the daemon's market guard lifted the block (the first market data
        of the instrument after it, or the recorded proof of life of a trades-only feed's connection;
        the end of the recording if none came): the daemon denied every new order on the instrument in
        between (a manifest without the field: none).
    missed_trades
        Trade datasets imported from a recording: ``[start_ns, end_ns, first_id, last_id, lost]`` of each
        gap in the venue's trade ids that its recorded REST fetch did not fill (it failed, came back short,
        or the recording ends before it): ``lost`` trades of the ids ``first_id..last_id`` were printed
        between the row at ``start_ns`` (the last before the gap) and the row at ``end_ns`` (the trade that
        revealed it) and are not in the dataset (a manifest without the field: none).
    shared_times
        Bars only: several bars may share one ``ts_event`` (bars closed by an amount of volume, notional
        or trades rather than a clock: several may close at one trade time); they are stored in the
        order they closed. ``False`` (and a manifest without the field): each bar is after the one
        before.
    contract_size
        Trades only: base units per unit of the rows' ``size`` as the importer knew it (the
        instrument's contract size, 0.01 for OKX BTC-USDT-SWAP; 1 for sizes in base units), so
        ``data bars`` counts base units without being told. ``None`` (and a manifest without the
        field): not recorded.
    """

    schema_version: int
    kind: str
    venue: str
    market: str
    symbol: str
    dataset: str
    period: str
    rows: int
    start_ns: int
    end_ns: int
    interval_ns: int | None
    gaps: int | None
    missing_bars: int | None
    columns: dict[str, str]
    compression: str
    row_group_rows: int
    files: list[FileEntry]
    notes: list[str] = []
    quality: dict[str, object] | None = None
    unsynced: list[tuple[int, int]] = []
    stale: list[tuple[int, int, str]] = []
    missed_trades: list[tuple[int, int, int, int, int]] = []
    shared_times: bool = False
    contract_size: float | None = None

    def ref(self) -> DatasetRef:
        """Return the :class:`DatasetRef` of this dataset."""
        return DatasetRef(self.venue, self.market, self.symbol, self.dataset)


class DatasetRef(msgspec.Struct, frozen=True, order=True):
    """Address of a dataset in a catalog: venue, market, symbol and dataset name."""

    venue: str
    market: str
    symbol: str
    dataset: str

    def relpath(self) -> Path:
        """Return the dataset directory relative to the catalog root."""
        return Path(self.venue, self.market, self.symbol, self.dataset)


_manifest_encoder = msgspec.json.Encoder()
_manifest_decoder = msgspec.json.Decoder(Manifest)


def check_name(what: str, value: str) -> None:
    """Check one part of a dataset's path (``what``: venue, market, symbol or dataset).

    Raises
    ------
    DataError
        If ``value`` is not letters, digits, ``.``, ``_`` and ``-`` starting with a letter or digit.
    """
    if not _NAME_RE.match(value):
        raise DataError(
            f"catalog {what} {value!r} is not a valid name (letters, digits, '.', '_', '-'; not starting with a symbol)"
        )


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MB chunks."""
    with path.open("rb") as fh:
        return _sha256_and_size(fh)[0]


def _sha256_and_size(fh: BinaryIO) -> tuple[str, int]:
    """The hex sha256 and byte count of what is left to read in ``fh``, read in 1 MB chunks."""
    digest = hashlib.sha256()
    size = 0
    while chunk := fh.read(_HASH_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def _partition_cuts(ts_init: np.ndarray, period: str) -> tuple[list[np.datetime64], list[int]]:
    """Split sorted timestamps by partition period.

    Returns the first day of every period that holds rows, and the row where each
    after the first begins. Only the periods between the first and the last
    timestamp are computed (converting every row to a calendar month is slow).
    """
    unit = _PERIOD_UNITS[period]
    first, last = (np.datetime64(int(ts_init[i]), "ns").astype(f"datetime64[{unit}]") for i in (0, -1))
    periods = np.arange(first, last + 1)
    edges = np.searchsorted(ts_init, periods[1:].astype("datetime64[ns]").astype(np.int64), side="left")
    bounds = np.concatenate(([0], edges, [ts_init.size]))
    filled = np.flatnonzero(np.diff(bounds) > 0)
    return [periods[j].astype("datetime64[D]") for j in filled], [int(bounds[j]) for j in filled[1:]]


def _infer_kind(table: pa.Table) -> str:
    names = set(table.column_names)
    if {"open", "high", "low", "close"} <= names:
        return "bars"
    if {"sequence", "side", "price", "size", "flags"} <= names:
        return "book"
    if {"price", "size"} <= names:
        return "trades"
    for kind in ("quotes", "mark_prices", "funding_rates", "open_interest", "book_depth"):
        if set(_SCHEMAS[kind].names) <= names:
            return kind
    raise DataError(f"cannot tell bars from trades (or another kind) by the columns {table.column_names}; pass kind=")


def _conform(table: pa.Table, kind: str, name: str, offset: int = 0) -> pa.Table:
    """Return ``table`` with exactly the stored columns of ``kind``, types and no metadata."""
    schema = schema_for(kind)
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise DataError(f"{name}: missing column(s) {missing} for {kind}; got {table.column_names}")
    columns = []
    for field in schema:
        column = table.column(field.name)
        if column.null_count:
            row = offset + int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0]) + 1
            raise DataError(f"{name} row {row}: {field.name} is missing (null)")
        if column.type != field.type:
            try:
                column = column.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise DataError(f"{name}: column {field.name} of type {column.type} is not {field.type}: {exc}") from None
        if field.name in _PRICES.get(kind, ()):
            values = column.to_numpy()
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                raise DataError(f"{name} row {offset + int(bad[0]) + 1}: {field.name} {values[bad[0]]} is not a finite price")
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


def _gap_stats(ts_event: np.ndarray, interval_ns: int) -> tuple[int, int]:
    if ts_event.size < 2:
        return 0, 0
    step = np.diff(ts_event)
    over = step[step > interval_ns]
    missing = int(np.sum(-(-over // interval_ns) - 1)) if over.size else 0
    return int(over.size), missing


def _open_part_writer(path: Path, kind: str) -> pq.ParquetWriter:
    """A Parquet writer with the catalog's fixed, deterministic options."""
    return pq.ParquetWriter(
        path,
        schema_for(kind),
        compression=_COMPRESSION,
        compression_level=_COMPRESSION_LEVEL,
        use_dictionary=False,
        column_encoding={"ts_event": "DELTA_BINARY_PACKED", "ts_init": "DELTA_BINARY_PACKED"}
        | ({"trade_id": "DELTA_BYTE_ARRAY"} if kind == "trades" else {}),
        write_statistics=True,
        store_schema=False,
    )


def open_parquet(path: Path, kind: str, handle: pa.NativeFile | None = None) -> pq.ParquetFile:
    """Open one catalog Parquet file and check its schema against ``kind``.

    ``handle``: the file already open (:meth:`Catalog.pinned`), read instead of opening ``path``, which
    the messages name.

    Raises
    ------
    DataError
        If the file cannot be read or its columns/types differ from the stored schema.
    """
    try:
        pf = pq.ParquetFile(path if handle is None else handle)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{path}: cannot read Parquet file: {exc}") from None
    expected = schema_for(kind)
    actual = pf.schema_arrow
    if actual.names != expected.names or actual.types != expected.types:
        got = ", ".join(f"{f.name}:{f.type}" for f in actual)
        want = ", ".join(f"{f.name}:{f.type}" for f in expected)
        raise DataError(f"{path}: schema mismatch: got ({got}), expected ({want}) for {kind}")
    return pf


def quality_report(
    paths: Iterable[Path | tuple[Path, pa.NativeFile]],
    kind: str,
    interval_ns: int | None,
    *,
    stale_bars: int = 5,
    outlier_z: float | None = None,
    shared_times: bool = False,
) -> QualityReport:
    """The quality report of a dataset's files, read in order one row group batch at a time.

    Parameters
    ----------
    paths
        The dataset's Parquet files in time order; a ``(path, handle)`` pair is a file already open
        (:meth:`Catalog.pinned`), read from ``handle``.
    kind, interval_ns
        The dataset's kind and bar interval (see :class:`~tradebus.data.quality.QualityCheck`).
    stale_bars, outlier_z, shared_times
        See :class:`~tradebus.data.quality.QualityCheck` (``shared_times``: the manifest's).

    Raises
    ------
    DataError
        A file that cannot be read or whose schema is not the kind's.
    ConfigError
        An ``outlier_z`` that is not a finite number > 0 (before any file is read).
    """
    check = QualityCheck(kind, interval_ns, stale_bars=stale_bars, outlier_z=outlier_z, shared_times=shared_times)
    for file in paths:
        path, handle = file if isinstance(file, tuple) else (file, None)
        for batch in open_parquet(path, kind, handle).iter_batches(batch_size=65_536):
            check.feed(pa.Table.from_batches([batch]))
    return check.report()


class Catalog:
    """A directory of partitioned Parquet datasets with manifests.

    Parameters
    ----------
    root
        Catalog root directory (created on first write).

    Examples
    --------
    >>> cat = Catalog("data/catalog")                              # doctest: +SKIP
    >>> m = cat.manifest("coinbase", "spot", "BTC-USD", "bars_4h")  # doctest: +SKIP
    >>> m.rows, m.start_ns, m.end_ns                               # doctest: +SKIP
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"Catalog({str(self.root)!r})"

    # ------------------------------------------------------------------ paths

    def dataset_dir(self, venue: str, market: str, symbol: str, dataset: str) -> Path:
        """Return the directory of a dataset (whether or not it exists)."""
        for what, value in (("venue", venue), ("market", market), ("symbol", symbol), ("dataset", dataset)):
            check_name(what, value)
        return self.root / DatasetRef(venue, market, symbol, dataset).relpath()

    def exists(self, venue: str, market: str, symbol: str, dataset: str) -> bool:
        """Return whether the dataset has a manifest (after recovering what a killed write left of it)."""
        base = self.dataset_dir(venue, market, symbol, dataset)
        if not (base / MANIFEST_NAME).is_file():
            _heal(base)
        return (base / MANIFEST_NAME).is_file()

    # ------------------------------------------------------------------ read

    def manifest(self, venue: str, market: str, symbol: str, dataset: str) -> Manifest:
        """Load and check the manifest of a dataset.

        Raises
        ------
        DataError
            If the dataset does not exist (also when a file stands where a folder of its path should be),
            the manifest cannot be read (naming the OS error) or is malformed, or it was written with another
            schema version.
        """
        with self._reading(venue, market, symbol, dataset) as (manifest, _):
            return manifest

    def _load_manifest(self, path: Path, *, heal: bool = True) -> Manifest:
        if heal and not path.is_file():
            _heal(path.parent)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            retired = sorted(path.parent.parent.glob(f".{path.parent.name}.old-*/{MANIFEST_NAME}"))
            if retired:
                raise DataError(
                    f"{path}: dataset not found, but an interrupted write left {retired[0].parent}; "
                    f"rename it back to {path.parent} to recover the previous version"
                ) from None
            raise DatasetNotFound(f"{path}: dataset not found (no manifest) in catalog {self.root}") from None
        except NotADirectoryError:
            raise DatasetNotFound(f"{path}: dataset not found: a file stands where a folder of that path should be (is "
                            f"--catalog {self.root} the catalog's folder?)") from None
        except OSError as exc:  # a folder in its place, no read permission, an I/O error
            raise DataError(f"{path}: cannot read the dataset's manifest ({describe_os_error(exc)})") from None
        try:
            manifest = _manifest_decoder.decode(raw)
        except msgspec.ValidationError as exc:
            raise DataError(f"{path}: malformed manifest: {exc}") from None
        except msgspec.DecodeError as exc:
            raise DataError(f"{path}: manifest is not valid JSON: {exc}") from None
        if manifest.schema_version != SCHEMA_VERSION:
            raise DataError(
                f"{path}: schema_version {manifest.schema_version} is not supported (expected {SCHEMA_VERSION})"
            )
        expected = {f.name: str(f.type) for f in schema_for(manifest.kind)}
        if list(manifest.columns.items()) != list(expected.items()):
            raise DataError(f"{path}: manifest columns {manifest.columns} differ from the {manifest.kind} schema {expected}")
        if sum(f.rows for f in manifest.files) != manifest.rows:
            raise DataError(f"{path}: manifest rows {manifest.rows} != sum of file rows")
        return manifest

    def datasets(self) -> list[DatasetRef]:
        """Return every dataset of the catalog (those with a manifest), sorted."""
        if not self.root.is_dir():
            return []
        for symbol_dir in sorted({p.parent for p in self.root.glob("*/*/*/.*") if _LEFTOVER_RE.match(p.name)}):
            for _, dataset, what in _leftovers(symbol_dir):
                if what == "old" and not (symbol_dir / dataset / MANIFEST_NAME).is_file():
                    _heal(symbol_dir / dataset)
        refs = []
        for path in self.root.glob(f"*/*/*/*/{MANIFEST_NAME}"):
            venue, market, symbol, dataset = path.parent.relative_to(self.root).parts
            if dataset.startswith("."):
                continue
            refs.append(DatasetRef(venue, market, symbol, dataset))
        return sorted(refs)

    def files(
        self,
        venue: str,
        market: str,
        symbol: str,
        dataset: str,
        *,
        start_ns: int | None = None,
        end_ns: int | None = None,
        verify: bool = False,
    ) -> list[Path]:
        """Return the dataset's Parquet files in time order, optionally pruned to a range.

        Parameters
        ----------
        start_ns, end_ns
            Keep only files whose ``[start_ns, end_ns]`` (``ts_init``) overlaps this
            inclusive range; ``None`` = unbounded.
        verify
            Also recompute every returned file's sha256 and compare it with the manifest.

        Raises
        ------
        DataError
            If a listed file is missing, its size differs from the manifest's or (with ``verify``) its
            hash differs.
        """
        _, entries = self.entries(venue, market, symbol, dataset, start_ns=start_ns, end_ns=end_ns, verify=verify)
        return [path for path, _ in entries]

    def entries(
        self,
        venue: str,
        market: str,
        symbol: str,
        dataset: str,
        *,
        start_ns: int | None = None,
        end_ns: int | None = None,
        verify: bool = False,
    ) -> tuple[Manifest, list[tuple[Path, FileEntry]]]:
        """Like :meth:`files` but also return the manifest and each file's entry.

        An entry whose manifest records no size (written before sizes were kept) carries the size the file had
        under the read lock, so that a caller need not look at the file again (an overwrite may have replaced it).
        """
        with self._reading(venue, market, symbol, dataset) as (manifest, base):
            kept = self._entries(manifest, base, start_ns, end_ns, verify)
        return manifest, [(base / e.path, e) for e in kept]

    @contextmanager
    def pinned(
        self,
        venue: str,
        market: str,
        symbol: str,
        dataset: str,
        *,
        start_ns: int | None = None,
        end_ns: int | None = None,
        verify: bool = False,
    ) -> Iterator[tuple[Manifest, list[tuple[Path, FileEntry, pa.NativeFile]]]]:
        """Like :meth:`entries`, each file also opened (pyarrow) for the block: one version, however long it reads.

        The files are opened under the read lock of :meth:`entries` and closed when the block ends. A commit
        swapping the next version in meanwhile (an ``--overwrite`` in another process) waits only for the
        opening, and removes the old version's files from the folder, not from these open handles: a long read
        (a replay) goes on with the version it began with, and never holds a writer up. Each handle is one
        descriptor: when the files outnumber what the process may open (``ulimit -n``), its soft limit is
        raised up to the hard one.

        Raises
        ------
        DataError
            As :meth:`files`; or the files are more than the process may open, naming their count and the limit.
        """
        with ExitStack() as stack:
            with self._reading(venue, market, symbol, dataset) as (manifest, base):
                handles: list[pa.NativeFile] = []
                stack.callback(_close_all, handles)
                kept = self._entries(manifest, base, start_ns, end_ns, verify, handles)
            yield manifest, [(base / e.path, e, fh) for e, fh in zip(kept, handles, strict=True)]

    @contextmanager
    def holding(self, refs: Iterable[DatasetRef]) -> Iterator[dict[DatasetRef, tuple[Manifest, list[Path]]]]:
        """The manifest and files (:meth:`files`) of each of ``refs``, their versions held while the block runs.

        For a reader that opens the files by their paths later within the block (DuckDB's queries): the
        shared lock of every symbol folder involved is held throughout (one per folder), so a commit in
        another process (an ``--overwrite``) waits for the block to end rather than remove the files read.
        Keep the block short: writers wait for it. Each lock is a descriptor: when the folders outnumber what the
        process may open (``ulimit -n``), its soft limit is raised up to the hard one, as :meth:`pinned`'s.

        Raises
        ------
        DataError
            As :meth:`files`; a dataset whose manifest is gone under the lock (removed by hand) is
            :class:`DatasetNotFound`; the folders are more than the process may open, naming their count.
        """
        out: dict[DatasetRef, tuple[Manifest, list[Path]]] = {}
        refs = sorted(refs)
        folders = len({self.dataset_dir(r.venue, r.market, r.symbol, r.dataset).parent for r in refs})
        _room_for(folders, str(self.root))  # a descriptor per folder's lock, held with the files the block opens
        with ExitStack() as stack:
            _Pinned.add(folders)
            stack.callback(_Pinned.add, -folders)
            held: set[Path] = set()
            for ref in refs:
                base = self.dataset_dir(ref.venue, ref.market, ref.symbol, ref.dataset)
                if base.parent not in held:  # one lock per folder: a second descriptor's could wait on a heal's
                    held.add(base.parent)
                    stack.enter_context(_shared(base.parent))
                manifest = self._load_manifest(base / MANIFEST_NAME, heal=False)
                out[ref] = manifest, [base / e.path for e in self._entries(manifest, base, None, None, False)]
            yield out

    @contextmanager
    def _reading(self, venue: str, market: str, symbol: str, dataset: str) -> Iterator[tuple[Manifest, Path]]:
        """The dataset's manifest and folder, its version held while the block runs (see :func:`_shared`).

        A commit swaps a new version in under an exclusive ``flock`` of the symbol's folder; a read holding the
        shared one between its manifest and its files finds the files that manifest lists, never the next
        version's (an ``--overwrite`` racing it made a read fail on a file of another size, or mix the rows of
        two versions when the swap fell between a file's size check and its open).
        """
        base = self.dataset_dir(venue, market, symbol, dataset)
        path = base / MANIFEST_NAME
        with _shared(base.parent):
            if path.is_file():  # no swap runs under the shared lock: a manifest missing here is no commit's moment
                yield self._load_manifest(path, heal=False), base
                return
        self._load_manifest(path)  # names a missing dataset; recovers a killed write, which locks
        with _shared(base.parent):
            yield self._load_manifest(path, heal=False), base

    @staticmethod
    def _entries(
        manifest: Manifest, base: Path, start_ns: int | None, end_ns: int | None, verify: bool,
        handles: list[pa.NativeFile] | None = None,
    ) -> list[FileEntry]:
        """The entries of ``manifest`` in range, each file checked (an entry without a size given the file's); with
        ``handles``, each opened into it, in order."""
        kept = [e for e in manifest.files if e.overlaps(start_ns, end_ns)]
        if handles is not None:
            _room_for(len(kept), "/".join(base.parts[-4:]))
        sized: list[FileEntry] = []
        for entry in kept:
            path = base / entry.path
            try:
                info = path.stat()
            except (FileNotFoundError, NotADirectoryError):
                info = None
            if info is None or not stat.S_ISREG(info.st_mode):
                raise DataError(f"{path}: file listed in the manifest is missing")
            _check_size(path, info.st_size, entry)
            if entry.size is None:
                sized.append(msgspec.structs.replace(entry, size=info.st_size))
            else:
                sized.append(entry)
            if verify:
                digest = sha256_file(path)
                if digest != entry.sha256:
                    raise DataError(f"{path}: sha256 {digest} does not match the manifest ({entry.sha256})")
            if handles is not None:  # the file checked: the caller holds the read lock, no swap runs meanwhile
                try:
                    handles.append(pa.OSFile(str(path)))
                    _Pinned.add(1)
                except OSError as exc:  # no read permission, no descriptor left (EMFILE)
                    raise DataError(f"{path}: cannot open it ({describe_os_error(exc)})") from None
        return sized

    def verify(self, venue: str, market: str, symbol: str, dataset: str) -> Manifest:
        """Check every file of a dataset: present, hash, schema and row count.

        Raises
        ------
        DataError
            Naming the first file that fails.
        """
        with self._reading(venue, market, symbol, dataset) as (manifest, base):
            for entry in self._entries(manifest, base, None, None, True):
                path = base / entry.path
                pf = open_parquet(path, manifest.kind)
                if pf.metadata.num_rows != entry.rows:
                    raise DataError(f"{path}: {pf.metadata.num_rows} rows, manifest says {entry.rows}")
        return manifest

    def read(self, venue: str, market: str, symbol: str, dataset: str, *, verify: bool = False) -> pa.Table:
        """Read a whole dataset into one table (small datasets; replay streams instead), one version of it."""
        with self._reading(venue, market, symbol, dataset) as (manifest, base):
            entries = self._entries(manifest, base, None, None, verify)
            tables = [open_parquet(base / e.path, manifest.kind).read() for e in entries]
        if not tables:
            return schema_for(manifest.kind).empty_table()
        return pa.concat_tables(tables)

    # ------------------------------------------------------------------ write

    def record_contract_size(self, venue: str, market: str, symbol: str, dataset: str, contract_size: float) -> Manifest:
        """Record the contract size of a trades dataset that records none; its rows are left as they are.

        For a dataset imported without it (an older manifest, an import not told): its manifest gets
        :attr:`Manifest.contract_size` and a note saying so, swapped in with ``os.replace`` under the
        lock writers commit under (a writer that opened the dataset before is then refused at commit).

        Parameters
        ----------
        venue, market, symbol, dataset
            The trades dataset.
        contract_size
            Base units per unit of the rows' ``size`` (OKX BTC-USDT-SWAP 0.01; 1 for base units).

        Returns
        -------
        Manifest
            The manifest recording it (the same one when it already recorded this size).

        Raises
        ------
        ConfigError
            If ``contract_size`` is not a positive number, or the manifest cannot be written.
        DataError
            If the dataset does not exist, does not hold trades, or records another contract size.
        """
        if not (contract_size > 0.0 and np.isfinite(contract_size)):
            raise ConfigError(f"contract size {contract_size!r} is not a positive number")
        base = self.dataset_dir(venue, market, symbol, dataset)
        name = DatasetRef(venue, market, symbol, dataset).relpath().as_posix()
        self.manifest(venue, market, symbol, dataset)  # a missing one named, a killed write's leftovers recovered
        with _locked(base.parent):
            _recover(base.parent, dataset)  # a killed record's staged manifest removed
            manifest = self._load_manifest(base / MANIFEST_NAME)
            if manifest.kind != "trades":
                raise DataError(f"{name} holds {manifest.kind}, already in base units: a contract size is for trades")
            if manifest.contract_size is not None:
                if manifest.contract_size == contract_size:
                    return manifest
                raise DataError(f"{name} records a contract size of {manifest.contract_size:g}, not {contract_size:g}: "
                                "its sizes are in that unit; import it again to replace it")
            manifest = msgspec.structs.replace(
                manifest, contract_size=float(contract_size),
                notes=[*manifest.notes, f"contract_size {contract_size:g} recorded after the import"],
            )
            self._replace_manifest(base, name, manifest)
        logger.info("catalog: {} records a contract size of {:g}", name, contract_size)
        return manifest

    def record_sizes(self, venue: str, market: str, symbol: str, dataset: str) -> tuple[Manifest, int]:
        """Add each file's size to a manifest written before sizes were kept, once its sha256 proves the file.

        Every listed file without a size is hashed; only when each hash equals the manifest's is its size
        (the bytes hashed) written into a new manifest, swapped in as :meth:`record_contract_size` does,
        so reads from then on refuse a replaced or truncated file (see :func:`_check_size`). The data
        files are not touched.

        Parameters
        ----------
        venue, market, symbol, dataset
            The dataset.

        Returns
        -------
        tuple[Manifest, int]
            The manifest (the same one when every file had its size) and how many sizes were added.

        Raises
        ------
        DataError
            If the dataset does not exist, or a listed file is missing, not a regular file, or hashes
            otherwise than its manifest says (nothing is written).
        ConfigError
            If the manifest cannot be written.
        """
        base = self.dataset_dir(venue, market, symbol, dataset)
        name = DatasetRef(venue, market, symbol, dataset).relpath().as_posix()
        self.manifest(venue, market, symbol, dataset)  # a missing one named, a killed write's leftovers recovered
        with _locked(base.parent):  # a commit swaps the dataset's files under it: they stay the ones hashed
            _recover(base.parent, dataset)
            manifest = self._load_manifest(base / MANIFEST_NAME)
            files = []
            for entry in manifest.files:
                if entry.size is None:
                    path = base / entry.path
                    try:
                        regular = stat.S_ISREG(path.stat().st_mode)
                    except (FileNotFoundError, NotADirectoryError):
                        regular = False
                    if not regular:
                        raise DataError(f"{path}: file listed in the manifest is missing")
                    with path.open("rb") as fh:
                        digest, size = _sha256_and_size(fh)  # the size of the very bytes hashed
                    if digest != entry.sha256:
                        raise DataError(f"{path}: sha256 {digest} does not match the manifest ({entry.sha256}): "
                                        "no size recorded for it; write the dataset again")
                    entry = msgspec.structs.replace(entry, size=size)
                files.append(entry)
            added = sum(old.size is None for old in manifest.files)
            if not added:
                return manifest, 0
            manifest = msgspec.structs.replace(manifest, files=files)
            self._replace_manifest(base, name, manifest)
        logger.info("catalog: {} records the size of {} file(s), each hashed as its manifest says", name, added)
        return manifest, added

    def _replace_manifest(self, base: Path, name: str, manifest: Manifest) -> None:
        """Swap ``manifest`` in as the dataset's at ``base`` (staged, ``flock`` held until ``os.replace``).

        The caller holds :func:`_locked` on ``base.parent``.

        Raises
        ------
        ConfigError
            If it cannot be written (the staged copy is removed).
        """
        staged = base / f".{MANIFEST_NAME}.tmp-{uuid.uuid4().hex}"
        try:
            fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except OSError as exc:
            raise ConfigError(f"catalog {self.root}: cannot write the manifest of {name} ({exc.strerror})") from None
        try:
            _lock(fd, staged)  # alive while held: see _recover
            with os.fdopen(fd, "wb", closefd=False) as fh:
                fh.write(msgspec.json.format(_manifest_encoder.encode(manifest), indent=2) + b"\n")
            os.replace(staged, base / MANIFEST_NAME)
        except OSError as exc:
            staged.unlink(missing_ok=True)
            raise ConfigError(f"catalog {self.root}: cannot write the manifest of {name} ({exc.strerror})") from None
        finally:
            os.close(fd)

    def write(
        self,
        table: pa.Table,
        venue: str,
        market: str,
        symbol: str,
        dataset: str,
        period: Period = "day",
        *,
        kind: Kind | None = None,
        interval_ns: int | None = None,
        mode: Literal["create", "append", "overwrite"] = "create",
        row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
        notes: Iterable[str] = (),
        quality: dict[str, object] | None = None,
    ) -> Manifest:
        """Write a table as a dataset (atomically) and return its manifest.

        Parameters
        ----------
        table
            Rows in the stored layout (see module docstring), sorted by ``ts_init``
            (bars: strictly increasing ``ts_event``). Extra columns are dropped;
            types are cast to the stored ones. Values are not re-validated here beyond
            finite prices of bars and trades: use :mod:`tradebus.data.ingest` to build tables from files.
        venue, market, symbol, dataset
            Where to put it.
        period
            Partition period ``"day"``, ``"month"`` or ``"year"``.
        kind
            ``"bars"`` or ``"trades"``; inferred from the columns when ``None``.
        interval_ns
            Bar interval; recorded with gap statistics in the manifest.
        mode
            ``"create"`` fails if the dataset exists; ``"append"`` adds rows whose
            time range does not overlap the existing one (before or after it; trades may
            begin at the dataset's last time when their ids are not among the trades
            stored at that time); ``"overwrite"`` replaces the dataset.
        row_group_rows
            Rows per Parquet row group (fixed, part of the deterministic layout).
        notes
            Free-text lines stored in the manifest (appended to existing notes).
        quality
            The quality summary of the rows (:meth:`QualityReport.summary`), shown by ``data info``;
            see :meth:`DatasetWriter.commit`.

        Raises
        ------
        DataError
            Bad columns, a non-finite price of bars or trades (naming the row), unsorted rows, an existing dataset
            in ``"create"`` mode,
            an overlap or a kind/period/interval mismatch in ``"append"`` mode.
        ConfigError
            The catalog's folders cannot be created, or its staging folder (a read-only catalog), or a
            file stands where the dataset's folder goes, or an OS error while writing (a full disk) or
            swapping the dataset in: nothing is written.
        """
        kind = kind or _infer_kind(table)
        with self.writer(
            venue, market, symbol, dataset, period, kind=kind, interval_ns=interval_ns, mode=mode,
            row_group_rows=row_group_rows,
        ) as writer:
            writer.write(table)
            return writer.commit(notes, quality=quality)

    def writer(
        self,
        venue: str,
        market: str,
        symbol: str,
        dataset: str,
        period: Period = "day",
        *,
        kind: Kind,
        interval_ns: int | None = None,
        mode: Literal["create", "append", "overwrite"] = "create",
        row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
        distinct_times: bool = True,
    ) -> DatasetWriter:
        """Open a :class:`DatasetWriter`: a dataset written batch by batch, swapped in on commit.

        Parameters are those of :meth:`write`, and ``distinct_times``: bars must each have a
        later ``ts_event`` than the one before (``False`` for bars closed by an amount
        rather than a clock, several of which may close at one trade time; the manifest then records
        :attr:`Manifest.shared_times`). Use it as a context manager: leaving
        the block without :meth:`DatasetWriter.commit` (or on an exception) removes
        everything it staged and leaves the catalog as it was.
        """
        return DatasetWriter(self, venue, market, symbol, dataset, period, kind, interval_ns, mode, row_group_rows,
                             distinct_times)

@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``directory`` (waiting for it): writers of its datasets commit one at a time."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        _lock(fd, directory, wait=True)
        yield
    finally:
        os.close(fd)


@contextmanager
def _shared(directory: Path) -> Iterator[None]:
    """Hold a shared ``flock`` on ``directory`` (waiting for a commit's exclusive one): reads keep one version.

    A folder that cannot be opened or locked (a file system without ``flock``) is read without it, as before.
    The caller must not hold :func:`_locked` on it (another descriptor: the two would wait on each other).
    """
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        yield
        return
    try:
        try:
            take_lock(fd, shared=True, wait=True)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)


def _close_all(handles: list[pa.NativeFile]) -> None:
    for fh in handles:
        fh.close()
    _Pinned.add(-len(handles))


def _room_for(count: int, name: str) -> None:
    """Make room for ``count`` more open files in this process (:meth:`Catalog.pinned`, :meth:`Catalog.holding`),
    besides those its other such reads hold: the soft ``ulimit -n`` raised up to the hard one if needed.

    Raises
    ------
    DataError
        The hard limit leaves no room, or the system refuses to raise the soft one (macOS past
        ``kern.maxfilesperproc``, its hard limit unlimited), naming ``name``, the count and the limit.
    """
    try:
        import resource
    except ImportError:  # no such limit to raise (Windows)
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    others = _Pinned.count
    need = count + others + _FILES_HELD_ELSEWHERE
    if soft == resource.RLIM_INFINITY or need <= soft:
        return
    held = (f"{name}: a read keeps its {count} files open (the process's other reads {others}), so that a write "
            "swapping in a new version cannot change them under it")
    if hard != resource.RLIM_INFINITY and need > hard:
        raise DataError(f"{held}; this process may open {hard} files (ulimit -n): narrow the time range or raise that "
                        "limit")
    wanted = need if hard == resource.RLIM_INFINITY else hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError) as exc:
        raise DataError(f"{held}; this process may open {soft} files (ulimit -n) and the system refused to raise that "
                        f"to {wanted} ({exc}): narrow the time range or raise that limit") from None


def _lock(fd: int, path: Path, *, wait: bool = False) -> bool:
    """Take an exclusive ``flock`` on ``fd``, open on ``path`` (:func:`tradebus.locks.take_lock`): whether it was free.

    Raises
    ------
    ConfigError
        The file system cannot lock (some network file systems): the message names ``path`` and the error.
    """
    try:
        return take_lock(fd, wait=wait) is None
    except OSError as exc:
        raise ConfigError(
            f"catalog {cannot_lock(str(path), exc)}: the catalog keeps its writers and their leftovers apart by "
            "these locks, and writes nothing without them; put the catalog on a local file system"
        ) from None


def _check_size(path: Path, size: int, entry: FileEntry) -> None:
    """Refuse the file ``path`` of ``size`` bytes when its manifest ``entry`` records another size.

    Raises
    ------
    DataError
        Naming the file and both sizes.
    """
    if entry.size is not None and size != entry.size:
        raise DataError(
            f"{path}: {size} bytes, the manifest says {entry.size}: the file was replaced or changed "
            "since the catalog wrote it; write the dataset again (`tradebus data verify` checks every file)"
        )


def _manifest_bytes(base: Path) -> bytes | None:
    try:
        return (base / MANIFEST_NAME).read_bytes()
    except (FileNotFoundError, NotADirectoryError):  # no dataset there (a path under a file: refused on creating it)
        return None


class _RollbackFailed(OSError):
    """:func:`_swap`'s second rename failed and so did putting the previous version back: it is in ``retired``."""

    def __init__(self, error: OSError, rollback: OSError, retired: Path) -> None:
        super().__init__(error.errno, error.strerror)
        self.rollback = rollback
        self.retired = retired


def _swap(tmp: Path, base: Path) -> None:
    """Replace ``base`` by ``tmp``: two renames, the old copy removed last.

    Raises
    ------
    _RollbackFailed
        The second rename failed and the previous version could not be renamed back.
    """
    if not base.exists():
        os.rename(tmp, base)
        return
    retired = base.parent / f".{base.name}.old-{uuid.uuid4().hex}"
    os.rename(base, retired)
    try:
        os.rename(tmp, base)
    except BaseException as exc:
        try:
            os.rename(retired, base)
        except OSError as again:
            if isinstance(exc, OSError):
                raise _RollbackFailed(exc, again, retired) from None
            raise
        raise
    shutil.rmtree(retired, ignore_errors=True)


_STAGED_MANIFEST_RE = re.compile(rf"^\.{re.escape(MANIFEST_NAME)}\.tmp-[0-9a-f]{{32}}$")
"""A manifest :meth:`Catalog.record_contract_size` staged in the dataset's folder: ``.manifest.json.tmp-<uuid>``."""
_LEFTOVER_RE = re.compile(r"^\.(?P<dataset>[A-Za-z0-9][A-Za-z0-9._-]*)\.(?P<what>tmp|old)-[0-9a-f]{32}$")
"""A directory a writer made beside its dataset: ``.<dataset>.tmp-<uuid>`` (staged rows), ``.<dataset>.old-<uuid>``
(the version a commit replaced, removed last)."""


def _leftovers(symbol_dir: Path, dataset: str | None = None) -> list[tuple[Path, str, str]]:
    """The catalog's own staging and retired directories in ``symbol_dir`` (of ``dataset`` only, if given), sorted."""
    try:
        names = sorted(os.listdir(symbol_dir))
    except OSError:
        return []
    found = []
    for name in names:
        match = _LEFTOVER_RE.match(name)
        path = symbol_dir / name
        if match and (dataset is None or match["dataset"] == dataset) and path.is_dir() and not path.is_symlink():
            found.append((path, match["dataset"], match["what"]))
    return found


def _hold(directory: Path) -> int:
    """Take an exclusive ``flock`` on a staging directory for its writer's life; return the descriptor.

    A process killed outright releases it, so :func:`_recover` tells a live writer's staging from a dead one's.
    """
    fd = os.open(directory, os.O_RDONLY)
    try:
        _lock(fd, directory)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _held(path: Path) -> bool:
    """Whether a live writer holds ``path``, a staging directory or a staged manifest (see :func:`_hold`).

    Raises
    ------
    ConfigError
        If ``path`` cannot be opened (its permissions): whether a write running as another user holds it
        cannot be told, so it is not removed.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:  # removed meanwhile (its writer done)
        return False
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot tell whether a running write holds it, left by a write of the catalog: cannot open it "
            f"({describe_os_error(exc)}); nothing was removed: let this user read it, or remove it once no write "
            "of the catalog runs"
        ) from None
    try:
        return not _lock(fd, path)
    finally:
        os.close(fd)


def _staged_manifests(symbol_dir: Path, dataset: str | None) -> list[Path]:
    """The staged manifests (see :data:`_STAGED_MANIFEST_RE`) in the datasets of ``symbol_dir`` (``dataset`` only)."""
    try:
        datasets = [dataset] if dataset is not None else sorted(n for n in os.listdir(symbol_dir) if n[:1] != ".")
    except OSError:
        return []
    found = []
    for name in datasets:
        try:
            names = sorted(os.listdir(symbol_dir / name))
        except OSError:  # not a folder, or none
            continue
        found += [symbol_dir / name / n for n in names if _STAGED_MANIFEST_RE.match(n)
                  and (symbol_dir / name / n).is_file() and not (symbol_dir / name / n).is_symlink()]
    return found


def _recover(symbol_dir: Path, dataset: str | None = None) -> None:
    """Undo or finish what a killed writer left in ``symbol_dir``; the caller holds its :func:`_locked`.

    A commit renames the dataset to ``.old-``, its staging to the dataset, then removes the ``.old-`` copy,
    all under the lock, so a leftover found under it is a dead process's: a dataset missing beside its
    one complete ``.old-`` copy was killed between the two renames and is rolled back to it (the write is
    lost, the previous version kept); an ``.old-`` copy beside its dataset is removed (the commit was done),
    and kept beside anything else at the dataset's path (a failed rollback, see :func:`_swap`);
    a staging directory no live writer holds is removed, and so is a manifest staged in a dataset's folder
    by :meth:`Catalog.record_contract_size` that no live process holds (killed before its swap). Only
    directories and files named as the catalog names them are touched. An operation refused (a read-only
    catalog) is logged and the leftover kept; a leftover it cannot open to test its lock stops it with a
    :class:`ConfigError` naming it (see :func:`_held`).
    """
    for path in _staged_manifests(symbol_dir, dataset):
        if not _held(path):
            logger.warning("catalog: removing {}, the staged manifest of a write that was killed", path)
            try:
                path.unlink()
            except OSError as exc:
                logger.warning("catalog: cannot remove {} ({})", path, exc.strerror)
    found = _leftovers(symbol_dir, dataset)
    retired: dict[str, list[Path]] = {}
    for path, name, what in found:
        if what == "old":
            retired.setdefault(name, []).append(path)
        elif not _held(path):
            logger.warning("catalog: removing {}, the staging directory of a write that was killed", path)
            shutil.rmtree(path, ignore_errors=True)
    for name, copies in retired.items():
        base = symbol_dir / name
        complete = [c for c in copies if _complete(c)]
        if not base.exists() and len(complete) == 1:
            logger.warning("catalog: {} was missing: a write was killed while replacing it; restoring the previous "
                           "version from {}", base, complete[0])
            try:
                os.rename(complete[0], base)
            except OSError as exc:
                logger.warning("catalog: cannot restore {} from {} ({})", base, complete[0], exc.strerror)
                continue
            copies = [c for c in copies if c != complete[0]]
        if (base / MANIFEST_NAME).is_file():
            for copy in copies:
                shutil.rmtree(copy, ignore_errors=True)
        elif base.exists():
            logger.warning("catalog: {} is not a dataset (no {}): keeping {}, its previous version", base,
                           MANIFEST_NAME, ", ".join(map(str, copies)))


def _complete(directory: Path) -> bool:
    """Whether ``directory`` holds a readable manifest and every file it lists."""
    try:
        manifest = _manifest_decoder.decode((directory / MANIFEST_NAME).read_bytes())
    except (OSError, msgspec.MsgspecError):
        return False
    return all((directory / e.path).is_file() for e in manifest.files)


def _heal(base: Path) -> None:
    """Recover the leftovers of the dataset at ``base`` (see :func:`_recover`), if it has any."""
    if not _leftovers(base.parent, base.name):
        return
    try:
        with _locked(base.parent):
            _recover(base.parent, base.name)
    except OSError as exc:
        logger.warning("catalog: cannot recover the leftovers of {} ({})", base, exc.strerror)
    except ConfigError as exc:  # a leftover it cannot tell is a dead writer's, or a file system that cannot lock
        logger.warning("catalog: cannot recover the leftovers of {}: {}", base, exc)


_IN_FLIGHT = 2


class DatasetWriter:
    """A dataset written in batches, in time order, and swapped into the catalog on commit.

    Memory is bounded by a few Parquet row groups (``row_group_rows`` rows) whatever
    the dataset's size: rows are buffered until a row group is full, then written, so
    the files are byte-identical to a one-shot :meth:`Catalog.write` of the same rows
    however the batches were cut. Row groups are encoded and compressed on one
    background thread (pyarrow releases the GIL), at most :data:`_IN_FLIGHT` at a
    time, so that reading the next input chunk overlaps writing the last one. Partitions are staged in a hidden directory next to
    the dataset; :meth:`commit` writes the manifest and renames it into place,
    :meth:`abort` (or leaving the ``with`` block without a commit) removes it.

    Built by :meth:`Catalog.writer`.
    """

    def __init__(
        self,
        catalog: Catalog,
        venue: str,
        market: str,
        symbol: str,
        dataset: str,
        period: Period,
        kind: Kind,
        interval_ns: int | None,
        mode: Literal["create", "append", "overwrite"],
        row_group_rows: int,
        distinct_times: bool = True,
    ) -> None:
        if period not in _PERIOD_UNITS:
            raise DataError(f"unknown partition period {period!r}; expected one of {sorted(_PERIOD_UNITS)}")
        if row_group_rows < 1:
            raise DataError(f"row_group_rows must be >= 1, got {row_group_rows}")
        if mode not in ("create", "append", "overwrite"):
            raise DataError(f"unknown write mode {mode!r}")
        schema_for(kind)
        self.base = catalog.dataset_dir(venue, market, symbol, dataset)
        self.root = catalog.root
        self.ref = DatasetRef(venue, market, symbol, dataset)
        self.name = "/".join(self.ref.relpath().parts)
        self.kind, self.period, self.mode, self.row_group_rows = kind, period, mode, row_group_rows
        self.interval_ns = interval_ns
        self.distinct_times = distinct_times
        self.old: Manifest | None = None
        self._done = False
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="catalog-writer")
        self._pending: list[Future[None]] = []
        self._part: tuple[np.datetime64, str, pq.ParquetWriter] | None = None
        self._step = "writing its Parquet files"  # what an OS error stops (see _os_failure)
        self._made_dirs = [d for d in (self.base.parent, *self.base.parent.parents) if not d.exists()]
        try:
            self.base.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._pool.shutdown()
            raise ConfigError(f"catalog: cannot create {self.base.parent} ({exc.strerror})") from None
        if self.base.exists() and not self.base.is_dir():  # a commit would rename it aside as a retired dataset
            self._pool.shutdown()
            raise ConfigError(f"catalog {catalog.root}: cannot write {self.name}: {self.base} is a file, not a dataset "
                              "folder; move it out of the catalog")
        self._tmp = self.base.parent / f".{dataset}.tmp-{uuid.uuid4().hex}"
        self._tmp_fd: int | None = None
        try:
            with _locked(self.base.parent):  # a killed writer's leftovers are recovered before this one looks
                _recover(self.base.parent)
                self._tmp.mkdir()
                self._tmp_fd = _hold(self._tmp)
        except OSError as exc:  # a read-only catalog, a folder its user may not write
            self.abort()
            raise ConfigError(f"catalog {catalog.root}: cannot write {self.name}: cannot create its staging folder in "
                              f"{self.base.parent} ({exc.strerror})") from None
        except BaseException:
            self.abort()
            raise
        try:
            self._open_existing(catalog, interval_ns)
        except BaseException:
            self.abort()
            raise

    def _open_existing(self, catalog: Catalog, interval_ns: int | None) -> None:
        """Read the dataset as it is (refusing a create over it) and link its files into the staging directory."""
        ref = self.ref
        # The dataset as this writer found it: a commit refuses to replace another writer's commit since.
        self._found = _manifest_bytes(self.base)
        if catalog.exists(ref.venue, ref.market, ref.symbol, ref.dataset):
            if self.mode == "create":
                raise DatasetExists(self.base)
            if self.mode == "append":
                self.old = catalog.manifest(ref.venue, ref.market, ref.symbol, ref.dataset)
                self._check_append_layout(self.old)
                self.interval_ns = interval_ns if interval_ns is not None else self.old.interval_ns
        self.rows = 0
        self._first_ts: int | None = None
        self._last_ts_init: int | None = None
        self._last_ts_event: int | None = None
        # Trade ids of appended rows at the dataset's last time (several trades may share one time).
        self._edge_ids: list[str] = []
        # Bar gaps counted as the rows go by (a new dataset); an append counts them over all its files at commit.
        self._gap_stats: list[int] = [0, 0]
        self._gap_last: int | None = None
        self._entries: list[FileEntry] = []
        self._taken: set[str] = set()
        self._part_rows = 0
        self._part_range: tuple[int, int] | None = None
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self._link_old()

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._done:
            self.abort()

    def _check_append_layout(self, old: Manifest) -> None:
        if old.kind != self.kind:
            raise DataError(f"{self.base}: cannot append {self.kind} to a {old.kind} dataset")
        if old.period != self.period:
            raise DataError(f"{self.base}: cannot append with period {self.period!r}; the dataset uses {old.period!r}")
        if self.interval_ns is not None and old.interval_ns is not None and self.interval_ns != old.interval_ns:
            raise DataError(
                f"{self.base}: cannot append interval {self.interval_ns} ns to a dataset of {old.interval_ns} ns bars"
            )

    def _link_old(self) -> None:
        if self.old is None:
            return
        for entry in self.old.files:
            src, dst = self.base / entry.path, self._tmp / entry.path
            if not src.is_file():
                raise DataError(f"{src}: file listed in the manifest is missing; refusing to append")
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
            _check_size(src, dst.stat().st_size, entry)  # the new manifest would carry a replaced part forward
            self._entries.append(entry)
            self._taken.add(entry.path)

    # ------------------------------------------------------------------ rows

    def write(self, table: pa.Table) -> None:
        """Add rows that continue the ones written so far (sorted by ``ts_init``).

        Raises
        ------
        DataError
            Missing or null columns, or rows out of order (naming the row, counted
            from the first row given to this writer).
        ConfigError
            An OS error writing the Parquet files (a full disk), naming the catalog and the dataset;
            the writer is then to be aborted (leaving the ``with`` block does it).
        """
        if self._done:
            raise DataError(f"{self.name}: writer already committed or aborted")
        try:
            self._write(table)
        except OSError as exc:  # a full disk, a file too large: the caller's abort leaves the catalog as it was
            raise self._os_failure(self._step, exc) from None

    def _os_failure(self, operation: str, exc: OSError) -> ConfigError:
        """The error of an OS failure (a full disk, a failed rename) while ``operation``: nothing is committed."""
        failed = f"catalog {self.root}: cannot write {self.name}: {operation} failed ({describe_os_error(exc)})"
        if isinstance(exc, _RollbackFailed):
            return ConfigError(f"{failed}; putting the previous version back failed too "
                               f"({describe_os_error(exc.rollback)}): it is kept in {exc.retired}, and the catalog "
                               f"restores it when {self.base} is gone (remove what stands there)")
        return ConfigError(f"{failed}; the dataset is left as it was")

    def _write(self, table: pa.Table) -> None:
        if self._pending and self._pending[0].done():
            self._pending.pop(0).result()  # a write error surfaces at the next batch
        table = _conform(table, self.kind, self.name, self.rows)
        n = table.num_rows
        if n == 0:
            return
        ts_init = table.column("ts_init").to_numpy()
        self._check_order(table, ts_init)
        if self.kind == "trades" and self.old is not None and ts_init[0] == self.old.end_ns:
            at_end = ts_init == self.old.end_ns
            self._edge_ids.extend(table.column("trade_id").filter(pa.array(at_end)).to_pylist())
        if self.kind == "bars" and self.interval_ns is not None and self.old is None:
            ts_event = table.column("ts_event").to_numpy()
            joined = ts_event if self._gap_last is None else np.concatenate(([self._gap_last], ts_event))
            gaps, missing = _gap_stats(joined, self.interval_ns)
            self._gap_stats[0] += gaps
            self._gap_stats[1] += missing
            self._gap_last = int(ts_event[-1])
        if self._first_ts is None:
            self._first_ts = int(ts_init[0])
        starts, cuts = _partition_cuts(ts_init, self.period)
        bounds = [0, *cuts, n]
        for day, lo, hi in zip(starts, bounds[:-1], bounds[1:], strict=True):
            if self._part is None or self._part[0] != day:
                self._close_part()
                self._open_part(day)
            self._add(table.slice(lo, hi - lo), int(ts_init[lo]), int(ts_init[hi - 1]))
        self.rows += n

    def _check_order(self, table: pa.Table, ts_init: np.ndarray) -> None:
        prev = self._last_ts_init
        joined = ts_init if prev is None else np.concatenate(([prev], ts_init))
        bad = np.flatnonzero(np.diff(joined) < 0)
        shift = 0 if prev is None else 1
        if bad.size:
            i = int(bad[0]) + 1 - shift
            before = int(joined[i - 1 + shift])
            raise DataError(
                f"{self.name} row {self.rows + i + 1}: ts_init {int(ts_init[i])} < previous {before} "
                "(rows must be sorted by time)"
            )
        if self.kind == "bars" and self.distinct_times:
            ts_event = table.column("ts_event").to_numpy()
            prev_e = self._last_ts_event
            joined_e = ts_event if prev_e is None else np.concatenate(([prev_e], ts_event))
            dup = np.flatnonzero(np.diff(joined_e) <= 0)
            shift_e = 0 if prev_e is None else 1
            if dup.size:
                i = int(dup[0]) + 1 - shift_e
                raise DataError(
                    f"{self.name} row {self.rows + i + 1}: ts_event {int(ts_event[i])} is not after previous bar "
                    f"{int(joined_e[i - 1 + shift_e])}"
                )
            self._last_ts_event = int(ts_event[-1])
        self._last_ts_init = int(ts_init[-1])

    def _open_part(self, day: np.datetime64) -> None:
        part_dir = f"date={day}"
        n = 0
        while f"{part_dir}/part-{n:05d}.parquet" in self._taken:
            n += 1
        rel = f"{part_dir}/part-{n:05d}.parquet"
        self._taken.add(rel)
        (self._tmp / part_dir).mkdir(parents=True, exist_ok=True)
        self._step = f"writing its Parquet file {rel}"
        self._part = (day, rel, _open_part_writer(self._tmp / rel, self.kind))
        self._part_rows = 0
        self._part_range = None

    def _add(self, rows: pa.Table, first: int, last: int) -> None:
        self._buffer.append(rows)
        self._buffered += rows.num_rows
        self._part_rows += rows.num_rows
        self._part_range = (first if self._part_range is None else self._part_range[0], last)
        while self._buffered >= self.row_group_rows:
            self._flush(self.row_group_rows)

    def _flush(self, count: int, *, wait: bool = False) -> None:
        """Write the first ``count`` buffered rows as a row group: on the background thread, or here with ``wait``."""
        assert self._part is not None
        pending = pa.concat_tables(self._buffer)
        group = pending.slice(0, count)
        writer = self._part[2]
        if wait:  # the caller waits for it anyway: no thread (a small dataset never starts one)
            self._drain()
            writer.write_table(group, row_group_size=self.row_group_rows)
        else:
            while len(self._pending) >= _IN_FLIGHT:
                self._pending.pop(0).result()
            self._pending.append(self._pool.submit(writer.write_table, group, row_group_size=self.row_group_rows))
        rest = pending.slice(count)
        self._buffer = [rest] if rest.num_rows else []
        self._buffered = rest.num_rows

    def _drain(self) -> None:
        """Wait for the row groups in flight; raise the first write error."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def _close_part(self) -> None:
        if self._part is None:
            return
        if self._buffered:
            self._flush(self._buffered, wait=True)
        self._drain()
        _, rel, writer = self._part
        writer.close()
        assert self._part_range is not None
        start, end = self._part_range
        self._step = f"reading back its Parquet file {rel} to hash it"
        part = self._tmp / rel
        self._entries.append(FileEntry(rel, self._part_rows, start, end, sha256_file(part), part.stat().st_size))
        self._part = None

    # ------------------------------------------------------------------ end

    def commit(
        self,
        notes: Iterable[str] = (),
        quality: dict[str, object] | None = None,
        unsynced: Iterable[tuple[int, int]] = (),
        stale: Iterable[tuple[int, int, str]] = (),
        missed_trades: Iterable[tuple[int, int, int, int, int]] = (),
        contract_size: float | None = None,
    ) -> Manifest:
        """Finish the last file, write the manifest and swap the dataset in; return the manifest.

        Parameters
        ----------
        notes
            Free-text lines stored in the manifest (appended to existing notes).
        quality
            The quality summary of the rows written, stored in the manifest (``None``: none,
            or the existing one on an append). An append stores the summary of the whole
            dataset it leaves instead, checked over all its files (the rows written are only
            part of it, and a gap or a stale run may straddle the join).
        unsynced
            ``(start_ns, end_ns)`` of each stretch the book rows written leave out (see
            :attr:`Manifest.unsynced`; appended to the existing ones).
        stale
            ``(start_ns, end_ns, feed)`` of each stale-feed stretch of the recording the rows come
            from (see :attr:`Manifest.stale`; appended to the existing ones).
        missed_trades
            ``(start_ns, end_ns, first_id, last_id, lost)`` of each gap in trade ids the trade rows
            written leave (see :attr:`Manifest.missed_trades`; appended to the existing ones).
        contract_size
            Trades: base units per unit of the rows' size (see :attr:`Manifest.contract_size`;
            ``None``: the existing one, if any).

        Raises
        ------
        DataError
            Nothing was written, appended rows overlap the existing range, or ``contract_size``
            differs from the existing dataset's.
        ConfigError
            An OS error (a full disk, a failed rename) while writing the files or the manifest or
            swapping the dataset in, naming the catalog, the dataset and the step: everything
            staged is removed and the dataset is left as it was.
        """
        try:
            self.check()
            self._close_part()
            self._entries.sort(key=lambda e: (e.start_ns, e.path))
            manifest = self._manifest(notes, quality, unsynced, stale, missed_trades, contract_size)
            self._step = "writing its manifest"
            (self._tmp / MANIFEST_NAME).write_bytes(
                msgspec.json.format(_manifest_encoder.encode(manifest), indent=2) + b"\n"
            )
            self._step = "swapping it into the catalog"
            with _locked(self.base.parent):
                _recover(self.base.parent, self.base.name)  # a writer killed since this one opened: rolled back first
                self._check_unchanged()
                _swap(self._tmp, self.base)
        except OSError as exc:
            self.abort()
            raise self._os_failure(self._step, exc) from None
        except BaseException:
            self.abort()
            raise
        self._done = True
        self._pool.shutdown()
        self._release()
        logger.info("catalog: wrote {} ({} rows, {} files, {} mode)", self.name, self.rows, len(manifest.files), self.mode)
        return manifest

    def check(self) -> None:
        """Raise what :meth:`commit` would refuse: nothing written, or appended rows overlapping the dataset.

        Raises
        ------
        DataError
            Naming the dataset and the ranges.
        """
        if self.rows == 0:
            raise DataError(f"{self.name}: nothing to write (0 rows)")
        if self.old is not None:
            first, last = self._first_ts, self._last_ts_init
            assert first is not None and last is not None
            if not (first > self.old.end_ns or last < self.old.start_ns or self._continues_last_time(first)):
                raise DataError(
                    f"{self.base}: appended rows {iso_ns(first)} .. {iso_ns(last)} overlap the existing range "
                    f"{iso_ns(self.old.start_ns)} .. {iso_ns(self.old.end_ns)} (ts_init); append only rows after "
                    "or before it, or overwrite the dataset"
                )

    def _check_unchanged(self) -> None:
        """Refuse to commit over a dataset another writer committed since this one opened (not ``"overwrite"``)."""
        if self.mode == "overwrite" or _manifest_bytes(self.base) == self._found:
            return
        if self._found is None:
            raise DataError(f"{self.base}: dataset created by another run while this one was writing it; "
                            "nothing was written (run again with append or overwrite)")
        raise DataError(f"{self.base}: dataset changed by another run while this one was appending to it "
                        "(its manifest is not the one this append started from); nothing was written: run again")

    def _continues_last_time(self, first: int) -> bool:
        """Whether appended trades begin at the dataset's last time with none of the trades stored there.

        Raises
        ------
        DataError
            If one of them repeats the id of a trade stored at that time.
        """
        old = self.old
        if self.kind != "trades" or old is None or first != old.end_ns or not self._edge_ids or "" in self._edge_ids:
            return False
        stored: set[str] = set()
        for entry in old.files:
            if entry.end_ns == old.end_ns:
                self._step = f"reading its Parquet file {entry.path} (the trades at its last time)"
                tail = pq.read_table(self.base / entry.path, columns=["ts_init", "trade_id"])
                at_end = pc.equal(tail.column("ts_init"), old.end_ns)
                stored.update(tail.column("trade_id").filter(at_end).to_pylist())
        repeated = sorted(stored.intersection(self._edge_ids))
        if repeated:
            raise DataError(
                f"{self.base}: appended trades at the dataset's last time {old.end_ns} repeat stored trade ids "
                f"{repeated[:5]}{' ...' if len(repeated) > 5 else ''} (ts_init ns)"
            )
        return True

    def abort(self) -> None:
        """Drop everything staged (a no-op after a commit); the catalog is left as it was."""
        if self._done:
            return
        for future in self._pending:
            future.cancel()
        self._pool.shutdown(wait=True)
        self._pending = []
        if self._part is not None:
            try:
                self._part[2].close()
            except (OSError, pa.ArrowException):
                pass
            self._part = None
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._release()
        for directory in self._made_dirs:  # deepest first: the ones this writer created
            try:
                directory.rmdir()
            except OSError:
                break
        self._done = True

    def _release(self) -> None:
        """Let go of the staging directory's lock (see :func:`_hold`)."""
        if self._tmp_fd is not None:
            os.close(self._tmp_fd)
            self._tmp_fd = None

    def _manifest(
        self,
        notes: Iterable[str],
        quality: dict[str, object] | None,
        unsynced: Iterable[tuple[int, int]],
        stale: Iterable[tuple[int, int, str]] = (),
        missed_trades: Iterable[tuple[int, int, int, int, int]] = (),
        contract_size: float | None = None,
    ) -> Manifest:
        old = self.old
        if old is not None and old.contract_size is not None and contract_size is not None \
                and contract_size != old.contract_size:
            raise DataError(f"{self.ref.relpath().as_posix()}: the rows appended have contract size {contract_size:g}, "
                            f"the dataset's {old.contract_size:g} (trade sizes in another unit)")
        gaps = missing = None
        if self.kind == "bars" and self.interval_ns is not None and self.old is None:
            gaps, missing = self._gap_stats
        elif self.kind == "bars" and self.interval_ns is not None:
            gaps = missing = 0
            prev_last: int | None = None
            for entry in self._entries:
                self._step = f"reading its Parquet file {entry.path} (to count the gaps between bars)"
                ts_event = pq.read_table(self._tmp / entry.path, columns=["ts_event"]).column(0).to_numpy()
                if prev_last is not None:
                    ts_event = np.concatenate(([prev_last], ts_event))
                g, m = _gap_stats(ts_event, self.interval_ns)
                gaps += g
                missing += m
                prev_last = int(ts_event[-1])
        shared = self.kind == "bars" and (not self.distinct_times or (old is not None and old.shared_times))
        if old is not None and quality is not None:
            self._step = "reading its Parquet files (to check the quality of the whole dataset)"
            quality = quality_report((self._tmp / e.path for e in self._entries), self.kind, self.interval_ns,
                                     shared_times=shared).summary()
        return Manifest(
            schema_version=SCHEMA_VERSION,
            kind=self.kind,
            venue=self.ref.venue,
            market=self.ref.market,
            symbol=self.ref.symbol,
            dataset=self.ref.dataset,
            period=self.period,
            rows=sum(e.rows for e in self._entries),
            start_ns=self._entries[0].start_ns,
            end_ns=self._entries[-1].end_ns,
            interval_ns=self.interval_ns,
            gaps=gaps,
            missing_bars=missing,
            columns={f.name: str(f.type) for f in schema_for(self.kind)},
            compression=_COMPRESSION,
            row_group_rows=self.row_group_rows,
            files=self._entries,
            notes=[*(old.notes if old is not None else []), *notes],
            quality=quality if quality is not None else (old.quality if old is not None else None),
            unsynced=[*(old.unsynced if old is not None else []), *((int(a), int(b)) for a, b in unsynced)],
            stale=[*(old.stale if old is not None else []), *((int(a), int(b), str(feed)) for a, b, feed in stale)],
            missed_trades=[*(old.missed_trades if old is not None else []), *(
                (int(a), int(b), int(first), int(last), int(lost)) for a, b, first, last, lost in missed_trades
            )],
            shared_times=shared,
            contract_size=contract_size if contract_size is not None else (old.contract_size if old is not None else None),
        )
