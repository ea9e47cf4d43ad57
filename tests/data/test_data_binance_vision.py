"""``tradebus data download binance`` against a local HTTP server serving the Vision layout.

The archives are built from real files: Binance Vision ADABTC 1m klines (2021-11-27/28,
ms timestamps) and Binance spot BTCUSDT trades of 2021-01-08 written in the Vision
trades layout with µs timestamps (the unit Binance uses since 2025).
"""

from __future__ import annotations

import hashlib
import http.server
import os
import re
import signal
import subprocess
import sys
import threading
import time
import zipfile
from datetime import date
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tests.data.test_data_catalog import tree_hashes
from tests.file_size_limit import cli_under_file_size_limit
from tests.reaped import reaped
from tradebus.data.binance_vision import archives, fetch, import_archives
from tradebus.data.catalog import Catalog
from tradebus.data.cli import data_app
from tradebus.data.ingest import read_bars

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"
KLINES = "spot/daily/klines/ADABTC/1m"
TRADES = "spot/daily/trades/BTCUSDT"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


class Server:
    """A Vision-layout tree served on 127.0.0.1, counting the requests per path."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str] = []
        self.cut: set[str] = set()  # paths whose body is cut short: the connection closes mid-download
        self.hold: threading.Event | None = None  # set: every zip is answered only once it is set
        self.held = threading.Event()  # a zip request is waiting for ``hold``
        self.meet: threading.Barrier | None = None  # set: each zip's body is sent half, then the rest once all meet
        self.errors: dict[str, list[int]] = {}  # path -> statuses answered (with Retry-After: 0) before the file
        outer = self

        class Handler(_Quiet):
            def do_GET(self) -> None:  # noqa: N802
                outer.requests.append(self.path)
                if outer.errors.get(self.path):
                    self.send_response(outer.errors[self.path].pop(0))
                    self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if outer.hold is not None and self.path.endswith(".zip"):
                    outer.held.set()
                    outer.hold.wait(60)
                if outer.meet is not None and self.path.endswith(".zip"):
                    body = (outer.root / self.path.lstrip("/")).read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    outer.meet.wait()
                    for i in range(len(body) // 2, len(body), 256):  # the rest slowly
                        self.wfile.write(body[i : i + 256])
                        self.wfile.flush()
                        time.sleep(0.01)
                    return
                if self.path in outer.cut:
                    body = (outer.root / self.path.lstrip("/")).read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.close_connection = True
                    return
                super().do_GET()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/data"

    def publish(self, rel: str, csv_bytes: bytes, *, corrupt: bool = False, wrong_checksum: bool = False) -> Path:
        path = self.root / "data" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(path.name.replace(".zip", ".csv"), csv_bytes)
        if corrupt:  # flip bytes inside the compressed member; the checksum is of the corrupt file
            raw = bytearray(path.read_bytes())
            raw[60:70] = bytes(b ^ 0xFF for b in raw[60:70])
            path.write_bytes(bytes(raw))
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if wrong_checksum:
            digest = hashlib.sha256(b"something else").hexdigest()
        (path.parent / (path.name + ".CHECKSUM")).write_text(f"{digest}  {path.name}\n")
        return path


def klines(day: str) -> bytes:
    return (FIXTURES / f"ADABTC-1m-{day}_head120.csv").read_bytes()


def trades_us() -> bytes:
    table = pq.read_table(FIXTURES / "btcusdt-trades.parquet").to_pandas()
    us = table["timestamp"].astype("int64") * 1_000  # the fixture's ms times, written in µs
    lines = [
        f"{tid},{price},{qty},{price * qty:.8f},{t},{maker},True"
        for tid, price, qty, t, maker in zip(
            table["trade_id"], table["price"], table["quantity"], us, table["buyer_maker"], strict=True
        )
    ]
    return ("\n".join(lines) + "\n").encode()


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(data_app, list(args))
    return result.exit_code, result.output


def test_archive_paths_follow_the_vision_layout() -> None:
    days = archives("um", "klines", "BTCUSDT", date(2021, 1, 30), date(2021, 2, 1), interval="1h")
    assert [a.path for a in days] == [
        "futures/um/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2021-01-30.zip",
        "futures/um/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2021-01-31.zip",
        "futures/um/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2021-02-01.zip",
    ]
    months = archives("spot", "aggTrades", "ETHBTC", date(2020, 12, 5), date(2021, 1, 2), monthly=True)
    assert [a.path for a in months] == [
        "spot/monthly/aggTrades/ETHBTC/ETHBTC-aggTrades-2020-12.zip",
        "spot/monthly/aggTrades/ETHBTC/ETHBTC-aggTrades-2021-01.zip",
    ]


def test_download_klines_imports_verified_days_and_lists_the_missing_one(server: Server, tmp_path: Path) -> None:
    for day in ("2021-11-27", "2021-11-28"):
        server.publish(f"{KLINES}/ADABTC-1m-{day}.zip", klines(day))
    args = ["download", "binance", "--symbol", "ADABTC", "--interval", "1m", "--start", "2021-11-26",
            "--end", "2021-11-28", "--base-url", server.url, "--cache-dir", str(tmp_path / "cache"),
            "--catalog", str(tmp_path / "cat"), "--workers", "2"]
    code, out = run(*args)
    assert code == 0, out
    assert "3 archives: 2 downloaded, 0 reused (verified), 1 missing, 0 refused" in out
    assert "missing (not published): 2021-11-26" in out
    stored = Catalog(tmp_path / "cat").read("binance", "spot", "ADABTC", "bars_1m")
    expected = [read_bars(FIXTURES / f"ADABTC-1m-{d}_head120.csv", interval="1m") for d in ("2021-11-27", "2021-11-28")]
    assert stored.num_rows == 240
    assert stored.slice(0, 120).equals(expected[0]) and stored.slice(120).equals(expected[1])
    # a re-run resumes: verified zips are reused, only checksums are fetched again
    server.requests.clear()
    code, out = run(*args, "--overwrite")
    assert code == 0, out
    assert "0 downloaded, 2 reused (verified), 1 missing" in out
    assert not [r for r in server.requests if r.endswith(".zip")]
    code, out = run(*args, "--overwrite", "--strict")
    assert code == 3 and "missing and --strict" in out


def test_download_trades_in_microseconds(server: Server, tmp_path: Path) -> None:
    server.publish(f"{TRADES}/BTCUSDT-trades-2021-01-08.zip", trades_us())
    code, out = run("download", "binance", "--symbol", "BTCUSDT", "--data", "trades", "--start", "2021-01-08",
                    "--end", "2021-01-08", "--base-url", server.url, "--cache-dir", str(tmp_path / "cache"),
                    "--catalog", str(tmp_path / "cat"))
    assert code == 0, out
    stored = Catalog(tmp_path / "cat").read("binance", "spot", "BTCUSDT", "trades")
    reference = pq.read_table(FIXTURES / "btcusdt-trades.parquet").to_pandas()
    assert stored.num_rows == len(reference) == 2001
    ms = reference["timestamp"].astype("int64").to_numpy()
    assert np.array_equal(stored.column("ts_event").to_numpy(), ms * 1_000_000)
    assert stored.column("trade_id").to_pylist()[:2] == ["553287559", "553287560"]
    assert stored.column("aggressor").to_pylist()[:2] == [-1, 1]


def test_download_usdm_agg_trades_reads_the_futures_header(server: Server, tmp_path: Path) -> None:
    """USD-M/COIN-M aggTrades archives carry a header whose time column is ``transact_time`` (ms)."""
    table = pq.read_table(FIXTURES / "btcusdt-trades.parquet").to_pandas()
    ms = table["timestamp"].astype("int64").to_numpy()
    lines = ["agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker"] + [
        f"{tid},{price},{qty},{tid},{tid},{t},{str(maker).lower()}"
        for tid, price, qty, t, maker in zip(table["trade_id"], table["price"], table["quantity"], ms,
                                             table["buyer_maker"], strict=True)
    ]
    server.publish("futures/um/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2021-01-08.zip", ("\n".join(lines) + "\n").encode())
    code, out = run("download", "binance", "--symbol", "BTCUSDT", "--market", "um", "--data", "aggTrades",
                    "--start", "2021-01-08", "--end", "2021-01-08", "--base-url", server.url,
                    "--cache-dir", str(tmp_path / "cache"), "--catalog", str(tmp_path / "cat"))
    assert code == 0, out
    stored = Catalog(tmp_path / "cat").read("binance", "usdm", "BTCUSDT", "aggtrades")
    assert stored.num_rows == len(table) == 2001
    assert np.array_equal(stored.column("ts_event").to_numpy(), ms * 1_000_000)
    assert stored.column("trade_id").to_pylist()[:2] == ["553287559", "553287560"]
    assert stored.column("aggressor").to_pylist()[:2] == [-1, 1]
    assert np.array_equal(stored.column("size").to_numpy(), table["quantity"].to_numpy())
    # USD-M quantities are in base units: recorded, so data bars needs no --contract-size (a non-spot market's
    # trades recording none are refused)
    assert Catalog(tmp_path / "cat").manifest("binance", "usdm", "BTCUSDT", "aggtrades").contract_size == 1.0
    code, out = run("bars", "binance/usdm/BTCUSDT/aggtrades", "--mode", "volume", "--threshold", "10",
                    "--catalog", str(tmp_path / "cat"))
    assert code == 0, out
    bars = Catalog(tmp_path / "cat").read("binance", "usdm", "BTCUSDT", "bars_volume_10").to_pandas()
    total = table["quantity"].sum()  # complete bars of >= 10 BTC each, the unfinished last one (< 10) not written
    assert total - 10 < bars["volume"].sum() <= total + 1e-9 and (bars["volume"] >= 10).all()


@pytest.mark.parametrize(("corrupt", "wrong_checksum", "reason"), [
    (True, False, "corrupt archive"),
    (False, True, "does not match its .CHECKSUM"),
])
def test_bad_archives_are_refused_and_nothing_is_written(
    server: Server, tmp_path: Path, corrupt: bool, wrong_checksum: bool, reason: str
) -> None:
    server.publish(f"{KLINES}/ADABTC-1m-2021-11-27.zip", klines("2021-11-27"))
    server.publish(f"{KLINES}/ADABTC-1m-2021-11-28.zip", klines("2021-11-28"), corrupt=corrupt, wrong_checksum=wrong_checksum)
    code, out = run("download", "binance", "--symbol", "ADABTC", "--interval", "1m", "--start", "2021-11-27",
                    "--end", "2021-11-28", "--base-url", server.url, "--cache-dir", str(tmp_path / "cache"),
                    "--catalog", str(tmp_path / "cat"))
    assert code == 3, out
    assert "ADABTC-1m-2021-11-28.zip" in out and reason in out and "nothing was imported" in out
    assert not (tmp_path / "cat").exists()
    assert not list((tmp_path / "cache").rglob("*2021-11-28.zip*"))  # the refused file is not kept


def test_a_checksum_file_naming_another_archive_is_refused_as_such(server: Server, tmp_path: Path) -> None:
    """A server publishing the 27th's .CHECKSUM as the 28th's was reported as "sha256 ... does not match its
    .CHECKSUM ...", as if the download were corrupt; the file names another archive, and the message now says so."""
    server.publish(f"{KLINES}/ADABTC-1m-2021-11-27.zip", klines("2021-11-27"))
    server.publish(f"{KLINES}/ADABTC-1m-2021-11-28.zip", klines("2021-11-28"))
    folder = server.root / "data" / KLINES
    other = (folder / "ADABTC-1m-2021-11-27.zip.CHECKSUM").read_bytes()
    (folder / "ADABTC-1m-2021-11-28.zip.CHECKSUM").write_bytes(other)
    item = archives("spot", "klines", "ADABTC", date(2021, 11, 28), date(2021, 11, 28), interval="1m")
    report = fetch(item, tmp_path / "cache", base_url=server.url, workers=1)
    assert report.refused == ["ADABTC-1m-2021-11-28.zip: its .CHECKSUM file names 'ADABTC-1m-2021-11-27.zip', another "
                              "archive (the server published the wrong checksum file); archive refused"]
    assert not [r for r in server.requests if r.endswith(".zip")]  # refused before the download
    assert not list((tmp_path / "cache").rglob("*.zip*"))


