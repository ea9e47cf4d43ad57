"""A live run, ``live-kill`` and ``live-resume`` refuse a journal written by another mode, environment or account.

Before, the journal named no writer: ``live-kill --flatten`` on a config whose journal a paper run had
written sold, out of the real account, the position the paper run had journaled; a live daemon took
a paper or testnet journal over.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr
from typer.testing import CliRunner

from tests.execution.test_journal_owner import live_journal_of_an_earlier_tradebus, paper_journal_of_an_earlier_tradebus, rows
from tests.live.live_harness import KEY, SECRET, until
from tests.live.test_live_daemon import _config as binance_live_config
from tests.live.test_node_journal_errors import paper_config
from tests.live.venue_kits import KITS, PASSPHRASE, kit_harness
from tradebus.adapters.binance.private_emulator import BinancePrivateEmulator
from tradebus.cli import app
from tradebus.engine.messages import OrderSide, OrderStatus, OrderType, SubmitOrder, Trade, TradingState
from tradebus.errors import DataError
from tradebus.execution.journal import Journal
from tradebus.node.config import parse_paper_config
from tradebus.node.live import ApiKeys, LiveNode, kill_switch, parse_live_config, set_trading_state

pytestmark = pytest.mark.usefixtures("_loguru_to_current_stderr")


def _meta(path: Path) -> dict[str, str]:
    journal = Journal(path)
    try:
        return dict(journal._meta)
    finally:
        journal.close()


async def test_kill_flatten_on_a_paper_journal_is_refused_before_anything_is_canceled_or_sold(tmp_path: Path) -> None:
    kit = KITS["okx"]
    path = tmp_path / "journal.sqlite"
    async with kit_harness(kit) as probe:  # the emulator's URLs, for the config
        data = kit.config(tmp_path, "ws://127.0.0.1:9", probe.emulator)
    paper = parse_paper_config({k: v for k, v in data.items() if k != "live"}, "<test>")
    Journal(path, owner=paper.journal_owner()).close()  # a paper run's journal
    async with kit_harness(kit, journal=path) as h:  # it journals a buy of 0.003, which the account holds
        bought = h.kernel.execution.submit(SubmitOrder("s1", kit.iid, "", OrderSide.BUY, 0.003, 0, 0, OrderType.MARKET))
        await until(lambda: bought.status is OrderStatus.ACCEPTED)
        h.emulator.on_trade(Trade(kit.iid, 10**18, 10**18, 30_000.0, 1.0, 1, "t1"))
        await until(lambda: bought.status is OrderStatus.FILLED)
        config = parse_live_config(kit.config(tmp_path, "ws://127.0.0.1:9", h.emulator), "<test>")
        h.stream.stop()
        await until(lambda: not h.emulator.sessions)
        requests = len(h.emulator.requests)
        before = _meta(path)
        keys = ApiKeys(SecretStr(KEY), SecretStr(SECRET), SecretStr(PASSPHRASE))
        with pytest.raises(DataError, match=rf"journal {path}: written by a paper \(okx spot, simulated\) run, opened by a live "
                                            r"\(okx spot, testnet\) run \(mode, environment differ\)"):
            await kill_switch(config, keys, "test kill", flatten=True)
        assert len(h.emulator.requests) == requests  # nothing canceled, nothing sold
    assert h.emulator.balances[kit.base] == pytest.approx(0.003)
    assert _meta(path) == before  # not HALTED, not stamped: left as it was


async def test_a_live_daemon_on_a_paper_journal_is_refused_before_any_request(tmp_path: Path) -> None:
    emulator = BinancePrivateEmulator(KEY, SECRET, {}, {"USDT": 100_000.0})
    async with emulator:
        config = parse_live_config(binance_live_config(tmp_path, "ws://127.0.0.1:9", "http://127.0.0.1:9", emulator), "<test>")
        assert config.journal is not None
        paper = parse_paper_config({k: v for k, v in config.model_dump(mode="json", exclude_none=True, exclude_unset=True).items()
                                    if k != "live"}, "<test>")
        Journal(config.journal, owner=paper.journal_owner()).close()
        with pytest.raises(DataError, match=r"written by a paper \(binance spot, simulated\) run, opened by a live \(binance spot, testnet\)"):
            LiveNode(config, ApiKeys(SecretStr(KEY), SecretStr(SECRET)), handle_signals=False)
        assert emulator.requests == []


def test_live_kill_mainnet_on_a_testnet_journal_exits_3_before_any_request(tmp_path: Path) -> None:
    """The emulator stands for the mainnet endpoint: a mainnet config may point its endpoints anywhere."""
    import asyncio

    kit = KITS["okx"]

    async def scenario() -> tuple[object, list[tuple[str, str, str]]]:
        async with kit_harness(kit) as h:
            testnet = parse_live_config(kit.config(tmp_path, "ws://127.0.0.1:9", h.emulator), "<test>")
            assert testnet.journal is not None
            Journal(testnet.journal, owner=testnet.journal_owner()).close()
            config = tmp_path / "mainnet.yaml"
            config.write_text(yaml.safe_dump(kit.config(tmp_path, "ws://127.0.0.1:9", h.emulator, environment="mainnet")))
            h.stream.stop()
            await until(lambda: not h.emulator.sessions)
            requests = len(h.emulator.requests)
            result = await asyncio.to_thread(
                CliRunner().invoke, app, ["live-kill", str(config), "--mainnet", "--flatten"], env=kit.env
            )
            return result, h.emulator.requests[requests:]

    result, sent = asyncio.run(scenario())
    assert result.exit_code == 3, result.output  # type: ignore[attr-defined]
    assert "written by a live (okx spot, testnet) run, opened by a live (okx spot, mainnet) run (environment differ)" in (
        " ".join(result.output.split())  # type: ignore[attr-defined]
    )
    assert sent == []
    assert _meta(tmp_path / "journal.sqlite")["environment"] == "testnet"


def test_live_resume_on_a_paper_journal_exits_3_and_leaves_it_as_it_was(tmp_path: Path) -> None:
    import asyncio

    kit = KITS["okx"]

    async def config_data() -> dict[str, object]:
        async with kit_harness(kit) as h:
            return kit.config(tmp_path, "ws://127.0.0.1:9", h.emulator)

    data = asyncio.run(config_data())
    paper = parse_paper_config({k: v for k, v in data.items() if k != "live"}, "<test>")
    journal = tmp_path / "journal.sqlite"
    Journal(journal, owner=paper.journal_owner()).close()
    before = _meta(journal)
    config = tmp_path / "live.yaml"
    config.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(app, ["live-resume", str(config)])
    assert result.exit_code == 3, result.output
    assert "written by a paper (okx spot, simulated) run" in " ".join(result.output.split())
    assert _meta(journal) == before


async def test_a_live_daemon_with_the_keys_of_another_account_than_its_journals_is_refused_before_sending(tmp_path: Path) -> None:
    emulator = BinancePrivateEmulator(KEY, SECRET, {}, {"USDT": 100_000.0})
    async with emulator:
        config = parse_live_config(binance_live_config(tmp_path, "ws://127.0.0.1:9", "http://127.0.0.1:9", emulator), "<test>")
        assert config.journal is not None
        journal = Journal(config.journal, owner=config.journal_owner())
        journal.check_account("1111")  # written for another account of the same venue
        journal.close()
        node = LiveNode(config, ApiKeys(SecretStr(KEY), SecretStr(SECRET)), handle_signals=False)
        with pytest.raises(DataError, match=r"written for venue account 1111, opened with the keys of account 354937868"):
            await node.run()
        assert [(m, p) for m, p, _ in emulator.requests] == [("GET", "/api/v3/account")]  # read only
    assert _meta(config.journal)["epoch"] == "0"  # not replayed: nothing written


def test_live_kill_flatten_on_a_paper_journal_of_an_earlier_tradebus_exits_3_before_any_request(tmp_path: Path) -> None:
    """The journal named no owner: live-kill took it over, canceled the account's orders and sold the paper
    run's position out of the real account."""
    import asyncio

    kit = KITS["okx"]

    async def scenario() -> tuple[object, list[tuple[str, str, str]], object, object]:
        async with kit_harness(kit) as h:
            data = kit.config(tmp_path, "ws://127.0.0.1:9", h.emulator)
            live = parse_live_config(data, "<test>")
            assert live.journal is not None
            paper_journal_of_an_earlier_tradebus(live.journal, live.instrument_map()[kit.iid])
            before = rows(live.journal)  # read without the journal's code, which would migrate it
            config = tmp_path / "live.yaml"
            config.write_text(yaml.safe_dump(data))
            h.stream.stop()
            await until(lambda: not h.emulator.sessions)
            requests = len(h.emulator.requests)
            result = await asyncio.to_thread(CliRunner().invoke, app, ["live-kill", str(config), "--flatten"], env=kit.env)
            return result, h.emulator.requests[requests:], before, rows(live.journal)

    result, sent, before, after = asyncio.run(scenario())
    assert result.exit_code == 3, result.output  # type: ignore[attr-defined]
    output = " ".join(result.output.split())  # type: ignore[attr-defined]
    assert "it names no owner (an earlier tradebus wrote it), and the simulated venue of a paper run numbered its orders" in output
    assert "venue order id SIM-1); a live (okx spot, testnet) run would trade on a paper run's orders" in output
    assert sent == []
    assert after == before and ("schema_version", "3") in before[0]  # type: ignore[index]


