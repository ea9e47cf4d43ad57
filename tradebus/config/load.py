"""Reading a run config: YAML, ``--set`` overrides, validation of the strategy parameters, dumping."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from tradebus.config.base import (
    config_error_from,
    refuse_research_config,
    refuse_system_config,
    resolve_model_paths,
    resolve_path,
)
from tradebus.config.run import RunBase, RunConfig
from tradebus.config.strategy import StrategyConfig, strategy_entries
from tradebus.config.units import sub_microsecond_digits
from tradebus.errors import ConfigError

__all__ = ["apply_overrides", "dump_config", "load_config", "parse_config", "parse_yaml", "read_yaml"]

class _RefusingValueErrors:
    """A loader mixin: a scalar its tag cannot hold (``2021-13-01`` as a timestamp) is a
    ``ConstructorError`` at its line, not the ``ValueError`` PyYAML's constructors raise."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)  # type: ignore[misc]
        except ValueError as exc:
            kind = node.tag.rsplit(":", 1)[-1]
            raise yaml.constructor.ConstructorError(
                None, None, f"{node.value!r} is not a valid {kind} ({exc})", node.start_mark
            ) from None


def _timestamp(loader: yaml.constructor.SafeConstructor, node: yaml.ScalarNode) -> Any:
    """A YAML timestamp as PyYAML reads it, or, when it is finer than a microsecond, its ISO-8601 text.

    PyYAML keeps 6 digits of a second (a ``datetime``'s) and drops the rest unsaid; the text, PyYAML's
    datetime written with every digit of its second, goes to the field, which keeps the nanoseconds
    (:func:`~tradebus.config.units.moment_ns`, :data:`~tradebus.config.units.Moment`). Not the YAML text
    itself: pydantic does not read YAML's forms of a timestamp (``2024-1-1``, a space before the offset,
    ``+02`` without minutes).
    """
    text = loader.construct_scalar(node)
    moment = loader.construct_yaml_timestamp(node)
    digits = sub_microsecond_digits(text)
    if not digits:
        return moment
    micro = f".{moment.microsecond:06d}"
    return moment.isoformat(timespec="microseconds").replace(micro, micro + digits, 1)


class _SafeLoader(_RefusingValueErrors, yaml.SafeLoader):
    pass


#: libyaml's safe loader when PyYAML was built with it: the same documents, parsed several
#: times faster (a sweep reads its config once per trial).
_FAST_LOADER = (
    type("_CSafeLoader", (_RefusingValueErrors, yaml.CSafeLoader), {}) if hasattr(yaml, "CSafeLoader") else None
)
for _loader in (_SafeLoader, _FAST_LOADER):
    if _loader is not None:
        _loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp)


ConfigT = TypeVar("ConfigT", bound=RunBase)


def parse_yaml(text: str) -> Any:
    """``yaml.safe_load(text)``, through libyaml when available.

    Raises
    ------
    yaml.YAMLError
        The text is not valid YAML, or a value cannot be what its form says (``2021-13-01``, a
        timestamp); raised by the pure-Python parser, whose message quotes the offending line.
    """
    if _FAST_LOADER is not None:
        try:
            return yaml.load(text, Loader=_FAST_LOADER)  # noqa: S506 (a safe loader)
        except yaml.YAMLError:
            pass  # the Python parser below raises it again, with the line quoted
    return yaml.load(text, Loader=_SafeLoader)  # noqa: S506 (a safe loader)


