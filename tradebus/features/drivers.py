"""Compiled event drivers of a feature bank, generated per bank layout and cached on disk.

Why generated code
------------------
A generic plan walker (read the plan row, branch on the kind id, build four array
views, call the kernel) costs 8-18 ns of bookkeeping per feature on top of the
kernel itself, and Numba cannot specialise it to one bank. So each bank *layout*
gets its own small module: for every event type that drives features, a function
``on_<event>`` that writes the event fields and then calls each feature's step
kernel directly, in dependency order, with constant offsets into the bank's
workspace; and ``run_<event>``, the batch loop over ``on_<event>``. LLVM inlines
the kernels into them (:func:`~tradebus.features.kernels.inline_call`), so a bank
update is a straight run of kernel bodies; and ``on_<event>`` is itself inlined
(``inline="always"``) into the compiled loops that call it (``run_<event>``, the
accelerated tier's simulator), where a call would make the loop spill its live
registers around it on every event. Called from Python it is an ordinary
compiled function.

The source depends only on the bank's *structure* (kinds, wiring, dependency
order), never on parameter values or feature names: parameters and state offsets
are read from the workspace, so banks that differ only in windows or spans share
one module, even when their names carry them (EmaCross's ``ema_10``), and a sweep
over them compiles once. The module is written once to
``<cache_dir>/drivers/bank_<hash>.py`` (the hash is that of the text) and imported
from there, so Numba's file cache works for it like for any source file; a new
structure costs one compilation (about 0.1 s per feature), later processes load it
from the cache in milliseconds.

The same :func:`load_module` writes and imports the per-kind batch loops of
:func:`tradebus.features.kernels.runner` (``kind_<hash>.py``).

Bars also get ``step_bar``: ``on_bar`` writing only the bar fields the bank's features
read (most read no time, whose division is the dearest store), for a loop over many bars
that writes the last one's fields itself (the accelerated tier's simulator); it takes the
features' state offsets and lengths as a tuple (``bar_table(ws)``, read once before the loop)
instead of reading them from the workspace at every bar.

Live updates and batch runs execute the same compiled ``on_<event>``, so they are
bit-identical. Events that drive no feature of a bank use the shared field-only
module (:func:`fields_only`), compiled once for every bank.

Workspace layout (float64, see :class:`~tradebus.features.bank.FeatureBank`)::

    [ values | ready | x | params | table | state ]

``values`` starts with the fields of every event type (``EVENT_FIELDS`` order,
from index 0); ``table`` holds ``(state offset, state length)`` per feature.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from numba import njit, types

from tradebus.errors import FeatureError
from tradebus.features import cache_dir
from tradebus.features.spec_base import BOOK_LEVELS, EVENT_FIELDS, EVENTS

__all__ = [
    "EVENT_ARGS",
    "FIELD_BASE",
    "N_FIELDS",
    "FeatureCall",
    "batch_runner",
    "fields_only",
    "import_name",
    "live_entry",
    "load_module",
    "source",
]


def _field_bases() -> dict[str, int]:
    bases: dict[str, int] = {}
    at = 0
    for event in EVENTS:
        bases[event] = at
        at += len(EVENT_FIELDS[event])
    return bases


#: Index in the values vector of the first field (``time``) of each event type.
FIELD_BASE: dict[str, int] = _field_bases()
#: Number of event-field slots before the first feature output.
N_FIELDS: int = sum(len(fields) for fields in EVENT_FIELDS.values())
_BAR, _TRADE, _QUOTE, _BOOK = (FIELD_BASE[e] for e in EVENTS)
_BOOK_LEVEL0 = _BOOK + 6  # after time, bid, ask, bid_size, ask_size, mid

#: Argument names (after the workspace and ``ts_event_ns``) of each event's drivers.
EVENT_ARGS: dict[str, tuple[str, ...]] = {
    "bar": ("open_", "high", "low", "close", "volume"),
    "trade": ("price", "size", "side"),
    "quote": ("bid", "ask", "bid_size", "ask_size"),
    "book": ("bid_px", "bid_sz", "ask_px", "ask_sz"),
}

_F64 = types.float64
_I64 = types.int64
_WS = types.float64[::1]
# Batch inputs are only read: typed read-only, so that read-only views (pandas) pass without a copy.
_IN_COL = types.Array(types.float64, 1, "C", readonly=True)
_IN_TS = types.Array(types.int64, 1, "C", readonly=True)
_IN_MATRIX = types.Array(types.float64, 2, "C", readonly=True)
_MATRIX = types.float64[:, ::1]
_LIVE_SIGNATURES: dict[str, tuple[Any, ...]] = {
    "bar": (_WS, _I64, _F64, _F64, _F64, _F64, _F64),
    "trade": (_WS, _I64, _F64, _F64, _F64),
    "quote": (_WS, _I64, _F64, _F64, _F64, _F64),
    "book": (_WS, _I64, _IN_COL, _IN_COL, _IN_COL, _IN_COL),
}
_BATCH_SIGNATURES: dict[str, tuple[Any, ...]] = {
    "bar": (_WS, _IN_TS, _IN_COL, _IN_COL, _IN_COL, _IN_COL, _IN_COL, _MATRIX),
    "trade": (_WS, _IN_TS, _IN_COL, _IN_COL, _IN_COL, _MATRIX),
    "quote": (_WS, _IN_TS, _IN_COL, _IN_COL, _IN_COL, _IN_COL, _MATRIX),
    "book": (_WS, _IN_TS, _IN_MATRIX, _IN_MATRIX, _IN_MATRIX, _IN_MATRIX, _MATRIX),
}


# ============================================================================ field writers
# Called first by every on_<event>; the only code that knows where event fields live.


@njit(cache=True, _nrt=False)
def write_bar(
    ws: np.ndarray, ts_event_ns: int, open_: float, high: float, low: float, close: float, volume: float
) -> None:
    """Write a bar's fields (``time`` in float seconds) into the values vector."""
    ws[_BAR] = ts_event_ns / 1e9
    ws[_BAR + 1] = open_
    ws[_BAR + 2] = high
    ws[_BAR + 3] = low
    ws[_BAR + 4] = close
    ws[_BAR + 5] = volume


