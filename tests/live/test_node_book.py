"""One L2 book per instrument: the adapter's, read by strategies through ``cache.book``."""

from __future__ import annotations

import json

import numpy as np

from tradebus.adapters.binance.emulator import split_capture
from tradebus.adapters.common.book import OrderBook
from tradebus.adapters.common.recorder import iter_hftbacktest
from tradebus.adapters.registry import VENUES
from tradebus.engine.messages import BookDelta, BookSnapshot
from tradebus.node.playback import Playback

from .node_testdata import USDM_CAPTURE, USDM_IID, config_of, usdm_config


def test_the_cache_book_is_the_adapter_book_and_current_at_every_book_message() -> None:
    playback = Playback(config_of(usdm_config(None, None, depth_speed="0ms")))
    cache = playback.kernel.cache
    assert cache.book("ETHUSDT.BINANCE_USDM") is None  # no feed keeps that book
    seen: list[tuple[int, int, float, float]] = []

    def on_book(msg: BookSnapshot | BookDelta) -> None:
        book = cache.book(USDM_IID)
        assert book is not None
        seen.append((msg.last_seq, book.last_seq, book.best_bid()[0], book.best_ask()[0]))

    playback.kernel.bus.subscribe(BookSnapshot, on_book)
    playback.kernel.bus.subscribe(BookDelta, on_book)
    playback.run(USDM_CAPTURE)
    adapter_book = playback.feeds[0].feed.books["BTCUSDT"].book  # type: ignore[attr-defined]
    assert cache.book(USDM_IID) is adapter_book  # one book, not a copy
    assert len(seen) > 1000
    # the book a strategy reads on a book message is exactly as of that message: not behind, not ahead
    assert all(msg_seq == book_seq for msg_seq, book_seq, _, _ in seen)

    # an independent rebuild from the capture's REST snapshot and the diffs the adapter applied
    frames, snapshot = split_capture(list(iter_hftbacktest(USDM_CAPTURE)))
    assert snapshot is not None
    ref = OrderBook(USDM_IID)
    reference_top: dict[int, tuple[float, float]] = {}
    snap = json.loads(snapshot)
    ref.load(np.array(snap["bids"], dtype=float), np.array(snap["asks"], dtype=float), snap["lastUpdateId"])
    for _, raw in frames:
        data = json.loads(raw).get("data", {})
        if data.get("e") != "depthUpdate" or data["u"] < snap["lastUpdateId"]:
            continue
        ref.apply(np.array(data["b"], dtype=float).reshape(-1, 2), np.array(data["a"], dtype=float).reshape(-1, 2))
        reference_top[data["u"]] = (ref.best_bid()[0], ref.best_ask()[0])
    checked = [(bid, ask) == reference_top[seq] for seq, _, bid, ask in seen if seq in reference_top]
    assert len(checked) > 1000 and all(checked)


def test_every_registered_venue_feed_exposes_its_book() -> None:
    for adapter in VENUES.values():
        assert callable(getattr(adapter.feed, "book", None)), adapter.name
