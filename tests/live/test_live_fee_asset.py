"""Fees charged in a third asset (Binance's BNB discount) through the live Binance venue and the account emulator.

The emulator charges every fill's fee in BNB at 500 USDT a BNB while its BNB balance covers it
(``commissionAsset``/``N``: ``BNB``); the kernel must book it against BNB, not USDT.
"""

from __future__ import annotations

import asyncio
import csv
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from tests.live.live_harness import KEY, SECRET, harness, until
from tests.live.node_testdata import BINANCE_INSTRUMENT, SPOT_FRAMES, SPOT_SNAPSHOT, binance_config
from tests.live.venue_kits import KITS, KitTape, VenueKit, kit_harness
from tradebus.adapters.binance.private_emulator import BinancePrivateEmulator, MatchingProtocol
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import OrderSide, OrderStatus, OrderType, SubmitOrder, Trade
from tradebus.errors import ConfigError
from tradebus.node.config import parse_paper_config
from tradebus.node.live import ApiKeys, LiveNode, parse_live_config
from tradebus.node.reconcile import Reconciler
from tradebus.reports.outputs import write_outputs
from tradebus.reports.stream import OutputStream
from tradebus.reports.writers import RunDirectory

#: 0.1 % taker fee: a market buy of 0.01 BTC at 60 000 pays 0.6 USDT, i.e. 0.6 / 500 = 0.0012 BNB.
BTC = Instrument("BINANCE", "BTCUSDT", base="BTC", quote="USDT", tick_size=0.01, lot_size=1e-5, taker_fee=0.001)
IID = BTC.instrument_id


async def test_a_fill_charged_in_bnb_debits_bnb_not_the_quote_asset() -> None:
    async with harness(inst=BTC, balances={"USDT": 100_000.0, "BNB": 1.0}) as h:
        h.emulator.fee_in = ("BNB", 500.0)
        buy = h.submit(OrderSide.BUY, 0.01)
        await until(lambda: buy.status is OrderStatus.ACCEPTED)
        h.trade(60_000.0)
        await until(lambda: buy.status is OrderStatus.FILLED)
        (row,) = h.emulator.trades
        assert (row["commissionAsset"], float(row["commission"])) == ("BNB", pytest.approx(0.0012))
        assert h.emulator.balances["USDT"] == 100_000.0 - 600.0  # the venue took no USDT fee
        account = h.kernel.portfolio.account
        # hand-derived: USDT moves by the notional alone, BNB falls by the fee, BTC rises by the quantity
        assert account.balance("USDT") == 100_000.0 - 0.01 * 60_000.0
        assert account.balance("BNB") == pytest.approx(-0.0012, abs=1e-15)
        assert account.balance("BTC") == 0.01
        # no BNBUSDT in the run: the fee is not mixed into the USDT sums but kept in BNB
        portfolio = h.kernel.portfolio
        assert portfolio.fees_paid == 0.0 and portfolio.cash == 100_000.0 - 600.0
        assert portfolio.fees_unvalued == {"BNB": pytest.approx(0.0012)}
        assert [f.fee for f in h.kernel.result.fills] == [0.0]
        assert buy.fee_paid == 0.0

        # the same fill read back from the trade history (the reconciliation's path) keeps its asset
        report = await h.venue.api.query(buy)
        assert report is not None
        assert [(f.fee, f.fee_asset) for f in report.fills] == [(pytest.approx(0.0012), "BNB")]


async def test_a_maker_rebate_with_bnb_fees_on_is_paid_in_the_quote_asset_not_bnb() -> None:
    """Binance's BNB deduction pays *fees* in BNB ("otherwise the system will automatically deduct USDT", its
    futures fee FAQ); a rebate is no fee paid, so it is credited as without BNB: in the quote asset.

    By hand: a maker buy of 0.01 BTC at 60 000 with a -0.01 % maker fee earns 0.01 * 60 000 * 0.0001 = 0.06 USDT;
    BNB is untouched (it was credited 0.06 / 500 = 0.00012 BNB before).
    """
    maker = Instrument("BINANCE", "BTCUSDT", base="BTC", quote="USDT", tick_size=0.01, lot_size=1e-5, maker_fee=-0.0001)
    async with harness(inst=maker, balances={"USDT": 100_000.0, "BNB": 1.0}) as h:
        h.emulator.fee_in = ("BNB", 500.0)
        h.trade(60_100.0)  # the market, above the buy: it rests
        buy = h.submit(OrderSide.BUY, 0.01, 60_000.0)
        await until(lambda: buy.status is OrderStatus.ACCEPTED)
        h.trade(60_000.0)
        await until(lambda: buy.status is OrderStatus.FILLED)
        (row,) = h.emulator.trades
        assert float(row["price"]) == 60_000.0 and row["isMaker"] in (True, "true")
        assert (row["commissionAsset"], float(row["commission"])) == ("USDT", pytest.approx(-0.06))
        assert h.emulator.balances["BNB"] == 1.0
        assert h.emulator.balances["USDT"] == pytest.approx(100_000.0 - 600.0 + 0.06, abs=1e-9)
        account = h.kernel.portfolio.account
        assert account.balance("BNB") == 0.0
        assert account.balance("USDT") == pytest.approx(100_000.0 - 600.0 + 0.06, abs=1e-9)


