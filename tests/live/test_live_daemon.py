"""``tradebus live``: the daemon against the local Binance account emulator and the recorded public stream."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from loguru import logger
from pydantic import SecretStr
from typer.testing import CliRunner

from tests.live.live_harness import KEY, SECRET, answered, trade_after_market_orders, until
from tests.live.node_testdata import BINANCE_INSTRUMENT, IID, SPOT_FRAMES, SPOT_SNAPSHOT, SPOT_TRADE_IDS, binance_config
from tradebus.adapters.binance.parse import parse_trade
from tradebus.adapters.binance.private_emulator import BinancePrivateEmulator, MatchingProtocol
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.cli import app
from tradebus.engine.messages import OrderSide, OrderStatus, OrderType, SubmitOrder
from tradebus.errors import ConfigError
from tradebus.execution.engine import OrderTimeouts
from tradebus.node.live import ApiKeys, LiveNode, LiveSettings, check_environment, check_feed_environment, load_live_config, parse_live_config
from tradebus.config import dump_config
from tradebus.reports.outputs import write_outputs
from tradebus.reports.writers import RunDirectory

SPOT = {**BINANCE_INSTRUMENT, "margin": False}
SPOT_LAST_TRADE = parse_trade(next(raw for _, raw in reversed(SPOT_FRAMES) if "@trade" in raw), 0, IID)


def _config(tmp: Path, ws_url: str, rest_url: str, emulator: BinancePrivateEmulator) -> dict[str, Any]:
    data = binance_config(
        ws_url,
        rest_url,
        ["trade"],
        tmp=tmp,
        journal=True,
        record=True,
        strategy={
            "name": "tradebus.strategies.tick_ema:TickEmaCross",
            "instruments": [IID],
            "params": {"fast": 2, "slow": 8, "quantity": 0.01, "mode": "long_only"},
        },
    )
    data["instruments"] = [SPOT]
    data["warm_up"] = False
    data["live"] = {
        "rest_url": emulator.rest_url,
        "ws_api_url": emulator.ws_api_url,
        "request_timeout": 1.0,
        "submit_timeout": 1.0,
        "cancel_timeout": 1.0,
        "retry_interval": 0.3,
        "not_found_grace": 2.0,
    }
    return data


async def _session(tmp_path: Path, *, dry_run: bool = False) -> tuple[LiveNode, BinancePrivateEmulator, str]:
    """Run a live session over the whole recorded stream; leave one resting order for the stop to cancel."""
    emulator = BinancePrivateEmulator(KEY, SECRET, {IID: parse_live_config({"instruments": [SPOT], **_minimal()}).instrument_map()[IID]}, {"USDT": 100_000.0})
    log = tmp_path / "daemon.log"
    sink = logger.add(log, level="DEBUG")
    try:
        async with emulator:
            protocol = MatchingProtocol(SPOT_SNAPSHOT, account=emulator, instrument_ids={"btcusdt": IID})
            async with LocalVenueServer(protocol, SPOT_FRAMES, speed=8.0) as srv:
                config = parse_live_config(_config(tmp_path, srv.ws_url, srv.http_url, emulator), "<test>")
                node = LiveNode(config, ApiKeys(SecretStr(KEY), SecretStr(SECRET)), dry_run=dry_run, handle_signals=False)
                task = asyncio.create_task(node.run())
                result = node.kernel.result
                await until(lambda: node.running.is_set() and result.trades == len(SPOT_TRADE_IDS), timeout=60)
                if not dry_run:
                    await trade_after_market_orders(node.kernel, emulator, SPOT_LAST_TRADE)
                await answered(node.kernel)
                now = node.clock.now_ns()
                resting = node.kernel.execution.submit(
                    SubmitOrder("TickEmaCross", IID, "", OrderSide.BUY, 0.01, now, now, OrderType.LIMIT, 10_000.0)
                )
                if not dry_run:
                    await until(lambda: resting.status is OrderStatus.ACCEPTED)
                node.stop("test done")
                await asyncio.wait_for(task, 20)
                kernel = node.kernel
                extra = {"node.json": node.summary.to_json()}
                write_outputs(RunDirectory(tmp_path / "out", "live"), kernel.result, kernel.instruments, dump_config(config), extra)
    finally:
        logger.remove(sink)
    return node, emulator, resting.client_order_id


def _minimal() -> dict[str, Any]:
    return {
        "strategy": {"name": "tradebus.strategies.tick_ema:TickEmaCross", "instruments": [IID], "params": {"fast": 2, "slow": 8, "quantity": 0.01}},
        "feeds": [{"venue": "binance", "market": "spot", "subscriptions": {IID: ["trade"]}}],
        "venue": {"fill_on": "trades"},
    }


@pytest.mark.slow
async def test_live_session_books_what_the_account_did_and_leaks_no_secret(tmp_path: Path) -> None:
    node, emulator, resting = await _session(tmp_path)
    kernel = node.kernel
    # the venue's answers, replacements and its own cancels go through the engine (journal, risk gate, timeouts)
    venue, execution = node.venue, kernel.execution
    assert (venue.on_answer, venue.on_replace, venue.on_cancel, venue.on_replacing) == (
        execution.reconcile_order, execution.submit, execution.cancel, execution.replacing
    )
    # every fill of the account is booked once, and only those
    assert emulator.trades, "the strategy traded"
    assert sorted(f.trade_id for f in kernel.result.fills) == sorted(str(t["id"]) for t in emulator.trades)
    assert kernel.portfolio.position(IID) == pytest.approx(emulator.balances.get("BTC", 0.0), abs=1e-12)
    # every order was placed exactly once, and the stop canceled the resting one at the venue
    posts = [coid for method, path, coid in emulator.requests if method == "POST"]
    assert len(posts) == len(set(posts)) == len(emulator.orders)
    assert emulator.orders[resting].status is OrderStatus.CANCELED
    assert kernel.orders.order(resting).status is OrderStatus.CANCELED
    assert not [o for o in emulator.orders.values() if o.status in (OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED)]
    log = (tmp_path / "daemon.log").read_text()
    assert "environment TESTNET" in log and "account 354937868" in log
    assert log.index("environment TESTNET") < log.index("submitted")
    # neither the key nor the secret is in any file the run wrote, nor in the log
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"daemon.log", "journal.sqlite", "frames.jsonl.gz", "config.yaml", "fills.csv", "node.json"}
    for path in files:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
        for secret in (KEY, SECRET):
            assert secret.encode() not in raw, f"{secret[:6]}... found in {path.name}"


async def test_dry_run_decides_but_sends_nothing(tmp_path: Path) -> None:
    node, emulator, resting = await _session(tmp_path, dry_run=True)
    assert [m for m, _, _ in emulator.requests if m in ("POST", "DELETE")] == []
    orders = node.kernel.orders.orders()
    assert len(orders) > 1 and all(o.status in (OrderStatus.REJECTED, OrderStatus.DENIED) for o in orders)
    assert any(o.reason == "dry run: not sent" for o in orders)


def test_mainnet_needs_the_config_and_the_flag() -> None:
    check_environment(LiveSettings(), mainnet=False)
    check_environment(LiveSettings(environment="mainnet"), mainnet=True)
    with pytest.raises(ConfigError, match="--mainnet"):
        check_environment(LiveSettings(environment="mainnet"), mainnet=False)
    with pytest.raises(ConfigError, match="live.environment is 'testnet'"):
        check_environment(LiveSettings(), mainnet=True)
    assert LiveSettings(venue="binance").endpoints()[0] == "https://testnet.binance.vision"
    config = parse_live_config({"instruments": [SPOT], **_minimal()})
    assert config.live.venue == "binance"  # the feeds' venue
    assert (config.live.api_key_env, config.live.api_passphrase_env) == ("TRADEBUS_BINANCE_API_KEY", None)
    with pytest.raises(ConfigError, match="not a registered venue"):
        parse_live_config({"instruments": [SPOT], **_minimal(), "live": {"venue": "kraken"}})
    okx = LiveSettings(venue="okx")
    assert (okx.api_key_env, okx.api_secret_env, okx.api_passphrase_env) == (
        "TRADEBUS_OKX_API_KEY", "TRADEBUS_OKX_API_SECRET", "TRADEBUS_OKX_API_PASSPHRASE"
    )
    with pytest.raises(ConfigError, match="TRADEBUS_OKX_API_PASSPHRASE"):
        ApiKeys.from_env(okx, {"TRADEBUS_OKX_API_KEY": KEY, "TRADEBUS_OKX_API_SECRET": SECRET})


def test_a_testnet_config_pointed_at_a_mainnet_endpoint_is_refused_without_both_confirmations() -> None:
    """A testnet config whose rest_url was api.binance.com traded real money without --mainnet."""
    for venue, field, url in (
        ("binance", "rest_url", "https://api.binance.com"),
        ("binance", "ws_api_url", "wss://ws-api.binance.com:443/ws-api/v3"),
        ("bybit", "rest_url", "https://api.bybit.com/"),
        ("okx", "ws_api_url", "wss://ws.okx.com:8443/ws/v5/private"),
    ):
        with pytest.raises(ConfigError, match=rf"live.{field}: .* is {venue}'s mainnet \(real money\) but live.environment is 'testnet'"):
            check_environment(LiveSettings(venue=venue, **{field: url}), mainnet=False)
        check_environment(LiveSettings(venue=venue, environment="mainnet", **{field: url}), mainnet=True)
    # OKX demo trading shares the mainnet's REST host (the demo header tells them apart); local emulators pass.
    check_environment(LiveSettings(venue="okx", rest_url="https://www.okx.com"), mainnet=False)
    check_environment(LiveSettings(venue="binance", rest_url="http://127.0.0.1:8080", ws_api_url="ws://127.0.0.1:8080/ws-api/v3"), mainnet=False)
    check_environment(LiveSettings(venue="binance", market="perpetual", rest_url="https://testnet.binancefuture.com"), mainnet=False)


def test_a_testnet_config_pointed_at_another_mainnet_host_of_the_venue_is_refused(
    tmp_path: Path, _loguru_to_current_stderr: None
) -> None:
    """A testnet config whose rest_url was api1.binance.com (or api.binance.com.) sent signed requests to the real account."""
    for venue, market, field, url in (
        ("binance", "spot", "rest_url", "https://api1.binance.com"),  # Binance's documented alternative base URLs
        ("binance", "spot", "rest_url", "https://api-gcp.binance.com"),
        ("binance", "spot", "rest_url", "https://API.binance.com./"),  # the same host, fully qualified
        ("binance", "spot", "rest_url", "https://fapi.binance.com"),  # USD-M's mainnet in a spot config
        ("binance", "spot", "ws_api_url", "wss://ws-api.binance.com:9443/ws-api/v3"),
        ("binance", "perpetual", "rest_url", "https://api.binance.com"),
        ("binance", "perpetual", "ws_api_url", "wss://fstream.binance.com"),
        ("bybit", "spot", "rest_url", "https://api.bytick.com"),
        ("bybit", "perpetual", "ws_api_url", "wss://stream.bybit.com./v5/private"),
    ):
        settings = LiveSettings(venue=venue, market=market, **{field: url})
        with pytest.raises(ConfigError, match=rf"live.{field}: .* is {venue}'s mainnet \(real money\) but live.environment is 'testnet'"):
            check_environment(settings, mainnet=False)
        check_environment(LiveSettings(venue=venue, market=market, environment="mainnet", **{field: url}), mainnet=True)
    # the testnets' own hosts and other hosts still pass
    check_environment(LiveSettings(venue="bybit", rest_url="https://api-testnet.bybit.com", ws_api_url="wss://stream-testnet.bybit.com/v5/private"), mainnet=False)
    check_environment(LiveSettings(venue="binance", rest_url="https://testnet.binance.vision."), mainnet=False)
    check_environment(LiveSettings(venue="binance", rest_url="https://notbinance.com"), mainnet=False)
    # the command exits 2 before it reads a key or sends a request
    import yaml

    path = tmp_path / "live.yaml"
    path.write_text(yaml.safe_dump({"instruments": [SPOT], **_minimal(), "live": {"rest_url": "https://api1.binance.com"}}))
    result = CliRunner().invoke(app, ["live", str(path), "--dry-run"], env={"TRADEBUS_BINANCE_API_KEY": KEY, "TRADEBUS_BINANCE_API_SECRET": SECRET})
    assert result.exit_code == 2 and "api1.binance.com is binance's mainnet (real money)" in result.output, result.output


@pytest.mark.parametrize("market", ["spot", "perpetual"])
def test_a_testnet_config_pointed_at_bybits_demo_trading_is_refused_as_demo_trading_not_as_real_money(market: str) -> None:
    """Bybit's demo trading (api-demo.bybit.com, stream-demo.bybit.com: docs/v5/demo) is neither its testnet nor
    real money. Before, a testnet config pointed there was refused as "bybit's mainnet (real money)", advising
    live.environment: mainnet and --mainnet; now the refusal says what the host is and where the testnet is."""
    for field, url in (("rest_url", "https://api-demo.bybit.com"), ("ws_api_url", "wss://stream-demo.bybit.com/v5/private")):
        with pytest.raises(ConfigError) as raised:
            check_environment(LiveSettings(venue="bybit", market=market, **{field: url}), mainnet=False)
        assert str(raised.value) == (
            f"live.{field}: {url} is bybit's demo trading, which tradebus does not trade (its testnet is "
            "https://api-testnet.bybit.com, wss://stream-testnet.bybit.com/v5/private, with testnet keys); "
            f"leave live.{field} unset to trade the testnet"
        )


def test_a_live_spot_account_refuses_margin_instruments() -> None:
    """Spot orders go to the spot API, which rejects a short; the local margin account would have allowed it."""
    with pytest.raises(ConfigError, match=(
        r"instruments: \['BTCUSDT.BINANCE'\] set margin: true, but live spot orders go to the venue's spot API, "
        r"which neither borrows nor sells short"
    )):
        parse_live_config({"instruments": [{**SPOT, "margin": True}], **_minimal()})


def test_keys_come_from_the_named_variables_and_never_show() -> None:
    keys = ApiKeys.from_env(LiveSettings(venue="binance"), {"TRADEBUS_BINANCE_API_KEY": KEY, "TRADEBUS_BINANCE_API_SECRET": SECRET})
    assert keys.key.get_secret_value() == KEY
    assert KEY not in repr(keys) and SECRET not in f"{keys.secret} {keys.secret!r}"
    with pytest.raises(ConfigError, match="TRADEBUS_BINANCE_API_SECRET") as info:
        ApiKeys.from_env(LiveSettings(venue="binance"), {"TRADEBUS_BINANCE_API_KEY": KEY})
    assert KEY not in str(info.value)


def test_cli_refuses_mainnet_without_the_flag_and_names_a_missing_key(tmp_path: Path, _loguru_to_current_stderr: None) -> None:
    data = {"instruments": [SPOT], **_minimal(), "live": {"environment": "mainnet"}}
    import yaml

    path = tmp_path / "live.yaml"
    path.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(app, ["live", str(path)], env={"TRADEBUS_BINANCE_API_KEY": KEY, "TRADEBUS_BINANCE_API_SECRET": SECRET})
    assert result.exit_code == 2 and "--mainnet" in result.output
    data["live"] = {}
    data["feeds"][0]["ws_url"] = "wss://stream.testnet.binance.vision"  # the testnet's market data (below)
    path.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(app, ["live", str(path)], env={"TRADEBUS_BINANCE_API_KEY": "", "TRADEBUS_BINANCE_API_SECRET": ""})
    assert result.exit_code == 2 and "TRADEBUS_BINANCE_API_KEY" in result.output


@pytest.mark.parametrize("shipped", ["live_okx_swap_demo.yaml", "live_bybit_linear_testnet.yaml", "live_binance_testnet.yaml"])
def test_a_testnet_daemon_whose_feed_has_no_ws_url_is_refused_not_fed_mainnet_prices(
    shipped: str, tmp_path: Path, _loguru_to_current_stderr: None
) -> None:
    """A shipped testnet config without its feed's ws_url traded the testnet's book on prices from the venue's mainnet
    stream (a feed's default endpoint); now it exits 2 naming the feed before any key is read or anything connects."""
    import yaml

    data = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs" / shipped).read_text(encoding="utf-8"))
    venue, market = data["feeds"][0]["venue"], data["feeds"][0]["market"]
    data["feeds"][0].pop("ws_url")
    path = tmp_path / "live.yaml"
    path.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(app, ["live", str(path), "--dry-run"], env={})
    assert result.exit_code == 2, result.output
    assert f"feeds.0: this {venue} {market} feed has no ws_url, so it streams {venue}'s mainnet market data" in result.output
    assert "API_KEY" not in result.output
    config = load_live_config(path)
    with pytest.raises(ConfigError, match="feeds.0: "):
        check_feed_environment(config)
    # mainnet, an explicit ws_url (the mainnet's too: meant) and another venue's feed (a signal) are left alone
    check_feed_environment(config.model_copy(update={"live": config.live.model_copy(update={"environment": "mainnet"})}))
    for url in ("wss://example.test/ws", "wss://stream.bybit.com/v5/public/linear"):
        feeds = [config.feeds[0].model_copy(update={"ws_url": url})]
        check_feed_environment(config.model_copy(update={"feeds": feeds}))
    other = "okx" if venue != "okx" else "bybit"
    check_feed_environment(config.model_copy(update={"live": config.live.model_copy(update={"venue": other})}))


async def _run_until(node: LiveNode, done: Any, timeout: float = 20.0) -> None:
    task = asyncio.create_task(node.run())
    try:
        await until(lambda: task.done() or (node.running.is_set() and done()), timeout=timeout)
    finally:
        node.stop("test done")
        await asyncio.wait_for(task, 20)


async def test_restart_books_the_fill_missed_while_down_and_reports_external_orders(tmp_path: Path) -> None:
    from tradebus.adapters.binance.trading import BinanceTrading
    from tradebus.engine.messages import Trade
    from tradebus.execution.orders import Order

    emulator = BinancePrivateEmulator(KEY, SECRET, {IID: parse_live_config({"instruments": [SPOT], **_minimal()}).instrument_map()[IID]}, {"USDT": 100_000.0})
    async with emulator:
        protocol = MatchingProtocol(SPOT_SNAPSHOT, account=emulator, instrument_ids={"btcusdt": IID})
        async with LocalVenueServer(protocol, SPOT_FRAMES) as srv:
            data = _config(tmp_path, srv.ws_url, srv.http_url, emulator)
            data["live"]["cancel_on_stop"] = False
            config = parse_live_config(data, "<test>")
            keys = ApiKeys(SecretStr(KEY), SecretStr(SECRET))
            first = LiveNode(config, keys, handle_signals=False)
            holder: list[Any] = []

            def place_resting() -> bool:
                if first.guard.holds:
                    return False  # orders wait for the start-up reconciliation
                if not holder:
                    now = first.clock.now_ns()
                    cmd = SubmitOrder("TickEmaCross", IID, "", OrderSide.BUY, 0.01, now, now, OrderType.LIMIT, 20_000.0)
                    holder.append(first.kernel.execution.submit(cmd))
                return holder[0].status is OrderStatus.ACCEPTED

            await _run_until(first, place_resting)
            resting = holder[0].client_order_id
            assert emulator.orders[resting].status is OrderStatus.ACCEPTED  # left working: cancel_on_stop is off
            # While the daemon is down: the order fills, and someone places an order by hand.
            last = emulator.clock.now_ns()
            emulator.on_trade(Trade(IID, last + 10**9, last + 10**9, 19_999.0, 1.0, -1, "down-1"))
            assert emulator.orders[resting].status is OrderStatus.FILLED
            manual = BinanceTrading(emulator.rest_url, keys.key, keys.secret, config.instrument_map())
            await manual.place(Order("byhand1", "", IID, OrderSide.SELL, OrderType.LIMIT, 0.001, 90_000.0))
            await manual.close()

            second = LiveNode(config, keys, handle_signals=False)
            await _run_until(
                second,
                lambda: second.kernel.orders.get(resting) is not None
                and second.kernel.orders.order(resting).status is OrderStatus.FILLED
                and not second.guard.holds,
            )
    order = second.kernel.orders.order(resting)
    assert order.filled_qty == pytest.approx(0.01)
    fills = [f for f in second.kernel.result.fills if f.client_order_id == resting]
    assert [f.trade_id for f in fills] == [str(t["id"]) for t in emulator.trades if t["orderId"] == emulator.orders[resting].order_id]
    assert second.kernel.portfolio.position(IID) == pytest.approx(emulator.balances["BTC"], abs=1e-12)
    assert [r.client_order_id for r in second.external_orders] == ["byhand1"]
    assert emulator.orders["byhand1"].status is OrderStatus.ACCEPTED  # reported, left alone
    posts = [coid for method, _, coid in emulator.requests if method == "POST"]
    assert posts.count(resting) == 1 and len(posts) == len(set(posts))


async def test_kill_switch_cancels_everything_and_halts_until_resume(tmp_path: Path) -> None:
    from tradebus.adapters.binance.trading import BinanceTrading
    from tradebus.engine.messages import TradingState
    from tradebus.execution.journal import Journal
    from tradebus.execution.orders import Order
    from tradebus.node.live import kill_switch, set_trading_state

    instruments = parse_live_config({"instruments": [SPOT], **_minimal()}).instrument_map()
    async with BinancePrivateEmulator(KEY, SECRET, instruments, {"USDT": 100_000.0}) as emulator:
        keys = ApiKeys(SecretStr(KEY), SecretStr(SECRET))
        api = BinanceTrading(emulator.rest_url, keys.key, keys.secret, instruments)
        for n in range(3):
            await api.place(Order(f"open{n}", "", IID, OrderSide.BUY, OrderType.LIMIT, 0.001, 20_000.0 + n))
        await api.close()
        data = _config(tmp_path, "ws://127.0.0.1:9", "http://127.0.0.1:9", emulator)
        config = parse_live_config(data, "<test>")
        canceled = await kill_switch(config, keys, "test kill")
    assert sorted(canceled) == ["open0", "open1", "open2"]
    assert {o.status for o in emulator.orders.values()} == {OrderStatus.CANCELED}
    journal = Journal(tmp_path / "journal.sqlite")
    state = journal.load_risk_state()
    journal.close()
    assert state is not None and state.manual_state is TradingState.HALTED and state.manual_reason == "test kill"
    set_trading_state(config, TradingState.ACTIVE, "resumed")
    journal = Journal(tmp_path / "journal.sqlite")
    state = journal.load_risk_state()
    journal.close()
    assert state is not None and state.manual_state is TradingState.ACTIVE
    # A mistyped journal path made a new, ACTIVE journal and left the killed one HALTED.
    elsewhere = config.model_copy(update={"journal": tmp_path / "typo" / "journal.sqlite"})
    with pytest.raises(ConfigError, match=r"live-resume: no journal at .*typo.*journal.sqlite: nothing to resume"):
        set_trading_state(elsewhere, TradingState.ACTIVE, "resumed")
    assert not (tmp_path / "typo").exists()


async def test_kill_switch_goes_on_past_a_failed_cancel_and_halts_even_when_orders_stay_open(tmp_path: Path) -> None:
    """One 5xx on a cancel stopped the kill switch: no order canceled and the journal not HALTED."""
    from tradebus.adapters.binance.private_emulator import RestFault
    from tradebus.adapters.binance.trading import BinanceTrading
    from tradebus.engine.messages import TradingState
    from tradebus.errors import OrdersLeftAtVenue
    from tradebus.execution.journal import Journal
    from tradebus.execution.orders import Order
    from tradebus.node.live import kill_switch

    instruments = parse_live_config({"instruments": [SPOT], **_minimal()}).instrument_map()
    keys = ApiKeys(SecretStr(KEY), SecretStr(SECRET))

    def halted(journal_path: Path) -> bool:
        journal = Journal(journal_path)
        state = journal.load_risk_state()
        journal.close()
        return state is not None and state.manual_state is TradingState.HALTED

    # A 503 on the first cancel, a 429 on the second: every order is canceled all the same.
    faults = [RestFault("error5xx", "DELETE", "/api/v3/order"), RestFault("rate_limit", "DELETE", "/api/v3/order", retry_after=0)]
    async with BinancePrivateEmulator(KEY, SECRET, instruments, {"USDT": 100_000.0}, faults) as emulator:
        api = BinanceTrading(emulator.rest_url, keys.key, keys.secret, instruments)
        for n in range(3):
            await api.place(Order(f"open{n}", "", IID, OrderSide.BUY, OrderType.LIMIT, 0.001, 20_000.0 + n))
        await api.close()
        config = parse_live_config(_config(tmp_path / "a", "ws://127.0.0.1:9", "http://127.0.0.1:9", emulator), "<test>")
        canceled = await kill_switch(config, keys, "test kill")
    assert sorted(canceled) == ["open0", "open1", "open2"]
    assert {o.status for o in emulator.orders.values()} == {OrderStatus.CANCELED}
    assert halted(tmp_path / "a" / "journal.sqlite")

    # The venue never lists its open orders: the kill switch says so, and the journal is HALTED.
    down = [RestFault("error5xx", "GET", "/api/v3/openOrders") for _ in range(6)]  # two listings a round, three rounds
    async with BinancePrivateEmulator(KEY, SECRET, instruments, {"USDT": 100_000.0}, down) as emulator:
        api = BinanceTrading(emulator.rest_url, keys.key, keys.secret, instruments)
        await api.place(Order("stuck", "", IID, OrderSide.BUY, OrderType.LIMIT, 0.001, 20_000.0))
        await api.close()
        config = parse_live_config(_config(tmp_path / "b", "ws://127.0.0.1:9", "http://127.0.0.1:9", emulator), "<test>")
        with pytest.raises(OrdersLeftAtVenue, match=r"after 3 rounds the open orders could not be read \(.*\): which are open "
                           r"is unknown; the journal .*journal.sqlite is HALTED"):
            await kill_switch(config, keys, "test kill")
    assert emulator.orders["stuck"].status is OrderStatus.ACCEPTED
    assert halted(tmp_path / "b" / "journal.sqlite")



async def test_kill_switch_halts_the_journal_before_its_first_cancel(tmp_path: Path) -> None:
    """HALTED was written only after the three cancel rounds: a daemon running on the journal, which reads its trading
    state every second, kept sending orders meanwhile, and the kill switch ended with some of them still open."""
    from tradebus.adapters.binance.private_emulator import RestFault
    from tradebus.adapters.binance.trading import BinanceTrading
    from tradebus.engine.messages import TradingState
    from tradebus.execution.journal import Journal
    from tradebus.execution.orders import Order
    from tradebus.node.live import kill_switch

    instruments = parse_live_config({"instruments": [SPOT], **_minimal()}).instrument_map()
    keys = ApiKeys(SecretStr(KEY), SecretStr(SECRET))
    release = asyncio.Event()
    held = RestFault("hold", "DELETE", "/api/v3/order", release=release)
    async with BinancePrivateEmulator(KEY, SECRET, instruments, {"USDT": 100_000.0}, [held]) as emulator:
        api = BinanceTrading(emulator.rest_url, keys.key, keys.secret, instruments)
        await api.place(Order("open0", "", IID, OrderSide.BUY, OrderType.LIMIT, 0.001, 20_000.0))
        await api.close()
        config = parse_live_config(_config(tmp_path, "ws://127.0.0.1:9", "http://127.0.0.1:9", emulator), "<test>")
        kill = asyncio.create_task(kill_switch(config, keys, "test kill"))
        try:
            await until(lambda: held.fired)
            state = None
            if (tmp_path / "journal.sqlite").is_file():
                journal = Journal(tmp_path / "journal.sqlite")
                state = journal.load_risk_state()
                journal.close()
        finally:
            release.set()
            canceled = await kill
    assert state is not None and state.manual_state is TradingState.HALTED and state.manual_reason == "test kill"
    assert canceled == ["open0"] and emulator.orders["open0"].status is OrderStatus.CANCELED


def test_run_live_from_a_config_file_writes_the_run_outputs(tmp_path: Path) -> None:
    """The command path: config file, keys from the environment, the node built on its own loop, outputs."""
    import threading

    import yaml

    from tradebus.node.live import run_live

    ready = threading.Event()
    stop: list[Any] = []
    urls: dict[str, Any] = {}

    def servers() -> None:
        async def main() -> None:
            instruments = parse_live_config({"instruments": [SPOT], **_minimal()}).instrument_map()
            async with BinancePrivateEmulator(KEY, SECRET, instruments, {"USDT": 100_000.0}) as emulator:
                protocol = MatchingProtocol(SPOT_SNAPSHOT, account=emulator, instrument_ids={"btcusdt": IID})
                async with LocalVenueServer(protocol, SPOT_FRAMES, speed=20.0) as srv:
                    urls.update(data=_config(tmp_path, srv.ws_url, srv.http_url, emulator), emulator=emulator)
                    done = asyncio.Event()
                    stop.append((asyncio.get_running_loop(), done))
                    ready.set()
                    await done.wait()

        asyncio.run(main())

    thread = threading.Thread(target=servers, daemon=True)
    thread.start()
    assert ready.wait(20)
    try:
        path = tmp_path / "live.yaml"
        path.write_text(yaml.safe_dump(urls["data"]))
        env = {"TRADEBUS_BINANCE_API_KEY": KEY, "TRADEBUS_BINANCE_API_SECRET": SECRET}
        summary, result = run_live(path, tmp_path / "out", max_seconds=3.0, environ=env)
    finally:
        loop, done = stop[0]
        loop.call_soon_threadsafe(done.set)
        thread.join(20)
    assert summary.stop_reason.startswith("max_seconds")
    assert result.trades > 0
    assert (tmp_path / "out" / "node.json").is_file() and (tmp_path / "out" / "fills.csv").is_file()
    config_text = (tmp_path / "out" / "config.yaml").read_text()
    assert "TRADEBUS_BINANCE_API_KEY" in config_text and KEY not in config_text and SECRET not in config_text


async def test_a_kill_from_another_process_halts_the_running_daemon(tmp_path: Path) -> None:
    """``live-kill`` writes HALTED into the journal of a daemon that runs on: the daemon kept trading, and
    its next store of the risk state put ACTIVE back. It takes the state up within a second or so."""
    from tradebus.engine.messages import TradingState
    from tradebus.execution.journal import Journal
    from tradebus.node.live import set_trading_state

    emulator = BinancePrivateEmulator(KEY, SECRET, {IID: parse_live_config({"instruments": [SPOT], **_minimal()}).instrument_map()[IID]}, {"USDT": 100_000.0})
    async with emulator:
        protocol = MatchingProtocol(SPOT_SNAPSHOT, account=emulator, instrument_ids={"btcusdt": IID})
        async with LocalVenueServer(protocol, SPOT_FRAMES, speed=1.0) as srv:
            config = parse_live_config(_config(tmp_path, srv.ws_url, srv.http_url, emulator), "<test>")
            node = LiveNode(config, ApiKeys(SecretStr(KEY), SecretStr(SECRET)), handle_signals=False)
            task = asyncio.create_task(node.run())
            risk = node.kernel.risk
            await until(lambda: node.running.is_set(), timeout=30)
            assert risk.state is TradingState.ACTIVE
            set_trading_state(config, TradingState.HALTED, "operator kill")  # as live-kill does, on its own connection
            await until(lambda: risk.state is TradingState.HALTED, timeout=5)
            now = node.clock.now_ns()
            order = node.kernel.execution.submit(
                SubmitOrder("TickEmaCross", IID, "", OrderSide.BUY, 0.01, now, now, OrderType.LIMIT, 10_000.0)
            )
            assert order.status is OrderStatus.DENIED and "HALTED" in order.reason
            set_trading_state(config, TradingState.ACTIVE, "operator resume")
            await until(lambda: risk.state is TradingState.ACTIVE, timeout=5)
            set_trading_state(config, TradingState.HALTED, "operator kill again")
            await until(lambda: risk.state is TradingState.HALTED, timeout=5)
            node.stop("test done")
            await asyncio.wait_for(task, 20)
    journal = Journal(tmp_path / "journal.sqlite")
    state = journal.load_risk_state()
    journal.close()
    assert state is not None and (state.manual_state, state.manual_reason) == (TradingState.HALTED, "operator kill again")


async def test_once_live_kill_committed_halted_the_running_daemon_sends_no_new_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daemon running on the journal read the trading state ``live-kill`` stores only once a second: a strategy
    submitting every 10 ms kept sending new orders for up to a second after HALTED was committed, racing the
    kill switch's cancel rounds. Now a submit whose request starts after the commit is withdrawn, never sent."""
    import time

    import tradebus.node.live as live
    from tradebus.engine.messages import TradingState

    committed: list[int] = []
    store = live.set_trading_state

    def set_trading_state(*args: Any, **kwargs: Any) -> None:
        store(*args, **kwargs)
        committed.append(time.time_ns())  # the same loop: nothing of the daemon ran since the commit

    monkeypatch.setattr(live, "set_trading_state", set_trading_state)
    emulator = BinancePrivateEmulator(KEY, SECRET, {IID: parse_live_config({"instruments": [SPOT], **_minimal()}).instrument_map()[IID]}, {"USDT": 100_000.0})
    async with emulator:
        protocol = MatchingProtocol(SPOT_SNAPSHOT, account=emulator, instrument_ids={"btcusdt": IID})
        async with LocalVenueServer(protocol, SPOT_FRAMES, speed=1.0) as srv:
            data = _config(tmp_path, srv.ws_url, srv.http_url, emulator)
            data["strategy"] = {"name": "tests.live.resting_strategy:RepeatingBuy", "instruments": [IID],
                                "params": {"quantity": 0.001, "price": 20_000.0, "every_ms": 10}}  # fmt: skip
            config = parse_live_config(data, "<test>")
            keys = ApiKeys(SecretStr(KEY), SecretStr(SECRET))
            node = LiveNode(config, keys, handle_signals=False)
            started: dict[str, int] = {}  # client order id -> when its place request started (wall clock ns)
            place = node.venue.api.place

            def timed_place(order: Any) -> Any:
                started[order.client_order_id] = time.time_ns()
                return place(order)

            node.venue.api.place = timed_place  # type: ignore[method-assign]
            task = asyncio.create_task(node.run())
            try:
                await until(lambda: node.running.is_set() and sum(
                    o.status is OrderStatus.ACCEPTED for o in node.kernel.orders.orders()) >= 5, timeout=30)  # fmt: skip
                canceled = await live.kill_switch(config, keys, "operator kill")
                await asyncio.sleep(0.3)
                assert node.kernel.risk.state is TradingState.HALTED
            finally:
                node.stop("test done")
                await asyncio.wait_for(task, 20)
    halted = committed[0]
    posted = [coid for method, path, coid in emulator.requests if method == "POST" and path == "/api/v3/order"]
    late = [coid for coid in posted if started[coid] >= halted]
    assert late == [], f"{len(late)} order(s) sent after HALTED was committed: {late}"
    submitted_after = [o for o in node.kernel.orders.orders() if o.ts_created >= halted]
    assert submitted_after, "the strategy submitted nothing after the kill: the test proves nothing"
    withdrawn = [o for o in submitted_after if o.status is OrderStatus.REJECTED]
    assert all("withdrawn, never sent: trading state HALTED" in o.reason and "operator kill" in o.reason for o in withdrawn)
    assert all(o.status in (OrderStatus.DENIED, OrderStatus.REJECTED) for o in submitted_after)
    # Every order that reached the venue is canceled: by the kill switch, or by the daemon taking the HALTED up.
    assert set(canceled) <= set(posted) and set(emulator.orders) == set(posted)
    assert {o.status for o in emulator.orders.values()} == {OrderStatus.CANCELED}


async def test_a_halt_cancels_the_resting_order_at_the_venue(tmp_path: Path) -> None:
    """An operator ``/halt`` (``RiskGate.set_state``, as a breaker's trip) denied new orders only: a buy resting
    at the venue stayed working and could still fill. The halt now cancels it there, journaled."""
    from tradebus.engine.messages import CancelOrder, TradingState
    from tradebus.execution.journal import Journal

    emulator = BinancePrivateEmulator(KEY, SECRET, {IID: parse_live_config({"instruments": [SPOT], **_minimal()}).instrument_map()[IID]}, {"USDT": 100_000.0})
    async with emulator:
        protocol = MatchingProtocol(SPOT_SNAPSHOT, account=emulator, instrument_ids={"btcusdt": IID})
        async with LocalVenueServer(protocol, SPOT_FRAMES, speed=1.0) as srv:
            config = parse_live_config(_config(tmp_path, srv.ws_url, srv.http_url, emulator), "<test>")
            node = LiveNode(config, ApiKeys(SecretStr(KEY), SecretStr(SECRET)), handle_signals=False)
            task = asyncio.create_task(node.run())
            await until(lambda: node.running.is_set() and IID not in node.guard.holds, timeout=30)  # reconciled
            now = node.clock.now_ns()
            resting = node.kernel.execution.submit(
                SubmitOrder("TickEmaCross", IID, "", OrderSide.BUY, 0.01, now, now, OrderType.LIMIT, 10_000.0)
            )
            await until(lambda: resting.status is OrderStatus.ACCEPTED)
            node.kernel.risk.set_state(TradingState.HALTED, "operator /halt")
            await until(lambda: resting.status is OrderStatus.CANCELED, timeout=5)
            assert emulator.orders[resting.client_order_id].status is OrderStatus.CANCELED
            node.stop("test done")
            await asyncio.wait_for(task, 20)
    journal = Journal(tmp_path / "journal.sqlite")
    cancels = [e.message for e in journal.entries() if type(e.message) is CancelOrder]
    journal.close()
    assert [(c.client_order_id, c.reason) for c in cancels] == [(resting.client_order_id, "trading state HALTED: operator /halt")]


@contextlib.asynccontextmanager
async def _idle_spot_daemon(tmp_path: Path) -> AsyncIterator[tuple[LiveNode, BinancePrivateEmulator]]:
    """A reconciled Binance spot daemon holding 100,000 USDT and 0.05 BTC whose strategy trades nothing, and its
    venue's emulator; stopped on exit."""
    instruments = {IID: parse_live_config({"instruments": [SPOT], **_minimal()}).instrument_map()[IID]}
    emulator = BinancePrivateEmulator(KEY, SECRET, instruments, {"USDT": 100_000.0, "BTC": 0.05})
    async with emulator:
        protocol = MatchingProtocol(SPOT_SNAPSHOT, account=emulator, instrument_ids={"btcusdt": IID})
        async with LocalVenueServer(protocol, SPOT_FRAMES, speed=1.0) as srv:
            data = _config(tmp_path, srv.ws_url, srv.http_url, emulator)
            data["balances"] = {"USDT": 100_000.0, "BTC": 0.05}
            data["strategy"]["params"].update(fast=600, slow=1_000)  # never ready on the 546 trades: it trades nothing
            config = parse_live_config(data, "<test>")
            node = LiveNode(config, ApiKeys(SecretStr(KEY), SecretStr(SECRET)), handle_signals=False)
            task = asyncio.create_task(node.run())
            try:
                await until(lambda: node.running.is_set() and IID not in node.guard.holds, timeout=30)  # reconciled
                yield node, emulator
            finally:
                node.stop("test done")
                await asyncio.wait_for(task, 20)


@pytest.mark.parametrize("state", ["REDUCING", "HALTED"])
async def test_a_state_the_daemon_sets_after_the_gate_passed_an_order_withdraws_it_unsent(
    tmp_path: Path, state: str
) -> None:
    """A trading state the daemon sets itself (a breaker's trip, an operator's ``/halt``: ``RiskGate.set_state``)
    after the risk gate passed a buy, before its request left. REDUCING let the buy leave: it was placed at the
    venue, then canceled by the move's cancel of the orders REDUCING no longer allows. Now a submit the state
    would cancel is withdrawn unsent (``OrderRejected`` "withdrawn, never sent: trading state ..."): the venue
    never sees it. A sell that reduces the BTC held still goes under REDUCING."""
    from tradebus.engine.messages import TradingState

    async with _idle_spot_daemon(tmp_path) as (node, emulator):
        now = node.clock.now_ns()
        submit = node.kernel.execution.submit
        buy = submit(SubmitOrder("TickEmaCross", IID, "", OrderSide.BUY, 0.01, now, now, OrderType.LIMIT, 10_000.0))
        sell = submit(SubmitOrder("TickEmaCross", IID, "", OrderSide.SELL, 0.01, now, now, OrderType.LIMIT, 90_000.0))
        assert buy.status is OrderStatus.SUBMITTED and sell.status is OrderStatus.SUBMITTED  # the gate passed both
        node.kernel.risk.set_state(TradingState[state], "risk limit reached")  # before either request left
        goes = OrderStatus.ACCEPTED if state == "REDUCING" else OrderStatus.REJECTED
        await until(lambda: not buy.is_open and sell.status is goes, timeout=5)
        await answered(node.kernel)
        await asyncio.sleep(0.3)  # a cancel sent for the buy would have reached the emulator
        assert sell.status is goes
    assert buy.status is OrderStatus.REJECTED
    assert buy.reason.startswith(f"withdrawn, never sent: trading state {state}: risk limit reached"), buy.reason
    sent = [coid for _method, _path, coid in emulator.requests]
    assert buy.client_order_id not in sent and buy.client_order_id not in emulator.orders
    assert (sell.client_order_id in emulator.orders) is (state == "REDUCING")


async def test_a_reducing_cancel_replace_under_reducing_is_sent(tmp_path: Path) -> None:
    """REDUCING set, a limit sell of 0.04 of the 0.05 BTC held (it reduces: REDUCING keeps it) moved from 90000
    to 89000: Binance spot cancel-replaces it in one request, the replacement a new order of the same 0.04.
    Its submit is asked :meth:`LiveNode._send_refusal`; counting the replaced sell and the replacement both
    (0.08 > 0.05 held) withdrew the replacement unsent as one REDUCING cancels, so the sell kept 90000. The
    replaced order is not counted: the replacement goes and works at 89000."""
    from tradebus.engine.messages import ModifyOrder, TradingState

    async with _idle_spot_daemon(tmp_path) as (node, emulator):
        execution = node.kernel.execution
        now = node.clock.now_ns()
        sell = execution.submit(
            SubmitOrder("TickEmaCross", IID, "", OrderSide.SELL, 0.04, now, now, OrderType.LIMIT, 90_000.0)
        )
        await until(lambda: sell.status is OrderStatus.ACCEPTED, timeout=5)
        node.kernel.risk.set_state(TradingState.REDUCING, "risk limit reached")
        assert sell.status is OrderStatus.ACCEPTED  # a reducing sell: REDUCING keeps it
        now = node.clock.now_ns()
        execution.modify(ModifyOrder("TickEmaCross", IID, sell.client_order_id, now, now, price=89_000.0))
        await until(lambda: not sell.is_open, timeout=5)
        await answered(node.kernel)
        await asyncio.sleep(0.3)
        orders = node.kernel.orders.open_orders(IID)
    rejected = [o for o in node.kernel.orders.orders() if o.status is OrderStatus.REJECTED]
    assert not rejected, [(o.client_order_id, o.reason) for o in rejected]
    [replacement] = orders
    assert (replacement.side, replacement.quantity, replacement.price) == (OrderSide.SELL, 0.04, 89_000.0)
    assert replacement.client_order_id in emulator.orders


async def test_reducing_reached_while_a_reducing_cancel_replace_is_in_flight_keeps_its_replacement(tmp_path: Path) -> None:
    """A limit sell of 0.04 of the 0.05 BTC held, moved from 90000 to 89000 (Binance spot: one cancel-replace
    request, the replacement a new order of the same 0.04), and REDUCING reached in the same loop step, before
    the request's answer. Both orders work meanwhile; the move to REDUCING counted them together (0.08 > 0.05
    held) and canceled the replacement, so the venue ended with no sell at all: the cancel-replace canceled the
    one at 90000, REDUCING the one at 89000. The replaced order is not counted beside its replacement: the
    replacement works at 89000, and nothing is canceled but the replaced sell."""
    from tradebus.engine.messages import ModifyOrder, TradingState

    async with _idle_spot_daemon(tmp_path) as (node, emulator):
        execution = node.kernel.execution
        now = node.clock.now_ns()
        sell = execution.submit(
            SubmitOrder("TickEmaCross", IID, "", OrderSide.SELL, 0.04, now, now, OrderType.LIMIT, 90_000.0)
        )
        await until(lambda: sell.status is OrderStatus.ACCEPTED, timeout=5)
        now = node.clock.now_ns()
        execution.modify(ModifyOrder("TickEmaCross", IID, sell.client_order_id, now, now, price=89_000.0))
        [replacement] = [o for o in node.kernel.orders.open_orders(IID) if o is not sell]  # in flight
        node.kernel.risk.set_state(TradingState.REDUCING, "risk limit reached")
        await until(lambda: not sell.is_open, timeout=5)
        await answered(node.kernel)
        await asyncio.sleep(0.3)
        orders = node.kernel.orders.open_orders(IID)
        closed = [(o.client_order_id, o.status, o.reason) for o in node.kernel.orders.orders() if o is not sell and not o.is_open]
        at_venue = emulator.orders[replacement.client_order_id].status
    assert not closed, closed
    assert orders == [replacement]
    assert (replacement.side, replacement.quantity, replacement.price) == (OrderSide.SELL, 0.04, 89_000.0)
    assert at_venue is OrderStatus.ACCEPTED


class _TimedRequests(list[tuple[str, str, str]]):
    """An emulator's request list, each request's arrival (monotonic s) kept beside it."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def append(self, request: tuple[str, str, str]) -> None:
        self.times.append(time.monotonic())
        super().append(request)


async def test_a_daemon_started_while_the_ip_is_banned_waits_out_the_ban_then_runs(tmp_path: Path) -> None:
    """A daemon (re)started while Binance bans the IP: its first request, the account read, is answered 418 with
    ``Retry-After: 2`` (Binance: "the number of seconds ... until the ban is over"). The daemon ended at once,
    ``RateLimited ... 418 I'm a Teapot``, naming no end to the ban, so a supervisor's restart sent the next
    request into the ban (and Binance's bans "scale in duration for repeat offenders"). The start-up waits until
    the ban ends, reads the account once more, and runs: no request sent within the 2 s after the 418."""
    from tradebus.adapters.common.account_emulator import RestFault

    instruments = {IID: parse_live_config({"instruments": [SPOT], **_minimal()}).instrument_map()[IID]}
    emulator = BinancePrivateEmulator(KEY, SECRET, instruments, {"USDT": 100_000.0})
    emulator.requests = requests = _TimedRequests()
    emulator.rest_faults.append(RestFault("ban", "GET", "/api/v3/account", at=0, retry_after=2))
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING", format="{message}")
    try:
        async with emulator:
            protocol = MatchingProtocol(SPOT_SNAPSHOT, account=emulator, instrument_ids={"btcusdt": IID})
            async with LocalVenueServer(protocol, SPOT_FRAMES, speed=1.0) as srv:
                config = parse_live_config(_config(tmp_path, srv.ws_url, srv.http_url, emulator), "<test>")
                node = LiveNode(config, ApiKeys(SecretStr(KEY), SecretStr(SECRET)), handle_signals=False)
                task = asyncio.create_task(node.run())
                try:
                    await until(lambda: task.done() or node.running.is_set(), timeout=30)
                    if task.done():
                        task.result()  # the daemon's error
                finally:
                    node.stop("test done")
                    await asyncio.wait_for(task, 20)
    finally:
        logger.remove(sink)
    assert requests[0][1] == "/api/v3/account" and len(requests) > 1
    assert min(requests.times[1:]) - requests.times[0] >= 1.9, list(zip(requests.times, requests, strict=True))
    assert any("balances refused by the venue's rate limit" in line and "418" in line for line in lines), lines


async def test_a_daemon_restarted_during_an_ip_ban_waits_out_what_is_left_of_it_before_its_first_request(tmp_path: Path) -> None:
    """A daemon met a Binance 418 ban (``Retry-After: 3``) reading the account and was ended during it (a kill, a
    supervisor's restart). The ban's end lived only in its rate budget: the restarted daemon sent its first request
    straight into the ban (each request during one prolongs it: Binance's bans "scale in duration for repeat
    offenders"). The journal keeps the ban's end: the restart sends nothing until the ban is over, then runs, and
    the first answer after it clears the kept pause."""
    from tradebus.adapters.common.account_emulator import RestFault
    from tradebus.execution.journal import Journal

    instruments = {IID: parse_live_config({"instruments": [SPOT], **_minimal()}).instrument_map()[IID]}
    emulator = BinancePrivateEmulator(KEY, SECRET, instruments, {"USDT": 100_000.0})
    emulator.requests = requests = _TimedRequests()
    emulator.rest_faults.append(RestFault("ban", "GET", "/api/v3/account", at=0, retry_after=3))
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING", format="{message}")
    try:
        async with emulator:
            protocol = MatchingProtocol(SPOT_SNAPSHOT, account=emulator, instrument_ids={"btcusdt": IID})
            async with LocalVenueServer(protocol, SPOT_FRAMES, speed=1.0) as srv:
                config = parse_live_config(_config(tmp_path, srv.ws_url, srv.http_url, emulator), "<test>")
                keys = ApiKeys(SecretStr(KEY), SecretStr(SECRET))
                first = LiveNode(config, keys, handle_signals=False)
                task = asyncio.create_task(first.run())
                await until(lambda: len(requests) == 1 and first.venue.api.budget.blocked_until > 0, timeout=10)
                task.cancel()  # ended during the ban, its request answered 418
                await asyncio.gather(task, return_exceptions=True)
                assert len(requests) == 1
                second = LiveNode(config, keys, handle_signals=False)
                await _run_until(second, lambda: True)
        journal = Journal(tmp_path / "journal.sqlite")
        try:
            kept = journal.venue_pause
        finally:
            journal.close()
    finally:
        logger.remove(sink)
    assert requests[0][1] == "/api/v3/account" and len(requests) > 1
    assert requests.times[1] - requests.times[0] >= 2.9, list(zip(requests.times, requests, strict=True))
    assert second.summary.stop_reason == "test done"
    assert kept is None  # answered after the ban: a later restart waits for nothing
    assert any("paused an earlier session (IP banned (418, code -1003))" in line for line in lines), lines


async def test_a_stop_during_the_wait_for_an_ip_ban_to_end_ends_the_daemon_at_once(tmp_path: Path) -> None:
    """A daemon waiting out a Binance 418 ban (``Retry-After: 30``; a real one lasts minutes to days) at its start-up
    is stopped (SIGTERM, Ctrl-C, ``node.stop()``). The stop took effect only when the ban ended: the daemon then read
    the account, subscribed, replayed its journal and only then stopped. Now it stops at once, sends nothing more,
    recovers and starts nothing (as a stop during the warm-up) and returns its summary (``tradebus live``: exit 0)."""
    from tradebus.adapters.common.account_emulator import RestFault

    instruments = {IID: parse_live_config({"instruments": [SPOT], **_minimal()}).instrument_map()[IID]}
    emulator = BinancePrivateEmulator(KEY, SECRET, instruments, {"USDT": 100_000.0})
    emulator.rest_faults.append(RestFault("ban", "GET", "/api/v3/account", at=0, retry_after=30))
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING", format="{message}")
    try:
        async with emulator:
            protocol = MatchingProtocol(SPOT_SNAPSHOT, account=emulator, instrument_ids={"btcusdt": IID})
            async with LocalVenueServer(protocol, SPOT_FRAMES, speed=1.0) as srv:
                config = parse_live_config(_config(tmp_path, srv.ws_url, srv.http_url, emulator), "<test>")
                node = LiveNode(config, ApiKeys(SecretStr(KEY), SecretStr(SECRET)), handle_signals=False)
                task = asyncio.create_task(node.run())
                await until(lambda: len(emulator.requests) == 1 and node.venue.api.budget.blocked_until > 0, timeout=10)
                node.stop("signal SIGTERM")
                done, _ = await asyncio.wait([task], timeout=5)
                if not done:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                    raise AssertionError("the stop waited for the ban to end")
                summary = task.result()
    finally:
        logger.remove(sink)
    assert [path for _, path, _ in emulator.requests] == ["/api/v3/account"]
    assert summary.stop_reason == "signal SIGTERM"
    assert not node.running.is_set() and node.kernel.orders.orders() == []
    assert any("stopped while reading the account: nothing was recovered or started" in line for line in lines), lines


async def test_a_restart_on_a_halted_journal_cancels_the_order_left_working_at_the_venue(tmp_path: Path) -> None:
    """A journal HALTED while an order of the daemon still worked at the venue (a breaker's trip whose cancels a
    crash kept from the venue, a ``live-kill`` whose cancels failed): the restored state canceled nothing and the
    order kept working, fillable, until someone canceled it. Once the start-up reconciliation settled it, the
    restart cancels it (journaled, with the restored state as the reason), and sends nothing else."""
    from tradebus.engine.messages import CancelOrder, TradingState
    from tradebus.execution.journal import Journal
    from tradebus.node.live import set_trading_state

    emulator = BinancePrivateEmulator(KEY, SECRET, {IID: parse_live_config({"instruments": [SPOT], **_minimal()}).instrument_map()[IID]}, {"USDT": 100_000.0})
    async with emulator:
        protocol = MatchingProtocol(SPOT_SNAPSHOT, account=emulator, instrument_ids={"btcusdt": IID})
        async with LocalVenueServer(protocol, SPOT_FRAMES) as srv:
            data = _config(tmp_path, srv.ws_url, srv.http_url, emulator)
            data["strategy"] = {"name": "tests.live.resting_strategy:RestingBuy", "instruments": [IID],
                                "params": {"quantity": 0.01, "price": 20_000.0}}  # fmt: skip
            data["live"]["cancel_on_stop"] = False  # the stop leaves it working, as a crash does
            config = parse_live_config(data, "<test>")
            keys = ApiKeys(SecretStr(KEY), SecretStr(SECRET))
            first = LiveNode(config, keys, handle_signals=False)
            await _run_until(first, lambda: [o.status for o in first.kernel.orders.orders()] == [OrderStatus.ACCEPTED])
            (resting,) = (o.client_order_id for o in first.kernel.orders.orders())
            assert emulator.orders[resting].status is OrderStatus.ACCEPTED
            set_trading_state(config, TradingState.HALTED, "operator kill")
            sent_before = len(emulator.requests)

            second = LiveNode(config, keys, handle_signals=False)
            await _run_until(
                second,
                lambda: not second.guard.holds and second.kernel.orders.order(resting).status is OrderStatus.CANCELED,
            )
            assert second.kernel.risk.state is TradingState.HALTED
            assert emulator.orders[resting].status is OrderStatus.CANCELED
            sent = [(m, coid) for m, path, coid in emulator.requests[sent_before:] if m != "GET" and "userDataStream" not in path]
            assert sent == [("DELETE", resting)]
    journal = Journal(tmp_path / "journal.sqlite")
    cancels = [e.message for e in journal.entries() if type(e.message) is CancelOrder]
    journal.close()
    assert [(c.client_order_id, c.reason) for c in cancels] == [
        (resting, "trading state HALTED: restored from the journal: operator kill")
    ]


def test_the_live_section_sets_every_order_timeout_of_the_engine() -> None:
    """``OrderTimeouts.fill_grace_ns`` (how long a Bybit order push ahead of its fills waits before a query)
    had no config key: ``live.fill_grace`` was refused as unknown and the 1 s default could not be changed."""
    config = parse_live_config({
        "instruments": [SPOT], **_minimal(),
        "live": {"submit_timeout": 2.0, "cancel_timeout": 3.0, "retry_interval": 0.5, "check_interval": None,
                 "not_found_grace": 4.0, "fill_grace": 2.5},
    })
    assert config.live.timeouts() == OrderTimeouts(
        submit_ns=2_000_000_000, cancel_ns=3_000_000_000, retry_ns=500_000_000, check_ns=None,
        not_found_grace_ns=4_000_000_000, fill_grace_ns=2_500_000_000,
    )
    assert set(OrderTimeouts.__struct_fields__) == {"submit_ns", "cancel_ns", "retry_ns", "check_ns", "not_found_grace_ns", "fill_grace_ns"}


def _kept_pause(path: Path) -> str:
    """The journal's kept rate-limit pause as stored (``""``: none), read without writing the journal."""
    import sqlite3

    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'venue_pause'").fetchone()
    finally:
        db.close()
    return "" if row is None else str(row[0])


async def test_a_ban_the_kill_switch_meets_is_kept_in_the_journal_and_the_next_daemon_waits_it_out(tmp_path: Path) -> None:
    """``live-kill`` met a Binance 418 ban (``Retry-After: 3``) listing the open orders and was ended during it (the
    operator's Ctrl-C while it waited). The ban's end lived only in the kill's rate budget: the journal kept none,
    and the daemon started next on it sent its first request straight into the ban. The kill keeps it there, as a
    daemon does: the next daemon sends nothing until the ban is over."""
    from tradebus.adapters.common.account_emulator import RestFault
    from tradebus.engine.messages import TradingState
    from tradebus.node.live import kill_switch, set_trading_state

    instruments = {IID: parse_live_config({"instruments": [SPOT], **_minimal()}).instrument_map()[IID]}
    emulator = BinancePrivateEmulator(KEY, SECRET, instruments, {"USDT": 100_000.0})
    emulator.requests = requests = _TimedRequests()
    emulator.rest_faults.append(RestFault("ban", "GET", "/api/v3/openOrders", at=0, retry_after=3))
    journal_path = tmp_path / "journal.sqlite"
    async with emulator:
        protocol = MatchingProtocol(SPOT_SNAPSHOT, account=emulator, instrument_ids={"btcusdt": IID})
        async with LocalVenueServer(protocol, SPOT_FRAMES, speed=1.0) as srv:
            config = parse_live_config(_config(tmp_path, srv.ws_url, srv.http_url, emulator), "<test>")
            keys = ApiKeys(SecretStr(KEY), SecretStr(SECRET))
            kill = asyncio.create_task(kill_switch(config, keys, "test kill"))
            await until(lambda: kill.done() or (journal_path.exists() and bool(_kept_pause(journal_path))), timeout=10)
            assert not kill.done()
            kill.cancel()  # ended during the ban, its request answered 418
            await asyncio.gather(kill, return_exceptions=True)
            banned = len(requests)
            assert requests[-1][1] == "/api/v3/openOrders"
            assert "IP banned (418, code -1003)" in _kept_pause(journal_path)
            set_trading_state(config, TradingState.ACTIVE, "resumed")
            daemon = LiveNode(config, keys, handle_signals=False)
            await _run_until(daemon, lambda: True)
    assert len(requests) > banned
    assert requests.times[banned] - requests.times[banned - 1] >= 2.9, list(zip(requests.times, requests, strict=True))
    assert _kept_pause(journal_path) == ""  # answered after the ban: a later start waits for nothing


def test_a_ban_live_resume_meets_reading_the_account_is_kept_in_the_journal(tmp_path: Path) -> None:
    """``live-resume`` on a journal naming its venue account reads the account first; answered 418 (``Retry-After:
    30``), it failed and the journal kept nothing of the ban: the daemon started next hammered the banned venue.
    The journal keeps the ban's end, as a daemon's does."""
    from tradebus.adapters.common.account_emulator import RestFault
    from tradebus.execution.journal import Journal
    from tradebus.execution.live import RateLimited
    from tradebus.node.live import resume_trading

    instruments = {IID: parse_live_config({"instruments": [SPOT], **_minimal()}).instrument_map()[IID]}
    emulator = BinancePrivateEmulator(KEY, SECRET, instruments, {"USDT": 100_000.0})
    emulator.rest_faults.append(RestFault("ban", "GET", "/api/v3/account", at=0, retry_after=30))
    env = {"TRADEBUS_BINANCE_API_KEY": KEY, "TRADEBUS_BINANCE_API_SECRET": SECRET}

    async def main() -> None:
        async with emulator:
            config = parse_live_config(_config(tmp_path, "ws://127.0.0.1:9", "http://127.0.0.1:9", emulator), "<test>")
            journal = Journal(tmp_path / "journal.sqlite", owner=config.journal_owner())
            journal.check_account("some-account")
            journal.close()
            with pytest.raises(RateLimited, match="418"):
                await asyncio.to_thread(resume_trading, config, env)

    started = time.time()
    asyncio.run(main())
    journal = Journal(tmp_path / "journal.sqlite")
    try:
        kept = journal.venue_pause
    finally:
        journal.close()
    assert kept is not None and kept.reason == "IP banned (418, code -1003)"
    assert started + 29 <= kept.until <= time.time() + 30
