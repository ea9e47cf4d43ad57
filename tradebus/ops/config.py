"""The ``ops:`` block of a daemon config: metrics/health server, Telegram, logs.

Example::

    ops:
      port: 9108            # /metrics and /health on 127.0.0.1:9108 (0: a free port, logged)
      host: 127.0.0.1
      log: {file: ../runs/paper/daemon.log, serialize: true, rotation: 100 MB, retention: 14 days}
      telegram:
        chat_ids: [123456789]           # alerts go there; commands only from these chats
        token_env: TRADEBUS_TELEGRAM_TOKEN

Relative ``log.file`` paths are resolved against the config file's directory by the daemon.
"""

from __future__ import annotations

import re
import tempfile
import uuid
from pathlib import Path
from typing import Any, Literal

from loguru import logger
from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt, field_validator

from tradebus.config.base import EnvName, FilePath, HttpUrl, StrictModel


__all__ = ["ALERT_KINDS", "LogConfig", "OpsConfig", "TelegramConfig"]

#: Every alert kind the Telegram notifier knows.
ALERT_KINDS = (
    "fill",
    "denial",
    "reject",
    "breaker",
    "resync",
    "stale",
    "disconnect",
    "reconciliation",
    "lifecycle",
    "daily_summary",
    "log",
)


_Model = StrictModel


class TelegramConfig(_Model):
    """Telegram alerts and control.

    Parameters
    ----------
    chat_ids
        Alerts are sent to these chats; commands are accepted only from them. A chat listed twice is
        refused (it would get every alert twice).
    token_env
        Environment variable holding the bot token (the token is never in a config or a log). A
        name is upper-case letters, digits and ``_``; anything else is refused without being shown,
        as it may be the token pasted where its variable's name belongs.
    base_url
        The Bot API root (a local fake in tests): ``http://`` or ``https://`` and a host, else refused
        at load.
    alerts
        Which alert kinds to send (:data:`ALERT_KINDS`).
    queue_size
        Outgoing messages waiting at most; when full, new alerts are dropped and counted.
    poll_timeout
        Long-polling timeout of ``getUpdates`` (whole seconds, as the Bot API takes it: a fraction
        would be sent as 0, a poll answered at once, in a loop).
    daily_summary_utc
        ``HH:MM`` UTC of the daily summary.
    commands
        Accept ``/status``, ``/positions``, ``/pnl``, ``/halt``, ``/resume``, ``/flatten``.
    command_max_age
        A command sent longer ago than this (seconds, by the message's ``date``) is not acted
        on, nor one sent before the daemon started (Telegram keeps updates for 24 h): it is
        answered as ignored, with when it was sent, and logged.
    flap_cycles, flap_window
        A feed with more than ``flap_cycles`` disconnects in ``flap_window`` seconds flaps: one
        alert says so, its stale, disconnect, reconnect and resync alerts are held (a summary
        every ``flap_window``, by a timer) until a connection has stayed open ``flap_window``
        seconds and delivered data (:mod:`tradebus.ops.flapping`). A live daemon's user stream
        flaps the same way; its flapping ends once a connection has stayed open ``flap_window``
        seconds. So does the log file (``ops.log.file``): a failed write is its disconnect, the first write
        after failures its reconnect.
    send_retries
        A message the Bot API did not take because of an HTTP 5xx, a connection error or
        flood control (429) is sent again up to this many times; then it is counted as not
        delivered (``tradebus_alerts_failed_total``).
    retry_delay
        Longest wait before the first retry (seconds); the ceiling doubles per retry up to
        30 s, the wait is drawn below it (full jitter). A 429 waits its ``retry_after`` instead.
    alert_max_age
        A message older than this (seconds since it was queued), whatever delayed it (a backlog
        behind a slow or unreachable Bot API, retries, flood control), or one that the wait before
        a retry (flood control's ``retry_after``, the backoff) would make older, is not sent: it is
        counted as not delivered at once and logged with why. One sent a minute or more after it
        was queued starts with when it was queued (``[late: queued 12:00:05 UTC, 95 s ago]``).
    """

    chat_ids: list[int] = Field(min_length=1)
    token_env: EnvName = "TRADEBUS_TELEGRAM_TOKEN"
    base_url: HttpUrl = "https://api.telegram.org"
    alerts: list[Literal[ALERT_KINDS]] = Field(default_factory=lambda: list(ALERT_KINDS))  # type: ignore[valid-type]
    queue_size: PositiveInt = 1000
    poll_timeout: PositiveInt = 20
    daily_summary_utc: str = "00:00"
    commands: bool = True
    command_max_age: PositiveFloat = 60.0
    flap_cycles: PositiveInt = 3
    flap_window: PositiveFloat = 600.0
    send_retries: NonNegativeInt = 4
    retry_delay: PositiveFloat = 1.0
    alert_max_age: PositiveFloat = 600.0

    @field_validator("chat_ids")
    @classmethod
    def _once_each(cls, value: list[int]) -> list[int]:
        twice = sorted({chat for chat in value if value.count(chat) > 1})
        if twice:
            raise ValueError(
                f"chat {', '.join(map(str, twice))} is listed more than once (each alert would be sent to it as many times)"
            )
        return value

    @field_validator("daily_summary_utc")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        m = re.fullmatch(r"(\d\d):(\d\d)", value)
        if m is None or int(m[1]) > 23 or int(m[2]) > 59:
            raise ValueError(f"give HH:MM (UTC), got {value!r}")
        return value


