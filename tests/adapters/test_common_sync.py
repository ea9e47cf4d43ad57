"""BookSync: sequence rules, resync state machine, emission discipline — on real Binance captures."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest

from tradebus.adapters.common.book import OrderBook
from tradebus.adapters.binance.sync import BinanceFuturesRule, BinanceSpotRule
from tradebus.adapters.common.sync import (
    BookSync,
    DeltaBatch,
    SequenceRule,
    SyncState,
    Verdict,
)
from tradebus.engine.messages import BookDelta, BookResynced, BookSnapshot, Quote
from tradebus.errors import BookError, ConfigError

from .binance_testdata import IID, USDM_CAPTURE, book_arrays, capture, delta_from, offline_rebuild, snapshot_from


def d(first: int, last: int, prev: int = -1, bids: list | None = None, asks: list | None = None) -> BookDelta:
    """Delta factory."""
    b = np.array(bids or [], dtype=np.float64).reshape(-1, 2)
    a = np.array(asks or [], dtype=np.float64).reshape(-1, 2)
    return BookDelta(IID, first * 1000, first * 1000 + 1, b, a, first, last, prev)


def snap(seq: int, bids: list | None = None, asks: list | None = None) -> BookSnapshot:
    """Snapshot factory (default one level each side around 100)."""
    b = np.array(bids if bids is not None else [[99.0, 1.0]], dtype=np.float64).reshape(-1, 2)
    a = np.array(asks if asks is not None else [[101.0, 1.0]], dtype=np.float64).reshape(-1, 2)
    return BookSnapshot(IID, seq * 1000, seq * 1000, b, a, seq)


def feed_capture(sync: BookSync, lines: list[tuple[int, str]]) -> None:
    for recv_ns, raw in lines:
        if raw.startswith('{"lastUpdateId"'):
            sync.on_snapshot(snapshot_from(raw, recv_ns))
        elif '"depthUpdate"' in raw:
            sync.on_delta(delta_from(raw, recv_ns))


# ------------------------------------------------------------------- rules


@pytest.mark.parametrize(
    ("first", "last", "verdict"),
    [(90, 100, Verdict.DROP), (95, 101, Verdict.APPLY), (101, 105, Verdict.APPLY), (102, 105, Verdict.GAP)],
)
def test_binance_spot_rule_first_delta_after_snapshot_100(first: int, last: int, verdict: Verdict) -> None:
    rule = BinanceSpotRule()
    rule.reset(snap(100))
    assert rule.check(d(first, last)) is verdict


def test_binance_spot_rule_then_requires_no_missing_id() -> None:
    rule = BinanceSpotRule()
    rule.reset(snap(100))
    rule.advance(d(95, 110))
    assert rule.check(d(111, 120)) is Verdict.APPLY
    assert rule.check(d(105, 120)) is Verdict.APPLY  # overlaps 105..110: nothing missing
    assert rule.check(d(112, 120)) is Verdict.GAP  # 111 missing
    assert rule.check(d(100, 110)) is Verdict.DROP
    assert "expected U <= 111 <= u" in rule.gap_reason(d(112, 120))


@pytest.mark.parametrize(
    ("first", "last", "verdict"),
    [(90, 99, Verdict.DROP), (90, 100, Verdict.APPLY), (100, 105, Verdict.APPLY), (101, 105, Verdict.GAP)],
)
def test_binance_futures_rule_first_delta_after_snapshot_100(first: int, last: int, verdict: Verdict) -> None:
    rule = BinanceFuturesRule()
    rule.reset(snap(100))
    assert rule.check(d(first, last, prev=first - 5)) is verdict


def test_binance_futures_rule_then_requires_pu_equal_previous_u() -> None:
    rule = BinanceFuturesRule()
    rule.reset(snap(100))
    rule.advance(d(90, 110, prev=80))
    assert rule.check(d(115, 120, prev=110)) is Verdict.APPLY
    assert rule.check(d(115, 120, prev=111)) is Verdict.GAP
    assert rule.check(d(100, 110, prev=95)) is Verdict.DROP


# ------------------------------------------------------------ real captures


@pytest.mark.parametrize("futures", [False, True], ids=["spot", "usdm"])
def test_book_rebuilt_from_snapshot_and_diffs_equals_offline_rebuild(futures: bool) -> None:
    lines = capture(USDM_CAPTURE) if futures else capture()
    out: list[Any] = []
    sync = BookSync(IID, BinanceFuturesRule() if futures else BinanceSpotRule(), out.append, capacity=16)
    feed_capture(sync, lines)
    bids, asks, last, applied = offline_rebuild(lines, futures)
    ref_b, ref_a = book_arrays(bids, asks)
    assert sync.synced and sync.resyncs == 0
    assert sync.book.last_seq == last
    assert np.array_equal(sync.book.bids(), ref_b) and np.array_equal(sync.book.asks(), ref_a)
    n_snap = sum(isinstance(m, BookSnapshot) for m in out)
    n_delta = sum(isinstance(m, BookDelta) for m in out)
    assert n_snap == 1
    replayed = applied - n_delta  # deltas applied while replaying the buffer are inside the snapshot message
    assert 0 <= replayed <= 5


def test_gap_moves_to_awaiting_emits_nothing_then_resyncs_with_reason() -> None:
    lines = capture()
    depth = [i for i, (_, raw) in enumerate(lines) if '"depthUpdate"' in raw]
    skip = depth[100]
    out: list[Any] = []
    sync = BookSync(IID, BinanceSpotRule(), out.append)
    feed_capture(sync, lines[:skip])
    assert sync.synced
    mark = len(out)
    feed_capture(sync, lines[skip + 1 : depth[150]])  # one diff missing -> gap at the next one
    assert sync.state is SyncState.AWAITING_SNAPSHOT
    assert out[mark:] == []  # no Quote, no book message while unsynced
    # a fresh snapshot taken at the gap point (offline rebuild including the skipped diff)
    bids, asks, last, _ = offline_rebuild(lines[: skip + 1], futures=False)
    ref_b, ref_a = book_arrays(bids, asks)
    sync.on_snapshot(BookSnapshot(IID, 1, 2, ref_b, ref_a, last))
    assert sync.synced
    kinds = [type(m) for m in out[mark:]]
    assert kinds[:2] == [BookSnapshot, BookResynced] and kinds[2:] in ([Quote], [])
    resynced = out[mark + 1]
    assert "sequence gap (binance-spot)" in resynced.reason and resynced.instrument_id == IID
    feed_capture(sync, lines[depth[150] :])
    full_b, full_a, _, _ = offline_rebuild(lines, futures=False)
    ref_b, ref_a = book_arrays(full_b, full_a)
    assert np.array_equal(sync.book.bids(), ref_b) and np.array_equal(sync.book.asks(), ref_a)


def test_stale_snapshot_older_than_buffer_is_rejected_and_book_stays_unsynced() -> None:
    out: list[Any] = []
    sync = BookSync(IID, BinanceSpotRule(), out.append)
    sync.on_delta(d(200, 210))
    sync.on_snapshot(snap(100))  # 101..199 missing
    assert sync.state is SyncState.AWAITING_SNAPSHOT and out == []
    sync.on_snapshot(snap(205))
    assert sync.synced and sync.book.last_seq == 210


def test_crossed_delta_triggers_resync_and_suppresses_quotes() -> None:
    out: list[Any] = []
    sync = BookSync(IID, BinanceSpotRule(), out.append)
    sync.on_snapshot(snap(10))
    assert [type(m) for m in out] == [BookSnapshot, Quote]
    sync.on_delta(d(11, 11, bids=[[102.0, 1.0]]))
    assert sync.state is SyncState.AWAITING_SNAPSHOT
    assert [type(m) for m in out] == [BookSnapshot, Quote]
    sync.on_snapshot(snap(11))
    assert isinstance(out[3], BookResynced) and out[3].reason.startswith("crossed book")


def test_malformed_level_triggers_resync_without_touching_levels() -> None:
    out: list[Any] = []
    sync = BookSync(IID, BinanceSpotRule(), out.append)
    sync.on_snapshot(snap(10))
    sync.on_delta(d(11, 11, bids=[[98.0, 1.0]], asks=[[float("nan"), 1.0]]))
    assert not sync.synced
    assert sync.book.bids().tolist() == [[99.0, 1.0]]


def test_quote_emitted_only_when_top_of_book_changes() -> None:
    out: list[Any] = []
    sync = BookSync(IID, BinanceSpotRule(), out.append)
    sync.on_snapshot(snap(10))
    sync.on_delta(d(11, 11, bids=[[98.0, 4.0]]))
    sync.on_delta(d(12, 12, bids=[[99.0, 3.0]]))
    assert [type(m) for m in out] == [BookSnapshot, Quote, BookDelta, BookDelta, Quote]
    assert out[-1].bid_size == 3.0 and out[-1].ts_event == 12_000


def test_buffer_overflow_drops_oldest_and_the_rule_sees_the_gap() -> None:
    sync = BookSync(IID, BinanceSpotRule(), lambda m: None, max_buffer=2)
    for i in range(11, 15):
        sync.on_delta(d(i, i))
    assert sync.dropped_from_buffer == 2
    sync.on_snapshot(snap(10))
    assert not sync.synced  # 11 and 12 were dropped
    sync.on_snapshot(snap(12))
    assert sync.synced and sync.book.last_seq == 14


def test_requested_snapshot_is_fetched_by_the_injected_callable_and_retried() -> None:
    calls: list[int] = []

    async def fetch() -> BookSnapshot:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("first attempt fails")
        return snap(20)

    async def scenario() -> list[Any]:
        out: list[Any] = []
        sync = BookSync(IID, BinanceSpotRule(), out.append, fetch, retry_delays=(0.0, 0.01))
        sync.on_delta(d(18, 22))
        sync.start()
        assert await sync.wait_synced(5.0)
        await sync.close()
        return out

    out = asyncio.run(scenario())
    assert len(calls) == 2
    assert [type(m) for m in out] == [BookSnapshot, Quote]


def test_a_snapshot_older_than_the_buffer_is_requested_again_after_the_retry_delay_not_at_once() -> None:
    # Binance's REST depth can lag its stream: the snapshot then predates the buffered diffs and must be
    # fetched again, but each retry costs request weight; the retry delays must hold, not restart at 0 s
    calls: list[int] = []

    async def fetch() -> BookSnapshot:
        calls.append(1)
        return snap(100)  # 101..199 are never covered: every snapshot is too old for the buffered diff

    async def scenario() -> tuple[SyncState, str | None]:
        sync = BookSync(IID, BinanceSpotRule(), lambda m: None, fetch, retry_delays=(0.0, 3600.0))
        sync.on_delta(d(200, 210))
        sync.start()
        for _ in range(200):  # let the resync run as far as it goes without waiting
            await asyncio.sleep(0)
        state, failure = sync.state, sync.failure
        await sync.close()
        return state, failure

    state, failure = asyncio.run(scenario())
    assert state is SyncState.AWAITING_SNAPSHOT and "sequence gap" in (failure or "")
    assert len(calls) == 1  # the second fetch waits for retry_delays[1]


def test_in_stream_snapshot_requester_returning_none_waits_for_on_snapshot() -> None:
    async def scenario() -> tuple[int, bool]:
        requests: list[int] = []
        sync: BookSync

        async def resubscribe() -> None:
            requests.append(1)
            asyncio.get_running_loop().call_soon(sync.on_snapshot, snap(30))

        sync = BookSync(IID, BinanceSpotRule(), lambda m: None, resubscribe, snapshot_timeout=5.0)
        sync.start()
        ok = await sync.wait_synced(5.0)
        await sync.close()
        return len(requests), ok

    assert asyncio.run(scenario()) == (1, True)


class _SumChecksumRule(BinanceSpotRule):
    """A rule with a checksum: ``extra`` carries the expected total bid size."""

    name = "sum-checksum"

    def verify(self, book: OrderBook, msg: BookDelta | BookSnapshot, extra: Any = None) -> str | None:
        if extra is None:
            return None
        total = float(book.bids()[:, 1].sum())
        return None if total == extra else f"checksum mismatch: {total} != {extra}"


def test_checksum_mismatch_from_rule_verify_triggers_resync() -> None:
    out: list[Any] = []
    sync = BookSync(IID, _SumChecksumRule(), out.append)
    sync.on_snapshot(snap(10), extra=1.0)
    sync.on_delta(d(11, 11, bids=[[98.0, 1.0]]), extra=2.0)
    assert sync.synced
    sync.on_delta(d(12, 12, bids=[[97.0, 1.0]]), extra=99.0)
    assert not sync.synced
    sync.on_snapshot(snap(12), extra=1.0)
    assert [m.reason for m in out if isinstance(m, BookResynced)] == ["checksum mismatch: 3.0 != 99.0"]


def test_invalidate_drops_buffer_and_resync_reason_is_reported() -> None:
    out: list[Any] = []
    sync = BookSync(IID, BinanceSpotRule(), out.append)
    sync.on_snapshot(snap(10))
    sync.invalidate("connection lost", request=False)
    assert not sync.synced
    sync.on_snapshot(snap(50))
    assert [m.reason for m in out if isinstance(m, BookResynced)] == ["connection lost"]


def test_snapshot_with_bad_levels_is_refused() -> None:
    sync = BookSync(IID, BinanceSpotRule(), lambda m: None)
    sync.on_snapshot(snap(10, bids=[[float("nan"), 1.0]]))
    assert not sync.synced and sync.book.n_bids == 0


def test_rule_subclass_must_implement_the_abstract_methods() -> None:
    class Incomplete(SequenceRule):
        pass

    with pytest.raises(TypeError):
        Incomplete()  # type: ignore[abstract]


def test_bad_sync_parameters_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="max_buffer"):
        BookSync(IID, BinanceSpotRule(), lambda m: None, max_buffer=0)


def test_capture_has_real_depth_frames() -> None:
    # guards the fixtures: the tests above are meaningless without diffs on both sides of the snapshot
    lines = capture()
    kinds = [json.loads(raw).get("data", {}).get("e", "snapshot") for _, raw in lines[:5]]
    assert kinds[:2] == ["depthUpdate", "depthUpdate"] and "snapshot" in kinds


# ------------------------------------------------------------- fast_forward


def _split(lines: list[tuple[int, str]]) -> tuple[BookSnapshot, list[BookDelta]]:
    snap_raw = next((ts, raw) for ts, raw in lines if raw.startswith('{"lastUpdateId"'))
    deltas = [delta_from(raw, ts) for ts, raw in lines if '"depthUpdate"' in raw]
    return snapshot_from(snap_raw[1], snap_raw[0]), deltas


@pytest.mark.parametrize("futures", [False, True], ids=["spot", "usdm"])
def test_fast_forward_gives_the_same_book_and_rule_state_as_on_delta(futures: bool) -> None:
    lines = capture(USDM_CAPTURE) if futures else capture()
    snapshot, deltas = _split(lines)
    rule = BinanceFuturesRule if futures else BinanceSpotRule
    slow = BookSync(IID, rule(), lambda m: None, capacity=8)
    fast_out: list[Any] = []
    fast = BookSync(IID, rule(), fast_out.append, capacity=8)  # tiny capacity: exercises the grow-and-resume path
    for sync in (slow, fast):
        sync.on_snapshot(snapshot)
    for dlt in deltas:
        slow.on_delta(dlt)
    fast.fast_forward(DeltaBatch(deltas))
    assert fast.synced and fast.book.equals(slow.book)
    assert (fast.book.last_seq, fast.rule.last, fast.rule.first) == (slow.book.last_seq, slow.rule.last, slow.rule.first)
    assert not any(isinstance(m, BookDelta) for m in fast_out)
    assert isinstance(fast_out[-1], Quote) and fast_out[-1].bid_price == slow.book.best_bid()[0]


def test_fast_forward_stops_at_a_gap_and_resyncs_like_on_delta() -> None:
    snapshot, deltas = _split(capture())
    out: list[Any] = []
    sync = BookSync(IID, BinanceSpotRule(), out.append)
    sync.on_snapshot(snapshot)
    batch = DeltaBatch(deltas[:100] + deltas[101:200])
    sync.fast_forward(batch)
    assert sync.state is SyncState.AWAITING_SNAPSHOT
    assert sync.book.last_seq == deltas[99].last_seq
    assert not any(isinstance(m, (BookDelta, Quote)) for m in out[2:])


@pytest.mark.parametrize("bad", [np.nan, -1.0, np.inf], ids=["nan", "negative", "inf"])
def test_fast_forward_of_a_malformed_delta_resyncs_and_never_stays_synced_on_a_wrong_book(bad: float) -> None:
    snapshot, deltas = _split(capture())
    good = deltas[100]
    assert good.bids.shape[0] >= 2  # type: ignore[attr-defined]
    bids = np.array(good.bids, copy=True)
    bids[1, 0] = bad  # one malformed price among valid levels: the whole delta must be refused
    broken = BookDelta(IID, good.ts_event, good.ts_init, bids, good.asks, good.first_seq, good.last_seq, good.prev_seq)
    out: list[Any] = []
    sync = BookSync(IID, BinanceSpotRule(), out.append)
    sync.on_snapshot(snapshot)
    sync.fast_forward(DeltaBatch(deltas[:100] + [broken] + deltas[101:200]))
    assert sync.state is SyncState.AWAITING_SNAPSHOT and sync.failure is not None
    assert "malformed level" in sync.failure
    # nothing after the malformed delta reached the book, and nothing was emitted from it
    assert sync.book.last_seq == deltas[99].last_seq and sync.rule.last == deltas[99].last_seq
    assert not any(isinstance(m, (BookDelta, Quote)) for m in out[2:])
    # the same deltas through on_delta end in the same state: fast_forward is not more lenient
    slow = BookSync(IID, BinanceSpotRule(), lambda m: None)
    slow.on_snapshot(snapshot)
    for dlt in deltas[:100] + [broken] + deltas[101:200]:
        slow.on_delta(dlt)
    assert slow.state is SyncState.AWAITING_SNAPSHOT and slow.book.equals(sync.book)


def test_fused_apply_and_top_of_book_match_a_dict_book_on_the_capture_while_growing() -> None:
    """Quotes of the per-message path (one compiled apply+top call) follow the true top of book.

    ``capacity=1`` makes nearly every early delta overflow the arrays, so the grow-and-retry
    branch runs too; the reference top comes from plain dicts fed the emitted messages.
    """
    out: list[Any] = []
    sync = BookSync(IID, BinanceFuturesRule(), out.append, capacity=1)
    feed_capture(sync, capture(USDM_CAPTURE))
    assert sync.synced
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    last_top: tuple[float, float, float, float] | None = None
    expected_quotes: list[tuple[float, float, float, float]] = []
    got_quotes: list[tuple[float, float, float, float]] = []
    for msg in out:
        if isinstance(msg, Quote):
            got_quotes.append((msg.bid_price, msg.bid_size, msg.ask_price, msg.ask_size))
            continue
        if isinstance(msg, BookSnapshot):
            bids, asks = {}, {}
        for side, levels in ((bids, msg.bids), (asks, msg.asks)):
            for price, size in levels.tolist():
                if size == 0.0:
                    side.pop(price, None)
                else:
                    side[price] = size
        bid, ask = max(bids), min(asks)
        top = (bid, bids[bid], ask, asks[ask])
        if top != last_top:
            expected_quotes.append(top)
            last_top = top
    assert len(expected_quotes) > 100
    assert got_quotes == expected_quotes


def test_resync_to_the_same_top_emits_the_quote_again() -> None:
    out: list[Any] = []
    sync = BookSync(IID, BinanceSpotRule(), out.append)
    sync.on_snapshot(snap(10))
    sync.on_delta(d(20, 20))  # gap: the book fails and forgets the last quote
    sync.on_snapshot(snap(30))
    quotes = [m for m in out if isinstance(m, Quote)]
    assert [(q.bid_price, q.ask_price, q.ts_event) for q in quotes] == [(99.0, 101.0, 10_000), (99.0, 101.0, 30_000)]


# ------------------------------------------------------------- compiled live step


def _python_path(rule: type[BinanceSpotRule] | type[BinanceFuturesRule]) -> SequenceRule:
    """The rule without its compiled live step: BookSync then checks, applies and advances in Python."""

    class PythonOnly(rule):  # type: ignore[misc, valid-type]
        def live_step(self) -> None:
            return None

    return PythonOnly()


def _crossing(after: BookDelta, sync: BookSync) -> BookDelta:
    """A delta continuing ``after`` whose bid is above the book's best ask."""
    ask = sync.book.best_ask()[0]
    return BookDelta(IID, after.ts_event, after.ts_init, np.array([[ask + 1.0, 1.0]]), np.empty((0, 2)),
                     after.last_seq + 1, after.last_seq + 1, after.last_seq)


