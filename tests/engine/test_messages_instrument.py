"""Messages are immutable and carry int64 ns timestamps; instruments round and validate orders."""

from __future__ import annotations

import math
import random
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradebus import errors
from tradebus.adapters.binance.instruments import load_instruments as load_binance
from tradebus.adapters.bybit.instruments import load_instruments as load_bybit
from tradebus.adapters.okx.instruments import load_instruments as load_okx
from tradebus.engine import messages
from tradebus.engine.accelerated import _EXACT_GRID, AcceleratedUnsupported, _grid_of
from tradebus.engine.instrument import EXACT_GRID, Instrument, InstrumentKind, grid_of
from tradebus.engine.messages import Bar, OrderSide, SubmitOrder
from tradebus.errors import OrderError

FIXTURES = Path(__file__).parent.parent / "fixtures"
OKX = FIXTURES / "okx"

def make_instrument(**overrides: object) -> Instrument:
    fields: dict[str, object] = dict(
        venue="BINANCE", symbol="BTCUSDT", kind=InstrumentKind.SPOT, base="BTC", quote="USDT",
        tick_size=0.01, lot_size=0.001, min_notional=5.0, maker_fee=0.0002, taker_fee=0.0004,
    )
    fields.update(overrides)
    return Instrument(**fields)  # type: ignore[arg-type]


def test_message_fields_cannot_be_reassigned() -> None:
    bar = Bar("BTCUSDT.BINANCE", 2, 3, 1.0, 2.0, 0.5, 1.5, 10.0)
    with pytest.raises(AttributeError):
        bar.close = 2.0  # type: ignore[misc]


def test_every_message_carries_ts_event_and_ts_init() -> None:
    structs = [
        obj for name in messages.__all__
        if isinstance(obj := getattr(messages, name), type) and issubclass(obj, msgspec.Struct)
    ]
    assert len(structs) == 39  # + OpenInterest (catalog open_interest datasets), ContingentLinked (journal), BookDepth,
    # InterestCharged (borrowing interest), OrderModifyRejected, OrderReplaced, TradesMissed, OrderFillsReported,
    # AlgoStarted and AlgoEnded (journal), OrderCancelRejected, OrderTermsReported
    for struct in structs:
        assert {"ts_event", "ts_init"} <= set(struct.__struct_fields__), struct.__name__


def test_submit_order_defaults_are_a_gtc_market_order_without_prices() -> None:
    cmd = SubmitOrder("s", "BTCUSDT.BINANCE", "s-1", OrderSide.BUY, 1.0, 10, 10)
    assert cmd.order_type == messages.OrderType.MARKET
    assert cmd.time_in_force == messages.TimeInForce.GTC
    assert math.isnan(cmd.price) and math.isnan(cmd.trigger_price)
    assert int(OrderSide.SELL) == -1


def test_instrument_id_is_symbol_dot_venue() -> None:
    assert make_instrument().instrument_id == "BTCUSDT.BINANCE"


@pytest.mark.parametrize("field", ["tick_size", "lot_size"])
@pytest.mark.parametrize("value", [0.0, -1.0, math.nan, math.inf])
def test_instrument_rejects_non_positive_increments(field: str, value: float) -> None:
    with pytest.raises(OrderError, match=field):
        make_instrument(**{field: value})


@pytest.mark.parametrize("margin", [False, True])
def test_a_spot_instrument_with_a_contract_size_is_refused(margin: bool) -> None:
    """The spot account moved ``qty`` of base against ``qty * px`` of quote while the portfolio
    applied the contract size: a 0.25 BTC long "liquidated" against 50,000 USD, buys denied with
    100,000 USD of cash. No venue lists spot in contracts."""
    with pytest.raises(OrderError, match=r"instrument BTCUSDT.BINANCE: contract_size 0.01 applies to perpetuals"):
        make_instrument(contract_size=0.01, margin=margin)


def test_a_perpetual_keeps_its_contract_size() -> None:
    inst = make_instrument(kind=InstrumentKind.PERPETUAL, contract_size=0.01)
    assert inst.notional(100.0, 50_000.0) == pytest.approx(50_000.0)


def test_round_price_snaps_to_tick_without_float_noise() -> None:
    inst = make_instrument(tick_size=0.1)
    assert inst.round_price(100.26) == 100.3
    assert inst.round_price(0.30000000000000004) == 0.3


