"""How the live daemon stops when a strategy's hook raises on the account's events, the journal fails, or a step
of its shutdown raises.

Against the local Binance spot account emulator and the recorded public stream (all on 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import errno
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from tradebus.adapters.binance.private_emulator import BinancePrivateEmulator, MatchingProtocol, StreamFault
from tradebus.adapters.common.account_emulator import OPEN
from tradebus.adapters.common.recorder import read_frames
from tradebus.adapters.common.local_server import Fault, LocalVenueServer
from tradebus.engine.messages import OrderStatus, Trade
from tradebus.errors import DataError, StrategyError
from tradebus.execution.journal import Journal
from tradebus.node.daemon import PaperNode
from tradebus.node.live import ApiKeys, LiveNode, parse_live_config

from .live_harness import KEY, SECRET, until
from .node_testdata import BINANCE_INSTRUMENT, IID, SPOT_FRAMES, SPOT_SNAPSHOT, assert_journal_intact, binance_config

pytestmark = pytest.mark.usefixtures("_loguru_to_current_stderr")

SPOT = {**BINANCE_INSTRUMENT, "margin": False}
HOOKS = Path(__file__).resolve().parents[1] / "fixtures" / "hooks"
FAILURE = r"^strategy '{id}' {hook} at \S+Z: ZeroDivisionError: division by zero in {hook} \(at \S+{file}:\d+ in {func}\)$"


def failing(strategy_id: str, hook: str) -> dict[str, Any]:
    """The fixtures' strategy that buys at market on its first trade and raises in ``hook``."""
    return {"name": "hook_failures:FailsIn", "id": strategy_id, "instruments": [IID], "params": {"hook": hook},
            "module_dir": str(HOOKS)}


def resting(strategy_id: str, **params: Any) -> dict[str, Any]:
    """A limit buy far below the market on the first trade (:class:`tests.live.resting_strategy.RestingBuy`)."""
    return {"name": "tests.live.resting_strategy:RestingBuy", "id": strategy_id, "instruments": [IID], "params": params}


@asynccontextmanager
async def account_and_market(
    stream_faults: list[StreamFault] | None = None, market_faults: list[Fault] | None = None,
) -> AsyncIterator[tuple[BinancePrivateEmulator, LocalVenueServer]]:
    """The account emulator (its user stream's ``stream_faults``) and the public stream matching on it (its
    ``market_faults``): one account for several daemons in turn."""
    config = parse_live_config({"instruments": [SPOT], **_minimal()}, "<test>")
    emulator = BinancePrivateEmulator(KEY, SECRET, config.instrument_map(), {"USDT": 100_000.0}, None, stream_faults)
    async with emulator:
        protocol = MatchingProtocol(SPOT_SNAPSHOT, account=emulator, instrument_ids={"btcusdt": IID})
        async with LocalVenueServer(protocol, SPOT_FRAMES, market_faults or (), speed=4.0, lifetime=120.0) as srv:
            yield emulator, srv


def node_on(
    tmp_path: Path, emulator: BinancePrivateEmulator, srv: LocalVenueServer, strategies: list[dict[str, Any]], **live: Any
) -> LiveNode:
    """A live daemon (journaled in ``tmp_path``, cancel_on_stop unless ``live`` says otherwise), not yet running."""
    data = live_config_data(tmp_path, emulator, srv, strategies, **live)
    return LiveNode(parse_live_config(data, "<test>"), ApiKeys(SecretStr(KEY), SecretStr(SECRET)), handle_signals=False)


def live_config_data(
    tmp_path: Path, emulator: BinancePrivateEmulator, srv: LocalVenueServer, strategies: list[dict[str, Any]], **live: Any
) -> dict[str, Any]:
    """The config of :func:`node_on`'s daemon, as a mapping (``tradebus live`` reads it written as YAML)."""
    data = binance_config(srv.ws_url, srv.http_url, ["trade"], tmp=tmp_path, journal=True)
    del data["strategy"]
    data["strategies"] = strategies
    data["instruments"] = [SPOT]
    data["warm_up"] = False
    data["live"] = {
        "rest_url": emulator.rest_url, "ws_api_url": emulator.ws_api_url, "request_timeout": 1.0,
        "submit_timeout": 1.0, "cancel_timeout": 1.0, "retry_interval": 0.3, "not_found_grace": 2.0,
        "cancel_on_stop": True, "stop_timeout": 3.0, **live,
    }
    return data


