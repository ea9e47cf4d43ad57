"""kill -9 soak of the live daemon against the local Binance account emulator: counts, not timings.

Runs ``tests/live/kill_harness.py``'s scenario at scale: sessions of ``--per-session`` kills
(each session a fresh emulator, public trade stream and journal), ``--kills`` SIGKILLs of
``python -m tradebus.cli live`` in total, each at a seeded-random point (a random delay
after start-up, right after one of its order requests reached the venue, right after the
venue filled one of its orders), the daemon restarted on the same journal after each, the
market (and the account's matching) moving on while it is dead; a last ``--dry-run``
start reconciles. Printed: kills (by point), venue orders, venue fills, and the defects the
audit found: orphans (a venue order neither journaled nor reported external), duplicates
(a client id posted twice, two venue orders for one decision, a trade booked twice),
mismatches (a venue trade never booked, position / cash / PnL from the journal's fills
against the account). Target: zero of each; exits 1 otherwise. ``--market usdm`` runs it on
a Binance USD-M perpetual account (long and short; the wallet is checked by realized PnL at
the average entry price, less fees).

Usage::

    python bench/live_soak.py [--kills 100] [--per-session 10] [--parallel 2] [--seed 1] [--market spot|usdm] [--keep DIR] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from loguru import logger

from checkout import use_this_checkout

ROOT = use_this_checkout()

from tests.live.kill_harness import SoakCounts, run_session  # noqa: E402


async def soak(kills: int, per_session: int, parallel: int, seed: int, tmp: Path, market: str = "spot") -> SoakCounts:
    """``kills`` SIGKILLs in sessions of ``per_session``, ``parallel`` sessions at a time; the summed counts."""
    sizes = [min(per_session, kills - start) for start in range(0, kills, per_session)]
    total = SoakCounts()
    for first in range(0, len(sizes), parallel):
        batch = range(first, min(first + parallel, len(sizes)))
        results = await asyncio.gather(*(run_session(tmp / f"session{i}", seed * 1_000 + i, sizes[i], market=market) for i in batch))
        for i, counts in zip(batch, results):
            total.add(counts)
            logger.info("session {}: {} kill(s), {} order(s), {} fill(s), problems {}", i, counts.kills, counts.orders, counts.fills, counts.problems)
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=100, help="SIGKILLs in total (default 100)")
    parser.add_argument("--per-session", type=int, default=10, help="kills per emulator session (default 10)")
    parser.add_argument("--parallel", type=int, default=2, help="sessions run side by side (default 2)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--market", choices=["spot", "usdm"], default="spot", help="Binance spot or USD-M perpetual (default spot)")
    parser.add_argument("--keep", type=Path, help="run in this directory and keep the logs and journals (default: a temporary one)")
    parser.add_argument("--json", action="store_true", help="print the counts as JSON")
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="INFO" if not args.json else "WARNING")
    start = time.perf_counter()
    if args.keep is not None:
        total = asyncio.run(soak(args.kills, args.per_session, args.parallel, args.seed, args.keep, args.market))
    else:
        with tempfile.TemporaryDirectory(prefix="live_soak_") as tmp:
            total = asyncio.run(soak(args.kills, args.per_session, args.parallel, args.seed, Path(tmp), args.market))
    seconds = time.perf_counter() - start
    result = {"bench": "live_soak", "market": args.market, "seconds": round(seconds, 1), **total.as_dict()}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"kill -9 soak ({args.market}): {total.kills} kills in {total.sessions} sessions ({seconds:.0f} s), by point {dict(total.kills_by_point)}")
        print(f"venue orders {total.orders}, venue fills {total.fills}")
        print(f"orphans {total.orphans}, duplicates {total.duplicates}, mismatches {total.mismatches}")
        for problem in total.problems:
            print(f"  {problem}")
    return 0 if not total.problems else 1


if __name__ == "__main__":
    sys.exit(main())
