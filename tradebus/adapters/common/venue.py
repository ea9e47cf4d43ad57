"""What a venue package gives the rest of tradebus: one :class:`VenueAdapter` (its ``ADAPTER``).

The node, the paper config and the playback ask :data:`tradebus.adapters.registry.VENUES`
for the adapter of a feed's venue name and never name a venue themselves. A venue package
has the same modules as every other (``config.py``, ``schemas.py``, ``parse.py``,
``sync.py``, ``client.py``, ``instruments.py``, ``emulator.py``) and exports ``ADAPTER`` from
its ``__init__.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple

from tradebus.engine.instrument import CloseFee, Instrument, MarginTier
from tradebus.execution.client_ids import ClientIdRule

if TYPE_CHECKING:
    from tradebus.adapters.common.feed import FeedConfig, FeedFactory, FeedOptions
    from tradebus.adapters.common.local_server import VenueProtocol

__all__ = ["EmulatorFactory", "LiveAccount", "MarginTiersLoader", "RestKlines", "VenueAdapter", "lazy_trading"]

#: ``(frames, rest_snapshot, futures) -> protocol``: the local public-stream emulator of a recording.
EmulatorFactory = Callable[[Sequence[tuple[int, str]], "str | None", bool], "VenueProtocol"]

#: ``path -> symbol -> margin tiers`` of a saved margin tiers REST response, keyed by the symbol its
#: venue's ``load_instruments`` gives the instrument (its ``instruments.load_margin_tiers``).
MarginTiersLoader = Callable[[str | Path], dict[str, tuple[MarginTier, ...]]]


class RestKlines(NamedTuple):
    """Where a feed's market serves its REST klines: a ccxt exchange (``fetch_ohlcv``) and its endpoint.

    Attributes
    ----------
    exchange_id
        The ccxt exchange id of the feed's market (``binance``, ``binanceusdm``, ``okx`` ...).
    api_base
        The REST base the feed is configured with (its ``rest_url``), ``None``: the venue's own.
    options
        ccxt ``options`` (the market types to load, so only the feed's market is asked for).
    """

    exchange_id: str
    api_base: str | None
    options: dict[str, object]


def _never(raw: str) -> bool:
    return False


def _nothing() -> None:
    return None


def lazy_trading(module: str, class_name: str) -> Callable[..., Any]:
    """A :attr:`LiveAccount.trading` factory of ``module``'s ``class_name``, built with the standard arguments.

    The module (and with it ccxt) is imported only when a live run builds its account.
    """

    def make(
        rest_url: str, api_key: Any, api_secret: Any, instruments: dict[str, Instrument], timeout: float, **_: Any
    ) -> Any:
        return getattr(import_module(module), class_name)(rest_url, api_key, api_secret, instruments, timeout)

    return make


@dataclass(frozen=True)
class LiveAccount:
    """What a venue package gives the live daemon (:mod:`tradebus.node.live`).

    Attributes
    ----------
    endpoints
        ``"testnet" | "mainnet" -> (REST base URL, user-stream WebSocket URL)``.
    trading
        ``(rest_url, api_key, api_secret, instruments, timeout) ->`` the account's
        :class:`~tradebus.execution.live.TradingApi` (its ``trading.py``).
    user_stream
        ``(ws_url, api_key, api_secret, instruments, lookup, sink, on_balance, on_reconnect) ->``
        the account's private-stream client (a ``WsClient`` of its ``user_stream.py``).
        Both factories also take the keywords ``passphrase`` (a ``SecretStr`` or ``None``)
        and ``environment`` (``testnet`` | ``mainnet``), and ``user_stream`` ``rest_url`` (the
        account's REST base: listen-key streams), ``timeout`` (``live.request_timeout``, seconds: the
        stream's own REST requests, a listen key's), ``trading`` (the account's trading API, which a stream tells
        what only it hears: Binance spot's first fills, which free room in the account's order limits) and
        ``by_venue_id`` (``(instrument id, venue order id) ->`` the open order, or ``None``: Binance spot's stream finds
        so an order an amend at the venue renamed), which a venue may ignore.
    passphrase
        Whether the venue's keys have a passphrase (OKX).
    mainnet_domains
        DNS domains of the venue's real-money hosts (``binance.com``: ``api1.binance.com``,
        ``fapi.binance.com`` ...): an endpoint override on any host in them, other than the
        testnet's own, is mainnet.
    other_hosts
        ``host -> what it is`` for hosts in :attr:`mainnet_domains` that are neither real money
        nor the testnet (Bybit's demo trading): an endpoint override on one is refused, saying so.
    fee_assets
        Assets the venue may charge fees in that no instrument trades (Binance spot and USD-M:
        ``BNB``, its fee discount): a live config may declare their ``balances``, and the
        reconciliation compares them with the venue's (also on an account of perpetuals only).
    """

    endpoints: Mapping[str, tuple[str, str]]
    trading: Callable[..., Any]
    user_stream: Callable[..., Any]
    passphrase: bool = False
    mainnet_domains: tuple[str, ...] = ()
    other_hosts: Mapping[str, str] = field(default_factory=dict)
    fee_assets: tuple[str, ...] = ()


@dataclass(frozen=True)
class VenueAdapter:
    """The objects of one venue package.

    Attributes
    ----------
    name
        The feed config's ``venue`` value (``binance``).
    markets
        The venue's markets (a feed's ``market``).
    book_channels
        Channel prefixes that maintain an L2 book.
    fill_channels
        ``"trades" | "quotes" | "bars" -> channel prefixes`` delivering that kind of data.
    known_channel
        Whether a channel name is one of the venue's.
    channel_forms
        The venue's channels as a config writes them (``kline_<interval>``), named by the error of a channel
        that is none of them (``CHANNEL_FORMS``).
    feed_options
        The venue's own feed keys (a :class:`~tradebus.adapters.common.feed.FeedOptions`
        model), or ``None`` when a feed of the venue takes only the common keys.
    check_feed
        Venue-specific checks of a feed config (raises ``ValueError``).
    stream_symbol
        ``(market, symbol, instrument_id) -> the symbol on the venue's streams`` (raises ``ConfigError``).
    feed
        The data-client factory (the :class:`~tradebus.adapters.common.feed.Feed` of its ``client.py``).
    load_instruments
        ``(path, market) -> instrument_id -> Instrument`` from a saved instruments REST response
        (fees are not in it: every instrument has fees 0).
    load_margin_tiers
        The venue's perpetuals' maintenance tiers from a saved REST response
        (:data:`MarginTiersLoader`; ``None``: the venue has no loader).
    emulator
        The local public-stream emulator serving a recording (:class:`EmulatorFactory`).
    rest_klines
        ``feed -> where its market's REST klines are`` (:class:`RestKlines`): a restarted paper
        daemon prices the hours of borrowing interest it missed with them.
    bar_interval
        ``channel -> the fixed interval (ns) of its bars`` (``bar_interval``): ``None`` for a channel of no
        bars and for bars of calendar months or years, whose length varies.
    is_snapshot_line
        Recorder/playback hook: whether a raw line of a single-connection capture is a REST
        book snapshot (replayed as connection ``rest:<symbol>``).
    client_id_rule
        The form of a client order id the venue takes (``CLIENT_ID_RULE``): an order whose id
        breaks it is denied before it is sent (:mod:`tradebus.execution.client_ids`).
    warm_up
        Compiles (or loads from the on-disk cache) the venue's own Numba kernels of its book path, which
        :func:`tradebus.adapters.common.book.warm_up` does not know (:func:`tradebus.adapters.registry.warm_up`;
        does nothing for a venue whose books run on the common kernels only).
    maintenance_close_fee
        The fee to close a perpetual that the venue's maintenance margin counts
        (``MAINTENANCE_CLOSE_FEE``, :class:`~tradebus.engine.instrument.CloseFee`; none by default):
        a backtest's perpetuals of the venue take it (:func:`tradebus.adapters.registry.maintenance_close_fee`).
    instrument_venues
        The venue names of the venue's instrument ids (``INSTRUMENT_VENUES``: ``OKX`` in
        ``BTC-USDT.OKX``), which tell a backtest's instruments of this venue.
    """

    name: str
    markets: tuple[str, ...]
    book_channels: tuple[str, ...]
    fill_channels: Mapping[str, tuple[str, ...]]
    known_channel: Callable[[str], bool]
    channel_forms: tuple[str, ...]
    feed_options: type[FeedOptions] | None
    check_feed: Callable[[FeedConfig], None]
    stream_symbol: Callable[[str, str, str], str]
    feed: FeedFactory
    load_instruments: Callable[[str | Path, str], dict[str, Instrument]]
    emulator: EmulatorFactory
    rest_klines: Callable[[FeedConfig], RestKlines]
    bar_interval: Callable[[str], int | None]
    is_snapshot_line: Callable[[str], bool] = _never
    load_margin_tiers: MarginTiersLoader | None = None
    client_id_rule: ClientIdRule | None = None
    instrument_venues: tuple[str, ...] = ()
    maintenance_close_fee: CloseFee = CloseFee.NONE
    #: Live trading (``None``: the venue has market data only so far).
    live: LiveAccount | None = None
    #: Live trading of the venue's USDT-margined perpetuals (``None``: not yet).
    live_perpetual: LiveAccount | None = None
    warm_up: Callable[[], None] = _nothing

    @classmethod
    def from_config(
        cls,
        name: str,
        config: ModuleType,
        feed: FeedFactory,
        load_instruments: Callable[[str | Path, str], dict[str, Instrument]],
        emulator: EmulatorFactory,
        is_snapshot_line: Callable[[str], bool] = _never,
        live: LiveAccount | None = None,
        live_perpetual: LiveAccount | None = None,
        load_margin_tiers: MarginTiersLoader | None = None,
        warm_up: Callable[[], None] = _nothing,
    ) -> VenueAdapter:
        """The adapter whose feed rules are the venue ``config`` module's (``FEED_MARKETS``,
        ``BOOK_CHANNELS``, ``FILL_CHANNELS``, ``CHANNEL_FORMS``, ``FEED_OPTIONS``, ``known_channel``, ``check_feed``,
        ``stream_symbol``, ``rest_klines``, ``bar_interval``, ``CLIENT_ID_RULE``, ``INSTRUMENT_VENUES``, ``MAINTENANCE_CLOSE_FEE``)."""
        return cls(
            name=name,
            markets=config.FEED_MARKETS,
            book_channels=config.BOOK_CHANNELS,
            fill_channels=config.FILL_CHANNELS,
            known_channel=config.known_channel,
            channel_forms=config.CHANNEL_FORMS,
            feed_options=config.FEED_OPTIONS,
            check_feed=config.check_feed,
            stream_symbol=config.stream_symbol,
            feed=feed,
            load_instruments=load_instruments,
            emulator=emulator,
            rest_klines=config.rest_klines,
            bar_interval=config.bar_interval,
            is_snapshot_line=is_snapshot_line,
            load_margin_tiers=load_margin_tiers,
            client_id_rule=config.CLIENT_ID_RULE,
            instrument_venues=config.INSTRUMENT_VENUES,
            maintenance_close_fee=config.MAINTENANCE_CLOSE_FEE,
            live=live,
            live_perpetual=live_perpetual,
            warm_up=warm_up,
        )
