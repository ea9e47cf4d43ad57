"""Seeded scenarios of a paper daemon restarted on its journal and recording, each session replayed alone.

Each seed draws a venue served by its local emulator (Binance spot, OKX spot, Bybit linear), 1-3 strategies
of ``tests/live/*_strategy.py`` (resting and marketable limits, a bracket, a timer or an alert, an iceberg),
and 2-4 daemon sessions on consecutive cuts of the venue's capture, one of them possibly stopped as it started
(no frame: its cut is missed, as a market moving on while the daemon was down);
every session journals into one journal and appends to one recording, so a restart restores the position
and working orders the session before it left. ``tradebus replay --session N`` of every session with frames
must give what its daemon gave: fills, orders, equity samples, trade count and positions
(:func:`~tradebus.node.playback.play`). ``SESSFUZZ_SEEDS=a:b`` runs seeds ``a..b-1`` instead of the fixed ones.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import pytest

from tradebus.adapters.binance.emulator import BinanceProtocol
from tradebus.adapters.bybit.emulator import BybitProtocol
from tradebus.adapters.common.local_server import LocalVenueServer, StreamBookProtocol
from tradebus.adapters.okx.emulator import OkxProtocol
from tradebus.node.daemon import PaperNode
from tradebus.node.playback import play

from .node_testdata import (
    IID,
    OKX_IID,
    SPOT_FRAMES,
    SPOT_SNAPSHOT,
    binance_config,
    bybit_linear_frames,
    config_of,
    fill_keys,
    okx_frames,
    order_keys,
    run_node,
)
from .test_outputs_paper_vs_replay_okx_bybit import SOL_IID, bybit_config, okx_config

BINANCE_FRAMES = [frame for frame in SPOT_FRAMES if "@depth" not in frame[1]][:400]  # trades and bookTickers


def _price(venue: str, raw: str) -> float | None:
    """The first trade price a frame of ``venue`` carries (None: no trade of the scenario's instrument)."""
    msg = json.loads(raw)
    if venue == "binance":
        return float(msg["data"]["p"]) if "@trade" in raw else None
    if venue == "okx":
        arg = msg.get("arg", {})
        if arg.get("channel") == "trades" and arg.get("instId") == "BTC-USDT" and msg.get("data"):
            return float(msg["data"][0]["px"])
        return None
    if msg.get("topic") == "publicTrade.SOLUSDT" and msg.get("data"):
        return float(msg["data"][0]["p"])
    return None


def venue_frames(venue: str) -> tuple[str, list[tuple[int, str]], float, float]:
    """(instrument id, frames to serve, a tick to price orders off, an order quantity) of ``venue``."""
    if venue == "binance":
        return IID, BINANCE_FRAMES, 0.01, 0.001
    if venue == "okx":
        return OKX_IID, okx_frames(), 0.1, 0.001
    return SOL_IID, bybit_linear_frames()[:1200], 0.01, 0.1


def draw_strategies(rng: random.Random, iid: str, price: float, tick: float, lot: float) -> list[dict[str, Any]]:
    """1-3 strategies of the test strategies, with seeded parameters around ``price``."""
    pool = ["mixed", "bracket", "timer", "alert", "iceberg"]
    chosen = rng.sample(pool, rng.randint(1, 3))
    out: list[dict[str, Any]] = []
    for name in chosen:
        if name == "mixed":
            params = {"every": rng.choice([1, 2, 3]), "quantity": lot, "ticks": rng.choice([0, 0, 3, 1000]),
                      "keep": rng.choice([1, 2, 4]), "ref": "quote"}
            entry = {"name": "tests.live.mixed_orders_strategy:MixedOrders", "params": params}
        elif name == "bracket":
            span = rng.choice([2, 5, 20, 500]) * tick
            # around the first trade's price, not price: a take-profit below the last price is refused (7770764d)
            entry = {"name": "tests.live.bracket_strategy:OneBracket",
                     "params": {"quantity": lot * rng.choice([1, 2]), "span": span}}
        elif name == "timer":
            entry = {"name": "tests.live.alert_strategy:TimerBuy",
                     "params": {"every_ms": rng.choice([50, 150, 400]), "quantity": lot}}
        elif name == "alert":
            entry = {"name": "tests.live.alert_strategy:AlertBuy",
                     "params": {"after_ms": rng.choice([-5, 20, 300]), "quantity": lot, "at_trade": rng.randint(1, 6)}}
        else:
            entry = {"name": "tests.live.iceberg_strategy:IcebergBuy",
                     "params": {"quantity": lot * 6, "price": round(price + rng.choice([-3, 0, 2]) * tick, 8),
                                "display": lot * 2, "poll": rng.choice(["50ms", "200ms"])}}
        out.append({**entry, "id": name, "instruments": [iid]})
    return out


def draw_scenario(seed: int) -> dict[str, Any]:
    """The venue, strategies and session cuts of ``seed``."""
    rng = random.Random(seed)
    venue = rng.choice(["binance", "binance", "okx", "bybit"])
    iid, frames, tick, lot = venue_frames(venue)
    price = next(p for p in (_price(venue, raw) for _, raw in frames) if p is not None)
    n = rng.randint(2, 4)
    cuts = sorted(rng.sample(range(1, len(frames)), n - 1))
    bounds = list(zip([0, *cuts], [*cuts, len(frames)], strict=True))
    if n > 2 and rng.random() < 0.5:
        empty = rng.randrange(1, n - 1)  # a daemon restarted and stopped before any frame, between two sessions
        bounds[empty] = (bounds[empty][0], bounds[empty][0])
    return {"venue": venue, "iid": iid, "frames": frames, "sessions": bounds,
            "strategies": draw_strategies(rng, iid, price, tick, lot)}


def config_data(scenario: dict[str, Any], tmp: Path, ws_url: str, http_url: str) -> dict[str, Any]:
    """The paper config mapping of a scenario's daemon, journaling and recording under ``tmp``."""
    venue = scenario["venue"]
    if venue == "binance":
        data = binance_config(ws_url, http_url, ["trade", "bookTicker"], tmp=tmp, record=True, journal=True)
        data["warm_up"] = False
    else:
        data = okx_config() if venue == "okx" else bybit_config()
        data["feeds"] = [{**data["feeds"][0], "ws_url": ws_url}]
        data["record"] = str(tmp / "frames.jsonl.gz")
        data["journal"] = str(tmp / "journal.sqlite")
    data.pop("strategy")
    data["strategies"] = scenario["strategies"]
    return data


def protocol_of(venue: str, frames: list[tuple[int, str]]) -> StreamBookProtocol | BinanceProtocol:
    """The emulator protocol serving ``frames`` of ``venue`` (Binance: trades and quotes, no book to snapshot)."""
    if venue == "binance":
        return BinanceProtocol(SPOT_SNAPSHOT)
    return OkxProtocol(frames) if venue == "okx" else BybitProtocol(frames)


async def run_scenario(tmp: Path, scenario: dict[str, Any]) -> list[str]:
    """Run the scenario's daemon sessions, replay each one with frames; return the differences found."""
    nodes: list[PaperNode] = []
    for start, end in scenario["sessions"]:
        frames = scenario["frames"][start:end]
        async with LocalVenueServer(protocol_of(scenario["venue"], frames), frames) as srv:
            node = PaperNode(config_of(config_data(scenario, tmp, srv.ws_url, srv.http_url)), handle_signals=False)
            if not frames:
                node.stop("stopped as it started")  # it recovers, records its run:start and stops before any frame
            await run_node(node, lambda srv=srv, n=len(frames): srv.cursor >= n, timeout=60.0)  # type: ignore[misc]
        nodes.append(node)
    recording = tmp / "frames.jsonl.gz"
    problems: list[str] = []
    iid = scenario["iid"]
    for number, ((start, end), node) in enumerate(zip(scenario["sessions"], nodes, strict=True), 1):
        if start == end:
            continue
        replay = play(recording, node.config, session=number).kernel
        daemon, result = node.kernel.result, replay.result
        checks = {
            "fills": (_keys(fill_keys(result.fills)), _keys(fill_keys(daemon.fills))),
            "orders": (_keys(order_keys(result.orders)), _keys(order_keys(daemon.orders))),
            "equity": ([(s.ts, s.equity, s.cash) for s in result.equity], [(s.ts, s.equity, s.cash) for s in daemon.equity]),
            "trades": (result.trades, daemon.trades),
            "position": (replay.portfolio.position(iid), node.kernel.portfolio.position(iid)),
        }
        problems += [_difference(number, what, got, want) for what, (got, want) in checks.items() if got != want]
    return problems


def _keys(rows: list[tuple[Any, ...]]) -> list[str]:
    """Rows as text (a NaN equals a NaN), client order ids without their run component (the daemon's journal
    drew it, a replay's is fixed)."""
    return [repr((row[0][:8] + row[0][16:], *row[1:])) for row in rows]


def _difference(number: int, what: str, got: Any, want: Any) -> str:
    """Where the replay of session ``number`` first differs from its daemon in ``what``."""
    if not isinstance(got, list):
        return f"session {number}: {what}: replay {got!r}, daemon {want!r}"
    at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    return (f"session {number}: {what}: {len(got)} in the replay, {len(want)} in the daemon; first difference at "
            f"{at}: replay {got[at:at + 2]!r}, daemon {want[at:at + 2]!r}")


def _seeds() -> list[int]:
    spec = os.environ.get("SESSFUZZ_SEEDS")
    if spec:
        first, last = spec.split(":")
        return list(range(int(first), int(last)))
    return [3, 5, 9, 13]


@pytest.mark.parametrize("seed", _seeds())
async def test_each_session_of_a_restarted_daemon_replays_as_it_ran(tmp_path: Path, seed: int) -> None:
    scenario = draw_scenario(seed)
    problems = await run_scenario(tmp_path, scenario)
    described = {k: v for k, v in scenario.items() if k != "frames"}
    assert not problems, f"seed {seed}: {described}\n" + "\n".join(p[:2000] for p in problems)
