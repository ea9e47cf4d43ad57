"""The message bus: synchronous, single-threaded, deterministic.

``publish`` calls the subscribers of a message in subscription order. Routing is a
dict lookup on ``(type(message), instrument_id)``; the handler list for each key
(specific subscribers merged with the type-wide ones, in subscription order) is
built once on first use and rebuilt only when subscriptions change. A message of a
type nobody subscribed to returns after one set lookup (order events often have no
listener: most strategies do not handle ``OrderSubmitted`` or ``PositionChanged``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Handler", "MessageBus"]

Handler = Callable[[Any], None]


class MessageBus:
    """Routes messages to handlers by message type and (optionally) instrument."""

    __slots__ = ("_routes", "_seq", "_subs", "published", "wanted")

    def __init__(self) -> None:
        # (type, instrument_id or None) -> [(seq, handler)]
        self._subs: dict[tuple[type, str | None], list[tuple[int, Handler]]] = {}
        self._routes: dict[tuple[type, str | None], tuple[Handler, ...]] = {}
        self._seq = 0
        #: Message types with at least one subscription (of any instrument); read it, don't change
        #: it. The same set object for the bus's lifetime: a publisher on a hot path may test
        #: ``cls in bus.wanted`` without the call of :meth:`wants`.
        self.wanted: set[type] = set()
        self.published = 0

    def subscribe(self, msg_type: type, handler: Handler, instrument_id: str | None = None) -> None:
        """Call ``handler(msg)`` for every published ``msg_type`` (of ``instrument_id`` if given)."""
        self._seq += 1
        self._subs.setdefault((msg_type, instrument_id), []).append((self._seq, handler))
        self.wanted.add(msg_type)
        self._routes.clear()

    def unsubscribe(self, msg_type: type, handler: Handler, instrument_id: str | None = None) -> None:
        """Remove a subscription made with the same arguments (no error if absent)."""
        subs = self._subs.get((msg_type, instrument_id), [])
        self._subs[(msg_type, instrument_id)] = [(s, h) for s, h in subs if h != handler]
        wanted = self.wanted
        wanted.clear()
        wanted.update(t for (t, _), entries in self._subs.items() if entries)
        self._routes.clear()

    def handlers(self, msg_type: type, instrument_id: str | None = None) -> tuple[Handler, ...]:
        """The handlers a message of this type and instrument reaches, in call order."""
        key = (msg_type, instrument_id)
        route = self._routes.get(key)
        if route is None:
            merged = list(self._subs.get((msg_type, None), ()))
            if instrument_id is not None:
                merged += self._subs.get(key, ())
            merged.sort(key=lambda item: item[0])
            route = self._routes[key] = tuple(h for _, h in merged)
        return route

    def wants(self, msg_type: type) -> bool:
        """Whether any handler subscribed to ``msg_type`` (of any instrument).

        A publisher may skip building a message nobody would receive.
        """
        return msg_type in self.wanted

    def publish(self, msg: Any) -> None:
        """Deliver ``msg`` to its subscribers, synchronously, in subscription order."""
        self.published += 1
        cls = type(msg)
        if cls not in self.wanted:
            return
        key = (cls, getattr(msg, "instrument_id", None))
        route = self._routes.get(key)
        if route is None:
            route = self.handlers(*key)
        for handler in route:
            handler(msg)
