"""Regime + entries + hazard meter: one causal state machine fed trade by trade.

:class:`RegimeHazardSystem` holds the whole decision logic; research
(:mod:`tradebus.research.regime_hazard`) and the :class:`RegimeHazard` strategy (backtest,
paper, live) feed it the same trades, so they take the same decisions.

Trades become *base* bars (``base_interval``, default 1 minute) with
:class:`~tradebus.features.bars.BarBuilder`, in base units (trades sized in contracts count
``size * contract_size``, the instrument's, as the kernel's bars from trades); base bars are
merged into *entry* bars (5 minutes) and *regime* bars (30 minutes). A bar is known only
when a trade after its end arrives, and every decision is stamped with that trade's time. A paper or live run
(the kernel's ``joins_mid_stream``) starts inside a base bar: that first bar, partial, is
dropped (:meth:`RegimeHazardSystem.join_mid_stream`); research and backtests keep it. Such a
run builds no base bar over trades its feed lost for good (``TradesMissed``,
:meth:`RegimeHazardSystem.lose`), as the kernel's own trade bars do. An entry or regime
bucket holding a base bar so dropped, or beginning before the first base bar the trades
cover (a run, or research data, starting inside the bucket), gives no bar (logged); a
base interval without trades is no missing bar.

Layer A, regime (on regime bars): efficiency ratio over ``regime_window`` bars (trend
strength), mean true range of the last ``regime_window`` bars over that of the last
``vol_window`` (volatility ratio) and the high/low range of the window. HAZARD while the
volatility ratio is above ``hazard_enter`` (kept down to ``hazard_exit``), else TREND
while the efficiency ratio is above ``trend_enter`` (kept down to ``trend_exit``), else
RANGE; a new state must hold ``confirm`` bars (:class:`~tradebus.strategies.regime.RegimeMachine`).
The state is HAZARD until the features are warm.

Layer B, entries (on entry bars, flat and out of cooldown only): in TREND, a pullback
(close at least ``pullback_atr`` ATRs against the fast EMA, with the fast/slow EMAs and
the regime window pointing the same way) enters in the trend's direction; in RANGE, a
close in the lowest / highest ``range_edge`` of the regime window's range enters
long / short; HAZARD enters nothing. Exits are triple barriers from the entry bar's
close: take-profit ``pt`` and stop ``sl`` ATRs (per regime, ``barriers``) checked on
each base bar, and a vertical barrier after ``max_hold_bars`` entry bars. A meta-label
model (P(trade wins)) vetoes an entry below ``meta_threshold``. Entry ids are
``rh-<entry bar close in s>-<L|S>``: the same candidate has the same id in every run.

Layer C, hazard meter (on base bars, risk only): a calibrated P(stop or adverse move
within the next minutes) from flow features (Kyle's lambda, trade order-flow imbalance,
VPIN, absorption, realised-volatility ratio), with ``book_features`` the book's (multi-level
OFI of the last minutes against the trade, :class:`~tradebus.features.book.Ofi`; a recent
depletion of the supporting side that did not refill,
:class:`~tradebus.features.replenishment.Replenishment`; the book is fed with
:meth:`RegimeHazardSystem.on_book`, by the strategy at each trade when it changed), and the
trade's state. While a trade is
open, ``p >= exit_threshold`` exits it early; while flat, ``p >= block_threshold`` for
the proposed trade blocks the entry. It never enters, adds or enlarges a position.

Every decision is a :class:`Decision` with a ``reason`` (and the numbers behind it).
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from loguru import logger
from pydantic import BaseModel, Field, ValidationInfo, field_validator

from tradebus.config.base import StrictModel
from tradebus.config.units import parse_duration
from tradebus.engine.messages import Trade, TradesMissed
from tradebus.errors import ConfigError
from tradebus.features.bars import BarBuilder
from tradebus.features.book import Ofi
from tradebus.features.replenishment import Replenishment
from tradebus.strategies.models import ModelSchedule
from tradebus.strategies.base import Strategy, duration_ns
from tradebus.strategies.regime import RegimeMachine, schmitt

__all__ = [
    "BOOK_FEATURES",
    "HAZARD_FEATURES",
    "META_FEATURES",
    "Decision",
    "RegimeHazard",
    "RegimeHazardParams",
    "RegimeHazardSystem",
    "load_models",
    "models_document",
]

TREND, RANGE, HAZARD = "TREND", "RANGE", "HAZARD"
#: Features of the meta-label model, in order.
META_FEATURES = ("side", "trend", "er", "vol_ratio", "pull_atr", "range_pos", "atr_pct", "flow")
#: Features of the hazard model, in order.
HAZARD_FEATURES = ("kyle_lambda", "adverse_ofi", "vpin", "absorption", "rv_ratio", "unreal_atr", "stop_atr", "age")
#: Appended to :data:`HAZARD_FEATURES` with ``book_features``.
BOOK_FEATURES = ("adverse_book_ofi", "replenish_gap")
_DRIVERS = {"kyle_lambda": "price impact (Kyle's lambda) up", "adverse_ofi": "order flow against the trade",
            "vpin": "flow toxicity (VPIN) up", "absorption": "absorption spike (volume without move)",
            "rv_ratio": "short-term volatility burst", "unreal_atr": "trade under water",
            "stop_atr": "stop close", "age": "trade aging",
            "adverse_book_ofi": "book order-flow imbalance (multi-level OFI) against the trade",
            "replenish_gap": "replenishment drop (depth not refilling after depletion)"}


class RegimeHazardParams(StrictModel):
    """Parameters of the system (bar counts are in bars of the layer's own interval)."""

    base_interval: str = "1m"
    entry_interval: str = "5m"
    regime_interval: str = "30m"
    # layer A
    regime_window: int = Field(default=8, ge=2)
    vol_window: int = Field(default=24, ge=2)
    trend_enter: float = 0.5
    trend_exit: float = Field(default=0.3, validate_default=True)  # checked against trend_enter when left out too
    hazard_enter: float = 1.8
    hazard_exit: float = Field(default=1.3, validate_default=True)
    confirm: int = Field(default=2, ge=1)
    # layer B
    ema_fast: int = Field(default=12, ge=1)
    ema_slow: int = Field(default=36, ge=2, validate_default=True)  # checked against ema_fast when left out too
    atr_window: int = Field(default=14, ge=1)
    pullback_atr: float = Field(default=0.5, ge=0.0)
    range_edge: float = Field(default=0.15, gt=0.0, lt=0.5)
    cooldown_bars: int = Field(default=6, ge=0)
    max_hold_bars: int = Field(default=12, ge=1)
    barriers: dict[Literal["TREND", "RANGE"], tuple[float, float]] = {TREND: (2.0, 1.0), RANGE: (1.0, 1.0)}
    meta_threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    # layer C
    flow_window: int = Field(default=30, ge=3)
    exit_threshold: float = Field(default=0.6, ge=0.0, le=1.0)
    block_threshold: float = Field(default=0.6, ge=0.0, le=1.0)
    #: Add the book features (multi-level OFI, replenishment after depletion) to the hazard meter;
    #: the book must then be fed with :meth:`RegimeHazardSystem.on_book`.
    book_features: bool = False
    book_levels: int = Field(default=5, ge=1, le=10)
    depletion_drop: float = Field(default=0.5, gt=0.0, lt=1.0)
    depletion_window: int = Field(default=50, ge=1)
    replenish_horizon: str = "5s"

    @field_validator("base_interval", "entry_interval", "regime_interval", "replenish_horizon")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)  # a ValueError: pydantic names the field
        return value

    @field_validator("trend_enter", "trend_exit")
    @classmethod
    def _efficiency_ratio(cls, value: float) -> float:
        if not 0.0 <= value <= 1.0:  # NaN too
            raise ValueError(f"{value} outside [0, 1], the range of the efficiency ratio it is compared with")
        return value

    @field_validator("ema_slow")
    @classmethod
    def _ema_order(cls, value: int, info: ValidationInfo) -> int:
        if "ema_fast" in info.data and value <= info.data["ema_fast"]:
            raise ValueError(f"{value} not above ema_fast {info.data['ema_fast']}: the fast EMA must have the "
                             "shorter span for a pullback's fast/slow direction")
        return value

    @field_validator("trend_exit", "hazard_exit")
    @classmethod
    def _hysteresis(cls, value: float, info: ValidationInfo) -> float:
        enter = info.field_name.replace("_exit", "_enter")  # type: ignore[union-attr]
        if enter in info.data and value > info.data[enter]:
            raise ValueError(f"{value} above {enter} {info.data[enter]}: the state would be left before it is entered")
        return value

    @field_validator("barriers")
    @classmethod
    def _barriers(cls, value: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        missing = [regime for regime in (TREND, RANGE) if regime not in value]
        if missing:
            raise ValueError(f"needs [take-profit, stop] ATRs for each entering regime, missing {missing}")
        for regime, multipliers in value.items():
            if not all(math.isfinite(m) and m > 0 for m in multipliers):
                raise ValueError(f"{regime}: take-profit and stop must be positive ATR multiples, got {list(multipliers)}")
        return value

    def intervals_ns(self) -> tuple[int, int, int]:
        """Base, entry and regime intervals in ns, checked to nest."""
        b, e, r = (parse_duration(v) for v in (self.base_interval, self.entry_interval, self.regime_interval))
        if e % b or r % e:
            raise ConfigError(f"regime_hazard: intervals must nest (base {self.base_interval} | entry "
                              f"{self.entry_interval} | regime {self.regime_interval})")
        return b, e, r


@dataclass(frozen=True)
class Decision:
    """One policy decision: ``action`` in ``regime, enter, exit, veto, block``.

    ``kind`` is the exit's barrier (``stop``, ``take_profit``, ``timed``) or ``hazard``, and the
    regime of an entry.
    """

    ts: int
    action: str
    layer: str
    reason: str
    entry_id: str = ""
    side: int = 0
    kind: str = ""
    values: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"ts": self.ts, "action": self.action, "layer": self.layer, "entry_id": self.entry_id,
                "side": self.side, "kind": self.kind, "reason": self.reason, "values": self.values}


