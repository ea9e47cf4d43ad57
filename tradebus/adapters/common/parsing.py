"""Helpers shared by the venue parsers: the frame error, frame excerpts, book level arrays, time units.

Every venue validates a frame the same way: its ``schemas.py`` declares msgspec Structs
(constrained types where a value can be checked declaratively), its ``parse.py`` decodes
frames with them and checks what a schema cannot say (OHLC order, sequence ids) by
raising :class:`FieldError`. Whatever fails — malformed JSON, a missing or mistyped field,
an impossible value — the parser turns it into one :class:`FrameError` with
:func:`frame_error`, whose message has one shape for every venue::

    <venue> <channel> frame rejected: <field>: <problem> (frame '<excerpt>')

(``Binance btcusdt@trade frame rejected: data.p: Expected `float`, got `str` (frame '...')``).
A rejected frame is never applied to a book.

* :data:`Millis`, :data:`SequenceId` — the schema types of venue times and sequence ids, so a
  time or id no message can hold is refused by the decoder, naming its field.
* :func:`describe_frame` — a short printable excerpt of a frame for error messages.
* :func:`level_array` — decoded book levels (rows of numbers, price and size first) to the
  float64 ``(n, 2)`` array the :class:`~tradebus.adapters.common.book.OrderBook` takes,
  validated by one compiled call; a bad level raises :class:`~tradebus.errors.ParseError`
  naming the side and the row.
* :class:`FundingRateCheck` — refuses a funding rate no venue sends (beyond
  :data:`~tradebus.engine.perpetuals.MAX_FUNDING_RATE`) and no more: the frame's mark price,
  index and quote are used; one WARNING per instrument while its rate stays refused.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from itertools import chain
from typing import Annotated

import msgspec
import numpy as np
from loguru import logger

from tradebus.adapters.common.book import first_invalid
from tradebus.engine.perpetuals import funding_rate_problem
from tradebus.errors import ParseError

__all__ = [
    "EMPTY_LEVELS",
    "MAX_MILLIS",
    "MS",
    "WHOLE_FRAME",
    "FieldError",
    "FrameError",
    "FundingRateCheck",
    "Millis",
    "SequenceId",
    "describe_frame",
    "frame_error",
    "level_array",
    "pair_levels",
]

MS = 1_000_000
"""Nanoseconds per millisecond."""

MAX_MILLIS = 4_102_444_800_000
"""2100-01-01 UTC in ms: the venue times a frame may carry are below it (the importer's ceiling too).

Times become int64 nanoseconds (``ms * MS``); a larger value would not fit, or fit only as
a time no venue sends.
"""

Millis = Annotated[int, msgspec.Meta(ge=0, lt=MAX_MILLIS)]
"""A venue time in ms since the epoch, as a schema field: negative or later than :data:`MAX_MILLIS` is refused."""

SequenceId = Annotated[int, msgspec.Meta(ge=-1, le=2**63 - 1)]
"""A venue sequence or update id as a schema field: an int64 (the rules compare ids in compiled code), -1 for none."""

EMPTY_LEVELS = np.empty((0, 2), dtype=np.float64)
"""The shared (read-only) array of a side without levels."""
EMPTY_LEVELS.setflags(write=False)


WHOLE_FRAME = "(frame)"
"""The ``field`` of a :class:`FrameError` that is not about one field (malformed JSON, unknown shape)."""

_AT = re.compile(r" - at `\$(.*)`$")


class FieldError(ParseError):
    """One field of a decoded frame holds an impossible value (raised inside a venue parser).

    Parameters
    ----------
    field
        The field's path in the frame, as in the venue's JSON (``"data.p"``, ``"b[1]"``).
    problem
        What is wrong with it, starting with the value (``"-1.0: expected price > 0"``).
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class FrameError(ParseError):
    """A market-data frame rejected by a venue parser; the one error type all venues raise.

    Attributes
    ----------
    venue
        ``"Binance"``, ``"Bybit"`` or ``"OKX"``.
    channel
        The stream, topic or channel of the frame (``"btcusdt@depth@100ms"``,
        ``"orderbook.200.BTCUSDT"``, ``"books"``); empty when the frame is too broken to tell.
    field
        Path of the offending field (``"data.p"``, ``"data[0].bids[3]"``) or :data:`WHOLE_FRAME`.
    problem
        What is wrong.
    """

    def __init__(self, venue: str, channel: str, field: str, problem: str, raw: bytes | str) -> None:
        self.venue = venue
        self.channel = channel
        self.field = field
        self.problem = problem
        where = f"{venue} {channel}" if channel else venue
        super().__init__(f"{where} frame rejected: {field}: {problem} (frame {describe_frame(raw)})")


class FundingRateCheck:
    """Refuses implausible funding rates of one venue feed, warning once per instrument while they last.

    A rate beyond :data:`~tradebus.engine.perpetuals.MAX_FUNDING_RATE` (or not finite) is no rate
    any venue sends; the frame carrying it (a Binance ``markPriceUpdate``, a Bybit ticker) still
    carries a good mark price, index and quote, which are used: only the rate is dropped. The first
    refused rate of an instrument is logged at WARNING (venue, instrument, rate); the following ones
    are counted in :attr:`refused` until a plausible rate comes (logged at INFO with the count), so a
    venue sending one for hours logs it once, not once a frame.

    Parameters
    ----------
    venue
        The feed as named in the log (``"binance usdm"``, ``"bybit linear"``, ``"okx"``).

    Attributes
    ----------
    refused
        Rates refused per instrument id since its last plausible rate (absent: none).
    """

    def __init__(self, venue: str) -> None:
        self.venue = venue
        self.refused: Counter[str] = Counter()

    def accept(self, instrument_id: str, rate: float) -> bool:
        """``True`` if ``rate`` is a plausible funding rate of ``instrument_id``; else log (once) and ``False``."""
        problem = funding_rate_problem(rate)
        refused = self.refused
        if problem is None:
            if instrument_id in refused:
                logger.info(
                    "{} {}: funding rate {} plausible again, {} implausible rate(s) refused before it",
                    self.venue, instrument_id, rate, refused.pop(instrument_id),
                )
            return True
        if instrument_id not in refused:
            logger.warning(
                "{} {}: funding rate {} refused: it {}; the mark price and the rest of its frame are used, the rate "
                "is not, and further such rates of {} are refused silently until a plausible one comes",
                self.venue, instrument_id, rate, problem, instrument_id,
            )
        refused[instrument_id] += 1
        return False


def frame_error(venue: str, channel: str, raw: bytes | str, exc: Exception, prefix: str = "") -> FrameError:
    """The :class:`FrameError` for ``exc``, raised while parsing ``raw`` of ``venue``'s ``channel``.

    Parameters
    ----------
    venue, channel
        Name the frame in the message.
    raw
        The frame as received (an excerpt goes into the message).
    exc
        A ``msgspec.ValidationError`` (the field is taken from its ``$.path``), a
        ``msgspec.DecodeError`` (the whole frame), a :class:`FieldError` (its field) or
        another :class:`~tradebus.errors.ParseError` (the whole frame).
    prefix
        Path of the part of the frame the error's field is relative to (OKX decodes
        ``data`` apart from the envelope: ``prefix="data"``; a book level of Binance's
        depth diff: ``prefix="data"``).
    """
    if isinstance(exc, FrameError):
        return exc
    field, problem = "", str(exc)
    if isinstance(exc, FieldError):
        field, problem = exc.field, exc.problem
    elif isinstance(exc, msgspec.ValidationError):
        at = _AT.search(problem)
        if at is not None:
            field, problem = at.group(1).lstrip("."), problem[: at.start()]
    elif not isinstance(exc, ParseError | msgspec.DecodeError):
        raise TypeError(f"frame_error: not a frame error: {exc!r}")
    if prefix:
        field = prefix + field if field.startswith("[") or not field else f"{prefix}.{field}"
    return FrameError(venue, channel, field or WHOLE_FRAME, problem, raw)


def describe_frame(raw: bytes | str, limit: int = 160) -> str:
    """A short printable excerpt of a frame for error messages."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray | memoryview) else str(raw)
    return repr(text if len(text) <= limit else text[:limit] + f"...(+{len(text) - limit} chars)")


def level_array(rows: Sequence[Sequence[float]], side: str) -> np.ndarray:
    """Book levels ``[[price, size, ...], ...]`` (numbers) as a C-contiguous float64 ``(n, 2)`` array.

    Columns after the size (OKX: order counts) are dropped.

    Raises
    ------
    FieldError
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
        raise FieldError(f"{side}[{i}]", f"{list(rows[i])!r}: expected [price, size, ...]")
    if arr.shape[1] != 2:
        arr = np.ascontiguousarray(arr[:, :2])
    bad = first_invalid(arr)
    if bad >= 0:
        raise FieldError(f"{side}[{bad}]", f"{list(rows[bad])!r}: expected price > 0 and size >= 0, both finite")
    return arr


def pair_levels(
    bids: Sequence[tuple[float, float]], asks: Sequence[tuple[float, float]], names: tuple[str, str]
) -> tuple[np.ndarray, np.ndarray]:
    """Both sides of a book message whose rows are exactly ``(price, size)`` pairs, as ``(n, 2)`` arrays.

    For decoder schemas of ``tuple[float, float]`` levels (the schema guarantees the
    pairs): both sides are flattened into one float64 array in a single pass and
    checked in one compiled call, without NumPy's shape discovery over nested
    sequences; the two results are row views of it (C-contiguous). ``names`` name the
    sides in errors.

    Raises
    ------
    FieldError
        A price is not finite and > 0, or a size is not finite and >= 0.
    """
    nb = len(bids)
    n = nb + len(asks)
    if n == 0:
        return EMPTY_LEVELS, EMPTY_LEVELS
    arr = np.fromiter(chain(chain.from_iterable(bids), chain.from_iterable(asks)), np.float64, 2 * n).reshape(n, 2)
    bad = first_invalid(arr)
    if bad >= 0:
        side, rows, i = (names[0], bids, bad) if bad < nb else (names[1], asks, bad - nb)
        raise FieldError(f"{side}[{i}]", f"{list(rows[i])!r}: expected price > 0 and size >= 0, both finite")
    return arr[:nb], arr[nb:]