def read_yaml(path: Path, what: str = "config file") -> Any:
    """The parsed YAML of the file at ``path`` (:func:`parse_yaml`).

    Parameters
    ----------
    path
        The file.
    what
        What the file is, for the messages (``"config file"``, ``"space file"``).

    Raises
    ------
    ConfigError
        Naming ``path``: it does not exist, cannot be read (a directory, no permission), is
        not UTF-8 text (a binary file) or is not valid YAML.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what} ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: cannot read {what}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})"
        ) from None
    try:
        return parse_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None


def parse_config(
    data: Any, source: str = "<config>", base: Path | None = None, model: type[ConfigT] = RunConfig  # type: ignore[assignment]
) -> ConfigT:
    """Validate a config mapping (already parsed from YAML) into ``model`` (a :class:`RunConfig` by default).

    Strategy parameters are validated against the strategy class (which is
    imported by name) and its instruments. Relative paths are resolved against
    ``base`` when given, the paths a strategy's ``Params`` declare (fields typed ``Path``) too. No data file is opened. The paper daemon's config uses
    the same path with its own model.

    Raises
    ------
    ConfigError
        Naming ``source`` and the field path of every problem.
    """
    from tradebus.strategies.base import resolve_strategy, strategy_module_dir

    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of config sections, got {type(data).__name__}")
    refuse_system_config(source, data)
    refuse_research_config(source, data)
    if "live" in data and "live" not in model.model_fields:  # type: ignore[attr-defined]
        raise ConfigError(
            f"{source}: a live config (it has a live: section) is run by 'tradebus live'; this command takes "
            "the config without it: give it a copy without the live: section (a live recording replays with that copy)"
        )
    try:
        config = model.model_validate(data)  # type: ignore[attr-defined]
    except ValidationError as exc:
        raise config_error_from(source, exc, model=model) from None
    instruments = config.instrument_map()
    validated: list[StrategyConfig] = []
    for path, entry in strategy_entries(config):
        search = base if entry.module_dir is None or base is None else resolve_path(entry.module_dir, base)
        try:
            cls = resolve_strategy(entry.name, entry.module_dir if search is None else search)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {path}.name: {exc}") from None
        try:
            params = cls.validate_params(entry.params)
        except ValidationError as exc:
            raise config_error_from(source, exc, (*path.split("."), "params"), cls.Params) from None
        try:
            cls.check_params(params, [instruments[i] for i in entry.instruments])
        except ConfigError as exc:
            field = "" if str(exc).startswith("instruments:") else "params."
            raise ConfigError(f"{source}: {path}.{field}{exc}") from None
        _check_data_kinds(source, config, path, entry, cls.data_kinds(params))
        if base is not None:
            params = resolve_model_paths(params, base)
        # Store the validated (defaults filled in) parameters so the resolved config is complete,
        # and where a strategy found beside the config came from, so a copy elsewhere finds it.
        update: dict[str, Any] = {"params": params.model_dump(mode="json")}
        if search is not None and strategy_module_dir(entry.name) == search.resolve():
            update["module_dir"] = search.resolve()
        validated.append(entry.model_copy(update=update))
    if config.strategy is not None:
        config = config.model_copy(update={"strategy": validated[0]})
    else:
        config = config.model_copy(update={"strategies": validated})
    if base is None:
        return config
    try:
        return config.resolve_paths(base)
    except ConfigError as exc:  # a check of the paths as resolved (a paper config's log retention)
        raise ConfigError(f"{source}: {exc}") from None


def _check_data_kinds(
    source: str, config: RunBase, path: str, entry: StrategyConfig, wanted: frozenset[str]
) -> None:
    if not wanted:
        return
    available = config.data_kinds()
    offered = set().union(*(available.get(iid, set()) for iid in entry.instruments))
    if not wanted & offered:
        raise ConfigError(
            f"{source}: {path}.name: {entry.name!r} acts on {', '.join(sorted(wanted))}, "
            f"but the run has only {', '.join(sorted(offered)) or 'no data'} for "
            f"{', '.join(entry.instruments)}: it would never trade"
        )


def apply_overrides(data: Any, overrides: Sequence[str], source: str = "<config>") -> Any:
    """``data`` (a parsed YAML mapping) with ``--set`` overrides applied, each ``"dotted.path=value"``.

    The value is parsed as YAML (``12``, ``0.5``, ``true``, ``[a, b]``, ``"text"``); a path
    goes through mappings by key and lists by index, and may add a key (validation then
    says whether the key is allowed). A mapping key that holds dots itself, such as the
    instrument id of ``bars.BTCUSDT.BINANCE.threshold``, is matched whole when the mapping
    has it. The input is not modified.

    Raises
    ------
    ConfigError
        If an override is not ``path=value``, its value is not YAML, or its path does not
        lead through mappings and lists of the config.
    """
    result = copy.deepcopy(data)
    for override in overrides:
        path, sep, text = override.partition("=")
        keys = path.strip().split(".")
        if not sep or not all(keys):
            raise ConfigError(f"--set {override!r}: expected 'section.key=value', e.g. strategy.params.fast=12")
        try:
            value = parse_yaml(text)
        except yaml.YAMLError as exc:
            why = getattr(exc, "problem", None)
            raise ConfigError(f"--set {override!r}: the value is not valid YAML" + (f": {why}" if why else "")) from None
        node = result
        depth = 0
        while depth < len(keys):
            where = ".".join(keys[:depth]) or "<root>"
            if isinstance(node, dict):
                # the longest run of the path's parts that is a key of this mapping, else one part
                end = next((e for e in range(len(keys), depth + 1, -1) if ".".join(keys[depth:e]) in node), depth + 1)
                key = ".".join(keys[depth:end])
                if end == len(keys):
                    node[key] = value
                else:
                    node = node.setdefault(key, {})
                depth = end
            elif isinstance(node, list) and keys[depth].isdigit() and int(keys[depth]) < len(node):
                if depth == len(keys) - 1:
                    node[int(keys[depth])] = value
                else:
                    node = node[int(keys[depth])]
                depth += 1
            else:
                raise ConfigError(f"{source}: --set {override!r}: {where} has no entry {keys[depth]!r}")
    return result


def load_config(
    path: str | Path,
    model: type[ConfigT] = RunConfig,  # type: ignore[assignment]
    overrides: Sequence[str] = (),
) -> ConfigT:
    """Read and validate a YAML run config (into ``model``, a :class:`RunConfig` by default).

    ``overrides`` (``["strategy.params.fast=12"]``, the CLI's ``--set``) are applied before
    validation (:func:`apply_overrides`), so the resolved config records them.

    Raises
    ------
    ConfigError
        If the file is missing or unreadable, is not valid YAML, or any field is
        invalid; the message names the file and the field path.
    """
    path = Path(path)
    data = read_yaml(path)
    if overrides:
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of config sections, got {type(data).__name__}")
        data = apply_overrides(data, overrides, str(path))
    return parse_config(data, str(path), base=path.resolve().parent, model=model)


def dump_config(config: BaseModel) -> str:
    """The resolved config (a :class:`RunConfig` or the paper daemon's) as YAML text (defaults filled in, stable key order)."""
    data = config.model_dump(mode="json")
    for key in ("strategy", "strategies"):
        if data.get(key) in (None, []):
            data.pop(key, None)  # the one of the pair the config does not use
    for entry in [data["strategy"]] if "strategy" in data else data.get("strategies", []):
        if isinstance(entry, dict) and entry.get("module_dir", 0) is None:
            del entry["module_dir"]  # a strategy of sys.path's: no key (the dump of a config from before it)
    if data.get("annual_borrow_rates", 0) is None:
        del data["annual_borrow_rates"]  # no borrowing interest: the dump of a config from before the key
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)
