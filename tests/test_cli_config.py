"""Run config: durations, times, path resolution, validation messages, resolved dump."""

from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tradebus.config import dump_config, load_config, parse_config, parse_duration, to_ns
from tradebus.errors import ConfigError


def minimal() -> dict[str, Any]:
    return {
        "data": {
            "catalog": "cat",
            "sources": [{"instrument": "BTCUSDT.BINANCE", "dataset": "binance/spot/BTCUSDT/bars_1m"}],
        },
        "instruments": [{"venue": "BINANCE", "symbol": "BTCUSDT", "tick_size": 0.01, "lot_size": 1e-5}],
        "strategy": {
            "name": "ema_cross",
            "instruments": ["BTCUSDT.BINANCE"],
            "params": {"fast": 5, "slow": 20, "quantity": 0.01},
        },
    }


@pytest.mark.parametrize(("text", "ns"), [("1m", 60 * 10**9), ("4h", 4 * 3600 * 10**9), ("1d", 86_400 * 10**9),
                                          ("250ms", 250 * 10**6), (" 2 w ", 2 * 604_800 * 10**9), (17, 17)])
def test_parse_duration(text: str | int, ns: int) -> None:
    assert parse_duration(text) == ns


@pytest.mark.parametrize("bad", ["", "1y", "h", "-1h", "0s", 0, True])
def test_parse_duration_rejects(bad: Any) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_to_ns_treats_naive_and_dates_as_utc() -> None:
    assert to_ns(date(2024, 1, 1)) == 1_704_067_200 * 10**9
    assert to_ns(datetime(2024, 1, 1, 0, 0, 1, 5)) == 1_704_067_201 * 10**9 + 5_000


