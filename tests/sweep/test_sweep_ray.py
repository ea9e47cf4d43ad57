"""Sweeps on a real local Ray runtime (one per module): grid, TPE, determinism, resume, walk-forward, stress."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from loguru import logger
from sweep_helpers import CATALOG, IID, REPO, catalog_config, file_config, make_config, write_yaml
from typer.testing import CliRunner

from tests.reaped import reaped
from tradebus.cli import app, run_backtest
from tradebus.data.catalog import Catalog
from tradebus.errors import ConfigError, TradebusError
from tradebus.sweep import runner
from tradebus.sweep.executor import RayExecutor
from tradebus.sweep.runner import STRESS_KEYS, run_sweep
from tradebus.sweep.space import load_space
from tradebus.sweep.store import TrialStore
from tradebus.sweep.trial import TIMING_COLUMNS, TrialSpec, override_text, run_trial

TPE_SPACE = {
    "method": "tpe", "seed": 11, "trials": 8, "batch": 4,
    "objectives": {"sharpe": "maximize", "max_drawdown": "minimize"},
    "params": {"strategy.params.fast": {"low": 3, "high": 15}, "strategy.params.slow": {"low": 20, "high": 60, "step": 5},
               "venue.slippage_bps": {"low": 0.0, "high": 5.0}},
}


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    import ray

    context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield context.address_info["address"]
    ray.shutdown()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("sweep")
    write_yaml(directory / "run.yaml", catalog_config())
    write_yaml(directory / "tpe.yaml", TPE_SPACE)
    return directory


@pytest.fixture(scope="module")
def tpe_reference(ray_address: str, workdir: Path) -> Path:
    out = workdir / "tpe-a"
    run_sweep(workdir / "run.yaml", workdir / "tpe.yaml", out)
    return out


def results(out: Path) -> pa.Table:
    """The stored trials of a sweep without the timing columns."""
    paths = sorted((out / "trials").glob("trial-*.parquet"))
    table = pa.concat_tables([pq.read_table(p) for p in paths]).sort_by("trial")
    return table.drop_columns(list(TIMING_COLUMNS))


def csv_bytes(table: pa.Table) -> bytes:
    return table.to_pandas().to_csv(index=False).encode()


def test_executor_accepts_a_running_clusters_address_also_through_the_loopback_host(ray_address: str) -> None:
    """The reachability check of --address lets a live GCS through, as ray.init reaches it (loopback included)."""
    port = ray_address.rpartition(":")[2]
    for address in (ray_address, f"127.0.0.1:{port}", f"localhost:{port}"):
        assert RayExecutor(address=address).address == address


def test_executor_accepts_address_auto_when_a_cluster_runs_on_this_machine(ray_address: str,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Without RAY_ADDRESS, auto finds the raylet of this module's runtime and lets its live GCS through."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert RayExecutor(address="auto").address == "auto"


def test_quick_trials_share_tasks_and_each_comes_back_once_with_its_own_row(ray_address: str, workdir: Path) -> None:
    """Trials of a few milliseconds run several to a Ray task; every spec gets its own row, as in-process."""
    specs = [TrialSpec(n, str(workdir / "run.yaml"), {"strategy.params.fast": 3 + n % 9, "strategy.params.slow": 40},
                       tier="accelerated") for n in range(40)]  # fmt: skip
    with RayExecutor() as executor:
        assert executor.workers == 2
        got = list(executor.run(specs))
    assert sorted(spec.number for spec, _ in got) == list(range(40))
    assert all(row["trial"] == spec.number for spec, row in got)
    tasks = {row["wall_s"] for _, row in got}  # one submission-to-result time per task
    # after the first tasks, 0.1 s of trials per task (capped to leave both workers a share): how many that is
    # depends on the machine's load (20 tasks on a loaded one), one task per trial would be 40
    assert len(tasks) < len(specs)
    drop = ("worker_s", "worker_cpu_s")
    for spec, row in got[::13]:
        alone = run_trial(spec)
        assert {k: v for k, v in row.items() if k not in (*drop, "wall_s")} == {k: v for k, v in alone.items() if k not in drop}


def test_grid_sweep_writes_a_file_per_trial_and_agrees_with_plain_backtests(ray_address: str, workdir: Path) -> None:
    space = write_yaml(workdir / "grid.yaml", {
        "params": {"strategy.params.fast": [5, 10, 30], "strategy.params.slow": [20, 40]},
        "stress": [{"name": "baseline"}, {"name": "costs_x2", "costs": 2},
                   {"name": "crash", "flash_crash": {"at": "2022-03-01", "depth": 0.3, "recovery": "2d"}}],
    })
    out = workdir / "grid"
    seen: list[int] = []
    result = run_sweep(workdir / "run.yaml", space, out, on_trial=lambda row: seen.append(row["trial"]))
    assert sorted(seen) == list(range(6)) and result.ran == 6 and result.skipped == 0
    assert sorted(p.name for p in (out / "trials").iterdir()) == [f"trial-{n:06d}.parquet" for n in range(6)]
    table = pd.read_csv(out / "results.csv")
    assert list(table["trial"]) == list(range(6))
    assert list(zip(table["param.strategy.params.fast"], table["param.strategy.params.slow"], strict=True)) == [
        (5, 20), (5, 40), (10, 20), (10, 40), (30, 20), (30, 40)]
    invalid = table[table["status"] == "invalid"]
    assert list(invalid["trial"]) == [4] and invalid["error"].str.contains("must be smaller than slow").all()
    ok = table[table["status"] == "ok"]
    best = json.loads((out / "best.json").read_text())
    assert best["trial"] == int(ok.loc[ok["sharpe"].idxmax(), "trial"])
    # The best trial's figures are those of `tradebus backtest --set ...` with the same values.
    overrides = [override_text(k, v) for k, v in best["params"].items()]
    _, metrics, _ = run_backtest(workdir / "run.yaml", workdir / "plain", overrides=overrides)
    for key in ("total_return", "sharpe", "max_drawdown", "fills", "fees_paid"):
        assert best["metrics"][key] == metrics[key], key
    stress = json.loads((out / "stress.json").read_text())
    assert [s["variant"] for s in stress] == ["baseline", "costs_x2", "crash"]
    assert all(set(s) == {"variant", *STRESS_KEYS} and isinstance(s["fills"], int) for s in stress)
    assert stress[0]["total_return"] == metrics["total_return"]
    assert stress[1]["fills"] == stress[0]["fills"] and stress[1]["total_return"] < stress[0]["total_return"]
    assert stress[2]["total_return"] != stress[0]["total_return"]
    # Re-running the sweep runs only the trials whose file is missing.
    first = results(out)
    for n in (1, 3):
        (out / "trials" / f"trial-{n:06d}.parquet").unlink()
    again = run_sweep(workdir / "run.yaml", space, out)
    assert (again.ran, again.skipped) == (2, 4)
    assert csv_bytes(results(out)) == csv_bytes(first)


def test_results_csv_writes_a_float_parameter_of_a_whole_value_as_a_float(ray_address: str, workdir: Path) -> None:
    """results.csv wrote venue.slippage_bps 2.0 and quantity 1.0 as ``2`` and ``1`` (pyarrow's CSV writer), so
    pandas read the columns as int64 where best.json says 2.0; it writes floats as the run files do (repr)."""
    space = write_yaml(workdir / "whole.yaml", {
        "params": {"strategy.params.quantity": [1.0], "venue.slippage_bps": [2.0, 3.0],
                   "strategy.params.fast": [5, 10]}})
    out = workdir / "whole"
    run_sweep(workdir / "run.yaml", space, out)
    table = pd.read_csv(out / "results.csv")
    stored = results(out).to_pandas()
    for column in ("param.strategy.params.quantity", "param.venue.slippage_bps"):
        assert table[column].dtype == "float64", column
    assert table["param.strategy.params.fast"].dtype == "int64"
    text = pd.read_csv(out / "results.csv", dtype=str, keep_default_na=False)
    assert list(text["param.strategy.params.quantity"]) == ["1.0"] * 4
    assert list(text["param.venue.slippage_bps"]) == ["2.0", "2.0", "3.0", "3.0"]
    assert list(text["status"]) == ["ok"] * 4 and list(text["error"]) == [""] * 4  # a null is an empty cell
    for column in ("total_return", "sharpe", "fees_paid", "final_equity"):  # each float reads back to the stored one
        assert list(text[column]) == [repr(v) for v in stored[column]], column
    best = json.loads((out / "best.json").read_text())
    assert best["params"]["venue.slippage_bps"] == table.loc[best["trial"], "param.venue.slippage_bps"]


def test_tpe_same_space_and_seed_give_byte_identical_results(ray_address: str, workdir: Path, tpe_reference: Path) -> None:
    again = workdir / "tpe-b"
    run_sweep(workdir / "run.yaml", workdir / "tpe.yaml", again)
    a, b = results(tpe_reference), results(again)
    assert a.num_rows == 8 and (pd.Series(a.column("status").to_pylist()) == "ok").sum() >= 6
    assert csv_bytes(a) == csv_bytes(b)
    best = json.loads((tpe_reference / "best.json").read_text())
    assert best["pareto_trials"] and best["trial"] in best["pareto_trials"]
    other = write_yaml(workdir / "tpe-seed.yaml", {**TPE_SPACE, "seed": 12})
    run_sweep(workdir / "run.yaml", other, workdir / "tpe-c")
    assert results(workdir / "tpe-c").column("param.venue.slippage_bps") != a.column("param.venue.slippage_bps")


def test_tpe_study_in_a_journal_file_and_an_earlier_sqlite_study_goes_on_in_sqlite(
    ray_address: str, workdir: Path, tpe_reference: Path
) -> None:
    import optuna

    assert (tpe_reference / "optuna.log").is_file() and not (tpe_reference / "optuna.db").exists()
    legacy = workdir / "tpe-legacy"
    legacy.mkdir()
    meta = {"config": str((workdir / "run.yaml").resolve()), "method": "tpe", "seed": 11,
            "space_fingerprint": load_space(workdir / "tpe.yaml").fingerprint()}  # sweep.json of that version
    (legacy / "sweep.json").write_text(json.dumps(meta))
    optuna.create_study(storage=f"sqlite:///{legacy / 'optuna.db'}", study_name="sweep",
                        directions=["maximize", "minimize"])  # fmt: skip
    run_sweep(workdir / "run.yaml", workdir / "tpe.yaml", legacy)
    assert not (legacy / "optuna.log").exists()
    study = optuna.load_study(storage=f"sqlite:///{legacy / 'optuna.db'}", study_name="sweep")
    assert len(study.trials) == 8
    assert csv_bytes(results(legacy)) == csv_bytes(results(tpe_reference))


@pytest.mark.slow
def test_killed_sweep_resumes_skipping_finished_trials_with_the_same_results(
    ray_address: str, workdir: Path, tpe_reference: Path
) -> None:
    out = workdir / "tpe-killed"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "tradebus.cli", "sweep", str(workdir / "run.yaml"), "--space",
               str(workdir / "tpe.yaml"), "--out", str(out), "--address", ray_address]
    log = workdir / "killed.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    with reaped(process):
        deadline = time.monotonic() + 120
        while not list((out / "trials").glob("trial-*.parquet")) and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait()
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / "trials").glob("trial-*.parquet")}
    assert 1 <= len(before) < 8, "the sweep was not interrupted mid-way"
    result = run_sweep(workdir / "run.yaml", workdir / "tpe.yaml", out)
    assert result.skipped == len(before) and result.ran == 8 - len(before)
    for name, (mtime, data) in before.items():
        path = out / "trials" / name
        assert (path.stat().st_mtime_ns, path.read_bytes()) == (mtime, data)
    assert csv_bytes(results(out)) == csv_bytes(results(tpe_reference))


def test_tpe_values_of_a_stepped_float_range_are_the_grid_points_also_when_resumed(
    ray_address: str, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Optuna draws 0.05 + 12 * 0.05 = 0.6500000000000001 of 0.05..1.0 step 0.05: the trial ran, and results.csv
    and best.json listed, that float; they now take the grid's 0.65, and Optuna's study keeps its own draws."""
    import optuna

    space = write_yaml(workdir / "stepped.yaml", {
        "method": "tpe", "seed": 1, "trials": 6, "batch": 3, "objectives": {"sharpe": "maximize"},
        "params": {"venue.slippage_bps": {"low": 0.05, "high": 1.0, "step": 0.05}}})
    grid = [k / 20 for k in range(1, 21)]  # the nearest floats to 0.05, 0.1, ..., 1.0
    out = workdir / "stepped"
    run_sweep(workdir / "run.yaml", space, out)
    study = optuna.load_study(storage=runner._study_storage(out), study_name="sweep")
    drawn = [t.params["venue.slippage_bps"] for t in study.trials]
    assert len(drawn) == 6 and set(drawn) - set(grid), "no draw off the grid: the seed tests nothing"
    table = pd.read_csv(out / "results.csv").drop(columns=list(TIMING_COLUMNS))
    column = "param.venue.slippage_bps"
    assert list(table[column]) == [grid[round(v * 20) - 1] for v in drawn]
    assert set(pd.read_csv(out / "results.csv", dtype=str)[column]) <= {repr(v) for v in grid}  # 0.65, as written
    best = json.loads((out / "best.json").read_text())
    assert best["params"][column.removeprefix("param.")] == table.loc[best["trial"], column]
    # A sweep stopped inside the second round, in the ask of a trial drawn off the grid, resumes the study with the
    # same trials, and says it asked that trial's grid point again (it said Optuna's 0.6500000000000001).
    number = next((n for n in range(3, 6) if drawn[n] not in grid), None)
    assert number is not None, "no draw of the second round off the grid: the seed tests nothing"
    cut = workdir / "stepped-cut"
    with monkeypatch.context() as patch:
        patch.setattr(runner, "_study_storage", lambda directory: _storage_cut_short(directory, number, 0))
        with pytest.raises(_AskCutShort):
            run_sweep(workdir / "run.yaml", space, cut)
    said: list[str] = []
    sink = logger.add(lambda m: said.append(str(m)), level="INFO", format="{message}",
                      filter=lambda r: "cut short" in r["message"])  # fmt: skip
    try:
        assert run_sweep(workdir / "run.yaml", space, cut).ran == 3
    finally:
        logger.remove(sink)
    point = grid[round(drawn[number] * 20) - 1]
    assert said == [f"trial {number} was cut short while being asked: venue.slippage_bps={point} asked again\n"]
    pd.testing.assert_frame_equal(pd.read_csv(cut / "results.csv").drop(columns=list(TIMING_COLUMNS)), table)
    assert (cut / "best.json").read_bytes() == (out / "best.json").read_bytes()


class _AskCutShort(Exception):
    """Raised by the storage of :func:`_storage_cut_short` where a killed driver would have stopped."""


def _storage_cut_short(directory: Path, trial: int, stored: int) -> Any:
    """The sweep's journal storage, raising when ``trial`` has ``stored`` parameters and is given another.

    As a driver killed inside the trial's ``study.ask`` leaves the study.
    """
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    class StorageCutShort(JournalStorage):
        def set_trial_param(self, trial_id: int, param_name: str, *args: Any) -> None:
            frozen = self.get_trial(trial_id)
            if frozen.number == trial and len(frozen.params) == stored:
                raise _AskCutShort(f"trial {trial} cut short after {list(frozen.params)}")
            super().set_trial_param(trial_id, param_name, *args)

    path = str(directory / "optuna.log")
    return StorageCutShort(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path, grace_period=5)))


