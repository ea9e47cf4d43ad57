"""The venue registry: venue name -> :class:`~tradebus.adapters.common.venue.VenueAdapter`.

Adding a venue: write ``tradebus/adapters/<venue>/`` (the same modules as the others, with
``ADAPTER`` in its ``__init__.py``) and add one line below. Nothing else names a venue.
"""

from __future__ import annotations

from collections.abc import Iterable

from tradebus.adapters import binance, bybit, okx
from tradebus.adapters.common import book
from tradebus.adapters.common.feed import FeedConfig
from tradebus.adapters.common.venue import VenueAdapter
from tradebus.engine.instrument import CloseFee, Instrument
from tradebus.execution.client_ids import ClientIdRule

__all__ = ["VENUES", "client_id_rules", "maintenance_close_fee", "venue_adapter", "warm_up"]

#: Every venue a feed config may name.
VENUES: dict[str, VenueAdapter] = {
    binance.ADAPTER.name: binance.ADAPTER,
    okx.ADAPTER.name: okx.ADAPTER,
    bybit.ADAPTER.name: bybit.ADAPTER,
}


def warm_up() -> None:
    """Compile (or load from the on-disk cache) every Numba kernel a venue's first book frames run.

    The common book and level-parser kernels (:func:`tradebus.adapters.common.book.warm_up`) and each
    venue's own (``VenueAdapter.warm_up``): a daemon's warm-up, so that its first frames compile nothing
    on its event loop.
    """
    book.warm_up()
    for adapter in VENUES.values():
        adapter.warm_up()


def venue_adapter(name: str) -> VenueAdapter:
    """The adapter of venue ``name``.

    Raises
    ------
    KeyError
        ``name`` is not registered (the message lists the registered venues).
    """
    adapter = VENUES.get(name)
    if adapter is None:
        raise KeyError(f"{name!r} is not a known venue; use one of {sorted(VENUES)}")
    return adapter


def client_id_rules(
    instruments: Iterable[Instrument], feeds: Iterable[FeedConfig] = (), venue: str | None = None
) -> dict[str, ClientIdRule]:
    """``instrument_id -> the client order id rule of the venue that trades it``.

    ``venue`` (a live account's) trades every instrument; else the venue of the feed that
    subscribes an instrument (a paper run), else the venue whose instrument ids carry the
    instrument's venue name (a backtest's ``BTC-USDT.OKX``: :attr:`VenueAdapter.instrument_venues`),
    in any case and with any ``_<suffix>`` (``OKX_DEMO``, ``BINANCE_USDM_TESTNET``: the longest
    declared name wins); an instrument of no registered venue has none.
    """
    if venue is not None:
        rule = venue_adapter(venue).client_id_rule
        return {} if rule is None else {inst.instrument_id: rule for inst in instruments}
    rules = {}
    for inst in instruments:
        adapter = _named_venue(inst.venue)
        if adapter is not None and adapter.client_id_rule is not None:
            rules[inst.instrument_id] = adapter.client_id_rule
    for feed in feeds:
        rule = VENUES[feed.venue].client_id_rule
        if rule is not None:
            rules |= dict.fromkeys(feed.subscriptions, rule)
    return rules


def maintenance_close_fee(venue: str) -> CloseFee:
    """The :class:`CloseFee` rule of the venue of instrument venue name ``venue`` (as :func:`client_id_rules`
    matches it: ``OKX_DEMO`` is OKX's); ``NONE`` for a venue not registered."""
    adapter = _named_venue(venue)
    return CloseFee.NONE if adapter is None else adapter.maintenance_close_fee


def _named_venue(name: str) -> VenueAdapter | None:
    """The adapter of instrument venue name ``name``, ignoring case and ``_<suffix>`` parts from the right."""
    by_name = {venue.upper(): adapter for adapter in VENUES.values() for venue in adapter.instrument_venues}
    name = name.upper()
    while (adapter := by_name.get(name)) is None:
        name, underscore, _ = name.rpartition("_")
        if not underscore:
            return None
    return adapter
