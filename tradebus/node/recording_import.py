"""Recordings into the catalog: every paper session becomes backtest data.

:func:`import_recording` parses a paper daemon's recorder file (or a hftbacktest capture)
with the very feed parsers of its paper config -- as ``tradebus replay`` does -- and writes
every message they emit into catalog datasets through
:class:`~tradebus.data.market_ingest.CatalogSink`: trades, quotes, the L2 book (the snapshot
the book sync seeded, then every delta it applied), mark prices, funding rates and bars.
A trades dataset's manifest records its instrument's ``contract_size`` (the config's; none for an
inverse contract), so ``data bars`` counts the venue's contracts as base units.
``ts_init`` is the frame's recorded receive time (a trade held back behind a gap in trade ids, below, and a
book seeded from a REST snapshot with the deltas buffered while it was fetched, and its top's quote, which the sync
stamps with the last delta's: the receive time of the line that released it, where a replay's clock stands). A frame a parser rejects (a garbled
payload) is left out, counted, logged at WARNING with the first one's number and reason, and
noted in every manifest written.

A book that goes out of sync (a lost update, a connection that ended) has no rows until a
snapshot resyncs it, as live. When a later snapshot in the recording does, the stretch
without book rows is named in every manifest, and stored in the book dataset's manifest as
``unsynced`` (from its last row before the stretch to the snapshot; a backtest that
replays the book refuses a window that overlaps it); when none does, the book rows would stop there
while the other streams go on, so the import is refused, naming the frame and its time. A
subscribed book that never comes in sync (no snapshot in the recording seeds it) would have no
rows at all: the import is refused too, naming the book.

A venue's trades after a gap in its trade ids are held back until the recorded answer of the
daemon's REST fetch of the missing ones, as ``tradebus replay`` holds them; a recording that ends
before that answer (cut, or its daemon stopped during the fetch) releases them at its end, so no
received trade is left out: at its last line, the daemon's ``run:stop`` (or a connection's ``end:``)
included, where the replay's clock stands when it delivers them. A killed daemon's session (a
``run:start`` and no ``run:stop``) releases them at its last line too, though its replay keeps them
held as the killed daemon did: the replay reproduces what the session's strategies saw, the catalog
holds the market's trades the recording received. The ids no answer filled are stored in the trades dataset's manifest
as ``missed_trades`` ``[start_ns, end_ns, first_id, last_id, lost]`` (listed by data info); a
backtest whose window overlaps one is refused unless ``data.allow_missed_trades``
(``tradebus.cli.check_missed_trades``).

A recording a restarted daemon appended its session to (a later ``run:start``) is read whole, each restart taken
as its daemon ran it (``tradebus replay --session N`` plays one session on feeds of its own): the session before
ends at its ``run:stop`` (a killed one's at its last line), releasing the trades held there; the next one's feeds
begin anew (:meth:`~tradebus.adapters.common.feed.Feed.restart_run`): its books are out of sync from its
``run:start`` to the snapshot its connection brought (stored in ``unsynced`` as any such stretch: its connection ids
count from 1 again, so no change of connection tells it), and the trade ids printed while the daemon was down, which
it did not fetch, are a gap stored in ``missed_trades`` at its first trade, which is written at its receive time.

The daemon's stale-feed episodes (the recorder's ``stale:<feed>`` and ``live:<feed>`` lines,
:mod:`tradebus.adapters.common.recorder`) are played into a
:class:`~tradebus.risk.guard.MarketGuard` as ``tradebus replay`` plays them, with every message
the feeds emit, and each stretch an instrument was blocked -- from the ``FeedStale`` to the
moment that guard lifts it (the instrument's first trade, quote, bar, book change, mark price or
funding rate after it, a book snapshot its stream pushed, or a trades-only feed's recorded proof of
life; the end of the recording if none came) -- is stored as ``stale`` ``[start_ns, end_ns, feed]``
in the manifest of every dataset of that instrument. The daemon denied every new order on it
there; a backtest over the catalog has no market guard, so one whose window overlaps such a
stretch is refused (``tradebus.cli.check_stale_feeds``).
The command is ``tradebus data import-recording`` (registered on the data CLI by :mod:`tradebus.cli`).
"""

