"""The pydantic-free core of feature specs: event types and fields, the name rule, plain specs.

:class:`~tradebus.features.spec.FeatureSpec` is a pydantic model (configs embed it), and
importing pydantic and building the model costs ~0.1 s. A bank built from plain dicts
(the cold-start path: process start to the first bank update) reads them as
:class:`PlainSpec` instead (:func:`plain_specs`), accepting only what the model
would accept unchanged; anything else goes to :func:`~tradebus.features.spec.load_specs`,
which validates it (or names what is wrong) as before. :mod:`tradebus.features.spec`
re-exports the event names.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tradebus.errors import FeatureError

__all__ = ["BOOK_LEVELS", "EVENTS", "EVENT_FIELDS", "EventType", "PlainSpec", "check_name", "plain_specs", "whole_setting"]

EventType = Literal["bar", "trade", "quote", "book"]
EVENTS: tuple[str, ...] = ("bar", "trade", "quote", "book")
#: Number of price levels per side that book events carry (``bid_px_0`` .. ``bid_px_9``).
BOOK_LEVELS = 10
_LEVELS = tuple(f"{side}_{what}_{i}" for side in ("bid", "ask") for what in ("px", "sz") for i in range(BOOK_LEVELS))
#: Fields of every event type, in the order they are laid out in a bank's values vector.
#: ``time`` is ``ts_event`` in float64 seconds since the epoch; ``mid`` is ``(bid + ask) / 2``.
EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    "bar": ("time", "open", "high", "low", "close", "volume"),
    "trade": ("time", "price", "size", "side"),
    "quote": ("time", "bid", "ask", "bid_size", "ask_size", "mid"),
    "book": ("time", "bid", "ask", "bid_size", "ask_size", "mid", *_LEVELS),
}
_INT64_MAX = 2**63 - 1
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED = set(EVENTS) | {f for fields in EVENT_FIELDS.values() for f in fields}


def whole_setting(owner: str, name: str, value: object, low: int) -> int:
    """``value`` as an int if it is a whole number in ``[low, int64 max]`` (compiled kernels take it as int64).

    Raises
    ------
    FeatureError
        Naming ``owner``, the setting ``name``, the range and ``value`` (NaN, inf, 1.5, a string...).
    """
    try:
        whole = int(value)  # type: ignore[call-overload]
        exact = whole == value
    except (TypeError, ValueError, OverflowError):
        exact = False
    if not (exact and low <= whole <= _INT64_MAX):
        raise FeatureError(f"{owner}: {name} must be a whole number in [{low}, {_INT64_MAX}], got {value!r}")
    return whole


def check_name(value: str) -> str:
    """``value`` if it is a valid feature name, else ``ValueError`` saying why.

    A name is letters, digits and underscores, not starting with a digit, and not an
    event type or event field name.
    """
    if not _NAME.match(value):
        raise ValueError(f"feature name {value!r} must match {_NAME.pattern}")
    if value in _RESERVED:
        raise ValueError(f"feature name {value!r} is an event type or event field name")
    return value


_KEYS = frozenset({"name", "kind", "params", "input", "on"})


@dataclass(frozen=True)
class PlainSpec:
    """A feature spec read from a plain dict without pydantic; the fields of :class:`~tradebus.features.spec.FeatureSpec`."""

    name: str
    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    input: str | list[str] | None = None
    on: str | None = None

    @property
    def inputs(self) -> tuple[str, ...] | None:
        """The declared inputs as a tuple (``None`` when omitted)."""
        if self.input is None:
            return None
        return (self.input,) if isinstance(self.input, str) else tuple(self.input)

    def as_dict(self) -> dict[str, Any]:
        """The spec as the dict it was read from (defaults filled in)."""
        return {"name": self.name, "kind": self.kind, "params": self.params, "input": self.input, "on": self.on}


def _plain(raw: Any) -> PlainSpec | None:
    """``raw`` as a :class:`PlainSpec` if it is a dict of the exact types the model keeps as they are."""
    if type(raw) is not dict or not raw.keys() <= _KEYS:
        return None
    name, kind = raw.get("name"), raw.get("kind")
    params, inputs, on = raw.get("params", {}), raw.get("input"), raw.get("on")
    if type(name) is not str or type(kind) is not str or type(params) is not dict:
        return None
    if not all(type(k) is str for k in params):
        return None
    if inputs is not None and type(inputs) is not str:
        if type(inputs) is not list or not all(type(i) is str for i in inputs):
            return None
        inputs = list(inputs)
    if on is not None and (type(on) is not str or on not in EVENTS):
        return None
    try:
        check_name(name)
    except ValueError:
        return None
    return PlainSpec(name, kind, dict(params), inputs, on)


def plain_specs(data: Iterable[Any] | Mapping[str, Any]) -> list[Any] | None:
    """Every spec of ``data`` read without pydantic, or ``None`` if one of them needs the model.

    ``data`` is what :func:`~tradebus.features.spec.load_specs` takes; a list (or tuple)
    of plain dicts and/or :class:`~tradebus.features.spec.FeatureSpec` objects gives
    :class:`PlainSpec` objects for the dicts and the models as they are. ``None`` for
    anything else (a ``features`` mapping, other mappings, a value of another type, a
    bad name): the caller validates it with ``load_specs``.
    """
    if type(data) not in (list, tuple):
        return None
    model = sys.modules.get("tradebus.features.spec")  # a FeatureSpec exists only once it is imported
    out: list[Any] = []
    for raw in data:
        if type(raw) is dict:
            spec = _plain(raw)
            if spec is None:
                return None
            out.append(spec)
        elif model is not None and isinstance(raw, model.FeatureSpec):
            out.append(raw)
        else:
            return None
    return out
