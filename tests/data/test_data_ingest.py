"""Importers: formats, timestamp units, open->close conversion and validation errors."""

from __future__ import annotations

import gc
import gzip
import inspect
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv
import pyarrow.parquet as pq
import pytest
from loguru import logger

from tradebus.data.catalog import BAR_SCHEMA, TRADE_SCHEMA, Catalog
from tradebus.data.ingest import (
    detect_interval,
    format_interval,
    import_path,
    iter_bars,
    iter_trades,
    parse_interval,
    read_bars,
    read_trades,
    to_ns,
)
from tradebus.engine.clock import iso_ns
from tradebus.errors import DataError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"
HOUR_NS = 3_600_000_000_000
T0_NS = 1_704_067_200_000_000_000  # 2024-01-01 00:00 UTC, open time of the first fixture bar


def fixture(name: str) -> Path:
    return FIXTURES / name


# --------------------------------------------------------------------------- bar validation


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("bars_high_below_low.csv", "bars_high_below_low.csv row 17: high 99.0 < low 100.0"),
        ("bars_unsorted.csv", "bars_unsorted.csv row 5: timestamp 2024-01-01T02:00:00Z is before the previous row's 2024-01-01T03:00:00Z"),
        ("bars_duplicate_ts.csv", "bars_duplicate_ts.csv row 8: duplicate timestamp 2024-01-01T06:00:00Z (same as row 7)"),
        ("bars_nan_price.csv", "bars_nan_price.csv row 3: close nan is not a finite positive price"),
        ("bars_inf_price.csv", "bars_inf_price.csv row 4: open inf is not a finite positive price"),
        ("bars_zero_price.csv", "bars_zero_price.csv row 6: low 0.0 is not a finite positive price"),
        ("bars_negative_price.csv", "bars_negative_price.csv row 2: open -5.0 is not a finite positive price"),
        ("bars_open_outside.csv", "bars_open_outside.csv row 9: open 111.0 is outside [low 107.0, high 110.0]"),
        ("bars_close_outside.csv", "bars_close_outside.csv row 10: close 107.5 is outside [low 108.0, high 111.0]"),
        ("bars_negative_volume.csv", "bars_negative_volume.csv row 11: volume -1.0 is negative"),
        ("bars_nan_volume.csv", "bars_nan_volume.csv row 12: volume nan is not a finite number"),
        ("bars_unparsable.csv", "bars_unparsable.csv row 5: high 'abc' is not a number"),
        ("bars_empty_value.csv", "bars_empty_value.csv row 7: volume '' is not a number"),
        ("bars_ragged.csv", "bars_ragged.csv row 6: expected 6 fields, got 5"),
        ("bars_implausible_timestamp.csv", "bars_implausible_timestamp.csv row 1: timestamp 12345 is not a plausible Unix time"),
        ("bars_mixed_units.csv", "bars_mixed_units.csv row 10: timestamp 1704099600 is not a plausible time as ms"),
        ("bars_bad_iso.csv", "bars_bad_iso.csv row 6: timestamp"),
        ("bars_overlapping.csv", "bars_overlapping.csv row 13: timestamp is 30m after the previous bar, shorter than the interval 1h"),
    ],
)
def test_read_bars_bad_file_names_file_row_and_field(name: str, expected: str) -> None:
    with pytest.raises(DataError) as info:
        read_bars(fixture(name))
    assert str(info.value).startswith(f"{FIXTURES}/{expected}"), str(info.value)


def test_read_bars_missing_column_names_the_field_and_columns_found() -> None:
    with pytest.raises(DataError, match=r"bars_missing_column.csv: missing column 'volume'.*got \['timestamp', 'open'"):
        read_bars(fixture("bars_missing_column.csv"))


def test_read_bars_bad_iso_names_the_value() -> None:
    with pytest.raises(DataError, match=r"row 6: timestamp '2024-13-01T05:00:00Z' is not a Unix time or an ISO-8601 date"):
        read_bars(fixture("bars_bad_iso.csv"))


