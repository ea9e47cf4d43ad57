"""``tradebus live`` on OKX and Bybit testnet configs against their local account emulators.

The same scenario on every venue kit (:mod:`tests.live.venue_kits`): the daemon trades the
recorded public stream, places and cancels a resting order, stops leaving one order working;
while it is down that order fills and someone places an order by hand; the restarted daemon
books the missed fill from the venue's trade history once, reports the hand-placed order as
external and leaves it alone. Nothing is lost or doubled (every venue fill booked once, each
client id posted once, the position equal to the account's balance), and neither the key,
the secret nor the passphrase appears in any file the runs wrote or in the log.
"""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from tests.live.live_harness import KEY, SECRET, session_trades, until
from tests.live.venue_kits import KITS, PASSPHRASE, VenueKit, counting
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.engine.messages import CancelOrder, OrderSide, OrderStatus, OrderType, SubmitOrder, Trade
from tradebus.execution.orders import Order
from tradebus.node.live import ApiKeys, LiveNode, parse_live_config


def _submit(node: LiveNode, iid: str, price: float, qty: float = 0.001) -> Order:
    now = node.clock.now_ns()
    return node.kernel.execution.submit(SubmitOrder("TickEmaCross", iid, "", OrderSide.BUY, qty, now, now, OrderType.LIMIT, price))


async def _run(node: LiveNode, done: Any, timeout: float = 30.0) -> None:
    task = asyncio.create_task(node.run())
    try:
        await until(lambda: task.done() or (node.running.is_set() and done()), timeout=timeout)
    finally:
        node.stop("test done")
        await asyncio.wait_for(task, 20)


@pytest.mark.slow
@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_live_trades_cancels_restarts_and_reconciles(kit: VenueKit, tmp_path: Path) -> None:
    log = tmp_path / "daemon.log"
    sink = logger.add(log, level="DEBUG")
    n_trades = sum(1 for _, raw in kit.frames if kit.iid.split(".")[0] in raw and ("trades" in raw or "publicTrade" in raw))
    try:
        async with counting(kit)(KEY, SECRET, kit.instruments(), {"USDT": 100_000.0}, passphrase=PASSPHRASE) as emulator:
            async with LocalVenueServer(kit.make_protocol(kit.frames, emulator), kit.frames, speed=8.0) as srv:
                config = parse_live_config(kit.config(tmp_path, srv.ws_url, emulator, cancel_on_stop=False), "<test>")
                assert config.live.environment == "testnet"
                keys = ApiKeys.from_env(config.live, kit.env)
                first = LiveNode(config, keys, handle_signals=False)
                handled = session_trades(first.kernel)
                held: dict[str, Order] = {}

                def first_done() -> bool:
                    if first.guard.holds or srv.cursor < len(kit.frames):
                        return False  # the whole stream sent, the start-up reconciliation passed
                    if not held and handled() < len(emulator.seen):
                        return False  # the daemon, which may run behind the server, handled every trade sent
                    if any(o.status is OrderStatus.SUBMITTED for o in first.kernel.orders.orders()):
                        return False  # the strategy's last orders reach the venue
                    if not held:
                        # The market goes on: the strategy's last market order fills at the next trade.
                        last = emulator.clock.now_ns() + 10**6
                        emulator.on_trade(Trade(kit.iid, last, last, first.kernel.cache.price(kit.iid), 1.0, 1, "after-1"))
                        held["rest"] = _submit(first, kit.iid, 1_000.0)
                        held["cancel"] = _submit(first, kit.iid, 1_100.0)
                    cancel = held["cancel"]
                    if cancel.status is OrderStatus.ACCEPTED and "sent" not in held:
                        now = first.clock.now_ns()
                        first.kernel.execution.cancel(CancelOrder("TickEmaCross", kit.iid, cancel.client_order_id, now, now))
                        held["sent"] = cancel
                    return held["rest"].status is OrderStatus.ACCEPTED and cancel.status is OrderStatus.CANCELED

                await _run(first, first_done, timeout=60)
                rest = held["rest"].client_order_id
                assert emulator.orders[rest].status is OrderStatus.ACCEPTED  # left working (cancel_on_stop off)
                assert emulator.orders[held["cancel"].client_order_id].status is OrderStatus.CANCELED
                assert emulator.fills, "the strategy traded"
                # While the daemon is down: the resting order fills, and an order is placed by hand.
                last = emulator.clock.now_ns()
                emulator.on_trade(Trade(kit.iid, last + 10**9, last + 10**9, 999.0, 1.0, -1, "down-1"))
                assert emulator.orders[rest].status is OrderStatus.FILLED
                manual = config.live.account().trading(
                    emulator.rest_url, keys.key, keys.secret, config.instrument_map(), 2.0, **keys.options(config.live)
                )
                await manual.place(Order("byhand1", "", kit.iid, OrderSide.SELL, OrderType.LIMIT, 0.0001, 900_000.0))
                await manual.close()

                second = LiveNode(config, keys, handle_signals=False)
                await _run(
                    second,
                    lambda: second.kernel.orders.get(rest) is not None
                    and second.kernel.orders.order(rest).status is OrderStatus.FILLED
                    and not second.guard.holds,
                )
    finally:
        logger.remove(sink)
    assert n_trades > 0
    # the missed fill booked once, with the venue's trade id
    venue_fills = {str(f.trade_id) for f in emulator.fills if f.rec.order.client_order_id == rest}
    assert {f.trade_id for f in second.kernel.result.fills if f.client_order_id == rest} == venue_fills
    # every fill the account made is in the journal once: the position is the account's balance
    assert second.kernel.portfolio.position(kit.iid) == pytest.approx(emulator.balances.get(kit.base, 0.0), abs=1e-12)
    assert second.kernel.portfolio.position(kit.iid) == pytest.approx(sum(
        (f.fill.last_qty if f.fill.side is OrderSide.BUY else -f.fill.last_qty) for f in emulator.fills
    ), abs=1e-12)
    # every order was posted exactly once (no blind resubmission across the restart)
    posts = [coid for method, path, coid in emulator.requests if method == "POST" and path == kit.place_path]
    assert len(posts) == len(set(posts)) and set(posts) == set(emulator.orders)
    assert [r.client_order_id for r in second.external_orders] == ["byhand1"]
    assert emulator.orders["byhand1"].status is OrderStatus.ACCEPTED  # reported, left alone
    text = log.read_text()
    assert "environment TESTNET" in text
    for path in [p for p in tmp_path.rglob("*") if p.is_file()]:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
        for secret in (KEY, SECRET, PASSPHRASE):
            assert secret.encode() not in raw, f"{secret[:6]}... found in {path.name}"



