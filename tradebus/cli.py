"""The ``tradebus`` command line: ``tradebus backtest CONFIG [--out DIR]`` and ``tradebus data ...``.

``tradebus instruments VENUE MARKET FILE [--tiers FILE] [--symbol S ...]`` prints the ``instruments:``
block of a run config from a venue's saved REST responses (:mod:`tradebus.config.venue_instruments`).

``tradebus paper CONFIG`` runs the paper-trading daemon (:mod:`tradebus.node.daemon`) and
``tradebus replay RECORDING --config CONFIG`` plays a recording of its feeds as a backtest
(:mod:`tradebus.node.playback`).

``backtest`` validates the config (before any data is read), checks every data
row, runs the kernel, and writes ``fills.csv``, ``orders.csv``, ``equity.csv``,
``trades.csv``, ``prices.csv``, ``metrics.json`` and ``config.yaml`` (the resolved
config) into the output directory, then prints the run summary
(:mod:`tradebus.reports.summary`); ``--report`` adds ``tearsheet.html``
(``tradebus report``, :mod:`tradebus.reports.cli`, writes it for any run directory), and
a tearsheet an earlier run left there is rewritten for this run (:func:`tradebus.reports.outputs.write_outputs`;
from the moment the other files are in place until the page is, a note that it was not written stands there).
A run writes only its own files there
(:data:`tradebus.reports.writers.OWN_FILES`) and never deletes anything: an output
directory holding other files is refused (exit 2, naming them) unless ``--force``
(then they are left untouched), and so is one another running run writes (exit 2, naming
its process, ``--force`` or not); a failed run changes nothing (see
:class:`tradebus.reports.writers.RunDirectory`). ``paper`` and ``replay`` take the
same ``--out`` and ``--force`` (``paper`` also ``--report``).

Exit codes: 0 success, 2 invalid config (unknown key, bad value, missing file),
3 invalid data (unsorted or duplicate timestamps, bad prices, ...), 1 any other
tradebus error, among them an exception raised in a strategy's hook (the message names the
strategy id, the hook, the event time and the exception with the line that raised it; its
traceback at ``--log-level DEBUG``); 130 after Ctrl-C and 143 after SIGTERM (a backtest or replay then leaves its
output directory, a data import its catalog, as it was, but for one stopped while its files were moved, which leaves
the ``INCOMPLETE`` marker; a backtest or replay says in one line which it was; the paper and live daemons take either
signal as their stop); 4 when a live daemon stopping with ``live.cancel_on_stop`` (after it stopped whole) or
``live-kill`` (after its cancel rounds, the journal HALTED) left orders open, or of unknown state, at the venue
(:class:`~tradebus.errors.OrdersLeftAtVenue`; each order is named). Errors are printed as one message naming the file and the
field or row, without a traceback.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import signal
import threading
import time
from collections.abc import Callable, Sequence
from importlib.metadata import version as _package_version
from pathlib import Path
from typing import Annotated, Any

import typer
from loguru import logger
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from tradebus.data.catalog import Catalog, DatasetNotFound
from tradebus.data.cli import data_app
from tradebus.node.recording_import import import_recording_cmd
from tradebus.data.ingest import format_interval
from tradebus.data.perpetual import mark_gaps, marks_in_window, read_funding_rates, read_mark_prices, row_gaps
from tradebus.data.replay import Replay, ReplaySource
from tradebus.config import RunConfig, dump_config, load_config, parse_duration, strategy_entries
from tradebus.engine.instrument import Instrument, InstrumentKind
from tradebus.engine.messages import FundingRate, MarkPrice
from tradebus.engine.kernel import Kernel, RunResult
from tradebus.execution.client_ids import ClientIdRule
from tradebus.execution.live import CredentialsRefused
from tradebus.errors import ConfigError, DataError, FeatureError, OrdersLeftAtVenue, StrategyError, TradebusError
from tradebus.reports.cli import interruption, report
from tradebus.reports.denials import warn_denials
from tradebus.node.cli import DaemonOut, live, live_kill, live_resume
from tradebus.ops.logs import LOG_LEVELS, setup_logging
from tradebus.reports.metrics import format_ns
from tradebus.reports.outputs import write_outputs
from tradebus.reports.writers import (
    INCOMPLETE_MARKER, OWN_FILES, REPORT_FILE, RunDirectory, file_identity, is_unwritten_page,
)
from tradebus.research.cli import research_app
from tradebus.strategies.base import build_strategies
from tradebus.sweep.cli import sweep as sweep_command

__all__ = ["LOG_LEVELS", "LazyProgress", "app", "check_log_level", "build_kernel", "build_replay", "main", "progress_for", "run_backtest", "setup_logging"]

app = typer.Typer(
    name="tradebus",
    help="Event-driven crypto trading: backtest, paper and live runs of one kernel.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app.command("import-recording")(import_recording_cmd)
app.add_typer(data_app, name="data", help="Import and inspect market data in the Parquet catalog.")
app.add_typer(research_app, name="research", help="Datasets, labels, purged CV, walk-forward, lookahead, alpha.")
features_app = typer.Typer(no_args_is_help=True, add_completion=False, help="Feature kinds of the feature bank.")
app.add_typer(features_app, name="features")
app.command("report")(report)
app.command(name="live")(live)
app.command(name="live-kill")(live_kill)
app.command(name="live-resume")(live_resume)
app.command("sweep")(sweep_command)

_SET_HELP = "Override a config value, e.g. --set strategy.params.fast=12 (repeatable; recorded in config.yaml)."


def check_log_level(value: str) -> str:
    """The upper-cased log level, or a usage error listing the valid ones."""
    level = value.upper()
    if level not in LOG_LEVELS:
        raise typer.BadParameter(f"{value!r} is not a log level; use one of {', '.join(LOG_LEVELS)}")
    return level


LogLevel = Annotated[
    str, typer.Option("--log-level", callback=check_log_level, help=f"Log level on stderr: {', '.join(LOG_LEVELS)}.")
]
Overrides = Annotated[list[str] | None, typer.Option("--set", help=_SET_HELP, show_default=False)]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tradebus {_package_version('tradebus')}")
        raise typer.Exit()


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Event-driven crypto trading: backtest, paper and live runs of one kernel."""
    # SIGTERM stops a command as Ctrl-C does, by an exception (exit 143), so a run stopped by kill,
    # timeout or a scheduler removes the temporary files of what it was writing (its --out files,
    # a data import's staging directory); killed outright it left them behind. The paper and live
    # daemons replace the handler while their loop runs.
    if threading.current_thread() is threading.main_thread():  # only the main thread may set handlers
        previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
        ctx.call_on_close(lambda: signal.signal(signal.SIGTERM, previous))

