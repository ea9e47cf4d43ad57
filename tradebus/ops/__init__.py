"""Operations for the daemons: Prometheus metrics, health, Telegram alerts and control, logs.

A daemon (paper or live) builds one :class:`~tradebus.ops.hooks.OpsHooks` from its config's
``ops:`` block and calls it at a few points (start, its feeds' sink, stop); everything else is
observed on the kernel's message bus.
"""

from tradebus.ops.config import LogConfig, OpsConfig, TelegramConfig
from tradebus.ops.hooks import OpsHooks

__all__ = ["LogConfig", "OpsConfig", "OpsHooks", "TelegramConfig"]