@pytest.mark.parametrize("cut", [".zip.CHECKSUM", ".zip"])
def test_a_download_cut_short_is_refused_and_nothing_is_written(server: Server, tmp_path: Path, cut: str) -> None:
    for day in ("2021-11-27", "2021-11-28"):
        server.publish(f"{KLINES}/ADABTC-1m-{day}.zip", klines(day))
    server.cut.add(f"/data/{KLINES}/ADABTC-1m-2021-11-28{cut}")
    code, out = run("download", "binance", "--symbol", "ADABTC", "--interval", "1m", "--start", "2021-11-27",
                    "--end", "2021-11-28", "--base-url", server.url, "--cache-dir", str(tmp_path / "cache"),
                    "--catalog", str(tmp_path / "cat"))
    assert code == 3, out
    assert "1 downloaded, 0 reused (verified), 0 missing, 1 refused" in out
    assert "refused: ADABTC-1m-2021-11-28.zip" in out and "nothing was imported" in out
    assert not (tmp_path / "cat").exists()
    assert not list((tmp_path / "cache").rglob("*2021-11-28.zip*"))  # no partial file is kept


def test_two_runs_downloading_the_same_archive_into_one_cache_both_succeed(server: Server, tmp_path: Path) -> None:
    """Two runs fetching one archive at once shared its ``.part`` file: the first renamed it onto the zip and the
    second's rename failed ("download failed: [Errno 2] No such file or directory"), so one run refused a good archive.
    Each now writes a part file of its own and renames only a verified one."""
    server.publish(f"{KLINES}/ADABTC-1m-2021-11-27.zip", klines("2021-11-27"))
    server.meet = threading.Barrier(2, timeout=30)  # both bodies are in flight before either completes
    cache = tmp_path / "cache"
    item = archives("spot", "klines", "ADABTC", date(2021, 11, 27), date(2021, 11, 27), interval="1m")
    reports: list[object] = [None, None]

    def one(i: int) -> None:
        reports[i] = fetch(item, cache, base_url=server.url, workers=1, timeout=30)

    runs = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for run_ in runs:
        run_.start()
    for run_ in runs:
        run_.join(60)
    assert [r for r in server.requests if r.endswith(".zip")] == [f"/data/{KLINES}/ADABTC-1m-2021-11-27.zip"] * 2
    for report in reports:
        assert report is not None
        assert (report.downloaded, report.refused) == (["2021-11-27"], []), report  # type: ignore[attr-defined]
    assert [p.name for p in cache.rglob("*") if p.is_file()] == ["ADABTC-1m-2021-11-27.zip"]  # no part file left
    zipped = cache / KLINES / "ADABTC-1m-2021-11-27.zip"
    with zipfile.ZipFile(zipped) as archive:
        assert archive.read("ADABTC-1m-2021-11-27.csv") == klines("2021-11-27")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_download_stopped_by_ctrl_c_or_sigterm_requests_no_further_archive(
    server: Server, tmp_path: Path, sig: signal.Signals
) -> None:
    """Ctrl-C on a long range used to go on downloading every archive still queued before stopping
    (8 of 8 zips requested here after the interrupt); it now stops at the one in flight and keeps no part of it."""
    days = [f"2021-11-{d}" for d in range(20, 28)]
    for day in days:
        server.publish(f"{KLINES}/ADABTC-1m-{day}.zip", klines("2021-11-27"))
    server.hold = threading.Event()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                         os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tradebus.cli", "data", "download", "binance", "--symbol", "ADABTC", "--interval", "1m",
         "--start", days[0], "--end", days[-1], "--base-url", server.url, "--cache-dir", str(tmp_path / "cache"),
         "--catalog", str(tmp_path / "cat"), "--workers", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
    )
    lines: list[str] = []
    stopping = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.decode(errors="replace"))
            if "binance vision: stopping" in lines[-1]:
                stopping.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert server.held.wait(120), "no archive was requested"
        proc.send_signal(sig)
        stopping.wait(60)  # the fetch has stopped: the download held in flight may now be answered
    finally:
        server.hold.set()
        with reaped(proc):
            proc.wait(120)
    reader.join(10)
    assert proc.stdout is not None
    proc.stdout.close()
    out = "".join(lines)
    assert [r for r in server.requests if r.endswith(".zip")] == [f"/data/{KLINES}/ADABTC-1m-2021-11-20.zip"], out
    assert not list((tmp_path / "cache").rglob("*.zip*")) and not (tmp_path / "cat").exists()
    assert proc.returncode == (130 if sig == signal.SIGINT else 143), out
    assert stopping.is_set(), out


