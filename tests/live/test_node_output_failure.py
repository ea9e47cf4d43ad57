"""A daemon whose output files cannot be written (a full disk) stops cleanly, exit 2, naming the file and the errno.

Before, an ``OSError`` of a row write inside a bus handler reached the feed client, which took it
for a network error and reconnected while the daemon kept trading with its row files frozen; at
stop ``finish()`` raised the ``OSError`` again (a traceback, exit 1), and a failure at start gave a
traceback and then ``KeyError: 'orders.csv'``. The journal holds every order and fill: a restart
with the space freed rewrites the outputs from it.

No root tricks: at start an output file's name is taken by a directory (the new file cannot replace it:
EISDIR); mid-run the running daemon's file size limit is lowered to 1 byte (``prlimit``: Python ignores
``SIGXFSZ``, so its next row write fails with EFBIG), the daemon logging to a pipe, which that limit does
not cover.

A daemon never writes outside its own files: an output file that is a symlink (``--force``) is replaced,
and what it pointed to is left untouched.
"""

from __future__ import annotations

import asyncio
import csv
import os
import resource
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tests.reaped import areaped
from tradebus.adapters.binance.emulator import BinanceProtocol
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.adapters.common.recorder import read_frames
from tradebus.cli import app
from tradebus.reports.writers import INCOMPLETE_MARKER, STREAMED_FILES

from .node_testdata import SPOT_FRAMES, SPOT_SNAPSHOT, binance_config
from .test_node_journal_errors import paper_config, write_journal
from .test_node_restart import ROOT, journal_rows

pytestmark = pytest.mark.usefixtures("_loguru_to_current_stderr", "compiled_kernels")


