"""The live-trading daemon: the paper daemon with the exchange in place of the simulated venue.

:class:`LiveNode` is a :class:`~tradebus.node.daemon.PaperNode` (same feeds, market guard,
kernel, journal, recorder, decision log and outputs) whose venue is a
:class:`~tradebus.execution.live.LiveVenue` on the account's REST API, fed by the account's
private user stream, with :class:`~tradebus.execution.engine.OrderTimeouts` (a request
without an answer becomes UNKNOWN and is settled by a query, never re-sent).

Money safety
    * **Testnet by default.** Mainnet only with ``live.environment: mainnet`` in the config
      **and** ``--mainnet`` on the command line (:func:`check_environment`).
    * Keys come from the environment variables named by ``live.api_key_env`` /
      ``live.api_secret_env`` (/ ``live.api_passphrase_env``; default
      ``TRADEBUS_<VENUE>_API_KEY`` / ``_API_SECRET`` / ``_API_PASSPHRASE``), are held as :class:`pydantic.SecretStr` and never
      reach a log line, an exception, the run directory, the journal or a recording (only
      the variable *names* are in the config).
    * Before the first order the daemon logs the environment, the endpoint, the account id
      and its balances.
    * ``--dry-run`` connects, reconciles and decides, and sends nothing (a submit is
      answered locally with ``OrderRejected("dry run: not sent")``).

Start-up (after the paper daemon's warm-up of the feature kernels: no socket is open while they compile)
    1. the account is read (balances, account id; a rate-limit pause or IP ban the journal kept from an earlier
       session, or met now, is waited out first, and a stop ends that wait at once, nothing recovered or
       started) and the user stream subscribed (the venue's
       confirmation awaited, up to ``live.request_timeout``; one that comes later is followed by
       a query of every open order, as after a reconnect; what the stream tells until the journal is
       replayed is kept and handed on, in order, right after the replay);
    2. the journal is replayed as in paper mode; every order it left open is tracked by the
       venue; the fills missed while down are booked from each instrument's trade history,
       read page by page (by trade id, once); the orders whose venue state still differs are
       queried (UNKNOWN ones are resolved, and those the journal holds FILLED with less booked
       than their quantity are asked for their fills again while the venue still lists them);
       orders open at the venue that the journal does not know are reported as external and
       left alone
       (:meth:`~tradebus.node.reconcile.Reconciler.startup`); after it (each payment on the
       position of its time, the fills missed while down booked), the funding the venue
       paid while the daemon was down is read from the venue and booked once
       (:meth:`~tradebus.node.reconcile.Reconciler.catch_up_funding`; also after every
       reconnect of the user stream, every reconciliation round on a venue whose user
       stream does not push its payments: ``TradingApi.streams_funding``, OKX swaps, and a
       payment the stream tells without its instrument: ``FundingUnattributed``); once the
       orders are settled and the holdings compared, the working orders a trading state restored
       from the journal (HALTED, REDUCING) no longer allows are canceled
       (:meth:`~tradebus.risk.gate.RiskGate.cancel_disallowed`: a breaker's trip whose cancels a
       crash kept from the venue, a ``live-kill`` whose cancels failed);
    3. feeds, strategies and trading as in paper mode (when the journal holds execution algorithms
       to interrupt, the strategies start once step 2 has ended, and not at all if it is stopped first);
       every ``live.reconcile_interval``
       seconds a :class:`~tradebus.node.reconcile.Reconciler` round compares open orders and
       balances with the venue again.

Stop (SIGINT/SIGTERM, ``max_seconds``, ``max_messages``, a feed or the user stream failing for
good, the start-up reconciliation failing: :meth:`LiveNode.run` then raises its error; a strategy's hook
raising, on market data, a timer, or an order event of the user stream, of a request's answer or of the
reconciliation (a fill missed while down): it raises the :class:`~tradebus.errors.StrategyError`, as the
paper daemon): the feeds, the timers and the strategies stop as in the paper daemon (an ``on_stop``
may still send orders); then, with ``live.cancel_on_stop``, every new order is denied and every
open order canceled (one whose submit is on its way once it has ended) and the cancels are awaited
(up to ``live.stop_timeout``; unjournaled once the journal failed: a restart queries every order the
journal holds open); at that deadline each order still open here becomes UNKNOWN and is queried, once the
requests on their way have ended (each wait up to ``live.request_timeout``), and is logged as closed, open
at the venue, or of unknown state (no answer), the answers journaled; the rest of the paper daemon's
shutdown follows; the stream is closed last, then the recording. Orders left open or unknown at the
venue make :meth:`LiveNode.run` raise :class:`~tradebus.errors.OrdersLeftAtVenue` (``tradebus live``:
exit 4). Whatever the stop did (``cancel_on_stop: false``, cancels cut short by a second signal), each order
still open or unknown here is logged with its details and listed in ``node.json``'s ``orders_left``
(:class:`LiveSummary`; empty after a clean stop).

Recording
    With ``record:`` the recording holds, besides the public frames, every frame the user
    stream received (connection ``"private:<stream>:<n>"``, the account's key, secret,
    passphrase and any listen key redacted; never a frame sent, never the stream's URL):
    :class:`~tradebus.adapters.common.recorder.PrivateFrames`. ``tradebus replay`` skips
    them; ``read_frames(path, private=True)`` reads them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import math
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar
from urllib.parse import urlsplit

import msgspec
from loguru import logger
from pydantic import Field, PositiveFloat, SecretStr, field_validator, model_validator

from tradebus.adapters.common.recorder import FrameRecorder, PrivateFrames
from tradebus.adapters.common.venue import LiveAccount
from tradebus.adapters.registry import VENUES, client_id_rules, venue_adapter
from tradebus.config import dump_config, load_config, parse_config
from tradebus.config.base import HttpUrl, StrictModel, WsUrl, env_name
from tradebus.engine.kernel import Kernel, RunResult
from tradebus.engine.messages import CancelOrder, OrderFilled, OrderSide, OrderStatus, SubmitOrder, TradingState
from tradebus.errors import ConfigError, DataError, OrdersLeftAtVenue
from tradebus.execution.client_ids import ClientIdRule
from tradebus.execution.engine import OrderTimeouts
from tradebus.execution.journal import Journal, JournalOwner, VenuePause
from tradebus.execution.live import (
    AccountBalance,
    AccountPosition,
    CredentialsRefused,
    FundingUnattributed,
    LiveVenue,
    NoAnswer,
    RateLimited,
    VenueRejected,
)
from tradebus.execution.orders import OPEN_STATUSES, Order
from tradebus.execution.venue import OrderStatusReport
from tradebus.node.config import PaperConfig, named_refusal, naming_config
from tradebus.node.reconcile import ExternalOrder, InstrumentHeld, Reconciler, hedge_mode, margin_differences
from tradebus.node.starting import StartingSignals
from tradebus.risk.breakers import BreakerState
from tradebus.risk.config import quantity_slack
from tradebus.node.daemon import (
    NodeSummary,
    PaperNode,
    ShutdownSteps,
    build_paper_kernel,
    check_bot_token,
    check_log_beside_outputs,
    close_recorder,
    kept_files,
    outputs_to_write,
)
from tradebus.reports.outputs import write_outputs
from tradebus.risk.guard import MarketGuard
from tradebus.strategies.failure import strategy_failure

if TYPE_CHECKING:
    from tradebus.reports.writers import RunDirectory

__all__ = [
    "ApiKeys",
    "ExternalOrder",
    "InstrumentHeld",
    "LiveGuard",
    "LiveConfig",
    "LiveNode",
    "LiveSettings",
    "LiveSummary",
    "check_environment",
    "check_feed_environment",
    "keep_venue_pause",
    "kill_switch",
    "resume_trading",
    "set_trading_state",
    "load_live_config",
    "parse_live_config",
    "run_live",
    "venue_account_id",
]

_T = TypeVar("_T")

#: Seconds before each new try of a start-up read of the account left unanswered (:meth:`LiveNode._read_at_start`):
#: a venue's passing failure (OKX ``50013`` "System is busy, please try again later.") outlasts one request, not 15 s.
START_READ_RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0)

#: Seconds between two reads of the journal's trading state by a running live daemon (``live-kill``
#: and ``live-resume`` from another process take effect within them; a kill withdraws every submit
#: leaving after it at once: :meth:`LiveNode._send_refusal`).
TRADING_STATE_POLL_S = 1.0


class LiveGuard(MarketGuard):
    """The market guard plus the per-instrument holds and REDUCING states set by the reconciliation.

    ``stopping``: the reason no new order passes on any instrument (set by a daemon stopping;
    ``""``: none). ``holds``: ``instrument_id -> reason``, no new order. ``reducing``: ``instrument_id ->
    (reason, difference)`` where ``difference`` is the holding here minus the venue's
    (constant while the mismatch persists: a fill moves both); an order passes only if it
    reduces, without crossing zero, both the holding here (``holding(instrument_id)``) and
    the venue's (the holding here minus the difference), working orders on its side included (a
    spot instrument's holding is its base asset: the working orders of every instrument trading
    it count), up to float noise (:func:`~tradebus.risk.config.quantity_slack`: never one of ``lot_sizes``).
    """

    __slots__ = ("holding", "holds", "lot_sizes", "reducing", "stopping")

    def __init__(self) -> None:
        super().__init__()
        self.stopping = ""
        self.holds: dict[str, str] = {}
        self.reducing: dict[str, tuple[str, float]] = {}
        #: The holding compared with the venue (set by the daemon: :meth:`~tradebus.node.reconcile.Reconciler.holding`).
        self.holding: Callable[[str], float] = lambda _iid: 0.0
        #: ``instrument_id -> lot size`` (set by the daemon; an instrument not in it: ``LIMIT_RTOL`` alone).
        self.lot_sizes: dict[str, float] = {}

    def block_reason(self, instrument_id: str) -> str | None:
        """The stop's reason first, then the hold's, else the market-data checks."""
        if self.stopping:
            return self.stopping
        held = self.holds.get(instrument_id)
        return held if held is not None else super().block_reason(instrument_id)

    def order_reason(self, cmd: SubmitOrder, working: Callable[[str, bool, str], float]) -> str | None:
        """:meth:`block_reason`, then, on a REDUCING instrument, whether ``cmd`` reduces both holdings."""
        iid = cmd.instrument_id
        reason = self.block_reason(iid)
        if reason is not None or not self.reducing:
            return reason
        entry = self.reducing.get(iid)
        if entry is None:
            return None
        why, difference = entry
        signed = cmd.quantity if cmd.side > 0 else -cmd.quantity
        pending = working(iid, signed > 0.0, cmd.client_order_id)
        here = self.holding(iid)
        there = here - difference
        lot = self.lot_sizes.get(iid, math.inf)
        for base in (here + pending, there + pending):
            if base == 0.0 or (base > 0.0) == (signed > 0.0) or abs(signed) > abs(base) + quantity_slack(base, lot):
                return (
                    f"REDUCING: only orders reducing the holding here ({here}) and at the venue ({there}) pass; "
                    f"working on the order's side {pending}, order {signed} ({why})"
                )
        return None


#: What to do about orders a stop left open or of unknown state at the venue (the error and the operator's alert).
_CHECK_LEFT_AT_VENUE = (
    "Check them at the venue (`tradebus live-kill` cancels every open order of the account and halts the journal)"
)
#: Longest variable name an error message shows (a longer one may be a key pasted as a name).
SHOWN_NAME_LENGTH = 40


class LiveSettings(StrictModel):
    """The ``live:`` section of a live config.

    Parameters
    ----------
    venue, market
        The account's venue (default: the feeds' venue) and market: ``spot``, or
        ``perpetual`` (USDT-margined perpetuals, one-way position mode; the venues whose registry entry has ``live_perpetual``);
        the venue's live pieces come from the registry.
    environment
        ``testnet`` (default) or ``mainnet`` (needs ``--mainnet`` too).
    rest_url, ws_api_url
        Endpoint overrides (a local emulator); ``None``: the environment's.
    api_key_env, api_secret_env, api_passphrase_env
        Names of the environment variables holding the key pair (and the passphrase, for
        the venues that have one); default ``TRADEBUS_<VENUE>_API_KEY``,
        ``TRADEBUS_<VENUE>_API_SECRET``, ``TRADEBUS_<VENUE>_API_PASSPHRASE``. A name is
        upper-case letters, digits and ``_`` (:data:`~tradebus.config.base.ENV_NAME`); anything else is refused
        without being shown, as it may be a key pasted where its variable's name belongs.
    cancel_on_stop
        Cancel every open order when the daemon stops.
    stop_timeout
        Seconds to wait for those cancels to be confirmed; then every order still open is queried
        (the stop lasts up to three times ``request_timeout`` more) and any left open or of unknown state
        at the venue fails the run (``tradebus live`` exit 4).
    request_timeout
        HTTP timeout of one REST request, seconds (no answer by then: the order is UNKNOWN
        after ``submit_timeout``).
    submit_timeout, cancel_timeout, retry_interval, check_interval, not_found_grace, fill_grace
        :class:`~tradebus.execution.engine.OrderTimeouts`, in seconds (``fill_grace``: how long after
        a venue's order push said more filled than is booked the order is queried if still short).
    reconcile_interval
        Seconds between two reconciliation rounds while running
        (:class:`~tradebus.node.reconcile.Reconciler`); ``None``: only at start-up.
    on_mismatch
        What a persisting difference between a holding here and the venue's does to the
        instrument: ``hold`` (default; no new order) or ``reducing`` (only orders that reduce
        the holding both here and at the venue, e.g. to close a position). Either way it is
        never overwritten and is lifted when a round finds both equal.
    """

    venue: str | None = None
    market: Literal["spot", "perpetual"] = "spot"
    environment: Literal["testnet", "mainnet"] = "testnet"
    rest_url: HttpUrl | None = None
    ws_api_url: WsUrl | None = None
    api_key_env: str | None = None
    api_secret_env: str | None = None
    api_passphrase_env: str | None = None
    cancel_on_stop: bool = True
    stop_timeout: PositiveFloat = 5.0
    request_timeout: PositiveFloat = 10.0
    submit_timeout: PositiveFloat = 10.0
    cancel_timeout: PositiveFloat = 10.0
    retry_interval: PositiveFloat = 5.0
    check_interval: PositiveFloat | None = 30.0
    not_found_grace: PositiveFloat = 15.0
    fill_grace: PositiveFloat = 1.0
    reconcile_interval: PositiveFloat | None = 60.0
    on_mismatch: Literal["hold", "reducing"] = "hold"

    @field_validator("api_key_env", "api_secret_env", "api_passphrase_env", mode="before")
    @classmethod
    def _a_variable_name(cls, value: Any) -> Any:
        """Refuse what is not an environment variable name, without showing it: it may be the key itself."""
        if value is None:
            return value
        if isinstance(value, str) and not value.strip():
            raise ValueError("empty: give the name of the environment variable holding it, or leave the key out "
                             "for the default TRADEBUS_<VENUE>_API_KEY, _SECRET or _PASSPHRASE")
        return env_name(value)

    @model_validator(mode="after")
    def _key_names(self) -> LiveSettings:
        """Default the key variables' names from the venue (``TRADEBUS_OKX_API_KEY`` ...)."""
        adapter = VENUES.get(self.venue or "")
        if adapter is None or adapter.live is None:
            return self
        prefix = f"TRADEBUS_{adapter.name.upper()}_API"
        object.__setattr__(self, "api_key_env", self.api_key_env or f"{prefix}_KEY")
        object.__setattr__(self, "api_secret_env", self.api_secret_env or f"{prefix}_SECRET")
        if adapter.live.passphrase:
            object.__setattr__(self, "api_passphrase_env", self.api_passphrase_env or f"{prefix}_PASSPHRASE")
        return self

    def account(self) -> LiveAccount:
        """The venue's live pieces of the market, from the registry (the config's validation checked they exist)."""
        adapter = venue_adapter(self.venue or "")
        live = adapter.live if self.market == "spot" else adapter.live_perpetual
        assert live is not None
        return live

    def endpoints(self) -> tuple[str, str]:
        """(REST base, user-stream URL) of this environment, with the overrides applied."""
        rest, ws = self.account().endpoints[self.environment]
        return self.rest_url or rest, self.ws_api_url or ws

    def timeouts(self) -> OrderTimeouts:
        """The execution engine's request timeouts."""
        s = 1_000_000_000
        return OrderTimeouts(
            submit_ns=int(self.submit_timeout * s),
            cancel_ns=int(self.cancel_timeout * s),
            retry_ns=int(self.retry_interval * s),
            check_ns=None if self.check_interval is None else int(self.check_interval * s),
            not_found_grace_ns=int(self.not_found_grace * s),
            fill_grace_ns=int(self.fill_grace * s),
        )


#: The ``venue:`` keys a live config takes at any value: the fee overrides of the account checks
#: (:func:`~tradebus.node.daemon.build_paper_kernel`) and ``fill_on``, kept so that a paper config runs live as it
#: is (the exchange fills live orders: whatever it says, the feeds need not subscribe its channel). The others set
#: how the simulated venue fills.
LIVE_VENUE_KEYS = frozenset({"fill_on", "maker_fee", "taker_fee"})
#: The paper daemon's ``venue:``: a live config may keep its values (a paper config run live as it is).
_PAPER_VENUE = PaperConfig.model_fields["venue"].get_default(call_default_factory=True).model_dump(mode="json")


class LiveConfig(PaperConfig):
    """A paper config plus the ``live:`` section (the account that trades).

    Its ``venue:`` section takes the fee overrides (``maker_fee``, ``taker_fee``: the account checks use them, the
    exchange charges its own fees) and ``fill_on``, which asks nothing of the feeds here (:data:`LIVE_VENUE_KEYS`); any other key set to a value other than
    the paper daemon's default (slippage, latency, ``limit_fill`` ...) is refused naming each: the exchange, not the
    simulated venue, fills a live order.
    """

    live: LiveSettings = Field(default_factory=LiveSettings)
    # The exchange fills a live order: venue.fill_on picks no channel the feeds must subscribe.
    fills_on_feeds: ClassVar[bool] = False

    @model_validator(mode="after")
    def _live_venue(self) -> LiveConfig:
        venue = self.live.venue
        if venue is None:
            venues = sorted({feed.venue for feed in self.feeds})
            if len(venues) != 1:
                raise ValueError(f"live.venue: the feeds name {venues}; say which venue trades")
            venue = venues[0]
            object.__setattr__(self, "live", LiveSettings.model_validate(self.live.model_dump() | {"venue": venue}))
        if venue not in VENUES:
            raise ValueError(f"live.venue: {venue!r} is not a registered venue; use one of {sorted(VENUES)}")
        if VENUES[venue].live is None:
            live = sorted(name for name, adapter in VENUES.items() if adapter.live is not None)
            raise ValueError(f"live.venue: {venue!r} has no live trading yet; use one of {live}")
        if self.live.market == "perpetual" and VENUES[venue].live_perpetual is None:
            live = sorted(name for name, adapter in VENUES.items() if adapter.live_perpetual is not None)
            raise ValueError(f"live.market: {venue!r} has no live perpetual trading yet; use one of {live}")
        want = "perpetual" if self.live.market == "perpetual" else "spot"
        wrong = [f"{inst.symbol}.{inst.venue}" for inst in self.instruments if str(inst.kind) != want]
        if wrong:
            other = "spot" if want == "perpetual" else "perpetual"
            raise ValueError(
                f"live.market: a {self.live.market} account trades {want} instruments only; {wrong} are not: "
                f"set live.market: {other} to trade them (spot is the default)"
            )
        simulated = [
            f"{key}: {value!r}" for key, value in self.venue.model_dump(mode="json").items()
            if key not in LIVE_VENUE_KEYS and value != _PAPER_VENUE[key]
        ]
        if simulated:
            raise ValueError(
                f"venue: {', '.join(simulated)}: simulated-venue settings have no effect on a live account, whose "
                f"orders the exchange fills; remove them (a live config's venue: takes {', '.join(sorted(LIVE_VENUE_KEYS))})"
            )
        margin = [f"{inst.symbol}.{inst.venue}" for inst in self.instruments if inst.kind == "spot" and inst.margin]
        if margin:
            raise ValueError(
                f"instruments: {margin} set margin: true, but live spot orders go to the venue's spot API, which "
                "neither borrows nor sells short (spot margin is simulated in backtests and paper runs only); "
                "trade them cash-only, with the coins to sell in the account"
            )
        return self


    def journal_owner(self) -> JournalOwner:
        """What the journal of a run of this config is written by: a live run on the account's venue, market and environment."""
        return JournalOwner("live", self.live.venue or "", self.live.market, self.live.environment)

    def client_id_rules(self) -> dict[str, ClientIdRule]:
        """``instrument_id -> the client order id rule of the venue its orders go to``: the account's venue
        (``live.venue``) for every instrument, whichever venue's stream feeds it."""
        return client_id_rules(self.instrument_map().values(), venue=self.live.venue)

    def fee_assets(self) -> frozenset[str]:
        """The live account's fee assets (:attr:`~tradebus.adapters.common.venue.LiveAccount.fee_assets`: Binance spot's and USD-M's ``BNB``)."""
        venue = self.live.venue
        if venue is None:
            venues = {feed.venue for feed in self.feeds}
            venue = venues.pop() if len(venues) == 1 else None
        adapter = VENUES.get(venue or "")
        live = None if adapter is None else adapter.live if self.live.market == "spot" else adapter.live_perpetual
        return frozenset(live.fee_assets) if live is not None else frozenset()


def parse_live_config(data: Any, source: str = "<config>", base: Path | None = None) -> LiveConfig:
    """Validate a live config mapping (see :func:`tradebus.config.parse_config`)."""
    return parse_config(data, source, base, model=LiveConfig)


def load_live_config(path: str | Path, overrides: Sequence[str] = ()) -> LiveConfig:
    """Read and validate a YAML live config."""
    return load_config(path, model=LiveConfig, overrides=overrides)


class ApiKeys:
    """The account's key pair (and passphrase, for the venues that have one), held as secrets."""

    __slots__ = ("key", "passphrase", "secret")

    def __init__(self, key: SecretStr, secret: SecretStr, passphrase: SecretStr | None = None) -> None:
        self.key = key
        self.secret = secret
        self.passphrase = passphrase

    def __repr__(self) -> str:
        return "ApiKeys(key=**********, secret=**********)"

    def options(self, settings: LiveSettings) -> dict[str, Any]:
        """The keywords of the venue's factories (:class:`~tradebus.adapters.common.venue.LiveAccount`)."""
        return {"passphrase": self.passphrase, "environment": settings.environment}

    @classmethod
    def from_env(cls, settings: LiveSettings, environ: dict[str, str] | None = None) -> ApiKeys:
        """Read the variables named by ``settings``.

        Raises
        ------
        ConfigError
            A variable is unset or empty (named; its value never appears).
        """
        env = os.environ if environ is None else environ
        values = []
        wanted = [("API key", "api_key_env", settings.api_key_env), ("API secret", "api_secret_env", settings.api_secret_env)]
        if settings.api_passphrase_env:
            wanted.append(("API passphrase", "api_passphrase_env", settings.api_passphrase_env))
        for what, field, name in wanted:
            if not name:
                raise ConfigError(f"live.{field}: no environment variable named for the {settings.venue} {what}")
            value = env.get(name, "")
            if not value:
                if len(name) > SHOWN_NAME_LENGTH:
                    raise ConfigError(
                        f"live: set the environment variable named by live.{field} to the {settings.venue} {what} (the "
                        f"name is not shown: longer than {SHOWN_NAME_LENGTH} characters, it may be a key)"
                    )
                raise ConfigError(f"live: set the environment variable {name} to the {settings.venue} {what}")
            values.append(SecretStr(value))
        return cls(*values)


def check_environment(settings: LiveSettings, mainnet: bool) -> None:
    """Refuse mainnet unless both the config and the flag ask for it (and the flag without the config).

    An endpoint override (``rest_url``, ``ws_api_url``) on a host of the venue's mainnet, or
    on any host in the venue's real-money domains (``api1.binance.com``, ``fapi.binance.com``;
    :attr:`~tradebus.adapters.common.venue.LiveAccount.mainnet_domains`), that its testnet
    does not share counts as mainnet: it is refused in a testnet config.

    Raises
    ------
    ConfigError
        The two disagree, or a testnet config's endpoint override is on the mainnet.
    """
    if settings.environment == "mainnet" and not mainnet:
        raise ConfigError("live.environment is mainnet: real money; confirm with --mainnet on the command line")
    if mainnet and settings.environment != "mainnet":
        raise ConfigError(f"--mainnet given but live.environment is {settings.environment!r}; set it to mainnet")
    if settings.environment == "mainnet" or settings.venue not in VENUES:
        return
    account = settings.account()
    testnet = {_host(url) for url in account.endpoints["testnet"]}
    real = {_host(url) for url in account.endpoints["mainnet"]} - testnet
    for field, url in (("rest_url", settings.rest_url), ("ws_api_url", settings.ws_api_url)):
        host = _host(url or "")
        if host in testnet or not host:
            continue
        if host in account.other_hosts:
            raise ConfigError(
                f"live.{field}: {url} is {settings.venue}'s {account.other_hosts[host]}, which tradebus does not trade "
                f"(its testnet is {', '.join(account.endpoints['testnet'])}, with testnet keys); leave live.{field} unset "
                "to trade the testnet"
            )
        if host in real or any(host.endswith(f".{domain}") or host == domain for domain in account.mainnet_domains):
            raise ConfigError(
                f"live.{field}: {url} is {settings.venue}'s mainnet (real money) but live.environment is "
                f"{settings.environment!r}; set live.environment: mainnet and pass --mainnet, or point it elsewhere"
            )


def check_feed_environment(config: LiveConfig) -> None:
    """Refuse a testnet daemon's feed of the traded venue that would stream the venue's mainnet market data.

    A feed without ``ws_url`` connects to its venue's production stream (:class:`~tradebus.adapters.common.feed.FeedConfig`);
    beside a testnet account (Bybit's testnet, OKX's demo trading, Binance's testnets: order books of their own)
    the strategy would price its orders on the mainnet's book and send them to the testnet's. A feed of
    another venue (a signal) is left alone, and so is a ``ws_url`` given explicitly (the mainnet's included).

    Raises
    ------
    ConfigError
        A testnet config's feed of ``live.venue`` has no ``ws_url``.
    """
    if config.live.environment == "mainnet":
        return
    for n, feed in enumerate(config.feeds):
        if feed.venue.lower() == (config.live.venue or "").lower() and feed.ws_url is None:
            raise ConfigError(
                f"feeds.{n}: this {feed.venue} {feed.market} feed has no ws_url, so it streams {feed.venue}'s mainnet "
                f"market data, but live.environment is {config.live.environment!r}: the strategy would price its orders "
                "on the mainnet's book and send them to the testnet's; set ws_url to the testnet's public stream "
                "(the configs/live_*.yaml examples name it), or to the mainnet's to trade on mainnet prices"
            )


def _host(url: str) -> str:
    """The host name of ``url``, lower case, without the trailing dot of a fully qualified name."""
    return (urlsplit(url).hostname or "").rstrip(".")


@dataclasses.dataclass
class LiveSummary(NodeSummary):
    """A live daemon's :class:`~tradebus.node.daemon.NodeSummary` (``node.json``) plus the orders it left.

    ``orders_left``: every order still open or of unknown state here when the daemon stopped trading, as
    ``{client_order_id, venue_order_id, instrument_id, side, type, quantity, price, trigger_price, filled,
    status}`` (``price`` ``None`` for a market or stop-market order, ``trigger_price`` ``None`` for an order
    without a trigger): working at the venue after a stop with ``live.cancel_on_stop: false``, one whose cancel
    a second signal cut short or the venue did not confirm, or one a dry run found in its journal (it cancels
    nothing). Empty: a clean stop, nothing left working.
    """

    orders_left: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def _number(value: float) -> str:
    """``value`` in a log line as the float it is (``61854.49``, not ``:g``'s six digits ``61854.5``), a whole one
    without ``.0`` (``20000``)."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def _order_left(order: Order) -> dict[str, Any]:
    """One entry of :attr:`LiveSummary.orders_left`."""
    return {
        "client_order_id": order.client_order_id,
        "venue_order_id": order.venue_order_id,
        "instrument_id": order.instrument_id,
        "side": order.side.name.lower(),
        "type": order.order_type.name.lower(),
        "quantity": order.quantity,
        "price": None if math.isnan(order.price) else order.price,
        "trigger_price": None if math.isnan(order.trigger_price) else order.trigger_price,
        "filled": order.filled_qty,
        "status": order.status.name,
    }


def _left_reason(cancel_on_stop: bool, dry_run: bool) -> str:
    """Why a stopped live daemon's open orders are left, as its log lines say it."""
    if dry_run:
        return "left as the journal holds it (a dry run sends no cancel)"
    if cancel_on_stop:
        return "not confirmed canceled"
    return "left working at the venue (live.cancel_on_stop: false)"


def _call_soon(callback: Callable[[], None]) -> None:
    """Run ``callback`` once the running event loop has run the callbacks (a new task's first step) ready now."""
    asyncio.get_running_loop().call_soon(callback)


class LiveNode(PaperNode):
    """The live daemon (see the module docstring).

    Parameters
    ----------
    config
        The validated live config.
    keys
        The account's key pair.
    dry_run
        Connect, reconcile and decide, send nothing.
    max_seconds, max_messages, handle_signals, run_dir
        As :class:`~tradebus.node.daemon.PaperNode`.
    """

    config: LiveConfig
    venue: LiveVenue
    guard: LiveGuard
    summary: LiveSummary
    mode = "live"
    _venue_books_between_messages = True
    summary_class = LiveSummary
    #: A timer's or a message handler's orders leave when it runs: it reads the wall clock.
    replay_times = False

    def __init__(
        self,
        config: LiveConfig,
        keys: ApiKeys,
        *,
        dry_run: bool = False,
        max_seconds: float | None = None,
        max_messages: int | None = None,
        handle_signals: bool = True,
        run_dir: RunDirectory | None = None,
    ) -> None:
        self.keys = keys
        self.dry_run = dry_run
        self.balances: dict[str, AccountBalance] = {}
        #: The venue's last reported position of each perpetual (user stream).
        self.positions: dict[str, AccountPosition] = {}
        self._venue_open: list[OrderStatusReport] = []
        self._stream_task: asyncio.Task[None] | None = None
        self._reconcile_task: asyncio.Task[None] | None = None
        self._startup_task: asyncio.Task[None] | None = None
        self._state_task: asyncio.Task[None] | None = None
        self._funding_task: asyncio.Task[None] | None = None
        # What the user stream told before the journal was replayed (None: replayed), handed on right after it, in
        # order: a fill of a journaled order, a payment, a reconnect then meet the journal's orders, fills and payments.
        self._heard_early: list[Callable[[], None]] | None = []
        #: The exception (not a strategy's) the start-up reconciliation ended with: :meth:`run` raises it.
        self._startup_failure: BaseException | None = None
        self._recovered: list[Order] = []
        self._recording: FrameRecorder | None = None
        #: The orders a ``live.cancel_on_stop`` stop left at the venue: client order id -> ``"open"`` (its query
        #: says it works) or ``"unknown"`` (no answer; journaled UNKNOWN). :meth:`run` raises on any.
        self.left_at_venue: dict[str, Literal["open", "unknown"]] = {}
        # The orders the stop's queries logged (:meth:`_query_left`), whatever their answer said.
        self._queried_at_stop: set[str] = set()
        #: The account's read at start-up failed (the venue refused the credentials, the account or a request, the
        #: margin settings differ from the config, no answer) or a stop ended it: nothing was recovered or started, and
        #: the run is withdrawn (:meth:`withdraw`) as it stops, its journal kept if it holds a rate-limit pause to wait
        #: out (:attr:`_pause_kept`).
        self._refused_at_start = False
        self._pause_kept = False
        super().__init__(
            config, max_seconds=max_seconds, max_messages=max_messages, handle_signals=handle_signals, run_dir=run_dir
        )
        # The decisions of a frame are logged once the requests they queued have started (a task starts only when the
        # frame has returned to the loop; the log lines would delay it).
        self.router.log_later = _call_soon
        # ... and before a request refused in that first step (trading HALTED since, the rate budget) is reported.
        self.venue.before_refusal = self.router.log_decisions
        try:
            self._build_account_side(config, keys)
        except Exception:
            self.withdraw()
            raise

    def _build_account_side(self, config: LiveConfig, keys: ApiKeys) -> None:
        """The reconciler, the user stream and the hooks of the venue's rate-limit budget, on the built kernel."""
        self.reconciler = Reconciler(
            self.kernel, self.venue, self._hold, config.live.stop_timeout, self._mismatch, config.fee_assets()
        )
        self.guard.holding = self.reconciler.holding
        self.guard.lot_sizes = {iid: inst.lot_size for iid, inst in self.kernel.instruments.items()}
        rest_url, ws_url = config.live.endpoints()
        self.stream = config.live.account().user_stream(
            ws_url,
            keys.key,
            keys.secret,
            self.kernel.instruments,
            self.venue.order,
            self._on_stream_event,
            self._on_balance,
            self._on_stream_reconnect,
            rest_url=rest_url,
            timeout=config.live.request_timeout,
            venue_clock=getattr(self.venue.api, "venue_clock", None),
            trading=self.venue.api,
            by_venue_id=self.reconciler.open_order_at_venue,
            **keys.options(config.live),
        )
        budget = getattr(self.venue.api, "budget", None)
        if budget is not None and self.journal is not None:
            budget.on_pause = self._keep_venue_pause  # a restart during a ban waits it out (_resume_venue_pause)
        if self.ops is not None and budget is not None and self.kernel.instruments:
            venue = next(iter(self.kernel.instruments.values())).venue
            ops = self.ops
            # tradebus_rate_limit_headroom_ratio: what the venue's last answer left (OKX tells none)
            budget.on_left = lambda left: ops.set_rate_limit_headroom(venue, left)
        if self.ops is not None:
            self.ops.watch_user_stream(self.stream)

    def _build_kernel(self) -> tuple[Kernel, LiveVenue]:
        settings = self.config.live
        self.guard = LiveGuard()  # replaces the paper guard before the router is built on it
        rest_url, _ = settings.endpoints()
        api = settings.account().trading(
            rest_url, self.keys.key, self.keys.secret, self.config.instrument_map(), settings.request_timeout,
            **self.keys.options(settings),
        )
        venue = LiveVenue(api, self.clock, dry_run=self.dry_run)
        kernel, _ = build_paper_kernel(self.config, self.clock, self.guard, self.journal, venue, settings.timeouts())
        venue.on_answer = kernel.execution.reconcile_order
        venue.on_replace = kernel.execution.submit
        venue.on_cancel = kernel.execution.cancel
        venue.on_replacing = kernel.execution.replacing
        venue.refusal = self._send_refusal
        return kernel, venue

    # ------------------------------------------------------------------ run

    async def run(self) -> NodeSummary:
        """Run as the paper daemon, reading the account and subscribing the user stream once warmed up; close the
        account last (the signals are handled until then, as by the paper daemon).

        Raises
        ------
        OrdersLeftAtVenue
            With ``live.cancel_on_stop``, orders open or of unknown state at the venue after the stop
            (:attr:`left_at_venue`), once the daemon has stopped whole; otherwise as
            :meth:`PaperNode.run <tradebus.node.daemon.PaperNode.run>`, whose error comes first.
        """
        return await super().run()

    async def _run(self) -> NodeSummary:
        """The paper daemon's run, then the live daemon's last steps (:meth:`run`)."""
        failed = False
        try:
            self._open_recording()
            summary = await super()._run()
            if self._startup_failure is not None:
                raise self._startup_failure
            if self.left_at_venue:
                raise OrdersLeftAtVenue(
                    f"live.cancel_on_stop: the daemon stopped with {self._left_at_venue_text()} (the journal holds "
                    f"what the venue said; a restart queries every order it holds open or unknown). {_CHECK_LEFT_AT_VENUE}"
                )
            return summary
        except BaseException:
            failed = True
            raise
        finally:
            # Each step whatever an earlier one raised; their first error is raised unless run()'s comes first.
            steps = ShutdownSteps()
            with steps.step("closing the user stream"):
                self.stream.stop()
                if self._stream_task is not None:
                    await asyncio.gather(self._stream_task, return_exceptions=True)
            with steps.step("closing the venue's connections"):
                await self.venue.aclose()
            if self._recording is not None:
                with steps.step("closing the recording"):
                    close_recorder(self._recording)  # after the stream: its last frames are recorded too
            if self.journal is not None:
                with steps.step("closing the journal"):
                    self.journal.close()  # closed by the paper daemon's shutdown, unless the account could not be read
            if self._refused_at_start:
                with steps.step("removing what the refused run created"):
                    if self._created:
                        logger.info("nothing was recovered or started: removing what this run created{} ({})",
                                    " but its journal" if self._pause_kept else "", ", ".join(map(str, self._created)))
                    self.withdraw(keep_journal=self._pause_kept)
            if not failed or steps.cancelled is not None:
                steps.raise_cancellation_or_first_error()

    def _open_recording(self) -> None:
        """With ``record:``, open the recorder now and record the user stream's received frames in it.

        Tagged private and with the account's credentials redacted
        (:class:`~tradebus.adapters.common.recorder.PrivateFrames`); ``tradebus replay`` skips them.
        """
        if self.config.record is None:
            return
        self.recorder = self._recording = self._new_recorder(self.config.record)
        keys = self.keys
        secrets = [keys.key.get_secret_value(), keys.secret.get_secret_value()]
        if keys.passphrase is not None:
            secrets.append(keys.passphrase.get_secret_value())
        self.stream.recorder = PrivateFrames(self._recording, secrets)

    async def _start_and_serve(self, tasks: dict[asyncio.Task[None], Any]) -> BaseException | None:
        """Read the account and subscribe the user stream, then recover, start and serve as the paper daemon.

        After the warm-up: no socket is open while the kernels compile (a minute or more, cold); what the venue
        did meanwhile is read by the start-up reconciliation. What the stream tells from its subscription until the
        journal is replayed waits for that replay (a fill of a journaled order would be booked as a stranger's, then
        again by the replay): :meth:`_recover` hands it on. A failure to read the account stops the daemon, naming it.
        A stop while it is read (waiting out a venue's rate-limit pause or IP ban, which can last minutes) ends the
        read at once: nothing is recovered or started, as after a stop in the warm-up. Either way the run then removes
        what it created (the journal's and the recording's files and folders, never an earlier run's), unless the
        journal keeps the venue's rate-limit pause for a restart to wait out.
        """
        assert self._stop is not None
        connect = asyncio.ensure_future(self._connect())
        stopper = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait([connect, stopper], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            if not connect.done():
                connect.cancel()
                await asyncio.gather(connect, return_exceptions=True)
        if connect.cancelled():
            logger.warning("stopped while reading the account: nothing was recovered or started")
            self._refused_at_start, self._pause_kept = True, self._holds_venue_pause()
            return None
        exc = connect.exception()
        if exc is not None:
            self._refused_at_start, self._pause_kept = True, self._holds_venue_pause()
            if isinstance(exc, Exception):
                self.stop(f"reading the account failed: {type(exc).__name__}: {exc}")
            raise exc
        return await super()._start_and_serve(tasks)

    def _holds_venue_pause(self) -> bool:
        """Whether the journal keeps a rate-limit pause of the venue (:meth:`_keep_venue_pause`: a ban met reading the
        account, not over), which a restart must wait out: an unstarted run keeps its journal then."""
        journal = self.journal
        pause = None if journal is None or journal.closed else journal.venue_pause
        if pause is None:
            return False
        logger.info("journal {} is kept: it holds the venue's rate-limit pause ({}) for a restart to wait out",
                    journal.path, pause.reason)  # type: ignore[union-attr]
        return True

    async def _connect(self) -> None:
        settings = self.config.live
        api = self.venue.api
        self._resume_venue_pause()
        balances = await self._read_at_start("balances", api.balances)
        self.balances = {b.asset: b for b in balances}
        if self.journal is not None:
            self.journal.check_account(getattr(api, "account_id", ""))
        listed = await self._read_at_start("instruments", api.listed_symbols)
        unlisted = [] if listed is None else [
            f"{iid} (symbol {inst.symbol!r})" for iid, inst in self.kernel.instruments.items() if inst.symbol not in listed
        ]
        if unlisted:  # the user's to fix, as a config error: exit 2
            raise ConfigError(
                f"the venue's {settings.venue} {settings.market} market does not list {', '.join(unlisted)}: check the "
                "symbol in the config (a misspelt or delisted symbol; nothing was sent)"
            )
        margin = await self._read_at_start("margin settings", api.margin_settings)
        differences = [] if margin is None else margin_differences(self.kernel.instruments, margin)
        if differences:  # the user's to fix, as a config error: exit 2
            raise ConfigError(
                "the venue account's margin settings differ from the config (set them at the venue, or the instruments' "
                "leverage, margin_mode and contract_size in the config, to agree; nothing was sent): " + "; ".join(differences)
            )
        self._venue_open = await self._read_at_start("open orders", api.open_orders)
        self.venue.order_lists = {r.client_order_id: r.list_id for r in self._venue_open if r.list_id}
        rest_url, ws_url = settings.endpoints()
        logger.warning(
            "live daemon: environment {} ({} {}), REST {}, user stream {}, account {}{}",
            settings.environment.upper(),
            settings.venue,
            settings.market,
            rest_url,
            ws_url,
            getattr(api, "account_id", "") or "(id not reported)",
            " - DRY RUN, nothing is sent" if self.dry_run else "",
        )
        logger.info("account balances: {}", {b.asset: b.free + b.locked for b in balances})
        self._stream_task = asyncio.create_task(self.stream.run(), name="live:user-stream")
        # The start-up reconciliation reads the venue's state once the subscription is confirmed:
        # a fill made after that read is then on the stream.
        subscribed = asyncio.create_task(self.stream.subscribed.wait())
        await asyncio.wait([self._stream_task, subscribed], timeout=settings.request_timeout, return_when=asyncio.FIRST_COMPLETED)
        subscribed.cancel()
        await asyncio.gather(subscribed, return_exceptions=True)
        if self._stream_task.done():
            self._stream_task.result()  # the stream failed: raise its error
        if not self.stream.subscribed.is_set():
            self.stream.confirmation_late()  # the open orders are queried when it comes
            logger.warning("user stream: subscription not confirmed within {} s; going on (fills may wait for a query)",
                           settings.request_timeout)

    def _keep_venue_pause(self, pause: VenuePause | None) -> None:
        """Store in the journal the pause the venue's rate limit asks for (``None``: over), for a restart to wait out
        (:func:`keep_venue_pause`)."""
        if self.journal is not None:
            keep_venue_pause(self.journal, pause)

    def _resume_venue_pause(self) -> None:
        """Hold the first request until the rate-limit pause (a 429, an IP ban) an earlier session met ends.

        The journal keeps the pause's end (:meth:`_keep_venue_pause`): a daemon restarted during a Binance IP ban
        sent its first request straight into it, and each one prolongs the ban. Wall time, as the venue's
        ``Retry-After``: at most the pause's own length is waited, whatever the clock did meanwhile
        (:meth:`~tradebus.adapters.common.ratelimit.WeightBudget.resume`). A stop ends the wait at once.
        """
        budget = getattr(self.venue.api, "budget", None)
        pause = None if self.journal is None or budget is None else self.journal.venue_pause
        if pause is None:
            return
        wait = budget.resume(pause)
        if wait > 0:
            logger.warning("live start-up: the venue's rate limit paused an earlier session ({}): the first request to "
                           "the venue waits {:.1f} s, until the pause ends", pause.reason, wait)

    @staticmethod
    async def _read_at_start(what: str, read: Callable[[], Awaitable[_T]]) -> _T:
        """``read()``'s answer, a start-up read of the account's ``what``, sent again as long as the venue's rate
        limit refuses it (:class:`RateLimited`: a 429, Binance's 418 IP ban, as a daemon restarted during a ban
        meets): the venue's rate budget holds the next request until the pause the answer asked for ends
        (``Retry-After``), so one request is sent per pause, and a ban is waited out rather than ended on.

        A read left unanswered (:class:`NoAnswer`: a timeout, a 5xx, OKX ``50013`` "System is busy" or ``50026``,
        a passing failure; a read changes nothing at the venue) is sent again after each of
        :data:`START_READ_RETRY_DELAYS`; unanswered still, it raises :class:`NoAnswer` saying so and what to do.
        """
        delays = iter(START_READ_RETRY_DELAYS)
        tries = 0
        while True:
            tries += 1
            try:
                return await read()
            except RateLimited as exc:
                logger.warning("live start-up: reading the account's {} refused by the venue's rate limit; read again "
                               "once the pause it asks for ends: {}", what, exc)
            except NoAnswer as exc:
                delay = next(delays, None)
                if delay is None:
                    raise NoAnswer(
                        f"{exc} (reading the account's {what} went unanswered {tries} times over "
                        f"{sum(START_READ_RETRY_DELAYS):g} s: the venue busy or down for the moment, or the network; "
                        "no order was sent; check the venue's status page and this machine's network (and live.rest_url, if set), then "
                        "start the daemon again)"
                    ) from exc
                logger.warning("live start-up: reading the account's {} went unanswered ({}: {}); read again in {:g} s",
                               what, type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)

    def _recover(self) -> None:
        """Replay the journal (paper daemon), track every order it left open, start the start-up reconciliation.

        From now on a request the venue refuses for the account's credentials stops the daemon
        (:meth:`_credentials_revoked`); before, the account's read at start-up raised it.
        """
        super()._recover()
        self.venue.api.on_credentials_refused = self._credentials_revoked
        kernel = self.kernel
        for order in kernel.orders.open_orders():
            self.venue.track(order)
        self.venue.resume_replaces(kernel.journaled_replaces.values())
        self.venue.resume_swaps(kernel.journaled_swaps.values(), kernel.orders.get)
        for iid in kernel.instruments:
            self._hold(iid, "live start-up: reconciling positions with the venue")
        loop = asyncio.get_running_loop()
        self._startup_task = loop.create_task(self._reconcile_positions(), name="live:reconcile")
        self._startup_task.add_done_callback(self._reconciliation_ended)
        interval = self.config.live.reconcile_interval
        if interval is not None:
            # a venue whose user stream does not push its funding payments has them read every round
            polled = None if self.venue.api.streams_funding else self._catch_up_funding
            self._reconcile_task = loop.create_task(self.reconciler.run(interval, polled), name="live:reconcile-rounds")
            self._reconcile_task.add_done_callback(self._reconciliation_ended)
        if self.journal is not None:
            self._state_task = loop.create_task(self._follow_trading_state(self.journal), name="live:trading-state")
        early, self._heard_early = self._heard_early or [], None
        self._catch_up_funding()
        for hand_on in early:
            hand_on()

    async def _settle_before_start(self) -> bool:
        """With execution algorithms to interrupt, start the strategies once the start-up reconciliation has ended.

        The interrupted algorithm's ``filled`` is then what the venue filled, a child filled while
        the daemon was down included, not the journal's (:mod:`~tradebus.strategies.algo_recovery`),
        and the rest a strategy starts in ``on_start`` is no longer denied by the start-up's holds.
        The strategies are subscribed first: the fills the reconciliation books reach their
        ``on_order_filled`` before their ``on_algo_interrupted`` and ``on_start``. A daemon stopped
        before the reconciliation ended (a signal, its failure) does not start the strategies
        (``False``) and leaves the algorithms to the next restart
        (:meth:`~tradebus.strategies.algo_recovery.AlgoRecovery.postpone`).
        """
        recovery = self.kernel.algo_recovery
        startup = self._startup_task
        if startup is None or not recovery.pending:
            return True
        self.kernel.prepare()
        assert self._stop is not None
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait([startup, stopping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            await asyncio.gather(stopping, return_exceptions=True)
        if startup.done() and not startup.cancelled() and startup.exception() is None:
            return True
        recovery.postpone("the daemon stopped before its start-up reconciliation told what their children filled; "
                          "the strategies are not started")
        return False

    def _catch_up_funding(self, heard: FundingUnattributed | None = None) -> None:
        """Book the funding the venue paid unheard (a restart, a reconnect) or ``heard`` without its instrument, in a task of its own.

        See :meth:`~tradebus.node.reconcile.Reconciler.catch_up_funding`.
        """
        if not self.reconciler.funding_missed(heard):
            return
        if self._funding_task is not None and not self._funding_task.done():
            return  # the running catch-up reads again from the time just noted
        task = asyncio.get_running_loop().create_task(self._funding_after_startup(), name="live:funding-catch-up")
        task.add_done_callback(self._reconciliation_ended)
        self._funding_task = task

    def _reconciliation_ended(self, task: asyncio.Task[None]) -> None:
        """Stop the daemon when a reconciliation task ends with an exception (nothing awaits them while the daemon runs).

        A strategy's hook raising on a fill or an order event the start-up or a round booked (a
        missed fill, a resolved order) stops it with the :class:`~tradebus.errors.StrategyError`;
        any other exception of the start-up, which would leave every instrument held, with that
        exception (:meth:`run` raises it). The journal's failure is already the daemon's.
        """
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None or (self.journal is not None and exc is self.journal.failure):
            return
        failure = strategy_failure(exc, self.clock.now_ns()) if isinstance(exc, Exception) else None
        if failure is not None:
            failure.__cause__ = exc
            self._strategy_failed(failure)
            return
        logger.opt(exception=exc).error("{} failed, stopping the daemon: {}: {}", task.get_name(), type(exc).__name__, exc)
        if self._startup_failure is None:
            self._startup_failure = exc
        self.stop(f"{task.get_name()} failed: {type(exc).__name__}: {exc}")

    async def _follow_trading_state(self, journal: Journal) -> None:
        """Take up the trading state ``live-kill`` or ``live-resume`` store in the journal while this daemon runs.

        Read every :data:`TRADING_STATE_POLL_S` seconds (and before each submit leaves:
        :meth:`_send_refusal`): a kill from another process cancels this daemon's working orders
        within that (it had run on until stopped, and its next store of the risk state wrote its
        ACTIVE over the HALTED).
        """
        while True:
            await asyncio.sleep(TRADING_STATE_POLL_S)
            self._take_up_trading_state(journal)

    def _state_elsewhere(self, journal: Journal) -> tuple[TradingState, str] | None:
        """The manual trading state the journal holds when another process stored it and this daemon has not
        taken it up (``None``: the daemon's own; it stores each of its changes at once)."""
        stored = journal.load_risk_state()
        if stored is None:
            return None
        wanted = (stored.manual_state, stored.manual_reason)
        return None if wanted == self.kernel.risk.manual else wanted

    def _take_up_trading_state(self, journal: Journal) -> None:
        """Set the risk gate's manual state to the one another process stored in the journal, if any (a move
        to a stricter one cancels the working orders it no longer allows)."""
        wanted = self._state_elsewhere(journal)
        if wanted is not None:
            logger.warning("trading state {} set in the journal by another process: {}", *wanted)
            self.kernel.risk.set_state(*wanted)

    def _send_refusal(self, orders: Sequence[Order], replaced: tuple[str, ...]) -> str | None:
        """Why the submit of ``orders`` must not leave now (``None``: it may): the trading state is HALTED (a
        breaker, an operator's ``/halt``, a kill taken up since the gate passed the order), or REDUCING (a breaker,
        ``/reduce``, set since the gate passed it) and one of them is an order that state cancels
        (:meth:`RiskGate.disallowed_orders <tradebus.risk.gate.RiskGate.disallowed_orders>`: it would grow a
        position; a reducing one goes: the working order a cancel-replace replaces, ``replaced``, is not counted
        beside its replacement), or the journal holds a state other than ACTIVE that another process
        (``live-kill``) stored and this daemon has not taken up yet.

        Asked by the venue as each submit leaves (:attr:`LiveVenue.refusal`), in the step of the event loop that
        starts its request: a submit that leaves after ``live-kill`` committed HALTED is withdrawn
        (``OrderRejected``), however recent the last poll. The state is taken up right after; until then a
        REDUCING stored elsewhere withdraws every submit too, as the gate passed it without checking it against
        that state. One read of the journal's risk-state row per submit (a SQLite primary-key read:
        microseconds beside the request's round trip).
        """
        risk = self.kernel.risk
        state = risk.current_state()
        if state is TradingState.HALTED:
            return f"trading state HALTED: {risk.reason}"
        if state is TradingState.REDUCING:
            ids = {order.client_order_id for order in orders}
            if any(order.client_order_id in ids for order in risk.disallowed_orders(replaced)):
                return f"trading state REDUCING: {risk.reason}"
        journal = self.journal
        if journal is None or journal.failure is not None:
            return None
        try:
            wanted = self._state_elsewhere(journal)
        except (sqlite3.Error, DataError) as exc:
            return f"the journal's trading state could not be read ({type(exc).__name__}: {exc})"
        if wanted is None or wanted[0] is TradingState.ACTIVE:
            return None
        asyncio.get_running_loop().call_soon(self._take_up_trading_state, journal)
        return f"trading state {wanted[0]} set in the journal by another process: {wanted[1]}"

    def _resolve_recovered(self, unknown: list[Order]) -> None:
        """Left to the start-up reconciliation (:meth:`~tradebus.node.reconcile.Reconciler.startup`): fills first, then few queries."""
        self._recovered = list(unknown)

    def _feeds_built(self) -> None:
        """A feed yields to the loop after a frame that queued a request, so that a burst of frames does not hold the order."""
        for feed in self.feeds:
            if feed.client is not None:
                feed.client.yield_when = self.venue.requests_queued

    @property
    def external_orders(self) -> list[OrderStatusReport]:
        """The venue's open orders this journal did not place (reported, left alone)."""
        return self.reconciler.external

    def _hold(self, instrument_id: str, reason: str) -> None:
        """Stop (``reason``) or resume (``""``) new orders on ``instrument_id``; published as :class:`InstrumentHeld`."""
        guard = self.guard
        reducing = guard.reducing.pop(instrument_id, None)
        if reason:
            guard.holds[instrument_id] = reason
        elif guard.holds.pop(instrument_id, None) is None and reducing is None:
            return
        now = self.clock.now_ns()
        state = TradingState.HALTED if reason else TradingState.ACTIVE
        self.kernel.bus.publish(InstrumentHeld(instrument_id, reason, now, now, state))

    def _mismatch(self, instrument_id: str, reason: str, difference: float) -> None:
        """A persisting holding mismatch: hold the instrument, or with ``live.on_mismatch: reducing`` let it only reduce.

        The operations layer is told once per mismatch (a new one, or a changed difference),
        not at every reconciliation round that finds it again.
        """
        guard = self.guard
        known = guard.holds.get(instrument_id) or guard.reducing.get(instrument_id, ("",))[0]
        if self.ops is not None and reason != known:
            self.ops.on_reconciliation_mismatch(
                self.kernel.instruments[instrument_id].venue, reason.removeprefix("reconciliation: ")
            )
        if self.config.live.on_mismatch == "hold":
            self._hold(instrument_id, reason)
            return
        guard.holds.pop(instrument_id, None)
        guard.reducing[instrument_id] = (reason, difference)
        logger.warning("{}: REDUCING (live.on_mismatch): only orders reducing its holding here and at the venue pass", instrument_id)
        now = self.clock.now_ns()
        self.kernel.bus.publish(InstrumentHeld(instrument_id, reason, now, now, TradingState.REDUCING))

    async def _reconcile_positions(self) -> None:
        """Reconcile the orders (missed fills, queries), and once the queries are answered compare each holding with the venue's.

        An instrument whose base asset (spot; config ``balances`` plus booked fills) or
        position (perpetual; booked fills) differs from the venue's balance or position by
        more than half a lot stays held with the reason; the others resume. Then the working orders
        the trading state no longer allows (one restored from the journal: HALTED or REDUCING) are
        canceled, and the two-request cancel-replaces the previous process left in flight are finished
        (:meth:`LiveVenue.replace_resumed`).
        """
        await self.reconciler.startup(self._recovered, self._venue_open)
        await self.venue.drain(self.config.live.stop_timeout, "live start-up")
        await self.reconciler.compare_balances(startup=True)
        self.kernel.risk.cancel_disallowed()
        self.venue.replace_resumed()  # once the holds are released: the replacements pass the risk gate

    def _credentials_revoked(self, error: CredentialsRefused) -> None:
        """A request the venue refused for the account's credentials while the daemon runs (a key revoked, its IP
        restriction or permissions changed), for the account itself (blocked, restricted:
        :class:`~tradebus.execution.live.AccountRefused`) or for this machine's clock
        (:class:`~tradebus.execution.live.ClockRefused`): every later one would be too, the stop's cancels included.
        Stop, naming what was refused (:attr:`~tradebus.execution.live.CredentialsRefused.what`); :meth:`run` raises
        it (``tradebus live``: exit 2, as at start-up), the journal kept."""
        what = error.what
        if self._failure is None:
            logger.error("the venue refused {} while the daemon ran; stopping: {}", what, error)
        self._failed("trading", type(error)(f"the venue refused {what} while the daemon ran: {error}"))

    def _on_stream_event(self, event: Any) -> None:
        """Hand an order event of the user stream to the venue; a strategy's hook raising on it stops the daemon.

        The stream is not at fault: the error is not the stream's to classify (a fatal connection
        error, or a reconnect for an ``OSError``), and the stream stays up for the stop's cancels.
        So it does when the journal cannot take the event (the daemon is stopping on that): the
        order's state moved all the same, which tells the stop its cancel was done. One told before the journal was
        replayed waits for it (:meth:`_on_early_event`).
        """
        if self._heard_early is not None:
            self._heard_early.append(functools.partial(self._on_early_event, event))
            return
        try:
            self.venue.emit(event)
        except DataError as error:
            if self.journal is None or error is not self.journal.failure:
                raise
        except Exception as exc:
            failure = strategy_failure(exc, self.clock.now_ns())
            if failure is None:
                raise
            failure.__cause__ = exc
            self._strategy_failed(failure)

    def _on_early_event(self, event: Any) -> None:
        """Hand on an order event the user stream told before the journal was replayed, now that it is.

        Parsed while the journal's orders were unknown: a fill of one of them names no strategy; it is its order's.
        """
        if type(event) is OrderFilled and not event.strategy_id:
            order = self.venue.order(event.client_order_id)
            if order is not None:
                event = msgspec.structs.replace(event, strategy_id=order.strategy_id)
        self._on_stream_event(event)

    async def _funding_after_startup(self) -> None:
        """Catch up the funding once the start-up reconciliation has booked the fills missed while down: a payment made
        after one of them is booked on the position it was made on (a fill booked later with an earlier venue time is
        not taken back)."""
        startup = self._startup_task
        if startup is not None and not startup.done():
            await asyncio.wait([startup])
        await self.reconciler.catch_up_funding(self.config.live.retry_interval)

    def _on_balance(self, balance: AccountBalance | AccountPosition | FundingUnattributed) -> None:
        if self._heard_early is not None:  # before the journal's replay: no payment booked yet, no position
            self._heard_early.append(functools.partial(self._on_balance, balance))
            return
        if isinstance(balance, FundingUnattributed):  # the venue's list of its payments names the instrument
            self._catch_up_funding(balance)
            return
        if isinstance(balance, AccountPosition):
            if not balance.one_way:  # the account switched to hedge mode: one-way orders are refused
                reason = f"user stream: {hedge_mode(balance.instrument_id)}; orders on it stay stopped (switch it back to one-way mode)"
                if self.guard.holds.get(balance.instrument_id) != reason:
                    logger.error(reason)
                    self._hold(balance.instrument_id, reason)
                return
            self.positions[balance.instrument_id] = balance
            logger.info("position {}: {} @ {}", balance.instrument_id, balance.quantity, balance.entry_price)
            return
        self.balances[balance.asset] = balance
        logger.info("balance {}: free {} locked {}", balance.asset, balance.free, balance.locked)

    async def _serve(self, tasks: dict[asyncio.Task[None], Any]) -> BaseException | None:
        """Serve as the paper daemon, and stop as it does for a feed when the user stream fails for good.

        The user stream ends while the daemon runs only by a fatal error (a key refused, a bug in
        a handler); without it no fill or order event is seen, so the daemon stops with the error.
        """
        stream = self._stream_task
        assert stream is not None
        serving = asyncio.create_task(super()._serve(tasks), name="live:serve")
        await asyncio.wait([serving, stream], return_when=asyncio.FIRST_COMPLETED)
        if serving.done() or stream.cancelled():
            return await serving
        exc = stream.exception()
        why = f"user stream {self.stream.name} failed: {exc}" if exc is not None else f"user stream {self.stream.name} ended"
        logger.error("{}; stopping the daemon", why)
        self.stop(why)
        failure = await serving
        return failure if failure is not None else exc

    def _on_stream_reconnect(self) -> None:
        """Events may have been missed while the stream was down: query every open order, catch up the funding paid
        (once the journal is replayed: its orders and payments are those to read from)."""
        if self._heard_early is not None:
            self._heard_early.append(self._on_stream_reconnect)
            return
        for order in self.kernel.orders.open_orders():
            self.kernel.execution.reconcile_order(order.client_order_id)
        self._catch_up_funding()

    async def _shutdown_steps(self, tasks: Any, steps: ShutdownSteps) -> None:
        """Stop the live tasks and the reconciler's checks, then the paper daemon's steps.

        Each step runs whatever an earlier one raised (the open orders are still canceled, the
        strategies stopped, the journal closed and the summary made); the first error is raised after
        the last step, and a later one is logged.
        """
        with steps.step("stopping the reconciliation"):
            for task in (self._startup_task, self._reconcile_task, self._state_task, self._funding_task):
                if task is not None:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
        with steps.step("closing the reconciler"):
            await self.reconciler.aclose()
        self.recorder = None  # the paper shutdown must not close it: :meth:`run` does, after the user stream
        await super()._shutdown_steps(tasks, steps)

    def _stop_deciding(self) -> None:
        """As the paper daemon, but the market data still routed after the stop (the trades a feed held behind a
        trade-id gap, released at its end) is dropped: no strategy decides a real order once the daemon stops.
        A replay of its recording still hands them on at ``run:stop``, as the paper daemon does."""
        self.router.stop_data()
        super()._stop_deciding()

    async def _stop_trading(self, tasks: dict[asyncio.Task[None], Any], steps: ShutdownSteps) -> None:
        """As the paper daemon (the feeds' end, then ``on_stop``: its timers stopped first); then, with
        ``live.cancel_on_stop``, deny every new order and cancel every open order (:meth:`_cancel_all`): nothing is
        left to send one after the cancels."""
        await super()._stop_trading(tasks, steps)
        settings = self.config.live
        if settings.cancel_on_stop and not self.dry_run:
            cut_before = steps.cancelled
            with steps.step("canceling the open orders"):
                self.guard.stopping = "stopping: the daemon cancels its open orders (live.cancel_on_stop)"
                protected = self._positions_with_exits()
                await self._cancel_all(settings.stop_timeout)
                self._warn_unprotected(protected)
            left = [o.client_order_id for o in self.kernel.orders.open_orders()]
            if cut_before is None and steps.cancelled is not None and left:
                logger.error(
                    "stopping: the cancels were cut short (a second signal): {} order(s) not confirmed canceled, of unknown "
                    "state at the venue: {} (the journal holds them open; a restart on it queries them). {}",
                    len(left), left, _CHECK_LEFT_AT_VENUE,
                )
        self._note_orders_left(_left_reason(settings.cancel_on_stop, self.dry_run))

    def _positions_with_exits(self) -> set[str]:
        """The instruments holding a position that a working order would reduce (a stop-loss, a take-profit)."""
        position = self.kernel.portfolio.position
        return {
            o.instrument_id for o in self.kernel.orders.open_orders()
            if (held := position(o.instrument_id)) != 0.0 and (o.side is OrderSide.SELL) == (held > 0.0)
        }

    def _warn_unprotected(self, protected: set[str]) -> None:
        """Warn of each position of ``protected`` the stop's cancels left open with no exit working at the venue."""
        working = {o.instrument_id for o in self.kernel.orders.open_orders()}
        position = self.kernel.portfolio.position
        for iid in sorted(protected - working):
            if position(iid) != 0.0:
                logger.warning("stopping: {} position {} stays open at the venue with no exit working: live.cancel_on_stop "
                               "canceled its exit orders (`tradebus live-kill CONFIG --flatten` closes it)",
                               iid, _number(position(iid)))

    def _note_orders_left(self, why: str) -> None:
        """Log each order still open or unknown here once trading has stopped, alert them to the operator, and list
        them in ``node.json`` (:attr:`LiveSummary.orders_left`); ``why``: why it is left (:func:`_left_reason`).
        Those the stop's queries asked about are listed only (not alerted again): :meth:`_query_left` logged each as its answer says (open or unknown at
        the venue, :attr:`left_at_venue`, and their count, as an ERROR; closed there, but open here once the journal
        failed, as a WARNING)."""
        everything = self.kernel.orders.open_orders()
        self.summary.orders_left = [_order_left(order) for order in everything]
        left = [order for order in everything if order.client_order_id not in self._queried_at_stop]
        for order in left:
            price = "market" if math.isnan(order.price) else _number(order.price)
            if not math.isnan(order.trigger_price):
                price += f" (trigger {_number(order.trigger_price)})"
            logger.warning("stopping: order {} (venue id {}) {} {} {} {} @ {}, filled {}, {}: {}",
                           order.client_order_id, order.venue_order_id or "none", order.instrument_id,
                           order.side.name.lower(), order.order_type.name.lower(), _number(order.quantity), price,
                           _number(order.filled_qty), order.status.name, why)
        if left:
            logger.warning("stopping with {} order(s) left open or of unknown state at the venue (node.json: orders_left). {}",
                           len(left), _CHECK_LEFT_AT_VENUE)
            if self.ops is not None:
                ids = [order.client_order_id for order in left]
                self.ops.on_orders_left_at_venue(f"stopping with {len(ids)} order(s) {why}: {ids}. {_CHECK_LEFT_AT_VENUE}")

    async def _cancel_all(self, timeout: float) -> None:
        """Cancel every open order and wait (up to ``timeout`` s) until none is open.

        An order whose submit is on its way is canceled once its submit has ended (a cancel sent first
        may reach the venue before the order); one opened meanwhile (a bracket's exits once its
        entry fills) is canceled as it opens. Once the journal cannot be written, the cancels go out
        unjournaled (logged): a restart queries every order the journal holds open, so a cancel it
        does not hold loses nothing. The orders still open at the deadline are settled by :meth:`_query_left`.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        canceled: set[str] = set()
        while (open_orders := self.kernel.orders.open_orders()) and loop.time() < deadline:
            self._cancel_due(open_orders, canceled)
            await asyncio.sleep(0.05)
        if self.kernel.orders.open_orders():
            await self._query_left(timeout, canceled)

    def _cancel_due(self, open_orders: list[Order], canceled: set[str]) -> int:
        """Cancel each of ``open_orders`` not in ``canceled`` whose submit has ended, adding it there; how many."""
        kernel, venue, journal = self.kernel, self.venue, self.journal
        due = [
            o for o in open_orders
            if o.client_order_id not in canceled and venue.submit_ended_ns(o.client_order_id) is not None
        ]
        if due:
            logger.info("stopping: canceling {} open order(s)", len(due))
        now = self.clock.now_ns()
        for order in due:
            canceled.add(order.client_order_id)
            try:
                kernel.execution.cancel(CancelOrder(order.strategy_id, order.instrument_id, order.client_order_id, now, now))
            except DataError as error:
                if journal is None or error is not journal.failure:
                    raise
                logger.warning("stopping: cancel of {} sent unjournaled (the journal failed)", order.client_order_id)
                venue.cancel(order)
        return len(due)

    async def _query_left(self, stop_timeout: float, canceled: set[str]) -> None:
        """At the stop's deadline, cancel what could not be yet, then ask the venue about every order still open here
        and log what each is there.

        The clock's timers have stopped, so no cancel timeout queries them. The requests still on their way
        (a submit's or a cancel's, whose answer may take up to ``live.request_timeout``) are awaited first (up to
        that); an order whose submit ended meanwhile (the venue may have taken it) is canceled then, and those
        cancels awaited (up to ``live.request_timeout`` again), so that each query leaves after its cancel ended.
        Each order still open then becomes UNKNOWN and is queried
        (:meth:`~tradebus.execution.engine.ExecutionEngine.time_out`: ``OrderTimedOut`` journaled, the answer
        journaled as ``OrderResolved``), the answers awaited up to ``live.request_timeout``. A closed order is
        logged with its status; one working at the venue, or whose query went unanswered (left UNKNOWN: a
        restart queries it), is logged as an error saying whether its cancel was sent (``canceled``: unconfirmed)
        or not (its submit still on its way), and kept in :attr:`left_at_venue` (:meth:`run` raises
        :class:`~tradebus.errors.OrdersLeftAtVenue`). Once the journal has failed, an answer may be applied only
        in part (it stops at its first event): each order is then logged as its query's answer says. So the stop
        lasts at most ``live.stop_timeout`` plus three times ``live.request_timeout``.
        """
        execution, journal, venue = self.kernel.execution, self.journal, self.venue
        wait = self.config.live.request_timeout
        await venue.drain(wait, "stopping")
        if self._cancel_due(self.kernel.orders.open_orders(), canceled):
            await venue.drain(wait, "stopping, the last cancels")
        left = self.kernel.orders.open_orders()
        # What each query answered, for the log: once the journal has failed, applying an answer stops at its
        # first event (a fill not booked yet), which leaves the order open here whatever the venue said.
        answers: dict[str, OrderStatusReport] = {}
        reconcile = venue.on_answer

        def on_answer(coid: str) -> Any:
            report = venue.answer_held(coid)
            if report is not None:
                answers[coid] = report
            return reconcile(coid) if reconcile is not None else None

        venue.on_answer = on_answer
        venue.last_queries()
        try:
            for order in left:
                coid = order.client_order_id
                reason = (f"no cancel confirmed within live.stop_timeout ({stop_timeout:g} s) of the stop" if coid in canceled
                          else f"its submit still on its way at live.stop_timeout ({stop_timeout:g} s) of the stop: not canceled")
                try:
                    execution.time_out(coid, reason)
                except DataError as error:  # UNKNOWN here, unjournaled: the query still tells what it is
                    if journal is None or error is not journal.failure:
                        raise
                    execution.reconcile_order(coid)
            if left:
                await venue.drain(wait, "stopping, the queries of the orders left")
        finally:
            venue.on_answer = reconcile
        for order in left:
            coid, status, filled = order.client_order_id, order.status, order.filled_qty
            self._queried_at_stop.add(coid)
            done = ("its cancel was sent and not confirmed" if coid in canceled
                    else "no cancel was sent: its submit was still on its way")
            report = answers.get(coid)
            if (journal is not None and journal.failure is not None and order.is_open and report is not None
                    and (report.status not in OPEN_STATUSES or report.filled_qty > order.filled_qty)):
                status, filled = report.status, report.filled_qty
                logger.warning("stopping: order {} ({}): its query's answer not wholly applied here (the journal failed): "
                               "{}, filled {} here; a restart queries it", coid, order.instrument_id, order.status,
                               _number(order.filled_qty))
            if status not in OPEN_STATUSES:
                logger.warning("stopping: order {} ({}): {} at the venue, as its query says", coid, order.instrument_id, status)
            elif status is OrderStatus.UNKNOWN:
                self.left_at_venue[coid] = "unknown"
                logger.error("stopping: order {} ({}): state at the venue unknown: {}, and its query went unanswered "
                             "within {:g} s; journaled UNKNOWN (a restart queries it)", coid, order.instrument_id, done, wait)
            else:
                self.left_at_venue[coid] = "open"
                logger.error("stopping: order {} ({}): open at the venue ({}, filled {} of {}), as its query says: "
                             "{}", coid, order.instrument_id, status, _number(filled), _number(order.quantity), done)
        if self.left_at_venue:
            logger.error("stopping with {}", self._left_at_venue_text())
            if self.ops is not None:
                self.ops.on_orders_left_at_venue(f"stopping with {self._left_at_venue_text()}. {_CHECK_LEFT_AT_VENUE}")

    def _left_at_venue_text(self) -> str:
        """The orders :meth:`_query_left` left open or of unknown state at the venue, for the log and the error."""
        left = self.left_at_venue
        opened = [coid for coid, state in left.items() if state == "open"]
        unknown = [coid for coid, state in left.items() if state == "unknown"]
        return (f"{len(opened)} order(s) open at the venue: {opened if opened else 'none'}; "
                f"{len(unknown)} of unknown state: {unknown if unknown else 'none'}")


def run_live(
    config_path: str | Path,
    out_dir: str | Path | None = None,
    *,
    mainnet: bool = False,
    dry_run: bool = False,
    max_seconds: float | None = None,
    max_messages: int | None = None,
    force: bool = False,
    overrides: Sequence[str] = (),
    environ: dict[str, str] | None = None,
    starting: StartingSignals | None = None,
) -> tuple[NodeSummary, RunResult]:
    """Load a live config, check the environment and keys, run the daemon, write its outputs.

    Outputs are the paper daemon's (``fills.csv``, ``orders.csv``, ``equity.csv``, ... written
    row by row while it runs; ``metrics.json``, ``config.yaml``, ``node.json`` when it stops).
    ``starting``: the signals taken since the command started (:class:`~tradebus.node.starting.StartingSignals`), a
    first one the daemon's stop once it is built.

    Raises
    ------
    ConfigError
        Invalid config, mainnet without both confirmations, a key variable unset, or an
        output directory holding foreign files.
    VenueError
        A feed or the user stream failed fatally.
    """
    from tradebus.reports.writers import RunDirectory

    config = load_live_config(config_path, overrides)
    with naming_config(config_path):
        check_environment(config.live, mainnet)
        check_feed_environment(config)
    keys = ApiKeys.from_env(config.live, environ)
    with naming_config(config_path):
        check_bot_token(config)
        if out_dir is not None:
            check_log_beside_outputs(config, out_dir, "live")
    run_dir = None if out_dir is None else RunDirectory(out_dir, "live", keep=kept_files(config), force=force)
    nodes: list[LiveNode] = []

    async def main() -> NodeSummary:
        # Built on the running loop: the engine's timers need it.
        with naming_config(config_path):
            nodes.append(
                LiveNode(
                    config, keys, dry_run=dry_run, max_seconds=max_seconds, max_messages=max_messages, run_dir=run_dir
                )
            )
        if starting is not None:
            starting.hand_to(nodes[0])
        return await nodes[0].run()

    try:
        try:
            summary = asyncio.run(main())
        except ConfigError as exc:
            if not nodes or exc is not nodes[0].refusal:
                raise
            raise named_refusal(exc, config_path) from None
        finally:
            if starting is not None:
                starting.stopping()
    finally:
        try:
            # As a paper daemon: nothing is written by a daemon that stopped before its outputs began,
            # or whose outputs failed.
            if run_dir is not None and nodes and outputs_to_write(nodes[0]):
                kernel = nodes[0].kernel
                write_outputs(
                    run_dir,
                    kernel.result,
                    kernel.instruments,
                    dump_config(config),
                    {"node.json": nodes[0].summary.to_json()},
                    nodes[0].outputs,
                )
        finally:
            if run_dir is not None:
                run_dir.close()
    return summary, nodes[0].kernel.result


def keep_venue_pause(journal: Journal, pause: VenuePause | None) -> None:
    """Store in ``journal`` the pause the venue's rate limit asked for (a 429, an IP ban; ``None``: over), for the next
    daemon on it to wait out (:meth:`LiveNode._resume_venue_pause`).

    Not once the journal is closed or failed (a daemon stopping on that failure).
    """
    if journal.closed or journal.failure is not None:
        return
    try:
        journal.save_venue_pause(pause)
    except DataError as error:
        if error is not journal.failure:
            raise


def _keep_pauses(api: Any, journal: Journal) -> None:
    """Have the rate budget of ``api`` (a venue's trading API) keep each pause it meets in ``journal``, as a daemon's does."""
    budget = getattr(api, "budget", None)
    if budget is not None:
        budget.on_pause = lambda pause: keep_venue_pause(journal, pause)


#: Rounds of the kill switch: each lists the open orders again and cancels what is still open.
KILL_ROUNDS = 3
#: Seconds between two rounds (a 429's ``Retry-After`` is waited by the rate budget besides).
KILL_ROUND_PAUSE = 0.5


async def kill_switch(config: LiveConfig, keys: ApiKeys, reason: str = "kill switch", *, flatten: bool = False) -> list[str]:
    """Cancel every open order of the account's instruments at the venue and leave the journal HALTED.

    Every order is canceled, the daemon's and any other (the kill switch is for emergencies).
    A cancel that is refused or unanswered (an order filled meanwhile, a 5xx, a 429) does not
    stop the others; the open orders are listed again and what is left canceled, up to
    :data:`KILL_ROUNDS` rounds. With ``flatten``, once no order is open, every position the
    journal holds is sold at market and journaled (:func:`tradebus.node.flatten.flatten`).
    The journal's risk state is set to HALTED with ``reason`` before the first cancel (a daemon
    running on it withdraws every submit leaving after that: :meth:`LiveNode._send_refusal`) and again at the end, whatever the venue answered (a
    daemon started on it trades nothing until ``live-resume``). A rate-limit pause the venue asks for (a 429, an
    IP ban) is kept in the journal as a daemon keeps it (:func:`keep_venue_pause`): the next daemon on it waits it
    out rather than sending into a ban. Returns the client order ids canceled.

    Raises
    ------
    ConfigError
        ``flatten`` without a journal in the config, or with no journal at its path (nothing
        is canceled or sold).
    DataError
        The config's journal was written by another mode, environment or venue account
        (:class:`~tradebus.execution.journal.JournalOwner`; the account id is read from the
        venue first when the journal holds one): nothing is canceled, sold or written.
    OrdersLeftAtVenue
        Orders still open after the last round, or the open orders not readable in it (their
        state unknown), each named where listed; the journal is HALTED all the same and nothing
        was flattened (``tradebus live-kill`` exits 4). With ``flatten``, also a flattening order
        not closed within ``live.stop_timeout`` or placed without an answer, named.

    Without a journal in the config nothing is halted (there is no trading state to store: a
    daemon on that config goes on trading), which is logged; the cancels are the kill.
    """
    from tradebus.node.flatten import flatten as flatten_positions

    if flatten:
        if config.journal is None:
            raise ConfigError("live kill --flatten: the config has no journal holding the positions to flatten")
        if not config.journal.is_file():
            # A new, empty journal would hold no position: nothing sold, the venue's position left open.
            raise ConfigError(
                f"live kill --flatten: no journal at {config.journal}: the positions to flatten are unknown (check the "
                "config's journal); nothing was canceled or sold"
            )
    # The journal of another mode, environment or account is refused before anything is sent.
    journal = None if config.journal is None or not config.journal.is_file() else Journal(config.journal, owner=config.journal_owner())
    canceled: list[str] = []
    left: list[str] | None = None
    listed: list[str] = []  # the open orders of the last round that listed them
    unread = ""
    unflat: list[str] = []  # flattening orders not closed at the venue
    try:
        rest_url, _ = config.live.endpoints()
        api = config.live.account().trading(
            rest_url, keys.key, keys.secret, config.instrument_map(), config.live.request_timeout, **keys.options(config.live)
        )
        try:
            if journal is not None:
                _keep_pauses(api, journal)  # a ban the kill meets: the next daemon on the journal waits it out
            if journal is not None and journal.account:
                await api.balances()  # reads the account id
                journal.check_account(getattr(api, "account_id", ""))
        except BaseException:
            await api.close()
            raise
        try:
            if config.journal is not None:
                # A daemon running on the journal reads it as each order leaves: halted before the first cancel, it
                # sends no new order while the rounds cancel them (written again at the end, whatever happened).
                set_trading_state(config, TradingState.HALTED, reason)
                if journal is None:  # made by that write: it keeps the pauses the rounds meet
                    journal = Journal(config.journal, owner=config.journal_owner())
                    _keep_pauses(api, journal)
            for round_ in range(1, KILL_ROUNDS + 1):
                try:
                    canceled += await api.cancel_all()
                    left = listed = [r.client_order_id for r in await api.open_orders()]
                except (NoAnswer, VenueRejected) as exc:
                    logger.warning("kill switch: round {}: the open orders could not be listed: {}", round_, exc)
                    left, unread = None, str(exc)
                if left == []:
                    break
                if round_ < KILL_ROUNDS:
                    await asyncio.sleep(KILL_ROUND_PAUSE)
            if flatten and left == []:
                assert journal is not None
                _, unflat = await flatten_positions(config, api, journal, config.live.stop_timeout, reason)
        finally:
            await api.close()
            if journal is not None:
                journal.close()
            if config.journal is not None:
                set_trading_state(config, TradingState.HALTED, reason)
    finally:
        if journal is not None:
            journal.close()
    halted = "no journal in the config: nothing HALTED" if config.journal is None else f"the journal {config.journal} is HALTED"
    if left != []:
        if left is None:
            what = (f"the open orders could not be read ({unread}): which are open is unknown"
                    + (f" ({len(listed)} order(s) open when last listed: {listed})" if listed else ""))
        else:
            what = f"{len(left)} order(s) still open at the venue: {left}"
        raise OrdersLeftAtVenue(
            f"kill switch: {len(canceled)} order(s) canceled, but after {KILL_ROUNDS} rounds {what}; {halted}"
            f"{'; nothing was flattened' if flatten else ''}. Check the account and run live-kill again"
        )
    if unflat:
        raise OrdersLeftAtVenue(
            f"kill switch: {len(canceled)} order(s) canceled, but {len(unflat)} flattening order(s) not closed at the venue "
            f"within live.stop_timeout ({config.live.stop_timeout:g} s): {unflat} (open or of unknown state; the next start "
            f"queries them); {halted}. Check the account and run live-kill again"
        )
    if config.journal is None:
        logger.warning("kill switch: {} order(s) canceled; the config has no journal: no trading state stored, a daemon "
                       "on this config is not halted", len(canceled))
    else:
        logger.warning("kill switch: {} order(s) canceled, journal HALTED ({})", len(canceled), reason)
    return canceled


async def venue_account_id(config: LiveConfig, keys: ApiKeys, journal: Journal | None = None) -> str:
    """The id of the venue account ``keys`` open, read with its balances (``""``: the venue reports none).

    ``journal``: keeps the rate-limit pause (a 429, an IP ban) the read meets, as a daemon's journal does.

    Raises
    ------
    VenueError
        The account could not be read.
    """
    rest_url, _ = config.live.endpoints()
    api = config.live.account().trading(
        rest_url, keys.key, keys.secret, config.instrument_map(), config.live.request_timeout, **keys.options(config.live)
    )
    if journal is not None:
        _keep_pauses(api, journal)
    try:
        await api.balances()
        return str(getattr(api, "account_id", ""))
    finally:
        await api.close()


def resume_trading(config: LiveConfig, environ: dict[str, str] | None = None) -> None:
    """``live-resume``: set the config's journal ACTIVE, refusing the journal of another venue account.

    A journal holding a venue account's id (:meth:`~tradebus.execution.journal.Journal.check_account`)
    is checked, as the daemon and the kill switch check it, against the account the keys of the
    environment (``environ``, default ``os.environ``) open, read from the venue before anything is written
    (a rate-limit pause that read meets is kept in the journal, as a daemon keeps it: :func:`keep_venue_pause`).

    Raises
    ------
    ConfigError
        See :func:`set_trading_state`; or the journal holds an account id and the keys are not set.
    DataError
        See :func:`set_trading_state`; or the journal was written for another venue account (names both).
    VenueError
        The journal holds an account id and the venue's account could not be read (nothing is written).
    """

    def account_id(journal: Journal) -> str:
        return asyncio.run(venue_account_id(config, ApiKeys.from_env(config.live, environ), journal))

    set_trading_state(config, TradingState.ACTIVE, "resumed by the operator", account_id=account_id)


def set_trading_state(
    config: LiveConfig, state: TradingState, reason: str, *, account_id: Callable[[Journal], str] | None = None
) -> None:
    """Store the operator's trading state in the config's journal (kept with the breakers' memory).

    ``account_id``, where given, is called with the journal when it holds a venue account's id (to keep there a
    rate-limit pause the read meets), and the journal refused unless it is that account's (the kill switch checks
    it itself before it cancels).

    Raises
    ------
    ConfigError
        The config has no journal, or (resuming) its journal does not exist.
    DataError
        The journal was written by another mode or environment, or for another account than
        ``account_id``'s (nothing is written to it).
    """
    if config.journal is None:
        raise ConfigError("live kill/resume: the config has no journal to hold the trading state")
    if state == TradingState.ACTIVE and not config.journal.is_file():
        # A mistyped path would make a new journal ACTIVE and leave the killed one HALTED.
        raise ConfigError(f"live-resume: no journal at {config.journal}: nothing to resume (check the config's journal)")
    config.journal.parent.mkdir(parents=True, exist_ok=True)
    journal = Journal(config.journal, owner=config.journal_owner())
    try:
        if account_id is not None and journal.account:
            journal.check_account(account_id(journal))
        stored = journal.load_risk_state()
        now = time.time_ns()
        if stored is None:
            stored = BreakerState(ts=now)
        journal.save_risk_state(msgspec.structs.replace(stored, ts=now, manual_state=state, manual_reason=reason))
    finally:
        journal.close()
