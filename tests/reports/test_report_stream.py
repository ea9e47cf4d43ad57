"""A daemon's row files written as they happen equal, byte for byte, the files written at the end of the same run.

The same deterministic run (4h Coinbase bars, simulated clock) is made twice: once with an
:class:`OutputStream` attached (the order manager forgetting released orders beyond 3), once
writing everything at the end as a backtest does. The strategy makes orders that close out
of creation order (a limit order resting for many bars while market orders fill), orders the
risk gate denies.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest

from tests.strategies.strat_helpers import BTC_4H, bars_4h, instrument
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import Bar, OrderSide
from tradebus.errors import DataError
from tradebus.reports.outputs import write_outputs
from tradebus.reports.stream import OutputStream, read_fills
from tradebus.reports.writers import (
    OPTIONAL_FILES, OWN_FILES, STREAMED_FILES, UNWRITTEN_PAGE, RunDirectory, is_unwritten_page,
)
from tradebus.research.lookahead import MemoryReplay, SourceFrame
from tradebus.risk.config import RiskConfig
from tradebus.strategies.base import Strategy


class Churn(Strategy):
    """Market orders every bar, a far limit order resting 25 bars every 20, an oversized order every 7."""

    def __init__(self) -> None:
        super().__init__(BTC_4H, strategy_id="Churn")
        self.n = 0
        self.resting: list[tuple[int, str]] = []
        self.most_known = 0

    def on_bar(self, bar: Bar) -> None:
        self.n += 1
        self.most_known = max(self.most_known, len(self.kernel.orders.orders()))
        side = OrderSide.BUY if self.n % 2 else OrderSide.SELL
        self.submit_market(BTC_4H, side, 0.01, reason=f"bar {self.n}, {side.name.lower()}")
        if self.n % 20 == 1:
            coid = self.submit_limit(BTC_4H, OrderSide.BUY, 0.01, round(bar.close * 0.5, 2), reason="far bid")
            self.resting.append((self.n, coid))
        if self.n % 7 == 0:
            self.submit_market(BTC_4H, OrderSide.BUY, 5.0, reason="too big")  # denied: max_order_quantity
        while self.resting and self.resting[0][0] + 25 <= self.n:
            self.cancel(self.resting.pop(0)[1], "waited long enough")


def run(out: Path, streamed: bool, bars: pd.DataFrame) -> Kernel:
    kernel = Kernel(
        [instrument(BTC_4H)], initial_cash=1_000_000.0, risk_config=RiskConfig(max_order_quantity=1.0),
        equity_interval_ns=86_400_000_000_000,
    )
    kernel.add_strategy(Churn())
    run_dir = RunDirectory(out, "paper")
    stream = None
    if streamed:
        kernel.orders.keep_released = 3
        stream = OutputStream(run_dir, kernel)
        stream.start()
    kernel.run(MemoryReplay([SourceFrame(BTC_4H, "bars", bars)], 64))
    write_outputs(run_dir, kernel.result, kernel.instruments, "config: 1\n", {"node.json": "{}"}, stream)
    return kernel


def test_streamed_files_equal_the_end_of_run_files_and_the_manager_forgets_written_orders(tmp_path: Path) -> None:
    bars = bars_4h().iloc[:200]
    at_end = run(tmp_path / "at_end", False, bars)
    streamed = run(tmp_path / "streamed", True, bars)
    names = [n for n in OWN_FILES["paper"] if n not in OPTIONAL_FILES]
    for name in names:
        assert (tmp_path / "streamed" / name).read_bytes() == (tmp_path / "at_end" / name).read_bytes(), name
    assert not (tmp_path / "streamed" / "INCOMPLETE").exists()
    with (tmp_path / "at_end" / "orders.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    statuses = {r["status"] for r in rows}
    assert {"FILLED", "CANCELED", "DENIED"} <= statuses
    created = [r["client_order_id"] for r in rows if r["type"]]
    assert len(created) == len(at_end.result.orders) == streamed.orders.created > 150
    # The streaming run's order manager kept the 3 latest written orders and those not written yet
    # (from the oldest working one on: at most 25 bars of about 2 orders); the other run kept all.
    assert max(s.most_known for s in streamed.strategies) <= 3 + 2 * 26 + 8
    assert max(s.most_known for s in at_end.strategies) > 150
    assert streamed.result.submit_reasons == {}
    assert [f.trade_id for f in streamed.result.fills] == [f.trade_id for f in at_end.result.fills]
    assert streamed.result.fills == at_end.result.fills  # read back from fills.csv, float for float


class ShortAndHold(Strategy):
    """Sells 2 BTC short on the first bar and holds: the loan pays interest every hour."""

    def __init__(self) -> None:
        super().__init__(BTC_4H, strategy_id="Short")

    def on_bar(self, bar: Bar) -> None:
        if self.position(BTC_4H) == 0.0 and not self.kernel.orders.open_orders():
            self.submit_market(BTC_4H, OrderSide.SELL, 2.0, reason="short")


def test_a_daemon_streams_the_interest_paid_column_of_equity_csv(tmp_path: Path) -> None:
    """The streamed equity rows carry the interest paid so far, as the rows written at the end do."""
    bars = bars_4h().iloc[:120]
    for streamed in (False, True):
        kernel = Kernel([instrument(BTC_4H, base="BTC", quote="USD")], initial_cash=100_000.0,
                        equity_interval_ns=86_400_000_000_000,
                        borrow_rates={"BTC": 0.1})  # fmt: skip
        kernel.add_strategy(ShortAndHold())
        run_dir = RunDirectory(tmp_path / str(streamed), "paper")
        stream = OutputStream(run_dir, kernel) if streamed else None
        if stream is not None:
            stream.start()
        kernel.run(MemoryReplay([SourceFrame(BTC_4H, "bars", bars)], 64))
        write_outputs(run_dir, kernel.result, kernel.instruments, "config: 1\n", {"node.json": "{}"}, stream)
    assert (tmp_path / "True" / "equity.csv").read_bytes() == (tmp_path / "False" / "equity.csv").read_bytes()
    rows = pd.read_csv(tmp_path / "True" / "equity.csv")
    charged = sum(c.interest for c in kernel.result.interest or [])
    assert rows["interest_paid"].iloc[-1] == pytest.approx(charged, rel=1e-12) and charged > 0.0
    off = rows["equity"] - 100_000.0 - (rows["realized_pnl"] + rows["unrealized_pnl"] - rows["fees_paid"]
                                        - rows["funding_paid"] - rows["interest_paid"])  # fmt: skip
    assert off.abs().max() < 1e-6


def test_a_streamed_row_is_on_disk_as_soon_as_it_happens(tmp_path: Path) -> None:
    kernel = Kernel([instrument(BTC_4H)], initial_cash=1_000_000.0)
    seen: list[int] = []

    class Watch(Churn):
        def on_order_filled(self, event: object) -> None:
            # The kernel recorded the fill before the strategy hears of it: its row is in the file.
            seen.append(len((tmp_path / "out" / "fills.csv").read_text().splitlines()) - 1)

    kernel.add_strategy(Watch())
    stream = OutputStream(RunDirectory(tmp_path / "out", "paper"), kernel)
    stream.start()
    assert (tmp_path / "out" / "INCOMPLETE").exists()
    kernel.run(MemoryReplay([SourceFrame(BTC_4H, "bars", bars_4h().iloc[:30])], 64))
    assert seen == list(range(1, len(seen) + 1)) and len(seen) >= 25
    assert set(STREAMED_FILES) <= {p.name for p in (tmp_path / "out").iterdir()}
    stream.finish()
    assert len(kernel.result.fills) == len(seen)


def test_read_fills_names_the_file_and_line_of_a_malformed_row(tmp_path: Path) -> None:
    path = tmp_path / "fills.csv"
    header = "ts_event,time,instrument,side,quantity,price,fee,liquidity,client_order_id,strategy_id,trade_id,reason\n"
    path.write_text(header + "10,t,X.SIM,BUY,0.1,abc,0.1,taker,c,s,T1,\n")
    with pytest.raises(DataError, match=r"fills\.csv, line 2"):
        read_fills(path)
    path.write_text("a,b\n")
    with pytest.raises(DataError, match="not a fills.csv"):
        read_fills(path)


def test_an_order_a_late_venue_event_changes_after_its_row_was_written_ends_in_its_final_state(tmp_path: Path) -> None:
    """A canceled order whose fill frame comes after the cancel's answer, and an order believed REJECTED (its submit
    failed) that the venue had and fills: each row was written when the order closed. While the daemon runs the
    order's last row is its new state; at stop orders.csv and fills.csv equal write_run's (the late fill's reason
    included)."""
    from tests.execution.venue_model import IID, ModelVenue
    from tradebus.engine.clock import SimulatedClock
    from tradebus.engine.instrument import Instrument
    from tradebus.engine.messages import OrderStatus, OrderType, SubmitOrder

    def rows(path: Path) -> list[dict[str, str]]:
        with path.open(newline="") as handle:
            return list(csv.DictReader(handle))

    mid_run: list[dict[str, str]] = []
    for streamed in (False, True):
        clock = SimulatedClock(1_000)
        venue = ModelVenue(clock)
        inst = Instrument("BINANCE", "BTCUSDT", tick_size=0.01, lot_size=0.001, margin=True)
        kernel = Kernel([inst], clock=clock, venue=venue, initial_cash=1_000_000.0)
        kernel.add_strategy(Strategy(IID, strategy_id="s"))
        run_dir = RunDirectory(tmp_path / str(streamed), "paper")
        stream = OutputStream(run_dir, kernel) if streamed else None
        if stream is not None:
            stream.start()
        kernel.start()

        def submit(coid: str, why: str) -> None:
            clock.advance_to(clock.now_ns() + 1_000)
            now = clock.now_ns()
            kernel.submit(SubmitOrder("s", IID, coid, OrderSide.BUY, 1.0, now, now, OrderType.LIMIT, 100.0, reason=why))

        submit("canceled", "bid, canceled")
        venue.arrive("canceled")
        venue.deliver_all()
        venue.fill("canceled", 0.4, 101.0)
        venue.cancels.append("canceled")
        venue.cancel_arrives(says_filled=False)
        venue.deliver(1)  # the cancel's answer first (not telling the filled quantity: no query books the fill)
        venue.fail_next_submit = "before"
        submit("rejected", "bid, refused")  # the submit failed: REJECTED at once (no timeouts)
        assert kernel.orders.order("rejected").status is OrderStatus.REJECTED
        venue.deliver_all()  # the canceled order's fill
        venue.submits["rejected"] = (kernel.orders.order("rejected"), clock.now_ns())
        clock.advance_to(clock.now_ns() + 1_000)
        venue.arrive("rejected")  # it reached the venue after all
        venue.fill("rejected", 1.0, 99.0)
        venue.deliver_all()
        assert kernel.orders.order("rejected").status is OrderStatus.FILLED
        submit("last", "bid, rests")
        if streamed:
            mid_run = rows(tmp_path / "True" / "orders.csv")
        kernel.stop()
        write_outputs(run_dir, kernel.result, kernel.instruments, "config: 1\n", {"node.json": "{}"}, stream)
    assert [(r["client_order_id"], r["status"], r["filled_qty"]) for r in mid_run] == [
        ("canceled", "CANCELED", "0.0"), ("rejected", "REJECTED", "0.0"), ("canceled", "CANCELED", "0.4"),
        ("rejected", "ACCEPTED", "0.0"), ("rejected", "FILLED", "1.0"),
    ]  # fmt: skip
    for name in ("orders.csv", "fills.csv", "trades.csv", "attribution.csv", "metrics.json"):
        assert (tmp_path / "True" / name).read_bytes() == (tmp_path / "False" / name).read_bytes(), name
    final = rows(tmp_path / "True" / "orders.csv")
    assert [r["client_order_id"] for r in final] == ["canceled", "rejected", "last"]
    assert [r["reason"] for r in rows(tmp_path / "True" / "fills.csv")] == ["bid, canceled", "bid, refused"]
    assert not (tmp_path / "True" / "INCOMPLETE").exists() and not list((tmp_path / "True").glob(".*"))


def test_a_daemon_streaming_beside_an_earlier_runs_page_has_the_unwritten_note_there_from_its_first_row(
    tmp_path: Path,
) -> None:
    """A paper/live daemon streaming into an --out holding an earlier run's tearsheet.html left that page (its total
    return, trades, charts) beside its new rows for the whole run (days), and after a crash or kill -9 for good: a
    user opening it read the earlier run's numbers as this one's. The stream now moves UNWRITTEN_PAGE over it before
    the first row; the end of the run writes this run's page over the note (nothing is deleted)."""
    earlier = "<html><body>earlier run: total return 41.7%</body></html>\n"
    pages: dict[str, list[bytes | None]] = {}
    for name, page in (("earlier", earlier), ("fresh", None)):
        out = tmp_path / name
        out.mkdir()
        if page is not None:
            (out / "tearsheet.html").write_text(page)
        seen = pages[name] = []

        class Watch(Churn):
            def on_order_filled(self, event: object) -> None:
                path = out / "tearsheet.html"
                seen.append(path.read_bytes() if path.exists() else None)

        kernel = Kernel([instrument(BTC_4H)], initial_cash=1_000_000.0, equity_interval_ns=86_400_000_000_000)
        kernel.add_strategy(Watch())
        run_dir = RunDirectory(out, "paper")
        stream = OutputStream(run_dir, kernel)
        stream.start()
        assert (out / "INCOMPLETE").exists()
        kernel.run(MemoryReplay([SourceFrame(BTC_4H, "bars", bars_4h().iloc[:60])], 64))
        write_outputs(run_dir, kernel.result, kernel.instruments, "config: 1\n", {"node.json": "{}"}, stream)
        run_dir.close()
    assert len(pages["earlier"]) >= 25 and set(pages["earlier"]) == {UNWRITTEN_PAGE.encode()}
    final = (tmp_path / "earlier" / "tearsheet.html").read_text()
    assert final not in (earlier, UNWRITTEN_PAGE) and "Rolling Sharpe" in final  # this run's page, rendered
    assert not is_unwritten_page(tmp_path / "earlier" / "tearsheet.html")
    assert set(pages["fresh"]) == {None} and not (tmp_path / "fresh" / "tearsheet.html").exists()  # no page asked
    assert sorted(p.name for p in (tmp_path / "earlier").iterdir()) == sorted(
        [n for n in OWN_FILES["paper"] if n != "interest.csv"])
