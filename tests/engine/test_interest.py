"""Borrowing interest of margin spot loans (``annual_borrow_rates``), hand-derived.

Interest is ``owed * price * annual_rate / 8760`` per hour: at the fill that borrows (on what it
borrowed, at its price) and at every whole UTC hour on what is owed then (at the latest price
before the hour). Before, a levered or short margin spot run paid nothing for its loans.
"""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import yaml

from tradebus.cli import build_kernel, run_backtest
from tradebus.config import load_config
from tradebus.data.catalog import Catalog
from tradebus.engine.accelerated import AcceleratedUnsupported, run_accelerated, unsupported
from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import Bar, InterestCharged, OrderSide, Trade
from tradebus.errors import ConfigError
from tradebus.execution.config import VenueConfig
from tradebus.research.lookahead import MemoryReplay, SourceFrame
from tradebus.strategies.base import Strategy
from tradebus.strategies.ema_cross import EmaCross
from tradebus.strategies.tick_ema import TickEmaCross

from tests.engine.test_accelerated import BARS
from tests.engine.test_kernel_batches import T0, assert_same, run_both, trade_source

H = 3_600_000_000_000
M = 60_000_000_000
IID = "BTC-USD.SIM"
YEAR_H = 8760.0


def spot(leverage: float = 1.0, **fields: Any) -> Instrument:
    return Instrument("SIM", "BTC-USD", base="BTC", quote="USD", tick_size=0.01, lot_size=0.0001, margin=True,
                      leverage=leverage, **fields)  # fmt: skip


class Script(Strategy):
    """Submits a market order at given trades (by their index): ``{index: (side, quantity)}``."""

    def __init__(self, orders: dict[int, tuple[OrderSide, float]]) -> None:
        super().__init__(IID, strategy_id="script")
        self.orders = orders
        self.n = 0

    def on_trade(self, trade: Trade) -> None:
        order = self.orders.get(self.n)
        self.n += 1
        if order is not None:
            self.submit_market(IID, *order)


def run(
    trades: list[tuple[int, float]],
    orders: dict[int, tuple[OrderSide, float]],
    rates: dict[str, float] | None,
    leverage: float = 1.0,
    cash: float = 10_000.0,
) -> Kernel:
    """One message at a time: trades ``(ts, price)``; an order decided at trade i fills at trade i + 1."""
    kernel = Kernel([spot(leverage)], initial_cash=cash, venue_config=VenueConfig(fill_on="trades"),
                    borrow_rates=rates)  # fmt: skip
    kernel.add_strategy(Script(orders))
    for k, (ts, price) in enumerate(trades):
        kernel.process(Trade(IID, ts, ts, price, 1.0, 1, str(k)))
    kernel.stop()
    return kernel


def charges(kernel: Kernel) -> list[tuple[str, int, float, float]]:
    assert kernel.result.interest is not None
    return [(c.kind, c.ts_event, c.borrowed, c.price) for c in kernel.result.interest]


# A short of 0.5 BTC sold at 20,000 at 00:20, held over 01:00, 02:00 and 03:00, bought back at 03:10.
SHORT_TRADES = [
    (T0 + 10 * M, 20_000.0),  # decides: sell 0.5
    (T0 + 20 * M, 20_000.0),  # fills: borrows 0.5 BTC
    (T0 + H + 5 * M, 21_000.0),  # 01:00 charged before this trade, at 20,000
    (T0 + 2 * H + 5 * M, 19_000.0),  # 02:00 at 21,000
    (T0 + 3 * H + 5 * M, 22_000.0),  # 03:00 at 19,000; decides: buy 0.5
    (T0 + 3 * H + 10 * M, 22_000.0),  # fills: repaid
    (T0 + 4 * H + 5 * M, 22_500.0),  # 04:00: nothing owed, nothing charged
]
SHORT_ORDERS = {0: (OrderSide.SELL, 0.5), 4: (OrderSide.BUY, 0.5)}


