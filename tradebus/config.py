"""Run configuration: a YAML file validated by pydantic models before any data is touched.

A run config names the data to replay, the instruments, the strategy and its
parameters, the simulated venue, the risk limits, extra features and the
initial cash. Every model forbids unknown keys, so a typo is an error, not a
silently ignored setting. :func:`load_config` turns every problem into a
:class:`~tradebus.errors.ConfigError` whose message names the config file and
the field path (``strategy.params.fast``).

Relative paths in a config (the catalog root, data files) are resolved against
the directory of the config file, so a config runs the same from any working
directory.

Example::

    data:
      catalog: ../data/catalog
      sources:
        - instrument: BTC-USD.COINBASE
          dataset: coinbase/spot/BTC-USD/bars_4h
    instruments:
      - {venue: COINBASE, symbol: BTC-USD, base: BTC, quote: USD,
         tick_size: 0.01, lot_size: 1.0e-8, taker_fee: 0.006, maker_fee: 0.004}
    strategy:
      name: ema_cross
      instruments: [BTC-USD.COINBASE]
      params: {fast: 10, slow: 30, mode: long_only, quantity: 0.1}
    initial_cash: 100000

Several strategies run side by side with ``strategies:`` (a list of the same entries, each
with its own ``id``) instead of ``strategy:``; each can cancel or modify only its own
orders, and ``attribution.csv`` splits PnL, fees and positions between them.
"""

from __future__ import annotations

import copy
import re
from abc import abstractmethod
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal, Self, TypeVar

import yaml
from pydantic import (
    BaseModel,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    ValidationError,
    field_validator,
    model_validator,
)

from tradebus.account import asset_names
from tradebus.config_base import StrictModel, describe_errors, resolve_path
from tradebus.engine.instrument import FeeTier, Instrument, InstrumentKind, MarginMode, MarginTier
from tradebus.errors import ConfigError, OrderError
from tradebus.execution.config import VenueConfig
from tradebus.features.bars import BarBuilder
from tradebus.features.spec import FeatureSpec
from tradebus.risk.config import RiskConfig

__all__ = [
    "DataConfig",
    "DataSourceConfig",
    "InstrumentConfig",
    "ReportConfig",
    "RunBase",
    "RunConfig",
    "StrategyConfig",
    "TradeBarsConfig",
    "apply_overrides",
    "check_starting_balances",
    "check_strategy_choice",
    "dump_config",
    "load_config",
    "parse_duration",
    "strategy_entries",
    "to_ns",
]

_DURATION = re.compile(r"^\s*(\d+)\s*(ns|us|ms|s|m|h|d|w)\s*$")
_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
    "w": 604_800_000_000_000,
}


