"""Benchmark: a busy loop's catch-up through ``LiveClock.run_due``, against the full scan it replaced, in one run.

A live daemon under load holds one submit-timeout alert per working order, and a repeating
timer that sends orders. ``--pending`` alerts wait (due later), then the loop, late, catches up:
``run_due`` fires ``--fire`` alerts due meanwhile, each acknowledging an order (canceling its
timeout alert) and setting a new one, as an order sent from the callback does. The reference is
the former ``run_due`` (``ScanClock`` of ``tests/engine/test_live_clock_due_order.py``), which
looked through every pending timer and alert for each firing; the ratio is scan / heap.

Figures are medians over ``--repeats`` runs (µs per firing).

Usage::

    python bench/clock_due.py [--pending 5000] [--fire 1000] [--repeats 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time

from checkout import use_this_checkout

ROOT = use_this_checkout()

from tests.engine.test_live_clock_due_order import ScanClock  # noqa: E402
from tradebus.engine.clock import LiveClock  # noqa: E402
from tradebus.engine.messages import TimeEvent  # noqa: E402


def catch_up(clock: LiveClock, pending: int, fire: int) -> float:
    """Seconds ``clock.run_due`` takes to fire ``fire`` due alerts with ``pending`` more waiting."""
    base = time.time_ns() + 3_600 * 1_000_000_000  # the loop's own callbacks never run during the bench
    acked = iter(range(pending))

    def on_due(event: TimeEvent) -> None:
        clock.cancel(f"timeout-{next(acked)}")  # an order acknowledged
        clock.set_alert(f"new-{event.name}", base + 10**9 + int(event.name[4:]), lambda e: None)  # one sent

    for i in range(pending):
        clock.set_alert(f"timeout-{i}", base + 10**6 + i, lambda e: None)
    for i in range(fire):
        clock.set_alert(f"due-{i}", base + i, on_due)
    start = time.perf_counter()
    clock.run_due(base + fire)
    took = time.perf_counter() - start
    clock.stop()
    return took


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pending", type=int, default=5_000)
    parser.add_argument("--fire", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    heap = [catch_up(LiveClock(), args.pending, args.fire) for _ in range(args.repeats)]
    scan = [catch_up(ScanClock(), args.pending, args.fire) for _ in range(args.repeats)]
    per_fire = {name: statistics.median(runs) / args.fire * 1e6 for name, runs in (("heap", heap), ("scan", scan))}
    result = {"pending": args.pending, "fire": args.fire, "heap_us": round(per_fire["heap"], 2),
              "scan_us": round(per_fire["scan"], 2), "ratio": round(per_fire["scan"] / per_fire["heap"], 1)}
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        sys.stdout.write(
            f"run_due catch-up: {args.fire} firings with {args.pending} alerts pending\n"
            f"  heap: {result['heap_us']:.2f} µs per firing\n"
            f"  scan (the former run_due): {result['scan_us']:.2f} µs per firing\n"
            f"  ratio scan / heap: {result['ratio']:.1f}x\n"
        )


if __name__ == "__main__":
    asyncio.run(main())
