"""Loading a venue's saved instruments response: the file part shared by the adapters."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tradebus.engine.instrument import Instrument
from tradebus.errors import DataError

__all__ = ["load_instruments_file"]


def load_instruments_file(
    path: str | Path, parse: Callable[[bytes, str], dict[str, Instrument]], venue: str
) -> dict[str, Instrument]:
    """``parse(body, venue)`` of the REST response saved at ``path``; a :class:`DataError` names the file.

    Raises
    ------
    DataError
        ``parse`` rejects the content (the message is prefixed with the path).
    """
    path = Path(path)
    try:
        return parse(path.read_bytes(), venue)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None
