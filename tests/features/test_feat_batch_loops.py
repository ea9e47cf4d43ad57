"""The register-header batch loops of the core kinds (``core.BATCH_KINDS``) against the step kernel.

``Stepper.run`` takes a loop of its own for these kinds (header in registers, the
lagged value of ret/log_ret read from the input column); the step kernel is the
reference. Runs are cut into chunks of random sizes, some shorter than the lag or
the window, so every way of entering and leaving a loop with a partly filled ring
is exercised; outputs *and* the final state rows must match bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest

from tradebus.features.kernels import core
from tradebus.features.registry import all_kinds
from tradebus.features.stepper import Stepper

from feat_helpers import messy_series

PARAMS = {
    "ret": [{"lag": 1}, {"lag": 3}, {"lag": 70}],
    "log_ret": [{"lag": 1}, {"lag": 4}],
    "ewm_mean": [{"span": 5}],
    "ewm_var": [{"halflife": 4}],
    "ewm_std": [{"alpha": 0.3}],
    "ewm_zscore": [{"span": 6}],
    "rolling_sum": [{"window": 7}, {"window": 90, "min_periods": 3}],
    "rolling_mean": [{"window": 7}, {"window": 5, "min_periods": 2}],
    "rolling_var": [{"window": 6}],
    "rolling_std": [{"window": 9}, {"window": 70}],
    "rolling_zscore": [{"window": 8}],
    "rolling_min": [{"window": 7}, {"window": 30, "min_periods": 3}],
    "rolling_max": [{"window": 20}, {"window": 5, "min_periods": 2}, {"window": 1}],
    "sma": [{"window": 10}],
    "ema": [{"span": 6}],
    "wma": [{"window": 1}, {"window": 10}, {"window": 70}],
}
CASES = [
    (kind.name, params)
    for kind in all_kinds()
    if kind.kind_id in core.BATCH_KINDS
    for params in PARAMS[kind.name]
]


def test_every_batch_kind_is_covered() -> None:
    names = {k.name for k in all_kinds() if k.kind_id in core.BATCH_KINDS}
    assert names == set(PARAMS)


@pytest.mark.parametrize(("name", "params"), CASES, ids=[f"{n}-{p}" for n, p in CASES])
@pytest.mark.parametrize("nan_frac", [0.0, 0.1, 0.5])
def test_chunked_batch_equals_live_outputs_and_state(name: str, params: dict, nan_frac: float) -> None:
    x = messy_series(11, 700, nan_frac, const_run=True)
    live = Stepper(name, **params)
    expected = np.array([live.update(v) for v in x.tolist()])
    rng = np.random.default_rng(5)
    batch = Stepper(name, **params)
    parts, i = [], 0
    while i < len(x):
        size = int(rng.choice([1, 2, 5, 33, 150]))
        parts.append(batch.run(x[i : i + size]))
        i += size
    got = np.concatenate(parts)
    assert np.array_equal(got.view(np.int64), expected.view(np.int64))
    assert np.array_equal(batch.state.view(np.int64), live.state.view(np.int64))
    assert batch.ready == live.ready



ROLLING_LONG = [
    (name, {"window": w})
    for name, smallest in (
        ("rolling_sum", 1), ("rolling_mean", 1), ("rolling_std", 2), ("rolling_zscore", 2), ("sma", 1), ("wma", 1)
    )
    for w in (smallest, 7, 70, 90)
]


@pytest.mark.parametrize(("name", "params"), ROLLING_LONG, ids=[f"{n}-{p['window']}" for n, p in ROLLING_LONG])
@pytest.mark.parametrize("nan_frac", [0.0, 0.2])
def test_long_rolling_run_from_a_mid_ring_state_continues_as_the_step_kernel(
    name: str, params: dict, nan_frac: float
) -> None:
    # One run many windows long, entered with the ring position part-way round: after the
    # first window the batch loop reads the leaving values and every exact recomputation
    # from the input column and writes the ring only at the end. The outputs, the state
    # after the run and the steps that follow must be the step kernel's, bit for bit.
    x = messy_series(23, 3000, nan_frac, const_run=True)
    live = Stepper(name, **params)
    batch = Stepper(name, **params)
    for v in x[:13].tolist():
        live.update(v)
        batch.update(v)
    expected = np.array([live.update(v) for v in x[13:2800].tolist()])
    got = batch.run(x[13:2800])
    assert np.array_equal(got.view(np.int64), expected.view(np.int64))
    assert np.array_equal(batch.state.view(np.int64), live.state.view(np.int64))
    after_live = np.array([live.update(v) for v in x[2800:].tolist()])
    after_batch = np.array([batch.update(v) for v in x[2800:].tolist()])
    assert np.array_equal(after_batch.view(np.int64), after_live.view(np.int64))
