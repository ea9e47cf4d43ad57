"""Performance metrics of a run, computed from its fills and equity samples.

Definitions (amounts in the quote currency, rates as fractions, 0.1 = 10 %):

* **start**, **end**: the venue time (``ts_event``) of the earliest and latest trade
  or bar of the run (quote, in a run with neither; see
  :class:`~tradebus.engine.kernel.RunResult`). Every span below is measured on this clock, so a paper run and a
  replay of the same frames agree, and a fill's ``ts_event`` (venue time too) is
  compared with times of the same clock.
* **bars**, **trades**: the market data the run saw, bar and trade messages (``trades`` counts
  the market's prints, not the run's own trading: that is **fills**, **round_trips** and the rows
  of ``trades.csv``, which the summary shows as ``trades``; it labels this one ``market trades``).
* **final_equity**: the equity of the last equity sample; in a run that took none (it saw no
  market data, as a daemon restarted on its journal may), the portfolio's equity when it stopped
  (:attr:`~tradebus.engine.kernel.RunResult.equity_at_stop`: a position at its fill price), which
  also stands for the curve in **max_drawdown** and **turnover**.
* **total_return**: ``final_equity / initial_cash - 1``.
* **cagr**: ``(final_equity / initial_cash) ** (1 / years) - 1`` with
  ``years = (end - start) / 365 days``; -1 when equity ended at or below 0.
* Annualised figures (**cagr**, **annualised_volatility**, **sharpe**, **sortino**,
  **calmar**) need a run spanning at least :data:`MIN_ANNUALISED_DAYS` (30) days: a
  shorter run's figures would be extrapolations of noise (a 38 s run losing 0.02 %
  "compounds" to a CAGR of -100 %), so they are ``None``. The run must span them on both
  clocks: in venue time (``end - start``) and in receive time (the kernel's clock,
  :attr:`~tradebus.engine.kernel.RunResult.start_ns` to ``end_ns``). A paper run of 31 s on recordings of
  2022 and 2026 served together has venue times four years apart, which are no four years of
  trading.
* Daily returns: the equity at the last sample of each UTC day, relative to the
  previous day's (the first day relative to ``initial_cash``). Crypto trades every
  day, so annualisation uses 365 days: 365 periods a year for the daily figures and a
  365-day year for **cagr** (empyrical's convention with ``annualization=365``; the
  tests check every annualised figure against empyrical-reloaded). Equity sampled less
  often than daily (``equity_interval: 7d``, or days without data) gives one return per
  sampled day: ``P = 365 / d`` periods a year, ``d`` the mean number of days between the
  daily closes (:func:`periods_per_year`; ``P = 365`` with a close every day).
* **annualised_volatility**: sample standard deviation of daily returns * sqrt(P); 0 when
  the returns are all equal (within rounding: a few units in the last place of ``1 + r``).
* **sharpe**: mean / standard deviation of daily returns * sqrt(P) (risk-free rate 0); ``None``
  when the returns are all equal.
* **sortino**: mean daily return / downside deviation * sqrt(P), the downside
  deviation being ``sqrt(mean(min(r, 0) ** 2))``; a fall that is rounding (a return :func:`returns_flat`
  calls 0: a close 1 ulp below the previous) counts as 0, and ``None`` when no return fell beyond it.
* **max_drawdown**: largest fall of the sampled equity from its running peak
  (starting at ``initial_cash``), as a positive fraction.
* **longest_drawdown_days**: the longest time the sampled equity spent below its running peak (starting at
  ``initial_cash``, at the first sample), in days of the samples' clock: from the sample that set the peak to
  the first sample back at or above it, or to the last sample when the run ended below it (a drawdown still
  open); 0 when it never fell. A fall that is rounding (a return :func:`returns_flat` calls 0) is none.
* **calmar**: ``cagr / max_drawdown``; ``None`` when the drawdown is no more than rounding (a fall
  from the peak that :func:`returns_flat` calls no return: a fee-free run whose equity dipped one ulp).
* Round trips: a position of an instrument from flat back to flat (a flip closes
  one and opens the next). Positions move by each fill's
  :attr:`~tradebus.engine.kernel.FillRecord.position_change`: a live buy of 0.01 BTC whose fee the
  venue took out of the coins bought holds 0.00999, and selling those ends the round trip. Its PnL is realised with average-cost accounting net of
  the fees of its fills (a flipping fill's fee is split pro rata).
  A round trip wins with a net PnL above 0 and loses with one below 0; one whose net PnL is 0, or
  rounding of its entry notional (a return :func:`returns_flat` calls 0: a fee-free exit at the
  average entry price leaves 1e-13), broke even: it neither wins nor loses (pyfolio's "even" round
  trips; Nautilus' ``AvgLoser`` counts it a loser, quantstats' ``avg_loss`` does not).
  **hit_rate** = winning / closed round trips (a break-even is a closed trip that did not win, as in
  pyfolio's "percent profitable" and Nautilus' ``WinRate``); **profit_factor** = gross wins / gross
  losses; **average_win** / **average_loss** = mean net PnL of the winning / losing round trips (the
  latter negative; ``None`` without one, as with only break-evens).
* **turnover**: traded notional / mean sampled equity.
* **exposure**: fraction of the run's span (``end - start``) with a position (beyond a thousandth of a lot) in
  any instrument, positions changing at their fills' ``ts_event``: the time in market (not the size of the
  positions); ``None`` for a run spanning no time (one time of market data, or none), which has no fraction of it. Initial holdings
  (``balances: {BTC: 1}``, :attr:`~tradebus.engine.kernel.RunResult.holdings`) are a position from
  ``start`` in the instrument that values them, as in the equity's ``position_value``: holding 1 BTC
  throughout is an exposure of 1, selling it on that instrument ends it.
* **fees_paid**: sum of fill fees (a liquidation's fee included).
* **funding_paid**: sum of funding payments of perpetual positions (negative: received);
  **funding_settlements** how many there were; **liquidations** how many positions were
  liquidated. Round-trip PnL and turnover count each instrument's ``contract_size``; a
  round trip's PnL does not include funding.
* **fees_unvalued**: ``asset -> amount`` of the fees a venue charged in an asset no instrument
  of the run priced (Binance's BNB fee discount without ``BNBUSDT`` in the run), which
  **fees_paid** leaves out; only in a run that has such fees.
* **insurance_fund_cover**: the losses beyond the liquidated positions' margin that the
  venue's insurance fund absorbed (``PositionLiquidated.insurance_fund_cover``); only in a run
  with a liquidation.
* **interest_paid**: sum of the charges of borrowing interest on margin spot loans,
  **interest_charges** how many there were (:mod:`tradebus.engine.interest`); only in a run
  that sets ``annual_borrow_rates``. Round-trip PnL does not include interest.
* **max_drawdown**, **annualised_volatility**, **sharpe** and **sortino** are computed
  from the equity samples, which the kernel takes on its own clock (receive time).
* A daemon restarted on its journal: every figure covers every session (the journal holds the
  equity samples and the counts of market data, :class:`~tradebus.engine.kernel.JournaledSample`).
  The time the daemon was down has no sample: the drawdown and turnover see the samples on either
  side of it, a UTC day without a sample has no daily return, and **exposure** counts the down time
  as time with the position held then (it was held).

A metric that is undefined for the run (shorter than 30 days, fewer than two days of
returns, no losing round trip, ...) is ``None``, and ``null_reasons`` (the last key)
says why for each such metric.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tradebus.engine.clock import iso_ns
from tradebus.engine.kernel import EquitySample, FillRecord, RunResult
from tradebus.reports.formatting import format_duration

__all__ = [
    "MIN_ANNUALISED_DAYS",
    "EquityCurve",
    "RoundTrip",
    "compute_metrics",
    "daily_returns",
    "format_ns",
    "last_of_each_day",
    "longest_drawdown_ns",
    "max_drawdown",
    "periods_per_year",
    "returns_flat",
    "round_trips",
    "simple_returns",
]

_DAY_NS = 86_400_000_000_000
_YEAR_NS = 365 * _DAY_NS  # the same 365-day year as the daily annualisation
#: Shortest run span (venue time) for which annualised figures are reported.
MIN_ANNUALISED_DAYS = 30.0
# A daily return is the ratio of two closes minus 1, resolved no finer than the last place of
# ``1 + r``: returns within a few such units of each other are one return repeated (equity
# compounding 0.1 % a day gives returns 1 ulp apart, whose std of 3e-16 made a Sharpe of 1e14).
_RETURN_ULPS = 8


def returns_flat(low: float | np.ndarray, high: float | np.ndarray) -> np.bool_ | np.ndarray:
    """Whether daily returns from ``low`` to ``high`` (floats or arrays of them) are one return repeated.

    True when they differ by no more than rounding: 8 units in the last place of ``1 + r``, the
    resolution of a return computed from two closes. Such returns have no volatility (and an
    undefined Sharpe); their standard deviation computed from them would be rounding residue.
    """
    largest = np.maximum(np.abs(low), np.abs(high))
    return (high - low) <= _RETURN_ULPS * np.spacing(1.0 + largest)


def format_ns(ts_ns: int | None) -> str | None:
    """ISO-8601 UTC text of an epoch-ns timestamp (``2024-01-02T03:04:05Z``, fraction if any)."""
    return None if ts_ns is None else iso_ns(ts_ns)


@dataclass(frozen=True)
class EquityCurve:
    """The equity samples of a run as two columns: ``ts`` (int64 ns) and ``equity`` (float64)."""

    ts: np.ndarray
    equity: np.ndarray

    @classmethod
    def of(cls, samples: Sequence[EquitySample]) -> EquityCurve:
        """The columns of ``samples``."""
        n = len(samples)
        return cls(
            np.fromiter((s.ts for s in samples), np.int64, n), np.fromiter((s.equity for s in samples), np.float64, n)
        )


def simple_returns(closes: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """``closes / previous - 1``, NaN where ``previous`` is not positive (no return on an equity at or below 0).

    Parameters
    ----------
    closes, previous
        Equity at the end and at the start of each period.
    """
    closes, previous = np.asarray(closes, dtype=np.float64), np.asarray(previous, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(previous > 0.0, closes / previous - 1.0, math.nan)


def last_of_each_day(ts: np.ndarray) -> np.ndarray:
    """The indices of the last of the sorted times ``ts`` (ns) in each UTC day: the daily closes' samples."""
    day = np.asarray(ts, dtype=np.int64) // _DAY_NS
    return np.flatnonzero(np.append(day[1:] != day[:-1], len(day) > 0))