def test_paper_on_a_live_journal_of_an_earlier_tradebus_exits_3_and_leaves_it_as_it_was(tmp_path: Path) -> None:
    """The journal named no owner: the paper run took the live account's position for its own and stamped the
    journal paper, and the live daemon was then refused its own journal."""
    journal = tmp_path / "journal.sqlite"
    live_journal_of_an_earlier_tradebus(journal)
    before = journal.read_bytes()

    result = CliRunner().invoke(app, ["paper", str(paper_config(tmp_path, journal)), "--max-seconds", "5"])

    assert result.exit_code == 3, result.output
    output = " ".join(result.output.split())
    assert f"journal {journal}: it names no owner (an earlier tradebus wrote it), and an exchange numbered its orders" in output
    assert "(seq 3, order c1: venue order id 28457126391); a paper (binance spot, simulated) run would trade on a live " \
        "account's orders and positions" in output
    assert "Traceback" not in result.output
    assert journal.read_bytes() == before


@pytest.mark.parametrize(("stored", "exit_code", "state"), [("1111", 3, TradingState.HALTED), ("354937868", 0, TradingState.ACTIVE)],
                         ids=["another-account", "its-account"])
def test_live_resume_checks_the_journals_venue_account_against_the_keys(
    tmp_path: Path, stored: str, exit_code: int, state: TradingState
) -> None:
    """live-resume compared mode and environment only: the keys of another account of the venue set the
    journal of account 1111 ACTIVE again, where the daemon and live-kill refuse them."""
    import asyncio

    async def scenario() -> tuple[object, list[tuple[str, str]], Path]:
        emulator = BinancePrivateEmulator(KEY, SECRET, {}, {"USDT": 100_000.0})  # account 354937868
        async with emulator:
            data = binance_live_config(tmp_path, "ws://127.0.0.1:9", "http://127.0.0.1:9", emulator)
            live = parse_live_config(data, "<test>")
            assert live.journal is not None
            journal = Journal(live.journal, owner=live.journal_owner())
            journal.check_account(stored)
            journal.close()
            set_trading_state(live, TradingState.HALTED, "operator kill")
            config = tmp_path / "live.yaml"
            config.write_text(yaml.safe_dump(data))
            env = {"TRADEBUS_BINANCE_API_KEY": KEY, "TRADEBUS_BINANCE_API_SECRET": SECRET}
            result = await asyncio.to_thread(CliRunner().invoke, app, ["live-resume", str(config)], env=env)
            return result, [(m, p) for m, p, _ in emulator.requests], live.journal

    result, requests, path = asyncio.run(scenario())
    assert result.exit_code == exit_code, result.output  # type: ignore[attr-defined]
    if exit_code:
        assert f"journal {path}: written for venue account 1111, opened with the keys of account 354937868" in " ".join(
            result.output.split()  # type: ignore[attr-defined]
        )
    assert requests == [("GET", "/api/v3/account")]  # read only
    journal = Journal(path)
    try:
        risk = journal.load_risk_state()
        assert risk is not None and risk.manual_state == state
    finally:
        journal.close()


