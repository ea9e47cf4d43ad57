"""A live-daemon strategy for the kill -9 fuzzer: every order kind the daemon sends, in turn, on trades.

Market, resting limit, its modification and its cancel, a marketable limit, a bracket (market entry,
stop-loss and take-profit, one OCO group) and a TWAP (an execution algorithm's children), so a
SIGKILL at any moment meets one of them in flight (``tests/live/test_live_crash_fuzz.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from tradebus.config.base import StrictModel
from tradebus.engine.messages import OrderSide, OrderStatus, OrderType, Trade
from tradebus.strategies.algos import Twap
from tradebus.strategies.base import Strategy


class MixedKindsParams(StrictModel):
    """``quantity`` of each order (a TWAP's parent: twice it); ``every``: trades between two steps;
    ``away``: a resting limit's distance from the trade price, and a bracket's exits', as a fraction of it;
    ``sell``: whether the steps that sell are taken (a spot cash account sells only what it holds)."""

    quantity: float = 0.001
    every: int = 3
    away: float = 0.002
    sell: bool = True


class MixedKinds(Strategy):
    """On every ``every``-th trade the next of eight steps (see the module docstring)."""

    Params = MixedKindsParams
    contingent = True

    def __init__(self, instrument_ids: str | Sequence[str], *, quantity: float = 0.001, every: int = 3,
                 away: float = 0.002, sell: bool = True, strategy_id: str | None = None) -> None:
        super().__init__(instrument_ids, strategy_id=strategy_id or "MixedKinds")
        self.quantity, self.every, self.away, self.sell = quantity, every, away, sell
        self.seen = 0
        self.resting: str | None = None
        self.algo: Twap | None = None

    def _price(self, price: float) -> float:
        tick = self.instrument(self.instrument_id).tick_size
        return round(round(price / tick) * tick, 10)

    def _working(self, client_order_id: str | None) -> bool:
        if client_order_id is None:
            return False
        order = self.kernel.orders.get(client_order_id)
        return order is not None and order.status in (OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED)

    def on_trade(self, trade: Trade) -> None:
        self.seen += 1
        if self.seen % self.every:
            return
        iid, px, q = trade.instrument_id, trade.price, self.quantity
        step = (self.seen // self.every) % 8
        if step == 0:
            self.submit_market(iid, OrderSide.BUY, q, reason="fuzz market buy")
        elif step == 1:
            self.resting = self.submit_limit(iid, OrderSide.BUY, q, self._price(px * (1 - self.away)), reason="fuzz resting")
        elif step == 2 and self._working(self.resting):
            self.modify(self.resting, price=self._price(px * (1 - self.away / 2)))  # type: ignore[arg-type]
        elif step == 3:  # the resting buy, or what replaced it at its modification (a cancel-replace venue)
            for order in self.kernel.orders.open_orders(iid):
                if order.strategy_id == self.strategy_id and order.side is OrderSide.BUY and order.order_type is OrderType.LIMIT:
                    self.cancel(order.client_order_id, reason="fuzz cancel")
            self.resting = None
        elif step == 4:
            self.submit_bracket(iid, OrderSide.BUY, q, stop_loss=self._price(px * (1 - self.away)),
                                take_profit=self._price(px * (1 + self.away)), reason="fuzz bracket")
        elif step == 5 and (self.algo is None or self.algo.status in ("done", "canceled", "failed", "unfinished")):
            self.algo = Twap(self, iid, OrderSide.BUY, 2 * q, duration="1s", slices=2)
            self.algo.start()
        elif step == 6 and self.sell:
            self.submit_market(iid, OrderSide.SELL, q, reason="fuzz market sell")
        elif step == 7 and self.sell:
            self.submit_limit(iid, OrderSide.SELL, q, self._price(px * (1 - self.away)), reason="fuzz marketable sell")


class ModifyRacedParams(StrictModel):
    """``quantity`` of each resting buy; ``factor``: its modification's total, in ``quantity`` (above 1: a larger
    order, so a racing fill never takes more than the modification asks); ``every``: trades between two steps;
    ``away``: the resting buy's distance below the trade price, and the modified one's, as a fraction."""

    quantity: float = 0.001
    factor: float = 1.5
    every: int = 3
    away: float = 0.002


class ModifyRaced(Strategy):
    """Rests a buy below the market (above its other working buys), then modifies it once, larger and resting at the
    new price, while the fuzzer races the modification with a fill.

    A chain (the buy, its replacements) is asked for ``quantity * factor`` in all; the fuzzer
    (``races`` of :func:`tests.live.kill_harness.kill_and_restart`) holds the modification at the venue,
    fills part of the buy meanwhile and kills the daemon at a seeded point of the modification.
    """

    Params = ModifyRacedParams

    def __init__(self, instrument_ids: str | Sequence[str], *, quantity: float = 0.001, factor: float = 1.5, every: int = 3,
                 away: float = 0.002, strategy_id: str | None = None) -> None:
        super().__init__(instrument_ids, strategy_id=strategy_id or "ModifyRaced")
        self.quantity, self.factor, self.every, self.away = quantity, factor, every, away
        self.seen = 0
        self.resting: str | None = None

    def on_trade(self, trade: Trade) -> None:
        self.seen += 1
        if self.seen % self.every:
            return
        inst = self.instrument(self.instrument_id)
        order = self.kernel.orders.get(self.resting) if self.resting is not None else None
        if order is None or order.status not in (OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED):
            price = round(round(trade.price * (1 - self.away) / inst.tick_size) * inst.tick_size, 10)
            # above every buy still working (a former start's, a modified one): a trade at its price fills it first
            above = [o.price for o in self.kernel.orders.open_orders(trade.instrument_id) if o.side is OrderSide.BUY and o.price == o.price]
            if above and max(above) >= price:
                price = round(max(above) + inst.tick_size, 10)
            self.resting = self.submit_limit(trade.instrument_id, OrderSide.BUY, self.quantity, price, reason="fuzz resting")
        else:
            price = round(round(trade.price * (1 - self.away) / inst.tick_size) * inst.tick_size, 10)
            total = round(round(self.quantity * self.factor / inst.lot_size) * inst.lot_size, 10)
            self.modify(self.resting, quantity=total, price=price)
            self.resting = None  # modified once: the next step rests a new buy
