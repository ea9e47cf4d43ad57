"""What the working orders hold, kept as they change, against a fresh sum over them.

The accounts and the risk gate keep running totals of what the working orders hold (cash), their
initial margin and their remaining quantity per side (:mod:`tradebus.account.exact`), and the highest
limit or trigger of an instrument's working orders (the risk gate's value of one not priced yet), so that a
check costs the same with 2,000 resting orders as with none. Random sequences of submits, partial
fills, amends, cancels, OCO links and unlinks, position and price moves on cash spot, perpetual
(linear, inverse, isolated) and margin spot instruments, through a real order manager, are checked
after every step against a plain loop here over the open orders, with the formulas of the module
docstrings, summed by :func:`math.fsum`: equal to the last bit, as both are the correctly rounded
sum of the same terms.
"""

from __future__ import annotations

import math
import random

import pytest

from tradebus.account import MarginAccount
from tradebus.account.exact import exact, exact_sum, rounded
from tradebus.engine.bus import MessageBus
from tradebus.engine.clock import SimulatedClock
from tradebus.engine.instrument import Instrument, InstrumentKind, MarginMode
from tradebus.engine.messages import (
    Liquidity,
    OrderCanceled,
    OrderFilled,
    OrderModified,
    OrderSide,
    OrderStatus,
    OrderType,
    SubmitOrder,
)
from tradebus.engine.portfolio import Position
from tradebus.execution.orders import Order, OrderManager

BUFFER = 1.02  # SpotCashAccount's default market_buffer
SPOT = [
    Instrument("SIM", "BTCUSDT", base="BTC", quote="USDT", tick_size=0.01, lot_size=1e-5, taker_fee=0.001),
    Instrument("SIM", "ETHUSDT", base="ETH", quote="USDT", tick_size=0.01, lot_size=1e-4, maker_fee=0.0007),
    Instrument("SIM", "BTCUSDC", base="BTC", quote="USDC", tick_size=0.1, lot_size=1e-3, taker_fee=0.00075),
    Instrument("SIM", "ETHBTC", base="ETH", quote="BTC", tick_size=1e-5, lot_size=1e-3, taker_fee=0.001),
]
MARGINED = [
    Instrument("SIM", "BTC-PERP", InstrumentKind.PERPETUAL, base="BTC", quote="USDT", tick_size=0.1, lot_size=0.001,
               leverage=10.0),
    Instrument("SIM", "ETH-PERP", InstrumentKind.PERPETUAL, base="ETH", quote="USDT", tick_size=0.01, lot_size=0.01,
               leverage=3.0, margin_mode=MarginMode.ISOLATED),
    Instrument("SIM", "BTCUSD-PERP", InstrumentKind.PERPETUAL, base="BTC", quote="USD", tick_size=0.5, lot_size=1.0,
               contract_size=100.0, inverse=True, leverage=20.0),
    Instrument("SIM", "SOLUSDT-M", base="SOL", quote="USDT", tick_size=0.001, lot_size=0.01, margin=True, leverage=3.0),
]  # fmt: skip
INSTRUMENTS = {inst.instrument_id: inst for inst in SPOT + MARGINED}
TYPES = [OrderType.LIMIT, OrderType.LIMIT, OrderType.STOP_LIMIT, OrderType.STOP_MARKET, OrderType.MARKET]


def _held(orders: list[Order], asset: str, exclude: str, oco: dict[str, tuple[str, ...]], room: dict[str, float],
          last: dict[str, float]) -> float:  # fmt: skip
    """What the working cash-only orders hold of ``asset`` (spot module docstring), but ``exclude``'s group."""
    skip = oco.get(exclude, (exclude,))
    terms: list[float] = []
    groups: dict[tuple[str, ...], float] = {}
    for order in orders:
        inst = INSTRUMENTS[order.instrument_id]
        if not inst.cash_only or order.client_order_id in skip:
            continue
        leaves = min(order.quantity - order.filled_qty, room.get(order.client_order_id, math.inf))
        hold = 0.0
        if order.side == OrderSide.BUY and inst.quote == asset and leaves > 0.0:
            if order.order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT):
                price = order.price
            elif order.order_type == OrderType.STOP_MARKET:
                price = max(order.trigger_price, last[order.instrument_id]) * BUFFER
            else:
                price = last[order.instrument_id] * BUFFER
            hold = leaves * price * (1.0 + max(inst.maker_fee, inst.taker_fee))
        elif order.side == OrderSide.SELL and inst.base == asset and leaves > 0.0:
            hold = leaves
        if order.client_order_id in oco:
            groups[oco[order.client_order_id]] = max(groups.get(oco[order.client_order_id], 0.0), hold)
        else:
            terms.append(hold)
    return math.fsum(terms + list(groups.values()))


