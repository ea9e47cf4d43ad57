"""An execution algorithm of a live daemon across a restart, against the local Binance account emulator.

The daemon's iceberg (a 0.04 buy at 20,000 shown 0.01 at a time) has one tip filled and the next
working at the venue when the daemon stops without canceling it (``cancel_on_stop`` off, as a
crash or ``kill -9`` leaves it). Restarted on its journal, the daemon ends the iceberg
``interrupted``: the working tip is canceled at the venue once the start-up has settled it, the
strategy is told what was filled, and the iceberg of the rest it starts is all that is sent
(:mod:`tradebus.strategies.algo_recovery`). A tip the venue filled while the daemon was down counts
in what the strategy is told was filled: the restart tells it once its start-up has settled the orders.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from loguru import logger
from pydantic import SecretStr

from tests.live.iceberg_strategy import IcebergBuy
from tests.live.live_harness import KEY, SECRET, until
from tests.live.node_testdata import BINANCE_INSTRUMENT, IID, SPOT_FRAMES, SPOT_SNAPSHOT, binance_config
from tradebus.adapters.binance.private_emulator import BinancePrivateEmulator, MatchingProtocol
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.engine.messages import AlgoEnded, CancelOrder, Liquidity, OrderStatus, Quote, Trade
from tradebus.execution.journal import Journal
from tradebus.node.live import ApiKeys, LiveNode, parse_live_config

SPOT = {**BINANCE_INSTRUMENT, "margin": False}
PARENT, TIP = 0.04, 0.01


def _config(tmp: Path, ws_url: str, rest_url: str, emulator: BinancePrivateEmulator) -> dict[str, Any]:
    data = binance_config(
        ws_url, rest_url, ["trade"], tmp=tmp, journal=True,
        strategy={"name": "tests.live.iceberg_strategy:IcebergBuy", "instruments": [IID],
                  "params": {"quantity": PARENT, "price": 20_000.0, "display": TIP, "poll": "200ms"}},
    )  # fmt: skip
    data["instruments"] = [SPOT]
    data["warm_up"] = False
    data["live"] = {
        "rest_url": emulator.rest_url,
        "ws_api_url": emulator.ws_api_url,
        "request_timeout": 1.0,
        "submit_timeout": 1.0,
        "cancel_timeout": 1.0,
        "retry_interval": 0.3,
        "not_found_grace": 2.0,
        "cancel_on_stop": False,  # the stop leaves the working tip at the venue, as a crash does
    }
    return data


def _strategy(node: LiveNode) -> IcebergBuy:
    strategy = node.kernel.strategies[0]
    assert isinstance(strategy, IcebergBuy)
    return strategy


async def _run_until(node: LiveNode, done: Any, timeout: float = 30.0) -> None:
    import asyncio

    task = asyncio.create_task(node.run())
    try:
        await until(lambda: task.done() or (node.running.is_set() and done()), timeout=timeout)
    finally:
        node.stop("test done")
        await asyncio.wait_for(task, 20)
    assert task.exception() is None


class _Venue:
    """The emulated account, its server and the daemon's config: :meth:`first_run` leaves the iceberg half done."""

    def __init__(self, tmp: Path, emulator: BinancePrivateEmulator, config: Any) -> None:
        self.tmp, self.emulator, self.config = tmp, emulator, config
        self.keys = ApiKeys(SecretStr(KEY), SecretStr(SECRET))

    def at_venue(self, algo: Any) -> list[str]:
        """The algorithm's children the venue took (a tip sent during the start-up reconciliation is
        denied, and the iceberg sends it again at its next poll)."""
        return [c for c in algo.children if c in self.emulator.orders]

    def fill(self, coid: str) -> None:
        """A public trade at the venue that fills the working buy ``coid`` (one tip)."""
        assert self.emulator.orders[coid].status is OrderStatus.ACCEPTED
        last = self.emulator.clock.now_ns()
        self.emulator.on_trade(Trade(IID, last, last, 19_999.0, TIP, -1, f"fill-{coid}"))

    async def first_run(self) -> tuple[tuple[str, ...], str, str]:
        """Run the daemon until its iceberg's first tip filled and the second works; return the children and both tips."""
        first = LiveNode(self.config, self.keys, handle_signals=False)
        filled_tip: list[str] = []

        def second_tip_working() -> bool:
            algo = _strategy(first).algo
            tips = [] if algo is None else self.at_venue(algo)
            if not filled_tip and tips and self.emulator.orders[tips[0]].status is OrderStatus.ACCEPTED:
                self.fill(tips[0])
                filled_tip.append(tips[0])
            return len(tips) == 2 and algo.filled == pytest.approx(TIP) \
                and first.kernel.orders.order(tips[1]).status is OrderStatus.ACCEPTED  # type: ignore[union-attr]  # fmt: skip

        await _run_until(first, second_tip_working)
        children = tuple(_strategy(first).algo.children)  # type: ignore[union-attr]
        tip1, tip2 = self.at_venue(_strategy(first).algo)
        assert self.emulator.orders[tip1].status is OrderStatus.FILLED
        assert self.emulator.orders[tip2].status is OrderStatus.ACCEPTED  # left working by the stop
        return children, tip1, tip2

    async def restart(self, tip2: str, tip2_status: OrderStatus) -> LiveNode:
        """Restart the daemon on its journal; run it until tip 2 is ``tip2_status`` and the new iceberg's tip rests."""
        second = LiveNode(self.config, self.keys, handle_signals=False)

        def tip2_settled_and_rest_resting() -> bool:
            algo = _strategy(second).algo
            return (self.emulator.orders[tip2].status is tip2_status and algo is not None
                    and bool(self.at_venue(algo)) and second.kernel.orders.order(self.at_venue(algo)[0]).status
                    is OrderStatus.ACCEPTED and not second.guard.holds)  # fmt: skip

        await _run_until(second, tip2_settled_and_rest_resting)
        return second


