"""kill -9 of the live daemon at seeded-random moments, against the local account emulator (not a test module).

One *session* serves a Binance spot account (:class:`BinancePrivateEmulator`), or a USD-M
perpetual account (:class:`BinanceFuturesEmulator`, ``market="usdm"``: the strategy goes long
and short), and a public trade stream (:class:`LocalVenueServer`, the recorded BTCUSDT trades
of that market looped) on 127.0.0.1,
then runs ``python -m tradebus.cli live CONFIG`` as a subprocess and SIGKILLs it ``kills``
times, each at a seeded-random moment (a random delay after start-up, right after one of
its order requests reached the venue, or right after the venue filled one of its orders),
restarting it on the same journal each time. A *pacer* client stays subscribed to the public
stream throughout, so the market moves on and the account keeps matching while the daemon
is dead. A last ``--dry-run`` start reconciles (missed fills, unknown orders) and stops.

The audit compares the journal and the daemon's own reconciliation with the emulator:
orphans (a venue order neither journaled nor reported external), duplicates (a client id
posted twice, two venue orders for one decision, a venue trade booked twice or never),
mismatches (position or cash from the journal's fills against the account's balances; on
USD-M the wallet moves by realized PnL -- average entry price, one-way -- less fees, and by the
funding the account settles after each kill, while the daemon is dead: each payment journaled once). With
``funding`` the venue settles funding every half second and the kills fall around one (:class:`_Funder`); the
emulator's own ledger (:class:`LedgerFuturesEmulator`) is then the reference of every payment's time, amount and
position, in the journal and the final run's ``funding.csv``.
Used by ``tests/live/test_live_kill9.py`` and ``bench/live_soak.py``.
"""

from __future__ import annotations

import asyncio
import csv
import json
import math
import os
import random
import re
import signal
import sqlite3
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import yaml
from loguru import logger
from websockets.asyncio.client import connect

from tests.live.live_harness import KEY, SECRET
from tests.live.node_testdata import IID, SPOT_FRAMES, SPOT_SNAPSHOT, USDM_CAPTURE, USDM_IID, USDM_INSTRUMENT
from tests.live.test_live_daemon import _config as daemon_config
from tests.live.venue_kits import KITS, VenueKit
from tests.reaped import areaped
from tradebus.adapters.binance.emulator import split_capture
from tradebus.adapters.binance.private_emulator import BinanceFuturesEmulator, BinancePrivateEmulator, MatchingProtocol
from tradebus.adapters.common.account_emulator import OPEN, AccountEmulator, RestFault, StreamFault
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.adapters.common.recorder import iter_hftbacktest
from tradebus.engine.instrument import Instrument, InstrumentKind
from tradebus.engine.messages import ContingentLinked, FundingPaid, ModifyOrder, OrderFilled, OrderSide, SubmitOrder, Trade

ROOT = Path(__file__).resolve().parents[2]
INST = Instrument("BINANCE", "BTCUSDT", base="BTC", quote="USDT", tick_size=0.01, lot_size=1e-5, taker_fee=0.001, maker_fee=0.001, margin=False)
USDM_INST = Instrument(**{**USDM_INSTRUMENT, "kind": InstrumentKind.PERPETUAL})
CASH = 100_000.0
QTY = 0.01
_TRADES = [(t, raw) for t, raw in SPOT_FRAMES if "@trade" in raw]
_USDM_FRAMES, USDM_SNAPSHOT = split_capture(list(iter_hftbacktest(USDM_CAPTURE)))
_USDM_TRADES = [(t, raw) for t, raw in _USDM_FRAMES if "@trade" in raw]
#: Per market: the instrument id, the start-up request (the first the daemon sends), the order-placing path.
_PATHS = {"spot": (IID, "/api/v3/account", "/api/v3/order"), "usdm": (USDM_IID, "/fapi/v2/balance", "/fapi/v1/order")}
#: The requests that open an order at a venue, by the client id they give it: a place, Binance spot's cancel-replace
#: (its new order), a Binance spot OCO list (by its first leg's id), Binance USD-M's and OKX's algo orders. One id in
#: two of them, or twice in one, is a double send.
NEW_ORDER_PATHS = frozenset({
    "/api/v3/order", "/api/v3/order/cancelReplace", "/api/v3/orderList/oco", "/fapi/v1/order", "/fapi/v1/algoOrder",
    "/api/v5/trade/order", "/api/v5/trade/order-algo", "/v5/order/create",
})  # fmt: skip
#: The requests that amend an order in place: one order's no more often than the journal holds modifications of it
#: (a request without an answer is never sent again: a restart must not repeat one).
AMEND_PATHS = frozenset({"/api/v5/trade/amend-order", "/api/v5/trade/amend-algos", "/v5/order/amend"})
#: Per market: the request that modifies an order (Binance spot's cancel-replace, OKX's and Bybit's amend), the stream
#: frames that carry a fill, and the seeded kill points inside a modification a fill races (``races``).
MODIFY_PATHS = {
    "spot": ("/api/v3/order/cancelReplace", '"x": "TRADE"', ("held", "answered", "cut-held", "cut-refused")),
    "okx": ("/api/v5/trade/amend-order", KITS["okx"].fill_frame, ("held", "answered")),
    "bybit": ("/v5/order/amend", KITS["bybit"].fill_frame, ("held", "answered")),
}
#: The funding mode (``funding`` of :func:`kill_and_restart`, USD-M): seconds between two of the venue's settlements,
#: and the kill points around one (see :class:`_Funder`).
FUNDING_EVERY_S = 0.5
FUNDING_POINTS = ("funding-before", "funding-after", "funding-reconcile")
#: Other venues' markets (``"okx"``, ``"bybit"``: the spot accounts of :mod:`tests.live.venue_kits`) trade this often.
TRADE_SPACING_NS = 100_000_000


