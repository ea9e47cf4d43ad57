"""The first hour of a new user: version, log levels, --set, strategies next to the config,
data the strategy cannot act on, built-in strategies, feature listing, serve, help text."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tradebus.cli import app
from tradebus.config import apply_overrides, dump_config, load_config
from tradebus.errors import ConfigError
from tradebus.node.config import load_paper_config
from tradebus.strategies.base import BUILTIN_STRATEGIES, resolve_strategy

ROOT = Path(__file__).resolve().parents[1]
TRADES_FILE = ROOT / "tests" / "fixtures" / "data" / "btcusdt-trades.parquet"
runner = CliRunner()


def bars_config(tmp_path: Path, **strategy: Any) -> Path:
    config = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    config["data"]["catalog"] = str(ROOT / "data" / "catalog")
    config["strategy"].update(strategy)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def trades_config(tmp_path: Path, name: str, params: dict[str, Any]) -> Path:
    config = {
        "data": {"sources": [{"instrument": "BTCUSDT.BINANCE", "kind": "trades", "file": str(TRADES_FILE)}]},
        "instruments": [{"venue": "BINANCE", "symbol": "BTCUSDT", "tick_size": 0.01, "lot_size": 1e-5}],
        "strategy": {"name": name, "instruments": ["BTCUSDT.BINANCE"], "params": params},
    }
    path = tmp_path / "trades.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_version_prints_the_package_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip().startswith("tradebus ") and result.output.strip() != "tradebus"


@pytest.mark.parametrize("command", [["backtest", "x.yaml"], ["paper", "x.yaml"], ["replay", "r.gz", "-c", "x.yaml"],
                                     ["sweep", "x.yaml", "--space", "s.yaml"]])
def test_an_unknown_log_level_is_a_usage_error_listing_the_levels(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--log-level", "LOUD"])
    assert result.exit_code == 2
    assert "LOUD" in result.output and "WARNING" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", [["research", "--log-level", "LOUD", "dataset", "x.yaml"],
                                     ["data", "--log-level", "LOUD", "info"]])
def test_an_unknown_log_level_of_a_command_group_is_an_error_listing_the_levels(command: list[str]) -> None:
    result = runner.invoke(app, command)
    assert result.exit_code == 2
    assert "LOUD" in result.output and "WARNING" in result.output
    assert "Traceback" not in result.output


def test_log_level_is_case_insensitive(tmp_path: Path) -> None:
    result = runner.invoke(app, ["backtest", str(tmp_path / "missing.yaml"), "--log-level", "debug"])
    assert result.exit_code == 2 and "config file not found" in result.output


def test_help_has_no_type_placeholders_and_names_only_real_commands() -> None:
    top = runner.invoke(app, ["--help"]).output
    assert "<bool>" not in top
    for command in ("backtest", "paper", "replay", "serve", "data", "features"):
        assert command in top
        assert runner.invoke(app, [command, "--help"]).exit_code == 0
    assert "<bool>" not in runner.invoke(app, ["serve", "--help"]).output
    assert "once" in runner.invoke(app, ["serve", "--help"]).output


def test_set_overrides_a_value_and_the_run_records_it(tmp_path: Path) -> None:
    config = bars_config(tmp_path)
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["backtest", str(config), "--out", str(out), "--set", "strategy.params.fast=12", "--set", "initial_cash=5e4"]
    )
    assert result.exit_code == 0, result.output
    recorded = yaml.safe_load((out / "config.yaml").read_text())
    assert recorded["strategy"]["params"]["fast"] == 12
    assert recorded["initial_cash"] == 50_000.0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("strategy.params.fast", "expected 'section.key=value'"),
        ("strategy.params.fats=3", "strategy.params.fats: unknown key"),
        ("instruments.7.tick_size=1", "instruments has no entry '7'"),
        ("strategy.params.fast=4000", "fast (4000) must be smaller than slow"),
    ],
)
def test_a_bad_override_is_a_config_error_naming_it(tmp_path: Path, override: str, message: str) -> None:
    result = runner.invoke(app, ["backtest", str(bars_config(tmp_path)), "--set", override])
    assert result.exit_code == 2
    assert message in result.output


def test_apply_overrides_leaves_the_input_alone() -> None:
    data = {"a": {"b": [1, 2]}}
    assert apply_overrides(data, ["a.b.1=[3, 4]", "a.c=x"]) == {"a": {"b": [1, [3, 4]], "c": "x"}}
    assert data == {"a": {"b": [1, 2]}}
    with pytest.raises(ConfigError, match="a.b has no entry 'x'"):
        apply_overrides(data, ["a.b.x=1"])


def test_set_reaches_a_key_that_is_an_instrument_id() -> None:
    """``--set bars.BTCUSDT.BINANCE.threshold=100``: the instrument id is one key of the ``bars`` mapping."""
    data = {"bars": {"BTCUSDT.BINANCE": {"mode": "volume", "threshold": 50}},
            "feeds": [{"subscriptions": {"BTCUSDT.BINANCE": ["trade", "bookTicker"]}}]}
    overrides = ["bars.BTCUSDT.BINANCE.threshold=100", "feeds.0.subscriptions.BTCUSDT.BINANCE=[trade]"]
    assert apply_overrides(data, overrides) == {
        "bars": {"BTCUSDT.BINANCE": {"mode": "volume", "threshold": 100}},
        "feeds": [{"subscriptions": {"BTCUSDT.BINANCE": ["trade"]}}],
    }
    # a paper config, as `tradebus paper configs/paper_local.yaml --set ...` reads it
    config = load_paper_config(ROOT / "configs" / "paper_local.yaml", ["feeds.0.subscriptions.BTCUSDT.BINANCE=[trade]"])
    assert config.feeds[0].subscriptions == {"BTCUSDT.BINANCE": ["trade"]}


def test_a_strategy_module_next_to_the_config_runs_without_pythonpath(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "mystrats").mkdir(parents=True)
    (project / "mystrats" / "__init__.py").write_text("")
    (project / "mystrats" / "flip.py").write_text(
        "from tradebus.strategies.base import Strategy\n"
        "class Flip(Strategy):\n"
        "    def on_bar(self, bar):\n"
        "        if self.position() == 0:\n"
        "            self.target_position(self.instrument_id, 0.01, reason='flip')\n"
    )
    config = yaml.safe_load(bars_config(tmp_path).read_text())
    config["strategy"] = {"name": "mystrats.flip:Flip", "instruments": config["strategy"]["instruments"]}
    (project / "run.yaml").write_text(yaml.safe_dump(config))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-m", "tradebus.cli", "backtest", str(project / "run.yaml"), "--out", str(tmp_path / "o")],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len((tmp_path / "o" / "fills.csv").read_text().splitlines()) >= 2


def test_a_run_config_copied_elsewhere_still_imports_the_strategy_beside_the_original(tmp_path: Path) -> None:
    """A run's config.yaml records the absolute directory a strategy next to its config came from, so a
    copy of it (re-run from the run directory, or anywhere) imports the same module. Before, the copy
    looked only beside itself: "cannot import module 'mystrats.flip'". Each run is a fresh process (an
    imported module would hide the defect)."""
    project = tmp_path / "project"
    (project / "mystrats").mkdir(parents=True)
    (project / "mystrats" / "__init__.py").write_text("")
    (project / "mystrats" / "flip.py").write_text(
        "from tradebus.strategies.base import Strategy\n"
        "class Flip(Strategy):\n"
        "    def on_bar(self, bar):\n"
        "        if self.position() == 0:\n"
        "            self.target_position(self.instrument_id, 0.01, reason='flip')\n"
    )
    config = yaml.safe_load(bars_config(tmp_path).read_text())
    config["strategy"] = {"name": "mystrats.flip:Flip", "instruments": config["strategy"]["instruments"]}
    (project / "run.yaml").write_text(yaml.safe_dump(config))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's tradebus, nothing of the project's

    def backtest(config: Path, out: Path) -> None:
        proc = subprocess.run(
            [sys.executable, "-m", "tradebus.cli", "backtest", str(config), "--out", str(out)],
            cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600, check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr

    backtest(project / "run.yaml", tmp_path / "first")
    backtest(tmp_path / "first" / "config.yaml", tmp_path / "again")
    recorded = yaml.safe_load((tmp_path / "first" / "config.yaml").read_text())["strategy"]
    assert (recorded["name"], recorded["module_dir"]) == ("mystrats.flip:Flip", str(project.resolve()))
    fills = (tmp_path / "first" / "fills.csv").read_text()
    assert len(fills.splitlines()) >= 2 and (tmp_path / "again" / "fills.csv").read_text() == fills
    assert (tmp_path / "again" / "config.yaml").read_text() == (tmp_path / "first" / "config.yaml").read_text()


def test_module_dir_is_relative_to_the_config_and_recorded_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))  # the import appends the directory
    (tmp_path / "lib" / "modir_strats").mkdir(parents=True)
    (tmp_path / "lib" / "modir_strats" / "__init__.py").write_text(
        "from tradebus.strategies.ema_cross import EmaCross\nclass Cross(EmaCross):\n    pass\n"
    )
    config = yaml.safe_load(bars_config(tmp_path).read_text())
    config["strategy"].update(name="modir_strats:Cross", module_dir="../lib")
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "run.yaml").write_text(yaml.safe_dump(config))
    try:
        loaded = load_config(tmp_path / "cfg" / "run.yaml")
    finally:
        sys.modules.pop("modir_strats", None)
    assert loaded.strategy is not None and loaded.strategy.module_dir == (tmp_path / "lib").resolve()


def test_a_built_in_strategy_records_no_module_dir() -> None:
    assert "module_dir" not in dump_config(load_config(ROOT / "configs" / "quickstart.yaml"))


def test_a_missing_strategy_module_names_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"looked in sys.path and {tmp_path}"):
        resolve_strategy("nowhere_pkg.mod:Cls", tmp_path)


def test_a_bar_strategy_on_trade_data_is_refused(tmp_path: Path) -> None:
    config = trades_config(tmp_path, "ema_cross", {"fast": 3, "slow": 8, "quantity": 0.01})
    with pytest.raises(ConfigError, match="acts on bars, but the run has only trades"):
        load_config(config)
    result = runner.invoke(app, ["backtest", str(config)])
    assert result.exit_code == 2 and "would never trade" in result.output


def test_tick_ema_cross_is_a_built_in_and_trades_on_trade_data(tmp_path: Path) -> None:
    assert "tick_ema_cross" in BUILTIN_STRATEGIES
    config = trades_config(tmp_path, "tick_ema_cross", {"fast": 2, "slow": 4, "quantity": 0.001})
    out = tmp_path / "out"
    result = runner.invoke(app, ["backtest", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len((out / "orders.csv").read_text().splitlines()) > 1
    on_quotes = _with_params(config, {"fast": 2, "slow": 4, "quantity": 0.001, "source": "quotes"})
    with pytest.raises(ConfigError, match="acts on quotes"):
        load_config(on_quotes)


def _with_params(path: Path, params: dict[str, Any]) -> Path:
    data = yaml.safe_load(path.read_text())
    data["strategy"]["params"] = params
    new = path.with_name("with_params.yaml")
    new.write_text(yaml.safe_dump(data))
    return new


def test_features_list_shows_kinds_parameters_and_output_names() -> None:
    result = runner.invoke(app, ["features", "list"])
    assert result.exit_code == 0
    assert "bollinger" in result.output and "rsi" in result.output
    one = runner.invoke(app, ["features", "list", "bollinger"])
    assert one.exit_code == 0
    assert "NAME.lower" in one.output and "window=" in one.output
    unknown = runner.invoke(app, ["features", "list", "bolinger"])
    assert unknown.exit_code == 2 and "unknown feature kind 'bolinger'" in unknown.output


def test_serve_refuses_a_missing_recording(tmp_path: Path) -> None:
    result = runner.invoke(app, ["serve", str(tmp_path / "nope.gz")])
    assert result.exit_code == 2 and "no such recording" in result.output


def test_the_readme_calls_the_cli_one_way_and_gives_the_capture_length() -> None:
    import gzip
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    # `.venv/bin/tradebus` is named once, where the README says how to call `tradebus`.
    assert readme.count(".venv/bin/tradebus") == 1
    capture = ROOT / "tests" / "fixtures" / "binance" / "spot_btcusdt_20240808_head4000.gz"
    from tradebus.adapters.binance.emulator import is_snapshot_line

    with gzip.open(capture, "rt", encoding="utf-8") as lines:
        rows = [(int(ts), is_snapshot_line(raw)) for ts, raw in (line.split(" ", 1) for line in lines)]
    stamps = [ts for ts, _ in rows]
    span_s = round((stamps[-1] - stamps[0]) / 1e9)
    stated = re.search(
        r"shipped capture is its REST depth snapshot and ([\d,]+) Binance frames, (\d+) s of market time", readme
    )
    assert stated is not None
    assert sum(snapshot for _, snapshot in rows) == 1
    assert int(stated.group(1).replace(",", "")) == len(rows) - 1
    assert int(stated.group(2)) == span_s


def test_feature_descriptions_keep_their_brackets() -> None:
    """Rich markup must not eat ``[t]`` (it read ``x / x - 1`` for ``x[t] / x[t-lag] - 1``)."""
    one = runner.invoke(app, ["features", "list", "ret"])
    assert one.exit_code == 0
    assert "x[t] / x[t-lag] - 1" in " ".join(one.output.replace("│", " ").split())


@pytest.mark.parametrize("module", ["tradebus.cli", "tradebus.research.cli", "tradebus.data.cli"])
def test_error_messages_keep_their_brackets(module: str, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib

    import typer
    from rich.console import Console

    from tradebus.errors import ConfigError

    fail = importlib.import_module(module)._fail
    error = ConfigError("close[t] must be one of [bars, trades], not [bold]")
    with pytest.raises(typer.Exit):
        if module == "tradebus.cli":
            fail(error, Console(stderr=True))
        elif module == "tradebus.data.cli":
            raise fail(error)
        else:
            fail(error)
    assert "error: close[t] must be one of [bars, trades], not [bold]" in capsys.readouterr().err


def test_a_config_on_trade_data_that_names_no_fill_on_fills_on_its_trades(tmp_path: Path) -> None:
    """A newcomer's config on trades alone with no ``venue`` section: the venue's default ``fill_on: bars``
    had no bar to fill on (every order stayed SUBMITTED, exit 0, no fill), and since the check that the run
    replays what the venue fills on, it was refused. It fills on the trades, and its config.yaml says so."""
    config = trades_config(tmp_path, "tick_ema_cross", {"fast": 2, "slow": 4, "quantity": 0.001})
    out = tmp_path / "out"
    result = runner.invoke(app, ["backtest", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len((out / "fills.csv").read_text().splitlines()) > 1
    assert yaml.safe_load((out / "config.yaml").read_text())["venue"]["fill_on"] == "trades"


def test_bars_built_from_trades_are_no_data_the_venue_fills_on(tmp_path: Path) -> None:
    """Bars built from trades reach the strategies, never the venue: ``fill_on: bars`` over them was let
    through (the check counted the built bars) and no order ever filled. It is refused; without a
    ``fill_on`` such a run fills on the trades."""
    config = trades_config(tmp_path, "ema_cross", {"fast": 2, "slow": 4, "quantity": 0.001})
    data = yaml.safe_load(config.read_text())
    data["data"]["sources"][0]["bars"] = {"mode": "time", "interval": "1s"}
    data["venue"] = {"fill_on": "bars"}
    config.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"venue.fill_on: 'bars' matches orders on bars data, but the run replays "
                                          r"only trades for BTCUSDT.BINANCE"):
        load_config(config)
    del data["venue"]
    config.write_text(yaml.safe_dump(data))
    assert load_config(config).venue.fill_on == "trades"


@pytest.mark.parametrize(("command", "written"), [
    (["backtest", str(ROOT / "configs" / "quickstart.yaml")], "backtest -> {out}"),
    (["research", "dataset", str(ROOT / "configs" / "research_btc.yaml")], "dataset -> {out}/dataset.parquet"),
])
def test_the_path_a_command_wrote_prints_whole_on_one_line(tmp_path: Path, command: list[str], written: str) -> None:
    # As a table's title the path was wrapped at the table's width, inside a name:
    # "runs/research/research_btc/dataset.parque" / "t".
    out = tmp_path / "a-results-directory-whose-name-is-longer-than-the-table-is-wide"
    result = runner.invoke(app, [*command, "--out", str(out)], terminal_width=80)
    assert result.exit_code == 0, result.output
    assert written.format(out=out) in result.output.splitlines()
