"""Numba step kernels, one module per group of features, and the single-feature drivers.

Importing this package imports every group module (``core``, ``ta``, ``stats``,
``regime``, ``flow``, ``book``), registers their ``KINDS`` and checks that each
kind id lies in its module's range. :func:`dispatch` routes a kind id to its
group's dispatcher; the single-feature drivers :func:`step` and :func:`step1`
go through it. :func:`runner` gives a batch loop specialised to
one kind (the kind id is a compile-time constant, so the branch folds away and
the kernel is inlined into the loop). A live update and a batch run therefore
execute the same step kernel on the same state, bit for bit.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from numba import njit
from numba.core import cgutils, types
from numba.extending import intrinsic
from numba.np.arrayobj import populate_array

from tradebus.errors import FeatureError
from tradebus.features.blas_probe import probe_blas_lazily

probe_blas_lazily()  # before the first compiled call imports numba.np.arraymath with a scipy.linalg import

from tradebus.features.kernels import book, core, flow, regime, stats, ta  # noqa: E402
from tradebus.features.registry import register  # noqa: E402

__all__ = ["GROUPS", "dispatch", "runner", "step", "step1", "window"]

#: (module, first id, last id) of every kernel group.
GROUPS = ((core, 1, 99), (ta, 100, 199), (stats, 200, 299), (regime, 300, 399), (flow, 400, 499), (book, 500, 599))


def _register_groups() -> None:
    for module, low, high in GROUPS:
        for kind in module.KINDS:
            if not low <= kind.kind_id <= high:
                raise FeatureError(
                    f"feature kind {kind.name!r} of {module.__name__} has id {kind.kind_id}, outside {low}-{high}"
                )
        register(*module.KINDS)


_register_groups()

_core_dispatch = core.dispatch
_core_batch = core.batch
_ta_dispatch = ta.dispatch
_stats_dispatch = stats.dispatch
_regime_dispatch = regime.dispatch
_flow_dispatch = flow.dispatch
_book_dispatch = book.dispatch


@intrinsic
def window(typingctx: object, arr: types.Array, start: types.Integer, length: types.Integer) -> tuple:
    """``arr[start:start + length]`` of a 1-D C-contiguous array as an unmanaged view (njit only).

    No bounds normalisation and no reference count: the caller guarantees
    ``0 <= start <= start + length <= len(arr)`` and that ``arr`` outlives the view
    (the bank's plan is validated when it is built).
    """
    if not (isinstance(arr, types.Array) and arr.ndim == 1 and arr.layout == "C"):
        return None

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        src = context.make_array(signature.args[0])(context, builder, value=args[0])
        begin = context.cast(builder, args[1], signature.args[1], types.intp)
        size = context.cast(builder, args[2], signature.args[2], types.intp)
        out = context.make_array(signature.return_type)(context, builder)
        populate_array(
            out,
            data=builder.gep(src.data, [begin]),
            shape=cgutils.pack_array(builder, [size]),
            strides=cgutils.pack_array(builder, [src.itemsize]),
            itemsize=src.itemsize,
            meminfo=None,
        )
        return out._getvalue()

    return arr(arr, start, length), codegen


@njit(cache=True, inline="always")
def dispatch(kind_id: int, state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """Call the step kernel of ``kind_id`` through its group's dispatcher (by id range)."""
    if kind_id < 100:
        _core_dispatch(kind_id, state, params, x, out)
    elif kind_id < 200:
        _ta_dispatch(kind_id, state, params, x, out)
    elif kind_id < 300:
        _stats_dispatch(kind_id, state, params, x, out)
    elif kind_id < 400:
        _regime_dispatch(kind_id, state, params, x, out)
    elif kind_id < 500:
        _flow_dispatch(kind_id, state, params, x, out)
    else:
        _book_dispatch(kind_id, state, params, x, out)


@njit(cache=True)
def step(kind_id: int, state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """One event of one feature: ``x`` already holds the inputs, ``out`` receives the outputs."""
    dispatch(kind_id, state, params, x, out)


@njit(cache=True)
def step1(kind_id: int, state: np.ndarray, params: np.ndarray, x: np.ndarray, out: np.ndarray, x0: float) -> float:
    """One event of a single-input feature given as a scalar; returns the first output."""
    x[0] = x0
    dispatch(kind_id, state, params, x, out)
    return out[0]


_RUN_SIGNATURE = (
    types.float64[::1],
    types.float64[::1],
    types.Array(types.float64, 1, "C", readonly=True),
    types.int64,
    types.float64[::1],
    types.int64,
)


@functools.cache
def runner(kind_id: int) -> Any:
    """The batch loop of one kind: ``run(state, params, inputs, n_in, result, n_out)``.

    ``inputs`` is the flattened C-order (n, n_in) input matrix and ``result`` the
    flattened (n, n_out) output matrix; row ``i`` of the outputs is written by the
    step of row ``i``, in order, directly in place (no copies, no per-row views
    with reference counts). ``kind_id`` is a closure constant, which Numba folds
    into the code and into the cache key, so each kind gets its own cached loop
    with its step kernel inlined. Compiled (or loaded) for its one signature on
    first use. Kinds with a batch loop of their own (``core.batch``: the header in
    registers) take it instead.
    """
    kid = int(kind_id)

    @njit(cache=True, _nrt=False)
    def run_kind(
        state: np.ndarray, params: np.ndarray, inputs: np.ndarray, n_in: int, result: np.ndarray, n_out: int
    ) -> None:
        for i in range(result.shape[0] // n_out):
            dispatch(kid, state, params, window(inputs, i * n_in, n_in), window(result, i * n_out, n_out))

    if kid in core.BATCH_KINDS:

        @njit(cache=True, _nrt=False)
        def run_batch(
            state: np.ndarray, params: np.ndarray, inputs: np.ndarray, n_in: int, result: np.ndarray, n_out: int
        ) -> None:
            _core_batch(kid, state, params, inputs, result)

        run_kind = run_batch
    run_kind.compile(_RUN_SIGNATURE)
    run_kind.disable_compile()
    return run_kind
