"""The account emulators judge a new limit order against the venue's best bid and ask, as a venue does.

Each venue's ``MatchingProtocol`` is fed the public recording as the local server feeds it (``on_sent``
per frame the replay moves past): Binance's ``bookTicker`` and depth, OKX's ``tickers`` and
``books``, Bybit's ``orderbook``. Then a trade far from the book is injected and a limit buy placed
through the venue's signed REST client:

* below the last trade but far below the ask: it rests, and a later trade through it fills it at its
  limit as maker (judged against the last trade it took the liquidity of that later trade, at its price);
* above the ask but below the last trade: it takes the ask at once, and fills at the next trade's price
  as taker (judged against the last trade it rested and filled at its limit, 50 % above the market).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
from pydantic import SecretStr

from tests.live.live_harness import INST, KEY, SECRET
from tests.live.node_testdata import SPOT_FRAMES, SPOT_SNAPSHOT
from tests.live.venue_kits import BYBIT, OKX, PASSPHRASE
from tradebus.adapters.binance import private_emulator as binance_emu
from tradebus.adapters.binance.trading import BinanceTrading
from tradebus.adapters.bybit.trading import BybitTrading
from tradebus.adapters.common.account_emulator import AccountEmulator
from tradebus.adapters.common.local_server import VenueProtocol
from tradebus.adapters.okx.trading import OkxTrading
from tradebus.engine.messages import Liquidity, Trade

Place = Callable[[AccountEmulator, str, float], Awaitable[None]]


@dataclass(frozen=True)
class Case:
    iid: str
    frames: list[tuple[int, str]]
    emulator: Callable[[], AccountEmulator]
    protocol: Callable[[AccountEmulator], VenueProtocol]
    #: The recording's first trade price of the instrument (where the market is).
    first_price: Callable[[list[tuple[int, str]]], float]
    place: Place


def _binance_price(frames: list[tuple[int, str]]) -> float:
    return next(float(json.loads(raw)["data"]["p"]) for _, raw in frames if "@trade" in raw)


def _okx_price(frames: list[tuple[int, str]]) -> float:
    return next(float(m["data"][0]["px"]) for m in map(json.loads, (r for _, r in frames)) if (m.get("arg") or {}) == {"channel": "trades", "instId": "BTC-USDT"} and m.get("data"))


def _bybit_price(frames: list[tuple[int, str]]) -> float:
    return next(float(json.loads(raw)["data"][0]["p"]) for _, raw in frames if '"publicTrade.BTCUSDT"' in raw)


async def _binance_place(emulator: AccountEmulator, coid: str, price: float) -> None:
    api = BinanceTrading(emulator.rest_url, SecretStr(KEY), SecretStr(SECRET), {INST.instrument_id: INST})
    try:
        await api._call("private_post_order", {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                                               "quantity": "0.00100", "price": f"{price:.2f}", "newClientOrderId": coid})
    finally:
        await api.close()


async def _okx_place(emulator: AccountEmulator, coid: str, price: float) -> None:
    api = OkxTrading(emulator.rest_url, SecretStr(KEY), SecretStr(SECRET), SecretStr(PASSPHRASE), OKX.instruments(), 2.0)
    try:
        await api.call("private_post_trade_order", {"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit",
                                                    "sz": "0.001", "px": f"{price:.1f}", "clOrdId": coid})
    finally:
        await api.close()


async def _bybit_place(emulator: AccountEmulator, coid: str, price: float) -> None:
    api = BybitTrading(emulator.rest_url, SecretStr(KEY), SecretStr(SECRET), BYBIT.instruments(), 2.0)
    try:
        await api.call("private_post_v5_order_create", {"category": "spot", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit",
                                                        "qty": "0.001", "price": f"{price:.2f}", "timeInForce": "GTC", "orderLinkId": coid})
    finally:
        await api.close()


CASES = {
    "binance": Case(
        INST.instrument_id, SPOT_FRAMES,
        lambda: binance_emu.BinancePrivateEmulator(KEY, SECRET, {INST.instrument_id: INST}, {"USDT": 100_000.0}),
        lambda account: binance_emu.MatchingProtocol(SPOT_SNAPSHOT, account=account, instrument_ids={"btcusdt": INST.instrument_id}),
        _binance_price, _binance_place,
    ),
    "okx": Case(OKX.iid, OKX.frames, OKX.emulator, lambda account: OKX.make_protocol(OKX.frames, account), _okx_price, _okx_place),
    "bybit": Case(BYBIT.iid, BYBIT.frames, BYBIT.emulator, lambda account: BYBIT.make_protocol(BYBIT.frames, account), _bybit_price, _bybit_place),
}


async def _fill_after(case: Case, last_trade: float, limit: float, next_trade: float) -> tuple[float, Liquidity]:
    """Replay the recording into the account, print ``last_trade``, place a buy at ``limit``, print ``next_trade``: its fill."""
    emulator = case.emulator()
    async with emulator:
        protocol = case.protocol(emulator)
        for _, raw in case.frames:
            protocol.on_sent(raw)
        now = emulator.clock.now_ns()
        emulator.on_trade(Trade(case.iid, now, now, last_trade, 1.0, -1, "injected-1"))
        await case.place(emulator, "tbQuote1", limit)
        assert not emulator.fills
        now = emulator.clock.now_ns()
        emulator.on_trade(Trade(case.iid, now, now, next_trade, 1.0, -1, "injected-2"))
        [fill] = emulator.fills
    return fill.fill.last_px, fill.fill.liquidity


@pytest.mark.parametrize("venue", list(CASES))
async def test_a_buy_below_the_ask_but_at_or_above_the_last_trade_rests_and_fills_at_its_limit_as_maker(venue: str) -> None:
    case = CASES[venue]
    market = case.first_price(case.frames)
    limit = round(market / 2)
    assert await _fill_after(case, limit - 1.0, limit, limit - 1.0) == (limit, Liquidity.MAKER)


@pytest.mark.parametrize("venue", list(CASES))
async def test_a_buy_above_the_ask_but_below_the_last_trade_takes_at_once_and_fills_at_the_next_trade_as_taker(venue: str) -> None:
    case = CASES[venue]
    market = round(case.first_price(case.frames))
    assert await _fill_after(case, 2.0 * market, 1.5 * market, market) == (market, Liquidity.TAKER)

