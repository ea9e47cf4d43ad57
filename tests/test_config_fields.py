"""Every field of every config section is read by some code: a setting nobody reads is silently ignored.

The scan is by attribute name over the whole package (``x.field`` or ``getattr(x, "field")``),
with three refinements so that a name another class also has does not hide a dead field: a read
inside a pydantic validator is a check, not a use; ``self.field`` counts only inside the model's
own classes (or the class its fields are dumped into); and ``x.field`` on a parameter annotated
with a config model counts only for that model. Any other receiver may be any model.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import typing
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from pydantic import BaseModel, field_validator

import tradebus
from tradebus.config.base import StrictModel

ROOT = Path(tradebus.__file__).parent
#: Modules whose StrictModel classes are config sections besides every ``*.config`` module: live
#: settings, feeds, slippage, feature specs, research datasets, system configs, sweep spaces and stress.
SECTION_MODULES = (
    "tradebus.node.live",
    "tradebus.adapters.common.feed",
    "tradebus.execution.costs",
    "tradebus.features.spec",
    "tradebus.research.dataset",
    "tradebus.research.ml_gated",
    "tradebus.research.regime_hazard",
    "tradebus.sweep.space",
    "tradebus.sweep.stress",
    "tradebus.sweep.walkforward",
)
#: Models whose fields reach another class through ``Other(**model.model_dump())`` (verified in
#: tradebus/config/instruments.py: ``InstrumentConfig.to_instrument``): a ``self.field`` read in
#: the other class is a read of the field.
DUMPED_INTO: dict[str, tuple[str, ...]] = {
    "InstrumentConfig": ("Instrument",),
    "MarginTierConfig": ("MarginTier",),
    "FeeTierConfig": ("FeeTier",),
}
_VALIDATORS = {"field_validator", "model_validator"}


def config_sections() -> list[type[BaseModel]]:
    """Every StrictModel of a config module and every model nested in one (through its fields)."""
    names = [m.name for m in pkgutil.walk_packages([str(ROOT)], "tradebus.") if m.name.rsplit(".", 1)[-1] == "config"]
    modules = {importlib.import_module(name).__name__ for name in (*names, *SECTION_MODULES)}

    def subclasses(cls: type) -> Iterator[type]:
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    found = {m for m in subclasses(StrictModel) if m.__module__ in modules or m.__module__.startswith("tradebus.config.")}
    todo = list(found)
    while todo:
        for field in todo.pop().model_fields.values():
            for model in _models_in(field.annotation):
                if model not in found and model.__module__.startswith("tradebus"):
                    found.add(model)
                    todo.append(model)
    return sorted(found, key=lambda m: (m.__module__, m.__name__))


def _models_in(annotation: object) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from _models_in(arg)


def _is_validator(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if getattr(target, "id", getattr(target, "attr", None)) in _VALIDATORS:
            return True
    return False


#: A read: the classes its receiver is known to be an instance of (``None``: unknown, any model).
Read = frozenset[str] | None


def _names_in(annotation: ast.expr | None) -> set[str]:
    """Class names an annotation spells (``FeedConfig | None``, ``"RunConfig"``, ``list[X]`` ...)."""
    if annotation is None:
        return set()
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        try:
            annotation = ast.parse(annotation.value, mode="eval").body
        except SyntaxError:
            return set()
    return {n.id for n in ast.walk(annotation) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(annotation) if isinstance(n, ast.Attribute)
    }


def attribute_reads(paths: Iterable[Path], typed: Iterable[str] = ()) -> dict[str, list[Read]]:
    """``name -> [receiver classes or None]`` of every ``x.name`` / ``getattr(x, "name")`` read.

    The receiver's classes are known for ``self``/``cls`` (the enclosing class) and for a
    function parameter whose annotation names one of the ``typed`` classes (the config
    models); any other receiver is unknown. Reads inside pydantic validators are left out
    (checking a value is not using it).
    """
    typed = set(typed)
    reads: dict[str, list[Read]] = {}

    def visit(node: ast.AST, cls: str | None, in_validator: bool, params: dict[str, set[str]]) -> None:
        if isinstance(node, ast.ClassDef):
            cls = node.name
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            if not isinstance(node, ast.Lambda) and _is_validator(node):
                in_validator = True
            a = node.args
            params = dict(params)
            for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs, *filter(None, [a.vararg, a.kwarg])]:
                params[arg.arg] = _names_in(arg.annotation) & typed if not isinstance(node, ast.Lambda) else set()
        if not in_validator:
            name, receiver = None, None
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                name, receiver = node.attr, node.value
            elif (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", None) == "getattr"
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)
            ):
                name, receiver = node.args[1].value, node.args[0]
            if name is not None:
                owner: Read = None
                if isinstance(receiver, ast.Name) and receiver.id in ("self", "cls"):
                    owner = frozenset({cls or ""})
                elif isinstance(receiver, ast.Name) and params.get(receiver.id):
                    owner = frozenset(params[receiver.id])
                reads.setdefault(name, []).append(owner)
        for child in ast.iter_child_nodes(node):
            visit(child, cls, in_validator, params)

    for path in paths:
        visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)), None, False, {})
    return reads


def unread_fields(
    models: Iterable[type[BaseModel]],
    reads: Mapping[str, list[Read]],
    dumped_into: Mapping[str, tuple[str, ...]] = DUMPED_INTO,
) -> list[str]:
    """``Model.field`` of every field (declared by that model) that no read in ``reads`` reaches."""
    unread = []
    for model in models:
        family = {c.__name__ for c in model.__mro__} | {c.__name__ for c in _all_subclasses(model)}
        family |= set(dumped_into.get(model.__name__, ()))
        own = model.__dict__.get("__annotations__", {})
        for name in model.model_fields:
            if name not in own:
                continue
            if not any(owner is None or owner & family for owner in reads.get(name, [])):
                unread.append(f"{model.__name__}.{name}")
    return unread


def _all_subclasses(cls: type) -> Iterator[type]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_subclasses(sub)


def test_every_config_field_is_read_somewhere() -> None:
    sections = config_sections()
    names = {m.__name__ for m in sections}
    # the discovery reaches every kind of section (a sanity check of config_sections itself)
    assert {"RunConfig", "PaperConfig", "LiveSettings", "FeedConfig", "RiskConfig", "OpsConfig",
            "BookFillConfig", "SlippageConfig", "FeatureSpec", "LabelsConfig", "BinanceFeedOptions",
            "OkxConfig", "BybitConfig", "TelegramConfig", "InstrumentConfig", "MarginTierConfig",
            "DatasetConfig", "RegimeHazardConfig", "SweepSpace", "StressVariant", "LiveConfig"} <= names
    assert unread_fields(sections, attribute_reads(sorted(ROOT.rglob("*.py")), names)) == []


class Sample(StrictModel):
    used: int = 0
    via_getattr: int = 0
    via_typed_parameter: int = 0
    only_validated: int = 0
    self_read_elsewhere: int = 0
    read_on_another_model: int = 0
    never: int = 0

    @field_validator("only_validated")
    @classmethod
    def _check(cls, value: int) -> int:
        return value

    def doubled(self) -> int:
        return 2 * self.used


def test_the_field_scan_finds_unread_validated_and_foreign_reads(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "from pydantic import model_validator\n"
        "class Sample:\n"
        "    @model_validator(mode='after')\n"
        "    def _v(self):\n"
        "        assert self.only_validated >= 0 and self.never >= 0\n"
        "        return self\n"
        "    def doubled(self):\n"
        "        return 2 * self.used\n"
        "class Other:\n"
        "    def f(self, config):\n"
        "        return self.self_read_elsewhere + getattr(config, 'via_getattr')\n"
        "def g(a: 'Sample | None', b: OtherModel, c: int):\n"
        "    return a.via_typed_parameter + b.read_on_another_model\n"
    )
    reads = attribute_reads([source], {"Sample", "OtherModel"})
    assert unread_fields([Sample], reads) == [
        "Sample.only_validated",
        "Sample.self_read_elsewhere",
        "Sample.read_on_another_model",
        "Sample.never",
    ]
    # a class the model is dumped into reads its fields through self
    assert "Sample.self_read_elsewhere" not in unread_fields([Sample], reads, {"Sample": ("Other",)})
    # a parameter annotated with a class that is no config model is an unknown receiver: any model's read
    assert "Sample.read_on_another_model" not in unread_fields([Sample], attribute_reads([source], {"Sample"}))
