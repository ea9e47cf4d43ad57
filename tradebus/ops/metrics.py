"""Prometheus metrics of a daemon.

Counters are updated as events happen (on the daemon's loop: the feeds' sink and the
kernel's bus); gauges of state (equity, positions, connections, books, in-flight orders)
are read when scraped, by :class:`StateCollector`, so a scrape always sees the current
state and trading pays nothing for them. Names follow the Prometheus conventions: base
units (seconds, the quote currency of the account), ``_total`` counters, bounded labels
(a denial's label is the part of its reason before the first ``:``).

=================================================  ===========================================
metric                                             labels
=================================================  ===========================================
``tradebus_feed_messages_total``                   venue, instrument, type
``tradebus_feed_lag_seconds`` (histogram)          venue  -- venue time to receive time
``tradebus_feed_frames_total``                     feed
``tradebus_feed_reconnects_total``                 feed
``tradebus_feed_disconnects_total``                feed  -- connections that ended (not by a stop)
``tradebus_feed_connected``                        feed
``tradebus_user_stream_disconnects_total``         stream  -- a live daemon's private stream
``tradebus_feed_last_frame_age_seconds``           feed  -- the feed's liveness, as ``/health`` judges it
``tradebus_feed_last_message_age_seconds``         feed  -- reaches the bar interval on a bar-only feed
``tradebus_feed_stale_total``                      feed
``tradebus_book_resyncs_total``                    instrument
``tradebus_book_synced``                           instrument
``tradebus_orders_submitted_total``                instrument
``tradebus_fills_total``                           instrument
``tradebus_order_denials_total``                   reason
``tradebus_order_rejects_total``                   reason
``tradebus_order_ack_latency_seconds`` (histogram)
``tradebus_orders_in_flight``                      -- submitted, not yet acknowledged
``tradebus_orders_in_flight_oldest_age_seconds``
``tradebus_orders_open``
``tradebus_reconciliation_mismatches_total``       venue
``tradebus_rate_limit_headroom_ratio``             venue  -- share of the venue's request limit its last answer left
                                                          (Binance: 1 - X-MBX-USED-WEIGHT-1M / limit; Bybit:
                                                          X-Bapi-Limit-Status / X-Bapi-Limit; OKX sends none: unset)
``tradebus_equity``                                -- quote currency
``tradebus_position``                              instrument  -- base units, signed
``tradebus_exposure``                              instrument  -- position x last price
``tradebus_drawdown_ratio``
``tradebus_trading_state``                         state  -- 1 for the current state
``tradebus_event_loop_lag_seconds`` (+ histogram ``tradebus_event_loop_lag_seconds_hist``)
``tradebus_asyncio_tasks``
``tradebus_alerts_dropped_total``
``tradebus_alerts_failed_total``                   -- not taken by the Bot API after the retries
``tradebus_log_write_failures_total``              -- writes to ``ops.log.file`` that failed (a full disk)
``tradebus_telegram_polls_total``                  -- ``getUpdates`` long polls of the command poller
``tradebus_telegram_poll_errors_total``            -- errors no rule foresaw in the poller
``tradebus_telegram_poll_conflicts_total``         -- ``getUpdates`` answered 409 (another process polls the token)
``tradebus_telegram_poll_retry_waits_total``       -- the poller's waits after a failure
``tradebus_telegram_poll_retry_wait_seconds_total``  -- their seconds
``tradebus_telegram_token_refused``                -- 1 once the Bot API answered 401 (the token revoked)
``process_resident_memory_bytes``, ``process_open_fds``, ...  (prometheus-client's process collector)
=================================================  ===========================================

The ``tradebus_telegram_*`` values are the Telegram bot's (:class:`~tradebus.ops.telegram.TelegramBot`),
read when scraped by :class:`TelegramCollector`; a daemon without ``ops.telegram`` has none.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from tradebus.engine.messages import (
    Bar,
    BookDelta,
    BookResynced,
    BookSnapshot,
    FeedStale,
    FundingRate,
    MarkPrice,
    OrderAccepted,
    OrderCanceled,
    OrderDenied,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    Quote,
    Trade,
    TradingState,
)

from tradebus.ops.health import book_states
from tradebus.reports.denials import reason_label

if TYPE_CHECKING:
    from tradebus.ops.hooks import OpsTarget
    from tradebus.ops.telegram import TelegramBot

__all__ = ["DaemonMetrics", "StateCollector", "TelegramCollector", "reason_label"]

_TYPE_NAMES: dict[type, str] = {
    Trade: "trade",
    Quote: "quote",
    Bar: "bar",
    BookDelta: "book_delta",
    BookSnapshot: "book_snapshot",
    MarkPrice: "mark_price",
    FundingRate: "funding_rate",
}
_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_ACK_BUCKETS = (1e-5, 5e-5, 1e-4, 5e-4, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


class DaemonMetrics:
    """The event-driven metrics of one daemon, in their own registry.

    Parameters
    ----------
    registry
        Where to register (a fresh :class:`CollectorRegistry` by default, so two daemons in
        one process never share counters).
    process
        Also export prometheus-client's ``process_*`` metrics (RSS, open fds, CPU).
    """

    def __init__(self, registry: CollectorRegistry | None = None, *, process: bool = True) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        if process:
            ProcessCollector(registry=r)
        self.messages = Counter(
            "tradebus_feed_messages", "Market-data messages received", ["venue", "instrument", "type"], registry=r
        )
        self.lag = Histogram(
            "tradebus_feed_lag_seconds",
            "Feed lag: receive time minus venue time of a market-data message",
            ["venue"],
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.disconnects = Counter(
            "tradebus_feed_disconnects", "Feed connections that ended other than by a stop", ["feed"], registry=r
        )
        self.user_stream_disconnects = Counter(
            "tradebus_user_stream_disconnects",
            "Private user-stream connections that ended other than by a stop (live daemon)",
            ["stream"],
            registry=r,
        )
        self.stale = Counter("tradebus_feed_stale", "Stale-feed events (FeedStale)", ["feed"], registry=r)
        self.resyncs = Counter("tradebus_book_resyncs", "Order books resynced", ["instrument"], registry=r)
        self.submitted = Counter("tradebus_orders_submitted", "Orders submitted", ["instrument"], registry=r)
        self.fills = Counter("tradebus_fills", "Fills", ["instrument"], registry=r)
        self.denials = Counter("tradebus_order_denials", "Orders denied before the venue", ["reason"], registry=r)
        self.rejects = Counter("tradebus_order_rejects", "Orders rejected by the venue", ["reason"], registry=r)
        self.ack_latency = Histogram(
            "tradebus_order_ack_latency_seconds",
            "Submit to venue acknowledgement (accepted or rejected)",
            buckets=_ACK_BUCKETS,
            registry=r,
        )
        self.reconciliation = Counter(
            "tradebus_reconciliation_mismatches", "Differences between local and venue state", ["venue"], registry=r
        )
        self.headroom = Gauge(
            "tradebus_rate_limit_headroom_ratio", "Share of the venue's request limit its last answer left", ["venue"], registry=r
        )
        self.loop_lag = Gauge("tradebus_event_loop_lag_seconds", "Latest event-loop lag probe", registry=r)
        self.loop_lag_hist = Histogram(
            "tradebus_event_loop_lag_seconds_hist",
            "Event-loop lag probes",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0),
            registry=r,
        )
        self.alerts_dropped = Counter(
            "tradebus_alerts_dropped", "Alerts dropped because the outgoing queue was full", registry=r
        )
        self.alerts_failed = Counter(
            "tradebus_alerts_failed",
            "Alerts the Bot API did not take (refused, or failing after the retries)",
            registry=r,
        )
        self.log_write_failures = Counter(
            "tradebus_log_write_failures",
            "Writes to the log file (ops.log.file) that failed (a full disk, a file-size limit)",
            registry=r,
        )
        self._msg_children: dict[tuple[type, str], Any] = {}
        self._lag_children: dict[str, Any] = {}
        self._venues: dict[str, str] = {}
        self.in_flight: dict[str, float] = {}
        #: receive time (ns) of the latest market-data message per instrument
        self.last_recv_ns: dict[str, int] = {}

    # ------------------------------------------------------------------ market data

    def bind_instruments(self, venues: dict[str, str]) -> None:
        """``instrument_id -> venue`` of the run (the ``venue`` label of message metrics)."""
        self._venues.update(venues)

    def on_message(self, msg: Any) -> None:
        """Count one message of a feed and observe its lag (called for every message: kept cheap)."""
        cls = type(msg)
        name = _TYPE_NAMES.get(cls)
        if name is None:
            return
        iid = msg.instrument_id
        key = (cls, iid)
        child = self._msg_children.get(key)
        venue = self._venues.get(iid, iid.rpartition(".")[2])
        if child is None:
            child = self._msg_children[key] = self.messages.labels(venue, iid, name)
        child.inc()
        recv, event = msg.ts_init, msg.ts_event
        self.last_recv_ns[iid] = recv
        if 0 < event < recv:
            lag = self._lag_children.get(venue)
            if lag is None:
                lag = self._lag_children[venue] = self.lag.labels(venue)
            lag.observe((recv - event) / 1e9)

    # ------------------------------------------------------------------ bus events

    def subscribe(self, bus: Any) -> None:
        """Count the order, book and feed events published on a kernel's bus."""
        bus.subscribe(BookResynced, lambda m: self.resyncs.labels(m.instrument_id).inc())
        bus.subscribe(FeedStale, lambda m: self.stale.labels(m.source).inc())
        bus.subscribe(OrderSubmitted, self._submitted)
        bus.subscribe(OrderAccepted, self._acked)
        bus.subscribe(OrderRejected, self._rejected)
        bus.subscribe(OrderDenied, self._denied)
        bus.subscribe(OrderFilled, self._filled)
        bus.subscribe(OrderCanceled, self._done)
        bus.subscribe(OrderExpired, self._done)

    def _submitted(self, m: OrderSubmitted) -> None:
        self.submitted.labels(m.instrument_id).inc()
        self.in_flight[m.client_order_id] = time.perf_counter()

    def _acked(self, m: OrderAccepted | OrderRejected) -> None:
        start = self.in_flight.pop(m.client_order_id, None)
        if start is not None:
            self.ack_latency.observe(time.perf_counter() - start)

    def _rejected(self, m: OrderRejected) -> None:
        self._acked(m)
        self.rejects.labels(reason_label(m.reason)).inc()

    def _denied(self, m: OrderDenied) -> None:
        self.in_flight.pop(m.client_order_id, None)
        self.denials.labels(reason_label(m.reason)).inc()

    def _filled(self, m: OrderFilled) -> None:
        self._acked(m)  # a fill acknowledges an order whose acceptance was not reported
        self.fills.labels(m.instrument_id).inc()

    def _done(self, m: OrderCanceled | OrderExpired) -> None:
        self.in_flight.pop(m.client_order_id, None)

    # ------------------------------------------------------------------ loop

    async def probe_loop(self, interval: float) -> None:
        """Measure how late the loop wakes up from a sleep of ``interval`` seconds, forever."""
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(interval)
            lag = max(0.0, loop.time() - start - interval)
            self.loop_lag.set(lag)
            self.loop_lag_hist.observe(lag)

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)


