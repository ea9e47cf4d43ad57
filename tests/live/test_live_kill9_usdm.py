"""kill -9 of ``tradebus live`` on a Binance USD-M perpetual at seeded-random points, then restart: nothing lost, nothing doubled.

The spot test's scenario (``test_live_kill9.py``) on the USD-M account emulator, the
strategy long and short: after the kills and a reconciling restart, every venue order is
journaled, every venue trade booked once, and the position and the USDT wallet (realized
PnL at the average entry price, less fees) from the journal's fills equal the emulator's.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.live.kill_harness import SoakCounts, audit, kill_and_restart

SEEDS = (5, 17)
KILLS_PER_SESSION = 3


@pytest.mark.slow
async def test_usdm_kill9_at_random_points_loses_and_doubles_nothing(tmp_path: Path) -> None:
    sessions = [SoakCounts(sessions=1) for _ in SEEDS]
    emulators = await asyncio.gather(
        *(kill_and_restart(tmp_path / f"s{seed}", seed, KILLS_PER_SESSION, counts, market="usdm") for seed, counts in zip(SEEDS, sessions))
    )
    total = SoakCounts()
    for seed, counts, emulator in zip(SEEDS, sessions, emulators):
        audit(tmp_path / f"s{seed}", seed, emulator, counts)
        total.add(counts)
    assert total.kills == len(SEEDS) * KILLS_PER_SESSION
    assert total.orders > 0 and total.fills > 0, total.as_dict()
    assert total.problems == [], total.as_dict()
    assert (total.orphans, total.duplicates, total.mismatches) == (0, 0, 0)
    # the account went both ways: the wallet check covers realized PnL, not only fees
    sides = {f.fill.side for emulator in emulators for f in emulator.fills}
    assert len(sides) == 2, sides
