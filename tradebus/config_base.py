"""The one base of every config model: unknown keys are errors, values never change after validation.

Every config section (``tradebus.config``, ``tradebus.node.config``, ``tradebus.execution.config``,
``tradebus.risk.config``, ``tradebus.ops.config``, ``tradebus.research.config`` and each venue's
``config.py``) derives from :class:`StrictModel`, so a misspelt key fails the same way
everywhere: a :class:`~tradebus.errors.ConfigError` naming the file and the key
(:func:`tradebus.config.config_error_from`). It imports nothing of tradebus, so any layer may use it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["StrictModel"]


class StrictModel(BaseModel):
    """A config section: ``extra="forbid"`` (an unknown key is an error) and ``frozen=True``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
