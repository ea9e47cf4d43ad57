"""Live trading of a Binance USD-M perpetual: the daemon against the local futures account emulator.

The public stream is the recorded USD-M BTCUSDT capture (its trades also match the account's
orders); the strategy trades long and short, so the account holds signed positions. Checked
against the emulator's own account (its fill list and the matching venue's position), not
against the daemon's view of itself.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import math
from pathlib import Path
from typing import Any

import pytest
from loguru import logger
from pydantic import SecretStr

from tests.live.live_harness import KEY, SECRET, WAIT, answered, reconciled, session_trades, trade_after_market_orders, until
from tests.live.node_testdata import USDM_CAPTURE, USDM_IID, USDM_INSTRUMENT
from tradebus.account import MarginAccount
from tradebus.adapters.binance.emulator import split_capture
from tradebus.adapters.binance.parse import parse_trade
from tradebus.adapters.binance.private_emulator import BinanceFuturesEmulator
from tradebus.adapters.binance.trading import BinanceFuturesTrading, futures_order_params
from tradebus.adapters.binance.user_stream import FuturesStreamParser
from tradebus.adapters.binance.private_emulator import MatchingProtocol
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.adapters.common.recorder import is_private, iter_hftbacktest, read_frames
from tradebus.engine.instrument import Instrument, InstrumentKind
from tradebus.engine.messages import OrderFilled, OrderSide, OrderStatus, OrderType, SubmitOrder, Trade
from tradebus.errors import ConfigError
from tradebus.execution.live import AccountBalance, AccountPosition, VenueRejected
from tradebus.execution.orders import Order
from tradebus.node.live import ApiKeys, LiveNode, parse_live_config

FRAMES, SNAPSHOT = split_capture(list(iter_hftbacktest(USDM_CAPTURE)))
TRADE_FRAMES = [(t, raw) for t, raw in FRAMES if "@trade" in raw]
INST = Instrument(**{**USDM_INSTRUMENT, "kind": InstrumentKind.PERPETUAL})
SYMBOL = "BTCUSDT"


def _config(tmp: Path, ws_url: str, emulator: BinanceFuturesEmulator, journal: Path) -> dict[str, Any]:
    return {
        "instruments": [USDM_INSTRUMENT],
        "strategy": {
            "name": "tradebus.strategies.tick_ema:TickEmaCross",
            "instruments": [USDM_IID],
            "params": {"fast": 2, "slow": 8, "quantity": 0.01, "mode": "long_short"},
        },
        "venue": {"fill_on": "trades"},
        "feeds": [
            {
                "venue": "binance",
                "market": "usdm",
                "ws_url": ws_url,
                "subscriptions": {USDM_IID: ["trade"]},
                "backoff": {"base": 0.05, "cap": 0.2, "min_delay": 0.01},
            }
        ],
        "warm_up": False,
        "initial_cash": 10_000.0,
        "journal": str(journal),
        "record": str(tmp / "frames.jsonl.gz"),
        "live": {
            "market": "perpetual",
            "rest_url": emulator.rest_url,
            "ws_api_url": emulator.ws_url,
            "request_timeout": 1.0,
            "submit_timeout": 1.0,
            "cancel_timeout": 1.0,
            "retry_interval": 0.3,
            "not_found_grace": 2.0,
            "reconcile_interval": 0.5,
        },
    }


def _emulator() -> BinanceFuturesEmulator:
    return BinanceFuturesEmulator(KEY, SECRET, {USDM_IID: INST}, {"USDT": 10_000.0})


async def _run(
    tmp: Path, emulator: BinanceFuturesEmulator, frames: list[tuple[int, str]], journal: Path, act: Any = None,
    edit: Any = None,
) -> LiveNode:
    """One daemon session over ``frames``; ``act(node)`` runs once they are all sent, before the stop.

    ``edit(config)`` changes the config dict before it is parsed.
    """
    protocol = MatchingProtocol(SNAPSHOT, futures=True, account=emulator, instrument_ids={"btcusdt": USDM_IID})  # type: ignore[arg-type]
    async with LocalVenueServer(protocol, frames, speed=16.0) as srv:
        raw = _config(tmp, srv.ws_url, emulator, journal)
        if edit is not None:
            edit(raw)
        config = parse_live_config(raw, "<test>")
        node = LiveNode(config, ApiKeys(SecretStr(KEY), SecretStr(SECRET)), handle_signals=False)
        seen = session_trades(node.kernel)
        task = asyncio.create_task(node.run())
        try:
            await until(lambda: node.running.is_set() and seen() == len(frames), timeout=60)
            last = parse_trade(frames[-1][1], 0, USDM_IID)
            assert last is not None
            await trade_after_market_orders(node.kernel, emulator, last)
            await answered(node.kernel)
            if act is not None:
                await act(node)
        finally:
            node.stop("test done")
            await asyncio.wait_for(task, 20)
    return node


@pytest.mark.slow
async def test_usdm_session_books_positions_once_honours_reduce_only_and_restarts_reconciled(tmp_path: Path) -> None:
    log = tmp_path / "daemon.log"
    sink = logger.add(log, level="DEBUG")
    journal = tmp_path / "journal.sqlite"
    seen: dict[str, Any] = {}

    async def act(node: LiveNode) -> None:
        kernel = node.kernel
        pos = kernel.portfolio.position(USDM_IID)
        assert pos != 0.0, "the strategy holds a position"
        now = node.clock.now_ns()
        grow = OrderSide.BUY if pos > 0 else OrderSide.SELL
        shrink = OrderSide.SELL if pos > 0 else OrderSide.BUY
        far = 1_000.0 if grow is OrderSide.BUY else 1_000_000.0  # never fills
        wrong = kernel.execution.submit(SubmitOrder("TickEmaCross", USDM_IID, "", grow, 0.001, now, now, OrderType.LIMIT, far, reduce_only=True))
        resting_px = 1_000_000.0 if shrink is OrderSide.SELL else 1_000.0
        right = kernel.execution.submit(SubmitOrder("TickEmaCross", USDM_IID, "", shrink, 0.001, now, now, OrderType.LIMIT, resting_px, reduce_only=True))
        await until(lambda: wrong.status is OrderStatus.REJECTED and right.status is OrderStatus.ACCEPTED)
        seen.update(wrong=wrong, right=right, pos=pos)

    try:
        async with _emulator() as emulator:
            node = await _run(tmp_path, emulator, TRADE_FRAMES, journal, act)
            kernel = node.kernel
            assert isinstance(kernel.portfolio.account, MarginAccount)
            # every fill of the account booked once, and only those; the position is the venue's
            assert emulator.fills and len(emulator.fills) > 2
            assert sorted(f.trade_id for f in kernel.result.fills) == sorted(str(f.trade_id) for f in emulator.fills)
            assert kernel.portfolio.position(USDM_IID) == pytest.approx(emulator.position(SYMBOL), abs=1e-12)
            assert any(f.fill.side is OrderSide.SELL for f in emulator.fills) and min(_path(emulator)) < 0  # went short
            # reduce-only honoured: refused by the venue when it would increase the position
            assert "-2022" in seen["wrong"].reason
            assert emulator.orders[seen["right"].client_order_id].order.reduce_only
            # each order placed once; the stop canceled the resting one
            posts = [c for m, p, c in emulator.requests if m == "POST" and p == "/fapi/v1/order"]
            assert len(posts) == len(set(posts)) == len(emulator.orders)
            assert emulator.orders[seen["right"].client_order_id].status is OrderStatus.CANCELED
            assert not emulator.open_orders()
            assert not node.guard.holds and node.reconciler.rounds >= 1
            assert node.positions[USDM_IID].quantity == pytest.approx(emulator.position(SYMBOL), abs=1e-12)
            fills_before = len(kernel.result.fills)

            # restart on the same journal, nothing traded meanwhile: reconciled, not held, nothing re-sent
            posts_before = len(posts)
            again = await _run(tmp_path, emulator, TRADE_FRAMES[:1], journal)
            assert again.kernel.portfolio.position(USDM_IID) == pytest.approx(emulator.position(SYMBOL), abs=1e-12)
            assert not again.guard.holds
            assert len(again.kernel.result.fills) == fills_before  # replayed, not doubled
            assert [c for m, p, c in emulator.requests if m == "POST" and p == "/fapi/v1/order"][:posts_before] == posts

            # a trade placed by hand while the daemon is down: the restart finds the position differs and holds it
            manual = BinanceFuturesTrading(emulator.rest_url, SecretStr(KEY), SecretStr(SECRET), {USDM_IID: INST}, 2.0)
            await manual.place(Order("byhand1", "", USDM_IID, OrderSide.BUY, OrderType.MARKET, 0.005))
            await manual.close()
            last = emulator.clock.now_ns() + 10**6
            emulator.on_trade(Trade(USDM_IID, last, last, 28_000.0, 1.0, -1, "x1"))
            assert emulator.orders["byhand1"].status is OrderStatus.FILLED
            third = await _run(tmp_path, emulator, TRADE_FRAMES[:1], journal)
            reason = third.guard.holds.get(USDM_IID, "")
            assert "BTC position held here but" in reason
            assert float(reason.split(" but ")[1].split()[0]) == pytest.approx(emulator.position(SYMBOL), abs=1e-9)
            assert third.kernel.portfolio.position(USDM_IID) == pytest.approx(emulator.position(SYMBOL) - 0.005, abs=1e-12)
    finally:
        logger.remove(sink)
    # neither the key nor the secret in any file the runs wrote, nor in the log
    for path in [p for p in tmp_path.rglob("*") if p.is_file()]:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
        assert KEY.encode() not in raw and SECRET.encode() not in raw, path.name
        assert emulator.listen_key.encode() not in raw, path.name
    # the user stream's frames are in the recording, tagged private (the listen key, in its URL, is not)
    private = [c for _, c, _ in read_frames(tmp_path / "frames.jsonl.gz", private=True) if is_private(c)]
    assert len(private) > len(emulator.fills) and {c.split(":")[1] for c in private} == {"binance-usdm-user"}


def _path(emulator: BinanceFuturesEmulator) -> list[float]:
    """The account's position after each fill."""
    pos, out = 0.0, []
    for f in emulator.fills:
        pos += f.fill.last_qty if f.fill.side is OrderSide.BUY else -f.fill.last_qty
        out.append(pos)
    return out


