"""Clocks: simulated timers and alerts fire in timestamp order; the live clock runs on asyncio."""

from __future__ import annotations

import asyncio
import time

import pytest

from tradebus.engine.clock import LiveClock, SimulatedClock
from tradebus.engine.messages import TimeEvent
from tradebus.errors import ConfigError

SEC = 1_000_000_000


async def _fired(clock: LiveClock, at_ns: int) -> None:
    """Wait until an alert set now on ``clock`` for ``at_ns`` has fired: every callback due before it has run too."""
    done = asyncio.Event()
    clock.set_alert(f"test-fired-{at_ns}", at_ns, lambda _event: done.set())
    await asyncio.wait_for(done.wait(), timeout=5)


def test_simulated_clock_starts_at_given_time_and_never_goes_back() -> None:
    clock = SimulatedClock(start_ns=100)
    assert clock.now_ns() == 100
    clock.advance_to(50)
    assert clock.now_ns() == 100
    clock.advance_to(200)
    assert clock.now_ns() == 200


def test_timer_fires_every_interval_up_to_the_advanced_time() -> None:
    clock = SimulatedClock(start_ns=0)
    fired: list[TimeEvent] = []
    clock.set_timer("t", 10 * SEC, fired.append)
    clock.advance_to(35 * SEC)
    assert [e.ts_event for e in fired] == [10 * SEC, 20 * SEC, 30 * SEC]
    assert all(e.name == "t" for e in fired)
    assert clock.next_due == 40 * SEC


def test_timer_sees_its_own_time_while_firing_then_clock_reaches_target() -> None:
    clock = SimulatedClock(start_ns=0)
    seen: list[int] = []
    clock.set_timer("t", 10, lambda e: seen.append(clock.now_ns()))
    clock.advance_to(25)
    assert seen == [10, 20]
    assert clock.now_ns() == 25


def test_timers_and_alerts_fire_in_timestamp_order_ties_in_set_order() -> None:
    clock = SimulatedClock(start_ns=0)
    fired: list[tuple[str, int]] = []

    def rec(e: TimeEvent) -> None:
        fired.append((e.name, e.ts_event))

    clock.set_alert("late", 35, rec)
    clock.set_timer("every10", 10, rec, stop_ns=30)
    clock.set_alert("tie-b", 25, rec)
    clock.set_alert("tie-a", 25, rec)
    clock.advance_to(100)
    assert fired == [("every10", 10), ("every10", 20), ("tie-b", 25), ("tie-a", 25), ("every10", 30), ("late", 35)]


@pytest.mark.parametrize("timer_first", [True, False])
def test_repeating_timer_keeps_its_creation_rank_on_ties_with_an_alert(timer_first: bool) -> None:
    # The timer's firing at 20 is queued when it fires at 10, after the alert was created:
    # it still ranks by when the timer itself was created.
    clock = SimulatedClock(start_ns=0)
    fired: list[tuple[str, int]] = []

    def rec(e: TimeEvent) -> None:
        fired.append((e.name, e.ts_event))

    if timer_first:
        clock.set_timer("every10", 10, rec)
        clock.set_alert("at20", 20, rec)
    else:
        clock.set_alert("at20", 20, rec)
        clock.set_timer("every10", 10, rec)
    clock.advance_to(20)
    tie = [("every10", 20), ("at20", 20)] if timer_first else [("at20", 20), ("every10", 20)]
    assert fired == [("every10", 10), *tie]


def test_two_repeating_timers_due_together_fire_in_creation_order_every_time() -> None:
    clock = SimulatedClock(start_ns=0)
    fired: list[str] = []
    clock.set_timer("fast", 10, lambda e: fired.append(f"fast@{e.ts_event}"))
    clock.set_timer("slow", 20, lambda e: fired.append(f"slow@{e.ts_event}"))
    clock.advance_to(40)
    assert fired == ["fast@10", "fast@20", "slow@20", "fast@30", "fast@40", "slow@40"]


def test_canceled_alert_whose_name_is_reused_fires_only_at_the_new_time() -> None:
    clock = SimulatedClock(start_ns=0)
    fired: list[int] = []
    clock.set_alert("x", 10, lambda e: fired.append(e.ts_event))
    clock.cancel("x")
    clock.set_alert("x", 30, lambda e: fired.append(e.ts_event))
    clock.advance_to(20)
    assert fired == []
    clock.advance_to(40)
    assert fired == [30]


def test_timer_due_before_data_fires_before_the_data_is_handled() -> None:
    """The kernel advances the clock to a message's ts_init before dispatching it."""
    clock = SimulatedClock(start_ns=0)
    log: list[str] = []
    clock.set_alert("close-positions", 15, lambda e: log.append(f"timer@{e.ts_event}"))
    for ts in (10, 20, 30):
        clock.advance_to(ts)
        log.append(f"data@{ts}")
    assert log == ["data@10", "timer@15", "data@20", "data@30"]


def test_timer_due_exactly_at_data_time_fires_before_it() -> None:
    clock = SimulatedClock(start_ns=0)
    log: list[str] = []
    clock.set_alert("a", 20, lambda e: log.append("timer"))
    clock.advance_to(20)
    log.append("data")
    assert log == ["timer", "data"]


def test_alert_fires_once() -> None:
    clock = SimulatedClock()
    fired: list[TimeEvent] = []
    clock.set_alert("once", 5, fired.append)
    clock.advance_to(10)
    clock.advance_to(20)
    assert [e.ts_event for e in fired] == [5]
    assert clock.next_due == 2**63 - 1


