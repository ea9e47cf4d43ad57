"""``tradebus data``: import files or download archives into the catalog; list or verify its datasets.

Mounted by the main CLI as ``tradebus data``; usable alone as ``data_app``.
Exit codes as ``tradebus backtest``: 0 success, 2 invalid options (a DATASET the catalog
does not hold among them, as a missing file), 3 invalid data (a :class:`~tradebus.errors.DataError`:
bad rows, a corrupt file, a dataset that exists), 1 any other error. Errors are printed as one line on stderr, without a
traceback.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Annotated, Literal, get_args

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from tradebus.data.catalog import Catalog, DatasetExists, DatasetNotFound, DatasetRef, Manifest, check_name, quality_report
from tradebus.data.archive_fetch import Archive, FetchReport
from tradebus.data.ingest import ImportResult, TsUnit, format_interval, import_path, parse_interval, split_contract_size
from tradebus.errors import ConfigError, DataError, FeatureError, TradebusError
from tradebus.ops.logs import LOG_LEVELS, setup_logging

__all__ = ["DEFAULT_CATALOG", "EXIT_CODES", "data_app"]

#: Exit code per error class (most specific first), as ``tradebus backtest``.
EXIT_CODES: tuple[tuple[type[TradebusError], int], ...] = (
    (ConfigError, 2), (DatasetNotFound, 2), (DataError, 3), (TradebusError, 1)
)

DEFAULT_CATALOG = Path("data/catalog")

data_app = typer.Typer(name="data", help="Import market data into the Parquet catalog and inspect it.", no_args_is_help=True)

_PIPE_WIDTH = 200


def _console(*, stderr: bool = False) -> Console:
    """Return a console; when not writing to a terminal, wide enough not to truncate the table."""
    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(stderr=stderr, width=_PIPE_WIDTH)

CatalogOpt = Annotated[Path, typer.Option("--catalog", help="Catalog root directory.")]


@data_app.callback()
def _logging(
    log_level: Annotated[str, typer.Option("--log-level", help=f"Log level on stderr: {', '.join(LOG_LEVELS)}.")]
    = "WARNING",
) -> None:
    """Import market data into the Parquet catalog and inspect it."""
    if log_level.upper() not in LOG_LEVELS:
        raise _fail(ConfigError(f"--log-level {log_level!r} is not one of {', '.join(LOG_LEVELS)}"))
    setup_logging(log_level.upper())


def _iso(ns: int) -> str:
    return pd.Timestamp(ns, unit="ns", tz="UTC").strftime("%Y-%m-%d %H:%M:%S")


#: What a command that writes a dataset says to do when it exists (its own flags, not write modes).
_APPEND_OR_OVERWRITE = "add a later time range with --append, or replace it with --overwrite"
_OVERWRITE = "replace it with --overwrite"


def _fail(exc: TradebusError, exists: str = _OVERWRITE) -> typer.Exit:
    """Print ``exc`` and exit with its code; an existing dataset is named with the command's ``exists`` hint."""
    message = f"{exc.path}: dataset exists; {exists}" if isinstance(exc, DatasetExists) else str(exc)
    _console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code=next(code for cls, code in EXIT_CODES if isinstance(exc, cls)))


def _interval_option(value: str, flag: str) -> int:
    """``value`` of the interval option ``flag`` in ns; a bad one is a bad option (exit 2), not bad data."""
    try:
        return parse_interval(value, ints=False)
    except DataError as exc:
        raise _fail(ConfigError(f"{flag}: {exc}")) from None


def _name_options(**values: str | None) -> None:
    """Refuse an option that names a part of a dataset's path (``--venue``, ``--symbol``, ...) and is not a
    catalog name: a bad option (exit 2), before any file is read, not bad data."""
    for flag, value in values.items():
        if value is not None:
            try:
                check_name(flag, value)
            except DataError as exc:
                raise _fail(ConfigError(f"--{flag}: {exc}")) from None


def _suffix_option(suffix: str, dataset: str) -> None:
    """Refuse a ``--suffix`` that makes ``dataset`` + it no catalog name: a bad option (exit 2), before any file is
    read, not bad data found once the rows are."""
    try:
        check_name("dataset", dataset + suffix)
    except DataError as exc:
        raise _fail(ConfigError(f"--suffix {suffix!r}: {exc}")) from None


def _summary(manifest: Manifest) -> str:
    interval = f", {format_interval(manifest.interval_ns)} bars" if manifest.interval_ns else ""
    gaps = f", {manifest.gaps} gaps ({manifest.missing_bars} missing bars)" if manifest.gaps is not None else ""
    return (
        f"{manifest.venue}/{manifest.market}/{manifest.symbol}/{manifest.dataset}: {manifest.rows} rows{interval}, "
        f"{_iso(manifest.start_ns)} -> {_iso(manifest.end_ns)} UTC, {len(manifest.files)} files{gaps}"
    )


