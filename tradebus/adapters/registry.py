"""The venue registry: venue name -> :class:`~tradebus.adapters.common.venue.VenueAdapter`.

Adding a venue: write ``tradebus/adapters/<venue>/`` (the same modules as the others, with
``ADAPTER`` in its ``__init__.py``) and add one line below. Nothing else names a venue.
"""

from __future__ import annotations

from tradebus.adapters import binance, bybit, okx
from tradebus.adapters.common.venue import VenueAdapter

__all__ = ["VENUES", "venue_adapter"]

#: Every venue a feed config may name.
VENUES: dict[str, VenueAdapter] = {
    binance.ADAPTER.name: binance.ADAPTER,
    okx.ADAPTER.name: okx.ADAPTER,
    bybit.ADAPTER.name: bybit.ADAPTER,
}


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
