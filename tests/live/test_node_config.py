"""PaperConfig validation: a bad paper config stops before any I/O, naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tradebus.execution.config import VenueConfig
from tradebus.node.config import load_paper_config

from .node_testdata import IID, OKX_IID, OKX_INSTRUMENT, binance_config


def load(tmp: Path, data: dict[str, Any]) -> Any:
    path = tmp / "paper.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return load_paper_config(path)


def test_relative_journal_and_record_paths_resolve_against_the_config_directory(tmp_path: Path) -> None:
    data = binance_config(None, None, ["trade"])
    data |= {"journal": "state/journal.sqlite", "record": "rec/frames.jsonl.gz"}
    config = load(tmp_path, data)
    assert config.journal == tmp_path / "state" / "journal.sqlite"
    assert config.record == tmp_path / "rec" / "frames.jsonl.gz"
    assert config.strategy.params == {"fast": 2, "slow": 8, "source": "trades", "mode": "long_short", "quantity": 0.01}


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("journal", "", "journal: empty: give the file's path"),
        ("journal", "/", "journal: '/' names a directory, not a file"),
        ("journal", ".", "journal: '.' names a directory, not a file"),
        ("record", "/", "record: '/' names a directory, not a file"),
        ("record", " ", "record: empty: give the file's path"),
        ("record", "rec/", "record: 'rec/' names a directory, not a file"),
        ("record", "rec/..", "record: 'rec/..' names a directory, not a file"),
        ("ops", {"log": {"file": ""}}, "ops.log.file: empty: give the file's path"),
    ],
)
def test_a_journal_record_or_log_path_that_can_only_be_a_directory_is_refused_at_load(
    tmp_path: Path, key: str, value: Any, message: str
) -> None:
    # '' and '.' resolved to the config's own directory, '/' to the root: accepted, they failed only in the daemon
    data = binance_config(None, None, ["trade"]) | {key: value}
    with pytest.raises(Exception, match="invalid config") as info:
        load(tmp_path, data)
    assert type(info.value).__name__ == "ConfigError"
    assert str(tmp_path / "paper.yaml") in str(info.value) and message in str(info.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(feed={}), "feed: unknown key"),
        (lambda d: d["feeds"][0].update(market="usdt"), "feeds.0: market: 'usdt' is not a binance market"),
        (lambda d: d["feeds"][0].update(subscriptions={IID: ["books"]}), "unknown binance channel 'books'"),
        (lambda d: d["feeds"][0].update(subscriptions={"ETHUSDT.BINANCE": ["trade"]}), "'ETHUSDT.BINANCE' is not one of"),
        (lambda d: d["feeds"][0].update(subscriptions={IID: ["bookTicker"]}), "venue.fill_on: 'trades' needs one of"),
        (lambda d: d["feeds"][0].update(subscriptions={IID: ["trade", "markPrice"]}), "'markPrice' exists only for"),
        (lambda d: d["feeds"][0].update(stale_after=0), "feeds.0.stale_after"),
        (lambda d: d["strategy"]["params"].update(fast=9), "fast (9) must be smaller than slow (8)"),
        (lambda d: d["strategy"]["params"].update(quantity=1e-9), "strategy.params.quantity"),
        (lambda d: d.update(journal_sync="OFF"), "journal_sync"),
        (
            lambda d: d["feeds"][0].update(subscriptions={IID: ["trade", "aggTrade"]}),
            "feeds.0: subscriptions.BTCUSDT.BINANCE: 'trade' and 'aggTrade' both deliver every trade",
        ),
        (lambda d: d["feeds"][0].update(depth_speed="0ms"), "depth_speed: '0ms' is not offered on binance spot"),
        (lambda d: d["feeds"][0].update(book_max_idle=0), "feeds.0.book_max_idle"),
        # an endpoint without its scheme failed only once the daemon ran (InvalidURI), an empty one meant the default
        (lambda d: d["feeds"][0].update(ws_url="stream.binance.com:9443"),
         "feeds.0.ws_url: 'stream.binance.com:9443' is not a URL starting with ws:// or wss:// and naming a host"),
        (lambda d: d["feeds"][0].update(ws_url=""), "feeds.0.ws_url: '' is not a URL starting with ws:// or wss://"),
        (lambda d: d["feeds"][0].update(rest_url="api.binance.com"),
         "feeds.0: rest_url: 'api.binance.com' is not a URL starting with http:// or https:// and naming a host "
         "(got 'api.binance.com')"),
        # the paper venue never matches the L2 book: these settings were a KeyError or ignored
        (lambda d: d["venue"].update(fill_on="book"), "venue.fill_on: 'book' is for backtests of recorded books"),
        (lambda d: d["venue"].update(book={"queue_model": "prob_log"}), "venue.book: these settings act only with fill_on: book"),
    ],
)
def test_invalid_paper_config_is_a_config_error_naming_the_field(tmp_path: Path, change: Any, message: str) -> None:
    data = binance_config(None, None, ["trade"])
    change(data)
    with pytest.raises(Exception, match="invalid config|strategy.params") as info:
        load(tmp_path, data)
    assert type(info.value).__name__ == "ConfigError"
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("venue", "fill_on"),
    [
        (None, "trades"),
        ({"taker_fee": 0.001}, "trades"),
        ({"taker_fee": 0.001, "fill_on": "trades"}, "trades"),
        ({"taker_fee": 0.001, "fill_on": "bars"}, "bars"),
    ],
    ids=["no-venue", "fee-only", "trades-given", "bars-given"],
)
def test_a_paper_venue_without_fill_on_fills_on_trades_whatever_else_it_sets(
    tmp_path: Path, venue: dict[str, Any] | None, fill_on: str
) -> None:
    """The documented paper default is ``fill_on: trades``; a ``venue:`` with only ``taker_fee: 0.001`` got
    VenueConfig's backtest default ``bars`` instead: adding a fee changed how fills happen (with a kline feed),
    or failed with "'bars' needs one of the binance channels" (with trades only). A ``fill_on`` given is kept."""
    data = binance_config(None, None, ["trade", "kline_1m"])
    data.pop("venue")
    if venue is not None:
        data["venue"] = venue
    config = load(tmp_path, data)
    assert config.venue.fill_on == fill_on
    assert config.venue.taker_fee == (0.001 if venue else VenueConfig().taker_fee)
    data["feeds"][0]["subscriptions"] = {IID: ["trade"]}  # no bars: the default still loads
    if fill_on == "trades":
        assert load(tmp_path, data).venue.fill_on == "trades"


def test_a_paper_venue_without_fill_on_refuses_bar_path_as_it_fills_on_trades(tmp_path: Path) -> None:
    """``venue: {bar_path: high_first}`` with no ``fill_on`` was checked against the backtest default, bars,
    then filled on trades with ``bar_path`` silently ignored; a setting of another fill model is an error."""
    data = binance_config(None, None, ["trade", "kline_1m"])
    data["venue"] = {"bar_path": "high_first"}
    with pytest.raises(Exception, match="invalid config") as info:
        load(tmp_path, data)
    assert type(info.value).__name__ == "ConfigError"
    assert "venue.bar_path: acts only with fill_on: bars (this venue fills on trades)" in str(info.value)
    data["venue"]["fill_on"] = "bars"  # said: bars, the path kept
    assert (load(tmp_path, data).venue.fill_on, load(tmp_path, data).venue.bar_path) == ("bars", "high_first")


def test_one_binance_feed_needs_one_channel_set_and_an_instrument_one_feed(tmp_path: Path) -> None:
    data = binance_config(None, None, ["trade"])
    eth = dict(data["instruments"][0], symbol="ETHUSDT")
    data["instruments"].append(eth)
    data["feeds"][0]["subscriptions"]["ETHUSDT.BINANCE"] = ["trade", "bookTicker"]
    with pytest.raises(Exception, match="needs the same channels"):
        load(tmp_path, data)
    data["feeds"][0]["subscriptions"]["ETHUSDT.BINANCE"] = ["trade"]
    data["feeds"].append(dict(data["feeds"][0], subscriptions={IID: ["trade"]}))
    with pytest.raises(Exception, match=r"feeds.1.subscriptions: 'BTCUSDT.BINANCE' is already fed by feeds.0"):
        load(tmp_path, data)


def test_okx_and_bybit_feeds_take_their_own_channel_names(tmp_path: Path) -> None:
    bybit = {"venue": "BYBIT", "symbol": "BTCUSDT-LINEAR", "tick_size": 0.1, "lot_size": 0.001}
    data = {
        "instruments": [OKX_INSTRUMENT, bybit],
        "strategy": {"name": "tradebus.strategies.tick_ema:TickEmaCross", "instruments": [OKX_IID],
                     "params": {"fast": 2, "slow": 5, "quantity": 0.001}},
        "feeds": [
            {"venue": "okx", "market": "spot", "subscriptions": {OKX_IID: ["trades", "books"]}},
            {"venue": "bybit", "market": "linear",
             "subscriptions": {"BTCUSDT-LINEAR.BYBIT": ["publicTrade", "orderbook.50", "kline.1"]}},
        ],
    }
    config = load(tmp_path, data)
    assert config.feeds[0].has_book(OKX_IID) and config.feeds[1].has_book("BTCUSDT-LINEAR.BYBIT")
    data["instruments"][1] = dict(bybit, symbol="BTCUSDT")
    data["feeds"][1]["subscriptions"] = {"BTCUSDT.BYBIT": ["publicTrade"]}
    with pytest.raises(Exception, match="must end with '-LINEAR'"):
        load(tmp_path, data)


def okx_config(ws_url: str | None, channels: list[str]) -> dict[str, Any]:
    feed = {"venue": "okx", "market": "spot", "subscriptions": {OKX_IID: channels}}
    if ws_url is not None:
        feed["ws_url"] = ws_url
    return {
        "instruments": [OKX_INSTRUMENT],
        "strategy": {"name": "tradebus.strategies.tick_ema:TickEmaCross", "instruments": [OKX_IID],
                     "params": {"fast": 2, "slow": 5, "quantity": 0.001}},
        "feeds": [feed],
    }


def test_okx_trades_and_trades_all_of_one_instrument_are_refused(tmp_path: Path) -> None:
    """A trades push (count 3 ending at id 123) and the trades-all fills 121, 122, 123 were all delivered."""
    load(tmp_path, okx_config("ws://127.0.0.1:9", ["trades-all"]))
    with pytest.raises(Exception) as info:
        load(tmp_path, okx_config("ws://127.0.0.1:9", ["trades", "trades-all"]))
    assert type(info.value).__name__ == "ConfigError"
    assert str(tmp_path / "paper.yaml") in str(info.value)
    assert (f"feeds.0: subscriptions.{OKX_IID}: 'trades' and 'trades-all' both deliver every trade ('trades' "
            "aggregated, 'trades-all' one by one, under different trade ids), so each trade would be counted twice; "
            "subscribe one of them") in str(info.value)


@pytest.mark.parametrize(
    ("ws_url", "channels", "message"),
    [
        (None, ["trades-all"], "OKX serves 'trades-all' only on its business URL (/ws/v5/business), not on ws_url "
                               "'wss://ws.okx.com:8443/ws/v5/public'; give it a feed with ws_url "
                               "wss://ws.okx.com:8443/ws/v5/business"),
        (None, ["trades", "candle1m"], "OKX serves 'candle1m' only on its business URL"),
        ("wss://wspap.okx.com:8443/ws/v5/public/", ["tickers", "trades-all"],
         "not on ws_url 'wss://wspap.okx.com:8443/ws/v5/public/'; give it a feed with ws_url "
         "wss://wspap.okx.com:8443/ws/v5/business"),
        ("wss://ws.okx.com:8443/ws/v5/business", ["trades-all", "books"],
         "OKX serves 'books' only on its public URL (/ws/v5/public), not on ws_url "
         "'wss://ws.okx.com:8443/ws/v5/business'; give it a feed with ws_url wss://ws.okx.com:8443/ws/v5/public"),
        ("wss://ws.okx.com:8443/ws/v5/business", ["trades-all", "candle1H"], None),
        ("wss://wspap.okx.com:8443/ws/v5/business", ["trades-all", "candle1Dutc"], None),
        (None, ["trades", "tickers", "books"], None),
        ("ws://127.0.0.1:9", ["trades-all", "books"], None),  # a local emulator serves every channel
    ],
)
def test_okx_channels_must_be_served_by_the_feed_url(tmp_path: Path, ws_url: str | None, channels: list[str],
                                                     message: str | None) -> None:
    """OKX refuses trades-all and candles on /ws/v5/public (and public channels on /ws/v5/business)."""
    if message is None:
        assert load(tmp_path, okx_config(ws_url, channels)).feeds[0].channels_of(OKX_IID) == channels
        return
    with pytest.raises(Exception) as info:
        load(tmp_path, okx_config(ws_url, channels))
    assert type(info.value).__name__ == "ConfigError"
    assert str(tmp_path / "paper.yaml") in str(info.value)
    assert f"feeds.0: subscriptions.{OKX_IID}: " in str(info.value) and message in str(info.value)


@pytest.mark.parametrize(("venue", "market", "iid", "channel"), [("bybit", "spot", "BTCUSDT.BYBIT", "publicTrade")])
def test_a_rest_url_on_a_feed_without_rest_is_refused(tmp_path: Path, venue: str, market: str, iid: str, channel: str) -> None:
    """A Bybit feed uses no REST endpoint: its ``rest_url`` was accepted and silently ignored (an OKX
    feed's fetches the trades a reconnect missed)."""
    instrument = {"venue": "BYBIT", "symbol": "BTCUSDT", "tick_size": 0.1, "lot_size": 0.001}
    data = {
        "instruments": [instrument],
        "strategy": {"name": "tradebus.strategies.tick_ema:TickEmaCross", "instruments": [iid],
                     "params": {"fast": 2, "slow": 5, "quantity": 0.001}},
        "feeds": [{"venue": venue, "market": market, "subscriptions": {iid: [channel]}}],
    }
    load(tmp_path, data)
    data["feeds"][0]["rest_url"] = "http://127.0.0.1:1"
    with pytest.raises(Exception, match=f"feeds.0: rest_url: unknown key \\(not allowed here\\), did you mean 'ws_url'\\?; an? {venue} feed's keys"):
        load(tmp_path, data)


@pytest.mark.parametrize(("key", "hint"), [("depth_sped", ", did you mean 'depth_speed'?"),
                                           ("stale_afer", ", did you mean 'stale_after'?"), ("throttle", "")])
def test_a_misspelt_feed_key_names_the_closest_one(tmp_path: Path, key: str, hint: str) -> None:
    """A feed's unknown key listed the keys but, unlike every other config section's, named none it was close to."""
    data = binance_config(None, None, ["trade", "depth"])
    data["feeds"][0][key] = "100ms"
    with pytest.raises(Exception) as info:
        load(tmp_path, data)
    assert type(info.value).__name__ == "ConfigError"
    assert (f"feeds.0: {key}: unknown key (not allowed here){hint}; a binance feed's keys: backoff, book_max_idle, "
            "depth_speed, ") in str(info.value)


def test_a_binance_feed_rest_url_reaches_the_depth_snapshots(tmp_path: Path) -> None:
    from tradebus.adapters.binance.client import BinanceFeedHandle

    config = load(tmp_path, binance_config(None, "http://127.0.0.1:9/", ["trade", "depth"]))
    feed = BinanceFeedHandle(config.feeds[0], config.instrument_map(), lambda m: None, live=False, recorder=None,
                             clock_ns=lambda: 0)
    assert feed.binance.rest_base == "http://127.0.0.1:9"
    default = load(tmp_path, binance_config(None, None, ["trade", "depth"]))
    handle = BinanceFeedHandle(default.feeds[0], default.instrument_map(), lambda m: None, live=False, recorder=None,
                               clock_ns=lambda: 0)
    assert handle.binance.rest_base == "https://api.binance.com"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("rest_url", "testnet.binance.vision",
         "live.rest_url: 'testnet.binance.vision' is not a URL starting with http:// or https:// and naming a host"),
        ("ws_api_url", "https://testnet.binance.vision/ws-api/v3",
         "live.ws_api_url: 'https://testnet.binance.vision/ws-api/v3' is not a URL starting with ws:// or wss://"),
    ],
)
def test_a_live_endpoint_that_is_not_a_url_of_its_scheme_is_a_config_error(tmp_path: Path, key: str, value: str,
                                                                           message: str) -> None:
    from tradebus.node.live import load_live_config

    data = yaml.safe_load((Path(__file__).parents[2] / "configs" / "live_binance_testnet.yaml").read_text())
    data["live"][key] = value
    path = tmp_path / "live.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(Exception) as info:
        load_live_config(path)
    assert type(info.value).__name__ == "ConfigError"
    assert str(path) in str(info.value) and message in str(info.value)


