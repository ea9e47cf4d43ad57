"""kill -9 of ``tradebus live`` at seeded-random points against the emulator, then restart: nothing lost, nothing doubled."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.live.kill_harness import SoakCounts, run_session

SEEDS = (11, 23, 37, 41)
KILLS_PER_SESSION = 5


@pytest.mark.slow
async def test_kill9_at_random_points_loses_and_doubles_nothing(tmp_path: Path) -> None:
    total = SoakCounts()
    for seed in SEEDS:
        total.add(await run_session(tmp_path / f"s{seed}", seed, KILLS_PER_SESSION))
    assert total.kills == len(SEEDS) * KILLS_PER_SESSION >= 20
    assert total.kills_by_point["post"] and total.kills_by_point["fill"] and total.kills_by_point["timer"]
    assert total.orders >= total.kills and total.fills > 0, total.as_dict()
    assert total.problems == [], total.as_dict()
    assert (total.orphans, total.duplicates, total.mismatches) == (0, 0, 0)
