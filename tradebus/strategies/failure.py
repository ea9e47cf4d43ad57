"""Which strategy hook an exception escaped from: the :class:`~tradebus.errors.StrategyError` of a run.

The kernel (:meth:`~tradebus.engine.kernel.Kernel.start`, the backtest loop of
:meth:`~tradebus.engine.kernel.Kernel.run`, :meth:`~tradebus.engine.kernel.Kernel.stop`) and the
daemons' message routing catch an exception once, where they hand work to the strategies, and
ask :func:`strategy_failure` whose it is. The traceback is read only then, so nothing is paid
per event:

* the strategy is the innermost frame that *entered* a strategy: its ``self`` is a
  :class:`~tradebus.strategies.base.Strategy` and its caller's ``self`` is not the same one (a
  hook of strategy B reached through an order strategy A submitted is B's);
* the hook is the first ``on_*`` method of that strategy from there inwards (a timer enters
  through ``Strategy._fire`` and names ``on_timer``), else the entered method itself;
* the line shown is the innermost frame that is a method of that strategy or code outside
  tradebus and the Python installation (the user's line, not numpy's or the kernel's); for a
  refusal (below), the innermost frame of code outside them (the user's call that tradebus refused).

A tradebus error refusing a hook's call (:data:`REFUSALS`: an order on an unknown instrument, a
cancel of an unknown id, a history window beyond ``history_sizes``, an unknown feature name) keeps
its class, so its exit code, but its message gets the same prefix and line, as it would otherwise
not say whose hook made the call, nor when. Other tradebus errors (a journal that cannot be
written, bad data, a venue's answer) are no strategy's doing and keep their message.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import FrameType
from typing import NoReturn

import tradebus
from tradebus.engine.clock import iso_ns
from tradebus.errors import ConfigError, FeatureError, OrderError, StrategyError, TradebusError
from tradebus.strategies.base import Strategy

__all__ = ["REFUSALS", "raise_strategy_failure", "strategy_failure"]

#: Directories whose frames are not the user's line: tradebus itself and the Python installation.
_LIBRARY_DIRS = tuple(
    {str(Path(tradebus.__file__).resolve().parent), *(str(Path(p).resolve()) for p in (sys.prefix, sys.base_prefix))}
)

#: The tradebus errors that refuse a strategy's call (its message is given the strategy's prefix).
REFUSALS: tuple[type[Exception], ...] = (ConfigError, FeatureError, OrderError)
#: Attribute marking a tradebus error whose message :func:`strategy_failure` has given its strategy's prefix.
_WORDED = "_tradebus_strategy_worded"


def strategy_failure(exc: BaseException, ts_ns: int | None) -> StrategyError | None:
    """The :class:`StrategyError` for ``exc`` if it escaped from a strategy's hook, else ``None``.

    Parameters
    ----------
    exc
        The exception caught (its traceback starts at the frame that caught it).
    ts_ns
        The run's clock when it was caught (the time of the event being handled).

    Returns
    -------
    StrategyError or None
        ``None`` for a tradebus error (its message says what and where) and for an exception
        that did not pass through a strategy. The caller chains the original. One of
        :data:`REFUSALS` that passed through a strategy's hook is re-worded in place: its
        message gets the prefix and the line a :class:`StrategyError` would have (once).
    """
    if isinstance(exc, TradebusError) and not isinstance(exc, REFUSALS):
        return None
    frames: list[tuple[FrameType, int]] = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append((tb.tb_frame, tb.tb_lineno))
        tb = tb.tb_next
    owners = [_strategy_of(frame) for frame, _ in frames]
    entry = next(
        (i for i in range(len(frames) - 1, -1, -1) if owners[i] is not None and (i == 0 or owners[i - 1] is not owners[i])),
        None,
    )
    if entry is None:
        return None
    strategy = owners[entry]
    assert strategy is not None
    inside = [i for i in range(entry, len(frames)) if owners[i] is strategy]
    hook = next((frames[i][0].f_code.co_name for i in inside if frames[i][0].f_code.co_name.startswith("on_")), None)
    if hook is None:
        hook = frames[entry][0].f_code.co_name
    line = next(
        i for i in range(len(frames) - 1, entry - 1, -1) if owners[i] is strategy or _users(frames[i][0].f_code.co_filename)
    )
    if isinstance(exc, REFUSALS):  # tradebus refused a call: the user's line that made it
        line = next((i for i in range(line, entry - 1, -1) if _users(frames[i][0].f_code.co_filename)), line)
    frame, lineno = frames[line]
    when = "" if ts_ns is None else f" at {iso_ns(ts_ns)}"
    prefix = f"strategy {strategy.strategy_id!r} {hook}{when}: "
    where = f" (at {frame.f_code.co_filename}:{lineno} in {frame.f_code.co_name})"
    if isinstance(exc, REFUSALS):
        if len(exc.args) == 1 and isinstance(exc.args[0], str) and not getattr(exc, _WORDED, False):
            exc.args = (f"{prefix}{exc.args[0]}{where}",)
            setattr(exc, _WORDED, True)  # a daemon asks again on its way out
        return None
    return StrategyError(f"{prefix}{type(exc).__name__}: {exc}{where}", strategy.strategy_id, hook, ts_ns)


def raise_strategy_failure(exc: Exception, ts_ns: int | None) -> NoReturn:
    """Raise :func:`strategy_failure` of ``exc`` chained to it, or ``exc`` itself if it is none."""
    failure = strategy_failure(exc, ts_ns)
    if failure is None:
        raise exc
    raise failure from exc


def _strategy_of(frame: FrameType) -> Strategy | None:
    owner = frame.f_locals.get("self")
    return owner if isinstance(owner, Strategy) else None


def _users(filename: str) -> bool:
    """Whether a frame's file is the user's code (not tradebus, not the Python installation)."""
    if filename.startswith("<"):
        return False
    path = str(Path(filename).resolve())
    return not any(path == d or path.startswith(d + "/") for d in _LIBRARY_DIRS)
