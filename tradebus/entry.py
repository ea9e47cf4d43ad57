"""The ``tradebus`` console script: takes Ctrl-C and SIGTERM before it imports the command line.

Importing :mod:`tradebus.cli` loads NumPy, pandas, Numba and every command's modules: seconds on a loaded machine.
Python's default turned a Ctrl-C meanwhile into a ``KeyboardInterrupt`` traceback from deep in an import, and a
SIGTERM killed the process outright. Here either signal during those imports ends the command with one line on stderr
and the exit code the command line gives them (130, 143), before any command ran (so nothing was created). Kept light:
:mod:`tradebus` itself imports nothing heavy, so the handlers are set before the heavy imports begin.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

__all__ = ["main"]

#: The exit code of a command stopped by each signal, as the command line gives them.
_EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class _Stopped(BaseException):
    """A signal received while the command line was being imported (``signum``)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum: int, frame: object) -> None:
    raise _Stopped(signum)


def main() -> Any:
    """Import the command line with SIGINT and SIGTERM taken, then run it (``sys.argv``); return its exit status.

    Raises
    ------
    SystemExit
        130 (SIGINT) or 143 (SIGTERM) received during the import, after one line on stderr.
    """
    previous: list[tuple[signal.Signals, Any]] = []
    if threading.current_thread() is threading.main_thread():  # only the main thread may set handlers
        previous = [(sig, signal.signal(sig, _on_signal)) for sig in _EXIT_CODES]
    try:
        try:
            from tradebus.cli import app
        finally:  # the command line's own handling from here (typer, the daemons' loops)
            for sig, handler in previous:
                signal.signal(sig, handler)
    except _Stopped as stopped:
        name = signal.Signals(stopped.signum).name
        sys.stderr.write(f"tradebus: stopped by {name} while starting; nothing was run\n")
        raise SystemExit(_EXIT_CODES[signal.Signals(stopped.signum)]) from None
    return app(prog_name="tradebus")