def looped_trades(loops: int, market: str = "spot") -> list[tuple[int, str]]:
    """The market's recorded trade frames ``loops`` times over, times shifted and trade ids renumbered (increasing)."""
    trades = _USDM_TRADES if market == "usdm" else _TRADES
    span = trades[-1][0] - trades[0][0] + 50_000_000
    first_id = json.loads(trades[0][1])["data"]["t"]
    count = len(trades)
    out = []
    for k in range(loops):
        shift_ns = k * span
        for n, (t, raw) in enumerate(trades):
            msg = json.loads(raw)
            data = msg["data"]
            data["t"] = first_id + k * count + n
            data["T"] += shift_ns // 1_000_000
            data["E"] += shift_ns // 1_000_000
            out.append((t + shift_ns, json.dumps(msg, separators=(",", ":"))))
    return out


def kit_trades(kit: VenueKit, count: int) -> list[tuple[int, str]]:
    """``count`` public trade frames of ``kit``'s instrument, 100 ms apart, made from its recording's first one.

    The price walks (a fixed random walk, 3 basis points a step) so that resting orders and stops
    fill now and then; trade ids, times and sizes (0.01) are renumbered in order.
    """
    symbol = kit.instrument["symbol"]
    t0, raw = next((t, r) for t, r in kit.frames if ("trades" in r or "publicTrade" in r) and f'"{symbol}"' in r and '"data"' in r)
    template = json.loads(raw)
    row = template["data"][0]
    okx = kit.venue == "okx"
    first_id, ms0, px = int(row["tradeId" if okx else "i"]), int(row["ts" if okx else "T"]), float(row["px" if okx else "p"])
    walk = random.Random(0)
    out = []
    for n in range(count):
        px *= 1.0 + walk.choice((-3e-4, 3e-4))
        ms = ms0 + n * TRADE_SPACING_NS // 1_000_000
        side = walk.choice(("buy", "sell"))
        if okx:
            data = {**row, "tradeId": str(first_id + n), "px": f"{px:.1f}", "sz": "0.01", "side": side, "ts": str(ms)}
            msg = {**template, "data": [data]}
        else:
            data = {**row, "i": str(first_id + n), "T": ms, "p": f"{px:.2f}", "v": "0.01", "S": side.title(), "seq": row["seq"] + n}
            msg = {**template, "ts": ms + 1, "data": [data]}
        out.append((t0 + n * TRADE_SPACING_NS, json.dumps(msg, separators=(",", ":"))))
    return out


