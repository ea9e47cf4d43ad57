"""Telegram alerts and control against a fake Bot API on 127.0.0.1 (tests/ops/fake_telegram.py).

A paper daemon trades the served USD-M capture with Telegram on: start, fill, state and stop
alerts arrive; commands from a chat outside the allow-list change nothing; ``/halt`` makes the
strategy's orders denied (denial alerts), ``/resume`` re-arms, ``/flatten`` closes the position
with a reduce-only order; the token is in no log line, log file or output.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from loguru import logger

from tradebus.adapters.binance.emulator import BinanceProtocol
from tradebus.adapters.registry import client_id_rules
from tradebus.adapters.common.local_server import Fault, FaultKind, LocalVenueServer
from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import (
    FundingRate,
    Liquidity,
    MarkPrice,
    OrderDenied,
    OrderFilled,
    OrderRejected,
    OrderSide,
    OrderStatus,
    OrderType,
    SubmitOrder,
    Trade,
    TradingState,
)
from tradebus.errors import ConfigError, StrategyError
from tradebus.execution.config import VenueConfig
from tradebus.node.daemon import PaperNode
from tradebus.ops.config import LogConfig, OpsConfig, TelegramConfig
from tradebus.ops.flapping import FlapDetector
from tradebus.ops.hooks import OpsHooks
from tradebus.ops.metrics import DaemonMetrics
from tradebus.risk.config import RiskConfig
from tradebus.strategies.base import Strategy
from tradebus.ops.telegram import MAX_POLL_WAIT, TelegramBot, every_day_at, read_token, seconds_until, split_message

from live.node_testdata import USDM_IID, config_of

from .conftest import USDM_FRAMES, USDM_SNAPSHOT, OnDemand, handled_all, served_usdm, usdm_paper, write_run
from .fake_telegram import FakeBotApi

TOKEN = "123456:AAF-secret-test-token-xyz"
OPERATOR = 4242
STRANGER = 666


async def until(cond: Callable[[], bool], timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def _throttled(parameters: Any) -> tuple[int, Any]:
    """An HTTP 429 (flood control) answer with these ``parameters``."""
    return 429, {"ok": False, "error_code": 429, "description": "Too Many Requests", "parameters": parameters}


async def test_alerts_and_commands_of_a_paper_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TB_TEST_TELEGRAM_TOKEN", TOKEN)
    lines: list[str] = []
    sink = logger.add(lines.append, level="DEBUG", format="{message}")
    log_file = tmp_path / "logs" / "daemon.jsonl"
    feed = OnDemand()  # the capture (~12 s at speed 3) is sent only while a step waits for market data
    try:
        async with FakeBotApi(TOKEN) as api, served_usdm(speed=3.0, on_demand=feed) as srv:
            ops = {
                "port": 0,
                "log": {"file": str(log_file), "serialize": True},
                "telegram": {
                    "chat_ids": [OPERATOR],
                    "token_env": "TB_TEST_TELEGRAM_TOKEN",
                    "base_url": api.base_url,
                    "poll_timeout": 1,
                },
            }
            node = PaperNode(config_of(usdm_paper(srv, ops)), handle_signals=False)
            denied: list[OrderDenied] = []
            node.kernel.bus.subscribe(OrderDenied, denied.append)
            bot = node.ops.telegram  # type: ignore[union-attr]
            assert bot is not None
            risk = node.kernel.risk
            task = asyncio.create_task(node.run())
            try:
                await feed.until(lambda: len(node.kernel.result.fills) >= 2)
                api.push(STRANGER, "/halt")
                await until(lambda: bot.ignored_commands == 1)
                assert risk.state is TradingState.ACTIVE
                for cmd in ("/status", "/positions", "/pnl"):
                    api.push(OPERATOR, cmd)
                await until(lambda: any(t.startswith("equity ") for t in api.texts()))
                api.push(OPERATOR, "/halt")
                await until(lambda: risk.state is TradingState.HALTED)
                await feed.until(lambda: any(d.reason.startswith("trading_state: HALTED") for d in denied))
                await until(lambda: any(t.startswith("denied ") for t in api.texts()))
                api.push(OPERATOR, "/resume")
                await until(lambda: risk.state is TradingState.ACTIVE)
                api.push(OPERATOR, "/flatten")
                await until(lambda: risk.state is TradingState.REDUCING)
                await feed.until(lambda: any(f.client_order_id.startswith("opsxx") for f in node.kernel.result.fills))
                await until(lambda: any(t.startswith("fill opsxx") for t in api.texts()))
            finally:
                node.stop("test done")
                await asyncio.wait_for(task, 20)
        write_run(node, tmp_path / "out")
    finally:
        logger.remove(sink)
    texts = api.texts(OPERATOR)
    assert api.texts(STRANGER) == []
    assert texts[0].startswith("tradebus paper daemon starting")
    assert texts[-1].startswith("tradebus paper daemon stopped: test done")
    assert any(t.startswith("paper daemon healthy") or t.startswith("paper daemon UNHEALTHY") for t in texts)
    assert any("trading state HALTED: operator /halt (telegram chat 4242)" in t for t in texts)
    # (a strategy order still in flight at the /flatten is canceled first, and named before the flatten orders)
    assert any(t.startswith("trading state REDUCING; ") and "flatten orders: opsxx" in t for t in texts)
    strategy_fills = [f for f in node.kernel.result.fills if not f.client_order_id.startswith("opsxx")]
    assert sum(t.startswith("fill TickE") for t in texts) == len(strategy_fills)
    assert node.kernel.portfolio.position(USDM_IID) == 0.0  # flattened, then only reducing orders pass
    assert bot.dropped == 0
    # the token is nowhere: log lines, the JSON log file, the run's outputs
    assert lines and not any(TOKEN in line for line in lines)
    records = [json.loads(line)["record"] for line in log_file.read_text().splitlines()]
    decisions = [r for r in records if r["message"].startswith("decision ")]
    # one line per order decision, the client id as a field: every order of the run has its line
    orders = {o.client_order_id for o in node.kernel.orders.orders()}
    assert {r["extra"]["client_order_id"] for r in decisions} == orders
    assert all(r["message"].split()[1] == r["extra"]["client_order_id"] for r in decisions)
    assert {r["extra"]["decision"] for r in decisions} == {"submitted", "denied"}
    # and the strategy as a field (the flatten's order is the operator's, "ops"): one strategy's decisions by field
    by_id = {o.client_order_id: o.strategy_id for o in node.kernel.orders.orders()}
    assert all(r["extra"]["strategy_id"] == by_id[r["extra"]["client_order_id"]] for r in decisions)
    assert {r["extra"]["strategy_id"] for r in decisions} == {"TickEmaCross", "ops"}
    for path in [log_file, *(tmp_path / "out").iterdir()]:
        assert TOKEN not in path.read_text(errors="replace"), path
    assert "TOKEN" not in repr(bot) and TOKEN not in repr(bot)


async def test_a_slow_bot_api_never_blocks_alerts_and_full_queues_drop_with_a_count() -> None:
    async with FakeBotApi(TOKEN, send_delay=0.5) as api:
        metrics = DaemonMetrics(process=False)
        config = TelegramConfig(chat_ids=[OPERATOR], base_url=api.base_url, queue_size=5, commands=False)
        bot = TelegramBot(config, TOKEN, on_drop=metrics.alerts_dropped.inc)
        await bot.start()
        for n in range(50):  # synchronous: nothing here can wait for the network
            bot.alert("fill", f"alert {n}")
        assert bot.queue.qsize() == 5 and bot.dropped == 45
        assert metrics.registry.get_sample_value("tradebus_alerts_dropped_total") == 45
        await until(lambda: len(api.sent) == 1)  # the sender works through the queue, slowly
        bot.alert("fill", "one more")  # a slot freed up: queued, not dropped
        assert bot.dropped == 45
        await bot.stop(timeout=0.2)  # does not wait for the slow server beyond its timeout
    assert api.texts()[0] == "alert 0"
    assert len(api.sent) <= 3


async def test_a_wrong_token_is_reported_without_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING", format="{message}")
    try:
        async with FakeBotApi("999:right") as api:
            bot = TelegramBot(TelegramConfig(chat_ids=[OPERATOR], base_url=api.base_url, commands=False), TOKEN)
            await bot.start()
            bot.alert("fill", "x")
            await until(lambda: bot.failed == 1)
            await bot.stop()
    finally:
        logger.remove(sink)
    # which setting to fix: the 401 alone (a trial) named neither the token nor its variable
    assert any("sendMessage to chat 4242 failed" in line and "401" in line
               and "the bot token in TRADEBUS_TELEGRAM_TOKEN is not one Telegram knows" in line for line in lines)
    assert not any(TOKEN in line for line in lines)
    monkeypatch.delenv("TRADEBUS_TELEGRAM_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="TRADEBUS_TELEGRAM_TOKEN"):
        read_token(TelegramConfig(chat_ids=[1]))


@pytest.mark.parametrize("token", ["123:abc\ndef", "123:abc\x01def", "123:" + "a" * 70_000])
def test_a_token_that_cannot_be_in_a_url_is_refused_naming_its_variable_not_the_token(
    monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    """httpx raised InvalidURL (no HTTPError) from the first request made with it, which no caller handled."""
    monkeypatch.setenv("TRADEBUS_TELEGRAM_TOKEN", token)
    with pytest.raises(ConfigError) as raised:
        read_token(TelegramConfig(chat_ids=[1]))
    message = str(raised.value)
    assert message.startswith("ops.telegram.token_env: the bot token in the environment variable "
                              "TRADEBUS_TELEGRAM_TOKEN cannot be sent in a Bot API URL"), message
    assert "abc" not in message and "aaa" not in message


async def test_flood_control_is_waited_out_and_the_message_sent() -> None:
    async with FakeBotApi(TOKEN) as api:
        api.throttle = 2
        bot = TelegramBot(TelegramConfig(chat_ids=[OPERATOR], base_url=api.base_url, commands=False), TOKEN)
        await bot.start()
        bot.alert("fill", "after the flood")
        await until(lambda: bot.sent == 1)
        await bot.stop()
    assert api.texts() == ["after the flood"] and bot.throttled == 2 and bot.failed == 0


async def test_an_answer_that_is_not_a_json_object_fails_one_send_not_the_bot() -> None:
    """A Bot API (or a proxy before it) answering a JSON list: ``body.get`` raised AttributeError, which
    killed the sender task; every later alert waited in the queue until it was dropped."""
    async with FakeBotApi(TOKEN) as api:
        api.garble = 1
        bot = TelegramBot(TelegramConfig(chat_ids=[OPERATOR], base_url=api.base_url, commands=False), TOKEN)
        await bot.start()
        bot.alert("fill", "lost to the garbled answer")
        await until(lambda: bot.failed == 1)
        bot.alert("fill", "after it")
        await until(lambda: bot.sent == 1)
        await bot.stop()
    assert api.texts() == ["after it"]


async def test_an_error_no_rule_foresaw_in_the_sender_is_logged_and_counted_and_later_alerts_are_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An error no ``except`` of the sender took (it was a 429 whose ``parameters`` is not an object, now read
    as naming no wait; here a call raising AttributeError): the sender task ended without a log line and
    every later alert waited in the queue, unsent."""
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING", format="{message}")
    try:
        async with FakeBotApi(TOKEN) as api:
            hooks = _ops_bot(api, monkeypatch)
            bot = hooks.telegram
            assert bot is not None
            post = bot._post  # noqa: SLF001
            odd = [AttributeError("'str' object has no attribute 'get'")]

            async def once_odd(method: str, payload: dict[str, Any]) -> Any:
                if odd:
                    raise odd.pop()
                return await post(method, payload)

            monkeypatch.setattr(bot, "_post", once_odd)
            await bot.start()
            bot.alert("fill", "lost to the odd answer")
            await until(lambda: bot.failed == 1)
            bot.alert("fill", "after it")
            await until(lambda: bot.sent == 1)
            await bot.stop()
    finally:
        logger.remove(sink)
    assert api.texts() == ["after it"]
    assert hooks.metrics.registry.get_sample_value("tradebus_alerts_failed_total") == 1
    errors = [line for line in lines if "AttributeError" in line]
    assert len(errors) == 1 and "chat 4242" in errors[0] and "not delivered" in errors[0], lines
    assert not any(TOKEN in line for line in lines)


async def test_an_alert_given_a_429_with_unusable_parameters_waits_the_backoff_and_is_delivered() -> None:
    """A 429 whose ``parameters`` is a string: ``.get`` raised AttributeError and the alert was lost."""
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING", format="{message}")
    try:
        async with FakeBotApi(TOKEN) as api:
            api.answers += [_throttled("retry later"), _throttled(None)]
            config = TelegramConfig(chat_ids=[OPERATOR], base_url=api.base_url, commands=False, retry_delay=0.01)
            bot = TelegramBot(config, TOKEN)
            await bot.start()
            bot.alert("fill", "after the odd answer")
            await until(lambda: bot.sent + bot.failed == 1)
            await bot.stop()
    finally:
        logger.remove(sink)
    assert api.texts() == ["after the odd answer"]
    assert (bot.retried, bot.throttled, bot.failed, bot.malformed_429) == (2, 0, 0, 1)  # a null is no surprise
    assert sum("answered 429" in line for line in lines) == 1 and not any(TOKEN in line for line in lines)


