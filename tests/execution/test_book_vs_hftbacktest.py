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

Tolerance: **none** for the models compared here — the fills must be identical (same count;
each fill's exchange time to the nanosecond, side and price). Measured on this capture:
risk-averse 7/7, ``prob_power`` n=1, 1.5 and 3 7/7, ``prob_log`` 9/9 identical fills. What
had to be made equal for that, and the differences left:

* **time line**: hftbacktest keeps an exchange and a local time line; the capture's exchange
  stamps (``E``) run ~1.5 s *ahead* of the collector's receive stamps (clock skew), so both
  engines get the receive time as exchange and local time (``ts_init``, zero feed latency),
  which is what tradebus's replay uses; tradebus's book venue stamps fills with it too.
* **answers**: an acknowledgement reaches the strategy at exactly its due time (a clock
  alert), as in hftbacktest, not at the next data event; otherwise a quote decided between
  the due time and the next event would use a stale position.
* **queue fills** are whole lots rounded to the nearest (``round(-front / lot)``), as
  hftbacktest's ``is_filled``; flooring would drop fills hftbacktest makes.
* **clock start**: hftbacktest's clock starts at the first event, TouchQuoter's timer on
  multiples of the interval: the hftbacktest twin first elapses to the next multiple.
* **not compared**: ``prob_power`` with n=0.5 agrees on 5 of 7 fills (tradebus fills one ask
  at 29.96 s that hftbacktest does not, after which the positions, hence the quotes, differ);
  with n=2 hftbacktest 2.4.4 reports a single fill for the whole run while n=1.5 and n=3
  give 7 — a behaviour of that version we did not trace, so those exponents are left out.
  Same-nanosecond ties (an order arriving exactly at a book event, a timer exactly at an
  event) could be ordered differently by the two engines; none occurs in this run.
"""

from __future__ import annotations


import numpy as np
import pytest

from tests.live.node_testdata import USDM_IID, USDM_INSTRUMENT  # noqa: E402
from tradebus.data.catalog import Catalog  # noqa: E402
from tradebus.data.replay import Replay, ReplaySource  # noqa: E402
from tradebus.engine.instrument import Instrument  # noqa: E402
from tradebus.engine.kernel import Kernel  # noqa: E402
from tradebus.execution.config import BookFillConfig, VenueConfig  # noqa: E402
from tradebus.strategies.touch_quoter import TouchQuoter  # noqa: E402

from .hbt_reference import make_backtest, to_events, touch_quoter  # noqa: E402

VENUE = ("binance_usdm", "usdm", "BTCUSDT")
LATENCY = 10_000_000
INTERVAL = 1_000_000_000
QTY, MAX_POS = 0.001, 0.005


@pytest.fixture(scope="module")
def capture(l2_capture: Catalog) -> Catalog:
    return l2_capture


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
    times = np.zeros(10_000, np.int64)
    out = np.zeros((10_000, 3))
    n = touch_quoter(hbt, first, INTERVAL, QTY, MAX_POS, times, out)
    return sorted((int(t), 1 if int(r[0]) == 1 else -1, round(float(r[1]), 1)) for t, r in zip(times[:n], out[:n]))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("queue_model", "power"), [("risk_averse", 1.0), ("prob_power", 1.0), ("prob_power", 3.0), ("prob_log", 1.0)]
)
def test_fills_match_hftbacktest_on_a_real_capture(capture: Catalog, queue_model: str, power: float) -> None:
    ours = tradebus_fills(capture, queue_model, power)
    ref = hftbacktest_fills(capture, queue_model, power)
    assert len(ref) >= 5, ref
    assert ours == ref, f"tradebus {len(ours)} fills, hftbacktest {len(ref)}\n{ours}\n{ref}"


@pytest.mark.slow
def test_the_comparison_can_fail_queue_models_differ_on_this_capture(capture: Catalog) -> None:
    # The same run with a different queue model on one side is told apart: the test above is not vacuous.
    assert tradebus_fills(capture, "prob_log", 1.0) != hftbacktest_fills(capture, "risk_averse", 1.0)
