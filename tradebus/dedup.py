"""Trade de-duplication across reconnects, in bounded memory.

After a reconnect a venue (or our own overlap on resubscribe) may deliver trades that
were already seen. :class:`TradeDeduper` remembers the last ``capacity`` trade keys
(instrument, trade id) in a set plus a ring buffer and answers "seen before?" in O(1).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Sequence

from tradebus.errors import ConfigError

__all__ = ["TradeDeduper"]


class TradeDeduper:
    """Remember the most recent ``capacity`` keys; :meth:`seen` marks a key and says if it was known."""

    __slots__ = ("capacity", "_set", "_ring", "duplicates")

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 1:
            raise ConfigError(f"trade deduper: capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._set: set[Hashable] = set()
        self._ring: deque[Hashable] = deque()
        self.duplicates = 0

    def seen(self, key: Hashable) -> bool:
        """Return True if ``key`` is among the remembered keys; otherwise remember it and return False."""
        known = self._set
        if key in known:
            self.duplicates += 1
            return True
        known.add(key)
        ring = self._ring
        ring.append(key)
        if len(ring) > self.capacity:
            known.discard(ring.popleft())
        return False

    def first_seen(self, keys: Sequence[Hashable]) -> list[bool] | None:
        """Remember ``keys`` in order; ``None`` if every one is new, else a flag per key (True: new).

        A key repeated within ``keys`` is new only the first time. Equivalent to calling
        :meth:`seen` on each key, faster for a venue message carrying several trades.
        """
        known = self._set
        if len(keys) == 1:
            key = keys[0]
            if key not in known:
                self._remember(keys)
                return None
        elif known.isdisjoint(keys) and len(set(keys)) == len(keys):
            self._remember(keys)
            return None
        return [not self.seen(key) for key in keys]

    def _remember(self, keys: Sequence[Hashable]) -> None:
        known = self._set
        ring = self._ring
        known.update(keys)
        ring.extend(keys)
        while len(ring) > self.capacity:
            known.discard(ring.popleft())

    def __len__(self) -> int:
        return len(self._ring)
