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
from typing import Generic, TypeVar

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

    The thread starts at once, so several sources asked for in turn read their first items
    side by side. Closing the returned iterator (or dropping it, started or not) stops the
    thread and closes ``source``.

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
    return _Prefetched(source, depth, name)


def _produce(source: Iterator[object], items: queue.Queue[object], stop: threading.Event) -> None:
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


class _Prefetched(Generic[T]):
    """The consumer's side of :func:`prefetched` (the thread holds no reference to it, so dropping it closes it)."""

    __slots__ = ("_done", "_items", "_stop", "_thread")

    def __init__(self, source: Iterator[T], depth: int, name: str) -> None:
        self._items: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=_produce, args=(source, self._items, self._stop), name=name, daemon=True)
        self._thread.start()

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        item = self._items.get()
        if item is _END:
            self.close()
            raise StopIteration
        if type(item) is _Raised:
            self.close()
            raise item.exc  # type: ignore[attr-defined]
        return item  # type: ignore[return-value]

    def close(self) -> None:
        """Stop the thread (the source is closed in it) and wait for it to end."""
        if not hasattr(self, "_thread"):
            return  # the thread never started
        self._done = True
        self._stop.set()
        thread, items = self._thread, self._items
        while thread.is_alive():  # make room for a put the thread is blocked in
            try:
                items.get_nowait()
            except queue.Empty:
                thread.join(0.01)

    def __del__(self) -> None:
        self.close()