@pytest.mark.parametrize("futures", [False, True], ids=["spot", "usdm"])
@pytest.mark.parametrize("fault", ["none", "gap", "malformed", "crossed", "strided"])
def test_compiled_live_step_emits_and_fails_exactly_as_the_python_path(futures: bool, fault: str) -> None:
    lines = capture(USDM_CAPTURE) if futures else capture()
    snapshot, deltas = _split(lines)
    rule = BinanceFuturesRule if futures else BinanceSpotRule
    k = next(i for i in range(150, len(deltas)) if deltas[i].bids.shape[0] and deltas[i].last_seq > snapshot.last_seq)
    if fault == "gap":
        deltas = deltas[:k] + deltas[k + 1 :]
    elif fault == "malformed":
        bids = np.array(deltas[k].bids, copy=True)
        bids[0, 1] = -1.0
        dk = deltas[k]
        deltas[k] = BookDelta(IID, dk.ts_event, dk.ts_init, bids, dk.asks, dk.first_seq, dk.last_seq, dk.prev_seq)
    elif fault == "strided":  # column-major level arrays: the compiled step must honour their strides
        deltas = [BookDelta(IID, x.ts_event, x.ts_init, np.asfortranarray(x.bids), np.asfortranarray(x.asks),
                            x.first_seq, x.last_seq, x.prev_seq) for x in deltas]  # fmt: skip
    outs: list[list[Any]] = [[], []]
    syncs = [BookSync(IID, rule(), outs[0].append, capacity=8), BookSync(IID, _python_path(rule), outs[1].append, capacity=8)]
    assert syncs[0]._step is not None  # the compiled step is the one under test
    for sync in syncs:
        sync.on_snapshot(snapshot)
        for i, dlt in enumerate(deltas):
            sync.on_delta(dlt)
            if fault == "crossed" and i == k and sync.synced:
                sync.on_delta(_crossing(dlt, sync))
    fast, slow = syncs
    assert fast.state is slow.state and fast.failure == slow.failure
    assert (fault in ("none", "strided")) == fast.synced
    assert fast.book.equals(slow.book) and fast.book.last_seq == slow.book.last_seq
    assert (fast.rule.last, fast.rule.first) == (slow.rule.last, slow.rule.first)
    assert len(outs[0]) == len(outs[1]) > 100
    for a, b in zip(*outs, strict=True):
        assert type(a) is type(b)
        if isinstance(a, Quote | BookResynced):
            assert a == b
        elif isinstance(a, BookDelta):  # the same delta went out on both paths
            assert a is b
        else:  # the book's snapshot, rebuilt on each path
            assert a.last_seq == b.last_seq and np.array_equal(a.bids, b.bids) and np.array_equal(a.asks, b.asks)