@asynccontextmanager
async def live_node(
    tmp_path: Path, strategies: list[dict[str, Any]], stream_faults: list[StreamFault] | None = None
) -> AsyncIterator[tuple[LiveNode, BinancePrivateEmulator]]:
    """A live daemon (journaled, cancel_on_stop) on the account emulator and the public stream, not yet running."""
    async with account_and_market(stream_faults) as (emulator, srv):
        yield node_on(tmp_path, emulator, srv, strategies), emulator


def _minimal() -> dict[str, Any]:
    return {
        "strategy": {"name": "tradebus.strategies.tick_ema:TickEmaCross", "instruments": [IID], "params": {"fast": 2, "slow": 8, "quantity": 0.01}},
        "feeds": [{"venue": "binance", "market": "spot", "subscriptions": {IID: ["trade"]}}],
    }


async def run_until_it_stops(node: LiveNode, ready: Callable[[], bool] | None = None, timeout: float = 20.0) -> None:
    """Run ``node`` until it stops by itself; with ``ready``, stop it once ``ready()`` (the test's stop).

    Fails the test if neither happens within ``timeout`` seconds (the daemon then stopped, reason ``test timeout``),
    and if the daemon has not ended 30 s after its stop (its task then cancelled, and waited for 10 s more): a daemon
    that does not stop fails the test, naming that, rather than hang it. ``ready`` is asked once more after a loop
    stalled past the deadline (a cold Numba compile on a loaded machine): what it does then (a signal sent) is the
    stop. Raises what ``node.run()`` raised.
    """
    task = asyncio.create_task(node.run())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not task.done():
        if ready is not None and node.running.is_set() and ready():
            node.stop("test done")
            break
        if loop.time() >= deadline:
            # A daemon left running here ran on for the 30 s below, its timers still sending orders (a 20 ms one:
            # about 1,500 more), and was then cancelled.
            await asyncio.sleep(0.1)  # a signal ready() just sent is handled first: its stop is the daemon's
            node.stop("test timeout")
            break
        await asyncio.sleep(0.02)
    if not (await asyncio.wait({task}, timeout=30))[0]:
        task.cancel()  # asyncio.wait_for would wait for the cancelled task to end, however long that takes
        ended = bool((await asyncio.wait({task}, timeout=10))[0])
        pytest.fail(f"the daemon did not stop within 30 s of its stop ({len(node.kernel.orders.orders())} orders); "
                    + ("its task then cancelled, it ended" if ended else "nor 10 s after its task was cancelled"))
    task.result()
    if node.summary.stop_reason == "test timeout":
        pytest.fail(f"the daemon did not stop within {timeout:g} s"
                    + ("" if ready is None else " and the test's stop condition did not come true") + ": stopped by the test")


async def left_resting(tmp_path: Path, emulator: BinancePrivateEmulator, srv: LocalVenueServer, strategy_id: str) -> str:
    """Run a daemon (cancel_on_stop: false) until its strategy's resting buy is ACCEPTED, stop it; the buy's client id,
    left open at the venue."""
    first = node_on(tmp_path, emulator, srv, [resting(strategy_id)], cancel_on_stop=False)
    strategy = first.kernel.strategies[0]

    def accepted() -> bool:
        placed = strategy.placed  # type: ignore[attr-defined]
        return bool(placed) and first.kernel.orders.order(placed).status is OrderStatus.ACCEPTED

    await run_until_it_stops(first, accepted)
    placed: str = strategy.placed  # type: ignore[attr-defined]
    assert open_at_venue(emulator) == [placed]
    return placed


def open_at_venue(emulator: BinancePrivateEmulator) -> list[str]:
    return sorted(coid for coid, rec in emulator.orders.items() if rec.status in OPEN)


