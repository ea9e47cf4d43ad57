"""Generated driver modules and their frozen entry points asked for by several threads at once.

A daemon stopped during its warm-up leaves the warm-up thread compiling; the next daemon of the
process (a restart, the next test of a pytest worker) warms up in a thread of its own meanwhile.
Both asked for the same module and entry points: the second got the module while the first was
still executing it (``AttributeError: module '_tradebus_bank_...' has no attribute 'on_bar'``) or
compiled an entry point the first had just frozen (``RuntimeError: compilation disabled``), and its
daemon stopped with "warming up the feature kernels failed".
"""

from __future__ import annotations

import hashlib
import sys
import threading
import time
from typing import Any

from numba import types

from tradebus.features import drivers

THREADS = 8
DEADLINE_S = 120.0  # generous: only a failure waits that long


def probe_source(tag: str, compile_at_import: bool) -> str:
    """A module of one kernel ``on_probe`` (its import compiles it, taking a while, if ``compile_at_import``),
    then ``DONE``."""
    return (
        "from numba import njit\n"
        f"# {tag}\n"
        "@njit(cache=False)\n"
        "def on_probe(a):\n"
        "    return a + 1.0\n"
        + ("on_probe.compile('float64(float64)')\n" if compile_at_import else "")
        + "DONE = True\n"
    )


def run_threads(target: Any) -> list[BaseException]:
    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            target()
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=guarded) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE_S)
    assert not any(t.is_alive() for t in threads)
    return errors


def test_a_module_another_thread_is_importing_is_returned_complete() -> None:
    text = probe_source("test_a_module_another_thread_is_importing_is_returned_complete", True)
    name = "_tradebus_probe_" + hashlib.blake2b(text.encode(), digest_size=10).hexdigest()
    assert name not in sys.modules
    first = threading.Thread(target=drivers.load_module, args=(text, "probe"))
    first.start()
    modules: list[Any] = []
    complete: list[bool] = []  # whether each module was fully imported when returned

    def late() -> None:
        deadline = time.monotonic() + DEADLINE_S
        while name not in sys.modules and time.monotonic() < deadline:  # the first import has begun
            pass
        module = drivers.load_module(text, "probe")
        complete.append(hasattr(module, "DONE"))
        modules.append(module)

    errors = run_threads(late)
    first.join(DEADLINE_S)
    assert errors == []
    assert complete == [True] * THREADS
    assert all(m is sys.modules[name] for m in modules)


def test_an_entry_point_asked_for_by_several_threads_is_compiled_once_and_given_to_all() -> None:
    module = drivers.load_module(probe_source("test_an_entry_point_asked_for_by_several_threads", False), "probe")
    barrier = threading.Barrier(THREADS)
    entries: list[Any] = []

    def bind() -> None:
        barrier.wait(DEADLINE_S)
        entries.append(drivers._frozen(module, "on_probe", (types.float64,)))

    errors = run_threads(bind)
    assert errors == []
    assert len(entries) == THREADS and all(e is entries[0] for e in entries)
    assert entries[0](1.5) == 2.5


def test_a_module_already_imported_is_returned_while_another_thread_holds_the_lock() -> None:
    """The event loop building a bank whose module is already imported (a restarted kernel, a daemon
    without warm-up) does not wait for another thread's compile (a minute, cold) under the lock."""
    text = probe_source("test_a_module_already_imported_is_returned_while_another_thread_holds_the_lock", False)
    module = drivers.load_module(text, "probe")
    held, release = threading.Event(), threading.Event()

    def compiling() -> None:  # stands for a warm-up thread compiling under the lock
        with drivers._LOCK:
            held.set()
            release.wait(DEADLINE_S)

    holder = threading.Thread(target=compiling)
    holder.start()
    try:
        assert held.wait(DEADLINE_S)
        got: list[Any] = []
        loader = threading.Thread(target=lambda: got.append(drivers.load_module(text, "probe")), daemon=True)
        loader.start()
        loader.join(DEADLINE_S)  # generous: returns at once unless it waits for the lock
        assert got == [module]
    finally:
        release.set()
        holder.join(DEADLINE_S)
