"""The search space of a sweep: a YAML file naming parameters by their dotted config path.

Example::

    method: tpe              # grid | tpe (Optuna's TPE; several objectives = multi-objective TPE)
    seed: 7
    trials: 40               # tpe: how many trials (grid: every point of the grid)
    batch: 8                 # tpe: trials asked per round (see below)
    objectives:              # metric of metrics.json -> maximize | minimize; the first picks "best"
      sharpe: maximize
      max_drawdown: minimize
    params:                  # dotted paths into the run config, applied like --set
      strategy.params.fast: [5, 10, 20]                      # a list: these values (categorical)
      strategy.params.slow: {low: 40, high: 120, step: 20}   # ints: an integer range (both ends included;
                                                             # a step must end at high)
      strategy.params.quantity: {low: 0.05, high: 1.0, step: 0.05}  # floats: a float range (a step on
                                                             # the lot grid: an order quantity is not rounded)
      venue.slippage_bps: {low: 0.5, high: 10.0, log: true}  # tpe only (a grid needs values or a step)
    walk_forward: {train: 365d, test: 90d}                   # optional, see tradebus.sweep.walkforward
                                                             # (then data.start/data.end cannot be swept)
    stress:                                                  # optional, see tradebus.sweep.stress
      - {name: fees_x2, costs: 2}
    tier: auto               # auto | event | accelerated: how each trial's backtest runs (below)

A range written with whole-number bounds is of integers unless the run config types its field as a float
(``venue.slippage_bps: {low: 0, high: 5}`` draws floats; :func:`load_space`'s ``float_field``); an explicit
``integer: true`` keeps it of integers.

A grid enumerates the product of every parameter's values in the order the file lists
them (the last parameter varies fastest); trial ``n`` is the ``n``-th point. TPE asks
``batch`` trials at a time, each with a sampler seeded by ``(seed, trial number)``, runs
them, and tells their results before asking the next round: the trials asked depend only
on the seed and the results of earlier rounds, never on which worker finished first, so
the same space and seed give the same trials on any number of workers. A range with a step
takes the grid's points with TPE too (:meth:`Param.point`): Optuna's ``0.6500000000000001`` is
run and stored as ``0.65``, while its study keeps the value it drew.

``tier`` picks the backtest of each trial (:data:`~tradebus.sweep.trial.TIERS`): ``auto``
(default) runs the compiled accelerated tier (:mod:`tradebus.engine.accelerated`) when the
strategy declares a signal kernel and the config has nothing it does not model, else the
event tier; ``accelerated`` insists (a config it cannot run is an error before any trial);
``event`` never accelerates. Both tiers give the same fills and metrics, so the tier is not
part of the space's fingerprint: a sweep may be resumed with another tier (warned of, naming the
tiers its earlier runs asked, which ``sweep.json``'s ``tiers`` records; each trial's is in ``results.csv``).
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from loguru import logger
from pydantic import (
    Field,
    PositiveInt,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tradebus.config import config_error_from
from tradebus.config.base import StrictModel, describe_errors
from tradebus.config.load import read_yaml
from tradebus.config.units import Moment
from tradebus.errors import ConfigError
from tradebus.sweep.stress import StressVariant
from tradebus.sweep.trial import METRIC_COLUMNS
from tradebus.sweep.walkforward import WalkForwardSpec

__all__ = ["MAX_TRIALS", "Param", "SweepSpace", "load_space"]

Scalar = bool | int | float | str
#: A date or time of a list of values as text (``2022-02-01``, ``2022-03-01T12:00:00Z``), as a run's config.yaml writes it.
_MOMENT_TEXT: TypeAdapter[Any] = TypeAdapter(Moment)

_Model = StrictModel


class Param(_Model):
    """One swept parameter: a list of ``values``, or a range ``low..high`` (``step``, ``log``)."""

    path: str
    values: list[Scalar] | None = None
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    integer: bool = False

    @field_validator("values", mode="before")
    @classmethod
    def _scalar_values(cls, values: Any) -> Any:
        # YAML reads an unquoted 2022-02-01 as a date: it is swept as its text, as a run config writes it back
        if not isinstance(values, list):
            return values
        for i, value in enumerate(values):
            if value is None:
                raise ValueError(f"value {i} is empty (null): give a number, text, true or false, or a date")
            if isinstance(value, list):
                raise ValueError(f"value {i} ({value!r}) is a list: list the values themselves ({value!r}, not "
                                 f"[{value!r}]), or give "
                                 + (f"a range ({{low: {value[0]!r}, high: {value[-1]!r}}})" if value else "a range"))
            if not isinstance(value, Scalar | date):
                raise ValueError(f"value {i} ({value!r}) is not a number, text, true or false, or a date")
        values = [_MOMENT_TEXT.dump_python(v, mode="json") if isinstance(v, date) else v for v in values]
        first: dict[tuple[bool, Any], int] = {}
        for i, value in enumerate(values):  # 10 and 10.0 set one value; True and 1 do not
            j = first.setdefault((isinstance(value, bool), value), i)
            if j != i:
                raise ValueError(f"value {i} ({value!r}) is value {j} ({values[j]!r}) again: a grid would run it "
                                 "twice, TPE draw it twice as often; list each value once")
        return values

    @model_validator(mode="before")
    @classmethod
    def _bound_types(cls, data: Any) -> Any:
        # a range is of integers when its bounds are, of floats when one has a fraction (low 0.5, high 2);
        # integers beside whole floats (low 10, high 30.0) say neither
        if isinstance(data, dict):
            bounds = {k: data[k] for k in ("low", "high", "step") if isinstance(data.get(k), int | float)
                      and not isinstance(data[k], bool) and math.isfinite(data[k])}  # _check refuses inf and nan
            ints = [k for k, v in bounds.items() if isinstance(v, int)]
            floats = [k for k, v in bounds.items() if isinstance(v, float)]
            if ints and floats and all(bounds[k].is_integer() for k in floats):
                raise ValueError(
                    f"{', '.join(f'{k} {bounds[k]!r}' for k in ints)} {'is an integer' if len(ints) == 1 else 'are integers'} "
                    f"but {', '.join(f'{k} {bounds[k]!r}' for k in floats)} {'is' if len(floats) == 1 else 'are'} not: "
                    "write every bound as an integer for a range of integers, or with a decimal point for a "
                    "range of floats")
        return data

    @model_validator(mode="after")
    def _check(self) -> Param:
        if self.values is not None:
            if self.low is not None or self.high is not None or self.step is not None:
                raise ValueError("give either a list of values or a range (low, high), not both")
            if not self.values:
                raise ValueError("the list of values is empty")
            if self.log:
                raise ValueError("log: true spaces a range (low, high) logarithmically; a list of values takes "
                                 "exactly its values: drop log or give a range")
            return self
        if self.low is None or self.high is None:
            raise ValueError("a range needs 'low' and 'high' (or give a list of values)")
        for name in ("low", "high", "step"):
            bound = getattr(self, name)
            if bound is not None and not math.isfinite(bound):
                raise ValueError(f"{name} must be a finite number, got {bound}")
        if self.low > self.high:
            raise ValueError(f"low {self.low:g} is above high {self.high:g}")
        if self.step is not None and self.step <= 0:
            raise ValueError(f"step must be > 0, got {self.step}")
        if self.log and (self.low <= 0 or self.step is not None):
            raise ValueError("a log range needs low > 0 and no step")
        if self.step is not None:
            steps = (self.high - self.low) / self.step
            if not math.isfinite(steps):
                raise ValueError(f"step {self.step!r} cuts the range {self.low:g}..{self.high:g} into more points "
                                 "than a number can count; use a larger step")
            if abs(steps - round(steps)) > 1e-9:
                last = self.low + math.floor(steps + 1e-9) * self.step
                raise ValueError(f"the range {_range(self)} does not end at high: its last point is {last:g}; "
                                 f"make high {last:g} or {last + self.step:g}")
        return self

    @property
    def column(self) -> str:
        """Column name of this parameter in the results table."""
        return f"param.{self.path}"

    def grid_count(self) -> int | None:
        """How many values a grid takes (without listing them); ``None`` for a range without a step."""
        if self.values is not None:
            return len(self.values)
        if self.step is None:
            return None
        assert self.low is not None and self.high is not None
        return int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1

    def grid_values(self) -> list[Scalar]:
        """The values a grid takes: the list, or ``low, low + step, ... <= high``."""
        if self.values is not None:
            return list(self.values)
        count = self.grid_count()
        if count is None:
            raise ConfigError(f"params.{self.path}: a grid needs a list of values or a 'step' for the range")
        return [self._grid_point(i) for i in range(count)]

    def point(self, value: Scalar) -> Scalar:
        """The value a sampler's ``value`` stands for: of a range with a step, its grid point (as in
        :meth:`grid_values`: Optuna's ``low + 12 * step`` of ``0.05..1.0 step 0.05`` is ``0.6500000000000001``,
        the point is ``0.65``); any other value as it is."""
        if self.values is not None or self.step is None:
            return value
        assert self.low is not None
        return self._grid_point(round((float(value) - self.low) / self.step))

    def _grid_point(self, i: int) -> int | float:
        """The ``i``-th point ``low + i * step`` of a range with a step (a float's rounded to 12 digits)."""
        assert self.low is not None and self.step is not None
        point = self.low + i * self.step
        return int(round(point)) if self.integer else round(point, 12)

    def distribution(self) -> Any:
        """The Optuna distribution of this parameter."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.values is not None:
            return CategoricalDistribution(self.values)
        assert self.low is not None and self.high is not None
        if self.integer:
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def arrow_type(self) -> str:
        """``"int64"``, ``"float64"``, ``"bool"`` or ``"string"``: the results column's type."""
        if self.values is None:
            return "int64" if self.integer else "float64"
        if all(isinstance(v, bool) for v in self.values):
            return "bool"
        if all(isinstance(v, int) and not isinstance(v, bool) for v in self.values):
            return "int64"
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in self.values):
            return "float64"
        return "string"


