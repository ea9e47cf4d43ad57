"""Bars into the catalog from trades and from finer bars, against pandas on real data, streamed in small batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from tradebus.data import resample
from tradebus.data.catalog import Catalog, DatasetRef
from tradebus.data.cli import data_app
from tradebus.data.ingest import import_path
from tradebus.errors import DataError
from tradebus.features.bars import BarBuilder

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"
TRADES = DatasetRef("binance", "spot", "BTCUSDT", "trades")
KLINES = DatasetRef("binance", "spot", "ADABTC", "bars_1m")


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    import_path(tmp_path, FIXTURES / "btcusdt-trades.parquet", venue="binance", market="spot", symbol="BTCUSDT",
                kind="trades")
    for day in ("27", "28"):
        import_path(tmp_path, FIXTURES / f"ADABTC-1m-2021-11-{day}_head120.csv", venue="binance", market="spot",
                    symbol="ADABTC", kind="bars", interval="1m", mode="append" if day == "28" else "create")
    return Catalog(tmp_path)


def raw_trades() -> pd.DataFrame:
    raw = pq.read_table(FIXTURES / "btcusdt-trades.parquet").to_pandas()
    return pd.DataFrame({"ts": raw.timestamp.dt.as_unit("ns").astype("int64"), "price": raw.price,
                         "size": raw.quantity, "side": np.where(raw.buyer_maker == "True", -1, 1)})


@pytest.mark.parametrize("batch_rows", [100_000, 97])
def test_time_bars_from_trades_equal_a_pandas_resample_and_the_live_builder(
        catalog: Catalog, batch_rows: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resample, "_BATCH_ROWS", batch_rows)  # state carried across record batches
    manifest = resample.bars_from_trades(catalog, TRADES, "time", interval_ns=5_000_000_000)
    assert manifest.dataset == "bars_5s" and manifest.interval_ns == 5_000_000_000 and not manifest.shared_times
    got = catalog.read("binance", "spot", "BTCUSDT", "bars_5s").to_pandas()
    t = raw_trades()
    frame = t.set_index(pd.to_datetime(t.ts, utc=True))
    ref = frame.price.resample("5s", label="right", closed="left").ohlc()
    ref["volume"] = frame["size"].resample("5s", label="right", closed="left").sum()
    ref = ref.dropna().iloc[:-1]  # the last bucket has no later trade: not complete
    assert got.ts_event.tolist() == [int(x.value) for x in ref.index]
    for col in ("open", "high", "low", "close"):
        assert np.array_equal(got[col].to_numpy(), ref[col].to_numpy())
    np.testing.assert_allclose(got.volume, ref.volume, rtol=1e-12)
    live_ts, live = BarBuilder("time", interval_ns=5_000_000_000).run(t.ts, t.price, t["size"], t.side)
    assert np.array_equal(got.ts_event.to_numpy(), live_ts) and np.array_equal(got[["open", "high", "low", "close",
                                                                                      "volume"]].to_numpy(), live[:, :5])


def test_threshold_and_imbalance_bars_from_trades_equal_the_builder_in_any_batching(
        catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    t = raw_trades()
    monkeypatch.setattr(resample, "_BATCH_ROWS", 113)
    for mode, threshold in (("volume", 2.5), ("dollar_imbalance", 20.0)):
        manifest = resample.bars_from_trades(catalog, TRADES, mode, threshold=threshold)
        got = catalog.read("binance", "spot", "BTCUSDT", manifest.dataset).to_pandas()
        ts, bars = BarBuilder(mode, threshold=threshold).run(t.ts, t.price, t["size"], t.side)
        assert manifest.interval_ns is None and len(got) == len(ts) > 5
        assert np.array_equal(got.ts_event.to_numpy(), ts) and np.array_equal(got.close.to_numpy(), bars[:, 3])
    assert resample.bars_dataset_name("volume", threshold=2.5) == "bars_volume_2p5"


@pytest.mark.parametrize("batch_rows", [1_000, 7])
def test_resampled_bars_equal_pandas_and_the_incomplete_last_bar_is_left_out(
        catalog: Catalog, batch_rows: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resample, "_BATCH_ROWS", batch_rows)
    fine = catalog.read("binance", "spot", "ADABTC", "bars_1m").to_pandas()
    fine = fine[fine.ts_event != fine.ts_event.iloc[-1]]  # the last stored bar dropped: the last 7m bar is incomplete
    sub = Catalog(catalog.root / "sub")
    sub.write(_table(fine), "binance", "spot", "ADABTC", "bars_1m", "month", kind="bars", interval_ns=60_000_000_000)
    manifest = resample.resample_bars(sub, KLINES, 7 * 60_000_000_000)
    got = sub.read("binance", "spot", "ADABTC", manifest.dataset).to_pandas()
    idx = pd.to_datetime(fine.ts_event, utc=True)
    frame = fine.set_index(idx)
    ref = frame.resample("7min", label="right", closed="right", origin="epoch").agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}).dropna()
    last_fine = int(fine.ts_event.iloc[-1])
    ref = ref[[int(x.value) <= last_fine - last_fine % (7 * 60_000_000_000) for x in ref.index]]
    assert manifest.dataset == "bars_7m" and len(got) == len(ref) > 30
    assert got.ts_event.tolist() == [int(x.value) for x in ref.index]
    for col in ("open", "high", "low", "close"):
        assert np.array_equal(got[col].to_numpy(), ref[col].to_numpy())
    np.testing.assert_allclose(got.volume, ref.volume, rtol=1e-12)


def _table(frame: pd.DataFrame):
    import pyarrow as pa

    from tradebus.data.catalog import BAR_SCHEMA
    return pa.Table.from_pandas(frame[[f.name for f in BAR_SCHEMA]], schema=BAR_SCHEMA, preserve_index=False)


def test_a_resample_starting_inside_a_bar_writes_that_bar_from_the_data_there_is_as_its_help_says(
        catalog: Catalog) -> None:
    """The help said 'complete bars only'; 1m ADABTC bars from 00:00 to 7m start with a 4-minute bar at 00:04."""
    run = CliRunner().invoke(data_app, ["bars", "binance/spot/ADABTC/bars_1m", "--interval", "7m", "--catalog",
                                        str(catalog.root)])
    assert run.exit_code == 0, run.output
    fine = catalog.read("binance", "spot", "ADABTC", "bars_1m").to_pandas()
    got = catalog.read("binance", "spot", "ADABTC", "bars_7m").to_pandas()
    first = pd.Timestamp("2021-11-27 00:04", tz="UTC").value
    assert fine.ts_event.iat[0] == pd.Timestamp("2021-11-27 00:01", tz="UTC").value and got.ts_event.iat[0] == first
    head = fine[fine.ts_event <= first]
    assert len(head) == 4 and got.volume.iat[0] == pytest.approx(head.volume.sum(), rel=1e-12)
    assert got.open.iat[0] == head.open.iat[0] and got.close.iat[0] == head.close.iat[-1]
    shown = CliRunner().invoke(data_app, ["bars", "--help"], terminal_width=200).output
    text = " ".join(shown.replace("│", " ").split())
    assert "complete bars only" not in text
    assert ("the first bar is built from the data there is when the input starts inside its interval, as a run "
            "started there builds it: 1m bars from 00:00 resampled to 7m bars start with a bar of 4 minutes, "
            "stamped 00:04") in text


def test_bad_requests_are_refused_and_write_nothing(catalog: Catalog) -> None:
    with pytest.raises(DataError, match="not a whole multiple"):
        resample.resample_bars(catalog, KLINES, 90_000_000_000)
    # 1m from 1m bars was refused as '1m is not a whole multiple of its 1m bars', which it is
    for shorter in (60_000_000_000, 30_000_000_000):
        with pytest.raises(DataError, match=r"is not longer than its 1m bars: resampling builds longer bars, of a "
                                            r"whole multiple of 1m") as refused:
            resample.resample_bars(catalog, KLINES, shorter)
        assert "not a whole multiple" not in str(refused.value)
    with pytest.raises(DataError, match="is a trades dataset, not bars|needs a bars dataset"):
        resample.resample_bars(catalog, TRADES, 3_600_000_000_000)
    with pytest.raises(DataError, match="complete no volume bar"):
        resample.bars_from_trades(catalog, TRADES, "volume", threshold=1e9)
    assert {r.dataset for r in catalog.datasets()} == {"trades", "bars_1m"}


def test_cli_bars(catalog: Catalog) -> None:
    run = CliRunner().invoke(data_app, ["bars", "binance/spot/ADABTC/bars_1m", "--interval", "1h", "--catalog",
                                        str(catalog.root)])
    assert run.exit_code == 0, run.output
    assert "binance/spot/ADABTC/bars_1h: 4 rows" in run.output  # 2 x 2 hours
    run = CliRunner().invoke(data_app, ["bars", "binance/spot/BTCUSDT/trades", "--mode", "tick", "--threshold", "100",
                                        "--catalog", str(catalog.root)])
    assert run.exit_code == 0 and "bars_tick_100: 20 rows" in run.output, run.output
    bad = CliRunner().invoke(data_app, ["bars", "binance/spot/ADABTC/bars_1m", "--mode", "volume", "--threshold", "5",
                                        "--catalog", str(catalog.root)])
    assert bad.exit_code == 2 and "only --mode time resamples bars" in bad.output
    bad = CliRunner().invoke(data_app, ["bars", "binance/spot/BTCUSDT/trades", "--mode", "renko", "--catalog",
                                        str(catalog.root)])
    assert bad.exit_code == 2 and "--mode 'renko'" in bad.output
    # a threshold that is not a number > 0 is a bad option, exit 2 as the others: it exited 1, as for a crash
    for threshold in ("-5", "0", "nan"):
        bad = CliRunner().invoke(data_app, ["bars", "binance/spot/BTCUSDT/trades", "--mode", "volume", "--threshold",
                                            threshold, "--catalog", str(catalog.root)])
        assert bad.exit_code == 2, bad.output
        assert f"volume bars need a finite threshold > 0, got {float(threshold)!r}" in bad.output
    assert {r.dataset for r in catalog.datasets()} == {"trades", "bars_1m", "bars_1h", "bars_tick_100"}


def test_bars_rebuilt_with_overwrite_after_an_append_cover_the_new_bars(tmp_path: Path) -> None:
    """After appending a day of 1m bars, rebuilding bars_1h was refused ('give the new bars another --name')."""
    def bars(*extra: str) -> tuple[int, str]:
        run = CliRunner().invoke(data_app, ["bars", "binance/spot/ADABTC/bars_1m", "--interval", "1h", *extra,
                                            "--catalog", str(tmp_path)])
        return run.exit_code, run.output

    days = [FIXTURES / f"ADABTC-1m-2021-11-{day}_head120.csv" for day in ("27", "28")]
    import_path(tmp_path, days[0], venue="binance", market="spot", symbol="ADABTC", kind="bars", interval="1m")
    assert bars()[0] == 0
    import_path(tmp_path, days[1], venue="binance", market="spot", symbol="ADABTC", kind="bars", interval="1m",
                mode="append")
    code, out = bars()
    assert code == 3 and "--overwrite" in out, out
    code, out = bars("--overwrite")
    assert code == 0 and "bars_1h: 4 rows" in out, out
    fine = pd.concat([pd.read_csv(day, header=None, usecols=range(6)) for day in days])
    fine.columns = ["open_time", "open", "high", "low", "close", "volume"]
    ref = fine.set_index(pd.to_datetime(fine.open_time, unit="ms")).resample("1h").agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}).dropna()
    got = Catalog(tmp_path).read("binance", "spot", "ADABTC", "bars_1h").to_pandas()
    assert got.ts_event.tolist() == [int(x.value) + 3_600_000_000_000 for x in ref.index.as_unit("ns")]
    for col in ("open", "high", "low", "close", "volume"):
        assert np.array_equal(got[col].to_numpy(), ref[col].to_numpy()), col
    code, out = bars("--overwrite", "--name", "bars_1m")
    assert code == 2 and "the source" in out, out
    assert Catalog(tmp_path).manifest("binance", "spot", "ADABTC", "bars_1m").rows == 240


DAILY = Path(__file__).resolve().parents[1] / "fixtures" / "strategies" / "binance_btcusdt_day_2020.csv"


def test_weekly_bars_are_named_1w_by_import_and_bars_as_the_user_asked(tmp_path: Path) -> None:
    """A user asking for 1w found the bars under bars_7d, a name they never gave."""
    runner = CliRunner()
    run = runner.invoke(data_app, ["import", str(DAILY), "--venue", "binance", "--market", "spot", "--symbol",
                                   "BTCUSDT", "--interval", "1d", "--catalog", str(tmp_path)])
    assert run.exit_code == 0, run.output
    run = runner.invoke(data_app, ["bars", "binance/spot/BTCUSDT/bars_1d", "--interval", "1w", "--catalog",
                                   str(tmp_path)])
    assert run.exit_code == 0, run.output
    assert "binance/spot/BTCUSDT/bars_1w: 53 rows, 1w bars" in run.output
    weekly = tmp_path / "weekly.csv"
    pd.DataFrame({"open_time": pd.date_range("2020-01-06", periods=8, freq="7D"), "open": 1.0, "high": 2.0,
                  "low": 0.5, "close": 1.5, "volume": 10.0}).to_csv(weekly, index=False)
    run = runner.invoke(data_app, ["import", str(weekly), "--venue", "binance", "--market", "spot", "--symbol",
                                   "ETHUSDT", "--interval", "1w", "--catalog", str(tmp_path)])
    assert run.exit_code == 0, run.output
    assert {(r.symbol, r.dataset) for r in Catalog(tmp_path).datasets()} == {
        ("BTCUSDT", "bars_1d"), ("BTCUSDT", "bars_1w"), ("ETHUSDT", "bars_1w")}


def test_weekly_bars_of_a_catalog_that_named_them_7d_are_appended_to_there(tmp_path: Path) -> None:
    frame = pd.DataFrame({"open_time": pd.date_range("2020-01-06", periods=8, freq="7D"), "open": 1.0, "high": 2.0,
                          "low": 0.5, "close": 1.5, "volume": 10.0})
    first, later = tmp_path / "first.csv", tmp_path / "later.csv"
    frame.iloc[:5].to_csv(first, index=False)
    frame.iloc[5:].to_csv(later, index=False)
    import_path(tmp_path, first, venue="binance", market="spot", symbol="ETHUSDT", kind="bars", interval="1w",
                dataset="bars_7d")  # as written before weeks had their own name
    manifest = import_path(tmp_path, later, venue="binance", market="spot", symbol="ETHUSDT", kind="bars",
                           interval="1w", mode="append").manifests[0]
    assert manifest.dataset == "bars_7d" and manifest.rows == 8
    assert [r.dataset for r in Catalog(tmp_path).datasets()] == ["bars_7d"]


def test_volume_bars_closing_at_one_trade_time_pass_quality_and_backtest_like_process(tmp_path: Path) -> None:
    """921 volume bars of 0.01 BTC hold 712 distinct times: quality said fail and a backtest refused them."""
    from tradebus.cli import app, build_kernel, build_replay
    from tradebus.config import load_config

    from tests.engine.test_kernel_batches import fills_of, orders_of

    runner, root = CliRunner(), tmp_path / "C"
    run = runner.invoke(data_app, ["import", str(FIXTURES / "btcusdt-trades.parquet"), "--venue", "binance", "--market",
                                   "spot", "--symbol", "BTCUSDT", "--kind", "trades", "--catalog", str(root)])
    assert run.exit_code == 0, run.output
    run = runner.invoke(data_app, ["bars", "binance/spot/BTCUSDT/trades", "--mode", "volume", "--threshold", "0.01",
                                   "--catalog", str(root)])
    assert run.exit_code == 0, run.output
    manifest = Catalog(root).manifest("binance", "spot", "BTCUSDT", "bars_volume_0p01")
    ts = Catalog(root).read("binance", "spot", "BTCUSDT", "bars_volume_0p01").column("ts_event").to_numpy()
    assert (manifest.rows, np.unique(ts).size) == (921, 712) and np.all(np.diff(ts) >= 0)
    assert manifest.shared_times and manifest.quality is not None and manifest.quality["status"] != "fail"
    info = runner.invoke(data_app, ["info", "--catalog", str(root)])
    assert info.exit_code == 0 and "fail" not in info.output, info.output
    quality = runner.invoke(data_app, ["quality", "binance/spot/BTCUSDT/bars_volume_0p01", "--json", "--fail-on", "error",
                                       "--catalog", str(root)])
    assert quality.exit_code == 0, quality.output

    config = {
        "data": {"catalog": str(root), "sources": [{"instrument": "BTCUSDT.BINANCE",
                                                     "dataset": "binance/spot/BTCUSDT/bars_volume_0p01"}]},
        "instruments": [{"venue": "BINANCE", "symbol": "BTCUSDT", "base": "BTC", "quote": "USDT", "tick_size": 0.01,
                         "lot_size": 1.0e-5, "taker_fee": 0.001, "maker_fee": 0.001, "margin": True}],
        "strategy": {"name": "ema_cross", "instruments": ["BTCUSDT.BINANCE"],
                     "params": {"fast": 3, "slow": 8, "mode": "long_short", "quantity": 0.01}},
        "venue": {"fill_on": "bars", "slippage_bps": 1.0},
        "initial_cash": 100_000.0,
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    run = runner.invoke(app, ["backtest", str(path), "--out", str(tmp_path / "out")])
    assert run.exit_code == 0, run.output
    fast, slow = build_kernel(load_config(path)), build_kernel(load_config(path))
    fast.run(build_replay(load_config(path)))  # the batch loop, as the backtest runs it
    for message in build_replay(load_config(path)):
        slow.process(message)
    slow.stop()
    assert fast.result.bars == slow.result.bars == 921 and len(fast.result.fills) > 50
    assert fills_of(fast) == fills_of(slow) and orders_of(fast) == orders_of(slow)
    assert fast.result.equity == slow.result.equity
    assert len((tmp_path / "out" / "fills.csv").read_text().splitlines()) == len(fast.result.fills) + 1


@pytest.mark.parametrize(("kind", "build"), [
    ("bars", lambda cat, ref: resample.resample_bars(cat, ref, 7_200_000_000_000, dataset="bars_2h",
                                                     write_mode="overwrite")),
    ("trades", lambda cat, ref: resample.bars_from_trades(cat, ref, "time", interval_ns=3_600_000_000_000,
                                                          dataset="bars_1h", write_mode="overwrite")),
])
def test_bars_built_racing_overwrites_of_the_source_in_another_process_are_those_of_one_version(
    tmp_path: Path, kind: str, build: object
) -> None:
    """``data bars`` listed the source's files under the catalog's read lock and read them after it, batch by
    batch, while it wrote: an ``--overwrite`` of the source in another process meanwhile made it write bars of a mix
    of both versions without an error (57 of 239 resamples to 2h, 52 of 194 hourly bars from trades, racing 100
    overwrites of ten day files). The source is now read from files opened under the lock (:meth:`Catalog.pinned`),
    with the manifest read there: every build is that of one version."""
    from tests.data.test_data_catalog import race_overwrites, raced_versions

    cat = Catalog(tmp_path)
    expected = []
    for n, (table, interval_ns) in enumerate(raced_versions(kind)):
        cat.write(table, "x", "spot", f"V{n}", kind, "day", interval_ns=interval_ns)
        build(cat, DatasetRef("x", "spot", f"V{n}", kind))  # type: ignore[operator]
        expected.append(cat.read("x", "spot", f"V{n}", "bars_2h" if kind == "bars" else "bars_1h"))

    def rebuilt() -> int | str:
        manifest = build(cat, DatasetRef("x", "spot", "S", kind))  # type: ignore[operator]
        built = cat.read("x", "spot", "S", manifest.dataset)
        return next((n for n, table in enumerate(expected) if built.equals(table)), f"{built.num_rows} bars of neither")

    outcomes = race_overwrites(tmp_path, rebuilt, kind)
    bad = [o for o in outcomes if not isinstance(o, int)]
    assert bad == [], f"{len(bad)} of {len(outcomes)} builds: {bad[:3]}"
    assert sorted(set(outcomes)) == [0, 1], len(outcomes)  # both versions were read


def _cut_trades(catalog: Catalog) -> np.ndarray:
    """Write trades_cut: the BTCUSDT trades without the 400 of positions 800..1199, its missed_trades saying so;
    the complete trades' ids."""
    whole = catalog.read("binance", "spot", "BTCUSDT", "trades")
    ids, ts = whole.column("trade_id").to_numpy().astype(np.int64), whole.column("ts_event").to_numpy()
    cut = np.ones(len(ids), dtype=bool)
    cut[800:1200] = False
    assert ids[800] == ids[799] + 1 and ids[1200] == ids[1199] + 1
    with catalog.writer("binance", "spot", "BTCUSDT", "trades_cut", kind="trades") as writer:
        writer.write(whole.filter(pa.array(cut)))
        writer.commit(missed_trades=[(int(ts[799]), int(ts[1200]), int(ids[800]), int(ids[1199]), 400)])
    return ids