def test_a_429_or_5xx_is_asked_again_after_its_retry_after(server: Server, tmp_path: Path) -> None:
    """One 503 on a checksum and a 429 then a 500 on a zip used to refuse the whole download (exit 3, nothing
    imported); each is now asked again after the Retry-After the server names, and only a fourth failure refuses."""
    for day in ("2021-11-27", "2021-11-28"):
        server.publish(f"{KLINES}/ADABTC-1m-{day}.zip", klines(day))
    day1, day2 = (f"/data/{KLINES}/ADABTC-1m-{day}.zip" for day in ("2021-11-27", "2021-11-28"))
    server.errors = {day1 + ".CHECKSUM": [503], day2: [429, 500]}
    args = ["download", "binance", "--symbol", "ADABTC", "--interval", "1m", "--start", "2021-11-27",
            "--end", "2021-11-28", "--base-url", server.url, "--cache-dir", str(tmp_path / "cache")]
    code, out = run(*args, "--catalog", str(tmp_path / "cat"))
    assert code == 0, out
    assert "2 archives: 2 downloaded, 0 reused (verified), 0 missing, 0 refused" in out
    assert server.requests.count(day1 + ".CHECKSUM") == 2 and server.requests.count(day2) == 3
    assert Catalog(tmp_path / "cat").read("binance", "spot", "ADABTC", "bars_1m").num_rows == 240
    server.requests.clear()
    server.errors = {day2 + ".CHECKSUM": [503] * 4}
    code, out = run(*args, "--catalog", str(tmp_path / "cat2"))
    assert code == 3, out
    assert "refused: ADABTC-1m-2021-11-28.zip: download failed: HTTP Error 503" in out and "nothing was imported" in out
    assert server.requests.count(day2 + ".CHECKSUM") == 4 and not (tmp_path / "cat2").exists()


