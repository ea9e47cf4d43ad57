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

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import Field, ValidationError, field_validator

from tradebus.config.base import StrictModel, describe_errors
from tradebus.errors import FeatureError
from tradebus.features.spec_base import BOOK_LEVELS, EVENT_FIELDS, EVENTS, EventType, check_name

__all__ = ["BOOK_LEVELS", "EVENT_FIELDS", "EVENTS", "EventType", "FeatureSpec", "load_specs"]


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
        return check_name(value)

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
            problems = "; ".join(describe_errors(exc, model=FeatureSpec))
            raise FeatureError(f"feature {_name_of(raw, position)}: invalid spec ({problems})") from None
    return specs
