"""Shared by every test: loguru's sinks a test added are removed after it.

A command run in-process (typer's ``CliRunner``) sends loguru's records to the ``sys.stderr`` of that moment
(:func:`tradebus.ops.logs.setup_logging`): the runner's stream, closed once the command returns. The sink stayed,
and every record of a later test in the same worker failed on it with a "Logging error" traceback, slowing a
daemon test enough on a loaded machine to fail its timing (a feed going stale, a capture running out).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from loguru import logger


def _sink_ids() -> set[int]:
    return set(logger._core.handlers)  # type: ignore[attr-defined]  # noqa: SLF001  (loguru lists no sinks publicly)


@pytest.fixture(autouse=True)
def _loguru_sinks_of_the_test_removed() -> Iterator[None]:
    before = _sink_ids()
    yield
    for sink_id in _sink_ids() - before:
        logger.remove(sink_id)