def test_order_params_map_reduce_only_post_only_and_one_way_mode() -> None:
    order = Order("c1", "s", USDM_IID, OrderSide.SELL, OrderType.LIMIT, 0.0123, 28_000.04, post_only=True, reduce_only=True)
    assert futures_order_params(order, INST) == {
        "symbol": "BTCUSDT", "side": "SELL", "positionSide": "BOTH", "type": "LIMIT", "quantity": "0.012",
        "newClientOrderId": "c1", "newOrderRespType": "RESULT", "reduceOnly": "true", "price": "28000.0", "timeInForce": "GTX",
    }
    market = Order("c2", "s", USDM_IID, OrderSide.BUY, OrderType.MARKET, 0.001)
    assert "reduceOnly" not in futures_order_params(market, INST) and futures_order_params(market, INST)["type"] == "MARKET"
    with pytest.raises(VenueRejected, match="algo"):
        futures_order_params(Order("c3", "s", USDM_IID, OrderSide.BUY, OrderType.STOP_MARKET, 0.001, trigger_price=29_000.0), INST)
    with pytest.raises(VenueRejected, match="rounds to 0"):
        futures_order_params(Order("c4", "s", USDM_IID, OrderSide.BUY, OrderType.MARKET, 0.0004), INST)


def test_the_documented_stream_events_parse_into_fills_balances_and_positions() -> None:
    known = Order("web_a1", "s1", USDM_IID, OrderSide.SELL, OrderType.LIMIT, 0.002, 28_000.0)
    parser = FuturesStreamParser({USDM_IID: INST}, {"web_a1": known}.get, clock_ns=lambda: 7)
    # Binance USD-M documentation's ORDER_TRADE_UPDATE example fields, a partial fill of 0.001 @ 28000.5
    trade = (
        '{"e":"ORDER_TRADE_UPDATE","E":1568879465651,"T":1568879465650,"o":{"s":"BTCUSDT","c":"web_a1","S":"SELL",'
        '"o":"LIMIT","f":"GTC","q":"0.002","p":"28000","ap":"28000.5","sp":"0","x":"TRADE","X":"PARTIALLY_FILLED",'
        '"i":8886774,"l":"0.001","z":"0.001","L":"28000.5","N":"USDT","n":"0.0112","T":1568879465650,"t":7755,'
        '"b":"0","a":"9.91","m":true,"R":false,"wt":"CONTRACT_PRICE","ot":"LIMIT","ps":"BOTH","cp":false,"rp":"0"}}'
    )
    (fill,) = parser.parse(trade)
    assert isinstance(fill, OrderFilled)
    assert (fill.trade_id, fill.side, fill.last_qty, fill.last_px, fill.fee, fill.ts_event) == (
        "7755", OrderSide.SELL, 0.001, 28000.5, 0.0112, 1568879465650 * 1_000_000,
    )
    account = (
        '{"e":"ACCOUNT_UPDATE","E":1564745798939,"T":1564745798938,"a":{"m":"ORDER",'
        '"B":[{"a":"USDT","wb":"122624.12345678","cw":"100.12345678","bc":"50.12345678"}],'
        '"P":[{"s":"BTCUSDT","pa":"-0.001","ep":"28000.5","bep":"0","cr":"200","up":"0","mt":"cross","iw":"0","ps":"BOTH"},'
        '{"s":"ETHUSDT","pa":"1","ep":"1800","bep":"0","cr":"0","up":"0","mt":"cross","iw":"0","ps":"BOTH"}]}}'
    )
    assert parser.parse(account) == [
        AccountBalance("USDT", 122624.12345678, 0.0, 1564745798938 * 1_000_000),
        AccountPosition(USDM_IID, -0.001, 28000.5, 1564745798938 * 1_000_000),
    ]