from __future__ import annotations

from pathlib import Path
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
import numpy as np
import typer
from loguru import logger
from rich.console import Console
from rich.markup import escape

from tradebus.adapters.common.recorder import END_PREFIX, LIVE_PREFIX, RUN_PREFIX, STALE_PREFIX
from tradebus.adapters.common.trade_gaps import TradeGapLog
from tradebus.data.catalog import Catalog, DatasetExists, Manifest
from tradebus.data.market_ingest import CatalogSink
from tradebus.engine.messages import (
    Bar,
    BookDelta,
    BookSnapshot,
    FeedStale,
    FundingRate,
    MarkPrice,
    Quote,
    Trade,
)
from tradebus.errors import DataError, ParseError, TradebusError
from tradebus.risk.guard import MarketGuard

if TYPE_CHECKING:
    from tradebus.adapters.common.feed import Feed

__all__ = ["import_recording", "import_recording_cmd"]

#: Messages written at the receive time of the line that released them when the feed stamped them earlier.
_RESTAMPED = frozenset({Trade, BookSnapshot, BookDelta, Quote})


def import_recording(
    recording: str | Path,
    config: Any,
    catalog: Catalog | str | Path,
    *,
    suffix: str = "",
    mode: str = "create",
) -> dict[tuple[str, str], Manifest]:
    """Parse a recorder file or hftbacktest capture with ``config``'s feeds into catalog datasets.

    Parameters
    ----------
    recording
        The recording (format detected as in ``tradebus replay``).
    config
        The :class:`~tradebus.node.config.PaperConfig` whose feeds made it.
    catalog
        Catalog (or its root).
    suffix, mode
        See :class:`CatalogSink`.

    Returns
    -------
    dict
        The manifest of every dataset written, by ``(instrument_id, kind)``.

    Raises
    ------
    DataError
        Unreadable recording (names the file and frame), a dataset that exists (``mode="create"``),
        receive times that go back (the rows must be in time order), a book that goes out of
        sync with no later snapshot to resync it (names the frame and its time), or a subscribed
        book that never comes in sync (names it); nothing is written.
    """
    from tradebus.node.feeds import build_feeds, feed_of_connection
    from tradebus.node.playback import RUN_START, RUN_STOP, read_recording

    cat = catalog if isinstance(catalog, Catalog) else Catalog(catalog)
    instruments = config.instrument_map()
    market_of = {iid: fc.market for fc in config.feeds for iid in fc.subscriptions}

    def locate(iid: str) -> tuple[str, str, str]:
        inst = instruments[iid]
        return inst.venue.lower(), market_of.get(iid, "spot"), inst.symbol

    sink = CatalogSink(cat, locate, suffix, mode, notes=(f"imported from recording {Path(recording).name}",))
    # the feeds emit the venue's trade sizes (contracts of the instrument's contract size); an inverse
    # contract's is worth an amount of the quote currency, not of the base: none recorded (as a backfill)
    sink.contract_sizes = {iid: inst.contract_size for iid, inst in instruments.items() if not inst.inverse}
    clock = [0]
    stale = _StaleWatch()
    missed = TradeGapLog()

    def emit(msg: Any) -> None:
        stale.on_message(msg)
        missed(msg)
        if type(msg) in _RESTAMPED and msg.ts_init < clock[0]:
            # a trade held behind a gap in trade ids, released at the line that ended its recovery (or the
            # recording); a book seeded from a REST snapshot and the deltas buffered while it was fetched (and its
            # top's quote), stamped with the last delta's receive time but known at the answer's: the replay's
            # clock, and the daemon's router, handle them at that line
            msg = msgspec.structs.replace(msg, ts_init=clock[0])
        sink(msg)

    feeds = build_feeds(config, emit, live=False, clock_ns=lambda: clock[0])
    stale.register(feeds)
    books = _BookWatch([check for f in feeds for check in f.book_checks().items()], sink.last_book_ns)
    routes: dict[str, Feed | None] = {}
    frame = 0
    rejected = 0
    first_rejected = ""
    recv_ns = frame_ns = 0
    read = 0  # lines read
    stopped = False  # the last line read is a run:stop: the feeds ended the run there

    def end_run(at_ns: int) -> None:
        # the trades held behind a gap whose recorded fetch the session does not reach, released at its last line
        # (a run:stop included), as the replay does; a killed session's too (no run:stop), which its replay keeps
        # held as its daemon did: the catalog holds the market's trades, not what a session saw
        clock[0] = at_ns
        for feed in feeds:
            feed.end_run(at_ns)
        stale.after(frame_ns)

    try:
        for recv_ns, conn, raw in read_recording(recording, feeds, episodes=True, runs=True, ends=True):
            if conn == RUN_START and read:
                # a daemon restarted on the recording: the last session ended at its run:stop, or at its last line
                # (killed); the new one's feeds began anew, their books out of sync until its snapshots
                if not stopped:
                    end_run(clock[0])
                for feed in feeds:
                    feed.restart_run()
                books.after(frame, recv_ns, "a restarted daemon's run:start")
            read += 1
            clock[0] = recv_ns
            if conn == RUN_STOP:
                end_run(recv_ns)
                stopped = True
            elif not conn.startswith(RUN_PREFIX):
                stopped = False
            if conn.startswith((RUN_PREFIX, END_PREFIX)):
                continue  # a moment of the daemon's run or a connection's end: the time the recording ends at, if last
            frame_ns = recv_ns
            if conn.startswith((STALE_PREFIX, LIVE_PREFIX)):
                stale.on_episode(recv_ns, conn, raw)
                continue
            frame += 1
            if conn not in routes:
                routes[conn] = feed_of_connection(feeds, conn)
            feed = routes[conn]
            if feed is None:
                continue
            try:
                feed.on_frame(raw, recv_ns, conn)
            except ParseError as exc:
                rejected += 1
                first_rejected = first_rejected or f"frame {frame}: {exc}"
            books.after(frame, recv_ns)
            stale.after(recv_ns)
        for feed in feeds:
            feed.check_played(recording)
        if frame and not stopped:
            end_run(recv_ns)
        books.check_resynced(recording)
        stale.finish(frame_ns)
        for iid, stretches in stale.stretches.items():
            for a, b, feed in stretches:
                logger.warning("{}: feed {} stale from {} to {}: the daemon denied every order on {} in between",
                               Path(recording).name, feed, _when(a), _when(b), iid)
        missed_trades = missed.lost()
        for iid, gaps in missed_trades.items():
            for a, b, first, last, lost in gaps:
                logger.warning("{}: {} trade ids {}..{} missing between {} and {}: {} trades lost for good, left out",
                               Path(recording).name, iid, first, last, _when(a), _when(b), lost)
        notes = list(books.stretches)
        if rejected:
            notes.append(f"{rejected} frame(s) rejected by the parsers and left out (first: {first_rejected})")
        for note in notes:
            logger.warning("{}: {}", Path(recording).name, note)
        sink.notes = (*sink.notes, *notes)
        sink.unsynced = books.unsynced
        sink.stale = stale.stretches
        sink.missed_trades = missed_trades
        return sink.commit()
    except DatasetExists:
        sink.abort()
        raise
    except DataError as exc:
        sink.abort()
        if str(exc).startswith(str(recording)):  # the reader names the file (and line) itself
            raise
        raise DataError(f"{recording}: frame {frame}: {exc}") from None
    except BaseException:
        sink.abort()
        raise


