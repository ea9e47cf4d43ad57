"""``fill_on: book`` on a real L2 capture through the kernel: no lookahead, determinism, queue models."""

from __future__ import annotations


import numpy as np
import pyarrow as pa
import pytest

from tests.live.node_testdata import USDM_IID, USDM_INSTRUMENT
from tradebus.data.catalog import BOOK_SNAPSHOT, Catalog
from tradebus.data.replay import Replay, ReplaySource
from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel, RunResult
from tradebus.execution.config import BookFillConfig, VenueConfig
from tradebus.strategies.base import Strategy
from tradebus.strategies.touch_quoter import TouchQuoter

VENUE = ("binance_usdm", "usdm", "BTCUSDT")


@pytest.fixture(scope="module")
def capture(l2_capture: Catalog) -> Catalog:
    return l2_capture


def run(cat: Catalog, queue_model: str = "risk_averse", book: str = "book", trades: str = "trades") -> RunResult:
    venue = VenueConfig(
        fill_on="book",
        book=BookFillConfig(queue_model=queue_model, entry_latency_ns=10_000_000, ack_latency_ns=10_000_000),
    )
    kernel = Kernel([Instrument(**USDM_INSTRUMENT)], venue_config=venue)
    kernel.add_strategy(TouchQuoter(USDM_IID, interval_ns=500_000_000, quantity=0.001, max_position=0.005))
    sources = [ReplaySource.from_catalog(cat, USDM_IID, *VENUE, name) for name in (book, trades)]
    return kernel.run(Replay(sources))


def keys(result: RunResult) -> list[tuple]:
    return [(f.ts_event, f.side, f.quantity, f.price, f.liquidity, f.client_order_id) for f in result.fills]


def test_book_fills_happen_and_a_run_is_deterministic(capture: Catalog) -> None:
    a, b = run(capture), run(capture)
    assert len(a.fills) >= 5 and keys(a) == keys(b)
    assert {f.liquidity for f in a.fills} == {"MAKER"}


def test_the_probabilistic_queue_fills_at_least_as_early_as_the_risk_averse_one(capture: Catalog) -> None:
    averse, prob = run(capture, "risk_averse"), run(capture, "prob_power")
    # Same quotes until the first fill: the probabilistic queue is never behind the risk-averse one.
    assert prob.fills[0].ts_event <= averse.fills[0].ts_event
    assert len(prob.fills) >= len(averse.fills)


