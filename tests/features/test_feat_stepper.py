"""Stepper facade: typed constructors, update/run/value/values/ready, reset and from_state."""

from __future__ import annotations

import numpy as np
import pytest

from tradebus.errors import FeatureError
from tradebus.features import stepper as stepper_module
from tradebus.features.kernels import core
from tradebus.features.registry import all_kinds, get_kind
from tradebus.features.stepper import Ema, EwmMean, RollingStd, Sma, Stepper


def test_every_core_kind_has_a_typed_stepper() -> None:
    typed = {cls.KIND for cls in vars(stepper_module).values()
             if isinstance(cls, type) and issubclass(cls, Stepper) and cls.KIND}
    assert typed == {k.name for k in core.KINDS}


def test_update_returns_the_value_and_ready_turns_on_after_the_window() -> None:
    sma = Sma(window=3)
    assert [sma.update(v) for v in (1.0, 2.0)] == [pytest.approx(np.nan, nan_ok=True)] * 2
    assert not sma.ready
    assert sma.update(6) == 3.0  # an int input is accepted
    assert sma.ready and sma.value == 3.0 and sma.values == (3.0,)


def test_multi_output_update_returns_a_tuple_in_output_order() -> None:
    macd = Stepper("macd", fast=2, slow=3, signal=2)
    for v in range(1, 10):
        out = macd.update(float(v))
    assert isinstance(out, tuple) and len(out) == 3
    assert out == macd.values and out[2] == pytest.approx(out[0] - out[1])


def test_multi_input_update_checks_the_number_of_inputs() -> None:
    atr = Stepper("atr", window=2)
    atr.update(2.0, 1.0, 1.5)
    with pytest.raises(FeatureError, match="takes 3 input"):
        atr.update(1.0)


def test_run_continues_from_the_current_state_and_accepts_columns_or_a_matrix() -> None:
    x = np.linspace(1.0, 2.0, 50)
    whole = Ema(span=5).run(x)
    e = Ema(span=5)
    first = e.run(x[:20])
    assert np.array_equal(np.concatenate([first, e.run(x[20:])]), whole, equal_nan=True)
    assert e.value == whole[-1]
    h, lo, c = x + 0.1, x - 0.1, x
    a = Stepper("atr", window=3).run(h, lo, c)
    b = Stepper("atr", window=3).run(np.column_stack([h, lo, c]))
    assert np.array_equal(a, b, equal_nan=True)
    assert Stepper("macd").run(x).shape == (50, 3)
    readonly = x.copy()
    readonly.flags.writeable = False
    assert np.array_equal(Ema(span=5).run(readonly), whole, equal_nan=True)


def test_run_rejects_wrong_columns() -> None:
    with pytest.raises(FeatureError, match="column"):
        Stepper("atr", window=3).run(np.ones(3), np.ones(3))
    with pytest.raises(FeatureError, match="equal length"):
        Stepper("atr", window=3).run(np.ones(3), np.ones(3), np.ones(4))


def test_reset_forgets_everything() -> None:
    s = RollingStd(window=4)
    s.run(np.arange(10.0))
    s.reset()
    assert not s.ready and np.isnan(s.value) and np.all(s.state == 0.0)


def test_from_state_continues_and_checks_the_size() -> None:
    x = np.random.default_rng(1).normal(size=100)
    a = EwmMean(span=7)
    a.run(x[:60])
    b = EwmMean.from_state(a.state, span=7)
    assert np.array_equal(b.run(x[60:]), a.run(x[60:]))
    with pytest.raises(FeatureError, match="state has shape"):
        Sma.from_state(np.zeros(3), window=10)


def test_state_is_a_copy() -> None:
    s = Sma(window=2)
    st = s.state
    st[:] = 5.0
    assert np.all(s.state == 0.0)


def test_params_and_repr_show_the_normalised_values() -> None:
    e = EwmMean(span=9)
    assert e.params == {"com": 4.0, "min_periods": 9.0}
    assert repr(e) == "EwmMean(com=4, min_periods=9)"
    assert repr(Stepper("sma", window=3)) == "Stepper('sma', window=3)"


def test_stepper_without_kind_is_rejected() -> None:
    with pytest.raises(FeatureError, match="no feature kind"):
        Stepper()


def test_package_exports_the_public_api() -> None:
    import tradebus.features as features

    for name in features.__all__:
        assert getattr(features, name) is not None, name
    assert features.FeatureBank.__module__ == "tradebus.features.bank"


_X = np.cumsum(np.random.default_rng(5).normal(size=80)) + 100.0
_MACD = {"fast": 12, "slow": 26, "signal": 9}


