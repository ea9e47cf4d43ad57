"""The sweep's backtest tier: auto, event or accelerated, per trial (no Ray: trials run in-process)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest
from sweep_helpers import CATALOG, catalog_config, file_config, write_yaml

from tradebus.data.catalog import Catalog
from tradebus.errors import ConfigError
from tradebus.sweep.runner import run_sweep
from tradebus.sweep.space import load_space
from tradebus.sweep import trial
from tradebus.sweep.trial import METRIC_COLUMNS, TrialSpec, run_trial

PARAMS = {"strategy.params.fast": 8, "strategy.params.slow": 34, "venue.slippage_bps": 2.5}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_yaml(tmp_path / "run.yaml", file_config(tmp_path))


@pytest.fixture
def donchian(tmp_path: Path) -> Path:
    data = file_config(tmp_path)
    data["strategy"] = {"name": "donchian_breakout", "instruments": ["BTC-USD.COINBASE"], "params": {"quantity": 0.5}}
    return write_yaml(tmp_path / "donchian.yaml", data)


def test_accelerated_and_event_trials_give_the_same_metrics(config: Path) -> None:
    rows = {tier: run_trial(TrialSpec(0, str(config), PARAMS, tier=tier)) for tier in ("event", "accelerated", "auto")}
    assert [rows[t]["tier"] for t in ("event", "accelerated", "auto")] == ["event", "accelerated", "accelerated"]
    assert all(row["status"] == "ok" for row in rows.values())
    assert rows["event"]["fills"] > 10
    for name in METRIC_COLUMNS:
        assert rows["accelerated"][name] == rows["event"][name], name
        assert rows["auto"][name] == rows["event"][name], name


def test_an_accelerated_trial_keeps_the_event_tiers_equity_curve(config: Path) -> None:
    """The accelerated trial builds no sample objects: its curve (walk-forward folds keep it) comes from the columns."""
    rows = {tier: run_trial(TrialSpec(0, str(config), PARAMS, keep_equity=True, tier=tier))
            for tier in ("event", "accelerated")}  # fmt: skip
    assert rows["accelerated"]["tier"] == "accelerated" and len(rows["event"]["equity"]) > 1_000
    assert rows["accelerated"]["equity"] == rows["event"]["equity"]
    assert all(type(t) is int and type(e) is float for t, e in rows["accelerated"]["equity"])
    assert _metrics(rows["accelerated"]) == _metrics(rows["event"])


def test_strategy_without_signal_kernel_runs_event_in_auto_and_fails_clearly_when_forced(donchian: Path) -> None:
    auto = run_trial(TrialSpec(0, str(donchian), {}, tier="auto"))
    assert (auto["status"], auto["tier"]) == ("ok", "event") and auto["fills"] > 0
    forced = run_trial(TrialSpec(0, str(donchian), {}, tier="accelerated"))
    assert forced["status"] == "failed" and forced["fills"] is None
    assert "tier: accelerated" in forced["error"] and "DonchianBreakout" in forced["error"]
    assert "declares no signal kernel" in forced["error"]


def test_forced_accelerated_sweep_of_an_unsupported_config_fails_before_any_trial(donchian: Path, tmp_path: Path) -> None:
    space = write_yaml(tmp_path / "space.yaml", {"params": {"strategy.params.quantity": [0.1, 0.2]},
                                                 "tier": "accelerated"})  # fmt: skip
    out = tmp_path / "sweep"
    with pytest.raises(ConfigError, match=r"space\.yaml: tier: accelerated: .*declares no signal kernel"):
        run_sweep(donchian, space, out)
    assert not (out / "trials").exists()
    with pytest.raises(ConfigError, match="--tier: 'fast'"):
        run_sweep(donchian, space, out, tier="fast")


def test_orders_the_risk_gate_denies_stay_in_the_accelerated_tier(config: Path) -> None:
    # A flip of 2 x 0.5 BTC is worth ~40k at 2022 prices: max_order_notional denies it.
    params = {"risk.max_order_notional": 25_000.0}
    auto = run_trial(TrialSpec(0, str(config), params, tier="auto"))
    event = run_trial(TrialSpec(0, str(config), params, tier="event"))
    assert auto["tier"] == "accelerated" and auto["denied"] > 0 and auto["fills"] > 0
    assert {k: auto[k] for k in METRIC_COLUMNS} == {k: event[k] for k in METRIC_COLUMNS}


@pytest.mark.parametrize(
    "limits",
    [
        {"risk.max_drawdown_pct": 10.0},
        {"risk.max_drawdown_pct": 10.0, "risk.drawdown_action": "reduce"},
        {"risk.max_daily_loss_pct": 1.0},
        {"risk.max_daily_loss_pct": 1.0, "risk.daily_loss_action": "reduce", "risk.max_drawdown_pct": 10.0},
        {"risk.max_consecutive_losses": 3},
        {"risk.max_gross_exposure": 0.2},
        {"risk.max_orders_per_window": 1, "risk.order_rate_window_ns": 3 * 86_400_000_000_000},
    ],
)
def test_breakers_stay_in_the_accelerated_tier(config: Path, limits: dict[str, Any]) -> None:
    params = {**PARAMS, **limits}
    auto = run_trial(TrialSpec(0, str(config), params, tier="auto"))
    event = run_trial(TrialSpec(0, str(config), params, tier="event"))
    free = run_trial(TrialSpec(0, str(config), PARAMS, tier="auto"))
    assert auto["tier"] == "accelerated" and auto["denied"] > 0 and 0 < auto["fills"] < free["fills"]
    assert {k: auto[k] for k in METRIC_COLUMNS} == {k: event[k] for k in METRIC_COLUMNS}


def test_auto_falls_back_to_event_when_the_accelerated_run_meets_what_it_does_not_model(tmp_path: Path) -> None:
    # The loop does not liquidate: 0.1 BTC at 10x on 800 USD reaches its liquidation (found once the run starts).
    data = file_config(tmp_path)
    data["instruments"][0]["leverage"] = 10.0
    data["initial_cash"] = 800.0
    data["strategy"]["params"]["quantity"] = 0.1
    config = write_yaml(tmp_path / "liquidated.yaml", data)
    auto = run_trial(TrialSpec(0, str(config), PARAMS, tier="auto"))
    event = run_trial(TrialSpec(0, str(config), PARAMS, tier="event"))
    assert (auto["status"], auto["tier"]) == ("ok", "event") and auto["fills"] > 0
    assert {k: auto[k] for k in METRIC_COLUMNS} == {k: event[k] for k in METRIC_COLUMNS}
    forced = run_trial(TrialSpec(0, str(config), PARAMS, tier="accelerated"))
    assert forced["status"] == "failed" and "reaches its liquidation" in forced["error"]


def test_a_tick_of_a_third_is_refused_in_every_tier_naming_the_instrument_and_field(tmp_path: Path) -> None:
    """A tick of 1/3 loaded and ran in the event tier, where the instrument refused every limit price it had rounded
    itself (0.3333 is no multiple of 0.3333333333333333); it is refused before the run."""
    data = file_config(tmp_path)
    data["instruments"][0]["tick_size"] = 1 / 3
    config = write_yaml(tmp_path / "thirds.yaml", data)
    for tier in ("auto", "event", "accelerated"):
        row = run_trial(TrialSpec(0, str(config), PARAMS, tier=tier))
        assert row["status"] == "invalid" and "instrument BTC-USD.COINBASE: tick_size 0.3333333333333333 is no decimal" in row["error"]


def test_space_tier_is_validated_and_not_part_of_the_fingerprint(tmp_path: Path) -> None:
    base = {"params": {"strategy.params.fast": [5, 10]}}
    auto = load_space(write_yaml(tmp_path / "a.yaml", base))
    event = load_space(write_yaml(tmp_path / "b.yaml", {**base, "tier": "event"}))
    assert (auto.tier, event.tier) == ("auto", "event") and auto.fingerprint() == event.fingerprint()
    with pytest.raises(ConfigError, match="tier"):
        load_space(write_yaml(tmp_path / "c.yaml", {**base, "tier": "fast"}))


def _metrics(row: dict[str, Any]) -> dict[str, Any]:
    return {name: row[name] for name in METRIC_COLUMNS}


def test_a_worker_reads_the_bars_once_for_its_trials_and_again_once_the_file_changes(config: Path) -> None:
    def uncached(params: dict[str, Any]) -> dict[str, Any]:
        trial._BARS.clear()
        row = run_trial(TrialSpec(0, str(config), params, tier="accelerated"))
        trial._BARS.clear()
        return row

    other = {**PARAMS, "strategy.params.fast": 5}
    trial._BARS.clear()
    first = run_trial(TrialSpec(0, str(config), PARAMS, tier="accelerated"))
    (bars,) = trial._BARS.values()
    second = run_trial(TrialSpec(1, str(config), other, tier="accelerated"))
    assert first["tier"] == second["tier"] == "accelerated"
    assert tuple(trial._BARS.values()) == (bars,)  # the second trial reused the first one's read
    assert _metrics(second) == _metrics(uncached(other))
    assert _metrics(first) == _metrics(uncached(PARAMS))

    # The same file rewritten with other prices (after 2022-07-01: up 30 %) must be read again.
    csv = config.parent / "bars.csv"
    lines = csv.read_text(encoding="utf-8").splitlines()
    moved = [lines[0]]
    for line in lines[1:]:
        ts, *values = line.split(",")
        scale = 1.3 if int(ts) >= 1_656_633_600_000 else 1.0
        moved.append(",".join([ts, *(f"{float(v) * scale:.2f}" for v in values[:4]), values[4]]))
    run_trial(TrialSpec(0, str(config), PARAMS, tier="accelerated"))  # kept again before the rewrite
    assert len(trial._BARS) == 1
    csv.write_text("\n".join(moved) + "\n", encoding="utf-8")
    after = run_trial(TrialSpec(0, str(config), PARAMS, tier="accelerated"))
    assert _metrics(after) != _metrics(first)
    assert _metrics(after) == _metrics(uncached(PARAMS))


def test_the_bars_a_worker_keeps_are_bounded_in_count_and_bytes(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def windows(months: range) -> None:
        for month in months:
            window = {**PARAMS, "data.end": f"2022-{month:02d}-01"}
            assert run_trial(TrialSpec(0, str(config), window, tier="accelerated"))["status"] == "ok"

    trial._BARS.clear()
    windows(range(2, 9))
    assert len(trial._BARS) == trial._BARS_KEPT
    # a budget below one selection keeps only the latest read (the window ending 2022-09-01)
    monkeypatch.setattr(trial, "_BARS_BYTES", 1_000)
    windows(range(8, 10))
    ((_, _, end_ns, *_),) = trial._BARS
    assert end_ns == 1_661_990_400_000_000_000 - 1  # the config's end is exclusive, the replay's inclusive
    trial._BARS.clear()


def test_a_worker_reads_a_catalog_dataset_again_once_it_is_rewritten(tmp_path: Path) -> None:
    root = tmp_path / "catalog"
    shutil.copytree(CATALOG, root)
    data = catalog_config(start="2022-01-01", end="2023-01-01")
    data["data"]["catalog"] = str(root)
    config = write_yaml(tmp_path / "run.yaml", data)
    spec = TrialSpec(0, str(config), PARAMS, tier="accelerated")
    trial._BARS.clear()
    before = run_trial(spec)
    assert before["tier"] == "accelerated" and len(trial._BARS) == 1
    # The same dataset overwritten with the second half of 2022 up 30 % (new files renamed into place).
    catalog = Catalog(root)
    table = catalog.read("coinbase", "spot", "BTC-USD", "bars_4h")
    scale = pc.if_else(pc.greater_equal(table["ts_init"], 1_656_633_600_000_000_000), 1.3, 1.0)
    for name in ("open", "high", "low", "close"):
        table = table.set_column(table.schema.get_field_index(name), name, pc.multiply(table[name], scale))
    catalog.write(table, "coinbase", "spot", "BTC-USD", "bars_4h", period="year", interval_ns=4 * 3_600_000_000_000,
                  mode="overwrite")
    after = run_trial(spec)
    assert _metrics(after) != _metrics(before)
    trial._BARS.clear()
    assert _metrics(after) == _metrics(run_trial(spec))
    trial._BARS.clear()


def test_auto_tier_falling_back_to_the_event_tier_starts_the_strategy_at_the_first_bar(tmp_path: Path) -> None:
    """A timer set in on_start fires one interval after the first bar in both tiers, never from 1970."""
    from tradebus.config import load_config
    from tradebus.errors import StrategyError

    data = file_config(tmp_path)
    hooks = Path(__file__).resolve().parents[1] / "fixtures" / "hooks"
    data["strategy"] = {"name": "hook_failures:FailsIn", "instruments": ["BTC-USD.COINBASE"],
                        "params": {"hook": "on_timer"}, "module_dir": str(hooks)}
    config = load_config(write_yaml(tmp_path / "timer.yaml", data))
    failures = {}
    for tier in ("event", "auto"):
        with pytest.raises(StrategyError) as info:
            trial.run_tier(config, None, tier)
        failures[tier] = str(info.value)
    assert failures["auto"] == failures["event"]
    assert " on_timer at 1970-" not in failures["event"]


def test_the_bars_kept_for_the_next_trials_are_those_of_the_files_their_key_names_racing_overwrites(
    tmp_path: Path,
) -> None:
    """An accelerated trial keeps the bars it read under the identity of the files they came from (path, inode,
    mtime, size): it listed the files under the catalog's read lock, took their identity after it and read the bars
    in another opening, so an ``--overwrite`` in another process meanwhile could file one version's bars under the
    other's files (a later trial on those files then ran the wrong bars; 10 to 20 of 350 to 420 reads racing 100
    overwrites of ten day files, in each of 3 runs), or fail on a file gone (a FileNotFoundError). The key is now taken from the very files the bars are read from, held open for both: every
    bars kept match the files their key names."""
    from tests.data.test_data_catalog import race_overwrites, raced_versions
    from tradebus.data.replay import Replay, ReplaySource

    sizes = {}
    for n, (table, interval_ns) in enumerate(raced_versions()):
        manifest = Catalog(tmp_path).write(table, "x", "spot", f"V{n}", "bars", "day", interval_ns=interval_ns)
        sizes[tuple(e.size for e in manifest.files)] = table.num_rows

    def kept() -> int | str:
        trial._BARS.clear()
        source = ReplaySource.from_catalog(Catalog(tmp_path), "S.X", "x", "spot", "S", "bars")
        try:
            trial._bars(Replay([source]), "S.X")
        except OSError as exc:
            return f"{type(exc).__name__}: {exc}"
        ((key, bars),) = trial._BARS.items()
        named = sizes.get(tuple(part[3] for part in key[4:]))
        return len(bars.close) if named == len(bars.close) else f"{len(bars.close)} bars kept under files of {named}"

    try:
        outcomes = race_overwrites(tmp_path, kept)
    finally:
        trial._BARS.clear()
    bad = [o for o in outcomes if not isinstance(o, int)]
    assert bad == [], f"{len(bad)} of {len(outcomes)} reads: {bad[:3]}"
    assert sorted(set(outcomes)) == [240, 480], len(outcomes)  # both versions were read
