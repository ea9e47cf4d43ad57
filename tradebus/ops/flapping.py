"""Flapping feeds and user streams: one alert for a connection that keeps cycling, instead of four per cycle.

A feed whose stream stays silent goes stale after ``stale_after``, is disconnected, its book is
resynced and it reconnects -- four alerts -- and, the stream still silent, does it again every
``stale_after`` (about 480 alerts an hour at 30 s). The rule, per feed:

* every disconnect is a cycle; while a feed had at most ``cycles`` disconnects in the last
  ``window`` seconds, its stale, disconnect, reconnect and resync alerts go out one by one (a
  real drop and its reconnection are always alerted);
* the disconnect that makes it ``cycles + 1`` in the window sends one alert,
  ``feed X flapping: k disconnects in the last 10 min`` (``1.5 s``, ``1 min 30 s``: :func:`duration_text`) (in place of its disconnect alert), and
  the feed's stale, disconnect, reconnect and resync alerts are held (counted) from then on;
* while it flaps, ``feed X still flapping: ...`` (disconnects in the window, alerts held, and
  ``not connected now`` when it is down) is sent every ``window`` seconds, by a timer
  (:meth:`FlapDetector.run`, on the daemon's event loop): a feed whose reconnections are all
  refused has no more events, and still gets its summary;
* its flapping ends once a connection has stayed open ``window`` seconds and its stream delivered
  market data since the last disconnect, with ``feed X delivers data again after flapping (n alerts
  held ...)``, found by the same timer. Data alone does not end it: a feed whose every connection
  delivers a little data then stalls sends its one flapping alert and then a summary every
  ``window``, not an end and a new flapping alert every cycle.
* a feed still flapping when the daemon stops gets its last summary (``feed X still flapping at
  the stop: ...``, :meth:`FlapDetector.close`) before the stop alert.

A live daemon's private user stream (:meth:`FlapDetector.add_stream`) follows the same rule for
its disconnect and reconnect alerts (``user stream X flapping: ...``, ``user stream X still
flapping: ...``), but carries no market data: an account may be quiet for hours. Its flapping
ends when a connection has stayed open ``window`` seconds (``user stream X stayed connected
10 min after flapping (n alerts held ...)``), found by the same timer.

A daemon's log file (:meth:`FlapDetector.add_log`; a detector of its own, whose alerts are of the
``log`` kind) follows it for its cannot-write and written-again alerts: a failed write is its
disconnect, the first write after failures its reconnect (``log file X flapping: k failures in the
last 10 min``); its flapping ends when it has been written ``window`` seconds without a failure.

The metrics count every stale feed, disconnect and resync whatever is alerted.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import NamedTuple

__all__ = ["FlapDetector", "duration_text"]


def duration_text(seconds: float) -> str:
    """``seconds`` as the alerts print a duration: ``1.5 s``, ``45 s``, ``10 min``, ``1 min 30 s``."""
    minutes, rest = divmod(seconds, 60.0)
    if minutes == 0:
        return f"{rest:g} s"
    if rest == 0:
        return f"{minutes:g} min"
    return f"{minutes:g} min {rest:g} s"


class _Words(NamedTuple):
    """How the messages of a watched thing name its cycles: its drops, the alerts held, being up and being down."""

    drops: str
    held: str
    up: str
    stayed_up: str
    down: str


_CONNECTION = _Words("disconnects", "disconnect and reconnect", "stays connected", "stayed connected", "not connected")
_LOG = _Words("failures", "cannot-write and written-again", "is written", "was written", "not written")


class _Feed:
    __slots__ = ("what", "data_ns", "words", "disconnects", "held", "mark_ns", "noticed", "flapping", "up_since")

    def __init__(self, what: str, data_ns: Callable[[], int] | None, words: _Words = _CONNECTION) -> None:
        self.what = what  # "feed", "user stream" or "log file", in messages
        self.words = words
        self.data_ns = data_ns  # None: a stream without market data
        self.disconnects: deque[float] = deque()
        self.held = 0
        self.mark_ns = 0  # the stream's data clock at the last disconnect
        self.noticed = 0.0  # when the last flapping message was sent
        self.flapping = False
        self.up_since: float | None = None  # when the open connection opened; None: not connected


class FlapDetector:
    """Decide which connection alerts of each feed and user stream go out (see the module docstring).

    Parameters
    ----------
    cycles
        Disconnects a feed or user stream may have in ``window`` and still be alerted one by one.
    window
        Seconds.
    alert
        Sends one message (the ``disconnect`` alert kind).
    clock
        Monotonic seconds.
    """

    def __init__(
        self, cycles: int, window: float, alert: Callable[[str], None], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.cycles = cycles
        self.window = window
        self._alert = alert
        #: The clock (a test may stand it still or move it).
        self.clock = clock
        self._feeds: dict[str, _Feed] = {}
        self._instruments: dict[str, str] = {}
        #: The feeds and streams flapping now, by name.
        self.flapping: dict[str, _Feed] = {}

    def add_feed(self, name: str, instrument_ids: Iterable[str], data_ns: Callable[[], int]) -> None:
        """Watch feed ``name``; ``data_ns()`` is the receive time of its stream's latest market data."""
        self._feeds[name] = _Feed("feed", data_ns)
        for iid in instrument_ids:
            self._instruments[iid] = name

    def add_stream(self, name: str) -> None:
        """Watch user stream ``name`` (no market data: its flapping ends when a connection stays up ``window``)."""
        self._feeds[name] = _Feed("user stream", None)

    def add_log(self, name: str) -> None:
        """Watch log file ``name``: a write failing is its disconnect, the first write that succeeds after failures its
        reconnect (its flapping ends when it has been written ``window`` without a failure)."""
        self._feeds[name] = _Feed("log file", None, _LOG)

    def feed_of(self, instrument_id: str) -> str | None:
        """The watched feed of ``instrument_id``, or ``None``."""
        return self._instruments.get(instrument_id)

    def _minutes(self) -> str:
        return duration_text(self.window)

    def on_connect(self, name: str) -> bool:
        """Feed or stream ``name`` connected: ``True`` if its reconnect alert is to be sent (else held)."""
        feed = self._feeds.get(name)
        if feed is None:
            return True
        feed.up_since = self.clock()
        return not self.hold(name)

    def on_disconnect(self, name: str) -> bool:
        """Feed or stream ``name`` disconnected: count the cycle; ``True`` if its disconnect alert is to be sent."""
        feed = self._feeds.get(name)
        if feed is None:
            return True
        now = self.clock()
        feed.up_since = None
        feed.disconnects.append(now)
        while feed.disconnects[0] <= now - self.window:
            feed.disconnects.popleft()
        if feed.data_ns is not None:
            feed.mark_ns = feed.data_ns()
        if feed.flapping:
            return not self.hold(name)
        if len(feed.disconnects) <= self.cycles:
            return True
        feed.flapping, feed.held, feed.noticed = True, 0, now
        self.flapping[name] = feed
        if feed.data_ns is not None:
            held = "stale, disconnect, reconnect and resync"
            until = f"a connection delivers data and stays open {self._minutes()}"
        else:
            held, until = feed.words.held, f"it {feed.words.up} {self._minutes()}"
        self._alert(
            f"{feed.what} {name} flapping: {len(feed.disconnects)} {feed.words.drops} in the last {self._minutes()}; its "
            f"{held} alerts are held until {until} (a summary every {self._minutes()} at most)"
        )
        return False

    def hold(self, name: str | None) -> bool:
        """Whether an alert of feed or stream ``name`` is held (it flaps): if so, it is counted."""
        feed = self.flapping.get(name) if name is not None else None
        if feed is None:
            return False
        feed.held += 1
        return True

    def tick(self) -> None:
        """Send the summary of each flapping feed or stream whose last flapping message is ``window`` old, and end
        the flapping of each whose connection has been open ``window`` (a feed: and delivered data since its
        last disconnect)."""
        now = self.clock()
        for name, feed in list(self.flapping.items()):
            if feed.up_since is not None and now - feed.up_since >= self.window and self._delivers(feed):
                self._end(name, feed)
            elif now - feed.noticed >= self.window:
                self._summary(name, feed, now, "still flapping")
                feed.noticed, feed.held = now, 0

    def close(self) -> None:
        """The daemon stops: send the last summary of each feed or stream still flapping (the alerts held since
        its last message would otherwise never be told)."""
        now = self.clock()
        for name, feed in self.flapping.items():
            self._summary(name, feed, now, "still flapping at the stop")
            feed.noticed, feed.held = now, 0

    def _summary(self, name: str, feed: _Feed, now: float, what: str) -> None:
        while feed.disconnects and feed.disconnects[0] <= now - self.window:
            feed.disconnects.popleft()
        down = f"; {feed.words.down} now" if feed.up_since is None else ""
        self._alert(
            f"{feed.what} {name} {what}: {len(feed.disconnects)} {feed.words.drops} in the last "
            f"{self._minutes()}, {feed.held} alerts held since the last message{down}"
        )

    async def run(self) -> None:
        """Call :meth:`tick` every ``window / 4`` seconds (1 s at most), for ever."""
        period = min(1.0, self.window / 4)
        while True:
            await asyncio.sleep(period)
            self.tick()

    @staticmethod
    def _delivers(feed: _Feed) -> bool:
        return feed.data_ns is None or feed.data_ns() > feed.mark_ns

    def _end(self, name: str, feed: _Feed) -> None:
        feed.flapping = False
        del self.flapping[name]
        how = "delivers data again" if feed.data_ns is not None else f"{feed.words.stayed_up} {self._minutes()}"
        self._alert(f"{feed.what} {name} {how} after flapping ({feed.held} alerts held since the last message)")
