"""Lookahead detector: catches a peeking strategy and leaking features; passes every built-in strategy."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import yaml
from research_helpers import DAY, H4, IID, REPO, SPECS, btc_bars, daily_from_4h, warned_quickstart
from research_leaky import BatchEndReader
from typer.testing import CliRunner

from tradebus.cli import app
from tradebus.data.catalog import Catalog
from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import Bar, Quote, TimeEvent
from tradebus.errors import ConfigError
from tradebus.features.batch import compute_features
from tradebus.features.spec import FeatureSpec
from tradebus.research.lookahead import (
    SourceFrame,
    Trace,
    check_config,
    detect_lookahead,
    kernel_trace,
    perpetual_frames,
    perpetual_messages,
)
from tradebus.research.model import ModelStep
from tradebus.research.strategy import ModelSignal
from tradebus.strategies.base import BUILTIN_STRATEGIES, Strategy
from tradebus.strategies.tick_ema import TickEmaCross

INSTRUMENT = Instrument(venue="COINBASE", symbol="BTC-USD", tick_size=0.01, lot_size=1e-8)


def bar_sources(rows: int = 1500) -> list[SourceFrame]:
    return [SourceFrame(IID, "bars", btc_bars(rows))]


class PeekingStrategy(Strategy):
    """Precomputes 'next close is higher' from the whole history it was given: a lookahead."""

    def __init__(self, bars: pd.DataFrame) -> None:
        super().__init__(IID, strategy_id="peek")
        close = bars["close"].to_numpy()
        self.up = dict(zip(bars["ts_event"].tolist(), np.append(close[1:] > close[:-1], False).tolist(), strict=True))

    def on_bar(self, bar: Bar) -> None:
        self.target_position(IID, 0.1 if self.up[bar.ts_event] else 0.0)


def kernel_with(strategy: Strategy) -> Kernel:
    kernel = Kernel([INSTRUMENT])
    kernel.add_strategy(strategy)
    return kernel


def test_a_strategy_peeking_at_the_next_bar_is_caught() -> None:
    sources = bar_sources()
    runs: list[int] = []
    report = detect_lookahead(sources, lambda s: kernel_trace(lambda: kernel_with(PeekingStrategy(s[0].frame)), s),
                              n_cuts=4, on_run=lambda: runs.append(1))
    assert len(runs) == 5 and len(report.cuts) == 4
    assert not report.ok
    assert {v["kind"] for v in report.violations} >= {"decision"}
    assert all(v["ts"] <= v["cut"] for v in report.violations)


def test_a_feature_read_from_the_batch_end_is_caught() -> None:
    report = detect_lookahead(bar_sources(), lambda s: kernel_trace(lambda: kernel_with(BatchEndReader(IID)), s))
    assert not report.ok
    assert "output" in {v["kind"] for v in report.violations}


def test_a_centered_dataset_feature_is_caught_and_the_bank_features_pass() -> None:
    def dataset_runner(centered: bool) -> object:
        def run(sources: Sequence[SourceFrame]) -> Trace:
            bars = sources[0].frame
            features = compute_features(bars, SPECS, event="bar")
            if centered:  # a common research bug: a centred smoother
                features["smooth"] = bars["close"].rolling(5, center=True).mean().to_numpy()
            trace = Trace()
            for ts, row in zip(bars["ts_init"].tolist(), features.itertuples(index=False), strict=True):
                trace.add("feature", ts, IID, [float(v) for v in row])
            return trace

        return run

    assert detect_lookahead(bar_sources(), dataset_runner(False), n_cuts=3).ok  # type: ignore[arg-type]
    leaky = detect_lookahead(bar_sources(), dataset_runner(True), n_cuts=3)  # type: ignore[arg-type]
    assert not leaky.ok and leaky.violations[0]["kind"] == "feature"


class TimerTrader(Strategy):
    """At the first of its hourly timers after each 4h bar (half past the hour), goes long when a bar closed above the
    one before it, looked up in the whole history it was given: the last bar received (``peek=False``), or the bar
    that closes after the timer (``peek=True``: a timer trading on data of the future, by less than a bar)."""

    def __init__(self, bars: pd.DataFrame, peek: bool) -> None:
        super().__init__(IID, strategy_id="timer")
        self.ts = bars["ts_init"].to_numpy()
        self.close = bars["close"].to_numpy()
        self.peek = peek
        self.decided = -1

    def on_start(self) -> None:
        self.set_timer("hourly", "1h", start_ns=int(self.ts[0]) + 30 * 60 * 1_000_000_000)

    def on_timer(self, event: TimeEvent) -> None:
        last = int(np.searchsorted(self.ts, event.ts_event, side="right")) - 1
        if last == self.decided:  # once per bar, at the first timer after it
            return
        self.decided = last
        i = last + 1 if self.peek else last
        if 1 <= i < len(self.ts):
            self.target_position(IID, 0.1 if self.close[i] > self.close[i - 1] else 0.0)


@pytest.mark.parametrize("n_cuts", [4, 20])
def test_a_timer_trading_on_the_bar_closing_after_it_is_caught_and_its_causal_twin_passes(n_cuts: int) -> None:
    """Cuts were drawn at input times, so only rows after a bar's time were perturbed: a record between two bars
    that read the next bar was never compared with a perturbed copy of it, whatever the number of cuts."""
    sources = bar_sources()

    def runner(peek: bool) -> Callable[[Sequence[SourceFrame]], Trace]:
        return lambda s: kernel_trace(lambda: kernel_with(TimerTrader(s[0].frame, peek)), s)

    leaky = detect_lookahead(sources, runner(True), n_cuts=n_cuts)
    assert not leaky.ok and {v["kind"] for v in leaky.violations} == {"decision"}
    assert all(v["ts"] <= v["cut"] for v in leaky.violations)
    clean = detect_lookahead(sources, runner(False), n_cuts=n_cuts)
    assert clean.ok and clean.records_checked > 1000, clean.violations[:3]


def backtest_configs() -> list[Path]:
    """The shipped configs that load as backtest configs (paper and research configs do not)."""
    from tradebus.config import load_config

    found = []
    for path in sorted((REPO / "configs").glob("*.yaml")):
        try:
            load_config(path)
        except ConfigError:
            continue
        found.append(path)
    assert found, "no backtest config in configs/"
    return found


@pytest.mark.parametrize("config", backtest_configs(), ids=lambda p: p.name)
def test_every_shipped_backtest_config_passes(config: Path) -> None:
    report = check_config(config, n_cuts=3, seed=1)
    assert report.ok, report.violations[:3]
    # a year of daily bars (pairs_btc_venues.yaml, no bank features) gives ~200 records; 4h configs thousands
    assert report.records_checked > 150


#: Parameters of each built-in for the lookahead check (the EMA crosses share theirs).
BUILTIN_PARAMS: dict[str, dict[str, object]] = {
    "macd_cross": {"quantity": 0.1, "mode": "long_short"},
    "bollinger_reversion": {"quantity": 0.1, "mode": "long_short"},
    "rsi_reversion": {"quantity": 0.1, "mode": "long_short"},
    "donchian_breakout": {"quantity": 0.1, "mode": "long_short"},
    "pairs": {"quantity": 0.1, "formation": 120, "max_pvalue": 0.2, "delta": 1e-8, "obs_var": 1.0, "entry_z": 1.0,
              "exit_z": 0.3},
    "xs_momentum": {"lookback": 12, "rebalance": "1d"},
}
#: The second instrument of the universe strategies (pairs, momentum).
IID2 = "BTC-USD.SECOND"


def two_instrument_sources(rows: int) -> list[SourceFrame]:
    """The real bars, and a second series: the same bars times a slow, seeded AR(1) factor."""
    bars = btc_bars(rows)
    rng = np.random.default_rng(11)
    drift = np.zeros(rows)
    for i in range(1, rows):
        drift[i] = 0.9 * drift[i - 1] + rng.normal(0.0, 0.0005)
    second = bars.copy()
    for col in ("open", "high", "low", "close"):
        second[col] = bars[col] * np.exp(drift)
    return [SourceFrame(IID, "bars", bars), SourceFrame(IID2, "bars", second)]


@pytest.mark.parametrize("name", sorted(BUILTIN_STRATEGIES))
def test_every_builtin_strategy_passes(name: str) -> None:
    from tradebus.strategies.base import resolve_strategy

    cls = resolve_strategy(name)
    params = cls.Params.model_validate(
        BUILTIN_PARAMS.get(name, {"fast": 5, "slow": 20, "quantity": 0.1, "mode": "long_short"})
    )
    if name in ("pairs", "xs_momentum"):
        second = Instrument(venue="SECOND", symbol="BTC-USD", tick_size=0.01, lot_size=1e-8, margin=True)
        instruments = [Instrument(venue="COINBASE", symbol="BTC-USD", tick_size=0.01, lot_size=1e-8, margin=True),
                       second]  # fmt: skip

        def make() -> Kernel:
            kernel = Kernel(instruments)
            kernel.add_strategy(cls.from_params([IID, IID2], params))
            return kernel

        report = detect_lookahead(two_instrument_sources(2000), lambda s: kernel_trace(make, s), n_cuts=4)
        assert report.records_checked > 100
    else:
        report = detect_lookahead(
            bar_sources(2000),
            lambda s: kernel_trace(lambda: kernel_with(cls.from_params([IID], params)), s),
            n_cuts=4,
        )
    assert report.ok, report.violations[:3]


def test_tick_ema_cross_on_trades_and_the_model_strategy_pass() -> None:
    raw = pd.read_parquet(REPO / "tests" / "fixtures" / "data" / "btcusdt-trades.parquet")
    ts = pd.DatetimeIndex(raw["timestamp"]).as_unit("ns").asi8
    trades = pd.DataFrame({"ts_event": ts, "ts_init": ts, "price": raw["price"], "size": raw["quantity"],
                           "aggressor": np.where(raw["buyer_maker"] == "True", -1, 1).astype(np.int8),
                           "trade_id": raw["trade_id"].astype(str)})
    sources = [SourceFrame(IID, "trades", trades)]
    make = lambda: kernel_with(TickEmaCross(IID, fast=5, slow=30, quantity=0.01, mode="long_short"))  # noqa: E731
    assert detect_lookahead(sources, lambda s: kernel_trace(make, s), n_cuts=3).ok

    from xgboost import XGBClassifier

    bars = btc_bars(1500)
    X = compute_features(bars, SPECS, event="bar")[["vol", "rsi", "z"]].to_numpy()
    ok = ~np.isnan(X).any(axis=1)
    y = (bars["close"].shift(-1) > bars["close"]).to_numpy()[ok].astype(int)
    step = ModelStep(XGBClassifier(n_estimators=10, n_jobs=1, random_state=0).fit(X[ok], y), ("vol", "rsi", "z"),
                     tuple(SPECS))
    report = detect_lookahead(
        bar_sources(), lambda s: kernel_trace(lambda: kernel_with(ModelSignal(IID, model=step, quantity=0.1)), s)
    )
    assert report.ok, report.violations[:3]


def test_the_model_strategy_on_bars_received_after_their_close_passes() -> None:
    """Bars received 50 ms after their close, as a recording's are. ModelSignal gave its outputs at the bars' close
    time: a cut 1 ns before a bar's receive time compared that bar's output with one made on its perturbed copy."""
    from xgboost import XGBClassifier

    bars = btc_bars(1500)
    X = compute_features(bars, SPECS, event="bar")[["vol", "rsi", "z"]].to_numpy()
    ok = ~np.isnan(X).any(axis=1)
    y = (bars["close"].shift(-1) > bars["close"]).to_numpy()[ok].astype(int)
    step = ModelStep(XGBClassifier(n_estimators=10, n_jobs=1, random_state=0).fit(X[ok], y), ("vol", "rsi", "z"),
                     tuple(SPECS))
    late = bars.assign(ts_init=bars["ts_event"] + 50_000_000)
    report = detect_lookahead(
        [SourceFrame(IID, "bars", late)],
        lambda s: kernel_trace(lambda: kernel_with(ModelSignal(IID, model=step, quantity=0.1)), s), n_cuts=4,
    )
    assert report.ok and report.records_checked > 400, report.violations[:3]


class CloseStamper(Strategy):
    """Publishes each bar's close, or the next bar's (``peek=True``: a lookahead), in its ``outputs`` stamped
    ``stamp_ns`` after the bar's close time (``ts_event``), as a user strategy stamps them."""

    def __init__(self, bars: pd.DataFrame, peek: bool, stamp_ns: int) -> None:
        super().__init__(IID, strategy_id="stamper")
        close = bars["close"].to_numpy()
        self.next_close = dict(zip(bars["ts_event"].tolist(), np.append(close[1:], np.nan).tolist(), strict=True))
        self.peek = peek
        self.stamp_ns = stamp_ns
        self.outputs: list[tuple[int, float]] = []

    def on_bar(self, bar: Bar) -> None:
        value = self.next_close[bar.ts_event] if self.peek else bar.close
        self.outputs.append((bar.ts_event + self.stamp_ns, value))


