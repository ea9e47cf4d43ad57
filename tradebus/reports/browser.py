"""Open an HTML file in headless Chromium over the DevTools protocol: errors, a screenshot, page values.

Used by the tests (a tearsheet must render without a console error) and by
``tradebus report --screenshot``. Chromium is started with a fresh profile in a
temporary directory, ``--remote-debugging-port=0`` on 127.0.0.1, and driven over one
WebSocket (``websockets``' sync client); nothing but the given file is loaded.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger
from websockets.sync.client import ClientConnection, connect

from tradebus.errors import TradebusError

__all__ = ["BrowserError", "Rendering", "find_chromium", "render"]

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class BrowserError(TradebusError):
    """Chromium is missing, did not start, or the DevTools session failed."""


@dataclass(slots=True)
class Rendering:
    """What a page did when opened: its errors, the URLs it requested, a PNG screenshot, an expression's value."""

    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    png: bytes = b""
    value: Any = None


def find_chromium() -> str:
    """The path of a Chromium executable (``$CHROMIUM``, then the usual names on ``PATH``).

    Raises
    ------
    BrowserError
        None is installed; the message says how to install Debian's.
    """
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        if shutil.which(explicit):
            return shutil.which(explicit)  # type: ignore[return-value]
        raise BrowserError(f"CHROMIUM={explicit!r} is not an executable")
    for name in _CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    raise BrowserError(
        "no Chromium found (looked for chromium, chromium-browser, google-chrome on PATH): "
        "install Debian's with `apt-get install -y chromium`, or set CHROMIUM=/path/to/chrome"
    )


class _Session:
    def __init__(self, ws: ClientConnection, timeout: float) -> None:
        self._ws = ws
        self._next = 0
        self._timeout = timeout
        self.errors: list[str] = []
        self.requests: list[str] = []
        self._events: list[dict[str, Any]] = []

    def _collect(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        params = message.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text", "exception")
            self.errors.append(f"page exception: {text}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.errors.append(f"console.{params['type']}: {args}")
        elif method == "Network.requestWillBeSent":
            self.requests.append(str(params.get("request", {}).get("url", "")))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            self.errors.append(f"log {entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip())
        self._events.append(message)

    def _until(self, done: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        """Read messages (collecting events) until ``done(message)``; return that message."""
        deadline = time.monotonic() + self._timeout
        while True:
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise TimeoutError
                message = json.loads(self._ws.recv(timeout=left))
            except TimeoutError:
                raise BrowserError(f"DevTools: no {what} within {self._timeout:g} s") from None
            if done(message):
                return message
            self._collect(message)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next += 1
        ident = self._next
        self._ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        message = self._until(lambda m: m.get("id") == ident, f"answer to {method}")
        if "error" in message:
            raise BrowserError(f"DevTools {method}: {message['error']}")
        return message.get("result", {})

    def wait_event(self, method: str) -> None:
        if any(e.get("method") == method for e in self._events):
            return
        self._collect(self._until(lambda m: m.get("method") == method, method))

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                self._collect(json.loads(self._ws.recv(timeout=left)))
            except TimeoutError:
                return


def _debug_port(profile: Path, process: subprocess.Popen[bytes], timeout: float) -> int:
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = process.stderr.read().decode(errors="replace")[-2000:] if process.stderr else ""
            raise BrowserError(f"chromium exited with code {process.returncode} before it listened: {err}")
        if marker.is_file():
            lines = marker.read_text().splitlines()
            if lines and lines[0].isdigit():
                return int(lines[0])
        time.sleep(0.05)
    raise BrowserError(f"chromium did not open its DevTools port within {timeout:g} s")


def render(
    path: str | Path,
    *,
    expression: str | None = None,
    width: int = 1280,
    height: int = 900,
    full_page: bool = False,
    settle_s: float = 0.5,
    timeout: float = 60.0,
    executable: str | None = None,
) -> Rendering:
    """Open the local file ``path`` in headless Chromium and report what happened.

    Parameters
    ----------
    path
        The HTML file.
    expression
        JavaScript evaluated once the page has loaded; its (JSON-able) value is returned.
    width, height
        The viewport, in CSS pixels; the screenshot is of the viewport unless ``full_page``.
    settle_s
        Seconds to keep collecting console messages after the load event.
    timeout
        Seconds allowed for Chromium to start and for each DevTools call.
    executable
        The Chromium binary (default :func:`find_chromium`).

    Raises
    ------
    BrowserError
        Chromium is missing or failed (the message says which).
    """
    url = Path(path).resolve().as_uri()
    binary = executable or find_chromium()
    profile = tempfile.mkdtemp(prefix="tradebus-chromium-")
    try:
        return _render(binary, profile, url, width, height, settle_s, expression, full_page, timeout)
    finally:
        _remove_profile(Path(profile))


def _render(  # noqa: PLR0913 (the arguments of render, passed on)
    binary: str,
    profile: str,
    url: str,
    width: int,
    height: int,
    settle_s: float,
    expression: str | None,
    full_page: bool,
    timeout: float,
) -> Rendering:
    args = [
        binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--mute-audio",
        "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", f"--user-data-dir={profile}",
        f"--window-size={width},{height}", "about:blank",
    ]
    try:
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        raise BrowserError(f"cannot start {binary}: {exc}") from None
    try:
        port = _debug_port(Path(profile), process, timeout)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/json/new?about:blank", method="PUT")
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 (our own 127.0.0.1 port)
            target = json.loads(answer.read())
        with connect(target["webSocketDebuggerUrl"], max_size=None, open_timeout=timeout) as ws:
            session = _Session(ws, timeout)
            session.call("Runtime.enable")
            session.call("Log.enable")
            session.call("Page.enable")
            session.call("Network.enable")
            session.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                         deviceScaleFactor=1, mobile=False)
            session.call("Page.navigate", url=url)
            session.wait_event("Page.loadEventFired")
            session.drain(settle_s)
            rendering = Rendering()
            if expression is not None:
                result = session.call("Runtime.evaluate", expression=expression, returnByValue=True,
                                      awaitPromise=True)
                if "exceptionDetails" in result:
                    raise BrowserError(f"evaluating {expression[:60]!r}: {result['exceptionDetails']}")
                rendering.value = result.get("result", {}).get("value")
            shot = session.call("Page.captureScreenshot", format="png", captureBeyondViewport=full_page)
            rendering.png = base64.b64decode(shot["data"])
            session.drain(0.05)
            rendering.errors = list(session.errors)
            rendering.requests = list(session.requests)
            return rendering
    finally:
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()
        if process.stderr:
            process.stderr.close()


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    """Send ``sig`` to Chromium and every process it started (its own session's group)."""
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def _remove_profile(profile: Path, attempts: int = 50) -> None:
    """Remove the temporary profile; Chromium's helpers may still be writing to it for a moment."""
    for _ in range(attempts):
        try:
            shutil.rmtree(profile)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)
    shutil.rmtree(profile, ignore_errors=True)
    if profile.exists():
        logger.warning("browser: could not remove the temporary Chromium profile {}", profile)