def test_an_append_overlapping_the_dataset_names_both_ranges_in_utc(server: Server, tmp_path: Path) -> None:
    """The refusal used to give the ranges as ns counts ('[1637971260000000000, 1638064800000000000]')."""
    for day in ("2021-11-27", "2021-11-28"):
        server.publish(f"{KLINES}/ADABTC-1m-{day}.zip", klines(day))
    common = ["--symbol", "ADABTC", "--interval", "1m", "--base-url", server.url, "--cache-dir", str(tmp_path / "cache"),
              "--catalog", str(tmp_path / "cat")]
    code, out = run("download", "binance", "--start", "2021-11-27", "--end", "2021-11-27", *common)
    assert code == 0, out
    before = Catalog(tmp_path / "cat").manifest("binance", "spot", "ADABTC", "bars_1m")
    code, out = run("download", "binance", "--start", "2021-11-27", "--end", "2021-11-28", "--append", *common)
    assert code == 3, out
    # the fixtures' first and last bars open 2021-11-27 00:00, 01:59 and 2021-11-28 01:59: stamped at their close
    assert ("appended rows 2021-11-27T00:01:00Z .. 2021-11-28T02:00:00Z overlap the existing range "
            "2021-11-27T00:01:00Z .. 2021-11-27T02:00:00Z (ts_init)") in " ".join(out.split()), out
    assert Catalog(tmp_path / "cat").manifest("binance", "spot", "ADABTC", "bars_1m") == before