#: The exit code of each error, the first class it is an instance of; refused credentials are a config problem, and
#: so is a dataset the catalog does not hold (a name the user typed, as a missing file).
EXIT_CODES: tuple[tuple[type[TradebusError], int], ...] = (
    (ConfigError, 2), (CredentialsRefused, 2), (DatasetNotFound, 2), (DataError, 3), (OrdersLeftAtVenue, 4), (TradebusError, 1)
)

_REPORT_HELP = "Also write the HTML tearsheet (tearsheet.html) into the output directory."
_FORCE_HELP = (
    "Write into an --out directory that holds files the run does not write (they are left untouched; "
    "without --force such a directory is refused, exit 2)."
)

# Show a progress bar only for runs that take longer than this (and only on a terminal).
_PROGRESS_AFTER_S = 2.0


def build_replay(config: RunConfig) -> Replay:
    """The :class:`Replay` of a (path-resolved) config's data sources and time range.

    Raises
    ------
    ConfigError
        If a data file or catalog dataset does not exist (names the field
        ``data.sources.N.file`` / ``data.sources.N.dataset``), or a trades dataset records a
        contract size other than its instrument's (:func:`check_contract_sizes`).
    DataError
        If a catalog dataset's manifest is invalid, or the window overlaps a stretch where a book
        dataset it replays was out of sync (:func:`check_unsynced_books`), or a stretch where the
        recorded feed of a dataset's instrument was stale (:func:`check_stale_feeds`), or a gap in the
        trade ids of a trades dataset (:func:`check_missed_trades`).
    """
    sources = []
    for n, src in enumerate(config.data.sources):
        if src.file is not None:
            if not src.file.is_file():
                raise ConfigError(f"data.sources.{n}.file: no such file {src.file}")
            sources.append(
                ReplaySource.from_file(src.file, src.instrument, src.kind, interval=src.interval, bar_time=src.bar_time)
            )
        else:
            venue, market, symbol, dataset = src.catalog_key
            catalog = Catalog(config.data.catalog)  # type: ignore[arg-type]
            if not catalog.exists(venue, market, symbol, dataset):
                raise ConfigError(f"data.sources.{n}.dataset: no dataset {src.dataset!r} in catalog {catalog.root}")
            try:
                source = ReplaySource.from_catalog(catalog, src.instrument, venue, market, symbol, dataset)
            except DataError as exc:
                raise DataError(f"data.sources.{n}.dataset: {exc}") from None
            if source.kind != src.kind:
                raise ConfigError(
                    f"data.sources.{n}.kind: {src.kind!r}{src.defaulted_kind()}, but dataset {src.dataset!r} holds "
                    f"{source.kind}: give kind: {source.kind}"
                )
            sources.append(source)
    check_contract_sizes(config, sources)
    check_unsynced_books(config, sources)
    check_stale_feeds(config, sources)
    check_missed_trades(config, sources)
    end_ns = config.data.end_ns
    # The config's end is exclusive, the replay's inclusive.
    return Replay(sources, start_ns=config.data.start_ns, end_ns=None if end_ns is None else end_ns - 1)


def _overlaps(config: RunConfig, a: int, b: int) -> bool:
    """Whether the run's window (``data.start``, ``data.end``; either unset: open) overlaps the stretch ``a``..``b``."""
    start, end = config.data.start_ns, config.data.end_ns
    return (start is None or start < b) and (end is None or end > a)


