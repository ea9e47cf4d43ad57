"""Trade ids read on demand (TradeIds): the ids a list of them would give, in a replay and on their own."""

from __future__ import annotations

import pickle
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradebus.data.catalog import Catalog
from tradebus.data.ingest import read_trades
from tradebus.data.replay import Replay, ReplaySource
from tradebus.data.trade_ids import TradeIds, trade_ids

REAL_TRADES = Path(__file__).resolve().parents[1] / "fixtures" / "data" / "btcusdt-trades.parquet"

ids_lists = st.lists(st.text(max_size=6), max_size=40)
cuts = st.lists(st.tuples(st.integers(-50, 50) | st.none(), st.integers(-50, 50) | st.none()), max_size=3)


@settings(max_examples=300, deadline=None)
@given(ids=ids_lists, large=st.booleans(), offset=st.integers(0, 5), cuts=cuts, step=st.sampled_from([None, 2, -1]))
def test_trade_ids_read_as_the_list_of_the_same_strings(
    ids: list[str], large: bool, offset: int, cuts: list[tuple[int | None, int | None]], step: int | None
) -> None:
    # The column may itself be a slice of a longer one (an Arrow offset), as a read batch can be.
    array = pa.array(["pad"] * offset + ids, type=pa.large_string() if large else pa.string()).slice(offset)
    got = trade_ids(array)
    want = list(ids)
    for lo, hi in cuts:
        got, want = got[lo:hi], want[lo:hi]
    assert isinstance(got, TradeIds)
    assert len(got) == len(want)
    assert [got[i] for i in range(-len(want), len(want))] == [want[i] for i in range(-len(want), len(want))]
    for bad in (len(want), -len(want) - 1):
        with pytest.raises(IndexError):
            got[bad]
    assert list(got) == want and got.tolist() == want
    read = got.reader()  # the batch trade loop's reads, of rows in range
    assert [read(i) for i in range(len(want))] == want
    assert got == want and want == got and got == tuple(want)
    assert got != [*want, "x"] and [*want, "x"] != got
    assert list(got[::step]) == want[::step]
    assert pa.array(got).to_pylist() == want
    assert pa.table({"trade_id": got}, schema=pa.schema([("trade_id", pa.string())])).column(0).to_pylist() == want
    assert pickle.loads(pickle.dumps(got)) == want


def test_a_column_with_nulls_or_not_of_strings_is_listed_as_it_stores() -> None:
    assert trade_ids(pa.array(["1", None, "3"])) == ["1", None, "3"]
    assert trade_ids(pa.chunked_array([["1", "2"], ["3"]])) == ["1", "2", "3"]
    with pytest.raises(ValueError, match="without nulls"):
        TradeIds(pa.array(["1", None]))


@pytest.mark.parametrize("batch_rows", [1, 7, 256, 65_536])
@pytest.mark.parametrize("stored", ["catalog", "file"])
def test_a_replay_gives_the_stored_ids_of_real_trades_in_every_batch_and_message(
    tmp_path: Path, stored: str, batch_rows: int
) -> None:
    raw = pd.read_parquet(REAL_TRADES)
    ts = raw["timestamp"].astype("int64").to_numpy() * 1_000_000  # ms -> ns (the stored ts_init)
    assert ts.dtype.kind == "i" and len(raw) > 1_000
    if stored == "catalog":
        cat = Catalog(tmp_path)
        cat.write(read_trades(REAL_TRADES), "binance", "spot", "BTCUSDT", "trades", "day", row_group_rows=300)
        source = ReplaySource.from_catalog(cat, "BTCUSDT.BINANCE", "binance", "spot", "BTCUSDT", "trades")
    else:
        source = ReplaySource.from_file(REAL_TRADES, "BTCUSDT.BINANCE", "trades")
    start, end = int(ts[123]), int(ts[1_777])
    inside = (ts >= start) & (ts <= end)
    want = raw["trade_id"].astype(str)[inside].tolist()
    # A second source at the same times cuts the first into short runs (often one row).
    other = Catalog(tmp_path / "other")
    other.write(read_trades(REAL_TRADES).slice(0, 600), "binance", "spot", "ETHUSDT", "trades", "day")
    second = ReplaySource.from_catalog(other, "ETHUSDT.BINANCE", "binance", "spot", "ETHUSDT", "trades")
    for sources in ([source], [source, second]):
        replay = Replay(sources, start_ns=start, end_ns=end, batch_rows=batch_rows)
        batches = [b for b in replay.batches() if b.source == 0]
        assert [tid for b in batches for tid in b.trade_id] == want
        assert [b.trade_id[j] for b in batches for j in range(len(b))] == want
        assert [m.trade_id for b in batches for m in b.messages()] == want
        assert [m.trade_id for m in replay if m.instrument_id == "BTCUSDT.BINANCE"] == want
    assert Replay([source], start_ns=start, end_ns=end, batch_rows=batch_rows).validate() == len(want)
