"""Crash recovery of the paper daemon from its SQLite journal.

A daemon process is killed with SIGKILL while trading, then restarted: it rebuilds its
orders and position from the journal, resolves the orders the killed process may have
been working (the simulated venue stopped with it: CANCELED, never re-sent), numbers new
orders after the journaled ones, and exits with status 0 on SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from tests.reaped import areaped
from tradebus.adapters.binance.emulator import BinanceProtocol, split_capture
from tradebus.adapters.common.recorder import iter_hftbacktest
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.engine.messages import FundingRate, OrderAccepted, OrderFilled, OrderSide, OrderStatus, OrderSubmitted, SubmitOrder
from tradebus.node.daemon import PaperNode
from tradebus.execution.client_ids import ClientOrderIds
from tradebus.execution.journal import Journal

from .node_testdata import (
    IID,
    SPOT_FRAMES,
    SPOT_HALFWAY_TRADE,
    SPOT_SNAPSHOT,
    USDM_CAPTURE,
    USDM_IID,
    Valve,
    binance_config,
    config_of,
    run_node,
    usdm_config,
)

pytestmark = pytest.mark.usefixtures("compiled_kernels")

ROOT = Path(__file__).resolve().parents[2]
PAPER = ROOT / "scripts" / "paper.py"
USDM_FRAMES, USDM_SNAPSHOT = split_capture(list(iter_hftbacktest(USDM_CAPTURE)))


def journal_rows(path: Path) -> list[tuple[str, str, str, bytes]]:
    """(kind, type, client_order_id, payload) of every journal entry, read-only, in seq order."""
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT kind, type, client_order_id, payload FROM journal ORDER BY seq").fetchall()
    except sqlite3.OperationalError:  # the table is not created yet
        return []
    finally:
        db.close()


def signed_fills(rows: list[tuple[str, str, str, bytes]]) -> float:
    total = 0.0
    for _, name, _, payload in rows:
        if name == "OrderFilled":
            fill = msgspec.msgpack.decode(payload, type=OrderFilled)
            total += fill.last_qty * int(fill.side)
    return total


def journal_meta(path: Path) -> dict[str, str]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return dict(db.execute("SELECT key, value FROM meta").fetchall())
    finally:
        db.close()


async def wait_for(
    predicate: Any, proc: asyncio.subprocess.Process, timeout: float, what: str, log: Path | None = None
) -> None:
    """Wait for ``predicate()``; fail if ``proc`` exits first (quoting the end of its ``log``) or after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if proc.returncode is not None:
            tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
            raise AssertionError(f"daemon exited early ({proc.returncode}) while waiting for {what}\n{tail}")
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_daemon_killed_mid_run_restarts_from_its_journal_without_duplicated_orders(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    valve = Valve(SPOT_HALFWAY_TRADE)  # the stream waits there for the restarted daemon
    async with LocalVenueServer(
        BinanceProtocol(SPOT_SNAPSHOT), SPOT_FRAMES, speed=6.0, resume_overlap=60, lifetime=600.0, gate=valve
    ) as srv:
        data = binance_config(srv.ws_url, srv.http_url, ["trade", "bookTicker"], tmp=tmp_path, journal=True)
        cfg = tmp_path / "paper.yaml"
        cfg.write_text(yaml.safe_dump(data), encoding="utf-8")
        with (tmp_path / "run1.log").open("wb") as log1:
            first = await asyncio.create_subprocess_exec(
                sys.executable, str(PAPER), str(cfg), stdout=log1, stderr=log1, env=env
            )
        try:
            await wait_for(lambda: valve.held == 1, first, 90.0, "the first half of the capture")
            await wait_for(lambda: sum(r[1] == "OrderFilled" for r in journal_rows(journal)) >= 2, first, 90.0, "2 fills")
        finally:
            first.send_signal(signal.SIGKILL)
            await first.wait()
        assert first.returncode == -signal.SIGKILL
        before = journal_rows(journal)
        submitted = [r[2] for r in before if r[1] == "SubmitOrder"]
        closed = {r[2] for r in before if r[1] in ("OrderFilled", "OrderDenied", "OrderRejected", "OrderCanceled")}
        open_at_kill = [c for c in submitted if c not in closed]
        position = signed_fills(before)

        out = tmp_path / "out2"
        with (tmp_path / "run2.log").open("wb") as log2:
            second = await asyncio.create_subprocess_exec(
                sys.executable, str(PAPER), str(cfg), "--out", str(out), stdout=log2, stderr=log2, env=env
            )
        async with areaped(second):
            try:
                await wait_for(lambda: valve.held == 2, second, 90.0, "the restarted daemon's subscription", tmp_path / "run2.log")
                valve.open()
                await wait_for(
                    lambda: any(r[1] == "SubmitOrder" and r[2] not in submitted for r in journal_rows(journal)),
                    second,
                    90.0,
                    "a new order after the restart",
                )
            finally:
                second.send_signal(signal.SIGTERM)
                await asyncio.wait_for(second.wait(), 30.0)
    assert second.returncode == 0, (tmp_path / "run2.log").read_text()
    summary = json.loads((out / "node.json").read_text())
    assert summary["stop_reason"] == "signal SIGTERM"
    assert summary["recovered_orders"] == len(submitted)
    assert summary["recovered_positions"] == ({IID: position} if position else {})
    assert summary["resolved_unknown"] == open_at_kill
    after = journal_rows(journal)
    coids = [r[2] for r in after if r[1] == "SubmitOrder"]
    assert len(coids) == len(set(coids))  # no order submitted twice
    assert coids[: len(submitted)] == submitted
    # The second process began the journal's next epoch: its ids are the same run's, epoch 2.
    meta = journal_meta(journal)
    assert meta["epoch"] == "2"
    first_ids = ClientOrderIds(meta["run_id"], 1)
    assert submitted == [first_ids.next("TickEmaCross") for _ in submitted]
    second_ids = ClientOrderIds(meta["run_id"], 2)
    assert coids[len(submitted) :] == [second_ids.next("TickEmaCross") for _ in coids[len(submitted) :]]
    # Journaled fills of the killed process reach the outputs of the restarted one.
    fills_csv = (out / "fills.csv").read_text().splitlines()
    # The restarted venue numbers its trades on after the journal's: no trade id repeats.
    decoded = [msgspec.msgpack.decode(r[3]) for r in after if r[1] == "OrderFilled"]
    journaled = {f["trade_id"] for f in decoded}
    assert len(fills_csv) - 1 == len(journaled) == len(decoded) == summary["fills"]
    resolved = [msgspec.msgpack.decode(r[3]) for r in after if r[1] == "OrderResolved"]
    assert [r["client_order_id"] for r in resolved] == open_at_kill
    assert all(r["status"] == "CANCELED" and "paper venue restarted" in r["reason"] for r in resolved)
    assert summary["positions"][IID] == signed_fills(after)  # the position carries over the restart


async def test_restart_resolves_an_order_the_stopped_process_was_working(tmp_path: Path) -> None:
    journal_path = tmp_path / "journal.sqlite"
    journal = Journal(journal_path)
    t = 1_723_161_253_000_000_000
    done = SubmitOrder("TickEmaCross", IID, "TickEmaCross-1", OrderSide.BUY, 0.01, t, t)
    working = SubmitOrder("TickEmaCross", IID, "TickEmaCross-2", OrderSide.SELL, 0.02, t + 1, t + 1)
    journal.record_command(done, done.client_order_id)
    journal.record_event(OrderSubmitted("TickEmaCross", IID, "TickEmaCross-1", t, t))
    journal.record_event(OrderAccepted("TickEmaCross", IID, "TickEmaCross-1", "SIM-1", t, t))
    journal.record_event(
        OrderFilled("TickEmaCross", IID, "TickEmaCross-1", "SIM-1", "SIM-T1", OrderSide.BUY, 0.01, 61830.0, 0.6183, "TAKER", t, t)  # type: ignore[arg-type]
    )
    journal.record_command(working, working.client_order_id)
    journal.record_event(OrderSubmitted("TickEmaCross", IID, "TickEmaCross-2", t + 1, t + 1))
    journal.record_event(OrderAccepted("TickEmaCross", IID, "TickEmaCross-2", "SIM-2", t + 1, t + 1))
    journal.close()
    async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), SPOT_FRAMES) as srv:
        data = binance_config(srv.ws_url, srv.http_url, ["trade"], tmp=tmp_path, journal=True)
        node = PaperNode(config_of(data), handle_signals=False, max_messages=300)
        await run_node(node, lambda: False, timeout=30.0)
    assert node.summary.stop_reason == "max_messages reached (300)"
    assert node.summary.recovered_orders == 2
    assert node.summary.resolved_unknown == ["TickEmaCross-2"]
    assert node.summary.recovered_positions == {IID: 0.01}
    order = node.kernel.orders.order("TickEmaCross-2")
    assert order.status == OrderStatus.CANCELED and order.reason.startswith("paper venue restarted")
    new = [o.client_order_id for o in node.kernel.orders.orders()[2:]]
    assert new and new[0] == ClientOrderIds(journal_meta(journal_path)["run_id"], 1).next("TickEmaCross")
    # The recovered orders keep their creation time; the journaled fill is in the run's results.
    assert [o.ts_created for o in node.kernel.orders.orders()[:2]] == [t, t + 1]
    assert node.kernel.result.fills[0].trade_id == "SIM-T1"
    # The restarted venue numbers on after the journal's ids (it began again at SIM-1 and SIM-T1: two
    # fills of one run's fills.csv had trade id SIM-T1)
    later = node.kernel.orders.orders()[2:]
    assert [o.venue_order_id for o in later[:2]] == ["SIM-3", "SIM-4"]
    trade_ids = [f.trade_id for f in node.kernel.result.fills]
    assert len(trade_ids) >= 2 and trade_ids[1] == "SIM-T2" and len(set(trade_ids)) == len(trade_ids)
    assert node.kernel.result.submit_reasons["TickEmaCross-1"] == ""
    assert node.venue.position(IID) == node.kernel.portfolio.position(IID)
    assert node.router.messages == 300


