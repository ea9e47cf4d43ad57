"""Each venue's liquidation rule: the fee to close that its maintenance margin counts (:class:`CloseFee`).

Numbers are derived by hand from the venues' own formulas:

* Bybit (help center, "Liquidation Price Calculation under Isolated Mode (Unified Trading
  Account)" and "Order Cost (USDT Contract)"): maintenance margin = position value * MMR - MM
  deduction + estimated fee to close; fee to close = quantity * bankruptcy price * taker fee
  rate; bankruptcy price of a long = entry * (1 - 1 / leverage).
* OKX (help center, "Tiered maintenance margin ratio rules"): liquidation when the margin ratio
  falls to 100 %, equity <= maintenance margin + liquidation fee; isolated USDT swaps:
  (margin balance + PnL) / (face value * |contracts| * mark * (tiered MMR + fee rate)).
* Binance USD-M keeps its rule: equity < position value * MMR - maintenance amount.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydantic import ValidationError

from tests.account.test_margin_account import H, T0, BuyOnce, flat_bar, opened_kernel, perp
from tradebus.account import MarginAccount
from tradebus.config.instruments import InstrumentConfig
from tradebus.engine.instrument import CloseFee, Instrument, InstrumentKind, MarginMode, MarginTier
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import MarkPrice, OrderSide
from tradebus.errors import OrderError
from tradebus.execution.config import VenueConfig


def _mark(kernel: Any, iid: str, k: int, px: float) -> None:
    kernel.process(MarkPrice(iid, T0 + 2 * H + k, T0 + 2 * H + k, px, math.nan))


def test_bybit_long_is_liquidated_where_its_margin_meets_mm_plus_the_fee_to_close_at_bankruptcy() -> None:
    """1 BTC long at 20000, 10x isolated, MMR 0.5 %, taker 0.055 %: margin 2000, bankruptcy price
    20000 * (1 - 1/10) = 18000, fee to close 1 * 18000 * 0.00055 = 9.9. Liquidated where
    2000 + (P - 20000) = 0.005 P + 9.9: P = 18009.9 / 0.995 = 18100.402... (Binance's rule,
    without the 9.9: 18090.45). A mark of 18101 keeps it; 18100 liquidates it."""
    inst = perp(margin_mode=MarginMode.ISOLATED, taker_fee=0.00055, maintenance_close_fee=CloseFee.BANKRUPTCY)
    kernel, _ = opened_kernel(inst, 10_000.0, 1.0)
    iid = inst.instrument_id
    account = kernel.portfolio.account
    assert isinstance(account, MarginAccount)
    _mark(kernel, iid, 1, 18_101.0)
    assert account.liquidation_price(iid) == pytest.approx(18_009.9 / 0.995, rel=1e-12)
    assert account.maintenance_margin("USDT") == pytest.approx(0.005 * 18_101.0 + 9.9, rel=1e-12)
    assert kernel.portfolio.position(iid) == 1.0
    _mark(kernel, iid, 2, 18_100.0)
    [event] = kernel.result.liquidations
    assert event.liquidation_price == pytest.approx(18_009.9 / 0.995, rel=1e-12)
    assert kernel.portfolio.position(iid) == 0.0


def test_bybit_isolated_liquidation_settles_at_the_bankruptcy_price_losing_the_position_margin() -> None:
    """Bybit closes a liquidated position at its bankruptcy price: 1 BTC long at 20000, 10x isolated,
    taker 0.055 %, breached at a mark of 18100, settles at 20000 * (1 - 1/10) = 18000 with the
    fee to close 18000 * 0.00055 = 9.9: the wallet loses the margin 2000 and the 9.9
    (10000 - 11 entry fee - 2000 - 9.9 = 7979.1), not 1900 + 9.955 at the mark; the 100
    between the mark and the bankruptcy price is the insurance fund's, which covers nothing."""
    inst = perp(margin_mode=MarginMode.ISOLATED, taker_fee=0.00055, maintenance_close_fee=CloseFee.BANKRUPTCY)
    kernel, _ = opened_kernel(inst, 10_000.0, 1.0)
    iid = inst.instrument_id
    account = kernel.portfolio.account
    assert isinstance(account, MarginAccount)
    _mark(kernel, iid, 1, 18_100.0)
    [event] = kernel.result.liquidations
    assert (event.mark_price, event.insurance_fund_cover) == (18_100.0, 0.0)
    assert event.price == pytest.approx(18_000.0, rel=1e-12)
    assert event.fee == pytest.approx(9.9, rel=1e-12)
    assert account.balance("USDT") == pytest.approx(7_979.1, rel=1e-12)