@pytest.mark.parametrize(("cut", "stored"), [(6, 1), (12, 1), (12, 0)],
                         ids=["random-startup", "tpe", "tpe-no-parameter"])
def test_tpe_sweep_cut_short_inside_a_trials_ask_resumes_with_the_uninterrupted_runs_parameters(
    ray_address: str, workdir: Path, monkeypatch: pytest.MonkeyPatch, cut: int, stored: int
) -> None:
    """A driver stopped with ``stored`` of a trial's parameters stored: the resumed sweep asks the rest as it would have.

    Trial 6 is asked by the random sampler of Optuna's first 10 trials, trial 12 by TPE.
    """
    space = write_yaml(workdir / "tpe15.yaml", {**TPE_SPACE, "seed": 5, "trials": 15, "batch": 5})
    reference = workdir / "tpe15"
    if not reference.exists():
        run_sweep(workdir / "run.yaml", space, reference)
    out = workdir / f"tpe15-cut{cut}-{stored}"
    with monkeypatch.context() as patch:
        patch.setattr(runner, "_study_storage", lambda directory: _storage_cut_short(directory, cut, stored))
        with pytest.raises(_AskCutShort):
            run_sweep(workdir / "run.yaml", space, out)
    assert len(list((out / "trials").glob("trial-*.parquet"))) == cut - cut % 5  # the rounds before its own
    result = run_sweep(workdir / "run.yaml", space, out)
    assert (result.ran, result.skipped) == (15 - cut + cut % 5, cut - cut % 5)
    expected = pd.read_csv(reference / "results.csv").drop(columns=list(TIMING_COLUMNS))
    got = pd.read_csv(out / "results.csv").drop(columns=list(TIMING_COLUMNS))
    assert got.filter(like="param.").notna().all().all()
    pd.testing.assert_frame_equal(got, expected)
    assert (out / "best.json").read_bytes() == (reference / "best.json").read_bytes()


