"""OKX parser on real recorded traffic and on the documented single-message fixtures."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from loguru import logger

from tradebus.adapters.common.policy import SubscriptionRejected
from tradebus.adapters.common.recorder import read_frames
from tradebus.adapters.okx.parse import OkxParser, candle_close_ms
from tradebus.engine.messages import Bar, BookDelta, BookSnapshot, FundingRate, MarkPrice, Quote, Trade
from tradebus.errors import ParseError

FIX = Path(__file__).parent.parent / "fixtures" / "okx"
CAPTURE = FIX / "okx_v5_public_2022-05-13.jsonl.gz"
MS = 1_000_000


def capture() -> list[tuple[int, str]]:
    return [(t, raw) for t, _, raw in read_frames(CAPTURE)]


def fixture_text(name: str) -> str:
    return (FIX / name).read_text()


def replay(parser: OkxParser, frames: list[tuple[int, str]]) -> list:
    out: list = []
    for recv_ns, raw in frames:
        out.extend(parser.parse_frame(raw, recv_ns))
    return out


@pytest.fixture
def logs():
    records: list[str] = []
    handler = logger.add(lambda m: records.append(m.record["message"]), level="DEBUG")
    yield records
    logger.remove(handler)


def test_capture_exact_counts_per_message_type() -> None:
    frames = capture()
    assert len(frames) == 410
    parser = OkxParser()
    counts = Counter(type(m).__name__ for m in replay(parser, frames))
    assert counts == {"BookDelta": 287, "BookSnapshot": 3, "Trade": 74, "Quote": 28}
    assert parser.resync_requests == []
    assert not parser.skipped


def test_capture_counts_per_instrument_and_type() -> None:
    counts = Counter((m.instrument_id, type(m).__name__) for m in replay(OkxParser(), capture()))
    assert counts == {
        ("BTC-USD-220527.OKX", "BookSnapshot"): 1,
        ("BTC-USD-220527.OKX", "BookDelta"): 98,
        ("UNI-USD-SWAP.OKX", "BookSnapshot"): 1,
        ("UNI-USD-SWAP.OKX", "BookDelta"): 92,
        ("BTC-USDT.OKX", "BookSnapshot"): 1,
        ("BTC-USDT.OKX", "BookDelta"): 97,
        ("BTC-USD-220527.OKX", "Trade"): 4,
        ("UNI-USD-SWAP.OKX", "Trade"): 1,
        ("BTC-USDT.OKX", "Trade"): 69,
        ("BTC-USD-220527.OKX", "Quote"): 2,
        ("UNI-USD-SWAP.OKX", "Quote"): 1,
        ("BTC-USDT.OKX", "Quote"): 25,
    }


def test_every_checksum_of_the_capture_passes() -> None:
    parser = OkxParser()
    replay(parser, capture())
    checked = {inst: parser.book(inst).rule.checked for inst in ("BTC-USD-220527", "UNI-USD-SWAP", "BTC-USDT")}
    # every snapshot and update carries a checksum and every one was verified: 290 in total
    assert checked == {"BTC-USD-220527": 99, "UNI-USD-SWAP": 93, "BTC-USDT": 98}
    assert all(parser.book_in_sync(inst) for inst in checked)


def test_first_trade_fields_and_times() -> None:
    frames = capture()
    recv_ns, raw = next((t, r) for t, r in frames if '"channel":"trades"' in r and '"data"' in r)
    (trade,) = OkxParser().parse_frame(raw, recv_ns)
    assert trade == Trade("BTC-USD-220527.OKX", 1652459199958 * MS, recv_ns, 30218.8, 1.0, 1, "7849")


def test_sell_trade_has_negative_aggressor() -> None:
    raw = '{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"9","px":"1.5","sz":"2","side":"sell","ts":"1"}]}'
    (trade,) = OkxParser().parse_frame(raw, 5)
    assert (trade.aggressor, trade.price, trade.size, trade.ts_event, trade.ts_init) == (-1, 1.5, 2.0, MS, 5)


def test_duplicate_trade_id_is_dropped_with_a_count() -> None:
    raw = '{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"9","px":"1.5","sz":"2","side":"sell","ts":"1"}]}'
    parser = OkxParser()
    assert len(parser.parse_frame(raw, 1)) == 1
    assert parser.parse_frame(raw, 2) == []
    assert parser.skipped["duplicate_trade"] == 1


def test_ticker_becomes_quote() -> None:
    (quote,) = OkxParser().parse_frame(json.dumps(json.loads(fixture_text("ws_bbo_tbt.json"))), 7)
    assert quote == Quote("BTC-USDT.OKX", 1597026383085 * MS, 7, 8476.97, 256.0, 8476.98, 415.0)
    frames = capture()
    recv_ns, raw = next((t, r) for t, r in frames if '"channel":"tickers"' in r and '"data"' in r)
    (quote,) = OkxParser().parse_frame(raw, recv_ns)
    assert quote == Quote("BTC-USD-220527.OKX", 1652459223003 * MS, recv_ns, 30210.4, 4.0, 30220.1, 3.0)


def test_every_ticker_of_the_capture_matches_stdlib_json_and_float() -> None:
    """The numeric fast path against an independent reading: ``json.loads`` and ``float()`` of the strings."""
    frames = [(t, r) for t, r in capture() if '"channel":"tickers"' in r and '"data"' in r]
    assert len(frames) > 20
    parser = OkxParser()
    for recv_ns, raw in frames:
        want = [
            Quote(
                f"{d['instId']}.OKX", int(d["ts"]) * MS, recv_ns,
                float(d["bidPx"]), float(d["bidSz"]), float(d["askPx"]), float(d["askSz"]),
            )
            for d in json.loads(raw)["data"]
        ]  # fmt: skip
        assert parser.parse_frame(raw, recv_ns) == want


def test_ticker_numbers_are_read_as_float_reads_them() -> None:
    """Prices and sizes of every shape (digits, exponents, leading zeros) round exactly as ``float()`` does."""
    rng = np.random.default_rng(7)
    texts = ["0.1", "1e-8", "30210.4", "4", "1E+3", "0.000000017", "123456789.123456789", "9007199254740993"]
    texts += [f"{m}e{e}" for m, e in zip(rng.integers(1, 10**17, 200), rng.integers(-20, 20, 200), strict=True)]
    texts += [f"{x:.{d}f}" for x, d in zip(rng.lognormal(5, 4, 200), rng.integers(0, 18, 200), strict=True)]
    texts = [t for t in texts if float(t) > 0.0]
    parser = OkxParser()
    for k, text in enumerate(texts):
        raw = json.dumps({"arg": {"channel": "tickers", "instId": "X-USDT"}, "data": [
            {"instId": "X-USDT", "ts": "1", "bidPx": text, "bidSz": text, "askPx": text, "askSz": "0"}
        ]})  # fmt: skip
        (quote,) = parser.parse_frame(raw, k)
        assert (quote.bid_price, quote.bid_size, quote.ask_price) == (float(text),) * 3, text


def test_bbo_levels_are_read_as_float_reads_them_and_an_empty_side_is_skipped() -> None:
    texts = ["8476.97", "256", "1e-8", "0.000000017", "123456789.123456789", "3E+2"]
    parser = OkxParser()
    for bid, size in zip(texts, reversed(texts), strict=True):
        raw = json.dumps({"arg": {"channel": "bbo-tbt", "instId": "BTC-USDT"}, "data": [
            {"asks": [["9000.5", size, "0", "1"]], "bids": [[bid, size, "0", "2"]], "ts": "5"},
            {"asks": [], "bids": [[bid, size, "0", "2"]], "ts": "6"},
        ]})  # fmt: skip
        assert parser.parse_frame(raw, 3) == [
            Quote("BTC-USDT.OKX", 5 * MS, 3, float(bid), float(size), 9000.5, float(size))
        ]
    assert parser.skipped["bbo_empty_side"] == len(texts)


def test_ticker_frame_with_one_empty_side_keeps_its_other_quotes() -> None:
    raw = json.dumps({"arg": {"channel": "tickers", "instId": "X-USDT"}, "data": [
        {"instId": "X-USDT", "ts": "1", "bidPx": "1.5", "bidSz": "2", "askPx": "1.6", "askSz": "3"},
        {"instId": "Y-USDT", "ts": "2", "bidPx": "", "bidSz": "", "askPx": "2", "askSz": "1"},
    ]})  # fmt: skip
    parser = OkxParser()
    assert parser.parse_frame(raw, 9) == [Quote("X-USDT.OKX", MS, 9, 1.5, 2.0, 1.6, 3.0)]
    assert parser.skipped["ticker_without_bbo"] == 1


def test_ticker_with_empty_side_yields_no_quote() -> None:
    raw = '{"arg":{"channel":"tickers","instId":"X-USDT"},"data":[{"instId":"X-USDT","bidPx":"","bidSz":"","askPx":"2","askSz":"1","ts":"1"}]}'
    parser = OkxParser()
    assert parser.parse_frame(raw, 1) == []
    assert parser.skipped["ticker_without_bbo"] == 1


def test_confirmed_candle_becomes_bar_stamped_at_close() -> None:
    (bar,) = OkxParser().parse_frame(fixture_text("ws_candle.json"), 3)
    start = 1597026383085
    assert bar == Bar("BTC-USDT.OKX", (start + 86_400_000) * MS, 3, 8533.02, 8553.74, 8527.17, 8548.26, 45247.0)


def test_a_swap_candle_volume_is_in_base_currency_as_the_catalog_stores_it() -> None:
    """The paper bars of BTC-USDT-SWAP carried ``vol`` (contracts of 0.01 BTC), 100 times the
    ``volCcy`` (BTC) a backtest reads from candles imported with ``tradebus data import-okx-candles``."""
    frame = json.loads(fixture_text("ws_candle.json"))
    frame["arg"]["instId"] = "BTC-USDT-SWAP"
    frame["data"][0][5:7] = ["52953.0", "529.53"]
    (bar,) = OkxParser().parse_frame(json.dumps(frame), 3)
    assert (bar.instrument_id, bar.volume) == ("BTC-USDT-SWAP.OKX", 529.53)


def test_unconfirmed_candle_is_skipped() -> None:
    frame = json.loads(fixture_text("ws_candle.json"))
    frame["data"][0][8] = "0"
    parser = OkxParser()
    assert parser.parse_frame(json.dumps(frame), 3) == []
    assert parser.skipped["unconfirmed_candle"] == 1


@pytest.mark.parametrize(
    ("start_iso_ms", "bar", "close_ms"),
    [
        (1_700_000_000_000, "1m", 1_700_000_060_000),
        (1_700_000_000_000, "4H", 1_700_014_400_000),
        (1_700_000_000_000, "1Wutc", 1_700_604_800_000),
        # 2024-02-01 00:00 HK (= 2024-01-31 16:00 UTC) -> 2024-03-01 00:00 HK (leap February)
        (1_706_716_800_000, "1M", 1_709_222_400_000),
        # 2024-01-01 00:00 UTC -> 2024-04-01 00:00 UTC
        (1_704_067_200_000, "3Mutc", 1_711_929_600_000),
        # 2024-01-01 00:00 HK -> 2024-07-01 00:00 HK; -> 2025-01-01 00:00 HK
        (1_704_038_400_000, "6M", 1_719_763_200_000),
        (1_704_038_400_000, "1Y", 1_735_660_800_000),
        # 2024-01-01 00:00 UTC -> 2025-01-01 00:00 UTC
        (1_704_067_200_000, "1Yutc", 1_735_689_600_000),
    ],
)
def test_candle_close_time_per_bar_size(start_iso_ms: int, bar: str, close_ms: int) -> None:
    assert candle_close_ms(start_iso_ms, bar) == close_ms


def test_candle_with_unknown_bar_size_raises() -> None:
    with pytest.raises(ParseError, match="1X"):
        candle_close_ms(0, "1X")


def test_funding_rate_message() -> None:
    (fr,) = OkxParser().parse_frame(fixture_text("ws_funding_rate.json"), 9)
    assert fr == FundingRate("BTC-USDT-SWAP.OKX", 1744590349506 * MS, 9, 0.0001, 1744590349506 * MS)


def test_a_funding_rate_beyond_every_venues_cap_is_refused_and_warned_of_once(logs: list[str]) -> None:
    raw = fixture_text("ws_funding_rate.json").replace('"fundingRate": "0.0001"', '"fundingRate": "-0.5"')
    parser = OkxParser()
    assert parser.parse_frame(raw, 9) == [] and parser.parse_frame(raw, 10) == []
    refusals = [m for m in logs if "refused:" in m]
    assert len(refusals) == 1 and refusals[0].startswith("okx BTC-USDT-SWAP.OKX: funding rate -0.5 refused: it is not a plausible")
    (fr,) = parser.parse_frame(fixture_text("ws_funding_rate.json"), 11)
    assert fr.rate == 0.0001 and parser.funding_rates.refused == {}


def test_mark_price_message() -> None:
    item = json.loads(fixture_text("http_get_mark_price.json"))["data"][0]
    raw = json.dumps({"arg": {"channel": "mark-price", "instId": item["instId"]}, "data": [item]})
    (mark,) = OkxParser().parse_frame(raw, 4)
    assert isinstance(mark, MarkPrice)
    assert (mark.instrument_id, mark.ts_event, mark.mark_price) == ("BTC-USDT-SWAP.OKX", 1744590349506 * MS, 84660.1)
    assert np.isnan(mark.index_price)


def test_book_messages_carry_float_levels_and_sequence_ids() -> None:
    parser = OkxParser(verify_checksum=False)
    snap = parser.parse_frame(fixture_text("ws_books_snapshot.json"), 1)[0]
    delta = parser.parse_frame(fixture_text("ws_books_update.json"), 2)[0]
    assert isinstance(snap, BookSnapshot) and isinstance(delta, BookDelta)
    assert snap.last_seq == 123456 and (delta.prev_seq, delta.last_seq) == (123456, 123457)
    assert snap.bids.dtype == np.float64 and snap.bids.shape == (8, 2)
    assert tuple(snap.asks[0]) == (8476.98, 415.0)


def test_unknown_channel_is_skipped_with_a_logged_reason(logs: list[str]) -> None:
    parser = OkxParser()
    raw = '{"arg":{"channel":"open-interest","instId":"BTC-USDT-SWAP"},"data":[{"oi":"1"}]}'
    assert parser.parse_frame(raw, 1) == []
    assert parser.parse_frame(raw, 2) == []
    assert parser.skipped["unknown_channel:open-interest"] == 2
    assert any("open-interest" in line and "skipping" in line for line in logs)


def test_events_and_pong_yield_nothing_and_an_error_event_is_a_rejected_subscription(logs: list[str]) -> None:
    parser = OkxParser()
    assert parser.parse_frame("pong", 1) == []
    assert parser.parse_frame('{"event":"subscribe","arg":{"channel":"books","instId":"BTC-USDT"}}', 1) == []
    with pytest.raises(SubscriptionRejected, match="OKX rejected a subscription: code 60012 'Invalid request'"):
        parser.parse_frame('{"event":"error","code":"60012","msg":"Invalid request"}', 1)


@pytest.mark.parametrize(
    "raw",
    [
        '{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"1","px":"nan","sz":"1","side":"buy","ts":"1"}]}',
        '{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"1","px":"-1","sz":"1","side":"buy","ts":"1"}]}',
        '{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"1","px":"1","sz":"1","side":"up","ts":"1"}]}',
        '{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","px":"1","sz":"1","side":"buy","ts":"1"}]}',
        '{"arg":{"channel":"tickers","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","bidPx":"x","bidSz":"1","askPx":"2","askSz":"1","ts":"1"}]}',
        '{"arg":{"channel":"tickers","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","bidPx":"nan","bidSz":"1","askPx":"2","askSz":"1","ts":"1"}]}',
        '{"arg":{"channel":"bbo-tbt","instId":"BTC-USDT"},"data":[{"asks":[["2","1","0","1"]],"bids":[["x","1","0","1"]],"ts":"1"}]}',
        '{"arg":{"channel":"bbo-tbt","instId":"BTC-USDT"},"data":[{"asks":[["2","1","0","1"]],"bids":[["-1","1","0","1"]],"ts":"1"}]}',
        '{"arg":{"channel":"tickers","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","bidPx":"1","bidSz":"-1","askPx":"2","askSz":"1","ts":"1"}]}',
        '{"arg":{"channel":"tickers","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","bidPx":"1","bidSz":"1","askPx":"inf","askSz":"1","ts":"1"}]}',
        '{"arg":{"channel":"candle1m","instId":"BTC-USDT"},"data":[["1","2","1","3","2","1","1","1","1"]]}',
        '{"arg":{"channel":"trades","instId":"BTC-USDT"}}',
        '{"no":"thing"}',
        "[1, 2",
        "",
    ],
)
def test_invalid_frame_raises_parse_error_naming_the_frame(raw: str) -> None:
    with pytest.raises(ParseError, match="OKX"):
        OkxParser().parse_frame(raw, 1)


def test_garbled_book_frame_raises_and_leaves_the_book_untouched() -> None:
    frames = capture()
    parser = OkxParser()
    books = [i for i, (_, r) in enumerate(frames) if '"channel":"books","instId":"BTC-USDT"' in r and '"data"' in r]
    cut = books[10]
    replay(parser, frames[:cut])
    sync = parser.book("BTC-USDT")
    before = sync.rule.raw_levels(sync.book)
    raw = frames[cut][1]
    with pytest.raises(ParseError, match="OKX books frame rejected") as err:
        parser.parse_frame(raw[: len(raw) // 2], frames[cut][0])
    assert '"instId":"BTC-USDT"' in str(err.value) and "truncated" in str(err.value)
    assert sync.rule.raw_levels(sync.book) == before and parser.book_in_sync("BTC-USDT")
    # the lost update is detected by the checksum of the next one, which asks for a resync
    assert parser.parse_frame(frames[books[11]][1], frames[books[11]][0]) == []
    assert parser.resync_requests[0][0] == "books:BTC-USDT"
    assert "checksum" in parser.resync_requests[0][1]
    assert not parser.book_in_sync("BTC-USDT")


def test_parse_frame_accepts_bytes_and_str_identically() -> None:
    frames = capture()
    a = replay(OkxParser(), frames)
    b = replay(OkxParser(), [(t, r.encode()) for t, r in frames])
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert type(x) is type(y)
        if isinstance(x, BookSnapshot | BookDelta):
            assert np.array_equal(x.bids, y.bids) and np.array_equal(x.asks, y.asks)
        else:
            assert x == y


def _trades_push(*items: tuple[int, int | None]) -> str:
    """A BTC-USDT ``trades`` push of ``(tradeId, count)`` elements (``count`` None: no such field, as ``trades-all``)."""
    data = [
        {"instId": "BTC-USDT", "tradeId": str(tid), "px": "100", "sz": "1", "side": "buy", "ts": "1"}
        | ({} if count is None else {"count": str(count)})
        for tid, count in items
    ]
    return json.dumps({"arg": {"channel": "trades", "instId": "BTC-USDT"}, "data": data})


def test_aggregated_trades_push_stands_for_count_ids_ending_at_its_trade_id() -> None:
    # OKX: "if tradeId = 123 and count = 3, the message aggregates the trades of tradeId = 123, 122, and 121"
    parser = OkxParser()
    out = parser.parse_frame(_trades_push((120, 1), (123, 3), (124, None)), 1)
    assert [m.trade_id for m in out] == ["120", "123", "124"] and parser.gaps.gaps == 0  # no ids skipped
    # 125..127 never came: the push of 128..129 is held until the history answer recovers them
    assert parser.parse_frame(_trades_push((129, 2)), 2) == []
    history = json.dumps(
        [{"instId": "BTC-USDT", "tradeId": str(i), "px": "99", "sz": "0.5", "side": "sell", "ts": "1"} for i in (127, 126, 125)]
    )
    out = parser.on_trades_answer(history, 3, "BTC-USDT")
    assert [(type(m).__name__, getattr(m, "trade_id", None), m.ts_init) for m in out] == [
        ("TradesMissed", None, 3), ("Trade", "125", 3), ("Trade", "126", 3), ("Trade", "127", 3), ("Trade", "129", 2),
    ]
    assert (out[0].first_id, out[0].last_id, out[0].recovered, out[0].lost) == (125, 127, 3, 0)
    assert out[0].revealed_ns == out[4].ts_event  # the time of the trade that revealed the gap


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [("tradeId", "12a", r"data\[0\]\.tradeId"), ("count", "0", r"data\[0\]\.count"), ("count", "x", r"data\[0\]\.count")],
)
def test_trade_with_a_bad_id_or_count_is_rejected_naming_the_field(field: str, value: str, error: str) -> None:
    frame = json.loads(_trades_push((5, 1)))
    frame["data"][0][field] = value
    parser = OkxParser()
    with pytest.raises(ParseError, match=error):
        parser.parse_frame(json.dumps(frame), 1)
    assert [m.trade_id for m in parser.parse_frame(_trades_push((5, 1)), 2)] == ["5"]  # nothing of it was applied
