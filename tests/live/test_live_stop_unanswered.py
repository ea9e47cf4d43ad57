"""A live daemon stopping with ``live.cancel_on_stop`` whose cancels go unanswered tells each order's state at the venue.

At the stop's deadline (``live.stop_timeout``) every order still open here is queried; the log names each as
closed, open at the venue, or of unknown state, the journal holds what the answers said (UNKNOWN where none came),
and the daemon ends with :class:`~tradebus.errors.OrdersLeftAtVenue` (``tradebus live``: exit 4) when any is open
or unknown at the venue. Against the local Binance spot account emulator and the recorded public stream (all on
127.0.0.1); its faults make the venue hold a cancel unanswered, lose a cancel's answer, drop the stream's report
of the cancel, or fail the query.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from loguru import logger

from tradebus.adapters.binance.private_emulator import RestFault, StreamFault
from tradebus.engine.messages import OrderResolved, OrderSide, OrderStatus, Trade
from tradebus.errors import DataError, OrdersLeftAtVenue
from tradebus.execution.journal import Journal
from tradebus.node.live import _CHECK_LEFT_AT_VENUE, LiveNode

from .live_harness import IID, KEY, SECRET, harness, until
from .test_live_stop_failures import account_and_market, fail_journal, live_config_data, node_on, open_at_venue, resting, run_until_it_stops

pytestmark = pytest.mark.usefixtures("_loguru_to_current_stderr")

ROOT = Path(__file__).resolve().parents[2]
CANCEL = ("DELETE", "/api/v3/order")
QUERY = ("GET", "/api/v3/order")


@contextmanager
def logged() -> Iterator[list[str]]:
    """The daemon's log lines (``LEVEL message``) while in the block."""
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.rstrip("\n")), level="INFO", format="{level} {message}")
    try:
        yield lines
    finally:
        logger.remove(sink)


def placed_and_accepted(node: LiveNode) -> bool:
    placed = node.kernel.strategies[0].placed  # type: ignore[attr-defined]
    return bool(placed) and node.kernel.orders.order(placed).status is OrderStatus.ACCEPTED


def submit_on_its_way(node: LiveNode) -> bool:
    placed = node.kernel.strategies[0].placed  # type: ignore[attr-defined]
    return bool(placed) and node.venue.submit_ended_ns(placed) is None


async def stop_with_cancel_held(
    tmp_path: Path, *faults: RestFault | StreamFault, hold: bool = True, stop_timeout: float = 2.0,
    ready: Callable[[LiveNode], bool] = placed_and_accepted,
) -> tuple[LiveNode, str, list[str], list[str], BaseException | None]:
    """Run a daemon with one resting buy and stop it once ``ready`` (by default: once the order works); with ``hold``
    the venue holds its cancel unprocessed and unanswered (the request times out after live.request_timeout, 1 s)
    until the daemon has stopped; ``faults`` besides. Returns the daemon, the order's id, the orders open at the
    venue when the daemon had stopped, the log lines and what the run raised."""
    release = asyncio.Event()
    error: BaseException | None = None
    async with account_and_market() as (emulator, srv):
        node = node_on(tmp_path, emulator, srv, [resting("steady")], stop_timeout=stop_timeout)
        emulator.rest_faults += [RestFault("hold", *CANCEL, release=release)] if hold else []
        for fault in faults:
            (emulator.rest_faults if isinstance(fault, RestFault) else emulator.stream_faults).append(fault)  # type: ignore[arg-type]
        with logged() as lines:
            try:
                await run_until_it_stops(node, lambda: ready(node))
            except Exception as exc:  # noqa: BLE001 - the test judges it
                error = exc
            finally:
                at_stop = open_at_venue(emulator)
                release.set()
        placed = node.kernel.strategies[0].placed  # type: ignore[attr-defined]
        return node, placed, at_stop, lines, error


