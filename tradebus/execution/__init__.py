"""tradebus.execution."""