class _Aggregator:
    """Merge closed base bars into bars of ``period`` ns, stamped at their bucket end.

    A bucket meeting a time window whose base bars are missing or partial (:meth:`refuse`)
    gives no bar.
    """

    def __init__(self, period: int, name: str) -> None:
        self.period = period
        self.name = name
        self.bucket: int | None = None
        self.bar: list[float] = []
        self.last_index = -1
        self._refused: list[tuple[int, int, str]] = []

    def refuse(self, start: int, end: int, why: str) -> None:
        """No bar for a bucket meeting ``[start, end)``: the base bars there are missing or partial, for ``why``."""
        self._refused.append((start, end, why))

    def _close(self, ts: int) -> list[tuple[int, int, list[float]]]:
        out = (ts, self.last_index, self.bar)
        self.bucket, self.bar = None, []
        begin = ts - self.period
        self._refused = [w for w in self._refused if w[1] > begin]
        why = next((w[2] for w in self._refused if w[0] < ts), None)
        if why is not None:
            logger.info("regime_hazard: the {} bar closing at {} is not built: {}", self.name,
                        np.datetime64(ts, "ns"), why)
            return []
        return [out]

    def add(self, ts: int, index: int, o: float, h: float, lo: float, c: float, v: float) -> list[tuple[int, int, list[float]]]:
        """Add the base bar closing at ``ts``; return the bars this completes ``(ts, base index, [o,h,l,c,v])``."""
        out = []
        bucket = (ts - 1) // self.period
        if self.bucket is not None and bucket != self.bucket:
            out.extend(self._close((self.bucket + 1) * self.period))
        if self.bucket is None:
            self.bucket, self.bar = bucket, [o, h, lo, c, v]
        else:
            b = self.bar
            b[1], b[2], b[3], b[4] = max(b[1], h), min(b[2], lo), c, b[4] + v
        self.last_index = index
        if ts % self.period == 0:
            out.extend(self._close(ts))
        return out


