"""A small HTTP server on the daemon's own loop: ``GET /metrics`` and ``GET /health``.

It runs on the daemon's asyncio loop (``asyncio.start_server``), so a scrape reads the
kernel's state between two messages, never in the middle of one. One request per
connection; ``HEAD`` is answered as ``GET`` without the body (an uptime monitor's probe); any other method
gets 405 with ``Allow: GET, HEAD`` (RFC 9110, 15.5.6), an unknown path 404. A path with one trailing slash
(``/health/``, as uptime monitors often write it) gets the same answer as without: a redirect would be followed
by some monitors and read as down by others.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

from loguru import logger
from prometheus_client import CONTENT_TYPE_LATEST

from tradebus.errors import ConfigError

__all__ = ["OpsServer"]

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class OpsServer:
    """Serves ``/metrics`` (``metrics()`` bytes) and ``/health`` (``health()`` -> (healthy, report)).

    Parameters
    ----------
    host, port
        Where to listen (``port=0``: a free port, in :attr:`port` once started).
    metrics
        Returns the Prometheus exposition.
    health
        Returns ``(healthy, report)``: 200 or 503 with the report as JSON.
    """

    def __init__(
        self,
        host: str,
        port: int,
        metrics: Callable[[], bytes],
        health: Callable[[], tuple[bool, dict[str, object]]],
    ) -> None:
        self.host = host
        self.port = port
        self._metrics = metrics
        self._health = health
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen (logs the address).

        Raises
        ------
        ConfigError
            Nothing can listen there (the port is taken, the host is not this machine's).
        """
        try:
            self._server = await asyncio.start_server(self._handle, self.host, self.port)
        except OSError as exc:
            raise ConfigError(
                f"ops.port/ops.host: cannot serve /metrics and /health on {self.host}:{self.port} "
                f"({exc.strerror or exc}); give a free port, or 0 for any"
            ) from None
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("ops: /metrics and /health on http://{}:{}", self.host, self.port)

    async def stop(self) -> None:
        """Stop listening and close the server."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        method = ""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
            method, _, rest = head.decode("latin-1").partition(" ")
            path = rest.partition(" ")[0].partition("?")[0].removesuffix("/")
            if method not in ("GET", "HEAD"):
                status, ctype, body = 405, "text/plain", b"only GET or HEAD\n"
            elif path == "/metrics":
                status, ctype, body = 200, CONTENT_TYPE_LATEST, self._metrics()
            elif path == "/health":
                healthy, report = self._health()
                status, ctype = (200 if healthy else 503), "application/json"
                body = json.dumps(report, sort_keys=True).encode() + b"\n"
            else:
                status, ctype, body = 404, "text/plain", b"try /metrics or /health\n"
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, UnicodeDecodeError):
            status, ctype, body = 400, "text/plain", b"bad request\n"
        except Exception as exc:  # a failing scrape must not take the daemon down
            logger.exception("ops: request failed")
            status, ctype, body = 500, "text/plain", f"{type(exc).__name__}\n".encode()
        allow = "Allow: GET, HEAD\r\n" if status == 405 else ""
        try:
            writer.write(
                f"HTTP/1.1 {status} {_REASONS[status]}\r\n{allow}Content-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + (b"" if method == "HEAD" else body)
            )
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
