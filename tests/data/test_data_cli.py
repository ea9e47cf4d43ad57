"""``tradebus data`` commands: import, info/ls, verify; bad data exits 3, bad options 2, without a traceback."""

from __future__ import annotations

import errno
import gc
import json
import os
import re
import resource
import signal
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from tradebus.data.catalog import Catalog
from tradebus.data.cli import data_app
from tradebus.errors import DataError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"
runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(data_app, list(args))
    return result.exit_code, result.output


def test_import_then_info_lists_the_dataset(tmp_path: Path) -> None:
    code, out = run(
        "import", str(FIXTURES / "coinbase_btc-usd_4h_cut.json.gz"),
        "--venue", "coinbase", "--market", "spot", "--symbol", "BTC-USD", "--catalog", str(tmp_path),
    )
    assert code == 0, out
    assert "coinbase/spot/BTC-USD/bars_4h: 300 rows, 4h bars" in out
    assert "1 gaps (3 missing bars)" in out
    result = runner.invoke(data_app, ["info", "--catalog", str(tmp_path)], terminal_width=200)
    assert result.exit_code == 0
    assert "BTC-USD" in result.output and "bars_4h" in result.output and "300" in result.output
    assert "2018-07-16 08:00:00" in result.output  # first close time
    assert runner.invoke(data_app, ["ls", "--catalog", str(tmp_path)]).exit_code == 0


def test_import_trades_with_kind_and_interval_options(tmp_path: Path) -> None:
    code, out = run(
        "import", str(FIXTURES / "trades_valid.csv"), "--venue", "binance", "--market", "spot",
        "--symbol", "BTCUSDT", "--kind", "trades", "--catalog", str(tmp_path),
    )
    assert code == 0, out
    assert Catalog(tmp_path).manifest("binance", "spot", "BTCUSDT", "trades").rows == 12
    code, out = run(
        "import", str(FIXTURES / "bars_valid.csv"), "--venue", "binance", "--market", "spot",
        "--symbol", "BTCUSDT", "--interval", "1h", "--catalog", str(tmp_path),
    )
    assert code == 0, out
    assert Catalog(tmp_path).manifest("binance", "spot", "BTCUSDT", "bars_1h").interval_ns == 3_600_000_000_000


def test_import_bad_file_exits_3_with_the_message_and_no_traceback(tmp_path: Path) -> None:
    code, out = run(
        "import", str(FIXTURES / "bars_high_below_low.csv"), "--venue", "x", "--market", "spot", "--symbol", "S",
        "--catalog", str(tmp_path),
    )
    assert code == 3  # as `tradebus backtest` and the README: invalid data exits 3
    assert "bars_high_below_low.csv row 17: high 99.0 < low 100.0" in out
    assert "Traceback" not in out
    assert Catalog(tmp_path).datasets() == []


def _binance_zip(path: Path) -> Path:
    """A zip of one kline CSV, as Binance's public archives are."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.write(FIXTURES / "ADABTC-1m-2021-11-27_head120.csv", "ADABTC-1m-2021-11-27.csv")
    return path


def test_a_zip_archive_renamed_csv_is_named_as_one_not_shown_as_a_binary_header(tmp_path: Path) -> None:
    """A Binance archive saved as ``klines.csv`` was refused as 'missing time column ... got ['pk\\x03\\x04...']',
    the archive's compressed bytes read as column names; the error now names the file, says it looks like a zip
    archive and what it holds, and says to unzip it."""
    path = _binance_zip(tmp_path / "klines.csv")
    code, out = run("import", str(path), "--venue", "binance", "--market", "spot", "--symbol", "ADABTC",
                    "--interval", "1m", "--catalog", str(tmp_path / "cat"))
    assert code == 3, out
    text = " ".join(out.split())
    assert (f"{path}: not CSV text but what looks like a zip archive (it starts with 'PK'), holding "
            "ADABTC-1m-2021-11-27.csv; import reads no zip archive: unzip it (unzip klines.csv)") in text, out
    assert "\\x03" not in out and "Traceback" not in out
    assert not (tmp_path / "cat").exists()


def test_a_zip_archive_is_refused_naming_the_csv_inside_and_saying_to_unzip_it(tmp_path: Path) -> None:
    """``data import ADABTC-1m-2021-11-27.zip`` (a Binance archive as downloaded) said only "unsupported file type
    '.zip'"; it now names the CSV inside and says to unzip it, or to use ``data download binance``."""
    path = _binance_zip(tmp_path / "ADABTC-1m-2021-11-27.zip")
    code, out = run("import", str(path), "--venue", "binance", "--market", "spot", "--symbol", "ADABTC",
                    "--interval", "1m", "--catalog", str(tmp_path / "cat"))
    assert code == 3, out
    text = " ".join(out.split())
    assert (f"{path}: a zip archive, holding ADABTC-1m-2021-11-27.csv; import reads no zip archive: unzip it "
            "(unzip ADABTC-1m-2021-11-27.zip) and import the CSV inside") in text, out
    assert "'tradebus data download binance'" in text
    assert not (tmp_path / "cat").exists()