def test_a_dumped_paper_config_reloads(tmp_path: Path) -> None:
    """A run's config.yaml spells out every default (venue.book, venue.bar_path ...): it must load again."""
    from tradebus.node.config import dump_paper_config

    config = load(tmp_path, binance_config(None, None, ["trade"]))
    (tmp_path / "dumped.yaml").write_text(dump_paper_config(config), encoding="utf-8")
    assert load_paper_config(tmp_path / "dumped.yaml") == config


@pytest.mark.parametrize("name", ["paper_binance.yaml", "paper_okx.yaml", "paper_bybit.yaml"])
def test_serve_write_config_points_every_feed_at_the_local_server(tmp_path: Path, name: str) -> None:
    """``tradebus serve --config X --write-config Y``: Y loads, its feeds on the server (REST only where a venue uses it)."""
    from tradebus.node.playback import read_local_config, write_local_config

    out = tmp_path / "runs" / name
    path = Path(__file__).resolve().parents[2] / "configs" / name
    venue = name.removeprefix("paper_").removesuffix(".yaml")
    write_local_config(read_local_config(path, venue), path, out, "ws://127.0.0.1:1", "http://127.0.0.1:1")
    config = load_paper_config(out)
    assert all(feed.ws_url == "ws://127.0.0.1:1" for feed in config.feeds)
    rest = [(feed.model_extra or {}).get("rest_url") for feed in config.feeds]
    assert rest == [("http://127.0.0.1:1" if feed.venue in ("binance", "okx") else None) for feed in config.feeds]


