"""Dataset builder: rows equal the live bank values of a backtest; slower timeframes join without lookahead."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from research_helpers import CATALOG, DATASET, H4, IID, REPO, SPECS, btc_bars, daily_from_4h, random_walk, write_bars

from tradebus.data.replay import Replay, ReplaySource
from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import Bar
from tradebus.errors import ConfigError, DataError
from tradebus.features.spec import FeatureSpec
from tradebus.research.dataset import align_timeframe, build_dataset, load_config, write_parquet
from tradebus.strategies.base import Strategy


class FeatureLogger(Strategy):
    """Logs the feature row it sees on every bar (what a live strategy reads)."""

    def __init__(self, iid: str) -> None:
        super().__init__(iid, strategy_id="logger")
        self.rows: list[tuple[int, tuple[float, ...]]] = []

    def feature_specs(self, instrument_id: str) -> list[FeatureSpec]:
        return [FeatureSpec.model_validate(s) for s in SPECS]

    def on_bar(self, bar: Bar) -> None:
        self.rows.append((bar.ts_event, tuple(self.features().row)))


def _config(**overrides: Any) -> Any:
    data: dict[str, Any] = {"catalog": str(CATALOG), "sources": [{"instrument": IID, "dataset": DATASET}],
                            "features": SPECS}
    data.update(overrides)
    return load_config(data)


def test_dataset_rows_equal_the_bank_values_a_backtest_strategy_sees_bit_for_bit() -> None:
    dataset = build_dataset(_config())
    kernel = Kernel([Instrument(venue="COINBASE", symbol="BTC-USD", tick_size=0.01, lot_size=1e-8)])
    logger = FeatureLogger(IID)
    kernel.add_strategy(logger)
    kernel.run(Replay([ReplaySource.from_catalog(CATALOG, IID, *DATASET.split("/"))]))
    assert kernel.banks[IID].columns == tuple(dataset.columns[2:])
    live_ts = np.array([ts for ts, _ in logger.rows])
    live = np.array([row for _, row in logger.rows])
    assert len(dataset) == len(live) == 20_695
    assert np.array_equal(dataset["ts_event"].to_numpy(), live_ts)
    # bit for bit, NaN where NaN (equal_nan compares NaN positions)
    assert np.array_equal(dataset.iloc[:, 2:].to_numpy(), live, equal_nan=True)
    assert np.isfinite(live[-1]).all()


def test_daily_features_join_a_4h_row_only_after_the_daily_bar_closed(tmp_path: Path) -> None:
    bars = btc_bars(3000)
    daily = daily_from_4h(bars)
    base = write_bars(tmp_path, bars, "BTC", "bars_4h", H4)
    slow = write_bars(tmp_path, daily, "BTC", "bars_1d", 6 * H4)
    slow_specs = [{"name": "ema_d", "kind": "rolling_max", "params": {"window": 3}, "input": "close"}]
    config = load_config(
        {"catalog": str(tmp_path), "sources": [{"instrument": "X", "dataset": base, "timeframes": {"1d": slow}}],
         "features": SPECS[:3], "timeframes": {"1d": slow_specs}}
    )
    out = build_dataset(config)
    # independent reference: a loop taking the last daily bar whose close time <= the 4h close time
    ema = pd.Series(daily["close"]).rolling(3).max().to_numpy()
    expected = np.full(len(bars), np.nan)
    j = -1
    for i, ts in enumerate(bars["ts_event"].to_numpy()):
        while j + 1 < len(daily) and daily["ts_event"].iat[j + 1] <= ts:
            j += 1
        if j >= 0:
            expected[i] = ema[j]
    np.testing.assert_allclose(out["1d:ema_d"].to_numpy(), expected, rtol=0, atol=0, equal_nan=True)
    # a 4h bar that closes at 20:00 must not see the day that closes at 24:00
    ts = out["ts_event"].to_numpy()
    day_ts = daily["ts_event"].to_numpy()
    joined = out["1d:ema_d"].to_numpy()
    k = int(np.searchsorted(ts, day_ts[10])) - 1  # the 4h row just before that day's close
    assert joined[k] == expected[k] and joined[k] != joined[k + 1]


def test_perturbing_daily_bars_after_t_leaves_every_row_at_or_before_t_unchanged(tmp_path: Path) -> None:
    bars = btc_bars(2000)
    daily = daily_from_4h(bars)
    cut = int(bars["ts_event"].iat[1000])
    slow_specs = [{"name": "hi", "kind": "rolling_max", "params": {"window": 3}, "input": "high"}]
    frames = []
    for name, d in (("a", daily), ("b", daily.assign(high=np.where(daily["ts_event"] > cut, daily["high"] * 3, daily["high"])))):
        root = tmp_path / name
        base = write_bars(root, bars, "BTC", "bars_4h", H4)
        slow = write_bars(root, d, "BTC", "bars_1d", 6 * H4)
        frames.append(build_dataset(load_config(
            {"catalog": str(root), "sources": [{"instrument": "X", "dataset": base, "timeframes": {"1d": slow}}],
             "features": SPECS[:1], "timeframes": {"1d": slow_specs}})))
    a, b = frames
    before = a["ts_event"].to_numpy() <= cut
    assert np.array_equal(a.loc[before, "1d:hi"].to_numpy(), b.loc[before, "1d:hi"].to_numpy(), equal_nan=True)
    assert not np.array_equal(a.loc[~before, "1d:hi"].to_numpy(), b.loc[~before, "1d:hi"].to_numpy(), equal_nan=True)


def test_many_instruments_are_stacked_in_time_order_with_their_own_features(tmp_path: Path) -> None:
    one = write_bars(tmp_path, random_walk(300, seed=1), "AAA", "bars_4h", H4)
    two = write_bars(tmp_path, random_walk(200, seed=2, start=1_600_000_000 * 10**9 + H4 // 2), "BBB", "bars_4h", H4)
    config = load_config({"catalog": str(tmp_path), "features": SPECS[:3],
                          "sources": [{"instrument": "A", "dataset": one}, {"instrument": "B", "dataset": two}]})
    out = build_dataset(config)
    assert len(out) == 500
    assert (np.diff(out["ts_event"].to_numpy()) >= 0).all()
    from tradebus.features.batch import compute_features

    ref = compute_features(random_walk(200, seed=2), SPECS[:3], event="bar")
    assert np.array_equal(out.loc[out["instrument"] == "B", "ema_fast"].to_numpy(), ref["ema_fast"].to_numpy(),
                          equal_nan=True)


def test_write_parquet_round_trips_and_start_end_filter_rows(tmp_path: Path) -> None:
    full = build_dataset(_config())
    start, end = int(full["ts_event"].iat[100]), int(full["ts_event"].iat[200])
    part = build_dataset(_config(start_ns=start, end_ns=end))
    assert len(part) == 100
    # features warmed up on the earlier rows: identical to the full run's rows
    assert np.array_equal(part.iloc[:, 2:].to_numpy(), full.iloc[100:200, 2:].to_numpy(), equal_nan=True)
    path = write_parquet(part, tmp_path / "out" / "ds.parquet")
    assert pq.read_table(path).to_pandas().equals(part)


@pytest.mark.parametrize(("start", "end"), [
    ("2020-01-01", "2020-01-02T00:00:00Z"),
    (date(2020, 1, 1), datetime(2020, 1, 2)),  # as YAML reads an unquoted date and datetime (naive: UTC)
    ("2020-01-01T02:00:00+02:00", "2020-01-02 00:00"),
])
def test_a_window_given_as_iso_8601_dates_is_the_window_of_their_epoch_ns(start: Any, end: Any) -> None:
    """dataset.start_ns: 2020-01-01 was refused ('Input should be a valid integer'): only epoch ns were read."""
    by_date = build_dataset(_config(start_ns=start, end_ns=end))
    by_ns = build_dataset(_config(start_ns=pd.Timestamp("2020-01-01", tz="UTC").value,
                                  end_ns=pd.Timestamp("2020-01-02", tz="UTC").value))
    assert len(by_date) == 6  # the 4-hour bars of one day
    assert by_date.equals(by_ns)
    assert pd.Timestamp(int(by_date["ts_event"].iat[0]), tz="UTC") == pd.Timestamp("2020-01-01", tz="UTC")


@pytest.mark.parametrize(("field", "value"), [("start_ns", "yesterday"), ("end_ns", "2020-01-01T25:00")])
def test_a_window_bound_that_is_no_date_names_the_field(field: str, value: str) -> None:
    with pytest.raises(ConfigError, match=rf"^dataset\.{field}: expected epoch nanoseconds or an ISO-8601 date or time "
                                          rf"\(2020-01-01, 2020-01-01T04:00:00Z\), got '{value}'$"):
        _config(**{field: value})


WARM = [{"name": "sma30", "kind": "sma", "params": {"window": 30}, "input": "close"},
        {"name": "ema", "kind": "ema", "params": {"span": 10}, "input": "close"}]


class WarmLogger(FeatureLogger):
    def feature_specs(self, instrument_id: str) -> list[FeatureSpec]:
        return [FeatureSpec.model_validate(s) for s in WARM]


def test_a_dataset_window_warms_up_on_the_bars_before_it_and_a_backtest_from_data_start_starts_cold(
        tmp_path: Path) -> None:
    """The decision README's 'Research' states: dataset.start_ns keeps the rows from it on, its features warmed up
    on the catalog's bars before it (a 30-bar window is ready at the first row); a backtest's data.start is where
    the run, a daemon started then, begins, its features cold (30 bars to warm up). Either reads a bar only once
    it has closed: perturbing the bars after bar 200 moves no row up to it."""
    bars = random_walk(300, seed=5)
    start, cut = 100, 200
    start_ns = int(bars["ts_event"].iat[start])
    prices = ["open", "high", "low", "close"]
    before, after = bars.copy(), bars.copy()
    before.loc[:start - 1, prices] *= 1.5
    after.loc[cut + 1:, prices] *= 0.5
    dataset, backtest = {}, {}
    for name, frame in {"same": bars, "before": before, "after": after}.items():
        path = write_bars(tmp_path / name, frame, "WALK-USD", "bars", H4)
        dataset[name] = build_dataset(load_config({
            "catalog": str(tmp_path / name), "features": WARM, "start_ns": start_ns,
            "sources": [{"instrument": "WALK-USD.SIM", "dataset": path}]})).iloc[:, 2:].to_numpy()
        kernel = Kernel([Instrument(venue="SIM", symbol="WALK-USD", tick_size=0.01, lot_size=1e-8)])
        logger = WarmLogger("WALK-USD.SIM")
        kernel.add_strategy(logger)
        kernel.run(Replay([ReplaySource.from_catalog(tmp_path / name, "WALK-USD.SIM", *path.split("/"))],
                          start_ns=start_ns))  # as build_replay runs data.start
        backtest[name] = np.array([row for _, row in logger.rows])
    close = bars["close"]
    assert dataset["same"].shape == backtest["same"].shape == (200, 2)
    np.testing.assert_allclose(dataset["same"][:, 0], close.rolling(30).mean().to_numpy()[start:], rtol=1e-12)
    cold = close.iloc[start:].rolling(30).mean().to_numpy()
    assert np.isnan(backtest["same"][:29, 0]).all() and np.isnan(cold[:29]).all()
    np.testing.assert_allclose(backtest["same"][29:, 0], cold[29:], rtol=1e-12)
    # the bars before the window move the dataset's rows (read to warm up), not the backtest's (never read)
    assert (dataset["before"][0] != dataset["same"][0]).all()
    assert np.array_equal(backtest["before"], backtest["same"], equal_nan=True)
    # the bars after bar `cut` move no row up to it, in either, and the later rows in both
    rows = cut - start + 1
    for run in (dataset, backtest):
        assert np.array_equal(run["after"][:rows], run["same"][:rows], equal_nan=True)
        assert (run["after"][rows:, 0] != run["same"][rows:, 0]).all()


@pytest.mark.parametrize(("quoted", "unquoted"), [("1577836800.0", 1577836800.0), ("-1500.0", -1500.0)])
def test_a_quoted_number_bound_is_epoch_ns_as_the_same_number_unquoted(quoted: str, unquoted: Any) -> None:
    """'1577836800.0' was read as Unix seconds (2020-01-01) where 1577836800.0 unquoted is 1577836800 ns."""
    assert _config(start_ns=quoted).start_ns == _config(start_ns=unquoted).start_ns == int(float(quoted))


@pytest.mark.parametrize("value", ["1577836800.5", "-1.5"])
def test_a_quoted_fractional_number_bound_is_refused_as_its_unquoted_number_is(value: str) -> None:
    """'1577836800.5' was taken as Unix seconds (2020-01-01T00:00:00.5) and '-1.5' as -1,500,000,000 ns."""
    for given in (value, float(value)):
        with pytest.raises(ConfigError, match=r"^dataset\.start_ns: Input should be a valid integer"):
            _config(start_ns=given)


@pytest.mark.parametrize(("text", "expected"), [
    ("2020-01-01T00:00:00.123456789Z", "2020-01-01T00:00:00.123456789"),
    ("2020-01-01T01:00:00.0000009+01:00", "2020-01-01T00:00:00.000000900"),
    ("2020-01-01 00:00:00,9999999", "2020-01-01T00:00:00.999999900"),
])
def test_a_bound_with_nanosecond_digits_keeps_them(text: str, expected: str) -> None:
    """'...00.123456789Z' was cut to the microsecond (...123456000 ns): pydantic's datetime keeps 6 digits."""
    assert _config(start_ns=text).start_ns == pd.Timestamp(expected, tz="UTC").value


