"""Market-data throughput: parse+normalise rate per venue and message type, book updates per second.

Usage::

    NUMBA_CACHE_DIR=.cache/numba .venv/bin/python bench/market_data.py [--json] [--repeat N] [--cpu-time]

Inputs are the real captures under ``tests/fixtures/`` (Binance spot/USD-M hftbacktest
cuts and cryptofeed recordings; OKX/Bybit recordings when their adapters exist). Every
figure is the median over ``--repeat`` runs on one core.

* ``parse``: raw frame (str) -> core message through the venue's parser, next to
  ``json_loads``: merely decoding the same frames with stdlib ``json.loads``, timed
  in the same run (runs alternate); ``vs_json_loads`` = parse rate / json.loads rate
  (target >= 1 for every venue's trades and top of book, and Binance diff depth).
* ``feed``: raw frame -> routing by stream name -> parser -> de-dup -> sink (no-op).
* ``book``: pre-parsed diffs of the capture, in price-level updates per second:
  ``replay`` = :meth:`BookSync.fast_forward` (sequence rule, crossed check and
  apply compiled, one call per batch: the replay path); ``levels`` = one
  :meth:`BookSync.on_delta` per diff (live path: rule check and apply in one compiled
  call per diff, BookDelta and Quote emission to a no-op sink); ``kernel`` = bare
  :meth:`OrderBook.apply` per diff. ``live_vs_replay`` = levels / replay (target >= 0.5).
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from checkout import use_this_checkout

ROOT = use_this_checkout()

from tradebus.adapters.binance.client import BinanceRouter  # noqa: E402
from tradebus.adapters.binance.config import BinanceConfig  # noqa: E402
from tradebus.adapters.binance.parse import (  # noqa: E402
    parse_agg_trade,
    parse_book_ticker,
    parse_depth_snapshot,
    parse_depth_update,
    parse_kline,
    parse_mark_price,
    parse_trade,
)
from tradebus.adapters.common.recorder import iter_hftbacktest, read_frames  # noqa: E402
from tradebus.adapters.binance.sync import BinanceFuturesRule, BinanceSpotRule  # noqa: E402
from tradebus.adapters.common.sync import BookSync, DeltaBatch  # noqa: E402

_clock: Callable[[], float] = time.perf_counter
"""Timer of every figure: wall clock, or this thread's CPU time with ``--cpu-time``."""

FIX = ROOT / "tests" / "fixtures"
BIN = FIX / "binance"


def _noop(msg: Any) -> None:
    return None


def _median_rate(fn: Callable[[], tuple[int, float]], repeat: int) -> float:
    """``fn`` returns (units, seconds); median units/s over ``repeat`` runs (one warm-up)."""
    fn()
    rates = []
    for _ in range(repeat):
        n, secs = fn()
        rates.append(n / secs)
    return statistics.median(rates)


def _alternating_rates(fns: dict[str, Callable[[], tuple[int, float]]], repeat: int) -> dict[str, float]:
    """:func:`_median_rate` of several cases run in turn, so every side sees the same machine load."""
    for fn in fns.values():
        fn()
    rates: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            n, secs = fn()
            rates[name].append(n / secs)
    return {name: statistics.median(r) for name, r in rates.items()}


def _vs_json(ours: Callable[[], tuple[int, float]], frames: list[str], loops: int, repeat: int) -> dict[str, float]:
    """Median rates of ``ours`` and of ``json.loads`` over the same frames, runs alternating."""
    loads = json.loads

    def reference() -> tuple[int, float]:
        t0 = _clock()
        for _ in range(loops):
            for raw in frames:
                loads(raw)
        return loops * len(frames), _clock() - t0

    ours()
    reference()
    mine, ref = [], []
    for _ in range(repeat):
        n, secs = ours()
        mine.append(n / secs)
        n, secs = reference()
        ref.append(n / secs)
    a, b = statistics.median(mine), statistics.median(ref)
    return {"msgs_per_s": a, "json_loads_msgs_per_s": b, "vs_json_loads": a / b}


