"""A live bracket at a restart of its daemon: re-armed once the start-up reconciliation lets orders pass, and not
re-armed for a position a flatten closed meanwhile.

Against the local Bybit linear account emulator and its recorded BTCUSDT trades (all on 127.0.0.1). The
public frames pass one at a time, each once the daemon reached the state the test waits for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from loguru import logger
from pydantic import SecretStr

from tests.live.live_harness import KEY, SECRET, until
from tests.live.node_testdata import BYBIT_IID, BYBIT_INSTRUMENT
from tests.live.test_live_bybit_linear import INST, SYMBOL, TRADE_FRAMES
from tests.live.test_live_okx_swap import OKX_SWAP
from tests.live.venue_kits import PASSPHRASE
from tradebus.adapters.bybit import private_emulator as bybit_emu
from tradebus.adapters.common.account_emulator import AccountEmulator, RestFault
from tradebus.adapters.common.local_server import LocalVenueServer, VenueProtocol
from tradebus.engine.messages import OrderSide, OrderStatus, OrderType, Trade, TradingState
from tradebus.node.live import ApiKeys, LiveNode, kill_switch, parse_live_config, resume_trading

pytestmark = pytest.mark.usefixtures("_loguru_to_current_stderr")


@dataclass(frozen=True)
class _Venue:
    """A perpetual market of one venue: its emulator, public trades and config."""

    iid: str
    symbol: str
    frames: list[tuple[int, str]]
    #: The bracket's quantity (Bybit: BTC; OKX: contracts of 0.01 BTC) and the frames' first price.
    qty: float
    first_px: float
    #: What the daemon's start-up reconciliation reads of the account before it lets orders pass, and which of those
    #: reads is its first (those before: the account's read at the connection).
    positions: str
    first_read: int
    keys: ApiKeys
    #: The environment ``tradebus live-resume`` reads the keys from.
    env: dict[str, str]
    emulator: Callable[[], AccountEmulator]
    protocol: Callable[[list[tuple[int, str]], AccountEmulator], VenueProtocol]
    config: Callable[[Path, str, AccountEmulator], dict[str, Any]]


def _bybit_config(tmp: Path, ws_url: str, emulator: AccountEmulator) -> dict[str, Any]:
    return {
        "instruments": [BYBIT_INSTRUMENT],
        "venue": {"fill_on": "trades"},
        "feeds": [{
            "venue": "bybit", "market": "linear", "ws_url": ws_url, "subscriptions": {BYBIT_IID: ["publicTrade"]},
            "backoff": {"base": 0.05, "cap": 0.2, "min_delay": 0.01},
        }],
        "warm_up": False,
        "initial_cash": 10_000.0,
        "journal": str(tmp / "journal.sqlite"),
        "live": {
            "market": "perpetual", "rest_url": emulator.rest_url, "ws_api_url": emulator.ws_url,
            "request_timeout": 2.0, "submit_timeout": 2.0, "cancel_timeout": 2.0, "retry_interval": 0.3,
            "not_found_grace": 2.0,
        },
    }  # fmt: skip


def _okx_config(tmp: Path, ws_url: str, emulator: AccountEmulator) -> dict[str, Any]:
    data = OKX_SWAP.config(tmp, ws_url, emulator, request_timeout=2.0, submit_timeout=2.0, cancel_timeout=2.0)
    data["initial_cash"] = 100_000.0
    return data


VENUES = {
    "bybit-linear": _Venue(
        BYBIT_IID, SYMBOL, TRADE_FRAMES, 0.01, 65_114.2, "/v5/position/list", 1, ApiKeys(SecretStr(KEY), SecretStr(SECRET)), {},
        lambda: bybit_emu.BybitLinearEmulator(KEY, SECRET, {BYBIT_IID: INST}, {"USDT": 10_000.0}),
        lambda frames, account: bybit_emu.MatchingProtocol(frames, account=account, instrument_ids={SYMBOL: BYBIT_IID}),
        _bybit_config,
    ),
    "okx-swap": _Venue(
        OKX_SWAP.iid, "BTC-USDT-SWAP", OKX_SWAP.frames, 2.0, 30_236.0, "/api/v5/account/positions", 1,
        ApiKeys(SecretStr(KEY), SecretStr(SECRET), SecretStr(PASSPHRASE)), OKX_SWAP.env, OKX_SWAP.emulator, OKX_SWAP.make_protocol,
        _okx_config,
    ),
}
#: The bracket's stop-loss and take-profit this far below and above its first trade.
SPAN = 2_000.0


def _config(v: _Venue, tmp: Path, ws_url: str, emulator: AccountEmulator, enter: bool) -> dict[str, Any]:
    data = v.config(tmp, ws_url, emulator)
    data["ops"] = {}  # the operator's commands (``/flatten``)
    data["strategy"] = {
        "name": "tests.live.bracket_strategy:OneBracket", "id": "OneBracket", "instruments": [v.iid],
        "params": {"quantity": v.qty, "span": SPAN, "enter": enter},
    }
    return data


Step = Callable[[LiveNode], Awaitable[None]]


async def _session(v: _Venue, tmp: Path, emulator: AccountEmulator, enter: bool, steps: list[Step]) -> LiveNode:
    """One daemon session: ``steps[i]`` is awaited before the i-th public trade frame is sent, the last one before
    the stop (the frames left are not sent)."""
    frames = v.frames[: len(steps) - 1]
    node: LiveNode | None = None
    sent = 0

    async def gate(_raw: str) -> None:
        nonlocal sent
        assert node is not None
        step, sent = steps[sent], sent + 1
        await step(node)

    async with LocalVenueServer(v.protocol(frames, emulator), frames, gate=gate) as srv:
        config = parse_live_config(_config(v, tmp, srv.ws_url, emulator, enter), "<test>")
        node = LiveNode(config, v.keys, handle_signals=False)
        task = asyncio.create_task(node.run())
        try:
            await until(lambda: sent == len(frames), timeout=60)
            await steps[-1](node)
        finally:
            node.stop("test done")
            await asyncio.wait_for(task, 30)
    return node


async def _go(node: LiveNode) -> None:
    """Nothing to wait for."""


def _exits(emulator: AccountEmulator) -> list[Any]:
    """The bracket's stop-loss and take-profit orders the venue got (the sells after the entry)."""
    return [r for r in emulator.orders.values() if r.order.side is OrderSide.SELL and r.order.order_type is not OrderType.MARKET]


