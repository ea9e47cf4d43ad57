"""`tradebus backtest`: outputs, determinism, bad config and bad data handling, entry points."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import yaml
from typer.testing import CliRunner

from tradebus.cli import app
from tradebus.data.catalog import BOOK_SNAPSHOT, Catalog, schema_for
from tradebus.reports.metrics import format_ns
from tradebus.reports.writers import EQUITY_COLUMNS, FILL_COLUMNS, ORDER_COLUMNS, OWN_FILES, UNWRITTEN_PAGE

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "fixtures" / "kernel" / "coinbase_btc_usd_4h_2022_1200.csv"
OUTPUT_FILES = (
    "attribution.csv", "config.yaml", "equity.csv", "fills.csv", "funding.csv", "metrics.json", "orders.csv",
    "prices.csv", "trades.csv",
)
METRIC_KEYS = {
    "start", "end", "bars", "instruments", "fills", "total_return", "cagr", "annualised_volatility", "sharpe",
    "sortino", "max_drawdown", "calmar", "hit_rate", "profit_factor", "average_win", "average_loss", "turnover",
    "exposure", "fees_paid",
}


def make_config(data_file: str = "bars.csv", **sections: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "data": {"sources": [{"instrument": "BTC-USD.COINBASE", "file": data_file}]},
        "instruments": [
            {"venue": "COINBASE", "symbol": "BTC-USD", "base": "BTC", "quote": "USD", "tick_size": 0.01,
             "lot_size": 1.0e-8, "min_notional": 1.0, "maker_fee": 0.004, "taker_fee": 0.006, "margin": True}
        ],
        "strategy": {"name": "ema_cross", "instruments": ["BTC-USD.COINBASE"],
                     "params": {"fast": 10, "slow": 30, "mode": "long_short", "quantity": 0.5}},
        "initial_cash": 100_000.0,
        "report": {"equity_interval": "4h"},
    }
    config.update(sections)
    return config


def write_config(directory: Path, config: dict[str, Any], name: str = "run.yaml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    shutil.copy(FIXTURE, tmp_path / "bars.csv")
    return tmp_path


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(name))


# ----------------------------------------------------------------------------- successful runs


def test_backtest_writes_the_five_outputs_with_their_columns(workdir: Path) -> None:
    config = write_config(workdir, make_config())
    out = workdir / "out"
    result = invoke("backtest", str(config), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == list(OUTPUT_FILES)
    with (out / "fills.csv").open() as handle:
        rows = list(csv.reader(handle))
    assert tuple(rows[0]) == FILL_COLUMNS
    assert len(rows) > 10
    assert {r[FILL_COLUMNS.index("liquidity")] for r in rows[1:]} == {"taker"}
    assert {r[FILL_COLUMNS.index("reason")] for r in rows[1:]} == {
        "ema fast crossed above slow", "ema fast crossed below slow"}
    with (out / "orders.csv").open() as handle:
        assert tuple(next(csv.reader(handle))) == ORDER_COLUMNS
    with (out / "equity.csv").open() as handle:
        equity = list(csv.reader(handle))
    assert tuple(equity[0]) == EQUITY_COLUMNS
    assert len(equity) == 1 + 1200
    metrics = json.loads((out / "metrics.json").read_text())
    assert METRIC_KEYS <= set(metrics)
    assert metrics["bars"] == 1200
    assert metrics["fills"] == len(rows) - 1
    assert metrics["start"] == "2022-01-01T04:00:00Z"
    assert "total_return" in result.output and "sharpe" in result.output
    assert leftovers(workdir, "out.") == []


def test_resolved_config_has_defaults_and_absolute_paths_and_reruns(workdir: Path) -> None:
    config = write_config(workdir, make_config())
    out = workdir / "out"
    assert invoke("backtest", str(config), "--out", str(out)).exit_code == 0
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["venue"]["fill_on"] == "bars"
    assert resolved["risk"]["max_position"] is None
    assert Path(resolved["data"]["sources"][0]["file"]) == (workdir / "bars.csv").resolve()
    rerun = write_config(workdir / "elsewhere", resolved)
    assert invoke("backtest", str(rerun), "--out", str(workdir / "out2")).exit_code == 0
    assert (workdir / "out2" / "fills.csv").read_bytes() == (out / "fills.csv").read_bytes()


def test_same_config_and_data_give_byte_identical_outputs(workdir: Path) -> None:
    config = write_config(workdir, make_config())
    for name in ("a", "b"):
        assert invoke("backtest", str(config), "--out", str(workdir / name)).exit_code == 0
    for name in OUTPUT_FILES:
        assert (workdir / "a" / name).read_bytes() == (workdir / "b" / name).read_bytes(), name


def test_floats_are_written_repr_exact(workdir: Path) -> None:
    config = write_config(workdir, make_config())
    out = workdir / "out"
    assert invoke("backtest", str(config), "--out", str(out)).exit_code == 0
    with (out / "fills.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for field in ("quantity", "price", "fee"):
            assert repr(float(row[field])) == row[field]


def test_every_fill_price_of_the_quickstart_run_is_on_the_tick_grid(tmp_path: Path) -> None:
    # The shipped quickstart (slippage 2 bps on the shipped catalog) once wrote 665.0600000000001.
    config = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())
    (tick,) = {Decimal(repr(i["tick_size"])) for i in config["instruments"]}
    out = tmp_path / "quickstart"
    assert invoke("backtest", str(REPO / "configs" / "quickstart.yaml"), "--out", str(out)).exit_code == 0
    with (out / "fills.csv").open() as handle:
        prices = [row["price"] for row in csv.DictReader(handle)]
    assert len(prices) > 10
    assert [p for p in prices if Decimal(p) % tick != 0] == []


def test_default_output_directory_is_runs_slash_config_stem(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(workdir / "configs", make_config(data_file="../bars.csv"), name="my_run.yaml")
    monkeypatch.chdir(workdir)
    assert invoke("backtest", str(config)).exit_code == 0
    assert sorted(p.name for p in (workdir / "runs" / "my_run").iterdir()) == list(OUTPUT_FILES)


def test_rerun_replaces_the_previous_run_outputs(workdir: Path) -> None:
    config = write_config(workdir, make_config())
    out = workdir / "out"
    assert invoke("backtest", str(config), "--out", str(out)).exit_code == 0
    first = {name: (out / name).read_bytes() for name in OUTPUT_FILES}
    (out / "fills.csv").write_text("edited")
    assert invoke("backtest", str(config), "--out", str(out)).exit_code == 0
    assert {name: (out / name).read_bytes() for name in OUTPUT_FILES} == first
    assert sorted(p.name for p in out.iterdir()) == list(OUTPUT_FILES)
    assert leftovers(workdir, "out.") == []


def test_output_directory_with_foreign_files_is_refused_and_force_writes_beside_them(workdir: Path) -> None:
    config = write_config(workdir, make_config())
    out = workdir / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    refused = invoke("backtest", str(config), "--out", str(out))
    assert refused.exit_code == 2
    assert f"output directory {out} holds files a backtest run does not write: notes.txt" in refused.output
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert invoke("backtest", str(config), "--out", str(out), "--force").exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([*OUTPUT_FILES, "notes.txt"])
    assert (out / "notes.txt").read_text() == "mine"


def test_catalog_source_runs_like_the_quickstart(workdir: Path) -> None:
    assert invoke("data", "import", str(workdir / "bars.csv"), "--catalog", str(workdir / "cat"), "--venue",
                  "coinbase", "--market", "spot", "--symbol", "BTC-USD").exit_code == 0
    config = make_config()
    config["data"] = {"catalog": "cat", "sources": [{"instrument": "BTC-USD.COINBASE",
                                                      "dataset": "coinbase/spot/BTC-USD/bars_4h"}]}
    path = write_config(workdir, config)
    file_run = write_config(workdir, make_config(), name="file.yaml")
    assert invoke("backtest", str(path), "--out", str(workdir / "cat_out")).exit_code == 0
    assert invoke("backtest", str(file_run), "--out", str(workdir / "file_out")).exit_code == 0
    assert (workdir / "cat_out" / "fills.csv").read_bytes() == (workdir / "file_out" / "fills.csv").read_bytes()


def test_start_and_end_restrict_the_replayed_range(workdir: Path) -> None:
    config = make_config()
    config["data"]["start"] = "2022-02-01"
    config["data"]["end"] = "2022-03-01"
    out = workdir / "out"
    assert invoke("backtest", str(write_config(workdir, config)), "--out", str(out)).exit_code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["start"] == "2022-02-01T00:00:00Z"
    assert metrics["end"] == "2022-02-28T20:00:00Z"
    assert metrics["bars"] == 28 * 6


def test_an_output_directory_under_a_file_is_refused_before_the_run(workdir: Path) -> None:
    """It ran the whole backtest, then died with a NotADirectoryError traceback (exit 1)."""
    (workdir / "afile").write_text("x")
    path = write_config(workdir, make_config())
    result = invoke("backtest", str(path), "--out", str(workdir / "afile" / "sub" / "out"))
    assert result.exit_code == 2
    assert f"output directory {workdir / 'afile' / 'sub' / 'out'} cannot be created: {workdir / 'afile'} is not a " \
        "directory" in " ".join(result.output.split())
    assert "Traceback" not in result.output and "fills" not in result.output


def test_a_window_outside_the_data_is_an_error_naming_where_the_data_lies(workdir: Path) -> None:
    """It ran with no data, wrote zeros and exited 0: a mistyped year looked like a flat strategy.
    The fixture's bars open from 2022-01-01 00:00 to 2022-07-19 20:00 (4h): received at their closes."""
    config = make_config()
    config["data"]["start"] = "2030-01-01"
    config["data"]["end"] = "2030-02-01"
    result = invoke("backtest", str(write_config(workdir, config)), "--out", str(workdir / "out"))
    assert result.exit_code == 3
    assert (
        "data: no source has a row between data.start 2030-01-01T00:00:00Z and data.end 2030-02-01T00:00:00Z "
        f"(exclusive): BTC-USD.COINBASE ({workdir / 'bars.csv'}) spans 2022-01-01T04:00:00Z to 2022-07-20T00:00:00Z"
    ) in " ".join(result.output.split())
    assert leftovers(workdir, "out") == []
    del config["data"]["start"]
    config["data"]["end"] = "2021-06-01"
    result = invoke("backtest", str(write_config(workdir, config)), "--out", str(workdir / "out"))
    assert result.exit_code == 3 and "no source has a row before data.end 2021-06-01T00:00:00Z" in result.output