def test_the_fee_to_close_is_at_the_venue_taker_fee_that_overrides_the_instruments() -> None:
    """``venue.taker_fee`` 0.055 % overrides the instrument's 0 (the rate ``tradebus instruments`` prints: fees are
    not in the venues' responses). The entry pays 20000 * 0.00055 = 11; the maintenance margin and the liquidation
    used the instrument's 0: no fee to close, liquidated at 18000 / 0.995 = 18090.45, settled with no fee. At the
    rate charged, as with the instrument's own 0.055 % above: fee to close 1 * 18000 * 0.00055 = 9.9, liquidated
    at 18009.9 / 0.995 = 18100.402..., so a mark of 18100 liquidates it, settling at 18000 with the 9.9:
    10000 - 11 - 2000 - 9.9 = 7979.1."""
    inst = perp(margin_mode=MarginMode.ISOLATED, taker_fee=0.0, maintenance_close_fee=CloseFee.BANKRUPTCY)
    kernel = Kernel([inst], venue_config=VenueConfig(fill_on="bars", taker_fee=0.00055), initial_cash=10_000.0)
    kernel.add_strategy(BuyOnce(inst.instrument_id, 1.0))
    for k in (1, 2):
        kernel.process(flat_bar(inst.instrument_id, k, 20_000.0))
    iid = inst.instrument_id
    account = kernel.portfolio.account
    assert isinstance(account, MarginAccount)
    assert kernel.portfolio.position(iid) == 1.0
    assert account.balance("USDT") == pytest.approx(10_000.0 - 11.0, rel=1e-12)
    assert account.liquidation_price(iid) == pytest.approx(18_009.9 / 0.995, rel=1e-12)
    _mark(kernel, iid, 1, 18_100.0)
    [event] = kernel.result.liquidations
    assert event.price == pytest.approx(18_000.0, rel=1e-12)
    assert event.fee == pytest.approx(9.9, rel=1e-12)
    assert account.balance("USDT") == pytest.approx(7_979.1, rel=1e-12)


def test_bybit_isolated_liquidation_gapped_past_bankruptcy_settles_there_and_the_fund_covers_the_gap() -> None:
    """The same long with the mark gapping to 17000: still settled at 18000 with the 9.9 fee (the
    wallet 7979.1); the insurance fund covers 18000 - 17000 = 1000."""
    inst = perp(margin_mode=MarginMode.ISOLATED, taker_fee=0.00055, maintenance_close_fee=CloseFee.BANKRUPTCY)
    kernel, _ = opened_kernel(inst, 10_000.0, 1.0)
    iid = inst.instrument_id
    account = kernel.portfolio.account
    assert isinstance(account, MarginAccount)
    _mark(kernel, iid, 1, 17_000.0)
    [event] = kernel.result.liquidations
    assert (event.price, event.fee) == (pytest.approx(18_000.0, rel=1e-12), pytest.approx(9.9, rel=1e-12))
    assert event.insurance_fund_cover == pytest.approx(1_000.0, rel=1e-12)
    assert account.balance("USDT") == pytest.approx(7_979.1, rel=1e-12)


