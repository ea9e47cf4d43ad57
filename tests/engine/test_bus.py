"""MessageBus: routing by (type, instrument), subscription order, unsubscribe."""

from __future__ import annotations

from typing import Any

from tradebus.engine.bus import MessageBus
from tradebus.engine.messages import Bar, Trade


def make_bar(instrument_id: str = "BTCUSDT.BINANCE", ts: int = 60, close: float = 100.0) -> Bar:
    return Bar(instrument_id, ts, ts, close, close + 1.0, close - 1.0, close, 5.0)


def make_trade(instrument_id: str = "BTCUSDT.BINANCE", ts: int = 61, price: float = 100.0) -> Trade:
    return Trade(instrument_id, ts, ts, price, 0.5, 1, f"t{ts}")


def test_publish_calls_handlers_in_subscription_order_across_specific_and_type_wide() -> None:
    bus = MessageBus()
    calls: list[str] = []
    bus.subscribe(Bar, lambda m: calls.append("a-specific"), "BTCUSDT.BINANCE")
    bus.subscribe(Bar, lambda m: calls.append("b-any"))
    bus.subscribe(Bar, lambda m: calls.append("c-specific"), "BTCUSDT.BINANCE")
    bus.publish(make_bar())
    assert calls == ["a-specific", "b-any", "c-specific"]


def test_instrument_subscription_does_not_receive_other_instruments() -> None:
    bus = MessageBus()
    got: list[Any] = []
    bus.subscribe(Bar, got.append, "ETHUSDT.BINANCE")
    bus.publish(make_bar("BTCUSDT.BINANCE"))
    assert got == []
    eth = make_bar("ETHUSDT.BINANCE")
    bus.publish(eth)
    assert got == [eth]


def test_routing_is_by_exact_type() -> None:
    bus = MessageBus()
    bars: list[Any] = []
    trades: list[Any] = []
    bus.subscribe(Bar, bars.append)
    bus.subscribe(Trade, trades.append)
    bar, trade = make_bar(), make_trade()
    bus.publish(trade)
    bus.publish(bar)
    assert bars == [bar]
    assert trades == [trade]


def test_message_without_instrument_reaches_type_wide_subscribers() -> None:
    class Ping:
        pass

    bus = MessageBus()
    got: list[Any] = []
    bus.subscribe(Ping, got.append)
    ping = Ping()
    bus.publish(ping)
    assert got == [ping]


def test_subscribe_after_first_publish_rebuilds_the_route() -> None:
    bus = MessageBus()
    calls: list[str] = []
    bus.subscribe(Bar, lambda m: calls.append("first"))
    bus.publish(make_bar())
    bus.subscribe(Bar, lambda m: calls.append("second"), "BTCUSDT.BINANCE")
    bus.publish(make_bar())
    assert calls == ["first", "first", "second"]


def test_unsubscribe_removes_only_that_handler() -> None:
    bus = MessageBus()
    kept: list[Any] = []
    dropped: list[Any] = []
    bus.subscribe(Bar, kept.append)
    bus.subscribe(Bar, dropped.append)
    bus.publish(make_bar(ts=1))
    bus.unsubscribe(Bar, dropped.append)
    bus.publish(make_bar(ts=2))
    assert [m.ts_event for m in kept] == [1, 2]
    assert [m.ts_event for m in dropped] == [1]


def test_unsubscribe_of_unknown_handler_is_a_no_op() -> None:
    bus = MessageBus()
    bus.unsubscribe(Bar, print, "X")
    assert bus.handlers(Bar, "X") == ()


def test_handlers_lists_the_call_order_and_publish_counts_messages() -> None:
    bus = MessageBus()

    def h1(m: Any) -> None: ...
    def h2(m: Any) -> None: ...

    bus.subscribe(Bar, h2, "BTCUSDT.BINANCE")
    bus.subscribe(Bar, h1)
    assert bus.handlers(Bar, "BTCUSDT.BINANCE") == (h2, h1)
    assert bus.handlers(Bar, "ETHUSDT.BINANCE") == (h1,)
    bus.publish(make_bar())
    bus.publish(make_trade())
    assert bus.published == 2


def test_handler_publishing_during_dispatch_is_delivered_synchronously() -> None:
    bus = MessageBus()
    order: list[str] = []

    def on_bar(bar: Bar) -> None:
        order.append("bar")
        bus.publish(make_trade(ts=bar.ts_event + 1))
        order.append("bar-done")

    bus.subscribe(Bar, on_bar)
    bus.subscribe(Trade, lambda t: order.append("trade"))
    bus.publish(make_bar())
    assert order == ["bar", "trade", "bar-done"]


def test_unsubscribing_the_last_handler_of_a_type_stops_delivery_until_a_new_subscription() -> None:
    bus = MessageBus()
    got: list[Any] = []
    bus.subscribe(Bar, got.append, "BTCUSDT.BINANCE")
    bus.unsubscribe(Bar, got.append, "BTCUSDT.BINANCE")
    bus.publish(make_bar(ts=1))
    bus.subscribe(Bar, got.append)
    bus.publish(make_bar(ts=2))
    assert [m.ts_event for m in got] == [2]
    assert bus.published == 2


def test_wanted_is_one_set_that_follows_subscriptions() -> None:
    bus = MessageBus()
    wanted = bus.wanted  # a publisher may hold it: it must never be replaced
    assert not bus.wants(Bar) and Bar not in wanted
    bus.subscribe(Bar, print, "BTCUSDT.BINANCE")
    bus.subscribe(Trade, print)
    assert wanted == {Bar, Trade} and bus.wants(Bar)
    bus.unsubscribe(Bar, print, "BTCUSDT.BINANCE")
    assert bus.wanted is wanted and wanted == {Trade}
    assert not bus.wants(Bar) and bus.wants(Trade)
    bus.unsubscribe(Trade, print)
    assert bus.wanted is wanted and not wanted
