"""Several strategies in one run: config list, per-strategy attribution, order ownership."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from tradebus.cli import run_backtest
from tradebus.config import load_config
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import Bar, Liquidity, OrderDenied, OrderFilled, OrderSide, OrderStatus, SubmitOrder
from tradebus.errors import ConfigError
from tradebus.execution.orders import FLATTEN_STRATEGY, KILL_STRATEGY
from tradebus.reports.attribution import attribute
from tradebus.research.lookahead import MemoryReplay, SourceFrame
from tradebus.strategies.base import Strategy

from strat_helpers import BTC_4H, FIXTURES, bars_4h, instrument, run

INSTRUMENT = {"venue": "COINBASE", "symbol": "BTC-USD", "base": "BTC", "quote": "USD", "tick_size": 0.01,
              "lot_size": 1.0e-8, "min_notional": 1.0, "maker_fee": 0.004, "taker_fee": 0.006, "margin": True}


def ema(sid: str, fast: int, slow: int, quantity: float) -> dict[str, Any]:
    return {"name": "ema_cross", "id": sid, "instruments": [BTC_4H],
            "params": {"fast": fast, "slow": slow, "mode": "long_short", "quantity": quantity}}


def write(tmp_path: Path, **sections: Any) -> Path:
    shutil.copy(FIXTURES / "kernel" / "coinbase_btc_usd_4h_2022_1200.csv", tmp_path / "bars.csv")
    config: dict[str, Any] = {
        "data": {"sources": [{"instrument": BTC_4H, "file": "bars.csv"}]},
        "instruments": [INSTRUMENT],
        "initial_cash": 100_000.0,
        "report": {"equity_interval": "4h"},
    }
    config.update(sections)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_two_strategies_run_side_by_side_and_attribution_adds_up(tmp_path: Path) -> None:
    path = write(tmp_path, strategies=[ema("fast", 5, 20, 0.3), ema("slow", 20, 60, 0.5)])
    _, _, out = run_backtest(path, tmp_path / "out")
    fills = pd.read_csv(out / "fills.csv")
    assert set(fills["strategy_id"]) == {"fast", "slow"}
    rows = read_rows(out / "attribution.csv")
    assert [(r["strategy_id"], r["instrument"]) for r in rows] == [
        ("fast", BTC_4H), ("fast", "ALL"), ("slow", BTC_4H), ("slow", "ALL")
    ] or [(r["strategy_id"], r["instrument"]) for r in rows] == [
        ("slow", BTC_4H), ("slow", "ALL"), ("fast", BTC_4H), ("fast", "ALL")
    ]
    last = float(pd.read_csv(tmp_path / "bars.csv")["close"].iloc[-1])
    equity = pd.read_csv(out / "equity.csv")
    total = 0.0
    for sid, own in fills.groupby("strategy_id"):
        # independent: cash flows of the strategy's fills plus its position at the last close
        sign = own["side"].map({"BUY": 1.0, "SELL": -1.0})
        position = float((sign * own["quantity"]).sum())
        cash = float((-sign * own["quantity"] * own["price"]).sum() - own["fee"].sum())
        expected = cash + position * last
        row = next(r for r in rows if r["strategy_id"] == sid and r["instrument"] == "ALL")
        per_instrument = next(r for r in rows if r["strategy_id"] == sid and r["instrument"] == BTC_4H)
        assert float(row["net_pnl"]) == pytest.approx(expected, abs=1e-6)
        assert float(per_instrument["position"]) == pytest.approx(position, abs=1e-9)
        assert float(row["fees"]) == pytest.approx(float(own["fee"].sum()), rel=1e-12)
        assert int(row["fills"]) == len(own)
        total += expected
    # the strategies' PnL is the whole run's PnL
    assert total == pytest.approx(float(equity["equity"].iloc[-1]) - 100_000.0, abs=1e-6)


def test_single_strategy_config_writes_attribution_and_keeps_its_form(tmp_path: Path) -> None:
    path = write(tmp_path, strategy=ema("only", 10, 30, 0.5))
    _, _, out = run_backtest(path, tmp_path / "out")
    recorded = yaml.safe_load((out / "config.yaml").read_text())
    assert "strategy" in recorded and "strategies" not in recorded
    assert load_config(out / "config.yaml").strategy is not None  # the recorded config reloads
    rows = read_rows(out / "attribution.csv")
    assert [r["strategy_id"] for r in rows] == ["only", "only"]


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"strategies": [ema("a", 5, 20, 0.1), {**ema("a", 5, 20, 0.1), "id": None}]}, "strategies.1.id: required"),
        ({"strategies": [ema("a", 5, 20, 0.1), ema("a", 6, 20, 0.1)]}, "strategies.1.id: 'a' is already the id"),
        ({"strategy": ema("a", 5, 20, 0.1), "strategies": [ema("b", 5, 20, 0.1)]}, "not both"),
        ({"strategies": [ema("a", 5, 20, 0.1), ema("b", 30, 20, 0.1)]}, "strategies.1.params"),
        ({"strategies": [ema("a", 5, 20, 0.1), {**ema("b", 5, 20, 0.1), "name": "nope"}]},
         "strategies.1.name: unknown strategy 'nope'"),
        ({"strategies": [{**ema("a", 5, 20, 0.1), "instruments": ["X.Y"]}]}, "strategies.0.instruments.0"),
        ({"strategies": [ema("a", 5, 20, 0.1), ema("ops", 6, 20, 0.1)]},
         "strategies.1.id: 'ops' is the id of the fills no strategy sends"),
        ({"strategy": ema("killswitch", 5, 20, 0.1)}, "strategy.id: 'killswitch' is the id of the fills no strategy"),
        ({"strategy": ema("liquidation", 5, 20, 0.1)}, "strategy.id: 'liquidation' is the id of the fills no strategy"),
    ],
)
def test_bad_strategies_list_is_a_config_error_naming_the_entry(
    tmp_path: Path, sections: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config(write(tmp_path, **sections))


class Owner(Strategy):
    """Rests a buy limit far below the market on the first bar."""

    def __init__(self) -> None:
        super().__init__(BTC_4H, strategy_id="owner")
        self.order_id = ""

    def on_bar(self, bar: Bar) -> None:
        if not self.order_id:
            self.order_id = self.submit_limit(BTC_4H, OrderSide.BUY, 0.1, 20_000.0)


class Meddler(Strategy):
    """Tries to cancel, then modify, the owner's order and its own; records denials."""

    def __init__(self, owner: Owner) -> None:
        super().__init__(BTC_4H, strategy_id="meddler")
        self.owner = owner
        self.k = 0
        self.own = ""
        self.denied: list[OrderDenied] = []

    def on_bar(self, bar: Bar) -> None:
        self.k += 1
        if self.k == 2:
            self.cancel(self.owner.order_id)
            self.modify(self.owner.order_id, price=round(bar.close, 2))
            self.own = self.submit_limit(BTC_4H, OrderSide.BUY, 0.1, round(bar.close * 0.5, 2))
        elif self.k == 4:
            self.cancel(self.own)

    def on_order_denied(self, event: OrderDenied) -> None:
        self.denied.append(event)


