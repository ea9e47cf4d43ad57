"""The regime + hazard system as a strategy in the paper daemon on a served recording (and in playback).

The daemon connects to a local Binance emulator serving the spot BTCUSDT capture; the
:class:`~tradebus.strategies.regime_hazard.RegimeHazard` strategy (layers A, B and C, with
a hazard model loaded from a ``models.json``) must take exactly the decisions the research
simulation takes on the capture's trades parsed independently with ``json``, and every
order it sends must carry its entry id and the decision's reason. Intervals are seconds
(the capture is 38 s long).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tradebus.adapters.binance.emulator import BinanceProtocol
from tradebus.adapters.common.local_server import Fault, FaultKind, LocalVenueServer
from tradebus.adapters.common.trade_gaps import RETRIES
from tradebus.engine.messages import TradesMissed
from tradebus.node.daemon import PaperNode
from tradebus.node.playback import Playback
from tradebus.strategies.models import CalibratedLogit, ModelSchedule
from tradebus.research.regime_hazard import CostsConfig, simulate
from tradebus.strategies.regime_hazard import BOOK_FEATURES, HAZARD_FEATURES, RegimeHazardParams

from .node_testdata import (
    IID,
    SPOT_CAPTURE,
    SPOT_FRAMES,
    SPOT_SNAPSHOT,
    SPOT_TRADE_IDS,
    binance_config,
    config_of,
    run_node,
)

PARAMS = {"base_interval": "1s", "entry_interval": "1s", "regime_interval": "2s", "regime_window": 3,
          "vol_window": 5, "confirm": 1, "ema_fast": 2, "ema_slow": 3, "atr_window": 3, "flow_window": 3,
          "cooldown_bars": 1, "max_hold_bars": 4, "trend_enter": 0.6, "trend_exit": 0.4, "hazard_enter": 1.5,
          "hazard_exit": 1.2, "range_edge": 0.3, "pullback_atr": 0.2, "exit_threshold": 0.6, "block_threshold": 0.78}


def _hazard_model() -> ModelSchedule:
    """P(hazard) rising with the order flow against the trade (a fixed model; training is tested in research)."""
    k = len(HAZARD_FEATURES)
    coef = tuple(2.0 if name == "adverse_ofi" else 0.0 for name in HAZARD_FEATURES)
    model = CalibratedLogit(HAZARD_FEATURES, (0.0,) * k, (1.0,) * k, coef, 0.0, (0.0, 1.0), (0.0, 1.0), 0, 0.5)
    return ModelSchedule(((0, model),))


def _capture_trades() -> pd.DataFrame:
    rows = [json.loads(raw)["data"] for _, raw in SPOT_FRAMES if "@trade" in raw]
    return pd.DataFrame({"ts_event": [r["T"] * 1_000_000 for r in rows], "price": [float(r["p"]) for r in rows],
                         "size": [float(r["q"]) for r in rows], "aggressor": [-1 if r["m"] else 1 for r in rows]})


async def test_paper_daemon_runs_layers_a_b_c_with_the_research_decisions_and_reasons(tmp_path: Path) -> None:
    models = tmp_path / "models.json"
    models.write_text(json.dumps({"meta": [], "hazard": _hazard_model().to_list()}))
    strategy = {"name": "tradebus.strategies.regime_hazard:RegimeHazard", "instruments": [IID],
                "params": {**PARAMS, "quantity": 0.01, "models": str(models)}}
    async with LocalVenueServer(BinanceProtocol(SPOT_SNAPSHOT), SPOT_FRAMES) as srv:
        data = binance_config(srv.ws_url, srv.http_url, ["trade"], tmp=tmp_path, strategy=strategy)
        data["warm_up"] = False  # the strategy uses no feature bank
        node = PaperNode(config_of(data), handle_signals=False)
        result = node.kernel.result
        await run_node(node, lambda: result.trades == len(SPOT_TRADE_IDS))
    assert result.trades == len(SPOT_TRADE_IDS)
    system = node.kernel.strategies[0].system
    live = system.decisions
    # the daemon joined the market inside a 1 s base bar: that partial bar is not used, so it decides as research
    # does on the trades from the first whole base bar on
    trades = _capture_trades()
    first_whole = (trades.ts_event[0] // 1_000_000_000 + 1) * 1_000_000_000
    assert trades.ts_event[0] % 1_000_000_000 and system.bars[0][0] == first_whole + 1_000_000_000
    in_first = trades[(trades.ts_event >= first_whole) & (trades.ts_event < first_whole + 1_000_000_000)]
    assert system.bars[0][1:] == (in_first.price.iloc[0], in_first.price.max(), in_first.price.min(),
                                  in_first.price.iloc[-1], pytest.approx(in_first["size"].sum(), rel=1e-12))
    whole = simulate(trades[trades.ts_event >= first_whole].reset_index(drop=True), RegimeHazardParams(**PARAMS),
                     CostsConfig(), hazard=_hazard_model(), use_hazard=True).system
    assert system.bars == whole.bars
    research = whole.decisions
    assert [d.to_dict() for d in live] == [d.to_dict() for d in research]
    actions = [d for d in live if d.action in ("enter", "exit")]
    assert {d.layer for d in live} == {"A", "B", "C"} and len(actions) >= 6
    assert any(d.layer == "C" and d.action == "exit" for d in live) and any(d.action == "block" for d in live)
    orders = node.kernel.orders.orders()
    assert len(orders) == len(actions)
    for order, decision in zip(orders, actions, strict=True):
        assert result.submit_reasons[order.client_order_id] == f"{decision.entry_id} {decision.reason}"
        assert order.quantity == 0.01


def _capture_base_bars() -> dict[int, tuple[float, ...]]:
    """The 1 s bars of the whole capture's trades, by close: pandas, closed and labelled right of [start, end)."""
    trades = _capture_trades()
    t = trades.set_index(pd.to_datetime(trades.ts_event, unit="ns"))
    r = t.resample("1s", closed="left", label="right")
    bars = pd.DataFrame({"open": r.price.first(), "high": r.price.max(), "low": r.price.min(),
                         "close": r.price.last(), "volume": r["size"].sum()}).dropna()
    return {int(ts.value): tuple(row) for ts, row in zip(bars.index, bars.itertuples(index=False), strict=True)}


