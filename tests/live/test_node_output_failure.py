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
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tradebus.adapters.binance.emulator import BinanceProtocol
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.cli import app
from tradebus.features.warmup import warm_up
from tradebus.reports.writers import INCOMPLETE_MARKER, STREAMED_FILES

from .node_testdata import SPOT_FRAMES, SPOT_SNAPSHOT, binance_config
from .test_node_journal_errors import paper_config, write_journal
from .test_node_restart import ROOT, journal_rows

pytestmark = pytest.mark.usefixtures("_loguru_to_current_stderr")


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


async def test_a_full_disk_mid_run_stops_the_daemon_with_exit_2_naming_the_file_not_a_reconnect_loop(tmp_path: Path) -> None:
    warm_up()
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), SPOT_FRAMES, speed=6.0, lifetime=90.0) as srv:
        data = binance_config(srv.ws_url, srv.http_url, ["trade", "bookTicker"])
        data["report"] = {"equity_interval": "1s"}
        cfg = tmp_path / "paper.yaml"
        cfg.write_text(yaml.safe_dump(data), encoding="utf-8")
        daemon = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tradebus.cli", "paper", str(cfg), "--out", str(out), "--max-seconds", "30",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
        )
        output = asyncio.create_task(daemon.communicate())
        fills = out / "fills.csv"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60.0
        while not (fills.exists() and len(fills.read_text(encoding="utf-8").splitlines()) >= 3):
            assert not output.done(), (await output)[0].decode()
            assert loop.time() < deadline, "timed out waiting for 2 fill rows"
            await asyncio.sleep(0.05)
        resource.prlimit(daemon.pid, resource.RLIMIT_FSIZE, (1, 1))  # the disk is full from now on
        log = (await asyncio.wait_for(output, 60.0))[0].decode()

    assert daemon.returncode == 2, log
    stopped = [line for line in log.splitlines() if "paper daemon stopping" in line]
    assert len(stopped) == 1 and "outputs failed: output " in stopped[0] and "(EFBIG: File too large)" in stopped[0], log
    failed = stopped[0].split("outputs failed: output ", 1)[1].split(":", 1)[0]
    assert Path(failed).parent == out and Path(failed).name in STREAMED_FILES
    assert f"error: output {failed}: cannot write it (EFBIG: File too large)" in log
    assert "connection ended (OSError" not in log and "Traceback" not in log
    assert (out / INCOMPLETE_MARKER).exists() and not (out / "metrics.json").exists()
