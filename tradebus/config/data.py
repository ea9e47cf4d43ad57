"""The ``data`` section of a backtest config: what is replayed, from where, over which time range."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from tradebus.config.base import StrictModel
from tradebus.config.units import Moment, parse_duration, to_ns
from tradebus.errors import ConfigError
from tradebus.features.bars import BarBuilder

__all__ = ["DataConfig", "DataSourceConfig", "PerpetualDataConfig", "TradeBarsConfig"]


class TradeBarsConfig(StrictModel):
    """Bars built in the run from an instrument's trades (see :class:`~tradebus.features.bars.BarBuilder`).

    ``{mode: time, interval: 1m}`` or ``{mode: volume, threshold: 50}``: ``interval`` for
    time bars only, ``threshold`` (trades, size, ``price * size`` per bar, or the initial
    expected trades per bar of imbalance bars) for every other mode. The bars reach the
    strategies' ``on_bar`` (stamped at their close, known once a trade shows they are over)
    but never the execution engine: orders on the instrument fill on its trades.
    """

    mode: Literal["time", "tick", "volume", "dollar", "tick_imbalance", "volume_imbalance", "dollar_imbalance"]
    interval: str | None = None
    threshold: float | None = Field(default=None, gt=0.0, allow_inf_nan=False)
    span_bars: int = Field(default=20, ge=1)
    span_trades: int = Field(default=1000, ge=1)
    floor: float = Field(default=0.5, ge=0.0, le=1.0)

    @field_validator("interval")
    @classmethod
    def _interval_is_duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @model_validator(mode="after")
    def _mode_parameter(self) -> TradeBarsConfig:
        if self.mode == "time" and (self.interval is None or self.threshold is not None):
            raise ValueError("time bars take 'interval' (e.g. 1m) and no 'threshold'")
        if self.mode != "time" and (self.threshold is None or self.interval is not None):
            raise ValueError(f"{self.mode} bars take 'threshold' and no 'interval'")
        return self

    def builder(self, *, whole_only: bool = False, contract_size: float = 1.0, label: str = "") -> BarBuilder:
        """A fresh :class:`~tradebus.features.bars.BarBuilder` for these bars.

        ``whole_only``: a daemon's (and its playback's) time bars skip the bar the first trade
        falls in, which the run did not see from its start (see ``BarBuilder``).
        ``contract_size``: the instrument's, so the bars count base units, not contracts.
        ``label``: the instrument id, which the builder's log lines name.
        """
        interval = None if self.interval is None else parse_duration(self.interval)
        return BarBuilder(self.mode, interval_ns=interval, threshold=self.threshold, span_bars=self.span_bars,
                          span_trades=self.span_trades, floor=self.floor, whole_only=whole_only,
                          contract_size=contract_size, label=label)


class DataSourceConfig(StrictModel):
    """One replayed stream: a catalog dataset or a CSV/Parquet file, for one instrument.

    Give exactly one of ``dataset`` (``"venue/market/symbol/dataset"`` under
    :attr:`DataConfig.catalog`) or ``file``. ``interval`` (``"4h"``) is only
    needed for a bar file whose timestamps are bar *open* times and whose
    interval cannot be detected from the data. ``bar_time`` says whether a bar
    file's time column stamps the bar's ``open`` (shifted by the interval to the
    close) or its ``close``; ``auto`` takes open unless the column is ``ts_event``.
    """

    instrument: str = Field(min_length=1)
    kind: Literal["bars", "trades", "quotes", "book", "mark_prices", "funding_rates", "open_interest"] = "bars"
    dataset: str | None = None
    file: Path | None = None
    interval: str | None = None
    bar_time: Literal["auto", "open", "close"] = "auto"
    bars: TradeBarsConfig | None = None

    @field_validator("dataset")
    @classmethod
    def _dataset_has_four_parts(cls, value: str | None) -> str | None:
        if value is not None and (len(parts := value.strip("/").split("/")) != 4 or not all(parts)):
            raise ValueError(f"expected 'venue/market/symbol/dataset', got {value!r}")
        return value

    @field_validator("interval")
    @classmethod
    def _interval_is_duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @model_validator(mode="after")
    def _one_location(self) -> DataSourceConfig:
        if (self.dataset is None) == (self.file is None):
            raise ValueError("give exactly one of 'dataset' (catalog) or 'file'")
        if self.bars is not None and self.kind != "trades":
            raise ValueError(f"bars: bars are built from trades; this source's kind is {self.kind!r}"
                             f"{self.defaulted_kind()}: a trades source needs kind: trades")
        if (self.interval is not None or self.bar_time != "auto") and (self.kind != "bars" or self.file is None):
            # read only when a bar file is parsed: a catalog dataset and a trades file stamp their own times
            what = "a catalog dataset" if self.file is None else f"a {self.kind} file"
            raise ValueError(f"interval, bar_time: they describe the time column of a bar file, not of {what}")
        return self

    def defaulted_kind(self) -> str:
        """``" (no kind given: it defaults to 'bars')"`` when the config did not write ``kind``, else ``""``."""
        return "" if "kind" in self.model_fields_set else " (no kind given: it defaults to 'bars')"

    @property
    def catalog_key(self) -> tuple[str, str, str, str]:
        """``(venue, market, symbol, dataset)`` of a catalog source."""
        if self.dataset is None:
            raise ConfigError(f"data source of {self.instrument} is a file, not a catalog dataset")
        venue, market, symbol, name = self.dataset.strip("/").split("/")
        return venue, market, symbol, name


class PerpetualDataConfig(StrictModel):
    """A mark-price or funding-rate file of one perpetual (see :mod:`tradebus.data.perpetual`)."""

    instrument: str = Field(min_length=1)
    file: Path


class DataConfig(StrictModel):
    """Where the replayed data comes from and which time range is used.

    ``start`` is inclusive and ``end`` exclusive; dates mean midnight UTC and
    naive datetimes are UTC; a time is kept to the nanosecond
    (:data:`~tradebus.config.units.Moment`). ``marks`` and ``funding`` are mark-price and funding-rate files
    of perpetual instruments, replayed next to the sources.

    ``allow_stale`` runs over the stretches where the recorded feed of a source's instrument was
    stale (a catalog dataset imported from a paper recording: its manifest's ``stale``), with one
    WARNING per stretch, instead of refusing the run (``tradebus.cli.check_stale_feeds``): the data
    in such a stretch is what the daemon received (nothing, then what came after), and the backtest
    places and fills the orders the daemon denied there. A book stretch out of sync is refused
    whatever this says: the book replayed over it would be wrong.

    ``allow_missed_trades`` runs over the gaps in the trade ids of a trades source (its manifest's
    ``missed_trades``: trades the venue printed that the recording never received nor fetched), with
    one WARNING per gap, instead of refusing the run (``tradebus.cli.check_missed_trades``): the
    strategy does not see those trades and the backtest does not fill on them.
    """

    catalog: Path | None = None
    sources: list[DataSourceConfig] = Field(min_length=1)
    marks: list[PerpetualDataConfig] = Field(default_factory=list)
    funding: list[PerpetualDataConfig] = Field(default_factory=list)
    start: Moment | None = None
    end: Moment | None = None
    allow_stale: bool = False
    allow_missed_trades: bool = False

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        built: set[str] = set()
        bar_sources: dict[str, int] = {}
        for n, source in enumerate(self.sources):
            if source.kind == "bars":
                first = bar_sources.setdefault(source.instrument, n)
                if first != n:
                    raise ValueError(
                        f"sources.{n}: {source.instrument} already has a bars source (sources.{first}): on_bar "
                        "would get one interleaved series of both; give each instrument one bar series (several "
                        "files of one interval: import them into one catalog dataset with `data import --append`; "
                        "a higher timeframe, 4h beside 1h: build it in the strategy from its history window of the "
                        "finer bars, README 'Several timeframes')"
                    )
            if source.bars is not None:
                if source.instrument in built:
                    raise ValueError(f"sources.{n}.bars: {source.instrument} already builds bars from another source")
                if any(s.instrument == source.instrument and s.kind == "bars" for s in self.sources):
                    raise ValueError(f"sources.{n}.bars: {source.instrument} already has a bars source")
                built.add(source.instrument)
        if any(s.dataset is not None for s in self.sources) and self.catalog is None:
            raise ValueError("'catalog' is required when a source names a catalog 'dataset'")
        if self.start is not None and self.end is not None and to_ns(self.start) >= to_ns(self.end):
            raise ValueError(f"start {self.start} must be before end {self.end}")
        return self

    @property
    def start_ns(self) -> int | None:
        """Inclusive start in ns, or ``None``."""
        return None if self.start is None else to_ns(self.start)

    @property
    def end_ns(self) -> int | None:
        """Exclusive end in ns, or ``None``."""
        return None if self.end is None else to_ns(self.end)
