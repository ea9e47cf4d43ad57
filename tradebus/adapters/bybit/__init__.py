"""Bybit v5 public market data: schemas, parser (``BybitParser.parse_frame``), book rules, client, instruments."""