async def test_paper_daemon_builds_no_base_bar_over_trades_lost_for_good(tmp_path: Path) -> None:
    # five trades in a row never reach the daemon and the venue's trade history fails (HTTP 503) at every
    # attempt: they are lost for good. They were printed between the trade before them and the one after,
    # in two 1 s base bars, which the strategy must not build (the kernel's own trade bars do not either)
    trades = [json.loads(raw)["data"] for _, raw in SPOT_FRAMES if "@trade" in raw]
    # (the first of those bars closing on an even second: each shares its 2 s regime bucket with a whole bar)
    cut = next(k for k in range(300, len(trades)) if trades[k + 5]["T"] // 1000 == trades[k - 1]["T"] // 1000 + 1
               and (trades[k - 1]["T"] // 1000 + 1) % 2 == 0)
    faults = [Fault(FaultKind.SKIP, at=k, match="@trade") for k in range(cut, cut + 5)]
    proto = BinanceProtocol(SPOT_SNAPSHOT, trade_failures=1 + RETRIES)
    strategy = {"name": "tradebus.strategies.regime_hazard:RegimeHazard", "instruments": [IID],
                "params": {**PARAMS, "quantity": 0.01}}
    async with LocalVenueServer(proto, SPOT_FRAMES, faults) as srv:
        data = binance_config(srv.ws_url, srv.http_url, ["trade"], tmp=tmp_path, strategy=strategy)
        data["warm_up"] = False  # the strategy uses no feature bank
        node = PaperNode(config_of(data), handle_signals=False)
        missed: list[TradesMissed] = []
        node.kernel.bus.subscribe(TradesMissed, missed.append)
        result = node.kernel.result
        await run_node(node, lambda: result.trades == len(trades) - 5)
    assert result.trades == len(trades) - 5 and proto.trade_requests == 1 + RETRIES
    assert [(m.first_id, m.last_id, m.recovered) for m in missed] == [(trades[cut]["t"], trades[cut + 4]["t"], 0)]
    system = node.kernel.strategies[0].system
    whole = _capture_base_bars()
    lost = [(trades[k]["T"] // 1000 + 1) * 1_000_000_000 for k in (cut - 1, cut + 5)]
    closes = [b[0] for b in system.bars]
    # every base bar built is the capture's whole bar at that close; the two over the lost trades are not built
    for ts, o, h, lo, c, v in system.bars:
        assert (o, h, lo, c) == whole[ts][:4]
        assert v == pytest.approx(whole[ts][4], rel=1e-12)
    assert not set(lost) & set(closes)
    assert lost[1] + 1_000_000_000 in closes and lost[0] - 1_000_000_000 in closes
    # nothing else is missing: every close of the capture but the first (partial), the last (never over) and those two
    assert closes == [c for c in sorted(whole)[1:-1] if c not in lost]
    # no 2 s regime bar over a lost base bar either (each of the two buckets holds a whole bar besides); the
    # buckets around them give theirs
    two = 2_000_000_000
    bucket = {-(-c // two) * two for c in lost}
    regimes = [r[0] for r in system.regimes]
    assert not bucket & set(regimes)
    assert min(bucket) - two in regimes and max(bucket) + two in regimes


def _book_model() -> ModelSchedule:
    """P(hazard) rising with the book's order flow against the trade and a replenishment gap."""
    names = HAZARD_FEATURES + BOOK_FEATURES
    k = len(names)
    coef = tuple({"adverse_book_ofi": 1.5, "replenish_gap": 2.0}.get(n, 0.0) for n in names)
    model = CalibratedLogit(names, (0.0,) * k, (1.0,) * k, coef, -0.2, (0.0, 1.0), (0.0, 1.0), 0, 0.5)
    return ModelSchedule(((0, model),))


def test_playback_feeds_the_book_to_the_hazard_meter(tmp_path: Path) -> None:
    """With book features, the hazard meter reads multi-level OFI and replenishment from the paper kernel's book.

    Through :class:`~tradebus.node.playback.Playback` (the paper kernel replaying the capture,
    book seeded from its recorded REST snapshot), which is deterministic: the live daemon
    seeds its book from a snapshot fetched after it connects, so how many of its first
    minutes have a book depends on timing.
    """
    models = tmp_path / "models.json"
    models.write_text(json.dumps({"meta": [], "hazard": _book_model().to_list()}))
    params = {**PARAMS, "quantity": 0.01, "models": str(models), "book_features": True, "replenish_horizon": "1s",
              "depletion_window": 20}
    strategy = {"name": "tradebus.strategies.regime_hazard:RegimeHazard", "instruments": [IID], "params": params}
    runs = []
    for _ in range(2):
        playback = Playback(config_of({**binance_config(None, None, ["trade", "depth"], strategy=strategy),
                                       "warm_up": False}))
        playback.run(SPOT_CAPTURE)
        runs.append(playback.kernel)
    system = runs[0].strategies[0].system
    assert [d.to_dict() for d in system.decisions] == [d.to_dict() for d in runs[1].strategies[0].system.decisions]
    rows = [m["features"] for m in system.open_minutes]
    assert rows and all(len(r) == len(HAZARD_FEATURES) + len(BOOK_FEATURES) for r in rows)
    assert all(r[-2] == r[-2] for r in rows) and any(r[-2] != 0.0 for r in rows)  # the book is there from the start
    assert set(system._refill_last) == {1, -1}  # depletions measured on both sides of the real book
    reasons = [d.reason for d in system.decisions if d.layer == "C"]
    assert any("book order-flow" in r for r in reasons) and any("replenishment drop" in r for r in reasons)
    orders = runs[0].orders.orders()
    assert len(orders) == sum(d.action in ("enter", "exit") for d in system.decisions)
    assert all(runs[0].result.submit_reasons[o.client_order_id].startswith("rh-") for o in orders)


def test_the_partial_first_base_bar_left_out_is_logged_with_its_instrument() -> None:
    """A paper daemon of regime_hazard strategies on two instruments logged 'time bars: the bar closing at ... is not
    emitted ...' for each, naming neither: its base bars' builder is not the kernel's, which names its instrument."""
    from loguru import logger

    strategy = {"name": "tradebus.strategies.regime_hazard:RegimeHazard", "instruments": [IID],
                "params": {**PARAMS, "quantity": 0.01}}
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m).rstrip()), format="{message}", level="INFO")
    try:
        playback = Playback(config_of({**binance_config(None, None, ["trade"], strategy=strategy), "warm_up": False}))
        playback.run(SPOT_CAPTURE)
    finally:
        logger.remove(sink)
    first = _capture_trades().ts_event[0]
    assert first % 1_000_000_000  # the capture starts inside a 1 s base bar
    close = pd.Timestamp((first // 1_000_000_000 + 1) * 1_000_000_000).to_datetime64()
    dropped = [line for line in lines if "is not emitted" in line]
    assert dropped == [f"{IID}: time bars: the bar closing at {close} is not emitted: the first trade seen came "
                       "inside it, after trades not seen (a run started mid-bar)"]