def test_cli_stress_flag_runs_the_default_variants_with_the_best_parameters(ray_address: str, workdir: Path) -> None:
    space = write_yaml(workdir / "one.yaml", {"params": {"strategy.params.fast": [10], "strategy.params.slow": [30]}})
    out = workdir / "cli-stress"
    result = CliRunner().invoke(app, ["sweep", str(workdir / "run.yaml"), "--space", str(space), "--out", str(out),
                                      "--stress"])
    assert result.exit_code == 0, result.output
    assert "stress costs_x5" in result.output
    stress = json.loads((out / "stress.json").read_text())
    assert [s["variant"] for s in stress] == ["baseline", "costs_x2", "costs_x5", "latency_x2", "latency_x5",
                                              "flash_crash_20pct", "vol_spike_x3_7d"]
    best = json.loads((out / "best.json").read_text())
    assert stress[0]["total_return"] == best["metrics"]["total_return"]
    assert stress[0]["total_return"] > stress[1]["total_return"] > stress[2]["total_return"]
    # The config has no latency: its multipliers change nothing, and the report says so.
    note = "latency x2 changes nothing: the venue's latency is zero (set venue.latency_ns)"
    assert stress[3] == {**stress[0], "variant": "latency_x2", "note": note}
    assert [("note" in s) for s in stress] == [False, False, False, True, True, False, False]
    assert f"stress variant 'latency_x2': {note}" in result.output  # the warning
    table = re.sub(r"[│\s]+", " ", result.output.split("stress latency_x2", 1)[1])  # the summary's cells, unwrapped
    assert table.split("stress latency_x5", 1)[0].strip().endswith(f"({note})")


