"""Loading a venue's saved instruments (or margin tiers) response: the file part shared by the adapters."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from tradebus.engine.instrument import Instrument
from tradebus.errors import DataError

__all__ = ["load_instruments_file", "load_response_file"]

_T = TypeVar("_T")


def load_instruments_file(
    path: str | Path, parse: Callable[[bytes, str], dict[str, Instrument]], venue: str
) -> dict[str, Instrument]:
    """``parse(body, venue)`` of the REST response saved at ``path``; a :class:`DataError` names the file.

    Raises
    ------
    DataError
        ``parse`` rejects the content (the message is prefixed with the path).
    """
    return load_response_file(path, lambda body: parse(body, venue))


def load_response_file(path: str | Path, parse: Callable[[bytes], _T]) -> _T:
    """``parse(body)`` of the REST response saved at ``path``; a :class:`DataError` names the file.

    Raises
    ------
    DataError
        The file cannot be read, or ``parse`` rejects the content (the message is prefixed with the path).
    """
    path = Path(path)
    try:
        return parse(path.read_bytes())
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None
