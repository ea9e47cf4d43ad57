"""L2-book fills for the simulated venue (``venue: {fill_on: book}``).

:class:`BookVenue` is the :class:`~tradebus.execution.simulated.SimulatedVenue` fed with the
L2 book (:class:`~tradebus.engine.messages.BookSnapshot` / ``BookDelta``) and the trades of a
replay or a paper feed. It keeps the book of each instrument and matches:

* **taking orders** (market, marketable limit, triggered stop): on arrival they walk the
  opposite side level by level from the best price, one fill per level (the order's average
  price is the VWAP of the levels it took), never past the limit. What the visible book cannot
  fill is canceled (market, IOC) or rests at its limit (GTC limit), unless
  ``book.beyond_depth: last_level`` fills it at the last level's price (optimistic). FOK
  expires whole when the visible depth within its limit is short. The venue takes the
  quantity it filled off its copy of the book, until the next data update of that level.
  A stop triggers on a trade after that trade has met the resting orders: the print that
  triggers a stop-limit which then rests never fills it (the order joined the book after it).
* **resting limit orders** join the queue at their price: the quantity ahead of them is the
  level's size on arrival. A trade at that price consumes the queue ahead; a size decrease
  not explained by trades (a cancel) advances it according to the queue model:

  ``risk_averse``
      cancels never advance the order; the queue ahead only shrinks to the level's new size
      if that is smaller (hftbacktest's ``RiskAverseQueueModel``).
  ``prob_power`` / ``prob_log``
      a cancel of ``chg`` came from ahead of the order with probability
      ``1 - p``, ``p = f(back) / (f(back) + f(front))`` with ``f(x) = x ** n``
      (``queue_power``) or ``f(x) = log(1 + x)``: the queue ahead becomes
      ``front - (1 - p) chg + min(back - p chg, 0)`` (never more than the level's size), as
      hftbacktest's ``ProbQueueModel`` with ``PowerProbQueueFunc`` / ``LogProbQueueFunc``.
      One deliberate difference: ``f(x) = 0`` for ``x <= 0``. The quantity ahead goes
      negative when trades pass a partly filled order at the head of the queue; hftbacktest
      then evaluates ``x.powf(n)`` (NaN for a non-integer ``n``, after which its model resets
      the quantity ahead to the level's whole size: the order loses its place) and
      ``ln(1 + x)`` (NaN or -inf at ``x <= -1``); here the order keeps its place.

  A resting order fills (as maker, at its price) only by trades: by the part of a trade at
  its price that goes beyond the queue ahead, or in full when a trade prints through its price
  or the opposite best price moves to or through it (several such orders fill best price
  first, as the aggressor met them). The part beyond the queue is counted in
  whole lots rounded to the nearest (hftbacktest's ``is_filled``) but never exceeds the whole
  lots of the print left after earlier own orders at that price: a venue does not fill more
  than traded. This is a deliberate difference from hftbacktest 2.4.4, which fills the rounded
  quantity past the queue whatever the print (a queue estimate below zero after cancels, e.g.
  ``prob_power`` with ``n > 1``, or rounding: two prints of 0.04 at lot 0.1 filled 0.1). Several own orders at one price share a
  trade in time priority: the queue ahead of a later one includes the earlier ones (a trade of
  ``q`` fills them in order, at most ``q`` minus the queue ahead of the first in all).
  hftbacktest's L2 queue models track each order alone (one trade may fill each of them);
  with one own order per price the two agree.
* **post-only** orders never take: one that would on arrival is rejected, a modify that would
  make it take is ignored (it keeps its price and place), a stop-limit that would take at its
  trigger expires there.
* **latency** (:class:`LatencyModel`): an action reaches the venue ``entry`` ns after the
  decision and the venue's answers (accepted, filled, canceled ...) reach the strategy
  ``ack`` ns after they happened; both constant or sampled (seeded) from a log-normal fitted
  to recorded acknowledgements (:meth:`LatencyModel.fit`). Actions reach the venue, and
  answers the strategy, in the order they were sent (a sampled latency shorter than the
  previous one's waits for it).

No lookahead: an action is handled at the first book or trade event after its arrival, on the
book as it was then; nothing it does depends on later data.

A book level whose price is off the instrument's tick grid (``tick_size`` coarser than the data's:
99.95 on a tick of 0.1) stops the run with a :class:`~tradebus.errors.DataError` naming the
instrument, the price, the tick size, the update's time and sequence: rounded to a tick it would
overwrite its neighbour there and fill orders at a price the book never showed.

A book update that leaves the book crossed or locked (best bid >= best ask) stops the run with a
:class:`~tradebus.errors.DataError` naming the instrument, the update's time and sequence: levels
left stale by a gap in the book data would otherwise fill resting orders (the live book resyncs
on a crossed book; a replay has no snapshot to fetch). Gaps that do not cross cannot be seen
here: the catalog keeps one sequence per message, not the previous one.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from loguru import logger

from tradebus.engine.clock import Clock
from tradebus.engine.messages import (
    Bar,
    BookDelta,
    BookSnapshot,
    Liquidity,
    ModifyOrder,
    OrderAccepted,
    OrderModified,
    OrderTriggered,
    Quote,
    TimeEvent,
    Trade,
)
from tradebus.errors import ConfigError, DataError
from tradebus.execution.config import BookFillConfig, VenueConfig
from tradebus.execution.simulated import (
    _ACCEPTED,
    _CANCEL,
    _CANCELED,
    _EXPIRED,
    _FOK,
    _GTC,
    _LIMIT,
    _LIMITS,
    _MARKET,
    _SUBMIT,
    _SUBMITTED,
    _TRIGGERED,
    _WORKING,
    SimulatedVenue,
    _SimOrder,
    _sim_order,
)
from tradebus.execution.orders import Order

__all__ = ["BookVenue", "L2Book", "LatencyModel", "QueueModel", "make_queue_model", "simulated_venue"]

_MAKER = Liquidity.MAKER
_TAKER = Liquidity.TAKER


class L2Book:
    """One instrument's L2 book: ``tick -> size`` per side, with the best ticks kept current."""

    __slots__ = ("asks", "best_ask", "best_bid", "bids", "inv_tick", "tick")

    def __init__(self, tick_size: float) -> None:
        self.tick = tick_size
        self.inv_tick = 1.0 / tick_size
        self.bids: dict[int, float] = {}
        self.asks: dict[int, float] = {}
        self.best_bid = -(2**62)
        self.best_ask = 2**62

    def price(self, tick: int) -> float:
        """The price of a tick index (rounded to drop binary noise)."""
        return round(tick * self.tick, 10)

    def to_tick(self, price: float) -> int:
        """The tick index of a price (rounded to the nearest tick)."""
        return int(price * self.inv_tick + 0.5)  # prices are positive: round half up

    def clear(self) -> None:
        """Empty both sides."""
        self.bids.clear()
        self.asks.clear()
        self.best_bid = -(2**62)
        self.best_ask = 2**62

    def set_bid(self, tick: int, size: float) -> float:
        """Set a bid level (size 0 removes it); return its previous size."""
        bids = self.bids
        prev = bids.get(tick, 0.0)
        if size > 0.0:
            bids[tick] = size
            if tick > self.best_bid:
                self.best_bid = tick
        elif prev:
            del bids[tick]
            if tick == self.best_bid:
                self.best_bid = max(bids) if bids else -(2**62)
        return prev

    def set_ask(self, tick: int, size: float) -> float:
        """Set an ask level (size 0 removes it); return its previous size."""
        asks = self.asks
        prev = asks.get(tick, 0.0)
        if size > 0.0:
            asks[tick] = size
            if tick < self.best_ask:
                self.best_ask = tick
        elif prev:
            del asks[tick]
            if tick == self.best_ask:
                self.best_ask = min(asks) if asks else 2**62
        return prev

    def levels(self, buy_side: bool) -> list[tuple[int, float]]:
        """The levels a taker of ``buy_side`` meets, best first (asks for a buy)."""
        if buy_side:
            return sorted(self.asks.items())
        return sorted(self.bids.items(), reverse=True)


