"""tradebus.research."""