@pytest.mark.parametrize(("environment", "flag", "message"), [
    ("mainnet", [], "live.environment is mainnet: real money; confirm with --mainnet on the command line"),
    ("testnet", ["--mainnet"], "--mainnet given but live.environment is 'testnet'; set it to mainnet"),
], ids=["mainnet-without-the-flag", "the-flag-on-testnet"])
def test_live_resume_asks_for_mainnet_twice_as_live_and_live_kill_do(
    tmp_path: Path, environment: str, flag: list[str], message: str
) -> None:
    """live-resume set a halted mainnet journal ACTIVE without --mainnet, re-arming a real-money daemon
    that live-kill (which needs the flag) had stopped."""
    data = binance_live_config(tmp_path, "ws://127.0.0.1:9", "http://127.0.0.1:9", BinancePrivateEmulator(KEY, SECRET, {}, {}))
    data["live"]["environment"] = environment
    live = parse_live_config(data, "<test>")
    assert live.journal is not None
    Journal(live.journal, owner=live.journal_owner()).close()
    set_trading_state(live, TradingState.HALTED, "operator kill")
    before = live.journal.read_bytes()
    config = tmp_path / "live.yaml"
    config.write_text(yaml.safe_dump(data))

    result = CliRunner().invoke(app, ["live-resume", str(config), *flag])

    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert live.journal.read_bytes() == before  # still HALTED

    if environment == "mainnet":  # asked twice: resumed (the journal names no account, so no key is read)
        result = CliRunner().invoke(app, ["live-resume", str(config), "--mainnet"])
        assert result.exit_code == 0, result.output
        journal = Journal(live.journal)
        try:
            risk = journal.load_risk_state()
            assert risk is not None and risk.manual_state is TradingState.ACTIVE
        finally:
            journal.close()


def test_live_resume_prints_the_journal_path_whole_on_a_narrow_terminal(tmp_path: Path) -> None:
    import asyncio

    kit = KITS["okx"]
    deep = tmp_path / "an-account-directory-with-a-long-name" / "journals-of-the-okx-spot-testnet-account"
    deep.mkdir(parents=True)

    async def config_data() -> dict[str, object]:
        async with kit_harness(kit) as h:
            return kit.config(deep, "ws://127.0.0.1:9", h.emulator)

    data = asyncio.run(config_data())
    live = parse_live_config(data, "<test>")
    assert live.journal is not None
    Journal(live.journal, owner=live.journal_owner()).close()
    config = tmp_path / "live.yaml"
    config.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(app, ["live-resume", str(config)], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert len(str(live.journal)) > 80
    assert f"trading ACTIVE in {live.journal}" in result.output.splitlines()