class LogConfig(_Model):
    """Log sinks of the daemon (loguru).

    Parameters
    ----------
    file
        Also log to this file (``None``: stderr only).
    serialize
        Write the file as JSON lines (loguru ``serialize``: message, level, time and the
        bound fields such as ``client_order_id``).
    rotation, retention
        loguru's rotation (size or time, e.g. ``100 MB``, ``1 day``) and retention
        (e.g. ``14 days``, or a number of files).
    level
        Minimum level of the file sink (a loguru level: ``DEBUG``, ``INFO``, ``WARNING``, ...).

    Values loguru would refuse when the daemon opens the file are refused here, naming the field.
    """

    file: FilePath | None = None
    serialize: bool = False
    rotation: str = "100 MB"
    retention: str | PositiveInt = "14 days"
    level: str = "INFO"

    @field_validator("rotation")
    @classmethod
    def _rotation(cls, value: str) -> str:
        if not _loguru_accepts(rotation=value):
            raise ValueError(f"give a size or a time such as '100 MB', '1 day' or '00:00', got {value!r}")
        return value

    @field_validator("retention")
    @classmethod
    def _retention(cls, value: str | int) -> str | int:
        if not _loguru_accepts(retention=value):
            raise ValueError(f"give a duration such as '14 days' or a number of files such as 5, got {value!r}")
        return value

    @field_validator("level")
    @classmethod
    def _level(cls, value: str) -> str:
        try:
            logger.level(value)
        except ValueError:
            raise ValueError(f"no log level {value!r}; give TRACE, DEBUG, INFO, SUCCESS, WARNING, ERROR or CRITICAL") from None
        return value


def _loguru_accepts(**options: Any) -> bool:
    """Whether loguru takes these file-sink options (a sink that never opens its file is added and removed)."""
    options.setdefault("rotation", "1 GB")  # with a rotation, removing the sink applies no retention
    probe = Path(tempfile.gettempdir()) / f"tradebus-log-probe-{uuid.uuid4().hex}" / "probe.log"
    try:
        sink = logger.add(probe, delay=True, filter=lambda _: False, **options)
    except ValueError:
        return False
    logger.remove(sink)
    return True


class OpsConfig(_Model):
    """Operations of a daemon.

    Parameters
    ----------
    port
        Serve ``/metrics`` and ``/health`` on this port (``0``: a free port, logged;
        ``None``: no server).
    host
        Interface of that server (keep it on loopback unless a firewall guards it).
    loop_lag_interval
        Event-loop lag probe interval (seconds).
    health_max_age
        ``/health`` answers 503 when a feed received no frame for this long (seconds; a frame
        whether or not it made a market-data message, see :mod:`tradebus.ops.health`).
    telegram
        Telegram alerts and control (``None``: off).
    log
        Log sinks.
    flatten_timeout
        ``/flatten`` waits at most this long (seconds) for the venue to confirm the cancels of
        the open orders before it sends the closing orders; a cancel still unconfirmed then is
        reported in its answer.
    """

    port: int | None = Field(default=None, ge=0, le=65535)
    host: str = "127.0.0.1"
    loop_lag_interval: PositiveFloat = 0.5
    health_max_age: PositiveFloat = 60.0
    telegram: TelegramConfig | None = None
    log: LogConfig = Field(default_factory=LogConfig)
    flatten_timeout: PositiveFloat = 10.0