def test_defaults_are_filled_and_paths_resolved_against_the_config_directory(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "run.yaml"
    path.write_text(yaml.safe_dump(minimal()))
    config = load_config(path)
    assert config.data.catalog == (tmp_path / "conf" / "cat").resolve()
    assert config.strategy.params == {"fast": 5, "slow": 20, "mode": "long_only", "quantity": 0.01}
    assert config.initial_cash == 100_000.0
    assert config.venue.fill_on == "bars" and config.risk.max_position is None
    again = parse_config(yaml.safe_load(dump_config(config)))
    assert again == config


def test_catalog_is_required_for_a_dataset_source() -> None:
    data = minimal()
    del data["data"]["catalog"]
    with pytest.raises(ConfigError, match="data: 'catalog' is required"):
        parse_config(data, "x.yaml")


def test_every_problem_is_listed_with_the_file_name() -> None:
    data = minimal()
    data["instruments"][0]["lot_size"] = 0
    data["initial_cash"] = -5
    data["data"]["sources"][0]["dataset"] = "binance/BTCUSDT"
    with pytest.raises(ConfigError) as info:
        parse_config(data, "conf/run.yaml")
    text = str(info.value)
    assert text.startswith("conf/run.yaml: invalid config:")
    for field in ("instruments.0.lot_size", "initial_cash", "data.sources.0.dataset"):
        assert field in text


def test_file_and_dataset_are_mutually_exclusive_and_start_must_precede_end() -> None:
    data = minimal()
    data["data"]["sources"][0]["file"] = "x.csv"
    with pytest.raises(ConfigError, match="exactly one of 'dataset'"):
        parse_config(data)
    data = minimal()
    data["data"].update(start="2024-02-01", end="2024-01-01")
    with pytest.raises(ConfigError, match="must be before end"):
        parse_config(data)


@pytest.mark.parametrize("key", ["start", "end"])
@pytest.mark.parametrize(("written", "ns"), [("2024-01-01T00:00:00.123456789Z", 1_704_067_200_123_456_789),
                                             ("'2024-01-01T00:00:00.123456789Z'", 1_704_067_200_123_456_789),
                                             ("2024-01-01T01:00:00.000000789+01:00", 1_704_067_200_000_000_789),
                                             ("2024-01-01 00:00:00.0000001", 1_704_067_200_000_000_100),
                                             # YAML's own timestamp forms, which pydantic does not read
                                             ("2024-01-01 02:00:00.123456789 +02:00", 1_704_067_200_123_456_789),
                                             ("2024-01-01T02:00:00.123456789+02", 1_704_067_200_123_456_789),
                                             ("2024-1-1 00:00:00.123456789 Z", 1_704_067_200_123_456_789)])
def test_a_data_bound_finer_than_a_microsecond_is_kept_to_the_nanosecond_and_written_back(
    tmp_path: Path, key: str, written: str, ns: int
) -> None:
    """Unquoted, YAML read ...00.123456789Z as ...00.123456 and quoted pydantic did (the run started 789 ns early);
    then such a bound was refused, though the library's own advice (set data.start to <a receive time in ns>)
    names one. It is now kept to the nanosecond (1,704,067,200,123,456,789: pandas' and the hand-derived ns), in a
    file, a --set and the config.yaml a run writes (a rerun of it is the same config), pickled and copied. A YAML
    timestamp pydantic cannot read (a space before the offset, an offset of hours alone, a one-digit month), which
    YAML reads to the microsecond, was refused with nanoseconds ('unexpected extra characters')."""
    import copy
    import pickle

    path = tmp_path / "run.yaml"
    text = yaml.safe_dump(minimal())
    path.write_text(text.replace("data:\n", f"data:\n  {key}: {written}\n", 1))
    config = load_config(path)
    assert getattr(config.data, f"{key}_ns") == ns
    path.write_text(text)
    assert getattr(load_config(path, overrides=[f"data.{key}={written}"]).data, f"{key}_ns") == ns
    (tmp_path / "again.yaml").write_text(dump_config(config))
    again = load_config(tmp_path / "again.yaml")
    assert getattr(again.data, f"{key}_ns") == ns and dump_config(again) == dump_config(config)
    for kept in (pickle.loads(pickle.dumps(config)), copy.deepcopy(config), config.model_copy()):
        assert getattr(kept.data, f"{key}_ns") == ns


def test_a_written_config_of_dates_reloads_to_the_same_text(tmp_path: Path) -> None:
    """data.start 2024-01-01 is written to config.yaml as '2024-01-01' (quoted); read back, pydantic took that text
    for a datetime, which a rerun wrote as '2024-01-01T00:00:00': the rerun's config.yaml differed. Now a date's text
    is read as a date (the same midnight UTC, 1,704,067,200 s) and the rewritten file is the same."""
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(minimal()).replace("data:\n", "data:\n  start: 2024-01-01\n  end: 2024-01-02\n", 1))
    config = load_config(path)
    written = dump_config(config)
    assert "start: '2024-01-01'" in written and "end: '2024-01-02'" in written
    (tmp_path / "again.yaml").write_text(written)
    again = load_config(tmp_path / "again.yaml")
    assert (again.data.start_ns, again.data.end_ns) == (1_704_067_200 * 10**9, 1_704_153_600 * 10**9)
    assert dump_config(again) == written


def test_a_data_bound_to_the_microsecond_a_date_or_a_timestamp_is_taken_to_the_nanosecond() -> None:
    import pandas as pd

    for given in ("2024-01-01T00:00:00.123456000Z", "2024-01-01T00:00:00.123456Z",
                  pd.Timestamp("2024-01-01T00:00:00.123456", tz="UTC")):
        data = minimal()
        data["data"]["start"] = given
        config = parse_config(data)
        assert config.data.start_ns == pd.Timestamp("2024-01-01T00:00:00.123456", tz="UTC").value
        assert yaml.safe_load(dump_config(config))["data"]["start"] == "2024-01-01T00:00:00.123456Z"
    data = minimal()
    data["data"].update(start=date(2024, 1, 1), end=pd.Timestamp("2024-01-01T00:00:00.000000001", tz="UTC"))
    config = parse_config(data)
    assert (config.data.start_ns, config.data.end_ns) == (1_704_067_200_000_000_000, 1_704_067_200_000_000_001)
    dumped = yaml.safe_load(dump_config(config))["data"]
    assert (dumped["start"], dumped["end"]) == ("2024-01-01", "2024-01-01T00:00:00.000000001Z")
    data["data"].update(start="2024-01-01T00:00:00.000000001Z", end="2024-01-01T00:00:00.000000001Z")
    with pytest.raises(ConfigError, match=r"data: .*must be before end"):
        parse_config(data)
    data["data"].update(start="2024-01-01T00:00:00.0000000001Z", end=None)
    with pytest.raises(ConfigError, match=r"data\.start: .*finer than a nanosecond \(10 digits after the second\)"):
        parse_config(data)


