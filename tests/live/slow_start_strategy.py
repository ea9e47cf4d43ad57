"""A strategy that holds the daemon's start-up: its constructor writes ``ready`` and waits for ``go`` to exist."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from tradebus.config.base import StrictModel
from tradebus.strategies.base import Strategy

#: Seconds the constructor waits for ``go`` at most (the test creates it at once; a loaded machine may be slow).
GO_DEADLINE_S = 300.0


class SlowStartParams(StrictModel):
    """``ready``: the file written once the daemon is building its kernel; ``go``: the file it waits for."""

    ready: str
    go: str


class SlowStart(Strategy):
    """Does nothing but hold the daemon's construction (see :class:`SlowStartParams`)."""

    Params = SlowStartParams

    def __init__(self, instrument_ids: str | Sequence[str], *, ready: str, go: str, strategy_id: str | None = None) -> None:
        super().__init__(instrument_ids, strategy_id=strategy_id)
        Path(ready).write_text("building\n")
        deadline = time.monotonic() + GO_DEADLINE_S
        while not Path(go).exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{go} not created within {GO_DEADLINE_S} s")
            time.sleep(0.05)