@pytest.fixture(scope="module")
def resynced_book(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A catalog imported from a USD-M capture whose book lost a depth update and was resynced by a snapshot."""
    from tests.data.test_data_market_ingest import _usdm_config, write_resynced_capture
    from tradebus.node.recording_import import import_recording

    root = tmp_path_factory.mktemp("resynced")
    capture = write_resynced_capture(root / "resynced.gz", depth_updates=200)
    import_recording(capture.recording, _usdm_config(), root / "cat")
    return root / "cat", capture


def test_a_book_run_over_a_resynced_stretch_is_refused_naming_it_and_runs_outside_it(
    tmp_path: Path, resynced_book: tuple[Path, Any]
) -> None:
    """It ran and exited 0: in the stretch the venue matched orders against the book frozen before the lost
    update (six of its 11 TouchQuoter fills fell there), though the import named the stretch in its notes."""
    from tests.live.node_testdata import USDM_IID, USDM_INSTRUMENT

    catalog, capture = resynced_book
    config = {
        "instruments": [USDM_INSTRUMENT],
        "strategy": {"name": "tradebus.strategies.touch_quoter:TouchQuoter", "instruments": [USDM_IID],
                     "params": {"interval_ns": 500_000_000, "quantity": 0.001, "max_position": 0.005}},
        "venue": {"fill_on": "book"},
        "data": {"catalog": str(catalog), "sources": [
            {"instrument": USDM_IID, "kind": "book", "dataset": "binance_usdm/usdm/BTCUSDT/book"},
            {"instrument": USDM_IID, "kind": "trades", "dataset": "binance_usdm/usdm/BTCUSDT/trades"}]},
    }
    start, end = format_ns(capture.last_row_us * 1000), format_ns(capture.snapshot_us * 1000)
    result = invoke("backtest", str(write_config(tmp_path, config)), "--out", str(tmp_path / "out"))
    assert result.exit_code == 3
    assert (
        f"run.yaml: data.sources.0.dataset: the {USDM_IID} book ({catalog}/binance_usdm/usdm/BTCUSDT/book) was out "
        f"of sync from {start} (its last row before the stretch) to the snapshot at {end}, with no book rows in "
        "between: fill_on: book would match orders against the book as it was before the stretch; set data.start "
        f"to {end} (the snapshot) or data.end at or before {start} to run outside it"
    ) in " ".join(result.output.split())
    assert leftovers(tmp_path, "out") == []
    inside = dict(config, data={**config["data"], "start": format_ns(capture.snapshot_us * 1000 - 1000)})
    assert invoke("backtest", str(write_config(tmp_path, inside)), "--out", str(tmp_path / "out")).exit_code == 3
    for n, window in enumerate(({"start": end}, {"end": start})):
        outside = dict(config, data={**config["data"], **window})
        result = invoke("backtest", str(write_config(tmp_path, outside)), "--out", str(tmp_path / f"out{n}"))
        assert result.exit_code == 0, result.output
        assert (tmp_path / f"out{n}" / "fills.csv").is_file()


@pytest.fixture(scope="module")
def stale_catalog(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, int]:
    """A catalog imported from a USD-M recording with one stale-feed stretch (in each of its five datasets)."""
    from tests.data.test_data_market_ingest import _usdm_config, write_book_feed_stale_recording
    from tradebus.node.recording_import import import_recording

    root = tmp_path_factory.mktemp("stale")
    stale_ns, end_ns = write_book_feed_stale_recording(root / "stale.jsonl.gz")
    import_recording(root / "stale.jsonl.gz", _usdm_config(), root / "cat")
    return root / "cat", stale_ns, end_ns


def _stale_run(catalog: Path, **data: Any) -> dict[str, Any]:
    from tests.live.node_testdata import USDM_IID, USDM_INSTRUMENT

    return {
        "instruments": [USDM_INSTRUMENT],
        "strategy": {"name": "tradebus.strategies.tick_ema:TickEmaCross", "instruments": [USDM_IID],
                     "params": {"fast": 2, "slow": 5, "quantity": 0.001}},
        "venue": {"fill_on": "trades"},
        "data": {"catalog": str(catalog), "sources": [
            {"instrument": USDM_IID, "kind": "trades", "dataset": "binance_usdm/usdm/BTCUSDT/trades"},
            {"instrument": USDM_IID, "kind": "quotes", "dataset": "binance_usdm/usdm/BTCUSDT/quotes"}], **data},
    }


def test_data_allow_stale_runs_over_a_stale_stretch_with_one_warning_naming_it(
    tmp_path: Path, stale_catalog: tuple[Path, int, int]
) -> None:
    """A run over a stale stretch was refused with no way to run it but cutting the window around every stretch."""
    from tests.live.node_testdata import USDM_IID

    catalog, a, b = stale_catalog
    result = invoke("backtest", str(write_config(tmp_path, _stale_run(catalog))), "--out", str(tmp_path / "out"))
    assert result.exit_code == 3
    assert "or set data.allow_stale: true to run over it" in " ".join(result.output.split())
    assert leftovers(tmp_path, "out") == []

    result = invoke("backtest", str(write_config(tmp_path, _stale_run(catalog, allow_stale=True))), "--out",
                    str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "fills.csv").is_file()
    assert result.output.count("data.allow_stale: running") == 1  # one stretch, stored in both datasets
    assert (
        f"data.allow_stale: running over the stretch where the {USDM_IID} feed binance-usdm of the recording was "
        f"stale, from {format_ns(a)} to {format_ns(b)} (data.sources.0: {catalog}/binance_usdm/usdm/BTCUSDT/trades): "
        f"the paper daemon denied every new order on {USDM_IID} there; the data is what it received (nothing, then "
        "what came after), and this backtest places and fills orders in it"
    ) in result.output


def test_data_allow_stale_does_not_run_over_a_book_stretch_out_of_sync(
    tmp_path: Path, resynced_book: tuple[Path, Any]
) -> None:
    from tests.live.node_testdata import USDM_IID, USDM_INSTRUMENT

    catalog, _ = resynced_book
    config = {
        "instruments": [USDM_INSTRUMENT],
        "strategy": {"name": "tradebus.strategies.touch_quoter:TouchQuoter", "instruments": [USDM_IID],
                     "params": {"interval_ns": 500_000_000, "quantity": 0.001, "max_position": 0.005}},
        "venue": {"fill_on": "book"},
        "data": {"catalog": str(catalog), "allow_stale": True, "sources": [
            {"instrument": USDM_IID, "kind": "book", "dataset": "binance_usdm/usdm/BTCUSDT/book"}]},
    }
    result = invoke("backtest", str(write_config(tmp_path, config)), "--out", str(tmp_path / "out"))
    assert result.exit_code == 3
    assert "was out of sync" in result.output and "data.allow_stale" not in result.output
    assert leftovers(tmp_path, "out") == []


@pytest.fixture(scope="module")
def trade_gap_catalog(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple[int, int, int, int, int]]:
    """A catalog imported from a USD-M trades recording with 4 s of trades lost for good, and that gap."""
    from tests.data.test_data_market_ingest import trades_only_usdm_config, write_trade_gap_recording
    from tradebus.node.recording_import import import_recording

    root = tmp_path_factory.mktemp("trade_gap")
    rec = write_trade_gap_recording(root / "gap.jsonl.gz")
    import_recording(rec.recording, trades_only_usdm_config(), root / "cat")
    gap = (rec.kept[rec.at - 1][0], rec.kept[rec.at][0], rec.missing[0], rec.missing[-1], len(rec.missing))
    return root / "cat", gap


def _trades_run(catalog: Path, **data: Any) -> dict[str, Any]:
    from tests.live.node_testdata import USDM_IID, USDM_INSTRUMENT

    return {
        "instruments": [USDM_INSTRUMENT],
        "strategy": {"name": "tradebus.strategies.tick_ema:TickEmaCross", "instruments": [USDM_IID],
                     "params": {"fast": 2, "slow": 5, "quantity": 0.001}},
        "venue": {"fill_on": "trades"},
        "data": {"catalog": str(catalog), "sources": [
            {"instrument": USDM_IID, "kind": "trades", "dataset": "binance_usdm/usdm/BTCUSDT/trades"}], **data},
    }


def test_a_catalog_trades_source_without_a_kind_is_refused_saying_the_kind_defaulted_to_bars(
    tmp_path: Path, trade_gap_catalog: tuple[Path, tuple[int, int, int, int, int]]
) -> None:
    """It said only "data.sources.0.kind: 'bars', but dataset ... holds trades", of a config that wrote no kind
    (a bar strategy filling on bars: nothing else in the config tells the source is not bars)."""
    from tests.live.node_testdata import USDM_IID

    catalog, _ = trade_gap_catalog
    config = _trades_run(catalog, allow_missed_trades=True)
    del config["data"]["sources"][0]["kind"]
    config["venue"] = {"fill_on": "bars"}
    config["strategy"] = {"name": "ema_cross", "instruments": [USDM_IID],
                          "params": {"fast": 2, "slow": 4, "quantity": 0.001}}
    result = invoke("backtest", str(write_config(tmp_path, config)), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2, result.output
    assert (
        "run.yaml: data.sources.0.kind: 'bars' (no kind given: it defaults to 'bars'), but dataset "
        "'binance_usdm/usdm/BTCUSDT/trades' holds trades: give kind: trades"
    ) in " ".join(result.output.split())
    assert leftovers(tmp_path, "out") == []


def test_a_run_over_trades_lost_for_good_is_refused_naming_the_gap_and_runs_outside_it(
    tmp_path: Path, trade_gap_catalog: tuple[Path, tuple[int, int, int, int, int]]
) -> None:
    """It ran and exited 0 without a word: the strategy saw, and the venue filled on, none of the trades the
    venue printed in the gap, though the import stored it in the manifest (missed_trades) and data info listed it."""
    from tests.live.node_testdata import USDM_IID

    catalog, (a, b, first, last, lost) = trade_gap_catalog
    result = invoke("backtest", str(write_config(tmp_path, _trades_run(catalog))), "--out", str(tmp_path / "out"))
    assert result.exit_code == 3
    assert (
        f"run.yaml: data.sources.0.dataset: {lost} trades of {USDM_IID} (ids {first}..{last}) are missing from this "
        f"dataset ({catalog}/binance_usdm/usdm/BTCUSDT/trades) between {format_ns(a)} (the last trade before them) "
        f"and {format_ns(b)} (the trade that revealed the gap): the venue printed them, but the recording it was "
        "imported from has no fetch of them that filled the gap, so the strategy would not see them and the "
        f"backtest would not fill on them; set data.start to {format_ns(b)} or data.end at or before {format_ns(a)} "
        "to run outside it, or set data.allow_missed_trades: true to run over it without them"
    ) in " ".join(result.output.split())
    assert leftovers(tmp_path, "out") == []
    assert invoke("backtest", str(write_config(tmp_path, _trades_run(catalog, start=format_ns(b - 1000)))),
                  "--out", str(tmp_path / "out")).exit_code == 3
    assert invoke("backtest", str(write_config(tmp_path, _trades_run(catalog, allow_stale=True))),
                  "--out", str(tmp_path / "out")).exit_code == 3  # a stale stretch is another hole
    for n, window in enumerate(({"start": format_ns(b)}, {"end": format_ns(a)})):
        result = invoke("backtest", str(write_config(tmp_path, _trades_run(catalog, **window))), "--out",
                        str(tmp_path / f"out{n}"))
        assert result.exit_code == 0, result.output
        assert (tmp_path / f"out{n}" / "fills.csv").is_file()


def test_data_allow_missed_trades_runs_over_a_trade_gap_with_one_warning_naming_it(
    tmp_path: Path, trade_gap_catalog: tuple[Path, tuple[int, int, int, int, int]]
) -> None:
    from tests.live.node_testdata import USDM_IID

    catalog, (a, b, first, last, lost) = trade_gap_catalog
    result = invoke("backtest", str(write_config(tmp_path, _trades_run(catalog, allow_missed_trades=True))),
                    "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "fills.csv").is_file()
    output = " ".join(result.output.split())
    assert output.count("data.allow_missed_trades: running") == 1
    assert (
        f"data.allow_missed_trades: running over {lost} trades of {USDM_IID} (ids {first}..{last}) missing between "
        f"{format_ns(a)} and {format_ns(b)} (data.sources.0: {catalog}/binance_usdm/usdm/BTCUSDT/trades): the venue "
        "printed them, the strategy does not see them and the backtest does not fill on them"
    ) in output


@pytest.fixture(scope="module")
def usdm_book(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pa.Table]:
    """A catalog imported from the USD-M capture (its only snapshot at 23:58:20.599) and its book rows."""
    from tests.data.test_data_market_ingest import _usdm_config
    from tests.live.node_testdata import USDM_CAPTURE
    from tradebus.node.recording_import import import_recording

    root = tmp_path_factory.mktemp("usdm_book") / "cat"
    import_recording(USDM_CAPTURE, _usdm_config(), root)
    return root, Catalog(root).read("binance_usdm", "usdm", "BTCUSDT", "book")


def _touch_config(catalog: Path, start: str) -> dict[str, Any]:
    from tests.live.node_testdata import USDM_IID, USDM_INSTRUMENT

    return {
        "instruments": [USDM_INSTRUMENT],
        "strategy": {"name": "tradebus.strategies.touch_quoter:TouchQuoter", "instruments": [USDM_IID],
                     "params": {"interval_ns": 100_000_000, "quantity": 0.001, "max_position": 0.005}},
        "venue": {"fill_on": "book"},
        "data": {"catalog": str(catalog), "start": start, "sources": [
            {"instrument": USDM_IID, "kind": "book", "dataset": "binance_usdm/usdm/BTCUSDT/book"},
            {"instrument": USDM_IID, "kind": "trades", "dataset": "binance_usdm/usdm/BTCUSDT/trades"}]},
    }


def _touches(rows: pa.Table, times: list[int]) -> list[tuple[float, float]]:
    """(best bid, best ask) of the book the rows with ``ts_init`` before each time leave (dicts, row by row)."""
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    prev = None
    out = []
    columns = ("ts_init", "sequence", "side", "price", "size", "flags")
    it = iter(zip(*(rows.column(c).to_pylist() for c in columns), strict=True))
    row = next(it, None)
    for t in times:
        while row is not None and row[0] < t:
            ts, seq, side, price, size, flags = row
            snapshot = bool(flags & BOOK_SNAPSHOT)
            if snapshot and prev != (ts, seq, snapshot):
                bids, asks = {}, {}
            prev = (ts, seq, snapshot)
            book = bids if side > 0 else asks
            if size > 0.0:
                book[price] = size
            else:
                book.pop(price, None)
            row = next(it, None)
        out.append((max(bids), min(asks)))
    return out


def test_a_book_run_starting_between_snapshots_quotes_and_fills_against_the_book_at_its_start(
    tmp_path: Path, usdm_book: tuple[Path, pa.Table]
) -> None:
    """It replayed the diffs after data.start onto an EMPTY book, exit 0, no warning: 2 s after the start the
    book had 181 of 1,344 bid levels, the quoter posted at touches the venue never had and the fills differed."""
    catalog, rows = usdm_book
    start = "2023-04-04T23:58:37Z"
    start_ns = int(np.datetime64(start.rstrip("Z"), "ns").astype(np.int64))
    path = write_config(tmp_path, _touch_config(catalog, start))
    result = invoke("backtest", str(path), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    with (tmp_path / "out" / "orders.csv").open() as fh:
        orders = list(csv.DictReader(fh))
    with (tmp_path / "out" / "fills.csv").open() as fh:
        fills = list(csv.DictReader(fh))
    assert len(orders) > 100 and fills
    assert min(int(o["ts_created"]) for o in orders) >= start_ns and min(int(f["ts_event"]) for f in fills) >= start_ns
    # Every quote is at the touch of the book the rows up to its time rebuild (the first one 100 ms after the start).
    touches = _touches(rows, [int(o["ts_created"]) for o in orders])
    assert [float(o["price"]) for o in orders] == [bid if o["side"] == "BUY" else ask
                                                   for o, (bid, ask) in zip(orders, touches, strict=True)]
    # The run over the rows from the start on alone (an empty book at the start) fills otherwise.
    empty = Catalog(tmp_path / "empty")
    late = rows.filter(pc.greater_equal(rows.column("ts_init"), start_ns))
    empty.write(late, "binance_usdm", "usdm", "BTCUSDT", "book", kind="book")
    trades = Catalog(catalog).read("binance_usdm", "usdm", "BTCUSDT", "trades")
    empty.write(trades, "binance_usdm", "usdm", "BTCUSDT", "trades", kind="trades")
    recorded = Catalog(catalog).manifest("binance_usdm", "usdm", "BTCUSDT", "trades").contract_size
    empty.record_contract_size("binance_usdm", "usdm", "BTCUSDT", "trades", recorded)  # write() takes no size
    config = _touch_config(tmp_path / "empty", start)
    result = invoke("backtest", str(write_config(tmp_path, config)), "--out", str(tmp_path / "out_empty"))
    assert result.exit_code == 0, result.output
    with (tmp_path / "out_empty" / "fills.csv").open() as fh:
        empty_fills = list(csv.DictReader(fh))
    assert [(f["ts_event"], f["side"], f["price"]) for f in empty_fills] != [
        (f["ts_event"], f["side"], f["price"]) for f in fills
    ]


@pytest.mark.parametrize("shift", [0, 789])
def test_a_book_run_starting_where_no_snapshot_precedes_it_is_refused_naming_the_first_snapshot(
    tmp_path: Path, usdm_book: tuple[Path, pa.Table], shift: int
) -> None:
    """Diffs before data.start and no snapshot among them: it replayed the window onto an empty book, exit 0.
    Stamped to the nanosecond (a recording's receive times, ``shift`` 789 ns), the advice named the snapshot at
    ...789Z, which data.start refused (no microsecond time worked: before the snapshot is refused, after it drops the
    snapshot row); the run from the snapshot's nanosecond passes, which it does only with the snapshot row in."""
    from tests.live.node_testdata import USDM_IID

    _, rows = usdm_book
    ts = np.asarray(rows.column("ts_init")) + shift
    rows = rows.set_column(rows.schema.get_field_index("ts_init"), "ts_init", pa.array(ts))
    rows = rows.set_column(rows.schema.get_field_index("ts_event"), "ts_event",
                           pa.array(np.asarray(rows.column("ts_event")) + shift))
    flags = np.asarray(rows.column("flags")).copy()
    later = int(ts[np.searchsorted(ts, ts[0] + 30 * 1_000_000_000)])
    flags[:] = 0
    flags[ts == later] = BOOK_SNAPSHOT  # the first snapshot: a diff's levels, 30 s in
    cat = Catalog(tmp_path / "cat")
    table = rows.set_column(rows.schema.get_field_index("flags"), "flags", pa.array(flags))
    cat.write(table, "binance_usdm", "usdm", "BTCUSDT", "book", kind="book")
    cat.write(pa.table({"ts_event": ts[:1], "ts_init": ts[:1], "price": [28_000.0], "size": [0.001],
                        "aggressor": pa.array([1], pa.int8()), "trade_id": ["1"]}),
              "binance_usdm", "usdm", "BTCUSDT", "trades", kind="trades")
    cat.record_contract_size("binance_usdm", "usdm", "BTCUSDT", "trades", 1.0)  # USD-M sizes are base units
    config = _touch_config(tmp_path / "cat", "2023-04-04T23:58:40Z")
    result = invoke("backtest", str(write_config(tmp_path, config)), "--out", str(tmp_path / "out"))
    assert result.exit_code == 3
    text = " ".join(result.output.split())
    assert (
        f"the {USDM_IID} book cannot be rebuilt at the start 2023-04-04T23:58:40Z: no snapshot at or before it (the "
        f"dataset's rows begin at {format_ns(ts[0])}; the window's deltas would update an empty book); its "
        f"first snapshot is at {format_ns(later)}; set data.start at or after it"
    ) in text
    assert leftovers(tmp_path, "out") == []
    config["data"]["start"] = format_ns(later)
    result = invoke("backtest", str(write_config(tmp_path, config)), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())["data"]["start"] == format_ns(later)


@pytest.mark.parametrize("fill_on", ["trades", "quotes"])
def test_a_run_reading_the_book_over_a_resynced_stretch_is_refused_whatever_it_fills_on(
    tmp_path: Path, resynced_book: tuple[Path, Any], fill_on: str
) -> None:
    """Only fill_on: book was refused: a TouchQuoter filling on trades or quotes ran and exited 0, quoting
    the best bid and ask of the book frozen before the lost update all through the stretch."""
    from tests.live.node_testdata import USDM_IID, USDM_INSTRUMENT
    from tradebus.reports.metrics import format_ns

    catalog, capture = resynced_book
    config = {
        "instruments": [USDM_INSTRUMENT],
        "strategy": {"name": "tradebus.strategies.touch_quoter:TouchQuoter", "instruments": [USDM_IID],
                     "params": {"interval_ns": 500_000_000, "quantity": 0.001, "max_position": 0.005}},
        "venue": {"fill_on": fill_on},
        "data": {"catalog": str(catalog), "sources": [
            {"instrument": USDM_IID, "kind": "book", "dataset": "binance_usdm/usdm/BTCUSDT/book"},
            {"instrument": USDM_IID, "kind": fill_on, "dataset": f"binance_usdm/usdm/BTCUSDT/{fill_on}"}]},
    }
    start, end = format_ns(capture.last_row_us * 1000), format_ns(capture.snapshot_us * 1000)
    result = invoke("backtest", str(write_config(tmp_path, config)), "--out", str(tmp_path / "out"))
    assert result.exit_code == 3
    assert (
        f"run.yaml: data.sources.0.dataset: the {USDM_IID} book ({catalog}/binance_usdm/usdm/BTCUSDT/book) was out "
        f"of sync from {start} (its last row before the stretch) to the snapshot at {end}, with no book rows in "
        "between: the run replays it to strategy (tradebus.strategies.touch_quoter:TouchQuoter), whose book "
        f"handlers would read the book as it was before the stretch; set data.start to {end} (the snapshot) or "
        f"data.end at or before {start} to run outside it, or leave data.sources.0 out if no strategy reads the book"
    ) in " ".join(result.output.split())
    assert leftovers(tmp_path, "out") == []
    outside = dict(config, data={**config["data"], "start": end})
    result = invoke("backtest", str(write_config(tmp_path, outside)), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output


# ----------------------------------------------------------------------------- bad config


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c.update(initial_cahs=5), "initial_cahs: unknown key"),
        (lambda c: c["venue"].update(latency=5) if "venue" in c else c.update(venue={"latency": 5}),
         "venue.latency: unknown key"),
        (lambda c: c["strategy"]["params"].update(fast=0), "strategy.params.fast"),
        (lambda c: c["strategy"]["params"].update(slow=5), "fast (10) must be smaller than slow (5)"),
        (lambda c: c["strategy"]["params"].update(window=3), "strategy.params.window: unknown key"),
        (lambda c: c["strategy"]["params"].update(quantity=1e-9), "strategy.params.quantity"),
        (lambda c: c["strategy"].update(name="nope"), "strategy.name: unknown strategy 'nope'"),
        (lambda c: c["instruments"][0].update(tick_size=-1), "instruments.0.tick_size"),
        (lambda c: c["data"]["sources"][0].update(instrument="ETH-USD.COINBASE"), "data.sources.0.instrument"),
        (lambda c: c["data"]["sources"][0].update(file="missing.csv"), "run.yaml: data.sources.0.file: no such file"),
        (lambda c: c.pop("strategy"), "strategy: required field is missing"),
        (lambda c: c["report"].update(equity_interval="hourly"), "report.equity_interval"),
        (lambda c: c.update(features=[{"name": "v", "kind": "ewm_stdd", "input": "close"}]),
         "features: feature 'v' (kind 'ewm_stdd')"),
        (lambda c: c.update(features=[{"name": "imb", "kind": "book_imbalance", "params": {"levels": 5}}]),
         "feature 'imb' of BTC-USD.COINBASE is driven by book events, which a run does not feed"),
    ],
)
def test_bad_config_exits_2_naming_file_and_field_without_output(
    workdir: Path, mutate: Any, expected: str
) -> None:
    config = make_config()
    mutate(config)
    path = write_config(workdir, config)
    result = invoke("backtest", str(path), "--out", str(workdir / "out"))
    assert result.exit_code == 2
    assert expected in result.output
    assert "Traceback" not in result.output
    assert leftovers(workdir, "out") == []


