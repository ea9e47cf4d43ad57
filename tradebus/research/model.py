"""Models inside strategies: a fitted model fed the bank's feature vector, batch and live alike.

A :class:`ModelStep` holds a fitted scikit-learn or XGBoost estimator, the feature
columns it reads (in order), the specs of the features behind them and a hash of
both. Live, :meth:`ModelStep.predict_row` turns the bank's current values into one
output per event (``predict_proba[:, 1]`` or ``predict``); in research,
:meth:`ModelStep.predict_frame` does the same over a dataset. Both feed the model a
float64 matrix of the same columns, one row at a time for the live path and all rows
at once for the batch path; for tree ensembles (XGBoost, sklearn forests and boosting)
the two are bit-identical because each row's output is a fixed sum of leaf values.
Linear models go through BLAS, whose summation order may differ between a 1-row and
an n-row product: :meth:`predict_frame` therefore predicts row by row for them
(``row_wise=True``), so research sees exactly the live values.

Calibration (:func:`fit_calibrated`) fits isotonic or Platt scaling on out-of-fold
probabilities from a purged splitter (:mod:`tradebus.research.splitters`), so the
calibrator never sees a prediction made by a model that trained on overlapping labels.

Files written by :meth:`ModelStep.save` hold the model (joblib pickle: load only files
you trust), the specs and their hash; :func:`load_model` refuses a file whose hash
does not match its specs, or specs other than the ones the caller runs.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any, Literal

import joblib
import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict

from tradebus.errors import ConfigError, FeatureError
from tradebus.features.bank import FeatureBank
from tradebus.features.spec import FeatureSpec, load_specs
from tradebus.reports.writers import output_error, write_file

__all__ = ["ModelStep", "fit_calibrated", "load_model", "spec_hash"]

_FORMAT = 1


def spec_hash(specs: Iterable[FeatureSpec | Mapping[str, Any]], columns: Sequence[str]) -> str:
    """SHA-256 of the canonical JSON of the feature specs and the column order."""
    payload = {
        "specs": [s.model_dump(mode="json") for s in load_specs(list(specs))],
        "columns": list(columns),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _is_tree_model(model: Any) -> bool:
    if getattr(model, "batch_equals_rows", False):  # e.g. tradebus.research.edge.HorizonEdge
        return True
    name = type(model).__module__
    return name.startswith("xgboost") or "ensemble" in name or "tree" in name


def _no_columns(row: Sequence[float]) -> tuple[float, ...]:
    return ()


@dataclass
class ModelStep:
    """A fitted model turned into a per-event feature.

    Parameters
    ----------
    model
        Fitted estimator (``predict_proba`` for ``output="proba"``, ``predict`` otherwise).
    columns
        Feature columns fed to the model, in order (names of :attr:`FeatureBank.columns`).
    specs
        Specs of the features the columns come from.
    output
        ``"proba"``: probability of the positive (last) class; ``"predict"``: the prediction.
    calibrator
        Optional fitted ``IsotonicRegression`` or Platt ``LogisticRegression`` applied to
        the probability.
    """

    model: Any
    columns: tuple[str, ...]
    specs: tuple[FeatureSpec, ...]
    output: Literal["proba", "predict"] = "proba"
    calibrator: Any = None
    _slots: tuple[int, ...] = field(default=(), init=False, repr=False)
    _named: bool = field(default=False, init=False, repr=False)
    # predict_row's (1, columns) matrix, its NaN mask and its column picker, for ``_row_slots``
    _row: np.ndarray = field(default_factory=lambda: np.empty((1, 0)), init=False, repr=False)
    _row_nan: np.ndarray = field(default_factory=lambda: np.empty((1, 0), dtype=np.bool_), init=False, repr=False)
    _pick: Any = field(default=None, init=False, repr=False)
    _row_slots: tuple[int, ...] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.columns = tuple(self.columns)
        self.specs = tuple(load_specs(list(self.specs)))
        if self.output not in ("proba", "predict"):
            raise ConfigError(f"model step: output must be 'proba' or 'predict', got {self.output!r}")
        names = getattr(self.model, "feature_names_in_", None)
        if names is not None and tuple(names) != self.columns:
            raise ConfigError(f"model step: the model was fitted on columns {list(names)}, not {list(self.columns)}")
        # a model fitted on a DataFrame warns when given arrays; the column order was just checked
        self._named = names is not None

    @property
    def hash(self) -> str:
        """Hash of the specs and columns (see :func:`spec_hash`)."""
        return spec_hash(self.specs, self.columns)

    # ------------------------------------------------------------------ prediction
    def _transform(self, matrix: np.ndarray) -> np.ndarray:
        if self._named:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="X does not have valid feature names")
                return self._predict(matrix)
        return self._predict(matrix)

    def _predict(self, matrix: np.ndarray) -> np.ndarray:
        if self.output == "predict":
            return np.asarray(self.model.predict(matrix), dtype=np.float64)
        proba = np.asarray(self.model.predict_proba(matrix), dtype=np.float64)[:, -1]
        if self.calibrator is None:
            return proba
        if isinstance(self.calibrator, LogisticRegression):
            return np.asarray(self.calibrator.predict_proba(proba[:, None]), dtype=np.float64)[:, 1]
        return np.asarray(self.calibrator.predict(proba), dtype=np.float64)

    def bind(self, bank: FeatureBank) -> None:
        """Resolve the columns in ``bank`` (live use); the bank must compute the model's features.

        Raises
        ------
        FeatureError
            A spec of the model is missing from the bank or differs from the bank's.
        """
        own = {s.name: s for s in bank.specs}
        for spec in self.specs:
            if own.get(spec.name) != spec:
                raise FeatureError(f"model step: the bank's feature {spec.name!r} is not the one the model was trained on")
        columns = bank.columns
        missing = [c for c in self.columns if c not in columns]
        if missing:
            raise FeatureError(f"model step: the bank has no column(s) {missing}")
        self._slots = tuple(columns.index(c) for c in self.columns)

    def predict_row(self, row: Sequence[float]) -> float:
        """The output for one event: ``row`` is the bank's feature row in :attr:`FeatureBank.columns`
        order (a strategy's ``self.features().row``), after :meth:`bind`.

        NaN when a feature is NaN (not ready): nothing trades on an unready feature.
        """
        slots = self._slots
        if self._row_slots is not slots:
            self._row = np.empty((1, len(slots)), dtype=np.float64)
            self._row_nan = np.empty((1, len(slots)), dtype=np.bool_)
            self._pick = itemgetter(*slots) if slots else _no_columns
            self._row_slots = slots
        x = self._row
        x[0] = self._pick(row)
        if np.isnan(x, out=self._row_nan).any():
            return float("nan")
        return float(self._transform(x)[0])

    def predict_frame(self, frame: pd.DataFrame, row_wise: bool | None = None) -> np.ndarray:
        """Outputs for every row of a dataset (NaN where a feature is NaN), equal to the live ones.

        ``row_wise`` (default: for non-tree models) predicts one row at a time, as live.
        """
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise FeatureError(f"model step: dataset lacks the model's feature column(s) {missing}")
        matrix = frame[list(self.columns)].to_numpy(dtype=np.float64)
        out = np.full(matrix.shape[0], np.nan)
        ok = ~np.isnan(matrix).any(axis=1)
        if row_wise is None:
            row_wise = not _is_tree_model(self.model)
        if not ok.any():
            return out
        if row_wise:
            out[ok] = [self._transform(row[None, :])[0] for row in matrix[ok]]
        else:
            out[ok] = self._transform(matrix[ok])
        return out

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> Path:
        """Write the model, its specs and their hash to ``path`` (atomically: :func:`~tradebus.reports.writers.write_file`).

        Raises
        ------
        ConfigError
            An OS error (a full disk, a file size limit), naming ``path``; a file there before is left as it was.
        """
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise output_error(path, exc) from None
        payload = {
            "format": _FORMAT,
            "model": self.model,
            "calibrator": self.calibrator,
            "columns": list(self.columns),
            "specs": [s.model_dump(mode="json") for s in self.specs],
            "output": self.output,
            "hash": self.hash,
        }
        return write_file(path, lambda temp: joblib.dump(payload, temp))


def load_model(path: str | Path, specs: Iterable[FeatureSpec | Mapping[str, Any]] | None = None) -> ModelStep:
    """Load a :class:`ModelStep` written by :meth:`ModelStep.save`.

    Parameters
    ----------
    path
        The file (a joblib pickle: load only files you trust).
    specs
        The specs the caller will run; the model must have been trained on exactly
        these (those of its own columns). ``None`` checks the file's own hash only.

    Raises
    ------
    ConfigError
        Not a model file, a hash that does not match the stored specs, or specs that
        differ from ``specs``.
    """
    path = Path(path)
    try:
        payload = joblib.load(path)
    except (OSError, EOFError, ValueError, KeyError) as exc:
        raise ConfigError(f"{path}: not a readable model file ({exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise ConfigError(f"{path}: not a tradebus model file (format {_FORMAT})")
    step = ModelStep(
        payload["model"], tuple(payload["columns"]), tuple(payload["specs"]), payload["output"], payload["calibrator"]
    )
    if step.hash != payload["hash"]:
        raise ConfigError(f"{path}: stored feature spec hash {payload['hash'][:12]} does not match its specs")
    if specs is not None:
        given = {s.name: s for s in load_specs(list(specs))}
        differ = [_spec_difference(trained, given.get(trained.name)) for trained in step.specs
                  if given.get(trained.name) != trained]
        if differ:
            raise ConfigError(
                f"{path}: the model was trained on features with hash {step.hash[:12]}; the given specs differ: "
                + "; ".join(differ)
            )
    return step


def _spec_difference(trained: FeatureSpec, given: FeatureSpec | None) -> str:
    """``"feature 'rsi': params {'window': 10} (trained with {'window': 14})"``: the fields that differ."""
    if given is None:
        return f"feature {trained.name!r} is missing"
    a, b = given.model_dump(mode="json"), trained.model_dump(mode="json")
    return f"feature {trained.name!r}: " + ", ".join(f"{k} {a[k]!r} (trained with {b[k]!r})" for k in b if a[k] != b[k])


def fit_calibrated(
    estimator: Any,
    X: pd.DataFrame,
    y: np.ndarray,
    cv: Any,
    specs: Sequence[FeatureSpec | Mapping[str, Any]],
    method: Literal["isotonic", "sigmoid"] = "isotonic",
) -> tuple[ModelStep, np.ndarray]:
    """Fit ``estimator`` on all of ``X`` and a calibrator on its purged out-of-fold probabilities.

    Parameters
    ----------
    estimator
        Unfitted classifier (cloned).
    X
        Feature columns (names become the step's columns), no NaN.
    y
        Binary labels.
    cv
        A splitter that tests every sample once (:class:`~tradebus.research.splitters.PurgedKFold`).
    specs
        Specs of the features behind ``X``'s columns.
    method
        ``"isotonic"`` or ``"sigmoid"`` (Platt).

    Returns
    -------
    (ModelStep, numpy.ndarray)
        The calibrated step and the raw out-of-fold probabilities.
    """
    matrix = X.to_numpy(dtype=np.float64)
    oof = cross_val_predict(clone(estimator), matrix, y, cv=cv, method="predict_proba")[:, -1]
    if method == "isotonic":
        calibrator: Any = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(oof, y)
    elif method == "sigmoid":
        calibrator = LogisticRegression(C=1e6).fit(oof[:, None], y)
    else:
        raise ConfigError(f"calibration method must be 'isotonic' or 'sigmoid', got {method!r}")
    fitted = clone(estimator).fit(matrix, y)
    return ModelStep(fitted, tuple(X.columns), tuple(load_specs(list(specs))), "proba", calibrator), oof
