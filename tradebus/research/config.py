"""The research config: one YAML file whose sections drive ``tradebus research ...``.

Example (``configs/research_btc.yaml``)::

    dataset:                      # tradebus.research.dataset.DatasetConfig
      catalog: ../data/catalog
      sources: [{instrument: BTC-USD.COINBASE, dataset: coinbase/spot/BTC-USD/bars_4h}]
      features: [{name: r, kind: log_ret, input: close}, ...]
    labels:   {method: triple_barrier, vol_method: ewm, vol_span: 20, pt: 1.5, sl: 1.0, max_bars: 12}
    cv:       {method: kfold, n_splits: 5, embargo: 0.01}
    model:    {kind: xgboost, columns: [vol, rsi], params: {n_estimators: 50, max_depth: 3}}
    walkforward: {retrain_every: 500, min_train: 2000, quantity: 0.5, instrument: {...}}
                  # with labels.method: forward, `horizon:` picks the label trained on (default: the last)
    alpha:    {factors: [rsi, z], horizons: [1, 6, 24], period: 200}

Relative paths are resolved against the config file's directory. Unknown keys are
errors naming the field, and so is a ``labels`` or ``cv`` field its section's ``method`` does not read,
a ``cv.n_test_folds`` of ``cpcv`` not below ``cv.n_splits`` (its groups),
a ``model.columns`` entry no ``dataset.features`` output gives, a ``walkforward.instrument`` that is no
instrument of ``dataset.sources``, or an ``alpha.factors`` entry that is no
column of the dataset: the whole file is checked at load,
whichever command reads it.
"""

from __future__ import annotations

import difflib
import re
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, PositiveInt, ValidationError, ValidationInfo, field_validator, model_validator

from tradebus.config import InstrumentConfig, parse_duration
from tradebus.config.base import StrictModel, describe_errors, refuse_run_config, refuse_system_config
from tradebus.config.load import read_yaml as read_config_yaml
from tradebus.errors import ConfigError, FeatureError
from tradebus.execution.config import VenueConfig
from tradebus.features.bank import FeatureBank
from tradebus.research.dataset import DatasetConfig
from tradebus.research.dataset import load_config as load_dataset_config

__all__ = [
    "ResearchConfig",
    "columns_problem",
    "load_research_config",
    "make_estimator",
    "model_columns_problem",
    "read_yaml",
    "validation_problems",
]


_Model = StrictModel


class LabelsConfig(_Model):
    """How labels are built per instrument (on the base dataset's bars)."""

    method: Literal["forward", "triple_barrier"] = "triple_barrier"
    horizons: list[PositiveInt] = Field(default_factory=lambda: [1], min_length=1)
    kind: Literal["raw", "log", "bps"] = "raw"
    clip_quantile: float | None = Field(
        default=None, gt=0, lt=0.5,
        description="forward labels: clip to the [q, 1 - q] quantiles; labels.parquet by quantiles of the window's "
                    "rows (a description of the sample), research walkforward per segment by its training rows",
    )
    vol_method: Literal["ewm", "atr"] = "ewm"
    vol_span: int = Field(default=20, gt=1)
    pt: float = Field(default=1.0, gt=0)
    sl: float = Field(default=1.0, gt=0)
    max_bars: int | None = Field(default=12, gt=0)
    side: Literal[1, -1] = 1
    tie_break: Literal["stop", "profit", "open"] = "stop"
    cusum: float | None = Field(default=None, gt=0, description="CUSUM threshold as a multiple of the volatility")


#: The label method that reads each field (``method`` itself is read by both).
_LABELS_READ_BY: dict[str, str] = {
    **dict.fromkeys(("horizons", "kind", "clip_quantile"), "forward"),
    **dict.fromkeys(("vol_method", "vol_span", "pt", "sl", "max_bars", "side", "tie_break", "cusum"), "triple_barrier"),
}


