"""Pairs trading on real daily closes of BTC on two venues (2020): selection, hedge ratio, decisions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from statsmodels.tsa.stattools import coint

from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel
from tradebus.errors import ConfigError
from tradebus.research.lookahead import MemoryReplay, SourceFrame
from tradebus.strategies.pairs import PairsTrading, select_pair

from strat_helpers import BTC_DAY_BINANCE, BTC_DAY_COINBASE, bars_day, run

FORMATION = 120
PARAMS = {"quantity": 0.5, "formation": FORMATION, "entry_z": 2.0, "exit_z": 0.5, "delta": 1e-8, "obs_var": 10.0}


def kalman_reference(y: np.ndarray, x: np.ndarray, delta: float, ve: float) -> tuple[np.ndarray, np.ndarray]:
    """E. Chan's Kalman hedge ratio (Algorithmic Trading, ex. 3.3), written out with numpy."""
    theta = np.zeros(2)
    p = np.zeros((2, 2))
    vw = delta / (1 - delta) * np.eye(2)
    betas, zs = np.empty(len(y)), np.empty(len(y))
    for t in range(len(y)):
        h = np.array([x[t], 1.0])
        r = p + vw
        e = y[t] - h @ theta
        q = h @ r @ h + ve
        k = r @ h / q
        theta = theta + k * e
        p = r - np.outer(k, h) @ r
        betas[t], zs[t] = theta[0], e / math.sqrt(q)
    return betas, zs


def test_selection_uses_engle_granger_and_distance_correlation() -> None:
    y = bars_day("coinbase")["close"].to_numpy()[:FORMATION]
    x = bars_day("binance")["close"].to_numpy()[:FORMATION]
    walk = 9_000.0 * np.exp(np.cumsum(np.random.default_rng(3).normal(0, 0.03, FORMATION)))  # negative control
    best, tested = select_pair({"cb": y, "bn": x, "walk": walk}, max_pvalue=0.05, min_dcor=0.5)
    assert [(t.y, t.x) for t in tested] == [("cb", "bn"), ("cb", "walk"), ("bn", "walk")]
    for t, (a, b) in zip(tested, [(y, x), (y, walk), (x, walk)], strict=True):
        assert t.pvalue == pytest.approx(coint(a, b)[1], rel=1e-12)
    assert best is not None and (best.y, best.x) == ("cb", "bn")
    assert best.pvalue < 1e-3 and best.dcor > 0.99
    assert min(tested[1].pvalue, tested[2].pvalue) > best.pvalue
    # a distance-correlation floor no pair meets leaves nothing selected
    assert select_pair({"cb": y, "bn": x}, 0.05, min_dcor=1.01)[0] is None


def test_decisions_and_legs_follow_the_reference_kalman_spread() -> None:
    cb, bn = bars_day("coinbase"), bars_day("binance")
    strategy = PairsTrading([BTC_DAY_COINBASE, BTC_DAY_BINANCE], **PARAMS)
    kernel = run([strategy], {BTC_DAY_COINBASE: cb, BTC_DAY_BINANCE: bn})
    assert strategy.pair is not None and (strategy.pair.y, strategy.pair.x) == (BTC_DAY_COINBASE, BTC_DAY_BINANCE)
    assert strategy.selections[0][0] == cb["ts_event"].iloc[FORMATION - 1]
    y, x = cb["close"].to_numpy(), bn["close"].to_numpy()
    betas, zs = kalman_reference(y, x, PARAMS["delta"], PARAMS["obs_var"])
    state, expected = 0, []
    for t in range(FORMATION, len(y)):
        z = zs[t]
        new = None
        if state == 0 and abs(z) > 2.0:
            new = -1 if z > 0 else 1
        elif state != 0 and abs(z) < 0.5:
            new = 0
        if new is not None:
            state = new
            expected.append((int(cb["ts_event"].iloc[t]), new, z, betas[t]))
    assert len(expected) >= 6
    got = strategy.decisions
    assert [(ts, s) for ts, s, _, _ in got] == [(ts, s) for ts, s, _, _ in expected]
    np.testing.assert_allclose([d[2] for d in got], [d[2] for d in expected], rtol=1e-7)
    np.testing.assert_allclose([d[3] for d in got], [d[3] for d in expected], rtol=1e-9)
    # both legs traded, the x leg sized by the hedge ratio at entry
    fills = kernel.result.fills
    first_ts = got[0][0]
    legs = {BTC_DAY_COINBASE: 0.0, BTC_DAY_BINANCE: 0.0}
    for f in fills:
        if f.ts_event <= first_ts + 86_400_000_000_000:  # the entry's fills, at the next bar
            legs[f.instrument_id] += (1 if f.side == "BUY" else -1) * f.quantity
    assert legs[BTC_DAY_COINBASE] == pytest.approx(got[0][1] * 0.5)
    assert legs[BTC_DAY_BINANCE] == pytest.approx(-got[0][1] * got[0][3] * 0.5, abs=2e-5)
    final = got[-1][1]
    assert kernel.portfolio.position(BTC_DAY_COINBASE) == pytest.approx(final * 0.5)


