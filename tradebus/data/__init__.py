"""Data tooling: the Parquet catalog, file import, replay and the ``tradebus data`` commands.

Not part of the core: the engine, features, strategies, risk, execution and reports import
nothing from here (``tests/test_architecture.py``). The kernel takes any object with a
``batches()`` method (:class:`tradebus.engine.kernel.ReplayLike`), which
:class:`tradebus.data.replay.Replay` is.
"""
