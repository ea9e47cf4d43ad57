"""Breakers on their own: where the drawdown and daily-loss breakers trip (tests/risk/test_risk_gate.py covers them through the gate)."""

from __future__ import annotations

import pytest

from tradebus.engine.instrument import Instrument
from tradebus.engine.portfolio import Portfolio
from tradebus.risk.breakers import Breakers
from tradebus.risk.config import RiskConfig

INST = Instrument("BINANCE", "BTCUSDT", tick_size=0.5, lot_size=0.01, min_notional=10.0)
BREAKER_OF = {"max_drawdown_pct": "max_drawdown", "max_daily_loss_pct": "daily_loss"}

# (reference equity, limit in %): (reference - reference * (1 - limit / 100)) / reference rounds
# below limit / 100 (0.009999999999999948, 0.029999999999999975, 0.09999999999999992).
AT_THE_LEVEL = [(110.0, 1.0), (110.0, 3.0), (1234.56, 10.0)]


def breakers_at(reference: float, limit: str, pct: float) -> tuple[Portfolio, Breakers]:
    """Breakers with one limit, after a first mark at ``reference`` (the peak and the day's start)."""
    portfolio = Portfolio({INST.instrument_id: INST}, reference)
    breakers = Breakers(RiskConfig(**{limit: pct}), portfolio)  # type: ignore[arg-type]
    breakers.on_mark(0)
    return portfolio, breakers


@pytest.mark.parametrize("limit", sorted(BREAKER_OF))
@pytest.mark.parametrize(("reference", "pct"), AT_THE_LEVEL)
def test_an_equity_at_the_documented_level_trips_although_its_fall_rounds_below_the_limit(
    limit: str, reference: float, pct: float
) -> None:
    """The docs: trips at equity at or below ``(1 - pct / 100) * reference``."""
    portfolio, breakers = breakers_at(reference, limit, pct)
    portfolio.cash = reference * (1.0 - pct / 100.0)
    assert (reference - portfolio.cash) / reference < pct / 100.0  # the float noise is there
    assert breakers.on_mark(1)
    assert list(breakers.tripped) == [BREAKER_OF[limit]]


@pytest.mark.parametrize("limit", sorted(BREAKER_OF))
@pytest.mark.parametrize(("reference", "pct"), AT_THE_LEVEL)
def test_an_equity_a_millionth_above_the_level_does_not_trip(limit: str, reference: float, pct: float) -> None:
    portfolio, breakers = breakers_at(reference, limit, pct)
    portfolio.cash = reference * (1.0 - pct / 100.0) + reference * 1e-6
    assert not breakers.on_mark(1)
    assert breakers.tripped == {}


@pytest.mark.parametrize("limit", sorted(BREAKER_OF))
@pytest.mark.parametrize(("reference", "pct"), AT_THE_LEVEL)
def test_the_quick_return_band_ends_where_the_full_evaluation_trips(limit: str, reference: float, pct: float) -> None:
    """A mark inside the band set at the first mark returns at once: the band must end where a full evaluation trips."""
    level = reference * (1.0 - pct / 100.0)
    tripped = []
    for step in range(-4, 5):
        equity = level + reference * pct / 100.0 * 1e-9 * step / 2.0  # across the edge of the slack
        banded_portfolio, banded = breakers_at(reference, limit, pct)
        banded_portfolio.cash = equity
        banded.on_mark(1)
        full_portfolio, full = breakers_at(reference, limit, pct)
        full_portfolio.cash = equity
        full._reset_quiet()  # noqa: SLF001 (no band: the full evaluation)
        full.on_mark(1)
        assert banded.tripped.keys() == full.tripped.keys(), (step, equity)
        tripped.append(bool(full.tripped))
    assert tripped[0] and not tripped[-1]  # the steps cross the edge


@pytest.mark.parametrize("limit", sorted(BREAKER_OF))
def test_a_100_percent_limit_trips_at_zero_equity_and_not_at_a_positive_one(limit: str) -> None:
    """The slack let a 100 % breaker trip at any equity up to 1e-9 of the reference (0.0001 of 100 000): a
    position still worth something was HALTED as if all was lost. A level of 0 has no float noise to allow for."""
    for equity, trips in ((5e-5, False), (1e-12, False), (0.0, True), (-1.0, True)):
        portfolio, breakers = breakers_at(100_000.0, limit, 100.0)
        portfolio.cash = equity
        breakers.on_mark(1)
        assert list(breakers.tripped) == ([BREAKER_OF[limit]] if trips else []), equity
        banded_portfolio, banded = breakers_at(100_000.0, limit, 100.0)
        banded.on_mark(1)  # a second mark at the reference sets the quick-return band
        banded_portfolio.cash = equity
        banded.on_mark(2)
        assert banded.tripped.keys() == breakers.tripped.keys(), equity