@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
def test_tradebus_live_command_on_a_testnet_config(kit: VenueKit, tmp_path: Path, _loguru_to_current_stderr: None) -> None:
    """``tradebus live CONFIG --out DIR``: keys from the environment, the emulators served from another thread."""
    import threading

    import yaml
    from typer.testing import CliRunner

    from tradebus.cli import app

    ready = threading.Event()
    served: dict[str, Any] = {}

    def servers() -> None:
        async def main() -> None:
            async with kit.emulator() as emulator:
                async with LocalVenueServer(kit.make_protocol(kit.frames, emulator), kit.frames, speed=8.0) as srv:
                    done = asyncio.Event()
                    served.update(emulator=emulator, data=kit.config(tmp_path, srv.ws_url, emulator), stop=(asyncio.get_running_loop(), done))
                    ready.set()
                    await done.wait()

        asyncio.run(main())

    thread = threading.Thread(target=servers, daemon=True)
    thread.start()
    assert ready.wait(30)
    try:
        path = tmp_path / "live.yaml"
        path.write_text(yaml.safe_dump(served["data"]))
        out = tmp_path / "out"
        result = CliRunner().invoke(app, ["live", str(path), "--out", str(out), "--max-seconds", "4"], env=kit.env)
    finally:
        loop, done = served["stop"]
        loop.call_soon_threadsafe(done.set)
        thread.join(20)
    assert result.exit_code == 0, result.output
    emulator = served["emulator"]
    assert any(path.endswith(("balance", "wallet-balance")) for _, path, _ in emulator.requests)  # the account was read
    assert (out / "node.json").is_file() and (out / "fills.csv").is_file()
    text = (out / "config.yaml").read_text()
    assert f"TRADEBUS_{kit.venue.upper()}_API_KEY" in text
    for p in [p for p in tmp_path.rglob("*") if p.is_file()]:
        raw = p.read_bytes()
        if p.suffix == ".gz":
            raw = gzip.decompress(raw)
        for secret in (KEY, SECRET, PASSPHRASE):
            assert secret.encode() not in raw and secret not in result.output, f"{secret[:6]}... found in {p.name}"
