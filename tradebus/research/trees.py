"""Compiled evaluation of fitted XGBoost regressors, bit-identical to XGBoost's own ``predict``.

:func:`compile_regressors` reads the trees of one or more fitted ``xgboost.XGBRegressor``
(the booster's JSON model) into flat arrays, and :meth:`CompiledTrees.predict` evaluates all
of them on a matrix in one Numba call: one column per regressor. It does what XGBoost's CPU
predictor does, in the same order, so the floats are the same:

* the row is cast to float32 (round to nearest, as XGBoost's array adapter does);
* in every tree a node sends the row left when ``x < split_condition`` (float32), right
  otherwise, and to its default child when ``x`` is NaN;
* the prediction starts at the model's ``base_score`` (float32) and adds the leaf value of
  every tree in tree order, in float32.

Only what this reproduces is compiled: a ``gbtree`` booster with one target, one tree per
round, numerical splits, an objective with an identity link (``reg:squarederror``,
``reg:absoluteerror``, ``reg:pseudohubererror``) and no early-stopping iteration limit.
Anything else gets ``None`` from :func:`compile_regressors`, and a matrix holding ``+-inf`` or a
value beyond float32's range ``None`` from :meth:`CompiledTrees.predict`: the caller asks XGBoost itself. ``tests/research/test_research_trees.py`` checks equality with
XGBoost on every row of the shipped walk-forward's features and on rows placed exactly on the
split conditions.

The point is the per-event cost: XGBoost's ``inplace_predict`` costs about 0.4-0.8 ms a call
(the setup of a prediction, not the trees), one call per model per bar; a compiled call for all
models of a bar costs a few microseconds (``bench/ml_gated.py``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from numba import njit

__all__ = ["CompiledTrees", "compile_regressors"]

#: Objectives whose prediction is the margin itself (no link function).
_IDENTITY_OBJECTIVES = frozenset({"reg:squarederror", "reg:absoluteerror", "reg:pseudohubererror"})
#: Beyond it a value may become inf in float32 (refused: XGBoost decides).
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class CompiledTrees:
    """The trees of several regressors as flat arrays (build with :func:`compile_regressors`).

    Parameters
    ----------
    base
        ``base_score`` of each regressor (float32).
    tree_start
        Regressor ``m`` owns trees ``tree_start[m]:tree_start[m + 1]``.
    roots
        Node index of each tree's root.
    feature, threshold, left, right, default_left, value
        Per node: split column, split condition (float32), children (``-1``: a leaf), whether
        NaN goes left, and the leaf value (float32).
    n_features
        Columns a row must have.
    """

    def __init__(self, base: np.ndarray, tree_start: np.ndarray, roots: np.ndarray, feature: np.ndarray,
                 threshold: np.ndarray, left: np.ndarray, right: np.ndarray, default_left: np.ndarray,
                 value: np.ndarray, n_features: int) -> None:
        self.base = np.ascontiguousarray(base, dtype=np.float32)
        self.tree_start = np.ascontiguousarray(tree_start, dtype=np.int64)
        self.roots = np.ascontiguousarray(roots, dtype=np.int64)
        self.feature = np.ascontiguousarray(feature, dtype=np.int64)
        self.threshold = np.ascontiguousarray(threshold, dtype=np.float32)
        self.left = np.ascontiguousarray(left, dtype=np.int64)
        self.right = np.ascontiguousarray(right, dtype=np.int64)
        self.default_left = np.ascontiguousarray(default_left, dtype=np.bool_)
        self.value = np.ascontiguousarray(value, dtype=np.float32)
        self.n_features = int(n_features)

    def predict(self, X: np.ndarray) -> np.ndarray | None:
        """Every regressor's prediction on every row: float32 ``(rows, regressors)``.

        ``None`` when ``X`` is not a matrix of the models' columns or holds ``+-inf`` or a value beyond
        float32's range: ask XGBoost, which decides what such input means (or says what is wrong).
        """
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features or (np.abs(X) > _FLOAT32_MAX).any():
            return None
        rows = np.ascontiguousarray(X, dtype=np.float32)
        out = np.empty((rows.shape[0], len(self.base)), dtype=np.float32)
        _predict(rows, self.base, self.tree_start, self.roots, self.feature, self.threshold, self.left, self.right,
                 self.default_left, self.value, out)
        return out


@njit(cache=True)
def _predict(rows: np.ndarray, base: np.ndarray, tree_start: np.ndarray, roots: np.ndarray, feature: np.ndarray,
             threshold: np.ndarray, left: np.ndarray, right: np.ndarray, default_left: np.ndarray,
             value: np.ndarray, out: np.ndarray) -> None:
    for m in range(base.shape[0]):
        for r in range(rows.shape[0]):
            acc = base[m]
            for t in range(tree_start[m], tree_start[m + 1]):
                node = roots[t]
                while left[node] >= 0:
                    x = rows[r, feature[node]]
                    if np.isnan(x):
                        node = left[node] if default_left[node] else right[node]
                    elif x < threshold[node]:
                        node = left[node]
                    else:
                        node = right[node]
                acc += value[node]
            out[r, m] = acc


def _float32(text: str) -> np.float32:
    """A float of XGBoost's JSON (``"1.5E-1"`` or ``"[1.5E-1]"``) as float32."""
    values = json.loads(text) if text.startswith("[") else [float(text)]
    if len(values) != 1:
        raise ValueError(f"one value expected, got {text!r}")
    return np.float32(values[0])


