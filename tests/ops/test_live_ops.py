"""Operations of the live daemon: its alerts say live, and a reconciliation mismatch is alerted and counted once.

The live daemon trades Binance spot against the local account emulator with Telegram on (the
fake Bot API on 127.0.0.1). The config says the account holds 0.05 BTC, the venue 0.02 BTC:
the start-up reconciliation finds the mismatch and every later round finds it again. The keys
come from ``TRADEBUS_BINANCE_API_KEY``/``_SECRET``; no alert, log line or log file shows them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from loguru import logger
from pydantic import SecretStr

from tradebus.adapters.binance.private_emulator import BinancePrivateEmulator, MatchingProtocol, RestFault
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import OrderSide, OrderStatus, OrderType, SubmitOrder
from tradebus.errors import OrdersLeftAtVenue
from tradebus.node.live import ApiKeys, LiveNode, parse_live_config

from live.live_harness import KEY, SECRET, until
from live.node_testdata import BINANCE_INSTRUMENT, IID, SPOT_FRAMES, SPOT_SNAPSHOT, binance_config
from live.test_live_stop_failures import account_and_market, live_config_data, resting, run_until_it_stops
from live.test_live_stop_unanswered import placed_and_accepted

from .fake_telegram import FakeBotApi

TOKEN = "777:live-ops-secret-token"
OPERATOR = 4242
SPOT = {**BINANCE_INSTRUMENT, "margin": False}
FRAMES = [f for f in SPOT_FRAMES if '@trade"' in f[1]][:20]


def _config(srv: Any, emulator: BinancePrivateEmulator, api: FakeBotApi, log_file: Path) -> dict[str, Any]:
    data = binance_config(
        srv.ws_url,
        srv.http_url,
        ["trade"],
        strategy={
            "name": "tradebus.strategies.tick_ema:TickEmaCross",
            "instruments": [IID],
            "params": {"fast": 2, "slow": 1000, "quantity": 0.01, "mode": "long_only"},  # never ready: no order
        },
    )
    data["instruments"] = [SPOT]
    data["warm_up"] = False
    data["balances"] = {"USDT": 100_000.0, "BTC": 0.05}
    data["live"] = {
        "rest_url": emulator.rest_url,
        "ws_api_url": emulator.ws_api_url,
        "request_timeout": 1.0,
        "reconcile_interval": 0.2,
    }
    data["ops"] = {
        "log": {"file": str(log_file), "serialize": True},
        "telegram": {"chat_ids": [OPERATOR], "base_url": api.base_url, "poll_timeout": 1, "token_env": "TB_TEST_LIVE_TOKEN"},
    }
    return data


async def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], float | None, list[str], str]:
    """Run the daemon for 4 reconciliation rounds and a ``/status``: (alerts, mismatch count, log lines, log file)."""
    monkeypatch.setenv("TB_TEST_LIVE_TOKEN", TOKEN)
    monkeypatch.setenv("TRADEBUS_BINANCE_API_KEY", KEY)
    monkeypatch.setenv("TRADEBUS_BINANCE_API_SECRET", SECRET)
    lines: list[str] = []
    sink = logger.add(lines.append, level="DEBUG", format="{message}")
    log_file = tmp_path / "daemon.jsonl"
    emulator = BinancePrivateEmulator(KEY, SECRET, {IID: Instrument(**SPOT)}, {"USDT": 100_000.0, "BTC": 0.02})
    try:
        async with FakeBotApi(TOKEN) as api, emulator:
            protocol = MatchingProtocol(SPOT_SNAPSHOT, account=emulator, instrument_ids={"btcusdt": IID})
            async with LocalVenueServer(protocol, FRAMES) as srv:
                config = parse_live_config(_config(srv, emulator, api, log_file), "<test>")
                node = LiveNode(config, ApiKeys.from_env(config.live), handle_signals=False)
                assert node.ops is not None
                task = asyncio.create_task(node.run())
                try:
                    await until(lambda: task.done() or node.reconciler.rounds >= 4, timeout=20)
                    api.push(OPERATOR, "/status")
                    await until(lambda: any("daemon" in t and "trading state" in t for t in api.texts()), timeout=10)
                    count = node.ops.metrics.registry.get_sample_value(
                        "tradebus_reconciliation_mismatches_total", {"venue": "BINANCE"}
                    )
                finally:
                    node.stop("test done")
                    await asyncio.wait_for(task, 20)
    finally:
        logger.remove(sink)
    return api.texts(OPERATOR), count, lines, log_file.read_text()


async def test_a_live_daemon_calls_itself_live_to_its_operator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    texts, _, lines, log_text = await _run(tmp_path, monkeypatch)
    assert texts[0].startswith("tradebus live daemon starting")
    assert texts[-1].startswith("tradebus live daemon stopped: test done")
    assert any(t.startswith("live daemon ") for t in texts)  # the /status answer
    assert not any("paper" in t for t in texts)
    assert "live daemon running" in log_text and "paper daemon" not in log_text
    for secret in (KEY, SECRET, TOKEN):
        assert not any(secret in t for t in texts)
        assert not any(secret in line for line in lines)
        assert secret not in log_text


async def test_a_persisting_reconciliation_mismatch_is_alerted_and_counted_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts, count, _, log_text = await _run(tmp_path, monkeypatch)
    rounds = [json.loads(line)["record"]["message"] for line in log_text.splitlines()]
    assert sum(m.startswith("reconciliation: BTCUSDT.BINANCE: 0.05 BTC held here") for m in rounds) >= 4
    mismatches = [t for t in texts if t.startswith("reconciliation mismatch on BINANCE")]
    assert len(mismatches) == 1, mismatches  # one incident, however many rounds find it again
    assert "0.05 BTC held here but 0.02 at the venue" in mismatches[0]
    assert count == 1


@asynccontextmanager
async def _daemon(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    health: bool = False,
    hold: bool = False,
    gate: Any = None,
    telegram: dict[str, Any] | None = None,
) -> AsyncIterator[tuple[LiveNode, BinancePrivateEmulator, FakeBotApi, asyncio.Task[None]]]:
    """A running live daemon (Telegram commands off, ``telegram`` added to its ``ops.telegram``; ``health``: its
    ops server on a free port) against the Binance account emulator (``hold``: the user stream's subscription
    left unanswered) and a local public server (``gate``: a :class:`_Tap` on its trades); stopped on exit, its
    error raised."""
    monkeypatch.setenv("TB_TEST_LIVE_TOKEN", TOKEN)
    monkeypatch.setenv("TRADEBUS_BINANCE_API_KEY", KEY)
    monkeypatch.setenv("TRADEBUS_BINANCE_API_SECRET", SECRET)
    emulator = BinancePrivateEmulator(KEY, SECRET, {IID: Instrument(**SPOT)}, {"USDT": 100_000.0, "BTC": 0.05})
    if hold:
        emulator.hold_frames = asyncio.Event()
    async with FakeBotApi(TOKEN) as api, emulator:
        protocol = MatchingProtocol(SPOT_SNAPSHOT, account=emulator, instrument_ids={"btcusdt": IID})
        async with LocalVenueServer(protocol, FRAMES, lifetime=60.0, gate=gate) as srv:
            data = _config(srv, emulator, api, tmp_path / "daemon.jsonl")
            if health:
                data["ops"]["port"] = 0
            data["ops"]["telegram"]["commands"] = False
            data["ops"]["telegram"].update(telegram or {})
            config = parse_live_config(data, "<test>")
            node = LiveNode(config, ApiKeys.from_env(config.live), handle_signals=False)
            assert node.ops is not None
            task = asyncio.create_task(node.run())
            try:
                await until(lambda: task.done() or node.running.is_set(), timeout=20)
                yield node, emulator, api, task
            finally:
                if gate is not None:
                    gate.let(len(FRAMES))  # the server's stop waits for a frame the tap holds
                node.stop("test done")
                await asyncio.wait_for(task, 20)


def _health_url(node: LiveNode) -> str:
    assert node.ops is not None and node.ops.server is not None
    return f"http://127.0.0.1:{node.ops.server.port}/health"


async def test_a_dropped_user_stream_is_alerted_and_counted_as_the_user_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The venue drops the private user stream (fills and order events stop coming until it is back):
    the market-data feeds' drops were alerted and counted, this one was neither."""
    async with _daemon(tmp_path, monkeypatch) as (node, emulator, api, _):
        await until(lambda: any(s.authed for s in emulator.sessions), timeout=5)
        await emulator.sessions[0].ws.close(code=1011, message=b"internal error")  # the venue drops it
        await until(lambda: node.stream.connections == 2 and node.stream.connected.is_set(), timeout=10)
        await until(lambda: any("connected again" in t for t in api.texts()), timeout=5)
        assert node.ops is not None
        registry = node.ops.metrics.registry
    stream = node.stream.name
    texts = [t for t in api.texts(OPERATOR) if stream in t]
    assert len(texts) == 2, texts  # the first connection and the stop are no news
    assert texts[0].startswith(f"user stream {stream} disconnected (") and texts[0].endswith("; reconnecting")
    assert texts[1] == f"user stream {stream} connected again (connection 2)"
    assert registry.get_sample_value("tradebus_user_stream_disconnects_total", {"stream": stream}) == 1
    assert registry.get_sample_value("tradebus_feed_disconnects_total", {"feed": stream}) is None


