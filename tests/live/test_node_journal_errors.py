"""A daemon that fails before it starts writing changes nothing in its output directory.

The restart of a daemon on its journal and ``--out`` directory rewrites the outputs from the
journal; when it stops before that (a journal it cannot read, a venue it cannot reach) it exits
with an error naming the cause, and the previous run's outputs stay as they were.
"""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.execution.test_journal_owner import unowned_version_3
from tradebus.cli import app
from tradebus.engine.messages import Liquidity, OrderAccepted, OrderFilled, OrderSide, OrderSubmitted, SubmitOrder
from tradebus.errors import VenueError
from tradebus.execution.journal import Journal
from tradebus.node.config import load_paper_config
from tradebus.node.daemon import PaperNode
from tradebus.node.live import run_live
from tradebus.reports.writers import INCOMPLETE_MARKER

from .node_testdata import BINANCE_INSTRUMENT, IID, binance_config

pytestmark = pytest.mark.usefixtures("_loguru_to_current_stderr")

T0 = 1_723_161_253_000_000_000


def write_journal(path: Path, orders: int) -> None:
    """A journal of ``orders`` submitted orders."""
    journal = Journal(path)
    for i in range(orders):
        coid = f"TickEmaCross{i}"
        journal.record_command(SubmitOrder("TickEmaCross", IID, coid, OrderSide.BUY, 0.01, T0 + i, T0 + i), coid)
        journal.record_event(OrderSubmitted("TickEmaCross", IID, coid, T0 + i, T0 + i))
    journal.close()


def paper_config(tmp_path: Path, journal: Path) -> Path:
    """A paper config on ``journal`` whose feed is never reached (the journal is read first)."""
    data = binance_config("ws://127.0.0.1:9", "http://127.0.0.1:9", ["trade"])
    data["journal"] = str(journal)
    data["warm_up"] = False
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def earlier_outputs(out: Path) -> dict[str, bytes]:
    """The outputs of an earlier run killed mid-run (row files and the INCOMPLETE marker)."""
    out.mkdir(exist_ok=True)
    files = {
        "fills.csv": b"ts_event,time,instrument\n1,2,BTCUSDT.BINANCE\n",
        "orders.csv": b"client_order_id\nTickEmaCross0\n",
        "equity.csv": b"ts\n1\n",
        INCOMPLETE_MARKER: b"the daemon was killed\n",
    }
    for name, content in files.items():
        (out / name).write_bytes(content)
    return files


def test_restart_on_a_journal_with_an_undecodable_entry_exits_3_and_keeps_the_earlier_outputs(tmp_path: Path) -> None:
    journal = tmp_path / "run" / "journal.sqlite"
    journal.parent.mkdir()
    write_journal(journal, 2)
    db = sqlite3.connect(journal)
    db.execute("UPDATE journal SET payload = x'c1c1' WHERE seq = 3")
    db.commit()
    db.close()
    out = tmp_path / "run"
    before = earlier_outputs(out)

    res = CliRunner().invoke(app, ["paper", str(paper_config(tmp_path, journal)), "--out", str(out), "--max-seconds", "5"])

    assert res.exit_code == 3, res.output
    assert f"journal {journal}: seq 3: bad SubmitOrder payload" in res.output
    assert {p.name: p.read_bytes() for p in out.iterdir() if not p.name.startswith("journal")} == before



