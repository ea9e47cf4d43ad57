"""`tradebus backtest`: an exception raised in a strategy's hook is one message naming the strategy, hook and time."""

from __future__ import annotations

import csv
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tradebus.cli import app, run_backtest
from tradebus.errors import OrderError, StrategyError

REPO = Path(__file__).resolve().parent.parent
BARS = REPO / "tests" / "fixtures" / "kernel" / "coinbase_btc_usd_4h_2022_1200.csv"
STRATEGY = REPO / "tests" / "fixtures" / "hooks" / "hook_failures.py"
IID = "BTC-USD.COINBASE"


def bar_time(n: int) -> str:
    """ISO UTC of the n-th bar's close (1-based): the file's ``ts`` are 4-hour bar opens in ms."""
    with BARS.open() as fh:
        opened_ms = int(list(csv.DictReader(fh))[n - 1]["ts"])
    return datetime.fromtimestamp(opened_ms // 1000 + 4 * 3600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def config(tmp_path: Path, strategies: list[dict[str, Any]]) -> Path:
    shutil.copy(BARS, tmp_path / "bars.csv")
    body = {
        "data": {"sources": [{"instrument": IID, "file": "bars.csv"}]},
        "instruments": [{"venue": "COINBASE", "symbol": "BTC-USD", "base": "BTC", "quote": "USD", "tick_size": 0.01,
                         "lot_size": 1.0e-8, "min_notional": 1.0, "maker_fee": 0.004, "taker_fee": 0.006}],
        "strategies": strategies,
        "initial_cash": 100_000.0,
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return path


def entry(strategy_id: str, **params: Any) -> dict[str, Any]:
    # one file for every test of a worker: the module, once imported, is the one a later test gets
    return {"name": "hook_failures:FailsIn", "id": strategy_id, "instruments": [IID], "params": params,
            "module_dir": str(STRATEGY.parent)}


def test_second_of_two_instances_raising_in_on_bar_is_named_with_hook_time_and_line(tmp_path: Path) -> None:
    path = config(tmp_path, [entry("steady"), entry("flaky", hook="on_bar", at=5)])
    result = CliRunner().invoke(app, ["backtest", str(path), "--out", str(tmp_path / "out")], catch_exceptions=False)
    text = " ".join(result.output.split())
    assert result.exit_code == 1, text
    line = next(n for n, src in enumerate(STRATEGY.read_text().splitlines(), 1) if "raise ZeroDivisionError" in src)
    assert text == (
        f"error: strategy 'flaky' on_bar at {bar_time(5)}: ZeroDivisionError: division by zero in on_bar "
        f"(at {STRATEGY.resolve()}:{line} in _maybe_fail)"
    )
    assert not (tmp_path / "out").exists()  # a failed run leaves nothing behind


@pytest.mark.parametrize(
    ("error", "call", "cause"),
    [("cancel", "self.cancel(", "unknown client_order_id 'no-such-order'"),
     ("instrument", "self.submit_market(\"ETH-USD.NOWHERE\"", "flaky: unknown instrument 'ETH-USD.NOWHERE'"),
     ("quantity", "OrderSide.SELL, -0.001", "flaky: quantity must be a positive finite number, got -0.001"),
     # were a ValueError "cannot convert float NaN to integer" (an OverflowError for inf) at tradebus/engine/instrument.py
     ("target", "self.target_position(", "flaky: target must be a finite number, got nan"),
     ("weight", "self.target_weight(", "flaky: weight must be a finite number, got inf"),
     ("notional", "self.quantity_for_notional(", "flaky: notional must be a finite number, got nan"),
     # was a TypeError "got an unexpected keyword argument 'stoploss'" at tradebus/strategies/base.py:557
     ("keyword", "stoploss=1.0", "flaky: submit_bracket takes no keyword 'stoploss' (did you mean 'stop_loss'?); it "
      "takes entry_price, stop_loss, take_profit, trail_offset, trail_percent, arm_after_bars, exit_after_bars, "
      "exit_after_ns, cooldown_bars, reason")],
)
def test_an_order_call_tradebus_refuses_in_on_bar_names_the_strategy_hook_time_and_line(
    tmp_path: Path, error: str, call: str, cause: str
) -> None:
    # an OrderError keeps its exit code (1) but says whose hook made the call, when, and on which line
    path = config(tmp_path, [entry("steady"), entry("flaky", hook="on_bar", at=4, error=error)])
    result = CliRunner().invoke(app, ["backtest", str(path), "--out", str(tmp_path / "out")], catch_exceptions=False)
    text = " ".join(result.output.split())
    assert result.exit_code == 1, text
    line = next(n for n, src in enumerate(STRATEGY.read_text().splitlines(), 1) if call in src)
    assert text == (
        f"error: strategy 'flaky' on_bar at {bar_time(4)}: {cause} (at {STRATEGY.resolve()}:{line} in _maybe_fail)"
    )
    assert not (tmp_path / "out").exists()
    with pytest.raises(OrderError, match=rf"^strategy 'flaky' on_bar at {bar_time(4)}: {re.escape(cause)} \(at "):
        run_backtest(path, tmp_path / "out2")


@pytest.mark.parametrize("hook", ["on_start", "on_timer", "on_order_filled", "on_stop"])
def test_each_hook_failure_is_a_strategy_error_chained_to_the_original(tmp_path: Path, hook: str) -> None:
    path = config(tmp_path, [entry("steady"), entry("flaky", hook=hook)])
    with pytest.raises(StrategyError, match=rf"^strategy 'flaky' {hook} at \S+Z: ZeroDivisionError") as info:
        run_backtest(path, tmp_path / "out")
    assert (info.value.strategy_id, info.value.hook) == ("flaky", hook)
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_debug_log_level_shows_the_traceback_of_the_strategy(tmp_path: Path) -> None:
    path = config(tmp_path, [entry("flaky", hook="on_bar", at=3)])
    result = CliRunner().invoke(
        app, ["backtest", str(path), "--out", str(tmp_path / "out"), "--log-level", "DEBUG"], catch_exceptions=False
    )
    assert result.exit_code == 1
    assert "Traceback" in result.output and re.search(r"hook_failures.py\", line \d+, in _maybe_fail", result.output)


@pytest.mark.parametrize(("hook", "at_bar"), [("on_start", 1), ("on_timer", 2)])
def test_on_start_of_a_cli_backtest_runs_at_the_first_bar_and_its_timer_counts_from_there(
    tmp_path: Path, hook: str, at_bar: int
) -> None:
    # FailsIn sets a 4-hour timer in on_start: its first firing is one bar after the first bar's close.
    path = config(tmp_path, [entry("flaky", hook=hook)])
    with pytest.raises(StrategyError, match=rf"^strategy 'flaky' {hook} at {bar_time(at_bar)}: "):
        run_backtest(path, tmp_path / "out")


@pytest.mark.parametrize("hook", ["history_sizes", "feature_specs"])
def test_a_preparing_hook_raising_is_a_strategy_error_naming_the_strategy_and_the_hook(tmp_path: Path, hook: str) -> None:
    # was the bare ZeroDivisionError, its traceback through the kernel's prepare
    path = config(tmp_path, [entry("steady"), entry("flaky", hook=hook)])
    result = CliRunner().invoke(app, ["backtest", str(path), "--out", str(tmp_path / "out")], catch_exceptions=False)
    text = " ".join(result.output.split())
    assert result.exit_code == 1, text
    line = next(n for n, src in enumerate(STRATEGY.read_text().splitlines(), 1) if "raise ZeroDivisionError" in src)
    # asked before any message is read: no event time
    assert text == (
        f"error: strategy 'flaky' {hook}: ZeroDivisionError: division by zero in {hook} "
        f"(at {STRATEGY.resolve()}:{line} in _maybe_fail)"
    )
    assert not (tmp_path / "out").exists()
    with pytest.raises(StrategyError) as info:
        run_backtest(path, tmp_path / "out2")
    assert (info.value.strategy_id, info.value.hook) == ("flaky", hook)
    assert isinstance(info.value.__cause__, ZeroDivisionError)