@njit(cache=True, _nrt=False)
def write_trade(ws: np.ndarray, ts_event_ns: int, price: float, size: float, side: float) -> None:
    """Write a trade's fields into the values vector."""
    ws[_TRADE] = ts_event_ns / 1e9
    ws[_TRADE + 1] = price
    ws[_TRADE + 2] = size
    ws[_TRADE + 3] = side


@njit(cache=True, _nrt=False)
def write_quote(ws: np.ndarray, ts_event_ns: int, bid: float, ask: float, bid_size: float, ask_size: float) -> None:
    """Write a quote's fields into the values vector (``mid`` derived)."""
    ws[_QUOTE] = ts_event_ns / 1e9
    ws[_QUOTE + 1] = bid
    ws[_QUOTE + 2] = ask
    ws[_QUOTE + 3] = bid_size
    ws[_QUOTE + 4] = ask_size
    ws[_QUOTE + 5] = (bid + ask) / 2.0


@njit(cache=True, _nrt=False)
def _write_side(ws: np.ndarray, at: int, levels: np.ndarray) -> None:
    n = min(levels.shape[0], BOOK_LEVELS)
    for i in range(n):
        ws[at + i] = levels[i]
    for i in range(n, BOOK_LEVELS):
        ws[at + i] = np.nan


