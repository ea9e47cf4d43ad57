"""Binance Vision ``bookDepth`` files (percentage-depth snapshots) into ``book_depth`` datasets.

Binance publishes, per USD-M and COIN-M futures symbol and day, a zip of one CSV::

    timestamp,percentage,depth,notional
    2023-06-01 00:00:08,-5.00,2364.7610,63140614.12
    2023-06-01 00:00:08,-1.00,890.3540,23945221.31
    ...

Every ~30 s a snapshot of bands (``±0.2 .. ±5`` percent from the mid; negative on the
bid side): ``depth`` is the cumulative size resting within the band (base units on USD-M,
contracts on COIN-M), ``notional`` the same in the quote currency. ``timestamp`` is UTC
text at second resolution; there is no receive time, so ``ts_init = ts_event``.

Rules (a bad row is refused naming the file, row and field; nothing is written): the header
is the one above; ``timestamp`` parses and never goes back (across the files too);
``percentage`` is finite, non-zero and within ±100 and appears once per snapshot; ``depth``
and ``notional`` are finite and >= 0 and, being cumulative, do not fall from a band to a
wider one of the same side. The snapshot checks of :mod:`tradebus.data.quality` (gaps,
stale and incomplete snapshots, empty bands) run on the rows as they are written; their
summary goes into the manifest.
"""

from __future__ import annotations

import csv
import io
import math
import os
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import pyarrow as pa

from tradebus.data.catalog import Catalog, DatasetWriter, Manifest
from tradebus.data.quality import QualityCheck
from tradebus.data.sources import require_file
from tradebus.errors import DataError

__all__ = ["import_book_depth"]

HEADER = ["timestamp", "percentage", "depth", "notional"]
_NS = 1_000_000_000
_FLUSH_ROWS = 65_536
_ZIP_MAGIC = b"PK\x03\x04"


def _is_zip(path: Path) -> bool:
    """A zip by its directory, or by its first bytes (a zip cut short has lost its directory)."""
    if zipfile.is_zipfile(path):
        return True
    with path.open("rb") as fh:
        return fh.read(len(_ZIP_MAGIC)) == _ZIP_MAGIC


@contextmanager
def _text(path: Path) -> Iterator[IO[str]]:
    """The CSV of ``path``: the file itself or the one member of a Vision zip."""
    try:
        if _is_zip(path):
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist() if not n.endswith("/")]
                if len(names) != 1:
                    raise DataError(f"{path}: a Vision zip holds one CSV, found {names}")
                with zf.open(names[0]) as raw:
                    yield io.TextIOWrapper(raw, encoding="utf-8", newline="")
        else:
            with path.open(encoding="utf-8", newline="") as fh:
                yield fh
    except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None
    except (zlib.error, EOFError) as exc:  # a damaged deflate stream, met while reading the rows
        raise DataError(f"{path}: corrupt zip archive: {exc or type(exc).__name__}") from None


