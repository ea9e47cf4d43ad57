"""An exception raised in a strategy's hook in `tradebus replay` and in the paper daemon.

The replay ends with one message naming the strategy, the hook and the time; the daemon stops
as on a signal (its journal closed and whole) and raises the same error.
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from loguru import logger
from typer.testing import CliRunner

from tradebus.adapters.binance.emulator import BinanceProtocol
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.cli import app
from tradebus.errors import StrategyError, VenueError
from tradebus.execution.paper import PaperVenue
from tradebus.node.daemon import PaperNode

from .node_testdata import (
    IID, SPOT_CAPTURE, SPOT_FRAMES, SPOT_LINES, SPOT_SNAPSHOT, START_BOUND, ServedCapture, binance_config, config_of,
    kernels_compiled, run_node,
)

pytestmark = pytest.mark.usefixtures("_loguru_to_current_stderr", "compiled_kernels")

HOOKS = Path(__file__).resolve().parents[1] / "fixtures" / "hooks"


def entry(strategy_id: str, **params: Any) -> dict[str, Any]:
    return {"name": "hook_failures:FailsIn", "id": strategy_id, "instruments": [IID], "params": params,
            "module_dir": str(HOOKS)}


def with_strategies(data: dict[str, Any], *strategies: dict[str, Any]) -> dict[str, Any]:
    del data["strategy"]
    data["strategies"] = list(strategies)
    return data


def iso(ts_ns: int) -> str:
    seconds, rest = divmod(ts_ns, 1_000_000_000)
    text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{rest:09d}".rstrip("0") if rest else "") + "Z"


def test_replay_names_the_second_instance_failing_in_on_trade_with_the_trade_time(tmp_path: Path) -> None:
    data = with_strategies(binance_config(None, None, ["trade"]), entry("steady"), entry("flaky", hook="on_trade", at=5))
    config = tmp_path / "paper.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    res = CliRunner().invoke(
        app, ["replay", str(SPOT_CAPTURE), "--config", str(config), "--out", str(tmp_path / "o")], catch_exceptions=False
    )
    text = " ".join(res.output.split())
    fifth_trade = [recv for recv, raw in SPOT_LINES if "@trade" in raw][4]
    assert res.exit_code == 1, text
    assert (f"error: strategy 'flaky' on_trade at {iso(fifth_trade)}: ZeroDivisionError: division by zero in "
            f"on_trade (at {HOOKS / 'hook_failures.py'}:") in text, text
    assert "hook_failures.py:" in text and "Traceback" not in text
    assert not (tmp_path / "o").exists()


def test_replay_names_the_strategy_time_and_line_of_a_cancel_tradebus_refuses_in_on_trade(tmp_path: Path) -> None:
    data = with_strategies(binance_config(None, None, ["trade"]), entry("flaky", hook="on_trade", at=5, error="cancel"))
    config = tmp_path / "paper.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    res = CliRunner().invoke(
        app, ["replay", str(SPOT_CAPTURE), "--config", str(config), "--out", str(tmp_path / "o")], catch_exceptions=False
    )
    text = " ".join(res.output.split())
    fifth_trade = [recv for recv, raw in SPOT_LINES if "@trade" in raw][4]
    line = next(n for n, src in enumerate((HOOKS / "hook_failures.py").read_text().splitlines(), 1) if "self.cancel(" in src)
    assert res.exit_code == 1, text
    assert (f"error: strategy 'flaky' on_trade at {iso(fifth_trade)}: unknown client_order_id 'no-such-order' "
            f"(at {HOOKS / 'hook_failures.py'}:{line} in _maybe_fail)") in text, text
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("hook", "params"), [("on_trade", {"at": 5}), ("on_timer", {"every": "50ms", "after_trades": 1}),
                                              ("on_stop", {})])
async def test_paper_daemon_stops_cleanly_and_raises_the_strategy_error(
    tmp_path: Path, hook: str, params: dict[str, Any]
) -> None:
    node: PaperNode | None = None

    async def run() -> None:
        nonlocal node
        # Bounds, not waits: the server lives, and the daemon may run, until the condition is met (a loaded machine
        # took more than 30 s).
        async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), SPOT_FRAMES, [], lifetime=START_BOUND) as srv:
            data = binance_config(srv.ws_url, srv.http_url, ["trade"], tmp=tmp_path, journal=True)
            strategies = (entry("steady"), entry("flaky", hook=hook, **params))
            node = PaperNode(config_of(with_strategies(data, *strategies)), handle_signals=False)
            trades = node.kernel.strategies[0].calls  # type: ignore[attr-defined]
            await run_node(node, lambda: trades.get("on_trade", 0) >= 20 if hook == "on_stop" else False,
                           timeout=START_BOUND)

    with pytest.raises(StrategyError, match=rf"^strategy 'flaky' {hook} at \S+Z: ZeroDivisionError: division by zero "
                       rf"in {hook} \(at \S+hook_failures.py:\d+ in _maybe_fail\)$") as info:
        await run()
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    assert node is not None
    if hook != "on_stop":
        # it stopped itself, not the test, and its reason names the error
        assert node.summary.stop_reason.startswith(f"strategy 'flaky' failed in {hook}: ZeroDivisionError: division by zero")
    orders = node.kernel.orders.orders()
    assert [o.strategy_id for o in orders] == ["steady", "flaky"]  # each bought once on its first trade
    # The journal was closed (a new daemon opens it exclusively) and holds the orders and fills.
    again = PaperNode(node.config, handle_signals=False)
    try:
        again._recover()  # noqa: SLF001 - the daemon's own recovery, as at its start
        assert [(o.client_order_id, o.filled_qty) for o in again.kernel.orders.orders()] == [
            (o.client_order_id, o.filled_qty) for o in orders
        ]
    finally:
        assert again.journal is not None
        again.journal.close()



@pytest.mark.parametrize(("hook", "raised", "started"), [("on_start", StrategyError, ["steady"]),
                                                         ("history_sizes", StrategyError, [])])
async def test_a_failed_start_is_the_error_raised_and_no_strategy_not_started_is_stopped(
    tmp_path: Path, hook: str, raised: type[Exception], started: list[str]
) -> None:
    """Strategies steady and late raising in on_stop, flaky between them raising in ``hook`` as the daemon starts them.

    flaky's on_start raising: the shutdown stopped flaky and late too, whose on_start never ran (late's on_stop
    raising there). flaky's history_sizes raising (in the kernel's prepare, before any on_start): the shutdown
    started the three strategies on the half-built kernel, then stopped them. The stop's reason was "stopped".
    Now only a strategy whose on_start returned is stopped (steady: its on_stop's error logged as secondary), the
    start's error is raised and is the stop's reason; history_sizes's is a StrategyError (was the bare exception).
    """
    node: PaperNode | None = None

    async def run() -> None:
        nonlocal node
        async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), SPOT_FRAMES, [], lifetime=60.0) as srv:
            data = binance_config(srv.ws_url, srv.http_url, ["trade"], tmp=tmp_path, journal=True)
            strategies = (entry("steady", hook="on_stop"), entry("flaky", hook=hook), entry("late", hook="on_stop"))
            node = PaperNode(config_of(with_strategies(data, *strategies)), handle_signals=False)
            await run_node(node, lambda: False, timeout=30.0)

    lines: list[str] = []
    sink = logger.add(lines.append, level="ERROR", format="{message}")
    try:
        with pytest.raises(raised, match=f"division by zero in {hook}"):
            await run()
    finally:
        logger.remove(sink)
    assert node is not None
    calls = {s.strategy_id: s.calls for s in node.kernel.strategies}  # type: ignore[attr-defined]
    begun = [*started, "flaky"] if hook == "on_start" else []
    assert [sid for sid, hooks in calls.items() if "on_start" in hooks] == begun
    assert [sid for sid, hooks in calls.items() if "on_stop" in hooks] == started
    assert "division by zero in " + hook in node.summary.stop_reason, node.summary.stop_reason
    log = " ".join(" ".join(lines).split())
    if started:
        assert "secondary error while stopping: strategy 'steady' on_stop at " in log, log
    assert "strategy 'late'" not in log, log
    assert node.journal is not None and node.journal.closed


def test_a_shutdown_error_after_a_strategy_failure_is_secondary_and_the_exit_is_the_failure_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``tradebus paper`` on the served capture: flaky raises in its 5th on_trade, then closing the venue raises
    (a full disk). The OSError replaced the strategy's error (a traceback, the failure never told); now the
    StrategyError is told (exit 1, ``error: strategy 'flaky' on_trade ...``) and the OSError logged as secondary."""

    def close_failing(self: PaperVenue) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(PaperVenue, "close", close_failing)
    kernels_compiled()  # the book kernels: compiled on the daemon's loop otherwise (warm_up off), past the server's life
    server = ServedCapture()
    server.start()
    try:
        assert server.ready.wait(10)
        data = with_strategies(binance_config(*server.urls, ["trade"]), entry("steady"),
                               entry("flaky", hook="on_trade", at=5))
        data["warm_up"] = False
        config = tmp_path / "paper.yaml"
        config.write_text(yaml.safe_dump(data), encoding="utf-8")
        res = CliRunner().invoke(app, ["paper", str(config), "--log-level", "ERROR"])
    finally:
        server.close()
    text = " ".join(res.output.split())
    assert not isinstance(res.exception, OSError), text
    assert res.exit_code == 1, text
    assert "error: strategy 'flaky' on_trade at " in text, text
    assert ("secondary error while stopping (OSError: [Errno 28] No space left on device); the error raised is the "
            "one that stopped the daemon: StrategyError: strategy 'flaky' on_trade at ") in text, text


@pytest.mark.parametrize("hook", ["history_sizes", "feature_specs"])
def test_paper_command_names_the_strategy_whose_preparing_hook_raised_as_the_daemon_starts(
    tmp_path: Path, hook: str
) -> None:
    """Was the bare ZeroDivisionError's traceback, exit 1. It is asked before any socket opens: no server is needed."""
    data = binance_config("ws://127.0.0.1:9/ws", "http://127.0.0.1:9", ["trade"], tmp=tmp_path, journal=True)
    config = tmp_path / "paper.yaml"
    config.write_text(yaml.safe_dump(with_strategies(data, entry("steady"), entry("flaky", hook=hook))))
    res = CliRunner().invoke(app, ["paper", str(config), "--max-seconds", "30", "--out", str(tmp_path / "o")])
    text = " ".join(res.output.split())
    line = next(n for n, src in enumerate((HOOKS / "hook_failures.py").read_text().splitlines(), 1)
                if "raise ZeroDivisionError" in src)
    assert res.exit_code == 1, text
    assert (f"error: strategy 'flaky' {hook}: ZeroDivisionError: division by zero in {hook} "
            f"(at {HOOKS / 'hook_failures.py'}:{line} in _maybe_fail)") in text, text
    assert "Traceback" not in text


async def test_a_feed_failure_is_the_error_raised_when_an_on_stop_then_raises(tmp_path: Path) -> None:
    """The feed fails (nothing listens at its URL and it may not reconnect: max_reconnects 0), the daemon stops, and
    steady's on_stop raises during the shutdown. The on_stop's StrategyError was raised (the feed's failure only in
    a log line): a strategy failure was preferred to the feed's after the shutdown, whenever it happened. Now the
    feed's error, what stopped the daemon, is raised and the on_stop's is logged as secondary."""
    with socket.socket() as sock:  # a port nothing listens on: bound, not listening, until the daemon has stopped
        sock.bind(("127.0.0.1", 0))
        url = f"127.0.0.1:{sock.getsockname()[1]}"
        data = binance_config(f"ws://{url}/stream", f"http://{url}", ["trade"], tmp=tmp_path, journal=True)
        data["feeds"][0]["max_reconnects"] = 0
        node = PaperNode(config_of(with_strategies(data, entry("steady", hook="on_stop"))), handle_signals=False)
        lines: list[str] = []
        sink = logger.add(lines.append, level="ERROR", format="{message}")
        try:
            with pytest.raises(VenueError, match=r"^binance-spot: gave up after 0 reconnect attempts") as info:
                await run_node(node, lambda: False, timeout=START_BOUND)
        finally:
            logger.remove(sink)
    assert not isinstance(info.value, StrategyError)
    assert node.summary.stop_reason.startswith("feed binance-spot failed: binance-spot: gave up after 0 reconnect"), (
        node.summary.stop_reason)
    assert "on_stop" in node.kernel.strategies[0].calls  # type: ignore[attr-defined]
    log = " ".join(" ".join(lines).split())
    assert "secondary error while stopping: strategy 'steady' on_stop at " in log, log
    assert node.journal is not None and node.journal.closed
