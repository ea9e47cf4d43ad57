"""Input files read in bounded chunks: CSV[.gz], Parquet and Coinbase candles JSON[.gz].

Every reader yields :class:`Frame` objects, one chunk of raw columns each, so an import
holds at most one chunk of the input in memory whatever the file's size:

* CSV through ``pyarrow.csv.open_csv`` (a streaming reader, ``block_size`` bytes per
  chunk), numbers and booleans typed by pyarrow, a column that does not parse read
  as text so that the converters can name the row and field of a bad value. A first
  line none of whose fields is a number is a header; without one the columns are
  named ``f0``, ``f1``, ... Only commas separate fields: a first line with none but a ``;``,
  tab or ``|`` is refused naming it. A gzip file is recognised by its magic bytes, whatever
  its name; a zip archive (``.zip``, or renamed ``.csv``) is refused, naming the files inside. Before the
  first chunk is read, :attr:`Source.preview` (the column names and the first data line as
  text) lets an importer find its columns and
  :meth:`Source.narrow` the reader to them: columns it does not use (a kline's
  close time, quote volume, taker volumes; an aggTrade's first and last trade ids)
  are then tokenised but never converted.
* Parquet through ``ParquetFile.iter_batches`` (native column types kept).
* Coinbase candles JSON (``{"candles": [...]}``) in one chunk: the API returns at most
  a few hundred candles per document.

Column names are keyed by :func:`column_key`: lower-cased, runs of blanks as one ``_``
(python-binance's ``Open time`` is ``open_time``). Row numbers are 1-based data rows (the header is not
counted; for JSON the candle's position).
"""

from __future__ import annotations

import gzip
import re
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from tradebus.errors import DataError

__all__ = ["DEFAULT_BLOCK_BYTES", "Frame", "Source", "column_key", "is_number", "open_source", "require_file", "strip_gz"]

DEFAULT_BLOCK_BYTES = 4 << 20
"""CSV bytes per chunk (about 40k Binance kline rows or 65k aggTrades).

Chunks are written on the catalog's thread while the next ones parse, so smaller chunks keep
both busy: importing the 130 MB of aggTrades of ``bench/data.py`` took 1.2-1.3 s in 16 MB
chunks, 0.86-1.03 s in 4 MB ones (measured on 2 cores)."""
_PARQUET_BATCH_ROWS = 262_144
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header; an empty archive's end record
_BLANKS = re.compile(r"\s+")
_OTHER_SEPARATORS = (";", "\t", "|")  # a spreadsheet's other exports: one column to a comma-only reader


def column_key(name: str) -> str:
    """The key of an input column: lower-cased, outer blanks dropped, inner runs of blanks one ``_``.

    So ``"Open time"`` (the kline field names of Binance's API docs, which python-binance
    users write as a header) is ``"open_time"``, one of the time column's accepted names.
    """
    return _BLANKS.sub("_", name.strip().lower())


class Frame:
    """Raw columns of one chunk of an input file.

    Parameters
    ----------
    name
        File name used in error messages.
    columns
        Column key (:func:`column_key`) -> Arrow array.
    offset
        Rows of the file before this chunk (row ``i`` is file row ``offset + i + 1``).
    rows
        Explicit 1-based file row of every element (after a reordering or a filter);
        overrides ``offset``.
    """

    def __init__(self, name: str, columns: dict[str, pa.Array], offset: int = 0, rows: np.ndarray | None = None) -> None:
        self.name = name
        self.columns = columns
        self.offset = offset
        self.rows = rows

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def row(self, index: int) -> int:
        """The 1-based file row of element ``index``."""
        return int(self.rows[index]) if self.rows is not None else self.offset + index + 1

    def row_numbers(self) -> np.ndarray:
        """The 1-based file row of every element."""
        if self.rows is not None:
            return self.rows
        return np.arange(self.offset + 1, self.offset + len(self) + 1, dtype=np.int64)

    def error(self, index: int, message: str) -> DataError:
        """A :class:`DataError` naming the file and the row of element ``index``."""
        return DataError(f"{self.name} row {self.row(index)}: {message}")

    def concat(self, other: Frame) -> Frame:
        """This chunk followed by ``other`` (same columns)."""
        columns = {}
        for key, mine in self.columns.items():
            a, b = _chunk(mine), _chunk(other.columns[key])
            if a.type != b.type:  # a chunk read as text after a typed one
                a, b = a.cast(pa.string()), b.cast(pa.string())
            columns[key] = pa.concat_arrays([a, b])
        return Frame(self.name, columns, rows=np.concatenate((self.row_numbers(), other.row_numbers())))

    def take(self, indices: np.ndarray) -> Frame:
        """The elements at ``indices`` (their file rows kept)."""
        picked = pa.array(indices, pa.int64())
        return Frame(self.name, {k: v.take(picked) for k, v in self.columns.items()}, rows=self.row_numbers()[indices])