def _when(ns: int) -> str:
    return f"{np.datetime64(ns, 'ns')}Z"


class _BookWatch:
    """Where each book of a recording went out of sync, frame by frame, and whether a snapshot brought it back.

    Parameters
    ----------
    checks
        ``(instrument_id, in-sync test)`` of every subscribed book (the feeds' ``book_checks``).
    last_row_ns
        ``instrument_id -> ts_init`` of its last book row written (:attr:`CatalogSink.last_book_ns`).

    Attributes
    ----------
    stretches
        One note per stretch a later snapshot closed (from which frame and time to which).
    unsynced
        ``instrument_id -> [(start_ns, end_ns), ...]`` of the same stretches: from the last book row
        before it (the lost update came after that row) to the snapshot that closed it.
    """

    def __init__(self, checks: list[tuple[str, Callable[[], bool]]], last_row_ns: Mapping[str, int]) -> None:
        self._checks = checks
        self._last_row_ns = last_row_ns
        self._synced = {iid: False for iid, _ in checks}
        self._never_synced = {iid for iid, _ in checks}
        self._lost: dict[str, tuple[str, int, int]] = {}
        self.stretches: list[str] = []
        self.unsynced: dict[str, list[tuple[int, int]]] = {}

    def after(self, frame: int, recv_ns: int, where: str = "") -> None:
        """Note the books that went out of sync or came back with frame ``frame`` (or at the line ``where`` names)."""
        synced = self._synced
        for iid, check in self._checks:
            now = check()
            if now is synced[iid]:
                continue
            synced[iid] = now
            self._never_synced.discard(iid)
            if not now:
                self._lost[iid] = (where or f"frame {frame}", recv_ns, self._last_row_ns.get(iid, recv_ns))
            elif iid in self._lost:  # not the first snapshot: a resync
                lost_frame, lost_ns, last_row_ns = self._lost.pop(iid)
                self.stretches.append(
                    f"book {iid} out of sync from {lost_frame} ({_when(lost_ns)}) to the snapshot of frame "
                    f"{frame} ({_when(recv_ns)}): no book rows in between"
                )
                self.unsynced.setdefault(iid, []).append((last_row_ns, recv_ns))

    def check_resynced(self, recording: str | Path) -> None:
        """Refuse a recording that ends with a book out of sync since a frame (its rows would stop there),
        or with a subscribed book that never came in sync (it would have no rows at all).

        Raises
        ------
        DataError
            Naming the file, the book, the frame where it went out of sync and its receive time; or
            the book that never came in sync.
        """
        if self._never_synced:
            books = " and ".join(sorted(self._never_synced))
            raise DataError(
                f"{recording}: the {books} book the config subscribes never came in sync in the recording (no "
                "snapshot in it seeded the book its depth updates apply to): there would be no book rows at all "
                "while the other streams go on; nothing written "
                "(import it with a config that does not subscribe that book to keep the other streams)"
            )
        if not self._lost:
            return
        iid, (frame, recv_ns, _) = min(self._lost.items(), key=lambda item: item[1][1])
        raise DataError(
            f"{recording}: {frame} (received {_when(recv_ns)}): the {iid} book went out of sync there "
            "(the warning logged above says why) and no snapshot follows in the recording to resync it: its "
            "book rows would stop there while the other streams go on; nothing written (cut the recording "
            "before that frame, or import it with a config that does not subscribe that book)"
        )


