"""Serve a local spot account (Binance or OKX) and a recorded public stream, for ``tradebus live`` without internet.

Usage::

    python scripts/live_demo.py tests/fixtures/binance/spot_btcusdt_20240808_head4000.gz \\
        --config configs/live_binance_testnet.yaml --write-config runs/live_local.yaml
    # in a second terminal, with the demo keys it prints:
    export TRADEBUS_BINANCE_API_KEY=demo-key TRADEBUS_BINANCE_API_SECRET=demo-secret
    tradebus live runs/live_local.yaml --out runs/live-local

    # OKX spot: a recording of its public stream (``record:`` of a paper daemon, or the shipped one)
    python scripts/live_demo.py tests/fixtures/okx/okx_v5_public_2022-05-13.jsonl.gz --venue okx \\
        --config configs/live_okx_spot_demo.yaml --write-config runs/live_okx_local.yaml

The account (:class:`~tradebus.adapters.binance.private_emulator.BinancePrivateEmulator`,
:class:`~tradebus.adapters.okx.private_emulator.OkxPrivateEmulator`) verifies the signed requests,
streams the private user data and fills orders on the trades the public server sends (each
venue's ``MatchingProtocol``). The written config is a copy of ``--config`` pointed at both
servers, its journal and recording beside it and every other path absolute (it names the
original's files). Stop with Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from tradebus.adapters.binance import private_emulator as binance_emu
from tradebus.adapters.binance.emulator import split_capture
from tradebus.adapters.common.account_emulator import AccountEmulator
from tradebus.adapters.common.local_server import LocalVenueServer, VenueProtocol
from tradebus.adapters.common.recorder import iter_hftbacktest, read_frames
from tradebus.adapters.okx import private_emulator as okx_emu
from tradebus.errors import ConfigError
from tradebus.node.live import LiveConfig, load_live_config
from tradebus.node.playback import read_local_config, write_local_config

KEY, SECRET, PASSPHRASE = "demo-key", "demo-secret", "demo-passphrase"
VENUES = ("binance", "okx")


def build(venue: str, recording: Path, config: LiveConfig) -> tuple[AccountEmulator, VenueProtocol, list[tuple[int, str]]]:
    """The account emulator of ``venue``, its public stream's protocol and the frames it serves from ``recording``."""
    instruments = config.instrument_map()
    balances = dict(config.balances or {"USDT": config.initial_cash})
    symbols = {inst.symbol: iid for iid, inst in instruments.items()}
    if venue == "okx":
        frames = [(t, raw if isinstance(raw, str) else raw.decode()) for t, _, raw in read_frames(recording)]
        okx_account = okx_emu.OkxPrivateEmulator(KEY, SECRET, instruments, balances, passphrase=PASSPHRASE)
        return okx_account, okx_emu.MatchingProtocol(frames, account=okx_account, instrument_ids=symbols), frames
    frames, snapshot = split_capture(list(iter_hftbacktest(recording)))
    account = binance_emu.BinancePrivateEmulator(KEY, SECRET, instruments, balances)
    lower = {symbol.lower(): iid for symbol, iid in symbols.items()}
    return account, binance_emu.MatchingProtocol(snapshot, account=account, instrument_ids=lower), frames


def keys_line(venue: str) -> str:
    """The ``export`` line of the demo keys the daemon reads for ``venue``."""
    prefix = f"TRADEBUS_{venue.upper()}_API_"
    line = f"export {prefix}KEY={KEY} {prefix}SECRET={SECRET}"
    return line + (f" {prefix}PASSPHRASE={PASSPHRASE}" if venue == "okx" else "")


async def serve(recording: Path, config_path: Path, out: Path, speed: float, venue: str) -> None:
    config = load_live_config(config_path)
    account, protocol, frames = build(venue, recording, config)
    await account.start()
    public = LocalVenueServer(protocol, frames, speed=speed, lifetime=86_400)
    await public.start()
    write_demo_config(config_path, out, (public.ws_url, public.http_url), (account.rest_url, account.ws_url), venue)
    print(f"account on {account.rest_url}, public stream on {public.ws_url}; config written to {out}")
    print(keys_line(venue))
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await public.stop()
    await account.stop()


def write_demo_config(
    config_path: Path, out: Path, public: tuple[str, str], account: tuple[str, str], venue: str = "binance"
) -> None:
    """Write to ``out`` the live config ``config_path`` pointed at the local servers, its journal and recording beside ``out``
    (in ``live-local/``, ``live-okx-local/`` for OKX).

    ``public`` is the market data server's (WebSocket, HTTP) URLs, ``account`` the account's
    (REST, private WebSocket) URLs. Every other path of the copy is absolute, naming the original's files.
    """
    data = read_local_config(config_path, venue)
    if venue == "binance":
        for feed in data.get("feeds") or []:
            feed["snapshot_fetcher"] = "http"
    data["live"] = {**(data.get("live") or {}), "rest_url": account[0], "ws_api_url": account[1]}
    # One run directory a venue: the two demos' copies side by side (runs/) would share a journal otherwise.
    run = out.resolve().parent / ("live-local" if venue == "binance" else f"live-{venue}-local")
    data["journal"], data["record"] = str(run / "journal.sqlite"), str(run / "frames.jsonl.gz")
    write_local_config(data, config_path, out, *public, model=LiveConfig, venue=venue)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "recording", type=Path,
        help="binance: hftbacktest capture of Binance spot (trades, depth); okx: a recording of OKX's public stream",
    )
    parser.add_argument("--venue", choices=VENUES, default="binance", help="the account and stream to serve")
    parser.add_argument("--config", type=Path, required=True, help="a live config to copy (feeds of --venue)")
    parser.add_argument("--write-config", type=Path, required=True, help="where to write the local copy")
    parser.add_argument("--speed", type=float, default=1.0, help="replay pace (1 = as recorded)")
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.recording, args.config, args.write_config, args.speed, args.venue))
    except ConfigError as exc:  # a bad --config: its message names the file and the key, a traceback adds nothing
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
