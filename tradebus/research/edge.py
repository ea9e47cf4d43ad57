"""Expected-return ("edge") models: one regressor per horizon, combined by weights, in bps.

:class:`HorizonEdge` holds one fitted regressor per forward horizon (bars) and predicts
``offset + scale * sum_h w_h * model_h(x)``: the expected return in basis points over the
weighted horizons. The target it is trained on is the same weighted sum of the forward
returns (:func:`combined_target`), so the output is an expected return in bps, comparable
with a round-trip cost. Horizons are summed in ascending order and every operation is
element-wise, so a batch prediction equals the row-by-row (live) one bit for bit when the
per-horizon models are tree ensembles (XGBoost): :attr:`HorizonEdge.batch_equals_rows`
tells :class:`~tradebus.research.model.ModelStep` so. XGBoost regressors are evaluated as
compiled trees (:mod:`tradebus.research.trees`: the same floats as their ``predict``, all
horizons in one call of a few microseconds instead of one ~0.5 ms XGBoost call per horizon),
which makes the per-bar (live, config backtest) prediction cheap; :meth:`HorizonEdge.raw_by_models`
is the path through XGBoost itself.

Fitting (:func:`fit_edge`) is deterministic: XGBoost gets ``random_state=seed`` and
``n_jobs=nthread`` (1 by default). Training rows are taken by the caller (purged: their
labels are known before the data the model will trade).

Tuning (:func:`tune_edge`) scores every combination of a parameter grid by the rank IC
of the purged out-of-fold edge (:class:`~tradebus.research.splitters.PurgedKFold`)
against the combined target; ties keep the earlier combination. Pruning
(:func:`prune_columns`) keeps the columns with the largest importance (weighted over the
horizons). Calibration (:func:`calibrate_edge`) regresses the realised combined return on
the purged out-of-fold edge (OLS) and maps the raw edge through that line, with the slope
floored at 0: a model without out-of-fold skill gets a flat edge, the constant ``offset`` (the
mean realised return). Of the :class:`~tradebus.strategies.gates.EdgeGates`, the z-score gate
blocks it (the spread of a flat window is 0, or rounding's, whose z is within 1: below a threshold
of 1 or more) and the cost gate blocks it only while ``|offset|`` is within the round trip; the
quantile and persistence gates pass it. With the z-score gate off (or a threshold below 1) such a
model trades the sign of its training-mean return on every bar that the cost gate lets through.
"""

from __future__ import annotations

import itertools
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from tradebus.errors import ConfigError
from tradebus.research.trees import CompiledTrees, compile_regressors

__all__ = [
    "HorizonEdge",
    "TuneResult",
    "calibrate_edge",
    "check_params",
    "check_values",
    "combined_target",
    "fit_edge",
    "oof_edge",
    "prune_columns",
    "rank_ic",
    "tune_edge",
]


class HorizonEdge:
    """Weighted sum of per-horizon regressors: the expected return in bps (module docstring).

    Parameters
    ----------
    models
        ``horizon -> fitted regressor`` (``predict`` returns bps).
    weights
        ``horizon -> weight`` (same keys).
    offset, scale
        Calibration: ``offset + scale * raw``.
    """

    #: Batch predictions equal row-by-row ones (tree ensembles, element-wise combination).
    batch_equals_rows = True
    #: Evaluate XGBoost regressors compiled (:mod:`tradebus.research.trees`); ``False``: their ``predict``.
    compile_trees = True

    def __init__(self, models: Mapping[int, Any], weights: Mapping[int, float], offset: float = 0.0,
                 scale: float = 1.0) -> None:
        if set(models) != set(weights):
            raise ConfigError(f"edge: models for horizons {sorted(models)} but weights for {sorted(weights)}")
        self.horizons = tuple(sorted(int(h) for h in models))
        self.models = {h: models[h] for h in self.horizons}
        self.weights = {h: float(weights[h]) for h in self.horizons}
        self.offset = float(offset)
        self.scale = float(scale)

    def raw(self, X: np.ndarray) -> np.ndarray:
        """The uncalibrated weighted sum.

        XGBoost regressors are evaluated by :class:`~tradebus.research.trees.CompiledTrees`, all
        horizons in one call (the same floats as their ``predict``); other models by ``predict``.
        """
        compiled = self._compiled()
        preds = None if compiled is None else compiled.predict(X)
        if preds is None:
            return self.raw_by_models(X)
        out = np.zeros(len(X), dtype=np.float64)
        for k, h in enumerate(self.horizons):
            out = out + self.weights[h] * np.asarray(preds[:, k], dtype=np.float64)
        return out

    def raw_by_models(self, X: np.ndarray) -> np.ndarray:
        """:meth:`raw` through every model's own ``predict`` (the reference of the compiled path)."""
        out = np.zeros(len(X), dtype=np.float64)
        for h in self.horizons:
            out = out + self.weights[h] * np.asarray(self.models[h].predict(X), dtype=np.float64)
        return out

    def _compiled(self) -> CompiledTrees | None:
        if not self.compile_trees:
            return None
        if "_trees" not in self.__dict__:
            self._trees = compile_regressors([self.models[h] for h in self.horizons])
        return self._trees

    def __getstate__(self) -> dict[str, Any]:
        # the compiled trees are rebuilt from the models on first use: saved files stay as they were
        state = dict(self.__dict__)
        state.pop("_trees", None)
        return state

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The calibrated edge in bps."""
        return self.offset + self.scale * self.raw(X)

    @property
    def feature_importances_(self) -> np.ndarray:
        """Per-column importance: the models' importances averaged with ``|weight|``."""
        total = sum(abs(w) for w in self.weights.values()) or 1.0
        return sum(abs(self.weights[h]) / total * np.asarray(self.models[h].feature_importances_, dtype=np.float64)
                   for h in self.horizons)


