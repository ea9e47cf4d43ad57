"""``fill_on: book`` at the end of a backtest: the venue's answers still on their way are heard."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from tradebus.data.catalog import BOOK_SNAPSHOT, Catalog, schema_for
from tradebus.data.replay import Replay, ReplaySource
from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel, RunResult
from tradebus.engine.messages import BookDelta, BookSnapshot, OrderSide, OrderStatus
from tradebus.execution.config import BookFillConfig, VenueConfig
from tradebus.reports.metrics import compute_metrics
from tradebus.strategies.base import Strategy

from .conftest import IID

MS = 1_000_000


class CancelAndBuyLate(Strategy):
    """At the first book update a bid far below the touch; at the 8 ms update its cancel and a market buy."""

    def __init__(self) -> None:
        super().__init__(IID, strategy_id="late")
        self.bid = self.buy = ""

    def on_start(self) -> None:
        self.kernel.bus.subscribe(BookSnapshot, self.on_book, IID)
        self.kernel.bus.subscribe(BookDelta, self.on_book, IID)

    def on_book(self, msg: BookSnapshot | BookDelta) -> None:
        if not self.bid:
            self.bid = self.submit_limit(IID, OrderSide.BUY, 1.0, 99.0)
        elif msg.ts_init == 8 * MS:
            self.cancel(self.bid)
            self.buy = self.submit_market(IID, OrderSide.BUY, 0.5)


def sources(root: Path) -> list[ReplaySource]:
    """A snapshot at 1 ms (bids 99.9 x 5, 99.8 x 3; asks 100.0 x 1, 100.1 x 2), then a delta each ms to 9 ms
    that moves only the 99.8 bid's size; the last message a sell print of 0.1 at 99.9 at 10 ms."""
    rows = [(1 * MS, 1 * MS, 1, 1, 99.9, 5.0, BOOK_SNAPSHOT), (1 * MS, 1 * MS, 1, 1, 99.8, 3.0, BOOK_SNAPSHOT),
            (1 * MS, 1 * MS, 1, -1, 100.0, 1.0, BOOK_SNAPSHOT), (1 * MS, 1 * MS, 1, -1, 100.1, 2.0, BOOK_SNAPSHOT)]
    rows += [(t * MS, t * MS, t, 1, 99.8, 3.0 + t, 0) for t in range(2, 10)]
    schema = schema_for("book")
    cat = Catalog(root)
    cat.write(pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(zip(*rows), schema, strict=True)],
                                   schema=schema), "v", "spot", "X", "book", kind="book")
    trade = [[10 * MS], [10 * MS], [99.9], [0.1], [-1], ["t1"]]
    cat.write(pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(trade, schema_for("trades"), strict=True)],
                                   schema=schema_for("trades")), "v", "spot", "X", "trades", kind="trades")
    return [ReplaySource.from_catalog(cat, IID, "v", "spot", "X", name) for name in ("book", "trades")]


def _driven(kernel: Kernel, replayed: list[ReplaySource], path: str) -> RunResult:
    """The result of ``kernel`` over ``replayed``, driven by ``run`` (``path == "run"``) or message by message."""
    if path == "run":
        return kernel.run(Replay(replayed))
    for msg in Replay(replayed):
        kernel.process(msg)
    kernel.stop()
    return kernel.result


