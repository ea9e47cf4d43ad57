"""Play a recording of live feeds back through the same parsers into a kernel, as a backtest.

A paper daemon (``tradebus paper``) with ``record:`` set writes every raw frame with its
receive time (:mod:`tradebus.adapters.common.recorder`). :func:`play` reads such a
recording and hands each frame to the parsing part of the feed it came from -- the very
objects the live clients use (:class:`~tradebus.adapters.binance.client.BinanceRouter`,
:class:`~tradebus.adapters.okx.parse.OkxParser`, :class:`~tradebus.adapters.bybit.parse.BybitParser`)
-- and routes the messages through the daemon's :class:`~tradebus.node.daemon.NodeRouter`
into the daemon's kernel (:func:`~tradebus.node.daemon.build_paper_kernel`), with a
:class:`~tradebus.engine.clock.SimulatedClock` moved to each frame's recorded receive time.
So a strategy sees the same messages, with the same ``ts_init``, as the daemon saw live,
and ``tradebus replay`` writes the outputs of ``tradebus backtest``. The first frame of a
feed's next connection (``binance-spot:2`` after ``binance-spot:1``: a reconnect) marks that
feed's books out of sync, as the live client did when the connection ended, so they resync
from the snapshot the new connection brought and orders on them are denied until then. A recording
made since the client records the end of each connection (an ``end:<connection id>`` line, at the
moment it invalidated its books) invalidates them at that line instead (:meth:`Playback.feed_end`):
a timer or alert firing between a connection's end and the next one's first line is denied
``book unsynced`` in the replay as it was in the daemon.
The daemon's stale-feed episodes are recorded too (``stale:<feed>`` lines: the watchdog's
``FeedStale``, at the time it fired): played through the same router into the same
:class:`~tradebus.risk.guard.MarketGuard`, they deny orders on the feed's instruments from that
moment until the guard's own rules lift the block, as the daemon did. One of those rules asks a
live connection: a feed of trade channels alone is live again once its connection proves it (any
frame, or an answered ping, which is no frame); its client records that moment (a ``live:<feed>``
line), and the playback gives it to the feed (:meth:`Playback.feed_live`) the guard asks. A
recording without such lines (made before they were) keeps such a feed blocked until its next trade.
The kernel starts (the strategies' ``on_start``) at the moment the daemon started its own (a
``run:start`` line, before its feeds connected), so a timer set there is due when it was in the
daemon; a recording made before that line starts it at its first frame's receive time. The daemon
builds its feeds after that start, so an order decided in ``on_start`` meets no book check (no book is
declared yet): the playback declares its feeds to the market guard after the start too (:meth:`Playback.attach`). A daemon
restarted on the same file appends its session from its own ``run:start``: such a recording is
refused unless one session is chosen (:meth:`Playback.run` ``session``, ``--session``), which plays from
the state the daemon began it with: what its journal restored, rebuilt by replaying the earlier
sessions into a journal of the replay's own (:func:`play`).
The daemon handles each message with its clock pinned at the frame's receive time, where the simulated
clock stands, however late its busy loop read the frame (:class:`~tradebus.engine.clock.LiveClock`
``replay_times``): an order decided on it is stamped and arrives at the same time in both.
The daemon's timers and alerts fire on the wall clock, also on a silent market, with its clock pinned
at their due time; the simulated clock
fires each before the first line at or after its time, and the moment the daemon stopped (a
``run:stop`` line) fires those due after its last frame, as the daemon did. The paper venue's
arrival alerts are among them: an order that reached the venue on a silent market before the stop
is accepted in the replay as it was in the daemon. A session begun with a ``run:start`` that has no ``run:stop``
was killed: its replay ends at its last line as the daemon did, with neither the strategies' ``on_stop`` nor a closing
equity sample (:meth:`~tradebus.engine.kernel.Kernel.stop` ``closing``), and trades held behind a gap stay held.
Trades held back behind a gap in trade ids wait for the recorded answer of its fetch, as live; a
recording that ends before it (its daemon stopped during the fetch, or one without ``run:`` lines cut) delivers them at its end,
after the ``TradesMissed``, rather than dropping them, as the daemon released them when it stopped
(:meth:`~tradebus.adapters.common.feed.Feed.end_run`).
Every gap met is listed in ``playback.json`` (:attr:`PlaybackStats.trade_gaps`), and the trades a killed session
ends holding are counted there (:attr:`PlaybackStats.held_trades`).

Recording formats
-----------------
* the recorder's gzip JSON lines (``{"t": recv_ns, "c": conn, "d": frame}``): each frame
  goes to the feed whose name is the connection id's prefix (``"binance-spot:3"``);
  ``"rest:<SYMBOL>@<connection id>"`` lines (Binance depth snapshots, loaded into the book of
  the connection they were fetched for only; ``"rest-trades:<SYMBOL>@<feed>"`` trade
  histories) to the feed named after the ``@``; in a recording made before those ids named
  their connection (``"rest:<SYMBOL>@<feed>"``), a snapshot after a connection's last frame is
  taken for the next one's; before they named their feed (``"rest:<SYMBOL>"``), they go to
  the Binance feed with that book, and the replay stops
  with a :class:`~tradebus.errors.DataError` when two feeds have it (a spot and a USD-M feed
  of one symbol);
  a connection named after a feed's market (``"linear"``, as in converted captures) to the
  only feed of that market. Frames of other connections are skipped and counted; the
  account's frames of a live recording (``private:`` connections) are not read at all
  (:func:`~tradebus.adapters.common.recorder.read_frames`), so a live recording replays as
  its market data alone.
* hftbacktest captures (``"<recv_ts> <json>"`` gzip lines, e.g. the shared Binance
  captures), read with :func:`~tradebus.adapters.common.recorder.iter_hftbacktest`: the
  config must have one feed; its REST depth snapshot line feeds that feed's only book.

A frame a parser rejects is skipped and counted (and logged at DEBUG), as live. Frames of
streams the config does not subscribe are skipped, except when the config subscribes that
kind of stream with other parameters (a Binance ``depth@0ms`` recording replayed with
``depth_speed: 100ms`` or an ``aggTrade`` one with ``trade``, an OKX ``books`` one with ``books5`` or a ``trades-all`` one with ``trades``,
a Bybit ``orderbook.200`` one with ``orderbook.50``, or another bar size): then the replay stops with a
:class:`~tradebus.errors.DataError` naming the file and the streams seen and expected, since
the books would otherwise stay frozen at their snapshot (or never come) and the run would trade
without them. Binance's refuses at the first such frame (a feed subscribes one depth speed and
bar size); OKX's and Bybit's once the frames are played, only if the recording held none of the
config's stream (their configs may subscribe two depths of a book, ``orderbook.1`` beside
``orderbook.50``, and a recording holding both replays under either).

Serving a recording
-------------------
``tradebus serve RECORDING --venue binance``
replays a recording on a local WebSocket server speaking the venue's protocol
(:class:`~tradebus.adapters.common.local_server.LocalVenueServer`), so that a paper
daemon can be pointed at it (``ws_url: ws://127.0.0.1:N``).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import signal
import tempfile
import zlib
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec
from loguru import logger

from tradebus.adapters.common.recorder import (
    END_PREFIX,
    LIVE_PREFIX,
    RUN_PREFIX,
    STALE_PREFIX,
    first_line,
    iter_hftbacktest,
    line_of,
    read_frames,
)
from tradebus.adapters.registry import VENUES, venue_adapter
from tradebus.engine.clock import SimulatedClock, iso_ns
from tradebus.engine.kernel import Kernel, RunResult
from tradebus.engine.messages import FeedStale
from tradebus.errors import ConfigError, DataError, ParseError
from tradebus.config.load import parse_config
from tradebus.node.config import PaperConfig, dump_paper_config, load_paper_config, naming_config
from tradebus.execution.client_ids import BACKTEST_RUN_ID
from tradebus.execution.journal import Journal
from tradebus.node.daemon import build_paper_kernel, kept_files, recover_journal
from tradebus.adapters.common.feed import Feed, venue_symbol
from tradebus.adapters.common.trade_gaps import TradeGapLog
from tradebus.node.feeds import attach_feeds, build_feeds, feed_of_connection
from tradebus.node.missed_hours import RUN_START_KEY, MissedFailures, MissedPrices, read_missed_record
from tradebus.node.router import NodeRouter
from tradebus.reports.outputs import write_outputs
from tradebus.reports.denials import warn_denials
from tradebus.reports.writers import RunDirectory
from tradebus.risk.guard import MarketGuard

__all__ = [
    "Playback",
    "PlaybackStats",
    "check_served_symbols",
    "default_out",
    "detect_format",
    "play",
    "read_local_config",
    "read_recording",
    "run_playback",
    "write_local_config",
]

RecordingFormat = Literal["recorder", "hftbacktest"]

#: The line a daemon records as it starts its kernel; after a recording's first line, a restarted daemon's session.
RUN_START = RUN_PREFIX + "start"
#: The line a daemon records as it stops (after the timers due by then fired); a session begun with a ``run:start``
#: and ending without it was killed.
RUN_STOP = RUN_PREFIX + "stop"

def detect_format(path: str | Path) -> RecordingFormat:
    """Whether ``path`` is a recorder file or a hftbacktest capture (from its first line).

    Raises
    ------
    DataError
        The file is missing, not gzip, empty, cut short before its first line ends, or its
        first line is neither format.
    """
    path = Path(path)
    try:
        with gzip.open(path, "rb") as fh:
            head: bytes | None = fh.readline(4096)
    except FileNotFoundError:
        raise DataError(f"{path}: recording not found") from None
    except (EOFError, zlib.error):
        # cut short (a recorder killed), perhaps appended to by a restarted one: read as the readers read it
        head = first_line(path)
        if head is None:
            raise DataError(f"{path}: holds no complete frame: the recording is cut short before its first line "
                            "ends (a recorder killed before it flushed?)") from None
    except OSError as exc:
        raise DataError(f"{path}: not a gzip recording ({exc})") from None
    if head.startswith(b"{"):
        return "recorder"
    if head[:1].isdigit():
        return "hftbacktest"
    if not head:
        raise DataError(f"{path}: the recording is empty")
    raise DataError(
        f"{path}: line 1 is neither a recorder line ('{{\"t\": ...}}') nor a hftbacktest line ('<recv_ts> <json>'): "
        f"{head[:60]!r}"
    )


def read_recording(
    path: str | Path, feeds: list[Feed], *, episodes: bool = False, runs: bool = False, ends: bool = False
) -> Iterator[tuple[int, str, str | bytes]]:
    """Yield ``(recv_ns, conn, raw)`` of every frame of a recording in either format.

    With ``episodes``, also the recorder's lines of stale-feed episodes (``conn`` ``"stale:<feed>"``,
    ``raw`` the receive time of the feed's last message; ``conn`` ``"live:<feed>"``, ``raw`` what
    proved its connection live; a hftbacktest capture has none); with ``runs``, those of the
    daemon's run (``conn`` ``"run:start"``: when it started its kernel; ``"run:stop"``: when it stopped);
    with ``ends``, those of the ends of connections (``conn`` ``"end:<connection id>"``, ``raw`` the reason).

    A hftbacktest capture is given the connection id of the only feed, and its REST
    depth snapshot line the id ``"rest:<SYMBOL>"`` of that feed's only book (skipped when
    the feed subscribes no book).

    Raises
    ------
    DataError
        Unknown format, or a hftbacktest capture with a config that is not one feed, or
        whose feed has several books (the snapshot's symbol is not in the capture).
    """
    path = Path(path)
    if detect_format(path) == "recorder":
        yield from read_frames(path, episodes=episodes, runs=runs, ends=ends)
        return
    if len(feeds) != 1:
        raise DataError(f"{path}: a hftbacktest capture holds one connection; the config has {len(feeds)} feeds")
    feed = feeds[0]
    conn = f"{feed.name}:1"
    books = list(feed.book_checks())
    rest = f"rest:{feed.symbols[books[0]]}" if len(books) == 1 else None
    is_snapshot = VENUES[feed.config.venue].is_snapshot_line
    for lineno, (recv_ns, raw) in enumerate(iter_hftbacktest(path), 1):
        if is_snapshot(raw):
            if rest is not None:
                yield recv_ns, rest, raw
            elif books:
                raise DataError(f"{path}: line {lineno}: a depth snapshot, but feed {feed.name} has several books")
            else:
                logger.debug("{}: line {}: depth snapshot skipped (no book subscribed)", path, lineno)
        else:
            yield recv_ns, conn, raw


@dataclass
class PlaybackStats:
    """Counts of a playback: frames per feed, skipped connections, rejected frames, unsubscribed streams, and
    the gaps in trade ids its feeds met.

    ``trade_gaps`` holds one entry per gap (:class:`~tradebus.adapters.common.trade_gaps.TradeGap`):
    ``instrument_id``, the missed ids ``first_id..last_id``, how many the recorded fetch ``recovered``
    and how many were ``lost`` for good (the strategy never saw them), ``start_ns``/``end_ns`` (receive
    times of the last trade before the gap and of the trade that revealed it), ``ended_ns`` (when the
    recovery ended) and ``recording_ended`` (the recording ends before the fetch's recorded answer:
    the replay gave the recovery up there).

    ``held_trades`` holds one entry per instrument whose trades a killed daemon's session (a ``run:start`` and
    no ``run:stop``) ended holding behind a gap in trade ids, as that daemon did: never delivered, so no strategy
    saw them (``data import-recording`` writes them, at the session's last line): ``instrument_id``, the gap's
    ids ``first_id``..``last_id`` (not in ``trade_gaps``: it never ended), the ``trades`` held and ``since_ns``,
    the receive time of the one that revealed the gap. Empty for a session that stopped: its end released them.
    """

    frames: int = 0
    per_feed: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    unexpected_streams: dict[str, dict[str, int]] = field(default_factory=dict)
    skipped_connections: dict[str, int] = field(default_factory=dict)
    first_ns: int | None = None
    last_ns: int | None = None
    trade_gaps: list[dict[str, Any]] = field(default_factory=list)
    held_trades: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> str:
        """Deterministically ordered JSON text."""
        return json.dumps(self.__dict__, indent=2, sort_keys=True)


class Playback:
    """A paper run's kernel, router and feed parsers on a simulated clock, fed with recorded frames.

    Parameters
    ----------
    config
        The paper config whose feeds made the recording.
    journal
        The journal the kernel writes, recovered from when a session starts as the daemon's
        was (:func:`play` gives one to a later session's replay; ``None``: none, the session starts flat).

    Attributes
    ----------
    kernel, router, guard, feeds, clock
        The parts, as in :class:`~tradebus.node.daemon.PaperNode` (``feeds`` without clients).
    trade_gaps
        The :class:`~tradebus.adapters.common.trade_gaps.TradeGapLog` of every message the feeds emit.
    stats
        :class:`PlaybackStats`.
    """

    def __init__(self, config: PaperConfig, journal: Journal | None = None) -> None:
        self.config = config
        self.journal = journal
        self.clock = SimulatedClock()
        self.guard = MarketGuard()
        self.kernel: Kernel
        self.kernel, self.venue = build_paper_kernel(config, self.clock, self.guard, journal)
        self.router = NodeRouter(self.kernel, self.guard)
        self.trade_gaps = TradeGapLog()
        gaps, router = self.trade_gaps, self.router

        def emit(msg: Any) -> None:
            gaps(msg)
            router(msg)

        self.feeds = build_feeds(config, emit, live=False, clock_ns=self.clock.now_ns)
        self._attached = False
        self.stats = PlaybackStats()
        self._routes: dict[str, Feed | None] = {}
        self._rejected: Counter[str] = Counter()
        self._skipped: Counter[str] = Counter()
        self._per_feed: Counter[str] = Counter()

    def _route(self, conn: str) -> Feed | None:
        feed = self._routes.get(conn, False)
        if feed is not False:
            return feed  # type: ignore[return-value]
        found = feed_of_connection(self.feeds, conn)
        if found is None:
            logger.warning("playback: frames of connection {!r} match no configured feed; skipped", conn)
        self._routes[conn] = found
        return found

    def attach(self) -> None:
        """Declare the feeds to the market guard and their books to the cache (once).

        The daemon does so after its strategies' ``on_start``, as it builds its feeds: an order decided
        there is checked by no book. :meth:`run` attaches them after ``kernel.start()`` likewise; the
        ``feed_*`` methods attach them before their first line.
        """
        if not self._attached:
            self._attached = True
            attach_feeds(self.feeds, self.guard, self.kernel.cache)

    def feed_frame(self, recv_ns: int, conn: str, raw: str | bytes) -> None:
        """Play one recorded frame: move the clock to its receive time and parse it into the kernel."""
        self.attach()
        feed = self._route(conn)
        if feed is None:
            self._skipped[conn] += 1
            return
        self.clock.advance_to(recv_ns)
        stats = self.stats
        stats.frames += 1
        if stats.first_ns is None:
            stats.first_ns = recv_ns
        stats.last_ns = recv_ns
        self._per_feed[feed.name] += 1
        try:
            feed.on_frame(raw, recv_ns, conn)
        except ParseError as exc:
            self._rejected[feed.name] += 1
            logger.debug("playback: {} frame rejected: {}", feed.name, exc)

    def feed_stale(self, ts_ns: int, source: str, last_message_ns: int) -> None:
        """Play a recorded stale-feed episode: at ``ts_ns``, the daemon's watchdog declared feed ``source`` stale.

        The ``FeedStale`` goes through the router to the market guard, as the daemon's did; the
        guard lifts the block by its own rules on the frames that follow. A feed the config does
        not have is skipped.
        """
        self.attach()
        if not any(feed.name == source for feed in self.feeds):
            self._skipped[STALE_PREFIX + source] += 1
            return
        self.clock.advance_to(ts_ns)
        self.router(FeedStale(source, last_message_ns, ts_ns, ts_ns))

    def feed_end(self, ts_ns: int, conn: str, reason: str) -> None:
        """Play a recorded end of connection ``conn`` at ``ts_ns`` for ``reason``: its feed's books go out of sync.

        The feed invalidates them as its client did when the connection ended
        (:meth:`~tradebus.adapters.common.feed.Feed.end_connection`). A connection of a feed the
        config does not have is skipped.
        """
        self.attach()
        feed = self._route(conn)
        if feed is None:
            self._skipped[END_PREFIX + conn] += 1
            return
        self.clock.advance_to(ts_ns)
        feed.end_connection(conn, reason)

    def feed_live(self, ts_ns: int, source: str) -> None:
        """Play a recorded proof of life: at ``ts_ns``, the connection of feed ``source`` (trade channels alone)
        answered after it went stale.

        The feed gives it to the market guard as its client did
        (:meth:`~tradebus.adapters.common.feed.Feed.connection_live_ns`, asked when an order is
        checked). A feed the config does not have is skipped.
        """
        self.attach()
        feed = next((feed for feed in self.feeds if feed.name == source), None)
        if feed is None:
            self._skipped[LIVE_PREFIX + source] += 1
            return
        self.clock.advance_to(ts_ns)
        feed.recorded_live_ns = ts_ns

    def _recover(self, path: str | Path, start_ns: int, text: str | bytes) -> None:
        """Set the clock to the session's start (``start_ns``), after recovering from :attr:`journal` as the daemon did.

        ``text`` is the session's ``run:start`` line's: when and how many orders the daemon's journal
        restored (:func:`~tradebus.node.daemon.run_start_line`; ``""`` in a recording made before it
        said, or of a daemon without a journal). A replay without a journal must find none restored.

        A daemon whose journal restored another number of orders (it held orders of sessions this
        recording does not: a journal kept across recordings) is logged at WARNING, naming the file
        and both numbers, and the session plays from what the replay restored: its outputs differ
        from the daemon's by what the journal held.
        """
        started = _run_start(path, text)
        recovered_ns = min(started.get("recovered_ns", start_ns), start_ns)
        self.clock.set_time(recovered_ns)
        restored = 0
        if self.journal is not None:
            for order in recover_journal(self.kernel, self.venue, self.journal, recovered_ns):
                self.kernel.execution.resolve_unknown(order.client_order_id)
            restored = len(self.kernel.orders.orders())
            self._price_missed_hours(path, start_ns, recovered_ns, started.get(RUN_START_KEY))
        daemon = started.get("orders")
        if daemon is not None and daemon != restored:
            logger.warning(
                "{}: the run:start at {}: the daemon's journal restored {} order(s) as this session started, the "
                "replay of the recording's earlier sessions {}: the journal held orders of sessions this recording "
                "does not (recorded to another file, or without record:); the replay starts from the {} and its "
                "outputs differ from the daemon's by them", path, start_ns, daemon, restored, restored,
            )
        self.clock.advance_to(start_ns)

    def _price_missed_hours(
        self, path: str | Path, start_ns: int, recovered_ns: int, recorded: tuple[MissedPrices, MissedFailures] | None
    ) -> None:
        """Give the kernel the daemon's prices of the interest hours it missed while down, as its ``run:start`` recorded them.

        The daemon fetched them from the venue's klines (:mod:`tradebus.node.missed_hours`); the
        replay asks nothing. A recording made before the daemon recorded them (a session with such
        hours and no ``missed_hours``) is warned of, naming the file and the hours: they are charged
        at the journal's last fill price (``hour_last_fill``), the daemon's perhaps at the klines'.
        """
        interest = self.kernel.interest
        if interest is None:
            return
        if recorded is not None:
            interest.price_missed(*recorded)
            return
        missed = interest.missed_hours(recovered_ns)
        if missed:
            hours = sorted({hour for hours in missed.values() for hour in hours})
            logger.warning(
                "{}: the run:start at {}: the daemon was down through {} whole hour(s) of interest on a margin loan "
                "({} .. {}) and this recording, made before the daemon recorded the prices it charged them at, does "
                "not say them: the replay charges them at the journal's last fill price (hour_last_fill in "
                "interest.csv), where the daemon charged the venue's klines (hour_kline): its interest.csv and "
                "equity may differ from the daemon's", path, start_ns, len(hours), iso_ns(hours[0]), iso_ns(hours[-1]),
            )  # fmt: skip

    def run(self, path: str | Path, session: int | None = None, *, require_frames: bool = True) -> RunResult:
        """Play a whole recording, or one daemon session of it, and stop the kernel; return the run result.

        A daemon restarted on the same ``record:`` file appends its session to it, from its own
        ``run:start`` line. One kernel cannot play two sessions as the daemons ran them (the restarted
        one called ``on_start`` again, began with a new simulated venue and with what its journal
        restored): such a recording needs ``session``, the number of the session to play (1: from
        the first line), which is played alone, from a fresh kernel (:func:`play` recovers it from a
        journal of the earlier sessions first, as the daemon did). Without ``require_frames`` a session
        without a frame (a daemon restarted and stopped before its feeds delivered any) is played
        too: :func:`play` plays the sessions before the one asked for so.

        Raises
        ------
        DataError
            Unreadable recording (names the file and line), or frames of streams the config
            subscribes with other parameters (e.g. another depth speed): the recording does
            not match the config (names the streams seen and expected; the first such frame refuses a
            Binance recording, a recording of another OKX or Bybit book depth or bar size is refused
            once played if it holds none of the config's); or no frame that the
            config's feeds take and parse (another venue's recording, an empty one); or a
            recording of several sessions without ``session`` (names the file and the line of the
            second session's ``run:start``), or with fewer sessions than ``session``.
        """
        if session is not None and session < 1:
            raise DataError(f"{path}: --session counts the daemon's sessions from 1, got {session}")
        lineno = 0
        answered = 0
        sessions = 0  # the session of the line read (a run:start after the first line begins the next)
        recv_ns = last_ns = 0
        begun = stopped = False  # the played session's run:start and run:stop lines
        try:
            for recv_ns, conn, raw in read_recording(path, self.feeds, episodes=True, runs=True, ends=True):
                if not sessions or (conn == RUN_START):
                    sessions += 1
                    if session is None and sessions == 2:
                        raise _second_session(path, recv_ns)
                if session is not None and sessions != session:
                    if sessions > session:
                        break
                    continue
                lineno += 1
                last_ns = recv_ns
                begun, stopped = begun or conn == RUN_START, stopped or conn == RUN_STOP
                if lineno == 1:
                    # on_start at the daemon's (its run:start line), or, in a recording made before that
                    # line, at the first frame's receive time
                    self._recover(path, recv_ns, raw if conn == RUN_START else "")
                    self.kernel.start()
                    self.attach()  # after on_start, as the daemon builds its feeds after it
                if conn.startswith(STALE_PREFIX):
                    self.feed_stale(recv_ns, conn[len(STALE_PREFIX):], _last_message_ns(raw, conn))
                elif conn.startswith(LIVE_PREFIX):
                    self.feed_live(recv_ns, conn[len(LIVE_PREFIX):])
                elif conn.startswith(END_PREFIX):
                    self.feed_end(recv_ns, conn[len(END_PREFIX):], raw if isinstance(raw, str) else raw.decode())
                elif conn.startswith(RUN_PREFIX):
                    self.clock.advance_to(recv_ns)  # at run:stop, what fell due since the last frame fires
                else:
                    self.feed_frame(recv_ns, conn, raw)
            for feed in self.feeds:
                feed.check_played(path)
            answered = len(self.trade_gaps.gaps)
            killed = begun and not stopped  # a daemon recording its run:start records its stop: it never came to it
            if lineno and not killed:
                for feed in self.feeds:
                    feed.end_run(last_ns)
        except DataError as exc:
            if str(exc).startswith(str(path)):
                raise
            raise DataError(f"{path}: frame {lineno}: {exc}") from None
        if session is not None and session > sessions:
            raise DataError(f"{path}: holds {sessions} session{'s' * (sessions != 1)} (run:start lines); "
                            f"--session {session} is not one of them")
        self.kernel.stop(closing=not killed)  # a killed daemon's outputs end at its last sample, its strategies not ended
        stats = self.stats
        stats.per_feed = dict(sorted(self._per_feed.items()))
        stats.rejected = dict(sorted(self._rejected.items()))
        stats.skipped_connections = dict(sorted(self._skipped.items()))
        stats.trade_gaps = [
            {**msgspec.structs.asdict(gap), "recording_ended": n >= answered}
            for n, gap in enumerate(self.trade_gaps.gaps)
        ]
        stats.held_trades = [held for feed in self.feeds for held in feed.held_trades()]
        for held in stats.held_trades:
            logger.warning(
                "{}: the killed daemon's session ends holding {} trade(s) of {} behind the gap in trade ids {}..{}, as "
                "the daemon did: no strategy saw them (held_trades in playback.json; data import-recording writes "
                "them)", path, held["trades"], held["instrument_id"], held["first_id"], held["last_id"],
            )
        stats.unexpected_streams = {
            feed.name: dict(sorted(feed.unexpected_streams().items())) for feed in self.feeds if feed.unexpected_streams()
        }
        if self._rejected:
            logger.info("playback: frames rejected by the parsers: {}", stats.rejected)
        if require_frames and stats.frames == sum(stats.rejected.values()):
            feeds = ", ".join(feed.name for feed in self.feeds)
            if stats.frames:
                held = f"the parsers of {feeds} rejected all {stats.frames} of its frames"
            elif stats.skipped_connections:
                held = f"its frames are on {stats.skipped_connections}, none on the config's feeds ({feeds})"
            else:
                held = "it holds no frames"
            raise DataError(f"{path}: nothing to replay: {held}; replay it with the paper config that recorded it")
        return self.kernel.result


def _second_session(path: str | Path, recv_ns: int) -> DataError:
    """The refusal of a recording a restarted daemon appended to, at its second ``run:start`` (``recv_ns``)."""
    line = line_of(path, RUN_START, recv_ns)
    where = f"line {line}" if line is not None else f"the run:start at {recv_ns}"
    return DataError(
        f"{path}: {where}: a second run:start: a restarted daemon appended its session to this recording, and a "
        "replay does not model the restart (on_start again, a new simulated venue, the state its journal "
        "restored); replay one session with --session N (1: the first; a later one from what its daemon's "
        "journal restored, rebuilt from the sessions before it)"
    )


def _run_start(path: str | Path, text: str | bytes) -> dict[str, Any]:
    """What a ``run:start`` line's text says (:func:`~tradebus.node.daemon.run_start_line`; ``{}``: nothing).

    Its integers (``recovered_ns``, ``orders``), and ``missed_hours`` read as ``(prices, failures)``
    (:func:`~tradebus.node.missed_hours.read_missed_record`).
    """
    if not text:
        return {}
    try:
        started = json.loads(text)
    except ValueError:
        started = None
    if not isinstance(started, dict) or not all(
        isinstance(v, int) for k, v in started.items() if k != RUN_START_KEY
    ):
        raise DataError(f"{path}: a run:start line holds '' or the daemon's recovery as JSON integers, "
                        f"not {text[:60]!r}")
    if RUN_START_KEY in started:
        started[RUN_START_KEY] = read_missed_record(started[RUN_START_KEY], f"{path}: a run:start line")
    return started


def _last_message_ns(raw: str | bytes, conn: str) -> int:
    """The receive time a recorded stale-feed line carries (raises :class:`DataError` if it is not one)."""
    try:
        return int(raw)
    except ValueError:
        raise DataError(f"{conn}: a stale-feed line holds the receive time of the feed's last message, "
                        f"not {raw[:40]!r}") from None


def play(recording: str | Path, config: PaperConfig, session: int | None = None) -> Playback:
    """Play ``recording`` (its ``session``-th daemon session, see :meth:`Playback.run`) through ``config``'s
    feeds and kernel; return the finished :class:`Playback`.

    A daemon with a journal (``config.journal``) restarted on it begins its session with what the
    journal restored: the orders and positions of its earlier sessions (the working ones CANCELED,
    its simulated venue having stopped), their fills and equity samples, its risk state and a new
    epoch of client order ids. The replay of a later session rebuilds that state the way the daemon
    did: it plays sessions ``1..session - 1`` first, each on a kernel journaling into a journal of its
    own (a temporary file, removed after; its run id :data:`~tradebus.execution.client_ids.BACKTEST_RUN_ID`),
    and recovers each session from it at the time the daemon recovered (its ``run:start`` line;
    a recording made before that line says recovers at that line). Deterministic, and an old
    recording replays so too. The first session (or a recording of one) is played journaling too, so its
    client order ids are of epoch 1, as those of a daemon that began its journal. A journal holding more than the recording (sessions recorded elsewhere
    or not at all) is warned of where the ``run:start`` line records how many orders the daemon restored
    (:meth:`Playback._recover`): the session plays from what the recording rebuilds.
    """
    if config.journal is None:
        playback = Playback(config)
        playback.run(recording, session)
        return playback
    last = session or 1
    with tempfile.TemporaryDirectory(prefix="tradebus-replay-") as tmp:
        path = Path(tmp) / "journal.sqlite"
        for number in range(1, last + 1):
            journal = Journal(path, "NORMAL", owner=config.journal_owner(), run_id=BACKTEST_RUN_ID)
            try:
                playback = Playback(config, journal)
                playback.run(recording, session and number, require_frames=number == last)
            finally:
                journal.close()
    return playback


def default_out(recording: Path) -> Path:
    """A replay's output directory without ``--out``: ``runs/replay-<recording name>`` (the name up to its first dot)."""
    return Path("runs") / f"replay-{recording.name.split('.')[0]}"


def run_playback(
    recording: str | Path,
    config_path: str | Path,
    out_dir: str | Path | None = None,
    *,
    force: bool = False,
    overrides: Sequence[str] = (),
    report: bool = False,
    session: int | None = None,
) -> tuple[RunResult, Path]:
    """Validate the config, play the recording (or its ``session``-th daemon session) and write the backtest outputs.

    Writes ``fills.csv``, ``orders.csv``, ``equity.csv``, ``metrics.json``, ``config.yaml``
    and ``playback.json`` (:class:`PlaybackStats`), and ``tearsheet.html`` if ``report``, into ``out_dir`` (default
    ``runs/replay-<recording name>``), as :class:`~tradebus.reports.writers.RunDirectory`
    does: only those files, never the recording or the config's journal, and a directory
    holding anything else is refused unless ``force``.

    Raises
    ------
    ConfigError
        Invalid config, or an output directory holding files the run does not write
        (before the recording is read).
    DataError
        Unreadable recording, or one a restarted daemon appended to, without ``session``.
    """
    recording = Path(recording)
    config = load_paper_config(config_path, overrides)
    detect_format(recording)
    out = Path(out_dir) if out_dir is not None else default_out(recording)
    run_dir = RunDirectory(out, "replay", keep=[recording, *kept_files(config)], force=force)
    try:
        with naming_config(config_path):
            playback = play(recording, config, session)
        result = playback.kernel.result
        warn_denials(result.denials, "replay")
        write_outputs(
            run_dir, result, playback.kernel.instruments, dump_paper_config(config),
            {"playback.json": playback.stats.to_json()}, report=report,
        )
    finally:
        run_dir.close()
    return result, out


# --------------------------------------------------------------------------- serving


async def serve_recording(
    path: str | Path,
    venue: str,
    *,
    speed: float | None = 1.0,
    futures: bool = False,
    config: str | Path | None = None,
    write_config: str | Path | None = None,
    lifetime: float = 86_400.0,
    hold: bool = False,
    connections: Sequence[str] = (),
) -> None:
    """Serve a recording on ``ws://127.0.0.1:<ephemeral port>`` in ``venue``'s protocol until SIGINT/SIGTERM.

    The recording is one stream: a connection starts where it is, after the last frame written to
    the connections before, not at its beginning and with no frame again (a daemon's client reads
    every frame sent before the close of a connection it closes; frames in flight when a connection
    is cut are lost to it, as on a venue, and so are those in flight when the daemon stops, to the daemon
    restarted after it too). Paced, the stream runs on one clock from the first subscription, so a
    reconnecting daemon starts at the venue's now; with ``hold`` that clock stops while no connection
    streams, so a restarted daemon goes on where the last one left off; unpaced (``speed=None``) each
    stream moves only as the connections subscribed to it read it: each of a daemon's feeds reads every frame of its
    streams whichever runs ahead, and a reconnecting feed misses nothing
    (:class:`~tradebus.adapters.common.local_server.LocalVenueServer`). With ``config``, each instrument
    its feeds subscribe must be in the recording (:func:`check_served_symbols`).

    ``venue`` is a registered venue name; its emulator speaks the protocol. REST depth
    snapshots in the recording (``rest:`` lines, or a capture's snapshot line) are handed
    to the emulator (Binance serves them on ``/api/v3/depth``, ``/fapi/v1/depth`` with ``futures``).
    With ``config`` and ``write_config``, a copy of that paper config whose feeds point at
    this server is written to ``write_config`` (run ``tradebus paper`` on it). With ``connections``, only the
    frames of those recorded connections are served (``linear`` of a recording of Bybit's ``linear`` and ``spot``
    connections; ``binance-usdm`` of a daemon's ``binance-usdm:1``), and the REST answers naming another connection
    are left out; a depth snapshot line naming no connection (``rest:<SYMBOL>``, an older recording's) is kept when
    the recording's frames are of one connection name, refused otherwise.

    Raises
    ------
    DataError
        The recording is missing or unreadable, or none of its frames is data of a ``venue`` stream
        (another venue's recording: a daemon would be sent nothing it could use).
    ConfigError
        ``config`` is invalid, of another venue's feeds or subscribing an instrument the recording lacks, or the
        copy cannot be written; a ``connections`` name the recording has no frame of (naming its connections); REST
        depth snapshots of two feeds' connections (a daemon's recording of Binance spot and USD-M depth) kept: the
        server answers every depth request with one of them (naming the ``connections`` to keep); with
        ``connections``, a depth snapshot line naming no connection in a recording of several.
    """
    from tradebus.adapters.common.local_server import LocalVenueServer

    adapter = venue_adapter(venue)
    path = Path(path)
    if write_config is not None:
        _refuse_overwriting(Path(write_config), {"--config": config, "the recording": path})
    local = None if config is None or write_config is None else read_local_config(Path(config), venue)
    frames: list[tuple[int, str]] = []
    conns: list[str] = []
    snapshot: str | None = None
    lines: Iterator[tuple[int, str, str | bytes]] = (
        read_frames(path)
        if detect_format(path) == "recorder"
        else ((t, "rest:" if adapter.is_snapshot_line(raw) else "", raw) for t, raw in iter_hftbacktest(path))
    )
    kept = set(connections)
    recorded: set[str] = set()
    snapshot_feeds: set[str] = set()  # of the depth snapshots served ("": one naming no connection)
    unnamed: list[str] = []  # under ``connections``: the snapshot lines naming no connection (older recordings)
    for t, conn, raw in lines:
        text = raw if isinstance(raw, str) else raw.decode()
        if kept:
            name = (conn.partition("@")[2] if conn.startswith(("rest:", "rest-")) else conn).partition(":")[0]
            if not conn.startswith(("rest:", "rest-")):
                recorded.add(name)
            if name and name not in kept:
                continue
            if not name and conn.startswith("rest:"):
                unnamed.append(conn)
        if conn.startswith("rest:"):
            snapshot = snapshot or text
            snapshot_feeds.add(conn.partition("@")[2].partition(":")[0])
        elif conn.startswith("rest-"):  # another REST answer (a trade-history fetch): not a stream frame
            continue
        else:
            frames.append((t, text))
            conns.append(conn)
    if kept - recorded:
        raise ConfigError(_unknown_connections(path, kept - recorded, recorded))
    if unnamed and len(recorded) > 1:  # whose book it seeds cannot be told (a replay refuses it alike)
        raise ConfigError(
            f"the recording {path} holds a REST depth snapshot line naming no connection ({unnamed[0]!r}, written "
            f"before those lines named theirs) and frames of the connections {', '.join(sorted(recorded))}: "
            f"--connection cannot tell which one's book it is (the server would answer every depth request with "
            f"the first snapshot, maybe another market's); serve a recording of one market's connections"
        )
    protocol = adapter.emulator(frames, snapshot, futures)
    if not any(protocol.is_stream_frame(raw) for _, raw in frames):
        raise DataError(
            f"{path}: none of its {len(frames)} frames is {venue} stream data: serve it with the --venue "
            f"of the venue that recorded it (one of {', '.join(VENUES)})"
        )
    if local is not None and config is not None:
        carriers: dict[str, set[str]] = {}
        for (_, raw), conn in zip(frames, conns, strict=True):
            if protocol.is_stream_frame(raw):
                carriers.setdefault(protocol.topic_of(raw) or "", set()).add(conn.partition(":")[0])
        check_served_symbols(local, Path(config), path, set(carriers), carriers, venue=venue)
    if len(snapshot_feeds - {""}) > 1:
        feeds = sorted(snapshot_feeds - {""})
        raise ConfigError(
            f"the recording {path} holds REST depth snapshots of {', '.join(feeds)} connections, and the server answers "
            f"every depth request with the first of them (another market's book for all but one): serve one market's "
            f"connections alone (--connection {' or --connection '.join(feeds)})"
        )
    server = LocalVenueServer(
        protocol,
        frames,
        speed=speed,
        lifetime=lifetime,
        hold=hold,
        max_connections=None,
    )
    await server.start()
    if local is not None and config is not None and write_config is not None:
        try:
            write_local_config(local, Path(config), Path(write_config), server.ws_url, server.http_url, venue=venue)
        except ConfigError:
            await server.stop()
            raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        # the line a script waits for: the copy of the config is written, and a signal stops the server cleanly
        logger.info(
            "serving {} frames of {} as {} on {} (REST {})", len(frames), path, venue, server.ws_url, server.http_url
        )
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await server.stop()


def _unknown_connections(recording: Path, unknown: set[str], recorded: set[str]) -> str:
    """Why ``--connection`` names ``unknown`` are refused: the ``recorded`` connections' feeds (``binance-usdm`` of
    ``binance-usdm:1``; ``""``, an hftbacktest capture's one connection) have no frame of them.

    A connection id as the recording spells it (``binance-usdm:1``) is named with its feed, the name to pass.
    """
    if recorded <= {""}:
        return (
            f"--connection {', '.join(sorted(unknown))}: the recording {recording} names no connection (an hftbacktest "
            "capture, of one connection): serve it without --connection"
        )
    named = [
        f"{name} (a connection of feed {feed}: --connection {feed})" if feed != name and feed in recorded else name
        for name in sorted(unknown)
        for feed in (name.partition(":")[0],)
    ]
    return (
        f"--connection {', '.join(named)}: the recording {recording} has no frame of it; its connections are "
        f"{', '.join(sorted(recorded - {''}))}"
    )


def _refuse_overwriting(out: Path, inputs: Mapping[str, str | Path | None]) -> None:
    """Refuse a ``--write-config`` path naming one of serve's ``inputs`` (the user's config, the recording served).

    Raises
    ------
    ConfigError
        ``out`` is the same file as one of ``inputs``.
    """
    for what, given in inputs.items():
        if given is not None and out.resolve() == Path(given).resolve():
            raise ConfigError(f"--write-config {out}: it is {what} ({given}); write the copy to another file")


def check_served_symbols(
    data: dict[str, Any],
    config: Path,
    recording: Path,
    topics: set[str],
    carriers: Mapping[str, set[str]] | None = None,
    venue: str | None = None,
) -> None:
    """Refuse a paper config (``data``, read from ``config``) subscribing an instrument or a stream the served
    recording lacks.

    With ``venue``, only the feeds of that venue are checked: the server speaks its protocol alone, and a config
    trading several venues has the other feeds served by servers of their own.

    ``topics`` are the recording's streams (the venue protocol's ``topic_of``); an instrument is in the recording
    when its stream symbol (:func:`~tradebus.adapters.common.feed.venue_symbol`) is one of a topic's parts
    (``btcusdt`` of ``btcusdt@trade``, ``BTC-USDT`` of ``trades:BTC-USDT``, ``BTCUSDT`` of
    ``publicTrade.BTCUSDT`` for ``BTCUSDT-LINEAR``), whatever the case. ``carriers`` are, per topic, the
    recorded connections' feeds (``binance-spot`` of ``binance-spot:2``) whose frames hold it.

    Raises
    ------
    ConfigError
        The config is invalid, or a feed subscribes a symbol no stream of the recording has (a daemon would
        be sent nothing for it and recycle its connection for want of market data), or a stream (a channel of a
        symbol, with its depth speed, book depth or bar interval: :meth:`~tradebus.adapters.common.feed.Feed.subscribed_streams`)
        the recording does not hold, which the server routes by its exact name: naming it and the recording's streams;
        or feeds of two markets subscribe one stream symbol (Binance spot and USD-M ``BTCUSDT``, Bybit spot
        ``BTCUSDT`` and linear ``BTCUSDT-LINEAR``): the server sends its one
        stream of that symbol to both, so one market's instrument would be fed the other market's trades and book;
        or a stream subscribed is carried by connections of two of the recording's feeds (a daemon's recording of
        Binance spot and USD-M ``btcusdt@trade``): the server sends both feeds' frames of it to the one subscribing;
        or one carried by connections of another feed alone (a recording of USD-M ``btcusdt@trade`` served to a spot
        feed), whose frames a replay of the config would not give the subscribing feed
        (:func:`~tradebus.node.feeds.feed_of_connection`).
    """
    parsed = parse_config(data, f"--config {config}", config.resolve().parent, model=PaperConfig)
    parts = {part for topic in topics for part in re.split(r"[@:.]", topic.lower())}
    instruments = parsed.instrument_map()
    served = {n for n, feed in enumerate(parsed.feeds) if venue is None or feed.venue == venue}
    first: dict[str, tuple[int, str, str]] = {}
    for n, feed in enumerate(parsed.feeds):
        if n not in served:
            continue
        for iid in feed.subscriptions:
            symbol = venue_symbol(feed, instruments[iid])
            m, market, other = first.setdefault(symbol.lower(), (n, feed.market, iid))
            if market != feed.market:
                raise ConfigError(
                    f"--config {config}: feeds.{m} ({market}: {other}) and feeds.{n} ({feed.market}: {iid}) subscribe "
                    f"symbol {symbol}, and the recording {recording} served here has one stream of it, "
                    f"which both would read as their own market's: serve each market's recording on a server of its "
                    f"own and point each feed's ws_url (and rest_url) at its server"
                )
    missing = [
        f"feeds.{n}.subscriptions: {iid} (symbol {instruments[iid].symbol})"
        for n, feed in enumerate(parsed.feeds)
        if n in served
        for iid in feed.subscriptions
        if venue_symbol(feed, instruments[iid]).lower() not in parts
    ]
    shown = sorted(topics)
    listed = ", ".join(shown[:20]) + (f", ... ({len(shown)} in all)" if len(shown) > 20 else "")
    if missing:
        raise ConfigError(
            f"--config {config}: {'; '.join(missing)}: not in the recording {recording}, whose streams are {listed}: "
            "a daemon subscribing it would get no market data (subscribe an instrument the recording has, or serve "
            "a recording of it)"
        )
    subscribed = [
        (n, feed, stream)
        for n, feed in enumerate(build_feeds(parsed, lambda message: None, live=False))
        if n in served
        for stream in feed.subscribed_streams()
    ]
    mixed = [
        f"feeds.{n}: {stream} (recorded by {' and '.join(sorted(carriers[stream]))})"
        for n, _, stream in subscribed
        if carriers is not None and len(carriers.get(stream, ())) > 1
    ]
    if mixed:
        mixed_names = sorted({name for _, _, stream in subscribed for name in (carriers or {}).get(stream, ())})
        raise ConfigError(
            f"--config {config}: {'; '.join(mixed)}: the recording {recording} holds this stream from connections of "
            "two markets, which the server sends as one stream, so the feed would read the other market's frames as "
            f"its own: serve one market's connections alone (--connection {' or --connection '.join(mixed_names)})"
        )
    # A connection of no name (an hftbacktest capture) may be any feed's.
    foreign = [
        f"feeds.{n}: {stream} (recorded by {carrier}, not by this feed, {feed.name})"
        for n, feed, stream in subscribed
        if carriers is not None and len(carriers.get(stream, ())) == 1
        for carrier in carriers[stream]
        if carrier and feed_of_connection([feed], carrier) is None
    ]
    if foreign:
        raise ConfigError(
            f"--config {config}: {'; '.join(foreign)}: the recording {recording} holds this stream from another feed's "
            "connections, which the server sends to the one subscribing, so the feed would read that feed's frames "
            "(another market's) as its own: serve a recording of this feed's market, or subscribe that market's feed"
        )
    unserved = [f"feeds.{n}: {stream}" for n, _, stream in subscribed if stream not in topics]
    if unserved:
        raise ConfigError(
            f"--config {config}: {'; '.join(unserved)}: a stream its subscriptions ask for (channel and its options: "
            f"depth speed, book depth, bar interval) is not in the recording {recording}, whose streams are {listed}: "
            "the server would send nothing on it (subscribe the channels the recording has, or serve a recording of them)"
        )


def read_local_config(config: Path, venue: str) -> dict[str, Any]:
    """The paper config to point at a server speaking ``venue``: one of its feeds at least must be of that venue.

    The feeds of other venues (a config trading several) are left to servers of their own.

    Raises
    ------
    ConfigError
        The file cannot be read, is not a mapping, or has feeds of other venues alone (no client of it
        could ever subscribe to this server).
    """
    from tradebus.config.load import read_yaml

    try:
        data = read_yaml(config)
    except ConfigError as exc:
        raise ConfigError(f"--config {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config {config}: not a paper config (a YAML mapping)")
    feeds = data.get("feeds") or []
    if any(isinstance(feed, dict) and feed.get("venue") == venue for feed in feeds):
        return data
    for i, feed in enumerate(feeds):
        other = feed.get("venue") if isinstance(feed, dict) else None
        if isinstance(other, str) and other != venue:  # a feed without a venue is left to the config's validation
            raise ConfigError(
                f"--config {config}: feed {i} is of venue {other}; this server speaks {venue}: "
                f"serve a recording of {other} with --venue {other}, or give a paper config of {venue} feeds"
            )
    return data


def write_local_config(
    data: dict[str, Any],
    config: Path,
    out: Path,
    ws_url: str,
    http_url: str,
    model: type[PaperConfig] = PaperConfig,
    venue: str | None = None,
) -> None:
    """Write a copy of the paper config ``data`` (read from ``config``) with every feed's endpoints the local server's.

    With ``venue``, only the feeds of that venue are pointed at the server; the others keep their endpoints
    (serve their venues' recordings with the copy as ``--config`` to point them in turn).

    The copy is the config validated as ``model`` (a live config: :class:`~tradebus.node.live.LiveConfig`)
    with every path absolute (as a run's ``config.yaml``), so that it names the files the original
    names wherever it is written.

    Raises
    ------
    ConfigError
        The config is invalid, the copy cannot be written, or ``out`` is ``config``.
    """
    _refuse_overwriting(out, {"--config": config})  # scripts/live_demo.py writes its copy here too
    left = []
    for n, feed in enumerate(data.get("feeds") or []):
        if venue is not None and feed.get("venue") != venue:
            left.append(f"feeds.{n} ({feed.get('venue')}, {feed.get('ws_url')})")
            continue
        feed["ws_url"] = ws_url
        adapter = VENUES.get(feed.get("venue", ""))
        options = None if adapter is None else adapter.feed_options
        if options is not None and "rest_url" in options.model_fields:  # a venue that fetches REST book snapshots
            feed["rest_url"] = http_url
    text = dump_paper_config(parse_config(data, f"--config {config}", config.resolve().parent, model=model))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)  # `runs/` does not exist in a fresh clone
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--write-config {out}: cannot write it ({exc.strerror}: {exc.filename})") from None
    logger.info("config pointing at the local server written to {}", out)
    if left:
        logger.info(
            "{} of other venues left as they are (a server of their venue given --config {} points them)",
            ", ".join(left), out,
        )
