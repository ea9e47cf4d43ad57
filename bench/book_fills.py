"""L2-book fills: replay speed with a resting-order strategy against the same replay without orders.

The real Binance USD-M BTCUSDT capture in ``tests/fixtures/binance/usdm_btcusdt_20240718.gz``
(3 minutes: REST snapshot, every ``depth@0ms`` diff, trades) is imported into a scratch
catalog (book + trades datasets) and replayed through the kernel with ``fill_on: book``:

* **orders**: :class:`~tradebus.strategies.touch_quoter.TouchQuoter` re-quoting both sides
  at the touch every ``--interval-ms`` (cancel + two post-only limits each time), risk-averse
  queue, 10 ms entry and ack latency;
* **reference**: the same replay and strategy with quoting switched off (its timer still runs,
  the kernel still keeps the replayed book), so the difference is what orders, queues and fills cost.

Target: orders cost at most 2x (reference events/s / orders events/s <= 2). Events are
replay rows (book levels + trades). Alongside, **hftbacktest** (dev dependency) runs the
same strategy on the same rows (``tests/execution/hbt_reference.py``; its numba
compilation is done before the timed runs), reported side by side (not a target).

Usage::

    python bench/book_fills.py [--runs 5] [--interval-ms 100] [--no-hftbacktest] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time

from loguru import logger

from checkout import use_this_checkout

ROOT = use_this_checkout()

from tests.live.node_testdata import USDM_IID, USDM_INSTRUMENT, config_of, usdm_config  # noqa: E402
from tradebus.data.catalog import Catalog  # noqa: E402
from tradebus.node.recording_import import import_recording  # noqa: E402
from tradebus.data.replay import Replay, ReplaySource  # noqa: E402
from tradebus.engine.instrument import Instrument  # noqa: E402
from tradebus.engine.kernel import Kernel  # noqa: E402
from tradebus.engine.messages import TimeEvent  # noqa: E402
from tradebus.execution.config import BookFillConfig, VenueConfig  # noqa: E402
from tradebus.strategies.touch_quoter import TouchQuoter  # noqa: E402

CAPTURE = ROOT / "tests" / "fixtures" / "binance" / "usdm_btcusdt_20240718.gz"
VENUE = ("binance_usdm", "usdm", "BTCUSDT")
LATENCY_NS = 10_000_000


class _Silent(TouchQuoter):
    """TouchQuoter that keeps its timer but never quotes (the no-orders reference)."""

    def on_quote_timer(self, event: TimeEvent) -> None:
        return


def _kernel_run(cat: Catalog, interval_ns: int, orders: bool) -> tuple[float, int, int]:
    venue = VenueConfig(
        fill_on="book", book=BookFillConfig(entry_latency_ns=LATENCY_NS, ack_latency_ns=LATENCY_NS)
    )
    kernel = Kernel([Instrument(**USDM_INSTRUMENT)], venue_config=venue)
    cls = TouchQuoter if orders else _Silent
    kernel.add_strategy(cls(USDM_IID, interval_ns=interval_ns, quantity=0.001, max_position=0.005))
    replay = Replay([ReplaySource.from_catalog(cat, USDM_IID, *VENUE, name) for name in ("book", "trades")])
    rows = 0

    def count(n: int) -> None:
        nonlocal rows
        rows += n

    t0 = time.perf_counter()
    result = kernel.run(replay, on_batch=count)
    return time.perf_counter() - t0, rows, len(result.fills)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--interval-ms", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-hftbacktest", action="store_true", help="Skip the hftbacktest side (it compiles for minutes).")
    args = parser.parse_args()
    logger.remove()
    interval_ns = args.interval_ms * 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        cfg = usdm_config(None, None, depth_speed="0ms")
        cfg["feeds"][0]["subscriptions"] = {USDM_IID: ["trade", "depth"]}
        import_recording(CAPTURE, config_of(cfg), tmp)
        cat = Catalog(tmp)
        ref_t, orders_t = [], []
        rows = fills = 0
        for _ in range(args.runs):
            t, rows, _ = _kernel_run(cat, interval_ns, orders=False)
            ref_t.append(t)
            t, rows, fills = _kernel_run(cat, interval_ns, orders=True)
            orders_t.append(t)
        hbt = None if args.no_hftbacktest else _hftbacktest(cat, interval_ns, args.runs)
    ref, with_orders = statistics.median(ref_t), statistics.median(orders_t)
    out = {
        "rows": rows,
        "fills": fills,
        "reference_no_orders": {"median_s": ref, "events_per_s": rows / ref},
        "orders": {"median_s": with_orders, "events_per_s": rows / with_orders},
        "ratio_orders_over_reference": with_orders / ref,
        "target_ratio_max": 2.0,
        "hftbacktest": hbt,
    }
    if args.json:
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return
    sys.stdout.write(
        f"replay rows {rows:,}; fills {fills}\n"
        f"no orders (reference): {rows / ref:,.0f} events/s (median {ref:.3f} s)\n"
        f"resting orders:        {rows / with_orders:,.0f} events/s (median {with_orders:.3f} s)\n"
        f"ratio {with_orders / ref:.2f}x (target <= 2x)\n"
    )
    if hbt is not None:
        sys.stdout.write(
            f"hftbacktest, same strategy and rows: {hbt['events_per_s']:,.0f} events/s "
            f"(median {hbt['median_s']:.3f} s, {hbt['fills']} fills)\n"
        )


def _hftbacktest(cat: Catalog, interval_ns: int, runs: int) -> dict[str, float] | None:
    try:
        import numpy as np

        from tests.execution.hbt_reference import make_backtest, to_events, touch_quoter
    except ImportError:
        return None
    events = to_events(cat.read(*VENUE, "book"), cat.read(*VENUE, "trades"))
    first = int(events["local_ts"][0])
    elapsed: list[float] = []
    n = 0
    for k in range(runs + 1):
        hbt = make_backtest(events, "risk_averse", LATENCY_NS, LATENCY_NS, 0.1, 0.001)
        times, out = np.zeros(100_000, np.int64), np.zeros((100_000, 3))
        t0 = time.perf_counter()
        stop = np.zeros(2, np.int64)
        n = touch_quoter(hbt, first, interval_ns, 0.001, 0.005, times, out, stop)
        if stop[0] != 1:
            raise RuntimeError(f"hftbacktest stopped with code {int(stop[0])} at {int(stop[1])}, not at the end of the data")
        if k:  # the first call compiles
            elapsed.append(time.perf_counter() - t0)
    med = statistics.median(elapsed)
    return {"median_s": med, "events_per_s": len(events) / med, "events": len(events), "fills": n}


if __name__ == "__main__":
    main()