def test_a_short_pays_at_borrowing_and_at_each_whole_hour_on_the_price_before_it() -> None:
    """0.5 BTC at 10 % a year: 0.5 * 0.10 / 8760 * (20,000 at the sale + 20,000 + 21,000 + 19,000
    at 01:00, 02:00, 03:00) = 4,000 / 8,760 = 0.45662 USD; equity falls by exactly that."""
    kernel = run(SHORT_TRADES, SHORT_ORDERS, {"BTC": 0.10})
    assert charges(kernel) == [
        ("borrow", T0 + 20 * M, 0.5, 20_000.0),
        ("hour", T0 + H, 0.5, 20_000.0),
        ("hour", T0 + 2 * H, 0.5, 21_000.0),
        ("hour", T0 + 3 * H, 0.5, 19_000.0),
    ]
    interest = [c.interest for c in kernel.result.interest or []]
    assert interest == pytest.approx([0.5 * p * 0.10 / YEAR_H for p in (20_000.0, 20_000.0, 21_000.0, 19_000.0)],
                                     rel=1e-15)  # fmt: skip
    assert sum(interest) == pytest.approx(4_000.0 / 8_760.0, rel=1e-12)
    assert all(c.quote == "USD" and c.asset == "BTC" and c.annual_rate == 0.10 for c in kernel.result.interest or [])
    # no fees: 10,000 + 0.5 * (20,000 - 22,000) - interest
    assert kernel.portfolio.equity() == pytest.approx(9_000.0 - 4_000.0 / 8_760.0, abs=1e-9)
    assert kernel.portfolio.interest_paid == pytest.approx(4_000.0 / 8_760.0, rel=1e-12)
    assert kernel.portfolio.account.balance("USD") == pytest.approx(9_000.0 - 4_000.0 / 8_760.0, abs=1e-9)
    plain = run(SHORT_TRADES, SHORT_ORDERS, None)
    assert plain.result.interest is None
    assert plain.portfolio.equity() - kernel.portfolio.equity() == pytest.approx(4_000.0 / 8_760.0, abs=1e-9)


def test_each_charge_is_published() -> None:
    seen: list[InterestCharged] = []
    kernel = Kernel([spot()], initial_cash=10_000.0, venue_config=VenueConfig(fill_on="trades"), borrow_rates={"BTC": 0.1})
    kernel.add_strategy(Script(SHORT_ORDERS))
    kernel.bus.subscribe(InterestCharged, seen.append)
    for k, (ts, price) in enumerate(SHORT_TRADES):
        kernel.process(Trade(IID, ts, ts, price, 1.0, 1, str(k)))
    assert seen == kernel.result.interest and len(seen) == 4


def test_a_levered_long_pays_on_the_quote_it_borrowed() -> None:
    """3x long of 1.5 BTC at 20,000 with 10,000 USD borrows 20,000 USD at 8 %: 20,000 * 0.08 / 8760 at the
    fill (00:30) and at 01:00 and 02:00 (the USD owed grows by each charge: Binance's liability does too)."""
    trades = [(T0 + 20 * M, 20_000.0), (T0 + 30 * M, 20_000.0), (T0 + H + M, 25_000.0), (T0 + 2 * H + M, 15_000.0)]
    kernel = run(trades, {0: (OrderSide.BUY, 1.5)}, {"USD": 0.08, "BTC": 0.5}, leverage=3.0)
    first = 20_000.0 * 0.08 / YEAR_H
    second = (20_000.0 + first) * 0.08 / YEAR_H
    third = (20_000.0 + first + second) * 0.08 / YEAR_H
    assert charges(kernel) == [
        ("borrow", T0 + 30 * M, 20_000.0, 1.0),
        ("hour", T0 + H, pytest.approx(20_000.0 + first, rel=1e-15), 1.0),
        ("hour", T0 + 2 * H, pytest.approx(20_000.0 + first + second, rel=1e-15), 1.0),
    ]
    assert kernel.portfolio.interest_paid == pytest.approx(first + second + third, rel=1e-12)
    assert kernel.portfolio.equity() == pytest.approx(10_000.0 + 1.5 * (15_000.0 - 20_000.0) - first - second - third,
                                                      abs=1e-9)  # fmt: skip


