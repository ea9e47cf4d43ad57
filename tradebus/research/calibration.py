"""Fitting calibrated classifiers, walk-forward, into plain numbers a strategy can load.

:func:`fit_calibrated_logit` fits a
:class:`~tradebus.strategies.models.CalibratedLogit`: a standardised logistic regression
whose probabilities are mapped through a calibration (Platt or isotonic) fitted on *purged
out-of-fold* predictions (:class:`~tradebus.research.splitters.PurgedKFold`), so the
calibration never sees a prediction of a sample the model was trained on.

:func:`walk_forward_schedule` trains one model per segment start on the samples whose
label *ended* before ``start - embargo`` (purging: a label still running at the start
would leak the segment's prices; embargo: a margin for serial correlation), and a
:class:`~tradebus.strategies.models.ModelSchedule` hands out the latest model valid at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from tradebus.errors import ConfigError
from tradebus.engine.clock import iso_ns
from tradebus.strategies.models import CalibratedLogit, ModelSchedule

__all__ = ["fit_calibrated_logit", "out_of_fold_logit", "walk_forward_schedule"]


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, 1e-6, 1.0 - 1e-6)
    return np.log(q / (1.0 - q))


def _moments(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and population standard deviations (1 where a column is constant).

    A column is constant when its variance is within the rounding error of computing it from
    ``n`` values, ``n * eps * var + (n * eps * mean)^2``, as scikit-learn's ``StandardScaler``
    has it: a column equal to 0.3 up to its last bit (std 3e-17) is not divided by that std.
    """
    mean, var = X.mean(axis=0), X.var(axis=0)
    rounding = X.shape[0] * np.finfo(np.float64).eps
    constant = var <= rounding * var + (rounding * mean) ** 2
    return mean, np.where(constant, 1.0, np.sqrt(var))


def _check_finite(X: np.ndarray, what: str) -> None:
    """Refuse a NaN or infinite feature, naming its row and column."""
    bad = ~np.isfinite(X)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ConfigError(f"{what}: feature column {col} is not finite at row {row} ({X[row, col]})")


def out_of_fold_logit(X: np.ndarray, y: np.ndarray, cv: Any, *, C: float = 1.0) -> np.ndarray:
    """Out-of-fold probabilities of a standardised logistic regression.

    Each fold standardises with the mean and standard deviation of its own training rows
    (what the splitter left after purging and embargo), fits on them and predicts its test
    rows: nothing of a test row, not even its features' moments, reaches the fit that
    predicts it. A fold whose training rows hold one class predicts that class's rate.

    Parameters
    ----------
    X
        Features (n x k), finite.
    y
        Binary labels (n).
    cv
        A splitter that tests every row once (:class:`~tradebus.research.splitters.PurgedKFold`).
    C
        Inverse L2 strength of the logistic regression (on the standardised features).

    Returns
    -------
    numpy.ndarray
        The probability of class 1 for every row (NaN for a row no fold tests).

    Raises
    ------
    ConfigError
        A NaN or infinite feature (its row and column named).
    """
    from sklearn.linear_model import LogisticRegression

    X = np.asarray(X, dtype=np.float64)
    _check_finite(X, "out-of-fold logit")
    oof = np.full(y.shape[0], np.nan)
    for train, test in cv.split(X):
        if np.unique(y[train]).size < 2:
            oof[test] = y[train].mean()
            continue
        mean, scale = _moments(X[train])
        model = LogisticRegression(C=C, max_iter=1000).fit((X[train] - mean) / scale, y[train])
        oof[test] = model.predict_proba((X[test] - mean) / scale)[:, 1]
    return oof


