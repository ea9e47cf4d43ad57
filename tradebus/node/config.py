"""Paper-trading configuration: a YAML file validated by pydantic before any socket is opened.

A paper config has the parts of a backtest :class:`~tradebus.config.RunConfig` that do not
depend on where the data comes from (instruments, strategy, simulated venue, risk limits,
extra features, initial cash, report settings) and replaces its ``data`` section by the
live ``feeds``: which venue, which market, which endpoints, and which channels of which
instruments to subscribe. The same file drives ``tradebus paper`` (live data) and
``tradebus replay`` (a recording of those feeds played back as a backtest).

Channels are the venue's own names, per instrument. Which venues, markets and channels
exist is the venue packages' business (:mod:`tradebus.adapters.registry`; the channel
lists are in each venue's ``config.py``):

* binance (``market: spot | usdm``): ``trade``, ``aggTrade``, ``bookTicker``, ``depth``,
  ``kline_<interval>`` (``kline`` is ``kline_1m``), ``markPrice`` (every instrument of one
  Binance feed has the same channels: they share one combined-stream connection);
* okx (``market: spot | swap | futures``): ``trades``, ``trades-all``, ``tickers``,
  ``bbo-tbt``, ``books``, ``books5``, ``books-l2-tbt``, ``books50-l2-tbt``, ``funding-rate``,
  ``mark-price``, ``candle<bar>`` (``trades-all`` and candles live on OKX's business URL
  ``/ws/v5/business``, the others on ``/ws/v5/public``: a feed's ``ws_url`` must serve all its
  channels; ``trades`` and ``trades-all`` together would count each trade twice and are refused);
* bybit (``market: spot | linear``): ``publicTrade``, ``tickers``, ``orderbook.<depth>``,
  ``kline.<interval>``.

A bar stream's interval is part of its channel name, as the venue writes it: ``kline_1h``
(Binance), ``candle1H`` (OKX), ``kline.60`` (Bybit); an interval the venue does not offer
is a config error. Its bars are delivered once closed, stamped at their close.

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

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from tradebus.adapters.common.feed import BackoffConfig, FeedConfig, venue_symbol
from tradebus.adapters.registry import VENUES, client_id_rules
from tradebus.execution.client_ids import ClientIdRule
from tradebus.execution.journal import SQLITE_COMPANIONS, JournalOwner
from tradebus.config import RunBase, TradeBarsConfig, dump_config, load_config, parse_config, strategy_entries
from tradebus.config.base import FilePath, resolve_path
from tradebus.config.run import check_fill_model_settings
from tradebus.errors import ConfigError
from tradebus.execution.config import VenueConfig
from tradebus.ops.config import OpsConfig
from tradebus.ops.logs import log_directory_problem, taken_by_retention

__all__ = [
    "BackoffConfig",
    "FeedConfig",
    "PaperConfig",
    "dump_paper_config",
    "load_paper_config",
    "parse_paper_config",
]

class PaperConfig(RunBase):
    """A paper-trading run: the backtest run parts plus live feeds, journal and recorder.

    Parameters
    ----------
    instruments, strategy, strategies, venue, risk, features, initial_cash, balances, report
        As in :class:`~tradebus.config.RunBase` (``venue.fill_on`` defaults to ``trades`` here, also in a
        ``venue:`` that sets other keys only).
    feeds
        Live market-data connections.
    bars
        ``instrument_id -> {mode: time, interval: 1m}``: bars built in the run from the
        instrument's trades (a feed must subscribe to its trades), delivered to ``on_bar``
        (:class:`~tradebus.config.TradeBarsConfig`).
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

    venue: VenueConfig = Field(default_factory=lambda: VenueConfig(fill_on="trades"))
    feeds: list[FeedConfig] = Field(min_length=1)
    bars: dict[str, TradeBarsConfig] = Field(default_factory=dict)
    journal: FilePath | None = None
    journal_sync: Literal["FULL", "NORMAL"] = "NORMAL"
    record: FilePath | None = None
    warm_up: bool = True
    ops: OpsConfig | None = None
    #: Whether the simulated venue fills the orders on the feeds' data (``venue.fill_on`` must then name a kind
    #: of data each traded instrument's feed subscribes); a live config's venue fills them itself.
    fills_on_feeds: ClassVar[bool] = True

    @model_validator(mode="after")
    def _cross_check(self) -> PaperConfig:
        if "fill_on" not in self.venue.model_fields_set:  # a venue: of fees only keeps the paper default
            object.__setattr__(self, "venue", self.venue.model_copy(update={"fill_on": "trades"}))
            if self.fills_on_feeds:  # checked against the backtest default, bars, before: a bar_path would be ignored
                check_fill_model_settings(self.venue)
        by_id = {i.instrument_id: i for i in self.instruments}
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
                books = [ch for ch in feed.channels_of(iid) if ch.split(".")[0] in VENUES[feed.venue].book_channels]
                if len(books) > 1:
                    raise ValueError(
                        f"feeds.{n}.subscriptions: {iid!r} subscribes two book channels, {books[0]!r} and "
                        f"{books[1]!r}: an instrument has one book (its BookSnapshot and BookDelta messages, "
                        f"cache.book, the quotes taken from it), which two books of other depths would interleave; "
                        f"subscribe one of them"
                    )
                try:
                    venue_symbol(feed, inst)
                except ConfigError as exc:
                    raise ValueError(f"feeds.{n}.subscriptions: {exc}") from None
            if len(venues) > 1:
                raise ValueError(
                    f"feeds.{n}: the instruments of one feed must share one venue name, got {sorted(venues)}"
                )
        kinds = self.data_kinds()
        for iid in self.bars:
            if "trades" not in kinds.get(iid, set()):
                raise ValueError(f"bars.{iid}: bars are built from trades, but no feed subscribes to {iid}'s trades")
            feed = self.feeds[fed[iid]]
            bar_channels = VENUES[feed.venue].fill_channels["bars"]
            streams = [ch for ch in feed.channels_of(iid) if ch.split(".")[0].startswith(bar_channels)]
            if streams:
                raise ValueError(
                    f"bars.{iid}: {iid} already has a bar stream (feeds.{fed[iid]}: {streams[0]!r}); "
                    "its bars and the ones built from trades would make one interleaved series"
                )
        fill_on = self.venue.fill_on
        if fill_on == "book" and self.fills_on_feeds:  # the paper venue matches trades, quotes or bars; the L2-book venue is a backtest's
            raise ValueError(
                "venue.fill_on: 'book' is for backtests of recorded books; a paper venue fills on 'trades', 'quotes' or 'bars'"
            )
        for iid in dict.fromkeys(i for _, e in strategy_entries(self) for i in e.instruments):
            if iid not in fed:
                raise ValueError(f"strategy.instruments: {iid!r} is traded but no feed subscribes to it")
            if not self.fills_on_feeds:
                continue
            feed = self.feeds[fed[iid]]
            wanted = VENUES[feed.venue].fill_channels[fill_on]
            if not any(ch.split(".")[0].startswith(wanted) for ch in feed.channels_of(iid)):
                raise ValueError(
                    f"venue.fill_on: {fill_on!r} needs one of the {feed.venue} channels {list(wanted)} "
                    f"for {iid} in feeds.{fed[iid]}.subscriptions"
                )
        why = self._path_problem()
        if why is not None:
            raise ValueError(why)
        return self

    def _path_problem(self) -> str | None:
        """Why the files of ``journal``, ``record`` and ``ops.log.file`` cannot be kept as they stand, or ``None``."""
        log = self.ops.log if self.ops is not None else None
        return log_directory_problem(log) or self._taken_by_log_retention() or self._one_file_twice()

    def _one_file_twice(self) -> str | None:
        """Why two of ``journal``, ``record`` and ``ops.log.file`` name one file (the paths as they stand), or ``None``.

        The daemon would append its frames (or log lines) into the SQLite journal, or its log lines into the
        recording, and neither would read back.
        """
        log = None if self.ops is None else self.ops.log.file
        named: dict[str, str] = {}
        for field, path in (("journal", self.journal), ("record", self.record), ("ops.log.file", log)):
            if path is None:
                continue
            key = os.path.normpath(path)
            if key in named:
                return (
                    f"{named[key]} and {field}: both name {path}; one file cannot hold both (the daemon would write "
                    f"each into the other's): give each a file of its own"
                )
            named[key] = field
        return None

    def _taken_by_log_retention(self) -> str | None:
        """Why the log's retention would delete ``journal`` (or one of the files SQLite keeps beside it) or ``record``
        (the paths as they stand), or ``None``."""
        log = None if self.ops is None else self.ops.log
        if log is None or log.file is None:
            return None
        for field, path, ends in (("journal", self.journal, ("", *SQLITE_COMPANIONS)), ("record", self.record, ("",))):
            if path is None:
                continue
            names = [Path(f"{path}{end}") for end in ends]
            taken = next((name for name in names if taken_by_retention(log, name)), None)
            if taken is not None:
                kept = "" if taken == path else " (a file SQLite keeps beside the journal)"
                return (
                    f"ops.log.file: {log.file} and {field}: {path}: loguru counts {taken.name}{kept} as one of the "
                    f"log's own (rotated) files, and its retention would delete it; give the log file a name of its "
                    f"own, e.g. {log.file.name}.log"
                )
        return None

    def data_kinds(self) -> dict[str, set[str]]:
        """``instrument_id -> {"trades", "quotes", "bars", "book"}``: what the feeds' channels deliver."""
        kinds: dict[str, set[str]] = {}
        for feed in self.feeds:
            for iid, channels in feed.subscriptions.items():
                names = [ch.split(".")[0] for ch in channels]
                kinds[iid] = {
                    kind
                    for kind, wanted in VENUES[feed.venue].fill_channels.items()
                    if any(name.startswith(wanted) for name in names)
                }
                if iid in self.bars and "trades" in kinds[iid]:
                    kinds[iid].add("bars")
                if feed.has_book(iid):
                    kinds[iid].add("book")
        return kinds

    def bar_intervals(self) -> dict[str, int | None]:
        """``instrument_id -> the fixed interval (ns) of the bars its feed streams``, as the channel names it.

        ``kline_1m`` (Binance), ``candle1H`` (OKX), ``kline.60`` (Bybit): what the daemon's bars last from the
        first one on, so a perpetual's funding in a gap of them is told before two adjacent bars were seen,
        after a restart too (:meth:`Kernel.bar_intervals <tradebus.engine.kernel.Kernel.bar_intervals>`).
        Bars of calendar months or years are not listed (their length is learnt from their spacing); bars
        built from trades (``bars``) neither: they are not matched by the venue.
        """
        out: dict[str, int | None] = {}
        for feed in self.feeds:
            bar_interval = VENUES[feed.venue].bar_interval
            for iid, channels in feed.subscriptions.items():
                found = [n for n in map(bar_interval, channels) if n is not None]
                if found:
                    out[iid] = min(found)
        return out

    def journal_owner(self) -> JournalOwner:
        """What the journal of a run of this config is written by: a paper run of its feeds' venues and markets."""
        venues = ",".join(sorted({feed.venue for feed in self.feeds}))
        markets = ",".join(sorted({feed.market for feed in self.feeds}))
        return JournalOwner("paper", venues, markets, "simulated")

    def client_id_rules(self) -> dict[str, ClientIdRule]:
        """``instrument_id -> the client order id rule of the venue its orders go to``: here the venue of the
        feed that subscribes it, which the paper venue stands in for."""
        return client_id_rules(self.instrument_map().values(), self.feeds)

    def resolve_paths(self, base: Path) -> PaperConfig:
        """A copy with the venue's paths, ``journal`` and ``record`` made absolute against ``base``."""
        config = super().resolve_paths(base)
        update: dict[str, Any] = {"journal": resolve_path(self.journal, base), "record": resolve_path(self.record, base)}
        if self.ops is not None and self.ops.log.file is not None:
            update["ops"] = self.ops.model_copy(
                update={"log": self.ops.log.model_copy(update={"file": resolve_path(self.ops.log.file, base)})}
            )
        config = config.model_copy(update=update)
        # Checked at validation as written; one path relative and the other absolute meet only resolved.
        why = config._path_problem()
        if why is not None:
            raise ConfigError(why)
        return config


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


@contextlib.contextmanager
def naming_config(path: str | Path) -> Iterator[None]:
    """Have a config's refusal raised in the body (a :class:`~tradebus.errors.ConfigError`) name the config file
    ``path`` first, as a backtest's do (:func:`named_refusal`).

    For the refusals of a daemon or replay once its config is loaded (:func:`load_paper_config` names the file).
    """
    try:
        yield
    except ConfigError as exc:
        named = named_refusal(exc, path)
        if named is exc:
            raise
        raise named from exc.__cause__


def named_refusal(exc: ConfigError, path: str | Path) -> ConfigError:
    """``exc`` naming the config file ``path`` first: itself if it names it already (or is a subclass's), else a new
    :class:`~tradebus.errors.ConfigError`."""
    if type(exc) is not ConfigError or str(exc).startswith(f"{path}: "):
        return exc
    return ConfigError(f"{path}: {exc}")


def dump_paper_config(config: PaperConfig) -> str:
    """The resolved config as YAML text (defaults filled in, stable key order)."""
    return dump_config(config)
