"""Run configuration: a YAML file validated by pydantic models before any data is touched.

A run config names the data to replay, the instruments, the strategy and its
parameters, the simulated venue, the risk limits, extra features and the
initial cash. Every model forbids unknown keys, so a typo is an error, not a
silently ignored setting. :func:`load_config` turns every problem into a
:class:`~tradebus.errors.ConfigError` whose message names the config file and
the field path (``strategy.params.fast``).

Relative paths in a config (the catalog root, data files) are resolved against
the directory of the config file, so a config runs the same from any working
directory.

Example::

    data:
      catalog: ../data/catalog
      sources:
        - instrument: BTC-USD.COINBASE
          dataset: coinbase/spot/BTC-USD/bars_4h
    instruments:
      - {venue: COINBASE, symbol: BTC-USD, base: BTC, quote: USD,
         tick_size: 0.01, lot_size: 1.0e-8, taker_fee: 0.006, maker_fee: 0.004}
    strategy:
      name: ema_cross
      instruments: [BTC-USD.COINBASE]
      params: {fast: 10, slow: 30, mode: long_only, quantity: 0.1}
    initial_cash: 100000

Several strategies run side by side with ``strategies:`` (a list of the same entries, each
with its own ``id``) instead of ``strategy:``; each can cancel or modify only its own
orders, and ``attribution.csv`` splits PnL, fees and positions between them.

The package, one concept per module:

* :mod:`~tradebus.config.base` -- :class:`StrictModel`, the base of every config section of
  every layer, and the one wording of config errors; imports nothing above :mod:`tradebus.errors`;
* :mod:`~tradebus.config.units` -- durations (``"4h"``) and moments as integer ns;
* :mod:`~tradebus.config.instruments` -- instrument sections;
* :mod:`~tradebus.config.data` -- the backtest's ``data`` section;
* :mod:`~tradebus.config.strategy` -- strategy entries and their cross-checks;
* :mod:`~tradebus.config.run` -- :class:`RunBase` (shared by backtest, paper and live configs)
  and the backtest's :class:`RunConfig`;
* :mod:`~tradebus.config.load` -- YAML, ``--set`` overrides, strategy parameter validation.

The names below are importable from ``tradebus.config`` itself; each loads its module on first
use, so a low layer importing :class:`StrictModel` does not pull in the run configs (which import
the execution, risk and feature layers).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tradebus.config.base import StrictModel, config_error_from, describe_errors, resolve_model_paths, resolve_path
    from tradebus.config.units import parse_duration, to_ns
    from tradebus.config.instruments import FeeTierConfig, InstrumentConfig, MarginTierConfig
    from tradebus.config.data import DataConfig, DataSourceConfig, PerpetualDataConfig, TradeBarsConfig
    from tradebus.config.strategy import StrategyConfig, check_strategy_choice, strategy_entries
    from tradebus.config.run import ReportConfig, RunBase, RunConfig, check_starting_balances
    from tradebus.config.load import apply_overrides, dump_config, load_config, parse_config

_MODULE_OF = {
    "StrictModel": "base",
    "config_error_from": "base",
    "describe_errors": "base",
    "resolve_model_paths": "base",
    "resolve_path": "base",
    "parse_duration": "units",
    "to_ns": "units",
    "FeeTierConfig": "instruments",
    "InstrumentConfig": "instruments",
    "MarginTierConfig": "instruments",
    "DataConfig": "data",
    "DataSourceConfig": "data",
    "PerpetualDataConfig": "data",
    "TradeBarsConfig": "data",
    "StrategyConfig": "strategy",
    "check_strategy_choice": "strategy",
    "strategy_entries": "strategy",
    "ReportConfig": "run",
    "RunBase": "run",
    "RunConfig": "run",
    "check_starting_balances": "run",
    "apply_overrides": "load",
    "dump_config": "load",
    "load_config": "load",
    "parse_config": "load",
}

__all__ = [
    "DataConfig",
    "DataSourceConfig",
    "FeeTierConfig",
    "InstrumentConfig",
    "MarginTierConfig",
    "PerpetualDataConfig",
    "ReportConfig",
    "RunBase",
    "RunConfig",
    "StrategyConfig",
    "StrictModel",
    "TradeBarsConfig",
    "apply_overrides",
    "check_starting_balances",
    "check_strategy_choice",
    "config_error_from",
    "describe_errors",
    "dump_config",
    "load_config",
    "parse_config",
    "parse_duration",
    "resolve_model_paths",
    "resolve_path",
    "strategy_entries",
    "to_ns",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
