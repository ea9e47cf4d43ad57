"""Stress price shocks on data kinds other than bars: a stressed trial equals a plain run on hand-shocked data.

Oracle: the data file copied and shocked with pandas by the formulas of
:mod:`tradebus.sweep.stress`, then backtested without a stress variant.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import yaml
from sweep_helpers import REPO, write_yaml
from typer.testing import CliRunner

from tradebus.cli import app
from tradebus.config import load_config
from tradebus.data.catalog import BOOK_SNAPSHOT, Catalog, schema_for
from tradebus.data.replay import Replay, ReplaySource
from tradebus.sweep.stress import StressVariant, default_variants
from tradebus.sweep.trial import TrialSpec, run_trial

QUOTES = REPO / "tests" / "fixtures" / "sweep" / "binance_usdm_btcusdt_quotes_20230404.csv"
TRADES = REPO / "tests" / "fixtures" / "sweep" / "binance_usdm_btcusdt_trades_20230404.csv"
IID = "BTCUSDT.BINANCE_USDM"
DATASET = ("binance_usdm", "usdm", "BTCUSDT")
AT = pd.Timestamp("2023-04-04T23:58:35Z")  # the fixture spans 23:58:20.4 -> 23:58:55.8
WINDOW = pd.Timedelta("8s")


def write_dataset(root: Path, kind: str, frame: pd.DataFrame) -> Path:
    """``frame`` as the ``kind`` dataset of BTCUSDT in a new catalog at ``root``."""
    Catalog(root).write(pa.Table.from_pandas(frame, schema=schema_for(kind), preserve_index=False),
                        *DATASET, kind, kind=kind)  # type: ignore[arg-type]
    return root


def quotes_config(path: Path, catalog: Path) -> Path:
    """tick_ema_cross on the quote mids of ``catalog``, filled on quotes."""
    config: dict[str, Any] = {
        "data": {"catalog": str(catalog),
                 "sources": [{"instrument": IID, "kind": "quotes", "dataset": "binance_usdm/usdm/BTCUSDT/quotes"}]},
        "instruments": [{"venue": "BINANCE_USDM", "symbol": "BTCUSDT", "base": "BTC", "quote": "USDT",
                         "tick_size": 0.1, "lot_size": 0.001, "min_notional": 5.0, "maker_fee": 0.0002,
                         "taker_fee": 0.0004, "margin": True}],
        "strategy": {"name": "tick_ema_cross", "instruments": [IID],
                     "params": {"fast": 5, "slow": 20, "source": "quotes", "quantity": 0.01}},
        "venue": {"fill_on": "quotes"},
        "initial_cash": 10_000.0,
        "report": {"equity_interval": "1s"},
    }
    return write_yaml(path, config)


def crashed(frame: pd.DataFrame, columns: tuple[str, ...], depth: float) -> pd.DataFrame:
    """``columns`` times ``1 - depth * (1 - (t - at) / recovery)`` on ``[at, at + recovery)`` (t: ts_init)."""
    out = frame.copy()
    elapsed = (pd.to_datetime(frame["ts_init"], utc=True) - AT) / WINDOW
    factor = np.where((elapsed >= 0) & (elapsed < 1), 1.0 - depth * (1.0 - elapsed), 1.0)
    for column in columns:
        out[column] = frame[column] * factor
    return out


def spiked(frame: pd.DataFrame, columns: tuple[str, ...], level: Callable[[pd.DataFrame], pd.Series],
           factor: float) -> pd.DataFrame:
    """``a * (x / a) ** factor`` on ``[at, at + duration)``, ``a`` the ``level`` (price of a row) before it; after
    it every price times the shocked over the original ``level`` of the window's last row."""
    out = frame.copy()
    ts = pd.to_datetime(frame["ts_init"], utc=True)
    inside, after = (ts >= AT) & (ts < AT + WINDOW), ts >= AT + WINDOW
    anchor = level(frame)[ts < AT].iloc[-1]
    for column in columns:
        out.loc[inside, column] = anchor * (frame.loc[inside, column] / anchor) ** factor
    last = inside[inside].index[-1]
    shocked_level = level(out)[last]
    for column in columns:
        out.loc[after, column] = frame.loc[after, column] * (shocked_level / level(frame)[last])
    return out