async def test_two_daemons_polling_one_bot_token_get_one_warning_naming_the_conflict_each_and_go_on() -> None:
    """Telegram ends a ``getUpdates`` long poll with 409 Conflict when another process polls the same token:
    each 409 was logged as a failed getUpdates retried, every few seconds for as long as both ran, never
    saying why."""
    lines: list[str] = []
    sink = logger.add(lines.append, level="INFO", format="{level} {message}")

    async def quick(seconds: float) -> None:  # the poller's backoff, shortened: many conflicts in little time
        await asyncio.sleep(min(seconds, 0.02))

    try:
        async with FakeBotApi(TOKEN) as api:
            # Each long poll waits (up to 30 s) until the other bot's ends it: with the fake's 0.2 s, a loaded machine
            # taking longer to send the other's next poll ended every wait empty-handed, or one bot's only.
            api.poll_wait = math.inf
            config = TelegramConfig(chat_ids=[OPERATOR], base_url=api.base_url, poll_timeout=30)
            bots = [TelegramBot(config, TOKEN, on_command=lambda text, chat: "pong", sleep=quick) for _ in range(2)]
            for bot in bots:
                await bot.start()
            await until(lambda: api.conflicts >= 6, 60.0)
            api.push(OPERATOR, "/ping")  # still answered, by whichever bot reads it
            await until(lambda: "pong" in api.texts(OPERATOR), 60.0)
            assert all(not task.done() for bot in bots for task in bot._tasks)  # noqa: SLF001
            for bot in bots:
                await bot.stop()
    finally:
        logger.remove(sink)
    about_it = [line for line in lines if "409" in line or "onflict" in line]
    assert len(about_it) == 2, about_it  # one warning per daemon, however many conflicts
    assert all(line.startswith("WARNING telegram: another process reads this bot's updates (") for line in about_it)
    assert all("terminated by other getUpdates request" in line and "token_env" in line for line in about_it)
    assert not any(TOKEN in line for line in lines)
    assert all(bot.conflicts >= 1 for bot in bots)  # each was ended by the other (and counted it)


def _ops_bot(api: FakeBotApi, monkeypatch: pytest.MonkeyPatch, **telegram: Any) -> OpsHooks:
    """The ops hooks of a daemon whose Telegram is ``api`` (retries every 10 ms at most)."""
    monkeypatch.setenv("TB_TEST_TELEGRAM_TOKEN", TOKEN)
    block = {"chat_ids": [OPERATOR], "token_env": "TB_TEST_TELEGRAM_TOKEN", "base_url": api.base_url,
             "commands": False, "retry_delay": 0.01, **telegram}  # fmt: skip
    return OpsHooks(OpsConfig.model_validate({"telegram": block}))


async def test_a_send_failing_with_5xx_is_retried_and_delivered(monkeypatch: pytest.MonkeyPatch) -> None:
    """An HTTP 502 (a proxy's HTML page) lost the alert: it was counted in ``failed`` only, never sent again."""
    async with FakeBotApi(TOKEN) as api:
        api.fail = 2
        hooks = _ops_bot(api, monkeypatch)
        bot = hooks.telegram
        assert bot is not None
        await bot.start()
        bot.alert("fill", "after two 502s")
        await until(lambda: bot.sent == 1 or bot.failed == 1)
        await bot.stop()
    assert api.texts() == ["after two 502s"]
    assert (bot.retried, bot.failed) == (2, 0)
    assert api.requests == ["sendMessage"] * 3
    assert hooks.metrics.registry.get_sample_value("tradebus_alerts_failed_total") == 0


async def test_a_send_always_failing_is_retried_a_bounded_number_of_times_and_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with FakeBotApi(TOKEN) as api:
        api.fail, api.fail_status = 10**6, 503
        hooks = _ops_bot(api, monkeypatch, send_retries=3)
        bot = hooks.telegram
        assert bot is not None
        await bot.start()
        bot.alert("fill", "never delivered")
        bot.alert("fill", "nor this one")
        await until(lambda: bot.failed == 2)
        await bot.stop()
    assert api.sent == [] and bot.retried == 6
    assert api.requests == ["sendMessage"] * 8  # 1 + 3 retries per alert, then the next alert
    assert hooks.metrics.registry.get_sample_value("tradebus_alerts_failed_total") == 2
    assert b"tradebus_alerts_failed_total 2.0" in hooks.metrics.exposition()


async def test_a_bot_api_that_cannot_be_reached_is_retried_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    async with FakeBotApi(TOKEN) as api:
        base_url = api.base_url  # nothing listens there once the fake API is gone
    lines: list[str] = []
    sink = logger.add(lines.append, level="INFO", format="{message}")
    try:
        hooks = _ops_bot(api, monkeypatch, send_retries=2)
        bot = hooks.telegram
        assert bot is not None and bot.config.base_url == base_url
        await bot.start()
        bot.alert("fill", "nobody there")
        await until(lambda: bot.failed == 1)
        await bot.stop()
    finally:
        logger.remove(sink)
    assert bot.retried == 2
    assert hooks.metrics.registry.get_sample_value("tradebus_alerts_failed_total") == 1
    assert sum("ConnectError" in line and "retry" in line for line in lines) == 2
    assert any("message not delivered: ConnectError" in line for line in lines)
    assert not any(TOKEN in line for line in lines)


async def test_alerts_still_queued_at_the_stop_are_counted_and_logged_as_not_delivered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Bot API down when the daemon stops: the stop alert and those before it were cancelled with the
    sender, in no count and no log line (only ``dropped`` was reported at the stop)."""
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING", format="{message}")
    try:
        async with FakeBotApi(TOKEN) as api:
            api.fail = 10**6
            hooks = _ops_bot(api, monkeypatch, retry_delay=60.0)
            bot = hooks.telegram
            assert bot is not None
            await bot.start()
            for n in range(3):
                bot.alert("lifecycle", f"alert {n}")
            await until(lambda: bot.retried == 1)  # the first is being retried, two wait in the queue
            await bot.stop(timeout=0.2)
    finally:
        logger.remove(sink)
    assert api.sent == [] and bot.failed == 3 and bot.queue.empty()
    assert hooks.metrics.registry.get_sample_value("tradebus_alerts_failed_total") == 3
    assert "telegram: 3 message(s) not delivered before the stop\n" in lines


async def test_a_shutdown_that_raises_still_sends_the_stop_alert_and_closes_the_ops_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The ops layer stopped last in the shutdown, outside any ``finally``: a shutdown step that raised
    skipped it, so the operator never got the stop alert and ``/health`` kept listening."""
    monkeypatch.setenv("TB_TEST_TELEGRAM_TOKEN", TOKEN)
    async with FakeBotApi(TOKEN) as api:
        ops = {"port": 0, "telegram": {"chat_ids": [OPERATOR], "token_env": "TB_TEST_TELEGRAM_TOKEN",
                                       "base_url": api.base_url, "commands": False}}  # fmt: skip
        nowhere = type("S", (), {"ws_url": "ws://127.0.0.1:9", "http_url": "http://127.0.0.1:9"})()
        node = PaperNode(config_of(usdm_paper(nowhere, ops)), handle_signals=False)
        assert node.ops is not None

        def close_failing() -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(node.venue, "close", close_failing)
        task = asyncio.create_task(node.run())
        try:
            await until(lambda: node.running.is_set())
            assert node.ops.server is not None
            port = node.ops.server.port
        finally:
            node.stop("test done")
            with pytest.raises(OSError, match="No space left"):
                await asyncio.wait_for(task, 20)
    stopped = [t for t in api.texts(OPERATOR) if "daemon stopped" in t]
    assert len(stopped) == 1, api.texts()
    assert stopped[0].startswith(
        "tradebus paper daemon stopped: test done; the shutdown failed: OSError: [Errno 28] No space left on device\n"
    )
    assert node.ops.telegram is not None and node.ops.telegram.queue.empty()
    with pytest.raises(OSError):  # nothing listens there any more
        await asyncio.open_connection("127.0.0.1", port)


async def test_a_log_file_that_cannot_be_written_is_alerted_and_counted_in_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ops.log.file`` on a full disk (``/dev/full``, ENOSPC at every write): the daemon logged one ERROR on stderr
    and counted its failed writes nowhere the operator looks; now the ERROR's text is a Telegram alert (once) and
    ``/metrics``' ``tradebus_log_write_failures_total`` counts every write that failed."""
    monkeypatch.setenv("TB_TEST_TELEGRAM_TOKEN", TOKEN)
    log = tmp_path / "daemon.log"
    log.symlink_to("/dev/full")
    lines: list[str] = []
    sink = logger.add(lines.append, level="INFO", format="{level} {message}")
    try:
        async with FakeBotApi(TOKEN) as api:
            ops = {"port": 0, "log": {"file": str(log)},
                   "telegram": {"chat_ids": [OPERATOR], "token_env": "TB_TEST_TELEGRAM_TOKEN", "base_url": api.base_url,
                                "commands": False}}  # fmt: skip
            nowhere = type("S", (), {"ws_url": "ws://127.0.0.1:9", "http_url": "http://127.0.0.1:9"})()
            node = PaperNode(config_of(usdm_paper(nowhere, ops)), handle_signals=False)
            assert node.ops is not None
            task = asyncio.create_task(node.run())
            try:
                await until(lambda: node.running.is_set())
                assert node.ops.server is not None
                told = f"ops.log.file: cannot write {log} (No space left on device)"
                await until(lambda: any(t.startswith(told) for t in api.texts(OPERATOR)))
                logger.info("one more line for the log file")
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.ops.server.port}", timeout=60) as http:
                    scrape = (await http.get("/metrics")).text
                after_scrape = len(lines)
            finally:
                node.stop("test done")
                await asyncio.wait_for(task, 60)
    finally:
        logger.remove(sink)
    (failed,) = [float(line.split()[1]) for line in scrape.splitlines()
                 if line.startswith("tradebus_log_write_failures_total ")]
    # each line logged from the sink's first ("logging to ...") on, but the ERROR the sink keeps out of itself: at
    # least those up to the test's own line, at most those up to the scrape's answer
    first = lines.index(f"INFO logging to {log} (json: False, rotation 100 MB, retention 14 days)\n")
    own = lines.index("INFO one more line for the log file\n")
    assert own - first <= failed <= after_scrape - first - 1, (failed, lines[first:])
    alerts = [t for t in api.texts(OPERATOR) if "ops.log.file" in t]
    assert alerts == [f"{told}: its lines are not written until it can be (logging to stderr goes on)"], alerts


def test_daily_summary_schedule() -> None:
    at = dt.datetime(2026, 12, 3, 23, 30, tzinfo=dt.UTC)
    assert seconds_until("00:00", at) == 30 * 60
    assert seconds_until("23:45", at) == 15 * 60
    assert seconds_until("23:30", at) == 24 * 3600  # exactly now: the next day's
    cet = dt.timezone(dt.timedelta(hours=1))
    assert seconds_until("00:00", dt.datetime(2026, 12, 4, 0, 30, tzinfo=cet)) == 30 * 60  # 23:30 UTC


class _Daemon:
    """The little of a daemon the operator's commands act on: a kernel."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.feeds: list[Any] = []
        self.running = asyncio.Event()
        self.warming_up = False
        self.running.set()

    def stop(self, reason: str = "") -> None:
        """Nothing to stop."""


async def _started_hooks(api: FakeBotApi, kernel: Kernel, **telegram: Any) -> OpsHooks:
    """Ops hooks alerting ``OPERATOR`` through ``api`` (no commands; ``telegram``: more settings), started on a
    :class:`_Daemon` of ``kernel``."""
    config = TelegramConfig(chat_ids=[OPERATOR], base_url=api.base_url, token_env="TB_TEST_TELEGRAM_TOKEN",
                            commands=False, **telegram)  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TB_TEST_TELEGRAM_TOKEN", TOKEN)
        hooks = OpsHooks(OpsConfig(telegram=config))
    await hooks.start(_Daemon(kernel))  # type: ignore[arg-type]
    return hooks


async def test_a_flatten_order_the_risk_gate_denies_is_answered_as_denied() -> None:
    """``/flatten`` answered "flatten orders: ops-...: SELL 0.1 BTCUSDT.BINANCE" for an order the risk
    gate had denied (larger than max_order_quantity): the operator read the position as being closed."""
    inst = Instrument("BINANCE", "BTCUSDT", base="BTC", quote="USDT", tick_size=0.01, lot_size=1e-5, margin=True)
    iid = inst.instrument_id
    kernel = Kernel([inst], initial_cash=10_000.0, risk_config=RiskConfig(max_order_quantity=0.05))
    kernel.start()
    kernel.process(Trade(iid, 1, 1, 60_000.0, 1.0, 1, "1"))
    kernel.portfolio.apply_fill(
        OrderFilled("s", iid, "c1", "v1", "t1", OrderSide.BUY, 0.1, 60_000.0, 0.0, Liquidity.TAKER, 1, 1)
    )
    hooks = OpsHooks(OpsConfig())
    hooks.target = _Daemon(kernel)
    reply = await hooks.command("/flatten", OPERATOR)
    (order,) = [o for o in kernel.orders.orders() if o.strategy_id == "ops"]
    assert order.status is OrderStatus.DENIED
    assert reply == (
        f"trading state REDUCING; flatten orders: {order.client_order_id}: SELL 0.1 {iid} "
        "DENIED (max_order_quantity: 0.1 > 0.05)"
    )


async def test_a_flatten_order_on_okx_carries_an_id_okx_takes() -> None:
    """``/flatten`` of an OKX position answered "ops-1796468657736582224-1: SELL 0.1 BTC-USDT.OKX DENIED (client
    order id ... breaks the venue's rule (OKX clOrdId: 1-32 letters and digits))": the flatten order's id was
    made up by the ops layer with dashes, which OKX refuses; it is now an id of the run's issuer, legal on every venue."""
    inst = Instrument("OKX", "BTC-USDT", base="BTC", quote="USDT", tick_size=0.1, lot_size=1e-8, margin=True)
    iid = inst.instrument_id
    kernel = Kernel([inst], initial_cash=10_000.0, venue_config=VenueConfig(fill_on="trades"),
                    client_id_rules=client_id_rules([inst]))
    kernel.start()
    kernel.process(Trade(iid, 1, 1, 60_000.0, 1.0, 1, "1"))
    kernel.portfolio.apply_fill(
        OrderFilled("s", iid, "c1", "v1", "t1", OrderSide.BUY, 0.1, 60_000.0, 0.0, Liquidity.TAKER, 1, 1)
    )
    hooks = OpsHooks(OpsConfig())
    hooks.target = _Daemon(kernel)
    reply = await hooks.command("/flatten", OPERATOR)
    (order,) = [o for o in kernel.orders.orders() if o.strategy_id == "ops"]
    assert order.status is OrderStatus.SUBMITTED
    assert reply == f"trading state REDUCING; flatten orders: {order.client_order_id}: SELL 0.1 {iid}"
    kernel.process(Trade(iid, 2, 2, 60_000.0, 1.0, 2, "2"))
    assert kernel.portfolio.position(iid) == 0.0


