"""OKX v5 candle pages into bar datasets: hand-checked bars, volume units, unfinished candles, overlaps, bad rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tradebus.data.catalog import Catalog
from tradebus.data.cli import data_app
from tradebus.data.okx_candles import import_okx_candles
from tradebus.errors import DataError

OKX = Path(__file__).resolve().parents[1] / "fixtures" / "okx"
FULL = OKX / "http_get_candlesticks_full.json"  # newest first, both finished, contract volumes
OLD = OKX / "http_get_candlesticks.json"  # ascending, both confirm 0
MS = 1_000_000


def page(tmp_path: Path, name: str, rows: list[list[str]], code: str = "0") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"code": code, "msg": "" if code == "0" else "Parameter bar error", "data": rows}))
    return path


def full_rows() -> list[list[str]]:
    return json.loads(FULL.read_text())["data"]


def bars(root: Path, market: str = "swap", dataset: str = "bars_1m") -> list[dict[str, float]]:
    return Catalog(root).read("okx", market, "BTC-USDT-SWAP", dataset).to_pylist()


def test_a_newest_first_page_becomes_close_stamped_bars_with_base_volume(tmp_path: Path) -> None:
    manifest = import_okx_candles(FULL, tmp_path / "cat", "BTC-USDT-SWAP", interval="1m", market="swap")
    got = bars(tmp_path / "cat")
    # by hand from the file: oldest candle opens 1747093980000 ms, closes a minute later; volume = volCcy (BTC)
    assert got == [
        {"ts_event": 1_747_094_040_000 * MS, "ts_init": 1_747_094_040_000 * MS, "open": 102806.0, "high": 102820.5,
         "low": 102783.1, "close": 102806.1, "volume": 71.6404},
        {"ts_event": 1_747_094_100_000 * MS, "ts_init": 1_747_094_100_000 * MS, "open": 102806.1, "high": 102820.4,
         "low": 102806.1, "close": 102820.4, "volume": 10.4037},
    ]
    assert manifest.interval_ns == 60 * 10**9 and manifest.quality == {"status": "ok"}
    assert "volume: volCcy (base currency; vol counts contracts)" in manifest.notes
    spot = import_okx_candles(FULL, tmp_path / "cat", "BTC-USDT-SWAP", market="spot")  # interval detected
    assert spot.interval_ns == 60 * 10**9
    assert [b["volume"] for b in bars(tmp_path / "cat", "spot")] == [7164.04, 1040.37]  # vol on spot


def test_an_unfinished_candle_is_dropped_only_when_newest(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"http_get_candlesticks.json row 1: field confirm: '0' \(a candle still forming\) "
                                        "is not the newest candle"):
        import_okx_candles(OLD, tmp_path / "cat", "BTC-USDT", interval="1m")
    assert not any((tmp_path / "cat").rglob("*.parquet"))
    rows = json.loads(OLD.read_text())["data"]
    rows[0][8] = "1"  # the older candle finished; the newer (1625097660000) still forming
    manifest = import_okx_candles(page(tmp_path, "p.json", rows), tmp_path / "cat", "BTC-USDT", interval="1m")
    table = Catalog(tmp_path / "cat").read("okx", "spot", "BTC-USDT", "bars_1m").to_pylist()
    assert [(r["ts_event"], r["open"], r["volume"]) for r in table] == [(1_625_097_660_000 * MS, 33528.6, 778.838)]
    assert "the newest candle was still forming (confirm 0) and was dropped" in manifest.notes


def test_pages_in_any_order_and_a_shared_candle_are_joined_once(tmp_path: Path) -> None:
    rows = full_rows()
    older = page(tmp_path, "older.json", [rows[1], ["1747093920000", "102790", "102810", "102785.5", "102806", "500",
                                                    "5", "514000", "1"]])  # repeats rows[1], adds the minute before
    manifest = import_okx_candles([FULL, older], tmp_path / "cat", "BTC-USDT-SWAP", interval="1m", market="swap")
    assert [b["ts_event"] // MS for b in bars(tmp_path / "cat")] == [1_747_093_980_000, 1_747_094_040_000, 1_747_094_100_000]
    assert manifest.rows == 3
    assert "1 candle(s) repeated by overlapping pages skipped (equal to the ones taken)" in manifest.notes
    changed = [list(rows[1]), rows[0]]
    changed[0][4] = "102806.2"  # the shared candle's close differs
    with pytest.raises(DataError, match=rf"{tmp_path}/changed.json row 1: candle at 1747093980000 ms differs from {older} row 1"):
        import_okx_candles([older, page(tmp_path, "changed.json", changed)], tmp_path / "cat2", "BTC-USDT-SWAP", market="swap")


def _with(field: int, value: str) -> list[list[str]]:
    rows = full_rows()
    rows[1][field] = value
    return rows


@pytest.mark.parametrize(
    ("rows", "code", "expected"),
    [
        (_with(2, "102700"), "0", "p.json row 2: high 102700.0 < low 102783.1"),
        (_with(3, "-1"), "0", "p.json row 2: low -1.0 is not a finite positive price"),
        (_with(6, "nan"), "0", "p.json row 2: volume nan is not a finite number"),
        (_with(4, "x"), "0", "p.json row 2: field c: 'x' is not a number"),
        (_with(0, "1747093980"), "0", "p.json row 2: field ts: '1747093980' is not a Unix time in ms"),
        (_with(8, "2"), "0", "p.json row 2: field confirm: '2' is not 0 (forming) or 1 (finished)"),
        ([full_rows()[0][:8]], "0", "p.json row 1: expected the 9 fields"),
        (_with(0, "1747094010000"), "0", "p.json row 1: field ts: 1747094040000 is less than the interval 1m after"),
        (full_rows(), "51000", "p.json: OKX error response code '51000'"),
    ],
)
def test_bad_pages_are_refused_naming_file_row_and_field(
    tmp_path: Path, rows: list[list[str]], code: str, expected: str
) -> None:
    with pytest.raises(DataError) as err:
        import_okx_candles(page(tmp_path, "p.json", rows, code), tmp_path / "cat", "BTC-USDT-SWAP", interval="1m",
                           market="swap")
    assert expected in str(err.value)
    assert not any(p.is_file() for p in (tmp_path / "cat").rglob("*"))


def test_cli_imports_pages_and_exits_non_zero_on_a_bad_one(tmp_path: Path) -> None:
    args = ["--symbol", "BTC-USDT-SWAP", "--market", "swap", "--catalog", str(tmp_path / "cat")]
    result = CliRunner().invoke(data_app, ["import-okx-candles", str(OLD), *args])
    assert result.exit_code != 0 and "field confirm" in result.output
    result = CliRunner().invoke(data_app, ["import-okx-candles", str(FULL), "--interval", "1m", *args])
    assert result.exit_code == 0, result.output
    assert "okx/swap/BTC-USDT-SWAP/bars_1m" in result.output and len(bars(tmp_path / "cat")) == 2


def test_cli_takes_okx_utc_bars_and_exits_2_on_a_bad_option_value(tmp_path: Path) -> None:
    """Before, --interval 1Dutc (an OKX bar: days opening at 00:00 UTC) exited 3, the code of bad data."""
    days = [[str(1_747_008_000_000 - i * 86_400_000), "102806", "102820.5", "102783.1", "102806.1", "7164.04",
             "71.6404", "7364701.57952", "1"] for i in range(3)]  # 2025-05-12, 11 and 10 at 00:00 UTC, newest first
    pages = page(tmp_path, "days.json", days)
    args = ["--symbol", "BTC-USDT-SWAP", "--market", "swap", "--catalog", str(tmp_path / "cat")]
    result = CliRunner().invoke(data_app, ["import-okx-candles", str(pages), "--interval", "1Dutc", *args])
    assert result.exit_code == 0, result.output
    assert [b["ts_event"] // MS for b in bars(tmp_path / "cat", dataset="bars_1d")] == [
        1_746_921_600_000, 1_747_008_000_000, 1_747_094_400_000]  # stamped at their close, 2025-05-11, 12 and 13
    for option, value, expected in (("--interval", "1Mutc", "is in months"), ("--interval", "2x", "'2x' is not understood"),
                                    ("--market", "perp", "market 'perp' is not one of spot, swap")):
        bad = CliRunner().invoke(data_app, ["import-okx-candles", str(pages), *args, option, value])
        assert bad.exit_code == 2 and expected in bad.output, bad.output


def test_a_single_candle_page_needs_the_interval(tmp_path: Path) -> None:
    one = page(tmp_path, "one.json", full_rows()[:1])
    with pytest.raises(DataError, match="one.json: cannot detect the bar interval"):
        import_okx_candles(one, tmp_path / "cat", "BTC-USDT-SWAP", market="swap")
    manifest = import_okx_candles(one, tmp_path / "cat", "BTC-USDT-SWAP", interval="1m", market="swap")
    assert manifest.rows == 1 and manifest.end_ns == 1_747_094_100_000 * MS


def test_a_given_interval_no_two_candles_are_apart_is_refused(tmp_path: Path) -> None:
    """Three daily candles (opening 2025-05-10, 11 and 12 at 00:00 UTC) imported with --interval 1H were taken
    as 1-hour bars: stamped at open + 1 h, each close 23 hours before the candle closed (lookahead), and the
    manifest's interval (a perpetual's bar length from its first bar) an hour; the import said only 'gaps'.
    A file's import refuses that interval; the pages' import now does too, naming the spacing found."""
    days = [[str(1_747_008_000_000 - i * 86_400_000), "102806", "102820.5", "102783.1", "102806.1", "7164.04",
             "71.6404", "7364701.57952", "1"] for i in range(3)]
    pages = page(tmp_path, "days.json", days)
    with pytest.raises(DataError, match=r"days.json: the interval given is 1h, but no two consecutive bars of the first 3 "
                                        r"are 1h apart \(ts: the closest 1d, most 1d\)"):
        import_okx_candles(pages, tmp_path / "cat", "BTC-USDT-SWAP", interval="1H", market="swap")
    assert not any((tmp_path / "cat").rglob("*.parquet"))
    manifest = import_okx_candles(pages, tmp_path / "cat", "BTC-USDT-SWAP", interval="1Dutc", market="swap")
    assert manifest.interval_ns == 86_400 * 10**9 and manifest.rows == 3