SHOCKS = {
    "flash_crash": {"flash_crash": {"at": AT.isoformat(), "depth": 0.02, "recovery": "8s"}},
    "vol_spike": {"vol_spike": {"start": AT.isoformat(), "duration": "8s", "factor": 40.0}},
}


@pytest.mark.parametrize("shock", sorted(SHOCKS))
def test_price_shock_on_quotes_equals_a_run_on_the_hand_shocked_quotes(tmp_path: Path, shock: str) -> None:
    quotes = pd.read_csv(QUOTES)
    prices = ("bid_price", "ask_price")
    if shock == "flash_crash":
        hand = crashed(quotes, prices, 0.02)
    else:
        hand = spiked(quotes, prices, lambda q: (q["bid_price"] + q["ask_price"]) / 2.0, 40.0)
    assert (hand["bid_price"] <= hand["ask_price"]).all()
    assert hand[["bid_size", "ask_size"]].equals(quotes[["bid_size", "ask_size"]])
    assert (hand["bid_price"] != quotes["bid_price"]).sum() > 100  # the shock moves many quotes
    config = quotes_config(tmp_path / "run.yaml", write_dataset(tmp_path / "cat", "quotes", quotes))
    reference_config = quotes_config(tmp_path / "hand.yaml", write_dataset(tmp_path / "hand", "quotes", hand))
    stressed = run_trial(TrialSpec(0, str(config), {}, stress={"name": shock, **SHOCKS[shock]}, keep_equity=True))
    reference = run_trial(TrialSpec(0, str(reference_config), {}, keep_equity=True))
    baseline = run_trial(TrialSpec(0, str(config), {}, keep_equity=True))
    assert stressed["status"] == reference["status"] == baseline["status"] == "ok", stressed["error"]
    assert stressed["fills"] > 0
    assert stressed["equity"] == reference["equity"] != baseline["equity"]
    assert {k: stressed[k] for k in ("total_return", "max_drawdown", "fills", "fees_paid")} == {
        k: reference[k] for k in ("total_return", "max_drawdown", "fills", "fees_paid")}


