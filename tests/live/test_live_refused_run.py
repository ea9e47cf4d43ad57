"""A daemon refused before it trades leaves the disk as it found it.

A paper or live config refused once the daemon is built (a starting balance no feed prices) and a live daemon whose
credentials the venue refuses at start-up (against the Binance spot account emulator on 127.0.0.1) both left
the journal (SQLite, with its directory) and the recording's directory behind. Each now exits 2 and the directory
holds what it held before; a journal an earlier run left is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tests.live.live_harness import KEY, SECRET, until
from tests.live.node_testdata import SPOT_CAPTURE
from tests.live.test_live_secrets import ACCOUNTS
from tests.live.test_live_secrets import KEY as ACCOUNT_KEY
from tests.live.test_live_secrets import PASSPHRASE as ACCOUNT_PASSPHRASE
from tests.live.test_live_secrets import SECRET as ACCOUNT_SECRET
from tests.ops.fake_telegram import FakeBotApi
from tradebus.adapters.common.account_emulator import RestFault
from tradebus.cli import EXIT_CODES, app
from tradebus.engine.messages import OrderSide, OrderStatus, OrderType, SubmitOrder
from tradebus.errors import ConfigError, DataError
from tradebus.execution.journal import SQLITE_COMPANIONS, Journal
from tradebus.execution.live import CredentialsRefused, NoAnswer, VenueRejected
from tradebus.node.config import parse_paper_config
from tradebus.node.daemon import PaperNode, _claim, _remove_created
from tradebus.node import live as live_node
from tradebus.node.live import ApiKeys, LiveNode, parse_live_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
ETH = {"venue": "BINANCE", "symbol": "ETHUSDT", "kind": "spot", "base": "ETH", "quote": "USDT", "tick_size": 0.01,
       "lot_size": 1.0e-4, "min_notional": 5.0, "maker_fee": 0.001, "taker_fee": 0.001}


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root``: a file's bytes, ``None`` for a directory."""
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes() for p in sorted(root.rglob("*"))}


def _paths(data: dict[str, Any], root: Path) -> dict[str, Any]:
    """``data`` journaling and recording into directories under ``root`` that do not exist yet."""
    return {**data, "journal": str(root / "state" / "daemon" / "journal.sqlite"), "record": str(root / "rec" / "frames.jsonl.gz")}


def _shipped(command: str, root: Path) -> dict[str, Any]:
    """The shipped Binance config of ``command`` (paper, or live on the testnet), journaling and recording under ``root``."""
    return _paths(yaml.safe_load((CONFIGS / f"{command}_binance{'_testnet' if command == 'live' else ''}.yaml").read_text()),
                  root)


def _run_refused(command: str, data: dict[str, Any], root: Path, seconds: str = "1") -> Any:
    """``tradebus <command>`` on ``data`` written under ``root``: its result, once the disk under ``root`` is checked as it
    was before the run."""
    config = root / f"{command}.yaml"
    config.write_text(yaml.safe_dump(data))
    before = _tree(root)
    env = {"TRADEBUS_BINANCE_API_KEY": KEY, "TRADEBUS_BINANCE_API_SECRET": SECRET}
    result = CliRunner().invoke(app, [command, str(config), "--max-seconds", seconds], env=env)
    assert _tree(root) == before, result.output
    return result


@pytest.mark.parametrize("command", ["paper", "live"])
def test_a_config_refused_once_the_daemon_is_built_leaves_no_journal(command: str, tmp_path: Path) -> None:
    """balances: {ETH: 1} valued by ETHUSDT, which no feed subscribes: refused (exit 2) after the journal was opened."""
    data = _shipped(command, tmp_path)
    data["instruments"].append(ETH)
    data["balances"] = {"USDT": 10_000.0, "ETH": 1.0}
    data.pop("initial_cash", None)
    result = _run_refused(command, data, tmp_path)
    assert result.exit_code == 2 and "which no feed subscribes" in result.output, result.output
    assert f"error: {tmp_path / command}.yaml: balances." in result.output, result.output


@pytest.mark.parametrize("command", ["paper", "live"])
@pytest.mark.parametrize(
    ("features", "expected"),
    [
        ([{"name": "imb", "kind": "book_imbalance", "params": {"levels": 5}}],
         "features: feature 'imb' of BTCUSDT.BINANCE is driven by book events, which a run does not feed"),
        ([{"name": "x", "kind": "ema", "input": "nosuch", "params": {"span": 3}}],
         "features: feature 'x': unknown input 'nosuch' (not an event field or feature)"),
    ],
    ids=["book-driven", "unknown-input"],
)
def test_a_feature_the_kernel_cannot_build_is_refused_before_the_warm_up_and_leaves_no_journal(
    command: str, features: list[dict[str, Any]], expected: str, tmp_path: Path
) -> None:
    """A book-driven feature (book_imbalance) in a daemon's config was refused only as the strategies started, after
    the warm-up and the journal's recovery, and the error told was another (TickEmaCross's on_stop reading features
    the failed start never built; exit 1, run outputs written); an unknown input after the whole warm-up (93 s on a
    cold cache), exit 1. Both now exit 2 naming ``features:`` and the feature, as a backtest does, before the warm-up
    (nothing compiled) with the disk as it was."""
    result = _run_refused(command, {**_shipped(command, tmp_path), "features": features}, tmp_path)
    assert result.exit_code == 2, result.output
    assert f"error: {tmp_path / command}.yaml: {expected}" in result.output and "Traceback" not in result.output
    assert "warming up" not in result.output