class _StaleWatch:
    """Where the recorded daemon's market guard blocked each instrument for a stale feed.

    The recording's ``stale:``/``live:`` lines and every message its feeds emit are played into a
    :class:`~tradebus.risk.guard.MarketGuard` as the playback plays them
    (:class:`~tradebus.node.playback.Playback`, :class:`~tradebus.node.router.NodeRouter`), so
    the stretches end where the daemon's guard lifted its block, by the guard's own rules.

    Attributes
    ----------
    stretches
        ``instrument_id -> [(start_ns, end_ns, feed), ...]``: from the ``FeedStale`` of ``feed`` to
        the receive time of what lifted the block (the last line of the recording + 1 ns if nothing
        did), end exclusive.
    """

    _DATA = (Trade, Quote, Bar, BookDelta, MarkPrice, FundingRate)

    def __init__(self) -> None:
        self.guard = MarketGuard()
        self._feeds: dict[str, Feed] = {}
        self._open: dict[str, tuple[int, str]] = {}
        self.stretches: dict[str, list[tuple[int, int, str]]] = {}

    def register(self, feeds: list[Feed]) -> None:
        """Declare the feeds to the guard (instruments, trades-only proof of life, snapshots on stream)."""
        for feed in feeds:
            self._feeds[feed.name] = feed
            self.guard.register_feed(
                feed.name, feed.instrument_ids, {}, connection_live_ns=feed.connection_live_ns(),
                snapshots_on_stream=feed.snapshots_on_stream,
            )

    def on_message(self, msg: Any) -> None:
        """A message a feed emitted: market data ends its instrument's stale episode, as in the router."""
        if not self._open:
            return
        if isinstance(msg, self._DATA):
            self.guard.on_data(msg.instrument_id)
        elif isinstance(msg, BookSnapshot):
            self.guard.on_snapshot(msg.instrument_id)

    def on_episode(self, recv_ns: int, conn: str, raw: str | bytes) -> None:
        """A recorded ``stale:<feed>`` or ``live:<feed>`` line (a feed the config does not have is skipped)."""
        from tradebus.node.playback import _last_message_ns

        stale = conn.startswith(STALE_PREFIX)
        feed = self._feeds.get(conn[len(STALE_PREFIX if stale else LIVE_PREFIX):])
        if feed is None:
            return
        if not stale:
            feed.recorded_live_ns = recv_ns
            self.after(recv_ns)
            return
        self.guard.on_stale(FeedStale(feed.name, _last_message_ns(raw, conn), recv_ns, recv_ns))
        for iid in feed.instrument_ids:
            self._open.setdefault(iid, (recv_ns, feed.name))

    def after(self, recv_ns: int) -> None:
        """Close the stretch of every instrument the guard no longer blocks after a line received at ``recv_ns``."""
        for iid in [iid for iid in self._open if not self.guard.stale(iid)]:
            start, feed = self._open.pop(iid)
            self.stretches.setdefault(iid, []).append((start, recv_ns, feed))

    def finish(self, last_ns: int) -> None:
        """Close the stretches still open at the end of the recording (its last line received at ``last_ns``)."""
        for iid, (start, feed) in self._open.items():
            self.stretches.setdefault(iid, []).append((start, last_ns + 1, feed))
        self._open.clear()


