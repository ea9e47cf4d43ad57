"""Run outputs: ``fills.csv``, ``orders.csv``, ``equity.csv``, ``metrics.json``, ``config.yaml``.

Outputs are deterministic: the same run gives byte-identical files. Floats are
written with ``repr`` (the shortest text that reads back to the same float),
NaN as an empty field, timestamps as int ns plus their ISO-8601 UTC text, and
nothing depends on the wall clock.

A run directory is written atomically with :class:`RunDirectory`: everything
goes to ``DIR.tmp-<pid>``, which replaces ``DIR`` only once complete, and is
removed if the run fails, so a directory named ``DIR`` is always a complete run.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from tradebus.engine.kernel import RunResult
from tradebus.reports.metrics import format_ns

__all__ = ["EQUITY_COLUMNS", "FILL_COLUMNS", "ORDER_COLUMNS", "RunDirectory", "write_run"]

FILL_COLUMNS = (
    "ts_event",
    "time",
    "instrument",
    "side",
    "quantity",
    "price",
    "fee",
    "liquidity",
    "client_order_id",
    "strategy_id",
    "trade_id",
    "reason",
)
ORDER_COLUMNS = (
    "client_order_id",
    "strategy_id",
    "instrument",
    "side",
    "type",
    "quantity",
    "price",
    "trigger_price",
    "time_in_force",
    "post_only",
    "reduce_only",
    "status",
    "filled_qty",
    "avg_px",
    "fee_paid",
    "ts_created",
    "ts_last",
    "submit_reason",
    "status_reason",
)
EQUITY_COLUMNS = (
    "ts",
    "time",
    "equity",
    "cash",
    "position_value",
    "realized_pnl",
    "unrealized_pnl",
    "fees_paid",
    "drawdown",
)


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


def _write_csv(path: Path, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(v) for v in row])


def _json_ready(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    return value


def write_run(out_dir: Path, result: RunResult, metrics: dict[str, Any], config_yaml: str) -> None:
    """Write the five run files into an existing directory ``out_dir``."""
    _write_csv(
        out_dir / "fills.csv",
        FILL_COLUMNS,
        (
            (
                f.ts_event,
                format_ns(f.ts_event),
                f.instrument_id,
                f.side,
                f.quantity,
                f.price,
                f.fee,
                f.liquidity.lower(),
                f.client_order_id,
                f.strategy_id,
                f.trade_id,
                f.reason,
            )
            for f in result.fills
        ),
    )
    known_ids = {o.client_order_id for o in result.orders}
    _write_csv(
        out_dir / "orders.csv",
        ORDER_COLUMNS,
        [
            (
                o.client_order_id,
                o.strategy_id,
                o.instrument_id,
                o.side.name,
                str(o.order_type),
                o.quantity,
                o.price,
                o.trigger_price,
                str(o.tif),
                o.post_only,
                o.reduce_only,
                str(o.status),
                o.filled_qty,
                o.avg_px,
                o.fee_paid,
                o.ts_created,
                o.ts_last,
                result.submit_reasons.get(o.client_order_id, ""),
                o.reason,
            )
            for o in result.orders
        ]
        + [
            (d.client_order_id, d.strategy_id, d.instrument_id, "", "", "", "", "", "", "", "", "DENIED",
             "", "", "", d.ts_event, d.ts_event, result.submit_reasons.get(d.client_order_id, ""), d.reason)
            for d in result.denials
            if d.client_order_id not in known_ids
        ],
    )
    peak = result.initial_cash

    def equity_rows() -> Iterable[Sequence[Any]]:
        nonlocal peak
        for s in result.equity:
            peak = max(peak, s.equity)
            drawdown = 1.0 - s.equity / peak if peak > 0.0 else 0.0
            yield (
                s.ts,
                format_ns(s.ts),
                s.equity,
                s.cash,
                s.position_value,
                s.realized_pnl,
                s.unrealized_pnl,
                s.fees_paid,
                drawdown,
            )

    _write_csv(out_dir / "equity.csv", EQUITY_COLUMNS, equity_rows())
    (out_dir / "metrics.json").write_text(
        json.dumps(_json_ready(metrics), indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )
    (out_dir / "config.yaml").write_text(config_yaml, encoding="utf-8")


class RunDirectory:
    """Write a run into ``DIR.tmp-<pid>`` and move it to ``DIR`` only on success.

    Use as a context manager; :attr:`path` is the temporary directory to write
    into. On a clean exit an existing ``DIR`` is replaced; on an exception the
    temporary directory is removed and ``DIR`` is left untouched.
    """

    def __init__(self, final: str | os.PathLike[str]) -> None:
        self.final = Path(final)
        self.path = self.final.with_name(f"{self.final.name}.tmp-{os.getpid()}")

    def __enter__(self) -> RunDirectory:
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        old = self.final.with_name(f"{self.final.name}.old-{os.getpid()}")
        if self.final.exists():
            self.final.rename(old)
        self.path.rename(self.final)
        if old.exists():
            shutil.rmtree(old)