def _new_exits(emulator: AccountEmulator, before: set[str]) -> list[Any]:
    """The bracket's exits the venue got that are not in ``before``."""
    return [r for r in _exits(emulator) if r.order.client_order_id not in before]


def _exits_at_venue(emulator: AccountEmulator, before: set[str]) -> Step:
    """A step: wait for two new exits working at the venue."""

    async def step(node: LiveNode) -> None:
        await until(lambda: len(new := _new_exits(emulator, before)) == 2
                    and all(r.status is OrderStatus.ACCEPTED for r in new), timeout=30)  # fmt: skip

    return step


def _assert_placed_once(v: _Venue, emulator: AccountEmulator, before: set[str]) -> None:
    """The restarted daemon placed exactly one reduce-only stop-loss and take-profit of the bracket's quantity."""
    placed = _new_exits(emulator, before)
    assert [c for c in emulator.orders if c not in before and c not in {r.order.client_order_id for r in placed}] == []
    assert sorted((r.order.order_type, r.order.quantity, r.order.reduce_only) for r in placed) == [
        (OrderType.LIMIT, v.qty, True), (OrderType.STOP_MARKET, v.qty, True),
    ]


async def _entered_and_armed(v: _Venue, tmp: Path, emulator: AccountEmulator, then: Step = _go) -> None:
    """A first session: the bracket bought at market, its stop-loss and take-profit worked at the venue, ``then``,
    and the stop canceled them (``live.cancel_on_stop``)."""

    async def entry_at_venue(node: LiveNode) -> None:
        await until(lambda: any(r.order.order_type is OrderType.MARKET for r in emulator.orders.values()), timeout=30)

    async def entry_filled(node: LiveNode) -> None:
        await until(lambda: node.kernel.portfolio.position(v.iid) == pytest.approx(v.qty), timeout=30)

    async def armed(node: LiveNode) -> None:
        await until(lambda: len(_exits(emulator)) == 2 and all(r.status is OrderStatus.ACCEPTED for r in _exits(emulator)), timeout=30)
        await then(node)

    # frame 0: the entry; frame 1 fills it at the venue; frame 2 (after its fill) arms the bracket
    await _session(v, tmp, emulator, True, [_go, entry_at_venue, entry_filled, armed])
    assert {r.status for r in _exits(emulator)} == {OrderStatus.CANCELED}  # canceled at the stop (or by ``then``)


