"""The first bank update of a process does not parse C with cffi (cold start), and Numba still compiles cffi functions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

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
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr
    loaded, cffi_line = done.stdout.splitlines()[-2:]
    assert loaded == "[]"  # neither cffi's C parser nor scipy.linalg loaded by the first bank update
    assert cffi_line == "True True True False"  # cffi functions still compile and are told apart (FFI built on demand)
