"""No log sink shows a traceback's variable values: a request's headers on the stack would put the API key in the log."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from tradebus.ops.config import LogConfig
from tradebus.ops.logs import log_files, open_log_sink, setup_logging, taken_by_retention

KEY = "tbLogKey0123456789abcdefABCDEF"


def _send(headers: dict[str, str]) -> None:
    raise ConnectionError(f"connection refused ({len(headers)} headers)")


def _request_fails() -> None:
    headers = {"X-MBX-APIKEY": KEY, "Accept": "application/json"}
    try:
        _send(headers)
    except ConnectionError:
        logger.exception("order request failed")


@pytest.fixture
def restore_logger() -> Any:
    yield
    logger.remove()
    logger.add(sys.stderr)  # loguru's default sink, as other tests find it


def test_stderr_of_the_command_line_shows_the_traceback_without_the_key(capsys: pytest.CaptureFixture[str], restore_logger: Any) -> None:
    setup_logging("INFO")
    _request_fails()
    err = capsys.readouterr().err
    assert "order request failed" in err and "ConnectionError: connection refused (2 headers)" in err
    assert "_send(headers)" in err  # the frames are there
    assert KEY not in err


@pytest.mark.parametrize("serialize", [False, True])
def test_a_daemon_log_file_shows_the_traceback_without_the_key(tmp_path: Path, serialize: bool, restore_logger: Any) -> None:
    path = tmp_path / "logs" / "daemon.log"
    sink = open_log_sink(LogConfig(file=path, serialize=serialize))
    assert sink is not None
    try:
        _request_fails()
    finally:
        logger.remove(sink)
    text = path.read_text()
    assert "connection refused (2 headers)" in text
    assert KEY not in text


def test_log_files_are_the_file_and_the_copies_loguru_rotates_and_nothing_else(tmp_path: Path, restore_logger: Any) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "daemon-old.jsonl").write_text("mine")
    for name in ("daemon.jsonl", "d_{time}.log"):
        before = set(tmp_path.iterdir())
        config = LogConfig(file=tmp_path / name, rotation="1 KB")
        sink = open_log_sink(config)
        try:
            for n in range(40):
                logger.info("line {} of a log that rotates", n)
        finally:
            logger.remove(sink)
        theirs = set(tmp_path.iterdir()) - before
        assert len(theirs) > 2
        assert log_files(config) == sorted({*theirs, config.file})


CANDIDATES = ("journal.sqlite", ".journal.sqlite", ".journal.sqlite-wal", "fills.csv", ".fills.csv.tmp-42", "run.sqlite",
              ".run.sqlite", "x.log", ".x.log", "daemon.2024.log", ".daemon.2024.log")  # fmt: skip


@pytest.mark.parametrize("log", ["{time}", "{time}.log", ".{time}", ".fills", "run", "daemon.log", ".journal"])
def test_taken_by_retention_names_exactly_the_files_loguru_s_retention_deletes(log: str, tmp_path: Path, restore_logger: Any) -> None:
    """loguru's retention lists its files with ``glob.glob``, where a ``*`` at the start of a name does not take a
    hidden name: a log file ``{time}`` (retention pattern ``*``) deletes ``journal.sqlite`` but not ``.journal.sqlite``;
    the check (``fnmatch``) said it took both, refusing a hidden journal loguru never deletes, and :func:`log_files`
    (``Path.glob``) listed both. Here loguru itself,
    keeping one file at a rotation, deletes every name it takes, and exactly those are the ones the check names and the listing lists."""
    config = LogConfig(file=tmp_path / log, rotation="200 B", retention=1)
    for name in CANDIDATES:
        (tmp_path / name).write_text("kept?")
        os.utime(tmp_path / name, (0, 0))
    listed = {path.name for path in log_files(config)} - {config.file.name}
    sink = logger.add(config.file, rotation="200 B", retention=1, format="{message}", filter=lambda r: "probe" in r["extra"])
    try:
        for _ in range(10):
            logger.bind(probe=True).info("x" * 50)
    finally:
        logger.remove(sink)
    deleted = {name for name in CANDIDATES if not (tmp_path / name).exists()}
    assert deleted == {name for name in CANDIDATES if taken_by_retention(config, tmp_path / name)} == listed
    assert deleted  # every log name here takes some


_FULL_LOG_RUN = """
import resource, signal, sys
from pathlib import Path
from loguru import logger
from tradebus.ops.config import LogConfig
from tradebus.ops.logs import open_log_sink, setup_logging

setup_logging("INFO", "{level} {message}")
path = Path(sys.argv[1])
sink = open_log_sink(LogConfig(file=path))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (path.stat().st_size, hard))  # the file can grow no more
for i in range(5):
    logger.info("order decision {}", i)
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # room again
logger.info("order decision 5")
logger.remove(sink)
"""


def test_a_log_file_that_cannot_be_written_is_told_once_not_with_a_traceback_a_line(tmp_path: Path) -> None:
    """The log file can grow no more (a full disk, a file-size limit: EFBIG here) while the daemon logs five lines,
    then takes writes again: loguru printed its record and a traceback to stderr for each of the five (about 15
    lines each, an error buried among hundreds on a busy daemon); now one ERROR names the file and the error, and
    one line says when it is written again. The daemon logs on to stderr throughout."""
    path = tmp_path / "daemon.log"
    run = subprocess.run(
        [sys.executable, "-c", _FULL_LOG_RUN, str(path)],
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[2],
    )
    assert run.returncode == 0, run.stderr
    err = run.stderr
    assert "Logging error in Loguru Handler" not in err and "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("ERROR ")]
    assert errors == [
        f"ERROR ops.log.file: cannot write {path} (File too large): its lines are not written until it can be "
        "(logging to stderr goes on)"
    ], err
    assert [line for line in err.splitlines() if "order decision" in line] == [f"INFO order decision {i}" for i in range(6)]
    assert f"INFO ops.log.file: {path} written again after 5 failed write(s)" in err.splitlines(), err
    assert "order decision 5" in path.read_text()