async def test_a_fill_charged_in_the_quote_asset_still_debits_the_quote_asset() -> None:
    async with harness(inst=BTC, balances={"USDT": 100_000.0}) as h:
        buy = h.submit(OrderSide.BUY, 0.01)
        await until(lambda: buy.status is OrderStatus.ACCEPTED)
        h.trade(60_000.0)
        await until(lambda: buy.status is OrderStatus.FILLED)
        account = h.kernel.portfolio.account
        assert account.balance("USDT") == pytest.approx(100_000.0 - 600.0 - 0.6, abs=1e-9)
        assert h.kernel.portfolio.fees_paid == pytest.approx(0.6) and h.kernel.portfolio.fees_unvalued == {}


async def test_a_buy_paying_its_fee_in_the_base_asset_is_sold_in_full_and_reconciles() -> None:
    async with harness(inst=BTC, balances={"USDT": 100_000.0}) as h:
        h.emulator.fee_in_received = True  # Binance without BNB: a buy's fee comes out of the coins bought
        holds: dict[str, str] = {}
        reconciler = Reconciler(h.kernel, h.venue, lambda iid, why: holds.__setitem__(iid, why) if why else holds.pop(iid, None), 2.0)
        buy = h.submit(OrderSide.BUY, 0.01)
        await until(lambda: buy.status is OrderStatus.ACCEPTED)
        h.trade(60_000.0)
        await until(lambda: buy.status is OrderStatus.FILLED)
        (row,) = h.emulator.trades
        # 0.6 USDT of fee at 60 000 is 0.00001 BTC: the venue credits 0.00999 BTC
        assert (row["commissionAsset"], float(row["commission"])) == ("BTC", 0.00001)
        assert h.emulator.balances == {"USDT": 100_000.0 - 600.0, "BTC": 0.01 - 0.00001}
        portfolio = h.kernel.portfolio
        held = h.kernel.context.position("s1", IID)  # what the strategy sizes its exit on
        assert held == portfolio.account.balance("BTC") == h.emulator.balances["BTC"]
        assert portfolio.cash == portfolio.account.balance("USDT") == h.emulator.balances["USDT"]
        await reconciler.round()
        await reconciler.round()
        assert holds == {}

        sell = h.submit(OrderSide.SELL, held)
        await until(lambda: sell.status in (OrderStatus.ACCEPTED, OrderStatus.DENIED, OrderStatus.REJECTED))
        assert sell.status is OrderStatus.ACCEPTED
        h.trade(61_000.0)
        await until(lambda: sell.status is OrderStatus.FILLED)
        # the sell's fee is in USDT: 0.00999 * 61 000 * 0.001 = 0.60939; USDT 99 400 + 609.39 - 0.60939
        assert h.emulator.trades[-1]["commissionAsset"] == "USDT"
        assert h.emulator.balances["BTC"] == 0.0
        assert h.emulator.balances["USDT"] == pytest.approx(100_008.78061, abs=1e-9)
        assert portfolio.position(IID) == portfolio.account.balance("BTC") == 0.0
        assert portfolio.account.balance("USDT") == pytest.approx(h.emulator.balances["USDT"], abs=1e-9)
        # realised 0.00999 * 1 000 = 9.99, fees 0.6 + 0.60939: equity up 9.99 - 1.20939 = 8.78061
        assert portfolio.realized_pnl == pytest.approx(9.99, abs=1e-9)
        assert portfolio.fees_paid == pytest.approx(1.20939, abs=1e-9)
        assert portfolio.equity() == pytest.approx(100_008.78061, abs=1e-9)
        await reconciler.round()
        await reconciler.round()
        assert holds == {} and reconciler.differences == 0


