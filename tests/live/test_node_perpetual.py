"""A perpetual through the paper node's route: the recorded USD-M markPrice stream values the position.

Playback of the Binance USD-M BTCUSDT capture (trade, bookTicker, depth and markPrice@1s) drives
the same router and kernel as a paper run: the node publishes the parsed ``MarkPrice`` and
``FundingRate`` on the bus, where the margin account takes them.
"""

from __future__ import annotations

import json

import pytest

from tradebus.adapters.common.recorder import iter_hftbacktest
from tradebus.account import MarginAccount
from tradebus.node.playback import play

from .node_testdata import USDM_CAPTURE, USDM_IID, config_of, usdm_config


@pytest.mark.usefixtures("_loguru_to_current_stderr")
def test_recorded_marks_value_the_perpetual_and_funding_is_announced_not_settled() -> None:
    data = usdm_config(None, None, depth_speed="0ms")
    data["feeds"][0]["subscriptions"] = {USDM_IID: ["trade", "bookTicker", "depth", "markPrice"]}
    playback = play(USDM_CAPTURE, config_of(data))
    marks = []
    for line in iter_hftbacktest(USDM_CAPTURE):
        raw = line[1] if isinstance(line, tuple) else line
        text = raw if isinstance(raw, str) else raw.decode()
        if "@markPrice" in text:
            payload = json.loads(text[text.index("{"):])["data"]
            marks.append((float(payload["p"]), float(payload["r"]), int(payload["T"])))
    assert len(marks) == 35
    kernel = playback.kernel
    pos = kernel.portfolio.position_state(USDM_IID)
    assert pos.has_mark and pos.last_price == marks[-1][0]
    assert isinstance(kernel.portfolio.account, MarginAccount)
    assert kernel.result.fills  # the strategy traded: the account checked margin on every order
    # the capture ends hours before the next funding time: announced, not settled
    assert kernel.result.funding == []
    assert kernel.perpetuals is not None
    assert kernel.perpetuals._pending[USDM_IID] == (marks[-1][2] * 1_000_000, marks[-1][1])
    pf = kernel.portfolio
    assert pf.equity() == pytest.approx(
        kernel.result.initial_cash + pf.realized_pnl + pf.unrealized_pnl() - pf.fees_paid - pf.funding_paid
    )
