"""Stress and robustness variants: shocks injected into replayed prices, and cost and latency multipliers.

A :class:`StressVariant` combines any of:

``flash_crash: {at, depth, recovery, instruments}``
    From the first row at or after ``at`` (replay time, ``ts_init``), every price is
    multiplied by ``1 - depth * (1 - (t - at) / recovery)``: a gap down of ``depth`` (0.3 =
    30 %) that recovers linearly to the original prices over ``recovery`` (a duration,
    ``"1d"``). A bar's open, high, low and close take the factor of the bar's time, so the
    bar stays consistent. Prices outside ``[at, at + recovery)`` are unchanged.
``vol_spike: {start, duration, factor, instruments}``
    Inside ``[start, start + duration)`` every price ``x`` becomes ``a * (x / a) ** factor``,
    ``a`` being the last price before the window (the first open or price inside it if there
    is none; a quote's price is its mid): moves away from ``a`` are amplified (``factor`` 3
    triples log-returns measured from ``a``). After the window prices keep their original
    returns from where the shocked path ended (every later price is multiplied by ``shocked
    end / original end``). Each replayed series (an instrument's trades, its quotes) has its
    own ``a`` and end. The map is increasing, so high stays the highest and low the lowest
    price of each bar.
``costs: m``
    Every fee rate (each instrument's maker and taker fee and fee tiers, the venue's
    overrides) and the venue's slippage (``slippage_bps`` or the slippage model's
    coefficients) multiplied by ``m`` (2 and 5 are the usual stresses). A multiplied value the
    config would refuse (a taker fee of 0.1 or more, an infinite slippage) is refused, naming the
    multiplier and the field (:meth:`StressVariant.apply_config`), before any trial; a default
    variant that does is left out and noted in ``stress.json`` (:func:`default_variants`).
``latency: m``
    Every latency of the venue multiplied by ``m``: ``latency_ns`` and, for ``fill_on: book``,
    the entry and acknowledgement latencies of ``venue.book`` (constant ones in place, sampled
    ones through ``latency_scale``). A zero latency stays zero: set ``venue.latency_ns`` in the
    config to stress it.

A cost or latency multiplier that leaves the config as it is (zero fees and slippage, zero
latency), or a price shock outside the data, is named by :meth:`StressVariant.no_effect`; the
sweep logs it and notes it in ``stress.json`` and its summary.

``instruments`` (default: every instrument) limits a price shock to some instruments.
The prices shocked are those of bars, trades, quotes (bid and ask: each by the same factor,
so the bid stays at or below the ask) and mark prices (mark and index price), both
replayed and fed beside the replay (``data.marks``, :meth:`StressVariant.shock_marks`): a
perpetual is valued and liquidated at its mark, which falls with its bars. Volumes, sizes,
funding rates and open interest are never changed (replayed funding rates and open interest
pass through as they are). An L2 book cannot be shocked (a factor changing with time would
move successive book updates differently): a variant whose shock reaches an instrument with
book data is refused before any trial (:meth:`StressVariant.check_data`). A variant with none
of these is the ``baseline``.
Shocks are applied to :meth:`Replay.batches` by :class:`StressedReplay` in the worker
that runs the trial; the data in the catalog is never modified.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec
import numpy as np
from loguru import logger
from pydantic import Field, PositiveFloat, ValidationError, field_validator

from tradebus.config import RunConfig, parse_duration, to_ns
from tradebus.config.base import StrictModel, describe_errors
from tradebus.config.units import Moment
from tradebus.data.replay import ReplayBatch
from tradebus.errors import ConfigError
from tradebus.engine.messages import FundingRate, MarkPrice

__all__ = [
    "FlashCrash",
    "StressVariant",
    "StressedReplay",
    "VolSpike",
    "default_variants",
    "scale_costs",
    "scale_latency",
]


_Model = StrictModel


def _check_duration(value: str) -> str:
    parse_duration(value)
    return value


class FlashCrash(_Model):
    """A gap down of ``depth`` at ``at``, recovering linearly over ``recovery`` (see the module doc)."""

    at: Moment
    depth: float = Field(gt=0.0, lt=1.0)
    recovery: str = "1d"
    instruments: list[str] | None = None

    @field_validator("recovery")
    @classmethod
    def _recovery_is_duration(cls, value: str) -> str:
        return _check_duration(value)

    def factor(self, ts: np.ndarray) -> np.ndarray:
        """The price multiplier at each time of ``ts`` (int64 ns)."""
        at = to_ns(self.at)
        span = parse_duration(self.recovery)
        elapsed = (ts - at).astype(np.float64)
        inside = (ts >= at) & (ts < at + span)
        return np.where(inside, 1.0 - self.depth * (1.0 - elapsed / span), 1.0)


class VolSpike(_Model):
    """Log-moves amplified by ``factor`` inside ``[start, start + duration)`` (see the module doc)."""

    start: Moment
    duration: str
    factor: PositiveFloat
    instruments: list[str] | None = None

    @field_validator("duration")
    @classmethod
    def _duration_is_duration(cls, value: str) -> str:
        return _check_duration(value)


class StressVariant(_Model):
    """One named stress scenario (see the module docstring); none of the fields set = baseline."""

    name: str = Field(min_length=1)
    flash_crash: FlashCrash | None = None
    vol_spike: VolSpike | None = None
    costs: PositiveFloat | None = Field(default=None, allow_inf_nan=False)
    latency: float | None = Field(default=None, ge=0.0, allow_inf_nan=False)

    @property
    def shocks_prices(self) -> bool:
        """Whether the variant changes the replayed data."""
        return self.flash_crash is not None or self.vol_spike is not None

    def apply_config(self, config: RunConfig) -> RunConfig:
        """The config with this variant's cost and latency multipliers applied.

        Raises
        ------
        ConfigError
            A multiplied value breaks the config's own rule for it (a taker fee of 0.006 times 20
            is 0.12, not below 0.1): the error names the multiplier and the field.
        """
        scaled = config
        if self.costs is not None:
            scaled = scale_costs(scaled, self.costs)
        if self.latency is not None:
            scaled = scale_latency(scaled, self.latency)
        if scaled is not config:
            try:
                type(scaled).model_validate(scaled.model_dump())
            except ValidationError as exc:
                multipliers = ", ".join(
                    f"{name} x{value:g}" for name, value in (("costs", self.costs), ("latency", self.latency)) if value is not None
                )
                raise ConfigError(f"{multipliers} makes an invalid config:\n  " + "\n  ".join(describe_errors(exc))) from None
        return scaled

    def no_effect(self, config: RunConfig, span: tuple[int, int] | None = None) -> str | None:
        """What of this variant changes nothing, or ``None``.

        A multiplier of zero costs or latency leaves ``config`` as it is; a price shock whose
        window lies outside the data's ``span`` (``[start, end)`` ns, if known) moves no price.
        """
        parts = []
        if self.costs is not None and scale_costs(config, self.costs) == config:
            why = ": every fee rate and the slippage are zero" if self.costs != 1.0 else ""
            parts.append(f"costs x{self.costs:g} change nothing{why}")
        if self.latency is not None and scale_latency(config, self.latency) == config:
            why = ": the venue's latency is zero (set venue.latency_ns)" if self.latency != 1.0 else ""
            parts.append(f"latency x{self.latency:g} changes nothing{why}")
        shocks = []
        if self.flash_crash is not None:
            shocks.append(("flash crash", self.flash_crash.at, self.flash_crash.recovery))
        if self.vol_spike is not None:
            shocks.append(("volatility spike", self.vol_spike.start, self.vol_spike.duration))
        for what, start, length in shocks if span is not None else ():
            begin = to_ns(start)
            if begin >= span[1] or begin + parse_duration(length) <= span[0]:  # type: ignore[index]
                parts.append(f"the {what} at {start} falls outside the data")
        return "; ".join(parts) or None

    def check_data(self, config: RunConfig) -> None:
        """Refuse a price shock on data it cannot move: an instrument's L2 book.

        A flash crash's or volatility spike's factor changes with time, so it would move the
        levels of successive book updates differently (a level added at one price is removed
        at another, and the book crosses). A shock limited by ``instruments`` to instruments
        without book data is accepted.

        Raises
        ------
        ConfigError
            Naming the shock, the data source and its kind.
        """
        for key, spec in (("flash_crash", self.flash_crash), ("vol_spike", self.vol_spike)):
            for n, source in enumerate(config.data.sources) if spec is not None else ():
                if source.kind in _PRICE_FIELDS or source.kind in _NO_PRICES:
                    continue
                if spec.instruments is None or source.instrument in spec.instruments:  # type: ignore[union-attr]
                    raise ConfigError(
                        f"{key}: cannot shock the {source.kind} data of {source.instrument} (data.sources.{n}): its "
                        "factor changes with time and would move the levels of successive book updates differently, "
                        "so the book would no longer hold; limit the shock to other instruments (instruments: [...]) "
                        "or replay the instrument's quotes or trades instead"
                    )

    def wrap(self, replay: _Batched) -> _Batched:
        """``replay`` with this variant's price shocks (itself when there are none)."""
        shocks = self._shocks()
        return StressedReplay(replay, shocks) if shocks else replay

    def shock_marks(self, messages: Sequence[MarkPrice | FundingRate]) -> list[MarkPrice | FundingRate]:
        """``messages`` (a backtest's side feed, :func:`tradebus.cli.perpetual_data`) with the mark prices shocked.

        Each instrument's marks go through the variant's price shocks in ``ts_init`` order as a
        series of their own (a volatility spike's anchor is the last mark before the window);
        funding rates and the order of ``messages`` are kept.
        """
        shocks = self._shocks()
        out = list(messages)
        rows: dict[str, list[int]] = {}
        for i, msg in enumerate(out):
            if type(msg) is MarkPrice:
                rows.setdefault(msg.instrument_id, []).append(i)
        for iid, index in rows.items() if shocks else ():
            index.sort(key=lambda i: out[i].ts_init)
            marks = [out[i] for i in index]
            batch = ReplayBatch(
                0, iid, "mark_prices",
                np.array([m.ts_event for m in marks], dtype=np.int64),
                np.array([m.ts_init for m in marks], dtype=np.int64),
                {"mark_price": np.array([m.mark_price for m in marks], dtype=np.float64),
                 "index_price": np.array([m.index_price for m in marks], dtype=np.float64)},
            )
            for shock in shocks:
                batch = shock.apply(batch)
            for row, (i, mark) in enumerate(zip(index, marks, strict=True)):
                out[i] = msgspec.structs.replace(
                    mark, mark_price=float(batch.columns["mark_price"][row]),
                    index_price=float(batch.columns["index_price"][row]),
                )
        return out

    def _shocks(self) -> list[_Shock]:
        """New shocks of this variant (a volatility spike keeps state along the series it shocks)."""
        shocks: list[_Shock] = []
        if self.flash_crash is not None:
            shocks.append(_FlashCrashShock(self.flash_crash))
        if self.vol_spike is not None:
            shocks.append(_VolSpikeShock(self.vol_spike))
        return shocks