def test_duplicate_instruments_and_unknown_strategy_instrument_are_rejected() -> None:
    data = minimal()
    data["instruments"].append(dict(data["instruments"][0]))
    with pytest.raises(ConfigError, match="duplicate instrument ids"):
        parse_config(data)
    data = minimal()
    data["strategy"]["instruments"] = ["ETHUSDT.BINANCE"]
    with pytest.raises(ConfigError, match="strategy.instruments.0"):
        parse_config(data)


def test_top_level_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match="expected a mapping"):
        parse_config(["data"], "list.yaml")


def test_extra_feature_specs_are_validated() -> None:
    data = minimal()
    data["features"] = [{"name": "vol", "kind": "ewm_std", "params": {"span": 20}, "input": "close", "colour": 1}]
    with pytest.raises(ConfigError, match="features.0.colour: unknown key"):
        parse_config(data)


def test_a_misspelt_key_names_the_key_it_is_close_to() -> None:
    """data.strat: 2020-01-01 said only 'unknown key (not allowed here)'."""
    data = minimal()
    data["data"]["strat"] = "2020-01-01"
    data["instruments"][0]["tick"] = 0.01
    data["zzz"] = 1
    with pytest.raises(ConfigError) as info:
        parse_config(data, "run.yaml")
    lines = str(info.value).splitlines()[1:]
    assert sorted(line.strip() for line in lines) == [
        "data.strat: unknown key (not allowed here), did you mean 'start'?",
        "instruments.0.tick: unknown key (not allowed here), did you mean 'tick_size'?",
        "zzz: unknown key (not allowed here)",
    ]


@pytest.mark.parametrize("name", ["quickstart.yaml", "ema_cross_long_short.yaml"])
def test_shipped_backtest_configs_are_valid(name: str) -> None:
    config = load_config(Path(__file__).resolve().parent.parent / "configs" / name)
    assert config.data.catalog is not None and config.data.catalog.name == "catalog"


@pytest.mark.parametrize(
    ("venue", "message"),
    [
        ({"fill_on": "bars", "book": {"queue_model": "prob_log"}}, "venue.book: these settings act only with fill_on: book"),
        ({"fill_on": "trades", "bar_path": "stop_first"}, "venue.bar_path: acts only with fill_on: bars"),
    ],
)
def test_a_fill_model_setting_the_venue_would_ignore_is_an_error(venue: dict[str, Any], message: str) -> None:
    data = minimal()
    data["venue"] = venue
    with pytest.raises(ConfigError, match=message):
        parse_config(data)
    # with its own fill model the setting is taken, and a dump (every default spelt out) reloads
    data["venue"]["fill_on"] = "book" if "book" in venue else "bars"
    if "book" in venue:  # a book venue needs the book of the instrument
        data["data"]["sources"].append(
            {"instrument": "BTCUSDT.BINANCE", "kind": "book", "dataset": "binance/spot/BTCUSDT/book"}
        )
    config = parse_config(data)
    assert parse_config(yaml.safe_load(dump_config(config))) == config


