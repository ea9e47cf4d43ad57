"""Regime hysteresis: Schmitt thresholds and the confirmation count, by hand and on real 4h bars."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tradebus.errors import ConfigError
from tradebus.strategies.regime import RegimeMachine, schmitt
from tradebus.strategies.regime_hazard import RegimeHazardParams, RegimeHazardSystem

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
BARS_4H = FIXTURES / "kernel" / "coinbase_btc_usd_4h_2022_1200.csv"


def test_schmitt_enters_above_enter_and_stays_down_to_exit() -> None:
    values = [0.2, 0.4, 0.5, 0.35, 0.31, 0.29, 0.4, 0.46]
    active, out = False, []
    for v in values:
        active = schmitt(v, active=active, enter=0.45, exit=0.30)
        out.append(active)
    assert out == [False, False, True, True, True, False, False, True]
    assert schmitt(float("nan"), active=True, enter=0.45, exit=0.30) is False
    with pytest.raises(ConfigError, match="exit"):
        schmitt(0.1, active=False, enter=0.3, exit=0.4)


def test_machine_switches_only_after_confirm_consecutive_proposals() -> None:
    m = RegimeMachine("RANGE", confirm=3)
    seq = ["TREND", "TREND", "RANGE", "TREND", "TREND", "HAZARD", "TREND", "TREND", "TREND", "RANGE"]
    states = [m.update(s) for s in seq]
    assert states == ["RANGE"] * 8 + ["TREND", "TREND"]
    assert m.switches == 1
    with pytest.raises(ConfigError):
        RegimeMachine("RANGE", confirm=0)


def _regimes(params: RegimeHazardParams) -> list[str]:
    bars = pd.read_csv(BARS_4H)
    system = RegimeHazardSystem(params)
    ts = bars["ts"].to_numpy(dtype=np.int64) * 1_000_000
    for t, row in zip(ts, bars[["open", "high", "low", "close", "volume"]].to_numpy(), strict=True):
        system.on_regime_bar(int(t), int(t), row.tolist())
    return [r[2] for r in system.regimes]


def test_hysteresis_cuts_flapping_on_real_4h_bars() -> None:
    """Coinbase BTC-USD 4h, 1,200 bars of 2022: thresholds apart and a 2-bar confirmation flip far less."""
    flat = RegimeHazardParams(trend_enter=0.4, trend_exit=0.4, hazard_enter=1.5, hazard_exit=1.5, confirm=1)
    hyst = RegimeHazardParams(trend_enter=0.4, trend_exit=0.25, hazard_enter=1.5, hazard_exit=1.2, confirm=2)
    a, b = _regimes(flat), _regimes(hyst)
    flips = [sum(x != y for x, y in zip(s[:-1], s[1:], strict=True)) for s in (a, b)]
    assert flips[0] > 100  # a single threshold flaps
    assert flips[1] < flips[0] / 2
    # with confirm=2 a state is left only after two proposals of another: every inner run lasts >= 2 bars
    runs = np.diff(np.flatnonzero(np.r_[True, np.array(b[1:]) != np.array(b[:-1]), True]))
    assert runs[1:-1].min() >= 2 and set(b) == {"TREND", "RANGE", "HAZARD"}
    assert np.diff(np.flatnonzero(np.r_[True, np.array(a[1:]) != np.array(a[:-1]), True]))[1:-1].min() == 1


def test_book_features_of_the_hazard_meter_by_hand() -> None:
    """Multi-level OFI summed per base bar, normalised by depth, and the replenishment gap of the supporting side."""
    s = 1_000_000_000
    system = RegimeHazardSystem(RegimeHazardParams(
        base_interval="1s", entry_interval="1s", regime_interval="2s", book_features=True, book_levels=2,
        replenish_horizon="1s", depletion_window=2, depletion_drop=0.5))
    px_b, px_a = np.array([10.0, 9.0]), np.array([11.0, 12.0])
    system.on_trade(s // 2, 10.5, 1.0, 1)
    system.on_book(s // 2, px_b, np.array([1.0, 1.0]), px_a, np.array([1.0, 1.0]))  # reference state
    system.on_book(s // 2 + 1, px_b, np.array([3.0, 1.0]), px_a, np.array([1.0, 1.0]))  # bid +2: OFI +2
    # both bids improve (+1 each at level 0 and 1), best ask size +1: OFI (1 - 1) + (1 - 0) = +1
    system.on_book(s // 2 + 2, np.array([10.5, 10.0]), np.array([1.0, 1.0]), px_a, np.array([2.0, 1.0]))
    system.on_trade(s + 1, 10.5, 1.0, 1)  # closes the bar [0, 1 s)
    assert list(system._ofi_bars) == [3.0]
    flow = {"kyle_lambda": 0.0, "ofi": 0.0, "vpin": 0.0, "absorption": 0.0, "rv_ratio": 1.0}
    long_row = system._hazard_row(flow, 1, 0.0, 1.0, 0.0)
    assert long_row[-2] == pytest.approx(-3.0 / 5.0) and long_row[-1] == 0.0  # flow for a long is not adverse
    assert system._hazard_row(flow, -1, 0.0, 1.0, 0.0)[-2] == pytest.approx(3.0 / 5.0)
    # bid depths so far 2, 4, 2: median of the last two 3; 0.5 <= 0.5 x 3 is a depletion; 1 s later 1.5:
    # ratio 0.5, a replenishment gap of 0.5 for longs (bids support a long)
    system.on_book(2 * s, px_b, np.array([0.25, 0.25]), px_a, np.array([1.0, 1.0]))
    system.on_book(3 * s, px_b, np.array([1.0, 0.5]), px_a, np.array([1.0, 1.0]))
    system.on_trade(3 * s + 5, 10.5, 1.0, 1)
    assert system._refill_last[1] == (3 * s, pytest.approx(0.5))
    assert system._hazard_row(flow, 1, 0.0, 1.0, 0.0)[-1] == pytest.approx(0.5)
    assert system._hazard_row(flow, -1, 0.0, 1.0, 0.0)[-1] == 0.0


def test_base_bars_of_okx_swap_trades_count_base_units_as_the_kernels_bars(tmp_path: Path) -> None:
    """A BTC-USDT-SWAP contract is 0.01 BTC (``ctVal * ctMult`` in the real OKX listing): trades sized in
    contracts give 1m base bars (volume, buy - sell volume) in BTC, as the kernel's own 1m bars of the same trades.

    Made-up trades at prices of the real 2022-05-13 BTC-USDT trades (tests/features/test_bars_contracts.py).
    By hand, 0.01 BTC a contract: minute 0 100 buy + 50 sell contracts = 1.5 BTC (1.0 - 0.5 = 0.5 signed);
    minute 1 150 buy + 200 sell = 3.5 BTC (1.5 - 2.0 = -0.5); minute 2 10 buy = 0.1 BTC (0.1); the trade of
    minute 3 closes minute 2 and leaves its own bar unfinished.
    """
    from tradebus.cli import build_kernel, build_replay
    from tradebus.config import load_config
    from tradebus.engine.messages import Bar

    listing = json.loads((FIXTURES / "okx" / "public_instruments_SWAP_2022-05-13_cut.json").read_text())["data"]
    (row,) = [r for r in listing if r["instId"] == "BTC-USDT-SWAP"]
    contract = float(row["ctVal"]) * float(row["ctMult"])
    t0, m = 1_652_459_220_000, 60_000  # 2022-05-13 16:27 UTC, in ms
    trades = [(t0, 30230.0, 100.0, "buy"), (t0 + 30_000, 30240.0, 50.0, "sell"), (t0 + m, 30220.0, 150.0, "buy"),
              (t0 + m + 1, 30236.0, 200.0, "sell"), (t0 + 2 * m + 5, 30250.0, 10.0, "buy"),
              (t0 + 3 * m, 30260.0, 20.0, "sell")]
    path = tmp_path / "trades.csv"
    path.write_text("timestamp,price,size,side,trade_id\n" + "".join(
        f"{ts},{px},{n},{side},{k + 1}\n" for k, (ts, px, n, side) in enumerate(trades)), encoding="utf-8")
    config = {
        "data": {"sources": [{"instrument": "BTC-USDT-SWAP.OKX", "kind": "trades", "file": str(path),
                              "bars": {"mode": "time", "interval": "1m"}}]},
        "instruments": [{"venue": "OKX", "symbol": "BTC-USDT-SWAP", "kind": "perpetual", "base": "BTC", "quote": "USDT",
                         "tick_size": 0.1, "lot_size": 1.0, "contract_size": contract}],
        "strategy": {"name": "tradebus.strategies.regime_hazard:RegimeHazard", "instruments": ["BTC-USDT-SWAP.OKX"],
                     "params": {"quantity": 1.0}},
        "venue": {"fill_on": "trades"},
        "initial_cash": 100_000.0,
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    kernel = build_kernel(load_config(tmp_path / "run.yaml"))
    seen: list[Bar] = []
    kernel.bus.subscribe(Bar, seen.append)
    kernel.run(build_replay(load_config(tmp_path / "run.yaml")))
    closes = [(t0 + k * m) * 1_000_000 for k in (1, 2, 3)]
    volumes = [1.5, 3.5, 0.1]
    assert [b.ts_event for b in seen] == closes
    assert [b.volume for b in seen] == pytest.approx(volumes, rel=1e-12)
    system = kernel.strategies[0].system
    assert [b[0] for b in system.bars] == closes
    assert [b[5] for b in system.bars] == pytest.approx(volumes, rel=1e-12)
    assert [b[5] for b in system.bars] == [b.volume for b in seen]
    assert list(system._sv) == pytest.approx([0.5, -0.5, 0.1], rel=1e-12)  # buy - sell volume, the flow features'