def test_read_bars_text_among_unix_times_names_its_own_row(tmp_path: Path) -> None:
    """It blamed row 1 and its valid time: "row 1: timestamp '1704067200000' is not a Unix time or an ISO-8601 date"."""
    lines = fixture("bars_valid.csv").read_text().splitlines()
    lines[6] = "2024-01-01 05:00" + lines[6][lines[6].index(","):]
    path = tmp_path / "bars.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"^{path} row 6: timestamp '2024-01-01 05:00' is not a number \(the column holds Unix times\)$"):
        read_bars(path)


def test_read_bars_counts_further_invalid_rows_in_message(tmp_path: Path) -> None:
    lines = fixture("bars_valid.csv").read_text().splitlines()
    for i in (3, 5, 9):  # data rows 3, 5, 9 get high < low
        fields = lines[i].split(",")
        fields[2], fields[3] = fields[3], fields[2]
        lines[i] = ",".join(fields)
    path = tmp_path / "three_bad.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"three_bad.csv row 3: high .* < low .* \(and 2 more invalid rows\)"):
        read_bars(path)


def test_read_bars_tolerates_float_noise_at_the_range_edges() -> None:
    table = read_bars(fixture("bars_float_noise.csv"))
    assert table.num_rows == 20
    # values are kept as given, not clipped
    assert table.column("close")[4].as_py() > table.column("high")[4].as_py()


# --------------------------------------------------------------------------- bar formats


def test_read_bars_valid_csv_converts_open_time_to_close_time() -> None:
    table = read_bars(fixture("bars_valid.csv"))
    assert table.schema == BAR_SCHEMA
    ts = table.column("ts_event").to_numpy()
    assert ts[0] == T0_NS + HOUR_NS  # open 00:00 + 1h interval
    assert np.array_equal(ts, table.column("ts_init").to_numpy())
    assert np.all(np.diff(ts) == HOUR_NS)
    assert table.column("open")[0].as_py() == 100.0


def test_read_bars_with_close_time_column_named_ts_event_is_not_shifted(tmp_path: Path) -> None:
    source = read_bars(fixture("bars_valid.csv"))
    path = tmp_path / "stored.parquet"
    pq.write_table(source, path)
    again = read_bars(path)
    assert again.equals(source)


def test_read_bars_time_is_close_overrides_the_default(tmp_path: Path) -> None:
    table = read_bars(fixture("bars_valid.csv"), time_is="close")
    assert table.column("ts_event")[0].as_py() == T0_NS


def _sparse_hourly(tmp_path: Path) -> Path:
    """1h bars opening at hours 0, 1, 3, 5, 7: the most common spacing is 2h."""
    rows = [f"{(T0_NS + h * HOUR_NS) // 1_000_000},100.0,101.0,99.0,100.5,1.0" for h in (0, 1, 3, 5, 7)]
    path = tmp_path / "sparse.csv"
    path.write_text("timestamp,open,high,low,close,volume\n" + "\n".join(rows) + "\n")
    return path


def test_read_bars_given_interval_is_used_for_the_close_time(tmp_path: Path) -> None:
    path = _sparse_hourly(tmp_path)
    with pytest.raises(DataError, match="shorter than the interval 2h"):
        read_bars(path)  # detected: the most common spacing
    table = read_bars(path, interval="1h")
    assert table.column("ts_event").to_pylist() == [T0_NS + h * HOUR_NS for h in (1, 2, 4, 6, 8)]


def test_a_given_interval_shorter_than_every_spacing_is_refused() -> None:
    """1h bars read as 30m bars were stamped at open + 30m, half an hour before they closed (lookahead)."""
    with pytest.raises(DataError, match=(
        r"bars_valid.csv: the interval given is 30m, but no two consecutive bars of the first 20 are 30m apart "
        r"\(timestamp: the closest 1h, most 1h\): .* give the interval 1h or leave it out"
    )):
        read_bars(fixture("bars_valid.csv"), interval="30m")


def test_read_bars_iso_dates_match_unix_ms() -> None:
    iso = read_bars(fixture("bars_iso.csv"))
    ms = read_bars(fixture("bars_valid.csv"))
    assert iso.equals(ms)