def _chunk(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


@dataclass
class Source:
    """An opened input file: its kind of layout and its chunks.

    Attributes
    ----------
    name
        File name.
    suffix
        ``".csv"``, ``".parquet"`` or ``".json"`` (``.gz`` stripped, ``.txt``/``.pq`` folded).
    has_header
        Whether the columns have names from the file.
    frames
        The chunks, in file order.
    """

    name: str
    suffix: str
    has_header: bool
    frames: Iterator[Frame]
    preview: Frame | None = None
    _selected: list[str] | None = None

    def narrow(self, columns: Iterable[str]) -> None:
        """Convert only ``columns`` (names of :attr:`preview`); call it before the first chunk is read.

        Does nothing for a source without a preview (Parquet, JSON).

        Raises
        ------
        DataError
            If a column is not in the file, or the columns were already chosen.
        """
        if self.preview is None or self._selected is None:
            return
        if self._selected:
            raise DataError(f"{self.name}: the columns to read are already chosen")
        wanted = set(columns)
        unknown = wanted - set(self.preview.columns)
        if unknown:
            raise DataError(f"{self.name}: no column {sorted(unknown)}; got {list(self.preview.columns)}")
        self._selected.extend(n for n in self.preview.columns if n in wanted)


def is_number(text: str) -> bool:
    """Whether ``text`` parses as a float."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def strip_gz(name: str) -> str:
    """``name`` without a trailing ``.gz``."""
    return name[:-3] if name.lower().endswith(".gz") else name


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(2) == _GZIP_MAGIC


def _zip_error(path: Path, what: str) -> DataError:
    """The error for a zip archive given to import: ``what`` it is, the files inside and how to import them."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.namelist() if not m.endswith("/")]
        more = f" and {len(members) - 5} more" if len(members) > 5 else ""
        inside = f"holding {', '.join(members[:5]) or 'no file'}{more}"
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        inside = "whose members cannot be read"
    return DataError(f"{path}: {what}, {inside}; import reads no zip archive: unzip it (unzip {path.name}) and "
                     f"import the CSV inside (Binance's public archives are fetched and imported at once by "
                     f"'tradebus data download binance')")


def require_file(path: Path) -> None:
    """Refuse an input ``path`` that is not a file.

    Raises
    ------
    DataError
        Naming ``path``: not found, or a folder (whose files are to be named instead).
    """
    if path.is_dir():
        raise DataError(f"{path}: a folder, not a file: name the file(s) inside it to import")
    if not path.is_file():
        raise DataError(f"{path}: file not found")


def open_source(path: Path, *, block_bytes: int = DEFAULT_BLOCK_BYTES) -> Source:
    """Open an input file for chunked reading.

    Raises
    ------
    DataError
        If the file is missing, of an unsupported type, empty or (while iterating)
        malformed, naming the file and, where known, the row.
    """
    require_file(path)
    suffix = Path(strip_gz(path.name.lower())).suffix
    if suffix == ".zip":
        raise _zip_error(path, "a zip archive")
    if suffix in (".csv", ".txt"):
        return _open_csv(path, block_bytes)
    if suffix in (".parquet", ".pq"):
        try:
            # Measured on 6M trades: pre-buffering and threaded decoding made the peak RSS
            # grow with the file (157 -> 223 MB); streamed reads of 1 MB stay flat (159 MB).
            pf = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"{path}: cannot read Parquet: {exc}") from None
        return Source(str(path), ".parquet", True, _parquet_frames(str(path), pf))
    if suffix == ".json":
        return Source(str(path), ".json", True, iter([_read_coinbase_json(path)]))
    raise DataError(f"{path}: unsupported file type {suffix!r}; expected .csv[.gz], .parquet or .json[.gz]")


def _parquet_frames(name: str, pf: pq.ParquetFile) -> Iterator[Frame]:
    offset = 0
    try:
        for batch in pf.iter_batches(batch_size=_PARQUET_BATCH_ROWS, use_threads=False):
            yield Frame(name, {column_key(n): batch.column(i) for i, n in enumerate(batch.schema.names)}, offset)
            offset += batch.num_rows
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{name}: cannot read Parquet after row {offset}: {exc}") from None


def _first_line(path: Path, gzipped: bool) -> str:
    try:
        with (gzip.open(path, "rb") if gzipped else path.open("rb")) as fh:
            return fh.readline().decode("utf-8", "replace").strip().lstrip("\ufeff")
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: corrupt gzip file: {exc}") from None


def _open_csv(path: Path, block_bytes: int) -> Source:
    with path.open("rb") as fh:
        if fh.read(4) in _ZIP_MAGICS:
            raise _zip_error(path, "not CSV text but what looks like a zip archive (it starts with 'PK')")
    gzipped = _is_gzip(path)
    first = _first_line(path, gzipped)
    if not first:
        raise DataError(f"{path}: empty file")
    fields = [f.strip().strip('"') for f in first.split(",")]
    if len(fields) == 1:
        seps = {sep: first.count(sep) for sep in _OTHER_SEPARATORS if sep in first}
        if seps:
            sep, count = max(seps.items(), key=lambda item: item[1])
            raise DataError(f"{path}: line 1 has no comma but {count} {sep!r}: fields must be separated by commas "
                            "(save the file as comma-separated CSV)")
    has_header = not any(is_number(f) for f in fields)
    names = [column_key(f) for f in fields] if has_header else [f"f{i}" for i in range(len(fields))]
    if has_header and len(set(names)) != len(names):
        raise DataError(f"{path}: duplicate column names in header {fields}")
    # Headerless: the first line is the first data row, which a layout may look at; with a header only the names.
    preview = Frame(str(path), {n: pa.array([] if has_header else [v], pa.string()) for n, v in zip(names, fields, strict=True)})
    selected: list[str] = []
    frames = _csv_frames(path, gzipped, names, has_header, block_bytes, selected)
    return Source(str(path), ".csv", has_header, frames, preview, selected)


