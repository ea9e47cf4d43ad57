"""Fixtures shared by the daemon and playback tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from loguru import logger


@pytest.fixture
def _loguru_to_current_stderr() -> Iterator[None]:
    """The CLI points loguru at the CliRunner's stderr, closed after the call: log to the live stderr again."""
    yield
    logger.remove()
    logger.add(lambda message: sys.stderr.write(message), level="DEBUG")