async def test_a_restarted_daemon_keeps_the_interest_its_margin_short_paid(tmp_path: Path) -> None:
    """A margin spot short pays interest at the fill that borrows (``annual_borrow_rates``); a daemon
    restarted on the journal starts from the stopped one's wallet with its charges in the results
    (before, the charges were not journaled: the restored wallet was higher by them and the restarted
    run's ``interest.csv`` lacked them)."""
    async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), SPOT_FRAMES) as srv:
        data = binance_config(srv.ws_url, srv.http_url, ["trade"], tmp=tmp_path, journal=True)
        data["annual_borrow_rates"] = {"BTC": 0.5, "USDT": 0.5}
        first = PaperNode(config_of(data), handle_signals=False)
        await run_node(first, lambda: bool(first.kernel.result.interest))
    account = first.kernel.portfolio.account
    wallet = (account.balance("USDT"), account.balance("BTC"), first.kernel.portfolio.cash)
    paid = list(first.kernel.result.interest or [])
    assert paid and paid[0].asset == "BTC" and paid[0].kind == "borrow"  # a short borrowed
    # The second process handles one trade (of a server replaying from the start): too few for the
    # strategy to decide, so nothing fills.
    async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), SPOT_FRAMES) as srv:
        data = binance_config(srv.ws_url, srv.http_url, ["trade"], tmp=tmp_path, journal=True)
        data["annual_borrow_rates"] = {"BTC": 0.5, "USDT": 0.5}
        second = PaperNode(config_of(data), handle_signals=False, max_messages=1)
        await run_node(second, lambda: False, timeout=30.0)
    assert second.summary.stop_reason == "max_messages reached (1)"
    account = second.kernel.portfolio.account
    assert (account.balance("USDT"), account.balance("BTC"), second.kernel.portfolio.cash) == wallet
    assert second.kernel.portfolio.interest_paid == sum(c.interest for c in paid)
    assert second.kernel.result.interest == paid  # each charge once
    assert len(second.kernel.result.fills) == len(first.kernel.result.fills)