def test_bybit_cross_liquidation_loses_the_cross_margin_balance() -> None:
    """1 BTC long at 20000, 10x cross, wallet 3000 (2989 after the 11 entry fee), MMR 0.5 %, taker
    0.055 %, fee to close 9.9: liquidated where 2989 + (P - 20000) = 0.005 P + 9.9, P = 17020.9 /
    0.995 = 17106.43... At a mark of 17106 the cross balance is 2989 - 2894 = 95: the fee 9.9
    is paid and the other 85.1 goes to the insurance fund, so the position settles at
    17106 - 85.1 = 17020.9, the price where the wallet less the fee to close is used up, and the
    wallet ends at 0."""
    inst = perp(taker_fee=0.00055, maintenance_close_fee=CloseFee.BANKRUPTCY)
    kernel, _ = opened_kernel(inst, 3_000.0, 1.0)
    iid = inst.instrument_id
    account = kernel.portfolio.account
    assert isinstance(account, MarginAccount)
    assert account.liquidation_price(iid) == pytest.approx(17_020.9 / 0.995, rel=1e-12)
    _mark(kernel, iid, 1, 17_107.0)
    assert kernel.portfolio.position(iid) == 1.0
    _mark(kernel, iid, 2, 17_106.0)
    [event] = kernel.result.liquidations
    assert (event.price, event.fee, event.insurance_fund_cover) == (
        pytest.approx(17_020.9, rel=1e-12), pytest.approx(9.9, rel=1e-12), 0.0
    )
    assert account.balance("USDT") == pytest.approx(0.0, abs=1e-9)


def test_bybit_short_fee_to_close_is_at_its_bankruptcy_price_above_entry() -> None:
    """1 BTC short at 20000, 10x isolated, MMR 0.5 %, taker 0.055 %: bankruptcy price 22000, fee to
    close 22000 * 0.00055 = 12.1. Liquidated where 2000 - (P - 20000) = 0.005 P + 12.1:
    P = 21987.9 / 1.005 = 21878.507..."""
    inst = perp(margin_mode=MarginMode.ISOLATED, taker_fee=0.00055, maintenance_close_fee=CloseFee.BANKRUPTCY)
    kernel = Kernel([inst], venue_config=VenueConfig(fill_on="bars"), initial_cash=10_000.0)
    kernel.add_strategy(BuyOnce(inst.instrument_id, 1.0, OrderSide.SELL))
    iid = inst.instrument_id
    kernel.process(flat_bar(iid, 1, 20_000.0))
    kernel.process(flat_bar(iid, 2, 20_000.0))
    account = kernel.portfolio.account
    assert isinstance(account, MarginAccount)
    assert account.liquidation_price(iid) == pytest.approx(21_987.9 / 1.005, rel=1e-12)
    _mark(kernel, iid, 1, 21_878.0)
    assert kernel.portfolio.position(iid) == -1.0
    _mark(kernel, iid, 2, 21_879.0)
    assert kernel.portfolio.position(iid) == 0.0


def test_okx_long_is_liquidated_where_its_margin_meets_mm_plus_the_liquidation_fee_at_mark() -> None:
    """1 BTC long at 20000, 10x isolated, tier MMR 0.5 %, taker 0.05 %: margin 2000. Margin ratio
    (2000 + P - 20000) / (P * (0.005 + 0.0005)) = 100 % at P = 18000 / 0.9945 = 18099.547...
    A mark of 18100 keeps it; 18099 liquidates it, charging the taker fee at the mark,
    18099 * 0.0005 = 9.0495 (not the 0.5 % clearance fee of Binance's rule, 90.495)."""
    inst = perp(margin_mode=MarginMode.ISOLATED, taker_fee=0.0005, maintenance_close_fee=CloseFee.MARK)
    kernel, _ = opened_kernel(inst, 10_000.0, 1.0)
    iid = inst.instrument_id
    account = kernel.portfolio.account
    assert isinstance(account, MarginAccount)
    _mark(kernel, iid, 1, 18_100.0)
    assert account.liquidation_price(iid) == pytest.approx(18_000.0 / 0.9945, rel=1e-12)
    assert account.maintenance_margin("USDT") == pytest.approx(18_100.0 * 0.0055, rel=1e-12)
    assert kernel.portfolio.position(iid) == 1.0
    _mark(kernel, iid, 2, 18_099.0)
    [event] = kernel.result.liquidations
    assert (event.price, event.fee) == (18_099.0, pytest.approx(18_099.0 * 0.0005, rel=1e-12))
    # wallet: 10000 - 10 (entry taker fee) + (18099 - 20000) - 9.0495
    assert account.balance("USDT") == pytest.approx(10_000.0 - 10.0 - 1_901.0 - 9.0495, rel=1e-12)


