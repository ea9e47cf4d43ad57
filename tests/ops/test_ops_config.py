"""The ``ops:`` block is validated with the paper config, errors named by field path."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from loguru import logger
from typer.testing import CliRunner

from tradebus.cli import app
from tradebus.errors import ConfigError
from tradebus.node.config import parse_paper_config
from tradebus.node.daemon import check_log_beside_outputs

from live.node_testdata import usdm_config


def paper(ops: Any) -> dict[str, Any]:
    data = usdm_config("ws://127.0.0.1:1", "http://127.0.0.1:1", depth_speed="0ms")
    data["ops"] = ops
    return data


@pytest.mark.parametrize(
    ("ops", "where"),
    [
        ({"port": 70000}, "ops.port"),
        ({"prot": 9108}, "ops.prot"),
        ({"telegram": {"chat_ids": []}}, "ops.telegram.chat_ids"),
        # a chat listed twice (a YAML list merged from two places) got every alert twice
        ({"telegram": {"chat_ids": [4242, 7, 4242]}}, "ops.telegram.chat_ids: chat 4242 is listed more than once"),
        ({"telegram": {"chat_ids": [1], "alerts": ["fills"]}}, "ops.telegram.alerts"),
        ({"telegram": {"chat_ids": [1], "daily_summary_utc": "24:00"}}, "ops.telegram.daily_summary_utc"),
        ({"telegram": {"chat_ids": [1], "send_retries": -1}}, "ops.telegram.send_retries"),
        ({"telegram": {"chat_ids": [1], "retry_delay": 0}}, "ops.telegram.retry_delay"),
        # getUpdates takes whole seconds: 0.5 was sent as timeout 0, a poll answered at once, ~370 a second
        ({"telegram": {"chat_ids": [1], "poll_timeout": 0.5}}, "ops.telegram.poll_timeout"),
        # a Bot API root without its scheme: the daemon ran (exit 0) and every alert failed with UnsupportedProtocol
        ({"telegram": {"chat_ids": [1], "base_url": "api.telegram.org"}}, "ops.telegram.base_url: 'api.telegram.org' is not a URL"),
        ({"log": {"file": "x.log", "serialise": True}}, "ops.log.serialise"),
        ({"log": {"file": "x.log", "rotation": "100 MBs"}}, "ops.log.rotation"),
        ({"log": {"file": "x.log", "retention": "forever"}}, "ops.log.retention"),
        ({"log": {"file": "x.log", "retention": "5"}}, "ops.log.retention"),
        ({"log": {"file": "x.log", "level": "info"}}, "ops.log.level"),
    ],
)
def test_bad_ops_blocks_are_refused_naming_the_field(ops: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
        parse_paper_config(paper(ops), "<ops test>")


def test_the_log_file_is_resolved_against_the_config_directory(tmp_path: Path) -> None:
    config = parse_paper_config(paper({"log": {"file": "logs/d.jsonl"}}), "<ops test>", base=tmp_path)
    assert config.ops is not None and config.ops.log.file == tmp_path / "logs" / "d.jsonl"
    assert config.ops.port is None and config.ops.telegram is None  # nothing served unless asked


def test_log_values_loguru_takes_are_accepted_and_a_retention_may_count_files(tmp_path: Path) -> None:
    log = {"file": "logs/d.log", "rotation": "00:00", "retention": 5, "level": "WARNING"}
    config = parse_paper_config(paper({"log": log}), "<ops test>", base=tmp_path)
    assert config.ops is not None and config.ops.log.retention == 5
    assert not (tmp_path / "logs").exists()  # validating opens no file


def test_a_bot_token_pasted_as_token_env_is_refused_naming_the_field_and_never_shown(tmp_path: Path) -> None:
    """``token_env: "<the token>"`` (the token where its variable's name belongs) made ``tradebus paper`` exit 2
    with "set the bot token in the environment variable 110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw": the
    token on the terminal (and in whatever collects it). The token is shaped as BotFather issues them (the Bot
    API docs' example), not a real one."""
    token = "110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
    data = paper({"telegram": {"chat_ids": [1], "token_env": token}})
    with pytest.raises(ConfigError) as info:
        parse_paper_config(data, "<ops test>")
    assert "ops.telegram.token_env: not an environment variable name" in str(info.value)
    assert token not in str(info.value) and token.partition(":")[2] not in str(info.value)

    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    result = CliRunner().invoke(app, ["paper", str(path), "--out", str(tmp_path / "out")], catch_exceptions=False)
    assert result.exit_code == 2
    assert "ops.telegram.token_env: not an environment variable name" in result.output
    assert token.partition(":")[2] not in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("log", "field", "path"),
    [
        ("runs/p/run", "journal", "runs/p/run.sqlite"),  # loguru takes run.* for the rotated copies of run
        ("runs/p/daemon.jsonl", "record", "runs/p/daemon.frames.jsonl.gz"),  # and daemon.*.jsonl.* of daemon.jsonl
        ("runs/p/journal.sqlite", "journal", "runs/p/journal.sqlite"),
    ],
)
def test_a_journal_or_recording_the_log_s_retention_would_delete_is_refused(
    tmp_path: Path, log: str, field: str, path: str
) -> None:
    """A daemon whose log file was runs/p/run (no suffix) and journal runs/p/run.sqlite lost its journal at the
    log's first rotation: loguru's retention (here: keep 2 files) takes every name run.* for a rotated copy of the
    log and deleted the oldest, the journal (shown with loguru itself below)."""
    data = paper({"log": {"file": log, "rotation": "200 B", "retention": 2}})
    data[field] = path
    with pytest.raises(ConfigError, match=rf"ops\.log\.file: {log} and {field}: {path}: .* retention would delete it"):
        parse_paper_config(data, "<ops test>", tmp_path)
    # loguru's own retention does what the message says (the file of an older run, or the journal, goes)
    if log != path:
        kept = tmp_path / path
        kept.parent.mkdir(parents=True)
        kept.write_text("journal")
        os.utime(kept, (0, 0))
        sink = logger.add(tmp_path / log, rotation="200 B", retention=2, format="{message}", filter=lambda r: "probe" in r["extra"])
        try:
            for _ in range(20):
                logger.bind(probe=True).info("x" * 50)
        finally:
            logger.remove(sink)
        assert not kept.exists()
    data[field] = str(Path(path).with_name("other.sqlite"))
    parse_paper_config(data, "<ops test>", tmp_path)  # a name of its own is fine


@pytest.mark.parametrize(
    ("log", "journal", "taken"),
    [
        ("runs/p/journal.sqlite-{time}", "runs/p/journal.sqlite", "journal.sqlite-wal"),
        ("runs/p/state-{time:YYYY-MM-DD}", "runs/p/state", "state-wal"),
    ],
)
def test_a_log_whose_retention_would_delete_the_files_sqlite_keeps_beside_the_journal_is_refused_at_start(
    tmp_path: Path, log: str, journal: str, taken: str
) -> None:
    """A daemon with ``journal: runs/p/state`` and ``ops.log.file: runs/p/state-{time:YYYY-MM-DD}`` started: the check
    looked at the journal's own name only, which the log's names (``state-*``) do not take, but loguru's retention
    takes the journal's write-ahead log ``state-wal`` for an old copy of the log and deletes it (shown with loguru
    itself below), and with it the orders and fills written since the last checkpoint. Refused at start now, exit 2,
    naming both, before anything is created."""
    data = paper({"log": {"file": log, "rotation": "200 B", "retention": 2}})
    data["journal"] = journal
    config = tmp_path / "paper.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    result = CliRunner().invoke(app, ["paper", str(config), "--max-seconds", "3"], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert re.search(
        rf"ops\.log\.file: \S*{re.escape(log)} and journal: \S*{re.escape(journal)}: loguru counts {re.escape(taken)} "
        r"\(a file SQLite keeps beside the journal\) as one of the log's own \(rotated\) files, and its retention would "
        r"delete it",
        message,
    ), message
    assert not (tmp_path / "runs").exists()
    data["ops"]["log"]["file"] = log.replace("runs/p/", "runs/logs/")
    parse_paper_config(data, "<ops test>", tmp_path)  # a log folder of its own is fine
    # loguru's own retention does what the message says: the journal's write-ahead log goes, the journal stays
    wal = tmp_path / "runs" / "p" / taken
    wal.parent.mkdir(parents=True)
    for kept in (wal, tmp_path / journal):
        kept.write_text("sqlite")
        os.utime(kept, (0, 0))
    sink = logger.add(tmp_path / log, rotation="200 B", retention=2, format="{message}", filter=lambda r: "probe" in r["extra"])
    try:
        for _ in range(20):
            logger.bind(probe=True).info("x" * 50)
    finally:
        logger.remove(sink)
    assert (wal.exists(), (tmp_path / journal).exists()) == (False, True)


