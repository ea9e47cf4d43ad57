"""OKX book integrity: checksum, seqId rule, fault injection on real frames, fuzzing."""

from __future__ import annotations

import json
import random
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tradebus.adapters.common.recorder import read_frames
from tradebus.adapters.common.sync import BookSync, Verdict
from tradebus.adapters.okx.parse import OkxParser
from tradebus.adapters.okx.sync import OkxRule, okx_checksum
from tradebus.engine.messages import BookDelta, BookResynced, BookSnapshot, Quote
from tradebus.errors import ParseError

FIX = Path(__file__).parent.parent / "fixtures" / "okx"
CAPTURE = FIX / "okx_v5_public_2022-05-13.jsonl.gz"
INST = "BTC-USDT"
KEY = f"books:{INST}"
IID = f"{INST}.OKX"


def capture() -> list[tuple[int, str]]:
    return [(t, raw) for t, _, raw in read_frames(CAPTURE)]


def book_frames(frames: list[tuple[int, str]], inst: str = INST) -> list[int]:
    """Indexes of the data frames of ``inst``'s book."""
    tag = f'"channel":"books","instId":"{inst}"'
    return [i for i, (_, r) in enumerate(frames) if tag in r and '"data"' in r]


def replay(parser: OkxParser, frames: list[tuple[int, str]]) -> list:
    out: list = []
    for recv_ns, raw in frames:
        out.extend(parser.parse_frame(raw, recv_ns))
    return out


def state(parser: OkxParser, inst: str = INST) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Every level of the book as OKX's raw strings, best first."""
    sync = parser.book(inst)
    assert sync is not None
    return sync.rule.raw_levels(sync.book)  # type: ignore[attr-defined]


def snapshot_frame(parser: OkxParser, inst: str, ts_ms: int) -> str:
    """An OKX books snapshot frame holding ``parser``'s book of ``inst`` (raw strings, with its checksum)."""
    bids, asks = state(parser, inst)
    data = {
        "asks": [[p, s, "0", "1"] for p, s in asks],
        "bids": [[p, s, "0", "1"] for p, s in bids],
        "ts": str(ts_ms),
        "checksum": okx_checksum(bids, asks),
    }
    return json.dumps({"arg": {"channel": "books", "instId": inst}, "action": "snapshot", "data": [data]})


def frame(action: str, asks: list[list[str]], bids: list[list[str]], seq: int | None, prev: int | None,
          checksum: int | None = 0) -> str:
    """An OKX books frame for BTC-USDT."""
    item: dict[str, Any] = {"asks": [lv + ["0", "1"] for lv in asks], "bids": [lv + ["0", "1"] for lv in bids],
                            "ts": "1"}
    if checksum is not None:
        item["checksum"] = checksum
    if seq is not None:
        item["seqId"] = seq
    if prev is not None:
        item["prevSeqId"] = prev
    return json.dumps({"arg": {"channel": "books", "instId": INST}, "action": action, "data": [item]})


def delta(seq: int, prev: int, bids: list | None = None, asks: list | None = None) -> BookDelta:
    """BookDelta factory with OKX sequence ids."""
    b = np.array(bids or [], dtype=np.float64).reshape(-1, 2)
    a = np.array(asks or [], dtype=np.float64).reshape(-1, 2)
    return BookDelta(IID, 1, 1, b, a, -1, seq, prev)


def snap(seq: int) -> BookSnapshot:
    return BookSnapshot(IID, 1, 1, np.array([[99.0, 1.0]]), np.array([[101.0, 1.0]]), seq)


def rule_after(seq: int) -> OkxRule:
    rule = OkxRule("t")
    rule.reset(snap(seq))
    return rule


# ----------------------------------------------------------------------------- checksum


def test_checksum_of_the_docs_example_with_fewer_than_25_bids() -> None:
    expected = zlib.crc32(b"3366.1:7:3366.8:9:3368:8:3372:8")
    expected -= 1 << 32 if expected >= 1 << 31 else 0
    assert okx_checksum([("3366.1", "7")], [("3366.8", "9"), ("3368", "8"), ("3372", "8")]) == expected


def test_checksum_uses_raw_strings_not_floats() -> None:
    a = okx_checksum([("0.5000", "1")], [("0.6", "1")])
    b = okx_checksum([("0.5", "1")], [("0.6", "1")])
    assert a != b


