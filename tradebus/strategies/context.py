"""What a strategy sees of the run: a narrow context instead of the kernel.

A strategy reaches the run only through a :class:`StrategyContext`: the clock, the
instruments, read access to the portfolio, orders, cache and feature banks, the
order commands (submit, cancel, modify, each through the risk gate), the order book
and the history windows of its instruments. The kernel builds one
:class:`KernelContext` per run and hands it to every strategy
(:meth:`~tradebus.strategies.base.Strategy.bind`); a test or another runner may
hand in anything with the same attributes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from tradebus.errors import ConfigError

if TYPE_CHECKING:
    from tradebus.engine.bus import MessageBus
    from tradebus.engine.cache import BookView, Cache, FeatureView
    from tradebus.engine.clock import Clock
    from tradebus.engine.history import History
    from tradebus.engine.instrument import Instrument
    from tradebus.engine.messages import CancelOrder, ModifyOrder, SubmitOrder, TradingState
    from tradebus.engine.portfolio import Portfolio
    from tradebus.execution.contingent import ContingentOrders
    from tradebus.execution.orders import OrderManager
    from tradebus.features.bank import FeatureBank

__all__ = ["KernelContext", "StrategyContext"]


class StrategyContext(Protocol):
    """The run as a strategy sees it (clock, orders, portfolio, features, book, history)."""

    clock: Clock
    instruments: Mapping[str, Instrument]
    portfolio: Portfolio
    orders: OrderManager
    cache: Cache
    banks: Mapping[str, FeatureBank]
    #: The run's bus, to subscribe to messages beyond the ``on_*`` handlers (e.g. book deltas).
    bus: MessageBus
    #: Whether the run joins markets already trading (paper/live and their playback; a backtest
    #: starts with its data): the first bar a strategy builds from trades would be partial.
    joins_mid_stream: bool

    def submit(self, cmd: SubmitOrder) -> None:
        """Send a new order through the risk gate to the venue."""

    def cancel(self, cmd: CancelOrder) -> None:
        """Cancel a working order (only the strategy's own; another's is denied)."""

    def modify(self, cmd: ModifyOrder) -> None:
        """Modify a working order (only the strategy's own; another's is denied)."""

    def equity(self) -> float:
        """Portfolio equity at the latest prices."""

    def position(self, strategy_id: str, instrument_id: str) -> float:
        """The strategy's position (its own fills' net where several strategies trade the instrument)."""

    def trading_state(self) -> TradingState:
        """The risk gate's trading state as an order submitted now would meet it."""

    def reducing_room(self, instrument_id: str, buy: bool) -> float:
        """How much a new order on that side may fill while REDUCING (:meth:`RiskGate.reducing_room
        <tradebus.risk.gate.RiskGate.reducing_room>`)."""

    def features(self, instrument_id: str) -> FeatureView:
        """The instrument's current feature values."""

    def book(self, instrument_id: str) -> BookView | None:
        """The instrument's L2 book (``None`` where the run keeps none)."""

    def history(self, instrument_id: str) -> History:
        """The instrument's history windows (bars and trades asked for by the strategies)."""

    @property
    def contingent(self) -> ContingentOrders | None:
        """Brackets, OCO, trailing stops and GTD orders (``None`` unless a strategy declares ``contingent``)."""


@dataclass(slots=True, frozen=True)
class KernelContext:
    """The kernel's :class:`StrategyContext`: its own objects and command methods, nothing else.

    Parameters
    ----------
    clock, instruments, portfolio, orders, cache, banks, bus
        The run's objects (shared, not copied).
    submit, cancel, modify, equity, position, trading_state, reducing_room
        The kernel's command and query methods.
    histories
        ``instrument_id -> History`` of the instruments whose history some strategy asked for.
    contingent_orders
        Returns the kernel's contingent-order manager (built when the kernel starts).
    joins_mid_stream
        Whether the run joins markets already trading (see :class:`StrategyContext`).
    """

    clock: Clock
    instruments: Mapping[str, Instrument]
    portfolio: Portfolio
    orders: OrderManager
    cache: Cache
    banks: Mapping[str, FeatureBank]
    bus: MessageBus
    submit: Callable[[SubmitOrder], None]
    cancel: Callable[[CancelOrder], None]
    modify: Callable[[ModifyOrder], None]
    equity: Callable[[], float]
    position: Callable[[str, str], float]
    trading_state: Callable[[], TradingState]
    reducing_room: Callable[[str, bool], float]
    histories: Mapping[str, History]
    contingent_orders: Callable[[], ContingentOrders | None]
    joins_mid_stream: bool = False

    @property
    def contingent(self) -> ContingentOrders | None:
        """The kernel's contingent-order manager, or ``None``."""
        return self.contingent_orders()

    def features(self, instrument_id: str) -> FeatureView:
        """The instrument's :class:`FeatureView` (see :meth:`Cache.features`)."""
        return self.cache.features(instrument_id)

    def book(self, instrument_id: str) -> BookView | None:
        """The instrument's L2 book (the feed adapter's, see :meth:`Cache.book`), or ``None``."""
        return self.cache.book(instrument_id)

    def history(self, instrument_id: str) -> History:
        """The instrument's :class:`~tradebus.engine.history.History`.

        Raises
        ------
        ConfigError
            If no strategy asked for history of the instrument (see
            :meth:`Strategy.history_sizes <tradebus.strategies.base.Strategy.history_sizes>`).
        """
        history = self.histories.get(instrument_id)
        if history is None:
            raise ConfigError(
                f"no history kept for {instrument_id!r}: a strategy asks for it in history_sizes()"
            )
        return history
