"""A paper daemon warming up its feature kernels answers ``/health`` and stops promptly on SIGTERM.

A real ``scripts/paper.py`` process on a cold Numba cache (a minute or more of compiling), its
ops server on 127.0.0.1: while the kernels compile, ``/health`` answers 503 ``warming up`` and
``/metrics`` answers; a SIGTERM then stops the daemon within seconds, exit 0, and the journal it
created, which holds no session, is removed.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from tradebus.execution.journal import Journal, JournalOwner
from tradebus.features import warmup as warmup_module
from tradebus.node.daemon import PaperNode
from tradebus.strategies.tick_ema import TickEmaCross

from .node_testdata import assert_journal_intact, binance_config, config_of
from .test_node_restart import PAPER, ROOT, wait_for

#: Seconds a SIGTERM may take to stop a daemon in its warm-up (a cold compile takes 50 s to minutes).
STOP_BOUND_S = 20.0


async def test_a_daemon_warming_up_answers_health_and_stops_on_sigterm_within_seconds(tmp_path: Path) -> None:
    # feeds on a port nobody listens on: the daemon never gets past its warm-up in this test anyway
    data = binance_config("ws://127.0.0.1:9", "http://127.0.0.1:9", ["trade"], tmp=tmp_path, journal=True)
    data["ops"] = {"port": 0}
    cfg = tmp_path / "paper.yaml"
    cfg.write_text(yaml.safe_dump(data), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_CACHE_DIR": str(tmp_path / "cold-numba-cache")}
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(sys.executable, str(PAPER), str(cfg), stdout=out, stderr=out, env=env)
    try:
        await wait_for(lambda: "warming up the feature kernels" in log.read_text(), proc, 120.0, "the warm-up", log)
        port = re.search(r"/health on http://127\.0\.0\.1:(\d+)", log.read_text())
        assert port is not None, log.read_text()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port[1]}", timeout=5.0) as http:
            health = await http.get("/health")
            metrics = await http.get("/metrics")
        assert "warmed up" not in log.read_text()  # the answers came while the kernels compiled
        assert health.status_code == 503
        report = health.json()
        assert report["status"] == "warming up" and report["warming_up"] and not report["running"]
        assert report["problems"] == ["daemon warming up the feature kernels (not trading yet)"]
        assert metrics.status_code == 200 and b"tradebus_" in metrics.content

        loop = asyncio.get_running_loop()
        sent = loop.time()
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), STOP_BOUND_S)
        took = loop.time() - sent
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    assert took < STOP_BOUND_S
    assert "stopped while warming up the feature kernels" in text and "warmed up" not in text
    assert "paper daemon stopped" in text and "Traceback" not in text and "Fatal Python error" not in text
    # The journal it created held no session (no entry, no sample: its meta alone, naming a paper owner) and is
    # removed, as a refused run's is: kept, it refused a live run on its path ("written by a paper run").
    assert not (tmp_path / "journal.sqlite").exists()
    Journal(tmp_path / "journal.sqlite", owner=JournalOwner("live", "binance", "spot", "testnet")).close()


async def test_tradebus_paper_out_stopped_while_warming_up_exits_0_without_a_traceback(tmp_path: Path) -> None:
    """`tradebus paper CONFIG --out DIR` stopped in its warm-up wrote no outputs, as it should, and then
    failed on printing their summary: 'not a run directory (no metrics.json)', a traceback, exit 1."""
    data = binance_config("ws://127.0.0.1:9", "http://127.0.0.1:9", ["trade"], tmp=tmp_path, journal=True)
    cfg = tmp_path / "paper.yaml"
    cfg.write_text(yaml.safe_dump(data), encoding="utf-8")
    out_dir = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_CACHE_DIR": str(tmp_path / "cold-numba-cache")}
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "tradebus.cli", "paper", str(cfg), "--out",
                                                    str(out_dir), stdout=out, stderr=out, env=env, cwd=tmp_path)
    try:
        await wait_for(lambda: "warming up the feature kernels" in log.read_text(), proc, 120.0, "the warm-up", log)
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), STOP_BOUND_S)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    assert "stopped while warming up the feature kernels" in text and "Traceback" not in text
    assert f"paper -> {out_dir}: no run outputs written (the daemon stopped before it started)" in " ".join(text.split())
    assert not out_dir.exists() or sorted(p.name for p in out_dir.iterdir()) == []


async def test_a_warm_up_that_fails_stops_the_daemon_naming_it_and_starts_no_strategy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The warm-up's thread raising (MemoryError, injected: a compile failure cannot be made on demand) was raised
    by run() bare, node.json said stop_reason 'stopped', and the shutdown started the strategies (on_start) on a
    journal never recovered; now the error names the warm-up, so does the stop reason, and no strategy starts."""
    started: list[str] = []

    def failing_warm_up() -> float:
        raise MemoryError("cannot allocate the code of the kernels")

    monkeypatch.setattr(warmup_module, "warm_up", failing_warm_up)
    monkeypatch.setattr(TickEmaCross, "on_start", lambda self: started.append(self.strategy_id))
    data = binance_config("ws://127.0.0.1:9", "http://127.0.0.1:9", ["trade"], tmp=tmp_path, journal=True, record=True)
    node = PaperNode(config_of(data), handle_signals=False)
    assert (tmp_path / "frames.jsonl.gz").is_file()  # held from the start: another daemon recording into it is refused
    with pytest.raises(MemoryError) as caught:
        await asyncio.wait_for(node.run(), 60)
    assert any("warming up the feature kernels failed: MemoryError" in note for note in caught.value.__notes__)
    assert started == []
    assert node.summary.stop_reason == "warming up the feature kernels failed: MemoryError: cannot allocate the code of the kernels"
    assert node.summary.stopped_ns > 0
    assert not (tmp_path / "journal.sqlite").exists()  # it created it, and journaled nothing: removed
    assert not (tmp_path / "frames.jsonl.gz").exists()  # nothing recorded: the file its lock created is gone


