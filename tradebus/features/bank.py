"""The feature bank: every feature of one instrument, updated in one compiled call per event.

Layout
------
A bank keeps everything in one float64 *workspace* vector, so that a Python call
passes a single array to Numba::

    [ values | ready | x | params | table | state ]

* ``values``: the fields of every event type (:data:`~tradebus.features.spec.EVENT_FIELDS`,
  NaN until the first event of that type) followed by every feature output, in
  :attr:`FeatureBank.columns` order. :attr:`FeatureBank.values` is a live view of it
  and :meth:`FeatureBank.slot` gives an index into it.
* ``ready``: one flag per feature: its kernel's ready flag AND the ready flags of
  every feature it reads (readiness propagates).
* ``x``: scratch inputs of a feature whose input values are not adjacent.
* ``params``: the kernels' packed parameters; ``table``: ``(state offset, state
  length)`` per feature; ``state``: the kernels' state rows.

Everything before ``params`` has a size fixed by the bank's *structure* (kinds and
wiring), so the compiled drivers of :mod:`tradebus.features.drivers`, generated per
structure, address it with constants; state offsets, which depend on parameter
values, are read from ``table``.

Per event, the bank's generated ``on_<event>`` writes the event fields and calls
every step kernel driven by that event in dependency order. The batch runners
(:meth:`FeatureBank.run_bars` ...) loop over the same compiled function, so they
are bit-identical to live updates.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from tradebus.errors import FeatureError, did_you_mean
from tradebus.features import drivers
from tradebus.features.drivers import FIELD_BASE as _FIELD_BASE
from tradebus.features.drivers import N_FIELDS as _N_FIELDS
from tradebus.features.registry import FeatureKind, get_kind
from tradebus.features.spec_base import EVENT_FIELDS, EVENTS, PlainSpec, plain_specs

if TYPE_CHECKING:
    from tradebus.features.spec import FeatureSpec

__all__ = ["BankSnapshot", "FeatureBank"]

@dataclass(frozen=True)
class _Feature:
    spec: FeatureSpec | PlainSpec
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


def _loaded(specs: Iterable[FeatureSpec | Mapping[str, Any]] | Mapping[str, Any]) -> list[FeatureSpec | PlainSpec]:
    """``specs`` as a bank reads them: plain specs where plain dicts say it all, else validated by pydantic."""
    plain = plain_specs(specs)
    if plain is None:
        from tradebus.features.spec import load_specs  # pydantic: only for what plain dicts cannot say

        plain = load_specs(specs)
    return plain


_FIELD_EVENTS = _field_events()
#: The inputs of the instrument's own events a feature may name: ``trade.price``, or ``price`` alone.
_INPUTS = (*(f"{event}.{name}" for event in EVENTS for name in EVENT_FIELDS[event]), *_FIELD_EVENTS)


def _names_instrument(ref: str) -> bool:
    """Whether the input ``ref`` starts with an instrument id (``BTCUSDT.BINANCE.close``: a symbol, then its venue's
    upper-case name, ``BINANCE_USDM`` too), which a feature cannot read (its bank is its own instrument's)."""
    parts = ref.split(".")
    return len(parts) >= 3 and parts[1].replace("_", "").isalpha() and parts[1].isupper()


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
    Building a bank compiles the drivers of its structure (or loads them from
    Numba's on-disk cache, see :mod:`tradebus.features.drivers`) for every event
    type that drives one of its features, so no compilation lands on the first
    event. The typed entry points ``update_bar``, ``update_trade`` and ``update_quote``
    are bound per instance to the compiled drivers (no Python frame in between);
    their arguments are converted to int64/float64 as ``int()`` and ``float()``
    would. ``update_book`` is a method that hands C-contiguous float64 arrays
    straight to its driver and copies anything else to that form first.
    """

    def __init__(self, specs: Iterable[FeatureSpec | Mapping[str, Any]] | Mapping[str, Any]) -> None:
        self._specs: list[FeatureSpec | PlainSpec] = _loaded(specs)
        self._features = self._resolve(self._specs)
        self._build_layout()
        self._module: ModuleType | None = drivers.load_module(self._source) if self._plans else None
        for event in EVENTS:
            if event != "book":  # update_book stays a method: it copies what the driver cannot take
                setattr(self, f"update_{event}", functools.partial(self._entry(event), self._ws))
        self._on_book: Callable[..., None] = functools.partial(self._entry("book"), self._ws)

    @staticmethod
    def driving_events(specs: Iterable[FeatureSpec | Mapping[str, Any]] | Mapping[str, Any]) -> dict[str, str]:
        """The event (bar/trade/quote/book) driving each feature of a bank of ``specs``, by name; nothing compiled.

        The specs are checked as building the bank checks them, with nothing compiled (a bank compiles its drivers:
        on a cold cache a daemon's warm-up took 93 s before it met a bad spec): a daemon refuses one before its warm-up.

        Raises
        ------
        FeatureError
            As :class:`FeatureBank` raises it for a spec that cannot be built (names the feature).
        """
        return {feature.spec.name: feature.on for feature in FeatureBank._resolve(_loaded(specs))}

    def _drivers(self, event: str) -> ModuleType:
        """The driver module of ``event``: the bank's own, or the shared field-only one."""
        if event in self._plans:
            assert self._module is not None
            return self._module
        return drivers.fields_only()

    def _entry(self, event: str) -> Callable[..., None]:
        """The compiled live driver of ``event`` (workspace first)."""
        return drivers.live_entry(self._drivers(event), event)

    def _runner(self, event: str) -> Any:
        """The compiled batch runner of ``event``, compiled or loaded on first use."""
        return drivers.batch_runner(self._drivers(event), event)

    # ------------------------------------------------------------------ resolution
    @staticmethod
    def _resolve(specs: Sequence[FeatureSpec | PlainSpec]) -> list[_Feature]:
        by_name: dict[str, FeatureSpec | PlainSpec] = {}
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
                hint = (
                    ": a feature reads its own instrument's events and features; combine two instruments in the "
                    "strategy (self.features(instrument_id), or tradebus.features.pairs.KalmanHedge as the built-in "
                    "pairs strategy does)"
                ) if _names_instrument(ref) else did_you_mean(ref, [*by_name, *_INPUTS])
                raise FeatureError(f"feature {spec.name!r}: unknown input {ref!r} (not an event field or feature){hint}")
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
        specs: Sequence[FeatureSpec | PlainSpec],
        refs: dict[str, tuple[str, ...]],
        by_name: dict[str, FeatureSpec | PlainSpec],
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
        spec: FeatureSpec | PlainSpec,
        refs: tuple[str, ...],
        by_name: dict[str, FeatureSpec | PlainSpec],
        events: dict[str, str],
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
        r_off = n_values
        x_off = r_off + n_feat
        p_off = x_off + max((len(f.inputs) for f in feats), default=1)
        t_off = p_off + sum(len(f.params) for f in feats)
        s_off = t_off + 2 * n_feat
        ws = np.zeros(s_off + sum(state_sizes), dtype=np.float64)
        ws[:r_off] = np.nan
        plans: dict[str, list[drivers.FeatureCall]] = {}
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
            ws[t_off + 2 * i], ws[t_off + 2 * i + 1] = s_cur, size
            plans.setdefault(f.on, []).append(
                drivers.FeatureCall(
                    name=name,
                    kind=f.kind.name,
                    step=f.kind.step,
                    table=t_off + 2 * i,
                    params=(p_cur, len(f.params)),
                    inputs=f.inputs,
                    x=x_off,
                    outputs=(o_cur, len(outputs)),
                    ready=r_off + i,
                    deps=tuple(r_off + d for d in f.deps),
                )
            )
            s_cur += size
            p_cur += len(f.params)
            o_cur += len(outputs)
        for event in EVENTS:
            for j, field in enumerate(EVENT_FIELDS[event]):
                self._slots.setdefault(f"{event}.{field}", _FIELD_BASE[event] + j)
        self._plans = {event: tuple(calls) for event, calls in plans.items()}
        self._source = drivers.source(self._plans) if plans else ""
        self._ws = ws
        self._initial = ws.copy()
        self._p_off, self._s_off = p_off, s_off
        self._values = ws[:r_off]
        self._ready = ws[r_off:x_off]
        digest = hashlib.blake2b(self._source.encode(), digest_size=8)
        digest.update(ws[p_off:s_off].tobytes())
        digest.update(np.asarray(state_sizes, dtype=np.int64).tobytes())
        self._fingerprint = digest.hexdigest()

    # ------------------------------------------------------------------ description
    @property
    def specs(self) -> tuple[FeatureSpec, ...]:
        """The validated specs, in the order given."""
        from tradebus.features.spec import FeatureSpec

        self._specs = [s if isinstance(s, FeatureSpec) else FeatureSpec.model_validate(s.as_dict()) for s in self._specs]
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
        ws = self._ws
        return BankSnapshot(self._fingerprint, np.concatenate([ws[: self._p_off], ws[self._s_off :]]))

    def restore(self, snapshot: BankSnapshot) -> None:
        """Continue from ``snapshot``; it must come from a bank with the same specs.

        Raises
        ------
        FeatureError
            The snapshot belongs to a different layout.
        """
        head = self._p_off
        size = head + self._ws.shape[0] - self._s_off
        if snapshot.fingerprint != self._fingerprint or snapshot.data.shape != (size,):
            raise FeatureError("bank snapshot does not match this bank's specs (different features or parameters)")
        self._ws[:head] = snapshot.data[:head]
        self._ws[self._s_off :] = snapshot.data[head:]

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
        self._entry("bar")(self._ws, ts_event_ns, open, high, low, close, volume)

    def update_trade(self, ts_event_ns: int, price: float, size: float, side: float) -> None:
        """Update every trade-driven feature with one trade (``side`` +1 buy / -1 sell / 0 unknown)."""
        self._entry("trade")(self._ws, ts_event_ns, price, size, side)

    def update_quote(
        self, ts_event_ns: int, bid: float, ask: float, bid_size: float, ask_size: float
    ) -> None:
        """Update every quote-driven feature with one best bid/ask (``mid`` is derived)."""
        self._entry("quote")(self._ws, ts_event_ns, bid, ask, bid_size, ask_size)

    def update_book(
        self, ts_event_ns: int, bid_px: np.ndarray, bid_sz: np.ndarray, ask_px: np.ndarray, ask_sz: np.ndarray
    ) -> None:
        """Update every book-driven feature with the top levels (1-D arrays, best first).

        Up to :data:`~tradebus.features.spec.BOOK_LEVELS` levels are copied (missing
        ones are NaN); ``bid``/``ask``/``bid_size``/``ask_size``/``mid`` are derived
        from level 0. The arrays are read, never kept: pass views of your book.
        C-contiguous float64 arrays go straight to the compiled driver; anything else
        that is 1-D (a column view ``bids[:, 0]`` of ``OrderBook.top()``, a list, ints)
        is copied to that form first.

        Raises
        ------
        FeatureError
            An argument is not one-dimensional or not numeric.
        """
        try:
            self._on_book(ts_event_ns, bid_px, bid_sz, ask_px, ask_sz)
        except TypeError:
            # the frozen dispatcher refused an argument's type before running (no state changed)
            sides = []
            for name, data in (("bid_px", bid_px), ("bid_sz", bid_sz), ("ask_px", ask_px), ("ask_sz", ask_sz)):
                try:
                    arr = np.ascontiguousarray(data, dtype=np.float64)
                except (TypeError, ValueError) as exc:
                    raise FeatureError(f"update_book: {name} must be numbers, got {data!r} ({exc})") from None
                if arr.ndim != 1:
                    raise FeatureError(f"update_book: {name} must be 1-D (levels, best first), got shape {arr.shape}")
                sides.append(arr)
            self._on_book(ts_event_ns, *sides)

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
        cols = [self._column(name, col, n) for name, col in columns.items()]
        result = self._result(n)
        self._runner(event)(self._ws, ts, *cols, result)
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
        self._runner("book")(self._ws, ts, *sides, result)
        return result