def assert_journal_whole(node: LiveNode) -> None:
    """The journal was closed (a new daemon opens it exclusively) and holds every order as the daemon left it."""
    again = PaperNode(node.config, handle_signals=False)
    try:
        again.journal.replay(again.kernel.orders, again.kernel.portfolio, again.clock.now_ns())  # type: ignore[union-attr]
        assert {o.client_order_id: o.filled_qty for o in again.kernel.orders.orders()} == {
            o.client_order_id: o.filled_qty for o in node.kernel.orders.orders()
        }
    finally:
        assert again.journal is not None
        again.journal.close()


async def test_a_strategy_raising_in_on_order_filled_on_a_live_fill_stops_the_daemon_with_a_strategy_error(
    tmp_path: Path,
) -> None:
    """Before: 'VenueError: binance-user-stream: fatal connection error: ZeroDivisionError' (exit 1 as a venue failure)."""
    async with live_node(tmp_path, [resting("steady"), failing("flaky", "on_order_filled")]) as (node, emulator):
        steady = node.kernel.strategies[0]
        with pytest.raises(StrategyError, match=FAILURE.format(
            id="flaky", hook="on_order_filled", file="hook_failures.py", func="_maybe_fail"
        )) as info:
            await run_until_it_stops(node)
        assert isinstance(info.value.__cause__, ZeroDivisionError)
        assert node.summary.stop_reason.startswith("strategy 'flaky' failed in on_order_filled: ZeroDivisionError: ")
        fills = node.kernel.result.fills
        assert [(f.strategy_id, f.quantity) for f in fills] == [("flaky", 0.001)]  # the fill was booked
        # cancel_on_stop: the resting order was canceled at the venue, and the daemon saw it
        assert steady.placed and emulator.orders[steady.placed].status is OrderStatus.CANCELED  # type: ignore[attr-defined]
        assert node.kernel.orders.order(steady.placed).status is OrderStatus.CANCELED  # type: ignore[attr-defined]
        assert open_at_venue(emulator) == []
    assert_journal_whole(node)


async def test_a_strategy_raising_on_the_venue_s_answer_to_an_order_stops_the_daemon_with_a_strategy_error(
    tmp_path: Path,
) -> None:
    """The acknowledgement of the REST answer reaches on_order_accepted in the request's task (the user stream's
    report of the new order is dropped). Before: the task's exception was reported only when asyncio freed the
    task, and the strategy keeps it: the daemon traded on."""
    drop_new = [StreamFault("drop", "executionReport", at=0)]
    async with live_node(tmp_path, [resting("flaky", fail_in="on_order_accepted")], drop_new) as (node, emulator):
        with pytest.raises(StrategyError, match=FAILURE.format(
            id="flaky", hook="on_order_accepted", file="resting_strategy.py", func="on_order_accepted"
        )):
            await run_until_it_stops(node)
        assert node.summary.stop_reason.startswith("strategy 'flaky' failed in on_order_accepted: ZeroDivisionError: ")
        placed = node.kernel.strategies[0].placed  # type: ignore[attr-defined]
        assert emulator.orders[placed].status is OrderStatus.CANCELED  # cancel_on_stop
        assert open_at_venue(emulator) == []
    assert_journal_whole(node)


def fail_journal(node: LiveNode) -> None:
    """Make every later write of the daemon's journal fail in SQLite, as on a full disk (SQLITE_READONLY here)."""
    assert node.journal is not None
    node.journal._db.execute("PRAGMA query_only = ON")  # noqa: SLF001 - a real SQLite failure of the journal's own writes


async def test_a_stop_after_the_journal_failed_still_cancels_the_open_orders_at_the_venue(tmp_path: Path) -> None:
    """Before: the stop's first CancelOrder raised the journal's error: no cancel was sent, the order stayed
    open at the venue, and the shutdown ended there."""
    async with live_node(tmp_path, [resting("a"), resting("b", price=10_001.0)]) as (node, emulator):
        placed = [strategy.placed for strategy in node.kernel.strategies]  # type: ignore[attr-defined]

        def accepted_then_fail() -> bool:
            placed[:] = [strategy.placed for strategy in node.kernel.strategies]  # type: ignore[attr-defined]
            if not all(placed) or any(node.kernel.orders.order(c).status is not OrderStatus.ACCEPTED for c in placed):
                return False
            fail_journal(node)
            return True

        with pytest.raises(DataError, match=r"^journal \S+journal.sqlite: cannot write it \(SQLITE_READONLY: "):
            await run_until_it_stops(node, accepted_then_fail)
        assert open_at_venue(emulator) == [] and [emulator.orders[c].status for c in placed] == [OrderStatus.CANCELED] * 2
        # the daemon saw both canceled: the user stream outlived the journal's failure
        assert node.kernel.orders.open_orders() == []
        assert node.summary.stop_reason == "test done" and node.summary.stopped_ns > 0  # the shutdown went to its end
    Journal(tmp_path / "journal.sqlite", exclusive=True).close()  # closed by the daemon


