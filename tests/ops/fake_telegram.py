"""A fake Telegram Bot API on 127.0.0.1 (aiohttp): ``getMe``, ``getUpdates`` (long poll) and ``sendMessage``."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from aiohttp import web

#: Telegram's answer to a getUpdates long poll that a newer one (another process on the token) ended.
CONFLICT = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"


class FakeBotApi:
    """Answers ``/bot<token>/getMe``, ``/bot<token>/getUpdates`` and ``/bot<token>/sendMessage`` for one token.

    ``getMe`` answers as Telegram does: the bot's user, id from the token, ``username``.
    ``push(chat_id, text, date)`` queues an incoming message (``date``: when it was sent, Unix
    seconds, now by default); ``getUpdates`` with an ``offset`` confirms the updates before it,
    which are then forgotten (``confirmed``: the highest offset), as Telegram does, unless
    ``confirm`` is false (the requests of a daemon that dies before they reach the API). ``sent`` holds every
    ``(chat_id, text)`` the bot sent; ``send_delay`` slows ``sendMessage`` down; a wrong
    token gets 401 like the real API, and a text that is empty or longer than 4096 UTF-16 code units
    400, a group chat upgraded to a supergroup (``migrated``) 400 naming the new chat, a chat that takes no message
    from the bot (``refused``) the answer it holds; ``throttle``, ``garble`` and ``fail`` make the next
    ``sendMessage`` calls fail (429, a JSON list, an HTTP 5xx page), and ``answers`` gives the next
    ``sendMessage`` calls the answers it holds, as they are (``update_answers``: the next ``getUpdates``
    calls). ``flood(method, seconds)``
    puts ``method`` under flood control for ``seconds`` of ``clock``, as Telegram does: every call
    before then gets HTTP 429 with the seconds left in ``parameters.retry_after`` (whole seconds,
    rounded up). A ``getUpdates`` long poll still waiting when another one arrives is answered
    409 ``Conflict`` (counted in ``conflicts``), as Telegram answers two processes polling one token. A long poll
    waits for an update the ``timeout`` it asks for, at most ``poll_wait`` seconds (0.2: a test's poller turns
    quickly), and not past the server's stop.
    """

    def __init__(
        self,
        token: str,
        send_delay: float = 0.0,
        username: str = "tradebus_test_bot",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token = token
        self.clock = clock
        self._flooded: dict[str, float] = {}
        self.username = username
        self.send_delay = send_delay
        #: answer this many sendMessage calls with HTTP 429 (flood control) first
        self.throttle = 0
        #: answer this many sendMessage or getUpdates calls with a JSON list instead of an object first
        self.garble = 0
        #: answer this many sendMessage calls with ``fail_status`` (a proxy's HTML page, not JSON) first
        self.fail = 0
        self.fail_status = 502
        #: answer the next sendMessage calls with these ``(HTTP status, JSON body)`` first, as they are
        self.answers: list[tuple[int, Any]] = []
        #: answer the next getUpdates calls (long polls and confirmations alike) with these first, as they are
        self.update_answers: list[tuple[int, Any]] = []
        self.sent: list[tuple[int, str]] = []
        #: group chats upgraded to a supergroup, old id -> new id: a sendMessage to the old one is answered 400 with
        #: ``parameters.migrate_to_chat_id``, as Telegram answers it
        self.migrated: dict[int, int] = {}
        #: chats that take no message from the bot, chat id -> (HTTP status, description) of Telegram's answer to a
        #: sendMessage there (400 "Bad Request: chat not found", 403 "Forbidden: bot was blocked by the user")
        self.refused: dict[int, tuple[int, str]] = {}
        self.requests: list[str] = []
        self.confirm = True
        self.confirmed = 0
        self._updates: list[dict[str, Any]] = []
        #: getUpdates calls so far, and those of them still waiting for an update
        self._polls = 0
        self._waiting = 0
        #: long polls ended with 409 Conflict by a newer getUpdates call (another process on the token)
        self.conflicts = 0
        #: answer this many getUpdates calls confirming an offset 409 Conflict after confirming it (calls Telegram took,
        #: ended by another process's poll)
        self.conflicts_after_confirming = 0
        #: longest a getUpdates long poll waits for an update, seconds (its ``timeout`` if shorter)
        self.poll_wait = 0.2
        self._stopping = False
        self._next_id = 1000
        #: set when an update arrives or a newer poll ends the waiting ones; each wait keeps the one it began with
        #: (a new one for the next), so a wake-up sent before the waiting task first ran is not cleared away
        self._arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    def push(self, chat_id: int, text: str, date: int | None = None) -> None:
        sent = int(time.time()) if date is None else date
        message = {"message_id": self._next_id, "chat": {"id": chat_id}, "date": sent, "text": text}
        self._updates.append({"update_id": self._next_id, "message": message})
        self._next_id += 1
        self._wake()

    def _wake(self) -> None:
        """End every long poll waiting now."""
        self._arrived.set()
        self._arrived = asyncio.Event()

    def flood(self, method: str, seconds: float) -> None:
        self._flooded[method] = self.clock() + seconds

    def texts(self, chat_id: int | None = None) -> list[str]:
        return [t for c, t in self.sent if chat_id is None or c == chat_id]

    async def _method(self, request: web.Request) -> web.Response:
        token, method = request.match_info["token"], request.match_info["method"]
        self.requests.append(method)
        if token != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        body = await request.json() if request.can_read_body else {}
        left = self._flooded.get(method, 0.0) - self.clock()
        if left > 0.0:
            retry = math.ceil(left)
            body429 = {"ok": False, "error_code": 429, "description": f"Too Many Requests: retry after {retry}"}
            return web.json_response({**body429, "parameters": {"retry_after": retry}}, status=429)
        if method == "getUpdates" and self.update_answers:
            status, answer = self.update_answers.pop(0)
            return web.json_response(answer, status=status)
        if self.garble > 0 and method in ("sendMessage", "getUpdates"):
            self.garble -= 1
            return web.json_response([1, 2])
        if method == "sendMessage":
            if self.answers:
                status, answer = self.answers.pop(0)
                return web.json_response(answer, status=status)
            if self.fail > 0:
                self.fail -= 1
                return web.Response(status=self.fail_status, text="<html>Bad Gateway</html>", content_type="text/html")
            if self.throttle > 0:
                self.throttle -= 1
                body429 = {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 0.2"}
                return web.json_response({**body429, "parameters": {"retry_after": 0.2}}, status=429)
            text = str(body.get("text", ""))
            refused = None
            if not text.strip():
                refused = "Bad Request: message text is empty"
            elif len(text.encode("utf-16-le")) // 2 > 4096:  # Telegram counts UTF-16 code units
                refused = "Bad Request: message is too long"
            if refused is not None:
                return web.json_response({"ok": False, "error_code": 400, "description": refused}, status=400)
            chat = int(body["chat_id"])
            if chat in self.refused:
                status, description = self.refused[chat]
                return web.json_response({"ok": False, "error_code": status, "description": description}, status=status)
            if chat in self.migrated:
                upgraded = {"ok": False, "error_code": 400, "description": "Bad Request: group chat was upgraded to a supergroup chat"}
                return web.json_response({**upgraded, "parameters": {"migrate_to_chat_id": self.migrated[chat]}}, status=400)
            if self.send_delay:
                await asyncio.sleep(self.send_delay)
            self.sent.append((int(body["chat_id"]), str(body["text"])))
            return web.json_response({"ok": True, "result": {"message_id": len(self.sent)}})
        if method == "getMe":
            me = {
                "id": int(self.token.partition(":")[0]),
                "is_bot": True,
                "first_name": "tradebus",
                "username": self.username,
                "can_join_groups": True,
                "can_read_all_group_messages": False,
                "supports_inline_queries": False,
            }
            return web.json_response({"ok": True, "result": me})
        if method == "getUpdates":
            offset = int(body.get("offset", 0))
            if self.confirm and offset > self.confirmed:
                self.confirmed = offset
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
                if self.conflicts_after_confirming > 0:
                    self.conflicts_after_confirming -= 1
                    self.conflicts += 1
                    return web.json_response({"ok": False, "error_code": 409, "description": CONFLICT}, status=409)
            if not self.confirm:  # a request that never arrived: the daemon waits on it until it is stopped
                await asyncio.sleep(min(float(body.get("timeout", 0)), 0.2))
                return web.json_response({"ok": True, "result": []})
            self._polls += 1
            poll = self._polls
            if self._waiting:  # a long poll still waiting is ended by this one, as Telegram does
                self._wake()
            offset = max(offset, self.confirmed)
            pending = [u for u in self._updates if u["update_id"] >= offset]
            if not pending and not self._stopping:
                arrived = self._arrived
                self._waiting += 1
                try:
                    await asyncio.wait_for(arrived.wait(), min(float(body.get("timeout", 0)), self.poll_wait))
                except TimeoutError:
                    pass
                finally:
                    self._waiting -= 1
                if poll != self._polls:
                    self.conflicts += 1
                    return web.json_response({"ok": False, "error_code": 409, "description": CONFLICT}, status=409)
                pending = [u for u in self._updates if u["update_id"] >= offset]
            return web.json_response({"ok": True, "result": pending[: int(body.get("limit", 100))]})
        return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)

    async def __aenter__(self) -> FakeBotApi:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._method)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._runner is not None
        self._stopping = True
        self._wake()  # a long poll still waiting ends now, not at its timeout
        await self._runner.cleanup()