# ------------------------------------------- compiled live step, USD-M ``pu`` rule


def _usdm_synced_at(k: int) -> tuple[list[tuple[int, str]], list[BookDelta], BookSync, list[Any]]:
    """The USD-M capture's book fed through the compiled live step up to (excluding) depth diff ``k``."""
    lines = capture(USDM_CAPTURE)
    snapshot, deltas = _split(lines)
    out: list[Any] = []
    sync = BookSync(IID, BinanceFuturesRule(), out.append, capacity=16)
    assert sync._step is not None  # the compiled step is the one under test
    sync.on_snapshot(snapshot)
    for dlt in deltas[:k]:
        sync.on_delta(dlt)
    assert sync.synced
    return lines, deltas, sync, out


def _reference(lines: list[tuple[int, str]], n_deltas: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Dict-book rebuild (json module, no tradebus code) of the snapshot and the first ``n_deltas`` diffs."""
    depth = [i for i, (_, raw) in enumerate(lines) if '"depthUpdate"' in raw]
    cut = depth[n_deltas] if n_deltas < len(depth) else len(lines)
    bids, asks, last, _ = offline_rebuild(lines[:cut], futures=True)
    return (*book_arrays(bids, asks), last)


def _same_book(sync: BookSync, ref: tuple[np.ndarray, np.ndarray, int]) -> bool:
    return bool(
        np.array_equal(sync.book.bids(), ref[0]) and np.array_equal(sync.book.asks(), ref[1]) and sync.book.last_seq == ref[2]
    )


def test_usdm_live_step_applies_from_the_snapshot_and_emits_exactly_the_applied_diffs() -> None:
    lines = capture(USDM_CAPTURE)
    snapshot, deltas = _split(lines)
    # the capture's first diff straddles the snapshot id (U <= lastUpdateId <= u): the "first" branch runs compiled
    assert deltas[0].first_seq <= snapshot.last_seq <= deltas[0].last_seq and deltas[1].prev_seq == deltas[0].last_seq
    stale = BookDelta(IID, 1, 2, np.array([[1.0, 5.0]]), np.empty((0, 2)), snapshot.last_seq - 9, snapshot.last_seq - 1,
                      snapshot.last_seq - 10)  # fmt: skip
    out: list[Any] = []
    sync = BookSync(IID, BinanceFuturesRule(), out.append, capacity=16)
    sync.on_snapshot(snapshot)
    for dlt in [stale, *deltas]:
        sync.on_delta(dlt)
    assert sync.synced and sync.resyncs == 0
    assert _same_book(sync, _reference(lines, len(deltas)))
    emitted = [m for m in out if isinstance(m, BookDelta)]
    assert emitted == deltas  # the pre-snapshot diff (u < lastUpdateId) was dropped, every later one applied


def test_usdm_live_step_drops_a_stale_repeat_without_applying_or_emitting_it() -> None:
    k = 400
    lines, deltas, sync, out = _usdm_synced_at(k)
    # a diff already applied whose levels were changed since: applying it again would move the book back
    j = next(j for j in range(k - 1, 0, -1)
             if any(sync.book.bids().tolist().count(lvl) == 0 for lvl in deltas[j].bids.tolist() if lvl[1] > 0))  # fmt: skip
    probe = OrderBook(IID, 16)
    probe.load(sync.book.bids(), sync.book.asks())
    probe.apply(deltas[j].bids, deltas[j].asks)
    assert not probe.equals(sync.book)  # so the test fails if the stale diff is applied
    mark = len(out)
    sync.on_delta(deltas[j])
    sync.on_delta(deltas[k - 1])  # the last applied one, repeated
    assert out[mark:] == [] and sync.synced
    assert _same_book(sync, _reference(lines, k))
    for dlt in deltas[k:]:
        sync.on_delta(dlt)
    assert sync.synced and _same_book(sync, _reference(lines, len(deltas)))


def test_usdm_live_step_gaps_on_a_wrong_pu_even_when_U_follows_the_last_u() -> None:
    k = 300
    lines, deltas, sync, out = _usdm_synced_at(k)
    nxt = deltas[k]
    last = deltas[k - 1].last_seq
    # the spot rule's continuation (U == last + 1) with a pu that does not name the last u: a gap under the pu rule
    forged = BookDelta(IID, nxt.ts_event, nxt.ts_init, nxt.bids, nxt.asks, last + 1, nxt.last_seq, last - 1)
    mark = len(out)
    sync.on_delta(forged)
    assert not sync.synced and f"expected pu == {last}, got pu={last - 1}" in (sync.failure or "")
    assert out[mark:] == [] and _same_book(sync, _reference(lines, k))  # nothing of it applied


def test_usdm_live_step_follows_pu_not_U() -> None:
    k = 300
    lines, deltas, sync, out = _usdm_synced_at(k)
    nxt = deltas[k]
    assert nxt.first_seq != deltas[k - 1].last_seq + 1  # USD-M ids jump: U is not the last u + 1
    sync.on_delta(nxt)
    assert sync.synced and any(m is nxt for m in out[-2:])  # emitted (a Quote may follow it)
    assert _same_book(sync, _reference(lines, k + 1))


def test_usdm_live_step_buffers_a_continuing_diff_that_arrives_after_a_gap() -> None:
    k = 500
    lines, deltas, sync, out = _usdm_synced_at(k)
    sync.on_delta(deltas[k + 1])  # deltas[k] missing: gap
    assert not sync.synced
    mark = len(out)
    sync.on_delta(deltas[k])  # late, and it does continue the rule's last u: the failed book must still not take it
    for dlt in deltas[k + 2 : k + 40]:
        sync.on_delta(dlt)
    assert out[mark:] == [] and _same_book(sync, _reference(lines, k))
    # a fresh snapshot through diff k + 1 (rebuilt offline) resyncs: of the buffer, k + 1 (u == lastUpdateId)
    # is applied again, k dropped, and the rest replayed, landing on the full book
    ref_b, ref_a, last = _reference(lines, k + 2)
    sync.on_snapshot(BookSnapshot(IID, 1, 2, ref_b, ref_a, last))
    for dlt in deltas[k + 40 :]:
        sync.on_delta(dlt)
    assert sync.synced and sync.resyncs == 1
    assert _same_book(sync, _reference(lines, len(deltas)))


@pytest.mark.parametrize(
    "bad", [np.array([[1.0, 5.0]]).astype(np.int64), np.array([[[1.0, 5.0]]]), np.array([1.0, 5.0])], ids=["int64", "3d", "1d"]
)
def test_live_step_never_gets_level_arrays_it_would_misread(bad: np.ndarray) -> None:
    # the compiled step is called without type checks: other dtypes and shapes must take the checked path
    _, deltas, sync, out = _usdm_synced_at(50)
    nxt = deltas[50]
    before = (sync.book.bids(), sync.book.asks(), sync.rule.last)
    mark = len(out)
    with pytest.raises(BookError, match="float64 of shape"):
        sync.on_delta(BookDelta(IID, nxt.ts_event, nxt.ts_init, bad, nxt.asks, nxt.first_seq, nxt.last_seq, nxt.prev_seq))
    assert np.array_equal(sync.book.bids(), before[0]) and np.array_equal(sync.book.asks(), before[1])
    assert sync.rule.last == before[2] and out[mark:] == []


# ------------------------------------------- spot: an event overlapping the last applied id


def _merged(older: BookDelta, newer: BookDelta) -> BookDelta:
    """One spot event covering the ids of both (``U`` of ``older``, ``u`` of ``newer``): what Binance sends
    when it folds updates the client already has into the next event. Levels are absolute: the newer wins."""
    sides = []
    for a, b in ((older.bids, newer.bids), (older.asks, newer.asks)):
        merged = {p: q for p, q in a.tolist()}
        merged.update({p: q for p, q in b.tolist()})
        sides.append(np.array(list(merged.items()), dtype=np.float64).reshape(-1, 2))
    return BookDelta(IID, newer.ts_event, newer.ts_init, sides[0], sides[1], older.first_seq, newer.last_seq, -1)


@pytest.mark.parametrize("path", ["compiled", "python", "fast_forward"])
def test_spot_event_overlapping_the_last_applied_id_is_applied_without_a_resync(path: str) -> None:
    # Binance spot's procedure: ignore u < book id, resync only when U > book id + 1 (a missed event).
    # An event with U <= book id < u misses nothing (levels are absolute): applying it is exact, a
    # resync would cost a REST snapshot and its weight for nothing.
    lines = capture()
    snapshot, deltas = _split(lines)
    k = 200
    overlapping = _merged(deltas[k], deltas[k + 1])
    assert overlapping.first_seq <= deltas[k].last_seq < overlapping.last_seq
    fed = [*deltas[: k + 1], overlapping, *deltas[k + 2 :]]
    out: list[Any] = []
    sync = BookSync(IID, _python_path(BinanceSpotRule) if path == "python" else BinanceSpotRule(), out.append)
    sync.on_snapshot(snapshot)
    if path == "fast_forward":
        sync.fast_forward(DeltaBatch(fed))
    else:
        for dlt in fed:
            sync.on_delta(dlt)
    assert sync.synced and sync.failure is None and sync.resyncs == 0
    bids, asks, last, _ = offline_rebuild(lines, futures=False)
    ref_b, ref_a = book_arrays(bids, asks)
    assert sync.book.last_seq == last
    assert np.array_equal(sync.book.bids(), ref_b) and np.array_equal(sync.book.asks(), ref_a)

