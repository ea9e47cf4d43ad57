"""Helpers shared by the venue parsers: frame excerpts, book level arrays, time units.

* :func:`describe_frame` — a short printable excerpt of a frame for error messages.
* :func:`level_array` — decoded book levels (rows of numbers, price and size first) to the
  float64 ``(n, 2)`` array the :class:`~tradebus.adapters.common.book.OrderBook` takes,
  validated by one compiled call; a bad level raises :class:`~tradebus.errors.ParseError`
  naming the side and the row.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tradebus.adapters.common.book import first_invalid
from tradebus.errors import ParseError

__all__ = ["EMPTY_LEVELS", "MS", "describe_frame", "level_array"]

MS = 1_000_000
"""Nanoseconds per millisecond."""

EMPTY_LEVELS = np.empty((0, 2), dtype=np.float64)
"""The shared (read-only) array of a side without levels."""
EMPTY_LEVELS.setflags(write=False)


def describe_frame(raw: bytes | str, limit: int = 160) -> str:
    """A short printable excerpt of a frame for error messages."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray | memoryview) else str(raw)
    return repr(text if len(text) <= limit else text[:limit] + f"...(+{len(text) - limit} chars)")


def level_array(rows: Sequence[Sequence[float]], side: str, where: str) -> np.ndarray:
    """Book levels ``[[price, size, ...], ...]`` (numbers) as a C-contiguous float64 ``(n, 2)`` array.

    Columns after the size (OKX: order counts) are dropped.

    Raises
    ------
    ParseError
        A row has fewer than two numbers, a price is not finite and > 0, or a size is
        not finite and >= 0.
    """
    if not rows:
        return EMPTY_LEVELS
    try:
        arr = np.array(rows, dtype=np.float64)
    except ValueError:  # rows of different lengths
        arr = None
    if arr is None or arr.ndim != 2 or arr.shape[1] < 2:
        i = next((i for i, row in enumerate(rows) if len(row) < 2), 0)
        raise ParseError(f"{where}: {side}[{i}] = {list(rows[i])!r}: expected [price, size, ...]")
    if arr.shape[1] != 2:
        arr = np.ascontiguousarray(arr[:, :2])
    bad = first_invalid(arr)
    if bad >= 0:
        raise ParseError(
            f"{where}: {side}[{bad}] = {list(rows[bad])!r}: expected price > 0 and size >= 0, both finite"
        )
    return arr
