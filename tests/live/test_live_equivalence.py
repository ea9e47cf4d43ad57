"""Backtest == paper == live: one strategy on one recorded stream decides and fills the same in all three modes.

(a) the Binance spot capture played back as a backtest (simulated clock, simulated venue,
latency 0); (b) the paper daemon connected to a local server serving the capture; (c) the
live daemon on the same served capture, trading through signed REST and the user stream
with the local account emulator, which matches its orders against the trades the server
sends.

Latency 0 means an order decided on trade ``t`` is at the venue before trade ``t + 1``;
a market order then fills at trade ``t + 1`` (the first trade strictly after its arrival).
Live, the order's REST round trip competes with the server's next frame, so the trade it
fills at depends on timing: the one documented difference. The live run removes it by
holding each public trade (the server's ``gate``) until the daemon has processed every
trade sent and has no order in flight, then matching it at the emulator and waiting until
the daemon has booked what it filled before sending it (as the backtest's venue fills
before the strategy sees the trade; otherwise a spot sell decided on that trade is denied
for want of the base asset) -- latency 0 made real. Then decisions and fills are the same
trade for trade. Without the gate the test asserts the difference precisely: every live
fill is at the price of the first trade the emulator matched after the order arrived,
and a decision differs from the backtest's only by such a buying-power denial.

The emulator, as a venue, also knows the capture's best bid and ask (``bookTicker``, the depth
book), which the daemons subscribed to trades alone do not: it would judge a new limit order
against them where the backtest's venue judges it against the last trade. The strategy sends
market orders, which fill at the next trade either way.

The same three modes run on the OKX and Bybit spot recordings (:mod:`tests.live.venue_kits`:
OKX ``BTC-USDT`` trades, the spot connection of the Bybit recording), live through each
venue's signed REST, logged-in private stream and account emulator, with the same gate.
An OKX ``trades`` or Bybit ``publicTrade`` frame may carry several trades (two ETHUSDT
frames of the Bybit recording do). The gate holds whole frames, so the emulator would match
every trade of such a frame before the daemon saw the first of them, and an order decided
on a trade that is not its frame's last would fill at the next frame live but at the next
trade in the backtest: the one difference these venues could show. The test asserts that
every frame of the traded instrument in both recordings carries a single trade, so the
modes must agree exactly, rather than loosening the comparison.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from tests.live.live_harness import KEY, SECRET, until
from tests.live.node_testdata import (
    BINANCE_INSTRUMENT,
    BYBIT_RECORDING,
    IID,
    OKX_RECORDING,
    SPOT_CAPTURE,
    SPOT_FRAMES,
    SPOT_SNAPSHOT,
    SPOT_TRADE_IDS,
    binance_config,
    run_node,
)
from tests.live.venue_kits import KITS, VenueKit
from tradebus.adapters.binance.emulator import BinanceProtocol
from tradebus.adapters.bybit.emulator import BybitProtocol
from tradebus.adapters.okx.emulator import OkxProtocol
from tradebus.adapters.binance.private_emulator import BinancePrivateEmulator, MatchingProtocol
from tradebus.adapters.common.local_server import LocalVenueServer, VenueProtocol
from tradebus.engine.messages import OrderStatus
from tradebus.node.config import parse_paper_config
from tradebus.node.daemon import PaperNode
from tradebus.node.live import ApiKeys, LiveNode, parse_live_config
from tradebus.node.playback import play

pytestmark = pytest.mark.usefixtures("compiled_kernels")

SPOT = {**BINANCE_INSTRUMENT, "margin": False}
_IN_FLIGHT = (OrderStatus.INITIALIZED, OrderStatus.SUBMITTED, OrderStatus.UNKNOWN)
_TRADE_PRICES = [float(json.loads(raw)["data"]["p"]) for _, raw in SPOT_FRAMES if "@trade" in raw]
#: Bounds of a daemon's run over a whole capture, to fail a test that hangs: seconds on a quiet machine, more on a
#: loaded one (the runs' configs turn the warm-up off: each test compiles the kernels first, ``compiled_kernels``).
PAPER_BOUND = 120.0
LIVE_BOUND = 300.0


def _data(ws_url: str, rest_url: str) -> dict[str, Any]:
    data = binance_config(
        ws_url,
        rest_url,
        ["trade"],
        strategy={
            "name": "tradebus.strategies.tick_ema:TickEmaCross",
            "instruments": [IID],
            "params": {"fast": 2, "slow": 8, "quantity": 0.01, "mode": "long_only"},
        },
    )
    data["instruments"] = [SPOT]
    data["warm_up"] = False
    return data


def _decisions(orders: list[Any]) -> list[tuple[Any, ...]]:
    return [(o.side, o.order_type, o.quantity, o.status, o.filled_qty) for o in orders]


def _fills(fills: list[Any]) -> list[tuple[Any, ...]]:
    return [(f.side, f.quantity, f.price) for f in fills]


async def _live(tmp: Path, *, gated: bool) -> tuple[LiveNode, BinancePrivateEmulator, dict[str, int]]:
    """The live daemon over the whole served capture; ``arrived``: client id -> trades the emulator had seen at its POST."""
    emulator = BinancePrivateEmulator(KEY, SECRET, parse_live_config({**_data("ws://x", "http://x")}).instrument_map(), {"USDT": 100_000.0})
    arrived: dict[str, int] = {}
    seen = [0]  # trades the emulator has matched against
    holder: list[LiveNode] = []

    class Counting(MatchingProtocol):
        def on_sent(self, raw: str) -> None:
            if gated and '@trade"' in raw:
                return  # the gate fed the emulator before the frame went out
            super().on_sent(raw)
            if '@trade"' in raw:
                seen[0] += 1

    feeder = MatchingProtocol(None, account=emulator, instrument_ids={"btcusdt": IID})
    gate = _latency_zero_gate(holder, seen, lambda raw: int('@trade"' in raw), feeder, lambda: len(emulator.trades))

    original = emulator._place

    def place(p: dict[str, str]) -> Any:
        arrived.setdefault(p["newClientOrderId"], seen[0])
        return original(p)

    emulator._place = place  # type: ignore[method-assign]
    async with emulator:
        protocol = Counting(SPOT_SNAPSHOT, account=emulator, instrument_ids={"btcusdt": IID})
        async with LocalVenueServer(protocol, SPOT_FRAMES, speed=None if gated else 4.0, gate=gate if gated else None) as srv:
            data = _data(srv.ws_url, srv.http_url)
            data["journal"] = str(tmp / "journal.sqlite")
            data["live"] = {"rest_url": emulator.rest_url, "ws_api_url": emulator.ws_api_url, "request_timeout": 2.0, "submit_timeout": 2.0}
            node = LiveNode(parse_live_config(data, "<test>"), ApiKeys(SecretStr(KEY), SecretStr(SECRET)), handle_signals=False)
            holder.append(node)
            # ungated, an order the daemon decided on one of the last trades after the server had sent them all arrives
            # after the emulator matched the last trade: nothing can fill it, it stays working
            after_the_last = (lambda o: arrived.get(o.client_order_id) == len(_TRADE_PRICES)) if not gated else None
            await _run_through(node, len(SPOT_TRADE_IDS), lambda: len(emulator.trades), after_the_last)
    return node, emulator, arrived


def _latency_zero_gate(
    holder: list[LiveNode],
    seen: list[int],
    trades_in: Callable[[str], int],
    feeder: VenueProtocol,
    venue_fills: Callable[[], int],
) -> Callable[[str], Awaitable[None]]:
    """The public server's gate making latency 0 real against the live daemon ``holder[0]``.

    A frame with trades (``trades_in(raw)`` of them) waits until the daemon has processed
    the ``seen[0]`` trades sent so far and has no order in flight; then ``feeder`` matches it
    at the account emulator, and it goes out once the daemon has booked every fill the
    emulator made (``venue_fills()``).
    """

    async def gate(raw: str) -> None:
        n = trades_in(raw)
        if not n:
            return
        node = holder[0]
        kernel = node.kernel
        # the daemon has processed every trade sent and the emulator has every order it decided ...
        await until(
            lambda: node.running.is_set()
            and not node.guard.holds
            and kernel.result.trades == seen[0]
            and not any(o.status in _IN_FLIGHT for o in kernel.orders.orders()),
        )
        # ... the emulator matches the trade, and the daemon books what it filled before it sees the trade
        feeder.on_sent(raw)
        seen[0] += n
        await until(lambda: len(kernel.result.fills) == venue_fills())

    return gate


async def _run_through(
    node: LiveNode, n_trades: int, venue_fills: Callable[[], int], unfillable: Callable[[Any], bool] | None = None
) -> None:
    """Run ``node`` until it has seen ``n_trades`` trades, booked every venue fill and has no order working but those
    ``unfillable`` says no trade is left to fill; stop it."""
    task = asyncio.create_task(node.run())
    kernel = node.kernel

    def working(o: Any) -> bool:
        return o.status in _IN_FLIGHT or (o.status is OrderStatus.ACCEPTED and not (unfillable is not None and unfillable(o)))

    await until(
        lambda: task.done()
        or (kernel.result.trades == n_trades and len(kernel.result.fills) == venue_fills()
            and not any(working(o) for o in kernel.orders.orders())),
        timeout=LIVE_BOUND,
    )
    node.stop("test done")
    await asyncio.wait_for(task, 20)


async def test_backtest_paper_and_live_on_the_emulator_give_the_same_decisions_and_fills(tmp_path: Path) -> None:
    backtest = play(SPOT_CAPTURE, parse_paper_config(_data("ws://unused", "http://unused"), "<test>")).kernel.result
    async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), SPOT_FRAMES) as srv:
        node = PaperNode(parse_paper_config(_data(srv.ws_url, srv.http_url), "<test>"), handle_signals=False)
        paper = node.kernel.result
        await run_node(
            node, lambda: paper.trades == len(SPOT_TRADE_IDS) and all(o.status is OrderStatus.FILLED for o in paper.orders),
            timeout=PAPER_BOUND,
        )
    live_node, emulator, _ = await _live(tmp_path / "gated", gated=True)
    live = live_node.kernel.result

    assert len(backtest.fills) >= 10  # the strategy really trades on this capture
    assert _decisions(paper.orders) == _decisions(backtest.orders)
    assert _decisions(live.orders) == _decisions(backtest.orders)
    assert _fills(paper.fills) == _fills(backtest.fills)
    assert _fills(live.fills) == _fills(backtest.fills)
    # the live fills are the emulator's account trades, booked once each
    assert [f.trade_id for f in live.fills] == [str(t["id"]) for t in emulator.trades]
    assert live_node.kernel.portfolio.position(IID) == pytest.approx(node.kernel.portfolio.position(IID), abs=1e-12)
    assert live_node.kernel.portfolio.position(IID) == pytest.approx(emulator.balances.get("BTC", 0.0), abs=1e-12)


async def test_without_the_gate_live_fills_only_at_trades_after_the_order_arrived(tmp_path: Path) -> None:
    """The documented difference: at a real pace a market order fills at the first trade after its arrival."""
    node, emulator, arrived = await _live(tmp_path, gated=False)
    live = node.kernel.result
    # a sell decided before the daemon has booked the buy's fill is denied (spot: no BTC yet), so
    # the decisions may part from the backtest's, but only by such denials
    assert live.fills
    assert all("buying_power" in o.reason for o in live.orders if o.status is OrderStatus.DENIED)
    for fill in live.fills:
        after = arrived[fill.client_order_id]  # trades the emulator had matched against when the order arrived
        assert fill.price == _TRADE_PRICES[after], (fill.client_order_id, after)


# ----------------------------------------------------------------------------- OKX and Bybit spot

_PUBLIC: dict[str, type[VenueProtocol]] = {"okx": OkxProtocol, "bybit": BybitProtocol}
_RECORDING = {"okx": OKX_RECORDING, "bybit": BYBIT_RECORDING}


def _kit_trades(kit: VenueKit, raw: str) -> list[str]:
    """Trade ids of the kit's instrument in one public frame (OKX ``trades``, Bybit ``publicTrade``)."""
    msg = json.loads(raw)
    channel = msg.get("topic") or (msg.get("arg") or {}).get("channel")
    if channel not in ("trades", "publicTrade." + kit.instrument["symbol"]):
        return []
    symbol = kit.instrument["symbol"]
    return [str(t.get("tradeId") or t.get("i")) for t in msg.get("data") or [] if (t.get("instId") or t.get("s")) == symbol]