def test_read_bars_headerless_binance_vision_klines() -> None:
    table = read_bars(fixture("ADABTC-1m-2021-11-27_head120.csv"))
    assert table.num_rows == 120
    # first line: open time 1637971200000 ms, 1m bar -> close 1637971260000 ms
    assert table.column("ts_event")[0].as_py() == 1_637_971_260_000_000_000
    assert table.column("open")[0].as_py() == 0.00002853
    assert table.column("volume")[0].as_py() == 36304.2


# The header python-binance's README and Binance's API docs give the kline fields, as users' saved files carry it.
BINANCE_DOC_HEADER = ("Open time,Open,High,Low,Close,Volume,Close time,Quote asset volume,Number of trades,"
                      "Taker buy base asset volume,Taker buy quote asset volume,Ignore")


def test_read_bars_header_with_spaces_in_names_matches_the_headerless_klines(tmp_path: Path) -> None:
    headerless = fixture("ADABTC-1m-2021-11-27_head120.csv")
    csv = tmp_path / "klines.csv"
    csv.write_text(BINANCE_DOC_HEADER + "\n" + headerless.read_text())
    expected = read_bars(headerless)
    assert read_bars(csv).equals(expected)
    parquet = tmp_path / "klines.parquet"
    frame = pa.csv.read_csv(csv).rename_columns([" Open  Time ", *BINANCE_DOC_HEADER.split(",")[1:]])
    pq.write_table(frame, parquet)
    assert read_bars(parquet).equals(expected)


def test_read_bars_coinbase_json_gz_real_cut_keeps_the_gap() -> None:
    table = read_bars(fixture("coinbase_btc-usd_4h_cut.json.gz"))
    assert table.num_rows == 300
    ts = table.column("ts_event").to_numpy()
    four_h = 4 * HOUR_NS
    assert ts[0] == 1_531_713_600 * 1_000_000_000 + four_h
    steps = np.diff(ts)
    assert np.count_nonzero(steps != four_h) == 1
    assert steps.max() == 4 * four_h  # 2018-08-10: 3 missing bars
    assert table.column("low")[0].as_py() == 6347.0


def test_read_bars_coinbase_newest_first_is_reversed() -> None:
    table = read_bars(fixture("coinbase_candles_newest_first.json"))
    ts = table.column("ts_event").to_numpy()
    assert np.all(np.diff(ts) == 4 * HOUR_NS)
    assert table.column("open").to_pylist() == [100.0, 101.0, 102.0, 103.0, 104.0, 105.0]


def test_read_bars_coinbase_missing_field_names_row_and_field() -> None:
    with pytest.raises(DataError, match=r"coinbase_candles_missing_field.json row 4: high is missing"):
        read_bars(fixture("coinbase_candles_missing_field.json"))


def test_read_bars_coinbase_duplicate_is_an_error_by_default() -> None:
    with pytest.raises(DataError, match=r"coinbase_candles_duplicate.json row 5: duplicate start 2024-01-01T12:00:00Z \(same as row 4\)"):
        read_bars(fixture("coinbase_candles_duplicate.json"))


def test_read_bars_keep_first_drops_duplicates_and_logs_each_drop() -> None:
    messages: list[str] = []
    sink = logger.add(lambda m: messages.append(m.record["message"]), level="WARNING")
    try:
        table = read_bars(fixture("bars_duplicate_ts.csv"), duplicates="keep_first")
    finally:
        logger.remove(sink)
    assert table.num_rows == 19
    assert len(messages) == 1
    assert messages[0].startswith(f"{FIXTURES}/bars_duplicate_ts.csv row 8: dropped duplicate bar at 2024-01-01T06:00:00+00:00")
    assert "kept row 7" in messages[0]


def test_read_bars_parquet_with_timestamp_column(tmp_path: Path) -> None:
    source = read_bars(fixture("bars_valid.csv"))
    opens = pa.array(source.column("ts_event").to_numpy() - HOUR_NS).cast(pa.timestamp("ns", tz="UTC"))
    table = pa.table({"date": opens, **{n: source.column(n) for n in ("open", "high", "low", "close", "volume")}})
    path = tmp_path / "bars.parquet"
    pq.write_table(table, path)
    assert read_bars(path).equals(source)


