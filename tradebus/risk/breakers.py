"""Circuit breakers: the conditions that move trading to REDUCING or HALTED, and their memory.

:class:`Breakers` evaluates four breakers (each off unless configured in
:class:`~tradebus.risk.config.RiskConfig`) and keeps the references they are measured from.
The risk gate combines the tripped breakers with its manual state (the most severe wins) and
stores :meth:`Breakers.snapshot` in the journal whenever it changes, so a restart resumes them.

``max_drawdown``
    Equity at or below ``(1 - max_drawdown_pct / 100) * peak``, the peak being the highest
    equity seen at a mark since the breaker was last re-armed. Re-arms **manually** only
    (:meth:`RiskGate.set_state`), which resets the peak to the equity of that moment.
``daily_loss``
    Equity at or below ``(1 - max_daily_loss_pct / 100) * start-of-day equity``; the day is the
    UTC day of the run's clock and its start equity the equity at its first mark. Re-arms
    **automatically at the next UTC day roll** (or manually, which restarts the day's
    reference at the equity of that moment).
``loss_streak``
    ``max_consecutive_losses`` round trips in a row with a negative realised PnL (before fees,
    as the portfolio books it). A round trip runs from flat (or a flip) to flat (or the next
    flip) on one instrument; a round trip that does not lose resets the count. Re-arms
    **manually** only, which resets the count.
``gross_exposure``
    ``sum |position * contract_size * last price| / equity`` above ``max_gross_exposure``
    (equity <= 0 counts as infinite exposure). The position of a cash-only (spot) instrument is
    the base asset held (:meth:`Portfolio.spot_holding
    <tradebus.engine.portfolio.Portfolio.spot_holding>`): the holding of the asset and the positions
    of every cash-only instrument trading it count as one, at their values in equity (coins held
    from the start are an exposure, and selling them reduces it). Always moves to REDUCING (reducing orders lower
    the exposure) and re-arms **automatically** at the first mark where the exposure is back
    within the limit.

``max_drawdown`` and ``daily_loss`` trip at a fall within :data:`~tradebus.risk.config.LIMIT_RTOL`
(relative) of their limit, so that an equity at the level but for float noise trips; a 100 %
limit, whose level (0) has no noise, trips at an equity at or below 0 only.

A *mark* here is an evaluation of :meth:`Breakers.on_mark`: on every price, or, when the
kernel defers them (:meth:`RiskGate.defer_marks`), once every price of a time is in and
before every order check. Without a gross-exposure limit, a mark in the UTC day of the
previous one whose equity no armed breaker trips at and that does not raise the drawdown peak
changes nothing, and returns after one comparison.

The drawdown peak is stored when it rose by :data:`PEAK_STORE_STEP` since it was last stored
(not on every mark): after a crash the restored peak is at most that fraction too low.
"""

from __future__ import annotations

import math

import msgspec
from loguru import logger

from tradebus.account import asset_names
from tradebus.engine.messages import PositionChanged, TradingState
from tradebus.engine.portfolio import Portfolio
from tradebus.risk.config import LIMIT_RTOL, RiskConfig

__all__ = ["BREAKER_ACTIONS", "BREAKER_LIMITS", "DAY_NS", "PEAK_STORE_STEP", "BreakerState", "Breakers", "Trip"]

DAY_NS = 86_400_000_000_000
#: Relative rise of the drawdown peak after which it is stored again.
PEAK_STORE_STEP = 1e-3

_NAN = math.nan
_NEVER = 2**63 - 1


class Trip(msgspec.Struct, frozen=True):
    """A tripped breaker: the state it moved trading to, and why."""

    state: TradingState
    reason: str


class BreakerState(msgspec.Struct, frozen=True):
    """What the risk gate journals: its manual state and every breaker's memory."""

    ts: int
    manual_state: TradingState = TradingState.ACTIVE
    manual_reason: str = ""
    tripped: dict[str, Trip] = {}
    drawdown_peak: float = _NAN
    day: int = -1
    day_start_equity: float = _NAN
    loss_streak: int = 0
    round_trip_start: dict[str, float] = {}