async def test_a_position_difference_holds_the_perpetual_only_when_it_persists() -> None:
    async with _emulator() as emulator:
        api = BinanceFuturesTrading(emulator.rest_url, SecretStr(KEY), SecretStr(SECRET), {USDM_IID: INST}, 2.0)
        venue, reconciler, holds = reconciled(api, INST)
        try:
            await reconciler.round()
            assert holds == {}

            async def trade_by_hand(coid: str, side: OrderSide) -> None:
                await api.place(Order(coid, "", USDM_IID, side, OrderType.MARKET, 0.004))
                last = emulator.clock.now_ns() + 10**6
                emulator.on_trade(Trade(USDM_IID, last, last, 28_000.0, 1.0, 1 if side is OrderSide.SELL else -1, coid))

            await trade_by_hand("byhand1", OrderSide.SELL)  # outside this journal: the venue is short 0.004
            assert emulator.position(SYMBOL) == pytest.approx(-0.004)
            await reconciler.round()
            assert holds == {}  # once could be a fill in flight
            await reconciler.round()
            assert "0.0 BTC position held here but -0.004 at the venue" in holds[USDM_IID]
            await trade_by_hand("byhand2", OrderSide.BUY)
            await reconciler.round()
            assert holds == {} and reconciler.rounds == 4
        finally:
            await venue.aclose()