def test_formation_tests_the_closes_of_common_steps_when_one_instrument_misses_bars() -> None:
    cb, bn = bars_day("coinbase"), bars_day("binance")
    bn = bn.drop(index=range(30, 40)).reset_index(drop=True)  # ten days without a Binance bar
    strategy = PairsTrading([BTC_DAY_COINBASE, BTC_DAY_BINANCE], **PARAMS)
    run([strategy], {BTC_DAY_COINBASE: cb, BTC_DAY_BINANCE: bn})
    ts, tested = strategy.selections[0]
    common = cb.merge(bn, on="ts_event", suffixes=("_cb", "_bn"))
    common = common[common["ts_event"] <= ts]
    assert len(common) == FORMATION  # the formation ran at the 120th common step
    y, x = common["close_cb"].to_numpy(), common["close_bn"].to_numpy()
    assert tested[0].pvalue == pytest.approx(coint(y, x)[1], rel=1e-12)
    assert tested[0].dcor == pytest.approx(select_pair({"y": y, "x": x}, 1.0, 0.0)[0].dcor, rel=1e-12)


def test_no_lookahead_decisions_before_a_perturbation_are_unchanged() -> None:
    cb, bn = bars_day("coinbase"), bars_day("binance")
    cut = 250
    changed = bn.copy()
    changed.loc[cut:, ["open", "high", "low", "close"]] *= 1.1
    a = PairsTrading([BTC_DAY_COINBASE, BTC_DAY_BINANCE], **PARAMS)
    b = PairsTrading([BTC_DAY_COINBASE, BTC_DAY_BINANCE], **PARAMS)
    run([a], {BTC_DAY_COINBASE: cb, BTC_DAY_BINANCE: bn})
    run([b], {BTC_DAY_COINBASE: cb, BTC_DAY_BINANCE: changed})
    t_cut = int(cb["ts_event"].iloc[cut])
    assert [d for d in a.decisions if d[0] < t_cut] == [d for d in b.decisions if d[0] < t_cut] != []
    assert a.decisions != b.decisions


def test_bad_pairs_parameters_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="at least two instruments"):
        PairsTrading([BTC_DAY_COINBASE], quantity=0.5)
    with pytest.raises(ConfigError, match="exit_z"):
        PairsTrading([BTC_DAY_COINBASE, BTC_DAY_BINANCE], quantity=0.5, entry_z=1.0, exit_z=1.5)


def test_a_formation_too_short_for_the_engle_granger_test_is_refused() -> None:
    """On 20 closes statsmodels' ADF regression of the residuals (9 lags, chosen by AIC) fits them exactly: the
    statistic is 0 and the p-value 0.986 whatever the prices, the two venues' BTC as a random walk, so
    ``formation: 20``, which was accepted, never selected a pair (a run of 0 orders). 30 closes are the fewest
    that keep twice as many observations as regressors; there the two venues' BTC qualifies at once."""
    cb, bn = bars_day("coinbase"), bars_day("binance")
    y, x = cb["close"].to_numpy(), bn["close"].to_numpy()
    walk = 9_000.0 * np.exp(np.cumsum(np.random.default_rng(3).normal(0, 0.03, 20)))
    assert coint(y[:20], x[:20])[1] == coint(y[:20], walk)[1] == pytest.approx(0.986, abs=1e-3)
    for formation in (20, 29):
        with pytest.raises(ConfigError, match=f"formation: {formation} closes are too few for the Engle-Granger test"):
            PairsTrading([BTC_DAY_COINBASE, BTC_DAY_BINANCE], **{**PARAMS, "formation": formation})
    strategy = PairsTrading([BTC_DAY_COINBASE, BTC_DAY_BINANCE], **{**PARAMS, "formation": 30})
    run([strategy], {BTC_DAY_COINBASE: cb, BTC_DAY_BINANCE: bn})
    ts, tested = strategy.selections[0]
    assert ts == cb["ts_event"].iloc[29] and strategy.pair is not None
    assert tested[0].pvalue == pytest.approx(coint(y[:30], x[:30])[1], rel=1e-12)
    assert tested[0].pvalue < 0.05