def test_bars_built_over_missed_trades_are_named_in_a_warning_and_the_manifest(catalog: Catalog) -> None:
    """A trades dataset lacking 400 trades (ids in its missed_trades, as an imported recording stores them) gave
    bars over the hole built as if complete, unsaid; the bars named are those that differ from the bars of the
    complete trades."""
    from loguru import logger

    ids = _cut_trades(catalog)
    warnings: list[str] = []
    sink = logger.add(lambda m: warnings.append(m.record["message"]), level="WARNING")
    try:
        manifest = resample.bars_from_trades(catalog, DatasetRef("binance", "spot", "BTCUSDT", "trades_cut"), "time",
                                             interval_ns=1_000_000_000, dataset="bars_1s_cut")
        resample.bars_from_trades(catalog, TRADES, "time", interval_ns=1_000_000_000)
    finally:
        logger.remove(sink)
    bars = catalog.read("binance", "spot", "BTCUSDT", "bars_1s").to_pandas().set_index("ts_event")
    built = catalog.read("binance", "spot", "BTCUSDT", manifest.dataset).to_pandas().set_index("ts_event")
    whole_bars = bars.reindex(built.index)
    differ = built.index[(built != whole_bars).any(axis=1)]
    assert len(differ) > 1 and len(built) > len(differ)
    iso = [pd.Timestamp(t, tz="UTC").isoformat().replace("+00:00", "Z") for t in (differ[0], differ[-1])]
    note = (f"{len(differ)} bars closing {iso[0]} to {iso[1]} lack 400 trades of binance/spot/BTCUSDT/trades_cut "
            f"(ids {ids[800]}..{ids[1199]}, printed between ")
    assert len(warnings) == 1 and warnings[0].startswith(note), warnings
    assert any(n.startswith(note) for n in manifest.notes) and warnings[0] in manifest.notes


