"""Bybit parser and book rules on real recorded traffic: counts, u continuity, faults, fuzzing."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from loguru import logger

from tradebus.adapters.bybit.parse import BybitParser, instrument_symbol
from tradebus.adapters.bybit.schemas import BybitBook
from tradebus.adapters.bybit.sync import BybitBookSync, check_update_id
from tradebus.adapters.common.recorder import read_frames
from tradebus.engine.messages import Bar, BookDelta, BookResynced, BookSnapshot, FundingRate, MarkPrice, Quote, Trade
from tradebus.errors import ConfigError, CrossedBook, ParseError, SequenceGap

FIX = Path(__file__).parent.parent / "fixtures" / "bybit"
CAPTURE = FIX / "bybit_v5_public_2026-08-09.jsonl.gz"
OB500 = FIX / "bybit_xrpusdt_ob500_2024-12-01.jsonl.gz"
MS = 1_000_000
TOPIC = "orderbook.200.BTCUSDT"


def capture(conn: str) -> list[tuple[int, str]]:
    return [(t, raw) for t, c, raw in read_frames(CAPTURE) if c == conn]


def replay(parser: BybitParser, frames: list[tuple[int, str]]) -> list:
    out: list = []
    for recv_ns, raw in frames:
        out.extend(parser.parse_frame(raw, recv_ns))
    return out


def topic_frames(frames: list[tuple[int, str]], topic: str, kind: str | None = None) -> list[int]:
    tag = f'"topic":"{topic}"'
    return [i for i, (_, r) in enumerate(frames) if tag in r and (kind is None or f'"type":"{kind}"' in r)]


def snapshot_frame(sync: BybitBookSync, topic: str, u: int, ts: int = 1) -> str:
    bids, asks = sync.state()
    data = {"s": topic.rsplit(".", 1)[1], "b": [[repr(p), repr(s)] for p, s in bids],
            "a": [[repr(p), repr(s)] for p, s in asks], "u": u, "seq": 1}
    return json.dumps({"topic": topic, "type": "snapshot", "ts": ts, "data": data})


@pytest.fixture
def logs():
    records: list[str] = []
    handler = logger.add(lambda m: records.append(m.record["message"]), level="DEBUG")
    yield records
    logger.remove(handler)


@pytest.mark.parametrize(
    ("conn", "expected"),
    [
        ("linear", {"Bar": 4, "BookDelta": 1594, "BookSnapshot": 4, "FundingRate": 6, "MarkPrice": 138,
                    "Quote": 638, "Trade": 327}),
        ("spot", {"Bar": 2, "BookDelta": 548, "BookSnapshot": 2, "Trade": 20}),
    ],
)
def test_capture_exact_counts_per_message_type(conn: str, expected: dict[str, int]) -> None:
    parser = BybitParser(conn)
    counts = Counter(type(m).__name__ for m in replay(parser, capture(conn)))
    assert counts == expected
    assert parser.resync_requests == []
    assert set(parser.skipped) == {"unconfirmed_kline"}


def test_capture_frame_counts_per_connection() -> None:
    assert (len(capture("linear")), len(capture("spot"))) == (2546, 681)


@pytest.mark.parametrize("conn", ["linear", "spot"])
def test_update_ids_are_continuous_across_the_capture(conn: str) -> None:
    frames = capture(conn)
    parser = BybitParser(conn)
    msgs = replay(parser, frames)
    books = {m.instrument_id for m in msgs if isinstance(m, BookSnapshot)}
    for iid in books:
        snaps = [m for m in msgs if isinstance(m, BookSnapshot) and m.instrument_id == iid]
        deltas = [m for m in msgs if isinstance(m, BookDelta) and m.instrument_id == iid]
        assert len(snaps) == 1
        ids = [snaps[0].last_seq] + [d.last_seq for d in deltas]
        assert np.all(np.diff(ids) == 1)
    assert parser.resync_requests == []


def test_ob500_dump_snapshot_and_49_deltas() -> None:
    parser = BybitParser("linear")
    msgs = replay(parser, [(t, r) for t, _, r in read_frames(OB500)])
    assert Counter(type(m).__name__ for m in msgs) == {"BookSnapshot": 1, "BookDelta": 49}
    sync = parser.book("orderbook.500.XRPUSDT")
    assert (len(sync.bids), len(sync.asks)) == (500, 500)
    assert sync.best_bid() < sync.best_ask()


def test_instrument_ids_distinguish_spot_and_linear() -> None:
    assert BybitParser("spot").instrument_id("BTCUSDT") == "BTCUSDT.BYBIT"
    assert BybitParser("linear").instrument_id("BTCUSDT") == "BTCUSDT-LINEAR.BYBIT"
    with pytest.raises(ConfigError, match="inverse"):
        instrument_symbol("BTCUSD", "inverse")


def test_trade_fields_and_dedup_by_trade_id() -> None:
    frames = capture("linear")
    t, raw = frames[topic_frames(frames, "publicTrade.BTCUSDT")[0]]
    parser = BybitParser("linear")
    (trade,) = parser.parse_frame(raw, t)
    assert trade == Trade("BTCUSDT-LINEAR.BYBIT", 1786310819680 * MS, t, 65114.2, 0.004, -1,
                          "a9188a0a-82bc-50de-be60-03eedbe3cdd7")
    assert parser.parse_frame(raw, t + 1) == []
    assert parser.skipped["duplicate_trade"] == 1


def test_confirmed_kline_becomes_bar_at_close_time() -> None:
    frames = capture("linear")
    confirmed = [(t, r) for t, r in frames if '"topic":"kline.1.BTCUSDT"' in r and '"confirm":true' in r]
    t, raw = confirmed[0]
    k = json.loads(raw)["data"][0]
    (bar,) = BybitParser("linear").parse_frame(raw, t)
    assert bar == Bar("BTCUSDT-LINEAR.BYBIT", (k["end"] + 1) * MS, t, float(k["open"]), float(k["high"]),
                      float(k["low"]), float(k["close"]), float(k["volume"]))
    assert bar.ts_event == (k["start"] + 60_000) * MS


def test_ticker_delta_merges_into_snapshot() -> None:
    frames = capture("linear")
    tickers = topic_frames(frames, "tickers.BTCUSDT")
    parser = BybitParser("linear")
    snap = parser.parse_frame(frames[tickers[0]][1], 1)
    assert {type(m) for m in snap} == {Quote, MarkPrice, FundingRate}
    # second frame: delta with bid1/ask1 only -> one Quote from merged fields
    (quote,) = parser.parse_frame(frames[tickers[1]][1], 2)
    assert quote == Quote("BTCUSDT-LINEAR.BYBIT", 1786310817883 * MS, 2, 65114.2, 6.054, 65114.3, 10.486)
    # a delta carrying only bid1Size keeps the other three fields from earlier frames
    raw = '{"topic":"tickers.BTCUSDT","type":"delta","data":{"symbol":"BTCUSDT","bid1Size":"7.5"},"cs":1,"ts":1786310820000}'
    (quote,) = parser.parse_frame(raw, 3)
    assert (quote.bid_price, quote.bid_size, quote.ask_price, quote.ask_size) == (65114.2, 7.5, 65114.3, 10.486)
    assert parser.ticker("BTCUSDT")["fundingRate"] == "0.0001"


def test_ticker_snapshot_gives_mark_and_funding() -> None:
    frames = capture("linear")
    msgs = BybitParser("linear").parse_frame(frames[topic_frames(frames, "tickers.BTCUSDT")[0]][1], 1)
    mark = next(m for m in msgs if isinstance(m, MarkPrice))
    fund = next(m for m in msgs if isinstance(m, FundingRate))
    assert (mark.mark_price, mark.index_price) == (65117.44, 65137.76)
    assert (fund.rate, fund.next_funding_ns) == (0.0001, 1786320000000 * MS)


def test_bad_ticker_field_is_rejected_without_changing_the_merged_ticker() -> None:
    parser = BybitParser("linear")
    parser.parse_frame('{"topic":"tickers.X","type":"snapshot","ts":1,"data":{"symbol":"X","bid1Price":"1","bid1Size":"1","ask1Price":"2","ask1Size":"1"}}', 1)
    before = parser.ticker("X")
    with pytest.raises(ParseError, match="bid1Price"):
        parser.parse_frame('{"topic":"tickers.X","type":"delta","ts":2,"data":{"symbol":"X","bid1Price":"abc"}}', 2)
    assert parser.ticker("X") == before


def test_unknown_topic_and_control_frames(logs: list[str]) -> None:
    parser = BybitParser("linear")
    assert parser.parse_frame('{"topic":"allLiquidation.BTCUSDT","type":"snapshot","ts":1,"data":[]}', 1) == []
    assert parser.skipped["unknown_topic:allLiquidation"] == 1
    assert any("allLiquidation" in line for line in logs)
    assert parser.parse_frame('{"success":true,"ret_msg":"pong","conn_id":"x","req_id":"","op":"ping"}', 1) == []
    assert parser.parse_frame('{"op":"pong","args":["1675418560633"],"conn_id":"x"}', 1) == []
    failure = (FIX / "ws_subscription_failure.json").read_text()
    assert parser.parse_frame(failure, 1) == []
    assert any("Invalid topic" in line for line in logs)


@pytest.mark.parametrize(
    "raw",
    [
        "{\"topic\":\"publicTrade.BTCUSDT\",\"type\":\"snapshot\",\"ts\":1,\"data\":[{\"T\":1,\"s\":\"BTCUSDT\",\"S\":\"Buy\",\"v\":\"0\",\"p\":\"1\",\"i\":\"x\"}]}",
        "{\"topic\":\"publicTrade.BTCUSDT\",\"type\":\"snapshot\",\"ts\":1,\"data\":[{\"T\":1,\"s\":\"BTCUSDT\",\"S\":\"Up\",\"v\":\"1\",\"p\":\"1\",\"i\":\"x\"}]}",
        "{\"topic\":\"kline.1.BTCUSDT\",\"type\":\"snapshot\",\"ts\":1,\"data\":[{\"start\":0,\"end\":59999,\"interval\":\"1\",\"open\":\"2\",\"close\":\"2\",\"high\":\"1\",\"low\":\"1\",\"volume\":\"1\",\"confirm\":true}]}",
        "{\"topic\":\"publicTrade.BTCUSDT\",\"type\":\"snapshot\",\"ts\":1}",
        "{\"ts\":1}",
        "{\"topic\":\"publicTrade.BTCUSDT\",\"data\":[",
        "not json",
    ],
)
def test_invalid_frames_raise_parse_error_naming_the_frame(raw: str) -> None:
    with pytest.raises(ParseError, match="Bybit"):
        BybitParser("linear").parse_frame(raw, 1)


# --------------------------------------------------------------------------- book rules


def book(u: int, b: list[list[str]], a: list[list[str]]) -> BybitBook:
    return BybitBook(s="X", b=b, a=a, u=u)


def test_update_id_rule() -> None:
    check_update_id(10, 11, "t")
    for u in (10, 12, 9):
        with pytest.raises(SequenceGap, match=f"u={u} after u=10"):
            check_update_id(10, u, "t")
    with pytest.raises(SequenceGap, match="before any snapshot"):
        check_update_id(None, 5, "t")


def test_crossed_delta_is_rolled_back() -> None:
    sync = BybitBookSync("t")
    sync.apply_snapshot(book(5, [["99", "1"]], [["101", "1"]]))
    before = sync.state()
    with pytest.raises(CrossedBook, match="u=6"):
        sync.apply_delta(book(6, [["101.5", "1"]], []))
    assert sync.state() == before and sync.last_u == 5


def test_skipped_delta_triggers_resync_and_snapshot_restores() -> None:
    frames = capture("linear")
    deltas = topic_frames(frames, TOPIC, "delta")
    skip = deltas[50]
    reference = BybitParser("linear")
    replay(reference, frames[: deltas[60]])
    parser = BybitParser("linear")
    replay(parser, frames[:skip])
    out = replay(parser, frames[skip + 1 : deltas[60]])
    assert parser.resync_requests[0][:2] == (TOPIC, "BTCUSDT")
    assert "expected u=" in parser.resync_requests[0][2]
    assert not any(isinstance(m, BookDelta) and m.instrument_id == "BTCUSDT-LINEAR.BYBIT" for m in out)
    fresh = snapshot_frame(reference.book(TOPIC), TOPIC, reference.book(TOPIC).last_u)
    msgs = parser.parse_frame(fresh, 1)
    assert [type(m) for m in msgs] == [BookSnapshot, BookResynced]
    replay(reference, frames[deltas[60] :])
    replay(parser, frames[deltas[60] :])
    assert parser.book(TOPIC).state() == reference.book(TOPIC).state()


def test_snapshot_mid_stream_resets_the_book() -> None:
    frames = capture("linear")
    deltas = topic_frames(frames, TOPIC, "delta")
    parser = BybitParser("linear")
    replay(parser, frames[: deltas[30]])
    sync = parser.book(TOPIC)
    raw = json.dumps({"topic": TOPIC, "type": "snapshot", "ts": 5,
                      "data": {"s": "BTCUSDT", "b": [["60000", "1"]], "a": [["60001", "2"]], "u": sync.last_u, "seq": 1}})
    msgs = parser.parse_frame(raw, 9)
    assert [type(m) for m in msgs] == [BookSnapshot]
    assert parser.book(TOPIC).state() == ([(60000.0, 1.0)], [(60001.0, 2.0)])
    assert parser.resync_requests == []


def test_delta_with_u_equal_1_is_a_reset_snapshot() -> None:
    frames = capture("linear")
    deltas = topic_frames(frames, TOPIC, "delta")
    parser = BybitParser("linear")
    replay(parser, frames[: deltas[10]])
    raw = json.dumps({"topic": TOPIC, "type": "delta", "ts": 5,
                      "data": {"s": "BTCUSDT", "b": [["60000", "1"]], "a": [["60001", "2"]], "u": 1, "seq": 1}})
    (snap,) = parser.parse_frame(raw, 9)
    assert isinstance(snap, BookSnapshot) and snap.last_seq == 1
    assert parser.book(TOPIC).state() == ([(60000.0, 1.0)], [(60001.0, 2.0)])
    raw2 = raw.replace('"u": 1', '"u": 2').replace('"60000", "1"', '"60000", "0"').replace('"type": "delta"', '"type": "delta"')
    (delta,) = parser.parse_frame(raw2, 10)
    assert isinstance(delta, BookDelta) and parser.book(TOPIC).state() == ([], [(60001.0, 2.0)])


def test_garbled_frame_raises_and_leaves_book_untouched() -> None:
    frames = capture("linear")
    deltas = topic_frames(frames, TOPIC, "delta")
    parser = BybitParser("linear")
    replay(parser, frames[: deltas[5]])
    before = parser.book(TOPIC).state()
    raw = frames[deltas[5]][1]
    with pytest.raises(ParseError, match="orderbook.200.BTCUSDT"):
        parser.parse_frame(raw[: len(raw) // 2], 1)
    assert parser.book(TOPIC).state() == before
    # the lost delta shows up as a u gap on the next one
    parser.parse_frame(frames[deltas[6]][1], 2)
    assert "expected u=" in parser.resync_requests[0][2]
    assert parser.book(TOPIC).state() == before


def _mutate(raw: str, rng: random.Random) -> str:
    kind = rng.randrange(5)
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
    return raw.replace('"b":[[', '"b":[["-', 1) if rng.random() < 0.5 else raw.replace('"u":', '"u":9', 1)


def test_fuzzed_real_frames_are_parsed_or_rejected_never_corrupting_the_book() -> None:
    frames = capture("linear")
    rng = random.Random(11)
    parser = BybitParser("linear")
    reference = BybitParser("linear")
    rejected = served = 0
    for t, raw in frames:
        reference.parse_frame(raw, t)
        if '"topic":"orderbook' in raw and '"type":"delta"' in raw and rng.random() < 0.5:
            topic = json.loads(raw)["topic"]
            before = parser.book(topic).state()
            last_u = parser.book(topic).last_u
            mutated = _mutate(raw, rng)
            try:
                parser.parse_frame(mutated, t)
            except ParseError as exc:
                assert "Bybit" in str(exc)
                rejected += 1
            sync = parser.book(topic)
            if sync.state() != before:
                # only an accepted delta (u continued) or a u == 1 reset may change the book
                assert sync.last_u in (last_u + 1, 1)
            assert sync.best_bid() < sync.best_ask() or not len(sync.bids) or not len(sync.asks)
        try:
            parser.parse_frame(raw, t)
        except ParseError:
            pytest.fail(f"real frame rejected after fuzzing: {raw[:80]}")
        for topic, _, _ in parser.resync_requests[served:]:
            served += 1  # the client resubscribes; Bybit sends the current book
            ref = reference.book(topic)
            if ref is not None:  # a mutated topic name has no real book behind it
                parser.parse_frame(snapshot_frame(ref, topic, ref.last_u), t)
    assert rejected > 100 and served > 10
    for topic in {json.loads(r)["topic"] for _, r in frames if '"topic":"orderbook' in r}:
        assert parser.book(topic).state() == reference.book(topic).state()
