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
  fixed compression, no schema metadata, no wall-clock time anywhere).
* Atomic: a dataset is built in a temporary directory next to it and swapped in
  with ``os.rename``; a failed write leaves the previous dataset (or nothing).
* Verified: the manifest lists every file with its row count, time range and
  sha256; :meth:`Catalog.files` fails on a missing file (and on a hash mismatch
  with ``verify=True``), and :func:`open_parquet` fails on a schema mismatch.

Stored columns (``SCHEMA_VERSION`` 1):

* bars: ``ts_event`` (int64 ns, the bar CLOSE time), ``ts_init`` (int64 ns),
  ``open``, ``high``, ``low``, ``close``, ``volume`` (float64).
* trades: ``ts_event``, ``ts_init``, ``price``, ``size`` (float64), ``aggressor``
  (int8: 1 buy, -1 sell, 0 unknown), ``trade_id`` (string).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from loguru import logger

from tradebus.errors import DataError

__all__ = [
    "BAR_SCHEMA",
    "SCHEMA_VERSION",
    "TRADE_SCHEMA",
    "Catalog",
    "DatasetRef",
    "FileEntry",
    "Kind",
    "Manifest",
    "Period",
    "open_parquet",
    "schema_for",
]

SCHEMA_VERSION = 1
"""Version of the stored column layout; bumped on any incompatible change."""

Kind = Literal["bars", "trades"]
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
_SCHEMAS: dict[str, pa.Schema] = {"bars": BAR_SCHEMA, "trades": TRADE_SCHEMA}
_PERIOD_UNITS: dict[str, str] = {"day": "D", "month": "M", "year": "Y"}

MANIFEST_NAME = "manifest.json"
DEFAULT_ROW_GROUP_ROWS = 65_536
_COMPRESSION = "zstd"
_COMPRESSION_LEVEL = 9
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_HASH_CHUNK = 1 << 20


def schema_for(kind: str) -> pa.Schema:
    """Return the stored Arrow schema of a dataset kind (``"bars"`` or ``"trades"``).

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
    ``start_ns``/``end_ns`` are its first and last ``ts_init``.
    """

    path: str
    rows: int
    start_ns: int
    end_ns: int
    sha256: str


