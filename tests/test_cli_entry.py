"""The ``tradebus`` console script takes Ctrl-C and SIGTERM while it imports the command line.

The script's target is read from ``pyproject.toml``'s ``[project.scripts]`` and run as the script pip writes runs
it, in a real process, stopped inside the import of Numba (a test-only import hook blocks there on its stdin, and
says so on its stdout, until the signal comes).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

#: What pip's console script does (``from <module> import <attr>; sys.exit(<attr>())``), behind a hook that blocks
#: the first import of Numba until a signal.
_CHILD = """
import os, sys

class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "numba":
            sys.meta_path.remove(self)
            os.write(1, b"importing numba\\n")
            os.read(0, 1)  # nothing is ever written: only a signal ends it
        return None

sys.meta_path.insert(0, _Block())
sys.argv = ["tradebus", "--help"]
from {module} import {attr}
sys.exit({attr}())
"""


def _script_target() -> tuple[str, str]:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    module, _, attr = scripts["tradebus"].partition(":")
    return module, attr


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_the_console_script_imports_ends_it_with_one_line(sig: signal.Signals, code: int) -> None:
    """Ctrl-C while ``tradebus`` imported its modules (Numba here, seconds of imports on a loaded machine) showed a
    ``KeyboardInterrupt`` traceback from deep in an import, and SIGTERM killed the process outright (-15). The
    console script now takes both before its heavy imports: one line, exit 130 or 143, nothing run."""
    module, attr = _script_target()
    env = {**os.environ, "NUMBA_CACHE_DIR": str(REPO / ".cache" / "numba")}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD.format(module=module, attr=attr)], cwd=REPO, env=env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"importing numba\n"  # inside the import now (EOF: the child died)
        child.send_signal(sig)
        out, err = child.communicate(timeout=300)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    said = err.decode()
    assert child.returncode == code, said
    assert said == f"tradebus: stopped by {sig.name} while starting; nothing was run\n", said
    assert out == b""


def test_importing_tradebus_loads_nothing_heavy() -> None:
    """The console script's module is in the package: ``import tradebus`` (which runs first) loaded NumPy (the
    feature registry's names, imported with the Numba cache set-up), a window where a signal still met Python's
    default. The package now sets the Numba cache up and loads those names when first used."""
    probe = "import sys, tradebus.entry; print(sorted(m for m in ('numpy', 'numba', 'pandas', 'typer') if m in sys.modules))"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(REPO / ".cache" / "numba")}
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    from tradebus.features import FeatureKind, register

    assert register.__module__ == FeatureKind.__module__ == "tradebus.features.registry"