def test_read_bars_single_bar_without_interval_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "one.csv"
    path.write_text("timestamp,open,high,low,close,volume\n1704067200000,1,2,0.5,1.5,3\n")
    with pytest.raises(DataError, match="one.csv: cannot detect the bar interval from a single bar"):
        read_bars(path)
    assert read_bars(path, interval="1d").column("ts_event")[0].as_py() == T0_NS + 24 * HOUR_NS


def test_read_bars_unsupported_file_type(tmp_path: Path) -> None:
    path = tmp_path / "bars.xlsx"
    path.write_bytes(b"x")
    with pytest.raises(DataError, match=r"bars.xlsx: unsupported file type '.xlsx'"):
        read_bars(path)


def test_read_bars_gzipped_csv(tmp_path: Path) -> None:
    path = tmp_path / "bars.csv.gz"
    path.write_bytes(gzip.compress(fixture("bars_valid.csv").read_bytes(), mtime=0))
    assert read_bars(path).equals(read_bars(fixture("bars_valid.csv")))


# --------------------------------------------------------------------------- timestamps


@pytest.mark.parametrize(
    ("values", "expected_ns"),
    [
        ([1_704_067_200], T0_NS),
        ([1_704_067_200_000], T0_NS),
        ([1_704_067_200_000_000], T0_NS),
        ([1_704_067_200_000_000_123], T0_NS + 123),
        (["1704067200"], T0_NS),
        (["1704067200.5"], T0_NS + 500_000_000),
        (["2024-01-01T00:00:00Z"], T0_NS),
        (["2024-01-01 01:00:00+01:00"], T0_NS),
        (["2024-01-01"], T0_NS),
        (["2024-01-01T00:00:00.000000123Z"], T0_NS + 123),
    ],
)
def test_to_ns_detects_unit_and_iso(values: list[object], expected_ns: int) -> None:
    assert to_ns("x.csv", pa.array(values), "ts").tolist() == [expected_ns]


@pytest.mark.parametrize(("unit", "value"), [("s", 1_704_067_200), ("ms", 1_704_067_200_000), ("us", 1_704_067_200_000_000)])
def test_to_ns_explicit_unit_overrides_detection(unit: str, value: int) -> None:
    assert to_ns("x.csv", pa.array([value]), "ts", unit).tolist() == [T0_NS]  # type: ignore[arg-type]


def test_to_ns_explicit_wrong_unit_is_implausible() -> None:
    with pytest.raises(DataError, match=r"x.csv row 1: ts 1704067200000 is not a plausible time as s"):
        to_ns("x.csv", pa.array([1_704_067_200_000]), "ts", "s")