@dataclass
class _Trade:
    entry_id: str
    side: int
    ts: int
    ref: float
    atr: float
    stop: float
    target: float
    regime: str
    deadline: int


class RegimeHazardSystem:
    """The three layers as one causal machine; see the module docstring.

    Parameters
    ----------
    params
        The system's parameters.
    meta
        Meta-label models (``None``: no veto).
    hazard
        Hazard models (``None``: hazard probabilities are NaN).
    use_hazard
        Whether layer C acts (exit early, block entries); off = the baseline A+B.
    contract_size
        Base units one unit of trade size stands for: the instrument's ``contract_size``
        (OKX BTC-USDT-SWAP 0.01 BTC), so base bars count base units as the kernel's bars
        from trades do (see :class:`~tradebus.features.bars.BarBuilder`). 1 for trades in
        base units (spot, and the research runner's CSV trades).
    label
        Names the base bars in their builder's log lines (the strategy's: its instrument id).
    """

    def __init__(self, params: RegimeHazardParams, *, meta: ModelSchedule | None = None,
                 hazard: ModelSchedule | None = None, use_hazard: bool = False, contract_size: float = 1.0,
                 label: str = "") -> None:
        self.p = params
        self._label = label
        self.base_ns, self.entry_ns, self.regime_ns = params.intervals_ns()
        self.meta, self.hazard, self.use_hazard = meta, hazard, use_hazard
        self.builder_ts = 0
        self._mid_stream = False
        self.builder = self._base_builder(contract_size)
        self.entry_agg, self.regime_agg = _Aggregator(self.entry_ns, "entry"), _Aggregator(self.regime_ns, "regime")
        self.regime = RegimeMachine(HAZARD, params.confirm)
        w = params.flow_window
        self._r: deque[float] = deque(maxlen=w)
        self._sv: deque[float] = deque(maxlen=w)
        self._vol: deque[float] = deque(maxlen=w)
        self._prev_close = math.nan
        # layer C book state: OFI per base bar (current bar accumulating), top-of-book depth, replenishment
        self.hazard_features = HAZARD_FEATURES + (BOOK_FEATURES if params.book_features else ())
        self._ofi = Ofi(levels=params.book_levels, window=1)
        self._bar_ofi = 0.0
        self._ofi_bars: deque[float] = deque(maxlen=5)
        self._depth = math.nan
        horizon = duration_ns(params.replenish_horizon, "replenish_horizon")
        self._refill = {side: Replenishment(window=params.depletion_window, drop=params.depletion_drop,
                                            horizon_ns=horizon) for side in (1, -1)}
        self._refill_last: dict[int, tuple[int, float]] = {}
        for name, schedule, columns in (("meta", meta, META_FEATURES), ("hazard", hazard, self.hazard_features)):
            for _, model in (schedule.entries if schedule is not None else ()):
                if model.columns != columns:
                    raise ConfigError(f"regime_hazard: the {name} model's features {list(model.columns)} are not "
                                      f"the system's {list(columns)} (book_features?)")
        # layer A state
        self._rc: deque[float] = deque(maxlen=params.regime_window + 1)
        self._rh: deque[float] = deque(maxlen=params.regime_window)
        self._rl: deque[float] = deque(maxlen=params.regime_window)
        self._rtr: deque[float] = deque(maxlen=params.vol_window)
        self._rprev = math.nan
        self.regime_values: dict[str, float] = {"er": math.nan, "vol_ratio": math.nan, "dir": 0.0,
                                                "hh": math.nan, "ll": math.nan}
        # layer B state
        self._ema_f = self._ema_s = self._atr = math.nan
        self._eprev = math.nan
        self._entry_bars = 0
        self._cooldown_until = -1
        self.trade: _Trade | None = None
        self._last_p = math.nan
        self._n_base = 0
        #: Every decision, in order.
        self.decisions: list[Decision] = []
        #: Regime per regime bar: ``(bar ts, decided at, state, er, vol_ratio)``.
        self.regimes: list[tuple[int, int, str, float, float]] = []
        #: Primary candidates: ``(ts, entry_id, side, base index, regime, atr, close, meta features, p_win)``
        #: (``p_win``: the meta model's P(win), NaN without a model).
        self.candidates: list[dict[str, Any]] = []
        #: Base bars: ``(ts, open, high, low, close, volume)``.
        self.bars: list[tuple[int, float, float, float, float, float]] = []
        #: Open-trade minutes: ``(ts, base index, entry_id, side, stop, atr, close, p, features)``.
        self.open_minutes: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ input

    def join_mid_stream(self) -> None:
        """The trades start inside a base bar (a paper/live run): that first, partial bar is not used.

        Call before the first trade. A run fed from the start of its data (research, backtests)
        keeps that bar, built from the trades the data holds.
        """
        if self.builder_ts:
            raise ConfigError("regime_hazard: join_mid_stream() must come before the first trade")
        self._mid_stream = True
        self.builder = self._base_builder(self.builder.contract_size)

    def set_contract_size(self, contract_size: float) -> None:
        """The trades are sized in contracts of ``contract_size`` base units (the instrument's).

        Call before the first trade; base bars then count base units (see ``contract_size``).
        """
        if self.builder_ts:
            raise ConfigError("regime_hazard: set_contract_size() must come before the first trade")
        self.builder = self._base_builder(contract_size)

    def _base_builder(self, contract_size: float) -> BarBuilder:
        return BarBuilder("time", interval_ns=self.base_ns, whole_only=self._mid_stream, contract_size=contract_size,
                          label=self._label)

    def lose(self, until_ns: int) -> None:
        """Trades were lost for good between the last trade fed and ``until_ns``: no bar is built over them.

        Neither the base bars meeting that window (:meth:`~tradebus.features.bars.BarBuilder.lose`)
        nor the entry and regime bars whose buckets hold any of them.
        """
        self.builder.lose(until_ns)
        start = self.builder_ts // self.base_ns * self.base_ns
        end = (until_ns // self.base_ns + 1) * self.base_ns
        for agg in (self.entry_agg, self.regime_agg):
            agg.refuse(start, end, "trades in it were lost (a gap in the venue's trade ids not recovered)")

    def _first_trade(self, ts: int) -> None:
        """Entry and regime buckets that began before the first base bar the trades cover are partial: refused."""
        # a run joining mid-stream drops the first base bar unless the trade opens it; research keeps it
        covered = -(-ts // self.base_ns) * self.base_ns if self._mid_stream else ts // self.base_ns * self.base_ns
        for agg in (self.entry_agg, self.regime_agg):
            agg.refuse(0, covered, "it began before the first trade seen (a run or a data set starting inside it)")

    def on_trade(self, ts: int, price: float, size: float, aggressor: int) -> list[Decision]:
        """Feed one trade; return the decisions it triggers (those completing bars)."""
        if not self.builder_ts:
            self._first_trade(ts)
        self.builder_ts = ts
        done = self.builder.update(ts, price, size, aggressor)
        if done is None:
            return []
        start = len(self.decisions)
        self._on_base_bar(done[0], done[1], ts)
        return self.decisions[start:]

    def on_book(self, ts: int, bid_px: np.ndarray, bid_sz: np.ndarray, ask_px: np.ndarray,
                ask_sz: np.ndarray) -> None:
        """Feed one book state (levels best first): multi-level OFI and depletion/replenishment of each side."""
        n = self.p.book_levels
        ofi = self._ofi.update_book(bid_px[:n], bid_sz[:n], ask_px[:n], ask_sz[:n])
        if ofi == ofi:
            self._bar_ofi += ofi
        bid, ask = float(np.sum(bid_sz[:n])), float(np.sum(ask_sz[:n]))
        self._depth = bid + ask
        for side, depth in ((1, bid), (-1, ask)):
            event = self._refill[side].update(ts, depth)
            if event is not None:
                self._refill_last[side] = (event.ts_known, event.ratio)

    def _decide(self, decision: Decision) -> None:
        self.decisions.append(decision)

    # ------------------------------------------------------------------ base bars (layer C, exits)

    def _on_base_bar(self, bar_ts: int, v: np.ndarray, now: int) -> None:
        o, h, lo, c, vol, _vwap, _n, buy, sell = (float(x) for x in v)
        index = self._n_base
        self._n_base += 1
        self.bars.append((bar_ts, o, h, lo, c, vol))
        r = 0.0 if self._prev_close != self._prev_close else 1e4 * math.log(c / self._prev_close)
        self._prev_close = c
        self._r.append(r)
        self._sv.append(buy - sell)
        self._vol.append(vol)
        self._ofi_bars.append(self._bar_ofi)
        self._bar_ofi = 0.0
        if self.trade is not None:
            self._check_barriers(now, h, lo, c, bar_ts)
        if self.trade is not None:
            self._hazard_in_trade(now, index, c)
        for ts_r, _i, bar in self.regime_agg.add(bar_ts, index, o, h, lo, c, vol):
            self.on_regime_bar(now, ts_r, bar)
        for ts_e, i_e, bar in self.entry_agg.add(bar_ts, index, o, h, lo, c, vol):
            self._on_entry_bar(now, ts_e, i_e, bar)

    def flow_features(self) -> dict[str, float]:
        """Market part of the hazard features over the last ``flow_window`` base bars."""
        r, sv, vol = np.array(self._r), np.array(self._sv), np.array(self._vol)
        if r.size < self.p.flow_window or vol.sum() <= 0:
            return {}
        mv = vol.mean()
        x = sv / mv
        vx = x.var()
        kyle = float(((x - x.mean()) * (r - r.mean())).mean() / vx) if vx > 0 else 0.0
        sd = r.std()
        absorption = float(vol[-1] / mv) if abs(r[-1]) <= 0.5 * sd or sd == 0 else 0.0
        recent = vol[-5:].sum()
        ofi = float(sv[-5:].sum() / recent) if recent > 0 else 0.0
        return {"kyle_lambda": kyle, "ofi": ofi, "vpin": float(np.abs(sv).sum() / vol.sum()),
                "absorption": absorption, "rv_ratio": float(r[-5:].std() / sd) if sd > 0 else 1.0}

    def _hazard_row(self, flow: dict[str, float], side: int, unreal_atr: float, stop_atr: float,
                    age: float) -> list[float]:
        row = [flow["kyle_lambda"] * side, flow["ofi"] * -side, flow["vpin"], flow["absorption"], flow["rv_ratio"],
               unreal_atr, stop_atr, age]
        if self.p.book_features:
            depth = self._depth
            book_ofi = -side * sum(self._ofi_bars) / depth if depth > 0 else math.nan
            # the side that supports the trade (bids for a long): a recent depletion that did not refill
            recent = self._refill_last.get(side)
            window_ns = self.p.flow_window * self.base_ns
            fresh = recent is not None and self.builder_ts - recent[0] <= window_ns
            row += [book_ofi, max(0.0, 1.0 - recent[1]) if fresh and recent is not None else 0.0]
        return row

    def _hazard_p(self, ts: int, row: list[float]) -> tuple[float, dict[str, float]]:
        model = None if self.hazard is None else self.hazard.at(ts)
        if model is None:
            return math.nan, {}
        return model.predict(row), model.contributions(row)

    @staticmethod
    def _drivers(contrib: dict[str, float]) -> str:
        top = sorted(((v, k) for k, v in contrib.items() if v > 0), reverse=True)[:2]
        return ", ".join(f"{_DRIVERS[k]} ({v:+.2f})" for v, k in top) or "no single driver"

    def _hazard_in_trade(self, now: int, index: int, close: float) -> None:
        t = self.trade
        assert t is not None
        flow = self.flow_features()
        if not flow:
            return
        unreal = t.side * (close - t.ref) / t.atr
        stop_dist = t.side * (close - t.stop) / t.atr
        age = (now - t.ts) / (t.deadline - t.ts)
        row = self._hazard_row(flow, t.side, unreal, stop_dist, age)
        p, contrib = self._hazard_p(now, row)
        slope = p - self._last_p
        self._last_p = p
        self.open_minutes.append({"ts": now, "index": index, "entry_id": t.entry_id, "side": t.side,
                                  "stop": t.stop, "atr": t.atr, "close": close, "p": p,
                                  "features": row})
        if self.use_hazard and p >= self.p.exit_threshold:
            trend = "first reading" if slope != slope else f"slope {slope:+.2f}/bar"
            reason = (f"hazard p={p:.2f} >= exit {self.p.exit_threshold:.2f} ({trend}); "
                      f"drivers: {self._drivers(contrib)}")
            self._exit(now, "hazard", reason, {"p": p} if slope != slope else {"p": p, "slope": slope})

    def _check_barriers(self, now: int, h: float, lo: float, c: float, bar_ts: int) -> None:
        t = self.trade
        assert t is not None
        worst, best = (lo, h) if t.side > 0 else (h, lo)
        if t.side * (worst - t.stop) <= 0:
            self._exit(now, "stop", f"stop-loss barrier {t.stop:.8g} touched (bar {'low' if t.side > 0 else 'high'} "
                                    f"{worst:.8g})", {"barrier": t.stop})
        elif t.side * (best - t.target) >= 0:
            self._exit(now, "take_profit", f"take-profit barrier {t.target:.8g} touched", {"barrier": t.target})
        elif bar_ts >= t.deadline:
            self._exit(now, "timed", f"vertical barrier: held {self.p.max_hold_bars} entry bars", {"close": c})

    def _exit(self, now: int, kind: str, reason: str, values: dict[str, float]) -> None:
        t = self.trade
        assert t is not None
        layer = "C" if kind == "hazard" else "B"
        self._decide(Decision(now, "exit", layer, f"exit {kind}: {reason}", t.entry_id, t.side, kind, values))
        self.trade = None
        self._last_p = math.nan
        self._cooldown_until = now + self.p.cooldown_bars * self.entry_ns

    # ------------------------------------------------------------------ layer A

    def on_regime_bar(self, now: int, ts: int, bar: list[float]) -> None:
        """Layer A on one closed regime bar ``[open, high, low, close, volume]`` (also usable on bars from elsewhere)."""
        o, h, lo, c, _v = bar
        p = self.p
        prev = self._rprev if self._rprev == self._rprev else o
        self._rtr.append((max(h, prev) - min(lo, prev)) / c)
        self._rprev = c
        self._rc.append(c)
        self._rh.append(h)
        self._rl.append(lo)
        rv = self.regime_values
        if len(self._rtr) < p.vol_window or len(self._rc) <= p.regime_window:
            candidate = HAZARD
        else:
            closes = np.array(self._rc)
            path = np.abs(np.diff(closes)).sum()
            rv["er"] = float(abs(closes[-1] - closes[0]) / path) if path > 0 else 0.0
            tr = np.array(self._rtr)
            rv["vol_ratio"] = float(tr[-p.regime_window:].mean() / tr.mean()) if tr.mean() > 0 else 1.0
            rv["dir"] = float(np.sign(closes[-1] - closes[0]))
            rv["hh"], rv["ll"] = max(self._rh), min(self._rl)
            state = self.regime.state
            if schmitt(rv["vol_ratio"], active=state == HAZARD, enter=p.hazard_enter, exit=p.hazard_exit):
                candidate = HAZARD
            elif schmitt(rv["er"], active=state == TREND, enter=p.trend_enter, exit=p.trend_exit):
                candidate = TREND
            else:
                candidate = RANGE
        before = self.regime.state
        after = self.regime.update(candidate)
        self.regimes.append((ts, now, after, rv["er"], rv["vol_ratio"]))
        if after != before:
            self._decide(Decision(now, "regime", "A",
                                  f"regime {before} -> {after}: efficiency ratio {rv['er']:.2f}, volatility ratio "
                                  f"{rv['vol_ratio']:.2f} (held {p.confirm} bars)",
                                  values={"er": rv["er"], "vol_ratio": rv["vol_ratio"]}))

    # ------------------------------------------------------------------ layer B

    def _on_entry_bar(self, now: int, ts: int, index: int, bar: list[float]) -> None:
        o, h, lo, c, _v = bar
        p = self.p
        prev = self._eprev if self._eprev == self._eprev else o
        tr = max(h, prev) - min(lo, prev)
        self._eprev = c
        if self._entry_bars == 0:
            self._ema_f = self._ema_s = c
            self._atr = tr
        else:
            self._ema_f += 2.0 / (p.ema_fast + 1) * (c - self._ema_f)
            self._ema_s += 2.0 / (p.ema_slow + 1) * (c - self._ema_s)
            self._atr += (tr - self._atr) / p.atr_window
        self._entry_bars += 1
        if self.trade is not None or now < self._cooldown_until or self._entry_bars < p.ema_slow or self._atr <= 0:
            return
        regime, rv = self.regime.state, self.regime_values
        side, why = 0, ""
        pull = (c - self._ema_f) / self._atr
        span = rv["hh"] - rv["ll"]
        pos = (c - rv["ll"]) / span if span > 0 else 0.5
        if regime == TREND:
            d = int(rv["dir"])
            if d != 0 and np.sign(self._ema_f - self._ema_s) == d and -d * pull >= p.pullback_atr:
                side, why = d, f"trend pullback: {pull:+.2f} ATR from the fast EMA against a {'rising' if d > 0 else 'falling'} trend"
        elif regime == RANGE:
            if pos <= p.range_edge:
                side, why = 1, f"range low: close at {pos:.2f} of the {p.regime_window}-bar range"
            elif pos >= 1.0 - p.range_edge:
                side, why = -1, f"range high: close at {pos:.2f} of the {p.regime_window}-bar range"
        if side == 0:
            return
        entry_id = f"rh-{ts // 1_000_000_000}-{'L' if side > 0 else 'S'}"
        flow = self.flow_features()
        features = [float(side), float(regime == TREND), rv["er"], rv["vol_ratio"], pull, pos, self._atr / c,
                    side * flow.get("ofi", 0.0)]
        model = None if self.meta is None else self.meta.at(now)
        q = math.nan if model is None else model.predict(features)
        self.candidates.append({"ts": now, "bar_ts": ts, "entry_id": entry_id, "side": side, "index": index,
                                "regime": regime, "atr": self._atr, "close": c, "features": features, "p_win": q})
        if model is not None:
            if not q >= p.meta_threshold:
                self._decide(Decision(now, "veto", "B", f"meta-label veto: P(win)={q:.2f} < {p.meta_threshold:.2f} "
                                      f"({why})", entry_id, side, regime, {"p_win": q}))
                return
        pt, sl = p.barriers[regime]  # type: ignore[index]
        if self.use_hazard and flow:
            row = self._hazard_row(flow, side, 0.0, sl, 0.0)
            hp, contrib = self._hazard_p(now, row)
            if hp >= p.block_threshold:
                self._decide(Decision(now, "block", "C", f"hazard p={hp:.2f} >= block {p.block_threshold:.2f}: no new "
                                      f"risk; drivers: {self._drivers(contrib)}", entry_id, side, regime, {"p": hp}))
                return
        self.trade = _Trade(entry_id, side, now, c, self._atr, c - side * sl * self._atr, c + side * pt * self._atr,
                            regime, ts + p.max_hold_bars * self.entry_ns)
        self._last_p = math.nan
        self._decide(Decision(now, "enter", "B", f"enter {'long' if side > 0 else 'short'} in {regime}: {why}; "
                              f"barriers pt {pt} / sl {sl} ATR", entry_id, side, regime,
                              {"ref": c, "atr": self._atr, "stop": self.trade.stop, "target": self.trade.target}))


class RegimeHazardStrategyParams(RegimeHazardParams):
    """The system's parameters plus the strategy's: ``quantity`` and the trained ``models`` (JSON)."""

    quantity: float = Field(default=1.0, gt=0.0)
    models: Path | None = None
    use_hazard: bool = True


#: Version of the ``models.json`` layout written by :func:`models_document`.
MODELS_FORMAT = 1
#: Parameters that only set how a probability is acted on: they may differ from the training run's.
_POLICY_PARAMS = frozenset({"meta_threshold", "exit_threshold", "block_threshold"})


def models_document(params: RegimeHazardParams, meta: ModelSchedule, hazard: ModelSchedule) -> dict[str, Any]:
    """The ``models.json`` content: the schedules and the system parameters they were trained with."""
    return {"format": MODELS_FORMAT, "params": params.model_dump(mode="json"), "meta": meta.to_list(),
            "hazard": hazard.to_list()}


def load_models(path: str | Path, params: RegimeHazardParams | None = None) -> tuple[ModelSchedule, ModelSchedule]:
    """The meta-label and hazard schedules of a ``models.json`` written by ``tradebus research run``.

    Parameters
    ----------
    path
        The file.
    params
        The parameters the system will run with. The models' features (efficiency and
        volatility ratios, ATR, flow windows, barriers, ...) are computed with the parameters
        of the training run, which the file records: every one of them except the thresholds
        (``meta_threshold``, ``exit_threshold``, ``block_threshold``) must be equal. A file
        without recorded parameters (written by hand) is not checked.

    Raises
    ------
    ConfigError
        Unreadable file, another format, or parameters that differ from the training run's
        (naming each, with both values).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        fmt = data.get("format", MODELS_FORMAT)
        trained = data.get("params")
        schedules = ModelSchedule.from_list(data["meta"]), ModelSchedule.from_list(data["hazard"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"regime_hazard: cannot read models {path}: {exc}") from None
    if fmt != MODELS_FORMAT:
        raise ConfigError(f"regime_hazard: models {path} have format {fmt!r}; "
                          f"this version reads format {MODELS_FORMAT}")
    if params is not None and trained is not None:
        try:
            trained_params = RegimeHazardParams.model_validate(trained).model_dump(mode="json")
        except ValueError as exc:
            raise ConfigError(f"regime_hazard: models {path}: bad recorded params: {exc}") from None
        given = params.model_dump(mode="json")
        differ = [f"{k}: {given[k]!r} (trained with {trained_params[k]!r})" for k in trained_params
                  if k not in _POLICY_PARAMS and given[k] != trained_params[k]]
        if differ:
            raise ConfigError(f"regime_hazard: models {path} were trained with other parameters, so their features "
                              f"would not mean what they did in training; set {'; '.join(differ)}")
    return schedules


class RegimeHazard(Strategy):
    """Runs :class:`RegimeHazardSystem` on the primary instrument's trades; orders carry each decision's reason."""

    Params: ClassVar[type[BaseModel]] = RegimeHazardStrategyParams

    def __init__(self, instrument_ids: str | Sequence[str], *, strategy_id: str | None = None, **params: Any) -> None:
        super().__init__(instrument_ids, strategy_id=strategy_id)
        self.params = RegimeHazardStrategyParams(**params)
        meta = hazard = None
        core = RegimeHazardParams(**{k: getattr(self.params, k) for k in RegimeHazardParams.model_fields})
        if self.params.models:
            meta, hazard = load_models(self.params.models, core)
        self.system = RegimeHazardSystem(core, meta=meta, hazard=hazard, use_hazard=self.params.use_hazard,
                                         label=self.instrument_id)
        self._book_seq = -1

    def _feed_book(self, ts: int) -> None:
        """The book as of this trade, when it changed since the last one (book features sample it at trades)."""
        book = self.book(self.instrument_id)
        if book is None or book.last_seq == self._book_seq:
            return
        self._book_seq = book.last_seq
        n = self.params.book_levels
        bids, asks = np.asarray(book.bids(n), dtype=np.float64), np.asarray(book.asks(n), dtype=np.float64)
        if len(bids) and len(asks):
            self.system.on_book(ts, bids[:, 0], bids[:, 1], asks[:, 0], asks[:, 1])

    def on_start(self) -> None:
        """A run joining the market mid-stream (paper/live) drops the partial first base bar.

        Such a run also builds no base bar over trades its feed lost for good
        (:class:`~tradebus.engine.messages.TradesMissed`, published before the recovered trades).
        Base bars count base units: trades are sized in the instrument's contracts, as for the
        kernel's own bars from trades.
        """
        self.system.set_contract_size(self.instrument().contract_size)
        if self.ctx.joins_mid_stream:
            self.system.join_mid_stream()
            self.ctx.bus.subscribe(TradesMissed, self.on_trades_missed, self.instrument_id)

    def on_trades_missed(self, msg: TradesMissed) -> None:
        """Trades of the instrument were lost for good up to ``msg.revealed_ns``: no bar is built over them."""
        if msg.lost > 0:
            self.system.lose(msg.revealed_ns)

    def on_trade(self, trade: Trade) -> None:
        """Feed the trade; act on the entry and exit decisions, log every decision with its reason."""
        if trade.instrument_id != self.instrument_id:
            return
        if self.params.book_features:
            self._feed_book(trade.ts_event)
        for d in self.system.on_trade(trade.ts_event, trade.price, trade.size, int(trade.aggressor)):
            self.log.info("regime_hazard {} {} [{}] {}: {}", d.action, d.entry_id or "-", d.layer, d.ts, d.reason)
            if d.action == "enter":
                self.target_position(self.instrument_id, d.side * self.params.quantity, reason=f"{d.entry_id} {d.reason}")
            elif d.action == "exit":
                self.target_position(self.instrument_id, 0.0, reason=f"{d.entry_id} {d.reason}")