#: The :class:`~tradebus.risk.config.RiskConfig` limit that configures each breaker.
BREAKER_LIMITS = {
    "max_drawdown": "max_drawdown_pct",
    "daily_loss": "max_daily_loss_pct",
    "loss_streak": "max_consecutive_losses",
    "gross_exposure": "max_gross_exposure",
}
#: The :class:`~tradebus.risk.config.RiskConfig` action of each breaker that has one (gross exposure always reduces).
BREAKER_ACTIONS = {
    "max_drawdown": "drawdown_action",
    "daily_loss": "daily_loss_action",
    "loss_streak": "loss_streak_action",
}


def _action(name: str) -> TradingState:
    return TradingState.HALTED if name == "halt" else TradingState.REDUCING


def _trip_fall(limit_pct: float) -> float:
    """The fall ``(reference - equity) / reference`` at which a ``limit_pct`` % breaker trips.

    ``LIMIT_RTOL`` below the limit, so that an equity at ``(1 - limit_pct / 100) * reference``
    trips although its fall rounds below the limit (110 * 0.99: 0.009999999999999948 < 0.01).
    Infinite for a 100 % limit: it trips at an equity at or below 0 (:meth:`Breakers._trip_on_fall`),
    never at a positive one the slack, or the rounding of a fall near 1, would take for 0.
    The accelerated loop (:mod:`tradebus.engine.accelerated`) computes the same float.
    """
    fall = limit_pct / 100.0
    return fall * (1.0 - LIMIT_RTOL) if fall < 1.0 else math.inf


