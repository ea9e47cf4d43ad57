"""A ``tradebus data import``/``backfill`` SIGKILLed at each step of its catalog commit, then run again.

The killed process is a real one: a wrapper script makes the catalog module's own ``os.rename``,
``shutil.rmtree`` and ``sha256_file`` send SIGKILL to their process at one point of the commit
(staging a file, before retiring the old version, between the two renames, after the swap,
midway through removing the retired copy: a seeded number of its files gone). After the kill the
dataset must read as the old version or the new one, rows counted, be listed by ``data list``,
and the next run must leave nothing of the catalog's staging or retired directories behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.data.test_data_backfill import FIRST_MS, MINUTE_MS, Venue, exchange
from tests.data.test_data_catalog import DAY_NS, make_bars
from tradebus.data.backfill import backfill_ohlcv
from tradebus.data.catalog import Catalog, DatasetRef
from tradebus.data.cli import data_app
from tradebus.data.ingest import import_file

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"
DAY_1 = FIXTURES / "ADABTC-1m-2021-11-27_head120.csv"
DAY_2 = FIXTURES / "ADABTC-1m-2021-11-28_head120.csv"
REF = DatasetRef("binance", "spot", "ADABTC", "bars_1m")

WRAPPER = r"""
import os, random, shutil, signal, sys, types
from pathlib import Path

import tradebus.data.catalog as catalog
from tradebus.cli import main

point, seed = sys.argv[1], int(sys.argv[2])
real_sha, renames = catalog.sha256_file, []


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def rename(src, dst):
    renames.append(dst)
    if (point, len(renames)) in (("retire", 1), ("install", 2)):
        die()
    os.rename(src, dst)
    if (point, len(renames)) == ("installed", 2):
        die()


def rmtree(path, ignore_errors=False):
    if point == "cleanup" and ".old-" in Path(path).name:
        files = sorted(p for p in Path(path).rglob("*") if p.is_file())
        for f in files[: random.Random(seed).randint(1, len(files))]:
            f.unlink()
        die()
    shutil.rmtree(path, ignore_errors=ignore_errors)


def sha256_file(path):
    if point == "staging":
        die()
    return real_sha(path)


