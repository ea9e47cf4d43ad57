"""Clocks: one interface, a simulated clock driven by replayed data and a live one on asyncio.

Timers and alerts call ``callback(TimeEvent)``. The simulated clock fires every due
timer in timestamp order *before* the data that follows them; the kernel calls
:meth:`SimulatedClock.advance_to` with each replayed message's timestamp before
dispatching it. Timers and alerts due at the same time fire in the order they were
created: a repeating timer keeps the rank of its creation for every firing.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from tradebus.engine.messages import TimeEvent
from tradebus.errors import ConfigError

__all__ = ["Clock", "LiveClock", "SimulatedClock", "TimerCallback", "iso_ns"]

TimerCallback = Callable[[TimeEvent], None]


def iso_ns(ts_ns: int) -> str:
    """ISO-8601 UTC text of an epoch-ns time: ``2024-01-02T03:04:05Z``, with the fraction of a second if any."""
    seconds, rest = divmod(int(ts_ns), 1_000_000_000)
    text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{rest:09d}".rstrip("0") if rest else "") + "Z"


class Clock(ABC):
    """Time source of a run: ``now_ns``, repeating timers and one-shot alerts."""

    @abstractmethod
    def now_ns(self) -> int:
        """Current time, int nanoseconds since the epoch (UTC)."""

    @abstractmethod
    def set_timer(
        self,
        name: str,
        interval_ns: int,
        callback: TimerCallback,
        start_ns: int | None = None,
        stop_ns: int | None = None,
    ) -> None:
        """Fire ``callback`` every ``interval_ns`` from ``start_ns`` (default now) until ``stop_ns``."""

    @abstractmethod
    def set_alert(self, name: str, at_ns: int, callback: TimerCallback) -> None:
        """Fire ``callback`` once at ``at_ns``.

        An alert set for a time already past fires as soon as the current step ends, at the current time:
        its event's ``ts_event`` is ``at_ns``, its ``ts_init`` (and the clock inside ``callback``) the time it
        was set, on every clock (a paper daemon's with ``replay_times`` as its replay's).
        """

    @abstractmethod
    def cancel(self, name: str) -> None:
        """Cancel a timer or alert by name (no error if unknown)."""

    @property
    def stopped(self) -> bool:
        """Whether :meth:`LiveClock.stop` ended the run: no timer or alert fires any more (a simulated clock: never)."""
        return False

    def run_due(self, ts_ns: int) -> None:  # noqa: B027 (a no-op unless the clock's timers run elsewhere)
        """Fire now every timer and alert due at or before ``ts_ns`` that has not fired yet.

        For a driver about to handle a message stamped ``ts_ns``: what was due by then
        fires before it, as :meth:`SimulatedClock.advance_to` does in a replay. Nothing
        here: a simulated clock is advanced by its driver.
        """

    @staticmethod
    def _check(name: str, interval_ns: int | None, names: set[str] | dict) -> None:
        if name in names:
            raise ConfigError(f"clock: a timer or alert named {name!r} already exists")
        if interval_ns is not None and interval_ns <= 0:
            raise ConfigError(f"clock: timer {name!r} interval must be > 0 ns, got {interval_ns}")


class SimulatedClock(Clock):
    """A clock that only moves when told to; timers fire in timestamp order.

    Ties (timers and alerts due at the same nanosecond) fire in the order the timers and
    alerts were created, whatever they are and however often a timer already fired.

    Attributes
    ----------
    current_ns
        The current time (what :meth:`now_ns` returns). Move it with :meth:`advance_to` or
        :meth:`set_time`; a driver that has checked that a new time is neither earlier than
        ``current_ns`` nor at or after ``next_due`` may assign it directly (the kernel's
        backtest loop does, once per bar).
    next_due
        Time of the earliest pending firing (``2**63 - 1`` if none).
    """

    def __init__(self, start_ns: int = 0) -> None:
        self.current_ns = start_ns
        # (due time, creation rank, name); entries of canceled or replaced timers stay until popped.
        self._heap: list[tuple[int, int, str]] = []
        # name -> (interval (0: alert), stop_ns, callback, creation rank)
        self._timers: dict[str, tuple[int, int | None, TimerCallback, int]] = {}
        self._created = itertools.count()
        self.next_due: int = 2**63 - 1

    def now_ns(self) -> int:
        return self.current_ns

    def set_timer(
        self,
        name: str,
        interval_ns: int,
        callback: TimerCallback,
        start_ns: int | None = None,
        stop_ns: int | None = None,
    ) -> None:
        self._check(name, interval_ns, self._timers)
        first = (self.current_ns if start_ns is None else start_ns) + interval_ns
        rank = next(self._created)
        self._timers[name] = (interval_ns, stop_ns, callback, rank)
        self._push(first, rank, name)

    def set_alert(self, name: str, at_ns: int, callback: TimerCallback) -> None:
        self._check(name, None, self._timers)
        rank = next(self._created)
        self._timers[name] = (0, None, callback, rank)
        self._push(at_ns, rank, name)

    def cancel(self, name: str) -> None:
        self._timers.pop(name, None)

    def _push(self, at_ns: int, rank: int, name: str) -> None:
        heapq.heappush(self._heap, (at_ns, rank, name))
        self.next_due = self._heap[0][0]

    def set_time(self, ts_ns: int) -> None:
        """Move time to ``ts_ns`` without looking at timers.

        A fast path for a driver that has checked ``ts_ns < next_due`` (the kernel's
        backtest loop); otherwise use :meth:`advance_to`. Time never goes backwards.
        """
        if ts_ns > self.current_ns:
            self.current_ns = ts_ns

    def advance_to(self, ts_ns: int) -> None:
        """Move time to ``ts_ns``, firing every timer due at or before it, in order.

        Time never goes backwards: an earlier ``ts_ns`` leaves the clock where it is.
        """
        heap = self._heap
        while heap and heap[0][0] <= ts_ns:
            at_ns, rank, name = heapq.heappop(heap)
            entry = self._timers.get(name)
            if entry is None or entry[3] != rank:
                continue  # canceled, or canceled and its name reused by a newer timer
            interval, stop_ns, callback, _ = entry
            if interval and (stop_ns is None or at_ns + interval <= stop_ns):
                heapq.heappush(heap, (at_ns + interval, rank, name))
            else:
                del self._timers[name]
            if at_ns > self.current_ns:
                self.current_ns = at_ns
            callback(TimeEvent(name, at_ns, self.current_ns))
        self.next_due = heap[0][0] if heap else 2**63 - 1
        if ts_ns > self.current_ns:
            self.current_ns = ts_ns


class LiveClock(Clock):
    """Wall-clock time; timers run as callbacks on the asyncio loop.

    Parameters
    ----------
    loop
        The loop running the timers (default: the running loop, when the first is set).
    replay_times
        Take every decision at the time a replay of the run's recording takes it: run each
        timer's and alert's callback with the clock pinned at its due time (:meth:`pinned`; the
        event's ``ts_init`` is that time too), however late the loop fires it, and have the
        daemon's router handle each message with the clock pinned at its frame's receive time
        (:meth:`pin`), however late the busy loop reads it: what they decide happens where a
        replay's :class:`SimulatedClock` stands. Honest only where the venue is simulated (a
        paper daemon): a callback has seen no message received after its due time
        (:meth:`run_due`). Off (a live daemon), both read the wall clock: their orders leave then.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None, *, replay_times: bool = False) -> None:
        self._loop = loop
        self.replay_times = replay_times
        self._handles: dict[str, asyncio.TimerHandle] = {}
        # name -> (due time, creation rank, push number, what to run then): what the loop has not fired yet,
        # for run_due. Ties fire in creation order, a repeating timer keeping its rank, as on a SimulatedClock.
        self._due: dict[str, tuple[int, int, int, Callable[[int], None]]] = {}
        # (due time, creation rank, push number, name) of every _due entry, earliest first; an entry whose
        # name was canceled or set again (its push number no longer _due's) stays until popped or compacted.
        self._heap: list[tuple[int, int, int, str]] = []
        self._pushes = itertools.count()
        self._created = itertools.count()
        self.next_due: int = 2**63 - 1
        # The time now_ns reads inside a pinned() block (None: the wall clock).
        self._pinned: int | None = None
        self._stopped = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def now_ns(self) -> int:
        pinned = self._pinned
        return time.time_ns() if pinned is None else pinned

    @contextmanager
    def pinned(self, ts_ns: int) -> Iterator[None]:
        """Read ``ts_ns`` as the time inside the block: a synchronous step that happens at one instant.

        The daemon starts its kernel so, at the time it records as the run's start: a timer
        the strategies set in ``on_start`` is due exactly where a replay, started at that
        recorded time, has it. Timers still fire on the wall clock.
        """
        outer = self.pin(ts_ns)
        try:
            yield
        finally:
            self._pinned = outer

    def pin(self, ts_ns: int | None) -> int | None:
        """Read ``ts_ns`` as the time from now on (``None``: the wall clock again); return the pin it replaces.

        :meth:`pinned` without a context manager, for a caller on the hot path that restores
        the returned pin itself (the paper daemon's router, once per message).
        """
        outer, self._pinned = self._pinned, ts_ns
        return outer

    def stop(self) -> None:
        """Cancel every timer and alert, and fire none set from now on: the run has ended.

        The loop may outlive the run (``asyncio.run``'s teardown, a caller's own loop); a replay
        of the run's recording fires nothing after its recorded stop.
        """
        self._stopped = True
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()
        self._due.clear()
        self._heap.clear()
        self.next_due = 2**63 - 1

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` ended the run: no timer or alert fires any more."""
        return self._stopped

    def _at(self, name: str, at_ns: int, rank: int, fire: Callable[[int], None]) -> None:
        if self._stopped:
            return
        delay = max(0.0, (at_ns - time.time_ns()) / 1e9)
        self._handles[name] = self.loop.call_later(delay, self._fire, at_ns)
        push = next(self._pushes)
        self._due[name] = (at_ns, rank, push, fire)
        heapq.heappush(self._heap, (at_ns, rank, push, name))
        if at_ns < self.next_due:
            self.next_due = at_ns

    def _fire(self, at_ns: int) -> None:
        # A loop that was busy runs every callback that fell due meanwhile in one go: one set by an
        # earlier of them (an order's arrival at the simulated venue) and due before this one fires first.
        self.run_due(at_ns)

    def _call(self, callback: TimerCallback, name: str, at_ns: int, run_ns: int | None = None) -> None:
        """Run a timer's or alert's ``callback`` due at ``at_ns``: at ``run_ns`` (default: its due time;
        ``replay_times``) or on the wall clock."""
        if not self.replay_times:
            callback(TimeEvent(name, at_ns, time.time_ns()))
            return
        run_ns = at_ns if run_ns is None else run_ns
        with self.pinned(run_ns):
            callback(TimeEvent(name, at_ns, run_ns))

    def run_due(self, ts_ns: int) -> None:
        """Fire now, in time order, every timer and alert due at or before ``ts_ns`` whose loop callback has not run.

        The loop runs a due callback only when the task handling market data yields;
        the paper daemon calls this before each message (stamped ``ts_ns``, its receive
        time) instead, so a simulated order arrival due before a message is handled
        before it, as in a replay, however many frames were waiting to be read.

        O(log n) per firing with n pending (a heap; a canceled or re-set name's entry is skipped
        when it surfaces): a catch-up through 5,000 pending submit-timeout alerts costs ~50 µs a
        firing, where the former scan of every pending one cost ~200 times that (``bench/clock_due.py``).
        """
        if ts_ns < self.next_due:
            return
        due = self._due
        heap = self._heap
        while heap:
            at_ns, _, push, name = heap[0]
            entry = due.get(name)
            if entry is None or entry[2] != push:
                heapq.heappop(heap)  # canceled, or set again since
                continue
            if at_ns > ts_ns:
                break
            heapq.heappop(heap)
            fire = due.pop(name)[3]
            handle = self._handles.get(name)
            if handle is not None:
                handle.cancel()
            try:
                fire(at_ns)
            except Exception as exc:  # as when the loop runs it: reported, the caller goes on
                self.loop.call_exception_handler({"message": f"clock: timer or alert {name!r} failed", "exception": exc})
        self.next_due = heap[0][0] if heap else 2**63 - 1

    def set_timer(
        self,
        name: str,
        interval_ns: int,
        callback: TimerCallback,
        start_ns: int | None = None,
        stop_ns: int | None = None,
    ) -> None:
        self._check(name, interval_ns, self._handles)
        rank = next(self._created)

        def fire(at_ns: int) -> None:
            nxt = at_ns + interval_ns
            if stop_ns is None or nxt <= stop_ns:
                self._at(name, nxt, rank, fire)
            else:
                self._handles.pop(name, None)
            self._call(callback, name, at_ns)

        self._at(name, (self.now_ns() if start_ns is None else start_ns) + interval_ns, rank, fire)

    def set_alert(self, name: str, at_ns: int, callback: TimerCallback) -> None:
        """Call ``callback`` at ``at_ns``; an alert set for a time already past runs at once, at the time it was
        set (``replay_times``: the event's ``ts_init`` and the clock inside it), as on a :class:`SimulatedClock`."""
        self._check(name, None, self._handles)
        run_ns = max(at_ns, self.now_ns())

        def fire(at: int) -> None:
            self._handles.pop(name, None)
            self._call(callback, name, at, max(at, run_ns))

        self._at(name, at_ns, next(self._created), fire)

    def cancel(self, name: str) -> None:
        handle = self._handles.pop(name, None)
        if handle is not None:
            handle.cancel()
        if self._due.pop(name, None) is not None and len(self._heap) > 2 * len(self._due) + 64:
            # mostly canceled entries (a submit-timeout alert per acknowledged order): keep only the live ones,
            # in place (a run_due under way holds this list)
            self._heap[:] = [(at, rank, push, key) for key, (at, rank, push, _) in self._due.items()]
            heapq.heapify(self._heap)
