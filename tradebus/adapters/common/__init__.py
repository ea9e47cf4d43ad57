"""Venue-independent pieces of the live market-data adapters.

* :mod:`.book` — Numba-backed L2 order book (sorted float64 arrays per side).
* :mod:`.sync` — the resync state machine and pluggable venue sequence rules.
* :mod:`.stream_books` — books whose snapshots come in-stream, resynced by resubscribing (OKX, Bybit).
* :mod:`.parsing` — frame excerpts and validated level arrays for the venue parsers.
* :mod:`.instruments` — loading a saved instruments response.
* :mod:`.policy` — reconnect policy: error classifier, backoff, subscriptions, keep-alive.
* :mod:`.watchdog`, :mod:`.dedup` — stale-feed watchdog, trade de-duplication.
* :mod:`.feed` — a feed's config and handle (the contract every venue's ``client.py`` implements).
* :mod:`.venue` — :class:`~.venue.VenueAdapter`, what a venue package gives the registry.
* :mod:`.client` — the asyncio WebSocket client base (and the resubscribing one of OKX/Bybit).
* :mod:`.recorder` — raw-frame recording and reading.
* :mod:`.local_server` — a local venue emulator for tests (protocol plugins, fault injection).
* :mod:`.venue_clock` — this machine's clock as a venue takes it: measured, and requests refused for it sent again.
"""