@pytest.mark.parametrize(
    ("setting", "needs"),
    [
        ({"slippage_bps": 50.0}, "bars, trades or quotes"),
        ({"slippage": {"model": "fixed", "bps": 50.0}}, "bars, trades or quotes"),
        ({"limit_fill": "through"}, "bars, trades or quotes"),
        ({"trade_size_limit": True}, "trades or quotes"),
    ],
)
def test_a_cost_or_fill_setting_a_book_venue_ignores_is_an_error(setting: dict[str, Any], needs: str) -> None:
    """``venue: {fill_on: book, slippage_bps: 50}`` ran with the book's prices, unslipped: a market
    buy of 2.0 over asks 1.0 @ 100.0 and 1.0 @ 100.1 filled at 100.0 and 100.1, not 50 bps worse, and
    nothing said so (likewise ``slippage``, ``limit_fill: through``, ``trade_size_limit``). Each is
    now an error naming it; with fill_on: trades the same setting is taken."""
    data = minimal()
    data["data"]["sources"].append({"instrument": "BTCUSDT.BINANCE", "kind": "book", "dataset": "binance/spot/BTCUSDT/book"})
    data["venue"] = {"fill_on": "book", **setting}
    name = next(iter(setting))
    with pytest.raises(ConfigError, match=rf"venue.{name}: acts only with fill_on: {needs} \(this venue fills on book"):
        parse_config(data)
    data["venue"]["fill_on"] = "trades"
    data["data"]["sources"].append({"instrument": "BTCUSDT.BINANCE", "kind": "trades", "dataset": "binance/spot/BTCUSDT/trades"})
    config = parse_config(data)
    assert parse_config(yaml.safe_load(dump_config(config))) == config


def test_a_bar_path_is_an_error_when_fill_on_left_out_falls_to_trades() -> None:
    """``venue: {bar_path: stop_first}`` over trades only was checked against the default ``fill_on``, bars,
    then the run filled on the trades it replays (:func:`default_fill_on`) with ``bar_path`` silently ignored."""
    data = minimal()
    data["data"]["sources"] = [{"instrument": "BTCUSDT.BINANCE", "kind": "trades", "dataset": "binance/spot/BTCUSDT/trades",
                                "bars": {"mode": "time", "interval": "1m"}}]
    data["venue"] = {"bar_path": "stop_first"}
    with pytest.raises(ConfigError, match=r"venue.bar_path: acts only with fill_on: bars \(this venue fills on trades\)"):
        parse_config(data)
    del data["venue"]["bar_path"]
    assert parse_config(data).venue.fill_on == "trades"


@pytest.mark.parametrize(
    ("setting", "limit"),
    [
        ({"order_rate_window_ns": 5_000_000_000}, {"max_orders_per_window": 3}),
        ({"drawdown_action": "reduce"}, {"max_drawdown_pct": 10.0}),
        ({"daily_loss_action": "reduce"}, {"max_daily_loss_pct": 2.0}),
        ({"loss_streak_action": "reduce"}, {"max_consecutive_losses": 4}),
    ],
)
def test_a_risk_setting_without_the_limit_it_acts_with_is_an_error(setting: dict[str, Any], limit: dict[str, Any]) -> None:
    """The run loaded and ignored it: no order rate and no breaker acts without its limit."""
    ((name, value),), ((needed, _),) = setting.items(), limit.items()
    data = minimal()
    data["risk"] = dict(setting)
    with pytest.raises(ConfigError) as err:
        parse_config(data, "run.yaml")
    assert str(err.value) == (
        f"run.yaml: invalid config:\n  risk: {name} {value!r} acts only with {needed}, which is not set "
        f"(set {needed} or remove {name})"
    )
    data["risk"] = {**setting, **limit}  # with its limit the setting is taken, and a dump reloads
    config = parse_config(data)
    assert getattr(config.risk, name) == value
    assert parse_config(yaml.safe_load(dump_config(config))) == config
    plain = parse_config(minimal())  # every default spelt out, no limit: still loads
    assert parse_config(yaml.safe_load(dump_config(plain))) == plain