def test_missing_catalog_dataset_names_the_config_field(workdir: Path) -> None:
    config = make_config()
    config["data"] = {"catalog": "cat", "sources": [{"instrument": "BTC-USD.COINBASE",
                                                      "dataset": "coinbase/spot/BTC-USD/bars_1h"}]}
    result = invoke("backtest", str(write_config(workdir, config)), "--out", str(workdir / "out"))
    assert result.exit_code == 2
    assert "run.yaml: data.sources.0.dataset: no dataset 'coinbase/spot/BTC-USD/bars_1h'" in result.output
    assert leftovers(workdir, "out") == []


def test_ack_latency_samples_are_read_beside_the_config_whatever_the_working_directory(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``venue.book.ack_latency_samples`` is a path of the config, resolved against its directory as data files are."""
    book = {"ack_latency_samples": "acks.csv", "latency_seed": 3}
    config = make_config(data_file="../bars.csv", venue={"fill_on": "book", "book": book})
    # A book venue needs the instrument's book: one snapshot (a bid and an ask) at the bars' start.
    ts = 1_640_995_200_000_000_000
    rows = [(ts, ts, 1, 1, 46000.0, 1.0, BOOK_SNAPSHOT), (ts, ts, 1, -1, 46001.0, 1.0, BOOK_SNAPSHOT)]
    schema = schema_for("book")
    columns = [pa.array(c, type=f.type) for c, f in zip(zip(*rows), schema, strict=True)]
    Catalog(workdir / "conf" / "cat").write(pa.Table.from_arrays(columns, schema=schema), "coinbase", "spot",
                                             "BTC-USD", "book", kind="book")
    config["data"]["catalog"] = "cat"
    config["data"]["sources"].append({"instrument": "BTC-USD.COINBASE", "kind": "book",
                                      "dataset": "coinbase/spot/BTC-USD/book"})
    path = write_config(workdir / "conf", config)
    (workdir / "conf" / "acks.csv").write_text("800000\n1200000\n950000\n")
    elsewhere = workdir / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = invoke("backtest", str(path), "--out", str(workdir / "out"))
    assert result.exit_code == 0, result.output
    recorded = yaml.safe_load((workdir / "out" / "config.yaml").read_text())
    assert recorded["venue"]["book"]["ack_latency_samples"] == str(workdir.resolve() / "conf" / "acks.csv")
    (workdir / "conf" / "acks.csv").unlink()
    missing = invoke("backtest", str(path), "--out", str(workdir / "out2"))
    assert missing.exit_code == 2
    expected = f"run.yaml: venue.book.ack_latency_samples: no such file {workdir.resolve()}/conf/acks.csv"
    assert "".join(expected.split()) in "".join(missing.output.split())  # however the console wrapped it
    assert leftovers(workdir, "out2") == []


def test_missing_config_file_exits_2(workdir: Path) -> None:
    result = invoke("backtest", str(workdir / "nope.yaml"), "--out", str(workdir / "out"))
    assert result.exit_code == 2
    assert "nope.yaml: config file not found" in result.output


def test_invalid_yaml_exits_2(workdir: Path) -> None:
    path = workdir / "bad.yaml"
    path.write_text("data: [unclosed\n")
    result = invoke("backtest", str(path), "--out", str(workdir / "out"))
    assert result.exit_code == 2
    assert "not valid YAML" in result.output


# ----------------------------------------------------------------------------- bad data


def _corrupt(path: Path, row: int, column: str, value: str) -> None:
    with path.open() as handle:
        rows = list(csv.reader(handle))
    rows[row][rows[0].index(column)] = value
    with path.open("w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)


@pytest.mark.parametrize(
    ("row", "column", "value", "expected"),
    [
        (500, "close", "nan", "row 500"),
        (600, "open", "0", "row 600"),
        (700, "low", "-5", "row 700"),
        (800, "high", "1.0", "row 800"),
        (900, "ts", "1641009600000", "row 900"),
    ],
)
def test_bad_data_stops_before_trading_naming_the_row_and_leaves_no_output(
    workdir: Path, row: int, column: str, value: str, expected: str
) -> None:
    _corrupt(workdir / "bars.csv", row, column, value)
    path = write_config(workdir, make_config())
    result = invoke("backtest", str(path), "--out", str(workdir / "out"))
    assert result.exit_code == 3, result.output
    assert "bars.csv" in result.output and expected in result.output
    assert "Traceback" not in result.output
    assert leftovers(workdir, "out") == []


def test_bad_data_names_the_path_of_the_file_among_files_of_the_same_name(workdir: Path) -> None:
    for name in ("btc", "eth"):
        (workdir / name).mkdir()
        shutil.copy(FIXTURE, workdir / name / "bars.csv")
    _corrupt(workdir / "eth" / "bars.csv", 500, "close", "nan")
    config = make_config("btc/bars.csv")
    eth = dict(config["instruments"][0], symbol="ETH-USD", base="ETH")
    config["instruments"].append(eth)
    config["data"]["sources"].append({"instrument": "ETH-USD.COINBASE", "file": "eth/bars.csv"})
    result = invoke("backtest", str(write_config(workdir, config)), "--out", str(workdir / "out"))
    assert result.exit_code == 3, result.output
    expected = f"{workdir / 'eth' / 'bars.csv'} row 500: close nan"
    assert "".join(expected.split()) in "".join(result.output.split())  # however the console wrapped it


def test_duplicate_bar_time_stops_before_trading(workdir: Path) -> None:
    path = workdir / "bars.csv"
    rows = path.read_text().splitlines()
    rows[400] = rows[399].split(",")[0] + "," + rows[400].split(",", 1)[1]
    path.write_text("\n".join(rows) + "\n")
    result = invoke("backtest", str(write_config(workdir, make_config())), "--out", str(workdir / "out"))
    assert result.exit_code == 3, result.output
    assert "bars.csv row 400" in result.output and "duplicate" in result.output
    assert leftovers(workdir, "out") == []


def test_corrupt_catalog_row_found_before_trading(workdir: Path) -> None:
    import pyarrow.parquet as pq

    from tests.catalog_damage import keep_sizes

    assert invoke("data", "import", str(workdir / "bars.csv"), "--catalog", str(workdir / "cat"), "--venue",
                  "coinbase", "--market", "spot", "--symbol", "BTC-USD").exit_code == 0
    part = next((workdir / "cat").rglob("*.parquet"))
    table = pq.read_table(part)
    close = table.column("close").to_pylist()
    close[1000] = -1.0
    pq.write_table(table.set_column(table.column_names.index("close"), "close", [close]), part)
    keep_sizes(part.parents[1])  # a damage that keeps the file's size: else every read refuses it, naming no row
    config = make_config()
    config["data"] = {"catalog": "cat", "sources": [{"instrument": "BTC-USD.COINBASE",
                                                      "dataset": "coinbase/spot/BTC-USD/bars_4h"}]}
    result = invoke("backtest", str(write_config(workdir, config)), "--out", str(workdir / "out"))
    assert result.exit_code == 3, result.output
    assert "row 1001" in result.output
    assert leftovers(workdir, "out") == []


# ----------------------------------------------------------------------------- entry points


def test_python_dash_m_and_the_backtest_script_run(workdir: Path) -> None:
    config = write_config(workdir, make_config())
    env = {**os.environ, "NUMBA_CACHE_DIR": str(REPO / ".cache" / "numba")}
    help_text = subprocess.run(
        [sys.executable, "-m", "tradebus.cli", "--help"], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert "backtest" in help_text and "data" in help_text
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "backtest.py"), str(config), "--out", str(workdir / "out")],
        capture_output=True, text=True, env=env,
    )
    assert done.returncode == 0, done.stderr
    assert (workdir / "out" / "metrics.json").is_file()
    failed = subprocess.run(
        [sys.executable, "-m", "tradebus.cli", "backtest", str(workdir / "missing.yaml")],
        capture_output=True, text=True, env=env,
    )
    assert failed.returncode == 2
    assert "Traceback" not in failed.stdout + failed.stderr


def test_data_commands_are_mounted() -> None:
    result = invoke("data", "--help")
    assert result.exit_code == 0
    assert "import" in result.output


# ----------------------------------------------------------------------------- progress


def test_progress_bar_appears_only_after_the_delay_on_a_terminal() -> None:
    import io

    from rich.console import Console

    from tradebus.cli import LazyProgress

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=100)
    late = LazyProgress(console, total=100, after_s=3600.0)
    late(50)
    assert not late.shown and buffer.getvalue() == ""
    early = LazyProgress(console, total=100, after_s=0.0)
    early(40)
    early(60)
    early.close()
    assert early.shown
    assert "100/100 rows" in buffer.getvalue()


def test_no_progress_bar_when_output_is_not_a_terminal() -> None:
    import io

    from rich.console import Console

    from tradebus.cli import progress_for

    assert progress_for(Console(file=io.StringIO()), 10) is None
    assert progress_for(Console(file=io.StringIO(), force_terminal=True), 10) is not None


_TERM_WHILE_WRITING = '''
import os
import signal
import sys

from tradebus.strategies.base import Strategy


def _term_at_the_orders_output(event, args):
    if event == "open" and ".orders.csv.tmp-" in str(args[0]):
        os.kill(os.getpid(), signal.SIGTERM)


class TermWhileWriting(Strategy):
    """Sends its own process SIGTERM as the run opens its second output file (fills.csv is written)."""

    def on_bar(self, bar):
        if self.position() == 0:
            self.target_position(self.instrument_id, 0.01, reason="in")

    def on_stop(self):
        sys.addaudithook(_term_at_the_orders_output)
'''


def test_sigterm_while_the_outputs_are_written_leaves_the_earlier_run_as_it_was(workdir: Path) -> None:
    """Killed outright, it left .fills.csv.tmp-PID in --out (exit -15), and the next run refused that
    directory as holding files a backtest run does not write."""
    out = workdir / "out"
    assert invoke("backtest", str(write_config(workdir, make_config())), "--out", str(out)).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (workdir / "killer").mkdir()
    (workdir / "killer" / "__init__.py").write_text("")
    (workdir / "killer" / "term.py").write_text(_TERM_WHILE_WRITING)
    config = make_config(strategy={"name": "killer.term:TermWhileWriting", "instruments": ["BTC-USD.COINBASE"]})
    proc = subprocess.run(
        [sys.executable, "-m", "tradebus.cli", "backtest", str(write_config(workdir, config, "term.yaml")), "--out", str(out)],
        capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "1000"},
    )
    assert proc.returncode == 143, proc.stdout + proc.stderr
    assert proc.stderr.splitlines() == [
        f"backtest interrupted (SIGTERM) before writing its outputs: nothing was written ({out} is as it was)"]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert invoke("backtest", str(workdir / "run.yaml"), "--out", str(out)).exit_code == 0  # accepted again


@pytest.mark.parametrize(
    ("config", "sets"),
    [
        # margin spot: a 0.25 BTC long "liquidated" against 50,000 USD on the next bar, repeatedly
        ("ema_cross_long_short.yaml", ["strategy.params.quantity=25", "risk.max_order_quantity=50", "risk.max_position=25"]),
        # cash spot: 35 buys denied "needs 2601605.665 USD > available 2581325.473 USD" with 100,000 USD of cash
        ("quickstart.yaml", ["strategy.params.quantity=50", "risk.max_position=100"]),
    ],
)
def test_a_spot_instrument_with_a_contract_size_is_a_config_error(tmp_path: Path, config: str, sets: list[str]) -> None:
    overrides = [arg for value in ["instruments.0.contract_size=0.01", *sets] for arg in ("--set", value)]
    result = invoke("backtest", str(REPO / "configs" / config), "--out", str(tmp_path / "out"), *overrides)
    assert result.exit_code == 2, result.output
    assert "instruments.0: instrument BTC-USD.COINBASE: contract_size 0.01 applies to perpetuals; a spot instrument " \
        "trades base units" in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_the_window_a_refusal_over_a_catalogs_hole_suggests_is_run_when_its_times_have_nanoseconds(
    tmp_path: Path,
) -> None:
    """A live recording stamps frames in ns; the refusal said `set data.start to ...40.722579789Z`, which a config
    held to the microsecond (...40.722579Z, before the gap's end): the run with it was refused again, the same
    advice given; then such a start was refused, and the advice rounded up (...40.72258Z, past the trade that
    revealed the gap). The advice is now the trades' own times, to the nanosecond, and the runs with them pass."""
    import re

    from tests.data.test_data_market_ingest import trades_only_usdm_config, write_trade_gap_recording
    from tradebus.adapters.common.recorder import FrameRecorder
    from tradebus.node.recording_import import import_recording

    rec = write_trade_gap_recording(tmp_path / "us.jsonl.gz")
    with FrameRecorder(tmp_path / "ns.jsonl.gz") as out:
        for recv_ns, conn, raw in rec.kept:
            out.write(recv_ns + 789, conn, raw)
    import_recording(tmp_path / "ns.jsonl.gz", trades_only_usdm_config(), tmp_path / "cat")
    result = invoke("backtest", str(write_config(tmp_path, _trades_run(tmp_path / "cat"))), "--out",
                    str(tmp_path / "out"))
    assert result.exit_code == 3
    found = re.search(r"set data\.start to (\S+) or data\.end at or before (\S+) to run outside it",
                      " ".join(result.output.split()))
    assert found is not None, result.output
    assert found.groups() == (format_ns(rec.kept[rec.at][0] + 789), format_ns(rec.kept[rec.at - 1][0] + 789))
    for n, window in enumerate(({"start": found[1]}, {"end": found[2]})):
        result = invoke("backtest", str(write_config(tmp_path, _trades_run(tmp_path / "cat", **window))), "--out",
                        str(tmp_path / f"out{n}"))
        assert result.exit_code == 0, result.output


#: Overwrites x/spot/S/bars of the catalog argv[1] with the second version of raced_versions().
_OVERWRITE_ONCE = r"""
import sys
from loguru import logger
from tests.data.test_data_catalog import raced_versions
from tradebus.data.catalog import Catalog
logger.remove()
table, interval_ns = raced_versions()[1]
Catalog(sys.argv[1]).write(table, "x", "spot", "S", "bars", "day", interval_ns=interval_ns, mode="overwrite")
"""


def test_a_backtest_runs_the_version_of_its_catalog_data_it_validated_whatever_an_overwrite_does_meanwhile(
    tmp_path: Path,
) -> None:
    """A backtest validated its catalog data (checking every row, counting them for its progress), then opened the
    dataset afresh for the run: an ``--overwrite`` in another process in between made it run a version it had not
    validated (480 bars run of the 240 counted, the new version's rows never checked). The replay now holds one
    version from the validation to the end of the run (:meth:`Replay.pinned`): the 240 bars validated are run,
    and the overwrite went through meanwhile."""
    from tests.data.test_data_catalog import raced_versions
    from tradebus.cli import run_backtest

    table, interval_ns = raced_versions()[0]
    Catalog(tmp_path / "cat").write(table, "x", "spot", "S", "bars", "day", interval_ns=interval_ns)
    config = make_config()
    config["data"] = {"catalog": "cat", "sources": [{"instrument": "BTC-USD.COINBASE", "dataset": "x/spot/S/bars"}]}
    config["strategy"]["params"].update(fast=3, slow=8)
    config["report"] = {"equity_interval": "1h"}
    counted, run = [], []

    def overwrite_then_count(rows: int) -> Any:
        counted.append(rows)
        done = subprocess.run([sys.executable, "-c", _OVERWRITE_ONCE, str(tmp_path / "cat")], capture_output=True,
                              text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=600)
        assert done.returncode == 0, done.stderr
        return run.append

    _, metrics, _ = run_backtest(write_config(tmp_path, config), tmp_path / "out", on_batch_factory=overwrite_then_count)
    assert (counted, sum(run), metrics["bars"]) == ([240], 240, 240)
    assert Catalog(tmp_path / "cat").manifest("x", "spot", "S", "bars").rows == 480  # the overwrite was not held up


_INTERRUPTING = '''
import os
import signal
import sys

from tradebus.strategies.base import Strategy

WHERE = os.environ["TRADEBUS_TEST_INTERRUPT"]
SIGNAL = getattr(signal, os.environ.get("TRADEBUS_TEST_SIGNAL", "SIGINT"))
bars = []
moved = []


def _interrupt(event, args):
    if event == "os.rename" and str(args[1]).endswith("metrics.json"):
        moved.append(args[1])
        if WHERE == "moves":
            os.kill(os.getpid(), SIGNAL)
    if WHERE == "first move" and event == "os.rename" and not str(args[1]).endswith(("INCOMPLETE", "tearsheet.html")):
        os.kill(os.getpid(), SIGNAL)
    if WHERE == "page" and moved and event == "open" and ".tearsheet.html.tmp-" in str(args[0]):
        os.kill(os.getpid(), SIGNAL)


class Interrupting(Strategy):
    """Ctrl-C (or TRADEBUS_TEST_SIGNAL) of its own process: at its 50th bar ("run"), as metrics.json is moved in place
    ("moves"), as the first of the run's files is ("first move"), as the tearsheet is written after the run's files
    are in place ("page"), or never ("none")."""

    def on_bar(self, bar):
        if self.position() == 0:
            self.target_position(self.instrument_id, 0.01, reason="in")
        bars.append(bar)
        if WHERE == "run" and len(bars) == 50:
            os.kill(os.getpid(), SIGNAL)

    def on_stop(self):
        sys.addaudithook(_interrupt)
'''


@pytest.mark.parametrize(
    ("where", "line"),
    [
        ("run", "backtest interrupted (Ctrl-C) before writing its outputs: nothing was written ({out} is as it was)"),
        ("moves", "backtest interrupted (Ctrl-C) while writing its outputs: {out} holds the INCOMPLETE marker (its "
                  "files are a mix of this run's and the earlier ones); run it again"),
        ("page", "backtest interrupted (Ctrl-C) after writing its outputs to {out}; its tearsheet.html was not "
                 "written (the page there says so): tradebus report {out} writes it"),
    ],
)
def test_ctrl_c_of_a_backtest_says_in_one_line_what_it_left_in_its_output_directory(
    workdir: Path, where: str, line: str
) -> None:
    """Ctrl-C ended a backtest with exit 130 and nothing on stderr: whether --out was as before, a mix of two runs
    under the INCOMPLETE marker, or this run's files beside the earlier run's tearsheet, the user was not told."""
    out = workdir / "out"
    assert invoke("backtest", str(write_config(workdir, make_config())), "--out", str(out), "--report").exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = _interrupted_backtest(workdir, out, where)
    assert proc.returncode == 130, proc.stdout + proc.stderr
    assert proc.stderr.splitlines() == [line.format(out=out)], proc.stderr
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert not [name for name in after if ".tmp-" in name]
    if where == "run":
        assert after == before
    elif where == "moves":
        assert "INCOMPLETE" in after and invoke("report", str(out)).exit_code == 2  # refused, not shown as complete
    else:
        assert after["tearsheet.html"] == UNWRITTEN_PAGE.encode() and after["metrics.json"] != before["metrics.json"]
        assert "INCOMPLETE" not in after


@pytest.mark.parametrize(("held", "said"), [
    ("note", "tearsheet written in place of the note a run stopped before its page left there"),
    ("page", "tearsheet of the earlier run rewritten for this one"),
    (None, None),
])
def test_the_tearsheet_a_backtest_rewrites_is_logged_as_what_the_directory_held(
    workdir: Path, held: str | None, said: str | None
) -> None:
    """A backtest into an --out whose tearsheet.html was only UNWRITTEN_PAGE (a run stopped before its page) logged
    'tearsheet of the earlier run rewritten for this one', though no earlier run's page was there; it now says the
    note was replaced, and the earlier run's page rewritten only when there was one (a fresh --out: no page, no line)."""
    out = workdir / "out"
    assert invoke("backtest", str(write_config(workdir, make_config())), "--out", str(out)).exit_code == 0
    page = out / "tearsheet.html"
    if held == "note":
        page.write_text(UNWRITTEN_PAGE, encoding="utf-8")
    elif held == "page":
        assert invoke("report", str(out)).exit_code == 0 and not page.read_text(encoding="utf-8") == UNWRITTEN_PAGE
    result = invoke("backtest", str(write_config(workdir, make_config())), "--out", str(out), "--log-level", "INFO")
    assert result.exit_code == 0, result.output
    lines = [line.partition(" INFO ")[2] for line in result.output.splitlines() if " INFO tearsheet " in line]
    assert lines == ([] if said is None else [f"{said}: {page}"]), result.output
    assert page.is_file() == (held is not None) and (held is None or "tearsheet not written" not in page.read_text())


@pytest.mark.parametrize("earlier", [True, False], ids=["earlier-page", "report-asked"])
def test_a_backtest_stopped_before_its_page_leaves_no_earlier_runs_page_beside_its_files(
    workdir: Path, earlier: bool
) -> None:
    """SIGTERM after a backtest had moved its files in, before it rewrote the tearsheet an earlier --report run left
    there, left that run's page (its total return, trades and charts) beside the new files: a user opening it read
    the earlier run's numbers as this run's. The page's place now holds UNWRITTEN_PAGE, moved in with the other
    files; `tradebus report` then writes the page an uninterrupted run writes. A run with --report into a fresh
    --out ("report-asked") leaves the same note."""
    out = workdir / "out"
    if earlier:
        assert invoke("backtest", str(write_config(workdir, make_config())), "--out", str(out), "--report").exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()} if earlier else {}
    proc = _interrupted_backtest(workdir, out, "page", signal="SIGTERM", args=() if earlier else ("--report",))
    assert proc.returncode == 143, proc.stdout + proc.stderr
    assert proc.stderr.splitlines() == [
        f"backtest interrupted (SIGTERM) after writing its outputs to {out}; its tearsheet.html was not written (the "
        f"page there says so): tradebus report {out} writes it"], proc.stderr
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert after["tearsheet.html"] == UNWRITTEN_PAGE.encode()
    assert after["metrics.json"] != before.get("metrics.json") and "INCOMPLETE" not in after
    assert set(before) <= set(after) <= set(OWN_FILES["backtest"])  # nothing removed, nothing else created
    assert invoke("report", str(out)).exit_code == 0
    reported = (out / "tearsheet.html").read_bytes()
    done = _interrupted_backtest(workdir, out, "none", args=("--report",), strategy_written=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert reported == (out / "tearsheet.html").read_bytes()  # the page of this run's files


def _interrupted_backtest(
    workdir: Path, out: Path, where: str, signal: str = "SIGINT", args: Sequence[str] = (),
    strategy_written: bool = False,
) -> subprocess.CompletedProcess[str]:
    """``tradebus backtest --out out`` (and ``args``) of the strategy that sends its own process ``signal`` at
    ``where`` (``_INTERRUPTING``); ``strategy_written``: an earlier call wrote the strategy and its config."""
    if not strategy_written:
        (workdir / "stopper").mkdir()
        (workdir / "stopper" / "__init__.py").write_text("")
        (workdir / "stopper" / "interrupt.py").write_text(_INTERRUPTING)
        config = make_config(strategy={"name": "stopper.interrupt:Interrupting", "instruments": ["BTC-USD.COINBASE"]})
        write_config(workdir, config, "stop.yaml")
    return subprocess.run(
        [sys.executable, "-m", "tradebus.cli", "backtest", str(workdir / "stop.yaml"), "--out", str(out), *args],
        capture_output=True, text=True, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO), "TRADEBUS_TEST_INTERRUPT": where, "TRADEBUS_TEST_SIGNAL": signal,
             "COLUMNS": "1000"},
    )


