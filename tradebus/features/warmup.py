"""Compile (or load from the on-disk cache) every feature kernel and driver ahead of time.

Call :func:`warm_up` once before opening sockets: the first compile of all the
kernels takes tens of seconds, and a cached load still costs some hundred
milliseconds that should not land on the first market event. The cache lives in
:func:`tradebus.features.cache_dir` (keyed by a hash of the feature sources).
"""

from __future__ import annotations

import time

import numpy as np
from loguru import logger

from tradebus.features import cache_dir
from tradebus.features import kernels as _kernels
from tradebus.features.bank import FeatureBank, _compiled_event_drivers, _run_book_events, _run_scalar_events
from tradebus.features.spec import BOOK_LEVELS

__all__ = ["warm_up"]


def warm_up() -> float:
    """Compile or load every kernel and driver for the float64/int64 types used.

    Returns
    -------
    float
        Seconds spent.
    """
    start = time.perf_counter()
    state = np.zeros(8)
    params = np.ones(2)
    x = np.zeros(1)
    out = np.zeros(1)
    _kernels.step(0, state, params, x, out)  # id 0 is not a kind: compiles the dispatch without running a kernel
    _kernels.step1(0, state, params, x, out, 0.0)
    _kernels.run(0, state, params, x, np.zeros((1, 1)), np.zeros((1, 1)))
    _compiled_event_drivers()
    bank = FeatureBank([])
    ts = np.zeros(1, dtype=np.int64)
    _run_scalar_events(bank._ws, 0, ts, np.zeros((1, 5)), 0, np.zeros((1, 0)))
    level = np.zeros((1, BOOK_LEVELS))
    _run_book_events(bank._ws, ts, level, level, level, level, 0, np.zeros((1, 0)))
    elapsed = time.perf_counter() - start
    logger.debug("feature kernels warmed up in {:.3f} s (cache {})", elapsed, cache_dir())
    return elapsed
