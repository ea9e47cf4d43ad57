"""LiveClock.run_due fires in the order of the scan it replaced, whatever callbacks set or cancel meanwhile.

The oracle (:class:`ScanClock`) is that scan, kept here as it was: for each firing it looks
through every pending timer and alert for the earliest (due time, creation rank).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import pytest

from tradebus.engine.clock import LiveClock
from tradebus.engine.messages import TimeEvent
from tradebus.errors import ConfigError

SEC = 1_000_000_000


class ScanClock(LiveClock):
    """A LiveClock whose run_due is the former full scan of the pending timers and alerts."""

    def run_due(self, ts_ns: int) -> None:
        if ts_ns < self.next_due:
            return
        due = self._due
        while True:
            name, at_ns, first = "", 2**63 - 1, 0
            for key, (at, rank, *_) in due.items():
                if at < at_ns or (at == at_ns and rank < first):
                    name, at_ns, first = key, at, rank
            if at_ns > ts_ns:
                break
            fire = due.pop(name)[-1]
            handle = self._handles.get(name)
            if handle is not None:
                handle.cancel()
            fire(at_ns)
        self.next_due = at_ns


def _script(clock: LiveClock, seed: int, base: int) -> list[tuple]:
    """Drive ``clock`` with seeded random steps (set, cancel, run_due; callbacks that set and cancel); the log."""
    rng = random.Random(seed)
    log: list[tuple] = []
    names = [f"n{i}" for i in range(40)]
    fresh = iter(range(10**9))

    def callback(event: TimeEvent) -> None:
        log.append(("fired", event.name, event.ts_event - base))
        roll = rng.random()
        if roll < 0.25:  # already due: fires before whatever else is due later
            name = f"cb{next(fresh)}"
            clock.set_alert(name, event.ts_event - rng.randint(0, 40), callback)
        elif roll < 0.4:
            clock.set_alert(f"cb{next(fresh)}", event.ts_event + rng.randint(0, 60), callback)
        elif roll < 0.55:
            clock.cancel(rng.choice(names))
        elif roll < 0.65:
            try:  # the name of an alert that fired is free again
                clock.set_alert(event.name, event.ts_event + rng.randint(0, 30), callback)
                log.append(("again", event.name))
            except ConfigError:
                log.append(("taken", event.name))

    now = 0
    for _ in range(400):
        roll = rng.random()
        name = rng.choice(names)
        try:
            if roll < 0.35:
                clock.set_alert(name, base + now + rng.randint(-50, 200), callback)
            elif roll < 0.45:
                start = base + now + rng.randint(-80, 80)
                stop = start + rng.randint(0, 300) if rng.random() < 0.7 else None
                clock.set_timer(name, rng.randint(1, 40), callback, start_ns=start, stop_ns=stop)
            elif roll < 0.7:
                clock.cancel(name)
                log.append(("cancel", name))
            else:
                now += rng.randint(0, 60)
                clock.run_due(base + now)
                log.append(("ran", now, clock.next_due - base))
        except ConfigError:
            log.append(("taken", name))
    clock.run_due(base + now + 10_000)
    log.append(("end", clock.next_due))
    clock.stop()
    return log


@pytest.mark.parametrize("seed", range(40))
async def test_run_due_fires_as_the_full_scan_did_with_random_sets_cancels_and_callbacks(seed: int) -> None:
    base = time.time_ns() + 3_600 * SEC  # the loop's own callbacks are an hour away: only run_due fires
    expected = _script(ScanClock(), seed, base)
    assert sum(1 for step in expected if step[0] == "fired") > 50
    assert _script(LiveClock(), seed, base) == expected


def _noting(fired: list[str]) -> Callable[[TimeEvent], None]:
    return lambda event: fired.append(f"{event.name}@{event.ts_event % 1000}")


async def test_an_alert_set_by_a_firing_callback_and_due_earlier_fires_before_the_next_due() -> None:
    base = time.time_ns() + 3_600 * SEC
    clock = LiveClock()
    fired: list[str] = []
    note = _noting(fired)

    def first(event: TimeEvent) -> None:
        note(event)
        clock.set_alert("early", base + 5, note)  # before "second" (at 20), though "first" was at 10

    clock.set_alert("second", base + 20, note)
    clock.set_alert("first", base + 10, first)
    clock.set_alert("later", base + 50, note)
    clock.run_due(base + 30)
    assert [f.split("@")[0] for f in fired] == ["first", "early", "second"]
    assert clock.next_due == base + 50
    clock.stop()


async def test_a_name_set_again_fires_only_at_its_new_time_and_a_canceled_one_never() -> None:
    base = time.time_ns() + 3_600 * SEC
    clock = LiveClock()
    fired: list[str] = []
    note = _noting(fired)
    clock.set_alert("moved", base + 10, note)
    clock.cancel("moved")
    clock.set_alert("moved", base + 40, note)
    clock.set_alert("gone", base + 20, note)
    clock.cancel("gone")
    clock.set_alert("tie-b", base + 30, note)
    clock.set_timer("tick", 15, note, start_ns=base, stop_ns=base + 45)  # created after tie-b: fires after it at 30
    clock.run_due(base + 39)
    assert fired == [f"tick@{(base + 15) % 1000}", f"tie-b@{(base + 30) % 1000}", f"tick@{(base + 30) % 1000}"]
    assert clock.next_due == base + 40
    clock.run_due(base + 100)
    assert fired[3:] == [f"moved@{(base + 40) % 1000}", f"tick@{(base + 45) % 1000}"]
    assert clock.next_due == 2**63 - 1
    clock.stop()


async def test_thousands_of_canceled_alerts_are_dropped_and_a_cancel_inside_run_due_keeps_the_order() -> None:
    base = time.time_ns() + 3_600 * SEC
    clock = LiveClock()
    fired: list[str] = []
    note = _noting(fired)
    for i in range(5_000):
        clock.set_alert(f"timeout-{i}", base + 1_000 + i, note)

    def cancel_all(event: TimeEvent) -> None:
        note(event)
        for i in range(5_000):  # three in four: compacts the heap the running run_due is popping from
            if i % 4 != 1:
                clock.cancel(f"timeout-{i}")
        clock.set_alert("set-after", base + 1_005, note)  # after the timeout due then, set later

    clock.set_alert("ack", base + 500, cancel_all)
    clock.run_due(base + 1_010)
    timeouts = [f"timeout-{i}@{(base + 1_000 + i) % 1000}" for i in (1, 5, 9)]
    assert fired == [f"ack@{(base + 500) % 1000}", *timeouts[:2], f"set-after@{(base + 1_005) % 1000}", timeouts[2]]
    assert len(clock._heap) <= 2 * len(clock._due) + 64  # canceled entries do not pile up
    assert clock.next_due == base + 1_013
    clock.stop()
