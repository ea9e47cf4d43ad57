"""``tradebus live-kill``'s exit code and message say what it left at the venue.

Through the command (``tradebus.cli.app``) against the local Binance spot account emulator on 127.0.0.1:
0 once no order is open, with or without a journal in the config; 4
(:class:`~tradebus.errors.OrdersLeftAtVenue`) naming the orders still open, or saying their state is unknown,
after the cancel rounds, the journal HALTED all the same.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml
from click.testing import Result
from pydantic import SecretStr
from typer.testing import CliRunner

from tests.live.live_harness import KEY, SECRET
from tests.live.test_live_daemon import IID, SPOT, _config, _minimal
from tradebus.adapters.binance.private_emulator import BinancePrivateEmulator, RestFault
from tradebus.adapters.binance.trading import BinanceTrading
from tradebus.cli import app
from tradebus.engine.messages import OrderSide, OrderStatus, OrderType, TradingState
from tradebus.execution.journal import Journal
from tradebus.execution.orders import Order
from tradebus.node.live import parse_live_config

pytestmark = pytest.mark.usefixtures("_loguru_to_current_stderr")

ENV = {"TRADEBUS_BINANCE_API_KEY": KEY, "TRADEBUS_BINANCE_API_SECRET": SECRET, "COLUMNS": "1000"}  # no path wrapped


async def kill(tmp_path: Path, faults: list[RestFault], coids: list[str], *, journal: bool = True) -> tuple[Result, BinancePrivateEmulator]:
    """Place ``coids`` resting at the emulated account, then run ``tradebus live-kill`` on it with ``faults``."""
    instruments = parse_live_config({"instruments": [SPOT], **_minimal()}).instrument_map()
    async with BinancePrivateEmulator(KEY, SECRET, instruments, {"USDT": 100_000.0}) as emulator:
        api = BinanceTrading(emulator.rest_url, SecretStr(KEY), SecretStr(SECRET), instruments)
        for n, coid in enumerate(coids):
            await api.place(Order(coid, "", IID, OrderSide.BUY, OrderType.LIMIT, 0.001, 20_000.0 + n))
        await api.close()
        emulator.rest_faults += faults
        data = _config(tmp_path, "ws://127.0.0.1:9", "http://127.0.0.1:9", emulator)
        if not journal:
            del data["journal"]
        path = tmp_path / "live.yaml"
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        result = await asyncio.to_thread(CliRunner().invoke, app, ["live-kill", str(path), "--reason", "test kill"], env=ENV)
    return result, emulator


def halted(path: Path) -> bool:
    journal = Journal(path)
    try:
        state = journal.load_risk_state()
    finally:
        journal.close()
    return state is not None and state.manual_state is TradingState.HALTED and state.manual_reason == "test kill"


async def test_a_kill_with_no_journal_that_canceled_everything_exits_0(tmp_path: Path) -> None:
    """It canceled every order, then refused to store a trading state with no journal: exit 2, a failure to a script."""
    result, emulator = await kill(tmp_path, [], ["open0", "open1"], journal=False)
    assert {o.status for o in emulator.orders.values()} == {OrderStatus.CANCELED}
    assert result.exit_code == 0, result.output
    assert "canceled 2 order(s); the config has no journal: no trading state stored" in result.output
    assert not list(tmp_path.glob("*.sqlite"))


async def test_a_kill_that_canceled_everything_exits_0_and_halts_the_journal(tmp_path: Path) -> None:
    result, emulator = await kill(tmp_path, [], ["open0"])
    assert emulator.orders["open0"].status is OrderStatus.CANCELED
    assert result.exit_code == 0, result.output
    assert f"canceled 1 order(s); trading HALTED in {tmp_path / 'journal.sqlite'} until" in result.output
    assert halted(tmp_path / "journal.sqlite")


@pytest.mark.parametrize("journal", [True, False])
async def test_an_order_still_open_after_the_rounds_exits_4_naming_it(tmp_path: Path, journal: bool) -> None:
    """A plain VenueError, exit 1 (and without a journal the ConfigError of the halt hid it: exit 2)."""
    faults = [RestFault("error5xx", "DELETE", "/api/v3/order") for _ in range(6)]  # every cancel of every round
    result, emulator = await kill(tmp_path, faults, ["open0", "stuck"], journal=journal)
    assert emulator.orders["stuck"].status is OrderStatus.ACCEPTED
    assert result.exit_code == 4, result.output
    text = result.output
    halt = f"the journal {tmp_path / 'journal.sqlite'} is HALTED" if journal else "no journal in the config: nothing HALTED"
    assert "error: kill switch: " in text and f"after 3 rounds 2 order(s) still open at the venue: ['open0', 'stuck']; {halt}" in text
    if journal:
        assert halted(tmp_path / "journal.sqlite")


async def test_open_orders_unreadable_in_the_last_round_exits_4_naming_those_last_listed(tmp_path: Path) -> None:
    """Listed open in round 1 (its cancel unanswered), unreadable in rounds 2 and 3: its state is unknown."""
    faults = [RestFault("error5xx", "DELETE", "/api/v3/order")]
    # each fault counts the listings no fault before it failed: every one from the third (round 2's) on fails
    faults += [RestFault("error5xx", "GET", "/api/v3/openOrders", at=2) for _ in range(6)]
    result, emulator = await kill(tmp_path, faults, ["stuck"])
    assert emulator.orders["stuck"].status is OrderStatus.ACCEPTED
    assert result.exit_code == 4, result.output
    text = result.output
    assert "after 3 rounds the open orders could not be read (" in text
    assert "which are open is unknown (1 order(s) open when last listed: ['stuck'])" in text
    assert halted(tmp_path / "journal.sqlite")

