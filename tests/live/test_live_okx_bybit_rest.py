"""OKX and Bybit REST trading: the order mapping, signed requests the emulator verifies, a lost acknowledgement."""

from __future__ import annotations

import asyncio
import math

import pytest
from pydantic import SecretStr

from tests.live.live_harness import KEY, SECRET, until
from tests.live.venue_kits import BYBIT, KITS, OKX, PASSPHRASE, VenueKit, kit_harness
from tradebus.adapters.bybit.trading import BybitTrading
from tradebus.adapters.bybit.trading import order_params as bybit_params
from tradebus.adapters.common.account_emulator import RestFault, StreamFault
from tradebus.adapters.common.venue_clock import RESYNCS
from tradebus.adapters.okx.trading import OkxTrading
from tradebus.adapters.okx.trading import order_params as okx_params
from tradebus.engine.messages import OrderSide, OrderStatus, OrderType, SubmitOrder, TimeInForce
from tradebus.execution.live import RateLimited, VenueRejected
from tradebus.execution.orders import Order
from tradebus.node.live import LiveSettings


def _order(typ: OrderType = OrderType.LIMIT, price: float = 30_000.04, **kw: object) -> Order:
    return Order("abc123", "s", "x", OrderSide.BUY, typ, 0.0012345678, price, **kw)  # type: ignore[arg-type]


def test_okx_order_mapping() -> None:
    (inst,) = OKX.instruments().values()
    assert okx_params(_order(), inst) == {
        "instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "sz": "0.00123456", "clOrdId": "abc123", "ordType": "limit", "px": "30000.0",
    }
    assert okx_params(_order(post_only=True), inst)["ordType"] == "post_only"
    assert okx_params(_order(tif=TimeInForce.IOC), inst)["ordType"] == "ioc"
    assert okx_params(_order(tif=TimeInForce.FOK), inst)["ordType"] == "fok"
    market = okx_params(_order(OrderType.MARKET, math.nan), inst)
    assert (market["ordType"], market["tgtCcy"], "px" in market) == ("market", "base_ccy", False)
    for bad in (_order(OrderType.STOP_MARKET, math.nan), _order(reduce_only=True)):  # a stop without a trigger
        with pytest.raises(VenueRejected):
            okx_params(bad, inst)


def test_bybit_order_mapping() -> None:
    (inst,) = BYBIT.instruments().values()
    assert bybit_params(_order(), inst) == {
        "category": "spot", "symbol": "BTCUSDT", "side": "Buy", "qty": "0.001234", "orderLinkId": "abc123",
        "orderType": "Limit", "price": "30000.04", "timeInForce": "GTC",
    }
    assert bybit_params(_order(post_only=True), inst)["timeInForce"] == "PostOnly"
    assert bybit_params(_order(tif=TimeInForce.IOC), inst)["timeInForce"] == "IOC"
    market = bybit_params(_order(OrderType.MARKET, math.nan), inst)
    assert (market["orderType"], market["marketUnit"], "price" in market) == ("Market", "baseCoin", False)
    with pytest.raises(VenueRejected, match="reduce_only"):
        bybit_params(_order(reduce_only=True), inst)


