"""Calibrated logistic models and their walk-forward schedule (purging + embargo)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tradebus.errors import ConfigError
from tradebus.research.calibration import fit_calibrated_logit, out_of_fold_logit, walk_forward_schedule
from tradebus.research.splitters import PurgedKFold
from tradebus.strategies.models import CalibratedLogit, ModelSchedule

MIN = 60_000_000_000


def _data(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)) * [1.0, 5.0, 0.1] + [0.0, 10.0, -1.0]
    logit = 1.5 * (X[:, 0]) - 0.3 * (X[:, 1] - 10.0)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(int)
    t0 = np.arange(n, dtype=np.int64) * MIN
    return X, y, t0, t0 + 15 * MIN


def test_raw_probability_equals_sklearn_scaled_logistic_regression() -> None:
    X, y, t0, t1 = _data()
    model = fit_calibrated_logit(X, y, ["a", "b", "c"], t0=t0, t1=t1)
    ref = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
    assert np.allclose([model.raw(r) for r in X[:50]], ref.predict_proba(X[:50])[:, 1], atol=1e-6)
    p = np.array([model.predict(r) for r in X])
    assert ((p >= 0) & (p <= 1)).all()
    # calibrated: the mean probability matches the base rate, and ranking follows the raw score
    assert abs(p.mean() - y.mean()) < 0.05
    assert np.corrcoef(p, [model.raw(r) for r in X])[0, 1] > 0.95
    assert np.isnan(model.predict([np.nan, 1.0, 1.0]))
    again = CalibratedLogit.from_dict(json.loads(json.dumps(model.to_dict())))
    assert again == model
    iso = fit_calibrated_logit(X, y, ["a", "b", "c"], t0=t0, t1=t1, method="isotonic")
    assert list(iso.knots_y) == sorted(iso.knots_y)
    with pytest.raises(ConfigError, match="calibration method"):
        fit_calibrated_logit(X, y, ["a", "b", "c"], t0=t0, t1=t1, method="beta")  # type: ignore[arg-type]


def test_schedule_trains_only_on_labels_ended_before_start_minus_embargo() -> None:
    X, y, t0, t1 = _data()
    starts = [200 * MIN, 300 * MIN]
    embargo = 30 * MIN
    schedule, log = walk_forward_schedule(X, y, ["a", "b", "c"], t0=t0, t1=t1, starts=starts, embargo_ns=embargo)
    assert [row["samples"] for row in log] == [int((t1 < s - embargo).sum()) for s in starts]
    assert log[0]["samples"] == 200 - 15 - 30
    # perturbing every sample not allowed for the first model leaves it unchanged (no leak of the future)
    X2, y2 = X.copy(), y.copy()
    late = t1 >= starts[0] - embargo
    X2[late] *= -3.0
    y2[late] = 1 - y2[late]
    other, _ = walk_forward_schedule(X2, y2, ["a", "b", "c"], t0=t0, t1=t1, starts=starts[:1], embargo_ns=embargo)
    assert other.entries[0][1] == schedule.entries[0][1]
    assert schedule.at(starts[0] - 1) is None
    assert schedule.at(starts[0]) is schedule.entries[0][1] and schedule.at(starts[1] + 5) is schedule.entries[1][1]
    assert ModelSchedule.from_list(json.loads(json.dumps(schedule.to_list()))) == schedule


def test_schedule_skips_segments_with_too_few_samples_or_one_class() -> None:
    X, y, t0, t1 = _data(100)
    y_one = np.zeros_like(y)
    schedule, log = walk_forward_schedule(X, y_one, ["a", "b", "c"], t0=t0, t1=t1, starts=[20 * MIN, 90 * MIN],
                                          min_samples=10)
    assert schedule.entries == ()
    assert log[0]["trained"].startswith("no: 5 samples") and log[1]["trained"] == "no: one class only"


def test_out_of_fold_fit_standardises_with_its_own_training_rows_only() -> None:
    X, y, t0, t1 = _data()
    cv = PurgedKFold(4, t0=t0, t1=t1, embargo=10)
    oof = out_of_fold_logit(X, y, cv)
    # reference: scikit-learn's scaler fitted inside each fold, on the rows the splitter left to train on
    ref = cross_val_predict(make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)), X, y, cv=cv,
                            method="predict_proba")[:, 1]
    assert np.allclose(oof, ref, atol=1e-6)
    # rescaling half of fold 1's test rows changes nothing of the model that predicts the other half
    test = list(cv.split(X))[1][1]
    X2 = X.copy()
    X2[test[::2]] = X2[test[::2]] * 40.0 + 25.0
    assert (out_of_fold_logit(X2, y, cv)[test[1::2]] == oof[test[1::2]]).all()



def test_a_column_constant_but_for_rounding_in_a_fold_is_standardised_as_constant() -> None:
    """Feature 'c' is 0.3 on fold 0's training rows, as 0.3 or as 0.1 + 0.2 (std 2.8e-17), and 0.5 on its test
    rows: standardised by that std, the test rows sat 7e15 deviations out and fold 0 predicted 0 or 1 for
    every one of them. scikit-learn's scaler treats a variance within the rounding error of zero as a constant
    column (scale 1), and so does each fold now."""
    X, y, t0, t1 = _data()
    cv = PurgedKFold(4, t0=t0, t1=t1, embargo=10)
    train, test = next(cv.split(X))
    X[:, 2] = np.where(np.arange(len(X)) % 2 == 0, 0.3, 0.1 + 0.2)
    X[test, 2] = 0.5
    assert 0 < X[train, 2].std() < 1e-16
    oof = out_of_fold_logit(X, y, cv)
    ref = cross_val_predict(make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)), X, y, cv=cv,
                            method="predict_proba")[:, 1]
    assert np.allclose(oof, ref, atol=1e-6)
    assert ((oof[test] > 1e-6) & (oof[test] < 1.0 - 1e-6)).all()


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_feature_that_is_not_finite_is_named_by_row_and_column(bad: float) -> None:
    X, y, t0, t1 = _data()
    X[123, 1] = bad
    with pytest.raises(ConfigError, match=r"out-of-fold logit: feature column 1 is not finite at row 123"):
        out_of_fold_logit(X, y, PurgedKFold(4, t0=t0, t1=t1))


def test_calibration_is_platt_on_the_reference_out_of_fold_probabilities() -> None:
    X, y, t0, t1 = _data()
    X[:100, 1] *= 4.0  # the first fold's feature 'b' is far wider than the rest's: its moments matter
    model = fit_calibrated_logit(X, y, ["a", "b", "c"], t0=t0, t1=t1, folds=4)
    cv = PurgedKFold(4, t0=t0, t1=t1)
    oof = cross_val_predict(make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)), X, y, cv=cv,
                            method="predict_proba")[:, 1]
    q = np.clip(oof, 1e-6, 1.0 - 1e-6)  # the documented clip before the logit
    logit = np.log(q / (1.0 - q))
    platt = LogisticRegression(C=1e6).fit(logit[:, None], y)
    grid = np.linspace(0.0, 1.0, 201)[1:-1]
    expected = platt.predict_proba(np.log(grid / (1.0 - grid))[:, None])[:, 1]
    assert np.allclose(model.knots_y[1:-1], expected, atol=1e-6)


@pytest.mark.parametrize("spacing", ["regular", "irregular"])
def test_schedule_calibration_folds_embargo_the_samples_after_each_test_fold(monkeypatch: pytest.MonkeyPatch,
                                                                             spacing: str) -> None:
    """The segment cut kept a 30-minute embargo but the calibration's purged folds had none: the samples
    right after a test fold's labels ended trained the model that predicted it. Samples 1 minute apart,
    labels 15 minutes long, embargo 30 minutes: a fold testing samples a..b-1 trains on neither the
    15 samples before it (purged), nor b..b+14 (purged), nor b+15..b+44 (embargoed). Irregular: every
    sample starting within 30 minutes of a fold's label end is dropped."""
    import tradebus.research.calibration as calibration

    X, y, t0, t1 = _data(400)
    if spacing == "irregular":
        t0 = np.cumsum(np.random.default_rng(1).integers(1, 180, size=400)) * 1_000_000_000
        t1 = t0 + 15 * MIN
    splits: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    oof = calibration.out_of_fold_logit

    def recorded(Xf: np.ndarray, yf: np.ndarray, cv: PurgedKFold, **kwargs: float) -> np.ndarray:
        splits.extend((train, test, np.asarray(cv.t0), np.asarray(cv.t1)) for train, test in cv.split(Xf))
        return oof(Xf, yf, cv, **kwargs)

    monkeypatch.setattr(calibration, "out_of_fold_logit", recorded)
    embargo = 30 * MIN
    start = int(t0[-1]) + 1
    walk_forward_schedule(X, y, ["a", "b", "c"], t0=t0, t1=t1, starts=[start], embargo_ns=embargo)
    assert len(splits) == 4
    for train, test, s0, s1 in splits:
        a, b = int(test[0]), int(test[-1]) + 1
        if spacing == "regular":
            n = len(s0)
            assert train.tolist() == [i for i in range(n) if not a - 15 <= i < b + 45]
        else:
            end = s1[a:b].max()
            after = (s0 > end) & (s0 <= end + embargo)
            assert after.any() == (b < len(s0))  # the last fold has no sample after it
            assert not np.isin(np.flatnonzero(after), train).any()