def combined_target(forward: Mapping[int, np.ndarray], weights: Mapping[int, float]) -> np.ndarray:
    """``sum_h w_h * forward[h]`` (NaN where any horizon's return is unknown)."""
    out = np.zeros(len(next(iter(forward.values()))), dtype=np.float64)
    for h in sorted(weights):
        out = out + float(weights[h]) * np.asarray(forward[h], dtype=np.float64)
    return out


#: XGBoost's own names for parameters the scikit-learn API spells otherwise (also accepted).
_NATIVE_ALIASES = frozenset({"eta", "min_split_loss", "lambda", "alpha"})
#: Set from the ``seed`` and ``nthread`` arguments, never from ``params``.
_FIXED = {"random_state": "seed", "seed": "seed", "n_jobs": "nthread", "nthread": "nthread"}


def check_params(names: Iterable[str]) -> None:
    """Refuse a name that is not a parameter of ``xgboost.XGBRegressor`` (XGBoost would ignore it).

    Raises
    ------
    ConfigError
        ``"<name>: ..."`` for the first unknown name, or one set from ``seed``/``nthread``.
    """
    from xgboost import XGBRegressor

    known = set(XGBRegressor().get_params()) | _NATIVE_ALIASES
    for name in names:
        if name in _FIXED:
            raise ConfigError(f"{name}: set by the model's {_FIXED[name]!r}, not by XGBoost parameters")
        if name not in known:
            raise ConfigError(f"{name}: not a parameter of xgboost.XGBRegressor (XGBoost would ignore it)")


def check_values(params: Mapping[str, Any]) -> None:
    """Refuse values XGBoost would refuse, by fitting a regressor on a few rows (XGBoost checks them only when fitting).

    Raises
    ------
    ConfigError
        XGBoost's message, without its timestamp and source line.
    """
    rows = np.tile(np.eye(2), (3, 1))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _regressor(params, seed=0, nthread=1).fit(rows, np.tile([0.0, 1.0], 3))
    except (ValueError, TypeError) as exc:
        message = re.sub(r"^\[[0-9:]+\] \S+: ", "", str(exc).strip().splitlines()[0])
        raise ConfigError(f"XGBoost refuses {dict(params)}: {message}") from None


def _regressor(params: Mapping[str, Any], seed: int, nthread: int) -> Any:
    from xgboost import XGBRegressor

    kwargs = {"n_estimators": 100, "max_depth": 3, "learning_rate": 0.05, "subsample": 0.8,
              "colsample_bytree": 0.8, "tree_method": "hist", **params}
    kwargs["random_state"] = seed
    kwargs["n_jobs"] = nthread
    return XGBRegressor(**kwargs)


def fit_edge(
    X: np.ndarray,
    forward: Mapping[int, np.ndarray],
    weights: Mapping[int, float],
    params: Mapping[str, Any] | None = None,
    *,
    seed: int = 0,
    nthread: int = 1,
) -> HorizonEdge:
    """Fit one XGBoost regressor per horizon on ``(X, forward[h])`` (no NaN in either).

    Parameters
    ----------
    X
        Training features (rows, columns).
    forward
        ``horizon -> forward return in bps`` of the same rows.
    weights
        ``horizon -> weight`` of the combination.
    params
        XGBoost parameters (``random_state`` and ``n_jobs`` are set from ``seed`` and ``nthread``).
    """
    if not weights:
        raise ConfigError("edge: at least one horizon weight is required")
    models = {h: _regressor(params or {}, seed, nthread).fit(X, np.asarray(forward[h], dtype=np.float64))
              for h in sorted(weights)}
    return HorizonEdge(models, weights)


