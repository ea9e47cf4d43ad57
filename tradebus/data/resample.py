"""Bars into the catalog from a trades dataset (any bar kind) or from finer bars (time bars), streamed.

:func:`bars_from_trades` reads a trades dataset record batch by record batch and feeds
each batch to one :class:`~tradebus.features.bars.BarBuilder` (the same builder a run
uses live, so catalog bars equal live-built bars bit for bit). :func:`resample_bars`
aggregates bars of a dataset into bars of a longer interval that is a whole multiple of
it: the coarse bar ``(k * I, (k + 1) * I]`` (close stamps) takes the first open, the
highest high, the lowest low, the last close and the summed volume of the fine bars
whose close falls in it.

Both write only complete bars: the bar still forming at the end of the input (a time
bar whose bucket has no later trade, a coarse bar whose last fine bar is missing from
the end of the data, a threshold bar not yet full) is left out, as a run would not have
seen it. A coarse bar with fine bars missing *inside* it (a gap), or at its start when the
input starts inside it, is written from the fine bars there are. Buckets are aligned to the
Unix epoch (a week starts on Thursday 00:00 UTC). Memory is bounded by a record batch, whatever the dataset's size; nothing
is written unless the whole input was read (the catalog writer's commit).

An existing target is refused unless ``overwrite``: then it is rebuilt from the whole source
(after an append to the source, say) and swapped in on commit, the previous bars kept until then.
The source itself is never a target.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import numpy as np
import pyarrow as pa
from loguru import logger

from tradebus.data.catalog import BAR_SCHEMA, Catalog, DatasetRef, Manifest, open_parquet
from tradebus.data.ingest import bars_dataset, format_interval
from tradebus.data.quality import QualityCheck
from tradebus.engine.clock import iso_ns
from tradebus.errors import ConfigError, DataError
from tradebus.features.bars import BarBuilder

__all__ = ["bars_dataset_name", "bars_from_trades", "resample_bars"]

_BATCH_ROWS = 1 << 18


def bars_dataset_name(mode: str, *, interval_ns: int | None = None, threshold: float | None = None) -> str:
    """The default dataset name: ``bars_1m`` for time bars, ``bars_<mode>_<threshold>`` otherwise."""
    if mode == "time":
        return f"bars_{format_interval(int(interval_ns or 0))}"
    return f"bars_{mode}_{np.format_float_positional(float(threshold or 0.0), trim='-')}".replace(".", "p")


@contextmanager
def _source(cat: Catalog, ref: DatasetRef, kind: str) -> Iterator[tuple[Manifest, Iterator[pa.RecordBatch]]]:
    """The manifest of the ``kind`` dataset ``ref`` and its rows, batch by batch, of one version while the block runs.

    Its files are opened at once (:meth:`Catalog.pinned`): an ``--overwrite`` of the source in another process while
    the bars are built leaves them this version's.
    """
    with cat.pinned(ref.venue, ref.market, ref.symbol, ref.dataset) as (manifest, files):
        if manifest.kind != kind:
            raise DataError(f"{ref.relpath().as_posix()}: is a {manifest.kind} dataset, not {kind}")
        yield manifest, (batch for path, _, handle in files
                         for batch in open_parquet(path, kind, handle).iter_batches(batch_size=_BATCH_ROWS))


def _bar_table(ts: np.ndarray, o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray,
               v: np.ndarray) -> pa.Table:
    stamps = pa.array(ts, pa.int64())
    return pa.Table.from_arrays([stamps, stamps, pa.array(o), pa.array(h), pa.array(lo), pa.array(c), pa.array(v)],
                                schema=BAR_SCHEMA)


def bars_from_trades(
    catalog: Catalog | str | os.PathLike[str],
    source: DatasetRef,
    mode: str,
    *,
    interval_ns: int | None = None,
    threshold: float | None = None,
    dataset: str | None = None,
    contract_size: float | None = None,
    write_mode: Literal["create", "overwrite"] = "create",
    **builder: float,
) -> Manifest:
    """Build bars from the trades dataset ``source`` into ``<venue>/<market>/<symbol>/<dataset>``.

    Parameters
    ----------
    mode, interval_ns, threshold, builder
        Passed to :class:`~tradebus.features.bars.BarBuilder` (``span_bars``,
        ``span_trades``, ``floor`` for imbalance bars).
    contract_size
        Base units per unit of the trades' ``size``: the instrument's contract size when its
        trades count contracts (OKX BTC-USDT-SWAP 0.01), so the bars' volume is in base units
        as every bars dataset's, and dollar bars sum quote value. ``None``: the trades
        manifest's ``contract_size`` (recorded by the importers that know the instrument), else 1
        (base units) in a ``spot`` market; any other market (``swap``, ``usdm``, ``linear`` ...) may
        count contracts, so a dataset there that records none needs it given.
    dataset
        Target dataset name (default :func:`bars_dataset_name`).
    write_mode
        ``"overwrite"`` replaces an existing target (``"create"`` refuses it).

    Raises
    ------
    DataError
        If ``source`` is not a trades dataset, the target exists (``create``), no bar completes, or
        ``contract_size`` differs from the one the trades manifest records.
    ConfigError
        If neither ``contract_size`` nor the trades manifest says the contract size of a market
        other than ``spot``, or the target is the source.
    """
    cat = catalog if isinstance(catalog, Catalog) else Catalog(catalog)
    with _source(cat, source, "trades") as (manifest, batches):
        return _bars_from_trades(cat, source, manifest, batches, mode, interval_ns, threshold, dataset, contract_size,
                                 write_mode, builder)


def _bars_from_trades(
    cat: Catalog, source: DatasetRef, manifest: Manifest, batches: Iterator[pa.RecordBatch], mode: str,
    interval_ns: int | None, threshold: float | None, dataset: str | None, contract_size: float | None,
    write_mode: Literal["create", "overwrite"], builder: dict[str, float],
) -> Manifest:
    """:func:`bars_from_trades` of the trades ``batches`` of ``source`` (``manifest``: theirs)."""
    recorded = manifest.contract_size
    if contract_size is None and recorded is None and source.market != "spot":
        raise ConfigError(f"{source.relpath().as_posix()}: the dataset records no contract size, and the trades of a "
                          f"{source.market!r} market may count contracts: give --contract-size, the instrument's base "
                          "units per contract (1 if its trades are in base units)")
    if contract_size is None:
        contract_size = 1.0 if recorded is None else recorded
    elif recorded is not None and contract_size != recorded:
        raise DataError(f"{source.relpath().as_posix()}: contract size {contract_size:g} given, but the dataset "
                        f"records its trades' sizes with contract size {recorded:g}")
    bars = BarBuilder(mode, interval_ns=interval_ns, threshold=threshold, contract_size=contract_size,
                      **builder)  # type: ignore[arg-type]
    name = dataset or (bars_dataset(cat, source.venue, source.market, source.symbol, interval_ns or 0) if mode == "time"
                       else bars_dataset_name(mode, threshold=threshold))
    _refuse_source_as_target(source, name)
    regular = interval_ns if mode == "time" else None
    check = QualityCheck("bars", regular, shared_times=mode != "time")
    trades = 0
    closes: list[np.ndarray] = []
    with cat.writer(source.venue, source.market, source.symbol, name, "month" if regular else "day", kind="bars",
                    interval_ns=regular, mode=write_mode, distinct_times=mode == "time") as writer:
        for batch in batches:
            trades += batch.num_rows
            ts, values = bars.run(batch.column("ts_event").to_numpy(), batch.column("price").to_numpy(),
                                  batch.column("size").to_numpy(), batch.column("aggressor").to_numpy())
            if ts.size:
                table = _bar_table(ts, values[:, 0], values[:, 1], values[:, 2], values[:, 3], values[:, 4])
                writer.write(table)
                check.feed(table)
                if manifest.missed_trades:
                    closes.append(ts)
        if writer.rows == 0:
            raise DataError(f"{source.relpath().as_posix()}: {trades} trades complete no {mode} bar")
        notes = [f"{mode} bars built from {source.relpath().as_posix()} ({trades} trades); the unfinished last "
                 "bar is not written"]
        if manifest.missed_trades:
            notes.extend(_bars_over_missed_trades(source, manifest.missed_trades, np.concatenate(closes), mode, regular))
        if contract_size != 1.0:
            notes.append(f"trade sizes x contract_size {contract_size:g}: volume in base units")
        return writer.commit(notes, quality=check.report().summary())


def _bars_over_missed_trades(source: DatasetRef, missed: list[tuple[int, int, int, int, int]], closes: np.ndarray,
                             mode: str, interval_ns: int | None) -> list[str]:
    """A note, also logged as a WARNING, per gap in the trade ids of ``source`` (its manifest's ``missed_trades``)
    naming the bars built over it (``closes``: their close times; ``interval_ns``: of time bars, else a bar spans
    from the close before it): they lack the trades the gap holds, printed after its ``start_ns`` and before its
    ``end_ns``, and were built as if complete. A bar of another ``mode`` than time closes on what it counted since
    the bar before (trades, size, notional, imbalance), so the gap may shift the later bars too (until one closes
    where the complete trades' would, which cannot be told without them): the note names them."""
    opens = closes - interval_ns if interval_ns else np.concatenate(([np.iinfo(np.int64).min], closes[:-1]))
    notes = []
    for start, end, first, last, lost in missed:
        over = np.flatnonzero((closes > start) & (opens < end))
        if not over.size:
            continue  # before the first bar's trades, or in the unfinished last bar, which is not written
        closing = (f"the bar closing {iso_ns(closes[over[0]])} lacks" if over.size == 1 else
                   f"{over.size} bars closing {iso_ns(closes[over[0]])} to {iso_ns(closes[over[-1]])} lack")
        note = (f"{closing} {lost} trades of {source.relpath().as_posix()} (ids {first}..{last}, printed between "
                f"{iso_ns(start)} and {iso_ns(end)}, its missed_trades): built without them")
        later = closes[over[-1] + 1:]
        if interval_ns is None and later.size:
            note += (f"; the {later.size} {mode} bars after it, closing {iso_ns(later[0])} to {iso_ns(later[-1])}, "
                     "are counted on from it and may close elsewhere than the complete trades' would")
        logger.warning("{}", note)
        notes.append(note)
    return notes


def resample_bars(
    catalog: Catalog | str | os.PathLike[str],
    source: DatasetRef,
    interval_ns: int,
    *,
    dataset: str | None = None,
    write_mode: Literal["create", "overwrite"] = "create",
) -> Manifest:
    """Aggregate the bars of ``source`` into bars of ``interval_ns`` (a whole multiple of its interval).

    ``write_mode="overwrite"`` replaces an existing target (``"create"`` refuses it).

    Raises
    ------
    DataError
        If ``source`` is not a bars dataset with an interval that divides ``interval_ns``,
        the target exists (``create``), or no coarse bar is complete.
    ConfigError
        If the target is the source.
    """
    cat = catalog if isinstance(catalog, Catalog) else Catalog(catalog)
    with _source(cat, source, "bars") as (manifest, batches):
        return _resample_bars(cat, source, manifest, batches, interval_ns, dataset, write_mode)


def _resample_bars(
    cat: Catalog, source: DatasetRef, manifest: Manifest, batches: Iterator[pa.RecordBatch], interval_ns: int,
    dataset: str | None, write_mode: Literal["create", "overwrite"],
) -> Manifest:
    """:func:`resample_bars` of the bar ``batches`` of ``source`` (``manifest``: theirs)."""
    fine = manifest.interval_ns
    if not fine:
        raise DataError(f"{source.relpath().as_posix()}: resampling needs a bars dataset with an interval")
    if interval_ns <= fine:
        raise DataError(f"{source.relpath().as_posix()}: {format_interval(interval_ns)} is not longer than its "
                        f"{format_interval(fine)} bars: resampling builds longer bars, of a whole multiple of "
                        f"{format_interval(fine)}")
    if interval_ns % fine:
        raise DataError(f"{source.relpath().as_posix()}: {format_interval(interval_ns)} is not a whole multiple of its "
                        f"{format_interval(fine)} bars")
    name = dataset or bars_dataset(cat, source.venue, source.market, source.symbol, interval_ns)
    _refuse_source_as_target(source, name)
    check = QualityCheck("bars", interval_ns)
    carry: pa.Table | None = None
    with cat.writer(source.venue, source.market, source.symbol, name, "year" if interval_ns >= 3_600_000_000_000
                    else "month", kind="bars", interval_ns=interval_ns, mode=write_mode) as writer:
        for batch in batches:
            table = pa.Table.from_batches([batch])
            if carry is not None:
                table = pa.concat_tables([carry, table])
            ts = table.column("ts_event").to_numpy()
            bucket = (ts - 1) // interval_ns  # close stamps: (k * I, (k + 1) * I] is bucket k
            # the last bucket may go on in the next batch: carried over, written when a later bucket starts
            last = int(np.searchsorted(bucket, bucket[-1], side="left"))
            carry = table.slice(last)
            if last:
                _write_buckets(writer, check, table.slice(0, last), bucket[:last], interval_ns)
        if carry is not None and carry.num_rows:
            ts = carry.column("ts_event").to_numpy()
            if int(ts[-1]) % interval_ns == 0:  # its last fine bar closes the coarse bar: complete
                _write_buckets(writer, check, carry, (ts - 1) // interval_ns, interval_ns)
        if writer.rows == 0:
            raise DataError(f"{source.relpath().as_posix()}: no complete {format_interval(interval_ns)} bar")
        return writer.commit([f"resampled from {source.relpath().as_posix()} ({format_interval(fine)} -> "
                              f"{format_interval(interval_ns)}); an incomplete last bar is not written"],
                             quality=check.report().summary())


def _refuse_source_as_target(source: DatasetRef, name: str) -> None:
    if name == source.dataset:
        raise ConfigError(f"{source.relpath().as_posix()}: the target dataset {name!r} is the source; give the bars "
                          "another --name")


def _write_buckets(writer: object, check: QualityCheck, table: pa.Table, bucket: np.ndarray, interval_ns: int) -> None:
    starts = np.flatnonzero(np.concatenate(([True], bucket[1:] != bucket[:-1])))
    ends = np.concatenate((starts[1:], [bucket.size])) - 1
    col = {c: table.column(c).to_numpy() for c in ("open", "high", "low", "close", "volume")}
    out = _bar_table((bucket[starts] + 1) * interval_ns, col["open"][starts], np.maximum.reduceat(col["high"], starts),
                     np.minimum.reduceat(col["low"], starts), col["close"][ends], np.add.reduceat(col["volume"], starts))
    writer.write(out)  # type: ignore[attr-defined]
    check.feed(out)
