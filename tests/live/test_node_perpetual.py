"""A perpetual through the paper node's route: the recorded USD-M markPrice stream values the position.

Playback of the Binance USD-M BTCUSDT capture (trade, bookTicker, depth and markPrice@1s) drives
the same router and kernel as a paper run: the node publishes the parsed ``MarkPrice`` and
``FundingRate`` on the bus, where the margin account takes them.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

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
    assert kernel.perpetuals._pending[USDM_IID][1:] == (marks[-1][2] * 1_000_000, marks[-1][1])
    pf = kernel.portfolio
    assert pf.equity() == pytest.approx(
        kernel.result.initial_cash + pf.realized_pnl + pf.unrealized_pnl() - pf.fees_paid - pf.funding_paid
    )


@pytest.mark.usefixtures("_loguru_to_current_stderr")
def test_a_recording_received_years_later_settles_no_funding_before_its_venue_time(tmp_path: Path) -> None:
    """A paper daemon on ``tradebus serve`` of the capture receives its frames years after their venue
    times (the daemon's clock is now): the markPrice frames still announce the funding at
    2023-04-05T00:00:00Z, 100 s after the capture's last frame, so none is settled, as in the replay
    of the capture above. (The receive clock was compared with the venue's funding time: every
    announced funding was due at the first frame, paid on the position of that moment.)"""
    shift_us = 3 * 365 * 86_400 * 1_000_000  # 2023 -> 2026, as served to a daemon today
    shifted = tmp_path / "usdm_received_later.gz"
    with gzip.open(USDM_CAPTURE, "rt") as src, gzip.open(shifted, "wt") as dst:
        for line in src:
            recv, _, rest = line.partition(" ")
            dst.write(f"{int(recv) + shift_us} {rest}")
    data = usdm_config(None, None, depth_speed="0ms")
    data["feeds"][0]["subscriptions"] = {USDM_IID: ["trade", "bookTicker", "depth", "markPrice"]}
    kernel = play(shifted, config_of(data)).kernel
    assert kernel.result.fills  # positions were held while the funding was announced
    assert kernel.result.funding == []
    assert kernel.portfolio.funding_paid == 0.0


#: The USD-M capture's trade and markPrice@1s frames from 10 s before the funding at 2023-04-05T00:00:00Z to
#: 5 s after it (tests/fixtures/SOURCES.md).
FUNDING_CAPTURE = Path(__file__).resolve().parents[1] / "fixtures" / "binance" / "usdm_btcusdt_funding_20230405.gz"


@pytest.mark.usefixtures("_loguru_to_current_stderr")
def test_a_funding_is_paid_at_the_mark_of_its_time_not_at_the_first_mark_after_it() -> None:
    """The markPrice frames announce the funding at 00:00:00 (rate 0.00002754); the last before it
    (E 23:59:59.001) marks 28,157.1 and the first after it (E 00:00:00.010, received 91 ms later, the
    first frame of any stream after the funding) 28,155.1. The position held then pays q × 28,157.1 ×
    0.00002754, as a backtest of the same frames pays it (a mark stamped after the funding time
    settles it before it values the position): the daemon's route took the later mark first and paid
    at 28,155.1."""
    data = usdm_config(None, None)
    data["feeds"][0]["subscriptions"] = {USDM_IID: ["trade", "markPrice"]}
    kernel = play(FUNDING_CAPTURE, config_of(data)).kernel
    (paid,) = kernel.result.funding
    assert paid.ts_event == 1_680_652_800_000_000_000
    assert paid.quantity != 0.0
    assert (paid.mark_price, paid.rate) == (28_157.1, 0.00002754)
    assert paid.payment == pytest.approx(paid.quantity * 28_157.1 * 0.00002754, rel=1e-12)