@pytest.mark.parametrize("absolute", ["log", "journal"])
def test_a_journal_the_log_s_retention_would_delete_is_refused_one_path_absolute_the_other_relative(
    tmp_path: Path, absolute: str
) -> None:
    """ops.log.file: run beside journal: <the config's directory>/run.sqlite (one absolute, the other relative to
    the config's directory) name one directory, where loguru's retention takes run.sqlite for a rotated copy of the
    log; the check compared the paths as written, saw two directories and let the daemon start."""
    log = str(tmp_path / "run") if absolute == "log" else "run"
    journal = str(tmp_path / "run.sqlite") if absolute == "journal" else "run.sqlite"
    data = paper({"log": {"file": log, "rotation": "200 B", "retention": 2}})
    data["journal"] = journal
    with pytest.raises(ConfigError, match=r"ops\.log\.file: .*run and journal: .*run\.sqlite: .* retention would delete it"):
        parse_paper_config(data, "<ops test>", tmp_path)
    data["journal"] = journal.replace("run.sqlite", "journal.sqlite")
    parse_paper_config(data, "<ops test>", tmp_path)  # a name of its own is fine


@pytest.mark.parametrize(("log", "taken"), [("fills", "fills.csv"), ("metrics.json", "metrics.json"),
                                            ("node", "node.json"), ("INCOMPLETE", "INCOMPLETE")])  # fmt: skip
