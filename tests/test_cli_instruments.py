"""``tradebus instruments``: a venue's saved instruments and margin tiers responses as a run config's block.

The block is pasted into a run config and read by :func:`tradebus.config.load_config`; the
instruments it gives must be the venue loaders' own, and their maintenance margins the venues'
published figures (OKX's 1INCH-USDT tiers announcement, Bybit's BTCUSDT mmDeduction, Binance's cum).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tradebus.adapters.registry import VENUES
from tradebus.cli import app
from tradebus.config import load_config
from tradebus.engine.instrument import CloseFee, Instrument

FIX = Path(__file__).parent / "fixtures"
OKX_SWAP = FIX / "okx" / "public_instruments_SWAP_1INCH-USDT_2022-05-13_cut.json"
OKX_TIERS = FIX / "okx" / "public_position-tiers_SWAP_1INCH-USDT_2022-06-09.json"
BYBIT_LINEAR = FIX / "bybit" / "market_instruments-info_linear_2026-08-09_cut.json"
BYBIT_TIERS = FIX / "bybit" / "market_risk-limit_linear_BTCUSDT.json"
BINANCE_USDM = FIX / "binance" / "exchangeInfo_usdm_2021-07-22.json.gz"
BINANCE_TIERS = FIX / "binance" / "fapi_v1_leverageBracket_BTCUSDT.json"
BARS = FIX / "kernel" / "coinbase_btc_usd_4h_2022_1200.csv"

#: venue -> (market, instruments file, tiers file, symbol, instrument id)
CASES = {
    "okx": ("swap", OKX_SWAP, OKX_TIERS, "1INCH-USDT-SWAP", "1INCH-USDT-SWAP.OKX"),
    "bybit": ("linear", BYBIT_LINEAR, BYBIT_TIERS, "BTCUSDT-LINEAR", "BTCUSDT-LINEAR.BYBIT"),
    "binance": ("usdm", BINANCE_USDM, BINANCE_TIERS, "BTCUSDT", "BTCUSDT.BINANCE_USDM"),
}


def _run(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["instruments", *map(str, args)], catch_exceptions=False)
    return result.exit_code, " ".join(result.output.split())


def _load_block(block: str, iid: str, tmp_path: Path) -> list[Instrument]:
    """The instruments of a run config holding ``block`` (its strategy trades ``iid`` on bars)."""
    rest = {
        "data": {"sources": [{"instrument": iid, "file": str(BARS), "kind": "bars"}]},
        "strategy": {"name": "ema_cross", "instruments": [iid], "params": {"fast": 5, "slow": 20, "quantity": 1.0}},
        "initial_cash": 100000.0,
    }
    path = tmp_path / "run.yaml"
    path.write_text(block + yaml.safe_dump(rest, sort_keys=False))
    return [inst.to_instrument() for inst in load_config(path).instruments]


@pytest.mark.parametrize("venue", sorted(CASES))
def test_the_block_loads_back_through_the_config_as_the_venues_instruments_with_tiers(
    venue: str, tmp_path: Path
) -> None:
    market, instruments_file, tiers_file, symbol, iid = CASES[venue]
    code, _ = _run(venue, market, instruments_file, "--tiers", tiers_file, "--symbol", symbol, "--out", tmp_path / "b.yaml")
    assert code == 0
    block = (tmp_path / "b.yaml").read_text()
    assert "# fees are not in these responses: maker_fee and taker_fee stay at their default 0" in block
    (inst,) = _load_block(block, iid, tmp_path)
    adapter = VENUES[venue]
    loaded = adapter.load_instruments(instruments_file, market)[iid]
    assert adapter.load_margin_tiers is not None
    tiers = adapter.load_margin_tiers(tiers_file)[symbol]
    assert inst.margin_tiers == tiers and len(tiers) >= 2
    assert inst == Instrument(**{f: getattr(loaded, f) for f in loaded.__struct_fields__} | {"margin_tiers": tiers})
    assert (inst.maker_fee, inst.taker_fee) == (0.0, 0.0)
    assert inst.maintenance_close_fee == adapter.maintenance_close_fee


def test_okx_block_margins_a_1001_contract_position_at_the_second_tier_on_all_of_it(tmp_path: Path) -> None:
    # OKX's 9 June 2022 announcement: 1,001-2,500 contracts of 1INCH-USDT-SWAP (1 1INCH each) at 1.5 %.
    block = CliRunner().invoke(app, ["instruments", "okx", "swap", str(OKX_SWAP), "--tiers", str(OKX_TIERS)]).output
    (inst,) = _load_block(block, "1INCH-USDT-SWAP.OKX", tmp_path)
    assert (inst.contract_size, inst.tick_size, inst.lot_size, inst.min_quantity) == (1.0, 0.0001, 1.0, 1.0)
    assert inst.maintenance_close_fee == CloseFee.MARK
    assert inst.maintenance_margin(1001.0, 1001.0) == pytest.approx(15.015)
    assert inst.maintenance_margin(1000.0, 1000.0) == pytest.approx(10.0)
    assert [t.max_leverage for t in inst.margin_tiers] == [75.0, 50.0, 20.0, 18.18]


def test_bybit_and_binance_blocks_margin_by_notional_with_the_venues_deductions(tmp_path: Path) -> None:
    out = CliRunner().invoke(app, ["instruments", "bybit", "linear", str(BYBIT_LINEAR), "--tiers", str(BYBIT_TIERS),
                                   "-s", "BTCUSDT-LINEAR"]).output
    (bybit,) = _load_block(out, "BTCUSDT-LINEAR.BYBIT", tmp_path)
    assert bybit.maintenance_margin(2_300_000.0) == pytest.approx(0.0056 * 2_300_000 - 1_200)  # Bybit's mmDeduction
    out = CliRunner().invoke(app, ["instruments", "binance", "usdm", str(BINANCE_USDM), "--tiers", str(BINANCE_TIERS),
                                   "-s", "BTCUSDT.BINANCE_USDM"]).output
    (binance,) = _load_block(out, "BTCUSDT.BINANCE_USDM", tmp_path)
    assert binance.maintenance_bracket(20_000_000.0) == (0.025, pytest.approx(46_300.0))  # the response's cum
    assert (binance.tick_size, binance.lot_size, binance.min_notional) == (0.01, 0.001, 5.0)


def test_without_symbols_or_tiers_every_instrument_of_the_file_is_written_and_loads_back(tmp_path: Path) -> None:
    code, _ = _run("bybit", "linear", BYBIT_LINEAR, "--out", tmp_path / "b.yaml")
    block = (tmp_path / "b.yaml").read_text()
    assert code == 0 and "no margin tiers (--tiers)" in block
    insts = _load_block(block, "BTCUSDT-LINEAR.BYBIT", tmp_path)
    assert insts == list(VENUES["bybit"].load_instruments(BYBIT_LINEAR, "linear").values())
    assert [i.symbol for i in insts] == ["BTCUSDT-LINEAR", "DOGEUSDT-LINEAR", "ETHUSDT-LINEAR", "SOLUSDT-LINEAR"]


def test_an_existing_out_file_is_kept_without_force(tmp_path: Path) -> None:
    out = tmp_path / "b.yaml"
    out.write_text("mine\n")
    code, output = _run("okx", "swap", OKX_SWAP, "--out", out)
    assert code == 2 and "the file exists; give --force to overwrite it" in output
    assert out.read_text() == "mine\n"
    code, _ = _run("okx", "swap", OKX_SWAP, "--out", out, "--force")
    assert code == 0 and "1INCH-USDT-SWAP" in out.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.yaml"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("okx", "swap", OKX_SWAP, "--tiers", BYBIT_TIERS), "--tiers: not okx's margin tiers response"),
        (("okx", "swap", OKX_SWAP, "--tiers", BINANCE_TIERS), "--tiers: not okx's margin tiers response"),
        (("bybit", "linear", BYBIT_LINEAR, "-s", "BTCUSDT-LINEAR", "--tiers", OKX_TIERS),
         "--tiers: not bybit's margin tiers response"),
        (("binance", "usdm", BINANCE_USDM, "-s", "BTCUSDT", "--tiers", OKX_TIERS),
         "got an object with keys ['code', 'data', 'msg']: another venue's tiers"),
        (("binance", "usdm", BINANCE_USDM, "-s", "BTCUSDT", "--tiers", BYBIT_TIERS), "not a binance leverageBracket"),
        (("okx", "spot", FIX / "okx" / "public_instruments_SPOT_2022-05-13_cut.json", "-s", "BTC-USDT", "--tiers",
          OKX_TIERS), "BTC-USDT.OKX is a spot instrument: margin tiers are a perpetual's"),
        (("bybit", "linear", BYBIT_LINEAR, "--tiers", BYBIT_TIERS),
         "no margin tiers of DOGEUSDT-LINEAR.BYBIT, ETHUSDT-LINEAR.BYBIT, SOLUSDT-LINEAR.BYBIT (the file has tiers "
         "of BTCUSDT-LINEAR)"),
        (("binance", "usdm", BINANCE_USDM, "-s", "BTCUSTD"), "--symbol BTCUSTD: no such instrument in"),
        # in the file, but no instrument tradebus loads: the error said only "no such instrument in" the file
        (("binance", "usdm", BINANCE_USDM, "-s", "BTCUSDT_210924"),
         "of those tradebus loads (spot pairs and linear perpetuals trading now; inverse and dated contracts"),
        (("okx", "swap", BYBIT_LINEAR), "INSTRUMENTS_FILE: not okx's swap instruments response"),
        # OKX's and Bybit's loaders take the market from the response: a file of another market is refused,
        # not written under a header naming the market given
        (("okx", "spot", OKX_SWAP), "INSTRUMENTS_FILE: 1INCH-USDT-SWAP.OKX is a perpetual, not an okx spot instrument"),
        (("okx", "swap", FIX / "okx" / "public_instruments_SPOT_2022-05-13_cut.json"),
         "INSTRUMENTS_FILE: BTC-USDT.OKX and 3 more are spot instruments, not okx swap ones"),
        (("binance", "spot", BINANCE_USDM), "not binance's spot instruments response: exchangeInfo symbol BTCUSDT: "
         "has a contractType: a futures exchangeInfo, not spot's"),
        (("bybit", "spot", BYBIT_LINEAR, "-s", "BTCUSDT-LINEAR"),
         "INSTRUMENTS_FILE: BTCUSDT-LINEAR.BYBIT and 3 more are perpetuals, not bybit spot instruments"),
        (("okx", "swap", FIX / "okx" / "nope.json"), "INSTRUMENTS_FILE: no such file"),
        (("okx", "perp", OKX_SWAP), "MARKET: 'perp' is not a market of okx"),
        (("kraken", "spot", OKX_SWAP), "VENUE: 'kraken' is not a known venue"),
    ],
)
def test_bad_input_is_refused_naming_what_with_exit_2(args: tuple[str | Path, ...], message: str, tmp_path: Path) -> None:
    code, output = _run(*args, "--out", tmp_path / "b.yaml")
    assert code == 2
    assert message in output
    assert not (tmp_path / "b.yaml").exists()
