"""Brackets in the paper daemon across a restart: the links are journaled and taken over.

Run 1 buys 0.01 BTC at market with a stop-loss at 61,700 and a take-profit at 61,850 on the
first trade of the Binance spot capture (prices 61,824-61,855; the first print at or above
61,850 is the 509th trade) and is stopped after 100 trades, both children working. The paper venue's working
orders end with its process, so run 2 (the same journal) finds the children CANCELED by the
restart and arms the bracket again for the 0.01 left, with the same prices. The take-profit
fills at 61,850 when the capture gets there, and its OCO sibling, the stop-loss, is canceled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from tradebus.adapters.binance.emulator import BinanceProtocol
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.engine.messages import CancelOrder, ContingentLinked, OrderStatus
from tradebus.node.daemon import PaperNode

from .node_testdata import IID, SPOT_FRAMES, SPOT_SNAPSHOT, binance_config, config_of, run_node
from .test_node_restart import journal_rows

pytestmark = pytest.mark.usefixtures("compiled_kernels")

STOP, TARGET = 61_700.0, 61_850.0


def config(srv: LocalVenueServer, tmp: Path, *, enter: bool, contingent: str) -> Any:
    strategy = {
        "name": "tests.live.bracket_strategy:OneBracket",
        "instruments": [IID],
        "params": {"quantity": 0.01, "stop_loss": STOP, "take_profit": TARGET, "enter": enter},
    }
    data = binance_config(srv.ws_url, srv.http_url, ["trade"], tmp=tmp, journal=True, strategy=strategy)
    data["venue"] = {"fill_on": "trades", "contingent": contingent}
    return config_of(data)


def links(path: Path) -> list[ContingentLinked]:
    return [msgspec.msgpack.decode(p, type=ContingentLinked) for _, name, _, p in journal_rows(path) if name == "ContingentLinked"]


@pytest.mark.parametrize("contingent", ["emulated", "native"])
async def test_a_restarted_paper_daemon_takes_over_its_bracket(tmp_path: Path, contingent: str) -> None:
    journal = tmp_path / "journal.sqlite"

    def children_working() -> bool:
        accepted = {r[2] for r in journal_rows(journal) if r[1] == "OrderAccepted"}
        children = [link for link in links(journal) if link.kind == "children"]
        return bool(children) and set(children[0].order_ids) <= accepted

    async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), SPOT_FRAMES) as srv:
        # 100 trades: the children work from the 3rd at the latest, the target is reached at the 509th.
        first = PaperNode(config(srv, tmp_path, enter=True, contingent=contingent), handle_signals=False, max_messages=100)
        await run_node(first, lambda: False, timeout=120.0)  # ends at its 100th message; the bound is for a loaded machine
    assert first.summary.stop_reason == "max_messages reached (100)"
    assert children_working()
    kinds = [link.kind for link in links(journal)]
    assert kinds == ["bracket", "children", "oco"]
    entry = links(journal)[0].client_order_id
    old_stop, old_target = links(journal)[1].order_ids
    assert first.kernel.portfolio.position(IID) == pytest.approx(0.01)

    async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), SPOT_FRAMES) as srv:
        second = PaperNode(config(srv, tmp_path, enter=False, contingent=contingent), handle_signals=False)
        # Done when flat and nothing works any more (the OCO cancel may reach the venue after the fill).
        await run_node(
            second,
            lambda: second.kernel.portfolio.position(IID) == 0.0 and second.kernel.orders.open_count == 0,
            timeout=120.0,
        )

    orders = second.kernel.orders
    assert orders.order(entry).status == OrderStatus.FILLED
    for coid in (old_stop, old_target):
        assert orders.order(coid).status == OrderStatus.CANCELED
        assert orders.order(coid).reason.startswith("paper venue restarted")
    rearmed = [link for link in links(journal) if link.kind == "children"][1]
    new_stop, new_target = (orders.order(coid) for coid in rearmed.order_ids)
    assert (new_stop.trigger_price, new_stop.quantity, new_stop.reduce_only) == (STOP, 0.01, True)
    assert (new_target.price, new_target.quantity, new_target.reduce_only) == (TARGET, 0.01, True)
    # The take-profit filled at its limit; its OCO sibling was canceled.
    assert new_target.status == OrderStatus.FILLED and new_target.avg_px == TARGET
    assert new_stop.status == OrderStatus.CANCELED
    if contingent == "emulated":  # the process sent the cancel
        cancels = [
            msgspec.msgpack.decode(p, type=CancelOrder) for _, name, coid, p in journal_rows(journal)
            if name == "CancelOrder" and coid == new_stop.client_order_id
        ]
        assert [c.reason for c in cancels] == ["OCO: sibling filled"]
    else:  # the venue canceled it
        assert new_stop.reason == "OCO: sibling filled"
    assert second.kernel.portfolio.position(IID) == 0.0
    assert second.venue.position(IID) == 0.0
    # Nothing was armed twice: one entry fill, one exit fill in the journal.
    fills = [r for r in journal_rows(journal) if r[1] == "OrderFilled"]
    assert len(fills) == 2