@pytest.mark.parametrize("stamp_ns", [0, DAY], ids=["at_close", "a_day_later"])
def test_outputs_are_compared_when_they_were_made_whatever_the_strategy_stamps(stamp_ns: int) -> None:
    """Bars received 50 ms after their close. Outputs stamped at the close were compared at the close, before a
    cut 1 ns before the bar's receive time: a causal strategy was flagged; stamped a day later, a strategy
    publishing the next bar's close was never compared with the perturbed bar and passed."""
    late = [SourceFrame(IID, "bars", btc_bars(1500).pipe(lambda b: b.assign(ts_init=b["ts_event"] + 50_000_000)))]

    def runner(peek: bool) -> Callable[[Sequence[SourceFrame]], Trace]:
        return lambda s: kernel_trace(lambda: kernel_with(CloseStamper(s[0].frame, peek, stamp_ns)), s)

    clean = detect_lookahead(late, runner(False), n_cuts=4)
    assert clean.ok and clean.records_checked > 1000, clean.violations[:3]
    leaky = detect_lookahead(late, runner(True), n_cuts=4)
    assert not leaky.ok and {v["kind"] for v in leaky.violations} == {"output"}
    assert all(v["ts"] <= v["cut"] for v in leaky.violations)


class OutputsReplacer(Strategy):
    """Replaces its ``outputs`` list on every bar: the detector cannot tell when each entry was made."""

    def __init__(self) -> None:
        super().__init__(IID, strategy_id="replacer")
        self.outputs: list[tuple[int, float]] = []

    def on_bar(self, bar: Bar) -> None:
        self.outputs = [*self.outputs, (bar.ts_event, bar.close)]


