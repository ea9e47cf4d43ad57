"""A paper daemon fed by a book stream alone spans its book messages, quotes the book's top and fills on it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tradebus.adapters.bybit.emulator import BybitProtocol
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.adapters.okx.emulator import OkxProtocol
from tradebus.engine.messages import BookDelta, BookSnapshot, Quote
from tradebus.node.daemon import PaperNode

from .node_testdata import (
    BYBIT_IID,
    BYBIT_INSTRUMENT,
    OKX_IID,
    OKX_INSTRUMENT,
    bybit_linear_frames,
    config_of,
    okx_frames,
    run_node,
)

pytestmark = pytest.mark.usefixtures("compiled_kernels")

Top = tuple[float, float, float, float]


def _tops(updates: list[tuple[bool, list[list[str]], list[list[str]]]]) -> list[Top]:
    """Each change of (best bid, its size, best ask, its size) of a book rebuilt with dicts from ``(snapshot?, bids,
    asks)`` messages (levels ``[price, size, ...]`` as the venue's strings; size 0 removes the level)."""
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    tops: list[Top] = []
    for snapshot, bid_levels, ask_levels in updates:
        if snapshot:
            bids.clear()
            asks.clear()
        for side, levels in ((bids, bid_levels), (asks, ask_levels)):
            for price, size, *_ in levels:
                if float(size) == 0.0:
                    side.pop(float(price), None)
                else:
                    side[float(price)] = float(size)
        if bids and asks:
            bid, ask = max(bids), min(asks)
            top = (bid, bids[bid], ask, asks[ask])
            if not tops or tops[-1] != top:
                tops.append(top)
    return tops


def _okx_book(frames: list[tuple[int, str]]) -> list[tuple[bool, list[list[str]], list[list[str]]]]:
    out = []
    for _, raw in frames:
        msg = json.loads(raw)
        if msg.get("arg") == {"channel": "books", "instId": "BTC-USDT"} and "data" in msg:
            out += [(msg["action"] == "snapshot", item["bids"], item["asks"]) for item in msg["data"]]
    return out


def _bybit_book(frames: list[tuple[int, str]]) -> list[tuple[bool, list[list[str]], list[list[str]]]]:
    out = []
    for _, raw in frames:
        msg = json.loads(raw)
        if msg.get("topic") == "orderbook.200.BTCUSDT":
            out.append((msg["type"] == "snapshot", msg["data"]["b"], msg["data"]["a"]))
    return out


VENUES: dict[str, Any] = {
    "okx": (okx_frames, OkxProtocol, OKX_INSTRUMENT, OKX_IID, "spot", "books", _okx_book),
    "bybit": (bybit_linear_frames, BybitProtocol, BYBIT_INSTRUMENT, BYBIT_IID, "linear", "orderbook.200", _bybit_book),
}


@pytest.mark.parametrize("venue", list(VENUES))
async def test_a_paper_daemon_fed_by_a_book_alone_spans_it_quotes_its_top_and_fills_on_it(
    tmp_path: Path, venue: str
) -> None:
    """The OKX recording (2022-05-13; BTC-USDT ``books``: a snapshot and 97 updates) or the Bybit one (2026-08-09;
    BTCUSDT ``orderbook.200``), the daemon subscribed to that book alone, with ``fill_on: quotes`` (which the config
    accepts for a book channel) and a market buy of 0.01 at the snapshot.

    824ac0cc: book messages went to the bus past the kernel's count (no span, no final sample). Then: the book
    stream of these venues derived no quote (``StreamBooks`` made its books with ``emit_quotes=False``, meant for
    a feed with a ticker beside), so the paper venue never saw a price to fill on and the buy stayed open for the
    whole run (0 fills, equity 100,000), and a strategy's ``on_quote`` never ran. Now a book whose instrument has
    no ticker (OKX ``tickers``/``bbo-tbt``, Bybit ``tickers``) quotes each change of its top, as a Binance depth
    stream without ``bookTicker`` does: the quotes are the tops of the book rebuilt with dicts from the frames,
    and the buy fills at the ask of one of them, after the snapshot's receive time."""
    frames_of, protocol, instrument, iid, market, channel, book_of = VENUES[venue]
    frames = frames_of()
    expected = _tops(book_of(frames))
    updates = len(book_of(frames))
    async with LocalVenueServer(protocol(frames), frames, lifetime=120.0) as srv:
        data = {
            "instruments": [instrument],
            "strategy": {"name": "tests.live.busy_strategy:BookWatch", "instruments": [iid], "params": {"on": "snapshot"}},
            "venue": {"fill_on": "quotes"},
            "feeds": [{"venue": venue, "market": market, "ws_url": srv.ws_url, "subscriptions": {iid: [channel]},
                       "backoff": {"base": 0.05, "cap": 0.2, "min_delay": 0.01}}],
        }
        node = PaperNode(config_of(data), handle_signals=False)
        book: list[BookSnapshot | BookDelta] = []
        quotes: list[Quote] = []
        node.kernel.bus.subscribe(BookSnapshot, book.append)
        node.kernel.bus.subscribe(BookDelta, book.append)
        node.kernel.bus.subscribe(Quote, quotes.append)
        await run_node(node, lambda: srv.cursor >= len(frames) and len(book) >= updates, timeout=60.0)
    result = node.kernel.result
    assert result.trades == 0 and len(book) == updates and result.book == len(book)
    assert (result.start_ns, result.end_ns) == (book[0].ts_init, book[-1].ts_init)
    assert (result.first_event_ns, result.last_event_ns) == (book[0].ts_event, book[-1].ts_event)
    assert [s.ts for s in result.equity][-1:] == [book[-1].ts_init]
    assert [(q.bid_price, q.bid_size, q.ask_price, q.ask_size) for q in quotes] == expected
    assert result.quotes == len(quotes) and node.kernel.strategies[0].quotes == len(quotes)  # type: ignore[attr-defined]
    (fill,) = result.fills
    assert fill.quantity == pytest.approx(0.01)
    assert fill.price in {q.ask_price for q in quotes if q.ts_init >= book[0].ts_init}
    assert not node.kernel.orders.open_orders()
