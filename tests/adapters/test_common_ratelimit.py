"""The shared request-weight budget: the venue's count wins, 429 and 418 pause every caller."""

from __future__ import annotations

import asyncio

import pytest

from tradebus.adapters.common.ratelimit import WeightBudget, acquire_together
from tradebus.execution.live import RateLimited, VenueRejected, send_unless, send_within


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


def test_room_before_an_answer_keeps_the_other_callers_share_to_spare() -> None:
    """USD-M's 2,400 a minute, this process using at most 80 % (1,920): a request may go before an answer on its way
    only while 1,920 - 480 (the others' share, which they may have used since the last answer) = 1,440 is not passed."""
    ft = FakeTime(1_030.0)
    budget = WeightBudget(2_400, 60.0, header="X-MBX-USED-WEIGHT-1M", monotonic=ft.now, sleep=ft.sleep)
    budget.observe(200, {"X-MBX-USED-WEIGHT-1M": "1438"})
    assert budget.has_room(1) and budget.has_room(2) and not budget.has_room(3)
    asyncio.run(budget.acquire(1))  # this process's own request since the answer counts: 1,439
    assert budget.has_room(1) and not budget.has_room(2)
    ft.t = 1_080.0  # the next minute: its weight unknown, nothing used here yet
    assert budget.has_room(1_440) and not budget.has_room(1_441)
    budget.observe(429, {"Retry-After": "5"})
    assert not budget.has_room(1)  # paused
    ft.t += 5.0
    assert budget.has_room(1)


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


def test_a_venues_own_ban_status_pauses_for_the_ban_backoff_without_retry_after() -> None:
    """Bybit bans an IP with a 403 and no header (wait 10 minutes); a 418 there is not its ban."""
    ft = FakeTime(1_030.0)
    budget = _budget(ft, ban_status=403, ban_backoff=600.0)
    budget.observe(418, {})
    assert budget.blocked_until == 0.0
    budget.observe(403, {"X-Bapi-Limit-Status": "5", "X-Bapi-Limit-Reset-Timestamp": "1031000"})
    assert budget.block_reason == "IP banned (403)"
    asyncio.run(budget.acquire(1))
    assert ft.slept == [pytest.approx(600.0)]
    budget.observe(403, {"Retry-After": "30"})
    asyncio.run(budget.acquire(1))
    assert ft.slept[1:] == [pytest.approx(30.0)]


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


def test_a_rate_limited_answer_with_requests_left_to_the_endpoint_pauses_the_backoff_not_until_its_reset() -> None:
    """Bybit sends its per-endpoint headers on every answer; ``X-Bapi-Limit-Reset-Timestamp`` is the end of the
    endpoint's limit only when ``X-Bapi-Limit-Status`` is 0 (its ``10006``). An IP limit (``10018``) or the system's
    (``429``) answered with requests left to the endpoint paused only until that endpoint's window (0.2 s here; the
    current server time at Bybit: no pause at all)."""
    ft = FakeTime(1_030.0)
    budget = _budget(ft, backoff=1.0, reset_header="X-Bapi-Limit-Reset-Timestamp", remaining_header="X-Bapi-Limit-Status",
                     limit_header="X-Bapi-Limit")
    budget.observe(429, {"X-Bapi-Limit-Status": "7", "X-Bapi-Limit": "10", "X-Bapi-Limit-Reset-Timestamp": "1030200"}, "10018")
    assert budget.blocked_until == pytest.approx(1_031.0) and budget.block_reason == "rate limited (429, code 10018)"
    asyncio.run(budget.acquire(1))
    budget.observe(429, {"X-Bapi-Limit-Status": "0", "X-Bapi-Limit": "10", "X-Bapi-Limit-Reset-Timestamp": "1033500"}, "10006")
    assert budget.blocked_until == pytest.approx(1_033.5)


def test_a_request_sent_within_less_than_the_pause_is_withdrawn_and_another_task_waits() -> None:
    ft = FakeTime(1_030.0)
    budget = _budget(ft)
    budget.observe(418, {"Retry-After": "7"}, -1003)

    async def submit() -> None:
        with send_within(lambda: 3.0):
            await budget.acquire(1)

    async def go() -> list[BaseException | None]:
        return await asyncio.gather(submit(), budget.acquire(1), return_exceptions=True)

    withdrawn, waited = asyncio.run(go())
    assert isinstance(withdrawn, RateLimited) and waited is None
    assert str(withdrawn) == (
        "withdrawn, never sent: IP banned (418, code -1003) until 1970-01-01T00:17:17.000Z, 7.0 s away, 3.0 s left to send it"
    )
    assert ft.slept == [pytest.approx(7.0)] and budget.used == 1  # only the other task's request waited and counts