def _kit_paper_data(kit: VenueKit, tmp: Path, ws_url: str, emulator: Any) -> dict[str, Any]:
    data = kit.config(tmp, ws_url, emulator)
    for key in ("live", "journal", "record"):
        data.pop(key)
    return data


async def _kit_live(kit: VenueKit, tmp: Path, n_trades: int) -> tuple[LiveNode, Any]:
    """The live daemon over the kit's served stream, each trade frame gated as in the Binance run."""
    emulator = kit.emulator()
    holder: list[LiveNode] = []
    feeder = kit.make_protocol(kit.frames, emulator)  # matches a gated frame at the emulator
    gate = _latency_zero_gate(holder, [0], lambda raw: len(_kit_trades(kit, raw)), feeder, lambda: len(emulator.fills))
    async with emulator:
        async with LocalVenueServer(_PUBLIC[kit.venue](kit.frames), kit.frames, gate=gate) as srv:
            config = parse_live_config(kit.config(tmp, srv.ws_url, emulator), "<test>")
            node = LiveNode(config, ApiKeys.from_env(config.live, kit.env), handle_signals=False)
            holder.append(node)
            await _run_through(node, n_trades, lambda: len(emulator.fills))
    return node, emulator


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_backtest_paper_and_live_agree_on_okx_and_bybit_spot(kit: VenueKit, tmp_path: Path) -> None:
    frame_trades = [_kit_trades(kit, raw) for _, raw in kit.frames]
    trade_ids = [tid for ids in frame_trades for tid in ids]
    # one trade per frame of the traded instrument: the gate holds each trade alone (module docstring)
    assert {len(ids) for ids in frame_trades if ids} == {1}
    backtest = play(_RECORDING[kit.venue], parse_paper_config(_kit_paper_data(kit, tmp_path, "ws://unused", kit.emulator()), "<test>"))
    bt = backtest.kernel.result
    assert bt.trades == len(trade_ids)
    async with LocalVenueServer(_PUBLIC[kit.venue](kit.frames), kit.frames) as srv:
        node = PaperNode(parse_paper_config(_kit_paper_data(kit, tmp_path, srv.ws_url, kit.emulator()), "<test>"), handle_signals=False)
        paper = node.kernel.result
        await run_node(
            node, lambda: paper.trades == len(trade_ids) and all(o.status is OrderStatus.FILLED for o in paper.orders),
            timeout=PAPER_BOUND,
        )
    live_node, emulator = await _kit_live(kit, tmp_path / "live", len(trade_ids))
    live = live_node.kernel.result

    assert len(bt.fills) >= 4  # the strategy really trades on this recording
    assert _decisions(paper.orders) == _decisions(bt.orders)
    assert _decisions(live.orders) == _decisions(bt.orders)
    assert _fills(paper.fills) == _fills(bt.fills)
    assert _fills(live.fills) == _fills(bt.fills)
    # the live fills are the emulator's account fills, booked once each
    assert [f.trade_id for f in live.fills] == [str(f.trade_id) for f in emulator.fills]
    iid = kit.iid
    assert live_node.kernel.portfolio.position(iid) == pytest.approx(node.kernel.portfolio.position(iid), abs=1e-12)
    assert live_node.kernel.portfolio.position(iid) == pytest.approx(emulator.balances.get(kit.base, 0.0), abs=1e-12)