def test_okx_cross_long_counts_the_liquidation_fee_in_its_liquidation_price() -> None:
    """1 BTC long at 20000, 10x cross, wallet 3000 (2990 after the 10 entry fee), MMR 0.5 %,
    taker 0.05 %: liquidated where 2990 + (P - 20000) = 0.0055 P, P = 17010 / 0.9945 = 17104.07..."""
    inst = perp(taker_fee=0.0005, maintenance_close_fee=CloseFee.MARK)
    kernel, _ = opened_kernel(inst, 3_000.0, 1.0)
    iid = inst.instrument_id
    account = kernel.portfolio.account
    assert isinstance(account, MarginAccount)
    assert account.liquidation_price(iid) == pytest.approx(17_010.0 / 0.9945, rel=1e-12)
    _mark(kernel, iid, 1, 17_105.0)
    assert kernel.portfolio.position(iid) == 1.0
    _mark(kernel, iid, 2, 17_104.0)
    assert kernel.portfolio.position(iid) == 0.0


@pytest.mark.parametrize(
    ("venue", "kind", "rule"),
    [
        ("BINANCE", "perpetual", CloseFee.NONE),
        ("BYBIT", "perpetual", CloseFee.BANKRUPTCY),
        ("OKX", "perpetual", CloseFee.MARK),
        ("OKX_DEMO", "perpetual", CloseFee.MARK),
        ("OKX", "spot", CloseFee.NONE),
        ("SIM", "perpetual", CloseFee.NONE),
    ],
)
def test_a_config_instrument_takes_its_venues_rule(venue: str, kind: str, rule: CloseFee) -> None:
    cfg = InstrumentConfig(venue=venue, symbol="X", kind=kind, tick_size=0.1, lot_size=0.001)
    assert cfg.to_instrument().maintenance_close_fee == rule


def test_a_config_instrument_may_name_another_rule() -> None:
    cfg = InstrumentConfig(
        venue="BYBIT", symbol="X", kind="perpetual", tick_size=0.1, lot_size=0.001, maintenance_close_fee="none"
    )
    assert cfg.to_instrument().maintenance_close_fee == CloseFee.NONE


@pytest.mark.parametrize("venue", ["OKX", "BYBIT"])
def test_a_liquidation_fee_the_venues_rule_does_not_charge_is_refused_naming_the_field(venue: str) -> None:
    """OKX charges its taker fee at the mark and Bybit its fee to close: a liquidation_fee set for
    their perpetuals would be silently ignored."""
    with pytest.raises(ValidationError, match=r"BTC-USDT-SWAP\.%s: liquidation_fee 0\.01 is not charged" % venue):
        InstrumentConfig(
            venue=venue, symbol="BTC-USDT-SWAP", kind="perpetual", tick_size=0.1, lot_size=1.0, liquidation_fee=0.01
        )