@pytest.mark.parametrize(
    ("earlier", "where", "files"),
    [
        (False, "moves", "its files are part of this run's, none an earlier run's"),
        (False, "first move", "none of the run's files yet"),
        (True, "first move", "its files are the earlier ones, none of this run's yet"),
    ],
)
def test_ctrl_c_while_a_backtests_files_are_moved_says_whose_files_the_incomplete_directory_holds(
    workdir: Path, earlier: bool, where: str, files: str
) -> None:
    """Ctrl-C while the files were moved said "its files are a mix of this run's and the earlier ones" whatever the
    directory held: for a first run, with no earlier outputs, too (its 7 files moved before metrics.json, beside the
    marker, were this run's alone)."""
    out = workdir / "out"
    if earlier:
        assert invoke("backtest", str(write_config(workdir, make_config())), "--out", str(out)).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()} if earlier else {}
    proc = _interrupted_backtest(workdir, out, where)
    assert proc.returncode == 130, proc.stdout + proc.stderr
    assert proc.stderr.splitlines() == [
        f"backtest interrupted (Ctrl-C) while writing its outputs: {out} holds the INCOMPLETE marker ({files}); "
        "run it again"], proc.stderr
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert "INCOMPLETE" in after and not [name for name in after if ".tmp-" in name]
    left = {name: data for name, data in after.items() if name != "INCOMPLETE"}
    if where == "first move":
        assert left == before  # the earlier run's files, each as it was, or none
    else:
        assert left and "metrics.json" not in left and not before  # this run's first files alone