def test_import_bybit_book_of_a_missing_file_names_it_without_a_traceback(tmp_path: Path) -> None:
    """``data import-bybit-book nope.zip`` printed zipfile's FileNotFoundError traceback and exited 1; it is now bad
    data as every other import's missing file (exit 3, the file named), nothing written."""
    code, out = run("import-bybit-book", str(tmp_path / "nope.zip"), "--symbol", "BTCUSDT",
                    "--catalog", str(tmp_path / "cat"))
    assert code == 3, out
    assert f"{tmp_path / 'nope.zip'}: file not found" in " ".join(out.split()) and "Traceback" not in out
    assert not (tmp_path / "cat").exists()


@pytest.mark.parametrize("command", [
    ["import", "--venue", "binance", "--market", "spot", "--symbol", "BTCUSDT", "--interval", "1m"],
    ["import-okx-candles", "--symbol", "BTC-USDT", "--interval", "1m"],
    ["import-book-depth", "--symbol", "BTCUSDT"],
    ["import-bybit-book", "--symbol", "BTCUSDT"],
])
def test_a_folder_given_as_the_file_to_import_is_named_as_a_folder(tmp_path: Path, command: list[str]) -> None:
    """``data import downloads/`` said "downloads: file not found" of a folder that is there (and
    import-bybit-book printed an IsADirectoryError traceback); each import now says it is a folder."""
    folder = tmp_path / "downloads"
    folder.mkdir()
    code, out = run(command[0], str(folder), *command[1:], "--catalog", str(tmp_path / "cat"))
    assert code == 3, out
    assert f"{folder}: a folder, not a file: name the file(s) inside it to import" in " ".join(out.split()), out
    assert not (tmp_path / "cat").exists()


def test_import_twice_needs_append_or_overwrite(tmp_path: Path) -> None:
    args = ["import", str(FIXTURES / "bars_valid.csv"), "--venue", "x", "--market", "spot", "--symbol", "S",
            "--catalog", str(tmp_path)]
    assert run(*args)[0] == 0
    code, out = run(*args)
    assert code == 3 and "dataset exists; add a later time range with --append, or replace it with --overwrite" in out
    assert "mode=" not in out  # the flags of the command, not the catalog's write modes
    code, out = run(*args, "--append")
    assert code == 3 and "overlap the existing range" in out
    code, out = run(*args, "--overwrite")
    assert code == 0, out
    code, out = run(*args, "--append", "--overwrite")
    assert code == 2 and "exclude each other" in out


def test_verify_reports_a_corrupted_file(tmp_path: Path) -> None:
    assert run("import", str(FIXTURES / "bars_valid.csv"), "--venue", "x", "--market", "spot", "--symbol", "S",
               "--catalog", str(tmp_path))[0] == 0
    code, out = run("verify", "--catalog", str(tmp_path))
    assert code == 0 and out.startswith("ok x/spot/S/bars_1h: 20 rows")
    part = next(tmp_path.rglob("*.parquet"))
    part.write_bytes(part.read_bytes()[:-1] + b"X")
    code, out = run("verify", "--catalog", str(tmp_path))
    assert code == 3 and "does not match the manifest" in out


def test_verify_checks_every_dataset_after_a_failing_one_and_names_each_failure(tmp_path: Path) -> None:
    for symbol in ("A", "B", "C"):
        assert run("import", str(FIXTURES / "bars_valid.csv"), "--venue", "x", "--market", "spot", "--symbol", symbol,
                   "--catalog", str(tmp_path))[0] == 0
    for symbol in ("A", "C"):  # the first and the last, tampered with
        part = next((tmp_path / "x" / "spot" / symbol).rglob("*.parquet"))
        part.write_bytes(part.read_bytes()[:-1] + b"X")
    code, out = run("verify", "--catalog", str(tmp_path))
    assert code == 3
    assert "ok x/spot/B/bars_1h: 20 rows" in out
    assert out.count("does not match the manifest") == 2
    assert "2 of 3 datasets failed verification: x/spot/A/bars_1h, x/spot/C/bars_1h" in out


def _strip_sizes(manifest: Path) -> None:
    """Make ``manifest`` one written before sizes were kept: its files' ``size`` keys dropped."""
    doc = json.loads(manifest.read_text())
    for entry in doc["files"]:
        del entry["size"]
    manifest.write_text(json.dumps(doc, indent=2) + "\n")


def test_verify_fix_sizes_adds_the_sizes_an_old_manifest_lacks_once_each_hash_matches(tmp_path: Path) -> None:
    """A catalog written before manifests kept sizes was never checked against a replaced part; verify --fix-sizes
    records them after re-hashing, so a later read refuses the part a truncated copy replaced."""
    for symbol in ("A", "B"):
        assert run("import", str(FIXTURES / "bars_valid.csv"), "--venue", "x", "--market", "spot", "--symbol", symbol,
                   "--catalog", str(tmp_path))[0] == 0
    manifests = {s: tmp_path / "x" / "spot" / s / "bars_1h" / "manifest.json" for s in ("A", "B")}
    written = {s: m.read_bytes() for s, m in manifests.items()}
    for manifest in manifests.values():
        _strip_sizes(manifest)
    stripped_b = manifests["B"].read_bytes()
    part_b = next((tmp_path / "x" / "spot" / "B").rglob("*.parquet"))
    part_b.write_bytes(part_b.read_bytes()[:-1] + b"X")  # same size, other bytes: not the file listed
    code, out = run("verify", "--fix-sizes", "--catalog", str(tmp_path))
    assert code == 3, out
    assert "ok x/spot/A/bars_1h: 20 rows" in out and "(sizes recorded for 1 file(s))" in out
    assert "1 of 2 datasets failed verification: x/spot/B/bars_1h" in out
    assert manifests["A"].read_bytes() == written["A"]  # the manifest the import wrote, size and all
    assert manifests["B"].read_bytes() == stripped_b  # no size recorded for a file the hash does not prove
    code, out = run("verify", "--fix-sizes", "--catalog", str(tmp_path))
    assert code == 3 and "sizes recorded" not in out  # A already has them: nothing rewritten
    assert manifests["A"].read_bytes() == written["A"]
    part_a = next((tmp_path / "x" / "spot" / "A").rglob("*.parquet"))
    part_a.write_bytes(part_a.read_bytes()[:-100])
    with pytest.raises(DataError, match=rf"{re.escape(str(part_a))}: \d+ bytes, the manifest says \d+"):
        Catalog(tmp_path).read("x", "spot", "A", "bars_1h")
    assert not list(tmp_path.rglob(".manifest.json.tmp-*"))


