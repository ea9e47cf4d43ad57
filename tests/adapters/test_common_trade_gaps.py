"""The end of a run gives a pending trade-gap recovery up: its fetch in flight is canceled, the held trades released."""

from __future__ import annotations

import asyncio

from tradebus.adapters.common.trade_gaps import TradeGaps
from tradebus.engine.messages import Trade, TradesMissed

IID = "BTCUSDT.BINANCE"


def _trade(tid: int, ts: int) -> Trade:
    return Trade(IID, ts, ts, 100.0 + tid, 1.0, 1, str(tid))


async def test_the_end_of_a_run_cancels_the_fetch_in_flight_and_releases_the_held_trades() -> None:
    # ids 1, 2 seen; 3..4 missing (revealed by 5), 6, then 8 (7 missing too) held behind the first gap; the run
    # ends at 1000 while the fetch of 3..4 waits for its answer: the fetch is canceled before it answers (it
    # records nothing), no fetch of 7 starts, and both gaps are given up at 1000 with the held trades released
    out: list = []
    asked: list[tuple[int, int]] = []
    answered: list[int] = []
    answer = asyncio.Event()

    async def fetch(iid: str, first: int, last: int, timeout: float) -> tuple[list[Trade], int]:
        asked.append((first, last))
        await answer.wait()
        answered.append(first)  # where a venue's fetch records its answer
        return [_trade(3, 900), _trade(4, 900)], 900

    seen: set = set()

    def is_seen(key: object) -> bool:
        if key in seen:
            return True
        seen.add(key)
        return False

    gaps = TradeGaps("test", out.append, is_seen, recover="fetch", fetch=fetch, timeout=10.0)
    line = gaps.line(IID)
    for tid, ts in [(1, 10), (2, 20), (5, 50), (6, 60), (8, 80)]:
        gaps.on_trade(line, _trade(tid, ts), tid)
    await asyncio.sleep(0)
    assert asked == [(3, 4)]
    gaps.end(1000)
    answer.set()
    await asyncio.sleep(0.01)
    await gaps.close()
    assert asked == [(3, 4)] and answered == []
    assert [(type(m).__name__, getattr(m, "trade_id", None), m.ts_init) for m in out] == [
        ("Trade", "1", 10), ("Trade", "2", 20),
        ("TradesMissed", None, 1000), ("Trade", "5", 50), ("Trade", "6", 60),
        ("TradesMissed", None, 1000), ("Trade", "8", 80),
    ]
    missed = [(m.first_id, m.last_id, m.recovered) for m in out if isinstance(m, TradesMissed)]
    assert missed == [(3, 4, 0), (7, 7, 0)]
    assert line.held is None and line.task is None and gaps.recovering == 0
