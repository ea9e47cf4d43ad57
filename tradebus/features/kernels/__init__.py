"""Numba step kernels, one module per group of features, and the single-feature drivers.

Importing this package imports every group module (``core``, ``ta``, ``stats``,
``regime``, ``flow``, ``book``), registers their ``KINDS`` and checks that each
kind id lies in its module's range. :func:`dispatch` routes a kind id to its
group's dispatcher; the single-feature drivers :func:`step` and :func:`step1`
go through it (one compilation of every kernel, shared by all kinds).
:func:`runner` gives the batch loop of one kind: a small generated module that
imports that kind's step kernel (or its ``FeatureKind.batch`` loop) by name and
calls it directly, so compiling it compiles that kernel and nothing else, and
Numba's file cache keeps it like any source file. A live update and a batch run
therefore execute the same step kernel on the same state, bit for bit.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from llvmlite import ir as llvm_ir
from numba import njit
from numba.core import cgutils, types
from numba.extending import intrinsic
from numba.np.arrayobj import populate_array

from tradebus.errors import FeatureError
from tradebus.features import drivers
from tradebus.features.numba_start import defer_cffi_parser, load_cache_hits_lightly, probe_blas_lazily

probe_blas_lazily()  # before the first compiled call imports numba.np.arraymath with a scipy.linalg import
defer_cffi_parser()  # and numba.core.typing.cffi_utils with a cffi.FFI() (pycparser)
load_cache_hits_lightly()  # and a cache hit refreshes neither context (the compiler still does, first)

from tradebus.features.kernels import book, core, flow, regime, stats, ta  # noqa: E402
from tradebus.features.registry import FeatureKind, all_kinds, register  # noqa: E402

__all__ = ["GROUPS", "dispatch", "inline_call", "loop_source", "runner", "step", "step1", "window"]

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


@intrinsic
def inline_call(
    typingctx: object, kernel: types.Dispatcher, state: types.Array, params: types.Array, x: types.Array,
    out: types.Array,
) -> tuple:
    """``kernel(state, params, x, out)``, a call LLVM must inline (njit only).

    A step kernel called normally is a separate machine function for the larger
    kinds (LLVM's inlining threshold): each call passes its four arrays as 28
    values (7 per array), mostly on the stack, and the caller spills its registers around it.
    The call emitted here carries LLVM's ``alwaysinline`` attribute instead. Unlike
    Numba's ``inline="always"``, which re-types the callee's IR in every caller
    (a 20-feature bank driver took 24 s to compile instead of 1.8 s), this inlines
    the optimised LLVM function: compile time stays that of a call. Same
    instructions, no fast-math: the values are those of a call, bit for bit.
    """
    if not isinstance(kernel, types.Dispatcher):
        return None
    inner = kernel.get_call_type(typingctx, (state, params, x, out), {})

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        result = context.get_function(kernel, inner)(builder, args[1:])
        target = kernel.dispatcher.overloads[inner.args].fndesc.mangled_name
        for block in builder.function.blocks:
            for instr in block.instructions:
                if isinstance(instr, llvm_ir.CallInstr) and getattr(instr.callee, "name", None) == target:
                    instr.attributes.add("alwaysinline")
        return result

    return inner.return_type(kernel, state, params, x, out), codegen


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

_LOOP_HEAD = '''"""Batch loop of feature kind {name!r}, generated by tradebus.features.kernels.runner: do not edit."""

from numba import njit

from tradebus.features.kernels import inline_call, window
from {module} import {attr} as kernel


@njit(cache=True, _nrt=False)
def run(state, params, inputs, n_in, result, n_out):
'''
_STEP_LOOP = """\
    for i in range(result.shape[0] // n_out):
        inline_call(kernel, state, params, window(inputs, i * n_in, n_in), window(result, i * n_out, n_out))
"""
_BATCH_LOOP = "    kernel(state, params, inputs, result)\n"


def loop_source(kind: FeatureKind) -> str:
    """Python source of the module holding the batch loop ``run`` of ``kind`` (see :func:`runner`).

    Raises
    ------
    FeatureError
        The kind's kernel cannot be imported by name, or it has a ``batch`` loop
        but not one input and one output.
    """
    kernel = kind.step if kind.batch is None else kind.batch
    where = drivers.import_name(kernel)
    if where is None:
        raise FeatureError(
            f"feature kind {kind.name!r}: its {'step' if kind.batch is None else 'batch'} kernel must be an @njit "
            "function defined at module level (the generated batch loop imports it by name)"
        )
    if kind.batch is not None and (len(kind.inputs), len(kind.outputs)) != (1, 1):
        raise FeatureError(f"feature kind {kind.name!r}: a batch loop needs one input and one output")
    head = _LOOP_HEAD.format(name=kind.name, module=where[0], attr=where[1])
    return head + (_STEP_LOOP if kind.batch is None else _BATCH_LOOP)


@functools.cache
def runner(kind_id: int) -> Any:
    """The batch loop of one kind: ``run(state, params, inputs, n_in, result, n_out)``.

    ``inputs`` is the flattened C-order (n, n_in) input matrix and ``result`` the
    flattened (n, n_out) output matrix; row ``i`` of the outputs is written by the
    step of row ``i``, in order, directly in place (no copies, no per-row views
    with reference counts). Kinds with a loop of their own (``FeatureKind.batch``,
    e.g. the core kinds that keep their header in registers) run it instead.

    The loop lives in a module generated from :func:`loop_source` and imported from
    the cache directory (:func:`tradebus.features.drivers.load_module`), which names
    the kind's kernel directly: compiling it compiles that kernel alone (no
    dispatcher over the other kinds), and a later process loads it from Numba's
    file cache. Compiled (or loaded) for its one signature on first use.

    Raises
    ------
    FeatureError
        ``kind_id`` is not a registered kind, or its kernel cannot be imported by name.
    """
    kinds = {kind.kind_id: kind for kind in all_kinds()}
    kind = kinds.get(int(kind_id))
    if kind is None:
        raise FeatureError(f"no registered feature kind has id {kind_id}")
    run_kind = drivers.load_module(loop_source(kind), stem="kind").run
    if not run_kind.signatures:  # the module outlives this function's cache (one module per text)
        run_kind.compile(_RUN_SIGNATURE)
        run_kind.disable_compile()
    return run_kind
