"""tradebus: an event-driven crypto trading framework.

One kernel runs a strategy three ways: a backtest over historical data, a
paper-trading daemon on live data with simulated fills, and a live-trading
daemon. Only the data source, the venue and the clock change between modes.
"""

__version__ = "0.1.0"

# Points Numba's on-disk cache at the project-owned directory before any tradebus
# kernel (features, order books) is compiled; see tradebus.features.cache_dir.
from tradebus import features as _features  # noqa: E402,F401
