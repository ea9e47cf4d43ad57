"""Serve a local Binance spot account and a recorded public stream, for ``tradebus live`` without internet.

Usage::

    python scripts/live_demo.py tests/fixtures/binance/spot_btcusdt_20240808_head4000.gz \\
        --config configs/live_binance_testnet.yaml --write-config runs/live_local.yaml
    # in a second terminal, with the demo keys it prints:
    export TRADEBUS_BINANCE_API_KEY=demo-key TRADEBUS_BINANCE_API_SECRET=demo-secret
    tradebus live runs/live_local.yaml --out runs/live-local

The account (:class:`~tradebus.adapters.binance.private_emulator.BinancePrivateEmulator`)
verifies the signed requests, streams the user data and fills orders on the trades the public
server sends (:class:`~tradebus.adapters.binance.private_emulator.MatchingProtocol`). The
written config is a copy of ``--config`` pointed at both servers, its journal and recording
beside it. Stop with Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

import yaml

from tradebus.adapters.binance.emulator import split_capture
from tradebus.adapters.binance.private_emulator import BinancePrivateEmulator, MatchingProtocol
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.adapters.common.recorder import iter_hftbacktest
from tradebus.node.live import load_live_config

KEY, SECRET = "demo-key", "demo-secret"


async def serve(recording: Path, config_path: Path, out: Path, speed: float) -> None:
    config = load_live_config(config_path)
    instruments = config.instrument_map()
    frames, snapshot = split_capture(list(iter_hftbacktest(recording)))
    account = BinancePrivateEmulator(KEY, SECRET, instruments, dict(config.balances or {"USDT": config.initial_cash}))
    await account.start()
    symbols = {inst.symbol.lower(): iid for iid, inst in instruments.items()}
    public = LocalVenueServer(MatchingProtocol(snapshot, account=account, instrument_ids=symbols), frames, speed=speed, lifetime=86_400)
    await public.start()
    data = yaml.safe_load(config_path.read_text())
    for feed in data["feeds"]:
        feed.update(ws_url=public.ws_url, rest_url=public.http_url, snapshot_fetcher="http")
    data["live"] = {**data.get("live", {}), "rest_url": account.rest_url, "ws_api_url": account.ws_api_url}
    data["journal"], data["record"] = str(out.parent / "live-local" / "journal.sqlite"), str(out.parent / "live-local" / "frames.jsonl.gz")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    print(f"account on {account.rest_url}, public stream on {public.ws_url}; config written to {out}")
    print(f"export TRADEBUS_BINANCE_API_KEY={KEY} TRADEBUS_BINANCE_API_SECRET={SECRET}")
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await public.stop()
    await account.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recording", type=Path, help="hftbacktest capture of Binance spot (trades, depth)")
    parser.add_argument("--config", type=Path, required=True, help="a live config to copy")
    parser.add_argument("--write-config", type=Path, required=True, help="where to write the local copy")
    parser.add_argument("--speed", type=float, default=1.0, help="replay pace (1 = as recorded)")
    args = parser.parse_args()
    asyncio.run(serve(args.recording, args.config, args.write_config, args.speed))


if __name__ == "__main__":
    main()
