"""Operations for the daemons: Prometheus metrics, health, Telegram alerts and control, logs.

A daemon (paper or live) builds one :class:`tradebus.ops.hooks.OpsHooks` from its config's
``ops:`` block and calls it at a few points (start, its feeds' sink, stop); everything else is
observed on the kernel's message bus. Only the config models are imported here, so a config
can be validated without loading the HTTP and Prometheus clients.
"""

from tradebus.ops.config import LogConfig, OpsConfig, TelegramConfig

__all__ = ["LogConfig", "OpsConfig", "TelegramConfig"]
