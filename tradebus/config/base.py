"""The one base of every config model: unknown keys are errors, values never change after validation.

Every config section (``tradebus.config``, ``tradebus.node.config``, ``tradebus.execution.config``,
``tradebus.risk.config``, ``tradebus.ops.config``, ``tradebus.research.config`` and each venue's
``config.py``) derives from :class:`StrictModel`, so a misspelt key fails the same way
everywhere: a :class:`~tradebus.errors.ConfigError` naming the file and the key
(:func:`config_error_from`). Strategy parameters, sweep spaces, stress variants
and research datasets derive from it too. :func:`resolve_path` is the one rule for a relative
path in a config (against the config file's directory); :func:`resolve_model_paths` applies it to every
path a model declares (a strategy's parameters: a saved model's file); :data:`FilePath` is a file a
run writes (a journal, a recording, a log), refused at load when it can only name a directory. :data:`WsUrl` and
:data:`HttpUrl` are the endpoint types: a URL without its scheme or host is refused naming the
field, not at connection. It imports nothing of tradebus but its errors, so any layer may use it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationError, ValidationInfo, field_validator

from tradebus.errors import ConfigError, did_you_mean

__all__ = [
    "ENV_NAME", "EnvName", "FilePath", "HttpUrl", "StrictModel", "WsUrl", "config_error_from", "describe_errors",
    "env_name", "model_paths", "unknown_key", "refuse_research_config", "refuse_run_config", "refuse_system_config",
    "resolve_model_paths", "resolve_path",
]

ModelT = TypeVar("ModelT", bound=BaseModel)


#: The form of an environment variable name (POSIX's portable one, upper case); a key or a token fits it rarely.
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")


def env_name(value: Any) -> Any:
    """``value`` if it is an environment variable name (:data:`ENV_NAME`).

    Raises
    ------
    ValueError
        Not such a name; the message does not show the value: it may be the secret itself, pasted
        where the name of its variable belongs.
    """
    if isinstance(value, str) and ENV_NAME.fullmatch(value):
        return value
    raise ValueError(
        "not an environment variable name (upper-case letters, digits, _); the value is not shown in case it is "
        "a secret: put it in an environment variable and give that variable's name here"
    )


#: A field naming the environment variable that holds a secret (:func:`env_name`: refused unshown).
EnvName = Annotated[str, BeforeValidator(env_name)]

_NUMBERS = (int, float, Decimal)
_SEQUENCES = (list, tuple, set, frozenset, Sequence)


def _arms(annotation: Any) -> tuple[Any, ...]:
    """The alternatives of a union (``Annotated`` metadata dropped); ``(annotation,)`` if it is not one."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _arms(get_args(annotation)[0])
    if origin is Union or origin is UnionType:
        return tuple(arm for alternative in get_args(annotation) for arm in _arms(alternative))
    return (annotation,)


def _takes_bool(arm: Any) -> bool:
    if arm is bool or arm is Any or arm is object:
        return True
    return get_origin(arm) is Literal and any(isinstance(v, bool) for v in get_args(arm))


def _bool_for_number(annotation: Any, value: Any, where: str) -> str | None:
    """Where in ``value`` a boolean stands for a number ``annotation`` asks for (``None``: nowhere).

    Pydantic's lax mode reads ``true`` as ``1`` for an ``int`` or ``float`` field; a config means
    something else by it. Items of lists, tuples and mappings are looked at too.
    """
    arms = _arms(annotation)
    if isinstance(value, bool):
        if any(_takes_bool(arm) for arm in arms) or not any(arm in _NUMBERS for arm in arms):
            return None
        return where
    if isinstance(value, list | tuple) and not isinstance(value, str):
        found = []
        for arm in arms:
            origin, args = get_origin(arm), get_args(arm)
            if origin not in _SEQUENCES or not args:
                continue
            if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
                items = list(zip(args, value, strict=False))
            else:
                items = [(args[0], v) for v in value]
            found.append(next((w for n, (a, v) in enumerate(items)
                               if (w := _bool_for_number(a, v, f"{where}.{n}")) is not None), None))
        return found[0] if found and all(f is not None for f in found) else None
    if isinstance(value, dict):
        found = [next((w for k, v in value.items() if (w := _bool_for_number(get_args(arm)[1], v, f"{where}.{k}"))
                       is not None), None)
                 for arm in arms if get_origin(arm) in (dict, Mapping) and len(get_args(arm)) == 2]
        return found[0] if found and all(f is not None for f in found) else None
    return None


