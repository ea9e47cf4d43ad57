"""tradebus.reports."""