async def test_a_strategy_submitting_in_on_stop_after_the_journal_failed_does_not_end_the_shutdown(tmp_path: Path) -> None:
    """Before: the journal's error of the on_stop order escaped Kernel.stop and ended the shutdown there (no
    summary, no 'daemon stopped', the operator's stop hooks not called)."""
    async with live_node(tmp_path, [resting("steady", on_stop_price=10_002.0)]) as (node, emulator):
        steady = node.kernel.strategies[0]

        def accepted_then_fail() -> bool:
            placed = steady.placed  # type: ignore[attr-defined]
            if not placed or node.kernel.orders.order(placed).status is not OrderStatus.ACCEPTED:
                return False
            fail_journal(node)
            return True

        with pytest.raises(DataError, match=r"^journal \S+journal.sqlite: cannot write it \(SQLITE_READONLY: "):
            await run_until_it_stops(node, accepted_then_fail)
        assert list(emulator.orders) == [steady.placed]  # the on_stop order was not sent  # type: ignore[attr-defined]
        assert open_at_venue(emulator) == []
        summary = node.summary
        assert summary.stop_reason == "test done" and summary.stopped_ns > 0 and summary.orders == 2
    Journal(tmp_path / "journal.sqlite", exclusive=True).close()  # closed by the daemon


async def test_a_strategy_raising_on_a_fill_missed_while_down_stops_the_restarted_daemon_with_a_strategy_error(
    tmp_path: Path,
) -> None:
    """The start-up reconciliation books the fill from the venue's trade history and on_order_filled raises. Before:
    its task ended with the ZeroDivisionError unseen: the balances were never compared, the instrument stayed held
    ('live start-up: reconciling positions with the venue') and the daemon ran on, trading nothing, without an error."""
    async with account_and_market() as (emulator, srv):
        placed = await left_resting(tmp_path, emulator, srv, "flaky")
        t = max(time.time_ns(), emulator.clock.now_ns()) + 10**9
        emulator.on_trade(Trade(IID, t, t, 9_999.0, 1.0, -1, "while-down"))  # nobody listens
        assert emulator.orders[placed].status is OrderStatus.FILLED

        second = node_on(tmp_path, emulator, srv, [resting("flaky", fail_in="on_order_filled")])
        with pytest.raises(StrategyError, match=FAILURE.format(
            id="flaky", hook="on_order_filled", file="resting_strategy.py", func="on_order_filled"
        )) as info:
            await run_until_it_stops(second, timeout=10.0)
        assert isinstance(info.value.__cause__, ZeroDivisionError)
        assert second.summary.stop_reason.startswith("strategy 'flaky' failed in on_order_filled: ZeroDivisionError: ")
        assert [f.client_order_id for f in second.kernel.result.fills] == [placed]  # booked, once
        assert second.kernel.orders.order(placed).status is OrderStatus.FILLED  # type: ignore[union-attr]
        assert open_at_venue(emulator) == []
    assert_journal_whole(second)


