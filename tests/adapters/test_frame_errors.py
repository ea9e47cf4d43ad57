"""One way to reject a frame, for all three venues: a real captured book frame, garbled.

Each venue's parser must raise the same :class:`FrameError` (venue, channel, field) with
the message shape ``<venue> <channel> frame rejected: <field>: <problem> (frame '...')``,
and leave the book exactly as it was before the frame.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tradebus.adapters.binance.client import BinanceRouter
from tradebus.adapters.binance.config import BinanceConfig
from tradebus.adapters.bybit.parse import BybitParser
from tradebus.adapters.common.parsing import WHOLE_FRAME, FrameError
from tradebus.adapters.common.recorder import read_frames
from tradebus.adapters.common.sync import BookSync
from tradebus.adapters.okx.parse import OkxParser

from .binance_testdata import capture as binance_capture

FIX = Path(__file__).parent.parent / "fixtures"


@dataclass
class Venue:
    """A parser fed a real capture up to a book frame whose first bid is garbled."""

    name: str
    channel: str
    bid_path: str  # where the first bid of the frame lives, as FrameError names it
    frames: list[tuple[int, str]]
    parse: Callable[[str, int], Any]
    book: Callable[[], BookSync]
    first_bid: Callable[[dict], list]  # the first bid level of a decoded frame


def binance() -> Venue:
    frames = [(t, r) for t, r in binance_capture()[:800]]
    feed = BinanceRouter(BinanceConfig(symbols=["BTCUSDT"], channels=["depth"]), lambda m: None)

    def parse(raw: str, recv_ns: int) -> None:
        if raw.startswith('{"lastUpdateId"'):
            feed.on_snapshot_frame(raw, recv_ns, "BTCUSDT")
        elif "@depth" in raw:
            feed.on_frame(raw, recv_ns)

    return Venue("Binance", "btcusdt@depth@100ms", "data.b[0]", frames, parse, lambda: feed.books["BTCUSDT"],
                 lambda msg: msg["data"]["b"][0])


def bybit() -> Venue:
    frames = [(t, r) for t, c, r in read_frames(FIX / "bybit" / "bybit_v5_public_2026-08-09.jsonl.gz") if c == "linear"]
    parser = BybitParser("linear")
    topic = "orderbook.200.BTCUSDT"
    return Venue("Bybit", topic, "data.b[0]", frames, parser.parse_frame, lambda: parser.book(topic),
                 lambda msg: msg["data"]["b"][0])


def okx() -> Venue:
    frames = [(t, r) for t, _, r in read_frames(FIX / "okx" / "okx_v5_public_2022-05-13.jsonl.gz")]
    parser = OkxParser()
    return Venue("OKX", "books", "data[0].bids[0]", frames, parser.parse_frame, lambda: parser.book("BTC-USDT"),
                 lambda msg: msg["data"][0]["bids"][0])


def is_book_update(venue: Venue, raw: str) -> bool:
    if venue.name == "Binance":
        return raw.startswith('{"stream":"btcusdt@depth')
    if venue.name == "Bybit":
        return '"topic":"orderbook.200.BTCUSDT","type":"delta"' in raw
    return '"channel":"books","instId":"BTC-USDT"},"action":"update"' in raw


def levels(sync: BookSync) -> tuple[list, list, int]:
    return sync.book.bids().tolist(), sync.book.asks().tolist(), sync.book.last_seq


def up_to_a_synced_update_with_bids(venue: Venue) -> str:
    """Feed ``venue`` its capture until the book is synced; return the next update that has bids."""
    for recv_ns, raw in venue.frames:
        sync = venue.book()
        if sync is not None and sync.synced and is_book_update(venue, raw) and venue.first_bid(json.loads(raw)):
            return raw
        venue.parse(raw, recv_ns)
    raise AssertionError(f"{venue.name}: no synced book update with bids in the capture")


def bad_price(msg: dict, venue: Venue) -> None:
    venue.first_bid(msg)[0] = "-5"


def not_a_number(msg: dict, venue: Venue) -> None:
    venue.first_bid(msg)[1] = "lots"


def short_level(msg: dict, venue: Venue) -> None:
    del venue.first_bid(msg)[1:]


GARBLES = {
    # name: (change to the decoded frame or None to cut the raw text, field suffix, problem pattern)
    "truncated": (None, None, r"Input data was truncated"),
    # a venue whose schema constrains prices rejects the price itself, the others the level
    "negative-price": (bad_price, "", r"\[-5\.0(, [0-9.e+-]+)+\]: expected price > 0 and size >= 0, both finite"
                       r"|Expected `float` > 0(\.0)?"),
    "size-not-a-number": (not_a_number, "[1]", r"Expected `float`, got `str`"),
    "level-without-size": (short_level, "", r"Expected `array` of (at least )?length 2(, got 1)?|\['[0-9.]+'\]: expected \[price, size, \.\.\.\]"),
}


@pytest.mark.parametrize("make", [binance, bybit, okx], ids=["binance", "bybit", "okx"])
@pytest.mark.parametrize("garble", list(GARBLES))
def test_a_garbled_book_frame_gets_one_error_shape_and_leaves_the_book_as_it_was(
    make: Callable[[], Venue], garble: str
) -> None:
    venue = make()
    raw = up_to_a_synced_update_with_bids(venue)
    change, suffix, problem = GARBLES[garble]
    if change is None:
        bad, field = raw[: len(raw) // 2], WHOLE_FRAME
    else:
        msg = json.loads(raw)
        change(msg, venue)
        bad, field = json.dumps(msg, separators=(",", ":")), venue.bid_path + suffix
    sync = venue.book()
    before = levels(sync)
    with pytest.raises(FrameError) as info:
        venue.parse(bad, 1)
    err = info.value
    if garble == "negative-price":
        assert (err.venue, err.channel) == (venue.name, venue.channel) and err.field in (field, field + "[0]")
    else:
        assert (err.venue, err.channel, err.field) == (venue.name, venue.channel, field)
    shape = rf"^{re.escape(err.venue)}{' ' + re.escape(err.channel) if err.channel else ''} frame rejected: "
    assert re.match(shape + re.escape(err.field) + ": " + f"(?:{problem})" + r" \(frame '", str(err)), str(err)
    assert levels(sync) == before


#: Where each venue's book update carries its time and its sequence id, as FrameError names them.
BOOK_FIELDS = {
    "Binance": {"time": ("data", "E"), "id": ("data", "u")},
    "Bybit": {"time": ("ts",), "id": ("data", "u")},
    "OKX": {"time": ("data", 0, "ts"), "id": ("data", 0, "seqId")},
}


def field_name(path: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


@pytest.mark.parametrize("make", [binance, bybit, okx], ids=["binance", "bybit", "okx"])
@pytest.mark.parametrize(
    ("what", "value"),
    [("time", 2**63), ("time", -1_000), ("time", 4_102_444_800_000), ("id", 2**63)],
    ids=["time-past-int64", "negative-time", "time-in-2100", "id-past-int64"],
)
def test_a_book_update_with_a_time_or_id_no_message_can_hold_is_rejected_naming_it(
    make: Callable[[], Venue], what: str, value: int
) -> None:
    venue = make()
    raw = up_to_a_synced_update_with_bids(venue)
    msg = json.loads(raw)
    path = BOOK_FIELDS[venue.name][what]
    node = msg
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    sync = venue.book()
    before = levels(sync)
    with pytest.raises(FrameError) as info:
        venue.parse(json.dumps(msg, separators=(",", ":")), 1)
    assert (info.value.venue, info.value.channel, info.value.field) == (venue.name, venue.channel, field_name(path))
    assert levels(sync) == before


def test_trades_with_a_time_no_message_can_hold_are_rejected_naming_the_field() -> None:
    """One captured trade per venue, its time pushed past int64 ns or before 1970."""
    binance_trade = next(r for _, r in binance_capture() if r.startswith('{"stream":"btcusdt@trade"'))
    feed = BinanceRouter(BinanceConfig(symbols=["BTCUSDT"], channels=["trade"]), lambda m: None)
    bybit_trade = next(
        r for _, c, r in read_frames(FIX / "bybit" / "bybit_v5_public_2026-08-09.jsonl.gz") if '"publicTrade.' in r
    )
    okx_trade = next(
        r for _, _, r in read_frames(FIX / "okx" / "okx_v5_public_2022-05-13.jsonl.gz") if '"channel":"trades"' in r
        and '"data"' in r
    )
    cases = [
        (lambda raw: feed.on_frame(raw, 1), binance_trade, ("data", "T"), "data.T"),
        (lambda raw: BybitParser("linear").parse_frame(raw, 1), bybit_trade, ("data", 0, "T"), "data[0].T"),
        (lambda raw: OkxParser().parse_frame(raw, 1), okx_trade, ("data", 0, "ts"), "data[0].ts"),
    ]
    for parse, raw, path, field in cases:
        for value in (2**62, -1):
            msg = json.loads(raw)
            node = msg[path[0]] if len(path) == 2 else msg[path[0]][path[1]]
            node[path[-1]] = value
            with pytest.raises(FrameError) as info:
                parse(json.dumps(msg, separators=(",", ":")))
            assert info.value.field == field, (field, str(info.value))