def test_a_strategy_can_cancel_or_modify_only_its_own_orders() -> None:
    owner = Owner()
    meddler = Meddler(owner)
    kernel = run([owner, meddler], {BTC_4H: bars_4h().iloc[:10]})
    victim = kernel.orders.order(owner.order_id)
    assert victim.status is OrderStatus.ACCEPTED  # still working, price unchanged
    assert victim.price == 20_000.0
    assert [d.client_order_id for d in meddler.denied] == [owner.order_id, owner.order_id]
    assert all("belongs to strategy 'owner'" in d.reason for d in meddler.denied)
    assert kernel.orders.order(meddler.own).status is OrderStatus.CANCELED  # its own cancel works
    # attribution splits nothing that did not fill
    assert attribute(kernel.result.fills, kernel.result.last_prices) == []


def test_strategies_sharing_an_instrument_each_trade_towards_their_own_target() -> None:
    from tradebus.strategies.macd import MacdCross
    from tradebus.strategies.rsi import RsiReversion

    macd = MacdCross(BTC_4H, strategy_id="macd", quantity=0.3, mode="long_short")
    rsi = RsiReversion(BTC_4H, strategy_id="rsi", quantity=0.2, mode="long_short")
    kernel = run([macd, rsi], {BTC_4H: bars_4h()})
    assert len(macd.decisions) > 10 and len(rsi.decisions) > 5
    own = kernel.strategy_positions
    assert own["macd"][BTC_4H] == pytest.approx(0.3 * macd.target, abs=1e-9)
    assert own["rsi"][BTC_4H] == pytest.approx(0.2 * rsi.target, abs=1e-9)
    assert macd.position() == own["macd"][BTC_4H] and rsi.position() == own["rsi"][BTC_4H]
    assert kernel.portfolio.position(BTC_4H) == pytest.approx(own["macd"][BTC_4H] + own["rsi"][BTC_4H], abs=1e-9)
    # each strategy's order sizes are its own: never more than twice its quantity (a flip)
    sizes = {sid: max(f.quantity for f in kernel.result.fills if f.strategy_id == sid) for sid in ("macd", "rsi")}
    assert sizes["macd"] <= 0.6 + 1e-9 and sizes["rsi"] <= 0.4 + 1e-9