@data_app.command("import")
def import_cmd(
    path: Annotated[Path, typer.Argument(help="CSV[.gz], Parquet or Coinbase candles JSON[.gz] file.")],
    venue: Annotated[str, typer.Option(help="Venue directory name, e.g. binance.")],
    market: Annotated[str, typer.Option(help="Market, e.g. spot or perp.")],
    symbol: Annotated[
        str | None, typer.Option(help="Venue symbol, e.g. BTCUSDT (not with --split-by, which takes it from a column).")
    ] = None,
    kind: Annotated[str, typer.Option(help="bars or trades.")] = "bars",
    interval: Annotated[str | None, typer.Option(help="Bar interval (1m, 4h, 1d); detected when omitted.")] = None,
    bar_time: Annotated[
        str,
        typer.Option(
            "--bar-time",
            help="What the bar time column stamps: open (shifted by the interval to the close), close (kept), "
            "or auto (open unless the column is ts_event). The shift applied is printed.",
        ),
    ] = "auto",
    dataset: Annotated[str | None, typer.Option(help="Dataset name (default bars_<interval> or trades).")] = None,
    period: Annotated[str | None, typer.Option(help="Partition period: day, month or year.")] = None,
    ts_unit: Annotated[str, typer.Option(help="auto, s, ms, us, ns or iso.")] = "auto",
    split_by: Annotated[
        str | None,
        typer.Option("--split-by", help="Symbol column: write one dataset per symbol found in it."),
    ] = None,
    append: Annotated[bool, typer.Option("--append", help="Add a new, non-overlapping time range.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing dataset.")] = False,
    drop_duplicates: Annotated[
        bool, typer.Option("--drop-duplicates", help="Keep the first bar of a repeated time (each drop is logged).")
    ] = False,
    contract_size: Annotated[float | None, typer.Option(help="Trades: base units per unit of size, the instrument's "
                                                        "contract size when the sizes count contracts (OKX "
                                                        "BTC-USDT-SWAP 0.01; 1 for base units), recorded in the "
                                                        "manifest for data bars and backtests. Default: none "
                                                        "recorded: a spot market's sizes count base units, any "
                                                        "other market's dataset is refused by data bars and "
                                                        "backtests until it records one.")] = None,
    catalog: CatalogOpt = DEFAULT_CATALOG,
) -> None:
    """Validate a file and write it into the catalog (one dataset, or one per symbol with --split-by)."""
    if append and overwrite:
        raise _fail(ConfigError("--append and --overwrite exclude each other"))
    if kind not in ("bars", "trades"):
        raise _fail(ConfigError(f"--kind {kind!r} is not bars or trades"))
    if bar_time not in ("auto", "open", "close"):
        raise _fail(ConfigError(f"--bar-time {bar_time!r} is not open, close or auto"))
    if kind == "trades" and bar_time != "auto":
        raise _fail(ConfigError("--bar-time applies to bars only"))
    if (symbol is None) == (split_by is None):
        raise _fail(ConfigError("give exactly one of --symbol or --split-by"))
    if period is not None and period not in ("day", "month", "year"):
        raise _fail(ConfigError(f"--period {period!r} is not day, month or year"))
    if ts_unit not in get_args(TsUnit):
        raise _fail(ConfigError(f"--ts-unit {ts_unit!r} is not one of {', '.join(get_args(TsUnit))}"))
    if interval is not None:
        _interval_option(interval, "--interval")
    if contract_size is not None and kind != "trades":
        raise _fail(ConfigError("--contract-size applies to trades; bars hold base units"))
    if contract_size is not None and not (contract_size > 0.0 and np.isfinite(contract_size)):
        raise _fail(ConfigError(f"--contract-size {contract_size:g} is not a positive number"))
    if contract_size is not None and split_by is not None and contract_size != 1.0:
        raise _fail(ConfigError(split_contract_size(contract_size)))
    _name_options(venue=venue, market=market, symbol=symbol, dataset=dataset)
    mode: Literal["create", "append", "overwrite"] = "append" if append else "overwrite" if overwrite else "create"
    try:
        result = import_path(
            catalog,
            path,
            venue=venue,
            market=market,
            symbol=symbol,
            kind=kind,  # type: ignore[arg-type]
            interval=interval,
            dataset=dataset,
            period=period,  # type: ignore[arg-type]
            ts_unit=ts_unit,  # type: ignore[arg-type]
            bar_time=bar_time,  # type: ignore[arg-type]
            duplicates="keep_first" if drop_duplicates else "error",
            mode=mode,
            split_by=split_by,
            contract_size=contract_size,
        )
    except TradebusError as exc:
        raise _fail(exc, _APPEND_OR_OVERWRITE) from None
    console = _console()
    console.print(result.describe_time(), highlight=False, soft_wrap=True)
    if result.dropped_duplicates:
        console.print(f"dropped {result.dropped_duplicates} duplicate bars (first kept)", highlight=False)
    for manifest in result.manifests:
        console.print(f"imported {path.name} -> {_summary(manifest)}", highlight=False, soft_wrap=True)
        if manifest.kind == "trades" and manifest.contract_size is None and market != "spot":
            console.print(
                f"{manifest.ref().relpath().as_posix()} records no contract size: the trades of a {market!r} market "
                "may count contracts, so data bars and backtests refuse it until it records one: tradebus data "
                f"set-contract-size {manifest.ref().relpath().as_posix()} SIZE --catalog {catalog} (the instrument's "
                "base units per contract; 1 if its sizes are base units)",
                highlight=False, soft_wrap=True,
            )


def _mode(overwrite: bool) -> Literal["create", "overwrite"]:
    """The write mode of ``--overwrite`` (without it an existing dataset is an error)."""
    return "overwrite" if overwrite else "create"


def _import_one(what: str, run: Callable[[], Manifest]) -> None:
    """Run one single-dataset import of ``what``; print its summary, or fail with its error (exit 1)."""
    try:
        manifest = run()
    except TradebusError as exc:
        raise _fail(exc) from None
    _console().print(f"imported {what} -> {_summary(manifest)}", highlight=False, soft_wrap=True)


@data_app.command("import-tardis")
def import_tardis_cmd(
    path: Annotated[Path, typer.Argument(help="Tardis incremental_book_L2, book_snapshot_N, quotes or trades CSV[.gz].")],
    venue: Annotated[str, typer.Option(help="Venue directory name.")],
    market: Annotated[str, typer.Option(help="Market, e.g. perp.")],
    symbol: Annotated[str, typer.Option(help="Venue symbol.")],
    suffix: Annotated[str, typer.Option(help="Appended to the dataset name (book, quotes, trades).")] = "",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing dataset.")] = False,
    contract_size: Annotated[float | None, typer.Option(help="Trades: the instrument's contract size when the "
                                                        "amounts count contracts (OKX BTC-USDT-SWAP 0.01; 1 for "
                                                        "base units), recorded in the manifest so data bars "
                                                        "counts base units. Default: none recorded.")] = None,
    catalog: CatalogOpt = DEFAULT_CATALOG,
) -> None:
    """Import a Tardis-style CSV as a book, quotes or trades dataset."""
    from tradebus.data.market_ingest import import_tardis

    _name_options(venue=venue, market=market, symbol=symbol)
    _suffix_option(suffix, "book")
    _import_one(path.name, lambda: import_tardis(path, catalog, venue, market, symbol, suffix=suffix,
                                                 mode=_mode(overwrite), contract_size=contract_size))