async def test_a_round_trip_whose_buy_paid_its_fee_in_btc_is_closed_in_the_live_run_outputs(tmp_path: Path) -> None:
    """Buy 0.01 BTC at 60,000 (the venue keeps 0.00001 BTC of fee: 0.00999 held), sell the 0.00999 at
    61,000: the run's outputs, streamed as a live daemon writes them and read back, show one closed
    round trip, no position left and exposure only while it was held. Before, the reports rebuilt the
    position from the fill quantities (0.01 - 0.00999 = 0.00001 left): no round trip in metrics.json,
    exposure to the end of the run, the trade's fees short of the part of the buy's fee on 0.00001,
    and attribution.csv holding 0.00001 BTC whose value made its net PnL differ from the run's."""
    run_dir = RunDirectory(tmp_path / "out", "live")
    async with harness(inst=BTC, balances={"USDT": 100_000.0}) as h:  # first trade: t0 + 1 ms
        stream = OutputStream(run_dir, h.kernel)
        stream.start()
        h.emulator.fee_in_received = True
        buy = h.submit(OrderSide.BUY, 0.01)
        await until(lambda: buy.status is OrderStatus.ACCEPTED)
        h.trade(60_000.0)  # t0 + 2 ms: fills the buy
        await until(lambda: buy.status is OrderStatus.FILLED)
        sell = h.submit(OrderSide.SELL, h.kernel.portfolio.position(IID))
        await until(lambda: sell.status is OrderStatus.ACCEPTED)
        h.trade(61_000.0)  # t0 + 3 ms: fills the sell
        await until(lambda: sell.status is OrderStatus.FILLED)
        for _ in range(3):
            h.trade(61_000.0)  # t0 + 6 ms: the run's last trade
        h.kernel.stop()
        metrics = write_outputs(run_dir, h.kernel.result, h.kernel.instruments, "{}\n", stream=stream)
    assert h.kernel.portfolio.position(IID) == 0.0
    # hand-derived: pnl 0.00999 * 1,000 = 9.99; fees 0.6 + 0.00999 * 61,000 * 0.001 = 1.20939
    assert metrics["round_trips"] == 1 and metrics["hit_rate"] == 1.0
    assert metrics["exposure"] == pytest.approx(1 / 5)  # held from t0 + 2 ms to t0 + 3 ms of t0 + 1..6 ms
    with (run_dir.path / "trades.csv").open() as handle:
        (trade,) = csv.DictReader(handle)
    assert float(trade["quantity"]) == 0.00999
    assert (float(trade["pnl"]), float(trade["fees"]), float(trade["net_pnl"])) == (
        pytest.approx(9.99), pytest.approx(1.20939), pytest.approx(8.78061))
    with (run_dir.path / "attribution.csv").open() as handle:
        row = next(csv.DictReader(handle))
    assert (float(row["bought"]), float(row["sold"]), float(row["position"])) == (0.00999, 0.00999, 0.0)
    assert float(row["net_pnl"]) == pytest.approx(h.kernel.portfolio.equity() - 100_000.0, abs=1e-9)
    with (run_dir.path / "fills.csv").open() as handle:
        assert [float(f["fee_in_kind"]) for f in csv.DictReader(handle)] == [0.00001, 0.0]


# ---------------------------------------------------------------- a declared BNB balance, through the daemon

SPOT = {**BINANCE_INSTRUMENT, "margin": False}
SPOT_IID = "BTCUSDT.BINANCE"


#: 0.1 % of a buy of 0.01 BTC at ``px`` (its limit 20 000 or the crossing trade's 19 999), in BNB at 500 USDT.
def bnb_fee(px: float) -> float:
    return 0.01 * px * 0.001 / 500.0


MINIMAL: dict[str, Any] = {
    "instruments": [SPOT],
    "strategy": {"name": "tradebus.strategies.tick_ema:TickEmaCross", "instruments": [SPOT_IID],
                 "params": {"fast": 2, "slow": 8, "quantity": 0.01}},
    "feeds": [{"venue": "binance", "market": "spot", "subscriptions": {SPOT_IID: ["trade"]}}],
    "venue": {"fill_on": "trades"},
}


