"""The sparse lean bar loop against ``process()`` where the rows it skips matter: equity samples (and
their first prices) falling on skipped rows, daily-loss, drawdown, exposure and price-band limits
judged on a skipped row's close, bars received in bursts, latency, a strategy with a timer
(:class:`~tests.engine.test_batch_sparse_bars.Watching`) and NaN closes (which the portfolio does not
mark at: ``process()`` keeps the last good close as the mark)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from tradebus.engine.kernel import Kernel
from tradebus.risk.config import RiskConfig

from tests.engine.test_batch_sparse_bars import count_jumps, watching_kernel
from tests.engine.test_kernel import MIN, T0, bar_table, received_in_bursts
from tests.engine.test_kernel_batches import assert_same, bar_sources, orders_of, rewrite_column, run_both

RISKS = {
    "none": None,
    "daily-halt": RiskConfig(max_daily_loss_pct=0.05, daily_loss_action="halt"),
    "daily-reduce": RiskConfig(max_daily_loss_pct=0.05, daily_loss_action="reduce"),
    "drawdown-halt": RiskConfig(max_drawdown_pct=0.3, drawdown_action="halt"),
    "exposure": RiskConfig(max_gross_exposure=150.0),
    "band": RiskConfig(price_band_pct=0.2),
}


def _plain(value: Any) -> Any:
    """``value`` with every NaN as None (NaN is unequal to itself inside tuples too)."""
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return None if isinstance(value, float) and math.isnan(value) else value


def _with_nans(table: pa.Table, seed: int, first: int = 2_900) -> pa.Table:
    """100 closes of the 400 rows from ``first`` NaN (drawn by ``seed``): the rows outside have none."""
    close = table.column("close").to_numpy().copy()
    rng = np.random.default_rng(seed)
    close[rng.choice(np.arange(first, first + 400), size=100, replace=False)] = np.nan
    return table.set_column(table.schema.get_field_index("close"), "close", pa.array(close))


@pytest.mark.parametrize("risk", list(RISKS))
@pytest.mark.parametrize("data", ["plain", "nans", "bursts"])
@pytest.mark.parametrize("latency_ns", [0, 3 * MIN // 2])
@pytest.mark.parametrize("interval", [7 * MIN, 60 * MIN, 24 * 60 * MIN])
def test_sparse_bars_equal_process(
    tmp_path: Path, risk: str, data: str, latency_ns: int, interval: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = bar_table(6_000, seed=21)
    if data == "bursts":
        table = received_in_bursts(table, 5 * MIN)
    sources = bar_sources(tmp_path / "b", [table])
    if data == "nans":
        rewrite_column(sources[0], _with_nans(table, 5), "close")
    jumps = count_jumps(monkeypatch)
    universe = tuple(src.instrument_id for src in sources)

    def build() -> Kernel:
        return watching_kernel(universe, latency_ns, RISKS[risk], interval)

    fast, slow = run_both(sources, build, batch_rows=700)
    assert_same(fast, slow, min_fills=5)
    assert orders_of(fast) == orders_of(slow)
    assert _plain(tuple(fast.strategies[0].seen)) == _plain(tuple(slow.strategies[0].seen))
    assert fast.risk.snapshot() == slow.risk.snapshot()
    assert fast.result.denials == slow.result.denials
    assert [s.first_prices for s in fast.result.equity] == [s.first_prices for s in slow.result.equity]
    if risk != "exposure":  # (the exposure limit is watched at every row)
        assert sum(jumps) > 0  # the sparse loop ran and skipped


@pytest.mark.parametrize("risk", ["none", "drawdown-halt"])
@pytest.mark.parametrize("layout", ["three-same-times", "three-own-times"])
def test_mixed_bars_with_nan_closes_equal_process(tmp_path: Path, risk: str, layout: str) -> None:
    """Several instruments' lanes: the NaN closes of one leave its mark at its last good close, as in ``process()``."""
    if layout == "three-same-times":
        tables = [bar_table(2_000, seed=21 + k) for k in range(3)]
    else:
        tables = [bar_table(2_000, seed=31), bar_table(2_000, seed=32, start=T0 + MIN // 3), bar_table(1_500, seed=33, start=T0 + 400 * MIN + 7)]
    sources = bar_sources(tmp_path / "b", tables)
    rewrite_column(sources[1], _with_nans(tables[1], 6, first=900), "close")
    universe = tuple(src.instrument_id for src in sources)

    def build() -> Kernel:
        return watching_kernel(universe, risk=RISKS[risk], equity_interval_ns=7 * MIN)

    fast, slow = run_both(sources, build, batch_rows=700)
    assert_same(fast, slow, min_fills=30)
    for sparse, one_by_one in zip(fast.strategies, slow.strategies, strict=True):
        assert _plain(tuple(sparse.seen)) == _plain(tuple(one_by_one.seen))
    assert fast.risk.snapshot() == slow.risk.snapshot()