def _trees_of(regressor: Any) -> tuple[np.float32, list[dict[str, Any]], int] | None:
    """``(base_score, trees, n_features)`` of a regressor this module reproduces, else ``None``."""
    if type(regressor).__module__.split(".")[0] != "xgboost" or not hasattr(regressor, "get_booster"):
        return None
    missing = getattr(regressor, "missing", np.nan)
    if getattr(regressor, "best_iteration", None) is not None or missing is None or not np.isnan(missing):
        return None
    try:
        booster = regressor.get_booster()
    except Exception:  # noqa: BLE001 -- not fitted: XGBoost will say so itself
        return None
    if booster.attr("best_iteration") is not None:
        return None
    learner = json.loads(booster.save_raw(raw_format="json"))["learner"]
    param = learner["learner_model_param"]
    gbm = learner["gradient_booster"]
    if (gbm.get("name") != "gbtree" or learner["objective"]["name"] not in _IDENTITY_OBJECTIVES
            or int(param.get("num_target", "1")) != 1 or int(param.get("num_class", "0")) > 1):
        return None
    model = gbm["model"]
    if int(model["gbtree_model_param"].get("num_parallel_tree", "1")) != 1 or any(model["tree_info"]):
        return None
    trees = model["trees"]
    if any(any(tree.get("split_type", ())) or int(tree["tree_param"].get("size_leaf_vector", "1")) > 1
           for tree in trees):
        return None
    return _float32(param["base_score"]), trees, int(param["num_feature"])


def compile_regressors(regressors: Sequence[Any]) -> CompiledTrees | None:
    """The trees of ``regressors`` (fitted ``XGBRegressor``, same columns) for one-call evaluation.

    ``None`` when one of them is not a model :class:`CompiledTrees` reproduces exactly (module
    docstring): predict those with XGBoost.
    """
    parts = [_trees_of(r) for r in regressors]
    if not parts or any(p is None for p in parts) or len({p[2] for p in parts}) != 1:  # type: ignore[index]
        return None
    base, tree_start, roots = [], [0], []
    feature: list[np.ndarray] = []
    threshold: list[np.ndarray] = []
    left: list[np.ndarray] = []
    right: list[np.ndarray] = []
    default_left: list[np.ndarray] = []
    nodes = 0
    for score, trees, _ in parts:  # type: ignore[misc]
        base.append(score)
        for tree in trees:
            lc = np.asarray(tree["left_children"], dtype=np.int64)
            rc = np.asarray(tree["right_children"], dtype=np.int64)
            roots.append(nodes)
            feature.append(np.asarray(tree["split_indices"], dtype=np.int64))
            threshold.append(np.asarray([np.float32(v) for v in tree["split_conditions"]], dtype=np.float32))
            left.append(np.where(lc >= 0, lc + nodes, -1))
            right.append(np.where(rc >= 0, rc + nodes, -1))
            default_left.append(np.asarray(tree["default_left"], dtype=np.bool_))
            nodes += len(lc)
        tree_start.append(len(roots))
    thresholds = np.concatenate(threshold)
    # a leaf's value is stored in its split condition
    return CompiledTrees(np.asarray(base, dtype=np.float32), np.asarray(tree_start), np.asarray(roots),
                         np.concatenate(feature), thresholds, np.concatenate(left), np.concatenate(right),
                         np.concatenate(default_left), thresholds, parts[0][2])  # type: ignore[index]