@pytest.mark.parametrize(
    ("kind", "saved", "restored", "message"),
    [
        ("ema", {"span": 10}, {"span": 20},
         r"'ema'.*span=10 \(k=0\.18181818181818182\).*span=20 \(k=0\.09523809523809523\)"),
        ("ewm_mean", {"span": 7}, {"span": 15}, r"'ewm_mean'.*com=3 \(factor=0\.75\).*com=7 \(factor=0\.875\)"),
        ("ewm_var", {"com": 3}, {"com": 4}, r"'ewm_var'.*com=3 .*com=4 "),
        ("ewm_std", {"com": 3}, {"com": 4}, r"'ewm_std'.*com=3 .*com=4 "),
        ("ewm_zscore", {"com": 3}, {"com": 4}, r"'ewm_zscore'.*com=3 .*com=4 "),
        ("ewm_skew", {"com": 3}, {"com": 4}, r"'ewm_skew'.*com=3 .*com=4 "),
        ("ewm_kurt", {"com": 3}, {"com": 4}, r"'ewm_kurt'.*com=3 .*com=4 "),
        # alpha 1 stores factor 0, the value of a fresh state: refused all the same
        ("ewm_mean", {"alpha": 1.0}, {"alpha": 0.5}, r"com=0 \(factor=0\.0\).*com=1 \(factor=0\.5\)"),
        ("macd", _MACD, {**_MACD, "slow": 30}, r"'macd'.*slow=26 \(k_slow=.*slow=30 \(k_slow="),
        ("macd", _MACD, {**_MACD, "fast": 5}, r"'macd'.*fast=12 \(k_fast=.*fast=5 \(k_fast="),
        ("macd", _MACD, {**_MACD, "signal": 4}, r"'macd'.*signal=9 \(k_signal=0\.2\).*signal=4 \(k_signal=0\.4\)"),
    ],
)
def test_from_state_refuses_a_coefficient_other_parameters_stored(
    kind: str, saved: dict, restored: dict, message: str
) -> None:
    # the state row has the same size under both, so only the stored coefficient tells them apart
    first = Stepper(kind, **saved)
    first.run(_X[:60])
    with pytest.raises(FeatureError, match=message):
        Stepper.from_state(first.state, kind, **restored)


@pytest.mark.parametrize(
    ("kind", "saved", "restored"),
    [
        ("ema", {"span": 10}, {"span": 20}),  # k is stored only when the seed completes
        ("ewm_mean", {"com": 3, "min_periods": 3}, {"com": 3, "min_periods": 5}),  # the factor is com's alone
        ("macd", {"fast": 3, "slow": 5, "signal": 4}, {"fast": 3, "slow": 5, "signal": 9}),  # k_signal not stored yet
    ],
)
def test_from_state_takes_a_state_whose_stored_coefficients_agree(kind: str, saved: dict, restored: dict) -> None:
    first = Stepper(kind, **saved)
    first.run(_X[:6] if kind != "ewm_mean" else _X[:60])
    resumed = Stepper.from_state(first.state, kind, **restored)
    again = Stepper.from_state(first.state, kind, **restored)
    assert np.array_equal(resumed.run(_X[60:]), np.array([again.update(v) for v in _X[60:]]), equal_nan=True)


@pytest.mark.parametrize(
    ("kind", "saved", "seen", "restored", "message"),
    [
        # 15 values into an ema of span 20: no k yet; under span 10 the next value made it seed / 10, a mean of 16
        ("ema", {"span": 20}, 15, {"span": 10},
         r"^feature 'ema': the state was saved with span above 15 \(15 values seeded, k not stored yet\), not span=10 "),
        ("ema", {"span": 20}, 15, {"span": 15}, r"span above 15 .*not span=15 \(whose seed completes at 15\)"),
        ("macd", _MACD, 20, {**_MACD, "slow": 20}, r"^feature 'macd': the state was saved with slow above 20 "
                                                   r"\(20 values seeded, k_slow not stored yet\), not slow=20 "),
        # 26 + 5 prices: the slow and fast EMAs are seeded, the signal EMA has 6 of its 9 macd values
        ("macd", _MACD, 31, {**_MACD, "signal": 4}, r"signal above 6 \(6 values seeded, k_signal not stored yet\), "
                                                    r"not signal=4 "),
    ],
)
def test_from_state_refuses_a_seed_past_the_span_it_is_restored_with(
    kind: str, saved: dict, seen: int, restored: dict, message: str
) -> None:
    first = Stepper(kind, **saved)
    first.run(_X[:seen])
    assert not first.ready
    with pytest.raises(FeatureError, match=message):
        Stepper.from_state(first.state, kind, **restored)