def test_a_trade_repeated_by_the_next_days_archive_names_both_archives(server: Server, tmp_path: Path) -> None:
    """The refusal said 'duplicate trade_id ... (same as row 2001)' without saying row 2001 was the previous archive's."""
    day1 = trades_us()
    last = day1.decode().splitlines()[-1]
    server.publish(f"{TRADES}/BTCUSDT-trades-2021-01-08.zip", day1)
    server.publish(f"{TRADES}/BTCUSDT-trades-2021-01-09.zip", (last + "\n").encode())
    report = fetch(archives("spot", "trades", "BTCUSDT", date(2021, 1, 8), date(2021, 1, 9)), tmp_path / "cache",
                   base_url=server.url)
    with pytest.raises(Exception, match=re.escape(
        f"{report.ready[1]} (BTCUSDT-trades-2021-01-09.csv) row 1: duplicate trade_id '553289559' "
        f"(same as row 2001 of {report.ready[0]} (BTCUSDT-trades-2021-01-08.csv))"
    )):
        import_archives(tmp_path / "cat", report.ready, market="spot", data="trades", symbol="BTCUSDT")
    assert Catalog(tmp_path / "cat").datasets() == []


def test_a_bad_row_inside_an_archive_is_named_and_nothing_is_written(server: Server, tmp_path: Path) -> None:
    rows = klines("2021-11-28").decode().splitlines()
    fields = rows[9].split(",")
    fields[2], fields[3] = fields[3], fields[2]  # high < low in data row 10
    server.publish(f"{KLINES}/ADABTC-1m-2021-11-27.zip", klines("2021-11-27"))
    server.publish(f"{KLINES}/ADABTC-1m-2021-11-28.zip", ("\n".join([*rows[:9], ",".join(fields), *rows[10:]]) + "\n").encode())
    report = fetch(archives("spot", "klines", "ADABTC", date(2021, 11, 27), date(2021, 11, 28), interval="1m"),
                   tmp_path / "cache", base_url=server.url)
    assert len(report.ready) == 2 and not report.refused
    # named by the zip in the cache, not by the CSV extracted into a temporary directory removed since
    with pytest.raises(Exception, match=re.escape(f"{report.ready[1]} (ADABTC-1m-2021-11-28.csv) row 10: high ")):
        import_archives(tmp_path / "cat", report.ready, market="spot", data="klines", symbol="ADABTC", interval="1m")
    assert Catalog(tmp_path / "cat").datasets() == []


def test_download_book_depth_imports_verified_days_into_a_book_depth_dataset(server: Server, tmp_path: Path) -> None:
    day1 = (FIXTURES / "history" / "binance_um_BTCUSDT-bookDepth-2023-06-01_head.csv").read_bytes()
    folder = "futures/um/daily/bookDepth/BTCUSDT"
    server.publish(f"{folder}/BTCUSDT-bookDepth-2023-06-01.zip", day1)
    server.publish(f"{folder}/BTCUSDT-bookDepth-2023-06-02.zip", day1.replace(b"2023-06-01", b"2023-06-02"))
    args = ["download", "binance", "--symbol", "BTCUSDT", "--market", "um", "--data", "bookDepth", "--start", "2023-06-01",
            "--end", "2023-06-02", "--base-url", server.url, "--cache-dir", str(tmp_path / "cache"),
            "--catalog", str(tmp_path / "cat")]
    code, out = run(*args)
    assert code == 0, out
    stored = Catalog(tmp_path / "cat").read("binance", "usdm", "BTCUSDT", "book_depth")
    assert stored.num_rows == 72
    assert stored.column("ts_event").to_pylist()[-1] == (1_685_577_668 + 86_400) * 10**9  # 2023-06-02T00:01:08Z
    code, out = run("download", "binance", "--symbol", "BTCUSDT", "--data", "bookDepth", "--start", "2023-06-01",
                    "--end", "2023-06-01", "--base-url", server.url, "--catalog", str(tmp_path / "cat2"))
    assert code == 2 and "futures only" in out


