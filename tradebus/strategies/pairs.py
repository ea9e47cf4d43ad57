"""PairsTrading: select a cointegrated pair, track its hedge ratio with a Kalman filter, trade the spread.

Rules (bars; a *step* is a timestamp at which every instrument of the strategy has a bar):

1. **Formation.** After ``formation`` steps, every pair ``(y, x)`` of the instruments (in
   config order, ``y`` first) is tested on the closes of the last ``formation`` steps (a bar
   of one instrument at a time another has none is left out, so the series stay aligned
   when an instrument misses bars): the Engle-Granger
   cointegration test (``statsmodels.tsa.stattools.coint``, constant trend) and the distance
   correlation of the two price series (feature kind ``dcor`` over ``min(formation, 256)``
   closes). Pairs with ``p-value <= max_pvalue`` and ``dcor >= min_dcor`` qualify; the one
   with the lowest p-value is traded. If none qualifies the test is repeated ``formation``
   steps later. ``formation`` is at least :data:`MIN_FORMATION` (30) closes: the test's ADF
   regression of the residuals (statsmodels' default of up to ``ceil(12 (n / 100) ** 0.25)`` = 9
   lags, chosen by AIC) then keeps twice as many observations as regressors; on 20 closes it had
   no more (an exact fit: statistic 0 and p-value 0.986 for any prices, so no pair ever qualified).
2. **Hedge ratio.** A Kalman filter (feature kind ``kalman_hedge``: ``y = beta * x + alpha``)
   is run over the formation closes, then updated at every step. Its ``zscore`` is the
   innovation of ``y`` over its standard deviation, predicted from the state *before* the
   step's prices (no lookahead).
3. **Entry.** ``zscore > entry_z``: short the spread (sell ``quantity`` of ``y``, buy
   ``beta * quantity`` of ``x``); ``zscore < -entry_z``: long the spread (the opposite).
   The legs are sized by the hedge ratio at entry and kept until the exit. Both are base
   units (BTC): a leg traded in contracts (an OKX swap, ``contract_size`` 0.01 BTC) is sent as
   its base quantity over the contract size, rounded down to whole lots.
4. **Exit.** ``|zscore| < exit_z``: both legs back to flat.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tradebus.config.base import StrictModel
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import Bar
from tradebus.errors import ConfigError
from tradebus.features.pairs import DistanceCorr, KalmanHedge
from tradebus.strategies.base import Strategy
from tradebus.strategies.signal import invalid_params

__all__ = ["MIN_FORMATION", "PairSelection", "PairsTrading", "PairsTradingParams", "select_pair"]

#: Fewest formation closes: ``n - 1 - L >= 2 (L + 1)`` for the ``L = 9`` lags the Engle-Granger
#: test's ADF regression may take on them (``n = 30``; ``L`` grows no faster than ``n`` above).
MIN_FORMATION = 30


class PairsTradingParams(StrictModel):
    """Parameters of :class:`PairsTrading` (steps are bars of the whole set of instruments)."""

    quantity: float = Field(gt=0)
    formation: int = Field(default=120, ge=MIN_FORMATION)
    max_pvalue: float = Field(default=0.05, gt=0, le=1)
    min_dcor: float = Field(default=0.5, ge=0)
    entry_z: float = Field(default=2.0, gt=0)
    exit_z: float = Field(default=0.5, ge=0)
    #: State noise of the Kalman filter (``delta / (1 - delta)`` per step) and observation noise
    #: variance (price units squared): tune both to the price scale of the pair.
    delta: float = Field(default=1e-8, gt=0, lt=1)
    obs_var: float = Field(default=10.0, gt=0)

    @field_validator("formation", mode="before")
    @classmethod
    def _enough_closes(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) and value < MIN_FORMATION:
            raise ValueError(
                f"{value} closes are too few for the Engle-Granger test (at least {MIN_FORMATION}: its ADF "
                "regression takes up to 9 lags, and on 20 closes fits them exactly, p-value 0.986 for any prices)"
            )
        return value

    @model_validator(mode="after")
    def _exit_inside_entry(self) -> PairsTradingParams:
        if self.exit_z >= self.entry_z:
            raise ValueError(f"exit_z ({self.exit_z}) must be smaller than entry_z ({self.entry_z})")
        return self


class PairSelection(BaseModel):
    """The outcome of the formation test of one pair."""

    model_config = ConfigDict(frozen=True)

    y: str
    x: str
    pvalue: float
    dcor: float


def select_pair(
    closes: Mapping[str, np.ndarray], max_pvalue: float, min_dcor: float
) -> tuple[PairSelection | None, list[PairSelection]]:
    """Test every pair of ``closes`` (equal-length arrays, in mapping order) and pick one.

    Returns the qualifying pair with the lowest Engle-Granger p-value (``None`` if none) and
    the test of every pair.
    """
    from statsmodels.tsa.stattools import coint

    tested = []
    for y, x in itertools.combinations(closes, 2):
        a, b = closes[y], closes[x]
        pvalue = float(coint(a, b, trend="c")[1])
        window = min(len(a), 256)
        dcor = float(DistanceCorr(window=window).run(a[-window:], b[-window:])[-1, 0])
        tested.append(PairSelection(y=y, x=x, pvalue=pvalue, dcor=dcor))
    qualifying = [t for t in tested if t.pvalue <= max_pvalue and t.dcor >= min_dcor]
    best = min(qualifying, key=lambda t: t.pvalue) if qualifying else None
    return best, tested


class PairsTrading(Strategy):
    """Cointegration-selected pair, Kalman hedge ratio, z-score entry/exit; see the module docstring.

    Parameters
    ----------
    instrument_ids
        Two or more instruments to select the pair from.
    quantity
        Size of the ``y`` leg in base units (the ``x`` leg is ``beta`` times it); a contract
        instrument's leg is sent as that over its ``contract_size``.
    strategy_id
        Defaults to ``"PairsTrading"``.
    **params
        The other fields of :class:`PairsTradingParams`.
    """

    Params: ClassVar[type[BaseModel]] = PairsTradingParams

    def __init__(self, instrument_ids: str | Sequence[str], *, strategy_id: str | None = None, **params: Any) -> None:
        super().__init__(instrument_ids, strategy_id=strategy_id)
        if len(self.instrument_ids) < 2:
            raise ConfigError(f"{self.strategy_id}: pairs trading needs at least two instruments")
        try:
            self.params: Any = PairsTradingParams(**params)
        except ValidationError as exc:
            raise invalid_params(self.strategy_id, exc) from None
        self.steps = 0
        self._last_step = -1
        self.pair: PairSelection | None = None
        #: Every formation test: ``(step ts, tests of every pair)``.
        self.selections: list[tuple[int, list[PairSelection]]] = []
        #: The closes of the last ``formation`` steps, per instrument (aligned by step).
        self._closes: dict[str, deque[float]] = {
            iid: deque(maxlen=self.params.formation) for iid in self.instrument_ids
        }
        self.kalman = KalmanHedge(delta=self.params.delta, obs_var=self.params.obs_var)
        self.state = 0  # +1 long spread, -1 short spread, 0 flat
        #: ``(ts, new state, zscore, beta)`` of every entry and exit.
        self.decisions: list[tuple[int, int, float, float]] = []

    @classmethod
    def check_params(cls, params: BaseModel, instruments: Sequence[Instrument]) -> None:
        """At least two instruments; the quantity must be a valid order size of each."""
        if len(instruments) < 2:
            raise ConfigError(f"instruments: pairs trading needs at least two instruments, got {len(instruments)}")
        size = params.quantity / instruments[0].contract_size  # type: ignore[attr-defined]
        problem = instruments[0].validate_order(size, float("nan"))
        if problem is not None:
            raise ConfigError(f"quantity: {problem} for {instruments[0].instrument_id}")

    def on_bar(self, bar: Bar) -> None:
        """Act once per step, when the last instrument's bar of the timestamp arrives."""
        ts = bar.ts_event
        if ts == self._last_step:
            return
        cache = self.ctx.cache
        for iid in self.instrument_ids:
            last = cache.bar(iid)
            if last is None or last.ts_event != ts:
                return
        self._last_step = ts
        self.steps += 1
        for iid in self.instrument_ids:
            self._closes[iid].append(cache.bar(iid).close)  # type: ignore[union-attr]
        if self.pair is None:
            if self.steps >= self.params.formation and self.steps % self.params.formation == 0:
                self._form(ts)
            return
        y = cache.bar(self.pair.y).close  # type: ignore[union-attr]
        x = cache.bar(self.pair.x).close  # type: ignore[union-attr]
        beta, _, _, z = self.kalman.update(y, x)  # type: ignore[misc]
        self._trade(ts, float(z), float(beta))

    def _form(self, ts: int) -> None:
        closes = {iid: np.array(self._closes[iid]) for iid in self.instrument_ids}
        best, tested = select_pair(closes, self.params.max_pvalue, self.params.min_dcor)
        self.selections.append((ts, tested))
        if best is None:
            self.log.info("no pair qualifies at {}: {}", ts, tested)
            return
        self.pair = best
        self.kalman.run(closes[best.y], closes[best.x])
        self.log.info("pair selected: {}", best)

    def _trade(self, ts: int, z: float, beta: float) -> None:
        p = self.params
        if not (z == z):
            return
        if self.state == 0:
            if z > p.entry_z:
                new = -1
            elif z < -p.entry_z:
                new = 1
            else:
                return
        elif abs(z) < p.exit_z:
            new = 0
        else:
            return
        pair = self.pair
        assert pair is not None
        self.state = new
        self.decisions.append((ts, new, z, beta))
        reason = f"spread z {z:.2f}, beta {beta:.4f}"
        instruments = self.ctx.instruments
        # the legs are base units; a contract instrument's position counts contracts of contract_size
        self.target_position(pair.y, new * p.quantity / instruments[pair.y].contract_size, reason=reason)
        self.target_position(pair.x, -new * beta * p.quantity / instruments[pair.x].contract_size, reason=reason)
