"""Stale-feed watchdog: publish :class:`~tradebus.engine.messages.FeedStale` when a feed goes silent.

The watchdog is synchronous and clock-driven (no sockets, no sleeping): the client
calls :meth:`StaleWatchdog.touch` for every frame and :meth:`StaleWatchdog.check`
periodically. One FeedStale is published per silent episode; the next frame ends the
episode.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from loguru import logger

from tradebus.engine.messages import FeedStale
from tradebus.errors import ConfigError

__all__ = ["StaleWatchdog"]


class StaleWatchdog:
    """Detect a feed that delivered nothing for ``stale_after`` seconds.

    Parameters
    ----------
    source
        Name of the feed (``"binance-spot"``), put on the FeedStale message.
    stale_after
        Allowed silence in seconds.
    emit
        Sink for the FeedStale message.
    """

    __slots__ = ("source", "stale_after_ns", "_emit", "last_message_ns", "stale")

    def __init__(self, source: str, stale_after: float, emit: Callable[[Any], None]) -> None:
        if not stale_after > 0:
            raise ConfigError(f"watchdog {source}: stale_after must be > 0 s, got {stale_after!r}")
        self.source = source
        self.stale_after_ns = int(stale_after * 1e9)
        self._emit = emit
        self.last_message_ns = 0
        self.stale = False

    def start(self, now_ns: int) -> None:
        """Start (or restart) the silence timer at ``now_ns`` (e.g. when a connection opens)."""
        self.last_message_ns = now_ns
        self.stale = False

    def touch(self, now_ns: int) -> None:
        """Record a frame received at ``now_ns``."""
        self.last_message_ns = now_ns
        if self.stale:
            self.stale = False
            logger.info("feed {}: live again", self.source)

    def check(self, now_ns: int) -> bool:
        """Publish FeedStale (once per episode) if silent for too long; return whether the feed is stale."""
        if self.stale:
            return True
        if now_ns - self.last_message_ns < self.stale_after_ns:
            return False
        self.stale = True
        logger.warning(
            "feed {}: no message for {:.1f} s (allowed {:.1f} s)",
            self.source,
            (now_ns - self.last_message_ns) / 1e9,
            self.stale_after_ns / 1e9,
        )
        self._emit(FeedStale(self.source, self.last_message_ns, now_ns, now_ns))
        return True
