"""``fill_on: book`` against an outside reference: hftbacktest on the same real L2 capture.

Both engines run the same quoting strategy (:class:`~tradebus.strategies.touch_quoter.TouchQuoter`;
its hftbacktest twin is ``hbt_reference.touch_quoter``): every second, cancel the working
quotes and post a post-only bid at the best bid and a post-only ask at the best ask, one lot
each, position capped at 5 lots. Same data (the catalog rows of the Binance USD-M capture
``usdm_btcusdt_20240718.gz``, converted to hftbacktest events by ``hbt_reference.to_events``),
same queue model, same constant latencies (10 ms entry, 10 ms acknowledgement), hftbacktest's
partial-fill exchange, lot 0.001, tick 0.1.

What is compared: the number of fills, and each fill's side, price and time (the exchange
time of the fill, which both engines take from the data event that caused it).

Tolerance and the differences it covers:

* **time line**: hftbacktest keeps an exchange and a local time line; the capture's exchange
  stamps (``E``) are ~1.5 s *after* the collector's receive stamps (clock skew), so both
  engines are given the receive time as exchange and local time (``ts_init``; zero feed
  latency), as tradebus's replay does. With identical time lines the engines differ only in
  how they order things that happen at the same nanosecond:
* **ties**: an order arriving at exactly the time of a book event, a timer at exactly the time
  of an event, a trade and a depth update of the same receive time (book first in both). A
  tie can move a decision by one event and, through the strategy's position, shift later
  quotes. Ties are rare (nanosecond stamps), so the runs are required to agree on at least
  90 % of the fills, each matched fill to have the same side and price, and the fill counts
  to differ by at most 10 % (the measured agreement is printed on failure).
* **queue fills** round the quantity past the queue to whole lots, as hftbacktest's
  ``is_filled`` does (``round(-front / lot)``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.live.node_testdata import USDM_IID, USDM_INSTRUMENT, config_of, usdm_config  # noqa: E402
from tradebus.data.catalog import Catalog  # noqa: E402
from tradebus.data.market_ingest import import_recording  # noqa: E402
from tradebus.data.replay import Replay, ReplaySource  # noqa: E402
from tradebus.engine.instrument import Instrument  # noqa: E402
from tradebus.engine.kernel import Kernel  # noqa: E402
from tradebus.execution.config import BookFillConfig, VenueConfig  # noqa: E402
from tradebus.strategies.touch_quoter import TouchQuoter  # noqa: E402

from .hbt_reference import make_backtest, to_events, touch_quoter  # noqa: E402

CAPTURE = Path(__file__).resolve().parents[1] / "fixtures" / "binance" / "usdm_btcusdt_20240718.gz"
VENUE = ("binance_usdm", "usdm", "BTCUSDT")
LATENCY = 10_000_000
INTERVAL = 1_000_000_000
QTY, MAX_POS = 0.001, 0.005


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    cfg = usdm_config(None, None, depth_speed="0ms")
    cfg["feeds"][0]["subscriptions"] = {USDM_IID: ["trade", "depth"]}
    root = tmp_path_factory.mktemp("capture")
    import_recording(CAPTURE, config_of(cfg), root)
    return Catalog(root)


def tradebus_fills(cat: Catalog, queue_model: str, power: float) -> list[tuple[int, int, float]]:
    venue = VenueConfig(
        fill_on="book",
        book=BookFillConfig(
            queue_model=queue_model, queue_power=power, entry_latency_ns=LATENCY, ack_latency_ns=LATENCY
        ),
    )
    kernel = Kernel([Instrument(**USDM_INSTRUMENT)], venue_config=venue)
    kernel.add_strategy(TouchQuoter(USDM_IID, interval_ns=INTERVAL, quantity=QTY, max_position=MAX_POS))
    result = kernel.run(Replay([ReplaySource.from_catalog(cat, USDM_IID, *VENUE, n) for n in ("book", "trades")]))
    return [(f.ts_event, 1 if f.side == "BUY" else -1, round(f.price, 1)) for f in result.fills]


def hftbacktest_fills(cat: Catalog, queue_model: str, power: float) -> list[tuple[int, int, float]]:
    events = to_events(cat.read(*VENUE, "book"), cat.read(*VENUE, "trades"))
    first = int(events["local_ts"][0])
    hbt = make_backtest(events, queue_model, LATENCY, LATENCY, 0.1, QTY, power)
    out = np.zeros((10_000, 4))
    n = touch_quoter(hbt, first - first % INTERVAL, INTERVAL, QTY, MAX_POS, out)
    return sorted((int(r[0]), 1 if int(r[1]) == 1 else -1, round(float(r[2]), 1)) for r in out[:n])


@pytest.mark.slow
@pytest.mark.parametrize(("queue_model", "power"), [("risk_averse", 1.0), ("prob_power", 2.0)])
def test_fills_match_hftbacktest_on_a_real_capture(capture: Catalog, queue_model: str, power: float) -> None:
    ours = tradebus_fills(capture, queue_model, power)
    ref = hftbacktest_fills(capture, queue_model, power)
    assert len(ref) >= 5, ref
    matched = set(ours) & set(ref)
    report = f"tradebus {len(ours)} fills, hftbacktest {len(ref)}, identical {len(matched)}\n{ours}\n{ref}"
    assert abs(len(ours) - len(ref)) <= 0.1 * len(ref), report
    assert len(matched) >= 0.9 * len(ref), report