def _live_data(tmp: Path, srv: LocalVenueServer, emulator: BinancePrivateEmulator, balances: dict[str, float] | None) -> dict[str, Any]:
    data = binance_config(
        srv.ws_url, srv.http_url, ["trade"], tmp=tmp, journal=True,
        strategy={"name": "tradebus.strategies.tick_ema:TickEmaCross", "instruments": [SPOT_IID],
                  "params": {"fast": 500, "slow": 1000, "quantity": 0.01, "mode": "long_only"}},  # never warm
    )
    data["instruments"] = [SPOT]
    data["warm_up"] = False
    if balances is not None:
        data["balances"] = balances
    data["live"] = {"rest_url": emulator.rest_url, "ws_api_url": emulator.ws_api_url, "request_timeout": 1.0,
                    "submit_timeout": 1.0, "cancel_timeout": 1.0, "retry_interval": 0.3, "not_found_grace": 2.0,
                    "reconcile_interval": 0.3, "cancel_on_stop": False}
    return data


async def _run(node: LiveNode, done: Any) -> None:
    task = asyncio.create_task(node.run())
    try:
        await until(lambda: task.done() or (node.running.is_set() and done()), timeout=30)
    finally:
        node.stop("test done")
        await asyncio.wait_for(task, 20)


async def _bnb_session(tmp_path: Path, declared: dict[str, float] | None) -> tuple[LiveNode, LiveNode, BinancePrivateEmulator]:
    """A live daemon buying once with the fee charged in BNB, then a restart on its journal."""
    instruments = parse_live_config(MINIMAL).instrument_map()
    emulator = BinancePrivateEmulator(KEY, SECRET, instruments, {"USDT": 100_000.0, "BNB": 1.0})
    emulator.fee_in = ("BNB", 500.0)
    keys = ApiKeys(SecretStr(KEY), SecretStr(SECRET))
    async with emulator:
        protocol = MatchingProtocol(SPOT_SNAPSHOT, account=emulator, instrument_ids={"btcusdt": SPOT_IID})
        async with LocalVenueServer(protocol, SPOT_FRAMES, speed=8.0) as srv:
            config = parse_live_config(_live_data(tmp_path, srv, emulator, declared), "<test>")
            first = LiveNode(config, keys, handle_signals=False)
            holder: list[Any] = []
            rounds = 0

            def bought() -> bool:
                nonlocal rounds
                if first.guard.holds:
                    return False
                if not holder:
                    now = first.clock.now_ns()
                    holder.append(first.kernel.execution.submit(
                        SubmitOrder("TickEmaCross", SPOT_IID, "", OrderSide.BUY, 0.01, now, now, OrderType.LIMIT, 20_000.0)))
                if holder[0].status is OrderStatus.ACCEPTED and not emulator.trades:
                    last = emulator.clock.now_ns() + 10**6
                    emulator.on_trade(Trade(SPOT_IID, last, last, 19_999.0, 1.0, -1, "bnb-1"))
                if holder[0].status is not OrderStatus.FILLED:
                    return False
                rounds = rounds or first.reconciler.rounds + 2  # two rounds after the fill: a mismatch would be found
                return first.reconciler.rounds >= rounds

            await _run(first, bought)
            second = LiveNode(config, keys, handle_signals=False)
            await _run(second, lambda: second.reconciler.rounds >= 1)
    return first, second, emulator


async def test_a_declared_bnb_balance_is_debited_by_the_bnb_fees_journaled_and_reconciled(tmp_path: Path) -> None:
    first, second, emulator = await _bnb_session(tmp_path, {"USDT": 100_000.0, "BNB": 1.0})
    (row,) = emulator.trades
    px = float(row["price"])
    fee = bnb_fee(px)
    assert (row["commissionAsset"], float(row["commission"])) == ("BNB", pytest.approx(fee))
    assert emulator.balances["BNB"] == pytest.approx(1.0 - fee, abs=1e-15)
    for node in (first, second):  # the running daemon, and the one rebuilt from the journal
        account = node.kernel.portfolio.account
        assert account.balance("BNB") == pytest.approx(1.0 - fee, abs=1e-15)
        assert account.balance("USDT") == pytest.approx(100_000.0 - 0.01 * px, abs=1e-9)
        assert node.reconciler.asset_mismatches == {}
        assert not node.guard.holds
        # the BNB balance is the account's alone: not counted as USDT cash
        assert node.kernel.portfolio.cash == pytest.approx(100_000.0 - 0.01 * px, abs=1e-9)


