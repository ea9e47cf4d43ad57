"""A paper daemon's accounts count the fee rates its paper venue charges (``venue.maker_fee``/``taker_fee``)."""

from __future__ import annotations


from tests.live.node_testdata import BINANCE_INSTRUMENT, IID, binance_config, config_of
from tradebus.engine.clock import SimulatedClock
from tradebus.engine.messages import OrderSide, SubmitOrder
from tradebus.node.daemon import build_paper_kernel
from tradebus.risk.guard import MarketGuard


def test_a_paper_runs_account_reserves_the_fee_at_the_venue_override_it_is_charged() -> None:
    """Instrument rates 0 (as ``tradebus instruments`` prints them) under ``venue.taker_fee`` 1 %: the paper
    venue charges 975 x 0.01 = 9.75 on a market buy of 0.01 BTC at 97,500, yet the account reserved no fee and
    took it with 1,000 USDT (975 x 1.02, the market order's buffer, is 994.5; the paper kernel got the venue but
    not its config, so ``charged_fees`` saw no override); 994.5 x 1.01 = 1004.445 > 1,000 is now refused, as
    the backtest refuses it."""
    data = binance_config(None, None, ["trade"])
    data["instruments"] = [dict(BINANCE_INSTRUMENT, margin=False, taker_fee=0.0, maker_fee=0.0)]
    data["venue"] = {"fill_on": "trades", "taker_fee": 0.01}
    data["initial_cash"] = 1_000.0
    kernel, venue = build_paper_kernel(config_of(data), SimulatedClock(0), MarketGuard())
    assert venue._fees[IID].taker == 0.01  # noqa: SLF001 (what the paper venue charges)
    assert (kernel.instruments[IID].taker_fee, kernel.instruments[IID].maker_fee) == (0.01, 0.0)
    cmd = SubmitOrder("s", IID, "c", OrderSide.BUY, 0.01, 0, 0)
    assert kernel.portfolio.account.check_order(cmd, 97_500.0) == (
        "buying_power: BUY 0.01 BTCUSDT.BINANCE needs 1004.445 USDT > available 1000 USDT (balance 1000, held by working orders 0)"
    )
    assert kernel.portfolio.account.check_order(cmd, 96_000.0) is None


async def test_a_live_runs_account_reserves_the_fee_at_the_venue_override_as_a_paper_runs_does() -> None:
    """The same config with a ``live:`` section: the live daemon built its kernel with the instruments' rates (0),
    silently ignoring ``venue.taker_fee``, so the account reserved no fee and let the buy of 994.5 USDT go with
    1,000 USDT where the paper run of that config refuses it (the venue then charges its own fee: Binance's
    ``-2010`` insufficient balance). The live account counts the override as the paper one does: 1004.445 > 1,000."""
    from pydantic import SecretStr

    from tests.live.live_harness import KEY, SECRET
    from tradebus.node.live import ApiKeys, LiveNode, parse_live_config

    data = binance_config("ws://127.0.0.1:9", "http://127.0.0.1:9", ["trade"])
    data["instruments"] = [dict(BINANCE_INSTRUMENT, margin=False, taker_fee=0.0, maker_fee=0.0)]
    data["venue"] = {"fill_on": "trades", "taker_fee": 0.01}
    data["initial_cash"] = 1_000.0
    data["live"] = {"rest_url": "http://127.0.0.1:9", "ws_api_url": "ws://127.0.0.1:9"}
    node = LiveNode(parse_live_config(data, "<test>"), ApiKeys(SecretStr(KEY), SecretStr(SECRET)), handle_signals=False)
    try:
        kernel = node.kernel
        assert (kernel.instruments[IID].taker_fee, kernel.instruments[IID].maker_fee) == (0.01, 0.0)
        cmd = SubmitOrder("s", IID, "c", OrderSide.BUY, 0.01, 0, 0)
        assert kernel.portfolio.account.check_order(cmd, 97_500.0) == (
            "buying_power: BUY 0.01 BTCUSDT.BINANCE needs 1004.445 USDT > available 1000 USDT (balance 1000, held by working orders 0)"
        )
    finally:
        await node.venue.aclose()
