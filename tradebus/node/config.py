"""Paper-trading configuration: a YAML file validated by pydantic before any socket is opened.

A paper config has the parts of a backtest :class:`~tradebus.config.RunConfig` that do not
depend on where the data comes from (instruments, strategy, simulated venue, risk limits,
extra features, initial cash, report settings) and replaces its ``data`` section by the
live ``feeds``: which venue, which market, which endpoints, and which channels of which
instruments to subscribe. The same file drives ``tradebus paper`` (live data) and
``tradebus replay`` (a recording of those feeds played back as a backtest).

Channels are the venue's own names, per instrument:

* binance (``market: spot | usdm``): ``trade``, ``aggTrade``, ``bookTicker``, ``depth``,
  ``kline``, ``markPrice`` (every instrument of one Binance feed has the same channels:
  they share one combined-stream connection);
* okx (``market: spot | swap | futures``): ``trades``, ``trades-all``, ``tickers``,
  ``bbo-tbt``, ``books``, ``books5``, ``books-l2-tbt``, ``books50-l2-tbt``, ``funding-rate``,
  ``mark-price``, ``candle<bar>`` (candles live on OKX's business URL: give that ``ws_url``);
* bybit (``market: spot | linear``): ``publicTrade``, ``tickers``, ``orderbook.<depth>``,
  ``kline.<interval>``.

Example::

    instruments:
      - {venue: BINANCE, symbol: BTCUSDT, base: BTC, quote: USDT,
         tick_size: 0.01, lot_size: 1.0e-5, taker_fee: 0.001, maker_fee: 0.001}
    strategy:
      name: tradebus.strategies.tick_ema:TickEmaCross
      instruments: [BTCUSDT.BINANCE]
      params: {fast: 8, slow: 30, quantity: 0.01}
    venue: {fill_on: trades}
    feeds:
      - venue: binance
        market: spot
        subscriptions: {BTCUSDT.BINANCE: [trade, bookTicker, depth]}
        stale_after: 30
    journal: ../runs/paper/journal.sqlite
    record: ../runs/paper/frames.jsonl.gz

Relative paths (``journal``, ``record``) are resolved against the config file's directory.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat, model_validator

from tradebus.adapters.binance.config import DEPTH_SPEEDS as BINANCE_DEPTH_SPEEDS
from tradebus.config import (
    InstrumentConfig,
    ReportConfig,
    StrategyConfig,
    check_starting_balances,
    dump_config,
    load_config,
    parse_config,
)
from tradebus.engine.instrument import Instrument
from tradebus.errors import ConfigError
from tradebus.execution.config import VenueConfig
from tradebus.features.spec import FeatureSpec
from tradebus.ops.config import OpsConfig
from tradebus.risk.config import RiskConfig

__all__ = [
    "BackoffConfig",
    "FeedConfig",
    "PaperConfig",
    "dump_paper_config",
    "load_paper_config",
    "parse_paper_config",
]

FeedVenue = Literal["binance", "okx", "bybit"]

#: Markets per venue.
MARKETS: dict[str, tuple[str, ...]] = {
    "binance": ("spot", "usdm"),
    "okx": ("spot", "swap", "futures"),
    "bybit": ("spot", "linear"),
}

_BINANCE_CHANNELS = frozenset({"trade", "aggTrade", "bookTicker", "depth", "kline", "markPrice"})
_OKX_CHANNELS = frozenset(
    {
        "trades",
        "trades-all",
        "tickers",
        "bbo-tbt",
        "books",
        "books5",
        "books-l2-tbt",
        "books50-l2-tbt",
        "funding-rate",
        "mark-price",
    }
)
_OKX_CANDLE = re.compile(r"^candle\d+[smHDWM](utc)?$")
_BYBIT_CHANNEL = re.compile(
    r"^(publicTrade|tickers|orderbook\.(1|50|200|500|1000)|kline\.(1|3|5|15|30|60|120|240|360|720|D|W|M))$"
)
_BINANCE_SYMBOL = re.compile(r"^[A-Z0-9]+$")
_DEPTH_SPEEDS: dict[tuple[str, str], tuple[str, ...]] = {
    ("binance", market.value): speeds for market, speeds in BINANCE_DEPTH_SPEEDS.items()
}

#: Channels whose messages a fill model needs, per venue and ``VenueConfig.fill_on``.
_FILL_CHANNELS: dict[str, dict[str, tuple[str, ...]]] = {
    "binance": {"trades": ("trade", "aggTrade"), "quotes": ("bookTicker", "depth"), "bars": ("kline",)},
    "okx": {
        "trades": ("trades", "trades-all"),
        "quotes": ("tickers", "bbo-tbt", "books", "books5", "books-l2-tbt", "books50-l2-tbt"),
        "bars": ("candle",),
    },
    "bybit": {"trades": ("publicTrade",), "quotes": ("tickers", "orderbook"), "bars": ("kline",)},
}

#: Channels that maintain an L2 book (an unsynced book blocks orders on its instrument).
BOOK_CHANNELS: dict[str, tuple[str, ...]] = {
    "binance": ("depth",),
    "okx": ("books", "books5", "books-l2-tbt", "books50-l2-tbt"),
    "bybit": ("orderbook",),
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BackoffConfig(_Model):
    """Reconnect delays: capped exponential backoff with full jitter (seconds)."""

    base: PositiveFloat = 0.5
    cap: PositiveFloat = 30.0
    min_delay: float = Field(default=0.05, ge=0.0)

    @model_validator(mode="after")
    def _ordered(self) -> BackoffConfig:
        if self.cap < self.base or self.min_delay > self.cap:
            raise ValueError(f"need min_delay <= cap and base <= cap, got {self.model_dump()}")
        return self


class FeedConfig(_Model):
    """One live market-data connection (see the module docstring for the channel names).

    Parameters
    ----------
    venue
        ``binance``, ``okx`` or ``bybit``.
    market
        The venue's market (binance: ``spot``/``usdm``; okx: ``spot``/``swap``/``futures``;
        bybit: ``spot``/``linear``). It selects the endpoint and parser for Binance and Bybit.
    ws_url, rest_url
        Endpoints; ``None`` uses the venue's production endpoints. For Binance ``ws_url`` is
        the base (``/stream?streams=...`` is appended) and ``rest_url`` serves the depth
        snapshot; for OKX and Bybit ``ws_url`` is the full WebSocket URL.
    subscriptions
        ``instrument_id -> channels``; every instrument must be one of the config's.
    stale_after
        Seconds of silence after which the feed is declared stale: ``FeedStale`` is
        published, orders on its instruments are denied until data flows again, and the
        connection is recycled.
    backoff
        Reconnect delays.
    max_reconnects
        Stop the daemon after this many consecutive failed connection attempts (``None``: never).
    snapshot_fetcher
        Binance only: REST depth snapshots through ``ccxt`` or a plain ``http`` GET.
    depth_speed
        Binance only: update speed of the ``depth`` stream (spot ``100ms`` or ``1000ms``;
        usdm ``0ms``, ``100ms``, ``250ms`` or ``500ms``); ``None``: ``100ms``. A recording
        replays only with the speed it was recorded with.
    book_max_idle
        Book liveness, seconds: when trades or quotes of an instrument keep arriving but its
        L2 book has not changed for this long, the book is declared frozen: orders on the
        instrument are denied (``book unsynced: ...``) and the book is resynced; after such
        a resync, orders stay denied until the book's first live update.
    """

    venue: FeedVenue
    market: str
    ws_url: str | None = None
    rest_url: str | None = None
    subscriptions: dict[str, list[str]] = Field(min_length=1)
    stale_after: PositiveFloat = 30.0
    backoff: BackoffConfig = Field(default_factory=BackoffConfig)
    max_reconnects: int | None = Field(default=None, ge=0)
    snapshot_fetcher: Literal["ccxt", "http"] = "ccxt"
    depth_speed: str | None = None
    book_max_idle: PositiveFloat = 10.0

    @model_validator(mode="after")
    def _check(self) -> FeedConfig:
        markets = MARKETS[self.venue]
        if self.market not in markets:
            raise ValueError(f"market: {self.market!r} is not a {self.venue} market; use one of {list(markets)}")
        if self.depth_speed is not None:
            speeds = _DEPTH_SPEEDS.get((self.venue, self.market))
            if speeds is None:
                raise ValueError(f"depth_speed: only binance feeds have a depth speed, not {self.venue}")
            if self.depth_speed not in speeds:
                raise ValueError(
                    f"depth_speed: {self.depth_speed!r} is not offered on binance {self.market}; "
                    f"use one of {list(speeds)}"
                )
        for iid, channels in self.subscriptions.items():
            if not channels:
                raise ValueError(f"subscriptions.{iid}: give at least one channel")
            if len(set(channels)) != len(channels):
                raise ValueError(f"subscriptions.{iid}: repeated channel in {channels}")
            for channel in channels:
                if not _known_channel(self.venue, channel):
                    raise ValueError(f"subscriptions.{iid}: unknown {self.venue} channel {channel!r}")
            if self.venue == "binance" and "markPrice" in channels and self.market != "usdm":
                raise ValueError(f"subscriptions.{iid}: 'markPrice' exists only for market 'usdm'")
            if self.venue == "binance" and "trade" in channels and "aggTrade" in channels:
                raise ValueError(
                    f"subscriptions.{iid}: 'trade' and 'aggTrade' both deliver every trade, so each trade "
                    "would be counted twice; subscribe one of them"
                )
        if self.venue == "binance":
            sets = {tuple(ch) for ch in self.subscriptions.values()}
            if len(sets) > 1:
                raise ValueError(
                    "subscriptions: every instrument of one binance feed needs the same channels "
                    f"(they share one connection); got {sorted(sets)} - use one feed per channel set"
                )
        return self

    def channels_of(self, instrument_id: str) -> list[str]:
        """The channels subscribed for ``instrument_id`` (empty if none)."""
        return self.subscriptions.get(instrument_id, [])

    def has_book(self, instrument_id: str) -> bool:
        """Whether an L2 book channel is subscribed for ``instrument_id``."""
        prefixes = BOOK_CHANNELS[self.venue]
        return any(ch.split(".")[0] in prefixes for ch in self.channels_of(instrument_id))


def _known_channel(venue: str, channel: str) -> bool:
    if venue == "binance":
        return channel in _BINANCE_CHANNELS
    if venue == "okx":
        return channel in _OKX_CHANNELS or _OKX_CANDLE.match(channel) is not None
    return _BYBIT_CHANNEL.match(channel) is not None


def venue_symbol(feed: FeedConfig, instrument: Instrument | InstrumentConfig) -> str:
    """The symbol the venue's stream uses for ``instrument`` (Bybit linear drops ``-LINEAR``).

    Raises
    ------
    ConfigError
        If the instrument's symbol cannot be a symbol of that venue and market.
    """
    symbol = instrument.symbol
    iid = f"{instrument.symbol}.{instrument.venue}"
    if feed.venue == "binance":
        if not _BINANCE_SYMBOL.match(symbol):
            raise ConfigError(f"feed binance: instrument {iid}: symbol must be upper-case alphanumeric like 'BTCUSDT'")
        return symbol
    if feed.venue == "bybit" and feed.market == "linear":
        if not symbol.endswith("-LINEAR"):
            raise ConfigError(
                f"feed bybit linear: instrument {iid}: symbol must end with '-LINEAR' (e.g. BTCUSDT-LINEAR)"
            )
        return symbol[: -len("-LINEAR")]
    return symbol


class PaperConfig(_Model):
    """A paper-trading run: the backtest run parts plus live feeds, journal and recorder.

    Parameters
    ----------
    instruments, strategy, venue, risk, features, initial_cash, balances, report
        As in :class:`~tradebus.config.RunConfig`.
    feeds
        Live market-data connections.
    journal
        SQLite journal of orders and fills; a restarted daemon resumes from it (``None``:
        no journal, nothing survives a restart).
    journal_sync
        SQLite ``synchronous`` of the journal: ``NORMAL`` survives a process crash (the
        default for paper trading), ``FULL`` also a power loss, at ~1 fsync per entry.
    record
        Record every raw frame (and REST snapshot) with its receive time to this gzip JSONL
        file, for ``tradebus replay`` (``None``: no recording).
    warm_up
        Compile or load every feature kernel before subscribing (keeps the first events fast).
    ops
        Metrics and health server, Telegram alerts and control, log file
        (:class:`~tradebus.ops.config.OpsConfig`; ``None``: none of them).
    """

    instruments: list[InstrumentConfig] = Field(min_length=1)
    strategy: StrategyConfig
    venue: VenueConfig = Field(default_factory=lambda: VenueConfig(fill_on="trades"))
    risk: RiskConfig = Field(default_factory=RiskConfig)
    features: list[FeatureSpec] = Field(default_factory=list)
    initial_cash: PositiveFloat = 100_000.0
    balances: dict[str, NonNegativeFloat] | None = None
    report: ReportConfig = Field(default_factory=ReportConfig)
    feeds: list[FeedConfig] = Field(min_length=1)
    journal: Path | None = None
    journal_sync: Literal["FULL", "NORMAL"] = "NORMAL"
    record: Path | None = None
    warm_up: bool = True
    ops: OpsConfig | None = None

    @model_validator(mode="after")
    def _cross_check(self) -> PaperConfig:
        check_starting_balances(self)
        by_id = {i.instrument_id: i for i in self.instruments}
        if len(by_id) != len(self.instruments):
            raise ValueError(f"instruments: duplicate instrument ids in {[i.instrument_id for i in self.instruments]}")
        for n, iid in enumerate(self.strategy.instruments):
            if iid not in by_id:
                raise ValueError(f"strategy.instruments.{n}: {iid!r} is not one of the instruments {list(by_id)}")
        fed: dict[str, int] = {}
        for n, feed in enumerate(self.feeds):
            venues = set()
            for iid in feed.subscriptions:
                inst = by_id.get(iid)
                if inst is None:
                    raise ValueError(f"feeds.{n}.subscriptions: {iid!r} is not one of the instruments {list(by_id)}")
                if iid in fed:
                    raise ValueError(f"feeds.{n}.subscriptions: {iid!r} is already fed by feeds.{fed[iid]}")
                fed[iid] = n
                venues.add(inst.venue)
                try:
                    venue_symbol(feed, inst)
                except ConfigError as exc:
                    raise ValueError(f"feeds.{n}.subscriptions: {exc}") from None
            if len(venues) > 1:
                raise ValueError(
                    f"feeds.{n}: the instruments of one feed must share one venue name, got {sorted(venues)}"
                )
        fill_on = self.venue.fill_on
        for iid in self.strategy.instruments:
            if iid not in fed:
                raise ValueError(f"strategy.instruments: {iid!r} is traded but no feed subscribes to it")
            feed = self.feeds[fed[iid]]
            wanted = _FILL_CHANNELS[feed.venue][fill_on]
            if not any(ch.split(".")[0].startswith(wanted) for ch in feed.channels_of(iid)):
                raise ValueError(
                    f"venue.fill_on: {fill_on!r} needs one of the {feed.venue} channels {list(wanted)} "
                    f"for {iid} in feeds.{fed[iid]}.subscriptions"
                )
        return self

    def instrument_map(self) -> dict[str, Instrument]:
        """``instrument_id -> Instrument`` in config order."""
        return {i.instrument_id: i.to_instrument() for i in self.instruments}

    def data_kinds(self) -> dict[str, set[str]]:
        """``instrument_id -> {"trades", "quotes", "bars"}``: what the feeds' channels deliver."""
        kinds: dict[str, set[str]] = {}
        for feed in self.feeds:
            for iid, channels in feed.subscriptions.items():
                names = [ch.split(".")[0] for ch in channels]
                kinds[iid] = {
                    kind
                    for kind, wanted in _FILL_CHANNELS[feed.venue].items()
                    if any(name.startswith(wanted) for name in names)
                }
        return kinds

    def resolve_paths(self, base: Path) -> PaperConfig:
        """A copy with ``journal`` and ``record`` made absolute against ``base``."""

        def absolute(path: Path | None) -> Path | None:
            return None if path is None else (path if path.is_absolute() else (base / path)).resolve()

        update: dict[str, Any] = {"journal": absolute(self.journal), "record": absolute(self.record)}
        if self.ops is not None and self.ops.log.file is not None:
            update["ops"] = self.ops.model_copy(
                update={"log": self.ops.log.model_copy(update={"file": absolute(self.ops.log.file)})}
            )
        return self.model_copy(update=update)


def parse_paper_config(data: Any, source: str = "<config>", base: Path | None = None) -> PaperConfig:
    """Validate a paper config mapping (parsed YAML) into a :class:`PaperConfig`.

    The same validation as a backtest config (:func:`tradebus.config.parse_config`):
    strategy parameters against the strategy class and its instruments, relative
    paths resolved against ``base``.

    Raises
    ------
    ConfigError
        Naming ``source`` and the field path of every problem.
    """
    return parse_config(data, source, base, model=PaperConfig)


def load_paper_config(path: str | Path, overrides: Sequence[str] = ()) -> PaperConfig:
    """Read and validate a YAML paper config (``overrides`` as in :func:`tradebus.config.apply_overrides`).

    Raises
    ------
    ConfigError
        Missing or unreadable file, invalid YAML, or any invalid field (named with its path).
    """
    return load_config(path, model=PaperConfig, overrides=overrides)


def dump_paper_config(config: PaperConfig) -> str:
    """The resolved config as YAML text (defaults filled in, stable key order)."""
    return dump_config(config)