catalog.os = types.SimpleNamespace(**{**vars(os), "rename": rename})
catalog.shutil = types.SimpleNamespace(**{**vars(shutil), "rmtree": rmtree})
catalog.sha256_file = sha256_file
main(sys.argv[3:])
"""

#: Where the commit is killed, and which version the dataset holds after it.
POINTS = {"staging": "old", "retire": "old", "install": "old", "installed": "new", "cleanup": "new"}


@pytest.fixture
def venue() -> Iterator[Venue]:
    server = Venue()
    server.throttle_next = 0
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def run(args: list[str], point: str = "none", seed: int = 0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", WRAPPER, point, str(seed), *args], capture_output=True, text=True,
                          timeout=300, env=os.environ.copy(), check=False)


def import_args(root: Path) -> list[str]:
    return ["data", "import", str(DAY_2), "--venue", "binance", "--market", "spot", "--symbol", "ADABTC",
            "--append", "--catalog", str(root)]


def backfill_args(venue: Venue, root: Path) -> list[str]:
    return ["data", "backfill", "--exchange", "binance", "--symbol", "ADA/BTC", "--timeframe", "1m",
            "--since", "2021-11-27T00:00:00", "--until", "2021-11-27T02:00:00", "--api-base", venue.url,
            "--rate-limit-ms", "1", "--market-types", "spot", "--catalog", str(root)]


def import_old(root: Path, venue: Venue) -> list[str]:
    import_file(root, DAY_1, venue="binance", market="spot", symbol="ADABTC")
    return import_args(root)


def backfill_old(root: Path, venue: Venue) -> list[str]:
    backfill_ohlcv(root, exchange(venue, 1), "ADA/BTC", "1m", since_ms=FIRST_MS, until_ms=FIRST_MS + 60 * MINUTE_MS,
                   venue="binance", market="spot", catalog_symbol="ADABTC")
    return backfill_args(venue, root)


#: The command, how to write the old version, the rows of the old and of the new one (the fixture lacks 5 minutes
#: of 2021-11-27, 00:40-00:44).
COMMANDS: dict[str, tuple[Callable[[Path, Venue], list[str]], int, int]] = {
    "import": (import_old, 120, 240),
    "backfill": (backfill_old, 55, 115),
}


def closes(root: Path) -> list[int]:
    return Catalog(root).read(*REF.relpath().parts).column("ts_event").to_pylist()


#: Every point for an import; a backfill (slower to start) where the old code lost or kept a directory.
CASES = [*(("import", p) for p in POINTS), ("backfill", "install"), ("backfill", "cleanup")]


@pytest.mark.parametrize(("command", "point"), CASES)
def test_a_commit_killed_leaves_the_old_or_the_new_version_and_the_next_run_cleans_up(
    venue: Venue, tmp_path: Path, command: str, point: str
) -> None:
    write_old, old_rows, new_rows = COMMANDS[command]
    reference = tmp_path / "reference"
    run_args = write_old(reference, venue)
    old = closes(reference)
    assert CliRunner().invoke(data_app, run_args[1:]).exit_code == 0
    new = closes(reference)
    assert (len(old), len(new)) == (old_rows, new_rows)

    root = tmp_path / "catalog"
    args = [str(root) if a == str(reference) else a for a in write_old(root, venue)]
    killed = run(args, point, seed=len(point))
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    cat = Catalog(root)
    assert cat.datasets() == [REF]
    assert closes(root) == (old if POINTS[point] == "old" else new)
    cat.verify(*REF.relpath().parts)
    listed = CliRunner().invoke(data_app, ["ls", "--catalog", str(root)])
    rows = old_rows if POINTS[point] == "old" else new_rows
    assert listed.exit_code == 0 and "ADABTC" in listed.output and str(rows) in listed.output.replace(",", ""), \
        listed.output

    again = run(args)
    if POINTS[point] == "new" and command == "import":  # the day is in already: the append is refused
        assert again.returncode == 3 and "overlap" in again.stderr, again.stderr
    else:
        assert again.returncode == 0, again.stderr
    assert closes(root) == new
    assert sorted(os.listdir(root / "binance" / "spot" / "ADABTC")) == ["bars_1m"]


def test_an_append_open_when_another_writer_is_killed_mid_commit_commits_onto_the_rolled_back_version(
    tmp_path: Path,
) -> None:
    """A writer killed between its commit's two renames while another append was open: the open one's commit
    used to be refused ("dataset changed by another run", the dataset missing until a read healed it) though
    the dataset, rolled back, is the one it opened on; its commit now recovers first and stores 31 + 29 days."""
    cat = Catalog(tmp_path)
    full = make_bars(60, step_ns=DAY_NS)
    cat.write(full.slice(0, 31), "x", "spot", "S", "bars_1d", "month", interval_ns=DAY_NS)
    feb = cat.writer("x", "spot", "S", "bars_1d", "month", kind="bars", interval_ns=DAY_NS, mode="append")
    feb.write(full.slice(31, 29))
    base = cat.dataset_dir("x", "spot", "S", "bars_1d")
    # what the killed writer left: its dataset retired by the first rename, its staging not renamed in
    os.rename(base, base.parent / f".bars_1d.old-{uuid.uuid4().hex}")
    (base.parent / f".bars_1d.tmp-{uuid.uuid4().hex}").mkdir()
    assert feb.commit().rows == 60
    assert cat.read("x", "spot", "S", "bars_1d").equals(full)
    assert sorted(os.listdir(base.parent)) == ["bars_1d"]


#: ``tradebus`` with the catalog module's ``os.replace`` killing its process: ``set-contract-size`` killed between
#: writing its staged manifest and swapping it in.
REPLACE_KILLER = r"""
import os, signal, sys, types

import tradebus.data.catalog as catalog
from tradebus.cli import main


def replace(src, dst):
    os.kill(os.getpid(), signal.SIGKILL)


