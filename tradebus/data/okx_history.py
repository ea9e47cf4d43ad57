"""Import OKX historical order-book archives (``*-L2orderbook-400lv-YYYY-MM-DD.tar.gz``) into the catalog.

OKX publishes one archive per instrument and day (``okx.com/data-download``): a gzip tar
holding one ``.data`` file, one JSON object per line, the ``books`` channel as it was sent::

    {"instId": "BTC-USDT", "action": "snapshot", "ts": "1652459225507",
     "asks": [["30238.8", "2", "1"], ...], "bids": [["30238.7", "0.5", "3"], ...]}

Levels are ``[price, size, order count]`` (the WS form's extra deprecated field is
accepted too); an ``update`` level of size ``0`` deletes the price. Sizes are in the
instrument's own unit (base currency for SPOT, contracts for SWAP/FUTURES/OPTION), as
every OKX book. ``ts`` is in milliseconds; the archive has no receive time, so
``ts_init = ts_event``. A ``.zip`` or a bare ``.data``/``.jsonl`` (``.gz``) file of the same
lines is read too.

Rules checked (a bad line is refused naming file, line and field; nothing is written):
the instrument is the one asked for; the first message is a ``snapshot``; ``action`` is
``snapshot`` or ``update``; ``ts`` is an integer millisecond time (2015-2100) that never goes
back; every price is finite and positive, every size finite and non-negative (positive in
a snapshot); a snapshot's bids fall and asks rise strictly and it is not crossed; when the
lines carry ``seqId``/``prevSeqId`` (newer files), an update's ``prevSeqId`` is the previous
``seqId`` (a gap is refused) and the stored sequence is ``seqId``, else the message number;
an update carries ``seqId`` if and only if the snapshot it follows does.
"""

from __future__ import annotations

import gzip
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import msgspec

from tradebus.data.catalog import BOOK_SNAPSHOT, Catalog, Manifest
from tradebus.data.market_ingest import CatalogSink
from tradebus.errors import DataError

__all__ = ["import_okx_book"]

_MS = 1_000_000
_MIN_MS, _MAX_MS = 1_420_070_400_000, 4_102_444_800_000  # 2015-01-01 .. 2100-01-01


class _Line(msgspec.Struct):
    instId: str  # noqa: N815 - OKX's field names
    action: str
    ts: str | int
    asks: list[list[str]] = []
    bids: list[list[str]] = []
    seqId: int = -1  # noqa: N815
    prevSeqId: int = -1  # noqa: N815


@contextmanager
def _members(path: Path) -> Iterator[Iterator[tuple[str, IO[bytes]]]]:
    """The members of an archive (tar.gz, zip) or the file itself (plain or gzip), as binary files."""
    name = path.name.lower()
    try:
        if name.endswith((".tar.gz", ".tgz", ".tar")):
            with tarfile.open(path, "r|*") as tf:
                yield ((m.name, tf.extractfile(m)) for m in tf if m.isfile())  # type: ignore[misc]
        elif name.endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                yield ((m, zf.open(m)) for m in zf.namelist() if not m.endswith("/"))
        else:
            with path.open("rb") as raw:
                gz = raw.read(2) == b"\x1f\x8b"
            with gzip.open(path, "rb") if gz else path.open("rb") as fh:
                yield iter([(path.name, fh)])
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as exc:
        raise DataError(f"{path}: not a readable OKX archive: {exc}") from None


def _levels(where: str, side: str, raw: list[list[str]], snapshot: bool) -> list[tuple[float, float]]:
    out = []
    for i, level in enumerate(raw):
        if len(level) < 2:
            raise DataError(f"{where}: field {side}[{i}]: expected [price, size, ...], got {level!r}")
        try:
            price, size = float(level[0]), float(level[1])
        except ValueError:
            raise DataError(f"{where}: field {side}[{i}]: not numbers: {level[:2]!r}") from None
        if not (price > 0 and price < float("inf")):
            raise DataError(f"{where}: field {side}[{i}].price: {level[0]!r} is not a positive price")
        if not (size >= 0 and size < float("inf")) or (snapshot and size == 0):
            need = "positive in a snapshot" if snapshot else "non-negative"
            raise DataError(f"{where}: field {side}[{i}].size: {level[1]!r} is not {need}")
        out.append((price, size))
    if snapshot:
        for i in range(1, len(out)):
            falls = out[i][0] < out[i - 1][0]
            if (side == "bids") != falls:
                order = "below" if side == "bids" else "above"
                raise DataError(f"{where}: field {side}[{i}].price: {raw[i][0]} is not strictly {order} {raw[i - 1][0]}")
    return out


