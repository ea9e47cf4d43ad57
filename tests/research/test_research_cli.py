"""`tradebus research ...`: every command runs on the shipped config, writes its files and a summary."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import yaml
from research_helpers import H4, REPO, btc_bars, random_walk, write_bars
from scipy.stats import spearmanr
from typer.testing import CliRunner

from tests.engine.test_kernel_batches import rewrite_column
from tests.file_size_limit import cli_under_file_size_limit
from tradebus.cli import app
from tradebus.data.catalog import Catalog
from tradebus.data.replay import ReplaySource
from tradebus.research.config import load_research_config
from tradebus.research.dataset import build_dataset

CONFIG = REPO / "configs" / "research_btc.yaml"
runner = CliRunner()


@pytest.mark.parametrize("command", ["dataset", "labels", "cv", "walkforward", "lookahead", "alpha"])
def test_every_research_command_has_help(command: str) -> None:
    result = runner.invoke(app, ["research", command, "--help"])
    assert result.exit_code == 0 and "--out" in result.output


def test_dataset_labels_and_cv_write_their_files(tmp_path: Path) -> None:
    for command in ("dataset", "labels", "cv"):
        result = runner.invoke(app, ["research", command, str(CONFIG), "--out", str(tmp_path)])
        assert result.exit_code == 0, result.output
    _, ds = load_research_config(CONFIG)
    written = pd.read_parquet(tmp_path / "dataset.parquet")
    assert np.array_equal(written.iloc[:, 2:].to_numpy(), build_dataset(ds).iloc[:, 2:].to_numpy(), equal_nan=True)
    labels = pd.read_parquet(tmp_path / "labels.parquet")
    assert {"ts_event", "t1", "label", "instrument", "uniqueness"} <= set(labels.columns)
    assert labels["uniqueness"].between(0, 1).all() and labels["uniqueness"].iat[0] < 1
    cv = json.loads((tmp_path / "cv.json").read_text())
    assert cv["method"] == "kfold" and len(cv["splits"]) == 5
    assert sum(s["test"] for s in cv["splits"]) == cv["samples"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cv.json", "dataset.parquet", "labels.parquet"]


def _one_feature_config(catalog: Path, dataset: str) -> dict[str, Any]:
    """The shipped research config on ``dataset`` of SIM-USD.SIM in ``catalog``, with one feature, ``r``, the log
    return of the close, its model column and alpha factor, and SIM-USD.SIM walked forward on (every command checks
    all three)."""
    raw = yaml.safe_load(CONFIG.read_text())
    raw["dataset"] = {"catalog": str(catalog), "sources": [{"instrument": "SIM-USD.SIM", "dataset": dataset}],
                      "features": [{"name": "r", "kind": "log_ret", "input": "close"}]}
    raw["model"]["columns"] = ["r"]
    raw["alpha"]["factors"] = ["r"]
    raw["walkforward"]["instrument"].update({"venue": "SIM", "symbol": "SIM-USD"})
    return raw


def test_cv_purges_by_the_longest_forward_horizon_not_the_last_one(tmp_path: Path) -> None:
    # 24 irregular bars labelled at 3 and 1 bars: only rows 0..20 have both labels, and row i's labels
    # are known at ts[i + 3]. Three folds of 7 rows; each purges the 3 training rows before it whose
    # 3-bar label reaches into it, and the 3 rows after it that start before its last label ends.
    bars = random_walk(24)
    bars["ts_event"] = bars["ts_init"] = 1_600_000_000_000_000_000 + np.cumsum(np.arange(1, 25) ** 2) * 60_000_000_000
    ts = bars["ts_event"].to_numpy()
    dataset = write_bars(tmp_path / "catalog", bars, "SIM-USD", "bars", 60_000_000_000)
    raw = _one_feature_config(tmp_path / "catalog", dataset)
    raw["labels"] = {"method": "forward", "horizons": [3, 1]}
    raw["cv"] = {"method": "kfold", "n_splits": 3, "embargo": 0}
    config = tmp_path / "horizons.yaml"
    config.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["research", "cv", str(config), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    cv = json.loads((tmp_path / "out" / "cv.json").read_text())
    assert cv["samples"] == 21
    # folds [0, 7), [7, 14), [14, 21): purged rows 7..9; 4..6 and 14..16; 11..13
    assert [(s["test_start"], s["test_end"]) for s in cv["splits"]] == [(ts[0], ts[9]), (ts[7], ts[16]),
                                                                         (ts[14], ts[23])]
    assert [(s["train"], s["test"], s["purged_or_embargoed"]) for s in cv["splits"]] == [(11, 7, 3), (8, 7, 6),
                                                                                         (11, 7, 3)]


def test_cv_json_gives_the_last_test_samples_time_beside_its_labels_end_and_a_cpcvs_test_groups(tmp_path: Path) -> None:
    """cv.json's test_end is the latest label end of a split's test samples, 3 bars after its last sample with
    3-bar labels, and a CPCV split testing groups 0 and 2 spanned group 1's training samples from test_start to
    test_end with nothing saying so: test_last and test_groups now say it."""
    bars = random_walk(24)
    bars["ts_event"] = bars["ts_init"] = 1_600_000_000_000_000_000 + np.cumsum(np.arange(1, 25) ** 2) * 60_000_000_000
    ts = bars["ts_event"].to_numpy()
    dataset = write_bars(tmp_path / "catalog", bars, "SIM-USD", "bars", 60_000_000_000)
    raw = _one_feature_config(tmp_path / "catalog", dataset)
    raw["labels"] = {"method": "forward", "horizons": [3]}
    for method, groups in (("kfold", None), ("cpcv", [[0, 1], [0, 2], [1, 2]])):
        raw["cv"] = {"method": method, "n_splits": 3, **({"n_test_folds": 2} if groups else {})}
        config = tmp_path / f"{method}.yaml"
        config.write_text(yaml.safe_dump(raw))
        result = runner.invoke(app, ["research", "cv", str(config), "--out", str(tmp_path / method)])
        assert result.exit_code == 0, result.output
        splits = json.loads((tmp_path / method / "cv.json").read_text())["splits"]
        # 21 samples (row i labelled by bar i + 3) in groups 0..6, 7..13, 14..20
        tested = [(0, 6), (7, 13), (14, 20)] if groups is None else [(0, 13), (0, 20), (7, 20)]
        assert [(s["test_start"], s["test_last"], s["test_end"]) for s in splits] == [
            (ts[a], ts[b], ts[b + 3]) for a, b in tested]
        assert [s.get("test_groups") for s in splits] == (groups or [None] * 3)
        # cv.json gave ns only: each time now has its UTC text beside it, the ns kept
        assert [(s["test_start_time"], s["test_last_time"], s["test_end_time"]) for s in splits] == [
            tuple(pd.Timestamp(int(ts[i]), unit="ns").isoformat() + "Z" for i in (a, b, b + 3)) for a, b in tested]


@pytest.mark.parametrize("method", ["triple_barrier", "forward"])
def test_labels_of_a_dataset_with_a_nan_close_exit_3_naming_the_dataset_row_and_time(tmp_path: Path,
                                                                                     method: str) -> None:
    """A NaN close in the catalog (Catalog.write refuses one since da48626e; a catalog written by another tool may
    hold it) gave the label -9223372036854775808 in labels.parquet, exit 0."""
    bars = random_walk(80)
    columns = ("ts_event", "ts_init", "open", "high", "low", "close", "volume")
    catalog = Catalog(tmp_path / "catalog")
    catalog.write(pa.table({c: pa.array(bars[c].to_numpy()) for c in columns}), "sim", "spot", "SIM-USD", "bars",
                  period="year", kind="bars", interval_ns=H4)
    bars.loc[50, "close"] = np.nan
    rewrite_column(ReplaySource.from_catalog(catalog, "SIM-USD.SIM", "sim", "spot", "SIM-USD", "bars"),
                   pa.table({c: pa.array(bars[c].to_numpy()) for c in columns}), "close")
    dataset = "sim/spot/SIM-USD/bars"
    raw = _one_feature_config(tmp_path / "catalog", dataset)
    raw["labels"] = {"method": "forward", "horizons": [1]} if method == "forward" else {"vol_span": 5, "max_bars": 12}
    config = tmp_path / "nan.yaml"
    config.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    result = runner.invoke(app, ["research", "labels", str(config), "--out", str(out)])
    assert result.exit_code == 3, result.output
    when = pd.Timestamp(int(bars["ts_event"].iat[50]), unit="ns", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (f"error: SIM-USD.SIM ({dataset}): labels: bars frame's close is nan at row 50 (ts_event {when})"
            in " ".join(result.output.split()))
    assert not (out / "labels.parquet").exists()


@pytest.mark.parametrize(("expanding", "trains"), [(True, [4, 8, 12]), (False, [4, 4, 4])])
def test_cv_walkforward_embargoes_and_counts_only_the_training_rows_it_removes(tmp_path: Path, expanding: bool,
                                                                               trains: list[int]) -> None:
    # 22 bars labelled 2 bars ahead: 20 samples, row i known at ts[i + 2]. Test windows 8..11, 12..15, 16..19;
    # before each, purging drops the 2 rows whose labels reach it and the embargo (0.1 = 2 rows) the 2 before
    # those: 4 rows removed per window, none of the rows after the test window or before a rolling window.
    bars = random_walk(22)
    dataset = write_bars(tmp_path / "catalog", bars, "SIM-USD", "bars", 60_000_000_000)
    raw = _one_feature_config(tmp_path / "catalog", dataset)
    raw["labels"] = {"method": "forward", "horizons": [2]}
    raw["cv"] = {"method": "walkforward", "n_splits": 3, "test_size": 4, "expanding": expanding, "embargo": 0.1}
    config = tmp_path / "walkforward.yaml"
    config.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["research", "cv", str(config), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    cv = json.loads((tmp_path / "out" / "cv.json").read_text())
    assert cv["samples"] == 20
    assert [(s["train"], s["test"], s["purged_or_embargoed"]) for s in cv["splits"]] == [(t, 4, 4) for t in trains]


def test_cv_walkforward_with_a_train_size_tests_up_to_the_last_sample(tmp_path: Path) -> None:
    # 60 bars labelled 2 bars ahead: 58 samples, test windows of 58 // 4 = 14 (the default, as scikit-learn's
    # TimeSeriesSplit(3)): 16..29, 30..43, 44..57, each trained on the 10 samples before it less the 2 purged.
    # Started right after train_size they tested 10..51 and samples 52..57, the most recent, in none.
    bars = random_walk(60)
    dataset = write_bars(tmp_path / "catalog", bars, "SIM-USD", "bars", 60_000_000_000)
    raw = _one_feature_config(tmp_path / "catalog", dataset)
    raw["labels"] = {"method": "forward", "horizons": [2]}
    raw["cv"] = {"method": "walkforward", "n_splits": 3, "train_size": 10, "expanding": False}
    config = tmp_path / "walkforward.yaml"
    config.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["research", "cv", str(config), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    cv = json.loads((tmp_path / "out" / "cv.json").read_text())
    ts = bars["ts_event"].to_numpy()
    assert cv["samples"] == 58
    assert [(s["test_start"], s["test_end"]) for s in cv["splits"]] == [(ts[16], ts[31]), (ts[30], ts[45]),
                                                                        (ts[44], ts[59])]
    assert [(s["train"], s["purged_or_embargoed"]) for s in cv["splits"]] == [(8, 2)] * 3


def test_cv_walkforward_train_size_without_expanding_is_a_rolling_window_as_timeseriessplits_max_train_size(
        tmp_path: Path) -> None:
    """cv: {method: walkforward, n_splits: 3, train_size: 10}, the README's rolling training window, trained on every
    sample before each test window (14, 28, 42 less the purged): expanding defaulted to true and took train_size
    for a minimum. Without expanding, train_size now caps the window as scikit-learn's max_train_size does."""
    from sklearn.model_selection import TimeSeriesSplit

    bars = random_walk(60)
    dataset = write_bars(tmp_path / "catalog", bars, "SIM-USD", "bars", 60_000_000_000)
    raw = _one_feature_config(tmp_path / "catalog", dataset)
    raw["labels"] = {"method": "forward", "horizons": [2]}
    raw["cv"] = {"method": "walkforward", "n_splits": 3, "train_size": 10}
    config = tmp_path / "walkforward.yaml"
    config.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["research", "cv", str(config), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    cv = json.loads((tmp_path / "out" / "cv.json").read_text())
    ts = bars["ts_event"].to_numpy()
    # sample i is labelled by bar i + 2: a training sample whose label ends at or after the test start is purged
    expected = [(len([i for i in train if i + 2 < test[0]]), int(ts[test[0]]))
                for train, test in TimeSeriesSplit(3, max_train_size=10).split(np.arange(58))]
    assert [(s["train"], s["test_start"]) for s in cv["splits"]] == expected == [(8, ts[16]), (8, ts[30]), (8, ts[44])]
    # without train_size (or with expanding: true) training starts at the first sample, as TimeSeriesSplit's default
    raw["cv"] = {"method": "walkforward", "n_splits": 3}
    config.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["research", "cv", str(config), "--out", str(tmp_path / "out2")])
    assert result.exit_code == 0, result.output
    cv = json.loads((tmp_path / "out2" / "cv.json").read_text())
    assert [s["train"] for s in cv["splits"]] == [14, 28, 42]


