"""Frames of streams a feed did not subscribe: skipped and counted (:class:`SkippedStreams`).

A recording holds every stream its recorder subscribed; a replay under a config that
subscribes fewer must not use the others (a live run of that config never receives them).
Each such stream is named at WARNING at its first frame, and the counts once more at the
run's end, so that a replay of hours of frames logs a few lines, not one per frame.

A skipped stream can be another variant of one the config subscribes: the same data of the
same instrument at another depth, speed, bar size or form (Binance ``btcusdt@depth@0ms`` for
``btcusdt@depth@100ms`` or ``btcusdt@aggTrade`` for ``btcusdt@trade``, OKX ``books:BTC-USDT`` for ``books5:BTC-USDT`` or ``trades-all:BTC-USDT``
for ``trades:BTC-USDT``, Bybit ``orderbook.200.BTCUSDT`` for ``orderbook.50.BTCUSDT``). A replay of
such a recording would run without the data its config asked for (a book never synced, no bars or
trades), so a playback
refuses it with :meth:`SkippedStreams.mismatch` (:meth:`SkippedStreams.missing` once the
frames are played, for a venue whose config may subscribe two variants of one stream).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Hashable, Iterable

from loguru import logger

from tradebus.errors import DataError

__all__ = ["SkippedStreams"]


class SkippedStreams:
    """The frames a feed skipped, per stream name.

    Parameters
    ----------
    label
        Names the feed in the log lines (``"binance usdm"``, ``"okx-public"``).
    subscribed
        The feed's stream names, in the venue's spelling of a frame's stream.
    kind_of
        What a stream carries when other streams carry it too in another variant (e.g.
        ``("BTCUSDT", "depth")`` for every depth speed of that book), ``None`` for a stream that
        has no variants: two streams of one kind are variants of each other.
    fix
        What the user makes match the recording, in the hint and the error
        (``"depth_speed / kline_<interval> / trade or aggTrade channel"``).

    Attributes
    ----------
    counts
        Frames skipped per stream name.
    """

    def __init__(
        self,
        label: str,
        subscribed: Iterable[str],
        kind_of: Callable[[str], Hashable | None] | None = None,
        fix: str = "channel",
    ) -> None:
        self.label = label
        self.subscribed = tuple(subscribed)
        self.counts: Counter[str] = Counter()
        self.fix = fix
        self._kind_of = kind_of
        self._of_kind: dict[Hashable, tuple[str, ...]] = {}
        if kind_of is not None:
            for stream in self.subscribed:
                kind = kind_of(stream)
                if kind is not None:
                    self._of_kind[kind] = (*self._of_kind.get(kind, ()), stream)

    def variants(self) -> frozenset[str]:
        """The subscribed streams that have variants (``kind_of`` gives them a kind)."""
        return frozenset(stream for streams in self._of_kind.values() for stream in streams)

    def instead(self, stream: str) -> tuple[str, ...]:
        """The subscribed variants of ``stream``, a stream not subscribed (empty if the config subscribes none)."""
        if self._kind_of is None:
            return ()
        kind = self._kind_of(stream)
        return () if kind is None else self._of_kind.get(kind, ())

    def skip(self, stream: str) -> None:
        """Count a frame of ``stream``; at its first, log a WARNING naming it (and the subscribed variants of it)."""
        counts = self.counts
        counts[stream] += 1
        if counts[stream] > 1:
            return
        instead = self.instead(stream)
        hint = ""
        if instead:
            hint = f" instead of the subscribed {', '.join(map(repr, instead))} (check the feed's {self.fix})"
        logger.warning(
            "{}: skipping the frames of unsubscribed stream {!r}{} (subscribed: {}); "
            "their count is logged at the end of the run",
            self.label,
            stream,
            hint,
            ", ".join(self.subscribed),
        )

    def mismatch(self, stream: str, subscribed: str, recorded: int | None = None) -> DataError:
        """The refusal of a recording holding frames of ``stream``, the config subscribing its variant ``subscribed``.

        ``recorded``: how many frames of ``stream`` the recording held, none of ``subscribed``
        (``None``: refused at the first frame).
        """
        held = "" if recorded is None else f" ({recorded:,} in the recording)"
        none = "" if recorded is None else ", of which it holds none"
        return DataError(
            f"the recording's streams do not match the config: {self.label} frames of stream {stream!r}{held}, "
            f"but the config subscribes {subscribed!r}{none} (expected streams: {list(self.subscribed)}); "
            f"make the feed's {self.fix} match the recording"
        )

    def missing(self, unseen: Collection[str]) -> DataError | None:
        """The refusal of a played recording whose skipped frames are of a variant of a subscribed stream it never
        held (``unseen``: the subscribed streams no frame came of), or ``None`` if there is none."""
        for stream, n in sorted(self.counts.items()):
            for subscribed in self.instead(stream):
                if subscribed in unseen:
                    return self.mismatch(stream, subscribed, n)
        return None

    def log(self) -> None:
        """Log, in one WARNING, how many frames of each stream were skipped (nothing if none)."""
        if not self.counts:
            return
        logger.warning(
            "{}: skipped frames of unsubscribed streams: {}",
            self.label,
            ", ".join(f"{stream!r} {n:,}" for stream, n in sorted(self.counts.items())),
        )