def _number(where: str, field: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{where}: field {field}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{where}: field {field}: {text!r} is not finite")
    return value


class _Snapshot:
    """The bands of one timestamp, checked when it closes."""

    def __init__(self) -> None:
        self.ts = -1
        self.bands: dict[float, tuple[float, float, str]] = {}

    def check(self) -> None:
        for sign in (-1.0, 1.0):
            side = sorted((abs(p), v) for p, v in self.bands.items() if math.copysign(1.0, p) == sign)
            for (_, (depth0, notional0, _w0)), (_, (depth, notional, where)) in zip(side, side[1:], strict=False):
                if depth < depth0:
                    raise DataError(f"{where}: field depth: {depth} is below the narrower band's {depth0} (not cumulative)")
                if notional < notional0:
                    raise DataError(
                        f"{where}: field notional: {notional} is below the narrower band's {notional0} (not cumulative)"
                    )


def _rows(path: Path, state: dict[str, object]) -> Iterator[tuple[int, float, float, float]]:
    """``(ts ns, percentage, depth, notional)`` of one file, checked."""
    snap: _Snapshot = state["snap"]  # type: ignore[assignment]
    parsed: dict[str, int] = {}
    with _text(path) as fh:
        reader = csv.reader(fh)
        header = [h.strip().lower() for h in next(reader, [])]
        if header != HEADER:
            raise DataError(f"{path}: header {header} is not {HEADER} (Binance Vision bookDepth)")
        for row_no, row in enumerate(reader, 1):
            where = f"{path} row {row_no}"
            if len(row) != 4:
                raise DataError(f"{where}: expected 4 fields, got {len(row)}: {row!r}")
            stamp = row[0].strip()
            ts = parsed.get(stamp)
            if ts is None:
                try:
                    moment = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
                except ValueError:
                    raise DataError(f"{where}: field timestamp: {stamp!r} is not YYYY-MM-DD HH:MM:SS") from None
                ts = parsed[stamp] = int(moment.timestamp()) * _NS
            pct = _number(where, "percentage", row[1])
            depth = _number(where, "depth", row[2])
            notional = _number(where, "notional", row[3])
            if pct == 0 or abs(pct) > 100:
                raise DataError(f"{where}: field percentage: {row[1]!r} is not a non-zero band within ±100")
            for field, value, text in (("depth", depth, row[2]), ("notional", notional, row[3])):
                if value < 0:
                    raise DataError(f"{where}: field {field}: {text!r} is negative")
            if ts < snap.ts:
                raise DataError(f"{where}: field timestamp: {stamp} goes back (rows must be in time order)")
            if ts != snap.ts:
                snap.check()
                snap.ts, snap.bands = ts, {}
            if pct in snap.bands:
                raise DataError(f"{where}: field percentage: band {row[1]} repeated in the snapshot of {stamp}")
            snap.bands[pct] = (depth, notional, where)
            yield ts, pct, depth, notional


def import_book_depth(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    catalog: Catalog | str | os.PathLike[str],
    symbol: str,
    *,
    venue: str = "binance",
    market: str = "usdm",
    suffix: str = "",
    mode: str = "create",
) -> Manifest:
    """Import Vision ``bookDepth`` CSVs or zips, in time order, as ``<venue>/<market>/<symbol>/book_depth<suffix>``.

    Parameters
    ----------
    paths
        One file or several (days in order); each a CSV or the Vision zip holding it.
    catalog
        Catalog (or its root directory).
    symbol, venue, market
        Where the dataset goes.
    suffix, mode
        Appended to the dataset name; :class:`~tradebus.data.catalog.DatasetWriter` mode.

    Returns
    -------
    Manifest
        The committed dataset's manifest.

    Raises
    ------
    DataError
        A file breaking a rule of the module docstring; the catalog is left as it was.
    """
    files = [Path(paths)] if isinstance(paths, str | os.PathLike) else [Path(p) for p in paths]
    if not files:
        raise DataError("no bookDepth files to import")
    cat = catalog if isinstance(catalog, Catalog) else Catalog(catalog)
    writer: DatasetWriter = cat.writer(venue, market, symbol, f"book_depth{suffix}", "day", kind="book_depth", mode=mode)  # type: ignore[arg-type]
    state: dict[str, object] = {"snap": _Snapshot()}
    columns: list[list[float]] = [[], [], [], []]
    check = QualityCheck("book_depth")

    def flush() -> None:
        if columns[0]:
            ts = pa.array(columns[0], pa.int64())
            table = pa.table({"ts_event": ts, "ts_init": ts, "percentage": pa.array(columns[1], pa.float64()),
                              "depth": pa.array(columns[2], pa.float64()),
                              "notional": pa.array(columns[3], pa.float64())})
            writer.write(table)
            check.feed(table)
            for column in columns:
                column.clear()

    try:
        for path in files:
            require_file(path)
            for row in _rows(path, state):
                for column, value in zip(columns, row, strict=True):
                    column.append(value)
                if len(columns[0]) >= _FLUSH_ROWS:
                    flush()
        state["snap"].check()  # type: ignore[attr-defined]
        flush()
        if writer.rows == 0:
            raise DataError(f"{files[0]}: no bookDepth rows")
        return writer.commit(notes=[f"Binance Vision bookDepth: {files[0].name} .. {files[-1].name}"],
                             quality=check.report().summary())
    except BaseException:
        writer.abort()
        raise
