"""Compile time of the per-kind batch loops (``kernels.runner``) on a cold and on a warm Numba cache.

Usage::

    python bench/kind_loops.py [--runs 3] [--json]

For one kind per group (a core step kind, a core kind with its own batch loop, a
rolling batch kind, a ``ta`` and a ``stats`` kind), ``--runs`` times in turn: a
fresh interpreter with an empty ``NUMBA_CACHE_DIR`` imports the kernels, compiles a
trivial ``@njit`` sum loop (the reference: Numba's floor for compiling any loop in
that process) and then the kind's runner; a second interpreter on the same cache
loads the runner. Reported: medians of the reference, the cold compile, their ratio
(target: a kind's loop costs its own kernel, a few times the floor, not its group's)
and the warm load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from checkout import use_this_checkout

ROOT = use_this_checkout()
KINDS = ("ewm_skew", "ema", "rolling_std", "rsi", "rolling_corr")

CHILD = """
import json, sys, time
import numpy as np
from numba import njit
from tradebus.features import kernels
from tradebus.features.registry import get_kind

@njit
def reference(a):
    s = 0.0
    for v in a:
        s += v
    return s

t0 = time.perf_counter()
reference(np.ones(3))
t1 = time.perf_counter()
kernels.runner(get_kind(sys.argv[1]).kind_id)
t2 = time.perf_counter()
print(json.dumps([t1 - t0, t2 - t1]))
"""


def _child(kind: str, cache: str) -> tuple[float, float]:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, kind], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    ref, loop = json.loads(done.stdout.strip().splitlines()[-1])
    return ref, loop


def measure(runs: int) -> dict[str, dict[str, float]]:
    """Medians per kind: reference compile, cold runner compile, their ratio, warm runner load (seconds)."""
    samples: dict[str, list[tuple[float, float, float]]] = {kind: [] for kind in KINDS}
    for _ in range(runs):
        for kind in KINDS:
            with tempfile.TemporaryDirectory(prefix="kind_loops_") as cache:
                ref, cold = _child(kind, cache)
                _, warm = _child(kind, cache)
            samples[kind].append((ref, cold, warm))
    out = {}
    for kind, rows in samples.items():
        ref = statistics.median(r[0] for r in rows)
        cold = statistics.median(r[1] for r in rows)
        out[kind] = {"reference_s": ref, "cold_s": cold, "cold_vs_reference": cold / ref,
                     "warm_s": statistics.median(r[2] for r in rows)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--runs", type=int, default=3, help="cold/warm pairs per kind (median reported)")
    args = parser.parse_args()
    result = measure(args.runs)
    if args.json:
        print(json.dumps({"bench": "kind_loops", "runs": args.runs, "kinds": result}, indent=2))
        return
    print(f"{'kind':<14}{'reference s':>12}{'cold s':>9}{'ratio':>8}{'warm s':>9}")
    for kind, row in result.items():
        print(f"{kind:<14}{row['reference_s']:>12.3f}{row['cold_s']:>9.3f}{row['cold_vs_reference']:>8.1f}"
              f"{row['warm_s']:>9.3f}")


if __name__ == "__main__":
    main()
