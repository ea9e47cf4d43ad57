"""Stress variants: price shocks on the replayed stream, cost and latency multipliers (no Ray)."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError
from sweep_helpers import IID, REPO, file_config, make_config, write_yaml

from tradebus.cli import build_kernel, build_replay
from tradebus.config import load_config
from tradebus.data.replay import Replay, ReplaySource
from tradebus.engine.kernel import RunResult
from tradebus.execution.book_matching import LatencyModel
from tradebus.reports.metrics import compute_metrics
from tradebus.errors import ConfigError
from tradebus.sweep.runner import run_sweep
from tradebus.sweep.stress import FlashCrash, StressVariant, VolSpike, default_variants

HOUR = 3_600_000_000_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000  # ms, on the hour


def write_bars(path: Path, closes: list[float]) -> None:
    """Hourly bars (open time in ms) opening at the previous close, with a small wick."""
    lines = ["ts,open,high,low,close,volume"]
    prev = closes[0]
    for i, close in enumerate(closes):
        lines.append(f"{T0 + i * 3_600_000},{prev},{max(prev, close) + 0.05},{min(prev, close) - 0.05},{close},10")
        prev = close
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def run(config_path: Path, variant: StressVariant | None = None) -> RunResult:
    config = load_config(config_path)
    if variant is not None:
        config = variant.apply_config(config)
    replay = build_replay(config)
    return build_kernel(config).run(variant.wrap(replay) if variant is not None else replay)


@pytest.fixture
def dip_then_rise(tmp_path: Path) -> Path:
    """Falls 120 -> 100 over 40 bars, then rises 0.2 a bar: ema_cross buys once and holds."""
    closes = [120.0 - 0.5 * i for i in range(41)] + [100.0 + 0.2 * i for i in range(1, 260)]
    write_bars(tmp_path / "bars.csv", closes)
    config = make_config(
        {"sources": [{"instrument": IID, "file": "bars.csv"}]},
        strategy={"name": "ema_cross", "instruments": [IID],
                  "params": {"fast": 3, "slow": 10, "mode": "long_only", "quantity": 1.0}},
        report={"equity_interval": "1h"},
    )
    config["instruments"][0].update(maker_fee=0.0, taker_fee=0.0)
    return write_yaml(tmp_path / "run.yaml", config)


def test_flash_crash_marks_the_held_position_down_by_depth_and_costs_the_round_trip(dip_then_rise: Path) -> None:
    base = run(dip_then_rise)
    assert [f.side for f in base.fills] == ["BUY"]  # bought after the dip, held to the end
    quantity = base.fills[0].quantity
    crash_at = base.equity[200].ts  # a bar close well after the buy
    depth = 0.3
    stressed = run(dip_then_rise, StressVariant(
        name="crash", flash_crash=FlashCrash(at=_dt(crash_at), depth=depth, recovery="10h")))
    before = {s.ts: s.equity for s in base.equity}
    after = {s.ts: s.equity for s in stressed.equity}
    close = 100.0 + 0.2 * (200 - 40)  # close of bar 200 (the sample at crash_at) in the fixture's path
    assert before[crash_at - HOUR] == after[crash_at - HOUR]
    # Hand-derived: the crash bar closes at close * (1 - depth) while one unit is held.
    assert after[crash_at] == pytest.approx(before[crash_at] - quantity * close * depth, rel=1e-12)
    # The fast EMA drops below the slow one: sold near the bottom, bought back during the recovery.
    assert [f.side for f in stressed.fills][:3] == ["BUY", "SELL", "BUY"]
    m_base, m_stress = compute_metrics(base), compute_metrics(stressed)
    assert m_stress["total_return"] < m_base["total_return"]
    peak = before[crash_at - HOUR]  # the price only rose before the crash
    assert m_stress["max_drawdown"] >= (peak - (before[crash_at] - quantity * close * depth)) / peak - 1e-12
    assert m_base["max_drawdown"] == 0.0


def _dt(ts_ns: int) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts_ns / 1e9, UTC)


def test_vol_spike_scales_log_moves_inside_the_window_and_shifts_the_level_after(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    closes = list(100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, 200))))
    write_bars(tmp_path / "bars.csv", closes)
    source = ReplaySource.from_file(tmp_path / "bars.csv", IID, "bars")
    start_ns = (T0 + 50 * 3_600_000) * 1_000_000 + HOUR  # close time of bar 50
    spike = StressVariant(name="vol", vol_spike=VolSpike(start=_dt(start_ns), duration="20h", factor=3.0))
    original = list(Replay([source], batch_rows=7).batches())
    shocked = list(spike.wrap(Replay([source], batch_rows=7)).batches())
    cat = {f: np.concatenate([getattr(b, f) for b in original]) for f in ("open", "high", "low", "close", "ts_init")}
    new = {f: np.concatenate([getattr(b, f) for b in shocked]) for f in ("open", "high", "low", "close")}
    ts = cat["ts_init"]
    inside = (ts >= start_ns) & (ts < start_ns + 20 * HOUR)
    anchor = cat["close"][np.flatnonzero(ts < start_ns)[-1]]
    for f in ("open", "high", "low", "close"):
        assert np.array_equal(new[f][ts < start_ns], cat[f][ts < start_ns])
        np.testing.assert_allclose(np.log(new[f][inside] / anchor), 3.0 * np.log(cat[f][inside] / anchor), rtol=1e-12)
    last_inside = np.flatnonzero(inside)[-1]
    level = new["close"][last_inside] / cat["close"][last_inside]
    after = ts >= start_ns + 20 * HOUR
    np.testing.assert_allclose(new["close"][after] / cat["close"][after], level, rtol=1e-12)
    assert np.all(new["high"] >= np.maximum(new["open"], new["close"]))
    assert np.all(new["low"] <= np.minimum(new["open"], new["close"]))
    assert abs(math.log(level)) > 0.001  # the spike moved the level (the test would notice no shock)


def test_cost_x2_doubles_every_fee_for_the_same_fills(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "run.yaml", file_config(tmp_path))
    base = run(path)
    doubled = run(path, StressVariant(name="costs_x2", costs=2.0))
    assert len(base.fills) > 10
    assert [(f.ts_event, f.side, f.quantity, f.price) for f in doubled.fills] == [
        (f.ts_event, f.side, f.quantity, f.price) for f in base.fills]
    assert [f.fee for f in doubled.fills] == [2.0 * f.fee for f in base.fills]
    assert all(f.fee > 0 for f in base.fills)


def test_cost_multiplier_scales_slippage_and_venue_fee_overrides(tmp_path: Path) -> None:
    config = file_config(tmp_path, venue={"slippage_bps": 2.0, "taker_fee": 0.001})
    stressed = StressVariant(name="x5", costs=5.0).apply_config(load_config(write_yaml(tmp_path / "r.yaml", config)))
    assert stressed.venue.slippage_bps == 10.0
    assert stressed.venue.taker_fee == pytest.approx(0.005)
    assert stressed.instruments[0].taker_fee == pytest.approx(0.03)
    config["venue"] = {"slippage": {"model": "volume", "bps": 1.0, "impact_bps": 10.0, "max_bps": 50.0}}
    config["instruments"][0]["fee_tiers"] = [{"min_volume": 1e6, "maker_fee": -0.0001, "taker_fee": 0.004}]
    stressed = StressVariant(name="x2", costs=2.0).apply_config(load_config(write_yaml(tmp_path / "t.yaml", config)))
    slippage = stressed.venue.slippage
    assert slippage is not None and (slippage.bps, slippage.impact_bps, slippage.max_bps) == (2.0, 20.0, 100.0)
    tier = stressed.instruments[0].fee_tiers[0]
    assert (tier.min_volume, tier.maker_fee, tier.taker_fee) == (1e6, -0.0002, 0.008)


def test_a_cost_multiplier_past_the_configs_bounds_is_refused_naming_the_multiplier_and_the_field(tmp_path: Path) -> None:
    """costs x20 made a taker fee of 0.006 one of 0.12 and a maker rebate of -0.001 one of -0.02, past the
    bounds (-0.01, 0.1) a config is held to, and the trial ran with them; x1e308 made a slippage of 2 bps
    infinite."""
    config = file_config(tmp_path, venue={"slippage_bps": 2.0})
    config["instruments"][0]["maker_fee"] = -0.001
    loaded = load_config(write_yaml(tmp_path / "r.yaml", config))
    with pytest.raises(ConfigError) as info:
        StressVariant(name="costs_x20", costs=20.0).apply_config(loaded)
    assert str(info.value) == (
        "costs x20 makes an invalid config:\n"
        "  instruments.0.maker_fee: Input should be greater than -0.01 (got -0.02)\n"
        "  instruments.0.taker_fee: Input should be less than 0.1 (got 0.12)"
    )
    with pytest.raises(ConfigError, match=r"^costs x1e\+308 makes an invalid config:\n(.|\n)*  venue.slippage_bps: Input should be a finite number \(got inf\)"):
        StressVariant(name="huge", costs=1e308).apply_config(loaded)
    assert StressVariant(name="costs_x5", costs=5.0).apply_config(loaded).instruments[0].taker_fee == pytest.approx(0.03)
    for field in ("costs", "latency"):
        with pytest.raises(ValidationError, match="finite"):
            StressVariant(name="inf", **{field: math.inf})
    # the defaults leave out what the config cannot take, and a sweep's own variant fails before any trial
    config["instruments"][0]["taker_fee"] = 0.025
    loaded = load_config(write_yaml(tmp_path / "fees.yaml", config))
    assert [v.name for v in default_variants(None, loaded)] == ["baseline", "costs_x2", "latency_x2", "latency_x5"]
    space = write_yaml(tmp_path / "space.yaml", {"params": {"strategy.params.fast": [5, 8]},
                                                 "stress": [{"name": "costs_x5", "costs": 5.0}]})
    with pytest.raises(ConfigError, match=r"space.yaml: stress.0: variant 'costs_x5': costs x5 makes an invalid config:\n"
                                          r"  instruments.0.taker_fee: Input should be less than 0.1 \(got 0.125\)"):
        run_sweep(tmp_path / "fees.yaml", space, tmp_path / "out", workers=1, stress=True)
    assert not (tmp_path / "out").exists()


def test_latency_x3_delays_every_fill_by_one_bar(tmp_path: Path) -> None:
    # 4h bars, latency 2h: an order decided at a bar's close arrives inside the next bar and
    # fills at the open of the one after; x3 = 6h arrives inside that one: one bar later.
    path = write_yaml(tmp_path / "run.yaml", file_config(tmp_path, venue={"latency_ns": 2 * HOUR}))
    base = run(path)
    slow = run(path, StressVariant(name="latency_x3", latency=3.0))
    assert len(base.fills) == len(slow.fills) > 10
    assert {s.ts_event - b.ts_event for s, b in zip(slow.fills, base.fills, strict=True)} == {4 * HOUR}


def test_default_variants_include_shocks_at_mid_span_only_when_the_span_is_known() -> None:
    names = [v.name for v in default_variants(None)]
    assert names == ["baseline", "costs_x2", "costs_x5", "latency_x2", "latency_x5"]
    span = (1_640_995_200_000_000_000, 1_672_531_200_000_000_000)  # 2022
    variants = default_variants(span)
    crash = next(v for v in variants if v.flash_crash is not None)
    assert crash.flash_crash is not None and crash.flash_crash.at.isoformat().startswith("2022-07-02")
    assert any(v.vol_spike is not None for v in variants)


def book_config(tmp_path: Path, book: dict[str, Any]) -> Path:
    config = file_config(tmp_path, venue={"fill_on": "book", "latency_ns": 7, "book": book})
    config["data"]["catalog"] = "catalog"  # a book venue needs the instrument's book (only loaded here, not read)
    config["data"]["sources"].append({"instrument": IID, "kind": "book", "dataset": "v/spot/X/book"})
    return write_yaml(tmp_path / "book.yaml", config)


def test_latency_x3_scales_the_book_venues_entry_and_acknowledgement_latencies(tmp_path: Path) -> None:
    """A ``fill_on: book`` venue takes its latencies from ``venue.book``: the stress scales those too."""
    config = load_config(book_config(tmp_path, {"entry_latency_ns": 1_000, "ack_latency_ns": 500}))
    model = LatencyModel.from_config(StressVariant(name="x3", latency=3.0).apply_config(config).venue.book, 7)
    assert (model.entry(), model.ack()) == (3_000, 1_500)
    # Without its own entry latency the book venue takes latency_ns, scaled once.
    config = load_config(book_config(tmp_path, {"ack_latency_ns": 500}))
    stressed = StressVariant(name="x3", latency=3.0).apply_config(config).venue
    model = LatencyModel.from_config(stressed.book, stressed.latency_ns)
    assert (model.entry(), model.ack()) == (21, 1_500)


def test_latency_x3_scales_latencies_sampled_from_recorded_ones(tmp_path: Path) -> None:
    samples = tmp_path / "acks.txt"
    samples.write_text("\n".join(str(v) for v in (800_000, 1_200_000, 950_000, 2_500_000, 1_100_000)) + "\n")
    config = load_config(book_config(tmp_path, {"ack_latency_samples": str(samples), "latency_seed": 5}))
    stressed = StressVariant(name="x3", latency=3.0).apply_config(config).venue.book
    assert stressed.latency_scale == 3.0
    base, slow = LatencyModel.from_config(config.venue.book, 7), LatencyModel.from_config(stressed, 7)
    pairs = [(base.entry(), slow.entry()) for _ in range(200)] + [(base.ack(), slow.ack()) for _ in range(200)]
    assert all(abs(s - 3 * b) <= 2 for b, s in pairs)  # the same draws, times 3 (each rounded to whole ns)
    none = StressVariant(name="x0", latency=0.0).apply_config(config).venue.book
    zero = LatencyModel.from_config(none, 0)
    assert (zero.entry(), zero.ack()) == (0, 0)


def test_no_effect_names_the_multipliers_that_leave_the_config_unchanged(tmp_path: Path) -> None:
    config = load_config(write_yaml(tmp_path / "run.yaml", file_config(tmp_path)))  # no latency, fees set
    both = StressVariant(name="both", costs=2.0, latency=5.0)
    assert both.no_effect(config) == "latency x5 changes nothing: the venue's latency is zero (set venue.latency_ns)"
    assert StressVariant(name="costs", costs=2.0).no_effect(config) is None
    assert StressVariant(name="base").no_effect(config) is None
    assert StressVariant(name="x1", costs=1.0).no_effect(config) == "costs x1 change nothing"
    slow = load_config(write_yaml(tmp_path / "slow.yaml", file_config(tmp_path, venue={"latency_ns": HOUR})))
    assert both.no_effect(slow) is None
    free = config.model_copy(update={
        "instruments": [i.model_copy(update={"maker_fee": 0.0, "taker_fee": 0.0}) for i in config.instruments],
        "venue": config.venue.model_copy(update={"slippage_bps": 0.0}),
    })  # fmt: skip
    assert both.no_effect(free) == (
        "costs x2 change nothing: every fee rate and the slippage are zero; "
        "latency x5 changes nothing: the venue's latency is zero (set venue.latency_ns)"
    )


def test_no_effect_names_a_price_shock_outside_the_data(tmp_path: Path) -> None:
    config = load_config(write_yaml(tmp_path / "run.yaml", file_config(tmp_path)))
    span = (1_640_995_200_000_000_000, 1_672_531_200_000_000_000)  # [2022-01-01, 2023-01-01)
    day = 86_400_000_000_000
    late = StressVariant(name="late", flash_crash=FlashCrash(at=date(2023, 1, 1), depth=0.2))
    assert late.no_effect(config, span) == "the flash crash at 2023-01-01 falls outside the data"
    assert late.no_effect(config) is None  # the span unknown: nothing said
    # The recovery reaches into the data: the shock moves prices.
    early = StressVariant(name="early", flash_crash=FlashCrash(at=datetime(2021, 12, 31, 12, tzinfo=UTC), depth=0.2))
    assert early.no_effect(config, span) is None
    assert early.no_effect(config, (span[0] + day // 2, span[1])) == (
        "the flash crash at 2021-12-31 12:00:00+00:00 falls outside the data"
    )
    spike = StressVariant(name="spike", vol_spike=VolSpike(start=date(2021, 12, 25), duration="7d", factor=3.0))
    assert spike.no_effect(config, span) == "the volatility spike at 2021-12-25 falls outside the data"
    assert spike.no_effect(config, (span[0] - day, span[1])) is None


def test_flash_crash_on_a_perpetual_moves_its_mark_prices_as_a_run_on_crashed_files_does(tmp_path: Path) -> None:
    """A perpetual is valued and liquidated at its mark: the crash must reach the marks fed beside the bars.

    Oracle: the same backtest on copies of the bar and mark files whose prices were multiplied by
    the crash factor with pandas.
    """
    import pandas as pd
    import yaml

    from tradebus.sweep.trial import TrialSpec, run_trial

    fixtures = REPO / "tests" / "fixtures" / "perpetual"
    raw = yaml.safe_load((REPO / "configs" / "perp_xrp_funding.yaml").read_text(encoding="utf-8"))
    at, recovery, depth = pd.Timestamp("2021-11-17T00:00:00Z"), pd.Timedelta("6h"), 0.1

    def crashed(ts: pd.Series) -> np.ndarray:
        elapsed = (ts - at) / recovery
        return np.where((elapsed >= 0) & (elapsed < 1), 1.0 - depth * (1.0 - elapsed), 1.0)

    bars = pd.read_parquet(fixtures / "XRP_USDT_USDT-5m-futures.parquet")
    marks = pd.read_feather(fixtures / "XRP_USDT_USDT-1h-mark.feather")
    bar_factor = crashed(bars["date"] + pd.Timedelta("5min"))  # bar_time: open; replayed at the bar's close
    mark_factor = crashed(marks["date"])
    for column in ("open", "high", "low", "close"):
        bars[column] *= bar_factor
        marks[column] *= mark_factor
    assert (mark_factor < 1.0).sum() == 6  # the crash covers six hourly marks
    bars.to_parquet(tmp_path / "bars.parquet")
    marks.to_feather(tmp_path / "marks.feather")
    data = raw["data"]
    data["sources"][0]["file"] = str(tmp_path / "bars.parquet")
    data["marks"][0]["file"] = str(tmp_path / "marks.feather")
    data["funding"][0]["file"] = str(fixtures / "XRP_USDT_USDT-8h-funding_rate.feather")
    variant = {"name": "crash", "flash_crash": {"at": "2021-11-17T00:00:00", "depth": depth, "recovery": "6h"}}
    shipped = str(REPO / "configs" / "perp_xrp_funding.yaml")
    stressed = run_trial(TrialSpec(0, shipped, {}, stress=variant, keep_equity=True))
    reference = run_trial(TrialSpec(0, str(write_yaml(tmp_path / "hand.yaml", raw)), {}, keep_equity=True))
    assert stressed["status"] == reference["status"] == "ok"
    assert stressed["equity"] == reference["equity"]
    assert {k: stressed[k] for k in ("total_return", "max_drawdown", "fills")} == {
        k: reference[k] for k in ("total_return", "max_drawdown", "fills")}


def test_shock_marks_keeps_funding_rates_and_the_order_of_the_feed() -> None:
    from tradebus.engine.messages import FundingRate, MarkPrice

    t = 1_700_000_000_000_000_000
    feed = [MarkPrice("A", t, t, 10.0, 11.0), FundingRate("A", t, t, 0.001, t + HOUR),
            MarkPrice("A", t + HOUR, t + HOUR, 10.0, math.nan)]
    crash = StressVariant(name="c", flash_crash=FlashCrash(at=_dt(t + HOUR), depth=0.5, recovery="2h"))
    out = crash.shock_marks(feed)
    assert out[:2] == feed[:2]
    assert out[2].mark_price == 5.0 and math.isnan(out[2].index_price)
    assert StressVariant(name="baseline").shock_marks(feed) == feed