def import_recording_cmd(
    recording: Annotated[Path, typer.Argument(help="Recorder file or hftbacktest capture.")],
    config: Annotated[Path, typer.Option("--config", "-c", help="The paper config of the recorded feeds.")],
    suffix: Annotated[str, typer.Option(help="Appended to each dataset name (book, quotes, trades ...).")] = "",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing datasets.")] = False,
    catalog: Annotated[Path, typer.Option("--catalog", help="Catalog root directory.")] = Path("data/catalog"),
) -> None:
    """Parse a recording with its feeds into book, quotes, trades, mark price and funding datasets.

    The manifests keep what the recording lacks, listed by tradebus data info: each stretch a book was out of sync (unsynced), each stretch the daemon's market guard blocked an instrument on a stale feed (stale) and each gap in trade ids no recorded fetch filled (missed_trades). A backtest whose window overlaps one is refused (exit 3) unless data.allow_stale (stale stretches) or data.allow_missed_trades (trade gaps) is set; a book out of sync has no such key. A subscribed book that never comes in sync refuses the import.

    Exit codes as every data command: 2 a bad option or config, 3 bad data or an existing dataset.
    """
    from tradebus.data.cli import EXIT_CODES
    from tradebus.node.config import load_paper_config

    try:
        manifests = import_recording(
            recording, load_paper_config(config), catalog, suffix=suffix, mode="overwrite" if overwrite else "create"
        )
    except TradebusError as exc:
        message = f"{exc.path}: dataset exists; replace it with --overwrite" if isinstance(exc, DatasetExists) else str(exc)
        Console(stderr=True).print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
        raise typer.Exit(next(code for cls, code in EXIT_CODES if isinstance(exc, cls))) from None
    for manifest in manifests.values():
        where = f"{manifest.venue}/{manifest.market}/{manifest.symbol}/{manifest.dataset}"
        Console().print(f"imported {recording.name} -> {where} ({manifest.rows:,} rows)", highlight=False, soft_wrap=True)