def _range(param: Param) -> str:
    """``low..high step s`` of a range, as written (``10..35 step 10``)."""
    step = "" if param.step is None else f" step {param.step:g}"
    return f"{param.low:g}..{param.high:g}{step}"


class SweepSpace(_Model):
    """A validated space file (see the module docstring)."""

    method: Literal["grid", "tpe"] = "grid"
    seed: int = 0
    trials: PositiveInt | None = None
    batch: PositiveInt = 8
    objectives: dict[str, Literal["maximize", "minimize"]] = Field(default_factory=lambda: {"sharpe": "maximize"})
    params: list[Param] = Field(min_length=1)
    walk_forward: WalkForwardSpec | None = None
    stress: list[StressVariant] | None = None
    tier: Literal["auto", "event", "accelerated"] = "auto"

    @field_validator("params", mode="before")
    @classmethod
    def _params_from_mapping(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, dict):
            return value
        float_field = (info.context or {}).get("float_field")
        return [_param_data(path, spec, float_field) for path, spec in value.items()]

    @model_validator(mode="after")
    def _check(self) -> SweepSpace:
        if not self.objectives:
            raise ValueError("objectives: name at least one metric, e.g. {sharpe: maximize}")
        for name in self.objectives:
            if name not in METRIC_COLUMNS:
                raise ValueError(f"objectives.{name}: not a metric; use one of {', '.join(METRIC_COLUMNS)}")
        paths = [p.path for p in self.params]
        if len(set(paths)) != len(paths):
            raise ValueError(f"params: a path is listed twice in {paths}")
        if self.walk_forward is not None:
            for path in paths:
                if path in _WINDOW_PATHS:
                    raise ValueError(
                        f"params.{path}: walk_forward sets data.start and data.end of each fold's trials to the "
                        "fold's train or test window, overriding the swept value while the results would still "
                        "show it; bound the folds with walk_forward's start and end instead"
                    )
        if self.method == "tpe" and self.trials is None:
            raise ValueError("trials: a tpe sweep needs the number of trials")
        if self.method == "tpe" and self.trials is not None and self.trials > MAX_TRIALS:
            raise ValueError(f"trials: {self.trials:,} is more than a sweep runs ({MAX_TRIALS:,}: one file a trial)")
        counts = {p.path: p.grid_count() for p in self.params}
        if self.method == "grid" and None not in counts.values() and math.prod(counts.values()) > MAX_TRIALS:
            raise ValueError(
                f"params: the grid has {math.prod(counts.values()):,} points ("
                + " x ".join(f"{path} {count:,}" for path, count in counts.items())
                + f"), more than a sweep runs ({MAX_TRIALS:,}: one file a trial); use a coarser step or fewer "
                "values, or method: tpe with a number of trials"
            )
        if self.stress is not None:
            if not self.stress:
                raise ValueError(
                    "stress: the list of variants is empty; list at least one variant, or leave stress out "
                    "(no stress runs; --stress runs the default set)"
                )
            names = [v.name for v in self.stress]
            if len(set(names)) != len(names):
                raise ValueError(f"stress: variant names must be unique, got {names}")
        return self

    @property
    def directions(self) -> list[str]:
        """Optuna directions of the objectives, in order."""
        return list(self.objectives.values())

    def points(self, params: dict[str, Scalar]) -> dict[str, Scalar]:
        """The values a sampler's ``{path: value}`` stand for (:meth:`Param.point`), in the same order."""
        by_path = {p.path: p for p in self.params}
        return {path: by_path[path].point(value) for path, value in params.items()}

    def grid(self) -> Iterator[dict[str, Scalar]]:
        """The grid points in trial order, as ``{path: value}`` (lazily)."""
        values = [p.grid_values() for p in self.params]
        for point in itertools.product(*values):
            yield dict(zip((p.path for p in self.params), point, strict=True))

    def grid_size(self) -> int:
        """Number of grid points."""
        size = 1
        for param in self.params:
            count = param.grid_count()
            size *= len(param.grid_values()) if count is None else count  # grid_values raises: a range without a step
        return size

    def total_trials(self) -> int:
        """Trials of one optimisation: the grid size, or ``trials``."""
        return self.grid_size() if self.method == "grid" else int(self.trials or 0)

    def fingerprint(self) -> str:
        """A hash of everything that decides the trials and their results (not the stress block or tier)."""
        data = self.model_dump(mode="json", exclude={"stress", "tier"})
        return hashlib.sha256(yaml.safe_dump(data, sort_keys=True).encode()).hexdigest()[:16]


