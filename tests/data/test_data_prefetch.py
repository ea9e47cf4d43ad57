"""Read-ahead of replay chunks in a background thread (:mod:`tradebus.data.prefetch`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from tests.catalog_damage import keep_sizes
from tradebus.data.catalog import Catalog
from tradebus.data.prefetch import prefetched
from tradebus.data.replay import Replay, ReplaySource
from tradebus.errors import DataError

T0_NS = 1_704_067_200_000_000_000
MIN_NS = 60_000_000_000


class Counting:
    """A source of 0, 1, 2 ... that notes how far it got and whether it was closed."""

    def __init__(self, n: int | None, fail_at: int | None = None) -> None:
        self.n = n
        self.fail_at = fail_at
        self.produced = 0
        self.closed = False
        self.threads: set[str] = set()

    def __iter__(self) -> Iterator[int]:
        try:
            i = 0
            while self.n is None or i < self.n:
                self.threads.add(threading.current_thread().name)
                if i == self.fail_at:
                    raise DataError(f"item {i} is bad")
                self.produced += 1
                yield i
                i += 1
        finally:
            self.closed = True


def _settle(source: Counting, want: int) -> int:
    """Wait (up to 5 s) for the producer to reach ``want`` items; return how far it got then."""
    deadline = time.monotonic() + 5.0
    while source.produced < want and time.monotonic() < deadline:
        time.sleep(0.001)
    time.sleep(0.02)  # a producer that overshoots would do so now
    return source.produced


def _alive(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


def test_items_come_in_order_from_a_thread_that_reads_ahead_by_at_most_depth_plus_one() -> None:
    source = Counting(10)
    got = []
    consumer = prefetched(iter(source), depth=1, name="t-ahead")
    for k, item in enumerate(consumer, start=1):
        got.append(item)
        # the consumer holds k items: the thread has one queued and is blocked putting the next
        assert _settle(source, min(k + 2, 10)) == min(k + 2, 10)
    assert got == list(range(10))
    assert source.threads == {"t-ahead"}
    assert source.closed


def test_an_exception_of_the_source_comes_after_the_items_before_it() -> None:
    source = Counting(10, fail_at=3)
    consumer = prefetched(iter(source))
    assert [next(consumer) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(DataError, match="item 3 is bad"):
        next(consumer)
    assert source.closed


@pytest.mark.parametrize("how", ["close", "drop"])
def test_stopping_the_consumer_stops_the_thread_and_closes_the_source(how: str) -> None:
    source = Counting(None)
    consumer = prefetched(iter(source), depth=2, name=f"t-stop-{how}")
    assert [next(consumer) for _ in range(5)] == [0, 1, 2, 3, 4]
    assert _settle(source, 8) == 8  # an endless source is read no further than depth + 1 ahead
    if how == "close":
        consumer.close()
    else:
        del consumer  # dropped: the generator is finalised at once
    assert not _alive(f"t-stop-{how}")
    assert source.closed
    assert source.produced <= 9


def test_depth_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="depth must be >= 1"):
        prefetched(iter(()), depth=0)


def _bars(n: int, start: int) -> pa.Table:
    ts = T0_NS + MIN_NS * np.arange(start, start + n, dtype=np.int64)
    close = 100.0 + np.sin(np.arange(n) / 7.0)
    return pa.table(
        {"ts_event": ts, "ts_init": ts, "open": close, "high": close + 1.0, "low": close - 1.0, "close": close,
         "volume": np.full(n, 2.0)}
    )  # fmt: skip


def _batches(replay: Replay) -> list[tuple[object, list[int], list[float]]]:
    return [(np.asarray(b.source).tolist(), b.ts_init.tolist(), b.close.tolist()) for b in replay.mixed_batches()]


def test_a_prefetched_replay_yields_the_batches_of_a_plain_one(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    sources = []
    for k, (n, start) in enumerate([(5_000, 0), (3_000, 1_000), (4_500, 7)]):
        cat.write(_bars(n, start), "v", "spot", f"S{k}", "bars_1m", "day", row_group_rows=700)
        sources.append(ReplaySource.from_catalog(cat, f"S{k}.V", "v", "spot", f"S{k}", "bars_1m"))
    window = {"start_ns": T0_NS + 500 * MIN_NS, "end_ns": T0_NS + 4_000 * MIN_NS}
    for chosen, kwargs in [(sources[:1], {}), (sources, {}), (sources, window)]:
        plain = _batches(Replay(chosen, batch_rows=300, prefetch=False, **kwargs))  # type: ignore[arg-type]
        ahead = _batches(Replay(chosen, batch_rows=300, **kwargs))  # type: ignore[arg-type]
        assert ahead == plain
        assert sum(len(ts) for _, ts, _ in plain) > 1_000
    assert not [t for t in threading.enumerate() if t.name.startswith("tradebus-replay-")]


def test_a_corrupt_file_is_reported_after_the_rows_before_it_as_without_prefetch(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    manifest = cat.write(_bars(3 * 1_440, 0), "v", "spot", "B", "bars_1m", "day", row_group_rows=500)
    assert len(manifest.files) == 3
    broken = cat.dataset_dir("v", "spot", "B", "bars_1m") / manifest.files[1].path
    broken.write_bytes(broken.read_bytes()[:200])
    keep_sizes(broken.parents[1])  # else every read refuses it before any row
    source = ReplaySource.from_catalog(cat, "B.V", "v", "spot", "B", "bars_1m")
    outcomes = []
    for prefetch in (False, True):
        rows = 0
        with pytest.raises(DataError) as caught:
            for batch in Replay([source], prefetch=prefetch).batches():
                rows += len(batch)
        outcomes.append((rows, str(caught.value)))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == 1_440  # the first day's rows, then the second file's error
    assert manifest.files[1].path in outcomes[0][1]