def parse_duration(value: str | int) -> int:
    """Parse ``"30s"``, ``"1m"`` (minute), ``"4h"``, ``"1d"``, ``"1w"`` or an int of ns into ns.

    Raises
    ------
    ValueError
        If the value is not a positive duration in one of those forms.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '1h' or '15m', got {value!r}")
    if isinstance(value, int):
        ns = value
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise ValueError(f"expected a duration like '1h', '15m' or '1d', got {value!r}")
        ns = int(match.group(1)) * _UNIT_NS[match.group(2)]
    if ns <= 0:
        raise ValueError(f"duration must be > 0, got {value!r}")
    return ns


def to_ns(moment: datetime | date) -> int:
    """Nanoseconds since the epoch of a datetime (naive = UTC) or a date (its midnight UTC)."""
    if not isinstance(moment, datetime):
        moment = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    elif moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


_Model = StrictModel


class MarginTierConfig(_Model):
    """One maintenance bracket of a perpetual (see :class:`~tradebus.engine.instrument.MarginTier`)."""

    max_notional: PositiveFloat
    maintenance_rate: float = Field(ge=0.0, lt=1.0)
    max_leverage: float = Field(default=125.0, ge=1.0)


class FeeTierConfig(_Model):
    """Fee rates from a trailing 30-day traded notional on (see :mod:`tradebus.execution.costs`)."""

    min_volume: float = Field(ge=0.0)
    maker_fee: float = Field(gt=-0.01, lt=0.1)
    taker_fee: float = Field(gt=-0.01, lt=0.1)


class InstrumentConfig(_Model):
    """One tradable instrument; becomes a :class:`~tradebus.engine.instrument.Instrument`.

    Fees are fractions of notional (0.001 = 10 bps), negative for a rebate. ``margin: true``
    marks a spot instrument as margin-enabled (it may be sold short and bought on credit);
    without it a spot instrument is cash-only (see :mod:`tradebus.account`).
    """

    venue: str = Field(min_length=1)
    symbol: str = Field(min_length=1)
    kind: InstrumentKind = InstrumentKind.SPOT
    base: str = ""
    quote: str = ""
    tick_size: PositiveFloat
    lot_size: PositiveFloat
    min_notional: float = Field(default=0.0, ge=0.0)
    min_quantity: float = Field(default=0.0, ge=0.0)
    maker_fee: float = Field(default=0.0, gt=-0.01, lt=0.1)
    taker_fee: float = Field(default=0.0, gt=-0.01, lt=0.1)
    margin: bool = False
    contract_size: PositiveFloat = 1.0
    leverage: float = Field(default=1.0, ge=1.0, le=200.0)
    margin_mode: MarginMode = MarginMode.CROSS
    maintenance_rate: float = Field(default=0.005, ge=0.0, lt=1.0)
    margin_tiers: list[MarginTierConfig] = Field(default_factory=list)
    liquidation_fee: float = Field(default=0.005, ge=0.0, lt=1.0)
    fee_tiers: list[FeeTierConfig] = Field(default_factory=list)

    @property
    def instrument_id(self) -> str:
        """``"{symbol}.{venue}"``."""
        return f"{self.symbol}.{self.venue}"

    def to_instrument(self) -> Instrument:
        """The :class:`Instrument` this config describes."""
        fields = self.model_dump(exclude={"margin_tiers", "fee_tiers"})
        tiers = tuple(MarginTier(**tier.model_dump()) for tier in self.margin_tiers)
        fee_tiers = tuple(FeeTier(**tier.model_dump()) for tier in self.fee_tiers)
        return Instrument(**fields, margin_tiers=tiers, fee_tiers=fee_tiers)

    @model_validator(mode="after")
    def _valid_instrument(self) -> InstrumentConfig:
        try:
            self.to_instrument()
        except OrderError as exc:
            raise ValueError(str(exc)) from None
        return self


class TradeBarsConfig(_Model):
    """Bars built in the run from an instrument's trades (see :class:`~tradebus.features.bars.BarBuilder`).

    ``{mode: time, interval: 1m}`` or ``{mode: volume, threshold: 50}``: ``interval`` for
    time bars only, ``threshold`` (trades, size, ``price * size`` per bar, or the initial
    expected trades per bar of imbalance bars) for every other mode. The bars reach the
    strategies' ``on_bar`` (stamped at their close, known once a trade shows they are over)
    but never the execution engine: orders on the instrument fill on its trades.
    """

    mode: Literal["time", "tick", "volume", "dollar", "tick_imbalance", "volume_imbalance", "dollar_imbalance"]
    interval: str | None = None
    threshold: PositiveFloat | None = None
    span_bars: int = Field(default=20, ge=1)
    span_trades: int = Field(default=1000, ge=1)
    floor: float = Field(default=0.5, ge=0.0, le=1.0)

    @field_validator("interval")
    @classmethod
    def _interval_is_duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @model_validator(mode="after")
    def _mode_parameter(self) -> TradeBarsConfig:
        if self.mode == "time" and (self.interval is None or self.threshold is not None):
            raise ValueError("time bars take 'interval' (e.g. 1m) and no 'threshold'")
        if self.mode != "time" and (self.threshold is None or self.interval is not None):
            raise ValueError(f"{self.mode} bars take 'threshold' and no 'interval'")
        return self

    def builder(self) -> BarBuilder:
        """A fresh :class:`~tradebus.features.bars.BarBuilder` for these bars."""
        interval = None if self.interval is None else parse_duration(self.interval)
        return BarBuilder(self.mode, interval_ns=interval, threshold=self.threshold, span_bars=self.span_bars,
                          span_trades=self.span_trades, floor=self.floor)


class DataSourceConfig(_Model):
    """One replayed stream: a catalog dataset or a CSV/Parquet file, for one instrument.

    Give exactly one of ``dataset`` (``"venue/market/symbol/dataset"`` under
    :attr:`DataConfig.catalog`) or ``file``. ``interval`` (``"4h"``) is only
    needed for a bar file whose timestamps are bar *open* times and whose
    interval cannot be detected from the data. ``bar_time`` says whether a bar
    file's time column stamps the bar's ``open`` (shifted by the interval to the
    close) or its ``close``; ``auto`` takes open unless the column is ``ts_event``.
    """

    instrument: str = Field(min_length=1)
    kind: Literal["bars", "trades", "quotes", "book", "mark_prices", "funding_rates", "open_interest"] = "bars"
    dataset: str | None = None
    file: Path | None = None
    interval: str | None = None
    bar_time: Literal["auto", "open", "close"] = "auto"
    bars: TradeBarsConfig | None = None

    @field_validator("dataset")
    @classmethod
    def _dataset_has_four_parts(cls, value: str | None) -> str | None:
        if value is not None and (len(parts := value.strip("/").split("/")) != 4 or not all(parts)):
            raise ValueError(f"expected 'venue/market/symbol/dataset', got {value!r}")
        return value

    @field_validator("interval")
    @classmethod
    def _interval_is_duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @model_validator(mode="after")
    def _one_location(self) -> DataSourceConfig:
        if (self.dataset is None) == (self.file is None):
            raise ValueError("give exactly one of 'dataset' (catalog) or 'file'")
        if self.bars is not None and self.kind != "trades":
            raise ValueError(f"bars: bars are built from trades; this source's kind is {self.kind!r}")
        return self

    @property
    def catalog_key(self) -> tuple[str, str, str, str]:
        """``(venue, market, symbol, dataset)`` of a catalog source."""
        if self.dataset is None:
            raise ConfigError(f"data source of {self.instrument} is a file, not a catalog dataset")
        venue, market, symbol, name = self.dataset.strip("/").split("/")
        return venue, market, symbol, name


class PerpetualDataConfig(_Model):
    """A mark-price or funding-rate file of one perpetual (see :mod:`tradebus.data.perpetual`)."""

    instrument: str = Field(min_length=1)
    file: Path


class DataConfig(_Model):
    """Where the replayed data comes from and which time range is used.

    ``start`` is inclusive and ``end`` exclusive; dates mean midnight UTC and
    naive datetimes are UTC. ``marks`` and ``funding`` are mark-price and funding-rate files
    of perpetual instruments, replayed next to the sources.
    """

    catalog: Path | None = None
    sources: list[DataSourceConfig] = Field(min_length=1)
    marks: list[PerpetualDataConfig] = Field(default_factory=list)
    funding: list[PerpetualDataConfig] = Field(default_factory=list)
    start: datetime | date | None = None
    end: datetime | date | None = None

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        built: set[str] = set()
        for n, source in enumerate(self.sources):
            if source.bars is not None:
                if source.instrument in built:
                    raise ValueError(f"sources.{n}.bars: {source.instrument} already builds bars from another source")
                if any(s.instrument == source.instrument and s.kind == "bars" for s in self.sources):
                    raise ValueError(f"sources.{n}.bars: {source.instrument} already has a bars source")
                built.add(source.instrument)
        if any(s.dataset is not None for s in self.sources) and self.catalog is None:
            raise ValueError("'catalog' is required when a source names a catalog 'dataset'")
        if self.start is not None and self.end is not None and to_ns(self.start) >= to_ns(self.end):
            raise ValueError(f"start {self.start} must be before end {self.end}")
        return self

    @property
    def start_ns(self) -> int | None:
        """Inclusive start in ns, or ``None``."""
        return None if self.start is None else to_ns(self.start)

    @property
    def end_ns(self) -> int | None:
        """Exclusive end in ns, or ``None``."""
        return None if self.end is None else to_ns(self.end)


class StrategyConfig(_Model):
    """The strategy to run: a built-in name (``ema_cross``) or ``"package.module:Class"``.

    ``params`` are validated by the strategy class's ``Params`` model.
    """

    name: str = Field(min_length=1)
    id: str | None = Field(default=None, min_length=1)
    instruments: list[str] = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)


def strategy_entries(config: RunBase) -> list[tuple[str, StrategyConfig]]:
    """``(field path, entry)`` of every strategy of a config: ``strategy`` or ``strategies.<n>``."""
    if config.strategy is not None:
        return [("strategy", config.strategy)]
    return [(f"strategies.{n}", entry) for n, entry in enumerate(config.strategies)]


def check_strategy_choice(config: RunBase, instrument_ids: Sequence[str]) -> None:
    """Exactly one of ``strategy``/``strategies``, unique ids, and only known instruments.

    Raises
    ------
    ValueError
        Naming the field path of the problem.
    """
    if config.strategy is None and not config.strategies:
        raise ValueError("strategy: required field is missing (or give 'strategies', a list of them)")
    if config.strategy is not None and config.strategies:
        raise ValueError("strategies: give either 'strategy' (one) or 'strategies' (a list), not both")
    ids: dict[str, str] = {}
    for path, entry in strategy_entries(config):
        for n, iid in enumerate(entry.instruments):
            if iid not in instrument_ids:
                raise ValueError(f"{path}.instruments.{n}: {iid!r} is not one of the instruments {list(instrument_ids)}")
        if len(config.strategies) > 1:
            if entry.id is None:
                raise ValueError(f"{path}.id: required when several strategies run (ids name them in the outputs)")
            if entry.id in ids:
                raise ValueError(f"{path}.id: {entry.id!r} is already the id of {ids[entry.id]}")
            ids[entry.id] = path


class ReportConfig(_Model):
    """Run outputs: ``equity_interval`` is the spacing of the equity curve samples."""

    equity_interval: str = "1h"

    @field_validator("equity_interval")
    @classmethod
    def _is_duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @property
    def equity_interval_ns(self) -> int:
        """The sampling interval in ns."""
        return parse_duration(self.equity_interval)


_DEFAULT_CASH = 100_000.0


def check_starting_balances(config: RunBase) -> None:
    """Check ``balances`` against the instruments and make ``initial_cash`` agree with it.

    With ``balances``, ``initial_cash`` is the balance of the first instrument's quote asset
    (set here, so a dumped config reloads); one given explicitly must agree with it.

    Raises
    ------
    ValueError
        ``balances`` names an asset no instrument trades, or disagrees with ``initial_cash``.
    """
    if config.balances is None:
        return
    assets = set()
    for inst in config.instruments:
        assets.update(asset_names(inst.to_instrument()))
    for asset in config.balances:
        if asset not in assets:
            raise ValueError(
                f"balances.{asset}: no instrument has {asset!r} as base or quote asset ({sorted(assets)})"
            )
    reporting = asset_names(config.instruments[0].to_instrument())[1]
    cash = config.balances.get(reporting, 0.0)
    if "initial_cash" in config.model_fields_set and config.initial_cash not in (cash, _DEFAULT_CASH):
        raise ValueError(
            f"initial_cash {config.initial_cash} disagrees with balances.{reporting} {cash}: give 'balances' only"
        )
    if cash > 0.0:
        object.__setattr__(config, "initial_cash", cash)  # frozen model; keeps the dump consistent


class RunBase(_Model):
    """What every run config has: instruments, strategies, venue, risk, features, money, report.

    :class:`RunConfig` (backtest), :class:`~tradebus.node.config.PaperConfig` and
    :class:`~tradebus.node.live.LiveConfig` derive from it and add where their market data comes
    from (:meth:`data_kinds`) and the paths they hold (:meth:`resolve_paths`). The cross-checks
    here (starting balances, unique instrument ids, the strategy choice and its instruments)
    run for all of them.

    Starting balances: ``initial_cash`` credits the first instrument's quote asset; ``balances``
    (``{USDT: 10000, BTC: 0.5}``) sets every asset instead (see :mod:`tradebus.account` and
    :func:`check_starting_balances`).
    """

    instruments: list[InstrumentConfig] = Field(min_length=1)
    strategy: StrategyConfig | None = None
    strategies: list[StrategyConfig] = Field(default_factory=list)
    venue: VenueConfig = Field(default_factory=VenueConfig)
    risk: RiskConfig = Field(default_factory=RiskConfig)
    features: list[FeatureSpec] = Field(default_factory=list)
    initial_cash: PositiveFloat = _DEFAULT_CASH
    balances: dict[str, NonNegativeFloat] | None = None
    report: ReportConfig = Field(default_factory=ReportConfig)

    @model_validator(mode="after")
    def _check_run_parts(self) -> Self:
        check_starting_balances(self)
        ids = [i.instrument_id for i in self.instruments]
        if len(set(ids)) != len(ids):
            raise ValueError(f"instruments: duplicate instrument ids in {ids}")
        check_strategy_choice(self, ids)
        return self

    def instrument_map(self) -> dict[str, Instrument]:
        """``instrument_id -> Instrument`` in config order."""
        return {i.instrument_id: i.to_instrument() for i in self.instruments}

    @abstractmethod
    def data_kinds(self) -> dict[str, set[str]]:
        """``instrument_id -> {"bars", "trades", "quotes"}``: the market data the run delivers."""

    def resolve_paths(self, base: Path) -> Self:
        """A copy with every relative path of the config made absolute against ``base``."""
        return self


class RunConfig(RunBase):
    """A whole backtest run: the :class:`RunBase` parts plus the ``data`` it replays."""

    data: DataConfig

    @model_validator(mode="after")
    def _cross_check(self) -> RunConfig:
        ids = [i.instrument_id for i in self.instruments]
        for n, source in enumerate(self.data.sources):
            if source.instrument not in ids:
                raise ValueError(
                    f"data.sources.{n}.instrument: {source.instrument!r} is not one of the instruments {ids}"
                )
        perpetual = {i.instrument_id for i in self.instruments if i.kind == InstrumentKind.PERPETUAL}
        for key in ("marks", "funding"):
            for n, entry in enumerate(getattr(self.data, key)):
                if entry.instrument not in perpetual:
                    raise ValueError(
                        f"data.{key}.{n}.instrument: {entry.instrument!r} is not a perpetual instrument "
                        f"(perpetuals: {sorted(perpetual)})"
                    )
        return self

    def data_kinds(self) -> dict[str, set[str]]:
        """``instrument_id -> {"bars", "trades", ...}``: the market data the run replays."""
        kinds: dict[str, set[str]] = {}
        for source in self.data.sources:
            kinds.setdefault(source.instrument, set()).add(source.kind)
            if source.bars is not None:
                kinds[source.instrument].add("bars")
        return kinds

    def resolve_paths(self, base: Path) -> RunConfig:
        """A copy with the catalog root and data files made absolute against ``base``."""
        data = self.data.model_copy(
            update={
                "catalog": resolve_path(self.data.catalog, base),
                "sources": [s.model_copy(update={"file": resolve_path(s.file, base)}) for s in self.data.sources],
                "marks": [m.model_copy(update={"file": resolve_path(m.file, base)}) for m in self.data.marks],
                "funding": [f.model_copy(update={"file": resolve_path(f.file, base)}) for f in self.data.funding],
            }
        )
        return self.model_copy(update={"data": data})


def config_error_from(source: str, exc: ValidationError, prefix: tuple[int | str, ...] = ()) -> ConfigError:
    """Turn a pydantic ``ValidationError`` into one :class:`ConfigError` naming ``source`` and each field path.

    ``prefix`` is prepended to every field path (e.g. ``("strategy", "params")``).
    """
    lines = describe_errors(exc, prefix)
    return ConfigError(f"{source}: invalid config:\n  " + "\n  ".join(lines))


ConfigT = TypeVar("ConfigT", bound=RunBase)


def parse_config(
    data: Any, source: str = "<config>", base: Path | None = None, model: type[ConfigT] = RunConfig  # type: ignore[assignment]
) -> ConfigT:
    """Validate a config mapping (already parsed from YAML) into ``model`` (a :class:`RunConfig` by default).

    Strategy parameters are validated against the strategy class (which is
    imported by name) and its instruments. Relative paths are resolved against
    ``base`` when given. No data file is opened. The paper daemon's config uses
    the same path with its own model.

    Raises
    ------
    ConfigError
        Naming ``source`` and the field path of every problem.
    """
    from tradebus.strategies.base import resolve_strategy

    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of config sections, got {type(data).__name__}")
    try:
        config = model.model_validate(data)  # type: ignore[attr-defined]
    except ValidationError as exc:
        raise config_error_from(source, exc) from None
    instruments = config.instrument_map()
    validated: list[StrategyConfig] = []
    for path, entry in strategy_entries(config):
        try:
            cls = resolve_strategy(entry.name, base)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {path}.name: {exc}") from None
        try:
            params = cls.Params.model_validate(entry.params)
        except ValidationError as exc:
            raise config_error_from(source, exc, (*path.split("."), "params")) from None
        try:
            cls.check_params(params, [instruments[i] for i in entry.instruments])
        except ConfigError as exc:
            raise ConfigError(f"{source}: {path}.params.{exc}") from None
        _check_data_kinds(source, config, path, entry, cls.data_kinds(params))
        # Store the validated (defaults filled in) parameters so the resolved config is complete.
        validated.append(entry.model_copy(update={"params": params.model_dump(mode="json")}))
    if config.strategy is not None:
        config = config.model_copy(update={"strategy": validated[0]})
    else:
        config = config.model_copy(update={"strategies": validated})
    return config.resolve_paths(base) if base is not None else config


def _check_data_kinds(
    source: str, config: RunBase, path: str, entry: StrategyConfig, wanted: frozenset[str]
) -> None:
    if not wanted:
        return
    available = config.data_kinds()
    offered = set().union(*(available.get(iid, set()) for iid in entry.instruments))
    if not wanted & offered:
        raise ConfigError(
            f"{source}: {path}.name: {entry.name!r} acts on {', '.join(sorted(wanted))}, "
            f"but the run has only {', '.join(sorted(offered)) or 'no data'} for "
            f"{', '.join(entry.instruments)}: it would never trade"
        )


def apply_overrides(data: Any, overrides: Sequence[str], source: str = "<config>") -> Any:
    """``data`` (a parsed YAML mapping) with ``--set`` overrides applied, each ``"dotted.path=value"``.

    The value is parsed as YAML (``12``, ``0.5``, ``true``, ``[a, b]``, ``"text"``); a path
    goes through mappings by key and lists by index, and may add a key (validation then
    says whether the key is allowed). The input is not modified.

    Raises
    ------
    ConfigError
        If an override is not ``path=value``, its value is not YAML, or its path does not
        lead through mappings and lists of the config.
    """
    result = copy.deepcopy(data)
    for override in overrides:
        path, sep, text = override.partition("=")
        keys = path.strip().split(".")
        if not sep or not all(keys):
            raise ConfigError(f"--set {override!r}: expected 'section.key=value', e.g. strategy.params.fast=12")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(f"--set {override!r}: the value is not valid YAML") from None
        node = result
        for depth, key in enumerate(keys):
            where = ".".join(keys[:depth]) or "<root>"
            last = depth == len(keys) - 1
            if isinstance(node, dict):
                if last:
                    node[key] = value
                else:
                    node = node.setdefault(key, {})
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                if last:
                    node[int(key)] = value
                else:
                    node = node[int(key)]
            else:
                raise ConfigError(f"{source}: --set {override!r}: {where} has no entry {key!r}")
    return result


def load_config(
    path: str | Path,
    model: type[ConfigT] = RunConfig,  # type: ignore[assignment]
    overrides: Sequence[str] = (),
) -> ConfigT:
    """Read and validate a YAML run config (into ``model``, a :class:`RunConfig` by default).

    ``overrides`` (``["strategy.params.fast=12"]``, the CLI's ``--set``) are applied before
    validation (:func:`apply_overrides`), so the resolved config records them.

    Raises
    ------
    ConfigError
        If the file is missing or unreadable, is not valid YAML, or any field is
        invalid; the message names the file and the field path.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if overrides:
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of config sections, got {type(data).__name__}")
        data = apply_overrides(data, overrides, str(path))
    return parse_config(data, str(path), base=path.resolve().parent, model=model)


def dump_config(config: BaseModel) -> str:
    """The resolved config (a :class:`RunConfig` or the paper daemon's) as YAML text (defaults filled in, stable key order)."""
    data = config.model_dump(mode="json")
    for key in ("strategy", "strategies"):
        if data.get(key) in (None, []):
            data.pop(key, None)  # the one of the pair the config does not use
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)