class QueueModel:
    """Risk-averse queue: only trades advance an order; the queue ahead never exceeds the level."""

    name = "risk_averse"

    def trade(self, q: _QueueState, qty: float) -> None:
        """A trade of ``qty`` at the order's price."""
        q.front -= qty

    def depth(self, q: _QueueState, prev: float, new: float) -> None:
        """The level's size went from ``prev`` to ``new`` (a data update)."""
        if new < q.front:
            q.front = new


class _ProbQueueModel(QueueModel):
    """Probabilistic queue (hftbacktest's ``ProbQueueModel``): cancels advance with probability 1 - p."""

    def __init__(self, name: str, power: float) -> None:
        self.name = name
        self.power = power

    def f(self, x: float) -> float:
        # x <= 0: nothing left there (front < 0: trades have passed the order, which is at the
        # head of the queue); f = 0 for both functions, so log1p never sees x <= -1.
        if x <= 0.0:
            return 0.0
        if self.name == "prob_log":
            return math.log1p(x)
        return x**self.power

    def trade(self, q: _QueueState, qty: float) -> None:
        q.front -= qty
        q.traded += qty

    def depth(self, q: _QueueState, prev: float, new: float) -> None:
        chg = prev - new - q.traded
        q.traded = 0.0
        if chg < 0.0:
            if new < q.front:
                q.front = new
            return
        front = q.front
        back = prev - front
        fb, ff = self.f(back), self.f(front)
        p = fb / (fb + ff) if fb + ff > 0.0 else 1.0
        est = front - (1.0 - p) * chg + min(back - p * chg, 0.0)
        q.front = est if est < new else new