def test_monthly_book_depth_download_is_refused_before_any_request(server: Server, tmp_path: Path) -> None:
    """Binance publishes bookDepth daily only: --monthly asked for a month archive that is never there (listed as
    missing, then 'no verified archives'), and one that was imported whole, the days outside --start..--end too."""
    day1 = (FIXTURES / "history" / "binance_um_BTCUSDT-bookDepth-2023-06-01_head.csv").read_bytes()
    server.publish("futures/um/monthly/bookDepth/BTCUSDT/BTCUSDT-bookDepth-2023-06.zip",
                   day1 + b"".join(day1.replace(b"2023-06-01", b"2023-06-02").splitlines(keepends=True)[1:]))
    code, out = run("download", "binance", "--symbol", "BTCUSDT", "--market", "um", "--data", "bookDepth",
                    "--start", "2023-06-02", "--end", "2023-06-02", "--monthly", "--base-url", server.url,
                    "--cache-dir", str(tmp_path / "cache"), "--catalog", str(tmp_path / "cat"))
    assert code == 2 and "bookDepth is published as daily archives only: drop --monthly" in out, out
    assert server.requests == [] and not (tmp_path / "cat").exists()


def test_monthly_download_keeps_only_the_asked_days_so_a_daily_append_continues_it(
    server: Server, tmp_path: Path
) -> None:
    """A monthly archive holds the whole month: only the rows of ``[--start, --end]`` are imported."""
    month = klines("2021-11-27") + klines("2021-11-28")
    server.publish("spot/monthly/klines/ADABTC/1m/ADABTC-1m-2021-11.zip", month)
    server.publish(f"{KLINES}/ADABTC-1m-2021-11-28.zip", klines("2021-11-28"))
    common = ["--symbol", "ADABTC", "--interval", "1m", "--base-url", server.url, "--cache-dir",
              str(tmp_path / "cache"), "--catalog", str(tmp_path / "cat")]
    code, out = run("download", "binance", "--start", "2021-11-27", "--end", "2021-11-27", "--monthly", *common)
    assert code == 0, out
    stored = Catalog(tmp_path / "cat").read("binance", "spot", "ADABTC", "bars_1m")
    assert stored.equals(read_bars(FIXTURES / "ADABTC-1m-2021-11-27_head120.csv", interval="1m"))
    code, out = run("download", "binance", "--start", "2021-11-28", "--end", "2021-11-28", "--append", *common)
    assert code == 0, out
    assert Catalog(tmp_path / "cat").read("binance", "spot", "ADABTC", "bars_1m").num_rows == 240


def test_monthly_trades_download_keeps_only_the_asked_days(server: Server, tmp_path: Path) -> None:
    """Trades of a monthly archive are kept from ``--start`` 00:00 to the end of ``--end`` (UTC)."""
    server.publish("spot/monthly/trades/BTCUSDT/BTCUSDT-trades-2021-01.zip", trades_us())
    common = ["--symbol", "BTCUSDT", "--data", "trades", "--monthly", "--base-url", server.url,
              "--cache-dir", str(tmp_path / "cache")]
    code, out = run("download", "binance", "--start", "2021-01-09", "--end", "2021-01-31", *common,
                    "--catalog", str(tmp_path / "cat"))
    assert code == 3 and "no trades from 2021-01-09T00:00:00Z to before 2021-02-01T00:00:00Z" in out, out
    assert not (tmp_path / "cat").exists()
    code, out = run("download", "binance", "--start", "2021-01-01", "--end", "2021-01-08", *common,
                    "--catalog", str(tmp_path / "cat"))
    assert code == 0, out
    assert Catalog(tmp_path / "cat").read("binance", "spot", "BTCUSDT", "trades").num_rows == 2001


@pytest.mark.parametrize(("options", "said"), [
    (["--start", "2021-11-28", "--end", "2021-11-27", "--interval", "1m"], "--end 2021-11-27 is before --start 2021-11-28"),
    (["--start", "2021-11-27", "--end", "2021-11-27"], "--data klines needs --interval (1m, 1h, ...)"),
    (["--start", "2021-11-27", "--end", "2021-11-27", "--data", "trades", "--interval", "1m"],
     "--interval 1m is for klines only, not --data trades"),
    (["--start", "2021-11-27", "--end", "2021-11-27", "--market", "usdm", "--interval", "1m"],
     "--market 'usdm' is not a Binance archive market: cm, spot, um"),
    (["--start", "2021-11-27", "--end", "2021-11-27", "--data", "aggtrades"],
     "--data 'aggtrades' is not klines, trades, aggTrades or bookDepth"),
    (["--start", "2021-11-27", "--end", "2021-11-27", "--data", "bookDepth"],
     "--data bookDepth is published for futures only (--market um or cm)"),
])
def test_a_bad_download_option_is_named_by_the_flag_the_user_typed(
    server: Server, tmp_path: Path, options: list[str], said: str
) -> None:
    """``--end`` before ``--start`` said 'end 2021-11-27 is before start 2021-11-28', klines without ``--interval``
    'an interval is needed for klines, and only for klines', a market 'binance market ...': the names of the library's
    parameters, not the flags typed. Each now names its flag (exit 2, nothing fetched)."""
    code, out = run("download", "binance", "--symbol", "ADABTC", *options, "--base-url", server.url,
                    "--cache-dir", str(tmp_path / "cache"), "--catalog", str(tmp_path / "cat"))
    assert code == 2, out
    assert said in " ".join(out.split()), out
    assert server.requests == [] and not (tmp_path / "cat").exists()