def _scaled_fees(model: _Fees, multiplier: float) -> Any:
    return model.model_copy(update={"maker_fee": model.maker_fee * multiplier, "taker_fee": model.taker_fee * multiplier})


def scale_costs(config: RunConfig, multiplier: float) -> RunConfig:
    """``config`` with every fee rate and the slippage multiplied by ``multiplier``.

    Fees: each instrument's maker and taker rates and those of its ``fee_tiers``, and the
    venue's overrides. Slippage: ``slippage_bps``, or a slippage model's ``bps``,
    ``impact_bps`` and ``k`` (and its ``max_bps`` cap, so the multiplied cost is not clamped).
    """
    instruments = [
        _scaled_fees(i, multiplier).model_copy(update={"fee_tiers": [_scaled_fees(t, multiplier) for t in i.fee_tiers]})
        for i in config.instruments
    ]
    venue = config.venue
    slippage = venue.slippage
    if slippage is not None:
        slippage = slippage.model_copy(update={
            name: getattr(slippage, name) * multiplier for name in ("bps", "impact_bps", "k", "max_bps")
        })
    venue = venue.model_copy(update={
        "slippage_bps": venue.slippage_bps * multiplier,
        "slippage": slippage,
        "maker_fee": None if venue.maker_fee is None else venue.maker_fee * multiplier,
        "taker_fee": None if venue.taker_fee is None else venue.taker_fee * multiplier,
    })
    return config.model_copy(update={"instruments": instruments, "venue": venue})