def rank_ic(edge: np.ndarray, target: np.ndarray) -> float:
    """Spearman correlation over the rows where both are finite (NaN when undefined)."""
    ok = np.isfinite(edge) & np.isfinite(target)
    if ok.sum() < 3 or np.ptp(edge[ok]) == 0 or np.ptp(target[ok]) == 0:
        return float("nan")
    return float(spearmanr(edge[ok], target[ok]).statistic)


def oof_edge(
    X: np.ndarray,
    forward: Mapping[int, np.ndarray],
    weights: Mapping[int, float],
    cv: Any,
    params: Mapping[str, Any] | None = None,
    *,
    keep: int | None = None,
    fold_params: Callable[[np.ndarray], Mapping[str, Any]] | None = None,
    seed: int = 0,
    nthread: int = 1,
) -> np.ndarray:
    """Out-of-fold raw edge from a splitter that tests every row once (purged K-fold).

    With ``keep``, each fold prunes to the ``keep`` most important columns of its own fit
    (:func:`prune_columns`) and refits on them, as the final model does on all the rows: the
    columns that predict a fold's test rows are chosen without them.

    With ``fold_params``, each fold is fitted with ``fold_params(train)`` (its training positions)
    instead of ``params``: a tuning run on those rows only (nested), so that the parameters that
    predict a fold's test rows are chosen without their labels too.
    """
    out = np.full(len(X), np.nan)
    for train, test in cv.split(X):
        if len(train) == 0:
            continue
        fw = {h: forward[h][train] for h in weights}
        if fold_params is not None:
            params = fold_params(train)
        model = fit_edge(X[train], fw, weights, params, seed=seed, nthread=nthread)
        if keep is None or keep >= X.shape[1]:
            out[test] = model.raw(X[test])
            continue
        kept = prune_columns(model, list(range(X.shape[1])), keep)
        model = fit_edge(X[train][:, kept], fw, weights, params, seed=seed, nthread=nthread)
        out[test] = model.raw(X[test][:, kept])
    return out


@dataclass
class TuneResult:
    """The chosen parameters and every combination's out-of-fold IC."""

    params: dict[str, Any]
    scores: list[dict[str, Any]]


def tune_edge(
    X: np.ndarray,
    forward: Mapping[int, np.ndarray],
    weights: Mapping[int, float],
    grid: Mapping[str, Sequence[Any]],
    cv: Any,
    base: Mapping[str, Any] | None = None,
    *,
    seed: int = 0,
    nthread: int = 1,
) -> TuneResult:
    """Pick the grid combination with the best purged out-of-fold rank IC (ties: the earlier one)."""
    target = combined_target(forward, weights)
    keys = sorted(grid)
    best: dict[str, Any] = dict(base or {})
    best_ic = -np.inf
    scores = []
    for values in itertools.product(*(grid[k] for k in keys)):
        params = {**(base or {}), **dict(zip(keys, values, strict=True))}
        ic = rank_ic(oof_edge(X, forward, weights, cv, params, seed=seed, nthread=nthread), target)
        scores.append({**dict(zip(keys, values, strict=True)), "oof_ic": ic})
        if np.isfinite(ic) and ic > best_ic:
            best, best_ic = params, ic
    return TuneResult(best, scores)


def prune_columns(model: HorizonEdge, columns: Sequence[str], keep: int) -> list[str]:
    """The ``keep`` columns of largest importance, in their original order."""
    if keep >= len(columns):
        return list(columns)
    importance = model.feature_importances_
    order = np.argsort(-importance, kind="stable")[:keep]
    return [columns[i] for i in sorted(order.tolist())]


def calibrate_edge(model: HorizonEdge, oof_raw: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Fit ``target ~ offset + scale * oof_raw`` (OLS, slope floored at 0) and set it on ``model``.

    Returns the fitted ``offset``, ``scale`` and the number of rows used.
    """
    ok = np.isfinite(oof_raw) & np.isfinite(target)
    x, y = oof_raw[ok], target[ok]
    if len(x) < 3 or np.ptp(x) == 0:
        scale, offset = 0.0, float(np.mean(y)) if len(y) else 0.0
    else:
        xc = x - x.mean()
        scale = max(float(np.dot(xc, y - y.mean()) / np.dot(xc, xc)), 0.0)
        offset = float(y.mean() - scale * x.mean())
    model.offset, model.scale = offset, scale
    return {"offset": offset, "scale": scale, "rows": int(ok.sum())}
