"""Data quality report of a bar or trade series, computed in one streaming pass.

:class:`QualityCheck` is fed the series in time order, one table at a time (an
import feeds it each chunk it writes; ``tradebus data quality`` feeds it a
catalog dataset's row groups), so memory stays bounded. Findings:

=====================  =======  ============================================================
check                  level    what is counted
=====================  =======  ============================================================
non_monotonic_time     error    rows whose ``ts_event`` is before the previous row's
duplicate_time         error    bars whose ``ts_event`` equals the previous bar's (not counted
                                with ``shared_times``: bars closed by an amount may share a time)
ohlc_integrity         error    bars with ``high < low`` or open/close outside [low, high]
non_positive_price     error    rows with a price (bars: any of OHLC) <= 0 or not finite
duplicate_trade_id     error    trades repeating the previous trade's id, or an id not
                                above the last one when ids are increasing integers
gaps                   warn     bars more than one interval after the previous bar
                                (``missing`` bars in total, ``longest`` in bars); trades:
                                none (their spacing is irregular; ``longest_quiet_s`` is
                                reported)
partial_first_bar      warn     the first bar when its time is off the grid of the bars after
                                it (not a whole number of intervals before the next bar): a
                                bar of the part of an interval the data began in, stamped
                                where that part ends or begins; a partial first bar
                                stamped on the grid looks like any other bar
trade_id_gaps          warn     increasing integer ids that skip (``missing`` ids in total)
zero_volume            warn     bars with volume 0 (``longest`` run in bars)
stale                  warn     runs of at least ``stale_bars`` bars with identical OHLC
outliers               warn     log returns (bars: close to close; trades: price to price)
                                whose robust z-score, ``|r - median| / (1.4826 MAD)``, median
                                and MAD of the non-zero returns of their window of 65,536
                                returns, exceeds ``outlier_z``
=====================  =======  ============================================================

Percentage-depth snapshots (``book_depth``: the rows of one ``ts_event`` form a snapshot,
one row per band) are checked for:

=====================  =======  ============================================================
check                  level    what is counted
=====================  =======  ============================================================
non_monotonic_time     error    rows whose ``ts_event`` is before the previous row's
duplicate_band         error    bands whose percentage repeats within their snapshot (a
                                snapshot stored twice at one time)
non_cumulative         error    bands whose depth or notional is below the next narrower band's
                                on the same side (depth is cumulative from the mid outwards)
negative_depth         error    bands with a negative or non-finite depth or notional
zero_depth             warn     bands with depth or notional 0 (an empty band)
band_set_changed       warn     snapshots whose set of percentages differs from the previous one's
stale                  warn     snapshots identical in every band to the previous one
gaps                   warn     snapshots more than 1.5 snapshot intervals (``interval_ns``,
                                default 30 s, Binance's cadence) after the previous one
                                (``missing`` snapshots in total, ``longest`` in snapshots)
=====================  =======  ============================================================

The status is ``fail`` when an error-level check counts anything, ``warn`` for a
warn-level one, else ``ok``. Each finding keeps its first ``examples`` times.
Crossed or locked quotes and book sequence gaps need quote and book datasets,
which these checks do not read yet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tradebus.errors import ConfigError

__all__ = ["CHECKS", "KINDS", "QualityCheck", "QualityReport", "picked_checks"]

CHECKS: dict[str, str] = {
    "non_monotonic_time": "error",
    "duplicate_time": "error",
    "ohlc_integrity": "error",
    "non_positive_price": "error",
    "duplicate_trade_id": "error",
    "gaps": "warn",
    "partial_first_bar": "warn",
    "trade_id_gaps": "warn",
    "zero_volume": "warn",
    "stale": "warn",
    "outliers": "warn",
    "duplicate_band": "error",
    "non_cumulative": "error",
    "negative_depth": "error",
    "zero_depth": "warn",
    "band_set_changed": "warn",
}
"""Every check and its level (``error`` or ``warn``)."""
_MAD_SCALE = 1.4826
_ROBUST_CHUNK = 65_536
_EXAMPLES = 5
_DEPTH_INTERVAL_NS = 30_000_000_000
_APPLICABLE: dict[str, frozenset[str]] = {
    "bars": frozenset(("non_monotonic_time", "duplicate_time", "ohlc_integrity", "non_positive_price", "gaps",
                       "partial_first_bar", "zero_volume", "stale", "outliers")),
    "trades": frozenset(("non_monotonic_time", "non_positive_price", "duplicate_trade_id", "trade_id_gaps", "outliers")),
    "book_depth": frozenset(("non_monotonic_time", "duplicate_band", "non_cumulative", "negative_depth", "zero_depth",
                             "band_set_changed", "stale", "gaps")),
}
KINDS = frozenset(_APPLICABLE)
"""The dataset kinds that have checks (a ``book`` or ``quotes`` dataset has none)."""


@dataclass
class _Finding:
    count: int = 0
    extra: dict[str, int | float] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)

    def add(self, ts: np.ndarray) -> None:
        self.count += int(ts.size)
        for value in ts[: max(0, _EXAMPLES - len(self.examples))]:
            self.examples.append(str(np.datetime64(int(value) // 1_000_000, "ms")) + "Z")

    def bump(self, key: str, value: int | float, *, how: str = "sum") -> None:
        old = self.extra.get(key, 0)
        self.extra[key] = old + value if how == "sum" else max(old, value)


@dataclass(frozen=True)
class QualityReport:
    """The result of a :class:`QualityCheck`: status, rows and one entry per check."""

    kind: str
    rows: int
    status: str
    checks: dict[str, dict[str, object]]
    longest_quiet_s: float | None = None

    def summary(self) -> dict[str, object]:
        """What the manifest keeps: the status and each non-zero count."""
        return {"status": self.status, **{k: v["count"] for k, v in self.checks.items() if v["count"]}}

    def to_dict(self) -> dict[str, object]:
        """The full report as JSON-ready data."""
        out: dict[str, object] = {"kind": self.kind, "rows": self.rows, "status": self.status}
        if self.longest_quiet_s is not None:
            out["longest_quiet_s"] = self.longest_quiet_s
        return {**out, "checks": self.checks}

    def failing(self, names: list[str]) -> list[str]:
        """The checks of ``names`` (see :func:`picked_checks`) that count anything."""
        return sorted(k for k in picked_checks(names) if k in self.checks and self.checks[k]["count"])


def picked_checks(names: list[str], *, option: str = "names") -> set[str]:
    """The checks ``names`` asks for: a check's name, ``error`` or ``warn`` (a level and those above), ``any`` (all).

    Parameters
    ----------
    names
        Check names and levels.
    option
        What the error calls ``names``: a command line names its own option (``--fail-on``).

    Raises
    ------
    ConfigError
        A name that is none of these (``gap`` for ``gaps``): a bad option, refused before any data is read.
    """
    picked: set[str] = set()
    for name in names:
        if name == "any":
            picked |= set(CHECKS)
        elif name in ("error", "warn"):
            picked |= {k for k, level in CHECKS.items() if level == name or (name == "warn" and level == "error")}
        elif name in CHECKS:
            picked.add(name)
        else:
            raise ConfigError(f"{option} {name!r} is not a quality check; expected any, error, warn or one of "
                              f"{sorted(CHECKS)}")
    return picked


class QualityCheck:
    """Streaming quality checks of one series (see the module docstring).

    Parameters
    ----------
    kind
        ``"bars"``, ``"trades"`` or ``"book_depth"``.
    interval_ns
        Bar interval (gaps are not counted without it); for ``book_depth`` the snapshot
        interval (default 30 s).
    stale_bars
        Shortest run of identical bars counted as stale.
    outlier_z
        Robust z-score above which a return is an outlier; default 12 for bars and
        100 for trades, whose tick-to-tick changes are far more heavy-tailed (on the
        real Binance BTCUSDT trades fixture z > 12 flags 109 of 2,001 trades, z > 50
        one, z > 100 none).
    shared_times
        Bars: several bars may share one ``ts_event`` (volume, dollar, tick and imbalance bars, see
        :attr:`~tradebus.data.catalog.Manifest.shared_times`), so an equal time is not a
        ``duplicate_time``; a time before the previous one still is ``non_monotonic_time``.

    Raises
    ------
    ConfigError
        If ``kind`` has no checks (not one of :data:`KINDS`), or if ``outlier_z`` is not a finite number > 0 (``-1`` would flag every return, ``nan`` none).
    """

    def __init__(
        self,
        kind: str,
        interval_ns: int | None = None,
        *,
        stale_bars: int = 5,
        outlier_z: float | None = None,
        shared_times: bool = False,
    ) -> None:
        if kind not in _APPLICABLE:
            raise ConfigError(f"quality: no checks for kind {kind!r}; expected one of {sorted(KINDS)}")
        if outlier_z is not None and not (math.isfinite(outlier_z) and outlier_z > 0):
            raise ConfigError(f"quality: outlier z-score {outlier_z!r} is not a finite number > 0 (the robust z above "
                              "which a return is an outlier; by default 12 for bars, 100 for trades)")
        self.kind, self.interval_ns, self.stale_bars = kind, interval_ns, stale_bars
        self.shared_times = shared_times
        self.outlier_z = outlier_z if outlier_z is not None else (12.0 if kind == "bars" else 100.0)
        self.rows = 0
        self.findings = {name: _Finding() for name in CHECKS}
        self._last_ts: int | None = None
        self._first_bar: int | None = None  # the first bar's time until a later bar judged it
        self._last_price: float | None = None
        self._last_ohlc: tuple[float, ...] | None = None
        self._stale_run = 0
        self._zero_run = 0
        self._last_id: int | None = None
        self._ids_are_ints = True
        self._last_id_text: str | None = None
        self._longest_quiet = 0
        self._returns: list[tuple[np.ndarray, np.ndarray]] = []
        self._buffered = 0
        self._depth = _DepthChecks(self.findings, interval_ns or _DEPTH_INTERVAL_NS) if kind == "book_depth" else None

    def feed(self, table: pa.Table, *, int_ids: np.ndarray | None = None) -> None:
        """Check the next rows of the series (stored layout).

        Parameters
        ----------
        table
            The rows, in the stored layout of the check's kind.
        int_ids
            Trades: the ``trade_id`` column as the int64 values it was written from, when
            the caller has them (an import); saves parsing the text back.
        """
        n = table.num_rows
        if n == 0:
            return
        ts = table.column("ts_event").to_numpy()
        prev = self._last_ts
        full = ts if prev is None else np.concatenate(([prev], ts))
        step = np.diff(full)
        own = ts[-step.size:] if step.size else ts[:0]  # the row each step ends on
        self.findings["non_monotonic_time"].add(own[step < 0])
        if self.kind == "bars":
            if prev is None and self.interval_ns:
                self._first_bar = int(ts[0])
            if self._first_bar is not None:
                self._judge_first_bar(ts)
            self._bars(table, ts, own, step)
        elif self._depth is not None:
            self._depth.feed(table, ts)
        else:
            self._trades(table, step, int_ids)
        self._last_ts = int(ts[-1])
        self.rows += n

    def _outliers(self, ts: np.ndarray, prices: np.ndarray) -> None:
        """Buffer log returns; judge them in windows of :data:`_ROBUST_CHUNK`, however the input is cut."""
        prev = self._last_price
        full = prices if prev is None else np.concatenate(([prev], prices))
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.diff(np.log(full))
        self._returns.append((ts[-r.size:] if r.size else ts[:0], r))
        self._buffered += r.size
        self._last_price = float(prices[-1])
        if self._buffered < _ROBUST_CHUNK:
            return
        # one concatenation per chunk, then windows as views (re-joining the rest per window was quadratic)
        all_ts = np.concatenate([t for t, _ in self._returns])
        all_r = np.concatenate([x for _, x in self._returns])
        start = 0
        while all_r.size - start >= _ROBUST_CHUNK:
            self._judge_window(all_ts[start : start + _ROBUST_CHUNK], all_r[start : start + _ROBUST_CHUNK])
            start += _ROBUST_CHUNK
        self._returns = [(all_ts[start:], all_r[start:])] if all_r.size > start else []
        self._buffered = all_r.size - start

    def _judge_rest(self) -> None:
        """Judge the last, partial window."""
        ts = np.concatenate([t for t, _ in self._returns])
        r = np.concatenate([x for _, x in self._returns])
        self._returns, self._buffered = [], 0
        self._judge_window(ts, r)

    def _judge_window(self, ts: np.ndarray, r: np.ndarray) -> None:
        ok = np.isfinite(r)
        rv = r[ok & (r != 0)]  # price changes only: unchanged prices would shrink the scale to a tick
        if rv.size < 20:
            return
        median = float(np.median(rv))
        mad = float(np.median(np.abs(rv - median))) * _MAD_SCALE
        if mad > 0:
            with np.errstate(invalid="ignore"):
                z = np.abs(r - median) / mad
            self.findings["outliers"].add(ts[ok & (z > self.outlier_z)])

    def _judge_first_bar(self, ts: np.ndarray) -> None:
        """Flag the first bar if the first later bar is not a whole number of intervals after it."""
        first, interval = self._first_bar, self.interval_ns
        if first is None or not interval:
            return
        later = ts[ts > first]  # a shared or earlier time is another check's
        if later.size == 0:
            return
        self._first_bar = None
        if (int(later[0]) - first) % interval:
            self.findings["partial_first_bar"].add(np.array([first]))

    def _bars(self, table: pa.Table, ts: np.ndarray, own: np.ndarray, step: np.ndarray) -> None:
        o, h, low, c, v = (table.column(n).to_numpy() for n in ("open", "high", "low", "close", "volume"))
        if not self.shared_times:
            self.findings["duplicate_time"].add(own[step == 0])
        if self.interval_ns:
            over = step > self.interval_ns
            gaps = self.findings["gaps"]
            gaps.add(own[over])
            if np.any(over):
                missing = -(-step[over] // self.interval_ns) - 1
                gaps.bump("missing", int(missing.sum()))
                gaps.bump("longest", int(missing.max()), how="max")
        with np.errstate(invalid="ignore"):
            bad_price = ~(np.isfinite(o) & np.isfinite(h) & np.isfinite(low) & np.isfinite(c) & (np.minimum.reduce([o, h, low, c]) > 0))
            self.findings["non_positive_price"].add(ts[bad_price])
            broken = (h < low) | (o < low) | (o > h) | (c < low) | (c > h)
            self.findings["ohlc_integrity"].add(ts[broken & ~bad_price])
        zero = v == 0
        self.findings["zero_volume"].add(ts[zero])
        self._zero_run = self._runs(zero, self._zero_run, self.findings["zero_volume"], None)
        ohlc = np.stack([o, h, low, c])
        prev = self._last_ohlc
        full = ohlc if prev is None else np.concatenate((np.array(prev).reshape(4, 1), ohlc), axis=1)
        same = np.all(full[:, 1:] == full[:, :-1], axis=0)
        if prev is None:
            same = np.concatenate(([False], same))
        self._stale_run = self._runs(same, self._stale_run, self.findings["stale"], ts)
        self._last_ohlc = tuple(float(x) for x in ohlc[:, -1])
        self._outliers(ts, c)

    def _runs(self, flags: np.ndarray, carried: int, finding: _Finding, ts: np.ndarray | None) -> int:
        """Track runs of True across chunks; record the longest (and, with ``ts``, stale runs)."""
        if flags.size == 0:
            return carried
        idx = np.arange(flags.size)
        last_false = np.maximum.accumulate(np.where(flags, -1, idx))
        run = idx - last_false + np.where(last_false < 0, carried, 0)  # a leading run continues the carried one
        if ts is not None:
            finding.add(ts[flags & (run + 1 == self.stale_bars)])
            run_shown = run + (run > 0)
        else:
            run_shown = run
        finding.bump("longest", int(run_shown.max()), how="max")
        return int(run[-1])

    def _trades(self, table: pa.Table, step: np.ndarray, int_ids: np.ndarray | None) -> None:
        ts = table.column("ts_event").to_numpy()
        price = table.column("price").to_numpy()
        size = table.column("size").to_numpy()
        with np.errstate(invalid="ignore"):
            bad = ~(np.isfinite(price) & (price > 0) & np.isfinite(size) & (size > 0))
        self.findings["non_positive_price"].add(ts[bad])
        if step.size:
            self._longest_quiet = max(self._longest_quiet, int(step.max()))
        self._ids(table.column("trade_id"), ts, int_ids)
        self._outliers(ts, price)

    def _ids(self, column: pa.ChunkedArray, ts: np.ndarray, ints: np.ndarray | None) -> None:
        if self._ids_are_ints:
            if ints is None:
                try:
                    ints = pc.cast(column.combine_chunks(), pa.int64()).to_numpy(zero_copy_only=False)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    self._ids_are_ints = False
            if ints is not None:
                full = ints if self._last_id is None else np.concatenate(([self._last_id], ints))
                d = np.diff(full)
                own = ts[-d.size:] if d.size else ts[:0]
                self.findings["duplicate_trade_id"].add(own[d <= 0])
                skips = d > 1
                self.findings["trade_id_gaps"].add(own[skips])
                if np.any(skips):
                    self.findings["trade_id_gaps"].bump("missing", int((d[skips] - 1).sum()))
                self._last_id = int(full[np.argmax(full)]) if full.size else self._last_id
                return
        text = column.to_pylist()
        prev = [self._last_id_text, *text[:-1]]
        repeats = np.array([t != "" and t == p for t, p in zip(text, prev, strict=True)])
        self.findings["duplicate_trade_id"].add(ts[repeats])
        self._last_id_text = text[-1] if text else self._last_id_text

    def report(self) -> QualityReport:
        """The report of everything fed so far (the last, partial window of returns judged now)."""
        if self._buffered:
            self._judge_rest()
        if self._depth is not None:
            self._depth.flush()
        checks: dict[str, dict[str, object]] = {}
        for name, finding in self.findings.items():
            if name in _APPLICABLE[self.kind]:
                checks[name] = {"level": CHECKS[name], "count": finding.count, **finding.extra, "examples": finding.examples}
        levels = {CHECKS[k] for k, v in checks.items() if v["count"]}
        status = "fail" if "error" in levels else "warn" if "warn" in levels else "ok"
        quiet = self._longest_quiet / 1e9 if self.kind == "trades" else None
        return QualityReport(self.kind, self.rows, status, checks, quiet)


class _DepthChecks:
    """The snapshot checks of a ``book_depth`` series; the last snapshot of a chunk waits for the next chunk."""

    def __init__(self, findings: dict[str, _Finding], interval_ns: int) -> None:
        self.findings, self.interval_ns = findings, interval_ns
        self._held: pa.Table | None = None  # rows of the last, maybe unfinished, snapshot
        self._prev: tuple[int, np.ndarray] | None = None  # time and (percentage, depth, notional) rows

    def feed(self, table: pa.Table, ts: np.ndarray) -> None:
        if self._held is not None:
            table = pa.concat_tables([self._held, table])
            ts = table.column("ts_event").to_numpy()
        other = np.flatnonzero(ts != ts[-1])
        last = int(other[-1]) + 1 if other.size else 0  # where the run of the last time begins
        self._held = table.slice(last)
        if last:
            self._check(table.slice(0, last))

    def flush(self) -> None:
        held, self._held = self._held, None
        if held is not None and held.num_rows:
            self._check(held)

    def _check(self, table: pa.Table) -> None:
        ts = table.column("ts_event").to_numpy()
        pct, depth, notional = (table.column(n).to_numpy() for n in ("percentage", "depth", "notional"))
        with np.errstate(invalid="ignore"):
            bad = ~(np.isfinite(depth) & np.isfinite(notional) & (depth >= 0) & (notional >= 0))
        self.findings["negative_depth"].add(ts[bad])
        self.findings["zero_depth"].add(ts[~bad & ((depth == 0) | (notional == 0))])
        starts = np.flatnonzero(np.concatenate(([True], ts[1:] != ts[:-1])))
        bounds = [*starts.tolist(), ts.size]
        rows = np.column_stack((pct, depth, notional))
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            self._snapshot(int(ts[lo]), rows[lo:hi])

    def _snapshot(self, t: int, rows: np.ndarray) -> None:
        stamp = np.array([t], dtype=np.int64)
        order = np.lexsort((np.abs(rows[:, 0]), np.sign(rows[:, 0])))  # by side, then outwards from the mid
        ranked = rows[order]
        repeated = int(np.count_nonzero(ranked[1:, 0] == ranked[:-1, 0]))
        if repeated:
            self.findings["duplicate_band"].add(np.repeat(stamp, repeated))
        same_side = np.sign(ranked[1:, 0]) == np.sign(ranked[:-1, 0])
        with np.errstate(invalid="ignore"):
            falls = same_side & ((ranked[1:, 1] < ranked[:-1, 1]) | (ranked[1:, 2] < ranked[:-1, 2]))
        if np.any(falls):
            self.findings["non_cumulative"].add(np.repeat(stamp, int(np.count_nonzero(falls))))
        if self._prev is not None:
            prev_t, prev_rows = self._prev
            if not np.array_equal(np.unique(prev_rows[:, 0]), np.unique(rows[:, 0])):
                self.findings["band_set_changed"].add(stamp)
            elif np.array_equal(prev_rows[np.lexsort((prev_rows[:, 0],))], rows[np.lexsort((rows[:, 0],))]):
                self.findings["stale"].add(stamp)
            step = t - prev_t
            if step * 2 > 3 * self.interval_ns:
                gaps = self.findings["gaps"]
                gaps.add(stamp)
                missing = max(1, round(step / self.interval_ns) - 1)
                gaps.bump("missing", missing)
                gaps.bump("longest", missing, how="max")
        self._prev = (t, rows)
