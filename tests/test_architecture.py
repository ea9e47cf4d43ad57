"""The seams of docs/architecture.md, pinned: who may import whom, and who may name a venue."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import tradebus
from tradebus.adapters.registry import VENUES

ROOT = Path(tradebus.__file__).parent
CORE = ("engine", "features", "strategies", "risk", "execution", "account", "reports")
OUTSIDE_CORE = ("tradebus.adapters", "tradebus.data", "tradebus.node", "tradebus.cli", "tradebus.research")
# Data tooling sits beside the venue adapters: it may use the core, never a daemon or the main CLI.
ABOVE_DATA = ("tradebus.node", "tradebus.cli")
#: The engine primitives and the only tradebus modules each may import.
PRIMITIVES = {
    "engine/messages.py": (),
    "engine/bus.py": ("tradebus.engine.messages",),
    "engine/clock.py": ("tradebus.engine.messages",),
    "engine/instrument.py": (),
}
#: The modules every venue package has (the registry entry lives in ``__init__.py``).
VENUE_MODULES = {
    "__init__.py",
    "config.py",
    "schemas.py",
    "parse.py",
    "sync.py",
    "client.py",
    "instruments.py",
    "emulator.py",
}
#: The modules of live trading, shared by the venues that have them (a live venue has all three).
LIVE_MODULES = {"trading.py", "user_stream.py", "private_emulator.py"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, module: str | None = None) -> set[str]:
    """Every module ``path`` imports, anywhere in it; relative imports resolved against ``module``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = (module or "").split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
                if node.module:
                    names.add(prefix)
                else:
                    names.update(f"{prefix}.{alias.name}" for alias in node.names)
            elif node.module:
                names.add(node.module)
    return names


def imports_of(path: Path) -> set[str]:
    return imported_modules(path, module_name(path))


def strings_in_code(path: Path) -> list[tuple[int, str]]:
    """String constants of ``path`` that are not documentation (bare string statements), with their lines."""
    tree = ast.parse(path.read_text(), filename=str(path))
    docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_core_packages_never_import_adapters_data_node_or_cli() -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for package in CORE
        for path in sorted((ROOT / package).rglob("*.py"))
        for name in imports_of(path)
        if name.startswith(OUTSIDE_CORE)
    ]
    assert offenders == []


def test_data_tooling_never_imports_node_or_main_cli() -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / "data").rglob("*.py"))
        for name in imports_of(path)
        if name.startswith(ABOVE_DATA)
    ]
    assert offenders == []


def test_engine_primitives_import_nothing_above_them() -> None:
    offenders = []
    for rel, allowed in PRIMITIVES.items():
        for name in imports_of(ROOT / rel):
            if name.startswith("tradebus") and name != "tradebus.errors" and name not in allowed:
                offenders.append(f"{rel} imports {name}")
    assert offenders == []


def attribute_calls(path: Path) -> set[str]:
    """Names of the attributes ``path`` calls (``x.name(...)``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return {
        node.func.attr for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }


def runtime_imports(path: Path) -> set[str]:
    """The modules ``path`` imports outside ``if TYPE_CHECKING:`` blocks (absolute imports)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    typing_only = {
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
        for stmt in node.body
        for child in ast.walk(stmt)
    }
    return {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and id(node) not in typing_only
    } | {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import) and id(node) not in typing_only
        for alias in node.names
    }


def test_the_backtest_loop_lives_apart_from_the_wiring() -> None:
    # The batch feature runs are the optimised loop's: only engine/batch.py calls them.
    batch_runs = {"run_bars", "run_trades"}
    callers = sorted(path.name for path in (ROOT / "engine").glob("*.py") if attribute_calls(path) & batch_runs)
    assert callers == ["batch.py"]
    # The kernel builds its loop; the loop needs the kernel module only for its types.
    assert "tradebus.engine.batch" in runtime_imports(ROOT / "engine" / "kernel.py")
    assert "tradebus.engine.kernel" not in runtime_imports(ROOT / "engine" / "batch.py")
    assert "tradebus.engine.kernel" in imports_of(ROOT / "engine" / "batch.py")


def test_the_runtime_import_check_skips_type_checking_blocks(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "from typing import TYPE_CHECKING\nimport a.b\nif TYPE_CHECKING:\n    from c import d\n    import e\n"
        "def f():\n    from g import h\n"
    )
    assert runtime_imports(module) == {"typing", "a.b", "g"}


def test_node_imports_no_venue_package() -> None:
    venue_packages = tuple(f"tradebus.adapters.{name}" for name in VENUES)
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / "node").rglob("*.py"))
        for name in imports_of(path)
        if name.startswith(venue_packages)
    ]
    assert offenders == []


@pytest.mark.parametrize("place", ["node", "adapters/common", "adapters/registry.py"])
def test_no_venue_is_named_outside_its_package_and_the_registry(place: str) -> None:
    """Code (not docstrings) of the node and the common adapter parts never spells a venue name."""
    pattern = re.compile("|".join(rf"\b{name}\b" for name in VENUES), re.IGNORECASE)
    target = ROOT / place
    paths = sorted(target.rglob("*.py")) if target.is_dir() else [target]
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {text!r}"
        for path in paths
        for line, text in strings_in_code(path)
        # the CLI's --venue default and help name the venues the user can choose
        if pattern.search(text) and not (place == "cli.py" and text in ("binance",) or "registered venue" in text)
    ]
    assert offenders == []