def test_round_price_up_and_down_go_to_the_grid_against_the_trader_without_float_noise() -> None:
    inst = make_instrument(tick_size=0.01)
    assert repr(inst.round_price_up(600.171)) == "600.18"  # 60018 * 0.01 == 600.1800000000001
    assert repr(inst.round_price_down(599.939)) == "599.93"  # 59993 * 0.01 == 599.9300000000001
    assert inst.round_price_up(600.18) == 600.18 and inst.round_price_down(600.18) == 600.18
    assert inst.round_price_up(600.1800000000001) == 600.18  # already on the grid up to noise


@given(st.sampled_from([1e-8, 1e-6, 1e-5, 0.001, 0.01, 0.1, 0.2, 0.25, 5.0]), st.integers(1, 10**12))
def test_round_price_up_and_down_keep_a_price_on_the_tick_grid_of_any_count_of_ticks(tick: float, ticks: int) -> None:
    inst = make_instrument(tick_size=tick)
    price = float(ticks * Decimal(repr(tick)))  # 750.66163 at a tick of 1e-5 is 75066162.99999999 ticks in floats
    assert inst.round_price_up(price) == price and inst.round_price_down(price) == price
    off = max(price * 1e-12, tick * 1e-8)
    assert inst.round_price_down(price - off) < price and inst.round_price_up(price + off) > price


def test_round_price_up_and_down_forgive_float_noise_at_ten_trillion_ticks_but_not_a_tenth_of_a_tick() -> None:
    """At 1e13 ticks the slack of 1e-14 of the count was 0.1 of a tick: 100,000,000,000.001 at a tick of 0.01
    (0.1 of a tick above 100,000,000,000.00) was rounded *up* to 100,000,000,000.00, below the price, and
    100,000,000,000.009 *down* to 100,000,000,000.01, above it. Float noise there is about 0.002 of a tick (one
    unit in the last place of 1e11 is 1.5e-5): the slack is at most 2 ** -51 of the count, 0.0044 of a tick."""
    inst = make_instrument(tick_size=0.01)
    assert inst.round_price_up(100_000_000_000.001) == 100_000_000_000.01
    assert inst.round_price_down(100_000_000_000.009) == 100_000_000_000.0
    assert inst.round_price_up(100_000_000_000.01) == 100_000_000_000.01 == inst.round_price_down(100_000_000_000.01)
    noisy = math.nextafter(100_000_000_000.01, math.inf)  # on the grid up to float noise: stays
    assert inst.round_price_up(noisy) == 100_000_000_000.01 == inst.round_price_down(math.nextafter(100_000_000_000.01, 0.0))
    fine = make_instrument(tick_size=1e-8)  # 100,000 at 1e-8 is 1e13 ticks: 0.1 of a tick above is 100,000.000000001
    assert fine.round_price_up(100_000.000000001) == 100_000.00000001
    assert fine.round_price_down(100_000.000000009) == 100_000.0


def test_round_quantity_and_round_price_count_on_the_decimal_grid_of_an_increment_a_few_ulps_off() -> None:
    """A lot of 1.000000000000001e-08 (6 units in the last place above 1e-8, loaded as the decimal 1e-8): the
    quantity 703,687.44177663, on that grid (2 ** 46 - 1 lots), was rounded to 703,687.44177662, one lot down, as
    quantity / lot drifts 0.08 of a lot below the count there; validate_order counts on the decimal and took both.
    round_price alike: 703,687,441,776.6255 on a tick of 0.010000000000000014 is 62.55 ticks past ...776.00, nearest
    ...776.63 (0.45 of a tick away, 0.55 from ...776.62), but price / tick counted 62.47."""
    fine = make_instrument(lot_size=1.000000000000001e-08, min_notional=0.0)
    assert fine.round_quantity(703_687.44177663) == 703_687.44177663
    assert fine.validate_order(703_687.44177663, math.nan) is None
    assert fine.round_quantity(703_687.441776639) == 703_687.44177663  # 0.9 of a lot above: down to it
    whole = make_instrument(lot_size=1.0000000000000013, min_notional=0.0)
    assert whole.round_quantity(70_368_744_177_663.0) == 70_368_744_177_663.0
    tick = make_instrument(tick_size=0.010000000000000014)
    assert tick.round_price(703_687_441_776.6255) == 703_687_441_776.63
    assert tick.round_price(703_687_441_776.6245) == 703_687_441_776.62
    assert tick.round_price_up(703_687_441_776.6255) == 703_687_441_776.63  # counted on the same grid


