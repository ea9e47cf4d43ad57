"""Binance's order limits of an account (spot's "unfilled order count", USD-M's order rate limit) against the
account emulators, on one clock a budget's wait moves (no wall-clock wait).

Spot's ``exchangeInfo`` lists 100 orders per 10 s and 200,000 per UTC day (``rateLimitType`` ``ORDERS``), told by
``X-MBX-ORDER-COUNT-10S``/``-1D`` on each accepted order; over one, Binance answers ``429`` ``-1015`` "Too many new
orders; current limit is 100 orders per 10 SECOND." without ``Retry-After`` (USD-M: "... 300 orders per TEN_SECONDS.")
and, repeated, bans the IP (``418``).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from loguru import logger
from pydantic import SecretStr

from tests.live.live_harness import INST, KEY, SECRET, USDM_INST, WAIT, until
from tests.live.node_testdata import FIXTURES
from tests.live.test_live_amend_at_venue import BINANCE
from tests.live.test_live_unheard_amend import _session
from tradebus.adapters.binance.private_emulator import BinanceFuturesEmulator, BinancePrivateEmulator, RestFault, StreamFault
from tradebus.adapters.binance.trading import (
    FUTURES_ORDER_LIMITS, FUTURES_WEIGHT_LIMIT, SPOT_ORDER_LIMITS, WEIGHT_HEADER, WEIGHT_LIMIT, BinanceFuturesTrading, BinanceTrading,
    order_limit_budgets, order_limit_window,
)
from tradebus.adapters.common.ratelimit import WeightBudget
from tradebus.adapters.binance.user_stream import LIVE_ACCOUNT
from tradebus.engine.messages import OrderFilled, OrderSide, OrderStatus, OrderType, Trade
from tradebus.execution.live import RateLimited, send_within
from tradebus.execution.orders import Order
from tradebus.node.live import LiveNode

START = 1_800_000_001.0  # 1 s into a 10 s window (and a minute); 2027-01-15T08:00:01Z
DAY = int(START // 86_400)
NEXT_DAY = "2027-01-16T00:00:00.000Z"  # (DAY + 1) * 86400 as UTC: the end of the day START is in


class Clock:
    """The seconds the emulator counts windows in and the budgets read; a budget's wait moves it on."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now

    async def wait(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


@asynccontextmanager
async def _account(market: str, clock: Clock) -> AsyncIterator[tuple[Any, BinanceTrading]]:
    """The emulated account of ``market`` (``spot``, ``usdm``) and a trading API on it, its budgets on ``clock``."""
    on_clock: dict[str, Any] = {"monotonic": clock, "sleep": clock.wait}
    if market == "spot":
        emulator: Any = BinancePrivateEmulator(KEY, SECRET, {INST.instrument_id: INST}, {"USDT": 10_000_000.0}, weight_clock=clock, order_clock=clock)
        kind, inst, limits, weight = BinanceTrading, INST, SPOT_ORDER_LIMITS, WeightBudget(WEIGHT_LIMIT, 60.0, header=WEIGHT_HEADER, **on_clock)
    else:
        emulator = BinanceFuturesEmulator(KEY, SECRET, {USDM_INST.instrument_id: USDM_INST}, {"USDT": 10_000_000.0}, order_clock=clock)
        kind, inst, limits = BinanceFuturesTrading, USDM_INST, FUTURES_ORDER_LIMITS
        weight = WeightBudget(FUTURES_WEIGHT_LIMIT, 60.0, header="X-MBX-USED-WEIGHT-1M", **on_clock)
    async with emulator:
        api = kind(emulator.rest_url, SecretStr(KEY), SecretStr(SECRET), {inst.instrument_id: inst}, WAIT, weight,
                   order_limit_budgets(limits, **on_clock))
        try:
            yield emulator, api
        finally:
            await api.close()


def _buy(n: int, iid: str = INST.instrument_id) -> Order:
    """A limit buy far below the market: it rests, unfilled (what spot's order count counts)."""
    return Order(f"lim{n}", "s", iid, OrderSide.BUY, OrderType.LIMIT, 0.001, 1_000.0, math.nan)


async def test_a_spot_burst_waits_for_the_next_10_s_instead_of_meeting_429() -> None:
    """120 orders at once on spot, every 10th a cancel-replace of the order before it (it counts 1 order, as a new
    order does). The client charged each 1 of 6000 weight and counted no order: the 101st went out and met 429 ``-1015``.
    Each now takes from the order budgets, fed by the count headers: all are placed, none refused, the burst waited
    for the next 10 s window, and no window saw more than 100."""
    clock = Clock()
    async with _account("spot", clock) as (emulator, api):
        last = None
        for n in range(120):
            order = _buy(n)
            if n % 10 == 9 and last is not None:
                await api.replace(last, order)
            else:
                await api.place(order)
            last = order
        assert emulator.order_refusals == 0 and len(emulator.orders) == 120
        assert api.order_budgets[0].peak <= 100 and clock.now >= 1_800_000_010.0  # the burst waited for the next 10 s


async def test_a_spot_day_used_up_refuses_new_orders_naming_the_limit_and_logs_an_error_once() -> None:
    """Another process on the account placed 199,990 unfilled orders today (of 200,000). The client counted no order:
    20 orders went out and the 11th met 429 ``-1015`` (repeated: an IP ban). The first answer's ``X-MBX-ORDER-COUNT-1D``
    tells the day used past this process's share (160,000): every next submit, within its submit timeout, is withdrawn
    unsent with a reason naming the limit and its end (00:00 UTC), not held until then; one ERROR says so."""
    clock = Clock()
    errors: list[Any] = []
    sink = logger.add(errors.append, level="ERROR", format="{message}")
    try:
        async with _account("spot", clock) as (emulator, api):
            emulator.order_counts[86_400] = (DAY, 199_990)
            refusals = []
            with send_within(lambda: 5.0):
                for n in range(20):
                    try:
                        await api.place(_buy(n))
                    except RateLimited as exc:
                        refusals.append(str(exc))
            assert emulator.order_refusals == 0 and len(emulator.orders) == 1
            assert len(refusals) == 19 and all("never sent" in r and "orders per UTC day" in r and NEXT_DAY in r for r in refusals)
            assert clock.now == START  # nothing held
    finally:
        logger.remove(sink)
    [error] = [e for e in errors if "orders per UTC day" in e]
    assert NEXT_DAY in error


async def test_a_spot_day_used_up_re_reads_the_count_at_most_once_a_minute_and_places_once_fills_freed_room() -> None:
    """Another process placed 199,990 orders today: the first answer here tells the day used past this process's share
    (160,000). Then most of them filled, which this process did not hear (its stream was reconnecting): Binance's count
    is 1,000. The budget never read the count again: every submit was withdrawn until 00:00 UTC. Before holding one it
    now re-reads ``GET /api/v3/rateLimit/order`` (weight 40), at most once a minute: the next submit is placed; with the
    day used up again, 20 submits within the minute are withdrawn after no re-read, the next minute's after one."""
    clock = Clock()
    async with _account("spot", clock) as (emulator, api):

        def reads() -> int:
            return sum(path == "/api/v3/rateLimit/order" for _, path, _ in emulator.requests)

        emulator.order_counts[86_400] = (DAY, 199_990)
        await api.place(_buy(0))
        emulator.order_counts[86_400] = (DAY, 1_000)
        with send_within(lambda: 5.0):
            await api.place(_buy(1))
            day = api.order_budgets[1]
            assert reads() == 1 and day.used == 1_001 and len(emulator.orders) == 2 and clock.now == START
            emulator.order_counts[86_400] = (DAY, 199_999)
            await api.place(_buy(2))  # its answer tells 200,000
            for n in range(3, 23):
                with pytest.raises(RateLimited, match="orders per UTC day"):
                    await api.place(_buy(n))
            assert reads() == 1
            clock.now += 60.0
            with pytest.raises(RateLimited, match="orders per UTC day"):
                await api.place(_buy(23))
            assert reads() == 2 and len(emulator.orders) == 3 and emulator.order_refusals == 0


async def test_a_submit_the_day_withdraws_leaves_no_order_counted_in_the_10_s_window() -> None:
    """The budgets of a request were taken one after another, 10 s first: a submit the used-up day then withdrew (never
    sent) stayed counted in the 10 s window, so 80 withdrawn submits took the window's share of 80 and the next order
    waited for the next window with nothing sent. The day is now taken first, and what an earlier budget counted of a
    withdrawn request is given back (the unit test of ``acquire_together`` pins that)."""
    clock = Clock()
    async with _account("spot", clock) as (emulator, api):
        emulator.order_counts[86_400] = (DAY, 199_990)
        await api.place(_buy(0))  # its answer tells the day used past this process's share
        with send_within(lambda: 5.0):
            for n in range(1, 81):
                with pytest.raises(RateLimited, match="orders per UTC day"):
                    await api.place(_buy(n))
        ten_s, day = api.order_budgets
        assert ten_s.used == 1 and day.used == 199_991 and clock.now == START
        emulator.order_counts[86_400] = (DAY, 0)  # the day freed (the other process's orders filled) ...
        day.observe(0, {"X-MBX-ORDER-COUNT-1D": "0"})  # ... as an answer tells it
        await api.place(_buy(81))  # the 10 s window has room: no wait
        assert clock.now == START and len(emulator.orders) == 2


async def test_spot_orders_that_fill_leave_the_count_and_the_budget_lets_more_go_without_a_wait() -> None:
    """Spot counts unfilled orders: an order's first fill takes it off the count (Binance's "Spot Unfilled Order Count
    Rules"). 70 resting buys, all filled by one public trade, then 70 more, in one 10 s window: the budget reads the
    count from the next answer's header (1, not 71) and nothing waits for the next window (140 > 80, its share)."""
    clock = Clock()
    async with _account("spot", clock) as (emulator, api):
        for n in range(70):
            await api.place(_buy(n))
        emulator.on_trade(Trade(INST.instrument_id, 0, 0, 999.0, 1.0, -1, "t1"))
        assert all(rec.filled > 0 for rec in emulator.orders.values())
        for n in range(70, 140):
            await api.place(_buy(n))
        assert emulator.order_refusals == 0 and clock.now == START and api.order_budgets[0].used == 70


async def test_first_fills_the_user_stream_tells_free_room_in_the_spot_order_windows() -> None:
    """80 resting buys (this process's share of the 100 per 10 s) all filled by one public trade: Binance takes each off
    the unfilled-order count at its first fill, but the budget learnt counts only from answers' headers, so the next
    order waited for the next 10 s window with nothing counting. The user stream's first fills (a ``TRADE`` whose
    cumulative ``z`` is its ``l``), given the trading API as the live daemon gives it, take them off: 80 more orders
    go without a wait, none refused."""
    clock = Clock()
    async with _account("spot", clock) as (emulator, api):
        heard: list[Any] = []
        stream = LIVE_ACCOUNT.user_stream(emulator.ws_api_url, SecretStr(KEY), SecretStr(SECRET), api.instruments,
                                          lambda coid: None, heard.append, trading=api)
        task = asyncio.create_task(stream.run())
        try:
            await until(lambda: stream.subscribed.is_set())
            for n in range(80):
                await api.place(_buy(n))
            ten_s, day = api.order_budgets
            assert ten_s.used == 80 and day.used == 80
            emulator.clock.advance_to(emulator.clock.now_ns() + 1_000_000)  # a fill at the last answer's ms is left out
            emulator.on_trade(Trade(INST.instrument_id, 0, 0, 999.0, 1.0, -1, "t1"))
            await until(lambda: sum(type(e) is OrderFilled for e in heard) == 80)
            assert ten_s.used == 0 and day.used == 0
            for n in range(80, 160):
                await api.place(_buy(n))
            assert clock.now == START and emulator.order_refusals == 0 and ten_s.used == 80
        finally:
            stream.stop()
            await task


async def test_a_first_fill_heard_after_an_answer_whose_count_left_it_out_is_not_taken_off_again() -> None:
    """Two resting buys (count 2); one fills at the venue, its ``TRADE`` frame held back; then a third order's answer
    tells ``X-MBX-ORDER-COUNT-10S: 2`` (Binance took the filled one off at its fill); then the frame comes. It was taken
    off again: the budget counted 1 while Binance counted 2, so a burst could meet ``-1015``. The fill's ``T`` is not
    after that answer's ``transactTime``: it stays 2; the third order's fill, later, takes 1 off as Binance does."""
    clock = Clock()
    async with _account("spot", clock) as (emulator, api):
        heard: list[Any] = []
        stream = LIVE_ACCOUNT.user_stream(emulator.ws_api_url, SecretStr(KEY), SecretStr(SECRET), api.instruments,
                                          lambda coid: None, heard.append, trading=api)
        task = asyncio.create_task(stream.run())
        try:
            await until(lambda: stream.subscribed.is_set())
            low = Order("low1", "s", INST.instrument_id, OrderSide.BUY, OrderType.LIMIT, 0.001, 900.0, math.nan)
            await api.place(_buy(0))
            await api.place(low)
            ten_s, day = api.order_budgets
            assert ten_s.used == 2
            # the fill's frames wait for the next frame pushed; the third order's own are not pushed (the cancel's are)
            emulator.stream_faults += [StreamFault("reorder", '"x": "TRADE"'), StreamFault("reorder", "outboundAccountPosition"),
                                       StreamFault("drop", '"c": "lim2"'), StreamFault("drop", "outboundAccountPosition", at=1)]
            emulator.on_trade(Trade(INST.instrument_id, 0, 0, 999.0, 1.0, -1, "t1"))
            assert emulator.frames_pending == 2
            await api.place(_buy(2))
            assert ten_s.used == 2 and day.used == 2 and emulator.order_counts[10][1] == 2
            await api.cancel(low)  # its frame brings the held ones after it
            await until(lambda: sum(type(e) is OrderFilled for e in heard) == 1)
            assert (ten_s.used, day.used) == (2, 2) == (emulator.order_counts[10][1], emulator.order_counts[86_400][1])
            emulator.on_trade(Trade(INST.instrument_id, 0, 0, 999.0, 1.0, -1, "t2"))  # the third order fills
            await until(lambda: sum(type(e) is OrderFilled for e in heard) == 2)
            assert (ten_s.used, day.used) == (1, 1) == (emulator.order_counts[10][1], emulator.order_counts[86_400][1])
        finally:
            stream.stop()
            await task


async def test_the_live_daemon_takes_a_first_fill_its_spot_stream_tells_off_the_order_count(tmp_path: Path) -> None:
    """The daemon's resting buy of 0.001 @ 20,000 fills on a trade at 19,990: the fill its user stream tells takes the
    order off the day's count (its answer told 1), as Binance does; the daemon gave its stream no trading API and the
    count stayed 1."""
    seen: dict[str, float] = {}

    def step(node: LiveNode) -> bool:
        orders = node.kernel.orders.orders()
        if orders and orders[0].status is OrderStatus.FILLED and "day" not in seen:
            seen["day"] = node.venue.api.order_budgets[1].used
        return "day" in seen if "filling" in seen else bool(orders) and orders[0].status is OrderStatus.ACCEPTED

    async def fill(node: LiveNode) -> None:
        assert node.venue.api.order_budgets[1].used == 1
        seen["filling"] = 1.0
        emulator.on_trade(Trade(BINANCE.iid, 0, 0, 19_990.0, 1.0, -1, "t1"))

    async with BINANCE.make_emulator(KEY, SECRET, BINANCE.instruments(), {"USDT": 100_000.0}) as emulator:
        await _session(BINANCE, emulator, tmp_path, BINANCE.frames, step, (0.001, 20_000.0), fill, reconcile_interval=None,
                       check_interval=None)
    assert seen["day"] == 0.0 and emulator.order_counts[86_400][1] == 0


@pytest.mark.parametrize(("market", "limit"), [("spot", 100), ("usdm", 300)])
async def test_an_order_limit_used_up_by_another_process_holds_orders_until_its_window_ends(market: str, limit: int) -> None:
    """Another process on the account used the 10 s order window up; this process's budget, told nothing yet, sends an
    order: 429 ``-1015`` "... per 10 SECOND." (USD-M "... per TEN_SECONDS."), without ``Retry-After``. That paused the
    weight budget 1 s only: the next order went out in the same window and met ``-1015`` again (repeated: an IP
    ban). The refusal now marks the window it names used up: the next order waits for the next window and is placed."""
    clock = Clock()
    async with _account(market, clock) as (emulator, api):
        iid = next(iter(api.instruments))
        emulator.order_counts[10] = (int(START // 10), limit)
        with pytest.raises(RateLimited, match="-1015"):
            await api.place(_buy(0, iid))
        await api.place(_buy(1, iid))
        assert emulator.order_refusals == 1 and clock.now >= 1_800_000_010.0


@pytest.mark.parametrize(("market", "limit"), [("spot", 100), ("usdm", 300)])
async def test_an_order_limit_met_holds_no_cancel_or_query(market: str, limit: int) -> None:
    """A ``-1015`` (the 10 s order window used up by another process) is HTTP 429, which paused the weight budget, cancels
    and queries too: the cancel of a resting buy right after waited the 1 s backoff. Cancels place no order and the IP's
    limit was not met: the cancel and a query go at once; the next order still waits for the window's end."""
    clock = Clock()
    async with _account(market, clock) as (emulator, api):
        iid = next(iter(api.instruments))
        resting = _buy(0, iid)
        await api.place(resting)
        emulator.order_counts[10] = (int(START // 10), limit)
        with pytest.raises(RateLimited, match="-1015"):
            await api.place(_buy(1, iid))
        await api.cancel(resting)
        report = await api.query(resting)
        assert clock.now == START and report is not None and report.status is OrderStatus.CANCELED
        await api.place(_buy(2, iid))
        assert clock.now >= 1_800_000_010.0 and emulator.order_refusals == 1


#: The ``rateLimits`` of a real Binance spot ``exchangeInfo`` (2021-10-12; tests/fixtures/binance SOURCES): orders 50 per
#: 10 s and 160,000 per day, request weight 1200 per minute, before Binance raised them.
RATE_LIMITS_2021 = json.loads(gzip.decompress((FIXTURES / "binance" / "exchangeInfo_spot_2021-10-12.json.gz").read_bytes()))["rateLimits"]


async def test_the_spot_limits_are_read_from_exchange_info_at_start() -> None:
    """An account whose ``exchangeInfo`` lists other limits than this client's defaults (Binance's of 2021: 50 orders per
    10 s, 160,000 per day, weight 1200 per minute). The limits were hard-coded: a burst of 60 orders went out at 80 per
    10 s and the 51st met 429 ``-1015`` (repeated: an IP ban). The start-up's ``exchangeInfo`` (the symbols' check) now
    sets them: the burst waits for the next 10 s, none refused, no window over 50."""
    clock = Clock()
    async with _account("spot", clock) as (emulator, api):
        orders = [row for row in RATE_LIMITS_2021 if row["rateLimitType"] == "ORDERS"]
        windows = {"SECOND": 1, "DAY": 86_400}
        headers = {10: "X-MBX-ORDER-COUNT-10S", 86_400: "X-MBX-ORDER-COUNT-1D"}
        emulator.order_limits = tuple(
            (seconds, f"{row['intervalNum']} {row['interval']}", row["limit"], headers[seconds])
            for row in orders for seconds in [windows[row["interval"]] * row["intervalNum"]]
        )
        emulator.request_weight_limit = 1200
        assert await api.listed_symbols() == {INST.symbol}
        ten_s, day = api.order_budgets
        assert (ten_s.limit, day.limit, api.budget.limit) == (50, 160_000, 1200)
        for n in range(60):
            await api.place(_buy(n))
        assert emulator.order_refusals == 0 and len(emulator.orders) == 60
        assert ten_s.peak <= 50 and clock.now >= 1_800_000_010.0


async def test_an_exchange_info_without_rate_limits_keeps_the_defaults_and_says_so() -> None:
    """No ``rateLimits`` in the answer: the documented limits stand, and a WARNING names them."""
    api = BinanceTrading("http://127.0.0.1:9", SecretStr(KEY), SecretStr(SECRET), {INST.instrument_id: INST})
    warnings: list[Any] = []
    sink = logger.add(warnings.append, level="WARNING", format="{message}")
    try:
        api.take_rate_limits(None, "GET /api/v3/exchangeInfo")
    finally:
        logger.remove(sink)
        await api.close()
    assert [b.limit for b in (*api.order_budgets, api.budget)] == [100, 200_000, 6000]
    [warning] = warnings
    assert "orders per 10 s: 100; orders per UTC day: 200000; request budget: 6000" in warning


#: An account's own USD-M order limits below the defaults (300 per 10 s, 1200 per minute), as
#: ``GET /fapi/v1/rateLimit/order`` lists an account's ("Query User Rate Limit": no count).
LOW_USDM_LIMITS = ((10, "TEN_SECONDS", 100, "X-MBX-ORDER-COUNT-10S"), (60, "MINUTE", 400, "X-MBX-ORDER-COUNT-1M"))


async def test_the_usdm_limits_are_the_accounts_own_read_at_start() -> None:
    """A USD-M account whose own order limits are 100 per 10 s and 400 per minute. The limits were hard-coded (300,
    1200): a burst of 120 orders went out in one 10 s window and the 101st met 429 ``-1015`` (repeated: an IP ban). The
    start-up read (:meth:`listed_symbols`: USD-M checks no symbol there) now reads ``GET /fapi/v1/rateLimit/order`` and
    counts against the account's limits: the burst waits for the next 10 s, none refused, no window over 100."""
    clock = Clock()
    async with _account("usdm", clock) as (emulator, api):
        emulator.order_limits = LOW_USDM_LIMITS
        assert await api.listed_symbols() is None
        ten_s, minute = api.order_budgets
        assert (ten_s.limit, minute.limit, api.budget.limit) == (100, 400, FUTURES_WEIGHT_LIMIT)
        assert sum(path == "/fapi/v1/rateLimit/order" for _, path, _ in emulator.requests) == 1
        for n in range(120):
            await api.place(_buy(n, USDM_INST.instrument_id))
        assert emulator.order_refusals == 0 and len(emulator.orders) == 120
        assert ten_s.peak <= 100 and clock.now >= 1_800_000_010.0


@pytest.mark.parametrize("fault", ["refuse", "error5xx"])
async def test_a_failed_read_of_the_usdm_limits_keeps_the_defaults_with_one_warning_naming_them(fault: str) -> None:
    """``GET /fapi/v1/rateLimit/order`` refused (a code the client does not know) or answered by the gateway's 5xx: the
    daemon starts on the documented limits (300 per 10 s, 1200 per minute), and one WARNING names them."""
    clock = Clock()
    warnings: list[Any] = []
    sink = logger.add(warnings.append, level="WARNING", format="{message}")
    try:
        async with _account("usdm", clock) as (emulator, api):
            emulator.rest_faults.append(RestFault(fault, method="GET", path="/fapi/v1/rateLimit/order", code="-1002"))
            emulator.order_limits = LOW_USDM_LIMITS
            assert await api.listed_symbols() is None
            assert [b.limit for b in api.order_budgets] == [300, 1200]
    finally:
        logger.remove(sink)
    [warning] = [w for w in warnings if "rate budget" in w]
    assert "GET /fapi/v1/rateLimit/order" in warning and "orders per 10 s: 300; orders per minute: 1200" in warning


@pytest.mark.parametrize("listed", [(), LOW_USDM_LIMITS[1:]], ids=["none", "the-minute-only"])
async def test_a_usdm_limits_answer_that_lists_a_window_not_says_its_default_stands(listed: tuple[Any, ...]) -> None:
    """``GET /fapi/v1/rateLimit/order`` answered, but listing no order limit (``[]``) or none of the 10 s window (the
    minute's, 400, taken): the 10 s window's default (300) stands, which the README says is logged. It stood silently
    (the answer read, no WARNING), as if it were the account's own; now one WARNING names the window and the limits."""
    clock = Clock()
    warnings: list[Any] = []
    sink = logger.add(warnings.append, level="WARNING", format="{message}")
    try:
        async with _account("usdm", clock) as (emulator, api):
            emulator.order_limits = listed
            assert await api.listed_symbols() is None
            assert [b.limit for b in api.order_budgets] == [300, 400 if listed else 1200]
    finally:
        logger.remove(sink)
    unlisted = [w for w in warnings if "rate budget" in w and "lists no" in w]
    assert len(unlisted) == 1, warnings
    assert "GET /fapi/v1/rateLimit/order lists no limit of orders per 10 s" in unlisted[0]
    assert f"orders per 10 s: 300; orders per minute: {400 if listed else 1200}" in unlisted[0]


@pytest.mark.parametrize(
    ("message", "seconds"),
    [
        ("Too many new orders; current limit is 100 orders per 10 SECOND.", 10.0),
        ("Too many new orders; current limit is 50 orders per 10 SECOND.", 10.0),
        ("Too many new orders; current limit is 300 orders per TEN_SECONDS.", 10.0),
        ("Too many new orders; current limit is 1200 orders per MINUTE.", 60.0),
        ("Too many new orders; current limit is 200000 orders per 1 DAY.", 86_400.0),
        ("Too many new orders; current limit is 200000 orders per DAY.", 86_400.0),
        ("Too many new orders.", None),
        ("Too many new orders; current limit is 5 orders per FORTNIGHT.", None),
    ],
)
def test_the_window_of_a_1015_message(message: str, seconds: float | None) -> None:
    """Binance's ``-1015`` texts (errors.md: "Too many new orders; current limit is %s orders per %s."; spot's as users
    report them, "50 orders per 10 SECOND.", USD-M's "300 orders per TEN_SECONDS.") name the window met."""
    assert order_limit_window(f"binance {{'code': -1015, 'msg': '{message}'}}") == seconds


async def test_an_unnamed_window_marks_the_shortest_used_up() -> None:
    """A ``-1015`` naming no window ("Too many new orders.") marks the 10 s window used up, not the day (a wait of hours)."""
    api = BinanceTrading("http://127.0.0.1:9", SecretStr(KEY), SecretStr(SECRET), {INST.instrument_id: INST})
    api._order_limit_met("Too many new orders.")
    ten, day = api.order_budgets
    await api.close()
    assert ten.used == 100 and day.used == 0

