"""Compiled XGBoost trees (tradebus.research.trees): the same floats as XGBoost's predict, row by row and in batch.

The reference is XGBoost itself, one ``predict`` call per row and per horizon model: what the
live path and the config backtests did before the trees were compiled.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from xgboost import XGBRegressor

from tradebus.features.batch import compute_features
from tradebus.research.dataset import load_events
from tradebus.research.edge import HorizonEdge, fit_edge
from tradebus.research.labels import forward_returns
from tradebus.research.ml_gated import load_ml_gated_config
from tradebus.research.model import ModelStep
from tradebus.research.trees import compile_regressors

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "systems" / "ml_gated.yaml"


def _bits(values: np.ndarray) -> np.ndarray:
    """The bit patterns: equal only when every float is the same (NaN and -0.0 included)."""
    values = np.ascontiguousarray(values)
    return values.view(np.int32 if values.dtype == np.float32 else np.int64)


@pytest.fixture(scope="module")
def shipped() -> tuple[HorizonEdge, np.ndarray, tuple[str, ...], list]:
    """The shipped system's edge model (its features, columns, horizons and parameters) fitted on the first 3,000
    bars of its ETH/BTC 5-minute bars, and the features of all 5,760 bars (warm-up rows dropped)."""
    cfg = load_ml_gated_config(CONFIG)
    _, bars = load_events(cfg.data.catalog, cfg.data.dataset)
    features = compute_features(bars, cfg.features, event="bar")
    columns = tuple(cfg.model.columns)
    X = features[list(columns)].to_numpy(dtype=np.float64)
    horizons = dict(cfg.model.horizons)
    forward = forward_returns(bars, sorted(horizons), kind="bps")
    train = np.arange(300, 3000)
    edge = fit_edge(X[train], {h: forward[f"fwd_{h}"].to_numpy()[train] for h in horizons}, horizons, cfg.model.params,
                    seed=cfg.model.seed, nthread=1)
    edge.offset, edge.scale = 0.25, 0.8
    return edge, X[~np.isnan(X).any(axis=1)], columns, cfg.features


@pytest.fixture(scope="module")
def xgboost_rows(shipped) -> np.ndarray:
    """The raw edge of every row, one XGBoost ``predict`` per row and horizon (the per-bar path before)."""
    edge, X, _, _ = shipped
    return np.concatenate([edge.raw_by_models(X[i:i + 1]) for i in range(len(X))])


def test_compiled_edge_equals_xgboost_row_by_row_on_every_shipped_bar(shipped, xgboost_rows) -> None:
    edge, X, _, _ = shipped
    assert len(X) > 5000
    batch = edge.raw(X)
    compiled_rows = np.concatenate([edge.raw(X[i:i + 1]) for i in range(len(X))])
    np.testing.assert_array_equal(_bits(batch), _bits(xgboost_rows))
    np.testing.assert_array_equal(_bits(compiled_rows), _bits(xgboost_rows))
    np.testing.assert_array_equal(_bits(edge.raw_by_models(X)), _bits(xgboost_rows))
    assert len(np.unique(batch)) > 1000  # the models split: not one leaf everywhere


def test_each_horizon_model_equals_its_own_predict(shipped) -> None:
    edge, X, _, _ = shipped
    compiled = compile_regressors([edge.models[h] for h in edge.horizons])
    assert compiled is not None
    out = compiled.predict(X)
    for k, h in enumerate(edge.horizons):
        np.testing.assert_array_equal(_bits(out[:, k]), _bits(edge.models[h].predict(X)))


def test_rows_on_the_split_conditions_and_missing_values_follow_xgboost() -> None:
    """A value equal to a split condition goes right; NaN goes to the learned default child (both directions occur:
    the training columns hold NaN where the target is high in one and low in the other)."""
    rng = np.random.default_rng(7)
    X = rng.normal(size=(2000, 4))
    y = X[:, 0] - 2 * X[:, 1] + rng.normal(size=2000) * 0.1
    X[(y > 1) & (rng.random(2000) < 0.5), 2] = np.nan
    X[(y < -1) & (rng.random(2000) < 0.5), 3] = np.nan
    edge = fit_edge(X, {1: y, 4: -y}, {1: 0.7, 4: 0.3}, {"n_estimators": 60, "max_depth": 4})
    compiled = compile_regressors([edge.models[1], edge.models[4]])
    split = compiled.left >= 0
    assert compiled.default_left[split].any() and not compiled.default_left[split].all()
    on_split = rng.normal(size=(int(split.sum()), 4))
    on_split[np.arange(len(on_split)), compiled.feature[split]] = compiled.threshold[split]
    just_below = on_split.copy()
    just_below[np.arange(len(on_split)), compiled.feature[split]] = np.nextafter(compiled.threshold[split],
                                                                              np.float32(-np.inf))
    holes = rng.normal(size=(500, 4))
    holes[rng.random(holes.shape) < 0.3] = np.nan
    for rows in (on_split, just_below, holes, X):
        expected = np.concatenate([edge.raw_by_models(rows[i:i + 1]) for i in range(len(rows))])
        np.testing.assert_array_equal(_bits(edge.raw(rows)), _bits(expected))


def test_a_batch_prediction_uses_no_later_row(shipped) -> None:
    """Each row's prediction is the same whatever the rows after it hold (a batch is rows, not a sequence)."""
    edge, X, _, _ = shipped
    rng = np.random.default_rng(1)
    full = edge.predict(X)
    for cut in (0, 1, 777, len(X) - 2):
        changed = X.copy()
        changed[cut + 1:] = rng.permutation(changed[cut + 1:]) * 3.0
        changed[cut + 1::5] = np.nan
        np.testing.assert_array_equal(_bits(edge.predict(changed)[:cut + 1]), _bits(full[:cut + 1]))
        np.testing.assert_array_equal(_bits(edge.predict(X[:cut + 1])), _bits(full[:cut + 1]))