@pytest.mark.parametrize(
    ("step", "line", "under"),
    [(1e-6, 10_000_000.0, 9_999_999.999999), (1e-15, 0.01, 0.009999999999999)],
)
def test_a_hundredth_of_a_step_off_ten_trillion_steps_is_no_float_noise(step: float, line: float, under: float) -> None:
    """1e13 steps below a line, a hundredth of a step under it (9,999,999.99999999 on a 1e-6 tick, 0.00999999999999999
    on 1e-15) and over it: ``round_price_down`` and ``round_quantity`` gave the line, above the value, and
    ``round_price_up`` of the value over it the line, below it (the slack, 2 ** -50 of the count, was 0.0089 of
    a step, and the sum's rounding took it past the line). The float noise of the count there is about 0.002
    of a step (3 * 2 ** -53 of it: the value's nearest float, ``* scale``, ``/ m``); the slack is 2 ** -51
    of it, 0.0044 of a step. On the grid up to one unit in the last place, a value stays."""
    inst = make_instrument(tick_size=step, lot_size=step, min_notional=0.0)
    below, above = line - step / 100, line + step / 100
    assert (below, above) == ((9_999_999.99999999, 10_000_000.00000001) if step == 1e-6 else (0.00999999999999999, 0.01000000000000001))
    assert inst.round_price_down(below) == under == inst.round_quantity(below)
    assert inst.round_price_up(below) == line == inst.round_price_down(above)
    assert inst.round_price_up(above) == round(line + step, 15)
    for noisy in (math.nextafter(line, 0.0), line, math.nextafter(line, math.inf)):
        assert inst.round_price_up(noisy) == line == inst.round_price_down(noisy)
        assert inst.round_quantity(noisy) == line and inst.validate_order(noisy, noisy) is None
    assert inst.validate_order(below, math.nan) == f"quantity {below} is not a multiple of the lot size {step}"


def test_round_price_down_of_75066163_at_a_tick_of_1e5_is_75066163() -> None:
    inst = make_instrument(tick_size=1e-5)
    assert inst.round_price_down(750.66163) == 750.66163 and inst.round_price_up(750.66163) == 750.66163
    assert make_instrument(tick_size=1e-8).round_price_up(5027.08526751) == 5027.08526751  # not 5027.08526752


@given(st.sampled_from([1e-8, 1e-6, 1e-5, 0.001, 0.01, 0.1, 0.2, 0.25, 5.0]), st.integers(1, 10**12))
def test_validate_order_takes_a_quantity_and_price_on_their_grids_of_any_count(step: float, count: int) -> None:
    """Any count the float grid holds (below 2 ** 46 over the grid's integer: ``EXACT_GRID``)."""
    count = min(count, math.ceil(EXACT_GRID / grid_of(step)[0]) - 1)
    on_grid = float(count * Decimal(repr(step)))  # 128.01 / 1e-8 is 12800999999.999998 lots in floats
    inst = make_instrument(tick_size=step, lot_size=step, min_notional=0.0)
    assert inst.validate_order(on_grid, on_grid) is None
    assert inst.validate_order(on_grid + step / 2, math.nan) is not None or on_grid + step / 2 == on_grid


def test_validate_order_takes_12801_btc_at_a_lot_of_1e8_and_a_price_of_102408_at_a_tick_of_1e8() -> None:
    inst = make_instrument(tick_size=1e-8, lot_size=1e-8, min_notional=0.0)
    assert inst.validate_order(128.01, math.nan) is None and inst.validate_order(1.0, 1024.08) is None
    assert inst.validate_order(128.010000005, math.nan) == "quantity 128.010000005 is not a multiple of the lot size 1e-08"


def test_round_quantity_rounds_down_to_whole_lots() -> None:
    inst = make_instrument(lot_size=0.001)
    assert inst.round_quantity(1.23456) == 1.234
    assert inst.round_quantity(0.0009) == 0.0