@pytest.mark.parametrize("venue", ["OKX", "BYBIT"])
def test_a_written_config_of_a_perpetual_whose_rule_sets_the_fee_loads_again(venue: str) -> None:
    """A config written out whole (a run's ``config.yaml``, ``serve --write-config``: every field, the default
    ``liquidation_fee`` too) was refused when loaded again, as if the fee had been set."""
    cfg = InstrumentConfig(venue=venue, symbol="BTC-USDT-SWAP", kind="perpetual", tick_size=0.1, lot_size=1.0)
    written = cfg.model_dump(mode="json")
    assert "liquidation_fee" in written
    assert InstrumentConfig(**written).to_instrument() == cfg.to_instrument()


def test_a_maintenance_rate_beside_margin_tiers_is_refused_naming_the_field() -> None:
    """The tiers set the maintenance margin of every notional: a flat maintenance_rate of 0.01 beside a first
    tier of 0.005 was taken and never used (the margin of 5,000 USDT was 25, not 50). A written config (every
    field, the default rate too) loads again."""
    tiers = [{"max_notional": 10_000.0, "maintenance_rate": 0.005, "max_leverage": 75.0}]
    fields: dict[str, Any] = {"venue": "BINANCE", "symbol": "XRPUSDT", "kind": "perpetual", "tick_size": 0.0001,
                              "lot_size": 0.1, "margin_tiers": tiers}
    with pytest.raises(ValidationError, match=r"XRPUSDT\.BINANCE: maintenance_rate 0\.01 is not used: its margin_tiers"):
        InstrumentConfig(**fields, maintenance_rate=0.01)
    written = InstrumentConfig(**fields).model_dump(mode="json")
    assert written["maintenance_rate"] == 0.005
    assert InstrumentConfig(**written).to_instrument().maintenance_margin(5_000.0, 1.0) == pytest.approx(25.0)
    assert InstrumentConfig(**{**fields, "margin_tiers": []}, maintenance_rate=0.01)


def test_a_liquidation_fee_is_taken_where_it_is_charged() -> None:
    """Binance's rule charges it; an OKX perpetual set to the rule ``none`` does too; OKX spot has no rule."""
    for venue, extra in (("BINANCE", {}), ("OKX", {"maintenance_close_fee": "none"})):
        cfg = InstrumentConfig(
            venue=venue, symbol="X", kind="perpetual", tick_size=0.1, lot_size=1.0, liquidation_fee=0.01, **extra
        )
        assert cfg.to_instrument().liquidation_fee == 0.01
    assert InstrumentConfig(venue="OKX", symbol="X", tick_size=0.1, lot_size=1.0, liquidation_fee=0.01)


def test_a_config_instrument_takes_okx_tiers_by_size_and_its_written_config_loads_again() -> None:
    """``max_size`` (contracts) gives OKX's tiers: the tier of 1,001 contracts (1.5 %) on all 500.5 USDT."""
    tiers = [{"max_size": 1_000, "maintenance_rate": 0.01, "max_leverage": 75},
             {"max_size": 2_500, "maintenance_rate": 0.015, "max_leverage": 50}]  # fmt: skip
    cfg = InstrumentConfig(venue="OKX", symbol="1INCH-USDT-SWAP", kind="perpetual", tick_size=0.0001, lot_size=1.0,
                           leverage=20, margin_tiers=tiers)  # fmt: skip
    inst = cfg.to_instrument()
    assert inst.tiered_by_size and inst.maintenance_margin(500.5, 1_001.0) == pytest.approx(500.5 * 0.015)
    assert InstrumentConfig(**cfg.model_dump(mode="json")).to_instrument() == inst