#: Most trials a sweep (or a walk-forward fold) runs: each is a file of ``trials/`` (:mod:`tradebus.sweep.store`),
#: and ``results.csv`` reads them all; a grid or ``trials`` beyond it is refused before anything runs.
MAX_TRIALS = 1_000_000
#: Config paths each walk-forward trial overrides with its fold's window (:meth:`~tradebus.sweep.trial.TrialSpec.overrides`).
_WINDOW_PATHS = ("data.start", "data.end")


def _param_data(path: Any, spec: Any, float_field: Callable[[str], bool] | None = None) -> dict[str, Any]:
    """The :class:`Param` fields of ``path: spec`` in a space file's ``params`` mapping.

    A range is of integers when its bounds are (unless ``float_field(path)``: a field of floats; an
    explicit ``integer`` says either way).
    """
    if isinstance(spec, list):
        return {"path": path, "values": spec}
    if isinstance(spec, dict):
        bounds = [spec.get(k) for k in ("low", "high", "step") if spec.get(k) is not None]
        integer = bool(bounds) and all(isinstance(b, int) and not isinstance(b, bool) for b in bounds)
        if integer and "integer" not in spec and float_field is not None and isinstance(path, str) and float_field(path):
            logger.info("params.{}: a float field: the range {}..{} is of floats (integer: true sweeps whole numbers)",
                        path, spec.get("low"), spec.get("high"))
            integer = False
        return {"path": path, "integer": integer, **spec}
    return {"path": path, "values": [spec]}