def test_flash_crash_on_a_perpetual_with_replayed_funding_and_open_interest_keeps_both(tmp_path: Path) -> None:
    """Funding rates and open interest have no price: the crash passes them as they are.

    Oracle: bars and marks crashed by hand, the same funding and open-interest datasets replayed.
    """
    fixtures = REPO / "tests" / "fixtures" / "perpetual"
    at, recovery, depth = pd.Timestamp("2021-11-18T03:00:00Z"), pd.Timedelta("6h"), 0.1
    funding = pd.read_feather(fixtures / "XRP_USDT_USDT-8h-funding_rate.feather")
    ts = funding["date"].dt.as_unit("ns").astype("int64")
    catalog = Catalog(tmp_path / "cat")
    catalog.write(pa.table({"ts_event": ts, "ts_init": ts, "rate": funding["open"],
                            "next_funding_ns": ts + 8 * 3_600_000_000_000}, schema=schema_for("funding_rates")),
                  "binance", "usdm", "XRPUSDT", "funding", kind="funding_rates")
    hours = np.arange(pd.Timestamp("2021-11-15T06:00Z").value, pd.Timestamp("2021-11-19T10:00Z").value, 3_600_000_000_000)
    catalog.write(pa.table({"ts_event": hours, "ts_init": hours, "open_interest": 4.0e8 + np.arange(hours.size)},
                           schema=schema_for("open_interest")),
                  "binance", "usdm", "XRPUSDT", "oi", kind="open_interest")
    sources = [ReplaySource.from_catalog(catalog, "XRPUSDT.BINANCE", "binance", "usdm", "XRPUSDT", name)
               for name in ("funding", "oi")]
    spike = StressVariant(name="spike", vol_spike={"start": at.to_pydatetime(), "duration": "6h", "factor": 3.0})
    plain = list(Replay(sources, batch_rows=16).batches())
    spiked_batches = list(spike.wrap(Replay(sources, batch_rows=16)).batches())
    assert len(spiked_batches) == len(plain) > 2
    for shocked, batch in zip(spiked_batches, plain, strict=True):
        assert shocked.kind == batch.kind and shocked.columns.keys() == batch.columns.keys()
        assert all(np.array_equal(shocked.columns[k], batch.columns[k]) for k in batch.columns)

    def factor(times: pd.Series) -> np.ndarray:
        elapsed = (times - at) / recovery
        return np.where((elapsed >= 0) & (elapsed < 1), 1.0 - depth * (1.0 - elapsed), 1.0)

    bars = pd.read_parquet(fixtures / "XRP_USDT_USDT-5m-futures.parquet")
    marks = pd.read_feather(fixtures / "XRP_USDT_USDT-1h-mark.feather")
    bar_factor, mark_factor = factor(bars["date"] + pd.Timedelta("5min")), factor(marks["date"])
    for column in ("open", "high", "low", "close"):
        bars[column] *= bar_factor
        marks[column] *= mark_factor
    bars.to_parquet(tmp_path / "bars.parquet")
    marks.to_feather(tmp_path / "marks.feather")

    def config(name: str, bar_file: Path, mark_file: Path) -> Path:
        raw = yaml.safe_load((REPO / "configs" / "perp_xrp_funding.yaml").read_text(encoding="utf-8"))
        data = raw["data"]
        data["catalog"] = str(catalog.root)
        data["sources"][0]["file"] = str(bar_file)
        data["sources"] += [
            {"instrument": "XRPUSDT.BINANCE", "kind": "funding_rates", "dataset": "binance/usdm/XRPUSDT/funding"},
            {"instrument": "XRPUSDT.BINANCE", "kind": "open_interest", "dataset": "binance/usdm/XRPUSDT/oi"},
        ]
        data["marks"][0]["file"] = str(mark_file)
        del data["funding"]
        return write_yaml(tmp_path / name, raw)

    shipped = config("run.yaml", fixtures / "XRP_USDT_USDT-5m-futures.parquet", fixtures / "XRP_USDT_USDT-1h-mark.feather")
    variant = {"name": "crash", "flash_crash": {"at": "2021-11-18T03:00:00", "depth": depth, "recovery": "6h"}}
    stressed = run_trial(TrialSpec(0, str(shipped), {}, stress=variant, keep_equity=True))
    reference = run_trial(TrialSpec(0, str(config("hand.yaml", tmp_path / "bars.parquet", tmp_path / "marks.feather")),
                                    {}, keep_equity=True))
    assert stressed["status"] == reference["status"] == "ok", stressed["error"]
    assert stressed["equity"] == reference["equity"]
    assert {k: stressed[k] for k in ("total_return", "max_drawdown", "fills")} == {
        k: reference[k] for k in ("total_return", "max_drawdown", "fills")}


def with_book(tmp_path: Path) -> Path:
    """The quotes config with the instrument's L2 book replayed too (a snapshot of its touch per quote)."""
    quotes = pd.read_csv(QUOTES).head(50)
    rows = []
    for seq, q in enumerate(quotes.itertuples()):
        rows += [(q.ts_event, q.ts_init, seq, 1, q.bid_price, q.bid_size, BOOK_SNAPSHOT),
                 (q.ts_event, q.ts_init, seq, -1, q.ask_price, q.ask_size, BOOK_SNAPSHOT)]
    book = pd.DataFrame(rows, columns=schema_for("book").names)
    catalog = write_dataset(write_dataset(tmp_path / "cat", "quotes", pd.read_csv(QUOTES)), "book", book)
    path = quotes_config(tmp_path / "run.yaml", catalog)
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw["data"]["sources"].append({"instrument": IID, "kind": "book", "dataset": "binance_usdm/usdm/BTCUSDT/book"})
    return write_yaml(path, raw)