async def test_requests_are_signed_and_a_wrong_secret_or_environment_is_refused() -> None:
    for kit, make in (
        (OKX, lambda url, secret, **kw: OkxTrading(url, SecretStr(KEY), SecretStr(secret), SecretStr(PASSPHRASE), OKX.instruments(), 2.0, **kw)),
        (BYBIT, lambda url, secret, **kw: BybitTrading(url, SecretStr(KEY), SecretStr(secret), BYBIT.instruments(), 2.0)),
    ):
        async with kit.emulator() as emulator:
            good = make(emulator.rest_url, SECRET)
            assert {b.asset for b in await good.balances()} == {"USDT"}
            await good.close()
            bad = make(emulator.rest_url, SECRET + "x")
            with pytest.raises(VenueRejected, match="50113|10004") as info:
                await bad.balances()
            await bad.close()
            assert SECRET not in str(info.value)
            assert emulator.requests == [("GET", emulator.requests[0][1], "")]  # the refused one never reached the account
    async with OKX.emulator() as emulator:  # demo keys work only with demo trading's header
        mainnet = OkxTrading(emulator.rest_url, SecretStr(KEY), SecretStr(SECRET), SecretStr(PASSPHRASE), OKX.instruments(), 2.0, demo=False)
        with pytest.raises(VenueRejected, match="50101"):
            await mainnet.balances()
        await mainnet.close()


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_a_lost_acknowledgement_is_settled_by_a_query_never_a_resubmission(kit: VenueKit) -> None:
    lost = RestFault("lose", "POST", kit.place_path)
    silent = StreamFault("drop", '"New"' if kit is BYBIT else '"state": "live"')  # nor does the stream tell
    async with kit_harness(kit, [silent], rest_faults=[lost]) as h:
        order = h.kernel.execution.submit(SubmitOrder("s1", kit.iid, "", OrderSide.BUY, 0.002, 0, 0, OrderType.LIMIT, 1_000.0))
        await until(lambda: order.status is OrderStatus.ACCEPTED, timeout=5.0)
        assert lost.fired and silent.fired
        assert h.emulator.orders[order.client_order_id].status is OrderStatus.ACCEPTED
    assert [c for m, p, c in h.emulator.requests if m == "POST" and p == kit.place_path] == [order.client_order_id]
    assert h.venue.requests["query"] >= 1


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_a_rate_limited_submit_is_rejected_at_once_with_the_venues_code_and_never_resent(kit: VenueKit) -> None:
    """OKX 50011 (HTTP 429) and Bybit 10006 refuse the request unprocessed: the order is not placed.
    It was left SUBMITTED, queried, and rejected as "never arrived" once the grace ran out. The pause
    they ask (2 s) outlasts the next submit's timeout (0.5 s): it is withdrawn, never sent; a query
    waits the pause out, and a submit after it goes."""
    fault = RestFault("rate_limit", "POST", kit.place_path, retry_after=2)
    code = "50011" if kit is OKX else "10006"
    async with kit_harness(kit, rest_faults=[fault]) as h:
        order = h.kernel.execution.submit(SubmitOrder("s1", kit.iid, "", OrderSide.BUY, 0.002, 0, 0, OrderType.LIMIT, 1_000.0))
        await until(lambda: order.status is OrderStatus.REJECTED, timeout=5.0)
        assert fault.fired
        assert "rate limit" in order.reason and code in order.reason
        assert h.venue.requests["query"] == 0
        held = h.kernel.execution.submit(SubmitOrder("s1", kit.iid, "", OrderSide.BUY, 0.002, 0, 0, OrderType.LIMIT, 1_000.0))
        await until(lambda: held.status is OrderStatus.REJECTED)
        assert "withdrawn" in held.reason and f"rate limited (429, code {code}) until" in held.reason
        await h.venue.api.balances()  # waits out the pause
        assert h.venue.api.budget.waits >= 1
        after = h.kernel.execution.submit(SubmitOrder("s1", kit.iid, "", OrderSide.BUY, 0.002, 0, 0, OrderType.LIMIT, 1_000.0))
        await until(lambda: after.status is OrderStatus.ACCEPTED, timeout=5.0)
        await h.venue.drain()
    posts = [c for m, p, c in h.emulator.requests if m == "POST" and p == kit.place_path]
    assert posts == [order.client_order_id, after.client_order_id]


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_a_rate_limited_answer_pauses_every_request_as_long_as_the_venue_says(kit: VenueKit) -> None:
    """OKX: 429 with ``Retry-After``; Bybit: retCode 10006 in an HTTP 200 with ``X-Bapi-Limit-Reset-Timestamp``
    (the budget paused 1 s, its default, whatever the reset time)."""
    fault = RestFault("rate_limit", "GET", "/api/v5/account/balance" if kit is OKX else "/v5/account/wallet-balance", retry_after=2)
    async with kit.emulator([fault]) as emulator:
        settings_account = LiveSettings(venue=kit.venue).account()
        api = settings_account.trading(
            emulator.rest_url, SecretStr(KEY), SecretStr(SECRET), kit.instruments(), 2.0, passphrase=SecretStr(PASSPHRASE)
        )
        try:
            with pytest.raises(RateLimited, match="rate limit (50011|10006)"):
                await api.balances()
            assert api.budget.blocked_until - api.budget._now() > 1.5 and "429" in api.budget.block_reason
        finally:
            await api.close()