def import_okx_book(
    path: str | Path,
    catalog: Catalog | str | Path,
    symbol: str,
    *,
    market: str = "spot",
    suffix: str = "",
    mode: str = "create",
) -> Manifest:
    """Import an OKX L2 order-book archive as the ``book`` dataset ``okx/<market>/<symbol>/book<suffix>``.

    Parameters
    ----------
    path
        The archive (``.tar.gz``, ``.zip``) or its ``.data`` file (plain or gzip).
    catalog
        Catalog (or its root directory).
    symbol
        The OKX instrument id (``BTC-USDT``, ``BTC-USDT-SWAP``); lines of another are refused.
    market
        ``spot``, ``swap``, ``futures`` or ``option`` (the dataset's market directory).
    suffix, mode
        As :class:`~tradebus.data.market_ingest.CatalogSink`.

    Returns
    -------
    Manifest
        The committed dataset's manifest.

    Raises
    ------
    DataError
        An unreadable archive or a line breaking a rule of the module docstring, naming
        the file, line and field; nothing is left in the catalog.
    """
    path = Path(path)
    cat = catalog if isinstance(catalog, Catalog) else Catalog(catalog)
    decoder = msgspec.json.Decoder(_Line)
    sink = CatalogSink(cat, lambda _iid: ("okx", market, symbol), suffix, mode,
                       notes=(f"imported from OKX order-book archive {path.name}",
                              "sizes in the instrument's unit (contracts for SWAP/FUTURES/OPTION)"))
    last_ts, last_seq, messages = -1, -1, 0
    sequenced = False  # the last snapshot carried seqId: so must every update after it
    try:
        with _members(path) as members:
            for member, fh in members:
                for lineno, text in enumerate(fh, 1):
                    if not text.strip():
                        continue
                    where = f"{path.name}:{member} line {lineno}"
                    try:
                        line = decoder.decode(text)
                    except msgspec.DecodeError as exc:
                        raise DataError(f"{where}: malformed line: {exc}") from None
                    if line.instId != symbol:
                        raise DataError(f"{where}: field instId: {line.instId!r} is not {symbol!r}")
                    if line.action not in ("snapshot", "update"):
                        raise DataError(f"{where}: field action: {line.action!r} is not snapshot or update")
                    snapshot = line.action == "snapshot"
                    if messages == 0 and not snapshot:
                        raise DataError(f"{where}: field action: an update before the first snapshot")
                    try:
                        ts = int(line.ts)
                    except ValueError:
                        raise DataError(f"{where}: field ts: {line.ts!r} is not an integer") from None
                    if not _MIN_MS <= ts < _MAX_MS:
                        raise DataError(f"{where}: field ts: {ts} is not a millisecond time in 2015-2100")
                    if ts < last_ts:
                        raise DataError(f"{where}: field ts: {ts} goes back from {last_ts}")
                    if snapshot:
                        sequenced = line.seqId >= 0
                    elif sequenced and line.seqId < 0:
                        raise DataError(f"{where}: field seqId: missing in an update after a snapshot that "
                                        f"carried one (a lost update could not be seen)")
                    elif not sequenced and line.seqId >= 0:
                        raise DataError(f"{where}: field seqId: {line.seqId} in an update after a snapshot "
                                        f"without one (the chain cannot be checked)")
                    elif sequenced and line.prevSeqId != last_seq:
                        raise DataError(f"{where}: field prevSeqId: {line.prevSeqId} is not the previous "
                                        f"seqId {last_seq} (messages missing)")
                    seq = line.seqId if sequenced else messages + 1
                    bids = _levels(where, "bids", line.bids, snapshot)
                    asks = _levels(where, "asks", line.asks, snapshot)
                    if snapshot and bids and asks and bids[0][0] >= asks[0][0]:
                        raise DataError(f"{where}: field bids[0].price: {line.bids[0][0]} is not below "
                                        f"asks[0].price {line.asks[0][0]} (crossed snapshot)")
                    sink.add_levels("", ts * _MS, ts * _MS, seq, bids, asks, BOOK_SNAPSHOT if snapshot else 0)
                    last_ts, last_seq, messages = ts, seq, messages + 1
        if messages == 0:
            raise DataError(f"{path}: no order-book lines")
        return sink.commit()[("", "book")]
    except BaseException:
        sink.abort()
        raise
