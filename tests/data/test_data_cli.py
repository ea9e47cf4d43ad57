"""``tradebus data`` commands: import, info/ls, verify; errors exit 1 without a traceback."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from tradebus.data.catalog import Catalog
from tradebus.data.cli import data_app

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


def test_import_bad_file_exits_1_with_the_message_and_no_traceback(tmp_path: Path) -> None:
    code, out = run(
        "import", str(FIXTURES / "bars_high_below_low.csv"), "--venue", "x", "--market", "spot", "--symbol", "S",
        "--catalog", str(tmp_path),
    )
    assert code == 1
    assert "bars_high_below_low.csv row 17: high 99.0 < low 100.0" in out
    assert "Traceback" not in out
    assert Catalog(tmp_path).datasets() == []


def test_import_twice_needs_append_or_overwrite(tmp_path: Path) -> None:
    args = ["import", str(FIXTURES / "bars_valid.csv"), "--venue", "x", "--market", "spot", "--symbol", "S",
            "--catalog", str(tmp_path)]
    assert run(*args)[0] == 0
    code, out = run(*args)
    assert code == 1 and "dataset exists" in out
    code, out = run(*args, "--append")
    assert code == 1 and "overlap the existing range" in out
    code, out = run(*args, "--overwrite")
    assert code == 0, out
    code, out = run(*args, "--append", "--overwrite")
    assert code == 1 and "exclude each other" in out


def test_verify_reports_a_corrupted_file(tmp_path: Path) -> None:
    assert run("import", str(FIXTURES / "bars_valid.csv"), "--venue", "x", "--market", "spot", "--symbol", "S",
               "--catalog", str(tmp_path))[0] == 0
    code, out = run("verify", "--catalog", str(tmp_path))
    assert code == 0 and out.startswith("ok x/spot/S/bars_1h: 20 rows")
    part = next(tmp_path.rglob("*.parquet"))
    part.write_bytes(part.read_bytes()[:-1] + b"X")
    code, out = run("verify", "--catalog", str(tmp_path))
    assert code == 1 and "does not match the manifest" in out


def test_info_on_an_empty_catalog(tmp_path: Path) -> None:
    code, out = run("info", "--catalog", str(tmp_path))
    assert code == 0 and "no datasets" in out
