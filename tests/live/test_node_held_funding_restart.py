"""A funding held for its bar survives a SIGKILL of the paper daemon and is paid once by the restarted one.

A paper daemon filling on bars holds a funding that falls due while an order of its instrument
waits for the next bar (its fills are the position held at the funding time; ``Perpetuals``).
The held funding lived in memory only: a daemon killed before that bar lost it, and the restarted
daemon, whose venue no longer works the order, never paid it. The frames are the real SUSHIUSDT
``kline_1m`` frame of the cryptofeed USD-M recording (``tests/fixtures/binance``) with crafted
candles (Binance's documented kline format: ``t``/``T`` the minute, ``"x":true`` at its close,
``E = T + 1``) and a ``markPriceUpdate`` (Binance's documented ``<symbol>@markPrice@1s`` payload)
announcing a funding at its own event time, sent after the last candle.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from tests.reaped import areaped
from tradebus.adapters.binance.emulator import BinanceProtocol
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.engine.perpetuals import FundingDue
from tradebus.node.daemon import PaperNode

from adapters.binance_testdata import CF_USDM, cryptofeed_frames
from live.node_testdata import SUSHI_IID, config_of, run_node, sushi_kline_config
from live.test_node_restart import journal_rows, signed_fills, wait_for

pytestmark = pytest.mark.usefixtures("compiled_kernels")

ROOT = Path(__file__).resolve().parents[2]
PAPER = ROOT / "scripts" / "paper.py"
MINUTE_MS = 60_000
FIRST_MS = 1626992700000  # 2021-07-22 22:25 UTC, the recording's first kline minute
# falling (EmaCross 2/3 ready, fast below slow), a jump (long, filled at the next candle's open), then a drop
# at the last close (the order turning it waits for the next candle, which never comes)
CLOSES = ["7.6080", "7.5980", "7.5880", "7.5780", "7.6780", "7.6880", "7.5000"]
MARK = "7.6712"
RATE = "0.00010000"


def _frames() -> tuple[list[tuple[int, str]], int]:
    """The closed candles, then the mark frame announcing a funding at its event time; and that time (ms)."""
    real = next(raw for _, raw in cryptofeed_frames(CF_USDM) if raw.startswith('{"stream":"sushiusdt@kline_1m"'))
    frames = []
    recv_ns = 1_000_000_000
    for k, close in enumerate(CLOSES):
        msg = json.loads(real)
        start = FIRST_MS + k * MINUTE_MS
        candle = msg["data"]["k"]
        candle.update({"t": start, "T": start + MINUTE_MS - 1, "o": close, "h": close, "l": close, "c": close,
                       "x": True})
        msg["data"]["E"] = start + MINUTE_MS
        frames.append((recv_ns, json.dumps(msg, separators=(",", ":"))))
        recv_ns += 100_000_000
    funding_ms = FIRST_MS + len(CLOSES) * MINUTE_MS + 20_000  # inside the next minute
    mark = {"stream": "sushiusdt@markPrice@1s", "data": {
        "e": "markPriceUpdate", "E": funding_ms, "s": "SUSHIUSDT", "p": MARK, "P": MARK, "i": MARK,
        "r": RATE, "T": funding_ms}}
    frames.append((recv_ns, json.dumps(mark, separators=(",", ":"))))
    return frames, funding_ms


def _config(srv: LocalVenueServer, journal: Path) -> dict[str, Any]:
    data = sushi_kline_config(ws_url=srv.ws_url, rest_url=srv.http_url, backoff={"base": 0.05, "cap": 0.2})
    data["feeds"][0]["subscriptions"] = {SUSHI_IID: ["kline", "markPrice"]}
    data["journal"] = str(journal)
    return data


def _funding_due(path: Path) -> list[FundingDue]:
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'funding_due'").fetchone()
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        db.close()
    return msgspec.msgpack.decode(row[0], type=list[FundingDue]) if row and row[0] else []


async def _restarted(frames: list[tuple[int, str]], journal: Path) -> PaperNode:
    async with LocalVenueServer(BinanceProtocol(futures=True), frames) as srv:
        node = PaperNode(config_of(_config(srv, journal)), handle_signals=False, max_messages=1)
        await run_node(node, lambda: False, timeout=30.0)
    assert node.summary.stop_reason == "max_messages reached (1)"
    return node


async def test_a_funding_held_for_its_bar_is_paid_once_by_the_daemon_restarted_after_a_kill_9(tmp_path: Path) -> None:
    frames, funding_ms = _frames()
    journal = tmp_path / "journal.sqlite"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    async with LocalVenueServer(BinanceProtocol(futures=True), frames, lifetime=300.0) as srv:
        cfg = tmp_path / "paper.yaml"
        cfg.write_text(yaml.safe_dump(_config(srv, journal)), encoding="utf-8")
        log = tmp_path / "run1.log"
        with log.open("wb") as out:
            first = await asyncio.create_subprocess_exec(sys.executable, str(PAPER), str(cfg), stdout=out, stderr=out,
                                                         env=env)
        async with areaped(first):
            try:
                # the funding fell due while the order of the last close waits for the next bar, which never comes
                await wait_for(lambda: any(d.mark is not None for d in _funding_due(journal)), first, 90.0,
                               "the held funding in the journal", log)
            finally:
                first.send_signal(signal.SIGKILL)
                await first.wait()
    assert first.returncode == -signal.SIGKILL
    rows = journal_rows(journal)
    position = signed_fills(rows)
    submitted = [r[2] for r in rows if r[1] == "SubmitOrder"]
    filled = {r[2] for r in rows if r[1] == "OrderFilled"}
    assert position == 1.0 and submitted[-1] not in filled  # long, and the turn waits for its bar
    assert not any(r[1] == "FundingPaid" for r in rows)
    [held] = _funding_due(journal)
    assert (held.at, held.rate, held.mark) == (funding_ms * 1_000_000, float(RATE), float(MARK))

    # The restarted daemon (its venue no longer works the order) pays it on the position held then, at the
    # mark of its time; a later restart does not pay it again.
    candle = json.loads(frames[-2][1])  # the next minute's candle, closed
    candle["data"]["E"] += MINUTE_MS
    candle["data"]["k"].update({"t": candle["data"]["k"]["t"] + MINUTE_MS, "T": candle["data"]["k"]["T"] + MINUTE_MS})
    repeat = [(frames[-1][0], json.dumps(candle, separators=(",", ":")))]
    second = await _restarted(repeat, journal)
    [paid] = second.kernel.result.funding
    assert (paid.instrument_id, paid.ts_event, paid.quantity) == (SUSHI_IID, funding_ms * 1_000_000, 1.0)
    assert (paid.mark_price, paid.rate) == (float(MARK), float(RATE))
    assert paid.payment == pytest.approx(1.0 * 7.6712 * 0.0001, rel=1e-12)  # a long pays a positive rate
    assert second.kernel.portfolio.funding_paid == paid.payment
    assert [r[1] for r in journal_rows(journal)].count("FundingPaid") == 1
    assert all(d.mark is None for d in _funding_due(journal))
    third = await _restarted(repeat, journal)
    assert third.kernel.result.funding == [paid]
    assert third.kernel.portfolio.funding_paid == paid.payment
    assert [r[1] for r in journal_rows(journal)].count("FundingPaid") == 1
