"""Open-interest files into the catalog (``tradebus data import-open-interest``) and back through the replay.

The inputs are written here in the venues' documented formats (Binance ``openInterestHist`` and
``openInterest``, Binance Vision ``metrics`` CSV, Bybit v5 ``open-interest``); the expected rows
are read off them by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tradebus.data.catalog import Catalog
from tradebus.data.cli import data_app
from tradebus.data.open_interest import import_open_interest, read_open_interest
from tradebus.data.replay import Replay, ReplaySource
from tradebus.engine.messages import OpenInterest
from tradebus.errors import DataError

MS = 1_000_000
BINANCE_HIST = [
    {"symbol": "BTCUSDT", "sumOpenInterest": "20403.63700000", "sumOpenInterestValue": "150570784.07809979",
     "timestamp": "1583127900000"},
    {"symbol": "BTCUSDT", "sumOpenInterest": "20401.36700000", "sumOpenInterestValue": "149940752.14464448",
     "timestamp": "1583128200000"},
]
BYBIT = {"retCode": 0, "retMsg": "OK", "result": {"symbol": "BTCUSD", "category": "inverse", "list": [
    {"openInterest": "461134384.00000000", "timestamp": "1669571400000"},
    {"openInterest": "461134292.00000000", "timestamp": "1669571100000"},
], "nextPageCursor": ""}, "time": 1672053548579}
VISION = """create_time,symbol,sum_open_interest,sum_open_interest_value,count_toptrader_long_short_ratio
2024-01-01 00:05:00,BTCUSDT,79785.2240000000000000,3378254052.3300000000000000,1.2
2024-01-01 00:10:00,BTCUSDT,79811.6290000000000000,3377745449.2800000000000000,1.2
"""


def write(tmp: Path, name: str, content: object) -> Path:
    path = tmp / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


@pytest.mark.parametrize(
    ("name", "content", "symbol", "expected"),
    [
        ("hist.json", BINANCE_HIST, "BTCUSDT", [(1583127900000, 20403.637), (1583128200000, 20401.367)]),
        ("now.json", {"openInterest": "10659.509", "symbol": "BTCUSDT", "time": 1589437530011}, "BTCUSDT",
         [(1589437530011, 10659.509)]),
        # newest first in the file, sorted here
        ("bybit.json", BYBIT, "BTCUSD", [(1669571100000, 461134292.0), (1669571400000, 461134384.0)]),
        # 2024-01-01 00:05:00 UTC = 1704067500 s
        ("metrics.csv", VISION, "BTCUSDT", [(1704067500000, 79785.224), (1704067800000, 79811.629)]),
    ],
)
def test_each_format_reads_to_hand_checked_rows(
    tmp_path: Path, name: str, content: object, symbol: str, expected: list[tuple[int, float]]
) -> None:
    ts, values, _ = read_open_interest(write(tmp_path, name, content), symbol)
    assert [(int(t) // MS, float(v)) for t, v in zip(ts, values, strict=True)] == expected


def test_import_replays_as_open_interest_messages(tmp_path: Path) -> None:
    path = write(tmp_path, "hist.json", BINANCE_HIST)
    manifest = import_open_interest(path, tmp_path / "cat", "binance_usdm", "usdm", "BTCUSDT")
    assert manifest.rows == 2
    table = Catalog(tmp_path / "cat").read("binance_usdm", "usdm", "BTCUSDT", "open_interest")
    assert table.column("ts_init").to_pylist() == table.column("ts_event").to_pylist() == [
        1583127900000 * MS, 1583128200000 * MS,
    ]
    source = ReplaySource.from_catalog(tmp_path / "cat", "BTCUSDT.BINANCE", "binance_usdm", "usdm", "BTCUSDT", "open_interest")
    messages = list(Replay([source]))
    assert [type(m) for m in messages] == [OpenInterest, OpenInterest]
    assert [m.open_interest for m in messages] == [20403.637, 20401.367]


@pytest.mark.parametrize(
    ("content", "symbol", "message"),
    [
        (BINANCE_HIST, "ETHUSDT", "row 1: symbol 'BTCUSDT', importing 'ETHUSDT'"),
        ([{**BINANCE_HIST[0], "sumOpenInterest": "abc"}], "BTCUSDT", "row 1: sumOpenInterest 'abc' is not a number"),
        ([{**BINANCE_HIST[0], "sumOpenInterest": "-1"}], "BTCUSDT", "row 1: sumOpenInterest '-1' must be a finite"),
        ([{k: v for k, v in BINANCE_HIST[0].items() if k != "timestamp"}], "BTCUSDT", "row 1: timestamp None"),
        ([BINANCE_HIST[0], BINANCE_HIST[0]], "BTCUSDT", "two rows at time 1583127900000000000"),
        # in seconds, it was stored as 1970-01-19
        ([{**BINANCE_HIST[0], "timestamp": "1583127900"}], "BTCUSDT",
         "row 1: timestamp 1583127900 is not a plausible time in milliseconds"),
        ([{**BINANCE_HIST[0], "timestamp": "1583127900000000"}], "BTCUSDT", "(expected years 2000..2100; seconds or"),
        ({"foo": 1}, "BTCUSDT", "not a known open-interest file"),
        ("create_time,symbol\n", "BTCUSDT", "needs the columns create_time and sum_open_interest"),
        ("create_time,symbol,sum_open_interest\n2024-13-01 00:00:00,BTCUSDT,1\n", "BTCUSDT",
         "row 1: create_time '2024-13-01 00:00:00'"),
        ("[1, 2", "BTCUSDT", "not valid JSON"),
        ([], "BTCUSDT", "no open-interest rows"),
    ],
)
def test_bad_files_name_what_and_where_and_write_nothing(
    tmp_path: Path, content: object, symbol: str, message: str
) -> None:
    path = write(tmp_path, "bad.json", content)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        import_open_interest(path, tmp_path / "cat", "binance_usdm", "usdm", symbol)
    assert str(path) in str(info.value)
    assert not (tmp_path / "cat" / "binance_usdm").exists()


def test_cli_imports_and_refuses_a_second_import_without_overwrite(tmp_path: Path) -> None:
    path = write(tmp_path, "bybit.json", BYBIT)
    args = ["import-open-interest", str(path), "--venue", "bybit", "--market", "inverse", "--symbol", "BTCUSD",
            "--catalog", str(tmp_path / "cat")]
    runner = CliRunner()
    first = runner.invoke(data_app, args, terminal_width=200)
    assert first.exit_code == 0, first.output
    assert "bybit/inverse/BTCUSD/open_interest: 2 rows" in first.output
    again = runner.invoke(data_app, args, terminal_width=200)
    assert again.exit_code != 0 and "Traceback" not in again.output
    assert runner.invoke(data_app, [*args, "--overwrite"]).exit_code == 0
