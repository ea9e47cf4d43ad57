"""Contingent links across a restart, at the kernel level, with a venue that keeps its orders.

A live venue keeps a bracket's children working while the process is down. Kernel 1 (with a
journal) buys at bar 2's open (100) with a stop-loss at 95 and a take-profit at 110; the
children work from bar 3. Kernel 2 replays the journal, settles the orders with the same venue
(still working) and takes the links over: bar 4 (100, 111, 99, 105) reaches the take-profit,
and the stop-loss, its OCO sibling, is canceled (the cancel decided at bar 4's close reaches
the venue at bar 5's open). Without the journaled links the stop-loss would stay working.
"""

from __future__ import annotations

from pathlib import Path

from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import Bar, OrderSide, OrderStatus
from tradebus.execution.config import VenueConfig
from tradebus.execution.journal import Journal
from tradebus.reports.writers import ORDER_COLUMNS, order_row
from tradebus.strategies.base import Strategy

IID = "BTCUSD.SIM"
H = 3_600_000_000_000
T0 = 1_700_006_400_000_000_000
FLAT = (100.0, 100.0, 100.0, 100.0)


class OneBracket(Strategy):
    contingent = True

    def __init__(self, enter: bool, **options: float) -> None:
        super().__init__(IID, strategy_id="s")
        self.enter = enter
        self.options = options

    def on_bar(self, bar: Bar) -> None:
        if self.enter:
            self.enter = False
            self.submit_bracket(IID, OrderSide.BUY, 1.0, stop_loss=95.0, take_profit=110.0, **self.options)


def kernel(journal: Journal, enter: bool, venue: object | None = None, **options: float) -> Kernel:
    inst = Instrument(venue="SIM", symbol="BTCUSD", tick_size=0.01, lot_size=0.001, margin=True)
    k = Kernel([inst], venue_config=VenueConfig(fill_on="bars"), initial_cash=1e6, journal=journal, venue=venue)  # type: ignore[arg-type]
    k.add_strategy(OneBracket(enter, **options))
    return k


def feed(k: Kernel, bars: dict[int, tuple[float, float, float, float]]) -> None:
    for n, (o, h, lo, c) in bars.items():
        k.process(Bar(IID, T0 + n * H, T0 + n * H, o, h, lo, c, 10.0))


def restart(path: Path, first: Kernel, **options: float) -> Kernel:
    journal = Journal(path)
    second = kernel(journal, False, venue=first.venue, **options)
    second.venue.clock = second.clock  # type: ignore[attr-defined]
    unknown = journal.replay(
        second.orders, second.portfolio, T0 + 3 * H, risk=second.risk, on_message=second.record_journaled
    )
    for order in unknown:
        second.execution.resolve_unknown(order.client_order_id)
    return second


def by_reason(k: Kernel) -> dict[str, object]:
    return {k.result.submit_reasons[o.client_order_id]: o for o in k.orders.orders()}


