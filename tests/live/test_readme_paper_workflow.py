"""The README's paper workflow, run as written, against the local venue server.

``configs/paper_local.yaml`` keeps its journal and its frame recording in
``runs/paper-local/``, the directory the README passes to ``--out``. Every command is the
README's, run in a subprocess from a directory laid out like the repository (the config
and the capture copied to their repository paths); the daemon is stopped the way a user
stops it (SIGINT, then SIGTERM for the restart):

1. ``tradebus serve <capture> --venue binance --speed 1 --hold
   --config configs/paper_local.yaml --write-config runs/paper_local.yaml``
2. ``tradebus paper runs/paper_local.yaml --out runs/paper-local`` -- stopped with SIGINT
   after its first orders: the outputs are written and the journal and recording survive;
3. the same command again (a restart) resumes from the journal, stopped with SIGTERM (``--hold``
   stops the recording while no daemon reads it: the restart meets the rest of it, however long a
   loaded machine takes to start it);
4. ``tradebus replay runs/paper-local/frames.jsonl.gz --config configs/paper_local.yaml
   --out runs/replay-local`` refuses the recording of both runs (exit 3, naming the second
   ``run:start``), and with ``--session 1`` plays the first run's: its fills are the first run's.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from loguru import logger
from typer.testing import CliRunner

from tradebus.cli import app
from tradebus.reports.writers import INTEREST_FILE, OPTIONAL_FILES, OWN_FILES, REPORT_FILE

from tests.reaped import reaped

from .node_testdata import SPOT_CAPTURE

REPO = Path(__file__).resolve().parents[2]
CAPTURE = "tests/fixtures/binance/spot_btcusdt_20240808_head4000.gz"
#: Generous: a process may compile the Numba kernels on a cold cache (the first run after an install) on a loaded
#: machine, the daemon's warm-up taking 275 s at load 17 before its first decision (120 s ran out).
TIMEOUT = 600.0


@pytest.fixture(autouse=True)
def _loguru_to_current_stderr() -> Iterator[None]:
    """The CLI points loguru at the CliRunner's stderr, closed after the call: log to the live stderr again."""
    yield
    logger.remove()
    logger.add(lambda message: sys.stderr.write(message), level="DEBUG")


def tradebus() -> list[str]:
    """The ``tradebus`` command of this environment."""
    script = Path(sys.executable).parent / "tradebus"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tradebus.cli"]


def wait_for(condition: Callable[[], bool], what: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args} exited ({proc.returncode}) waiting for {what}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()}")
        time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes], sig: signal.Signals, log: Path) -> None:
    proc.send_signal(sig)
    proc.wait(TIMEOUT)
    assert proc.returncode == 0, log.read_text()