def test_nothing_is_charged_without_a_loan_or_within_the_hour_of_a_repaid_one() -> None:
    """A 1x long within the cash borrows nothing; a short opened at 00:10 and closed at 00:50 pays only at
    borrowing (no whole hour passed while owed), and no later hour charges anything."""
    trades = [(T0 + 5 * M, 20_000.0), (T0 + 10 * M, 20_000.0), (T0 + 45 * M, 20_000.0), (T0 + 50 * M, 21_000.0),
              (T0 + H + M, 21_000.0), (T0 + 5 * H, 21_000.0)]  # fmt: skip
    long = run(trades, {0: (OrderSide.BUY, 0.45)}, {"BTC": 0.1, "USD": 0.1})
    assert charges(long) == []
    short = run(trades, {0: (OrderSide.SELL, 0.5), 2: (OrderSide.BUY, 0.5)}, {"BTC": 0.1})
    assert charges(short) == [("borrow", T0 + 10 * M, 0.5, 20_000.0)]


def test_a_loan_taken_at_a_whole_hour_pays_once_for_it() -> None:
    """Borrowed by a fill at exactly 01:00: the 01:00 charge comes before the trade (nothing owed then),
    the fill pays the first hour; next at 02:00."""
    trades = [(T0 + 50 * M, 20_000.0), (T0 + H, 20_000.0), (T0 + 2 * H, 20_000.0)]
    kernel = run(trades, {0: (OrderSide.SELL, 0.5)}, {"BTC": 0.1})
    assert charges(kernel) == [("borrow", T0 + H, 0.5, 20_000.0), ("hour", T0 + 2 * H, 0.5, 20_000.0)]


def test_hours_without_data_are_each_charged_at_the_last_price() -> None:
    trades = [(T0 + 10 * M, 20_000.0), (T0 + 20 * M, 20_000.0), (T0 + 4 * H + M, 30_000.0)]
    kernel = run(trades, {0: (OrderSide.SELL, 0.5)}, {"BTC": 0.1})
    assert charges(kernel)[1:] == [("hour", T0 + k * H, 0.5, 20_000.0) for k in (1, 2, 3, 4)]


def test_a_higher_rate_lowers_equity_by_exactly_the_extra_interest() -> None:
    """Perturb: 10 % -> 15 % costs 0.05 / 8760 * 0.5 * (20,000 + 20,000 + 21,000 + 19,000) more."""
    low = run(SHORT_TRADES, SHORT_ORDERS, {"BTC": 0.10}).portfolio.equity()
    high = run(SHORT_TRADES, SHORT_ORDERS, {"BTC": 0.15}).portfolio.equity()
    assert low - high == pytest.approx(0.5 * 0.05 * 80_000.0 / YEAR_H, rel=1e-9)


def test_interest_takes_a_short_below_maintenance_and_liquidates_it() -> None:
    """A 1x short of 0.5 at 20,000 (wallet 20,000) at 2,000 % a year: the sale pays 0.5 * 20,000 * 20 / 8760
    = 22.83; at 39,700 it is above maintenance (19,977.17 > 0.5025 * 39,700 = 19,949.25), and the 01:00
    charge of 0.5 * 39,700 * 20 / 8760 = 45.32 takes it below: liquidated then, before the 01:01 trade."""
    trades = [(T0 + 10 * M, 20_000.0), (T0 + 20 * M, 20_000.0), (T0 + 40 * M, 39_700.0), (T0 + H + M, 39_700.0)]
    kernel = run(trades, {0: (OrderSide.SELL, 0.5)}, {"BTC": 20.0})
    [event] = kernel.result.liquidations
    assert (event.ts_event, event.price, event.quantity) == (T0 + H, 39_700.0, -0.5)
    assert [c.kind for c in kernel.result.interest or []] == ["borrow", "hour"]
    assert kernel.portfolio.position(IID) == 0.0
    without = run(trades, {0: (OrderSide.SELL, 0.5)}, {"BTC": 0.0})
    assert without.result.liquidations == [] and without.result.interest == []


# ----------------------------------------------------------------------------- batch loops


def swings(n: int) -> pa.Table:
    """Trades 20 to 130 s apart (some 400 whole hours), swinging +-8 % six times: the EMAs cross both ways."""
    rng = np.random.default_rng(5)
    wave = 0.08 * np.sin(np.linspace(0.0, 12.0 * np.pi, n))
    price = np.round(30_000.0 * np.exp(wave + np.cumsum(rng.normal(0.0, 0.0003, n))), 2)
    ts = T0 + 7 * M + np.cumsum(rng.integers(20, 130, n)).astype(np.int64) * 1_000_000_000
    return pa.table({
        "ts_event": ts, "ts_init": ts, "price": price, "size": np.full(n, 0.01),
        "aggressor": rng.choice(np.array([-1, 1], dtype=np.int8), n), "trade_id": [str(k) for k in range(n)],
    })  # fmt: skip