def journaled(node: LiveNode, client_order_id: str) -> list[str]:
    """The journal's entries of the order, in order (an ``OrderResolved`` with the status it resolved to)."""
    assert node.config.journal is not None
    journal = Journal(node.config.journal, exclusive=True)  # the daemon closed it
    try:
        return [
            type(e.message).__name__ + (f":{e.message.status}" if isinstance(e.message, OrderResolved) else "")
            for e in journal.entries() if getattr(e.message, "client_order_id", "") == client_order_id
        ]
    finally:
        journal.close()


def stop_errors(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("ERROR stopping")]


def stopping_lines(lines: list[str], placed: str) -> list[str]:
    """The stop's lines naming the order ``placed``, or counting the orders left, whatever their level."""
    return [line for line in lines if f"stopping: order {placed} " in line or " stopping with " in f" {line.split(' ', 1)[1]}"]


@pytest.mark.parametrize("stop_timeout", [2.0, 0.5])
async def test_a_cancel_the_venue_never_answered_leaves_its_order_named_open_at_the_venue_and_the_run_failing(
    tmp_path: Path, stop_timeout: float
) -> None:
    """Before: the query the cancel's timeout would send never went (the clock's timers stop before the stop's
    cancels); the daemon logged 'stopping with 1 order(s) still open at the venue' from its own state, unasked,
    and its run ended as a success. With a stop_timeout (0.5 s) shorter than the request's (1 s), the session
    closed with the cancel still on its way; now the query leaves once the cancel's request has ended."""
    node, placed, at_stop, lines, error = await stop_with_cancel_held(tmp_path, stop_timeout=stop_timeout)
    cancel_ended = next(n for n, line in enumerate(lines) if line.startswith(f"WARNING cancel of {placed}: no answer"))
    # the clock's timers have stopped: no cancel timeout queries it, the stop's deadline does
    assert lines[cancel_ended].endswith("; the daemon is stopping: the stop's deadline queries it if still open "
                                        "(live.cancel_on_stop), else a restart on the journal does")
    timed_out = lines.index(f"WARNING order {placed}: no cancel confirmed within live.stop_timeout ({stop_timeout:g} s) "
                            "of the stop; state UNKNOWN, querying the venue")
    assert cancel_ended < timed_out
    assert at_stop == [placed]
    assert isinstance(error, OrdersLeftAtVenue)
    assert str(error).startswith(
        f"live.cancel_on_stop: the daemon stopped with 1 order(s) open at the venue: ['{placed}']; 0 of unknown state: none"
    )
    assert stop_errors(lines) == [
        f"ERROR stopping: order {placed} (BTCUSDT.BINANCE): open at the venue (ACCEPTED, filled 0 of 0.001), as its "
        "query says: its cancel was sent and not confirmed",
        f"ERROR stopping with 1 order(s) open at the venue: ['{placed}']; 0 of unknown state: none",
    ]
    # one line each: before, a WARNING repeated the order ('... not confirmed canceled') and the count
    assert stopping_lines(lines, placed) == stop_errors(lines)
    assert node.kernel.orders.order(placed).status is OrderStatus.ACCEPTED
    # the venue's answer is journaled: a restart starts from it
    assert journaled(node, placed)[-3:] == ["CancelOrder", "OrderTimedOut", "OrderResolved:ACCEPTED"]


async def test_a_cancel_done_whose_answer_and_report_were_lost_is_found_canceled_journaled_and_the_run_ends_well(
    tmp_path: Path,
) -> None:
    """The venue canceled the order, but its answer came after the request's timeout and the stream's report was
    lost. Before: logged as 'still open at the venue' (an ERROR, false), the journal holding it working."""
    slow = RestFault("slow", *CANCEL, seconds=2.5)
    node, placed, at_stop, lines, error = await stop_with_cancel_held(
        tmp_path, slow, StreamFault("drop", "executionReport", at=1), hold=False
    )
    assert slow.fired and at_stop == [] and error is None
    assert stop_errors(lines) == []
    assert f"WARNING stopping: order {placed} (BTCUSDT.BINANCE): CANCELED at the venue, as its query says" in lines
    assert node.kernel.orders.order(placed).status is OrderStatus.CANCELED
    assert journaled(node, placed)[-3:] == ["CancelOrder", "OrderTimedOut", "OrderResolved:CANCELED"]


