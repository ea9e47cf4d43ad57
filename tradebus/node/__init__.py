"""The paper (and later live) trading daemon, and playback of its recordings.

This is an integration layer, like the CLI: it wires the venue adapters to the
kernel. The core (engine, features, strategies, risk, execution) never imports
an adapter; this package does, but reaches each venue only through the registry
(:mod:`tradebus.adapters.registry`) and never names one.
"""
