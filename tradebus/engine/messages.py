"""Core messages: market data (nouns), commands (imperative) and events (past tense).

Every message is an immutable ``msgspec.Struct`` and carries ``ts_event`` (venue
time) and ``ts_init`` (when this process saw or created it), both int64
nanoseconds since the Unix epoch, UTC. Prices and sizes are float64.

A :class:`Bar`'s ``ts_event`` is the bar's *close* time: a bar is only known once
it has closed, so a decision taken on it is stamped no earlier than its close.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

import msgspec

__all__ = [
    "AlgoEnded",
    "AlgoStarted",
    "AnomalyKind",
    "Bar",
    "BookDelta",
    "BookDepth",
    "BookResynced",
    "BookSnapshot",
    "OpenInterest",
    "CancelOrder",
    "ContingentLinked",
    "FeedStale",
    "FundingRate",
    "InterestCharged",
    "Liquidity",
    "MarkPrice",
    "ModifyOrder",
    "OrderAccepted",
    "OrderAnomaly",
    "OrderCancelRejected",
    "OrderCanceled",
    "OrderDenied",
    "OrderExpired",
    "OrderFilled",
    "OrderFillsReported",
    "OrderModified",
    "OrderModifyRejected",
    "OrderRejected",
    "OrderReplaced",
    "OrderResolved",
    "OrderSide",
    "OrderStatus",
    "OrderSubmitted",
    "OrderTermsReported",
    "OrderTimedOut",
    "OrderTriggered",
    "OrderType",
    "PositionChanged",
    "Quote",
    "SubmitOrder",
    "TimeEvent",
    "TimeInForce",
    "Trade",
    "TradingState",
    "TradesMissed",
    "TradingStateChanged",
]


class OrderSide(IntEnum):
    """Order or aggressor side; the value is the sign of the position change."""

    BUY = 1
    SELL = -1


class OrderType(StrEnum):
    """Order types supported by the venues."""

    MARKET = "MARKET"
    LIMIT = "LIMIT"
    STOP_MARKET = "STOP_MARKET"
    STOP_LIMIT = "STOP_LIMIT"


class TimeInForce(StrEnum):
    """How long an order stays working."""

    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"


class Liquidity(StrEnum):
    """Whether a fill added (maker) or took (taker) liquidity."""

    MAKER = "MAKER"
    TAKER = "TAKER"


class OrderStatus(StrEnum):
    """States of the order state machine (see ``execution.orders``)."""

    INITIALIZED = "INITIALIZED"
    DENIED = "DENIED"
    SUBMITTED = "SUBMITTED"
    ACCEPTED = "ACCEPTED"
    TRIGGERED = "TRIGGERED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    UNKNOWN = "UNKNOWN"


class AnomalyKind(StrEnum):
    """Why a venue event did not fit its order's state (see :class:`OrderAnomaly`)."""

    #: A fill whose ``trade_id`` the order already booked: not booked again.
    DUPLICATE_FILL = "duplicate_fill"
    #: A status event that repeats the order's current state: ignored.
    DUPLICATE_EVENT = "duplicate_event"
    #: A status event older than the order's state (an ack after a fill, a cancel after the
    #: order filled, ...): ignored, the order keeps its state.
    STALE_EVENT = "stale_event"
    #: A fill of an order already CANCELED, EXPIRED, REJECTED or DENIED: booked.
    FILL_AFTER_CLOSE = "fill_after_close"
    #: A fill beyond the order's quantity: booked, the order is FILLED.
    OVERFILL = "overfill"
    #: An order believed REJECTED (a venue that did not know it) is alive at the venue after all.
    REOPENED = "reopened"
    #: An event for a client order id this process never created: a fill is booked (the
    #: position is real), nothing else is done. Live reconciliation calls these external.
    UNKNOWN_ORDER = "unknown_order"
    #: A venue's answer to a query says the order filled more than the fills it lists (and this
    #: process booked): the venue's trade history no longer lists some of them (a venue keeps a
    #: window: OKX ``/trade/fills`` 3 days, Bybit's execution list 7 days) or lists them late. The
    #: difference is not booked (no fill is invented); a live daemon holds the instrument until its
    #: holding equals the venue's (checked as soon as fills listed late are booked, and every round).
    MISSING_FILLS = "missing_fills"


