"""The lookahead detector replays the backtest's batches: 1m, 5m and 1h bar files cut and mixed alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from research_helpers import REPO
from research_leaky import CrossBatchEndReader

from tradebus.data.replay import MixedBatch, Replay, ReplayBatch, ReplaySource
from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel
from tradebus.errors import DataError
from tradebus.research.lookahead import MemoryReplay, SourceFrame, detect_lookahead, kernel_trace, read_sources

FIXTURES = REPO / "tests" / "fixtures"
MINUTE = 60_000_000_000
ADA = Instrument(venue="BINANCE", symbol="ADABTC", tick_size=1e-8, lot_size=0.1)
XRP = Instrument(venue="BINANCE", symbol="XRPUSDT", tick_size=1e-4, lot_size=0.1)
MARK = Instrument(venue="MARK", symbol="XRPUSDT", tick_size=1e-5, lot_size=0.1)
#: Small enough that the merge cuts by quota (64 // 3 rows a source) and by horizon many times.
BATCH_ROWS = 64


def bar_files(tmp: Path) -> list[ReplaySource]:
    """1m ADABTC (its two Binance Vision days, moved to 2021-11-15 08:00 so they overlap the others), 5m XRPUSDT
    and 1h XRPUSDT mark bars (no volume: 0), written as CSVs of bars stamped at their open."""
    names = ["ts_event", "open", "high", "low", "close", "volume"]
    ada = pd.concat([pd.read_csv(FIXTURES / "data" / f"ADABTC-1m-2021-11-{d}_head120.csv", header=None).iloc[:, :6]
                     for d in (27, 28)], ignore_index=True)
    ada.columns = names
    ada = ada.iloc[:120]  # the first day: 120 consecutive minutes
    ada["ts_event"] = ada["ts_event"] - int(ada["ts_event"].iloc[0]) + int(pd.Timestamp("2021-11-15 08:00Z").value // 1_000_000)
    five = pd.read_parquet(FIXTURES / "perpetual" / "XRP_USDT_USDT-5m-futures.parquet")
    hour = pd.read_feather(FIXTURES / "perpetual" / "XRP_USDT_USDT-1h-mark.feather").assign(volume=0.0)
    out = []
    for frame, inst, interval in ((ada, ADA, "1m"), (five, XRP, "5m"), (hour, MARK, "1h")):
        if "date" in frame:
            frame = frame.assign(ts_event=frame["date"].astype("int64") // 1_000_000)[names]
        path = tmp / f"{inst.symbol}_{inst.venue}_{interval}.csv"
        frame.to_csv(path, index=False)
        out.append(ReplaySource.from_file(path, inst.instrument_id, "bars", interval=interval, bar_time="open"))
    return out


def layout(batches: list[ReplayBatch | MixedBatch]) -> list[tuple[str, tuple[str, ...], list[tuple[int, int]]]]:
    """Each batch as its class, its instruments and its rows as ``(source, row of that source)`` in order."""
    seen = [0, 0, 0]
    out = []
    for batch in batches:
        if isinstance(batch, MixedBatch):
            ids, which = batch.instrument_ids, batch.source.tolist()
        else:
            ids, which = (batch.instrument_id,), [batch.source] * len(batch)
        rows = []
        for s in which:
            rows.append((s, seen[s]))
            seen[s] += 1
        out.append((type(batch).__name__, ids, rows))
    return out


def test_the_detectors_replay_yields_the_backtests_batches_of_three_bar_intervals(tmp_path: Path) -> None:
    """MemoryReplay cut every batch_rows rows of the merged stream, the backtest's Replay by horizon and quota with
    a plain batch for a single-source step: the batches ended at other rows."""
    replay = Replay(bar_files(tmp_path), batch_rows=BATCH_ROWS)
    backtest = list(replay.mixed_batches())
    memory = list(MemoryReplay(read_sources(replay), BATCH_ROWS).mixed_batches())
    want = layout(backtest)
    assert {kind for kind, _, _ in want} == {"MixedBatch", "ReplayBatch"}
    assert len({len(rows) for _, _, rows in want}) > 5  # cut by horizon, not every BATCH_ROWS rows
    assert layout(memory) == want
    for a, b in zip(backtest, memory, strict=True):
        for name in ("ts_event", "ts_init", "open", "high", "low", "close", "volume"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def ta_ema(close: np.ndarray, span: int) -> np.ndarray:
    """TA-Lib's EMA: NaN for the first ``span - 1`` values, then the mean of the first ``span``, then the recursion."""
    out = np.full(len(close), np.nan)
    alpha = 2.0 / (span + 1)
    out[span - 1] = close[:span].mean()
    for k in range(span, len(close)):
        out[k] = alpha * close[k] + (1 - alpha) * out[k - 1]
    return out