async def test_a_refused_listen_key_stops_the_stream_with_the_reason_and_no_key() -> None:
    from tradebus.adapters.binance.user_stream import BinanceFuturesUserStream
    from tradebus.errors import VenueError

    async with _emulator() as emulator:
        wrong = "tbWrongKey55555555555555"
        stream = BinanceFuturesUserStream(
            emulator.rest_url, emulator.ws_url, SecretStr(wrong), FuturesStreamParser({USDM_IID: INST}, lambda c: None), lambda e: None
        )
        with pytest.raises(VenueError, match="-2015") as err:
            await asyncio.wait_for(stream.run(), 10)
        assert wrong not in str(err.value) and emulator.sessions == []


async def test_a_stop_while_the_user_stream_asks_for_its_listen_key_ends_it_once_answered_without_connecting() -> None:
    """The USD-M user stream stopped (the daemon's stop) while its listen-key request waits for its answer: once it
    came the stream connected all the same and, the idle account sending nothing, waited for a frame for good, and the
    daemon's stop ("closing the user stream") with it. It now ends as the answer comes, opening no connection."""
    from tradebus.adapters.binance.private_emulator import RestFault
    from tradebus.adapters.binance.user_stream import BinanceFuturesUserStream

    answer = asyncio.Event()
    held = RestFault("hold", "POST", "/fapi/v1/listenKey", release=answer)
    async with BinanceFuturesEmulator(KEY, SECRET, {USDM_IID: INST}, {"USDT": 10_000.0}, [held]) as emulator:
        stream = BinanceFuturesUserStream(
            emulator.rest_url, emulator.ws_url, SecretStr(KEY), FuturesStreamParser({USDM_IID: INST}, lambda c: None), lambda e: None
        )
        task = asyncio.create_task(stream.run())
        try:
            await until(lambda: held.fired)
            stream.stop()
            answer.set()
            await asyncio.wait_for(task, WAIT)
        finally:
            answer.set()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert stream.connections == 0 and emulator.sessions == []


