"""OKX v5 public market data: schemas, parser (``OkxParser.parse_frame``), book rules, client, instruments."""