@asynccontextmanager
async def _venue(tmp: Path) -> AsyncIterator[_Venue]:
    instrument = parse_live_config(
        {"instruments": [SPOT], "strategy": {"name": "tests.live.iceberg_strategy:IcebergBuy", "instruments": [IID]},
         "feeds": [{"venue": "binance", "market": "spot", "subscriptions": {IID: ["trade"]}}],
         "venue": {"fill_on": "trades"}},
    ).instrument_map()[IID]  # fmt: skip
    emulator = BinancePrivateEmulator(KEY, SECRET, {IID: instrument}, {"USDT": 100_000.0})
    # The venue's market before the daemon subscribes (the replay's clock starts then): its best bid and
    # ask by the capture's depth snapshot. Without it a tip reaching the venue before the first quote or
    # trade printed was taken as marketable and the test's 19,999 trade filled it as taker, at 19,999.
    snapshot = json.loads(SPOT_SNAPSHOT)
    (bid, bid_size), (ask, ask_size) = snapshot["bids"][0], snapshot["asks"][0]
    emulator.on_quote(Quote(IID, 0, 0, float(bid), float(bid_size), float(ask), float(ask_size)))
    async with emulator:
        protocol = MatchingProtocol(SPOT_SNAPSHOT, account=emulator, instrument_ids={"btcusdt": IID})
        async with LocalVenueServer(protocol, SPOT_FRAMES, speed=1.0) as srv:
            yield _Venue(tmp, emulator, parse_live_config(_config(tmp, srv.ws_url, srv.http_url, emulator), "<test>"))


def _journal(tmp: Path) -> list[Any]:
    journal = Journal(tmp / "journal.sqlite")
    try:
        return [e.message for e in journal.entries()]
    finally:
        journal.close()


async def test_a_restart_cancels_the_interrupted_icebergs_working_tip_at_the_venue_and_sends_only_the_rest(
    tmp_path: Path,
) -> None:
    warnings: list[str] = []
    sink = logger.add(lambda m: warnings.append(m.record["message"]), level="WARNING")
    try:
        async with _venue(tmp_path) as venue:
            children, tip1, tip2 = await venue.first_run()
            second = await venue.restart(tip2, OrderStatus.CANCELED)
    finally:
        logger.remove(sink)
    emulator = venue.emulator
    restarted = _strategy(second)
    [event] = restarted.interrupted
    assert (event.kind, event.status, event.children) == ("Iceberg", "interrupted", children)
    assert event.filled == pytest.approx(TIP) and event.remaining == pytest.approx(PARENT - TIP)
    assert any("interrupted by restart" in w and tip2 in w for w in warnings), warnings
    # Canceled at the venue, once; the new iceberg works only the rest; nothing posted twice.
    assert second.kernel.orders.order(tip2).status is OrderStatus.CANCELED
    new = restarted.algo
    assert new is not None and new.quantity == pytest.approx(PARENT - TIP)
    open_at_venue = [coid for coid, o in emulator.orders.items() if o.status is OrderStatus.ACCEPTED]
    [new_tip] = venue.at_venue(new)
    assert open_at_venue == [new_tip]
    posts = [coid for method, _, coid in emulator.requests if method == "POST"]
    deletes = [coid for method, _, coid in emulator.requests if method == "DELETE"]
    assert posts == [tip1, tip2, new_tip] and deletes == [tip2]
    entries = _journal(tmp_path)
    assert [(m.client_order_id, m.reason) for m in entries if type(m) is CancelOrder] == [
        (tip2, f"{event.name}: interrupted by restart")
    ]
    assert [m.status for m in entries if type(m) is AlgoEnded] == ["interrupted"]