async def test_a_cancel_and_a_query_both_unanswered_leave_the_order_unknown_journaled_and_the_run_failing(
    tmp_path: Path,
) -> None:
    """Before: 'still open at the venue', though nothing said so; nothing journaled after the cancel. The warning of
    the stop's query left unanswered said 'the stop's deadline queries it if still open', though it was that query and
    none follows: it now says a restart on the journal does."""
    query_fails = RestFault("error5xx", *QUERY)
    node, placed, at_stop, lines, error = await stop_with_cancel_held(tmp_path, query_fails)
    assert query_fails.fired and at_stop == [placed]
    head = f"WARNING query of {placed}: no answer ("
    assert [line.split("); ", 1)[1] for line in lines if line.startswith(head)] == [
        "the daemon is stopping and made its last queries: a restart on the journal queries it if still open"
    ]
    assert isinstance(error, OrdersLeftAtVenue)
    assert f"0 order(s) open at the venue: none; 1 of unknown state: ['{placed}']" in str(error)
    assert stop_errors(lines) == [
        f"ERROR stopping: order {placed} (BTCUSDT.BINANCE): state at the venue unknown: its cancel was sent and not "
        "confirmed, and its query went unanswered within 1 s; journaled UNKNOWN (a restart queries it)",
        f"ERROR stopping with 0 order(s) open at the venue: none; 1 of unknown state: ['{placed}']",
    ]
    assert stopping_lines(lines, placed) == stop_errors(lines)
    assert node.kernel.orders.order(placed).status is OrderStatus.UNKNOWN
    assert journaled(node, placed)[-2:] == ["CancelOrder", "OrderTimedOut"]


async def test_an_order_whose_submit_was_on_its_way_at_the_stop_deadline_is_canceled_once_its_submit_ends(
    tmp_path: Path,
) -> None:
    """The venue takes the order at once but answers its submit 0.8 s later; the daemon stops meanwhile, with a
    stop_timeout (0.3 s) that runs out before the submit ends. Before: no cancel was ever sent; the order was
    queried after its submit ended and logged 'open at the venue (ACCEPTED ...), as its query says: its cancel
    was not done', left working at the venue and the run failing (exit 4)."""
    slow = RestFault("slow", "POST", "/api/v3/order", seconds=0.8)
    node, placed, at_stop, lines, error = await stop_with_cancel_held(
        tmp_path, slow, hold=False, stop_timeout=0.3, ready=submit_on_its_way
    )
    assert slow.fired
    assert at_stop == [] and error is None
    assert stop_errors(lines) == []
    assert node.kernel.orders.order(placed).status is OrderStatus.CANCELED
    assert "CancelOrder" in journaled(node, placed)


async def test_an_order_canceled_after_its_late_submit_whose_cancel_goes_unanswered_says_its_cancel_was_sent(
    tmp_path: Path,
) -> None:
    """As above, the venue holding the cancel sent once the submit ended: the query finds the order working, and
    the log says a cancel was sent and not confirmed (not that none was done)."""
    slow = RestFault("slow", "POST", "/api/v3/order", seconds=0.8)
    node, placed, at_stop, lines, error = await stop_with_cancel_held(
        tmp_path, slow, stop_timeout=0.3, ready=submit_on_its_way
    )
    assert at_stop == [placed]
    assert isinstance(error, OrdersLeftAtVenue)
    assert stop_errors(lines)[0] == (
        f"ERROR stopping: order {placed} (BTCUSDT.BINANCE): open at the venue (ACCEPTED, filled 0 of 0.001), as its "
        "query says: its cancel was sent and not confirmed"
    )
    assert journaled(node, placed)[-3:] == ["CancelOrder", "OrderTimedOut", "OrderResolved:ACCEPTED"]


