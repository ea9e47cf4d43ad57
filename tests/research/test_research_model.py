"""Model step: batch predictions equal the live outputs of a backtest; calibration on purged OOF; spec hash."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from research_helpers import CATALOG, DATASET, IID, REPO, SPECS
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from xgboost import XGBClassifier

from tradebus.data.replay import Replay, ReplaySource
from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel
from tradebus.errors import ConfigError, FeatureError
from tradebus.features.bank import FeatureBank
from tradebus.research.dataset import build_dataset, load_config
from tradebus.research.labels import forward_returns
from tradebus.research.model import ModelStep, fit_calibrated, load_model
from tradebus.research.splitters import PurgedKFold
from tradebus.research.strategy import ModelSignal

ROWS = 2500
COLUMNS = ("vol", "rsi", "macd.hist", "z", "atr")


@pytest.fixture(scope="module")
def dataset() -> object:
    config = load_config({"catalog": str(CATALOG), "sources": [{"instrument": IID, "dataset": DATASET}],
                          "features": SPECS})
    return build_dataset(config)


def fit_xy(dataset: object) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from research_helpers import btc_bars

    bars = btc_bars()
    fwd = forward_returns(bars, [6])
    X = dataset[list(COLUMNS)].to_numpy()  # type: ignore[index]
    ok = ~np.isnan(X).any(axis=1) & ~np.isnan(fwd["fwd_6"].to_numpy())
    ok[ROWS:] = False
    y = (fwd["fwd_6"].to_numpy() > 0).astype(int)
    return X[ok], y[ok], bars["ts_event"].to_numpy()[ok], fwd["t1_6"].to_numpy()[ok]


def run_live(step: ModelSignal, end_ns: int) -> Kernel:
    kernel = Kernel([Instrument(venue="COINBASE", symbol="BTC-USD", tick_size=0.01, lot_size=1e-8)])
    kernel.add_strategy(step)
    kernel.run(Replay([ReplaySource.from_catalog(CATALOG, IID, *DATASET.split("/"))], end_ns=end_ns))
    return kernel


@pytest.mark.parametrize("kind", ["xgboost", "logistic"])
def test_batch_predictions_equal_the_live_outputs_of_a_backtest(dataset: object, kind: str) -> None:
    X, y, _, _ = fit_xy(dataset)
    if kind == "xgboost":
        model = XGBClassifier(n_estimators=30, max_depth=3, n_jobs=1, random_state=0).fit(X, y)
    else:
        model = LogisticRegression(max_iter=500).fit(X, y)
    step = ModelStep(model, COLUMNS, tuple(SPECS))
    end = int(dataset["ts_event"].iat[ROWS + 400])  # type: ignore[index]
    strategy = ModelSignal(IID, model=step, quantity=0.1)
    kernel = run_live(strategy, end)
    live = np.array([v for _, v in strategy.outputs])
    batch = step.predict_frame(dataset.iloc[: ROWS + 401])  # type: ignore[attr-defined]
    assert len(live) == ROWS + 401
    assert np.array_equal(live, batch, equal_nan=True)
    assert np.isfinite(live[-100:]).all() and len(kernel.result.fills) > 0


def test_calibration_is_fitted_on_purged_out_of_fold_probabilities(dataset: object) -> None:
    X, y, t0, t1 = fit_xy(dataset)
    cv = PurgedKFold(4, t0=t0, t1=t1, embargo=5)
    import pandas as pd

    frame = pd.DataFrame(X, columns=list(COLUMNS))
    est = LogisticRegression(max_iter=500)
    step, oof = fit_calibrated(est, frame, y, cv, SPECS, method="isotonic")
    # independent: the same out-of-fold loop by hand
    manual = np.empty(len(y))
    for train, test in cv.split(X):
        manual[test] = LogisticRegression(max_iter=500).fit(X[train], y[train]).predict_proba(X[test])[:, 1]
    np.testing.assert_allclose(oof, manual, rtol=1e-12)
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(manual, y)
    raw = LogisticRegression(max_iter=500).fit(X, y).predict_proba(X[:50])[:, 1]
    np.testing.assert_allclose(step.predict_frame(frame.iloc[:50]), iso.predict(raw), rtol=1e-12)
    platt, _ = fit_calibrated(est, frame, y, cv, SPECS, method="sigmoid")
    sigmoid = LogisticRegression(C=1e6).fit(manual[:, None], y)
    np.testing.assert_allclose(platt.predict_frame(frame.iloc[:50]), sigmoid.predict_proba(raw[:, None])[:, 1],
                               rtol=1e-12)


def test_saved_model_refuses_other_specs_and_a_tampered_hash(tmp_path: Path, dataset: object) -> None:
    X, y, _, _ = fit_xy(dataset)
    step = ModelStep(XGBClassifier(n_estimators=5, n_jobs=1, random_state=0).fit(X, y), COLUMNS, tuple(SPECS))
    path = step.save(tmp_path / "m.joblib")
    again = load_model(path, SPECS)
    assert again.hash == step.hash
    assert np.array_equal(again.predict_frame(dataset), step.predict_frame(dataset), equal_nan=True)  # type: ignore[arg-type]
    changed = [dict(s) for s in SPECS]
    changed[4] = {**changed[4], "params": {"window": 15}}  # rsi window 14 -> 15
    with pytest.raises(ConfigError, match=r"trained on features with hash .*; the given specs differ: feature 'rsi': "
                                          r"params \{'window': 15\} \(trained with \{'window': 14\}\)$"):
        load_model(path, changed)
    with pytest.raises(ConfigError, match=r"differ: feature 'rsi': params .*; feature '\w+' is missing$"):
        load_model(path, changed[:-1])
    import joblib

    payload = joblib.load(path)
    payload["specs"] = changed
    joblib.dump(payload, tmp_path / "bad.joblib")
    with pytest.raises(ConfigError, match="does not match its specs"):
        load_model(tmp_path / "bad.joblib")
    with pytest.raises(FeatureError, match="'rsi' is not the one"):
        step.bind(FeatureBank(changed))


def test_a_model_that_cannot_be_written_is_a_clear_error_and_leaves_the_saved_one(tmp_path: Path, dataset: object) -> None:
    """A full disk while saving a model (EFBIG here, at half its size) raised a raw 'OSError: [Errno 27] File too
    large' and left .m.joblib.tmp beside the model; now a ConfigError naming the file, the model saved before left
    whole and nothing beside it."""
    import os
    import resource
    import signal

    X, y, _, _ = fit_xy(dataset)
    step = ModelStep(XGBClassifier(n_estimators=5, n_jobs=1, random_state=0).fit(X, y), COLUMNS, tuple(SPECS))
    path = step.save(tmp_path / "m.joblib")
    before = path.read_bytes()
    other = ModelStep(XGBClassifier(n_estimators=9, n_jobs=1, random_state=1).fit(X, y), COLUMNS, tuple(SPECS))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) // 2, hard))
    try:
        with pytest.raises(ConfigError) as raised:
            other.save(path)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
    assert str(raised.value) == f"output {path}: cannot write it (EFBIG: File too large)"
    assert os.listdir(tmp_path) == ["m.joblib"]
    assert path.read_bytes() == before


def test_a_model_fitted_on_other_columns_is_refused(dataset: object) -> None:
    import pandas as pd

    X, y, _, _ = fit_xy(dataset)
    model = LogisticRegression().fit(pd.DataFrame(X, columns=["a", "b", "c", "d", "e"]), y)
    with pytest.raises(ConfigError, match="fitted on columns"):
        ModelStep(model, COLUMNS, tuple(SPECS))


def test_model_signal_refuses_an_upper_threshold_below_the_lower(tmp_path: Path) -> None:
    """With upper 0.3 and lower 0.7 an output of 0.5 is above one and below the other: the documented band in which
    the position is kept does not exist (it used to run as one threshold, exit 0)."""
    from typer.testing import CliRunner

    from tradebus.cli import app

    step = ModelStep(LogisticRegression().fit([[-1.0], [1.0]], [0, 1]), ("r",),
                     ({"name": "r", "kind": "log_ret", "input": "close"},))
    with pytest.raises(ConfigError, match=r"upper \(0.3\) is below lower \(0.7\)"):
        ModelSignal(IID, model=step, quantity=0.1, upper=0.3, lower=0.7)
    ModelSignal(IID, model=step, quantity=0.1, upper=0.5, lower=0.5)  # one threshold, by choice
    raw = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())
    raw["data"]["catalog"] = str(CATALOG)
    raw["strategy"] = {"name": "tradebus.research.strategy:ModelSignal", "instruments": [IID],
                       "params": {"model": str(step.save(tmp_path / "m.joblib")), "quantity": 0.1,
                                  "upper": 0.3, "lower": 0.7}}
    config = tmp_path / "inverted.yaml"
    config.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["backtest", str(config), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert "strategy.params: upper (0.3) is below lower (0.7)" in " ".join(result.output.split())
    assert not (tmp_path / "run").exists()


class _Seen:
    """A fitted model that keeps every matrix it was asked about (a live row's array, once per call)."""

    def __init__(self, model: LogisticRegression) -> None:
        self.model, self.seen = model, []

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        self.seen.append(X)
        return self.model.predict_proba(X)


def test_a_live_row_is_read_into_one_buffer_and_predicts_as_the_array_built_per_row(dataset: object) -> None:
    """predict_row built a new (1, columns) array from a list every event; it now fills one buffer in place
    (the bank's columns picked in the model's order), with the same outputs, NaN where a feature is."""
    X, y, _, _ = fit_xy(dataset)
    model = LogisticRegression(max_iter=500).fit(X, y)
    seen = _Seen(model)
    step = ModelStep(seen, COLUMNS, tuple(SPECS))  # type: ignore[arg-type]
    slots = (6, 1, 4, 0, 2)  # where the bank keeps the model's columns, in the model's order
    step._slots = slots
    rng = np.random.default_rng(5)
    rows = []
    for k in range(300):
        row = [float(v) for v in rng.normal(size=8) * 1e3]  # junk in the columns the model does not read
        for slot, value in zip(slots, X[k], strict=True):
            row[slot] = float(value)
        if k % 7 == 3:
            row[slots[k % 5]] = float("nan")
        rows.append(row)
    got = np.array([step.predict_row(row) for row in rows])
    want = np.array([float("nan") if any(np.isnan(row[i]) for i in slots)
                     else float(model.predict_proba(np.array([[row[i] for i in slots]]))[:, -1][0]) for row in rows])
    assert np.array_equal(got.view(np.int64), want.view(np.int64)) and np.isnan(got).sum() == 43
    assert len(seen.seen) == 257 and all(x is seen.seen[0] for x in seen.seen)
    one = ModelStep(LogisticRegression(max_iter=500).fit(X[:, :1], y), COLUMNS[:1], tuple(SPECS))
    one._slots = (3,)
    assert one.predict_row(rows[0]) == float(one.model.predict_proba(np.array([[rows[0][3]]]))[0, -1])