async def test_a_strategy_raising_on_a_fill_a_reconciliation_round_applies_stops_the_daemon_with_a_strategy_error(
    tmp_path: Path,
) -> None:
    """The order fills at the venue, the stream's report of the fill lost; the venue's answer to a query of it is
    handed to the venue (as the start-up does with the venue's open orders), so the round's query applies it at
    once and on_order_filled raises inside the round. Before: 'reconciliation round 1 failed: ZeroDivisionError',
    a warning, and the daemon traded on."""
    drop_fill = [StreamFault("drop", "executionReport", at=1)]
    async with account_and_market(drop_fill) as (emulator, srv):
        node = node_on(tmp_path, emulator, srv, [resting("flaky", fail_in="on_order_filled")], reconcile_interval=4.0)
        strategy = node.kernel.strategies[0]

        def accepted() -> bool:
            placed = strategy.placed  # type: ignore[attr-defined]
            return bool(placed) and node.kernel.orders.order(placed).status is OrderStatus.ACCEPTED

        running = asyncio.create_task(run_until_it_stops(node))
        await until(accepted, timeout=15.0)
        order = node.kernel.orders.order(strategy.placed)  # type: ignore[attr-defined]
        t = max(time.time_ns(), emulator.clock.now_ns()) + 10**6
        emulator.on_trade(Trade(IID, t, t, 9_999.0, 1.0, -1, "fills-it"))
        assert emulator.orders[order.client_order_id].status is OrderStatus.FILLED
        node.venue.answer(await node.venue.api.query(order))
        assert node.reconciler.rounds == 0  # the first round (4 s after the start) takes the answer
        with pytest.raises(StrategyError, match=FAILURE.format(
            id="flaky", hook="on_order_filled", file="resting_strategy.py", func="on_order_filled"
        )) as info:
            await running
        assert isinstance(info.value.__cause__, ZeroDivisionError)
        assert node.summary.stop_reason.startswith("strategy 'flaky' failed in on_order_filled: ZeroDivisionError: ")
        assert node.reconciler.rounds == 1
        assert [f.client_order_id for f in node.kernel.result.fills] == [order.client_order_id]
        assert open_at_venue(emulator) == []
    assert_journal_whole(node)


def test_a_live_shutdown_whose_reconciler_fails_to_close_still_cancels_closes_the_journal_and_writes_the_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``reconciler.aclose()`` raising in the shutdown skipped the paper shutdown: the resting order stayed open at
    the venue (cancel_on_stop), the strategies were not stopped and ``node.json`` said the daemon never stopped.
    ``tradebus live``'s own path: config file, keys from the environment, outputs."""
    import csv
    import json
    import threading

    import yaml

    from tradebus.node.live import run_live
    from tradebus.node.reconcile import Reconciler

    ready = threading.Event()
    stop: list[Any] = []
    shared: dict[str, Any] = {}

    def servers() -> None:
        async def main() -> None:
            async with account_and_market() as (emulator, srv):
                shared.update(data=live_config_data(tmp_path, emulator, srv, [resting("steady")]), emulator=emulator)
                done = asyncio.Event()
                stop.append((asyncio.get_running_loop(), done))
                ready.set()
                await done.wait()

        asyncio.run(main())

    close = Reconciler.aclose

    async def aclose_failing(self: Reconciler) -> None:
        await close(self)
        raise RuntimeError("reconciler: closing failed (test)")

    monkeypatch.setattr(Reconciler, "aclose", aclose_failing)
    thread = threading.Thread(target=servers, daemon=True)
    thread.start()
    assert ready.wait(30)
    out = tmp_path / "out"
    try:
        path = tmp_path / "live.yaml"
        path.write_text(yaml.safe_dump(shared["data"]))
        env = {"TRADEBUS_BINANCE_API_KEY": KEY, "TRADEBUS_BINANCE_API_SECRET": SECRET}
        with pytest.raises(RuntimeError, match=r"^reconciler: closing failed \(test\)$"):
            run_live(path, out, max_seconds=4.0, environ=env)
    finally:
        loop, done = stop[0]
        loop.call_soon_threadsafe(done.set)
        thread.join(30)
    emulator = shared["emulator"]
    assert len(emulator.orders) == 1 and open_at_venue(emulator) == []  # cancel_on_stop canceled the resting buy
    node = json.loads((out / "node.json").read_text())
    assert node["stop_reason"].startswith("max_seconds") and node["stopped_ns"] > node["started_ns"] > 0
    with (out / "orders.csv").open(newline="") as f:
        assert [row["status"] for row in csv.DictReader(f)] == ["CANCELED"]
    assert not (out / "INCOMPLETE").exists()
    assert_journal_intact(tmp_path / "journal.sqlite")