def test_outputs_replaced_rather_than_added_to_are_a_config_error_naming_the_strategy() -> None:
    with pytest.raises(ConfigError, match="'replacer'.*outputs"):
        kernel_trace(lambda: kernel_with(OutputsReplacer()), bar_sources(50))


def test_trades_received_after_their_venue_time_pass() -> None:
    """Trades 1-4 ms apart received 50 ms after their venue time, as a recording's are: a fill on a trade
    received after the cut has a venue time before it. Compared at that time, every cut near a fill was
    reported as a lookahead of the causal TickEmaCross (96 violations in 5 cuts)."""
    rng = np.random.default_rng(1)
    n = 20_000
    ts = 1_700_000_000_000_000_000 + np.cumsum(rng.integers(1, 5, n)).astype(np.int64) * 1_000_000
    trades = pd.DataFrame({"ts_event": ts, "ts_init": ts + 50_000_000,
                           "price": np.round(30_000.0 * np.exp(np.cumsum(rng.normal(0.0, 4e-4, n))), 2),
                           "size": 0.01, "aggressor": rng.choice(np.array([-1, 1], dtype=np.int8), n),
                           "trade_id": [str(k) for k in range(n)]})
    make = lambda: kernel_with(TickEmaCross(IID, fast=20, slow=80, quantity=0.1))  # noqa: E731
    report = detect_lookahead([SourceFrame(IID, "trades", trades)], lambda s: kernel_trace(make, s), n_cuts=5)
    assert report.ok and report.records_checked > 40_000, report.violations[:3]


