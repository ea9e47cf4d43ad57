"""Book levels parsed straight from the raw JSON text of a message (compiled, no Python objects).

A diff-depth message carries dozens of ``["price","size"]`` string pairs; decoding
them into Python floats and tuples and then into an array costs more than the rest of
the message. :func:`raw_pair_levels` takes the undecoded text of both sides (a
``msgspec.Raw``) and parses them in one compiled pass into the ``(n, 2)`` float64
arrays the book uses.

The pass accepts only the plain form venues send: ``[`` rows ``]`` without
whitespace, each row ``["<decimal>","<decimal>"]`` (quotes optional), a decimal being
``-?digits[.digits]`` with at most 15 significant digits in all and at most 22 after
the point. For those, ``mantissa / 10**fraction_digits`` with both operands exact in
float64 is the correctly rounded value (Clinger's fast path), so every number equals
``float(text)`` bit for bit. Anything else (exponents, long mantissas, whitespace,
non-numbers, a non-positive price, a negative size) makes it return ``None``: the
caller then decodes the levels with its typed decoder, which yields the same numbers
or the error naming the level.
"""

from __future__ import annotations

import msgspec
import numpy as np
from numba import njit

__all__ = ["raw_pair_levels", "warm_up"]

_POW10 = np.array([10.0**k for k in range(23)])


@njit(cache=True, inline="always")
def _number(buf: np.ndarray, i: int) -> tuple[float, int]:
    """Parse the decimal starting at ``buf[i]``; returns ``(value, next index)``, next index -1 if malformed."""
    n = len(buf)
    quoted = i < n and buf[i] == 34  # '"'
    if quoted:
        i += 1
    negative = i < n and buf[i] == 45  # '-'
    if negative:
        i += 1
    mantissa = 0
    digits = 0
    frac = 0
    seen_point = False
    start = i
    while i < n:
        c = buf[i]
        if 48 <= c <= 57:
            if mantissa > 0 or c != 48:
                digits += 1
            mantissa = mantissa * 10 + (c - 48)
            if seen_point:
                frac += 1
            if digits > 15 or frac > 22:
                return 0.0, -1
        elif c == 46 and not seen_point:  # '.'
            seen_point = True
        else:
            break
        i += 1
    if i == start or buf[start] == 46 or buf[i - 1] == 46:
        return 0.0, -1  # empty, or a leading or trailing '.'
    if buf[start] == 48 and i > start + 1 and buf[start + 1] != 46:
        return 0.0, -1  # a leading zero before other digits
    if quoted:
        if i >= n or buf[i] != 34:
            return 0.0, -1
        i += 1
    value = mantissa / _POW10[frac]
    return (-value if negative else value), i


@njit(cache=True)
def _side(buf: np.ndarray, out: np.ndarray, row: int) -> int:
    """Parse ``[[p,s],...]`` from ``buf`` into ``out`` from ``row`` on; returns the next row, or -1."""
    n = len(buf)
    if n < 2 or buf[0] != 91 or buf[n - 1] != 93:  # '[' ... ']'
        return -1
    i = 1
    if n == 2:
        return row
    while True:
        if row >= out.shape[0] or buf[i] != 91:
            return -1
        price, i = _number(buf, i + 1)
        if i < 0 or i >= n or buf[i] != 44 or not price > 0.0:  # ','
            return -1
        size, i = _number(buf, i + 1)
        if i < 0 or i >= n or buf[i] != 93 or not size >= 0.0:
            return -1
        out[row, 0] = price
        out[row, 1] = size
        row += 1
        i += 1
        if i == n - 1:
            return row
        if buf[i] != 44:
            return -1
        i += 1


@njit(cache=True)
def _parse(bids: np.ndarray, asks: np.ndarray, out: np.ndarray) -> int:
    """Rows of both sides into ``out``; returns ``rows_of_bids << 32 | all_rows``, or -1.

    ``bids`` and ``asks`` are any contiguous byte buffers (``msgspec.Raw``, ``bytes``):
    Numba reads them in place, without a NumPy view per call.
    """
    nb = _side(bids, out, 0)
    if nb < 0:
        return -1
    n = _side(asks, out, nb)
    if n < 0:
        return -1
    return (nb << 32) | n


def raw_pair_levels(bids: bytes | memoryview, asks: bytes | memoryview) -> tuple[np.ndarray, np.ndarray] | None:
    """Both sides from their raw JSON text (``msgspec.Raw`` or bytes), or ``None`` if not in the plain form.

    Returns
    -------
    tuple of numpy.ndarray or None
        ``(bids, asks)``, each ``(n, 2)`` float64 (price, size) and C-contiguous, with
        every price > 0 and every size >= 0; ``None`` when the text is not the plain
        form described in the module docstring (the caller decodes it the typed way).
    """
    # a row takes at least 5 bytes ("[1,1]") plus a separator
    out = np.empty(((len(bids) + len(asks)) // 6 + 1, 2))
    code = _parse(bids, asks, out)
    if code < 0:
        return None
    nb = code >> 32
    return out[:nb], out[nb : code & 0xFFFFFFFF]


def warm_up() -> None:
    """Compile (or load from the on-disk cache) the parser for the buffers the live path gives it.

    A parser hands it the ``msgspec.Raw`` sides of a decoded frame, read-only buffers: a
    specialisation of their own (``bytes`` is another), compiled otherwise at a daemon's first
    depth message, on its event loop. Called by :func:`tradebus.adapters.common.book.warm_up`.
    """
    raw_pair_levels(msgspec.Raw(b'[["100.5","1"]]'), msgspec.Raw(b"[]"))