@pytest.mark.parametrize(
    ("name", "value", "needed"),
    [
        ("order_rate_window_ns", 1_000_000_000, "max_orders_per_window"),
        ("drawdown_action", "halt", "max_drawdown_pct"),
        ("daily_loss_action", "halt", "max_daily_loss_pct"),
        ("loss_streak_action", "halt", "max_consecutive_losses"),
    ],
)
def test_a_risk_setting_written_at_its_default_without_its_limit_is_an_error(name: str, value: Any, needed: str) -> None:
    """``drawdown_action: halt`` alone loaded and acted on nothing (only a value other than the default was
    refused). A dumped config, which writes the limit too (``null``), still loads."""
    data = minimal()
    data["risk"] = {name: value}
    with pytest.raises(ConfigError) as err:
        parse_config(data, "run.yaml")
    assert str(err.value) == (
        f"run.yaml: invalid config:\n  risk: {name} {value!r} acts only with {needed}, which is not set "
        f"(set {needed} or remove {name})"
    )
    data["risk"] = {name: value, needed: None}  # as dump_config writes it
    assert getattr(parse_config(data).risk, name) == value


@pytest.mark.parametrize("fill_on", ["book", "trades", "quotes"])
def test_a_venue_filling_on_data_the_run_does_not_replay_is_an_error(fill_on: str) -> None:
    """Bars only and ``fill_on: book`` (or trades, quotes): no order would ever arrive or fill. The
    run exited 0 with 0 fills and every later order denied behind the first one, never filled."""
    data = minimal()
    data["venue"] = {"fill_on": fill_on}
    with pytest.raises(ConfigError, match=(
        rf"venue.fill_on: '{fill_on}' matches orders on {fill_on} data, but the run replays only bars "
        r"for BTCUSDT.BINANCE \(strategy\): no order would ever fill"
    )):
        parse_config(data)
    data["data"]["sources"].append(
        {"instrument": "BTCUSDT.BINANCE", "kind": fill_on, "dataset": f"binance/spot/BTCUSDT/{fill_on}"}
    )
    assert parse_config(data).venue.fill_on == fill_on


SHIPPED = Path(__file__).resolve().parent.parent / "configs"


@pytest.mark.parametrize("path", sorted(SHIPPED.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads_with_its_loader(path: Path) -> None:
    from tradebus.node.config import load_paper_config
    from tradebus.node.live import load_live_config
    from tradebus.research.config import load_research_config
    from tradebus.sweep.space import load_space

    keys = set(yaml.safe_load(path.read_text()))
    if "live" in keys:
        load_live_config(path)
    elif "feeds" in keys:
        load_paper_config(path)
    elif "data" in keys:
        load_config(path)
    elif "dataset" in keys:
        load_research_config(path)
    else:
        assert "params" in keys, sorted(keys)
        load_space(path)


@pytest.mark.parametrize(
    ("source", "what"),
    [
        ({"dataset": "binance/spot/BTCUSDT/bars_1m", "interval": "1m"}, "not of a catalog dataset"),
        ({"dataset": "binance/spot/BTCUSDT/bars_1m", "bar_time": "open"}, "not of a catalog dataset"),
        ({"file": "trades.csv", "kind": "trades", "bar_time": "close"}, "not of a trades file"),
    ],
)
def test_bar_file_settings_on_another_source_are_an_error(source: dict[str, Any], what: str) -> None:
    """``interval`` and ``bar_time`` are read only when a bar file is parsed: elsewhere they were ignored."""
    data = minimal()
    data["data"]["sources"] = [{"instrument": "BTCUSDT.BINANCE", **source}]
    with pytest.raises(ConfigError, match=f"data.sources.0: interval, bar_time: .*{what}"):
        parse_config(data)
    # on a bar file they are taken
    data["data"]["sources"] = [{"instrument": "BTCUSDT.BINANCE", "file": "bars.csv", "interval": "1m", "bar_time": "open"}]
    assert parse_config(data).data.sources[0].bar_time == "open"


@pytest.mark.parametrize("fee", [float("nan"), 5.0, -0.5])
def test_a_venue_fee_override_outside_an_instruments_bounds_is_an_error(fee: float) -> None:
    """venue.taker_fee: .nan ran until the first fill and died (exit 1); 5 (500 %) and -0.5 ran."""
    data = minimal()
    data["venue"] = {"taker_fee": fee}
    with pytest.raises(ConfigError, match=r"venue\.taker_fee: Input should be"):
        parse_config(data, "run.yaml")
    data["venue"] = {"maker_fee": -0.0002, "taker_fee": 0.001}
    assert parse_config(data).venue.maker_fee == -0.0002


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ({"initial_cash": float("inf")}, "initial_cash"),
        ({"balances": {"USDT": float("inf")}}, "balances.USDT"),
        ({"venue": {"slippage_bps": float("inf")}}, "venue.slippage_bps"),
        ({"venue": {"slippage": {"model": "fixed", "bps": float("inf")}}}, "venue.slippage.bps"),
    ],
)
def test_an_infinite_amount_of_money_or_slippage_is_an_error(section: dict[str, Any], field: str) -> None:
    """initial_cash or a balance of .inf stopped with exit 1 naming no config field; an infinite
    slippage ran until the first fill and died with an OverflowError traceback."""
    data = minimal()
    data["instruments"][0].update(base="BTC", quote="USDT")
    data.update(section)
    with pytest.raises(ConfigError, match=rf"{field}: Input should be a finite number"):
        parse_config(data, "run.yaml")