@pytest.mark.parametrize(("kit", "code"), [(BYBIT, "429"), (BYBIT, "10018"), (OKX, "50061")], ids=["bybit-429", "bybit-10018", "okx-50061"])
async def test_a_submit_answered_with_any_rate_limit_code_is_rate_limited_and_pauses_the_account(kit: VenueKit, code: str) -> None:
    """Bybit retCode ``429`` ("high server load, please retry", HTTP 200) and OKX ``50061`` (sub-account rate limit)
    arrive from ccxt as a plain ExchangeError: the submit was an ordinary refusal and the account's budget did not
    pause, so the next requests went at once. Bybit ``10018`` (IP rate limit) paused only until the answer's
    ``X-Bapi-Limit-Reset-Timestamp``, the endpoint's own window (next wall second here), not over: the pause is
    the budget's backoff (1 s) whenever the answer says requests are left to the endpoint. The next submit
    (timeout 0.5 s) is withdrawn, never sent; a query waits, sent only after the pause (no request reaches the
    emulator during it)."""
    fault = RestFault("refuse", "POST", kit.place_path, code=code)
    async with kit_harness(kit, rest_faults=[fault]) as h:
        budget = h.venue.api.budget
        quiet: list[bool] = []
        pause = budget._sleep

        async def sleep(seconds: float) -> None:
            seen = len(h.emulator.requests)
            await pause(seconds)
            quiet.append(len(h.emulator.requests) == seen)

        budget._sleep = sleep
        order = h.kernel.execution.submit(SubmitOrder("s1", kit.iid, "", OrderSide.BUY, 0.002, 0, 0, OrderType.LIMIT, 1_000.0))
        await until(lambda: order.status is OrderStatus.REJECTED, timeout=5.0)
        assert fault.fired
        assert "rate limit" in order.reason and code in order.reason
        assert h.venue.requests["query"] == 0
        held = h.kernel.execution.submit(SubmitOrder("s1", kit.iid, "", OrderSide.BUY, 0.002, 0, 0, OrderType.LIMIT, 1_000.0))
        await until(lambda: held.status is OrderStatus.REJECTED)
        assert "withdrawn" in held.reason and f"rate limited (429, code {code}) until" in held.reason
        await h.venue.api.balances()
        assert quiet and all(quiet)
        after = h.kernel.execution.submit(SubmitOrder("s1", kit.iid, "", OrderSide.BUY, 0.002, 0, 0, OrderType.LIMIT, 1_000.0))
        await until(lambda: after.status is OrderStatus.ACCEPTED, timeout=5.0)
        await h.venue.drain()
    posts = [c for m, p, c in h.emulator.requests if m == "POST" and p == kit.place_path]
    assert posts == [order.client_order_id, after.client_order_id]


async def test_a_bybit_ip_ban_pauses_the_account_for_the_ten_minutes_bybit_asks() -> None:
    """Bybit bans an IP with HTTP 403 "access too frequent" (no JSON, no header): wait at least 10 minutes. The
    account's budget did not pause (the 403 was taken for a 429 without ``Retry-After``: 1 s), so the daemon went on
    sending during the ban. The submit is refused unprocessed (REJECTED, never queried); the next one is withdrawn."""
    fault = RestFault("ban", "POST", BYBIT.place_path, retry_after=0)
    async with kit_harness(BYBIT, rest_faults=[fault]) as h:
        budget = h.venue.api.budget
        order = h.kernel.execution.submit(SubmitOrder("s1", BYBIT.iid, "", OrderSide.BUY, 0.002, 0, 0, OrderType.LIMIT, 1_000.0))
        await until(lambda: order.status is OrderStatus.REJECTED, timeout=5.0)
        assert fault.fired and "403" in order.reason
        assert h.venue.requests["query"] == 0
        assert budget.blocked_until - budget._now() > 590 and budget.block_reason == "IP banned (403)"
        held = h.kernel.execution.submit(SubmitOrder("s1", BYBIT.iid, "", OrderSide.BUY, 0.002, 0, 0, OrderType.LIMIT, 1_000.0))
        await until(lambda: held.status is OrderStatus.REJECTED)
        assert "withdrawn, never sent: IP banned (403) until" in held.reason
    assert [c for m, p, c in h.emulator.requests if m == "POST" and p == BYBIT.place_path] == [order.client_order_id]


@pytest.mark.parametrize(("kit", "code"), [(BYBIT, "10002"), (OKX, "50102")], ids=["bybit-10002", "okx-50102"])
async def test_a_submit_refused_for_its_timestamp_is_rejected_at_once_with_the_code(kit: VenueKit, code: str) -> None:
    """Bybit ``10002`` (the request's time outside its recv_window) and OKX ``50102`` ("timestamp request expired")
    refuse the request before processing it. ccxt maps both to its InvalidNonce, a NetworkError: the order was
    UNKNOWN, queried, and rejected as never arrived once the grace ran out, without the code. (Sent again after each of
    RESYNCS measures of the venue's clock, :mod:`tests.live.test_live_venue_clock`: refused every time here.)"""
    faults = [RestFault("refuse", "POST", kit.place_path, code=code) for _ in range(RESYNCS + 1)]
    fault = faults[-1]
    async with kit_harness(kit, rest_faults=faults) as h:
        order = h.kernel.execution.submit(SubmitOrder("s1", kit.iid, "", OrderSide.BUY, 0.002, 0, 0, OrderType.LIMIT, 1_000.0))
        await until(lambda: order.status is OrderStatus.REJECTED, timeout=5.0)
        assert fault.fired and f"error {code}" in order.reason, order.reason
        assert h.venue.requests["query"] == 0
        await h.venue.drain()
    assert [c for m, p, c in h.emulator.requests if m == "POST" and p == kit.place_path] == [order.client_order_id] * (RESYNCS + 1)