def test_a_default_stress_variant_the_config_cannot_take_is_named_in_stress_json_and_the_summary(
    ray_address: str, workdir: Path
) -> None:
    """costs x5 on a taker fee of 0.025 is 0.125, past the config's bound 0.1: the default variant was left out
    and said only in an INFO log line, stress.json and the summary showed four variants and no reason."""
    config = catalog_config()
    config["instruments"][0]["taker_fee"] = 0.025
    run = write_yaml(workdir / "fees" / "run.yaml", config)
    space = write_yaml(workdir / "fees" / "one.yaml", {"params": {"strategy.params.fast": [10], "strategy.params.slow": [30]}})
    out = workdir / "fees" / "stress"
    result = CliRunner().invoke(app, ["sweep", str(run), "--space", str(space), "--out", str(out), "--stress"])
    assert result.exit_code == 0, result.output
    stress = json.loads((out / "stress.json").read_text())
    assert [s["variant"] for s in stress] == ["baseline", "costs_x2", "latency_x2", "latency_x5", "flash_crash_20pct",
                                              "vol_spike_x3_7d", "costs_x5"]
    why = ("left out: costs x5 makes an invalid config:\n"
           "  instruments.0.taker_fee: Input should be less than 0.1 (got 0.125)")
    assert stress[-1] == {"variant": "costs_x5", **dict.fromkeys(STRESS_KEYS), "note": why}
    assert "stress costs_x5" in result.output and "left out: costs x5 makes an invalid config" in result.output


def test_cli_tier_says_which_tier_ran_and_both_tiers_store_the_same_trials(ray_address: str, workdir: Path) -> None:
    space = write_yaml(workdir / "tier.yaml", {"params": {"strategy.params.fast": [5, 10], "strategy.params.slow": [30]}})
    tables = {}
    for tier in ("accelerated", "event"):
        out = workdir / f"cli-tier-{tier}"
        result = CliRunner().invoke(app, ["sweep", str(workdir / "run.yaml"), "--space", str(space), "--out", str(out),
                                          "--tier", tier])
        assert result.exit_code == 0, result.output
        assert f"{tier} (2 trials)" in result.output
        table = pd.read_csv(out / "results.csv")
        assert list(table["tier"]) == [tier, tier] and list(table["status"]) == ["ok", "ok"]
        tables[tier] = table.drop(columns=["tier", *TIMING_COLUMNS])
    pd.testing.assert_frame_equal(tables["accelerated"], tables["event"])


def test_a_sweep_resumed_with_another_tier_says_so_naming_both_and_records_it(ray_address: str, workdir: Path) -> None:
    """A sweep begun with --tier accelerated and resumed with --tier event ran its last trial in the event tier
    without a word; now the resume warns naming both tiers and sweep.json records each run's tier."""
    from loguru import logger

    space = write_yaml(workdir / "tier-resume.yaml", {"params": {"strategy.params.fast": [5, 10],
                                                                 "strategy.params.slow": [30]}})
    out = workdir / "tier-resume"
    run_sweep(workdir / "run.yaml", space, out, tier="accelerated")
    (out / "trials" / "trial-000001.parquet").unlink()  # as a sweep stopped after its first trial leaves it
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING", format="{message}")
    try:
        result = run_sweep(workdir / "run.yaml", space, out, tier="event")
    finally:
        logger.remove(sink)
    assert (result.ran, result.skipped, result.tiers) == (1, 1, {"event": 1})
    said = [line for line in lines if "resumed with tier" in line]
    assert said == [f"{out}: resumed with tier event, its earlier runs asked accelerated: the trials run now run in "
                    "event, those run before in theirs (both give the same fills and metrics; results.csv's tier "
                    "column says which ran each)\n"], lines
    assert list(pd.read_csv(out / "results.csv")["tier"]) == ["accelerated", "event"]
    assert json.loads((out / "sweep.json").read_text())["tiers"] == ["accelerated", "event"]
    lines.clear()
    sink = logger.add(lines.append, level="WARNING", format="{message}")
    try:
        run_sweep(workdir / "run.yaml", space, out, tier="accelerated")  # a tier it ran before: nothing new to say
    finally:
        logger.remove(sink)
    assert not [line for line in lines if "resumed with tier" in line], lines


def test_a_sweep_stopped_with_ctrl_c_says_what_is_saved_and_how_to_resume(ray_address: str, workdir: Path) -> None:
    """Ctrl-C during tradebus sweep exited 130 with nothing on stderr; now it says how many trials are saved where
    and that the same command resumes it."""
    out = workdir / "tpe-interrupted"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "tradebus.cli", "sweep", str(workdir / "run.yaml"), "--space",
               str(workdir / "tpe.yaml"), "--out", str(out), "--address", ray_address]
    process, stderr, saved = _interrupted(command, env, out, signal.SIGINT)
    assert process.returncode == 130, stderr
    said = " ".join(stderr.split())
    assert (f"sweep interrupted: {saved} of 8 trials done, each saved in {out}; run the same command again to "
            "resume it (finished trials are kept)") in said, stderr
    assert "Traceback" not in stderr


def _interrupted(
    command: list[str], env: dict[str, str], out: Path, sig: signal.Signals
) -> tuple[subprocess.Popen[str], str, int]:
    """Run the sweep ``command``, send it ``sig`` once its first trial is saved under ``out``; the process, its
    stderr and the trials saved."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    with reaped(process):
        deadline = time.monotonic() + 120
        while not list((out / "trials").glob("trial-*.parquet")) and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()[1]
            time.sleep(0.01)
        process.send_signal(sig)
        _, stderr = process.communicate(timeout=120)
    return process, stderr, len(list((out / "trials").glob("trial-*.parquet")))


def test_a_sweep_on_its_own_local_runtime_stopped_with_sigterm_exits_143_saying_what_is_saved(
    ray_address: str, workdir: Path
) -> None:
    """kill (SIGTERM) of a sweep on its own local runtime exited 15 with only Ray's 'SIGTERM received' on stderr:
    ray.init had replaced the CLI's handler with sys.exit(15). Now it stops as documented, and resumes."""
    space = write_yaml(workdir / "grid40.yaml", {"params": {"strategy.params.fast": {"low": 5, "high": 44, "step": 1},
                                                            "strategy.params.slow": [60]}})
    out = workdir / "grid-terminated"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "tradebus.cli", "sweep", str(workdir / "run.yaml"), "--space", str(space),
               "--out", str(out), "--workers", "1"]
    process, stderr, saved = _interrupted(command, env, out, signal.SIGTERM)
    assert process.returncode == 143, stderr
    assert (f"sweep interrupted: {saved} of 40 trials done, each saved in {out}; run the same command again to "
            "resume it (finished trials are kept)") in " ".join(stderr.split()), stderr
    assert 1 <= saved < 40, "the sweep was not interrupted mid-way"
    result = run_sweep(workdir / "run.yaml", space, out)
    assert (result.skipped, result.ran) == (saved, 40 - saved)
    assert results(out).column("trial").to_pylist() == list(range(40))