def daily_returns(equity: Sequence[EquitySample] | EquityCurve, initial_cash: float) -> list[float]:
    """Returns of the last equity sample of each UTC day, the first day against ``initial_cash``.

    A day whose previous close is not positive has a NaN return.
    """
    curve = equity if isinstance(equity, EquityCurve) else EquityCurve.of(equity)
    if not len(curve.ts):
        return []
    closes = curve.equity[last_of_each_day(curve.ts)]
    previous = np.empty_like(closes)
    previous[0] = initial_cash
    previous[1:] = closes[:-1]
    return simple_returns(closes, previous).tolist()  # type: ignore[no-any-return]


def periods_per_year(equity: Sequence[EquitySample] | EquityCurve) -> float:
    """How many of the :func:`daily_returns` of ``equity`` a 365-day year holds.

    365 when there is a sample every day; ``365 / d`` when the daily closes are ``d`` days
    apart on average (samples sparser than daily, or days without data), as empyrical's
    ``annualization`` would be set for returns of that period.
    """
    curve = equity if isinstance(equity, EquityCurve) else EquityCurve.of(equity)
    days = np.unique(curve.ts // _DAY_NS)
    if len(days) < 2:
        return 365.0
    return 365.0 / (float(days[-1] - days[0]) / (len(days) - 1))


def max_drawdown(values: Sequence[float] | np.ndarray) -> float:
    """Largest ``1 - value / running peak`` of a series (0 if it never falls; NaN values are skipped)."""
    series = np.asarray(values, dtype=np.float64)
    if not series.size:
        return 0.0
    peak = np.fmax.accumulate(series)  # NaN values neither set nor lower the peak
    falls = peak > 0.0
    if not falls.any():
        return 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        drops = 1.0 - series[falls] / peak[falls]
    worst = np.nanmax(drops) if not np.isnan(drops).all() else 0.0
    return max(float(worst), 0.0)


def longest_drawdown_ns(ts: np.ndarray, values: np.ndarray, initial: float) -> int:
    """Nanoseconds of the longest stretch of ``values`` (sampled at ``ts``) below its running peak.

    The peak starts at ``initial``, as at the first sample; a stretch runs from the sample that
    set its peak to the first sample back at or above it, or to the last sample (still below).
    A fall within rounding of the peak (:func:`returns_flat`) is no fall; NaN values are skipped.
    """
    values = np.asarray(values, dtype=np.float64)
    sampled = ~np.isnan(values)
    ts = np.asarray(ts, dtype=np.int64)[sampled]
    if not len(ts):
        return 0
    series = np.concatenate(([initial], values[sampled]))
    times = np.concatenate(([ts[0]], ts))
    peak = np.fmax.accumulate(series)
    with np.errstate(divide="ignore", invalid="ignore"):
        fall = np.where(peak > 0.0, series / peak - 1.0, -np.inf)
    below = (series < peak) & ~returns_flat(fall, np.zeros_like(fall))
    edges = np.diff(np.concatenate(([False], below, [False])).astype(np.int8))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)  # each stretch: below[start:end]
    if not starts.size:
        return 0
    recovered = np.minimum(ends, len(series) - 1)  # the first sample back at the peak, else the last one
    return int((times[recovered] - times[starts - 1]).max())


