"""`tradebus backtest`: a client order id a strategy gives itself is held to the rule of the venue its instrument trades on."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tradebus.cli import run_backtest

REPO = Path(__file__).resolve().parent.parent
BARS = REPO / "tests" / "fixtures" / "kernel" / "coinbase_btc_usd_4h_2022_1200.csv"
STRATEGY_DIR = REPO / "tests" / "fixtures" / "own_ids"


def _config(tmp_path: Path, venue: str, symbol: str, client_order_id: str) -> Path:
    shutil.copy(BARS, tmp_path / "bars.csv")
    iid = f"{symbol}.{venue}"
    body: dict[str, Any] = {
        "data": {"sources": [{"instrument": iid, "file": "bars.csv"}]},
        "instruments": [{"venue": venue, "symbol": symbol, "base": "BTC", "quote": "USDT", "tick_size": 0.1,
                         "lot_size": 1.0e-8, "min_notional": 1.0, "maker_fee": 0.001, "taker_fee": 0.001}],
        "strategies": [{"name": "own_ids:OwnId", "id": "own", "instruments": [iid], "module_dir": str(STRATEGY_DIR),
                        "params": {"client_order_id": client_order_id}}],
        "initial_cash": 100_000.0,
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("venue", "symbol", "client_order_id", "rule"),
    [("OKX", "BTC-USDT", "tb-own-1", "OKX clOrdId: 1-32 letters and digits"),
     ("BYBIT", "BTCUSDT", "tb.own.1", "Bybit orderLinkId: 1-36 letters, digits, - and _"),
     ("BINANCE", "BTCUSDT", "x" * 37, "Binance newClientOrderId: 1-36 letters, digits and . : / _ -")],
)
def test_an_own_id_the_venue_refuses_is_denied_naming_the_id_and_the_rule(
    tmp_path: Path, venue: str, symbol: str, client_order_id: str, rule: str
) -> None:
    result, _, _ = run_backtest(_config(tmp_path, venue, symbol, client_order_id), tmp_path / "out")
    assert [(d.client_order_id, d.reason) for d in result.denials] == [
        (client_order_id, f"client order id {client_order_id!r} breaks the venue's rule ({rule})")
    ]
    assert result.fills == []


@pytest.mark.parametrize(
    ("venue", "symbol", "client_order_id"),
    [("BYBIT", "BTCUSDT", "tb-own-1"), ("BINANCE", "BTCUSDT", "tb.a:b/c_d-e"), ("OKX", "BTC-USDT", "tbOwn1"),
     ("COINBASE", "BTC-USDT", "any id: no rule known"), ("OKXCOIN", "BTC-USDT", "tb-own-1")],
)
def test_an_own_id_the_venue_takes_is_traded(tmp_path: Path, venue: str, symbol: str, client_order_id: str) -> None:
    result, _, _ = run_backtest(_config(tmp_path, venue, symbol, client_order_id), tmp_path / "out")
    assert result.denials == []
    assert [f.client_order_id for f in result.fills] == [client_order_id]


@pytest.mark.parametrize(
    ("venue", "symbol", "client_order_id", "rule"),
    [("OKX_DEMO", "BTC-USDT", "tb-own-1", "OKX clOrdId: 1-32 letters and digits"),
     ("BYBIT_TESTNET", "BTCUSDT", "tb.own.1", "Bybit orderLinkId: 1-36 letters, digits, - and _"),
     ("BINANCE_USDM_TESTNET", "BTCUSDT", "x" * 37, "Binance newClientOrderId: 1-36 letters, digits and . : / _ -"),
     ("okx", "BTC-USDT", "tb-own-1", "OKX clOrdId: 1-32 letters and digits")],
)
def test_an_own_id_is_held_to_the_rule_of_the_venue_a_suffixed_or_lower_case_venue_name_names(
    tmp_path: Path, venue: str, symbol: str, client_order_id: str, rule: str
) -> None:
    """``BTC-USDT.OKX_DEMO`` (the instruments of a paper run on OKX's demo, which is held to OKX's rule through its
    feed) traded 'tb-own-1' in a backtest: only the exact venue names ``OKX``, ``BYBIT``, ``BINANCE`` and
    ``BINANCE_USDM`` found a venue's rule."""
    result, _, _ = run_backtest(_config(tmp_path, venue, symbol, client_order_id), tmp_path / "out")
    assert [(d.client_order_id, d.reason) for d in result.denials] == [
        (client_order_id, f"client order id {client_order_id!r} breaks the venue's rule ({rule})")
    ]
    assert result.fills == []