@data_app.command("import-bybit-book")
def import_bybit_book_cmd(
    path: Annotated[Path, typer.Argument(help="Bybit orderbook archive (*_ob500.data.zip).")],
    symbol: Annotated[str, typer.Option(help="Symbol of the archive, e.g. XRPUSDT.")],
    market: Annotated[str, typer.Option(help="linear, inverse or spot.")] = "linear",
    suffix: Annotated[str, typer.Option(help="Appended to the dataset name (book).")] = "",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing dataset.")] = False,
    catalog: CatalogOpt = DEFAULT_CATALOG,
) -> None:
    """Import a Bybit orderbook archive as a book dataset."""
    from tradebus.data.market_ingest import import_bybit_archive

    _name_options(market=market, symbol=symbol)
    _suffix_option(suffix, "book")
    _import_one(
        path.name, lambda: import_bybit_archive(path, catalog, symbol, market=market, suffix=suffix, mode=_mode(overwrite))
    )


@data_app.command("import-okx-book")
def import_okx_book_cmd(
    path: Annotated[Path, typer.Argument(help="OKX order-book archive (*-L2orderbook-400lv-YYYY-MM-DD.tar.gz).")],
    symbol: Annotated[str, typer.Option(help="OKX instrument id of the archive, e.g. BTC-USDT or BTC-USDT-SWAP.")],
    market: Annotated[str, typer.Option(help="spot, swap, futures or option.")] = "spot",
    suffix: Annotated[str, typer.Option(help="Appended to the dataset name (book).")] = "",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing dataset.")] = False,
    catalog: CatalogOpt = DEFAULT_CATALOG,
) -> None:
    """Import an OKX L2 order-book archive as a book dataset."""
    from tradebus.data.okx_history import import_okx_book

    _name_options(market=market, symbol=symbol)
    _suffix_option(suffix, "book")
    _import_one(path.name, lambda: import_okx_book(path, catalog, symbol, market=market, suffix=suffix, mode=_mode(overwrite)))


@data_app.command("import-okx-candles")
def import_okx_candles_cmd(
    paths: Annotated[list[Path], typer.Argument(help="OKX market/candles or history-candles JSON pages, any order.")],
    symbol: Annotated[str, typer.Option(help="OKX instrument id, e.g. BTC-USDT or BTC-USDT-SWAP.")],
    interval: Annotated[str | None, typer.Option(help="The bar the pages were fetched with (1m, 1H, 1D, 1Dutc); "
                                                 "detected when omitted.")] = None,
    market: Annotated[str, typer.Option(help="spot, swap, futures or option (spot: volume is vol, else volCcy).")] = "spot",
    name: Annotated[str | None, typer.Option(help="Dataset name (default bars_<interval>).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing dataset.")] = False,
    catalog: CatalogOpt = DEFAULT_CATALOG,
) -> None:
    """Import OKX v5 candle pages as a bar dataset (unfinished candles refused unless newest)."""
    from tradebus.data.okx_candles import import_okx_candles

    _name_options(market=market, symbol=symbol, name=name)
    _import_one(paths[0].name if len(paths) == 1 else f"{len(paths)} pages", lambda: import_okx_candles(
        paths, catalog, symbol, interval=interval, market=market, dataset=name, mode=_mode(overwrite)))


@data_app.command("import-book-depth")
def import_book_depth_cmd(
    paths: Annotated[list[Path], typer.Argument(help="Binance Vision bookDepth CSVs or zips, days in order.")],
    symbol: Annotated[str, typer.Option(help="Symbol, e.g. BTCUSDT.")],
    market: Annotated[str, typer.Option(help="usdm or coinm.")] = "usdm",
    suffix: Annotated[str, typer.Option(help="Appended to the dataset name (book_depth).")] = "",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing dataset.")] = False,
    catalog: CatalogOpt = DEFAULT_CATALOG,
) -> None:
    """Import Binance Vision bookDepth (percentage-depth) files as a book_depth dataset."""
    from tradebus.data.book_depth import import_book_depth

    _name_options(market=market, symbol=symbol)
    _suffix_option(suffix, "book_depth")
    _import_one(
        f"{len(paths)} file(s)",
        lambda: import_book_depth(paths, catalog, symbol, market=market, suffix=suffix, mode=_mode(overwrite)),
    )


@data_app.command("import-open-interest")
def import_open_interest_cmd(
    path: Annotated[Path, typer.Argument(help="Binance openInterestHist/openInterest JSON, Vision metrics CSV or Bybit v5 JSON.")],
    venue: Annotated[str, typer.Option(help="Venue directory name, e.g. binance_usdm.")],
    market: Annotated[str, typer.Option(help="Market, e.g. usdm or linear.")],
    symbol: Annotated[str, typer.Option(help="Venue symbol; rows of another symbol are refused.")],
    suffix: Annotated[str, typer.Option(help="Appended to the dataset name (open_interest).")] = "",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing dataset.")] = False,
    catalog: CatalogOpt = DEFAULT_CATALOG,
) -> None:
    """Import an open-interest history file as an open_interest dataset."""
    from tradebus.data.open_interest import import_open_interest

    _name_options(venue=venue, market=market, symbol=symbol)
    _suffix_option(suffix, "open_interest")
    _import_one(
        path.name, lambda: import_open_interest(path, catalog, venue, market, symbol, suffix=suffix, mode=_mode(overwrite))
    )