def test_the_model_step_live_row_equals_its_batch_frame(shipped, xgboost_rows) -> None:
    edge, X, columns, specs = shipped
    step = ModelStep(edge, columns, tuple(specs), output="predict")
    step._slots = tuple(range(len(columns)))  # rows given in the model's column order
    frame = pd.DataFrame(X, columns=list(columns))
    batch = step.predict_frame(frame)
    rows = np.array([step.predict_row(X[i].tolist()) for i in range(len(X))])
    reference = edge.offset + edge.scale * xgboost_rows
    np.testing.assert_array_equal(_bits(batch), _bits(reference))
    np.testing.assert_array_equal(_bits(rows), _bits(reference))


def test_infinite_values_and_wrong_shapes_are_left_to_xgboost(shipped) -> None:
    edge, X, _, _ = shipped
    compiled = compile_regressors([edge.models[h] for h in edge.horizons])
    rows = X[:3].copy()
    rows[1, 0] = np.inf
    rows[2, 1] = 1e300  # finite in float64, inf in float32
    assert compiled.predict(rows) is None and compiled.predict(rows[:, :-1]) is None
    np.testing.assert_array_equal(_bits(edge.raw(rows)), _bits(edge.raw_by_models(rows)))
    with pytest.raises(ValueError):
        edge.raw(X[:2, :-1])


def test_models_the_compiled_trees_do_not_reproduce_are_predicted_by_xgboost() -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(400, 3))
    y = np.exp(X[:, 0])
    poisson = XGBRegressor(objective="count:poisson", n_estimators=10).fit(X, y)
    stopped = XGBRegressor(n_estimators=50, early_stopping_rounds=2).fit(X[:300], y[:300],
                                                                          eval_set=[(X[300:], y[300:])], verbose=False)
    other_missing = XGBRegressor(n_estimators=10, missing=-999.0).fit(X, y)
    square = XGBRegressor(n_estimators=10).fit(X, y)
    for model in (poisson, stopped, other_missing):
        assert compile_regressors([square, model]) is None
        edge = HorizonEdge({1: square, 2: model}, {1: 0.5, 2: 0.5})
        np.testing.assert_array_equal(_bits(edge.raw(X)), _bits(edge.raw_by_models(X)))
    assert compile_regressors([square]) is not None


def test_a_saved_edge_model_is_the_same_file_after_predicting(shipped) -> None:
    """The compiled trees are not pickled: a model saved after predicting is the file saved before, and loads into
    the same predictions."""
    edge, X, _, _ = shipped
    fresh = HorizonEdge(edge.models, edge.weights, edge.offset, edge.scale)
    before = io.BytesIO()
    joblib.dump(fresh, before)
    expected = fresh.predict(X)
    after = io.BytesIO()
    joblib.dump(fresh, after)
    assert before.getvalue() == after.getvalue()
    after.seek(0)
    np.testing.assert_array_equal(_bits(joblib.load(after).predict(X)), _bits(expected))