def check_contract_sizes(config: RunConfig, sources: Sequence[ReplaySource]) -> None:
    """Refuse a trades source whose manifest records a contract size other than its instrument's.

    A run reads trade sizes in its instrument's units: bars built from them and the venue's fills
    multiply them by the config's ``contract_size``. A dataset whose sizes count contracts of
    another size (:meth:`ReplaySource.contract_size`, recorded by the importer that knew the venue's
    instrument) would make every volume, notional and fill off by their ratio without a word.

    A catalog trades dataset outside a ``spot`` market that records none is refused as well (as
    ``data bars`` refuses it): its sizes may count contracts of any size, and reading them as the
    instrument's would be off by their ratio without a word (100 times for 0.01 BTC contracts read
    as BTC). Only a spot instrument of contract size 1 takes it, its trades being in base units.

    A plain trades file records no unit and is not checked: its sizes are read as contracts of the
    instrument's ``contract_size`` (the README's "data bars" notes; import it with ``--contract-size``
    to have it checked).

    Raises
    ------
    ConfigError
        Naming the source, its dataset's contract size, the instrument's and the config field; or the
        dataset recording none and the ``tradebus data set-contract-size`` command that records it.
    """
    index = {inst.instrument_id: n for n, inst in enumerate(config.instruments)}
    for n, src in enumerate(sources):
        if src.instrument_id not in index or src.kind != "trades" or src.catalog_root is None:
            continue
        recorded = src.contract_size()
        inst = config.instruments[index[src.instrument_id]]
        if recorded is None:
            if src.market == "spot" or (inst.kind == InstrumentKind.SPOT and inst.contract_size == 1.0):
                continue
            raise ConfigError(
                f"data.sources.{n}.dataset: the trades of {src.describe()} record no contract size, and the trades of "
                f"a {src.market!r} market may count contracts: their sizes cannot be read as "
                f"{src.instrument_id}'s (instruments.{index[src.instrument_id]}.contract_size "
                f"{inst.contract_size:g}) without knowing it; record it with tradebus data set-contract-size "
                f"{src.venue}/{src.market}/{src.symbol}/{src.dataset} SIZE --catalog {src.catalog_root} (the venue's "
                "base units per contract; 1 if its sizes are base units)"
            )
        if recorded != inst.contract_size:
            raise ConfigError(
                f"data.sources.{n}.dataset: the trades of {src.describe()} count contracts of {recorded:g} base "
                f"units (its manifest's contract_size, recorded when it was imported), but "
                f"instruments.{index[src.instrument_id]}.contract_size of {src.instrument_id} is "
                f"{inst.contract_size:g}: every trade size would be read in the wrong unit; give the instrument "
                "the venue's contract size, or replay a dataset of its sizes"
            )


def check_unsynced_books(config: RunConfig, sources: Sequence[ReplaySource]) -> None:
    """Refuse a run whose window overlaps a stretch where a book source it replays was out of sync.

    In such a stretch (:meth:`ReplaySource.unsynced`, from a recording that lost a book update) the
    dataset has no book rows until a snapshot resyncs it, so whatever reads the replayed book -- a
    ``fill_on: book`` venue matching orders, a strategy's book handler or the quotes it derives
    from the book (``TouchQuoter``) -- would read the book as it was before the stretch, whatever
    the run fills on. A run outside every stretch is not affected.

    Raises
    ------
    DataError
        Naming the source, its instrument, the stretch, what would read the stale book and the
        ``data.start``/``data.end`` that avoid it.
    """
    for n, src in enumerate(sources):
        if src.kind != "book":
            continue
        for a, b in src.unsynced():
            if _overlaps(config, a, b):
                drop = ""
                if config.venue.fill_on == "book":
                    reader = "fill_on: book would match orders against the book as it was before the stretch"
                else:
                    drop = f", or leave data.sources.{n} out if no strategy reads the book"
                    readers = [f"{path} ({entry.name})" for path, entry in strategy_entries(config)
                               if src.instrument_id in entry.instruments]
                    reader = (f"the run replays it to {', '.join(readers) or 'its strategies'}, whose book "
                              "handlers would read the book as it was before the stretch")
                raise DataError(
                    f"data.sources.{n}.dataset: the {src.instrument_id} book ({src.describe()}) was out of sync "
                    f"from {format_ns(a)} (its last row before the stretch) to the snapshot at {format_ns(b)}, "
                    f"with no book rows in between: {reader}; set data.start to {format_ns(b)} (the "
                    f"snapshot) or data.end at or before {format_ns(a)} to run outside it{drop}"
                )


def check_stale_feeds(config: RunConfig, sources: Sequence[ReplaySource]) -> None:
    """Refuse a run whose window overlaps a stretch where the recorded feed of a source's instrument was stale.

    In such a stretch (:meth:`ReplaySource.stale`, from a paper recording's stale-feed episode:
    :mod:`tradebus.node.recording_import`) the paper daemon's market guard denied every new order
    on the instrument. A backtest has no market guard (its data is trusted): over the stretch it
    would place and fill orders the daemon denied, so it is refused, as a book stretch out of sync
    is, rather than run with decisions the recorded session could not take. Denying them in the
    backtest instead would need the guard in every kernel a config builds (sweeps' accelerated
    tier included) for a result that still differs from paper in its venue; ``tradebus replay``
    of the recording runs the paper daemon's guard itself. A run outside every stretch is not
    affected, nor a catalog imported before the stretches were stored. With ``data.allow_stale``
    the run goes on over them, with one WARNING per stretch (a stretch stored in several datasets
    of its instrument is one stretch).

    Raises
    ------
    DataError
        Naming the source, its instrument, the feed, the stretch and the ``data.start``/``data.end``
        that avoid it (not with ``data.allow_stale``).
    """
    warned: set[tuple[str, int, int, str]] = set()
    for n, src in enumerate(sources):
        for a, b, feed in src.stale():
            if not _overlaps(config, a, b):
                continue
            if config.data.allow_stale:
                if (src.instrument_id, a, b, feed) not in warned:
                    warned.add((src.instrument_id, a, b, feed))
                    logger.warning(
                        "data.allow_stale: running over the stretch where the {} feed {} of the recording was stale, "
                        "from {} to {} (data.sources.{}: {}): the paper daemon denied every new order on {} there; "
                        "the data is what it received (nothing, then what came after), and this backtest places "
                        "and fills orders in it",
                        src.instrument_id, feed, format_ns(a), format_ns(b), n, src.describe(), src.instrument_id,
                    )
                continue
            raise DataError(
                f"data.sources.{n}.dataset: the {src.instrument_id} feed {feed} of the recording this dataset "
                f"({src.describe()}) was imported from was stale from {format_ns(a)} (its watchdog's FeedStale) "
                f"to {format_ns(b)} (when the daemon's market guard let orders through again): the paper daemon "
                f"denied every new order on {src.instrument_id} in between, and a backtest, which has no market "
                f"guard, would place and fill them; set data.start to {format_ns(b)} or data.end at or "
                f"before {format_ns(a)} to run outside it, play the recording with tradebus replay, which "
                "denies them as the daemon did, or set data.allow_stale: true to run over it with what the feed "
                "delivered"
            )


