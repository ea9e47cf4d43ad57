"""How the paper daemon stops when a step of its shutdown raises (closing the venue on a full disk, say).

Against the Binance spot capture served on 127.0.0.1, with a journal and a recording.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from tradebus.adapters.binance.emulator import BinanceProtocol
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.adapters.common.recorder import RUN_PREFIX, read_frames
from tradebus.node.daemon import PaperNode

from .node_testdata import SPOT_FRAMES, SPOT_SNAPSHOT, assert_journal_intact, binance_config, config_of, run_node

pytestmark = pytest.mark.usefixtures("compiled_kernels")


@pytest.mark.parametrize("kernel_fails_too", [False, True])
async def test_a_paper_shutdown_whose_venue_fails_to_close_still_closes_the_journal_and_the_recording(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernel_fails_too: bool
) -> None:
    """``venue.close()`` raising (ENOSPC) skipped the rest of the paper shutdown: the kernel was not stopped, the
    recording not closed (its last frames and the ``run:stop`` line lost) and the journal left open, held
    by the process, as nothing else closes a paper daemon's journal. Every step now runs; the first error
    is raised, a later one (the kernel's stop, here) logged."""
    lines: list[str] = []
    sink = logger.add(lines.append, level="ERROR", format="{level} {message}")
    try:
        async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), SPOT_FRAMES, lifetime=120.0) as srv:
            data = binance_config(srv.ws_url, srv.http_url, ["trade", "bookTicker"], tmp=tmp_path, journal=True,
                                  record=True)  # fmt: skip
            node = PaperNode(config_of(data), handle_signals=False)
            close = node.venue.close

            def close_failing() -> None:
                close()
                raise OSError(28, "No space left on device")

            monkeypatch.setattr(node.venue, "close", close_failing)
            if kernel_fails_too:
                stop = node.kernel.stop

                def stop_failing(**kwargs: Any) -> None:
                    stop(**kwargs)
                    raise RuntimeError("kernel: stopping failed (test)")

                monkeypatch.setattr(node.kernel, "stop", stop_failing)
            with pytest.raises(OSError, match="No space left on device"):
                await run_node(node, lambda: node.kernel.result.trades >= 200 and node.kernel.orders.created > 0)
    finally:
        logger.remove(sink)
    assert node.summary.stop_reason == "test done" and node.summary.stopped_ns > node.summary.started_ns > 0
    assert node.summary.orders == node.kernel.orders.created > 0
    assert_journal_intact(tmp_path / "journal.sqlite")
    recorded = list(read_frames(tmp_path / "frames.jsonl.gz", runs=True))
    assert recorded[-1][1] == RUN_PREFIX + "stop"  # the recording's last flush was made: read to its end
    assert len(recorded) - 2 == node.feeds[0].client.frames  # every frame received, between run:start and run:stop
    errors = [line.rstrip("\n") for line in lines if line.startswith("ERROR stopping:")]
    assert errors[0] == (
        "ERROR stopping: closing the venue failed (OSError: [Errno 28] No space left on device); the shutdown goes on"
    )
    if kernel_fails_too:
        assert errors[1] == (
            "ERROR stopping: stopping the kernel failed too (RuntimeError: kernel: stopping failed (test)); "
            "the first error is raised"
        )
    assert len(errors) == 1 + kernel_fails_too, lines


async def test_a_paper_daemon_cancelled_in_its_shutdown_still_records_the_stop_closes_its_files_and_is_cancelled(
    tmp_path: Path,
) -> None:
    """The daemon's task cancelled as its shutdown waits for the feeds to end (``asyncio.run`` ending on a second
    Ctrl-C, a caller's timeout): the cancellation ended the step "stopping the trading" there, so the timers were
    never stopped and ``run:stop`` never recorded (a replay then fires no timer due after the last frame), and it
    was logged as the step's failure. The feeds' step is cut short, logged as such; the strategies' step still
    records the stop, the journal and the recording are closed, and ``run()`` ends cancelled."""
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING", format="{level} {message}")

    def cancel_at_the_shutdown(message: Any) -> None:
        if message.record["message"].startswith("paper daemon stopping"):
            task = asyncio.current_task()  # the daemon's: the shutdown logs this line on it, then waits for the feeds
            assert task is not None
            task.cancel()

    canceller = logger.add(cancel_at_the_shutdown, level="INFO")
    try:
        async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), SPOT_FRAMES, lifetime=120.0) as srv:
            data = binance_config(srv.ws_url, srv.http_url, ["trade", "bookTicker"], tmp=tmp_path, journal=True,
                                  record=True)  # fmt: skip
            node = PaperNode(config_of(data), handle_signals=False)
            with pytest.raises(asyncio.CancelledError):
                await run_node(node, lambda: node.kernel.result.trades >= 200 and node.kernel.orders.created > 0)
    finally:
        logger.remove(canceller)
        logger.remove(sink)
    assert node.clock.stopped
    assert node.summary.stop_reason == "test done" and node.summary.orders == node.kernel.orders.created > 0
    assert_journal_intact(tmp_path / "journal.sqlite")
    recorded = list(read_frames(tmp_path / "frames.jsonl.gz", runs=True))
    assert recorded[-1][1] == RUN_PREFIX + "stop"  # recorded, and the recording closed: read to its end
    assert [line.rstrip("\n") for line in lines if line.startswith(("WARNING stopping:", "ERROR stopping:"))] == [
        "WARNING stopping: stopping the feeds was cut short, the daemon's task being cancelled; the shutdown goes on"
    ]