#: XGBoost model shapes: parameters, and whether the compiled trees reproduce it (else XGBoost predicts it).
SHAPES = {
    "squarederror": ({}, True),
    "base_score": ({"base_score": 0.3}, True),
    "absoluteerror": ({"objective": "reg:absoluteerror"}, True),
    "pseudohubererror": ({"objective": "reg:pseudohubererror", "huber_slope": 5.0}, True),
    "exact": ({"tree_method": "exact"}, True),
    "approx": ({"tree_method": "approx"}, True),
    "lossguide": ({"grow_policy": "lossguide", "max_leaves": 31}, True),
    "pruned": ({"gamma": 50.0, "max_depth": 6}, True),
    "300 deep trees": ({"n_estimators": 300, "max_depth": 8, "learning_rate": 0.3}, True),
    "quantileerror": ({"objective": "reg:quantileerror", "quantile_alpha": 0.3}, False),
    "tweedie": ({"objective": "reg:tweedie"}, False),
    "gamma": ({"objective": "reg:gamma"}, False),
    "dart": ({"booster": "dart"}, False),
    "parallel trees": ({"num_parallel_tree": 3}, False),
    "gblinear": ({"booster": "gblinear", "max_depth": None}, False),
    "missing 0": ({"missing": 0.0}, False),
    "early stopping": ({"n_estimators": 200, "early_stopping_rounds": 3}, False),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_model_shape_predicts_xgboosts_own_booster_floats(shape: str) -> None:
    """Each shape of regressor, trained and asked on rows with NaN in every column (both learned default directions
    taken where the trees split), gives through HorizonEdge the floats of ``Booster.predict`` on a DMatrix (the best
    iteration's trees when early-stopped; DART: its ``inplace_predict``), compiled where the compiled trees reproduce
    it, else through XGBoost."""
    params, compiled = SHAPES[shape]
    rng = np.random.default_rng(11)
    X = rng.normal(size=(1500, 5))
    y = 3 * X[:, 0] + X[:, 1] ** 2 + rng.normal(size=1500)
    X[(y > 1) & (rng.random(1500) < 0.3), 2] = np.nan
    X[(y < -1) & (rng.random(1500) < 0.3), 3] = np.nan
    X[rng.random(1500) < 0.05, 4] = np.nan
    if params.get("objective") in ("reg:tweedie", "reg:gamma"):
        y = np.abs(y) + 0.1
    fit: dict = {}
    if "early_stopping_rounds" in params:
        fit = {"eval_set": [(X[1000:], y[1000:])], "verbose": False}
    model = XGBRegressor(**{"n_estimators": 40, "max_depth": 4, "n_jobs": 1, **params}).fit(X[:1000], y[:1000], **fit)
    rows = rng.normal(size=(800, 5)) * 2
    rows[rng.random(rows.shape) < 0.2] = np.nan
    rows[:20, 0] = 0.0
    trees = compile_regressors([model])
    assert (trees is not None) is compiled
    if compiled:
        split = trees.left >= 0
        assert trees.default_left[split].any() and not trees.default_left[split].all()
    booster = model.get_booster()
    best = getattr(model, "best_iteration", None) if "early_stopping_rounds" in params else None
    iterations = (0, 0 if best is None else best + 1)
    if params.get("booster") == "dart":
        # a DART booster's DMatrix predict differs from its inplace_predict (sklearn's predict) in the last bits
        want = booster.inplace_predict(rows, iteration_range=iterations)
    else:
        want = booster.predict(xgb.DMatrix(rows, missing=params.get("missing", np.nan)), iteration_range=iterations)
    assert best is None or best + 1 < booster.num_boosted_rounds()  # the limit changes which trees count
    got = HorizonEdge({1: model}, {1: 1.0}).raw(rows)
    np.testing.assert_array_equal(_bits(got), _bits(want.astype(np.float64)))


def test_categorical_and_multi_target_models_are_not_compiled() -> None:
    rng = np.random.default_rng(5)
    X = rng.normal(size=(600, 3))
    y = X[:, 0] + rng.normal(size=600)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    frame["a"] = pd.Categorical(np.round(X[:, 0]).clip(-2, 2).astype(int))
    categorical = XGBRegressor(n_estimators=10, enable_categorical=True, tree_method="hist").fit(frame, y)
    assert any(json.loads(categorical.get_booster().save_raw(raw_format="json").decode())["learner"]["gradient_booster"]
               ["model"]["trees"][t]["split_type"] for t in range(10))
    two_targets = XGBRegressor(n_estimators=10).fit(X, np.c_[y, -y])
    one_tree_two_targets = XGBRegressor(n_estimators=10, multi_strategy="multi_output_tree").fit(X, np.c_[y, -y])
    for model in (categorical, two_targets, one_tree_two_targets):
        assert compile_regressors([model]) is None
