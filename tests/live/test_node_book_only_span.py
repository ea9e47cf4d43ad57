"""A paper daemon fed by a book stream alone spans its book messages and ends on a sample at the last one."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.adapters.okx.emulator import OkxProtocol
from tradebus.engine.messages import BookDelta, BookSnapshot, Quote
from tradebus.node.daemon import PaperNode

from .node_testdata import OKX_IID, OKX_INSTRUMENT, config_of, okx_frames, run_node

pytestmark = pytest.mark.usefixtures("compiled_kernels")


async def test_a_paper_daemon_fed_by_an_okx_book_alone_spans_its_book_messages_and_samples_at_the_last(
    tmp_path: Path,
) -> None:
    """The OKX recording (2022-05-13), the daemon subscribed to BTC-USDT's ``books`` alone: its snapshot and 97
    updates, and no trade or ticker (an OKX book, whose snapshots come in the stream, derives no quote). Book
    messages went to the bus past the kernel's count, so the run had no span (start and end None), no final
    equity sample and ``RunResult.book`` 0. Now it spans the 98 book messages, from the snapshot's receive time to
    the last update's (venue times alike), and ends on a sample there."""
    frames = okx_frames()
    books = [raw for _, raw in frames if '"channel":"books","instId":"BTC-USDT"' in raw and '"data"' in raw]
    assert len(books) == 98
    async with LocalVenueServer(OkxProtocol(frames), frames, lifetime=120.0) as srv:
        data = {
            "instruments": [OKX_INSTRUMENT],
            "strategy": {"name": "tests.live.busy_strategy:BookWatch", "instruments": [OKX_IID], "params": {"on": "snapshot"}},
            "venue": {"fill_on": "quotes"},
            "feeds": [{"venue": "okx", "market": "spot", "ws_url": srv.ws_url, "subscriptions": {OKX_IID: ["books"]},
                       "backoff": {"base": 0.05, "cap": 0.2, "min_delay": 0.01}}],
        }
        node = PaperNode(config_of(data), handle_signals=False)
        book: list[BookSnapshot | BookDelta] = []
        quotes: list[Quote] = []
        node.kernel.bus.subscribe(BookSnapshot, book.append)
        node.kernel.bus.subscribe(BookDelta, book.append)
        node.kernel.bus.subscribe(Quote, quotes.append)
        await run_node(node, lambda: srv.cursor >= len(frames) and len(book) >= len(books), timeout=60.0)
    result = node.kernel.result
    assert not quotes and result.trades == 0 and len(book) == len(books)
    assert result.book == len(book)
    assert (result.start_ns, result.end_ns) == (book[0].ts_init, book[-1].ts_init)
    assert (result.first_event_ns, result.last_event_ns) == (book[0].ts_event, book[-1].ts_event)
    assert [s.ts for s in result.equity][-1:] == [book[-1].ts_init]
    assert result.equity[-1].equity == 100_000.0  # nothing filled: no quote for the paper venue to fill on