def test_verify_fix_sizes_goes_on_after_a_manifest_it_cannot_write_and_names_each(tmp_path: Path) -> None:
    """verify --fix-sizes on a catalog whose first dataset's folder is read-only stopped at its manifest
    write (exit 2), so the datasets after it were never verified; each is now checked and each failure named."""
    from tests.data.test_data_catalog_kill import _without_dac_override

    for symbol in ("A", "B", "C"):
        assert run("import", str(FIXTURES / "bars_valid.csv"), "--venue", "x", "--market", "spot", "--symbol", symbol,
                   "--catalog", str(tmp_path))[0] == 0
        _strip_sizes(tmp_path / "x" / "spot" / symbol / "bars_1h" / "manifest.json")
    part_b = next((tmp_path / "x" / "spot" / "B").rglob("*.parquet"))
    part_b.write_bytes(part_b.read_bytes()[:-1] + b"X")
    read_only = tmp_path / "x" / "spot" / "A" / "bars_1h"
    stripped_a = (read_only / "manifest.json").read_bytes()
    read_only.chmod(0o555)
    try:
        done = subprocess.run([sys.executable, "-c", "import sys; from tradebus.cli import main; main(sys.argv[1:])",
                               "data", "verify", "--fix-sizes", "--catalog", str(tmp_path)],
                              capture_output=True, text=True, timeout=300, env=os.environ.copy(),
                              preexec_fn=_without_dac_override if os.geteuid() == 0 else None, check=False)
    finally:
        read_only.chmod(0o755)
    out = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 3, out
    assert "Traceback" not in out
    assert (f"FAILED catalog {tmp_path}: cannot write the manifest of x/spot/A/bars_1h (Permission denied)") in out
    assert "does not match the manifest" in out  # B, after A
    assert "ok x/spot/C/bars_1h: 20 rows" in out and "(sizes recorded for 1 file(s))" in out
    assert ("1 of 3 datasets failed verification: x/spot/B/bars_1h; 1 of 3 manifests could not be written (no sizes "
            "recorded): x/spot/A/bars_1h") in out
    assert (read_only / "manifest.json").read_bytes() == stripped_a
    assert all(e["size"] > 0 for e in json.loads((tmp_path / "x/spot/C/bars_1h/manifest.json").read_text())["files"])


def test_verify_without_fix_sizes_leaves_an_old_manifest_as_it_is(tmp_path: Path) -> None:
    assert run("import", str(FIXTURES / "bars_valid.csv"), "--venue", "x", "--market", "spot", "--symbol", "S",
               "--catalog", str(tmp_path))[0] == 0
    manifest = tmp_path / "x" / "spot" / "S" / "bars_1h" / "manifest.json"
    _strip_sizes(manifest)
    stripped = manifest.read_bytes()
    code, out = run("verify", "--catalog", str(tmp_path))
    assert code == 0 and "sizes recorded" not in out
    assert manifest.read_bytes() == stripped


def test_verify_refuses_a_catalog_that_does_not_exist_and_says_when_it_is_empty(tmp_path: Path) -> None:
    code, out = run("verify", "--catalog", str(tmp_path / "typo"))
    assert code == 2 and "typo: no such directory" in out
    code, out = run("verify", "--catalog", str(tmp_path))
    assert code == 0 and f"no datasets in {tmp_path}" in out.replace("\n", "")


def test_info_on_an_empty_catalog(tmp_path: Path) -> None:
    code, out = run("info", "--catalog", str(tmp_path))
    assert code == 0 and "no datasets" in out


def test_a_dataset_the_catalog_does_not_hold_is_a_usage_error_exit_2_as_a_missing_file(tmp_path: Path) -> None:
    """``data quality binance/spot/BTCUSDT/bars_1h`` of a catalog holding only ``trades`` exited 3, as bad data, as
    did ``data bars`` and ``data set-contract-size``, where ``backtest`` refuses a missing dataset, like a missing file,
    with exit 2 (README: a missing file is exit 2). Each now exits 2 naming the manifest it looked for."""
    code, out = run("import", str(FIXTURES / "trades_valid.csv"), "--venue", "binance", "--market", "spot",
                    "--symbol", "BTCUSDT", "--kind", "trades", "--catalog", str(tmp_path))
    assert code == 0, out
    for args in (["quality", "binance/spot/BTCUSDT/bars_1h"], ["bars", "binance/spot/ETHUSDT/trades", "--interval", "1h"],
                 ["set-contract-size", "binance/spot/BTCUSDT/trade", "1"]):
        code, out = run(*args, "--catalog", str(tmp_path))
        missing = tmp_path / "binance" / "spot" / args[1].split("/")[2] / args[1].split("/")[3] / "manifest.json"
        assert code == 2, (args, out)
        assert f"{missing}: dataset not found (no manifest) in catalog {tmp_path}" in " ".join(out.split()), out
        assert "Traceback" not in out


