"""A seeded kill -9 fuzzer of ``tradebus live`` trading every order kind, on Binance spot and USD-M, OKX and Bybit.

The daemon runs :class:`~tests.live.fuzz_strategy.MixedKinds` (market, resting limit, its
modification and cancel, marketable limit, bracket, TWAP) against the venue's account emulator
and is SIGKILLed at seeded moments (0.2-3 s after its start-up, right after one of its first
eight order requests reached the venue, or right after a fill), restarted on the same journal
each time; a last restart trades for 2 s and is stopped cleanly, and a reconciling start ends
the session. The emulator's own records are the reference (:func:`tests.live.kill_harness.audit`):
every venue order journaled, no client id sent twice as a new order (a place, a Binance cancel-replace's
replacement or OCO list, an OKX or USD-M algo order), no order amended more often than the journal modified it,
every venue trade booked once, position
and cash from the journal's fills equal to the account's.

The race mode runs :class:`~tests.live.fuzz_strategy.ModifyRaced` (a resting buy modified to a larger, marketable
one) on Binance spot, OKX and Bybit, each kill inside a modification a fill races at the venue (the request held
there, a trade filling part of the order meanwhile, its stream frame late): while the request waits, after its
answer, and on Binance spot while the cut of the replacement waits or once it was refused
(:class:`tests.live.kill_harness._Race`); the audit adds that no order and its replacements bought more than asked.

The funding mode runs the EMA cross on Binance USD-M while the venue settles funding every half second, each kill
around one: just before it, just after its payment was pushed, or as the restart reads the income history while
another is settled (:class:`tests.live.kill_harness._Funder`); the audit adds the emulator's funding ledger: each
payment journaled once, at its time, on the position it was made on, and the final ``funding.csv`` the journal's.

A few seeds per venue here; ``python -m tests.live.test_live_crash_fuzz MARKET FIRST LAST [race|funding]`` runs more.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.live.kill_harness import SoakCounts, kill_and_restart, audit
from tradebus.engine.messages import OrderType, SubmitOrder

STRATEGY = {"name": "tests.live.fuzz_strategy:MixedKinds", "params": {"quantity": 0.001, "every": 3}}
OPTIONS: dict[str, Any] = {"strategy": STRATEGY, "timer": (0.2, 3.0), "skips": 8, "run_after": 2.0}
KILLS = 3
SEEDS = {"spot": (0,), "usdm": (0,), "okx": (0,), "bybit": (0,)}
# the resting buys 1 % below the market, which seldom fills them first (the racing trade comes at the order's price,
# wherever that is; a modification of a filled order is let through unraced, kill_harness._Race)
RACE_STRATEGY = {"name": "tests.live.fuzz_strategy:ModifyRaced",
                 "params": {"quantity": 0.001, "factor": 1.5, "every": 3, "away": 0.01}}
RACE_OPTIONS: dict[str, Any] = {"strategy": RACE_STRATEGY, "races": True, "run_after": 2.0}
RACE_SEEDS = {"spot": (0, 1), "okx": (0,), "bybit": (0,)}
FUNDING_OPTIONS: dict[str, Any] = {"funding": True, "run_after": 2.0}
FUNDING_SEEDS = (1, 11)


async def fuzz(tmp: Path, market: str, seed: int, mode: str = "") -> tuple[SoakCounts, Any]:
    """One session of ``KILLS`` kills on ``market`` with ``seed``, audited (``mode``: ``"race"``, in raced
    modifications; ``"funding"``, around the venue's frequent fundings); its counts and emulator."""
    counts = SoakCounts(sessions=1)
    options = {"race": RACE_OPTIONS, "funding": FUNDING_OPTIONS}.get(mode, OPTIONS)
    emulator = await kill_and_restart(tmp, seed, KILLS, counts, market=market, **options)
    audit(tmp, seed, emulator, counts)
    return counts, emulator


def _journaled(tmp: Path) -> tuple[list[SubmitOrder], set[str]]:
    db = sqlite3.connect(tmp / "journal.sqlite")
    try:
        submits = [msgspec.msgpack.decode(p, type=SubmitOrder) for (p,) in db.execute(
            "SELECT payload FROM journal WHERE kind = 'command' AND type = 'SubmitOrder'")]
        commands = {t for (t,) in db.execute("SELECT DISTINCT type FROM journal WHERE kind = 'command'")}
    finally:
        db.close()
    return submits, commands


@pytest.mark.slow
@pytest.mark.parametrize(("market", "seed"), [(m, s) for m, seeds in SEEDS.items() for s in seeds])
async def test_kill9_while_trading_every_order_kind_loses_and_doubles_nothing(tmp_path: Path, market: str, seed: int) -> None:
    counts, emulator = await fuzz(tmp_path, market, seed)
    assert counts.kills == KILLS
    assert counts.problems == [], counts.as_dict()
    assert (counts.orphans, counts.duplicates, counts.mismatches) == (0, 0, 0)
    assert emulator.orders and emulator.fills, counts.as_dict()
    # the kills met the mix: market and limit orders, a bracket's stop, a TWAP's children, a cancel, a modification
    submits, commands = _journaled(tmp_path)
    kinds = {s.order_type for s in submits}
    assert {OrderType.MARKET, OrderType.LIMIT, OrderType.STOP_MARKET} <= kinds, kinds
    assert any(s.parent for s in submits)
    assert {"CancelOrder", "ModifyOrder", "AlgoStarted", "ContingentLinked"} <= commands, commands


@pytest.mark.slow
@pytest.mark.parametrize(("market", "seed"), [(m, s) for m, seeds in RACE_SEEDS.items() for s in seeds])
async def test_kill9_inside_a_modification_a_fill_races_buys_no_more_than_asked(tmp_path: Path, market: str, seed: int) -> None:
    counts, emulator = await fuzz(tmp_path, market, seed, "race")
    assert counts.kills == KILLS
    assert counts.problems == [], counts.as_dict()
    assert (counts.orphans, counts.duplicates, counts.mismatches) == (0, 0, 0)
    assert counts.raced == KILLS, counts.as_dict()  # each kill inside a modification whose order a racing trade filled
    _, commands = _journaled(tmp_path)
    assert "ModifyOrder" in commands


@pytest.mark.slow
@pytest.mark.parametrize("seed", FUNDING_SEEDS)
async def test_kill9_around_frequent_fundings_pays_each_once_on_its_position(tmp_path: Path, seed: int) -> None:
    counts, emulator = await fuzz(tmp_path, "usdm", seed, "funding")
    assert counts.kills == KILLS
    assert counts.problems == [], counts.as_dict()
    assert (counts.orphans, counts.duplicates, counts.mismatches) == (0, 0, 0)
    assert len(emulator.ledger) >= 3, counts.as_dict()  # fundings paid on positions while it lived and while it was dead


async def _many(market: str, seeds: range, root: Path, mode: str = "") -> SoakCounts:
    total = SoakCounts()
    for seed in seeds:
        counts, _ = await fuzz(root / f"{market}-{seed}", market, seed, mode)
        print(seed, json.dumps(counts.as_dict()), flush=True)  # noqa: T201 (a command-line driver)
        total.add(counts)
    return total


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory(prefix="crashfuzz-") as where:
        mode = sys.argv[4] if sys.argv[4:] else ""
        result = asyncio.run(_many(sys.argv[1], range(int(sys.argv[2]), int(sys.argv[3])), Path(where), mode))
    print("TOTAL", json.dumps(result.as_dict()))  # noqa: T201