def test_to_ns_arrow_timestamp_column() -> None:
    arr = pa.array([T0_NS // 1_000_000], pa.timestamp("ms", tz="UTC"))
    assert to_ns("x.parquet", arr, "timestamp").tolist() == [T0_NS]


@pytest.mark.parametrize("value", [0, -1, 99, 4_102_444_800_000_000_001, 5_000_000_000_000_000_000])
def test_to_ns_rejects_implausible_numbers(value: int) -> None:
    with pytest.raises(DataError, match=r"x.csv row 1: ts .* not a plausible"):
        to_ns("x.csv", pa.array([value], pa.int64() if value < 2**63 else pa.uint64()), "ts")


def test_to_ns_rejects_iso_before_2000() -> None:
    with pytest.raises(DataError, match=r"row 2: ts '1999-12-31T23:59:59Z' is not a plausible time"):
        to_ns("x.csv", pa.array(["2024-01-01", "1999-12-31T23:59:59Z"]), "ts")


def test_parse_and_format_interval_round_trip() -> None:
    assert parse_interval("4h") == 4 * HOUR_NS
    assert parse_interval("15min") == parse_interval("15m") == 15 * 60 * 1_000_000_000
    assert parse_interval(" 1d ") == 24 * HOUR_NS
    assert format_interval(4 * HOUR_NS) == "4h"
    assert format_interval(90 * 1_000_000_000) == "90s"
    for bad in ("", "4x", "0h", "-1h", 0, "h"):
        with pytest.raises(DataError, match="interval"):
            parse_interval(bad)  # type: ignore[arg-type]


def test_an_interval_in_months_is_refused_not_read_as_minutes(tmp_path: Path) -> None:
    """``1M`` (ccxt's and Binance's month) was read as one minute: ``data bars`` built minute bars, a backfill stamped
    monthly candles one minute after they opened."""
    from typer.testing import CliRunner

    from tradebus.data.cli import data_app

    assert parse_interval("4H") == 4 * HOUR_NS and parse_interval("1MIN") == 60 * 1_000_000_000
    with pytest.raises(DataError, match=r"interval '1M' is in months .* minutes are '1m'"):
        parse_interval("1M")
    root = tmp_path / "cat"
    import_path(root, FIXTURES / "btcusdt-trades.parquet", venue="binance", market="spot", symbol="BTCUSDT", kind="trades")
    result = CliRunner().invoke(data_app, ["bars", "binance/spot/BTCUSDT/trades", "--interval", "1M", "--catalog", str(root)])
    assert result.exit_code != 0 and "is in months" in result.output, result.output
    assert [r.dataset for r in Catalog(root).datasets()] == ["trades"]


def test_detect_interval_uses_modal_spacing() -> None:
    ts = np.array([0, 60, 120, 300, 360, 420], dtype=np.int64)
    assert detect_interval(ts) == 60


# --------------------------------------------------------------------------- trades


def test_read_trades_valid_csv() -> None:
    table = read_trades(fixture("trades_valid.csv"))
    assert table.schema == TRADE_SCHEMA
    assert table.num_rows == 12
    assert table.column("ts_event")[1].as_py() == T0_NS + 250_000_000
    assert table.column("aggressor").to_pylist()[:3] == [1, -1, 1]
    assert table.column("trade_id")[0].as_py() == "1000"


def test_read_trades_equal_timestamps_are_allowed() -> None:
    assert read_trades(fixture("trades_equal_timestamps.csv")).num_rows == 12


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("trades_unsorted.csv", "trades_unsorted.csv row 7: ts_event 2024-01-01T00:00:01.249Z is before the previous row's 2024-01-01T00:00:01.25Z"),
        ("trades_zero_size.csv", "trades_zero_size.csv row 5: size 0.0 is not a finite positive size"),
        ("trades_bad_side.csv", "trades_bad_side.csv row 8: side 'maybe' is not buy/sell"),
        ("trades_duplicate_id.csv", "trades_duplicate_id.csv row 10: duplicate trade_id '1008' (same as row 9)"),
        ("trades_negative_price.csv", "trades_negative_price.csv row 3: price -1.0 is not a finite positive price"),
    ],
)
def test_read_trades_bad_file_names_file_row_and_field(name: str, expected: str) -> None:
    with pytest.raises(DataError) as info:
        read_trades(fixture(name))
    assert str(info.value).startswith(f"{FIXTURES}/{expected}"), str(info.value)


def test_read_trades_real_binance_parquet_with_buyer_maker() -> None:
    table = read_trades(fixture("btcusdt-trades.parquet"))
    assert table.num_rows == 2001
    first = table.slice(0, 2).to_pylist()
    assert first[0]["ts_event"] == 1_610_064_000_278_000_000
    assert first[0]["price"] == 39432.48
    assert first[0]["aggressor"] == -1  # buyer is maker -> seller-initiated
    assert first[1]["aggressor"] == 1
    assert first[0]["trade_id"] == "553287559"


def test_read_trades_headerless_binance_aggtrades(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-aggTrades.csv"
    path.write_text(
        "26129,0.01633102,4.70443515,27781,27781,1498793709153,True,True\n"
        "26130,0.01633103,0.50000000,27782,27782,1498793710000,False,True\n"
    )
    table = read_trades(path)
    assert table.column("ts_event").to_pylist() == [1_498_793_709_153_000_000, 1_498_793_710_000_000_000]
    assert table.column("aggressor").to_pylist() == [-1, 1]
    assert table.column("size").to_pylist() == [4.70443515, 0.5]


def test_read_trades_headerless_unknown_layout_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("1,2,3\n")
    with pytest.raises(DataError, match="t.csv: headerless trade CSV with 3 columns"):
        read_trades(path)


def test_read_trades_rejects_coinbase_json(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"candles": []}))
    with pytest.raises(DataError, match="only supported for Coinbase candles"):
        read_trades(path)