class StrictModel(BaseModel):
    """A config section: ``extra="forbid"`` (an unknown key is an error) and ``frozen=True``.

    A boolean given for a number (``fast: true`` for an ``int``, ``true`` in a list of floats) is an
    error naming the field, where pydantic alone would read it as ``1``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_number(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name is None:
            return value
        where = _bool_for_number(cls.model_fields[info.field_name].annotation, value, "")
        if where is not None:
            raise ValueError(f"expected a number, got a boolean{f' at {where[1:]}' if where else ''} ({value!r})")
        return value


def _endpoint(*schemes: str) -> AfterValidator:
    """A check that an endpoint is an absolute URL of one of ``schemes`` naming a host."""

    def check(url: str) -> str:
        try:
            parts = urlsplit(url)
        except ValueError as exc:
            raise ValueError(f"{url!r} is not a URL ({exc})") from None
        if parts.scheme not in schemes or not parts.hostname:
            starts = " or ".join(f"{scheme}://" for scheme in schemes)
            raise ValueError(f"{url!r} is not a URL starting with {starts} and naming a host")
        return url

    return AfterValidator(check)


#: A WebSocket endpoint in a config (``ws://`` or ``wss://``, with a host).
WsUrl = Annotated[str, _endpoint("ws", "wss")]
#: A REST endpoint in a config (``http://`` or ``https://``, with a host).
HttpUrl = Annotated[str, _endpoint("http", "https")]


def _names_a_file(value: Any) -> Any:
    """Refuse a path that can only name a directory: empty, ``.``, ``..``, the root, or ending with a separator."""
    if not isinstance(value, str | Path):
        return value
    text = str(value)
    if not text.strip():
        raise ValueError("empty: give the file's path, or leave the key out")
    if text.endswith(("/", "\\")) or Path(text).name in ("", ".", ".."):
        raise ValueError(f"{text!r} names a directory, not a file: give the file's path")
    return value


#: A file a run writes, named in a config: a path that can only be a directory (``''``, ``/``,
#: ``.``, ``runs/``) is refused naming the field, where it would resolve to the config's directory.
FilePath = Annotated[Path, BeforeValidator(_names_a_file)]


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


def _model_at(annotation: Any, loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model a value at ``loc`` inside a value of ``annotation`` is validated by (``None``: none known)."""
    arms = [arm for arm in _arms(annotation) if arm is not type(None)]
    models = [arm for arm in arms if isinstance(arm, type) and issubclass(arm, BaseModel)]
    if not loc:
        return models[0] if len(models) == 1 else None
    part, rest = loc[0], loc[1:]
    for model in models:
        if isinstance(part, str) and part in model.model_fields:
            return _model_at(model.model_fields[part].annotation, rest)
    for model in models:  # a union of models names the arm it tried
        if part == model.__name__:
            return _model_at(model, rest)
    for arm in arms:
        origin, args = get_origin(arm), get_args(arm)
        if isinstance(part, int) and origin in _SEQUENCES and args:
            return _model_at(args[0], rest)
        if origin in (dict, Mapping) and len(args) == 2:
            return _model_at(args[1], rest)
    return None


def unknown_key(key: str, keys: Sequence[str]) -> str:
    """``"unknown key (not allowed here)"``, with ``", did you mean 'window'?"`` when one of ``keys`` (those the
    section takes) is close to ``key``: the words of every misspelt config key."""
    return "unknown key (not allowed here)" + did_you_mean(key, keys)


def _unknown_key(loc: tuple[int | str, ...], model: type[BaseModel] | None) -> str:
    """:func:`unknown_key` of the last part of ``loc``, with the keys of the section ``model`` has there."""
    section = None if model is None or not loc else _model_at(model, loc[:-1])
    keys = [] if section is None else [info.alias or name for name, info in section.model_fields.items()]
    return unknown_key(str(loc[-1]) if loc else "", keys)


