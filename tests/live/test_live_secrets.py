"""No key, secret, passphrase or listen key in anything a live daemon writes, on the paths where it fails.

On each live account (Binance spot, Binance USD-M, OKX, Bybit) against its local emulator,
with distinctive credentials from the environment: a daemon whose submits meet a 429, a 418
ban, a submit withdrawn behind the pause, a lost answer, a 503, an answer too late (the
query settles it) and a denied order, with the log at TRACE, a journal and a recording of
the private frames; then ``tradebus live`` and ``tradebus live-kill`` with a wrong secret
and with a wrong key (the venue refuses the signature or the key). Neither the credentials
nor their URL-quoted or base64 forms, nor the USD-M listen key (it reads the account; an expired
one too, which Binance's ``listenKeyExpired`` frame carries), may appear in the log, the command
output, the run directory, the journal's SQL dump or the recording.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import sqlite3
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from loguru import logger
from typer.testing import CliRunner

from tests.live.live_harness import until
from tests.live.node_testdata import BINANCE_INSTRUMENT, IID, SPOT_FRAMES, SPOT_SNAPSHOT, USDM_CAPTURE, USDM_IID, USDM_INSTRUMENT
from tests.live.venue_kits import KITS
from tradebus.adapters.binance import private_emulator as binance_emu
from tradebus.adapters.binance.emulator import split_capture
from tradebus.adapters.common.account_emulator import AccountEmulator, RestFault
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.adapters.common.recorder import iter_hftbacktest
from tradebus.cli import app
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import OrderSide, OrderStatus, OrderType, SubmitOrder
from tradebus.execution.orders import Order
from tradebus.node.live import ApiKeys, LiveNode, parse_live_config

KEY = "AKIAXXXXSECRETKEY1234"
SECRET = "SECRETxyzHMACsecret5678QQ"
PASSPHRASE = "PHRASEpass9012ZZ"
USDM_FRAMES, USDM_SNAPSHOT = split_capture(list(iter_hftbacktest(USDM_CAPTURE)))


@dataclass(frozen=True)
class Account:
    """One live account: its emulator, public stream, order path and config."""

    venue: str
    market: str
    iid: str
    instrument: dict[str, Any]
    place: tuple[str, str]
    price: float
    qty: float

    @property
    def env_prefix(self) -> str:
        return f"TRADEBUS_{'BINANCE' if self.venue == 'usdm' else self.venue.upper()}_API_"

    def env(self, key: str = KEY, secret: str = SECRET) -> dict[str, str]:
        p = self.env_prefix
        return {p + "KEY": key, p + "SECRET": secret, p + "PASSPHRASE": PASSPHRASE}

    @asynccontextmanager
    async def served(self, tmp: Path, rest_faults: list[RestFault]) -> AsyncIterator[tuple[AccountEmulator, dict[str, Any]]]:
        """The account emulator and public stream running, and a live config trading on them."""
        inst = Instrument(**self.instrument)
        if self.venue in KITS:
            kit = KITS[self.venue]
            emulator = kit.make_emulator(KEY, SECRET, {self.iid: inst}, {"USDT": 100_000.0}, rest_faults, passphrase=PASSPHRASE)
            protocol, frames = kit.make_protocol(kit.frames, emulator), kit.frames
            feed = {"venue": self.venue, "market": "spot", "subscriptions": {self.iid: kit.channels}}
        elif self.venue == "binance":
            emulator = binance_emu.BinancePrivateEmulator(KEY, SECRET, {self.iid: inst}, {"USDT": 100_000.0}, rest_faults)
            protocol = binance_emu.MatchingProtocol(SPOT_SNAPSHOT, account=emulator, instrument_ids={"btcusdt": self.iid})
            frames = SPOT_FRAMES
            feed = {"venue": "binance", "market": "spot", "subscriptions": {self.iid: ["trade"]}}
        else:
            emulator = binance_emu.BinanceFuturesEmulator(KEY, SECRET, {self.iid: inst}, {"USDT": 100_000.0}, rest_faults)
            protocol = binance_emu.MatchingProtocol(USDM_SNAPSHOT, futures=True, account=emulator, instrument_ids={"btcusdt": self.iid})
            frames = USDM_FRAMES
            feed = {"venue": "binance", "market": "usdm", "subscriptions": {self.iid: ["trade"]}}
        async with emulator, LocalVenueServer(protocol, frames, speed=4.0) as srv:
            ws_api = getattr(emulator, "ws_api_url", emulator.ws_url) if self.venue == "binance" else emulator.ws_url
            yield emulator, {
                "instruments": [self.instrument],
                "strategy": {"name": "tradebus.strategies.tick_ema:TickEmaCross", "instruments": [self.iid],
                             "params": {"fast": 1000, "slow": 2000, "quantity": self.qty}},  # never crosses: the test places every order
                "venue": {"fill_on": "trades"},
                "feeds": [{**feed, "ws_url": srv.ws_url, "backoff": {"base": 0.05, "cap": 0.2, "min_delay": 0.01}}],
                "warm_up": False,
                "initial_cash": 100_000.0,
                "journal": str(tmp / "journal.sqlite"),
                "record": str(tmp / "frames.jsonl.gz"),
                "live": {
                    "market": self.market, "rest_url": emulator.rest_url, "ws_api_url": ws_api,
                    "request_timeout": 0.5, "submit_timeout": 0.5, "cancel_timeout": 0.5, "retry_interval": 0.2,
                    "not_found_grace": 2.0,
                },
            }


ACCOUNTS = {
    "binance": Account("binance", "spot", IID, {**BINANCE_INSTRUMENT, "margin": False}, ("POST", "/api/v3/order"), 10_000.0, 0.01),
    "usdm": Account("usdm", "perpetual", USDM_IID, USDM_INSTRUMENT, ("POST", "/fapi/v1/order"), 10_000.0, 0.01),
    "okx": Account("okx", "spot", KITS["okx"].iid, KITS["okx"].instrument, ("POST", "/api/v5/trade/order"), 1_000.0, 0.001),
    "bybit": Account("bybit", "spot", KITS["bybit"].iid, KITS["bybit"].instrument, ("POST", "/v5/order/create"), 1_000.0, 0.001),
}


def _forms(secret: str) -> Iterator[str]:
    """``secret`` as it could be written: itself, URL-quoted, base64."""
    yield secret
    yield urllib.parse.quote(secret, safe="")
    yield base64.b64encode(secret.encode()).decode()


def _leaks(texts: dict[str, bytes], secrets: list[str]) -> list[str]:
    return [f"{secret[:6]}... ({form[:8]}...) in {where}" for where, raw in texts.items()
            for secret in secrets for form in _forms(secret) if form.encode() in raw]


def _written(tmp: Path) -> dict[str, bytes]:
    """Every file under ``tmp``: a recording decompressed, a journal as its SQL dump."""
    out = {}
    for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
        elif raw.startswith(b"SQLite format 3"):
            with sqlite3.connect(path) as con:
                raw = "\n".join(con.iterdump()).encode()
            con.close()
        out[str(path.relative_to(tmp))] = raw
    return out


def _faults(account: Account) -> list[RestFault]:
    method, path = account.place
    return [
        RestFault("rate_limit", method, path, at=0, retry_after=2),
        RestFault("ban", method, path, at=1, retry_after=1),
        RestFault("lose", method, path, at=2),
        RestFault("error5xx", method, path, at=3),
        RestFault("slow", method, path, at=4, seconds=1.5),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ACCOUNTS))
async def test_no_credential_in_the_log_run_directory_journal_or_recording_when_requests_fail(name: str, tmp_path: Path) -> None:
    account = ACCOUNTS[name]
    lines: list[str] = []
    sink = logger.add(lines.append, level="TRACE", format="{level} {message}\n{exception}", diagnose=False)
    faults = _faults(account)
    expired: list[str] = []
    try:
        async with account.served(tmp_path, faults) as (emulator, data):
            config = parse_live_config(data, "<test>")
            node = LiveNode(config, ApiKeys.from_env(config.live, account.env()), handle_signals=False)
            task = asyncio.create_task(node.run())
            try:
                await until(lambda: task.done() or node.running.is_set(), timeout=30)
                assert not task.done()

                def submit(price: float, qty: float = account.qty) -> Order:
                    now = node.clock.now_ns()
                    return node.kernel.execution.submit(
                        SubmitOrder("TickEmaCross", account.iid, "", OrderSide.BUY, qty, now, now, OrderType.LIMIT, price)
                    )

                def settled(order: Order) -> bool:
                    return order.status not in (OrderStatus.SUBMITTED, OrderStatus.UNKNOWN)

                rate_limited = submit(account.price)  # 429
                await until(lambda: settled(rate_limited), timeout=10)
                withdrawn = submit(account.price)  # behind the pause: never sent
                await until(lambda: settled(withdrawn), timeout=10)
                await asyncio.sleep(1.0)
                for _ in range(12):  # 418, lost answer, 503, late answer (the strategy's orders meet some)
                    if all(f.fired for f in faults):
                        break
                    await asyncio.sleep(1.1)  # the pause has ended
                    order = submit(account.price)
                    await until(lambda: settled(order), timeout=15)  # noqa: B023 - awaited at once
                denied = submit(account.price, qty=account.qty / 1e6)  # under the lot size: the risk gate denies it
                await until(lambda: settled(denied), timeout=10)
                resting = submit(account.price)
                await until(lambda: resting.status is OrderStatus.ACCEPTED, timeout=10)
                if name == "usdm":
                    # the listen key lapses: Binance pushes listenKeyExpired carrying it; the daemon takes a new one
                    connections = node.stream.connections
                    expired.append(emulator.expire_listen_key())
                    await until(lambda: node.stream.connections > connections and node.stream.subscribed.is_set()
                                and emulator.listen_key not in ("", expired[0]), timeout=15)
            finally:
                node.stop("test done")
                await asyncio.wait_for(task, 20)
            listen_key = getattr(emulator, "listen_key", "")
    finally:
        logger.remove(sink)
    assert all(f.fired for f in faults), [f.kind for f in faults if not f.fired]
    log = "".join(lines)
    assert "withdrawn, never sent" in log and "private:" in _written(tmp_path)["frames.jsonl.gz"].decode()
    secrets = [KEY, SECRET, PASSPHRASE] + ([listen_key] if listen_key else []) + expired
    assert name != "usdm" or listen_key
    assert _leaks({"log": log.encode(), **_written(tmp_path)}, secrets) == []
    if name == "usdm":  # the expiry frame was received and recorded, its key redacted
        recorded = _written(tmp_path)["frames.jsonl.gz"].decode()
        assert '\\"e\\": \\"listenKeyExpired\\"' in recorded and '\\"listenKey\\": \\"<redacted>\\"' in recorded, recorded[-2000:]


@pytest.mark.parametrize("name", list(ACCOUNTS))
@pytest.mark.parametrize("wrong", ["secret", "key"])
def test_no_credential_in_the_output_of_commands_the_venue_refuses(
    name: str, wrong: str, tmp_path: Path, _loguru_to_current_stderr: None
) -> None:
    """``tradebus live`` and ``tradebus live-kill`` with a wrong secret (bad signature) or a wrong key."""
    import threading

    import yaml

    account = ACCOUNTS[name]
    bad_key, bad_secret = ("WRONGkey0000wrongKEY", SECRET) if wrong == "key" else (KEY, "WRONGsecret0000wrongSECRET")
    ready = threading.Event()
    served: dict[str, Any] = {}

    def servers() -> None:
        async def main() -> None:
            async with account.served(tmp_path, []) as (_, data):
                done = asyncio.Event()
                served.update(data=data, stop=(asyncio.get_running_loop(), done))
                ready.set()
                await done.wait()

        asyncio.run(main())

    thread = threading.Thread(target=servers, daemon=True)
    thread.start()
    assert ready.wait(30)
    try:
        path = tmp_path / "live.yaml"
        path.write_text(yaml.safe_dump(served["data"]))
        env = account.env(bad_key, bad_secret)
        runner = CliRunner()
        live = runner.invoke(app, ["live", str(path), "--out", str(tmp_path / "out"), "--max-seconds", "3", "--log-level", "TRACE"], env=env)
        kill = runner.invoke(app, ["live-kill", str(path)], env=env)
    finally:
        loop, done = served["stop"]
        loop.call_soon_threadsafe(done.set)
        thread.join(20)
    # refused credentials are the user's config to fix: exit 2, as a config error (it was 1, as a venue failure)
    assert live.exit_code == 2 and kill.exit_code != 0, (live.output, kill.output)
    secrets = [KEY, SECRET, PASSPHRASE, bad_key, bad_secret]
    texts = {"live output": live.output.encode(), "live-kill output": kill.output.encode(), **_written(tmp_path)}
    assert _leaks(texts, secrets) == []