def make_queue_model(config: BookFillConfig) -> QueueModel:
    """The queue model a :class:`BookFillConfig` names."""
    if config.queue_model == "risk_averse":
        return QueueModel()
    return _ProbQueueModel(config.queue_model, config.queue_power)


class _QueueState:
    """A resting order's place at its level: quantity ``front`` ahead, trades since the last depth update."""

    __slots__ = ("front", "sim", "tick", "traded")

    def __init__(self, sim: _SimOrder, tick: int, front: float) -> None:
        self.sim = sim
        self.tick = tick
        self.front = front
        self.traded = 0.0


class LatencyModel:
    """Entry (decision -> venue) and acknowledgement (venue -> strategy) latency, in ns.

    Parameters
    ----------
    entry_ns, ack_ns
        Constant latencies (used when no distribution is given).
    ack_lognormal
        ``(mu, sigma)`` of ``log(ack_ns)`` to sample the acknowledgement latency from; the
        entry latency is then sampled from the same distribution (a round trip is taken to
        be symmetric, as recorded acknowledgements measure both legs together).
    seed
        Seed of the sampler (same seed, same latencies).
    """

    def __init__(
        self, entry_ns: int = 0, ack_ns: int = 0, ack_lognormal: tuple[float, float] | None = None, seed: int = 0
    ) -> None:
        self.entry_ns = int(entry_ns)
        self.ack_ns = int(ack_ns)
        self.ack_lognormal = ack_lognormal
        self._rng = np.random.default_rng(seed)
        self._buffer: list[int] = []

    @classmethod
    def from_config(cls, config: BookFillConfig, venue_latency_ns: int) -> LatencyModel:
        """The model of a :class:`BookFillConfig` (``entry_latency_ns`` defaults to the venue's ``latency_ns``).

        Latencies sampled from ``ack_latency_samples`` are multiplied by ``latency_scale``.
        """
        entry = venue_latency_ns if config.entry_latency_ns is None else config.entry_latency_ns
        dist = None
        if config.ack_latency_samples is not None:
            mu, sigma = cls.fit(_read_samples(config.ack_latency_samples))
            if config.latency_scale == 0.0:
                return cls(0, 0, None, config.latency_seed)
            dist = (mu + math.log(config.latency_scale), sigma)  # every sample times the scale
        return cls(entry, config.ack_latency_ns, dist, config.latency_seed)

    @staticmethod
    def fit(samples_ns: Sequence[float] | np.ndarray) -> tuple[float, float]:
        """Maximum-likelihood log-normal ``(mu, sigma)`` of positive latency samples (ns).

        Raises
        ------
        ConfigError
            Fewer than two samples, or a sample that is not a positive finite number.
        """
        x = np.asarray(samples_ns, dtype=np.float64)
        if x.size < 2 or not np.all(np.isfinite(x)) or np.any(x <= 0):
            raise ConfigError(f"latency samples: need at least two positive finite values, got {x.size} values")
        logs = np.log(x)
        return float(logs.mean()), float(logs.std())

    def _sample(self) -> int:
        buf = self._buffer
        if not buf:
            mu, sigma = self.ack_lognormal  # type: ignore[misc]
            buf.extend(np.rint(self._rng.lognormal(mu, sigma, 1024)).astype(np.int64).tolist()[::-1])
        return buf.pop()

    def entry(self) -> int:
        """Latency of the next action from decision to venue."""
        return self.entry_ns if self.ack_lognormal is None else self._sample()

    def ack(self) -> int:
        """Latency of the next venue answer to the strategy."""
        return self.ack_ns if self.ack_lognormal is None else self._sample()