@given(st.sampled_from([1e-8, 1e-6, 1e-5, 0.001, 0.01, 0.1, 0.2, 0.25, 5.0]), st.integers(1, 10**12))
def test_round_quantity_keeps_a_quantity_on_the_lot_grid_of_any_count_of_lots(lot: float, lots: int) -> None:
    quantity = float(lots * Decimal(repr(lot)))  # 0.29 at a lot of 1e-8 is 28999999.999999996 lots in floats
    assert make_instrument(lot_size=lot).round_quantity(quantity) == quantity
    assert make_instrument(lot_size=lot).round_quantity(quantity - max(quantity * 1e-12, lot * 1e-8)) < quantity  # never up


def test_round_quantity_of_millions_of_coins_in_lots_of_1e8_never_rounds_up_past_the_quantity() -> None:
    """2,000,000.00000001 (200,000,000,000,001 lots, on the grid) came back as 2,000,000.00000003 and
    100,000.0000000095 (0.95 of a lot past 1e13 lots) as 100,000.00000001: ``LOTS_RTOL`` of the count
    forgave 2 lots and 0.1 of a lot; a sell of all that is held was sold more than held."""
    inst = make_instrument(lot_size=1e-8)
    assert inst.round_quantity(2_000_000.00000001) == 2_000_000.00000001
    assert inst.round_quantity(100_000.0000000095) == 100_000.0
    assert make_instrument(lot_size=0.001).round_quantity(123_456_789_012.3) == 123_456_789_012.3
    assert inst.round_quantity(6.3 - 6.17256286) == 0.12743714  # the noise of a difference is forgiven still


@given(
    st.sampled_from([1e-8, 1e-6, 0.001, 0.1, 0.25, 1.0, 5.0]),
    st.floats(0.0, 1.0),
    st.floats(0.0, 40.0),
)
def test_round_quantity_is_the_whole_lots_below_the_quantity_or_above_it_by_float_noise_only(
    lot: float, scale: float, short: float
) -> None:
    """Counts up to where ``round(n * lot, digits)`` is the exact decimal grid (``_EXACT_GRID``), short of
    the next whole lot by ``2 ** -short`` of a lot (from a whole lot to float noise)."""
    lots = int((_EXACT_GRID / _grid_of(lot, "lot_size")[1]) ** scale)
    quantity = float((lots + 1 - Decimal(2.0**-short)) * Decimal(repr(lot)))
    rounded = make_instrument(lot_size=lot).round_quantity(quantity)
    below = math.floor(Decimal(quantity) / Decimal(repr(lot)))  # exact decimal arithmetic
    assert rounded == float(below * Decimal(repr(lot))) or (
        rounded == float((below + 1) * Decimal(repr(lot))) and rounded - quantity <= max(8 * math.ulp(quantity), 1e-3 * lot)
    )


def test_round_quantity_of_029_at_a_lot_of_1e8_is_029() -> None:
    inst = make_instrument(lot_size=1e-8)
    assert [inst.round_quantity(q) for q in (0.29, 0.57, 0.58, 2.01)] == [0.29, 0.57, 0.58, 2.01]


@pytest.mark.parametrize(
    ("quantity", "price", "reason"),
    [
        (0.0, 100.0, "positive"),
        (0.0005, 20_000.0, "below the minimum"),
        (0.0015, 20_000.0, "lot size"),
        (0.01, 100.005, "tick size"),
        (0.01, 100.0, "notional"),
        (0.01, -5.0, "price"),
        (math.nan, 100.0, "positive"),
    ],
)
def test_validate_order_names_the_broken_rule(quantity: float, price: float, reason: str) -> None:
    message = make_instrument().validate_order(quantity, price)
    assert message is not None and reason in message


def test_validate_order_accepts_a_valid_order_and_market_orders_without_price() -> None:
    inst = make_instrument()
    assert inst.validate_order(0.01, 20_000.0) is None
    assert inst.validate_order(0.001, math.nan) is None


