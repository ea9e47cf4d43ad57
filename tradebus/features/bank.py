"""The feature bank: every feature of one instrument, updated in one compiled call per event.

Layout
------
A bank keeps everything in one float64 *workspace* vector, so that a Python call
passes a single array to Numba (each array argument costs ~40 ns to unbox)::

    [ header | values | ready | state | params | x buffer | plans ]

* ``values``: the fields of every event type (:data:`~tradebus.features.spec.EVENT_FIELDS`,
  NaN until the first event of that type) followed by every feature output, in
  :attr:`FeatureBank.columns` order. :attr:`FeatureBank.values` is a live view of it
  and :meth:`FeatureBank.slot` gives an index into it.
* ``ready``: one flag per feature: its kernel's ready flag AND the ready flags of
  every feature it reads (readiness propagates).
* ``state`` / ``params``: the kernels' state rows and packed parameters.
* ``plans``: one table per event type, one row per feature driven by that event, in
  dependency order: ``kind_id, state offset/len, params offset/len, output
  offset/count, feature index, n_inputs, n_deps, input slots..., dep indices...``.

Per event, a cached ``@njit`` driver writes the event fields and walks the plan,
calling :func:`tradebus.features.kernels.dispatch` (which routes by kind-id range
to the group dispatchers). The batch runners (:meth:`FeatureBank.run_bars` ...)
call the same plan walker row by row, so they are bit-identical to live updates.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit, types

from tradebus.errors import FeatureError
from tradebus.features.kernels import dispatch, window
from tradebus.features.registry import FeatureKind, get_kind
from tradebus.features.spec import BOOK_LEVELS, EVENT_FIELDS, EVENTS, FeatureSpec, load_specs

__all__ = ["BankSnapshot", "FeatureBank"]

# header slots
_H_VALUES, _H_READY, _H_STATE, _H_PARAMS, _H_X, _H_WIDTH = range(6)
_H_PLAN = 6  # plan offset of event e at _H_PLAN + 2 e, row count at _H_PLAN + 2 e + 1
_HEADER = _H_PLAN + 2 * len(EVENTS)
# plan row columns
_P_KIND, _P_SOFF, _P_SLEN, _P_POFF, _P_PLEN, _P_OOFF, _P_NOUT, _P_FEAT, _P_NIN, _P_NDEP = range(10)
_P_IN = 10

_EVENT_CODE = {e: i for i, e in enumerate(EVENTS)}
_FIELD_BASE: dict[str, int] = {}
_base = 0
for _event in EVENTS:
    _FIELD_BASE[_event] = _base
    _base += len(EVENT_FIELDS[_event])
_N_FIELDS = _base
_BAR, _TRADE, _QUOTE, _BOOK = (_FIELD_BASE[e] for e in EVENTS)
_BOOK_LEVEL0 = _BOOK + 6  # after time, bid, ask, bid_size, ask_size, mid


# ============================================================================ compiled drivers


@njit(cache=True, _nrt=False)
def _apply(ws: np.ndarray, event: int) -> None:
    """Update, in plan order, every feature driven by ``event`` (fields already written)."""
    plan = int(ws[_H_PLAN + 2 * event])
    rows = int(ws[_H_PLAN + 2 * event + 1])
    width = int(ws[_H_WIDTH])
    x_off = int(ws[_H_X])
    r_off = int(ws[_H_READY])
    for r in range(rows):
        b = plan + r * width
        so = int(ws[b + _P_SOFF])
        n_in = int(ws[b + _P_NIN])
        for i in range(n_in):
            ws[x_off + i] = ws[int(ws[b + _P_IN + i])]
        dispatch(
            int(ws[b + _P_KIND]),
            window(ws, so, int(ws[b + _P_SLEN])),
            window(ws, int(ws[b + _P_POFF]), int(ws[b + _P_PLEN])),
            window(ws, x_off, n_in),
            window(ws, int(ws[b + _P_OOFF]), int(ws[b + _P_NOUT])),
        )
        ready = ws[so] != 0.0
        d0 = b + _P_IN + n_in
        for d in range(int(ws[b + _P_NDEP])):
            if ws[r_off + int(ws[d0 + d])] == 0.0:
                ready = False
        ws[r_off + int(ws[b + _P_FEAT])] = 1.0 if ready else 0.0


@njit(cache=True)
def _on_bar(ws: np.ndarray, ts_event_ns: int, open_: float, high: float, low: float, close: float, volume: float) -> None:
    v = int(ws[_H_VALUES]) + _BAR
    ws[v] = ts_event_ns / 1e9
    ws[v + 1] = open_
    ws[v + 2] = high
    ws[v + 3] = low
    ws[v + 4] = close
    ws[v + 5] = volume
    _apply(ws, 0)


@njit(cache=True)
def _on_trade(ws: np.ndarray, ts_event_ns: int, price: float, size: float, side: float) -> None:
    v = int(ws[_H_VALUES]) + _TRADE
    ws[v] = ts_event_ns / 1e9
    ws[v + 1] = price
    ws[v + 2] = size
    ws[v + 3] = side
    _apply(ws, 1)


@njit(cache=True)
def _on_quote(ws: np.ndarray, ts_event_ns: int, bid: float, ask: float, bid_size: float, ask_size: float) -> None:
    v = int(ws[_H_VALUES]) + _QUOTE
    ws[v] = ts_event_ns / 1e9
    ws[v + 1] = bid
    ws[v + 2] = ask
    ws[v + 3] = bid_size
    ws[v + 4] = ask_size
    ws[v + 5] = (bid + ask) / 2.0
    _apply(ws, 2)


@njit(cache=True)
def _write_side(ws: np.ndarray, at: int, levels: np.ndarray) -> None:
    n = min(levels.shape[0], BOOK_LEVELS)
    for i in range(n):
        ws[at + i] = levels[i]
    for i in range(n, BOOK_LEVELS):
        ws[at + i] = np.nan


@njit(cache=True)
def _on_book(
    ws: np.ndarray, ts_event_ns: int, bid_px: np.ndarray, bid_sz: np.ndarray, ask_px: np.ndarray, ask_sz: np.ndarray
) -> None:
    v = int(ws[_H_VALUES]) + _BOOK
    lv = int(ws[_H_VALUES]) + _BOOK_LEVEL0
    _write_side(ws, lv, bid_px)
    _write_side(ws, lv + BOOK_LEVELS, bid_sz)
    _write_side(ws, lv + 2 * BOOK_LEVELS, ask_px)
    _write_side(ws, lv + 3 * BOOK_LEVELS, ask_sz)
    ws[v] = ts_event_ns / 1e9
    ws[v + 1] = ws[lv]
    ws[v + 2] = ws[lv + 2 * BOOK_LEVELS]
    ws[v + 3] = ws[lv + BOOK_LEVELS]
    ws[v + 4] = ws[lv + 3 * BOOK_LEVELS]
    ws[v + 5] = (ws[v + 1] + ws[v + 2]) / 2.0
    _apply(ws, 3)


@njit(cache=True)
def _run_scalar_events(
    ws: np.ndarray, event: int, ts_event_ns: np.ndarray, fields: np.ndarray, first: int, result: np.ndarray
) -> None:
    """Feed bar/trade/quote rows; ``result[i]`` gets ``values[first:first + result.shape[1]]`` after row ``i``."""
    n_out = result.shape[1]
    vo = int(ws[_H_VALUES])
    for i in range(ts_event_ns.shape[0]):
        if event == 0:
            _on_bar(ws, ts_event_ns[i], fields[i, 0], fields[i, 1], fields[i, 2], fields[i, 3], fields[i, 4])
        elif event == 1:
            _on_trade(ws, ts_event_ns[i], fields[i, 0], fields[i, 1], fields[i, 2])
        else:
            _on_quote(ws, ts_event_ns[i], fields[i, 0], fields[i, 1], fields[i, 2], fields[i, 3])
        for j in range(n_out):
            result[i, j] = ws[vo + first + j]


@njit(cache=True)
def _run_book_events(
    ws: np.ndarray,
    ts_event_ns: np.ndarray,
    bid_px: np.ndarray,
    bid_sz: np.ndarray,
    ask_px: np.ndarray,
    ask_sz: np.ndarray,
    first: int,
    result: np.ndarray,
) -> None:
    """Feed book rows (levels arrays of shape (n, L)); outputs as in :func:`_run_scalar_events`."""
    n_out = result.shape[1]
    vo = int(ws[_H_VALUES])
    for i in range(ts_event_ns.shape[0]):
        _on_book(ws, ts_event_ns[i], bid_px[i], bid_sz[i], ask_px[i], ask_sz[i])
        for j in range(n_out):
            result[i, j] = ws[vo + first + j]


_F64 = types.float64
_I64 = types.int64
_WS = types.float64[::1]
_SIGNATURES = {
    _on_bar: (_WS, _I64, _F64, _F64, _F64, _F64, _F64),
    _on_trade: (_WS, _I64, _F64, _F64, _F64),
    _on_quote: (_WS, _I64, _F64, _F64, _F64, _F64),
    _on_book: (_WS, _I64, _WS, _WS, _WS, _WS),
}


_FROZEN: set[Any] = set()


def _frozen(driver: Any) -> Any:
    """Compile (or load from cache) an event driver for its one signature, then freeze it.

    Freezing makes Numba convert e.g. an ``int`` price to float64 instead of
    silently compiling a new specialisation on the hot path.
    """
    if driver not in _FROZEN:
        driver.compile(_SIGNATURES[driver])
        driver.disable_compile()
        _FROZEN.add(driver)
    return driver


def _compiled_event_drivers() -> None:
    """Compile or load every event driver (used by :func:`~tradebus.features.warmup.warm_up`)."""
    for driver in _SIGNATURES:
        _frozen(driver)


# ============================================================================ layout


@dataclass(frozen=True)
class _Feature:
    spec: FeatureSpec
    kind: FeatureKind
    params: np.ndarray
    on: str
    inputs: tuple[int, ...]  # value slots (relative to the values region)
    deps: tuple[int, ...]  # feature indices


@dataclass(frozen=True)
class BankSnapshot:
    """A copy of a bank's mutable state (values, ready flags, kernel states).

    Restore it with :meth:`FeatureBank.restore` on a bank built from the same specs.
    """

    fingerprint: str
    data: np.ndarray


def _field_events() -> dict[str, tuple[str, ...]]:
    where: dict[str, list[str]] = {}
    for event in EVENTS:
        for name in EVENT_FIELDS[event]:
            where.setdefault(name, []).append(event)
    return {name: tuple(events) for name, events in where.items()}


_FIELD_EVENTS = _field_events()


class FeatureBank:
    """All features of one instrument, updated per event in one compiled call.

    Parameters
    ----------
    specs
        :class:`FeatureSpec` objects or plain dicts (see :func:`load_specs`).

    Raises
    ------
    FeatureError
        Malformed spec, duplicate name, unknown kind, bad parameter, unknown or
        ambiguous input, wrong number of inputs, dependency cycle; the message
        names the feature.

    Notes
    -----
    The typed entry points ``update_bar``, ``update_trade``, ``update_quote`` and
    ``update_book`` are bound per instance to the compiled drivers (no Python
    frame in between); their arguments are converted to int64/float64 by Numba.
    """

    def __init__(self, specs: Iterable[FeatureSpec | Mapping[str, Any]] | Mapping[str, Any]) -> None:
        self._specs = load_specs(specs)
        self._features = self._resolve(self._specs)
        self._build_layout()
        for attr, driver in (
            ("update_bar", _on_bar), ("update_trade", _on_trade), ("update_quote", _on_quote), ("update_book", _on_book)
        ):
            self._bind_lazily(attr, driver)

    def _bind_lazily(self, attr: str, driver: Any) -> None:
        """Bind ``attr`` to the frozen driver partially applied to the workspace.

        A driver already loaded is bound at once; otherwise the first call loads it
        (so a bank that never sees quotes never loads the quote driver) and rebinds.
        """
        if driver in _FROZEN:
            setattr(self, attr, functools.partial(driver, self._ws))
            return

        def first_call(*args: Any) -> None:
            bound = functools.partial(_frozen(driver), self._ws)
            setattr(self, attr, bound)
            bound(*args)

        setattr(self, attr, first_call)

    # ------------------------------------------------------------------ resolution
    @staticmethod
    def _resolve(specs: Sequence[FeatureSpec]) -> list[_Feature]:
        by_name: dict[str, FeatureSpec] = {}
        for spec in specs:
            if spec.name in by_name:
                raise FeatureError(f"feature {spec.name!r} is defined twice")
            by_name[spec.name] = spec
        kinds: dict[str, FeatureKind] = {}
        params: dict[str, np.ndarray] = {}
        refs: dict[str, tuple[str, ...]] = {}
        for spec in specs:
            try:
                kind = get_kind(spec.kind)
                packed = kind.pack(dict(spec.params))
                kind.state_size(packed)
            except FeatureError as exc:
                detail = str(exc).removeprefix(f"feature {spec.kind!r}: ")
                raise FeatureError(f"feature {spec.name!r} (kind {spec.kind!r}): {detail}") from None
            kinds[spec.name] = kind
            params[spec.name] = packed
            declared = spec.inputs
            if declared is None:
                if not all(i in _FIELD_EVENTS for i in kind.inputs):
                    raise FeatureError(
                        f"feature {spec.name!r}: kind {kind.name!r} needs input(s) {kind.inputs}; set 'input'"
                    )
                declared = kind.inputs
            if len(declared) != len(kind.inputs):
                raise FeatureError(
                    f"feature {spec.name!r}: kind {kind.name!r} takes {len(kind.inputs)} input(s) {kind.inputs}, "
                    f"got {len(declared)}: {list(declared)}"
                )
            for ref in declared:
                head, _, tail = ref.partition(".")
                if head in by_name:
                    continue
                if head in EVENTS and tail in EVENT_FIELDS[head]:
                    continue
                if not tail and head in _FIELD_EVENTS:
                    continue
                raise FeatureError(f"feature {spec.name!r}: unknown input {ref!r} (not an event field or feature)")
            refs[spec.name] = tuple(declared)

        order = FeatureBank._topological(specs, refs, by_name)
        index = {name: i for i, name in enumerate(order)}
        out_base: dict[str, int] = {}
        cursor = _N_FIELDS
        for name in order:
            out_base[name] = cursor
            cursor += len(kinds[name].outputs)
        events: dict[str, str] = {}
        features: list[_Feature] = []
        for name in order:
            spec = by_name[name]
            kind = kinds[name]
            on = FeatureBank._infer_event(spec, refs[name], by_name, events)
            events[name] = on
            slots: list[int] = []
            deps: list[int] = []
            for ref in refs[name]:
                head, _, tail = ref.partition(".")
                if head in by_name:
                    outputs = kinds[head].outputs
                    if tail and tail not in outputs:
                        raise FeatureError(
                            f"feature {name!r}: input {ref!r}: {head!r} has outputs {outputs}, not {tail!r}"
                        )
                    slots.append(out_base[head] + (outputs.index(tail) if tail else 0))
                    if index[head] not in deps:
                        deps.append(index[head])
                else:
                    event, field = (head, tail) if tail else (FeatureBank._field_event(name, head, on), head)
                    slots.append(_FIELD_BASE[event] + EVENT_FIELDS[event].index(field))
            features.append(_Feature(spec, kind, params[name], on, tuple(slots), tuple(deps)))
        return features

    @staticmethod
    def _topological(
        specs: Sequence[FeatureSpec], refs: dict[str, tuple[str, ...]], by_name: dict[str, FeatureSpec]
    ) -> list[str]:
        """Dependency order, ties broken by spec order (deterministic)."""
        parents = {s.name: {r.partition(".")[0] for r in refs[s.name]} & by_name.keys() for s in specs}
        done: list[str] = []
        placed: set[str] = set()
        pending = [s.name for s in specs]
        while pending:
            for name in pending:
                if parents[name] <= placed:
                    done.append(name)
                    placed.add(name)
                    pending.remove(name)
                    break
            else:
                cycle = FeatureBank._find_cycle(pending, parents)
                raise FeatureError(f"feature {cycle[0]!r}: dependency cycle {' -> '.join(cycle)}")
        return done

    @staticmethod
    def _find_cycle(pending: list[str], parents: dict[str, set[str]]) -> list[str]:
        start = pending[0]
        path = [start]
        seen = {start: 0}
        node = start
        while True:
            node = sorted(p for p in parents[node] if p in pending)[0]
            if node in seen:
                return [*path[seen[node] :], node]
            seen[node] = len(path)
            path.append(node)

    @staticmethod
    def _infer_event(
        spec: FeatureSpec, refs: tuple[str, ...], by_name: dict[str, FeatureSpec], events: dict[str, str]
    ) -> str:
        if spec.on is not None:
            return spec.on
        candidates: set[str] = set()
        for ref in refs:
            head, _, tail = ref.partition(".")
            if head in by_name:
                candidates.add(events[head])
            elif tail:
                candidates.add(head)
            elif len(_FIELD_EVENTS[head]) == 1:
                candidates.add(_FIELD_EVENTS[head][0])
        if len(candidates) == 1:
            return candidates.pop()
        if candidates:
            raise FeatureError(
                f"feature {spec.name!r}: inputs {list(refs)} come from several event types "
                f"{sorted(candidates)}; set 'on'"
            )
        raise FeatureError(f"feature {spec.name!r}: cannot infer the driving event from {list(refs)}; set 'on'")

    @staticmethod
    def _field_event(feature: str, field: str, on: str) -> str:
        owners = _FIELD_EVENTS[field]
        if on in owners:
            return on
        if len(owners) == 1:
            return owners[0]
        raise FeatureError(
            f"feature {feature!r}: field {field!r} exists in {list(owners)}; qualify it (e.g. {owners[0]}.{field})"
        )

    # ------------------------------------------------------------------ layout
    def _build_layout(self) -> None:
        feats = self._features
        n_feat = len(feats)
        n_values = _N_FIELDS + sum(len(f.kind.outputs) for f in feats)
        state_sizes = [int(f.kind.state_size(f.params)) for f in feats]
        max_in = max((len(f.inputs) for f in feats), default=0)
        max_dep = max((len(f.deps) for f in feats), default=0)
        width = _P_IN + max_in + max_dep
        v_off = _HEADER
        r_off = v_off + n_values
        s_off = r_off + n_feat
        p_off = s_off + sum(state_sizes)
        x_off = p_off + sum(len(f.params) for f in feats)
        plan_off = x_off + max(max_in, 1)
        total = plan_off + n_feat * width
        ws = np.zeros(total, dtype=np.float64)
        ws[v_off:r_off] = np.nan
        ws[_H_VALUES], ws[_H_READY], ws[_H_STATE], ws[_H_PARAMS], ws[_H_X], ws[_H_WIDTH] = (
            v_off, r_off, s_off, p_off, x_off, width,
        )
        rows: dict[str, list[np.ndarray]] = {e: [] for e in EVENTS}
        self._slots: dict[str, int] = {}
        self._columns: list[str] = []
        self._index: dict[str, int] = {}
        s_cur, p_cur, o_cur = s_off, p_off, _N_FIELDS
        for i, (f, size) in enumerate(zip(feats, state_sizes, strict=True)):
            name = f.spec.name
            self._index[name] = i
            outputs = f.kind.outputs
            for j, out in enumerate(outputs):
                column = name if len(outputs) == 1 else f"{name}.{out}"
                self._columns.append(column)
                self._slots[column] = o_cur + j
                self._slots[f"{name}.{out}"] = o_cur + j
            self._slots.setdefault(name, o_cur)
            ws[p_cur : p_cur + len(f.params)] = f.params
            row = np.zeros(width, dtype=np.float64)
            row[:_P_IN] = (
                f.kind.kind_id, s_cur, size, p_cur, len(f.params), v_off + o_cur, len(outputs), i,
                len(f.inputs), len(f.deps),
            )
            row[_P_IN : _P_IN + len(f.inputs)] = [v_off + s for s in f.inputs]
            row[_P_IN + len(f.inputs) : _P_IN + len(f.inputs) + len(f.deps)] = f.deps
            rows[f.on].append(row)
            s_cur += size
            p_cur += len(f.params)
            o_cur += len(outputs)
        at = plan_off
        for e, event in enumerate(EVENTS):
            ws[_H_PLAN + 2 * e] = at
            ws[_H_PLAN + 2 * e + 1] = len(rows[event])
            for row in rows[event]:
                ws[at : at + width] = row
                at += width
        for event in EVENTS:
            for j, field in enumerate(EVENT_FIELDS[event]):
                self._slots.setdefault(f"{event}.{field}", _FIELD_BASE[event] + j)
        self._ws = ws
        self._initial = ws.copy()
        self._v_off, self._r_off, self._s_off, self._mutable_end = v_off, r_off, s_off, p_off
        self._values = ws[v_off:r_off]
        self._ready = ws[r_off:s_off]
        self._fingerprint = hashlib.blake2b(
            np.concatenate([ws[:_HEADER], ws[p_off:]]).tobytes(), digest_size=8
        ).hexdigest()

    # ------------------------------------------------------------------ description
    @property
    def specs(self) -> tuple[FeatureSpec, ...]:
        """The validated specs, in the order given."""
        return tuple(self._specs)

    @property
    def names(self) -> tuple[str, ...]:
        """Feature names in update (dependency) order."""
        return tuple(f.spec.name for f in self._features)

    @property
    def columns(self) -> tuple[str, ...]:
        """Output columns: ``name`` for single-output features, ``name.output`` otherwise."""
        return tuple(self._columns)

    def event_of(self, name: str) -> str:
        """The event type (bar/trade/quote/book) that updates feature ``name``."""
        return self._features[self._feature_index(name)].on

    def input_slots(self, name: str) -> tuple[int, ...]:
        """Indices in :attr:`values` that feature ``name`` reads, in input order."""
        return self._features[self._feature_index(name)].inputs

    def _feature_index(self, name: str) -> int:
        try:
            return self._index[name.partition(".")[0]]
        except KeyError:
            raise FeatureError(f"no feature {name!r} in this bank; features: {', '.join(self._index)}") from None

    # ------------------------------------------------------------------ read access
    @property
    def values(self) -> np.ndarray:
        """Live view of the values vector (event fields, then feature outputs); index it with :meth:`slot`."""
        return self._values

    def slot(self, name: str) -> int:
        """Index in :attr:`values` of a feature output (``name``, ``name.output``) or a field (``bar.close``)."""
        try:
            return self._slots[name]
        except KeyError:
            raise FeatureError(f"no feature output or field {name!r} in this bank; columns: {self._columns}") from None

    def value(self, name: str) -> float:
        """Current value of a feature output, ready or not (NaN before its first event)."""
        return float(self._values[self.slot(name)])

    def ready(self, name: str) -> bool:
        """Whether feature ``name`` and every feature it reads have finished their warm-up."""
        return bool(self._ready[self._feature_index(name)] != 0.0)

    def get(self, name: str, default: float = math.nan) -> float:
        """Current value of ``name`` if it is ready, else ``default``."""
        if self._ready[self._feature_index(name)] != 0.0:
            return float(self._values[self.slot(name)])
        return default

    # ------------------------------------------------------------------ state
    def snapshot(self) -> BankSnapshot:
        """Copy of the mutable state (values, ready flags, kernel states)."""
        return BankSnapshot(self._fingerprint, self._ws[self._v_off : self._mutable_end].copy())

    def restore(self, snapshot: BankSnapshot) -> None:
        """Continue from ``snapshot``; it must come from a bank with the same specs.

        Raises
        ------
        FeatureError
            The snapshot belongs to a different layout.
        """
        size = self._mutable_end - self._v_off
        if snapshot.fingerprint != self._fingerprint or snapshot.data.shape != (size,):
            raise FeatureError("bank snapshot does not match this bank's specs (different features or parameters)")
        self._ws[self._v_off : self._mutable_end] = snapshot.data

    @property
    def state(self) -> BankSnapshot:
        """Snapshot of the mutable state; assign a snapshot to restore it."""
        return self.snapshot()

    @state.setter
    def state(self, snapshot: BankSnapshot) -> None:
        self.restore(snapshot)

    def reset(self) -> None:
        """Back to the freshly built state (no event seen)."""
        self._ws[:] = self._initial

    # ------------------------------------------------------------------ typed entry points (documentation)
    # The instance attributes bound in __init__ shadow these methods; they document the
    # signatures and are what a subclass calling super() gets.
    def update_bar(
        self, ts_event_ns: int, open: float, high: float, low: float, close: float, volume: float
    ) -> None:
        """Update every bar-driven feature with one bar (``ts_event_ns`` = bar close time, int ns)."""
        _on_bar(self._ws, ts_event_ns, open, high, low, close, volume)

    def update_trade(self, ts_event_ns: int, price: float, size: float, side: float) -> None:
        """Update every trade-driven feature with one trade (``side`` +1 buy / -1 sell / 0 unknown)."""
        _on_trade(self._ws, ts_event_ns, price, size, side)

    def update_quote(
        self, ts_event_ns: int, bid: float, ask: float, bid_size: float, ask_size: float
    ) -> None:
        """Update every quote-driven feature with one best bid/ask (``mid`` is derived)."""
        _on_quote(self._ws, ts_event_ns, bid, ask, bid_size, ask_size)

    def update_book(
        self, ts_event_ns: int, bid_px: np.ndarray, bid_sz: np.ndarray, ask_px: np.ndarray, ask_sz: np.ndarray
    ) -> None:
        """Update every book-driven feature with the top levels (float64 1-D arrays, best first).

        Up to :data:`~tradebus.features.spec.BOOK_LEVELS` levels are copied (missing
        ones are NaN); ``bid``/``ask``/``bid_size``/``ask_size``/``mid`` are derived
        from level 0. The arrays are read, never kept: pass views of your book.
        """
        _on_book(self._ws, ts_event_ns, bid_px, bid_sz, ask_px, ask_sz)

    # ------------------------------------------------------------------ batch
    def _result(self, n: int) -> np.ndarray:
        return np.empty((n, len(self._columns)), dtype=np.float64)

    @staticmethod
    def _column(name: str, data: Any, n: int | None, dtype: type = np.float64) -> np.ndarray:
        arr = np.ascontiguousarray(data, dtype=dtype)
        if arr.ndim != 1 or (n is not None and arr.shape[0] != n):
            raise FeatureError(f"batch column {name!r} must be 1-D of length {n}, got shape {arr.shape}")
        return arr

    def _run_scalar(self, event: str, ts_event_ns: Any, columns: dict[str, Any]) -> np.ndarray:
        ts = self._column("ts_event_ns", ts_event_ns, None, np.int64)
        n = ts.shape[0]
        fields = np.empty((n, len(columns)), dtype=np.float64)
        for j, (name, col) in enumerate(columns.items()):
            fields[:, j] = self._column(name, col, n)
        result = self._result(n)
        _run_scalar_events(self._ws, _EVENT_CODE[event], ts, fields, _N_FIELDS, result)
        return result

    def run_bars(self, ts_event_ns: Any, open: Any, high: Any, low: Any, close: Any, volume: Any) -> np.ndarray:
        """Feed a history of bars in one compiled call, continuing from the current state.

        Returns
        -------
        numpy.ndarray
            Shape (n, len(columns)): every feature output after each bar; bit-identical
            to calling :meth:`update_bar` row by row and reading :attr:`values`.
        """
        return self._run_scalar(
            "bar", ts_event_ns, {"open": open, "high": high, "low": low, "close": close, "volume": volume}
        )

    def run_trades(self, ts_event_ns: Any, price: Any, size: Any, side: Any) -> np.ndarray:
        """Feed a history of trades; see :meth:`run_bars`."""
        return self._run_scalar("trade", ts_event_ns, {"price": price, "size": size, "side": side})

    def run_quotes(self, ts_event_ns: Any, bid: Any, ask: Any, bid_size: Any, ask_size: Any) -> np.ndarray:
        """Feed a history of quotes; see :meth:`run_bars`."""
        return self._run_scalar(
            "quote", ts_event_ns, {"bid": bid, "ask": ask, "bid_size": bid_size, "ask_size": ask_size}
        )

    def run_books(self, ts_event_ns: Any, bid_px: Any, bid_sz: Any, ask_px: Any, ask_sz: Any) -> np.ndarray:
        """Feed a history of book tops: level arrays of shape (n, levels); see :meth:`run_bars`."""
        ts = self._column("ts_event_ns", ts_event_ns, None, np.int64)
        n = ts.shape[0]
        sides = []
        for name, data in (("bid_px", bid_px), ("bid_sz", bid_sz), ("ask_px", ask_px), ("ask_sz", ask_sz)):
            arr = np.ascontiguousarray(data, dtype=np.float64)
            if arr.ndim != 2 or arr.shape[0] != n:
                raise FeatureError(f"batch column {name!r} must have shape (n={n}, levels), got {arr.shape}")
            sides.append(arr)
        result = self._result(n)
        _run_book_events(self._ws, ts, *sides, _N_FIELDS, result)
        return result
