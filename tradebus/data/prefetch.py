"""Read-ahead: run an iterator one step ahead of its consumer in a background thread.

A replay spends a tenth of a backtest decoding Parquet (zstd and column decoding in C++,
which releases the GIL). Reading the next chunk while the kernel works through the current
one puts that time on a second core. :func:`prefetched` yields exactly the items of the
source, in order; an exception the source raises is raised to the consumer at the same
position, after the items before it. Closing the consumer (or dropping it) stops the thread
and closes the source.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

__all__ = ["prefetched"]

T = TypeVar("T")

_END = object()


class _Raised:
    """The exception the source raised, queued in place of an item."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def prefetched(source: Iterator[T], depth: int = 1, name: str = "tradebus-prefetch") -> Iterator[T]:
    """Yield the items of ``source``, produced in a daemon thread at most ``depth + 1`` items ahead.

    Parameters
    ----------
    source
        The iterator to read ahead (a generator is closed in its thread when the consumer stops).
    depth
        Items held ready in the queue; the thread may be producing one more.
    name
        The thread's name.

    Raises
    ------
    ValueError
        If ``depth`` is below 1.
    Exception
        Whatever ``source`` raised, once the items before it were yielded.
    """
    if depth < 1:
        raise ValueError(f"prefetch depth must be >= 1, got {depth}")
    return _consume(source, depth, name)


def _consume(source: Iterator[T], depth: int, name: str) -> Iterator[T]:
    items: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in source:
                items.put(item)
                if stop.is_set():
                    return
            items.put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            items.put(_Raised(exc))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is _END:
                return
            if type(item) is _Raised:
                raise item.exc  # type: ignore[attr-defined]
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        while thread.is_alive():  # make room for a put the thread is blocked in
            try:
                items.get_nowait()
            except queue.Empty:
                thread.join(0.01)
