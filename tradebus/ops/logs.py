"""Log sinks: the command line's stderr; a daemon's optional file, JSON lines on request, rotation and retention (loguru).

No sink shows the values of a traceback's variables (loguru's ``diagnose``): a request's
headers or an environment mapping on the stack would put an API key in the log.
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import os
import string
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loguru import logger
from loguru._file_sink import FileSink  # what logger.add makes of a path: rotation and retention as loguru does them

from tradebus.errors import ConfigError
from tradebus.ops.config import LogConfig

__all__ = ["LOG_LEVELS", "RERUN", "log_directory_problem", "log_files", "open_log_sink", "setup_logging", "taken_by_retention"]

#: The levels ``--log-level`` takes (loguru's).
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")
#: The ``extra`` key of a record logged by a run a research tool repeats on made-up data (the lookahead
#: detector's perturbed re-runs); its value names the re-run. The command line's stderr does not show them.
RERUN = "rerun"


def _not_rerun(record: Any) -> bool:
    return RERUN not in record["extra"]


def setup_logging(level: str, fmt: str = "{time:HH:mm:ss} {level} {message}") -> None:
    """Send loguru's records of ``level`` and above to stderr (and nothing else), but a re-run's (:data:`RERUN`)."""
    logger.remove()
    logger.add(sys.stderr, level=level, format=fmt, diagnose=False, filter=_not_rerun)


def open_log_sink(
    config: LogConfig,
    *,
    on_failed_write: Callable[[], None] | None = None,
    on_told: Callable[[str, bool], None] | None = None,
) -> int | None:
    """Add the file sink ``config`` describes; return its loguru id (``None``: no file configured).

    The directory is created. With ``serialize`` every line is a JSON object (loguru's
    record: ``text``, ``record.message``, ``record.level``, ``record.time``, and the bound
    ``record.extra`` such as an order decision's ``client_order_id``). A write that fails later (a full
    disk) is told once, as an ERROR to the other sinks, not with a traceback a line (:class:`_GuardedFile`).

    Parameters
    ----------
    config
        The ``ops.log`` block.
    on_failed_write
        Called at each write to the file that failed (a count).
    on_told
        Called with the text of the ERROR of a first failed write (and ``True``) and of the line saying the file is
        written again (and ``False``). Both are called from the thread that logged (not necessarily the event loop's).

    Raises
    ------
    ConfigError
        The file or its directory cannot be made or opened (names the file and the reason).
    """
    if config.file is None:
        return None
    try:
        config.file.parent.mkdir(parents=True, exist_ok=True)
        guarded = _GuardedFile(
            config.file, FileSink(config.file, rotation=config.rotation, retention=config.retention, encoding="utf-8"),
            on_failed_write, on_told,
        )
        sink_id = logger.add(
            guarded,
            level=config.level,
            serialize=config.serialize,
            enqueue=False,
            diagnose=False,
            filter=guarded.accepts,
        )
    except OSError as exc:
        raise ConfigError(f"ops.log.file: cannot write {config.file} ({exc.strerror or exc})") from None
    logger.info(
        "logging to {} (json: {}, rotation {}, retention {})",
        config.file,
        config.serialize,
        config.rotation,
        config.retention,
    )
    return sink_id


class _GuardedFile:
    """loguru's file sink, whose failing writes (a full disk, a file-size limit) are told once.

    loguru prints each record its sink failed to write, with a traceback, to stderr: on a full disk, some fifteen
    lines for every line of a busy daemon, burying what else stderr says. Here the first failure is logged as one
    ERROR naming the file and the error, the next are counted, and the first write that succeeds again says how many
    failed. What a failed write held may still reach the file later (Python keeps it buffered). The daemon logs on to
    its other sinks. These records are logged from inside this sink's write: :meth:`accepts`, the sink's filter,
    keeps them out of this sink (loguru would refuse to re-enter it).
    """

    def __init__(self, path: Path, sink: FileSink, on_failed_write: Callable[[], None] | None = None,
                 on_told: Callable[[str, bool], None] | None = None) -> None:
        self._path = path
        self._sink = sink
        self._on_failed_write = on_failed_write
        self._on_told = on_told
        self._inside = threading.local()
        self._failed = 0

    def accepts(self, record: Any) -> bool:
        """The sink's filter: every record but those logged while this thread writes to it."""
        return not getattr(self._inside, "writing", False)

    def write(self, message: str) -> None:
        """Write ``message`` to the file, telling its first failure and the first success after failures."""
        self._inside.writing = True
        try:
            try:
                self._sink.write(message)
            except OSError as exc:
                self._failed += 1
                if self._on_failed_write is not None:
                    self._on_failed_write()
                if self._failed == 1:
                    self._tell("ERROR", f"ops.log.file: cannot write {self._path} ({exc.strerror or exc}): its lines "
                               "are not written until it can be (logging to stderr goes on)")
                return
            if self._failed:
                self._tell("INFO", f"ops.log.file: {self._path} written again after {self._failed} failed write(s)")
                self._failed = 0
        finally:
            self._inside.writing = False

    def _tell(self, level: str, text: str) -> None:
        logger.log(level, "{}", text)
        if self._on_told is not None:
            self._on_told(text, level == "ERROR")

    def stop(self) -> None:
        """Close the file (loguru's ``remove``); a close that cannot write what is buffered is told, not raised."""
        try:
            self._sink.stop()
        except OSError as exc:
            file = getattr(self._sink, "_file", None)  # loguru's flush raised before its close: the file is still open
            if file is not None:
                with contextlib.suppress(OSError):  # closed whatever the flush it tries again meets
                    file.close()
            logger.error("ops.log.file: closing {} failed ({}): its last lines are not written", self._path,
                         exc.strerror or exc)


def log_files(config: LogConfig) -> list[Path]:
    """The files of the sink ``config`` describes: its file and the rotated copies that exist now (sorted).

    loguru renames a rotated file ``<stem>.<time><suffix>`` (``daemon.2024-08-09_12-00-00_000000.jsonl``,
    ``.<n>`` after the time on a clash); these are the names its retention deletes, matched the same
    way (a ``{time}`` field in the name matches any text).
    """
    if config.file is None:
        return []
    directory = config.file.parent
    patterns = _rotated_names(config.file)
    names = os.listdir(directory) if directory.is_dir() else []
    found = {directory / name for name in names if _matched(name, patterns) and (directory / name).is_file()}
    return sorted(found | {config.file})


def log_directory_problem(config: LogConfig | None) -> str | None:
    """Why the directory of the sink ``config`` describes cannot be used as it stands (a ``{`` or ``}`` in it), or
    ``None``.

    loguru formats the whole path (``{time}`` is its only field) and makes the directory it names: one log directory
    a run, while its retention would take the files of every directory the pattern matches (``logs/*/daemon.log``);
    and the sink would first make a directory named ``{time}`` (:func:`open_log_sink`). A name's field is taken.
    """
    if config is None or config.file is None:
        return None
    directory = str(config.file.parent)
    if "{" not in directory and "}" not in directory:
        return None
    return (
        f"ops.log.file: {config.file}: its directory {directory} holds a brace, which loguru reads as a field such as "
        f"{{time}}; a field is taken in the file's name only (daemon-{{time}}.log): in the directory, loguru's "
        f"retention would delete the logs of every directory the pattern matches, and a directory named as written "
        f"would be made; give the directory a name without braces"
    )


def taken_by_retention(config: LogConfig, path: Path) -> bool:
    """Whether ``path`` is a name the retention of the sink ``config`` describes counts as one of its files, and deletes
    in its turn: the log file itself, or a name of its rotated copies (:func:`log_files`; ``run.sqlite`` is one of the
    copies of a log file ``run`` with no suffix)."""
    if config.file is None or os.path.realpath(path.parent) != os.path.realpath(config.file.parent):
        return False
    return _matched(path.name, _rotated_names(config.file))


def _matched(name: str, patterns: list[str]) -> bool:
    """Whether ``glob.glob``, which loguru's retention lists its files with, finds a file ``name`` by one of
    ``patterns`` (names in one directory): as ``fnmatch``, but a name starting with a dot (hidden) only by a pattern
    that starts with one (a ``*`` there does not take it)."""
    return any(
        fnmatch.fnmatchcase(name, pattern) and (pattern.startswith(".") or not name.startswith("."))
        for pattern in patterns
    )


def _rotated_names(file: Path) -> list[str]:
    """The glob patterns of the names loguru's retention takes for the files of a sink on ``file`` (as loguru makes them)."""
    try:
        fields = list(string.Formatter().parse(file.name))
        name = "".join(glob.escape(text) + "*" * (field is not None) for text, field, *_ in fields)
    except ValueError:  # not a format string: the name as it is
        name = glob.escape(file.name)
    stem, suffix = os.path.splitext(name)
    return [name, name + ".*", *((stem + ".*" + suffix, stem + ".*" + suffix + ".*") if suffix else ())]
