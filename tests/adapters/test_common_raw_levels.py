"""raw_pair_levels: book levels parsed from raw JSON text equal ``float(text)`` bit for bit, or decline.

The reference is Python's own ``float`` on the same strings (correctly rounded) and
msgspec's typed decode of the same JSON; every form outside the plain one must return
None so the typed decoder (and its error naming the level) takes over.
"""

from __future__ import annotations

import json

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradebus.adapters.common.raw_levels import raw_pair_levels

_typed = msgspec.json.Decoder(list[tuple[float, float]], strict=False)

decimal = st.builds(
    lambda whole, frac: f"{whole}.{frac}" if frac else str(whole),
    st.integers(0, 10**9),
    st.one_of(st.just(""), st.text("0123456789", min_size=1, max_size=8)),
).filter(lambda s: float(s) > 0 and len(s.replace(".", "").lstrip("0")) <= 15)
size = st.one_of(decimal, st.sampled_from(["0", "0.000", "0.00000000"]))
rows = st.lists(st.tuples(decimal, size), max_size=30)


def _text(pairs: list[tuple[str, str]], quoted: bool = True) -> bytes:
    q = '"' if quoted else ""
    return ("[" + ",".join(f"[{q}{p}{q},{q}{s}{q}]" for p, s in pairs) + "]").encode()


@settings(max_examples=300, deadline=None, derandomize=True)
@given(bids=rows, asks=rows)
def test_plain_levels_equal_float_of_the_text_bit_for_bit(bids: list, asks: list) -> None:
    got = raw_pair_levels(_text(bids), _text(asks))
    assert got is not None
    for side, pairs in zip(got, (bids, asks), strict=True):
        want = np.array([[float(p), float(s)] for p, s in pairs], dtype=np.float64).reshape(-1, 2)
        assert side.shape == want.shape and side.flags.c_contiguous
        assert np.array_equal(side.view(np.int64), want.view(np.int64))
        assert np.array_equal(side, np.array(_typed.decode(_text(pairs)), dtype=np.float64).reshape(-1, 2))


def test_real_binance_numbers_and_unquoted_numbers() -> None:
    pairs = [("61837.63000000", "3.78826000"), ("5000.00", "14.368"), ("0.00000001", "0.000")]
    bids, asks = raw_pair_levels(_text(pairs), _text(pairs, quoted=False))
    want = [[float(p), float(s)] for p, s in pairs]
    assert bids.tolist() == want and asks.tolist() == want
    empty_b, empty_a = raw_pair_levels(b"[]", b"[]")
    assert empty_b.shape == (0, 2) and empty_a.shape == (0, 2)


@pytest.mark.parametrize(
    "text",
    [
        b'[["1e3","1"]]',  # exponent
        b'[["1234567890.1234567","1"]]',  # 17 significant digits
        b'[["0","1"]]',  # price not > 0
        b'[["-5","1"]]',
        b'[["5","-1"]]',  # negative size
        b'[["5",""]]',
        b'[["abc","1"]]',
        b'[["NaN","1"]]',
        b'[["5."," 1"]]',
        b'[[".5","1"]]',
        b'[["05","1"]]',
        b'[["5","1","0"]]',  # three fields
        b'[["5"]]',
        b'[["5","1"] ]',  # whitespace
        b'[["5","1"],]',
        b'[["5","1"]',
        b'["5","1"]',
        b'[["5,"1"]]',
        b"",
    ],
)
def test_anything_but_the_plain_form_declines(text: bytes) -> None:
    assert raw_pair_levels(text, b"[]") is None
    assert raw_pair_levels(b"[]", text) is None


def test_a_binance_frame_with_a_bad_level_still_names_it() -> None:
    from tradebus.adapters.binance.parse import parse_depth_update
    from tradebus.errors import ParseError

    data = {"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": 1, "u": 2, "b": [["5000.00", "1"], ["-1", "2"]], "a": []}
    raw = json.dumps({"stream": "btcusdt@depth", "data": data}, separators=(",", ":"))
    with pytest.raises(ParseError, match=r"b\[1\]"):
        parse_depth_update(raw, 0, "BTCUSDT.BINANCE")
    data["b"] = [["5000.00", "1"], ["4999.5e0", "2"]]  # not the plain form: the typed path parses it
    delta = parse_depth_update(json.dumps({"stream": "x", "data": data}), 0, "BTCUSDT.BINANCE")
    assert delta.bids.tolist() == [[5000.0, 1.0], [4999.5, 2.0]]