async def test_a_user_stream_that_keeps_dropping_is_alerted_as_flapping_not_at_every_drop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The venue drops the user stream again and again: its every drop and reconnection was alerted for ever
    (only the market-data feeds were under the flapping rule), two alerts a cycle."""
    flap = {"flap_cycles": 1, "flap_window": 3.0}
    async with _daemon(tmp_path, monkeypatch, telegram=flap) as (node, emulator, api, _):
        stream = node.stream
        for n in range(1, 5):  # the venue drops it four times, each time once it is back and subscribed
            await until(lambda: stream.connections == n and stream.subscribed.is_set(), timeout=15)
            await emulator.sessions[-1].ws.close(code=1011, message=b"internal error")
        await until(lambda: stream.connections == 5 and stream.subscribed.is_set(), timeout=15)
        await until(lambda: any(" after flapping " in t for t in api.texts()), timeout=10)  # it stays up
        assert node.ops is not None
        registry = node.ops.metrics.registry
    texts = [t for t in api.texts(OPERATOR) if t.startswith(f"user stream {stream.name} ")]
    assert [t.split(" (")[0].split(":")[0] for t in texts[:3]] == [
        f"user stream {stream.name} disconnected",
        f"user stream {stream.name} connected again",
        f"user stream {stream.name} flapping",
    ], texts
    assert texts[2] == (
        f"user stream {stream.name} flapping: 2 disconnects in the last 3 s; its disconnect and reconnect "
        "alerts are held until it stays connected 3 s (a summary every 3 s at most)"
    )
    # held: the second reconnection, the third and fourth drops and reconnections; a summary may come between
    assert texts[-1].startswith(f"user stream {stream.name} stayed connected 3 s after flapping ("), texts
    assert all(" still flapping: " in t for t in texts[3:-1]), texts
    assert registry.get_sample_value("tradebus_user_stream_disconnects_total", {"stream": stream.name}) == 4


async def test_a_user_stream_that_fails_for_good_stops_the_live_daemon_with_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The account's key is revoked while the daemon runs: the user stream's reconnection is refused
    (fatal) and the stream stops for good. The daemon went on trading blind to its fills and order
    events (its ``/health`` 200) and dropped the error at the stop; it stops on the credentials' error (exit 2),
    met by the stream's reconnection or by a request of the reconciliation, whichever comes first."""
    from tradebus.execution.live import CredentialsRefused

    with pytest.raises(CredentialsRefused, match=r"the venue refused the account's credentials.*-2015"):
        async with _daemon(tmp_path, monkeypatch) as (node, emulator, api, task):
            await until(lambda: any(s.authed for s in emulator.sessions), timeout=5)
            emulator.key = "revoked"  # every request with the daemon's key is refused from now on
            await emulator.sessions[0].ws.close(code=1011, message=b"internal error")
            await until(task.done, timeout=15)
    assert "the venue refused the account's credentials" in node.summary.stop_reason
    stopped = [t for t in api.texts(OPERATOR) if t.startswith("tradebus live daemon stopped: ")]
    assert len(stopped) == 1 and "the venue refused the account's credentials" in stopped[0]


