"""The query of one Binance order lists every fill of it, however many: its trade list is read page by page.

Binance's own-trades list (spot ``myTrades``, USD-M ``userTrades``) answers 500 rows when no
``limit`` is sent, 1,000 at most. A resting order that filled in 1,100 small pieces (the
account emulator limits a fill to the public trade's size) must come back from
:meth:`query` with its 1,100 fills, summing to the order's executed quantity.
"""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from tests.live.live_harness import INST, KEY, SECRET, USDM_INST
from tradebus.adapters.binance.private_emulator import BinanceFuturesEmulator, BinancePrivateEmulator
from tradebus.adapters.binance.trading import BinanceFuturesTrading, BinanceTrading
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import OrderSide, OrderStatus, OrderType, Trade
from tradebus.execution.orders import Order

FILLS = 1_100
T0 = 1_723_161_255_000_000_000


@pytest.mark.parametrize(
    ("emulator_class", "trading", "inst"),
    [(BinancePrivateEmulator, BinanceTrading, INST), (BinanceFuturesEmulator, BinanceFuturesTrading, USDM_INST)],
    ids=["spot", "usdm"],
)
async def test_the_query_of_an_order_with_more_fills_than_a_page_lists_them_all(
    emulator_class: type, trading: type, inst: Instrument
) -> None:
    iid = inst.instrument_id
    emulator = emulator_class(KEY, SECRET, {iid: inst}, {"USDT": 1e9}, trade_size_limit=True)
    await emulator.start()
    api = trading(emulator.rest_url, SecretStr(KEY), SecretStr(SECRET), {iid: inst}, timeout=2.0)
    try:
        order = Order("many-fills-1", "s1", iid, OrderSide.BUY, OrderType.LIMIT, FILLS * inst.lot_size, 60_000.0)
        await api.place(order)
        for n in range(1, FILLS + 1):
            ts = T0 + n * 1_000_000
            emulator.on_trade(Trade(iid, ts, ts, 59_000.0, inst.lot_size, -1, str(n)))
        report = await api.query(order)
        assert report is not None and report.status is OrderStatus.FILLED
        assert len(emulator.fills) == FILLS
        assert len({f.trade_id for f in report.fills}) == len(report.fills) == FILLS
        assert sum(f.last_qty for f in report.fills) == pytest.approx(report.filled_qty)
    finally:
        await api.close()
        await emulator.stop()