class TradingState(StrEnum):
    """Risk gate state: ACTIVE trades, REDUCING only reduces, HALTED denies all."""

    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


# --------------------------------------------------------------------------- data


class Bar(msgspec.Struct, frozen=True, gc=False):
    """OHLCV bar; ``ts_event`` is the close time of the bar."""

    instrument_id: str
    ts_event: int
    ts_init: int
    open: float
    high: float
    low: float
    close: float
    volume: float


class Trade(msgspec.Struct, frozen=True, gc=False):
    """A public trade; ``aggressor`` is +1 buyer-initiated, -1 seller-initiated, 0 unknown."""

    instrument_id: str
    ts_event: int
    ts_init: int
    price: float
    size: float
    aggressor: int
    trade_id: str


class Quote(msgspec.Struct, frozen=True, gc=False):
    """Best bid and ask."""

    instrument_id: str
    ts_event: int
    ts_init: int
    bid_price: float
    bid_size: float
    ask_price: float
    ask_size: float


class BookDelta(msgspec.Struct, frozen=True, gc=False):
    """A batch of L2 level updates from one venue message (size 0 removes a level).

    ``bids``/``asks`` are float64 arrays of shape (n, 2): price, size.
    ``first_seq``/``last_seq``/``prev_seq`` carry the venue's sequence ids (-1 when absent).
    """

    instrument_id: str
    ts_event: int
    ts_init: int
    bids: object
    asks: object
    first_seq: int = -1
    last_seq: int = -1
    prev_seq: int = -1


class BookSnapshot(msgspec.Struct, frozen=True, gc=False):
    """A full L2 book; ``bids``/``asks`` are float64 arrays of shape (n, 2)."""

    instrument_id: str
    ts_event: int
    ts_init: int
    bids: object
    asks: object
    last_seq: int = -1


class MarkPrice(msgspec.Struct, frozen=True, gc=False):
    """Mark (and index, NaN if unknown) price of a derivative."""

    instrument_id: str
    ts_event: int
    ts_init: int
    mark_price: float
    index_price: float


class FundingRate(msgspec.Struct, frozen=True, gc=False):
    """Current funding rate of a perpetual and the time of the next funding."""

    instrument_id: str
    ts_event: int
    ts_init: int
    rate: float
    next_funding_ns: int


class OpenInterest(msgspec.Struct, frozen=True, gc=False):
    """Open interest of a derivative (base units or contracts, as the venue sends it)."""

    instrument_id: str
    ts_event: int
    ts_init: int
    open_interest: float


class BookDepth(msgspec.Struct, frozen=True, gc=False):
    """One band of a percentage-depth snapshot (Binance ``bookDepth``): the size resting within a band.

    ``percentage`` is the band's distance from the mid in percent, negative on the bid side;
    ``depth`` the cumulative size within it (base units or contracts, as the venue sends it),
    ``notional`` the same in the quote currency. The bands of one snapshot share ``ts_event``.
    """

    instrument_id: str
    ts_event: int
    ts_init: int
    percentage: float
    depth: float
    notional: float


class TimeEvent(msgspec.Struct, frozen=True, gc=False):
    """A timer or alert firing; ``ts_event`` is its scheduled time."""

    name: str
    ts_event: int
    ts_init: int


# ----------------------------------------------------------------------- commands


class SubmitOrder(msgspec.Struct, frozen=True, gc=False):
    """Ask the venue to work a new order.

    ``price`` is the limit price (NaN for market and stop-market orders);
    ``trigger_price`` the stop trigger (NaN unless a stop type). ``parent`` names the execution
    algorithm (:mod:`tradebus.strategies.algos`) of the strategy that sends it as a child (``""``:
    none); journaled with it, it tells a restart which orders were the algorithm's.
    """

    strategy_id: str
    instrument_id: str
    client_order_id: str
    side: OrderSide
    quantity: float
    ts_event: int
    ts_init: int
    order_type: OrderType = OrderType.MARKET
    price: float = float("nan")
    trigger_price: float = float("nan")
    time_in_force: TimeInForce = TimeInForce.GTC
    post_only: bool = False
    reduce_only: bool = False
    reason: str = ""
    parent: str = ""


