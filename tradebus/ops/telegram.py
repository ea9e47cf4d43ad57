"""Telegram alerts and control over the Bot API (``sendMessage``, long-polled ``getUpdates``), with httpx.

:meth:`TelegramBot.alert` never waits: it puts the message in a bounded queue and returns;
when the queue is full the message is dropped and counted (``dropped``, and the
``on_drop`` callback: the ``tradebus_alerts_dropped_total`` metric) and logged (the first of a run
of drops, and how many once the queue has room again). A text longer than
Telegram takes (4096 UTF-16 code units) is queued as numbered parts (:func:`split_message`). A sender task drains
the queue; a send that fails with an HTTP 5xx, a connection error or flood control (429) is
retried ``send_retries`` times with a capped, jittered backoff (a 429 waits its ``retry_after``,
however long); a message older than ``alert_max_age`` (seconds since it was queued), whatever kept it (a backlog
behind a slow or unreachable Bot API, retries, flood control), or one a retry's wait would take past it, is given up
at once (those already that old when their turn comes, hundreds after a long outage, are logged as one line per run
of them: how many, the oldest and the newest), and one sent :data:`LATE_AFTER` (60) seconds or more after it was
queued starts saying so (:func:`late_mark`: ``[late: queued 12:00:05 UTC, 95 s ago]``). A message still not taken (or refused: 4xx) is
counted (``failed``, and the ``on_fail`` callback: the ``tradebus_alerts_failed_total`` metric), as is one still queued or being sent
when the bot stops, and one lost to an error no rule foresaw (logged with the file and line that
raised it, not its traceback, which could show the token): the sender goes on with the next.
A group chat of ``chat_ids`` upgraded to a supergroup (answered 400 with ``parameters.migrate_to_chat_id``, its
new id) gets the message and every later one at its new id, and the new id is logged once, to be put in
``chat_ids`` (commands from it are ignored until then); when ``chat_ids`` lists it already, it gets its own copy.
A chat of ``chat_ids`` that takes no message from the bot (answered 403, the bot blocked or kicked, or 400 "chat not
found", a wrong id) is logged once, naming it and ``ops.telegram.chat_ids``; its next refusals are counted (``failed``)
and their number logged when it takes a message again, or at the stop.
A poller task asks the Bot API who the bot is (``getMe``), then reads
commands (``getUpdates``; both are retried with a capped backoff, a 429 after the Bot API's
``ResponseParameters.retry_after``, at most :data:`MAX_POLL_WAIT` (300 s: a poller waiting a day's
``retry_after`` would read no /flatten for a day; the first longer one is logged with its value, and
the call is made again after the 300 s); one naming no usable retry_after, in the sender too, waits the
backoff, and the first such answer is logged; a ``getUpdates`` answer that is not a list of updates
is a failure, retried after the backoff) and answers only chats of the allow-list (``chat_ids``) --
a command from any other chat is ignored, counted and logged by chat id. A call answered 401 Unauthorized (the token revoked
or replaced at @BotFather while the daemon ran; :func:`check_token` refuses one at the start) is logged once, as an
ERROR naming ``ops.telegram.token_env`` and its variable, and set in ``token_refused`` (``/metrics``'
``tradebus_telegram_token_refused``, ``/health``'s ``telegram``): the poller stops, no call with that token being
answered again, the alerts after it fail (counted and logged as any refused message), and the daemon trades on. A ``getUpdates`` answered 409
Conflict (another process polls the same token, or a webhook is set on it) is retried as any
failure, counted in ``conflicts`` and logged once, as a warning saying what it means. An error no
rule foresaw in the poller (an update it cannot parse, say) is logged with its file and line and
counted (``poll_errors``); polling goes on, after the backoff if it came before the updates were confirmed. The
long polls made (``polls``) and the poller's waits after a failure (``poll_waits``, ``poll_wait_seconds``) are counted
too; a daemon serves these counters on ``/metrics`` (:class:`~tradebus.ops.metrics.TelegramCollector`). In a group
chat a command may name the bot it
is for (``/halt@OtherBot``): only a command naming none or naming this bot (its username, in
any case, as Telegram compares them) is acted on. Updates are confirmed to Telegram (a
``getUpdates`` with the next ``offset``, answered before any of them is acted on), so a daemon
stopped right after acting on a command does not get it again when it restarts; a command
whose confirmation fails is kept and its confirmation sent again (the failed one may have confirmed it at the Bot API,
a 409 from a poll of another process ending it, and a poll would not return it again): it is acted on once that
succeeds. Telegram keeps a command for 24 h until a ``getUpdates`` confirms it, so the first one after a start
returns what was sent while the daemon was down: a command sent before the second the bot started (the message's ``date``,
whole seconds), or more than ``command_max_age`` seconds ago (a Bot API unreachable for a
while), is not acted on; it is answered as ignored, with when it was sent, and logged. A
command whose answer is awaitable (``/flatten`` waits for the venue's cancels) is answered when
it is done, while the poller goes on reading: a ``/halt`` sent meanwhile acts at once.

The bot token comes from the environment variable the config names. It is part of every
Bot API URL, so no URL is ever logged: errors are logged with the token replaced by
``<token>``, and httpx's own request log is kept at WARNING.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import inspect
import logging
import math
import os
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from loguru import logger

from tradebus.adapters.common.policy import Backoff
from tradebus.errors import ConfigError
from tradebus.ops.config import TelegramConfig

__all__ = [
    "MAX_PARTS",
    "LATE_AFTER",
    "MAX_POLL_WAIT",
    "MESSAGE_LIMIT",
    "START_CHECK_TIMEOUT",
    "TelegramBot",
    "check_token",
    "every_day_at",
    "late_mark",
    "next_at",
    "read_token",
    "seconds_until",
    "split_message",
]

logging.getLogger("httpx").setLevel(logging.WARNING)  # its INFO lines carry the request URL, i.e. the token

#: Longest ``sendMessage`` text, in UTF-16 code units (as Telegram counts; an emoji is two).
MESSAGE_LIMIT = 4096
#: Most messages one text is sent as; the rest is cut, and the last message says how much.
MAX_PARTS = 5
#: Longest wait (seconds) of the command poller under flood control: a longer ``retry_after`` is cut to it.
MAX_POLL_WAIT = 300.0
#: Longest wait (seconds) of the start's ``getMe`` (:func:`check_token`): Telegram answers it in well under a second,
#: and one not answered by then is asked again by the running daemon's poller.
START_CHECK_TIMEOUT = 2.0
#: A message sent this many seconds or more after it was queued says so (:func:`late_mark`).
LATE_AFTER = 60.0
#: UTF-16 code units each part of a message leaves for its :func:`late_mark`.
_LATE_ROOM = 64
_BREAKS = ("\n", "; ", ", ", " ")


class _Expired(Exception):
    """A message that flood control would hold past ``alert_max_age`` (the message says by how much)."""


class _Stale(Exception):
    """A message already older than ``alert_max_age`` when its turn came (to ``chat``): given up unsent."""

    def __init__(self, chat: int) -> None:
        super().__init__(chat)
        self.chat = chat


@dataclasses.dataclass
class _StaleRun:
    """Messages given up in a row as :class:`_Stale`: how many, to which chats, queued when (Unix seconds)."""

    first: str
    count: int = 0
    chats: set[int] = dataclasses.field(default_factory=set)
    oldest_s: float = math.inf
    newest_s: float = -math.inf


class _Unauthorized(RuntimeError):
    """HTTP 401: the Bot API knows no bot by the token (revoked, or replaced at @BotFather, while the daemon ran)."""


class _Conflict(RuntimeError):
    """HTTP 409 from ``getUpdates``: another process reads this bot's updates (or a webhook is set on the token)."""


