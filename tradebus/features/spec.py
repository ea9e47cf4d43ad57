"""Feature specs: the declarative description of one feature of a bank.

A spec names the feature, its kind, its parameters, what it reads and which
event drives it. In YAML::

    features:
      - {name: ret, kind: log_ret, input: close}
      - {name: vol, kind: ewm_std, params: {span: 20}, input: ret}
      - {name: z, kind: rolling_zscore, params: {window: 50}, input: ret}

Inputs
------
An input is an event field (``close``, ``price``, ``bid``; qualified as
``quote.bid`` when the name exists in several event types), or another feature
``name`` (its first output) or ``name.output``. When ``input`` is omitted, the
kind's own input names are used if they are all event fields (``atr`` reads
``high, low, close``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from tradebus.config.base import StrictModel
from tradebus.errors import FeatureError

__all__ = ["BOOK_LEVELS", "EVENT_FIELDS", "EVENTS", "EventType", "FeatureSpec", "load_specs"]

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
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED = set(EVENTS) | {f for fields in EVENT_FIELDS.values() for f in fields}


class FeatureSpec(StrictModel):
    """One feature of a :class:`~tradebus.features.bank.FeatureBank`.

    Parameters
    ----------
    name
        Unique identifier (letters, digits, underscore; not an event or field name).
    kind
        Registered feature kind (``ema``, ``rolling_std``, ``rsi``...).
    params
        Keyword parameters of the kind (``{"span": 20}``).
    input
        Event field(s) and/or feature outputs, one per kind input; optional when the
        kind's inputs are event fields.
    on
        Event type that updates the feature; inferred from the inputs when omitted.
    """

    name: str
    kind: str
    params: dict[str, Any] = Field(default_factory=dict)
    input: str | list[str] | None = None
    on: EventType | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"feature name {value!r} must match {_NAME.pattern}")
        if value in _RESERVED:
            raise ValueError(f"feature name {value!r} is an event type or event field name")
        return value

    @property
    def inputs(self) -> tuple[str, ...] | None:
        """The declared inputs as a tuple (``None`` when omitted)."""
        if self.input is None:
            return None
        return (self.input,) if isinstance(self.input, str) else tuple(self.input)


def _name_of(raw: Any, position: int) -> str:
    if isinstance(raw, Mapping) and isinstance(raw.get("name"), str):
        return repr(raw["name"])
    return f"#{position}"


def load_specs(data: Iterable[FeatureSpec | Mapping[str, Any]] | Mapping[str, Any]) -> list[FeatureSpec]:
    """Validate specs given as models or plain dicts (e.g. parsed YAML).

    Parameters
    ----------
    data
        A list of specs/dicts, or a mapping with a ``features`` list.

    Raises
    ------
    FeatureError
        A spec is malformed; the message names the feature (or its position) and field.
    """
    if isinstance(data, Mapping):
        if set(data) != {"features"}:
            raise FeatureError(f"feature specs mapping must have exactly one key 'features', got {sorted(data)}")
        data = data["features"]
    if isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
        raise FeatureError(f"feature specs must be a list of mappings, got {type(data).__name__}")
    specs = []
    for position, raw in enumerate(data):
        if isinstance(raw, FeatureSpec):
            specs.append(raw)
            continue
        try:
            specs.append(FeatureSpec.model_validate(raw))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'spec'}: {err['msg']}" for err in exc.errors()
            )
            raise FeatureError(f"feature {_name_of(raw, position)}: invalid spec ({problems})") from None
    return specs
