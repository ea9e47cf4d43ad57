"""Quality report: defects planted in real data are counted exactly (against the clean data's report)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from tradebus.data.catalog import Catalog
from tradebus.data.cli import data_app
from tradebus.data.ingest import import_file, read_bars, read_trades
from tradebus.data.market_ingest import import_tardis
from tradebus.data.quality import QualityCheck, QualityReport, picked_checks
from tradebus.errors import ConfigError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"
MINUTE_NS = 60_000_000_000


def real_bars() -> pd.DataFrame:
    days = [read_bars(FIXTURES / f"ADABTC-1m-{d}_head120.csv", interval="1m") for d in ("2021-11-27", "2021-11-28")]
    return pa.concat_tables(days).to_pandas()


def report(frame: pd.DataFrame, kind: str, interval_ns: int | None = None, chunk: int | None = None) -> QualityReport:
    check = QualityCheck(kind, interval_ns)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    step = chunk or table.num_rows
    for start in range(0, table.num_rows, step):
        check.feed(table.slice(start, step))
    return check.report()


def counts(r: QualityReport) -> dict[str, int]:
    return {k: int(v["count"]) for k, v in r.checks.items()}  # type: ignore[call-overload]


def planted_bars() -> pd.DataFrame:
    bars = real_bars()
    bars = bars.drop(index=[30, 31, 32]).reset_index(drop=True)  # one gap of 3 missing bars
    cols = ["open", "high", "low", "close"]
    bars.loc[50:56, cols] = bars.loc[49, cols].to_numpy()  # 8 identical bars (49..56): one stale run
    bars.loc[70:72, "volume"] = 0.0  # 3 zero-volume bars
    bars.loc[90, "close"] = bars.loc[90, "close"] * 1.5  # a spike: up at 90, back down at 91
    bars.loc[90, "high"] = bars.loc[90, "close"]
    high, low = bars.loc[100, "high"], bars.loc[100, "low"]
    bars.loc[100, ["high", "low"]] = [low * 0.999, high * 1.001]  # high < low
    return bars


@pytest.mark.parametrize("chunk", [None, 7, 64])  # findings must not depend on how the stream is cut
def test_planted_bar_defects_are_counted(chunk: int | None) -> None:
    clean = report(real_bars(), "bars", MINUTE_NS)
    dirty = report(planted_bars(), "bars", MINUTE_NS, chunk=64 if chunk == 64 else chunk)
    base, found = counts(clean), counts(dirty)
    delta = {k: found[k] - base[k] for k in found}
    assert delta["gaps"] == 1 and dirty.checks["gaps"]["missing"] == clean.checks.get("gaps", {}).get("missing", 0) + 3
    assert delta["stale"] == 1 and dirty.checks["stale"]["longest"] >= 8
    assert delta["zero_volume"] == 3 and dirty.checks["zero_volume"]["longest"] >= 3
    assert delta["ohlc_integrity"] == 1
    assert delta["outliers"] >= 2
    assert delta["duplicate_time"] == delta["non_monotonic_time"] == delta["non_positive_price"] == 0
    assert dirty.status == "fail" and clean.status in ("ok", "warn")
    assert dirty.checks["ohlc_integrity"]["examples"] == [str(np.datetime64(int(planted_bars().ts_event[100]) // 1_000_000, "ms")) + "Z"]


def test_duplicate_and_backward_bar_times_are_counted_across_chunks() -> None:
    bars = real_bars()
    bars.loc[110, "ts_event"] = bars.loc[109, "ts_event"]  # duplicate
    bars.loc[150, "ts_event"] = bars.loc[148, "ts_event"] - 1  # goes back
    r = report(bars, "bars", MINUTE_NS, chunk=10)
    assert (r.checks["duplicate_time"]["count"], r.checks["non_monotonic_time"]["count"]) == (1, 1)


def test_bars_that_may_share_a_time_count_only_backward_times() -> None:
    bars = real_bars()
    bars.loc[110, "ts_event"] = bars.loc[109, "ts_event"]  # shared: volume bars closed by one trade
    bars.loc[150, "ts_event"] = bars.loc[148, "ts_event"] - 1  # goes back: an error whatever the bars
    check = QualityCheck("bars", None, shared_times=True)
    table = pa.Table.from_pandas(bars, preserve_index=False)
    for start in range(0, table.num_rows, 10):
        check.feed(table.slice(start, 10))
    r = check.report()
    assert (r.checks["duplicate_time"]["count"], r.checks["non_monotonic_time"]["count"]) == (0, 1)
    assert r.status == "fail"


def test_planted_trade_defects_are_counted() -> None:
    clean_frame = read_trades(FIXTURES / "btcusdt-trades.parquet").to_pandas()
    trades = clean_frame.drop(index=range(100, 105))  # 5 missing trade ids
    trades = pd.concat([trades.loc[:200], trades.loc[[200]], trades.loc[201:]])  # a repeated trade
    trades = trades.reset_index(drop=True)
    trades.loc[300, "price"] *= 1.2
    trades.loc[400, "size"] = 0.0
    clean, dirty = report(clean_frame, "trades"), report(trades, "trades", chunk=97)
    base, found = counts(clean), counts(dirty)
    delta = {k: found[k] - base[k] for k in found}
    assert delta["trade_id_gaps"] == 1
    assert dirty.checks["trade_id_gaps"]["missing"] - clean.checks["trade_id_gaps"].get("missing", 0) == 5
    assert delta["duplicate_trade_id"] == 1
    assert delta["non_positive_price"] == 1
    assert delta["outliers"] >= 2
    assert dirty.status == "fail"
    assert dirty.longest_quiet_s is not None and dirty.longest_quiet_s > 0


def test_import_stores_the_quality_summary_and_the_cli_reports_and_fails_on_request(tmp_path: Path) -> None:
    csv = tmp_path / "ADABTC-1m.csv"
    bars = planted_bars().drop(index=[100]).reset_index(drop=True)  # an importable file: no broken bar
    pd.DataFrame({"open_time": (bars.ts_event - MINUTE_NS) // 1_000_000, **{c: bars[c] for c in
                  ("open", "high", "low", "close", "volume")}}).to_csv(csv, index=False)
    manifest = import_file(tmp_path / "cat", csv, venue="binance", market="spot", symbol="ADABTC", interval="1m")
    assert manifest.quality is not None and manifest.quality["status"] == "warn"
    assert manifest.quality["zero_volume"] == 3 and manifest.quality["gaps"] >= 1
    runner = CliRunner()
    args = ["quality", "binance/spot/ADABTC/bars_1m", "--catalog", str(tmp_path / "cat")]
    result = runner.invoke(data_app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["checks"]["zero_volume"]["count"] == 3 and doc["status"] == "warn"
    assert runner.invoke(data_app, [*args, "--fail-on", "error"]).exit_code == 0
    failed = runner.invoke(data_app, [*args, "--fail-on", "zero_volume"])
    assert failed.exit_code == 3 and "quality checks failed: zero_volume" in failed.output
    # a name that is no check (gap for gaps) is a bad option, exit 2, refused before the dataset is read: it was
    # exit 3, as for bad data, once every file had been read
    (tmp_path / "cat" / "binance" / "spot" / "ADABTC" / "bars_1m" / "manifest.json").rename(tmp_path / "manifest.json")
    typo = runner.invoke(data_app, [*args, "--fail-on", "gap"])
    assert typo.exit_code == 2, typo.output
    assert "--fail-on 'gap' is not a quality check; expected any, error, warn or one of" in " ".join(typo.output.split())
    (tmp_path / "manifest.json").rename(tmp_path / "cat" / "binance" / "spot" / "ADABTC" / "bars_1m" / "manifest.json")
    table = runner.invoke(data_app, args, terminal_width=200)
    assert table.exit_code == 0 and "zero_volume" in table.output and "warn" in table.output
    assert Catalog(tmp_path / "cat").verify("binance", "spot", "ADABTC", "bars_1m").quality == manifest.quality


def test_a_check_name_that_is_no_check_names_the_parameter_of_the_python_call_not_the_cli_option() -> None:
    """``picked_checks(["gap"])`` and ``report.failing(["gap"])`` said "--fail-on 'gap' is not a quality check" to a
    Python caller, who passed no option; they name their parameter ``names``, the CLI its option (test above)."""
    with pytest.raises(ConfigError) as picked:
        picked_checks(["gaps", "gap"])
    report = QualityCheck("bars", MINUTE_NS).report()
    with pytest.raises(ConfigError) as failing:
        report.failing(["gap"])
    for raised in (picked, failing):
        assert str(raised.value).startswith("names 'gap' is not a quality check; expected any, error, warn or one of")
        assert "--fail-on" not in str(raised.value)


@pytest.mark.parametrize(("fixture", "dataset"), [
    ("tardis_deribit_incremental_book_L2_BTC-PERPETUAL.csv", "deribit/perp/BTC-PERPETUAL/book"),
    ("tardis_huobi-dm-swap_quotes_BTC-USD.csv", "deribit/perp/BTC-PERPETUAL/quotes"),
])
def test_quality_of_a_book_or_quotes_dataset_is_a_bad_option_naming_it_before_any_file_is_read(
    tmp_path: Path, fixture: str, dataset: str
) -> None:
    """``data quality deribit/perp/BTC-PERPETUAL/book`` exited 3, as for bad data, with "quality: no checks for kind
    'book'"; there is nothing wrong with the data: it is now exit 2 naming the dataset and the kinds that are
    checked, before any file is read (a file of zeros is not reported)."""
    import_tardis(FIXTURES / fixture, tmp_path, "deribit", "perp", "BTC-PERPETUAL")
    for part in (tmp_path / dataset).rglob("*.parquet"):
        part.write_bytes(bytes(part.stat().st_size))  # the size the manifest records, no Parquet in it
    result = CliRunner().invoke(data_app, ["quality", dataset, "--catalog", str(tmp_path)])
    assert result.exit_code == 2, result.output
    kind = dataset.rsplit("/", 1)[1]
    assert (f"{dataset} is a {kind!r} dataset, which data quality has no checks for: it checks bars, book_depth, "
            "trades datasets; none of its files was read") in " ".join(result.output.split())


@pytest.mark.parametrize("z", ["-1", "0", "nan", "inf"])
def test_an_outlier_z_that_is_not_a_positive_number_is_a_bad_option(tmp_path: Path, z: str) -> None:
    """``data quality ... --outlier-z -1`` reported all 2,000 returns of the real BTCUSDT trades as outliers and
    ``--outlier-z nan`` none (so ``--fail-on outliers`` passed whatever the data), both exit 0; it is now refused,
    exit 2, naming the value, and the default still counts what it did."""
    import_file(tmp_path / "cat", FIXTURES / "btcusdt-trades.parquet", venue="binance", market="spot",
                symbol="BTCUSDT", kind="trades")
    args = ["quality", "binance/spot/BTCUSDT/trades", "--catalog", str(tmp_path / "cat"), "--json"]
    result = CliRunner().invoke(data_app, [*args, "--outlier-z", z])
    assert result.exit_code == 2, result.output
    assert f"outlier z-score {float(z)!r} is not a finite number > 0" in " ".join(result.output.split())
    with pytest.raises(ConfigError, match="is not a finite number > 0"):
        QualityCheck("trades", outlier_z=float(z))
    fine = CliRunner().invoke(data_app, [*args, "--outlier-z", "12"])
    assert fine.exit_code == 0 and json.loads(fine.output)["checks"]["outliers"]["count"] > 0, fine.output


def _loop_runs(flags: list[bool], stale_bars: int) -> tuple[int, list[int]]:
    """The plain per-row loop the run tracking must agree with: (longest run in bars, rows where a run turns stale)."""
    run, longest, stale_at = 0, 0, []
    for i, flag in enumerate(flags):
        run = run + 1 if flag else 0
        if flag and run + 1 == stale_bars:
            stale_at.append(i)
        longest = max(longest, run + (1 if run else 0))
    return longest, stale_at


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_stale_runs_are_tracked_across_chunks_as_a_per_row_loop_does(chunk: int) -> None:
    rng = np.random.default_rng(7)
    n = 600
    close = np.round(100 + np.cumsum(rng.normal(0, 1, n)), 2)
    repeat = rng.random(n) < 0.7  # long runs of identical bars
    repeat[0] = False
    for i in range(1, n):
        if repeat[i]:
            close[i] = close[i - 1]
    ts = np.arange(n, dtype=np.int64) * MINUTE_NS
    frame = pd.DataFrame({"ts_event": ts, "open": close, "high": close, "low": close, "close": close,
                          "volume": np.where(repeat, 0.0, 1.0)})
    zero_longest, _ = _loop_runs(list(repeat), 0)
    r = report(frame, "bars", MINUTE_NS, chunk)
    same = np.concatenate(([False], close[1:] == close[:-1]))  # a random step may round to no change
    longest, stale_at = _loop_runs(list(same), 5)
    assert r.checks["stale"]["count"] == len(stale_at)
    assert r.checks["stale"]["longest"] == longest
    assert r.checks["zero_volume"]["longest"] == zero_longest - 1  # a zero-volume run counts rows, a stale run bars
    expected = [str(np.datetime64(int(ts[i]) // 1_000_000, "ms")) + "Z" for i in stale_at[:5]]
    assert r.checks["stale"]["examples"] == expected


def test_outlier_windows_do_not_depend_on_how_the_input_is_cut() -> None:
    rng = np.random.default_rng(11)
    n = 200_000  # three full robust windows and a partial one
    price = 100 * np.exp(np.cumsum(rng.normal(0, 1e-4, n)))
    price[[5_000, 70_000, 140_001, 199_990]] *= [1.2, 0.8, 1.3, 1.25]  # one jump in each window
    frame = pd.DataFrame({"ts_event": np.arange(n, dtype=np.int64) * 1_000_000, "price": price,
                          "size": np.ones(n), "aggressor": np.ones(n, dtype=np.int8),
                          "trade_id": [str(i) for i in range(n)]})
    whole = report(frame, "trades")
    assert whole.checks["outliers"]["count"] == 8  # each jump and its way back
    for chunk in (7_001, 65_536, 100_000):
        assert report(frame, "trades", chunk=chunk).checks == whole.checks


def test_integer_ids_given_by_an_import_count_like_the_text_ids() -> None:
    # ids 10, 11, 11, 15, 16: one repeat (row 3), one skip of 3 ids (11 -> 15)
    ids = np.array([10, 11, 11, 15, 16], dtype=np.int64)
    ts = 1_700_000_000_000_000_000 + np.arange(5, dtype=np.int64) * 1_000_000
    table = pa.table({"ts_event": ts, "ts_init": ts, "price": np.full(5, 100.0), "size": np.ones(5),
                      "aggressor": np.zeros(5, dtype=np.int8), "trade_id": [str(i) for i in ids]})
    for int_ids in (None, ids):
        check = QualityCheck("trades")
        check.feed(table.slice(0, 2), int_ids=None if int_ids is None else int_ids[:2])
        check.feed(table.slice(2), int_ids=None if int_ids is None else int_ids[2:])
        r = check.report()
        assert r.checks["duplicate_trade_id"]["count"] == 1
        assert r.checks["trade_id_gaps"]["count"] == 1 and r.checks["trade_id_gaps"]["missing"] == 3


def test_an_append_stores_the_quality_of_the_whole_dataset_as_one_import_of_both_files_does(tmp_path: Path) -> None:
    day1 = (FIXTURES / "ADABTC-1m-2021-11-27_head120.csv").read_text().splitlines()
    fields = day1[50].split(",")
    fields[5] = "0"  # a zero-volume bar in the first import
    day1[50] = ",".join(fields)
    day2 = (FIXTURES / "ADABTC-1m-2021-11-28_head120.csv").read_text().splitlines()  # a day later: a gap at the join
    first, second, both = tmp_path / "first.csv", tmp_path / "second.csv", tmp_path / "both.csv"
    first.write_text("\n".join(day1) + "\n")
    second.write_text("\n".join(day2) + "\n")
    both.write_text("\n".join([*day1, *day2]) + "\n")
    where = {"venue": "binance", "market": "spot", "symbol": "ADABTC", "interval": "1m"}
    import_file(tmp_path / "cat", first, **where)
    appended = import_file(tmp_path / "cat", second, mode="append", **where)
    whole = import_file(tmp_path / "one", both, **where)
    assert whole.quality is not None and whole.quality["status"] == "warn"
    assert whole.quality["gaps"] == 1 and whole.quality["zero_volume"] == 1
    assert appended.gaps == whole.gaps == 1
    assert appended.quality == whole.quality  # it held the second file's alone: {"status": "ok"}
    args = ["quality", "binance/spot/ADABTC/bars_1m", "--json", "--catalog", str(tmp_path / "cat")]
    assert json.loads(CliRunner().invoke(data_app, args).output)["status"] == "warn"


def test_a_quality_report_racing_overwrites_in_another_process_is_of_one_whole_version_every_time(
    tmp_path: Path,
) -> None:
    """``data quality`` listed the dataset's files under the catalog's read lock and read them after it was released:
    an ``--overwrite`` in another process meanwhile put the next version's files at those paths, and the report
    counted a mix of both versions without an error (14 of 108 reports racing 100 overwrites of ten day files: 264,
    312 ... rows, an outlier at the join, where the versions have 240 and 480 rows and none). The files are now
    opened under the lock (:meth:`Catalog.pinned`): every report is the one of a version alone."""
    from tests.data.test_data_catalog import race_overwrites, raced_versions

    def report_of(dataset: str) -> dict[str, object] | str:
        result = CliRunner().invoke(data_app, ["quality", dataset, "--json", "--catalog", str(tmp_path)])
        if result.exit_code:
            return f"exit {result.exit_code}: {result.output}"
        return {k: v for k, v in json.loads(result.output).items() if k != "dataset"}

    versions = []
    for n, (table, interval_ns) in enumerate(raced_versions()):
        Catalog(tmp_path).write(table, "x", "spot", f"V{n}", "bars", "day", interval_ns=interval_ns)
        versions.append(report_of(f"x/spot/V{n}/bars"))
    assert [v["rows"] for v in versions] == [240, 480]  # type: ignore[index]
    reports = race_overwrites(tmp_path, lambda: report_of("x/spot/S/bars"))
    bad = [r for r in reports if r not in versions]
    assert bad == [], f"{len(bad)} of {len(reports)} reports: {bad[:2]}"
    assert all(versions.index(v) >= 0 and reports.count(v) > 0 for v in versions), len(reports)  # both were read


def _hand_built_hourly_bars(path: Path, first_open_ms: int) -> Path:
    """An hourly bar file (open times) by hand: one bar opening at ``first_open_ms``, then 11:00 to 15:00 UTC."""
    day = 1_700_006_400_000  # 2023-11-15T00:00:00Z
    opens = [first_open_ms] + [day + h * 3_600_000 for h in range(11, 16)]
    pd.DataFrame({"open_time": opens, "open": 100.0, "high": 101.0, "low": 99.0, "close": 100.5,
                  "volume": [0.4, 3.0, 2.5, 3.5, 2.0, 3.0]}).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("chunk", [None, 1])
def test_a_first_bar_off_the_grid_of_the_bars_after_it_is_flagged_as_partial(tmp_path: Path, chunk: int | None) -> None:
    """A bar file whose first bar opens at 09:37 (where its data began) and the next at 11:00 had no finding
    but a gap: data quality said nothing of a first bar that is a part of an hour."""
    runner = CliRunner()
    day = 1_700_006_400_000
    flagged = {}
    for name, first_open in (("partial", day + 9 * 3_600_000 + 37 * 60_000), ("whole", day + 9 * 3_600_000)):
        csv = _hand_built_hourly_bars(tmp_path / f"{name}.csv", first_open)
        catalog = tmp_path / name
        import_file(catalog, csv, venue="binance", market="spot", symbol="BTCUSDT", interval="1h")
        result = runner.invoke(data_app, ["quality", "binance/spot/BTCUSDT/bars_1h", "--catalog", str(catalog), "--json"])
        assert result.exit_code == 0, result.output
        flagged[name] = json.loads(result.output)["checks"]["partial_first_bar"]
    # the partial bar closes at 10:37 (open + 1h): 83 minutes, no whole number of hours, before the next close (12:00)
    assert flagged["partial"] == {"level": "warn", "count": 1, "examples": ["2023-11-15T10:37:00.000Z"]}
    assert flagged["whole"]["count"] == 0
    frame = read_bars(tmp_path / "partial.csv", interval="1h").to_pandas()
    by_chunks = report(frame, "bars", 3_600_000_000_000, chunk=chunk)
    assert by_chunks.checks["partial_first_bar"]["count"] == 1 and by_chunks.status == "warn"
