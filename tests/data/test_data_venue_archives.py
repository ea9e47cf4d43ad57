"""``tradebus data download bybit`` and ``tradebus data download okx`` against a local HTTP server.

The server (127.0.0.1, started by each test) serves the venues' archive layouts, built from real trades
(``tests/fixtures/data/SOURCES.md``): Bybit v5 ``publicTrade`` rows of 2026-08-09 (SOLUSDT linear, BTCUSDT spot)
written in ``public.bybit.com``'s CSV layouts, and OKX v5 ``trades`` rows of BTC-USDT of 2022-05-13 written in
the layout of OKX's daily trade zips. The stored datasets are compared with those rows read by pandas.
"""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.data.test_data_binance_vision import Server
from tradebus.data import bybit_archive, okx_archive
from tradebus.data.catalog import Catalog
from tradebus.data.cli import data_app

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"
BYBIT_LINEAR = "trading/SOLUSDT/SOLUSDT2026-08-09.csv.gz"
BYBIT_SPOT = "spot/BTCUSDT/BTCUSDT_2026-08-09.csv.gz"
OKX_DAY = "trades/daily/20220513/BTC-USDT-trades-2022-05-13.zip"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(data_app, list(args))
    return result.exit_code, result.output


def bybit_rows(market: str) -> list[dict[str, object]]:
    return json.loads((FIXTURES / "bybit_publictrade_2026-08-09.json").read_text())[market]


def bybit_csv_gz(market: str) -> bytes:
    """The recorded trades in the layout of Bybit's archives of ``market`` (linear: seconds; spot: ms)."""
    if market == "spot":
        lines = ["id,timestamp,price,volume,side,rpi"]
        lines += [f"{t['i']},{t['T']},{t['p']},{t['v']},{str(t['S']).lower()},0" for t in bybit_rows("spot")]
    else:
        lines = ["timestamp,symbol,side,size,price,tickDirection,trdMatchID,grossValue,homeNotional,foreignNotional"]
        for t in bybit_rows("linear"):
            price, size = float(t["p"]), float(t["v"])  # type: ignore[arg-type]
            lines.append(f"{int(t['T']) / 1000:.4f},{t['s']},{t['S']},{t['v']},{t['p']},{t['L']},{t['i']},"  # type: ignore[call-overload]
                         f"{price * size * 1e8:.0f},{t['v']},{price * size:.8g}")
    return gzip.compress(("\n".join(lines) + "\n").encode())


def okx_rows() -> list[dict[str, str]]:
    return json.loads((FIXTURES / "okx_trades_btc-usdt_2022-05-13.json").read_text())


def okx_zip() -> bytes:
    """The recorded BTC-USDT trades in the layout of OKX's daily trade zips."""
    lines = ["instrument_name,trade_id,side,price,size,created_time"]
    lines += [f"{t['instId']},{t['tradeId']},{t['side']},{t['px']},{t['sz']},{t['ts']}" for t in okx_rows()]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("BTC-USDT-trades-2022-05-13.csv", "\n".join(lines) + "\n")
    return buffer.getvalue()


def publish(server: Server, rel: str, body: bytes) -> Path:
    path = server.root / "data" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    return path


def expected(ts_ms: list[int], prices: list[str], sizes: list[str], sides: list[str]) -> pd.DataFrame:
    """Trades as the catalog should hold them, in the file's order (a stable sort by time)."""
    frame = pd.DataFrame({
        "ts_event": np.asarray(ts_ms, dtype="int64") * 1_000_000,
        "price": pd.to_numeric(pd.Series(prices)),
        "size": pd.to_numeric(pd.Series(sizes)),
        "aggressor": [1 if s.lower() == "buy" else -1 for s in sides],
    })
    return frame.sort_values("ts_event", kind="stable").reset_index(drop=True)


def stored(root: Path, venue: str, market: str, symbol: str) -> pd.DataFrame:
    table = Catalog(root).read(venue, market, symbol, "trades").to_pandas()
    return table[["ts_event", "price", "size", "aggressor"]].astype({"aggressor": "int64"}).reset_index(drop=True)


def bybit(server: Server, tmp_path: Path, *extra: str, start: str = "2026-08-08", end: str = "2026-08-10",
          symbol: str = "SOLUSDT", market: str = "linear") -> tuple[int, str]:
    return run("download", "bybit", "--symbol", symbol, "--market", market, "--start", start, "--end", end,
               "--base-url", server.url, "--cache-dir", str(tmp_path / "cache"), "--catalog", str(tmp_path / "cat"),
               *extra)


def okx(server: Server, tmp_path: Path, *extra: str, start: str = "2022-05-12", end: str = "2022-05-13") -> tuple[int, str]:
    return run("download", "okx", "--symbol", "BTC-USDT", "--start", start, "--end", end, "--base-url", server.url,
               "--cache-dir", str(tmp_path / "cache"), "--catalog", str(tmp_path / "cat"), *extra)