async def test_a_command_addressed_to_another_bot_is_not_ours_to_act_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """In a group chat with several bots, ``/halt@OtherBot`` halted our daemon (the command name was the
    text before ``@``, whoever it named): only a bare command or one naming our bot (``getMe``) may act."""
    group = -1001234567890
    inst = Instrument("BINANCE", "BTCUSDT", base="BTC", quote="USDT", tick_size=0.01, lot_size=1e-5)
    kernel = Kernel([inst], initial_cash=10_000.0)
    async with FakeBotApi(TOKEN, username="tradebus_ops_bot") as api:
        hooks = _ops_bot(api, monkeypatch, chat_ids=[group], commands=True, poll_timeout=1)
        hooks.target = _Daemon(kernel)
        bot = hooks.telegram
        assert bot is not None
        await bot.start()
        try:
            api.push(group, "/halt@OtherBot")
            api.push(group, "/pnl@Tradebus_Ops_Bot")  # usernames are case-insensitive
            await until(lambda: any(t.startswith("equity ") for t in api.texts()))
            state_after_other = kernel.risk.state
            api.push(group, "/halt@tradebus_ops_bot now")
            await until(lambda: kernel.risk.state is TradingState.HALTED)
            state_after_ours = kernel.risk.state
            api.push(group, "/resume")
            await until(lambda: api.texts()[-1] == "trading state: ACTIVE")
        finally:
            await bot.stop()
    assert state_after_other is TradingState.ACTIVE
    assert state_after_ours is TradingState.HALTED
    assert kernel.risk.state is TradingState.ACTIVE
    pnl, halted, resumed = api.texts(group)
    assert pnl.startswith("equity ") and halted == "trading state: HALTED" and resumed == "trading state: ACTIVE"
    assert api.requests[0] == "getMe" and api.requests.count("getMe") == 1


class _WallClock:
    """A UTC wall clock that a sleep moves forward by ``rate`` times the time slept plus ``late`` seconds
    (the event loop's wake-up latency); the sleep ends the run (:class:`_Horizon`) once it passes ``until``."""

    def __init__(self, start: dt.datetime, until: dt.datetime, rate: float = 1.0, late: float = 0.001) -> None:
        self.wall = start
        self.until = until
        self.rate = rate
        self.late = late

    def now(self) -> dt.datetime:
        return self.wall

    async def sleep(self, seconds: float) -> None:
        assert seconds >= 0.0
        self.wall += dt.timedelta(seconds=seconds * self.rate + self.late)
        if self.wall > self.until:
            raise _Horizon


class _Horizon(Exception):
    """The fake wall clock reached the end of the test."""


@pytest.mark.parametrize(
    ("rate", "step_back"),
    [
        (1.0 - 5e-4, 0.0),  # the wall clock slewed behind the monotonic one (at NTP's most, 500 ppm)
        (1.0 + 5e-4, 0.0),  # slewed ahead
        (1.0, 2 * 3600.0),  # stepped back two hours just after the first summary
    ],
)
async def test_the_daily_summary_is_sent_once_per_utc_day_at_or_after_its_time(rate: float, step_back: float) -> None:
    """A wall clock slewed behind woke the daily summary a little before HH:MM; it sent, found
    HH:MM a fraction of a second away and sent again (and a clock stepped back sent a second one)."""
    start = dt.datetime(2026, 12, 3, 9, 15, tzinfo=dt.UTC)
    clock = _WallClock(start, start + dt.timedelta(days=4), rate=rate)
    sent: list[dt.datetime] = []

    def send() -> None:
        sent.append(clock.now())
        if len(sent) == 1:
            clock.wall -= dt.timedelta(seconds=step_back)

    with pytest.raises(_Horizon):
        await every_day_at("12:30", send, clock.now, clock.sleep)
    assert [t.date() for t in sent] == [dt.date(2026, 12, d) for d in (3, 4, 5, 6)], sent
    assert all(t.time() >= dt.time(12, 30) for t in sent), sent


async def test_a_halted_daemon_alerts_a_series_of_denials_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every order of a halted daemon is denied: one alert for the series, one counting the rest when it ends."""
    monkeypatch.setenv("TB_TEST_TELEGRAM_TOKEN", TOKEN)
    feed = OnDemand()  # the capture (~2 s at speed 20) waits for the halt
    async with FakeBotApi(TOKEN) as api, served_usdm(speed=20.0, on_demand=feed) as srv:
        ops = {"telegram": {"chat_ids": [OPERATOR], "token_env": "TB_TEST_TELEGRAM_TOKEN", "base_url": api.base_url,
                            "commands": False}}  # fmt: skip
        node = PaperNode(config_of(usdm_paper(srv, ops)), handle_signals=False)
        denied: list[OrderDenied] = []
        node.kernel.bus.subscribe(OrderDenied, denied.append)
        task = asyncio.create_task(node.run())
        try:
            await until(lambda: node.running.is_set())
            node.kernel.risk.set_state(TradingState.HALTED, "operator test")
            await feed.until(lambda: len(denied) >= 3)
            feed.release()  # the rest of the capture, halted: every frame handled before the daemon is active again
            await handled_all(srv, node)
            node.kernel.risk.set_state(TradingState.ACTIVE, "operator test over")
            await until(lambda: any(" more order(s) on " in t for t in api.texts()))
        finally:
            node.stop("test done")
            await asyncio.wait_for(task, 20)
    assert not node.kernel.result.fills
    texts = api.texts(OPERATOR)
    firsts = [t for t in texts if t.startswith("denied ")]
    rest = [t for t in texts if " more order(s) on " in t]
    labels = {(d.instrument_id, d.reason.partition(":")[0]) for d in denied}
    assert len(firsts) == len(labels) and len(rest) <= len(labels)
    assert len(firsts) + sum(int(t.split()[0]) for t in rest) == len(denied)
    halted = [d for d in denied if d.reason.startswith("trading_state: HALTED")]
    assert len(halted) >= 3
    assert f"denied {halted[0].client_order_id}: {halted[0].reason}" in firsts
    assert f"{len(halted) - 1} more order(s) on {USDM_IID} denied (trading_state), not alerted one by one" in rest
    assert node.ops.metrics.registry.get_sample_value(  # type: ignore[union-attr]
        "tradebus_order_denials_total", {"reason": "trading_state"}
    ) == sum(d.reason.startswith("trading_state") for d in denied)


async def test_a_dropped_feed_is_alerted_down_and_up_once_and_its_first_connection_not_at_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TB_TEST_TELEGRAM_TOKEN", TOKEN)
    drop = Fault(FaultKind.DROP, at=400)  # 2.7 s into the capture: 1.3 s into the connection at speed 2
    async with FakeBotApi(TOKEN) as api, LocalVenueServer(
        BinanceProtocol(USDM_SNAPSHOT, futures=True), USDM_FRAMES[:600], [drop], speed=2.0, lifetime=120.0
    ) as srv:
        ops = {"telegram": {"chat_ids": [OPERATOR], "token_env": "TB_TEST_TELEGRAM_TOKEN", "base_url": api.base_url,
                            "commands": False}}  # fmt: skip
        data = usdm_paper(srv, ops)
        # down for at least 1.5 s: longer than the 0.5 s the connection watcher polls at
        data["feeds"][0]["backoff"] = {"base": 1.5, "cap": 1.5, "min_delay": 1.5}
        node = PaperNode(config_of(data), handle_signals=False)
        task = asyncio.create_task(node.run())
        try:
            await until(lambda: any("connected again" in t for t in api.texts()), 60.0)
        finally:
            node.stop("test done")
            await asyncio.wait_for(task, 20)
    feed = node.feeds[0].name
    texts = [t for t in api.texts(OPERATOR) if t.startswith(f"feed {feed}")]
    assert len(texts) == 2 and texts[1] == f"feed {feed} connected again (connection 2)"
    assert texts[0].startswith(f"feed {feed} disconnected (ConnectionClosedError: ") and texts[0].endswith("; reconnecting")


async def test_a_feed_dropped_and_reconnected_within_milliseconds_is_alerted_and_counted_every_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Three drops each followed by an immediate reconnect: the connection watcher polled twice a
    second, saw the feed connected every time and alerted nothing (nor counted a disconnect)."""
    monkeypatch.setenv("TB_TEST_TELEGRAM_TOKEN", TOKEN)
    drops = [Fault(FaultKind.DROP, at=100, connection=n) for n in range(3)]
    # unpaced, each connection starts where the one before left the capture: at 20x its pace, a loaded machine slow
    # to reconnect let the capture print on, and the third connection's 100th frame never came (nor a fourth)
    async with FakeBotApi(TOKEN) as api, LocalVenueServer(
        BinanceProtocol(USDM_SNAPSHOT, futures=True), USDM_FRAMES[:1200], drops, lifetime=120.0
    ) as srv:
        ops = {"telegram": {"chat_ids": [OPERATOR], "token_env": "TB_TEST_TELEGRAM_TOKEN", "base_url": api.base_url,
                            "commands": False}}  # fmt: skip
        data = usdm_paper(srv, ops)
        data["feeds"][0]["backoff"] = {"base": 0.001, "cap": 0.001, "min_delay": 0.0}  # reconnect at once
        # the capture's 1,200 frames run out in seconds: a loaded machine slow to see the fourth connection would
        # otherwise find the feed stale (30 s), recycled, and a fifth connection with two more alerts
        data["feeds"][0]["stale_after"] = 600.0
        node = PaperNode(config_of(data), handle_signals=False)
        task = asyncio.create_task(node.run())
        try:
            await until(lambda: srv.connections == 4 and node.feeds[0].client.connected.is_set(), 60.0)
            await until(lambda: any("(connection 4)" in t for t in api.texts()), 60.0)
        finally:
            node.stop("test done")
            await asyncio.wait_for(task, 20)
    feed = node.feeds[0].name
    texts = [t for t in api.texts(OPERATOR) if t.startswith(f"feed {feed}")]
    # six alerts: the stop that closed the last connection is not one
    assert [t.split(" (")[0] for t in texts] == [f"feed {feed} disconnected", f"feed {feed} connected again"] * 3
    assert [t for t in texts if "connected again" in t] == [
        f"feed {feed} connected again (connection {n})" for n in (2, 3, 4)
    ]
    registry = node.ops.metrics.registry  # type: ignore[union-attr]
    assert registry.get_sample_value("tradebus_feed_disconnects_total", {"feed": feed}) == 3  # the stop is none


