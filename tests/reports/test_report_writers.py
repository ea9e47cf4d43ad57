"""Writers: repr-exact CSV, stable JSON, one clock per column, and the run directory that touches only its own files."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from tradebus.engine.kernel import EquitySample, FillRecord, RunResult
from tradebus.errors import ConfigError
from tradebus.reports.writers import INCOMPLETE_MARKER, OPTIONAL_FILES, OWN_FILES, REPORT_FILE, RunDirectory, write_run


def make_result() -> RunResult:
    fills = [FillRecord(10, "X.SIM", "BUY", 0.1, 665.0600000000001, 0.1 + 0.2, "TAKER", "s-1", "s", "T1", "why, not")]
    equity = [EquitySample(10, 1e5, 1e5, 0.0, 0.0, 0.0, 0.0), EquitySample(20, 99_000.5, 1e5, 0.0, 0.0, 0.0, 0.0)]
    return RunResult(("X.SIM",), 1e5, start_ns=10, end_ns=20, bars=2, fills=fills, equity=equity)


def write(out: Path, kind: str = "backtest", result: RunResult | None = None, **options: object) -> RunDirectory:
    run_dir = RunDirectory(out, kind, **options)  # type: ignore[arg-type]
    extra = {"paper": {"node.json": "{}"}, "replay": {"playback.json": "{}"}}.get(kind, {})
    with run_dir:
        write_run(run_dir, result or make_result(), {"x": 1.0}, "a: 1\n", extra)
    return run_dir


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``directory`` with its bytes and modification time (ns)."""
    return {str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_csv_floats_are_repr_exact_and_text_is_quoted(tmp_path: Path) -> None:
    write(tmp_path / "run")
    with (tmp_path / "run" / "fills.csv").open() as handle:
        row = next(csv.DictReader(handle))
    assert row["price"] == "665.0600000000001"
    assert row["fee"] == "0.30000000000000004"
    assert row["reason"] == "why, not"
    assert row["liquidity"] == "taker"
    assert row["time"] == "1970-01-01T00:00:00.00000001Z"
    with (tmp_path / "run" / "equity.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows[1]["drawdown"] == repr(1.0 - 99_000.5 / 1e5)


def test_metrics_json_maps_non_finite_to_null_and_keeps_key_order(tmp_path: Path) -> None:
    run_dir = RunDirectory(tmp_path / "run", "backtest")
    with run_dir:
        write_run(run_dir, make_result(), {"b": float("inf"), "a": float("nan"), "c": [1.5]}, "")
    text = (tmp_path / "run" / "metrics.json").read_text()
    assert json.loads(text) == {"b": None, "a": None, "c": [1.5]}
    assert text.index('"b"') < text.index('"a"')


def test_orders_csv_has_one_clock_per_column_receive_time_created_venue_time_last_fill(tmp_path: Path) -> None:
    from tradebus.engine.messages import OrderSide, OrderType
    from tradebus.execution.orders import Order

    wall = 1_796_234_942_326_202_856  # the process clock of a paper run (receive time)
    filled = Order("s-1", "s", "X.SIM", OrderSide.BUY, OrderType.MARKET, 0.2, ts_created=wall)
    filled.ts_last = wall + 7  # the order manager's stamp of its last event: not written
    unfilled = Order("s-2", "s", "X.SIM", OrderSide.SELL, OrderType.LIMIT, 0.1, price=700.0, ts_created=wall + 9)
    venue = 1_723_161_259_113_000_000  # the exchange's time of the trades the order filled on
    fills = [FillRecord(venue, "X.SIM", "BUY", 0.1, 665.0, 0.0, "TAKER", "s-1", "s", "T1", ""),
             FillRecord(venue + 5, "X.SIM", "BUY", 0.1, 665.0, 0.0, "TAKER", "s-1", "s", "T2", "")]
    result = RunResult(("X.SIM",), 1e5, fills=fills, orders=[filled, unfilled])
    write(tmp_path / "run", result=result)
    with (tmp_path / "run" / "orders.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["ts_created"], r["ts_last_fill"]) for r in rows] == [(str(wall), str(venue + 5)), (str(wall + 9), "")]


def home_with_user_files(tmp_path: Path) -> Path:
    """A directory like ``~``: a user's notes and a folder of photos."""
    out = tmp_path / "home"
    (out / "photos").mkdir(parents=True)
    (out / "notes.txt").write_text("my notes")
    (out / "photos" / "a.jpg").write_bytes(b"\xff\xd8")
    return out


def test_notes_txt_in_the_output_directory_is_refused_naming_the_directory_and_the_file(tmp_path: Path) -> None:
    out = home_with_user_files(tmp_path)
    before = snapshot(out)
    with pytest.raises(ConfigError) as error:
        RunDirectory(out, "backtest")
    assert str(error.value).startswith(f"output directory {out} holds files a backtest run does not write: notes.txt, photos/")
    assert "--force" in str(error.value)
    assert snapshot(out) == before


def test_force_writes_the_run_files_and_leaves_every_foreign_file_untouched(tmp_path: Path) -> None:
    out = home_with_user_files(tmp_path)
    before = snapshot(out)
    write(out, force=True)
    after = snapshot(out)
    assert {name: after[name] for name in before} == before
    assert sorted(set(after) - set(before)) == sorted(set(OWN_FILES["backtest"]) - set(OPTIONAL_FILES))


def test_rerun_replaces_only_its_own_files_and_never_the_journal_or_recording(tmp_path: Path) -> None:
    out = tmp_path / "paper"
    out.mkdir()
    kept = [out / "journal.sqlite", out / "frames.jsonl.gz"]
    for path in [*kept, out / "journal.sqlite-wal", out / "journal.sqlite-shm"]:
        path.write_bytes(path.name.encode())
    before = snapshot(out)
    write(out, "paper", keep=kept)
    (out / "fills.csv").write_text("edited")
    write(out, "paper", keep=kept)
    after = snapshot(out)
    assert {name: after[name] for name in before} == before
    assert sorted(after) == sorted([*before, *(set(OWN_FILES["paper"]) - set(OPTIONAL_FILES))])
    assert (out / "fills.csv").read_text().startswith("ts_event,time,")
    # the same files are foreign to a run that does not name them
    with pytest.raises(ConfigError, match="frames.jsonl.gz, journal.sqlite, journal.sqlite-shm, journal.sqlite-wal"):
        RunDirectory(out, "paper")


def test_a_journal_in_a_subdirectory_of_the_output_directory_is_allowed(tmp_path: Path) -> None:
    out = tmp_path / "paper"
    (out / "state").mkdir(parents=True)
    (out / "state" / "journal.sqlite").write_text("db")
    write(out, "paper", keep=[out / "state" / "journal.sqlite"])
    assert (out / "state" / "journal.sqlite").read_text() == "db"


def test_each_kind_of_run_owns_its_files_only(tmp_path: Path) -> None:
    out = tmp_path / "run"
    write(out, "paper")
    with pytest.raises(ConfigError, match="holds files a replay run does not write: node.json"):
        RunDirectory(out, "replay")
    run_dir = RunDirectory(tmp_path / "other", "backtest")
    with pytest.raises(ValueError, match="'node.json' is not a file a backtest run writes"), run_dir, \
            run_dir.open("node.json"):
        pass


def test_failure_while_writing_keeps_the_previous_run_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    out = tmp_path / "run"
    write(out)
    before = snapshot(out)
    run_dir = RunDirectory(out, "backtest")
    with pytest.raises(RuntimeError), run_dir:
        with run_dir.open("fills.csv") as handle:
            handle.write("half")
        raise RuntimeError("boom")
    assert snapshot(out) == before


def test_an_output_that_cannot_be_written_is_a_config_error_naming_the_file_and_the_errno(tmp_path: Path) -> None:
    """A full disk while the outputs were written at the end gave an OSError traceback (exit 1) naming neither."""
    out = tmp_path / "run"
    write(out)
    before = snapshot(out)
    run_dir = RunDirectory(out, "backtest")
    (out / f".metrics.json.tmp-{os.getpid()}").symlink_to("/dev/full")  # the temporary file metrics.json is written to
    with pytest.raises(ConfigError, match=f"^output {out / 'metrics.json'}: cannot write it \\(ENOSPC: No space left on device\\)$"):
        with run_dir:
            write_run(run_dir, make_result(), {"x": 2.0}, "a: 2\n")
    assert snapshot(out) == before  # the earlier run's files, and no temporary file left


def test_failure_with_a_new_directory_leaves_no_directory(tmp_path: Path) -> None:
    run_dir = RunDirectory(tmp_path / "a" / "run", "backtest")
    with pytest.raises(RuntimeError), run_dir:
        raise RuntimeError("boom")
    assert not (tmp_path / "a" / "run").exists()


def test_interrupted_replacement_leaves_the_incomplete_marker(tmp_path: Path) -> None:
    out = tmp_path / "run"
    write(out)
    # equity.csv can no longer be replaced: the moves stop after fills.csv and orders.csv
    (out / "equity.csv").unlink()
    (out / "equity.csv").mkdir()
    run_dir = RunDirectory(out, "backtest", force=True)
    with pytest.raises(ConfigError, match=f"output {out / 'equity.csv'}: cannot write it \\(EISDIR"), run_dir:
        write_run(run_dir, make_result(), {"x": 2.0}, "a: 2\n")
    assert INCOMPLETE_MARKER in os.listdir(out)
    assert "did not finish" in (out / INCOMPLETE_MARKER).read_text()
    assert not [name for name in os.listdir(out) if ".tmp-" in name]
    run_dir.close()  # the run is over: the next may write there
    # the next complete run removes the marker
    (out / "equity.csv").rmdir()
    write(out)
    assert INCOMPLETE_MARKER not in os.listdir(out)


def test_an_output_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="exists and is not a directory"):
        RunDirectory(tmp_path / "f", "replay")



def test_a_rerun_rewrites_the_tearsheet_an_earlier_run_left_for_its_own_numbers(tmp_path: Path) -> None:
    """``--report`` on one run, then a run of other parameters into the same directory without it: the
    earlier page stayed, showing the earlier total return beside the new metrics.json."""
    import shutil

    from tradebus.cli import run_backtest
    from tradebus.reports.tearsheet import write_tearsheet
    from tests.reports.test_report_tearsheet import BARS, _config

    shutil.copy(BARS, tmp_path / "bars.csv")
    out = tmp_path / "run"
    _, first, _ = run_backtest(_config(tmp_path, 10), out, report=True)
    page = out / REPORT_FILE
    before = page.read_bytes()
    _, second, _ = run_backtest(_config(tmp_path, 5), out)
    assert first["total_return"] != second["total_return"]
    assert page.read_bytes() != before
    assert page.read_bytes() == write_tearsheet(out, tmp_path / "fresh.html").read_bytes()
    run_backtest(_config(tmp_path, 5), tmp_path / "plain")  # no page asked for, none there: none written
    assert not (tmp_path / "plain" / REPORT_FILE).exists()


def test_a_streamed_file_that_is_a_symlink_is_replaced_and_its_target_left_untouched(tmp_path: Path) -> None:
    """``stream`` opened ``orders.csv`` with "w", writing through a symlink to a file outside the directory."""
    victim = tmp_path / "victim.csv"
    victim.write_text("not the run's\n")
    out = tmp_path / "run"
    out.mkdir()
    (out / "orders.csv").symlink_to(victim)
    run_dir = RunDirectory(out, "paper", force=True)
    with run_dir:
        with run_dir.stream("orders.csv") as handle:
            handle.write("client_order_id\n")
    assert victim.read_text() == "not the run's\n"
    assert not (out / "orders.csv").is_symlink() and (out / "orders.csv").read_text() == "client_order_id\n"
    assert not [name for name in os.listdir(out) if ".tmp-" in name]


def test_a_streamed_file_that_cannot_replace_what_is_there_names_it_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    out = tmp_path / "run"
    (out / "orders.csv").mkdir(parents=True)
    run_dir = RunDirectory(out, "paper", force=True)
    with pytest.raises(ConfigError, match=f"^output {out / 'orders.csv'}: cannot write it \\(EISDIR"):
        run_dir.stream("orders.csv")
    assert sorted(os.listdir(out)) == [INCOMPLETE_MARKER, "orders.csv"]


def test_an_incomplete_marker_that_is_a_symlink_is_foreign_and_with_force_replaced_not_written_through(
    tmp_path: Path,
) -> None:
    """A backtest, without --force, wrote its marker text through ``out/INCOMPLETE -> victim`` into a file outside ``out``."""
    victim = tmp_path / "victim"
    victim.write_text("not the run's\n")
    out = tmp_path / "run"
    out.mkdir()
    (out / INCOMPLETE_MARKER).symlink_to(victim)
    with pytest.raises(ConfigError, match=f"holds files a backtest run does not write: {INCOMPLETE_MARKER}\\."):
        RunDirectory(out, "backtest")
    write(out, force=True)
    assert victim.read_text() == "not the run's\n"
    assert INCOMPLETE_MARKER not in os.listdir(out) and (out / "metrics.json").is_file()


def test_a_streaming_daemon_replaces_a_dangling_incomplete_symlink_and_creates_nothing_where_it_points(
    tmp_path: Path,
) -> None:
    elsewhere = tmp_path / "elsewhere"
    out = tmp_path / "run"
    out.mkdir()
    (out / INCOMPLETE_MARKER).symlink_to(elsewhere)
    run_dir = RunDirectory(out, "paper", force=True)
    with run_dir.stream("fills.csv"):
        pass
    assert not elsewhere.exists()
    marker = out / INCOMPLETE_MARKER
    assert not marker.is_symlink() and "a tradebus daemon is writing its outputs here" in marker.read_text()


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="the holder is read from Linux's /proc/locks")
def test_a_directory_another_run_holds_is_refused_with_or_without_force_until_it_is_released(tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = RunDirectory(out, "paper")  # a new directory: held from its creation on
    first.stream("fills.csv").close()
    for force in (False, True):
        with pytest.raises(ConfigError, match=f"output directory {out} is in use by another running tradebus run \\(pid {os.getpid()} "):
            RunDirectory(out, "backtest", force=force)
    first.close()
    write(out, "paper").close()
    assert INCOMPLETE_MARKER not in os.listdir(out)  # the next run wrote its outputs whole


#: ``python -c`` text: write ``argv[1]``'s run files and the tearsheet, and ``kill -9`` itself half-way through
#: writing ``argv[2]`` (its temporary, ``.<name>.tmp-<pid>``, is left as a killed run leaves it).
_KILLED_WHILE_WRITING = r"""
import os, signal, sys
from pathlib import Path
from tradebus.reports.writers import REPORT_FILE, RunDirectory, write_file
out, name = Path(sys.argv[1]), sys.argv[2]
def die(path):
    Path(path).write_text("<html>half a pa")
    os.kill(os.getpid(), signal.SIGKILL)
if name == REPORT_FILE:
    write_file(out / name, die)
run_dir = RunDirectory(out, "backtest")
with run_dir:
    with run_dir.open(name) as handle:
        handle.write("ts_event,ti")
        handle.flush()
        os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_rerun_after_one_killed_mid_write_removes_its_stale_temporaries_and_no_others(tmp_path: Path) -> None:
    """A run killed (``kill -9``) while writing fills.csv or the tearsheet left ``.fills.csv.tmp-<pid>`` or
    ``.tearsheet.html.tmp-<pid>``: the rerun refused the directory as holding 'files a backtest run does not
    write: .fills.csv.tmp-...', and with --force the temporaries stayed beside the outputs forever."""
    import subprocess
    import sys

    out = tmp_path / "run"
    write(out).close()
    before = snapshot(out)
    for name in ("fills.csv", REPORT_FILE):
        killed = subprocess.run([sys.executable, "-c", _KILLED_WHILE_WRITING, str(out), name], check=False,
                                env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
        assert killed.returncode == -9
    left = sorted(name for name in os.listdir(out) if ".tmp-" in name)
    assert [name.split(".tmp-")[0] for name in left] == [".fills.csv", ".tearsheet.html"]
    assert {k: v for k, v in snapshot(out).items() if k not in left} == before  # the earlier run's files whole
    write(out).close()
    assert sorted(os.listdir(out)) == sorted(before)  # the rerun was not refused; it removed them

    # Only the temporaries of the run's own names: another's is foreign (refused), and left with --force.
    for name in left:
        (out / name).write_text("half")
    (out / ".notes.txt.tmp-4242").write_text("someone else's")
    with pytest.raises(ConfigError, match=r"does not write: \.notes\.txt\.tmp-4242\. A run"):
        RunDirectory(out, "backtest")
    write(out, force=True).close()
    assert sorted(os.listdir(out)) == sorted([*before, ".notes.txt.tmp-4242"])
    assert (out / ".notes.txt.tmp-4242").read_text() == "someone else's"


def test_a_streaming_daemon_removes_the_stale_temporaries_of_its_files_when_it_starts(tmp_path: Path) -> None:
    out = tmp_path / "run"
    write(out, "paper").close()
    (out / ".orders.csv.tmp-99999").write_text("client_order_id\n")  # a daemon killed rewriting orders.csv at its stop
    (out / f".{INCOMPLETE_MARKER}.tmp-99999").write_text("")
    run_dir = RunDirectory(out, "paper")
    run_dir.stream("fills.csv").close()
    assert not [name for name in os.listdir(out) if ".tmp-" in name]
    run_dir.close()


def test_a_rerun_through_a_symlinked_out_removes_the_stale_temporaries_of_its_files(tmp_path: Path) -> None:
    """``--out runs/latest`` (a symlink to the day's run directory) after a run killed mid-write: the rerun was
    accepted, the temporaries counted as the run's own, and ``.fills.csv.tmp-<pid>`` stayed there forever."""
    target = tmp_path / "2026-12-06"
    write(target).close()
    before = snapshot(target)
    latest = tmp_path / "latest"
    latest.symlink_to(target, target_is_directory=True)
    (target / ".fills.csv.tmp-99999").write_text("ts_event,ti")
    (target / ".notes.txt.tmp-4242").write_text("someone else's")
    write(latest, force=True).close()
    assert sorted(os.listdir(target)) == sorted([*before, ".notes.txt.tmp-4242"])
    assert latest.is_symlink() and (target / ".notes.txt.tmp-4242").read_text() == "someone else's"


def test_a_run_that_cannot_lock_its_directory_leaves_the_temporaries_there_and_names_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a file system without ``flock`` (some network file systems) a run removed every ``.fills.csv.tmp-<pid>``
    as one a killed run left, though nothing proved it: another run, on this host or another, may be writing it."""
    import errno
    import fcntl

    from loguru import logger

    out = tmp_path / "run"
    write(out).close()
    before = snapshot(out)
    writing = {".fills.csv.tmp-99999": "ts_event,ti", ".tearsheet.html.tmp-4242": "<html>half a pa"}
    for name, text in writing.items():
        (out / name).write_text(text)

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING", format="{message}")
    try:
        write(out).close()
    finally:
        logger.remove(sink)
    assert {name: (out / name).read_text() for name in writing} == writing
    assert sorted(snapshot(out)) == sorted([*before, *writing])  # the run's outputs written beside them
    assert any(f"output directory {out}: cannot lock it (ENOLCK" in line for line in lines), lines
    assert any(f"{out}: left .fills.csv.tmp-99999, .tearsheet.html.tmp-4242: the directory cannot be locked" in line
               for line in lines), lines