def test_error_hierarchy_is_pinned() -> None:
    assert sorted(n for n in errors.__all__ if isinstance(getattr(errors, n), type)) == sorted(
        name for name in vars(errors) if isinstance(getattr(errors, name), type)
        and issubclass(getattr(errors, name), Exception) and getattr(errors, name).__module__ == errors.__name__
    )
    assert issubclass(errors.BookError, errors.TradebusError)
    assert issubclass(errors.InvalidTransition, errors.OrderError)
    assert issubclass(errors.ConfigError, errors.TradebusError)


def test_validate_order_forgives_float_noise_of_a_count_but_never_a_tenth_of_a_lot() -> None:
    """8,000,000,000,000.06 in lots of 1 is 0.06 of a lot off the grid (8e12 lots, below 2 ** 46 on the
    grid's integer 1): ``LOTS_RTOL`` of the count (0.08 of a lot) accepted it. The slack is now at most
    1e-3 of a lot or ``ROUNDING_RTOL`` of the count (3.6e-3 of a lot here); the grid's own noise is
    forgiven still."""
    inst = make_instrument(lot_size=1.0, min_notional=0.0)
    assert inst.validate_order(8_000_000_000_000.06, math.nan) == (
        "quantity 8000000000000.06 is not a multiple of the lot size 1.0"
    )
    assert inst.validate_order(8_000_000_000_001.0, math.nan) is None
    assert inst.validate_order(8e12 * (1.0 + 2.0**-52), math.nan) is None  # one unit in the last place
    assert make_instrument(tick_size=1.0).validate_order(1.0, 8_000_000_000_000.06) == (
        "price 8000000000000.06 is not a multiple of the tick size 1.0"
    )


def test_validate_order_refuses_a_count_of_lots_or_ticks_the_float_grid_does_not_hold() -> None:
    """``round(n * lot, digits)`` is the decimal grid only below 2 ** 51 over the grid's integer, and the
    slack for a count off the grid (``ROUNDING_RTOL`` of it) passes 1/32 of a lot at 2 ** 46 lots: the
    instrument refuses 2 ** 46 over the grid's integer (m = 1 for a lot of 1e-8: 70,368,744,177,664 lots,
    703,687.44177664 coins); the accelerated tier stops there, the event tier accepted any count."""
    inst = make_instrument(lot_size=1e-8, tick_size=1e-8, min_notional=0.0)
    assert inst.validate_order(703_687.44, math.nan) is None
    assert inst.validate_order(703_688.0, math.nan) == (
        "quantity 703688.0 is 70368800000000 lots of 1e-08, more than floats hold exactly on that grid "
        "(below 70368744177664 lots: 2 ** 46 over the grid's integer 1)"
    )
    assert inst.validate_order(1.0, 703_687.44) is None
    assert inst.validate_order(1.0, 703_688.12111401) == (
        "price 703688.12111401 is 70368812111401 ticks of 1e-08, more than floats hold exactly on that grid "
        "(below 70368744177664 ticks: 2 ** 46 over the grid's integer 1)"
    )
    assert make_instrument(lot_size=1.0, min_notional=0.0).validate_order(2.0**46, math.nan) is not None
    assert make_instrument(lot_size=0.25, min_notional=0.0).validate_order(2.0**46 / 100, math.nan) is not None


def test_a_cheap_coin_in_lots_of_1e6_takes_an_order_of_millions_of_coins() -> None:
    """OKX's SWFTC-USDT and DOGE-USDT (2022-05-13) trade in lots of 1e-6: 2,000,000 SWFTC at 0.001 (2,000 USDT)
    and 2,000,000.5 DOGE at 0.081234 were refused as "more than floats hold exactly on that grid (below
    1125899906843 lots: 2 ** 50 over the grid's integer 1000)": the grid's integer was counted in three
    decimals more than the lot's own (``_digits``), so the bound was a thousand times too strict."""
    insts = load_okx(OKX / "public_instruments_SPOT_2022-05-13_fine_lots.json")
    swftc, doge = insts["SWFTC-USDT.OKX"], insts["DOGE-USDT.OKX"]
    assert (swftc.lot_size, doge.lot_size) == (1e-6, 1e-6)
    assert swftc.validate_order(2_000_000.0, 0.001) is None
    assert doge.validate_order(2_000_000.5, 0.081234) is None
    assert doge.round_quantity(2_000_000.5000019) == 2_000_000.500001
    assert doge.validate_order(2_000_000.5000004, math.nan) == (
        "quantity 2000000.5000004 is not a multiple of the lot size 1e-06"
    )