@pytest.mark.parametrize(
    ("venue", "field", "got"),
    [
        ({"slippage_bps": 20_000.0}, "venue.slippage_bps", "20000.0"),
        ({"slippage_bps": 10_000.0}, "venue.slippage_bps", "10000.0"),
        ({"slippage": {"model": "fixed", "bps": 10_000.0}}, "venue.slippage.bps", "10000.0"),
        ({"slippage": {"model": "volume", "bps": 1.0, "impact_bps": 30.0, "max_bps": 12_000.0}}, "venue.slippage.max_bps", "12000.0"),
    ],
)
def test_a_slippage_of_100_percent_or_more_is_an_error_naming_the_key_and_the_bound(venue: dict[str, Any], field: str, got: str) -> None:
    """venue.slippage_bps: 20000 loaded, and every sell slipped to 100.0 * (1 - 2) = -100.0 was canceled at
    fill time ("not positive once rounded"); 10,000 bps sells at 0. The bound is below 10,000 bps, a model's
    ``max_bps`` too (its slippage reaches it); 9,999.5 (a sell at 0.005 % of the price) loads."""
    data = minimal()
    data["venue"] = venue
    with pytest.raises(ConfigError, match=rf"{re.escape(field)}: Input should be less than 10000 \(got {got}\)"):
        parse_config(data, "run.yaml")
    data["venue"] = {"slippage_bps": 9_999.5}
    assert parse_config(data).venue.slippage_bps == 9_999.5


@pytest.mark.parametrize("field", ["tick_size", "lot_size", "min_notional", "min_quantity", "contract_size"])
def test_an_infinite_instrument_size_is_an_error(field: str) -> None:
    """min_notional: .inf was accepted (every order denied, exit 0); an infinite tick or lot broke every price."""
    data = minimal()
    data["instruments"][0][field] = float("inf")
    with pytest.raises(ConfigError, match=rf"instruments\.0\.{field}: Input should be a finite number"):
        parse_config(data, "run.yaml")


@pytest.mark.parametrize(("name", "what"), [("pairs_btc_venues", "pairs trading"), ("xs_momentum", "cross-sectional momentum")])
def test_a_universe_strategy_given_one_instrument_names_the_instruments_field(name: str, what: str) -> None:
    path = Path(__file__).resolve().parent.parent / "configs" / f"{name}.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["strategy"]["instruments"] = data["strategy"]["instruments"][:1]
    with pytest.raises(ConfigError) as info:
        parse_config(data, str(path), path.parent)
    assert f"{path}: strategy.instruments: {what} needs at least two instruments, got 1" in str(info.value)
