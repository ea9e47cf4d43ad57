"""One request-weight budget per venue account, shared by every REST caller.

:class:`WeightBudget` keeps the weight used in the venue's current window (a fixed window,
e.g. Binance's minute) and makes a caller wait before a request that would take it over
``limit * headroom``. The venue's own count wins: after each answer
:meth:`WeightBudget.observe` takes the used weight the venue reported (Binance
``X-MBX-USED-WEIGHT-1M``), so requests made by other processes on the same account count too.

The share of the venue's limit left, as its last answer tells it, is :attr:`WeightBudget.left`
(``on_left`` is called with each new value; the live daemon sets its
``tradebus_rate_limit_headroom_ratio`` from it): ``1 - used / limit`` from a used-weight header
(Binance ``X-MBX-USED-WEIGHT-1M`` against its 6000 (spot) or 2400 (USD-M) per minute), or
``remaining / limit`` from a pair of headers (Bybit ``X-Bapi-Limit-Status`` /
``X-Bapi-Limit``: the endpoint just called, in its current window). A venue that sends no
such header (OKX) leaves it ``None``.

HTTP 429 (too many requests) stops every caller until ``Retry-After`` has passed, or until
the time a venue's reset header names (Bybit's ``X-Bapi-Limit-Reset-Timestamp``, epoch ms,
sent with its ``10006`` answer), or ``backoff`` seconds if the venue says neither. The reset header
is that limit's end only when the answer says no request is left to the endpoint just called
(``remaining_header``, Bybit's ``X-Bapi-Limit-Status`` ``0``); with requests left, the limit hit is
another one (Bybit's ``10018``, the IP's; its ``429``, the system's under load) and the header tells
the endpoint's own window (Bybit: the current server time): ``backoff``. An IP ban (``ban_status``: HTTP 418,
Binance's; Bybit bans with 403, "access too frequent") stops every caller until the ban's ``Retry-After`` ends,
or for ``ban_backoff`` seconds if it has none (Bybit documents no header, and a wait of at least 10 minutes). Nothing is retried here: the caller decides
(a submit without an answer is UNKNOWN and settled by a query).

A request made inside :func:`~tradebus.execution.live.send_within` (the live venue's submits:
a new order, an OCO order list, a cancel-replace) has a time left to be sent (its submit
timeout): one that would have to wait, behind a pause or for the next window, longer than that
is **withdrawn**: :meth:`WeightBudget.acquire` raises
:class:`~tradebus.execution.live.RateLimited` naming the pause, the venue's code and when it ends,
and the request is never sent (a Binance ban can last minutes: the order would reach the venue
long after its price was decided). It decides in the step of the event loop that would let
the request go, so nothing can send it meanwhile, and decides again after each wait (a 429
answered to another request meanwhile prolongs the pause); a request that need not wait goes.
Other requests (cancels, queries: they lower the risk or learn it) wait as long as it takes, and
so does a submit made inside :func:`~tradebus.execution.live.send_late` (one restoring an order
the venue has already canceled, e.g. a cancel-replace's replacement after its cancel), even
within ``send_within``: its wait is logged at WARNING, naming what it restores. A request made inside
:func:`~tradebus.execution.live.send_unless` that had to wait is withdrawn (``VenueRejected``) if, in the
step that would let it go, the block's ``refusal`` gives a reason (the live daemon's trading state, set
HALTED by ``live-kill`` during the wait).

A window of an hour or more used up (Binance spot's 200,000 orders per UTC day) is no burst to wait out: the
first wait for it in a window is logged at ERROR, naming the budget and when the window ends (the requests that
cannot wait that long, every submit within its timeout, are withdrawn as above). A venue's refusal for a limit this
budget's count left room in (another process on the account used it up, e.g. Binance's ``-1015`` for an order limit)
is told by :meth:`WeightBudget.exhaust`: the window counts as used up until it ends.

A pause outlives the process when ``on_pause`` keeps it (the live daemon stores it in its journal): it is
called with each pause an answer asks for, and with ``None`` by the first answer after it ended.
:meth:`WeightBudget.resume` holds every request of a new process until a kept pause ends, so a daemon
restarted during a Binance IP ban sends nothing into it (each request during a ban prolongs it). The
end is wall time: a clock that moved between the two processes moves it. The wait is therefore at most
the pause's own length: a clock set back makes the restart wait no longer than the venue asked; a
clock set forward past the end lets the first request go, and a ban still on answers it with a new
``Retry-After``, waited as any.

Time comes from an injected clock (seconds; wall time by default) and waiting from an injected sleep,
so the rules are tested without waiting. Wall time, since the venue's windows are wall minutes (Binance), its
reset header an epoch time (Bybit) and a kept pause must outlive the process; a step of the clock (an NTP
step) is measured between two reads against a steady clock (:func:`time.monotonic`) and leaves what was left of a
pause as long, back or forward (set forward, it does not let a request into a ban early), and after a step back a
window used up is held no longer than one window (not the length of the step).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime

from loguru import logger

from tradebus.execution.journal import VenuePause
from tradebus.execution.live import RateLimited, VenueRejected, refusal_to_send, sent_late, time_left_to_send

__all__ = ["WeightBudget", "acquire_together"]

#: Seconds of a window whose use up is logged at ERROR (module docstring): an hour.
_LONG_WINDOW = 3_600.0


def _utc(seconds: float) -> str:
    """An epoch time in seconds as UTC ISO 8601, to the millisecond."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class WeightBudget:
    """The shared weight budget of one venue account (see the module docstring).

    Parameters
    ----------
    limit
        Weight allowed per window (Binance spot: 6000 per minute).
    window
        Window length, seconds (windows start at multiples of it, as Binance's minute does).
    headroom
        Fraction of ``limit`` this process lets itself use (room for other callers).
    header
        Name of the response header carrying the used weight (case-insensitive; ``""``: none).
    backoff
        Pause after a 429 without ``Retry-After`` or ``reset_header``, seconds.
    ban_status
        HTTP status of the venue's IP ban (Binance ``418``, Bybit ``403``).
    ban_backoff
        Pause after an IP ban without ``Retry-After``, seconds (``None``: ``backoff``).
    reset_header
        Name of the response header holding when a rate limit ends, epoch milliseconds
        (case-insensitive; ``""``: none); read on a 429 without ``Retry-After`` whose
        ``remaining_header`` is absent or ``0``. The clock is then compared with it: it must be
        wall time (the default).
    remaining_header, limit_header
        Names of the response headers holding the requests left and the limit of the
        endpoint just called (case-insensitive; ``""``: none): :attr:`left` from them.
    name
        What the budget counts, in the messages of a wait (``"request budget"``; a venue's order limit:
        ``"orders per 10 s"``).
    monotonic, sleep
        Clock (seconds since the epoch: wall time, as the venue's windows, reset times and a kept pause are; a step
        back of it is taken into account, see :meth:`_clock`) and sleep (tests inject their own).
    steady
        A clock no step moves (seconds, any origin): a pause lasts as long on it as the venue asked, so the wall
        clock set forward does not end it early (:meth:`_clock`). ``None``: :func:`time.monotonic` with the default
        ``monotonic``, else none (an injected clock alone: only a step back of it is seen).

    Attributes
    ----------
    left
        Share of the venue's limit left by its last answer that told it (``None``: none did).
    on_left
        Called with :attr:`left` whenever an answer tells it (or ``None``).
    on_pause
        Called with each pause a rate-limited answer asks for (its end, :attr:`blocked_until`), and with
        ``None`` by the first answer after the last one told ended (or ``None``: not called).
    refresh
        Awaited before a request would wait for the next window, at most once per :attr:`refresh_every` seconds (or
        ``None``): it reads the venue's count anew (:meth:`observe`), which may have fallen since the last answer told
        it (Binance spot's unfilled-order count falls as orders fill); the request is then decided again.
    refresh_every
        Seconds between two :attr:`refresh` (60).
    """

    def __init__(
        self,
        limit: int,
        window: float = 60.0,
        *,
        headroom: float = 0.8,
        header: str = "",
        backoff: float = 1.0,
        ban_status: int = 418,
        ban_backoff: float | None = None,
        reset_header: str = "",
        remaining_header: str = "",
        limit_header: str = "",
        name: str = "request budget",
        monotonic: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        steady: Callable[[], float] | None = None,
    ) -> None:
        if limit <= 0 or window <= 0 or not 0 < headroom <= 1:
            raise ValueError(f"WeightBudget: need limit > 0, window > 0, 0 < headroom <= 1; got {limit}, {window}, {headroom}")
        self.limit = limit
        self.window = window
        self.headroom = headroom
        self.cap = limit * headroom
        self.header = header.lower()
        self.backoff = backoff
        self.ban_status = ban_status
        self.ban_backoff = backoff if ban_backoff is None else ban_backoff
        self.reset_header = reset_header.lower()
        self.remaining_header = remaining_header.lower()
        self.limit_header = limit_header.lower()
        self.name = name
        self.left: float | None = None
        self.on_left: Callable[[float], object] | None = None
        self.on_pause: Callable[[VenuePause | None], object] | None = None
        self.refresh: Callable[[], Awaitable[object]] | None = None
        self.refresh_every = 60.0
        self._refreshed = -math.inf  # the clock's time of the last refresh
        # Whether on_pause was told a pause and not yet its end.
        self._pause_told = False
        self._now = monotonic
        self._sleep = sleep
        self._steady = time.monotonic if steady is None and monotonic is time.time else steady
        self._last_now = monotonic()
        self._last_steady = self._steady() if self._steady is not None else 0.0
        self._window_start = self._start_of(self._last_now)
        self.used = 0.0
        self.blocked_until = 0.0
        self.block_reason = ""
        #: Most weight ever seen used in one window (a test asserts it stays under the limit).
        self.peak = 0.0
        self.waits = 0
        self._alarmed = -math.inf  # the start of the long window whose use up was last logged at ERROR

    def _clock(self) -> float:
        """The clock's time, taking a step of it (the wall clock set back or forward) into account: what was left of
        a pause stays as long; after a step back the window becomes the one the clock is now in, its weight used kept
        (so a step back holds requests at most one window more, not the length of the step).

        A step is the wall time passed between two reads less the :attr:`steady` time passed (without a steady
        clock, only a step back is seen: the wall time going back).
        """
        now = self._now()
        step = now - self._last_now
        self._last_now = now
        if self._steady is not None:
            steady = self._steady()
            step -= steady - self._last_steady
            self._last_steady = steady
        elif step > 0:
            step = 0.0
        if step and self.blocked_until > 0:
            self.blocked_until += step
        if step < 0:
            start = self._start_of(now)
            if start < self._window_start:
                self._window_start = start
                logger.warning("rate budget: the clock went back {:.1f} s; the weight used ({:.0f}) counts in the "
                               "window it is now in", -step, self.used)
        return now

    def _start_of(self, t: float) -> float:
        return math.floor(t / self.window) * self.window

    def _roll(self, now: float) -> None:
        start = self._start_of(now)
        if start > self._window_start:
            self._window_start = start
            self.used = 0.0

    async def acquire(self, weight: float) -> None:
        """Wait until ``weight`` fits in the budget and no 429 or ban pause is on, then count it.

        Raises
        ------
        RateLimited
            Inside :func:`~tradebus.execution.live.send_within` (and not in a
            :func:`~tradebus.execution.live.send_late` block): the wait would be longer than the time left to send the
            request. It is withdrawn, nothing counted (the message names the pause and its end).
        VenueRejected
            Inside :func:`~tradebus.execution.live.send_unless`, after a wait: its ``refusal`` gives a reason (the
            live daemon's trading state forbids the submit now). Withdrawn, nothing counted.
        """
        await self._acquire(weight)

    async def _acquire(self, weight: float) -> float:
        """:meth:`acquire`; returns the start of the window ``weight`` was counted in (clock seconds)."""
        time_left = time_left_to_send()
        restores = sent_late()
        refusal = refusal_to_send()
        waited = False
        while True:
            now = self._clock()
            self._roll(now)
            if now < self.blocked_until:
                wait = self.blocked_until - now
                why = f"{self.block_reason} until {_utc(self.blocked_until)}"
            elif self.used + weight > self.cap and self.used > 0:
                if self.refresh is not None and now - self._refreshed >= self.refresh_every:
                    self._refreshed = now
                    await self.refresh()
                    continue
                wait = self._window_start + self.window - now
                why = f"{self.name} used ({self.used:.0f} + {weight} over {self.cap:.0f}) until {_utc(now + wait)}"
                if self.window >= _LONG_WINDOW and self._alarmed != self._window_start:
                    self._alarmed = self._window_start
                    logger.error("rate budget: {} used up (the venue's limit {}, this process's share {:.0f}): nothing it "
                                 "counts is sent until {}, {:.1f} h away; requests that cannot wait are withdrawn",
                                 self.name, self.limit, self.cap, _utc(now + wait), wait / 3600.0)
            else:
                refused = refusal() if waited and refusal is not None else None
                if refused is not None:
                    raise VenueRejected(f"withdrawn, never sent: {refused}")
                self.used += weight
                self.peak = max(self.peak, self.used)
                return self._window_start
            left = time_left() if time_left is not None else math.inf
            if wait > left:
                raise RateLimited(f"withdrawn, never sent: {why}, {wait:.1f} s away, {max(left, 0.0):.1f} s left to send it")
            self.waits += 1
            if restores is not None:
                logger.warning("rate budget: {}; {} waits {:.1f} s, never withdrawn", why, restores, wait)
            else:
                logger.info("rate budget: {}; waiting {:.1f} s", why, wait)
            await self._sleep(wait)
            waited = True

    def set_limit(self, limit: int) -> None:
        """The venue's limit per window is ``limit`` (the account's, as the venue lists it), this process's share of it
        :attr:`headroom` as before."""
        if limit <= 0:
            raise ValueError(f"WeightBudget: need limit > 0, got {limit}")
        self.limit = limit
        self.cap = limit * self.headroom

    def release(self, weight: float, window_start: float) -> None:
        """Take ``weight`` off the count of the window starting at ``window_start`` (clock seconds, as
        :meth:`window_start` tells it), if the clock is still in it (an ended window's count was dropped with it): a
        request counted there and never sent, or one the venue no longer counts (none below 0)."""
        self._roll(self._clock())
        if self._window_start == window_start:
            self.used = max(0.0, self.used - weight)

    def window_start(self) -> float:
        """The start of the window the clock is in now (clock seconds), the one :meth:`acquire` counts in."""
        self._roll(self._clock())
        return self._window_start

    def exhaust(self) -> str:
        """Count the current window as used up to the venue's limit: the venue refused a request for it, which this
        budget's count left room for (another process on the account used it). Every request waits for the next window
        (:meth:`acquire`). Returns the window's end, UTC ISO 8601."""
        now = self._clock()
        self._roll(now)
        self.used = max(self.used, float(self.limit))
        return _utc(self._window_start + self.window)

    def has_room(self, weight: float) -> bool:
        """Whether a request of ``weight`` may go before the answer of one in flight tells the window's weight.

        No pause on, and the weight used as the venue's last answer told it (and this process's requests since)
        leaves room for it under the cap with the share kept for other callers (``limit`` less the cap) to spare:
        what they may have used since that answer, which only the answer on its way tells. Near the limit, the
        caller waits for that answer instead (:meth:`acquire` then decides with it).
        """
        now = self._clock()
        self._roll(now)
        return now >= self.blocked_until and self.used + weight <= 2 * self.cap - self.limit

    def observe(self, status: int, headers: Mapping[str, str], code: int | str | None = None) -> None:
        """Take the venue's answer into account: its used-weight header, and a 429 or IP-ban pause
        (``code``: the venue's error code in a rate-limited answer, named by :attr:`block_reason`)."""
        now = self._clock()
        self._roll(now)
        lowered = {k.lower(): v for k, v in headers.items()}
        left = None
        if self.header and self.header in lowered:
            try:
                self.used = float(lowered[self.header])
                left = 1.0 - self.used / self.limit
            except ValueError:
                logger.warning("rate budget: unreadable {} header {!r}", self.header, lowered[self.header])
            self.peak = max(self.peak, self.used)
        if self.remaining_header in lowered and self.limit_header in lowered:
            try:
                left = float(lowered[self.remaining_header]) / float(lowered[self.limit_header])
            except (ValueError, ZeroDivisionError):
                logger.warning("rate budget: unreadable {} / {} headers {!r} / {!r}", self.remaining_header,
                               self.limit_header, lowered[self.remaining_header], lowered[self.limit_header])
        if left is not None and math.isfinite(left):
            self.left = min(1.0, max(0.0, left))
            if self.on_left is not None:
                self.on_left(self.left)
        banned = status == self.ban_status
        if status == 429 or banned:
            pause = self._pause(lowered, now, banned)
            self.blocked_until = max(self.blocked_until, now + pause)
            named = f"{status}, code {code}" if code not in (None, "") else str(status)
            self.block_reason = f"IP banned ({named})" if banned else f"rate limited ({named})"
            logger.warning("rate budget: {}; every request waits {:.1f} s", self.block_reason, pause)
            if self.on_pause is not None:
                self._pause_told = True
                self.on_pause(VenuePause(now, self.blocked_until, self.block_reason))
        elif self._pause_told and now >= self.blocked_until:
            self._pause_told = False
            if self.on_pause is not None:
                self.on_pause(None)

    def resume(self, pause: VenuePause) -> float:
        """Hold every request until ``pause``, one an earlier process met (:attr:`on_pause`), ends; the seconds left.

        At most the pause's own length (``until - observed``) from now, whatever the clock did since
        (see the module docstring); ``0``: it is over, nothing held.
        """
        now = self._clock()
        wait = min(pause.until - now, pause.until - pause.observed)
        if not wait > 0:
            return 0.0
        self.blocked_until = max(self.blocked_until, now + wait)
        self.block_reason = f"{pause.reason}, met by an earlier process"
        self._pause_told = True  # the first answer after it clears the kept pause
        return wait

    def _pause(self, lowered: Mapping[str, str], now: float, banned: bool) -> float:
        """Seconds a rate-limited answer asks to wait: its ``Retry-After``, else (a ban) :attr:`ban_backoff`, else
        until its reset time, else :attr:`backoff`."""
        retry = lowered.get("retry-after")
        if retry is not None:
            try:
                return float(retry)
            except ValueError:
                logger.warning("rate budget: unreadable Retry-After header {!r}", retry)
        if banned:
            return self.ban_backoff
        reset = lowered.get(self.reset_header) if self.reset_header else None
        if reset is not None and self._endpoint_has_room(lowered):
            reset = None  # the reset time is the endpoint's window, not the end of the limit that was hit
        if reset is not None:
            try:
                return max(0.0, float(reset) / 1000.0 - now)
            except ValueError:
                logger.warning("rate budget: unreadable {} header {!r}", self.reset_header, reset)
        return self.backoff

    def _endpoint_has_room(self, lowered: Mapping[str, str]) -> bool:
        """Whether a rate-limited answer says requests are left to the endpoint just called (its ``remaining_header``)."""
        remaining = lowered.get(self.remaining_header) if self.remaining_header else None
        try:
            return remaining is not None and float(remaining) > 0
        except ValueError:
            return False


async def acquire_together(takes: Sequence[tuple[WeightBudget, float]]) -> None:
    """Take each ``(budget, weight)`` of ``takes`` (:meth:`WeightBudget.acquire`), in turn, so that every one counts the
    request in the window it leaves in: one whose window ended while a later budget held the request is taken again
    in the window now (the venue counts the request there; the ended window's count was dropped with it).

    A request a later budget withdraws (:class:`~tradebus.execution.live.RateLimited`, ``VenueRejected``), or whose
    wait is cancelled, is never sent: what the earlier budgets counted of it is given back (:meth:`WeightBudget.release`).
    """
    counted = [math.nan] * len(takes)
    try:
        while True:
            for i, (budget, weight) in enumerate(takes):
                if counted[i] != budget.window_start():
                    counted[i] = await budget._acquire(weight)
            if all(start == budget.window_start() for start, (budget, _) in zip(counted, takes, strict=True)):
                return
    except BaseException:
        for start, (budget, weight) in zip(counted, takes, strict=True):
            if not math.isnan(start):
                budget.release(weight, start)
        raise