def test_no_cut_is_a_config_error_not_a_pass() -> None:
    sources = bar_sources()
    with pytest.raises(ConfigError, match="0 cuts check nothing"):
        detect_lookahead(sources, lambda s: Trace(), cuts=[])
    with pytest.raises(ConfigError, match="0 cuts check nothing"):
        detect_lookahead(sources, lambda s: Trace(), n_cuts=0)


def quote_frame(rows: int) -> pd.DataFrame:
    """Quotes around the real closes: bid and ask 0.5 either side, received when stamped."""
    bars = btc_bars(rows)
    return pd.DataFrame({"ts_event": bars["ts_event"], "ts_init": bars["ts_init"], "bid_price": bars["close"] - 0.5,
                         "bid_size": bars["volume"], "ask_price": bars["close"] + 0.5, "ask_size": bars["volume"]})


class PeekingQuoter(Strategy):
    """Goes long before the mid rises, from the whole quote history it was given: a lookahead."""

    def __init__(self, quotes: pd.DataFrame) -> None:
        super().__init__(IID, strategy_id="peek_quotes")
        mid = (quotes["bid_price"] + quotes["ask_price"]).to_numpy()
        self.up = dict(zip(quotes["ts_init"].tolist(), np.append(mid[1:] > mid[:-1], False).tolist(), strict=True))

    def on_quote(self, quote: Quote) -> None:
        self.target_position(IID, 0.1 if self.up[quote.ts_init] else 0.0)


