"""tradebus: an event-driven crypto trading framework.

One kernel runs a strategy three ways: a backtest over historical data, a
paper-trading daemon on live data with simulated fills, and a live-trading
daemon. Only the data source, the venue and the clock change between modes.
"""

__version__ = "0.1.0"
