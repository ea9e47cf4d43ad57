"""Makes a benchmark measure the checkout it is in, and so the processes it starts.

``python bench/<name>.py`` puts ``bench/`` first on ``sys.path``, not the repository, so a plain
``import tradebus`` finds whichever tradebus the interpreter has installed: with an editable
install from another clone, a benchmark run here would time that clone's code. Every benchmark
calls :func:`use_this_checkout` before it imports tradebus, ``tests`` or another benchmark.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def use_this_checkout() -> Path:
    """Put this checkout's root first on ``sys.path`` and on ``PYTHONPATH``.

    ``PYTHONPATH`` is what a subprocess, a multiprocessing child or a Ray worker starts from, so
    they import this checkout's tradebus too.

    Returns
    -------
    Path
        The checkout's root (the directory holding ``tradebus/``, ``tests/`` and ``bench/``).
    """
    root = str(ROOT)
    if sys.path[:1] != [root]:
        sys.path.insert(0, root)
    paths = [path for path in os.environ.get("PYTHONPATH", "").split(os.pathsep) if path]
    if paths[:1] != [root]:
        os.environ["PYTHONPATH"] = os.pathsep.join([root, *paths])
    return ROOT
