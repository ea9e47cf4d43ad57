"""TouchQuoter on a small hand-made L2 book with venue latency: the position cap holds, every quote is listed
(in flight at the end too); one instrument only."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.live.node_testdata import USDM_IID, USDM_INSTRUMENT
from tradebus.data.catalog import BOOK_SNAPSHOT
from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel
from tradebus.errors import ConfigError
from tradebus.execution.config import BookFillConfig, VenueConfig
from tradebus.reports.outputs import write_outputs
from tradebus.reports.writers import RunDirectory
from tradebus.research.lookahead import MemoryReplay, SourceFrame
from tradebus.strategies.touch_quoter import TouchQuoter

S = 1_000_000_000
T0 = 1_721_347_000 * S
LOT = 0.001


def test_quotes_whose_cancel_is_in_flight_count_against_max_position() -> None:
    # One book: bid 100.0 and ask 100.1, one lot each. Sells of 10 lots hit the bid at 1.5 s, 3.1 s,
    # 3.5 s and 3.7 s. The quoter requotes every second; orders and cancels take 200 ms to reach
    # the venue. At 3 s it holds one lot (the 1.5 s fill) and its 2 s bid still works: the cancel
    # sent at 3 s arrives at 3.2 s, after the 3.1 s sell filled that bid. A bid sized on the filled
    # position alone (1 + 1 <= 2 lots) went out at 3 s too and filled at 3.5 s: 3 lots.
    book = pd.DataFrame({
        "ts_event": [T0 + S // 10] * 2, "ts_init": [T0 + S // 10] * 2, "sequence": [1, 1], "side": [1, -1],
        "price": [100.0, 100.1], "size": [LOT, LOT], "flags": [BOOK_SNAPSHOT] * 2,
    })  # fmt: skip
    times = [T0 + 3 * S // 2, T0 + 31 * S // 10, T0 + 35 * S // 10, T0 + 37 * S // 10]
    trades = pd.DataFrame({
        "ts_event": times, "ts_init": times, "price": [100.0] * 4, "size": [10 * LOT] * 4, "aggressor": [-1] * 4,
        "trade_id": [str(i) for i in range(4)],
    })  # fmt: skip
    latency = S // 5
    venue = VenueConfig(
        fill_on="book",
        book=BookFillConfig(queue_model="risk_averse", entry_latency_ns=latency, ack_latency_ns=latency),
    )
    kernel = Kernel([Instrument(**USDM_INSTRUMENT)], venue_config=venue)
    kernel.add_strategy(TouchQuoter(USDM_IID, interval_ns=S, quantity=LOT, max_position=2 * LOT))
    result = kernel.run(MemoryReplay([SourceFrame(USDM_IID, "book", book), SourceFrame(USDM_IID, "trades", trades)]))
    assert [(f.ts_event - T0, f.side) for f in result.fills] == [(3 * S // 2, "BUY"), (31 * S // 10, "BUY")]
    assert kernel.portfolio.position(USDM_IID) == 2 * LOT
    bids = [o for o in result.orders if o.side > 0]
    # the bids of 1 s and 2 s; none at 3 s (one lot held, the 2 s bid's cancel still in flight)
    assert [o.ts_created - T0 for o in bids] == [S, 2 * S]
    assert any(o.side < 0 and o.ts_created == T0 + 3 * S for o in result.orders)  # the ask still went out


def test_several_instruments_are_refused_at_construction_naming_them() -> None:
    # it quotes one book: a second instrument was silently never quoted
    with pytest.raises(ConfigError) as info:
        TouchQuoter([USDM_IID, "ETHUSDT.BINANCE"], quantity=LOT, max_position=2 * LOT)
    assert str(info.value) == (
        f"TouchQuoter: TouchQuoter quotes one instrument's book, got 2 instruments: {USDM_IID}, ETHUSDT.BINANCE "
        "(run one TouchQuoter per instrument)"
    )
    assert TouchQuoter([USDM_IID], quantity=LOT, max_position=2 * LOT).instrument_ids == (USDM_IID,)


class _ReadingQuoter(TouchQuoter):
    """A TouchQuoter extended the way the strategy API offers: it reads ``self.book()`` at each requote."""

    def on_start(self) -> None:
        super().on_start()
        self.touches: list[tuple[int, float, float]] = []

    def on_quote_timer(self, event) -> None:  # type: ignore[no-untyped-def]
        book = self.book()
        self.touches.append((event.ts_event - T0, book.best_bid()[0], book.best_ask()[0]))
        super().on_quote_timer(event)


def _moving_touch() -> MemoryReplay:
    """Book: bids 100.0 and 99.9, ask 100.1; at 1.5 s the best bid 100.0 is deleted; at 2.5 s the ask moves
    to 100.2. The only trade, the data's last event, a buy of one lot at 150 at 3.5 s."""
    snap, d1, d2 = T0 + S // 10, T0 + 3 * S // 2, T0 + 5 * S // 2
    book = pd.DataFrame({
        "ts_event": [snap] * 3 + [d1] + [d2] * 2, "ts_init": [snap] * 3 + [d1] + [d2] * 2,
        "sequence": [1, 1, 1, 2, 3, 3], "side": [1, 1, -1, 1, -1, -1],
        "price": [100.0, 99.9, 100.1, 100.0, 100.1, 100.2], "size": [LOT, LOT, LOT, 0.0, 0.0, LOT],
        "flags": [BOOK_SNAPSHOT] * 3 + [0] * 3,
    })  # fmt: skip
    end = pd.DataFrame({"ts_event": [T0 + 7 * S // 2], "ts_init": [T0 + 7 * S // 2], "price": [150.0], "size": [LOT],
                        "aggressor": [1], "trade_id": ["0"]})
    return MemoryReplay([SourceFrame(USDM_IID, "book", book), SourceFrame(USDM_IID, "trades", end)])


@pytest.mark.parametrize("fill_on", ["book", "trades"])
def test_a_subclass_reads_the_book_the_quotes_are_placed_at_through_self_book(fill_on: str) -> None:
    # TouchQuoter kept its own copy of the book in an attribute named `book`, which hid Strategy.book():
    # a subclass calling self.book() raised TypeError ('L2Book' object is not callable).
    kernel = Kernel([Instrument(**USDM_INSTRUMENT)], venue_config=VenueConfig(fill_on=fill_on))
    quoter = _ReadingQuoter(USDM_IID, interval_ns=S, quantity=LOT, max_position=2 * LOT)
    kernel.add_strategy(quoter)
    result = kernel.run(_moving_touch())
    expected = [(S, 100.0, 100.1), (2 * S, 99.9, 100.1), (3 * S, 99.9, 100.2)]
    assert quoter.touches == expected
    quotes = [(o.ts_created - T0, o.side > 0, o.price, o.status.name) for o in result.orders]
    replaced = [(t, buy, px, "CANCELED") for t, bid, ask in expected[:2] for buy, px in ((True, bid), (False, ask))]
    if fill_on == "book":
        # Each quote is accepted at the next book update and its cancel arrives at the next event. The 3 s
        # quotes are listed too: the bid still works when the data end, the 3.5 s buy at 150 took the ask.
        assert sorted(quotes) == sorted([*replaced, (3 * S, True, 99.9, "ACCEPTED"), (3 * S, False, 100.2, "FILLED")])
    else:
        # A trades venue handles an arrival at the next trade, the first at 3.5 s: at 3 s none of the four
        # quotes is acknowledged, so the two bids (2 lots) may still fill and max_position (2 lots) leaves
        # no room for a third; likewise the asks. The 3 s requote sends cancels only, no order.
        assert sorted(quotes) == sorted(replaced)


@pytest.mark.parametrize("fill_on", ["book", "trades"])
def test_quotes_still_on_their_way_to_the_venue_when_the_data_end_are_listed_submitted(fill_on: str, tmp_path) -> None:
    # orders.csv lists every order the strategy submitted, with its state when the data end. Every action
    # reaches the venue 1 s after it was sent and is handled at the next event: the 1 s quotes arrive at 2 s,
    # their cancels at 3 s (both handled by 3.5 s); the 2 s quotes arrive at 3 s and are accepted at the 3.5 s
    # trade, which fills the ask 100.1 (a buy print at 150), while their cancels, sent at 3 s, arrive at 4 s,
    # after the data; the 3 s quotes arrive at 4 s too: never accepted, SUBMITTED.
    venue = VenueConfig(fill_on=fill_on, latency_ns=S)
    kernel = Kernel([Instrument(**USDM_INSTRUMENT)], venue_config=venue)
    kernel.add_strategy(TouchQuoter(USDM_IID, interval_ns=S, quantity=LOT, max_position=100 * LOT))
    result = kernel.run(_moving_touch())
    write_outputs(RunDirectory(tmp_path, "backtest"), result, kernel.instruments, "config: 1\n")
    orders = pd.read_csv(tmp_path / "orders.csv")
    rows = list(zip((orders["ts_created"] - T0) // S, orders["side"], orders["price"], orders["status"],
                    orders["filled_qty"], strict=True))
    assert rows == [
        (1, "BUY", 100.0, "CANCELED", 0.0), (1, "SELL", 100.1, "CANCELED", 0.0),
        (2, "BUY", 99.9, "ACCEPTED", 0.0), (2, "SELL", 100.1, "FILLED", LOT),
        (3, "BUY", 99.9, "SUBMITTED", 0.0), (3, "SELL", 100.2, "SUBMITTED", 0.0),
    ]  # fmt: skip
