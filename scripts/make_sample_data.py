"""Rebuild the shipped sample catalog (data/catalog) from the Coinbase BTC-USD 4h candles.

Usage::

    python scripts/make_sample_data.py Coinbase-BTC-USD-PT4H-20160518_20251028.json.gz \
        [--catalog data/catalog] [--drop-duplicates]

The source is the ta4j example file (MIT, ta4j/ta4j,
ta4j-examples/src/main/resources/Coinbase-BTC-USD-PT4H-20160518_20251028.json @ bebb758e53da),
Coinbase candles JSON with ``start`` = bar open time in Unix seconds. The output is
``coinbase/spot/BTC-USD/bars_4h`` with yearly partitions; ``ts_event`` is the bar
close time (``start + 4h``).

Data policy (nothing is changed silently):

* Duplicate bar times stop the build with the file/row of the first duplicate,
  unless ``--drop-duplicates`` is given: then the first bar of each time is kept
  and every dropped row is logged with its values and noted in the manifest.
* Any other invalid row (bad price, high < low, ...) stops the build.
* Gaps (missing 4h bars) are kept as they are; each is logged and their number
  is recorded in the manifest (``gaps``, ``missing_bars``) and notes.
* The quality checks of every import run on the rows; their summary is kept in the
  manifest (``quality``, the status ``data info`` shows).

Deterministic: the same source gives byte-identical files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from loguru import logger

from tradebus.data.catalog import Catalog
from tradebus.data.ingest import parse_interval, read_bars
from tradebus.data.quality import QualityCheck
from tradebus.errors import DataError

VENUE, MARKET, SYMBOL, DATASET = "coinbase", "spot", "BTC-USD", "bars_4h"
INTERVAL = "4h"
ORIGIN = (
    "source: Coinbase BTC-USD 4h candles, ta4j/ta4j "
    "ta4j-examples/src/main/resources/Coinbase-BTC-USD-PT4H-20160518_20251028.json @ bebb758e53da (MIT)"
)


def _iso(ns: int) -> str:
    return pd.Timestamp(ns, unit="ns", tz="UTC").strftime("%Y-%m-%dT%H:%MZ")


def build(source: Path, catalog_root: Path, *, drop_duplicates: bool) -> int:
    """Import ``source`` into ``catalog_root``; return the number of bars written."""
    dropped: list[str] = []
    sink = logger.add(lambda m: dropped.append(m.record["message"]), level="WARNING", filter="tradebus.data.ingest")
    try:
        table = read_bars(source, interval=INTERVAL, duplicates="keep_first" if drop_duplicates else "error")
    finally:
        logger.remove(sink)
    interval_ns = parse_interval(INTERVAL)
    ts = table.column("ts_event").to_numpy()
    steps = np.diff(ts)
    gap_at = np.flatnonzero(steps > interval_ns)
    missing = 0
    for i in gap_at.tolist():
        n = int(steps[i] // interval_ns) - 1
        missing += n
        logger.info("gap: no bar closing between {} and {} ({} missing 4h bars)", _iso(int(ts[i])), _iso(int(ts[i + 1])), n)
    notes = [
        ORIGIN,
        "ts_event = candle start + 4h (bar close time); ts_init = ts_event",
        f"{len(dropped)} duplicate rows dropped (first kept)" if drop_duplicates else "duplicates: none (build fails on any)",
        f"{gap_at.size} gaps, {missing} missing bars, kept as gaps (no filling)",
    ]
    check = QualityCheck("bars", interval_ns)
    check.feed(table)
    manifest = Catalog(catalog_root).write(
        table, VENUE, MARKET, SYMBOL, DATASET, "year", kind="bars", interval_ns=interval_ns, mode="overwrite", notes=notes,
        quality=check.report().summary(),
    )
    logger.info(
        "wrote {} bars {} -> {} in {} files, {} gaps ({} missing bars), {} duplicates dropped",
        manifest.rows, _iso(manifest.start_ns), _iso(manifest.end_ns), len(manifest.files),
        manifest.gaps, manifest.missing_bars, len(dropped),
    )
    return manifest.rows


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="Coinbase candles JSON(.gz)")
    parser.add_argument("--catalog", type=Path, default=Path(__file__).resolve().parents[1] / "data" / "catalog")
    parser.add_argument(
        "--drop-duplicates", action="store_true", help="keep the first bar of a repeated time, log every dropped row"
    )
    args = parser.parse_args(argv)
    try:
        build(args.source, args.catalog, drop_duplicates=args.drop_duplicates)
    except DataError as exc:
        logger.error("{}", exc)
        if "duplicate" in str(exc):
            logger.error("re-run with --drop-duplicates to keep the first bar of each time (every drop is logged)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