@pytest.mark.parametrize("mode", ["long_only", "long_short"])
def test_trade_batches_charge_as_one_message_at_a_time(tmp_path: Path, mode: str) -> None:
    """The lone margin spot instrument's trades stay batched; the hourly alerts fire at the same points."""
    source = trade_source(tmp_path, swings(20_000))

    def build() -> Kernel:
        inst = Instrument("SIM", "BTCUSDT", base="BTC", quote="USDT", tick_size=0.01, lot_size=0.0001,
                          taker_fee=0.0002, margin=True, leverage=5.0)  # fmt: skip
        kernel = Kernel([inst], venue_config=VenueConfig(fill_on="trades"), initial_cash=10_000.0,
                        borrow_rates={"BTC": 0.3, "USDT": 0.2})  # fmt: skip
        kernel.add_strategy(TickEmaCross("BTCUSDT.SIM", fast=100, slow=1_000, quantity=1.0, mode=mode))
        return kernel

    fast, slow = run_both([source], build, batch_rows=1_500)
    assert fast.perpetuals is not None and fast.perpetuals.bounded  # not sent one at a time
    assert_same(fast, slow, min_fills=2)
    assert fast.result.interest == slow.result.interest
    assert len({c.kind for c in fast.result.interest or []}) == 2 and len(fast.result.interest or []) > 20
    assert {c.asset for c in fast.result.interest or []} == ({"BTC", "USDT"} if mode == "long_short" else {"USDT"})
    assert fast.portfolio.interest_paid == pytest.approx(sum(c.interest for c in fast.result.interest or []), rel=1e-12)


COINBASE = "BTC-USD.COINBASE"


def coinbase_kernel(rates: dict[str, float] | None) -> Kernel:
    inst = Instrument("COINBASE", "BTC-USD", base="BTC", quote="USD", tick_size=0.01, lot_size=1e-8,
                      min_notional=1.0, maker_fee=0.004, taker_fee=0.006, margin=True, leverage=2.0)  # fmt: skip
    kernel = Kernel([inst], initial_cash=100_000.0, venue_config=VenueConfig(), equity_interval_ns=H * 24,
                    borrow_rates=rates)  # fmt: skip
    kernel.add_strategy(EmaCross(COINBASE, fast=10, slow=30, quantity=1.0, mode="long_short"))
    return kernel


def bars_replay() -> MemoryReplay:
    return MemoryReplay([SourceFrame(COINBASE, "bars", BARS)], 700)  # type: ignore[arg-type]


def test_bar_batches_charge_as_one_message_at_a_time() -> None:
    rates = {"BTC": 0.2, "USD": 0.1}
    batch = coinbase_kernel(rates).run(bars_replay())
    single = coinbase_kernel(rates)
    for bar in BARS.itertuples(index=False):
        single.process(Bar(COINBASE, bar.ts_event, bar.ts_init, bar.open, bar.high, bar.low, bar.close, bar.volume))
    single.stop()
    assert batch.interest == single.result.interest and len(batch.interest or []) > 100
    assert batch.fills == single.result.fills and batch.equity == single.result.equity
    assert batch.liquidations == single.result.liquidations


def test_the_accelerated_tier_refuses_borrowing_interest() -> None:
    kernel = coinbase_kernel({"BTC": 0.2})
    assert unsupported(kernel) == "annual_borrow_rates is set: the accelerated tier charges no borrowing interest"
    with pytest.raises(AcceleratedUnsupported, match="annual_borrow_rates"):
        run_accelerated(coinbase_kernel({"BTC": 0.2}), bars_replay())
    assert unsupported(coinbase_kernel(None)) is None


# ----------------------------------------------------------------------------- config and outputs


def test_the_kernel_refuses_rates_nothing_borrows() -> None:
    with pytest.raises(ConfigError, match="'ETH' is no base or quote asset of a margin spot instrument"):
        Kernel([spot()], borrow_rates={"ETH": 0.1})
    with pytest.raises(ConfigError, match="need a margin spot instrument"):
        Kernel([Instrument("SIM", "BTC-USD", base="BTC", quote="USD")], borrow_rates={"BTC": 0.1})


