"""Benchmark: the SQLite journal's cost per entry, against a bare SQLite insert timed in the same run.

One order is journaled the way the execution engine does it: ``SubmitOrder`` and
``OrderSubmitted`` before the venue is called (the *submit path*, which sits between a tick
and the order reaching the venue), then ``OrderAccepted`` and ``OrderFilled`` as the venue
reports them: four entries. The reference is a bare ``INSERT`` of a same-sized blob into a
table of the same shape, committed row by row, on a connection with the same pragmas (WAL,
the same ``synchronous``), in a file in the same directory.

Figures are medians over ``--repeats`` runs of ``--n`` orders each; the ratio is
journal per-entry cost / bare insert cost.

Usage::

    python bench/journal.py [--n 2000] [--repeats 5] [--sync NORMAL [FULL]] [--dir PATH] [--json]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import msgspec

from checkout import use_this_checkout

use_this_checkout()

from tradebus.engine.messages import (  # noqa: E402
    Liquidity,
    OrderAccepted,
    OrderFilled,
    OrderSide,
    OrderSubmitted,
    SubmitOrder,
)
from tradebus.execution.journal import Journal  # noqa: E402

IID = "BTCUSDT.BINANCE"
_BARE_TABLE = (
    "CREATE TABLE t (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, type TEXT NOT NULL, "
    "client_order_id TEXT NOT NULL, ts INTEGER NOT NULL, payload BLOB NOT NULL)"
)


def _messages(n: int) -> list[tuple[SubmitOrder, OrderSubmitted, OrderAccepted, OrderFilled]]:
    out = []
    for i in range(n):
        coid = f"benchx0a1bcdefgh001{i + 1}"
        ts = 1_700_000_000_000_000_000 + i
        side = OrderSide.BUY if i % 2 else OrderSide.SELL
        out.append(
            (
                SubmitOrder("bench", IID, coid, side, 0.01, ts, ts),
                OrderSubmitted("bench", IID, coid, ts, ts),
                OrderAccepted("bench", IID, coid, f"V{i}", ts, ts),
                OrderFilled("bench", IID, coid, f"V{i}", f"T{i}", side, 0.01, 100.0, 0.0005, Liquidity.TAKER, ts, ts),
            )
        )
    return out


def bare_insert_us(path: Path, n: int, sync: str, payload: bytes) -> float:
    """Microseconds per autocommitted bare insert."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={sync}")
    db.execute(_BARE_TABLE)
    sql = "INSERT INTO t (kind, type, client_order_id, ts, payload) VALUES (?, ?, ?, ?, ?)"
    clock = time.perf_counter_ns
    t0 = clock()
    for i in range(n):
        db.execute(sql, ("event", "OrderFilled", "benchx0a1bcdefgh0011", i, payload))
    elapsed = clock() - t0
    db.close()
    return elapsed / n / 1e3


def journal_us(path: Path, n: int, sync: str) -> tuple[float, float]:
    """(microseconds per journal entry, microseconds per order on the submit path)."""
    journal = Journal(path, sync)  # type: ignore[arg-type]
    msgs = _messages(n)
    clock = time.perf_counter_ns
    submit_ns = 0
    t0 = clock()
    for cmd, submitted, accepted, filled in msgs:
        t1 = clock()
        journal.record_command(cmd, cmd.client_order_id)
        journal.record_event(submitted)
        submit_ns += clock() - t1
        journal.record_event(accepted)
        journal.record_event(filled)
    elapsed = clock() - t0
    journal.close()
    return elapsed / (4 * n) / 1e3, submit_ns / n / 1e3


def measure(directory: Path, n: int, repeats: int, sync: str) -> dict[str, float]:
    """Median figures of ``repeats`` interleaved runs (bare, journal, bare, journal, ...)."""
    payload = msgspec.msgpack.encode(_messages(1)[0][3])
    bare, entry, submit = [], [], []
    for r in range(repeats):
        bare.append(bare_insert_us(directory / f"bare-{sync}-{r}.sqlite", n, sync, payload))
        per_entry, per_submit = journal_us(directory / f"journal-{sync}-{r}.sqlite", n, sync)
        entry.append(per_entry)
        submit.append(per_submit)
    bare_us = statistics.median(bare)
    entry_us = statistics.median(entry)
    submit_us = statistics.median(submit)
    return {
        "bare_insert_us": bare_us,
        "journal_entry_us": entry_us,
        "entry_ratio": entry_us / bare_us,
        "submit_path_us": submit_us,
        "submit_path_ratio": submit_us / bare_us,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2_000, help="orders per run (4 journal entries each)")
    parser.add_argument("--repeats", type=int, default=5, help="runs per figure (median reported)")
    parser.add_argument(
        "--sync", nargs="+", default=["NORMAL"], choices=["NORMAL", "FULL"],
        help="synchronous modes to measure (NORMAL: the paper default; FULL costs an fsync per commit)",
    )
    parser.add_argument("--dir", type=Path, default=None, help="where the database files go (default: a temp dir)")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tradebus-bench-journal-", dir=args.dir) as tmp:
        results = {sync: measure(Path(tmp), args.n, args.repeats, sync) for sync in args.sync}
    out = {
        "n": args.n,
        "repeats": args.repeats,
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        **results,
    }
    if args.json:
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return
    sys.stdout.write(
        f"journal: {args.n} orders x 4 entries, median of {args.repeats}, sqlite {sqlite3.sqlite_version}\n"
    )
    for sync, r in results.items():
        sys.stdout.write(
            f"  synchronous={sync:<6} bare insert {r['bare_insert_us']:7.2f} us | journal entry "
            f"{r['journal_entry_us']:7.2f} us (x{r['entry_ratio']:.2f}) | submit path (command + decision) "
            f"{r['submit_path_us']:7.2f} us (x{r['submit_path_ratio']:.2f} of one bare insert)\n"
        )


if __name__ == "__main__":
    main()