class CancelOrder(msgspec.Struct, frozen=True, gc=False):
    """Ask the venue to cancel a working order."""

    strategy_id: str
    instrument_id: str
    client_order_id: str
    ts_event: int
    ts_init: int
    reason: str = ""


class ModifyOrder(msgspec.Struct, frozen=True, gc=False):
    """Ask the venue to change quantity, price or trigger of a working order (NaN = unchanged)."""

    strategy_id: str
    instrument_id: str
    client_order_id: str
    ts_event: int
    ts_init: int
    quantity: float = float("nan")
    price: float = float("nan")
    trigger_price: float = float("nan")


# ------------------------------------------------------------------------- events


class OrderDenied(msgspec.Struct, frozen=True, gc=False):
    """The risk gate (or the order manager) refused an order before it left the process."""

    strategy_id: str
    instrument_id: str
    client_order_id: str
    reason: str
    ts_event: int
    ts_init: int


class OrderSubmitted(msgspec.Struct, frozen=True, gc=False):
    """An order passed the risk gate and was sent to the venue."""

    strategy_id: str
    instrument_id: str
    client_order_id: str
    ts_event: int
    ts_init: int


class OrderAccepted(msgspec.Struct, frozen=True, gc=False):
    """The venue acknowledged an order and is working it."""

    strategy_id: str
    instrument_id: str
    client_order_id: str
    venue_order_id: str
    ts_event: int
    ts_init: int


class OrderRejected(msgspec.Struct, frozen=True, gc=False):
    """The venue refused an order."""

    strategy_id: str
    instrument_id: str
    client_order_id: str
    reason: str
    ts_event: int
    ts_init: int


class OrderTriggered(msgspec.Struct, frozen=True, gc=False):
    """A stop or stop-limit order's trigger price was reached."""

    strategy_id: str
    instrument_id: str
    client_order_id: str
    ts_event: int
    ts_init: int


class OrderModified(msgspec.Struct, frozen=True, gc=False):
    """The venue applied a modification."""

    strategy_id: str
    instrument_id: str
    client_order_id: str
    quantity: float
    price: float
    trigger_price: float
    ts_event: int
    ts_init: int


class OrderModifyRejected(msgspec.Struct, frozen=True, gc=False):
    """A modification was not applied (the venue refused it, or the order no longer works); the
    order works on unchanged. ``reason`` says why."""

    strategy_id: str
    instrument_id: str
    client_order_id: str
    reason: str
    ts_event: int
    ts_init: int


class OrderCancelRejected(msgspec.Struct, frozen=True, gc=False):
    """A cancel was not done: the venue refused it and a query after the refusal found the order still
    working. The order works on (cancel it again, or act on its fills); ``reason`` is the venue's refusal.
    Journaled and published; it leaves the order as it was (the journal's replay too)."""

    strategy_id: str
    instrument_id: str
    client_order_id: str
    reason: str
    ts_event: int
    ts_init: int


class OrderReplaced(msgspec.Struct, frozen=True, gc=False):
    """A modification was applied by a cancel-replace: ``client_order_id`` ends (its ``OrderCanceled``
    follows) and ``replacement_id``, a new order with the modified quantity, price or trigger, works on."""

    strategy_id: str
    instrument_id: str
    client_order_id: str
    replacement_id: str
    ts_event: int
    ts_init: int


class OrderFilled(msgspec.Struct, frozen=True, gc=False):
    """A (partial) fill. ``fee`` is an amount of ``fee_asset``, positive = paid.

    ``fee_asset`` is the asset the venue charged the fee in when it is not the instrument's
    quote asset (``""``: the quote asset, as every simulated fill): the base asset (a spot buy
    paying its fee out of what it bought) or a third asset (Binance's BNB discount,
    ``commissionAsset: BNB``). The account debits that asset's balance; the portfolio values
    the fee in the quote currency (:meth:`~tradebus.engine.portfolio.Portfolio.fee_value`).

    ``filled_qty`` is the venue's cumulative filled quantity of the order after this fill, as the
    stream frame that carried it said (``0.0``: not said, as every simulated fill and every fill
    of a query); more than was booked once this fill is booked means an earlier fill's frame was
    lost, and the execution engine asks the venue for it at once.
    """

    strategy_id: str
    instrument_id: str
    client_order_id: str
    venue_order_id: str
    trade_id: str
    side: OrderSide
    last_qty: float
    last_px: float
    fee: float
    liquidity: Liquidity
    ts_event: int
    ts_init: int
    fee_asset: str = ""
    filled_qty: float = 0.0