def test_common_adapter_parts_import_no_venue_package() -> None:
    venue_packages = tuple(f"tradebus.adapters.{name}" for name in VENUES)
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / "adapters" / "common").rglob("*.py"))
        for name in imports_of(path)
        if name.startswith(venue_packages)
    ]
    assert offenders == []


def test_every_venue_package_has_the_same_modules_and_is_registered() -> None:
    packages = sorted(p.name for p in (ROOT / "adapters").iterdir() if (p / "__init__.py").is_file() and p.name != "common")
    assert packages == sorted(VENUES)
    for name in packages:
        modules = {p.name for p in (ROOT / "adapters" / name).glob("*.py")}
        live = modules & LIVE_MODULES
        assert modules - live == VENUE_MODULES, f"adapters/{name}: {sorted((modules - live) ^ VENUE_MODULES)}"
        if VENUES[name].live is not None:  # a venue that trades live has every live module
            assert live == LIVE_MODULES, f"adapters/{name}: missing {sorted(LIVE_MODULES - live)}"
        assert VENUES[name].name == name


def test_the_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from tradebus.data.replay import Replay\n")
    assert "tradebus.data.replay" in imported_modules(module)


def test_the_check_resolves_relative_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from ..adapters.binance import client\nfrom . import bus\nfrom .messages import Trade\n")
    names = imported_modules(module, "tradebus.engine.m")
    assert names == {"tradebus.adapters.binance", "tradebus.engine.bus", "tradebus.engine.messages"}
    package = tmp_path / "__init__.py"
    package.write_text("from .kernel import Kernel\n")
    assert imported_modules(package, "tradebus.engine") == {"tradebus.engine.kernel"}


def test_the_venue_name_check_sees_strings_but_not_docstrings(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text('"""About binance."""\n\ndef f():\n    """okx."""\n    return {"bybit": 1}\n')
    assert strings_in_code(module) == [(5, "bybit")]


def strict_model_settings(path: Path) -> list[int]:
    """Lines of ``path`` that spell out ``extra="forbid"`` in a pydantic ``ConfigDict``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", getattr(node.func, "attr", None)) == "ConfigDict"
        and any(k.arg == "extra" and getattr(k.value, "value", None) == "forbid" for k in node.keywords)
    ]


def test_config_models_share_the_one_strict_base() -> None:
    # Config sections, strategy parameters, sweep spaces and research datasets derive from
    # tradebus.config.base.StrictModel instead of repeating its settings.
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in sorted(ROOT.rglob("*.py"))
        if path.relative_to(ROOT).as_posix() != "config/base.py"
        for line in strict_model_settings(path)
    ]
    assert found == []


def test_the_strict_settings_check_sees_them(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text('from pydantic import ConfigDict\nX = 1\nc = ConfigDict(frozen=True, extra="forbid")\n')
    assert strict_model_settings(sample) == [3]


def test_strategy_sweep_and_research_models_are_strict() -> None:
    from tradebus.config.base import StrictModel
    from tradebus.research.dataset import DatasetConfig
    from tradebus.strategies.base import NoParams
    from tradebus.strategies.ema_cross import EmaCrossParams
    from tradebus.sweep.space import SweepSpace

    for model in (DatasetConfig, NoParams, EmaCrossParams, SweepSpace):
        assert issubclass(model, StrictModel), model


def output_calls(path: Path) -> list[int]:
    """Lines of ``path`` that write to the terminal bypassing the logger: ``print(...)``,
    ``sys.stdout.write``/``sys.stderr.write`` and ``typer.echo``/``click.echo``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id == "print":
            found.append(node.lineno)
        elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Attribute | ast.Name):
            owner = func.value.attr if isinstance(func.value, ast.Attribute) else func.value.id
            if (owner, func.attr) in {("stdout", "write"), ("stderr", "write"), ("typer", "echo"), ("click", "echo")}:
                found.append(node.lineno)
    return found


def test_library_code_never_prints() -> None:
    # CLI modules (cli.py, and the console script's entry.py, which writes its one line before the command line is
    # imported) talk to the terminal through rich and typer; everything else logs through loguru.
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in sorted(ROOT.rglob("*.py"))
        if path.name != "cli.py" and path != ROOT / "entry.py"
        for line in output_calls(path)
    ]
    assert offenders == []


def test_the_print_check_sees_print_and_stream_writes(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text(
        "import sys, typer\n"
        "def f(console):\n"
        "    print('x')\n"
        "    sys.stderr.write('y')\n"
        "    typer.echo('z')\n"
        "    console.print('rich is fine')\n"
    )
    assert output_calls(sample) == [3, 4, 5]


def test_the_readme_layout_names_every_package_once() -> None:
    readme = (ROOT.parent / "README.md").read_text(encoding="utf-8")
    layout = readme[readme.index("## Layout"):]
    tree = layout[layout.index("```") + 3 : layout.index("```", layout.index("```") + 3)]
    listed = re.findall(r"^  ([a-z_]+)/ ", tree, re.MULTILINE)
    packages = sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file())
    assert sorted(listed) == packages
