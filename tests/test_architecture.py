"""The seams of ARCHITECTURE.md: the core never imports an adapter, data tooling or the daemon."""

from __future__ import annotations

import ast
from pathlib import Path

import tradebus

CORE = ("engine", "features", "strategies", "risk", "execution", "account", "reports")
OUTSIDE_CORE = ("tradebus.adapters", "tradebus.data", "tradebus.node", "tradebus.cli", "tradebus.research")
# Data tooling sits beside the venue adapters: it may use the core, never a daemon or the main CLI.
ABOVE_DATA = ("tradebus.node", "tradebus.cli")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_core_packages_never_import_adapters_data_node_or_cli() -> None:
    root = Path(tradebus.__file__).parent
    offenders = []
    for package in CORE:
        for path in sorted((root / package).rglob("*.py")):
            for name in imported_modules(path):
                if name.startswith(OUTSIDE_CORE):
                    offenders.append(f"{path.relative_to(root)} imports {name}")
    assert offenders == []


def test_data_tooling_never_imports_node_or_main_cli() -> None:
    root = Path(tradebus.__file__).parent
    offenders = [
        f"{path.relative_to(root)} imports {name}"
        for path in sorted((root / "data").rglob("*.py"))
        for name in imported_modules(path)
        if name.startswith(ABOVE_DATA)
    ]
    assert offenders == []


def test_the_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from tradebus.data.replay import Replay\n")
    assert "tradebus.data.replay" in imported_modules(module)