async def test_a_query_answer_with_a_fill_and_a_close_after_the_journal_failed_is_logged_as_the_venue_answered(
    tmp_path: Path,
) -> None:
    """The order fills 0.0004 of 0.001 and is canceled at the venue, its cancel answered too late and both stream
    reports lost, after the journal failed: applying the query's answer stops at its fill (the journal raises).
    Before: logged 'open at the venue (PARTIALLY_FILLED, filled 0.0004 of 0.001), as its query says' (ERROR, false).
    Still open here, it was then logged a second time, 'stopping: order ... (venue id ...) ... PARTIALLY_FILLED: ...',
    and counted in 'stopping with 1 order(s) left open or of unknown state at the venue', though its query said
    CANCELED there; once is all: it stays in node.json's orders_left (open in the journal: a restart queries it)."""
    slow = RestFault("slow", *CANCEL, seconds=2.5)
    lost = [StreamFault("drop", "executionReport", at=n) for n in (1, 2)]  # the fill's and the cancel's reports
    async with account_and_market(lost) as (emulator, srv):
        emulator.venue.config = emulator.venue.config.model_copy(update={"trade_size_limit": True})
        node = node_on(tmp_path, emulator, srv, [resting("steady")], stop_timeout=2.0)
        emulator.rest_faults.append(slow)

        def filled_then_journal_failed(node: LiveNode) -> bool:
            if not placed_and_accepted(node):
                return False
            now = emulator.tick()
            emulator.match(Trade(IID, now, now, 9_000.0, 0.0004, -1, "own-fill"))
            fail_journal(node)
            return True

        with logged() as lines:
            with pytest.raises(DataError, match="cannot write it"):
                await run_until_it_stops(node, lambda: filled_then_journal_failed(node))
        placed = node.kernel.strategies[0].placed  # type: ignore[attr-defined]
        assert all(fault.fired for fault in lost) and slow.fired and open_at_venue(emulator) == []
    assert f"WARNING stopping: order {placed} (BTCUSDT.BINANCE): CANCELED at the venue, as its query says" in lines
    assert stop_errors(lines) == []
    assert node.left_at_venue == {}
    told = [line for line in lines if line.startswith(f"WARNING stopping: order {placed} ")]
    assert [line.split(": ")[1] for line in told] == [f"order {placed} (BTCUSDT.BINANCE)"] * 2  # not wholly applied; CANCELED
    assert not any("left open or of unknown state" in line for line in lines)
    assert [o["client_order_id"] for o in node.summary.orders_left] == [placed]


async def test_tradebus_live_exits_4_when_its_stop_leaves_an_order_open_at_the_venue(tmp_path: Path) -> None:
    """``tradebus live`` (a subprocess) stopped by SIGTERM while the venue holds its cancel. Before: exit 0."""
    release = asyncio.Event()
    async with account_and_market() as (emulator, srv):
        emulator.rest_faults.append(RestFault("hold", *CANCEL, release=release))
        config = tmp_path / "live.yaml"
        config.write_text(yaml.safe_dump(live_config_data(tmp_path, emulator, srv, [resting("steady")], stop_timeout=2.0)))
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TRADEBUS_BINANCE_API_KEY": KEY, "TRADEBUS_BINANCE_API_SECRET": SECRET}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tradebus.cli", "live", str(config), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=str(ROOT), env=env,
        )
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while not open_at_venue(emulator) and proc.returncode is None and loop.time() < deadline:
                await asyncio.sleep(0.05)
            placed = open_at_venue(emulator)
            assert len(placed) == 1, "the daemon placed no order"
            await asyncio.sleep(0.2)  # its acknowledgement reached the daemon
            proc.send_signal(signal.SIGTERM)
            out, err = await asyncio.wait_for(proc.communicate(), 60)
        finally:
            release.set()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    text = err.decode(errors="replace")
    assert proc.returncode == 4, text[-3000:]
    assert f"error: live.cancel_on_stop: the daemon stopped with 1 order(s) open at the venue: {placed}" in " ".join(text.split())


