"""Bars built in a backtest from the replayed trades: what ``on_bar`` receives, no lookahead, config errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from tradebus.cli import build_kernel, build_replay
from tradebus.config import RunConfig, parse_config
from tradebus.config.data import DataConfig
from tradebus.engine.messages import Bar
from tradebus.errors import ConfigError
from tradebus.strategies.base import Strategy

TRADES_FILE = Path(__file__).resolve().parents[1] / "fixtures" / "data" / "btcusdt-trades.parquet"
IID = "BTCUSDT.BINANCE"


class BarRecorder(Strategy):
    """Keeps every bar it is given, with the last trade the cache held when it arrived."""

    def __init__(self, instrument_ids: Any) -> None:
        super().__init__(instrument_ids, strategy_id="recorder")
        self.seen: list[tuple[Bar, int]] = []

    def on_bar(self, bar: Bar) -> None:
        assert self._kernel is not None
        self.seen.append((bar, self._kernel.cache.trades[bar.instrument_id].ts_init))


def _config(bars: dict[str, Any] | None, file: Path = TRADES_FILE, kind: str | None = "trades") -> RunConfig:
    source: dict[str, Any] = {"instrument": IID, "file": str(file)} if kind is None else {
        "instrument": IID, "kind": kind, "file": str(file)}
    if bars is not None:
        source["bars"] = bars
    return parse_config(
        {
            "data": {"sources": [source]},
            "instruments": [{"venue": "BINANCE", "symbol": "BTCUSDT", "tick_size": 0.01, "lot_size": 1e-5,
                             "margin": True}],
            "strategy": {"name": "ema_cross", "instruments": [IID], "params": {"fast": 2, "slow": 4, "quantity": 0.01}},
            "venue": {"fill_on": "trades"},
        },
        "<test>",
    )


def _run(config: RunConfig) -> tuple[BarRecorder, Any]:
    kernel = build_kernel(config)
    recorder = BarRecorder([IID])
    kernel.add_strategy(recorder)
    result = kernel.run(build_replay(config))
    return recorder, result


def _trades(file: Path = TRADES_FILE) -> pd.DataFrame:
    frame = pq.read_table(file).to_pandas()
    frame["ts"] = frame["timestamp"].astype("int64") * 1_000_000  # ms -> ns
    return frame


def test_time_bars_equal_an_independent_pandas_resample() -> None:
    recorder, result = _run(_config({"mode": "time", "interval": "1s"}))
    trades = _trades()
    interval = 1_000_000_000
    bucket_end = (trades["ts"] // interval + 1) * interval
    grouped = trades.groupby(bucket_end)
    expected = pd.DataFrame({
        "open": grouped["price"].first(), "high": grouped["price"].max(), "low": grouped["price"].min(),
        "close": grouped["price"].last(), "volume": grouped["quantity"].sum(),
    }).iloc[:-1]  # the last bucket never sees a trade after its end: no bar
    bars = [bar for bar, _ in recorder.seen]
    assert len(bars) == len(expected) >= 8
    assert [b.ts_event for b in bars] == expected.index.tolist()
    got = np.array([[b.open, b.high, b.low, b.close, b.volume] for b in bars])
    np.testing.assert_allclose(got, expected.to_numpy(), rtol=1e-12)
    # ts_init: the completing trade's, the first trade at or after the bar's end
    first_after = [int(trades["ts"][trades["ts"] >= b.ts_event].iloc[0]) for b in bars]
    assert [b.ts_init for b in bars] == first_after
    # the strategy got the bar right after that trade; the bars never reached the venue (fills on trades)
    assert [seen for _, seen in recorder.seen] == first_after
    assert len(result.fills) >= 3
    assert {(f.ts_event, f.price) for f in result.fills} <= set(zip(trades["ts"], trades["price"], strict=True))
    assert result.bars == 0 and result.trades == len(trades)


@pytest.mark.parametrize("bars", [{"mode": "volume", "threshold": 0.5}, {"mode": "tick", "threshold": 150},
                                  {"mode": "dollar_imbalance", "threshold": 40}])
def test_built_bars_equal_the_batch_builder_on_the_same_trades(bars: dict[str, Any]) -> None:
    recorder, _ = _run(_config(bars))
    trades = _trades()
    aggressor = np.where(trades["buyer_maker"] == "True", -1, 1)
    ts, values = _config(bars).data.sources[0].bars.builder().run(  # type: ignore[union-attr]
        trades["ts"].to_numpy(), trades["price"].to_numpy(), trades["quantity"].to_numpy(), aggressor)
    got = [bar for bar, _ in recorder.seen]
    assert len(got) == len(ts) >= 3
    assert [b.ts_event for b in got] == ts.tolist()
    assert np.array_equal(np.array([[b.open, b.high, b.low, b.close, b.volume] for b in got]), values[:, :5])


def test_no_lookahead_perturbing_trades_after_t_leaves_the_bars_before_t_unchanged(tmp_path: Path) -> None:
    bars = {"mode": "time", "interval": "1s"}
    base, base_result = _run(_config(bars))
    table = pq.read_table(TRADES_FILE).to_pandas()
    cut = table["timestamp"].iloc[len(table) // 2]
    later = table["timestamp"] > cut
    table.loc[later, "price"] = table.loc[later, "price"] * 1.05
    table.loc[later, "quantity"] = table.loc[later, "quantity"] * 3
    perturbed_file = tmp_path / "perturbed.parquet"
    table.to_parquet(perturbed_file)
    moved, moved_result = _run(_config(bars, perturbed_file))
    t = int(pd.Timestamp(cut).value)
    before = [bar for bar, _ in base.seen if bar.ts_init <= t]
    assert len(before) > 10 and before == [bar for bar, _ in moved.seen if bar.ts_init <= t]
    assert [bar for bar, _ in base.seen if bar.ts_init > t] != [bar for bar, _ in moved.seen if bar.ts_init > t]
    orders_before = [(o.client_order_id, o.side, o.quantity) for o in base_result.orders if o.ts_created <= t]
    assert len(orders_before) >= 2
    assert orders_before == [(o.client_order_id, o.side, o.quantity) for o in moved_result.orders if o.ts_created <= t]


def test_a_bar_strategy_on_trades_is_accepted_only_with_built_bars() -> None:
    with pytest.raises(ConfigError, match="acts on bars, but the run has only trades"):
        _config(None)
    assert _config({"mode": "tick", "threshold": 10}).data_kinds() == {IID: {"trades", "bars"}}


@pytest.mark.parametrize(
    ("bars", "kind", "message"),
    [
        ({"mode": "time"}, "trades", r"data\.sources\.0\.bars.*time bars take 'interval'"),
        ({"mode": "volume", "interval": "1m"}, "trades", r"data\.sources\.0\.bars.*volume bars take 'threshold'"),
        ({"mode": "volume", "threshold": -1}, "trades", r"data\.sources\.0\.bars\.threshold"),
        ({"mode": "renko", "threshold": 1}, "trades", r"data\.sources\.0\.bars\.mode"),
        ({"mode": "time", "interval": "5 fortnights"}, "trades", r"data\.sources\.0\.bars\.interval"),
        ({"mode": "time", "interval": "1m", "size": 3}, "trades", r"data\.sources\.0\.bars\.size"),
        ({"mode": "time", "interval": "1m"}, "bars",
         r"data\.sources\.0.*bars: bars are built from trades; this source's kind is 'bars': a trades source needs "
         r"kind: trades"),
        # said only "this source's kind is 'bars'" of a source that gave no kind
        ({"mode": "time", "interval": "1m"}, None,
         r"data\.sources\.0.*bars: bars are built from trades; this source's kind is 'bars' \(no kind given: it "
         r"defaults to 'bars'\): a trades source needs kind: trades"),
    ],
)
def test_a_bad_bars_block_is_a_config_error_naming_the_key(bars: dict[str, Any], kind: str | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _config(bars, kind=kind)


def test_two_bar_sources_of_one_instrument_are_a_config_error_naming_both() -> None:
    # e.g. 1h and 4h bars of one coin for a multi-timeframe strategy: on_bar would get one interleaved series
    data = {
        "sources": [{"instrument": IID, "kind": "bars", "file": "h1.csv"}, {"instrument": "ETHUSDT.BINANCE",
                    "kind": "bars", "file": "e.csv"}, {"instrument": IID, "kind": "bars", "file": "h4.csv"}],
    }
    with pytest.raises(ValidationError, match=r"sources\.2: BTCUSDT\.BINANCE already has a bars source \(sources\.0\)") as info:
        DataConfig.model_validate(data)
    # it said only to import the files into one dataset, which no 4h file beside 1h bars can be
    assert "a higher timeframe, 4h beside 1h: build it in the strategy from its history window" in str(info.value)
    assert "README 'Several timeframes'" in str(info.value)
    data["sources"][2]["instrument"] = "SOLUSDT.BINANCE"
    DataConfig.model_validate(data)
