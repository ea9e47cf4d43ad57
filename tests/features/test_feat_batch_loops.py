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