def test_checksum_covers_only_the_top_25_levels() -> None:
    bids = [(str(100 - i), "1") for i in range(30)]
    asks = [(str(200 + i), "1") for i in range(30)]
    assert okx_checksum(bids, asks) == okx_checksum(bids[:25], asks[:25])
    assert okx_checksum(bids, asks) != okx_checksum(bids[:24], asks[:25])


def test_checksum_of_more_asks_than_bids_appends_the_extra_asks() -> None:
    expected = zlib.crc32(b"1:2:3:4:5:6")
    expected -= 1 << 32 if expected >= 1 << 31 else 0
    assert okx_checksum([("1", "2")], [("3", "4"), ("5", "6")]) == expected
    assert okx_checksum([("3", "4"), ("5", "6")], [("1", "2")]) == okx_checksum([("3", "4"), ("5", "6")], [("1", "2")])


def test_checksum_is_a_signed_32_bit_integer_like_okx_sends() -> None:
    frames = capture()
    t, raw = frames[book_frames(frames)[0]]
    sent = json.loads(raw)["data"][0]["checksum"]
    parser = OkxParser()
    assert [type(m) for m in parser.parse_frame(raw, t)] == [BookSnapshot]
    assert parser.book(INST).rule.checked == 1  # type: ignore[union-attr]
    assert okx_checksum(*state(parser)) == sent
    assert -(1 << 31) <= sent < (1 << 31)


# ----------------------------------------------------------------------------- sequence rule


def test_sequence_normal_update_continues_the_chain() -> None:
    assert rule_after(10).check(delta(15, 10, bids=[[98.0, 1.0]])) is Verdict.APPLY


def test_sequence_heartbeat_with_same_ids_and_no_levels_is_dropped() -> None:
    assert rule_after(15).check(delta(15, 15)) is Verdict.DROP


def test_sequence_reset_with_smaller_seq_is_accepted() -> None:
    assert rule_after(15).check(delta(3, 15, asks=[[102.0, 1.0]])) is Verdict.APPLY


def test_sequence_gap_is_reported_with_both_ids() -> None:
    rule = rule_after(15)
    d = delta(20, 14, bids=[[98.0, 1.0]])
    assert rule.check(d) is Verdict.GAP
    assert "prevSeqId 14 != last seqId 15" in rule.gap_reason(d)


def test_sequence_heartbeat_after_a_lost_message_is_a_gap() -> None:
    assert rule_after(15).check(delta(14, 14)) is Verdict.GAP


def test_sequence_same_ids_with_levels_is_a_gap() -> None:
    rule = rule_after(15)
    d = delta(15, 15, bids=[[98.0, 1.0]])
    assert rule.check(d) is Verdict.GAP
    assert "carries 1 levels" in rule.gap_reason(d)


def test_sequence_absent_ids_are_not_checked() -> None:
    rule = rule_after(-1)
    assert rule.check(delta(-1, -1, bids=[[98.0, 1.0]])) is Verdict.APPLY
    assert rule.check(delta(-1, -1)) is Verdict.DROP


def test_docs_sequence_example_end_to_end() -> None:
    out: list = []
    sync = BookSync(IID, OkxRule("t"), out.append, emit_quotes=False, snapshots_in_stream=True)
    sync.on_snapshot(BookSnapshot(IID, 1, 1, np.array([[99.0, 1.0]]), np.array([[101.0, 1.0]]), 10))
    sync.on_delta(delta(15, 10, asks=[[102.0, 1.0]]))
    sync.on_delta(delta(15, 15))
    sync.on_delta(delta(3, 15, bids=[[98.0, 2.0]]))
    sync.on_delta(delta(5, 3, asks=[[101.0, 0.0]]))
    assert sync.synced and sync.rule.last == 5  # type: ignore[attr-defined]
    assert sync.book.bids().tolist() == [[99.0, 1.0], [98.0, 2.0]] and sync.book.asks().tolist() == [[102.0, 1.0]]
    assert [type(m) for m in out] == [BookSnapshot, BookDelta, BookDelta, BookDelta]  # no message for the heartbeat
    sync.on_delta(delta(9, 7, asks=[[103.0, 1.0]]))
    assert not sync.synced and "prevSeqId 7 != last seqId 5" in (sync.failure or "")


# ----------------------------------------------------------------------------- parser: book failures


