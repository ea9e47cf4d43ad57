"""An ``--out`` directory a running daemon writes is refused to every other run, naming the daemon.

Two daemons with journals of their own could share one ``--out``: the second replaced
``fills.csv`` and the other streamed files with new ones while the first kept writing rows into
the old, unlinked copies, so the first daemon's rows were lost (and its ``INCOMPLETE`` marker
removed while it still ran). A backtest or a replay into it did the same.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import tradebus
from tests.reaped import reaped
from tradebus.adapters.common.recorder import read_frames
from tradebus.cli import app
from tradebus.reports.writers import INCOMPLETE_MARKER, STREAMED_FILES

from .node_testdata import START_BOUND, binance_config

pytestmark = [
    pytest.mark.usefixtures("_loguru_to_current_stderr"),
    pytest.mark.skipif(not Path("/proc/locks").exists(), reason="the holder is read from Linux's /proc/locks"),
]

ROOT = Path(tradebus.__file__).resolve().parents[1]
BARS = ROOT / "tests" / "fixtures" / "kernel" / "coinbase_btc_usd_4h_2022_1200.csv"


def paper_config(tmp_path: Path, name: str, record: Path | None = None) -> Path:
    """A paper config with a journal of its own whose feed is never reached (the daemon runs on, reconnecting),
    recording into ``record`` if given."""
    data = binance_config("ws://127.0.0.1:9", "http://127.0.0.1:9", ["trade"])
    data["journal"] = str(tmp_path / f"{name}.sqlite")
    if record is not None:
        data["record"] = str(record)
    data["warm_up"] = False
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def backtest_config(tmp_path: Path) -> Path:
    shutil.copy(BARS, tmp_path / "bars.csv")
    config = {
        "data": {"sources": [{"instrument": "BTC-USD.COINBASE", "file": "bars.csv"}]},
        "instruments": [{"venue": "COINBASE", "symbol": "BTC-USD", "tick_size": 0.01, "lot_size": 1.0e-8}],
        "strategy": {"name": "ema_cross", "instruments": ["BTC-USD.COINBASE"], "params": {"fast": 10, "slow": 30, "quantity": 0.1}},
    }
    path = tmp_path / "backtest.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def start_daemon(tmp_path: Path, out: Path, record: Path | None = None) -> subprocess.Popen[bytes]:
    """A ``tradebus paper`` process writing into ``out`` (and recording into ``record``), returned once it runs
    (its outputs streaming)."""
    log = tmp_path / "first.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    config = paper_config(tmp_path, "first", record)
    with log.open("wb") as stderr:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "tradebus.cli", "paper", str(config), "--out", str(out)],
            stdout=subprocess.DEVNULL, stderr=stderr, env=env, cwd=tmp_path,
        )
    deadline = time.monotonic() + START_BOUND
    try:
        while "paper daemon running" not in log.read_text(errors="replace"):
            assert daemon.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, "the first daemon did not start"
            time.sleep(0.1)
    except BaseException:
        with reaped(daemon):
            raise
    return daemon


@contextmanager
def daemon_running(tmp_path: Path, out: Path, record: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """:func:`start_daemon`'s process, stopped with SIGTERM (and waited for) as the block ends."""
    first = start_daemon(tmp_path, out, record)
    try:
        yield first
    finally:
        first.send_signal(signal.SIGTERM)
        with reaped(first):
            first.wait(timeout=START_BOUND)


@pytest.mark.parametrize("second", ["paper", "backtest"])
def test_a_run_on_the_out_of_a_running_daemon_is_refused_naming_it_and_leaves_its_files_alone(
    second: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    with daemon_running(tmp_path, out) as first:
        streaming = {name: (out / name).stat().st_ino for name in (*STREAMED_FILES, INCOMPLETE_MARKER)}
        if second == "paper":
            args = ["paper", str(paper_config(tmp_path, "second")), "--max-seconds", "1"]
        else:
            args = ["backtest", str(backtest_config(tmp_path))]
        res = CliRunner().invoke(app, [*args, "--out", str(out), "--force"])
        after = {name: (out / name).stat().st_ino for name in streaming}
    assert res.exit_code == 2, res.output
    assert f"output directory {out} is in use by another running tradebus run (pid {first.pid} on " \
        f"{socket.gethostname()}: {sys.executable} -m tradebus.cli paper" in " ".join(res.output.split())
    assert after == streaming  # the first daemon's files were not replaced under it
    assert not (tmp_path / "second.sqlite").exists()  # refused before anything was opened
    assert first.returncode == 0, (tmp_path / "first.log").read_text(errors="replace")
    assert not (out / INCOMPLETE_MARKER).exists() and (out / "node.json").is_file()  # the first finished its outputs


def test_a_killed_daemon_leaves_its_out_free_and_force_writes_beside_foreign_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = start_daemon(tmp_path, out)
    first.kill()  # SIGKILL: no cleanup; the kernel drops the lock
    first.wait()
    (out / "notes.txt").write_text("mine\n")
    before = (out / "fills.csv").stat().st_ino
    res = CliRunner().invoke(
        app, ["paper", str(paper_config(tmp_path, "second")), "--out", str(out), "--force", "--max-seconds", "0.5"]
    )
    assert res.exit_code == 0, res.output
    assert (out / "fills.csv").stat().st_ino != before and (out / "node.json").is_file()
    assert (out / "notes.txt").read_text() == "mine\n"


def test_a_daemon_recording_into_the_file_a_running_daemon_records_is_refused_naming_it(tmp_path: Path) -> None:
    # Two daemons with journals and --out directories of their own but one record: file both appended their gzip
    # streams to it, interleaved: 'replay --session 1' of such a file read 0 of its daemon's 6 fills, '--session 2'
    # stopped at a malformed line.
    recording = tmp_path / "frames.jsonl.gz"
    with daemon_running(tmp_path, tmp_path / "out", recording) as first:
        res = CliRunner().invoke(app, ["paper", str(paper_config(tmp_path, "second", recording)),
                                       "--out", str(tmp_path / "out2"), "--max-seconds", "1"])
    assert res.exit_code == 2, res.output
    assert f"record {recording}: in use by another running daemon (pid {first.pid} on {socket.gethostname()}: " \
        f"{sys.executable} -m tradebus.cli paper" in " ".join(res.output.split())
    assert first.returncode == 0, (tmp_path / "first.log").read_text(errors="replace")
    assert not (tmp_path / "second.sqlite").exists() and not list((tmp_path / "out2").glob("*"))
    # the recording is the first daemon's session alone, whole
    assert [conn for _, conn, _ in read_frames(recording, runs=True)] == ["run:start", "run:stop"]
    # once it stopped, a daemon records into the file again (its session appended)
    res = CliRunner().invoke(app, ["paper", str(paper_config(tmp_path, "second", recording)),
                                   "--out", str(tmp_path / "out2"), "--max-seconds", "0.5"])
    assert res.exit_code == 0, res.output
    assert [conn for _, conn, _ in read_frames(recording, runs=True)] == ["run:start", "run:stop"] * 2