class StateCollector(Collector):
    """Gauges read from the daemon when scraped (see the module docstring)."""

    def __init__(self, target: OpsTarget, metrics: DaemonMetrics, clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.target = target
        self.metrics = metrics
        self.clock_ns = clock_ns

    def describe(self) -> list[Any]:
        return []  # collected at scrape time only (state that may not exist yet at registration)

    def collect(self) -> Iterator[Any]:
        target = self.target
        kernel = target.kernel
        now_ns = self.clock_ns()
        frames = CounterMetricFamily("tradebus_feed_frames", "Raw frames received", labels=["feed"])
        reconnects = CounterMetricFamily("tradebus_feed_reconnects", "Reconnections after the first", labels=["feed"])
        connected = GaugeMetricFamily("tradebus_feed_connected", "1 while the feed is connected", labels=["feed"])
        frame_age = GaugeMetricFamily(
            "tradebus_feed_last_frame_age_seconds", "Seconds since the feed's latest frame of market data (keep-alive replies do not count)", labels=["feed"]
        )
        age = GaugeMetricFamily(
            "tradebus_feed_last_message_age_seconds", "Seconds since the feed's latest message", labels=["feed"]
        )
        last = self.metrics.last_recv_ns
        for feed in target.feeds:
            client = feed.client
            if client is not None:
                frames.add_metric([feed.name], client.frames)
                reconnects.add_metric([feed.name], max(client.connections - 1, 0))
                connected.add_metric([feed.name], 1.0 if client.connected.is_set() else 0.0)
                last_data = client.live_ns()  # keep-alive replies do not count (but on a trades-only feed)
                if last_data:
                    frame_age.add_metric([feed.name], max(0.0, (now_ns - last_data) / 1e9))
            seen = [last[i] for i in feed.instrument_ids if i in last]
            if seen:
                age.add_metric([feed.name], max(0.0, (now_ns - max(seen)) / 1e9))
        yield from (frames, reconnects, connected, frame_age, age)
        synced = GaugeMetricFamily("tradebus_book_synced", "1 while the book is in sync", labels=["instrument"])
        for iid, ok in book_states(target.feeds).items():
            synced.add_metric([iid], 1.0 if ok else 0.0)
        yield synced
        in_flight = self.metrics.in_flight
        yield GaugeMetricFamily("tradebus_orders_in_flight", "Orders submitted, not yet acknowledged", len(in_flight))
        oldest = time.perf_counter() - min(in_flight.values()) if in_flight else 0.0
        yield GaugeMetricFamily(
            "tradebus_orders_in_flight_oldest_age_seconds", "Age of the oldest unacknowledged order", oldest
        )
        yield GaugeMetricFamily("tradebus_orders_open", "Working orders", kernel.orders.open_count)
        portfolio = kernel.portfolio
        yield GaugeMetricFamily("tradebus_equity", "Account equity (quote currency)", kernel.equity())
        yield GaugeMetricFamily("tradebus_drawdown_ratio", "Drawdown of equity from its peak", portfolio.drawdown())
        position = GaugeMetricFamily(
            "tradebus_position", "Net position (the instrument's quantity: base units or contracts)", labels=["instrument"]
        )
        exposure = GaugeMetricFamily(
            "tradebus_exposure", "Position times contract size times last price (quote currency)", labels=["instrument"]
        )
        for iid, inst in kernel.instruments.items():
            qty = portfolio.position(iid)
            position.add_metric([iid], qty)
            px = portfolio.last_price(iid)
            exposure.add_metric([iid], inst.notional(qty, px) if px == px else 0.0)
        yield position
        yield exposure
        state = GaugeMetricFamily("tradebus_trading_state", "1 for the risk gate's current state", labels=["state"])
        current = kernel.risk.state
        for s in TradingState:
            state.add_metric([s.value], 1.0 if s is current else 0.0)
        yield state
        yield GaugeMetricFamily("tradebus_asyncio_tasks", "asyncio tasks alive on the daemon's loop", _tasks())


class TelegramCollector(Collector):
    """The counters of a Telegram bot's command poller, read when scraped (see the module docstring)."""

    def __init__(self, bot: TelegramBot) -> None:
        self.bot = bot

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        bot = self.bot
        yield CounterMetricFamily("tradebus_telegram_polls", "getUpdates long polls of the command poller", bot.polls)
        yield CounterMetricFamily(
            "tradebus_telegram_poll_errors", "Errors no rule foresaw in the command poller", bot.poll_errors
        )
        yield CounterMetricFamily(
            "tradebus_telegram_poll_conflicts", "getUpdates answered 409 Conflict (another process polls the token)",
            bot.conflicts,
        )
        yield CounterMetricFamily(
            "tradebus_telegram_poll_retry_waits", "Waits of the command poller after a failure", bot.poll_waits
        )
        yield CounterMetricFamily(
            "tradebus_telegram_poll_retry_wait_seconds", "Seconds the command poller waited after failures",
            bot.poll_wait_seconds,
        )
        yield GaugeMetricFamily(
            "tradebus_telegram_token_refused",
            "1 once the Bot API answered 401 (the bot token revoked): no command is read, no alert delivered",
            float(bot.token_refused),
        )


def _tasks() -> int:
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:  # scraped off the loop
        return 0