@pytest.mark.parametrize("path", ["run", "process"])
def test_answers_in_flight_at_the_end_of_a_backtest_are_delivered_before_the_results(tmp_path: Path, path: str) -> None:
    """Entry latency 0.5 ms, acknowledgement 5 ms. The bid (decided at 1 ms) reaches the venue at 1.5 ms and is
    accepted there, heard at 6.5 ms. Its cancel and the market buy of 0.5 (decided at 8 ms) reach the venue at
    8.5 ms (handled at the 9 ms update): the bid canceled, the buy filled at the best ask 100.0, both at 8.5 ms;
    their answers are due at 13.5 ms, after the last message (the print at 10 ms). The run ended with the bid
    ACCEPTED, the buy SUBMITTED and no fill, equity 10,000 with no position, where the venue held 0.5 bought;
    now the answers are delivered at the end of the run, before the final equity sample and the orders are
    collected.

    Equity by hand: cash 10,000 - 0.5 x 100.0 - fee 0.5 x 100.0 x 0.001 (0.05), plus 0.5 x the last price, the
    print's 99.9: 10,000 - 0.05 - 0.5 x 0.1 = 9,999.9.
    """
    instrument = Instrument(venue="BINANCE", symbol="BTCUSDT", tick_size=0.1, lot_size=0.1, taker_fee=0.001)
    venue = VenueConfig(fill_on="book", book=BookFillConfig(entry_latency_ns=MS // 2, ack_latency_ns=5 * MS))
    kernel = Kernel([instrument], venue_config=venue, initial_cash=10_000.0)
    strategy = CancelAndBuyLate()
    kernel.add_strategy(strategy)
    replayed = sources(tmp_path)
    result = _driven(kernel, replayed, path)
    status = {o.client_order_id: o.status for o in result.orders}
    assert status == {strategy.bid: OrderStatus.CANCELED, strategy.buy: OrderStatus.FILLED}
    assert [(f.client_order_id, f.ts_event, f.quantity, f.price) for f in result.fills] == [
        (strategy.buy, 8 * MS + MS // 2, 0.5, 100.0)
    ]
    assert kernel.portfolio.position(IID) == pytest.approx(0.5)
    assert result.equity[-1].ts == 10 * MS
    assert result.equity[-1].equity == pytest.approx(9_999.9, abs=1e-9)


class BuyAtFirstBook(Strategy):
    """A market buy of 0.5 at the first book update."""

    def __init__(self) -> None:
        super().__init__(IID, strategy_id="buy")
        self.buy = ""

    def on_start(self) -> None:
        self.kernel.bus.subscribe(BookSnapshot, self.on_book, IID)
        self.kernel.bus.subscribe(BookDelta, self.on_book, IID)

    def on_book(self, msg: BookSnapshot | BookDelta) -> None:
        if not self.buy:
            self.buy = self.submit_market(IID, OrderSide.BUY, 0.5)


@pytest.mark.parametrize("path", ["run", "process"])
def test_a_backtest_on_a_book_source_alone_has_its_span_and_final_equity_sample(tmp_path: Path, path: str) -> None:
    """A book source alone: a snapshot at 1 ms (bid 99.9 x 5; asks 100.0 x 1, 100.1 x 2), deltas at 2 to 9 ms on
    the bid's size, and at 10 ms one that empties the 100.0 ask (venue times 0.25 ms before each). The buy of 0.5,
    decided at 1 ms, reaches the venue at 1.5 ms and fills at 100.0. Book messages did not count towards the run's
    span: no start or end, no final sample (only the first, at 1 ms, of 10,000), so the metrics said the run saw no
    market data with a final equity of 10,000. Now the run spans 1 to 10 ms (venue time 0.75 to 9.75 ms) and ends
    with a sample at 10 ms marked at the mid (99.9 + 100.1) / 2 = 100.0: 10,000 - 0.5 x 100.0 - fee 0.05
    + 0.5 x 100.0 = 9,999.95.
    """
    lag = MS // 4
    rows = [(MS - lag, MS, 1, 1, 99.9, 5.0, BOOK_SNAPSHOT), (MS - lag, MS, 1, -1, 100.0, 1.0, BOOK_SNAPSHOT),
            (MS - lag, MS, 1, -1, 100.1, 2.0, BOOK_SNAPSHOT)]
    rows += [(t * MS - lag, t * MS, t, 1, 99.9, 5.0 + t, 0) for t in range(2, 10)]
    rows += [(10 * MS - lag, 10 * MS, 10, -1, 100.0, 0.0, 0)]
    schema = schema_for("book")
    cat = Catalog(tmp_path)
    cat.write(pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(zip(*rows), schema, strict=True)],
                                   schema=schema), "v", "spot", "X", "book", kind="book")
    replayed = [ReplaySource.from_catalog(cat, IID, "v", "spot", "X", "book")]
    instrument = Instrument(venue="BINANCE", symbol="BTCUSDT", tick_size=0.1, lot_size=0.1, taker_fee=0.001)
    venue = VenueConfig(fill_on="book", book=BookFillConfig(entry_latency_ns=MS // 2, ack_latency_ns=0))
    kernel = Kernel([instrument], venue_config=venue, initial_cash=10_000.0)
    strategy = BuyAtFirstBook()
    kernel.add_strategy(strategy)
    result = _driven(kernel, replayed, path)
    assert [(f.quantity, f.price) for f in result.fills] == [(0.5, 100.0)]
    assert (result.start_ns, result.end_ns) == (MS, 10 * MS)
    assert (result.first_event_ns, result.last_event_ns) == (MS - lag, 10 * MS - lag)
    assert [s.ts for s in result.equity] == [MS, 10 * MS]
    assert result.equity[-1].equity == pytest.approx(9_999.95, abs=1e-9)
    metrics = compute_metrics(result)
    assert (metrics["start"], metrics["end"]) == ("1970-01-01T00:00:00.00075Z", "1970-01-01T00:00:00.00975Z")
    assert metrics["final_equity"] == pytest.approx(9_999.95, abs=1e-9)
    assert metrics["total_return"] == pytest.approx(-0.05 / 10_000, abs=1e-12)


def test_a_backtest_counts_its_book_messages_as_events(tmp_path: Path) -> None:
    """``RunResult.events`` (market-data messages processed) left book messages out. :func:`sources` has a
    book snapshot (4 levels) at 1 ms and deltas at 2 to 9 ms (1 + 8 = 9 messages), and a trade at 10 ms: 10
    events, 9 of them ``book``, not 1; its book source alone, 9 events, not 0."""
    def kernel() -> Kernel:
        return Kernel([Instrument(venue="BINANCE", symbol="BTCUSDT", tick_size=0.1, lot_size=0.1)],
                      venue_config=VenueConfig(fill_on="book"), initial_cash=10_000.0)

    result = kernel().run(Replay(sources(tmp_path / "both")))
    assert result.events == 10
    assert (result.bars, result.trades, result.quotes, result.book) == (0, 1, 0, 9)
    alone = kernel()
    for msg in Replay(sources(tmp_path / "book")[:1]):
        alone.process(msg)
    alone.stop()
    assert (alone.result.events, alone.result.book) == (9, 9)
