"""A finished run read back from its directory: the input of the tearsheet, the comparison and the summary.

Reads the files :func:`tradebus.reports.writers.write_run` writes. A directory written
before ``trades.csv`` and ``prices.csv`` existed still loads: its trades are matched
from ``fills.csv`` again and its prices are those of its fills.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from tradebus.engine.kernel import FillRecord
from tradebus.errors import ConfigError
from tradebus.reports.formatting import quote_decimals
from tradebus.reports.trades import TRADE_COLUMNS, match_trades

__all__ = ["RunData", "buy_and_hold", "load_run"]

_NS = "ns"


@dataclass(slots=True)
class RunData:
    """The outputs of one run, as pandas frames (times as UTC ``Timestamp``)."""

    path: Path
    metrics: dict[str, Any]
    equity: pd.DataFrame
    fills: pd.DataFrame
    trades: pd.DataFrame
    prices: pd.DataFrame
    config: dict[str, Any] = field(default_factory=dict)
    stress: list[dict[str, Any]] | None = None

    @property
    def decimals(self) -> int:
        """Decimals of the reporting (first instrument's quote) currency (see :func:`tradebus.reports.formatting.quote_decimals`)."""
        instruments = [i for i in self.config.get("instruments", []) or [] if isinstance(i, dict)]
        return quote_decimals(str(instruments[0].get("quote") or "") if instruments else None)

    @property
    def instruments(self) -> list[str]:
        """The run's instruments (from ``metrics.json``, else those of its fills and prices)."""
        listed = self.metrics.get("instruments")
        if listed:
            return [str(i) for i in listed]
        return sorted(set(self.fills["instrument"]) | set(self.prices["instrument"]))


def _read_csv(path: Path, required: bool = True) -> pd.DataFrame | None:
    if not path.is_file():
        if required:
            raise ConfigError(f"{path.parent}: not a run directory (no {path.name})")
        return None
    try:
        return pd.read_csv(path, keep_default_na=False, na_values=[""])
    except (ValueError, pd.errors.ParserError) as exc:
        raise ConfigError(f"{path}: not a readable CSV file ({exc})") from None


def _times(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    for column in columns:
        frame[column.replace("ts", "dt") if column != "ts" else "dt"] = pd.to_datetime(
            frame[column].astype("int64"), unit=_NS, utc=True
        )
    return frame


def _stress(path: Path) -> list[dict[str, Any]] | None:
    if not path.is_file():
        return None
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    keys = {"variant": str, "total_return": float, "sharpe": float, "max_drawdown": float, "fills": int}
    if not isinstance(rows, list):
        raise ConfigError(f"{path}: expected a list of stress variants")
    for n, row in enumerate(rows):
        if not isinstance(row, dict) or not set(keys) <= set(row):
            raise ConfigError(f"{path}: item {n} needs the keys {', '.join(keys)}")
        for key, kind in keys.items():
            value = row[key]
            number = kind is float and isinstance(value, int)
            ok = (value is None and key == "sharpe") or isinstance(value, kind) or number
            if not ok or isinstance(value, bool):
                raise ConfigError(f"{path}: item {n}: {key} must be a {kind.__name__}, not {value!r}")
        if not isinstance(row.get("note", ""), str):
            raise ConfigError(f"{path}: item {n}: note must be a str, not {row['note']!r}")
    return rows


def load_run(path: str | Path) -> RunData:
    """Read the run directory ``path`` (and its ``stress.json``, if any: a list of ``{variant, total_return,
    sharpe, max_drawdown, fills}``, ``sharpe`` may be null).

    Raises
    ------
    ConfigError
        ``path`` is not a run directory (no ``metrics.json``, ``equity.csv`` or ``fills.csv``),
        or one of its files cannot be read; the message names the file.
    """
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"{path}: no such run directory")
    metrics_path = path / "metrics.json"
    if not metrics_path.is_file():
        raise ConfigError(f"{path}: not a run directory (no metrics.json)")
    try:
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConfigError(f"{metrics_path}: not valid JSON ({exc})") from None
    equity = _times(_read_csv(path / "equity.csv"), "ts")  # type: ignore[arg-type]
    fills = _times(_read_csv(path / "fills.csv"), "ts_event")  # type: ignore[arg-type]
    fills["reason"] = fills["reason"].fillna("").astype(str)
    config: dict[str, Any] = {}
    config_path = path / "config.yaml"
    if config_path.is_file():
        try:
            loaded = yaml.safe_load(config_path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{config_path}: not valid YAML ({exc})") from None
        config = loaded if isinstance(loaded, dict) else {}
    trades = _read_csv(path / "trades.csv", required=False)
    if trades is None:
        records = [
            FillRecord(int(r.ts_event), str(r.instrument), str(r.side), float(r.quantity), float(r.price),
                       float(r.fee), str(r.liquidity), str(r.client_order_id), str(r.strategy_id), str(r.trade_id),
                       str(r.reason))
            for r in fills.itertuples()
        ]
        trades = pd.DataFrame(
            [(t.instrument_id, t.side, t.quantity, t.entry_ns, "", t.entry_price, t.exit_ns, "", t.exit_price,
              t.pnl, t.fees, t.net_pnl, t.holding_s, t.entry_reason, t.exit_reason)
             for t in match_trades(records, contract_sizes=_contract_sizes(config))],
            columns=list(TRADE_COLUMNS),
        )
    trades = _times(trades, "entry_ts", "exit_ts")
    for column in ("entry_reason", "exit_reason"):
        trades[column] = trades[column].fillna("").astype(str)
    prices = _read_csv(path / "prices.csv", required=False)
    if prices is None:
        prices = fills[["ts_event", "instrument", "price"]].rename(columns={"ts_event": "ts"})
    prices = _times(prices, "ts")
    return RunData(path, metrics, equity, fills, trades, prices, config, _stress(path / "stress.json"))


def _contract_sizes(config: dict[str, Any]) -> dict[str, float]:
    """``instrument_id -> contract_size`` of the run config's instruments (1 where it names none)."""
    sizes: dict[str, float] = {}
    for inst in config.get("instruments") or ():
        if isinstance(inst, dict) and "symbol" in inst and "venue" in inst:
            sizes[f"{inst['symbol']}.{inst['venue']}"] = float(inst.get("contract_size", 1.0))
    return sizes


def buy_and_hold(run: RunData) -> tuple[float | None, dict[str, float]]:
    """Return of holding every instrument from its first to its last price (equal weights, no fees).

    Returns the portfolio's return (``None`` without prices) and each instrument's.
    """
    each: dict[str, float] = {}
    for iid, group in run.prices.groupby("instrument", sort=False):
        first, last = float(group["price"].iloc[0]), float(group["price"].iloc[-1])
        if first > 0.0 and math.isfinite(last):
            each[str(iid)] = last / first - 1.0
    total = sum(each.values()) / len(each) if each else None
    return total, each