catalog.os = types.SimpleNamespace(**{**vars(os), "replace": replace})
main(sys.argv[1:])
"""


def test_a_contract_size_record_killed_before_its_swap_leaves_no_staged_manifest_for_good(tmp_path: Path) -> None:
    """data set-contract-size okx/swap/BTC-USDT-SWAP/trades 0.01 SIGKILLed between writing its staged
    .manifest.json.tmp-<id> and the swap left that file in the dataset's folder for good; the next manifest
    write and the next writer now remove it, unless a live process holds it."""
    from tests.data.test_data_catalog import make_trades

    cat = Catalog(tmp_path)
    cat.write(make_trades(10), "okx", "swap", "BTC-USDT-SWAP", "trades")
    base = cat.dataset_dir("okx", "swap", "BTC-USDT-SWAP", "trades")
    before = (base / "manifest.json").read_bytes()
    args = ["data", "set-contract-size", "okx/swap/BTC-USDT-SWAP/trades", "0.01", "--catalog", str(tmp_path)]
    killed = subprocess.run([sys.executable, "-c", REPLACE_KILLER, *args], capture_output=True, text=True,
                            timeout=300, env=os.environ.copy(), check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (staged,) = [n for n in os.listdir(base) if n.startswith(".manifest.json.tmp-")]
    assert (base / "manifest.json").read_bytes() == before
    # a live writer's staged manifest (one holding its flock) and a file not named by the catalog's rule are kept
    live = base / f".manifest.json.tmp-{uuid.uuid4().hex}"
    live.write_bytes(b"{}")
    fd = os.open(live, os.O_RDONLY)
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX)
        (base / ".manifest.json.tmp-mine").write_bytes(b"user")
        assert CliRunner().invoke(data_app, args[1:]).exit_code == 0
        assert sorted(n for n in os.listdir(base) if n.startswith(".")) == [live.name, ".manifest.json.tmp-mine"]
    finally:
        os.close(fd)
    assert cat.manifest("okx", "swap", "BTC-USDT-SWAP", "trades").contract_size == 0.01
    # the next writer of the symbol's folder (another dataset) finds the live one dead now
    cat.write(make_trades(10), "okx", "swap", "BTC-USDT-SWAP", "trades_copy")
    assert sorted(n for n in os.listdir(base) if n.startswith(".")) == [".manifest.json.tmp-mine"]
    assert staged not in os.listdir(base)


#: ``tradebus`` run without root's power to bypass file permissions (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH dropped
#: from the bounding set before the exec), so that a file of mode 000 is unreadable to it as to any other user.
_PR_CAPBSET_DROP, _DAC_CAPS = 24, (1, 2)


def _without_dac_override() -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in _DAC_CAPS:
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_a_staged_manifest_the_writer_cannot_open_is_kept_and_named(tmp_path: Path) -> None:
    """A live set-contract-size's staged .manifest.json.tmp-<id> of mode 000 (another user's write): the next
    writer of the symbol's folder could not open it to test its lock, took it for a dead write's and deleted it
    (exit 0), so the live write's swap then failed; now exit 2 naming the file, and it is kept."""
    from tests.data.test_data_catalog import make_trades

    cat = Catalog(tmp_path)
    cat.write(make_trades(10), "okx", "swap", "BTC-USDT-SWAP", "trades")
    base = cat.dataset_dir("okx", "swap", "BTC-USDT-SWAP", "trades")
    live = base / f".manifest.json.tmp-{uuid.uuid4().hex}"
    live.write_bytes(b"{}")
    fd = os.open(live, os.O_RDONLY)
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX)  # the live write
        live.chmod(0)
        args = ["data", "set-contract-size", "okx/swap/BTC-USDT-SWAP/trades", "0.01", "--catalog", str(tmp_path)]
        if os.geteuid() == 0:
            done = subprocess.run([sys.executable, "-c", "import sys; from tradebus.cli import main; main(sys.argv[1:])",
                                   *args], capture_output=True, text=True, timeout=300, env=os.environ.copy(),
                                  preexec_fn=_without_dac_override, check=False)
            code, said = done.returncode, " ".join(done.stderr.split())
        else:
            result = CliRunner().invoke(data_app, args[1:])
            code, said = result.exit_code, " ".join(result.output.split())
        assert code == 2, said
        assert "Traceback" not in said
        assert (f"{live}: cannot tell whether a running write holds it, left by a write of the catalog: cannot open "
                "it (EACCES: Permission denied); nothing was removed") in said, said
        assert live.exists()
    finally:
        os.close(fd)
        live.chmod(0o644)
    assert cat.manifest("okx", "swap", "BTC-USDT-SWAP", "trades").contract_size is None


def test_an_append_that_cannot_read_back_a_file_of_the_dataset_names_the_step_and_the_file(tmp_path: Path) -> None:
    """data import --append of binance/spot/ADABTC/bars_1m whose stored part is of mode 000: the commit's re-read of
    it (the gap count of the whole dataset) failed, and the error said 'writing its Parquet files failed (EACCES:
    Permission denied)', a step it had finished, naming no file; now it names the re-read and the file."""
    import_file(tmp_path, DAY_1, venue="binance", market="spot", symbol="ADABTC")
    base = Catalog(tmp_path).dataset_dir(*REF.relpath().parts)
    before = {p: p.read_bytes() for p in base.rglob("*") if p.is_file()}
    (part,) = [p for p in before if p.suffix == ".parquet"]
    part.chmod(0)
    try:
        done = subprocess.run([sys.executable, "-c", "import sys; from tradebus.cli import main; main(sys.argv[1:])",
                               *import_args(tmp_path)], capture_output=True, text=True, timeout=300,
                              env=os.environ.copy(), preexec_fn=_without_dac_override if os.geteuid() == 0 else None,
                              check=False)
    finally:
        part.chmod(0o644)
    said = " ".join(done.stderr.split())
    assert done.returncode == 2, done.stderr
    assert (f"catalog {tmp_path}: cannot write binance/spot/ADABTC/bars_1m: reading its Parquet file "
            f"{part.relative_to(base).as_posix()} (to count the gaps between bars) failed (EACCES: ") in said, said
    assert said.endswith("Permission denied); the dataset is left as it was"), said
    assert {p: p.read_bytes() for p in base.rglob("*") if p.is_file()} == before
    assert sorted(os.listdir(base.parent)) == ["bars_1m"]