def test_bybit_linear_trades_are_downloaded_and_imported_with_the_missing_days_skipped(
    server: Server, tmp_path: Path
) -> None:
    publish(server, BYBIT_LINEAR, bybit_csv_gz("linear"))
    code, out = bybit(server, tmp_path)
    assert code == 0, out
    assert "3 archives: 1 downloaded, 0 reused (verified), 2 missing, 0 refused" in out
    assert "warning: 2 of the 3 periods are not published on the server and are skipped: 2026-08-08, 2026-08-10" in out
    rows = bybit_rows("linear")
    reference = expected([int(t["T"]) for t in rows], [str(t["p"]) for t in rows],  # type: ignore[call-overload]
                         [str(t["v"]) for t in rows], [str(t["S"]) for t in rows])
    assert len(reference) == 165
    pd.testing.assert_frame_equal(stored(tmp_path / "cat", "bybit", "linear", "SOLUSDT"), reference)
    manifest = Catalog(tmp_path / "cat").manifest("bybit", "linear", "SOLUSDT", "trades")
    assert manifest.contract_size == 1.0
    assert set(server.requests) == {f"/data/trading/SOLUSDT/SOLUSDT2026-08-{d}.csv.gz" for d in ("08", "09", "10")}


def test_bybit_spot_trades_follow_the_spot_layout(server: Server, tmp_path: Path) -> None:
    publish(server, BYBIT_SPOT, bybit_csv_gz("spot"))
    code, out = bybit(server, tmp_path, symbol="BTCUSDT", market="spot", start="2026-08-09", end="2026-08-09")
    assert code == 0, out
    rows = bybit_rows("spot")
    reference = expected([int(t["T"]) for t in rows], [str(t["p"]) for t in rows],  # type: ignore[call-overload]
                         [str(t["v"]) for t in rows], [str(t["S"]) for t in rows])
    pd.testing.assert_frame_equal(stored(tmp_path / "cat", "bybit", "spot", "BTCUSDT"), reference)
    assert server.requests == ["/data/spot/BTCUSDT/BTCUSDT_2026-08-09.csv.gz"]


