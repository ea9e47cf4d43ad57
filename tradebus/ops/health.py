"""The ``/health`` answer of a daemon: feeds connected, books synced, last message age, user stream, trading state.

Healthy (HTTP 200) when the daemon is running, every feed is connected and delivered a
market-data message within ``max_age`` seconds, every subscribed L2 book is in sync, and
(live daemon) its private user stream is connected (without it no fill is seen); otherwise
503 with the failing checks listed under ``problems``. The trading state is reported but
does not make the daemon unhealthy: a HALTED daemon is doing what it was told, and a
supervisor restarting it would not help.
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
    """``(healthy, report)`` of ``target`` now, with its private ``user_streams`` (see the module docstring)."""
    now = clock_ns()
    problems: list[str] = []
    running = target.running.is_set()
    if not running:
        problems.append("daemon not running (starting or stopping)")
    feeds: dict[str, Any] = {}
    for feed in target.feeds:
        client = feed.client
        connected = client is not None and client.connected.is_set()
        seen = [last_recv_ns[i] for i in feed.instrument_ids if i in last_recv_ns]
        age = None if not seen else round(max(0.0, (now - max(seen)) / 1e9), 3)
        feeds[feed.name] = {"connected": connected, "last_message_age_seconds": age}
        if not connected:
            problems.append(f"feed {feed.name} not connected")
        if age is None:
            problems.append(f"feed {feed.name} delivered no market data yet")
        elif age > max_age:
            problems.append(f"feed {feed.name} silent for {age:.1f} s (> {max_age:g} s)")
    books = book_states(target.feeds)
    problems.extend(f"book {iid} not in sync" for iid, ok in books.items() if not ok)
    streams = {stream.name: {"connected": stream.connected.is_set()} for stream in user_streams}
    problems.extend(f"user stream {name} not connected" for name, s in streams.items() if not s["connected"])
    report = {
        "status": "ok" if not problems else "unhealthy",
        "running": running,
        "trading_state": str(target.kernel.risk.state),
        "feeds": feeds,
        "books_synced": books,
        "user_streams": streams,
        "problems": problems,
    }
    return not problems, report