def _read_samples(path: Any) -> np.ndarray:
    """Latency samples in ns, one number per line (``#`` comments and a non-numeric header skipped).

    Raises
    ------
    ConfigError
        The file is missing or unreadable (naming ``venue.book.ack_latency_samples``), or a line
        is not a number.
    """
    values = []
    try:
        fh = open(path, encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"venue.book.ack_latency_samples: no such file {path}") from None
    except OSError as exc:
        raise ConfigError(f"venue.book.ack_latency_samples: cannot read {path} ({exc.strerror})") from None
    with fh:
        for lineno, line in enumerate(fh, 1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            try:
                values.append(float(text.split(",")[0]))
            except ValueError:
                if lineno == 1:
                    continue
                raise ConfigError(f"{path} line {lineno}: {text!r} is not a latency in ns") from None
    return np.asarray(values, dtype=np.float64)


class BookVenue(SimulatedVenue):
    """The simulated venue matching against the L2 book and trades (see the module docstring).

    Parameters are those of :class:`~tradebus.execution.simulated.SimulatedVenue`; the
    book settings come from ``config.book`` (:class:`~tradebus.execution.config.BookFillConfig`).
    """

    def __init__(self, clock: Clock, instruments: dict[str, Any], config: VenueConfig | None = None, **kw: Any) -> None:
        super().__init__(clock, instruments, config, **kw)
        cfg = self.config.book
        self.book_config = cfg
        self.queue_model = make_queue_model(cfg)
        self.latency = LatencyModel.from_config(cfg, self.config.latency_ns)
        self.books: dict[str, L2Book] = {iid: L2Book(inst.tick_size) for iid, inst in instruments.items()}
        # Resting orders per instrument and tick: bids and asks apart.
        self._rest_bid: dict[str, dict[int, list[_QueueState]]] = {iid: {} for iid in instruments}
        self._rest_ask: dict[str, dict[int, list[_QueueState]]] = {iid: {} for iid in instruments}
        self._queues: dict[str, _QueueState] = {}
        self._outbox: list[tuple[int, int, Any]] = []
        self._out_seq = 0
        self._out_alerts = 0
        self._last_due: dict[str, int] = {}  # per instrument: answers reach the strategy in the order sent
        self._alert_at: int | None = None
        self._last_ts = 0
        self._ack = self.latency.ack_ns > 0 or self.latency.ack_lognormal is not None
        self.bind(self._emit)

    def bind(self, emit: Any) -> None:
        """Send every event to ``emit``, after the acknowledgement latency."""
        self._downstream = emit
        self._emit = self._delay if getattr(self, "_ack", False) else emit

    # ------------------------------------------------------------------ latency

    def _queue(self, iid: str, action: int, target: Any, cmd: ModifyOrder | None) -> None:
        pending = self._pending.get(iid)
        if pending is None or self._alerts:
            super()._queue(iid, action, target, cmd)
            return
        arrival = self.clock.now_ns() + self.latency.entry()
        if pending and arrival < pending[-1][0]:
            arrival = pending[-1][0]  # actions of one instrument reach the venue in the order sent
        pending.append((arrival, action, target, cmd))

    def submit(self, order: Order) -> None:
        """Queue a new order; it arrives after the entry latency."""
        self._venue_ids += 1
        sim = _sim_order(order, self._venue_ids)
        self._orders[sim.coid] = sim
        self._queue(order.instrument_id, _SUBMIT, sim, None)

    def _delay(self, event: Any) -> None:
        due = event.ts_event + self.latency.ack()
        # A sampled latency may be shorter than the previous answer's: the answers of an
        # instrument still arrive in the order the venue sent them (as hftbacktest's order bus).
        iid = event.instrument_id
        last = self._last_due.get(iid)
        if last is not None and due < last:
            due = last
        self._last_due[iid] = due
        self._out_seq += 1
        heapq.heappush(self._outbox, (due, self._out_seq, event))
        # An alert at the earliest due time: the strategy hears each answer then, before any
        # later timer or data. One alert is armed at a time (answers due together share it).
        if self._alert_at is None or due < self._alert_at:
            self._arm(due)

    def _arm(self, due: int) -> None:
        self._alert_at = due
        self._out_alerts += 1
        self.clock.set_alert(f"venue-ack-{self._out_alerts}", due, self._on_ack)

    def _on_ack(self, event: TimeEvent) -> None:
        if event.ts_event != self._alert_at:
            return  # superseded by an earlier alert that already delivered
        self._alert_at = None
        self._deliver(event.ts_event + 1)
        if self._outbox:
            self._arm(self._outbox[0][0])

    def _deliver(self, ts: int) -> None:
        """Hand the strategy every venue answer due before ``ts``."""
        box = self._outbox
        emit = self._downstream
        while box and box[0][0] < ts:
            emit(heapq.heappop(box)[2])

    def flush(self) -> None:
        """Deliver every answer still in flight (end of a run)."""
        self._deliver(2**63 - 1)

    def close(self) -> None:
        """End of a run: deliver the answers in flight, cancel the pending alerts."""
        self.flush()
        super().close()

    # --------------------------------------------------------------- market data

    def _before(self, iid: str, ts: int) -> None:
        if self._outbox:
            self._deliver(ts)
        if self._expiries and iid in self._expiries:
            self._expire_due(iid, ts, math.nan, math.nan)
        pending = self._pending[iid]
        if pending and pending[0][0] < ts:
            self._arrive(iid, pending, ts, math.nan, math.nan)
            self._prune(iid)

    def on_bar(self, bar: Bar) -> None:
        """Bars do not move a book venue."""

    def on_quote(self, quote: Quote) -> None:
        """Record best bid/ask (a book venue matches on the book, not on quotes)."""
        iid = quote.instrument_id
        if iid in self._bid:
            self._bid[iid] = quote.bid_price
            self._ask[iid] = quote.ask_price

    def on_book(self, msg: BookSnapshot | BookDelta) -> None:
        """Handle arrivals, apply the update, move the queues at the changed levels, fill crossed orders."""
        iid = msg.instrument_id
        book = self.books.get(iid)
        if book is None:
            return
        self._before(iid, msg.ts_init)
        snapshot = type(msg) is BookSnapshot
        rest_bid, rest_ask = self._rest_bid[iid], self._rest_ask[iid]
        model = self.queue_model
        inv_tick = book.inv_tick
        if snapshot:
            old_bids, old_asks = book.bids, book.asks
            book.bids, book.asks = {}, {}
            book.best_bid, book.best_ask = -(2**62), 2**62
        for price, size in msg.bids.tolist():  # type: ignore[attr-defined]
            ticks = price * inv_tick
            tick = int(ticks + 0.5)  # book.to_tick, inlined with the grid check
            if abs(ticks - tick) > 1e-6 + ticks * 1e-15:
                self._off_grid(iid, price, msg)
            prev = book.set_bid(tick, size)
            if rest_bid and tick in rest_bid and not snapshot:
                for q in rest_bid[tick]:
                    model.depth(q, prev, size)
        for price, size in msg.asks.tolist():  # type: ignore[attr-defined]
            ticks = price * inv_tick
            tick = int(ticks + 0.5)
            if abs(ticks - tick) > 1e-6 + ticks * 1e-15:
                self._off_grid(iid, price, msg)
            prev = book.set_ask(tick, size)
            if rest_ask and tick in rest_ask and not snapshot:
                for q in rest_ask[tick]:
                    model.depth(q, prev, size)
        if snapshot:
            for rest, old, new in ((rest_bid, old_bids, book.bids), (rest_ask, old_asks, book.asks)):
                for tick, queues in rest.items():
                    for q in queues:
                        model.depth(q, old.get(tick, 0.0), new.get(tick, 0.0))
        if book.best_bid >= book.best_ask:
            self._crossed(iid, book, msg)
        if book.best_bid > -(2**62):
            self._bid[iid] = book.price(book.best_bid)
        if book.best_ask < 2**62:
            self._ask[iid] = book.price(book.best_ask)
        if rest_bid or rest_ask:
            self._fill_crossed(iid, book, msg.ts_init)
        self._last_ts = msg.ts_init

    def touch(self, instrument_id: str) -> tuple[float, float]:
        """``(best bid, best ask)`` of the instrument's book as the venue holds it (NaN for an empty side)."""
        book = self.books[instrument_id]
        bid = book.price(book.best_bid) if book.best_bid > -(2**62) else math.nan
        ask = book.price(book.best_ask) if book.best_ask < 2**62 else math.nan
        return bid, ask

    def _off_grid(self, iid: str, price: float, msg: BookSnapshot | BookDelta) -> None:
        """Refuse a book level whose price is off the instrument's tick grid (float noise passes).

        Raises
        ------
        DataError
            Naming the instrument, the price, the tick size, the update's time and sequence.
        """
        inst = self.instruments[iid]
        if inst.price_grid_reason(price) is None:
            return
        when = f"{np.datetime64(msg.ts_init, 'ns')}Z"
        raise DataError(
            f"{iid} book level at price {price} in the {type(msg).__name__} at ts_init {msg.ts_init} ({when}) "
            f"sequence {msg.last_seq} is not a multiple of the instrument's tick_size {inst.tick_size}: the venue "
            "would merge it into a neighbouring tick and fill at a price the book never showed (set the "
            "instrument's tick_size to the one of the book data)"
        )

    @staticmethod
    def _crossed(iid: str, book: L2Book, msg: BookSnapshot | BookDelta) -> None:
        """Refuse a book update that leaves the book crossed or locked (best bid >= best ask).

        Raises
        ------
        DataError
            Always: naming the instrument, the update's time and sequence and the two prices.
        """
        when = f"{np.datetime64(msg.ts_init, 'ns')}Z"
        raise DataError(
            f"{iid} book crossed after the {type(msg).__name__} at ts_init {msg.ts_init} ({when}) sequence "
            f"{msg.last_seq}: best bid {book.price(book.best_bid)} >= best ask {book.price(book.best_ask)}; "
            "the book data has a gap or stale levels there, and fill_on: book would fill resting orders "
            "against them (repair or cut the book data at that time)"
        )

    def on_trade(self, trade: Trade) -> None:
        """Handle arrivals, advance and fill the resting orders the trade reaches, then trigger stops."""
        iid = trade.instrument_id
        book = self.books.get(iid)
        if book is None:
            return
        self._before(iid, trade.ts_init)
        self._last[iid] = trade.price
        tick = book.to_tick(trade.price)
        size = trade.size
        ts = trade.ts_init  # the venue's clock is the replay's: events are stamped with receive times
        # A sell-initiated trade reaches the bids, a buy-initiated one the asks (unknown: both).
        if trade.aggressor <= 0 and self._rest_bid[iid]:
            self._trade_side(iid, self._rest_bid[iid], tick, size, ts, buy=True)
        if trade.aggressor >= 0 and self._rest_ask[iid]:
            self._trade_side(iid, self._rest_ask[iid], tick, size, ts, buy=False)
        # Stops trigger on the print after it has met the resting orders: a stop-limit that rests
        # at its trigger joins the book after the print, which cannot fill it.
        working = self._working[iid]
        if working:
            for sim in [s for s in working if s.type not in (_MARKET, _LIMIT) and not s.triggered]:
                if sim.status in _WORKING and (trade.price >= sim.trigger if sim.buy else trade.price <= sim.trigger):
                    self._trigger(iid, sim, ts)
        self._prune(iid)

    def _trade_side(
        self, iid: str, rest: dict[int, list[_QueueState]], tick: int, size: float, ts: int, *, buy: bool
    ) -> None:
        model = self.queue_model
        inst = self.instruments[iid]
        # Best price first (highest bid, lowest ask), as the aggressor met them; not the order placed.
        for level in sorted([t for t in rest if (t > tick if buy else t < tick)], reverse=buy):
            for q in list(rest[level]):
                self._rest_fill(iid, q, self._leaves(iid, q.sim), ts)  # the trade printed through the order
        queues = rest.get(tick)
        if not queues:
            return
        # Own orders at the level in time priority: what the trade filled of the earlier ones never
        # reached a later one's queue, and a later one is never nearer the front than an earlier one.
        own_filled = 0.0
        floor = -math.inf
        for q in list(queues):
            model.trade(q, size)
            q.front += own_filled
            if q.front < floor:
                q.front = floor
            if q.front < 0.0:
                # Whole lots past the queue, rounded to the nearest lot as hftbacktest's is_filled
                # does, but never more than the whole lots left of the print (hftbacktest 2.4.4
                # has no such cap: a queue estimate below zero could fill more than traded).
                qty = min(inst.round_quantity_nearest(-q.front), inst.round_quantity(size - own_filled))
                if qty > 0.0:
                    q.front = 0.0
                    own_filled += self._rest_fill(iid, q, min(qty, self._leaves(iid, q.sim)), ts)
            if q.sim.status in _WORKING:
                floor = q.front

    def _fill_crossed(self, iid: str, book: L2Book, ts: int) -> None:
        """Fill the resting orders the opposite best price reached (the book moved through them)."""
        rest_bid, rest_ask = self._rest_bid[iid], self._rest_ask[iid]
        if rest_bid and book.best_ask < 2**62:
            for tick in sorted([t for t in rest_bid if t >= book.best_ask], reverse=True):
                for q in list(rest_bid[tick]):
                    self._rest_fill(iid, q, self._leaves(iid, q.sim), ts)
        if rest_ask and book.best_bid > -(2**62):
            for tick in sorted([t for t in rest_ask if t <= book.best_bid]):
                for q in list(rest_ask[tick]):
                    self._rest_fill(iid, q, self._leaves(iid, q.sim), ts)
        self._prune(iid)

    def _rest_fill(self, iid: str, q: _QueueState, qty: float, ts: int) -> float:
        """Fill up to ``qty`` of a resting order at its price; return the quantity filled."""
        sim = q.sim
        filled = 0.0
        if sim.status in _WORKING and qty > 0.0:
            filled = self._fill(iid, sim, qty, sim.limit, _MAKER, ts)
        if sim.status not in _WORKING:
            self._unrest(iid, q)
        return filled

    def _unrest(self, iid: str, q: _QueueState) -> None:
        rest = (self._rest_bid if q.sim.buy else self._rest_ask)[iid]
        queues = rest.get(q.tick)
        if queues is not None:
            if q in queues:
                queues.remove(q)
            if not queues:
                del rest[q.tick]
        self._queues.pop(q.sim.coid, None)

    # ------------------------------------------------------------------ arrivals

    def _arrive(self, iid: str, pending: Any, ts: int, ref_buy: float, ref_sell: float) -> None:
        book = self.books[iid]
        while pending and pending[0][0] < ts:
            arrival, action, target, cmd = pending.popleft()
            if action == _SUBMIT:
                if target.status is not _SUBMITTED:
                    continue  # expired (good-till-date) before it arrived
                # The best price now: an order that arrived just before may have taken the best level.
                if target.buy:
                    ref = book.price(book.best_ask) if book.best_ask < 2**62 else math.nan
                else:
                    ref = book.price(book.best_bid) if book.best_bid > -(2**62) else math.nan
                self._accept(iid, target, arrival, ref)
            elif action == _CANCEL:
                sim = self._orders.get(target.client_order_id)
                if sim is None or sim.status not in _WORKING:
                    logger.info("venue: cancel of {} ignored: not working", target.client_order_id)
                    continue
                q = self._queues.get(sim.coid)
                if q is not None:
                    self._unrest(iid, q)
                self._close(sim, _CANCELED, "canceled", arrival)
            else:
                self._modify_book(iid, target.client_order_id, cmd, arrival)

    def _expire(self, iid: str, sim: _SimOrder, ts: int) -> None:
        q = self._queues.get(sim.coid)
        if q is not None:
            self._unrest(iid, q)
        super()._expire(iid, sim, ts)

    def _accept(self, iid: str, sim: _SimOrder, arrival: int, ref: float) -> None:
        reason = self._arrival_check(iid, sim, ref)
        if reason:
            self._reject(sim, reason, arrival)
            return
        sim.status = _ACCEPTED
        sim.ts_event = arrival
        self._emit(OrderAccepted(sim.strategy_id, iid, sim.coid, sim.venue_order_id, arrival, self.clock.now_ns()))
        self._working[iid].append(sim)
        if sim.type == _MARKET or sim.type == _LIMIT:
            self._take_or_rest(iid, sim, arrival)

    def _take_or_rest(self, iid: str, sim: _SimOrder, ts: int) -> None:
        """Walk the book with a taking order; rest what is left of a GTC limit."""
        book = self.books[iid]
        buy = sim.buy
        limit = sim.limit if sim.type == _LIMIT or (sim.triggered and sim.limit == sim.limit) else math.nan
        limit_tick = book.to_tick(limit) if limit == limit else None
        side = book.asks if buy else book.bids
        best = book.best_ask if buy else book.best_bid
        if not side or (limit_tick is not None and (best > limit_tick if buy else best < limit_tick)):
            levels: list[tuple[int, float]] = []  # nothing to take: skip the sort
        elif limit_tick is None:
            levels = book.levels(buy)
        else:
            reach = [t for t in side if (t <= limit_tick if buy else t >= limit_tick)]
            reach.sort(reverse=not buy)
            levels = [(t, side[t]) for t in reach]
        if not levels and limit_tick is not None and sim.tif != _GTC:
            when = "when triggered" if sim.triggered else "on arrival"
            self._close(sim, _EXPIRED, f"{sim.tif}: not marketable {when}", ts)
            return
        if levels and sim.order.post_only:  # a triggered post-only stop-limit that would take
            px = book.price(levels[0][0])
            self._close(sim, _EXPIRED, f"post_only: limit {sim.limit} would take liquidity at {px} when triggered", ts)
            return
        if sim.tif == _FOK and sum(s for _, s in levels) < sim.leaves * (1.0 - 1e-9):
            self._close(sim, _EXPIRED, f"FOK: visible depth {sum(s for _, s in levels)} < {sim.leaves}", ts)
            return
        last_px = math.nan
        for tick, size in levels:
            if sim.status not in _WORKING:
                break
            take = min(size, self._leaves(iid, sim))
            last_px = book.price(tick)
            filled = self._fill(iid, sim, take, last_px, _TAKER, ts)
            if filled <= 0.0:
                break
            (book.set_ask if buy else book.set_bid)(tick, side[tick] - filled if side[tick] - filled > 1e-12 else 0.0)
        if sim.status not in _WORKING:
            return
        if sim.type in _LIMITS and sim.tif == _GTC:
            self._rest(iid, sim)
        elif self.book_config.beyond_depth == "last_level" and last_px == last_px:
            self._fill(iid, sim, self._leaves(iid, sim), last_px, _TAKER, ts)
        else:
            self._close(sim, _CANCELED if sim.type == _MARKET else _EXPIRED,
                        f"visible depth exhausted with {self._leaves(iid, sim)} left", ts)

    def _leaves(self, iid: str, sim: _SimOrder) -> float:
        """What is left of ``sim`` to fill, on the lot grid where it is there but for the float noise of its fills'
        sum (5 - 4.534 is 0.4660000000000002: the last level's fill would carry it into fills.csv)."""
        leaves = sim.leaves
        inst = self.instruments[iid]
        near = inst.round_quantity_nearest(leaves)
        return near if abs(near - leaves) <= 1e-9 * inst.lot_size else leaves

    def _rest(self, iid: str, sim: _SimOrder) -> None:
        book = self.books[iid]
        tick = book.to_tick(sim.limit)
        front = (book.bids if sim.buy else book.asks).get(tick, 0.0)
        q = _QueueState(sim, tick, front)
        rest = (self._rest_bid if sim.buy else self._rest_ask)[iid]
        rest.setdefault(tick, []).append(q)
        self._queues[sim.coid] = q

    def _trigger(self, iid: str, sim: _SimOrder, ts: int) -> None:
        sim.triggered = True
        sim.status = _TRIGGERED
        sim.ts_event = ts
        self._emit(OrderTriggered(sim.strategy_id, iid, sim.coid, ts, self.clock.now_ns()))
        self._take_or_rest(iid, sim, ts)

    def _modify_book(self, iid: str, coid: str, cmd: ModifyOrder, arrival: int) -> None:
        sim = self._orders.get(coid)
        if sim is None or sim.status not in _WORKING:
            self._modify_rejected(cmd, "not working", arrival)
            return
        qty = sim.quantity if cmd.quantity != cmd.quantity else cmd.quantity
        limit = sim.limit if cmd.price != cmd.price else cmd.price
        trigger = sim.trigger if cmd.trigger_price != cmd.trigger_price else cmd.trigger_price
        problem = self._modify_problem(sim, qty, limit, trigger)
        if problem is not None:
            self._modify_rejected(cmd, problem, arrival)
            return
        if sim.order.post_only and (sim.type == _LIMIT or sim.triggered):
            book = self.books[iid]
            best = book.best_ask if sim.buy else book.best_bid
            if abs(best) < 2**62 and (best <= book.to_tick(limit) if sim.buy else best >= book.to_tick(limit)):
                reason = f"post_only: limit {limit} would take liquidity at {book.price(best)}"
                self._modify_rejected(cmd, reason, arrival)
                return
        q = self._queues.get(coid)
        # A new price or a larger quantity loses the queue position; a smaller quantity keeps it.
        requeue = q is not None and (limit != sim.limit or qty > sim.quantity)
        if requeue:
            self._unrest(iid, q)  # type: ignore[arg-type]
        sim.quantity, sim.limit, sim.trigger = qty, limit, trigger
        sim.ts_event = arrival
        self._emit(
            OrderModified(sim.strategy_id, iid, coid, qty, sim.limit, sim.trigger, arrival, self.clock.now_ns())
        )
        if requeue:
            self._take_or_rest(iid, sim, arrival)


def simulated_venue(clock: Clock, instruments: dict[str, Any], config: VenueConfig, **kw: Any) -> SimulatedVenue:
    """The simulated venue a :class:`VenueConfig` asks for: a :class:`BookVenue` for ``fill_on: book``."""
    if config.fill_on == "book":
        return BookVenue(clock, instruments, config, **kw)
    return SimulatedVenue(clock, instruments, config, **kw)