@pytest.mark.parametrize(("symbol", "interval"), [("../../../../../../x/ADABTC", "1m"), ("ADABTC", "1m/../../x")])
def test_a_symbol_or_interval_that_is_not_a_name_is_refused_before_anything_is_fetched(
    server: Server, tmp_path: Path, symbol: str, interval: str
) -> None:
    # what the server answers for the traversing path (it normalises the ".." away): a verified archive
    archive = server.root / "x" / "ADABTC-1m-2021-11-27.zip"
    archive.parent.mkdir(parents=True)
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr(archive.name.replace(".zip", ".csv"), klines("2021-11-27"))
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    (archive.parent / (archive.name + ".CHECKSUM")).write_text(f"{digest}  {archive.name}\n")
    cache = tmp_path / "a" / "b" / "c" / "d" / "e" / "f" / "cache"
    code, out = run("download", "binance", "--symbol", symbol, "--interval", interval, "--start", "2021-11-27",
                    "--end", "2021-11-27", "--base-url", server.url, "--cache-dir", str(cache),
                    "--catalog", str(tmp_path / "cat"))
    assert code == 2, out
    assert "is not a valid name" in out and repr(symbol if interval == "1m" else interval) in out
    assert server.requests == []
    assert [p for p in tmp_path.rglob("*") if p.is_file() and server.root not in p.parents] == []


@pytest.mark.parametrize("base_url", ["data.binance.vision/data", "http://[::1", "ftp://127.0.0.1/data"])
def test_a_base_url_that_is_not_a_web_address_is_a_bad_option_before_any_request(
    server: Server, tmp_path: Path, base_url: str
) -> None:
    """``--base-url data.binance.vision/data`` (no scheme) printed urllib's traceback ("ValueError: unknown url
    type") and exited 1; an http(s) URL without a host is now refused first, exit 2, naming it and Binance's."""
    server.publish(f"{KLINES}/ADABTC-1m-2021-11-27.zip", klines("2021-11-27"))
    code, out = run("download", "binance", "--symbol", "ADABTC", "--interval", "1m", "--start", "2021-11-27",
                    "--end", "2021-11-27", "--base-url", base_url, "--cache-dir", str(tmp_path / "cache"),
                    "--catalog", str(tmp_path / "cat"))
    assert code == 2, out
    assert f"base URL {base_url!r} is not an http:// or https:// URL with a host" in out
    assert "https://data.binance.vision/data" in out and "Traceback" not in out
    assert not (tmp_path / "cache").exists() and not (tmp_path / "cat").exists()


@pytest.mark.parametrize(("base_url", "port"), [("http://127.0.0.1:abc/data", "abc"),
                                               ("http://127.0.0.1:99999/data", "99999"), ("http://127.0.0.1:0", "0")])
def test_a_base_url_whose_port_is_not_a_port_number_is_a_bad_option_naming_the_port(
    server: Server, tmp_path: Path, base_url: str, port: str
) -> None:
    """``--base-url http://127.0.0.1:abc`` passed the URL check, every archive was then 'refused' (InvalidURL) and
    the run ended as bad data (exit 3); it is now a bad option (exit 2) naming the port, before any request."""
    server.publish(f"{KLINES}/ADABTC-1m-2021-11-27.zip", klines("2021-11-27"))
    code, out = run("download", "binance", "--symbol", "ADABTC", "--interval", "1m", "--start", "2021-11-27",
                    "--end", "2021-11-27", "--base-url", base_url, "--cache-dir", str(tmp_path / "cache"),
                    "--catalog", str(tmp_path / "cat"))
    assert code == 2, out
    text = " ".join(out.split())
    assert f"base URL {base_url!r}: port {port!r} is not a port number (1 to 65535)" in text, out
    assert "refused" not in text
    assert not (tmp_path / "cache").exists() and not (tmp_path / "cat").exists()