@njit(cache=True, _nrt=False)
def write_book(
    ws: np.ndarray, ts_event_ns: int, bid_px: np.ndarray, bid_sz: np.ndarray, ask_px: np.ndarray, ask_sz: np.ndarray
) -> None:
    """Write the top ``BOOK_LEVELS`` levels (missing ones NaN) and the level-0 summary fields."""
    lv = _BOOK_LEVEL0
    _write_side(ws, lv, bid_px)
    _write_side(ws, lv + BOOK_LEVELS, bid_sz)
    _write_side(ws, lv + 2 * BOOK_LEVELS, ask_px)
    _write_side(ws, lv + 3 * BOOK_LEVELS, ask_sz)
    ws[_BOOK] = ts_event_ns / 1e9
    ws[_BOOK + 1] = ws[lv]
    ws[_BOOK + 2] = ws[lv + 2 * BOOK_LEVELS]
    ws[_BOOK + 3] = ws[lv + BOOK_LEVELS]
    ws[_BOOK + 4] = ws[lv + 3 * BOOK_LEVELS]
    ws[_BOOK + 5] = (ws[_BOOK + 1] + ws[_BOOK + 2]) / 2.0


# ============================================================================ source generation


@dataclass(frozen=True)
class FeatureCall:
    """One feature of a bank as its generated driver calls it (all offsets are workspace indices).

    Parameters
    ----------
    name, kind
        Feature and kind names (for the comments of the generated source).
    step
        The kind's ``@njit`` step kernel; it must be a module-level name of its module.
    table
        Index of the feature's ``(state offset, state length)`` pair.
    params
        ``(offset, length)`` of the packed parameters.
    inputs
        Index of every input value, in the kind's input order.
    x
        Offset of the scratch input buffer (used when the inputs are not adjacent).
    outputs
        ``(offset, count)`` of the outputs in the values vector.
    ready
        Index of the feature's ready flag.
    deps
        Indices of the ready flags of the features it reads.
    """

    name: str
    kind: str
    step: Any
    table: int
    params: tuple[int, int]
    inputs: tuple[int, ...]
    x: int
    outputs: tuple[int, int]
    ready: int
    deps: tuple[int, ...]


def import_name(function: Any) -> tuple[str, str] | None:
    """``(module, attribute)`` under which generated code can import the ``@njit`` ``function``.

    ``None`` unless ``function`` is a Numba dispatcher bound to its own name at the
    top level of its module.
    """
    py_func = getattr(function, "py_func", None)
    module = getattr(py_func, "__module__", None)
    attr = getattr(py_func, "__name__", None)
    if not (module and attr) or getattr(sys.modules.get(module), attr, None) is not function:
        return None
    return module, attr


def _step_import(call: FeatureCall) -> tuple[str, str]:
    """``(module, attribute)`` under which the generated module imports the step kernel."""
    where = import_name(call.step)
    if where is None:
        raise FeatureError(
            f"feature {call.name!r}: the step kernel of kind {call.kind!r} must be an @njit function "
            "defined at module level (the bank's generated driver imports it by name)"
        )
    return where


def _feature_lines(call: FeatureCall, alias: str, table: tuple[str, str] | None = None) -> list[str]:
    """The driver's lines of one feature; ``table``: the expressions of its state offset and length
    (by default read from the workspace's table)."""
    n_in = len(call.inputs)
    adjacent = all(b == a + 1 for a, b in zip(call.inputs, call.inputs[1:], strict=False))
    lines = [f"    # {call.kind}"]
    if n_in and adjacent:
        x_at = call.inputs[0]
    else:
        x_at = call.x
        lines += [f"    ws[{call.x + j}] = ws[{slot}]" for j, slot in enumerate(call.inputs)]
    offset, length = table or (f"int(ws[{call.table}])", f"int(ws[{call.table + 1}])")
    lines.append(f"    s = {offset}")
    lines.append(
        f"    inline_call({alias}, window(ws, s, {length}), "
        f"window(ws, {call.params[0]}, {call.params[1]}), "
        f"window(ws, {x_at}, {n_in}), window(ws, {call.outputs[0]}, {call.outputs[1]}))"
    )
    ready = " and ".join(["ws[s] != 0.0", *(f"ws[{d}] != 0.0" for d in call.deps)])
    lines.append(f"    ws[{call.ready}] = 1.0 if {ready} else 0.0")
    return lines


