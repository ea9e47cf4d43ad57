"""The orders a run's risk gate or account denied, told to its user: one warning per check.

A denial's reason starts with the name of the check that denied it and a colon
(``buying_power: SELL 0.1 BTCUSDT.BINANCE needs 0.1 BTC > available 0 BTC ...``,
``max_position: ...``, ``trading_state: HALTED denies every order``). Each denial is listed in
``orders.csv``, logged at DEBUG by the execution engine and, in a daemon or a replay, once at
WARNING by its decision line (``decision ... -> denied: ...``); a backtest's strategy whose every
order is denied would otherwise end its run with nothing at the default log level (WARNING) saying
why nothing traded.
:class:`DenialTally` counts the denials per check and :meth:`DenialTally.warn` logs one WARNING per
check: its count, the first one's time and its reason, so the log stays short however many
orders were denied (the checks are few).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd
from loguru import logger

from tradebus.engine.messages import OrderDenied

__all__ = ["DenialTally", "reason_label", "warn_denials"]


def reason_label(reason: str) -> str:
    """The bounded label of a denial or reject reason: its text before the first ``:`` (at most 48 chars)."""
    head = reason.partition(":")[0].strip()
    return (head or "unspecified")[:48]


@dataclass
class _Check:
    first: OrderDenied
    count: int = 1


class DenialTally:
    """The denials of a run counted per check (:func:`reason_label`), in the order each check first denied.

    Parameters
    ----------
    what
        What the warnings name as the run (``"backtest"``, ``"paper daemon"``, ``"walk-forward"``).
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self._checks: dict[str, _Check] = {}

    def add(self, denial: OrderDenied) -> None:
        """Count ``denial`` (the first of its check is kept for the warning)."""
        label = reason_label(denial.reason)
        check = self._checks.get(label)
        if check is None:
            self._checks[label] = _Check(denial)
        else:
            check.count += 1

    @property
    def total(self) -> int:
        """The denials counted."""
        return sum(c.count for c in self._checks.values())

    def warn(self) -> None:
        """Log one WARNING per check that denied an order (none denied: nothing)."""
        for label, check in self._checks.items():
            first = check.first
            logger.warning(
                "{}: {} order(s) denied by {}, the first at {} ({} {}): {}",
                self.what, check.count, label, _utc(first.ts_event), first.strategy_id, first.instrument_id, first.reason,
            )


def warn_denials(denials: Iterable[OrderDenied], what: str) -> DenialTally:
    """Log one WARNING per check that denied any of ``denials`` (:meth:`DenialTally.warn`); return the tally."""
    tally = DenialTally(what)
    for denial in denials:
        tally.add(denial)
    tally.warn()
    return tally


def _utc(ts: int) -> str:
    return pd.Timestamp(int(ts), unit="ns", tz="UTC").isoformat()
