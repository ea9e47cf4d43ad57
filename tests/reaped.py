"""Processes a test starts, killed and reaped however the test ends.

A test that starts a daemon and then fails (a wait timing out, an assertion) must not leave
it running: one left behind kept reconnecting to the next test's venue for hours.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager


@contextmanager
def reaped(proc: subprocess.Popen[bytes] | subprocess.Popen[str]) -> Iterator[None]:
    """Kill ``proc`` (SIGKILL) if it still runs when the block ends, and reap it, whatever ended the block.

    Parameters
    ----------
    proc
        The started process; a block that stops it itself leaves it as it ended.
    """
    try:
        yield
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


@asynccontextmanager
async def areaped(proc: asyncio.subprocess.Process) -> AsyncIterator[None]:
    """:func:`reaped` for an asyncio subprocess.

    Parameters
    ----------
    proc
        The started process; a block that stops it itself leaves it as it ended.
    """
    try:
        yield
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # exited, not yet reaped
                proc.kill()
        await proc.wait()
