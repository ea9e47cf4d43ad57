"""Feature steppers: Numba incremental features, the feature bank and batch runners.

Importing this package points Numba's on-disk cache at a project-owned
directory before any kernel is compiled (see :func:`cache_dir`): unless the user
set ``NUMBA_CACHE_DIR``, it is ``<repo>/.cache/numba`` in a source checkout and
``~/.cache/tradebus/numba`` otherwise. Either way the cache lives in a
sub-directory named after a short hash of every ``tradebus/features/**/*.py``
source, because Numba only checks the file that defines a cached function: a
driver cached in one file would otherwise keep a stale copy of a kernel edited in
another.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
_CACHE_PREFIX = "features-"
#: A cache directory of another source version is removed once unused for this long (seconds).
_STALE_AFTER_S = 3600.0


def _sources_hash(root: Path = _PACKAGE_DIR) -> str:
    """Short hash of the contents and relative paths of every ``*.py`` file under ``root``."""
    digest = hashlib.blake2b(digest_size=6)
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def _default_base() -> Path:
    repo = _PACKAGE_DIR.parent.parent
    if (repo / "pyproject.toml").is_file() and os.access(repo, os.W_OK):
        return repo / ".cache" / "numba"
    return Path.home() / ".cache" / "tradebus" / "numba"


def _configure_cache() -> Path:
    """Set ``NUMBA_CACHE_DIR`` (environment and Numba's live config) to the keyed directory."""
    name = _CACHE_PREFIX + _sources_hash()
    user = os.environ.get("NUMBA_CACHE_DIR")
    if user and Path(user).name == name:
        target = Path(user)  # inherited from a parent process that already keyed it
    else:
        target = (Path(user) if user else _default_base()) / name
    os.environ["NUMBA_CACHE_DIR"] = str(target)
    _prune_stale(target)
    if "numba" in sys.modules:  # otherwise Numba reads the environment when it is first imported
        from numba.core import config as numba_config

        numba_config.CACHE_DIR = str(target)
    return target


def _prune_stale(current: Path, now: float | None = None) -> list[Path]:
    """Remove sibling cache directories of other source versions left unused for an hour.

    Every edit of a kernel source makes a new keyed directory; without pruning they
    pile up (hundreds of MB in a working checkout). A directory still in use by a
    running process of an older version is spared by the age rule; deleting one in
    use would only cost that process a recompile, never a wrong result.
    """
    cutoff = (time.time() if now is None else now) - _STALE_AFTER_S
    removed = []
    try:
        siblings = list(current.parent.glob(_CACHE_PREFIX + "*"))
    except OSError:
        return removed
    for path in siblings:
        try:
            if path != current and path.is_dir() and path.stat().st_mtime < cutoff:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        except OSError:
            continue
    return removed


_CACHE_DIR = _configure_cache()


def cache_dir() -> Path:
    """The Numba cache directory used by the feature kernels of this process."""
    return _CACHE_DIR


#: Public names loaded on first access (importing them compiles nothing, but loads NumPy, Numba and pydantic: the
#: package itself, imported with ``tradebus``, stays light, so the console script takes its signals before them).
_LAZY = {
    "FeatureKind": "tradebus.features.registry",
    "Param": "tradebus.features.registry",
    "all_kinds": "tradebus.features.registry",
    "get_kind": "tradebus.features.registry",
    "register": "tradebus.features.registry",
    "BankSnapshot": "tradebus.features.bank",
    "FeatureBank": "tradebus.features.bank",
    "FeatureSpec": "tradebus.features.spec",
    "load_specs": "tradebus.features.spec",
    "Stepper": "tradebus.features.stepper",
    "compute_features": "tradebus.features.batch",
    "warm_up": "tradebus.features.warmup",
}

__all__ = [
    "BankSnapshot",
    "FeatureBank",
    "FeatureKind",
    "FeatureSpec",
    "Param",
    "Stepper",
    "all_kinds",
    "cache_dir",
    "compute_features",
    "get_kind",
    "load_specs",
    "register",
    "warm_up",
]


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tradebus.features' has no attribute {name!r}")
