"""Binance parsers on real captured frames: values, exact counts per type, fuzzing."""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any

import numpy as np
import pytest

from tradebus.adapters.binance.client import BinanceRouter
from tradebus.adapters.binance.config import BinanceConfig, BinanceMarket
from tradebus.adapters.binance.parse import (
    StreamKind,
    parse_agg_trade,
    parse_book_ticker,
    parse_depth_snapshot,
    parse_depth_update,
    parse_kline,
    parse_mark_price,
    parse_trade,
    split_stream,
    stream_kind,
)
from tradebus.adapters.common.parsing import FrameError
from tradebus.engine.messages import (
    Bar,
    BookDelta,
    BookSnapshot,
    FundingRate,
    MarkPrice,
    Quote,
    Trade,
)
from tradebus.errors import ParseError

from .binance_testdata import CF_SPOT, CF_USDM, SPOT_CAPTURE, USDM_CAPTURE, capture, cryptofeed_frames

IID = "BTCUSDT.BINANCE"


def first(lines: list[tuple[int, str]], needle: str) -> tuple[int, str]:
    return next((ts, raw) for ts, raw in lines if needle in raw)


@pytest.fixture(scope="module")
def spot() -> list[tuple[int, str]]:
    return capture(SPOT_CAPTURE)


@pytest.fixture(scope="module")
def usdm() -> list[tuple[int, str]]:
    return capture(USDM_CAPTURE)


@pytest.fixture(scope="module")
def cf_usdm() -> list[tuple[int, str]]:
    return cryptofeed_frames(CF_USDM)


# ----------------------------------------------------------------- values


def test_parse_trade_spot(spot: list[tuple[int, str]]) -> None:
    ts, raw = first(spot, "@trade")
    t = parse_trade(raw, ts, IID)
    assert t == Trade(IID, 1723161255342_000_000, ts, 61837.63, 0.02, -1, "3735683259")


def test_parse_trade_usdm_buyer_taker(usdm: list[tuple[int, str]]) -> None:
    ts, raw = first(usdm, '"m":false')
    t = parse_trade(raw, ts, IID)
    data = json.loads(raw)["data"]
    assert t.aggressor == 1 and t.trade_id == str(data["t"]) and t.ts_event == data["T"] * 1_000_000
    assert t.price == float(data["p"]) and t.size == float(data["q"]) and t.ts_init == ts


def test_parse_agg_trade(cf_usdm: list[tuple[int, str]]) -> None:
    ts, raw = first(cf_usdm, "ctkusdt@aggTrade")
    t = parse_agg_trade(raw, ts, "CTKUSDT.BINANCE_USDM")
    assert t == Trade("CTKUSDT.BINANCE_USDM", 1626992741421_000_000, ts, 1.011, 10.0, 1, "16599292")


def test_parse_kline_open_gives_none_and_closed_gives_bar_at_close(cf_usdm: list[tuple[int, str]]) -> None:
    _, open_raw = first(cf_usdm, '"x":false')
    assert parse_kline(open_raw, 1, IID) is None
    ts, raw = first(cf_usdm, '"s":"SUSHIUSDT","k":{"t":1626992700000')
    closed = [r for _, r in cf_usdm if '"x":true' in r and "SUSHIUSDT" in r][0]
    bar = parse_kline(closed, ts, "SUSHIUSDT.BINANCE_USDM")
    assert bar == Bar("SUSHIUSDT.BINANCE_USDM", 1626992760000_000_000, ts, 7.608, 7.618, 7.607, 7.617, 3005.0)


def test_parse_book_ticker_spot_has_no_venue_time(spot: list[tuple[int, str]]) -> None:
    ts, raw = first(spot, "@bookTicker")
    q = parse_book_ticker(raw, ts, IID)
    assert q == Quote(IID, ts, ts, 61837.63, 3.78826, 61837.64, 1.54698)


