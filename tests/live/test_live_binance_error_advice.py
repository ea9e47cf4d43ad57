"""A Binance refusal a new user meets on the first day says what to do, and never shows the key.

A wrong key (``-2015``), a wrong secret (``-1022``), a clock off the venue's (``-1021``) and an order breaking a symbol's
filter (``-1013``) were passed on as Binance's own text ("Invalid API-key, IP, or permissions for action."), naming no
setting of the daemon. Against the account emulators on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from pydantic import SecretStr

from tests.live.live_harness import IID, INST, KEY, SECRET, harness, until, usdm_harness
from tests.live.node_testdata import USDM_IID, USDM_INSTRUMENT
from tradebus.adapters.binance.private_emulator import BinanceFuturesEmulator, BinancePrivateEmulator, RestFault
from tradebus.adapters.binance.trading import BinanceFuturesTrading, BinanceTrading
from tradebus.adapters.binance.user_stream import BinanceFuturesUserStream, FuturesStreamParser, UserStreamParser
from tradebus.adapters.common.policy import FatalVenueError
from tradebus.adapters.common.venue_clock import RESYNCS
from tradebus.engine.instrument import Instrument, InstrumentKind
from tradebus.engine.messages import OrderSide, OrderStatus, OrderType, SubmitOrder
from tradebus.errors import VenueError
from tradebus.execution.live import CredentialsRefused, VenueRejected

WRONG_KEY = "tbWrongKeyAdvice7777777777"
USDM_INST = Instrument(**{**USDM_INSTRUMENT, "kind": InstrumentKind.PERPETUAL})


@pytest.mark.parametrize("market", ["spot", "usdm"])
async def test_reading_the_account_with_a_wrong_key_names_the_key_variables_to_check(market: str) -> None:
    """The daemon's first request, the account's balances, refused -2015: what the daemon stops with (``reading the
    account failed: <this>``) names live.api_key_env and live.api_secret_env and the key's IP restriction, not the key."""
    if market == "spot":
        emulator = BinancePrivateEmulator(KEY, SECRET, {IID: INST}, {"USDT": 1_000.0})
        trading: type[BinanceTrading] = BinanceTrading
        instruments = {IID: INST}
    else:
        emulator = BinanceFuturesEmulator(KEY, SECRET, {USDM_IID: USDM_INST}, {"USDT": 1_000.0})
        trading, instruments = BinanceFuturesTrading, {USDM_IID: USDM_INST}
    await emulator.start()
    api = trading(emulator.rest_url, SecretStr(WRONG_KEY), SecretStr(SECRET), instruments, timeout=2.0)
    try:
        with pytest.raises(VenueRejected) as err:
            await api.balances()
    finally:
        await api.close()
        await emulator.stop()
    message = str(err.value)
    assert "-2015" in message and "live.api_key_env" in message and "live.api_secret_env" in message, message
    assert "IP restriction" in message and WRONG_KEY not in message and SECRET not in message


async def test_an_order_refused_for_its_signature_says_to_check_the_secret() -> None:
    async with harness(secret="not-the-secret") as h:
        order = h.submit(OrderSide.BUY, 0.01, 50_000.0)
        await until(lambda: order.status is OrderStatus.REJECTED)
        assert "-1022" in order.reason and "live.api_secret_env" in order.reason, order.reason
        assert "not-the-secret" not in order.reason


@pytest.mark.parametrize(
    ("market", "code", "advice"),
    [("spot", "-1021", "synchronise the clock"), ("spot", "-1013", "tick_size, lot_size"),
     ("usdm", "-4164", "min_notional"), ("usdm", "-4014", "tick_size"), ("usdm", "-1021", "synchronise the clock")],
)
async def test_an_order_refused_for_the_clock_or_a_filter_says_what_to_do(market: str, code: str, advice: str) -> None:
    """-1021 (the request's timestamp outside recvWindow: the machine's clock); spot's -1013 (a LOT_SIZE, PRICE_FILTER
    or NOTIONAL filter: the config's instrument differs from the venue's) and USD-M's own filter codes (-4164 notional
    below the symbol's minimum, -4014 price off the tick)."""
    path, start = ("/api/v3/order", harness) if market == "spot" else ("/fapi/v1/order", usdm_harness)
    tries = RESYNCS + 1 if code == "-1021" else 1  # a -1021 is sent again after each measure of Binance's clock
    async with start(rest_faults=[RestFault("refuse", "POST", path, code=code) for _ in range(tries)]) as h:
        order = h.submit(OrderSide.BUY, 0.01, 59_000.0)
        await until(lambda: order.status is OrderStatus.REJECTED)
        assert code in order.reason and advice in order.reason, order.reason
        await h.venue.drain()


