"""tradebus.adapters."""
