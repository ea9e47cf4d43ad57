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
beside it and every other path absolute (it names the original's files). Stop with Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from tradebus.adapters.binance.emulator import split_capture
from tradebus.adapters.binance.private_emulator import BinancePrivateEmulator, MatchingProtocol
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.adapters.common.recorder import iter_hftbacktest
from tradebus.node.live import LiveConfig, load_live_config
from tradebus.node.playback import read_local_config, write_local_config

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
    write_demo_config(config_path, out, (public.ws_url, public.http_url), (account.rest_url, account.ws_api_url))
    print(f"account on {account.rest_url}, public stream on {public.ws_url}; config written to {out}")
    print(f"export TRADEBUS_BINANCE_API_KEY={KEY} TRADEBUS_BINANCE_API_SECRET={SECRET}")
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await public.stop()
    await account.stop()


def write_demo_config(config_path: Path, out: Path, public: tuple[str, str], account: tuple[str, str]) -> None:
    """Write to ``out`` the live config ``config_path`` pointed at the local servers, its journal and recording beside ``out``.

    ``public`` is the market data server's (WebSocket, HTTP) URLs, ``account`` the account's
    (REST, WebSocket API) URLs. Every other path of the copy is absolute, naming the original's files.
    """
    data = read_local_config(config_path, "binance")
    for feed in data.get("feeds") or []:
        feed["snapshot_fetcher"] = "http"
    data["live"] = {**(data.get("live") or {}), "rest_url": account[0], "ws_api_url": account[1]}
    run = out.resolve().parent / "live-local"
    data["journal"], data["record"] = str(run / "journal.sqlite"), str(run / "frames.jsonl.gz")
    write_local_config(data, config_path, out, *public, model=LiveConfig)


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