async def test_a_live_daemon_whose_venue_fails_to_close_still_closes_its_recording(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``venue.aclose()`` raising (ENOSPC, injected after the real close) in LiveNode.run's last steps skipped the
    recording's close: the file stayed open, what came since its last flush (up to 1 s: run:stop, the user stream's
    last frames) unwritten, lost when the process ended. Now every step runs and
    the close's error is raised after them."""
    async with account_and_market() as (emulator, srv):
        data = live_config_data(tmp_path, emulator, srv, [resting("steady")])
        data["record"] = str(tmp_path / "frames.jsonl.gz")
        node = LiveNode(parse_live_config(data, "<test>"), ApiKeys(SecretStr(KEY), SecretStr(SECRET)), handle_signals=False)
        aclose = node.venue.aclose

        async def aclose_failing() -> None:
            await aclose()
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(node.venue, "aclose", aclose_failing)
        steady = node.kernel.strategies[0]

        def accepted() -> bool:
            placed = steady.placed  # type: ignore[attr-defined]
            return bool(placed) and node.kernel.orders.order(placed).status is OrderStatus.ACCEPTED

        with pytest.raises(OSError, match="No space left on device"):
            await run_until_it_stops(node, accepted)
    recording = node._recording
    assert recording is not None and recording.closed  # flushed whole, its gzip trailer written
    runs = [conn for _, conn, _ in read_frames(tmp_path / "frames.jsonl.gz", runs=True)]
    assert runs[-1] == "run:stop", runs[-5:]
    assert node.summary.stop_reason == "test done" and node.summary.stopped_ns > 0
    Journal(tmp_path / "journal.sqlite", exclusive=True).close()  # closed by the daemon


async def test_a_live_daemon_cancelled_as_its_shutdown_begins_still_cancels_its_orders_and_closes_its_files(
    tmp_path: Path,
) -> None:
    """The daemon's task cancelled as its shutdown began (``asyncio.run`` ending on a second Ctrl-C, a caller's
    timeout): the cancellation met the shutdown's first await, the wait for the reconciliation's tasks, which ran
    in no step, so every later step was skipped: with ``cancel_on_stop`` the resting order was left working at the
    venue, ``on_stop`` never called, ``run:stop`` never recorded. Every await of the shutdown is in a step now:
    the order is canceled, the stop recorded, the files closed, and ``run()`` ends cancelled."""
    from loguru import logger

    def cancel_at_the_shutdown(message: Any) -> None:
        if message.record["message"].startswith("live daemon stopping"):
            task = asyncio.current_task()  # the daemon's: the shutdown logs this line on it, then awaits
            assert task is not None
            task.cancel()

    async with account_and_market() as (emulator, srv):
        data = live_config_data(tmp_path, emulator, srv, [resting("steady")])
        data["record"] = str(tmp_path / "frames.jsonl.gz")
        node = LiveNode(parse_live_config(data, "<test>"), ApiKeys(SecretStr(KEY), SecretStr(SECRET)), handle_signals=False)
        steady = node.kernel.strategies[0]

        def accepted() -> bool:
            placed = steady.placed  # type: ignore[attr-defined]
            return bool(placed) and node.kernel.orders.order(placed).status is OrderStatus.ACCEPTED

        canceller = logger.add(cancel_at_the_shutdown, level="INFO")
        try:
            with pytest.raises(asyncio.CancelledError):
                await run_until_it_stops(node, accepted)
        finally:
            logger.remove(canceller)
        placed = steady.placed  # type: ignore[attr-defined]
        assert emulator.orders[placed].status is OrderStatus.CANCELED  # not left working at the venue
    assert node.kernel.orders.order(placed).status is OrderStatus.CANCELED and node.left_at_venue == {}
    runs = [conn for _, conn, _ in read_frames(tmp_path / "frames.jsonl.gz", runs=True)]
    assert runs[-1] == "run:stop", runs[-5:]  # recorded, and the recording closed: read to its end
    assert node.summary.stop_reason == "test done" and node.summary.stopped_ns > 0
    assert_journal_intact(tmp_path / "journal.sqlite")


