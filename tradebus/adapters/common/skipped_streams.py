"""Frames of streams a feed did not subscribe: skipped and counted (:class:`SkippedStreams`).

A recording holds every stream its recorder subscribed; a replay under a config that
subscribes fewer must not use the others (a live run of that config never receives them).
Each such stream is named at WARNING at its first frame, and the counts once more at the
run's end, so that a replay of hours of frames logs a few lines, not one per frame.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from loguru import logger

__all__ = ["SkippedStreams"]


class SkippedStreams:
    """The frames a feed skipped, per stream name.

    Parameters
    ----------
    label
        Names the feed in the log lines (``"binance usdm"``, ``"okx-public"``).
    subscribed
        The feed's stream names, in the venue's spelling of a frame's stream.

    Attributes
    ----------
    counts
        Frames skipped per stream name.
    """

    def __init__(self, label: str, subscribed: Iterable[str]) -> None:
        self.label = label
        self.subscribed = tuple(subscribed)
        self.counts: Counter[str] = Counter()

    def skip(self, stream: str, hint: str = "") -> None:
        """Count a frame of ``stream``; at its first, log a WARNING naming it (``hint`` follows its name)."""
        counts = self.counts
        counts[stream] += 1
        if counts[stream] > 1:
            return
        logger.warning(
            "{}: skipping the frames of unsubscribed stream {!r}{} (subscribed: {}); "
            "their count is logged at the end of the run",
            self.label,
            stream,
            hint,
            ", ".join(self.subscribed),
        )

    def log(self) -> None:
        """Log, in one WARNING, how many frames of each stream were skipped (nothing if none)."""
        if not self.counts:
            return
        logger.warning(
            "{}: skipped frames of unsubscribed streams: {}",
            self.label,
            ", ".join(f"{stream!r} {n:,}" for stream, n in sorted(self.counts.items())),
        )
