"""Space files, overrides, walk-forward folds and stitching, sweep-directory guards (no Ray)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from sweep_helpers import IID, REPO, catalog_config, file_config, make_config, write_yaml
from typer.testing import CliRunner

from tradebus.cli import app
from tradebus.config import apply_overrides
from tradebus.errors import ConfigError
from tradebus.locks import take_lock
from tradebus.sweep.space import SweepSpace, load_space
from tradebus.sweep.trial import override_text
from tradebus.sweep.walkforward import WalkForwardSpec, folds, stitch

DAY = 86_400_000_000_000


def space_file(tmp_path: Path, data: dict) -> Path:
    return write_yaml(tmp_path / "space.yaml", data)


def test_grid_enumerates_the_product_last_parameter_fastest(tmp_path: Path) -> None:
    space = load_space(space_file(tmp_path, {"params": {
        "strategy.params.fast": [5, 10],
        "strategy.params.slow": {"low": 20, "high": 60, "step": 20},
        "venue.slippage_bps": {"low": 0.0, "high": 0.3, "step": 0.1},
    }}))
    points = list(space.grid())
    assert space.grid_size() == len(points) == 2 * 3 * 4
    assert points[0] == {"strategy.params.fast": 5, "strategy.params.slow": 20, "venue.slippage_bps": 0.0}
    assert points[1]["venue.slippage_bps"] == 0.1 and points[3]["venue.slippage_bps"] == 0.3
    assert points[4]["strategy.params.slow"] == 40
    assert [type(p["strategy.params.slow"]) for p in points] == [int] * len(points)
    assert [p.arrow_type() for p in space.params] == ["int64", "int64", "float64"]


@pytest.mark.parametrize(("data", "message"), [
    ({"params": {"strategy.params.fast": {"low": 1.0, "high": 5.0}}}, "a grid needs a list of values or a 'step'"),
    ({"params": {"strategy.params.fast": {"low": 5, "high": 1}}}, "low 5 is above high 1"),
    ({"params": {"strategy.params.fast": {"low": 10, "high": 35, "step": 10}}},
     "the range 10..35 step 10 does not end at high: its last point is 30; make high 30 or 40"),
    ({"method": "tpe", "trials": 4, "params": {"venue.slippage_bps": {"low": 0.0, "high": 1.0, "step": 0.3}}},
     "the range 0..1 step 0.3 does not end at high: its last point is 0.9; make high 0.9 or 1.2"),
    ({"method": "tpe", "params": {"strategy.params.fast": [1, 2]}}, "trials: a tpe sweep needs the number"),
    ({"params": {"x": [1]}, "objectives": {}}, "objectives: name at least one metric"),
    ({"params": {"x": [1]}, "bogus": 1}, "bogus: unknown key"),
    ({"params": {"x": [1]}, "objectivs": {"sharpe": "maximize"}},
     "objectivs: unknown key (not allowed here), did you mean 'objectives'?"),
    ({"params": {"x": [1]}, "objectives": {"sharp": "maximize"}}, "objectives.sharp: not a metric"),
    ({"params": {"x": [1]}, "stress": [{"name": "a", "costs": -1}]}, "stress.0.costs"),
    ({"params": {"x": [1]}, "stress": []}, "stress: the list of variants is empty"),
    ({"params": {"strategy.params.fast": {"low": 1, "high": 10_000_000, "step": 1}}},
     "params: the grid has 10,000,000 points (strategy.params.fast 10,000,000), more than a sweep runs (1,000,000"),
    ({"params": {"strategy.params.fast": {"low": 1, "high": 2000, "step": 1},
                 "venue.slippage_bps": {"low": 0.0, "high": 99.9, "step": 0.1}}},
     "params: the grid has 2,000,000 points (strategy.params.fast 2,000 x venue.slippage_bps 1,000)"),
    ({"method": "tpe", "trials": 10_000_000, "params": {"strategy.params.fast": [1, 2]}},
     "trials: 10,000,000 is more than a sweep runs (1,000,000"),
])
def test_invalid_space_names_the_file_and_field(tmp_path: Path, data: dict, message: str) -> None:
    path = space_file(tmp_path, data)
    with pytest.raises(ConfigError, match="space.yaml") as info:
        load_space(path)
    assert message in str(info.value)


def test_points_are_a_stepped_ranges_grid_points_and_other_values_as_drawn() -> None:
    """What TPE's draws stand for: Optuna's low + 12 * step of a float range is 0.6500000000000001, the grid's 0.65."""
    space = SweepSpace.model_validate({"method": "tpe", "trials": 1, "params": {
        "q": {"low": 0.05, "high": 1.0, "step": 0.05}, "n": {"low": 20, "high": 60, "step": 5},
        "s": {"low": 0.5, "high": 10.0}, "c": [0.1, "a"]}})
    drawn = {"q": 0.05 + 12 * 0.05, "n": 45, "s": 0.21405492262354778, "c": 0.1}
    assert drawn["q"] == 0.6500000000000001
    assert space.points(drawn) == {"q": 0.65, "n": 45, "s": 0.21405492262354778, "c": 0.1}
    q = space.params[0]
    assert [q.point(v) for v in q.grid_values()] == q.grid_values() == [k / 20 for k in range(1, 21)]


def test_a_grid_of_a_million_points_is_counted_without_listing_them(tmp_path: Path) -> None:
    """A grid of as many points as a sweep runs (:data:`~tradebus.sweep.space.MAX_TRIALS`) is taken."""
    space = load_space(space_file(tmp_path, {"params": {
        "strategy.params.fast": {"low": 1, "high": 1000, "step": 1},
        "venue.slippage_bps": {"low": 0.0, "high": 99.9, "step": 0.1},
    }}))
    assert space.grid_size() == space.total_trials() == 1_000_000
    assert next(space.grid()) == {"strategy.params.fast": 1, "venue.slippage_bps": 0.0}


