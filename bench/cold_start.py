"""Cold start with a warm Numba cache: process start to the first feature-bank update.

Usage::

    python bench/cold_start.py [--runs 7] [--json]

Two kinds of fresh interpreter run alternately, ``--runs`` times each:

* reference: ``python -c "import numpy, numba"``;
* tradebus: import :class:`~tradebus.features.bank.FeatureBank`, build the 20-feature
  mixed bank of ``bench/features.py`` and feed it one bar (the first update).

Each run is timed twice by the parent: from spawn to the moment the child has done
its work (the imports done, or the first bank update returned: the child prints
``time.perf_counter()``, the system-wide monotonic clock on Linux) -- the target's
"process start to first update" -- and from spawn to exit, which adds interpreter
teardown (the final garbage collection of what Numba left, ~0.3 s for tradebus).

The caches are filled by one untimed tradebus run first: Numba's, and Python's bytecode
cache (children run without ``PYTHONDONTWRITEBYTECODE``, so tradebus modules load from
``__pycache__`` as numpy and numba do from site-packages, instead of being compiled
from source every run). Reported: the medians of both
kinds, their ratios (target: start to first update <= 2x), and, from inside the
tradebus child, the median split of its time into import, bank build and first update.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from checkout import use_this_checkout

ROOT = use_this_checkout()

from features import available_specs  # noqa: E402

REFERENCE = "import numpy, numba"
REFERENCE_CHILD = "import numpy, numba, time; print(time.perf_counter())"

CHILD = """
import time
t0 = time.perf_counter()
from tradebus.features.bank import FeatureBank
t1 = time.perf_counter()
bank = FeatureBank({specs!r})
t2 = time.perf_counter()
bank.update_bar(1_700_000_000_000_000_000, 1.0, 1.0, 1.0, 1.0, 1.0)
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2, time.perf_counter())
"""


def _spawn(code: str) -> tuple[float, float, str]:
    """Seconds from spawn to the child's last printed ``perf_counter`` and to its exit; its stdout."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    end = time.perf_counter()
    return float(done.stdout.split()[-1]) - start, end - start, done.stdout


def measure(runs: int) -> dict[str, float]:
    """Median seconds of both kinds of run (alternating) and the split of the tradebus one."""
    child = CHILD.format(specs=available_specs())
    _spawn(child)  # fill the cache (compile or load every driver once)
    ref: list[tuple[float, float]] = []
    ours: list[tuple[float, float]] = []
    parts: list[list[float]] = []
    for _ in range(runs):
        ref.append(_spawn(REFERENCE_CHILD)[:2])
        ready, secs, out = _spawn(child)
        ours.append((ready, secs))
        parts.append([float(v) for v in out.split()[-4:-1]])
    r, o = statistics.median(x[0] for x in ref), statistics.median(x[0] for x in ours)
    r_exit, o_exit = statistics.median(x[1] for x in ref), statistics.median(x[1] for x in ours)
    return {
        "reference_import_numpy_numba_s": r,
        "process_start_to_first_update_s": o,
        "ratio": o / r,
        "reference_to_exit_s": r_exit,
        "tradebus_to_exit_s": o_exit,
        "ratio_to_exit": o_exit / r_exit,
        "in_child_import_s": statistics.median(p[0] for p in parts),
        "in_child_build_bank_s": statistics.median(p[1] for p in parts),
        "in_child_first_update_s": statistics.median(p[2] for p in parts),
        "runs": runs,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help="runs of each kind (medians reported)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    res = measure(args.runs)
    if args.json:
        print(json.dumps(res, indent=2))
        return
    print(
        f"cold start (warm Numba cache, medians of {args.runs}): tradebus process start -> first bank update "
        f"{res['process_start_to_first_update_s']:.3f} s; python -c {REFERENCE!r} "
        f"{res['reference_import_numpy_numba_s']:.3f} s; ratio {res['ratio']:.2f}x (target <= 2x)"
    )
    print(
        f"  spawn to exit (adds interpreter teardown): tradebus {res['tradebus_to_exit_s']:.3f} s, "
        f"reference {res['reference_to_exit_s']:.3f} s; ratio {res['ratio_to_exit']:.2f}x"
    )
    print(
        f"  inside the tradebus process: import {res['in_child_import_s']:.3f} s, build bank "
        f"{res['in_child_build_bank_s']:.3f} s, first update {res['in_child_first_update_s']:.3f} s"
    )


if __name__ == "__main__":
    main()