def test_walk_forward_optimises_each_train_window_and_stitches_the_test_windows(ray_address: str, workdir: Path) -> None:
    space = write_yaml(workdir / "wf.yaml", {
        "params": {"strategy.params.fast": [5, 10], "strategy.params.slow": [30]},
        "objectives": {"total_return": "maximize"},
        "walk_forward": {"train": "60d", "test": "30d"},
    })
    out = workdir / "wf"
    result = run_sweep(workdir / "run.yaml", space, out)
    folds = pd.read_csv(out / "walk_forward" / "folds.csv")
    assert list(folds["fold"]) == [0, 1, 2, 3] and result.total == 8  # 181 days: 60 + 30 + 3 * 30 <= 181
    assert list(folds["train_end"]) == ["2022-03-02T00:00:00Z", "2022-04-01T00:00:00Z", "2022-05-01T00:00:00Z",
                                        "2022-05-31T00:00:00Z"]
    parsed = load_space(space)
    for fold in folds.itertuples():
        trials = TrialStore(out / "walk_forward" / f"fold-{fold.fold:02d}" / "trials", parsed.params).table().to_pandas()
        assert fold.best_trial == int(trials.loc[trials["total_return"].idxmax(), "trial"])
    metrics = json.loads((out / "walk_forward" / "metrics.json").read_text())
    assert metrics["total_return"] == pytest.approx(math.prod(1 + r for r in folds["test_total_return"]) - 1, rel=1e-9)
    equity = pd.read_csv(out / "walk_forward" / "equity.csv")
    assert equity["ts"].is_monotonic_increasing and set(equity["fold"]) == {0, 1, 2, 3}
    assert equity["equity"].iloc[-1] == pytest.approx(metrics["final_equity"])
    first_ts = equity.groupby("fold")["ts"].min()
    assert first_ts.iloc[1] >= pd.Timestamp("2022-03-02T00:00:00Z").value
    # the layout the README gives a walk-forward sweep: no results.csv or best.json at the top
    assert sorted(p.name for p in out.iterdir()) == ["space.yaml", "sweep.json", "walk_forward"]
    assert sorted(p.name for p in (out / "walk_forward" / "fold-00").iterdir()) == ["trials"]
    readme = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    assert ("the sweep directory holds `walk_forward/` instead of `trials/`, `optuna.log`, `results.csv` and "
            "`best.json` — `fold-NN/trials/` (and `fold-NN/optuna.log`) per fold, `folds.csv`") in readme
    # its metrics.json and equity.csv are no run's: tradebus report said 'equity.csv: missing column(s) ...'
    report = CliRunner().invoke(app, ["report", str(out / "walk_forward")])
    assert report.exit_code == 2 and not (out / "walk_forward" / "tearsheet.html").exists()
    assert (f"{out / 'walk_forward'}: a walk-forward sweep's stitched test windows (folds.csv), not a run directory"
            in " ".join(report.output.split())), report.output


def test_walk_forward_summary_says_its_best_trial_is_the_last_folds_on_its_train_window(
        ray_address: str, workdir: Path) -> None:
    """The summary printed 'best trial 0: strategy.params.fast=5' and its total_return beside the walk-forward
    figures, as if the sweep's best over all the data: it is fold 3's best trial (a number of that fold's own
    trials) and its figures are of fold 3's train window, which folds.csv's train_total_return holds."""
    space = write_yaml(workdir / "wf-cli.yaml", {
        "params": {"strategy.params.fast": [5, 10], "strategy.params.slow": [30]},
        "objectives": {"total_return": "maximize"},
        "walk_forward": {"train": "60d", "test": "30d"},
    })
    out = workdir / "wf-cli"
    result = CliRunner().invoke(app, ["sweep", str(workdir / "run.yaml"), "--space", str(space), "--out", str(out)])
    assert result.exit_code == 0, result.output
    last = pd.read_csv(out / "walk_forward" / "folds.csv").iloc[-1]
    cells = re.sub(r"[│┃\s]+", " ", result.output)
    assert (f" best trial (fold {last.fold}'s train window) {last.best_trial}: "
            f"strategy.params.fast={last['param.strategy.params.fast']}") in cells, cells
    assert f" total_return {last.train_total_return:,.4f} " in cells, cells



@pytest.mark.parametrize(("config", "space", "message"), [
    (catalog_config(end="2022-01-20"), {"params": {"strategy.params.fast": [5, 10], "strategy.params.slow": [30]}},
     "of 2 trials, 2 ran with sharpe null or not finite; annualised metrics are null for a run under 30 days"),
    (catalog_config(), {"method": "tpe", "trials": 2, "batch": 2,
                        "params": {"strategy.params.fast": {"low": 50, "high": 60}, "strategy.params.slow": [10]}},
     "of 2 trials, 2 invalid; trial 0: invalid config: strategy.params: fast"),
    (catalog_config(), {"params": {"strategy.params.fast": [5]}, "walk_forward": {"train": "20d", "test": "30d"}},
     "of 5 trials, 5 ran with sharpe null or not finite"),  # 5 folds of one trial
])
def test_sweep_where_no_trial_has_an_objective_value_exits_2_saying_why(
    ray_address: str, tmp_path: Path, config: dict, space: dict, message: str
) -> None:
    """Every trial invalid or with a null Sharpe: the sweep named no best trial and exited 0."""
    config_path, space_path = write_yaml(tmp_path / "run.yaml", config), write_yaml(tmp_path / "space.yaml", space)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["sweep", str(config_path), "--space", str(space_path), "--out", str(out)])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "error: no trial has a value of sharpe to pick the best by" in text and message in text, text
    assert list((out / ("trials" if "walk_forward" not in space else "walk_forward")).iterdir())  # the record stays


