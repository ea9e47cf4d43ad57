"""Configuration of the simulated venue."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from tradebus.config.base import StrictModel
from tradebus.execution.costs import MAX_FEE_RATE, MAX_SLIPPAGE_BPS, SlippageConfig

__all__ = ["BookFillConfig", "VenueConfig"]


class BookFillConfig(StrictModel):
    """How a ``fill_on: book`` venue fills (see :mod:`tradebus.execution.book_matching`).

    Parameters
    ----------
    queue_model
        ``"risk_averse"``: only trades at its price advance a resting order; ``"prob_power"`` /
        ``"prob_log"``: cancels ahead advance it with a probability that depends on the
        quantity ahead and behind (hftbacktest's probability queue models).
    queue_power
        The exponent ``n`` of ``prob_power`` (``f(x) = x ** n``).
    beyond_depth
        What a taking order does with what the visible book cannot fill: ``"cancel"`` it
        (a GTC limit rests instead) or fill it at the ``"last_level"``'s price (optimistic).
    entry_latency_ns
        Decision to venue; ``None`` takes the venue's ``latency_ns``.
    ack_latency_ns
        Venue answer (accepted, filled ...) to the strategy.
    ack_latency_samples
        A file of recorded acknowledgement latencies (ns, one per line): both latencies are
        then sampled from the log-normal fitted to them (seeded by ``latency_seed``). A
        relative path is resolved against the config file's directory, as data files are.
    latency_scale
        Multiplies the latencies sampled from ``ack_latency_samples`` (a latency stress sets it;
        constant latencies are scaled in place).
    """

    queue_model: Literal["risk_averse", "prob_power", "prob_log"] = "risk_averse"
    queue_power: float = Field(default=2.0, gt=0.0)
    beyond_depth: Literal["cancel", "last_level"] = "cancel"
    entry_latency_ns: int | None = Field(default=None, ge=0)
    ack_latency_ns: int = Field(default=0, ge=0)
    ack_latency_samples: Path | None = None
    latency_seed: int = 0
    latency_scale: float = Field(default=1.0, ge=0.0)


class VenueConfig(StrictModel):
    """How the simulated venue matches orders.

    Parameters
    ----------
    maker_fee, taker_fee
        Fee rates (fraction of notional, negative = rebate) overriding every instrument's own;
        ``None`` uses the instrument's rates. The bounds are an instrument's (-1 % < rate < 10 %).
    slippage_bps
        Fixed adverse slippage applied to taker fills, in basis points (bars, trades and
        quotes; with ``fill_on: book`` a config error, the book walk being the cost), below 10,000 (:data:`~tradebus.execution.costs.MAX_SLIPPAGE_BPS`: a sell slipped by
        100 % or more would have no positive price). A slipped price is clamped to the order's limit and, on bars, to the bar's
        ``[low, high]``; on trades and quotes it moves beyond the printed price.
    slippage
        A slippage model instead of ``slippage_bps`` (not both): fixed, volume participation
        or volatility-scaled (:class:`~tradebus.execution.costs.SlippageConfig`).
    latency_ns
        Time from a decision to its arrival at the venue (submit, cancel and modify alike).
        Nothing an order does at the venue happens before its arrival.
    fill_on
        Market data the venue matches against:

        ``"bars"``
            Each bar is walked along the path open -> low -> high -> close when
            ``close >= open`` and open -> high -> low -> close otherwise. An action is handled
            in the first bar that opens (where the previous bar closed) at or after its
            arrival, and is taken to arrive at that bar's open: an order decided at bar t's
            close with a latency of 1.5 bars arrives inside bar t+2 and fills from bar t+3's
            open on, never at the open of a bar that began before it arrived.
        ``"trades"``
            An order fills at the first trade strictly after its arrival that crosses it.
        ``"quotes"``
            As trades, with buys crossing against the ask and sells against the bid (paper mode).
        ``"book"``
            Against the L2 book and the trades, with queue positions and latency: see ``book``
            (:class:`BookFillConfig`) and :mod:`tradebus.execution.book_matching`.

        A backtest config that does not name it fills on the first of bars, trades and quotes
        every strategy's instruments replay (:func:`tradebus.config.run.default_fill_on`).
    limit_fill
        ``"touch"``: a resting limit fills when the price reaches it; ``"through"``: only when
        the price trades beyond it (more conservative).
    trade_size_limit
        On trades and quotes, fill at most the printed size per event (partial fills); off,
        an order fills completely at the first crossing event.
    reduce_only_mode
        What a reduce-only order whose quantity exceeds the position does at fill time:
        ``"cap"`` fills only the position's size and cancels the rest; ``"reject"`` cancels it
        without a fill. A reduce-only order that would not reduce at all (flat, or same side)
        is rejected on arrival in both modes. A reduce-only order never flips a position.
    book
        Queue model, depth and latency settings of ``fill_on: book`` (:class:`BookFillConfig`);
        ``book.entry_latency_ns`` replaces ``latency_ns`` there (paper runs keep ``latency_ns``).
    bar_path
        The assumed path of the price inside a bar (``fill_on: bars``), which decides which of
        several orders a bar reaches first:

        ``"close_direction"``
            open -> low -> high -> close when ``close >= open``, else open -> high -> low -> close.
        ``"high_first"`` / ``"low_first"``
            open -> high -> low -> close / open -> low -> high -> close on every bar.
        ``"stop_first"``
            The ``close_direction`` path, except that when a bar reaches both a stop order and a
            limit order of the same side (a bracket's stop-loss and take-profit), the stop fills
            first; the limit's fill is taken after it (conservative: a same-bar stop-out wins).
            A limit the bar opens at or through still fills first, at the open: nothing inside
            the bar comes before its open (unless the stop is crossed at the open too).
    contingent
        How a bracket's children and OCO groups work on this venue (``fill_on`` bars, trades or
        quotes): ``"emulated"`` -- plain orders sent when the entry has filled, live from the
        next bar (or the next action), an OCO cancel one action later; ``"native"`` -- as an
        exchange holding the children: they go live at the entry's fill (on bars at the fill's
        point of the bar path, so a stop-loss or take-profit can fill later in the same bar),
        and a filled OCO member cancels (a partial fill reduces) its siblings at once.
        See :mod:`tradebus.execution.contingent`.
    """

    maker_fee: float | None = Field(default=None, gt=-0.01, lt=MAX_FEE_RATE)
    taker_fee: float | None = Field(default=None, gt=-0.01, lt=MAX_FEE_RATE)
    slippage_bps: float = Field(default=0.0, ge=0.0, lt=MAX_SLIPPAGE_BPS, allow_inf_nan=False)
    slippage: SlippageConfig | None = None
    latency_ns: int = Field(default=0, ge=0)
    fill_on: Literal["bars", "trades", "quotes", "book"] = "bars"
    limit_fill: Literal["touch", "through"] = "touch"
    trade_size_limit: bool = False
    reduce_only_mode: Literal["cap", "reject"] = "cap"
    book: BookFillConfig = Field(default_factory=BookFillConfig)
    bar_path: Literal["close_direction", "high_first", "low_first", "stop_first"] = "close_direction"
    contingent: Literal["emulated", "native"] = "emulated"

    @model_validator(mode="after")
    def _one_slippage(self) -> VenueConfig:
        if self.slippage is not None and self.slippage_bps:
            raise ValueError("give either slippage_bps or a slippage model, not both")
        if self.contingent == "native" and self.fill_on == "book":
            raise ValueError("contingent: 'native' works with fill_on bars, trades or quotes, not book")
        return self

    @property
    def slippage_model(self) -> SlippageConfig:
        """The slippage model in effect (``slippage_bps`` is the fixed model)."""
        return self.slippage if self.slippage is not None else SlippageConfig(bps=self.slippage_bps)