async def test_the_daemons_listen_key_request_waits_live_request_timeout_not_a_fixed_10_s(tmp_path: Path) -> None:
    """``live.request_timeout: 60`` and a venue answering the listen-key request 12 s late (held by the emulator):
    the daemon's user stream gave up the listen-key request after a fixed 10 s (the config's timeout never reached
    it) and asked again (a venue answering every request that late: never connected). It now waits the config's
    60 s: the late answer is taken and the stream connects on its one request. (The 12 s is the venue's delay in
    this scenario, not a wait for the code under test; past 11 s, as aiohttp rounds a timeout over 5 s up to the next
    whole second. The timeout is WAIT, not 30 s: a loop stalled 20 s after the answer's release, as on a loaded
    machine, read it past 30 s.)"""
    from tradebus.adapters.binance.private_emulator import RestFault

    answer = asyncio.Event()
    held = RestFault("hold", "POST", "/fapi/v1/listenKey", release=answer)
    async with BinanceFuturesEmulator(KEY, SECRET, {USDM_IID: INST}, {"USDT": 10_000.0}, [held]) as emulator:
        raw = _config(tmp_path, "ws://127.0.0.1:9", emulator, tmp_path / "journal.sqlite")
        raw["live"]["request_timeout"] = WAIT
        node = LiveNode(parse_live_config(raw, "<test>"), ApiKeys(SecretStr(KEY), SecretStr(SECRET)), handle_signals=False)
        stream = node.stream
        task = asyncio.create_task(stream.run())
        try:
            await until(lambda: held.fired)
            await asyncio.sleep(12.0)
            answer.set()
            await until(lambda: task.done() or stream.subscribed.is_set(), timeout=60)
            assert not task.done() and emulator.sessions
        finally:
            answer.set()
            stream.stop()
            await asyncio.gather(task, return_exceptions=True)
            node.withdraw()
        asked = [p for m, p, _ in emulator.requests if m == "POST" and p == "/fapi/v1/listenKey"]
        assert len(asked) == 1, asked