def test_alert_name_is_free_again_after_it_fired() -> None:
    clock = SimulatedClock()
    fired: list[TimeEvent] = []
    clock.set_alert("a", 5, fired.append)
    clock.advance_to(5)
    clock.set_alert("a", 8, fired.append)
    clock.advance_to(8)
    assert [e.ts_event for e in fired] == [5, 8]


def test_cancel_stops_a_timer_and_unknown_cancel_is_a_no_op() -> None:
    clock = SimulatedClock()
    fired: list[TimeEvent] = []
    clock.set_timer("t", 10, fired.append)
    clock.advance_to(15)
    clock.cancel("t")
    clock.cancel("never-set")
    clock.advance_to(100)
    assert [e.ts_event for e in fired] == [10]


def test_timer_stops_at_stop_ns() -> None:
    clock = SimulatedClock()
    fired: list[TimeEvent] = []
    clock.set_timer("t", 10, fired.append, start_ns=100, stop_ns=130)
    clock.advance_to(1_000)
    assert [e.ts_event for e in fired] == [110, 120, 130]


def test_timer_set_from_a_callback_fires_in_order_within_the_same_advance() -> None:
    clock = SimulatedClock()
    fired: list[str] = []

    def first(e: TimeEvent) -> None:
        fired.append("first")
        clock.set_alert("chained", e.ts_event + 1, lambda e2: fired.append(f"chained@{e2.ts_event}"))

    clock.set_alert("first", 10, first)
    clock.set_alert("other", 12, lambda e: fired.append("other"))
    clock.advance_to(50)
    assert fired == ["first", "chained@11", "other"]


def test_duplicate_name_and_bad_interval_raise_config_error() -> None:
    clock = SimulatedClock()
    clock.set_timer("t", 10, lambda e: None)
    with pytest.raises(ConfigError, match="already exists"):
        clock.set_alert("t", 5, lambda e: None)
    with pytest.raises(ConfigError, match="interval must be > 0"):
        clock.set_timer("u", 0, lambda e: None)


def test_next_due_tracks_the_earliest_timer() -> None:
    clock = SimulatedClock()
    assert clock.next_due == 2**63 - 1
    clock.set_alert("b", 50, lambda e: None)
    clock.set_alert("a", 20, lambda e: None)
    assert clock.next_due == 20
    clock.advance_to(30)
    assert clock.next_due == 50


async def test_live_clock_now_is_wall_time() -> None:
    clock = LiveClock()
    before = time.time_ns()
    now = clock.now_ns()
    after = time.time_ns()
    assert before <= now <= after


async def test_live_clock_alert_fires_on_the_loop_with_its_scheduled_time() -> None:
    clock = LiveClock()
    done: asyncio.Future[TimeEvent] = asyncio.get_running_loop().create_future()
    at = time.time_ns() + 20_000_000
    clock.set_alert("soon", at, done.set_result)
    event = await asyncio.wait_for(done, timeout=5)
    assert event.name == "soon"
    assert event.ts_event == at
    assert event.ts_init >= at


async def test_live_clock_timer_repeats_until_stop_and_cancel_prevents_firing() -> None:
    clock = LiveClock()
    fired: list[TimeEvent] = []
    finished = asyncio.Event()
    start = time.time_ns()

    def on_tick(e: TimeEvent) -> None:
        fired.append(e)
        if len(fired) == 3:
            finished.set()

    clock.set_timer("tick", 10_000_000, on_tick, start_ns=start, stop_ns=start + 30_000_000)
    canceled: list[TimeEvent] = []
    clock.set_alert("never", time.time_ns() + 10_000_000, canceled.append)
    clock.cancel("never")
    await asyncio.wait_for(finished.wait(), timeout=5)
    await _fired(clock, start + 50_000_000)  # later than a fourth tick (40 ms) and the canceled alert would be due
    assert [e.ts_event - start for e in fired] == [10_000_000, 20_000_000, 30_000_000]
    assert canceled == []


async def test_live_clock_run_due_fires_what_is_due_by_a_message_in_order_and_once() -> None:
    clock = LiveClock()
    fired: list[tuple[str, int]] = []
    now = time.time_ns()

    def note(e: TimeEvent) -> None:
        fired.append((e.name, e.ts_event))

    # due before "now" but the loop has not run yet: only run_due can fire them before the message
    clock.set_alert("b", now - 2_000, note)
    clock.set_alert("a", now - 5_000, note)
    clock.set_alert("late", now + 3_600 * SEC, note)
    clock.set_timer("tick", 1_000, note, start_ns=now - 3_500, stop_ns=now)
    clock.set_alert("gone", now - 4_000, note)
    clock.cancel("gone")
    clock.run_due(now - 1_000)
    assert fired == [("a", now - 5_000), ("tick", now - 2_500), ("b", now - 2_000), ("tick", now - 1_500)]
    assert clock.next_due == now - 500  # the timer's next tick, due after the message
    await _fired(clock, time.time_ns() + 10_000_000)  # the loop's own callbacks of what already fired (due in the past) ran first and did nothing
    assert fired[4:] == [("tick", now - 500)]  # its last tick (the next would pass stop_ns)
    assert ("late", now + 3_600 * SEC) not in fired
    clock.cancel("late")


async def test_live_clock_run_due_reports_a_failing_callback_and_goes_on() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    clock = LiveClock()
    fired: list[str] = []
    now = time.time_ns()

    def boom(e: TimeEvent) -> None:
        raise RuntimeError("callback failed")

    clock.set_alert("bad", now - 2, boom)
    clock.set_alert("good", now - 1, lambda e: fired.append(e.name))
    clock.run_due(now)
    assert fired == ["good"]
    assert len(reported) == 1 and isinstance(reported[0]["exception"], RuntimeError)
    assert "'bad'" in reported[0]["message"]