def test_volume_bars_built_over_missed_trades_name_every_bar_the_gap_shifts(catalog: Catalog) -> None:
    """A volume bar closes on the size summed since the bar before: 400 trades lost shift the later bars, but the
    warning named the one bar over the gap (closing 00:00:34.102) where 6, to 00:00:41.675, differ from the complete
    trades' bars; it now names every bar from it on (which of them fall back in step cannot be told without the
    lost trades)."""
    from loguru import logger

    _cut_trades(catalog)
    warnings: list[str] = []
    sink = logger.add(lambda m: warnings.append(m.record["message"]), level="WARNING")
    try:
        manifest = resample.bars_from_trades(catalog, DatasetRef("binance", "spot", "BTCUSDT", "trades_cut"), "volume",
                                             threshold=5.0, dataset="volume_cut")
        resample.bars_from_trades(catalog, TRADES, "volume", threshold=5.0, dataset="volume_whole")
    finally:
        logger.remove(sink)
    whole = catalog.read("binance", "spot", "BTCUSDT", "volume_whole").to_pandas()
    built = catalog.read("binance", "spot", "BTCUSDT", "volume_cut").to_pandas()
    differ = np.flatnonzero(~built.merge(whole, how="left", indicator=True)["_merge"].eq("both").to_numpy())
    assert len(differ) > 2 and differ[0] > 0 and list(differ) == list(range(differ[0], differ[-1] + 1))

    def iso(row: int) -> str:
        return pd.Timestamp(built.ts_event[row], tz="UTC").isoformat(timespec="milliseconds").replace("+00:00", "Z")

    later = len(built) - differ[0] - 1
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"the bar closing {iso(differ[0])} lacks 400 trades of binance/spot/BTCUSDT/trades_cut"), warnings
    assert warnings[0].endswith(f"built without them; the {later} volume bars after it, closing {iso(differ[0] + 1)} to "
                                f"{iso(len(built) - 1)}, are counted on from it and may close elsewhere than the "
                                "complete trades' would"), warnings
    assert warnings[0] in manifest.notes