class Manifest(msgspec.Struct, frozen=True):
    """Description of one dataset, stored as ``manifest.json`` next to its partitions.

    Attributes
    ----------
    schema_version
        :data:`SCHEMA_VERSION` at write time.
    kind
        ``"bars"`` or ``"trades"``.
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


def _check_name(what: str, value: str) -> None:
    if not _NAME_RE.match(value):
        raise DataError(
            f"catalog {what} {value!r} is not a valid name (letters, digits, '.', '_', '-'; not starting with a symbol)"
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _partition_starts(ts_init: np.ndarray, period: str) -> np.ndarray:
    """Return the first day (datetime64[D]) of the period of every timestamp."""
    unit = _PERIOD_UNITS[period]
    return ts_init.astype("datetime64[ns]").astype(f"datetime64[{unit}]").astype("datetime64[D]")


def _infer_kind(table: pa.Table) -> str:
    names = set(table.column_names)
    if {"open", "high", "low", "close"} <= names:
        return "bars"
    if {"price", "size"} <= names:
        return "trades"
    raise DataError(f"cannot tell bars from trades: columns {table.column_names}")


def _conform(table: pa.Table, kind: str, name: str) -> pa.Table:
    """Return ``table`` with exactly the stored columns of ``kind``, types and no metadata."""
    schema = schema_for(kind)
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise DataError(f"{name}: missing column(s) {missing} for {kind}; got {table.column_names}")
    columns = []
    for field in schema:
        column = table.column(field.name)
        if column.null_count:
            row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0]) + 1
            raise DataError(f"{name} row {row}: {field.name} is missing (null)")
        if column.type != field.type:
            try:
                column = column.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise DataError(f"{name}: column {field.name} of type {column.type} is not {field.type}: {exc}") from None
        columns.append(column.combine_chunks())
    return pa.Table.from_arrays(columns, schema=schema)


def _check_order(table: pa.Table, kind: str, name: str) -> None:
    ts_init = table.column("ts_init").to_numpy()
    if ts_init.size < 2:
        return
    step = np.diff(ts_init)
    bad = np.flatnonzero(step < 0)
    if bad.size:
        row = int(bad[0]) + 2
        raise DataError(
            f"{name} row {row}: ts_init {int(ts_init[row - 1])} < previous {int(ts_init[row - 2])} (rows must be sorted by time)"
        )
    if kind == "bars":
        ts_event = table.column("ts_event").to_numpy()
        dup = np.flatnonzero(np.diff(ts_event) <= 0)
        if dup.size:
            row = int(dup[0]) + 2
            raise DataError(
                f"{name} row {row}: ts_event {int(ts_event[row - 1])} is not after previous bar {int(ts_event[row - 2])}"
            )


def _gap_stats(ts_event: np.ndarray, interval_ns: int) -> tuple[int, int]:
    if ts_event.size < 2:
        return 0, 0
    step = np.diff(ts_event)
    over = step[step > interval_ns]
    missing = int(np.sum(-(-over // interval_ns) - 1)) if over.size else 0
    return int(over.size), missing


def _write_parquet(table: pa.Table, path: Path, row_group_rows: int, kind: str) -> None:
    encodings = {"ts_event": "DELTA_BINARY_PACKED", "ts_init": "DELTA_BINARY_PACKED"}
    pq.write_table(
        table,
        path,
        row_group_size=row_group_rows,
        compression=_COMPRESSION,
        compression_level=_COMPRESSION_LEVEL,
        use_dictionary=["trade_id"] if kind == "trades" else False,
        column_encoding=encodings,
        write_statistics=True,
        store_schema=False,
    )


def open_parquet(path: Path, kind: str) -> pq.ParquetFile:
    """Open one catalog Parquet file and check its schema against ``kind``.

    Raises
    ------
    DataError
        If the file cannot be read or its columns/types differ from the stored schema.
    """
    try:
        pf = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{path}: cannot read Parquet file: {exc}") from None
    expected = schema_for(kind)
    actual = pf.schema_arrow
    if actual.names != expected.names or actual.types != expected.types:
        got = ", ".join(f"{f.name}:{f.type}" for f in actual)
        want = ", ".join(f"{f.name}:{f.type}" for f in expected)
        raise DataError(f"{path}: schema mismatch: got ({got}), expected ({want}) for {kind}")
    return pf


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
            _check_name(what, value)
        return self.root / DatasetRef(venue, market, symbol, dataset).relpath()

    def exists(self, venue: str, market: str, symbol: str, dataset: str) -> bool:
        """Return whether the dataset has a manifest."""
        return (self.dataset_dir(venue, market, symbol, dataset) / MANIFEST_NAME).is_file()

    # ------------------------------------------------------------------ read

    def manifest(self, venue: str, market: str, symbol: str, dataset: str) -> Manifest:
        """Load and check the manifest of a dataset.

        Raises
        ------
        DataError
            If the dataset does not exist, the manifest is malformed, or it was
            written with another schema version.
        """
        path = self.dataset_dir(venue, market, symbol, dataset) / MANIFEST_NAME
        return self._load_manifest(path)

    def _load_manifest(self, path: Path) -> Manifest:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            retired = sorted(path.parent.parent.glob(f".{path.parent.name}.old-*/{MANIFEST_NAME}"))
            if retired:
                raise DataError(
                    f"{path}: dataset not found, but an interrupted write left {retired[0].parent}; "
                    f"rename it back to {path.parent} to recover the previous version"
                ) from None
            raise DataError(f"{path}: dataset not found (no manifest) in catalog {self.root}") from None
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
            If a listed file is missing or (with ``verify``) its hash differs.
        """
        manifest = self.manifest(venue, market, symbol, dataset)
        base = self.dataset_dir(venue, market, symbol, dataset)
        return [base / e.path for e in self._entries(manifest, base, start_ns, end_ns, verify)]

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
        """Like :meth:`files` but also return the manifest and each file's entry."""
        manifest = self.manifest(venue, market, symbol, dataset)
        base = self.dataset_dir(venue, market, symbol, dataset)
        kept = self._entries(manifest, base, start_ns, end_ns, verify)
        return manifest, [(base / e.path, e) for e in kept]

    @staticmethod
    def _entries(
        manifest: Manifest, base: Path, start_ns: int | None, end_ns: int | None, verify: bool
    ) -> list[FileEntry]:
        kept = []
        for entry in manifest.files:
            if start_ns is not None and entry.end_ns < start_ns:
                continue
            if end_ns is not None and entry.start_ns > end_ns:
                continue
            path = base / entry.path
            if not path.is_file():
                raise DataError(f"{path}: file listed in the manifest is missing")
            if verify:
                digest = _sha256(path)
                if digest != entry.sha256:
                    raise DataError(f"{path}: sha256 {digest} does not match the manifest ({entry.sha256})")
            kept.append(entry)
        return kept

    def verify(self, venue: str, market: str, symbol: str, dataset: str) -> Manifest:
        """Check every file of a dataset: present, hash, schema and row count.

        Raises
        ------
        DataError
            Naming the first file that fails.
        """
        manifest, entries = self.entries(venue, market, symbol, dataset, verify=True)
        for path, entry in entries:
            pf = open_parquet(path, manifest.kind)
            if pf.metadata.num_rows != entry.rows:
                raise DataError(f"{path}: {pf.metadata.num_rows} rows, manifest says {entry.rows}")
        return manifest

    def read(self, venue: str, market: str, symbol: str, dataset: str, *, verify: bool = False) -> pa.Table:
        """Read a whole dataset into one table (small datasets; replay streams instead)."""
        manifest, entries = self.entries(venue, market, symbol, dataset, verify=verify)
        tables = [open_parquet(path, manifest.kind).read() for path, _ in entries]
        if not tables:
            return schema_for(manifest.kind).empty_table()
        return pa.concat_tables(tables)

    # ------------------------------------------------------------------ write

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
    ) -> Manifest:
        """Write a table as a dataset (atomically) and return its manifest.

        Parameters
        ----------
        table
            Rows in the stored layout (see module docstring), sorted by ``ts_init``
            (bars: strictly increasing ``ts_event``). Extra columns are dropped;
            types are cast to the stored ones. Values are not re-validated here:
            use :mod:`tradebus.data.ingest` to build tables from files.
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
            time range does not overlap the existing one (before or after it);
            ``"overwrite"`` replaces the dataset.
        row_group_rows
            Rows per Parquet row group (fixed, part of the deterministic layout).
        notes
            Free-text lines stored in the manifest (appended to existing notes).

        Raises
        ------
        DataError
            Bad columns, unsorted rows, an existing dataset in ``"create"`` mode,
            an overlap or a kind/period/interval mismatch in ``"append"`` mode.
        """
        if period not in _PERIOD_UNITS:
            raise DataError(f"unknown partition period {period!r}; expected one of {sorted(_PERIOD_UNITS)}")
        if row_group_rows < 1:
            raise DataError(f"row_group_rows must be >= 1, got {row_group_rows}")
        base = self.dataset_dir(venue, market, symbol, dataset)
        ref = DatasetRef(venue, market, symbol, dataset)
        name = "/".join(ref.relpath().parts)
        kind = kind or _infer_kind(table)
        table = _conform(table, kind, name)
        _check_order(table, kind, name)
        if table.num_rows == 0:
            raise DataError(f"{name}: nothing to write (0 rows)")

        old: Manifest | None = None
        if self.exists(venue, market, symbol, dataset):
            if mode == "create":
                raise DataError(f"{base}: dataset exists; use mode='append' or mode='overwrite'")
            if mode == "append":
                old = self.manifest(venue, market, symbol, dataset)
                self._check_append(old, table, kind, period, interval_ns, base)
                interval_ns = interval_ns if interval_ns is not None else old.interval_ns
        elif mode not in ("create", "append", "overwrite"):
            raise DataError(f"unknown write mode {mode!r}")

        base.parent.mkdir(parents=True, exist_ok=True)
        tmp = base.parent / f".{dataset}.tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            entries = self._stage(tmp, base, old, table, kind, period, row_group_rows)
            manifest = self._build_manifest(tmp, ref, kind, period, entries, interval_ns, row_group_rows, old, notes)
            (tmp / MANIFEST_NAME).write_bytes(msgspec.json.format(_manifest_encoder.encode(manifest), indent=2) + b"\n")
            self._swap(tmp, base)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        logger.info(
            "catalog: wrote {} ({} rows, {} files, {} mode)", name, table.num_rows, len(manifest.files), mode
        )
        return manifest

    @staticmethod
    def _check_append(
        old: Manifest, table: pa.Table, kind: str, period: str, interval_ns: int | None, base: Path
    ) -> None:
        if old.kind != kind:
            raise DataError(f"{base}: cannot append {kind} to a {old.kind} dataset")
        if old.period != period:
            raise DataError(f"{base}: cannot append with period {period!r}; the dataset uses {old.period!r}")
        if interval_ns is not None and old.interval_ns is not None and interval_ns != old.interval_ns:
            raise DataError(f"{base}: cannot append interval {interval_ns} ns to a dataset of {old.interval_ns} ns bars")
        ts_init = table.column("ts_init")
        first, last = ts_init[0].as_py(), ts_init[-1].as_py()
        if not (first > old.end_ns or last < old.start_ns):
            raise DataError(
                f"{base}: appended rows [{first}, {last}] overlap the existing range [{old.start_ns}, {old.end_ns}] (ts_init ns)"
            )

    @staticmethod
    def _stage(
        tmp: Path,
        base: Path,
        old: Manifest | None,
        table: pa.Table,
        kind: str,
        period: str,
        row_group_rows: int,
    ) -> list[FileEntry]:
        """Write the new partitions into ``tmp`` and hard-link (or copy) the old files."""
        entries: list[FileEntry] = []
        taken: set[str] = set()
        if old is not None:
            for entry in old.files:
                src, dst = base / entry.path, tmp / entry.path
                if not src.is_file():
                    raise DataError(f"{src}: file listed in the manifest is missing; refusing to append")
                dst.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copy2(src, dst)
                entries.append(entry)
                taken.add(entry.path)
        ts_init = table.column("ts_init").to_numpy()
        days = _partition_starts(ts_init, period)
        cuts = np.flatnonzero(days[1:] != days[:-1]) + 1
        bounds = [0, *cuts.tolist(), ts_init.size]
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=False):
            part_dir = f"date={days[lo]}"
            n = 0
            while f"{part_dir}/part-{n:05d}.parquet" in taken:
                n += 1
            rel = f"{part_dir}/part-{n:05d}.parquet"
            taken.add(rel)
            (tmp / part_dir).mkdir(parents=True, exist_ok=True)
            _write_parquet(table.slice(lo, hi - lo), tmp / rel, row_group_rows, kind)
            entries.append(FileEntry(rel, hi - lo, int(ts_init[lo]), int(ts_init[hi - 1]), _sha256(tmp / rel)))
        entries.sort(key=lambda e: (e.start_ns, e.path))
        return entries

    def _build_manifest(
        self,
        tmp: Path,
        ref: DatasetRef,
        kind: str,
        period: str,
        entries: list[FileEntry],
        interval_ns: int | None,
        row_group_rows: int,
        old: Manifest | None,
        notes: Iterable[str],
    ) -> Manifest:
        gaps = missing = None
        if kind == "bars" and interval_ns is not None:
            gaps = missing = 0
            prev_last: int | None = None
            for entry in entries:
                ts_event = pq.read_table(tmp / entry.path, columns=["ts_event"]).column(0).to_numpy()
                if prev_last is not None:
                    ts_event = np.concatenate(([prev_last], ts_event))
                g, m = _gap_stats(ts_event, interval_ns)
                gaps += g
                missing += m
                prev_last = int(ts_event[-1])
        all_notes = [*(old.notes if old is not None else []), *notes]
        return Manifest(
            schema_version=SCHEMA_VERSION,
            kind=kind,
            venue=ref.venue,
            market=ref.market,
            symbol=ref.symbol,
            dataset=ref.dataset,
            period=period,
            rows=sum(e.rows for e in entries),
            start_ns=entries[0].start_ns,
            end_ns=entries[-1].end_ns,
            interval_ns=interval_ns,
            gaps=gaps,
            missing_bars=missing,
            columns={f.name: str(f.type) for f in schema_for(kind)},
            compression=_COMPRESSION,
            row_group_rows=row_group_rows,
            files=entries,
            notes=all_notes,
        )

    @staticmethod
    def _swap(tmp: Path, base: Path) -> None:
        """Replace ``base`` by ``tmp``: two renames, the old copy removed last."""
        if not base.exists():
            os.rename(tmp, base)
            return
        retired = base.parent / f".{base.name}.old-{uuid.uuid4().hex}"
        os.rename(base, retired)
        try:
            os.rename(tmp, base)
        except BaseException:
            os.rename(retired, base)
            raise
        shutil.rmtree(retired, ignore_errors=True)
