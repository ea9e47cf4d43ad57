"""The shared request-weight budget: the venue's count wins, 429 and 418 pause every caller."""

from __future__ import annotations

import asyncio

import pytest

from tradebus.adapters.common.ratelimit import WeightBudget


class FakeTime:
    """A clock that moves only when a caller sleeps."""

    def __init__(self, t: float = 1_000.0) -> None:
        self.t = t
        self.slept: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


def _budget(ft: FakeTime, **kw: object) -> WeightBudget:
    return WeightBudget(100, 60.0, headroom=1.0, header="X-MBX-USED-WEIGHT-1M", monotonic=ft.now, sleep=ft.sleep, **kw)  # type: ignore[arg-type]


def test_requests_beyond_the_window_budget_wait_for_the_next_window() -> None:
    ft = FakeTime(1_030.0)  # 10 s into the window [1020, 1080)
    budget = _budget(ft)

    async def go() -> None:
        for _ in range(5):
            await budget.acquire(20)  # 100: exactly the limit
        assert ft.slept == []
        await budget.acquire(20)  # the 6th waits for the window at 1080

    asyncio.run(go())
    assert ft.slept == [pytest.approx(50.0)]
    assert budget.used == 20 and budget.peak == 100


def test_the_venue_header_overrides_the_local_count() -> None:
    ft = FakeTime(1_030.0)
    budget = _budget(ft)
    budget.observe(200, {"x-mbx-used-weight-1m": "95"})  # other processes used the account too

    async def go() -> None:
        await budget.acquire(4)
        assert ft.slept == []
        await budget.acquire(4)  # 99 + 4 > 100

    asyncio.run(go())
    assert ft.slept == [pytest.approx(50.0)]


@pytest.mark.parametrize(("status", "reason"), [(429, "rate limited"), (418, "IP banned")])
def test_429_and_418_pause_every_caller_for_retry_after(status: int, reason: str) -> None:
    ft = FakeTime(1_030.0)
    budget = _budget(ft)
    budget.observe(status, {"Retry-After": "7"})
    assert reason in budget.block_reason

    async def go() -> None:
        await asyncio.gather(budget.acquire(1), budget.acquire(1))

    asyncio.run(go())
    assert ft.t >= 1_037.0 and ft.slept[0] == pytest.approx(7.0)


def test_429_without_retry_after_uses_the_backoff() -> None:
    ft = FakeTime(1_030.0)
    budget = _budget(ft, backoff=3.0)
    budget.observe(429, {})
    asyncio.run(budget.acquire(1))
    assert ft.slept == [pytest.approx(3.0)]


def test_429_without_retry_after_waits_until_the_reset_header_and_retry_after_wins() -> None:
    ft = FakeTime(1_030.0)
    budget = _budget(ft, backoff=1.0, reset_header="X-Bapi-Limit-Reset-Timestamp")
    budget.observe(200, {"X-Bapi-Limit-Reset-Timestamp": "1030000"})  # on every answer: read only when limited
    assert budget.blocked_until == 0.0
    budget.observe(429, {"x-bapi-limit-reset-timestamp": "1034500"})
    asyncio.run(budget.acquire(1))
    assert ft.slept == [pytest.approx(4.5)]
    budget.observe(429, {"X-Bapi-Limit-Reset-Timestamp": "1090000", "Retry-After": "2"})
    asyncio.run(budget.acquire(1))
    assert ft.slept[1:] == [pytest.approx(2.0)]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="headroom"):
        WeightBudget(100, headroom=0.0)
