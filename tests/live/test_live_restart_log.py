"""A restarted live daemon says, for each order its journal left open, what state it is in and what it does about it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from tradebus.engine.messages import OrderStatus

from .test_live_stop_failures import account_and_market, left_resting, node_on, resting, run_until_it_stops

pytestmark = pytest.mark.usefixtures("_loguru_to_current_stderr")


@pytest.mark.parametrize("at_venue", ["open", "canceled"])
async def test_a_restart_says_what_an_order_left_open_is_and_what_the_daemon_does_about_it(at_venue: str, tmp_path: Path) -> None:
    """A limit buy of 0.001 at 10,000 rests at the venue when the daemon stops (live.cancel_on_stop: false); while it
    is down the order stays open, or the user cancels it at the venue. The restart logged only the engine's
    'order ...: UNKNOWN here, ACCEPTED at the venue (filled 0.0 of 0.001), as its answer says' (or CANCELED): nothing
    said what UNKNOWN here meant or what the daemon was doing. It now logs first that the order was open when the
    daemon last stopped, that its state at the venue is unknown until the venue tells it, how it asks (the venue's
    open orders list it, or a query by client id) and that its instrument takes no new order meanwhile."""
    async with account_and_market() as (emulator, srv):
        placed = await left_resting(tmp_path, emulator, srv, "rest")
        if at_venue == "canceled":
            assert emulator.cancel(emulator.orders[placed])
        records: list[Any] = []
        sink = logger.add(records.append, level="INFO")
        try:
            second = node_on(tmp_path, emulator, srv, [resting("rest")], cancel_on_stop=False)
            expected = OrderStatus.ACCEPTED if at_venue == "open" else OrderStatus.CANCELED

            def resolved() -> bool:
                order = second.kernel.orders.get(placed)
                return order is not None and order.status is expected and not second.guard.holds

            await run_until_it_stops(second, resolved)
        finally:
            logger.remove(sink)
    said = [m.record["message"] for m in records if placed in m.record["message"]]
    how = ("the venue lists it open with no more filled: taken from that list" if at_venue == "open"
           else "asking the venue about it (a query by its client order id)")
    explained = (f"reconciliation: order {placed} (BTCUSDT.BINANCE buy limit 0.001 @ 10000, 0 filled) was open when the "
                 "daemon last stopped; its state at the venue is unknown here (UNKNOWN) until the venue tells it: "
                 f"{how}; the start-up reconciliation holds its instrument (no new order) until it ends")
    assert explained in said, said
    outcome = next(k for k, line in enumerate(said)
                   if line.startswith(f"order {placed}: UNKNOWN here") and line.endswith(f"{expected} here from now on"))
    assert said.index(explained) < outcome
