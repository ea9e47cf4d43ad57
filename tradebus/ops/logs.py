"""Log sinks: the command line's stderr; a daemon's optional file, JSON lines on request, rotation and retention (loguru).

No sink shows the values of a traceback's variables (loguru's ``diagnose``): a request's
headers or an environment mapping on the stack would put an API key in the log.
"""

from __future__ import annotations

import sys

from loguru import logger

from tradebus.ops.config import LogConfig

__all__ = ["open_log_sink", "setup_logging"]


def setup_logging(level: str, fmt: str = "{time:HH:mm:ss} {level} {message}") -> None:
    """Send loguru's records of ``level`` and above to stderr (and nothing else)."""
    logger.remove()
    logger.add(sys.stderr, level=level, format=fmt, diagnose=False)


def open_log_sink(config: LogConfig) -> int | None:
    """Add the file sink ``config`` describes; return its loguru id (``None``: no file configured).

    The directory is created. With ``serialize`` every line is a JSON object (loguru's
    record: ``text``, ``record.message``, ``record.level``, ``record.time``, and the bound
    ``record.extra`` such as an order decision's ``client_order_id``).
    """
    if config.file is None:
        return None
    config.file.parent.mkdir(parents=True, exist_ok=True)
    sink_id = logger.add(
        config.file,
        level=config.level,
        serialize=config.serialize,
        rotation=config.rotation,
        retention=config.retention,
        enqueue=False,
        diagnose=False,
        encoding="utf-8",
    )
    logger.info(
        "logging to {} (json: {}, rotation {}, retention {})",
        config.file,
        config.serialize,
        config.rotation,
        config.retention,
    )
    return sink_id