@pytest.mark.parametrize("contracts", ["y", "x"])
def test_legs_in_base_units_are_sent_in_contracts_of_a_contract_leg(contracts: str) -> None:
    """One leg traded in contracts of 0.01 BTC (OKX's BTC-USDT-SWAP ctVal; the Binance closes stand for its
    prices): ``quantity`` 0.5 BTC of y and ``beta * 0.5`` BTC of x are 50 and ``beta * 50`` contracts.
    The legs were sent as 0.5 and ``beta * 0.5`` contracts, below the one-contract lot: never traded."""
    cb, bn = bars_day("coinbase"), bars_day("binance")
    iid = {"y": BTC_DAY_COINBASE, "x": BTC_DAY_BINANCE}[contracts]
    spot = Instrument("COINBASE", "BTC-USD", base="BTC", quote="USD", tick_size=0.01, lot_size=1e-5, taker_fee=0.001, maker_fee=0.0005,
                      margin=True, leverage=3.0)  # fmt: skip
    swap = Instrument("BINANCE", "BTCUSDT", kind="perpetual", base="BTC", quote="USD", tick_size=0.01, lot_size=1.0,
                      contract_size=0.01, taker_fee=0.001, maker_fee=0.0005, leverage=3.0)  # fmt: skip
    insts = {BTC_DAY_COINBASE: spot, BTC_DAY_BINANCE: swap} if contracts == "x" else {
        BTC_DAY_COINBASE: Instrument("COINBASE", "BTC-USD", kind="perpetual", base="BTC", quote="USD", tick_size=0.01,
                                     lot_size=1.0, contract_size=0.01, taker_fee=0.001, maker_fee=0.0005, leverage=3.0),
        BTC_DAY_BINANCE: Instrument("BINANCE", "BTCUSDT", base="BTC", quote="USD", tick_size=0.01, lot_size=1e-5,
                                    taker_fee=0.001, maker_fee=0.0005, margin=True, leverage=3.0),
    }  # fmt: skip
    strategy = PairsTrading([BTC_DAY_COINBASE, BTC_DAY_BINANCE], **PARAMS)
    kernel = Kernel(list(insts.values()), initial_cash=1_000_000.0)
    kernel.add_strategy(strategy)
    kernel.run(MemoryReplay([SourceFrame(BTC_DAY_COINBASE, "bars", cb), SourceFrame(BTC_DAY_BINANCE, "bars", bn)], 65_536))
    first_ts, state, _, beta = strategy.decisions[0]
    assert state != 0 and 0.9 < beta < 1.1
    legs = {BTC_DAY_COINBASE: 0.0, BTC_DAY_BINANCE: 0.0}  # in base units (BTC)
    for f in kernel.result.fills:
        if f.ts_event <= first_ts + 86_400_000_000_000:  # the entry's fills, at the next bar
            legs[f.instrument_id] += (1 if f.side == "BUY" else -1) * f.quantity * insts[f.instrument_id].contract_size
    assert legs[BTC_DAY_COINBASE] == pytest.approx(state * 0.5)
    assert legs[BTC_DAY_BINANCE] == pytest.approx(-state * beta * 0.5, abs=0.01)  # whole contracts of 0.01 BTC
    held = kernel.portfolio.position(iid) * insts[iid].contract_size
    final = strategy.decisions[-1]
    assert held == pytest.approx(final[1] * (0.5 if contracts == "y" else -final[3] * 0.5), abs=0.01)