def test_paper_on_a_damaged_journal_file_exits_3_naming_it(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite"
    write_journal(journal, 100)
    data = bytearray(journal.read_bytes())
    page = 4096
    data[-page:] = b"\xff" * page  # a leaf page of the journal table overwritten: the file opens, its rows do not read
    journal.write_bytes(bytes(data))

    res = CliRunner().invoke(app, ["paper", str(paper_config(tmp_path, journal)), "--max-seconds", "5"])

    assert res.exit_code == 3, res.output
    assert f"journal {journal}: the database file is damaged" in res.output
    assert "Traceback" not in res.output


@pytest.mark.parametrize("kind", ["another database", "a newer schema"])
def test_paper_refuses_a_journal_file_that_is_not_its_own_and_leaves_it_untouched(tmp_path: Path, kind: str) -> None:
    journal = tmp_path / "data.sqlite"
    db = sqlite3.connect(journal)
    if kind == "another database":
        db.execute("CREATE TABLE prices (ts INTEGER, close REAL)")
        db.execute("INSERT INTO prices VALUES (1, 61826.61)")
        expected = "not a tradebus journal: an SQLite database of other tables (prices)"
    else:
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("INSERT INTO meta VALUES ('schema_version', '99')")
        expected = "schema version 99 is newer than this tradebus understands"
    db.commit()
    db.close()
    before = journal.read_bytes()

    res = CliRunner().invoke(app, ["paper", str(paper_config(tmp_path, journal)), "--max-seconds", "5"])

    assert res.exit_code == 3, res.output
    assert f"journal {journal}: {expected}" in res.output
    assert journal.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.sqlite", "paper.yaml"]  # no -wal, -shm


def test_live_restart_that_cannot_reach_the_venue_keeps_the_earlier_outputs(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on: the account cannot be read
        sock.bind(("127.0.0.1", 0))
        url = f"127.0.0.1:{sock.getsockname()[1]}"
    data = binance_config(f"ws://{url}", f"http://{url}", ["trade"])
    data["instruments"] = [{**BINANCE_INSTRUMENT, "margin": False}]
    data["warm_up"] = False
    data["live"] = {"rest_url": f"http://{url}", "ws_api_url": f"ws://{url}", "request_timeout": 1.0}
    config = tmp_path / "live.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    out = tmp_path / "out"
    before = earlier_outputs(out)

    with pytest.raises(VenueError, match="127.0.0.1"):
        run_live(config, out, max_seconds=5.0, environ={"TRADEBUS_BINANCE_API_KEY": "k", "TRADEBUS_BINANCE_API_SECRET": "s"})

    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_live_daemon_that_cannot_read_the_account_closes_its_journal(tmp_path: Path) -> None:
    """Its journal was opened with the daemon and closed only by the shutdown of a daemon that ran: its
    checkpoint thread and its database connection outlived a failed start."""
    import threading

    from tradebus.execution.journal import _Checkpointer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"127.0.0.1:{sock.getsockname()[1]}"
    data = binance_config(f"ws://{url}", f"http://{url}", ["trade"], tmp=tmp_path, journal=True)
    data["instruments"] = [{**BINANCE_INSTRUMENT, "margin": False}]
    data["warm_up"] = False
    data["live"] = {"rest_url": f"http://{url}", "ws_api_url": f"ws://{url}", "request_timeout": 1.0}
    config = tmp_path / "live.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(VenueError, match="127.0.0.1"):
        run_live(config, None, max_seconds=5.0, environ={"TRADEBUS_BINANCE_API_KEY": "k", "TRADEBUS_BINANCE_API_SECRET": "s"})
    assert [t for t in threading.enumerate() if isinstance(t, _Checkpointer)] == []


def test_a_second_daemon_on_a_journal_in_use_exits_3_and_leaves_journal_and_outputs_alone(tmp_path: Path) -> None:
    """Two daemons on one journal both traded: their orders interleaved in it (two epochs of ids) and a
    restart on it would have recovered the sum of both positions."""
    journal = tmp_path / "journal.sqlite"
    write_journal(journal, 2)
    config = paper_config(tmp_path, journal)
    running = PaperNode(load_paper_config(config), handle_signals=False)  # holds the journal as a running daemon does
    try:
        out = tmp_path / "out"
        before = earlier_outputs(out)
        res = CliRunner().invoke(app, ["paper", str(config), "--out", str(out), "--max-seconds", "5"])
        assert res.exit_code == 3, res.output
        assert f"journal {journal}: in use by another running daemon" in " ".join(res.output.split())
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
        db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
        try:
            assert db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone() == ("0",)  # the second began none
        finally:
            db.close()
    finally:
        assert running.journal is not None
        running.journal.close()
    # once the first closes it, the journal is free again
    again = PaperNode(load_paper_config(config), handle_signals=False)
    assert again.journal is not None
    again.journal.close()


HOLDER = """
import sys
from tradebus.execution.journal import Journal
journal = Journal(sys.argv[1], exclusive=True)  # as a running daemon holds it
print("holding", flush=True)
sys.stdin.readline()
journal.close()
"""


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="the lock's holder is read from Linux's /proc/locks")
def test_a_second_daemon_on_a_journal_in_use_names_the_process_holding_it(tmp_path: Path) -> None:
    """The refusal said only 'the file is locked': the operator had to hunt for the daemon to stop."""
    journal = tmp_path / "journal.sqlite"
    write_journal(journal, 1)
    config = paper_config(tmp_path, journal)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(journal)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
        res = CliRunner().invoke(app, ["paper", str(config), "--max-seconds", "5"])
    finally:
        holder.kill()  # SIGKILL: no close, no cleanup
        holder.communicate()
    assert res.exit_code == 3, res.output
    message = " ".join(res.output.split())
    assert f"journal {journal}: in use by another running daemon (pid {holder.pid} on {socket.gethostname()}: " \
        f"{sys.executable} -c" in message
    Journal(journal, exclusive=True).close()  # the killed holder left no lock behind


@pytest.mark.parametrize("version", ["current", "3"])
def test_a_journal_of_another_config_instrument_is_refused_naming_it_before_anything_is_written(
    tmp_path: Path, version: str
) -> None:
    """A config whose instrument changed (BTCUSDT -> ETHUSDT) ran on the old journal: it began a new epoch in
    it, then exited 1 with ``portfolio: fill 'SIM-T1' ... is for unknown instrument``, naming no journal.
    A journal of an earlier tradebus (version 3) was still migrated at open: marked version 4, which that
    tradebus then refused as newer than it understands."""
    journal = tmp_path / "journal.sqlite"
    write_journal(journal, 1)
    db = Journal(journal)
    db.record_event(OrderAccepted("TickEmaCross", IID, "TickEmaCross0", "SIM-1", T0 + 5, T0 + 5))
    db.record_event(OrderFilled("TickEmaCross", IID, "TickEmaCross0", "SIM-1", "SIM-T1", OrderSide.BUY, 0.01,
                                61_000.0, 0.61, Liquidity.TAKER, T0 + 6, T0 + 6))
    db.close()
    if version == "3":
        unowned_version_3(journal)
    data = yaml.safe_load(paper_config(tmp_path, journal).read_text(encoding="utf-8"))
    data["instruments"] = [{**BINANCE_INSTRUMENT, "symbol": "ETHUSDT", "base": "ETH"}]
    data["strategy"]["instruments"] = ["ETHUSDT.BINANCE"]
    data["feeds"][0]["subscriptions"] = {"ETHUSDT.BINANCE": ["trade"]}
    config = tmp_path / "eth.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    before = journal.read_bytes()
    out = tmp_path / "out"
    earlier = earlier_outputs(out)

    res = CliRunner().invoke(app, ["paper", str(config), "--out", str(out), "--max-seconds", "5"])

    assert res.exit_code == 3, res.output
    message = " ".join(res.output.split())
    assert f"journal {journal}: it holds orders on BTCUSDT.BINANCE (first at seq 1), which this config does not trade " \
        "(its instruments: ETHUSDT.BINANCE)" in message
    assert "Traceback" not in res.output
    assert journal.read_bytes() == before  # no epoch begun, nothing recovered
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eth.yaml", "journal.sqlite", "out", "paper.yaml"]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == earlier


def test_paper_on_a_truncated_journal_says_it_is_damaged_and_leaves_it_untouched(tmp_path: Path) -> None:
    """A journal cut short (a copy interrupted, a disk that lost its end) was called 'not a tradebus journal',
    leading the operator to take it for the wrong file and start on a new one, flat."""
    journal = tmp_path / "journal.sqlite"
    write_journal(journal, 100)
    journal.write_bytes(journal.read_bytes()[: journal.stat().st_size // 2])
    before = journal.read_bytes()

    res = CliRunner().invoke(app, ["paper", str(paper_config(tmp_path, journal)), "--max-seconds", "5"])

    assert res.exit_code == 3, res.output
    message = " ".join(res.output.split())
    assert f"journal {journal}: the database file is damaged (database disk image is malformed)" in message
    assert "not a tradebus journal" not in message
    assert "Traceback" not in res.output
    assert journal.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["journal.sqlite", "paper.yaml"]
