"""Exact sums of floats: totals kept over working orders as they change that equal a fresh sum bit for bit.

Every finite float is an integer multiple of ``2**-1074``: :func:`exact` gives that integer, which
adds and subtracts without rounding and in any order, and :func:`rounded` the float nearest an
exact total (Python's integer division rounds correctly), the value :func:`math.fsum` gives for the
same floats. A total the accounts and the risk gate keep as orders come, fill, change and go is
then the one summed afresh over the orders working now, whatever happened in between, and a check
costs the same with two or two thousand resting orders.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["exact", "exact_sum", "rounded"]

_ONE = 1 << 1074


def exact(x: float) -> int:
    """``x * 2**1074``, an integer (``x`` finite; ``OverflowError``/``ValueError`` for inf/NaN)."""
    n, d = x.as_integer_ratio()
    return n << (1075 - d.bit_length())


def rounded(total: int) -> float:
    """The float nearest the exact total ``total * 2**-1074`` (ties to even)."""
    return total / _ONE


def exact_sum(base: int, terms: Iterable[float]) -> float:
    """``rounded(base + sum of exact(t))``: the correctly rounded sum of an exact total and ``terms``.

    A term that is not finite makes the result what a plain float sum gives (inf, or NaN).
    """
    terms = tuple(terms)
    if not base and len(terms) <= 2:
        return 0.0 + sum(terms)  # one rounding of two floats is the correctly rounded sum
    total = base
    try:
        for term in terms:
            total += exact(term)
    except (OverflowError, ValueError):
        return rounded(base) + sum(terms)
    return total / _ONE