def test_a_log_file_whose_retention_would_delete_the_run_s_outputs_is_refused_before_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log: str, taken: str
) -> None:
    """``tradebus paper cfg --out runs/p`` with ``ops.log.file: runs/p/fills`` ran: loguru's retention takes every
    name fills.* for a rotated copy of that log, fills.csv among them, and (here: keep 2 files) deleted the run's
    fills at the log's rotations (shown with loguru itself below); the load-time check covered the journal and the
    recording only, not the --out files. It is refused now, exit 2, before anything is written."""
    out = tmp_path / "out"
    data = paper({"log": {"file": str(out / log), "rotation": "200 B", "retention": 2}})
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    result = CliRunner().invoke(
        app, ["paper", str(path), "--out", str(out), "--max-seconds", "3"], catch_exceptions=False
    )
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert f"ops.log.file: {out / log} and --out {out}: loguru counts {taken} as the log's own" in message, message
    assert "retention would delete the run's outputs" in message
    assert not out.exists()
    config = parse_paper_config(data, "<ops test>", tmp_path)
    with pytest.raises(ConfigError, match=f"counts {taken} as"):
        check_log_beside_outputs(config, out, "live")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=f"counts {taken} as"):  # --out relative to the working directory
        check_log_beside_outputs(config, Path("out"), "paper")
    check_log_beside_outputs(config, tmp_path / "elsewhere", "paper")  # another directory is fine
    data["ops"]["log"]["file"] = str(out / f"{log}.log")
    check_log_beside_outputs(parse_paper_config(data, "<ops test>", tmp_path), out, "paper")  # so is a name of its own
    if log == "fills":  # loguru's own retention does what the message says
        out.mkdir()
        (out / taken).write_text("ts_event,time\n")
        os.utime(out / taken, (0, 0))
        sink = logger.add(out / log, rotation="200 B", retention=2, format="{message}", filter=lambda r: "probe" in r["extra"])
        try:
            for _ in range(20):
                logger.bind(probe=True).info("x" * 50)
        finally:
            logger.remove(sink)
        assert not (out / taken).exists()