async def test_a_usdm_order_refused_with_1013_gets_no_spot_filter_advice() -> None:
    """USD-M's -1013 is INVALID_MESSAGE, not spot's filter failure: it names no filter."""
    fault = RestFault("refuse", "POST", "/fapi/v1/order", code="-1013")
    async with usdm_harness(rest_faults=[fault]) as h:
        order = h.submit(OrderSide.BUY, 0.01, 59_000.0)
        await until(lambda: order.status is OrderStatus.REJECTED)
        assert "-1013" in order.reason and "tick_size" not in order.reason, order.reason
        await h.venue.drain()


def test_a_spot_user_stream_subscription_refused_names_the_key_variables() -> None:
    """``userDataStream.subscribe.signature`` answered -2015 (a key revoked while running) stops the stream saying what to check."""
    parser = UserStreamParser({IID: INST}, lambda c: None)
    frame = {"id": "1", "status": 401, "error": {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}}
    with pytest.raises(CredentialsRefused, match="-2015 .*live.api_key_env"):  # the daemon exits 2 on it
        parser.parse(json.dumps(frame))
    frame["error"] = {"code": -1020, "msg": "This operation is not supported."}
    with pytest.raises(FatalVenueError, match="-1020") as other:
        parser.parse(json.dumps(frame))
    assert not isinstance(other.value, CredentialsRefused)


async def test_a_usdm_listen_key_refused_names_the_key_variables() -> None:
    emulator = BinanceFuturesEmulator(KEY, SECRET, {USDM_IID: USDM_INST}, {"USDT": 1_000.0})
    await emulator.start()
    try:
        stream = BinanceFuturesUserStream(
            emulator.rest_url, emulator.ws_url, SecretStr(WRONG_KEY), FuturesStreamParser({USDM_IID: USDM_INST}, lambda c: None),
            lambda e: None,
        )
        with pytest.raises(VenueError, match="-2015") as err:
            await asyncio.wait_for(stream.run(), 10)
    finally:
        await emulator.stop()
    assert "live.api_key_env" in str(err.value) and WRONG_KEY not in str(err.value)


@pytest.mark.parametrize(("market", "told"), [("spot", "would trigger immediately"), ("usdm", "-2021")])
async def test_a_stop_refused_as_already_triggered_says_where_to_place_it(market: str, told: str) -> None:
    """Last trade 60,000; a BUY stop at 59,000 triggers at a last price >= it: Binance refuses it, spot with -2010
    "Order would trigger immediately." (ccxt keeps only the message), USD-M with -2021 "Order would immediately
    trigger.". The rejection said no more; it now says where a BUY and a SELL stop go."""
    start = harness if market == "spot" else usdm_harness
    async with start() as h:
        now = h.kernel.clock.now_ns()
        stop = h.kernel.execution.submit(SubmitOrder("s1", h.iid, "", OrderSide.BUY, 0.01, now, now, OrderType.STOP_MARKET,
                                                     trigger_price=59_000.0))
        await until(lambda: stop.status is OrderStatus.REJECTED)
        await h.venue.drain()
    assert told in stop.reason and "place a BUY stop above the last price and a SELL stop below it" in stop.reason, stop.reason


async def test_a_spot_order_refused_for_its_balance_gets_no_stop_advice() -> None:
    """-2010 is any new order refused: "Account has insufficient balance for requested action." names no stop."""
    async with harness(balances={"USDT": 100.0}) as h:
        order = h.submit(OrderSide.BUY, 0.01, 59_000.0)
        await until(lambda: order.status is OrderStatus.REJECTED)
        await h.venue.drain()
    assert "insufficient balance" in order.reason and "stop" not in order.reason, order.reason