async def test_a_feed_that_cannot_reconnect_goes_stale_and_is_alerted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The venue drops the feed and refuses every reconnection: the stale-feed watchdog ran only while a
    connection was open, so no FeedStale came however long the outage (no alert, no count, and the
    market guard went on letting orders through on the feed's instruments)."""
    monkeypatch.setenv("TB_TEST_TELEGRAM_TOKEN", TOKEN)
    drop = Fault(FaultKind.DROP, at=100)
    async with FakeBotApi(TOKEN) as api, LocalVenueServer(
        BinanceProtocol(USDM_SNAPSHOT, futures=True), USDM_FRAMES[:600], [drop], speed=20.0, lifetime=120.0,
        max_connections=1,  # every reconnection is refused (HTTP 503)
    ) as srv:  # fmt: skip
        ops = {"telegram": {"chat_ids": [OPERATOR], "token_env": "TB_TEST_TELEGRAM_TOKEN", "base_url": api.base_url,
                            "commands": False}}  # fmt: skip
        data = usdm_paper(srv, ops)
        data["feeds"][0]["stale_after"] = 1.0
        data["feeds"][0]["backoff"] = {"base": 0.2, "cap": 0.5, "min_delay": 0.1}
        node = PaperNode(config_of(data), handle_signals=False)
        task = asyncio.create_task(node.run())
        try:
            await until(lambda: any(" stale: " in t for t in api.texts()))
            assert not node.feeds[0].client.connected.is_set() and node.feeds[0].client.connections == 1
            assert node.guard.stale(USDM_IID)
        finally:
            node.stop("test done")
            await asyncio.wait_for(task, 20)
    feed = node.feeds[0].name
    assert [t for t in api.texts(OPERATOR) if " stale: " in t] == [f"feed {feed} stale: orders on its instruments stop"]
    registry = node.ops.metrics.registry  # type: ignore[union-attr]
    assert registry.get_sample_value("tradebus_feed_stale_total", {"feed": feed}) == 1


async def test_commands_sent_while_the_daemon_was_down_are_answered_as_ignored_not_acted_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Telegram keeps a command until a ``getUpdates`` confirms it: a ``/halt`` and a ``/flatten`` sent
    while the daemon was down were acted on as soon as it started, however long before they were sent."""
    monkeypatch.setenv("TB_TEST_TELEGRAM_TOKEN", TOKEN)
    async with FakeBotApi(TOKEN) as api, served_usdm(speed=3.0) as srv:
        ops = {"telegram": {"chat_ids": [OPERATOR], "token_env": "TB_TEST_TELEGRAM_TOKEN", "base_url": api.base_url,
                            "poll_timeout": 1}}  # fmt: skip
        node = PaperNode(config_of(usdm_paper(srv, ops)), handle_signals=False)
        down = int(time.time())
        api.push(OPERATOR, "/halt", date=down - 3600)
        api.push(OPERATOR, "/flatten", date=down - 5)
        task = asyncio.create_task(node.run())
        try:
            await until(lambda: node.running.is_set())
            api.push(OPERATOR, "/pnl")  # answered after the two before it
            await until(lambda: any(t.startswith("equity ") for t in api.texts()))
        finally:
            node.stop("test done")
            await asyncio.wait_for(task, 20)
    changes = [t for t in api.texts(OPERATOR) if t.startswith("trading state")]
    assert changes == [] and node.kernel.risk.state is TradingState.ACTIVE
    assert not any(o.strategy_id == "ops" for o in node.kernel.orders.orders())
    bot = node.ops.telegram  # type: ignore[union-attr]
    assert bot is not None and bot.started_s is not None
    started = dt.datetime.fromtimestamp(bot.started_s, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    ignored = [t for t in api.texts(OPERATOR) if t.startswith("ignored ")]
    for text, sent in (("/halt", down - 3600), ("/flatten", down - 5)):
        at = dt.datetime.fromtimestamp(sent, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        assert f"ignored {text}: sent at {at}, before the daemon started at {started}; send it again to act" in ignored
    assert len(ignored) == 2 and bot.ignored_commands == 2


async def test_a_command_older_than_command_max_age_is_not_acted_on() -> None:
    """A command that reaches the daemon late (its Bot API unreachable for minutes) was acted on however old."""
    acted: list[str] = []
    wall = [float(int(time.time()))]
    async with FakeBotApi(TOKEN) as api:
        config = TelegramConfig(chat_ids=[OPERATOR], base_url=api.base_url, poll_timeout=1, command_max_age=30)
        bot = TelegramBot(config, TOKEN, lambda text, chat: acted.append(text) or "done", wall=lambda: wall[0])
        await bot.start()
        try:
            wall[0] += 300.0  # five minutes later
            api.push(OPERATOR, "/halt", date=int(wall[0]) - 31)
            api.push(OPERATOR, "/status", date=int(wall[0]) - 29)
            await until(lambda: len(api.sent) == 2)
        finally:
            await bot.stop()
    assert acted == ["/status"]
    assert api.texts()[0].startswith("ignored /halt: sent at ") and api.texts()[0].endswith(
        ", 31 s ago (ops.telegram.command_max_age: 30 s); send it again to act"
    )
    assert api.texts()[1] == "done"


async def test_a_command_is_confirmed_to_telegram_before_it_is_acted_on_so_a_restart_never_repeats_it() -> None:
    """A command was confirmed (``offset``) only by the next ``getUpdates``: a daemon stopped between
    acting and that call got the command again from Telegram when it restarted."""
    acted: list[tuple[str, int]] = []
    async with FakeBotApi(TOKEN) as api:
        config = TelegramConfig(chat_ids=[OPERATOR], base_url=api.base_url, poll_timeout=1)

        def act(text: str, chat: int) -> str:
            acted.append((text, api.confirmed))
            api.confirm = False  # the daemon dies now: no request it sends after this reaches Telegram
            return "flattened"

        first = TelegramBot(config, TOKEN, act)
        await first.start()
        try:
            api.push(OPERATOR, "/flatten")
            await until(lambda: api.texts() == ["flattened"])
        finally:
            await first.stop()
        api.confirm = True
        again = TelegramBot(config, TOKEN, lambda text, chat: acted.append((text, api.confirmed)) or "again")
        await again.start()
        try:
            api.push(OPERATOR, "/status")
            await until(lambda: len(acted) == 2 or len(api.sent) > 2)
        finally:
            await again.stop()
    assert acted == [("/flatten", 1001), ("/status", 1002)]  # each confirmed (next update_id) before acting
    assert api.texts() == ["flattened", "again"]  # the restart neither acted on nor answered /flatten


async def test_a_command_whose_confirmation_another_processs_poll_ended_is_still_acted_on() -> None:
    """Two daemons on one token, under load: a ``/ping`` was read by one, whose confirmation (``offset`` 1001) the
    other's poll ended with 409 after Telegram had taken it. The daemon dropped the command to poll again, and
    Telegram, the command confirmed, never returned it: the ``/ping`` was not answered. Now the confirmation is sent
    again and the command acted on, once, with no poll in between."""
    acted: list[str] = []
    async with FakeBotApi(TOKEN) as api:
        config = TelegramConfig(chat_ids=[OPERATOR], base_url=api.base_url, poll_timeout=1)
        bot = TelegramBot(config, TOKEN, lambda text, chat: acted.append(text) or "pong", sleep=lambda s: asyncio.sleep(0))
        await bot.start()
        try:
            await until(lambda: bot.polls >= 1)
            api.conflicts_after_confirming = 1
            at_push = bot.polls
            api.push(OPERATOR, "/ping")
            # the poll out at the push, or the next one, reads it: two more show it dropped
            await until(lambda: bool(acted) or bot.polls >= at_push + 3)
            assert acted == ["/ping"] and bot.polls <= at_push + 1
            await until(lambda: api.texts() == ["pong"])
        finally:
            await bot.stop()
    assert (api.conflicts, api.confirmed, bot.conflicts) == (1, 1001, 1)


def _flapping_node(srv: LocalVenueServer, api: FakeBotApi, *, cycles: int, window: float) -> PaperNode:
    """A paper node on ``srv`` alerting through ``api`` (no commands), flapping past ``cycles`` disconnects in
    ``window`` seconds, its feed stale after 0.5 s of silence and reconnecting at once."""
    ops = {"telegram": {"chat_ids": [OPERATOR], "token_env": "TB_TEST_TELEGRAM_TOKEN", "base_url": api.base_url,
                        "commands": False, "flap_cycles": cycles, "flap_window": window}}  # fmt: skip
    data = usdm_paper(srv, ops)
    data["feeds"][0]["stale_after"] = 0.5
    data["feeds"][0]["backoff"] = {"base": 0.05, "cap": 0.05, "min_delay": 0.0}
    return PaperNode(config_of(data), handle_signals=False)


async def test_a_feed_whose_stream_stays_silent_is_alerted_as_flapping_once_not_four_times_a_cycle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stream that accepts every connection and sends nothing: every ``stale_after`` the feed went stale,
    was disconnected, reconnected and its book resynced, four alerts a cycle (about 480 an hour)."""
    monkeypatch.setenv("TB_TEST_TELEGRAM_TOKEN", TOKEN)
    silent = [Fault(FaultKind.SILENCE, at=100, seconds=math.inf)]
    silent += [Fault(FaultKind.SILENCE, at=0, connection=n, seconds=math.inf) for n in range(1, 5)]
    now = [0.0]
    # The sixth connection is the first to stream past its first frame: its data must last until the stop, or
    # the feed goes stale a sixth time. Held, the replay clock stands still while the silent connections cycle,
    # and at half speed the capture's 35 s last the sixth connection over a minute (its largest gap, 0.08 s,
    # is 0.16 s: well inside stale_after).
    async with FakeBotApi(TOKEN) as api, LocalVenueServer(
        BinanceProtocol(USDM_SNAPSHOT, futures=True), USDM_FRAMES, silent, speed=0.5, lifetime=180.0, hold=True
    ) as srv:
        node = _flapping_node(srv, api, cycles=2, window=4)
        flaps = node.ops.flaps  # type: ignore[union-attr]
        assert flaps is not None
        # The detector's clock stands still while the five silent connections cycle, however slowly a
        # loaded machine runs them: all five disconnects fall in one window (on the wall clock a cycle
        # of over 2 s put the third out of the window of the first).
        flaps.clock = lambda: now[0]
        task = asyncio.create_task(node.run())
        try:  # five silent connections, then the sixth delivers data (over a minute of it) and stays open the window
            await until(lambda: node.feeds and node.feeds[0].name in flaps.flapping, 60.0)
            feed = node.feeds[0].name
            registry = node.ops.metrics.registry  # type: ignore[union-attr]
            await until(lambda: registry.get_sample_value("tradebus_feed_disconnects_total", {"feed": feed}) == 5, 60.0)
            await until(lambda: node.feeds[0].client.live_ns() > flaps.flapping[feed].mark_ns, 60.0)
            now[0] += 4.0  # the sixth connection has delivered data: it stays open the window
            await until(lambda: any(" delivers data again after flapping" in t for t in api.texts()), 60.0)
        finally:
            node.stop("test done")
            await asyncio.wait_for(task, 20)
    feed = node.feeds[0].name
    texts = [t for t in api.texts(OPERATOR) if t.startswith((f"feed {feed}", "book "))]
    texts = texts[: next(i for i, t in enumerate(texts) if " delivers data again after flapping" in t) + 1]
    one_by_one = [f"feed {feed} stale", f"feed {feed} disconnected", f"feed {feed} connected again",
                  f"book {USDM_IID} resynced"]  # fmt: skip
    assert sorted(t.split(":")[0].split(" (")[0] for t in texts[:8]) == sorted(one_by_one * 2)  # two cycles
    assert texts[8:10] == [
        f"feed {feed} stale: orders on its instruments stop",  # the third cycle begins
        f"feed {feed} flapping: 3 disconnects in the last 4 s; its stale, disconnect, reconnect and resync "
        "alerts are held until a connection delivers data and stays open 4 s (a summary every 4 s at most)",
    ]
    assert all(t.startswith(f"feed {feed} still flapping: ") for t in texts[10:-1]), texts
    assert texts[-1].startswith(f"feed {feed} delivers data again after flapping ("), texts
    held = sum(int(t.rpartition(", ")[2].split()[0]) for t in texts[10:-1]) + int(texts[-1].rpartition("(")[2].split()[0])
    registry = node.ops.metrics.registry  # type: ignore[union-attr]
    assert registry.get_sample_value("tradebus_feed_disconnects_total", {"feed": feed}) == 5  # counted all the same
    assert registry.get_sample_value("tradebus_feed_stale_total", {"feed": feed}) == 5
    resyncs = registry.get_sample_value("tradebus_book_resyncs_total", {"instrument": USDM_IID})
    # held: every stale, disconnect, reconnect (connections 2 to 6) and resync but the two cycles alerted
    # one by one, the third's stale alert and its disconnect (the flapping alert)
    assert held == (5 - 3) + (5 - 3) + (5 - 2) + (resyncs - 2), (held, resyncs, texts)


async def test_a_feed_whose_every_connection_delivers_a_little_then_stalls_is_alerted_as_flapping_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each connection delivers a few frames, then its stream stalls: the first data after a disconnect ended
    the flapping (``delivers data again``) and the next disconnect began it again (``flapping``), two alerts a
    cycle for as long as it lasted. It is one flapping alert and then one summary a window."""
    monkeypatch.setenv("TB_TEST_TELEGRAM_TOKEN", TOKEN)
    stalls = [Fault(FaultKind.SILENCE, at=20, connection=n, seconds=math.inf) for n in range(60)]
    # Every connection must deliver its frames, or the flapping it shows never meets data. Held, the replay clock
    # stands still while no connection streams, so each connection has the next 20 frames however long a loaded
    # machine takes to come back (on the wall clock the capture's 35 s ran out 1.8 s after the first subscription,
    # and the later connections delivered nothing).
    async with FakeBotApi(TOKEN) as api, LocalVenueServer(
        BinanceProtocol(USDM_SNAPSHOT, futures=True), USDM_FRAMES, stalls, speed=20.0, lifetime=120.0, hold=True
    ) as srv:
        node = _flapping_node(srv, api, cycles=1, window=2)
        flaps, registry = node.ops.flaps, node.ops.metrics.registry  # type: ignore[union-attr]
        assert flaps is not None

        def disconnects() -> float:
            return sum(s.value for m in registry.collect() if m.name == "tradebus_feed_disconnects" for s in m.samples
                       if s.name.endswith("_total"))

        # The detector's clock moves 1 s at each disconnect (counted before the detector hears of it) and stands
        # still in between: the window holds two cycles however slowly a loaded machine runs them (on the wall
        # clock a cycle of over 2 s would be a connection open the window with data, rightly the end of the
        # flapping), no connection stays open a window, and a summary is due every two disconnects.
        flaps.clock = disconnects
        task = asyncio.create_task(node.run())
        try:
            await until(lambda: node.running.is_set(), 60.0)
            feed = node.feeds[0].name
            await until(lambda: sum(t.startswith(f"feed {feed} still flapping: ") for t in api.texts()) == 2, 60.0)
        finally:
            node.stop("test done")
            await asyncio.wait_for(task, 20)
    texts = [t for t in api.texts(OPERATOR) if t.startswith((f"feed {feed}", "book "))]
    assert texts.pop().startswith(f"feed {feed} still flapping at the stop: "), texts  # its last word
    flapping = next(i for i, t in enumerate(texts) if t.startswith(f"feed {feed} flapping: "))
    assert all(t.startswith(f"feed {feed} still flapping: ") for t in texts[flapping + 1 :]), texts
    assert len(texts) - flapping - 1 == 2, texts
    assert srv.sessions and len(srv.sessions) >= 5  # it went on cycling, each connection with data
    # each connection but the last (cut by the stop) sent data: its 20 frames, fewer if the daemon found it stale first
    assert all(s.sent > 0 for s in srv.sessions[:-1]), [s.sent for s in srv.sessions]
    assert registry.get_sample_value("tradebus_feed_disconnects_total", {"feed": feed}) >= 4


def test_a_flapping_feed_sends_a_summary_at_most_once_a_window() -> None:
    clock = [0.0]
    sent: list[str] = []
    flaps = FlapDetector(cycles=1, window=60.0, alert=sent.append, clock=lambda: clock[0])
    flaps.add_feed("f", ["X.V"], lambda: 0)
    assert flaps.on_disconnect("f") and not flaps.hold("f")  # a drop is alerted
    clock[0] = 70.0
    assert flaps.on_disconnect("f")  # the first one is out of the window
    clock[0] = 80.0
    assert not flaps.on_disconnect("f") and sent[-1].startswith("feed f flapping: 2 disconnects in the last 1 min;")
    clock[0] = 130.0
    assert not flaps.on_disconnect("f")  # held
    for t, summary in ((139.0, None), (140.0, "1 disconnects in the last 1 min, 3 alerts"), (199.0, None),
                       (200.0, "0 disconnects in the last 1 min, 2 alerts")):  # fmt: skip
        clock[0] = t
        assert flaps.hold(flaps.feed_of("X.V"))
        flaps.tick()
        if summary is not None:
            assert sent.pop() == f"feed f still flapping: {summary} held since the last message; not connected now"
    assert len(sent) == 1
    assert not flaps.hold(None) and not flaps.hold("other")


def test_pnl_adds_up_to_the_equity_change_with_funding_and_interest() -> None:
    """``/pnl`` listed realized, unrealized and fees only: with funding or borrowing interest paid its
    figures did not add up to the equity change it printed above them."""
    inst = Instrument("BINANCE", "BTCUSDT", base="BTC", quote="USDT", tick_size=0.01, lot_size=1e-5, margin=True)
    iid = inst.instrument_id
    kernel = Kernel([inst], initial_cash=10_000.0)
    kernel.start()
    kernel.process(Trade(iid, 1, 1, 60_000.0, 1.0, 1, "1"))
    kernel.portfolio.apply_fill(
        OrderFilled("s", iid, "c1", "v1", "t1", OrderSide.SELL, 0.1, 60_000.0, 3.0, Liquidity.TAKER, 1, 1)
    )
    kernel.portfolio.pay_funding(iid, 1.25)
    kernel.portfolio.charge_interest("BTC", 0.5)
    kernel.process(Trade(iid, 2, 2, 59_000.0, 1.0, 1, "2"))
    hooks = OpsHooks(OpsConfig())
    hooks.target = _Daemon(kernel)
    lines = hooks.pnl_text().splitlines()
    figures = dict(part.split(" ") for part in lines[1].split(", "))
    assert figures == {"realized": "0.00", "unrealized": "100.00", "fees": "3.00", "funding": "1.25", "interest": "0.50"}
    change = float(lines[0].split(", ")[-1].rstrip(")"))
    assert change == pytest.approx(100.0 - 3.0 - 1.25 - 0.5, abs=0.005)


async def test_a_flapping_feed_whose_reconnections_are_all_refused_still_gets_its_summary_every_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The venue goes away after the feed began flapping: no connection opens, no event of the feed comes,
    and the ``still flapping`` summary, sent only when a held alert came, never came (the flapping alert was
    the last word on a feed down for good)."""
    monkeypatch.setenv("TB_TEST_TELEGRAM_TOKEN", TOKEN)
    silent = [Fault(FaultKind.SILENCE, at=100, seconds=math.inf)]
    silent += [Fault(FaultKind.SILENCE, at=0, connection=n, seconds=math.inf) for n in range(1, 50)]
    async with FakeBotApi(TOKEN) as api, LocalVenueServer(
        BinanceProtocol(USDM_SNAPSHOT, futures=True), USDM_FRAMES[:600], silent, speed=20.0, lifetime=120.0
    ) as srv:
        node = _flapping_node(srv, api, cycles=1, window=1.5)
        task = asyncio.create_task(node.run())
        try:
            await until(lambda: node.running.is_set(), 60.0)
            feed = node.feeds[0].name
            await until(lambda: any(t.startswith(f"feed {feed} flapping: ") for t in api.texts()), 60.0)
            await srv.stop()  # every reconnection is refused from now on
            await until(lambda: any(t.startswith(f"feed {feed} still flapping: ") for t in api.texts()))
        finally:
            node.stop("test done")
            await asyncio.wait_for(task, 20)
    texts = [t for t in api.texts(OPERATOR) if t.startswith(f"feed {feed}")]
    flapping = next(i for i, t in enumerate(texts) if t.startswith(f"feed {feed} flapping: "))
    summary = texts[flapping + 1]
    assert summary.startswith(f"feed {feed} still flapping: ") and summary.endswith("; not connected now"), texts
    assert not any(" delivers data again after flapping" in t for t in texts), texts
    # a window under a minute is printed in seconds (it read "in the last 0.025 min")
    assert texts[flapping].startswith(f"feed {feed} flapping: 2 disconnects in the last 1.5 s; "), texts
    assert texts[flapping].endswith(" (a summary every 1.5 s at most)"), texts
    assert " disconnects in the last 1.5 s, " in summary, texts


@pytest.mark.parametrize(
    ("window", "printed"), [(1.5, "1.5 s"), (45.0, "45 s"), (60.0, "1 min"), (90.0, "1 min 30 s"), (600.0, "10 min")]
)
def test_a_flapping_window_is_printed_in_seconds_under_a_minute_and_in_minutes_above(window: float, printed: str) -> None:
    clock = [0.0]
    sent: list[str] = []
    flaps = FlapDetector(cycles=1, window=window, alert=sent.append, clock=lambda: clock[0])
    flaps.add_stream("u")
    flaps.on_disconnect("u")
    clock[0] = window / 2
    flaps.on_disconnect("u")
    assert sent == [
        f"user stream u flapping: 2 disconnects in the last {printed}; its disconnect and reconnect alerts are held "
        f"until it stays connected {printed} (a summary every {printed} at most)"
    ]


class VirtualClock:
    """A monotonic clock that only a bot's retry waits move forward (the waits are recorded, not slept)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


async def _poll_commands(
    answers: list[tuple[int, Any]], level: str = "WARNING", before: str | None = None
) -> tuple[TelegramBot, FakeBotApi, VirtualClock, list[str]]:
    """A bot polling a fake Bot API that first gives ``getUpdates`` the ``answers``, then is sent /status.

    Waits for the reply to ``before`` (a command the answers carry) first, when given; checks that /status is
    answered and the bot's tasks still run; returns the bot, the API, the virtual clock and the log lines of
    ``level`` and above.
    """
    clock = VirtualClock()
    lines: list[str] = []
    sink = logger.add(lines.append, level=level, format="{level} {message}")
    try:
        async with FakeBotApi(TOKEN, clock=clock) as api:
            api.update_answers += answers
            config = TelegramConfig(chat_ids=[OPERATOR], base_url=api.base_url, poll_timeout=1)
            bot = TelegramBot(config, TOKEN, on_command=lambda text, chat: f"pong {text}", sleep=clock.sleep)
            await bot.start()
            try:
                if before is not None:
                    await until(lambda: f"pong {before}" in api.texts())
                api.push(OPERATOR, "/status")
                await until(lambda: "pong /status" in api.texts())
                assert all(not task.done() for task in bot._tasks)  # noqa: SLF001
            finally:
                await bot.stop()
    finally:
        logger.remove(sink)
    return bot, api, clock, lines


@pytest.mark.parametrize("method", ["getMe", "getUpdates"])
async def test_the_poller_under_flood_control_waits_its_retry_after_and_calls_again_once(method: str) -> None:
    """A 429 with ``retry_after: 2`` on ``getMe`` or ``getUpdates``: the poller waited 1 s, was refused again
    (1 s left), then waited 2 s, whatever Telegram asked; it must wait the 2 s asked and call again once."""
    clock = VirtualClock()
    async with FakeBotApi(TOKEN, clock=clock) as api:
        api.flood(method, 2.0)
        config = TelegramConfig(chat_ids=[OPERATOR], base_url=api.base_url, poll_timeout=1)
        bot = TelegramBot(config, TOKEN, on_command=lambda text, chat: f"pong {text}", sleep=clock.sleep)
        await bot.start()
        try:
            api.push(OPERATOR, "/status")
            await until(lambda: "pong /status" in api.texts())
        finally:
            await bot.stop()
    assert clock.sleeps == [2.0]  # one wait, of the 2 s asked: one call again


@pytest.mark.parametrize("parameters", ["retry later", [1, 2], {"retry_after": -5}, {"retry_after": True}])
async def test_the_poller_given_a_429_with_unusable_parameters_backs_off_logs_once_and_still_takes_commands(
    parameters: Any,
) -> None:
    """A 429 on ``getUpdates`` whose ``parameters`` is a string or a list: ``.get`` raised AttributeError, which
    no ``except`` of the poller took; the poller task ended without a log line and /status, /flatten went
    unread. A ``retry_after`` of -5 s (or ``true``) was waited as asked: no wait at all (1 s)."""
    bot, _, clock, lines = await _poll_commands([_throttled(parameters), _throttled(parameters)], "INFO")
    assert clock.sleeps == [1.0, 2.0]  # the poller's own backoff
    assert bot.malformed_429 == 2 and bot.poll_errors == 0
    about_it = [line for line in lines if "answered 429" in line]  # each retry is logged too, as any failure
    assert len(about_it) == 1 and about_it[0].startswith("WARNING telegram: getUpdates answered 429"), lines
    assert "usual backoff" in about_it[0]
    assert not any(TOKEN in line for line in lines)


async def test_the_poller_under_a_day_long_flood_wait_waits_at_most_five_minutes_and_says_so_once() -> None:
    """``getUpdates`` answered 429 with ``retry_after: 86400`` (valid, a day): the poller slept the whole day, so
    /status and /flatten went unread for 24 h with no word of why. It waits :data:`MAX_POLL_WAIT` (300 s) at most,
    calls again, and logs the Bot API's 86400 once."""
    bot, _, clock, lines = await _poll_commands([_throttled({"retry_after": 86400}), _throttled({"retry_after": 86400})])
    assert MAX_POLL_WAIT == 300.0 and clock.sleeps == [300.0, 300.0]
    assert bot.long_429 == 2 and bot.malformed_429 == 0
    told = [line for line in lines if "86400" in line and "at most" in line]
    assert told == [
        "WARNING telegram: getUpdates answered 429 (flood control) asking to wait 86400 s; the command poller waits "
        "at most 300 s at a time and calls again, so commands (/flatten) are read as soon as Telegram allows (further "
        "such answers are counted, not logged)\n"
    ], lines
    assert not any(TOKEN in line for line in lines)


@pytest.mark.parametrize("result", [{"update_id": 1}, "updates", [1, 2], [{"message": {}}]])
async def test_a_get_updates_answer_that_is_not_a_list_of_updates_is_backed_off_and_commands_are_read_after(
    result: Any,
) -> None:
    """``getUpdates`` answered ``ok`` with a ``result`` that is not a list of updates (a proxy's, or a changed Bot
    API's): it was skipped with no wait, so an API answering that way was called again at once, in a tight loop
    (here four calls in a row, no wait between). It now waits the backoff (1 s, 2 s, 4 s, ...), as on any failure."""
    bot, api, clock, lines = await _poll_commands([(200, {"ok": True, "result": result})] * 4)
    assert api.update_answers == []
    assert clock.sleeps == [1.0, 2.0, 4.0, 8.0]  # one wait after each odd answer, doubling
    odd = [line for line in lines if "not a list of updates" in line]
    assert len(odd) == 4 and odd[0].startswith("WARNING telegram: getUpdates failed, retrying in 1 s: RuntimeError"), lines
    assert bot.poll_errors == 0 and not any(TOKEN in line for line in lines)


async def test_an_error_no_rule_foresaw_in_the_poller_is_logged_counted_and_polling_goes_on() -> None:
    """An update whose ``update_id`` is null (TypeError in ``int``), then one whose ``message`` is a string
    (AttributeError in the command's parsing): either ended the poller task without a log line, and no
    command was read again. Each is now logged with the file and line that raised it and counted; the
    first waits the poller's backoff, the second's neighbour in the same answer is still acted on."""
    odd = {"update_id": 7, "message": "not an object"}
    fine = {"update_id": 8, "message": {"message_id": 8, "chat": {"id": OPERATOR}, "date": int(time.time()) + 1,
                                        "text": "/positions"}}  # fmt: skip
    answers = [(200, {"ok": True, "result": [{"update_id": None}]}), (200, {"ok": True, "result": [odd, fine]})]
    bot, _, clock, lines = await _poll_commands(answers, "INFO", before="/positions")
    assert bot.poll_errors == 2 and clock.sleeps == [1.0]
    errors = [line for line in lines if line.startswith("ERROR")]
    assert len(errors) == 2, lines
    assert "getUpdates failed unexpectedly: TypeError" in errors[0] and "(at telegram.py:" in errors[0]
    assert "in 1 s" in errors[0]
    assert "update 7 failed unexpectedly: AttributeError" in errors[1] and "(at telegram.py:" in errors[1]
    assert not any(TOKEN in line for line in lines)


async def test_an_alert_under_a_long_flood_wait_waits_it_out_once_and_is_delivered() -> None:
    """A 429 with ``retry_after: 120``: the sender waited 60 s (its cap), was refused again, and with one retry
    left gave the alert up; it must wait the 120 s asked and send once (saying it is 120 s late)."""
    clock = VirtualClock()
    async with FakeBotApi(TOKEN, clock=clock) as api:
        api.flood("sendMessage", 120.0)
        config = TelegramConfig(chat_ids=[OPERATOR], base_url=api.base_url, commands=False, send_retries=1)
        bot = TelegramBot(config, TOKEN, sleep=clock.sleep, clock=clock, wall=lambda: 1_700_000_120.0)
        await bot.start()
        bot.alert("fill", "after a long flood wait")
        await until(lambda: bot.sent + bot.failed == 1)
        await bot.stop()
    assert api.texts() == ["[late: queued 22:13:20 UTC, 120 s ago] after a long flood wait"]  # 1_700_000_000 s
    assert clock.sleeps == [120.0] and (bot.throttled, bot.retried, bot.failed) == (1, 1, 0)


async def test_an_alert_flood_control_would_hold_past_alert_max_age_is_given_up_at_once_and_logged() -> None:
    clock = VirtualClock()
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING", format="{message}")
    try:
        async with FakeBotApi(TOKEN, clock=clock) as api:
            api.flood("sendMessage", 900.0)
            config = TelegramConfig(chat_ids=[OPERATOR], base_url=api.base_url, commands=False, alert_max_age=600)
            bot = TelegramBot(config, TOKEN, sleep=clock.sleep, clock=clock)
            await bot.start()
            bot.alert("fill", "too late")
            await until(lambda: bot.sent + bot.failed == 1)
            await bot.stop()
    finally:
        logger.remove(sink)
    assert api.sent == [] and api.requests == ["sendMessage"] and clock.sleeps == [] and bot.failed == 1
    assert any(
        "sendMessage to chat 4242 failed, message not delivered: flood control (429) asks to wait 900 s, "
        "after which the message would be 900 s old (ops.telegram.alert_max_age: 600 s)" in line
        for line in lines
    ), lines


@pytest.mark.parametrize(
    "text",
    [
        "\n".join(f"BTC{i:04d}-USDT-SWAP.okx: {i / 1000:g} @ 61234.5 (last 61240.1)" for i in range(200)),
        "trading state REDUCING; canceled 600: " + ", ".join(f"TickE{i:010d}" for i in range(600)),
        "fill 📈 " * 700,  # 5600 characters, 6300 UTF-16 code units: Telegram counts an emoji as two
    ],
    ids=["positions", "flatten", "emoji"],
)
async def test_a_message_longer_than_telegram_takes_arrives_whole_in_numbered_parts(text: str) -> None:
    """A /positions of 200 instruments or a /flatten canceling 600 orders was cut at 4000 characters with no
    mark (the closing orders, named last, never arrived); 4000 characters of emoji are 6300 of Telegram's, over
    its 4096, so the message was refused (400) and lost."""
    async with FakeBotApi(TOKEN) as api:
        bot = TelegramBot(TelegramConfig(chat_ids=[OPERATOR], base_url=api.base_url, commands=False), TOKEN)
        await bot.start()
        bot.alert("fill", text)
        await until(lambda: bot.queue.empty() and not bot._sending)
        await bot.stop()
    parts = api.texts()
    assert bot.failed == 0 and len(parts) > 1
    assert [p.split(" ", 1)[0] for p in parts] == [f"[{i}/{len(parts)}]" for i in range(1, len(parts) + 1)]
    whole = "".join(p.split(" ", 1)[1] for p in parts)
    assert whole.replace("\n", "").replace(" ", "") == text.replace("\n", "").replace(" ", "")


def test_a_text_beyond_max_parts_is_cut_with_a_mark_saying_how_much() -> None:
    parts = split_message("x" * 100_000, limit=4096, max_parts=3)
    assert len(parts) == 3 and all(len(p) <= 4096 for p in parts)
    sent = sum(len(p.split(" ", 1)[1]) for p in parts[:2]) + len(parts[2].split(" ", 1)[1].split("\n")[0])
    assert parts[-1].endswith(f"\n[{100_000 - sent} more characters not sent]")
    assert split_message("flat") == ["flat"]


def test_alerts_dropped_on_a_full_queue_are_logged_when_it_happens_not_only_at_the_stop() -> None:
    """A queue full for hours (a flood wait, a Bot API down) dropped alerts in silence: only a metric and, at the
    stop, a count said so."""
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING", format="{message}")
    try:
        bot = TelegramBot(TelegramConfig(chat_ids=[OPERATOR], queue_size=1, commands=False), TOKEN)
        for n in range(4):
            bot.alert("fill", f"alert {n}")
        assert bot.dropped == 3
        drops = [line for line in lines if "queue full" in line]
        assert drops == [
            "telegram: queue full (1 messages, ops.telegram.queue_size): messages dropped until the sender "
            "catches up; first dropped: 'alert 1'\n"
        ]
        bot.queue.get_nowait()
        bot.alert("fill", "alert 4")
        assert lines[-1] == "telegram: queue has room again; 3 message(s) were dropped\n"
    finally:
        logger.remove(sink)


async def test_a_feed_still_flapping_when_the_daemon_stops_gets_its_last_summary_before_the_stop_alert() -> None:
    """A daemon stopped while a feed flapped said only ``stopped``: the alerts held since the feed's last
    ``still flapping`` summary (here its two disconnects and a reconnect after the flapping alert) were
    counted and never told, and nothing said the feed was still flapping at the stop."""
    inst = Instrument("BINANCE", "BTCUSDT", base="BTC", quote="USDT", tick_size=0.01, lot_size=1e-5, margin=True)
    kernel = Kernel([inst], initial_cash=10_000.0)
    async with FakeBotApi(TOKEN) as api:
        hooks = await _started_hooks(api, kernel, flap_cycles=1, flap_window=600.0)
        assert hooks.flaps is not None
        hooks.flaps.add_feed("binance-usdm", [inst.instrument_id], lambda: 0)
        client = type("Client", (), {"name": "binance-usdm", "connections": 1})()
        for connections in range(2, 6):  # down, up, down (flapping), up, down, up, down, up
            hooks._on_connection("feed", hooks.metrics.disconnects, client, False, "stream silent")
            client.connections = connections
            hooks._on_connection("feed", hooks.metrics.disconnects, client, True, "")
        await hooks.stop("test done")
    texts = api.texts(OPERATOR)
    flapping = next(i for i, t in enumerate(texts) if t.startswith("feed binance-usdm flapping: 2 disconnects"))
    assert texts[flapping + 1 :] == [
        "feed binance-usdm still flapping at the stop: 4 disconnects in the last 10 min, "
        "5 alerts held since the last message",
        texts[-1],
    ], texts
    assert texts[-1].startswith("tradebus paper daemon stopped: test done\n"), texts


async def test_a_log_file_failing_again_and_again_is_alerted_as_a_flapping_feed_is(tmp_path: Path) -> None:
    """A disk that fills and frees again and again sent a cannot-write and a written-again alert each time (dce43aac),
    as many pairs as cycles. Now the log file flaps as a feed does (``flap_cycles`` 1 here): its first failure and
    recovery are alerted, the second failure sends one flapping alert, the rest are held and counted at the stop."""
    inst = Instrument("BINANCE", "BTCUSDT", base="BTC", quote="USDT", tick_size=0.01, lot_size=1e-5, margin=True)
    log = tmp_path / "daemon.log"
    async with FakeBotApi(TOKEN) as api:
        config = TelegramConfig(chat_ids=[OPERATOR], base_url=api.base_url, token_env="TB_TEST_TELEGRAM_TOKEN",
                                commands=False, flap_cycles=1, flap_window=600.0)  # fmt: skip
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("TB_TEST_TELEGRAM_TOKEN", TOKEN)
            hooks = OpsHooks(OpsConfig(telegram=config, log=LogConfig(file=log)))
        await hooks.start(_Daemon(Kernel([inst], initial_cash=10_000.0)))  # type: ignore[arg-type]
        failed = f"ops.log.file: cannot write {log} (No space left on device): its lines are not written until it can be"
        for n in range(1, 4):  # the disk fills, then frees: three times
            hooks._on_log_told(failed, True)
            hooks._on_log_told(f"ops.log.file: {log} written again after {n} failed write(s)", False)
        await hooks.stop("test done")
    texts = [t for t in api.texts(OPERATOR) if not t.startswith("tradebus ")]  # but the start and stop alerts
    assert texts == [
        failed,
        f"ops.log.file: {log} written again after 1 failed write(s)",
        f"log file {log} flapping: 2 failures in the last 10 min; its cannot-write and written-again alerts are held "
        "until it is written 10 min (a summary every 10 min at most)",
        f"log file {log} still flapping at the stop: 3 failures in the last 10 min, 3 alerts held since the last message",
    ], texts


async def test_a_daemon_serves_the_command_pollers_counters_on_its_metrics_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The poller counted its 409 conflicts and its errors, but ``/metrics`` served none of it: an operator saw a
    second daemon on the token, or a poller stuck in backoff, only in the log. A ``getUpdates`` answered 409, then
    one holding an update whose ``update_id`` is null (an error no rule foresaw): the poller waited 1 s, then 1 s
    again (a list of updates resets the backoff), and then polled again; the daemon's real ``/metrics`` says so."""
    from prometheus_client.parser import text_string_to_metric_families

    from .fake_telegram import CONFLICT

    monkeypatch.setenv("TB_TEST_TELEGRAM_TOKEN", TOKEN)
    async with FakeBotApi(TOKEN) as api, served_usdm(speed=3.0) as srv:
        api.update_answers += [
            (409, {"ok": False, "error_code": 409, "description": CONFLICT}),
            (200, {"ok": True, "result": [{"update_id": None}]}),
        ]
        telegram = {"chat_ids": [OPERATOR], "token_env": "TB_TEST_TELEGRAM_TOKEN", "base_url": api.base_url,
                    "poll_timeout": 1}  # fmt: skip
        node = PaperNode(config_of(usdm_paper(srv, {"port": 0, "telegram": telegram})), handle_signals=False)
        bot = node.ops.telegram  # type: ignore[union-attr]
        assert bot is not None
        task = asyncio.create_task(node.run())
        try:
            await until(lambda: bot.polls >= 3, 30.0)  # the third long poll: after both waits
            server = node.ops.server  # type: ignore[union-attr]
            assert server is not None
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=5.0) as http:
                text = (await http.get("/metrics")).text
        finally:
            node.stop("test done")
            await asyncio.wait_for(task, 20)
    scraped = {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples}
    assert scraped["tradebus_telegram_poll_conflicts_total"] == 1
    assert scraped["tradebus_telegram_poll_errors_total"] == 1
    assert scraped["tradebus_telegram_poll_retry_waits_total"] == 2
    assert scraped["tradebus_telegram_poll_retry_wait_seconds_total"] == 2.0  # 1 s, then 1 s
    assert scraped["tradebus_telegram_polls_total"] >= 3
    assert TOKEN not in text