def test_parse_book_ticker_usdm_uses_transaction_time(usdm: list[tuple[int, str]]) -> None:
    ts, raw = first(usdm, "@bookTicker")
    data = json.loads(raw)["data"]
    q = parse_book_ticker(raw, ts, IID)
    assert q.ts_event == data["T"] * 1_000_000 and q.bid_price == float(data["b"]) and q.ask_size == float(data["A"])


def test_parse_depth_update_spot(spot: list[tuple[int, str]]) -> None:
    ts, raw = first(spot, "@depth")
    delta = parse_depth_update(raw, ts, IID)
    data = json.loads(raw)["data"]
    assert (delta.first_seq, delta.last_seq, delta.prev_seq) == (50093239189, 50093239202, -1)
    assert delta.ts_event == 1723161255208_000_000
    assert delta.bids.dtype == np.float64 and delta.bids.shape == (len(data["b"]), 2)
    assert delta.bids[0].tolist() == [61737.63, 0.0] and delta.asks[0].tolist() == [61837.64, 1.54698]


def test_parse_depth_update_usdm_carries_pu(usdm: list[tuple[int, str]]) -> None:
    ts, raw = first(usdm, "@depth")
    data = json.loads(raw)["data"]
    delta = parse_depth_update(raw, ts, IID)
    assert delta.prev_seq == data["pu"] and delta.ts_event == data["T"] * 1_000_000


def test_parse_mark_price_gives_mark_and_funding(usdm: list[tuple[int, str]]) -> None:
    ts, raw = first(usdm, "@markPrice")
    mark, funding = parse_mark_price(raw, ts, IID)
    assert mark == MarkPrice(IID, 1680652701000_000_000, ts, 28147.27373413, 28159.75642857)
    assert funding == FundingRate(IID, 1680652701000_000_000, ts, 0.00002754, 1680652800000_000_000)


def test_parse_mark_price_without_funding_rate(usdm: list[tuple[int, str]]) -> None:
    _, raw = first(usdm, "@markPrice")
    mark, funding = parse_mark_price(raw.replace('"r":"0.00002754"', '"r":""'), 1, IID)
    assert funding is None and mark.mark_price == 28147.27373413


def test_parse_mark_price_refuses_a_funding_rate_that_is_no_number(usdm: list[tuple[int, str]]) -> None:
    _, raw = first(usdm, "@markPrice")
    with pytest.raises(FrameError, match=r"data.r: 'x': expected a number"):
        parse_mark_price(raw.replace('"r":"0.00002754"', '"r":"x"'), 1, IID)


def test_parse_depth_snapshot(spot: list[tuple[int, str]]) -> None:
    ts, raw = first(spot, '"lastUpdateId"')
    snap = parse_depth_snapshot(raw, ts, IID)
    assert snap.last_seq == 50093239218 and snap.ts_event == ts
    assert snap.bids.shape == (1000, 2) and snap.bids[0].tolist() == [61837.63, 3.78826]


def test_stream_kind_and_split_stream() -> None:
    assert stream_kind("btcusdt@depth@100ms") is StreamKind.DEPTH
    assert stream_kind("btcusdt@kline_1m") is StreamKind.KLINE
    assert stream_kind("btcusdt@markPrice@1s") is StreamKind.MARK_PRICE
    assert stream_kind("btcusdt@forceOrder") is None
    assert split_stream('{"stream":"btcusdt@trade","data":{}}') == "btcusdt@trade"
    assert split_stream(b'{"stream":"btcusdt@trade","data":{}}') == "btcusdt@trade"
    assert split_stream('{"result":null,"id":1}') is None


