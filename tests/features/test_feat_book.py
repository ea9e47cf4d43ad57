"""Book features: microprice, top-N imbalance, multi-level OFI — values, live == batch, bank wiring."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np
import pytest

from tradebus.adapters.binance.client import BinanceRouter
from tradebus.adapters.binance.config import BinanceConfig
from tradebus.adapters.common.recorder import iter_hftbacktest
from tradebus.engine.messages import BookDelta, BookSnapshot
from tradebus.errors import FeatureError
from tradebus.features.bank import FeatureBank
from tradebus.features.book import BookImbalance, Microprice, Ofi
from tradebus.features.spec import FeatureSpec

CAPTURE = Path(__file__).resolve().parents[1] / "fixtures" / "binance" / "spot_btcusdt_20240808_head4000.gz"
N = 10


@pytest.fixture(scope="module")
def book_tops() -> np.ndarray:
    """Top-10 levels after every applied diff of the real spot capture: shape (n, 40)."""
    rows: list[np.ndarray] = []
    feed: BinanceRouter

    def sink(msg: object) -> None:
        if isinstance(msg, (BookDelta, BookSnapshot)):
            bids, asks = feed.books["BTCUSDT"].book.top(N)
            rows.append(np.concatenate([bids[:, 0], bids[:, 1], asks[:, 0], asks[:, 1]]))

    feed = BinanceRouter(BinanceConfig(symbols=["BTCUSDT"], channels=["depth"]), sink)
    for ts, raw in iter_hftbacktest(CAPTURE):
        if raw.startswith('{"lastUpdateId"'):
            feed.on_snapshot_frame(raw, ts, "BTCUSDT")
        elif "@depth" in raw:
            feed.on_frame(raw, ts)
    return np.array(rows)


def reference_ofi(tops: np.ndarray, levels: int, window: int) -> np.ndarray:
    """Straightforward Python OFI (Cont et al., summed over levels), rolling sum over ``window``."""
    out = np.full(len(tops), np.nan)
    ring: deque[float] = deque(maxlen=window)
    for t in range(1, len(tops)):
        cur, prev = tops[t], tops[t - 1]
        e = 0.0
        for m in range(levels):
            pb, qb, pa, qa = cur[m], cur[N + m], cur[2 * N + m], cur[3 * N + m]
            pb0, qb0, pa0, qa0 = prev[m], prev[N + m], prev[2 * N + m], prev[3 * N + m]
            e += (qb if pb >= pb0 else 0) - (qb0 if pb <= pb0 else 0) - (qa if pa <= pa0 else 0) + (qa0 if pa >= pa0 else 0)
        ring.append(e)
        if len(ring) == window:
            out[t] = sum(ring)
    return out


def test_microprice_leans_to_the_thinner_side_and_skips_bad_quotes() -> None:
    mp = Microprice()
    assert np.isnan(mp.update(np.nan, 101.0, 1.0, 1.0))
    assert mp.update(100.0, 101.0, 1.0, 1.0) == 100.5
    assert mp.update(100.0, 101.0, 3.0, 1.0) == 100.75  # more bid size -> closer to the ask
    assert mp.update(102.0, 101.0, 3.0, 1.0) == 100.75  # crossed: held
    assert mp.update(100.0, 101.0, 0.0, 0.0) == 100.75  # no size: held
    assert mp.ready


def test_book_imbalance_over_top_levels_with_missing_levels() -> None:
    bi = BookImbalance(levels=3)
    assert bi.update_book(np.array([10.0, 9.0]), np.array([3.0, 1.0]), np.array([11.0]), np.array([2.0])) == pytest.approx(
        (4.0 - 2.0) / 6.0
    )
    bi1 = BookImbalance(levels=1)
    assert bi1.update_book(np.array([10.0, 9.0]), np.array([3.0, 5.0]), np.array([11.0]), np.array([1.0])) == 0.5
    assert bi1.update_book(np.array([10.0]), np.array([-1.0]), np.array([11.0]), np.array([1.0])) == 0.5  # held


def test_ofi_single_level_textbook_cases() -> None:
    ofi = Ofi(levels=1, window=1)
    px = lambda b, a: (np.array([b]), np.array([a]))  # noqa: E731
    b, a = px(100.0, 101.0)
    assert np.isnan(ofi.update_book(b, np.array([5.0]), a, np.array([5.0])))  # first state: reference only
    assert ofi.update_book(b, np.array([7.0]), a, np.array([5.0])) == 2.0  # bid size grew
    assert ofi.update_book(np.array([100.5]), np.array([1.0]), a, np.array([5.0])) == 1.0  # bid price up
    assert ofi.update_book(np.array([100.5]), np.array([1.0]), np.array([100.8]), np.array([4.0])) == -4.0  # ask down
    assert ofi.update_book(np.array([100.5]), np.array([1.0]), np.array([101.0]), np.array([4.0])) == 4.0  # ask up


def test_ofi_matches_a_python_reference_on_a_real_book(book_tops: np.ndarray) -> None:
    for levels, window in ((1, 1), (5, 20), (10, 50)):
        got = Ofi(levels=levels, window=window).run(book_tops)
        want = reference_ofi(book_tops, levels, window)
        assert np.array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got[~np.isnan(got)], want[~np.isnan(want)], rtol=1e-9, atol=1e-9)


SIZES = [*range(10, 20), *range(30, 40)]


@pytest.mark.parametrize(
    ("make", "columns"),
    [(lambda: Ofi(levels=5, window=30), slice(None)), (lambda: BookImbalance(levels=7), SIZES)],
    ids=["ofi", "book_imbalance"],
)
def test_live_update_equals_batch_run_bit_for_bit(book_tops: np.ndarray, make: object, columns: object) -> None:
    inputs = book_tops[:, columns]  # type: ignore[index]
    live, batch = make(), make()  # type: ignore[operator]
    updates = np.array([live.update(*row) for row in inputs])
    assert np.array_equal(updates, batch.run(inputs), equal_nan=True)


def test_microprice_live_equals_batch_on_real_book(book_tops: np.ndarray) -> None:
    cols = book_tops[:, [0, 20, 10, 30]]
    mp_live = Microprice()
    live = np.array([mp_live.update(*row) for row in cols])
    assert np.array_equal(live, Microprice().run(cols), equal_nan=True)
    assert np.all((live >= cols[:, 0]) & (live <= cols[:, 1]))


def test_ofi_is_ready_after_window_plus_one_events(book_tops: np.ndarray) -> None:
    ofi = Ofi(levels=3, window=4)
    for i in range(5):
        ofi.update(*book_tops[i])
        assert ofi.ready is (i == 4)


def test_book_features_in_a_bank_read_the_bank_book_fields(book_tops: np.ndarray) -> None:
    bank = FeatureBank(
        [
            FeatureSpec(name="ofi5", kind="ofi", params={"levels": 5, "window": 20}),
            FeatureSpec(name="imb3", kind="book_imbalance", params={"levels": 3}),
            FeatureSpec(name="mp", kind="microprice", input=["book.bid", "book.ask", "book.bid_size", "book.ask_size"]),
        ]
    )
    ofi, imb, mp = Ofi(levels=5, window=20), BookImbalance(levels=3), Microprice()
    for i, row in enumerate(book_tops[:200]):
        bank.update_book(i, row[:10], row[10:20], row[20:30], row[30:40])
        want = (ofi.update(*row), imb.update(*row[10:20], *row[30:40]), mp.update(row[0], row[20], row[10], row[30]))
        got = (bank.get("ofi5"), bank.get("imb3"), bank.get("mp"))
        assert np.array_equal(np.array(got), np.array(want), equal_nan=True)


def test_bank_takes_the_column_views_of_order_book_top_as_its_docstring_says() -> None:
    specs = [FeatureSpec(name="ofi3", kind="ofi", params={"levels": 3, "window": 5}),
             FeatureSpec(name="imb3", kind="book_imbalance", params={"levels": 3})]
    views, copies = FeatureBank(specs), FeatureBank(specs)
    feed: BinanceRouter
    applied = 0

    def sink(msg: object) -> None:
        nonlocal applied
        if isinstance(msg, (BookDelta, BookSnapshot)):
            bids, asks = feed.books["BTCUSDT"].book.top(N)  # (levels, 2): columns are strided views
            assert not bids[:, 0].flags.c_contiguous
            views.update_book(applied, bids[:, 0], bids[:, 1], asks[:, 0], asks[:, 1])
            copies.update_book(applied, *(np.ascontiguousarray(c) for c in (bids[:, 0], bids[:, 1],
                                                                             asks[:, 0], asks[:, 1])))
            assert np.array_equal(views.values, copies.values, equal_nan=True)
            applied += 1

    feed = BinanceRouter(BinanceConfig(symbols=["BTCUSDT"], channels=["depth"]), sink)
    for ts, raw in iter_hftbacktest(CAPTURE):
        if raw.startswith('{"lastUpdateId"'):
            feed.on_snapshot_frame(raw, ts, "BTCUSDT")
        elif "@depth" in raw:
            feed.on_frame(raw, ts)
        if applied >= 300:
            break
    assert applied >= 300 and np.isfinite(views.value("ofi3")) and np.isfinite(views.value("imb3"))


def test_bank_update_book_names_an_argument_it_cannot_take() -> None:
    bank = FeatureBank([FeatureSpec(name="imb3", kind="book_imbalance", params={"levels": 3})])
    one = np.ones(3)
    with pytest.raises(FeatureError, match=r"update_book: ask_px must be 1-D \(levels, best first\), got shape \(3, 2\)"):
        bank.update_book(0, one, one, np.ones((3, 2)), one)
    with pytest.raises(FeatureError, match="update_book: bid_sz must be numbers"):
        bank.update_book(0, one, ["a", "b"], one, one)
    assert np.isnan(bank.value("imb3"))
    bank.update_book(1, [10.0, 9.0], [1, 2], [11.0, 12.0], [3, 1])  # a list and ints are taken like float64 arrays
    assert bank.value("imb3") == (3 - 4) / 7


def test_bad_parameters_raise_feature_error() -> None:
    with pytest.raises(FeatureError, match="levels"):
        Ofi(levels=11)
    with pytest.raises(FeatureError, match="window"):
        Ofi(window=0)
