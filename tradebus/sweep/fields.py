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

    The path is followed through the config's types, so a section or mapping the config leaves out
    (``balances.USD`` without ``balances``) is typed as one it gives; a strategy's ``params.<name>``
    is typed by its strategy's ``Params``. A path the config's types do not have, or whose field is
    untyped, is not a float field.
    """
    node: Any = config
    kind: Any = RunConfig
    for part in path.split("."):
        if isinstance(node, BaseModel):
            kind = type(node)  # the arm of a union the config chose
        if part == "params" and isinstance(node, BaseModel) and isinstance(getattr(node, "params", None), dict):
            try:
                node = resolve_strategy(node.name).validate_params(node.params)  # type: ignore[attr-defined]
            except (TradebusError, ValueError):
                return False
            kind = type(node)
            continue
        kind = _member(kind, part)
        if kind is None:
            return False
        node = _value(node, part)
    kinds = _kinds(kind) - {type(None)}
    return float in kinds and int not in kinds


def _member(annotation: Any, part: str) -> Any:
    """The type of member ``part`` of a value typed ``annotation`` (a model's field, a list's item, a dict's value).

    A union's arms that have the member give the union of their types (the config, leaving the value out,
    does not say which arm it is): ``None`` where no arm has it.
    """
    found = []
    for arm in _kinds(annotation) - {type(None)}:
        origin, args = get_origin(arm), get_args(arm)
        if isinstance(arm, type) and issubclass(arm, BaseModel):
            field = arm.model_fields.get(part)
            if field is not None:
                found.append(field.annotation)
        elif origin in (list, tuple) and part.isdigit() and args:
            if origin is tuple and args[-1] is not Ellipsis:
                if int(part) < len(args):
                    found.append(args[int(part)])
            else:
                found.append(args[0])
        elif origin is dict and len(args) == 2:
            found.append(args[1])
    return Union[tuple(found)] if found else None  # noqa: UP007 (a union of the types found, built at run time)


def _value(node: Any, part: str) -> Any:
    """Member ``part`` of ``node`` (``None``: the config leaves it out)."""
    if isinstance(node, BaseModel):
        return getattr(node, part, None)
    if isinstance(node, list | tuple) and part.isdigit():
        return node[int(part)] if int(part) < len(node) else None
    if isinstance(node, dict):
        return node.get(part)
    return None


def _kinds(annotation: Any) -> set[Any]:
    """The types a field of ``annotation`` takes: the arms of a union, ``Annotated``'s type."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _kinds(get_args(annotation)[0])
    if origin is Union or origin is UnionType:
        return set().union(*(_kinds(arm) for arm in get_args(annotation)))
    return {annotation}