@pytest.mark.parametrize(
    ("change", "expected"),
    [({"features": [{"name": "imb", "kind": "book_imbalance", "params": {"levels": 5}}]},
      "features: feature 'imb' of BTCUSDT.BINANCE is driven by book events"),
     ({"features": [{"name": "x", "kind": "ema", "input": "nosuch", "params": {"span": 3}}]},
      "features: feature 'x': unknown input 'nosuch' (not an event field or feature)")],
    ids=["book-driven", "unknown-input"],
)
def test_a_replay_refusing_its_config_names_the_file(change: dict[str, Any], expected: str, tmp_path: Path) -> None:
    """tradebus replay refused these configs as the paper daemon does, but without naming the config file (a backtest's
    refusal names it): "error: features: ..."."""
    data = _shipped("paper", tmp_path)
    data.update(change)
    config = tmp_path / "paper.yaml"
    config.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(app, ["replay", str(SPOT_CAPTURE), "--config", str(config), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    assert f"error: {config}: {expected}" in result.output, result.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", ["paper", "live"])
def test_an_ops_port_another_process_listens_on_is_refused_and_leaves_no_journal(command: str, tmp_path: Path) -> None:
    """ops.port taken by another process: exit 2 naming the address, as before, but the journal the run had created
    (and its directory) was left behind, the log said ``stopping: stopped``, and a stop alert was queued to a Telegram
    never started and warned of as not delivered. Now the stop names the refusal, nothing is queued, and the disk is
    as it was."""
    data = _shipped(command, tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # Telegram on a port nobody answers: the refused run must not get as far as sending.
        data["ops"] = {"port": port, "telegram": {"chat_ids": [42], "base_url": f"http://127.0.0.1:{port}"}}
        config = tmp_path / f"{command}.yaml"
        config.write_text(yaml.safe_dump(data))
        before = _tree(tmp_path)
        env = {"TRADEBUS_BINANCE_API_KEY": KEY, "TRADEBUS_BINANCE_API_SECRET": SECRET, "TRADEBUS_TELEGRAM_TOKEN": "1:x"}
        result = CliRunner().invoke(app, [command, str(config), "--max-seconds", "5"], env=env)
    assert result.exit_code == 2, result.output
    assert f"error: {config}: ops.port/ops.host: cannot serve /metrics and /health on 127.0.0.1:{port}" in result.output
    assert f"{command} daemon stopping: ops.port/ops.host: cannot serve" in result.output
    assert "not delivered" not in result.output
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("command", ["paper", "live"])
def test_a_log_file_that_cannot_be_opened_is_refused_naming_it_and_leaves_no_journal(command: str, tmp_path: Path) -> None:
    """ops.log.file under a regular file (as /proc/x/daemon.jsonl in a trial): a FileNotFoundError or
    NotADirectoryError traceback from the directory's creation, exit 1, and the journal the run had created left
    behind. Now exit 2 naming ops.log.file, the file and the reason, and the disk as it was."""
    (tmp_path / "notes").write_text("a file, not a directory\n")
    log = tmp_path / "notes" / "daemon.jsonl"
    result = _run_refused(command, {**_shipped(command, tmp_path), "ops": {"port": 0, "log": {"file": str(log)}}},
                          tmp_path, seconds="5")
    assert result.exit_code == 2, result.output
    assert f"error: {tmp_path / command}.yaml: ops.log.file: cannot write {log} (" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("existing", [False, True], ids=["new-journal", "journal-of-an-earlier-run"])
async def test_credentials_the_venue_refuses_leave_no_journal_or_recording(existing: bool, tmp_path: Path) -> None:
    """A wrong key (Binance -2015 on the account's read): CredentialsRefused, and nothing of the run is left; a journal
    there before is kept."""
    account = ACCOUNTS["binance"]
    run = tmp_path / "run"
    run.mkdir()
    async with account.served(tmp_path / "venue", []) as (_, data):
        config = parse_live_config(_paths(data, run), "<test>")
        if existing:
            config.journal.parent.mkdir(parents=True)
            Journal(config.journal, owner=config.journal_owner()).close()
        before = _tree(run)
        node = LiveNode(config, ApiKeys.from_env(config.live, account.env("WRONGkey0000wrongKEY", SECRET)), handle_signals=False)
        with pytest.raises(CredentialsRefused, match="-2015"):
            await node.run()
    after = _tree(run)
    if existing:
        assert set(after) == set(before) and config.journal.is_file()
    else:
        assert after == before == {}


@pytest.mark.parametrize("existing", [False, True], ids=["new-journal", "journal-of-an-earlier-run"])
@pytest.mark.parametrize("venue", ["okx", "binance"])
async def test_a_start_whose_account_read_fails_leaves_no_journal_or_recording_it_created(
    venue: str, existing: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The account's read at start-up fails for another reason than its credentials: OKX answers 50009 ("Account is
    frozen due to stop-out.", VenueRejected), Binance's gateway a 503 (NoAnswer) to each of its 5 tries. The start ended (exit 1) leaving the
    journal and recording folders it created, with the new journal in one: only refused credentials cleaned up. It
    now leaves nothing it created; a journal an earlier run left there, and its folder, are kept as they were."""
    account = ACCOUNTS[venue]
    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.setattr(live_node, "START_READ_RETRY_DELAYS", (0.01,) * 4)  # a 503 is read again 4 times
    faults = [RestFault("error5xx", "GET", "/api/v3/account") for _ in range(5)] if venue == "binance" else []
    async with account.served(tmp_path / "venue", faults) as (emulator, data):
        if venue == "okx":
            emulator.key_refusal = (200, "50009", "Account is frozen due to stop-out.")
        config = parse_live_config(_paths(data, run), "<test>")
        if existing:
            config.journal.parent.mkdir(parents=True)
            Journal(config.journal, owner=config.journal_owner()).close()
        before = _tree(run)
        node = LiveNode(config, ApiKeys.from_env(config.live, account.env()), handle_signals=False)
        with pytest.raises(VenueRejected if venue == "okx" else NoAnswer) as info:
            await asyncio.wait_for(node.run(), 60)
        assert not emulator.orders
    assert next(c for cls, c in EXIT_CODES if isinstance(info.value, cls)) == 1
    after = _tree(run)
    if existing:
        assert set(after) == set(before) and config.journal.is_file() and not config.record.parent.exists()
    else:
        assert after == before == {}


async def test_a_stop_while_the_account_is_read_leaves_nothing_it_created_but_a_journal_keeping_a_ban(
    tmp_path: Path
) -> None:
    """Stopped while it reads the account (its answer slow in coming; then, restarted, while it waits out a 418 IP
    ban with Retry-After 30): nothing was recovered or started, and the first run left its new journal and the
    folders of its journal and recording. It now leaves nothing; the second keeps its journal, which holds the ban
    for a restart to wait out (and nothing else of the run: no recording)."""
    account = ACCOUNTS["binance"]
    run = tmp_path / "run"
    run.mkdir()
    release = asyncio.Event()
    hold = RestFault("hold", "GET", "/api/v3/account", release=release)
    try:
        async with account.served(tmp_path / "venue", [hold]) as (emulator, data):
            config = parse_live_config(_paths(data, run), "<test>")
            for fault in (hold, RestFault("ban", "GET", "/api/v3/account", retry_after=30)):
                if fault.kind == "ban":
                    release.set()
                    emulator.rest_faults.append(fault)
                node = LiveNode(config, ApiKeys.from_env(config.live, account.env()), handle_signals=False)
                task = asyncio.create_task(node.run())
                await until(lambda: task.done() or fault.fired and (fault.kind == "hold" or node.venue.api.budget.blocked_until > 0))  # noqa: B023
                assert not task.done() and not node.running.is_set()
                node.stop("signal SIGTERM")
                summary = await asyncio.wait_for(task, 60)
                assert summary.stop_reason == "signal SIGTERM" and not node.kernel.orders.orders()
                if fault.kind == "hold":
                    assert _tree(run) == {}
    finally:
        release.set()
    assert sorted(_tree(run)) == ["state", "state/daemon", "state/daemon/journal.sqlite"]
    journal = Journal(config.journal)
    try:
        kept = journal.venue_pause
    finally:
        journal.close()
    assert kept is not None and kept.until - kept.observed == pytest.approx(30.0, abs=1.0)


@pytest.mark.parametrize(
    ("status", "code", "msg", "advice"),
    [
        (400, "50100", "API frozen, please contact customer service.", "OKX has frozen this API key: ask OKX customer service"),
        (401, "50114", "Invalid authorization.", "OKX refused the key's authorization"),
        (200, "50120", "This API key doesn't have permission to use this function", "give it the Trade permission"),
        (200, "50121", "You can't access our services through the IP address (203.0.113.7)", "does not serve this machine's IP"),
        (200, "50007", "User blocked.", "OKX has blocked this account"),
        (200, "50008", "User doesn't exist.", "OKX knows no user of this API key"),
        (200, "50012", "Account status invalid. Check account status", "check the account's status at OKX"),
        (200, "50027", "This account is restricted from trading. Please contact customer support for assistance.",
         "OKX has restricted this account from trading"),
        (200, "50029", "Your account has triggered OKX risk control and is temporarily restricted from conducting transactions. "
         "Please check your email registered with OKX for contact from our customer support team.", "OKX's risk control"),
        (200, "50059", "Before you continue, you'll need to complete additional steps as required by your local regulators. "
         "Please visit the website or app for more details.", "steps its local regulator requires"),
        (200, "50060", "For security and compliance purposes, please complete the identity verification process to continue "
         "using our services.", "complete OKX's identity verification"),
    ],
)
async def test_an_okx_key_or_account_refused_for_its_state_stops_the_start_as_refused_credentials(
    status: int, code: str, msg: str, advice: str, tmp_path: Path
) -> None:
    """OKX answers the account's first read with a code of its error table's API class (HTTP status and text as that
    table gives them): a frozen key (50100), an authorization refused (50114), a key without the permission (50120), an
    IP OKX does not serve (50121); or of its General class refusing the account itself, whatever the request: a user
    blocked (50007), one that does not exist (50008), of an invalid status (50012), restricted from trading (50027), by
    OKX's risk control (50029), or awaiting its regulator's steps (50059) or identity verification (50060). Each was a plain VenueRejected: 'reading the account failed', exit 1, with a journal
    and recording directories left and nothing said of what to do. Each is now CredentialsRefused (exit 2) naming the
    code and what to do, never the key, and the run leaves nothing."""
    account = ACCOUNTS["okx"]
    run = tmp_path / "run"
    run.mkdir()
    async with account.served(tmp_path / "venue", []) as (emulator, data):
        emulator.key_refusal = (status, code, msg)
        config = parse_live_config(_paths(data, run), "<test>")
        node = LiveNode(config, ApiKeys.from_env(config.live, account.env()), handle_signals=False)
        with pytest.raises(CredentialsRefused, match=f"OKX error {code}: ") as info:
            await asyncio.wait_for(node.run(), 60)
        assert not emulator.orders
    assert advice in str(info.value)
    assert not any(secret in str(info.value) for secret in (ACCOUNT_KEY, ACCOUNT_SECRET, ACCOUNT_PASSPHRASE))
    assert next(c for cls, c in EXIT_CODES if isinstance(info.value, cls)) == 2
    assert _tree(run) == {}


#: OKX's freezes of the account for the moment (its error table, General class, HTTP 200: the stop-out's words, and
#: those it ends "Please try again later"), and what the start-up's refusal now says to do about each.
FREEZES = [
    ("50009", "Account is frozen due to stop-out.",
     "OKX has frozen the account for the moment while its stop-out (a forced liquidation) closes the account's positions: "
     "wait for the liquidation to end"),
    ("50017", "Position frozen and related operations restricted due to auto-deleveraging (ADL). Please try again later.",
     "OKX has frozen a position of the account for the moment while its auto-deleveraging (ADL) runs: wait for it to end"),
    ("50019", "Account frozen and related operations restricted due to auto-deleveraging (ADL). Please try again later.",
     "OKX has frozen the account for the moment while its auto-deleveraging (ADL) runs: wait for it to end"),
    ("50020", "Position frozen and related operations restricted due to forced liquidation. Please try again later.",
     "OKX has frozen a position of the account for the moment while its forced liquidation runs: wait for it to end"),
    ("50022", "Account frozen and related operations restricted due to forced liquidation. Please try again later.",
     "OKX has frozen the account for the moment while its forced liquidation runs: wait for it to end"),
    ("50023", "Funding fees frozen and related operations are restricted. Please try again later.",
     "OKX has frozen the account's funding fees for the moment while their settlement runs: wait for it to end"),
]


@pytest.mark.parametrize(("code", "msg", "advice"), FREEZES, ids=[c for c, _, _ in FREEZES])
async def test_an_okx_account_frozen_for_the_moment_at_start_up_stops_it_saying_to_wait_for_the_freeze_to_end(
    code: str, msg: str, advice: str, tmp_path: Path
) -> None:
    """OKX answers the account's first read with one of its freezes for the moment (HTTP 200, its error table's General
    class): 50009 the stop-out's, the account frozen while OKX's forced liquidation closes its positions, or a freeze it
    says to "try again later" after: a position or the account frozen by an auto-deleveraging (50017, 50019) or a
    forced liquidation (50020, 50022), the funding fees frozen (50023). The start ended (exit 1) with "reading the
    account failed: VenueRejected: ... <code> ..." and nothing on what to do (50009 since its fix, the others still);
    it now says which freeze it is, to wait for it to end, check the positions at OKX and start again (still exit 1:
    neither the key nor the account is refused for good)."""
    account = ACCOUNTS["okx"]
    async with account.served(tmp_path, []) as (emulator, data):
        emulator.key_refusal = (200, code, msg)
        config = parse_live_config(data, "<test>")
        node = LiveNode(config, ApiKeys.from_env(config.live, account.env()), handle_signals=False)
        with pytest.raises(VenueRejected, match=f"OKX error {code}: ") as info:
            await asyncio.wait_for(node.run(), 60)
        assert not emulator.orders
    assert not isinstance(info.value, CredentialsRefused)
    said = str(info.value)
    assert f"; {advice}" in said and said.endswith(
        ", check the account's positions at OKX (web or app), then start the daemon again if it stopped"), said
    assert next(c for cls, c in EXIT_CODES if isinstance(info.value, cls)) == 1


@pytest.mark.parametrize(
    ("code", "advice"),
    [("50029", "OKX's risk control"), ("50027", "OKX has restricted this account from trading"), ("50022", None), ("50009", None),
     ("50033", None)],
)
async def test_an_okx_order_refused_for_the_accounts_state_stops_the_daemon_and_one_refused_for_the_moment_does_not(
    code: str, advice: str | None, tmp_path: Path
) -> None:
    """OKX refuses the second order with an ``sCode`` of its General class. Refusing the account itself, whatever is sent
    (50029 risk control, 50027 restricted from trading), it was that order's rejection alone: the daemon went on, every
    later order rejected alike and none able to be canceled; it now stops as for a refused key (exit 2), naming the code
    and what to do, and saying the venue refused the account (it said "the account's credentials", which sent the user
    to the key, not at fault). Refusing for the moment or one instrument (50022 the account frozen during a forced
    liquidation, "Please try again later"; 50033 an instrument blocked), it stays the order's rejection: the daemon
    runs on and the next order is placed. So does 50009 ("Account is frozen due to stop-out.": frozen while OKX's
    liquidation closes the positions, which ends with it, as 50022's freeze does); it stopped the daemon (exit 2)."""
    account = ACCOUNTS["okx"]
    fault = RestFault("refuse", "POST", "/api/v5/trade/order", at=1, code=code)
    async with account.served(tmp_path, [fault]) as (_, data):
        config = parse_live_config(data, "<test>")
        node = LiveNode(config, ApiKeys.from_env(config.live, account.env()), handle_signals=False)
        task = asyncio.create_task(node.run())
        try:
            await until(lambda: task.done() or node.running.is_set(), timeout=60)
            assert not task.done()

            def place() -> Any:
                now = node.clock.now_ns()
                return node.kernel.execution.submit(
                    SubmitOrder("TickEmaCross", account.iid, "", OrderSide.BUY, account.qty, now, now, OrderType.LIMIT, account.price)
                )

            for _ in range(120):  # denied while the start-up reconciliation runs
                first = place()
                await until(lambda: first.status not in (OrderStatus.SUBMITTED, OrderStatus.UNKNOWN), timeout=30)  # noqa: B023
                if first.status is not OrderStatus.DENIED:
                    break
                await asyncio.sleep(0.5)
            assert first.status is OrderStatus.ACCEPTED
            second = place()
            if advice is not None:
                with pytest.raises(CredentialsRefused, match=f"OKX error {code}") as info:
                    await asyncio.wait_for(task, 60)
                assert str(info.value).startswith("the venue refused the account while the daemon ran: "), info.value
                assert "credentials" not in str(info.value)
                assert next(c for cls, c in EXIT_CODES if isinstance(info.value, cls)) == 2
                assert advice in str(info.value) and ACCOUNT_KEY not in str(info.value)
                return
            await until(lambda: task.done() or second.status is OrderStatus.REJECTED, timeout=30)
            assert not task.done() and code in second.reason
            third = place()
            await until(lambda: task.done() or third.status is OrderStatus.ACCEPTED, timeout=30)
            assert not task.done()
        finally:
            if not task.done():
                node.stop("test done")
                await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize("code", ["60032", "60031", "50100"])
async def test_an_okx_key_the_private_websocket_does_not_know_is_refused_credentials_and_leaves_nothing(
    code: str, tmp_path: Path
) -> None:
    """OKX's private WebSocket answers the login "API key doesn't exist" (60032 as users meet it, e.g. an EEA
    account's key at the global endpoint while its REST calls go to its own domain; 60031 in OKX's current table)
    while REST takes the key: the daemon stopped with a generic FatalVenueError (exit 1) and left its journal and
    recording directories behind. It is now CredentialsRefused (exit 2) naming the code, and leaves nothing. A key OKX
    froze is answered at the login as at REST, 50100 (as users meet it: ``{"event": "error", "code": "50100", "msg":
    "API frozen, please contact customer service."}``): it was a FatalVenueError (exit 1) too."""
    account = ACCOUNTS["okx"]
    run = tmp_path / "run"
    run.mkdir()
    async with account.served(tmp_path / "venue", []) as (emulator, data):
        emulator.login_errors.append(code)
        config = parse_live_config(_paths(data, run), "<test>")
        node = LiveNode(config, ApiKeys.from_env(config.live, account.env()), handle_signals=False)
        with pytest.raises(CredentialsRefused, match=f"okx user stream: {code} ") as info:
            await asyncio.wait_for(node.run(), 60)
        assert emulator.login_errors == [] and not emulator.orders
    assert next(c for cls, c in EXIT_CODES if isinstance(info.value, cls)) == 2
    assert _tree(run) == {}


def test_a_journal_another_daemon_opened_meanwhile_is_not_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two daemons started at once on the same new journal: the one refused (its journal in use) leaves the other's
    journal and its log where they are, and removes only what it made itself (its recording, held by its lock from
    before the journal: no other daemon can have written there)."""
    data = _paths(yaml.safe_load((CONFIGS / "paper_local.yaml").read_text()), tmp_path)
    config = parse_paper_config(data, "<test>", tmp_path)
    journal, record = config.journal, config.record
    other: list[Journal] = []
    epochs: list[int] = []

    def opened_by_another_daemon_first(path: Path, *args: Any, **kwargs: Any) -> Journal:
        # The other daemon, started a moment earlier, got there first: its journal (locked).
        other.append(Journal(journal, exclusive=True, owner=config.journal_owner()))
        epochs.append(other[0].begin_epoch())
        return Journal(path, *args, **kwargs)

    monkeypatch.setattr("tradebus.node.daemon.Journal", opened_by_another_daemon_first)
    with pytest.raises(DataError, match="in use by another running daemon"):
        PaperNode(config, handle_signals=False)
    try:
        assert journal.is_file() and Path(f"{journal}-wal").is_file()
        assert not record.exists()
    finally:
        other[0].close()
    again = Journal(journal)  # the other daemon's, as it wrote it
    try:
        assert again.epoch == epochs[0]
    finally:
        again.close()


@pytest.mark.parametrize("met_by", ["stream", "order"])
@pytest.mark.parametrize("name", ["binance", "usdm", "okx", "bybit"])
async def test_a_key_revoked_while_the_daemon_runs_stops_it_as_refused_credentials_and_keeps_its_journal(
    name: str, met_by: str, tmp_path: Path
) -> None:
    """The venue refuses the key once the daemon runs (the emulator's key changed, as a key deleted or its IP
    restriction changed at the venue; the private stream reconnects): Binance's user stream subscription and USD-M's
    listen key answer -2015, OKX's login 60009, Bybit's auth is refused. This ended as a generic VenueError ('fatal
    connection error', exit 1) naming no credential problem; now it is CredentialsRefused (exit 2) naming the stream,
    and the journal, holding the run's order, stays. Met by an order instead (the stream's connection stays up), the
    daemon went on, each order rejected (logged at INFO) and none able to be canceled; it now stops the same way."""
    account = ACCOUNTS[name]
    async with account.served(tmp_path, []) as (emulator, data):
        config = parse_live_config(data, "<test>")
        node = LiveNode(config, ApiKeys.from_env(config.live, account.env()), handle_signals=False)
        task = asyncio.create_task(node.run())
        try:
            await until(lambda: task.done() or node.running.is_set(), timeout=60)
            assert not task.done()
            for _ in range(120):  # denied while the start-up reconciliation runs
                now = node.clock.now_ns()
                order = node.kernel.execution.submit(
                    SubmitOrder("TickEmaCross", account.iid, "", OrderSide.BUY, account.qty, now, now, OrderType.LIMIT, account.price)
                )
                await until(lambda: order.status not in (OrderStatus.SUBMITTED, OrderStatus.UNKNOWN), timeout=30)  # noqa: B023
                if order.status is not OrderStatus.DENIED:
                    break
                await asyncio.sleep(0.5)
            assert order.status is OrderStatus.ACCEPTED
            emulator.key = "REVOKEDkey0000revokedKEY"
            if met_by == "stream":
                await emulator.drop_sessions()
            else:
                now = node.clock.now_ns()
                node.kernel.execution.submit(
                    SubmitOrder("TickEmaCross", account.iid, "", OrderSide.BUY, account.qty, now, now, OrderType.LIMIT, account.price)
                )
            with pytest.raises(CredentialsRefused, match="the venue refused the account's credentials") as info:
                await asyncio.wait_for(task, 60)
        finally:
            if not task.done():
                node.stop("test done")
                await asyncio.gather(task, return_exceptions=True)
    assert next(code for cls, code in EXIT_CODES if isinstance(info.value, cls)) == 2
    assert config.journal.is_file()
    journal = Journal(config.journal, owner=config.journal_owner())
    try:
        journaled = {getattr(e.message, "client_order_id", None) for e in journal.entries()}
    finally:
        journal.close()
    assert order.client_order_id in journaled


@pytest.mark.parametrize("code", ["63999", "60014", "50013", "50026", *(c for c, _, _ in FREEZES)])
async def test_an_okx_login_failed_on_okxs_side_reconnects_and_the_daemon_runs_on(code: str, tmp_path: Path) -> None:
    """OKX answers the reconnecting private stream's login 63999 ("Login failed due to internal error. Please try again
    later."), 60014 ("Requests too frequent"), 50013 ("System is busy, please try again later.") or 50026 ("System
    error. Try again later.": both stopped the daemon, though REST takes them for OKX's passing failures) or one of its
    freezes for the moment (FREEZES: 50009 "Account is frozen
    due to stop-out.", for as long as its forced liquidation lasts; 50022 "Account frozen and related operations
    restricted due to forced liquidation. Please try again later.", and the other ADL and liquidation freezes OKX says
    to try again after): this stopped the daemon ('fatal connection error', exit 1) though nothing is wrong with the
    key (50009 logged in again since its fix, 50017 to 50023 still stopped it); the stream now reconnects after its
    backoff, logs in again and subscribes, and the daemon runs on (a refused key, 60009, still stops it: the test
    above)."""
    account = ACCOUNTS["okx"]
    async with account.served(tmp_path, []) as (emulator, data):
        config = parse_live_config(data, "<test>")
        node = LiveNode(config, ApiKeys.from_env(config.live, account.env()), handle_signals=False)
        task = asyncio.create_task(node.run())
        try:
            await until(lambda: task.done() or node.running.is_set(), timeout=60)
            assert not task.done()
            stream = node.stream
            opened = stream.connections
            emulator.login_errors.append(code)
            await emulator.drop_sessions()
            # the connection whose login failed, then one that logs in
            await until(lambda: task.done() or (stream.connections >= opened + 2 and stream.subscribed.is_set()), timeout=60)
            assert not task.done() and emulator.login_errors == []
        finally:
            node.stop("test done")
            ended = await asyncio.gather(task, return_exceptions=True)
    assert not isinstance(ended[0], BaseException), ended[0]


@pytest.mark.parametrize("code", ["50013", "50026"])
async def test_an_okx_login_failed_for_okxs_busy_system_at_start_up_logs_in_again_and_the_daemon_starts(
    code: str, tmp_path: Path
) -> None:
    """OKX answers the start-up's first private login 50013 ("System is busy, please try again later.") and then 50026
    ("System error. Try again later."), or the other way round: the start ended at the first ('fatal connection error:
    FatalVenueError: okx user stream: 50013 ...', exit 1); the stream now logs in again after its backoff, as after
    63999, and the daemon starts and subscribes."""
    account = ACCOUNTS["okx"]
    async with account.served(tmp_path, []) as (emulator, data):
        emulator.login_errors.extend([code, "50026" if code == "50013" else "50013"])
        config = parse_live_config(data, "<test>")
        node = LiveNode(config, ApiKeys.from_env(config.live, account.env()), handle_signals=False)
        task = asyncio.create_task(node.run())
        try:
            await until(lambda: task.done() or (node.running.is_set() and node.stream.subscribed.is_set()), timeout=60)
            assert not task.done() and emulator.login_errors == []
            assert node.stream.connections >= 3
        finally:
            node.stop("test done")
            ended = await asyncio.gather(task, return_exceptions=True)
    assert not isinstance(ended[0], BaseException), ended[0]


async def test_an_okx_account_read_answered_system_busy_at_start_up_is_read_again_and_the_daemon_starts(
    tmp_path: Path,
) -> None:
    """OKX answers the start-up's first two reads of the balance 50013 ("System is busy, please try again later.", HTTP
    200, its error table): the start ended there ('reading the account failed: NoAnswer: okx ... 50013 ...', exit 1),
    though it is a passing failure of OKX's and a read changes nothing. The read is now sent again after 1 s, then 2 s,
    and the daemon starts and subscribes."""
    account = ACCOUNTS["okx"]
    busy = [RestFault("busy", "GET", "/api/v5/account/balance") for _ in range(2)]
    async with account.served(tmp_path, busy) as (emulator, data):
        config = parse_live_config(data, "<test>")
        node = LiveNode(config, ApiKeys.from_env(config.live, account.env()), handle_signals=False)
        task = asyncio.create_task(node.run())
        try:
            await until(lambda: task.done() or (node.running.is_set() and node.stream.subscribed.is_set()), timeout=60)
            assert not task.done()
            assert all(fault.fired for fault in busy)
        finally:
            node.stop("test done")
            ended = await asyncio.gather(task, return_exceptions=True)
    assert not isinstance(ended[0], BaseException), ended[0]


async def test_an_okx_account_read_busy_at_every_try_stops_the_start_saying_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OKX answers each of the start-up's reads of the balance 50013: after the 4 reads again (delays shortened here)
    the start ends (exit 1) saying how often and how long it read, that no order was sent and what to check, and
    leaves nothing it created."""
    monkeypatch.setattr(live_node, "START_READ_RETRY_DELAYS", (0.01, 0.02, 0.03, 0.04))
    account = ACCOUNTS["okx"]
    run = tmp_path / "run"
    run.mkdir()
    busy = [RestFault("busy", "GET", "/api/v5/account/balance") for _ in range(5)]
    async with account.served(tmp_path / "venue", busy) as (emulator, data):
        config = parse_live_config(_paths(data, run), "<test>")
        node = LiveNode(config, ApiKeys.from_env(config.live, account.env()), handle_signals=False)
        with pytest.raises(NoAnswer, match="50013") as info:
            await asyncio.wait_for(node.run(), 60)
        assert not emulator.orders and all(fault.fired for fault in busy)
    said = str(info.value)
    assert "System is busy, please try again later." in said
    assert "reading the account's balances went unanswered 5 times over 0.1 s" in said
    assert said.endswith("no order was sent; check the venue's status page and this machine's network (and "
                         "live.rest_url, if set), then start the daemon again)"), said
    assert next(c for cls, c in EXIT_CODES if isinstance(info.value, cls)) == 1
    assert _tree(run) == {}


@pytest.mark.parametrize(("name", "symbol", "misspelt"), [("binance", "BTCUSDT", "XRPUSDT"), ("okx", "BTC-USDT", "XRP-USDT"), ("bybit", "BTCUSDT", "XRPUSDT")])
async def test_a_symbol_the_venue_does_not_list_is_refused_at_start_up_and_leaves_nothing(
    name: str, symbol: str, misspelt: str, tmp_path: Path
) -> None:
    """A spot symbol the account's market does not list (the emulator lists only the capture's): the daemon ran with
    no message, its feed's connection taken for health, until its first order was refused; it is now refused at
    start-up (ConfigError, exit 2) naming the symbol and the market, before anything is sent, and leaves nothing."""
    account = ACCOUNTS[name]
    run = tmp_path / "run"
    run.mkdir()
    async with account.served(tmp_path / "venue", []) as (emulator, data):
        data = json.loads(json.dumps(_paths(data, run)).replace(symbol, misspelt))
        config = parse_live_config(data, "<test>")
        node = LiveNode(config, ApiKeys.from_env(config.live, account.env()), handle_signals=False)
        with pytest.raises(ConfigError) as err:
            await asyncio.wait_for(node.run(), 60)
    iid = account.iid.replace(symbol, misspelt)
    assert f"the venue's {name} spot market does not list {iid} (symbol {misspelt!r})" in str(err.value)
    assert not emulator.orders and _tree(run) == {}


def test_a_new_journal_beside_sqlite_files_an_earlier_run_left_is_refused_and_they_are_kept(tmp_path: Path) -> None:
    """An earlier run's journal.sqlite-wal, -shm and -journal, left when its journal was deleted after a crash: a paper
    run creating a new journal there ended with them gone (SQLite emptied the log and the rollback journal as the new
    journal's and deleted them when the refused run closed it). The run is now refused (exit 2) before the journal
    opens, naming them, and the directory holds what it held, byte for byte."""
    data = _paths(yaml.safe_load((CONFIGS / "paper_binance.yaml").read_text()), tmp_path)
    data["instruments"].append(ETH)
    data["balances"] = {"USDT": 10_000.0, "ETH": 1.0}  # refused once the daemon is built, had the journal opened
    data.pop("initial_cash", None)
    journal = Path(data["journal"])
    journal.parent.mkdir(parents=True)
    for end in SQLITE_COMPANIONS:
        Path(f"{journal}{end}").write_bytes(b"an earlier run's")
    config = tmp_path / "paper.yaml"
    config.write_text(yaml.safe_dump(data))
    before = _tree(tmp_path)
    result = CliRunner().invoke(app, ["paper", str(config), "--max-seconds", "1"])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert f"journal: {journal} is not there" in message and f"{journal}-wal, {journal}-shm, {journal}-journal" in message
    assert _tree(tmp_path) == before


def test_the_cleanup_of_a_refused_run_removes_the_sqlite_files_it_created_and_no_other(tmp_path: Path) -> None:
    """Of the three files SQLite keeps beside a journal, the run removes those that were not there when it created the
    journal (its rollback journal -journal too, left when a new journal's tables were being written), never one an
    earlier run left (-wal here)."""
    journal = tmp_path / "journal.sqlite"
    earlier = Path(f"{journal}-wal")
    earlier.write_bytes(b"an earlier run's")
    created: list[Path] = []
    _claim(journal, created, SQLITE_COMPANIONS)
    for end in ("-shm", "-journal"):
        Path(f"{journal}{end}").write_bytes(b"this run's")
    _remove_created(created)
    assert sorted(p.name for p in tmp_path.iterdir()) == [earlier.name]


@contextlib.contextmanager
def _bot_api(token: str) -> Iterator[FakeBotApi]:
    """The fake Bot API on 127.0.0.1, served by a loop on a thread of its own while the command runs here."""
    ready = threading.Event()
    served: list[FakeBotApi] = []
    loop = asyncio.new_event_loop()
    done = asyncio.Event()

    async def serve() -> None:
        async with FakeBotApi(token) as api:
            served.append(api)
            ready.set()
            await done.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(60), "the fake Bot API did not start"
    try:
        yield served[0]
    finally:
        loop.call_soon_threadsafe(done.set)
        thread.join(60)
        loop.close()


@pytest.mark.parametrize("command", ["paper", "live"])
def test_a_bot_token_telegram_does_not_know_is_refused_naming_its_variable(command: str, tmp_path: Path) -> None:
    """A wrong bot token: getMe answered 401 and the daemon retried it forever (its backoff capped at 30 s), trading
    on with no alert. Now exit 2 naming ops.telegram.token_env and the variable (never the token), before anything
    was created: only getMe was asked. The config also values a balance by an instrument no feed subscribes, refused
    once the daemon is built: without the token's check that refusal came, after the journal was opened."""
    data = _shipped(command, tmp_path)
    data["instruments"].append(ETH)
    data["balances"] = {"USDT": 10_000.0, "ETH": 1.0}
    data.pop("initial_cash", None)
    wrong = "123456:not-the-bots-token"
    with _bot_api("123456:the-bots-token") as api:
        data["ops"] = {"telegram": {"chat_ids": [42], "base_url": api.base_url, "token_env": "TB_TEST_WRONG_TOKEN"}}
        config = tmp_path / f"{command}.yaml"
        config.write_text(yaml.safe_dump(data))
        before = _tree(tmp_path)
        env = {"TRADEBUS_BINANCE_API_KEY": KEY, "TRADEBUS_BINANCE_API_SECRET": SECRET, "TB_TEST_WRONG_TOKEN": wrong}
        result = CliRunner().invoke(app, [command, str(config), "--max-seconds", "1"], env=env)
        requests = list(api.requests)
    assert result.exit_code == 2, result.output
    assert "ops.telegram.token_env" in result.output and "TB_TEST_WRONG_TOKEN" in result.output, result.output
    assert "401" in result.output and wrong not in result.output and "not-the-bots" not in result.output
    assert requests == ["getMe"]
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("command", ["paper", "live"])
def test_a_bot_token_that_cannot_be_in_a_url_is_refused_naming_its_variable_and_never_shown(
    command: str, tmp_path: Path
) -> None:
    """A token read with a tab in it (``export TOKEN="$(cut -f2 secrets.tsv)"`` of the wrong columns): the start's
    getMe raised httpx.InvalidURL, no HTTPError, and the daemon died with its traceback (exit 1). Now exit 2
    naming ops.telegram.token_env and the variable, with nothing asked of the Bot API and nothing created."""
    shipped = CONFIGS / f"{command}_binance{'_testnet' if command == 'live' else ''}.yaml"
    data = _paths(yaml.safe_load(shipped.read_text()), tmp_path)
    pasted = "123456:the-bots-token\tsecond-column"
    with _bot_api("123456:the-bots-token") as api:
        data["ops"] = {"telegram": {"chat_ids": [42], "base_url": api.base_url, "token_env": "TB_TEST_TAB_TOKEN"}}
        config = tmp_path / f"{command}.yaml"
        config.write_text(yaml.safe_dump(data))
        before = _tree(tmp_path)
        env = {"TRADEBUS_BINANCE_API_KEY": KEY, "TRADEBUS_BINANCE_API_SECRET": SECRET, "TB_TEST_TAB_TOKEN": pasted}
        result = CliRunner().invoke(app, [command, str(config), "--max-seconds", "1"], env=env)
        requests = list(api.requests)
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "ops.telegram.token_env: the bot token in the environment variable TB_TEST_TAB_TOKEN cannot be sent in a " \
           "Bot API URL" in text, text
    assert "the-bots" not in result.output and "second-column" not in result.output
    assert requests == []
    assert _tree(tmp_path) == before