def scale_latency(config: RunConfig, multiplier: float) -> RunConfig:
    """``config`` with every venue latency multiplied by ``multiplier`` (constant ones rounded to whole ns).

    ``latency_ns``; and, when the venue fills on the book, the book's ``entry_latency_ns`` (if
    set), ``ack_latency_ns`` and, when it samples recorded latencies, ``latency_scale``.
    """
    venue = config.venue
    book = venue.book
    if venue.fill_on == "book":
        entry = book.entry_latency_ns
        update: dict[str, Any] = {
            "entry_latency_ns": None if entry is None else int(round(entry * multiplier)),
            "ack_latency_ns": int(round(book.ack_latency_ns * multiplier)),
        }
        if book.ack_latency_samples is not None:
            update["latency_scale"] = book.latency_scale * multiplier
        book = book.model_copy(update=update)
    venue = venue.model_copy(update={"latency_ns": int(round(venue.latency_ns * multiplier)), "book": book})
    return config.model_copy(update={"venue": venue})


def default_variants(
    span: tuple[int, int] | None, config: RunConfig | None = None, left_out: dict[str, str] | None = None
) -> list[StressVariant]:
    """The variants of ``--stress`` without a ``stress:`` block.

    Baseline, costs ×2 and ×5, latency ×2 and ×5 and, when the data span is known, a 20 %
    flash crash recovering over a day and a 7-day ×3 volatility spike, both at mid-span
    (left out, and logged, when ``config`` replays data they cannot shock:
    :meth:`StressVariant.check_data`); a multiplier that makes ``config`` invalid (a taker fee
    of 0.025 times 5) is left out and logged too (:meth:`StressVariant.apply_config`). Each one
    left out is put in ``left_out`` (name -> why), when given, for the sweep's ``stress.json``.
    """
    variants = [StressVariant(name="baseline")]

    def keep(variant: StressVariant, check: Callable[[RunConfig], Any]) -> None:
        try:
            if config is not None:
                check(config)
        except ConfigError as exc:
            logger.info("stress: the default variant {!r} is left out: {}", variant.name, exc)
            if left_out is not None:
                left_out[variant.name] = str(exc)
            return
        variants.append(variant)

    for variant in (
        StressVariant(name="costs_x2", costs=2.0),
        StressVariant(name="costs_x5", costs=5.0),
        StressVariant(name="latency_x2", latency=2.0),
        StressVariant(name="latency_x5", latency=5.0),
    ):
        keep(variant, variant.apply_config)
    if span is not None:
        mid = datetime.fromtimestamp((span[0] + span[1]) // 2 // 1_000_000_000, UTC).replace(minute=0, second=0)
        for variant in (
            StressVariant(name="flash_crash_20pct", flash_crash=FlashCrash(at=mid, depth=0.2)),
            StressVariant(name="vol_spike_x3_7d", vol_spike=VolSpike(start=mid, duration="7d", factor=3.0)),
        ):
            keep(variant, variant.check_data)
    return variants


# ---------------------------------------------------------------------------- replay transform


class _Fees(Protocol):
    maker_fee: float
    taker_fee: float

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> Any: ...


class _Batched(Protocol):
    def batches(self) -> Iterable[Any]: ...


class _Shock(Protocol):
    def apply(self, batch: ReplayBatch) -> ReplayBatch: ...


#: The price columns of each kind a shock moves.
_PRICE_FIELDS = {
    "bars": ("open", "high", "low", "close"),
    "trades": ("price",),
    "quotes": ("bid_price", "ask_price"),
    "mark_prices": ("mark_price", "index_price"),
}
#: Kinds without a price, which a shock passes as they are.
_NO_PRICES = frozenset(("funding_rates", "open_interest"))
#: The column a series' price is read from (a volatility spike's anchor and level); quotes: the mid.
_LEVEL_FIELD = {"bars": "close", "trades": "price", "mark_prices": "mark_price"}


def _with_prices(batch: ReplayBatch, prices: dict[str, np.ndarray]) -> ReplayBatch:
    """A copy of ``batch`` with some price columns replaced (its times, and so whether they were checked, kept)."""
    columns = {**batch.columns, **prices}
    return ReplayBatch(
        batch.source, batch.instrument_id, batch.kind, batch.ts_event, batch.ts_init, columns, batch.trade_id,
        getattr(batch, "ordered", False),
    )  # fmt: skip


def _price_fields(batch: ReplayBatch) -> tuple[str, ...]:
    """The price columns of ``batch`` a shock moves (``ConfigError`` for data no shock moves, see ``check_data``)."""
    fields = _PRICE_FIELDS.get(batch.kind)
    if fields is None:
        raise ConfigError(f"a price shock cannot move the {batch.kind} data of {batch.instrument_id}")
    return fields


def _level(kind: str, prices: dict[str, np.ndarray], row: int) -> float:
    """The price of a series at ``row`` of its price columns: a quote's mid (its one side when the other is empty)."""
    if kind == "quotes":
        bid, ask = float(prices["bid_price"][row]), float(prices["ask_price"][row])
        return ask if np.isnan(bid) else bid if np.isnan(ask) else (bid + ask) / 2.0
    return float(prices[_LEVEL_FIELD[kind]][row])


def _last_price(batch: ReplayBatch, row: int) -> float:
    return _level(batch.kind, batch.columns, row)


class _FlashCrashShock:
    def __init__(self, spec: FlashCrash) -> None:
        self.spec = spec
        self.start = to_ns(spec.at)
        self.end = self.start + parse_duration(spec.recovery)
        self.only = None if spec.instruments is None else set(spec.instruments)

    def apply(self, batch: ReplayBatch) -> ReplayBatch:
        ts = batch.ts_init
        if (self.only is not None and batch.instrument_id not in self.only) or batch.kind in _NO_PRICES:
            return batch
        if ts[-1] < self.start or ts[0] >= self.end:
            return batch
        factor = self.spec.factor(ts)
        return _with_prices(batch, {f: batch.columns[f] * factor for f in _price_fields(batch)})


class _VolSpikeShock:
    def __init__(self, spec: VolSpike) -> None:
        self.factor = spec.factor
        self.start = to_ns(spec.start)
        self.end = self.start + parse_duration(spec.duration)
        self.only = None if spec.instruments is None else set(spec.instruments)
        # By series (source, instrument): an instrument's trades and quotes each keep their own.
        self.anchor: dict[tuple[int, str], float] = {}
        self.level: dict[tuple[int, str], float] = {}  # after the window: shocked end / original end

    def apply(self, batch: ReplayBatch) -> ReplayBatch:
        if (self.only is not None and batch.instrument_id not in self.only) or batch.kind in _NO_PRICES:
            return batch
        series = (batch.source, batch.instrument_id)
        fields = _price_fields(batch)
        ts = batch.ts_init
        lo = int(np.searchsorted(ts, self.start, side="left"))
        hi = int(np.searchsorted(ts, self.end, side="left"))
        if lo > 0 and series not in self.level:
            self.anchor[series] = _last_price(batch, lo - 1)
        if lo == hi and series not in self.level:
            return batch  # entirely before the window
        prices = {f: np.array(batch.columns[f], dtype=np.float64) for f in fields}
        if hi > lo:
            first = float(prices["open"][lo]) if batch.kind == "bars" else _level(batch.kind, prices, lo)
            anchor = self.anchor.setdefault(series, first)
            for f in fields:
                prices[f][lo:hi] = anchor * (prices[f][lo:hi] / anchor) ** self.factor
            original = _last_price(batch, hi - 1)
            self.level[series] = _level(batch.kind, prices, hi - 1) / original
        if hi < len(ts) and series in self.level:
            for f in fields:
                prices[f][hi:] *= self.level[series]
        return _with_prices(batch, prices)


class StressedReplay:
    """A replay whose batches pass through price shocks (in order) before the kernel sees them."""

    def __init__(self, replay: _Batched, shocks: list[_Shock]) -> None:
        self.replay = replay
        self.shocks = shocks

    @property
    def sources(self) -> Any:
        """The inner replay's sources (``None`` if it has none): the kernel reads which instruments have bars."""
        return getattr(self.replay, "sources", None)

    def batches(self) -> Iterator[ReplayBatch]:
        """The inner replay's batches, shocked."""
        for batch in self.replay.batches():
            for shock in self.shocks:
                batch = shock.apply(batch)
            yield batch