def _real_instruments() -> list[Instrument]:
    """Every instrument of the saved OKX, Bybit and Binance answers in tests/fixtures (Binance spot: each 7th)."""
    found = [
        *load_okx(OKX / "public_instruments_SPOT_2022-05-13_cut.json").values(),
        *load_okx(OKX / "public_instruments_SPOT_2022-05-13_fine_lots.json").values(),
        *load_okx(OKX / "public_instruments_SWAP_2022-05-13_cut.json").values(),
        *load_bybit(FIXTURES / "bybit" / "market_instruments-info_spot_2026-08-09_cut.json").values(),
        *load_bybit(FIXTURES / "bybit" / "market_instruments-info_linear_2026-08-09_cut.json").values(),
    ]
    binance = load_binance(FIXTURES / "binance" / "exchangeInfo_spot_2021-10-12.json.gz", "spot")
    return found + [binance[k] for k in sorted(binance)[::7]]


REAL = _real_instruments()


def test_every_saved_instrument_takes_what_it_rounds_to_anywhere_on_its_grid() -> None:
    """Every instrument of the saved OKX, Bybit and Binance (spot, USD-M) answers loads and takes what
    ``round_price``, ``round_price_up``/``down`` and ``round_quantity`` give, at 40 seeded random values each
    from one step to the largest count its grid holds (``EXACT_GRID / m``), with the slack of float noise only."""
    rng = random.Random(20261206)
    saved = [
        *REAL,
        *load_okx(OKX / "public_instruments_SWAP_1INCH-USDT_2022-05-13_cut.json").values(),
        *load_binance(FIXTURES / "binance" / "exchangeInfo_spot_2021-10-12.json.gz", "spot").values(),
        *load_binance(FIXTURES / "binance" / "exchangeInfo_usdm_2021-07-22.json.gz", "usdm").values(),
    ]
    assert len(saved) > 1000
    for inst in saved:
        inst = msgspec.structs.replace(inst, min_notional=0.0, min_quantity=0.0)
        checks = (
            (inst.tick_size, (inst.round_price, inst.round_price_up, inst.round_price_down), lambda price: (inst.lot_size, price)),
            (inst.lot_size, (inst.round_quantity,), lambda quantity: (quantity, math.nan)),
        )
        for step, rounders, order in checks:
            most = EXACT_GRID / grid_of(step)[0] - 1.0
            for _ in range(40):
                value = step * most ** rng.random() * (1.0 + rng.uniform(-1e-3, 1e-3))
                for rounder in rounders:
                    rounded = rounder(value)
                    if 0.0 < rounded < most * step:
                        assert inst.validate_order(*order(rounded)) is None, (inst.instrument_id, value, rounded)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.sampled_from(REAL), st.floats(0.0, 4.5), st.floats(-1e-9, 1.0))
def test_round_quantity_and_round_price_give_what_validate_order_takes(inst: Instrument, decades: float, frac: float) -> None:
    """The two rules agree: a quantity ``round_quantity`` gives at or above the minimum, up to 10 ** 4.5
    minimum orders of a real instrument (100,000 USDT and more for most), and a price ``round_price``
    gives, pass ``validate_order``."""
    minimum = max(inst.min_quantity, inst.lot_size)
    quantity = inst.round_quantity(minimum * 10.0**decades * (1.0 + frac))
    if quantity < minimum:  # just below the minimum, rounded down
        return
    assert inst.validate_order(quantity, math.nan) is None
    price = inst.round_price(inst.tick_size * 10.0**decades * (1.0 + frac) * 1000.0)
    reason = inst.validate_order(quantity, price)
    assert reason is None or reason.startswith("notional"), reason