def _size(nbytes: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if nbytes < 1000 or unit == "GB":
            return f"{nbytes:,.0f} {unit}" if unit == "B" else f"{nbytes:,.1f} {unit}"
        nbytes /= 1000  # type: ignore[assignment]
    return ""


@data_app.command("info")
def info_cmd(catalog: CatalogOpt = DEFAULT_CATALOG) -> None:
    """List the datasets of the catalog: rows, time range, files, size, gaps and quality status.

    Below the table, each stretch where a book dataset was out of sync (its manifest's unsynced), each stretch where the recorded feed of a dataset's instrument was stale (its stale), and each gap in trade ids a trade dataset leaves (its missed_trades).

    A dataset whose manifest cannot be read, or a file of which is missing or of another size than its manifest says, is listed as unreadable and the command exits 3 naming it, after listing the others.
    """
    if not catalog.is_dir():
        raise _fail(ConfigError(f"--catalog {catalog}: no such directory"))
    cat = Catalog(catalog)
    refs = cat.datasets()
    if not refs:
        _console().print(f"no datasets in {catalog}", highlight=False)
        return
    table = Table(title=f"catalog {catalog}")
    columns = ("venue", "market", "symbol", "dataset", "kind", "rows", "start (UTC)", "end (UTC)", "files", "size",
               "period", "gaps", "quality")
    for column in columns:
        table.add_column(column, justify="right" if column in ("rows", "files", "size", "gaps") else "left")
    broken: list[str] = []
    unsynced: list[str] = []
    for ref in refs:
        try:
            m, entries = cat.entries(ref.venue, ref.market, ref.symbol, ref.dataset)  # sizes of the version read
        except DataError as exc:  # listed as unreadable; the others are still shown
            broken.append(str(exc))
            table.add_row(ref.venue, ref.market, ref.symbol, ref.dataset, *[""] * 8, "unreadable")
            continue
        size = sum(e.size or 0 for _, e in entries)
        quality = "-" if m.quality is None else str(m.quality.get("status", "-"))
        table.add_row(
            m.venue, m.market, m.symbol, m.dataset, m.kind, f"{m.rows:,}", _iso(m.start_ns), _iso(m.end_ns),
            str(len(m.files)), _size(size), m.period, "" if m.gaps is None else str(m.gaps), quality,
        )
        unsynced.extend(
            f"{ref.relpath().as_posix()}: book out of sync from {np.datetime64(a, 'ns')}Z to the snapshot at "
            f"{np.datetime64(b, 'ns')}Z (no book rows in between; a backtest replaying the book over it is refused)"
            for a, b in m.unsynced
        )
        unsynced.extend(
            f"{ref.relpath().as_posix()}: feed {feed} stale from {np.datetime64(a, 'ns')}Z to "
            f"{np.datetime64(b, 'ns')}Z (the recorded daemon denied every order on {m.symbol} in between; a "
            "backtest over it is refused unless data.allow_stale: true)"
            for a, b, feed in m.stale
        )
        unsynced.extend(
            f"{ref.relpath().as_posix()}: trade ids {first}..{last} missing between {np.datetime64(a, 'ns')}Z and "
            f"{np.datetime64(b, 'ns')}Z ({lost} trades lost for good: the recording has no fetch of them that "
            "filled the gap; a backtest over it is refused unless data.allow_missed_trades: true)"
            for a, b, first, last, lost in m.missed_trades
        )
    _console().print(table)
    for line in unsynced:
        _console().print(line, highlight=False, soft_wrap=True)
    if broken:
        raise _fail(DataError("; ".join(broken)))


@data_app.command("query")
def query_cmd(
    sql: Annotated[str, typer.Argument(help="SQL over the views: one per dataset (venue_market_symbol_dataset), "
                                       "plus bars and trades.")],
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    catalog: CatalogOpt = DEFAULT_CATALOG,
) -> None:
    """Run SQL over the catalog in place with DuckDB (a time column as UTC timestamp, a date column as its UTC day)."""
    from tradebus.data.query import query

    if fmt not in ("table", "csv", "json"):
        raise _fail(ConfigError(f"--format {fmt!r} is not table, csv or json"))
    try:
        result = query(sql, catalog)
    except TradebusError as exc:
        raise _fail(exc) from None
    frame = result.to_pandas()
    console = _console()
    if fmt == "csv":
        console.print(frame.to_csv(index=False), end="", highlight=False, markup=False, soft_wrap=True)
    elif fmt == "json":
        console.print(frame.to_json(orient="records", date_format="iso"), highlight=False, markup=False, soft_wrap=True)
    else:
        table = Table()
        for column in result.column_names:
            table.add_column(escape(str(column)))
        for row in result.to_pylist():  # Arrow values: a SQL NULL is None (pandas made it nan or None)
            table.add_row(*("NULL" if v is None else escape(str(v)) for v in row.values()))
        console.print(table)


data_app.command("ls", help="Alias of info.")(info_cmd)


@data_app.command("verify")
def verify_cmd(
    catalog: CatalogOpt = DEFAULT_CATALOG,
    fix_sizes: Annotated[bool, typer.Option(
        "--fix-sizes", help="Add each file's size to a manifest written before sizes were kept (every read then "
        "refuses a replaced or truncated file), once its sha256 matches the manifest's; data files are not touched.")
    ] = False,
) -> None:
    """Check every dataset: files present, sha256 as in the manifest, schema and row counts.

    Every dataset is checked, whatever the ones before it gave; the command exits 3 after the last one when any failed, naming each.

    With --fix-sizes a dataset that passes gets the sizes its manifest lacks (hashed again under the catalog's lock); a manifest that cannot be written (a read-only catalog) is named as that dataset's failure, and the others go on (exit 2 when no dataset failed otherwise).
    """
    if not catalog.is_dir():
        raise _fail(ConfigError(f"--catalog {catalog}: no such directory"))
    cat = Catalog(catalog)
    refs = cat.datasets()
    if not refs:
        _console().print(f"no datasets in {catalog}", highlight=False)
        return
    failed: list[str] = []
    unwritten: list[str] = []
    for ref in refs:
        try:
            manifest = cat.verify(ref.venue, ref.market, ref.symbol, ref.dataset)
            added = 0
            if fix_sizes and any(entry.size is None for entry in manifest.files):
                manifest, added = cat.record_sizes(ref.venue, ref.market, ref.symbol, ref.dataset)
        except (DataError, ConfigError) as exc:
            (failed if isinstance(exc, DataError) else unwritten).append(ref.relpath().as_posix())
            _console(stderr=True).print(f"[bold red]FAILED[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            continue
        fixed = f" (sizes recorded for {added} file(s))" if added else ""
        _console().print(f"ok {_summary(manifest)}{fixed}", highlight=False, soft_wrap=True)
    parts = []
    if failed:
        parts.append(f"{len(failed)} of {len(refs)} datasets failed verification: {', '.join(failed)}")
    if unwritten:
        parts.append(f"{len(unwritten)} of {len(refs)} manifests could not be written (no sizes recorded): "
                     f"{', '.join(unwritten)}")
    if parts:
        raise _fail((DataError if failed else ConfigError)("; ".join(parts)))


download_app = typer.Typer(name="download", help="Download published exchange archives into the catalog.",
                           no_args_is_help=True)
data_app.add_typer(download_app, name="download")


def _day(text: str, flag: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise _fail(ConfigError(f"{flag} {text!r} is not a date (YYYY-MM-DD)")) from None


StartOpt = Annotated[str, typer.Option(help="First day (YYYY-MM-DD, UTC).")]
EndOpt = Annotated[str, typer.Option(help="Last day, inclusive (YYYY-MM-DD, UTC).")]
CacheDirOpt = Annotated[Path, typer.Option("--cache-dir", help="Where verified archives are kept; a re-run reuses them.")]
WorkersOpt = Annotated[int, typer.Option(help="Archives downloaded at once.", min=1, max=32)]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Fail (exit 3) when a day is not published.")]
AppendOpt = Annotated[bool, typer.Option("--append", help="Add a new, non-overlapping time range.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing dataset.")]


def _listed(list_archives: Callable[[date, date], list[Archive]], start: str, end: str) -> list[Archive]:
    """The archives of ``--start``..``--end``; a bad date, market or symbol is a bad option (exit 2)."""
    first, last = _day(start, "--start"), _day(end, "--end")
    try:
        return list_archives(first, last)
    except DataError as exc:
        raise _fail(ConfigError(str(exc))) from None


def _fetched(label: str, items: list[Archive], run: Callable[[Callable[[Archive, str], None]], FetchReport]
             ) -> FetchReport:
    """``run(on_done)`` (a venue's fetch) under a progress bar; its counts printed, its refusals on stderr."""
    console = _console()
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=console, transient=True, disable=not console.is_terminal) as progress:
            task = progress.add_task(label, total=len(items))
            report = run(lambda _item, _outcome: progress.advance(task))
    except TradebusError as exc:
        raise _fail(exc) from None
    console.print(
        f"{len(items)} archives: {len(report.downloaded)} downloaded, {len(report.reused)} reused (verified), "
        f"{len(report.missing)} missing, {len(report.refused)} refused",
        highlight=False,
    )
    if report.missing:
        console.print(f"missing (not published): {', '.join(report.missing)}", highlight=False, soft_wrap=True)
        _console(stderr=True).print(
            f"[bold yellow]warning:[/] {len(report.missing)} of the {len(items)} periods are not published on the "
            f"server and are skipped: {', '.join(report.missing)}", highlight=False, soft_wrap=True)
    for message in report.refused:
        _console(stderr=True).print(f"[bold red]refused:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return report


def _check_fetched(report: FetchReport, strict: bool, none_published: str) -> None:
    """Exit 3 when an archive was refused, one is missing under ``--strict``, or none is published."""
    if report.refused:
        raise _fail(DataError(f"{len(report.refused)} archive(s) refused; nothing was imported"))
    if report.missing and strict:
        raise _fail(DataError(f"{len(report.missing)} archive(s) missing and --strict; nothing was imported"))
    if not report.ready:
        raise _fail(DataError(none_published))


def _download(label: str, items: list[Archive], fetch: Callable[[Callable[[Archive, str], None]], FetchReport],
              strict: bool, none_published: str, import_ready: Callable[[list[Path]], ImportResult]) -> None:
    """Fetch a venue's archives (:func:`_fetched`), check the outcome (:func:`_check_fetched`), import the ready ones."""
    report = _fetched(label, items, fetch)
    _check_fetched(report, strict, none_published)
    _imported(lambda: import_ready(report.ready))


def _download_mode(append: bool, overwrite: bool) -> Literal["create", "append", "overwrite"]:
    if append and overwrite:
        raise _fail(ConfigError("--append and --overwrite exclude each other"))
    return "append" if append else "overwrite" if overwrite else "create"


def _imported(run: Callable[[], ImportResult]) -> None:
    """Run a venue's archive import; print each dataset written."""
    try:
        result = run()
    except TradebusError as exc:
        raise _fail(exc, _APPEND_OR_OVERWRITE) from None
    for manifest in result.manifests:
        _console().print(f"imported -> {_summary(manifest)}", highlight=False, soft_wrap=True)


@download_app.command("binance")
def download_binance_cmd(
    symbol: Annotated[str, typer.Option(help="Binance symbol, e.g. BTCUSDT.")],
    start: StartOpt,
    end: EndOpt,
    market: Annotated[str, typer.Option(help="spot, um (USD-M futures) or cm (COIN-M futures).")] = "spot",
    data: Annotated[str, typer.Option("--data", help="klines, trades, aggTrades or bookDepth (futures).")] = "klines",
    interval: Annotated[str | None, typer.Option(help="Kline interval (1m, 1h, ...); klines only.")] = None,
    monthly: Annotated[bool, typer.Option("--monthly", help="Monthly archives instead of daily ones.")] = False,
    base_url: Annotated[
        str, typer.Option("--base-url", envvar="TRADEBUS_BINANCE_VISION_URL", help="URL prefix of the archive tree.")
    ] = "https://data.binance.vision/data",
    cache_dir: Annotated[
        Path, typer.Option("--cache-dir", help="Where verified zips are kept; a re-run reuses them.")
    ] = Path("data/downloads/binance"),
    workers: WorkersOpt = 4,
    strict: StrictOpt = False,
    append: AppendOpt = False,
    overwrite: OverwriteOpt = False,
    catalog: CatalogOpt = DEFAULT_CATALOG,
) -> None:
    """Download Binance public archives, verify each against its .CHECKSUM, import them as one dataset."""
    from tradebus.data import binance_vision as vision

    mode = _download_mode(append, overwrite)
    _name_options(symbol=symbol, interval=interval)
    if interval is not None:
        _interval_option(interval, "--interval")  # checked by the import, after every archive was downloaded
    items = _listed(lambda first, last: vision.archives(market, data, symbol, first, last,  # type: ignore[arg-type]
                                                        interval=interval, monthly=monthly), start, end)
    _download(f"binance {market} {data} {symbol}", items,
              lambda on_done: vision.fetch(items, cache_dir, base_url=base_url, workers=workers, on_done=on_done),
              strict,
              f"none of the {len(items)} archives is published: {base_url.rstrip('/')}/{items[0].path}.CHECKSUM "
              f"answered HTTP 404, as did the others; check --symbol (Binance's symbols are upper case: BTCUSDT), "
              f"--market, --data{', --interval' if interval else ''}, --start and --end; nothing was imported",
              lambda ready: vision.import_archives(catalog, ready, market=market, data=data,  # type: ignore[arg-type]
                                                   symbol=symbol, interval=interval, mode=mode,
                                                   days=(_day(start, "--start"), _day(end, "--end"))))


_NO_CHECKSUM = ("publishes no checksum: each archive is verified as far as it can be ({what}), and every row is "
                "checked on import")
_BYBIT_VERIFIED = "the whole gzip stream read, its CRC-32 and length checked, and the header of its market"
_OKX_VERIFIED = "a zip of one CSV whose CRC-32 matches, with OKX's trade header"


_BYBIT_HELP = (
    "Download Bybit public trade archives (public.bybit.com), verify them, import them as one dataset "
    "bybit/<market>/<symbol>/trades.\n\n"
    f"Bybit {_NO_CHECKSUM.format(what=_BYBIT_VERIFIED)}. Days the server does not have are listed and "
    "skipped (an error with --strict, or when none is found); a truncated or corrupt archive is refused "
    "(exit 3, naming it) and nothing is imported; a re-run reuses the archives already complete in "
    "--cache-dir."
)


@download_app.command("bybit", help=_BYBIT_HELP)
def download_bybit_cmd(
    symbol: Annotated[str, typer.Option(help="Bybit symbol, e.g. BTCUSDT.")],
    start: StartOpt,
    end: EndOpt,
    market: Annotated[str, typer.Option(help="linear, inverse (trading/<SYMBOL>/<SYMBOL><day>.csv.gz) or spot "
                                        "(spot/<SYMBOL>/<SYMBOL>_<day>.csv.gz).")] = "linear",
    base_url: Annotated[
        str, typer.Option("--base-url", envvar="TRADEBUS_BYBIT_PUBLIC_URL", help="URL prefix of the archive tree.")
    ] = "https://public.bybit.com",
    cache_dir: CacheDirOpt = Path("data/downloads/bybit"),
    workers: WorkersOpt = 4,
    strict: StrictOpt = False,
    append: AppendOpt = False,
    overwrite: OverwriteOpt = False,
    catalog: CatalogOpt = DEFAULT_CATALOG,
) -> None:
    from tradebus.data import bybit_archive as bybit

    mode = _download_mode(append, overwrite)
    _name_options(symbol=symbol, market=market)
    items = _listed(lambda first, last: bybit.archives(market, symbol, first, last), start, end)  # type: ignore[arg-type]
    _download(f"bybit {market} trades {symbol}", items,
              lambda on_done: bybit.fetch(items, cache_dir, market=market,  # type: ignore[arg-type]
                                          base_url=base_url, workers=workers, on_done=on_done),
              strict,
              f"none of the {len(items)} archives is published: {base_url.rstrip('/')}/{items[0].path} answered "
              f"HTTP 404, as did the others; check --symbol (Bybit's symbols are upper case: BTCUSDT), --market, "
              f"--start and --end; nothing was imported",
              lambda ready: bybit.import_archives(catalog, ready, market=market, symbol=symbol,  # type: ignore[arg-type]
                                                  mode=mode, days=(_day(start, "--start"), _day(end, "--end"))))


_OKX_HELP = (
    "Download OKX public trade archives (static.okx.com/cdn/okex/traderecords), verify them, import them "
    "as one dataset okx/<market>/<symbol>/trades.\n\n"
    f"OKX {_NO_CHECKSUM.format(what=_OKX_VERIFIED)}. A day's file is cut at OKX's own day boundary, so all"
    " its rows are imported. Days the server does not have are listed and skipped (an error with "
    "--strict, or when none is found); a truncated or corrupt archive is refused (exit 3, naming it) and "
    "nothing is imported; a re-run reuses the archives already complete in --cache-dir. Order-book "
    "archives are not downloaded: fetch them from okx.com/data-download and run import-okx-book."
)


@download_app.command("okx", help=_OKX_HELP)
def download_okx_cmd(
    symbol: Annotated[str, typer.Option(help="OKX instrument id, e.g. BTC-USDT or BTC-USDT-SWAP.")],
    start: StartOpt,
    end: EndOpt,
    market: Annotated[str, typer.Option(help="spot, swap or futures (sizes of swap and futures count contracts).")]
    = "spot",
    base_url: Annotated[
        str, typer.Option("--base-url", envvar="TRADEBUS_OKX_TRADERECORDS_URL",
                          help="URL prefix of the archive tree (holding trades/daily/<YYYYMMDD>/).")
    ] = "https://static.okx.com/cdn/okex/traderecords",
    cache_dir: CacheDirOpt = Path("data/downloads/okx"),
    workers: WorkersOpt = 4,
    strict: StrictOpt = False,
    append: AppendOpt = False,
    overwrite: OverwriteOpt = False,
    catalog: CatalogOpt = DEFAULT_CATALOG,
) -> None:
    from tradebus.data import okx_archive as okx

    mode = _download_mode(append, overwrite)
    _name_options(symbol=symbol, market=market)
    items = _listed(lambda first, last: okx.archives(market, symbol, first, last), start, end)  # type: ignore[arg-type]
    _download(f"okx {market} trades {symbol}", items,
              lambda on_done: okx.fetch(items, cache_dir, base_url=base_url, workers=workers, on_done=on_done),
              strict,
              f"none of the {len(items)} archives is published: {base_url.rstrip('/')}/{items[0].path} answered "
              f"HTTP 404, as did the others; check --symbol (OKX instrument ids: BTC-USDT, BTC-USDT-SWAP), --start "
              f"and --end; nothing was imported",
              lambda ready: okx.import_archives(catalog, ready, market=market, symbol=symbol,  # type: ignore[arg-type]
                                                mode=mode))


def _ref(dataset: str) -> tuple[str, str, str, str]:
    parts = dataset.strip("/").split("/")
    if len(parts) != 4 or not all(parts):
        raise _fail(ConfigError(f"DATASET {dataset!r} is not venue/market/symbol/dataset"))
    return parts[0], parts[1], parts[2], parts[3]


@data_app.command("bars")
def bars_cmd(
    dataset: Annotated[str, typer.Argument(help="Source: a trades dataset (any bar mode) or a bars dataset (time "
                                           "bars of a longer interval), venue/market/symbol/dataset.")],
    mode: Annotated[str, typer.Option(help="time, tick, volume, dollar, tick_imbalance, volume_imbalance or "
                                      "dollar_imbalance.")] = "time",
    interval: Annotated[str | None, typer.Option(help="Bar interval of time bars (1m, 1h, ...).")] = None,
    threshold: Annotated[float | None, typer.Option(help="Trades, size or notional per bar; for imbalance bars the "
                                                    "initial expected trades per bar.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Target dataset (default bars_<interval> or "
                                             "bars_<mode>_<threshold>).")] = None,
    contract_size: Annotated[float | None, typer.Option(help="Base units per unit of trade size: the instrument's "
                                                        "contract size when its trades count contracts (OKX "
                                                        "BTC-USDT-SWAP 0.01), so volume counts base units and "
                                                        "dollar bars quote value. Default: the one the trades "
                                                        "dataset records (backfill, recording import, Binance archives), else 1 "
                                                        "in a spot market (required in any other); refused "
                                                        "when it differs from the recorded one.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Rebuild an existing target dataset from the whole "
                                            "source (after an append to it), replacing it on success.")] = False,
    catalog: CatalogOpt = DEFAULT_CATALOG,
) -> None:
    """Build bars into the catalog from trades, or resample bars to a longer interval (none still forming).

    The bar still forming at the end of the input is left out; the first bar is built from the data there is when the input starts inside its interval, as a run started there builds it: 1m bars from 00:00 resampled to 7m bars start with a bar of 4 minutes, stamped 00:04. Time buckets are aligned to the Unix epoch (a week starts on Thursday 00:00 UTC).
    """
    from tradebus.data.resample import bars_from_trades, resample_bars
    from tradebus.features.bars import BAR_MODES

    ref = DatasetRef(*_ref(dataset))
    if mode not in BAR_MODES:
        raise _fail(ConfigError(f"--mode {mode!r} is not one of {', '.join(BAR_MODES)}"))
    _name_options(name=name)
    if (mode == "time") != (interval is not None) or (mode != "time") != (threshold is not None):
        raise _fail(ConfigError("time bars take --interval, the other modes --threshold"))
    interval_ns = _interval_option(interval, "--interval") if interval is not None else None
    try:
        cat = Catalog(catalog)
        if cat.manifest(ref.venue, ref.market, ref.symbol, ref.dataset).kind == "bars":
            if mode != "time":
                raise ConfigError(f"{dataset} holds bars: only --mode time resamples bars")
            if contract_size is not None:
                raise ConfigError(f"{dataset} holds bars, already in base units: --contract-size applies to trades")
            manifest = resample_bars(cat, ref, int(interval_ns or 0), dataset=name, write_mode=_mode(overwrite))
        else:
            manifest = bars_from_trades(cat, ref, mode, interval_ns=interval_ns, threshold=threshold, dataset=name,
                                        contract_size=contract_size, write_mode=_mode(overwrite))
    except FeatureError as exc:  # the bar builder's parameters: --threshold, --contract-size
        raise _fail(ConfigError(f"{dataset}: {exc}")) from None
    except TradebusError as exc:
        raise _fail(exc, "rebuild it with --overwrite, or give the new bars another --name") from None
    _console().print(f"built -> {_summary(manifest)}", highlight=False, soft_wrap=True)


@data_app.command("set-contract-size")
def set_contract_size_cmd(
    dataset: Annotated[str, typer.Argument(help="A trades dataset recording no contract size, "
                                           "venue/market/symbol/dataset.")],
    contract_size: Annotated[float, typer.Argument(help="Base units per unit of its trade sizes: the instrument's "
                                                   "contract size when they count contracts (OKX BTC-USDT-SWAP "
                                                   "0.01), 1 when they are base units.")],
    catalog: CatalogOpt = DEFAULT_CATALOG,
) -> None:
    """Record the contract size of a trades dataset imported without one (its rows are not touched).

    Refused (exit 3) when the dataset records another one: its sizes are in that unit.
    """
    ref = DatasetRef(*_ref(dataset))
    try:
        manifest = Catalog(catalog).record_contract_size(ref.venue, ref.market, ref.symbol, ref.dataset, contract_size)
    except TradebusError as exc:
        raise _fail(exc) from None
    _console().print(f"{dataset}: contract size {manifest.contract_size:g} (base units per unit of size)",
                     highlight=False, soft_wrap=True)


@data_app.command("quality")
def quality_cmd(
    dataset: Annotated[str, typer.Argument(help="venue/market/symbol/dataset, e.g. binance/spot/BTCUSDT/bars_1m.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON instead of a table.")] = False,
    fail_on: Annotated[
        list[str] | None,
        typer.Option("--fail-on", help="Exit 3 when one of these checks finds anything: a check name, error, warn or any "
                     "(repeatable)."),
    ] = None,
    outlier_z: Annotated[
        float | None, typer.Option(help="Robust z-score above which a return is an outlier.", show_default="12 bars, 100 trades")
    ] = None,
    stale_bars: Annotated[int, typer.Option(help="Shortest run of identical bars reported as stale.", min=2)] = 5,
    catalog: CatalogOpt = DEFAULT_CATALOG,
) -> None:
    """Report gaps, duplicates, broken bars, bad prices, stale and zero-volume stretches, outliers and id gaps."""
    from tradebus.data.quality import KINDS, picked_checks

    venue, market, symbol, name = _ref(dataset)
    try:
        picked_checks(fail_on or [], option="--fail-on")
        # the files opened at once: an --overwrite in another process meanwhile leaves the report this version's
        with Catalog(catalog).pinned(venue, market, symbol, name) as (manifest, files):
            if manifest.kind not in KINDS:
                raise ConfigError(f"{dataset} is a {manifest.kind!r} dataset, which data quality has no checks for: it "
                                  f"checks {', '.join(sorted(KINDS))} datasets; none of its files was read")
            report = quality_report(((path, handle) for path, _, handle in files), manifest.kind, manifest.interval_ns,
                                    stale_bars=stale_bars, outlier_z=outlier_z, shared_times=manifest.shared_times)
        failing = report.failing(fail_on or [])
    except TradebusError as exc:
        raise _fail(exc) from None
    console = _console()
    if as_json:
        console.print_json(json.dumps({"dataset": dataset, **report.to_dict()}))
    else:
        table = Table(title=f"quality of {dataset}: {report.status} ({report.rows:,} rows)")
        for column in ("check", "level", "count", "details", "first at (UTC)"):
            table.add_column(column, justify="right" if column == "count" else "left")
        for key, entry in report.checks.items():
            details = ", ".join(f"{k} {v}" for k, v in entry.items() if k not in ("level", "count", "examples"))
            examples = entry["examples"]
            assert isinstance(examples, list)
            table.add_row(key, str(entry["level"]), f"{entry['count']:,}", details, ", ".join(examples[:2]))
        console.print(table)
    if failing:
        raise _fail(DataError(f"{dataset}: quality checks failed: {', '.join(failing)}"))


def _moment_ms(text: str, flag: str, now_ms: int) -> int:
    if text.strip().lower() == "now":  # the command's one reading of the clock, however long it has run
        return now_ms
    try:
        stamp = pd.Timestamp(text, tz="UTC")  # a naive time is UTC; "today" too (without tz: the machine's)
    except (ValueError, TypeError):
        stamp = pd.NaT
    if stamp is pd.NaT:  # also what "" and "NaT" parse to
        raise _fail(ConfigError(f"{flag} {text!r} is not a date or time (ISO 8601, UTC)"))
    return int(stamp.value // 1_000_000)


@data_app.command("backfill")
def backfill_cmd(
    exchange_id: Annotated[str, typer.Option("--exchange", help="ccxt exchange id: binance, bybit, okx, kraken, ...")],
    symbol: Annotated[str, typer.Option(help="ccxt unified symbol, e.g. BTC/USDT.")],
    since: Annotated[str, typer.Option(help="First bar open time (ISO 8601, UTC); a resume starts after the "
                                       "catalog's last bar (nothing before its first is fetched).")],
    timeframe: Annotated[str, typer.Option(help="Bar timeframe (1m, 1h, 1d, ...); bars only.")] = "1m",
    kind: Annotated[str, typer.Option(help="bars (OHLCV) or trades.")] = "bars",
    until: Annotated[str | None, typer.Option(help="End, exclusive (default: now); bars: at most now, whole bars "
                                              "only.")] = None,
    venue: Annotated[str | None, typer.Option(help="Catalog venue (default: the exchange id).")] = None,
    market: Annotated[str | None, typer.Option(help="Catalog market (default: the ccxt market type).")] = None,
    limit: Annotated[int, typer.Option(help="Bars or trades per request.", min=1)] = 1000,
    rate_limit_ms: Annotated[int | None, typer.Option(help="Milliseconds between requests (default: ccxt's).")] = None,
    market_types: Annotated[str | None, typer.Option(help="Comma list of market types to load (ccxt option).")] = None,
    api_base: Annotated[str | None, typer.Option("--api-base", envvar="TRADEBUS_BACKFILL_API_BASE",
                                                 help="Send REST calls to this scheme://host instead.")] = None,
    catalog: CatalogOpt = DEFAULT_CATALOG,
) -> None:
    """Backfill OHLCV bars or trades from a ccxt exchange: paginated, rate-limited, resumable, deduplicated."""
    import ccxt

    from tradebus.data.backfill import backfill_ohlcv, backfill_trades, check_trades_history, make_exchange

    if kind not in ("bars", "trades"):
        raise _fail(ConfigError(f"--kind {kind!r} is not bars or trades"))
    _name_options(venue=venue, market=market)  # checked by the catalog, after the markets were loaded
    step_ms = _interval_option(timeframe, "--timeframe") // 1_000_000 if kind == "bars" else 1
    now_ms = int(pd.Timestamp.now(tz="UTC").value // 1_000_000)
    since_ms = _moment_ms(since, "--since", now_ms)
    # a bar opening at or after it closes after now, wherever the venue starts its bars (Binance's weeks: Monday)
    last_whole_ms = now_ms - step_ms + 1
    until_ms = _moment_ms(until, "--until", now_ms) if until is not None else last_whole_ms
    if until is not None and until_ms <= since_ms:
        raise _fail(ConfigError(f"--until {until} is not after --since {since}: nothing to fetch"))
    if since_ms >= last_whole_ms:
        closed = f" less one {timeframe} bar: no bar opening then has closed" if kind == "bars" else ""
        raise _fail(ConfigError(f"--since {since} is not before now ({_iso(now_ms * 1_000_000)} UTC){closed}: nothing "
                                "to fetch"))
    if kind == "bars" and until_ms > last_whole_ms:
        _console().print(f"--until {until} is after the last closed bar: bars closing after now "
                         f"({_iso(now_ms * 1_000_000)} UTC) are not fetched", highlight=False, soft_wrap=True)
        until_ms = last_whole_ms
    options = {"fetchMarkets": {"types": market_types.split(",")}} if market_types else None
    try:
        exchange = make_exchange(exchange_id, api_base=api_base, rate_limit_ms=rate_limit_ms, options=options)
        if kind == "trades":
            check_trades_history(exchange)
        try:
            exchange.load_markets()
            info = exchange.market(symbol)
        except ccxt.BaseError as exc:
            raise DataError(f"{exchange_id}: cannot load the market {symbol}: {type(exc).__name__}: {exc}") from None
        where = {"since_ms": since_ms, "until_ms": until_ms, "venue": venue or exchange_id,
                 "market": market or str(info["type"]), "catalog_symbol": str(info["id"]), "limit": limit}
        if kind == "bars":
            result = backfill_ohlcv(catalog, exchange, symbol, timeframe, **where)  # type: ignore[arg-type]
        else:
            result = backfill_trades(catalog, exchange, symbol, **where)  # type: ignore[arg-type]
    except TradebusError as exc:
        raise _fail(exc) from None
    console = _console()
    console.print(f"{result.pages} requests, {result.rows} new {kind}, {result.retries} retries", highlight=False)
    if result.manifest is not None:
        console.print(f"backfilled -> {_summary(result.manifest)}", highlight=False, soft_wrap=True)
