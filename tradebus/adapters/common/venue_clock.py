"""This machine's clock as a venue takes it: :class:`VenueClock`.

A venue refuses a signed request whose timestamp is too far off its own clock, before processing it (nothing is done):
Binance ``-1021`` (at most 1 s ahead of its time and ``recvWindow``, 5 s, behind), OKX ``50102`` "Timestamp request
expired" (REST) and ``60004`` / ``60006`` (the WebSocket login; "the request will expire 30 seconds after the
timestamp. If your server time differs from the API server time, we recommended using the REST API to query the API
server time"), Bybit ``10002`` "invalid request, please check your server timestamp or recv_window param".

A :class:`VenueClock` is the wall clock less the offset last measured against the venue's time endpoint (ccxt's
``fetch_time``: Binance ``GET /api/v3/time`` or ``/fapi/v1/time``, OKX ``GET /api/v5/public/time``, Bybit
``GET /v5/market/time``). ccxt stamps the account's signed requests with it (its ``timeDifference`` option) and the user
streams their logins (:meth:`VenueClock.now`). A request refused for its timestamp is measured again
(:meth:`VenueClock.resync`) and sent again, at most :data:`RESYNCS` times in a row; a stream login so refused
reconnects and logs in again after one, as often. What is still refused then, or an offset beyond
:data:`MAX_OFFSET_S`, is :class:`~tradebus.execution.live.ClockRefused` (``tradebus live``: exit 2), naming the clock,
the offset and what to do: the daemon stamps every event's receive time, ages its orders and runs the strategy's timers
on this machine's clock, which must then be set right.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from loguru import logger

from tradebus.errors import VenueError
from tradebus.execution.live import ClockRefused, NoAnswer, VenueRejected

__all__ = ["MAX_OFFSET_S", "RESYNCS", "SYNC_ADVICE", "TimestampRefused", "VenueClock", "resynced"]

_T = TypeVar("_T")

#: How many times in a row a request (or a stream's login) refused for its timestamp is sent again, each after a
#: measure of the venue's clock.
RESYNCS = 2
#: The largest offset from the venue's clock the daemon trades on, seconds: Binance's largest ``recvWindow`` (60,000 ms),
#: the widest window a venue gives a signed request.
MAX_OFFSET_S = 60.0
#: What to do about a clock the venue refuses.
SYNC_ADVICE = "synchronise this machine's clock (NTP, e.g. timedatectl set-ntp true) and start again"


class VenueClock:
    """The wall clock less its offset from a venue's, as last measured (see the module docstring).

    Parameters
    ----------
    venue
        The venue's name in messages.
    exchange
        The account's ccxt exchange: its ``fetch_time`` reads the venue's time, and its ``timeDifference`` option
        (ms) stamps its signed requests.
    wall
        The wall clock, seconds since the epoch.
    """

    def __init__(self, venue: str, exchange: Any, wall: Callable[[], float] = time.time) -> None:
        self.venue = venue
        self._exchange = exchange
        self._wall = wall
        #: This machine's clock less the venue's, seconds (positive: ahead), as last measured.
        self.offset = 0.0
        #: How many times the venue's clock was measured.
        self.resyncs = 0

    def now(self) -> float:
        """The venue's time now, seconds since the epoch: the wall clock less :attr:`offset`."""
        return self._wall() - self.offset

    def describe(self, offset: float) -> str:
        """``offset`` (seconds) in words: ``"2.500 s behind OKX's"``."""
        return f"{abs(offset):.3f} s {'ahead of' if offset > 0 else 'behind'} {self.venue}'s"

    async def resync(self, why: str) -> None:
        """Measure :attr:`offset` against the venue's time endpoint (the midpoint of the request) and stamp what follows
        with it; ``why``: what was refused, in the WARNING that tells the offset.

        Raises
        ------
        NoAnswer
            The venue's time was not read (the request failed).
        ClockRefused
            The offset is beyond :data:`MAX_OFFSET_S`.
        """
        from ccxt.base.errors import BaseError  # ccxt is imported by a live run's trading API only

        sent = self._wall()
        try:
            venue_ms = await self._exchange.fetch_time()
        except BaseError as exc:
            raise NoAnswer(f"{self.venue} time: {type(exc).__name__}: {exc}") from None
        offset = (sent + self._wall()) / 2.0 - float(venue_ms) / 1000.0
        self.resyncs += 1
        if abs(offset) > MAX_OFFSET_S:
            raise ClockRefused(
                f"{why}; this machine's clock is {self.describe(offset)} time (its time endpoint), more than the "
                f"{MAX_OFFSET_S:g} s the daemon trades on: {SYNC_ADVICE}"
            )
        self.offset = offset
        self._exchange.options["timeDifference"] = round(offset * 1000.0)
        logger.warning("{}: {}; this machine's clock is {} time (its time endpoint): requests and logins are stamped on "
                       "the venue's clock from now on; {}", self.venue, why, self.describe(offset), SYNC_ADVICE.replace(" and start again", ""))

    def refused(self, message: str) -> ClockRefused:
        """The :class:`ClockRefused` of ``message``, a refusal met again after :data:`RESYNCS` measures of the venue's
        clock (it steps, or the requests take longer than the venue's window)."""
        advice = "" if "NTP" in message else f": {SYNC_ADVICE}"  # a venue's advice for its code may say it already
        return ClockRefused(
            f"{message}; refused for its timestamp after {RESYNCS} measures of {self.venue}'s clock (the last: "
            f"{self.describe(self.offset)}): this machine's clock steps, or the requests take longer than the venue's "
            f"window{advice}"
        )


class TimestampRefused(VenueRejected):
    """A signed request the venue refused unprocessed for its timestamp (a venue's ``clock_codes``,
    :class:`~tradebus.adapters.common.venue_errors.VenueErrors`): nothing was done; :func:`resynced` sends it again."""


async def resynced(
    clock: VenueClock,
    request: str,
    send: Callable[[], Awaitable[_T]],
    measure_weight: Callable[[], Awaitable[None]],
    refused: Callable[[VenueError], VenueError],
) -> _T:
    """``send()`` the request ``request`` (an endpoint name); refused for its timestamp (:class:`TimestampRefused`),
    measure the venue's clock (:meth:`VenueClock.resync`, its request's weight first taken by ``measure_weight``) and
    send it again, at most :data:`RESYNCS` times. Refused still, or the clock too far off, it raises
    :class:`~tradebus.execution.live.ClockRefused` through ``refused`` (the trading API's: the live daemon stops on it);
    the venue's time unread, the refusal itself (nothing was done)."""
    for attempt in range(RESYNCS + 1):
        try:
            return await send()
        except TimestampRefused as exc:
            if attempt == RESYNCS:
                raise refused(clock.refused(str(exc))) from None
            await measure_weight()
            try:
                await clock.resync(f"{request}: refused for its timestamp")
            except NoAnswer as unread:
                logger.warning("{}: the venue's time was not read ({}); the request stays refused", request, unread)
                raise exc from None
            except ClockRefused as off:
                raise refused(off) from None
    raise AssertionError("unreachable")  # the loop returns or raises
