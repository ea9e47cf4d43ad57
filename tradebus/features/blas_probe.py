"""Numba's BLAS probe without importing :mod:`scipy.linalg`.

The first compiled call of a process (compiling a kernel or loading it from the
cache) makes Numba import ``numba.np.arraymath``, whose module body calls
``numba.np.linalg.ensure_blas()`` to decide whether ``np.dot`` of two vectors may
use BLAS. That call imports ``scipy.linalg.cython_blas``, and with it
``scipy.linalg`` and SciPy's array-API layer (``numpy.f2py``, ``numpy.testing``...):
about a third of a second, a quarter of a cold start, for kernels that never use
BLAS.

:func:`probe_blas_lazily` imports ``numba.np.arraymath`` once with that probe
replaced by an equivalent that looks for the ``cython_blas`` extension file on
disk instead of importing it, then restores the original. The verdict is the
same (``True`` exactly when the module is installed), and so is the LAPACK
integer-width guard, which still runs. Kernels that do use BLAS call the real
``ensure_blas`` when they are compiled, as before.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path

__all__ = ["probe_blas_lazily"]


def _cython_blas_installed() -> bool:
    """Whether ``scipy.linalg.cython_blas`` exists, found without importing SciPy."""
    spec = importlib.util.find_spec("scipy")
    if spec is None or not spec.submodule_search_locations:
        return False
    for base in spec.submodule_search_locations:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            if (Path(base) / "linalg" / f"cython_blas{suffix}").is_file():
                return True
    return False


def probe_blas_lazily() -> None:
    """Import ``numba.np.arraymath`` with a file-system BLAS probe (no-op once imported)."""
    if "numba.np.arraymath" in sys.modules:
        return
    from numba.np import linalg

    real = linalg.ensure_blas

    def ensure_blas() -> None:
        if "scipy.linalg.cython_blas" in sys.modules:
            real()
            return
        if not _cython_blas_installed():
            raise ImportError("scipy 0.16+ is required for linear algebra")
        linalg._check_lapack_int_width()

    linalg.ensure_blas = ensure_blas
    try:
        from numba.np import arraymath  # runs the probe once, at import
    finally:
        linalg.ensure_blas = real
    arraymath.ensure_blas = real  # its module-level name was bound to the stand-in