def test_update_before_snapshot_is_dropped_and_asks_for_a_snapshot() -> None:
    parser = OkxParser()
    assert parser.parse_frame(frame("update", [["101", "1"]], [], 11, 10), 1) == []
    assert parser.resync_requests == [(KEY, "update before any snapshot")]
    assert not parser.book_in_sync(INST) and parser.books.dropped == 1


def test_crossed_update_stops_the_book_until_a_snapshot() -> None:
    parser = OkxParser(verify_checksum=False)
    parser.parse_frame(frame("snapshot", [["101", "1"]], [["99", "1"]], 10, -1), 1)
    out = parser.parse_frame(frame("update", [], [["99", "0"], ["102", "1"]], 11, 10), 2)
    assert out == [] and not parser.book_in_sync(INST)
    assert "crossed book after delta seq=11: bid 102.0 >= ask 101.0" in parser.resync_requests[0][1]
    assert parser.parse_frame(frame("update", [["103", "1"]], [], 12, 11), 3) == []  # nothing while unsynced
    out = parser.parse_frame(frame("snapshot", [["101", "1"]], [["99", "2"]], 20, -1), 4)
    assert [type(m) for m in out] == [BookSnapshot, BookResynced] and "crossed" in out[1].reason
    assert parser.book(INST).book.bids().tolist() == [[99.0, 2.0]]  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", [["abc", "1"], ["-1", "1"], ["100", "inf"], ["100"], ["nan", "1"]])
def test_malformed_level_is_rejected_and_the_book_resyncs(bad: list[str]) -> None:
    parser = OkxParser(verify_checksum=False)
    parser.parse_frame(frame("snapshot", [["101", "1"]], [["99", "1"]], 10, -1), 1)
    update = json.loads(frame("update", [["100.5", "3"]], [], 11, 10))
    update["data"][0]["asks"].append(bad)
    with pytest.raises(ParseError, match="OKX"):
        parser.parse_frame(json.dumps(update), 2)
    assert not parser.book_in_sync(INST)
    assert parser.resync_requests[0][0] == KEY
    assert parser.book(INST).book.asks().tolist() == [[101.0, 1.0]]  # type: ignore[union-attr]


def test_zero_checksum_is_not_verified_after_okx_deprecation() -> None:
    parser = OkxParser()
    parser.parse_frame(frame("snapshot", [["101", "1"]], [["99", "1"]], 10, -1, checksum=0), 1)
    out = parser.parse_frame(frame("update", [["101", "2"]], [], 11, 10, checksum=0), 2)
    assert [type(m) for m in out] == [BookDelta]
    assert parser.book(INST).rule.checked == 0  # type: ignore[union-attr]


def test_wrong_checksum_on_update_emits_nothing_and_resyncs() -> None:
    parser = OkxParser()
    good = okx_checksum([("99", "1")], [("101", "1")])
    parser.parse_frame(frame("snapshot", [["101", "1"]], [["99", "1"]], 10, -1, checksum=good), 1)
    assert parser.parse_frame(frame("update", [["101", "2"]], [], 11, 10, checksum=12345), 2) == []
    assert not parser.book_in_sync(INST)
    ((key, reason),) = parser.resync_requests
    assert key == KEY and "!= OKX checksum 12345" in reason and "OKX BTC-USDT books" in reason


def test_update_missing_checksum_or_seq_fields_of_its_snapshot_is_rejected() -> None:
    for missing, message in (
        ("checksum", r"data\[0\]\.checksum: missing in an update"),
        ("seqId", r"data\[0\]\.seqId: seqId/prevSeqId missing in an update"),
    ):
        parser = OkxParser(verify_checksum=False)
        parser.parse_frame(frame("snapshot", [["101", "1"]], [["99", "1"]], 10, -1, checksum=5), 1)
        update = json.loads(frame("update", [["101", "2"]], [], 11, 10, checksum=7))
        del update["data"][0][missing]
        with pytest.raises(ParseError, match=message):
            parser.parse_frame(json.dumps(update), 2)
        assert not parser.book_in_sync(INST) and parser.resync_requests[0][1] == "malformed update"
        assert parser.book(INST).book.asks().tolist() == [[101.0, 1.0]]  # type: ignore[union-attr]


