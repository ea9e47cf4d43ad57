"""Research output files: strict JSON and atomic writes.

Every JSON file a research command or system writes goes through :func:`json_text`: an
undefined figure (NaN, ±inf) is ``null``, as in a run's ``metrics.json``, so the files are
JSON any parser reads; NumPy scalars are plain numbers, tuples are lists, keys are strings,
and keys are sorted (same data, same bytes). A file is written to a hidden temporary name,
fsynced and renamed, so a failed run never leaves a half-written file; an OS error is a
:class:`~tradebus.errors.ConfigError` naming the file (exit 2).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from tradebus.reports.writers import write_file

__all__ = ["json_ready", "json_text", "write_json", "write_text"]


def json_ready(value: Any) -> Any:
    """``value`` with NaN and ±inf as ``None``, NumPy scalars as Python ones, tuples as lists, keys as strings."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_text(data: Any, indent: int | None = 2) -> str:
    """Strict JSON of ``data`` (:func:`json_ready`, sorted keys); ``indent=None``: one line.

    Raises
    ------
    TypeError
        A value JSON cannot hold (an object, an array).
    """
    return json.dumps(json_ready(data), indent=indent, sort_keys=True, allow_nan=False)


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`~tradebus.reports.writers.write_file`); return ``path``.

    Raises
    ------
    ConfigError
        An OS error (a full disk, a file size limit), naming ``path``.
    """
    return write_file(path, text)


def write_json(data: Any, path: Path, indent: int | None = 2) -> Path:
    """Write :func:`json_text` of ``data`` and a newline to ``path``; return ``path``."""
    return write_text(path, json_text(data, indent) + "\n")