@pytest.mark.parametrize(("spec", "message"), [
    ({"low": 5, "high": 10, "step": 0}, "params.strategy.params.fast: step must be > 0, got 0.0"),
    ({"low": 5, "high": 10, "step": -1}, "params.strategy.params.fast: step must be > 0, got -1.0"),
    ([], "params.strategy.params.fast: the list of values is empty"),
    ({"low": 5, "high": 10, "stride": 1}, "params.strategy.params.fast.stride: unknown key"),
    ({"low": 5, "high": 10, "stepp": 1},
     "params.strategy.params.fast.stepp: unknown key (not allowed here), did you mean 'step'?"),
    ({"low": 5, "high": float("inf"), "step": 1}, "params.strategy.params.fast: high must be a finite number, got inf"),
    ({"low": float("nan"), "high": 10, "step": 1}, "params.strategy.params.fast: low must be a finite number, got nan"),
    ({"low": 5, "high": 10, "step": float("inf")}, "params.strategy.params.fast: step must be a finite number, got inf"),
])
def test_sweep_with_an_invalid_parameter_names_its_key_exits_2_and_leaves_no_directory(
    tmp_path: Path, spec: object, message: str
) -> None:
    """The error named the parameter by its position (``params.1``), not by its key."""
    config = write_yaml(tmp_path / "run.yaml", catalog_config())
    space = space_file(tmp_path, {"params": {"strategy.params.slow": [40], "strategy.params.fast": spec}})
    result = CliRunner().invoke(app, ["sweep", str(config), "--space", str(space), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "o").exists()


def test_tpe_sweep_of_an_infinite_range_exits_2_naming_the_bound_and_leaves_no_directory(tmp_path: Path) -> None:
    """``high: .inf`` passed the space's checks and Optuna's sampler raised OverflowError at the first ask."""
    config = write_yaml(tmp_path / "run.yaml", catalog_config())
    space = space_file(tmp_path, {"method": "tpe", "trials": 2,
                                  "params": {"venue.slippage_bps": {"low": 0.0, "high": float("inf")}}})
    result = CliRunner().invoke(
        app, ["sweep", str(config), "--space", str(space), "--out", str(tmp_path / "o"), "--workers", "1"]
    )
    assert result.exit_code == 2, result.output
    assert "params.venue.slippage_bps: high must be a finite number, got inf" in result.output
    assert not (tmp_path / "o").exists()


def test_sweep_with_an_empty_stress_list_exits_2_naming_the_key_and_leaves_no_directory(tmp_path: Path) -> None:
    """``stress: []`` ran no variant and wrote ``stress.json`` as ``[]``, even with --stress."""
    config = write_yaml(tmp_path / "run.yaml", catalog_config())
    space = space_file(tmp_path, {"params": {"strategy.params.fast": [5]}, "stress": []})
    result = CliRunner().invoke(
        app, ["sweep", str(config), "--space", str(space), "--out", str(tmp_path / "o"), "--stress", "--workers", "1"]
    )
    assert result.exit_code == 2, result.output
    assert "stress: the list of variants is empty" in " ".join(result.output.split())
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("value", [1e-05, 0.1, 12, "long_short", True, "2022-01-01T00:00:00Z"])
def test_override_text_round_trips_through_apply_overrides(value: object) -> None:
    result = apply_overrides({"a": {"b": None}}, [override_text("a.b", value)])
    assert result["a"]["b"] == value and type(result["a"]["b"]) is type(value)


def test_fingerprint_ignores_the_stress_block_only() -> None:
    base = {"params": {"strategy.params.fast": [5, 10]}}
    a = SweepSpace.model_validate(base)
    assert a.fingerprint() == SweepSpace.model_validate({**base, "stress": [{"name": "b"}]}).fingerprint()
    assert a.fingerprint() != SweepSpace.model_validate({**base, "seed": 1}).fingerprint()


def test_folds_step_by_the_test_window_and_only_whole_test_windows() -> None:
    spec = WalkForwardSpec(train="10d", test="5d")
    got = folds(spec, (0, 27 * DAY))
    assert [(f.train_start, f.train_end, f.test_end) for f in got] == [
        (0, 10 * DAY, 15 * DAY), (5 * DAY, 15 * DAY, 20 * DAY), (10 * DAY, 20 * DAY, 25 * DAY)]
    with pytest.raises(ConfigError, match="does not fit"):
        folds(spec, (0, 14 * DAY))
    with pytest.raises(ConfigError, match="data span is unknown"):
        folds(spec, None)


def test_stitch_chains_the_test_windows_returns() -> None:
    curves = [[(0, 100.0), (DAY, 110.0)], [(2 * DAY, 100.0), (3 * DAY, 90.0)]]
    stitched, metrics = stitch(curves, 100.0)
    assert stitched == [(0, 0, 100.0), (0, DAY, 110.0), (1, 2 * DAY, pytest.approx(110.0)), (1, 3 * DAY, pytest.approx(99.0))]
    assert metrics["total_return"] == pytest.approx(1.1 * 0.9 - 1)
    assert metrics["max_drawdown"] == pytest.approx((110 - 99) / 110)
    assert metrics["folds"] == 2
    assert metrics["untested_folds"] == []


def test_stitch_names_the_folds_without_a_test_curve() -> None:
    """A fold with no best trial was dropped from the stitched figures with nothing saying so."""
    curves = [[(0, 100.0), (DAY, 110.0)], [], [(4 * DAY, 100.0), (5 * DAY, 90.0)]]
    _, metrics = stitch(curves, 100.0)
    assert metrics["folds"] == 3 and metrics["untested_folds"] == [1]
    assert metrics["total_return"] == pytest.approx(1.1 * 0.9 - 1)


def test_stitched_sharpe_of_equity_sampled_every_3_days_is_annualised_by_its_122_periods_a_year() -> None:
    """With ``equity_interval: 3d`` the stitched Sharpe was annualised by sqrt(365), sqrt(3) too large."""
    rng = np.random.default_rng(5)
    levels = 100.0 * np.cumprod(1.0 + rng.normal(0.002, 0.02, 40))
    days = np.arange(40) * 3
    curves = [[(int(d * DAY), float(e)) for d, e in zip(days[:20], levels[:20], strict=True)],
              [(int(d * DAY), float(e / levels[19] * 100.0)) for d, e in zip(days[20:], levels[20:], strict=True)]]
    _, metrics = stitch(curves, 100.0)
    returns = np.diff(np.concatenate(([100.0], levels))) / np.concatenate(([100.0], levels[:-1]))
    expected = returns.mean() / returns.std(ddof=1) * np.sqrt(365.0 / 3.0)
    assert metrics["sharpe"] == pytest.approx(expected, rel=1e-9)


def test_stitched_sharpe_of_flat_test_windows_run_with_a_swept_initial_cash_is_null_as_in_metrics_json() -> None:
    """Three flat 20-day windows run with 22,468.22 each (a swept initial_cash) chained onto 100,000 showed a
    Sharpe of -2.47: the rescaled level 22468.22 * (100000 / 22468.22) is 1 ulp off 100000, a return of -1e-16.
    """
    cash = 22_468.22
    curves = [[(k * 20 * DAY + i * DAY // 6, cash) for i in range(120)] for k in range(3)]
    _, metrics = stitch(curves, 100_000.0, [cash] * 3)
    assert metrics["sharpe"] is None
    assert metrics["total_return"] == pytest.approx(0.0, abs=1e-15)


def test_stitched_sharpe_is_null_for_test_windows_spanning_under_30_days_as_in_metrics_json() -> None:
    """Two 7-day test windows gave an annualised Sharpe where a backtest's metrics.json gives null."""
    def curves(days_per_fold: int) -> list[list[tuple[int, float]]]:
        return [[(int((k * days_per_fold + d) * DAY), 100.0 * (1.0 + 0.01 * (d % 3))) for d in range(days_per_fold)]
                for k in range(2)]

    assert stitch(curves(7), 100.0)[1]["sharpe"] is None
    assert stitch(curves(16), 100.0)[1]["sharpe"] is not None  # samples span 31 days


@pytest.mark.parametrize(("path", "problem"), [
    ("strategies.0.params.fats", "strategies.0.params.fats=5: unknown key (not allowed here), did you mean 'fast'?"),
    ("strategies.3.params.fast", "strategies.3.params.fast=5: strategies has no entry '3'"),
])
def test_sweep_refuses_a_parameter_path_that_is_not_a_config_field_naming_the_config_once(
    tmp_path: Path, path: str, problem: str
) -> None:
    """It said 'not a field of run.yaml: run.yaml: invalid config:' and the problem on the next line, no value."""
    data = catalog_config()
    data["strategies"] = [{**data.pop("strategy"), "id": "ema"}]
    config = write_yaml(tmp_path / "run.yaml", data)
    space = space_file(tmp_path, {"params": {path: [5, 10]}})
    result = CliRunner().invoke(app, ["sweep", str(config), "--space", str(space), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert f"{space}: params.{path}: not a field of {config}: {problem}" in output, output
    assert output.count(str(config)) == 1, output
    assert not (tmp_path / "o").exists()


def test_sweep_of_strategy_params_of_a_config_listing_strategies_exits_2_naming_the_path_not_a_missing_name(
    tmp_path: Path,
) -> None:
    """It said "no point of the grid makes a valid config ... strategy.name: required field is missing"."""
    config = catalog_config()
    config["strategies"] = [{**config.pop("strategy"), "id": "ema"}]
    config_path = write_yaml(tmp_path / "run.yaml", config)
    space = space_file(tmp_path, {"params": {"strategy.params.fast": [5, 10]}})
    result = CliRunner().invoke(app, ["sweep", str(config_path), "--space", str(space), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    assert (f"params.strategy.params.fast: not a field of {config_path}: it has no strategy; it lists strategies: "
            "name one by its index, e.g. strategies.0.params.fast") in " ".join(result.output.split())
    assert not (tmp_path / "o").exists()
    space = space_file(tmp_path, {"params": {"strategies.0.params.fast": [5, 10]}})  # its check passes
    result = CliRunner().invoke(app, ["sweep", str(config_path), "--space", str(space), "--out", str(tmp_path / "o"),
                                      "--workers", "0"])
    assert result.exit_code == 2 and "--workers must be >= 1" in result.output, result.output


@pytest.mark.parametrize(("params", "message"), [
    ({"strategy.params.fast": [50, 60], "strategy.params.slow": [10]},
     "the first, strategy.params.fast=50, strategy.params.slow=10: strategy.params: fast (50) must be smaller than slow (10)"),
    ({"strategy.params.mode": ["sideways"]}, "the first, strategy.params.mode=sideways: strategy.params.mode:"),
])
def test_sweep_of_a_grid_the_strategy_rejects_at_every_point_fails_before_any_trial(
    tmp_path: Path, params: dict, message: str
) -> None:
    """Every trial was 'invalid': the sweep printed its trial count, named no best trial and exited 0."""
    config = write_yaml(tmp_path / "run.yaml", catalog_config())
    space = space_file(tmp_path, {"params": params})
    result = CliRunner().invoke(app, ["sweep", str(config), "--space", str(space), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    assert "params: no point of the grid makes a valid config" in " ".join(result.output.split())
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "o").exists()


def test_sweep_refuses_a_data_window_with_no_row_before_any_trial(tmp_path: Path) -> None:
    """Every trial ran on nothing: the sweep wrote trials of zeros, named no best trial and exited 0."""
    config = write_yaml(tmp_path / "run.yaml", catalog_config(start="2030-01-01", end="2030-02-01"))
    space = space_file(tmp_path, {"params": {"strategy.params.fast": [5, 10]}})
    result = CliRunner().invoke(app, ["sweep", str(config), "--space", str(space), "--out", str(tmp_path / "o")])
    assert result.exit_code == 3, result.output
    assert "data: no source has a row between data.start 2030-01-01T00:00:00Z and data.end 2030-02-01T00:00:00Z" \
        in " ".join(result.output.split())
    assert not (tmp_path / "o").exists()


def test_sweep_refuses_a_directory_of_another_sweep_or_with_foreign_files(tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "run.yaml", catalog_config())
    space = space_file(tmp_path, {"params": {"strategy.params.fast": [5, 10]}})
    other = tmp_path / "other"
    other.mkdir()
    (other / "sweep.json").write_text(json.dumps({"config": "x.yaml", "space_fingerprint": "0"}))
    result = CliRunner().invoke(app, ["sweep", str(config), "--space", str(space), "--out", str(other)])
    assert result.exit_code == 2 and "holds a sweep of another config or space" in result.output
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    result = CliRunner().invoke(app, ["sweep", str(config), "--space", str(space), "--out", str(foreign)])
    assert result.exit_code == 2 and "not empty (notes.txt)" in result.output
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    assert yaml.safe_load(space.read_text())  # the space file is untouched


def test_sweep_refuses_a_directory_without_sweep_json_holding_files_named_as_its_own(tmp_path: Path) -> None:
    """A folder holding one's own results.csv and best.json was taken for a sweep's: both overwritten, exit 0."""
    config = write_yaml(tmp_path / "run.yaml", catalog_config())
    space = space_file(tmp_path, {"params": {"strategy.params.fast": [10], "strategy.params.slow": [30]}})
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "results.csv").write_text("my,own,results\n")
    (mine / "best.json").write_text('{"mine": 1}\n')
    before = {p.name: p.read_bytes() for p in mine.iterdir()}
    command = ["sweep", str(config), "--space", str(space), "--out", str(mine), "--workers", "1"]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 2, result.output
    assert "not empty (best.json, results.csv) and not a sweep directory (no sweep.json)" in " ".join(result.output.split())
    result = CliRunner().invoke(app, [*command, "--force"])
    assert result.exit_code == 2, result.output
    assert "holds best.json, results.csv, which the sweep writes" in " ".join(result.output.split())
    assert {p.name: p.read_bytes() for p in mine.iterdir()} == before


def test_a_second_sweep_on_a_directory_a_running_sweep_holds_is_refused_naming_its_process(tmp_path: Path) -> None:
    """Two sweeps on one --out both asked and told one Optuna study: one died on 'Cannot tell a COMPLETE trial'."""
    config = write_yaml(tmp_path / "run.yaml", catalog_config())
    space = space_file(tmp_path, {"params": {"strategy.params.fast": [10], "strategy.params.slow": [30]}})
    out = tmp_path / "out"
    out.mkdir()
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert take_lock(fd) is None  # as the running sweep holds it
        result = CliRunner().invoke(app, ["sweep", str(config), "--space", str(space), "--out", str(out),
                                          "--workers", "1"])
    finally:
        os.close(fd)
    assert result.exit_code == 2, result.output
    assert f"in use by another running sweep (pid {os.getpid()} on" in " ".join(result.output.split())
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("path", ["data.start", "data.end"])
def test_space_sweeping_the_data_window_under_walk_forward_exits_2_naming_the_parameter(
    tmp_path: Path, path: str
) -> None:
    """Each fold's window overrode a swept data.start/data.end while the param column showed the swept value."""
    config = write_yaml(tmp_path / "run.yaml", catalog_config())
    space = space_file(tmp_path, {
        "params": {"strategy.params.fast": [5, 10], path: ["2022-02-01", "2022-03-01"]},
        "walk_forward": {"train": "30d", "test": "15d"},
    })
    with pytest.raises(ConfigError, match="space.yaml") as info:
        load_space(space)
    assert f"params.{path}: walk_forward sets data.start and data.end of each fold's trials" in str(info.value)
    out = tmp_path / "o"
    result = CliRunner().invoke(app, ["sweep", str(config), "--space", str(space), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert f"params.{path}: walk_forward sets" in result.output
    assert not out.exists()
    space_file(tmp_path, {"params": {path: ["2022-02-01", "2022-03-01"]}})
    assert len(load_space(space).params) == 1  # without walk_forward the window is the swept value's own


@pytest.mark.parametrize(("bounds", "message"), [
    ({"start": "2022-01-01", "end": "2022-09-01"},
     "fold 5's test window 2022-07-30T00:00:00Z .. 2022-08-29T00:00:00Z has no data: data: no source has a row"),
    ({"start": "2021-10-01", "end": "2022-03-01"},
     "fold 0's train window 2021-10-01T00:00:00Z .. 2021-11-30T00:00:00Z has no data: data: no source has a row"),
])
def test_walk_forward_fold_window_beyond_the_data_exits_2_naming_the_fold_and_leaves_no_directory(
    tmp_path: Path, bounds: dict, message: str
) -> None:
    """Folds past the data's end ran their trials on no bar, stored as ok with every figure 0, and exited 0."""
    config = write_yaml(tmp_path / "run.yaml", file_config(tmp_path))  # bars 2022-01-01 .. 2022-07-20
    space = space_file(tmp_path, {"params": {"strategy.params.fast": [5, 10], "strategy.params.slow": [30]},
                                  "walk_forward": {"train": "60d", "test": "30d", **bounds}})
    out = tmp_path / "o"
    result = CliRunner().invoke(app, ["sweep", str(config), "--space", str(space), "--out", str(out), "--workers", "1"])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert f"space.yaml: walk_forward: {message}" in text and "spans 2022-01-01T04:00:00Z to 2022-07-20" in text, text
    assert not out.exists()


@pytest.mark.timeout(120)
def test_walk_forward_of_more_folds_than_a_sweep_runs_exits_2_counting_them_and_leaves_no_directory(
    tmp_path: Path,
) -> None:
    """Folds times trials past what a sweep runs were started (a test window of 1s over 9 years listed a fold per
    second of the span: 2 GB in a minute)."""
    config = write_yaml(tmp_path / "run.yaml", catalog_config())  # 2022-01-01 .. 2022-07-01: 181 days
    space = space_file(tmp_path, {"params": {"strategy.params.fast": {"low": 1, "high": 6000, "step": 1}},
                                  "walk_forward": {"train": "1d", "test": "1d"}})
    out = tmp_path / "o"
    result = CliRunner().invoke(app, ["sweep", str(config), "--space", str(space), "--out", str(out), "--workers", "1"])
    assert result.exit_code == 2, result.output
    # (181 days - 1 day - 1 day) / 1 day + 1 = 180 folds of 6,000 trials
    assert ("space.yaml: walk_forward: train 1d and test 1d make 180 folds, 1,080,000 trials in all (6,000 a fold), "
            "more than a sweep runs (1,000,000") in " ".join(result.output.split()), result.output
    assert not out.exists()


def test_sweep_with_workers_0_exits_2_and_leaves_no_directory(tmp_path: Path) -> None:
    """--workers 0 was refused only after sweep.json and space.yaml were written into --out."""
    config = write_yaml(tmp_path / "run.yaml", catalog_config())
    space = space_file(tmp_path, {"params": {"strategy.params.fast": [5]}})
    result = CliRunner().invoke(app, ["sweep", str(config), "--space", str(space), "--out", str(tmp_path / "o"),
                                      "--workers", "0"])
    assert result.exit_code == 2, result.output
    assert "--workers must be >= 1, got 0" in result.output
    assert not (tmp_path / "o").exists()


def test_sweep_with_an_address_nobody_listens_on_exits_2_naming_it_and_leaves_out_untouched(tmp_path: Path) -> None:
    """--address 127.0.0.1:PORT with no cluster there hung for minutes in Ray's GCS retries, sweep.json written."""
    config = write_yaml(tmp_path / "run.yaml", catalog_config())
    space = space_file(tmp_path, {"params": {"strategy.params.fast": [5]}})
    out = tmp_path / "o"
    with socket.socket() as held:  # bound, never listening: a connection to it is refused
        held.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{held.getsockname()[1]}"
        done = _sweep_process(config, space, out, address)
    assert done.returncode == 2, done.stderr + done.stdout
    text = " ".join((done.stdout + done.stderr).split())
    assert f"--address {address}: no Ray cluster reachable ({address}: Connection refused" in text
    assert not out.exists()


def test_sweep_with_address_auto_and_ray_address_nobody_listens_on_exits_2_naming_it(tmp_path: Path) -> None:
    """--address auto with RAY_ADDRESS set to a cluster since stopped hung in Ray's GCS retries, --out written."""
    config = write_yaml(tmp_path / "run.yaml", catalog_config())
    space = space_file(tmp_path, {"params": {"strategy.params.fast": [5]}})
    out = tmp_path / "o"
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{held.getsockname()[1]}"
        done = _sweep_process(config, space, out, "auto", RAY_ADDRESS=address)
    assert done.returncode == 2, done.stderr + done.stdout
    text = " ".join((done.stdout + done.stderr).split())
    assert f"--address auto is RAY_ADDRESS={address}: --address {address}: no Ray cluster reachable" in text
    assert not out.exists()


def _raylets_running() -> bool:
    """Whether a raylet runs on this machine: ``--address auto`` without RAY_ADDRESS would join its cluster."""
    from ray._private.services import find_gcs_addresses

    return bool(find_gcs_addresses())


@pytest.mark.parametrize("recorded", [False, True])
def test_sweep_with_address_auto_and_no_cluster_exits_2_and_leaves_out_as_it_was(tmp_path: Path,
                                                                                  recorded: bool) -> None:
    """--address auto, RAY_ADDRESS unset and no cluster: a ConnectionError traceback (exit 1), sweep.json written.

    Ray's lookup is pointed at an empty temp directory (RAY_TMPDIR), or at one whose address file
    names a closed port (a cluster killed without ``ray stop``); it also joins any raylet running
    on this machine, so the test is skipped while one does.
    """
    config = write_yaml(tmp_path / "run.yaml", catalog_config())
    space = space_file(tmp_path, {"params": {"strategy.params.fast": [5]}})
    out = tmp_path / "o"
    out.mkdir()
    ray_tmp = tmp_path / "ray_tmp"
    (ray_tmp / "ray").mkdir(parents=True)
    if _raylets_running():
        pytest.skip("a Ray cluster runs on this machine: --address auto would join it")
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{held.getsockname()[1]}"
        if recorded:
            (ray_tmp / "ray" / "ray_current_cluster").write_text(address)
        done = _sweep_process(config, space, out, "auto", RAY_ADDRESS="", RAY_TMPDIR=str(ray_tmp))
    if done.returncode != 2 and _raylets_running():
        pytest.skip("a Ray cluster started on this machine during the run (another test's): --address auto joined it")
    assert done.returncode == 2, done.stderr + done.stdout
    text = " ".join((done.stdout + done.stderr).split())
    if recorded:
        assert f"--address auto found {address} (RAY_ADDRESS is not set): --address {address}: no Ray cluster " \
               "reachable" in text
    else:
        assert "--address auto: no running Ray cluster found (RAY_ADDRESS is not set, no " \
               f"{ray_tmp / 'ray' / 'ray_current_cluster'} and no raylet on this machine)" in text
    assert list(out.iterdir()) == []


def _sweep_process(config: Path, space: Path, out: Path, address: str, **env: str) -> subprocess.CompletedProcess:
    """``tradebus sweep ... --address ADDRESS`` in a subprocess; a test failure when it has not ended in 90 s."""
    command = [sys.executable, "-m", "tradebus.cli", "sweep", str(config), "--space", str(space),
               "--out", str(out), "--address", address]
    try:
        return subprocess.run(command, env={**os.environ, "PYTHONPATH": str(REPO), **env}, capture_output=True,
                              text=True, timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail(f"sweep --address {address} still waiting after 90 s")


def test_sweep_with_an_address_without_a_port_exits_2(tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "run.yaml", catalog_config())
    space = space_file(tmp_path, {"params": {"strategy.params.fast": [5]}})
    result = CliRunner().invoke(app, ["sweep", str(config), "--space", str(space), "--out", str(tmp_path / "o"),
                                      "--address", "headnode"])
    assert result.exit_code == 2, result.output
    assert "--address headnode: not an address; give host:port" in " ".join(result.output.split())
    assert not (tmp_path / "o").exists()


def test_sweep_with_workers_and_address_exits_2_instead_of_ignoring_workers(tmp_path: Path) -> None:
    """--workers 4 --address HOST ran on every CPU of the cluster, --workers silently ignored."""
    config = write_yaml(tmp_path / "run.yaml", catalog_config())
    space = space_file(tmp_path, {"params": {"strategy.params.fast": [5]}})
    result = CliRunner().invoke(app, ["sweep", str(config), "--space", str(space), "--out", str(tmp_path / "o"),
                                      "--workers", "4", "--address", "127.0.0.1:1"])
    assert result.exit_code == 2, result.output
    assert "--workers 4 with --address 127.0.0.1:1" in result.output
    assert not (tmp_path / "o").exists()


def test_best_json_lists_the_trials_a_null_objective_leaves_unranked_and_warns_of_them(tmp_path: Path) -> None:
    """Trial 1 had no losing round trip (profit_factor null): best.json named trial 2 without a word about it."""
    from loguru import logger

    from tradebus.sweep.runner import _write_outputs
    from tradebus.sweep.store import TrialStore

    space = load_space(space_file(tmp_path, {"params": {"strategy.params.fast": [3, 5, 8, 13]},
                                             "objectives": {"profit_factor": "maximize"}}))
    store = TrialStore(tmp_path / "trials", space.params)
    for trial, status, value in ((0, "ok", 1.5), (1, "ok", None), (2, "ok", 2.0), (3, "invalid", None)):
        store.write({"trial": trial, "status": status, "profit_factor": value, "error": None},
                    {"strategy.params.fast": [3, 5, 8, 13][trial]})
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING", format="{message}")
    try:
        best = _write_outputs(space, store, tmp_path)
    finally:
        logger.remove(sink)
    data = json.loads((tmp_path / "best.json").read_text())
    assert best is not None and data["trial"] == 2 and data["unranked_trials"] == [1]
    assert len(lines) == 1 and "1 of 4 trials ran with profit_factor null" in lines[0]
    assert "no losing round trip" in lines[0]


@pytest.mark.parametrize(("spec", "message"), [
    # a float range (10.0..30.0) on the int `fast`: every trial TPE asked (17.3, ...) was an invalid config
    ({"low": 10, "high": 30.0}, "params.strategy.params.fast: low 10 is an integer but high 30.0 is not: write every "
                                "bound as an integer for a range of integers, or with a decimal point"),
    ({"low": 10.0, "high": 30, "step": 5}, "params.strategy.params.fast: high 30, step 5 are integers but low 10.0 is "
                                           "not"),
    # log beside a list was dropped without a word: TPE took the values as categories
    ({"values": [5, 10, 20], "log": True}, "params.strategy.params.fast: log: true spaces a range (low, high) "
                                           "logarithmically; a list of values takes exactly its values"),
    # (30 - 10) / 1e-320 overflows to inf: OverflowError: cannot convert float infinity to integer, a traceback
    ({"low": 10.0, "high": 30.0, "step": 1e-320}, "params.strategy.params.fast: step 1e-320 cuts the range 10..30 into "
                                                  "more points than a number can count; use a larger step"),
])
@pytest.mark.parametrize("method", ["grid", "tpe"])
def test_a_range_of_mixed_bounds_a_log_list_or_an_uncountable_step_exits_2_naming_the_parameter(
    tmp_path: Path, spec: dict, message: str, method: str
) -> None:
    config = write_yaml(tmp_path / "run.yaml", catalog_config())
    data = {"method": method, "params": {"strategy.params.slow": [40], "strategy.params.fast": spec}}
    space = space_file(tmp_path, data | ({"trials": 2} if method == "tpe" else {}))
    result = CliRunner().invoke(app, ["sweep", str(config), "--space", str(space), "--out", str(tmp_path / "o"),
                                      "--workers", "1"])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_a_range_with_integer_or_float_bounds_only_keeps_its_type(tmp_path: Path) -> None:
    space = load_space(space_file(tmp_path, {"method": "tpe", "trials": 2, "params": {
        "strategy.params.fast": {"low": 10, "high": 30}, "venue.slippage_bps": {"low": 0.0, "high": 5.0, "log": False},
        "strategy.params.quantity": {"low": 0.05, "high": 1.0, "log": True},
        # a bound with a fraction makes a float range whatever the others are written as
        "venue.fee_bps": {"low": 0.5, "high": 2}, "risk.max_position": {"low": 1, "high": 2, "step": 0.25}}}))
    assert [p.integer for p in space.params] == [True, False, False, False, False]
    assert [p.arrow_type() for p in space.params] == ["int64", "float64", "float64", "float64", "float64"]


def _readme_tpe_space() -> str:
    """The README's TPE space example (the yaml block of its Sweeps section that sets ``method: tpe``)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    sweeps = text[text.index("\n## Sweeps\n"):text.index("\n## Accelerated tier\n")]
    blocks = [b.split("```", 1)[0] for b in sweeps.split("```yaml\n")[1:]]
    (block,) = [b for b in blocks if "method: tpe" in b]
    return block


def _docstring_space() -> str:
    """The example space of :mod:`tradebus.sweep.space`'s docstring, dedented."""
    import textwrap

    import tradebus.sweep.space as module

    doc = module.__doc__ or ""
    body = doc.split("Example::\n\n", 1)[1]
    lines = []
    for line in body.splitlines():
        if line and not line.startswith("    "):
            break
        lines.append(line)
    return textwrap.dedent("\n".join(lines))


@pytest.mark.parametrize("where", ["README", "space.py"])
def test_the_documented_tpe_space_asks_only_points_that_make_a_valid_quickstart_config(
        where: str, tmp_path: Path) -> None:
    # the README's example runs `tradebus sweep configs/quickstart.yaml --space my_tpe.yaml`; a point the
    # sampler may ask that quickstart refuses (a quantity off BTC's 1e-8 lot grid) makes that trial invalid
    import optuna

    from tradebus.config import load_config
    from tradebus.sweep.trial import TrialSpec

    body = _readme_tpe_space() if where == "README" else _docstring_space()
    data = yaml.safe_load(body)
    data.pop("walk_forward", None)  # the folds only window the data
    data.pop("stress", None)
    space = load_space(space_file(tmp_path, data))
    config = REPO / "configs" / "quickstart.yaml"
    sampler = optuna.samplers.RandomSampler(seed=11)
    study = optuna.create_study(sampler=sampler)
    refused = []
    for number in range(40):
        trial = study.ask({p.path: p.distribution() for p in space.params})
        try:
            load_config(config, overrides=TrialSpec(number, str(config), dict(trial.params)).overrides())
        except ConfigError as exc:
            refused.append(f"{trial.params}: {exc}")
        study.tell(trial, 0.0)
    assert not refused, f"{len(refused)} of 40 points refused, e.g. {refused[0]}"


@pytest.mark.parametrize("quote", ["", "'"])
def test_walk_forward_and_stress_times_finer_than_a_microsecond_are_kept_to_the_nanosecond(
    tmp_path: Path, quote: str
) -> None:
    """walk_forward.start/end and a stress variant's flash_crash.at and vol_spike.start were cut to the
    microsecond unsaid (2024-01-01T00:00:00.123456789Z gave ...123456000 ns), then refused; they now keep the
    nanosecond (1,704,067,200,123,456,789), pickled (as a Ray worker gets them) and written back too."""
    import pickle

    from tradebus.config import to_ns
    from tradebus.sweep.stress import _FlashCrashShock, _VolSpikeShock

    moment = f"{quote}2024-01-01T00:00:00.123456789Z{quote}"
    path = tmp_path / "space.yaml"
    path.write_text(
        "params: {strategy.params.fast: [5]}\n"
        f"walk_forward: {{train: 1d, test: 1d, start: {moment}, end: {moment}}}\n"
        "stress:\n"
        f"  - {{name: crash, flash_crash: {{at: {moment}, depth: 0.1}}}}\n"
        f"  - {{name: spike, vol_spike: {{start: {moment}, duration: 1h, factor: 2.0}}}}\n",
        encoding="utf-8",
    )
    ns = 1_704_067_200_123_456_789
    for space in (load_space(path), pickle.loads(pickle.dumps(load_space(path)))):
        assert space.walk_forward is not None and space.stress is not None
        crash, spike = space.stress[0].flash_crash, space.stress[1].vol_spike
        assert crash is not None and spike is not None
        moments = (space.walk_forward.start, space.walk_forward.end, crash.at, spike.start)
        assert [to_ns(m) for m in moments if m is not None] == [ns] * 4
        assert (_FlashCrashShock(crash).start, _VolSpikeShock(spike).start) == (ns, ns)
        assert list(crash.factor(np.array([ns - 1, ns, ns + 43_200_000_000_000]))) == [1.0, 0.9, 0.95]
        dumped = space.model_dump(mode="json")
        assert dumped["walk_forward"]["start"] == dumped["stress"][0]["flash_crash"]["at"] == moment.strip("'")
        assert SweepSpace.model_validate(dumped) == space


def test_walk_forward_and_stress_times_to_the_microsecond_are_kept() -> None:
    space = SweepSpace.model_validate({
        "params": {"strategy.params.fast": [5]},
        "walk_forward": {"train": "1d", "test": "1d", "start": "2024-01-01T00:00:00.123456Z"},
        "stress": [{"name": "crash", "flash_crash": {"at": "2024-01-01T00:00:00.000001Z", "depth": 0.1}}],
    })
    assert space.walk_forward is not None and space.stress is not None
    assert space.walk_forward.start is not None and space.stress[0].flash_crash is not None
    assert space.walk_forward.start.microsecond == 123456
    assert space.stress[0].flash_crash.at.microsecond == 1


def test_walk_forward_folds_over_a_dataset_stamped_to_the_nanosecond_load_as_trial_configs(tmp_path: Path) -> None:
    """Folds over the data span of a catalog whose first row is at ...00.123456789 started at that nanosecond, which
    each trial's data.start (a datetime, to the microsecond) refused: '...123456789Z' is 789 ns past a whole
    microsecond; the trial's data.start now holds it, the first row in the first fold."""
    import pyarrow as pa

    from tradebus.config import parse_config
    from tradebus.data.catalog import Catalog
    from tradebus.data.ingest import import_path
    from tradebus.sweep.trial import TrialSpec
    from tradebus.sweep.walkforward import data_span

    fixtures = REPO / "tests" / "fixtures" / "data"
    import_path(tmp_path, fixtures / "btcusdt-trades.parquet", venue="binance", market="spot", symbol="BTCUSDT",
                kind="trades")
    catalog = Catalog(tmp_path)
    trades = catalog.read("binance", "spot", "BTCUSDT", "trades")
    ts = trades.column("ts_event").to_numpy() + 123_456_789
    for column in ("ts_event", "ts_init"):
        shifted = pa.array(trades.column(column).to_numpy() + 123_456_789, type=pa.int64())
        trades = trades.set_column(trades.schema.get_field_index(column), column, shifted)
    with catalog.writer("binance", "spot", "BTCUSDT", "trades_ns", kind="trades") as writer:
        writer.write(trades)
        writer.commit()
    data = make_config({"catalog": str(tmp_path), "sources": [{"instrument": IID, "dataset": "binance/spot/BTCUSDT/trades_ns"}]})
    config = parse_config(data)
    span = data_span(config)
    fold = folds(WalkForwardSpec(train="10s", test="5s"), span)[0]
    trial = parse_config(apply_overrides(data, TrialSpec(0, "config.yaml", {}, window=fold.window("train")).overrides()))
    assert span == (int(ts[0]), int(ts[-1]) + 1)
    assert trial.data.start_ns == int(ts[0]) and trial.data.end_ns == int(ts[0]) + 10_000_000_000


def test_dates_written_unquoted_in_a_space_run_as_the_same_dates_quoted(tmp_path: Path) -> None:
    """``data.start: [2022-02-01, 2022-03-01T12:00:00Z]`` (YAML dates, as a run config writes data.start) was
    refused with eight lines of 'Input should be a valid boolean/integer/number/string (got datetime.date(...))';
    a date or time of a space's values is taken as its ISO text, the trials as those of the quoted text."""
    from tradebus.sweep.trial import TrialSpec, run_trial

    write_yaml(tmp_path / "run.yaml", file_config(tmp_path, report={"equity_interval": "4h"}))
    unquoted = tmp_path / "unquoted.yaml"
    unquoted.write_text("params:\n  data.start: [2022-02-01, 2022-03-01T12:00:00Z]\n  data.end: 2022-05-01\n",
                        encoding="utf-8")
    quoted = tmp_path / "quoted.yaml"
    quoted.write_text("params:\n  data.start: ['2022-02-01', '2022-03-01T12:00:00Z']\n  data.end: '2022-05-01'\n",
                      encoding="utf-8")
    points, expected = list(load_space(unquoted).grid()), list(load_space(quoted).grid())
    assert points == expected == [{"data.start": s, "data.end": "2022-05-01"} for s in ("2022-02-01", "2022-03-01T12:00:00Z")]
    # each point runs as its own window: the later start replays fewer bars
    first, second = (run_trial(TrialSpec(0, str(tmp_path / "run.yaml"), p, tier="event")) for p in points)
    assert first["status"] == second["status"] == "ok", (first["error"], second["error"])
    assert first["bars"] > second["bars"] > 0


@pytest.mark.parametrize(("values", "message"), [
    ("[[10, 30]]", "params.strategy.params.fast.values: value 0 ([10, 30]) is a list: list the values themselves "
                   "([10, 30], not [[10, 30]]), or give a range ({low: 10, high: 30})"),
    ("[10, null]", "params.strategy.params.fast.values: value 1 is empty (null): give a number, text, true or false, "
                   "or a date"),
    ("[10, {a: 1}]", "params.strategy.params.fast.values: value 1 ({'a': 1}) is not a number, text, true or false, "
                     "or a date"),
])
def test_a_value_that_is_no_scalar_exits_2_in_one_line_naming_the_parameter(tmp_path: Path, values: str,
                                                                           message: str) -> None:
    """``fast: [[10, 30]]`` or ``[10, null]`` was refused with four lines of 'Input should be a valid boolean /
    integer / number / string (got [10, 30])'; one line now says what the value is and what to write."""
    write_yaml(tmp_path / "run.yaml", file_config(tmp_path))
    space = tmp_path / "space.yaml"
    space.write_text(f"params:\n  strategy.params.fast: {values}\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["sweep", str(tmp_path / "run.yaml"), "--space", str(space),
                                      "--out", str(tmp_path / "o"), "--workers", "1"])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert message in text and "valid boolean" not in text and "Traceback" not in text
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("method", ["grid", "tpe"])
def test_a_value_listed_twice_exits_2_naming_both_places(tmp_path: Path, method: str) -> None:
    """``fast: [10, 10, 30]`` (20 meant) ran trial 1 as a copy of trial 0 in a grid, and doubled 10's weight in
    TPE's prior, without a word; it is refused naming the value and where it is listed. True and 1 are not one."""
    write_yaml(tmp_path / "run.yaml", file_config(tmp_path))
    space = write_yaml(tmp_path / "space.yaml", {"method": method, "trials": 4,
                                                 "params": {"strategy.params.fast": [10, 30, 10.0]}})
    result = CliRunner().invoke(app, ["sweep", str(tmp_path / "run.yaml"), "--space", str(space),
                                      "--out", str(tmp_path / "o"), "--workers", "1"])
    assert result.exit_code == 2, result.output
    assert "params.strategy.params.fast.values: value 2 (10.0) is value 0 (10) again" in " ".join(result.output.split())
    assert not (tmp_path / "o").exists()
    assert [p.values for p in load_space(space_file(tmp_path, {"params": {"x": [True, 1, "1"]}})).params] == [[True, 1, "1"]]


def test_a_range_of_whole_number_bounds_on_a_float_field_is_of_floats_unless_integer_is_given(tmp_path: Path) -> None:
    """{low: 0, high: 5} on venue.slippage_bps swept 0, 1, ... 5 only (an integer range), the field a float."""
    from functools import partial

    from optuna.distributions import FloatDistribution, IntDistribution

    from tradebus.config import load_config
    from tradebus.sweep.fields import float_field

    config = load_config(write_yaml(tmp_path / "run.yaml", catalog_config()))
    params = {"venue.slippage_bps": {"low": 0, "high": 5}, "strategy.params.quantity": {"low": 1, "high": 3, "step": 1},
              "initial_cash": {"low": 1000, "high": 2000, "integer": True}, "strategy.params.fast": {"low": 5, "high": 9},
              "strategies.0.params.x": {"low": 1, "high": 2}}  # not a field of this config: left as written
    space = load_space(space_file(tmp_path, {"method": "tpe", "trials": 2, "params": params}), partial(float_field, config))
    kinds = {p.path: (p.integer, p.arrow_type(), type(p.distribution())) for p in space.params}
    assert kinds == {"venue.slippage_bps": (False, "float64", FloatDistribution),
                     "strategy.params.quantity": (False, "float64", FloatDistribution),
                     "initial_cash": (True, "int64", IntDistribution),
                     "strategy.params.fast": (True, "int64", IntDistribution),
                     "strategies.0.params.x": (True, "int64", IntDistribution)}
    assert [type(v) for v in space.params[1].grid_values()] == [float, float, float]
    assert space.params[1].grid_values() == [1.0, 2.0, 3.0]
    grid = space_file(tmp_path, {"params": {"venue.slippage_bps": {"low": 0, "high": 5}}})
    with pytest.raises(ConfigError, match="params.venue.slippage_bps: a grid needs a list of values or a 'step'"):
        load_space(grid, partial(float_field, config))
    assert load_space(space_file(tmp_path, {"method": "tpe", "trials": 2, "params": params})).params[0].integer  # no config


def test_a_float_field_is_read_from_the_config_types_also_inside_a_mapping_or_a_section_left_out(tmp_path: Path) -> None:
    """balances.USD (a dict of floats, the config giving no balances) read as no float field: {low: 1000,
    high: 5000} swept whole numbers only."""
    from tradebus.config import load_config
    from tradebus.sweep.fields import float_field

    config = load_config(write_yaml(tmp_path / "run.yaml", catalog_config()))
    assert config.balances is None and config.annual_borrow_rates is None
    floats = ["balances.USD", "annual_borrow_rates.BTC", "venue.slippage_bps", "risk.max_position",
              "instruments.0.maker_fee", "strategy.params.quantity", "initial_cash"]
    others = ["strategy.params.fast", "risk.max_orders_per_window", "strategy.params.mode",
              "balances", "venue.nope", "strategies.0.params.quantity", "report.equity_interval"]
    assert {p: float_field(config, p) for p in floats + others} == {**dict.fromkeys(floats, True),
                                                                   **dict.fromkeys(others, False)}
    given = load_config(write_yaml(tmp_path / "given.yaml", catalog_config(balances={"USD": 1000.0, "BTC": 0.0})))
    assert float_field(given, "balances.USD") and float_field(given, "balances.BTC")


def test_a_member_of_a_union_left_out_is_a_float_only_if_no_arm_types_it_otherwise() -> None:
    """A section typed as a discriminated union of models (a strategy's sizing: one arm with amount: float, the
    other amount: int), left out by the config, was typed by whichever arm its set of arms yielded first, so
    float_field's answer changed with where the classes sat in memory: the arms that have the member now give the
    union of their types, a float only where none is int. The pair is drawn so that the float arm comes first."""
    from typing import Annotated, Literal, Optional, Union

    from pydantic import BaseModel, Field, create_model

    from tradebus.sweep.fields import _kinds, _member

    for n in range(64):
        fixed = create_model(f"Fixed{n}", kind=(Literal["fixed"], "fixed"), amount=(float, 1.0), cap=(float, 2.0))
        vol = create_model(f"Vol{n}", kind=(Literal["vol"], "vol"), amount=(int, 1), cap=(float, 3.0))
        sizing = Optional[Annotated[Union[fixed, vol], Field(discriminator="kind")]]  # noqa: UP007
        if next(iter(_kinds(sizing) - {type(None)})) is fixed:
            break
    else:
        pytest.skip("no draw put the float arm first")
    params = create_model("Params", sizing=(sizing, None))
    assert issubclass(params, BaseModel)
    assert _kinds(_member(_member(params, "sizing"), "amount")) == {float, int}
    assert _kinds(_member(_member(params, "sizing"), "cap")) == {float}
    assert _member(_member(params, "sizing"), "nope") is None
    assert _kinds(_member(_member(params, "sizing"), "kind")) == {Literal["fixed"], Literal["vol"]}
