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
from tradebus.adapters.bybit.sync import BybitRule, is_snapshot
from tradebus.adapters.common.policy import SubscriptionRejected
from tradebus.adapters.common.recorder import read_frames
from tradebus.adapters.common.sync import Verdict
from tradebus.engine.messages import Bar, BookDelta, BookResynced, BookSnapshot, FundingRate, MarkPrice, Quote, Trade
from tradebus.errors import ConfigError, ParseError

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


def state(parser: BybitParser, topic: str) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """Every level of the book of ``topic``, best first."""
    sync = parser.book(topic)
    assert sync is not None
    return [tuple(r) for r in sync.book.bids().tolist()], [tuple(r) for r in sync.book.asks().tolist()]


def last_u(parser: BybitParser, topic: str) -> int:
    sync = parser.book(topic)
    assert sync is not None
    return sync.book.last_seq


def snapshot_frame(parser: BybitParser, topic: str, u: int, ts: int = 1) -> str:
    bids, asks = state(parser, topic)
    data = {"s": topic.rsplit(".", 1)[1], "b": [[repr(p), repr(s)] for p, s in bids],
            "a": [[repr(p), repr(s)] for p, s in asks], "u": u, "seq": 1}
    return json.dumps({"topic": topic, "type": "snapshot", "ts": ts, "data": data})


def book_frame(kind: str, u: int, b: list[list[str]], a: list[list[str]], topic: str = "orderbook.50.X") -> str:
    data = {"s": topic.rsplit(".", 1)[1], "b": b, "a": a, "u": u, "seq": 1}
    return json.dumps({"topic": topic, "type": kind, "ts": u, "data": data})


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
    book = parser.book("orderbook.500.XRPUSDT").book
    assert (book.n_bids, book.n_asks) == (500, 500)
    assert book.best_bid()[0] < book.best_ask()[0]


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


def test_a_ticker_funding_rate_beyond_every_venues_cap_is_refused_alone_and_warned_of_once(logs: list[str]) -> None:
    frames = capture("linear")
    parser = BybitParser("linear")
    parser.parse_frame(frames[topic_frames(frames, "tickers.BTCUSDT")[0]][1], 1)
    iid = "BTCUSDT-LINEAR.BYBIT"
    bad = '{"topic":"tickers.BTCUSDT","type":"delta","data":{"symbol":"BTCUSDT","fundingRate":"0.5","markPrice":"%s","bid1Price":"65114.1"},"cs":1,"ts":%d}'
    first = parser.parse_frame(bad % ("65120.5", 1786310820000), 3)
    assert first == [
        Quote(iid, 1786310820000 * MS, 3, 65114.1, 5.954, 65114.3, 10.47),
        MarkPrice(iid, 1786310820000 * MS, 3, 65120.5, 65137.76),
    ]
    # the old rate is not the next funding's: a push of the next funding time alone announces no funding
    nxt = '{"topic":"tickers.BTCUSDT","type":"delta","data":{"symbol":"BTCUSDT","nextFundingTime":"1786348800000"},"cs":1,"ts":1786310821000}'
    assert parser.parse_frame(nxt, 4) == []
    assert [type(m) for m in parser.parse_frame(bad % ("65121.5", 1786310822000), 5)] == [Quote, MarkPrice]
    good = '{"topic":"tickers.BTCUSDT","type":"delta","data":{"symbol":"BTCUSDT","fundingRate":"0.0002"},"cs":1,"ts":1786310823000}'
    assert parser.parse_frame(good, 6) == [FundingRate(iid, 1786310823000 * MS, 6, 0.0002, 1786348800000 * MS)]
    refusals = [m for m in logs if "refused:" in m]
    assert len(refusals) == 1 and refusals[0].startswith(f"bybit linear {iid}: funding rate 0.5 refused: it is not a plausible")
    assert f"bybit linear {iid}: funding rate 0.0002 plausible again, 2 implausible rate(s) refused before it" in logs


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