async def test_bnb_held_at_the_venue_but_not_declared_is_a_reported_mismatch(tmp_path: Path) -> None:
    first, second, emulator = await _bnb_session(tmp_path, None)
    fee = bnb_fee(float(emulator.trades[0]["price"]))
    # hand-derived: nothing declared, the fee booked against BNB here; the venue holds 1.0 - fee
    assert first.kernel.portfolio.account.balance("BNB") == pytest.approx(-fee, abs=1e-15)
    for node in (first, second):
        assert node.reconciler.asset_mismatches == {"BNB": (pytest.approx(-fee, abs=1e-15), pytest.approx(1.0 - fee))}
        assert not node.guard.holds  # no instrument's holding is wrong


def test_a_balance_of_an_asset_neither_traded_nor_charged_is_refused_naming_it() -> None:
    base = MINIMAL
    assert parse_live_config({**base, "balances": {"USDT": 1.0, "BNB": 1.0}}).balances == {"USDT": 1.0, "BNB": 1.0}
    with pytest.raises(ConfigError, match=r"balances\.DOGE: no instrument has 'DOGE'.*fees in \(\['BNB'\]\)"):
        parse_live_config({**base, "balances": {"USDT": 1.0, "DOGE": 1.0}})
    # a paper run's simulated venue charges fees in the quote asset only: BNB would never move
    with pytest.raises(ConfigError, match=r"balances\.BNB: no instrument has 'BNB'.*charges fees in no other asset"):
        parse_paper_config({**base, "balances": {"USDT": 1.0, "BNB": 1.0}})


# ---------------------------------------------------------------- OKX and Bybit: a spot buy's fee in the coin bought


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_an_okx_or_bybit_spot_buy_paying_its_fee_in_btc_says_so_on_the_wire_and_books_as_the_venue(kit: VenueKit) -> None:
    """OKX and Bybit charge a spot buy's fee in the coin it receives. Before, their emulators with
    ``fee_in_received`` took the fee out of the BTC bought but wrote it on every wire form as USDT, so
    the daemon booked a USDT fee the account never paid and held 0.00001 BTC less than it."""
    async with kit_harness(kit) as h:
        h.emulator.fee_in_received = True
        tape = KitTape(h, kit.iid, 1_723_161_255_000_000_000)
        tape.trade(60_000.0)
        buy = tape.submit(OrderSide.BUY, 0.01)
        await until(lambda: buy.status is OrderStatus.ACCEPTED)
        tape.trade(60_000.0)
        await until(lambda: buy.status is OrderStatus.FILLED)
        # hand-derived: 0.1 % of 600 USDT is 0.6 USDT, i.e. 0.00001 BTC at 60 000: 0.00999 BTC received
        assert h.emulator.balances == {"USDT": 100_000.0 - 600.0, "BTC": 0.00999}
        account = h.kernel.portfolio.account
        assert (account.balance("BTC"), account.balance("USDT")) == (0.00999, 100_000.0 - 600.0)
        assert h.kernel.context.position("s1", kit.iid) == 0.00999
        report = await h.venue.api.query(buy)  # the fills list, as a reconciliation reads them
        assert report is not None
        assert [(f.fee, f.fee_asset) for f in report.fills] == [(0.00001, "BTC")]


