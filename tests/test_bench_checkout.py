"""A benchmark measures the checkout it runs from, not whichever tradebus the interpreter has installed.

The interpreter running these tests finds tradebus somewhere (an editable install, ``PYTHONPATH``): a
copy of the repository in a temporary directory is then "another checkout", whose ``tradebus`` names
itself on stderr when imported.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHES = sorted(path for path in (ROOT / "bench").glob("*.py") if path.name != "checkout.py")
MARK = "tradebus imported from"


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A copy of ``bench/`` and ``tradebus/`` whose ``tradebus/__init__.py`` writes ``MARK <its path>``."""
    clone = tmp_path / "clone"
    for name in ("bench", "tradebus"):
        shutil.copytree(ROOT / name, clone / name, ignore=shutil.ignore_patterns("__pycache__"))
    init = clone / "tradebus" / "__init__.py"
    init.write_text(init.read_text() + f"\nimport sys as _sys\n_sys.stderr.write(f'{MARK} {{__file__}}\\n')\n")
    return clone


def imported_from(stderr: str) -> list[str]:
    return [line.removeprefix(MARK).strip() for line in stderr.splitlines() if line.startswith(MARK)]


def test_a_benchmark_imports_the_tradebus_of_the_checkout_it_runs_from(clone: Path, tmp_path: Path) -> None:
    # run from outside both checkouts, as `python ~/other/bench/execution.py` would be
    done = subprocess.run(
        [sys.executable, str(clone / "bench" / "execution.py"), "--help"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert imported_from(done.stderr) == [str(clone / "tradebus" / "__init__.py")]


def test_a_process_a_benchmark_starts_imports_the_same_tradebus(clone: Path, tmp_path: Path) -> None:
    probe = clone / "bench" / "probe.py"
    probe.write_text(
        "import subprocess, sys\n"
        "from checkout import use_this_checkout\n"
        "use_this_checkout()\n"
        "import tradebus\n"
        "subprocess.run([sys.executable, '-c', 'import tradebus'], check=True)\n"
    )
    done = subprocess.run([sys.executable, str(probe)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert imported_from(done.stderr) == [str(clone / "tradebus" / "__init__.py")] * 2


def _first_line(tree: ast.Module, found: object) -> int | None:
    lines = [node.lineno for node in tree.body if found(node)]  # type: ignore[operator]
    return min(lines) if lines else None


@pytest.mark.parametrize("bench", BENCHES, ids=lambda path: path.name)
def test_every_benchmark_puts_its_checkout_first_before_it_imports_tradebus(bench: Path) -> None:
    """Module level: ``use_this_checkout()`` before any import of tradebus, ``tests`` or another benchmark."""
    local = {"tradebus", "tests"} | {path.stem for path in BENCHES}

    def imports_local(node: ast.stmt) -> bool:
        if isinstance(node, ast.Import):
            return any(alias.name.split(".")[0] in local for alias in node.names)
        return isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in local

    def calls_it(node: ast.stmt) -> bool:
        value = node.value if isinstance(node, (ast.Expr, ast.Assign)) else None
        return (isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
                and value.func.id == "use_this_checkout")

    tree = ast.parse(bench.read_text(), filename=str(bench))
    called, first_import = _first_line(tree, calls_it), _first_line(tree, imports_local)
    assert called is not None, f"{bench.name} never calls use_this_checkout() at module level"
    assert first_import is None or called < first_import, (
        f"{bench.name}:{first_import} imports tradebus, tests or a benchmark before use_this_checkout() "
        f"(line {called})"
    )


def test_make_bench_runs_every_benchmark() -> None:
    """The README says ``make bench`` runs them all: the Makefile's ``BENCHES`` names every script in ``bench/``."""
    line = next(line for line in (ROOT / "Makefile").read_text().splitlines() if line.startswith("BENCHES :="))
    listed = line.partition(":=")[2].split()
    assert sorted(listed) == sorted(path.stem for path in BENCHES)
    assert len(set(listed)) == len(listed)