@pytest.mark.parametrize("v", list(VENUES.values()), ids=list(VENUES))
async def test_a_bracket_rearmed_inside_the_start_up_hold_sends_its_exits_once_the_hold_ends(v: _Venue, tmp_path: Path) -> None:
    """The restarted daemon's first trade comes while its start-up reconciliation still holds the instrument: the
    bracket's re-armed stop-loss and take-profit are denied there. Before, only a warning said so and the position
    kept no exit for the rest of the run (the venue got no order after the restart); now the bracket arms again at
    the first trade after the hold, once: one stop-loss and one take-profit at the venue, reduce-only."""
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="INFO")
    release = asyncio.Event()
    try:
        async with v.emulator() as emulator:
            await _entered_and_armed(v, tmp_path, emulator)
            assert emulator.position(v.symbol) == pytest.approx(v.qty)
            before = set(emulator.orders)
            # the restart's reconciliation reads of the positions are answered once the test lets them
            emulator.rest_faults = [RestFault("hold", "GET", v.positions, at=n, release=release)
                                    for n in range(v.first_read, v.first_read + 4)]

            async def denied_in_the_hold(node: LiveNode) -> None:
                def denied() -> list[str]:
                    return [o.client_order_id for o in node.kernel.orders.orders()
                            if o.status is OrderStatus.DENIED and o.reason.startswith("live start-up")]
                await until(lambda: len(denied()) == 2, timeout=30)
                assert v.iid in node.guard.holds
                release.set()
                await until(lambda: v.iid not in node.guard.holds, timeout=30)

            # frame 0 (inside the hold) re-arms the bracket, denied; frame 1 (after it) arms it again
            steps = [_go, denied_in_the_hold, _go, _exits_at_venue(emulator, before)]
            node = await _session(v, tmp_path, emulator, False, steps)
            _assert_placed_once(v, emulator, before)
            placed = _new_exits(emulator, before)
    finally:
        logger.remove(sink)
    assert sorted(r.order.price if r.order.order_type is OrderType.LIMIT else r.order.trigger_price for r in placed) == [
        pytest.approx(v.first_px - SPAN), pytest.approx(v.first_px + SPAN),
    ]
    assert sum("were held back (live start-up: reconciling positions with the venue)" in m for m in lines) == 1
    assert sum("pass again" in m and f"arming again for {v.qty}" in m for m in lines) == 1
    assert node.kernel.portfolio.position(v.iid) == pytest.approx(v.qty)


@pytest.mark.parametrize("v", list(VENUES.values()), ids=list(VENUES))
async def test_a_bracket_held_back_by_the_start_up_hold_waits_for_a_halt_that_follows_it(v: _Venue, tmp_path: Path) -> None:
    """As above, but trading is HALTED as the start-up hold ends. The trade after the hold (frame 1) comes while
    HALTED: it creates, denies and journals no exit (the risk gate is asked first, as for exits denied at a fill);
    trading ACTIVE again, the next trade (frame 2) arms the bracket once: one stop-loss and one take-profit at the
    venue. Before, frame 1 armed it into the halt: two more exits denied (``trading_state``), and the bracket,
    its hold over, kept no exit for the rest of the run (frame 2 sent nothing)."""
    release = asyncio.Event()
    async with v.emulator() as emulator:
        await _entered_and_armed(v, tmp_path, emulator)
        before = set(emulator.orders)
        emulator.rest_faults = [RestFault("hold", "GET", v.positions, at=n, release=release)
                                for n in range(v.first_read, v.first_read + 4)]
        trades: list[Trade] = []

        def denied(node: LiveNode) -> list[str]:
            return [o.reason for o in node.kernel.orders.orders() if o.status is OrderStatus.DENIED]

        async def halted_as_the_hold_ends(node: LiveNode) -> None:
            await until(lambda: len(denied(node)) == 2, timeout=30)
            node.kernel.bus.subscribe(Trade, trades.append, v.iid)  # after ContingentOrders: it handled each first
            node.kernel.risk.set_state(TradingState.HALTED, "test: halted as the hold ends")
            release.set()
            await until(lambda: v.iid not in node.guard.holds, timeout=30)

        async def active_again(node: LiveNode) -> None:
            await until(lambda: len(trades) > 0, timeout=30)  # frame 1 handled, HALTED
            assert [r.split(":")[0] for r in denied(node)] == ["live start-up"] * 2
            assert [c for c in emulator.orders if c not in before] == []
            node.kernel.risk.set_state(TradingState.ACTIVE, "test: active again")

        steps = [_go, halted_as_the_hold_ends, active_again, _exits_at_venue(emulator, before)]
        node = await _session(v, tmp_path, emulator, False, steps)
        _assert_placed_once(v, emulator, before)
    assert len(denied(node)) == 2


