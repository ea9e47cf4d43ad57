"""The replay of a daemon session killed (SIGKILL) ends where its daemon ended: at its last equity sample.

A session of a recording begun with a ``run:start`` line and holding no ``run:stop`` was killed: its daemon never
ended its strategies nor took its closing sample. Its replay played it to the end of the recording and then stopped
the kernel as a backtest stops, adding a sample at the last frame's time (a trial: turnover 0.303042 in the replay
against the daemon's 0.303038) and calling ``on_stop``; the replay of a later session recovered from that.
"""

from __future__ import annotations

import asyncio
import csv
import os
import signal
import sys
from pathlib import Path

import pytest
import yaml

from tradebus.adapters.binance.emulator import BinanceProtocol
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.node.config import load_paper_config
from tradebus.node.playback import play

from .node_testdata import SPOT_FRAMES, SPOT_HALFWAY_TRADE, SPOT_SNAPSHOT, Valve, binance_config
from .test_node_restart import PAPER, ROOT, journal_rows, wait_for

pytestmark = pytest.mark.usefixtures("compiled_kernels")


def _equity_rows(path: Path) -> list[tuple[int, float]]:
    """``(ts, equity)`` of each whole row of the daemon's ``equity.csv``."""
    if not path.exists():
        return []
    with path.open(encoding="utf-8", newline="") as handle:
        return [(int(row["ts"]), float(row["equity"])) for row in csv.DictReader(handle) if row.get("equity")]


async def test_the_replay_of_a_killed_session_takes_no_sample_its_daemon_never_took(tmp_path: Path) -> None:
    out, journal, recording = tmp_path / "out", tmp_path / "journal.sqlite", tmp_path / "frames.jsonl.gz"
    valve = Valve(SPOT_HALFWAY_TRADE)  # the daemon waits there, every frame before it handled, until it is killed
    async with LocalVenueServer(
        BinanceProtocol(SPOT_SNAPSHOT), SPOT_FRAMES, speed=6.0, lifetime=600.0, gate=valve
    ) as srv:
        data = binance_config(srv.ws_url, srv.http_url, ["trade", "bookTicker"], tmp=tmp_path, journal=True, record=True)
        data["report"] = {"equity_interval": "1s"}
        cfg = tmp_path / "paper.yaml"
        cfg.write_text(yaml.safe_dump(data), encoding="utf-8")
        log = tmp_path / "run.log"
        with log.open("wb") as handle:
            daemon = await asyncio.create_subprocess_exec(
                sys.executable, str(PAPER), str(cfg), "--out", str(out), stdout=handle, stderr=handle,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
        try:
            filled = lambda: any(t == "OrderFilled" for _, t, _, _ in journal_rows(journal))  # noqa: E731
            await wait_for(lambda: valve.held == 1 and filled() and len(_equity_rows(out / "equity.csv")) >= 3,
                           daemon, 180.0, "the first half of the capture, a fill and three samples", log)
        finally:
            if daemon.returncode is None:
                daemon.send_signal(signal.SIGKILL)
            await daemon.wait()
    assert daemon.returncode == -signal.SIGKILL
    taken = _equity_rows(out / "equity.csv")

    replay = play(recording, load_paper_config(cfg), session=1).kernel.result
    samples = [(s.ts, s.equity) for s in replay.equity]
    assert replay.fills and len(samples) >= 2
    # the samples the daemon took, in order, up to where the recording (flushed every second) ends: none of its own
    assert [ts for ts, _ in samples] == [ts for ts, _ in taken[: len(samples)]], (samples[-3:], taken)
    assert [eq for _, eq in samples] == pytest.approx([eq for _, eq in taken[: len(samples)]], rel=1e-12)