class RoundTrip:
    """One closed position episode of an instrument.

    ``direction`` is 1 for a long episode and -1 for a short one; ``entry_fill`` is the fill
    that opened it (for an episode opened by a reversal, the reversing fill), or ``None``;
    ``exit_fill`` is the fill that last reduced the position (the one that closed it once
    ``closed``), or ``None``.
    """

    __slots__ = ("closed", "direction", "entry_fill", "entry_ns", "entry_notional", "exit_fill", "exit_ns", "fees",
                 "instrument_id", "pnl")

    def __init__(self, instrument_id: str, entry_ns: int, direction: int = 1, entry_fill: FillRecord | None = None) -> None:
        self.instrument_id = instrument_id
        self.entry_ns = entry_ns
        self.entry_fill = entry_fill
        self.exit_ns = entry_ns
        self.direction = direction
        self.exit_fill: FillRecord | None = None
        self.pnl = 0.0
        self.fees = 0.0
        self.entry_notional = 0.0
        self.closed = False

    @property
    def net_pnl(self) -> float:
        """Realised PnL minus fees."""
        return self.pnl - self.fees

    @property
    def settled_pnl(self) -> float:
        """:attr:`net_pnl`, or 0 when it is no more than rounding of :attr:`entry_notional` (see the module doc)."""
        net = self.net_pnl
        if self.entry_notional > 0.0:
            r = net / self.entry_notional
            if returns_flat(min(r, 0.0), max(r, 0.0)):
                return 0.0
        return net