async def test_a_restarted_daemon_does_not_pay_the_last_funding_again_on_a_repeat_of_its_announcement(
    tmp_path: Path,
) -> None:
    """The USD-M capture's markPrice frames announce a funding, here moved to the venue time of the first
    one the daemon receives (the capture ends before its own, 2023-04-05 00:00 UTC): that first one
    settles it and the next ones are late repeats, ignored.
    A daemon restarted on the journal whose first frame is such a repeat paid it a second time: the
    record of the settled time was not rebuilt from the journaled payment."""
    frames = [(t, raw) for t, raw in USDM_FRAMES if "@trade" in raw or "@markPrice" in raw]
    marks = [i for i, (_, raw) in enumerate(frames) if "@markPrice" in raw]
    # the strategy (TickEmaCross 2/8) holds a position when the first announcement comes
    first_mark = next(i for i in marks if i > marks[0] + 40)
    funding_ms = json.loads(frames[first_mark][1])["data"]["E"]  # due as the daemon receives that frame
    frames = [(t, raw.replace('"T":1680652800000', f'"T":{funding_ms}')) for t, raw in frames]
    first_frames = [f for i, f in enumerate(frames) if "@trade" in f[1] or i > marks[0] + 40]

    def config(srv: LocalVenueServer) -> dict[str, Any]:
        data = usdm_config(srv.ws_url, srv.http_url)
        data["feeds"][0]["subscriptions"] = {USDM_IID: ["trade", "markPrice"]}
        data["journal"] = str(tmp_path / "journal.sqlite")
        return data

    async with LocalVenueServer(BinanceProtocol(USDM_SNAPSHOT, futures=True), first_frames, speed=8.0) as srv:
        first = PaperNode(config_of(config(srv)), handle_signals=False)
        await run_node(first, lambda: bool(first.kernel.result.funding))
    [paid] = first.kernel.result.funding
    assert paid.quantity != 0.0 and paid.ts_event == funding_ms * 1_000_000
    wallet = first.kernel.portfolio.cash
    # The restarted process: a repeat of the settled announcement (due as it comes), then one trade.
    trade = next(f for f in frames if "@trade" in f[1])
    async with LocalVenueServer(BinanceProtocol(USDM_SNAPSHOT, futures=True), [frames[first_mark], trade]) as srv:
        second = PaperNode(config_of(config(srv)), handle_signals=False, max_messages=1)
        await run_node(second, lambda: False, timeout=30.0)
    assert second.summary.stop_reason == "max_messages reached (1)"
    assert second.kernel.perpetuals is not None and second.kernel.perpetuals.next_funding_ns == 2**63 - 1
    assert second.kernel.result.funding == [paid]  # paid once
    assert second.kernel.portfolio.funding_paid == paid.payment
    assert second.kernel.portfolio.cash == wallet