async def test_health_is_503_while_the_live_daemon_s_user_stream_is_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The venue's private endpoint goes away and every reconnection of the user stream fails: the
    daemon sees no fill and no order event, yet ``/health`` answered 200 (it looked at the feeds only)."""
    async with _daemon(tmp_path, monkeypatch, health=True) as (node, emulator, _, _task):
        await until(lambda: node.kernel.result.trades > 0 and node.guard.holds == {}, timeout=10)
        async with httpx.AsyncClient(timeout=5.0) as http:
            up = await http.get(_health_url(node))
            await emulator.stop()  # the private endpoint goes away: reconnections are refused
            await until(lambda: not node.stream.connected.is_set(), timeout=5)
            down = await http.get(_health_url(node))
    assert up.status_code == 200, up.json()
    assert up.json()["user_streams"] == {"binance-user": {"connected": True, "subscribed": True}}
    assert down.status_code == 503
    report = down.json()
    assert report["user_streams"] == {"binance-user": {"connected": False, "subscribed": False}}
    assert report["problems"] == ["user stream binance-user not connected"]


async def test_health_is_503_while_the_venue_has_not_confirmed_the_user_stream_s_subscription(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The venue leaves the user stream's subscription unconfirmed past ``live.request_timeout``: the
    daemon goes on, no order event reaches it, yet ``/health`` answered 200 (the stream was connected)."""
    async with _daemon(tmp_path, monkeypatch, health=True, hold=True) as (node, emulator, _, _task):
        await until(lambda: node.kernel.result.trades > 0 and node.guard.holds == {}, timeout=10)
        async with httpx.AsyncClient(timeout=5.0) as http:
            unconfirmed = await http.get(_health_url(node))
            assert emulator.hold_frames is not None
            emulator.hold_frames.set()  # the venue confirms it now
            await until(node.stream.subscribed.is_set, timeout=5)
            confirmed = await http.get(_health_url(node))
    assert unconfirmed.status_code == 503, unconfirmed.json()
    report = unconfirmed.json()
    assert report["user_streams"] == {"binance-user": {"connected": True, "subscribed": False}}
    assert report["problems"] == ["user stream binance-user: subscription not confirmed by the venue"]
    assert confirmed.status_code == 200, confirmed.json()
    assert confirmed.json()["user_streams"] == {"binance-user": {"connected": True, "subscribed": True}}


