"""OKX book integrity: checksum, seqId rules, fault injection on real frames, fuzzing."""

from __future__ import annotations

import json
import random
import zlib
from pathlib import Path

import pytest

from tradebus.adapters.common.recorder import read_frames
from tradebus.adapters.okx.parse import OkxParser
from tradebus.adapters.okx.schemas import OkxBook
from tradebus.adapters.okx.sync import OkxBookSync, check_sequence, okx_checksum
from tradebus.engine.messages import BookDelta, BookResynced, BookSnapshot
from tradebus.errors import ChecksumMismatch, CrossedBook, ParseError, SequenceGap

FIX = Path(__file__).parent.parent / "fixtures" / "okx"
CAPTURE = FIX / "okx_v5_public_2022-05-13.jsonl.gz"
INST = "BTC-USDT"


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


def snapshot_frame(sync: OkxBookSync, inst: str, ts_ms: int) -> str:
    """An OKX books snapshot frame holding ``sync``'s book (raw strings, with its checksum)."""
    bids, asks = sync.state()
    data = {
        "asks": [[p, s, "0", "1"] for p, s in asks],
        "bids": [[p, s, "0", "1"] for p, s in bids],
        "ts": str(ts_ms),
        "checksum": sync.checksum(),
    }
    return json.dumps({"arg": {"channel": "books", "instId": inst}, "action": "snapshot", "data": [data]})


def book(asks: list[list[str]], bids: list[list[str]], seq: int | None, prev: int | None, checksum: int = 0) -> OkxBook:
    return OkxBook(asks=asks, bids=bids, ts=1, checksum=checksum, seqId=seq, prevSeqId=prev)


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


def test_checksum_is_a_signed_32_bit_integer_like_okx_sends() -> None:
    frames = capture()
    raw = frames[book_frames(frames)[0]][1]
    sent = json.loads(raw)["data"][0]["checksum"]
    sync = OkxBookSync("t")
    sync.apply_snapshot(OkxParser()._book.decode(json.dumps(json.loads(raw)["data"]))[0])
    assert sync.checksum() == sent
    assert -(1 << 31) <= sent < (1 << 31)


# ----------------------------------------------------------------------------- sequence rules


def test_sequence_normal_update_continues_the_chain() -> None:
    check_sequence(10, 10, 15, 3, "t")


def test_sequence_heartbeat_with_same_ids_and_no_levels_is_accepted() -> None:
    check_sequence(15, 15, 15, 0, "t")


def test_sequence_reset_with_smaller_seq_is_accepted() -> None:
    check_sequence(15, 15, 3, 2, "t")


def test_sequence_gap_raises() -> None:
    with pytest.raises(SequenceGap, match="prevSeqId 14 != last seqId 15"):
        check_sequence(15, 14, 20, 1, "t")


def test_sequence_same_ids_with_levels_raises() -> None:
    with pytest.raises(SequenceGap, match="carries 1 levels"):
        check_sequence(15, 15, 15, 1, "t")


def test_sequence_absent_ids_are_not_checked() -> None:
    check_sequence(None, None, None, 5, "t")
    check_sequence(15, None, None, 5, "t")


def test_docs_sequence_example_end_to_end() -> None:
    sync = OkxBookSync("t", verify_checksum=False)
    sync.apply_snapshot(book([["101", "1"]], [["99", "1"]], 10, -1))
    sync.apply_update(book([["102", "1"]], [], 15, 10))
    assert sync.apply_update(book([], [], 15, 15)) == ([], [])
    sync.apply_update(book([], [["98", "2"]], 3, 15))
    sync.apply_update(book([["101", "0"]], [], 5, 3))
    assert sync.last_seq == 5
    assert sync.state() == ([("99", "1"), ("98", "2")], [("102", "1")])
    with pytest.raises(SequenceGap):
        sync.apply_update(book([["103", "1"]], [], 9, 7))


def test_update_before_snapshot_is_a_gap() -> None:
    with pytest.raises(SequenceGap, match="before any snapshot"):
        OkxBookSync("t").apply_update(book([], [], 1, 0))


def test_crossed_update_is_rolled_back() -> None:
    sync = OkxBookSync("t", verify_checksum=False)
    sync.apply_snapshot(book([["101", "1"]], [["99", "1"]], 10, -1))
    before = sync.state()
    with pytest.raises(CrossedBook, match="best bid 102.0 >= best ask 101.0"):
        sync.apply_update(book([], [["99", "0"], ["102", "1"]], 11, 10))
    assert sync.state() == before and sync.last_seq == 10


def test_malformed_level_leaves_book_untouched() -> None:
    sync = OkxBookSync("t", verify_checksum=False)
    sync.apply_snapshot(book([["101", "1"]], [["99", "1"]], 10, -1))
    before = sync.state()
    for bad in (["abc", "1"], ["-1", "1"], ["100", "inf"], ["100"], ["nan", "1"]):
        with pytest.raises(ParseError):
            sync.apply_update(book([["100.5", "3"], bad], [], 11, 10))
        assert sync.state() == before


def test_zero_checksum_is_not_verified_after_okx_deprecation() -> None:
    sync = OkxBookSync("t")
    sync.apply_snapshot(book([["101", "1"]], [["99", "1"]], 10, -1, checksum=0))
    sync.apply_update(book([["101", "2"]], [], 11, 10, checksum=0))
    assert sync.checked == 0