def test_outputs_unwritable_at_start_exit_2_naming_the_file_and_a_restart_rewrites_them_from_the_journal(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "journal.sqlite"
    write_journal(journal, 2)  # two orders the stopped daemon had submitted
    config = paper_config(tmp_path, journal)
    out = tmp_path / "out"
    (out / "orders.csv").mkdir(parents=True)
    entries = journal_rows(journal)

    full = CliRunner().invoke(app, ["paper", str(config), "--out", str(out), "--force", "--max-seconds", "5"])

    assert full.exit_code == 2, full.output
    assert f"output {out / 'orders.csv'}: cannot write it (EISDIR: Is a directory)" in full.output
    assert "Traceback" not in full.output and "KeyError" not in full.output
    assert journal_rows(journal)[: len(entries)] == entries  # the journal is intact
    assert (out / INCOMPLETE_MARKER).exists() and not (out / "metrics.json").exists()

    (out / "orders.csv").rmdir()  # the obstacle removed
    restart = CliRunner().invoke(app, ["paper", str(config), "--out", str(out), "--max-seconds", "1"])

    assert restart.exit_code == 0, restart.output
    with (out / "orders.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["client_order_id"], r["status"]) for r in rows] == [("TickEmaCross0", "CANCELED"), ("TickEmaCross1", "CANCELED")]
    assert (out / "metrics.json").is_file() and not (out / INCOMPLETE_MARKER).exists()


def test_a_daemon_with_force_replaces_an_output_file_symlink_and_leaves_its_target_untouched(tmp_path: Path) -> None:
    """``ln -s victim.csv out/orders.csv``: the daemon wrote its orders header into victim.csv (opened with "w")."""
    victim = tmp_path / "victim.csv"
    victim.write_text("the user's file\n", encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    (out / "orders.csv").symlink_to(victim)
    config = paper_config(tmp_path, tmp_path / "journal.sqlite")

    res = CliRunner().invoke(app, ["paper", str(config), "--out", str(out), "--force", "--max-seconds", "1"])

    assert res.exit_code == 0, res.output
    assert victim.read_text(encoding="utf-8") == "the user's file\n"
    assert not (out / "orders.csv").is_symlink()
    assert (out / "orders.csv").read_text(encoding="utf-8").startswith("client_order_id,")
    assert sorted(os.listdir(tmp_path)) == ["journal.sqlite", "out", "paper.yaml", "victim.csv"]


async def run_until_the_disk_fills(
    tmp_path: Path, options: dict[str, Any], cli: list[str], ready: Callable[[], bool], what: str
) -> tuple[int | None, str]:
    """Run a paper daemon (a subprocess) on the Binance capture until ``ready()``, then fill its disk.

    ``options`` go into the config, ``cli`` after ``tradebus paper <config>``. Returns the exit code and the log.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), SPOT_FRAMES, speed=6.0, lifetime=600.0) as srv:
        data = binance_config(srv.ws_url, srv.http_url, ["trade", "bookTicker"]) | options
        cfg = tmp_path / "paper.yaml"
        cfg.write_text(yaml.safe_dump(data), encoding="utf-8")
        daemon = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tradebus.cli", "paper", str(cfg), *cli, "--max-seconds", "30",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
        )
        async with areaped(daemon):
            output = asyncio.create_task(daemon.communicate())
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60.0
            while not ready():
                assert not output.done(), (await output)[0].decode()
                assert loop.time() < deadline, f"timed out waiting for {what}"
                await asyncio.sleep(0.05)
            resource.prlimit(daemon.pid, resource.RLIMIT_FSIZE, (1, 1))  # the disk is full from now on
            log = (await asyncio.wait_for(output, 60.0))[0].decode()
    return daemon.returncode, log


async def test_a_full_disk_mid_run_stops_the_daemon_with_exit_2_naming_the_file_not_a_reconnect_loop(tmp_path: Path) -> None:
    out = tmp_path / "out"
    fills = out / "fills.csv"
    returncode, log = await run_until_the_disk_fills(
        tmp_path, {"report": {"equity_interval": "1s"}}, ["--out", str(out)],
        lambda: fills.exists() and len(fills.read_text(encoding="utf-8").splitlines()) >= 3, "2 fill rows",
    )

    assert returncode == 2, log
    stopped = [line for line in log.splitlines() if "paper daemon stopping" in line]
    assert len(stopped) == 1 and "outputs failed: output " in stopped[0] and "(EFBIG: File too large)" in stopped[0], log
    failed = stopped[0].split("outputs failed: output ", 1)[1].split(":", 1)[0]
    assert Path(failed).parent == out and Path(failed).name in STREAMED_FILES
    assert f"error: output {failed}: cannot write it (EFBIG: File too large)" in log
    assert "connection ended (OSError" not in log and "Traceback" not in log
    assert (out / INCOMPLETE_MARKER).exists() and not (out / "metrics.json").exists()


async def test_a_full_disk_on_the_journal_stops_the_daemon_exit_3_naming_it_and_sends_no_order_it_did_not_journal(
    tmp_path: Path,
) -> None:
    """The SQLite error was raised in the feed's handler: exit 1, 'binance-spot: fatal connection error: OperationalError'."""
    journal = tmp_path / "journal.sqlite"
    returncode, log = await run_until_the_disk_fills(
        tmp_path, {"journal": str(journal)}, [],
        lambda: sum(row[1] == "OrderFilled" for row in journal_rows(journal)) >= 2, "2 journaled fills",
    )

    error = f"journal {journal}: cannot write it (SQLITE_IOERR_WRITE: disk I/O error)"
    assert returncode == 3, log
    stopped = [line for line in log.splitlines() if "paper daemon stopping" in line]
    assert stopped == [stopped[0]] and stopped[0].endswith(f"journal failed: {error}"), log
    assert f"error: {error}" in log
    assert "Traceback" not in log and "connection ended" not in log and "OperationalError" not in log
    rows = journal_rows(journal)
    submitted = {coid for _, type_, coid, _ in rows if type_ == "OrderSubmitted"}
    decided = {line.split("decision ", 1)[1].split()[0] for line in log.splitlines() if "-> submitted" in line}
    assert decided and decided == submitted  # every order sent is in the journal, with its decision
    assert [type_ for _, type_, _, _ in rows].count("SubmitOrder") == len(submitted)  # no command without its decision
    restart = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tradebus.cli", "paper", str(paper_config(tmp_path, journal)), "--max-seconds", "1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    async with areaped(restart):
        restarted = (await asyncio.wait_for(restart.communicate(), 60.0))[0].decode()
    assert restart.returncode == 0, restarted  # the journal reads back
    assert f"recovered {len(submitted)} order(s) from journal {journal}" in restarted


async def test_a_full_disk_on_the_recording_stops_the_daemon_exit_2_naming_it_not_a_reconnect_loop(tmp_path: Path) -> None:
    """The recorder's OSError was taken for a network error: a reconnect loop, then an OSError traceback at stop."""
    recording = tmp_path / "frames.jsonl.gz"
    returncode, log = await run_until_the_disk_fills(
        tmp_path, {"record": str(recording)}, [],
        lambda: recording.exists() and recording.stat().st_size > 20_000, "a recording of 20 kB",
    )

    error = f"record {recording}: cannot write it (EFBIG: File too large)"
    assert returncode == 2, log
    stopped = [line for line in log.splitlines() if "paper daemon stopping" in line]
    assert stopped == [stopped[0]] and stopped[0].endswith(f"recording failed: {error}"), log
    assert f"error: {error}" in log
    assert "Traceback" not in log and "connection ended" not in log and "reconnecting" not in log
    assert len(list(read_frames(recording))) > 100  # readable up to its last flush
