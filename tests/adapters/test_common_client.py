"""The WebSocket client's connection loop against a WebSocket server of the test's own on 127.0.0.1."""

from __future__ import annotations

import asyncio

from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request

from tradebus.adapters.common.client import WsClient
from tradebus.adapters.common.policy import ConnectionPolicy

WAIT = 60.0  # how long what normally takes milliseconds may take on a loaded machine before the test fails


class QuietClient(WsClient):
    """A client of a stream that sends nothing (an idle account's private stream), subscribing to nothing."""

    def __init__(self, url: str) -> None:
        super().__init__("quiet", lambda message: None, ConnectionPolicy(stale_after=1e9))
        self.url = url

    def connect_url(self) -> str:
        return self.url

    def subscribe_frames(self) -> list[str]:
        return []

    def on_frame(self, raw: str | bytes, recv_ns: int) -> None:
        return


async def test_a_stop_during_the_handshake_ends_the_client_once_it_completes() -> None:
    """Stopped while its opening handshake waits for the server, the client found no connection to close, then
    connected all the same and waited for a frame of the quiet stream for good (a daemon's stop with it). It now
    ends once the handshake completes, the connection closed unused."""
    asked, release = asyncio.Event(), asyncio.Event()

    async def held(connection: ServerConnection, request: Request) -> None:
        asked.set()
        await release.wait()

    async def quiet(connection: ServerConnection) -> None:
        await connection.wait_closed()

    async with serve(quiet, "127.0.0.1", 0, process_request=held) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        client = QuietClient(f"ws://127.0.0.1:{port}")
        task = asyncio.create_task(client.run())
        try:
            await asyncio.wait_for(asked.wait(), WAIT)
            client.stop()
            release.set()
            await asyncio.wait_for(task, WAIT)
        finally:
            release.set()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert client.connections == 0