async def test_a_series_of_denials_and_rejects_still_open_at_the_stop_is_told_before_the_stop_alert() -> None:
    """A halted daemon stopped after 4 orders were denied said ``denied <first>`` and then only ``stopped``: the
    3 denials held since the series' alert were counted and never told (a series was told only when an order
    passed or the trading state changed); so were the venue rejects held the same way."""
    inst = Instrument("BINANCE", "BTCUSDT", base="BTC", quote="USDT", tick_size=0.01, lot_size=1e-5, margin=True)
    iid = inst.instrument_id
    kernel = Kernel([inst], initial_cash=10_000.0)
    kernel.start()
    kernel.process(Trade(iid, 1, 1, 60_000.0, 1.0, 1, "1"))
    async with FakeBotApi(TOKEN) as api:
        hooks = await _started_hooks(api, kernel)
        kernel.risk.set_state(TradingState.HALTED, "operator test")
        for i in range(4):
            kernel.submit(SubmitOrder("s", iid, f"d{i}", OrderSide.BUY, 0.01, 2, 2, OrderType.MARKET))
        for i in range(3):
            kernel.bus.publish(OrderRejected("s", iid, f"r{i}", "venue: -2010 insufficient balance", 3, 3))
        await hooks.stop("test done")
    texts = api.texts(OPERATOR)
    denials = [t for t in texts if t.startswith("denied ")]
    assert denials == ["denied d0: trading_state: HALTED denies every order"], texts
    stop = next(i for i, t in enumerate(texts) if t.startswith("tradebus paper daemon stopped: test done\n"))
    told = texts[stop - 2 : stop]
    assert sorted(told) == [
        f"2 more order(s) on {iid} rejected (venue), not alerted one by one",
        f"3 more order(s) on {iid} denied (trading_state), not alerted one by one",
    ], texts