def write_config(tmp_path: Path, extra: dict[str, Any], margin: bool = True) -> Path:
    catalog = Catalog(tmp_path / "catalog")
    catalog.write(pa.Table.from_pandas(BARS, preserve_index=False), "coinbase", "spot", "BTC-USD", "bars_4h",
                  period="month", mode="overwrite")  # fmt: skip
    config = {
        "data": {"catalog": str(tmp_path / "catalog"),
                 "sources": [{"instrument": COINBASE, "dataset": "coinbase/spot/BTC-USD/bars_4h"}]},
        "instruments": [{"venue": "COINBASE", "symbol": "BTC-USD", "kind": "spot", "base": "BTC", "quote": "USD",
                         "tick_size": 0.01, "lot_size": 1e-8, "margin": margin, "leverage": 2.0 if margin else 1.0}],
        "strategy": {"name": "ema_cross", "instruments": [COINBASE],
                     "params": {"fast": 10, "slow": 30, "mode": "long_short", "quantity": 1.0}},
        "initial_cash": 100_000.0,
        "report": {"equity_interval": "1d"},
        **extra,
    }  # fmt: skip
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    ("rates", "margin", "message"),
    [
        ({"BTC": -0.1}, True, r"annual_borrow_rates\.BTC.*greater than or equal to 0"),
        ({"BTC": "ten"}, True, r"annual_borrow_rates\.BTC.*valid number"),
        ({"BTC": float("inf")}, True, r"annual_borrow_rates\.BTC.*finite number"),
        ({"ETH": 0.1}, True, r"annual_borrow_rates\.ETH: 'ETH' is not an asset a run can borrow; the margin spot "
                             r"instruments borrow \['BTC', 'USD'\]"),
        ({"BTC": 0.1}, False, r"annual_borrow_rates\.BTC: 'BTC' is not an asset a run can borrow; no instrument is "
                              r"margin spot \(kind: spot, margin: true\): nothing borrows"),
        ([0.1], True, r"annual_borrow_rates.*valid dictionary"),
    ],
)
def test_a_bad_borrow_rate_is_a_config_error_naming_the_key(
    tmp_path: Path, rates: Any, margin: bool, message: str
) -> None:
    path = write_config(tmp_path, {"annual_borrow_rates": rates}, margin=margin)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_the_cli_exits_2_on_a_bad_borrow_rate(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tradebus.cli import app

    path = write_config(tmp_path, {"annual_borrow_rates": {"BTC": -1}})
    result = CliRunner().invoke(app, ["backtest", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "annual_borrow_rates.BTC" in result.output


def test_a_run_with_rates_writes_interest_csv_and_metrics_and_one_without_empties_them(tmp_path: Path) -> None:
    out = tmp_path / "out"
    path = write_config(tmp_path, {"annual_borrow_rates": {"BTC": 0.2, "USD": 0.1}})
    result, metrics, _ = run_backtest(path, out)
    with (out / "interest.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(result.interest or []) > 100
    assert list(rows[0]) == ["ts_event", "time", "asset", "kind", "borrowed", "price", "annual_rate", "interest", "quote"]
    assert [float(r["interest"]) for r in rows] == [c.interest for c in result.interest or []]
    assert metrics["interest_paid"] == pytest.approx(sum(float(r["interest"]) for r in rows), rel=1e-12)
    assert metrics["interest_charges"] == len(rows)
    assert json.loads((out / "metrics.json").read_text())["interest_paid"] == metrics["interest_paid"]
    assert "annual_borrow_rates" in (out / "config.yaml").read_text()
    plain, plain_metrics, _ = run_backtest(write_config(tmp_path, {}), out)
    # the earlier run's interest.csv is rewritten for this run (no charge: no row), not deleted
    assert (out / "interest.csv").read_text() == ",".join(rows[0]) + "\n" and "interest_paid" not in plain_metrics
    run_backtest(write_config(tmp_path, {}), tmp_path / "fresh")
    assert not (tmp_path / "fresh" / "interest.csv").exists()  # a run without rates writes none of its own
    assert "annual_borrow_rates" not in (out / "config.yaml").read_text()
    # the same trades before the rates' first effect on an order; equity lower by the interest
    assert plain.equity[-1].equity > result.equity[-1].equity


def test_every_equity_row_of_a_run_paying_interest_adds_up(tmp_path: Path) -> None:
    """``equity - initial_cash = realized + unrealized - fees - funding - interest`` on each row of equity.csv.

    Before, equity.csv had no interest column: the identity was off by the interest paid so far.
    """
    out = tmp_path / "out"
    _, metrics, _ = run_backtest(write_config(tmp_path, {"annual_borrow_rates": {"BTC": 0.2, "USD": 0.1}}), out)
    with (out / "equity.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    with (out / "interest.csv").open(newline="") as handle:
        charged = [float(r["interest"]) for r in csv.DictReader(handle)]
    assert list(rows[0])[-1] == "interest_paid"  # appended: the earlier columns keep their places
    initial = metrics["initial_cash"]
    for n, row in enumerate(rows):
        x = {k: float(v) for k, v in row.items() if k != "time"}
        costs = x["fees_paid"] + x["funding_paid"] + x["interest_paid"]
        assert x["equity"] - initial == pytest.approx(
            x["realized_pnl"] + x["unrealized_pnl"] - costs, abs=1e-9 * initial
        ), f"row {n + 2}"
    # each row's interest_paid is the sum of the charges so far, in interest.csv's order
    running = list(itertools.accumulate(charged, initial=0.0))
    paid = [float(r["interest_paid"]) for r in rows]
    assert all(p in running for p in paid) and paid == sorted(paid)
    assert paid[-1] == running[-1] == pytest.approx(metrics["interest_paid"], rel=1e-12) and paid[-1] > 100.0
    assert len(set(paid)) > 50


@pytest.mark.parametrize("margin", [False, True])
def test_empty_rates_run_as_a_config_without_the_key(tmp_path: Path, margin: bool) -> None:
    """``annual_borrow_rates: {}`` sets no rate; before, a cash spot run failed ("borrow rates need a
    margin spot instrument") and a margin one wrote an empty interest.csv and lost the accelerated tier."""
    from typer.testing import CliRunner

    from tradebus.cli import app

    path = write_config(tmp_path, {}, margin=margin)
    kernel = build_kernel(load_config(path, overrides=["annual_borrow_rates={}"]))
    assert kernel.interest is None and unsupported(kernel) is None
    runner = CliRunner()
    plain = runner.invoke(app, ["backtest", str(path), "--out", str(tmp_path / "plain")])
    empty = runner.invoke(app, ["backtest", str(path), "--out", str(tmp_path / "empty"), "--set", "annual_borrow_rates={}"])
    assert (plain.exit_code, empty.exit_code) == (0, 0), empty.output
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == sorted(p.name for p in (tmp_path / "plain").iterdir())
    for name in ("metrics.json", "config.yaml", "fills.csv", "equity.csv"):
        assert (tmp_path / "empty" / name).read_bytes() == (tmp_path / "plain" / name).read_bytes(), name


def test_build_kernel_passes_the_rates(tmp_path: Path) -> None:
    kernel = build_kernel(load_config(write_config(tmp_path, {"annual_borrow_rates": {"USD": 0.05}})))
    assert kernel.interest is not None and kernel.interest.rates == {"USD": 0.05}


def test_a_paper_node_charges_at_its_config_rates() -> None:
    from tests.live.node_testdata import binance_config, config_of
    from tradebus.node.daemon import PaperNode

    config = config_of({**binance_config(None, None, ["trade"]), "annual_borrow_rates": {"BTC": 0.1, "USDT": 0.05}})
    node = PaperNode(config, handle_signals=False)
    assert node.kernel.interest is not None and node.kernel.interest.rates == {"BTC": 0.1, "USDT": 0.05}


def test_a_margin_spot_run_keeps_no_fills_for_funding_it_never_pays() -> None:
    """Every fill of a margin spot instrument was kept for matching venue funding payments, which only a payment trims and
    margin spot never gets: a daemon's memory grew with every fill for as long as it ran."""
    trades = [(T0 + k * M, 20_000.0 + (k % 7)) for k in range(400)]
    orders = {k: (OrderSide.SELL if k % 4 == 0 else OrderSide.BUY, 0.01) for k in range(0, 398, 2)}
    kernel = run(trades, orders, None, leverage=3.0)
    assert len(kernel.result.fills) == len(orders)
    assert kernel.perpetuals is not None
    assert not kernel.perpetuals._recent_fills.get(IID)  # 199 before
