"""The feeds of a paper run: one venue :class:`~tradebus.adapters.common.feed.Feed` per configured feed.

A feed is a venue's live client, or its parser alone when a recording is played back
(built by the venue's registry entry, :mod:`tradebus.adapters.registry`). It hands every
normalised message to a sink (the :class:`~tradebus.node.router.NodeRouter`), answers
whether each of its L2 books is in sync, resyncs a book on request and exposes the
adapter's book of each instrument: the one book of that instrument, which strategies read
through ``cache.book``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

from tradebus.adapters.common.client import Sink
from tradebus.adapters.common.feed import Feed
from tradebus.adapters.common.recorder import FrameRecorder
from tradebus.adapters.registry import VENUES
from tradebus.engine.cache import Cache
from tradebus.errors import ConfigError, DataError
from tradebus.node.config import PaperConfig
from tradebus.risk.guard import MarketGuard

__all__ = ["Feed", "attach_feeds", "build_feeds", "feed_of_connection"]


def build_feeds(
    config: PaperConfig,
    sink: Sink,
    *,
    live: bool,
    recorder: FrameRecorder | None = None,
    clock_ns: Callable[[], int] = time.time_ns,
) -> list[Feed]:
    """One :class:`Feed` per configured feed, every one handing its messages to ``sink``."""
    instruments = config.instrument_map()
    feeds = [
        VENUES[fc.venue].feed(fc, instruments, sink, live=live, recorder=recorder, clock_ns=clock_ns)
        for fc in config.feeds
    ]
    names = [f.name for f in feeds]
    if len(set(names)) != len(names):
        raise ConfigError(
            f"feeds: two feeds share a connection name in {names}; their recordings could not be told apart"
        )
    return feeds


def feed_of_connection(feeds: list[Feed], conn: str) -> Feed | None:
    """The feed whose frames a recorded connection id holds, or ``None`` (the frames are skipped).

    The feed that :meth:`~tradebus.adapters.common.feed.Feed.accepts` ``conn``; else, for a
    connection named after a market (``"linear"``, as in converted captures), the only feed of
    that market.

    Raises
    ------
    DataError
        Several feeds accept ``conn`` (a REST answer of a recording made before the ids named
        the feed that fetched it, with two feeds of that symbol): handing it to either could
        leave the other's book unsynced, so the id, the feeds and the way out are named.
    """
    found = [f for f in feeds if f.accepts(conn)]
    if len(found) > 1:
        names = ", ".join(f.name for f in found)
        raise DataError(
            f"the frames of recorded connection {conn!r} could be any of feeds {names}: the recording does not "
            "name the feed that received them (it was made before REST answers were recorded with their feed's "
            "name); replay it with a config that has only one of these feeds"
        )
    if found:
        return found[0]
    prefix = conn.partition(":")[0]
    by_market = [f for f in feeds if f.config.market == prefix]
    return by_market[0] if len(by_market) == 1 else None


def attach_feeds(feeds: list[Feed], guard: MarketGuard, cache: Cache) -> None:
    """Declare every feed to the market guard and make its books readable through ``cache.book``."""
    for feed in feeds:
        guard.register(feed)
        for iid in feed.book_checks():
            cache.register_book(iid, partial(feed.book, iid))