def test_quotes_are_perturbed_a_peeking_quoter_is_caught_and_tick_ema_on_quotes_passes() -> None:
    sources = [SourceFrame(IID, "quotes", quote_frame(1500))]
    peek = detect_lookahead(sources, lambda s: kernel_trace(lambda: kernel_with(PeekingQuoter(s[0].frame)), s),
                            n_cuts=3)
    assert not peek.ok and {v["kind"] for v in peek.violations} == {"decision"}
    make = lambda: kernel_with(TickEmaCross(IID, fast=5, slow=30, quantity=0.1, source="quotes"))  # noqa: E731
    trace = kernel_trace(make, sources)
    assert sum(r[0] == "feature" for r in trace.records) == 1500  # the probe reads the features on every quote
    assert sum(r[0] == "decision" for r in trace.records) > 20
    report = detect_lookahead(sources, lambda s: kernel_trace(make, s), n_cuts=3)
    assert report.ok and report.records_checked > 1500, report.violations[:3]


def test_lookahead_command_checks_a_config_trading_on_quotes(tmp_path: Path) -> None:
    quotes = quote_frame(1500)
    Catalog(tmp_path / "catalog").write(pa.Table.from_pandas(quotes, preserve_index=False), "coinbase", "spot",
                                        "BTC-USD", "quotes", period="year", kind="quotes")
    config = tmp_path / "quotes.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"catalog": str(tmp_path / "catalog"),
                 "sources": [{"instrument": IID, "dataset": "coinbase/spot/BTC-USD/quotes", "kind": "quotes"}]},
        "instruments": [{"venue": "COINBASE", "symbol": "BTC-USD", "kind": "spot", "base": "BTC", "quote": "USD",
                         "tick_size": 0.01, "lot_size": 1.0e-8}],
        "strategy": {"name": "tick_ema_cross", "instruments": [IID],
                     "params": {"fast": 5, "slow": 30, "quantity": 0.1, "source": "quotes"}},
    }))
    result = CliRunner().invoke(app, ["research", "lookahead", str(config), "--cuts", "3", "--out", str(tmp_path)])
    assert result.exit_code == 0, repr(result.exception)
    report = json.loads((tmp_path / "lookahead.json").read_text())
    assert report["ok"] and report["records_checked"] > 1500