class Breakers:
    """The breakers of one risk gate (see the module docstring).

    Parameters
    ----------
    config
        The limits (``max_drawdown_pct``, ``max_daily_loss_pct``, ``max_consecutive_losses``,
        ``max_gross_exposure`` and their actions).
    portfolio
        Source of equity, positions and last prices.
    """

    __slots__ = (
        "_config",
        "_portfolio",
        "_quiet_ceiling",
        "_quiet_floor",
        "_quiet_until",
        "_sides",
        "_spot",
        "day",
        "day_start_equity",
        "loss_streak",
        "peak",
        "rearmed",
        "round_trip_start",
        "stored_peak",
        "tripped",
    )

    def __init__(self, config: RiskConfig, portfolio: Portfolio) -> None:
        self._config = config
        self._portfolio = portfolio
        self.tripped: dict[str, Trip] = {}
        self.rearmed: list[str] = []
        self.peak = _NAN
        self.stored_peak = _NAN
        self.day = -1
        self.day_start_equity = _NAN
        self.loss_streak = 0
        self.round_trip_start: dict[str, float] = {}
        self._sides: dict[str, int] = {}  # instrument -> sign of its position in a round trip
        # cash-only instrument -> its base asset (its position counts with the asset's, see gross_notional)
        self._spot = {iid: asset_names(inst)[0] for iid, inst in portfolio.instruments.items() if inst.cash_only}
        # The band of equity and the time in which a mark changes nothing (set by _set_quiet).
        self._quiet_floor = math.inf
        self._quiet_ceiling = -math.inf
        self._quiet_until = _NEVER

    # ------------------------------------------------------------------ evaluation

    def on_mark(self, now_ns: int) -> bool:
        """Evaluate the mark-driven breakers; return whether anything worth storing changed.

        The breakers it re-armed by themselves are appended to :attr:`rearmed`.
        """
        equity = self._portfolio.equity()
        if self._quiet_floor < equity <= self._quiet_ceiling and now_ns < self._quiet_until:
            return False  # see _set_quiet: nothing can trip, move or re-arm
        cfg = self._config
        changed = False
        tripped = self.tripped
        limit = cfg.max_drawdown_pct
        if limit is not None:
            if not self.peak >= equity:  # also the first mark (NaN peak)
                self.peak = equity
                if not self.stored_peak * (1.0 + PEAK_STORE_STEP) > equity:
                    self.stored_peak = equity
                    changed = True
            changed |= self._trip_on_fall(
                "max_drawdown", self.peak, equity, limit, cfg.drawdown_action, "below the peak"
            )
        limit = cfg.max_daily_loss_pct
        if limit is not None:
            day = now_ns // DAY_NS
            if day != self.day:
                self.day = day
                self.day_start_equity = equity
                if tripped.pop("daily_loss", None) is not None:
                    self.rearmed.append("daily_loss")  # re-armed at the UTC day roll
                changed = True
            start = self.day_start_equity
            changed |= self._trip_on_fall(
                "daily_loss", start, equity, limit, cfg.daily_loss_action, "of the UTC day's start equity"
            )
        limit = cfg.max_gross_exposure
        if limit is not None:
            gross = self.gross_notional()
            ratio = gross / equity if equity > 0.0 else math.inf
            if ratio > limit * (1.0 + LIMIT_RTOL):  # the gate's slack: an order it let through does not trip it
                if "gross_exposure" not in tripped:
                    tripped["gross_exposure"] = Trip(
                        TradingState.REDUCING,
                        f"gross_exposure: {ratio:.4g} > {limit} (gross notional {gross}, equity {equity})",
                    )
                    changed = True
            elif tripped.pop("gross_exposure", None) is not None:
                self.rearmed.append("gross_exposure")
                changed = True
        else:  # gross exposure moves with prices, even where equity does not
            self._set_quiet()
        return changed

    def _set_quiet(self) -> None:
        """Set the band of equity in which a mark of this UTC day changes nothing.

        Above the floor no armed breaker trips: a fall ``(reference - equity) / reference`` only
        shrinks as the equity rises (rounding is monotone too), so the floor is a level checked to
        fall short of each limit. At or below the ceiling (the drawdown peak) the peak stays.
        """
        cfg = self._config
        tripped = self.tripped
        floor = -math.inf
        for name, reference, limit in (
            ("max_drawdown", self.peak, cfg.max_drawdown_pct),
            ("daily_loss", self.day_start_equity, cfg.max_daily_loss_pct),
        ):
            if limit is not None and name not in tripped and reference > 0.0:
                trip_fall = _trip_fall(limit)
                if trip_fall == math.inf:  # a 100 % limit: no positive equity trips it
                    floor = max(floor, 0.0)
                    continue
                level = reference * (1.0 - trip_fall)
                for bump in (0.0, 1e-12, 1e-9):
                    if (reference - (level + reference * bump)) / reference < trip_fall:
                        floor = max(floor, level + reference * bump)
                        break
                else:
                    floor = math.inf
        self._quiet_floor = floor
        self._quiet_ceiling = self.peak if cfg.max_drawdown_pct is not None else math.inf
        self._quiet_until = (self.day + 1) * DAY_NS if cfg.max_daily_loss_pct is not None else _NEVER

    def quiet_band(self) -> tuple[int, float, float]:
        """``(until_ns, floor, ceiling)``: a mark before ``until_ns`` whose equity is above ``floor``
        and at most ``ceiling`` changes nothing and returns at once (:meth:`on_mark`; an empty band
        until a full evaluation without a gross-exposure limit sets one)."""
        return self._quiet_until, self._quiet_floor, self._quiet_ceiling

    def _reset_quiet(self) -> None:
        """No quick return until the next full evaluation (the references or trips changed)."""
        self._quiet_floor = math.inf
        self._quiet_ceiling = -math.inf

    def _trip_on_fall(
        self, name: str, reference: float, equity: float, limit_pct: float, action: str, what: str
    ) -> bool:
        """Trip ``name`` if equity is ``limit_pct`` % or more below ``reference`` (``what``); return whether it did."""
        if name in self.tripped or not reference > 0.0:
            return False
        fall = (reference - equity) / reference
        if equity > 0.0 and fall < _trip_fall(limit_pct):
            return False
        self.tripped[name] = Trip(
            _action(action), f"{name}: {fall * 100.0:.4g}% >= {limit_pct}% {what} {reference} (equity {equity})"
        )
        return True

    def on_position(self, change: PositionChanged) -> bool:
        """Count round trips for ``loss_streak``; return whether anything worth storing changed."""
        limit = self._config.max_consecutive_losses
        if limit is None:
            return False
        iid = change.instrument_id
        qty = change.quantity
        realised = change.realized_pnl
        side = (qty > 0.0) - (qty < 0.0)
        before = self._sides.get(iid, 0)
        if side == before:
            return False  # added to or partly reduced the position: the round trip goes on
        if before == 0:
            self._sides[iid] = side
            self.round_trip_start[iid] = realised  # opened from flat
            return True
        pnl = realised - self.round_trip_start.pop(iid, realised)
        if side == 0:
            del self._sides[iid]
        else:  # flipped: the closing part ends a round trip, the rest opens the next
            self._sides[iid] = side
            self.round_trip_start[iid] = realised
        if pnl < 0.0:
            self.loss_streak += 1
            if self.loss_streak >= limit and "loss_streak" not in self.tripped:
                self.tripped["loss_streak"] = Trip(
                    _action(self._config.loss_streak_action),
                    f"loss_streak: {self.loss_streak} losing round trips in a row >= {limit} "
                    f"(last {iid}: {pnl})",
                )
        else:
            self.loss_streak = 0
        return True

    def gross_notional(self) -> float:
        """``sum |position * contract_size * last price|`` over every instrument; the cash-only
        instruments trading one base asset and its holding count as one (the module docstring)."""
        pf = self._portfolio
        spot = self._spot
        held = pf.holding_values()
        total = 0.0
        assets: dict[str, float] = {}  # base asset -> the value of its positions and holding
        for iid, qty in pf.positions().items():
            pos = pf.position_state(iid)
            asset = spot.get(iid)
            if asset is None:
                total += abs(qty * pos.contract_size * pos.last_price)
            else:
                assets[asset] = assets.get(asset, held.pop(asset, 0.0)) + qty * pos.contract_size * pos.last_price
        for value in assets.values():
            total += abs(value)
        for value in held.values():  # held, and no cash-only instrument trading it has a position
            total += abs(value)
        return total

    # ------------------------------------------------------------------ re-arming

    def rearm(self, names: list[str]) -> None:
        """Clear the named trips and reset their references to the present (a manual re-arm)."""
        equity = self._portfolio.equity()
        self._reset_quiet()
        for name in names:
            self.tripped.pop(name, None)
            if name == "max_drawdown":
                self.peak = self.stored_peak = equity
            elif name == "daily_loss":
                self.day_start_equity = equity
            elif name == "loss_streak":
                self.loss_streak = 0

    # ------------------------------------------------------------------ persistence

    def snapshot(self, ts: int, manual_state: TradingState, manual_reason: str) -> BreakerState:
        """Everything to journal, with the gate's manual state."""
        return BreakerState(
            ts,
            manual_state,
            manual_reason,
            dict(self.tripped),
            self.peak,
            self.day,
            self.day_start_equity,
            self.loss_streak,
            dict(self.round_trip_start),
        )

    def restore(self, state: BreakerState) -> None:
        """Take over the memory of a journaled :class:`BreakerState`.

        A trip of a breaker the config no longer has (its limit removed since it was journaled) is dropped,
        with a WARNING: nothing would re-arm it by itself, and it would hold the run in its state for good.
        A trip whose breaker's action the config changed since (``drawdown_action: halt`` -> ``reduce``)
        holds in the configured action's state, with a WARNING naming both: the config says what a trip does.
        """
        cfg = self._config
        self.tripped = {}
        for name, trip in state.tripped.items():
            limit = BREAKER_LIMITS.get(name)
            if limit is not None and getattr(cfg, limit) is None:
                logger.warning(
                    "risk: breaker {} tripped before the restart is no longer configured ({}): its trip is dropped, "
                    "trading is no longer {} for it ({})", name, limit, trip.state, trip.reason,
                )  # fmt: skip
            else:
                action = BREAKER_ACTIONS.get(name)
                state_now = trip.state if action is None else _action(getattr(cfg, action))
                if state_now is not trip.state:
                    logger.warning(
                        "risk: breaker {} tripped before the restart moved trading to {}; the config's {} is now {}: "
                        "it holds trading {} until re-armed ({})", name, trip.state, action, getattr(cfg, action),
                        state_now, trip.reason,
                    )  # fmt: skip
                    trip = Trip(state_now, trip.reason)
                self.tripped[name] = trip
        self._reset_quiet()
        self.peak = self.stored_peak = state.drawdown_peak
        self.day = state.day
        self.day_start_equity = state.day_start_equity
        self.loss_streak = state.loss_streak
        self.round_trip_start = dict(state.round_trip_start)
        pf = self._portfolio
        self._sides = {}
        for iid, qty in pf.positions().items():
            self._sides[iid] = 1 if qty > 0.0 else -1
            # A position the journal's state does not know opened before it was stored.
            self.round_trip_start.setdefault(iid, pf.position_state(iid).realized_pnl)
        self.round_trip_start = {iid: v for iid, v in self.round_trip_start.items() if iid in self._sides}