def fit_calibrated_logit(X: np.ndarray, y: np.ndarray, columns: Sequence[str], *, t0: np.ndarray, t1: np.ndarray,
                         folds: int = 4, embargo: float = 0.0, C: float = 1.0,
                         method: Literal["isotonic", "sigmoid"] = "sigmoid") -> CalibratedLogit:
    """Fit on ``X`` (n x k, no NaN) and binary ``y``; calibrate on purged out-of-fold probabilities.

    ``t0``/``t1`` are each sample's label start and end (ns), used to purge the folds.
    ``method``: ``"isotonic"`` (step function, needs many samples) or ``"sigmoid"``
    (Platt scaling of the out-of-fold logit, smooth; stored as knots on a grid of 201
    raw probabilities).
    """
    # scikit-learn (the research extra) is needed to fit, not to predict: strategies load models without it
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression

    from tradebus.research.splitters import PurgedKFold

    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if X.ndim != 2 or X.shape[0] != y.shape[0] or X.shape[1] != len(columns):
        raise ConfigError(f"calibrated logit: X {X.shape}, y {y.shape} and {len(columns)} columns disagree")
    _check_finite(X, "calibrated logit")
    oof = out_of_fold_logit(X, y, PurgedKFold(folds, t0=t0, t1=t1, embargo=embargo), C=C)
    mean, scale = _moments(X)
    full = LogisticRegression(C=C, max_iter=1000).fit((X - mean) / scale, y)
    if method == "isotonic":
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(oof, y)
        kx, ky = iso.X_thresholds_, iso.y_thresholds_
    elif method == "sigmoid":
        platt = LogisticRegression(C=1e6).fit(_logit(oof)[:, None], y)
        kx = np.linspace(0.0, 1.0, 201)
        ky = platt.predict_proba(_logit(kx)[:, None])[:, 1]
    else:
        raise ConfigError(f"calibration method must be 'isotonic' or 'sigmoid', got {method!r}")
    return CalibratedLogit(tuple(columns), tuple(mean.tolist()), tuple(scale.tolist()), tuple(full.coef_[0].tolist()),
               float(full.intercept_[0]), tuple(kx.tolist()), tuple(ky.tolist()), int(y.shape[0]), float(y.mean()))


def walk_forward_schedule(X: np.ndarray, y: np.ndarray, columns: Sequence[str], *, t0: np.ndarray, t1: np.ndarray,
                          starts: Sequence[int], embargo_ns: int = 0, min_samples: int = 30, folds: int = 4,
                          C: float = 1.0, method: Literal["isotonic", "sigmoid"] = "sigmoid",
                          ) -> tuple[ModelSchedule, list[dict[str, Any]]]:
    """One :class:`CalibratedLogit` per segment start, trained on labels that ended before it.

    A sample trains the model of segment start ``s`` only when ``t1 < s - embargo_ns``
    (so its whole label window lies before the segment, with a margin). The calibration's
    purged K-fold embargoes the same ``embargo_ns`` after each test fold, as the samples it
    spans (:func:`~tradebus.research.splitters.embargo_samples`). Segments with
    fewer than ``min_samples`` such samples, or one class only, get no new model (the
    previous one stays in force).

    Returns
    -------
    (ModelSchedule, list of dict)
        The schedule and one log row per segment start (samples, positives, trained or why not).
    """
    from tradebus.research.splitters import embargo_samples

    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    t0 = np.asarray(t0, dtype=np.int64)
    t1 = np.asarray(t1, dtype=np.int64)
    entries: list[tuple[int, CalibratedLogit]] = []
    log: list[dict[str, Any]] = []
    for start in sorted(int(s) for s in starts):
        mask = t1 < start - embargo_ns
        n, pos = int(mask.sum()), int(y[mask].sum())
        row: dict[str, Any] = {"valid_from": start, "samples": n, "positives": pos}
        if n < min_samples:
            row["trained"] = f"no: {n} samples < min_samples {min_samples}"
        elif pos in (0, n):
            row["trained"] = "no: one class only"
        else:
            order = np.argsort(t0[mask], kind="stable")
            s0, s1, k = t0[mask][order], t1[mask][order], min(folds, n)
            try:
                model = fit_calibrated_logit(X[mask][order], y[mask][order], columns, t0=s0, t1=s1, folds=k,
                                            embargo=embargo_samples(s0, s1, k, embargo_ns), C=C, method=method)
            except ConfigError as exc:  # a purged fold left without training samples: say which model
                raise ConfigError(f"the model valid from {iso_ns(start)} ({n} samples): {exc}") from None
            entries.append((start, model))
            row["trained"] = "yes"
        log.append(row)
    return ModelSchedule(tuple(entries)), log