def test_a_strategy_reading_another_instruments_batch_end_is_caught(tmp_path: Path) -> None:
    """pairs_btc_venues.yaml's two daily bar sources are replayed in mixed batches, whose bank values already hold
    each instrument's last row of the batch. The detector replayed its sources one run of rows at a time (one bar a
    batch), so a strategy trading Coinbase on Binance's batch-end EMA (one value, 25,821, all of 2020 in the
    backtest) passed, exit 0; it now runs the mixed batches of the backtest."""
    raw = yaml.safe_load((REPO / "configs" / "pairs_btc_venues.yaml").read_text())
    for entry in raw["data"]["sources"]:
        entry["file"] = str((REPO / "configs" / entry["file"]).resolve())
    raw["strategy"] = {"name": "research_leaky:CrossBatchEndReader",
                       "instruments": ["BTC-USD.COINBASE", "BTCUSDT.BINANCE"]}
    config = tmp_path / "cross_leak.yaml"
    config.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["research", "lookahead", str(config), "--cuts", "3", "--out", str(tmp_path)])
    assert result.exit_code == 4, result.output
    report = json.loads((tmp_path / "lookahead.json").read_text())
    assert {v["kind"] for v in report["violations"]} >= {"output"}
    assert {v["key"] for v in report["violations"] if v["kind"] == "output"} == {"CrossBatchEndReader"}


@pytest.mark.parametrize("read", ["mark", "funding"])
def test_a_strategy_peeking_at_the_next_mark_or_funding_rate_of_a_config_is_caught(read: str, tmp_path: Path) -> None:
    """The config's ``data.marks``/``funding`` reach the kernel outside the replay: they were never perturbed, so a
    strategy trading on the next mark price or funding rate passed (perp_xrp_funding.yaml's own EmaCross passes:
    test_every_shipped_backtest_config_passes)."""
    raw = yaml.safe_load((REPO / "configs" / "perp_xrp_funding.yaml").read_text())
    for section in ("sources", "marks", "funding"):
        for entry in raw["data"][section]:
            entry["file"] = str((REPO / "configs" / entry["file"]).resolve())
    raw["strategy"] = {"name": "research_leaky:NextPerpetualReader", "instruments": ["XRPUSDT.BINANCE"],
                       "params": {"read": read}}
    config = tmp_path / "leaky_perp.yaml"
    config.write_text(yaml.safe_dump(raw))
    report = check_config(config, n_cuts=3, seed=1)
    assert not report.ok and {v["kind"] for v in report.violations} == {"decision"}


def test_perpetual_frames_give_back_the_messages_the_backtest_feeds() -> None:
    from tradebus.cli import perpetual_data
    from tradebus.config import load_config

    messages = sorted(perpetual_data(load_config(REPO / "configs" / "perp_xrp_funding.yaml")), key=lambda m: m.ts_init)
    frames = perpetual_frames(messages)
    assert [(f.kind, len(f.frame)) for f in frames] == [("mark_prices", 100), ("funding_rates", 5)]
    assert msgspec.json.encode(perpetual_messages(frames)) == msgspec.json.encode(messages)