class OrderFillsReported(msgspec.Struct, frozen=True, gc=False):
    """The venue said how much of an order has filled, in a push apart from the fills (Bybit's ``order``
    topic: ``PartiallyFilled`` / ``Filled`` with ``cumExecQty``), which may come before or after them.

    ``filled_qty`` is the venue's cumulative filled quantity. The order's state is unchanged (its
    fills are booked from their own frames); more than is booked still, once the execution engine's
    grace (:attr:`~tradebus.execution.engine.OrderTimeouts.fill_grace_ns`) has passed, means a fill's
    frame was lost, and the order is queried. Neither journaled nor published.
    """

    strategy_id: str
    instrument_id: str
    client_order_id: str
    filled_qty: float
    ts_event: int
    ts_init: int


class OrderTermsReported(msgspec.Struct, frozen=True, gc=False):
    """The venue's private stream told a working order's terms as it now holds them, in a frame of an amend (Binance
    spot ``executionReport`` ``REPLACED``, USD-M ``ORDER_TRADE_UPDATE`` ``AMENDMENT``, an OKX ``orders`` or Bybit ``order``
    push of a working order whose size, price or trigger differ from the order's).

    ``quantity``, ``price`` and ``trigger_price`` are the venue's (NaN: not told). Terms other than the order's are an
    amend made at the venue (a user's web page): the execution engine applies them as an amend's acknowledgement
    (``OrderModified``, journaled and published), unless they are this process's own amend on its way (the live venue
    leaves those to the amend's answer). Neither journaled nor published itself.
    """

    strategy_id: str
    instrument_id: str
    client_order_id: str
    quantity: float
    price: float
    trigger_price: float
    ts_event: int
    ts_init: int


class OrderCanceled(msgspec.Struct, frozen=True, gc=False):
    """The order is no longer working because it was canceled (unfilled rest dropped).

    ``filled_qty`` is the venue's cumulative filled quantity of the order when it closed (NaN
    when the venue does not say); more than was booked means fills are still on their way or
    were lost, and the execution engine asks the venue for them.
    """

    strategy_id: str
    instrument_id: str
    client_order_id: str
    reason: str
    ts_event: int
    ts_init: int
    filled_qty: float = float("nan")


class OrderExpired(msgspec.Struct, frozen=True, gc=False):
    """An IOC/FOK (or GTD) order ended without filling completely (``filled_qty``: as in :class:`OrderCanceled`)."""

    strategy_id: str
    instrument_id: str
    client_order_id: str
    reason: str
    ts_event: int
    ts_init: int
    filled_qty: float = float("nan")


class OrderTimedOut(msgspec.Struct, frozen=True, gc=False):
    """A submit or cancel got no answer in time (or failed): the order's state at the venue is unknown."""

    strategy_id: str
    instrument_id: str
    client_order_id: str
    reason: str
    ts_event: int
    ts_init: int


class OrderResolved(msgspec.Struct, frozen=True, gc=False):
    """The venue was queried about an ``UNKNOWN`` order and reported ``status``.

    ``filled_qty`` is the venue's cumulative filled quantity in its answer (NaN when not known:
    an order the venue does not know, or a journal written before the field); more than is booked
    means fills its trade history does not list (``MISSING_FILLS``).
    """

    strategy_id: str
    instrument_id: str
    client_order_id: str
    status: OrderStatus
    reason: str
    ts_event: int
    ts_init: int
    filled_qty: float = float("nan")


