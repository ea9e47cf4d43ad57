"""Exceptions raised by tradebus.

Every error carries a message a user can act on: it names the file, row,
field or message that was wrong and what was expected.

Hierarchy::

    TradebusError
    ├── ConfigError          a run config or a parameter is invalid
    ├── DataError            a data file or a replayed row is invalid
    ├── FeatureError         a feature spec cannot be built
    ├── OrderError           an order cannot be built or a transition is invalid
    │   └── InvalidTransition
    ├── VenueError           a venue (simulated or live) answered with an error
    │   └── OrdersLeftAtVenue  a live daemon's stop or live-kill left orders open, or of unknown state, at the venue
    ├── ParseError           a market-data frame could not be parsed
    ├── BookError            an order book was given invalid levels or capacity
    └── StrategyError        a strategy's hook raised (names the strategy, the hook, the time)

A live book that loses integrity (sequence gap, checksum mismatch, crossed book)
or a feed that goes silent is not an exception: the adapter resynchronises and
publishes ``BookResynced`` / ``FeedStale`` with the reason (see
``tradebus.adapters.common.sync``), because a daemon must keep running.
"""

from __future__ import annotations

import difflib
import errno
from collections.abc import Sequence

__all__ = [
    "BookError",
    "ConfigError",
    "DataError",
    "FeatureError",
    "InvalidTransition",
    "OrderError",
    "OrdersLeftAtVenue",
    "ParseError",
    "StrategyError",
    "TradebusError",
    "VenueError",
    "describe_os_error",
    "did_you_mean",
]


class TradebusError(Exception):
    """Base class of every error raised by tradebus."""


class ConfigError(TradebusError):
    """A run config, a spec or a parameter is invalid."""


class DataError(TradebusError):
    """A data file, a catalog dataset or a replayed row is invalid."""


class FeatureError(TradebusError):
    """A feature spec is invalid (unknown kind, bad parameter, cyclic input)."""


class OrderError(TradebusError):
    """An order cannot be built (bad quantity, price, type combination)."""


class InvalidTransition(OrderError):
    """An order event does not fit the order's current state."""


class VenueError(TradebusError):
    """A venue answered with an error or could not be reached."""


class OrdersLeftAtVenue(VenueError):
    """Orders were left open, or of unknown state, at the venue by a live daemon's stop or the kill switch.

    Raised once a daemon stopping with ``live.cancel_on_stop`` has stopped whole (journal closed, outputs
    written), or once ``live-kill``'s cancel rounds have ended (journal HALTED); the message names each
    order. ``tradebus live`` and ``tradebus live-kill`` exit 4 on it.
    """


class ParseError(TradebusError):
    """A market-data frame could not be parsed into core messages."""


class BookError(TradebusError):
    """An order book was given invalid levels or an invalid capacity."""


class StrategyError(TradebusError):
    """A strategy's hook (``on_start``, ``on_bar``, ``on_timer``, ``on_stop`` ...) raised an exception.

    Raised once, where the kernel or a daemon hands work to the strategies
    (:func:`tradebus.strategies.failure.strategy_failure`), chained to the original exception.
    A tradebus error a hook raises is not wrapped: it keeps its class (so its exit code); one that
    refuses the hook's call (a history window beyond ``history_sizes``, an invalid order price,
    :data:`tradebus.strategies.failure.REFUSALS`) has its message prefixed the same way.

    Attributes
    ----------
    strategy_id
        The id of the strategy whose hook raised.
    hook
        The hook's name (``"on_bar"``).
    ts_ns
        The run's clock when it raised (ns since the epoch; the event being handled), or ``None``.
    """

    def __init__(self, message: str, strategy_id: str = "", hook: str = "", ts_ns: int | None = None) -> None:
        super().__init__(message)
        self.strategy_id = strategy_id
        self.hook = hook
        self.ts_ns = ts_ns


def describe_os_error(exc: OSError) -> str:
    """An OS error as a message names it: its errno's name and text, e.g. ``ENOSPC: No space left on device``."""
    code = errno.errorcode.get(exc.errno, str(exc.errno)) if exc.errno is not None else "OSError"
    return f"{code}: {exc.strerror or exc}"


def did_you_mean(word: str, words: Sequence[str]) -> str:
    """``", did you mean 'window'?"`` when one of ``words`` (those allowed) is close to the misspelt ``word``, else ``""``.

    Parameters
    ----------
    word
        The name given.
    words
        The names allowed where it was given.

    Returns
    -------
    str
        The suggestion, to append to the error naming ``word``.
    """
    close = difflib.get_close_matches(word, words, n=1)
    return f", did you mean {close[0]!r}?" if close else ""
