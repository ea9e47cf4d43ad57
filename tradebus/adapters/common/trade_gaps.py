"""Continuity of a venue's sequential trade ids: a gap is detected, recovered where possible, and reported.

Binance numbers every trade of a symbol (``t`` of the trade stream, ``a`` of aggTrade)
and OKX every trade of an instrument (``tradeId``), one after the other. A message may
stand for ``count`` consecutive ids ending at its own (an OKX ``trades`` push aggregates
the fills of one taker order at one price: ``tradeId`` is the last of them). A trade whose
first id is beyond the next expected one means trades were printed that this process never
saw (they went by while the connection was down, or a frame was lost). :class:`TradeGaps`
keeps the next expected id of each instrument, and on a gap:

1. logs it and holds back the trade that revealed it, and every later trade of that
   instrument, so nothing is delivered out of order;
2. asks the venue for the missing ids (``recover="fetch"``: an async fetch through the
   venue's REST client, which records its answer), or waits for that answer in the
   recording (``recover="recorded"``: a playback; an answer not recorded within
   ``2 * timeout`` seconds of recording time counts as none), or recovers nothing
   (``recover="none"``: a venue without a public history by id). A venue's REST history
   may lag its stream (OKX: each market-data service has its own cache), so an answer
   right after the gap can miss its newest ids: the ids still missing are asked for again
   after :data:`RETRY_DELAY` seconds, up to :data:`RETRIES` times, all within ``timeout``.
   Every answer is recorded (an attempt left no time records an empty one), so a playback
   merges the same answers and ends the recovery at the same one: the first that leaves
   nothing missing, or the ``1 + RETRIES``-th; the end of the run gives the recovery up
   (:meth:`TradeGaps.end`): a daemon's stop (after its ``run:stop`` line) cancels the fetch in
   flight, whose answer is neither recorded nor handled, and releases the trades held behind
   it, as a playback of its recording does at that line, its last (a recording cut short
   ends there too);
3. delivers :class:`~tradebus.engine.messages.TradesMissed` with the range, how many
   were recovered and the time of the trade that revealed the gap, then the recovered
   trades in id order (each with the receive time of the REST answer that ends the
   recovery), then the trades held back. The message comes first so that a consumer (the
   daemon's bar builders) knows of lost trades before it sees the trades around them.

The hot path is one integer compare per trade (:meth:`TradeGaps.on_trade` falls to the
slow path only when the id is not the expected one; while a recovery is pending the
expected id is one no trade has).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Literal

import msgspec
from loguru import logger

from tradebus.adapters.common.client import Sink
from tradebus.engine.messages import Trade, TradesMissed
from tradebus.errors import ConfigError

__all__ = ["RETRIES", "RETRY_DELAY", "TRADES_CONN", "TradeFetch", "TradeGap", "TradeGapLog", "TradeGaps", "TradeLine"]

#: Recorder connection prefix of a REST trade-history answer: ``"rest-trades:<venue symbol>"`` (Binance adds
#: ``"@<feed name>"``: its spot and USD-M markets share symbols).
TRADES_CONN = "rest-trades:"

#: Times the ids a REST answer left missing are asked for again (the venue's history may lag its stream).
RETRIES = 2
#: Seconds before asking again (bounded by what is left of the fetch's timeout).
RETRY_DELAY = 1.0

TradeFetch = Callable[[str, int, int, float], Awaitable[tuple[list[Trade], int]]]
"""``fetch(instrument_id, first_id, last_id, timeout)``: the venue's trades of those ids and the receive
time of its answer, within ``timeout`` seconds. It records the answer (an empty one when the venue
failed or timed out, or ``timeout`` is 0), so a playback recovers the same trades at the same point;
it should not raise."""

_UNKNOWN = -1  # no trade seen yet: the first one sets the expected id
_RECOVERING = -2  # no trade id is negative: every trade takes the slow path and is held back


class TradeLine:
    """The trade-id state of one instrument (read by the venue's trade handler)."""

    __slots__ = ("instrument_id", "next_id", "resume_id", "held", "gap", "since_ns", "task", "found", "answers")

    def __init__(self, instrument_id: str) -> None:
        self.instrument_id = instrument_id
        self.next_id = _UNKNOWN
        self.resume_id = _UNKNOWN  # the id expected when a restart (TradeGaps.restart) forgot it
        self.held: list[tuple[Trade, int]] | None = None  # (trade, count of ids it stands for)
        self.gap = (0, 0)
        self.since_ns = 0
        self.task: asyncio.Task[None] | None = None
        self.found: dict[int, Trade] = {}  # trades of the pending gap recovered so far, by id
        self.answers = 0  # REST answers of the pending gap so far


class TradeGaps:
    """Trade-id continuity of one feed's instruments (see the module docstring).

    Parameters
    ----------
    venue
        Venue name for logs (``"binance spot"``).
    sink
        Receives the trades (in id order) and :class:`TradesMissed`.
    seen
        The feed's de-duplication (``seen(key) -> bool``, marks the key): a recovered trade
        already delivered is not delivered again. Keys are ``(instrument_id, trade_id)``.
    recover
        ``"fetch"`` (live, with ``fetch``), ``"recorded"`` (playback) or ``"none"``.
    fetch
        The venue's REST fetch of missing trades (``recover="fetch"``).
    timeout
        Seconds a live fetch may take (the fetch enforces it); a playback waits ``2 * timeout``
        of recording time for the recorded answer.
    clock_ns
        Receive-time source of a :class:`TradesMissed` whose fetch raised.
    """

    def __init__(
        self,
        venue: str,
        sink: Sink,
        seen: Callable[[Hashable], bool],
        *,
        recover: Literal["fetch", "recorded", "none"] = "none",
        fetch: TradeFetch | None = None,
        timeout: float = 10.0,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        if recover == "fetch" and fetch is None:
            raise ConfigError(f"{venue} trade gaps: recover='fetch' needs a fetch function")
        self.venue = venue
        self.sink = sink
        self.seen = seen
        self.recover = recover
        self.fetch = fetch
        self.timeout = timeout
        self.clock_ns = clock_ns
        self.lines: dict[str, TradeLine] = {}
        #: Instruments whose recovery is pending (playback: checked by :meth:`expire`).
        self.recovering = 0
        #: Whether :meth:`end` ended the run: no fetch is started any more.
        self.ended = False
        self._canceled: list[asyncio.Task[None]] = []  # fetches :meth:`end` canceled, awaited by :meth:`close`
        #: Gaps detected and trade ids missed / recovered, in total.
        self.gaps = 0
        self.missed = 0
        self.recovered = 0

    def line(self, instrument_id: str) -> TradeLine:
        """The state of ``instrument_id`` (created on first use)."""
        line = self.lines.get(instrument_id)
        if line is None:
            line = self.lines[instrument_id] = TradeLine(instrument_id)
        return line

    def on_trade(self, line: TradeLine, trade: Trade, trade_id: int, count: int = 1) -> None:
        """Deliver ``trade`` (not a duplicate) or hold it back behind a gap.

        ``trade_id`` is its id, the last of the ``count`` consecutive ids it stands for.
        """
        if trade_id - count + 1 == line.next_id:
            line.next_id = trade_id + 1
            self.sink(trade)
            return
        self.off_sequence(line, trade, trade_id, count)

    def off_sequence(self, line: TradeLine, trade: Trade, trade_id: int, count: int = 1) -> None:
        """The slow path of :meth:`on_trade` (a venue handler inlines the compare and calls this)."""
        if line.held is not None:
            line.held.append((trade, count))
            return
        expected = line.next_id
        first_id = trade_id - count + 1
        restarted = False
        if expected == _UNKNOWN and line.resume_id != _UNKNOWN:  # the first trade after a restart
            # ids not after the last session's (the venue's reset them, or re-sent one): a first trade, as the
            # restarted daemon took it, the ids that follow checked against it
            restarted = first_id > line.resume_id
            if restarted:
                expected = line.resume_id
            line.resume_id = _UNKNOWN
        if not restarted and (expected == _UNKNOWN or first_id <= expected):  # the first; or an older one not seen
            line.next_id = max(expected, trade_id + 1)
            self.sink(trade)
            return
        first, last = expected, first_id - 1
        self.gaps += 1
        logger.warning(
            "{}: {} trade ids {}..{} missing ({} trades) before trade {}; {}",
            self.venue,
            line.instrument_id,
            first,
            last,
            last - first + 1,
            trade_id,
            "printed while the daemon was down: its restart fetched none of them" if restarted else
            {"fetch": "fetching them", "recorded": "waiting for the recorded fetch", "none": "the venue keeps no history to fetch them from"}[self.recover],
        )
        line.held = [(trade, count)]
        line.next_id = _RECOVERING
        line.gap = (first, last)
        line.since_ns = trade.ts_init
        self.recovering += 1
        if self.recover == "none" or restarted:
            self._finish(line, [], trade.ts_init)
        elif self.recover == "fetch" and not self.ended:  # ended: given up by the end() releasing it
            line.task = asyncio.get_running_loop().create_task(
                self._fetch(line), name=f"trades:{line.instrument_id}:{first}"
            )

    async def _fetch(self, line: TradeLine) -> None:
        first, last = line.gap
        assert self.fetch is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while True:
            try:
                trades, recv_ns = await self.fetch(line.instrument_id, first, last, max(deadline - loop.time(), 0.0))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a failed recovery must not end the feed; it is reported
                logger.warning(
                    "{}: fetching {} trades {}..{} failed: {}: {}", self.venue, line.instrument_id, first, last,
                    type(exc).__name__, exc,
                )
                line.task = None
                self._finish(line, [], self.clock_ns())
                return
            missing = self._add_answer(line, trades)
            if missing is None:
                line.task = None
                self._finish(line, [], recv_ns)
                return
            first, last = missing
            logger.info("{}: {} trades {}..{} not in the venue's history yet; asking again", self.venue,
                        line.instrument_id, first, last)
            await asyncio.sleep(min(RETRY_DELAY, max(deadline - loop.time(), 0.0)))

    def _add_answer(self, line: TradeLine, trades: list[Trade]) -> tuple[int, int] | None:
        """Merge one answer; the span of ids still missing if another is asked for, else ``None`` (done)."""
        first, last = line.gap
        for trade in trades:
            tid = int(trade.trade_id)
            if first <= tid <= last:
                line.found[tid] = trade
        line.answers += 1
        if len(line.found) == last - first + 1 or line.answers > RETRIES:
            return None
        low = next(tid for tid in range(first, last + 1) if tid not in line.found)
        high = next(tid for tid in range(last, first - 1, -1) if tid not in line.found)
        return low, high

    def on_recorded(self, instrument_id: str, trades: list[Trade], recv_ns: int) -> None:
        """A recorded answer of a fetch (playback): merged into ``instrument_id``'s pending gap, ended as live."""
        line = self.lines.get(instrument_id)
        if line is None or line.held is None:
            logger.debug("{}: recorded trades of {} with no gap pending, skipped", self.venue, instrument_id)
            return
        if self._add_answer(line, trades) is None:
            self._finish(line, [], recv_ns)

    def expire(self, now_ns: int) -> None:
        """Playback: give up the recoveries whose recorded answer did not come within ``2 * timeout``."""
        limit = int(2 * self.timeout * 1e9)
        for line in list(self.lines.values()):
            if line.held is not None and now_ns - line.since_ns > limit:
                logger.warning("{}: no recorded fetch of {} trades {}..{}", self.venue, line.instrument_id, *line.gap)
                self._finish(line, [], now_ns)

    def end(self, now_ns: int) -> None:
        """The run ended at ``now_ns`` with recoveries pending: give them up as :meth:`expire` does, so the trades
        held behind them are delivered (after their ``TradesMissed``, stamped ``now_ns``), not dropped.

        The one rule of a run's end, live and played back alike: a daemon calls it when it stops, after its
        ``run:stop`` line (``now_ns`` that line's time), a playback at the recording's last line (that
        ``run:stop``, or where the recording was cut; not in the replay of a killed daemon's session, which never
        came to it, but in its import into the catalog). A fetch in flight is canceled: its answer, not
        recorded, is neither merged nor delivered, and no fetch starts from now on.
        """
        self.ended = True
        for line in self.lines.values():
            task, line.task = line.task, None
            if task is not None:
                task.cancel()
                self._canceled.append(task)
        for line in list(self.lines.values()):
            while line.held is not None:  # a held trade may reveal the next gap
                logger.warning("{}: the run ends before the answer of the fetch of {} trades {}..{}", self.venue,
                               line.instrument_id, *line.gap)
                self._finish(line, [], now_ns)

    def held(self) -> list[dict[str, int | str]]:
        """The trades held back now, one entry per instrument with a recovery pending: ``instrument_id``, the
        pending gap's ids ``first_id``..``last_id``, the ``trades`` held behind it (the one that revealed it
        first) and ``since_ns``, the receive time of that one."""
        return [
            {"instrument_id": line.instrument_id, "first_id": line.gap[0], "last_id": line.gap[1],
             "trades": len(line.held), "since_ns": line.since_ns}
            for line in self.lines.values() if line.held is not None
        ]

    def restart(self) -> None:
        """A daemon restarted on the recording played begins its session (the import of a recording several sessions
        were appended to: :mod:`tradebus.node.recording_import`), after :meth:`end` ended the last one.

        The restarted daemon's trade-id lines began empty: its first trade of each instrument was delivered, and
        no fetch was made of the ids printed while it was down. So the first trade of each instrument after the
        restart is delivered at once too, and if its ids come after the last session's expected one, the ids
        between are a gap no fetch filled: its :class:`TradesMissed` (nothing recovered) comes first, stamped at
        that trade's receive time, as for a venue without a history (``recover="none"``). If they do not (the
        venue reset its ids, or re-sent a trade), the ids that follow are checked against that trade's.
        """
        self.ended = False
        for line in self.lines.values():
            if line.next_id >= 0:
                line.resume_id, line.next_id = line.next_id, _UNKNOWN

    def _finish(self, line: TradeLine, trades: list[Trade], recv_ns: int) -> None:
        """End the pending gap with ``trades`` and the answers merged so far, all stamped ``recv_ns``."""
        first, last = line.gap
        iid = line.instrument_id
        seen = self.seen
        sink = self.sink
        by_id = line.found
        by_id.update((int(t.trade_id), t) for t in trades)
        found = [by_id[tid] for tid in sorted(by_id) if first <= tid <= last]
        line.found, line.answers = {}, 0
        held, line.held = line.held or [], None
        lost = last - first + 1 - len(found)
        self.missed += last - first + 1
        self.recovered += len(found)
        reason = f"trade ids {first}..{last} missed, {len(found)} recovered"
        if lost:
            logger.warning("{}: {}: {}, {} lost for good", self.venue, iid, reason, lost)
        else:
            logger.info("{}: {}: {}", self.venue, iid, reason)
        revealed_ns = held[0][0].ts_event if held else recv_ns
        sink(TradesMissed(iid, first, last, len(found), revealed_ns, reason, recv_ns, recv_ns))
        for trade in found:
            if not seen((iid, trade.trade_id)):
                sink(trade if trade.ts_init == recv_ns else msgspec.structs.replace(trade, ts_init=recv_ns))
        line.next_id = last + 1
        self.recovering -= 1
        for trade, count in held:  # a held trade may reveal the next gap: the rest is held behind it
            self.on_trade(line, trade, int(trade.trade_id), count)

    async def close(self) -> None:
        """Cancel the fetches in flight."""
        tasks = [line.task for line in self.lines.values() if line.task is not None] + self._canceled
        self._canceled = []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class TradeGap(msgspec.Struct, frozen=True):
    """One gap in an instrument's trade ids, as the trades a feed delivered around its ``TradesMissed`` show it.

    ``lost`` of the ids ``first_id..last_id`` (``recovered`` the others) were printed between the
    trade delivered at ``start_ns`` (``ts_init`` of the last one before the gap; the ``TradesMissed``'s
    if none came before) and the one at ``end_ns`` (the trade that revealed the gap); ``ended_ns`` is
    when the recovery ended (the ``TradesMissed``'s ``ts_init``: the receive time of the fetch's
    last answer, or of the moment it was given up).
    """

    instrument_id: str
    first_id: int
    last_id: int
    recovered: int
    lost: int
    start_ns: int
    end_ns: int
    ended_ns: int


class TradeGapLog:
    """The gaps in trade ids the messages of a feed leave (a sink: give it every message the feed emits).

    Attributes
    ----------
    gaps
        Every :class:`TradeGap` closed so far, in the order they were: a ``TradesMissed`` opens one,
        the first trade of its instrument after its ids (the trade that revealed it) closes it.
    """

    def __init__(self) -> None:
        self._last_ns: dict[str, int] = {}
        self._open: dict[str, TradesMissed] = {}
        self._start_ns: dict[str, int] = {}
        self.gaps: list[TradeGap] = []

    def __call__(self, msg: object) -> None:
        """A message the feed emitted (a trade or a ``TradesMissed`` updates the log; others are ignored)."""
        cls = type(msg)
        if cls is Trade:
            trade: Trade = msg  # type: ignore[assignment]
            iid = trade.instrument_id
            missed = self._open.get(iid)
            if missed is not None and int(trade.trade_id) > missed.last_id:
                del self._open[iid]
                self.gaps.append(TradeGap(
                    iid, missed.first_id, missed.last_id, missed.recovered, missed.lost, self._start_ns.pop(iid),
                    trade.ts_init, missed.ts_init,
                ))
            self._last_ns[iid] = trade.ts_init
        elif cls is TradesMissed:
            gap: TradesMissed = msg  # type: ignore[assignment]
            self._open[gap.instrument_id] = gap
            self._start_ns[gap.instrument_id] = self._last_ns.get(gap.instrument_id, gap.ts_init)

    def lost(self) -> dict[str, list[tuple[int, int, int, int, int]]]:
        """``instrument_id -> [(start_ns, end_ns, first_id, last_id, lost), ...]`` of the gaps with trades lost
        for good (as :attr:`~tradebus.data.catalog.Manifest.missed_trades` stores them)."""
        out: dict[str, list[tuple[int, int, int, int, int]]] = {}
        for g in self.gaps:
            if g.lost:
                out.setdefault(g.instrument_id, []).append((g.start_ns, g.end_ns, g.first_id, g.last_id, g.lost))
        return out