def test_attribution_by_hand_with_a_flip_and_a_contract_size() -> None:
    from tradebus.engine.kernel import FillRecord

    def fill(sid: str, side: str, qty: float, px: float, fee: float) -> FillRecord:
        return FillRecord(0, "PERP.X", side, qty, px, fee, "TAKER", "c", sid, "t", "")

    fills = [
        fill("a", "BUY", 2.0, 100.0, 1.0),  # long 2 @ 100
        fill("a", "BUY", 2.0, 110.0, 1.0),  # long 4 @ 105
        fill("a", "SELL", 6.0, 120.0, 2.0),  # realise 4 * 15 = 60, then short 2 @ 120
        fill("b", "SELL", 1.0, 50.0, 0.5),
    ]
    a, a_all, b, _ = attribute(fills, {"PERP.X": 115.0}, {"PERP.X": 0.1})
    assert (a.strategy_id, a.instrument, a_all.instrument, b.strategy_id) == ("a", "PERP.X", "ALL", "b")
    assert a.position == -2.0 and a.avg_price == 120.0
    assert a.realized_pnl == pytest.approx(60.0 * 0.1)
    assert a.unrealized_pnl == pytest.approx(-2.0 * (115.0 - 120.0) * 0.1)
    assert a_all.net_pnl == pytest.approx(6.0 + 1.0 - 4.0)
    assert b.unrealized_pnl == pytest.approx(-1.0 * (115.0 - 50.0) * 0.1)


class HoldThenExit(Strategy):
    """Buys ``quantity`` at the first bar; at bar ``exit_at`` notes its position and goes flat."""

    def __init__(self, strategy_id: str, quantity: float, exit_at: int) -> None:
        super().__init__(BTC_4H, strategy_id=strategy_id)
        self.quantity = quantity
        self.exit_at = exit_at
        self.k = 0
        self.position_at_exit = float("nan")

    def on_bar(self, bar: Bar) -> None:
        self.k += 1
        if self.k == 1:
            self.target_position(BTC_4H, self.quantity, reason="enter")
        elif self.k == self.exit_at:
            self.position_at_exit = self.position()
            self.target_position(BTC_4H, 0.0, reason="exit")


def falling_bars() -> pd.DataFrame:
    """Daily bars at 100 for three days, then down 5 a day to 50, then flat: a 3x long is liquidated."""
    closes = [100.0] * 3 + [100.0 - 5.0 * k for k in range(1, 11)] + [50.0] * 5
    opens = [100.0, *closes[:-1]]
    ts = [(k + 1) * 86_400_000_000_000 for k in range(len(closes))]
    return pd.DataFrame({
        "ts_event": ts, "ts_init": ts, "open": opens, "high": [max(o, c) for o, c in zip(opens, closes, strict=True)],
        "low": [min(o, c) for o, c in zip(opens, closes, strict=True)], "close": closes, "volume": 1.0,
    })


def test_strategies_sharing_a_liquidated_position_hold_nothing_after_the_liquidation() -> None:
    # Both long 20 at 100 on 3x margin with 1,500 of cash: the cross position (40) is liquidated
    # on the way down; each strategy's own position is then flat, and its exit sends nothing.
    first = HoldThenExit("first", 20.0, exit_at=17)
    second = HoldThenExit("second", 20.0, exit_at=17)
    kernel = run([first, second], {BTC_4H: falling_bars()}, cash=1_500.0)
    assert len(kernel.result.liquidations) == 1
    assert kernel.portfolio.position(BTC_4H) == 0.0
    assert first.position_at_exit == 0.0 and second.position_at_exit == 0.0
    assert kernel.strategy_positions["first"][BTC_4H] == 0.0 and kernel.strategy_positions["second"][BTC_4H] == 0.0
    # no exit order: an exit of the 20 each no longer holds would have opened a short
    assert [f.strategy_id for f in kernel.result.fills] == ["first", "second", "liquidation"]
    assert not kernel.result.denials
    orders = kernel.orders.orders()
    assert [(o.strategy_id, kernel.result.submit_reasons[o.client_order_id]) for o in orders] == [
        ("first", "enter"), ("second", "enter")
    ]



class Flattener(Strategy):
    """At bar ``at``, sends the market order closing the account's position as a flatten does (``/flatten``'s
    ``kernel.submit`` of a ``strategy_id`` no strategy has: :data:`FLATTEN_STRATEGY`, :data:`KILL_STRATEGY`)."""

    def __init__(self, kernel: Kernel, strategy_id: str, at: int) -> None:
        super().__init__(BTC_4H, strategy_id="watcher")
        self.account, self.flatten_id, self.at, self.k = kernel, strategy_id, at, 0

    def on_bar(self, bar: Bar) -> None:
        self.k += 1
        if self.k == self.at:
            kernel = self.account
            qty = kernel.portfolio.position(BTC_4H)
            now = kernel.clock.now_ns()
            coid = kernel.orders.next_client_order_id(self.flatten_id)
            kernel.submit(SubmitOrder(self.flatten_id, BTC_4H, coid, OrderSide.SELL, qty, now, now, reason="flatten"))


