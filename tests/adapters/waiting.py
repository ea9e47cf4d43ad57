"""Waiting on a condition in the client tests, never on the clock (not a test module)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from tradebus.adapters.common.client import WsClient


async def run_until_replayed(
    client: WsClient, last_frame: str, in_sync: Callable[[], bool], timeout: float = 20.0
) -> None:
    """Run ``client`` until it has handled ``last_frame`` (the capture's last) with every book in sync, then stop it.

    The condition is checked after each frame the client handles (a resync snapshot after
    the last frame counts too), so no frame can still be in flight when this returns.

    Raises
    ------
    TimeoutError
        The condition did not hold within ``timeout`` seconds (or the client stopped first).
    """
    done = asyncio.Event()
    seen_last = False
    on_frame = client.on_frame

    def watched(raw: Any, recv_ns: int) -> None:
        nonlocal seen_last
        try:
            on_frame(raw, recv_ns)
        finally:
            seen_last = seen_last or raw == last_frame
            if seen_last and in_sync():
                done.set()

    client.on_frame = watched  # type: ignore[method-assign]
    task = asyncio.create_task(client.run())
    try:
        finished, _ = await asyncio.wait([task, asyncio.ensure_future(done.wait())], timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        if not done.is_set():
            raise TimeoutError(
                f"{client.name}: after {timeout} s: last frame handled={seen_last}, books in sync={in_sync()}, "
                f"client {'stopped' if task in finished else 'running'}"
            )
    finally:
        client.stop()
        await asyncio.wait_for(task, 10)


class Messages(list[Any]):
    """A client's sink that tells :func:`run_until` of every message appended to it."""

    def __init__(self) -> None:
        super().__init__()
        self.appended: Callable[[], None] | None = None

    def append(self, message: Any) -> None:
        super().append(message)
        if self.appended is not None:
            self.appended()


async def run_until(client: WsClient, done: Callable[[], bool], out: Messages | None = None, timeout: float = 20.0) -> None:
    """Run ``client`` until ``done()`` holds, then stop it.

    ``done()`` is checked after every frame the client handles and every message it appends to
    ``out`` (a snapshot fetched over REST, a ``FeedStale``), never on a timer.

    Raises
    ------
    TimeoutError
        ``done()`` did not hold within ``timeout`` seconds (or the client stopped first).
    """
    reached = asyncio.Event()

    def check() -> None:
        if not reached.is_set() and done():
            reached.set()

    on_frame = client.on_frame

    def watched(raw: Any, recv_ns: int) -> None:
        try:
            on_frame(raw, recv_ns)
        finally:
            check()

    client.on_frame = watched  # type: ignore[method-assign]
    if out is not None:
        out.appended = check
    task = asyncio.create_task(client.run())
    waiter = asyncio.ensure_future(reached.wait())
    try:
        finished, _ = await asyncio.wait([task, waiter], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if not reached.is_set():
            raise TimeoutError(
                f"{client.name}: the condition did not hold after {timeout} s "
                f"(client {'stopped' if task in finished else 'running'})"
            )
    finally:
        waiter.cancel()
        client.stop()
        await asyncio.wait_for(task, 10)