def test_an_unquoted_yaml_bound_with_nanosecond_digits_keeps_them() -> None:
    """YAML read the timestamp 2020-01-01T00:00:00.123456789Z as a datetime, cut to ...123456 (PyYAML keeps 6 digits)."""
    from tradebus.config.load import parse_yaml

    given = parse_yaml("start_ns: 2020-01-01T00:00:00.123456789Z")["start_ns"]
    assert _config(start_ns=given).start_ns == pd.Timestamp("2020-01-01T00:00:00.123456789", tz="UTC").value


def test_a_bound_finer_than_a_nanosecond_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^dataset\.start_ns: .*finer than a nanosecond.*'2020-01-01T00:00:00\.1234567891Z'"):
        _config(start_ns="2020-01-01T00:00:00.1234567891Z")


def test_bad_configs_and_missing_datasets_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"dataset.sources.0.dataset"):
        _config(sources=[{"instrument": IID, "dataset": "coinbase/BTC"}])
    with pytest.raises(ConfigError, match="timeframe '1d'"):
        _config(sources=[{"instrument": IID, "dataset": DATASET, "timeframes": {"1d": DATASET}}])
    with pytest.raises(ConfigError, match="dataset.sources.0.dataset: no dataset 'coinbase/spot/BTC-USD/bars_1m'"):
        build_dataset(_config(sources=[{"instrument": IID, "dataset": "coinbase/spot/BTC-USD/bars_1m"}]))


