"""The README's Bybit paper commands, run as written: the shipped recording served to the shipped config.

``configs/paper_bybit.yaml`` subscribed ``orderbook.50`` while the shipped recording
(``tests/fixtures/bybit/bybit_v5_public_2026-08-09.jsonl.gz``) holds ``orderbook.200``: ``tradebus serve``
refused the pair (exit 2: a stream the config asks for is not in the recording). The config now
subscribes ``orderbook.200``; the README's two commands are taken from its ``bash`` block and run
from a directory laid out like the repository, the daemon stopped by ``--max-messages`` (added).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.reaped import reaped

from .test_readme_paper_workflow import TIMEOUT, tradebus, wait_for

REPO = Path(__file__).resolve().parents[2]
RECORDING = "tests/fixtures/bybit/bybit_v5_public_2026-08-09.jsonl.gz"


def readme_commands() -> list[list[str]]:
    """The commands of the README's ``bash`` block serving the Bybit recording (continuations joined, comments cut)."""
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(encoding="utf-8"), re.S)
    (block,) = [b for b in blocks if "configs/paper_bybit.yaml" in b and RECORDING in b]
    lines = block.replace("\\\n", " ").splitlines()
    return [shlex.split(line, comments=True) for line in lines if line.strip()]


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a cold cache compiles in the server and the daemon, each up to TIMEOUT
def test_readme_serves_the_shipped_bybit_recording_to_the_shipped_config_and_the_daemon_gets_its_book(
    tmp_path: Path,
) -> None:
    serve, paper = readme_commands()
    assert serve[:2] == ["tradebus", "serve"] and paper[:2] == ["tradebus", "paper"]
    (tmp_path / "configs").mkdir()
    shutil.copy(REPO / "configs" / "paper_bybit.yaml", tmp_path / "configs" / "paper_bybit.yaml")
    (tmp_path / RECORDING).parent.mkdir(parents=True)
    shutil.copy(REPO / RECORDING, tmp_path / RECORDING)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server_log = tmp_path / "serve.log"
    with server_log.open("wb") as out:
        server = subprocess.Popen([*tradebus(), *serve[1:]], cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        # was: exit 2, "orderbook.50.BTCUSDT: a stream its subscriptions ask for ... is not in the recording"
        wait_for((tmp_path / "runs" / "paper_bybit.yaml").exists, "the served config", server, server_log)
        # --speed 0: the server sends each stream as the daemon reads it, so it reads the book whatever its pace
        daemon = subprocess.run([*tradebus(), *paper[1:], "--max-messages", "300"], cwd=tmp_path, env=env,
                                capture_output=True, timeout=TIMEOUT)
    finally:
        server.send_signal(signal.SIGINT)
        with reaped(server), contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(TIMEOUT)
    assert daemon.returncode == 0, daemon.stderr.decode()
    node = json.loads((tmp_path / "runs" / "paper-bybit" / "node.json").read_text())
    assert node["stop_reason"].startswith("max_messages"), node["stop_reason"]
    assert node["counts"]["BookSnapshot"] == 1 and node["counts"]["BookDelta"] > 0, node["counts"]
    assert node["feeds"]["bybit-linear"]["unexpected_streams"] == 0
    assert (tmp_path / "runs" / "paper-bybit" / "journal.sqlite").exists()