class _Tap:
    """A gate of the public server letting through as many trades as allowed so far."""

    def __init__(self, allowed: int) -> None:
        self.allowed = allowed
        self.passed = 0
        self._more = asyncio.Event()

    async def __call__(self, frame: str) -> None:
        while self.passed >= self.allowed:
            self._more.clear()
            await self._more.wait()
        self.passed += 1

    def let(self, n: int = 1) -> None:
        self.allowed += n
        self._more.set()


async def test_flatten_closes_a_live_spot_position(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``/flatten`` on a live spot daemon sent reduce-only orders, which no venue's spot API has: each was
    rejected before it left ("reduce_only: Binance spot has no reduce-only orders") and nothing was sold."""
    tap = _Tap(2)
    async with _daemon(tmp_path, monkeypatch, gate=tap) as (node, emulator, _, _task):
        kernel = node.kernel
        assert node.ops is not None
        await until(lambda: kernel.result.trades == 2 and node.guard.holds == {}, timeout=10)
        now = node.clock.now_ns()
        kernel.submit(SubmitOrder("s", IID, "buy-1", OrderSide.BUY, 0.01, now, now, OrderType.MARKET))
        await until(lambda: kernel.orders.get("buy-1").status is OrderStatus.ACCEPTED, timeout=5)
        tap.let()  # the next trade fills it
        await until(lambda: kernel.portfolio.position(IID) == pytest.approx(0.01), timeout=5)
        reply = await node.ops.command("/flatten", OPERATOR)
        (order,) = [o for o in kernel.orders.orders() if o.strategy_id == "ops"]
        await until(lambda: order.status not in (OrderStatus.INITIALIZED, OrderStatus.SUBMITTED), timeout=5)
        tap.let()
        await until(lambda: order.status in (OrderStatus.FILLED, OrderStatus.REJECTED), timeout=5)
    assert reply == f"trading state REDUCING; flatten orders: {order.client_order_id}: SELL 0.01 {IID}"
    assert order.status is OrderStatus.FILLED, (order.status, order.reason)
    assert order.client_order_id in emulator.orders
    assert kernel.portfolio.position(IID) == 0.0


async def test_flatten_of_a_live_daemon_cancels_its_resting_orders_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``/flatten`` of a live long 0.01 with a resting SELL LIMIT 0.01 (a take-profit) sent a closing order the
    risk gate denied ("trading_state: REDUCING allows only reducing orders; ... working on the order's side
    -0.01") and canceled nothing; it now cancels both resting orders at the venue, waits for the venue's
    confirmations, then sells."""
    tap = _Tap(2)
    async with _daemon(tmp_path, monkeypatch, gate=tap) as (node, emulator, _, _task):
        kernel = node.kernel
        assert node.ops is not None
        await until(lambda: kernel.result.trades == 2 and node.guard.holds == {}, timeout=10)
        now = node.clock.now_ns()
        kernel.submit(SubmitOrder("s", IID, "buy-1", OrderSide.BUY, 0.01, now, now, OrderType.MARKET))
        await until(lambda: kernel.orders.get("buy-1").status is OrderStatus.ACCEPTED, timeout=5)
        tap.let()  # the next trade fills it
        await until(lambda: kernel.portfolio.position(IID) == pytest.approx(0.01), timeout=5)
        last = kernel.portfolio.last_price(IID)
        now = node.clock.now_ns()
        kernel.submit(SubmitOrder("s", IID, "tp-1", OrderSide.SELL, 0.01, now, now, OrderType.LIMIT, price=round(last * 1.2, 2)))
        kernel.submit(SubmitOrder("s", IID, "buy-2", OrderSide.BUY, 0.01, now, now, OrderType.LIMIT, price=round(last * 0.8, 2)))
        resting = [kernel.orders.get("tp-1"), kernel.orders.get("buy-2")]
        await until(lambda: all(o.status is OrderStatus.ACCEPTED for o in resting), timeout=5)
        reply = await node.ops.command("/flatten", OPERATOR)
        (order,) = [o for o in kernel.orders.orders() if o.strategy_id == "ops"]
        await until(lambda: order.status not in (OrderStatus.INITIALIZED, OrderStatus.SUBMITTED), timeout=5)
        tap.let()
        await until(lambda: order.status in (OrderStatus.FILLED, OrderStatus.REJECTED), timeout=5)
    assert reply == f"trading state REDUCING; canceled 2: tp-1, buy-2; flatten orders: {order.client_order_id}: SELL 0.01 {IID}"
    assert [o.status for o in resting] == [OrderStatus.CANCELED, OrderStatus.CANCELED]
    assert order.status is OrderStatus.FILLED, (order.status, order.reason)
    assert kernel.portfolio.position(IID) == 0.0


async def test_flatten_buys_nothing_back_when_a_spot_run_sold_coins_of_its_starting_balance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A live spot run that sold 0.01 of its 0.05 starting BTC holds -0.01 of the instrument: ``/flatten`` sent a
    BUY 0.01 at market (buying BTC while flattening; live-kill --flatten sells only, "spot holds no shorts")."""
    tap = _Tap(2)
    async with _daemon(tmp_path, monkeypatch, gate=tap) as (node, emulator, _, _task):
        kernel = node.kernel
        assert node.ops is not None
        await until(lambda: kernel.result.trades == 2 and node.guard.holds == {}, timeout=10)
        now = node.clock.now_ns()
        kernel.submit(SubmitOrder("s", IID, "sell-1", OrderSide.SELL, 0.01, now, now, OrderType.MARKET))
        await until(lambda: kernel.orders.get("sell-1").status is OrderStatus.ACCEPTED, timeout=5)
        tap.let()  # the next trade fills it
        await until(lambda: kernel.portfolio.position(IID) == pytest.approx(-0.01), timeout=5)
        reply = await node.ops.command("/flatten", OPERATOR)
        flatten_orders = [o for o in kernel.orders.orders() if o.strategy_id == "ops"]
    assert reply == (
        f"trading state REDUCING; flatten orders: none ({IID}: spot position -0.01 is coins of the starting "
        "balances sold; a buy would add to the 0.04 BTC held)"
    )
    assert flatten_orders == []
    assert kernel.portfolio.spot_holding("BTC") == pytest.approx(0.04)


def _resting_buy_node(tmp_path: Path, emulator: BinancePrivateEmulator, srv: Any, api: FakeBotApi, **live: Any) -> LiveNode:
    """A live daemon whose strategy rests a limit buy far below the market (``live``: settings of its ``live:``),
    alerting ``OPERATOR`` through ``api`` (no commands); not yet running."""
    data = live_config_data(tmp_path, emulator, srv, [resting("steady")], **live)
    data["ops"] = {"telegram": {"chat_ids": [OPERATOR], "base_url": api.base_url, "commands": False,
                                "token_env": "TB_TEST_LIVE_TOKEN"}}  # fmt: skip
    return LiveNode(parse_live_config(data, "<test>"), ApiKeys(SecretStr(KEY), SecretStr(SECRET)), handle_signals=False)


def _before_the_stop_alert(api: FakeBotApi) -> str:
    """The operator's alert just before the stop alert (checked to be the last one)."""
    texts = api.texts(OPERATOR)
    assert texts[-1].startswith("tradebus live daemon stopped: test done\n"), texts
    assert len(texts) >= 2, texts
    return texts[-2]


async def test_a_live_daemon_stopping_with_an_order_left_open_at_the_venue_says_so_to_its_operator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``live.cancel_on_stop`` whose cancel the venue never answered: the order is left working at the venue and
    ``tradebus live`` exits 4, but Telegram said only "tradebus live daemon stopped: test done" and the PnL (the
    error was logged, and raised after the alerts had gone): the operator watching the chat was not told."""
    monkeypatch.setenv("TB_TEST_LIVE_TOKEN", TOKEN)
    release = asyncio.Event()
    error: BaseException | None = None
    async with FakeBotApi(TOKEN) as api, account_and_market() as (emulator, srv):
        node = _resting_buy_node(tmp_path, emulator, srv, api, stop_timeout=1.0)
        emulator.rest_faults.append(RestFault("hold", "DELETE", "/api/v3/order", release=release))
        try:
            await run_until_it_stops(node, lambda: placed_and_accepted(node))
        except OrdersLeftAtVenue as exc:
            error = exc
        finally:
            release.set()
    placed = node.kernel.strategies[0].placed  # type: ignore[attr-defined]
    assert isinstance(error, OrdersLeftAtVenue)
    assert _before_the_stop_alert(api) == (
        f"stopping with 1 order(s) open at the venue: ['{placed}']; 0 of unknown state: none. Check them at the "
        "venue (`tradebus live-kill` cancels every open order of the account and halts the journal)"
    )


async def test_a_live_daemon_leaving_an_order_working_by_its_config_tells_its_operator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``live.cancel_on_stop: false``: the daemon stops with its resting buy working at the venue, as asked, and logs
    it; Telegram said only "tradebus live daemon stopped: test done" and the PnL, so the teammate watching the chat
    read a stopped daemon with nothing left working. The stop now alerts the orders left, before the stop alert."""
    monkeypatch.setenv("TB_TEST_LIVE_TOKEN", TOKEN)
    async with FakeBotApi(TOKEN) as api, account_and_market() as (emulator, srv):
        node = _resting_buy_node(tmp_path, emulator, srv, api, cancel_on_stop=False)
        await run_until_it_stops(node, lambda: placed_and_accepted(node))
        working = [rec.order.client_order_id for rec in emulator.open_orders()]
    placed = node.kernel.strategies[0].placed  # type: ignore[attr-defined]
    assert working == [placed]
    assert _before_the_stop_alert(api) == (
        f"stopping with 1 order(s) left working at the venue (live.cancel_on_stop: false): ['{placed}']. Check them at "
        "the venue (`tradebus live-kill` cancels every open order of the account and halts the journal)"
    )
