"""SIGINT and SIGTERM while a daemon's command starts, before the daemon's event loop takes them.

Kept free of heavy imports: ``tradebus paper`` and ``tradebus live`` take the signals with it before they import the
daemon (seconds of imports on a loaded machine).
"""

from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tradebus.node.daemon import PaperNode

__all__ = ["StartingSignals"]


class StartingSignals:
    """SIGINT and SIGTERM while a ``tradebus paper``/``live`` command starts, before the daemon's loop takes them.

    Python's default raised ``KeyboardInterrupt`` wherever the start-up was (loading the config, opening the journal,
    building the kernel): a traceback and exit 130. Within the block the first signal is kept (:attr:`signal`) for
    :meth:`hand_to` to ask the built daemon to stop with, as its loop's handler would have (it then stops cleanly
    before it trades, exit 0); a second one, or any once :meth:`stopping` was called, ends the command as before
    (``KeyboardInterrupt``, or ``SystemExit(143)`` for SIGTERM). The handlers found are put back at the end; the
    daemon's loop takes the signals meanwhile and gives them back to this one when it has stopped. Outside the main
    thread (where no handler can be set) it does nothing.
    """

    def __init__(self) -> None:
        #: The first signal received, kept for the daemon (``None``: none yet).
        self.signal: signal.Signals | None = None
        self._stopping = False
        self._previous: list[tuple[signal.Signals, Any]] = []

    def __enter__(self) -> StartingSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous.append((sig, signal.signal(sig, self._on_signal)))
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous:
            signal.signal(sig, previous)

    def _on_signal(self, signum: int, frame: object) -> None:
        # No logging here: the signal may come while loguru holds its lock.
        if self.signal is None and not self._stopping:
            self.signal = signal.Signals(signum)
            return
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    def hand_to(self, node: PaperNode) -> None:
        """Ask ``node`` (built, not run yet) to stop if a signal came while it was being built."""
        if self.signal is not None:
            node.stop(f"signal {self.signal.name} while starting")

    def stopping(self) -> None:
        """The daemon has run: a signal from now on ends the command (its outputs being written) as Python's does."""
        self._stopping = True