def test_ticker_push_on_the_fast_path_names_the_bad_field_of_the_whole_push() -> None:
    # the route exists after the snapshot: later pushes take the raw-``data`` decode,
    # whose errors must still carry their path from the top of the push
    parser = BybitParser("linear")
    parser.parse_frame('{"topic":"tickers.X","type":"snapshot","ts":1,"data":{"symbol":"X","bid1Price":"1","bid1Size":"1","ask1Price":"2","ask1Size":"1"}}', 1)
    before = parser.ticker("X")
    with pytest.raises(ParseError, match=r"tickers\.X frame rejected: data: Expected `object`, got `array`"):
        parser.parse_frame('{"topic":"tickers.X","type":"delta","ts":2,"data":[{"symbol":"X","bid1Price":"3"}]}', 2)
    with pytest.raises(ParseError, match=r"tickers\.X frame rejected: ts: Expected `int` >= 0"):
        parser.parse_frame('{"topic":"tickers.X","type":"delta","ts":-2,"data":{"symbol":"X","bid1Price":"3"}}', 2)
    assert parser.ticker("X") == before


def test_unknown_topic_and_control_frames(logs: list[str]) -> None:
    parser = BybitParser("linear")
    assert parser.parse_frame('{"topic":"allLiquidation.BTCUSDT","type":"snapshot","ts":1,"data":[]}', 1) == []
    assert parser.skipped["unknown_topic:allLiquidation"] == 1
    assert any("allLiquidation" in line for line in logs)
    assert parser.parse_frame('{"success":true,"ret_msg":"pong","conn_id":"x","req_id":"","op":"ping"}', 1) == []
    assert parser.parse_frame('{"op":"pong","args":["1675418560633"],"conn_id":"x"}', 1) == []
    failure = (FIX / "ws_subscription_failure.json").read_text()
    with pytest.raises(SubscriptionRejected, match="Bybit linear rejected a subscribe: 'Invalid topic: invalid.topic.BTCUSDT'"):
        parser.parse_frame(failure, 1)


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


def delta(u: int) -> BookDelta:
    empty = np.empty((0, 2))
    return BookDelta("X.BYBIT", 1, 1, empty, np.array([[100.0, 1.0]]), u, u, u - 1)


def test_update_id_rule() -> None:
    rule = BybitRule("t")
    rule.reset(BookSnapshot("X.BYBIT", 1, 1, np.array([[99.0, 1.0]]), np.array([[101.0, 1.0]]), 10))
    assert rule.check(delta(11)) is Verdict.APPLY
    for u in (10, 12, 9):
        assert rule.check(delta(u)) is Verdict.GAP
        assert f"u={u} after u=10, expected u=11" in rule.gap_reason(delta(u))
    assert "repeated" in rule.gap_reason(delta(10)) and "missing" in rule.gap_reason(delta(12))


def test_u_equal_1_or_snapshot_type_replaces_the_book() -> None:
    assert is_snapshot("snapshot", 500) and is_snapshot("delta", 1)
    assert not is_snapshot("delta", 2)


def test_crossed_delta_stops_the_book_until_a_snapshot() -> None:
    parser = BybitParser("linear")
    parser.parse_frame(book_frame("snapshot", 5, [["99", "1"]], [["101", "1"]]), 1)
    assert parser.parse_frame(book_frame("delta", 6, [["101.5", "1"]], []), 2) == []
    assert not parser.book_in_sync("orderbook.50.X")
    assert "crossed book after delta seq=6" in parser.resync_requests[0][1]
    assert parser.parse_frame(book_frame("delta", 7, [["98", "1"]], []), 3) == []
    out = parser.parse_frame(book_frame("snapshot", 9, [["99", "1"]], [["101", "2"]]), 4)
    assert [type(m) for m in out] == [BookSnapshot, BookResynced] and "crossed" in out[1].reason
    assert state(parser, "orderbook.50.X") == ([(99.0, 1.0)], [(101.0, 2.0)])


def test_crossed_snapshot_is_refused_and_asks_for_another() -> None:
    parser = BybitParser("linear")
    assert parser.parse_frame(book_frame("snapshot", 5, [["102", "1"]], [["101", "1"]]), 1) == []
    assert not parser.book_in_sync("orderbook.50.X")
    assert parser.resync_requests[0][0] == "orderbook.50.X" and "crossed" in parser.resync_requests[0][1]