class CVConfig(_Model):
    """The splitter."""

    method: Literal["kfold", "walkforward", "cpcv"] = "kfold"
    n_splits: int = Field(default=5, ge=2)
    embargo: float = Field(
        default=0.0, ge=0,
        description="samples (whole number) or fraction of the samples (< 1); kfold/cpcv: dropped from training "
                    "after each test fold's labels end; walkforward: the last ones purging kept before each test "
                    "window (no training sample follows a walk-forward test window); `research walkforward` "
                    "does not read it",
    )
    n_test_folds: int = Field(default=2, ge=1)
    test_size: int | None = Field(default=None, gt=0)
    train_size: int | None = Field(default=None, gt=0)
    expanding: bool | None = Field(
        default=None,
        description="walkforward: train from the first sample; default: true without train_size, false with it "
                    "(train_size is then the rolling window, as scikit-learn's max_train_size)",
    )
    gap: int = Field(default=0, ge=0)

    @field_validator("embargo")
    @classmethod
    def _embargo(cls, value: float) -> float:
        from tradebus.research.splitters import embargo_problem

        problem = embargo_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


#: The splitter that alone reads a field (``method``, ``n_splits`` and ``embargo`` are read by every one).
_CV_READ_BY: dict[str, str] = {
    "n_test_folds": "cpcv",
    **dict.fromkeys(("test_size", "train_size", "expanding", "gap"), "walkforward"),
}


def _unread_fields(section: LabelsConfig | CVConfig, read_by: dict[str, str]) -> list[str]:
    """The fields written in ``section`` that its ``method`` does not read, in declaration order.

    ``read_by`` maps a field to the one method reading it (a field absent from it is read by all).
    A section that spells out every key (as ``model_dump`` writes it) may hold the other
    methods' fields at their defaults.
    """
    written = section.model_fields_set
    dumped = written >= set(type(section).model_fields)
    return [
        name for name, info in type(section).model_fields.items()
        if name in written and read_by.get(name, section.method) != section.method
        and not (dumped and getattr(section, name) == info.get_default(call_default_factory=True))
    ]


