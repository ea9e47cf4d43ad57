"""The one base of every config model: unknown keys are errors, values never change after validation.

Every config section (``tradebus.config``, ``tradebus.node.config``, ``tradebus.execution.config``,
``tradebus.risk.config``, ``tradebus.ops.config``, ``tradebus.research.config`` and each venue's
``config.py``) derives from :class:`StrictModel`, so a misspelt key fails the same way
everywhere: a :class:`~tradebus.errors.ConfigError` naming the file and the key
(:func:`tradebus.config.config_error_from`). Strategy parameters, sweep spaces, stress variants
and research datasets derive from it too. :func:`resolve_path` is the one rule for a relative
path in a config (against the config file's directory). It imports nothing of tradebus, so any
layer may use it.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

__all__ = ["StrictModel", "resolve_path"]


class StrictModel(BaseModel):
    """A config section: ``extra="forbid"`` (an unknown key is an error) and ``frozen=True``."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def resolve_path(path: Path | None, base: Path) -> Path | None:
    """``path`` made absolute against ``base`` (the directory of the config that names it).

    An absolute ``path`` is kept (normalised); ``None`` stays ``None``.
    """
    return None if path is None else (path if path.is_absolute() else base / path).resolve()
