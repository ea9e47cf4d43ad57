"""The gate wired in the kernel: strategies cannot touch each other's orders; working orders count."""

from __future__ import annotations

from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import Bar, ModifyOrder, OrderDenied, OrderSide, OrderStatus
from tradebus.risk.config import RiskConfig
from tradebus.strategies.base import Strategy

INST = Instrument("BINANCE", "BTCUSDT", tick_size=0.01, lot_size=0.001)
IID = INST.instrument_id
MIN = 60_000_000_000


class Scripted(Strategy):
    """Runs ``script[n]`` (a callable taking the strategy) on its n-th bar; records its denials."""

    def __init__(self, strategy_id: str, script: dict[int, object]) -> None:
        super().__init__(IID, strategy_id=strategy_id)
        self.script = script
        self.n = 0
        self.denied: list[OrderDenied] = []
        self.ids: list[str] = []

    def on_bar(self, bar: Bar) -> None:
        self.n += 1
        action = self.script.get(self.n)
        if action is not None:
            action(self)  # type: ignore[operator]

    def on_order_denied(self, event: OrderDenied) -> None:
        self.denied.append(event)


def run(*strategies: Strategy, risk: RiskConfig | None = None, bars: int = 4) -> Kernel:
    kernel = Kernel([INST], risk_config=risk, initial_cash=100_000.0)
    for strategy in strategies:
        kernel.add_strategy(strategy)
    for i in range(1, bars + 1):
        kernel.process(Bar(IID, i * MIN, i * MIN, 100.0, 100.5, 99.5, 100.0, 1.0))
    kernel.stop()
    return kernel


def test_a_strategy_cannot_cancel_or_modify_another_strategys_order() -> None:
    owner = Scripted("owner", {1: lambda s: s.ids.append(s.submit_limit(IID, OrderSide.BUY, 1.0, 90.0))})

    def meddle(s: Scripted) -> None:
        victim = owner.ids[0]
        s.cancel(victim)
        now = s.kernel.clock.now_ns()
        s.kernel.modify(ModifyOrder("meddler", IID, victim, now, now, price=95.0))

    meddler = Scripted("meddler", {2: meddle})
    kernel = run(owner, meddler)
    victim = kernel.orders.order(owner.ids[0])
    assert victim.status == OrderStatus.ACCEPTED and victim.price == 90.0
    assert [d.reason for d in meddler.denied] == [
        f"cancel: ownership: order {victim.client_order_id} belongs to strategy 'owner', not 'meddler'",
        f"modify: ownership: order {victim.client_order_id} belongs to strategy 'owner', not 'meddler'",
    ]
    assert owner.denied == []
    assert len(kernel.result.denials) == 2


def test_its_own_order_a_strategy_may_cancel() -> None:
    def cancel_own(s: Scripted) -> None:
        s.cancel(s.ids[0])

    owner = Scripted("owner", {1: lambda s: s.ids.append(s.submit_limit(IID, OrderSide.BUY, 1.0, 90.0)), 2: cancel_own})
    kernel = run(owner)
    assert kernel.orders.order(owner.ids[0]).status == OrderStatus.CANCELED and owner.denied == []


def test_the_kernels_gate_counts_working_orders_in_max_position() -> None:
    def two_bids(s: Scripted) -> None:
        s.ids.append(s.submit_limit(IID, OrderSide.BUY, 1.0, 90.0))
        s.ids.append(s.submit_limit(IID, OrderSide.BUY, 1.0, 89.0))

    strategy = Scripted("s", {1: two_bids})
    kernel = run(strategy, risk=RiskConfig(max_position=1.5))
    first, second = (kernel.orders.order(c) for c in strategy.ids)
    assert first.status == OrderStatus.ACCEPTED and second.status == OrderStatus.DENIED
    assert strategy.denied[0].reason == "max_position: |0.0 + working 1.0 + 1.0| = 2.0 > 1.5"
