"""Bars built from trades: time, tick, volume, dollar and imbalance bars, one loop for live and batch.

:class:`BarBuilder` keeps one state vector. :meth:`BarBuilder.update` feeds one trade
and returns the bar it completes (or ``None``); :meth:`BarBuilder.run` feeds a whole
array of trades in one compiled loop. Both run the same ``@njit`` loop (``update`` over
arrays of length one), so the bars they produce are bit-identical (``np.array_equal``),
however the trades are split between the two.

Rules (no lookahead: a bar is known only once a trade shows it is over):

* ``time``: the bar of ``[k * interval, (k + 1) * interval)`` is emitted when the
  first trade at or after its end arrives, stamped ``ts_event = (k + 1) * interval``
  (its close, as catalog bars). Intervals without a trade give no bar. With
  ``whole_only``, the bar of the first trade fed is not emitted unless that trade
  opens its interval exactly: a run that starts (or restarts) inside an interval has
  not seen the trades before it there, and that bar would be partial.
* ``tick``: every ``threshold`` trades, stamped with the last trade's time.
* ``volume`` / ``dollar``: when the bar's summed size / ``price * size`` reaches
  ``threshold``; the trade that reaches it belongs to the bar (trades are not split),
  stamped with its time. A sum short of ``threshold`` by float rounding only (at most
  ``n * 2**-51`` of it for ``n`` trades: ten trades of 0.1 sum to 0.9999999999999999)
  reaches it.
* ``tick_imbalance`` / ``volume_imbalance`` / ``dollar_imbalance`` (Lopez de Prado,
  *Advances in Financial Machine Learning*, 2.3.2.1): each trade gets a sign ``b`` (its
  aggressor side when known, else the tick rule: the sign of the price change, the
  previous sign when the price did not move, 0 before the first change) and an amount
  ``x`` (1, size, or ``price * size``). The bar's imbalance ``theta = sum(b * x)`` closes
  it when ``|theta| >= E[T] * max(|E[b x]|, floor * E[x])``, where ``E[T]`` (trades per
  bar) starts at ``threshold`` and is an EWMA over closed bars (span ``span_bars``),
  clamped to ``[threshold / 2, threshold * 2]``, and ``E[b x]``, ``E[x]`` are EWMAs over
  trades (span ``span_trades``) as of the trade before, started at the first signed
  trade; no bar closes before that start. The clamp and the ``floor`` (default 0.5) are
  ours: with balanced flow ``|E[b x]|`` is near 0, and the published rule alone
  collapses to bars of one trade (a random walk needs about ``k**2`` trades to reach an
  imbalance of ``k``, so an unclamped ``E[T]`` either shrinks to 1 or grows without
  bound).

Trades lost for good (:meth:`BarBuilder.lose`: a gap in the venue's trade ids that could not
be fetched) were printed between the last trade fed and a known time ``until_ns``. No bar
built over that window is emitted: a time bar whose interval meets it (the bar in progress,
the bar of ``until_ns`` and any between) is dropped, logged; the other modes, whose
boundaries depend on every trade, drop the bar in progress and restart with the first trade
after ``until_ns`` (trades at or before it, fetched ones included, go into no bar).

Every field is held in a local of the compiled loop and written back to the state
vector once per call: reading and writing the state array on every trade cost more than
the bar arithmetic itself (``bench/data.py`` compares with a hand-written loop).

Sizes count base units: a trade's size is multiplied by the builder's ``contract_size``
first (an OKX BTC-USDT-SWAP trade of 100 contracts of 0.01 BTC adds 1 BTC to ``volume`` and
``price * 1`` to a dollar bar's notional, as the catalog's and the venue's candles count it;
1 for spot and for venues whose trades are in base units).

Each bar: ``ts_event`` (int64 ns) and the floats ``open, high, low, close, volume, vwap,
trades, buy_volume, sell_volume`` (aggressor 1 buy, -1 sell, 0 counted in neither). :meth:`flush` emits the
unfinished bar at the end of a history, if asked.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from loguru import logger
from numba import njit

from tradebus.errors import FeatureError

__all__ = ["BAR_FIELDS", "BAR_MODES", "BarBuilder"]

BAR_FIELDS = ("ts_event", "open", "high", "low", "close", "volume", "vwap", "trades", "buy_volume", "sell_volume")
_MODES = {"time": 0, "tick": 1, "volume": 2, "dollar": 3,
          "tick_imbalance": 4, "volume_imbalance": 5, "dollar_imbalance": 6}
BAR_MODES = tuple(_MODES)
# state: 0 open, 1 high, 2 low, 3 close, 4 volume, 5 notional, 6 trades, 7 buy, 8 sell, 9 has a bar started (0/1),
# imbalance: 10 theta, 11 E[T], 12 E[b x], 13 E[b x] started (0/1), 14 last price, 15 last sign, 16 E[x];
# clock (int64, ns timestamps do not fit a float64 exactly): 0 bucket end (time bars), 1 last trade ts
_STATE = 17
_F = len(BAR_FIELDS) - 1  # the float fields; ts_event goes to its own int64 array
#: Per trade in the bar, the rounding a float sum of sizes or ``price * size`` may fall short of its decimal
#: value by, as a fraction of it: each amount is rounded once or twice (decimal to binary, the product) and
#: each addition once, a unit of 2**-53 each.
_SUM_SLACK = 2.0**-51
_MIN_ROWS = 1 << 10  # first output buffer of :meth:`BarBuilder.run` when the bar count is not known beforehand


def _compile(mode: int) -> tuple[Callable[..., tuple[int, int]], Callable[..., int]]:
    """The loop and the one-trade update of one mode; ``mode`` is a constant of the compiled code.

    A constant mode lets LLVM drop the branches of the other modes from the per-trade loop
    (with ``mode`` an argument, the time-bar loop ran at about 1.7x the hand-written loop).
    The source is the same for every mode, so live and batch still run the same code.
    """

    @njit(cache=True)
    def loop(state: np.ndarray, clock: np.ndarray, out: np.ndarray, out_ts: np.ndarray, ts: np.ndarray,
             price: np.ndarray, size: np.ndarray, aggressor: np.ndarray, threshold: float, interval: int,
             alpha_bars: float, alpha_trades: float, floor: float) -> tuple[int, int]:
        """Feed the trades; write the bars they complete from row 0; return how many and the trades fed.

        Stops before the trade whose bar would not fit in ``out`` (every trade completes at most one bar).
        """
        o, h, lo, c = state[0], state[1], state[2], state[3]
        v, q, n, buy, sell, started = state[4], state[5], state[6], state[7], state[8], state[9]
        # Only the imbalance modes load their state into locals. In the other modes those values
        # would stay live across the loop just to be stored back, taking the registers of the
        # bar's fields, which then went through memory on every trade (time bars ran at about
        # 1.9x the hand-written loop).
        if mode >= 4:
            theta, e_len, e_bx, bx_ready, last_px = state[10], state[11], state[12], state[13], state[14]
            last_sign, e_x, len_lo, len_hi = state[15], state[16], threshold / 2.0, threshold * 2.0
        else:
            theta = e_len = e_bx = bx_ready = last_px = last_sign = e_x = len_lo = len_hi = 0.0
        end, last_ts = clock[0], clock[1]
        rows, cap, fed = 0, out_ts.size, ts.size
        slack = threshold * _SUM_SLACK
        for i in range(ts.size):
            t, p, s, a = ts[i], price[i], size[i], aggressor[i]
            if mode == 0 and started == 1.0 and t >= end:
                if rows == cap:
                    fed = i
                    break
                out_ts[rows] = end
                out[rows, 0], out[rows, 1], out[rows, 2], out[rows, 3], out[rows, 4] = o, h, lo, c, v
                out[rows, 5] = q / v if v > 0.0 else c
                out[rows, 6], out[rows, 7], out[rows, 8] = n, buy, sell
                rows += 1
                started = 0.0
            if started == 0.0:
                o = h = lo = p
                v = q = n = buy = sell = theta = 0.0
                started = 1.0
                if mode == 0:
                    end = (t // interval + 1) * interval
            h = max(h, p)
            lo = min(lo, p)
            c = p
            v += s
            q += p * s
            n += 1.0
            # branchless: the side of a trade is a coin flip, a branch on it mispredicts half the time
            buy += s * (a > 0.0)
            sell += s * (a < 0.0)
            last_ts = t
            if mode == 0:
                continue
            if mode == 1:
                done = n >= threshold
            elif mode == 2:
                done = v >= threshold - n * slack
            elif mode == 3:
                done = q >= threshold - n * slack
            else:
                if a != 0.0:
                    b = 1.0 if a > 0.0 else -1.0
                elif p > last_px:
                    b = 1.0
                elif p < last_px:
                    b = -1.0
                else:
                    b = last_sign
                last_px = p
                last_sign = b
                x = 1.0 if mode == 4 else (s if mode == 5 else p * s)
                bx = b * x
                theta += bx
                if bx_ready == 1.0:
                    done = abs(theta) >= e_len * max(abs(e_bx), floor * e_x)
                    e_bx += alpha_trades * (bx - e_bx)
                    e_x += alpha_trades * (x - e_x)
                else:
                    done = False
                    if b != 0.0:
                        e_bx = bx
                        e_x = x
                        bx_ready = 1.0
                if done:
                    e_len = min(len_hi, max(len_lo, e_len + alpha_bars * (n - e_len)))
            if done:
                out_ts[rows] = t
                out[rows, 0], out[rows, 1], out[rows, 2], out[rows, 3], out[rows, 4] = o, h, lo, c, v
                out[rows, 5] = q / v if v > 0.0 else c
                out[rows, 6], out[rows, 7], out[rows, 8] = n, buy, sell
                rows += 1
                started = 0.0
                if rows == cap:
                    fed = i + 1
                    break
        state[0], state[1], state[2], state[3] = o, h, lo, c
        state[4], state[5], state[6], state[7], state[8], state[9] = v, q, n, buy, sell, started
        if mode >= 4:
            state[10], state[11], state[12], state[13], state[14] = theta, e_len, e_bx, bx_ready, last_px
            state[15], state[16] = last_sign, e_x
        clock[0], clock[1] = end, last_ts
        return rows, fed

    @njit(cache=True)
    def update(state: np.ndarray, clock: np.ndarray, out: np.ndarray, out_ts: np.ndarray, one_ts: np.ndarray,
               one: np.ndarray, ts: int, price: float, size: float, aggressor: float, threshold: float,
               interval: int, alpha_bars: float, alpha_trades: float, floor: float) -> int:
        """One trade from Python: ``loop`` over arrays of length one (``one`` holds price, size, aggressor)."""
        one_ts[0] = ts
        one[0], one[1], one[2] = price, size, aggressor
        return loop(state, clock, out, out_ts, one_ts, one[0:1], one[1:2], one[2:3], threshold, interval,
                    alpha_bars, alpha_trades, floor)[0]

    return loop, update


_KERNELS = tuple(_compile(m) for m in range(len(_MODES)))  # compiled on first call, by mode


class BarBuilder:
    """Build bars from trades, live (:meth:`update`) or in batch (:meth:`run`), bit-identically.

    Parameters
    ----------
    mode
        One of :data:`BAR_MODES`: ``"time"``, ``"tick"``, ``"volume"``, ``"dollar"``,
        ``"tick_imbalance"``, ``"volume_imbalance"``, ``"dollar_imbalance"``.
    interval_ns
        Bar length (time bars).
    threshold
        Trades per bar (tick), size per bar (volume), ``price * size`` per bar (dollar),
        or the initial expected trades per bar ``E[T]`` (imbalance bars).
    span_bars, span_trades
        EWMA spans of ``E[T]`` (over bars) and ``E[b x]``, ``E[x]`` (over trades),
        imbalance bars only; ``alpha = 2 / (span + 1)``.
    floor
        Imbalance bars: the expected imbalance per trade is at least ``floor * E[x]``.
    whole_only
        Time bars: never emit the bar the first trade fed falls in, unless that trade is at
        the very start of its interval (a daemon started or restarted mid-bar has not seen
        the interval's earlier trades). Off: that first bar is emitted from the trades
        there are, as ``data bars`` and a backtest build it.
    contract_size
        Base units one unit of trade size stands for: the instrument's ``contract_size``
        (OKX BTC-USDT-SWAP 0.01 BTC a contract), so volume, dollar and imbalance bars and
        every bar's ``volume``, ``buy_volume`` and ``sell_volume`` count base units and
        ``price * base`` (quote value), whatever unit the venue's trades are in. Linear
        contracts only (a coin-margined contract's quote value is ``contracts * contract_size``
        whatever the price; no builder path takes one).
    label
        Names the bars in the builder's log lines (a run's builder: its instrument id), so a run
        building bars of several instruments says whose bar it dropped.

    Examples
    --------
    >>> b = BarBuilder("tick", threshold=2)
    >>> b.update(1, 10.0, 1.0) is None, b.update(2, 11.0, 1.0)[1][3]  # close
    (True, 11.0)
    """

    def __init__(self, mode: str, *, interval_ns: int | None = None, threshold: float | None = None,
                 span_bars: int = 20, span_trades: int = 1000, floor: float = 0.5,
                 whole_only: bool = False, contract_size: float = 1.0, label: str = "") -> None:
        if mode not in _MODES:
            raise FeatureError(f"bar mode {mode!r} is not one of {sorted(_MODES)}")
        positive = interval_ns is not None and interval_ns > 0 and math.isfinite(interval_ns)
        if mode == "time" and not (positive and interval_ns == int(interval_ns)):
            raise FeatureError(f"time bars need interval_ns, a whole number of nanoseconds > 0, got {interval_ns!r}")
        if mode != "time" and not (threshold is not None and threshold > 0 and math.isfinite(threshold)):
            raise FeatureError(f"{mode} bars need a finite threshold > 0, got {threshold!r}")
        if not (span_bars >= 1 and span_trades >= 1 and 0.0 <= floor <= 1.0):
            raise FeatureError(f"{mode} bars need span_bars >= 1, span_trades >= 1 and 0 <= floor <= 1, got "
                               f"span_bars={span_bars!r}, span_trades={span_trades!r}, floor={floor!r}")
        if not (contract_size > 0 and math.isfinite(contract_size)):
            raise FeatureError(f"{mode} bars need a finite contract_size > 0, got {contract_size!r}")
        self.mode = mode
        self._who = f"{label}: " if label else ""
        #: Base units per unit of trade size (see the class docstring).
        self.contract_size = float(contract_size)
        self._mode = _MODES[mode]
        self._loop, self._update = _KERNELS[self._mode]
        self._interval = int(interval_ns or 1)
        self._threshold = float(threshold or 0.0)
        self._alpha_bars = 2.0 / (span_bars + 1.0)
        self._alpha_trades = 2.0 / (span_trades + 1.0)
        self._floor = float(floor)
        self._state = np.zeros(_STATE)
        self._state[11] = self._threshold
        self._state[14] = np.nan  # no last price: the tick rule signs the first trade 0
        self._clock = np.zeros(2, dtype=np.int64)
        self._one = np.empty((1, _F))
        self._one_ts = np.empty(1, dtype=np.int64)
        self._in_ts = np.empty(1, dtype=np.int64)
        self._in = np.empty(3)
        self._fresh = whole_only and mode == "time"  # whole_only and no trade fed yet
        self._drop_until = -1  # time bars closing at or before this are not emitted (-1: none)
        self._drop_why = ""
        self._skip_until = -1  # other modes: trades at or before this are fed to no bar (-1: none)

    def update(self, ts: int, price: float, size: float, aggressor: int = 0) -> tuple[int, np.ndarray] | None:
        """Feed one trade; return the bar it completes, ``(ts_event, values)``, or ``None``.

        ``values`` are the float fields of :data:`BAR_FIELDS` after ``ts_event``.
        """
        if self._fresh:
            self._first_trade(int(ts))
        if ts <= self._skip_until:
            return None
        if self._update(self._state, self._clock, self._one, self._one_ts, self._in_ts, self._in, int(ts),
                        float(price), float(size) * self.contract_size, float(aggressor), self._threshold, self._interval,
                        self._alpha_bars, self._alpha_trades, self._floor):
            ts_event = int(self._one_ts[0])
            if ts_event <= self._drop_until:
                self._log_dropped(ts_event)
                return None
            return ts_event, self._one[0].copy()
        return None

    def lose(self, until_ns: int) -> None:
        """Trades were lost for good between the last trade fed and ``until_ns``: build no bar over them.

        Time bars: no bar whose interval meets that window is emitted (the bar in progress, the
        bar of ``until_ns`` and any between; each logged). Other modes: the bar in progress is
        dropped and the next one starts with the first trade after ``until_ns`` (a trade at or
        before it may follow lost ones). See the module docstring.

        Parameters
        ----------
        until_ns
            ``ts_event`` of the trade that revealed the gap: the lost trades are no later.
        """
        until_ns = int(until_ns)
        if self._mode == 0:
            close = (until_ns // self._interval + 1) * self._interval
            if close > self._drop_until:
                self._drop_until = close
                self._drop_why = "trades in it were lost (a gap in the venue's trade ids not recovered)"
            return
        if self._state[9] == 1.0:
            logger.info("{}{} bars: the bar in progress since the last bar is dropped: trades after it were lost "
                        "(a gap in the venue's trade ids not recovered); the next bar starts after {}",
                        self._who, self.mode, np.datetime64(until_ns, "ns"))
            self._state[9] = 0.0
        self._skip_until = max(self._skip_until, until_ns)

    def _first_trade(self, ts: int) -> None:
        """``whole_only``: note the close of the first trade's bar when that trade is inside its interval."""
        self._fresh = False
        if ts % self._interval:
            close = (ts // self._interval + 1) * self._interval
            if close > self._drop_until:
                self._drop_until = close
                self._drop_why = "the first trade seen came inside it, after trades not seen (a run started mid-bar)"

    def _log_dropped(self, close: int) -> None:
        logger.info("{}time bars: the bar closing at {} is not emitted: {}", self._who, np.datetime64(close, "ns"),
                    self._drop_why)

    def run(
        self, ts: np.ndarray, price: np.ndarray, size: np.ndarray, aggressor: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Feed many trades; return the bars they complete: ``ts_event`` (int64) and values ``(n, 9)``.

        ``size`` is in the trades' unit (contracts on a contract instrument): see ``contract_size``.
        """
        ts = np.ascontiguousarray(ts, dtype=np.int64)
        price = np.ascontiguousarray(price, dtype=np.float64)
        size = np.ascontiguousarray(size, dtype=np.float64)
        if self.contract_size != 1.0:
            size = size * self.contract_size
        side = np.zeros(ts.size) if aggressor is None else np.ascontiguousarray(aggressor, dtype=np.float64)
        if not (ts.size == price.size == size.size == side.size):
            raise FeatureError("bar builder: ts, price, size and aggressor must have one length")
        if self._fresh and ts.size:
            self._first_trade(int(ts[0]))
        if ts.size and ts[0] <= self._skip_until:
            keep = ts > self._skip_until
            ts, price, size, side = ts[keep], price[keep], size[keep], side[keep]
        n, rows, fed = ts.size, 0, 0
        cap = self._rows_bound(ts)
        out, out_ts = np.empty((cap, _F)), np.empty(cap, dtype=np.int64)
        while True:
            got, k = self._loop(self._state, self._clock, out[rows:], out_ts[rows:], ts[fed:], price[fed:],
                                size[fed:], side[fed:], self._threshold, self._interval, self._alpha_bars,
                                self._alpha_trades, self._floor)
            rows, fed = rows + got, fed + k
            if fed == n:
                break
            cap = min(2 * cap, rows + n - fed)  # the buffer is full: at most one bar per trade left
            grown, grown_ts = np.empty((cap, _F)), np.empty(cap, dtype=np.int64)
            grown[:rows], grown_ts[:rows] = out[:rows], out_ts[:rows]
            out, out_ts = grown, grown_ts
        dropped = int(np.searchsorted(out_ts[:rows], self._drop_until, side="right")) if self._drop_until >= 0 else 0
        if dropped:
            for close in out_ts[:dropped].tolist():
                self._log_dropped(close)
            out, out_ts, rows, cap = out[dropped:], out_ts[dropped:], rows - dropped, cap - dropped
        if 2 * rows < cap:  # do not keep a mostly empty buffer alive behind the bars
            return out_ts[:rows].copy(), out[:rows].copy()
        return out_ts[:rows], out[:rows]

    def _rows_bound(self, ts: np.ndarray) -> int:
        """The first output buffer of :meth:`run`: the bar count when it is known, else a guess it grows from."""
        n = ts.size
        if self._mode == 0 and n and ts[-1] >= ts[0]:  # time-ordered: one bar per bucket crossed, one for the state
            guess = int(ts[-1] // self._interval - ts[0] // self._interval) + 2
        elif self._mode == 1:
            guess = int(n / self._threshold) + 2
        else:
            guess = _MIN_ROWS
        return max(1, min(n + 1, guess))

    def flush(self) -> tuple[int, np.ndarray] | None:
        """Emit the unfinished bar (time bars: stamped at its bucket end; others: at its last trade).

        With ``whole_only``, the partial first bar is dropped here too, as a time bar over lost
        trades (:meth:`lose`).
        """
        s = self._state
        if s[9] == 0.0:
            return None
        values = np.array([s[0], s[1], s[2], s[3], s[4], s[5] / s[4] if s[4] > 0.0 else s[3], s[6], s[7], s[8]])
        s[9] = 0.0
        if self._mode == 0 and self._clock[0] <= self._drop_until:
            return None  # and a bar that closes there later is as partial
        return int(self._clock[0] if self._mode == 0 else self._clock[1]), values
