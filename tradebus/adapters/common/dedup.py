"""Trade de-duplication across reconnects, in bounded memory.

After a reconnect a venue (or our own overlap on resubscribe) may deliver trades that
were already seen. :class:`TradeDeduper` remembers the last ``capacity`` trade keys
(instrument, trade id) in a set plus a ring buffer and answers "seen before?" in O(1).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable

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

    def __len__(self) -> int:
        return len(self._ring)