def test_serve_write_config_elsewhere_keeps_every_relative_path_of_the_config(tmp_path: Path) -> None:
    """A copy written to another directory must name the files the original names (not the same text relative to the copy)."""
    import json

    from tradebus.node.playback import read_local_config, write_local_config

    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "models.json").write_text(json.dumps({"meta": [], "hazard": []}))
    data = binance_config(None, None, ["trade"])
    data["strategy"] = {"name": "tradebus.strategies.regime_hazard:RegimeHazard", "instruments": [IID],
                        "params": {"models": "models.json", "quantity": 0.01}}
    data.update(journal="state/journal.sqlite", ops={"log": {"file": "logs/daemon.jsonl"}})
    path = configs / "paper_local.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    original = load_paper_config(path)
    out = tmp_path / "elsewhere" / "deeper" / "paper_local.yaml"
    write_local_config(read_local_config(path, "binance"), path, out, "ws://127.0.0.1:1", "http://127.0.0.1:1")
    copy = load_paper_config(out)
    assert copy.journal == original.journal == configs / "state" / "journal.sqlite"
    assert copy.ops is not None and original.ops is not None
    assert copy.ops.log.file == original.ops.log.file == configs / "logs" / "daemon.jsonl"
    assert copy.strategy is not None and original.strategy is not None
    assert copy.strategy.params["models"] == original.strategy.params["models"] == str(configs / "models.json")


@pytest.mark.parametrize(
    ("paths", "message"),
    [
        ({"journal": "runs/p/state.db", "record": "runs/p/state.db"}, "journal and record: both name runs/p/state.db"),
        ({"journal": "runs/p/state.db", "record": "runs/p/../p/state.db"}, "journal and record: both name"),
        ({"journal": "ABSOLUTE/j.sqlite", "record": "j.sqlite"}, "journal and record: both name"),
    ],
    ids=["as-written", "dot-dot", "absolute-and-relative"],
)
def test_a_journal_and_a_recording_sharing_one_file_are_refused_at_load(
    tmp_path: Path, paths: dict[str, Any], message: str
) -> None:
    # journal and record naming one file: the daemon opened the SQLite journal, then appended gzip frames into it
    data = binance_config(None, None, ["trade"]) | {
        k: v.replace("ABSOLUTE", str(tmp_path)) if isinstance(v, str) else v for k, v in paths.items()
    }
    with pytest.raises(Exception, match="give each a file of its own") as info:
        load(tmp_path, data)
    assert type(info.value).__name__ == "ConfigError"
    assert message in str(info.value)
    assert not list(tmp_path.glob("**/*.db")) and not list(tmp_path.glob("**/*.sqlite"))