def test_a_dataset_command_on_a_catalog_path_that_is_a_file_or_an_unreadable_manifest_names_it(tmp_path: Path) -> None:
    """``data quality a/b/c/d --catalog klines.csv`` (a file given as the catalog), and ``bars`` and
    ``set-contract-size`` the same, ended in a NotADirectoryError traceback, exit 1; a manifest that is a folder in an
    IsADirectoryError one, which also stopped ``data info`` before the other datasets. The file given as the catalog
    is now a usage error naming it (exit 2), the folder manifest bad data naming it (exit 3), and ``info`` lists the
    other datasets first."""
    not_a_folder = tmp_path / "klines.csv"
    not_a_folder.write_text("1637971200000,1,1,1,1,1\n")
    for args in (["quality", "binance/spot/ADABTC/bars_1m"], ["bars", "binance/spot/ADABTC/bars_1m", "--interval", "1h"],
                 ["set-contract-size", "binance/spot/ADABTC/trades", "1"]):
        code, out = run(*args, "--catalog", str(not_a_folder))
        assert code == 2, out
        assert "dataset not found: a file stands where a folder of that path should be (is --catalog" in " ".join(
            out.split()), out
    catalog = tmp_path / "cat"
    code, out = run("import", str(FIXTURES / "trades_valid.csv"), "--venue", "binance", "--market", "spot",
                    "--symbol", "BTCUSDT", "--kind", "trades", "--catalog", str(catalog))
    assert code == 0, out
    odd = catalog / "binance" / "spot" / "ADABTC" / "bars_1m" / "manifest.json"
    odd.mkdir(parents=True)
    code, out = run("quality", "binance/spot/ADABTC/bars_1m", "--catalog", str(catalog))
    assert code == 3, out
    assert f"{odd}: cannot read the dataset's manifest (EISDIR" in " ".join(out.split()), out
    result = runner.invoke(data_app, ["info", "--catalog", str(catalog)], terminal_width=250)
    assert result.exit_code == 3, result.output
    assert "BTCUSDT" in result.output and "unreadable" in result.output


# --------------------------------------------------------------------------- issue 7 item 10

TWO_SYMBOLS = FIXTURES / "binance_coinm_trades_two_symbols.csv"


def test_import_refuses_a_file_holding_several_symbols_naming_column_and_symbols(tmp_path: Path) -> None:
    code, out = run(
        "import", str(TWO_SYMBOLS), "--venue", "binance", "--market", "coinm", "--symbol", "BTCUSD_PERP",
        "--kind", "trades", "--catalog", str(tmp_path),
    )
    assert code == 3, out
    assert "column 'symbol' holds more than one symbol" in out
    assert "'BTCUSD_PERP' (row 1)" in out and "'ETHUSD_PERP' (row 5)" in out
    assert "--split-by symbol" in out
    assert list(tmp_path.iterdir()) == []  # nothing staged is left behind