def test_align_timeframe_before_the_first_slow_bar_is_nan() -> None:
    base = pd.DataFrame({"ts_event": np.array([1, 2, 3, 4], dtype=np.int64), "x": [1.0, 2, 3, 4]})
    slow = pd.DataFrame({"ts_event": np.array([2, 4], dtype=np.int64), "y": [20.0, 40.0]})
    out = align_timeframe(base, slow, "s")
    assert np.array_equal(out["s:y"].to_numpy(), [np.nan, 20.0, 20.0, 40.0], equal_nan=True)


def test_a_trades_dataset_gets_the_features_a_live_trade_stream_gets(tmp_path: Path) -> None:
    import pyarrow as pa

    from tradebus.data.catalog import Catalog
    from tradebus.features.bank import FeatureBank

    raw = pd.read_parquet(Path(__file__).resolve().parents[1] / "fixtures" / "data" / "btcusdt-trades.parquet")
    ts = pd.DatetimeIndex(raw["timestamp"]).as_unit("ns").asi8
    ts = ts + np.arange(len(ts))  # strictly increasing for the check below
    side = np.where(raw["buyer_maker"] == "True", -1, 1).astype(np.int8)
    table = pa.table({"ts_event": ts, "ts_init": ts, "price": raw["price"].to_numpy(), "size": raw["quantity"].to_numpy(),
                      "aggressor": side, "trade_id": raw["trade_id"].astype(str).tolist()})
    Catalog(tmp_path).write(table, "sim", "spot", "BTCUSDT", "trades", period="day", kind="trades")
    specs = [{"name": "ema_p", "kind": "ema", "params": {"span": 20}, "input": "price"},
             {"name": "sv", "kind": "signed_volume", "params": {"window": 50}}]
    out = build_dataset(load_config({"catalog": str(tmp_path), "features": specs,
                                     "sources": [{"instrument": "T", "dataset": "sim/spot/BTCUSDT/trades"}]}))
    bank = FeatureBank(specs)
    live = []
    for t, p, s, a in zip(ts.tolist(), raw["price"].tolist(), raw["quantity"].tolist(), side.tolist(), strict=True):
        bank.update_trade(t, p, s, float(a))
        live.append([bank.value(c) for c in bank.columns])
    assert np.array_equal(out.iloc[:, 2:].to_numpy(), np.array(live), equal_nan=True)
    assert np.isfinite(out["sv"].iat[-1])