def check_missed_trades(config: RunConfig, sources: Sequence[ReplaySource]) -> None:
    """Refuse a run whose window overlaps a gap in the trade ids of a trades source it replays.

    In such a gap (:meth:`ReplaySource.missed_trades`, from a recording whose REST fetch of the
    missing ids did not fill it: :mod:`tradebus.node.recording_import`) trades the venue printed
    are not in the dataset: the strategy would not see them, a ``fill_on: trades`` venue would not
    fill on them, and bars built from the trades would leave them out, all without a word. So the
    run is refused, as a stale-feed stretch is (:func:`check_stale_feeds`). ``data.allow_missed_trades``
    runs over the gaps with one WARNING per gap; it is not ``data.allow_stale``: a stale stretch
    holds what the venue sent (the daemon denied orders there), a gap lacks data the venue printed,
    and accepting one does not accept the other. A run outside every gap is not affected, nor a
    catalog imported before the gaps were stored.

    Raises
    ------
    DataError
        Naming the source, its instrument, the ids and count lost, the gap's times, the
        ``data.start``/``data.end`` that avoid it and ``data.allow_missed_trades``.
    """
    warned: set[tuple[str, int, int, int, int]] = set()
    for n, src in enumerate(sources):
        for a, b, first, last, lost in src.missed_trades():
            if not _overlaps(config, a, b):
                continue
            if config.data.allow_missed_trades:
                if (src.instrument_id, a, b, first, last) not in warned:
                    warned.add((src.instrument_id, a, b, first, last))
                    logger.warning(
                        "data.allow_missed_trades: running over {} trades of {} (ids {}..{}) missing between {} "
                        "and {} (data.sources.{}: {}): the venue printed them, the strategy does not see them and "
                        "the backtest does not fill on them",
                        lost, src.instrument_id, first, last, format_ns(a), format_ns(b), n, src.describe(),
                    )
                continue
            raise DataError(
                f"data.sources.{n}.dataset: {lost} trades of {src.instrument_id} (ids {first}..{last}) are missing "
                f"from this dataset ({src.describe()}) between {format_ns(a)} (the last trade before them) and "
                f"{format_ns(b)} (the trade that revealed the gap): the venue printed them, but the recording it "
                "was imported from has no fetch of them that filled the gap, so the strategy would not see them "
                f"and the backtest would not fill on them; set data.start to {format_ns(b)} or data.end "
                f"at or before {format_ns(a)} to run outside it, or set data.allow_missed_trades: true to "
                "run over it without them"
            )


def perpetual_data(config: RunConfig) -> list[MarkPrice | FundingRate]:
    """The mark prices and funding rates of ``config.data.marks``/``funding`` within its time range.

    The marks are led by the one in force at ``data.start`` (:func:`~tradebus.data.perpetual.marks_in_window`).

    Raises
    ------
    ConfigError
        A file does not exist (names the field).
    DataError
        A file is malformed (names the file).
    """
    start, end = config.data.start_ns, config.data.end_ns
    messages: list[MarkPrice | FundingRate] = []
    for key, read in (("marks", read_mark_prices), ("funding", read_funding_rates)):
        for n, entry in enumerate(getattr(config.data, key)):
            if not entry.file.is_file():
                raise ConfigError(f"data.{key}.{n}.file: no such file {entry.file}")
            rows = read(entry.file, entry.instrument)
            if key == "marks":
                messages.extend(marks_in_window(rows, start, end))
            else:  # each row is a funding settled at its time: none before the start is the run's
                messages.extend(
                    m for m in rows if (start is None or m.ts_init >= start) and (end is None or m.ts_init < end)
                )
    return messages


def _client_id_rules(instruments: Sequence[Instrument]) -> dict[str, ClientIdRule]:
    """The venues' client order id rules of ``instruments``: imports the venue packages, so a kernel asks
    for them only when a strategy gives an order its own id."""
    from tradebus.adapters.registry import client_id_rules

    return client_id_rules(instruments)