def make_kernel() -> Kernel:
    kernel = Kernel([ADA, XRP, MARK])
    kernel.add_strategy(CrossBatchEndReader([XRP.instrument_id, ADA.instrument_id]))
    return kernel


def leaky_rows(tmp: Path) -> tuple[list[tuple[int, float]], set[int]]:
    """The reader's outputs in the backtest, and the ``ts_init`` of the 5m bars where it read ADABTC's EMA of a later
    1m bar than the last one received (ADABTC is listed first: its bar at the same time comes before)."""
    kernel = make_kernel()
    replay = Replay(bar_files(tmp), batch_rows=BATCH_ROWS)
    kernel.run(replay)
    outputs = list(kernel.strategies[0].outputs)
    ada = next(s for s in read_sources(replay) if s.instrument_id == ADA.instrument_id).frame
    ema, ts = ta_ema(ada["close"].to_numpy(), 10), ada["ts_init"].to_numpy()
    five = next(s for s in read_sources(replay) if s.instrument_id == XRP.instrument_id).frame
    at = dict(zip(five["ts_event"].tolist(), five["ts_init"].tolist(), strict=True))
    leaks = set()
    for ts_event, value in outputs:
        k = int(np.searchsorted(ts, at[ts_event], "right")) - 1
        causal = ema[k] if k >= 0 else np.nan
        if not np.isclose(value, causal, rtol=1e-12, atol=0.0, equal_nan=True):  # the kernel's sum order: 1 ulp off
            leaks.add(at[ts_event])
    return outputs, leaks


def test_a_batch_end_leak_shows_at_the_backtests_rows(tmp_path: Path) -> None:
    """The detector's replay ended batches elsewhere than the backtest: CrossBatchEndReader read ADABTC's EMA of a
    later minute at other 5m bars than in the backtest (or none), and the cuts at the backtest's leaks missed."""
    outputs, leaks = leaky_rows(tmp_path)
    assert 5 <= len(leaks) < len(outputs)
    sources = read_sources(Replay(bar_files(tmp_path), batch_rows=BATCH_ROWS))
    kernel = make_kernel()
    kernel.run(MemoryReplay(sources, BATCH_ROWS))
    np.testing.assert_array_equal(np.array(kernel.strategies[0].outputs), np.array(outputs))
    cuts = sorted(leaks)[:: max(len(leaks) // 5, 1)]
    report = detect_lookahead(sources, lambda s: kernel_trace(make_kernel, s, BATCH_ROWS), cuts=cuts)
    for cut in cuts:
        found = [v for v in report.violations if v["cut"] == cut]
        assert found, f"no violation at the backtest's leak {cut}"
        assert found[0]["ts"] in leaks and found[0]["ts"] <= cut, found[0]
    assert {v["key"] for v in report.violations if v["kind"] == "output"} == {"CrossBatchEndReader"}


@pytest.mark.parametrize("chunks", [(3, 4), (7,)])
def test_memory_chunks_that_do_not_add_up_to_the_rows_are_refused(chunks: tuple[int, ...], tmp_path: Path) -> None:
    sources = read_sources(Replay(bar_files(tmp_path)[:1], batch_rows=BATCH_ROWS))
    frame = sources[0].frame.iloc[:8]
    bad = SourceFrame(ADA.instrument_id, "bars", frame, chunks)
    with pytest.raises(DataError, match="rows in all, the source has 8"):
        list(MemoryReplay([bad], BATCH_ROWS).batches())