class ContingentLinked(msgspec.Struct, frozen=True, gc=False):
    """Orders the contingent-order manager linked (journaled, so that a restart keeps the links).

    ``kind`` and what ``order_ids`` and ``params`` hold (``params`` values NaN when unset):

    * ``"bracket"``: ``client_order_id`` is the entry; ``params``: ``side`` (+1/-1),
      ``stop_loss``, ``take_profit``, ``trail_offset``, ``trail_percent``, ``arm_after_bars``,
      ``exit_after_bars``, ``exit_after_ns``, ``cooldown_bars``;
    * ``"children"``: the bracket's stop-loss and take-profit ids (journaled before they are sent);
    * ``"exit"``: the bracket's timed-exit order id;
    * ``"oco"``: the members of one OCO group; ``params``: ``size``, the group's (its largest member's quantity
      when linked; absent from links journaled before it was added);
    * ``"trailing"``: ``client_order_id`` trails; ``params``: ``sell``, ``offset``, ``percent``;
    * ``"gtd"``: ``client_order_id`` expires at ``params["expire_ns"]`` (an ``int``, as every ``*_ns``
      parameter; a float in links journaled by an older version);
    * ``"reduce"``: the reduction of OCO sibling ``client_order_id`` to ``params["quantity"]`` was
      refused, ``params["refusals"]`` times so far (a restart counts on from it);
    * ``"replace"``: a cancel-replace of ``client_order_id`` by ``order_ids[1]`` about to be sent
      (journaled and published by the execution engine before the request): once the orders'
      states tell it was done, the links of the one move to the other; ``params``: ``sized_on``, the
      replaced order's filled quantity the replacement was sized on (a restart cuts a replacement
      still working when the venue says the replaced order filled more). ``order_ids[1]`` empty: a
      two-request cancel-replace whose cancel is about to be sent (journaled by the live venue),
      ``params``: the modification's ``quantity`` and ``price`` (NaN: unchanged); a restart
      places its replacement (:meth:`tradebus.execution.live.LiveVenue.resume_replaces`).
    """

    strategy_id: str
    instrument_id: str
    client_order_id: str
    kind: str
    order_ids: tuple[str, ...]
    params: dict[str, float | int]
    ts_event: int
    ts_init: int


class AlgoStarted(msgspec.Struct, frozen=True, gc=False):
    """An execution algorithm (:mod:`tradebus.strategies.algos`) began working its parent order.

    Journaled, so that a restart knows the algorithms the stopped process left working. Its
    children are the strategy's orders journaled after it whose ``SubmitOrder.parent`` is its ``name``.
    ``kind`` is the algorithm's class name (``Twap``, ``Iceberg``...).
    """

    strategy_id: str
    instrument_id: str
    name: str
    kind: str
    side: OrderSide
    quantity: float
    ts_event: int
    ts_init: int


class AlgoEnded(msgspec.Struct, frozen=True, gc=False):
    """An execution algorithm ended: ``status`` ``done``, ``failed``, ``canceled`` or ``interrupted``.

    Journaled. ``interrupted``: the process that ran it stopped first and a restart on its
    journal ended it (its working children canceled; ``filled`` is what its children had filled
    then, ``children`` their client order ids); the strategy's
    :meth:`~tradebus.strategies.base.Strategy.on_algo_interrupted` receives it.
    """

    strategy_id: str
    instrument_id: str
    name: str
    kind: str
    side: OrderSide
    quantity: float
    status: str
    filled: float
    ts_event: int
    ts_init: int
    children: tuple[str, ...] = ()
    reason: str = ""

    @property
    def remaining(self) -> float:
        """The part of the parent its children did not fill."""
        return max(0.0, self.quantity - self.filled)


class OrderAnomaly(msgspec.Struct, frozen=True, gc=False):
    """A venue event did not fit its order's state; ``kind`` says what the order manager did.

    A fill is never lost: every anomaly but ``DUPLICATE_FILL`` and ``MISSING_FILLS`` leaves a fill
    booked (``MISSING_FILLS``: the venue no longer lists the fills it says it made).
    ``event`` names the type of the venue event, ``detail`` says what was seen.
    """

    strategy_id: str
    instrument_id: str
    client_order_id: str
    kind: AnomalyKind
    event: str
    detail: str
    ts_event: int
    ts_init: int


