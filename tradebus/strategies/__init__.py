"""tradebus.strategies."""