def decisions(log: Path) -> int:
    return log.read_text(errors="replace").count("-> submitted")


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A directory laid out like the repository for the README's commands."""
    (tmp_path / "configs").mkdir()
    shutil.copy(REPO / "configs" / "paper_local.yaml", tmp_path / "configs" / "paper_local.yaml")
    (tmp_path / CAPTURE).parent.mkdir(parents=True)
    shutil.copy(SPOT_CAPTURE, tmp_path / CAPTURE)
    return tmp_path


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a cold cache compiles in the server and the first daemon, each up to TIMEOUT
def test_readme_paper_workflow_keeps_journal_and_recording_restarts_from_them_and_replays(checkout: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    run = checkout / "runs" / "paper-local"
    server_log = checkout / "serve.log"
    with server_log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "tradebus.cli", "serve", CAPTURE, "--venue", "binance", "--speed", "1", "--hold",
             "--config", "configs/paper_local.yaml", "--write-config", "runs/paper_local.yaml"],
            cwd=checkout, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        wait_for((checkout / "runs" / "paper_local.yaml").exists, "the served config", server, server_log)
        paper = [*tradebus(), "paper", "runs/paper_local.yaml", "--out", "runs/paper-local", "--report"]

        # 2. first run, stopped with Ctrl-C once it traded
        log1 = checkout / "paper1.log"
        with log1.open("wb") as out:
            first = subprocess.Popen(paper, cwd=checkout, env=env, stdout=out, stderr=subprocess.STDOUT)
        with reaped(first):
            wait_for(lambda: decisions(log1) >= 2, "two order decisions", first, log1)
            stop(first, signal.SIGINT, log1)
        names = sorted(p.name for p in run.iterdir())
        assert names == sorted([*(n for n in OWN_FILES["paper"] if n != INTEREST_FILE), "journal.sqlite", "frames.jsonl.gz"]), names  # --report
        assert 'data-metric="fills"' in (run / REPORT_FILE).read_text(encoding="utf-8")
        node1 = json.loads((run / "node.json").read_text())
        assert node1["stop_reason"] == "signal SIGINT" and node1["orders"] >= 2
        journal_size = (run / "journal.sqlite").stat().st_size
        with (run / "fills.csv").open() as handle:
            first_fills = len(handle.readlines()) - 1
        recording_size = (run / "frames.jsonl.gz").stat().st_size
        assert journal_size > 0 and recording_size > 0

        # 3. the same command again: a restart resumes from the journal; stopped with SIGTERM
        log2 = checkout / "paper2.log"
        with log2.open("wb") as out:
            second = subprocess.Popen(paper, cwd=checkout, env=env, stdout=out, stderr=subprocess.STDOUT)
        with reaped(second):
            wait_for(lambda: "recovered" in log2.read_text(errors="replace") and decisions(log2) >= 1,
                     "recovery and a new decision", second, log2)
            stop(second, signal.SIGTERM, log2)
        node2 = json.loads((run / "node.json").read_text())
        assert node2["stop_reason"] == "signal SIGTERM"
        assert node2["recovered_orders"] == node1["orders"]
        assert node2["orders"] > node1["orders"]
        assert (run / "journal.sqlite").stat().st_size >= journal_size
        assert (run / "frames.jsonl.gz").stat().st_size > recording_size  # appended to, not replaced
        with (run / "orders.csv").open() as handle:
            assert len(handle.readlines()) - 1 == node2["orders"]  # the recovered orders are in the outputs
    finally:
        server.send_signal(signal.SIGINT)
        with reaped(server), contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(TIMEOUT)

    # 4. the recording of both runs is refused as a whole; its first session replays as the first run ran
    replay = [*tradebus(), "replay", "runs/paper-local/frames.jsonl.gz", "--config", "configs/paper_local.yaml",
              "--out", "runs/replay-local"]
    refused = subprocess.run(replay, cwd=checkout, env=env, capture_output=True, timeout=TIMEOUT)
    assert refused.returncode == 3, refused.stderr.decode()
    assert "a second run:start" in refused.stderr.decode() and "--session" in refused.stderr.decode()
    assert not (checkout / "runs" / "replay-local").exists()
    first = subprocess.run([*replay, "--session", "1"], cwd=checkout, env=env, capture_output=True, timeout=TIMEOUT)
    assert first.returncode == 0, first.stderr.decode()
    stats = json.loads((checkout / "runs" / "replay-local" / "playback.json").read_text())
    assert stats["frames"] > 0 and stats["skipped_connections"] == {}
    replayed = (checkout / "runs" / "replay-local" / "fills.csv").read_text().splitlines()
    assert len(replayed) - 1 == first_fills > 0


def test_paper_refuses_an_out_directory_with_foreign_files_before_any_io(checkout: Path) -> None:
    out = checkout / "home"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    config = checkout / "configs" / "paper_local.yaml"
    res = CliRunner().invoke(app, ["paper", str(config), "--out", str(out), "--max-seconds", "5"])
    assert res.exit_code == 2
    assert f"output directory {out} holds files a paper run does not write: notes.txt" in res.output
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert not (checkout / "runs").exists()  # no journal, no recording: refused before the daemon started


def test_replay_into_the_paper_directory_keeps_the_recording_and_journal_with_force_only_beside_node_json(
    checkout: Path,
) -> None:
    run = checkout / "runs" / "paper-local"
    run.mkdir(parents=True)
    recording = run / "frames.jsonl.gz"
    shutil.copy(SPOT_CAPTURE, recording)
    (run / "journal.sqlite").write_bytes(b"journal")
    (run / "node.json").write_text("{}")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    args = ["replay", str(recording), "--config", str(checkout / "configs" / "paper_local.yaml"), "--out", str(run)]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2 and "holds files a replay run does not write: node.json" in refused.output
    assert CliRunner().invoke(app, [*args, "--force"]).exit_code == 0
    after = {p.name: p.read_bytes() for p in run.iterdir()}
    assert {name: after[name] for name in before} == before
    assert sorted(set(after) - set(before)) == sorted(set(OWN_FILES["replay"]) - set(OPTIONAL_FILES))
