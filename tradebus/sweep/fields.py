"""Whether a sweep parameter's dotted path names a float field of the run config (``venue.slippage_bps``).

A range written with whole-number bounds (``{low: 0, high: 5}``) sweeps integers, unless the field it
sets takes floats only: then it is a float range (:func:`tradebus.sweep.space.load_space`).
"""

from __future__ import annotations

from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

from tradebus.config import RunConfig
from tradebus.errors import TradebusError
from tradebus.strategies.base import resolve_strategy

__all__ = ["float_field"]


def float_field(config: RunConfig, path: str) -> bool:
    """Whether ``path`` of ``config`` is a field typed ``float`` (or an optional or constrained float), not ``int``.

    A strategy's ``params.<name>`` is typed by its strategy's ``Params``; a path the config does not
    have, or whose field is untyped, is not a float field.
    """
    node: Any = config
    *parents, name = path.split(".")
    for part in parents:
        if isinstance(node, BaseModel) and part == "params" and isinstance(getattr(node, "params", None), dict):
            try:
                node = resolve_strategy(node.name).validate_params(node.params)  # type: ignore[attr-defined]
            except (TradebusError, ValueError):
                return False
        elif isinstance(node, BaseModel):
            node = getattr(node, part, None)
        elif isinstance(node, list | tuple) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict):
            node = node.get(part)
        else:
            return False
    field = type(node).model_fields.get(name) if isinstance(node, BaseModel) else None
    if field is None:
        return False
    kinds = _kinds(field.annotation) - {type(None)}
    return float in kinds and int not in kinds


def _kinds(annotation: Any) -> set[Any]:
    """The types a field of ``annotation`` takes: the arms of a union, ``Annotated``'s type."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _kinds(get_args(annotation)[0])
    if origin is Union or origin is UnionType:
        return set().union(*(_kinds(arm) for arm in get_args(annotation)))
    return {annotation}
