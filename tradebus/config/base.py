"""The one base of every config model: unknown keys are errors, values never change after validation.

Every config section (``tradebus.config``, ``tradebus.node.config``, ``tradebus.execution.config``,
``tradebus.risk.config``, ``tradebus.ops.config``, ``tradebus.research.config`` and each venue's
``config.py``) derives from :class:`StrictModel`, so a misspelt key fails the same way
everywhere: a :class:`~tradebus.errors.ConfigError` naming the file and the key
(:func:`config_error_from`). Strategy parameters, sweep spaces, stress variants
and research datasets derive from it too. :func:`resolve_path` is the one rule for a relative
path in a config (against the config file's directory); :func:`resolve_model_paths` applies it to every
path a model declares (a strategy's parameters: a saved model's file). It imports nothing of tradebus but
its errors, so any layer may use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from tradebus.errors import ConfigError

__all__ = [
    "StrictModel", "config_error_from", "describe_errors", "model_paths", "resolve_model_paths", "resolve_path",
]

ModelT = TypeVar("ModelT", bound=BaseModel)


class StrictModel(BaseModel):
    """A config section: ``extra="forbid"`` (an unknown key is an error) and ``frozen=True``."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def resolve_path(path: Path | None, base: Path) -> Path | None:
    """``path`` made absolute against ``base`` (the directory of the config that names it).

    An absolute ``path`` is kept (normalised); ``None`` stays ``None``.
    """
    return None if path is None else (path if path.is_absolute() else base / path).resolve()


def _resolve_value(value: Any, base: Path) -> Any:
    if isinstance(value, Path):
        return resolve_path(value, base)
    if isinstance(value, BaseModel):
        return resolve_model_paths(value, base)
    if isinstance(value, list | tuple):
        return type(value)(_resolve_value(v, base) for v in value)
    if isinstance(value, dict):
        return {k: _resolve_value(v, base) for k, v in value.items()}
    return value


def _paths_in(value: Any, key: str) -> list[tuple[str, Path]]:
    if isinstance(value, Path):
        return [(key, value)]
    if isinstance(value, BaseModel):
        return [found for name in type(value).model_fields for found in _paths_in(getattr(value, name), f"{key}.{name}")]
    if isinstance(value, list | tuple):
        return [found for n, v in enumerate(value) for found in _paths_in(v, f"{key}.{n}")]
    if isinstance(value, dict):
        return [found for k, v in value.items() for found in _paths_in(v, f"{key}.{k}")]
    return []


def model_paths(model: BaseModel) -> list[tuple[str, Path]]:
    """``(dotted field path, path)`` of every :class:`~pathlib.Path` value ``model`` holds (see :func:`resolve_model_paths`)."""
    return [(key.removeprefix("."), path) for key, path in _paths_in(model, "")]


def resolve_model_paths(model: ModelT, base: Path) -> ModelT:
    """``model`` with every :class:`~pathlib.Path` value it holds made absolute by :func:`resolve_path`.

    A field typed ``Path`` (or ``Path | None``, a list of them, a nested model holding one) is a
    path in the config; a ``str`` field is left alone. ``model`` is not modified.
    """
    update = {name: _resolve_value(getattr(model, name), base) for name in type(model).model_fields}
    return model.model_copy(update=update)


def _loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "<root>"


def _describe(error: dict[str, Any]) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return f"{_loc(error['loc'])}: unknown key (not allowed here)"
    if error["type"] == "missing":
        return f"{_loc(error['loc'])}: required field is missing"
    if not error["loc"]:
        # A whole-model check names its own field path.
        return message
    if error["type"] == "value_error":
        return f"{_loc(error['loc'])}: {message}"
    return f"{_loc(error['loc'])}: {message} (got {error.get('input')!r})"


def describe_errors(exc: ValidationError, prefix: tuple[int | str, ...] = ()) -> list[str]:
    """One line per problem of ``exc``: ``"section.key: what is wrong"``.

    ``prefix`` is prepended to every field path (e.g. ``("strategy", "params")``). A misspelt key
    reads ``unknown key (not allowed here)``, a missing one ``required field is missing``, a bad
    value names the value it got. Every config loader words its errors through this.
    """
    return [_describe({**e, "loc": prefix + tuple(e["loc"])}) for e in exc.errors()]


def config_error_from(source: str, exc: ValidationError, prefix: tuple[int | str, ...] = ()) -> ConfigError:
    """Turn a pydantic ``ValidationError`` into one :class:`ConfigError` naming ``source`` and each field path.

    ``prefix`` is prepended to every field path (e.g. ``("strategy", "params")``).
    """
    lines = describe_errors(exc, prefix)
    return ConfigError(f"{source}: invalid config:\n  " + "\n  ".join(lines))