def load_space(path: str | Path, float_field: Callable[[str], bool] | None = None) -> SweepSpace:
    """Read and validate a space file.

    Parameters
    ----------
    path
        The space file.
    float_field
        Whether a parameter's dotted path is a float field of the run config
        (:func:`tradebus.sweep.fields.float_field`): its range with whole-number bounds is of floats.

    Raises
    ------
    ConfigError
        The file is missing, not YAML, or a field is invalid (naming the file and field).
    """
    path = Path(path)
    data = read_yaml(path, "space file")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping (method, params, objectives, ...)")
    if isinstance(data.get("params"), dict):  # errors name the parameter, not its position in the list
        problems = []
        for name, spec in data["params"].items():
            try:
                Param.model_validate(_param_data(name, spec, float_field))
            except ValidationError as exc:
                problems += describe_errors(exc, ("params", name), Param)
        if problems:
            raise ConfigError(f"{path}: invalid config:\n  " + "\n  ".join(problems))
    try:
        space = SweepSpace.model_validate(data, context={"float_field": float_field})
    except ValidationError as exc:
        raise config_error_from(str(path), exc, model=SweepSpace) from None
    if space.method == "grid":
        for param in space.params:
            try:
                param.grid_values()
            except ConfigError as exc:
                raise ConfigError(f"{path}: {exc}") from None
    return space