_TYPED = (pa.int64(), pa.float64(), pa.bool_(), pa.string(), pa.null())
# Arrow's message for a row of the wrong field count; the single-threaded parser says the file line.
_RAGGED_ROW = re.compile(r"(?:Row #(?P<line>\d+): )?Expected (?P<expected>\d+) columns, got (?P<actual>\d+): (?P<text>.*)", re.S)


def _csv_frames(
    path: Path, gzipped: bool, names: list[str], has_header: bool, block_bytes: int, selected: list[str]
) -> Iterator[Frame]:
    """Yield the CSV's chunks, columns typed by pyarrow's inference where it is safe.

    ``selected`` (filled by :meth:`Source.narrow` before the first chunk; empty: all)
    names the columns converted; the others are only checked for their count per row.

    Numbers and booleans are parsed by pyarrow (about 3x faster than text then a cast);
    a column inferred as anything else (a timestamp, a date) is read as text. When a
    later chunk does not parse as the type inferred from the first (a stray word in a
    number column), the reader reopens the file at that chunk with every column as
    text, so that the converters can name the row and the field. Chunks are parsed on
    pyarrow's threads; a ragged row (which the threaded parser cannot number) makes the
    reader reopen the file single-threaded at that chunk to name it.
    """
    threads = True  # parsed on pyarrow's threads, which do not number rows: a ragged row rereads single-threaded
    as_text: set[str] = set()
    typed, offset = True, 0
    while True:
        skip = offset  # rows already yielded, passed over when the file is read again as text
        stream: pa.NativeFile = pa.OSFile(str(path), "rb")
        if gzipped:
            stream = pa.CompressedInputStream(stream, "gzip")
        text_columns = set(names) if not typed else as_text
        restart = False
        reader: pacsv.CSVStreamingReader | None = None
        try:
            # No invalid_row_handler: arrow releases the reader on its own threads, and a Python handler
            # then needs the GIL there, which aborts the process ("terminate called without an active
            # exception") when that happens while the interpreter exits.
            reader = pacsv.open_csv(
                stream,
                read_options=pacsv.ReadOptions(
                    column_names=names, skip_rows=1 if has_header else 0, use_threads=threads,
                    block_size=block_bytes,
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types={n: pa.string() for n in text_columns},
                    include_columns=selected,
                    null_values=[],  # "nan", "" and "NULL" reach the converters, which name them
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
            if typed and offset == 0:
                odd = {f.name for f in reader.schema if f.type not in _TYPED}
                if odd - as_text:
                    as_text |= odd
                    restart = True
            if not restart:
                for batch in reader:
                    if skip >= batch.num_rows:
                        skip -= batch.num_rows
                        continue
                    if skip:
                        batch, skip = batch.slice(skip), 0
                    yield Frame(str(path), {n: batch.column(n) for n in batch.schema.names}, offset)
                    offset += batch.num_rows
                return
        except (pa.ArrowInvalid, OSError) as exc:
            ragged = _RAGGED_ROW.search(str(exc))
            if ragged is not None:
                if ragged["line"] is None and threads:
                    threads = False
                    continue
                line = int(ragged["line"]) if ragged["line"] is not None else None
                where = f"row {line - 1 if has_header else line}" if line is not None else f"after row {offset}"
                raise DataError(
                    f"{path} {where}: expected {ragged['expected']} fields, got {ragged['actual']}: {ragged['text']!r}"
                ) from None
            if not (typed and "conversion error" in str(exc)):
                raise DataError(f"{path}: cannot parse CSV after row {offset}: {exc}") from None
            typed = False
        finally:
            if reader is not None:
                reader.close()
            stream.close()


def _read_coinbase_json(path: Path) -> Frame:
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"{path}: corrupt gzip file: {exc}") from None
    try:
        doc = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise DataError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("candles"), list):
        raise DataError(f'{path}: expected a Coinbase candles object {{"candles": [...]}}')
    keys = ("start", "open", "high", "low", "close", "volume")
    values: dict[str, list[str]] = {k: [] for k in keys}
    for i, candle in enumerate(doc["candles"]):
        if not isinstance(candle, dict):
            raise DataError(f"{path} row {i + 1}: candle is not an object")
        for key in keys:
            value = candle.get(key)
            if value is None:
                raise DataError(f"{path} row {i + 1}: {key} is missing")
            values[key].append(str(value))
    return Frame(str(path), {k: pa.array(v, pa.string()) for k, v in values.items()})
