"""Data import: peak memory against file size, and throughput against pyarrow's CSV reader.

Memory (issue 14.7): a Parquet file of ``--small`` and one of ``--large`` trades
(deterministic random walk, the columns of the Binance trades Parquet fixture) are
each imported by ``tradebus.data.ingest.import_path`` in a fresh subprocess, whose
peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is reported. Target: the
large import within 1.2x the peak RSS of the small one (the reference).

Throughput (issue 14.8): one month of 1-minute klines (43,200 rows) and
``--agg-rows`` aggTrades, as the headerless CSV files Binance publishes, are
imported into a fresh catalog; the reference is reading the same CSV with
``pyarrow.csv.read_csv`` alone (type inference, all threads), timed in the same
run, the runs of the two alternated. Reported: the median of ``--runs`` runs of each,
rows/s, and the ratio read / import (target >= 0.5: validation and catalog writing
cost at most as much as the read); also the CPU seconds of every thread of each
(``time.process_time``), whose ratio moves less with the load of a shared machine.

Bars from trades (issue 14.8): ``--bar-trades`` trades into 1-second time bars with
:class:`tradebus.features.bars.BarBuilder.run` against a hand-written numba loop that
builds the same OHLCV bars (the reference, same run). Targets: >= 10M trades/s, and at
most 1.5x the reference's time.

Usage::

    python bench/data.py [--small 1000000] [--large 10000000] [--agg-rows 2000000] [--bar-trades 10000000]
                         [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from loguru import logger

from numba import njit

from checkout import use_this_checkout

use_this_checkout()

from tradebus.data.ingest import import_path  # noqa: E402
from tradebus.features.bars import BarBuilder  # noqa: E402

START_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
SEED = 20240101
_CHILD = """
import resource, sys
from loguru import logger
logger.remove()
from numba import njit

from tradebus.data.ingest import import_path
from tradebus.features.bars import BarBuilder
import_path(sys.argv[1], sys.argv[2], venue="bench", market="spot", symbol="BTCUSDT", kind="trades")
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _walk(n: int, rng: np.random.Generator, start: float) -> np.ndarray:
    return np.round(start * np.exp(np.cumsum(rng.normal(0.0, 2e-4, n))), 2)


def write_trades_parquet(path: Path, n: int, chunk: int = 1_000_000) -> None:
    """``n`` trades in the Binance trades Parquet layout, written chunk by chunk."""
    rng = np.random.default_rng(SEED)
    schema = pa.schema([("id", pa.int64()), ("price", pa.float64()), ("qty", pa.float64()),
                        ("time", pa.int64()), ("is_buyer_maker", pa.bool_())])
    price, t = 40_000.0, START_MS
    with pq.ParquetWriter(path, schema) as writer:
        for lo in range(0, n, chunk):
            m = min(chunk, n - lo)
            prices = _walk(m, rng, price)
            times = t + np.cumsum(rng.integers(0, 40, m))
            price, t = float(prices[-1]), int(times[-1])
            writer.write_table(pa.table({
                "id": np.arange(lo, lo + m, dtype=np.int64) + 1_000_000_000,
                "price": prices,
                "qty": np.round(rng.exponential(0.05, m) + 1e-5, 5),
                "time": times,
                "is_buyer_maker": rng.random(m) < 0.5,
            }, schema=schema))


def write_klines_csv(path: Path, n: int) -> None:
    """``n`` one-minute klines in the headerless Binance Vision layout (12 columns)."""
    rng = np.random.default_rng(SEED)
    close = _walk(n, rng, 40_000.0)
    open_ = np.concatenate(([close[0]], close[:-1]))
    spread = np.abs(rng.normal(0, 5.0, n))
    high, low = np.maximum(open_, close) + spread, np.minimum(open_, close) - spread
    open_time = START_MS + np.arange(n, dtype=np.int64) * 60_000
    volume = np.round(rng.exponential(10.0, n), 5)
    table = pa.table({
        "open_time": open_time, "open": open_, "high": np.round(high, 2), "low": np.round(low, 2), "close": close,
        "volume": volume, "close_time": open_time + 59_999, "quote": np.round(volume * close, 4),
        "count": rng.integers(1, 500, n), "taker_base": np.round(volume / 2, 5),
        "taker_quote": np.round(volume * close / 2, 4), "ignore": np.zeros(n, dtype=np.int64),
    })
    pacsv.write_csv(table, path, write_options=pacsv.WriteOptions(include_header=False))