@pytest.mark.parametrize(
    ("tick", "price", "expected", "m", "scale"),
    [
        # 1000 / 0.10000004 = 9,999.996 ticks -> 10,000 x 0.10000004 = 1,000.0004 (4e-7 off 0.1 was taken as 0.1: 1000.0)
        (0.10000004, 1000.0, 1000.0004, 10_000_004.0, 1e8),
        # 0.3 / 0.1000004 = 2.99998 -> 3 x 0.1000004 = 0.3000012 (rounded to 4 digits as 0.1 was: 0.3)
        (0.1000004, 0.3, 0.3000012, 1_000_004.0, 1e7),
    ],
)
def test_an_increment_near_a_short_decimal_is_the_decimal_it_is_in_rounding_validation_and_the_loop(
    tick: float, price: float, expected: float, m: float, scale: float
) -> None:
    """An increment within 1e-6 of a short decimal was rounded on that decimal's grid: every price and
    quantity the instrument rounded was refused by its own ``validate_order`` ("price 0.3 is not a multiple
    of the tick size 0.10000004") and the accelerated loop rounded on 0.1 too."""
    inst = Instrument("X", "Y", tick_size=tick, lot_size=tick)
    assert inst.round_price(price) == expected
    assert inst.round_quantity(expected) == expected and inst.round_quantity(price) <= price
    assert inst.validate_order(inst.round_quantity(7 * price), inst.round_price(7 * price)) is None
    assert grid_of(tick) == (m, scale) and _grid_of(tick, "tick_size") == (tick, m, scale)


def test_an_increment_that_is_no_decimal_has_no_exact_grid() -> None:
    """1/3 and 0.1000000001 (ten digits) are no decimal of at most nine digits: the loop refuses them."""
    for tick in (1 / 3, 0.1000000001):
        with pytest.raises(AcceleratedUnsupported, match="no exact decimal grid"):
            _grid_of(tick, "tick_size")


@pytest.mark.parametrize("field", ["tick_size", "lot_size"])
@pytest.mark.parametrize("value", [1 / 3, 0.1000000001, 10.87890625, 1e9])
def test_an_increment_that_is_no_decimal_is_refused_at_load_naming_the_instrument_and_field(field: str, value: float) -> None:
    """A tick of 1/3 loaded, and ``validate_order`` refused the price its own ``round_price`` gave (0.3333:
    "not a multiple of the tick size 0.3333333333333333"); 1e9 has no count below ``EXACT_GRID`` at all."""
    with pytest.raises(OrderError, match=rf"^instrument BTCUSDT.BINANCE: {field} {value!r} is no decimal of at most 9 "):
        make_instrument(**{field: value})


def _ulps_off(value: float, ulps: int) -> float:
    for _ in range(abs(ulps)):
        value = math.nextafter(value, math.inf if ulps > 0 else 0.0)
    return value


_INCREMENTS = st.one_of(
    st.floats(1e-12, 1e4),
    # decimals of up to nine digits, a few units in the last place off as computed ones are (0.1 ** 11 is 6 off 1e-11)
    st.builds(lambda m, e, ulps: _ulps_off(m * 10.0**e, ulps), st.integers(1, 999_999_999), st.integers(-20, 4), st.integers(-8, 8)),
)


@settings(max_examples=1500, deadline=None, derandomize=True)
@given(_INCREMENTS, st.floats(0.0, 1.0), st.floats(-0.49, 0.49))
def test_every_increment_that_loads_takes_the_prices_and_quantities_it_rounds(increment: float, decades: float, frac: float) -> None:
    """For any increment the instrument takes, ``validate_order`` takes what ``round_price``, ``round_price_up/down``
    and ``round_quantity`` give, up to the largest count the grid holds (``EXACT_GRID / m``). 1.0000000000000009 (4
    units in the last place off 1) was taken as the decimal 1, but validated as itself: at 2 ** 46 - 1 ticks the
    price 70368744177663.0 it rounded to was "not a multiple of the tick size"."""
    try:
        inst = Instrument("X", "Y", tick_size=increment, lot_size=increment)
    except OrderError:
        return
    # a step short of the last count the grid holds: 2 ** 46 - 1 + 0.25 ticks of 1.0 is rounded up to 2 ** 46, beyond it
    count = max(1, int((EXACT_GRID / grid_of(increment)[0]) ** decades) - 2)
    value = (count + frac) * increment
    for price in (inst.round_price(value), inst.round_price_up(value), inst.round_price_down(value)):
        assert price <= 0.0 or inst.validate_order(increment, price) is None, (price, inst.validate_order(increment, price))
    quantity = inst.round_quantity(value)
    assert quantity <= 0.0 or inst.validate_order(quantity, math.nan) is None, (quantity, inst.validate_order(quantity, math.nan))
