"""A paper daemon killed with SIGKILL mid-run leaves the output rows it wrote intact, and a restart keeps them.

The daemon writes ``fills.csv``, ``orders.csv``, ``equity.csv`` ... row by row as it trades
(:mod:`tradebus.reports.stream`). After ``kill -9``: every file holds whole lines only, every
fill row is the journal's fill of the same rank (the journal is written first), every order
row is a closed order of the journal, in creation order; the directory says it is incomplete.
A restart on the same journal and output directory writes files that begin with those rows.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import signal
import sys
from pathlib import Path

import msgspec
import pytest
import yaml

from tests.reaped import areaped
from tradebus.adapters.binance.emulator import BinanceProtocol
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.engine.messages import OrderFilled
from tradebus.reports.stream import read_fills
from tradebus.reports.writers import FILL_COLUMNS, INCOMPLETE_MARKER, ORDER_COLUMNS

from .node_testdata import SPOT_FRAMES, SPOT_HALFWAY_TRADE, SPOT_SNAPSHOT, Valve, binance_config
from .test_node_restart import PAPER, ROOT, journal_rows, wait_for

pytestmark = pytest.mark.usefixtures("compiled_kernels")


def data_rows(path: Path) -> list[str]:
    """The lines after the header (the file must end with a complete line)."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    return text.splitlines()[1:]


async def test_rows_written_before_a_kill_are_whole_match_the_journal_and_survive_a_restart(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite"
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    valve = Valve(SPOT_HALFWAY_TRADE)  # the stream waits there for the restarted daemon
    async with LocalVenueServer(
        BinanceProtocol(SPOT_SNAPSHOT), SPOT_FRAMES, speed=6.0, resume_overlap=60, lifetime=600.0, gate=valve
    ) as srv:
        data = binance_config(srv.ws_url, srv.http_url, ["trade", "bookTicker"], tmp=tmp_path, journal=True)
        data["report"] = {"equity_interval": "1s"}
        cfg = tmp_path / "paper.yaml"
        cfg.write_text(yaml.safe_dump(data), encoding="utf-8")
        with (tmp_path / "run1.log").open("wb") as log1:
            first = await asyncio.create_subprocess_exec(
                sys.executable, str(PAPER), str(cfg), "--out", str(out), stdout=log1, stderr=log1, env=env
            )
        try:
            await wait_for(lambda: valve.held == 1, first, 90.0, "the first half of the capture")
            await wait_for(lambda: len(data_rows(out / "fills.csv")) >= 4, first, 90.0, "4 fill rows")
        finally:
            first.send_signal(signal.SIGKILL)
            await first.wait()
        assert first.returncode == -signal.SIGKILL
        killed = {name: (out / name).read_text(encoding="utf-8") for name in ("fills.csv", "orders.csv", "equity.csv")}
        assert (out / INCOMPLETE_MARKER).exists() and not (out / "metrics.json").exists()

        # Whole lines only, each with every column.
        for name, text in killed.items():
            assert text.endswith("\n"), name
            rows = list(csv.reader(io.StringIO(text)))
            assert all(len(row) == len(rows[0]) for row in rows), name
        assert killed["orders.csv"].splitlines()[0] == ",".join(ORDER_COLUMNS)
        # Each fill row is the journal's fill of the same rank (the journal is written before the row).
        entries = journal_rows(journal)
        journaled = [msgspec.msgpack.decode(r[3], type=OrderFilled) for r in entries if r[1] == "OrderFilled"]
        fills = read_fills(out / "fills.csv")
        assert len(fills) >= 4 and len(journaled) >= len(fills)
        assert [(f.client_order_id, f.trade_id, f.quantity, f.price, f.fee, f.ts_event) for f in fills] == [
            (j.client_order_id, j.trade_id, j.last_qty, j.last_px, j.fee, j.ts_event) for j in journaled[: len(fills)]
        ]
        # Order rows: closed orders, in creation (journal) order, from the first one on.
        submitted = [r[2] for r in entries if r[1] == "SubmitOrder"]
        order_rows = list(csv.DictReader(io.StringIO(killed["orders.csv"])))
        assert order_rows and [r["client_order_id"] for r in order_rows] == submitted[: len(order_rows)]
        filled = {f.client_order_id for f in fills}
        assert all(r["status"] == "FILLED" and r["client_order_id"] in filled for r in order_rows)
        assert len(data_rows(out / "equity.csv")) >= 1

        with (tmp_path / "run2.log").open("wb") as log2:
            second = await asyncio.create_subprocess_exec(
                sys.executable, str(PAPER), str(cfg), "--out", str(out), stdout=log2, stderr=log2, env=env
            )
        async with areaped(second):
            try:
                await wait_for(lambda: valve.held == 2, second, 90.0, "the restarted daemon's subscription", tmp_path / "run2.log")
                valve.open()
                await wait_for(
                    lambda: len(data_rows(out / "fills.csv")) > len(journaled), second, 90.0, "a fill after the restart"
                )
            finally:
                second.send_signal(signal.SIGTERM)
                await asyncio.wait_for(second.wait(), 30.0)
    assert second.returncode == 0, (tmp_path / "run2.log").read_text()
    assert not (out / INCOMPLETE_MARKER).exists()
    # equity.csv too: its samples are journaled before their rows are written, and the restart writes them again
    for name in ("fills.csv", "orders.csv", "equity.csv"):
        assert (out / name).read_text(encoding="utf-8").startswith(killed[name]), name
    assert (out / "fills.csv").read_text().splitlines()[0] == ",".join(FILL_COLUMNS)
    summary = json.loads((out / "node.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["fills"] == summary["fills"] == len(data_rows(out / "fills.csv"))
    assert metrics["orders"] == summary["orders"] == len(data_rows(out / "orders.csv"))