@pytest.mark.parametrize(
    ("kind", "saved", "seen", "restored"),
    [
        ("ema", {"span": 20}, 15, {"span": 16}),
        ("ema", {"span": 10}, 6, {"span": 20}),
        ("macd", _MACD, 31, {**_MACD, "signal": 7}),
    ],
)
def test_a_seed_restored_under_a_span_it_has_not_reached_goes_on_as_a_fresh_run_would(
    kind: str, saved: dict, seen: int, restored: dict
) -> None:
    """The seed is the plain sum of the values seen: continued under a span it has not reached, the stepper
    gives what one built with that span gives over the same values (TA-Lib's EMA and MACD seeding)."""
    first = Stepper(kind, **saved)
    first.run(_X[:seen])
    resumed = Stepper.from_state(first.state, kind, **restored)
    fresh = Stepper(kind, **restored)
    fresh.run(_X[:seen])
    assert np.array_equal(resumed.run(_X[seen:]), fresh.run(_X[seen:]), equal_nan=True)


@pytest.mark.parametrize(
    ("seen", "restored", "message"),
    [
        # 20 prices into 12/26: the fast sum holds prices 14..19; under fast=10 it would hold 16..19
        (20, {**_MACD, "fast": 10}, r"^feature 'macd': the state was saved with slow - fast = 14 \(the fast EMA seeding "
                                    r"from price 14 of the 20 seen, k_fast not stored yet\), not slow - fast = 16 "
                                    r"\(fast=10, slow=26\); restore it"),
        (20, {**_MACD, "slow": 25}, r"saved with slow - fast = 14 .*not slow - fast = 13 \(fast=12, slow=25\)"),
        # 10 prices: no fast value summed under 12/26 (from 14), but under fast=20 (from 6) prices 6..9 would be
        (10, {**_MACD, "fast": 20}, r"saved with slow - fast = 14 \(the fast EMA seeding from price 14 of the 10 seen"),
    ],
)
def test_from_state_refuses_a_macd_fast_seed_started_at_another_price(seen: int, restored: dict, message: str) -> None:
    """A macd saved with fast=12, slow=26 after 20 prices and restored with fast=10 went on with the sum of
    6 prices as the seed of a 10-price mean (neither k stored yet, the fast sum's start not in the state)."""
    first = Stepper("macd", **_MACD)
    first.run(_X[:seen])
    with pytest.raises(FeatureError, match=message):
        Stepper.from_state(first.state, "macd", **restored)


@pytest.mark.parametrize(
    ("seen", "restored"),
    [
        (20, {"fast": 14, "slow": 28, "signal": 9}),  # the fast sum starts at price 14 under both
        (10, {**_MACD, "fast": 13}),  # no fast value summed yet under either (from 14, from 13)
        (0, {**_MACD, "fast": 3}),
    ],
)
def test_a_macd_seed_restored_with_the_same_fast_start_goes_on_as_a_fresh_run_would(seen: int, restored: dict) -> None:
    first = Stepper("macd", **_MACD)
    first.run(_X[:seen])
    resumed = Stepper.from_state(first.state, "macd", **restored)
    fresh = Stepper("macd", **restored)
    fresh.run(_X[:seen])
    assert np.array_equal(resumed.run(_X[seen:]), fresh.run(_X[seen:]), equal_nan=True)


def test_a_macd_seed_saved_before_its_fast_start_was_kept_is_refused_naming_why() -> None:
    """A state row of the earlier layout (slot 5 zero while seeding) cannot tell where its fast sum starts."""
    first = Stepper("macd", **_MACD)
    first.run(_X[:20])
    old = first.state
    old[5] = 0.0
    with pytest.raises(FeatureError, match=r"^feature 'macd': the state has seen 20 prices, k_fast not stored yet, "
                                           r"and does not say where its fast EMA's seed starts \(a state saved by an "
                                           r"earlier tradebus\); run the stepper again from the first price"):
        Stepper.from_state(old, "macd", **_MACD)
    done = Stepper("macd", **_MACD)
    done.run(_X[:40])
    assert Stepper.from_state(done.state, "macd", **_MACD).run(_X[40:]).shape == (40, 3)  # seeded: as before


@pytest.mark.parametrize("kind", sorted({k.name for k in all_kinds() if k.coefficients}))
def test_declared_coefficients_are_the_bits_the_kernel_stores(kind: str) -> None:
    kind_ = get_kind(kind)
    params = {"ewm": {"span": 9}, "ema": {"span": 7}, "macd": {"fast": 4, "slow": 9, "signal": 5}}
    s = Stepper(kind, **params["ewm" if kind.startswith("ewm") else kind])
    s.run(_X)
    packed = kind_.pack(dict(s.params))
    names = [p.name for p in kind_.params]
    for c in kind_.coefficients:
        stored = s.state[c.slot]
        assert stored == c.of_param(float(packed[names.index(c.param)])), (kind, c.name)
        assert stored != 0.0