class _Migrated(RuntimeError):
    """HTTP 400 naming ``parameters.migrate_to_chat_id``: the group chat became a supergroup, a chat of another id."""

    def __init__(self, message: str, chat: int) -> None:
        super().__init__(message)
        self.chat = chat


class _ChatRefused(RuntimeError):
    """HTTP 403, or 400 "chat not found", to ``sendMessage``: the chat ``chat`` takes no message from the bot (an id
    that is no chat of the bot's, or the bot blocked, kicked, or never started there)."""

    def __init__(self, message: str, chat: Any) -> None:
        super().__init__(message)
        self.chat = chat


class _Retryable(Exception):
    """A Bot API call that may succeed when made again: HTTP 5xx, or flood control (429).

    ``retry_after`` is the wait flood control asks for (seconds), ``None`` when it names none.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def read_token(config: TelegramConfig) -> str:
    """The bot token from ``config.token_env``.

    Raises
    ------
    ConfigError
        The variable is unset or empty, or its value cannot be part of a Bot API URL (a control character such
        as a tab or line break in it, or too long); the message names the variable, never a value.
    """
    token = os.environ.get(config.token_env, "").strip()
    if not token:
        raise ConfigError(f"ops.telegram: set the bot token in the environment variable {config.token_env}")
    try:
        httpx.URL(f"{config.base_url.rstrip('/')}/bot{token}/getMe")
    except httpx.InvalidURL as exc:
        reason = str(exc).replace(token, "<token>").rstrip(".")
        raise ConfigError(
            f"ops.telegram.token_env: the bot token in the environment variable {config.token_env} cannot be sent in "
            f"a Bot API URL ({reason}): set it to the token @BotFather gave the bot, alone (a tab, a line break or a "
            "second value read with it?)"
        ) from None
    return token


def check_token(config: TelegramConfig) -> None:
    """Refuse a bot token the Bot API does not know, asking ``getMe`` once before the daemon creates anything.

    A 401 is definitive (Telegram knows no bot by that token): the daemon would trade on with no alert and no command
    read. Any other answer, or none within :data:`START_CHECK_TIMEOUT` (the Bot API unreachable), is left to the
    daemon: its poller asks ``getMe`` again with its backoff, and a 401 then is logged and stops it (module docstring).

    Raises
    ------
    ConfigError
        The variable is unset, empty or cannot be sent in a URL (:func:`read_token`), or ``getMe`` answered 401;
        the message names ``ops.telegram.token_env`` and the variable, never the token.
    """
    token = read_token(config)
    try:
        resp = httpx.post(f"{config.base_url.rstrip('/')}/bot{token}/getMe", timeout=START_CHECK_TIMEOUT)
    except httpx.HTTPError as exc:
        logger.warning("telegram: getMe at start-up failed ({}: {}); the command poller asks again",
                       type(exc).__name__, str(exc).replace(token, "<token>"))
        return
    if resp.status_code == 401:
        raise ConfigError(
            f"ops.telegram.token_env: the Bot API does not know the bot token in the environment variable "
            f"{config.token_env} (getMe answered HTTP 401 Unauthorized): set the token @BotFather gave the bot"
        )


def next_at(hhmm: str, after: dt.datetime) -> dt.datetime:
    """The first ``HH:MM`` UTC strictly after ``after`` (aware)."""
    hour, minute = (int(x) for x in hhmm.split(":"))
    after = after.astimezone(dt.UTC)
    target = after.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if target <= after:
        target += dt.timedelta(days=1)
    return target


def seconds_until(hhmm: str, now: dt.datetime) -> float:
    """Seconds from ``now`` (aware) to the next ``HH:MM`` UTC (a full day when it is exactly now)."""
    return (next_at(hhmm, now) - now).total_seconds()


def _units(text: str) -> int:
    """Length in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def _fit(text: str, limit: int) -> int:
    """How many characters of ``text`` fit in ``limit`` UTF-16 code units."""
    units = 0
    for i, ch in enumerate(text):
        units += 2 if ord(ch) > 0xFFFF else 1
        if units > limit:
            return i
    return len(text)


