"""``settle`` and ``exceeds``: float noise of a balance is nothing, one lot is something."""

from __future__ import annotations

import math
import random

import pytest

from tradebus.account.spot import exceeds, settle
from tradebus.engine.instrument import LOTS_RTOL


def _rule(balance: float, amount: float) -> float:
    """The documented rule: 0.0 when ``|balance + amount| <= LOTS_RTOL * max(|balance|, |amount|)``."""
    after = balance + amount
    return 0.0 if math.fabs(after) <= LOTS_RTOL * max(math.fabs(balance), math.fabs(amount)) else after


def test_settle_spends_exactly_what_is_left() -> None:
    # 0.3 - 0.1 - 0.2 is -2.8e-17 in floats: the docstring's example leaves nothing
    assert 0.3 - 0.1 - 0.2 < 0.0
    assert settle(0.3 - 0.1, -0.2) == 0.0
    assert settle(-(0.3 - 0.1), 0.2) == 0.0  # a short balance closed the same way
    assert settle(0.2, -(0.3 - 0.1)) == 0.0


def test_settle_keeps_one_lot_below_a_million_coins() -> None:
    left = 999_999.0 - (999_999.0 - 1e-8)
    assert settle(999_999.0, -(999_999.0 - 1e-8)) == left > 0.0
    assert settle(1.0, -(1.0 - 1e-8)) == 1.0 - (1.0 - 1e-8)
    assert settle(100.0, 5.5) == 105.5
    assert settle(-3.0, 1.0) == -2.0


def test_settle_propagates_nan() -> None:
    assert math.isnan(settle(math.nan, 1.0))
    assert math.isnan(settle(1.0, math.nan))
    assert math.isnan(settle(math.inf, -math.inf))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_settle_follows_its_rule_to_the_bit(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(5000):
        balance = rng.choice((1, -1)) * 10 ** rng.uniform(-12, 9)
        kind = rng.random()
        if kind < 0.4:  # spends (or receives) all of it, up to the last bits
            amount = -balance * (1.0 + rng.choice((0.0, 1e-16, -1e-16, 1e-15, -1e-13, 1e-12)))
        else:
            amount = rng.choice((1, -1)) * 10 ** rng.uniform(-12, 9)
        got, want = settle(balance, amount), _rule(balance, amount)
        assert math.copysign(1.0, got) == math.copysign(1.0, want) and got == want, (balance, amount)


def test_exceeds_allows_the_noise_of_the_balance_either_sign() -> None:
    assert not exceeds(1.0 + 1e-15, 1.0, 1.0)  # within 1e-14 of the balance
    assert exceeds(1.0 + 1e-13, 1.0, 1.0)
    assert not exceeds(1.0 + 1e-15, 1.0, -1.0)  # the slack is of |balance|
    assert exceeds(1.0 + 1e-13, 1.0, -1.0)
    assert not exceeds(math.nan, 1.0, 1.0)  # nothing priced: never more