async def test_trades_released_at_the_stop_from_behind_a_trade_gap_reach_no_live_strategy(tmp_path: Path) -> None:
    """A paper daemon stopped while fetching a trade gap releases the trades held behind it at its stop, as the
    replay of its recording does, and its strategy may decide on them; a live daemon's would send real orders after
    'live daemon stopping'. The live daemon drops them (counted ``after_stop``): the buy decided on the 310th trade,
    held behind the lost 300th, is never sent."""
    from tradebus.adapters.common.local_server import FaultKind

    from .test_node_trade_gaps import CAPTURE_TRADES, _pending_gap

    submit_on = CAPTURE_TRADES[310][0]
    strategy = {"name": "tests.live.test_node_trade_gaps:OnTradeIds", "id": "on_ids", "instruments": [IID],
                "params": {"price": 61829.9, "submit_on": submit_on}}
    answer = asyncio.Event()
    asked: list[str] = []

    async def http_gate(path: str) -> None:
        if "rades" in path:  # the fetch of the lost trade, answered once the daemon has stopped
            asked.append(path)
            await answer.wait()

    config = parse_live_config({"instruments": [SPOT], **_minimal()}, "<test>")
    emulator = BinancePrivateEmulator(KEY, SECRET, config.instrument_map(), {"USDT": 100_000.0}, None, None)
    async with emulator:
        protocol = MatchingProtocol(SPOT_SNAPSHOT, account=emulator, instrument_ids={"btcusdt": IID})
        fault = Fault(FaultKind.SKIP, at=300, match="@trade")
        async with LocalVenueServer(protocol, SPOT_FRAMES, [fault], http_gate=http_gate, lifetime=60.0) as srv:
            node = node_on(tmp_path, emulator, srv, [strategy])

            def held() -> bool:
                line = _pending_gap(node)
                return bool(asked) and line is not None and line.held is not None and len(line.held) >= 20

            try:
                await run_until_it_stops(node, held, timeout=60.0)
            finally:
                answer.set()
                await asyncio.sleep(0.05)
    assert asked and node.kernel.strategies[0].decided == []  # type: ignore[attr-defined]
    assert node.router.counts["after_stop"] >= 20
    assert emulator.orders == {}


async def test_run_until_it_stops_stops_a_daemon_whose_stop_condition_never_comes_true_and_fails_saying_so(
    tmp_path: Path,
) -> None:
    """Before: with a stop condition given, the helper let its deadline pass without stopping the daemon: it ran on
    for 30 s more (a 20 ms timer sending its orders meanwhile: 2,745 in one run under load), was cancelled, and the
    failure named a daemon that did not stop. It is stopped at the deadline, and the failure says why."""
    async with account_and_market() as (emulator, srv):
        node = node_on(tmp_path, emulator, srv, [resting("steady")])
        with pytest.raises(pytest.fail.Exception, match=r"^the daemon did not stop within 1 s and the test's stop "
                                                        r"condition did not come true: stopped by the test$"):
            await run_until_it_stops(node, lambda: False, timeout=1.0)
        assert node.summary.stop_reason == "test timeout" and open_at_venue(emulator) == []


async def test_run_until_it_stops_takes_the_test_stop_once_a_loop_stalled_past_its_deadline_runs_again(
    tmp_path: Path,
) -> None:
    """Before: a loop blocked past the deadline (a cold Numba compile on a loaded machine: 17 s in a run where the
    daemon had placed its five orders just before) ended the wait without asking the stop condition again: the test's
    SIGTERM was never sent, and the daemon, never stopped, sent 2,745 orders until its task was cancelled."""
    async with account_and_market() as (emulator, srv):
        node = node_on(tmp_path, emulator, srv, [resting("steady")])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10.0
        asked = 0

        def true_after_a_stall() -> bool:
            nonlocal asked
            asked += 1
            if asked == 1:  # the loop then blocked until past the deadline
                loop.call_soon(time.sleep, max(0.0, deadline - loop.time()) + 0.5)
            return asked > 1

        await run_until_it_stops(node, true_after_a_stall, timeout=10.0)
        assert asked == 2 and node.summary.stop_reason == "test done" and open_at_venue(emulator) == []