@pytest.mark.parametrize("v", list(VENUES.values()), ids=list(VENUES))
async def test_a_restart_after_live_kill_flatten_sends_no_exit_for_the_closed_position(
    v: _Venue, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``live-kill --flatten`` sold the bracket's position (its exits canceled by the stop); the operator resumed
    trading and restarted the daemon. Before, the bracket armed again for the whole entry on the flat position (a
    reduce-only stop-loss and take-profit sent; without reduce-only they open a short); now no exit is sent, and a
    log line says why."""
    for name, value in v.env.items():
        monkeypatch.setenv(name, value)
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="INFO")
    try:
        async with v.emulator() as emulator:
            await _entered_and_armed(v, tmp_path, emulator)
            assert emulator.position(v.symbol) == pytest.approx(v.qty)
            config = parse_live_config(_config(v, tmp_path, "ws://127.0.0.1:9", emulator, False), "<test>")

            async def market_moves() -> None:  # the flattening market order fills at the next trade
                await until(lambda: any(r.order.side is OrderSide.SELL and r.order.order_type is OrderType.MARKET
                                        for r in emulator.orders.values()), timeout=10)
                at = emulator.clock.now_ns() + 10**6
                emulator.on_trade(Trade(v.iid, at, at, v.first_px, 1_000.0, -1, "x-flatten"))

            mover = asyncio.create_task(market_moves())
            await kill_switch(config, v.keys, "trial end", flatten=True)
            await mover
            assert emulator.position(v.symbol) == pytest.approx(0.0, abs=1e-12)
            await asyncio.to_thread(resume_trading, config)  # `tradebus live-resume` (it reads the account at the venue)
            before = set(emulator.orders)

            async def reconciled(node: LiveNode) -> None:
                await until(lambda: node.running.is_set() and not node.guard.holds, timeout=30)

            # frames 0 to 2, all after the start-up reconciliation: none arms the bracket
            node = await _session(v, tmp_path, emulator, False, [reconciled, _go, _go, _go])
            sent = [c for c in emulator.orders if c not in before]
    finally:
        logger.remove(sink)
    _assert_no_exit_for_the_flat_position(v, node, sent, lines)


@pytest.mark.parametrize("v", list(VENUES.values()), ids=list(VENUES))
async def test_a_restart_after_the_operators_flatten_sends_no_exit_for_the_closed_position(v: _Venue, tmp_path: Path) -> None:
    """The operator's ``/flatten`` canceled the bracket's exits and sold its position while the daemon ran; the
    daemon was restarted and the operator resumed trading. Before, the bracket armed again for the whole entry on
    the flat position; now no exit is sent, and a log line says why."""
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="INFO")
    try:
        async with v.emulator() as emulator:

            async def flatten(node: LiveNode) -> None:
                assert node.ops is not None
                await node.ops.flatten("operator /flatten (test)")
                (closing,) = [o.client_order_id for o in node.kernel.orders.orders() if o.strategy_id == "ops"]
                await until(lambda: closing in emulator.orders, timeout=30)
                at = emulator.clock.now_ns() + 10**6  # the closing market order fills at the next trade
                emulator.on_trade(Trade(v.iid, at, at, v.first_px, 1_000.0, -1, "x-flatten"))
                await until(lambda: node.kernel.portfolio.position(v.iid) == pytest.approx(0.0, abs=1e-12), timeout=30)

            await _entered_and_armed(v, tmp_path, emulator, flatten)
            assert emulator.position(v.symbol) == pytest.approx(0.0, abs=1e-12)
            before = set(emulator.orders)

            async def resumed(node: LiveNode) -> None:
                await until(lambda: node.running.is_set() and not node.guard.holds, timeout=30)
                node.kernel.risk.set_state(TradingState.ACTIVE, "operator /resume (test)")

            # frames 0 to 2, after the start-up reconciliation and the operator's /resume: none arms the bracket
            node = await _session(v, tmp_path, emulator, False, [resumed, _go, _go, _go])
            sent = [c for c in emulator.orders if c not in before]
    finally:
        logger.remove(sink)
    _assert_no_exit_for_the_flat_position(v, node, sent, lines)


def _assert_no_exit_for_the_flat_position(v: _Venue, node: LiveNode, sent: list[str], lines: list[str]) -> None:
    """The restarted daemon sent nothing for the flattened bracket, holds nothing, and said why once."""
    assert sent == []
    assert node.kernel.portfolio.position(v.iid) == pytest.approx(0.0, abs=1e-12)
    assert not any("arming again" in m for m in lines)
    assert sum(f"its entry left {v.qty} {v.iid}, and its strategy OneBracket holds 0.0 of it now" in m
               and "no exit sent" in m for m in lines) == 1