async def test_a_funding_announced_before_a_stop_and_due_during_it_is_paid_once_by_the_restarted_daemon(
    tmp_path: Path,
) -> None:
    """A daemon stopped while it holds a position and a funding is announced, restarted after that funding's time:
    the funding was in memory only, and the restarted daemon, whose feed announces the next funding time, never
    paid it. The journal keeps it; the restarted daemon pays it at its first message (a mark: at that mark),
    on the position held through the stop, once."""
    frames = [(t, raw) for t, raw in USDM_FRAMES if "@trade" in raw or "@markPrice" in raw]
    marks = [i for i, (_, raw) in enumerate(frames) if "@markPrice" in raw]
    announce = next(i for i in marks if i > marks[0] + 40)  # the strategy holds a position by then
    data = json.loads(frames[announce][1])["data"]
    funding_ms = data["E"] + 200  # due 0.2 s after the daemon receives the announcement
    first_frames = frames[:announce] + [(frames[announce][0], frames[announce][1].replace(
        '"T":1680652800000', f'"T":{funding_ms}'))]

    def config(srv: LocalVenueServer) -> dict[str, Any]:
        data = usdm_config(srv.ws_url, srv.http_url)
        data["feeds"][0]["subscriptions"] = {USDM_IID: ["trade", "markPrice"]}
        data["journal"] = str(tmp_path / "journal.sqlite")
        return data

    announced: list[FundingRate] = []
    async with LocalVenueServer(BinanceProtocol(USDM_SNAPSHOT, futures=True), first_frames, speed=8.0) as srv:
        first = PaperNode(config_of(config(srv)), handle_signals=False)
        first.kernel.bus.subscribe(FundingRate, announced.append)
        await run_node(first, lambda: any(f.next_funding_ns == funding_ms * 1_000_000 for f in announced))
    last = announced[-1]
    due = last.next_funding_ns + last.ts_init - last.ts_event  # on the daemon's (receive) clock
    position = first.kernel.portfolio.position(USDM_IID)
    assert position != 0.0 and first.kernel.result.funding == []
    while time.time_ns() <= due:  # the restart comes after the funding time
        await asyncio.sleep(0.05)
    # The restarted daemon's first frame: a later mark, announcing the next funding time (then a trade, which ends
    # the run: a mark is no market-data message of max_messages).
    later = frames[marks[-1]]
    mark = float(json.loads(later[1])["data"]["p"])
    trade = next(f for f in frames[marks[-1]:] if "@trade" in f[1])
    paid_at = []
    for _ in range(2):
        async with LocalVenueServer(BinanceProtocol(USDM_SNAPSHOT, futures=True), [later, trade]) as srv:
            node = PaperNode(config_of(config(srv)), handle_signals=False, max_messages=1)
            await run_node(node, lambda: False, timeout=30.0)
        assert node.summary.stop_reason == "max_messages reached (1)"
        paid_at.append(node.kernel.result.funding)
    [paid] = paid_at[0]
    assert (paid.ts_event, paid.quantity, paid.mark_price, paid.rate) == (
        funding_ms * 1_000_000, position, mark, float(data["r"]))
    assert paid.payment == pytest.approx(position * mark * float(data["r"]), rel=1e-12)
    assert paid_at[1] == [paid]  # the next restart does not pay it again
    assert [r[1] for r in journal_rows(tmp_path / "journal.sqlite")].count("FundingPaid") == 1
