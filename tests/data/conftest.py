"""Fixtures shared by the data tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.data.test_data_binance_vision import Server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """An archive tree served on 127.0.0.1 (see :class:`Server`), stopped after the test."""
    srv = Server(tmp_path / "www")
    srv.thread.start()
    try:
        yield srv
    finally:
        srv.httpd.shutdown()
        srv.httpd.server_close()
