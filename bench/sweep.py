"""Sweep benchmark: a 200-trial grid sweep on 2 local Ray workers against 1 worker, in the same run.

Usage::

    python bench/sweep.py              # human-readable table
    python bench/sweep.py --json       # one JSON document
    python bench/sweep.py --trials 200 --runs 3 --months 48

Each side starts its own local Ray runtime (``num_cpus`` = its workers), warms its workers
up with one trial each (imports, Numba cache), then times ``run_sweep`` of the same
``--trials``-point grid of ``ema_cross`` (fast x slow, every point valid) on ``--months``
of the shipped Coinbase BTC-USD 4h bars, into a fresh directory. The sides alternate
within each run (1 then 2 workers, then 2 then 1, ...); figures are medians over runs.

* ``speedup``: 1-worker sweep time / 2-worker sweep time (target >= 1.8x);
* per side: the sweep's wall time, the median trial time inside the worker (``worker_s``) and
  its CPU time (``worker_cpu_s``: a wall time above it means the worker waited for a core),
  the median time from submission to result in the driver (``wall_s``, of the trial's task: a
  task runs as many trials as take ~0.1 s, and the driver keeps 2 tasks per worker in flight),
  and Ray's per-trial overhead
  ``wall time * workers / trials - mean worker_s`` (scheduling, serialisation, the
  driver's Parquet write, idle gaps), also as a fraction of the mean trial;
* ``cores_used``: the trials' CPU time / the sweep's wall time, the cores the workers really
  got (on a machine shared with other work, 2 workers may get well under 2).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml

from checkout import use_this_checkout

REPO = use_this_checkout()

from tradebus.sweep.runner import run_sweep  # noqa: E402


def write_inputs(root: Path, trials: int, months: int) -> tuple[Path, Path]:
    """The run config and a grid space of ``trials`` valid (fast, slow) points."""
    config = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())
    config["data"]["catalog"] = str(REPO / "data" / "catalog")
    config["data"]["start"] = "2022-01-01"
    config["data"]["end"] = f"{2022 + months // 12}-{months % 12 + 1:02d}-01"
    (root / "run.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    slows = [30 + 5 * i for i in range(10)]
    fasts = list(range(2, 2 + -(-trials // len(slows))))
    space = {"method": "grid", "params": {"strategy.params.fast": fasts, "strategy.params.slow": slows}}
    (root / "space.yaml").write_text(yaml.safe_dump(space, sort_keys=False))
    return root / "run.yaml", root / "space.yaml"


def side(workers: int, config: Path, space: Path, warm_space: Path, out: Path) -> dict[str, Any]:
    """One timed sweep on a fresh local runtime of ``workers`` CPUs."""
    import ray

    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        run_sweep(config, warm_space, out.with_name(out.name + "-warm"))
        t0 = time.perf_counter()
        result = run_sweep(config, space, out)
        elapsed = time.perf_counter() - t0
    finally:
        ray.shutdown()
    rows = [pq.read_table(p).to_pylist()[0] for p in sorted((out / "trials").glob("trial-*.parquet"))]
    assert len(rows) == result.total and all(r["status"] == "ok" for r in rows)
    worker = [r["worker_s"] for r in rows]
    mean_worker = statistics.fmean(worker)
    overhead = elapsed * workers / len(rows) - mean_worker
    return {
        "workers": workers,
        "trials": len(rows),
        "sweep_s": elapsed,
        "trial_worker_s_median": statistics.median(worker),
        "trial_worker_cpu_s_median": statistics.median(r["worker_cpu_s"] for r in rows),
        "trial_end_to_end_s_median": statistics.median(r["wall_s"] for r in rows),
        "ray_overhead_per_trial_s": overhead,
        "ray_overhead_fraction": overhead / mean_worker,
        "cores_used": sum(r["worker_cpu_s"] for r in rows) / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--months", type=int, default=48, help="Months of 4h bars per trial (from 2022-01).")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from tradebus.cli import setup_logging

    setup_logging("WARNING")
    per_side: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config, space = write_inputs(root, args.trials, args.months)
        warm = root / "warm.yaml"
        warm.write_text(yaml.safe_dump({"params": {"strategy.params.fast": [3, 4], "strategy.params.slow": [40]}}))
        for run in range(args.runs):
            order = (1, 2) if run % 2 == 0 else (2, 1)
            for workers in order:
                per_side[workers].append(side(workers, config, space, warm, root / f"run{run}-w{workers}"))
    summary: dict[str, Any] = {"trials": args.trials, "months": args.months, "runs": args.runs}
    for workers, results in per_side.items():
        summary[f"workers_{workers}"] = {
            key: statistics.median(r[key] for r in results) for key in results[0] if key not in ("workers", "trials")
        }
    ratios = [a["sweep_s"] / b["sweep_s"] for a, b in zip(per_side[1], per_side[2], strict=True)]
    summary["speedup_2_vs_1"] = statistics.median(ratios)
    summary["target_speedup"] = 1.8
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"sweep of {args.trials} trials ({args.months} months of 4h bars each), medians of {args.runs} run(s)")
    for workers in (1, 2):
        s = summary[f"workers_{workers}"]
        print(f"  {workers} worker(s): {s['sweep_s']:.2f} s; trial in worker {s['trial_worker_s_median'] * 1e3:.1f} ms "
              f"(CPU {s['trial_worker_cpu_s_median'] * 1e3:.1f} ms), end to end "
              f"{s['trial_end_to_end_s_median'] * 1e3:.1f} ms; Ray overhead "
              f"{s['ray_overhead_per_trial_s'] * 1e3:.1f} ms/trial ({s['ray_overhead_fraction']:.1%}); "
              f"cores used {s['cores_used']:.2f}")
    print(f"  speedup 2 vs 1 worker: {summary['speedup_2_vs_1']:.2f}x (target >= 1.8x)")


if __name__ == "__main__":
    main()