def split_message(text: str, limit: int = MESSAGE_LIMIT, max_parts: int = MAX_PARTS) -> list[str]:
    """``text`` as messages Telegram takes: each at most ``limit`` UTF-16 code units.

    A longer text is split, at a line break where one fits (else after ``"; "``, ``", "`` or a
    space, else anywhere), and each part is numbered (``[2/3]``). Beyond ``max_parts`` parts the
    rest is cut: the last part ends saying how many characters were not sent.

    Parameters
    ----------
    text
        The message.
    limit
        Longest part, in UTF-16 code units (Telegram's ``sendMessage`` takes 4096).
    max_parts
        Most parts.

    Returns
    -------
    list[str]
        ``[text]`` when it fits.
    """
    if _units(text) <= limit:
        return [text]
    room = limit - len(f"[{max_parts}/{max_parts}] ")
    cut_mark = "\n[{} more characters not sent]"
    chunks: list[str] = []
    rest = text
    while rest and len(chunks) < max_parts:
        last = len(chunks) == max_parts - 1
        budget = room - (_units(cut_mark.format(len(text))) if last else 0)
        end = _fit(rest, budget)
        if end < len(rest):
            for mark in _BREAKS:
                at = rest.rfind(mark, 0, end)
                if at > 0:
                    end = at + len(mark)
                    break
        if last and _units(rest) <= room:
            end = len(rest)
        chunks.append(rest[:end].rstrip())
        rest = rest[end:].lstrip("\n")
    if rest:
        chunks[-1] += cut_mark.format(len(rest))
    return [f"[{i}/{len(chunks)}] {chunk}" for i, chunk in enumerate(chunks, 1)]


def late_mark(queued_s: float, age: float) -> str:
    """What a message sent ``age`` seconds after it was queued (at ``queued_s``, Unix seconds) starts with: nothing
    under :data:`LATE_AFTER`, else ``[late: queued HH:MM:SS UTC, N s ago] `` (at most 64 UTF-16 code units)."""
    if age < LATE_AFTER:
        return ""
    return f"[late: queued {dt.datetime.fromtimestamp(queued_s, dt.UTC):%H:%M:%S} UTC, {age:.0f} s ago] "


def _utc(seconds: int) -> str:
    try:
        return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return f"{seconds} (Unix time)"


def _raised_at(exc: BaseException) -> str:
    """``file:line`` where ``exc`` was raised (a traceback could show the token: a request's URL in a message)."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def every_day_at(
    hhmm: str,
    action: Callable[[], None],
    now: Callable[[], dt.datetime] = _utc_now,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Call ``action`` once per UTC day, at ``HH:MM`` UTC or just after, for ever.

    ``sleep`` runs on the monotonic clock and ``now`` is the wall clock: a wall clock slewed
    behind wakes a sleep before ``HH:MM`` (it sleeps again, the rest), and one stepped back
    after a call reads ``HH:MM`` still to come that day (the next call is the next day's).
    """
    target = next_at(hhmm, now())
    while True:
        wait = (target - now()).total_seconds()
        if wait > 0.0:
            await sleep(wait)
            continue
        action()
        target = next_at(hhmm, max(now(), target))