async def test_a_restart_tells_the_strategy_the_tip_filled_while_the_daemon_was_down_so_the_rest_is_not_over_bought(
    tmp_path: Path,
) -> None:
    """Tip 2 fills at the venue while the daemon is down: the strategy is told 0.02 filled, 0.02 remaining
    (what the venue filled, not the journal's 0.01), and the buys committed total the 0.04 parent.

    The restart books that fill from the venue's trade history, which the emulator stamps with its own clock
    as a venue does: it stamped it with the capture's time (August 2024), before the window the catch-up reads
    (from the order's creation, the daemon's clock, less a minute), so the catch-up found nothing and only the
    query of the order booked it."""
    infos: list[str] = []
    sink = logger.add(lambda m: infos.append(m.record["message"]), level="INFO", filter="tradebus.node.reconcile")
    try:
        async with _venue(tmp_path) as venue:
            children, tip1, tip2 = await venue.first_run()
            venue.fill(tip2)  # while down
            second = await venue.restart(tip2, OrderStatus.FILLED)
    finally:
        logger.remove(sink)
    caught_up = [m for m in infos if "in the venue's trade history" in m]
    assert caught_up and caught_up[-1].endswith("1 fill(s) in the venue's trade history of 1 open order(s), 1 missed and booked"), caught_up
    assert second.reconciler.fills_caught_up == 1
    emulator = venue.emulator
    # Tip 2 reached the venue just after the 19,999 trade that filled tip 1, with the best ask near 61,837:
    # it rested, and the 19,999 trade while down filled it at its limit as maker (judged against that last
    # trade it took the liquidity of the next print, 19,999, as taker).
    fills = [(f.rec.order.client_order_id, f.fill.last_px, f.fill.liquidity) for f in emulator.fills]
    assert fills == [(tip1, 20_000.0, Liquidity.MAKER), (tip2, 20_000.0, Liquidity.MAKER)]
    restarted = _strategy(second)
    [event] = restarted.interrupted
    assert (event.kind, event.status, event.children) == ("Iceberg", "interrupted", children)
    assert event.filled == pytest.approx(2 * TIP) and event.remaining == pytest.approx(PARENT - 2 * TIP)
    assert second.kernel.orders.order(tip2).status is OrderStatus.FILLED
    new = restarted.algo
    assert new is not None and new.quantity == pytest.approx(PARENT - 2 * TIP)
    bought = sum(o.filled for o in emulator.orders.values())
    assert bought + new.quantity == pytest.approx(PARENT)
    posts = [coid for method, _, coid in emulator.requests if method == "POST"]
    deletes = [coid for method, _, coid in emulator.requests if method == "DELETE"]
    assert posts == [tip1, tip2, *venue.at_venue(new)] and deletes == []
    assert [(m.status, m.filled) for m in _journal(tmp_path) if type(m) is AlgoEnded] == [
        ("interrupted", pytest.approx(2 * TIP))
    ]


async def test_a_restart_stopped_before_its_reconciliation_ended_leaves_the_iceberg_to_the_next_restart(
    tmp_path: Path,
) -> None:
    """A daemon stopped during its start-up reconciliation does not journal the iceberg ended with the journal's
    0.01 filled: the next restart, reconciled, tells the strategy the 0.02 the venue filled."""
    async with _venue(tmp_path) as venue:
        children, _, tip2 = await venue.first_run()
        venue.fill(tip2)  # while down
        stopped = LiveNode(venue.config, venue.keys, handle_signals=False)
        stopped.stop("test: stopped at once")
        await stopped.run()
        assert _strategy(stopped).interrupted == [] and _strategy(stopped).algo is None  # not started
        assert [m for m in _journal(tmp_path) if type(m) is AlgoEnded] == []
        third = await venue.restart(tip2, OrderStatus.FILLED)
    [event] = _strategy(third).interrupted
    assert event.children == children
    assert event.filled == pytest.approx(2 * TIP) and event.remaining == pytest.approx(PARENT - 2 * TIP)