def test_bybit_truncated_archive_is_refused_naming_it_and_nothing_is_written(server: Server, tmp_path: Path) -> None:
    body = bybit_csv_gz("linear")
    publish(server, BYBIT_LINEAR, body[: len(body) * 2 // 3])  # served whole: a file cut short at the source
    code, out = bybit(server, tmp_path)
    assert code == 3, out
    assert "refused: SOLUSDT2026-08-09.csv.gz: is not a complete gzip file" in out
    assert "1 archive(s) refused; nothing was imported" in out
    assert not (tmp_path / "cat").exists()
    assert [p.name for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []


def test_bybit_archive_of_another_layout_is_refused(server: Server, tmp_path: Path) -> None:
    publish(server, BYBIT_LINEAR, bybit_csv_gz("spot"))  # a spot file where a linear one belongs
    code, out = bybit(server, tmp_path)
    assert code == 3, out
    assert "refused: SOLUSDT2026-08-09.csv.gz: header 'id,timestamp,price,volume,side,rpi' is not Bybit's linear" in out
    assert not (tmp_path / "cat").exists()


def test_bybit_interrupted_download_is_resumed_and_a_complete_archive_reused(server: Server, tmp_path: Path) -> None:
    publish(server, BYBIT_LINEAR, bybit_csv_gz("linear"))
    publish(server, "trading/SOLUSDT/SOLUSDT2026-08-10.csv.gz", bybit_csv_gz("linear"))
    server.cut = {"/data/trading/SOLUSDT/SOLUSDT2026-08-10.csv.gz"}  # the connection drops halfway
    code, out = bybit(server, tmp_path)
    assert code == 3, out
    assert "refused: SOLUSDT2026-08-10.csv.gz: download failed" in out
    assert not (tmp_path / "cat").exists()
    cached = sorted(p.name for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert cached == ["SOLUSDT2026-08-09.csv.gz"]  # the complete one kept, no .part left of the other
    (server.root / "data" / "trading/SOLUSDT/SOLUSDT2026-08-10.csv.gz").unlink()  # the server no longer has it
    server.cut, server.requests = set(), []
    code, out = bybit(server, tmp_path)
    assert code == 0, out
    assert "3 archives: 0 downloaded, 1 reused (verified), 2 missing, 0 refused" in out
    assert "/data/" + BYBIT_LINEAR not in server.requests  # reused without asking the server
    assert len(stored(tmp_path / "cat", "bybit", "linear", "SOLUSDT")) == 165


def test_bybit_nothing_published_is_an_error(server: Server, tmp_path: Path) -> None:
    code, out = bybit(server, tmp_path, start="2026-08-09", end="2026-08-10")
    assert code == 3, out
    assert f"none of the 2 archives is published: {server.url}/{BYBIT_LINEAR} answered HTTP 404" in out
    assert not (tmp_path / "cat").exists()


def test_okx_trades_are_downloaded_and_imported_with_the_missing_day_skipped(server: Server, tmp_path: Path) -> None:
    publish(server, OKX_DAY, okx_zip())
    code, out = okx(server, tmp_path)
    assert code == 0, out
    assert "2 archives: 1 downloaded, 0 reused (verified), 1 missing, 0 refused" in out
    assert "warning: 1 of the 2 periods are not published on the server and are skipped: 2022-05-12" in out
    rows = okx_rows()
    reference = expected([int(t["ts"]) for t in rows], [t["px"] for t in rows], [t["sz"] for t in rows],
                         [t["side"] for t in rows])
    assert len(reference) == 69
    pd.testing.assert_frame_equal(stored(tmp_path / "cat", "okx", "spot", "BTC-USDT"), reference)
    assert Catalog(tmp_path / "cat").manifest("okx", "spot", "BTC-USDT", "trades").contract_size == 1.0
    assert sorted(server.requests) == ["/data/trades/daily/20220512/BTC-USDT-trades-2022-05-12.zip", "/data/" + OKX_DAY]


def test_okx_corrupt_archive_is_refused_naming_it_and_nothing_is_written(server: Server, tmp_path: Path) -> None:
    raw = bytearray(okx_zip())
    raw[60:70] = bytes(b ^ 0xFF for b in raw[60:70])  # inside the compressed member
    publish(server, OKX_DAY, bytes(raw))
    code, out = okx(server, tmp_path)
    assert code == 3, out
    assert "refused: BTC-USDT-trades-2022-05-13.zip:" in out and "corrupt" in out
    assert not (tmp_path / "cat").exists()
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []


def test_okx_interrupted_download_is_resumed(server: Server, tmp_path: Path) -> None:
    publish(server, OKX_DAY, okx_zip())
    server.cut = {"/data/" + OKX_DAY}
    code, out = okx(server, tmp_path)
    assert code == 3, out
    assert "refused: BTC-USDT-trades-2022-05-13.zip: download failed" in out
    assert not (tmp_path / "cat").exists()
    server.cut = set()
    code, out = okx(server, tmp_path)
    assert code == 0, out
    assert "1 downloaded, 0 reused" in out
    server.requests = []
    code, out = okx(server, tmp_path, "--overwrite")
    assert code == 0, out
    assert "2 archives: 0 downloaded, 1 reused (verified), 1 missing, 0 refused" in out
    assert "/data/" + OKX_DAY not in server.requests
    assert len(stored(tmp_path / "cat", "okx", "spot", "BTC-USDT")) == 69


def test_archive_paths_follow_the_venues_layouts() -> None:
    days = (date(2024, 11, 30), date(2024, 12, 1))
    assert [a.path for a in bybit_archive.archives("inverse", "BTCUSD", *days)] == [
        "trading/BTCUSD/BTCUSD2024-11-30.csv.gz", "trading/BTCUSD/BTCUSD2024-12-01.csv.gz"]
    assert [a.path for a in bybit_archive.archives("spot", "BTCUSDT", *days)] == [
        "spot/BTCUSDT/BTCUSDT_2024-11-30.csv.gz", "spot/BTCUSDT/BTCUSDT_2024-12-01.csv.gz"]
    assert [a.path for a in okx_archive.archives("swap", "BTC-USDT-SWAP", *days)] == [
        "trades/daily/20241130/BTC-USDT-SWAP-trades-2024-11-30.zip",
        "trades/daily/20241201/BTC-USDT-SWAP-trades-2024-12-01.zip"]


@pytest.mark.parametrize(("venue", "market"), [("bybit", "perp"), ("okx", "linear")])
def test_an_unknown_market_is_a_bad_option_before_any_request(
    server: Server, tmp_path: Path, venue: str, market: str
) -> None:
    code, out = run("download", venue, "--symbol", "BTCUSDT", "--market", market, "--start", "2024-12-01",
                    "--end", "2024-12-01", "--base-url", server.url, "--cache-dir", str(tmp_path / "cache"),
                    "--catalog", str(tmp_path / "cat"))
    assert code == 2, out
    assert f"--market {market!r} is not" in out
    assert server.requests == [] and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("venue", ["bybit", "okx"])
def test_help_says_no_checksum_is_published(venue: str) -> None:
    code, out = run("download", venue, "--help")
    assert code == 0, out
    text = " ".join(out.split())
    assert "publishes no checksum" in text and "--base-url" in text and "--cache-dir" in text