async def test_a_cancel_unanswered_while_the_daemon_runs_says_its_cancel_timeout_will_query() -> None:
    """The other side of the stop's message: the clock's timers run, so the cancel timeout is the one to query."""
    from tests.live.live_harness import harness, until
    from tradebus.engine.messages import CancelOrder, OrderSide

    async with harness(rest_faults=[RestFault("slow", *CANCEL, seconds=0.6)]) as h:  # answered after the 0.25 s timeout
        order = h.submit(OrderSide.BUY, 0.001, 20_000.0)
        await until(lambda: order.status is OrderStatus.ACCEPTED)
        coid = order.client_order_id
        with logged() as lines:
            h.kernel.execution.cancel(CancelOrder("s1", h.iid, coid, 0, 0))
            await until(lambda: any(line.startswith(f"WARNING cancel of {coid}: no answer") for line in lines), timeout=10)
    (unanswered,) = [line for line in lines if line.startswith(f"WARNING cancel of {coid}: no answer")]
    assert unanswered.endswith("; the cancel timeout will query")


async def test_a_second_ctrl_c_cutting_the_stops_cancels_short_names_each_order_left_at_the_venue(tmp_path: Path) -> None:
    """``tradebus live`` stopped by Ctrl-C, then Ctrl-C again while its cancel waits for the venue: ``asyncio.run``
    cancels the daemon's task, which ends the cancels' wait (exit 130). Before, only "canceling the open orders was cut
    short" was logged (a WARNING) and the order rested at the venue unnamed; now an ERROR names each order still open
    here, says its state at the venue is unknown and that a restart on the journal queries it."""
    release = asyncio.Event()
    async with account_and_market() as (emulator, srv):
        node = node_on(tmp_path, emulator, srv, [resting("steady")], stop_timeout=5.0)
        hold = RestFault("hold", *CANCEL, release=release)
        emulator.rest_faults.append(hold)
        with logged() as lines:
            task = asyncio.create_task(node.run())
            try:
                await until(lambda: node.running.is_set() and placed_and_accepted(node), timeout=20.0)
                node.stop("signal SIGINT")
                await until(lambda: "INFO stopping: canceling 1 open order(s)" in lines, timeout=10.0)
                await until(lambda: hold.fired, timeout=60.0)  # the cancel is at the venue, held there
                task.cancel()  # the second Ctrl-C: asyncio.run cancels the main task
                with pytest.raises(asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(task), 30)
            finally:
                at_stop = open_at_venue(emulator)
                release.set()
        placed = node.kernel.strategies[0].placed  # type: ignore[attr-defined]
    assert at_stop == [placed]
    assert stop_errors(lines) == [
        f"ERROR stopping: the cancels were cut short (a second signal): 1 order(s) not confirmed canceled, of unknown state "
        f"at the venue: ['{placed}'] (the journal holds them open; a restart on it queries them). {_CHECK_LEFT_AT_VENUE}"
    ]


async def test_a_drain_whose_timeout_runs_out_names_the_requests_still_unanswered() -> None:
    """The venue holds a submit unanswered (until the test releases it): ``LiveVenue.drain``, which a stopping daemon
    waits on (its cancels, its queries), returned at its timeout saying nothing, so the user never learnt which
    requests were left; it now logs one WARNING naming each and returns them. Held by the venue, the request is in
    flight at the timeout however loaded the machine (the client's own request timeout is 60 s)."""
    release = asyncio.Event()
    async with harness([RestFault("hold", "POST", "/api/v3/order", release=release)], request_timeout=60.0) as h:
        try:
            order = h.submit(OrderSide.BUY, 0.001, 50_000.0)
            await until(lambda: h.emulator.rest_faults[0].fired)
            with logged() as lines:
                left = await h.venue.drain(0.05, "stopping")
            assert left == [f"place:{order.client_order_id}"]
            # what else the harness logs meanwhile on a loaded machine (its streams' lines) is not the drain's
            assert [line for line in lines if "unanswered" in line] == [
                f"WARNING stopping: 1 request(s) to the venue still unanswered after 0.05 s: place:{order.client_order_id}"
            ], lines
        finally:
            release.set()
        with logged() as lines:
            assert await h.venue.drain(60.0) == []
        assert not [line for line in lines if "unanswered" in line]
        assert order.status is OrderStatus.ACCEPTED
