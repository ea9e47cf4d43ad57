"""Connection policy without sockets: classifier, backoff, subscriptions, keep-alive, watchdog, dedup."""

from __future__ import annotations

from typing import Any

import pytest
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK, InvalidStatus, InvalidURI
from websockets.frames import Close
from websockets.http11 import Response

from tradebus.adapters.binance.client import binance_keepalive, binance_policy
from tradebus.adapters.bybit.client import bybit_keepalive
from tradebus.dedup import TradeDeduper
from tradebus.adapters.common.policy import (
    Backoff,
    ConnectionPolicy,
    ErrorClass,
    FatalVenueError,
    KeepAlive,
    KeepAliveMode,
    SubscriptionSet,
    classify_error,
)
from tradebus.adapters.common.watchdog import StaleWatchdog
from tradebus.adapters.okx.client import okx_keepalive
from tradebus.engine.messages import FeedStale
from tradebus.errors import ConfigError, ParseError, VenueError

R, F = ErrorClass.RETRYABLE, ErrorClass.FATAL


def status(code: int) -> InvalidStatus:
    return InvalidStatus(Response(code, "x", Headers()))


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ConnectionClosedError(None, None), R),
        (ConnectionClosedError(Close(1011, "server error"), None), R),
        (ConnectionClosedOK(Close(1000, "24h"), Close(1000, "24h"), True), R),
        (ConnectionClosedError(Close(1008, "policy violation"), None), F),
        (TimeoutError(), R),
        (ConnectionRefusedError(), R),
        (ConnectionResetError(), R),
        (status(502), R),
        (status(503), R),
        (status(429), R),
        (status(401), F),
        (status(403), F),
        (status(400), F),
        (status(418), F),
        (InvalidURI("x", "bad"), F),
        (FatalVenueError("bad subscription"), F),
        (VenueError("snapshot HTTP 503"), R),
        (ParseError("bug"), F),
        (KeyError("bug"), F),
    ],
)
def test_classify_error(exc: BaseException, expected: ErrorClass) -> None:
    assert classify_error(exc) is expected


def test_backoff_is_deterministic_for_a_seed_and_capped() -> None:
    a = Backoff(base=0.5, factor=2, cap=4, min_delay=0.1, seed=42)
    b = Backoff(base=0.5, factor=2, cap=4, min_delay=0.1, seed=42)
    da = [a.next_delay(0.0) for _ in range(12)]
    assert da == [b.next_delay(0.0) for _ in range(12)]
    for n, delay in enumerate(da):
        assert 0.1 <= delay <= min(4.0, 0.5 * 2**n)
    assert max(da[6:]) > 1.0  # the ceiling did grow


def test_backoff_jitter_spreads_delays() -> None:
    delays = {round(Backoff(seed=s).next_delay(0.0), 6) for s in range(20)}
    assert len(delays) > 15


def test_backoff_resets_after_a_healthy_connection_only() -> None:
    bo = Backoff(base=1, factor=2, cap=64, reset_after=30, seed=1)
    for _ in range(5):
        bo.next_delay(0.0)
    assert bo.attempt == 5
    bo.connected(100.0)
    bo.next_delay(110.0)  # up for 10 s: not healthy long enough
    assert bo.attempt == 6
    bo.connected(200.0)
    bo.next_delay(230.0)  # up for 30 s: reset, then this failure counts as the first
    assert bo.attempt == 1


def test_backoff_rejects_bad_parameters() -> None:
    with pytest.raises(ConfigError, match="backoff"):
        Backoff(base=2, cap=1)


def test_backoff_survives_a_very_long_outage() -> None:
    bo = Backoff(cap=30, seed=3)
    gen = bo.delays()
    assert all(d <= 30 for d, _ in zip(gen, range(2000), strict=False))


def test_subscription_set_tracks_one_ordered_set() -> None:
    subs = SubscriptionSet(["a@trade", "b@trade"])
    assert subs.add(["b@trade", "c@depth"]) == ["c@depth"]
    assert subs.remove(["a@trade", "zzz"]) == ["a@trade"]
    assert list(subs) == ["b@trade", "c@depth"] and len(subs) == 2 and "c@depth" in subs
    assert subs.batches(1) == [["b@trade"], ["c@depth"]]