# --------------------------------------------------------------------------- streaming in chunks

BAD_BARS = [
    ("bars_high_below_low.csv", "bars_high_below_low.csv row 17: high 99.0 < low 100.0"),
    ("bars_unsorted.csv", "bars_unsorted.csv row 5: timestamp 2024-01-01T02:00:00Z is before the previous row's 2024-01-01T03:00:00Z"),
    ("bars_duplicate_ts.csv", "bars_duplicate_ts.csv row 8: duplicate timestamp 2024-01-01T06:00:00Z (same as row 7)"),
    ("bars_mixed_units.csv", "bars_mixed_units.csv row 10: timestamp 1704099600 is not a plausible time as ms"),
    ("bars_overlapping.csv", "bars_overlapping.csv row 13: timestamp is 30m after the previous bar, shorter than the interval 1h"),
    ("bars_ragged.csv", "bars_ragged.csv row 6: expected 6 fields, got 5"),
    # a word in a column typed as numbers by the first chunk: the reader goes on as text
    ("bars_unparsable.csv", "bars_unparsable.csv row 5: high 'abc' is not a number"),
    ("bars_empty_value.csv", "bars_empty_value.csv row 7: volume '' is not a number"),
    ("bars_nan_price.csv", "bars_nan_price.csv row 3: close nan is not a finite positive price"),
    ("bars_bad_iso.csv", "bars_bad_iso.csv row 6: timestamp '2024-13-01T05:00:00Z' is not a Unix time or an ISO-8601"),
]
BAD_TRADES = [
    ("trades_unsorted.csv", "trades_unsorted.csv row 7: ts_event 2024-01-01T00:00:01.249Z is before the previous row's"),
    ("trades_duplicate_id.csv", "trades_duplicate_id.csv row 10: duplicate trade_id '1008' (same as row 9)"),
    ("trades_bad_side.csv", "trades_bad_side.csv row 8: side 'maybe' is not buy/sell"),
]


@pytest.mark.parametrize("interval", [None, "1h"])  # with an interval, chunks are checked as they come
@pytest.mark.parametrize("block_bytes", [97, 256, 1000])
@pytest.mark.parametrize(("name", "expected"), BAD_BARS)
def test_bar_errors_name_the_same_row_whatever_the_chunk_size(
    name: str, expected: str, block_bytes: int, interval: str | None
) -> None:
    with pytest.raises(DataError) as info:
        list(iter_bars(fixture(name), interval=interval or ("1h" if "overlapping" in name else None), block_bytes=block_bytes))
    assert str(info.value).startswith(f"{FIXTURES}/{expected}"), str(info.value)


@pytest.mark.parametrize("block_bytes", [97, 256, 1000])
@pytest.mark.parametrize(("name", "expected"), BAD_TRADES)
def test_trade_errors_name_the_same_row_whatever_the_chunk_size(name: str, expected: str, block_bytes: int) -> None:
    with pytest.raises(DataError) as info:
        list(iter_trades(fixture(name), block_bytes=block_bytes))
    assert str(info.value).startswith(f"{FIXTURES}/{expected}"), str(info.value)


