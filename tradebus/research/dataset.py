"""Research datasets: the feature bank run in batch over catalog data.

A dataset row holds, for one instrument and one event (bar close or trade), the
feature values a live strategy sees after that event: the rows come from
:meth:`~tradebus.features.bank.FeatureBank.run_bars` / ``run_trades``, which call
the same compiled step kernels as the live ``update_*`` calls, so they are equal
bit for bit (pinned by ``tests/research/test_research_dataset.py`` against a backtest).

Several timeframes
------------------
Features of a slower timeframe (say 1d bars next to 4h bars) are computed on
their own bars and joined to a faster row only once the slower bar has closed:
bars carry their *close* time in ``ts_event``, and a slow row is joined to every
fast row whose ``ts_event`` is at or after it (``pandas.merge_asof``, backward).
A slow bar closing at the same instant as a fast bar is therefore visible on that
fast row, as it is to a live strategy that receives both bars at that time.
Slow columns are named ``<timeframe>:<column>``.

Labels (forward-looking columns) never enter this frame: :mod:`tradebus.research.labels`
builds them in a separate frame keyed by the same ``(instrument, ts_event)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import Field, ValidationError, ValidationInfo, field_validator

from tradebus.config.base import StrictModel, describe_errors, resolve_path
from tradebus.config.units import moment_ns
from tradebus.data.catalog import Catalog
from tradebus.engine.clock import iso_ns
from tradebus.errors import ConfigError, DataError, FeatureError
from tradebus.features.bank import FeatureBank
from tradebus.features.spec import FeatureSpec, load_specs
from tradebus.reports.writers import output_error, write_parquet_file

__all__ = [
    "DatasetConfig",
    "SourceConfig",
    "EmptyWindow",
    "align_timeframe",
    "build_dataset",
    "empty_window",
    "feature_frame",
    "load_config",
    "load_events",
    "window_bounds",
    "write_parquet",
]

_BAR_FIELDS = ("open", "high", "low", "close", "volume")
_TRADE_FIELDS = ("price", "size", "side")


_Model = StrictModel


def _split_dataset(value: str) -> tuple[str, str, str, str]:
    parts = value.split("/")
    if len(parts) != 4 or not all(parts):
        raise ValueError(f"dataset {value!r} must be 'venue/market/symbol/name'")
    return parts[0], parts[1], parts[2], parts[3]


class SourceConfig(_Model):
    """One instrument: its base dataset and, per extra timeframe, the dataset of that timeframe."""

    instrument: str = Field(min_length=1)
    dataset: str
    timeframes: dict[str, str] = Field(default_factory=dict)

    @field_validator("dataset")
    @classmethod
    def _four_parts(cls, value: str) -> str:
        _split_dataset(value)
        return value

    @field_validator("timeframes")
    @classmethod
    def _four_parts_each(cls, value: dict[str, str]) -> dict[str, str]:
        for dataset in value.values():
            _split_dataset(dataset)
        return value


class DatasetConfig(_Model):
    """What :func:`build_dataset` builds (the ``dataset`` section of a research config).

    Parameters
    ----------
    catalog
        Catalog root.
    sources
        Instruments and their datasets.
    features
        Feature specs computed on the base dataset of every instrument.
    timeframes
        Feature specs per extra timeframe (keys of ``SourceConfig.timeframes``).
    start_ns, end_ns
        Keep base rows with ``start_ns <= ts_event < end_ns`` (features are warmed
        up on the earlier rows): epoch nanoseconds, or an ISO-8601 date or time
        (``2020-01-01``, ``2020-01-01T04:00:00Z``) read as a run config's ``data.start``
        (naive = UTC).
    """

    catalog: Path
    sources: list[SourceConfig] = Field(min_length=1)
    features: list[dict[str, Any]] = Field(min_length=1)
    timeframes: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    start_ns: int | None = None
    end_ns: int | None = None

    @field_validator("start_ns", "end_ns", mode="before")
    @classmethod
    def _moment(cls, value: Any) -> Any:
        return moment_ns(value)

    @field_validator("end_ns")
    @classmethod
    def _end_after_start(cls, value: int | None, info: ValidationInfo) -> int | None:
        start = info.data.get("start_ns")
        if value is not None and start is not None and value <= start:
            raise ValueError(f"{value} ({iso_ns(value)}) is not after dataset.start_ns {start} "
                             f"({iso_ns(start)}): the window [start_ns, end_ns) would hold no bar")
        return value

    @field_validator("sources")
    @classmethod
    def _one_source_per_instrument(cls, value: list[SourceConfig]) -> list[SourceConfig]:
        # rows, labels and forward returns are keyed by (instrument, ts_event)
        first: dict[str, int] = {}
        for k, source in enumerate(value):
            if source.instrument in first:
                raise ValueError(f"sources {first[source.instrument]} and {k} are both instrument "
                                 f"{source.instrument!r}: its rows would be stacked twice; give each "
                                 "instrument once (another timeframe goes under its 'timeframes')")
            first[source.instrument] = k
        return value

    def feature_columns(self) -> list[str]:
        """The columns of :func:`build_dataset`'s frame after ``instrument`` and ``ts_event``: the base
        features', then ``<timeframe>:<column>`` of each extra timeframe's."""
        columns = list(FeatureBank(self.features).columns)
        for name, specs in self.timeframes.items():
            columns += [f"{name}:{column}" for column in FeatureBank(specs).columns]
        return columns


def load_config(data: Mapping[str, Any], base: Path | None = None) -> DatasetConfig:
    """Validate a dataset config mapping; relative ``catalog`` paths are resolved against ``base``.

    Raises
    ------
    ConfigError
        Naming the field (``dataset.sources.0.dataset: ...``), or a feature spec the bank
        refuses (``dataset.features: feature 'x': unknown input ...``).
    """
    try:
        config = DatasetConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError("; ".join(describe_errors(exc, ("dataset",), DatasetConfig))) from None
    for source in config.sources:
        for name in source.timeframes:
            if name not in config.timeframes:
                raise ConfigError(f"dataset.sources: timeframe {name!r} of {source.instrument} has no features")
    for field, specs in (("features", config.features), *((f"timeframes.{k}", v) for k, v in config.timeframes.items())):
        try:
            FeatureBank(specs)
        except FeatureError as exc:
            raise ConfigError(f"dataset.{field}: {exc}") from None
    if base is not None:
        config = config.model_copy(update={"catalog": resolve_path(config.catalog, base)})
    return config


def load_events(catalog: Catalog | str | Path, dataset: str, key: str | None = None) -> tuple[str, pd.DataFrame]:
    """Read a whole catalog dataset (``venue/market/symbol/name``) as ``(kind, frame)``.

    Trades get a float ``side`` column (+1 buy, -1 sell, 0 unknown) from ``aggressor``.

    Parameters
    ----------
    catalog, dataset
        The catalog and the dataset in it.
    key
        The config key that names ``dataset``: a missing dataset is then a config error naming it.

    Raises
    ------
    ConfigError
        With ``key``: the dataset does not exist.
    DataError
        The dataset does not exist (without ``key``) or its manifest is invalid.
    """
    cat = catalog if isinstance(catalog, Catalog) else Catalog(catalog)
    venue, market, symbol, name = _split_dataset(dataset)
    if not cat.exists(venue, market, symbol, name):
        if key is not None:
            raise ConfigError(f"{key}: no dataset {dataset!r} in catalog {cat.root}")
        raise DataError(f"no dataset {dataset!r} in catalog {cat.root}")
    kind = cat.manifest(venue, market, symbol, name).kind
    frame = cat.read(venue, market, symbol, name).to_pandas()
    if kind == "trades":
        frame["side"] = frame["aggressor"].astype(np.float64)
    return kind, frame


def feature_frame(events: pd.DataFrame, kind: str, specs: Sequence[FeatureSpec | Mapping[str, Any]]) -> pd.DataFrame:
    """Features after every event of ``events`` (bars or trades), with its ``ts_event`` column first.

    The values are those of :func:`~tradebus.features.batch.compute_features` (the bank's
    batch runner); the result matrix becomes the frame without a copy, which keeps a
    dataset build within 1.5x of the bare batch run (``bench/research.py``).
    """
    bank = FeatureBank(specs)
    fields = _BAR_FIELDS if kind == "bars" else _TRADE_FIELDS
    missing = [f for f in fields if f not in events.columns]
    if missing:
        raise DataError(f"{kind} frame lacks column(s) {missing}")
    ts = events["ts_event"].to_numpy(dtype=np.int64)
    columns = [events[f].to_numpy(dtype=np.float64) for f in fields]
    out = bank.run_bars(ts, *columns) if kind == "bars" else bank.run_trades(ts, *columns)
    frame = pd.DataFrame(out, columns=pd.Index(bank.columns, dtype=object), copy=False)
    frame.insert(0, "ts_event", ts)
    return frame


def align_timeframe(base: pd.DataFrame, slow: pd.DataFrame, prefix: str) -> pd.DataFrame:
    """Join ``slow`` feature rows to ``base`` rows without lookahead.

    Every base row gets the last slow row whose ``ts_event`` (bar close) is at or
    before its own ``ts_event``; NaN before the first slow bar closed.

    Parameters
    ----------
    base, slow
        Frames with an int64 ``ts_event`` column, sorted by it.
    prefix
        Slow columns are renamed ``<prefix>:<column>``.
    """
    renamed = slow.rename(columns={c: f"{prefix}:{c}" for c in slow.columns if c != "ts_event"})
    joined = pd.merge_asof(
        base[["ts_event"]].reset_index(), renamed, on="ts_event", direction="backward", allow_exact_matches=True
    ).set_index("index")
    joined.index.name = base.index.name
    return pd.concat([base, joined.drop(columns="ts_event")], axis=1)


def window_bounds(ts: np.ndarray, start_ns: int | None, end_ns: int | None) -> tuple[int, int]:
    """Positions ``lo, hi`` such that ``ts[lo:hi]`` holds the rows with ``start_ns <= ts < end_ns`` (``ts`` sorted)."""
    lo = 0 if start_ns is None else int(np.searchsorted(ts, start_ns, side="left"))
    hi = len(ts) if end_ns is None else int(np.searchsorted(ts, end_ns, side="left"))
    return lo, max(hi, lo)


class EmptyWindow(DataError):
    """A window of ``dataset.start_ns`` / ``dataset.end_ns`` that holds no row: the config's window, named with its file."""


