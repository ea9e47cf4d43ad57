"""The batch loop of each kind (``kernels.runner``): a generated module naming that kind's kernel.

Compiling the loop of one kind must compile that kind's step kernel and nothing
else (no group dispatcher over the other kinds), a second process must load it
from Numba's file cache, and a kind registered after the fact gets a loop too.
Parity of the loops with live updates, for every kind, is in ``test_feat_parity.py``
and ``test_feat_batch_loops.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numba import njit

from tradebus.errors import FeatureError
from tradebus.features import drivers
from tradebus.features import kernels as K
from tradebus.features.registry import FeatureKind, all_kinds

REPO = Path(__file__).resolve().parents[2]

LOOPS_CHILD = """
import json, sys
from tradebus.features import kernels as K
from tradebus.features.registry import all_kinds, get_kind
runs = {name: K.runner(get_kind(name).kind_id) for name in sys.argv[1:]}
def counts(dispatcher):
    return [sum(dispatcher.stats.cache_hits.values()), sum(dispatcher.stats.cache_misses.values())]
print(json.dumps({
    "compiled": sorted(k.name for k in all_kinds() if k.step.signatures),
    "dispatchers": sorted(m.__name__ for m, _, _ in K.GROUPS if m.dispatch.signatures),
    "loops": {name: counts(run) for name, run in runs.items()},
}))
"""

LATER_KIND = '''
from numba import njit

from tradebus.features.registry import FeatureKind, Param


@njit(cache=True, _nrt=False)
def spread_sum_step(state, params, x, out):
    state[0] = 1.0
    state[1] += x[0] - x[1]
    out[0] = state[1] * params[0]
    out[1] = x[0] - x[1]


def _size(params):
    return 2


SPREAD_SUM = FeatureKind(
    "test_spread_sum", 990, ("a", "b"), ("total", "last"), (Param("scale", 1.0),), _size, spread_sum_step
)
'''

LATER_CHILD = """
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from tradebus.features.registry import register
from tradebus.features.stepper import Stepper
import later_kind
register(later_kind.SPREAD_SUM)
a = np.array([3.0, 5.0, -2.0, 7.0, 1.0, 4.0])
b = np.array([1.0, 1.0, 4.0, -3.0, 2.0, 0.0])
s = Stepper("test_spread_sum", scale=2.0)
first = s.run(a[:2], b[:2])
rest = s.run(a[2:], b[2:])
got = np.vstack([first, rest])
expected = np.column_stack([np.cumsum(a - b) * 2.0, a - b])
assert np.array_equal(got, expected), (got, expected)
assert s.state.tolist() == [1.0, float(np.sum(a - b))]
print("ok")
"""


def _python(code: str, *args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=REPO, env=env or dict(os.environ), capture_output=True,
        text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def test_a_kind_loop_compiles_its_own_kernel_alone_and_a_new_process_loads_it(tmp_path: Path) -> None:
    # rsi and rolling_corr are step kinds of groups whose dispatcher is a compiled if-chain
    # over every kind of the group; ema has a batch loop of its own (FeatureKind.batch).
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    names = ("rsi", "rolling_corr", "ema")
    first = json.loads(_python(LOOPS_CHILD, *names, env=env))
    assert first["compiled"] == ["rolling_corr", "rsi"]
    assert first["dispatchers"] == []
    assert first["loops"] == {name: [0, 1] for name in names}
    second = json.loads(_python(LOOPS_CHILD, *names, env=env))
    assert second["loops"] == {name: [1, 0] for name in names}
    assert second["compiled"] == []  # the cached loop holds its kernel's code: nothing else is loaded


@pytest.mark.parametrize("kind", all_kinds(), ids=lambda k: k.name)
def test_every_kind_has_a_loop_module_importing_its_own_kernel(kind: FeatureKind) -> None:
    module = drivers.load_module(K.loop_source(kind), stem="kind")
    assert module.kernel is (kind.step if kind.batch is None else kind.batch)
    assert (kind.batch is not None) == (kind.kind_id in K.core.BATCH_KINDS)


def test_a_kind_registered_later_gets_a_batch_loop(tmp_path: Path) -> None:
    (tmp_path / "later_kind.py").write_text(LATER_KIND)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    assert _python(LATER_CHILD, str(tmp_path), env=env) == "ok"


def _made_by_a_factory() -> object:
    @njit
    def step(state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
        out[0] = x[0]

    return step


def test_a_kernel_that_cannot_be_imported_by_name_is_refused_with_the_kind_named() -> None:
    kind = FeatureKind("closure_kind", 991, ("x",), ("value",), (), lambda p: 1, _made_by_a_factory())
    with pytest.raises(FeatureError, match="closure_kind.*module level"):
        K.loop_source(kind)


def test_a_batch_loop_needs_one_input_and_one_output() -> None:
    core = K.core
    kind = FeatureKind("two_inputs", 992, ("a", "b"), ("value",), (), lambda p: 1, core.ema_step, batch=core.ema_batch)
    with pytest.raises(FeatureError, match="two_inputs.*one input and one output"):
        K.loop_source(kind)


def test_an_unknown_kind_id_has_no_loop() -> None:
    with pytest.raises(FeatureError, match="no registered feature kind has id 989"):
        K.runner(989)