def write_aggtrades_csv(path: Path, n: int) -> None:
    """``n`` aggTrades in the headerless Binance Vision layout (8 columns)."""
    rng = np.random.default_rng(SEED)
    first = np.arange(n, dtype=np.int64) * 2 + 5_000_000
    table = pa.table({
        "agg_id": np.arange(n, dtype=np.int64) + 1_000_000, "price": _walk(n, rng, 40_000.0),
        "qty": np.round(rng.exponential(0.05, n) + 1e-5, 5), "first_id": first, "last_id": first + 1,
        "time": START_MS + np.cumsum(rng.integers(0, 40, n)),
        "maker": np.where(rng.random(n) < 0.5, "True", "False"), "best": np.full(n, "True"),
    })
    pacsv.write_csv(table, path, write_options=pacsv.WriteOptions(include_header=False, quoting_style="none"))


@njit(cache=True)
def _reference_time_bars(ts: np.ndarray, price: np.ndarray, size: np.ndarray, side: np.ndarray, interval: int,
                         out: np.ndarray, out_ts: np.ndarray) -> int:
    """The plainest loop building the same time bars (close time, OHLCV, VWAP, count, buy and sell volume)."""
    rows, end = 0, -1
    o = h = low = c = v = q = n = buy = sell = 0.0
    for i in range(ts.size):
        if end >= 0 and ts[i] >= end:
            out_ts[rows] = end
            out[rows, 0], out[rows, 1], out[rows, 2], out[rows, 3], out[rows, 4] = o, h, low, c, v
            out[rows, 5], out[rows, 6], out[rows, 7], out[rows, 8] = q / v, n, buy, sell
            rows += 1
            end = -1
        if end < 0:
            end = (ts[i] // interval + 1) * interval
            o = h = low = price[i]
            v = q = n = buy = sell = 0.0
        h = max(h, price[i])
        low = min(low, price[i])
        c = price[i]
        v += size[i]
        q += price[i] * size[i]
        n += 1.0
        buy += size[i] * (side[i] > 0.0)  # branchless, as the builder: a branch on the side mispredicts
        sell += size[i] * (side[i] < 0.0)
    return rows


def bars_from_trades(n: int, runs: int) -> dict[str, float]:
    rng = np.random.default_rng(SEED)
    ts = (START_MS + np.cumsum(rng.integers(0, 40, n))) * 1_000_000
    price, size = _walk(n, rng, 40_000.0), np.round(rng.exponential(0.05, n) + 1e-5, 5)
    side = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    out, out_ts = np.empty((n, 9)), np.empty(n, dtype=np.int64)
    _reference_time_bars(ts[:10], price[:10], size[:10], side[:10], 1_000_000_000, out, out_ts)  # compile outside the timing
    BarBuilder("time", interval_ns=1_000_000_000).run(ts[:10], price[:10], size[:10], side[:10])
    ours, ref = [], []
    for _ in range(runs):
        start = time.perf_counter()
        bar_ts, bars = BarBuilder("time", interval_ns=1_000_000_000).run(ts, price, size, side)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        rows = _reference_time_bars(ts, price, size, side, 1_000_000_000, out, out_ts)
        ref.append(time.perf_counter() - start)
    assert rows == bar_ts.size and np.array_equal(out_ts[:rows], bar_ts)  # the same bars, every field
    assert np.array_equal(out[:rows], bars)
    ours_s, ref_s = statistics.median(ours), statistics.median(ref)
    return {"trades": n, "bars": int(bar_ts.size), "builder_s": ours_s, "reference_s": ref_s,
            "trades_per_s": n / ours_s, "ratio_to_reference": ours_s / ref_s}


def peak_rss_mb(catalog: Path, source: Path) -> float:
    """Peak RSS in MB of a fresh process that imports ``source`` into ``catalog``."""
    out = subprocess.run([sys.executable, "-c", _CHILD, str(catalog), str(source)],
                         check=True, capture_output=True, text=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024.0


def time_import(work: Path, source: Path, kind: str, interval: str | None) -> tuple[float, float]:
    """Wall and CPU seconds (every thread of the process) of one import into a fresh catalog."""
    catalog = work / "catalog"
    shutil.rmtree(catalog, ignore_errors=True)
    start, cpu = time.perf_counter(), time.process_time()
    import_path(catalog, source, venue="bench", market="spot", symbol="BTCUSDT", kind=kind,  # type: ignore[arg-type]
                interval=interval)
    return time.perf_counter() - start, time.process_time() - cpu


def time_read(source: Path) -> tuple[float, float]:
    """Wall and CPU seconds of reading ``source`` with pyarrow's CSV reader alone."""
    start, cpu = time.perf_counter(), time.process_time()
    pacsv.read_csv(source, read_options=pacsv.ReadOptions(autogenerate_column_names=True))
    return time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=1_000_000, help="rows of the reference import (memory)")
    parser.add_argument("--large", type=int, default=10_000_000, help="rows of the large import (memory)")
    parser.add_argument("--agg-rows", type=int, default=2_000_000, help="aggTrades rows (throughput)")
    parser.add_argument("--bar-trades", type=int, default=10_000_000, help="trades into time bars")
    parser.add_argument("--runs", type=int, default=3, help="runs per throughput figure (median)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args()
    logger.remove()
    figures: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="tradebus-bench-data-") as tmp:
        work = Path(tmp)
        for label, n in (("small", args.small), ("large", args.large)):
            source = work / f"trades_{label}.parquet"
            write_trades_parquet(source, n)
            figures[f"rss_{label}_mb"] = peak_rss_mb(work / f"rss_{label}", source)
            figures[f"rows_{label}"] = n
            figures[f"file_{label}_mb"] = source.stat().st_size / 1e6
            source.unlink()
            shutil.rmtree(work / f"rss_{label}", ignore_errors=True)
        figures["rss_ratio"] = figures["rss_large_mb"] / figures["rss_small_mb"]  # type: ignore[operator]
        for name, rows, writer, kind, interval in (
            ("klines_1m_month", 43_200, write_klines_csv, "bars", "1m"),
            ("aggtrades", args.agg_rows, write_aggtrades_csv, "trades", None),
        ):
            source = work / f"{name}.csv"
            writer(source, rows)
            reads, imports = [], []
            for _ in range(args.runs):  # alternated, so that a burst of load on the machine hits both sides
                reads.append(time_read(source))
                imports.append(time_import(work, source, kind, interval))
            read_s, import_s = (statistics.median(t[0] for t in x) for x in (reads, imports))
            read_cpu, import_cpu = (statistics.median(t[1] for t in x) for x in (reads, imports))
            figures[name] = {
                "rows": rows,
                "csv_mb": source.stat().st_size / 1e6,
                "pyarrow_read_s": read_s,
                "import_s": import_s,
                "import_rows_per_s": rows / import_s,
                "ratio_read_over_import": read_s / import_s,
                "pyarrow_read_cpu_s": read_cpu,
                "import_cpu_s": import_cpu,
                "cpu_ratio_read_over_import": read_cpu / import_cpu,
            }
    figures["bars_from_trades"] = bars_from_trades(args.bar_trades, args.runs)
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"peak RSS, import of {args.small:,} trades (Parquet {figures['file_small_mb']:.0f} MB): "
          f"{figures['rss_small_mb']:,.0f} MB  (reference)")
    print(f"peak RSS, import of {args.large:,} trades (Parquet {figures['file_large_mb']:.0f} MB): "
          f"{figures['rss_large_mb']:,.0f} MB  -> {figures['rss_ratio']:.2f}x the reference (target <= 1.2x)")
    for name in ("klines_1m_month", "aggtrades"):
        f = figures[name]
        assert isinstance(f, dict)
        print(f"{name:16s} {f['rows']:>10,} rows  {f['csv_mb']:6.1f} MB CSV: pyarrow.csv read {f['pyarrow_read_s']:.3f} s, "
              f"import {f['import_s']:.3f} s ({f['import_rows_per_s']:,.0f} rows/s) -> ratio "
              f"{f['ratio_read_over_import']:.2f} (target >= 0.5; medians of {args.runs}); CPU of all threads: read "
              f"{f['pyarrow_read_cpu_s']:.3f} s, import {f['import_cpu_s']:.3f} s -> {f['cpu_ratio_read_over_import']:.2f}")
    b = figures["bars_from_trades"]
    assert isinstance(b, dict)
    print(f"bars from trades {b['trades']:>10,} trades -> {b['bars']:,} 1s bars: builder {b['builder_s']:.3f} s "
          f"({b['trades_per_s'] / 1e6:.1f}M trades/s, target >= 10M), hand-written numba loop {b['reference_s']:.3f} s "
          f"-> ratio {b['ratio_to_reference']:.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()