def test_perpetual_market_is_refused_on_a_venue_without_it_and_selects_the_usdm_account_on_binance(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from tests.live.venue_kits import OKX
    from tradebus.adapters.registry import VENUES

    okx = OKX.config(Path("/nonexistent"), "ws://127.0.0.1:1", _emulator(), market="perpetual")
    okx.pop("journal"), okx.pop("record")
    monkeypatch.setitem(VENUES, "okx", dataclasses.replace(VENUES["okx"], live_perpetual=None))  # a venue without it
    with pytest.raises(ConfigError, match="live.market: 'okx' has no live perpetual trading yet; use one of \\[.*'binance'"):
        parse_live_config(okx, "<test>")
    monkeypatch.undo()
    data = _config(Path("/nonexistent"), "ws://127.0.0.1:1", _emulator(), Path("/nonexistent/j.sqlite"))
    data.pop("journal"), data.pop("record")
    live = parse_live_config(data, "<test>").live
    assert live.account().endpoints["testnet"] == ("https://testnet.binancefuture.com", "wss://stream.binancefuture.com")
    with pytest.raises(ConfigError, match=r"a spot account trades spot instruments only; \['BTCUSDT.BINANCE_USDM'\] are not"):
        parse_live_config({**data, "live": {**data["live"], "market": "spot"}}, "<test>")


def test_a_perpetual_config_without_live_market_is_told_the_default_and_the_setting_to_trade_it() -> None:
    """A newcomer's USD-M config whose ``live:`` section leaves out ``market`` (or a paper config run
    by ``tradebus live``) was told ``live.market: a spot account ...``, naming a key it never wrote
    and not what to set."""
    from tradebus.errors import ConfigError

    data = _config(Path("/nonexistent"), "ws://127.0.0.1:1", _emulator(), Path("/nonexistent/j.sqlite"))
    data.pop("journal"), data.pop("record")
    for live in ({k: v for k, v in data["live"].items() if k != "market"}, None):
        raw = {**data, "live": live} if live is not None else {k: v for k, v in data.items() if k != "live"}
        with pytest.raises(ConfigError) as info:
            parse_live_config(raw, "<test>")
        assert "live.market: a spot account trades spot instruments only; ['BTCUSDT.BINANCE_USDM'] are not: " \
            "set live.market: perpetual to trade them (spot is the default)" in str(info.value)


async def test_a_misspelt_symbol_is_refused_at_start_naming_the_symbol_to_check(tmp_path: Path) -> None:
    """A config trading ``BTCUSDX`` (a typo) on the account was refused with "the venue reports no
    leverage or margin mode for it", under "set them at the venue or in the config": a newcomer looked
    for a leverage setting, not at the symbol."""
    async with _emulator() as emulator:  # the account's market lists BTCUSDT only
        data = _config(tmp_path, "ws://127.0.0.1:9", emulator, tmp_path / "journal.sqlite")
        data = json.loads(json.dumps(data).replace("BTCUSDT", "BTCUSDX"))
        node = LiveNode(parse_live_config(data, "<test>"), ApiKeys(SecretStr(KEY), SecretStr(SECRET)), handle_signals=False)
        with pytest.raises(ConfigError) as err:
            await asyncio.wait_for(node.run(), 20)
    assert ("BTCUSDX.BINANCE_USDM: the venue reports no leverage or margin mode for symbol 'BTCUSDX': "
            "check that the account's market lists it (a misspelt or delisted symbol)") in str(err.value)
    assert [p for m, p, _ in emulator.requests if m != "GET"] == []  # nothing placed, no stream opened


@pytest.mark.parametrize(
    ("account", "refusal"),
    [
        ({"leverage": 20.0}, "BTCUSDT.BINANCE_USDM: leverage 5 in the config, 20 at the venue"),
        ({"margin_type": "isolated"}, "BTCUSDT.BINANCE_USDM: margin_mode cross in the config, isolated at the venue"),
        ({"dual_side": True}, "BTCUSDT.BINANCE_USDM: the account is in hedge mode"),
    ],
)
async def test_an_account_whose_leverage_margin_type_or_position_mode_differs_from_the_config_is_refused_at_start(
    tmp_path: Path, account: dict[str, Any], refusal: str
) -> None:
    # the config's 5x cross is what the margin account here computes buying power with
    instrument = {**USDM_INSTRUMENT, "leverage": 5, "margin_mode": "cross"}
    emulator = BinanceFuturesEmulator(KEY, SECRET, {USDM_IID: Instrument(**{**instrument, "kind": InstrumentKind.PERPETUAL})}, {"USDT": 10_000.0})
    async with emulator:
        for key, value in account.items():
            if key == "dual_side":
                emulator.dual_side = value
            else:
                getattr(emulator, key)[SYMBOL] = value
        data = _config(tmp_path, "ws://127.0.0.1:9", emulator, tmp_path / "journal.sqlite") | {"instruments": [instrument]}
        node = LiveNode(parse_live_config(data, "<test>"), ApiKeys(SecretStr(KEY), SecretStr(SECRET)), handle_signals=False)
        with pytest.raises(ConfigError, match="margin settings differ from the config") as err:  # exit 2
            await asyncio.wait_for(node.run(), 20)
        assert refusal in str(err.value)
    assert not (tmp_path / "journal.sqlite").exists()  # refused before it traded: the run leaves nothing
    assert not emulator.orders and all(m == "GET" or "listenKey" not in p for m, p, _ in emulator.requests)
    assert [p for m, p, _ in emulator.requests if m != "GET"] == []  # nothing placed, no stream opened


@pytest.mark.parametrize(("kind", "status"), [("rate_limit", "429"), ("ban", "418")])
async def test_a_429_or_418_answer_pauses_every_usdm_request_for_retry_after(kind: str, status: str) -> None:
    """The USD-M client's errors read ``binanceusdm 429 ...``: the pause must not depend on the spot client's name."""
    from tradebus.adapters.binance.private_emulator import RestFault

    fault = RestFault(kind, "GET", "/fapi/v2/balance", retry_after=2)
    async with BinanceFuturesEmulator(KEY, SECRET, {USDM_IID: INST}, {"USDT": 10_000.0}, [fault]) as emulator:
        api = BinanceFuturesTrading(emulator.rest_url, SecretStr(KEY), SecretStr(SECRET), {USDM_IID: INST}, timeout=2.0)
        try:
            with pytest.raises(Exception, match=status):
                await api.balances()
            assert fault.fired
            assert api.budget.blocked_until - api.budget._now() > 1.5 and status in api.budget.block_reason
        finally:
            await api.close()


@pytest.mark.parametrize(("placed", "counted_elsewhere"), [(320, 0), (20, 1190)], ids=["a-burst", "the-minute-used-elsewhere"])
async def test_usdm_orders_wait_for_the_accounts_order_limits_instead_of_meeting_429(placed: int, counted_elsewhere: int) -> None:
    """USD-M takes 300 new orders per 10 s and 1200 per minute of an account (its ``exchangeInfo``), told by
    ``X-MBX-ORDER-COUNT-10S``/``-1M``; a new order weighs 0 on the IP limit. The client charged a new order 1 of the
    2400 weight per minute and read no order count: 320 orders at once (or 20 once another process used 1190 of the
    minute) went out, and the 301st (the 11th) met Binance's 429 ``-1015`` "Too many new orders" (repeated: an IP ban).
    Each order now takes one of both order budgets, fed by those headers: every order is placed, none refused. The
    emulator's windows and the budgets' run on one clock a wait moves on (no wall-clock wait)."""
    from tradebus.adapters.binance.trading import FUTURES_ORDER_LIMITS
    from tradebus.adapters.common.ratelimit import WeightBudget

    now = [1_800_000_001.0]  # 1 s into a minute

    async def wait(seconds: float) -> None:
        now[0] += seconds
        await asyncio.sleep(0)

    emulator = BinanceFuturesEmulator(KEY, SECRET, {USDM_IID: INST}, {"USDT": 10_000_000.0}, order_clock=lambda: now[0])
    async with emulator:
        if counted_elsewhere:
            emulator.order_counts[60] = (int(now[0] // 60), counted_elsewhere)
        budgets = [WeightBudget(limit, window, header=header, monotonic=lambda: now[0], sleep=wait) for limit, window, header in FUTURES_ORDER_LIMITS]
        api = BinanceFuturesTrading(emulator.rest_url, SecretStr(KEY), SecretStr(SECRET), {USDM_IID: INST}, timeout=WAIT, order_budgets=budgets)
        try:
            for n in range(placed):  # every 10th a stop: a new algo order counts as a new order
                stop = n % 10 == 9
                kind, price, trigger = (OrderType.STOP_MARKET, math.nan, 900.0) if stop else (OrderType.LIMIT, 1_000.0, math.nan)
                await api.place(Order(f"burst{n}", "s", USDM_IID, OrderSide.BUY if not stop else OrderSide.SELL, kind, 0.001, price, trigger))
        finally:
            await api.close()
        assert emulator.order_refusals == 0 and len(emulator.orders) == placed
        assert budgets[0].peak <= 300 and (counted_elsewhere or now[0] >= 1_800_000_010.0)  # the burst waited for the next 10 s


async def test_usdm_orders_held_by_the_minute_limit_leave_within_the_10_s_limit_of_the_window_they_leave_in() -> None:
    """Another process used 1190 of the minute's 1200 orders (the first order's answer tells 1191); 320 orders are
    then placed at once, each taking the 10 s budget, then the minute's. Before, an order counted in the 10 s window
    it took that budget in (240 in the first, 80 in the next) and then waited for the minute: all 320 left at the
    minute's turn, in one 10 s window, and 20 met 429 -1015. Now one whose 10 s window ended while it waited takes
    that budget again: 240 leave at the minute's turn, 80 ten seconds later, none refused. The emulator's windows
    and the budgets' run on one virtual clock, moved on only once every order still on its way waits."""
    from tradebus.adapters.binance.trading import FUTURES_ORDER_LIMITS
    from tradebus.adapters.common.ratelimit import WeightBudget

    now = [1_800_000_001.0]  # 1 s into a minute
    sleepers: list[tuple[float, asyncio.Future[None]]] = []

    async def wait(seconds: float) -> None:
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        sleepers.append((now[0] + seconds, woken))
        await woken

    emulator = BinanceFuturesEmulator(KEY, SECRET, {USDM_IID: INST}, {"USDT": 10_000_000.0}, order_clock=lambda: now[0])
    async with emulator:
        emulator.order_counts[60] = (int(now[0] // 60), 1190)
        budgets = [WeightBudget(limit, window, header=header, monotonic=lambda: now[0], sleep=wait) for limit, window, header in FUTURES_ORDER_LIMITS]
        api = BinanceFuturesTrading(emulator.rest_url, SecretStr(KEY), SecretStr(SECRET), {USDM_IID: INST}, timeout=WAIT, order_budgets=budgets)
        refused: list[str] = []

        async def place(n: int) -> None:
            try:
                await api.place(Order(f"burst{n}", "s", USDM_IID, OrderSide.BUY, OrderType.LIMIT, 0.001, 1_000.0, math.nan))
            except VenueRejected as exc:
                refused.append(str(exc))

        try:
            await place(0)
            tasks = [asyncio.ensure_future(place(n)) for n in range(1, 321)]
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 300.0
            while not all(task.done() for task in tasks):
                assert loop.time() < deadline, "orders neither placed nor waiting"
                if sleepers and len(sleepers) == sum(not task.done() for task in tasks):
                    now[0] = max(now[0], min(target for target, _ in sleepers))
                    due = [woken for target, woken in sleepers if target <= now[0]]
                    sleepers[:] = [(target, woken) for target, woken in sleepers if target > now[0]]
                    for woken in due:
                        woken.set_result(None)
                await asyncio.sleep(0.01)
        finally:
            await api.close()
        assert (refused, emulator.order_refusals, len(emulator.orders)) == ([], 0, 321)
        assert now[0] >= 1_800_000_070.0  # the last 80 waited for the 10 s window after the minute's turn


@pytest.mark.parametrize("kind", ["rate_limit", "ban"])
async def test_a_submit_answered_429_or_418_is_rejected_at_once_and_never_resent(kind: str) -> None:
    from tests.live.live_harness import ANSWERED, WAIT, usdm_harness
    from tradebus.adapters.binance.private_emulator import RestFault

    fault = RestFault(kind, "POST", "/fapi/v1/order", retry_after=1)
    # the next submit waits out Retry-After in the client: its submit timeout is longer than that wait; the client
    # reads every answer however late (on a loaded machine a 429 read past its 0.25 s would be a submit unanswered)
    async with usdm_harness(rest_faults=[fault], timeouts=ANSWERED, timeout=WAIT) as h:
        order = h.submit(OrderSide.BUY, 0.01, 50_000.0)
        await until(lambda: order.status is OrderStatus.REJECTED)
        assert fault.fired
        assert "rate limit" in order.reason and "-1003" in order.reason
        assert h.venue.requests["query"] == 0
        after = h.submit(OrderSide.BUY, 0.01, 50_000.0)
        await until(lambda: after.status is OrderStatus.ACCEPTED)
        assert h.venue.api.budget.waits >= 1  # type: ignore[attr-defined]  # the next request waited out the pause
        assert h.posts(order.client_order_id) == h.posts(after.client_order_id) == 1