class TelegramBot:
    """Alerts out, commands in (see the module docstring).

    Parameters
    ----------
    config
        Chats, base URL, queue size, alert kinds.
    token
        The bot token (:func:`read_token`).
    on_command
        ``(text, chat_id) -> reply`` for a command from an allowed chat, given without the
        bot's ``@username`` (``None``: commands off); the reply may be awaitable.
    on_drop
        Called once per dropped message.
    on_fail
        Called once per message the Bot API did not take (after the retries).
    wall
        The wall clock (Unix seconds) a command's ``date`` is compared with.
    sleep
        Waits before a retry (seconds).
    clock
        The monotonic clock (seconds) a queued message's age is measured on.
    """

    def __init__(
        self,
        config: TelegramConfig,
        token: str,
        on_command: Callable[[str, int], str | Awaitable[str]] | None = None,
        on_drop: Callable[[], None] | None = None,
        on_fail: Callable[[], None] | None = None,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._token = token
        self._on_command = on_command
        self._on_drop = on_drop
        self._on_fail = on_fail
        self._wall = wall
        self._sleep = sleep
        self._clock = clock
        #: Wall-clock second the bot started (a command sent before it is not acted on).
        self.started_s: int | None = None
        self._kinds = frozenset(config.alerts)
        self._allowed = frozenset(config.chat_ids)
        #: ``(chat, text, queued at)`` on ``clock``.
        self.queue: asyncio.Queue[tuple[int, str, float]] = asyncio.Queue(config.queue_size)
        self.dropped = 0
        #: Messages dropped since the queue last had room (0: it has room).
        self._dropping = 0
        self.sent = 0
        #: Messages for a group chat upgraded to a supergroup that ``chat_ids`` holds too (it gets its own copy): not sent.
        self.skipped = 0
        self.failed = 0
        self.ignored_commands = 0
        #: The bot's username (``getMe``), known once the poller has started.
        self.username: str | None = None
        self.throttled = 0
        self.retried = 0
        #: ``getUpdates`` calls answered 409 Conflict (another process polls the token; logged once).
        self.conflicts = 0
        #: 429 answers whose ``parameters`` named no usable ``retry_after`` (the first one logged).
        self.malformed_429 = 0
        #: 429 answers to the poller asking for a wait over :data:`MAX_POLL_WAIT` (the first one logged).
        self.long_429 = 0
        #: Whether the Bot API answered a call 401 (the token revoked while the daemon ran): the poller has stopped.
        self.token_refused = False
        #: Errors no rule foresaw in the command poller (each logged; the poller goes on after a backoff).
        self.poll_errors = 0
        #: ``getUpdates`` long polls the command poller made (confirmations not counted).
        self.polls = 0
        #: Waits the command poller made before calling again after a failure, and their seconds in all.
        self.poll_waits = 0
        self.poll_wait_seconds = 0.0
        self._sending = False
        #: Messages alerted within :meth:`last_words`, sent by :meth:`stop` after the queue.
        self._last_words: list[tuple[int, str, float]] = []
        self._holding = False
        #: Group chats of ``chat_ids`` upgraded to a supergroup (Telegram's ``migrate_to_chat_id``): old id -> new id
        #: (``None``: the new one is in ``chat_ids`` too, and gets the alerts as such).
        self._migrated: dict[int, int | None] = {}
        #: Chats refusing the bot's messages (403, 400 "chat not found"): how many they refused since the last they took.
        self._refusals: dict[Any, int] = {}
        #: Messages given up in a row as older than ``alert_max_age`` when their turn came, logged as one line.
        self._stale: _StaleRun | None = None
        self._client: httpx.AsyncClient | None = None
        self._tasks: list[asyncio.Task[None]] = []
        #: Commands whose answer is still awaited.
        self._commands: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"TelegramBot(chats={sorted(self._allowed)}, base_url={self.config.base_url!r})"

    # ------------------------------------------------------------------ out

    def alert(self, kind: str, text: str) -> None:
        """Queue ``text`` for every chat if alerts of ``kind`` are on (never waits)."""
        if kind in self._kinds:
            for chat in self.config.chat_ids:
                self._enqueue(chat, text)

    @contextlib.contextmanager
    def last_words(self) -> Iterator[None]:
        """Within it, alerts are kept for :meth:`stop`, which sends them after the messages queued before, however
        many of those it had the time to send (the stop alert must not be lost behind a backlog)."""
        self._holding = True
        try:
            yield
        finally:
            self._holding = False

    def _enqueue(self, chat: int, text: str) -> None:
        for part in split_message(text, MESSAGE_LIMIT - _LATE_ROOM):
            if self._holding:
                self._last_words.append((chat, part, self._clock()))
            else:
                self._put((chat, part, self._clock()))

    def _put(self, item: tuple[int, str, float]) -> None:
        """Queue one message, or drop it (counted, logged) when the queue is full."""
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            if not self._dropping:
                logger.warning(
                    "telegram: queue full ({} messages, ops.telegram.queue_size): messages dropped until "
                    "the sender catches up; first dropped: {!r}",
                    self.queue.maxsize, item[1][:64],
                )  # fmt: skip
            self._dropping += 1
            self.dropped += 1
            if self._on_drop is not None:
                self._on_drop()
            return
        if self._dropping:
            logger.warning("telegram: queue has room again; {} message(s) were dropped", self._dropping)
            self._dropping = 0

    def _retry_in(self, method: str, exc: BaseException, delay: float) -> float:
        """The poller's wait before calling ``method`` again after ``exc``: flood control's ``retry_after``, at
        most :data:`MAX_POLL_WAIT` (the first longer one is logged with the Bot API's value), else ``delay``."""
        if not isinstance(exc, _Retryable) or exc.retry_after is None:
            return delay
        if exc.retry_after <= MAX_POLL_WAIT:
            return exc.retry_after
        self.long_429 += 1
        if self.long_429 == 1:
            logger.warning(
                "telegram: {} answered 429 (flood control) asking to wait {:g} s; the command poller waits at most "
                "{:g} s at a time and calls again, so commands (/flatten) are read as soon as Telegram allows "
                "(further such answers are counted, not logged)",
                method, exc.retry_after, MAX_POLL_WAIT,
            )  # fmt: skip
        return MAX_POLL_WAIT

    def _redact(self, exc: BaseException) -> str:
        return f"{type(exc).__name__}: {exc}".replace(self._token, "<token>")

    def _retry_after(self, method: str, parameters: Any) -> float | None:
        """A 429's ``parameters.retry_after`` (seconds), or ``None`` (the caller's backoff) when it names none.

        A ``parameters`` that is not an object, or a ``retry_after`` that is not a finite number of
        seconds at least 0, is read as naming none; the first such answer is logged (the method, never the URL).
        """
        if parameters is None:
            return None
        retry = parameters.get("retry_after") if isinstance(parameters, dict) else None
        if isinstance(retry, int | float) and not isinstance(retry, bool) and 0.0 <= retry < math.inf:
            return float(retry)
        if retry is None and isinstance(parameters, dict):
            return None
        self.malformed_429 += 1
        if self.malformed_429 == 1:
            logger.warning(
                "telegram: {} answered 429 (flood control) with parameters {!r}, not an object with a retry_after "
                "in seconds; waiting the usual backoff instead (further such answers are counted, not logged)",
                method, str(parameters).replace(self._token, "<token>")[:80],
            )  # fmt: skip
        return None

    async def _post(self, method: str, payload: dict[str, Any]) -> Any:
        assert self._client is not None
        resp = await self._client.post(method, json=payload)
        if resp.status_code >= 500:  # the answer is often a proxy's HTML page, not the API's JSON
            raise _Retryable(f"Bot API {method}: HTTP {resp.status_code}")
        body = resp.json()
        if not isinstance(body, dict):
            raise RuntimeError(f"Bot API {method}: HTTP {resp.status_code}: the answer is not a JSON object")
        if not body.get("ok"):
            description = f"Bot API {method}: HTTP {resp.status_code} {body.get('description', '')}"
            if resp.status_code == 401:  # the token: the one setting an operator can fix
                description += f" (the bot token in {self.config.token_env} is not one Telegram knows)"
                self._token_refused(method)
                raise _Unauthorized(description)
            if resp.status_code == 429:
                raise _Retryable(description, self._retry_after(method, body.get("parameters")))
            if resp.status_code == 409:
                raise _Conflict(description)
            parameters = body.get("parameters")
            migrated = parameters.get("migrate_to_chat_id") if isinstance(parameters, dict) else None
            if isinstance(migrated, int) and not isinstance(migrated, bool):
                raise _Migrated(description, migrated)
            if method == "sendMessage" and (resp.status_code == 403 or "chat not found" in description.lower()):
                raise _ChatRefused(description, payload.get("chat_id"))
            raise RuntimeError(description)
        return body.get("result")

    async def _send(self, chat: int, text: str, queued: float) -> bool:
        """``sendMessage``, retried after an HTTP 5xx, a connection error or flood control (module docstring).

        Returns
        -------
        bool
            Whether it was sent: not for a group chat upgraded to a supergroup that ``chat_ids`` holds too, which
            gets its own copy.

        Raises
        ------
        _Stale
            The message (queued at ``queued``) is older than ``alert_max_age``: not sent.
        _Expired
            It would be after the wait before a retry (flood control's, or the backoff).
        """
        to = self._migrated.get(chat, chat)
        if to is None:
            return False
        chat = to
        retries = self.config.send_retries
        backoff = Backoff(base=self.config.retry_delay, cap=max(30.0, self.config.retry_delay), min_delay=0.0)
        max_age = self.config.alert_max_age
        if self._clock() - queued > max_age:  # a retry's wait is checked before it is made
            raise _Stale(chat)
        self._log_stale()  # this one is tried: the run of messages given up before it ends
        for attempt in range(retries + 1):
            age = self._clock() - queued
            body = {"chat_id": chat, "text": late_mark(self._wall() - age, age) + text}
            try:
                try:
                    await self._post("sendMessage", body)
                except _Migrated as exc:
                    to = self._migrate(chat, exc)
                    if to is None:
                        return False
                    chat = to
                    await self._post("sendMessage", {**body, "chat_id": chat})
                self._accepted(chat)
                return True
            except (_Retryable, httpx.TransportError) as exc:
                if attempt == retries:
                    raise
                throttle = exc.retry_after if isinstance(exc, _Retryable) else None
                if throttle is not None:
                    self.throttled += 1
                    delay = throttle
                    why = f"flood control (429) asks to wait {delay:g} s"
                else:
                    delay = backoff.next_delay(0.0)
                    why = f"{self._redact(exc)}; the retry waits {delay:.2f} s"
                age = self._clock() + delay - queued
                if age > max_age:
                    raise _Expired(
                        f"{why}, after which the message would be {age:.0f} s old "
                        f"(ops.telegram.alert_max_age: {max_age:g} s)"
                    ) from exc
                self.retried += 1
                logger.info(
                    "telegram: sendMessage to chat {} failed ({}); retry {} of {} in {:.2f} s",
                    chat, self._redact(exc), attempt + 1, retries, delay,
                )  # fmt: skip
                await self._sleep(delay)

    def _give_up_stale(self, chat: int, text: str, queued: float) -> None:
        """Count a message older than ``alert_max_age`` when its turn came, for its run's :meth:`_log_stale`."""
        self._not_delivered()
        queued_s = self._wall() - (self._clock() - queued)
        if self._stale is None:
            self._stale = _StaleRun(text)
        run = self._stale
        run.count += 1
        run.chats.add(chat)
        run.oldest_s, run.newest_s = min(run.oldest_s, queued_s), max(run.newest_s, queued_s)

    def _log_stale(self) -> None:
        """Log the run of messages given up as older than ``alert_max_age`` (if any) as one line, and end it."""
        run, self._stale = self._stale, None
        if run is None:
            return
        now_s = self._wall()
        logger.warning(
            "telegram: {} message(s) to chat {} not delivered: older than ops.telegram.alert_max_age ({:g} s) when "
            "their turn came; queued from {} ({:.0f} s ago) to {} ({:.0f} s ago); the first: {!r}",
            run.count, ", ".join(map(str, sorted(run.chats))), self.config.alert_max_age,
            _utc(math.floor(run.oldest_s)), now_s - run.oldest_s, _utc(math.floor(run.newest_s)), now_s - run.newest_s,
            run.first[:64],
        )  # fmt: skip

    def _migrate(self, chat: int, exc: _Migrated) -> int | None:
        """The supergroup the group chat ``chat`` became (``exc``), alerted from now on in its place (``None``: it is
        in ``chat_ids`` already, and gets its own copy); logged once.

        Raises
        ------
        _Migrated
            ``exc`` again when it names ``chat`` itself.
        """
        if exc.chat == chat:
            raise exc
        if exc.chat in self._allowed:
            self._migrated[chat] = None
            logger.warning(
                "telegram: chat {} was upgraded to a supergroup, chat {}, which ops.telegram.chat_ids holds too: "
                "alerts go there once; remove {} from ops.telegram.chat_ids",
                chat, exc.chat, chat,
            )  # fmt: skip
            return None
        self._migrated[chat] = exc.chat
        logger.warning(
            "telegram: chat {} was upgraded to a supergroup, chat {}: alerts go there from now on; put {} in "
            "ops.telegram.chat_ids in place of {} (commands from it are ignored until then)",
            chat, exc.chat, exc.chat, chat,
        )  # fmt: skip
        return exc.chat

    def _refused(self, exc: _ChatRefused) -> None:
        """Count a message the chat ``exc.chat`` refused; the first refusal of a series is logged, naming the chat."""
        count = self._refusals.get(exc.chat, 0) + 1
        self._refusals[exc.chat] = count
        if count > 1:
            logger.debug("telegram: chat {} refused message {} of a series", exc.chat, count)
            return
        logger.error(
            "telegram: chat {} of ops.telegram.chat_ids takes no message from the bot (Telegram: {!r}); check the id "
            "in ops.telegram.chat_ids, and that the chat has started the bot (or has it as a member) and has not "
            "blocked it. Its alerts are not delivered (tradebus_alerts_failed_total); the next refusals are "
            "counted, and logged at the stop",
            exc.chat, str(exc).replace(self._token, "<token>"),
        )  # fmt: skip

    def _accepted(self, chat: int) -> None:
        """A message ``chat`` took: the end of a series of refusals, logged with its count."""
        refused = self._refusals.pop(chat, 0)
        if refused:
            logger.warning("telegram: chat {} takes the bot's messages again; it refused {} before", chat, refused)

    def _not_delivered(self, count: int = 1) -> None:
        self.failed += count
        if self._on_fail is not None:
            for _ in range(count):
                self._on_fail()

    async def _sender(self) -> None:
        while True:
            chat, text, queued = await self.queue.get()
            self._sending = True
            try:
                if await self._send(chat, text, queued):
                    self.sent += 1
                else:
                    self.skipped += 1
            except _Stale as exc:
                self._give_up_stale(exc.chat, text, queued)
            except _ChatRefused as exc:
                self._not_delivered()
                self._refused(exc)
            except (httpx.HTTPError, RuntimeError, ValueError, _Retryable, _Expired) as exc:
                self._not_delivered()
                reason = str(exc) if isinstance(exc, _Expired) else self._redact(exc)
                logger.warning("telegram: sendMessage to chat {} failed, message not delivered: {}", chat, reason)
            except Exception as exc:  # no rule foresaw it: the sender must outlive it, or every later alert is lost
                self._not_delivered()
                logger.error(
                    "telegram: sendMessage to chat {} failed unexpectedly, message not delivered: {} (at {}); "
                    "the next messages are sent",
                    chat, self._redact(exc), _raised_at(exc),
                )  # fmt: skip
            finally:
                self._sending = False
                if self.queue.empty():
                    self._log_stale()
                self.queue.task_done()

    # ------------------------------------------------------------------ in

    async def _get_username(self) -> str:
        """The bot's username from ``getMe``, retried with a capped backoff until the Bot API gives it.

        Raises
        ------
        _Unauthorized
            The Bot API knows no bot by the token (never retried).
        """
        delay = 1.0
        while True:
            try:
                me = await self._post("getMe", {})
                username = me.get("username") if isinstance(me, dict) else None
                if isinstance(username, str) and username:
                    return username
                raise RuntimeError(f"Bot API getMe: no username in {str(me)[:80]!r}")
            except _Unauthorized:
                raise
            except (httpx.HTTPError, RuntimeError, ValueError, _Retryable) as exc:
                wait = self._retry_in("getMe", exc, delay)
                logger.warning("telegram: getMe failed, retrying in {:.0f} s: {}", wait, self._redact(exc))
                await self._sleep(wait)
                delay = min(delay * 2, 30.0)

    async def _poller(self) -> None:
        offset: int | None = None
        delay = 1.0
        # updates read, not yet confirmed: a failed confirmation may have confirmed them at the Bot API all the same (a
        # 409 ends a call Telegram took), which then never returns them, so the confirmation is sent again, not the poll
        unconfirmed: list[dict[str, Any]] = []
        last = 0
        while True:
            step = "getMe"
            try:
                if self.username is None:
                    self.username = await self._get_username()
                    logger.info("telegram: commands for @{} (or naming no bot)", self.username)
                if not unconfirmed:
                    step = "getUpdates"
                    params: dict[str, Any] = {"timeout": self.config.poll_timeout, "allowed_updates": ["message"]}
                    if offset is not None:
                        params["offset"] = offset
                    self.polls += 1
                    updates = await self._post("getUpdates", params)
                    if not isinstance(updates, list) or not all(isinstance(u, dict) and "update_id" in u for u in updates):
                        raise RuntimeError(f"Bot API getUpdates: the answer {str(updates)[:80]!r} is not a list of updates")
                    delay = 1.0
                    if not updates:
                        continue
                    last = max(int(u["update_id"]) for u in updates) + 1
                    unconfirmed = updates
                step = "confirming updates"  # before acting: a daemon stopped after acting must not get them again
                await self._post("getUpdates", {"offset": last, "timeout": 0, "limit": 1, "allowed_updates": ["message"]})
            except _Unauthorized:  # no call with this token is answered again: logged once (_token_refused)
                return
            except (httpx.HTTPError, RuntimeError, ValueError, _Retryable) as exc:
                wait = self._retry_in(step, exc, delay)
                if not self._conflict(exc):
                    logger.warning("telegram: {} failed, retrying in {:.0f} s: {}", step, wait, self._redact(exc))
                await self._wait_to_poll(wait)
                delay = min(delay * 2, 30.0)
                continue
            except Exception as exc:  # no rule foresaw it: the poller must outlive it, or no command is read again
                self._poll_failed(step, exc, delay)
                await self._wait_to_poll(delay)
                delay = min(delay * 2, 30.0)
                continue
            updates, offset, unconfirmed = unconfirmed, last, []
            for update in updates:
                try:
                    self._command(update.get("message") or {})
                except Exception as exc:  # one odd update must not end the poller (it is confirmed: not read again)
                    self._poll_failed(f"update {update['update_id']}", exc, 0.0)

    async def _wait_to_poll(self, seconds: float) -> None:
        """The poller's wait after a failure, counted (``poll_waits``, ``poll_wait_seconds``)."""
        self.poll_waits += 1
        self.poll_wait_seconds += seconds
        await self._sleep(seconds)

    def _poll_failed(self, step: str, exc: Exception, wait: float) -> None:
        """Count and log an error no rule foresaw in the poller (where it was raised, not its traceback: the token)."""
        self.poll_errors += 1
        logger.error(
            "telegram: command poller: {} failed unexpectedly: {} (at {}); polling goes on{}",
            step, self._redact(exc), _raised_at(exc), f" in {wait:.0f} s" if wait else "",
        )  # fmt: skip

    def _token_refused(self, method: str) -> None:
        """The Bot API answered ``method`` 401: the token is no bot's (any more); logged once, as an ERROR naming the
        setting and its variable, never the token."""
        if self.token_refused:
            return
        self.token_refused = True
        logger.error(
            "telegram: the Bot API answered {} with HTTP 401 Unauthorized: it knows no bot by the token in the "
            "environment variable {} (ops.telegram.token_env), revoked or replaced at @BotFather since the start. "
            "The command poller stops (no /halt, /flatten is read) and alerts are not delivered "
            "(tradebus_alerts_failed_total); the daemon trades on. Put the bot's token in {} and restart the daemon",
            method, self.config.token_env, self.config.token_env,
        )  # fmt: skip

    @property
    def polling(self) -> bool:
        """Whether the command poller runs (not: commands off, the bot stopped, or the token refused)."""
        return any(task.get_name() == "telegram:poll" and not task.done() for task in self._tasks)

    def _conflict(self, exc: BaseException) -> bool:
        """Whether ``exc`` is a 409 Conflict of ``getUpdates``: counted, and the first one logged."""
        if not isinstance(exc, _Conflict):
            return False
        self.conflicts += 1
        if self.conflicts == 1:
            logger.warning(
                "telegram: another process reads this bot's updates ({}): a second daemon on the same bot token, "
                "or a webhook set on it. Commands reach whichever process reads them first. Give each daemon "
                "its own bot (ops.telegram.token_env), or set ops.telegram.commands: false on all but one. "
                "Polling goes on; further conflicts are counted, not logged",
                str(exc).replace(self._token, "<token>"),
            )  # fmt: skip
        else:
            logger.debug("telegram: getUpdates conflict {}", self.conflicts)
        return True

    def _command(self, message: dict[str, Any]) -> None:
        chat = (message.get("chat") or {}).get("id")
        text = str(message.get("text") or "").strip()
        if not text.startswith("/"):
            return
        head = text.split()[0]
        name, _, addressee = head.partition("@")
        if addressee and addressee.lower() != (self.username or "").lower():
            logger.debug("telegram: command {!r} in chat {} is for @{}, not this bot", name[:32], chat, addressee[:32])
            return
        text = name + text[len(head) :]
        if chat not in self._allowed:
            self.ignored_commands += 1
            logger.warning("telegram: command {!r} from chat {} ignored: not in ops.telegram.chat_ids", text[:32], chat)
            return
        stale = self._too_old(message.get("date"))
        if stale is not None:
            self.ignored_commands += 1
            logger.warning("telegram: command {!r} from chat {} ignored: {}", text[:32], chat, stale)
            self._enqueue(chat, f"ignored {text[:64]}: {stale}; send it again to act")
            return
        assert self._on_command is not None
        logger.info("telegram: command {!r} from chat {}", text[:64], chat)
        try:
            reply = self._on_command(text, chat)
        except Exception as exc:  # a command must never take the bot (or the daemon) down
            logger.exception("telegram: command {!r} failed", text[:32])
            reply = f"command failed: {type(exc).__name__}: {exc}"
        if inspect.isawaitable(reply):
            task = asyncio.create_task(self._answer(chat, text, reply), name=f"telegram:{name}")
            self._commands.add(task)
            task.add_done_callback(self._commands.discard)
            return
        self._enqueue(chat, reply)

    async def _answer(self, chat: int, text: str, reply: Awaitable[str]) -> None:
        """Send the answer of a command once it is done."""
        try:
            answer = await reply
        except Exception as exc:  # a command must never take the bot (or the daemon) down
            logger.exception("telegram: command {!r} failed", text[:32])
            answer = f"command failed: {type(exc).__name__}: {exc}"
        self._enqueue(chat, answer)

    def _too_old(self, date: Any) -> str | None:
        """Why a command sent at ``date`` (Unix seconds) must not be acted on, or ``None``."""
        if not isinstance(date, int) or isinstance(date, bool):
            return f"the message has no date ({str(date)[:20]!r})"
        assert self.started_s is not None
        if date < self.started_s:
            return f"sent at {_utc(date)}, before the daemon started at {_utc(self.started_s)}"
        age = self._wall() - date
        if age > self.config.command_max_age:
            return f"sent at {_utc(date)}, {age:.0f} s ago (ops.telegram.command_max_age: {self.config.command_max_age:g} s)"
        return None

    # ------------------------------------------------------------------ lifecycle

    async def start(self, daily_summary: Callable[[], str] | None = None) -> None:
        """Open the HTTP client and start the sender, the poller (with commands) and the daily summary."""
        self.started_s = int(self._wall())
        base = self.config.base_url.rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=f"{base}/bot{self._token}/", timeout=httpx.Timeout(10.0, read=self.config.poll_timeout + 10.0)
        )
        self._tasks.append(asyncio.create_task(self._sender(), name="telegram:send"))
        if self.config.commands and self._on_command is not None:
            self._tasks.append(asyncio.create_task(self._poller(), name="telegram:poll"))
        if daily_summary is not None and "daily_summary" in self._kinds:
            self._tasks.append(asyncio.create_task(self._daily(daily_summary), name="telegram:daily"))

    async def _give_up_backlog(self) -> int:
        """Stop sending the messages queued and the one being sent (a new sender takes the next); how many."""
        given_up = int(self._sending)
        sender = next(task for task in self._tasks if task.get_name() == "telegram:send")
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        while not self.queue.empty():
            self.queue.get_nowait()
            self.queue.task_done()
            given_up += 1
        self._tasks[self._tasks.index(sender)] = asyncio.create_task(self._sender(), name="telegram:send")
        return given_up

    async def _daily(self, summary: Callable[[], str]) -> None:
        await every_day_at(self.config.daily_summary_utc, lambda: self.alert("daily_summary", summary()))

    async def stop(self, timeout: float = 5.0) -> None:
        """Send what is queued (for at most ``timeout`` seconds), then the :meth:`last_words` (for at most ``timeout``
        seconds more: what was queued before and is not sent by then is given up), then stop the tasks and the client.

        Messages still queued or being sent then are counted as not delivered, and logged.
        """
        if self._commands:  # their answers are still to come
            _, late = await asyncio.wait(self._commands, timeout=timeout)
            for task in late:
                logger.warning("telegram: {} not done before the stop; canceled", task.get_name())
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._tasks:  # join() also waits for a message taken from the queue and not yet sent
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.queue.join(), timeout)
        unsent = 0
        if self._last_words:
            if self._tasks and (self._sending or not self.queue.empty()):  # the backlog gives way to the last words
                unsent += await self._give_up_backlog()
            for item in self._last_words:
                self._put(item)
            self._last_words.clear()
            if self._tasks:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.queue.join(), timeout)
        unsent += int(self._sending)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        while not self.queue.empty():
            self.queue.get_nowait()
            self.queue.task_done()
            unsent += 1
        self._log_stale()
        if unsent:
            self._not_delivered(unsent)
            logger.warning("telegram: {} message(s) not delivered before the stop", unsent)
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self.dropped:
            logger.warning("telegram: {} message(s) dropped because the queue was full", self.dropped)
        for chat, refused in self._refusals.items():
            logger.warning("telegram: chat {} of ops.telegram.chat_ids refused {} message(s)", chat, refused)