def test_price_shock_on_book_data_is_refused_at_config_load_naming_variant_shock_and_kind(tmp_path: Path) -> None:
    """It stopped the sweep, after Ray started and the trials ran, with a bare ``KeyError: 'book'``."""
    config = with_book(tmp_path)
    space = write_yaml(tmp_path / "space.yaml", {
        "objectives": {"total_return": "maximize"}, "params": {"strategy.params.fast": [5]},
        "stress": [{"name": "baseline"},
                   {"name": "spike", "vol_spike": {"start": AT.isoformat(), "duration": "8s", "factor": 3.0}},
                   {"name": "other", "flash_crash": {"at": AT.isoformat(), "depth": 0.1, "instruments": ["ETH.X"]}}],
    })
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["sweep", str(config), "--space", str(space), "--out", str(out), "--workers", "1"])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert f"error: {space}: stress.1: variant 'spike': vol_spike: cannot shock the book data of {IID} " in text, text
    assert "(data.sources.1)" in text
    assert not out.exists()  # refused before any trial
    # A trial asked directly fails with the same reason, not a KeyError.
    crash = {"name": "crash", "flash_crash": {"at": AT.isoformat(), "depth": 0.1}}
    row = run_trial(TrialSpec(0, str(config), {}, stress=crash))
    assert row["status"] == "failed" and row["error"].startswith(f"flash_crash: cannot shock the book data of {IID}")
    # --stress without a stress block leaves the default price shocks out.
    span = (pd.Timestamp("2023-01-01").value, pd.Timestamp("2023-07-01").value)
    names = [v.name for v in default_variants(span, load_config(config))]
    assert names == ["baseline", "costs_x2", "costs_x5", "latency_x2", "latency_x5"]
    quotes_only = load_config(quotes_config(tmp_path / "quotes.yaml", tmp_path / "cat"))
    assert len(default_variants(span, quotes_only)) == 7


def test_vol_spike_on_an_instruments_trades_and_quotes_shocks_each_series_from_its_own_price(tmp_path: Path) -> None:
    """The trades took the quotes' anchor and end (one state per instrument), so their shocked prices were off.

    Oracle: each file spiked on its own, replayed together without a stress variant.
    """
    trades = pd.read_csv(TRADES, dtype={"trade_id": str})
    quotes = pd.read_csv(QUOTES)

    def config(name: str, trade_rows: pd.DataFrame, quote_rows: pd.DataFrame) -> Path:
        catalog = write_dataset(write_dataset(tmp_path / name, "quotes", quote_rows), "trades", trade_rows)
        path = quotes_config(tmp_path / f"{name}.yaml", catalog)
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        raw["data"]["sources"].insert(0, {"instrument": IID, "kind": "trades",
                                          "dataset": "binance_usdm/usdm/BTCUSDT/trades"})
        raw["strategy"]["params"]["source"] = "trades"
        raw["venue"]["fill_on"] = "trades"
        return write_yaml(path, raw)

    hand_trades = spiked(trades, ("price",), lambda t: t["price"], 40.0)
    hand_quotes = spiked(quotes, ("bid_price", "ask_price"), lambda q: (q["bid_price"] + q["ask_price"]) / 2.0, 40.0)
    assert (hand_trades["price"] != trades["price"]).sum() > 300
    variant = {"name": "spike", **SHOCKS["vol_spike"]}
    stressed = run_trial(TrialSpec(0, str(config("cat", trades, quotes)), {}, stress=variant, keep_equity=True))
    reference = run_trial(TrialSpec(0, str(config("hand", hand_trades, hand_quotes)), {}, keep_equity=True))
    assert stressed["status"] == reference["status"] == "ok", stressed["error"]
    assert stressed["fills"] > 0
    assert stressed["equity"] == reference["equity"]
    assert {k: stressed[k] for k in ("total_return", "max_drawdown", "fills", "fees_paid")} == {
        k: reference[k] for k in ("total_return", "max_drawdown", "fills", "fees_paid")}


def test_a_stressed_run_knows_which_instruments_have_bars_as_the_plain_run_does(tmp_path: Path) -> None:
    """Without the replay's sources a stressed kernel did not know the run has no bars of the instrument.

    So a bracket counting bars, refused in the plain run, waited forever under stress, and a trailing
    stop of an instrument with bars and quotes trailed on its quotes until its first bar.
    """
    from tradebus.cli import build_kernel, build_replay

    config = load_config(quotes_config(tmp_path / "run.yaml", write_dataset(tmp_path / "cat", "quotes",
                                                                            pd.read_csv(QUOTES))))
    crash = StressVariant(name="crash", flash_crash={"at": AT.to_pydatetime(), "depth": 0.02, "recovery": "8s"})
    plain, stressed = build_kernel(config), build_kernel(config)
    plain.run(build_replay(config))
    stressed.run(crash.wrap(build_replay(config)))
    assert plain.bar_instruments == frozenset()
    assert stressed.bar_instruments == plain.bar_instruments
