"""Batch feature computation over a DataFrame with the live kernels.

:func:`compute_features` builds a fresh :class:`~tradebus.features.bank.FeatureBank`
and feeds the whole frame through its batch runner, which walks the same plan
with the same compiled kernels as the live ``update_*`` calls: the result equals,
bit for bit, what a live bank shows after each row. Research datasets built
with it therefore carry exactly the features a strategy sees live.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from tradebus.errors import FeatureError
from tradebus.features.bank import FeatureBank
from tradebus.features.spec import BOOK_LEVELS, EVENT_FIELDS, FeatureSpec

__all__ = ["compute_features"]

_COLUMNS = {
    "bar": ("open", "high", "low", "close", "volume"),
    "trade": ("price", "size", "side"),
    "quote": ("bid", "ask", "bid_size", "ask_size"),
}


def _timestamps(df: pd.DataFrame) -> np.ndarray:
    """``ts_event`` in int64 ns from a ``ts_event`` column or a DatetimeIndex; zeros if neither."""
    if "ts_event" in df.columns:
        col = df["ts_event"]
        if isinstance(col.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(col.dtype):
            return pd.DatetimeIndex(col).as_unit("ns").asi8.copy()
        if not pd.api.types.is_integer_dtype(col.dtype):
            raise FeatureError(f"column 'ts_event' must be int64 nanoseconds or datetimes, got {col.dtype}")
        return col.to_numpy(dtype=np.int64)
    if isinstance(df.index, pd.DatetimeIndex):
        return df.index.as_unit("ns").asi8.copy()
    return np.zeros(len(df), dtype=np.int64)


def compute_features(
    df: pd.DataFrame,
    specs: Iterable[FeatureSpec | Mapping[str, Any]] | Mapping[str, Any],
    event: str | None = None,
) -> pd.DataFrame:
    """Compute features over every row of ``df`` as one stream of events of one type.

    Parameters
    ----------
    df
        One event per row, in time order. Columns named after the event fields
        (bar: open, high, low, close, volume; trade: price, size, side; quote: bid,
        ask, bid_size, ask_size; book: bid_px_0.. / bid_sz_0.. / ask_px_0.. /
        ask_sz_0..; a frame of ``k`` levels gives a book of ``k`` levels, the deeper ones
        absent). A missing column is NaN. ``time`` comes from an int64-ns (or
        datetime) ``ts_event`` column, else from a DatetimeIndex.
    specs
        Feature specs (models or dicts).
    event
        Event type of the rows; inferred when every feature is driven by one type.

    Returns
    -------
    pandas.DataFrame
        Same index as ``df``; one column per output (``name`` for single-output
        features, ``name.output`` otherwise), equal bit for bit to a live bank's
        values after each row.

    Raises
    ------
    FeatureError
        Invalid specs, features driven by several event types without ``event``,
        a field column a feature reads is missing or not numeric (a trade ``side``
        of ``'buy'``/``'sell'`` rather than 1/-1), or a feature reads ``time``
        (``session_vwap``) and the frame has no times.
    """
    bank = FeatureBank(specs)
    driving = sorted({bank.event_of(name) for name in bank.names})
    if event is None:
        if len(driving) > 1:
            raise FeatureError(f"features are driven by several event types {driving}; pass event=")
        event = driving[0] if driving else "bar"
    if event not in EVENT_FIELDS:
        raise FeatureError(f"unknown event type {event!r}; expected one of {list(EVENT_FIELDS)}")
    n = len(df)
    missing = _missing_read_fields(bank, event, df)
    if missing:
        raise FeatureError(f"compute_features: column(s) {missing} needed by the features are missing from the frame")
    timeless = "ts_event" not in df.columns and not isinstance(df.index, pd.DatetimeIndex)
    if timeless and (readers := _readers(bank, f"{event}.time")):
        raise FeatureError(
            f"compute_features: feature(s) {readers} read the event time, but the frame has neither a "
            "'ts_event' column nor a DatetimeIndex"
        )
    ts = _timestamps(df)

    def column(name: str) -> np.ndarray:
        if name not in df.columns:
            return np.full(n, np.nan)
        try:
            return df[name].to_numpy(dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise FeatureError(f"compute_features: column {name!r} ({df[name].dtype}) is not numeric: {exc}") from None

    if event == "book":
        sides = [
            np.column_stack([column(f"{side}_{i}") for i in range(BOOK_LEVELS)])
            if n
            else np.empty((0, BOOK_LEVELS))
            for side in ("bid_px", "bid_sz", "ask_px", "ask_sz")
        ]
        out = bank.run_books(ts, *sides)
    else:
        cols = [column(name) for name in _COLUMNS[event]]
        runner = {"bar": bank.run_bars, "trade": bank.run_trades, "quote": _run_sane_quotes(bank)}[event]
        out = runner(ts, *cols)
    return pd.DataFrame(out, index=df.index, columns=list(bank.columns))


def _run_sane_quotes(bank: FeatureBank) -> Any:
    """``bank.run_quotes`` skipping the locked or crossed quotes (bid >= ask), as a live run does.

    :meth:`Kernel._process_quote <tradebus.engine.kernel.Kernel._process_quote>` updates no feature with such a
    quote (its mid is no price the market could trade at, and its spread is not positive), so a feature keeps the
    values of the last quote before it: here its row holds the row before it (the bank's starting values for a
    leading one). A quote with a side missing (NaN) is fed, as live.
    """

    def run(ts: np.ndarray, bid: np.ndarray, ask: np.ndarray, bid_size: np.ndarray, ask_size: np.ndarray) -> np.ndarray:
        sane = ~(bid >= ask)
        if sane.all():
            return bank.run_quotes(ts, bid, ask, bid_size, ask_size)
        start = bank.values[[bank.slot(name) for name in bank.columns]]
        fed = bank.run_quotes(ts[sane], bid[sane], ask[sane], bid_size[sane], ask_size[sane])
        last_fed = np.cumsum(sane) - 1  # the row of ``fed`` each row shows (-1: none yet)
        out = np.empty((ts.shape[0], start.shape[0]), dtype=np.float64)
        out[:] = start
        shown = last_fed >= 0
        out[shown] = fed[last_fed[shown]]
        return out

    return run


def _readers(bank: FeatureBank, field: str) -> list[str]:
    """Features of ``bank`` that read the event field ``field`` (``bar.time``) directly."""
    slot = bank.slot(field)
    return [name for name in bank.names if slot in bank.input_slots(name)]


def _missing_read_fields(bank: FeatureBank, event: str, df: pd.DataFrame) -> list[str]:
    """Fields of ``event`` (other than derived ones) that a feature reads but ``df`` lacks.

    A book frame of ``k`` levels (``bid_px_0`` .. ``bid_px_{k-1}``, and so on) is a book of ``k``
    levels: its deeper levels are absent (NaN), as in a live book that holds fewer levels. A level
    column is missing only when its group has no column at all or a shallower level is skipped.
    """
    derived = {"time", "mid"} | ({"bid", "ask", "bid_size", "ask_size"} if event == "book" else set())
    needed = set()
    for name in bank.names:
        slots = set(bank.input_slots(name))
        for field in EVENT_FIELDS[event]:
            if field not in derived and bank.slot(f"{event}.{field}") in slots:
                needed.add(field)
    absent = set()
    if event == "book":
        for group in ("bid_px", "bid_sz", "ask_px", "ask_sz"):
            depth = next(i for i in range(BOOK_LEVELS + 1) if f"{group}_{i}" not in df.columns)
            deeper = [f"{group}_{i}" for i in range(depth, BOOK_LEVELS)]
            if depth and not any(c in df.columns for c in deeper):
                absent.update(deeper)
    return sorted(f for f in needed if f not in df.columns and f not in absent)