def test_a_request_sent_within_more_than_the_pause_waits_it_out_but_not_a_pause_prolonged_meanwhile() -> None:
    ft = FakeTime(1_030.0)
    budget = _budget(ft)
    deadline = 1_035.0
    budget.observe(429, {"Retry-After": "2"}, "50011")

    async def submit() -> None:
        with send_within(lambda: deadline - ft.t):
            await budget.acquire(1)

    asyncio.run(submit())  # 2 s of the 5 s left: it waits and goes
    assert ft.slept == [pytest.approx(2.0)] and budget.used == 1

    async def sleep_through_another_429(seconds: float) -> None:
        await ft.sleep(seconds)
        budget.observe(429, {"Retry-After": "7"}, "50011")  # answered to another request meanwhile

    budget._sleep = sleep_through_another_429
    budget.observe(429, {"Retry-After": "1"}, "50011")
    with pytest.raises(RateLimited, match=r"rate limited \(429, code 50011\) until .*, 7.0 s away, 2.0 s left"):
        asyncio.run(submit())
    assert ft.slept[1:] == [pytest.approx(1.0)] and budget.used == 1


def test_a_request_sent_within_less_than_the_wait_for_the_next_window_is_withdrawn() -> None:
    ft = FakeTime(1_030.0)  # the next window at 1080
    budget = _budget(ft)
    budget.observe(200, {"x-mbx-used-weight-1m": "100"})

    async def submit() -> None:
        with send_within(lambda: 5.0):
            await budget.acquire(1)

    with pytest.raises(RateLimited, match=r"request budget used \(100 \+ 1 over 100\) until 1970-01-01T00:18:00.000Z, 50.0 s away"):
        asyncio.run(submit())
    assert ft.slept == [] and budget.used == 100


def test_a_submit_held_by_a_pause_is_withdrawn_if_the_daemon_halted_during_the_wait() -> None:
    """A submit the 429 pause held left when the pause ended, although ``live-kill`` had halted the daemon meanwhile:
    the refusal is asked again in the step that lets it go, and it is withdrawn unsent, nothing counted."""
    ft = FakeTime(1_030.0)
    budget = _budget(ft)
    budget.observe(429, {"Retry-After": "2"}, -1003)
    asked: list[float] = []
    halted_at = 1_031.0

    def refusal() -> str | None:
        asked.append(ft.t)
        return "trading state HALTED: operator kill" if ft.t >= halted_at else None

    async def submit() -> None:
        with send_unless(refusal):
            await budget.acquire(1)

    with pytest.raises(VenueRejected, match=r"^withdrawn, never sent: trading state HALTED: operator kill$"):
        asyncio.run(submit())
    assert asked == [pytest.approx(1_032.0)] and budget.used == 0  # not asked before the wait: the venue asks it then
    asyncio.run(submit())  # no wait: the venue's own check before the request is enough, nothing asked here
    assert len(asked) == 1 and budget.used == 1


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="headroom"):
        WeightBudget(100, headroom=0.0)


def test_a_ban_is_told_to_on_pause_with_its_end_and_cleared_by_the_first_answer_after_it() -> None:
    """What a daemon keeps in its journal: the 418's end (Binance: ``Retry-After`` "the number of seconds ... until
    the ban is over"), then ``None`` once a request was answered after it; an answer during the ban clears nothing."""
    from tradebus.execution.journal import VenuePause

    ft = FakeTime(1_000.0)
    budget = _budget(ft)
    told: list[VenuePause | None] = []
    budget.on_pause = told.append
    budget.observe(418, {"Retry-After": "120"}, -1003)
    budget.observe(200, {})  # a request in flight before the ban, answered during it
    ft.t = 1_120.0
    budget.observe(200, {})
    budget.observe(200, {})
    assert told == [VenuePause(1_000.0, 1_120.0, "IP banned (418, code -1003)"), None]


@pytest.mark.parametrize(
    ("now", "wait"),
    [
        (1_030.0, 90.0),  # restarted 30 s into a 120 s ban: the 90 s left
        (900.0, 120.0),  # the clock set back 100 s: the ban's own length, not the 220 s to its end
        (1_120.0, 0.0),  # the clock at (or past) the end: nothing held; a ban still on answers a new Retry-After
        (5_000.0, 0.0),
    ],
)
def test_a_kept_pause_holds_a_new_process_for_what_is_left_of_it_at_most_its_length(now: float, wait: float) -> None:
    from tradebus.execution.journal import VenuePause

    ft = FakeTime(now)
    budget = _budget(ft)
    assert budget.resume(VenuePause(1_000.0, 1_120.0, "IP banned (418, code -1003)")) == pytest.approx(wait)

    async def go() -> None:
        await budget.acquire(1)

    asyncio.run(go())
    assert ft.slept == ([pytest.approx(wait)] if wait else [])