def test_skipped_delta_triggers_resync_and_snapshot_restores() -> None:
    frames = capture("linear")
    deltas = topic_frames(frames, TOPIC, "delta")
    skip = deltas[50]
    reference = BybitParser("linear")
    replay(reference, frames[: deltas[60]])
    parser = BybitParser("linear")
    replay(parser, frames[:skip])
    out = replay(parser, frames[skip + 1 : deltas[60]])
    assert parser.resync_requests[0][0] == TOPIC
    assert "expected u=" in parser.resync_requests[0][1]
    assert not any(isinstance(m, BookDelta) and m.instrument_id == "BTCUSDT-LINEAR.BYBIT" for m in out)
    fresh = snapshot_frame(reference, TOPIC, last_u(reference, TOPIC))
    msgs = parser.parse_frame(fresh, 1)
    assert [type(m) for m in msgs] == [BookSnapshot, BookResynced]
    replay(reference, frames[deltas[60] :])
    replay(parser, frames[deltas[60] :])
    assert state(parser, TOPIC) == state(reference, TOPIC)


def test_snapshot_mid_stream_resets_the_book() -> None:
    frames = capture("linear")
    deltas = topic_frames(frames, TOPIC, "delta")
    parser = BybitParser("linear")
    replay(parser, frames[: deltas[30]])
    raw = json.dumps({"topic": TOPIC, "type": "snapshot", "ts": 5,
                      "data": {"s": "BTCUSDT", "b": [["60000", "1"]], "a": [["60001", "2"]], "u": last_u(parser, TOPIC),
                               "seq": 1}})
    msgs = parser.parse_frame(raw, 9)
    assert [type(m) for m in msgs] == [BookSnapshot]
    assert state(parser, TOPIC) == ([(60000.0, 1.0)], [(60001.0, 2.0)])
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
    assert state(parser, TOPIC) == ([(60000.0, 1.0)], [(60001.0, 2.0)])
    raw2 = raw.replace('"u": 1', '"u": 2').replace('"60000", "1"', '"60000", "0"').replace('"type": "delta"', '"type": "delta"')
    (delta,) = parser.parse_frame(raw2, 10)
    assert isinstance(delta, BookDelta) and state(parser, TOPIC) == ([], [(60001.0, 2.0)])


