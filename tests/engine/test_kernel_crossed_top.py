"""A locked or crossed top of book (best bid >= best ask) marks nothing (the instrument keeps its last price, logged)
and a locked or crossed quote updates no feature, live or in batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from loguru import logger

from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import BookDelta, BookSnapshot, OrderSide, Quote
from tradebus.execution.config import VenueConfig
from tradebus.features.batch import compute_features
from tradebus.strategies.base import Strategy

IID = "BTCUSDT.BINANCE"
MS = 1_000_000


class BuyAtFirst(Strategy):
    """A market buy of 1 at the first quote or book update."""

    def __init__(self) -> None:
        super().__init__(IID, strategy_id="buy")
        self.buy = ""

    def on_start(self) -> None:
        for kind in (Quote, BookSnapshot, BookDelta):
            self.kernel.bus.subscribe(kind, self.on_data, IID)

    def on_data(self, msg: Quote | BookSnapshot | BookDelta) -> None:
        if not self.buy:
            self.buy = self.submit_market(IID, OrderSide.BUY, 1.0)


def _kernel(fill_on: str) -> Kernel:
    instrument = Instrument(venue="BINANCE", symbol="BTCUSDT", tick_size=0.1, lot_size=0.1)
    kernel = Kernel([instrument], venue_config=VenueConfig(fill_on=fill_on), initial_cash=10_000.0)
    kernel.add_strategy(BuyAtFirst())
    return kernel


def _warnings(lines: list[str]) -> list[str]:
    return [line for line in lines if "locked" in line or "crossed" in line]


@pytest.mark.parametrize(("bid", "ask", "state"), [(110.0, 108.0, "crossed"), (109.0, 109.0, "locked")])
def test_a_crossed_or_locked_quote_keeps_the_last_mark_and_is_logged(bid: float, ask: float, state: str) -> None:
    """Quotes 99.9 / 100.1 at 1 and 2 ms (the buy of 1 decided at 1 ms fills at the 2 ms ask, 100.1, no fee), then
    at 3 ms a quote whose bid is at or above its ask. Before, the portfolio was marked at its mid, 109.0, a price no
    trade could print at: final equity 10,000 - 100.1 + 109.0 = 10,008.9. Now the last sane mid, 100.0, stays:
    10,000 - 100.1 + 100.0 = 9,999.9, and one warning names the instrument, the quote and both prices; a sane
    quote after it is marked again (4 ms, 101.9 / 102.1: mid 102.0) and logged at INFO."""
    lines: list[str] = []
    logger.add(lambda m: lines.append(m.rstrip("\n")), level="INFO", format="{level} {message}")
    kernel = _kernel("quotes")
    tops = [(1, 99.9, 100.1), (2, 99.9, 100.1), (3, bid, ask), (3, bid, ask)]
    for t, b, a in tops:
        kernel.process(Quote(IID, t * MS, t * MS, b, 1.0, a, 1.0))
    kernel.stop()
    result = kernel.result
    assert [(f.quantity, f.price) for f in result.fills] == [(1.0, 100.1)]
    assert result.equity[-1].equity == pytest.approx(10_000.0 - 100.1 + 100.0, abs=1e-9)
    (warning,) = _warnings(lines)
    assert warning == (f"WARNING {IID}: quote {state} at 1970-01-01T00:00:00.003Z: bid {bid!r} >= ask {ask!r}; "
                       "not marked at its mid, kept at the last price 100.0")

    again = _kernel("quotes")
    for t, b, a in [*tops, (4, 101.9, 102.1)]:
        again.process(Quote(IID, t * MS, t * MS, b, 1.0, a, 1.0))
    again.stop()
    assert again.result.equity[-1].equity == pytest.approx(10_000.0 - 100.1 + 102.0, abs=1e-9)
    assert any(line.startswith(f"INFO {IID}: top of book sane again at 1970-01-01T00:00:00.004Z after 2 locked "
                               "or crossed message(s) since 1970-01-01T00:00:00.003Z") for line in lines)


def test_a_crossed_replayed_book_keeps_the_last_mark_and_is_logged(tmp_path: Path) -> None:
    """A replayed book (fill_on: trades, so the kernel's own replay book): a snapshot at 1 ms (99.9 / 100.1) and a
    delta at 2 ms; the buy decided at 1 ms does not fill (no trade), so the check is the log: a delta at 3 ms bidding
    100.5 crosses the 100.1 ask. The mark stayed at 100.0 before too, but nothing said why the book stopped marking;
    now one warning does, with the last price kept."""
    lines: list[str] = []
    logger.add(lambda m: lines.append(m.rstrip("\n")), level="INFO", format="{level} {message}")
    kernel = _kernel("trades")
    empty = np.empty((0, 2))
    kernel.process(BookSnapshot(IID, MS, MS, np.array([[99.9, 1.0]]), np.array([[100.1, 1.0]])))
    kernel.process(BookDelta(IID, 2 * MS, 2 * MS, np.array([[99.8, 1.0]]), empty))
    kernel.process(BookDelta(IID, 3 * MS, 3 * MS, np.array([[100.5, 1.0]]), empty))
    kernel.stop()
    assert kernel.cache.prices[IID] == 100.0
    assert _warnings(lines) == [f"WARNING {IID}: book crossed at 1970-01-01T00:00:00.003Z: bid 100.5 >= ask 100.1; "
                                "not marked at its mid, kept at the last price 100.0"]


class MidWatch(Strategy):
    """Notes the feature ``m`` (a 2-quote mean of the mid) after each quote."""

    def __init__(self) -> None:
        super().__init__(IID, strategy_id="watch")
        self.seen: list[float] = []

    def on_quote(self, quote: Quote) -> None:
        self.seen.append(self.kernel.banks[IID].value("m"))


def test_a_crossed_or_locked_quote_updates_no_feature_live_or_in_batch() -> None:
    """Quotes 99.9 / 100.1 and 99.9 / 100.1 (mids 100.0), then crossed 110.0 / 108.0 and locked 109.0 / 109.0, then
    101.9 / 102.1 (mid 102.0); the feature is the mean of the last two mids (sma, window 2, on quote.mid). Before, the
    two bad quotes went into it as mids of 109.0 (a price no trade could print at, the one 52425ba7 stopped marking
    at): 104.5, 109.0, then 105.5 after the sane quote. Now they update no feature, so it stays at 100.0 and reads
    (100.0 + 102.0) / 2 = 101.0 after the sane quote; compute_features over the same quotes (a research dataset)
    gives the same rows, bit for bit."""
    instrument = Instrument(venue="BINANCE", symbol="BTCUSDT", tick_size=0.1, lot_size=0.1)
    spec = {"name": "m", "kind": "sma", "params": {"window": 2}, "input": "quote.mid"}
    kernel = Kernel([instrument], venue_config=VenueConfig(fill_on="quotes"), initial_cash=10_000.0, features=[spec])
    watch = MidWatch()
    kernel.add_strategy(watch)
    tops = [(1, 99.9, 100.1), (2, 99.9, 100.1), (3, 110.0, 108.0), (4, 109.0, 109.0), (5, 101.9, 102.1)]
    for t, b, a in tops:
        kernel.process(Quote(IID, t * MS, t * MS, b, 1.0, a, 1.0))
    kernel.stop()
    assert watch.seen[1:] == [100.0, 100.0, 100.0, 101.0]
    frame = pd.DataFrame({"ts_event": [t * MS for t, _, _ in tops], "bid": [b for _, b, _ in tops],
                          "ask": [a for _, _, a in tops], "bid_size": 1.0, "ask_size": 1.0})
    batch = compute_features(frame, [spec], event="quote")["m"].to_numpy()
    assert np.array_equal(batch, np.array(watch.seen), equal_nan=True)