def test_duplicate_non_integer_trade_ids_across_a_chunk_boundary(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    rows = [f"{1_704_067_200_000 + i},100.0,1.0,buy,x{i}" for i in range(6)]
    rows.append(f"{1_704_067_200_000 + 6},100.0,1.0,buy,x5")
    path.write_text("time,price,size,side,trade_id\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"t.csv row 7: duplicate trade_id 'x5' \(same as row 6\)"):
        list(iter_trades(path, block_bytes=100))


@pytest.mark.parametrize("block_bytes", [200, 1000, 1 << 20])
def test_chunked_import_writes_the_same_bytes_as_a_whole_file_import(tmp_path: Path, block_bytes: int) -> None:
    klines = fixture("ADABTC-1m-2021-11-27_head120.csv")
    trades = FIXTURES / "binance_coinm_trades_two_symbols.csv"

    def build(root: Path, size: int) -> dict[str, str]:
        import_path(root, klines, venue="binance", market="spot", symbol="ADABTC", interval="1m", block_bytes=size)
        import_path(root, trades, venue="binance", market="coinm", symbol=None, kind="trades", split_by="symbol",
                    block_bytes=size)
        return {str(p.relative_to(root)): p.read_bytes().hex() for p in sorted(root.rglob("*")) if p.is_file()}

    whole = build(tmp_path / "whole", 1 << 30)
    assert build(tmp_path / "chunked", block_bytes) == whole
    assert len(whole) == 6  # 1 bars + 2 trades datasets, each a manifest and one file


def test_catalog_writer_row_groups_do_not_depend_on_batch_sizes(tmp_path: Path) -> None:
    table = read_trades(fixture("btcusdt-trades.parquet"))
    cat = Catalog(tmp_path)
    cat.write(table, "x", "spot", "A", "trades", kind="trades", row_group_rows=300)
    with cat.writer("x", "spot", "B", "trades", kind="trades", row_group_rows=300) as writer:
        for start in range(0, table.num_rows, 77):
            writer.write(table.slice(start, 77))
        writer.commit()
    a, b = (next((tmp_path / "x" / "spot" / s / "trades").rglob("*.parquet")) for s in "AB")
    assert a.read_bytes() == b.read_bytes()
    assert pq.ParquetFile(a).metadata.num_row_groups == -(-table.num_rows // 300)


def test_a_failed_chunked_import_leaves_no_directory_behind(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="row 17"):
        import_path(tmp_path, fixture("bars_high_below_low.csv"), venue="x", market="spot", symbol="S", interval="1h",
                    block_bytes=200)
    assert list(tmp_path.iterdir()) == []


def test_a_csv_source_converts_only_the_columns_an_import_uses() -> None:
    from tradebus.data.sources import open_source

    path = fixture("ADABTC-1m-2021-11-27_head120.csv")  # headerless Binance kline: 12 columns
    source = open_source(path)
    assert source.preview is not None and list(source.preview.columns) == [f"f{i}" for i in range(12)]
    assert source.preview.columns["f0"].to_pylist() == ["1637971200000"]  # the first line, as text
    source.narrow(["f5", "f0", "f1"])
    frames = list(source.frames)
    assert [list(f.columns) for f in frames] == [["f0", "f1", "f5"]]  # in file order, nothing else converted
    assert frames[0].columns["f5"][0].as_py() == 36304.2
    assert len(frames[0]) == 120


def test_narrowed_imports_of_headerless_klines_and_aggtrades_keep_every_value(tmp_path: Path) -> None:
    bars = read_bars(fixture("ADABTC-1m-2021-11-27_head120.csv"))
    assert bars.num_rows == 120
    assert bars.column("volume")[0].as_py() == 36304.2  # column 6 of the file, not the close time of column 7
    assert bars.column("ts_event")[0].as_py() == (1637971200000 + 60_000) * 1_000_000
    path = tmp_path / "BTCUSDT-aggTrades.csv"
    path.write_text("26129,0.01633102,4.70443515,27781,27782,1498793709153,True,True\n")
    trades = read_trades(path)
    assert trades.column("trade_id").to_pylist() == ["26129"]  # the aggregate id, not the first/last trade ids
    assert trades.column("ts_event").to_pylist() == [1_498_793_709_153_000_000]


def test_a_missing_cell_before_a_text_cell_of_a_number_column_names_the_text_one() -> None:
    """A null before the bad cell (a Parquet text column) raised TypeError from float(None)."""
    from tradebus.data.ingest import to_float

    with pytest.raises(DataError, match=r"^f\.parquet row 2: close 'abc' is not a number$"):
        to_float("f.parquet", pa.array([None, "abc", "1.5"]), "close")
    with pytest.raises(DataError, match=r"^f\.parquet row 1: close is missing$"):
        to_float("f.parquet", pa.array([None, "1.5"]), "close")


# --------------------------------------------------------------------------- errors stop the reader


def _suspended_csv_readers() -> list[object]:
    return [
        o for o in gc.get_objects()
        if inspect.isgenerator(o) and o.gi_frame is not None and o.gi_code.co_name == "_csv_frames"
    ]


def test_import_error_in_a_later_chunk_leaves_no_csv_reader_running(tmp_path: Path) -> None:
    # The CLI holds the error (and so the import's frame) while it prints it and exits; the reader must
    # not be left at a chunk with arrow's threads reading ahead into the interpreter's exit.
    with pytest.raises(DataError, match="row 17: high 99.0 < low 100.0") as info:
        import_path(tmp_path / "catalog", fixture("bars_high_below_low.csv"), venue="binance", market="spot",
                    symbol="BTCUSDT", interval="1h", block_bytes=97)
    assert info.value is not None
    assert _suspended_csv_readers() == []


@pytest.mark.parametrize(
    ("dataset", "expected"),
    [("../../evil", "catalog dataset '../../evil' is not a valid name"), ("bars_1h", "dataset exists")],
)
def test_import_refuses_a_bad_or_existing_dataset_before_reading_the_file(
    tmp_path: Path, dataset: str, expected: str
) -> None:
    catalog = tmp_path / "catalog"
    import_path(catalog, fixture("bars_valid.csv"), venue="binance", market="spot", symbol="BTCUSDT")
    # The file's first row is bad: its error would show had the file been read first.
    with pytest.raises(DataError, match=re.escape(expected)):
        import_path(catalog, fixture("bars_negative_price.csv"), venue="binance", market="spot", symbol="BTCUSDT",
                    dataset=dataset)


@pytest.mark.parametrize("block_bytes", [300, 1 << 20])
def test_a_split_symbol_going_back_in_time_names_its_own_earlier_row(tmp_path: Path, block_bytes: int) -> None:
    """Split by symbol, a BTCUSDT row of usdm after spot's was said to be 'before the previous row's' time, the
    time of a row dozens of thousands of lines up, while the previous row was another symbol's."""
    source = FIXTURES / "binance_coinm_trades_two_symbols.csv"
    lines = source.read_text().splitlines()
    frame = pd.read_csv(source)
    last_btc = int(frame.index[frame.symbol == "BTCUSD_PERP"][-1]) + 1  # 1-based data row
    assert frame.symbol.iloc[-1] == "ETHUSD_PERP" and last_btc < len(frame)
    late = lines[1].split(",")  # the first BTCUSD_PERP trade again, under a new id, after the file's last row
    late[2] = str(int(frame.trade_id.max()) + 1)
    path = tmp_path / "trades.csv"
    path.write_text("\n".join([*lines, ",".join(late)]) + "\n")
    last_time = iso_ns(int(frame.trade_time_ms.iloc[last_btc - 1]) * 1_000_000)
    late_time = iso_ns(int(frame.trade_time_ms.iloc[0]) * 1_000_000)
    with pytest.raises(DataError, match=re.escape(f"row {len(frame) + 1}: ts_event {late_time} is before "
                                                  f"row {last_btc}'s {last_time}")):
        import_path(tmp_path / "cat", path, venue="binance", market="coinm", symbol=None, kind="trades",
                    split_by="symbol", block_bytes=block_bytes)


@pytest.mark.parametrize("interval", ["1m", None])
def test_bars_timed_by_a_kline_close_time_are_refused_naming_it(tmp_path: Path, interval: str | None) -> None:
    """A file of Binance klines timed by their close_time (open + 1m - 1 ms) was imported as open times: every
    bar stamped at 00:01:59.999 for the bar that closed at 00:01:00, 59.999 s late and off the 1m grid."""
    klines = pd.read_csv(fixture("ADABTC-1m-2021-11-27_head120.csv"), header=None)
    assert (klines[6] - klines[0] == 59_999).all()  # Binance: close_time = open_time + interval - 1 ms
    path = tmp_path / "klines.csv"
    klines[[6, 1, 2, 3, 4, 5]].set_axis(["time", "open", "high", "low", "close", "volume"], axis=1).to_csv(
        path, index=False)
    with pytest.raises(DataError, match=re.escape(f"{path} row 1: time 2021-11-27T00:00:59.999Z is 1 ms before a "
                                                  "whole second, as are all 120 times") + ".*close_time"):
        read_bars(path, interval=interval)
