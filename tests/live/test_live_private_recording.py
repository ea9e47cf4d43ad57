"""A live daemon with ``record:`` records its private user-stream frames too, and replay is unchanged.

On every venue (Binance spot, OKX spot, Bybit spot) a live session trades the recorded public
stream against the local account emulator, which counts the private frames it sends. The
recording then holds every one of them, verbatim, in order, under ``private:`` connection
ids (read here with ``gzip`` and ``json``, not with the recorder's reader), with the order
events among them; it holds neither the key, the secret nor the passphrase; and
``tradebus replay`` of it writes byte for byte the outputs of a replay of the same file with
the private lines cut out (the market data alone).
"""

from __future__ import annotations

import asyncio
import gzip
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tests.live.live_harness import KEY, SECRET, WAIT, answered, session_trades, trade_after_market_orders, until
from tests.live.node_testdata import BINANCE_INSTRUMENT, IID, SPOT_FRAMES, SPOT_SNAPSHOT
from tests.live.venue_kits import KITS, PASSPHRASE, VenueKit, counting
from tradebus.adapters.binance import private_emulator as binance_emu
from tradebus.adapters.common.account_emulator import AccountEmulator
from tradebus.adapters.common.local_server import LocalVenueServer, VenueProtocol
from tradebus.adapters.common.recorder import FrameRecorder, PrivateFrames
from tradebus.cli import app
from tradebus.engine.messages import OrderStatus
from tradebus.node.live import ApiKeys, LiveNode, parse_live_config


def _binance_protocol(frames: list[tuple[int, str]], account: AccountEmulator) -> VenueProtocol:
    return binance_emu.MatchingProtocol(SPOT_SNAPSHOT, account=account, instrument_ids={"btcusdt": IID})


BINANCE = VenueKit(
    venue="binance",
    iid=IID,
    instrument={**BINANCE_INSTRUMENT, "margin": False},
    frames=SPOT_FRAMES,
    channels=["trade"],
    base="BTC",
    make_emulator=binance_emu.BinancePrivateEmulator,
    make_protocol=_binance_protocol,
    env={"TRADEBUS_BINANCE_API_KEY": KEY, "TRADEBUS_BINANCE_API_SECRET": SECRET},
    place_path="/api/v3/order",
    fill_frame='"x": "TRADE"',
)
ALL = {"binance": BINANCE, **KITS}
_IN_FLIGHT = (OrderStatus.INITIALIZED, OrderStatus.SUBMITTED, OrderStatus.UNKNOWN)


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines() if line]


@pytest.mark.slow
@pytest.mark.parametrize("kit", list(ALL.values()), ids=list(ALL))
async def test_private_frames_are_recorded_without_secrets_and_replay_is_unchanged(
    kit: VenueKit, tmp_path: Path, _loguru_to_current_stderr: None
) -> None:
    live_dir = tmp_path / "live"
    emulator = counting(kit)(KEY, SECRET, kit.instruments(), {"USDT": 100_000.0}, passphrase=PASSPHRASE)
    async with emulator:
        async with LocalVenueServer(kit.make_protocol(kit.frames, emulator), kit.frames, speed=8.0) as srv:
            data = kit.config(live_dir, srv.ws_url, emulator, cancel_on_stop=False)
            config = parse_live_config(data, "<test>")
            node = LiveNode(config, ApiKeys.from_env(config.live, kit.env), handle_signals=False)
            handled = session_trades(node.kernel)
            task = asyncio.create_task(node.run())
            try:
                # the whole stream sent and handled by the daemon (on a loaded machine it may handle the trade its
                # strategy crosses on after the server sent the last one: the market goes on, one more trade)
                await until(
                    lambda: task.done() or (node.running.is_set() and srv.cursor == len(kit.frames) and handled() == len(emulator.seen)),
                    timeout=WAIT,
                )
                if not task.done():
                    await trade_after_market_orders(node.kernel, emulator, emulator.seen[-1])
                    await answered(node.kernel)
                # nothing in flight, every private frame sent has been received
                await until(
                    lambda: task.done()
                    or (
                        not node.guard.holds
                        and not any(o.status in _IN_FLIGHT for o in node.kernel.orders.orders())
                        and isinstance(node.stream.recorder, PrivateFrames)
                        and node.stream.recorder.frames == len(emulator.sent)
                    ),
                    timeout=WAIT,
                )
            finally:
                node.stop("test done")
                await asyncio.wait_for(task, 20)
    assert emulator.fills, "the strategy traded"
    recording = Path(data["record"])
    lines = _lines(recording)
    private = [line for line in lines if line["c"].startswith("private:")]
    # every frame the emulator sent on the private stream, verbatim and in order (no frame sent by the daemon)
    assert [line["d"] for line in private] == emulator.sent
    assert {line["c"].split(":")[1] for line in private} == {node.stream.name}
    assert sum(kit.fill_frame in line["d"] for line in private) >= len(emulator.fills)  # the order events
    assert len(lines) > len(private)  # the public frames are there too
    raw = gzip.decompress(recording.read_bytes())
    for secret in (KEY, SECRET, PASSPHRASE):
        assert secret.encode() not in raw

    # tradebus replay: the same outputs as a replay of the market data alone
    public = tmp_path / "public.jsonl.gz"
    with FrameRecorder(public) as rec:
        for line in lines:
            if not line["c"].startswith("private:"):
                rec.write(line["t"], line["c"], line["d"])
    paper = {k: v for k, v in data.items() if k not in ("live", "journal", "record")}
    cfg = tmp_path / "paper.yaml"
    cfg.write_text(yaml.safe_dump(paper))
    runner = CliRunner()
    for rec_path, out in ((recording, "with"), (public, "without")):
        res = runner.invoke(app, ["replay", str(rec_path), "--config", str(cfg), "--out", str(tmp_path / out)])
        assert res.exit_code == 0, res.output
    names = sorted(p.name for p in (tmp_path / "with").iterdir())
    assert {"fills.csv", "orders.csv", "playback.json"} <= set(names)
    for name in names:
        if name != "config.yaml":
            assert (tmp_path / "with" / name).read_bytes() == (tmp_path / "without" / name).read_bytes(), name
    assert len((tmp_path / "with" / "fills.csv").read_text().splitlines()) > 1  # the replay trades
    assert json.loads((tmp_path / "with" / "playback.json").read_text())["skipped_connections"] == {}