def test_rerun_after_editing_the_config_is_refused_instead_of_resuming_its_old_trials(
    ray_address: str, tmp_path: Path
) -> None:
    """The rerun skipped every trial and reported the figures of the config as it was before the edit."""
    config = write_yaml(tmp_path / "run.yaml", catalog_config())
    space = write_yaml(tmp_path / "space.yaml", {"params": {"strategy.params.fast": [10], "strategy.params.slow": [30]}})
    out = tmp_path / "out"
    run_sweep(config, space, out)
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    write_yaml(config, catalog_config(venue={"slippage_bps": 50.0}))
    result = CliRunner().invoke(app, ["sweep", str(config), "--space", str(space), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "holds a sweep of another config or space" in " ".join(result.output.split())
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    write_yaml(config, catalog_config())  # the config as it was: the sweep resumes
    assert run_sweep(config, space, out).skipped == 1


def _bars_2022(start: str, end: str) -> pa.Table:
    """The shipped catalog's Coinbase 4h bars with ts_init in ``[start, end)``."""
    table = Catalog(CATALOG).read("coinbase", "spot", "BTC-USD", "bars_4h")
    ts = table["ts_init"].to_numpy()
    keep = (ts >= pd.Timestamp(start, tz="UTC").value) & (ts < pd.Timestamp(end, tz="UTC").value)
    return table.filter(pa.array(keep))


def test_rerun_after_bars_were_appended_to_the_catalog_is_refused_instead_of_resuming_its_old_trials(
    ray_address: str, tmp_path: Path
) -> None:
    """The rerun skipped every trial and reported figures of the data before the append, exit 0."""
    catalog = Catalog(tmp_path / "catalog")
    catalog.write(_bars_2022("2022-01-01", "2022-04-01"), "cb", "spot", "BTC-USD", "bars_4h", "month",
                  interval_ns=4 * 3600 * 10**9)
    data = {"catalog": str(catalog.root), "sources": [{"instrument": IID, "dataset": "cb/spot/BTC-USD/bars_4h"}]}
    whole = write_yaml(tmp_path / "whole.yaml", make_config(data))
    early = write_yaml(tmp_path / "early.yaml", make_config({**data, "start": "2022-01-01", "end": "2022-03-01"}))
    space = write_yaml(tmp_path / "space.yaml", {"params": {"strategy.params.fast": [10], "strategy.params.slow": [30]},
                                                 "objectives": {"total_return": "maximize"}})
    run_sweep(whole, space, tmp_path / "whole")
    run_sweep(early, space, tmp_path / "early")
    before = {p: p.read_bytes() for p in (tmp_path / "whole").rglob("*") if p.is_file()}
    catalog.write(_bars_2022("2022-04-01", "2022-07-01"), "cb", "spot", "BTC-USD", "bars_4h", "month", mode="append")
    result = CliRunner().invoke(app, ["sweep", str(whole), "--space", str(space), "--out", str(tmp_path / "whole")])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert ("the data its trials ran on has changed since: data.sources.0.dataset (cb/spot/BTC-USD/bars_4h): "
            "files 3 -> 6, rows 540 -> 1086, last 2022-03-31T20:00:00Z -> 2022-06-30T20:00:00Z") in text, text
    assert "start afresh with another --out" in text
    assert {p: p.read_bytes() for p in (tmp_path / "whole").rglob("*") if p.is_file()} == before
    # Bars appended after the window's end change nothing the early sweep read: it resumes.
    assert run_sweep(early, space, tmp_path / "early").skipped == 1


def test_rerun_after_the_data_file_was_rewritten_is_refused_but_a_touched_file_resumes(
    ray_address: str, tmp_path: Path
) -> None:
    """A bar file edited in place (same size) was not noticed: the old trials were reported as its results."""
    config = write_yaml(tmp_path / "run.yaml", file_config(tmp_path))
    space = write_yaml(tmp_path / "space.yaml", {"params": {"strategy.params.fast": [10], "strategy.params.slow": [30]},
                                                 "objectives": {"total_return": "maximize"}})
    out = tmp_path / "out"
    run_sweep(config, space, out)
    bars = tmp_path / "bars.csv"
    os.utime(bars, ns=(1, 1))  # a copy or a touch: the same content
    assert run_sweep(config, space, out).skipped == 1
    text = bars.read_text()
    lines = text.splitlines(keepends=True)
    fields = lines[500].split(",")
    fields[4] = fields[4][:-1] + ("1" if fields[4][-1] != "1" else "2")  # one close, the same number of bytes
    lines[500] = ",".join(fields)
    bars.write_text("".join(lines))
    with pytest.raises(ConfigError, match=r"data.sources.0.file \(.*bars.csv\): content differs;"):
        run_sweep(config, space, out)


def _failing_sweep(tmp_path: Path, strategy: str) -> tuple[Path, Path]:
    """A config running ``failing_strategy:<strategy>`` (the file beside it) and a grid failing at bar 100 (trial 1)."""
    shutil.copy(Path(__file__).with_name("failing_strategy.py"), tmp_path)
    config = catalog_config(strategy={"name": f"failing_strategy:{strategy}", "instruments": [IID],
                                      "params": {"at": 5000}})
    space = {"params": {"strategy.params.at": [5000, 100, 6000]}, "objectives": {"total_return": "maximize"}}
    return write_yaml(tmp_path / "run.yaml", config), write_yaml(tmp_path / "space.yaml", space)


def test_trial_whose_strategy_raises_is_a_failed_row_naming_the_exception_and_its_parameters(
    ray_address: str, tmp_path: Path
) -> None:
    """A strategy raising at one grid point ended the sweep with Ray's traceback, naming no trial or parameter."""
    config, space = _failing_sweep(tmp_path, "RaisesAt")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["sweep", str(config), "--space", str(space), "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert re.search(r"trial 1 \(strategy.params.at=100\) failed: ZeroDivisionError: division by zero at bar 100 "
                     r"\(at \S+failing_strategy.py:\d+ in on_bar\)", text), text
    assert "3 (3 run, 0 resumed, 1 failed: see the warnings above)" in text
    table = pd.read_csv(out / "results.csv")
    assert list(table["status"]) == ["ok", "failed", "ok"]
    assert table["error"][1].startswith("ZeroDivisionError: division by zero at bar 100 (at ")
    assert json.loads((out / "best.json").read_text())["trial"] == 0


def test_rerun_after_fixing_the_strategy_file_is_refused_instead_of_resuming_the_old_codes_failed_trial(
    ray_address: str, tmp_path: Path
) -> None:
    """The strategy's bug fixed, the same command resumed all 3 trials: trial 1 stayed failed, never run again."""
    source = tmp_path / "fixed_later.py"  # a module name of its own: this process keeps the modules it imported
    shutil.copy(Path(__file__).with_name("failing_strategy.py"), source)
    config = write_yaml(tmp_path / "run.yaml", catalog_config(
        strategy={"name": "fixed_later:RaisesAt", "instruments": [IID], "params": {"at": 5000}}))
    space = write_yaml(tmp_path / "space.yaml", {"params": {"strategy.params.at": [5000, 100, 6000]},
                                                 "objectives": {"total_return": "maximize"}})
    out = tmp_path / "out"
    assert run_sweep(config, space, out).failed == 1
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    text = source.read_text()
    fixed = text.replace("if self.bars == self.at:\n            raise", "if self.bars == -self.at:\n            raise")
    assert fixed != text
    source.write_text(fixed)
    result = CliRunner().invoke(app, ["sweep", str(config), "--space", str(space), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert (f"the strategy code its trials ran has changed since: strategy.name ({source}): bytes {len(text)} -> "
            f"{len(fixed)}; resuming would keep the old code's results as the new code's") in " ".join(
        result.output.split()), result.output
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    source.write_text(text)  # the code as it was: the sweep resumes
    assert run_sweep(config, space, out).skipped == 3


def test_trial_whose_worker_dies_stops_the_sweep_naming_the_trial_and_its_parameters(
    ray_address: str, tmp_path: Path
) -> None:
    """A worker process that died surfaced as Ray's WorkerCrashedError traceback, naming no trial."""
    config, space = _failing_sweep(tmp_path, "ExitsAt")
    with pytest.raises(TradebusError, match=r"trial 1 \(strategy.params.at=100\): the Ray task running it failed "
                                            r"\(WorkerCrashedError: .*\); the trials stored before it are kept"):
        run_sweep(config, space, tmp_path / "out")
    assert not (tmp_path / "out" / "trials" / "trial-000001.parquet").exists()


def test_walk_forward_whose_test_runs_fail_warns_per_fold_and_ends_with_an_error(ray_address: str, tmp_path: Path) -> None:
    """Every fold's test run raised (bar 200 of a 60-day window, past the 180 bars of its 30-day train window):
    the sweep exited 0 with no warning, reporting a walk-forward total return of 0.0 over no test window.
    """
    shutil.copy(Path(__file__).with_name("failing_strategy.py"), tmp_path)
    config = write_yaml(tmp_path / "run.yaml", catalog_config(
        strategy={"name": "failing_strategy:RaisesAt", "instruments": [IID], "params": {"at": 5000}}))
    space = write_yaml(tmp_path / "space.yaml", {"params": {"strategy.params.at": [200]},
                                                 "objectives": {"total_return": "maximize"},
                                                 "walk_forward": {"train": "30d", "test": "60d"}})
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["sweep", str(config), "--space", str(space), "--out", str(out)])
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert re.search(r"walk-forward fold 1: the test run of its best trial 0 \(strategy.params.at=200\) on "
                     r"2022-04-01T00:00:00Z .. 2022-05-31T00:00:00Z did not run \(failed: ZeroDivisionError: division "
                     r"by zero at bar 200 \(at \S+failing_strategy.py:\d+ in on_bar\)\)", text), text
    assert "walk-forward fold 0: the test run of its best trial 0" in text
    assert "error: walk-forward: no fold has an out-of-sample result" in text
    folds = pd.read_csv(out / "walk_forward" / "folds.csv")
    assert list(folds["best_trial"]) == [0, 0] and list(folds["test_status"]) == ["failed", "failed"]
    assert all(error.startswith("ZeroDivisionError: division by zero at bar 200") for error in folds["test_error"])
    assert json.loads((out / "walk_forward" / "metrics.json").read_text())["untested_folds"] == [0, 1]


def test_walk_forward_sweeping_initial_cash_chains_the_test_windows_returns(ray_address: str, workdir: Path) -> None:
    """Test runs starting with 200k were chained as if they started with the config's 100k: +1508 % for +0.5 %."""
    space = write_yaml(workdir / "wf-cash.yaml", {
        "params": {"initial_cash": [200_000.0], "strategy.params.fast": [10], "strategy.params.slow": [30]},
        "objectives": {"total_return": "maximize"},
        "walk_forward": {"train": "60d", "test": "30d"},
    })
    out = workdir / "wf-cash"
    run_sweep(workdir / "run.yaml", space, out)
    folds = pd.read_csv(out / "walk_forward" / "folds.csv")
    metrics = json.loads((out / "walk_forward" / "metrics.json").read_text())
    assert metrics["initial_cash"] == 100_000.0
    assert metrics["total_return"] == pytest.approx(math.prod(1 + r for r in folds["test_total_return"]) - 1, rel=1e-9)
    equity = pd.read_csv(out / "walk_forward" / "equity.csv")
    assert equity["equity"].iloc[0] == pytest.approx(100_000.0)
    assert equity["equity"].iloc[-1] == pytest.approx(metrics["final_equity"])


def test_walk_forward_fold_with_no_best_trial_is_warned_of_and_listed_as_untested(ray_address: str, tmp_path: Path) -> None:
    """Folds 0 and 2 (no round trip closed, hit_rate null) were dropped from the stitched figures in silence.

    The summary read "walk-forward folds 3" and a total return that was fold 1's alone.
    """
    config = write_yaml(tmp_path / "run.yaml", catalog_config(end="2022-03-01"))
    space = write_yaml(tmp_path / "wf.yaml", {
        "params": {"strategy.params.fast": [5], "strategy.params.slow": [28]},
        "objectives": {"hit_rate": "maximize"},
        "walk_forward": {"train": "6d", "test": "15d"},
    })
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["sweep", str(config), "--space", str(space), "--out", str(out)])
    assert result.exit_code == 0, result.output
    folds = pd.read_csv(out / "walk_forward" / "folds.csv")
    assert list(folds["best_trial"].isna()) == [True, False, True]
    metrics = json.loads((out / "walk_forward" / "metrics.json").read_text())
    assert metrics["folds"] == 3 and metrics["untested_folds"] == [0, 2]
    assert metrics["total_return"] == pytest.approx(folds["test_total_return"].iloc[1], rel=1e-9)
    text = " ".join(result.output.split())
    assert ("walk-forward fold 0 (2022-01-01T00:00:00Z .. 2022-01-07T00:00:00Z): no trial has a value of hit_rate "
            "to pick the best by; of 1 trials, 1 ran with hit_rate null or not finite") in text
    assert ("its test window 2022-01-07T00:00:00Z .. 2022-01-22T00:00:00Z is left out of the stitched equity and "
            "metrics.json (untested_folds)") in text
    assert "walk-forward fold 2 (2022-01-31T00:00:00Z" in text
    assert "walk-forward untested_folds [0, 2]" in re.sub(r"[│\s]+", " ", result.output)


def test_walk_forward_stress_runs_the_latest_fold_with_a_best_trial_when_the_last_has_none(
    ray_address: str, tmp_path: Path
) -> None:
    """The last fold had no best trial (fold 1 had one): the stress variants were skipped, warning
    "no trial succeeded: the stress variants were not run", though a trial of fold 1 had succeeded.
    """
    config = write_yaml(tmp_path / "run.yaml", catalog_config(end="2022-03-01"))
    space = write_yaml(tmp_path / "wf.yaml", {
        "params": {"strategy.params.fast": [5], "strategy.params.slow": [28]},
        "objectives": {"hit_rate": "maximize"},
        "walk_forward": {"train": "6d", "test": "15d"},
        "stress": [{"name": "costs_x2", "costs": 2}],
    })
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["sweep", str(config), "--space", str(space), "--out", str(out)])
    assert result.exit_code == 0, result.output
    folds = pd.read_csv(out / "walk_forward" / "folds.csv")
    assert list(folds["best_trial"].isna()) == [True, False, True]
    text = " ".join(result.output.split())
    assert "no trial succeeded" not in text
    assert ("stress variants: the last walk-forward fold (2) has no best trial; they run fold 1's best parameters "
            "(trial 0), the latest fold that has one") in text
    stress = json.loads((out / "stress.json").read_text())
    params = {"strategy.params.fast": int(folds["param.strategy.params.fast"].iloc[1]),
              "strategy.params.slow": int(folds["param.strategy.params.slow"].iloc[1])}
    expected = run_trial(TrialSpec(0, str(config), params, stress={"name": "costs_x2", "costs": 2}))
    assert [entry["variant"] for entry in stress] == ["costs_x2"]
    assert expected["status"] == "ok" and expected["fills"] > 0
    assert {k: stress[0][k] for k in STRESS_KEYS} == {k: expected[k] for k in STRESS_KEYS}


def test_walk_forward_fold_names_the_trials_a_null_objective_left_unranked(ray_address: str, tmp_path: Path) -> None:
    """In folds 0 and 2 trial 0 (slow 28) closed no round trip (hit_rate null): each fold picked trial 1
    with no word of it, in folds.csv or the log (only a sweep without walk_forward listed such trials)."""
    config = write_yaml(tmp_path / "run.yaml", catalog_config(end="2022-03-01"))
    space = write_yaml(tmp_path / "wf.yaml", {
        "params": {"strategy.params.fast": [5], "strategy.params.slow": [28, 10]},
        "objectives": {"hit_rate": "maximize"},
        "walk_forward": {"train": "6d", "test": "15d"},
    })
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["sweep", str(config), "--space", str(space), "--out", str(out)])
    assert result.exit_code == 0, result.output
    folds = pd.read_csv(out / "walk_forward" / "folds.csv")
    parsed = load_space(space)
    for fold in folds.itertuples():
        trials = TrialStore(out / "walk_forward" / f"fold-{fold.fold:02d}" / "trials", parsed.params).table().to_pandas()
        null = trials.loc[(trials["status"] == "ok") & trials["hit_rate"].isna(), "trial"].tolist()
        assert json.loads(fold.unranked_trials) == null
    assert [json.loads(u) for u in folds["unranked_trials"]] == [[0], [], [0]]
    assert list(folds["best_trial"]) == [1, 0, 1]  # folds 0 and 2: the only trial with a hit rate
    text = " ".join(result.output.split())
    for k in (0, 2):
        assert (f"walk-forward fold {k}: 1 of 2 trials ran with hit_rate null or not finite and are not ranked "
                "(folds.csv's unranked_trials: [0])") in text
    assert "walk-forward fold 1: " not in text