def test_snapshot_with_prev_seq_id_is_rejected() -> None:
    parser = OkxParser()
    with pytest.raises(ParseError, match=r"OKX books frame rejected: data\[0\]\.prevSeqId: 4: expected -1 in a snapshot"):
        parser.parse_frame(frame("snapshot", [["101", "1"]], [["99", "1"]], 10, 4), 1)
    assert not parser.book_in_sync(INST) and parser.resync_requests == [(KEY, "malformed snapshot")]


# ----------------------------------------------------------------------------- faults on real frames


def test_skipped_update_triggers_resync_and_a_fresh_snapshot_restores_the_book() -> None:
    frames = capture()
    idx = book_frames(frames)
    skip, resume = idx[20], idx[30]
    reference = OkxParser()
    replay(reference, frames[: resume])
    parser = OkxParser()
    replay(parser, frames[:skip])
    out = replay(parser, frames[skip + 1 : resume])
    assert parser.resync_requests and parser.resync_requests[0][0] == KEY
    assert "checksum" in parser.resync_requests[0][1]
    assert not parser.book_in_sync(INST)
    assert not any(isinstance(m, BookDelta) and m.instrument_id == IID for m in out[-5:])
    assert parser.books.dropped > 0
    # the client resubscribes; OKX answers with a fresh snapshot of the current book
    msgs = parser.parse_frame(snapshot_frame(reference, INST, 1652459230000), 1)
    assert [type(m) for m in msgs] == [BookSnapshot, BookResynced]
    assert msgs[1].instrument_id == IID and "checksum" in msgs[1].reason
    assert parser.book_in_sync(INST)
    replay(reference, frames[resume:])
    replay(parser, frames[resume:])
    assert state(parser) == state(reference)
    assert len(parser.resync_requests) == 1


def test_corrupted_size_fails_checksum_emits_nothing_and_resyncs() -> None:
    frames = capture()
    idx = book_frames(frames)
    k = idx[15]
    parser = OkxParser()
    replay(parser, frames[:k])
    frame_ = json.loads(frames[k][1])
    level = frame_["data"][0]["asks"][0] if frame_["data"][0]["asks"] else frame_["data"][0]["bids"][0]
    level[1] = str(float(level[1]) + 1.0) if float(level[1]) > 0 else "1.5"
    assert parser.parse_frame(json.dumps(frame_), frames[k][0]) == []
    assert not parser.book_in_sync(INST)
    reason = parser.resync_requests[0][1]
    assert "checksum" in reason and "OKX BTC-USDT books" in reason
    reference = OkxParser()
    replay(reference, frames[: k + 1])
    out = parser.parse_frame(snapshot_frame(reference, INST, 1), 2)
    assert [type(m) for m in out] == [BookSnapshot, BookResynced]
    assert state(parser) == state(reference)


def test_unknown_channel_between_book_frames_does_not_disturb_the_book() -> None:
    frames = capture()
    reference = OkxParser()
    replay(reference, frames)
    parser = OkxParser()
    noisy = []
    for t, raw in frames:
        noisy.append((t, '{"arg":{"channel":"liquidation-orders","instType":"SWAP"},"data":[{"x":1}]}'))
        noisy.append((t, raw))
    replay(parser, noisy)
    assert state(parser) == state(reference)
    assert parser.skipped["unknown_channel:liquidation-orders"] == len(frames)


def _mutate(raw: str, rng: random.Random) -> str:
    kind = rng.randrange(6)
    i = rng.randrange(len(raw))
    if kind == 0:
        return raw[:i] + raw[i + 1 :]
    if kind == 1:
        return raw[:i] + rng.choice('0123456789-.,"e[]{}:') + raw[i + 1 :]
    if kind == 2:
        return raw[:i]
    if kind == 3:
        digits = [j for j, ch in enumerate(raw) if ch.isdigit()]
        j = rng.choice(digits)
        return raw[:j] + str((int(raw[j]) + rng.randrange(1, 10)) % 10) + raw[j + 1 :]
    if kind == 4:
        return raw.replace('"0",', '"-1",', 1) if rng.random() < 0.5 else raw.replace('"asks"', '"akss"', 1)
    return raw.replace("update", "snapshot", 1) if rng.random() < 0.5 else raw.replace(":[[", ':[["x",', 1)


