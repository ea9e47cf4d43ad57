"""kill -9 of ``tradebus live`` at seeded-random points against the emulator, then restart: nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.live.kill_harness import SoakCounts, audit, kill_and_restart

SEEDS = (11, 23, 37, 41)
KILLS_PER_SESSION = 5


@pytest.mark.slow
async def test_kill9_at_random_points_loses_and_doubles_nothing(tmp_path: Path) -> None:
    sessions = [SoakCounts(sessions=1) for _ in SEEDS]
    emulators = await asyncio.gather(
        *(kill_and_restart(tmp_path / f"s{seed}", seed, KILLS_PER_SESSION, counts) for seed, counts in zip(SEEDS, sessions))
    )
    total = SoakCounts()
    for seed, counts, emulator in zip(SEEDS, sessions, emulators):
        audit(tmp_path / f"s{seed}", seed, emulator, counts)
        total.add(counts)
    assert total.kills == len(SEEDS) * KILLS_PER_SESSION >= 20
    assert total.kills_by_point["post"] and total.kills_by_point["fill"] and total.kills_by_point["timer"]
    assert total.orders > 0 and total.fills > 0, total.as_dict()
    assert total.problems == [], total.as_dict()
    assert (total.orphans, total.duplicates, total.mismatches) == (0, 0, 0)

    # The audit sees the defects it is there for: a placed order missing from the journal, a fill booked twice.
    seed, emulator = SEEDS[0], emulators[0]
    tampered = tmp_path / "tampered"
    shutil.copytree(tmp_path / f"s{seed}", tampered)
    placed = next(iter(emulator.orders))
    db = sqlite3.connect(tampered / "journal.sqlite")
    db.execute("DELETE FROM journal WHERE kind = 'command' AND type = 'SubmitOrder' AND client_order_id = ?", (placed,))
    db.execute(
        "INSERT INTO journal (kind, type, client_order_id, ts, payload) "
        "SELECT kind, type, client_order_id, ts, payload FROM journal WHERE type = 'OrderFilled' ORDER BY seq LIMIT 1"
    )
    db.commit()
    db.close()
    bad = SoakCounts()
    audit(tampered, seed, emulator, bad)
    assert bad.orphans == 1 and bad.duplicates == 1 and bad.mismatches >= 2, bad.problems
