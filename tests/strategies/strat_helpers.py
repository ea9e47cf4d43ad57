"""Real bar fixtures as replay frames, and a kernel that runs strategies over them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from tradebus.engine.instrument import Instrument
from tradebus.engine.kernel import Kernel
from tradebus.research.lookahead import MemoryReplay, SourceFrame
from tradebus.strategies.base import Strategy

FIXTURES = Path(__file__).parent.parent / "fixtures"
DAY_NS = 86_400_000_000_000
H4_NS = 4 * 3_600_000_000_000

#: Coinbase BTC-USD 4h candles, 2022-01-01 -> 2022-07-19 (1,200 bars).
BTC_4H = "BTC-USD.COINBASE"
#: Daily 2020 bars of the same coin on two venues (the pairs and momentum fixtures).
BTC_DAY_COINBASE = "BTC-USD.COINBASE"
BTC_DAY_BINANCE = "BTCUSDT.BINANCE"


def instrument(iid: str, **overrides: object) -> Instrument:
    symbol, _, venue = iid.partition(".")
    # Margin at 3x: a strategy sized at its whole equity pays its fee, and a long/short book of
    # twice the equity is allowed (tests/account covers the margin itself).
    values: dict[str, object] = {
        "tick_size": 0.01, "lot_size": 1e-5, "taker_fee": 0.001, "maker_fee": 0.0005, "margin": True, "leverage": 3.0,
    }
    values.update(overrides)
    return Instrument(venue, symbol, **values)  # type: ignore[arg-type]


def _frame(df: pd.DataFrame, close_ns: pd.Series) -> pd.DataFrame:
    out = pd.DataFrame({"ts_event": close_ns.astype("int64"), "ts_init": close_ns.astype("int64")})
    for col in ("open", "high", "low", "close", "volume"):
        out[col] = df[col].astype(float).to_numpy()
    return out.reset_index(drop=True)


def bars_4h() -> pd.DataFrame:
    """The 1,200 Coinbase 4h bars, stamped at their close."""
    df = pd.read_csv(FIXTURES / "kernel" / "coinbase_btc_usd_4h_2022_1200.csv")
    return _frame(df, df["ts"] * 1_000_000 + H4_NS)


def bars_day(venue: str) -> pd.DataFrame:
    """Daily 2020 bars of ``"coinbase"`` or ``"binance"``, stamped at their close."""
    name = {"coinbase": "coinbase_btc_usd_day_2020.csv", "binance": "binance_btcusdt_day_2020.csv"}[venue]
    df = pd.read_csv(FIXTURES / "strategies" / name)
    start = pd.Series(pd.to_datetime(df["datetime"]).to_numpy().astype("datetime64[ns]").astype("int64"))
    return _frame(df, start + DAY_NS)


def run(
    strategies: Sequence[Strategy],
    frames: Mapping[str, pd.DataFrame],
    *,
    cash: float = 1_000_000.0,
    batch_rows: int = 65_536,
    instrument_args: Mapping[str, object] | None = None,
    **kernel_args: object,
) -> Kernel:
    """Run ``strategies`` over ``frames`` (``instrument_id -> bar frame``) in one backtest kernel.

    ``instrument_args`` override the fields of every :func:`instrument`.
    """
    instruments = [instrument(iid, **(instrument_args or {})) for iid in frames]
    kernel = Kernel(instruments, initial_cash=cash, **kernel_args)  # type: ignore[arg-type]
    for strategy in strategies:
        kernel.add_strategy(strategy)
    kernel.run(MemoryReplay([SourceFrame(iid, "bars", frame) for iid, frame in frames.items()], batch_rows))
    return kernel