def _step_bar_lines(calls: tuple[FeatureCall, ...], imports: dict[tuple[str, str], str]) -> list[str]:
    """``step_bar``: ``on_bar`` writing only the bar fields its features read, for a loop over many
    bars that calls ``write_bar`` on its last one (the time's division and the other stores are
    the per-bar work a feature that reads none of them does not need).

    Its last argument is ``bar_table(ws)``, the features' state offsets and lengths read once
    before the loop: read from the workspace at every bar, as ``on_bar`` does, they are a load
    and a float-to-int conversion each, which the compiler cannot hoist (the steps write the
    same array)."""
    read = {slot for call in calls for slot in call.inputs}
    args = ("ts_event_ns / 1e9", *EVENT_ARGS["bar"])
    lines = ["", "", '@njit(cache=True, _nrt=False, inline="always")', "def bar_table(ws):"]
    entries = [f"int(ws[{call.table + j}])" for call in calls for j in (0, 1)]
    lines.append(f"    return ({', '.join(entries)})")
    lines += ["", "", '@njit(cache=True, _nrt=False, inline="always")',
              f"def step_bar(ws, ts_event_ns, {', '.join(EVENT_ARGS['bar'])}, table):"]  # fmt: skip
    head = len(lines)
    lines += [f"    ws[{_BAR + j}] = {value}" for j, value in enumerate(args) if _BAR + j in read]
    for k, call in enumerate(calls):
        lines += _feature_lines(call, imports[_step_import(call)], (f"table[{2 * k}]", f"table[{2 * k + 1}]"))
    if len(lines) == head:
        lines.append("    pass")
    return lines


def source(plans: dict[str, tuple[FeatureCall, ...]]) -> str:
    """Python source of the drivers of the events in ``plans`` (features in update order).

    Raises
    ------
    FeatureError
        A step kernel cannot be imported by name.
    """
    imports: dict[tuple[str, str], str] = {}
    for calls in plans.values():
        for call in calls:
            imports.setdefault(_step_import(call), f"_k{len(imports)}")
    head = [
        '"""Drivers of one feature-bank layout, generated by tradebus.features.drivers: do not edit."""',
        "",
        "from numba import njit",
        "",
        "from tradebus.features.drivers import write_bar, write_book, write_quote, write_trade",
        "from tradebus.features.kernels import inline_call, window",
    ]
    head += [f"from {module} import {attr} as {alias}" for (module, attr), alias in sorted(imports.items())]
    body: list[str] = []
    for event in EVENTS:
        if event not in plans:
            continue
        args = ", ".join(EVENT_ARGS[event])
        body += ["", "", '@njit(cache=True, _nrt=False, inline="always")', f"def on_{event}(ws, ts_event_ns, {args}):"]
        body.append(f"    write_{event}(ws, ts_event_ns, {args})")
        for call in plans[event]:
            body += _feature_lines(call, imports[_step_import(call)])
        if event == "bar":
            body += _step_bar_lines(plans[event], imports)
        rows = ", ".join(f"{a}[i]" for a in EVENT_ARGS[event])
        body += [
            "",
            "",
            "@njit(cache=True, _nrt=False)",
            f"def run_{event}(ws, ts_event_ns, {args}, result):",
            "    n_out = result.shape[1]",
            "    for i in range(ts_event_ns.shape[0]):",
            f"        on_{event}(ws, ts_event_ns[i], {rows})",
            "        for j in range(n_out):",
            f"            result[i, j] = ws[{N_FIELDS} + j]",
        ]
    return "\n".join(head + body) + "\n"


# ============================================================================ modules on disk


def _drivers_dir() -> Path:
    return cache_dir() / "drivers"


