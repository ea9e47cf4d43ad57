"""The daemon test helpers of :mod:`tests.live.node_testdata`: what :func:`run_node` says when it gives up, and its
start bound against the pytest timeout."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tradebus.adapters.binance.emulator import BinanceProtocol
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.node.daemon import PaperNode

from .node_testdata import SPOT_FRAMES, SPOT_SNAPSHOT, START_BOUND, binance_config, config_of, run_node

ROOT = Path(__file__).resolve().parents[2]


async def test_a_daemon_that_ran_without_reaching_the_condition_is_said_to_have_been_running() -> None:
    """It said "not running after 600.0 s" of every daemon, as it read ``running`` after ``node.stop()`` cleared it:
    here one that ran (its trades fed) for its 1 s ``timeout`` with a condition that never holds."""
    async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), SPOT_FRAMES) as srv:
        node = PaperNode(config_of(binance_config(srv.ws_url, srv.http_url, ["trade"])), handle_signals=False)
        with pytest.raises(TimeoutError) as caught:
            await run_node(node, lambda: False, timeout=1.0)
    assert str(caught.value) == (
        "run_node: the condition did not hold and the daemon did not stop within 1.0 s (running)")


def test_the_start_bound_fails_a_slow_start_before_the_pytest_timeout_ends_the_worker() -> None:
    """``START_BOUND`` was the pytest timeout (600 s, by a thread): a start that never came ended the worker with no
    stack of the test rather than failing with run_node's TimeoutError. It now leaves the run's longest ``timeout``
    (120 s) and its stop (20 s) inside that timeout."""
    options = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["pytest"]["ini_options"]
    assert options["timeout_method"] == "thread"
    assert START_BOUND + 120.0 + 20.0 < options["timeout"]
