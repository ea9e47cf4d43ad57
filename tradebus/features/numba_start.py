"""Numba's first compiled call without the imports our kernels never use.

The first compilation of a process (and, without :func:`load_cache_hits_lightly`,
the first load of a kernel from the cache) makes Numba fill its typing and target
registries, importing dozens of modules. Two of them do expensive work at import for features no kernel here uses:

* ``numba.np.arraymath`` calls ``numba.np.linalg.ensure_blas()`` to decide whether
  ``np.dot`` of two vectors may use BLAS. That call imports
  ``scipy.linalg.cython_blas``, and with it ``scipy.linalg`` and SciPy's array-API
  layer (``numpy.f2py``, ``numpy.testing``...): about a third of a second, a quarter
  of a cold start. :func:`probe_blas_lazily` imports ``numba.np.arraymath`` once with
  that probe replaced by an equivalent that looks for the ``cython_blas`` extension
  file on disk instead of importing it, then restores the original. The verdict is
  the same (``True`` exactly when the module is installed), and so is the LAPACK
  integer-width guard, which still runs. Kernels that do use BLAS call the real
  ``ensure_blas`` when they are compiled, as before.
* ``numba.core.typing.cffi_utils`` builds a ``cffi.FFI()`` at import (when cffi is
  installed, as ccxt and cryptography require), which imports cffi's C parser
  (pycparser): 0.20 s measured on a loaded 2-core machine. :func:`defer_cffi_parser` imports that
  module with an FFI that is built on its first use instead: when Numba types a cffi
  function or a C type, exactly where it would have used the one built at import.
  ``SUPPORTED`` stays ``True``.

Loading a function from the cache (``FunctionCache.load_overload``) first runs
``target_context.refresh()``, which is the compiler's set-up: it imports every lowering
module (arrays, strings, random generators, typed containers...), installs their
implementations and then refreshes the typing context's templates; about 0.45 s of a cold
start measured on a loaded 2-core machine, of which loaded machine code needs none but the
symbols it links against. Those are Numba's C helpers, math functions and exception
classes (registered when the target context is created), the NRT's (registered, and its
own functions compiled, by ``rtsys.initialize``) and the hash secret that
``numba.cpython.hashing`` registers when imported: no other module that ``refresh`` imports
registers a symbol. :func:`load_cache_hits_lightly` makes a CPU cache hit do just that
(:func:`link_symbols`). Numba's compiler still refreshes both contexts before every compilation, so the set-up
moves to the first compilation of the process, before that compilation's own work and only
if one happens (a process whose kernels are all in the cache, such as a warmed daemon, never
pays it); a cache hit never pays it.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from typing import Any

__all__ = ["defer_cffi_parser", "link_symbols", "load_cache_hits_lightly", "probe_blas_lazily"]


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


class _DeferredFFI:
    """Stands for ``numba.core.typing.cffi_utils.ffi`` until an attribute is read: then builds it."""

    def __getattr__(self, name: str) -> Any:
        import cffi
        from numba.core.typing import cffi_utils

        if cffi_utils.ffi is self:
            cffi_utils.ffi = cffi.FFI()
        return getattr(cffi_utils.ffi, name)


def defer_cffi_parser() -> None:
    """Import ``numba.core.typing.cffi_utils`` with its FFI built on first use (no-op once imported or without cffi)."""
    if "numba.core.typing.cffi_utils" in sys.modules:
        return
    try:
        import cffi
    except ImportError:
        return  # Numba's own import then sets ffi = None, SUPPORTED = False, as before
    real = cffi.FFI
    cffi.FFI = _DeferredFFI  # type: ignore[misc,assignment]
    try:
        importlib.import_module("numba.core.typing.cffi_utils")  # its ffi = cffi.FFI() runs once, at import
    finally:
        cffi.FFI = real  # type: ignore[misc]


def link_symbols(target_context: Any) -> None:
    """Register every symbol that code loaded into the CPU ``target_context`` may link against.

    What ``target_context.refresh()`` registers, without the rest of it: the NRT's
    (``rtsys.initialize``) and the hash secret's (importing ``numba.cpython.hashing``).
    """
    from numba.core.runtime import rtsys

    rtsys.initialize(target_context)
    importlib.import_module("numba.cpython.hashing")


#: The private parts of Numba's ``FunctionCache`` (0.60 to 0.68) the light load calls.
_LOAD_PARTS = ("_load_overload", "_guard_against_spurious_io_errors")


def load_cache_hits_lightly() -> None:
    """Make a CPU cache hit only :func:`link_symbols` instead of refreshing both contexts (no-op once done).

    Replaces ``numba.core.caching.FunctionCache.load_overload`` (see the module
    docstring); any other target context than the CPU one still gets Numba's own.
    """
    from numba.core import caching
    from numba.core.cpu import CPUContext

    real = caching.FunctionCache.load_overload
    if getattr(real, "_tradebus_light", False):
        return
    if not all(hasattr(caching.FunctionCache, name) for name in _LOAD_PARTS):
        return  # a Numba whose cache is built otherwise keeps its own loading (a slower start, nothing else)

    def load_overload(self: Any, sig: Any, target_context: Any) -> Any:
        if type(target_context) is not CPUContext:
            return real(self, sig, target_context)
        link_symbols(target_context)
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)

    load_overload._tradebus_light = True  # type: ignore[attr-defined]
    caching.FunctionCache.load_overload = load_overload