@pytest.mark.parametrize("kit", list(KITS.values()), ids=list(KITS))
async def test_an_okx_or_bybit_spot_maker_buy_is_paid_its_rebate_in_usdt_not_btc(kit: VenueKit) -> None:
    """A spot maker buy with a negative maker fee: OKX pays the rebate in the quote coin (``rebateCcy``
    ``USDT`` on a BTC-USDT buy whose ``feeCcy`` is ``BTC``), as does Bybit ("Spot Fee Currency
    Instruction": makerFeeRate negative, maker, Buy -> quote). Before, the emulators with
    ``fee_in_received`` paid it in BTC (0.000001 BTC more, 0.059 USDT less than the venue pays)."""
    kit = replace(kit, instrument={**kit.instrument, "maker_fee": -0.0001})
    async with kit_harness(kit) as h:
        h.emulator.fee_in_received = True
        tape = KitTape(h, kit.iid, 1_723_161_255_000_000_000)
        tape.trade(60_000.0)
        buy = tape.submit(OrderSide.BUY, 0.01, OrderType.LIMIT, 59_000.0)
        await until(lambda: buy.status is OrderStatus.ACCEPTED)
        tape.trade(59_000.0)  # reaches the resting bid: a maker fill
        await until(lambda: buy.status is OrderStatus.FILLED)
        # hand-derived: 0.01 * 59 000 = 590 USDT paid; -0.01 % of it is a 0.059 USDT rebate; 0.01 BTC received whole
        assert h.emulator.balances == {"USDT": pytest.approx(100_000.0 - 590.0 + 0.059, abs=1e-9), "BTC": 0.01}
        account = h.kernel.portfolio.account
        assert account.balance("BTC") == 0.01
        assert account.balance("USDT") == pytest.approx(100_000.0 - 590.0 + 0.059, abs=1e-9)
        assert h.kernel.portfolio.fees_paid == pytest.approx(-0.059, abs=1e-12)
        assert h.kernel.portfolio.fees_unvalued == {}
        report = await h.venue.api.query(buy)  # the fills list, as a reconciliation reads them
        assert report is not None
        assert [(f.fee, f.fee_asset) for f in report.fills] == [(pytest.approx(-0.059, abs=1e-12), "")]  # "": the quote coin
        if kit.venue == "okx":  # the order row (GET /trade/order, the orders push): the rebate in rebate/rebateCcy
            (_, frame), = h.emulator.order_frames(h.emulator.orders[buy.client_order_id], None)
            row = json.loads(frame)["data"][0]
            # OKX: fee "accumulated fee charged by the platform, always negative" (none charged) in the
            # buy's fee coin, BTC; rebate "always positive" in rebateCcy
            assert (float(row["fee"]), row["feeCcy"]) == (0.0, "BTC")
            assert (float(row["rebate"]), row["rebateCcy"]) == (pytest.approx(0.059, abs=1e-12), "USDT")


@pytest.mark.parametrize(("kit", "in_btc"), [(KITS["okx"], False), (KITS["bybit"], True)], ids=list(KITS))
async def test_a_spot_maker_sell_is_paid_its_rebate_in_the_venues_coin(kit: VenueKit, in_btc: bool) -> None:
    """A spot maker sell with a negative maker fee. Bybit's "Spot Fee Currency Instruction" (makerFeeRate
    negative, maker, Sell -> base currency) pays it in BTC: ``execFee`` negative, ``feeCurrency`` ``BTC``.
    OKX pays it in the quote coin: a maker sell's ``fee`` is "fee and rebate, always in quote currency"
    and ``/trade/fills`` names it in ``feeCcy``. Before, the Bybit emulator paid it in USDT."""
    kit = replace(kit, instrument={**kit.instrument, "maker_fee": -0.0001})
    async with kit_harness(kit) as h:
        h.emulator.fee_in_received = True
        tape = KitTape(h, kit.iid, 1_723_161_255_000_000_000)
        tape.trade(60_000.0)
        buy = tape.submit(OrderSide.BUY, 0.01, OrderType.LIMIT, 59_000.0)
        await until(lambda: buy.status is OrderStatus.ACCEPTED)
        tape.trade(59_000.0)  # a maker buy: 0.059 USDT of rebate, 0.01 BTC received whole
        await until(lambda: buy.status is OrderStatus.FILLED)
        sell = tape.submit(OrderSide.SELL, 0.01, OrderType.LIMIT, 60_000.0)
        await until(lambda: sell.status is OrderStatus.ACCEPTED)
        tape.trade(60_000.0)  # reaches the resting ask: a maker sell
        await until(lambda: sell.status is OrderStatus.FILLED)
        # hand-derived: 0.01 * 60 000 = 600 USDT received; -0.01 % of it is a 0.06 USDT rebate,
        # 0.06 / 60 000 = 0.000001 BTC where the venue pays it in the base coin
        usdt = 100_000.0 - 590.0 + 0.059 + 600.0 + (0.0 if in_btc else 0.06)
        btc = 0.000001 if in_btc else 0.0
        assert h.emulator.balances["USDT"] == pytest.approx(usdt, abs=1e-9)
        assert h.emulator.balances["BTC"] == pytest.approx(btc, abs=1e-15)
        account = h.kernel.portfolio.account
        assert account.balance("USDT") == pytest.approx(usdt, abs=1e-9)
        assert account.balance("BTC") == pytest.approx(btc, abs=1e-15)
        report = await h.venue.api.query(sell)  # the fills list, as a reconciliation reads them
        assert report is not None
        expected = (pytest.approx(-0.000001, abs=1e-15), "BTC") if in_btc else (pytest.approx(-0.06, abs=1e-12), "")
        assert [(f.fee, f.fee_asset) for f in report.fills] == [expected]