def test_fuzzed_real_frames_are_parsed_or_rejected_never_corrupting_the_book() -> None:
    frames = capture()
    rng = random.Random(20240517)
    parser = OkxParser()
    reference = OkxParser()
    rejected = accepted = served = 0
    emitted: list = []
    for t, raw in frames:
        reference.parse_frame(raw, t)
        if '"channel":"books"' in raw and '"action":"update"' in raw and rng.random() < 0.7:
            inst = json.loads(raw)["arg"]["instId"]
            sync = parser.book(inst)
            checked = sync.rule.checked if sync is not None else 0  # type: ignore[attr-defined]
            in_sync = parser.book_in_sync(inst)
            requests = len(parser.resync_requests)
            mutated = _mutate(raw, rng)
            try:
                out = parser.parse_frame(mutated, t)
            except ParseError as exc:
                assert "OKX" in str(exc)
                rejected += 1
                out = []
            sync = parser.book(inst)
            if any(isinstance(m, BookDelta) for m in out):
                # a book message is only emitted when the mutated frame passed the checksum
                assert sync.rule.checked == checked + 1  # type: ignore[union-attr]
                accepted += 1
            elif in_sync and len(parser.resync_requests) > requests:
                rejected += 1
            emitted += out
        # the true frame follows (duplicates are part of the test: a replayed update must not apply twice)
        try:
            emitted += parser.parse_frame(raw, t)
        except ParseError:
            pytest.fail(f"real frame rejected after fuzzing: {raw[:80]}")
        for key, _ in parser.resync_requests[served:]:
            served += 1  # the client resubscribes; OKX sends the current book
            emitted += parser.parse_frame(snapshot_frame(reference, key.partition(":")[2], 1), t)
        for inst in ("BTC-USD-220527", "UNI-USD-SWAP", INST):
            sync = parser.book(inst)
            if sync is not None and parser.book_in_sync(inst):
                assert sync.book.best_bid()[0] < sync.book.best_ask()[0]
                # the checksum covers the top 25 levels: they must match the true book exactly
                # (a mutated level deeper than that is undetectable by design of the OKX checksum)
                assert [lv[:25] for lv in state(parser, inst)] == [lv[:25] for lv in state(reference, inst)]
    assert rejected > 50 and served > 10
    resynced = [m for m in emitted if isinstance(m, BookResynced)]
    assert len(resynced) > 10


def test_book_after_resync_matches_reference_with_many_random_gaps() -> None:
    frames = capture()
    reference = OkxParser()
    rng = random.Random(7)
    parser = OkxParser()
    served = 0
    for t, raw in frames:
        reference.parse_frame(raw, t)
        if '"action":"update"' in raw and rng.random() < 0.05:
            continue  # lost frame
        parser.parse_frame(raw, t)
        for key, _ in parser.resync_requests[served:]:
            served += 1
            parser.parse_frame(snapshot_frame(reference, key.partition(":")[2], 1), t)
    for inst in ("BTC-USD-220527", "UNI-USD-SWAP", INST):
        assert state(parser, inst) == state(reference, inst)
        assert parser.book(inst).book.equals(reference.book(inst).book)  # type: ignore[union-attr]
    assert len(parser.resync_requests) >= 3


def test_a_quoting_book_quotes_no_top_a_wrong_checksum_gave_and_quotes_the_resync_snapshot() -> None:
    """A books stream that is its instrument's only quotes (57c1c907): an update with a wrong checksum that would
    move the top emits no Quote (the book resyncs); the snapshot that resyncs it quotes its top again."""
    parser = OkxParser()
    parser.books.quote_keys.add(KEY)
    good = okx_checksum([("99", "1")], [("101", "1")])
    first = parser.parse_frame(frame("snapshot", [["101", "1"]], [["99", "1"]], 10, -1, checksum=good), 1)
    assert [(q.bid_price, q.ask_price) for q in first if isinstance(q, Quote)] == [(99.0, 101.0)]
    assert parser.parse_frame(frame("update", [["100", "2"]], [], 11, 10, checksum=12345), 2) == []
    assert not parser.book_in_sync(INST)
    assert parser.parse_frame(frame("update", [["100.5", "1"]], [], 12, 11, checksum=1), 3) == []  # unsynced
    resynced = parser.parse_frame(frame("snapshot", [["101", "1"]], [["99", "1"]], 20, -1, checksum=good), 4)
    assert [type(m) for m in resynced] == [BookSnapshot, BookResynced, Quote]
    assert (resynced[2].bid_price, resynced[2].ask_price) == (99.0, 101.0)
