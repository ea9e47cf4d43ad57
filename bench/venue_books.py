"""OKX and Bybit order-book throughput: raw book frame -> parser -> book sync -> messages.

Usage::

    NUMBA_CACHE_DIR=.cache/numba .venv/bin/python bench/venue_books.py [--json] [--repeat N]

Inputs are the real recordings under ``tests/fixtures/``. Each run replays one book
stream from its snapshot through a fresh parser (``parse_frame``: envelope and level
decoding, sequence rule, apply to the book, OKX CRC32 of the top 25 levels, BookDelta
creation) and reports book frames per second of CPU time (``time.process_time``, steadier
than wall time on a shared machine), median over ``--repeat`` runs:

* ``okx_books_400``: OKX ``books`` BTC-USDT (400 levels a side, 1 snapshot + 97 updates),
  checksum verified, and ``okx_books_400_nochecksum`` with verification off.
* ``okx_books_all``: the three OKX ``books`` streams of the recording interleaved.
* ``bybit_orderbook_200``: the four Bybit linear ``orderbook.200`` streams interleaved.
* ``bybit_orderbook_500``: Bybit XRPUSDT ``orderbook.500`` (1 snapshot + 49 deltas).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

from checkout import use_this_checkout

ROOT = use_this_checkout()

from tradebus.adapters.bybit.parse import BybitParser  # noqa: E402
from tradebus.adapters.common.recorder import read_frames  # noqa: E402
from tradebus.adapters.okx.parse import OkxParser  # noqa: E402

FIX = ROOT / "tests" / "fixtures"


def _median_rate(fn: Callable[[], tuple[int, float]], repeat: int) -> float:
    """``fn`` returns (units, seconds); median units/s over ``repeat`` runs (one warm-up)."""
    fn()
    rates = []
    for _ in range(repeat):
        n, secs = fn()
        rates.append(n / secs)
    return statistics.median(rates)


def _case(make: Callable[[], object], frames: list[tuple[int, str]], min_frames: int = 20_000) -> Callable[[], tuple[int, float]]:
    loops = max(1, min_frames // len(frames))

    def run() -> tuple[int, float]:
        total = 0.0
        for _ in range(loops):
            parse = make().parse_frame  # type: ignore[attr-defined]
            t0 = time.process_time()
            for t, raw in frames:
                parse(raw, t)
            total += time.process_time() - t0
        return loops * len(frames), total

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    ap.add_argument("--repeat", type=int, default=5, help="runs per figure (median reported)")
    args = ap.parse_args()
    okx = [(t, raw) for t, _, raw in read_frames(FIX / "okx" / "okx_v5_public_2022-05-13.jsonl.gz")]
    okx_books = [(t, r) for t, r in okx if '"channel":"books"' in r and '"data"' in r]
    okx_400 = [(t, r) for t, r in okx_books if '"instId":"BTC-USDT"' in r]
    bybit = [(t, raw) for t, conn, raw in read_frames(FIX / "bybit" / "bybit_v5_public_2026-08-09.jsonl.gz") if conn == "linear"]
    bybit_200 = [(t, r) for t, r in bybit if '"topic":"orderbook.200.' in r]
    bybit_500 = [(t, raw) for t, _, raw in read_frames(FIX / "bybit" / "bybit_xrpusdt_ob500_2024-12-01.jsonl.gz")]
    cases = {
        "okx_books_400": (OkxParser, okx_400),
        "okx_books_400_nochecksum": (lambda: OkxParser(verify_checksum=False), okx_400),
        "okx_books_all": (OkxParser, okx_books),
        "bybit_orderbook_200": (lambda: BybitParser("linear"), bybit_200),
        "bybit_orderbook_500": (lambda: BybitParser("linear"), bybit_500),
    }
    res = {name: _median_rate(_case(make, frames), args.repeat) for name, (make, frames) in cases.items()}
    if args.json:
        print(json.dumps({"book_frames_per_s": res}, indent=2, sort_keys=True))
        return
    print("OKX/Bybit book frames per second (parse + sequence rule + book + checksum; median):")
    for name, rate in res.items():
        print(f"  {name:<26} {rate:>12,.0f}")


if __name__ == "__main__":
    main()
