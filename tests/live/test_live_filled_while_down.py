"""An order that filled completely while the live daemon was down is booked at the restart as the venue filled it.

The daemon rests a limit buy and stops without canceling it (``live.cancel_on_stop: false``: the journal holds it
open, as after a kill); while it is down a trade crosses it and the venue fills all of it. The restarted daemon's
start-up reconciliation books that fill from the venue's trade history (``Reconciler.catch_up_fills``, which reads
the fills of every order the journal holds open, ``UNKNOWN`` after its replay): the order FILLED, the fill at the
venue's price, fee and time and under its trade id, in the results, the account (equal to the venue's balances)
and the journal, once (a second restart books nothing more). On the OKX and Bybit account emulators and their
recorded public streams, all on 127.0.0.1 (Binance spot: ``test_live_daemon.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.live.live_harness import KEY, SECRET
from tests.live.test_live_unheard_amend import CASES as RESTING
from tests.live.test_live_unheard_amend import _placed, _session
from tests.live.venue_kits import BYBIT, OKX, PASSPHRASE, VenueKit
from tradebus.engine.messages import OrderFilled, OrderStatus, Trade
from tradebus.execution.journal import Journal
from tradebus.node.live import LiveNode


def _journaled_fills(path: Path, coid: str) -> list[OrderFilled]:
    journal = Journal(path)
    try:
        return [e.message for e in journal.entries() if type(e.message) is OrderFilled and e.message.client_order_id == coid]
    finally:
        journal.close()


@pytest.mark.parametrize("kit", [OKX, BYBIT], ids=["okx", "bybit"])
async def test_an_order_filled_completely_while_the_daemon_was_down_is_booked_at_the_venues_price_fee_and_time(
    kit: VenueKit, tmp_path: Path
) -> None:
    qty, price = RESTING[kit.venue][1]
    journal = tmp_path / "journal.sqlite"
    async with kit.make_emulator(KEY, SECRET, kit.instruments(), {"USDT": 100_000.0}, passphrase=PASSPHRASE) as emulator:
        first = await _session(kit, emulator, tmp_path, kit.frames, lambda n: _placed(n) is not None, (qty, price))
        coid = first.kernel.orders.orders()[0].client_order_id
        assert emulator.orders[coid].status is OrderStatus.ACCEPTED  # left working
        # Down: a trade below the buy's price fills all of it at the venue.
        at = emulator.clock.now_ns() + 10**9
        emulator.on_trade(Trade(kit.iid, at, at, price - 1.0, 1.0, -1, "down-1"))
        assert emulator.orders[coid].status is OrderStatus.FILLED
        [venue] = [f for f in emulator.fills if f.rec.order.client_order_id == coid]
        balances = dict(emulator.balances)

        def filled(node: LiveNode) -> bool:
            order = node.kernel.orders.get(coid)
            return order is not None and order.status is OrderStatus.FILLED

        second = await _session(kit, emulator, tmp_path, [], filled, (qty, price))
        third = await _session(kit, emulator, tmp_path, [], filled, (qty, price))
    at_ms = venue.fill.ts_event // 1_000_000 * 1_000_000  # the venue's trade history tells its time in ms
    [booked] = _journaled_fills(journal, coid)
    assert (booked.last_qty, booked.last_px, booked.ts_event) == (venue.fill.last_qty, venue.fill.last_px, at_ms)
    assert booked.last_px == price and booked.last_qty == qty
    assert booked.fee == pytest.approx(venue.fee, rel=1e-12) and booked.fee_asset in ("", venue.fee_asset)
    assert booked.trade_id.endswith(str(venue.trade_id))
    assert second.reconciler.fills_caught_up == 1  # from the trade history, the journal holding the order open
    [fill] = [f for f in second.kernel.result.fills if f.client_order_id == coid]
    assert (fill.trade_id, fill.quantity, fill.price, fill.ts_event) == (booked.trade_id, qty, price, at_ms)
    account = second.kernel.portfolio.account
    inst = second.kernel.instruments[kit.iid]
    for asset in (inst.base, inst.quote):
        assert account.balance(asset) == pytest.approx(balances.get(asset, 0.0), rel=1e-12, abs=1e-12), asset
    # Booked once: the third session replays it from the journal, and books nothing more.
    assert [f.trade_id for f in third.kernel.result.fills if f.client_order_id == coid] == [booked.trade_id]
    assert third.kernel.portfolio.account.balance(inst.base) == pytest.approx(balances.get(inst.base, 0.0), rel=1e-12)
    assert third.kernel.orders.order(coid).status is OrderStatus.FILLED
    assert len(_journaled_fills(journal, coid)) == 1
