"""tradebus.risk."""
