"""The Binance account emulators check what Binance checks on the wire: the signature of the query as sent."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from tests.live.live_harness import INST, KEY, SECRET, USDM_INST
from tradebus.adapters.binance.private_emulator import BinanceFuturesEmulator, BinancePrivateEmulator
from tradebus.adapters.binance.trading import BinanceFuturesTrading, BinanceTrading

_SPOT = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.00100", "price": "50000.00"}
_USDM = {**_SPOT, "positionSide": "BOTH", "quantity": "0.001", "price": "50000.0"}


@pytest.mark.parametrize("market", ["spot", "usdm"])
async def test_a_legal_client_id_with_characters_the_query_encodes_is_signed_and_taken(market: str) -> None:
    spot = market == "spot"
    inst = INST if spot else USDM_INST
    emulator = (BinancePrivateEmulator if spot else BinanceFuturesEmulator)(KEY, SECRET, {inst.instrument_id: inst}, {"USDT": 100_000.0})
    await emulator.start()
    api = (BinanceTrading if spot else BinanceFuturesTrading)(emulator.rest_url, SecretStr(KEY), SecretStr(SECRET), {inst.instrument_id: inst})
    try:  # Binance signs the query as sent, percent-encoded (":" and "/" are %3A and %2F)
        await api._call("private_post_order" if spot else "fapiprivate_post_order", (_SPOT if spot else _USDM) | {"newClientOrderId": "tb.a:b/c_d-e"})
        assert [c for _, _, c in emulator.requests] == ["tb.a:b/c_d-e"]
    finally:
        await api.close()
        await emulator.stop()