async def test_a_journal_of_earlier_sessions_is_kept_whole_by_a_daemon_stopped_in_its_warm_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daemon stopped (here: failing) before it recovered removes the journal only if it created it: one an earlier
    session left is the user's, kept byte for byte."""
    monkeypatch.setattr(warmup_module, "warm_up", lambda: (_ for _ in ()).throw(MemoryError("no room")))
    data = binance_config("ws://127.0.0.1:9", "http://127.0.0.1:9", ["trade"], tmp=tmp_path, journal=True)
    config = config_of(data)
    earlier = Journal(tmp_path / "journal.sqlite", owner=config.journal_owner())
    assert earlier.begin_epoch() == 1
    earlier.close()
    kept = (tmp_path / "journal.sqlite").read_bytes()
    node = PaperNode(config, handle_signals=False)
    with pytest.raises(MemoryError):
        await asyncio.wait_for(node.run(), 60)
    assert (tmp_path / "journal.sqlite").read_bytes() == kept
    assert_journal_intact(tmp_path / "journal.sqlite")


def test_the_warm_up_compiles_the_book_kernels_a_daemon_runs_on_its_loop() -> None:
    """Before: the daemon's warm-up compiled the feature kernels only; the book's (apply_top, load_side, ...) were
    compiled at the first book message, on the event loop: seconds on a cold cache, the streams and timers held.
    In a fresh process (none compiled yet), after the book warm-up a book loaded and updated with writable and
    read-only levels compiles nothing more."""
    script = (
        "import numpy as np\n"
        "from tradebus.adapters.common import book\n"
        "kernels = [getattr(book, n) for n in ('apply_levels', 'apply_top', 'load_side', 'collect')]\n"
        "assert all(not k.signatures for k in kernels), 'compiled before the warm-up'\n"
        "book.warm_up()\n"
        "before = [len(k.signatures) for k in kernels]\n"
        "for writable in (True, False):\n"
        "    bids, asks = np.array([[10.0, 1.0]]), np.array([[11.0, 2.0], [12.0, 1.0]])\n"
        "    bids.flags.writeable = asks.flags.writeable = writable\n"
        "    b = book.OrderBook('X', capacity=2)\n"
        "    b.load(bids, asks); b.apply(bids, asks); b.apply_top(bids, asks, np.full(4, np.nan)); b.top(2)\n"
        "after = [len(k.signatures) for k in kernels]\n"
        "assert min(before) > 0 and after == before, (before, after)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]


async def test_the_daemon_warm_up_warms_the_book_kernels_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon's warm-up thread runs the book warm-up after the feature kernels' (see the test above)."""
    from tradebus.adapters.common import book

    called: list[str] = []
    monkeypatch.setattr(warmup_module, "warm_up", lambda: called.append("features") or 0.0)
    monkeypatch.setattr(book, "warm_up", lambda: called.append("book"))
    data = binance_config("ws://127.0.0.1:9", "http://127.0.0.1:9", ["trade"], tmp=tmp_path, journal=True)
    node = PaperNode(config_of(data), handle_signals=False)
    node._stop = asyncio.Event()
    try:
        assert await asyncio.wait_for(node._warm_up(), 60)
    finally:
        assert node.journal is not None
        node.journal.close()
    assert called == ["features", "book"]


async def test_tradebus_paper_stopped_while_it_builds_the_daemon_exits_0_without_a_traceback(tmp_path: Path) -> None:
    """Ctrl-C in the first seconds of `tradebus paper` (loading the config, opening the journal, building the kernel,
    before the daemon's loop takes the signals) raised KeyboardInterrupt there: a traceback or "Aborted", exit 130.
    Now the signal is the daemon's stop: it stops before it trades, exit 0, no outputs written, and the journal and
    the recording it created, holding nothing, removed.
    The strategy's constructor holds the build until the signal was sent (it waits for a file the test creates)."""
    ready, go = tmp_path / "ready", tmp_path / "go"
    strategy = {"name": "tests.live.slow_start_strategy:SlowStart", "instruments": ["BTCUSDT.BINANCE"],
                "params": {"ready": str(ready), "go": str(go)}}
    data = binance_config("ws://127.0.0.1:9", "http://127.0.0.1:9", ["trade"], tmp=tmp_path, journal=True,
                          record=True, strategy=strategy)
    cfg = tmp_path / "paper.yaml"
    cfg.write_text(yaml.safe_dump(data), encoding="utf-8")
    out_dir = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "tradebus.cli", "paper", str(cfg), "--out",
                                                    str(out_dir), stdout=out, stderr=out, env=env, cwd=tmp_path)
    try:
        await wait_for(ready.exists, proc, 300.0, "the daemon's build", log)
        proc.send_signal(signal.SIGINT)
        go.write_text("go\n")
        await asyncio.wait_for(proc.wait(), 300.0)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    assert "Traceback" not in text and "KeyboardInterrupt" not in text and "Aborted" not in text, text[-3000:]
    assert "paper daemon stopping: signal SIGINT while starting" in text, text[-3000:]
    assert f"paper -> {out_dir}: no run outputs written (the daemon stopped before it started)" in " ".join(text.split())
    assert not (tmp_path / "journal.sqlite").exists()  # it created it, and journaled nothing: removed
    assert not (tmp_path / "frames.jsonl.gz").exists()