@pytest.mark.parametrize(
    ("tiers", "message"),
    [
        ([{"maintenance_rate": 0.01}], "a margin tier has one cap: max_notional"),
        ([{"max_size": 10, "max_notional": 10, "maintenance_rate": 0.01}], "a margin tier has one cap: max_notional"),
        ([{"max_size": 10, "maintenance_rate": 0.01}, {"max_notional": 100, "maintenance_rate": 0.02}],
         r"margin_tiers must each have a max_notional .* or each a max_size .*: margin_tiers.0 has max_size 10, "
         r"margin_tiers.1 max_notional 100 \["),
        ([{"max_size": 10, "maintenance_rate": 0.01}, {"max_size": 5, "maintenance_rate": 0.02}],
         r"instrument X.OKX: margin_tiers.1: max_size 5 is not above the 10 of margin_tiers.0: the tiers must have "
         r"strictly ascending max_size \["),
    ],
)  # fmt: skip
def test_margin_tiers_with_no_cap_both_or_mixed_caps_are_refused(tiers: list[dict], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        InstrumentConfig(venue="OKX", symbol="X", kind="perpetual", tick_size=0.1, lot_size=1.0, margin_tiers=tiers)


def test_tiers_out_of_order_are_refused_naming_the_instrument_the_tier_and_both_values() -> None:
    """Binance's XRPUSDT brackets with the third cap mistyped (20,000 under the second's 50,000): the error said
    only "margin_tiers must have ascending max_notional and rates in [0, 1)", whichever tier and whatever value."""
    tiers = [{"max_notional": 10_000, "maintenance_rate": 0.005, "max_leverage": 75},
             {"max_notional": 50_000, "maintenance_rate": 0.01, "max_leverage": 50},
             {"max_notional": 20_000, "maintenance_rate": 0.02, "max_leverage": 25},
             {"max_notional": 1_000_000, "maintenance_rate": 0.05, "max_leverage": 10}]  # fmt: skip
    with pytest.raises(ValidationError) as info:
        InstrumentConfig(venue="BINANCE", symbol="XRPUSDT", kind="perpetual", tick_size=0.0001, lot_size=0.1,
                         margin_tiers=tiers)  # fmt: skip
    assert info.value.errors()[0]["msg"] == (
        "Value error, instrument XRPUSDT.BINANCE: margin_tiers.2: max_notional 20,000 is not above the 50,000 of "
        "margin_tiers.1: the tiers must have strictly ascending max_notional"
    )
    # two tiers of one cap are not ascending either
    with pytest.raises(OrderError, match=r"margin_tiers.1: max_notional 10,000 is not above the 10,000 of margin_tiers.0"):
        Instrument("BINANCE", "XRPUSDT", InstrumentKind.PERPETUAL, tick_size=0.0001, lot_size=0.1,
                   margin_tiers=(MarginTier(10_000, 0.005), MarginTier(10_000, 0.01)))  # fmt: skip
    # an Instrument built in code (a venue's loader) is not checked by the config's per-tier bounds
    with pytest.raises(OrderError, match=r"^instrument XRPUSDT.BINANCE: margin_tiers.1: maintenance_rate 1.5 is not "
                                         r"a fraction in \[0, 1\)$"):
        Instrument("BINANCE", "XRPUSDT", InstrumentKind.PERPETUAL, tick_size=0.0001, lot_size=0.1,
                   margin_tiers=(MarginTier(10_000, 0.005), MarginTier(50_000, 1.5)))  # fmt: skip
    fees = [{"min_volume": 0, "maker_fee": 0.0002, "taker_fee": 0.0004},
            {"min_volume": 15_000_000, "maker_fee": 0.00016, "taker_fee": 0.0004},
            {"min_volume": 5_000_000, "maker_fee": 0.00014, "taker_fee": 0.00035}]  # fmt: skip
    with pytest.raises(ValidationError) as info:
        InstrumentConfig(venue="BINANCE", symbol="XRPUSDT", tick_size=0.0001, lot_size=0.1, fee_tiers=fees)
    assert info.value.errors()[0]["msg"] == (
        "Value error, instrument XRPUSDT.BINANCE: fee_tiers.2: min_volume 5,000,000 is not above the 15,000,000 of "
        "fee_tiers.1: the tiers must have strictly ascending min_volume"
    )
