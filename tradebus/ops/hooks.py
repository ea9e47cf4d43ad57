"""The few calls a daemon makes into its operations layer.

A daemon (the paper daemon, and the live daemon the same way) owns one :class:`OpsHooks`
built from its config's ``ops:`` block and calls:

* ``await hooks.start(node)`` first thing in its run (log file, bus subscriptions,
  ``/metrics`` + ``/health`` server, event-loop probe, Telegram), where ``node`` is an
  :class:`OpsTarget` (``kernel``, ``feeds``, ``running``, ``warming_up``, ``stop``);
* ``hooks.sink(router)`` as the sink it gives its feeds (counts every message, its lag and
  its receive time);
* ``hooks.watch(feeds)`` once the feeds exist, before they run (each connection that ends
  or opens again is counted and alerted as it happens);
* ``hooks.watch_user_stream(stream)`` (a live daemon, for its private user stream: the same,
  counted apart as ``tradebus_user_stream_disconnects_total``);
* ``await hooks.stop(reason)`` last thing in its shutdown.

A live daemon also reports what only it knows: :meth:`OpsHooks.on_reconciliation_mismatch`,
:meth:`OpsHooks.set_rate_limit_headroom`, :meth:`OpsHooks.on_orders_left_at_venue`. Everything else
(orders, fills, denials, rejects, resyncs, stale feeds, trading state) is read from the kernel's bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

import numpy as np
from loguru import logger

from tradebus.account import asset_names
from tradebus.engine.instrument import InstrumentKind
from tradebus.engine.messages import (
    BookResynced,
    CancelOrder,
    FeedStale,
    OrderAccepted,
    OrderDenied,
    OrderFilled,
    OrderRejected,
    OrderSide,
    OrderStatus,
    OrderSubmitted,
    OrderType,
    SubmitOrder,
    TradingState,
    TradingStateChanged,
)
from tradebus.errors import TradebusError
from tradebus.execution.orders import FLATTEN_STRATEGY
from tradebus.ops.config import OpsConfig
from tradebus.ops.flapping import FlapDetector
from tradebus.ops.health import health_report
from tradebus.ops.logs import open_log_sink
from tradebus.ops.metrics import DaemonMetrics, StateCollector, TelegramCollector, reason_label
from tradebus.ops.server import OpsServer
from tradebus.ops.telegram import TelegramBot, read_token
from tradebus.reports.attribution import ALL_INSTRUMENTS, attribute

__all__ = ["OpsHooks", "OpsTarget"]



class OpsTarget(Protocol):
    """What the operations layer reads from a daemon."""

    kernel: Any
    feeds: list[Any]
    running: asyncio.Event
    warming_up: bool  # compiling or loading the feature kernels, before it recovers and subscribes
    guard: Any  # the MarketGuard asked before every order

    def stop(self, reason: str = ...) -> None:
        """Ask the daemon to shut down."""


class OpsHooks:
    """Metrics, health, alerts and control of one daemon (see the module docstring).

    Parameters
    ----------
    config
        The ``ops:`` block.
    mode
        ``paper`` or ``live`` (in messages).
    """

    def __init__(self, config: OpsConfig, mode: str = "paper") -> None:
        self.config = config
        self.mode = mode
        self.metrics = DaemonMetrics()
        self.server: OpsServer | None = None
        self.telegram: TelegramBot | None = None
        self.target: OpsTarget | None = None
        self._log_sink: int | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._user_streams: list[Any] = []
        self.flaps: FlapDetector | None = None
        self.log_flaps: FlapDetector | None = None
        #: The denial and reject series of the alerts (told at the stop if still open).
        self._series: tuple[_Series, ...] = ()
        if config.telegram is not None:
            self.telegram = TelegramBot(
                config.telegram,
                read_token(config.telegram),
                self.command,
                on_drop=self.metrics.alerts_dropped.inc,
                on_fail=self.metrics.alerts_failed.inc,
            )
            self.metrics.registry.register(TelegramCollector(self.telegram))
            self.flaps = FlapDetector(
                config.telegram.flap_cycles, config.telegram.flap_window, partial(self._alert, "disconnect")
            )
            #: The log file's cannot-write and written-again alerts, held as a flapping feed's (a disk that fills and
            #: frees again and again); apart from :attr:`flaps`, as its alerts are of the ``log`` kind.
            self.log_flaps = FlapDetector(
                config.telegram.flap_cycles, config.telegram.flap_window, partial(self._alert, "log")
            )
            if config.log.file is not None:
                self.log_flaps.add_log(str(config.log.file))

    # ------------------------------------------------------------------ daemon calls

    def sink(self, sink: Callable[[Any], None]) -> Callable[[Any], None]:
        """Wrap the feeds' sink: every message is counted (and its lag observed) before ``sink`` gets it."""
        on_message = self.metrics.on_message

        def observed(msg: Any) -> None:
            on_message(msg)
            sink(msg)

        return observed

    async def start(self, target: OpsTarget) -> None:
        """Open the log file, subscribe to the bus, start the server, the loop probe and Telegram."""
        self.target = target
        loop = asyncio.get_running_loop()

        def told(text: str, failed: bool) -> None:  # from whichever thread logged
            with contextlib.suppress(RuntimeError):  # the loop is closed: the daemon has stopped
                loop.call_soon_threadsafe(self._on_log_told, text, failed)

        self._log_sink = open_log_sink(
            self.config.log, on_failed_write=self.metrics.log_write_failures.inc, on_told=told
        )
        kernel = target.kernel
        self.metrics.bind_instruments({iid: inst.venue for iid, inst in kernel.instruments.items()})
        self.metrics.subscribe(kernel.bus)
        self.metrics.registry.register(StateCollector(target, self.metrics))
        if self.config.port is not None:
            self.server = OpsServer(self.config.host, self.config.port, self.metrics.exposition, self.health)
            await self.server.start()
        self._tasks.append(
            asyncio.create_task(self.metrics.probe_loop(self.config.loop_lag_interval), name="ops:loop-lag")
        )
        if self.telegram is not None:
            assert self.flaps is not None and self.log_flaps is not None
            self._tasks.append(asyncio.create_task(self.flaps.run(), name="ops:flapping"))
            self._tasks.append(asyncio.create_task(self.log_flaps.run(), name="ops:log-flapping"))
            self._subscribe_alerts(kernel.bus)
            await self.telegram.start(self.daily_summary)
            self.telegram.alert("lifecycle", f"tradebus {self.mode} daemon starting: {', '.join(kernel.instruments)}")

    def watch(self, feeds: list[Any]) -> None:
        """Count and alert every connection of ``feeds`` that ends, and every reconnection, when it happens
        (a flapping feed's alerts are held: :mod:`tradebus.ops.flapping`)."""
        for feed in feeds:
            if feed.client is not None:
                if self.flaps is not None:
                    self.flaps.add_feed(feed.name, feed.instrument_ids, feed.client.live_ns)
                feed.client.connection_listeners.append(partial(self._on_connection, "feed", self.metrics.disconnects))

    def watch_user_stream(self, stream: Any) -> None:
        """Count and alert every end and every reopening of a live daemon's private user stream, when it happens
        (until it flaps: :mod:`tradebus.ops.flapping`).

        ``/health`` is 503 while it is not connected, or its subscription is not confirmed by the venue.
        """
        self._user_streams.append(stream)
        if self.flaps is not None:
            self.flaps.add_stream(stream.name)
        stream.connection_listeners.append(
            partial(self._on_connection, "user stream", self.metrics.user_stream_disconnects)
        )

    async def stop(self, reason: str) -> None:
        """Send the last summary of each flapping feed and of each open series of refused orders, and the stop alert,
        even past a backlog of alerts (:meth:`TelegramBot.last_words`); stop every task and the server, close the log
        file."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.telegram is not None and self.telegram.started_s is not None:  # else the start was refused before it
            with self.telegram.last_words():  # sent even when a backlog of alerts takes all the stop's wait
                for flaps in (self.flaps, self.log_flaps):
                    if flaps is not None:
                        flaps.close()
                for series in self._series:
                    series.on_passed(None)
                self.telegram.alert("lifecycle", f"tradebus {self.mode} daemon stopped: {reason}\n{self.pnl_text()}")
            await self.telegram.stop()
        if self.server is not None:
            await self.server.stop()
        if self._log_sink is not None:
            with contextlib.suppress(ValueError):
                logger.remove(self._log_sink)
            self._log_sink = None

    def on_reconciliation_mismatch(self, venue: str, detail: str) -> None:
        """A live daemon found local and venue state differ (counted and alerted)."""
        self.metrics.reconciliation.labels(venue).inc()
        self._alert("reconciliation", f"reconciliation mismatch on {venue}: {detail}")

    def on_orders_left_at_venue(self, text: str) -> None:
        """A live daemon stops with orders open or of unknown state at the venue (``text`` names them): alerted
        (``lifecycle``) before the stop alert, as ``tradebus live`` then exits 4; one of the stop's last words
        (:meth:`TelegramBot.last_words`: not lost behind a backlog of alerts)."""
        if self.telegram is not None:
            with self.telegram.last_words():
                self.telegram.alert("lifecycle", text)

    def set_rate_limit_headroom(self, venue: str, ratio: float) -> None:
        """A live daemon's share of ``venue``'s request budget left (0..1)."""
        self.metrics.headroom.labels(venue).set(ratio)

    # ------------------------------------------------------------------ health

    def health(self) -> tuple[bool, dict[str, Any]]:
        """``(healthy, report)`` (:func:`~tradebus.ops.health.health_report`)."""
        assert self.target is not None
        healthy, report = health_report(
            self.target, self.metrics.last_recv_ns, self.config.health_max_age, user_streams=self._user_streams
        )
        if self.telegram is not None:  # reported, not judged: a restart does not mend a revoked token
            report["telegram"] = {"polling": self.telegram.polling, "token_refused": self.telegram.token_refused}
        return healthy, report

    # ------------------------------------------------------------------ alerts

    def _alert(self, kind: str, text: str) -> None:
        if self.telegram is not None:
            self.telegram.alert(kind, text)

    def _on_log_told(self, text: str, failed: bool) -> None:
        """The log file's first failed write (``failed``) or its first write after failures: alerted unless it flaps."""
        if self.log_flaps is None or self.config.log.file is None:
            return
        name = str(self.config.log.file)
        if self.log_flaps.on_disconnect(name) if failed else self.log_flaps.on_connect(name):
            self._alert("log", text)

    def _subscribe_alerts(self, bus: Any) -> None:
        alert = self._alert
        bus.subscribe(
            OrderFilled,
            lambda m: alert(
                "fill", f"fill {m.client_order_id}: {m.side.name} {_fmt(m.last_qty)} {m.instrument_id} @ {_fmt(m.last_px)}"
            ),
        )
        denials = _Series(alert, "denial", "denied")
        rejects = _Series(alert, "reject", "rejected")
        self._series = (denials, rejects)
        bus.subscribe(OrderDenied, denials.on_refused)
        bus.subscribe(OrderSubmitted, lambda m: denials.on_passed(m.instrument_id))
        bus.subscribe(OrderRejected, rejects.on_refused)
        bus.subscribe(OrderAccepted, lambda m: rejects.on_passed(m.instrument_id))

        def state_changed(m: TradingStateChanged) -> None:
            alert("breaker", f"trading state {m.state}: {m.reason}")
            denials.on_passed(None)
            rejects.on_passed(None)

        bus.subscribe(TradingStateChanged, state_changed)
        flaps = self.flaps
        assert flaps is not None

        def resynced(m: BookResynced) -> None:
            if not flaps.hold(flaps.feed_of(m.instrument_id)):
                alert("resync", f"book {m.instrument_id} resynced: {m.reason}")

        def stale(m: FeedStale) -> None:
            if not flaps.hold(m.source):
                alert("stale", f"feed {m.source} stale: orders on its instruments stop")

        bus.subscribe(BookResynced, resynced)
        bus.subscribe(FeedStale, stale)

    def _on_connection(self, what: str, drops: Any, client: Any, connected: bool, reason: str) -> None:
        """A connection of a feed or the user stream (``what``) opened or ended, counted in ``drops``
        (the first connection is no news)."""
        flaps = self.flaps
        if not connected:
            drops.labels(client.name).inc()
            if flaps is None or flaps.on_disconnect(client.name):
                self._alert("disconnect", f"{what} {client.name} disconnected ({reason[:200]}); reconnecting")
        elif (flaps is None or flaps.on_connect(client.name)) and client.connections > 1:
            self._alert("disconnect", f"{what} {client.name} connected again (connection {client.connections})")

    # ------------------------------------------------------------------ control

    async def command(self, text: str, chat_id: int) -> str:
        """Answer one operator command (``/status``, ``/positions``, ``/pnl``, ``/halt``, ``/resume``, ``/flatten``)."""
        assert self.target is not None
        name = text.split()[0].lower()
        risk = self.target.kernel.risk
        if name == "/status":
            return self.status_text()
        if name == "/positions":
            return self.positions_text()
        if name == "/pnl":
            return self.pnl_text()
        if name == "/halt":
            risk.set_state(TradingState.HALTED, f"operator /halt (telegram chat {chat_id})")
            return f"trading state: {risk.state}"
        if name == "/resume":
            risk.set_state(TradingState.ACTIVE, f"operator /resume (telegram chat {chat_id})")
            return f"trading state: {risk.state}"
        if name == "/flatten":
            return await self.flatten(f"operator /flatten (telegram chat {chat_id})")
        return "commands: /status /positions /pnl /halt /resume /flatten"

    async def flatten(self, reason: str) -> str:
        """Allow only reducing orders (manual REDUCING), cancel every open order, then close each position at market.

        As ``live-kill --flatten``: every open order of the run's instruments is canceled (the
        risk gate denies a closing order beside a resting one on its side as not reducing, and
        a resting order on the other side would reopen the position) and the venue's
        confirmations are awaited, up to ``ops.flatten_timeout`` seconds; then a market order
        closes each position. The order is reduce-only on a derivative; a spot venue has no reduce-only orders (it would
        reject one), and REDUCING already lets a spot order only reduce. A cash-only spot position is closed
        only when long, as ``live-kill --flatten`` closes it: one below zero is coins of the starting
        ``balances`` sold, which a buy would add back to the asset held (the answer says so; no order).

        The answer lists the orders canceled, those that closed otherwise meanwhile (filled),
        the cancels that failed or were not confirmed in time, and the closing orders, each one
        refused at once (denied by the risk gate or the market guard, or rejected) with its
        status and reason. From HALTED this lowers the manual state to REDUCING (so the closing
        orders can pass); a tripped breaker more severe than REDUCING stays in force. A daemon
        not running (starting, or stopping during the wait) sends no closing order.
        """
        assert self.target is not None
        target = self.target
        kernel = target.kernel
        kernel.risk.set_state(TradingState.REDUCING, reason)
        if not target.running.is_set():
            return f"trading state {kernel.risk.state}; daemon not running (starting or stopping): nothing canceled or sent"
        canceled = await self._cancel_open_orders(reason)
        if not target.running.is_set():
            return "; ".join([f"trading state {kernel.risk.state}", *canceled, "daemon stopping: no flatten order sent"])
        sent = []
        kept = []  # spot positions below zero: no order
        for iid, inst in kernel.instruments.items():
            qty = kernel.portfolio.position(iid)
            if qty == 0.0:
                continue
            if inst.cash_only and qty < 0.0:
                asset = asset_names(inst)[0]
                held = kernel.portfolio.spot_holding(asset)
                kept.append(
                    f"{iid}: spot position {_fmt(qty)} is coins of the starting balances sold; "
                    f"a buy would add to the {_fmt(held)} {asset} held"
                )
                continue
            coid = kernel.orders.next_client_order_id(FLATTEN_STRATEGY)
            now = kernel.clock.now_ns()
            side = OrderSide.SELL if qty > 0 else OrderSide.BUY
            kernel.submit(
                SubmitOrder(
                    FLATTEN_STRATEGY, iid, coid, side, abs(qty), now, now, OrderType.MARKET,
                    reduce_only=inst.kind is not InstrumentKind.SPOT, reason=reason,
                )
            )
            order = kernel.orders.get(coid)
            outcome = ""
            if order is not None and order.status in (OrderStatus.DENIED, OrderStatus.REJECTED):
                outcome = f" {order.status} ({order.reason})"
            sent.append(f"{coid}: {side.name} {_fmt(abs(qty))} {iid}{outcome}")
        why = "; ".join(kept) if kept else ("" if sent else "flat")
        orders = "flatten orders: " + ("; ".join(sent) if sent else "none") + (f" ({why})" if why else "")
        return "; ".join([f"trading state {kernel.risk.state}", *canceled, orders])

    async def _cancel_open_orders(self, reason: str) -> list[str]:
        """Cancel every open order and wait for the venue's answers (up to ``flatten_timeout``): what happened."""
        assert self.target is not None
        target = self.target
        kernel = target.kernel
        orders = kernel.orders.open_orders()
        failed: dict[str, str] = {}
        for order in orders:
            if not order.is_open:  # closed by the cancel of another one (its OCO sibling, its bracket parent)
                continue
            now = kernel.clock.now_ns()
            cancel = CancelOrder(order.strategy_id, order.instrument_id, order.client_order_id, now, now, reason)
            try:
                kernel.execution.cancel(cancel)
            except TradebusError as exc:
                logger.error("flatten: cancel of {} failed: {}", order.client_order_id, exc)
                failed[order.client_order_id] = str(exc)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.flatten_timeout
        waiting = [o for o in orders if o.client_order_id not in failed]
        while any(o.is_open for o in waiting) and target.running.is_set() and loop.time() < deadline:
            await asyncio.sleep(0.05)
        canceled = [o.client_order_id for o in orders if o.status is OrderStatus.CANCELED]
        closed = [f"{o.client_order_id} {o.status}" for o in orders if o.is_closed and o.status is not OrderStatus.CANCELED]
        unconfirmed = [o.client_order_id for o in waiting if o.is_open]
        answer = []
        if canceled:
            answer.append(f"canceled {len(canceled)}: {', '.join(canceled)}")
        if closed:
            answer.append(f"closed before their cancel: {', '.join(closed)}")
        if failed:
            answer.append("cancel failed: " + ", ".join(f"{coid} ({why})" for coid, why in failed.items()))
        if unconfirmed:
            wait = self.config.flatten_timeout
            logger.error("flatten: cancel of {} not confirmed after {:g} s", unconfirmed, wait)
            answer.append(f"cancel not confirmed after {wait:g} s: {', '.join(unconfirmed)}")
        return answer

    def status_text(self) -> str:
        """Running state, trading state, feeds, orders, fills, equity."""
        assert self.target is not None
        healthy, report = self.health()
        kernel = self.target.kernel
        feeds = ", ".join(
            f"{name} {'up' if f['connected'] else 'DOWN'} "
            + ("(no frame yet)" if f["last_frame_age_seconds"] is None else f"(last frame {f['last_frame_age_seconds']} s ago)")
            for name, f in report["feeds"].items()
        )
        return (
            f"{self.mode} daemon {'healthy' if healthy else 'UNHEALTHY: ' + '; '.join(report['problems'])}\n"
            f"trading state {kernel.risk.state}\nfeeds: {feeds or 'none'}\n"
            f"orders {kernel.orders.created}, open {kernel.orders.open_count}, "
            f"fills {len(kernel.result.fills)}\n"
            f"equity {kernel.equity():.2f}"
        )

    def positions_text(self) -> str:
        """Every non-flat position with its average and last price; under an instrument several strategies trade, each
        one's share (:meth:`~tradebus.engine.kernel.Kernel.strategy_position`), also when their shares net to flat."""
        assert self.target is not None
        kernel = self.target.kernel
        p = kernel.portfolio
        rows = []
        for iid in kernel.instruments:
            net = p.position(iid)
            traders = [s.strategy_id for s in kernel.strategies if iid in s.instrument_ids]
            shares = [(sid, kernel.strategy_position(sid, iid) + 0.0) for sid in traders] if len(traders) > 1 else []
            if net == 0.0 and not any(q != 0.0 for _, q in shares):
                continue
            held = f"{_fmt(net)} @ {_fmt(p.avg_price(iid))}" if net != 0.0 else "0"
            row = f"{iid}: {held} (last {_fmt(p.last_price(iid))})"
            if any(q != 0.0 for _, q in shares):
                row += "\n  strategies: " + ", ".join(f"{sid} {_fmt(q)}" for sid, q in shares)
            rows.append(row)
        return "\n".join(rows) if rows else "flat"

    def pnl_text(self) -> str:
        """Equity, and its change as realized and unrealized PnL less fees, funding and interest; drawdown; with several
        strategies, each one's share (:meth:`strategies_pnl_text`)."""
        assert self.target is not None
        kernel = self.target.kernel
        p = kernel.portfolio
        equity = kernel.equity()
        start = kernel.result.initial_cash
        text = (
            f"equity {equity:.2f} (start {start:.2f}, {equity - start:+.2f})\n"
            f"realized {p.realized_pnl:.2f}, unrealized {p.unrealized_pnl():.2f}, fees {p.fees_paid:.2f}, "
            f"funding {p.funding_paid:.2f}, interest {p.interest_paid:.2f}\n"
            f"drawdown {p.drawdown():.2%}"
        )
        shares = self.strategies_pnl_text()
        return f"{text}\n{shares}" if shares else text

    def strategies_pnl_text(self) -> str:
        """Each strategy's realized and unrealized PnL, fees, funding and interest (``""`` with one strategy).

        Each strategy's own fills at average cost (:func:`~tradebus.reports.attribution.attribute`, as in the
        run's ``attribution.csv``), valued at the account's prices: fees, funding and interest sum to the account's,
        and so does realized plus unrealized PnL; realized and unrealized apart need not, as the account nets the
        strategies' positions (a sell of one strategy closes another's buy there, not here).
        """
        assert self.target is not None
        kernel = self.target.kernel
        if len(kernel.strategies) < 2:
            return ""
        result, p = kernel.result, kernel.portfolio
        rows = attribute(
            result.fills, {iid: p.last_price(iid) for iid in kernel.instruments}, result.contract_sizes,
            funding=result.funding, funding_fills=result.funding_fills, interest=result.interest,
            borrow_assets=result.borrow_assets, lot_sizes={iid: i.lot_size for iid, i in kernel.instruments.items()},
        )
        totals = {r.strategy_id: r for r in rows if r.instrument == ALL_INSTRUMENTS}
        lines = ["strategies:"]
        for strategy in kernel.strategies:
            r = totals.get(strategy.strategy_id)
            figures = (0.0,) * 5 if r is None else (r.realized_pnl, r.unrealized_pnl, r.fees, r.funding, r.interest)
            lines.append("  {}: realized {:.2f}, unrealized {:.2f}, fees {:.2f}, funding {:.2f}, interest {:.2f}".format(
                strategy.strategy_id, *(x + 0.0 for x in figures)))
        return "\n".join(lines)

    def daily_summary(self) -> str:
        """The daily summary message."""
        assert self.target is not None
        fills = len(self.target.kernel.result.fills)
        return f"daily summary\n{self.pnl_text()}\n{self.positions_text()}\nfills {fills}"


