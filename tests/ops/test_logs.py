"""No log sink shows a traceback's variable values: a request's headers on the stack would put the API key in the log."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from tradebus.ops.config import LogConfig
from tradebus.ops.logs import log_files, open_log_sink, setup_logging

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
