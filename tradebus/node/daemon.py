"""The paper-trading daemon: live market data, the kernel, the simulated venue and a journal.

:class:`PaperNode` runs on one asyncio loop. Each configured feed is a venue client
(:mod:`tradebus.adapters.binance`, ``okx``, ``bybit``) whose task hands every normalised
message to a :class:`~tradebus.node.router.NodeRouter` (:mod:`tradebus.node.feeds`), synchronously, on the loop's thread::

    venue WS --frame--> client (recv time, recorder) --> parser/book sync --> NodeRouter
        Trade/Quote/Bar  -> kernel.process (clock, venue matching, features, strategies);
                            trades and quotes first tell the book-liveness rule they flow
        BookSnapshot/BookDelta -> the liveness rule, then the bus (the book is the adapter's,
                                  read through ``kernel.cache.book``)
        FeedStale -> MarketGuard (orders on the feed's instruments stop), then the bus
        BookResynced, MarkPrice, FundingRate -> the bus (and the log)
        TradesMissed -> the kernel's trade bars (no bar over trades lost for good), then the
                        bus (a gap in a venue's trade ids; the adapter logged it and delivers
                        the trades it could fetch, in order, after it)

The kernel is the backtest kernel with a :class:`~tradebus.engine.clock.LiveClock` (whose timers and
alerts run at their due time, however late the busy loop fires them, and on which each message is
handled at its frame's receive time, however late the loop reads it, as in a replay), a
:class:`~tradebus.execution.paper.PaperVenue` (the simulated matching engine, with arrival alerts on the wall
clock) and a :class:`~tradebus.risk.guard.GuardedRiskGate`: the risk gate plus one check
in front of the others, asked of the :class:`~tradebus.risk.guard.MarketGuard` -- an instrument whose feed went stale
(``FeedStale`` until its stream's next market-data message), whose subscribed L2 book is not in
sync with the venue (asked of the adapter at decision time) or whose book is frozen
(trades or quotes flow but the book has not changed for the feed's ``book_max_idle``:
:mod:`tradebus.risk.liveness`; the book is resynced) gets ``OrderDenied`` with
the reason ``"feed stale: ..."`` or ``"book unsynced: ..."``.

Lifecycle of :meth:`PaperNode.run`:

1. warm up the Numba feature and book kernels and the drivers of the strategies' feature banks (before any feed's
   socket is opened), on a thread of its own: the loop serves ``/health`` (503, ``warming up``), ``/metrics`` and
   the signals meanwhile, and a stop then ends the run at once, nothing recovered or started (a failure of the
   warm-up too, raised naming it), and the journal and recording it created, holding no session, are removed as a
   refused run's are (:meth:`PaperNode.withdraw`);
2. replay the SQLite journal (:class:`~tradebus.execution.journal.Journal`): orders,
   positions, the risk gate's trading and breaker state, the run's fills and its equity samples
   (with the span and counts of market data of the earlier sessions) are rebuilt, and
   client order ids begin a new epoch; orders left UNKNOWN are resolved by querying the venue, per the
   journal's contract. The simulated venue of the previous process stopped with it, so an
   order it was working resolves to CANCELED with that reason: nothing is re-sent,
   invented or duplicated, and new client order ids never repeat journaled ones; the
   whole hours a margin loan was owed while the daemon was down are priced by the venue's
   REST klines (:mod:`tradebus.node.missed_hours`), charged before the first message (the prices
   are recorded in the ``run:start`` line: a replay charges them alike, fetching nothing);
3. start the strategies (at one instant, recorded as a ``run:start`` line: a replay starts its kernel
   there), then the feed clients (which subscribe);
4. run until SIGINT/SIGTERM (handled until the daemon has stopped whole: one received while it stops cuts the
   shutdown's step under way short, and :meth:`PaperNode.run` then raises ``KeyboardInterrupt`` or ``SystemExit(143)``),
   ``max_seconds``, ``max_messages``, a fatal feed error or an
   exception a strategy's hook raised (on a message, a timer or a venue's answer: the run then
   stops as on a signal and raises :class:`~tradebus.errors.StrategyError` naming the strategy,
   the hook and the time; market data after it is dropped);
5. at once, before any await: stop the feed clients (no frame handled or recorded after) and the timers and
   alerts (the due ones fired, ``run:stop`` recorded), so no timer sends an order while the daemon stops,
   and release the trades held behind a trade-id gap whose fetch is in flight (the fetch canceled), as a
   replay does at that line;
   then wait for the clients' tasks, stop the kernel, close recorder and journal, each step whatever an
   earlier one raised or a cancellation of the daemon's task cut short (:class:`ShutdownSteps`: the
   cancellation, else the first error, is raised after the last); then the
   operations layer, whatever the shutdown raised (the stop alert is sent and the queued alerts flushed).

Every order decision is logged on one line with its reason (``decision ...``).

This module is the lifecycle of a paper run; its parts live in :mod:`tradebus.node.feeds`,
:mod:`tradebus.node.router`, :mod:`tradebus.risk.guard`, :mod:`tradebus.execution.paper` and
:mod:`tradebus.reports.outputs`. Venues are reached only through :mod:`tradebus.adapters.registry`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from loguru import logger

from tradebus.adapters.common.recorder import RUN_PREFIX, FrameRecorder, hold_recording
from tradebus.config import strategy_entries
from tradebus.engine.clock import Clock, LiveClock
from tradebus.engine.kernel import JournaledSample, Kernel, RunResult
from tradebus.engine.messages import OrderDenied
from tradebus.errors import ConfigError, DataError, FeatureError, StrategyError, TradebusError
from tradebus.execution.costs import charged_fees
from tradebus.execution.engine import OrderTimeouts
from tradebus.execution.journal import SQLITE_COMPANIONS, Journal, JournalOwner
from tradebus.execution.paper import PaperVenue
from tradebus.execution.venue import Venue
from tradebus.locks import take_lock
from tradebus.node.config import PaperConfig, dump_paper_config, load_paper_config, named_refusal, naming_config
from tradebus.node.feeds import Feed, attach_feeds, build_feeds
from tradebus.node.missed_hours import RUN_START_KEY
from tradebus.node.router import NodeRouter
from tradebus.node.starting import StartingSignals
from tradebus.ops.hooks import OpsHooks
from tradebus.ops.logs import log_files, taken_by_retention
from tradebus.reports.denials import DenialTally
from tradebus.reports.outputs import write_outputs
from tradebus.reports.stream import OutputStream
from tradebus.risk.guard import GuardedRiskGate, MarketGuard
from tradebus.strategies.base import build_strategies
from tradebus.strategies.failure import strategy_failure

if TYPE_CHECKING:
    from tradebus.reports.writers import RunDirectory, RunKind

__all__ = [
    "NodeSummary",
    "PaperNode",
    "ShutdownSteps",
    "build_paper_kernel",
    "close_recorder",
    "check_bot_token",
    "check_log_beside_outputs",
    "kept_files",
    "outputs_to_write",
    "recover_journal",
    "run_paper",
    "run_start_line",
]

V = TypeVar("V", bound=Venue)

#: Seconds between the journal's checkpoints, made off the event loop's thread.
JOURNAL_CHECKPOINT_S = 0.5


class ShutdownSteps:
    """The steps of a daemon's shutdown, each run whatever an earlier one raised.

    Each step runs in :meth:`step`; the first error is kept (and logged, the shutdown going on), a
    later one is logged. The daemon's task cancelled during a step (a second SIGINT or SIGTERM while
    it stops: :meth:`PaperNode._on_signal`; a caller's timeout) ends that step, logged as such, not as
    a failure; the later steps still run (the cancellation has been delivered: their awaits go on).
    Once every step has run, :meth:`raise_cancellation_or_first_error` raises the cancellation if a
    step met one (the first error having been logged), else the first error.
    """

    def __init__(self) -> None:
        #: The first error a step raised (``None``: none did).
        self.failure: BaseException | None = None
        #: The cancellation a step met (``None``: none).
        self.cancelled: asyncio.CancelledError | None = None

    @contextlib.contextmanager
    def step(self, what: str) -> Iterator[None]:
        """Run the body as the step ``what`` (its error is kept or logged, not raised)."""
        try:
            yield
        except asyncio.CancelledError as exc:
            if self.cancelled is None:
                self.cancelled = exc
            logger.warning("stopping: {} was cut short, the daemon's task being cancelled; the shutdown goes on", what)
        except BaseException as exc:  # every step runs: a later one closes what this one did not
            if self.failure is None:
                self.failure = exc
                logger.error("stopping: {} failed ({}: {}); the shutdown goes on", what, type(exc).__name__, exc)
            else:
                logger.error(
                    "stopping: {} failed too ({}: {}); the first error is raised", what, type(exc).__name__, exc
                )

    def raise_cancellation_or_first_error(self) -> None:
        """Raise the cancellation a step met, else the first error a step raised, if any."""
        if self.cancelled is not None:
            raise self.cancelled
        if self.failure is not None:
            raise self.failure


def build_paper_kernel(
    config: PaperConfig,
    clock: Clock,
    guard: MarketGuard,
    journal: Journal | None = None,
    venue: V | None = None,
    timeouts: OrderTimeouts | None = None,
) -> tuple[Kernel, V | PaperVenue]:
    """The kernel of a paper run (or of its playback): guarded risk gate, paper venue, journal.

    A live run passes its own ``venue`` and request ``timeouts``; the rest is the same. ``venue.maker_fee`` and
    ``taker_fee`` override the instruments' rates in every account check (the fee reserved for an order, the fee to
    close in a maintenance margin), paper or live: the paper venue charges them, a live venue its own, booked as
    each fill reports it.

    Raises
    ------
    ConfigError
        A feature spec the kernel cannot build (``features: ...``, naming the feature), before anything is compiled.
    """
    fees = config.venue.maker_fee, config.venue.taker_fee
    instruments = {iid: charged_fees(inst, *fees) for iid, inst in config.instrument_map().items()}
    if venue is None:
        venue = PaperVenue(clock, instruments, config.venue)  # type: ignore[assignment]
    kernel = Kernel(
        instruments.values(),
        clock=clock,
        venue=venue,
        risk_config=config.risk,
        risk_factory=lambda risk, portfolio, clk, bus: GuardedRiskGate(risk, portfolio, clk, bus, guard),
        journal=journal,
        initial_cash=config.initial_cash,
        balances=config.balances,
        fee_assets=config.fee_assets(),
        borrow_rates=config.annual_borrow_rates,
        features=config.features,
        equity_interval_ns=config.report.equity_interval_ns,
        timeouts=timeouts,
        trade_bars={iid: bars.builder(whole_only=True, contract_size=instruments[iid].contract_size, label=iid)
                    for iid, bars in config.bars.items()},
        bar_instruments=[iid for iid, kinds in config.data_kinds().items() if "bars" in kinds],
        joins_mid_stream=True,
        client_id_rules=config.client_id_rules(),
    )
    kernel.bar_intervals(config.bar_intervals())  # a funding in the first gap of its klines, after a restart too
    for strategy in build_strategies([entry for _, entry in strategy_entries(config)]):
        kernel.add_strategy(strategy)
    try:
        kernel.check_features()  # a bad spec, before the warm-up compiles the banks and before any socket opens
    except FeatureError as exc:
        raise ConfigError(f"features: {exc}") from None
    return kernel, venue


@dataclass
class NodeSummary:
    """What a daemon run did (written as ``node.json`` next to the run outputs).

    This session's: a daemon restarted on its journal counts only what it received since it
    started (``messages``, ``counts``), while ``metrics.json`` counts every session's market data.
    """

    stop_reason: str = ""
    started_ns: int = 0
    stopped_ns: int = 0
    messages: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    feeds: dict[str, dict[str, int]] = field(default_factory=dict)
    recovered_orders: int = 0
    resolved_unknown: list[str] = field(default_factory=list)
    recovered_positions: dict[str, float] = field(default_factory=dict)
    positions: dict[str, float] = field(default_factory=dict)
    orders: int = 0
    fills: int = 0

    def to_json(self) -> str:
        """Deterministically ordered JSON text."""
        return json.dumps(asdict(self), indent=2, sort_keys=True)


class PaperNode:
    """The paper-trading daemon (see the module docstring).

    Parameters
    ----------
    config
        The validated paper config (paths resolved).
    max_seconds
        Stop after this many seconds of running (``None``: until a signal).
    max_messages
        Stop after this many market-data messages (``None``: no limit).
    handle_signals
        Install SIGINT/SIGTERM handlers for the duration of :meth:`run` (needs the main thread), the shutdown
        included; the handlers found are put back after. The first signal is the daemon's stop; one received
        once the daemon is stopping (a second Ctrl-C, whatever stopped it) cuts the step of the shutdown under
        way short (:class:`ShutdownSteps`: the later steps still run) and :meth:`run` then raises
        ``KeyboardInterrupt`` (SIGINT) or ``SystemExit(143)`` (SIGTERM): ``tradebus paper``/``live`` exit 130 or 143.
    run_dir
        The output directory: fills, orders, equity, funding and prices are written there row
        by row as they happen (:class:`~tradebus.reports.stream.OutputStream`, ``outputs``), and
        neither fills nor closed orders pile up in memory. ``None``: the results stay in
        ``kernel.result``.

    Notes
    -----
    Construction builds the kernel and opens the journal (no I/O on the network, no
    compilation); call :meth:`run` once. ``kernel``, ``router``, ``guard`` and ``venue``
    are available as soon as the node is constructed (tests and benchmarks subscribe to
    ``kernel.bus``); ``feeds`` once :meth:`run` started them.
    """

    #: What the daemon calls itself to its operator (alerts, ``/status``).
    mode = "paper"
    #: The type of :attr:`summary` (``node.json``).
    summary_class: type[NodeSummary] = NodeSummary
    #: Timers and alerts run at their due time, messages are handled at their frame's receive time
    #: (:class:`~tradebus.engine.clock.LiveClock` ``replay_times``): the simulated venue takes what
    #: they decide from there, as a replay of the recording does.
    replay_times = True
    #: The recording's periodic flushes (:class:`~tradebus.adapters.common.recorder.FrameRecorder`'s
    #: ``flush_every`` frames, ``flush_interval`` seconds); every journal write flushes it too.
    record_flush_every = 256
    record_flush_interval = 1.0
    #: Whether the venue books fills and funding between market messages (a live venue's user stream and
    #: reconciliation): the stop then samples equity again if the portfolio changed after the last sample.
    _venue_books_between_messages = False

    def __init__(
        self,
        config: PaperConfig,
        *,
        max_seconds: float | None = None,
        max_messages: int | None = None,
        handle_signals: bool = True,
        run_dir: RunDirectory | None = None,
    ) -> None:
        if max_seconds is not None and not max_seconds > 0:
            raise ConfigError(f"paper: max_seconds must be > 0, got {max_seconds!r}")
        if max_messages is not None and max_messages < 1:
            raise ConfigError(f"paper: max_messages must be >= 1, got {max_messages!r}")
        self.config = config
        self.max_seconds = max_seconds
        self.handle_signals = handle_signals
        self.clock = LiveClock(replay_times=self.replay_times)
        self.guard = MarketGuard()
        self.ops = None if config.ops is None else OpsHooks(config.ops, self.mode)
        # What this run created of the journal's and the recording's paths, in order: a refused run removes it
        # (withdraw()), never a path that was there, or that someone else made meanwhile.
        self._created: list[Path] = []
        # The recording held (flock) until run() ends, from before the journal opens: a second daemon recording into
        # the file is refused before it opens anything.
        self._record_lock: int | None = None
        # The first file the daemon could not write (journal, recording, outputs): it stops on it.
        self._failure: TradebusError | None = None
        self.journal = None
        try:
            if config.record is not None:
                _make_parent(config.record, "record", self._created)  # fails here, before the run writes any output
                _claim(config.record, self._created)
                self._record_lock = hold_recording(config.record)
            if config.journal is not None:
                self.journal = _open_journal(config.journal, config.journal_sync, config.journal_owner(), self._created)
                self.journal.on_failure = self._journal_failed
            self.kernel, self.venue = self._build_kernel()
            _check_holdings_fed(config, self.kernel)
        except Exception:
            self.withdraw()
            raise
        self.router = NodeRouter(
            self.kernel, self.guard, max_messages=max_messages, on_limit=self._limit_reached,
            on_failure=self._strategy_failed,
        )
        self.outputs = None if run_dir is None else OutputStream(run_dir, self.kernel, self._outputs_failed)
        #: This session's denials per check, warned of at the stop (one line per check, :meth:`_summarize`).
        self.denials = DenialTally(f"{self.mode} daemon")
        self.kernel.bus.subscribe(OrderDenied, self.denials.add)
        self.feeds: list[Feed] = []
        self.recorder: FrameRecorder | None = None
        # The recording of this run, open until the kernel stops (a live daemon closes it itself, after).
        self._run_recorder: FrameRecorder | None = None
        self.summary = self.summary_class()
        self.running = asyncio.Event()
        #: True while :meth:`run` warms up the feature kernels (``/health`` says so).
        self.warming_up = False
        self._stop: asyncio.Event | None = None
        self._stop_reason = ""
        # The task running run(), and the signal that cut its shutdown short (None: none did).
        self._task: asyncio.Task[Any] | None = None
        self._cut_short_by: signal.Signals | None = None
        self._strategy_failure: StrategyError | None = None
        #: The refusal of the config :meth:`run` raised as it started (its ops port taken, its log file unwritable).
        self.refusal: ConfigError | None = None
        # Whether the shutdown starts the strategies not started yet (then stops them): false until the recovery
        # settled (a daemon stopped or failed before, in the warm-up or the recovery, calls neither on_start nor
        # on_stop), then what it settled.
        self._start_strategies = False
        # The counts of market data the journal's earlier sessions left in the results (node.json is this session's).
        self._counted_before = {"bars": 0, "trades": 0, "quotes": 0}
        # When the journal was replayed (None: the run has no journal), recorded in the run:start line.
        self._recovered_at: int | None = None
        # Whether the kernels were warmed up: a run stopped before (in the warm-up, or failing it) opened no socket and
        # wrote no journal entry, and removes what it created (withdraw()), as a refused run does.
        self._warmed = False
        # The prices (and reasons) of the interest hours missed while down, recorded in the run:start line.
        self._missed_record: dict[str, Any] | None = None

    def withdraw(self, keep_journal: bool = False) -> None:
        """A refused run, before it traded: close the journal, then remove what this run created of the journal's and
        the recording's paths (their files and the directories made for them), leaving the disk as it found it;
        ``keep_journal``: all but the journal, its SQLite files and its directories (it holds what a restart needs)."""
        if self.journal is not None and not self.journal.closed:
            self.journal.close()
        self._release_recording()
        created = self._created
        if keep_journal and self.config.journal is not None:
            journal = self.config.journal.absolute()
            kept = {journal, *journal.parents, *(Path(f"{journal}{end}") for end in SQLITE_COMPANIONS)}
            created = [path for path in created if path not in kept]
        _remove_created(created)

    def _build_kernel(self) -> tuple[Kernel, Any]:
        """The run's kernel and venue (the live daemon overrides it with the exchange's venue)."""
        return build_paper_kernel(self.config, self.clock, self.guard, self.journal)

    # ------------------------------------------------------------------ control

    def stop(self, reason: str = "stop requested") -> None:
        """Ask :meth:`run` to shut down (safe from a signal handler or any callback on the loop)."""
        if not self._stop_reason:
            self._stop_reason = reason
        if self._stop is not None:
            self._stop.set()

    def _limit_reached(self) -> None:
        self.stop(f"max_messages reached ({self.router.max_messages})")

    def _strategy_failed(self, failure: StrategyError) -> None:
        """A strategy's hook raised: stop as on a signal (:meth:`run` then raises ``failure``)."""
        if self._strategy_failure is None:
            self._strategy_failure = failure
            logger.error("stopping: {}", failure)
        elif failure is not self._strategy_failure:
            logger.error("secondary error while stopping: {} (the error raised is the first: {})", failure,
                         self._strategy_failure)
        self.stop(f"strategy {failure.strategy_id!r} failed in {failure.hook}: {_what_failed(failure)}")

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """The loop's exception handler while the daemon runs: a timer's or a venue alert's call
        into a strategy that raised stops the daemon; anything else is reported as asyncio does."""
        exc = context.get("exception")
        failure = strategy_failure(exc, self.clock.now_ns()) if isinstance(exc, Exception) else None
        if failure is None:
            loop.default_exception_handler(context)
            return
        failure.__cause__ = exc
        self._strategy_failed(failure)

    def _outputs_failed(self, error: ConfigError) -> None:
        """A row of the outputs could not be written: stop (:meth:`run` then raises ``error``)."""
        if self.journal is not None and self.journal.failure is None:
            logger.error("stopping: journal {} holds every order and fill; a restart rewrites the outputs from it",
                         self.journal.path)
        self._failed("outputs", error)

    def _journal_failed(self, error: DataError) -> None:
        """The journal could not be written (nothing was sent that it does not hold): stop, :meth:`run` raises ``error``."""
        self._failed("journal", error)

    def _recording_failed(self, error: ConfigError) -> None:
        """The recording could not be written: stop (:meth:`run` then raises ``error``)."""
        self._failed("recording", error)

    def _failed(self, what: str, error: TradebusError) -> None:
        if self._failure is None:
            self._failure = error
        self.stop(f"{what} failed: {error}")

    def _new_recorder(self, path: Path) -> FrameRecorder:
        """The run's recorder on ``path``: a write that fails stops the daemon.

        The journal flushes it before each of its writes: a daemon killed (even by ``kill -9``) leaves a
        recording that holds every frame its journaled orders and fills were decided on, so a replay of the
        next session (``--session``) restores what the daemon's journal did.
        """
        recorder = FrameRecorder(
            path, self.record_flush_every, self.record_flush_interval, on_failure=self._recording_failed
        )
        if self.journal is not None:
            self.journal.before_write = recorder.flush_written
        return recorder

    # ------------------------------------------------------------------ run

    async def run(self) -> NodeSummary:
        """Warm up, recover, subscribe, trade until stopped, shut down; return the summary.

        With ``handle_signals``, SIGINT and SIGTERM are the daemon's until it has stopped whole (see the class
        parameters): a signal while it stops cuts the step under way short, and ``KeyboardInterrupt`` (SIGINT) or
        ``SystemExit(143)`` (SIGTERM) is raised once the rest of the shutdown has run.

        Raises
        ------
        VenueError
            A feed failed fatally (after the daemon shut down cleanly).
        ConfigError
            An output file could not be written (after the daemon shut down cleanly; the
            journal holds every order and fill, and a restart rewrites the outputs from it),
            or the recording could not (it is readable up to its last flush).
        DataError
            The journal could not be written (after the daemon shut down cleanly; no order was
            sent that it does not hold).
        StrategyError
            A strategy's hook raised (after the daemon shut down cleanly, as on a signal).
        """
        loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._stop = asyncio.Event()
        if self._stop_reason:
            self._stop.set()
        # Installed first (a signal during the warm-up or the recovery stops the daemon cleanly) and kept until the
        # daemon has stopped whole: removed before the shutdown, a second SIGTERM took the default action (the
        # process killed in the middle of its stop) and a second SIGINT raised KeyboardInterrupt anywhere.
        signals = self._install_signals(loop) if self.handle_signals else []
        try:
            return await self._run()
        except asyncio.CancelledError:
            cut_short = self._cut_short_by
            if cut_short is None:
                raise
            if cut_short is signal.SIGINT:
                raise KeyboardInterrupt from None
            raise SystemExit(128 + cut_short) from None
        finally:
            _restore_signals(loop, signals)
            self._release_recording()

    def _release_recording(self) -> None:
        """Let go of the recording's lock (another daemon may record into it from now on), removing the file if the
        lock created it and nothing was recorded (a daemon refused or stopped before it recorded)."""
        lock, self._record_lock = self._record_lock, None
        if lock is None:
            return
        record = self.config.record
        if record is not None and record.absolute() in self._created and os.fstat(lock).st_size == 0:
            record.unlink(missing_ok=True)
        os.close(lock)

    async def _run(self) -> NodeSummary:
        """The body of :meth:`run`, signals handled (the live daemon adds its steps around it)."""
        assert self._stop is not None
        loop = asyncio.get_running_loop()
        summary = self.summary
        summary.started_ns = self.clock.now_ns()
        exception_handler = loop.get_exception_handler()
        loop.set_exception_handler(self._loop_exception)
        tasks: dict[asyncio.Task[None], Feed] = {}
        failure: BaseException | None = None
        cause: Exception | None = None  # what the start raised: the error told, whatever the shutdown meets
        refused = False
        try:
            if self.ops is not None:
                try:
                    await self.ops.start(self)
                except ConfigError as exc:  # its port taken: refused as a config is, before anything was recovered
                    refused = True
                    self.refusal = exc
                    self.stop(str(exc))
                    raise
            if not self.config.warm_up or await self._warm_up():  # else stopped while warming up: nothing started
                self._warmed = True
                failure = await self._start_and_serve(tasks)
        except Exception as exc:
            cause = exc
            if isinstance(exc, StrategyError):
                self._strategy_failed(exc)
            else:
                self.stop(f"{type(exc).__name__}: {exc}")
            raise
        finally:
            self.running.clear()  # stopping: an operator's /flatten still waiting for its cancels sends nothing
            # What stopped the daemon (its start's error, or a failure met while running): the error told,
            # whatever the shutdown then meets.
            first = cause or self._strategy_failure or self._failure or failure
            try:
                await self._shutdown_and_stop_ops(tasks)
            except Exception as secondary:
                if first is None:
                    raise
                logger.error("secondary error while stopping ({}: {}); the error raised is the one that stopped the "
                             "daemon: {}: {}", type(secondary).__name__, secondary, type(first).__name__, first)
            finally:
                loop.set_exception_handler(exception_handler)
                if refused or not self._warmed:  # nothing recovered or started: the journal holds its meta alone
                    if not refused and self._created:
                        made = [path for path in (self.config.journal, self.config.record)
                                if path is not None and path.absolute() in self._created]
                        logger.info("nothing was recovered or started: removing what this run created ({})",
                                    ", ".join(map(str, made)) or "directories")
                    self.withdraw()
        # What stopped the daemon, else what its shutdown met (an on_stop's error, an on_stop's order the journal refused).
        failure = first or self._strategy_failure or self._failure
        if self._strategy_failure is not None and failure is not self._strategy_failure:
            logger.error("secondary error while stopping: {} (the error raised is the one that stopped the daemon: "
                         "{}: {})", self._strategy_failure, type(failure).__name__, failure)
        if failure is not None:
            raise failure
        return summary

    async def _warm_up(self) -> bool:
        """Compile (or load) the feature and book kernels on a thread of their own; whether they were, before a stop.

        The drivers of the strategies' feature banks too (:meth:`~tradebus.engine.kernel.Kernel.compile_features`):
        the banks the kernel's start builds on the loop then compile nothing (0.3 s measured for TickEmaCross's
        on a cold cache, which held the loop, a live daemon's reconciliation included).

        The loop goes on meanwhile: ``/health`` answers (503, ``warming up``), ``/metrics`` too, and
        a signal stops the daemon at once (a cold compile takes a minute or more). The compiling thread
        holds the GIL for most of its work, so the loop waits up to the switch interval (5 ms) for it
        at each turn. Nothing on the loop may compile meanwhile: Numba's compile lock would hold it
        until the warm-up ends (the strategies start, and the kernel's Numba code first runs, after).
        Asked to stop, it returns ``False`` at once; the thread, a daemon thread, is left to finish or
        to end with the process.

        Raises
        ------
        Exception
            What the warm-up raised, with a note naming the warm-up; the daemon is stopped (that reason) and
            its shutdown neither recovers nor starts anything.
        """
        from tradebus.adapters.registry import warm_up as warm_up_books
        from tradebus.features.warmup import warm_up

        assert self._stop is not None
        loop = asyncio.get_running_loop()
        done: asyncio.Future[float] = loop.create_future()

        def settle(outcome: Callable[[], None]) -> None:
            if not done.done():
                outcome()

        def compile_kernels() -> None:
            try:
                elapsed = warm_up()
                warm_up_books()  # compiled at the first book message otherwise: on the loop
                self.kernel.compile_features()  # the strategies' banks: compiled as they start otherwise, on the loop
            except BaseException as exc:  # handed to the loop: run() raises it
                result: Callable[[], None] = partial(done.set_exception, exc)
            else:
                result = partial(done.set_result, elapsed)
            with contextlib.suppress(RuntimeError):  # the loop is closed: the daemon stopped meanwhile
                loop.call_soon_threadsafe(settle, result)

        logger.info("warming up the feature kernels")
        self.warming_up = True
        threading.Thread(target=compile_kernels, name="tradebus:warm-up", daemon=True).start()
        stopper = asyncio.create_task(self._stop.wait(), name="node:stop")
        try:
            await asyncio.wait([done, stopper], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            self.warming_up = False
        if not done.done():
            logger.warning("stopped while warming up the feature kernels: nothing was recovered or started")
            return False
        failed = done.exception()
        if failed is not None:
            what = f"warming up the feature kernels failed: {type(failed).__name__}: {failed}"
            logger.error("{}; nothing was recovered or started", what)
            self.stop(what)
            failed.add_note(f"tradebus: {what} (the daemon stopped; nothing was recovered or started)")
            raise failed
        logger.info("feature kernels warmed up in {:.1f} s", done.result())
        return True

    async def _start_and_serve(self, tasks: dict[asyncio.Task[None], Feed]) -> BaseException | None:
        """Recover, start the strategies and the feeds (put in ``tasks``), and serve until stopped: what failed."""
        assert self._stop is not None
        self._recover()
        await self._price_missed_hours()
        self._start_strategies = await self._settle_before_start()
        if self.outputs is not None:
            self.outputs.start()
        if self.config.record is not None and self.recorder is None:
            self.recorder = self._new_recorder(self.config.record)
        self._run_recorder = self.recorder
        started = self.clock.now_ns()
        self._record_run("start", started, run_start_line(self._recovered_at, self.summary.recovered_orders,
                                                                 self._missed_record))
        if self._start_strategies:
            with self.clock.pinned(started):  # on_start's timers start where the replay starts them
                self.kernel.start()
        sink = self.router if self.ops is None else self.ops.sink(self.router)
        self.feeds = build_feeds(self.config, sink, live=True, recorder=self.recorder)
        attach_feeds(self.feeds, self.guard, self.kernel.cache)
        for feed in self.feeds:
            if feed.client is not None:
                feed.client.frame_listener = self.router  # due alerts fire between frames, as in a replay
        if self.ops is not None:
            self.ops.watch(self.feeds)
        self._feeds_built()
        await asyncio.sleep(0)  # let a signal received so far be handled before subscribing
        if self._stop.is_set():
            return None
        tasks.update({asyncio.create_task(feed.run(), name=f"feed:{feed.name}"): feed for feed in self.feeds})
        self.running.set()
        logger.info(
            "{} daemon running: {} feed(s), strategies {}",
            self.mode,
            len(self.feeds),
            ", ".join(s.strategy_id if s.strategy_id == type(s).__name__ else f"{s.strategy_id} ({type(s).__name__})"
                      for s in self.kernel.strategies),
        )
        # Everything alive now (modules, compiled kernels, recovered state) is frozen out of
        # the cyclic collector: otherwise each gen-2 pass walks it all (~0.5 s on the event loop).
        gc.freeze()
        try:
            return await self._serve(tasks)
        finally:
            gc.unfreeze()

    def _record_stop(self) -> int:
        """Fire the timers and alerts due by now, then record the moment (``run:stop``): a replay fires the same.

        Its clock fires a timer before the first line at or after it; without this line one due
        after the last frame, which the daemon fired on the wall clock, never fires in the replay.
        Returns the moment (ns).
        """
        now = self.clock.now_ns()
        self.clock.run_due(now)
        self._record_run("stop", now)
        return now

    def _record_run(self, moment: str, ts_ns: int, text: str = "") -> None:
        """Record a moment of the run (``run:start``, ``run:stop``) at ``ts_ns``, with ``text``, if the run records."""
        recorder = self._run_recorder
        if recorder is None or recorder.failure is not None or recorder.closed:
            return
        try:
            recorder.write(ts_ns, RUN_PREFIX + moment, text)
        except ConfigError:
            pass  # told to on_failure: run() raises it

    async def _settle_before_start(self) -> bool:
        """Called after the recovery, before the kernel starts; whether to start the strategies.

        The live daemon may wait there for its start-up reconciliation, and answer ``False`` when
        it is stopped first.
        """
        return True

    def _feeds_built(self) -> None:
        """Called once ``self.feeds`` exist, before they run (the live daemon hooks its venue to them)."""

    async def _serve(self, tasks: dict[asyncio.Task[None], Feed]) -> BaseException | None:
        assert self._stop is not None
        stopper = asyncio.create_task(self._stop.wait(), name="node:stop")
        try:
            done, _ = await asyncio.wait(
                [stopper, *tasks], timeout=self.max_seconds, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopper.cancel()
        if not done:
            self.stop(f"max_seconds reached ({self.max_seconds} s)")
            return None
        for task in done:
            if task is stopper or task.cancelled():
                continue
            feed = tasks[task]
            exc = task.exception()
            if exc is not None:
                self.stop(f"feed {feed.name} failed: {exc}")
                if self._failure is None:
                    logger.error("feed {} failed, stopping the daemon: {}", feed.name, exc)
                return exc
            self.stop(f"feed {feed.name} ended")
        return None

    def _stop_deciding(self) -> None:
        """Stop, at once, what decides orders on its own: the feeds (no frame is handled or recorded from now on),
        then the timers and alerts (the due ones fired and the stop recorded first); then the run ends for the
        feeds at the recorded stop (:meth:`~tradebus.adapters.common.feed.Feed.end_run`): the trades they hold
        behind a gap whose fetch is in flight are released (the fetch canceled, its answer neither recorded nor
        handled), as a replay of the recording releases them at its ``run:stop`` line, its last.

        Called before any await of the shutdown: a timer going on meanwhile (the shutdown waits for tasks to
        end, for the feeds to close) sent orders after the stop, and on a busy loop each of them made the
        next wait longer, so the daemon never got to stop its clock (a 20 ms timer: thousands of orders
        after a SIGTERM, the daemon still running minutes later).
        """
        for feed in self.feeds:
            feed.stop()
        stop_ns = self._record_stop()
        self.clock.stop()  # nothing fires after the recorded stop, as in a replay (an on_stop's timer neither)
        for feed in self.feeds:
            feed.end_run(stop_ns)

    async def _stop_trading(self, tasks: dict[asyncio.Task[None], Feed], steps: ShutdownSteps) -> None:
        """Wait for the feeds (told to stop by :meth:`_stop_deciding`) to end, then stop the strategies (``on_stop``,
        which may still send orders), each in ``steps``."""
        with steps.step("stopping the feeds"):
            pending = [t for t in tasks if not t.done()]
            if pending:
                _, still = await asyncio.wait(pending, timeout=5.0)
                for task in still:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        with steps.step("stopping the strategies"):
            try:
                self.kernel.end_strategies(start=self._start_strategies)
            except StrategyError as failure:  # an on_stop raised: the daemon still closes its files
                self._strategy_failed(failure)
            except DataError as error:  # an on_stop's order the failed journal refused (not sent): run() raises it
                if self.journal is None or error is not self.journal.failure:
                    raise

    async def _shutdown(self, tasks: dict[asyncio.Task[None], Feed]) -> None:
        """Stop trading, close the venue, stop the kernel, close the recording and the journal, make the summary.

        Each step runs whatever an earlier one raised (:class:`ShutdownSteps`): the first error is
        raised after the last step, and a later one is logged.
        """
        steps = ShutdownSteps()
        with steps.step("stopping the feeds and the timers"):
            self._stop_deciding()
        logger.info("{} daemon stopping: {}", self.mode, self._stop_reason or "stopped")
        await self._shutdown_steps(tasks, steps)
        steps.raise_cancellation_or_first_error()

    async def _shutdown_steps(self, tasks: dict[asyncio.Task[None], Feed], steps: ShutdownSteps) -> None:
        """The steps of :meth:`_shutdown`, each run in ``steps`` (the live daemon adds its own before them)."""
        await self._stop_trading(tasks, steps)
        with steps.step("closing the venue"):
            self.venue.close()
        with steps.step("stopping the kernel"):
            # the strategies have ended: the results are collected
            self.kernel.stop(start=self._start_strategies, late_sample=self._venue_books_between_messages)
        if self.recorder is not None:
            with steps.step("closing the recording"):
                close_recorder(self.recorder)
        if self.journal is not None:
            with steps.step("closing the journal"):
                self.journal.close()
        with steps.step("making the summary"):
            self._summarize()

    def _summarize(self) -> None:
        """Fill :attr:`summary` in at the stop: the reason, the time, the counts, the positions."""
        summary = self.summary
        summary.stop_reason = self._stop_reason or "stopped"
        summary.stopped_ns = self.clock.now_ns()
        summary.messages = self.router.messages
        result = self.kernel.result
        before = self._counted_before
        counts = {
            "bars": result.bars - before["bars"],
            "trades": result.trades - before["trades"],
            "quotes": result.quotes - before["quotes"],
            **self.router.counts,
        }
        summary.counts = dict(sorted(counts.items()))
        for feed in self.feeds:
            client = feed.client
            if client is not None:
                summary.feeds[feed.name] = {
                    "connections": client.connections,
                    "frames": client.frames,
                    "rejected": client.rejected,
                    "unexpected_streams": sum(feed.unexpected_streams().values()),
                }
        portfolio = self.kernel.portfolio
        summary.positions = {iid: portfolio.position(iid) for iid in self.kernel.instruments}
        summary.orders = self.kernel.orders.created
        summary.fills = len(self.kernel.result.fills)
        self.denials.warn()
        logger.info(
            "{} daemon stopped: {} messages, {} orders, {} fills, positions {}",
            self.mode,
            summary.messages,
            summary.orders,
            summary.fills,
            summary.positions,
        )

    async def _shutdown_and_stop_ops(self, tasks: dict[asyncio.Task[None], Feed]) -> None:
        """:meth:`_shutdown`, then stop the operations layer last, whatever the shutdown raised.

        The stop alert is sent and the queued alerts flushed either way; after a failed shutdown the
        stop alert names the error, which is raised again.
        """
        try:
            await self._shutdown(tasks)
        except BaseException as exc:
            if self.ops is not None:
                reason = self._stop_reason or "stopped"
                await self.ops.stop(f"{reason}; the shutdown failed: {type(exc).__name__}: {exc}")
            raise
        if self.ops is not None:
            await self.ops.stop(self.summary.stop_reason)

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> list[tuple[signal.Signals, Any]]:
        """Take SIGINT and SIGTERM on ``loop`` (:meth:`_on_signal`); return each with the handler it had."""
        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(sig)
            loop.add_signal_handler(sig, self._on_signal, sig)
            installed.append((sig, previous))
        return installed

    def _on_signal(self, sig: signal.Signals) -> None:
        """The daemon's stop; once it is stopping, cut the step of the shutdown under way short (see ``handle_signals``)."""
        assert self._stop is not None
        if not self._stop.is_set():
            self.stop(f"signal {sig.name}")
            return
        if self._cut_short_by is None:
            self._cut_short_by = sig
        logger.warning("signal {} while stopping ({}): the step of the shutdown under way is cut short, the rest runs",
                       sig.name, self._stop_reason or "stopped")
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def _recover(self) -> None:
        """Rebuild orders and positions from the journal and resolve the UNKNOWN orders."""
        journal = self.journal
        if journal is None:
            return
        kernel = self.kernel
        self._recovered_at = now = self.clock.now_ns()
        with self.clock.pinned(now):  # at one instant, recorded in the run:start line: a replay recovers there
            unknown = recover_journal(kernel, self.venue, journal, now)
            result = kernel.result
            self._counted_before = {"bars": result.bars, "trades": result.trades, "quotes": result.quotes}
            orders = kernel.orders.orders()
            if not orders:
                return
            positions = {iid: kernel.portfolio.position(iid) for iid in kernel.instruments}
            self._resolve_recovered(unknown)
        summary = self.summary
        summary.recovered_orders = len(orders)
        summary.resolved_unknown = [o.client_order_id for o in unknown]
        summary.recovered_positions = {iid: qty for iid, qty in positions.items() if qty}
        logger.info(
            "recovered {} order(s) from journal {}; positions {}",
            len(orders),
            journal.path,
            summary.recovered_positions,
        )

    async def _price_missed_hours(self) -> None:
        """Fetch the venue's price of each interest hour missed while down (off the loop), before the kernel starts.

        What it fetched goes into the ``run:start`` line (:func:`run_start_line`), for a replay of the session.
        """
        interest = self.kernel.interest
        missed = interest.missed_hours(self.clock.now_ns()) if interest is not None else {}
        if interest is not None and missed:
            from tradebus.node.missed_hours import fetch_missed_prices, missed_record

            prices, failures = await asyncio.to_thread(fetch_missed_prices, self.config, missed)
            interest.price_missed(prices, failures)
            self._missed_record = missed_record(prices, failures)  # a replay charges them so, asking the venue nothing

    def _resolve_recovered(self, unknown: list[Any]) -> None:
        """Resolve the orders the journal left UNKNOWN, each by a query of the venue."""
        for order in unknown:
            self.kernel.execution.resolve_unknown(order.client_order_id)
            logger.warning("recovered order {} resolved: {} ({})", order.client_order_id, order.status, order.reason)


def _check_holdings_fed(config: PaperConfig, kernel: Kernel) -> None:
    """Refuse a starting balance valued by an instrument no feed subscribes (it would never get a price).

    Equity would count it 0 for good, the equity samples wait for its price, and so do the mark-driven breakers
    (:meth:`RiskGate.restore <tradebus.risk.gate.RiskGate.restore>`): the drawdown, daily-loss and gross-exposure
    breakers would never evaluate.

    Raises
    ------
    ConfigError
        Naming the balance and the instrument that values it.
    """
    fed = {iid for feed in config.feeds for iid in feed.subscriptions}
    for asset, iid in kernel.portfolio.unpriced_holdings().items():
        if iid not in fed:
            raise ConfigError(
                f"balances.{asset}: {asset} is valued by {iid}, which no feed subscribes: equity would count it 0 "
                f"and the drawdown, daily-loss and gross-exposure breakers would wait for its price for good; "
                f"subscribe {iid} in feeds (its trades, quotes or bars) or leave {asset} out of balances"
            )


def recover_journal(kernel: Kernel, venue: Venue, journal: Journal, now_ns: int) -> list[Any]:
    """Rebuild ``kernel``'s orders, positions, risk state, results, equity samples and unpaid fundings from ``journal`` at ``now_ns``.

    What a daemon does as it starts on its journal (and a replay of a later session of its recording,
    :func:`~tradebus.node.playback.play`): the journal begins a new epoch of client order ids, and
    ``venue`` takes over the journaled positions and the orders of the stopped process; the positions are priced at
    the last equity sample's marks (the replayed fills priced them at the last fill). Returns the
    orders left UNKNOWN, in creation order: the caller resolves each with the venue.
    """
    unknown = journal.replay(kernel.orders, kernel.portfolio, now_ns, risk=kernel.risk, on_message=kernel.record_journaled)
    samples = journal.samples(JournaledSample)
    kernel.restore_samples(samples, journal.first_event())
    if samples:  # the replayed fills priced the positions at the last fill: the last sample is later
        last = samples[-1]
        for iid, price in zip(last.instruments, last.sample.marks, strict=True):
            if iid in kernel.instruments:
                kernel.portfolio.mark(iid, price)  # a NaN (never priced) is ignored
    if kernel.perpetuals is not None:  # after the journaled payments: a funding paid before the stop is skipped
        kernel.perpetuals.restore_due(journal.funding_due(), now_ns)
    orders = kernel.orders.orders()
    if orders:
        venue.resume({iid: kernel.portfolio.position(iid) for iid in kernel.instruments}, unknown, orders)
    return unknown


def run_start_line(recovered_ns: int | None, orders: int, missed_hours: dict[str, Any] | None = None) -> str:
    """The text of a ``run:start`` line: ``""``, or after a journal's recovery its time and the orders it restored,
    and the prices of the interest hours missed while down (``missed_hours``,
    :func:`~tradebus.node.missed_hours.missed_record`), if any were.

    A replay of the session recovers at that time, checks it restored as many orders and charges
    those hours at those prices (:func:`~tradebus.node.playback.play`).
    """
    if recovered_ns is None:
        return ""
    started: dict[str, Any] = {"recovered_ns": recovered_ns, "orders": orders}
    if missed_hours is not None:
        started[RUN_START_KEY] = missed_hours
    return json.dumps(started, sort_keys=True)


def _what_failed(failure: StrategyError) -> str:
    """The error of ``failure`` and where it was raised, without the ``strategy 'x' on_trade at <time>: `` its stop reason
    already says."""
    text = str(failure)
    head = f"strategy {failure.strategy_id!r} {failure.hook}"
    return text[len(head) :].partition(": ")[2] or text if text.startswith(head) else text


def _restore_signals(loop: asyncio.AbstractEventLoop, installed: list[tuple[signal.Signals, Any]]) -> None:
    """Remove the daemon's handlers from ``loop`` and put back the ones they replaced (``asyncio.run``'s SIGINT
    handler, the CLI's SIGTERM one): removed alone, SIGTERM would kill the process outright from then on."""
    for sig, previous in installed:
        loop.remove_signal_handler(sig)
        if previous is not None:  # None: a handler not set from Python, which cannot be put back
            signal.signal(sig, previous)


def close_recorder(recorder: FrameRecorder) -> None:
    """Close the recording; a failure to write its rest is its ``failure``, which stopped the daemon."""
    try:
        recorder.close()
    except ConfigError:
        pass  # told to on_failure: run() raises it


def _make_parent(path: Path, what: str, created: list[Path]) -> None:
    """Make the missing directories of ``path``, the outermost first, noting in ``created`` those this call made."""
    missing = []
    parent = path.parent.absolute()
    while not os.path.lexists(parent) and parent.parent != parent:
        missing.append(parent)
        parent = parent.parent
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except FileExistsError:
            continue  # made by someone else meanwhile: not this run's
        except OSError as exc:
            raise ConfigError(f"{what}: cannot create the directory of {path} ({exc.strerror})") from None
        created.append(directory)
    if not path.parent.is_dir():
        raise ConfigError(f"{what}: cannot create the directory of {path} (not a directory)")


def _claim(path: Path, created: list[Path], companions: Sequence[str] = ()) -> None:
    """Create ``path`` empty if nothing is there (noting it in ``created``); leave what is there to its opener.

    ``companions``: the suffixes of the files the opener keeps beside ``path`` (``<path><suffix>``); those not there
    before ``path`` was created are noted too, as this run's (one an earlier run left is not)."""
    absent = [Path(f"{path}{end}").absolute() for end in companions if not os.path.lexists(f"{path}{end}")]
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except OSError:
        return  # there already (or not to be made): the opener says what is wrong with it
    created.append(path.absolute())
    created.extend(absent)


def _remove_created(created: Sequence[Path]) -> None:
    """Remove what a refused run created (:func:`_make_parent`, :func:`_claim`), the last made first: a file with the
    companions noted with it unless a daemon holds its lock, a directory only if empty."""
    ours = set(created)
    companions = {
        Path(f"{path}{end}"): path for path in created for end in SQLITE_COMPANIONS if Path(f"{path}{end}") in ours
    }
    for path in reversed(created):
        if path in companions:
            continue  # removed with its file
        try:
            if path.is_dir() and not path.is_symlink():
                with contextlib.suppress(OSError):  # not empty: someone put a file there meanwhile
                    path.rmdir()
                continue
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                if take_lock(fd) is not None:
                    continue  # a daemon that opened it after this run took it over: it is that daemon's
                for name in (path, *(name for name, of in companions.items() if of == path)):
                    name.unlink(missing_ok=True)
            finally:
                os.close(fd)
        except FileNotFoundError:
            continue
        except OSError as exc:
            logger.warning("could not remove {}, created by this refused run: {}", path, exc.strerror)


def _open_journal(path: Path, synchronous: str, owner: JournalOwner, created: list[Path]) -> Journal:
    """The run's journal at ``path``, created (with its directories, noted in ``created``) if it is not there.

    Raises
    ------
    ConfigError
        ``path`` is not there but files SQLite keeps beside a journal are (an earlier run's, its journal deleted):
        SQLite would empty and then delete them as the new journal's own.
    """
    left = [f"{path}{end}" for end in SQLITE_COMPANIONS if os.path.lexists(f"{path}{end}")]
    if left and not os.path.lexists(path):
        raise ConfigError(
            f"journal: {path} is not there but files SQLite keeps beside a journal are: {', '.join(left)} (an earlier "
            f"run's, its journal deleted or moved?); SQLite would take them for the new journal's own and delete them: "
            f"move them away, or give the journal another name"
        )
    _make_parent(path, "journal", created)
    _claim(path, created, SQLITE_COMPANIONS)
    return Journal(path, synchronous, checkpoint_every=JOURNAL_CHECKPOINT_S, exclusive=True, owner=owner)  # type: ignore[arg-type]


def run_paper(
    config_path: str | Path,
    out_dir: str | Path | None = None,
    *,
    max_seconds: float | None = None,
    max_messages: int | None = None,
    force: bool = False,
    overrides: Sequence[str] = (),
    report: bool = False,
    starting: StartingSignals | None = None,
) -> tuple[NodeSummary, RunResult]:
    """Load a paper config, run the daemon until stopped, and write its outputs.

    With ``out_dir``, the run's ``fills.csv``, ``orders.csv``, ``equity.csv``, ``funding.csv``
    and ``prices.csv`` are written there row by row while the daemon runs, and its
    ``metrics.json``, ``trades.csv``, ``attribution.csv``, ``config.yaml`` (as ``tradebus
    backtest`` writes them) and ``node.json`` (:class:`NodeSummary`) when it stops. The
    directory may hold the config's journal, recording and log files (they are never touched);
    anything else is refused before the daemon starts, unless ``force``
    (:class:`~tradebus.reports.writers.RunDirectory`). ``report`` adds ``tearsheet.html``
    (an earlier run's is rewritten either way). ``starting``: the signals taken since the command started
    (:class:`~tradebus.node.starting.StartingSignals`; ``None``: taken from here). A daemon that fails before it starts writing
    (e.g. on an unreadable journal) writes nothing: an earlier run's outputs stay as they were.

    Raises
    ------
    ConfigError
        An invalid config, or an output directory holding files the run does not write
        (before any I/O); or an output file that cannot be written (a full disk: the daemon
        stops at the first failed write, the message names the file and the errno).
    VenueError
        A feed failed fatally.
    """

    if starting is None:
        with StartingSignals() as own:
            return _run_paper(config_path, out_dir, own, max_seconds=max_seconds, max_messages=max_messages,
                              force=force, overrides=overrides, report=report)
    return _run_paper(config_path, out_dir, starting, max_seconds=max_seconds, max_messages=max_messages,
                      force=force, overrides=overrides, report=report)


def _run_paper(
    config_path: str | Path,
    out_dir: str | Path | None,
    starting: StartingSignals,
    *,
    max_seconds: float | None,
    max_messages: int | None,
    force: bool,
    overrides: Sequence[str],
    report: bool,
) -> tuple[NodeSummary, RunResult]:
    """:func:`run_paper`, the signals of its start-up in ``starting``."""
    from tradebus.reports.writers import RunDirectory

    config = load_paper_config(config_path, overrides)
    with naming_config(config_path):
        check_bot_token(config)
        if out_dir is not None:
            check_log_beside_outputs(config, out_dir, "paper")
    run_dir = None if out_dir is None else RunDirectory(out_dir, "paper", keep=kept_files(config), force=force)
    try:
        with naming_config(config_path):
            node = PaperNode(config, max_seconds=max_seconds, max_messages=max_messages, run_dir=run_dir)
        starting.hand_to(node)
        try:
            summary = asyncio.run(node.run())
        except ConfigError as exc:
            if exc is not node.refusal:
                raise
            raise named_refusal(exc, config_path) from None
        finally:
            starting.stopping()
            if run_dir is not None and outputs_to_write(node):
                kernel = node.kernel
                write_outputs(
                    run_dir,
                    kernel.result,
                    kernel.instruments,
                    dump_paper_config(config),
                    {"node.json": node.summary.to_json()},
                    node.outputs,
                    report=report,
                )
    finally:
        if run_dir is not None:
            run_dir.close()
    return summary, node.kernel.result


def outputs_to_write(node: PaperNode) -> bool:
    """Whether a stopped daemon has outputs to write at the end.

    Not when it stopped before they began (an unreadable journal: the directory keeps the earlier
    run's outputs), nor when a row could not be written (a full disk: the row files stop where they
    failed, the ``INCOMPLETE`` marker stays, and a restart rewrites them from the journal), nor when
    the journal could not be written (the outputs would hold what it does not).
    """
    outputs = node.outputs
    journal = node.journal
    return (outputs is not None and outputs.started and outputs.failure is None
            and (journal is None or journal.failure is None))


def check_bot_token(config: PaperConfig) -> None:
    """Refuse, before the daemon creates anything, a Telegram bot token the Bot API does not know
    (:func:`~tradebus.ops.telegram.check_token`); nothing to check without ``ops.telegram``.

    Raises
    ------
    ConfigError
        ``getMe`` answered 401, or the token's variable is unset or holds what cannot be sent in a URL; the
        message names the variable.
    """
    from tradebus.ops.telegram import check_token

    if config.ops is not None and config.ops.telegram is not None:
        check_token(config.ops.telegram)


def check_log_beside_outputs(config: PaperConfig, out_dir: str | os.PathLike[str], kind: RunKind) -> None:
    """Refuse an output directory where the log's retention would delete the run's outputs.

    loguru's retention deletes every file named like a rotated copy of the log (:func:`~tradebus.ops.logs.
    taken_by_retention`): a log file ``fills`` in ``out_dir`` would take ``fills.csv`` for one.

    Raises
    ------
    ConfigError
        One of the run's own files (or its ``INCOMPLETE`` marker, or the temporary a file is written to before it is
        moved over its name) in ``out_dir`` is the log file or a name its retention takes; the message names ``ops.log.file``, ``--out`` and those files.
    """
    from tradebus.reports.writers import INCOMPLETE_MARKER, OWN_FILES, temporary_path

    log = None if config.ops is None else config.ops.log
    if log is None or log.file is None:
        return
    out = Path(out_dir)
    files = [out / name for name in (*OWN_FILES[kind], INCOMPLETE_MARKER)]
    files += [temporary_path(out / name) for name in OWN_FILES[kind]]  # this process's, which writes them
    taken = [path.name for path in files if taken_by_retention(log, path)]
    if taken:
        raise ConfigError(
            f"ops.log.file: {log.file} and --out {out}: loguru counts {', '.join(taken)} as the log's own (rotated) "
            f"files, and its retention would delete the run's outputs; give the log file a name of its own, e.g. "
            f"{log.file.name}.log, or the run another --out"
        )


def kept_files(config: PaperConfig) -> list[Path]:
    """The files a paper config names that are not run outputs: never touched.

    The journal, the recording, and the log file with its rotated copies.
    """
    logs = log_files(config.ops.log) if config.ops is not None else []
    return [*(path for path in (config.journal, config.record) if path is not None), *logs]

