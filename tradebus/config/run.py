"""Run configs: :class:`RunBase` (what backtest, paper and live runs share) and the backtest's :class:`RunConfig`."""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Annotated, Self

from pydantic import Field, field_validator, model_validator

from tradebus.account import asset_names
from tradebus.config.base import StrictModel, resolve_path
from tradebus.config.data import DataConfig
from tradebus.config.instruments import InstrumentConfig
from tradebus.config.strategy import StrategyConfig, check_strategy_choice, strategy_entries
from tradebus.config.units import parse_duration
from tradebus.engine.instrument import Instrument, InstrumentKind
from tradebus.execution.config import VenueConfig
from tradebus.features.spec import FeatureSpec
from tradebus.risk.config import RiskConfig

__all__ = [
    "ReportConfig",
    "RunBase",
    "RunConfig",
    "check_borrow_rates",
    "check_fill_data",
    "check_fill_model_settings",
    "check_starting_balances",
    "default_fill_on",
]


class ReportConfig(StrictModel):
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

    Each asset is a base or quote asset of an instrument, or one the run's venue charges fees
    in (:meth:`RunBase.fee_assets`: a live Binance spot or USD-M account's ``BNB``); nothing else can
    move a balance, so any other asset is refused. With ``balances``, ``initial_cash`` is the
    balance of the first instrument's quote asset (set here, so a dumped config reloads); one
    given explicitly must agree with it.

    Raises
    ------
    ValueError
        ``balances`` names an asset neither traded nor a fee asset, has no positive balance of a
        traded asset (``{}``, ``{USDT: 0}``: an account with nothing), or disagrees with ``initial_cash``.
    """
    if config.balances is None:
        return
    assets = set()
    for inst in config.instruments:
        assets.update(asset_names(inst.to_instrument()))
    fee_assets = config.fee_assets()
    for asset in config.balances:
        if asset not in assets and asset not in fee_assets:
            charged = (
                f"nor is it an asset the venue charges fees in ({sorted(fee_assets)})"
                if fee_assets
                else "and this run's venue charges fees in no other asset (a live Binance spot or USD-M "
                "account charges BNB)"
            )
            raise ValueError(
                f"balances.{asset}: no instrument has {asset!r} as base or quote asset ({sorted(assets)}), {charged}"
            )
    if not any(amount > 0.0 for asset, amount in config.balances.items() if asset in assets):
        raise ValueError(
            f"balances: no base or quote asset of an instrument has a positive balance ({config.balances}): the "
            "account would start with nothing to trade and no equity to measure returns against; give one, "
            "or leave 'balances' out to start with initial_cash"
        )
    reporting = asset_names(config.instruments[0].to_instrument())[1]
    cash = config.balances.get(reporting, 0.0)
    if "initial_cash" in config.model_fields_set and config.initial_cash not in (cash, _DEFAULT_CASH):
        raise ValueError(
            f"initial_cash {config.initial_cash} disagrees with balances.{reporting} {cash}: give 'balances' only"
        )
    if cash > 0.0:
        object.__setattr__(config, "initial_cash", cash)  # frozen model; keeps the dump consistent


def check_borrow_rates(config: RunBase) -> None:
    """Check that every asset of ``annual_borrow_rates`` is one a margin spot instrument borrows.

    Raises
    ------
    ValueError
        Naming the asset and the assets that can be borrowed (the base and quote assets of the
        ``kind: spot``, ``margin: true`` instruments).
    """
    if config.annual_borrow_rates is None:
        return
    borrowable: set[str] = set()
    for inst in config.instruments:
        instrument = inst.to_instrument()
        if not instrument.cash_only and not instrument.is_perpetual:
            borrowable.update(asset_names(instrument))
    for asset in config.annual_borrow_rates:
        if asset not in borrowable:
            where = f"the margin spot instruments borrow {sorted(borrowable)}" if borrowable else (
                "no instrument is margin spot (kind: spot, margin: true): nothing borrows")
            raise ValueError(f"annual_borrow_rates.{asset}: {asset!r} is not an asset a run can borrow; {where}")


def check_fill_model_settings(venue: VenueConfig) -> None:
    """Settings of one fill model set while the venue fills with another are errors, not ignored.

    ``venue.book`` only acts with ``fill_on: book`` and ``venue.bar_path`` only with ``fill_on:
    bars``; ``slippage_bps``, ``slippage``, ``limit_fill`` and ``trade_size_limit`` not with
    ``fill_on: book`` (a taking order walks the book's levels, a resting one fills by its queue).
    A value other than the default with another ``fill_on`` would change nothing.
    (Defaults are fine: a dumped config, which spells every default out, reloads.)

    Raises
    ------
    ValueError
        Naming the setting and the ``fill_on`` it needs.
    """
    defaults = VenueConfig()
    if venue.fill_on != "book" and venue.book != defaults.book:
        raise ValueError(f"venue.book: these settings act only with fill_on: book (this venue fills on {venue.fill_on})")
    if venue.fill_on != "bars" and venue.bar_path != defaults.bar_path:
        raise ValueError(f"venue.bar_path: acts only with fill_on: bars (this venue fills on {venue.fill_on})")
    if venue.fill_on == "book":
        for name, needs in (("slippage_bps", "bars, trades or quotes"), ("slippage", "bars, trades or quotes"),
                            ("limit_fill", "bars, trades or quotes"), ("trade_size_limit", "trades or quotes")):
            if getattr(venue, name) != getattr(defaults, name):
                raise ValueError(
                    f"venue.{name}: acts only with fill_on: {needs} (this venue fills on book: a taking order "
                    "walks the book's levels, a resting limit fills by its queue)"
                )


def check_fill_data(config: RunConfig) -> None:
    """Each strategy's instruments have the data the venue fills on (``venue.fill_on``).

    The simulated venue matches orders only on that kind of data (bars, trades, quotes or
    the L2 book) as the run replays it: bars built from trades reach the strategies, not the
    venue. Without it an order never arrives and the run ends with no fill, as if the strategy
    had never traded.

    Raises
    ------
    ValueError
        Naming the strategy, its instruments, the data they have and ``venue.fill_on``.
    """
    fill_on = config.venue.fill_on
    available = config.venue_data_kinds()
    for path, entry in strategy_entries(config):
        offered = set().union(*(available.get(iid, set()) for iid in entry.instruments))
        if fill_on not in offered:
            raise ValueError(
                f"venue.fill_on: {fill_on!r} matches orders on {fill_on} data, but the run replays only "
                f"{', '.join(sorted(offered)) or 'no data'} for {', '.join(entry.instruments)} ({path}): "
                f"no order would ever fill (add a data source of kind {fill_on!r} or change fill_on)"
            )


def default_fill_on(config: RunConfig) -> str | None:
    """What a config that does not name ``venue.fill_on`` fills on: the first of bars, trades and quotes
    that every strategy's instruments replay (``None``: none of them does; ``fill_on: book`` is never
    chosen, as its settings are its own)."""
    available = config.venue_data_kinds()
    offered = [
        set().union(*(available.get(iid, set()) for iid in entry.instruments)) for _, entry in strategy_entries(config)
    ]
    return next((kind for kind in ("bars", "trades", "quotes") if all(kind in kinds for kinds in offered)), None)


class RunBase(StrictModel):
    """What every run config has: instruments, strategies, venue, risk, features, money, report.

    :class:`RunConfig` (backtest), :class:`~tradebus.node.config.PaperConfig` and
    :class:`~tradebus.node.live.LiveConfig` derive from it and add where their market data comes
    from (:meth:`data_kinds`) and the paths they hold (:meth:`resolve_paths`). The cross-checks
    here (starting balances, unique instrument ids, the strategy choice and its instruments)
    run for all of them.

    Starting balances: ``initial_cash`` credits the first instrument's quote asset; ``balances``
    (``{USDT: 10000, BTC: 0.5}``) sets every asset instead, and may add an asset the venue
    charges fees in (:meth:`fee_assets`; see :mod:`tradebus.account` and
    :func:`check_starting_balances`).

    Borrowing interest: ``annual_borrow_rates`` (``{USDT: 0.08, BTC: 0.10}``, annual fractions,
    0.08 = 8 % a year) charges interest on what margin spot positions borrow, hourly (see
    :mod:`tradebus.engine.interest`); absent or empty (``{}``), nothing is charged. Each asset must be a base or
    quote asset of a margin spot instrument (:func:`check_borrow_rates`).
    """

    instruments: list[InstrumentConfig] = Field(min_length=1)
    strategy: StrategyConfig | None = None
    strategies: list[StrategyConfig] = Field(default_factory=list)
    venue: VenueConfig = Field(default_factory=VenueConfig)
    risk: RiskConfig = Field(default_factory=RiskConfig)
    features: list[FeatureSpec] = Field(default_factory=list)
    initial_cash: float = Field(default=_DEFAULT_CASH, gt=0.0, allow_inf_nan=False)
    balances: dict[str, Annotated[float, Field(ge=0.0, allow_inf_nan=False)]] | None = None
    annual_borrow_rates: dict[str, Annotated[float, Field(ge=0.0, allow_inf_nan=False)]] | None = None
    report: ReportConfig = Field(default_factory=ReportConfig)

    @field_validator("annual_borrow_rates")
    @classmethod
    def _no_rates_is_no_key(cls, rates: dict[str, float] | None) -> dict[str, float] | None:
        return rates or None  # ``{}`` sets no rate: the run charges nothing, as without the key

    @model_validator(mode="after")
    def _check_run_parts(self) -> Self:
        check_starting_balances(self)
        check_borrow_rates(self)
        check_fill_model_settings(self.venue)
        ids = [i.instrument_id for i in self.instruments]
        if len(set(ids)) != len(ids):
            raise ValueError(f"instruments: duplicate instrument ids in {ids}")
        check_strategy_choice(self, ids)
        return self

    def fee_assets(self) -> frozenset[str]:
        """Assets no instrument trades that the run's venue charges fees in (none: simulated venues charge the quote asset)."""
        return frozenset()

    def instrument_map(self) -> dict[str, Instrument]:
        """``instrument_id -> Instrument`` in config order."""
        return {i.instrument_id: i.to_instrument() for i in self.instruments}

    @abstractmethod
    def data_kinds(self) -> dict[str, set[str]]:
        """``instrument_id -> {"bars", "trades", "quotes"}``: the market data the run delivers."""

    def resolve_paths(self, base: Path) -> Self:
        """A copy with every relative path of the config made absolute against ``base``.

        Here the venue's (``venue.book.ack_latency_samples``); subclasses add their own.
        """
        book = self.venue.book
        if book.ack_latency_samples is None:
            return self
        book = book.model_copy(update={"ack_latency_samples": resolve_path(book.ack_latency_samples, base)})
        return self.model_copy(update={"venue": self.venue.model_copy(update={"book": book})})


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
        if "venue" not in self.model_fields_set or "fill_on" not in self.venue.model_fields_set:
            chosen = default_fill_on(self)
            if chosen is not None and chosen != self.venue.fill_on:
                object.__setattr__(self, "venue", self.venue.model_copy(update={"fill_on": chosen}))
                check_fill_model_settings(self.venue)  # checked against the default, bars, before
        check_fill_data(self)
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

    def venue_data_kinds(self) -> dict[str, set[str]]:
        """``instrument_id -> {"bars", "trades", ...}``: the market data the run replays to the venue
        (bars built from trades are the strategies' only)."""
        kinds: dict[str, set[str]] = {}
        for source in self.data.sources:
            kinds.setdefault(source.instrument, set()).add(source.kind)
        return kinds

    def resolve_paths(self, base: Path) -> RunConfig:
        """A copy with the venue's, the catalog root's and the data files' paths made absolute against ``base``."""
        config = super().resolve_paths(base)
        data = config.data.model_copy(
            update={
                "catalog": resolve_path(self.data.catalog, base),
                "sources": [s.model_copy(update={"file": resolve_path(s.file, base)}) for s in self.data.sources],
                "marks": [m.model_copy(update={"file": resolve_path(m.file, base)}) for m in self.data.marks],
                "funding": [f.model_copy(update={"file": resolve_path(f.file, base)}) for f in self.data.funding],
            }
        )
        return config.model_copy(update={"data": data})