def _orders_margin(orders: list[Order], asset: str, exclude: str, positions: dict[str, Position],
                   last: dict[str, float]) -> float:  # fmt: skip
    """Initial margin of the working orders settling in ``asset`` but ``exclude`` (margin module docstring)."""
    terms = []
    for order in orders:
        inst = INSTRUMENTS[order.instrument_id]
        settle = inst.base if inst.inverse else inst.quote
        if inst.cash_only or settle != asset or order.client_order_id == exclude or order.reduce_only:
            continue
        leaves = order.quantity - order.filled_qty
        position = positions[order.instrument_id].quantity
        buy = order.side == OrderSide.BUY
        opening = leaves if position == 0.0 or (position > 0.0) == buy else max(0.0, leaves - abs(position))
        if order.order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT):
            price = order.price
        elif order.order_type == OrderType.STOP_MARKET and order.trigger_price == order.trigger_price:
            price = order.trigger_price
        else:
            price = last[order.instrument_id]
        if opening > 0.0:
            unit = inst.contract_size / price if inst.inverse else inst.contract_size * price
            terms.append(opening * unit / inst.leverage)
    return math.fsum(terms)


def _working(orders: list[Order], instruments: tuple[str, ...], buy: bool, exclude: str,
             oco: dict[str, tuple[str, ...]], plain: bool, leave_out: set[str] = frozenset()) -> float:  # fmt: skip
    """Remaining quantity on one side, an OCO group once as its largest member, signed (``leave_out``: orders left
    out, and ``exclude`` alone)."""
    skip = oco.get(exclude, (exclude,))
    terms = []
    groups: dict[tuple[str, ...], float] = {}
    for order in orders:
        if order.instrument_id not in instruments or (order.side == OrderSide.BUY) != buy:
            continue
        if order.client_order_id in skip or order.client_order_id in leave_out or (plain and order.reduce_only):
            continue
        leaves = order.quantity - order.filled_qty
        if order.client_order_id in oco:
            groups[oco[order.client_order_id]] = max(groups.get(oco[order.client_order_id], 0.0), leaves)
        else:
            terms.append(leaves)
    total = math.fsum(terms + list(groups.values()))
    return total if buy else -total


