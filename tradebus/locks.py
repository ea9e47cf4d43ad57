"""Advisory locks that go with the process holding them, and who holds one.

A daemon's journal (:class:`tradebus.execution.journal.Journal`) and a run's output directory
(:class:`tradebus.reports.writers.RunDirectory`) are held with an exclusive ``flock`` on an open
descriptor: closing it releases the lock, and so does the end of the process, ``kill -9``
included, so a crashed run never leaves one behind. A second opener is refused, naming the
holder (:func:`lock_holder`). A report reading a run directory (or writing its page there) holds it
with a shared one: it keeps a run out, not another report. The catalog's writers hold its folders
the same way, and its reads with a shared one (:mod:`tradebus.data.catalog`). A file system that
cannot lock (some network file systems) is named as such by :func:`cannot_lock`.
"""

from __future__ import annotations

import fcntl
import os
import socket

from tradebus.errors import describe_os_error

__all__ = ["cannot_lock", "held_shared", "lock_holder", "take_lock"]


def take_lock(fd: int, *, shared: bool = False, wait: bool = False) -> str | None:
    """Hold an exclusive (``shared``: a shared) ``flock`` on ``fd`` without waiting (``wait``: until it is free):
    ``None`` once held, else who holds it.

    The holder as :func:`lock_holder` describes it, or ``"locked by another process"`` when it is not
    to be seen.

    Raises
    ------
    OSError
        The file system cannot lock (some network file systems).
    """
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return lock_holder(fd) or "locked by another process"
    return None


def held_shared(fd: int) -> bool:
    """Whether the ``flock`` an exclusive :func:`take_lock` on ``fd`` was refused is held shared only (by readers).

    Tried, not read from ``/proc/locks``, so it holds for a holder on another host too; what it says may be
    stale by the time it is read (a holder that ended meanwhile).
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return False
    fcntl.flock(fd, fcntl.LOCK_UN)
    return True


def cannot_lock(what: str, exc: OSError) -> str:
    """The message naming ``what`` (``"output directory runs/a"``) as :func:`take_lock` could not lock it (``exc``).

    ``"output directory runs/a: cannot lock it (ENOLCK: No locks available: its file system cannot lock, as some
    network file systems)"``.
    """
    return f"{what}: cannot lock it ({describe_os_error(exc)}: its file system cannot lock, as some network file systems)"


def lock_holder(fd: int) -> str | None:
    """The process holding the ``flock`` on ``fd``'s file, as ``pid N on HOST: command line``, from ``/proc/locks``.

    ``None`` where there is no ``/proc/locks`` (not Linux) or it lists no holder this process can see
    (one on another host sharing the file system, or in another PID namespace).
    """
    st = os.fstat(fd)
    where = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as locks:
            lines = locks.read().splitlines()
    except OSError:
        return None
    for line in lines:
        # "1: FLOCK  ADVISORY  WRITE 21989 fe:00:2148094 0 EOF"; a waiter's line has "->" after the id
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == where and fields[4].isdigit() and fields[4] != "0":
            pid = int(fields[4])
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                    command = " ".join(cmdline.read().decode(errors="replace").replace("\0", " ").split())
            except OSError:
                command = ""
            return f"pid {pid} on {socket.gethostname()}" + (f": {command[:200]}" if command else "")
    return None
