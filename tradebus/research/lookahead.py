"""Lookahead detector: perturb the future, check that nothing at or before the cut changed.

For random cut times ``t``, every input row with ``ts_init > t`` is perturbed (prices
and amounts of every replayed kind: :data:`PERTURBED`), the same run is repeated, and
every record stamped at or before ``t`` is compared with the unperturbed run. A random
cut lies 1 ns before an input time, so a record between two input times (a timer's
decision) that read the later one is compared with a perturbed copy of it:

* ``feature``: the feature row a strategy sees on each bar, trade and quote (read by a
  probe strategy after the strategy under test, from the same view);
* ``output``: values a strategy publishes in an ``outputs`` list of ``(ts, value)``
  (e.g. :class:`~tradebus.research.strategy.ModelSignal`'s model outputs), compared as
  ``(ts, value)`` at the kernel's clock when the strategy added them;
* ``decision``: every order (creation time, instrument, side, quantity, type, prices)
  and every fill (at the receive time of the message it filled on).

Records are compared on the kernel's clock (the receive time ``ts_init`` of the message
being handled, or a timer's time), the clock the cut is on. A strategy's own stamp on its
``outputs`` is compared as data, never trusted as the time it decided: a causal strategy
stamping at a bar's close passes on bars received after it, and a leaky one stamping later
than it decided is still caught.

Any difference is a lookahead: a value at ``t`` that depends on data after ``t``.
The detector has no false positives on a causal run (the prefix of a deterministic
run does not depend on later input); it finds a leak when a perturbation reaches it,
which the multiplicative price shocks (±5-30 % per row) make near certain for any
leak that reads prices.

Inputs are perturbed in memory: the replay's sources, and the mark prices and funding
rates of a config's ``data.marks``/``funding`` (fed to the kernel outside the replay:
:func:`check_config` hands their perturbed copies to :func:`~tradebus.cli.build_kernel`).
A strategy that reads data files itself is not covered by :func:`check_config`; give such
code a ``runner`` that hands it the perturbed frames (see the tests).

The run is the real backtest loop (:meth:`Kernel.run`, batch path included) over an
in-memory :class:`~tradebus.data.replay.Replay` (:class:`MemoryReplay`) read in the chunks the
config's replay read (:func:`read_sources`), so it yields the backtest's batches, mixed ones
included: a leak through where a batch ends shows at the rows it shows at in the backtest. :func:`check_config` does it for a run config;
:func:`detect_lookahead` takes any ``runner(frames) -> Trace`` (datasets, custom
strategies).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from loguru import logger

from tradebus.data.catalog import schema_for
from tradebus.data.replay import DEFAULT_BATCH_ROWS, MemorySource, Replay
from tradebus.engine.clock import iso_ns
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import Bar, FundingRate, MarkPrice, OrderFilled, Quote, Trade
from tradebus.errors import ConfigError
from tradebus.ops.logs import RERUN
from tradebus.strategies.base import Strategy

__all__ = [
    "PERTURBED",
    "LookaheadReport",
    "SourceFrame",
    "Trace",
    "check_config",
    "detect_lookahead",
    "kernel_trace",
    "perpetual_frames",
    "perpetual_messages",
    "perturb",
    "read_sources",
]

#: Per replayed kind, ``(price columns, amount columns)`` that :func:`perturb` shocks. Book rows keep their
#: prices (a delta names the level it changes) and get their sizes shocked; a size of 0 (a deletion) stays 0.
PERTURBED: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "bars": (("open", "high", "low", "close"), ("volume",)),
    "trades": (("price",), ("size",)),
    "quotes": (("bid_price", "ask_price"), ("bid_size", "ask_size")),
    "book": ((), ("size",)),
    "mark_prices": (("mark_price", "index_price"), ()),
    "funding_rates": ((), ("rate",)),
    "open_interest": ((), ("open_interest",)),
    "book_depth": ((), ("depth", "notional")),
}
#: Differences reported per cut (after the first one, later records are usually shifted too).
MAX_PER_CUT = 20


def _values(kind: str) -> tuple[str, ...]:
    """The value columns of a replayed kind (its catalog schema but the times and trade ids)."""
    return tuple(n for n in schema_for(kind).names if n not in ("ts_event", "ts_init", "trade_id"))


@dataclass(frozen=True)
class SourceFrame:
    """The rows of one replay source: ``ts_event``, ``ts_init`` and the kind's value columns (+ ``trade_id``).

    ``chunks``: rows of each chunk the replay read them in (:func:`read_sources`), so that
    :class:`MemoryReplay` cuts and merges them as that replay did; ``None``: chunks of ``batch_rows``.
    """

    instrument_id: str
    kind: str
    frame: pd.DataFrame
    chunks: tuple[int, ...] | None = None

    def memory(self) -> MemorySource:
        """The rows as a :class:`~tradebus.data.replay.MemorySource` (columns in their catalog types)."""
        schema = schema_for(self.kind)
        frame = self.frame
        columns = {c: np.ascontiguousarray(frame[c].to_numpy(dtype=schema.field(c).type.to_pandas_dtype()))
                   for c in _values(self.kind)}
        return MemorySource(
            self.instrument_id,
            self.kind,
            frame["ts_event"].to_numpy(dtype=np.int64),
            frame["ts_init"].to_numpy(dtype=np.int64),
            columns,
            frame["trade_id"].astype(str).tolist() if self.kind == "trades" else None,
            self.chunks,
        )


@dataclass
class Trace:
    """Records of one run: ``(kind, ts, key, values)``, compared between runs up to the cut."""

    records: list[tuple[str, int, str, tuple[Any, ...]]] = field(default_factory=list)

    def add(self, kind: str, ts: int, key: str, values: Sequence[Any]) -> None:
        """Append one record."""
        self.records.append((kind, int(ts), key, tuple(values)))

    def upto(self, cut: int) -> list[tuple[str, int, str, tuple[Any, ...]]]:
        """Records stamped at or before ``cut``, in order."""
        return [r for r in self.records if r[1] <= cut]


@dataclass
class LookaheadReport:
    """What :func:`detect_lookahead` found."""

    cuts: list[int]
    records_checked: int = 0
    violations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No record at or before any cut changed."""
        return not self.violations

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (``lookahead.json``): every epoch-ns time with its ISO-8601 UTC text beside it
        (``cuts``/``cut_times``; a violation's ``cut``/``cut_time`` and ``ts``/``time``)."""
        violations = [{**v, "cut_time": iso_ns(v["cut"]), "time": iso_ns(v["ts"])} for v in self.violations[:100]]
        return {"ok": self.ok, "cuts": self.cuts, "cut_times": [iso_ns(c) for c in self.cuts],
                "records_checked": self.records_checked, "violations": violations,
                "n_violations": len(self.violations)}


# ---------------------------------------------------------------------------- inputs


def read_sources(replay: Replay) -> list[SourceFrame]:
    """Every row of a :class:`~tradebus.data.replay.Replay`, one frame per source, with the chunks it read them in."""
    out = []
    for src in replay.read_memory():
        data: dict[str, Any] = {"ts_event": src.ts_event, "ts_init": src.ts_init, **src.columns}
        if src.kind == "trades":
            data["trade_id"] = src.trade_id
        out.append(SourceFrame(src.instrument_id, src.kind, pd.DataFrame(data), src.chunks))
    return out


def perturb(sources: Sequence[SourceFrame], cut: int, rng: np.random.Generator) -> list[SourceFrame]:
    """Copies of ``sources`` with every row after ``cut`` (``ts_init > cut``) shocked.

    Prices are multiplied by ``exp(±U(0.05, 0.3))`` per row (OHLC together; bid and ask
    together), volumes and sizes by ``U(0.3, 3)`` (the columns of :data:`PERTURBED`). A bar's
    close then gets a shock of its own (high and low widened to hold it): a common factor
    leaves ``close > open`` and ``(high - low) / close`` as they were, so a strategy peeking at
    whether the next bar is green would pass.
    """
    out = []
    for src in sources:
        frame = src.frame.copy()
        after = frame["ts_init"].to_numpy() > cut
        k = int(after.sum())
        factor = np.exp(rng.choice([-1.0, 1.0], k) * rng.uniform(0.05, 0.3, k))
        size = rng.uniform(0.3, 3.0, k)
        prices, amounts = PERTURBED[src.kind]
        for name in prices:
            frame.loc[after, name] = frame.loc[after, name].to_numpy() * factor
        for name in amounts:
            frame.loc[after, name] = frame.loc[after, name].to_numpy() * size
        if src.kind == "bars":
            # A shock of the close alone, so a bar's own shape (green or red, its range) changes too; high and low
            # widen to hold it.
            shape = np.exp(rng.choice([-1.0, 1.0], k) * rng.uniform(0.05, 0.3, k))
            close = frame.loc[after, "close"].to_numpy() * shape
            frame.loc[after, "close"] = close
            frame.loc[after, "high"] = np.maximum(frame.loc[after, "high"].to_numpy(), close)
            frame.loc[after, "low"] = np.minimum(frame.loc[after, "low"].to_numpy(), close)
        out.append(SourceFrame(src.instrument_id, src.kind, frame, src.chunks))
    return out


#: The message of each kind a kernel is fed outside the replay (:meth:`Kernel.feed_perpetual_data`).
_FED: dict[str, type[MarkPrice] | type[FundingRate]] = {"mark_prices": MarkPrice, "funding_rates": FundingRate}


def perpetual_frames(messages: Sequence[MarkPrice | FundingRate]) -> list[SourceFrame]:
    """Mark prices and funding rates as source frames (kind ``mark_prices``/``funding_rates``), one per
    instrument and kind in order of first appearance; :func:`perpetual_messages` gives them back."""
    rows: dict[tuple[str, str], list[MarkPrice | FundingRate]] = {}
    for msg in messages:
        kind = "mark_prices" if isinstance(msg, MarkPrice) else "funding_rates"
        rows.setdefault((msg.instrument_id, kind), []).append(msg)
    out = []
    for (iid, kind), msgs in rows.items():
        columns = ("ts_event", "ts_init", *_values(kind))
        frame = pd.DataFrame({c: [getattr(m, c) for m in msgs] for c in columns})
        out.append(SourceFrame(iid, kind, frame))
    return out


def perpetual_messages(sources: Sequence[SourceFrame]) -> list[MarkPrice | FundingRate]:
    """The messages of :func:`perpetual_frames`' frames (perturbed or not), sorted by ``ts_init`` (stable)."""
    out: list[MarkPrice | FundingRate] = []
    for src in sources:
        cls = _FED[src.kind]
        columns = ("ts_event", "ts_init", *_values(src.kind))
        ints = {"ts_event", "ts_init", "next_funding_ns"}
        for values in zip(*(src.frame[c].tolist() for c in columns), strict=True):
            fields = {c: int(v) if c in ints else float(v) for c, v in zip(columns, values, strict=True)}
            out.append(cls(src.instrument_id, **fields))
    out.sort(key=lambda m: m.ts_init)
    return out


class MemoryReplay(Replay):
    """A :class:`~tradebus.data.replay.Replay` over in-memory source frames (perturbed or not).

    Each frame is read in its ``chunks`` (those of the replay :func:`read_sources` read it from), so
    :meth:`~Replay.batches` and :meth:`~Replay.mixed_batches` are that replay's batches, cut by the same
    rule; frames without ``chunks`` are read ``batch_rows`` rows at a time, as a file is.
    """

    def __init__(self, sources: Sequence[SourceFrame], batch_rows: int = DEFAULT_BATCH_ROWS) -> None:
        super().__init__([s.memory() for s in sources], batch_rows=batch_rows, prefetch=False)


# ---------------------------------------------------------------------------- kernel runs


class _ClockedOutputs(list[Any]):
    """A strategy's ``outputs`` list that notes the kernel's clock when each entry is added (:attr:`added_ns`)."""

    def __init__(self, items: Sequence[Any], clock: Any) -> None:
        super().__init__(items)
        self._clock = clock
        self.added_ns: list[int] = [clock.now_ns()] * len(self)

    def append(self, item: Any) -> None:
        super().append(item)
        self.added_ns.append(self._clock.now_ns())

    def extend(self, items: Any) -> None:
        n = len(self)
        super().extend(items)
        self.added_ns.extend([self._clock.now_ns()] * (len(self) - n))

    def __iadd__(self, items: Any) -> _ClockedOutputs:  # type: ignore[override]
        self.extend(items)
        return self

    def insert(self, index: Any, item: Any) -> None:
        super().insert(index, item)
        self.added_ns.insert(index, self._clock.now_ns())


class _Probe(Strategy):
    """Records the feature row of every event after the strategies under test saw it.

    Started after them, it makes each one's ``outputs`` list (as ``__init__`` or ``on_start`` left it)
    a :class:`_ClockedOutputs`.
    """

    def __init__(self, kernel: Kernel, trace: Trace) -> None:
        super().__init__(tuple(kernel.instruments), strategy_id="__lookahead_probe__")
        self._trace = trace
        self._tested = list(kernel.strategies)
        self._clock = kernel.clock
        self.clocked: dict[str, _ClockedOutputs] = {}

    def on_start(self) -> None:
        for strategy in self._tested:
            outputs = vars(strategy).get("outputs")
            if type(outputs) is list:
                vars(strategy)["outputs"] = self.clocked[strategy.strategy_id] = _ClockedOutputs(outputs, self._clock)

    def _record(self, iid: str, ts: int) -> None:
        view = self.kernel.cache.feature_views.get(iid)
        if view is not None:
            self._trace.add("feature", ts, iid, [float(v) for v in view.row])

    def on_bar(self, bar: Bar) -> None:
        self._record(bar.instrument_id, bar.ts_init)

    def on_trade(self, trade: Trade) -> None:
        self._record(trade.instrument_id, trade.ts_init)

    def on_quote(self, quote: Quote) -> None:
        self._record(quote.instrument_id, quote.ts_init)


def kernel_trace(
    make_kernel: Callable[[], Kernel], sources: Sequence[SourceFrame], batch_rows: int = DEFAULT_BATCH_ROWS
) -> Trace:
    """Run a fresh kernel from ``make_kernel`` over ``sources`` (a :class:`MemoryReplay` of ``batch_rows``, that of
    the replay they were read from) and record features, outputs and decisions."""
    trace = Trace()
    kernel = make_kernel()
    probe = _Probe(kernel, trace)
    kernel.add_strategy(probe)
    clock = kernel.clock

    def on_fill(fill: OrderFilled) -> None:
        # At the receive time of the message it filled on (the clock the cut is on), not its venue time: a
        # trade received after the cut may carry a venue time before it.
        trace.add("decision", clock.now_ns(), fill.instrument_id,
                  ["fill", "BUY" if fill.side > 0 else "SELL", fill.last_qty, fill.last_px])

    kernel.bus.subscribe(OrderFilled, on_fill)
    kernel.run(MemoryReplay(sources, batch_rows))
    for strategy in kernel.strategies:
        _trace_outputs(trace, strategy, probe.clocked.get(strategy.strategy_id))
    for order in kernel.result.orders:
        trace.add("decision", order.ts_created, order.instrument_id,
                  ["order", str(order.side), order.quantity, str(order.order_type), order.price, order.trigger_price])
    trace.records.sort(key=lambda r: (r[1], r[0]))
    return trace


def _trace_outputs(trace: Trace, strategy: Strategy, clocked: _ClockedOutputs | None) -> None:
    """Add a strategy's ``outputs`` to ``trace`` at the clock they were added (``clocked``), their stamp as data."""
    outputs = getattr(strategy, "outputs", None)
    if outputs is None or (outputs is not clocked and len(outputs) == 0):
        return
    sid = strategy.strategy_id
    if clocked is None or outputs is not clocked or len(clocked.added_ns) != len(clocked):
        raise ConfigError(
            f"lookahead: strategy {sid!r}'s outputs were not a list only appended to (append, extend, +=, insert) "
            f"from on_start on: the time each one was made is unknown; keep one list and only add to it"
        )
    for k, (at, entry) in enumerate(zip(clocked.added_ns, clocked, strict=True)):
        try:
            ts, value = entry
            record = [int(ts), float(value)]
        except (TypeError, ValueError):
            raise ConfigError(
                f"lookahead: strategy {sid!r}'s outputs[{k}] is {entry!r}, not a (ts, value) pair of a time and a "
                f"number; append (bar.ts_event, value) tuples"
            ) from None
        trace.add("output", at, sid, record)


def _same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
            continue
        if x != y:
            return False
    return True


def detect_lookahead(
    sources: Sequence[SourceFrame],
    runner: Callable[[Sequence[SourceFrame]], Trace],
    n_cuts: int = 5,
    seed: int = 0,
    cuts: Sequence[int] | None = None,
    on_run: Callable[[], None] | None = None,
) -> LookaheadReport:
    """Compare ``runner`` on the data and on copies perturbed after random cut times.

    Parameters
    ----------
    sources
        The input rows.
    runner
        Runs whatever is checked over given sources and returns its :class:`Trace`.
    n_cuts, seed
        Number of random cut times (each 1 ns before an input time drawn between the 10th
        and 90th percentiles) and the seed of the cuts and the perturbations.
    cuts
        Explicit cut times instead.
    on_run
        Called after each run (``n_cuts + 1`` runs; progress reporting).

    Notes
    -----
    The records the perturbed re-runs log (a strategy's or the risk gate's, e.g. orders denied
    for buying power at made-up prices) carry ``extra[RERUN]`` (:data:`tradebus.ops.logs.RERUN`,
    naming the cut); the command line does not show them and one INFO line counts their warnings.
    The unperturbed run logs as a backtest does.

    Raises
    ------
    ConfigError
        No cut to check (``n_cuts < 1`` or an empty ``cuts``), or a negative ``seed``.
    """
    count = n_cuts if cuts is None else len(cuts)
    if count < 1:
        raise ConfigError(f"lookahead: {count} cuts check nothing; give at least one cut (--cuts, n_cuts)")
    if seed < 0:  # numpy's generator takes no negative seed
        raise ConfigError(f"lookahead: seed {seed} is negative; give a seed >= 0 (--seed, seed)")
    rng = np.random.default_rng(seed)
    times = np.sort(np.concatenate([s.frame["ts_init"].to_numpy(dtype=np.int64) for s in sources]))
    if cuts is None:
        lo, hi = int(len(times) * 0.1), max(int(len(times) * 0.9), 1)
        # Just before an input time: its rows are perturbed, so a record between it and the row before (a timer)
        # that read them is compared too.
        cuts = sorted(int(times[i]) - 1 for i in rng.integers(lo, hi, n_cuts))
    base = runner(sources)
    if on_run is not None:
        on_run()
    report = LookaheadReport([int(c) for c in cuts])
    warned: list[str] = []
    counter = logger.add(lambda m: warned.append(m.record["message"]), level="WARNING",
                         filter=lambda r: RERUN in r["extra"])
    try:
        for cut in report.cuts:
            with logger.contextualize(**{RERUN: f"lookahead cut {cut}"}):
                got = runner(perturb(sources, cut, rng)).upto(cut)
            if on_run is not None:
                on_run()
            _compare(report, cut, base.upto(cut), got)
    finally:
        logger.remove(counter)
    if warned:
        logger.info("lookahead: the {} re-runs on perturbed data logged {} warnings, not shown (their orders meet "
                    "made-up prices); the first: {}", len(report.cuts), len(warned), warned[0])
    return report


def _compare(report: LookaheadReport, cut: int, ref: list[tuple[str, int, str, tuple[Any, ...]]],
             got: list[tuple[str, int, str, tuple[Any, ...]]]) -> None:
    """Add to ``report`` the records at or before ``cut`` that differ between the run (``ref``) and its re-run."""
    report.records_checked += len(ref)
    found = 0
    for k in range(max(len(ref), len(got))):
        a = ref[k] if k < len(ref) else None
        b = got[k] if k < len(got) else None
        if a is None or b is None or a[:3] != b[:3] or not _same(a[3], b[3]):
            first = a or b
            assert first is not None
            report.violations.append(
                {"cut": cut, "kind": first[0], "ts": first[1], "key": first[2],
                 "before": None if a is None else list(a[3])[:20], "after": None if b is None else list(b[3])[:20]}
            )
            found += 1
            if found >= MAX_PER_CUT:  # later records are misaligned after the first difference
                break


def check_config(
    config_path: str | Path, n_cuts: int = 5, seed: int = 0, on_run: Callable[[], None] | None = None
) -> LookaheadReport:
    """Run the lookahead detector on a backtest config (its strategy, features and data).

    The replay's sources and the config's ``data.marks``/``funding`` are perturbed alike; the
    latter reach the kernel as :func:`~tradebus.cli.build_kernel` feeds them in a backtest.
    """
    from tradebus.cli import build_kernel, build_replay, perpetual_data
    from tradebus.config import load_config

    config = load_config(Path(config_path))
    replay = build_replay(config)
    sources = read_sources(replay)
    replayed = len(sources)
    fed = perpetual_frames(perpetual_data(config))

    def run(frames: Sequence[SourceFrame]) -> Trace:
        messages = perpetual_messages(frames[replayed:])
        return kernel_trace(lambda: build_kernel(config, messages if fed else None), frames[:replayed],
                            replay.batch_rows)

    return detect_lookahead([*sources, *fed], run, n_cuts, seed, on_run=on_run)
