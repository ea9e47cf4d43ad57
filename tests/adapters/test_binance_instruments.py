"""Binance instruments from real exchangeInfo responses, and config validation."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from tradebus.adapters.binance.config import BinanceConfig, BinanceMarket
from tradebus.adapters.binance.instruments import instruments_from_exchange_info, load_exchange_info
from tradebus.engine.instrument import Instrument, InstrumentKind
from tradebus.errors import DataError

from .binance_testdata import FIXTURES

SPOT_INFO = FIXTURES / "exchangeInfo_spot_2021-10-12.json.gz"
USDM_INFO = FIXTURES / "exchangeInfo_usdm_2021-07-22.json.gz"


def test_spot_btcusdt_filters() -> None:
    (btc,) = instruments_from_exchange_info(load_exchange_info(SPOT_INFO), BinanceMarket.SPOT, symbols=["BTCUSDT"])
    assert btc.instrument_id == "BTCUSDT.BINANCE" and btc.kind is InstrumentKind.SPOT
    assert (btc.tick_size, btc.lot_size, btc.min_notional, btc.min_quantity) == (0.01, 0.00001, 10.0, 0.00001)
    assert (btc.base, btc.quote) == ("BTC", "USDT")


def test_usdm_btcusdt_perpetual_filters() -> None:
    (btc,) = instruments_from_exchange_info(
        load_exchange_info(USDM_INFO), BinanceMarket.USDM, symbols=["BTCUSDT"], maker_fee=0.0002, taker_fee=0.0004
    )
    assert btc.instrument_id == "BTCUSDT.BINANCE_USDM" and btc.kind is InstrumentKind.PERPETUAL
    assert (btc.tick_size, btc.lot_size, btc.min_notional) == (0.01, 0.001, 5.0)
    assert (btc.maker_fee, btc.taker_fee) == (0.0002, 0.0004)


def test_all_trading_symbols_load_and_delivery_contracts_are_skipped() -> None:
    spot = instruments_from_exchange_info(load_exchange_info(SPOT_INFO), BinanceMarket.SPOT)
    usdm = instruments_from_exchange_info(load_exchange_info(USDM_INFO), BinanceMarket.USDM)
    info = load_exchange_info(USDM_INFO)
    perps = [s for s in info["symbols"] if s["contractType"] == "PERPETUAL" and s["status"] == "TRADING"]
    assert len(usdm) == len(perps) and all(i.kind is InstrumentKind.PERPETUAL for i in usdm)
    spot_info = load_exchange_info(SPOT_INFO)
    assert len(spot) == sum(s["status"] == "TRADING" for s in spot_info["symbols"])


def test_unknown_symbol_and_bad_file_raise_data_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DataError, match="NOPE"):
        instruments_from_exchange_info(load_exchange_info(SPOT_INFO), BinanceMarket.SPOT, symbols=["NOPE"])
    bad = tmp_path / "x.json"
    bad.write_text('{"a": 1}')
    with pytest.raises(DataError, match="symbols"):
        load_exchange_info(bad)


def test_config_streams_and_urls() -> None:
    cfg = BinanceConfig(
        market=BinanceMarket.USDM, symbols=["BTCUSDT", "ETHUSDT"], channels=["aggTrade", "kline", "depth", "markPrice"],
        depth_speed="0ms", ws_url="ws://127.0.0.1:1/", rest_url="http://127.0.0.1:2",
    )
    assert cfg.streams()[:4] == ["btcusdt@aggTrade", "btcusdt@kline_1m", "btcusdt@depth@0ms", "btcusdt@markPrice@1s"]
    assert (cfg.ws_base, cfg.rest_base, cfg.depth_path) == ("ws://127.0.0.1:1", "http://127.0.0.1:2", "/fapi/v1/depth")
    assert cfg.instrument_id("ethusdt") == "ETHUSDT.BINANCE_USDM"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"symbols": ["btcusdt"]}, "upper-case"),
        ({"symbols": []}, "symbols"),
        ({"symbols": ["BTCUSDT"], "channels": ["markPrice"]}, "markPrice"),
        ({"symbols": ["BTCUSDT"], "depth_speed": "0ms"}, "depth_speed"),
        ({"symbols": ["BTCUSDT"], "colour": "red"}, "colour"),
        ({"symbols": ["BTCUSDT"], "channels": ["ticker"]}, "channels"),
    ],
)
def test_bad_config_names_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        BinanceConfig(**kwargs)


@pytest.mark.parametrize(
    ("market", "speed", "stream"),
    [
        (BinanceMarket.SPOT, "100ms", "btcusdt@depth@100ms"),
        (BinanceMarket.SPOT, "1000ms", "btcusdt@depth"),
        (BinanceMarket.USDM, "0ms", "btcusdt@depth@0ms"),
        (BinanceMarket.USDM, "100ms", "btcusdt@depth@100ms"),
        (BinanceMarket.USDM, "250ms", "btcusdt@depth"),
        (BinanceMarket.USDM, "500ms", "btcusdt@depth@500ms"),
    ],
)
def test_depth_speed_gives_the_documented_stream_name(market: BinanceMarket, speed: str, stream: str) -> None:
    config = BinanceConfig(market=market, symbols=["BTCUSDT"], channels=["depth"], depth_speed=speed)
    assert config.streams() == [stream]


def test_trade_and_agg_trade_together_are_refused() -> None:
    with pytest.raises(ValueError, match="'trade' and 'aggTrade' both deliver every trade"):
        BinanceConfig(symbols=["BTCUSDT"], channels=["trade", "aggTrade"])


def test_leverage_brackets_become_margin_tiers_whose_amounts_are_binances_cum() -> None:
    """Binance's BTCUSDT brackets as ``GET /fapi/v1/leverageBracket`` returned them (numbers from
    a recorded response): the maintenance amount derived from the tier table must equal each
    published ``cum`` (independent: Binance computes it, we derive it)."""
    from tradebus.adapters.binance.instruments import margin_tiers_from_brackets

    rows = [  # (initialLeverage, notionalCap, maintMarginRatio, cum)
        (125, 50_000, 0.004, 0.0), (100, 250_000, 0.005, 50.0), (50, 3_000_000, 0.01, 1_300.0),
        (20, 20_000_000, 0.025, 46_300.0), (10, 40_000_000, 0.05, 546_300.0), (5, 100_000_000, 0.1, 2_546_300.0),
        (4, 120_000_000, 0.125, 5_046_300.0), (3, 200_000_000, 0.15, 8_046_300.0),
        (2, 300_000_000, 0.25, 28_046_300.0),
    ]
    brackets = [
        {"bracket": n, "initialLeverage": lev, "notionalCap": cap, "notionalFloor": 0, "maintMarginRatio": mmr, "cum": cum}
        for n, (lev, cap, mmr, cum) in enumerate(rows, start=1)
    ]
    body = json.dumps([{"symbol": "BTCUSDT", "brackets": brackets}])
    tiers = margin_tiers_from_brackets(body)["BTCUSDT"]
    assert [(t.max_notional, t.maintenance_rate, t.max_leverage) for t in tiers] == [
        (float(cap), mmr, float(lev)) for lev, cap, mmr, _ in rows
    ]
    inst = Instrument("BINANCE", "BTCUSDT", kind=InstrumentKind.PERPETUAL, margin_tiers=tiers, leverage=20.0)
    for _, cap, mmr, cum in rows:
        assert inst.maintenance_bracket(cap) == (mmr, pytest.approx(cum))
    brackets[3]["cum"] = 46_000.0
    with pytest.raises(DataError, match="cum 46000.0 of the tier up to 20000000.0 disagrees"):
        margin_tiers_from_brackets(json.dumps([{"symbol": "BTCUSDT", "brackets": brackets}]))


def test_the_leverage_brackets_of_one_symbol_come_as_one_object_and_load_as_a_list_does() -> None:
    """``GET /fapi/v1/leverageBracket?symbol=ETHUSDT`` answers one ``{symbol, brackets}`` object, not a
    list (Binance's docs show both shapes); it was refused as "not a binance leverageBracket response"."""
    from tradebus.adapters.binance.instruments import margin_tiers_from_brackets

    one = {
        "symbol": "ETHUSDT", "notionalCoef": 1.5,
        "brackets": [
            {"bracket": 1, "initialLeverage": 75, "notionalCap": 10_000, "notionalFloor": 0, "maintMarginRatio": 0.0065, "cum": 0},
            {"bracket": 2, "initialLeverage": 50, "notionalCap": 100_000, "notionalFloor": 10_000, "maintMarginRatio": 0.01, "cum": 35},
        ],
    }  # fmt: skip
    tiers = margin_tiers_from_brackets(json.dumps(one))
    assert tiers == margin_tiers_from_brackets(json.dumps([one]))
    assert [(t.max_notional, t.maintenance_rate, t.max_leverage) for t in tiers["ETHUSDT"]] == [
        (10_000.0, 0.0065, 75.0), (100_000.0, 0.01, 50.0),
    ]
    with pytest.raises(DataError, match=r"got an object with keys \['code', 'msg'\]"):
        margin_tiers_from_brackets(json.dumps({"code": -2015, "msg": "Invalid API-key"}))
