"""The TouchQuoter strategy in hftbacktest, and the conversion of catalog rows to its events (not a test module).

Used by ``test_book_vs_hftbacktest.py`` and ``bench/book_fills.py``. hftbacktest is a dev
dependency: import this module only where it is installed.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hftbacktest import GTX, LIMIT, BacktestAsset, HashMapMarketDepthBacktest
from hftbacktest.types import (
    BUY_EVENT,
    DEPTH_CLEAR_EVENT,
    DEPTH_EVENT,
    EXCH_EVENT,
    LOCAL_EVENT,
    SELL_EVENT,
    TRADE_EVENT,
    event_dtype,
)
from numba import njit

from tradebus.data.catalog import BOOK_SNAPSHOT


def to_events(book: pa.Table, trades: pa.Table) -> np.ndarray:
    """hftbacktest events of catalog book and trade rows, merged by ``ts_init`` (book first at ties).

    Both ``exch_ts`` and ``local_ts`` are the receive time (``ts_init``): the exchange and the
    strategy see each update at the same instant, as the tradebus replay does. A snapshot
    is preceded by a clear of both sides.
    """
    ts_b = np.asarray(book.column("ts_init"))
    flags_b = np.asarray(book.column("flags"))
    side_b = np.asarray(book.column("side"))
    ts_t = np.asarray(trades.column("ts_init"))
    agg = np.asarray(trades.column("aggressor"))
    seq = np.asarray(book.column("sequence"))
    snap = (flags_b & BOOK_SNAPSHOT) != 0
    # The first row of each snapshot message gets a clear event before it.
    starts = snap & np.concatenate(([True], (seq[1:] != seq[:-1]) | (ts_b[1:] != ts_b[:-1]) | ~snap[:-1]))
    clear_idx = np.flatnonzero(starts)
    n = len(ts_b) + 2 * len(clear_idx) + len(ts_t)
    ev = np.zeros(n, event_dtype)
    book_ev = (DEPTH_EVENT | np.where(side_b > 0, BUY_EVENT, SELL_EVENT)).astype(np.uint64)
    trade_ev = (TRADE_EVENT | np.where(agg > 0, BUY_EVENT, SELL_EVENT)).astype(np.uint64)
    clear_ts = ts_b[clear_idx]
    ts = np.concatenate([ts_b, clear_ts, clear_ts, ts_t])
    # Sort key: time, then clears before the book rows of the same time, book before trades.
    rank = np.concatenate([np.full(len(ts_b), 1), np.zeros(2 * len(clear_idx), int), np.full(len(ts_t), 2)])
    within = np.concatenate([np.arange(len(ts_b)), np.arange(2 * len(clear_idx)), np.arange(len(ts_t))])
    order = np.lexsort((within, rank, ts))
    m = len(clear_idx)
    flags = np.concatenate([
        book_ev,
        np.full(m, DEPTH_CLEAR_EVENT | BUY_EVENT, np.uint64),
        np.full(m, DEPTH_CLEAR_EVENT | SELL_EVENT, np.uint64),
        trade_ev,
    ]) | np.uint64(EXCH_EVENT | LOCAL_EVENT)
    px = np.concatenate([np.asarray(book.column("price")), np.zeros(2 * m), np.asarray(trades.column("price"))])
    qty = np.concatenate([np.asarray(book.column("size")), np.zeros(2 * m), np.asarray(trades.column("size"))])
    ev["ev"] = flags[order]
    ev["exch_ts"] = ts[order]
    ev["local_ts"] = ts[order]
    ev["px"] = px[order]
    ev["qty"] = qty[order]
    return ev


def make_backtest(events: np.ndarray, queue_model: str, entry_ns: int, ack_ns: int, tick: float, lot: float,
                  power: float = 1.0):  # type: ignore[no-untyped-def]
    """A hftbacktest backtest of one linear asset on ``events``."""
    asset = BacktestAsset().data([events]).linear_asset(1.0).constant_order_latency(entry_ns, ack_ns)
    if queue_model == "risk_averse":
        asset = asset.risk_adverse_queue_model()
    elif queue_model == "prob_power":
        asset = asset.power_prob_queue_model(power)
    else:
        asset = asset.log_prob_queue_model()
    asset = asset.partial_fill_exchange().trading_value_fee_model(0.0, 0.0).tick_size(tick).lot_size(lot)
    return HashMapMarketDepthBacktest([asset])


@njit
def _record_fills(hbt, done, times, out, n):  # type: ignore[no-untyped-def]
    """Append each execution the local orders show since the last call (``done``: quantity executed so far by
    order id); return the new number of fills."""
    vals = hbt.orders(0).values()
    while vals.has_next():
        o = vals.get()
        executed = o.qty - o.leaves_qty
        if o.exec_qty > 0 and executed > done[o.order_id] + 1e-12:
            times[n] = o.exch_timestamp
            out[n, 0] = o.side
            out[n, 1] = o.exec_price
            out[n, 2] = executed - done[o.order_id]
            done[o.order_id] = executed
            n += 1
    return n


@njit
def touch_quoter(hbt, first_ns, interval_ns, qty, max_pos, times, out, stop, each_fill=False):  # type: ignore[no-untyped-def]
    """TouchQuoter in hftbacktest; fills go to ``times`` (exchange time, int64) and ``out`` rows (side, price, qty).

    Returns the number of fills. ``stop`` (int64, 2) receives the code of the ``elapse`` that
    ended the run and hftbacktest's time then: 1 is the end of the data; any other code is a
    ``BacktestError`` of hftbacktest's Python binding (10 order id exists, 11 request in
    process, 12 order not found, 13 invalid request, 14 invalid order status, 15 end of data,
    100 data error) that cut the run short.

    ``first_ns`` is the first event's time, where hftbacktest's clock starts; the first
    decision is at the next multiple of ``interval_ns``, as TouchQuoter's timer.

    An order's local state holds its latest execution only: polled once a decision, two executions of
    an order between decisions read as one (the last one's time and price, their summed quantity).
    ``each_fill`` waits for every order response and market event between decisions instead of elapsing
    the interval at once (slower), so each execution is read as it is heard.
    """
    n = 0
    oid = 0
    done = np.zeros(1_000_000)
    code = hbt.elapse(first_ns - first_ns % interval_ns + interval_ns - first_ns)
    if code != 0:
        stop[0], stop[1] = code, hbt.current_timestamp
        return 0
    while True:
        n = _record_fills(hbt, done, times, out, n)
        hbt.clear_inactive_orders(0)
        bids = 0.0
        asks = 0.0
        vals = hbt.orders(0).values()
        while vals.has_next():
            o = vals.get()
            if o.cancellable:
                hbt.cancel(0, o.order_id, False)
            # an open quote may still fill until its cancel reaches the exchange: count it as filled
            if o.side == 1:
                bids += o.leaves_qty
            else:
                asks += o.leaves_qty
        depth = hbt.depth(0)
        # The position of the fills heard (hbt.position(0) leaves out the executions of an order partly filled
        # before its cancel: 0.08 of 0.2 at 1721347060.8 s, so its quoter sold past its cap later on).
        pos = 0.0
        for k in range(n):
            pos += out[k, 2] * out[k, 0]
        if depth.best_bid_tick > -(2**40) and depth.best_ask_tick < 2**40:
            if pos + bids + qty <= max_pos + 1e-12:
                oid += 1
                hbt.submit_buy_order(0, oid, depth.best_bid, qty, GTX, LIMIT, False)
            if pos - asks - qty >= -max_pos - 1e-12:
                oid += 1
                hbt.submit_sell_order(0, oid, depth.best_ask, qty, GTX, LIMIT, False)
        if each_fill:
            target = hbt.current_timestamp + interval_ns
            code = 2
            while (code == 2 or code == 3) and hbt.current_timestamp < target:  # 2 market event, 3 response
                code = hbt.wait_next_feed(True, target - hbt.current_timestamp)
                n = _record_fills(hbt, done, times, out, n)
            if code == 2 or code == 3:
                code = 0  # the target reached on an event
        else:
            code = hbt.elapse(interval_ns)
        if code != 0:
            stop[0], stop[1] = code, hbt.current_timestamp
            break
    return n