def test_a_window_holding_no_row_is_a_data_error_naming_the_window_and_the_data_span() -> None:
    full = build_dataset(_config())
    last = int(full["ts_event"].iat[-1])
    with pytest.raises(DataError, match=r"no source has a row from dataset.start_ns .* BTC-USD.COINBASE "
                                        r"\(coinbase/spot/BTC-USD/bars_4h\) spans 2016-05-18T08:00:00Z to "):
        build_dataset(_config(start_ns=last + 1))
    start = int(full["ts_event"].iat[100]) + 1  # between two 4h bars: a window of 1 ns holds none
    with pytest.raises(DataError, match="no source has a row between"):
        build_dataset(_config(start_ns=start, end_ns=start + 1))


#: Writes a 10-row frame to argv[1], then a 100,000-row one over it under a file-size limit of 64 KiB (a real
#: EFBIG, as a full disk fails); prints the error of the second write.
_FAILED_DATASET_WRITE = r"""
import resource, signal, sys
import numpy as np, pandas as pd
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
from tradebus.errors import ConfigError
from tradebus.research.dataset import write_parquet
write_parquet(pd.DataFrame({"x": np.arange(10.0)}), sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (65536, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    write_parquet(pd.DataFrame({"x": np.arange(100_000.0)}), sys.argv[1])
except ConfigError as exc:
    print(exc)
"""


def test_a_dataset_write_that_fails_is_a_clear_error_and_leaves_the_previous_file(tmp_path: Path) -> None:
    """A full disk writing dataset.parquet (EFBIG here) ended 'tradebus research dataset' with a raw 'OSError: [Errno
    27] Error writing bytes to file' traceback; it is now a ConfigError naming the file (exit 2), the earlier
    dataset.parquet is left as it was and no temporary file stays beside it."""
    path = tmp_path / "out" / "dataset.parquet"
    done = subprocess.run([sys.executable, "-c", _FAILED_DATASET_WRITE, str(path)], capture_output=True, text=True,
                          timeout=300, check=False, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (f"output {path}: cannot write it (EFBIG: Error writing bytes to file. Detail: "
                                   "[errno 27] File too large)"), done.stdout
    assert os.listdir(path.parent) == ["dataset.parquet"]
    assert pq.read_table(path).to_pandas().equals(pd.DataFrame({"x": np.arange(10.0)}))