def round_trips(
    fills: Sequence[FillRecord],
    lot_sizes: dict[str, float] | None = None,
    contract_sizes: dict[str, float] | None = None,
) -> list[RoundTrip]:
    """Split fills into round trips per instrument (average-cost accounting; see the module doc).

    ``lot_sizes`` sets, per instrument, the residual below which a position counts as flat
    (a thousandth of a lot; 1e-12 when not given); ``contract_sizes`` the base units per unit
    of quantity (1 when not given), which PnL is multiplied by.
    """
    state: dict[str, tuple[float, float, RoundTrip | None]] = {}
    done: list[RoundTrip] = []
    lots = lot_sizes or {}
    sizes = contract_sizes or {}
    for fill in fills:
        iid = fill.instrument_id
        eps = lots.get(iid, 1e-9) * 1e-3
        pos, avg, trip = state.get(iid, (0.0, 0.0, None))
        qty = fill.position_change
        size = sizes.get(iid, 1.0)
        if trip is None or pos == 0.0:
            trip = RoundTrip(iid, fill.ts_event, 1 if qty > 0.0 else -1, fill)
            pos, avg = qty, fill.price
            trip.fees += fill.fee
            trip.entry_notional += abs(qty) * size * fill.price
        elif (pos > 0.0) == (qty > 0.0):
            avg = (pos * avg + qty * fill.price) / (pos + qty)
            pos += qty
            trip.fees += fill.fee
            trip.entry_notional += abs(qty) * size * fill.price
        else:
            closed = min(abs(qty), abs(pos))
            share = closed / abs(qty)
            trip.pnl += closed * size * (fill.price - avg) * (1.0 if pos > 0.0 else -1.0)
            trip.fees += fill.fee * share
            trip.exit_ns = fill.ts_event
            trip.exit_fill = fill
            new = pos + qty
            if abs(new) <= eps or (new > 0.0) != (pos > 0.0):
                trip.closed = True
                done.append(trip)
                if abs(new) <= eps:
                    pos, avg, trip = 0.0, 0.0, None
                else:
                    trip = RoundTrip(iid, fill.ts_event, 1 if new > 0.0 else -1, fill)
                    trip.fees += fill.fee * (1.0 - share)
                    trip.entry_notional = abs(new) * size * fill.price
                    pos, avg = new, fill.price
            else:
                pos = new
        state[iid] = (pos, avg, trip)
    return done


