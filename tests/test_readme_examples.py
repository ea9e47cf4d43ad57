"""The README's python and yaml examples run as written (and the yaml of ``docs/``).

A newcomer copies them: a python example must run with the names the README leaves to its reader
(a bar's values, ``bars_df``; in a strategy ``self``, ``iid``, ``client_order_id``, ``expire_ns``),
importing everything else itself; a yaml example's every section must be accepted, key and value,
by the config it is a section of (a run, paper or live config, or a sweep space).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from pydantic import TypeAdapter, ValidationError

from tradebus.cli import run_backtest
from tradebus.config import RunConfig
from tradebus.node.config import PaperConfig
from tradebus.node.live import LiveConfig
from tradebus.sweep.space import load_space

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").rglob("*.md"))
BARS = ROOT / "tests" / "fixtures" / "kernel" / "coinbase_btc_usd_4h_2022_1200.csv"
SNIPPETS = ROOT / "tests" / "fixtures" / "hooks" / "readme_snippets.py"
FENCE = re.compile(r"^```(\w*)[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def fenced(path: Path, lang: str) -> list[tuple[str, str]]:
    """``(file:line, body)`` of each ```` ```lang ```` block of ``path``, in order."""
    text = path.read_text(encoding="utf-8")
    return [(f"{path.name}:{text.count(chr(10), 0, m.start()) + 1}", m.group(2))
            for m in FENCE.finditer(text) if m.group(1) == lang]


def test_the_fence_reader_finds_the_examples() -> None:
    assert len(fenced(README, "python")) >= 4 and len(fenced(README, "yaml")) >= 8


def section_errors(name: str, value: Any) -> list[str]:
    """Why no config model takes ``name: value`` as one of its sections (empty: one takes it)."""
    errors = []
    for model in (RunConfig, PaperConfig, LiveConfig):
        field = model.model_fields.get(name)
        if field is None:
            errors.append(f"{model.__name__} has no section {name!r}")
            continue
        try:
            TypeAdapter(field.annotation).validate_python(value)
            return []
        except ValidationError as exc:
            errors.append(f"{model.__name__}.{name}: {exc}")
    return errors


YAML = [b for path in [README, *DOCS] for b in fenced(path, "yaml")]


@pytest.mark.parametrize("where,body", YAML, ids=[where for where, _ in YAML])
def test_yaml_example_is_a_valid_config_section(where: str, body: str, tmp_path: Path) -> None:
    data = yaml.safe_load(body)
    assert isinstance(data, dict), where
    if "method" in data:  # a sweep space file
        space = tmp_path / "space.yaml"
        space.write_text(body, encoding="utf-8")
        assert load_space(space).params
        return
    failures = {name: errors for name, value in data.items() if (errors := section_errors(name, value))}
    assert not failures, f"{where}: {failures}"


def test_the_readme_feature_example_runs() -> None:
    (where, body), = [b for b in fenced(README, "python") if "FeatureBank" in b[1]]
    raw = pd.read_csv(BARS)
    bars_df = raw.assign(ts_event=raw.pop("ts") * 1_000_000 + 4 * 3_600_000_000_000)
    first = bars_df.iloc[0]
    names: dict[str, Any] = {"bars_df": bars_df, "ts_ns": int(first.ts_event), "open_": first.open,
                             "high": first.high, "low": first.low, "close": first.close, "volume": first.volume}
    exec(compile(body, where, "exec"), names)
    frame = names["frame"]
    assert len(frame) == len(bars_df) and frame["rsi_ema"].notna().sum() > 1000
    assert not names["ema"].ready  # one update of a span-10 EMA: not warmed up


def hundred_bars(path: Path) -> None:
    """Hourly bars around 100, where the README's example prices (95 to 110) sit."""
    rows = ["timestamp,open,high,low,close,volume"]
    close = 100.0
    for n in range(48):
        opened, close = close, 100.0 + 3.0 * ((n % 12) - 6) / 6
        rows.append(f"{1704067200000 + n * 3_600_000},{opened},{max(opened, close) + 0.5},"
                    f"{min(opened, close) - 0.5},{close},50.0")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def test_the_readme_strategy_examples_run_in_a_backtest(tmp_path: Path) -> None:
    snippets = [body for _, body in fenced(README, "python") if re.search(r"\bself\b", body)]
    assert len(snippets) >= 3
    hundred_bars(tmp_path / "bars.csv")
    config = {
        "data": {"sources": [{"instrument": "BTC-USD.COINBASE", "file": "bars.csv"}]},
        "instruments": [{"venue": "COINBASE", "symbol": "BTC-USD", "base": "BTC", "quote": "USD", "tick_size": 0.01,
                         "lot_size": 1.0e-8, "taker_fee": 0.001, "margin": True}],
        "strategy": {"name": "readme_snippets:RunsSnippets", "instruments": ["BTC-USD.COINBASE"],
                     "params": {"snippets": snippets}, "module_dir": str(SNIPPETS.parent)},
        "initial_cash": 100_000.0,
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    run_backtest(path, tmp_path / "out")
    orders = pd.read_csv(tmp_path / "out" / "orders.csv")
    # every kind of order the examples name reached the venue
    assert {"MARKET", "LIMIT", "STOP_MARKET", "STOP_LIMIT"} <= set(orders["type"])
    assert {"IOC", "GTD"} <= set(orders["time_in_force"])
    assert orders["post_only"].any() and orders["reduce_only"].any()
    assert (orders["price"] == 110.0).any() and (orders["trigger_price"] == 95.0).any()  # bracket, OCO


RECORDING = '''
from readme_trend import TrendFiltered


class Recording(TrendFiltered):
    """The README's strategy, keeping what its higher timeframe read at each bar."""

    seen: list = []

    def on_bar(self, bar):
        stamps, closes = self.higher_bars(bar.instrument_id)
        if len(stamps):
            Recording.seen.append((bar.ts_event, int(stamps[-1]), float(closes[-1])))
        super().on_bar(bar)
'''


def run_trend_example(tmp_path: Path, bars: pd.DataFrame) -> tuple[list[tuple[int, int, float]], pd.DataFrame]:
    """Backtest the README's ``TrendFiltered`` on ``bars`` (4h, with a 1d informative timeframe)."""
    (where, body), = [b for b in fenced(README, "python") if "class TrendFiltered" in b[1]]
    tmp_path.mkdir()
    (tmp_path / "readme_trend.py").write_text(body, encoding="utf-8")
    (tmp_path / "recording.py").write_text(RECORDING, encoding="utf-8")
    bars.to_csv(tmp_path / "bars.csv", index=False)
    config = {
        "data": {"sources": [{"instrument": "BTC-USD.COINBASE", "file": "bars.csv", "bar_time": "open"}]},
        "instruments": [{"venue": "COINBASE", "symbol": "BTC-USD", "base": "BTC", "quote": "USD", "tick_size": 0.01,
                         "lot_size": 1.0e-8, "taker_fee": 0.001}],
        "strategy": {"name": "recording:Recording", "instruments": ["BTC-USD.COINBASE"],
                     "params": {"informative": "1d", "roi_bars": 6}},
        "initial_cash": 100_000.0,
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    sys.path.insert(0, str(tmp_path))
    try:
        sys.modules.pop("readme_trend", None)
        sys.modules.pop("recording", None)
        run_backtest(tmp_path / "run.yaml", tmp_path / "out")
        seen = list(sys.modules["recording"].Recording.seen)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("readme_trend", None)
        sys.modules.pop("recording", None)
    return seen, pd.read_csv(tmp_path / "out" / "orders.csv")


def test_the_readme_multi_timeframe_example_reads_the_last_closed_higher_bar(tmp_path: Path) -> None:
    raw = pd.read_csv(BARS)
    seen, orders = run_trend_example(tmp_path / "a", raw)
    # pandas: daily bars of the close-stamped 4h bars, (day - 1d, day]; the last one closed at or before t
    close = raw.set_index(pd.to_datetime(raw.ts + 4 * 3_600_000, unit="ms")).close
    daily = close.resample("1D", closed="right", label="right").last().dropna()
    stamps = daily.index.as_unit("ns").asi8
    assert len(seen) > 1000 and orders["submit_reason"].eq("trend entry").sum() > 10
    for t, stamp, value in seen:
        k = np.searchsorted(stamps, t, side="right") - 1
        assert k >= 0, f"{pd.Timestamp(t)}: read a daily bar before the first one closed"
        assert (stamp, value) == (stamps[k], daily.iloc[k]), pd.Timestamp(t)
    assert any(t % 86_400_000_000_000 for t, _, _ in seen)  # decisions inside a forming day too
    # the bars after a cut (mid-day: its daily bar is forming) perturbed: nothing up to the cut changes
    cut = pd.Timestamp("2022-03-10 12:00", tz="UTC").value // 1_000_000
    shocked = raw.copy()
    later = shocked.ts + 4 * 3_600_000 > cut
    shocked.loc[later, ["open", "high", "low", "close"]] *= 1.5
    seen_shocked, orders_shocked = run_trend_example(tmp_path / "b", shocked)
    before = [s for s in seen if s[0] <= cut * 1_000_000]
    assert before == [s for s in seen_shocked if s[0] <= cut * 1_000_000] and seen != seen_shocked
    cols = ["side", "type", "quantity", "trigger_price", "ts_created", "submit_reason"]
    upto = orders.ts_created <= cut * 1_000_000
    pd.testing.assert_frame_equal(orders.loc[upto, cols].reset_index(drop=True),
                                  orders_shocked.loc[orders_shocked.ts_created <= cut * 1_000_000, cols]
                                  .reset_index(drop=True))


def test_the_readme_model_example_trades_its_signal_in_a_backtest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                   ) -> None:
    """The Research section's model, fitted as written and named in its ``strategy`` section, trades the
    quickstart's bars on the outputs ``predict_frame`` gave the dataset: each order at the bar where the
    signal (flat at the start) crosses ``upper`` or ``lower``, with that value."""
    from typer.testing import CliRunner

    from tradebus.cli import app

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "catalog").symlink_to(ROOT / "data" / "catalog")
    (tmp_path / "configs").mkdir()
    for name in ("research_btc.yaml", "quickstart.yaml"):
        (tmp_path / "configs" / name).write_bytes((ROOT / "configs" / name).read_bytes())
    monkeypatch.chdir(tmp_path)
    for command in ("dataset", "labels"):
        result = CliRunner().invoke(app, ["research", command, "configs/research_btc.yaml"])
        assert result.exit_code == 0, result.output
    (where, body), = [b for b in fenced(README, "python") if "ModelStep" in b[1]]
    names: dict[str, Any] = {}
    exec(compile(body, where, "exec"), names)
    assert names["known"]["t1"].max() < names["cut"]
    section, = [yaml.safe_load(b) for _, b in fenced(README, "yaml") if "ModelSignal" in b]
    config = yaml.safe_load((tmp_path / "configs" / "quickstart.yaml").read_text())
    config.update(section)
    (tmp_path / "configs" / "model.yaml").write_text(yaml.safe_dump(config))
    run_backtest(tmp_path / "configs" / "model.yaml", tmp_path / "out")
    orders = pd.read_csv(tmp_path / "out" / "orders.csv")
    params = section["strategy"]["params"]
    assert params["upper"] > params["lower"]
    denied = set(orders.loc[orders["status"] == "DENIED", "ts_created"])
    expected, long = [], False
    for ts, value in zip(names["data"]["ts_event"], names["signal"], strict=True):
        if value > params["upper"] and not long:
            expected.append((ts, "BUY", f"model {value:.4f} > {params['upper']}"))
            long = ts not in denied
        elif value < params["lower"] and long:
            expected.append((ts, "SELL", f"model {value:.4f} < {params['lower']}"))
            long = False
    assert len(expected) > 20
    assert list(orders[["ts_created", "side", "submit_reason"]].itertuples(index=False, name=None)) == expected