def build_kernel(config: RunConfig, perpetual: Sequence[MarkPrice | FundingRate] | None = None) -> Kernel:
    """A backtest :class:`Kernel` with the config's instruments, venue, risk, features and strategy.

    ``perpetual`` replaces the mark prices and funding rates of ``config.data.marks``/``funding``
    (:func:`perpetual_data`; the lookahead detector hands perturbed copies).
    """
    kernel = Kernel(
        config.instrument_map().values(),
        venue_config=config.venue,
        risk_config=config.risk,
        initial_cash=config.initial_cash,
        balances=config.balances,
        borrow_rates=config.annual_borrow_rates,
        features=config.features,
        equity_interval_ns=parse_duration(config.report.equity_interval),
        trade_bars={s.instrument: s.bars.builder(contract_size=config.instrument_map()[s.instrument].contract_size,
                                                     label=s.instrument)
                    for s in config.data.sources if s.bars is not None},
        client_id_rules=functools.partial(_client_id_rules, tuple(config.instrument_map().values())),
    )
    strategies = build_strategies([entry for _, entry in strategy_entries(config)])  # refusals before any file read
    if config.data.marks or config.data.funding:
        kernel.feed_perpetual_data(perpetual_data(config) if perpetual is None else perpetual)
    for strategy in strategies:
        kernel.add_strategy(strategy)
    return kernel


def run_backtest(
    config_path: str | Path,
    out_dir: str | Path | None = None,
    *,
    force: bool = False,
    on_batch_factory: Callable[[int], Callable[[int], None] | None] | None = None,
    overrides: Sequence[str] = (),
    report: bool = False,
) -> tuple[RunResult, dict[str, Any], Path]:
    """Validate, run and write a backtest; return the result, its metrics and the output directory.

    Parameters
    ----------
    config_path
        The YAML run config.
    out_dir
        Output directory; default ``runs/<config file stem>``.
    force
        Write into an output directory that holds other files (left untouched).
    on_batch_factory
        Given the total number of rows, returns the progress callback for :meth:`Kernel.run`.
    overrides
        ``"dotted.path=value"`` config overrides (:func:`tradebus.config.apply_overrides`).
    report
        Also write ``tearsheet.html`` (an earlier run's is rewritten either way).

    Raises
    ------
    ConfigError, DataError
        Before any output is written (and nothing is left behind on failure); a
        ``ConfigError`` for an output directory holding files the run does not write.
    """
    config_path = Path(config_path)
    config = load_config(config_path, overrides=overrides)
    out = Path(out_dir) if out_dir is not None else _default_out(config_path)
    run_dir = RunDirectory(out, "backtest", force=force)
    try:
        try:
            kernel = build_kernel(config)
            kernel.prepare()  # builds the feature banks: bad feature specs fail before any data is read
        except FeatureError as exc:
            raise ConfigError(f"{config_path}: features: {exc}") from None
        except ConfigError as exc:
            raise ConfigError(f"{config_path}: {exc}") from None
        try:
            replay = build_replay(config)
        except (ConfigError, DataError) as exc:
            raise type(exc)(f"{config_path}: {exc}") from None
        with replay.pinned():  # the run reads the version validated, whatever an --overwrite does meanwhile
            rows = replay.validate()
            if rows == 0:
                raise DataError(f"{config_path}: {empty_window(config, replay)}")
            on_batch = on_batch_factory(rows) if on_batch_factory is not None else None
            result = kernel.run(replay, on_batch=on_batch)
        warn_perpetual_gaps(config, result)
        warn_denials(result.denials, "backtest")
        metrics = write_outputs(run_dir, result, kernel.instruments, dump_config(config), report=report)
    finally:
        run_dir.close()
    return result, metrics, out


def _default_out(config_path: Path) -> Path:
    """A backtest's output directory without ``--out``: ``runs/<config file stem>``."""
    return Path("runs") / config_path.stem