def test_a_log_file_whose_retention_would_delete_the_run_s_temporary_files_is_refused_before_the_run(tmp_path: Path) -> None:
    """``tradebus paper cfg --out runs/p`` with hidden dated logs ``ops.log.file: runs/p/.{time:YYYY-MM-DD}`` ran: the
    check covered the run's own names, which that log's retention (every hidden name, ``.*``) does not take, but not
    the hidden temporaries each output is written to before it is moved over its name (``.metrics.json.tmp-<pid>``),
    which it deletes (shown with loguru itself below; the run's move then fails). It is refused now, exit 2, naming
    them, before anything is written."""
    out = tmp_path / "out"
    log = ".{time:YYYY-MM-DD}"
    data = paper({"log": {"file": str(out / log), "rotation": "200 B", "retention": 2}})
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    result = CliRunner().invoke(app, ["paper", str(path), "--out", str(out), "--max-seconds", "3"], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert f"--out {out}: loguru counts .fills.csv.tmp-{os.getpid()}, " in message, message
    assert f".metrics.json.tmp-{os.getpid()}, " in message and not out.exists()
    config = parse_paper_config(data, "<ops test>", tmp_path)
    data["ops"]["log"]["file"] = str(out / "daemon-{time:YYYY-MM-DD}.log")
    check_log_beside_outputs(parse_paper_config(data, "<ops test>", tmp_path), out, "paper")  # a name of its own is fine
    # loguru's own retention does what the message says
    out.mkdir()
    temporary = out / f".metrics.json.tmp-{os.getpid()}"
    temporary.write_text("{}")
    os.utime(temporary, (0, 0))
    assert config.ops is not None and config.ops.log.file is not None
    sink = logger.add(config.ops.log.file, rotation="200 B", retention=2, format="{message}", filter=lambda r: "probe" in r["extra"])
    try:
        for _ in range(20):
            logger.bind(probe=True).info("x" * 50)
    finally:
        logger.remove(sink)
    assert not temporary.exists()


def test_a_field_in_the_log_file_s_directory_is_refused_at_start_naming_it(tmp_path: Path) -> None:
    """``ops.log.file: logs/{time:YYYY-MM-DD}/daemon.log`` was taken: loguru formats the whole path, and its
    retention globs ``logs/*/daemon.log``, deleting the logs of other directories (another daemon's
    ``logs/paper-b/daemon.log``, shown with loguru itself below), while the check of what the retention takes
    compared names in one directory; and the sink first made a directory named ``{time:YYYY-MM-DD}``. Refused at
    load now, exit 2, naming ``ops.log.file``, before anything is created."""
    log = "logs/{time:YYYY-MM-DD}/daemon.log"
    config = tmp_path / "paper.yaml"
    config.write_text(yaml.safe_dump(paper({"log": {"file": log}})), encoding="utf-8")
    result = CliRunner().invoke(app, ["paper", str(config), "--max-seconds", "3"], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert (f"ops.log.file: {log}: its directory logs/{{time:YYYY-MM-DD}} holds a brace, which loguru reads as a "
            "field such as {time}; a field is taken in the file's name only") in message, message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["paper.yaml"]
    # a directory holding a brace from the config's own directory is refused as the path resolves
    with pytest.raises(ConfigError, match=r"ops\.log\.file: .*/cfg\{1\}/logs/daemon\.log: its directory .* holds a brace"):
        parse_paper_config(paper({"log": {"file": "logs/daemon.log"}}), "<ops test>", base=tmp_path / "cfg{1}")
    parse_paper_config(paper({"log": {"file": "logs/daemon-{time:YYYY-MM-DD}.log"}}), "<ops test>", base=tmp_path)
    # what the refusal prevents: loguru's retention of a {time} directory deletes another directory's log
    other = tmp_path / "logs" / "paper-b" / "daemon.log"
    other.parent.mkdir(parents=True)
    other.write_text("another daemon's log")
    os.utime(other, (0, 0))
    sink = logger.add(str(tmp_path / log), rotation="200 B", retention=1, format="{message}",
                      filter=lambda r: "probe" in r["extra"])
    try:
        for _ in range(10):
            logger.bind(probe=True).info("x" * 50)
    finally:
        logger.remove(sink)
    assert not other.exists()