def test_cv_walkforward_whose_train_size_leaves_room_for_fewer_windows_than_n_splits_exits_2(tmp_path: Path) -> None:
    # the 58 samples of the test above in 3 windows of 14 start at 16: a train_size of 20 fits only 2 windows,
    # which it ran without a word (cv.json with 2 splits for n_splits 3)
    bars = random_walk(60)
    dataset = write_bars(tmp_path / "catalog", bars, "SIM-USD", "bars", 60_000_000_000)
    raw = _one_feature_config(tmp_path / "catalog", dataset)
    raw["labels"] = {"method": "forward", "horizons": [2]}
    raw["cv"] = {"method": "walkforward", "n_splits": 3, "train_size": 20, "expanding": False}
    config = tmp_path / "walkforward.yaml"
    config.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["research", "cv", str(config), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert (f"{config}: cv: PurgedWalkForward: n_splits 3 test windows of 14 samples (step 14) ending at the last "
            "of 58 samples start at sample 16, but train_size 20 + gap 0 samples must precede the first: only 2 "
            "fit; give n_splits <= 2 or train_size <= 16") in text
    assert not (tmp_path / "out" / "cv.json").exists()


def test_cv_help_says_what_the_embargo_does_in_each_mode() -> None:
    result = runner.invoke(app, ["research", "cv", "--help"], terminal_width=200)
    text = " ".join(result.output.replace("│", " ").split())
    assert "kfold and cpcv drop that many training samples after each test fold's labels end" in text
    assert "walkforward, whose training precedes its test window, drops the last that many training samples" in text


def test_cv_refuses_a_fold_that_purging_and_embargo_leave_without_training_rows(tmp_path: Path) -> None:
    bars = random_walk(24)
    dataset = write_bars(tmp_path / "catalog", bars, "SIM-USD", "bars", 60_000_000_000)
    raw = _one_feature_config(tmp_path / "catalog", dataset)
    raw["labels"] = {"method": "forward", "horizons": [3]}
    raw["cv"] = {"method": "kfold", "n_splits": 3, "embargo": 100}
    config = tmp_path / "embargo.yaml"
    config.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["research", "cv", str(config), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    # 21 labelled rows, folds of 7: fold 0 purges rows 7..9 and the embargo takes the rest
    message = " ".join(result.output.split())
    assert (f"{config}: cv: PurgedKFold: fold 0 has no training samples left: of 21 samples 7 are tested and the "
            "other 14 are purged or embargoed (embargo 100 samples)") in message
    assert not (tmp_path / "out" / "cv.json").exists()


def test_walkforward_and_alpha_on_a_small_config(tmp_path: Path) -> None:
    raw = yaml.safe_load(CONFIG.read_text())
    raw["dataset"]["catalog"] = str(REPO / "data" / "catalog")
    raw["walkforward"].pop("retrain_every")
    raw["walkforward"].update({"retrain_every_time": "500d", "min_train": 14000})  # 3000 4h bars
    raw["model"]["params"] = {"n_estimators": 10, "max_depth": 2}
    raw["cv"] = {"method": "cpcv", "n_splits": 6, "n_test_folds": 2}
    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    result = runner.invoke(app, ["research", "walkforward", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "walkforward.json").read_text())["summary"]
    assert summary["segments"] == 3
    assert len(pd.read_parquet(out / "walkforward_fills.parquet")) == summary["fills"]
    result = runner.invoke(app, ["research", "cv", str(config), "--out", str(out)])
    assert result.exit_code == 0 and json.loads((out / "cv.json").read_text())["n_test_paths"] == 5
    result = runner.invoke(app, ["research", "alpha", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "alpha.json").read_text())
    assert [row["horizon"] for row in report["factors"]["rsi"]["ic"]] == [1, 6, 24]


def test_walkforward_trains_on_the_horizon_it_names(tmp_path: Path) -> None:
    raw = yaml.safe_load(CONFIG.read_text())
    raw["dataset"]["catalog"] = str(REPO / "data" / "catalog")
    raw["walkforward"].pop("retrain_every")
    raw["walkforward"].update({"retrain_every_time": "500d", "min_train": 14000})  # 3000 4h bars
    raw["model"]["params"] = {"n_estimators": 10, "max_depth": 2}

    def run(name: str, horizons: list[int], horizon: int | None) -> tuple[int, str, Path]:
        raw["labels"] = {"method": "forward", "horizons": horizons}
        raw["walkforward"].pop("horizon", None)
        if horizon is not None:
            raw["walkforward"]["horizon"] = horizon
        config = tmp_path / f"{name}.yaml"
        config.write_text(yaml.safe_dump(raw))
        result = runner.invoke(app, ["research", "walkforward", str(config), "--out", str(tmp_path / name)])
        return result.exit_code, " ".join(result.output.split()), tmp_path / name / "walkforward.json"

    code, output, named = run("named", [6, 1], 6)
    assert code == 0, output
    code, output, last = run("last", [1, 6], None)  # the last horizon listed when none is named
    assert code == 0, output
    assert named.read_bytes() == last.read_bytes()
    code, output, other = run("other", [6, 1], None)
    assert code == 0, output
    assert other.read_bytes() != last.read_bytes()
    code, output, _ = run("unlisted", [6, 1], 24)
    assert code == 2 and "walkforward.horizon: 24 is not one of labels.horizons [6, 1]" in output
    raw["labels"] = {"method": "triple_barrier"}
    raw["walkforward"]["horizon"] = 6
    (tmp_path / "barrier.yaml").write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["research", "walkforward", str(tmp_path / "barrier.yaml"), "--out", str(tmp_path / "b")])
    assert result.exit_code == 2 and "walkforward.horizon: only with labels.method: forward" in result.output


def test_lookahead_passes_quickstart_and_bad_configs_exit_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["research", "lookahead", str(REPO / "configs" / "quickstart.yaml"), "--cuts", "2",
                                 "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "lookahead.json").read_text())["ok"] is True
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: {catalog: x, sources: [], features: []}\ncv: {method: nope}\n")
    result = runner.invoke(app, ["research", "dataset", str(bad), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "cv.method" in result.output


@pytest.mark.parametrize("command", [["research", "lookahead"], ["research", "dataset"], ["research", "labels"],
                                     ["backtest"]])
def test_a_system_config_given_to_another_command_exits_2_pointing_to_research_run(tmp_path: Path,
                                                                                   command: list[str]) -> None:
    config = REPO / "configs" / "systems" / "regime_hazard.yaml"
    result = runner.invoke(app, [*command, str(config), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "system config (system: 'regime_hazard')" in text and f"tradebus research run {config}" in text
    assert "unknown key" not in text
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_lookahead_command_exits_4_on_a_leaking_strategy(tmp_path: Path) -> None:
    raw = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())
    raw["data"]["catalog"] = str(REPO / "data" / "catalog")
    raw["strategy"] = {"name": "research_leaky:BatchEndReader", "instruments": ["BTC-USD.COINBASE"], "params": {}}
    config = tmp_path / "leaky.yaml"
    config.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["research", "lookahead", str(config), "--cuts", "2", "--out", str(tmp_path)])
    assert result.exit_code == 4, result.output
    report = json.loads((tmp_path / "lookahead.json").read_text())
    assert report["ok"] is False and report["n_violations"] > 0
    # the first difference is told in UTC, as every other time a command prints (its ns stay in lookahead.json)
    first = report["violations"][0]
    when = pd.Timestamp(first["ts"], unit="ns", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
    cut = pd.Timestamp(first["cut"], unit="ns", tz="UTC").strftime("%Y-%m-%dT%H:%M:%S.999999999Z")
    text = " ".join(result.output.split())
    assert f"output at {when} (BatchEndReader) changed when data after {cut} changed" in text, text
    assert str(first["ts"]) not in text
    # lookahead.json gave ns only: each time now has its UTC text beside it, the ns kept (scripts read them)
    def utc(ns: int) -> str:
        return pd.Timestamp(ns, unit="ns").isoformat() + "Z"

    assert report["cut_times"] == [utc(c) for c in report["cuts"]] and report["cut_times"][0].endswith(".999999999Z")
    assert [(v["cut_time"], v["time"]) for v in report["violations"]] == [
        (utc(v["cut"]), utc(v["ts"])) for v in report["violations"]]
    assert set(first) == {"cut", "cut_time", "kind", "ts", "time", "key", "before", "after"}
    # after a cut's first difference the records no longer line up: each cut lists its first 20, and so counts
    per_cut = [sum(v["cut"] == c for v in report["violations"]) for c in report["cuts"]]
    assert max(per_cut) == 20 and report["n_violations"] == sum(per_cut) <= 40
    assert f"violations (the first 20 a cut) │ {report['n_violations']}" in result.output, result.output


def test_round_trip_pnl_hand_derived() -> None:
    from types import SimpleNamespace

    from tradebus.research.cli import _round_trip_pnl

    def fill(side: str, qty: float, px: float, fee: float = 1.0) -> SimpleNamespace:
        return SimpleNamespace(instrument_id="X", side=side, quantity=qty, price=px, fee=fee)

    # buy 2 @ 100, buy 2 @ 110 (avg 105), sell 3 @ 120 (+45), sell 3 @ 100 (closes 1: -5; opens short 2 @ 100),
    # buy 2 @ 90 (short closed: +20); each fill pays a fee of 1
    fills = [fill("BUY", 2, 100), fill("BUY", 2, 110), fill("SELL", 3, 120), fill("SELL", 3, 100), fill("BUY", 2, 90)]
    pnl = _round_trip_pnl(SimpleNamespace(fills=fills))
    assert pnl.tolist() == pytest.approx([-1, -1, 44, -6, 19])
    # In contracts of 0.01 the price moves are worth a hundredth; the fees are as charged.
    pnl = _round_trip_pnl(SimpleNamespace(fills=fills), {"X": 0.01})
    assert pnl.tolist() == pytest.approx([-1, -1, -1 + 0.45, -1 - 0.05, -1 + 0.2])


def test_alpha_with_a_backtest_reports_psr_monte_carlo_and_cost_stress(tmp_path: Path) -> None:
    result = runner.invoke(app, ["research", "alpha", str(CONFIG), "--backtest", str(REPO / "configs" / "quickstart.yaml"),
                                 "--trials", "20", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "alpha.json").read_text())["backtest"]
    assert 0 <= report["deflated_sharpe"] < report["probabilistic_sharpe"] <= 1
    assert [row["multiplier"] for row in report["cost_stress"]] == [1.0, 2.0, 5.0]
    assert report["trade_shuffle"]["ci_low"] <= report["trade_shuffle"]["ci_high"]
    # The bootstrap's Sharpe ratio and total return are those of the run (metrics.json, cost_stress at x1):
    # daily returns, annualised by 365.
    baseline = report["cost_stress"][0]
    assert report["bootstrap"]["sharpe"]["estimate"] == pytest.approx(baseline["sharpe"], rel=1e-12)
    assert report["bootstrap"]["total_return"]["estimate"] == pytest.approx(baseline["total_return"], rel=1e-9)
    assert report["bootstrap"]["sharpe"]["ci_low"] < baseline["sharpe"] < report["bootstrap"]["sharpe"]["ci_high"]
    # Equity sampled every 3 days: 365 / 3 periods a year, as metrics.json (it was annualised by 365)
    text = (REPO / "configs" / "quickstart.yaml").read_text().replace("../data/catalog", str(REPO / "data" / "catalog"))
    assert "equity_interval: 4h" in text
    sparse = tmp_path / "sparse.yaml"
    sparse.write_text(text.replace("equity_interval: 4h", "equity_interval: 3d"))
    assert runner.invoke(app, ["research", "alpha", str(CONFIG), "--backtest", str(sparse),
                               "--out", str(tmp_path / "sparse")]).exit_code == 0
    stats = json.loads((tmp_path / "sparse" / "alpha.json").read_text())["backtest"]
    assert stats["bootstrap"]["sharpe"]["estimate"] == pytest.approx(stats["cost_stress"][0]["sharpe"], rel=1e-12)
    # The summary shows every figure, not only the scalar ones.
    shown = " ".join(result.output.replace("│", " ").split())
    sharpe = report["bootstrap"]["sharpe"]
    assert f"bootstrap sharpe {sharpe['estimate']:.4g} (95 % interval {sharpe['ci_low']:.4g} to" in shown
    assert "trade shuffle max drawdown observed" in shown
    worst = report["cost_stress"][2]
    assert f"costs x5 return {worst['total_return']:.4g}, sharpe {worst['sharpe']:.4g}" in shown


def _windowed_config(tmp_path: Path, start_ns: int | None, end_ns: int | None) -> Path:
    raw = yaml.safe_load(CONFIG.read_text())
    raw["dataset"].update({"catalog": str(REPO / "data" / "catalog"), "start_ns": start_ns, "end_ns": end_ns})
    path = tmp_path / "window.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_dataset_on_an_empty_window_exits_3_and_writes_nothing(tmp_path: Path) -> None:
    config = _windowed_config(tmp_path, 1_600_000_000_000_000_000, 1_600_000_000_000_000_001)
    out = tmp_path / "out"
    result = runner.invoke(app, ["research", "dataset", str(config), "--out", str(out)])
    assert result.exit_code == 3, result.output
    assert "no source has a row between dataset.start_ns" in result.output
    assert "spans 2016-05-18T08:00:00Z to" in result.output
    assert not (out / "dataset.parquet").exists()


@pytest.mark.parametrize("command", ["dataset", "labels"])
def test_an_empty_window_names_the_config_as_every_research_error_does(tmp_path: Path, command: str) -> None:
    """It said 'error: dataset: no source has a row ...' without the file, where a config error names it."""
    config = _windowed_config(tmp_path, 1_600_000_000_000_000_000, 1_600_000_000_000_000_001)
    result = runner.invoke(app, ["research", command, str(config), "--out", str(tmp_path / "out")])
    assert result.exit_code == 3, result.output
    assert f"error: {config}: dataset: no source has a row between" in " ".join(result.output.split())


@pytest.mark.parametrize("command", ["dataset", "labels"])
def test_a_window_ending_before_it_starts_is_a_config_error_exit_2(tmp_path: Path, command: str) -> None:
    """start_ns 2023-11-14, end_ns 2020-09-13 said 'no source has a row between ...' and blamed the data, exit 3."""
    config = _windowed_config(tmp_path, 1_700_000_000_000_000_000, 1_600_000_000_000_000_000)
    out = tmp_path / "out"
    result = runner.invoke(app, ["research", command, str(config), "--out", str(out)])
    assert result.exit_code == 2, result.output
    shown = " ".join(result.output.split())
    assert (f"error: {config}: dataset.end_ns: 1600000000000000000 (2020-09-13T12:26:40Z) is not after "
            "dataset.start_ns 1700000000000000000 (2023-11-14T22:13:20Z)") in shown
    assert not out.exists() or not any(out.iterdir())


def test_labels_cv_and_alpha_keep_to_the_dataset_window(tmp_path: Path) -> None:
    bars = btc_bars()
    ts = bars["ts_event"].to_numpy()
    start, end = int(ts[10_000]), int(ts[13_000])
    config = _windowed_config(tmp_path, start, end)
    out = tmp_path / "out"
    for command in ("dataset", "labels", "cv", "alpha"):
        result = runner.invoke(app, ["research", command, str(config), "--out", str(out)])
        assert result.exit_code == 0, result.output
    dataset = pd.read_parquet(out / "dataset.parquet")
    labels = pd.read_parquet(out / "labels.parquet")
    assert len(dataset) == 3000
    assert labels["ts_event"].tolist() == dataset["ts_event"].tolist()
    # no label reads a bar at or after the window's end: the last ones stay incomplete
    assert labels["t1"].max() < end and not labels["complete"].iat[-1]
    assert json.loads((out / "cv.json").read_text())["samples"] == int(labels["complete"].sum())
    # the IC of the window's rows, per block of 500, against forward returns that stop at its end
    close = bars["close"].iloc[:13_000]
    fwd = (close.shift(-1) / close - 1.0).iloc[10_000:].to_numpy()
    rsi = dataset["rsi"].to_numpy()
    ics = []
    for a in range(0, 3000, 500):
        ok = ~np.isnan(fwd[a : a + 500])
        ics.append(spearmanr(rsi[a : a + 500][ok], fwd[a : a + 500][ok]).statistic)
    ic = json.loads((out / "alpha.json").read_text())["factors"]["rsi"]["ic"][0]
    assert ic["n"] == 6 and ic["ic_mean"] == pytest.approx(np.mean(ics), rel=1e-12)


def test_labels_index_counts_the_sources_catalog_bars_not_dataset_rows_as_its_help_says(tmp_path: Path) -> None:
    """labels.parquet's index/end_index were documented nowhere; in a window from bar 10,000 they start at 10,000."""
    bars = btc_bars()
    ts = bars["ts_event"].to_numpy()
    config = _windowed_config(tmp_path, int(ts[10_000]), int(ts[10_600]))
    out = tmp_path / "out"
    for command in ("dataset", "labels"):
        result = runner.invoke(app, ["research", command, str(config), "--out", str(out)])
        assert result.exit_code == 0, result.output
    labels = pd.read_parquet(out / "labels.parquet")
    assert labels.columns.tolist() == ["instrument", "ts_event", "t1", "index", "end_index", "side", "ret", "label",
                                       "barrier", "pt_width", "sl_width", "complete", "uniqueness"]
    assert labels["index"].iat[0] == 10_000 and pd.read_parquet(out / "dataset.parquet").index[0] == 0
    assert np.array_equal(ts[labels["index"]], labels["ts_event"]) and np.array_equal(ts[labels["end_index"]], labels["t1"])
    shown = runner.invoke(app, ["research", "labels", "--help"], terminal_width=200).output
    text = " ".join(shown.replace("│", " ").split())
    assert ("index and end_index (those bars' positions among the source's catalog bars, the warm-up before "
            "dataset.start_ns included: not dataset.parquet rows; join by instrument and ts_event)") in text


def test_walkforward_trades_only_inside_the_dataset_window(tmp_path: Path) -> None:
    ts = btc_bars()["ts_event"].to_numpy()
    config = _windowed_config(tmp_path, int(ts[10_000]), int(ts[13_000]))
    raw = yaml.safe_load(config.read_text())
    raw["walkforward"].update({"retrain_every": 1000, "min_train": 1000})
    raw["model"]["params"] = {"n_estimators": 10, "max_depth": 2}
    config.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    result = runner.invoke(app, ["research", "walkforward", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    segments = pd.read_parquet(out / "walkforward_segments.parquet")
    assert segments["start"].tolist() == [ts[11_000], ts[12_000]]
    assert segments["end"].tolist() == [ts[11_999], ts[12_999]]
    fills = pd.read_parquet(out / "walkforward_fills.parquet")
    assert len(fills) and fills["ts_event"].between(ts[11_000], ts[12_999]).all()
    assert pd.read_parquet(out / "walkforward_equity.parquet")["ts"].max() <= ts[12_999]
    raw["walkforward"]["min_train"] = 3000
    config.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["research", "walkforward", str(config), "--out", str(out)])
    assert result.exit_code == 2
    assert "walkforward.min_train 3000 leaves no bar to trade" in result.output


def test_walkforward_scores_no_segment_by_an_incomplete_label(tmp_path: Path) -> None:
    """The last two 4h bars' triple-barrier labels touch no barrier before the data ends (complete: False, their
    return stops at the last close); a last segment of just those bars had a hit rate and IC from them."""
    bars = btc_bars()
    ts = bars["ts_event"].to_numpy()
    n = len(ts)
    config = _windowed_config(tmp_path, int(ts[n - 2_000]), None)
    raw = yaml.safe_load(config.read_text())
    raw["walkforward"].update({"retrain_every": 998, "min_train": 1_000})
    raw["model"]["params"] = {"n_estimators": 10, "max_depth": 2}
    config.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    for command in ("labels", "walkforward"):
        result = runner.invoke(app, ["research", command, str(config), "--out", str(out)])
        assert result.exit_code == 0, result.output
    labels = pd.read_parquet(out / "labels.parquet")
    assert labels["index"].tolist()[-2:] == [n - 2, n - 1] and not labels["complete"].tail(2).any()
    assert labels["complete"].iloc[:-2].all()
    segments = json.loads((out / "walkforward.json").read_text())["segments"]
    assert [s["start"] for s in segments] == [ts[n - 1_000], ts[n - 2]]
    assert segments[1]["hit_rate"] is None and segments[1]["ic"] is None
    assert segments[0]["hit_rate"] is not None


def test_labels_write_no_outcome_for_an_incomplete_label(tmp_path: Path) -> None:
    """research_btc.yaml's last 4h bars touch no barrier before the data ends, their vertical barrier (max_bars 12)
    beyond it: labels.parquet gave them a label of +-1 from the return cut at the last close, which walkforward and
    the regime system drop. They are kept, marked complete: False, with a null label and a NaN ret."""
    result = runner.invoke(app, ["research", "labels", str(CONFIG), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    labels = pd.read_parquet(tmp_path / "labels.parquet")
    n = len(btc_bars())
    # by hand: an event is incomplete when it touched no barrier and its vertical barrier, 12 bars on, is past the end
    incomplete = (labels["barrier"] == 0) & (labels["index"] + 12 > n - 1)
    assert incomplete.sum() > 0 and incomplete.tolist() == (~labels["complete"]).tolist()
    assert labels.loc[incomplete, "label"].isna().all() and labels.loc[incomplete, "ret"].isna().all()
    assert labels.loc[~incomplete, "label"].notna().all() and labels.loc[~incomplete, "ret"].notna().all()
    said = " ".join(result.output.replace("│", " ").split())
    assert f"complete {int((~incomplete).sum())} incomplete (label null) {int(incomplete.sum())}" in said, said


@pytest.mark.parametrize("cuts", ["0", "-1"])
def test_lookahead_with_no_cut_exits_2_instead_of_passing_unchecked(tmp_path: Path, cuts: str) -> None:
    result = runner.invoke(app, ["research", "lookahead", str(REPO / "configs" / "quickstart.yaml"), "--cuts", cuts,
                                 "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert f"lookahead: {cuts} cuts check nothing" in result.output
    assert not (tmp_path / "lookahead.json").exists()


def test_lookahead_with_a_negative_seed_exits_2_naming_it_instead_of_a_numpy_traceback(tmp_path: Path) -> None:
    """--seed -1 ended in numpy's 'ValueError: expected non-negative integer' traceback (exit 1)."""
    result = runner.invoke(app, ["research", "lookahead", str(REPO / "configs" / "quickstart.yaml"), "--seed", "-1",
                                 "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "lookahead: seed -1 is negative; give a seed >= 0 (--seed, seed)" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not (tmp_path / "lookahead.json").exists()


@pytest.mark.parametrize(("command", "section"), [("labels", "labels"), ("cv", "labels"), ("walkforward", "labels"),
                                                  ("alpha", "alpha")])
def test_a_horizon_longer_than_the_window_exits_2_naming_the_field(tmp_path: Path, command: str, section: str) -> None:
    ts = btc_bars()["ts_event"].to_numpy()
    config = _windowed_config(tmp_path, int(ts[10_000]), int(ts[10_100]))
    raw = yaml.safe_load(config.read_text())
    raw["labels"] = {"method": "forward", "horizons": [1, 100]}
    raw["alpha"]["horizons"] = [1, 100]
    raw["walkforward"]["min_train"] = 50
    config.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    result = runner.invoke(app, ["research", command, str(config), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert (f"{section}.horizons: a horizon of 100 bars is longer than the data: no row has a bar 100 bars later "
            "(the longest horizon with a value is 99 bars)") in " ".join(result.output.split())
    assert not out.exists()


@pytest.mark.parametrize("command", ["labels", "cv"])
@pytest.mark.parametrize(("labels", "message"), [
    ({"vol_span": 100}, "labels.vol_span: the ewm volatility of span 100 is ready at no bar of the window "
                        "(at most 60 bars): no event has a barrier width; use a shorter vol_span"),
    ({"vol_span": 5, "cusum": 1000.0}, "labels.cusum: a CUSUM threshold of 1000.0 x volatility samples no event"),
])
def test_triple_barrier_labels_left_without_an_event_exit_2_naming_the_field(tmp_path: Path, command: str,
                                                                          labels: dict, message: str) -> None:
    # 60 bars: a volatility span of 100 never warms up, and no move reaches 1000 volatilities
    dataset = write_bars(tmp_path / "catalog", random_walk(60), "SIM-USD", "bars", H4)
    raw = _one_feature_config(tmp_path / "catalog", dataset)
    raw["labels"].update(labels)
    config = tmp_path / "short.yaml"
    config.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    result = runner.invoke(app, ["research", command, str(config), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not out.exists()


@pytest.mark.parametrize(("command", "section"), [("cv", "labels"), ("walkforward", "labels"), ("alpha", "alpha")])
def test_an_empty_horizon_list_exits_2_naming_the_field(tmp_path: Path, command: str, section: str) -> None:
    raw = yaml.safe_load(CONFIG.read_text())
    raw["dataset"]["catalog"] = str(REPO / "data" / "catalog")
    raw["labels"] = {"method": "forward", "horizons": [1]}
    raw[section]["horizons"] = []
    config = tmp_path / "empty.yaml"
    config.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    result = runner.invoke(app, ["research", command, str(config), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert f"{section}.horizons: List should have at least 1 item" in " ".join(result.output.split())
    assert not out.exists()


def test_walkforward_with_a_model_column_the_features_lack_exits_2_naming_it(tmp_path: Path) -> None:
    raw = yaml.safe_load(CONFIG.read_text())
    raw["dataset"]["catalog"] = str(REPO / "data" / "catalog")
    raw["model"]["columns"] = ["vol", "rsi_14"]
    config = tmp_path / "typo.yaml"
    config.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    result = runner.invoke(app, ["research", "walkforward", str(config), "--out", str(out)])
    assert result.exit_code == 2, repr(result.exception)
    assert (f"{config}: model.columns: ['rsi_14'] are not columns of the features (they are: r, vol, rsi, "
            "macd.macd, macd.signal, macd.hist, z, atr)") in " ".join(result.output.split())
    assert not out.exists()


def test_walkforward_with_a_misspelt_model_parameter_exits_2_before_training(tmp_path: Path) -> None:
    # XGBoost only warned about 'max_dept' and trained with its default depth; the run exited 0
    raw = yaml.safe_load(CONFIG.read_text())
    raw["dataset"]["catalog"] = str(REPO / "data" / "catalog")
    raw["model"]["params"] = {"n_estimators": 10, "max_dept": 2}
    config = tmp_path / "typo.yaml"
    config.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    result = runner.invoke(app, ["research", "walkforward", str(config), "--out", str(out)])
    assert result.exit_code == 2, repr(result.exception)
    assert "model.params: 'max_dept' is not a parameter of XGBClassifier; did you mean 'max_depth'?" in " ".join(result.output.split())
    assert not out.exists()


def test_alpha_on_two_instruments_exits_3_instead_of_an_all_nan_cross_sectional_ic(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog"
    walks = {f"{name}.SIM": random_walk(300, seed) for name, seed in (("AAA-USD", 1), ("BBB-USD", 2), ("CCC-USD", 5))}
    sources = [{"instrument": iid, "dataset": write_bars(catalog, bars, iid.split(".")[0], "bars", H4)}
               for iid, bars in walks.items()]
    raw = {"dataset": {"catalog": str(catalog), "sources": sources[:2],
                       "features": [{"name": "rsi", "kind": "rsi", "params": {"window": 14}, "input": "close"}]},
           "alpha": {"factors": ["rsi"], "horizons": [1, 3], "period": 50}}
    config = tmp_path / "pair.yaml"
    config.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    result = runner.invoke(app, ["research", "alpha", str(config), "--out", str(out)])
    assert result.exit_code == 3, result.output
    assert ("alpha: a cross-sectional IC needs at least 3 instruments at one time, but no timestamp has more "
            "than 2 rows") in " ".join(result.output.split())
    assert not out.exists()
    # three instruments: the IC of each timestamp is scipy's Spearman correlation across them
    raw["dataset"]["sources"] = sources
    config.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["research", "alpha", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    ic = json.loads((out / "alpha.json").read_text())["factors"]["rsi"]["ic"][0]
    rsi = {iid: build_dataset(load_research_config(config)[1]).query("instrument == @iid")["rsi"].to_numpy()
           for iid in walks}
    fwd = {iid: (bars["close"].shift(-1) / bars["close"] - 1.0).to_numpy() for iid, bars in walks.items()}
    per_time = [spearmanr([rsi[i][t] for i in walks], [fwd[i][t] for i in walks]).statistic for t in range(300)
                if all(np.isfinite(rsi[i][t]) and np.isfinite(fwd[i][t]) for i in walks)]
    assert ic["n"] == len(per_time) and ic["ic_mean"] == pytest.approx(float(np.mean(per_time)))


def test_cross_sectional_alpha_takes_the_last_bar_of_an_instrument_at_a_time(tmp_path: Path) -> None:
    """AAA's bars come in pairs sharing a time: its two rows entered one cross-section (4 rows for 3
    instruments) and the turnover's pivot stopped with 'Index contains duplicate entries'."""
    import pyarrow as pa

    from tradebus.data.catalog import Catalog

    catalog = tmp_path / "catalog"
    walks = {"AAA-USD.SIM": random_walk(600, 1), "BBB-USD.SIM": random_walk(300, 2), "CCC-USD.SIM": random_walk(300, 5)}
    times = walks["BBB-USD.SIM"]["ts_event"].to_numpy()
    walks["AAA-USD.SIM"]["ts_event"] = walks["AAA-USD.SIM"]["ts_init"] = times.repeat(2)
    cols = ["ts_event", "ts_init", "open", "high", "low", "close", "volume"]
    with Catalog(catalog).writer("sim", "spot", "AAA-USD", "bars", "year", kind="bars", distinct_times=False) as w:
        w.write(pa.Table.from_pandas(walks["AAA-USD.SIM"][cols], preserve_index=False))
        w.commit()
    sources = [{"instrument": "AAA-USD.SIM", "dataset": "sim/spot/AAA-USD/bars"}]
    sources += [{"instrument": iid, "dataset": write_bars(catalog, walks[iid], iid.split(".")[0], "bars", H4)}
                for iid in ("BBB-USD.SIM", "CCC-USD.SIM")]
    raw = {"dataset": {"catalog": str(catalog), "sources": sources,
                       "features": [{"name": "rsi", "kind": "rsi", "params": {"window": 14}, "input": "close"}]},
           "alpha": {"factors": ["rsi"], "horizons": [1], "period": 50}}
    config = tmp_path / "shared.yaml"
    config.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    result = runner.invoke(app, ["research", "alpha", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "alpha.json").read_text())["factors"]["rsi"]
    # by hand: AAA's second bar of each time (its odd rows), its forward return from that bar's close
    frame = build_dataset(load_research_config(config)[1])
    rsi = {iid: frame.query("instrument == @iid")["rsi"].to_numpy() for iid in walks}
    fwd = {iid: (bars["close"].shift(-1) / bars["close"] - 1.0).to_numpy() for iid, bars in walks.items()}
    rsi["AAA-USD.SIM"], fwd["AAA-USD.SIM"] = rsi["AAA-USD.SIM"][1::2], fwd["AAA-USD.SIM"][1::2]
    per_time = [spearmanr([rsi[i][t] for i in walks], [fwd[i][t] for i in walks]).statistic for t in range(300)
                if all(np.isfinite(rsi[i][t]) and np.isfinite(fwd[i][t]) for i in walks)]
    assert report["ic"][0]["n"] == len(per_time)
    assert report["ic"][0]["ic_mean"] == pytest.approx(float(np.mean(per_time)), rel=1e-12)
    wide = np.array([rsi[i] for i in walks]).T
    autocorr = [spearmanr(wide[t], wide[t - 1]).statistic for t in range(1, 300) if np.isfinite(wide[t - 1 : t + 1]).all()]
    assert report["turnover"] == pytest.approx(1.0 - float(np.mean(autocorr)), rel=1e-12)



def test_alpha_with_no_two_consecutive_cross_sections_sharing_3_instruments_gives_a_null_turnover_and_why(
        tmp_path: Path) -> None:
    """CCC has bars every other time: every pair of consecutive times shares 2 instruments; the turnover
    was null in alpha.json with no reason and a 'Mean of empty slice' RuntimeWarning on stderr."""
    catalog = tmp_path / "catalog"
    walks = {f"{name}.SIM": random_walk(300, seed) for name, seed in (("AAA-USD", 1), ("BBB-USD", 2), ("CCC-USD", 5))}
    walks["CCC-USD.SIM"] = walks["CCC-USD.SIM"].iloc[::2].reset_index(drop=True)
    sources = [{"instrument": iid, "dataset": write_bars(catalog, bars, iid.split(".")[0], "bars", H4)}
               for iid, bars in walks.items()]
    raw = {"dataset": {"catalog": str(catalog), "sources": sources,
                       "features": [{"name": "rsi", "kind": "rsi", "params": {"window": 14}, "input": "close"}]},
           "alpha": {"factors": ["rsi"], "horizons": [1], "period": 50}}
    config = tmp_path / "sparse.yaml"
    config.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    result = runner.invoke(app, ["research", "alpha", str(config), "--out", str(out)])
    assert result.exit_code == 0, repr(result.exception)
    report = json.loads((out / "alpha.json").read_text())["factors"]["rsi"]
    assert report["turnover"] is None
    assert report["turnover_undefined"] == ("alpha: turnover needs a rank correlation of at least 3 factor values, "
                                            "but no two cross-sections 1 time(s) apart (of 300 times) share more than "
                                            "2 instrument(s) with a factor value")
    assert report["ic"][0]["n"] > 0 and report["quantile_returns"]

def test_alpha_json_is_strict_json_with_null_for_an_undefined_icir(tmp_path: Path) -> None:
    raw = yaml.safe_load(CONFIG.read_text())
    raw["dataset"]["catalog"] = str(REPO / "data" / "catalog")
    raw["alpha"]["period"] = 15_000  # one IC block: its standard deviation, ICIR and t-statistic are undefined
    config = tmp_path / "one_block.yaml"
    config.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["research", "alpha", str(config), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output

    def refuse(constant: str) -> None:
        raise ValueError(f"alpha.json holds {constant}, which is not JSON")

    ic = json.loads((tmp_path / "alpha.json").read_text(), parse_constant=refuse)["factors"]["rsi"]["ic"][0]
    assert ic["n"] == 1 and ic["ic_std"] is None and ic["icir"] is None and ic["t_stat"] is None
    assert isinstance(ic["ic_mean"], float)


@pytest.mark.parametrize("trials", ["0", "-5"])
def test_alpha_refuses_fewer_than_one_trial(tmp_path: Path, trials: str) -> None:
    result = runner.invoke(app, ["research", "alpha", str(CONFIG), "--backtest", str(REPO / "configs" / "quickstart.yaml"),
                                 "--trials", trials, "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "--trials" in result.output and "x>=1" in result.output
    assert not (tmp_path / "alpha.json").exists()


def test_alpha_with_more_quantiles_than_rows_exits_2_naming_the_field_and_the_count(tmp_path: Path) -> None:
    """100000 quantiles of a 100-bar window exited 0 with one row per bucket, numbered with gaps up to 100000."""
    ts = btc_bars()["ts_event"].to_numpy()
    config = _windowed_config(tmp_path, int(ts[10_000]), int(ts[10_100]))
    raw = yaml.safe_load(config.read_text())
    raw["alpha"].update({"horizons": [1], "quantiles": 100_000, "period": 50})
    config.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    result = runner.invoke(app, ["research", "alpha", str(config), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert (f"{config}: alpha.quantiles: 100000 quantiles of 99 rows with a factor value and a forward return; give "
            "at most 99 (factor 'rsi')") in " ".join(result.output.split())
    assert not out.exists()
    raw["alpha"]["quantiles"] = 99
    config.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["research", "alpha", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    buckets = json.loads((out / "alpha.json").read_text())["factors"]["rsi"]["quantile_returns"]
    assert [b["quantile"] for b in buckets] == list(range(1, 100)) and {b["count"] for b in buckets} == {1}


def test_alpha_with_an_ic_block_longer_than_the_rows_exits_2_naming_the_field_and_the_count(tmp_path: Path) -> None:
    """The sample config's blocks of 500 rows on a 100-bar window exited 0 with every IC nan and n 0."""
    ts = btc_bars()["ts_event"].to_numpy()
    config = _windowed_config(tmp_path, int(ts[10_000]), int(ts[10_100]))
    raw = yaml.safe_load(config.read_text())
    raw["alpha"]["horizons"] = [1]
    config.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    result = runner.invoke(app, ["research", "alpha", str(config), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert (f"{config}: alpha.period: an IC block of 500 rows is longer than the factor's 100 rows (no IC); give at "
            "most 100 (factor 'rsi')") in " ".join(result.output.split())
    assert not out.exists()
    raw["alpha"]["period"] = 100
    config.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["research", "alpha", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "alpha.json").read_text())["factors"]["rsi"]["ic"][0]["n"] == 1


def test_walkforward_clip_quantile_bounds_know_no_later_bar(tmp_path: Path) -> None:
    # extreme returns from 6 bars into segment 1 on: no label of segment 0 nor of segment 1's training rows reads them
    bars = random_walk(3000, seed=11)
    perturbed = bars.copy()
    jump = np.exp(0.5 * (-1.0) ** np.arange(3000 - 2006))
    for col in ("open", "high", "low", "close"):
        perturbed.loc[2006:, col] = perturbed.loc[2006:, col].to_numpy() * jump
    raw = yaml.safe_load(CONFIG.read_text())
    raw["labels"] = {"method": "forward", "horizons": [6], "clip_quantile": 0.2}
    raw["walkforward"].update({"retrain_every": 1000, "min_train": 1000})
    raw["walkforward"]["instrument"].update({"venue": "SIM", "symbol": "WALK-USD"})
    raw["model"]["params"] = {"n_estimators": 10, "max_depth": 2}
    runs = []
    for name, frame in (("calm", bars), ("wild", perturbed)):
        dataset = write_bars(tmp_path / name, frame, "WALK-USD", "bars", H4)
        raw["dataset"].update({"catalog": str(tmp_path / name), "sources": [{"instrument": "WALK-USD.SIM",
                                                                             "dataset": dataset}]})
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(raw))
        out = tmp_path / f"out_{name}"
        result = runner.invoke(app, ["research", "walkforward", str(tmp_path / f"{name}.yaml"), "--out", str(out)])
        assert result.exit_code == 0, result.output
        runs.append((pd.read_parquet(out / "walkforward_segments.parquet"),
                     pd.read_parquet(out / "walkforward_fills.parquet")))
    (calm, calm_fills), (wild, wild_fills) = runs
    assert calm.iloc[0].equals(wild.iloc[0])  # segment 0: its IC, hit rate, fills and PnL
    assert calm["train_rows"].iat[1] == wild["train_rows"].iat[1]
    start = bars["ts_event"].iat[2000]
    assert calm_fills[calm_fills["ts_event"] < start].equals(wild_fills[wild_fills["ts_event"] < start])


def test_labels_clip_quantile_bounds_come_from_the_window_rows_only(tmp_path: Path) -> None:
    # extreme returns before dataset.start_ns (warm-up bars): they must not move the window's clipping bounds
    bars = random_walk(600, seed=12)
    wild = bars.copy()
    jump = np.exp(0.5 * (-1.0) ** np.arange(200))
    for col in ("open", "high", "low", "close"):
        wild.loc[:199, col] = wild.loc[:199, col].to_numpy() * jump
    start = int(bars["ts_event"].iat[200])
    frames = []
    for name, frame in (("calm", bars), ("wild", wild)):
        dataset = write_bars(tmp_path / name, frame, "WALK-USD", "bars", H4)
        raw = {"dataset": {"catalog": str(tmp_path / name), "start_ns": start,
                           "sources": [{"instrument": "WALK-USD.SIM", "dataset": dataset}],
                           "features": [{"name": "r", "kind": "log_ret", "input": "close"}]},
               "labels": {"method": "forward", "horizons": [1, 3], "clip_quantile": 0.1}}
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(raw))
        result = runner.invoke(app, ["research", "labels", str(tmp_path / f"{name}.yaml"), "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        frames.append(pd.read_parquet(tmp_path / name / "labels.parquet"))
    calm, wild_labels = frames
    pd.testing.assert_frame_equal(calm, wild_labels)
    close = bars["close"].to_numpy()
    fwd = close[203:] / close[200:-3] - 1.0  # the window's 3-bar returns (its last 3 rows have none)
    lo, hi = np.quantile(fwd, [0.1, 0.9])
    assert calm["fwd_3"].to_numpy()[:-3] == pytest.approx(np.clip(fwd, lo, hi), rel=1e-12)


@pytest.mark.parametrize("config", ["list", "unknown_system", "bad_system_field"])
def test_research_run_on_a_refused_config_leaves_no_output_directory(tmp_path: Path, config: str) -> None:
    path = tmp_path / f"{config}.yaml"
    if config == "list":
        path.write_text("- a\n")
    elif config == "unknown_system":
        path.write_text("system: nope\n")
    else:
        raw = yaml.safe_load((REPO / "configs" / "systems" / "ml_gated.yaml").read_text())
        raw["strategy"]["gates"]["zscore"]["treshold"] = 2
        path.write_text(yaml.safe_dump(raw))
    out = tmp_path / "new" / "out"
    result = runner.invoke(app, ["research", "run", str(path), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "new").exists()


def test_research_run_refuses_an_out_that_cannot_be_a_directory_before_reading_the_config(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", tmp_path / "file" / "sub"):
        result = runner.invoke(app, ["research", "run", str(tmp_path / "missing.yaml"), "--out", str(out)])
        assert result.exit_code == 2, result.output
        text = " ".join(result.output.split())
        assert f"--out {out}: cannot create the output directory (" in text
    assert (tmp_path / "file").read_text() == "x"


def test_labels_and_alpha_on_volume_bars_sharing_a_time_follow_the_file_order(tmp_path: Path) -> None:
    """921 volume bars hold 712 distinct times: labels and alpha were refused ('not strictly increasing')."""
    from tradebus.data.catalog import Catalog, DatasetRef
    from tradebus.data.ingest import import_path
    from tradebus.data.resample import bars_from_trades

    root = tmp_path / "catalog"
    import_path(root, REPO / "tests" / "fixtures" / "data" / "btcusdt-trades.parquet", venue="binance",
                market="spot", symbol="BTCUSDT", kind="trades")
    name = bars_from_trades(Catalog(root), DatasetRef("binance", "spot", "BTCUSDT", "trades"), "volume",
                            threshold=0.01).dataset
    bars = Catalog(root).read("binance", "spot", "BTCUSDT", name).to_pandas()
    assert len(bars) > bars["ts_event"].nunique()
    raw = {"dataset": {"catalog": str(root), "sources": [{"instrument": "BTCUSDT.BINANCE",
                                                           "dataset": f"binance/spot/BTCUSDT/{name}"}],
                       "features": [{"name": "rsi", "kind": "rsi", "params": {"window": 14}, "input": "close"}]},
           "labels": {"method": "forward", "horizons": [1, 3]},
           "alpha": {"factors": ["rsi"], "horizons": [1], "period": 100}}
    config = tmp_path / "volume.yaml"
    config.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    for command in ("dataset", "labels", "alpha"):
        result = runner.invoke(app, ["research", command, str(config), "--out", str(out)])
        assert result.exit_code == 0, result.output
    close, ts = bars["close"].to_numpy(), bars["ts_event"].to_numpy()
    fwd = np.append(close[1:] / close[:-1] - 1.0, np.nan)
    labels = pd.read_parquet(out / "labels.parquet")
    assert labels["ts_event"].tolist() == ts.tolist() and labels["t1_3"].tolist()[:-3] == ts[3:].tolist()
    np.testing.assert_array_equal(labels["fwd_1"].to_numpy(), fwd)
    # every dataset row meets its own forward return once (a join on the time alone pairs equal times crosswise)
    rsi = pd.read_parquet(out / "dataset.parquet")["rsi"].to_numpy()
    both = np.isfinite(rsi) & np.isfinite(fwd)
    buckets = json.loads((out / "alpha.json").read_text())["factors"]["rsi"]["quantile_returns"]
    assert sum(b["count"] for b in buckets) == both.sum()
    assert sum(b["count"] * b["mean_return"] for b in buckets) == pytest.approx(fwd[both].sum(), rel=1e-9, abs=1e-12)


def test_lookahead_on_outputs_that_are_not_ts_value_pairs_exits_2_naming_the_entry(tmp_path: Path) -> None:
    """A strategy appending bare floats to outputs stopped the check with 'cannot unpack non-iterable float'."""
    raw = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())
    raw["data"]["catalog"] = str(REPO / "data" / "catalog")
    raw["strategy"] = {"name": "research_leaky:BareOutputs", "instruments": ["BTC-USD.COINBASE"], "params": {}}
    config = tmp_path / "bare.yaml"
    config.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["research", "lookahead", str(config), "--cuts", "1", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "outputs[0] is" in result.output and "not a (ts, value) pair" in " ".join(result.output.split())
    assert not (tmp_path / "out").exists()


#: Runs ``tradebus`` with the given arguments under a file-size limit (argv[1], bytes): a write past it fails EFBIG.


def test_a_research_json_that_cannot_be_written_is_a_clear_error_and_leaves_the_previous_file(tmp_path: Path) -> None:
    """A full disk writing cv.json (EFBIG here, at half its size) ended 'tradebus research cv' with a raw 'OSError:
    [Errno 27] File too large' traceback, leaving .cv.json.tmp beside it, and the file was renamed without an fsync;
    it is now exit 2 naming cv.json, the previous cv.json left whole and nothing beside it."""
    out = tmp_path / "out"
    result = runner.invoke(app, ["research", "cv", str(CONFIG), "--out", str(out)])
    assert result.exit_code == 0, result.output
    before = (out / "cv.json").read_bytes()
    code, text = cli_under_file_size_limit(len(before) // 2, ["research", "cv", str(CONFIG), "--out", str(out)])
    assert code == 2, text
    assert "Traceback" not in text, text
    assert f"output {out / 'cv.json'}: cannot write it (EFBIG: File too large)" in text, text
    assert os.listdir(out) == ["cv.json"]
    assert (out / "cv.json").read_bytes() == before


def test_alpha_refuses_a_typo_in_the_backtests_strategy_params_before_reading_any_data(tmp_path: Path) -> None:
    """``research alpha ... --backtest`` loaded the backtest config only once the features, forward returns and
    factors of the whole dataset were computed: a misspelt parameter (``fastt``) failed only then. It is now loaded
    with the research config, before any data: here the research dataset has a truncated file (exit 3 when read),
    and the typo is refused first (exit 2, naming it)."""
    bars = random_walk(300)
    dataset = write_bars(tmp_path / "catalog", bars, "SIM-USD", "bars", 60_000_000_000)
    config = tmp_path / "research.yaml"
    config.write_text(yaml.safe_dump(_one_feature_config(tmp_path / "catalog", dataset)))
    part = next((tmp_path / "catalog").rglob("*.parquet"))
    part.write_bytes(part.read_bytes()[:-100])  # its size no longer the manifest's: a DataError on reading it
    text = (REPO / "configs" / "quickstart.yaml").read_text().replace("../data/catalog", str(REPO / "data" / "catalog"))
    assert "    fast: 20\n" in text
    backtest = tmp_path / "backtest.yaml"
    backtest.write_text(text.replace("    fast: 20\n", "    fastt: 20\n"))
    damaged = runner.invoke(app, ["research", "alpha", str(config), "--out", str(tmp_path / "a")])
    assert damaged.exit_code == 3 and "the manifest says" in " ".join(damaged.output.split()), damaged.output
    result = runner.invoke(app, ["research", "alpha", str(config), "--backtest", str(backtest),
                                 "--out", str(tmp_path / "b")])
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())
    assert f"{backtest}: invalid config:" in said and "strategy.params.fastt: unknown key" in said, said
    assert not (tmp_path / "b").exists()


def test_walkforward_on_short_side_labels_trades_the_price_direction_as_on_long_side_ones(tmp_path: Path) -> None:
    """labels.side: -1 made the model learn that a short would win and ModelSignal then bought on it: with
    symmetric barriers (pt = sl = 3) a short label is the long one negated (no bar of this walk reaches both), so
    both sides must train the same model of a rise and trade, fill and score alike."""
    raw = yaml.safe_load(CONFIG.read_text())
    dataset = write_bars(tmp_path / "catalog", random_walk(3000, seed=11), "SIM-USD", "bars", H4)
    raw["dataset"].update({"catalog": str(tmp_path / "catalog"),
                           "sources": [{"instrument": "SIM-USD.SIM", "dataset": dataset}]})
    raw["walkforward"].update({"retrain_every": 500, "min_train": 1000})
    raw["walkforward"]["instrument"].update({"venue": "SIM", "symbol": "SIM-USD"})
    raw["model"]["params"] = {"n_estimators": 10, "max_depth": 2}
    config = tmp_path / "side.yaml"
    outs = {}
    for side in (1, -1):
        raw["labels"].update({"pt": 3.0, "sl": 3.0, "side": side})
        config.write_text(yaml.safe_dump(raw))
        outs[side] = tmp_path / f"side{side}"
        for command in ("labels", "walkforward"):
            result = runner.invoke(app, ["research", command, str(config), "--out", str(outs[side])])
            assert result.exit_code == 0, result.output
    long, short = (pd.read_parquet(outs[s] / "labels.parquet") for s in (1, -1))
    assert (short["label"].dropna() == -long["label"].dropna()).all() and long["label"].nunique() == 2
    fills = pd.read_parquet(outs[-1] / "walkforward_fills.parquet")
    assert len(fills) > 10
    pd.testing.assert_frame_equal(fills, pd.read_parquet(outs[1] / "walkforward_fills.parquet"))
    assert (outs[-1] / "walkforward.json").read_bytes() == (outs[1] / "walkforward.json").read_bytes()


def test_walkforward_outputs_do_not_depend_on_the_models_thread_count(tmp_path: Path) -> None:
    """XGBoost fits on one thread unless model.params sets n_jobs; a researcher's n_jobs: 2 or 4 must not change
    what the same config and data give (row subsampling drawn from walkforward.seed, trees summed in order)."""
    raw = yaml.safe_load(CONFIG.read_text())
    dataset = write_bars(tmp_path / "catalog", random_walk(1500, seed=11), "SIM-USD", "bars", H4)
    raw["dataset"].update({"catalog": str(tmp_path / "catalog"),
                           "sources": [{"instrument": "SIM-USD.SIM", "dataset": dataset}]})
    raw["walkforward"].update({"retrain_every": 250, "min_train": 500})
    raw["walkforward"]["instrument"].update({"venue": "SIM", "symbol": "SIM-USD"})
    outs = []
    for n_jobs in (None, 2):
        raw["model"]["params"] = {"n_estimators": 30, "max_depth": 4, "subsample": 0.8, "colsample_bytree": 0.8,
                                  **({} if n_jobs is None else {"n_jobs": n_jobs})}
        config = tmp_path / f"jobs{n_jobs}.yaml"
        config.write_text(yaml.safe_dump(raw))
        outs.append(tmp_path / f"out{n_jobs}")
        result = runner.invoke(app, ["research", "walkforward", str(config), "--out", str(outs[-1])])
        assert result.exit_code == 0, result.output
    assert len(pd.read_parquet(outs[0] / "walkforward_fills.parquet")) > 10
    for out in outs[1:]:
        for name in ("walkforward.json", "walkforward_segments.parquet", "walkforward_equity.parquet",
                     "walkforward_fills.parquet"):
            assert (out / name).read_bytes() == (outs[0] / name).read_bytes(), (out, name)


def test_walkforward_trades_the_source_of_walkforward_instrument_and_warns_of_the_others(tmp_path: Path) -> None:
    """A dataset of two instruments was walked forward on the first with no word that the second was left out,
    and under walkforward.instrument's name whatever that was: BTC-USD.COINBASE, no instrument of the data, traded
    AAA-USD.SIM's bars. The named source is traded, the others are named in a warning, and a name that is no
    source's is refused before any data is read, naming the field and the sources' instruments."""
    raw = yaml.safe_load(CONFIG.read_text())
    catalog = tmp_path / "catalog"
    sources = [{"instrument": f"{name}.SIM", "dataset": write_bars(catalog, random_walk(1500, seed), name, "bars", H4)}
               for name, seed in (("AAA-USD", 1), ("BBB-USD", 2))]
    raw["dataset"].update({"catalog": str(catalog), "sources": sources})
    raw["walkforward"].update({"retrain_every": 500, "min_train": 1000})
    raw["model"]["params"] = {"n_estimators": 5, "max_depth": 2}
    config = tmp_path / "two.yaml"

    def run(symbol: str, sources: list[dict[str, str]], out: str) -> tuple[int, str]:
        raw["dataset"]["sources"] = sources
        raw["walkforward"]["instrument"].update({"venue": "SIM", "symbol": symbol})
        config.write_text(yaml.safe_dump(raw))
        result = runner.invoke(app, ["research", "walkforward", str(config), "--out", str(tmp_path / out)])
        return result.exit_code, " ".join(result.output.split())

    code, said = run("BBB-USD", sources, "second")
    assert code == 0, said
    assert (f"{config}: walkforward trains and trades dataset.sources[1] (BBB-USD.SIM, walkforward.instrument) "
            "alone; the other 1 source(s) (AAA-USD.SIM) are left out") in said
    code, said = run("BBB-USD", sources[1:], "alone")
    assert code == 0, said
    assert "left out" not in said
    for name in ("walkforward.json", "walkforward_fills.parquet", "walkforward_equity.parquet"):
        assert (tmp_path / "second" / name).read_bytes() == (tmp_path / "alone" / name).read_bytes()
    code, said = run("AAA-USD", sources[:1], "first")
    assert code == 0, said
    assert (tmp_path / "first" / "walkforward.json").read_bytes() != (tmp_path / "alone" / "walkforward.json").read_bytes()
    code, said = run("CCC-USD", sources, "none")
    assert code == 2, said
    assert (f"error: {config}: walkforward.instrument: CCC-USD.SIM (its symbol.venue) is no instrument of "
            "dataset.sources (they are: AAA-USD.SIM, BBB-USD.SIM)") in said
    assert not (tmp_path / "none").exists()
