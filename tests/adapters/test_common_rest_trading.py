"""Prices and quantities on the wire: plain decimals exactly on the tick and lot grid, on every venue."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradebus.adapters.binance.trading import algo_order_params, futures_order_params
from tradebus.adapters.binance.trading import order_params as binance_params
from tradebus.adapters.bybit.trading import linear_order_params
from tradebus.adapters.bybit.trading import order_params as bybit_params
from tradebus.adapters.common.rest_trading import decimal_text
from tradebus.adapters.okx.trading import order_params as okx_params
from tradebus.adapters.okx.trading import swap_order_params
from tradebus.engine.instrument import Instrument, InstrumentKind
from tradebus.engine.messages import OrderSide, OrderType
from tradebus.execution.orders import Order

#: Grids as venues publish them: 1, 2, 5 or 25 times a power of ten (ticks of 0.25, 0.0025, 2.5 exist).
_GRIDS = st.builds(lambda m, e: Decimal(m).scaleb(e), st.sampled_from([1, 2, 5, 25]), st.integers(-12, 3))


@given(_GRIDS, st.integers(1, 10**12))
def test_decimal_text_is_the_grid_multiple_in_plain_decimals(step: Decimal, n: int) -> None:
    want = n * step
    text = decimal_text(float(want), float(step))
    assert Decimal(text) == want
    assert text == format(want.quantize(Decimal(1).scaleb(min(step.normalize().as_tuple().exponent, 0))), "f")  # type: ignore[arg-type]
    assert "e" not in text.lower()


@pytest.mark.parametrize(
    ("value", "step", "text"),
    [(0.1 + 0.2, 0.1, "0.3"), (1e-05, 1e-08, "0.00001000"), (12345678.9, 0.1, "12345678.9"), (1.75, 0.25, "1.75"), (102.5, 2.5, "102.5"), (120.0, 10.0, "120")],
)
def test_decimal_text_of_float_noise_exponents_and_multi_digit_steps(value: float, step: float, text: str) -> None:
    assert decimal_text(value, step) == text


def _order(typ: OrderType) -> Order:
    return Order("abc123", "s", "X.V", OrderSide.SELL, typ, 3.0075, 1.75, 1.5)


@pytest.mark.parametrize(
    ("mapping", "kind", "typ", "keys"),
    [
        (binance_params, InstrumentKind.SPOT, OrderType.STOP_LIMIT, ("quantity", "price", "stopPrice")),
        (futures_order_params, InstrumentKind.PERPETUAL, OrderType.LIMIT, ("quantity", "price")),
        (algo_order_params, InstrumentKind.PERPETUAL, OrderType.STOP_LIMIT, ("quantity", "price", "triggerPrice")),
        (okx_params, InstrumentKind.SPOT, OrderType.LIMIT, ("sz", "px")),
        (okx_params, InstrumentKind.SPOT, OrderType.STOP_LIMIT, ("sz", "slOrdPx", "slTriggerPx")),
        (swap_order_params, InstrumentKind.PERPETUAL, OrderType.LIMIT, ("sz", "px")),
        (bybit_params, InstrumentKind.SPOT, OrderType.STOP_LIMIT, ("qty", "price", "triggerPrice")),
        (linear_order_params, InstrumentKind.PERPETUAL, OrderType.STOP_LIMIT, ("qty", "price", "triggerPrice")),
    ],
)
def test_every_venue_sends_a_quarter_tick_price_on_its_grid(mapping, kind, typ, keys) -> None:  # type: ignore[no-untyped-def]
    inst = Instrument("V", "X", kind, "X", "USDT", tick_size=0.25, lot_size=0.0025)
    params = mapping(_order(typ), inst)
    assert [params[k] for k in keys] == ["3.0075", "1.75", "1.50"][: len(keys)]


def test_a_quantity_of_029_at_a_lot_of_1e8_goes_out_as_029() -> None:
    inst = Instrument("OKX", "BTC-USDT", InstrumentKind.SPOT, "BTC", "USDT", tick_size=0.1, lot_size=1e-8)
    order = Order("abc123", "s", inst.instrument_id, OrderSide.BUY, OrderType.MARKET, 0.29, float("nan"))
    assert okx_params(order, inst)["sz"] == "0.29000000"  # 0.29 / 1e-8 is 28999999.999999996 lots in floats