def test_import_split_by_symbol_writes_one_dataset_per_symbol_equal_to_a_pandas_filter(tmp_path: Path) -> None:
    code, out = run(
        "import", str(TWO_SYMBOLS), "--venue", "binance", "--market", "coinm", "--split-by", "symbol",
        "--kind", "trades", "--catalog", str(tmp_path),
    )
    assert code == 0, out
    reference = pd.read_csv(TWO_SYMBOLS, dtype={"trade_id": str})
    cat = Catalog(tmp_path)
    assert [r.symbol for r in cat.datasets()] == ["BTCUSD_PERP", "ETHUSD_PERP"]
    for symbol, rows in reference.groupby("symbol"):
        stored = cat.read("binance", "coinm", str(symbol), "trades").to_pandas()
        assert stored["trade_id"].tolist() == rows["trade_id"].tolist()
        assert stored["price"].tolist() == rows["price"].tolist()
        assert (stored["ts_event"] // 1_000_000).tolist() == rows["trade_time_ms"].tolist()
        assert stored["aggressor"].tolist() == [-1 if m else 1 for m in rows["is_buyer_maker"]]


def test_import_bar_time_option_sets_the_shift_and_prints_it(tmp_path: Path) -> None:
    common = ["import", str(FIXTURES / "bars_valid.csv"), "--venue", "x", "--market", "spot", "--symbol", "S",
              "--catalog", str(tmp_path)]
    code, out = run(*common, "--dataset", "as_open", "--bar-time", "open")
    assert code == 0, out
    assert "bar time: 'timestamp' holds bar OPEN times; shifted +1h (detected) to the close stamp" in out
    code, out = run(*common, "--dataset", "as_close", "--bar-time", "close")
    assert code == 0, out
    assert "bar time: 'timestamp' holds bar CLOSE times; not shifted" in out
    cat = Catalog(tmp_path)
    opened = cat.read("x", "spot", "S", "as_open").column("ts_event").to_numpy()
    closed = cat.read("x", "spot", "S", "as_close").column("ts_event").to_numpy()
    assert (opened - closed).tolist() == [3_600_000_000_000] * 20
    assert closed[0] == 1_704_067_200_000_000_000  # the file's first time, unshifted
    assert any("not shifted" in n for n in cat.manifest("x", "spot", "S", "as_close").notes)
    code, out = run(*common, "--dataset", "bad", "--bar-time", "middle")
    assert code == 2 and "--bar-time 'middle'" in out


def test_config_bar_time_reaches_the_replay_of_a_bar_file() -> None:
    from tradebus.config import DataSourceConfig
    from tradebus.data.replay import Replay, ReplaySource

    src = DataSourceConfig.model_validate({"instrument": "S.X", "file": str(FIXTURES / "bars_valid.csv"), "bar_time": "close"})
    for bar_time, first_ns in (("close", 1_704_067_200_000_000_000), ("open", 1_704_070_800_000_000_000)):
        source = ReplaySource.from_file(src.file, src.instrument, src.kind, interval=src.interval, bar_time=bar_time)
        first = next(iter(Replay([source]).batches()))
        assert int(first.ts_event[0]) == first_ns
    with pytest.raises(ValueError, match="bar_time"):
        DataSourceConfig.model_validate({"instrument": "S.X", "file": "x.csv", "bar_time": "middle"})


def test_import_logs_nothing_below_warning_by_default_and_checks_the_level(tmp_path: Path) -> None:
    args = ["import", str(FIXTURES / "bars_valid.csv"), "--venue", "x", "--market", "spot", "--symbol", "S",
            "--catalog", str(tmp_path)]
    quiet = runner.invoke(data_app, args)
    assert quiet.exit_code == 0 and "DEBUG" not in quiet.output and "INFO" not in quiet.output
    loud = runner.invoke(data_app, ["--log-level", "info", *args, "--overwrite"])
    assert loud.exit_code == 0 and "INFO catalog: wrote x/spot/S/bars_1h" in loud.output
    bad = runner.invoke(data_app, ["--log-level", "LOUD", *args])
    assert bad.exit_code == 2 and "--log-level 'LOUD'" in bad.output and "Traceback" not in bad.output


_TERM_WHILE_STAGING = """
import os, signal, sys

def hook(event, args):
    if event == "os.mkdir" and ".tmp-" in str(args[0]) and "date=" in str(args[0]):
        os.kill(os.getpid(), signal.SIGTERM)

sys.addaudithook(hook)
from tradebus.cli import app
app(sys.argv[1:], prog_name="tradebus")
"""


def test_an_import_stopped_by_sigterm_leaves_the_catalog_as_it_was(tmp_path: Path) -> None:
    """Killed outright while it staged its files, it left a hidden .bars_4h.tmp-<id> directory
    in the catalog, never removed (46 MB for 3M one-minute bars)."""
    args = ["data", "import", str(FIXTURES / "coinbase_btc-usd_4h_cut.json.gz"), "--venue", "coinbase",
            "--market", "spot", "--symbol", "BTC-USD", "--catalog", str(tmp_path)]
    proc = subprocess.run(
        [sys.executable, "-c", _TERM_WHILE_STAGING, *args], capture_output=True, text=True, check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert proc.returncode == 143, proc.stdout + proc.stderr
    assert [str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file() or p.name.startswith(".")] == []


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["import", "bars_valid.csv", "--interval", "7x"], "--interval: interval '7x'"),
        (["import", "bars_valid.csv", "--ts-unit", "h"], "--ts-unit 'h'"),
        (["bars", "binance/spot/BTCUSDT/bars_1h", "--interval", "0m"], "--interval: interval '0m'"),
    ],
)
def test_a_bad_interval_or_ts_unit_option_exits_2_not_3(tmp_path: Path, args: list[str], named: str) -> None:
    """``data import --ts-unit h`` and a bad ``--interval`` (import, bars) exited 3, the code of bad data."""
    assert run("import", str(FIXTURES / "bars_valid.csv"), "--venue", "binance", "--market", "spot",
               "--symbol", "BTCUSDT", "--interval", "1h", "--catalog", str(tmp_path))[0] == 0
    if args[0] == "import":
        args = ["import", str(FIXTURES / args[1]), "--venue", "binance", "--market", "spot", "--symbol", "X",
                *args[2:]]
    code, out = run(*args, "--catalog", str(tmp_path))
    assert code == 2, out
    assert named in " ".join(out.split()) and "Traceback" not in out
    assert not (tmp_path / "binance" / "spot" / "X").exists()


@pytest.mark.parametrize(
    ("command", "flag", "value"),
    [
        (["import", str(FIXTURES / "bars_valid.csv"), "--venue", "binance", "--market", "spot"], "--symbol", "BTC/USDT"),
        (["import", str(FIXTURES / "bars_valid.csv"), "--market", "spot", "--symbol", "BTCUSDT"], "--venue", "bïnance"),
        (["import", str(FIXTURES / "bars_valid.csv"), "--venue", "binance", "--market", "spot", "--symbol", "BTCUSDT"],
         "--dataset", "../x"),
        (["import-tardis", str(FIXTURES / "tardis_huobi-dm-swap_quotes_BTC-USD.csv"), "--venue", "huobi",
          "--symbol", "BTC-USD"], "--market", "perp swap"),
        (["import-okx-candles", str(FIXTURES / "coinbase_candles_duplicate.json"), "--market", "spot"],
         "--symbol", "BTC USDT"),
    ],
)
def test_a_dataset_name_option_that_is_not_a_catalog_name_is_a_bad_option(
    tmp_path: Path, command: list[str], flag: str, value: str
) -> None:
    # each file would fail as data (the wrong format, or valid): the option is refused before it is read
    code, out = run(*command, flag, value, "--catalog", str(tmp_path / "cat"))
    assert code == 2, out
    assert f"{flag}: catalog {flag[2:]} {value!r} is not a valid name" in " ".join(out.split())
    assert not (tmp_path / "cat").exists()