def empty_window(config: DatasetConfig, spans: Mapping[str, tuple[int, int] | None]) -> EmptyWindow:
    """The error of a window that holds no row of any source, naming the window and each dataset's span."""
    from tradebus.reports.metrics import format_ns

    start, end = format_ns(config.start_ns), format_ns(config.end_ns)
    if start and end:
        window = (f" between dataset.start_ns {config.start_ns} ({start})"
                  f" and dataset.end_ns {config.end_ns} ({end}, exclusive)")
    elif start:
        window = f" from dataset.start_ns {config.start_ns} ({start})"
    elif end:
        window = f" before dataset.end_ns {config.end_ns} ({end})"
    else:
        window = ""
    where = [f"{name} " + ("holds no rows" if span is None else f"spans {format_ns(span[0])} to {format_ns(span[1])}")
             for name, span in spans.items()]
    return EmptyWindow(f"dataset: no source has a row{window}: " + "; ".join(where))


def build_dataset(config: DatasetConfig) -> pd.DataFrame:
    """Features of every instrument of ``config``, one row per base event.

    Returns
    -------
    pandas.DataFrame
        Columns ``instrument`` (categorical), ``ts_event`` (int64 ns), then the base features, then
        ``<timeframe>:<column>`` per extra timeframe; rows sorted by ``(ts_event,
        instrument)`` (stable in source order).

    Raises
    ------
    ConfigError
        A dataset the config names is not in the catalog (named with its key,
        ``dataset.sources.N.dataset`` or ``dataset.sources.N.timeframes.NAME``).
    DataError
        A dataset is unreadable (named), or the window holds no row of any source.
    """
    catalog = Catalog(config.catalog)
    specs = load_specs(config.features)
    ids = list(dict.fromkeys(source.instrument for source in config.sources))
    frames = []
    spans: dict[str, tuple[int, int] | None] = {}
    for n, source in enumerate(config.sources):
        kind, events = load_events(catalog, source.dataset, f"dataset.sources.{n}.dataset")
        frame = feature_frame(events, kind, specs)
        for name, dataset in source.timeframes.items():
            slow_kind, slow_events = load_events(catalog, dataset, f"dataset.sources.{n}.timeframes.{name}")
            frame = align_timeframe(frame, feature_frame(slow_events, slow_kind, config.timeframes[name]), name)
        ts = frame["ts_event"].to_numpy()
        spans[f"{source.instrument} ({source.dataset})"] = (int(ts[0]), int(ts[-1])) if len(ts) else None
        if config.start_ns is not None or config.end_ns is not None:
            lo, hi = window_bounds(ts, config.start_ns, config.end_ns)
            frame = frame.iloc[lo:hi].reset_index(drop=True)
        # a categorical shared by every source: no n-element array of strings, and concat keeps it
        code = ids.index(source.instrument)
        frame.insert(0, "instrument", pd.Categorical.from_codes(np.full(len(frame), code, dtype=np.int16), ids))
        frames.append(frame)
    if not any(len(frame) for frame in frames):
        raise empty_window(config, spans)
    out = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
    if len(frames) > 1:
        out = out.sort_values("ts_event", kind="stable").reset_index(drop=True)
    return out


def write_parquet(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a dataset or label frame to Parquet (atomically: :func:`~tradebus.reports.writers.write_parquet_file`).

    Raises
    ------
    ConfigError
        An OS error (a full disk), naming ``path``; a file already there is left as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(path.parent, exc) from None
    return write_parquet_file(pa.Table.from_pandas(frame, preserve_index=False), path)