def test_the_lookahead_command_shows_no_log_of_its_perturbed_reruns(tmp_path: Path) -> None:
    """quickstart.yaml's backtest has no denied order, but its re-runs on perturbed prices denied hundreds
    (``order EmaCrrve... denied: buying_power``, 1,674 WARNING lines for 5 cuts): one INFO line counts them (the
    built-in strategies no longer warn of a denial: a user's strategy that does)."""
    config = str(warned_quickstart(tmp_path))
    result = CliRunner().invoke(app, ["research", "--log-level", "INFO", "lookahead", config, "--cuts", "2",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, repr(result.exception)
    summary = [line for line in result.stderr.splitlines() if "re-runs on perturbed data logged" in line]
    assert len(summary) == 1 and "denied: buying_power" in summary[0], result.stderr[-2000:]
    assert result.stderr.count("denied") == 1


# ---------------------------------------------------------------------------- leaks users write, one per kind


#: The daily bars' instrument of the cross-instrument leaks.
DAILY = Instrument(venue="DAILY", symbol="BTC-USD", tick_size=0.01, lot_size=1e-8)


class DailyAligner(Strategy):
    """Trades the 4h bars on the daily bar of a second instrument, both stamped at their close, looked up in the whole
    daily frame it was given: the last daily bar closed (``by="close"``), or the day the 4h bar falls in, matched on
    its open time (``by="open"``: the day closes after the 4h bar, a lookahead of up to 20 hours)."""

    def __init__(self, daily: pd.DataFrame, by: str) -> None:
        super().__init__(IID, strategy_id="aligner")
        close_ts = daily["ts_event"].to_numpy()
        self.keys = close_ts - DAY if by == "open" else close_ts
        self.close, self.open = daily["close"].to_numpy(), daily["open"].to_numpy()

    def on_bar(self, bar: Bar) -> None:
        i = int(np.searchsorted(self.keys, bar.ts_event, side="right")) - 1
        if i >= 0:
            self.target_position(IID, 0.1 if self.close[i] > self.open[i] else 0.0)


@pytest.mark.parametrize("by", ["open", "close"])
def test_a_decision_on_another_instruments_bar_closing_after_it_is_caught(by: str) -> None:
    bars = btc_bars(1500)
    daily = daily_from_4h(bars)
    sources = [SourceFrame(IID, "bars", bars), SourceFrame(DAILY.instrument_id, "bars", daily)]

    def make(frames: Sequence[SourceFrame]) -> Kernel:
        kernel = Kernel([INSTRUMENT, DAILY])
        kernel.add_strategy(DailyAligner(frames[1].frame, by))
        return kernel

    report = detect_lookahead(sources, lambda s: kernel_trace(lambda: make(s), s), n_cuts=5, seed=2)
    if by == "open":
        assert not report.ok and {v["kind"] for v in report.violations} == {"decision"}
        assert all(v["key"] == IID and v["ts"] <= v["cut"] for v in report.violations)
    else:
        assert report.ok and report.records_checked > 400, report.violations[:3]


class AlertTrader(Strategy):
    """Sets an alert 2 hours after each 4h bar; at it, goes long when the last close is above the EMA. It reads the
    close from the context's history and the EMA from its features (``peek=False``), or the close of the bar that
    closes after the alert, from the whole frame it was given (``peek=True``)."""

    def __init__(self, bars: pd.DataFrame, peek: bool) -> None:
        super().__init__(IID, strategy_id="alert")
        self.ts, self.close, self.peek = bars["ts_init"].to_numpy(), bars["close"].to_numpy(), peek

    def feature_specs(self, instrument_id: str) -> list[FeatureSpec]:
        return [FeatureSpec(name="ema", kind="ema", params={"span": 10}, input="close")]

    def history_sizes(self, instrument_id: str) -> dict[str, int]:
        return {"bars": 5}

    def on_bar(self, bar: Bar) -> None:
        self.set_alert("after", bar.ts_init + H4 // 2)

    def on_timer(self, event: TimeEvent) -> None:
        ema = self.features()["ema"]
        if self.peek:
            close = self.close[min(int(np.searchsorted(self.ts, event.ts_event)), len(self.close) - 1)]
        else:
            close = float(self.bars(1).close[-1])
        if ema == ema:
            self.target_position(IID, 0.1 if close > ema else 0.0)


@pytest.mark.parametrize("peek", [True, False])
def test_an_alert_reading_the_price_after_its_time_is_caught_and_the_context_reads_pass(peek: bool) -> None:
    """The alert's twin reads the history and features the context gives at the alert's time (batch loop included):
    any of them holding the bar after it would be caught the same way."""
    sources = bar_sources()
    report = detect_lookahead(sources, lambda s: kernel_trace(lambda: kernel_with(AlertTrader(s[0].frame, peek)), s),
                              n_cuts=8, seed=4)
    if peek:
        assert not report.ok and {v["kind"] for v in report.violations} == {"decision"}
    else:
        assert report.ok and report.records_checked > 400, report.violations[:3]