async def test_a_daemon_stopped_by_a_strategy_error_tells_telegram_the_error_and_where_it_was_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A strategy raising ZeroDivisionError in on_trade stopped the daemon and Telegram heard only
    ``stopped: strategy 'flaky' failed in on_trade``: the on-call operator had no error to act on until they read
    the log, where a feed's failure named its error in the same alert."""
    monkeypatch.setenv("TB_TEST_TELEGRAM_TOKEN", TOKEN)
    hooks_dir = Path(__file__).resolve().parents[1] / "fixtures" / "hooks"
    async with FakeBotApi(TOKEN) as api, served_usdm(speed=20.0) as srv:
        ops = {"telegram": {"chat_ids": [OPERATOR], "token_env": "TB_TEST_TELEGRAM_TOKEN", "base_url": api.base_url,
                            "commands": False, "alerts": ["lifecycle"]}}  # fmt: skip
        data = usdm_paper(srv, ops)
        data["strategy"] = {"name": "hook_failures:FailsIn", "id": "flaky", "instruments": [USDM_IID],
                            "params": {"hook": "on_trade", "at": 5}, "module_dir": str(hooks_dir)}  # fmt: skip
        node = PaperNode(config_of(data), handle_signals=False)
        with pytest.raises(StrategyError):
            await asyncio.wait_for(node.run(), 60)
    stop = api.texts(OPERATOR)[-1]
    assert re.match(
        r"tradebus paper daemon stopped: strategy 'flaky' failed in on_trade: ZeroDivisionError: division by zero "
        r"in on_trade \(at \S+hook_failures\.py:\d+ in _maybe_fail\)\n", stop
    ), stop


