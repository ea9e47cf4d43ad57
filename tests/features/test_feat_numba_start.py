"""The first bank update of a process does not parse C with cffi (cold start), and Numba still compiles cffi functions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _child_lines(script: str, cwd: Path, path: Path = ROOT) -> list[str]:
    """The stdout lines of ``python -c script`` in ``cwd`` with ``path`` on PYTHONPATH (the test fails if it fails)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys((str(ROOT), str(path))))}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.splitlines()

_CHILD = """
import math, sys
from tradebus.features.bank import FeatureBank

bank = FeatureBank([{"name": "ema_3", "kind": "ema", "params": {"span": 3}, "input": "close"}])
bank.update_bar(1_700_000_000_000_000_000, 1.0, 2.0, 0.5, 1.5, 10.0)
print(sorted(m for m in ("cffi.cparser", "pycparser", "scipy.linalg") if m in sys.modules))

import cffi
from numba import njit
from numba.core.typing import cffi_utils

ffi = cffi.FFI()
ffi.cdef("double cos(double x);")
libm = ffi.dlopen(None)
cos = libm.cos

@njit
def call(x):
    return cos(x)

print(cffi_utils.SUPPORTED, call(0.5) == math.cos(0.5), cffi_utils.is_cffi_func(cos), cffi_utils.is_cffi_func(math.cos))
"""


def test_first_compiled_call_defers_cffi_parser_and_cffi_functions_still_compile(tmp_path: Path) -> None:
    _child_lines(_CHILD, tmp_path)  # may compile the bank (a cold cache); the second run is a cold start
    loaded, cffi_line = _child_lines(_CHILD, tmp_path)[-2:]
    assert loaded == "[]"  # neither cffi's C parser nor scipy.linalg loaded by the first bank update
    assert cffi_line == "True True True False"  # cffi functions still compile and are told apart (FFI built on demand)


_HASH_MODULE = """
from numba import njit


@njit(cache=True)
def str_hash(text):
    return hash(text)
"""

_CACHE_HIT_CHILD = """
import sys
from tradebus.features.bank import FeatureBank
import hashmod

bank = FeatureBank([{"name": "ema_3", "kind": "ema", "params": {"span": 3}, "input": "close"}])
for close in (1.0, 2.0, 3.0, 4.0, 5.0):
    bank.update_bar(1_700_000_000_000_000_000, close, close, close, close, 1.0)
hashed = hashmod.str_hash("tradebus") == hash("tradebus")  # loaded code linked against the hash secret
refreshed = "numba.np.random.generator_methods" in sys.modules  # imported by a context refresh only

import numpy as np
from numba import njit


@njit
def compiled_after(n):
    d = {"a": n}
    return d["a"] + np.random.random() * 0.0


print(refreshed, hashed, bank.get("ema_3"), compiled_after(2.0))
"""


def test_cache_hits_refresh_no_context_and_compiling_afterwards_still_works(tmp_path: Path) -> None:
    (tmp_path / "hashmod.py").write_text(_HASH_MODULE, encoding="utf-8")
    # the first run may compile; the second loads everything from the cache
    lines = [_child_lines(_CACHE_HIT_CHILD, tmp_path, tmp_path)[-1] for _ in range(2)]
    # no refresh on cache hits; a str hash loaded from the cache equals CPython's; EMA span 3 of
    # 1..5 seeded with the mean of the first 3: 2 -> 3 -> 4; a typed dict and np.random compile after
    assert lines[1] == "False True 4.0 2.0"


_SYMBOLS_CHILD = """
import llvmlite.binding as ll
from numba.core.registry import cpu_target
from tradebus.features.numba_start import link_symbols

context = cpu_target.target_context  # creating it registers Numba's C helpers, math and exceptions
names = []
real = ll.add_symbol
ll.add_symbol = lambda name, address: (names.append(name), real(name, address))[1]
link_symbols(context)
light = set(names)
names.clear()
context.refresh()
print(sorted(set(names) - light), len(light) > 0)
"""


def test_a_full_refresh_registers_no_symbol_that_link_symbols_did_not() -> None:
    assert _child_lines(_SYMBOLS_CHILD, ROOT)[-1] == "[] True"


_OTHER_NUMBA_CHILD = """
from numba.core import caching

real = caching.FunctionCache.load_overload
del caching.Cache._load_overload  # a Numba whose cache loads otherwise
from tradebus.features import numba_start

numba_start.load_cache_hits_lightly()
print(caching.FunctionCache.load_overload is real)
"""


def test_a_numba_without_the_private_load_parts_keeps_its_own_cache_loading() -> None:
    assert _child_lines(_OTHER_NUMBA_CHILD, ROOT)[-1] == "True"