@dataclass
class SoakCounts:
    """What a soak saw: kill points, orders, fills, and every defect found (named in ``problems``)."""

    sessions: int = 0
    kills: int = 0
    kills_by_point: Counter[str] = field(default_factory=Counter)
    orders: int = 0
    fills: int = 0
    orphans: int = 0
    duplicates: int = 0
    mismatches: int = 0
    #: Kills inside a modification a fill raced (``races``).
    raced: int = 0
    #: Modifications let through unraced before a raced one (``races``; see :class:`_Race`).
    passed: int = 0
    problems: list[str] = field(default_factory=list)

    def add(self, other: SoakCounts) -> None:
        """Sum another session's counts into these."""
        self.sessions += other.sessions
        self.kills += other.kills
        self.kills_by_point.update(other.kills_by_point)
        for name in ("orders", "fills", "orphans", "duplicates", "mismatches", "raced", "passed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.problems += other.problems

    def as_dict(self) -> dict[str, Any]:
        """Counts as a JSON-able mapping."""
        return {
            "sessions": self.sessions,
            "kills": self.kills,
            "kills_by_point": dict(sorted(self.kills_by_point.items())),
            "orders": self.orders,
            "fills": self.fills,
            "orphans": self.orphans,
            "duplicates": self.duplicates,
            "mismatches": self.mismatches,
            "raced": self.raced,
            "passed": self.passed,
            "problems": self.problems,
        }


def _config(
    tmp: Path, srv: LocalVenueServer, emulator: AccountEmulator, market: str = "spot", strategy: dict[str, Any] | None = None,
    cancel_on_stop: bool = True,
) -> Path:
    """The daemon tests' live config (journal, no recording), a faster crossing and a shorter not-found grace.

    USD-M: the same on the perpetual (``live.market: perpetual``), long and short; OKX or Bybit: the kit's
    spot config. ``strategy``: its ``name`` and ``params`` instead of the EMA cross's (on the market's instrument).
    ``cancel_on_stop``: the live setting (false: a stop leaves the orders working, for the audit to see).
    """
    if market in KITS:
        data = KITS[market].config(tmp, srv.ws_url, emulator, not_found_grace=1.0, stop_timeout=2.0, cancel_on_stop=cancel_on_stop)
        data.pop("record")
        if strategy is not None:
            data["strategy"] = {**data["strategy"], "name": strategy["name"], "params": strategy.get("params", {})}
        path = tmp / "live.yaml"
        path.write_text(yaml.safe_dump(data))
        return path
    endpoints = SimpleNamespace(rest_url=emulator.rest_url, ws_api_url=emulator.ws_url)  # the user stream's URL
    data = daemon_config(tmp, srv.ws_url, srv.http_url, endpoints)  # type: ignore[arg-type]
    data.pop("record")
    data["strategy"]["params"] = {"fast": 2, "slow": 5, "quantity": QTY, "mode": "long_only"}
    data["live"].update(not_found_grace=1.0, stop_timeout=2.0, cancel_on_stop=cancel_on_stop)
    if market == "usdm":
        data["instruments"] = [USDM_INSTRUMENT]
        data["strategy"]["instruments"] = [USDM_IID]
        data["strategy"]["params"]["mode"] = "long_short"
        data["feeds"] = [{**data["feeds"][0], "market": "usdm", "subscriptions": {USDM_IID: ["trade"]}}]
        data["live"]["market"] = "perpetual"
    if strategy is not None:
        data["strategy"] = {"name": strategy["name"], "instruments": data["strategy"]["instruments"], "params": strategy.get("params", {})}
    path = tmp / "live.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


async def _pacer(url: str) -> None:
    """Stay subscribed to the public trades: the server's cursor (and the account's matching) never waits for the daemon."""
    async with connect(f"{url.rstrip('/')}/stream?streams=btcusdt@trade", max_size=None) as ws:
        async for _ in ws:
            pass


class _Daemon:
    """One ``tradebus live`` subprocess, its stderr in a log file (``keys``: the venue's key variables, default Binance's)."""

    def __init__(self, config: Path, log: Path, extra: list[str], keys: dict[str, str] | None = None) -> None:
        self.config, self.log, self.extra = config, log, extra
        self.keys = keys or {"TRADEBUS_BINANCE_API_KEY": KEY, "TRADEBUS_BINANCE_API_SECRET": SECRET}
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), **self.keys}
        with self.log.open("ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tradebus.cli", "live", str(self.config), "--log-level", "DEBUG", *self.extra,
                stdin=asyncio.subprocess.DEVNULL, stdout=err, stderr=err, cwd=str(ROOT), env=env,
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def kill(self) -> None:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()


async def _wait(check: Any, timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not check():
        if loop.time() > end:
            raise AssertionError(f"kill -9 soak: {what} not seen within {timeout} s")
        await asyncio.sleep(0.002)


def _booked(journal: Path) -> set[str]:
    """The trade ids of the fills ``journal`` holds."""
    db = sqlite3.connect(journal)
    try:
        rows = db.execute("SELECT payload FROM journal WHERE kind = 'event' AND type = 'OrderFilled'").fetchall()
    finally:
        db.close()
    return {str(msgspec.msgpack.decode(p, type=OrderFilled).trade_id) for (p,) in rows}


async def run_session(tmp: Path, seed: int, kills: int, speed: float = 5.0, market: str = "spot", **options: Any) -> SoakCounts:
    """One emulator, one journal, ``kills`` SIGKILLs at seeded-random points, a reconciling restart, the audit
    (``options``: those of :func:`kill_and_restart`)."""
    counts = SoakCounts(sessions=1)
    emulator = await kill_and_restart(tmp, seed, kills, counts, speed, market, **options)
    audit(tmp, seed, emulator, counts)
    return counts


class LedgerFuturesEmulator(BinanceFuturesEmulator):
    """The USD-M account emulator keeping its own funding ledger: the audit's reference for every payment."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: One row per payment settled: time (ms, the income row's), position, mark, rate and payment.
        self.ledger: list[tuple[int, float, float, float, float]] = []

    def settle_funding(self, symbol: str, rate: float, mark: float) -> float:
        """Settle as the emulator does, noting the position the payment was made on."""
        held = self.position(symbol)
        payment = super().settle_funding(symbol, rate, mark)
        if payment != 0.0:
            self.ledger.append((self.income[-1]["time"], held, mark, rate, payment))
        return payment


class _Funder:
    """The venue settling the perpetual's funding every :data:`FUNDING_EVERY_S`, daemon alive or dead, at the last
    trade's price; each rate another (1 bp and a 64th more each time, and 0.003 bp, never the 1, 2, 3 bp paid after
    each kill), so that no two payments within a minute are alike (Perpetuals.is_booked matches by amount within a minute).

    The seeded kill points: ``funding-before`` (0-30 ms before a settlement), ``funding-after`` (0-30 ms after
    a payment the user stream pushed: before or after its income row was read and journaled), ``funding-reconcile``
    (a funding settled as the restarted daemon reads the income history, killed 0-30 ms later).
    """

    def __init__(self, emulator: BinanceFuturesEmulator) -> None:
        self.emulator = emulator
        self.count = 0
        self.next_at = 0.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.next_at = loop.time() + FUNDING_EVERY_S
        while True:
            await asyncio.sleep(max(0.0, self.next_at - loop.time()))
            self.settle()
            self.next_at += FUNDING_EVERY_S

    def settle(self) -> float:
        price = self.emulator.last_price.get("BTCUSDT")
        if not price:
            return 0.0
        self.count += 1
        return self.emulator.settle_funding("BTCUSDT", 1e-4 * (1.0 + self.count / 64) + 3e-7, price)

    async def kill_point(self, point: str, daemon: _Daemon, n_req: int, rng: random.Random) -> None:
        """Return at ``point`` of this start (a stall raises)."""
        loop = asyncio.get_running_loop()
        alive = lambda: daemon.proc is not None and daemon.proc.returncode is None  # noqa: E731
        ledger = self.emulator.ledger  # type: ignore[attr-defined]
        if point == "funding-reconcile":
            await _wait(lambda: any(p == "/fapi/v1/income" for _, p, _ in self.emulator.requests[n_req:]) or not alive(), 60,
                        "the restart's read of the income history")
            self.settle()
        else:
            await asyncio.sleep(rng.uniform(0.0, 3.0))  # some fundings, fills and decisions go by
            if point == "funding-before":
                await asyncio.sleep(max(0.0, self.next_at - loop.time() - rng.uniform(0.0, 0.03)))
                return
            paid = len(ledger)
            await _wait(lambda: len(ledger) > paid or not alive(), 30, "a funding payment")
        await asyncio.sleep(rng.uniform(0.0, 0.03))


def _emulator(market: str, trade_size_limit: bool = False) -> AccountEmulator:
    if market in KITS:
        return KITS[market].emulator(trade_size_limit=trade_size_limit)
    if market == "usdm":
        return LedgerFuturesEmulator(KEY, SECRET, {USDM_IID: USDM_INST}, {"USDT": CASH}, trade_size_limit=trade_size_limit)
    return BinancePrivateEmulator(KEY, SECRET, {IID: INST}, {"USDT": CASH}, trade_size_limit=trade_size_limit)


class _Race:
    """A modification raced by a fill, and the seeded kill point inside it (``races`` of :func:`kill_and_restart`).

    The next modification request is held at the venue (``hold``); meanwhile a public trade at the
    modified order's price fills part of it there, its stream frame 1 s late. ``point`` says when the
    daemon dies: ``held`` (the request at the venue, done after the kill), ``answered`` (released, killed
    0-50 ms later: before or after the answer reached it, before or after a cut of the replacement left),
    ``cut-held`` (Binance spot: the cut, a second cancel-replace, held at the venue, done after the kill),
    ``cut-refused`` (Binance spot: the cut's new order refused, ``-2021``; killed 0-50 ms later). A held
    modification a trade cannot race is let through and the next one held instead, up to :attr:`TRIES`
    (see :meth:`kill_point`): every kill is a raced one (:attr:`raced`).
    """

    #: Modifications held at most in one start before the race gives up (a problem of the session).
    TRIES = 20

    def __init__(self, emulator: AccountEmulator, market: str, journal: Path, point: str, rng: random.Random) -> None:
        self.emulator, self.journal, self.point, self.rng = emulator, journal, point, rng
        self.path, self.fill_frame, _ = MODIFY_PATHS[market]
        self.releases: list[asyncio.Event] = []
        self.raced = False
        #: Why each modification let through was not raced.
        self.passed: list[str] = []
        self._arm()

    def _arm(self) -> None:
        """Hold the next modification request (and, at a ``cut-`` point, fault the one after it)."""
        self.releases += [asyncio.Event(), asyncio.Event()]
        self.faults = [RestFault("hold", "POST", self.path, release=self.releases[-2])]
        if self.point == "cut-held":
            self.faults.append(RestFault("hold", "POST", self.path, at=1, release=self.releases[-1]))
        elif self.point == "cut-refused":
            self.faults.append(RestFault("refuse_new", "POST", self.path, at=1))
        self.emulator.rest_faults[:] = self.faults  # a former start's or attempt's unfired faults would fire here

    def _modified(self, coid: str) -> tuple[str, bool]:
        """The order a held modification is for, and whether the request is a daemon's cut of a replacement: an amend
        names the order, a Binance cancel-replace its replacement (the journal's ``"replace"`` link, written before
        the request, names the replaced order)."""
        if self.path != MODIFY_PATHS["spot"][0]:
            return coid, False
        db = sqlite3.connect(self.journal)
        try:
            rows = db.execute("SELECT payload FROM journal WHERE type = 'ContingentLinked'").fetchall()
        finally:
            db.close()
        links = [link for link in (msgspec.msgpack.decode(p, type=ContingentLinked) for (p,) in rows) if link.kind == "replace"]
        replaced = next(link.order_ids[0] for link in links if link.order_ids[1:] == (coid,))
        return replaced, any(link.order_ids[1:] == (replaced,) for link in links)

    def _race(self) -> str:
        """Fill part of the held modification's order by a public trade at its price; why it cannot be raced, or ``""``.

        Not raced: a daemon's cut (a restart's, lowering a replacement: a fill may take more than the cut
        leaves, nothing can undo that and the audit's asked totals would not hold), an order the venue no
        longer works or with less than a lot left, an order another working buy at its price or above would
        take the trade from (the venue matches a trade against its working orders in turn).
        """
        coid = next(c for m, p, c in reversed(self.emulator.requests) if m == "POST" and p == self.path)
        modified, cut = self._modified(coid)
        rec = self.emulator.orders[modified]
        inst = self.emulator.instruments[rec.symbol]
        left = rec.order.quantity - rec.filled
        raced = round(math.floor(left * self.rng.uniform(0.2, 0.9) / inst.lot_size) * inst.lot_size, 10)
        ahead = [r.order.client_order_id for r in self.emulator.open_orders(rec.symbol)
                 if r is not rec and r.order.side is OrderSide.BUY and r.order.price >= rec.order.price]
        if cut:
            return f"{coid}: a cut of {modified}"
        if rec.status not in OPEN or raced <= 0.0:
            return f"{coid}: {modified} {rec.status}, {left:.10g} left"
        if ahead:
            return f"{coid}: {modified} at {rec.order.price} behind working buys {ahead}"
        self.emulator.stream_faults.append(StreamFault("delay", match=self.fill_frame, seconds=1.0))
        now = self.emulator.tick()
        self.emulator.on_trade(Trade(rec.order.instrument_id, now, now, rec.order.price, raced, -1, f"race-{now}"))
        if not rec.order.quantity - rec.filled < left:
            raise AssertionError(f"kill -9 soak: the racing trade of {raced:.10g} at {rec.order.price} did not fill {modified}")
        return ""

    async def kill_point(self, daemon: _Daemon) -> None:
        """Race the daemon's next modification that a trade can race with a fill and return at the kill point (a stall
        or :attr:`TRIES` modifications none of which could be raced raise)."""
        alive = lambda: daemon.proc is not None and daemon.proc.returncode is None  # noqa: E731
        while True:
            await _wait(lambda: self.faults[0].fired or not alive(), 30, "a modification")
            if not alive():
                return
            why = self._race()
            if not why:
                break
            self.passed.append(why)
            if len(self.passed) >= self.TRIES:
                raise AssertionError(f"kill -9 soak: no modification of {self.TRIES} could be raced: {self.passed}")
            held = self.releases[-2:]
            self._arm()
            for event in held:
                event.set()
        self.raced = True
        if self.point == "held":
            await asyncio.sleep(self.rng.uniform(0.0, 0.02))
            return
        self.releases[-2].set()
        if self.point.startswith("cut-"):
            await _wait(lambda: self.faults[1].fired or not alive(), 10, "the cut of the replacement")
        await asyncio.sleep(self.rng.uniform(0.0, 0.05) if self.point != "cut-held" else self.rng.uniform(0.0, 0.02))

    def release(self) -> None:
        """Let the held requests be done (the daemon is dead: the venue goes on without it)."""
        for event in self.releases:
            event.set()


async def kill_and_restart(
    tmp: Path, seed: int, kills: int, counts: SoakCounts, speed: float = 5.0, market: str = "spot",
    strategy: dict[str, Any] | None = None, timer: tuple[float, float] = (0.1, 2.0), skips: int = 2, run_after: float = 0.0,
    races: bool = False, funding: bool = False,
) -> AccountEmulator:
    """Serve the account and the market, kill the daemon ``kills`` times (counted in ``counts``), restart it to reconcile.

    ``strategy``: the daemon's (``name`` and ``params``), default the EMA cross of :func:`_config`. A kill
    comes ``timer`` seconds (uniform) after the start-up, or after an order request
    or the next fill (``skips``: how many order requests may go by). ``run_after``: seconds a restarted daemon trades after the last kill before it is
    stopped (SIGTERM), ahead of the reconciling start. ``races``: each kill comes inside a modification a fill
    races instead (:class:`_Race`, its point seeded; the strategy must modify: ``fuzz_strategy.ModifyRaced``),
    the account's fills limited to the public trades' sizes. ``funding`` (USD-M): the venue settles funding
    every :data:`FUNDING_EVERY_S` throughout and each kill comes around one (:class:`_Funder`, its point seeded).
    """
    rng = random.Random(seed)
    tmp.mkdir(parents=True, exist_ok=True)
    kit = KITS.get(market)
    iid, start_path, place_path = (kit.iid, "", kit.place_path) if kit is not None else _PATHS[market]
    emulator = _emulator(market, trade_size_limit=races)
    # 60 s of market per start: on a loaded machine a start alone can take 10 s, and a market that
    # ran out would stall the daemon (no trades, no decisions) and fail the session
    if kit is None:
        trades = looped_trades(1, market)
        loops = math.ceil((kills + 2) * 60 * speed / ((trades[-1][0] - trades[0][0]) / 1e9 + 0.05))
    else:
        frames = kit_trades(kit, math.ceil((kills + 2) * 60 * speed * 1e9 / TRADE_SPACING_NS))
    async with emulator:
        if kit is not None:
            protocol = kit.make_protocol(frames, emulator)
        elif market == "usdm":
            protocol = MatchingProtocol(USDM_SNAPSHOT, futures=True, account=emulator, instrument_ids={"btcusdt": iid})
        else:
            protocol = MatchingProtocol(SPOT_SNAPSHOT, account=emulator, instrument_ids={"btcusdt": iid})
        tape = frames if kit is not None else looped_trades(loops, market)
        public = LocalVenueServer(protocol, tape, speed=speed, lifetime=3_600, max_connections=4 * kills + 10)
        async with public as srv:
            # a paced server prints the frames itself while no connection streams; Binance's pacer keeps the old pace
            pacer = asyncio.create_task(_pacer(srv.ws_url) if kit is None else asyncio.sleep(0))
            funder = _Funder(emulator) if funding else None  # type: ignore[arg-type]
            settling = asyncio.create_task(funder.run() if funder is not None else asyncio.sleep(0))
            try:
                config = _config(tmp, srv, emulator, market, strategy, cancel_on_stop=not races)
                for k in range(kills):
                    daemon = _Daemon(config, tmp / f"daemon-{k}.log", [], kit.env if kit is not None else None)
                    n_req = len(emulator.requests)
                    n_trades = len(emulator.fills)
                    race = _Race(emulator, market, tmp / "journal.sqlite", rng.choice(MODIFY_PATHS[market][2]), rng) if races else None
                    await daemon.start()
                    try:
                        await _wait(lambda: any(start_path in (p, "") for _, p, _ in emulator.requests[n_req:]), 90, "the daemon's start-up")
                        point = rng.choice(["timer", "post", "post", "fill"]) if race is None else race.point
                        if funder is not None:
                            point = rng.choice(FUNDING_POINTS if k else FUNDING_POINTS[:2])  # a first start reads no history
                            try:
                                await funder.kill_point(point, daemon, n_req, rng)
                            except AssertionError as exc:
                                counts.problems.append(f"seed {seed} kill {k}: {exc} (the daemon stalled: {daemon.log.name})")
                        elif race is not None:
                            try:
                                await race.kill_point(daemon)
                            except AssertionError as exc:
                                counts.problems.append(f"seed {seed} kill {k}: {exc} (the daemon stalled: {daemon.log.name})")
                        elif point == "timer":
                            await asyncio.sleep(rng.uniform(*timer))
                        else:
                            skip = rng.randrange(skips)
                            posts = lambda: sum(1 for m, p, _ in emulator.requests[n_req:] if m == "POST" and p == place_path)  # noqa: E731
                            try:
                                if point == "post":
                                    await _wait(lambda: posts() > skip or daemon.proc.returncode is not None, 20, "an order request")  # type: ignore[union-attr]
                                else:
                                    await _wait(lambda: len(emulator.fills) > n_trades or daemon.proc.returncode is not None, 20, "a fill")  # type: ignore[union-attr]
                            except AssertionError as exc:
                                counts.problems.append(f"seed {seed} kill {k}: {exc} (the daemon stalled: {daemon.log.name})")
                            await asyncio.sleep(rng.uniform(0.0, 0.02 if point == "post" else 0.01))
                        if daemon.proc is not None and daemon.proc.returncode is not None:
                            counts.problems.append(f"seed {seed} kill {k}: the daemon exited by itself ({daemon.proc.returncode})")
                        counts.kills_by_point[point] += 1
                        counts.kills += 1
                    finally:
                        await daemon.kill()
                        if race is not None:
                            race.release()
                            counts.raced += race.raced
                            counts.passed += len(race.passed)
                            if race.passed:
                                logger.info("kill -9 soak: seed {} kill {}: let through unraced: {}", seed, k, race.passed)
                    await asyncio.sleep(rng.uniform(0.0, 0.5))  # the market moves on while it is dead
                    if isinstance(emulator, BinanceFuturesEmulator) and emulator.last_price:
                        # funding settled while it is dead reaches only the venue's income history
                        emulator.settle_funding("BTCUSDT", 0.0001 * (k + 1), emulator.last_price["BTCUSDT"])
                if run_after > 0:
                    survivor = _Daemon(config, tmp / f"daemon-{kills}.log", [], kit.env if kit is not None else None)
                    await survivor.start()
                    assert survivor.proc is not None
                    async with areaped(survivor.proc):
                        await _wait(lambda: "live daemon running" in survivor.text() or survivor.proc.returncode is not None, 90, "the restart")  # type: ignore[union-attr]
                        await asyncio.sleep(run_after)
                        if survivor.proc.returncode is not None:
                            tail = "\n".join(survivor.text().splitlines()[-15:])
                            counts.problems.append(f"seed {seed}: the restarted daemon exited by itself "
                                                   f"({survivor.proc.returncode}); its log ends:\n{tail}")
                        else:
                            survivor.proc.send_signal(signal.SIGTERM)
                            await asyncio.wait_for(survivor.proc.wait(), 30)
                settling.cancel()  # the reconciling start must find every payment the venue made
                await asyncio.gather(settling, return_exceptions=True)
                final = _Daemon(config, tmp / "daemon-final.log", ["--dry-run", "--out", str(tmp / "out")], kit.env if kit is not None else None)
                await final.start()
                assert final.proc is not None
                async with areaped(final.proc):
                    # the start-up comparison of the position: equal ("reconciled ...") or held with the reason
                    await _wait(lambda: re.search(r"reconciled \S+:|held here but", final.text()) is not None, 120, "the final reconciliation")
                    await asyncio.sleep(1.5)  # unknown orders outlive not_found_grace
                    # the market closes before the daemon stops: an order it leaves working (a dry run cancels
                    # nothing) must not fill while nothing can book it, however long the stop takes; each trade
                    # made by then reaches the journal (the audit says which did not)
                    await srv.stop()
                    made = {str(f.trade_id) for f in emulator.fills}
                    loop = asyncio.get_running_loop()
                    end = loop.time() + 60
                    while not made <= _booked(tmp / "journal.sqlite") and loop.time() < end:
                        await asyncio.sleep(0.05)
                    final.proc.send_signal(signal.SIGTERM)
                    await asyncio.wait_for(final.proc.wait(), 30)
            finally:
                pacer.cancel()
                settling.cancel()
                await asyncio.gather(pacer, settling, return_exceptions=True)
    return emulator


def perpetual_wallet(cash: float, fills: list[OrderFilled]) -> tuple[float, float]:
    """(position, wallet) after ``fills`` in order, one-way: realized PnL at the average entry price, less fees."""
    position = entry = 0.0
    for f in fills:
        qty = f.last_qty if f.side is OrderSide.BUY else -f.last_qty
        after = position + qty
        if position != 0.0 and (position > 0.0) != (qty > 0.0):
            closed = min(abs(qty), abs(position))
            cash += closed * (f.last_px - entry) * (1.0 if position > 0.0 else -1.0)
        if abs(after) < 1e-12:
            entry = 0.0
        elif position == 0.0 or (position > 0.0) != (after > 0.0):
            entry = f.last_px
        elif abs(after) > abs(position):
            entry = (entry * abs(position) + f.last_px * abs(qty)) / abs(after)
        position = after
        cash -= f.fee
    return position, cash


def _audit_funding(tag: str, emulator: BinanceFuturesEmulator, journaled: list[FundingPaid], out: Path, counts: SoakCounts) -> None:
    """Each payment of the emulator's ledger journaled exactly once, at its time, on the position it was made on, and
    the final daemon's ``funding.csv`` the journal's payments, row for row."""
    ledger = getattr(emulator, "ledger", [])
    lot = USDM_INST.lot_size
    for at, held, mark, rate, payment in ledger:
        mine = [f for f in journaled if f.ts_event // 1_000_000 == at and math.fabs(f.payment - payment) <= 1e-8]
        if len(mine) != 1:
            counts.mismatches += 1 if not mine else 0
            counts.duplicates += 1 if mine else 0
            counts.problems.append(f"{tag}: the venue's funding of {payment:.10g} at {at} ms journaled {len(mine)} times")
        elif math.fabs(mine[0].quantity - held) > lot / 2:
            counts.mismatches += 1
            counts.problems.append(f"{tag}: the venue's funding of {payment:.10g} at {at} ms (mark {mark}, rate {rate:.6g}) "
                                   f"journaled on a position of {mine[0].quantity}, made on {held}")
    for f in journaled:
        if not any(f.ts_event // 1_000_000 == at and math.fabs(f.payment - payment) <= 1e-8 for at, _, _, _, payment in ledger):
            counts.mismatches += 1
            counts.problems.append(f"{tag}: journaled funding of {f.payment:.10g} at {f.ts_event} is not in the venue's ledger")
    path = out / "funding.csv"
    if ledger and path.exists():
        with path.open(newline="") as fh:
            rows = sorted((int(r["ts_event"]), float(r["quantity"]), float(r["payment"])) for r in csv.DictReader(fh))
        want = sorted((f.ts_event, f.quantity, f.payment) for f in journaled)
        if len(rows) != len(want) or any(a[0] != b[0] or not math.isclose(a[2], b[2], rel_tol=1e-9)
                                         or math.fabs(a[1] - b[1]) > lot / 2 for a, b in zip(rows, want)):
            counts.mismatches += 1
            counts.problems.append(f"{tag}: funding.csv rows {rows} are not the journal's payments {want}")


def audit(tmp: Path, seed: int, emulator: AccountEmulator, counts: SoakCounts) -> None:
    """Compare the session's journal and logs in ``tmp`` with the account; count what disagrees into ``counts``."""
    tag = f"seed {seed}"
    perpetual = isinstance(emulator, BinanceFuturesEmulator)
    kit = next((k for k in KITS.values() if isinstance(emulator, k.make_emulator)), None)  # type: ignore[arg-type]
    logs = "".join(p.read_text(errors="replace") for p in sorted(tmp.glob("daemon-*.log")))
    final_log = (tmp / "daemon-final.log").read_text(errors="replace")
    db = sqlite3.connect(tmp / "journal.sqlite")
    try:
        submits = db.execute("SELECT client_order_id, payload FROM journal WHERE kind = 'command' AND type = 'SubmitOrder'").fetchall()
        fill_rows = db.execute("SELECT payload FROM journal WHERE kind = 'event' AND type = 'OrderFilled'").fetchall()
        ended = {c for (c,) in db.execute(
            "SELECT client_order_id FROM journal WHERE kind = 'event' AND type IN ('OrderCanceled', 'OrderRejected', 'OrderExpired')")}
        funding_rows = db.execute("SELECT payload FROM journal WHERE kind = 'event' AND type = 'FundingPaid'").fetchall()
        modifies = [msgspec.msgpack.decode(p, type=ModifyOrder) for (p,) in db.execute(
            "SELECT payload FROM journal WHERE kind = 'command' AND type = 'ModifyOrder'")]
        links = [msgspec.msgpack.decode(p, type=ContingentLinked) for (p,) in db.execute(
            "SELECT payload FROM journal WHERE type = 'ContingentLinked'")]
    finally:
        db.close()
    modified = Counter(m.client_order_id for m in modifies)
    journaled = {coid for coid, _ in submits}
    fills = [msgspec.msgpack.decode(p, type=OrderFilled) for (p,) in fill_rows]
    external = set(re.findall(r"external order (\S+) ", logs))
    venue_orders = list(emulator.orders)
    counts.orders += len(venue_orders)
    counts.fills += len(emulator.fills)
    # orphans: a venue order neither journaled nor reported external
    for coid in venue_orders:
        if coid not in journaled and coid not in external:
            counts.orphans += 1
            counts.problems.append(f"{tag}: venue order {coid} is neither journaled nor reported external")
    # an order working at the venue that the journal ended (canceled, rejected, expired) or holds filled
    filled_here = Counter[str]()
    for f in fills:
        filled_here[f.client_order_id] += f.last_qty
    for rec in emulator.open_orders():
        coid = rec.order.client_order_id
        if coid in journaled and (coid in ended or filled_here[coid] >= rec.order.quantity - 1e-12):
            counts.mismatches += 1
            counts.problems.append(f"{tag}: venue order {coid} works at the venue, closed in the journal")
    # duplicates: one client id posted twice; two venue orders for one decision; a venue trade booked twice or never
    posts = Counter(coid for method, path, coid in emulator.requests if method == "POST" and path in NEW_ORDER_PATHS and coid)
    for coid, n in posts.items():
        if n > 1:
            counts.duplicates += 1
            paths = sorted({path for method, path, c in emulator.requests if c == coid and path in NEW_ORDER_PATHS})
            counts.problems.append(f"{tag}: client order id {coid} sent as a new order {n} times ({', '.join(paths)})")
    amends = Counter(coid for method, path, coid in emulator.requests if method == "POST" and path in AMEND_PATHS)
    for coid, n in amends.items():
        if n > modified[coid]:
            counts.duplicates += 1
            counts.problems.append(f"{tag}: order {coid} amended {n} times at the venue, modified {modified[coid]} in the journal")
    if len(journaled) != len(submits):
        counts.duplicates += 1
        counts.problems.append(f"{tag}: the journal holds {len(submits)} SubmitOrder commands for {len(journaled)} client ids")
    # one decision: a strategy's order at one moment (a bracket's two exits share their moment, not their kind)
    decisions: Counter[tuple[Any, ...]] = Counter()
    for coid, payload in submits:
        cmd = msgspec.msgpack.decode(payload, type=SubmitOrder)
        if coid in emulator.orders:
            decisions[(cmd.strategy_id, cmd.ts_event, cmd.side, cmd.order_type, cmd.quantity, str(cmd.price), str(cmd.trigger_price))] += 1
    for decision, n in decisions.items():
        if n > 1:
            counts.duplicates += 1
            counts.problems.append(f"{tag}: {n} venue orders for the one decision {decision}")
    # nothing bought beyond the asked total: an order and its cancel-replaces' replacements (the journal's "replace"
    # links) together fill no more than the order's quantity or the largest total a modification of any of them asked,
    # nor, with what is left of those still working at the venue, could
    root = {link.order_ids[1]: link.order_ids[0] for link in links if link.kind == "replace" and len(link.order_ids) > 1 and link.order_ids[1]}

    def chain_root(coid: str) -> str:
        while coid in root:
            coid = root[coid]
        return coid

    asked = {coid: msgspec.msgpack.decode(payload, type=SubmitOrder).quantity for coid, payload in submits}
    for m in modifies:
        if m.quantity == m.quantity:
            first = chain_root(m.client_order_id)
            asked[first] = max(asked.get(first, 0.0), m.quantity)
    bought, exposed = Counter[str](), Counter[str]()
    for coid, rec in emulator.orders.items():
        bought[chain_root(coid)] += rec.filled
        exposed[chain_root(coid)] += rec.filled + (rec.order.quantity - rec.filled if rec.status in OPEN else 0.0)
    for first, qty in exposed.items():
        if first in asked and qty > asked[first] + 1e-12:
            counts.mismatches += 1
            counts.problems.append(f"{tag}: order {first} and its replacements bought {bought[first]:.10g} and work for "
                                   f"{qty - bought[first]:.10g} more at the venue, asked {asked[first]:.10g}")
    booked = Counter(f.trade_id for f in fills)
    venue_trades = Counter(str(f.trade_id) for f in emulator.fills)
    for trade_id, n in booked.items():
        if n > 1:
            counts.duplicates += 1
            counts.problems.append(f"{tag}: venue trade {trade_id} booked {n} times")
        if trade_id not in venue_trades:
            counts.mismatches += 1
            counts.problems.append(f"{tag}: booked trade {trade_id} is not in the venue's trade list")
    for trade_id in venue_trades:
        if trade_id not in booked:
            counts.mismatches += 1
            counts.problems.append(f"{tag}: venue trade {trade_id} never booked")
    # position, cash and PnL from the journal's fills (and funding payments) against the account
    venue_fills = [f.fill for f in emulator.fills]
    if perpetual:
        assert isinstance(emulator, BinanceFuturesEmulator)
        fills.sort(key=lambda f: int(f.trade_id))  # the venue's order (the journal's may differ after a restart)
        paid = sorted(msgspec.msgpack.decode(p, type=FundingPaid).payment for (p,) in funding_rows)
        venue_paid = sorted(-float(r["income"]) for r in emulator.income)
        if len(paid) != len(venue_paid) or any(math.fabs(a - b) > 1e-8 for a, b in zip(paid, venue_paid)):
            counts.mismatches += 1
            counts.problems.append(f"{tag}: funding payments {paid} journaled, {venue_paid} settled by the venue")
        _audit_funding(tag, emulator, [msgspec.msgpack.decode(p, type=FundingPaid) for (p,) in funding_rows], tmp / "out", counts)
        position, cash = perpetual_wallet(CASH - sum(paid), fills)
        venue_position = emulator.position("BTCUSDT")
        _, venue_trade_cash = perpetual_wallet(CASH - sum(venue_paid), venue_fills)
    else:
        position = sum(f.last_qty if f.side is OrderSide.BUY else -f.last_qty for f in fills)
        cash = CASH + sum((-1.0 if f.side is OrderSide.BUY else 1.0) * f.last_qty * f.last_px - f.fee for f in fills)
        venue_position = emulator.balances.get("BTC", 0.0)
        venue_trade_cash = CASH + sum((-1.0 if f.side is OrderSide.BUY else 1.0) * f.last_qty * f.last_px - f.fee for f in venue_fills)
    venue_cash = emulator.balances.get("USDT", 0.0)
    lot = kit.instrument["lot_size"] if kit is not None else USDM_INST.lot_size if perpetual else INST.lot_size
    for what, here, there, tol in (
        ("position (BTC)", position, venue_position, lot / 2),
        ("cash (USDT)", cash, venue_cash, 1e-6),
        ("PnL against the venue's trade list (USDT)", cash, venue_trade_cash, 1e-4),
    ):
        if math.fabs(here - there) > tol:
            counts.mismatches += 1
            counts.problems.append(f"{tag}: {what}: {here} from the journal's fills, {there} at the venue")
    # the daemon's own view at its last start: it reconciled its holding with the venue's (the value then, not the
    # venue's at the end: a held order released after the kill may fill after that start; the journal's fills are
    # held to the venue's final position above)
    held = re.findall(r"reconciled \S+: (\S+) BTC (?:position )?held, as at the venue", final_log)
    if not held:
        counts.mismatches += 1
        counts.problems.append(f"{tag}: the final daemon did not reconcile its position with the venue ({held or 'no line'})")
