"""Compile (or load from the on-disk cache) every feature kernel and shared driver ahead of time.

Call :func:`warm_up` once before opening sockets: the first compile of all the
kernels takes tens of seconds, and a cached load still costs some hundred
milliseconds that should not land on the first market event. The cache lives in
:func:`tradebus.features.cache_dir` (keyed by a hash of the feature sources).
A :class:`~tradebus.features.bank.FeatureBank` compiles (or loads) the drivers of
its own structure when it is built.
"""

from __future__ import annotations

import time

import numpy as np
from loguru import logger

from tradebus.features import cache_dir, drivers
from tradebus.features import kernels as _kernels
from tradebus.features.spec import EVENTS

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
    shared = drivers.fields_only()
    for event in EVENTS:
        drivers.live_entry(shared, event)
        drivers.batch_runner(shared, event)
    elapsed = time.perf_counter() - start
    logger.debug("feature kernels warmed up in {:.3f} s (cache {})", elapsed, cache_dir())
    return elapsed