def _parse_case(frames: list[str], parse: Callable[[str, int, str], Any], min_msgs: int = 200_000) -> Callable[[], tuple[int, float]]:
    loops = max(1, min_msgs // max(1, len(frames)))

    def run() -> tuple[int, float]:
        t0 = _clock()
        for _ in range(loops):
            for raw in frames:
                parse(raw, 0, "BTCUSDT.BINANCE")
        return loops * len(frames), _clock() - t0

    return run


def _cryptofeed(path: Path) -> list[str]:
    import gzip

    out = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            head, sep, raw = line.rstrip("\n").partition(": ")
            if sep and raw.startswith("{"):
                out.append(raw)
    return out


def binance_parse(repeat: int) -> dict[str, float]:
    spot = [raw for _, raw in iter_hftbacktest(BIN / "spot_btcusdt_20240808_head4000.gz")]
    usdm = [raw for _, raw in iter_hftbacktest(BIN / "usdm_btcusdt_20230404_head4000.gz")]
    cf = _cryptofeed(BIN / "cryptofeed_usdm_2021-07-22.ws.txt.gz")
    cases = {
        "trade": ([r for r in spot if "@trade" in r], parse_trade),
        "bookTicker": ([r for r in spot if "@bookTicker" in r], parse_book_ticker),
        "depthUpdate": ([r for r in spot + usdm if "@depth" in r], parse_depth_update),
        "aggTrade": ([r for r in cf if "@aggTrade" in r], parse_agg_trade),
        "kline": ([r for r in cf if "@kline" in r], parse_kline),
        "markPrice": ([r for r in usdm if "@markPrice" in r], parse_mark_price),
    }
    return {
        name: _vs_json(_parse_case(frames, fn), frames, max(1, 200_000 // max(1, len(frames))), repeat)
        for name, (frames, fn) in cases.items()
    }


def binance_feed(repeat: int) -> dict[str, float]:
    spot = [(ts, raw) for ts, raw in iter_hftbacktest(BIN / "spot_btcusdt_20240808_head4000.gz")]
    frames = [(ts, raw) for ts, raw in spot if "@trade" in raw or "@bookTicker" in raw]
    cfg = BinanceConfig(symbols=["BTCUSDT"], channels=["trade", "bookTicker"])
    loops = max(1, 200_000 // len(frames))

    def run() -> tuple[int, float]:
        total = 0.0
        for _ in range(loops):
            feed = BinanceRouter(cfg, _noop)  # fresh de-dup memory: every trade is new
            on_frame = feed.on_frame
            t0 = _clock()
            for ts, raw in frames:
                on_frame(raw, ts)
            total += _clock() - t0
        return loops * len(frames), total

    return {"trade+bookTicker": _median_rate(run, repeat)}


def binance_book(repeat: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, path, rule in (
        ("spot", BIN / "spot_btcusdt_20240808_head4000.gz", BinanceSpotRule),
        ("usdm", BIN / "usdm_btcusdt_20230404_head4000.gz", BinanceFuturesRule),
    ):
        lines = list(iter_hftbacktest(path))
        snap_raw = next(raw for _, raw in lines if raw.startswith('{"lastUpdateId"'))
        snapshot = parse_depth_snapshot(snap_raw, 0, "BTCUSDT.BINANCE")
        deltas = [parse_depth_update(raw, ts, "BTCUSDT.BINANCE") for ts, raw in lines if "@depth" in raw]
        deltas = [d for d in deltas if d.last_seq > snapshot.last_seq]  # the ones the rule would not drop
        levels = sum(d.bids.shape[0] + d.asks.shape[0] for d in deltas)
        loops = max(1, 2_000_000 // max(1, levels))

        def run_sync(rule: type = rule, deltas: list = deltas, levels: int = levels, loops: int = loops) -> tuple[int, float]:
            total = 0.0
            for _ in range(loops):
                sync = BookSync("BTCUSDT.BINANCE", rule(), _noop, capacity=4096)
                sync.on_snapshot(snapshot)
                on_delta = sync.on_delta
                t0 = _clock()
                for d in deltas:
                    on_delta(d)
                total += _clock() - t0
                if not sync.synced:
                    raise RuntimeError(f"bench {name}: book lost sync; the capture or the rule is wrong")
            return loops * levels, total

        def run_kernel(deltas: list = deltas, levels: int = levels, loops: int = loops) -> tuple[int, float]:
            total = 0.0
            for _ in range(loops):
                sync = BookSync("BTCUSDT.BINANCE", rule(), _noop, capacity=4096)
                sync.on_snapshot(snapshot)
                apply = sync.book.apply
                t0 = _clock()
                for d in deltas:
                    apply(d.bids, d.asks)
                total += _clock() - t0
            return loops * levels, total

        batch = DeltaBatch(deltas)

        def run_replay(batch: DeltaBatch = batch, levels: int = levels, loops: int = loops) -> tuple[int, float]:
            total = 0.0
            for _ in range(loops):
                sync = BookSync("BTCUSDT.BINANCE", rule(), _noop, capacity=4096)
                sync.on_snapshot(snapshot)
                t0 = _clock()
                sync.fast_forward(batch)
                total += _clock() - t0
                if not sync.synced:
                    raise RuntimeError(f"bench {name}: book lost sync in fast_forward")
            return loops * levels, total

        rates = _alternating_rates({"replay": run_replay, "live": run_sync, "kernel": run_kernel}, repeat)
        out[f"{name}_replay_levels_per_s"] = rates["replay"]
        out[f"{name}_levels_per_s"] = rates["live"]
        out[f"{name}_kernel_levels_per_s"] = rates["kernel"]
        out[f"{name}_levels_per_diff"] = levels / len(deltas)
        out[f"{name}_live_vs_replay"] = out[f"{name}_levels_per_s"] / out[f"{name}_replay_levels_per_s"]
    return out


def other_venues(repeat: int) -> dict[str, dict[str, dict[str, float]]]:
    """OKX/Bybit parsers (L-B's modules) on their fixture recordings, if present."""
    results: dict[str, dict[str, float]] = {}
    specs = (
        ("okx", "tradebus.adapters.okx.parse", "OkxParser", FIX / "okx" / "okx_v5_public_2022-05-13.jsonl.gz", {}),
        ("bybit", "tradebus.adapters.bybit.parse", "BybitParser", FIX / "bybit" / "bybit_v5_public_2026-08-09.jsonl.gz",
         {"category": "linear"}),
    )
    for venue, module, cls_name, path, kwargs in specs:
        try:
            cls = getattr(importlib.import_module(module), cls_name)
        except (ImportError, AttributeError):
            continue
        if not path.exists():
            continue
        frames = [(t, raw) for t, conn, raw in read_frames(path) if isinstance(raw, str) and conn in ("okx-public", "linear")]
        groups: dict[str, list[tuple[int, str]]] = {}
        for t, raw in frames:
            key = _channel(raw)
            if key is not None:
                groups.setdefault(key, []).append((t, raw))
        venue_rates: dict[str, dict[str, float]] = {}
        for key, group in sorted(groups.items()):
            if key.startswith(("books", "orderbook")) or len(group) < 20:
                continue  # stateful book streams cannot be replayed in a loop without resyncs
            loops = max(1, 100_000 // len(group))

            def run(group: list = group, loops: int = loops, cls: type = cls, kwargs: dict = kwargs) -> tuple[int, float]:
                total = 0.0
                for _ in range(loops):
                    parser = cls(**kwargs)
                    parse = parser.parse_frame
                    t0 = _clock()
                    for t, raw in group:
                        parse(raw, t)
                    total += _clock() - t0
                return loops * len(group), total

            venue_rates[key] = _vs_json(run, [raw for _, raw in group], loops, repeat)
        results[venue] = venue_rates
    return results


def _channel(raw: str) -> str | None:
    try:
        msg = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(msg, dict) or "data" not in msg:
        return None
    if "arg" in msg:
        return str(msg["arg"].get("channel"))
    topic = msg.get("topic")
    return str(topic).split(".")[0] if topic else None


def _vs_line(name: str, row: dict[str, float]) -> str:
    return (
        f"  {name:<14} parse {row['msgs_per_s']:>12,.0f}  json.loads {row['json_loads_msgs_per_s']:>12,.0f}"
        f"  ratio {row['vs_json_loads']:.2f}x"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    ap.add_argument("--repeat", type=int, default=5, help="runs per figure (median reported)")
    ap.add_argument(
        "--cpu-time",
        action="store_true",
        help="time with this thread's CPU time (time.thread_time) instead of the wall clock: on a shared, "
        "loaded machine the time the process waits for a core is then counted on neither side",
    )
    args = ap.parse_args()
    global _clock
    _clock = time.thread_time if args.cpu_time else time.perf_counter
    res = {
        "binance_parse_msgs_per_s": binance_parse(args.repeat),
        "binance_feed_msgs_per_s": binance_feed(args.repeat),
        "binance_book": binance_book(args.repeat),
        "other_venues_parse_msgs_per_s": other_venues(args.repeat),
        "targets": {"parse_trades_and_top_of_book_msgs_per_s": 300_000, "book_levels_per_s": 5_000_000},
        "clock": _clock.__name__,
    }
    if args.json:
        print(json.dumps(res, indent=2, sort_keys=True))
        return
    print(f"clock: time.{res['clock']}")
    print("Binance parse+normalise vs json.loads of the same frames (msgs/s, medians; target ratio >= 1):")
    for k, v in res["binance_parse_msgs_per_s"].items():
        print(_vs_line(k, v))
    for k, v in res["binance_feed_msgs_per_s"].items():
        print(f"Binance feed path {k}: {v:,.0f} msgs/s")
    print("Binance book (price-level updates/s, Binance sequence rules):")
    for k, v in res["binance_book"].items():
        print(f"  {k:<26} {v:>14,.2f}" if k.endswith(("_vs_replay", "_per_diff")) else f"  {k:<26} {v:>14,.0f}")
    for venue, rates in res["other_venues_parse_msgs_per_s"].items():
        print(f"{venue} parse_frame vs json.loads of the same frames (msgs/s, medians):")
        for k, v in rates.items():
            print(_vs_line(k, v))


if __name__ == "__main__":
    main()