@pytest.mark.parametrize("listed", [False, True])
async def test_alerts_to_a_group_chat_upgraded_to_a_supergroup_reach_the_supergroup_and_say_its_id(listed: bool) -> None:
    """A group chat made a supergroup (Telegram gives it a new id, -100...) lost every alert: each send was answered
    400 'group chat was upgraded to a supergroup chat', logged as not delivered, and the log never named the new
    id Telegram gave in ``parameters.migrate_to_chat_id``. With the new id listed too, it gets each alert once, and the
    old group's copies, not sent, were counted as sent (``sent`` 4 for the 2 messages the API took)."""
    group, supergroup = -4242, -1004242
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING", format="{message}")
    try:
        async with FakeBotApi(TOKEN) as api:
            api.migrated[group] = supergroup
            chats = [group, supergroup] if listed else [group]
            bot = TelegramBot(TelegramConfig(chat_ids=chats, base_url=api.base_url, commands=False), TOKEN)
            await bot.start()
            bot.alert("breaker", "trading state HALTED: max_drawdown")
            bot.alert("lifecycle", "tradebus paper daemon stopped: test done")
            await bot.stop()
    finally:
        logger.remove(sink)
    assert api.texts(supergroup) == ["trading state HALTED: max_drawdown", "tradebus paper daemon stopped: test done"]
    assert api.texts(group) == [] and bot.failed == 0
    assert (bot.sent, bot.skipped) == (len(api.sent), 2 if listed else 0) == (2, 2 if listed else 0)
    told = [line for line in lines if "upgraded to a supergroup" in line]
    assert len(told) == 1 and f"chat {group} was upgraded to a supergroup, chat {supergroup}" in told[0], lines
    assert (f"remove {group} from ops.telegram.chat_ids" if listed else f"put {supergroup} in ops.telegram.chat_ids") in told[0]


async def test_the_stop_alert_is_sent_after_a_backlog_of_alerts_the_stop_has_no_time_to_send() -> None:
    """A daemon stopped with 100 fill alerts still queued (a Bot API taking one message every 0.2 s, as Telegram paces a
    chat) never sent its stop alert: it was queued behind them, the stop gave the queue 5 s (about 25 messages)
    and counted the rest, the stop alert with them, as not delivered. The last words of a stop (a flapping feed's
    summary, the orders denied since the series' alert, the stop alert) are now sent after the backlog, however
    much of it the stop's wait allowed."""
    inst = Instrument("BINANCE", "BTCUSDT", base="BTC", quote="USDT", tick_size=0.01, lot_size=1e-5, margin=True)
    kernel = Kernel([inst], initial_cash=10_000.0)
    async with FakeBotApi(TOKEN, send_delay=0.2) as api:
        hooks = await _started_hooks(api, kernel, queue_size=120)
        bot = hooks.telegram
        assert bot is not None
        await until(lambda: len(api.sent) == 1)  # the start alert
        for i in range(100):
            bot.alert("fill", f"fill {i}")
        await hooks.stop("test done")
    texts = api.texts(OPERATOR)
    assert texts[-1].startswith("tradebus paper daemon stopped: test done\n"), texts
    fills = texts[1:-1]  # the backlog, in order, as far as the stop's wait allowed; the rest given up
    assert 10 <= len(fills) < 100 and fills == [f"fill {i}" for i in range(len(fills))], texts
    # the fill being sent when the stop gave up the backlog is counted as not delivered, though the API may have taken it
    assert 100 - len(fills) <= bot.failed <= 101 - len(fills) and bot.dropped == 0


async def test_a_chat_that_refuses_the_bot_is_named_once_with_the_config_key_and_its_refusals_counted() -> None:
    """A wrong chat id (Telegram: 400 "Bad Request: chat not found") and a chat that blocked the bot (403 "Forbidden:
    bot was blocked by the user") each logged a WARNING per alert ("sendMessage to chat 666 failed, message not
    delivered: RuntimeError: ...") that named neither ops.telegram.chat_ids nor what to do: 10 lines for 5 alerts."""
    blocked = 777
    lines: list[str] = []
    sink = logger.add(lines.append, level="INFO", format="{level} {message}")
    try:
        async with FakeBotApi(TOKEN) as api:
            api.refused = {STRANGER: (400, "Bad Request: chat not found"), blocked: (403, "Forbidden: bot was blocked by the user")}
            config = TelegramConfig(chat_ids=[OPERATOR, STRANGER, blocked], base_url=api.base_url, commands=False)
            bot = TelegramBot(config, TOKEN)
            await bot.start()
            for n in range(5):
                bot.alert("fill", f"fill {n}")
            await until(lambda: bot.sent + bot.failed == 15)
            del api.refused[blocked]  # unblocked
            bot.alert("fill", "fill 5")
            await until(lambda: bot.sent + bot.failed == 18)
            await bot.stop()
    finally:
        logger.remove(sink)
    assert api.texts(OPERATOR) == [f"fill {n}" for n in range(6)] and api.texts(blocked) == ["fill 5"]
    assert (bot.sent, bot.failed) == (7, 11)
    about = {chat: [line for line in lines if f"chat {chat} " in line] for chat in (STRANGER, blocked)}
    assert about[STRANGER] == [
        f"ERROR telegram: chat {STRANGER} of ops.telegram.chat_ids takes no message from the bot (Telegram: 'Bot API "
        "sendMessage: HTTP 400 Bad Request: chat not found'); check the id in ops.telegram.chat_ids, and that the chat "
        "has started the bot (or has it as a member) and has not blocked it. Its alerts are not delivered "
        "(tradebus_alerts_failed_total); the next refusals are counted, and logged at the stop\n",
        f"WARNING telegram: chat {STRANGER} of ops.telegram.chat_ids refused 6 message(s)\n",
    ], lines
    assert len(about[blocked]) == 2 and "Forbidden: bot was blocked by the user" in about[blocked][0], lines
    assert about[blocked][1] == f"WARNING telegram: chat {blocked} takes the bot's messages again; it refused 5 before\n"
    assert not any(TOKEN in line for line in lines)


async def test_an_alert_delayed_past_alert_max_age_by_a_backlog_is_given_up_and_one_sent_late_says_so() -> None:
    """Alerts waiting behind a Bot API outage (a backlog of retries) were sent however old, with no word of their age:
    a fill alerted 700 s earlier arrived as if it were news (``alert_max_age`` applied to flood-control waits only).
    Here three alerts were queued 700 s, 120 s and 0 s before the sender could take them (the sender starts then:
    the backlog, without the outage that makes it): the first is given up, the second says when it was queued."""
    clock = VirtualClock()
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING", format="{message}")
    try:
        async with FakeBotApi(TOKEN, clock=clock) as api:
            config = TelegramConfig(chat_ids=[OPERATOR], base_url=api.base_url, commands=False, alert_max_age=600)
            now_s = 1_700_000_000.0 + 700.0  # 2023-11-14 22:13:20 UTC + 700 s
            bot = TelegramBot(config, TOKEN, sleep=clock.sleep, clock=clock, wall=lambda: now_s)
            bot.alert("fill", "fill 1")
            clock.now = 580.0
            bot.alert("fill", "fill 2")
            clock.now = 700.0
            bot.alert("fill", "fill 3")
            await bot.start()
            await until(lambda: bot.sent + bot.failed == 3)
            await bot.stop()
    finally:
        logger.remove(sink)
    assert api.texts() == ["[late: queued 22:23:00 UTC, 120 s ago] fill 2", "fill 3"]
    assert (bot.sent, bot.failed) == (2, 1) and api.requests == ["sendMessage"] * 2
    assert (
        "telegram: 1 message(s) to chat 4242 not delivered: older than ops.telegram.alert_max_age (600 s) when their "
        "turn came; queued from 2023-11-14 22:13:20 UTC (700 s ago) to 2023-11-14 22:13:20 UTC (700 s ago); "
        "the first: 'fill 1'\n"
    ) in lines, lines


async def test_alerts_given_up_as_too_old_after_an_outage_are_logged_as_one_line_per_drain() -> None:
    """After a long Bot API outage every alert queued meanwhile was older than ``alert_max_age`` when its turn came,
    and each was logged on a line of its own: 300 lines for 300 alerts. Now each run of them is one line: how many,
    the oldest and the newest. Here 300 alerts are queued one a second (the sender starts 1000 s after the first:
    the backlog, without the outage that makes it), then a fresh one; later 3 more go stale behind a second gap."""
    clock = VirtualClock()
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING", format="{message}")
    try:
        async with FakeBotApi(TOKEN, clock=clock) as api:
            config = TelegramConfig(chat_ids=[OPERATOR], base_url=api.base_url, commands=False, alert_max_age=600)
            bot = TelegramBot(config, TOKEN, sleep=clock.sleep, clock=clock, wall=lambda: 1_700_000_000.0 + clock.now)
            for second in range(300):
                clock.now = float(second)
                bot.alert("fill", f"fill {second}")
            clock.now = 1000.0
            bot.alert("fill", "fresh")
            await bot.start()
            await until(lambda: bot.sent + bot.failed == 301)
            for n in range(3):  # queued, then aged past alert_max_age before the sender's turn (no await between)
                bot.alert("fill", f"later {n}")
            clock.now = 1701.0
            bot.alert("fill", "fresh again")
            await until(lambda: bot.sent + bot.failed == 305)
            await bot.stop()
    finally:
        logger.remove(sink)
    assert api.texts() == ["fresh", "fresh again"] and (bot.sent, bot.failed) == (2, 303)
    # 1_700_000_000 s is 2023-11-14 22:13:20 UTC; the 300th alert was queued 299 s later, 701 s before its turn; the
    # later ones 1000 s after the first (22:30:00), 701 s before their turn
    assert [line for line in lines if "not delivered" in line] == [
        "telegram: 300 message(s) to chat 4242 not delivered: older than ops.telegram.alert_max_age (600 s) when "
        "their turn came; queued from 2023-11-14 22:13:20 UTC (1000 s ago) to 2023-11-14 22:18:19 UTC (701 s ago); "
        "the first: 'fill 0'\n",
        "telegram: 3 message(s) to chat 4242 not delivered: older than ops.telegram.alert_max_age (600 s) when "
        "their turn came; queued from 2023-11-14 22:30:00 UTC (701 s ago) to 2023-11-14 22:30:00 UTC (701 s ago); "
        "the first: 'later 0'\n",
    ]


async def test_a_retry_wait_that_would_take_an_alert_past_alert_max_age_is_not_made() -> None:
    """An alert 600 s old (``alert_max_age``: 600 s) answered HTTP 502: the sender waited the backoff (drawn below
    ``retry_delay``, 1000 s) and sent it again, however old that made it, where a 429's wait would have been refused."""
    clock = VirtualClock()
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING", format="{message}")
    try:
        async with FakeBotApi(TOKEN, clock=clock) as api:
            api.fail = 1
            config = TelegramConfig(chat_ids=[OPERATOR], base_url=api.base_url, commands=False, alert_max_age=600,
                                    retry_delay=1000.0)  # fmt: skip
            bot = TelegramBot(config, TOKEN, sleep=clock.sleep, clock=clock)
            bot.alert("fill", "fill 1")
            clock.now = 600.0  # not older than alert_max_age yet: sent
            await bot.start()
            await until(lambda: bot.sent + bot.failed == 1)
            await bot.stop()
    finally:
        logger.remove(sink)
    assert (bot.failed, clock.sleeps, api.requests, api.sent) == (1, [], ["sendMessage"], [])
    assert any(
        re.fullmatch(
            r"telegram: sendMessage to chat 4242 failed, message not delivered: _Retryable: Bot API sendMessage: HTTP "
            r"502; the retry waits \d+\.\d\d s, after which the message would be \d+ s old \(ops\.telegram\.alert_max_age: "
            r"600 s\)\n", line
        )
        for line in lines
    ), lines