def test_keepalive_per_venue() -> None:
    assert not binance_keepalive().due(1000, 1000)
    okx = okx_keepalive()
    assert okx.mode is KeepAliveMode.IDLE and okx.payload == "ping" and okx.interval < 30
    assert not okx.due(idle=10, since_ping=100)
    assert okx.due(idle=26, since_ping=100)
    assert not okx.due(idle=26, since_ping=5)  # just pinged
    bybit = bybit_keepalive()
    assert bybit.payload == '{"op":"ping"}'
    assert bybit.due(idle=0, since_ping=20) and not bybit.due(idle=100, since_ping=19)


def test_keepalive_needs_payload_and_interval() -> None:
    with pytest.raises(ConfigError):
        KeepAlive(KeepAliveMode.PERIODIC, 0, "")


def test_binance_policy_reconnects_before_the_24h_disconnect() -> None:
    policy = binance_policy(seed=1)
    assert policy.max_connection_age is not None and 23 * 3600 < policy.max_connection_age < 24 * 3600
    with pytest.raises(ConfigError):
        ConnectionPolicy(max_connection_age=0)


def test_watchdog_publishes_feed_stale_once_per_silent_episode() -> None:
    out: list[Any] = []
    wd = StaleWatchdog("feed", 2.0, out.append)
    wd.start(0)
    assert not wd.check(1_999_999_999)
    assert wd.check(2_000_000_000) and wd.check(3_000_000_000)
    assert out == [FeedStale("feed", 0, 2_000_000_000, 2_000_000_000)]
    wd.touch(4_000_000_000)
    assert not wd.check(5_000_000_000)
    assert wd.check(6_500_000_000) and len(out) == 2 and out[1].last_message_ns == 4_000_000_000


def test_watchdog_rejects_non_positive_silence() -> None:
    with pytest.raises(ConfigError, match="stale_after"):
        StaleWatchdog("feed", 0, print)


def test_deduper_drops_repeats_and_forgets_oldest_beyond_capacity() -> None:
    dd = TradeDeduper(capacity=3)
    assert [dd.seen(k) for k in ("1", "2", "1", "3", "4")] == [False, False, True, False, False]
    assert len(dd) == 3 and dd.duplicates == 1
    assert dd.seen("1") is False  # "1" was evicted (bounded memory)
    assert dd.seen("4") is True
    with pytest.raises(ConfigError):
        TradeDeduper(0)


def test_keepalive_unanswered_only_when_no_frame_at_all_followed_the_ping() -> None:
    ka = KeepAlive(KeepAliveMode.IDLE, 25.0, "ping", pong_timeout=5.0)
    assert not ka.unanswered(0, 0, 100_000_000_000)  # no ping sent yet
    assert not ka.unanswered(10_000_000_000, 9_000_000_000, 14_999_999_999)
    assert ka.unanswered(10_000_000_000, 9_000_000_000, 15_000_000_000)
    assert not ka.unanswered(10_000_000_000, 10_500_000_000, 60_000_000_000)  # a pong (or anything) came back
    assert not KeepAlive(KeepAliveMode.IDLE, 25.0, "ping").unanswered(10_000_000_000, 0, 10**15)
    with pytest.raises(ConfigError, match="pong_timeout"):
        KeepAlive(KeepAliveMode.IDLE, 25.0, "ping", pong_timeout=-1.0)


def test_okx_and_bybit_staleness_counts_data_not_the_keepalive_window() -> None:
    from tradebus.adapters.bybit.client import bybit_policy
    from tradebus.adapters.bybit.config import BybitConfig
    from tradebus.adapters.common.feed import FeedConfig, connection_policy
    from tradebus.adapters.okx.client import okx_policy
    from tradebus.adapters.okx.config import OkxConfig

    okx, bybit = okx_policy(OkxConfig()), bybit_policy(BybitConfig())
    assert (okx.stale_after, okx.keepalive.interval, okx.keepalive.pong_timeout) == (90.0, 25.0, 5.0)
    assert (bybit.stale_after, bybit.keepalive.interval, bybit.keepalive.pong_timeout) == (90.0, 20.0, 10.0)
    feed = FeedConfig(venue="okx", market="spot", subscriptions={"BTC-USDT.OKX": ["books"]})
    assert connection_policy(feed, okx.keepalive, default_stale_after=90.0).stale_after == 90.0
    assert connection_policy(feed.model_copy(update={"stale_after": 12.0}), okx.keepalive).stale_after == 12.0