def test_no_lookahead_perturbing_the_future_leaves_past_fills_unchanged(capture: Catalog) -> None:
    book = capture.read(*VENUE, "book")
    trades = capture.read(*VENUE, "trades")
    base = run(capture)
    cut = base.fills[len(base.fills) // 2].ts_event  # a time with fills on both sides of it

    def perturbed(table: pa.Table, columns: dict[str, float]) -> pa.Table:
        late = np.asarray(table.column("ts_init")) > cut
        for name, factor in columns.items():
            i = table.schema.get_field_index(name)
            values = np.asarray(table.column(name)).copy()
            values[late] = values[late] * factor
            if name == "price":  # back onto the 0.1 tick grid: the venue refuses a level off it
                values[late] = np.round(values[late], 1)
            table = table.set_column(i, name, pa.array(values))
        return table

    # Later book prices move 0.1% up: the book as of the cut is re-sent, moved, as a snapshot right
    # after the cut, or its levels left at the old prices would cross the moved ones.
    cols = {n: np.asarray(book.column(n)) for n in book.column_names}
    early = cols["ts_init"] <= cut
    assert cols["ts_init"][~early][0] > cut + 1
    levels: dict[int, dict[float, float]] = {1: {}, -1: {}}
    last = None
    for ts, seq, side, price, size, flags in zip(*(cols[n][early].tolist() for n in (
            "ts_init", "sequence", "side", "price", "size", "flags")), strict=True):
        if flags & BOOK_SNAPSHOT and (ts, seq) != last:
            levels = {1: {}, -1: {}}
        last = (ts, seq)
        if size > 0.0:
            levels[side][price] = size
        else:
            levels[side].pop(price, None)
    snap = [
        (cut + 1, cut + 1, 0, side, round(price * 1.001, 1), size * 3.0, BOOK_SNAPSHOT)
        for side in (1, -1)
        for price, size in levels[side].items()
    ]
    moved = perturbed(book, {"size": 3.0, "price": 1.001})
    at = int(np.flatnonzero(~early)[0])
    snap_table = pa.Table.from_arrays(
        [pa.array(c, type=f.type) for c, f in zip(zip(*snap), book.schema, strict=True)], schema=book.schema
    )
    moved = pa.concat_tables([moved.slice(0, at), snap_table, moved.slice(at)])
    capture.write(moved, *VENUE, "book_future", "day", kind="book")
    capture.write(perturbed(trades, {"size": 0.2, "price": 0.999}), *VENUE, "trades_future", "day", kind="trades")
    changed = run(capture, book="book_future", trades="trades_future")
    assert [k for k in keys(changed) if k[0] <= cut] == [k for k in keys(base) if k[0] <= cut]
    assert [k for k in keys(changed) if k[0] > cut] != [k for k in keys(base) if k[0] > cut]  # the change matters


class _BookReader(Strategy):
    """Reads the book through the strategy API (``self.book()``) at every trade of the capture."""

    def on_start(self) -> None:
        self.seen: list[tuple[int, object]] = []

    def on_trade(self, trade) -> None:  # type: ignore[no-untyped-def]
        book = self.book()
        self.seen.append((trade.ts_init, None if book is None else (
            book.best_bid(), book.best_ask(), book.bids(3).tolist(), book.asks(3).tolist(), book.last_seq)))


@pytest.mark.parametrize("fill_on", ["book", "trades"])
def test_a_backtest_strategy_reads_the_replayed_book_through_self_book(capture: Catalog, fill_on: str) -> None:
    """``self.book()`` returned ``None`` in every backtest: only a paper daemon's feed registered a book with
    the cache, so a strategy quoting off the book as the README's strategy API offers it (or
    ``regime_hazard``'s ``book_features``) saw no book on the same L2 data. At each trade the book is the one
    the catalog rows received up to it (book rows before the trade's at equal times, as the replay merges its
    sources), rebuilt here from the rows with dicts."""
    kernel = Kernel([Instrument(**USDM_INSTRUMENT)], venue_config=VenueConfig(fill_on=fill_on))
    reader = _BookReader(USDM_IID)
    kernel.add_strategy(reader)
    kernel.run(Replay([ReplaySource.from_catalog(capture, USDM_IID, *VENUE, name) for name in ("book", "trades")]))
    book = capture.read(*VENUE, "book")
    cols = [book.column(n).to_pylist() for n in ("ts_init", "sequence", "side", "price", "size", "flags")]
    rows = list(zip(*cols, strict=True))
    levels: dict[int, dict[float, float]] = {1: {}, -1: {}}
    i, last, seq = 0, None, -1
    expected = []
    for ts, _ in reader.seen:
        while i < len(rows) and rows[i][0] <= ts:
            t, s, side, price, size, flags = rows[i]
            if flags & BOOK_SNAPSHOT and (t, s) != last:
                levels = {1: {}, -1: {}}
            last, seq = (t, s), s
            if size > 0.0:
                levels[side][price] = size
            else:
                levels[side].pop(price, None)
            i += 1
        bids = sorted(levels[1].items(), reverse=True)
        asks = sorted(levels[-1].items())
        expected.append((ts, (bids[0], asks[0], [list(b) for b in bids[:3]], [list(a) for a in asks[:3]], seq)))
    assert len(reader.seen) == 974
    assert reader.seen == expected
