"""Fixtures shared by the daemon and playback tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from loguru import logger

from .node_testdata import kernels_compiled


@pytest.fixture(scope="module")
def compiled_kernels() -> None:
    """The feature and the book kernels compiled (or loaded) in this worker before a module's tests start their local
    servers and daemons (``pytestmark = pytest.mark.usefixtures("compiled_kernels")``): a daemon's own warm-up then
    loads them from the disk cache. Compiled cold during a run on a loaded machine (295 s measured), they outlasted
    the servers' lifetimes and the runs' bounds."""
    kernels_compiled()


@pytest.fixture
def _loguru_to_current_stderr() -> Iterator[None]:
    """The CLI points loguru at the CliRunner's stderr, closed after the call: log to the live stderr again."""
    yield
    logger.remove()
    logger.add(lambda message: sys.stderr.write(message), level="DEBUG")