_INTERRUPTING_REPLAY = '''
import os
import signal

from tradebus.strategies.tick_ema import TickEmaCross


class InterruptedReplay(TickEmaCross):
    """Sends its own process the signal TRADEBUS_TEST_SIGNAL names at its 100th trade."""

    trades = 0

    def on_trade(self, trade):
        super().on_trade(trade)
        InterruptedReplay.trades += 1
        if InterruptedReplay.trades == 100:
            os.kill(os.getpid(), getattr(signal, os.environ["TRADEBUS_TEST_SIGNAL"]))
'''


@pytest.mark.parametrize(("name", "code", "stop"), [("SIGINT", 130, "Ctrl-C"), ("SIGTERM", 143, "SIGTERM")])
def test_a_stopped_replay_says_in_one_line_that_its_default_output_directory_is_as_it_was(
    workdir: Path, name: str, code: int, stop: str
) -> None:
    """Ctrl-C ended ``tradebus replay`` with exit 130 (SIGTERM 143) and nothing on stderr, where a backtest says what
    its output directory holds: here runs/replay-<recording name>, chosen without --out, holding an earlier replay."""
    from tests.live.node_testdata import SPOT_CAPTURE

    config = yaml.safe_load((REPO / "configs" / "paper_local.yaml").read_text())
    del config["journal"], config["record"]
    (workdir / "replay.yaml").write_text(yaml.safe_dump(config))
    config["strategy"]["name"] = "stopper.replay:InterruptedReplay"
    (workdir / "stopped.yaml").write_text(yaml.safe_dump(config))
    (workdir / "stopper").mkdir()
    (workdir / "stopper" / "__init__.py").write_text("")
    (workdir / "stopper" / "replay.py").write_text(_INTERRUPTING_REPLAY)
    env = {**os.environ, "PYTHONPATH": f"{workdir}{os.pathsep}{REPO}", "COLUMNS": "1000", "TRADEBUS_TEST_SIGNAL": name}

    def replay(config_file: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tradebus.cli", "replay", str(SPOT_CAPTURE), "--config", config_file,
             "--log-level", "ERROR"],
            capture_output=True, text=True, check=False, cwd=workdir, env=env,
        )

    earlier = replay("replay.yaml")
    assert earlier.returncode == 0, earlier.stdout + earlier.stderr
    out = workdir / "runs" / f"replay-{SPOT_CAPTURE.name.split('.')[0]}"
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert "metrics.json" in before
    proc = replay("stopped.yaml")
    assert proc.returncode == code, proc.stdout + proc.stderr
    out = out.relative_to(workdir)
    assert proc.stderr.splitlines() == [
        f"replay interrupted ({stop}) before writing its outputs: nothing was written ({out} is as it was)"
    ], proc.stderr
    assert {p.name: p.read_bytes() for p in (workdir / out).iterdir()} == before