def test_a_download_of_which_no_archive_is_published_names_the_url_and_the_options_to_check(
    server: Server, tmp_path: Path
) -> None:
    """``--symbol adabtc`` (Vision's paths are upper case) found every day missing and ended with 'no verified
    archives to import', which neither said where it looked nor what to change; it now names the first archive's
    URL and the options that make up the path."""
    server.publish(f"{KLINES}/ADABTC-1m-2021-11-27.zip", klines("2021-11-27"))
    code, out = run("download", "binance", "--symbol", "adabtc", "--interval", "1m", "--start", "2021-11-27",
                    "--end", "2021-11-28", "--base-url", server.url, "--cache-dir", str(tmp_path / "cache"),
                    "--catalog", str(tmp_path / "cat"))
    assert code == 3, out
    text = " ".join(out.split())
    assert (f"none of the 2 archives is published: {server.url}/spot/daily/klines/adabtc/1m/"
            "adabtc-1m-2021-11-27.zip.CHECKSUM answered HTTP 404, as did the others; check --symbol") in text, out
    assert "--interval" in text and "nothing was imported" in text
    assert not (tmp_path / "cat").exists()


def test_a_part_file_left_by_a_killed_run_is_removed_when_its_archive_is_next_fetched(
    server: Server, tmp_path: Path
) -> None:
    """A SIGKILLed download leaves ``<zip>.<random>.part``: with a name of its own per download no later run wrote
    over it, so each kill left one more in the cache for good. The next fetch of the archive removes the ones unwritten
    for an hour and keeps a fresh one (another run's download of the same archive in flight)."""
    server.publish(f"{KLINES}/ADABTC-1m-2021-11-27.zip", klines("2021-11-27"))
    folder = tmp_path / "cache" / KLINES
    folder.mkdir(parents=True)
    stale = [folder / "ADABTC-1m-2021-11-27.zip.0123456789abcdef.part", folder / "ADABTC-1m-2021-11-27.zip.part"]
    fresh = folder / "ADABTC-1m-2021-11-27.zip.fedcba9876543210.part"
    other = folder / "ADABTC-1m-2021-11-28.zip.0123456789abcdef.part"  # another archive's, not fetched here
    two_hours_ago = time.time() - 7200
    for part in (*stale, fresh, other):
        part.write_bytes(b"PK\x03\x04 cut by SIGKILL")
    for part in (*stale, other):
        os.utime(part, (two_hours_ago, two_hours_ago))
    item = archives("spot", "klines", "ADABTC", date(2021, 11, 27), date(2021, 11, 27), interval="1m")
    report = fetch(item, tmp_path / "cache", base_url=server.url, workers=1)
    assert report.downloaded == ["2021-11-27"] and not report.refused
    assert sorted(p.name for p in folder.iterdir()) == sorted(["ADABTC-1m-2021-11-27.zip", fresh.name, other.name])
    report = fetch(item, tmp_path / "cache", base_url=server.url, workers=1)  # reused: the fresh part stays
    assert report.reused == ["2021-11-27"] and fresh.exists()


#: Runs ``tradebus`` with the given arguments under a file-size limit (argv[1], bytes): a write past it fails EFBIG.


def test_an_archive_that_cannot_be_extracted_is_a_clear_error_and_leaves_the_catalog_as_it_was(
    server: Server, tmp_path: Path
) -> None:
    """A full temporary folder (here a 20,000-byte file size limit, EFBIG) while unpacking the 28th's 30,596-byte CSV
    ended the download with a raw 'OSError: [Errno 27] File too large' traceback, exit 1; it is now exit 2 naming the
    zip and the folder, the overwrite is dropped (the 27th's import staged first) and the temporary folder removed."""
    server.publish(f"{KLINES}/ADABTC-1m-2021-11-27.zip", klines("2021-11-27"))
    server.publish(f"{KLINES}/ADABTC-1m-2021-11-28.zip", klines("2021-11-28") * 2)  # fails before it is read
    common = ["download", "binance", "--symbol", "ADABTC", "--interval", "1m", "--start", "2021-11-27",
              "--base-url", server.url, "--cache-dir", str(tmp_path / "cache"), "--catalog", str(tmp_path / "cat")]
    code, out = run(*common, "--end", "2021-11-27")
    assert code == 0, out
    before = tree_hashes(tmp_path / "cat")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    code, out = cli_under_file_size_limit(20_000, ["data", *common, "--end", "2021-11-28", "--overwrite"], cwd=tmp_path,
                                          env={"TMPDIR": str(scratch)})
    assert code == 2, out
    assert "Traceback" not in out, out
    zipped = tmp_path / "cache" / KLINES / "ADABTC-1m-2021-11-28.zip"
    assert re.search(rf"binance archive {re.escape(str(zipped))}: cannot extract ADABTC-1m-2021-11-28.csv into the "
                     rf"temporary folder {re.escape(str(scratch))}/tradebus-binance-\w+ \(EFBIG: File too large\); "
                     "nothing was imported", out), out
    assert list(scratch.iterdir()) == []
    assert tree_hashes(tmp_path / "cat") == before