#: Held while a generated module is imported or an entry point compiled: a daemon's warm-up thread (one stopped
#: daemon's may still run while the next one's starts) and the event loop may ask for the same one at once.
_LOCK = threading.RLock()

#: Generated modules whose import is complete, by name: returned without the lock (``sys.modules`` also holds one
#: being imported).
_LOADED: dict[str, ModuleType] = {}


def load_module(text: str, stem: str = "bank") -> ModuleType:
    """Import the generated module with source ``text``, writing it to the cache directory first if needed.

    The file is ``<cache_dir>/drivers/<stem>_<hash of text>.py`` and the module
    ``_tradebus_<stem>_<hash>``; an existing file is never rewritten (its
    modification time is part of Numba's cache key). Thread-safe: a module another
    thread is importing is returned once its import is done; one already imported is
    returned at once, whatever another thread compiles meanwhile.

    Raises
    ------
    FeatureError
        The drivers directory cannot be written.
    """
    digest = hashlib.blake2b(text.encode(), digest_size=10).hexdigest()
    loaded = _LOADED.get(f"_tradebus_{stem}_{digest}")
    if loaded is not None:
        return loaded
    with _LOCK:
        return _load_module(text, stem, digest)


def _load_module(text: str, stem: str, digest: str) -> ModuleType:
    name = f"_tradebus_{stem}_{digest}"
    loaded = sys.modules.get(name)
    if loaded is not None:
        return loaded
    folder = _drivers_dir()
    path = folder / f"{stem}_{digest}.py"
    try:
        if not path.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{stem}_", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(tmp, path)
    except OSError as exc:
        raise FeatureError(f"cannot write the generated kernel module {path}: {exc}") from exc
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise FeatureError(f"cannot import the generated kernel module {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    _LOADED[name] = module
    return module


_FIELDS_ONLY: ModuleType | None = None


def fields_only() -> ModuleType:
    """The shared driver module of events that drive no feature (fields written, nothing else)."""
    global _FIELDS_ONLY  # noqa: PLW0603 (one module per process, built on first use)
    if _FIELDS_ONLY is None:
        _FIELDS_ONLY = load_module(source({event: () for event in EVENTS}))
    return _FIELDS_ONLY


# ============================================================================ binding


_COMPILED: dict[tuple[str, str], Any] = {}


def _frozen(module: ModuleType, name: str, signature: tuple[Any, ...]) -> Any:
    """Compile (or load) ``module.name`` for ``signature`` once per process; return its entry point.

    The dispatcher is then frozen, so an unexpected argument type raises instead of
    compiling a new specialisation on the hot path (thread-safe: one compiles, the others get its entry).
    """
    key = (module.__name__, name)
    entry = _COMPILED.get(key)
    if entry is None:
        with _LOCK:
            entry = _COMPILED.get(key)
            if entry is None:
                dispatcher = getattr(module, name)
                entry = _COMPILED[key] = dispatcher.compile(signature)
                dispatcher.disable_compile()
    return entry


def live_entry(module: ModuleType, event: str) -> Any:
    """Compile (or load from the cache) ``on_<event>`` for its one signature; return the fastest safe callable.

    For bar, trade and quote this is the compiled entry point that
    ``Dispatcher.compile`` returns: it converts each argument as the dispatcher
    would (``float()``/``int()`` semantics, ``TypeError``/``ValueError`` before any
    state changes) but skips the per-call type resolution (~100 ns). Book events
    take caller arrays, so they keep the dispatcher, which checks dtype, rank and
    layout.
    """
    entry = _frozen(module, f"on_{event}", _LIVE_SIGNATURES[event])
    return getattr(module, "on_book") if event == "book" else entry


def batch_runner(module: ModuleType, event: str) -> Any:
    """Compile (or load) ``run_<event>`` for its one signature and return the frozen dispatcher."""
    _frozen(module, f"run_{event}", _BATCH_SIGNATURES[event])
    return getattr(module, f"run_{event}")