def test_wrong_checksum_on_update_rolls_back() -> None:
    sync = OkxBookSync("t")
    sync.apply_snapshot(book([["101", "1"]], [["99", "1"]], 10, -1))
    before = sync.state()
    with pytest.raises(ChecksumMismatch, match="!= OKX checksum 12345"):
        sync.apply_update(book([["101", "2"]], [], 11, 10, checksum=12345))
    assert sync.state() == before and sync.last_seq == 10


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
    assert parser.resync_requests and parser.resync_requests[0][:2] == ("books", INST)
    assert "checksum" in parser.resync_requests[0][2]
    assert not parser.book_in_sync(INST)
    assert not any(isinstance(m, BookDelta) and m.instrument_id == f"{INST}.OKX" for m in out[-5:])
    assert parser.skipped["book_dropped"] > 0
    # the client resubscribes; OKX answers with a fresh snapshot of the current book
    fresh = snapshot_frame(reference.book(INST), INST, 1652459230000)
    msgs = parser.parse_frame(fresh, 1)
    assert [type(m) for m in msgs] == [BookSnapshot, BookResynced]
    assert msgs[1].instrument_id == f"{INST}.OKX" and "checksum" in msgs[1].reason
    assert parser.book_in_sync(INST)
    replay(reference, frames[resume:])
    replay(parser, frames[resume:])
    assert parser.book(INST).state() == reference.book(INST).state()
    assert len(parser.resync_requests) == 1


def test_corrupted_size_fails_checksum_rolls_back_and_resyncs() -> None:
    frames = capture()
    idx = book_frames(frames)
    k = idx[15]
    parser = OkxParser()
    replay(parser, frames[:k])
    before = parser.book(INST).state()
    frame = json.loads(frames[k][1])
    level = frame["data"][0]["asks"][0] if frame["data"][0]["asks"] else frame["data"][0]["bids"][0]
    level[1] = str(float(level[1]) + 1.0) if float(level[1]) > 0 else "1.5"
    assert parser.parse_frame(json.dumps(frame), frames[k][0]) == []
    assert parser.book(INST).state() == before
    reason = parser.resync_requests[0][2]
    assert "checksum" in reason and "OKX BTC-USDT books" in reason
    out = parser.parse_frame(snapshot_frame(parser.book(INST), INST, 1), 2)
    assert [type(m) for m in out] == [BookSnapshot, BookResynced]


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
    assert parser.book(INST).state() == reference.book(INST).state()
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
    return raw.replace("update", "snapshot", 1) if rng.random() < 0.5 else raw.replace(":[[", ":[[\"x\",", 1)


def test_fuzzed_real_frames_are_parsed_or_rejected_never_corrupting_the_book() -> None:
    frames = capture()
    rng = random.Random(20240517)
    parser = OkxParser()
    reference = OkxParser()
    rejected = accepted = served = 0
    for t, raw in frames:
        reference.parse_frame(raw, t)
        if '"channel":"books"' in raw and '"action":"update"' in raw and rng.random() < 0.7:
            inst = json.loads(raw)["arg"]["instId"]
            sync = parser.book(inst)
            before = sync.state() if sync is not None else None
            checked = sync.checked if sync is not None else 0
            in_sync = parser.book_in_sync(inst)
            requests = len(parser.resync_requests)
            mutated = _mutate(raw, rng)
            try:
                parser.parse_frame(mutated, t)
            except ParseError as exc:
                assert "OKX" in str(exc)
                rejected += 1
            sync = parser.book(inst)
            if sync.state() != before:
                # a changed book is only allowed when the mutated frame passed the checksum,
                # or it was a (valid) snapshot that replaced the book
                assert sync.checked == checked + 1 or '"action":"snapshot"' in mutated
                accepted += 1
            elif in_sync and len(parser.resync_requests) > requests:
                rejected += 1
        # the true frame follows (duplicates are part of the test: a replayed update must not apply twice)
        try:
            parser.parse_frame(raw, t)
        except ParseError:
            pytest.fail(f"real frame rejected after fuzzing: {raw[:80]}")
        for _, inst, _ in parser.resync_requests[served:]:
            served += 1  # the client resubscribes; OKX sends the current book
            parser.parse_frame(snapshot_frame(reference.book(inst), inst, 1), t)
        for inst in ("BTC-USD-220527", "UNI-USD-SWAP", INST):
            sync = parser.book(inst)
            if sync is not None and parser.book_in_sync(inst):
                assert sync.best_bid() < sync.best_ask()
                # the checksum covers the top 25 levels: they must match the true book exactly
                # (a mutated level deeper than that is undetectable by design of the OKX checksum)
                ref = reference.book(inst)
                assert sync.bids.top_raw(25) == ref.bids.top_raw(25)
                assert sync.asks.top_raw(25) == ref.asks.top_raw(25)
    assert rejected > 50 and served > 10


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
        for _, inst, _ in parser.resync_requests[served:]:
            served += 1
            parser.parse_frame(snapshot_frame(reference.book(inst), inst, 1), t)
    for inst in ("BTC-USD-220527", "UNI-USD-SWAP", INST):
        assert parser.book(inst).state() == reference.book(inst).state()
    assert len(parser.resync_requests) >= 3


def test_update_missing_checksum_or_seq_fields_of_its_snapshot_is_rejected() -> None:
    sync = OkxBookSync("t", verify_checksum=False)
    sync.apply_snapshot(book([["101", "1"]], [["99", "1"]], 10, -1, checksum=5))
    before = sync.state()
    with pytest.raises(ParseError, match="without 'checksum'"):
        sync.apply_update(OkxBook(asks=[["101", "2"]], bids=[], ts=1, checksum=None, seqId=11, prevSeqId=10))
    with pytest.raises(ParseError, match="without 'seqId'"):
        sync.apply_update(OkxBook(asks=[["101", "2"]], bids=[], ts=1, checksum=7, seqId=None, prevSeqId=None))
    assert sync.state() == before
