"""``live-kill --flatten``: cancel everything, sell what the journal holds at market, journal it, HALT."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.live.live_harness import KEY, SECRET, until
from tests.live.venue_kits import KITS, PASSPHRASE, VenueKit, kit_harness
from tradebus.engine.bus import MessageBus
from tradebus.engine.clock import LiveClock
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import OrderSide, OrderStatus, OrderType, SubmitOrder, Trade, TradingState
from tradebus.engine.portfolio import Portfolio
from tradebus.errors import OrdersLeftAtVenue
from tradebus.execution.journal import Journal
from tradebus.execution.orders import OrderManager
from tradebus.node.flatten import KILL_STRATEGY
from tradebus.node.live import ApiKeys, kill_switch, parse_live_config
from tradebus.reports.writers import fill_row


@pytest.mark.parametrize("quantity", [0.003, 0.29])  # 0.29 / 1e-8 is 28999999.999999996 lots in floats
@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_kill_flatten_sells_the_journaled_position_once_and_halts(kit: VenueKit, quantity: float, tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    async with kit_harness(kit, journal=path) as h:
        execution = h.kernel.execution
        bought = execution.submit(SubmitOrder("s1", kit.iid, "", OrderSide.BUY, quantity, 0, 0, OrderType.MARKET))
        await until(lambda: bought.status is OrderStatus.ACCEPTED)
        h.emulator.on_trade(Trade(kit.iid, 10**18, 10**18, 30_000.0, 1.0, 1, "t1"))
        await until(lambda: bought.status is OrderStatus.FILLED)
        resting = execution.submit(SubmitOrder("s1", kit.iid, "", OrderSide.BUY, 0.001, 0, 0, OrderType.LIMIT, 1_000.0))
        await until(lambda: resting.status is OrderStatus.ACCEPTED)
        config = parse_live_config(kit.config(tmp_path, "ws://127.0.0.1:9", h.emulator), "<test>")
        h.stream.stop()  # the daemon is stopped before the kill (its journal is the kill's)
        await until(lambda: not h.emulator.sessions)

        async def market_moves() -> None:  # the flattening market order fills at the next trade
            await until(lambda: any(r.order.side is OrderSide.SELL for r in h.emulator.orders.values()), timeout=10)
            h.emulator.on_trade(Trade(kit.iid, 2 * 10**18, 2 * 10**18, 31_000.0, 1.0, -1, "t2"))

        mover = asyncio.create_task(market_moves())
        keys = ApiKeys(SecretStr(KEY), SecretStr(SECRET), SecretStr(PASSPHRASE))
        canceled = await kill_switch(config, keys, "test kill", flatten=True)
        await mover
    assert canceled == [resting.client_order_id]
    sells = [r for r in h.emulator.orders.values() if r.order.side is OrderSide.SELL]
    assert len(sells) == 1 and sells[0].status is OrderStatus.FILLED and sells[0].order.quantity == quantity
    assert h.emulator.balances[kit.base] == pytest.approx(0.0, abs=1e-12)
    # the journal holds the flattening order and its fill: a restart starts flat, as the venue is
    journal = Journal(path)
    try:
        orders = OrderManager(MessageBus(), LiveClock())
        portfolio = Portfolio(config.instrument_map(), config.initial_cash, config.balances)
        journal.replay(orders, portfolio, 0)
        state = journal.load_risk_state()
    finally:
        journal.close()
    assert portfolio.position(kit.iid) == pytest.approx(0.0, abs=1e-12)
    (kill,) = [o for o in orders.orders() if o.strategy_id == KILL_STRATEGY]
    assert kill.status is OrderStatus.FILLED and kill.client_order_id == sells[0].order.client_order_id
    assert state is not None and state.manual_state is TradingState.HALTED
    # a daemon restarted on the journal writes the order's reason in orders.csv and its fill's in fills.csv
    restarted = Kernel(list(config.instrument_map().values()), initial_cash=config.initial_cash)
    journal = Journal(path)
    try:
        journal.replay(restarted.orders, restarted.portfolio, 0, risk=restarted.risk, on_message=restarted.record_journaled)
    finally:
        journal.close()
    assert [(row[3], row[-1]) for row in map(fill_row, restarted.result.fills)] == [("BUY", ""), ("SELL", "flatten (test kill)")]


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_kill_flatten_whose_market_order_is_still_open_at_the_venue_exits_4_naming_it(kit: VenueKit, tmp_path: Path) -> None:
    """The flattening market order is not filled within live.stop_timeout (no trade comes). Before, ``tradebus
    live-kill --flatten`` logged an ERROR and ended with "canceled 0 order(s); trading HALTED", exit 0, the order
    working at the venue and the position open; now it raises OrdersLeftAtVenue (exit 4) naming that order."""
    path = tmp_path / "journal.sqlite"
    async with kit_harness(kit, journal=path) as h:
        bought = h.kernel.execution.submit(SubmitOrder("s1", kit.iid, "", OrderSide.BUY, 0.003, 0, 0, OrderType.MARKET))
        await until(lambda: bought.status is OrderStatus.ACCEPTED)
        h.emulator.on_trade(Trade(kit.iid, 10**18, 10**18, 30_000.0, 1.0, 1, "t1"))
        await until(lambda: bought.status is OrderStatus.FILLED)
        config = parse_live_config(kit.config(tmp_path, "ws://127.0.0.1:9", h.emulator, stop_timeout=0.5), "<test>")
        h.stream.stop()
        await until(lambda: not h.emulator.sessions)
        keys = ApiKeys(SecretStr(KEY), SecretStr(SECRET), SecretStr(PASSPHRASE))
        with pytest.raises(OrdersLeftAtVenue) as raised:
            await kill_switch(config, keys, "test kill", flatten=True)
    (sell,) = [r for r in h.emulator.orders.values() if r.order.side is OrderSide.SELL]
    assert sell.status is OrderStatus.ACCEPTED  # working at the venue, as the error says
    assert str(raised.value) == (
        f"kill switch: 0 order(s) canceled, but 1 flattening order(s) not closed at the venue within live.stop_timeout "
        f"(0.5 s): ['{sell.order.client_order_id}'] (open or of unknown state; the next start queries them); the journal "
        f"{path} is HALTED. Check the account and run live-kill again"
    )


async def test_kill_flatten_with_no_journal_at_the_configured_path_is_refused_before_touching_the_account(tmp_path: Path) -> None:
    """A mistyped journal path made --flatten sell nothing and exit 0 while the venue held the position."""
    from tradebus.errors import ConfigError

    kit = KITS["okx"]
    async with kit_harness(kit, journal=tmp_path / "journal.sqlite") as h:
        execution = h.kernel.execution
        bought = execution.submit(SubmitOrder("s1", kit.iid, "", OrderSide.BUY, 0.003, 0, 0, OrderType.MARKET))
        await until(lambda: bought.status is OrderStatus.ACCEPTED)
        h.emulator.on_trade(Trade(kit.iid, 10**18, 10**18, 30_000.0, 1.0, 1, "t1"))
        await until(lambda: bought.status is OrderStatus.FILLED)
        resting = execution.submit(SubmitOrder("s1", kit.iid, "", OrderSide.BUY, 0.001, 0, 0, OrderType.LIMIT, 1_000.0))
        await until(lambda: resting.status is OrderStatus.ACCEPTED)
        data = kit.config(tmp_path, "ws://127.0.0.1:9", h.emulator)
        missing = tmp_path / "jornal.sqlite"
        data["journal"] = str(missing)
        config = parse_live_config(data, "<test>")
        h.stream.stop()
        await until(lambda: not h.emulator.sessions)
        requests = len(h.emulator.requests)
        keys = ApiKeys(SecretStr(KEY), SecretStr(SECRET), SecretStr(PASSPHRASE))
        with pytest.raises(ConfigError, match=rf"--flatten: no journal at {missing}: .*positions to flatten"):
            await kill_switch(config, keys, "test kill", flatten=True)
        assert len(h.emulator.requests) == requests  # nothing canceled, nothing sold: the user fixes the path and runs it again
    assert not missing.exists()
    assert h.emulator.balances[kit.base] == pytest.approx(0.003)


def test_live_kill_help_says_flatten_closes_short_positions_too() -> None:
    """``tradebus live-kill --help`` said ``--flatten`` would "sell every position": a perpetual's short is bought back
    (a reduce-only market buy, as test_live_okx_swap's and test_live_bybit_linear's flattens show)."""
    from typer.testing import CliRunner

    from tradebus.cli import app

    result = CliRunner().invoke(app, ["live-kill", "--help"], terminal_width=200, env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = " ".join(result.output.replace("│", " ").split())
    assert "sell every position" not in text
    assert "close every position the journal holds at market: sell a holding or a long, buy back a short (reduce-only)" in text