@pytest.mark.parametrize(
    ("mutation", "match"),
    [
        (lambda r: r.replace('"p":"61837.63000000"', '"p":"-1"'), r"data\.p: -1\.0: expected > 0"),
        (lambda r: r.replace('"p":"61837.63000000"', '"p":"abc"'), r"data\.p: Expected `float`, got `str` \(frame"),
        (lambda r: r.replace('"t":3735683259,', ""), r"data: Object missing required field `t`"),
        (lambda r: r[: len(r) // 2], r"\(frame\): Input data was truncated"),
    ],
)
def test_parse_trade_rejects_bad_frames_with_a_reason(spot: list[tuple[int, str]], mutation: Any, match: str) -> None:
    _, raw = first(spot, "@trade")
    with pytest.raises(FrameError, match=r"^Binance btcusdt@trade frame rejected: .*" + match):
        parse_trade(mutation(raw), 1, IID)


# ------------------------------------------------------- table test: counts


def run_feed(config: BinanceConfig, frames: list[tuple[int, str]], snapshot_symbol: str | None = None) -> Counter:
    out: list[Any] = []
    feed = BinanceRouter(config, out.append)
    recs = [
        (ts, f"rest:{snapshot_symbol}" if raw.startswith('{"lastUpdateId"') else "ws", raw) for ts, raw in frames
    ]
    feed.replay(recs)
    counts = Counter(type(m).__name__ for m in out)
    counts["rejected_unknown"] = feed.unknown
    return counts


def test_table_spot_capture_exact_counts_per_message_type(spot: list[tuple[int, str]]) -> None:
    cfg = BinanceConfig(symbols=["BTCUSDT"], channels=["trade", "bookTicker", "depth"])
    counts = run_feed(cfg, spot, "BTCUSDT")
    # 676 trade, 2939 bookTicker, 384 depth frames (2 dropped before the snapshot, 1 replayed into it)
    assert counts == Counter(
        {"Trade": 676, "Quote": 2939, "BookDelta": 381, "BookSnapshot": 1, "rejected_unknown": 0}
    )


def test_table_usdm_capture_exact_counts_per_message_type(usdm: list[tuple[int, str]]) -> None:
    cfg = BinanceConfig(
        market=BinanceMarket.USDM, symbols=["BTCUSDT"], channels=["trade", "bookTicker", "depth", "markPrice"],
        depth_speed="0ms",
    )
    counts = run_feed(cfg, usdm, "BTCUSDT")
    assert counts == Counter(
        {
            "Trade": 654,
            "Quote": 1702,
            "BookDelta": 1608,
            "BookSnapshot": 1,
            "MarkPrice": 35,
            "FundingRate": 35,
            "rejected_unknown": 0,
        }
    )


def test_table_cryptofeed_usdm_recording_exact_counts(cf_usdm: list[tuple[int, str]]) -> None:
    symbols = ["SUSHIUSDT", "AKROUSDT", "KEEPUSDT", "CTKUSDT"]
    cfg = BinanceConfig(
        market=BinanceMarket.USDM, symbols=symbols, channels=["aggTrade", "kline", "bookTicker"], depth_speed="100ms"
    )
    counts = run_feed(cfg, cf_usdm)
    # 764 depth@100ms frames are not subscribed here -> counted as unknown and skipped
    assert counts == Counter({"Trade": 91, "Bar": 4, "Quote": 613, "rejected_unknown": 764})


def test_table_every_depth_frame_of_cryptofeed_recordings_parses() -> None:
    n = Counter()
    for path in (CF_SPOT, CF_USDM):
        for ts, raw in cryptofeed_frames(path):
            if "@depth" in raw:
                assert isinstance(parse_depth_update(raw, ts, "X.BINANCE"), BookDelta)
                n[path.name] += 1
    assert n == Counter({CF_SPOT.name: 177, CF_USDM.name: 764})


# ------------------------------------------------------------------- fuzz


def mutate(raw: str, rng: random.Random, structural_only: bool = False) -> str:
    """A mutated copy of a real frame. ``structural_only`` avoids edits that yield a valid, different number."""
    kind = rng.choice((0, 3, 4, 5)) if structural_only else rng.randrange(6)
    if kind == 0:  # truncate
        return raw[: rng.randrange(len(raw))]
    if kind == 1:  # flip a character
        i = rng.randrange(len(raw))
        return raw[:i] + rng.choice('x0-9."}{,:') + raw[i + 1 :]
    if kind == 2:  # delete a character
        i = rng.randrange(len(raw))
        return raw[:i] + raw[i + 1 :]
    msg = json.loads(raw)
    data = msg.get("data", msg)
    key = rng.choice(sorted(data))
    if kind == 3:
        del data[key]
    elif kind == 4:
        data[key] = rng.choice([None, "", "NaN", "-1", "1e999", [], {}, True, 0, "inf"])
    else:  # mangle a level
        side = data.get("b") or data.get("bids")
        if isinstance(side, list) and side:
            side[rng.randrange(len(side))] = rng.choice([["nan", "1"], ["-5", "1"], ["1"], ["100", "-2"], []])
        else:
            data[key] = "garbage"
    return json.dumps(msg)


def test_fuzzed_real_frames_are_parsed_or_rejected_and_never_corrupt_the_book(spot: list[tuple[int, str]]) -> None:
    rng = random.Random(1234)
    cfg = BinanceConfig(symbols=["BTCUSDT"], channels=["trade", "bookTicker", "depth"])
    out: list[Any] = []
    feed = BinanceRouter(cfg, out.append)
    sync = feed.books["BTCUSDT"]
    outcomes = Counter()
    for ts, raw in spot[:1500]:
        if raw.startswith('{"lastUpdateId"'):
            feed.on_snapshot_frame(raw, ts, "BTCUSDT")
            continue
        frame = mutate(raw, rng) if rng.random() < 0.3 else raw
        before = len(out)
        try:
            feed.on_frame(frame, ts)
            outcomes["accepted"] += 1
        except ParseError as exc:
            assert str(exc)  # a reason is given
            outcomes["rejected"] += 1
            assert len(out) == before  # a rejected frame emits nothing
        book = sync.book
        if sync.synced:
            bids, asks = book.bids(), book.asks()
            assert np.all(np.diff(bids[:, 0]) < 0) and np.all(np.diff(asks[:, 0]) > 0)
            assert np.all(bids[:, 1] > 0) and np.all(asks[:, 1] > 0)
            assert np.all(np.isfinite(bids)) and np.all(np.isfinite(asks)) and not book.crossed()
    for m in out:
        if isinstance(m, (Trade, Quote)):
            values = (m.price, m.size) if isinstance(m, Trade) else (m.bid_price, m.ask_price)
            assert all(np.isfinite(v) and v > 0 for v in values)
    assert outcomes["rejected"] > 100 and outcomes["accepted"] > 1000


def test_fuzzed_depth_frames_never_leave_a_synced_book_different_from_a_clean_one(spot: list[tuple[int, str]]) -> None:
    """Structurally corrupted depth frames are refused atomically: while SYNCED, the book equals a clean rebuild.

    (A flipped digit that still reads as a valid number cannot be detected on Binance, which
    sends no checksum; such mutations are covered by the invariant test above.)
    """
    rng = random.Random(7)
    cfg = BinanceConfig(symbols=["BTCUSDT"], channels=["depth"])
    clean = BinanceRouter(cfg, lambda m: None)
    dirty = BinanceRouter(cfg, lambda m: None)
    for ts, raw in spot[:1500]:
        if raw.startswith('{"lastUpdateId"'):
            clean.on_snapshot_frame(raw, ts, "BTCUSDT")
            dirty.on_snapshot_frame(raw, ts, "BTCUSDT")
            continue
        if "@depth" not in raw:
            continue
        clean.on_frame(raw, ts)
        unattributable = dirty.unknown
        try:
            dirty.on_frame(mutate(raw, rng, structural_only=True) if rng.random() < 0.05 else raw, ts)
        except ParseError:
            pass
        # a frame cut before its stream name cannot be attributed to a book: the gap shows on the next diff
        sync = dirty.books["BTCUSDT"]
        if sync.synced and dirty.unknown == unattributable:
            assert sync.book.equals(clean.books["BTCUSDT"].book)
        elif not sync.synced and clean.books["BTCUSDT"].synced:
            # the venue would now serve a fresh snapshot: give it the clean book's state
            ref = clean.books["BTCUSDT"].book
            sync.on_snapshot(BookSnapshot(IID, 0, ts, ref.bids(), ref.asks(), ref.last_seq))
            assert sync.synced and sync.book.equals(ref)
    assert dirty.books["BTCUSDT"].resyncs >= 3  # corruption was caught (and recovered from) several times


def test_snapshot_parse_gives_book_snapshot_type(spot: list[tuple[int, str]]) -> None:
    ts, raw = first(spot, '"lastUpdateId"')
    assert isinstance(parse_depth_snapshot(raw.encode(), ts, IID), BookSnapshot)


def _with_level(raw: str, side: str, level: list[str]) -> str:
    msg = json.loads(raw)
    msg["data"][side] = msg["data"][side][:1] + [level] + msg["data"][side][1:]
    return json.dumps(msg)


@pytest.mark.parametrize(
    ("side", "level", "match"),
    [
        ("b", ["-61000.00", "1.0"], r"data\.b\[1\]: \[-61000.0, 1.0\]: expected price > 0"),
        ("a", ["NaN", "1.0"], r"data\.a\[1\]: \[nan, 1.0\]: expected price > 0"),
        ("b", ["61000.00", "-0.5"], r"data\.b\[1\]: \[61000.0, -0.5\]: expected price > 0 and size >= 0"),
        ("a", ["61000.00", "Infinity"], r"a\[1\]"),
        ("b", ["61000.00", "lots"], r"btcusdt@depth@100ms frame rejected: data\.b\[1\]\[1\]: Expected `float`"),
    ],
    ids=["negative-price", "nan-price", "negative-size", "inf-size", "unparsable-size"],
)
def test_depth_level_is_validated_at_parse_time_naming_stream_and_field(
    spot: list[tuple[int, str]], side: str, level: list[str], match: str
) -> None:
    ts, raw = first(spot, "@depth")
    with pytest.raises(ParseError, match=match) as info:
        parse_depth_update(_with_level(raw, side, level), ts, IID)
    assert "btcusdt@depth@100ms" in str(info.value)


def test_malformed_depth_frame_is_skipped_and_the_book_resyncs(spot: list[tuple[int, str]]) -> None:
    cfg = BinanceConfig(symbols=["BTCUSDT"], channels=["depth"])
    out: list[Any] = []
    feed = BinanceRouter(cfg, out.append)
    sync = feed.books["BTCUSDT"]
    bad_done = False
    for ts, raw in spot[:600]:
        if raw.startswith('{"lastUpdateId"'):
            feed.on_snapshot_frame(raw, ts, "BTCUSDT")
        elif "@depth" in raw:
            if sync.synced and not bad_done:
                before = len(out)
                with pytest.raises(ParseError, match=r"b\[1\]"):
                    feed.on_frame(_with_level(raw, "b", ["-1", "1"]), ts)
                assert len(out) == before and not sync.synced
                assert "unparseable depth frame" in (sync.failure or "")
                bad_done = True
                continue
            feed.on_frame(raw, ts)
    assert bad_done


def test_depth_snapshot_levels_are_validated(spot: list[tuple[int, str]]) -> None:
    ts, raw = first(spot, '"lastUpdateId"')
    msg = json.loads(raw)
    msg["asks"][2] = ["0", "1.0"]
    with pytest.raises(ParseError, match=r"Binance depth snapshot of BTCUSDT.BINANCE frame rejected: asks\[2\]: \[0.0, 1.0\]"):
        parse_depth_snapshot(json.dumps(msg), ts, IID)
