"""Log sinks of a daemon: an optional file, JSON lines on request, rotation and retention (loguru)."""

from __future__ import annotations

from loguru import logger

from tradebus.ops.config import LogConfig

__all__ = ["open_log_sink"]


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