class _Series:
    """One alert per series of refused orders (denied or rejected) of an instrument with the same reason.

    A halted daemon, a stale feed or a venue refusing every order would otherwise send an alert
    per order. The first refusal of a series is alerted; the series ends when an order of the
    instrument passes (``on_passed``) or the trading state changes, with one alert counting the
    refusals not alerted, if any; a series still open when the daemon stops is told so before the stop
    alert. The metrics count every refusal.
    """

    def __init__(self, alert: Callable[[str, str], None], kind: str, verb: str) -> None:
        self._alert = alert
        self._kind = kind
        self._verb = verb
        #: (instrument, reason label) -> refusals since the series' alert
        self._open: dict[tuple[str, str], int] = {}

    def on_refused(self, m: OrderDenied | OrderRejected) -> None:
        key = (m.instrument_id, reason_label(m.reason))
        if key in self._open:
            self._open[key] += 1
            return
        self._open[key] = 0
        self._alert(self._kind, f"{self._verb} {m.client_order_id}: {m.reason}")

    def on_passed(self, instrument_id: str | None) -> None:
        """An order of ``instrument_id`` passed (``None``: the trading state changed, or the daemon stops): its series end."""
        for key in [k for k in self._open if instrument_id is None or k[0] == instrument_id]:
            more = self._open.pop(key)
            if more:
                self._alert(self._kind, f"{more} more order(s) on {key[0]} {self._verb} ({key[1]}), not alerted one by one")


def _fmt(x: float) -> str:
    """A price or quantity in plain decimals, to ten significant digits (``:g`` kept six: 104523.45 read 104523,
    12345678 read 1.23457e+07); ``n/a`` for NaN."""
    return "n/a" if math.isnan(x) else np.format_float_positional(x, precision=10, fractional=False, trim="-")
