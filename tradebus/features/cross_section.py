"""Cross-sectional rank and z-score of one feature across a universe of instruments.

Live, a :class:`CrossSection` receives ``update(instrument, ts, value)`` whenever an
instrument's feature changes and answers ``query(ts)`` with every instrument's rank
and z-score at ``ts``. In research, :func:`cross_section` computes the same numbers
over a wide DataFrame (one row per timestamp, one column per instrument). Both call
one compiled routine, so a live run and a batch run give bit-identical results.

Rules
-----
* **Freshness.** At query time ``ts`` an instrument takes part only if its latest
  value was updated at ``ts_u`` with ``ts - ts_u <= max_age_ns``. Otherwise (never
  updated, or stale) it is excluded from the cross-section, and its rank and
  z-score are NaN. ``max_age_ns = 0`` keeps only instruments updated at ``ts`` itself.
* **Non-finite values are not updates.** ``update(..., nan)`` is ignored, as is a NaN
  cell of the wide DataFrame (NaN there means "no update at this row"): the
  instrument keeps its previous value until that one goes stale.
* **Too few instruments.** With fewer than ``min_count`` fresh instruments (default 2)
  every rank and z-score is NaN.
* **Rank:** 1 = smallest value, ties get the average of the ranks they span
  (``scipy.stats.rankdata(method="average")``, ``DataFrame.rank(axis=1)``).
* **Z-score:** ``(v - mean) / std`` over the fresh values, ``std`` with ``ddof``
  (default 0, the population form); a constant cross-section (every value equal) gives NaN.
* **Determinism.** Instruments are processed in the order given at construction
  (the column order in batch); equal inputs give byte-identical outputs.
* **Time order.** Updates of one instrument must not go back in time, and a query
  may not be older than the latest update the object has seen (it keeps only the
  latest value per instrument, so it cannot answer for the past); both raise
  :class:`~tradebus.errors.DataError`. In batch, row ``i`` is the query at the
  row's timestamp after applying rows ``0..i``; the index must be non-decreasing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numba import njit

from tradebus.errors import DataError, FeatureError
from tradebus.features.spec_base import whole_setting

__all__ = ["CrossSection", "CrossSectionResult", "cross_section"]

_NEVER = np.iinfo(np.int64).min


@njit(cache=True)
def _xs_row(
    values: np.ndarray,
    last_ts: np.ndarray,
    ts: int,
    max_age_ns: int,
    min_count: int,
    ddof: int,
    order: np.ndarray,
    rank_out: np.ndarray,
    z_out: np.ndarray,
) -> int:
    """Rank and z-score of the fresh entries of ``values`` at ``ts``; return how many are fresh.

    ``order`` is scratch space of ``values``' length.
    """
    m = values.shape[0]
    n = 0
    for i in range(m):
        rank_out[i] = np.nan
        z_out[i] = np.nan
        if last_ts[i] != _NEVER and ts - last_ts[i] <= max_age_ns:
            order[n] = i
            n += 1
    if n < min_count:
        return n
    total = 0.0
    for k in range(n):
        total += values[order[k]]
    mean = total / n
    ss = 0.0
    for k in range(n):
        d = values[order[k]] - mean
        ss += d * d
    std = math.sqrt(ss / (n - ddof))
    fresh = np.empty(n)
    for k in range(n):
        fresh[k] = values[order[k]]
    perm = np.argsort(fresh, kind="mergesort")
    sorted_idx = np.empty(n, dtype=np.int64)
    for k in range(n):
        sorted_idx[k] = order[perm[k]]
    for k in range(n):
        order[k] = sorted_idx[k]
    k = 0
    while k < n:
        e = k
        while e + 1 < n and values[order[e + 1]] == values[order[k]]:
            e += 1
        avg = 0.5 * (k + e) + 1.0
        for t in range(k, e + 1):
            rank_out[order[t]] = avg
        k = e + 1
    # equal values can leave a rounding residue in std (three 0.1: 1.4e-17), never a z-score
    if std > 0.0 and values[order[0]] != values[order[n - 1]]:
        for k in range(n):
            i = order[k]
            z_out[i] = (values[i] - mean) / std
    return n


@njit(cache=True)
def _xs_batch(
    wide: np.ndarray,
    ts: np.ndarray,
    max_age_ns: int,
    min_count: int,
    ddof: int,
    ranks: np.ndarray,
    zscores: np.ndarray,
) -> None:
    n_rows, m = wide.shape
    values = np.zeros(m)
    last_ts = np.full(m, _NEVER, dtype=np.int64)
    order = np.zeros(m, dtype=np.int64)
    for r in range(n_rows):
        for i in range(m):
            v = wide[r, i]
            if math.isfinite(v):
                values[i] = v
                last_ts[i] = ts[r]
        _xs_row(values, last_ts, ts[r], max_age_ns, min_count, ddof, order, ranks[r], zscores[r])


def _check_settings(max_age_ns: int, min_count: int, ddof: int) -> tuple[int, int, int]:
    age = whole_setting("cross-section", "max_age_ns (nanoseconds)", max_age_ns, 0)
    if ddof not in (0, 1):
        raise FeatureError(f"cross-section: ddof must be 0 or 1, got {ddof!r}")
    return age, whole_setting("cross-section", "min_count", min_count, max(1, ddof + 1)), int(ddof)


@dataclass(frozen=True)
class CrossSectionResult:
    """Ranks and z-scores of every instrument at one timestamp.

    Attributes
    ----------
    ts
        Query time, int64 ns.
    instruments
        Instrument ids, in the order of ``rank`` and ``zscore``.
    rank, zscore
        float64 arrays; NaN for an instrument that is not fresh at ``ts``.
    count
        Number of fresh instruments at ``ts`` (below ``min_count`` every output is NaN).
    """

    ts: int
    instruments: tuple[str, ...]
    rank: np.ndarray
    zscore: np.ndarray
    count: int

    def rank_of(self, instrument: str) -> float:
        """Rank of ``instrument`` (NaN when excluded)."""
        return float(self.rank[self._index(instrument)])

    def zscore_of(self, instrument: str) -> float:
        """Z-score of ``instrument`` (NaN when excluded)."""
        return float(self.zscore[self._index(instrument)])

    def _index(self, instrument: str) -> int:
        try:
            return self.instruments.index(instrument)
        except ValueError:
            raise FeatureError(f"cross-section: unknown instrument {instrument!r}") from None


class CrossSection:
    """Live cross-section of one feature over a fixed universe (see the module docstring for the rules).

    Parameters
    ----------
    instruments
        The universe, in output order; ids must be unique.
    max_age_ns
        A value older than this at query time is excluded.
    min_count
        Minimum number of fresh instruments for any output.
    ddof
        Delta degrees of freedom of the z-score's standard deviation (0 or 1).

    Examples
    --------
    >>> xs = CrossSection(["BTCUSDT.BINANCE", "ETHUSDT.BINANCE"], max_age_ns=60_000_000_000)
    >>> xs.update("BTCUSDT.BINANCE", 1_000, 0.5)
    >>> xs.update("ETHUSDT.BINANCE", 1_000, -0.2)
    >>> xs.query(1_000).rank_of("BTCUSDT.BINANCE")
    2.0
    """

    def __init__(self, instruments: Sequence[str], max_age_ns: int, *, min_count: int = 2, ddof: int = 0) -> None:
        ids = tuple(instruments)
        if not ids:
            raise FeatureError("cross-section: the universe of instruments is empty")
        if len(set(ids)) != len(ids):
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            raise FeatureError(f"cross-section: duplicate instruments {dupes}")
        self._max_age, self._min_count, self._ddof = _check_settings(max_age_ns, min_count, ddof)
        self._ids = ids
        self._index = {inst: i for i, inst in enumerate(ids)}
        self._values = np.zeros(len(ids))
        self._last_ts = np.full(len(ids), _NEVER, dtype=np.int64)
        self._order = np.zeros(len(ids), dtype=np.int64)
        self._latest = _NEVER

    @property
    def instruments(self) -> tuple[str, ...]:
        """The universe, in output order."""
        return self._ids

    def update(self, instrument: str, ts: int, value: float) -> None:
        """Record ``instrument``'s feature ``value`` at ``ts`` (int64 ns); non-finite values are ignored.

        Raises
        ------
        FeatureError
            ``instrument`` is not in the universe.
        DataError
            ``ts`` is older than this instrument's previous update.
        """
        try:
            i = self._index[instrument]
        except KeyError:
            raise FeatureError(f"cross-section: instrument {instrument!r} is not in the universe") from None
        v = float(value)
        if not math.isfinite(v):
            return
        t = int(ts)
        if t < self._last_ts[i]:
            raise DataError(
                f"cross-section: update of {instrument!r} at ts={t} is older than "
                f"its previous update at ts={self._last_ts[i]}"
            )
        self._values[i] = v
        self._last_ts[i] = t
        if t > self._latest:
            self._latest = t

    def query(self, ts: int) -> CrossSectionResult:
        """Ranks and z-scores at ``ts`` (int64 ns) over the instruments fresh at ``ts``.

        Raises
        ------
        DataError
            ``ts`` is older than the latest update seen.
        """
        t = int(ts)
        if t < self._latest:
            raise DataError(
                f"cross-section: query at ts={t} is older than the latest update at ts={self._latest}; "
                "only the latest value per instrument is kept"
            )
        rank = np.empty(len(self._ids))
        z = np.empty(len(self._ids))
        n = _xs_row(self._values, self._last_ts, t, self._max_age, self._min_count, self._ddof, self._order, rank, z)
        return CrossSectionResult(ts=t, instruments=self._ids, rank=rank, zscore=z, count=int(n))


def _index_ns(index: pd.Index) -> np.ndarray:
    if isinstance(index, pd.DatetimeIndex):
        return np.asarray(index.as_unit("ns").asi8, dtype=np.int64)
    if pd.api.types.is_integer_dtype(index.dtype):
        return np.asarray(index, dtype=np.int64)
    raise DataError(
        f"cross_section: the index must be a DatetimeIndex or int64 nanoseconds, got dtype {index.dtype}"
    )


def cross_section(
    values: pd.DataFrame, max_age_ns: int, *, min_count: int = 2, ddof: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Batch cross-sectional rank and z-score of a wide feature frame.

    Parameters
    ----------
    values
        One row per timestamp (``DatetimeIndex`` or int64 ns index, non-decreasing),
        one column per instrument; a NaN cell means "no update in this row".
    max_age_ns, min_count, ddof
        As for :class:`CrossSection`.

    Returns
    -------
    rank, zscore
        Frames shaped like ``values``. Row ``i`` equals ``CrossSection.query(ts_i)``
        after the updates of rows ``0..i`` (bit for bit).

    Raises
    ------
    DataError
        Bad index (type, order) or non-numeric columns.
    FeatureError
        Bad settings or duplicate columns.
    """
    age, mc, dd = _check_settings(max_age_ns, min_count, ddof)
    if values.columns.has_duplicates:
        dupes = sorted(set(values.columns[values.columns.duplicated()]))
        raise FeatureError(f"cross_section: duplicate instrument columns {dupes}")
    ts = _index_ns(values.index)
    if ts.size > 1 and np.any(np.diff(ts) < 0):
        row = int(np.argmax(np.diff(ts) < 0)) + 1
        raise DataError(
            f"cross_section: the index must be non-decreasing; row {row} ({values.index[row]}) goes back in time"
        )
    try:
        wide = np.ascontiguousarray(values.to_numpy(dtype=np.float64, na_value=np.nan))
    except (TypeError, ValueError) as exc:
        raise DataError(f"cross_section: every column must be numeric ({exc})") from None
    ranks = np.empty_like(wide)
    zscores = np.empty_like(wide)
    _xs_batch(wide, ts, age, mc, dd, ranks, zscores)
    return (
        pd.DataFrame(ranks, index=values.index, columns=values.columns),
        pd.DataFrame(zscores, index=values.index, columns=values.columns),
    )
