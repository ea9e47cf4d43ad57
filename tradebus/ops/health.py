"""The ``/health`` answer of a daemon: feeds connected, last frame age, books synced, orders blocked, user stream, trading state.

Healthy (HTTP 200) when the daemon is running, every feed is connected and received a frame
within ``max_age`` seconds, every subscribed L2 book is in sync, the market guard denies no
instrument's orders for its market data (a feed its watchdog judged stale, which happens after
the feed's ``stale_after``, whatever ``max_age`` is; a book in sync but frozen), and (live daemon) its
private user stream is connected and the venue confirmed its subscription (without it no
fill is seen); otherwise 503 with the failing checks listed under ``problems``. While the daemon
warms up its feature kernels (before it recovers and subscribes) the answer is 503 with the
status ``warming up``: alive, not trading yet. Every
instrument whose new orders the guard denies is listed with the reason under
``orders_blocked``.

A feed's liveness is the age of its latest received frame (``last_frame_age_seconds``),
whether or not the frame made a market-data message: a kline stream sends the open candle
every few seconds and a Bar only when it closes, so the age of the latest message
(``last_message_age_seconds``, reported, not judged) reaches the bar interval on a healthy
bar-only feed. A pong proves the connection, not the data, except on a feed of trade channels
alone, silent whenever its market does not trade: its age is its connection's (see
:meth:`~tradebus.adapters.common.client.WsClient.live_ns`). The trading state is reported but does not make the daemon unhealthy: a
HALTED daemon is doing what it was told, and a supervisor restarting it would not help; the
same holds for an instrument a live daemon's reconciliation holds (in ``orders_blocked`` only), and for a Telegram
bot whose token the Bot API refused while the daemon ran (``telegram``: ``polling``, ``token_refused``; added by
:meth:`~tradebus.ops.hooks.OpsHooks.health` when ``ops.telegram`` is set).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tradebus.ops.hooks import OpsTarget

__all__ = ["book_states", "health_report"]


def book_states(feeds: Any) -> dict[str, bool]:
    """``instrument_id -> in sync`` of every subscribed L2 book of ``feeds``."""
    return {iid: bool(check()) for feed in feeds for iid, check in feed.book_checks().items()}


def health_report(
    target: OpsTarget,
    last_recv_ns: dict[str, int],
    max_age: float,
    clock_ns: Callable[[], int] = time.time_ns,
    user_streams: Sequence[Any] = (),
) -> tuple[bool, dict[str, Any]]:
    """``(healthy, report)`` of ``target`` now, with its private ``user_streams`` (see the module docstring).

    Parameters
    ----------
    target
        The daemon.
    last_recv_ns
        Receive time (ns) of the latest market-data message per instrument (reported only).
    max_age
        Seconds a feed may go without a frame.
    clock_ns
        Wall clock of the receive times.
    user_streams
        A live daemon's private streams (``name``, ``connected``, ``subscribed``).
    """
    now = clock_ns()
    problems: list[str] = []
    running = target.running.is_set()
    warming_up = target.warming_up
    if warming_up:
        problems.append("daemon warming up the feature kernels (not trading yet)")
    elif not running:
        problems.append("daemon not running (starting or stopping)")
    feeds: dict[str, Any] = {}
    for feed in target.feeds:
        client = feed.client
        connected = client is not None and client.connected.is_set()
        last_frame = 0 if client is None else client.live_ns()  # a pong proves the connection, not the data
        frame_age = None if not last_frame else round(max(0.0, (now - last_frame) / 1e9), 3)
        seen = [last_recv_ns[i] for i in feed.instrument_ids if i in last_recv_ns]
        message_age = None if not seen else round(max(0.0, (now - max(seen)) / 1e9), 3)
        feeds[feed.name] = {
            "connected": connected,
            "last_frame_age_seconds": frame_age,
            "last_message_age_seconds": message_age,
        }
        if not connected:
            problems.append(f"feed {feed.name} not connected")
        if frame_age is None:
            problems.append(f"feed {feed.name} received no frame yet")
        elif frame_age > max_age:
            problems.append(f"feed {feed.name} silent for {frame_age:.1f} s (> {max_age:g} s)")
    books = book_states(target.feeds)
    problems.extend(f"book {iid} not in sync" for iid, ok in books.items() if not ok)
    guard = target.guard
    blocked: dict[str, str] = {}
    for iid in target.kernel.instruments:
        reason = guard.block_reason(iid)
        if reason is not None:
            blocked[iid] = reason
        frozen = guard.liveness.frozen(iid) if books.get(iid, True) else None  # an unsynced book is reported above
        market = guard.stale_reason(iid) or frozen
        if market is not None:
            problems.append(f"orders on {iid} denied: {market}")
    streams = {
        stream.name: {"connected": stream.connected.is_set(), "subscribed": stream.subscribed.is_set()}
        for stream in user_streams
    }
    for name, s in streams.items():
        if not s["connected"]:
            problems.append(f"user stream {name} not connected")
        elif not s["subscribed"]:
            problems.append(f"user stream {name}: subscription not confirmed by the venue")
    report = {
        "status": "ok" if not problems else "warming up" if warming_up else "unhealthy",
        "running": running,
        "warming_up": warming_up,
        "trading_state": str(target.kernel.risk.state),
        "feeds": feeds,
        "books_synced": books,
        "orders_blocked": blocked,
        "user_streams": streams,
        "problems": problems,
    }
    return not problems, report