UNWRITABLE = Path("/sys/kernel")  # a directory the kernel refuses new entries in, to root as well (sysfs)


@pytest.mark.skipif(not UNWRITABLE.is_dir(), reason="needs Linux sysfs")
def test_an_import_into_a_catalog_folder_it_cannot_write_is_refused_naming_the_catalog(tmp_path: Path) -> None:
    """The symbol's folder exists and refuses new entries: the writer raised a raw PermissionError traceback
    ('Operation not permitted: .../.bars_4h.tmp-<id>'), exit 1, when it could not create its staging folder."""
    root = tmp_path / "cat"
    (root / "coinbase" / "spot").mkdir(parents=True)
    link = root / "coinbase" / "spot" / "BTC-USD"
    link.symlink_to(UNWRITABLE)
    try:
        before = sorted(os.listdir(UNWRITABLE))
        code, out = run("import", str(FIXTURES / "coinbase_btc-usd_4h_cut.json.gz"), "--venue", "coinbase", "--market",
                        "spot", "--symbol", "BTC-USD", "--catalog", str(root))
        said = " ".join(out.split())
        assert code == 2, out
        assert "Traceback" not in out and "PermissionError" not in out
        assert f"catalog {root}: cannot write coinbase/spot/BTC-USD/bars_4h: cannot create its staging folder in " in said
        assert sorted(os.listdir(UNWRITABLE)) == before
        left = [os.path.relpath(os.path.join(d, n), root) for d, dirs, files in os.walk(root) for n in dirs + files]
        assert sorted(left) == ["coinbase", "coinbase/spot", "coinbase/spot/BTC-USD"]  # os.walk: the link not followed
    finally:
        link.unlink()  # nothing walks into sysfs after the test (pytest cleans tmp_path up)


def test_an_import_over_a_file_where_the_dataset_folder_should_be_is_refused_leaving_it(tmp_path: Path) -> None:
    """A regular file named like the dataset (coinbase/spot/BTC-USD/bars_4h) was moved aside to a hidden
    .bars_4h.old-<id> and the import reported success (exit 0): the file vanished from where it was."""
    root = tmp_path / "cat"
    (root / "coinbase" / "spot" / "BTC-USD").mkdir(parents=True)
    squatter = root / "coinbase" / "spot" / "BTC-USD" / "bars_4h"
    squatter.write_text("notes of mine\n", encoding="utf-8")
    for mode in ([], ["--overwrite"]):
        code, out = run("import", str(FIXTURES / "coinbase_btc-usd_4h_cut.json.gz"), "--venue", "coinbase",
                        "--market", "spot", "--symbol", "BTC-USD", "--catalog", str(root), *mode)
        assert code == 2, out
        assert (f"catalog {root}: cannot write coinbase/spot/BTC-USD/bars_4h: {squatter} is a file, not a dataset "
                "folder") in " ".join(out.split())
        assert os.listdir(squatter.parent) == ["bars_4h"]
        assert squatter.read_text(encoding="utf-8") == "notes of mine\n"


COINBASE = FIXTURES / "coinbase_btc-usd_4h_cut.json.gz"
COINBASE_ARGS = ("--venue", "coinbase", "--market", "spot", "--symbol", "BTC-USD")