def test_a_restart_keeps_the_oco_link_of_working_children(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    first = kernel(Journal(path), True)
    feed(first, {1: FLAT, 2: FLAT, 3: FLAT})
    orders = by_reason(first)
    stop, target = orders["bracket stop-loss"], orders["bracket take-profit"]
    assert stop.status == target.status == OrderStatus.ACCEPTED  # type: ignore[attr-defined]

    second = restart(path, first)
    assert second.orders.order(stop.client_order_id).status == OrderStatus.ACCEPTED  # type: ignore[attr-defined]
    feed(second, {4: (100.0, 111.0, 99.0, 105.0), 5: FLAT})
    assert [(f.side, f.price) for f in second.result.fills] == [("BUY", 100.0), ("SELL", 110.0)]
    assert second.orders.order(stop.client_order_id).status == OrderStatus.CANCELED  # type: ignore[attr-defined]
    assert second.portfolio.position(IID) == 0.0
    assert second.contingent is not None and second.contingent._brackets == {}


def test_a_restart_keeps_trailing_a_bracket_stop(tmp_path: Path) -> None:
    """A trailing stop-loss 5 below the best price: armed at 100 (trigger 95); after the
    restart bar 4's high 108 raises it to 103 (for bar 5), and bar 5 (104, 104, 101, 101)
    crosses it: sold at 103. Without the restored trailing link it would stay at 95."""
    path = tmp_path / "journal.sqlite"
    first = kernel(Journal(path), True, trail_offset=5.0)
    feed(first, {1: FLAT, 2: FLAT, 3: FLAT})
    second = restart(path, first, trail_offset=5.0)
    feed(second, {4: (100.0, 108.0, 100.0, 104.0), 5: (104.0, 104.0, 101.0, 101.0), 6: FLAT})
    assert [(f.side, f.price) for f in second.result.fills] == [("BUY", 100.0), ("SELL", 103.0)]
    assert second.portfolio.position(IID) == 0.0


class GtdOnce(Strategy):
    """A buy limit at 90 good till ``expire_ns`` (bar 5's time), sent at the first bar's close."""

    contingent = True

    def __init__(self, expire_ns: int = T0 + 5 * H) -> None:
        super().__init__(IID, strategy_id="s")
        self.sent = False
        self.expire_ns = expire_ns

    def on_bar(self, bar: Bar) -> None:
        if not self.sent:
            self.sent = True
            self.submit_gtd(self.submit_limit(IID, OrderSide.BUY, 1.0, 90.0), self.expire_ns)


def test_a_restart_keeps_a_good_till_date_order_gtd_in_orders_csv(tmp_path: Path) -> None:
    """The GTD limit works across the restart and expires at bar 5's time in the second process, whose
    orders.csv row says GTD (not the GTC it was sent with): the journaled link tells the restored order."""
    path = tmp_path / "journal.sqlite"
    inst = Instrument(venue="SIM", symbol="BTCUSD", tick_size=0.01, lot_size=0.001, margin=True)
    first = Kernel([inst], venue_config=VenueConfig(fill_on="bars"), initial_cash=1e6, journal=Journal(path))
    first.add_strategy(GtdOnce())
    feed(first, {1: FLAT, 2: FLAT, 3: FLAT})
    second = restart(path, first)
    feed(second, {4: FLAT, 5: FLAT, 6: (95.0, 95.0, 89.0, 92.0)})
    (order,) = second.orders.orders()
    assert (order.status, order.reason, order.expire_ns) == (OrderStatus.EXPIRED, "GTD: expired", T0 + 5 * H)
    assert second.result.fills == []
    assert order_row(order, "", "")[ORDER_COLUMNS.index("time_in_force")] == "GTD"


def test_a_restart_keeps_a_good_till_date_expiry_to_the_nanosecond(tmp_path: Path) -> None:
    """An expiry 100 ns after bar 5's time (1_700_024_400_000_000_100: a float holds only multiples of 256 ns
    there) comes back from the journal as given: the restored order's ``expire_ns`` and its EXPIRED stamp.
    Journaled as a float it came back 100 ns early, at bar 5's time."""
    path = tmp_path / "journal.sqlite"
    expire = T0 + 5 * H + 100
    assert int(float(expire)) == T0 + 5 * H  # what a float link held
    inst = Instrument(venue="SIM", symbol="BTCUSD", tick_size=0.01, lot_size=0.001, margin=True)
    first = Kernel([inst], venue_config=VenueConfig(fill_on="bars"), initial_cash=1e6, journal=Journal(path))
    first.add_strategy(GtdOnce(expire))
    feed(first, {1: FLAT, 2: FLAT, 3: FLAT})
    second = restart(path, first)
    feed(second, {4: FLAT})
    (order,) = second.orders.orders()
    assert (order.status, order.expire_ns) == (OrderStatus.ACCEPTED, expire)
    feed(second, {5: FLAT, 6: FLAT, 7: FLAT})  # the venue expires it once bar 7 tells it bar 6's span passed
    assert (order.status, order.expire_ns, order.ts_last) == (OrderStatus.EXPIRED, expire, expire)