def _interrupted(exc: BaseException, err: Console, command: str, out: Path, before: dict[str, Any]) -> None:
    """Exit as the signal that stopped ``command`` with ``exc`` says, after one line on what ``out`` holds now.

    ``before``: :func:`~tradebus.reports.writers.file_identity` of each of ``out``'s own files of the command's run
    (``tearsheet.html`` among them) and of its ``INCOMPLETE`` marker when the command began. A run stopped after its
    files were moved in, before its page replaced :data:`~tradebus.reports.writers.UNWRITTEN_PAGE`, says so. Any
    other exception is raised again.
    """
    stop = interruption(exc)
    if stop is None:
        raise exc
    marker = file_identity(out / INCOMPLETE_MARKER)
    if marker is not None and marker != before[INCOMPLETE_MARKER]:
        now = {name: file_identity(out / name) for name in before if name not in (INCOMPLETE_MARKER, REPORT_FILE)}
        ours = any(identity is not None and identity != before[name] for name, identity in now.items())
        earlier = any(identity is not None and identity == before[name] for name, identity in now.items())
        files = {(True, True): "its files are a mix of this run's and the earlier ones",
                 (True, False): "its files are part of this run's, none an earlier run's",
                 (False, True): "its files are the earlier ones, none of this run's yet",
                 (False, False): "none of the run's files yet"}[ours, earlier]
        what = f"while writing its outputs: {out} holds the {INCOMPLETE_MARKER} marker ({files}); run it again"
    elif file_identity(out / "metrics.json") == before["metrics.json"]:
        what = f"before writing its outputs: nothing was written ({out} is as it was)"
    else:
        what = f"after writing its outputs to {out}"
        if is_unwritten_page(out / REPORT_FILE):
            what += f"; its {REPORT_FILE} was not written (the page there says so): tradebus report {out} writes it"
    err.print(f"{command} interrupted ({stop[1]}) {what}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(stop[0]) from None


def warn_perpetual_gaps(config: RunConfig, result: RunResult) -> None:
    """Warn of each stretch of the run where a ``data.funding`` or ``data.marks`` file has no row (:func:`row_gaps`,
    :func:`mark_gaps`).

    The run's window is the config's ``data.start``/``end``, or where it has none the first and
    last market data of ``result``. A position held in such a stretch paid no funding for it, or
    was valued at the mark before it (which stands still: no PnL moves, no liquidation).
    """
    start = config.data.start_ns if config.data.start_ns is not None else result.start_ns
    end = config.data.end_ns if config.data.end_ns is not None else result.end_ns
    for n, entry in enumerate(config.data.funding):
        interval, gaps = row_gaps(read_funding_rates(entry.file, entry.instrument), start, end)
        for a, b in gaps:
            logger.warning(
                "data.funding.{} ({}, a funding every {:g} h): no funding row from {} to {}; a position in {} "
                "held then paid no funding for that time",
                n, entry.file.name, interval / 3.6e12, format_ns(a), format_ns(b), entry.instrument,
            )
    for n, entry in enumerate(config.data.marks):
        interval, gaps = mark_gaps(read_mark_prices(entry.file, entry.instrument), start, end)
        for a, b in gaps:
            logger.warning(
                "data.marks.{} ({}, a mark every {}): no mark price from {} to {}; a position in {} held "
                "then was valued at the mark before it, which stood still (or, before the first mark, at its "
                "last trade, bar close or mid)",
                n, entry.file.name, f"{interval / 6e10:g} min" if interval >= 60_000_000_000 else format_interval(interval),
                format_ns(a), format_ns(b), entry.instrument,
            )


def check_window(config_path: str | Path, config: RunConfig) -> None:
    """Refuse a config whose data window holds no row of any source (reads up to the first row).

    Raises
    ------
    ConfigError, DataError
        As :func:`build_replay`; a ``DataError`` naming the window and each source's span.
    """
    try:
        replay = build_replay(config)
    except (ConfigError, DataError) as exc:
        raise type(exc)(f"{config_path}: {exc}") from None
    if next(iter(replay.batches()), None) is None:
        raise DataError(f"{config_path}: {empty_window(config, replay)}")


def empty_window(config: RunConfig, replay: Replay) -> str:
    """Why a run has nothing to run on: its window and where each source's data lies."""
    start, end = format_ns(config.data.start_ns), format_ns(config.data.end_ns)
    if start and end:
        window = f" between data.start {start} and data.end {end} (exclusive)"
    elif start or end:
        window = f" from data.start {start}" if start else f" before data.end {end}"
    else:
        window = ""
    spans = []
    for src in replay.sources:
        span = src.span()
        where = "holds no rows" if span is None else f"spans {format_ns(span[0])} to {format_ns(span[1])}"
        spans.append(f"{src.instrument_id} ({src.describe()}) {where}")
    return f"data: no source has a row{window}: " + "; ".join(spans)


class LazyProgress:
    """A rich progress bar that appears only once a run has lasted ``after_s`` seconds.

    Call it with the number of rows done since the last call (the kernel's ``on_batch``).
    """

    def __init__(self, console: Console, total: int, after_s: float = _PROGRESS_AFTER_S) -> None:
        self._console = console
        self._total = total
        self._after_s = after_s
        self._done = 0
        self._t0 = time.perf_counter()
        self._progress: Progress | None = None
        self._task: Any = None

    def __call__(self, rows: int) -> None:
        self._done += rows
        if self._progress is None:
            if time.perf_counter() - self._t0 < self._after_s:
                return
            self._progress = Progress(
                TextColumn("backtest"),
                BarColumn(),
                TextColumn("{task.completed:,}/{task.total:,} rows"),
                TimeRemainingColumn(),
                console=self._console,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task("run", total=self._total)
        self._progress.update(self._task, completed=self._done)

    @property
    def shown(self) -> bool:
        """Whether the bar has appeared."""
        return self._progress is not None

    def close(self) -> None:
        """Remove the bar (if it appeared)."""
        if self._progress is not None:
            self._progress.stop()


def progress_for(console: Console, total: int) -> LazyProgress | None:
    """A :class:`LazyProgress` for a run of ``total`` rows, or ``None`` when ``console`` is not a terminal."""
    if not console.is_terminal:
        return None
    return LazyProgress(console, total, after_s=_PROGRESS_AFTER_S)


def _print_summary(console: Console, out: Path, title: str) -> None:
    from tradebus.reports.rundata import load_run
    from tradebus.reports.summary import print_titled, summary_tables

    print_titled(console, f"{title} -> {out}", *summary_tables(load_run(out)))


def _fail(exc: TradebusError, console: Console) -> None:
    code = next(code for cls, code in EXIT_CODES if isinstance(exc, cls))
    if isinstance(exc, StrategyError):
        # The user's own bug: its whole traceback, chained to this error, at --log-level DEBUG.
        logger.opt(exception=exc).debug("traceback of the strategy's exception")
    console.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@app.command()
def backtest(
    config: Annotated[Path, typer.Argument(help="YAML run config.", show_default=False)],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output directory.", show_default="runs/<config stem>")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help=_FORCE_HELP)] = False,
    set_: Overrides = None,
    log_level: LogLevel = "WARNING",
    report_: Annotated[bool, typer.Option("--report", help=_REPORT_HELP)] = False,
) -> None:
    """Run a backtest and write fills, orders, equity, trades, metrics and the resolved config."""
    setup_logging(log_level)
    console = Console()
    err = Console(stderr=True)
    progress: LazyProgress | None = None

    def factory(total: int) -> Callable[[int], None] | None:
        nonlocal progress
        progress = progress_for(console, total)
        return progress

    target = out if out is not None else _default_out(config)
    before = {name: file_identity(target / name) for name in (*OWN_FILES["backtest"], INCOMPLETE_MARKER)}
    try:
        try:
            _, _, out_dir = run_backtest(
                config, out, force=force, on_batch_factory=factory, overrides=set_ or (), report=report_
            )
        except TradebusError as exc:
            _fail(exc, err)
        finally:
            if progress is not None:
                progress.close()
        _print_summary(console, out_dir, "backtest")
    except (KeyboardInterrupt, SystemExit) as exc:
        _interrupted(exc, err, "backtest", target, before)


@app.command()
def paper(
    config: Annotated[Path, typer.Argument(help="YAML paper config (feeds, strategy, venue, risk).", show_default=False)],
    out: DaemonOut = None,
    force: Annotated[bool, typer.Option("--force", help=_FORCE_HELP)] = False,
    max_seconds: Annotated[float | None, typer.Option(help="Stop after this many seconds of running, counted from the feeds' start (after the warm-up, which compiles the feature kernels on a cold cache).")] = None,
    max_messages: Annotated[int | None, typer.Option(help="Stop after this many market-data messages.")] = None,
    set_: Overrides = None,
    log_level: LogLevel = "INFO",
    report_: Annotated[bool, typer.Option("--report", help=_REPORT_HELP + " Needs --out.")] = False,
) -> None:
    """Run the paper-trading daemon (live market data, simulated fills) until SIGINT/SIGTERM."""
    from tradebus.node.starting import StartingSignals

    with StartingSignals() as starting:  # a stop asked for while the daemon's modules load is its stop
        from tradebus.node.daemon import run_paper

        setup_logging(log_level, "{time:HH:mm:ss.SSS} {level} {message}")
        before = file_identity(out / "metrics.json") if out is not None else None
        try:
            if report_ and out is None:
                raise ConfigError("--report writes the tearsheet into the run outputs: give --out too")
            run_paper(
                config, out, max_seconds=max_seconds, max_messages=max_messages, force=force, overrides=set_ or (),
                report=report_, starting=starting,
            )
        except TradebusError as exc:
            _fail(exc, Console(stderr=True))
    if out is None:
        return
    after = file_identity(out / "metrics.json")
    if after is None or after == before:  # stopped before it started (in its warm-up): no outputs written
        Console().print(f"paper -> {escape(str(out))}: no run outputs written (the daemon stopped before it started)",
                        highlight=False)
        return
    _print_summary(Console(), out, "paper")


@app.command()
def replay(
    recording: Annotated[Path, typer.Argument(help="Recorded frames (recorder or hftbacktest format).", show_default=False)],
    config: Annotated[Path, typer.Option("--config", "-c", help="The paper config of the recorded feeds.", show_default=False)],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output directory.", show_default="runs/replay-<recording name>")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help=_FORCE_HELP)] = False,
    set_: Overrides = None,
    log_level: LogLevel = "WARNING",
    report_: Annotated[bool, typer.Option("--report", help=_REPORT_HELP)] = False,
    session: Annotated[
        int | None,
        typer.Option(
            "--session", min=1, show_default=False,
            help="Replay only the N-th daemon session of a recording a restarted daemon appended to (each begins at a run:start line; 1: the first). Such a recording is refused without it (exit 3). A later session starts from what its daemon's journal restored (the config's journal:), rebuilt by replaying the sessions before it into a temporary journal.",
        ),
    ] = None,
) -> None:
    """Play a recording through the venue parsers into the kernel, as a backtest, and write its outputs."""
    from tradebus.node.playback import default_out, run_playback

    setup_logging(log_level)
    err = Console(stderr=True)
    target = out if out is not None else default_out(recording)
    before = {name: file_identity(target / name) for name in (*OWN_FILES["replay"], INCOMPLETE_MARKER)}
    try:
        try:
            result, out_dir = run_playback(
                recording, config, out, force=force, overrides=set_ or (), report=report_, session=session
            )
        except TradebusError as exc:
            _fail(exc, err)
        _print_summary(Console(), out_dir, "replay")
    except (KeyboardInterrupt, SystemExit) as exc:
        _interrupted(exc, err, "replay", target, before)


@app.command()
def serve(
    recording: Annotated[Path, typer.Argument(help="Recorder file or hftbacktest capture.", show_default=False)],
    venue: Annotated[str, typer.Option(help="Protocol to speak: a venue name of the adapter registry, e.g. binance.")] = "binance",
    speed: Annotated[float, typer.Option(help="Pace: 1 = as recorded, 10 = ten times faster, 0 = at once.")] = 1.0,
    futures: Annotated[bool, typer.Option(help="Serve Binance USD-M REST depth snapshots.")] = False,
    config: Annotated[Path | None, typer.Option(help="A paper config to point at this server.")] = None,
    write_config: Annotated[Path | None, typer.Option(help="Where to write that copy of the config.")] = None,
    hold: Annotated[
        bool, typer.Option("--hold", help="Paced: stop the recording while no daemon reads it (a restart goes on where it stopped).")
    ] = False,
    connection: Annotated[
        list[str] | None,
        typer.Option(
            "--connection",
            help=(
                "Serve only this recorded connection's frames (repeatable): linear of a Bybit recording of the linear "
                "and spot connections, binance-usdm of a daemon's binance-usdm:1."
            ),
            show_default=False,
        ),
    ] = None,
    log_level: LogLevel = "INFO",
) -> None:
    """Serve a recording on 127.0.0.1 in a venue's WebSocket protocol, for a paper daemon.

    The recording is one stream, played once at the given pace on one clock from the first subscription: a connection starts where the stream is, after the frames sent to the connections before it (a reconnecting or restarted daemon goes on at the venue's now; with --hold the stream stops while no daemon reads it, and a restarted daemon goes on where the last one stopped; at --speed 0 the stream waits for its reader, and a reconnecting daemon goes on where it left off, a restarted one after the frames in flight when the last one stopped), and once every frame was sent the server stays up, sending nothing new, until Ctrl-C or SIGTERM. A --config subscribing an instrument the recording lacks is refused (exit 2), naming the recording's streams, and so is one whose feeds of two markets subscribe one symbol (spot and USD-M BTCUSDT: both would read its one stream), or one subscribing a stream the recording holds from connections of two markets (serve one with --connection); a recording whose REST depth snapshots are of two markets' connections is refused without --connection (the server answers every depth request with one of them).
    """
    from tradebus.adapters.registry import VENUES
    from tradebus.node.playback import serve_recording

    setup_logging(log_level)
    if venue not in VENUES:
        raise typer.BadParameter(f"{venue!r}: use {', '.join(VENUES)}", param_hint="--venue")
    if (config is None) != (write_config is None):
        raise typer.BadParameter("give both --config and --write-config, or neither", param_hint="--config")
    if not speed >= 0:
        _fail(ConfigError(f"--speed must be > 0, or 0 for at once; got {speed:g}"), Console(stderr=True))
    if not recording.is_file():
        _fail(ConfigError(f"{recording}: no such recording"), Console(stderr=True))
    if config is not None and not config.is_file():
        _fail(ConfigError(f"--config {config}: no such file"), Console(stderr=True))
    try:
        asyncio.run(
            serve_recording(
                recording,
                venue,
                speed=speed or None,
                futures=futures,
                config=config,
                write_config=write_config,
                hold=hold,
                connections=connection or (),
            )
        )
    except TradebusError as exc:
        _fail(exc, Console(stderr=True))


@app.command("instruments")
def instruments(
    venue: Annotated[str, typer.Argument(help="A venue of the adapter registry, e.g. okx.", show_default=False)],
    market: Annotated[str, typer.Argument(help="The venue's market of the file, e.g. swap, usdm, linear.", show_default=False)],
    instruments_file: Annotated[
        Path, typer.Argument(help="A saved instruments REST response of that venue and market.", show_default=False)
    ],
    tiers: Annotated[
        Path | None,
        typer.Option("--tiers", help="A saved margin tiers REST response of the venue (its perpetuals' tiers).", show_default=False),
    ] = None,
    symbol: Annotated[
        list[str] | None,
        typer.Option("--symbol", "-s", help="Keep this instrument (symbol or instrument id; repeatable). Default: all.", show_default=False),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the block to this file.", show_default="stdout")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing --out file.")] = False,
    log_level: LogLevel = "WARNING",
) -> None:
    """Print the instruments: block of a run config from a venue's saved instruments (and margin tiers) responses.

    Fees are not in these responses: the block leaves maker_fee and taker_fee at 0 (a comment says so).
    """
    from tradebus.config.venue_instruments import instruments_block

    setup_logging(log_level)
    try:
        if out is not None and out.exists() and not force:
            raise ConfigError(f"--out {out}: the file exists; give --force to overwrite it")
        text = instruments_block(venue, market, instruments_file, tiers, symbol or ())
        if out is None:
            typer.echo(text, nl=False)
            return
        partial = out.with_name(f".{out.name}.partial")
        try:
            partial.write_text(text)
            partial.replace(out)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise ConfigError(f"--out {out}: cannot write ({exc})") from None
    except TradebusError as exc:
        _fail(exc, Console(stderr=True))


@features_app.command("list")
def features_list(
    kind: Annotated[str | None, typer.Argument(help="Show one kind in detail.", show_default=False)] = None,
) -> None:
    """List the feature kinds with their inputs, parameters and output names."""
    from tradebus.features.registry import all_kinds, get_kind

    console = Console()
    try:
        kinds = (get_kind(kind),) if kind is not None else all_kinds()
    except FeatureError as exc:
        _fail(ConfigError(str(exc)), Console(stderr=True))
    columns = ("kind", "inputs", "parameters (default)", "outputs (as NAME.output)")
    table = Table(show_header=True, header_style="bold", title="feature kinds" if kind is None else None)
    for column in columns if kind is not None else (*columns, "description"):
        table.add_column(column, overflow="fold")
    for k in kinds:
        outputs = "NAME" if len(k.outputs) == 1 else ", ".join(f"NAME.{o}" for o in k.outputs)
        doc = inspect.cleandoc(k.step.__doc__ or "")
        cells = (k.name, ", ".join(k.inputs), k.parameters_doc(), outputs)
        table.add_row(*(escape(cell) for cell in (cells if kind is not None else (*cells, (doc.splitlines() or [""])[0]))))
    console.print(table)
    if kind is not None:  # the docstring at the terminal's width, not folded into a table column
        console.print(escape(doc), highlight=False)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``)."""
    app(args=argv, prog_name="tradebus")


if __name__ == "__main__":
    main()
