"""Stepper facade: typed constructors, update/run/value/values/ready, reset and from_state."""

from __future__ import annotations

import numpy as np
import pytest

from tradebus.errors import FeatureError
from tradebus.features import stepper as stepper_module
from tradebus.features.kernels import core
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
