"""The venue registry: every venue is reached by name through the same objects."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradebus.adapters.common.feed import FeedConfig
from tradebus.adapters.common.local_server import VenueProtocol
from tradebus.adapters.registry import VENUES, venue_adapter

FIX = Path(__file__).parent.parent / "fixtures"
#: venue -> (market, saved instruments response, an instrument id it holds and its tick size)
INSTRUMENTS = {
    "binance": ("spot", FIX / "binance" / "exchangeInfo_spot_2021-10-12.json.gz", "BTCUSDT.BINANCE", 0.01),
    "okx": ("spot", FIX / "okx" / "public_instruments_SPOT_2022-05-13_cut.json", "BTC-USDT.OKX", 0.1),
    "bybit": ("linear", FIX / "bybit" / "market_instruments-info_linear_2026-08-09_cut.json", "BTCUSDT-LINEAR.BYBIT", 0.1),
}


def test_the_registry_holds_the_three_venues_by_name() -> None:
    assert sorted(VENUES) == ["binance", "bybit", "okx"]
    assert all(adapter.name == name for name, adapter in VENUES.items())
    with pytest.raises(KeyError, match="'kraken' is not a known venue; use one of"):
        venue_adapter("kraken")


@pytest.mark.parametrize("venue", sorted(INSTRUMENTS))
def test_each_venue_loads_its_instruments_through_the_registry(venue: str) -> None:
    market, path, iid, tick = INSTRUMENTS[venue]
    instruments = VENUES[venue].load_instruments(path, market)
    assert instruments[iid].tick_size == tick
    # No instruments response holds the account's fees: none is invented (a run config sets them).
    assert {(inst.maker_fee, inst.taker_fee) for inst in instruments.values()} == {(0.0, 0.0)}


@pytest.mark.parametrize("venue", ["binance", "okx", "bybit"])
def test_each_venue_has_a_local_emulator(venue: str) -> None:
    assert isinstance(VENUES[venue].emulator([], None, False), VenueProtocol)


def test_a_feed_config_of_an_unregistered_venue_is_refused_naming_the_venues() -> None:
    with pytest.raises(ValueError, match=r"venue: 'kraken' is not a known venue; use one of \['binance', 'bybit', 'okx'\]"):
        FeedConfig(venue="kraken", market="spot", subscriptions={"BTCUSD.KRAKEN": ["trade"]})


@pytest.mark.parametrize(
    ("venue", "market", "channels", "error"),
    [
        ("binance", "spot", ["trade", "aggTrade"], "counted twice"),
        ("okx", "spot", ["trades", "trades-all"], "counted twice"),
        ("binance", "spot", ["markPrice"], "only for market 'usdm'"),
        ("okx", "spot", ["candle1m"], None),
        ("okx", "spot", ["candle1x"], "'candle1x' is not an OKX candle channel; use one of candle1s, candle1m,"),
        # OKX's candle channels: a bar size it does not offer is refused before start-up, not at subscription.
        ("okx", "spot", ["candle7H"], r"subscriptions.X.Y: 'candle7H' is not an OKX candle channel; use one of .*candle12H"),
        ("okx", "spot", ["candle2m"], "'candle2m' is not an OKX candle channel"),
        ("okx", "spot", ["candle4Hutc"], "'candle4Hutc' is not an OKX candle channel"),
        ("okx", "spot", ["candle6Mutc"], "'candle6Mutc' is not an OKX candle channel"),
        ("okx", "spot", ["candle1Y"], None),
        ("okx", "spot", ["candle1Yutc"], None),
        ("okx", "spot", ["candle6Hutc"], None),
        ("bybit", "linear", ["orderbook.50"], None),
        ("bybit", "linear", ["orderbook.51"], "unknown bybit channel"),
    ],
)
def test_venue_channel_rules_come_from_the_venue_package(
    venue: str, market: str, channels: list[str], error: str | None
) -> None:
    def build() -> FeedConfig:
        business = venue == "okx" and channels[0].startswith("candle")  # OKX serves candles on /ws/v5/business only
        url = "wss://ws.okx.com:8443/ws/v5/business" if business else None
        return FeedConfig(venue=venue, market=market, ws_url=url, subscriptions={"X.Y": channels})

    if error is None:
        assert build().has_book("X.Y") == channels[0].startswith(VENUES[venue].book_channels)
    else:
        with pytest.raises(ValueError, match=error):
            build()


@pytest.mark.parametrize(("venue", "market", "channel", "channels"), [
    ("binance", "spot", "trades", "aggTrade, bookTicker, depth, kline, markPrice, trade, kline_<interval>"),
    ("okx", "spot", "book", "bbo-tbt, books, books-l2-tbt, books5, books50-l2-tbt, funding-rate, mark-price, tickers, "
                            "trades, trades-all, candle<bar>"),
    ("bybit", "linear", "orderbook.51", "kline.<1|3|5|15|30|60|120|240|360|720|D|W|M>, orderbook.<1|50|200|500|1000>, "
                                        "publicTrade, tickers"),
])
def test_an_unknown_channel_is_refused_naming_the_venues_channels(venue: str, market: str, channel: str,
                                                                  channels: str) -> None:
    """It read "unknown binance channel 'trades'" alone: which ones the venue has, the user had to find in the code."""
    with pytest.raises(ValueError) as info:
        FeedConfig(venue=venue, market=market, subscriptions={"X.Y": [channel]})
    assert f"subscriptions.X.Y: unknown {venue} channel {channel!r}; a {venue} feed's channels: {channels} " in str(info.value)


@pytest.mark.parametrize(
    ("venue", "market", "keys", "error"),
    [
        ("binance", "usdm", {"depth_speed": "0ms", "snapshot_fetcher": "http", "rest_url": "http://127.0.0.1:9"}, None),
        ("binance", "spot", {"depth_speed": "0ms"}, r"depth_speed: '0ms' is not offered on binance spot"),
        ("binance", "spot", {"snapshot_fetcher": "curl"}, r"snapshot_fetcher: Input should be 'ccxt' or 'http' \(got 'curl'\)"),
        ("binance", "spot", {"depth_sped": "100ms"}, r"depth_sped: unknown key \(not allowed here\), did you mean 'depth_speed'\?; a binance feed's keys: .*depth_speed"),
        ("okx", "spot", {"rest_url": "http://127.0.0.1:9"}, None),
        ("okx", "spot", {"depth_speed": "100ms"}, r"depth_speed: unknown key \(not allowed here\); an okx feed's keys: backoff, "),
        ("bybit", "linear", {"snapshot_fetcher": "ccxt"}, r"snapshot_fetcher: unknown key \(not allowed here\); a bybit feed's keys"),
    ],
)
def test_venue_feed_keys_belong_to_the_venue_and_errors_name_the_key(
    venue: str, market: str, keys: dict[str, str], error: str | None
) -> None:
    def build() -> FeedConfig:
        channel = {"binance": "trade", "okx": "trades", "bybit": "publicTrade"}[venue]
        return FeedConfig(venue=venue, market=market, subscriptions={"X.Y": [channel]}, **keys)  # type: ignore[arg-type]

    if error is None:
        options = VENUES[venue].feed_options
        assert options is not None and options.of(build()).model_dump() == keys
    else:
        with pytest.raises(ValueError, match=error):
            build()
    assert VENUES["bybit"].feed_options is None
