"""A paper daemon's bars last the interval their stream names from the first one on (a perpetual's funding
in the first gap of its klines, after a restart too: ``PaperConfig.bar_intervals``, ``Kernel.bar_intervals``)."""

from __future__ import annotations

import pytest

from tests.live.node_testdata import SUSHI_IID, config_of, sushi_kline_config
from tradebus.adapters.registry import VENUES
from tradebus.engine.clock import SimulatedClock
from tradebus.engine.messages import Bar, FundingRate, OrderSide
from tradebus.node.daemon import build_paper_kernel
from tradebus.risk.guard import MarketGuard
from tradebus.strategies.base import Strategy

M = 60_000_000_000
T0 = 1_700_000_000_000_000_000 // (60 * M) * (60 * M)


def test_each_venue_names_the_fixed_interval_of_its_bar_channels() -> None:
    """Binance ``kline_<interval>`` (``kline`` is 1m), OKX ``candle<bar>`` (HK or UTC aligned), Bybit
    ``kline.<minutes|D|W>``; months (Binance ``1M``, OKX ``1M``/``1Y``, Bybit ``M``) have no fixed length,
    and other channels carry no bars."""
    h, d = 60 * M, 24 * 60 * M
    binance, okx, bybit = VENUES["binance"].bar_interval, VENUES["okx"].bar_interval, VENUES["bybit"].bar_interval
    assert [binance(c) for c in ("kline", "kline_1s", "kline_15m", "kline_4h", "kline_3d", "kline_1w")] == [
        M, 1_000_000_000, 15 * M, 4 * h, 3 * d, 7 * d
    ]
    assert [okx(c) for c in ("candle1m", "candle4H", "candle1Dutc", "candle1W")] == [M, 4 * h, d, 7 * d]
    assert [bybit(c) for c in ("kline.1", "kline.240", "kline.D", "kline.W")] == [M, 4 * h, d, 7 * d]
    assert [binance("kline_1M"), okx("candle1M"), okx("candle1Yutc"), bybit("kline.M")] == [None] * 4
    assert [binance("markPrice"), okx("mark-price"), bybit("tickers"), bybit("kline.7")] == [None] * 4


class _Flip(Strategy):
    """Buys 10 at market on bar 1 and sells 20 on bar 5 (long 10 -> short 10), at the next bars' opens."""

    def __init__(self, iid: str) -> None:
        super().__init__(iid, strategy_id="flip")
        self.bars = 0

    def on_bar(self, bar: Bar | None = None) -> None:
        self.bars += 1
        if self.bars in (1, 5):
            self.submit_market(self.instrument_id, OrderSide.BUY if self.bars == 1 else OrderSide.SELL,
                               10.0 if self.bars == 1 else 20.0, reason="flip")


@pytest.mark.parametrize("channel", ["kline", "kline_1m"])
def test_a_funding_in_the_first_gap_of_a_paper_daemon_s_klines_is_paid_before_the_next_kline_s_fills(
    channel: str,
) -> None:
    """A paper daemon (started or restarted) on SUSHIUSDT 1-minute klines, filling on bars: klines closing at
    00:01, then none until the one closing at 00:05 (opening 00:04), and on; kline k opens at 7 + 0.01 k - 0.005
    and closes at 7 + 0.01 k, each received 0.5 s after its close. 10 SUSHI bought on kline 1 fill at the open of
    the one closing at 00:05 (7.045). A funding of 0.01 % at 00:03 lies in the gap, when nothing was held:
    nothing is paid. Before, a daemon learnt the bar length from the klines' spacing only, so the first gap
    after each start was none: the kline was taken to open at 00:01, the funding was held for its fills and
    charged to the long they bought at 7.01 (the 00:01 close): 10 * 7.01 * 0.0001 = 0.00701. One at 00:06:30,
    inside the kline closing at 00:07 with nothing at the venue, is paid by the long at the 00:06 close:
    10 * 7.06 * 0.0001 = 0.00706."""
    data = sushi_kline_config()
    data["feeds"][0]["subscriptions"] = {SUSHI_IID: [channel, "markPrice"]}
    data["strategy"]["params"] = {"fast": 2, "slow": 500, "quantity": 1.0}  # never ready: trades nothing
    config = config_of(data)
    assert config.bar_intervals() == {SUSHI_IID: M}
    kernel, _ = build_paper_kernel(config, SimulatedClock(0), MarketGuard())
    kernel.add_strategy(_Flip(SUSHI_IID))
    kernel.process(FundingRate(SUSHI_IID, T0 + M // 2, T0 + M // 2, 0.0001, T0 + 3 * M))
    for k in [1] + list(range(5, 12)):
        close = T0 + k * M
        kernel.process(Bar(SUSHI_IID, close, close + 500_000_000, 7.0 + 0.01 * k - 0.005, 7.0 + 0.01 * k,
                           7.0 + 0.01 * k - 0.005, 7.0 + 0.01 * k, 1.0))
        if k == 5:  # the next funding is announced once the one before it is paid
            kernel.process(FundingRate(SUSHI_IID, close + M // 2, close + M // 2, 0.0001, T0 + 6 * M + M // 2))
    kernel.stop()
    assert [(f.side, f.price) for f in kernel.result.fills] == [("BUY", pytest.approx(7.045)),
                                                                 ("SELL", pytest.approx(7.085))]
    assert [(p.ts_event, p.quantity) for p in kernel.result.funding] == [(T0 + 6 * M + M // 2, 10.0)]
    assert kernel.result.funding[0].payment == pytest.approx(0.00706)