@pytest.mark.parametrize("flatten_id", [FLATTEN_STRATEGY, KILL_STRATEGY])
def test_strategies_sharing_a_flattened_position_hold_nothing_after_the_flatten(flatten_id: str) -> None:
    # Both long 20 at bar 1; an operator's flatten sells the 40 at bar 5. The account is flat, and so is each
    # strategy's own position (as trades.csv and attribution.csv close them): its exit at bar 10 sends nothing,
    # where a strategy still counting its 20 would sell them, the account then short 40.
    first, second = HoldThenExit("first", 20.0, exit_at=10), HoldThenExit("second", 20.0, exit_at=10)
    kernel = Kernel([instrument(BTC_4H)], initial_cash=1_000_000.0)
    for strategy in (first, second, Flattener(kernel, flatten_id, at=5)):
        kernel.add_strategy(strategy)
    kernel.run(MemoryReplay([SourceFrame(BTC_4H, "bars", falling_bars())], 65_536))
    assert [f.strategy_id for f in kernel.result.fills] == ["first", "second", flatten_id]
    assert kernel.result.fills[2].quantity == 40.0
    assert first.position_at_exit == 0.0 and second.position_at_exit == 0.0
    assert kernel.strategy_position("first", BTC_4H) == 0.0 and kernel.strategy_position("second", BTC_4H) == 0.0
    assert kernel.portfolio.position(BTC_4H) == 0.0
    rows = attribute(kernel.result.fills, kernel.result.last_prices)
    assert [(r.strategy_id, r.position) for r in rows if r.instrument == BTC_4H] == [("first", 0.0), ("second", 0.0)]


def test_attribution_closes_each_strategys_position_at_the_liquidation() -> None:
    # The run above: 40 long liquidated at one close. Each strategy's row is flat, having realised
    # its own 20 at the liquidation price and paid half the liquidation fee; no other row.
    kernel = run([HoldThenExit("first", 20.0, 17), HoldThenExit("second", 20.0, 17)], {BTC_4H: falling_bars()},
                 cash=1_500.0)
    (liquidation,) = [f for f in kernel.result.fills if f.strategy_id == "liquidation"]
    entry = kernel.result.fills[0].price
    rows = attribute(kernel.result.fills, kernel.result.last_prices)
    assert [(r.strategy_id, r.instrument) for r in rows] == [
        ("first", BTC_4H), ("first", "ALL"), ("second", BTC_4H), ("second", "ALL")
    ]
    for row in rows[0], rows[2]:
        assert row.position == 0.0 and row.unrealized_pnl == 0.0
        assert row.sold == 20.0 and row.fills == 2
        assert row.realized_pnl == pytest.approx(20.0 * (liquidation.price - entry), rel=1e-12)
        assert row.fees == pytest.approx(kernel.result.fills[0].fee + liquidation.fee / 2, rel=1e-12)
    assert rows[1].net_pnl + rows[3].net_pnl == pytest.approx(kernel.portfolio.equity() - 1_500.0, abs=1e-9)


def test_a_fill_replayed_before_the_start_counts_in_its_strategys_share_of_a_shared_instrument() -> None:
    # The strategies' shares are summed only for the instruments several of them trade, known as they are
    # added: a journal replayed before start() (a restarted daemon's) books into them, a lone strategy's not.
    first, second = HoldThenExit("first", 1.0, exit_at=99), HoldThenExit("second", 1.0, exit_at=99)
    alone = Strategy("ETH-USD.COINBASE", strategy_id="eth")
    kernel = Kernel([instrument(BTC_4H), instrument("ETH-USD.COINBASE")], initial_cash=100_000.0)
    for strategy in (first, second, alone):
        kernel.add_strategy(strategy)
    kernel.record_journaled(OrderFilled("second", BTC_4H, "second-1", "V-1", "T-1", OrderSide.SELL, 0.25, 100.0,
                                        0.0, Liquidity.TAKER, 5, 5))
    kernel.record_journaled(OrderFilled("eth", "ETH-USD.COINBASE", "eth-1", "V-2", "T-2",
                                        OrderSide.BUY, 2.0, 10.0, 0.0, Liquidity.TAKER, 6, 6))
    assert kernel.strategy_positions == {"second": {BTC_4H: -0.25}}
    assert kernel.strategy_position("second", BTC_4H) == -0.25 and kernel.strategy_position("first", BTC_4H) == 0.0
    assert [f.strategy_id for f in kernel.result.fills] == ["second", "eth"]