async def test_fill_alerts_and_positions_give_prices_and_quantities_in_full() -> None:
    """A BTCUSDT fill at 104523.45 was alerted "@ 104523" and /positions showed "@ 104523 (last 104530)": ``:g`` keeps
    six significant digits, so every BTC price above 100,000 lost its cents; a 1000PEPEUSDT buy of 12,345,678 read
    "BUY 1.23457e+07". Both now read as the venue wrote them."""
    btc = Instrument("BINANCE", "BTCUSDT", base="BTC", quote="USDT", tick_size=0.01, lot_size=1e-5, margin=True)
    pepe = Instrument("BINANCE", "1000PEPEUSDT", base="1000PEPE", quote="USDT", tick_size=1e-7, lot_size=1.0, margin=True)
    kernel = Kernel([btc, pepe], initial_cash=1_000_000.0, venue_config=VenueConfig(fill_on="trades"))
    async with FakeBotApi(TOKEN) as api:
        hooks = await _started_hooks(api, kernel)
        kernel.start()
        for n, (inst, px, qty) in enumerate([(btc, 104523.45, 0.0015), (pepe, 0.0123457, 12345678.0)]):
            iid = inst.instrument_id
            kernel.process(Trade(iid, 10 * n + 1, 10 * n + 1, px, 50_000_000.0, 1, f"{n}a"))
            kernel.submit(SubmitOrder("s", iid, f"c{n}", OrderSide.BUY, qty, 10 * n + 2, 10 * n + 2))
            kernel.process(Trade(iid, 10 * n + 3, 10 * n + 3, px, 50_000_000.0, 1, f"{n}b"))
        kernel.process(Trade(btc.instrument_id, 30, 30, 104530.12, 1.0, 1, "last"))
        await until(lambda: len(api.sent) == 3)  # the start alert and the two fills
        positions = hooks.positions_text()
        await hooks.stop("test done")
    assert api.texts()[1:3] == [
        "fill c0: BUY 0.0015 BTCUSDT.BINANCE @ 104523.45",
        "fill c1: BUY 12345678 1000PEPEUSDT.BINANCE @ 0.0123457",
    ], api.texts()
    assert positions == (
        "BTCUSDT.BINANCE: 0.0015 @ 104523.45 (last 104530.12)\n"
        "1000PEPEUSDT.BINANCE: 12345678 @ 0.0123457 (last 0.0123457)"
    )


def _kernel_of_a_and_b(**fees: float) -> tuple[Kernel, str]:
    """A kernel of strategies a and b on one BTCUSDT perpetual (``fees``: its maker and taker fees), and its id."""
    perp = Instrument("BINANCE_USDM", "BTCUSDT", kind="perpetual", base="BTC", quote="USDT", tick_size=0.1, lot_size=0.001,
                      **fees)
    iid = perp.instrument_id
    kernel = Kernel([perp], initial_cash=10_000.0, venue_config=VenueConfig(fill_on="trades"))
    kernel.add_strategy(Strategy([iid], strategy_id="a"))
    kernel.add_strategy(Strategy([iid], strategy_id="b"))
    return kernel, iid


def _market_order_filled(kernel: Kernel, n: int, sid: str, side: OrderSide, qty: float, px: float) -> None:
    """The ``n``-th order (``c<n>``): strategy ``sid``'s market order between two trades at ``px`` (filled at ``px``)."""
    iid = next(iter(kernel.instruments))
    kernel.process(Trade(iid, 10 * n + 1, 10 * n + 1, px, 1.0, 1, f"{n}a"))
    kernel.submit(SubmitOrder(sid, iid, f"c{n}", side, qty, 10 * n + 2, 10 * n + 2))
    kernel.process(Trade(iid, 10 * n + 3, 10 * n + 3, px, 1.0, 1, f"{n}b"))


async def _pnl_after_a_and_b_traded(kernel: Kernel, then: list[Any]) -> tuple[str, str]:
    """/pnl and the daily summary once a bought 0.03 at 28,000, b sold 0.01 at 28,100 and a sold 0.01 at 28,200 on
    ``kernel`` (:func:`_kernel_of_a_and_b`), and the messages ``then`` were processed."""
    async with FakeBotApi(TOKEN) as api:
        hooks = await _started_hooks(api, kernel)
        kernel.start()
        orders = [("a", OrderSide.BUY, 0.03, 28_000.0), ("b", OrderSide.SELL, 0.01, 28_100.0),
                  ("a", OrderSide.SELL, 0.01, 28_200.0)]
        for n, order in enumerate(orders):
            _market_order_filled(kernel, n, *order)
        for message in then:
            kernel.process(message)
        text, summary = hooks.pnl_text(), hooks.daily_summary()
        await hooks.stop("test done")
    return text, summary


async def test_positions_of_an_instrument_two_strategies_trade_give_each_strategys_share() -> None:
    """Strategies a and b on one BTCUSDT perpetual: a buys 0.03 at 28,000, b sells 0.01 at 28,100, a sells 0.01 at
    28,200. /positions (and the daily summary) said only the account's net, "0.01 @ 28000", and "flat" once a and b
    held 0.01 and -0.01: an operator of one strategy could not tell what it held. Each strategy's share (a 0.02,
    b -0.01; then a 0.01, b -0.01 on a flat account) is now listed under the net position."""
    kernel, _ = _kernel_of_a_and_b()
    async with FakeBotApi(TOKEN) as api:
        hooks = await _started_hooks(api, kernel)
        kernel.start()
        answers = []
        orders = [("a", OrderSide.BUY, 0.03, 28_000.0), ("b", OrderSide.SELL, 0.01, 28_100.0),
                  ("a", OrderSide.SELL, 0.01, 28_200.0), ("a", OrderSide.SELL, 0.01, 28_150.0)]
        for n, order in enumerate(orders):
            _market_order_filled(kernel, n, *order)
            answers.append(hooks.positions_text())
        summary = hooks.daily_summary()
        await hooks.stop("test done")
    assert answers[2] == "BTCUSDT.BINANCE_USDM: 0.01 @ 28000 (last 28200)\n  strategies: a 0.02, b -0.01", answers
    assert answers[3] == "BTCUSDT.BINANCE_USDM: 0 (last 28150)\n  strategies: a 0.01, b -0.01", answers
    assert "BTCUSDT.BINANCE_USDM: 0 (last 28150)\n  strategies: a 0.01, b -0.01" in summary


async def test_pnl_of_a_daemon_of_two_strategies_gives_each_strategys_share_summing_to_the_accounts() -> None:
    """Strategies a and b on one BTCUSDT perpetual (taker fee 0.04 %): a buys 0.03 at 28,000, b sells 0.01 at 28,100, a
    sells 0.01 at 28,200, the last trade 28,300. /pnl gave only the account's figures. Each strategy's own fills at
    average cost, by hand: a realized 0.01 * 200 = 2.00, unrealized 0.02 * 300 = 6.00, fees 0.0004 * (840 + 282) =
    0.4488; b realized 0, unrealized -0.01 * 200 = -2.00, fees 0.0004 * 281 = 0.1124. The account (its positions
    netted): realized 1.00 + 2.00 = 3.00, unrealized 0.01 * 300 = 3.00, fees 0.5612: the strategies' realized plus
    unrealized (2 + 6 + 0 - 2 = 6) and fees sum to the account's."""
    kernel, iid = _kernel_of_a_and_b(maker_fee=0.0002, taker_fee=0.0004)
    text, summary = await _pnl_after_a_and_b_traded(kernel, [Trade(iid, 100, 100, 28_300.0, 1.0, 1, "last")])
    lines = text.splitlines()
    assert lines[1] == "realized 3.00, unrealized 3.00, fees 0.56, funding 0.00, interest 0.00", text
    assert lines[3:] == [
        "strategies:",
        "  a: realized 2.00, unrealized 6.00, fees 0.45, funding 0.00, interest 0.00",
        "  b: realized 0.00, unrealized -2.00, fees 0.11, funding 0.00, interest 0.00",
    ], text
    assert text in summary


async def test_pnl_of_two_strategies_splits_a_perpetuals_funding_by_each_ones_position() -> None:
    """Strategies a and b on one BTCUSDT perpetual (no fees): a buys 0.03 at 28,000, b sells 0.01 at 28,100, a sells
    0.01 at 28,200 (a holds 0.02, b -0.01, the account 0.01); then a mark of 30,000 and a funding rate of 0.1 % due
    then. By hand: the account pays 0.01 * 30,000 * 0.001 = 0.30; a pays 0.02 * 30,000 * 0.001 = 0.60 and b, short,
    receives 0.01 * 30,000 * 0.001 = 0.30 (-0.30), summing to the account's. At the mark: a realized 0.01 * 200 =
    2.00, unrealized 0.02 * 2,000 = 40.00; b unrealized -0.01 * 1,900 = -19.00; the account realized 1.00 + 2.00 =
    3.00, unrealized 0.01 * 2,000 = 20.00 (2 + 40 - 19 = 23 = 3 + 20)."""
    kernel, iid = _kernel_of_a_and_b()
    text, _ = await _pnl_after_a_and_b_traded(
        kernel, [MarkPrice(iid, 100, 100, 30_000.0, math.nan), FundingRate(iid, 100, 100, 0.001, 100)]
    )
    assert [round(f.payment, 10) for f in kernel.result.funding] == [0.3]
    lines = text.splitlines()
    assert lines[1] == "realized 3.00, unrealized 20.00, fees 0.00, funding 0.30, interest 0.00", text
    assert lines[3:] == [
        "strategies:",
        "  a: realized 2.00, unrealized 40.00, fees 0.00, funding 0.60, interest 0.00",
        "  b: realized 0.00, unrealized -19.00, fees 0.00, funding -0.30, interest 0.00",
    ], text


async def test_pnl_of_two_strategies_lists_one_with_no_fill_at_zero() -> None:
    """Strategies a and b, only a trading (a buys 0.01 at 28,000, last 28,300): b, with no fill, is listed at zero
    rather than left out, and a's figures are the account's (unrealized 0.01 * 300 = 3.00)."""
    kernel, iid = _kernel_of_a_and_b()
    async with FakeBotApi(TOKEN) as api:
        hooks = await _started_hooks(api, kernel)
        kernel.start()
        _market_order_filled(kernel, 0, "a", OrderSide.BUY, 0.01, 28_000.0)
        kernel.process(Trade(iid, 100, 100, 28_300.0, 1.0, 1, "last"))
        text = hooks.pnl_text()
        await hooks.stop("test done")
    assert text.splitlines()[1:] == [
        "realized 0.00, unrealized 3.00, fees 0.00, funding 0.00, interest 0.00",
        text.splitlines()[2],
        "strategies:",
        "  a: realized 0.00, unrealized 3.00, fees 0.00, funding 0.00, interest 0.00",
        "  b: realized 0.00, unrealized 0.00, fees 0.00, funding 0.00, interest 0.00",
    ], text


async def test_a_token_revoked_mid_run_stops_the_poller_with_one_error_and_the_daemon_trades_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The bot token revoked at @BotFather while a paper daemon ran: every ``getUpdates`` and ``getMe`` answered 401
    and the poller asked again for ever (a WARNING each time, backing off to 30 s), with nothing in ``/metrics`` or
    ``/health``; only the start checked the token. Now the first 401 is one ERROR naming ``ops.telegram.token_env``
    and the variable (never the token), the poller stops (no Bot API poll after it), the daemon goes on taking market
    data, and ``/metrics`` and ``/health`` say the token was refused."""
    from prometheus_client.parser import text_string_to_metric_families

    monkeypatch.setenv("TB_TEST_TELEGRAM_TOKEN", TOKEN)
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING", format="{level} {message}")
    gate = OnDemand()
    seen: list[Trade] = []
    try:
        async with FakeBotApi(TOKEN) as api, served_usdm(speed=None, on_demand=gate) as srv:
            telegram = {"chat_ids": [OPERATOR], "token_env": "TB_TEST_TELEGRAM_TOKEN", "base_url": api.base_url,
                        "poll_timeout": 1}  # fmt: skip
            node = PaperNode(config_of(usdm_paper(srv, {"port": 0, "telegram": telegram})), handle_signals=False)
            node.kernel.bus.subscribe(Trade, seen.append)
            bot = node.ops.telegram  # type: ignore[union-attr]
            assert bot is not None
            task = asyncio.create_task(node.run())
            try:
                # the polls first, the capture held: waiting for them while it streams could send it all before the 401
                await until(lambda: bot.polls >= 2, 30.0)
                await gate.until(lambda: len(seen) >= 5)
                api.token = "654321:revoked"  # every call with the daemon's token is answered 401 from now on
                await until(lambda: bot.token_refused and not bot.polling, 30.0)
                polls = [m for m in api.requests if m in ("getMe", "getUpdates")]
                before = len(seen)
                await gate.until(lambda: len(seen) >= before + 20)  # the daemon still takes market data
                server = node.ops.server  # type: ignore[union-attr]
                assert server is not None
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=10.0) as http:
                    metrics = (await http.get("/metrics")).text
                    health = (await http.get("/health")).json()
            finally:
                node.stop("test done")
                await asyncio.wait_for(task, 30)
            assert [m for m in api.requests if m in ("getMe", "getUpdates")] == polls  # no poll after the 401
    finally:
        logger.remove(sink)
    scraped = {s.name: s.value for family in text_string_to_metric_families(metrics) for s in family.samples}
    assert scraped["tradebus_telegram_token_refused"] == 1.0
    assert health["telegram"] == {"polling": False, "token_refused": True}
    assert health["running"] is True
    errors = [line for line in lines if line.startswith("ERROR") and "401" in line]
    assert len(errors) == 1, lines
    assert "ops.telegram.token_env" in errors[0] and "TB_TEST_TELEGRAM_TOKEN" in errors[0], errors
    assert not [line for line in lines if "getUpdates failed" in line or "getMe failed" in line], lines
    assert not any(TOKEN in line for line in lines)