def _describe(error: dict[str, Any], model: type[BaseModel] | None = None, prefix: tuple[int | str, ...] = ()) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return f"{_loc(prefix + tuple(error['loc']))}: {_unknown_key(tuple(error['loc']), model)}"
    error = {**error, "loc": prefix + tuple(error["loc"])}
    if error["type"] == "missing":
        return f"{_loc(error['loc'])}: required field is missing"
    if not error["loc"]:
        # A whole-model check names its own field path.
        return message
    if error["type"] == "value_error":
        return f"{_loc(error['loc'])}: {message}"
    return f"{_loc(error['loc'])}: {message} (got {error.get('input')!r})"


def describe_errors(exc: ValidationError, prefix: tuple[int | str, ...] = (),
                    model: type[BaseModel] | None = None) -> list[str]:
    """One line per problem of ``exc``: ``"section.key: what is wrong"``.

    ``prefix`` is prepended to every field path (e.g. ``("strategy", "params")``). A misspelt key
    reads ``unknown key (not allowed here)``, followed by ``, did you mean 'window'?`` when ``model``
    (the model ``exc`` comes from) has a section there with a key close to it; a missing one
    ``required field is missing``, a bad value names the value it got. Every config loader words
    its errors through this.
    """
    return [_describe(e, model, prefix) for e in exc.errors()]


def config_error_from(source: str, exc: ValidationError, prefix: tuple[int | str, ...] = (),
                      model: type[BaseModel] | None = None) -> ConfigError:
    """Turn a pydantic ``ValidationError`` into one :class:`ConfigError` naming ``source`` and each field path.

    ``prefix`` is prepended to every field path (e.g. ``("strategy", "params")``); ``model`` (the model
    ``exc`` comes from) lets a misspelt key name the closest key (:func:`describe_errors`).
    """
    lines = describe_errors(exc, prefix, model)
    return ConfigError(f"{source}: invalid config:\n  " + "\n  ".join(lines))


def refuse_system_config(source: str, data: Any) -> None:
    """Refuse a system config (a top-level ``system:`` key) read as another kind of config.

    Its keys would all be reported unknown; the error names the command that runs it.

    Raises
    ------
    ConfigError
        If ``data`` is a mapping with a ``system`` key.
    """
    if isinstance(data, dict) and "system" in data:
        raise ConfigError(f"{source}: a system config (system: {data['system']!r}) is run by "
                          f"'tradebus research run {source}', not read by this command")


def refuse_research_config(source: str, data: Any) -> None:
    """Refuse a research config (a top-level ``dataset:`` section, no ``instruments:``) read as a run config.

    Its sections would all be reported unknown; the error names the commands that read it.

    Raises
    ------
    ConfigError
        If ``data`` is a mapping with a ``dataset`` key and no ``instruments`` key.
    """
    if isinstance(data, dict) and "dataset" in data and "instruments" not in data:
        raise ConfigError(f"{source}: a research config (it has a dataset: section) is read by 'tradebus research "
                          "dataset', 'labels', 'cv', 'walkforward' or 'alpha'; this command takes a run config "
                          "(instruments:, data:, strategy:, as configs/quickstart.yaml)")


def refuse_run_config(source: str, data: Any) -> None:
    """Refuse a run config (a top-level ``instruments:`` section, no ``dataset:``) read as a research config.

    Its sections would all be reported unknown; the error names the commands that take it.

    Raises
    ------
    ConfigError
        If ``data`` is a mapping with an ``instruments`` key and no ``dataset`` key.
    """
    if isinstance(data, dict) and "instruments" in data and "dataset" not in data:
        runs = ("'tradebus live'" if "live" in data
                else "'tradebus backtest' (or paper) and checked by 'tradebus research lookahead'")
        raise ConfigError(f"{source}: a run config (it has an instruments: section) is run by {runs}; this command "
                          "takes a research config (dataset:, labels:, model:, ..., as configs/research_btc.yaml)")