def _exposure(
    fills: Sequence[FillRecord], start_ns: int, end_ns: int, lot_sizes: dict[str, float], holdings: dict[str, float]
) -> float:
    positions = {iid: amount for iid, amount in holdings.items() if abs(amount) > lot_sizes.get(iid, 1e-9) * 1e-3}
    held = set(positions)  # the instruments with a position beyond a thousandth of a lot (as round trips)
    in_market_since: int | None = start_ns if held else None
    total = 0
    for fill in fills:
        iid = fill.instrument_id
        position = positions.get(iid, 0.0) + fill.position_change
        if abs(position) > lot_sizes.get(iid, 1e-9) * 1e-3:
            positions[iid] = position
            held.add(iid)
        else:
            positions[iid] = 0.0
            held.discard(iid)
        open_now = bool(held)
        if open_now and in_market_since is None:
            in_market_since = max(fill.ts_event, start_ns)
        elif not open_now and in_market_since is not None:
            total += fill.ts_event - in_market_since
            in_market_since = None
    if in_market_since is not None:
        total += max(end_ns - in_market_since, 0)
    return total / (end_ns - start_ns)


def _clean(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


def compute_metrics(
    result: RunResult,
    lot_sizes: dict[str, float] | None = None,
    *,
    min_annualised_days: float = MIN_ANNUALISED_DAYS,
    orders: int | None = None,
    denied: int | None = None,
    equity: EquityCurve | None = None,
) -> dict[str, Any]:
    """The metrics of a finished run, as a JSON-ready dict in a fixed key order (see module doc).

    Parameters
    ----------
    result
        The finished run.
    lot_sizes
        Per instrument, the lot size below a thousandth of which a position counts as flat.
    min_annualised_days
        Shortest span (venue time) for which annualised figures are given.
    orders, denied
        How many orders and denials the run had, when ``result`` no longer holds them all (a
        daemon that wrote them as they happened: :mod:`tradebus.reports.stream`).
    equity
        The run's equity samples as columns, when ``result.equity`` was not built (a sweep's
        accelerated trial); by default the columns of ``result.equity``.
    """
    initial = result.initial_cash
    curve = EquityCurve.of(result.equity) if equity is None else equity
    values = curve.equity.tolist()
    if not values and result.equity_at_stop is not None:
        values = [result.equity_at_stop]  # no sample: a restart that saw no market data still holds its journal's fills
    final = values[-1] if values else initial
    start, end = result.first_event_ns, result.last_event_ns
    reasons: dict[str, str] = {}
    span = end - start if start is not None and end is not None else 0
    # The kernel's clock: venue times of sources recorded on different dates span years in a run of seconds.
    received = result.end_ns - result.start_ns if result.start_ns is not None and result.end_ns is not None else span
    annualise = 0 < span and min_annualised_days * _DAY_NS <= min(span, received)
    need = f"annualised figures need at least {min_annualised_days:g} days"
    if start is None:
        short = "the run saw no market data"
    elif received < min_annualised_days * _DAY_NS <= span:
        short = (
            f"the run received market data for {format_duration(received / 1e9)} while its venue times span "
            f"{format_duration(span / 1e9)} (sources whose clocks disagree, or data served faster than recorded); {need}"
        )
    else:
        short = f"the run spans {format_duration(span / 1e9)}; {need}"
    returns = [r for r in daily_returns(curve, initial) if math.isfinite(r)]
    vol = sharpe = sortino = None
    if not annualise:
        reasons.update(annualised_volatility=short, sharpe=short, sortino=short)
    elif len(returns) < 2:
        reasons.update(dict.fromkeys(("annualised_volatility", "sharpe", "sortino"), "fewer than two daily returns"))
    else:
        annual = math.sqrt(periods_per_year(curve))
        mean = sum(returns) / len(returns)
        if returns_flat(min(returns), max(returns)):
            std = 0.0
        else:
            std = math.sqrt(sum((r - mean) ** 2 for r in returns) / (len(returns) - 1))
        vol = std * annual
        sharpe = mean / std * annual if std > 0.0 else None
        # A fall that is rounding (a close 1 ulp below the previous) is no fall: its downside
        # deviation of 1e-17 made a Sortino of 1e15.
        falls = [r for r in returns if r < 0.0 and not returns_flat(r, 0.0)]
        downside = math.sqrt(sum(r**2 for r in falls) / len(returns))
        sortino = mean / downside * annual if downside > 0.0 else None
        if sharpe is None:
            reasons["sharpe"] = "the daily returns do not vary"
        if sortino is None:
            reasons["sortino"] = "no daily return was negative"
    cagr = None
    if annualise:
        years = span / _YEAR_NS
        cagr = (final / initial) ** (1.0 / years) - 1.0 if final > 0.0 else -1.0
    else:
        reasons["cagr"] = short
    mdd = max_drawdown(np.concatenate(([initial], curve.equity if curve.equity.size else values)))
    underwater_days = longest_drawdown_ns(curve.ts, curve.equity, initial) / _DAY_NS
    calmar = None
    if cagr is None:
        reasons["calmar"] = short
    elif not returns_flat(-mdd, 0.0):
        calmar = cagr / mdd
    else:
        reasons["calmar"] = "no drawdown" if mdd == 0.0 else f"a drawdown of {mdd:.3g} is rounding, not a loss"
    sizes = result.contract_sizes
    trips = round_trips(result.fills, lot_sizes, sizes)
    pnls = [t.settled_pnl for t in trips]
    wins = [p for p in pnls if p > 0.0]
    losses = [p for p in pnls if p < 0.0]
    notional = sum((f.quantity * sizes.get(f.instrument_id, 1.0) * f.price for f in result.fills), 0.0)
    mean_equity = sum(values) / len(values) if values else initial
    exposure = _exposure(result.fills, start, end, lot_sizes or {}, result.holdings) if span > 0 else None
    metrics: dict[str, Any] = {
        "start": format_ns(start),
        "end": format_ns(end),
        "bars": result.bars,
        "trades": result.trades,
        "instruments": list(result.instruments),
        "orders": len(result.orders) if orders is None else orders,
        "denied": len(result.denials) if denied is None else denied,
        "fills": len(result.fills),
        "round_trips": len(trips),
        "initial_cash": initial,
        "final_equity": final,
        "total_return": final / initial - 1.0,
        "cagr": _clean(cagr),
        "annualised_volatility": _clean(vol),
        "sharpe": _clean(sharpe),
        "sortino": _clean(sortino),
        "max_drawdown": mdd,
        "longest_drawdown_days": underwater_days,
        "calmar": _clean(calmar),
        "hit_rate": len(wins) / len(trips) if trips else None,
        "profit_factor": _clean(sum(wins) / -sum(losses)) if losses else None,
        "average_win": sum(wins) / len(wins) if wins else None,
        "average_loss": sum(losses) / len(losses) if losses else None,
        "turnover": notional / mean_equity if mean_equity > 0.0 else None,
        "exposure": exposure,
        "fees_paid": sum((f.fee for f in result.fills), 0.0),
        "funding_paid": sum((f.payment for f in result.funding), 0.0),
        "funding_settlements": len(result.funding),
        "liquidations": len(result.liquidations),
    }
    if result.fees_unvalued:
        metrics["fees_unvalued"] = dict(sorted(result.fees_unvalued.items()))
    if result.liquidations:
        metrics["insurance_fund_cover"] = sum((e.insurance_fund_cover for e in result.liquidations), 0.0)
    if result.interest is not None:
        metrics["interest_paid"] = sum((c.interest for c in result.interest), 0.0)
        metrics["interest_charges"] = len(result.interest)
    if not trips:
        trip_metrics = ("hit_rate", "profit_factor", "average_win", "average_loss")
        reasons.update(dict.fromkeys(trip_metrics, "no round trip closed"))
    else:
        if not wins:
            reasons["average_win"] = "no winning round trip"
        if not losses:
            reasons["average_loss"] = "no losing round trip"
        if not losses:
            reasons["profit_factor"] = "no round trip lost money"
    if metrics["turnover"] is None:
        reasons["turnover"] = "mean equity was not positive"
    if exposure is None:
        reasons["exposure"] = short if start is None else "the run spans no time (its market data has one time)"
    if start is None:
        reasons["start"] = reasons["end"] = short
    metrics["null_reasons"] = {key: reasons.get(key, "not finite") for key, value in metrics.items() if value is None}
    return metrics