class PositionChanged(msgspec.Struct, frozen=True, gc=False):
    """Net position of an instrument after a fill (``quantity`` signed)."""

    instrument_id: str
    quantity: float
    avg_price: float
    realized_pnl: float
    ts_event: int
    ts_init: int


class PositionLiquidated(msgspec.Struct, frozen=True, gc=False):
    """A perpetual position was closed by liquidation (its equity fell below maintenance margin).

    ``quantity`` is the signed position closed, ``price`` the price it was closed at (the mark,
    or the bankruptcy price when the mark gapped beyond it), ``liquidation_price`` where the
    account computed the breach, ``fee`` the liquidation fee (no more than the margin left),
    ``mark_price`` the mark that breached, ``insurance_fund_cover`` the loss beyond the margin
    the venue's insurance fund absorbed (0 unless the mark gapped beyond the bankruptcy price;
    see :meth:`MarginAccount.liquidation_closes <tradebus.account.MarginAccount.liquidation_closes>`).
    """

    instrument_id: str
    quantity: float
    price: float
    liquidation_price: float
    fee: float
    mark_price: float
    insurance_fund_cover: float
    ts_event: int
    ts_init: int


class FundingPaid(msgspec.Struct, frozen=True, gc=False):
    """One funding settlement of a position: ``payment = quantity * contract_size * mark * rate``.

    Positive ``payment``: paid by the account; negative: received.
    """

    instrument_id: str
    quantity: float
    mark_price: float
    rate: float
    payment: float
    ts_event: int
    ts_init: int


class InterestCharged(msgspec.Struct, frozen=True, gc=False):
    """One charge of borrowing interest on a margin spot loan (see :mod:`tradebus.engine.interest`).

    ``interest = borrowed * price * annual_rate / 8760``, debited from ``quote`` (the
    borrowed asset itself when it is a quote asset, ``price`` 1). ``kind`` is ``"borrow"`` for
    the charge when a fill borrows (on the amount it borrowed, at its price) and ``"hour"``
    for the charge at a whole UTC hour (``ts_event``) on the amount outstanding then;
    ``"hour_kline"`` for such a charge of an hour a restarted daemon missed, valued at the close
    of the venue's 1-minute kline ending at it, and ``"hour_last_fill"`` for one whose kline it
    could not fetch, valued at the journal's last fill price instead (:mod:`tradebus.engine.interest`).
    """

    asset: str
    kind: str
    borrowed: float
    price: float
    annual_rate: float
    interest: float
    quote: str
    ts_event: int
    ts_init: int


class TradingStateChanged(msgspec.Struct, frozen=True, gc=False):
    """The risk gate moved between ACTIVE, REDUCING and HALTED."""

    state: TradingState
    reason: str
    ts_event: int
    ts_init: int


class BookResynced(msgspec.Struct, frozen=True, gc=False):
    """An order book was rebuilt from a fresh snapshot after an integrity failure.

    ``ts_init`` is the snapshot's receive time (a recording's line of it), in a daemon as in a replay.
    """

    instrument_id: str
    reason: str
    ts_event: int
    ts_init: int


class TradesMissed(msgspec.Struct, frozen=True, gc=False):
    """A feed's sequential trade ids skipped ``first_id..last_id`` (a reconnect or a lost frame).

    Published before the trades it concerns: ``recovered`` of the missed trades were fetched
    from the venue's REST history and follow it, in id order, then the trade that revealed the
    gap (``revealed_ns``, its ``ts_event``); the others are lost for good. Lost trades were
    printed between the last trade delivered before this message and ``revealed_ns``.
    """

    instrument_id: str
    first_id: int
    last_id: int
    recovered: int
    revealed_ns: int
    reason: str
    ts_event: int
    ts_init: int

    @property
    def lost(self) -> int:
        """How many of the missed trades were not recovered (lost for good)."""
        return self.last_id - self.first_id + 1 - self.recovered


class FeedStale(msgspec.Struct, frozen=True, gc=False):
    """A feed delivered nothing for longer than its allowed silence."""

    source: str
    last_message_ns: int
    ts_event: int
    ts_init: int