def test_tpe_range_of_whole_number_bounds_on_a_float_field_draws_floats(ray_address: str, workdir: Path) -> None:
    """venue.slippage_bps: {low: 0, high: 5} drew 0, 1, ... 5 only, as if the field took integers."""
    space = write_yaml(workdir / "float-field.yaml", {
        "method": "tpe", "seed": 3, "trials": 4, "batch": 4,
        "params": {"strategy.params.fast": [10], "venue.slippage_bps": {"low": 0, "high": 5}}})
    out = workdir / "float-field"
    run_sweep(workdir / "run.yaml", space, out)
    table = pd.read_csv(out / "results.csv")
    drawn = table["param.venue.slippage_bps"]
    assert drawn.dtype == "float64" and len(drawn) == 4 and drawn.between(0, 5).all()
    assert (drawn != drawn.round()).any(), list(drawn)


def test_summary_warns_when_most_orders_of_the_trials_were_denied(ray_address: str, tmp_path: Path) -> None:
    """long_short on spot without margin: 99% of each trial's orders denied, and the summary said nothing of it."""
    config = catalog_config()
    config["instruments"][0]["margin"] = False
    config_path = write_yaml(tmp_path / "run.yaml", config)
    space = write_yaml(tmp_path / "space.yaml", {"params": {"strategy.params.fast": [10, 20]}})
    result = CliRunner().invoke(app, ["sweep", str(config_path), "--space", str(space), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "o" / "results.csv")
    mostly = table[table["denied"] * 2 > table["orders"]]
    denied, orders = int(mostly["denied"].sum()), int(mostly["orders"].sum())
    assert len(mostly) == 2 and denied / orders > 0.9, table[["orders", "denied"]]
    text = " ".join(re.sub(r"[│┃]", " ", result.output).split())
    assert (f"2 of the 2 trials that ran had most of their orders denied by the risk gate or the account ({denied:,} "
            f"of their {orders:,} orders, {denied / orders:.1%})") in text, text
    assert f"denied 2 of 2 trials had most orders denied ({denied:,} of their {orders:,} orders" in text, text
    config["instruments"][0]["margin"] = True  # the same trials with margin: a few denials, no warning
    write_yaml(config_path, config)
    result = CliRunner().invoke(app, ["sweep", str(config_path), "--space", str(space), "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "m" / "results.csv")
    assert (table["denied"] * 2 <= table["orders"]).all(), table[["orders", "denied"]]
    assert "most of their orders denied" not in result.output and "most orders denied" not in result.output


def test_results_csv_writes_a_multi_line_error_on_one_line_and_the_trials_file_keeps_it(
    ray_address: str, workdir: Path
) -> None:
    """An invalid trial's 'invalid config:' and its problems on the lines below made a row of results.csv 2 lines."""
    space = write_yaml(workdir / "invalid.yaml", {"params": {"strategy.params.fast": [10, 50], "strategy.params.slow": [30]}})
    out = workdir / "invalid"
    run_sweep(workdir / "run.yaml", space, out)
    stored = results(out).to_pylist()
    assert [row["status"] for row in stored] == ["ok", "invalid"]
    error = stored[1]["error"]
    assert "\n" in error and "fast (50) must be smaller than slow (30)" in error, error
    lines = (out / "results.csv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3, lines
    assert pd.read_csv(out / "results.csv")["error"][1] == " ".join(error.split())