def test_garbled_frame_raises_and_leaves_book_untouched() -> None:
    frames = capture("linear")
    deltas = topic_frames(frames, TOPIC, "delta")
    parser = BybitParser("linear")
    replay(parser, frames[: deltas[5]])
    before = state(parser, TOPIC)
    raw = frames[deltas[5]][1]
    with pytest.raises(ParseError, match="orderbook.200.BTCUSDT"):
        parser.parse_frame(raw[: len(raw) // 2], 1)
    # the frame names its topic: the book knows it lost a message and resyncs at once
    assert parser.resync_requests == [(TOPIC, "undecodable book message")]
    assert state(parser, TOPIC) == before and not parser.book_in_sync(TOPIC)
    assert parser.parse_frame(frames[deltas[6]][1], 2) == []  # nothing until the fresh snapshot
    assert state(parser, TOPIC) == before and len(parser.resync_requests) == 1


def test_garbled_frame_without_a_readable_topic_is_detected_as_a_gap_by_the_next_delta() -> None:
    frames = capture("linear")
    deltas = topic_frames(frames, TOPIC, "delta")
    parser = BybitParser("linear")
    replay(parser, frames[: deltas[5]])
    before = state(parser, TOPIC)
    with pytest.raises(ParseError, match="Bybit frame"):
        parser.parse_frame(frames[deltas[5]][1].replace('"topic"', '"topi', 1), 1)
    assert parser.book_in_sync(TOPIC) and parser.resync_requests == []
    assert parser.parse_frame(frames[deltas[6]][1], 2) == []
    assert "expected u=" in parser.resync_requests[0][1]
    assert state(parser, TOPIC) == before and not parser.book_in_sync(TOPIC)


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
            previous_u = last_u(parser, topic)
            in_sync = parser.book_in_sync(topic)
            mutated = _mutate(raw, rng)
            try:
                out = parser.parse_frame(mutated, t)
            except ParseError as exc:
                assert "Bybit" in str(exc)
                rejected += 1
                out = []
            for m in out:
                # only an accepted delta (u continued) or a u == 1 reset is emitted
                assert isinstance(m, BookDelta) and in_sync and m.last_seq == previous_u + 1 or (
                    isinstance(m, BookSnapshot) and m.last_seq == 1
                )
            book = parser.book(topic).book
            if parser.book_in_sync(topic) and book.n_bids and book.n_asks:
                assert book.best_bid()[0] < book.best_ask()[0]
        try:
            parser.parse_frame(raw, t)
        except ParseError:
            pytest.fail(f"real frame rejected after fuzzing: {raw[:80]}")
        for topic, _ in parser.resync_requests[served:]:
            served += 1  # the client resubscribes; Bybit sends the current book
            if reference.book(topic) is not None:  # a mutated topic name has no real book behind it
                parser.parse_frame(snapshot_frame(reference, topic, last_u(reference, topic)), t)
    assert rejected > 100 and served > 10
    for topic in {json.loads(r)["topic"] for _, r in frames if '"topic":"orderbook' in r}:
        assert parser.book_in_sync(topic)
        assert state(parser, topic) == state(reference, topic)


def test_merged_ticker_equals_the_pushes_merged_with_json_loads_whenever_it_is_read() -> None:
    pushes = [raw for _, conn, raw in read_frames(CAPTURE) if conn == "linear" and '"topic":"tickers.' in raw]
    assert len(pushes) > 3 * 64  # more than the pushes kept unmerged, several times over
    parser = BybitParser(category="linear")
    expected: dict[str, dict] = {}
    rng = random.Random(7)
    for raw in pushes:
        msg = json.loads(raw)
        symbol = msg["topic"].split(".", 1)[1]
        if msg["type"] == "snapshot":
            expected[symbol] = {}
        expected.setdefault(symbol, {}).update(msg["data"])
        parser.parse_frame(raw, 0)
        if rng.random() < 0.03:  # read at random moments: what is merged so far, no more, no less
            assert parser.ticker(symbol) == expected[symbol]
    for symbol, fields in expected.items():
        assert parser.ticker(symbol) == fields


@pytest.mark.parametrize("topic", [TOPIC, "tickers.BTCUSDT"])
def test_a_book_or_ticker_push_without_ts_is_refused_not_stamped_at_the_epoch(topic: str) -> None:
    """Bybit's docs give every orderbook and tickers push a ``ts`` (ms, when its system made the data); one
    without it was decoded with ts 0 and its snapshot, delta or quote stamped 1970-01-01 (ts_event 0), which
    the liveness watchdog and a recording's catalog import then read as the venue's time."""
    frames = capture("linear")
    after = topic_frames(frames, TOPIC, "delta")[4]  # the book is built by then
    pushes = [i for i in topic_frames(frames, topic, "delta") if i > after]
    parser = BybitParser("linear")
    replay(parser, frames[: pushes[5]])
    before = state(parser, TOPIC)
    push = json.loads(frames[pushes[5]][1])
    del push["ts"]
    with pytest.raises(ParseError, match=rf"{topic}.*missing required field `ts`"):
        parser.parse_frame(json.dumps(push), 1)
    assert state(parser, TOPIC) == before
    if topic == TOPIC:  # a lost book message: the book resyncs, as for any undecodable one
        assert parser.resync_requests == [(TOPIC, "undecodable book message")] and not parser.book_in_sync(TOPIC)
    else:
        assert parser.resync_requests == [] and parser.book_in_sync(TOPIC)
    # the push as Bybit sent it is parsed, stamped with its ts
    stamped = [m.ts_event for m in parser.parse_frame(frames[pushes[5]][1], 1)]
    assert stamped == [] if topic == TOPIC else stamped and set(stamped) == {json.loads(frames[pushes[5]][1])["ts"] * MS}
