"""Framework properties for EVERY registered feature kind (core, ta, stats, regime, flow, book).

Kinds are discovered through ``registry.all_kinds()``, so a kind added to any group
is covered without editing this file (add an entry to ``PARAMS`` if it has required
parameters the generic rule cannot guess). Properties, on random walks with NaN
holes, constant runs and gaps:

* live ``Stepper.update`` row by row == batch ``Stepper.run`` (``np.array_equal``,
  NaN positions included);
* no lookahead: changing inputs after index t leaves outputs at <= t unchanged;
* snapshot/restore mid-stream continues exactly as the uninterrupted run;
* warm-up: every output is NaN while the ready flag is off; on clean data the flag
  turns on exactly after ``kind.warmup(params)`` events when the kind declares it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradebus.features.registry import FeatureKind, Param, all_kinds
from tradebus.features.stepper import Stepper

from feat_helpers import kind_inputs

PARAMS: dict[str, dict[str, Any]] = {
    "ewm_mean": {"span": 5},
    "ewm_var": {"halflife": 4},
    "ewm_std": {"alpha": 0.3},
    "ewm_zscore": {"span": 6},
    "ewm_skew": {"span": 8},
    "ewm_kurt": {"com": 4},
    "cusum": {"threshold": 0.01},
    "garch": {"omega": 1e-6, "alpha": 0.1, "beta": 0.85},
    "hmm": {"transition": [[0.95, 0.05], [0.1, 0.9]], "means": [0.0, 0.0], "stds": [0.005, 0.02]},
    "vpin": {"bucket_volume": 10.0, "n_buckets": 5},
    "hurst": {"window": 16, "max_lag": 4},
    "dcor": {"window": 8},
    "rolling_ols": {"window": 6},
    "rolling_corr": {"window": 6},
    "rolling_cov": {"window": 6},
}

SETTINGS = settings(
    max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
ALL_KINDS = all_kinds()


def _guess(p: Param) -> float:
    """A small valid value for a required parameter (windows of a few events)."""
    if p.integer:
        return float(max(p.low if p.low is not None else 1, min(5, p.high if p.high is not None else 5)))
    low = p.low if p.low is not None else 0.0
    high = p.high if p.high is not None else low + 2.0
    return low + (high - low) / 2.0


def params_for(kind: FeatureKind) -> dict[str, Any]:
    if kind.name in PARAMS:
        return dict(PARAMS[kind.name])
    out: dict[str, Any] = {}
    for p in kind.params:
        if p.default is None:
            out[p.name] = _guess(p)
        elif p.integer and p.name in ("window", "n_buckets", "k_window") and p.default > 8:
            out[p.name] = max(p.low or 1, 8)  # keep warm-up short so the random series exercise it
    return out


def stepper(kind: FeatureKind) -> Stepper:
    return Stepper(kind, **params_for(kind))


def live(s: Stepper, xs: np.ndarray) -> np.ndarray:
    rows = []
    for row in xs:
        s.update(*row.tolist())
        rows.append(s.values)
    return np.asarray(rows, dtype=np.float64).reshape(xs.shape[0], len(s.kind.outputs))


def batch(s: Stepper, xs: np.ndarray) -> np.ndarray:
    return s.run(xs).reshape(xs.shape[0], len(s.kind.outputs))


data_args = {
    "seed": st.integers(0, 2**31 - 1),
    "n": st.integers(1, 260),
    "nan_frac": st.sampled_from([0.0, 0.02, 0.2, 0.6]),
    "const_run": st.booleans(),
}


@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda k: k.name)
@SETTINGS
@given(**data_args)
def test_live_update_equals_batch_run_bit_for_bit(
    kind: FeatureKind, seed: int, n: int, nan_frac: float, const_run: bool
) -> None:
    xs = kind_inputs(kind.inputs, seed, n, nan_frac, const_run)
    a = live(stepper(kind), xs)
    b = batch(stepper(kind), xs)
    assert np.array_equal(a, b, equal_nan=True)


@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda k: k.name)
@SETTINGS
@given(**data_args, cut=st.floats(0.0, 1.0))
def test_outputs_never_depend_on_later_inputs(
    kind: FeatureKind, seed: int, n: int, nan_frac: float, const_run: bool, cut: float
) -> None:
    xs = kind_inputs(kind.inputs, seed, n, nan_frac, const_run)
    t = int(cut * (n - 1))
    perturbed = xs.copy()
    perturbed[t + 1 :] = kind_inputs(kind.inputs, seed + 1, n, 0.1, not const_run)[t + 1 :] * 1.37
    a = batch(stepper(kind), xs)
    b = batch(stepper(kind), perturbed)
    assert np.array_equal(a[: t + 1], b[: t + 1], equal_nan=True)


@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda k: k.name)
@SETTINGS
@given(**data_args, cut=st.floats(0.0, 1.0))
def test_restore_mid_stream_continues_exactly(
    kind: FeatureKind, seed: int, n: int, nan_frac: float, const_run: bool, cut: float
) -> None:
    xs = kind_inputs(kind.inputs, seed, n, nan_frac, const_run)
    t = int(cut * n)
    whole = batch(stepper(kind), xs)
    first = stepper(kind)
    batch(first, xs[:t])
    resumed = Stepper.from_state(first.state, kind, **params_for(kind))
    rest = batch(resumed, xs[t:])
    assert np.array_equal(whole[t:], rest, equal_nan=True)


@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda k: k.name)
@SETTINGS
@given(**data_args)
def test_outputs_are_nan_while_not_ready(
    kind: FeatureKind, seed: int, n: int, nan_frac: float, const_run: bool
) -> None:
    xs = kind_inputs(kind.inputs, seed, n, nan_frac, const_run)
    s = stepper(kind)
    for row in xs:
        s.update(*row.tolist())
        if not s.ready:
            assert all(np.isnan(v) for v in s.values), (kind.name, s.values)


@pytest.mark.parametrize("kind", [k for k in ALL_KINDS if k.warmup is not None], ids=lambda k: k.name)
def test_ready_exactly_after_declared_warmup_on_clean_data(kind: FeatureKind) -> None:
    s = stepper(kind)
    warm = kind.warmup(s._params)  # noqa: SLF001  (the packed params are what warmup takes)
    xs = kind_inputs(kind.inputs, 3, warm + 20, 0.0, False)
    flags = []
    for row in xs:
        s.update(*row.tolist())
        flags.append(s.ready)
    assert flags == [False] * (warm - 1) + [True] * 21, (kind.name, warm, flags.index(True) if True in flags else None)


@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda k: k.name)
def test_fresh_state_is_all_zeros_and_not_ready(kind: FeatureKind) -> None:
    s = stepper(kind)
    assert not s.ready
    assert np.all(s.state == 0.0)
    assert s.state.shape == (kind.state_size(s._params),)  # noqa: SLF001


_BAR_FIELDS = ("close", "volume", "high", "low", "open")


def _bank_specs(kind: FeatureKind) -> tuple[str, list[dict[str, Any]]]:
    """One feature of ``kind`` wired to event fields: its own field names when they are fields, else bar fields."""
    from tradebus.features.spec import EVENT_FIELDS

    for event, fields in EVENT_FIELDS.items():
        if all(i in fields for i in kind.inputs):
            inputs = [f"{event}.{i}" for i in kind.inputs]
            return event, [{"name": "f", "kind": kind.name, "params": params_for(kind), "input": inputs}]
    inputs = [f"bar.{_BAR_FIELDS[j % len(_BAR_FIELDS)]}" for j in range(len(kind.inputs))]
    return "bar", [{"name": "f", "kind": kind.name, "params": params_for(kind), "input": inputs}]


@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda k: k.name)
@settings(max_examples=4, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**31 - 1), nan_frac=st.sampled_from([0.0, 0.1]))
def test_bank_update_equals_bank_run_and_the_stepper(kind: FeatureKind, seed: int, nan_frac: float) -> None:
    from tradebus.features.bank import FeatureBank
    from tradebus.features.spec import EVENT_FIELDS

    event, specs = _bank_specs(kind)
    n = 120
    fields = [f for f in EVENT_FIELDS[event] if f not in ("time", "mid")]
    if event == "book":
        fields = [f for f in fields if f not in ("bid", "ask", "bid_size", "ask_size")]
    data = kind_inputs(tuple(fields), seed, n, nan_frac, True)
    col = {name: np.ascontiguousarray(data[:, j]) for j, name in enumerate(fields)}
    ts = (1_700_000_000 + np.cumsum(np.random.default_rng(seed).integers(1, 3600, n))) * 1_000_000_000
    live = FeatureBank(specs)
    rows = []
    for i in range(n):
        if event == "bar":
            live.update_bar(int(ts[i]), *(col[f][i] for f in ("open", "high", "low", "close", "volume")))
        elif event == "trade":
            live.update_trade(int(ts[i]), col["price"][i], col["size"][i], col["side"][i])
        elif event == "quote":
            live.update_quote(int(ts[i]), *(col[f][i] for f in ("bid", "ask", "bid_size", "ask_size")))
        else:
            sides = [np.array([col[f"{s}_{k}"][i] for k in range(10)]) for s in ("bid_px", "bid_sz", "ask_px", "ask_sz")]
            live.update_book(int(ts[i]), *sides)
        rows.append(live.values[-len(kind.outputs) :].copy())
    bank = FeatureBank(specs)
    if event == "bar":
        out = bank.run_bars(ts, *(col[f] for f in ("open", "high", "low", "close", "volume")))
    elif event == "trade":
        out = bank.run_trades(ts, col["price"], col["size"], col["side"])
    elif event == "quote":
        out = bank.run_quotes(ts, *(col[f] for f in ("bid", "ask", "bid_size", "ask_size")))
    else:
        out = bank.run_books(ts, *(np.column_stack([col[f"{s}_{k}"] for k in range(10)])
                                   for s in ("bid_px", "bid_sz", "ask_px", "ask_sz")))
    assert np.array_equal(np.asarray(rows), out, equal_nan=True)
    names = [ref.split(".")[1] for ref in specs[0]["input"]]
    if all(name == "time" or name in col for name in names):  # derived book fields are checked above only
        xs = np.column_stack([ts / 1e9 if name == "time" else col[name] for name in names])
        assert np.array_equal(batch(stepper(kind), np.ascontiguousarray(xs)), out, equal_nan=True)