@contextmanager
def mounted(*args: str) -> Iterator[None]:
    """``mount ARGS`` for the block (skipping the test when the machine refuses it), unmounted after."""
    try:
        done = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        pytest.skip("needs mount(8)")
    if done.returncode != 0:
        pytest.skip(f"mount {' '.join(args)} refused (needs root): {done.stderr.strip()}")
    try:
        yield
    finally:
        gc.collect()  # a failed test's frames may still hold a file open there
        if subprocess.run(["umount", args[-1]], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", args[-1]], check=True)


def fill(directory: Path) -> Path:
    """A file in ``directory`` grown until its file system has no space left."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


def left_in(root: Path) -> list[str]:
    """What the catalog's symbol folder holds besides the dataset: a write's staging or retired copies."""
    return sorted(n for n in os.listdir(root / "coinbase" / "spot" / "BTC-USD") if n != "bars_4h")


def test_an_import_onto_a_full_disk_is_a_clear_error_that_keeps_the_dataset(tmp_path: Path) -> None:
    """data import --overwrite of coinbase/spot/BTC-USD/bars_4h into a catalog whose disk is full exited 1 with a
    raw OSError traceback ('No space left on device') from the Parquet writer. A real full file system: a tmpfs."""
    disk = tmp_path / "disk"
    disk.mkdir()
    with mounted("-t", "tmpfs", "-o", "size=512k", "tmpfs", str(disk)):
        root = disk / "cat"
        assert run("import", str(COINBASE), *COINBASE_ARGS, "--catalog", str(root))[0] == 0
        old = Catalog(root).read("coinbase", "spot", "BTC-USD", "bars_4h")
        filler = fill(disk)
        code, out = run("import", str(COINBASE), *COINBASE_ARGS, "--overwrite", "--catalog", str(root))
        said = " ".join(out.split())
        assert code == 2, out
        assert "Traceback" not in out
        assert re.search(rf"catalog {re.escape(str(root))}: cannot write coinbase/spot/BTC-USD/bars_4h: writing its "
                         r"Parquet file date=\d{4}-\d\d-\d\d/part-00000\.parquet failed \(ENOSPC: ", said), said
        assert "No space left on device" in said, said
        assert Catalog(root).read("coinbase", "spot", "BTC-USD", "bars_4h", verify=True).equals(old)
        code, out = run("ls", "--catalog", str(root))
        assert code == 0 and all(f" {w} " in " ".join(out.split()) for w in ("BTC-USD", "bars_4h", "300")), out
        assert left_in(root) == []
        filler.unlink()
        assert run("import", str(COINBASE), *COINBASE_ARGS, "--overwrite", "--catalog", str(root))[0] == 0
        assert Catalog(root).read("coinbase", "spot", "BTC-USD", "bars_4h", verify=True).equals(old)
        assert left_in(root) == []


def test_an_import_whose_manifest_outgrows_the_file_size_limit_is_a_clear_error(tmp_path: Path) -> None:
    """The Parquet files written, the manifest write failing (EFBIG under RLIMIT_FSIZE, a real OS error) exited 1
    with a raw OSError traceback; now exit 2 naming the manifest, the previous dataset intact."""
    root = tmp_path / "cat"
    daily = (*COINBASE_ARGS, "--period", "day")  # many small files: a manifest larger than each
    assert run("import", str(COINBASE), *daily, "--catalog", str(root))[0] == 0
    old = Catalog(root).read("coinbase", "spot", "BTC-USD", "bars_4h")
    manifest = (root / "coinbase" / "spot" / "BTC-USD" / "bars_4h" / "manifest.json").stat().st_size
    parts = [p.stat().st_size for p in (root / "coinbase" / "spot" / "BTC-USD" / "bars_4h").rglob("*.parquet")]
    assert max(parts) < manifest, (parts, manifest)  # a limit between them fails the manifest only
    limit = (max(parts) + manifest) // 2

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    done = subprocess.run(
        [sys.executable, "-c", "import sys; from tradebus.cli import main; main(sys.argv[1:])", "data", "import",
         str(COINBASE), *daily, "--overwrite", "--catalog", str(root)],
        capture_output=True, text=True, timeout=300, env=os.environ.copy(), preexec_fn=limited, check=False,
    )
    said = " ".join(done.stderr.split())
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert (f"catalog {root}: cannot write coinbase/spot/BTC-USD/bars_4h: writing its manifest failed "
            "(EFBIG: File too large)") in said, said
    assert Catalog(root).read("coinbase", "spot", "BTC-USD", "bars_4h", verify=True).equals(old)
    assert left_in(root) == []


def test_an_import_whose_swap_fails_is_a_clear_error_that_keeps_the_dataset(tmp_path: Path) -> None:
    """The commit's rename of the dataset aside failing (EBUSY: the dataset's folder is a mount point) exited 1
    with a raw OSError traceback; now exit 2 naming the swap, the dataset as it was and no staging left."""
    root = tmp_path / "cat"
    assert run("import", str(COINBASE), *COINBASE_ARGS, "--catalog", str(root))[0] == 0
    base = root / "coinbase" / "spot" / "BTC-USD" / "bars_4h"
    old = Catalog(root).read("coinbase", "spot", "BTC-USD", "bars_4h")
    with mounted("--bind", str(base), str(base)):
        code, out = run("import", str(COINBASE), *COINBASE_ARGS, "--overwrite", "--catalog", str(root))
        said = " ".join(out.split())
        assert code == 2, out
        assert "Traceback" not in out
        assert (f"catalog {root}: cannot write coinbase/spot/BTC-USD/bars_4h: swapping it into the catalog failed "
                "(EBUSY: Device or resource busy)") in said, said
        assert Catalog(root).read("coinbase", "spot", "BTC-USD", "bars_4h", verify=True).equals(old)
        assert left_in(root) == []


_TARDIS_BOOK = str(FIXTURES / "tardis_deribit_incremental_book_L2_BTC-PERPETUAL.csv")


@pytest.mark.parametrize(("args", "said"), [
    (["download", "binance", "--symbol", "BTCUSDT", "--start", "2024-01-01", "--end", "2024-01-02", "--interval", "1x",
      "--base-url", "http://127.0.0.1:9/data"],
     "--interval: interval '1x' is not understood; expected a whole number and a unit"),
    (["import-tardis", _TARDIS_BOOK, "--venue", "deribit", "--market", "perp", "--symbol", "BTC-PERPETUAL",
      "--suffix", "/x"], "--suffix '/x': catalog dataset 'book/x' is not a valid name"),
    (["import-bybit-book", _TARDIS_BOOK, "--symbol", "XRPUSDT", "--suffix", " x"],
     "--suffix ' x': catalog dataset 'book x' is not a valid name"),
    (["import-okx-book", _TARDIS_BOOK, "--symbol", "BTC-USDT", "--suffix", "/x"],
     "--suffix '/x': catalog dataset 'book/x' is not a valid name"),
    (["import-book-depth", _TARDIS_BOOK, "--symbol", "BTCUSDT", "--suffix", "/x"],
     "--suffix '/x': catalog dataset 'book_depth/x' is not a valid name"),
    (["import-open-interest", _TARDIS_BOOK, "--venue", "binance_usdm", "--market", "usdm", "--symbol", "BTCUSDT",
      "--suffix", "/x"], "--suffix '/x': catalog dataset 'open_interest/x' is not a valid name"),
    (["backfill", "--exchange", "binance", "--symbol", "BTC/USDT", "--since", "2024-01-01", "--venue", "a/b",
      "--api-base", "http://127.0.0.1:9"], "--venue: catalog venue 'a/b' is not a valid name"),
    (["bars", "x/spot/S/trades", "--interval", "1h", "--name", "a/b"], "--name: catalog name 'a/b' is not a valid name"),
])
def test_a_bad_flag_checked_late_is_now_a_bad_option_before_anything_is_fetched_read_or_written(
    tmp_path: Path, args: list[str], said: str
) -> None:
    """Each of these flags was checked only once its command had done its work: ``download binance --interval 1x``
    tried to download every archive (refused: connection refused, exit 3), an import's ``--suffix /x`` was bad data
    (exit 3) once the file's rows were read, ``backfill --venue a/b`` once the exchange's markets were loaded (here:
    exit 3, no server), ``bars --name a/b`` once the source was opened. Each is now a bad option, exit 2, naming
    the flag, before anything is fetched, read or written."""
    from tests.data.test_data_catalog import make_trades

    Catalog(tmp_path / "cat").write(make_trades(10), "x", "spot", "S", "trades")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code, out = run(*args, "--catalog", str(tmp_path / "cat"),
                    *(["--cache-dir", str(tmp_path / "cache")] if args[0] == "download" else []))
    assert code == 2, out
    assert said in " ".join(out.split())
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("call", [1, 2])
def test_data_info_while_a_commit_swaps_a_dataset_shows_the_size_of_the_version_it_read(tmp_path: Path, call: int) -> None:
    """data info read the manifest, then, outside the read lock, each file's is_file() and stat(): a commit renaming
    the dataset aside at the first made it show 0 B for a 3-file dataset, and at the second ended in a
    FileNotFoundError traceback. It now takes the sizes with the manifest (Catalog.entries), under the lock."""
    from tests.data.test_data_catalog import make_bars, read_while_a_commit_swaps

    cat = Catalog(tmp_path)
    cat.write(make_bars(48), "x", "spot", "S", "bars", "day")
    base = cat.dataset_dir("x", "spot", "S", "bars")
    first = base / cat.manifest("x", "spot", "S", "bars").files[0].path
    size = sum(p.stat().st_size for p in base.rglob("*.parquet"))
    result = read_while_a_commit_swaps(
        base, lambda: runner.invoke(data_app, ["info", "--catalog", str(tmp_path)], terminal_width=250), Path.stat,
        first, call)
    assert not isinstance(result, Exception), result
    assert result.exit_code == 0, (result.output, result.exception)
    assert f" {size / 1000:,.1f} kB " in result.output, (size, result.output)


@pytest.mark.parametrize("args", [
    ["download", "binance", "--symbol", "BTCUSDT", "--start", "2024-01-01", "--end", "2024-01-02",
     "--base-url", "http://127.0.0.1:9/data"],
    ["bars", "x/spot/S/trades", "--name", "b"],
    ["import", str(FIXTURES / "coinbase_btc-usd_4h_cut.json.gz"), "--venue", "coinbase", "--market", "spot",
     "--symbol", "BTC-USD"],
])
def test_an_interval_option_refused_says_only_the_forms_the_command_line_takes(tmp_path: Path, args: list[str]) -> None:
    """``--interval 60000000000`` (a minute in ns, which a config's ``interval:`` takes as an int) was refused with
    "expected e.g. '1m', '15m', '4h', '1d' or ns as int": an option is text, and text of digits alone is no interval.
    The refusal now names the units an option takes, and offers no int of ns."""
    from tradebus.data.ingest import parse_interval

    code, out = run(*args, "--interval", "60000000000", "--catalog", str(tmp_path / "cat"),
                    *(["--cache-dir", str(tmp_path / "cache")] if args[0] == "download" else []))
    said = " ".join(out.split())
    assert code == 2, out
    assert ("--interval: interval '60000000000' is not understood; expected a whole number and a unit "
            "(ns, us, ms, s, m, min, h, d, w), e.g. '1m', '15m', '4h', '1d'") in said, said
    assert " int" not in said.replace(" interval", ""), said
    assert parse_interval(60_000_000_000) == parse_interval("1m") == parse_interval("60000000000ns")  # a config's int


def test_an_okx_interval_option_refused_offers_no_int_of_ns(tmp_path: Path) -> None:
    """The same for ``import-okx-candles --interval`` (an OKX bar name, ``1Dutc`` too)."""
    pages = tmp_path / "pages.json"
    pages.write_text("[]")
    code, out = run("import-okx-candles", str(pages), "--symbol", "BTC-USDT-SWAP", "--market", "swap",
                    "--catalog", str(tmp_path / "cat"), "--interval", "60000000000")
    said = " ".join(out.split())
    assert code == 2, out
    assert "'60000000000' is not understood; expected a whole number and a unit" in said, said
    assert " int" not in said.replace(" interval", ""), said