def test_a_wall_clock_set_back_an_hour_holds_a_full_window_for_one_window_at_most() -> None:
    """The budget's clock is wall time (Binance's weight windows are wall minutes; a ban's end is kept as epoch
    seconds). The window [1020, 1080) is used up at 1030 and the clock is set back an hour (an NTP step): the
    window never rolled (its start was ahead of the clock), and the next request waited 3,650 s, every request of
    the daemon held an hour. A clock set back starts the window it is now in, the weight used kept: at most
    one window's wait."""
    ft = FakeTime(1_030.0 + 3_600.0)
    budget = _budget(ft)

    async def go() -> None:
        for _ in range(5):
            await budget.acquire(20)  # 100: exactly the limit
        ft.t -= 3_600.0
        await budget.acquire(20)

    asyncio.run(go())
    assert len(ft.slept) == 1 and 0 < ft.slept[0] <= 60.0
    assert ft.slept == [pytest.approx(50.0)]  # to the end of the window the clock is now in, [1020, 1080)


def test_a_wall_clock_set_back_during_a_pause_waits_only_what_was_left_of_it() -> None:
    """A 429 asks for ``Retry-After: 2`` at 1030; the clock is then set back an hour: the pause's end, 1032 on the
    old clock, was 3,602 s away and every request waited that long. It waits the 2 s the venue asked."""
    ft = FakeTime(1_030.0)
    budget = _budget(ft)
    budget.observe(429, {"Retry-After": "2"})
    ft.t -= 3_600.0

    async def go() -> None:
        await budget.acquire(1)

    asyncio.run(go())
    assert ft.slept == [pytest.approx(2.0)]


class SteppedTime(FakeTime):
    """A wall clock a test can step (an NTP step) beside a steady clock that only sleeping moves."""

    def __init__(self, t: float = 1_000.0) -> None:
        super().__init__(t)
        self.s = 50.0

    def steady(self) -> float:
        return self.s

    async def sleep(self, seconds: float) -> None:
        await super().sleep(seconds)
        self.s += seconds


def test_a_wall_clock_set_forward_an_hour_during_a_ban_waits_what_was_left_of_it() -> None:
    """A Binance 418 asks for ``Retry-After: 120`` at 1030; 10 s later the wall clock is set forward an hour (an NTP
    step). The ban's end, 1150 on the old clock, was then 3,480 s in the past and the next request went at once,
    into the ban (each request during a ban prolongs it). It waits the 110 s left of the 120 the venue asked;
    a step back still leaves them too."""
    for step in (3_600.0, -3_600.0):
        ft = SteppedTime(1_030.0)
        budget = WeightBudget(100, 60.0, headroom=1.0, monotonic=ft.now, sleep=ft.sleep, steady=ft.steady)
        budget.observe(418, {"Retry-After": "120"})
        ft.t += 10.0
        ft.s += 10.0
        ft.t += step

        async def go(b: WeightBudget = budget) -> None:
            await b.acquire(1)

        asyncio.run(go())
        assert ft.slept == [pytest.approx(110.0)], step
        assert budget.blocked_until == pytest.approx(1_150.0 + step)


def test_budgets_taken_together_give_back_a_request_a_later_one_withdraws_or_whose_wait_is_cancelled() -> None:
    """An order budget counts a submit, then the weight budget, paused by a ban of 120 s, withdraws it (within 5 s): it
    is never sent, and the order budget counted it until its window ended. What it counted is given back, and so is a
    request's whose wait behind the ban is cancelled (a stopping daemon)."""
    ft = FakeTime(1_030.0)
    orders = WeightBudget(10, 10.0, headroom=1.0, monotonic=ft.now, sleep=ft.sleep)
    weight = _budget(ft)
    weight.observe(418, {"Retry-After": "120"})

    async def withdrawn() -> None:
        with send_within(lambda: 5.0), pytest.raises(RateLimited):
            await acquire_together([(orders, 1.0), (weight, 1.0)])

    asyncio.run(withdrawn())
    assert orders.used == 0 and ft.slept == []

    async def cancelled() -> None:
        never = asyncio.Event()

        async def blocked(_: float) -> None:
            await never.wait()

        weight._sleep = blocked  # noqa: SLF001 - a wait that lasts until cancelled
        task = asyncio.create_task(acquire_together([(orders, 1.0), (weight, 1.0)]))
        while weight.waits == 0:
            await asyncio.sleep(0)
        assert orders.used == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancelled())
    assert orders.used == 0