class Book:
    """An order manager and a margin account (cash spot inside) tracking it, driven at random."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.clock = SimulatedClock(1)
        self.orders = OrderManager(MessageBus(), self.clock)
        self.positions = {inst.instrument_id: Position(inst.instrument_id, 1e-12, inst.contract_size) for inst in MARGINED}
        balances = {"USDT": 1e6, "USDC": 1e6, "USD": 1e6, "BTC": 10.0, "ETH": 100.0, "SOL": 0.0}
        self.account = MarginAccount(INSTRUMENTS, balances, self.positions)
        self.last = {iid: self._price(iid) for iid in INSTRUMENTS}
        self.account.bind(self.orders.open_orders, self.last.__getitem__, self.orders.count_open)
        self.account.track(self.orders)
        self.oco: dict[str, tuple[str, ...]] = {}
        self.room: dict[str, float] = {}
        self.count = 0
        self.trades = 0
        self.drops = self.keeps = 0

    def _price(self, iid: str) -> float:
        inst = INSTRUMENTS[iid]
        centre = {"ETHBTC": 0.05, "SOLUSDT-M": 150.0}.get(inst.symbol, 3_000.0 if "ETH" in inst.symbol else 60_000.0)
        ticks = round(centre * self.rng.uniform(0.9, 1.1) / inst.tick_size)
        return ticks * inst.tick_size

    def _quantity(self, iid: str) -> float:
        lot = INSTRUMENTS[iid].lot_size
        return self.rng.randint(1, 400) * lot

    def submit(self) -> None:
        rng = self.rng
        iid = rng.choice(list(INSTRUMENTS))
        typ = rng.choice(TYPES)
        price = self._price(iid) if typ in (OrderType.LIMIT, OrderType.STOP_LIMIT) else math.nan
        trigger = self._price(iid) if typ in (OrderType.STOP_LIMIT, OrderType.STOP_MARKET) else math.nan
        if typ == OrderType.STOP_MARKET and not INSTRUMENTS[iid].cash_only and rng.random() < 0.2:
            trigger = math.nan  # its margin is valued at the last price
        self.count += 1
        side = rng.choice([OrderSide.BUY, OrderSide.SELL])
        reduce_only = not INSTRUMENTS[iid].cash_only and rng.random() < 0.2
        cmd = SubmitOrder("s", iid, f"o{self.count}", side, self._quantity(iid), 0, 0, typ, price, trigger,
                          reduce_only=reduce_only)  # fmt: skip
        order = self.orders.create(cmd)
        self.orders.mark_submitted(order, self.clock.now_ns())
        if rng.random() < 0.7:
            self.orders.mark_accepted(order, f"v{self.count}", self.clock.now_ns())

    def fill(self, order: Order) -> None:
        self.trades += 1
        leaves = order.quantity - order.filled_qty
        lot = INSTRUMENTS[order.instrument_id].lot_size
        qty = leaves if self.rng.random() < 0.4 else max(1, round(leaves / lot * self.rng.random())) * lot
        fill = OrderFilled("s", order.instrument_id, order.client_order_id, "v", f"t{self.trades}", order.side,
                           min(qty, leaves), self._price(order.instrument_id), 0.0, Liquidity.MAKER, 1, 1)  # fmt: skip
        self.orders.apply(fill)

    def amend(self, order: Order) -> None:
        iid = order.instrument_id
        quantity = order.filled_qty + self._quantity(iid)
        price = self._price(iid) if order.price == order.price else math.nan
        trigger = self._price(iid) if order.trigger_price == order.trigger_price else math.nan
        self.orders.apply(OrderModified("s", iid, order.client_order_id, quantity, price, trigger, 1, 1))

    def step(self) -> None:
        rng = self.rng
        working = self.orders.open_orders()
        action = rng.random()
        if action < 0.4 or not working:
            self.submit()
        elif action < 0.55:
            self.fill(rng.choice(working))
        elif action < 0.65:
            accepted = [o for o in working if o.status != OrderStatus.SUBMITTED]
            if accepted:
                self.amend(rng.choice(accepted))
        elif action < 0.75:
            order = rng.choice(working)
            self.orders.apply(OrderCanceled("s", order.instrument_id, order.client_order_id, "", 1, 1))
        elif action < 0.82 and len(working) >= 2:
            group = tuple(o.client_order_id for o in rng.sample(working, min(len(working), rng.choice([2, 2, 3]))))
            room = {group[0]: rng.choice([0.0, 1e-3, 0.05])} if rng.random() < 0.3 else None
            self.account.link_oco(group, room)
            self.oco.update(dict.fromkeys(group, group))
            self.room.update(room or {})
        elif action < 0.87 and self.oco:
            coid = rng.choice(sorted(self.oco))
            self.account.unlink_oco(coid)
            del self.oco[coid]
            self.room.pop(coid, None)
        elif action < 0.885:
            # many close at once: below UNTRACK_AT the totals are dropped, from TRACK_FROM kept again
            for order in rng.sample(working, max(0, len(working) - rng.choice([0, 2, 4, rng.randint(5, 20)]))):
                self.orders.apply(OrderCanceled("s", order.instrument_id, order.client_order_id, "", 1, 1))
        elif action < 0.94:
            iid = rng.choice([inst.instrument_id for inst in MARGINED])
            lot = INSTRUMENTS[iid].lot_size
            self.positions[iid].quantity = rng.choice([0.0, 1.0, -1.0]) * rng.randint(1, 300) * lot
        else:
            iid = rng.choice(list(INSTRUMENTS))
            self.last[iid] = self._price(iid)

    def check(self) -> None:
        working = self.orders.open_orders()
        excludes = ["", *(o.client_order_id for o in self.rng.sample(working, min(2, len(working))))]
        oco = dict(self.oco)
        spot = self.account._spot
        leaves = self.orders.leaves
        for exclude in excludes:
            for asset in ("USDT", "USDC", "BTC", "ETH"):
                expected = _held(working, asset, exclude, oco, self.room, self.last)
                assert spot.held(asset, exclude) == expected, (asset, exclude)
            for asset in ("USDT", "USD", "BTC"):
                expected = _orders_margin(working, asset, exclude, self.positions, self.last)
                assert self.account._orders_margin(asset, exclude) == expected, (asset, exclude)
            # the risk gate's gross exposure takes the instruments in the order their first working order came
            skip = oco.get(exclude, (exclude,))
            firsts = [(leaves.first_working(iid, skip), iid) for iid in leaves.instruments()]
            expected_order = list(dict.fromkeys(o.instrument_id for o in working if o.client_order_id not in skip))
            assert [iid for seq, iid in sorted(firsts) if seq] == expected_order
            # and an OCO group once per side, on the row of its first largest member, in the order groups came
            expected_groups: dict[tuple[tuple[str, ...], bool], tuple[str, float]] = {}
            for order in working:
                group = oco.get(order.client_order_id)
                key = (group, order.side == OrderSide.BUY)
                left = order.quantity - order.filled_qty
                if group is not None and order.client_order_id not in skip and left > expected_groups.get(key, ("", 0.0))[1]:
                    expected_groups[key] = (order.instrument_id, left)
            groups: dict[tuple[tuple[str, ...], bool], tuple[float, int, str, int]] = {}
            for iid in expected_order:
                for buy in (True, False):
                    expected = _working(working, (iid,), buy, exclude, oco, False, leave_out=set(oco))
                    assert leaves.total((iid,), oco, buy, exclude, groups=groups) == expected
            # an instrument not priced yet is valued at the highest limit (else trigger) of its working orders
            for iid in INSTRUMENTS:
                quotes = [
                    o.price if not math.isnan(o.price) else o.trigger_price
                    for o in working if o.instrument_id == iid and o.client_order_id not in skip
                ]  # fmt: skip
                expected = max((q for q in quotes if not math.isnan(q)), default=-math.inf)
                assert leaves.highest_quote(iid, skip) == expected, (iid, skip)
            ordered = sorted(groups.items(), key=lambda item: item[1][3])
            assert [(key, (iid, most)) for key, (most, _, iid, _) in ordered] == list(expected_groups.items())
            for instruments in [(inst.instrument_id,) for inst in MARGINED + SPOT] + [("BTCUSDT", "BTCUSDC")]:
                for buy in (True, False):
                    for plain in (False, True):
                        expected = _working(working, instruments, buy, exclude, oco, plain)
                        got = leaves.total(instruments, self.account.oco_groups(), buy, exclude, plain=plain)
                        assert got == expected, (instruments, buy, exclude, plain)


@pytest.mark.parametrize("seed", range(4))
def test_the_totals_kept_as_orders_change_equal_a_fresh_sum_over_the_working_orders(seed: int) -> None:
    rng = random.Random(f"working-totals-{seed}")
    book = Book(rng)
    most = 0
    for _ in range(1_000):
        live = book.orders.leaves._live
        book.step()
        book.drops += live and not book.orders.leaves._live
        book.keeps += book.orders.leaves._live and not live
        most = max(most, book.orders.open_count)
        book.check()
    assert most > 40  # many orders rest at once: the totals are sums of many terms
    assert book.drops > 3 and book.keeps > 3  # and the totals were dropped (few rest) and kept again
    assert book.trades > 100 and book.oco  # fills, amends and groups happened


def test_exact_sum_of_one_or_two_floats_is_the_exact_integer_paths_value() -> None:
    """Its shortcut for one or two terms (one float addition, correctly rounded) against the exact integer path."""
    rng = random.Random(7)
    for _ in range(20_000):
        a = rng.uniform(-1e6, 1e6) * 10.0 ** rng.randint(-12, 6)
        b = rng.uniform(-1e6, 1e6) * 10.0 ** rng.randint(-12, 6)
        for terms in ((), (a,), (a, b), (a, -a), (-0.0,), (0.1, 0.2)):
            got, want = exact_sum(0, terms), rounded(sum(exact(t) for t in terms))
            assert got == want and math.copysign(1.0, got) == math.copysign(1.0, want), terms


def test_the_highest_quote_stays_right_and_its_heap_bounded_as_a_grid_replaces_its_orders() -> None:
    """A grid's orders canceled and sent again at other prices, amended, filled: past entries are dropped."""
    rng = random.Random(11)
    clock = SimulatedClock(1)
    orders = OrderManager(MessageBus(), clock)
    leaves = orders.leaves
    iid = "BTCUSDT.SIM"
    count = 0

    def submit(price: float) -> None:
        nonlocal count
        count += 1
        order = orders.create(SubmitOrder("s", iid, f"g{count}", OrderSide.BUY, 0.01, 0, 0, OrderType.LIMIT, price))
        orders.mark_submitted(order, 1)
        orders.mark_accepted(order, f"v{count}", 1)

    for _ in range(40):
        submit(rng.randint(1, 1000) * 0.5)
    for _ in range(3_000):
        working = orders.open_orders()
        order = rng.choice(working)
        action = rng.random()
        if action < 0.5:
            orders.apply(OrderCanceled("s", iid, order.client_order_id, "", 1, 1))
            submit(rng.randint(1, 1000) * 0.5)
        elif action < 0.8:
            orders.apply(OrderModified("s", iid, order.client_order_id, 0.01, rng.randint(1, 1000) * 0.5, math.nan, 1, 1))
        else:
            orders.apply(OrderFilled("s", iid, order.client_order_id, "v", f"t{count}-{action}", order.side, 0.01,
                                     order.price, 0.0, Liquidity.MAKER, 1, 1))  # fmt: skip
            submit(rng.randint(1, 1000) * 0.5)
        working = orders.open_orders()
        assert len(working) == 40 and leaves._live
        skip = {rng.choice(working).client_order_id, max(working, key=lambda o: o.price).client_order_id}
        for left_out in (set(), skip):
            expected = max(o.price for o in working if o.client_order_id not in left_out)
            assert leaves.highest_quote(iid, left_out) == expected
        assert len(leaves._quotes[iid]) <= 2 * 40 + 33