async def test_an_okx_cancel_answered_cancel_pending_is_a_refusal_with_its_code() -> None:
    """OKX refuses a cancel of an order already being canceled (``sCode`` 51410). ccxt raises its CancelPending,
    outside its ExchangeError and NetworkError: it escaped the adapter as a raw ccxt exception."""
    refused = RestFault("refuse", "POST", "/api/v5/trade/cancel-order", code="51410")
    async with OKX.emulator([refused]) as emulator:
        api = OkxTrading(emulator.rest_url, SecretStr(KEY), SecretStr(SECRET), SecretStr(PASSPHRASE), OKX.instruments(), 2.0)
        try:
            order = Order("abcpending", "s", OKX.iid, OrderSide.BUY, OrderType.LIMIT, 0.001, 1_000.0)
            await api.place(order)
            with pytest.raises(VenueRejected, match="error 51410"):
                await api.cancel(order)
        finally:
            await api.close()
    assert refused.fired and emulator.orders["abcpending"].status is OrderStatus.ACCEPTED


@pytest.mark.parametrize(
    ("kit", "code", "processed", "ends"),
    [
        (BYBIT, "10016", True, OrderStatus.ACCEPTED),
        (BYBIT, "170146", True, OrderStatus.ACCEPTED),
        (OKX, "51149", True, OrderStatus.ACCEPTED),
        (BYBIT, "10016", False, OrderStatus.REJECTED),
    ],
    ids=["bybit-10016-placed", "bybit-170146-placed", "okx-51149-placed", "bybit-10016-not-placed"],
)
async def test_a_submit_answered_with_an_unknown_outcome_code_is_queried_and_ends_as_the_venue_has_it(
    kit: VenueKit, code: str, processed: bool, ends: OrderStatus
) -> None:
    """Bybit ``10016`` ("server error; service restarting"), ``170146`` ("order creation timeout") and OKX ``51149``
    ("order timed out") say nothing of the outcome. The order is queried, sent once, and ends as the venue has it:
    resting (the stream's acknowledgement lost), or, when the venue never took it, rejected as never arrived. ccxt
    maps these codes to a plain ExchangeError or InvalidOrder: the order was REJECTED with the code at once, never
    queried, while it rested at the venue (an orphan)."""
    answer = RestFault("refuse", "POST", kit.place_path, code=code, processed=processed)
    silent = StreamFault("drop", '"New"' if kit is BYBIT else '"state": "live"')
    async with kit_harness(kit, [silent], rest_faults=[answer]) as h:
        order = h.kernel.execution.submit(SubmitOrder("s1", kit.iid, "", OrderSide.BUY, 0.002, 0, 0, OrderType.LIMIT, 1_000.0))
        coid = order.client_order_id
        await until(lambda: order.status in (OrderStatus.ACCEPTED, OrderStatus.REJECTED), timeout=5.0)
        assert answer.fired and silent.fired is processed
        assert order.status is ends, order.reason
        assert code not in order.reason
        assert (coid in h.emulator.orders) is processed
        assert h.venue.requests["query"] >= 1
        await h.venue.drain()
    assert [c for m, p, c in h.emulator.requests if m == "POST" and p == kit.place_path] == [coid]


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_a_5xx_is_no_answer_never_a_rejection(kit: VenueKit) -> None:
    from tradebus.execution.live import NoAnswer

    async with kit.emulator([RestFault("error5xx", "POST", kit.place_path)]) as emulator:
        api = LiveSettings(venue=kit.venue).account().trading(
            emulator.rest_url, SecretStr(KEY), SecretStr(SECRET), kit.instruments(), 2.0, passphrase=SecretStr(PASSPHRASE)
        )
        try:
            with pytest.raises(NoAnswer):
                await api.place(Order("abc5xx", "s", kit.iid, OrderSide.BUY, OrderType.LIMIT, 0.001, 1_000.0))
        finally:
            await api.close()
    assert emulator.orders == {}


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_a_private_stream_login_with_a_wrong_secret_is_fatal_and_names_no_secret(kit: VenueKit) -> None:
    from tradebus.errors import VenueError

    async with kit.emulator() as emulator:
        stream = LiveSettings(venue=kit.venue).account().user_stream(
            emulator.ws_url, SecretStr(KEY), SecretStr(SECRET + "x"), kit.instruments(), lambda _: None, lambda _: None,
            passphrase=SecretStr(PASSPHRASE),
        )
        with pytest.raises(VenueError) as info:
            await asyncio.wait_for(stream.run(), 10)
    assert SECRET not in str(info.value) and PASSPHRASE not in str(info.value)
    assert not any(s.topics for s in emulator.sessions)
