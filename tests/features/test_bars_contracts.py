"""Bars built from trades of a contract instrument count base units and quote value, not contracts.

OKX swap trades are sized in contracts: a BTC-USDT-SWAP contract is ``ctVal * ctMult`` =
0.01 BTC (the real instruments listing in ``tests/fixtures/okx``). 100 contracts at 30000 are
1 BTC and 30000 USDT; a builder that summed the raw sizes counted 100 (BTC) of volume and
3,000,000 USDT of notional, so a 50,000 USDT dollar bar closed on each trade (after 1/100 of
the value asked), and volumes were 100 times the base units that catalog and venue candles hold.

The trades below are made up (no real linear-swap trade is in the shared data), at prices of
the real BTC-USDT trades of 2022-05-13 in ``okx_v5_public_2022-05-13.jsonl.gz`` (about 30236).
By hand, with 0.01 BTC a contract (base, quote value):

====  ========  =========  ======  ==========  =======================
 k     price     contracts  BTC     USDT        dollar bar of 50,000
====  ========  =========  ======  ==========  =======================
 0     30230.0   100        1.0     30230.0     30230.0
 1     30240.0   50         0.5     15120.0     45350.0
 2     30220.0   150        1.5     45330.0     90680.0: closes, 3 BTC
 3     30236.0   200        2.0     60472.0     60472.0: closes, 2 BTC
 4     30250.0   10         0.1     3025.0      unfinished
====  ========  =========  ======  ==========  =======================
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from tradebus.data.catalog import Catalog
from tradebus.data.cli import data_app
from tradebus.engine.messages import Bar
from tradebus.errors import ConfigError
from tradebus.features.bars import BarBuilder

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
T0 = 1_652_459_220_000_000_000  # 2022-05-13 16:27:00 UTC
S = 1_000_000_000
PRICES = [30230.0, 30240.0, 30220.0, 30236.0, 30250.0]
CONTRACTS = [100.0, 50.0, 150.0, 200.0, 10.0]
SIDES = ["buy", "sell", "buy", "sell", "buy"]
#: The two complete dollar bars of 50,000 USDT: (ts_event, open, high, low, close, volume in BTC).
EXPECTED = [(T0 + 2 * S, 30230.0, 30240.0, 30220.0, 30220.0, 3.0), (T0 + 3 * S, 30236.0, 30236.0, 30236.0, 30236.0, 2.0)]


def okx_contract_size(inst_id: str) -> float:
    """``ctVal * ctMult`` of ``inst_id`` in the real OKX SWAP instruments listing."""
    listing = json.loads((FIXTURES / "okx" / "public_instruments_SWAP_2022-05-13_cut.json").read_text())["data"]
    (row,) = [r for r in listing if r["instId"] == inst_id]
    assert row["ctType"] == "linear" and row["ctValCcy"] == "BTC"
    return float(row["ctVal"]) * float(row["ctMult"])


def write_trades(path: Path) -> Path:
    lines = ["timestamp,price,size,side,trade_id"]
    lines += [f"{(T0 + k * S) // 1_000_000},{p},{c},{s},{k + 1}"
              for k, (p, c, s) in enumerate(zip(PRICES, CONTRACTS, SIDES, strict=True))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def rows(bars: list[tuple[int, float, float, float, float, float]]) -> list[tuple[float, ...]]:
    return [(ts, *(round(x, 9) for x in rest)) for ts, *rest in bars]


def test_builder_counts_base_units_live_and_in_batch() -> None:
    size = okx_contract_size("BTC-USDT-SWAP")
    assert size == 0.01
    ts = np.array([T0 + k * S for k in range(5)])
    batch_ts, batch = BarBuilder("dollar", threshold=50_000.0, contract_size=size).run(ts, PRICES, CONTRACTS)
    assert rows([(t, *v[:5]) for t, v in zip(batch_ts.tolist(), batch.tolist(), strict=True)]) == EXPECTED
    live = BarBuilder("volume", threshold=2.0, contract_size=size)  # 2 BTC: the same two bars
    built = [b for k in range(5) if (b := live.update(int(ts[k]), PRICES[k], CONTRACTS[k], 1)) is not None]
    assert rows([(t, *v[:5]) for t, v in built]) == EXPECTED
    assert [v[7] for _, v in built] == pytest.approx([3.0, 2.0])  # buy volume, base units too


def test_data_bars_of_okx_swap_trades_count_base_units(tmp_path: Path) -> None:
    runner, root = CliRunner(), str(tmp_path / "C")
    trades = write_trades(tmp_path / "trades.csv")
    run = runner.invoke(data_app, ["import", str(trades), "--venue", "okx", "--market", "swap", "--symbol",
                                   "BTC-USDT-SWAP", "--kind", "trades", "--catalog", root])
    assert run.exit_code == 0, run.output
    run = runner.invoke(data_app, ["bars", "okx/swap/BTC-USDT-SWAP/trades", "--mode", "dollar", "--threshold", "50000",
                                   "--contract-size", str(okx_contract_size("BTC-USDT-SWAP")), "--catalog", root])
    assert run.exit_code == 0, run.output
    got = Catalog(root).read("okx", "swap", "BTC-USDT-SWAP", "bars_dollar_50000").to_pandas()
    assert rows(list(got[["ts_event", "open", "high", "low", "close", "volume"]].itertuples(index=False,
                                                                                         name=None))) == EXPECTED
    resample = runner.invoke(data_app, ["bars", "okx/swap/BTC-USDT-SWAP/bars_dollar_50000", "--interval", "1h",
                                        "--contract-size", "0.01", "--catalog", root])
    assert resample.exit_code != 0 and "--contract-size applies to trades" in " ".join(resample.output.split())


def test_backtest_bars_built_from_okx_swap_trades_count_base_units(tmp_path: Path) -> None:
    from tradebus.cli import build_kernel, build_replay
    from tradebus.config import load_config

    config = {
        "data": {"sources": [{"instrument": "BTC-USDT-SWAP.OKX", "kind": "trades",
                              "file": str(write_trades(tmp_path / "trades.csv")),
                              "bars": {"mode": "dollar", "threshold": 50_000.0}}]},
        "instruments": [{"venue": "OKX", "symbol": "BTC-USDT-SWAP", "kind": "perpetual", "base": "BTC", "quote": "USDT",
                         "tick_size": 0.1, "lot_size": 1.0, "contract_size": okx_contract_size("BTC-USDT-SWAP")}],
        "strategy": {"name": "ema_cross", "instruments": ["BTC-USDT-SWAP.OKX"],
                     "params": {"fast": 3, "slow": 8, "quantity": 1.0}},
        "venue": {"fill_on": "trades"},
        "initial_cash": 100_000.0,
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    kernel = build_kernel(load_config(path))
    seen: list[Bar] = []
    kernel.bus.subscribe(Bar, seen.append)
    kernel.run(build_replay(load_config(path)))
    assert rows([(b.ts_event, b.open, b.high, b.low, b.close, b.volume) for b in seen]) == EXPECTED


def _bars_without_the_flag(root: str, venue: str, market: str) -> list[tuple[float, ...]]:
    run = CliRunner().invoke(data_app, ["bars", f"{venue}/{market}/BTC-USDT-SWAP/trades", "--mode", "dollar",
                                        "--threshold", "50000", "--catalog", root])
    assert run.exit_code == 0, run.output
    got = Catalog(root).read(venue, market, "BTC-USDT-SWAP", "bars_dollar_50000").to_pandas()
    return rows(list(got[["ts_event", "open", "high", "low", "close", "volume"]].itertuples(index=False, name=None)))


def test_a_recording_import_of_okx_swap_trades_records_the_contract_size_for_data_bars(tmp_path: Path) -> None:
    """The paper config's instrument says 0.01 BTC a contract: the trades manifest records it, data bars uses it."""
    from tradebus.adapters.common.recorder import FrameRecorder
    from tradebus.node.config import parse_paper_config
    from tradebus.node.recording_import import import_recording

    size = okx_contract_size("BTC-USDT-SWAP")
    recorder = FrameRecorder(tmp_path / "frames.jsonl.gz")
    for k, (p, c, s) in enumerate(zip(PRICES, CONTRACTS, SIDES, strict=True)):  # OKX v5 public trades push
        row = {"instId": "BTC-USDT-SWAP", "tradeId": str(k + 1), "px": str(p), "sz": f"{c:g}", "side": s,
               "ts": str((T0 + k * S) // 1_000_000)}
        recorder.write(T0 + k * S + 1_000_000, "okx-public",
                       json.dumps({"arg": {"channel": "trades", "instId": "BTC-USDT-SWAP"}, "data": [row]}))
    recorder.close()
    config = parse_paper_config({
        "instruments": [{"venue": "OKX", "symbol": "BTC-USDT-SWAP", "kind": "perpetual", "base": "BTC",
                         "quote": "USDT", "tick_size": 0.1, "lot_size": 1.0, "contract_size": size}],
        "strategy": {"name": "tradebus.strategies.tick_ema:TickEmaCross", "instruments": ["BTC-USDT-SWAP.OKX"],
                     "params": {"fast": 2, "slow": 4, "quantity": 1.0}},
        "venue": {"fill_on": "trades"},
        "feeds": [{"venue": "okx", "market": "swap", "ws_url": "ws://127.0.0.1:1/ws",
                   "subscriptions": {"BTC-USDT-SWAP.OKX": ["trades"]}}],
    }, "<test config>")
    root = str(tmp_path / "C")
    manifests = import_recording(tmp_path / "frames.jsonl.gz", config, root)
    assert manifests[("BTC-USDT-SWAP.OKX", "trades")].contract_size == 0.01
    assert _bars_without_the_flag(root, "okx", "swap") == EXPECTED


def test_a_tardis_import_records_the_contract_size_it_is_given_for_data_bars(tmp_path: Path) -> None:
    """A Tardis trades file of OKX BTC-USDT-SWAP (amounts in contracts) imported with the instrument's contract size."""
    path = tmp_path / "okex-swap_trades_2022-05-13_BTC-USDT-SWAP.csv"
    lines = ["exchange,symbol,timestamp,local_timestamp,id,side,price,amount"]
    lines += [f"okex-swap,BTC-USDT-SWAP,{(T0 + k * S) // 1000},{(T0 + k * S) // 1000 + 1000},{k + 1},{s},{p},{c}"
              for k, (p, c, s) in enumerate(zip(PRICES, CONTRACTS, SIDES, strict=True))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    runner, root = CliRunner(), str(tmp_path / "C")
    run = runner.invoke(data_app, ["import-tardis", str(path), "--venue", "okx", "--market", "swap", "--symbol",
                                   "BTC-USDT-SWAP", "--contract-size", str(okx_contract_size("BTC-USDT-SWAP")),
                                   "--catalog", root])
    assert run.exit_code == 0, run.output
    assert Catalog(root).manifest("okx", "swap", "BTC-USDT-SWAP", "trades").contract_size == 0.01
    assert _bars_without_the_flag(root, "okx", "swap") == EXPECTED
    # not told: nothing recorded, and data bars counts the amounts as base units unless given --contract-size
    run = runner.invoke(data_app, ["import-tardis", str(path), "--venue", "okx", "--market", "swap2", "--symbol",
                                   "BTC-USDT-SWAP", "--catalog", root])
    assert run.exit_code == 0, run.output
    assert Catalog(root).manifest("okx", "swap2", "BTC-USDT-SWAP", "trades").contract_size is None


def test_a_csv_import_records_the_contract_size_it_is_given_for_data_bars(tmp_path: Path) -> None:
    """data import --kind trades of OKX BTC-USDT-SWAP trades (sizes in contracts) had no --contract-size: a plain
    CSV's manifest recorded none whatever the market, and data bars then asked for the flag on every build."""
    runner, root = CliRunner(), str(tmp_path / "C")
    trades = str(write_trades(tmp_path / "trades.csv"))
    common = ["--venue", "okx", "--symbol", "BTC-USDT-SWAP", "--kind", "trades", "--catalog", root]
    run = runner.invoke(data_app, ["import", trades, "--market", "swap", *common,
                                   "--contract-size", str(okx_contract_size("BTC-USDT-SWAP"))])
    assert run.exit_code == 0, run.output
    assert "records no contract size" not in run.output
    assert Catalog(root).manifest("okx", "swap", "BTC-USDT-SWAP", "trades").contract_size == 0.01
    assert _bars_without_the_flag(root, "okx", "swap") == EXPECTED
    # not told, outside spot: nothing recorded, and the import says what data bars and backtests will do
    run = runner.invoke(data_app, ["import", trades, "--market", "swap2", *common])
    said = " ".join(run.output.split())
    assert run.exit_code == 0, run.output
    assert Catalog(root).manifest("okx", "swap2", "BTC-USDT-SWAP", "trades").contract_size is None
    assert ("okx/swap2/BTC-USDT-SWAP/trades records no contract size: the trades of a 'swap2' market may count "
            "contracts, so data bars and backtests refuse it until it records one: tradebus data set-contract-size "
            f"okx/swap2/BTC-USDT-SWAP/trades SIZE --catalog {root}") in said
    # a spot market's sizes are base units: nothing said
    run = runner.invoke(data_app, ["import", trades, "--market", "spot", *common])
    assert run.exit_code == 0 and "records no contract size" not in run.output, run.output
    for bad, named in ((["--contract-size", "0"], "--contract-size 0 is not a positive number"),
                       (["--contract-size", "0.01", "--kind", "bars"], "--contract-size applies to trades")):
        run = runner.invoke(data_app, ["import", trades, "--market", "swap3", *common, *bad])
        assert run.exit_code == 2 and named in " ".join(run.output.split()), run.output
        assert not Catalog(root).exists("okx", "swap3", "BTC-USDT-SWAP", "trades")


def test_a_split_import_refuses_one_contract_size_for_every_symbol(tmp_path: Path) -> None:
    """data import --split-by symbol --contract-size 0.01 of OKX BTC-USDT-SWAP and ETH-USDT-SWAP trades recorded
    0.01 for both, where an ETH-USDT-SWAP contract is 0.1 ETH: its bars would count a tenth of the ETH traded."""
    runner, root = CliRunner(), str(tmp_path / "C")
    lines = ["timestamp,symbol,price,size,side,trade_id"]
    lines += [f"{(T0 + k * S) // 1_000_000},{sym},{p},{c},{s},{k + 1}" for sym in ("BTC-USDT-SWAP", "ETH-USDT-SWAP")
              for k, (p, c, s) in enumerate(zip(PRICES, CONTRACTS, SIDES, strict=True))]
    trades = tmp_path / "two.csv"
    trades.write_text("\n".join(lines) + "\n", encoding="utf-8")
    listing = json.loads((FIXTURES / "okx" / "public_instruments_SWAP_2022-05-13_cut.json").read_text())["data"]
    assert {r["instId"]: r["ctVal"] for r in listing if r["ctType"] == "linear"} == {"BTC-USDT-SWAP": "0.01",
                                                                                    "ETH-USDT-SWAP": "0.1"}
    common = ["import", str(trades), "--venue", "okx", "--market", "swap", "--kind", "trades", "--split-by", "symbol",
              "--catalog", root]
    run = runner.invoke(data_app, [*common, "--contract-size", "0.01"])
    said = " ".join(run.output.split())
    assert run.exit_code == 2, run.output
    assert "--contract-size 0.01 with --split-by" in said and "--symbol" in said, said
    assert Catalog(root).datasets() == []
    # 1 (sizes in base units) is every symbol's, as on Binance USDⓈ-M: recorded for each
    run = runner.invoke(data_app, [*common, "--contract-size", "1"])
    assert run.exit_code == 0, run.output
    assert [Catalog(root).manifest("okx", "swap", sym, "trades").contract_size
            for sym in ("BTC-USDT-SWAP", "ETH-USDT-SWAP")] == [1.0, 1.0]


def test_kernel_refuses_a_builder_whose_contract_size_is_not_the_instruments() -> None:
    from tradebus.engine.instrument import Instrument, InstrumentKind
    from tradebus.engine.kernel import Kernel

    inst = Instrument(venue="OKX", symbol="BTC-USDT-SWAP", kind=InstrumentKind.PERPETUAL, tick_size=0.1, lot_size=1.0,
                      contract_size=0.01)
    with pytest.raises(ConfigError, match="BTC-USDT-SWAP.OKX are built with contract_size 1, the instrument's is 0.01"):
        Kernel([inst], trade_bars={"BTC-USDT-SWAP.OKX": BarBuilder("dollar", threshold=50_000.0)})


def test_data_bars_refuses_a_contract_market_trades_dataset_that_records_no_contract_size(tmp_path: Path) -> None:
    """A plain CSV import of OKX swap trades records no contract size: data bars asks for it, spot does not."""
    runner, root = CliRunner(), str(tmp_path / "C")
    trades = write_trades(tmp_path / "trades.csv")
    for market in ("swap", "spot"):
        run = runner.invoke(data_app, ["import", str(trades), "--venue", "okx", "--market", market, "--symbol",
                                       "BTC-USDT-SWAP", "--kind", "trades", "--catalog", root])
        assert run.exit_code == 0, run.output
        assert Catalog(root).manifest("okx", market, "BTC-USDT-SWAP", "trades").contract_size is None
    args = ["--mode", "dollar", "--threshold", "50000", "--catalog", root]
    run = runner.invoke(data_app, ["bars", "okx/swap/BTC-USDT-SWAP/trades", *args])
    said = " ".join(run.output.split())
    assert run.exit_code == 2, run.output
    assert "okx/swap/BTC-USDT-SWAP/trades" in said and "records no contract size" in said and "--contract-size" in said
    assert not Catalog(root).exists("okx", "swap", "BTC-USDT-SWAP", "bars_dollar_50000")
    # given the flag, the contracts count 0.01 BTC each: the module docstring's two bars
    run = runner.invoke(data_app, ["bars", "okx/swap/BTC-USDT-SWAP/trades", *args, "--contract-size", "0.01"])
    assert run.exit_code == 0, run.output
    got = Catalog(root).read("okx", "swap", "BTC-USDT-SWAP", "bars_dollar_50000").to_pandas()
    assert rows(list(got[["ts_event", "open", "high", "low", "close", "volume"]].itertuples(index=False,
                                                                                         name=None))) == EXPECTED
    # spot sizes are base units: as before, each size counts whole (100 + 50 + ... "BTC"), no flag asked
    run = runner.invoke(data_app, ["bars", "okx/spot/BTC-USDT-SWAP/trades", *args])
    assert run.exit_code == 0, run.output
    got = Catalog(root).read("okx", "spot", "BTC-USDT-SWAP", "bars_dollar_50000").to_pandas()
    assert got.volume.tolist() == CONTRACTS  # 30250 * 10 alone passes 50,000: one bar a trade


def _backtest(tmp_path: Path, root: Path, instrument_size: float, out: str, kind: str = "perpetual",
              market: str = "swap") -> tuple[int, str]:
    """``tradebus backtest`` of dollar bars built from okx/<market>/BTC-USDT-SWAP/trades for an instrument of
    ``instrument_size`` BTC a contract: its exit code and output, whitespace joined."""
    from tradebus.cli import app

    config = {
        "data": {"catalog": str(root), "sources": [{"instrument": "BTC-USDT-SWAP.OKX", "kind": "trades",
                                                    "dataset": f"okx/{market}/BTC-USDT-SWAP/trades",
                                                    "bars": {"mode": "dollar", "threshold": 50_000.0}}]},
        "instruments": [{"venue": "OKX", "symbol": "BTC-USDT-SWAP", "kind": kind, "base": "BTC", "quote": "USDT",
                         "tick_size": 0.1, "lot_size": 1.0, "contract_size": instrument_size}],
        "strategy": {"name": "ema_cross", "instruments": ["BTC-USDT-SWAP.OKX"],
                     "params": {"fast": 3, "slow": 8, "quantity": 1.0}},
        "venue": {"fill_on": "trades"},
        "initial_cash": 100_000.0,
    }
    path = tmp_path / f"{out}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    run = CliRunner().invoke(app, ["backtest", str(path), "--out", str(tmp_path / out)])
    return run.exit_code, " ".join(run.output.split())


def _no_fills(out: Path) -> bool:
    return not out.exists() or not any(p.name == "fills.csv" for p in out.iterdir())


@pytest.mark.parametrize(("instrument_size", "runs"), [(0.01, True), (1.0, False)])
def test_backtest_refuses_trades_recorded_with_another_contract_size(tmp_path: Path, instrument_size: float,
                                                                     runs: bool) -> None:
    """Trades whose manifest says 0.01 BTC a contract, replayed for an instrument of 0.01 (runs) or 1 (refused)."""
    runner, root = CliRunner(), tmp_path / "C"
    run = runner.invoke(data_app, ["import", str(write_trades(tmp_path / "trades.csv")), "--venue", "okx", "--market",
                                   "swap", "--symbol", "BTC-USDT-SWAP", "--kind", "trades", "--catalog", str(root)])
    assert run.exit_code == 0, run.output
    with Catalog(root).writer("okx", "swap", "BTC-USDT-SWAP", "trades", "day", kind="trades", mode="overwrite") as w:
        w.write(Catalog(root).read("okx", "swap", "BTC-USDT-SWAP", "trades"))
        w.commit([], contract_size=okx_contract_size("BTC-USDT-SWAP"))  # as backfill and import-tardis record it
    code, said = _backtest(tmp_path, root, instrument_size, "out")
    if runs:
        assert code == 0, said
        assert (tmp_path / "out" / "fills.csv").is_file()
        return
    assert code == 2, said
    assert "data.sources.0.dataset" in said and "count contracts of 0.01 base units (its manifest's contract_size" in said
    assert "instruments.0.contract_size of BTC-USDT-SWAP.OKX is 1" in said
    assert _no_fills(tmp_path / "out")


def test_backtest_refuses_swap_trades_that_record_no_contract_size_until_it_is_recorded(tmp_path: Path) -> None:
    """okx/swap/BTC-USDT-SWAP/trades imported without --contract-size, replayed for an instrument of 0.01 BTC a
    contract, ran (exit 0) reading sizes the dataset does not say the unit of: 100 contracts of 0.01 or 100 BTC
    alike. Now refused whatever the instrument's size, naming data set-contract-size, which records it."""
    runner, root = CliRunner(), tmp_path / "C"
    trades = str(write_trades(tmp_path / "trades.csv"))
    common = ["--venue", "okx", "--symbol", "BTC-USDT-SWAP", "--kind", "trades"]
    for market in ("swap", "spot"):
        run = runner.invoke(data_app, ["import", trades, "--market", market, *common, "--catalog", str(root)])
        assert run.exit_code == 0, run.output
    for size in (0.01, 1.0):
        code, said = _backtest(tmp_path, root, size, f"out_{size:g}")
        assert code == 2, said
        assert (f"data.sources.0.dataset: the trades of {root}/okx/swap/BTC-USDT-SWAP/trades record no contract size, "
                "and the trades of a 'swap' market may count contracts") in said
        assert f"instruments.0.contract_size {size:g}" in said
        assert f"tradebus data set-contract-size okx/swap/BTC-USDT-SWAP/trades SIZE --catalog {root}" in said
        assert _no_fills(tmp_path / f"out_{size:g}")
    # a spot market's trades, or a spot instrument of contract size 1: base units, not refused
    assert _backtest(tmp_path, root, 1.0, "out_spot_market", market="spot")[0] == 0
    assert _backtest(tmp_path, root, 1.0, "out_spot", kind="spot")[0] == 0
    files = {p.name: p.read_bytes() for p in (root / "okx" / "swap" / "BTC-USDT-SWAP" / "trades").rglob("*.parquet")}
    run = runner.invoke(data_app, ["set-contract-size", "okx/swap/BTC-USDT-SWAP/trades",
                                   str(okx_contract_size("BTC-USDT-SWAP")), "--catalog", str(root)])
    assert run.exit_code == 0, run.output
    manifest = Catalog(root).manifest("okx", "swap", "BTC-USDT-SWAP", "trades")
    assert manifest.contract_size == 0.01 and manifest.notes[-1] == "contract_size 0.01 recorded after the import"
    assert files == {p.name: p.read_bytes()
                     for p in (root / "okx" / "swap" / "BTC-USDT-SWAP" / "trades").rglob("*.parquet")}
    assert Catalog(root).verify("okx", "swap", "BTC-USDT-SWAP", "trades") == manifest
    # now it runs, as a dataset imported with --contract-size 0.01 does: the same outputs byte for byte
    code, said = _backtest(tmp_path, root, 0.01, "out_set")
    assert code == 0, said
    told = tmp_path / "told"
    run = runner.invoke(data_app, ["import", trades, "--market", "swap", *common, "--contract-size", "0.01",
                                   "--catalog", str(told)])
    assert run.exit_code == 0, run.output
    code, said = _backtest(tmp_path, told, 0.01, "out_told")
    assert code == 0, said
    written = sorted(p.name for p in (tmp_path / "out_set").iterdir())
    assert "fills.csv" in written and written == sorted(p.name for p in (tmp_path / "out_told").iterdir())
    for name in written:
        if name != "config.yaml":  # its data.catalog is the path of each
            assert (tmp_path / "out_set" / name).read_bytes() == (tmp_path / "out_told" / name).read_bytes(), name
    # the rows of bars built over it count 0.01 BTC a contract: the module docstring's two bars
    assert _bars_without_the_flag(str(root), "okx", "swap") == EXPECTED
    # a recorded size is the unit of the sizes: another one is refused, the same one changes nothing
    for size, code_expected in (("1", 3), ("0.01", 0)):
        run = runner.invoke(data_app, ["set-contract-size", "okx/swap/BTC-USDT-SWAP/trades", size,
                                       "--catalog", str(root)])
        assert run.exit_code == code_expected, run.output
    assert "okx/swap/BTC-USDT-SWAP/trades records a contract size of 0.01, not 1" in " ".join(
        runner.invoke(data_app, ["set-contract-size", "okx/swap/BTC-USDT-SWAP/trades", "1", "--catalog",
                                 str(root)]).output.split())
    assert Catalog(root).manifest("okx", "swap", "BTC-USDT-SWAP", "trades") == manifest
