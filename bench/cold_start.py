"""Cold start with a warm Numba cache: process start to the first feature-bank update.

Usage::

    python bench/cold_start.py [--runs 7] [--json]

Two kinds of fresh interpreter run alternately, ``--runs`` times each, and each is
timed from spawn to exit by the parent:

* reference: ``python -c "import numpy, numba"``;
* tradebus: import :class:`~tradebus.features.bank.FeatureBank`, build the 20-feature
  mixed bank of ``bench/features.py`` and feed it one bar (the first update).

The cache is filled by one untimed tradebus run first. Reported: the medians of both,
their ratio (target <= 2x), and, from inside the tradebus child, the median split of
its time into import, bank build and first update.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from features import available_specs  # noqa: E402

REFERENCE = "import numpy, numba"

CHILD = """
import time
t0 = time.perf_counter()
from tradebus.features.bank import FeatureBank
t1 = time.perf_counter()
bank = FeatureBank({specs!r})
t2 = time.perf_counter()
bank.update_bar(1_700_000_000_000_000_000, 1.0, 1.0, 1.0, 1.0, 1.0)
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2)
"""


def _spawn(code: str) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True)
    return time.perf_counter() - start, done.stdout


def measure(runs: int) -> dict[str, float]:
    """Median seconds of both kinds of run (alternating) and the split of the tradebus one."""
    child = CHILD.format(specs=available_specs())
    _spawn(child)  # fill the cache (compile or load every driver once)
    ref: list[float] = []
    ours: list[float] = []
    parts: list[list[float]] = []
    for _ in range(runs):
        ref.append(_spawn(REFERENCE)[0])
        secs, out = _spawn(child)
        ours.append(secs)
        parts.append([float(v) for v in out.split()[-3:]])
    r, o = statistics.median(ref), statistics.median(ours)
    return {
        "reference_import_numpy_numba_s": r,
        "process_start_to_first_update_s": o,
        "ratio": o / r,
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
        f"  inside the tradebus process: import {res['in_child_import_s']:.3f} s, build bank "
        f"{res['in_child_build_bank_s']:.3f} s, first update {res['in_child_first_update_s']:.3f} s"
    )


if __name__ == "__main__":
    main()