class ModelConfig(_Model):
    """The estimator and the feature columns it reads."""

    kind: Literal["xgboost", "logistic", "random_forest"] = "xgboost"
    columns: list[str] = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("params")
    @classmethod
    def _params(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if "kind" in info.data and "columns" in info.data:
            problem = params_problem(info.data["kind"], value, len(info.data["columns"]))
            if problem is not None:
                raise ValueError(problem)
        return value


class WalkForwardConfig(_Model):
    """Walk-forward retraining of the model on the dataset source of ``instrument`` (its ``symbol.venue``)."""

    instrument: InstrumentConfig
    retrain_every: int | None = Field(default=None, gt=0, description="segment length in bars")
    retrain_every_time: str | None = Field(default=None, description="segment length as a duration ('30d')")
    min_train: int = Field(gt=0)
    quantity: float = Field(gt=0)
    upper: float = Field(default=0.55, ge=0, le=1, description="long above this probability of a rising label")
    lower: float = Field(default=0.45, ge=0, le=1, description="flat (long_short: short) below this probability")
    mode: Literal["long_only", "long_short"] = "long_only"
    venue: VenueConfig = Field(default_factory=VenueConfig)
    initial_cash: float = Field(default=100_000.0, gt=0)
    seed: int = 0
    horizon: int | None = Field(
        default=None, gt=0,
        description="with forward labels: the horizon (bars, one of labels.horizons) the model is trained on and "
                    "purged by; default the last one listed",
    )

    @model_validator(mode="after")
    def _one_period(self) -> WalkForwardConfig:
        if (self.retrain_every is None) == (self.retrain_every_time is None):
            raise ValueError("give one of retrain_every (bars) and retrain_every_time (a duration)")
        if self.retrain_every_time is not None:
            parse_duration(self.retrain_every_time)
        return self

    @model_validator(mode="after")
    def _band(self) -> WalkForwardConfig:
        from tradebus.research.strategy import threshold_problem

        problem = threshold_problem(self.upper, self.lower)
        if problem is not None:
            raise ValueError(problem)
        return self

    @property
    def retrain_every_ns(self) -> int | None:
        """The time period in ns, if given."""
        return None if self.retrain_every_time is None else parse_duration(self.retrain_every_time)


class AlphaConfig(_Model):
    """Factor reports: which dataset columns, horizons (bars) and IC block length."""

    factors: list[str] = Field(min_length=1)
    horizons: list[PositiveInt] = Field(default_factory=lambda: [1, 6, 24], min_length=1)
    period: int = Field(default=200, ge=3)
    quantiles: int = Field(default=5, ge=2)


class ResearchConfig(_Model):
    """Every section of a research config (only ``dataset`` is required)."""

    dataset: dict[str, Any]
    labels: LabelsConfig = Field(default_factory=LabelsConfig)
    cv: CVConfig = Field(default_factory=CVConfig)
    model: ModelConfig | None = None
    walkforward: WalkForwardConfig | None = None
    alpha: AlphaConfig | None = None

    def dataset_config(self, base: Path) -> DatasetConfig:
        """The validated ``dataset`` section (catalog resolved against ``base``)."""
        return load_dataset_config(self.dataset, base)


def read_yaml(path: Path) -> Any:
    """The parsed YAML of a config file.

    Raises
    ------
    ConfigError
        Missing, unreadable or binary file, or bad YAML (naming the file).
    """
    return read_config_yaml(path)


def validation_problems(exc: ValidationError, model: type[BaseModel] | None = None) -> str:
    """``"a.b: message; c: message"`` for every error of a pydantic validation (of ``model``: a misspelt key
    names the closest key, :func:`~tradebus.config.base.describe_errors`)."""
    return "; ".join(describe_errors(exc, model=model))


def load_research_config(path: str | Path) -> tuple[ResearchConfig, DatasetConfig]:
    """Read and validate a research config file.

    Raises
    ------
    ConfigError
        Missing file, bad YAML, or an invalid field (named, with the file).
    """
    path = Path(path)
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a research config is a mapping with a 'dataset' section")
    refuse_system_config(str(path), raw)
    refuse_run_config(str(path), raw)
    try:
        config = ResearchConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {validation_problems(exc, ResearchConfig)}") from None
    wf, labels = config.walkforward, config.labels
    if labels.clip_quantile is not None and labels.method != "forward":
        raise ConfigError(f"{path}: labels.clip_quantile: only with labels.method: forward "
                          f"({labels.method} labels are not clipped)")
    for name, section, read_by, what in (("labels", labels, _LABELS_READ_BY, "labels"),
                                         ("cv", config.cv, _CV_READ_BY, "splits")):
        unread = _unread_fields(section, read_by)
        if unread:
            raise ConfigError(f"{path}: {name}.{unread[0]}: only with {name}.method: {read_by[unread[0]]} "
                              f"({section.method} {what} do not read it; remove it or change {name}.method)")
    cv = config.cv
    if cv.method == "cpcv" and cv.n_test_folds >= cv.n_splits:  # the splitter's groups are cv.n_splits
        raise ConfigError(f"{path}: cv.n_test_folds: {cv.n_test_folds} test groups of cv.n_splits {cv.n_splits} leave "
                          f"no group to train on; give at most {cv.n_splits - 1} (or more cv.n_splits)")
    if wf is not None and wf.horizon is not None:
        if labels.method != "forward":
            raise ConfigError(f"{path}: walkforward.horizon: only with labels.method: forward "
                              f"({labels.method} labels have one return per event)")
        if wf.horizon not in labels.horizons:
            raise ConfigError(f"{path}: walkforward.horizon: {wf.horizon} is not one of labels.horizons "
                              f"{labels.horizons}")
    try:
        dataset = config.dataset_config(path.parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if config.model is not None:  # read by walkforward only, checked for every command that loads the config
        try:
            available = FeatureBank(dataset.features).columns
        except FeatureError as exc:
            raise ConfigError(f"{path}: dataset.features: {exc}") from None
        problem = model_columns_problem(config.model.columns, available)
        if problem is not None:
            raise ConfigError(f"{path}: {problem}")
    if wf is not None:  # read by walkforward only, checked for every command that loads the config
        traded = wf.instrument.to_instrument().instrument_id
        held = [source.instrument for source in dataset.sources]
        if traded not in held:
            raise ConfigError(f"{path}: walkforward.instrument: {traded} (its symbol.venue) is no instrument of "
                              f"dataset.sources (they are: {', '.join(held)}); name the source's instrument to "
                              "walk forward on")
    if config.alpha is not None:  # read by alpha only, checked for every command that loads the config
        problem = columns_problem("alpha.factors", config.alpha.factors, dataset.feature_columns(), "dataset")
        if problem is not None:
            raise ConfigError(f"{path}: {problem}")
    return config, dataset


def columns_problem(field: str, columns: list[str] | tuple[str, ...], available: list[str] | tuple[str, ...],
                    what: str = "features") -> str | None:
    """Why the columns of ``field`` cannot be read from the columns ``available`` of ``what`` (``None``: every one
    is there)."""
    missing = [c for c in columns if c not in available]
    if not missing:
        return None
    return f"{field}: {missing} are not columns of the {what} (they are: {', '.join(available)})"


def model_columns_problem(columns: list[str] | tuple[str, ...], available: list[str] | tuple[str, ...]) -> str | None:
    """Why ``model.columns`` cannot be read from the feature columns ``available`` (``None``: every one is there)."""
    return columns_problem("model.columns", columns, available)


#: XGBoost's own names for parameters the scikit-learn API spells otherwise (also accepted).
_XGBOOST_ALIASES = frozenset({"eta", "min_split_loss", "lambda", "alpha"})
#: The timestamp and source line XGBoost puts before some of its messages.
_XGBOOST_PREFIX = re.compile(r"^\[[0-9:]+\] \S+: ")


def params_problem(kind: str, params: dict[str, Any], n_columns: int) -> str | None:
    """Why the estimator ``kind`` would ignore or refuse ``params`` (``None``: it takes them).

    A name the estimator does not know is refused (XGBoost would only warn and ignore it), and so
    is ``random_state``, which ``walkforward.seed`` sets;
    the values are checked by fitting the estimator on a few rows of ``n_columns`` columns,
    as XGBoost and scikit-learn check them only when fitting.
    """
    if "random_state" in params:
        return "'random_state' is set by walkforward.seed (every segment's model is seeded with it); give walkforward.seed"
    estimator = _estimator(kind, {})
    known = set(estimator.get_params()) | (_XGBOOST_ALIASES if kind == "xgboost" else set())
    unknown = sorted(set(params) - known)
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(known), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"{unknown[0]!r} is not a parameter of {type(estimator).__name__}{hint}"
    rows = np.tile(np.eye(2, n_columns), (3, 1))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _estimator(kind, params).fit(rows, np.tile([0, 1], 3))
    except (ValueError, TypeError) as exc:
        message = _XGBOOST_PREFIX.sub("", str(exc).strip().splitlines()[0])
        return f"{type(estimator).__name__} refuses these parameters: {message}"
    return None


def make_estimator(config: ModelConfig) -> Any:
    """A fresh estimator of the configured kind (single-threaded, seeded)."""
    return _estimator(config.kind, config.params)


def _estimator(kind: str, params: dict[str, Any]) -> Any:
    params = dict(params)
    if kind == "xgboost":
        from xgboost import XGBClassifier

        params.setdefault("n_jobs", 1)
        params.setdefault("random_state", 0)
        return XGBClassifier(**params)
    if kind == "random_forest":
        from sklearn.ensemble import RandomForestClassifier

        params.setdefault("n_jobs", 1)
        params.setdefault("random_state", 0)
        return RandomForestClassifier(**params)
    from sklearn.linear_model import LogisticRegression

    params.setdefault("max_iter", 1000)
    return LogisticRegression(**params)
