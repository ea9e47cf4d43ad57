"""A finished run read back from its directory: the input of the tearsheet, the comparison and the summary.

Reads the files :func:`tradebus.reports.writers.write_run` writes. A directory written
before ``trades.csv``, ``prices.csv`` and ``attribution.csv`` existed still loads: its trades are
matched from ``fills.csv`` again (with the lot and contract sizes of its ``config.yaml``, as the run
matched them), its prices are those of its fills and its attribution is that of its fills valued
at the last of those prices, with the funding payments of its ``funding.csv`` (each placed among
the fills as the run placed it, by its ``fills_before``; by the quantity it was paid on in a
directory written before that column existed) and the charges of borrowing interest of its
``interest.csv`` (shared out by the instruments of its ``config.yaml``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pandas as pd
from loguru import logger

from tradebus.account import borrow_assets
from tradebus.config.load import read_yaml
from tradebus.engine.kernel import FillRecord
from tradebus.engine.instrument import Instrument
from tradebus.engine.messages import FundingPaid, InterestCharged
from tradebus.errors import ConfigError, OrderError, describe_os_error
from tradebus.reports.attribution import ATTRIBUTION_COLUMNS, attribute
from tradebus.reports.formatting import quote_decimals
from tradebus.reports.trades import TRADE_COLUMNS, match_trades
from tradebus.reports.writers import CONFIG_END, CONFIG_HEAD, INCOMPLETE_MARKER, OWN_FILES, trade_row

__all__ = ["RUN_FILES", "RunData", "buy_and_hold", "buy_and_hold_curve", "load_run", "refuse_run_file"]

_NS = "ns"
#: The files of a run directory a report page must never replace: the own files of every kind of
#: run (:data:`~tradebus.reports.writers.OWN_FILES`), the ``INCOMPLETE`` marker and the
#: ``stress.json`` the tearsheet reads.
RUN_FILES = frozenset({name for names in OWN_FILES.values() for name in names} | {INCOMPLETE_MARKER, "stress.json"})


@dataclass(slots=True)
class RunData:
    """The outputs of one run, as pandas frames (times as UTC ``Timestamp``)."""

    path: Path
    metrics: dict[str, Any]
    equity: pd.DataFrame
    fills: pd.DataFrame
    trades: pd.DataFrame
    prices: pd.DataFrame
    #: ``attribution.csv``: PnL, fees, funding and interest per strategy and instrument, and each strategy's total.
    attribution: pd.DataFrame
    config: dict[str, Any] = field(default_factory=dict)
    stress: list[dict[str, Any]] | None = None

    @property
    def decimals(self) -> int:
        """Decimals of the reporting (first instrument's quote) currency (see :func:`tradebus.reports.formatting.quote_decimals`)."""
        instruments = [i for i in self.config.get("instruments", []) or [] if isinstance(i, dict)]
        return quote_decimals(str(instruments[0].get("quote") or "") if instruments else None)

    @property
    def instruments(self) -> list[str]:
        """The run's instruments (from ``metrics.json``, else those of its fills and prices)."""
        listed = self.metrics.get("instruments")
        if listed:
            return [str(i) for i in listed]
        return sorted(set(self.fills["instrument"]) | set(self.prices["instrument"]))


# The columns each file must have: (integer columns, number columns, text columns); and for
# equity.csv those that must be numbers when present (older runs have none of them).
_EQUITY = (("ts",), ("equity", "position_value", "fees_paid"), ())
_EQUITY_OPTIONAL = ("drawdown", "funding_paid", "interest_paid")
_FILLS = (("ts_event",), ("quantity", "price", "fee"), ("instrument", "side", "reason"))
_FILLS_MATCHED = (("ts_event",), ("quantity", "price", "fee"),
                  ("instrument", "side", "reason", "liquidity", "client_order_id", "strategy_id", "trade_id"))
_TRADES = (("entry_ts", "exit_ts"), ("quantity", "entry_price", "exit_price", "pnl", "fees", "net_pnl", "holding_s"),
           ("instrument", "side", "entry_reason", "exit_reason"))
_FILLS_OPTIONAL = ("fee_in_kind",)  # a live run's (FillRecord.fee_in_kind)
#: trades.csv's strategy of each trade (a directory written before the column has none: its trades have "" there)
_TRADES_STRATEGY = "strategy_id"
_PRICES = (("ts",), ("price",), ("instrument",))
_FUNDING = (("ts_event",), ("quantity", "mark_price", "rate", "payment"), ("instrument",))
#: funding.csv's count of the fills booked before each payment (older runs have none: their payments are placed by quantity).
_FUNDING_FILLS = "fills_before"
_INTEREST = (("ts_event",), ("borrowed", "price", "annual_rate", "interest"), ("asset", "kind", "quote"))
#: The keys of a config's instrument that the trades and attribution rebuilt from the fills use.
_INSTRUMENT_KEYS = ("venue", "symbol", "kind", "base", "quote", "margin", "contract_size", "lot_size")
_ATTRIBUTION = (
    (),
    ("realized_pnl", "unrealized_pnl", "fees", "funding", "interest", "net_pnl"),
    ("strategy_id", "instrument"),
)


def _read_csv(
    path: Path,
    columns: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]],
    required: bool = True,
    optional: tuple[str, ...] = (),
    optional_texts: tuple[str, ...] = (),
) -> pd.DataFrame | None:
    """``path`` read, with ``columns`` (integers, numbers, text) present and the numbers (and the
    ``optional`` ones present) numeric; the ``optional_texts`` present are read as text, as the text columns."""
    if not path.is_file():
        if required:
            raise ConfigError(f"{path.parent}: not a run directory (no {path.name})")
        return None
    _refuse_cut_short(path)
    integers, numbers, texts = columns
    try:
        # Text columns as text: one whose cells are all empty (no fill had a reason) would be float NaN.
        frame = pd.read_csv(
            path, keep_default_na=False, na_values=[""], dtype=dict.fromkeys((*texts, *optional_texts), str)
        )
    except (ValueError, pd.errors.ParserError) as exc:
        raise ConfigError(f"{path}: not a readable CSV file ({exc})") from None
    missing = [c for c in (*integers, *numbers, *texts) if c not in frame.columns]
    if missing:
        raise ConfigError(f"{path}: missing column(s) {', '.join(missing)}")
    numbers = (*numbers, *(c for c in optional if c in frame.columns))
    for column in (*integers, *numbers):
        values = frame[column]
        if values.dtype == "int64" or (values.dtype == "float64" and column in numbers):
            continue
        parsed = pd.to_numeric(values, errors="coerce")
        bad = parsed.isna() & values.notna()
        kind = "a number"
        if column in integers:
            bad |= values.isna() | (parsed % 1 != 0)
            kind = "an integer"
        if bad.any():
            row = int(bad.to_numpy().argmax())
            text = "" if pd.isna(values.iloc[row]) else values.iloc[row]
            raise ConfigError(f"{path}: line {row + 2}: {column} {text!r} is not {kind}")
        frame[column] = parsed
    return frame


def _refuse_cut_short(path: Path) -> None:
    """Refuse a run file that does not end with a whole line: every row a run writes ends with one.

    Raises
    ------
    ConfigError
        Naming the file: it ends mid-row (cut short: a run or a copy stopped while writing it).
    """
    try:
        with path.open("rb") as handle:
            if handle.seek(0, os.SEEK_END) == 0:
                return
            handle.seek(-1, os.SEEK_END)
            last = handle.read(1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({describe_os_error(exc)})") from None
    if last != b"\n":
        raise ConfigError(
            f"{path}: ends in the middle of a row (the file was cut short: a run, or a copy of it, stopped while "
            "writing it); run it again, or copy the whole file"
        )


def _metrics(path: Path) -> dict[str, Any]:
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(metrics, dict):
        raise ConfigError(f"{path}: expected a JSON object, not a {type(metrics).__name__}")
    cash = metrics.get("initial_cash")
    if cash is not None and (isinstance(cash, bool) or not isinstance(cash, int | float)):
        raise ConfigError(f"{path}: initial_cash must be a number, not {cash!r}")
    listed = metrics.get("instruments")
    if listed is not None and not (isinstance(listed, list) and all(isinstance(i, str) for i in listed)):
        raise ConfigError(f"{path}: instruments must be a list of names, not {listed!r}")
    reasons = metrics.get("null_reasons")
    if reasons is not None and not isinstance(reasons, dict):
        raise ConfigError(f"{path}: null_reasons must be an object, not {reasons!r}")
    return metrics


def _times(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    # Microseconds: the charts' times become Python datetimes, which have no nanoseconds (plotly
    # warns of each one it drops: a paper run's wall-clock samples have them).
    for column in columns:
        frame[column.replace("ts", "dt") if column != "ts" else "dt"] = pd.to_datetime(
            frame[column].astype("int64"), unit=_NS, utc=True
        ).dt.floor("us")
    return frame


def _stress(path: Path) -> list[dict[str, Any]] | None:
    if not path.is_file():
        return None
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    keys = {"variant": str, "total_return": float, "sharpe": float, "max_drawdown": float, "fills": int}
    if not isinstance(rows, list):
        raise ConfigError(f"{path}: expected a list of stress variants")
    for n, row in enumerate(rows):
        if not isinstance(row, dict) or not set(keys) <= set(row):
            raise ConfigError(f"{path}: item {n} needs the keys {', '.join(keys)}")
        for key, kind in keys.items():
            value = row[key]
            number = kind is float and isinstance(value, int)
            ok = (value is None and (key == "sharpe" or "note" in row)) or isinstance(value, kind) or number
            if not ok or isinstance(value, bool):
                raise ConfigError(f"{path}: item {n}: {key} must be a {kind.__name__}, not {value!r}")
        if not isinstance(row.get("note", ""), str):
            raise ConfigError(f"{path}: item {n}: note must be a str, not {row['note']!r}")
    return rows


def refuse_run_file(out: str | Path, run_dirs: Sequence[str | Path], allowed: str | Path | None = None) -> None:
    """Refuse to write a page to ``out`` when it is one of the :data:`RUN_FILES` of a directory in ``run_dirs``.

    Parameters
    ----------
    out
        Where the page would be written.
    run_dirs
        The run directories the page reports.
    allowed
        A run file the page may replace (a run's own ``tearsheet.html``).

    Raises
    ------
    ConfigError
        ``out`` names a file of one of the runs (whether it exists or not); the message names it.
    """
    target = Path(out)
    if target.name not in RUN_FILES or (allowed is not None and _same_entry(target, Path(allowed))):
        return
    for run_dir in map(Path, run_dirs):
        if target.absolute().parent.resolve() == run_dir.resolve():
            raise ConfigError(
                f"{target}: is the {target.name} of the run directory {run_dir}; a report never replaces a run's "
                "files: write the page elsewhere"
            )


def _same_entry(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name the same directory entry (their directories resolved, not a final symlink)."""
    return a.name == b.name and a.absolute().parent.resolve() == b.absolute().parent.resolve()


def load_run(path: str | Path) -> RunData:
    """Read the run directory ``path`` (and its ``stress.json``, if any: a list of ``{variant, total_return,
    sharpe, max_drawdown, fills}``, ``sharpe`` may be null, and every metric of an entry with a ``note``: a
    variant left out).

    Raises
    ------
    ConfigError
        ``path`` is not a run directory (no ``metrics.json``, ``equity.csv`` or ``fills.csv``; a walk-forward
        sweep's ``walk_forward/``, named as such), holds
        the ``INCOMPLETE`` marker (a daemon still writing, or a run stopped while writing: its
        ``metrics.json`` may be another run's than its rows), or one of its files cannot be read, lacks a column the reports use or holds text where a
        number belongs; the message names the file (and the line and column).
    """
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"{path}: no such run directory")
    if (path / INCOMPLETE_MARKER).exists():
        raise ConfigError(
            f"{path}: its outputs are incomplete ({INCOMPLETE_MARKER} marker: a daemon is still writing them, or a "
            "run stopped before it finished), so metrics.json may be another run's than the rows; report it once "
            "the run has stopped cleanly, or run it again"
        )
    metrics_path = path / "metrics.json"
    if not metrics_path.is_file():
        raise ConfigError(f"{path}: not a run directory (no metrics.json)")
    if (path / "folds.csv").is_file() and not (path / "fills.csv").exists():
        raise ConfigError(
            f"{path}: a walk-forward sweep's stitched test windows (folds.csv), not a run directory: its equity.csv "
            "and metrics.json chain the folds' test runs, which left no fills; for a fold's tearsheet, run tradebus "
            "backtest --report with that fold's parameters and its test window (folds.csv) as data.start and data.end"
        )
    metrics = _metrics(metrics_path)
    has_trades = (path / "trades.csv").is_file()
    equity = _times(_read_csv(path / "equity.csv", _EQUITY, optional=_EQUITY_OPTIONAL), "ts")  # type: ignore[arg-type]
    fill_columns = _FILLS if has_trades else _FILLS_MATCHED
    fills = _times(_read_csv(path / "fills.csv", fill_columns, optional=_FILLS_OPTIONAL), "ts_event")  # type: ignore[arg-type]
    fills["reason"] = fills["reason"].fillna("").astype(str)
    config_path = path / "config.yaml"
    config = _run_config(config_path) if config_path.is_file() else {}
    trades = _read_csv(path / "trades.csv", _TRADES, required=False, optional_texts=(_TRADES_STRATEGY,))
    if trades is not None and _TRADES_STRATEGY not in trades:
        trades.insert(0, _TRADES_STRATEGY, "")
    if trades is None:
        instruments = _instruments(config, config_path)
        in_kind = "fee_in_kind" in fills.columns
        records = [
            FillRecord(int(r.ts_event), str(r.instrument), str(r.side), float(r.quantity), float(r.price),
                       float(r.fee), str(r.liquidity), str(r.client_order_id), str(r.strategy_id), str(r.trade_id),
                       str(r.reason), float(r.fee_in_kind) if in_kind else 0.0)
            for r in fills.itertuples()
        ]
        trades = pd.DataFrame(
            [trade_row(t) for t in match_trades(records, {iid: inst.lot_size for iid, inst in instruments.items()},
                                                {iid: inst.contract_size for iid, inst in instruments.items()})],
            columns=list(TRADE_COLUMNS),
        )
    trades = _times(trades, "entry_ts", "exit_ts")
    for column in (_TRADES_STRATEGY, "entry_reason", "exit_reason"):
        trades[column] = trades[column].fillna("").astype(str)
    prices = _read_csv(path / "prices.csv", _PRICES, required=False)
    if prices is None:
        prices = fills[["ts_event", "instrument", "price"]].rename(columns={"ts_event": "ts"})
    attribution = _read_csv(path / "attribution.csv", _ATTRIBUTION, required=False)
    if attribution is None:
        attribution = _attribution_of(
            fills, prices, _instruments(config, config_path),
            _funding_csv(path / "funding.csv", len(fills)),
            _read_csv(path / "interest.csv", _INTEREST, required=False),
        )
    prices = _times(prices, "ts")
    return RunData(path, metrics, equity, fills, trades, prices, attribution, config, _stress(path / "stress.json"))


#: The keys of a run config's dump (:func:`~tradebus.config.load.dump_config`) before the last ones: ``data``
#: (a backtest's) or ``feeds`` and what follows (a daemon's).
_DUMP_KEYS = frozenset({"strategy", "strategies", "venue", "risk", "features", "initial_cash", "balances", "report"})


def _run_config(path: Path) -> dict[str, Any]:
    """The run's ``config.yaml`` (``{}`` when it holds no keys), refused when it is cut short.

    A run writes it whole: a YAML mapping between the lines :data:`~tradebus.reports.writers.CONFIG_HEAD` and
    :data:`~tradebus.reports.writers.CONFIG_END`, whose last keys are a backtest's ``data`` or a daemon's ``feeds``
    and what follows them. A file that is empty, does not end in a newline, begins with the first line and lacks
    the last, is no mapping, or holds the keys before those (:data:`_DUMP_KEYS`) without them was cut short after
    the run (a copy or a disk that stopped mid-way). A run written before the two lines were (no first line) is
    read as before: a cut at a line inside its last section is not seen.

    Raises
    ------
    ConfigError
        Naming ``path``: unreadable, not YAML, or cut short.
    """
    loaded = read_yaml(path, "run config")
    raw = path.read_bytes()
    lines = raw.strip().splitlines()  # blank lines and spaces an editor left after the last line are no cut
    if not lines:
        what = "is empty"
    elif not raw.endswith(b"\n"):
        what = "does not end in a newline"
    elif lines[0].rstrip() == CONFIG_HEAD.encode() and lines[-1].rstrip() != CONFIG_END.encode():
        what = f"does not end with its last line, {CONFIG_END!r}"
    elif loaded is None:
        return {}
    elif not isinstance(loaded, dict):
        what = "is no mapping of the run config's keys"
    elif _DUMP_KEYS & set(loaded) and not {"data", "feeds"} & set(loaded):
        what = "ends before the run config's data (backtest) or feeds (daemon)"
    else:
        return loaded
    raise ConfigError(f"{path}: the run config {what}: the file was cut short, so the run's outputs are incomplete; "
                      "restore it or run the run again")


def _attribution_of(
    fills: pd.DataFrame,
    prices: pd.DataFrame,
    instruments: dict[str, Instrument],
    funding: pd.DataFrame | None,
    interest: pd.DataFrame | None,
) -> pd.DataFrame:
    """The attribution of ``fills``, the ``funding`` payments and the ``interest`` charges (a directory
    without ``attribution.csv``), open positions at the last prices."""
    columns = fills.columns
    records = [
        FillRecord(int(r["ts_event"]), str(r["instrument"]), str(r["side"]), float(r["quantity"]), float(r["price"]),
                   float(r["fee"]), str(r.get("liquidity", "")), str(r.get("client_order_id", "")),
                   str(r["strategy_id"]) if "strategy_id" in columns else "", "", str(r["reason"]),
                   float(r.get("fee_in_kind", 0.0)))
        for r in fills.to_dict("records")
    ]
    last = {str(iid): float(price) for iid, price in prices.groupby("instrument", sort=False)["price"].last().items()}
    counts = [int(n) for n in funding[_FUNDING_FILLS]] if funding is not None and _FUNDING_FILLS in funding else []
    paid = [
        FundingPaid(str(r["instrument"]), float(r["quantity"]), float(r["mark_price"]), float(r["rate"]),
                    float(r["payment"]), int(r["ts_event"]), int(r["ts_event"]))
        for r in (funding.to_dict("records") if funding is not None else ())
    ]
    charged = [
        InterestCharged(str(r["asset"]), str(r["kind"]), float(r["borrowed"]), float(r["price"]),
                        float(r["annual_rate"]), float(r["interest"]), str(r["quote"]), int(r["ts_event"]),
                        int(r["ts_event"]))
        for r in (interest.to_dict("records") if interest is not None else ())
    ]
    borrowing = borrow_assets(instruments)
    lent = {asset for assets in borrowing.values() for asset in assets}
    unshared = sorted({c.asset for c in charged} - lent)
    if unshared:
        logger.warning("interest.csv: the interest charged on {} is in no row of the rebuilt attribution: no margin "
                       "spot instrument of the run's config.yaml borrows it", ", ".join(unshared))
    rows = attribute(
        records, last, {iid: inst.contract_size for iid, inst in instruments.items()}, funding=paid,
        funding_fills=counts, interest=charged, borrow_assets=borrowing,
        lot_sizes={iid: inst.lot_size for iid, inst in instruments.items()},
    )
    return pd.DataFrame(
        [(a.strategy_id, a.instrument, a.fills, a.bought, a.sold, a.position, a.avg_price, a.last_price,
          a.realized_pnl, a.unrealized_pnl, a.fees, a.funding, a.interest, a.net_pnl) for a in rows],
        columns=list(ATTRIBUTION_COLUMNS),
    )


def _funding_csv(path: Path, fills: int) -> pd.DataFrame | None:
    """``funding.csv`` (``None`` when absent), its ``fills_before`` (when present) whole numbers from 0 to ``fills``.

    Raises
    ------
    ConfigError
        A ``fills_before`` cell is not such a number; the message names the file and the line.
    """
    funding = _read_csv(path, _FUNDING, required=False, optional=(_FUNDING_FILLS,))
    if funding is None or _FUNDING_FILLS not in funding:
        return funding
    counts = funding[_FUNDING_FILLS]
    bad = ~counts.between(0, fills) | (counts % 1 != 0)
    if bad.any():
        row = int(bad.to_numpy().argmax())
        text = "" if pd.isna(counts.iloc[row]) else str(counts.iloc[row])
        raise ConfigError(
            f"{path}: line {row + 2}: {_FUNDING_FILLS} {text!r} is not a count of the {fills} fills of fills.csv"
        )
    return funding


def _instruments(config: dict[str, Any], path: Path) -> dict[str, Instrument]:
    """``instrument_id -> Instrument`` of the run config's instruments (read from ``path``), in its order.

    Only the keys the rebuilt trades and attribution use are read (:data:`_INSTRUMENT_KEYS`; the
    others take :class:`Instrument`'s defaults); an item without ``symbol`` and ``venue`` is skipped.

    Raises
    ------
    ConfigError
        One of those keys holds a value an instrument cannot have; the message names ``path``, the item and the key.
    """
    listed = config.get("instruments") or []
    if not isinstance(listed, list):
        raise ConfigError(f"{path}: instruments must be a list, not {listed!r}")
    instruments: dict[str, Instrument] = {}
    for n, item in enumerate(listed):
        if not isinstance(item, dict) or "symbol" not in item or "venue" not in item:
            continue
        try:
            inst = msgspec.convert({k: v for k, v in item.items() if k in _INSTRUMENT_KEYS}, Instrument)
        except (msgspec.ValidationError, OrderError) as exc:
            raise ConfigError(f"{path}: instruments.{n}: {exc}") from None
        instruments[inst.instrument_id] = inst
    return instruments


def buy_and_hold(run: RunData) -> tuple[float | None, dict[str, float]]:
    """Return of holding every instrument from its first to its last price (equal weights, no fees).

    Returns the portfolio's return (``None`` without prices) and each instrument's.
    """
    each: dict[str, float] = {}
    for iid, group in run.prices.groupby("instrument", sort=False):
        first, last = float(group["price"].iloc[0]), float(group["price"].iloc[-1])
        if first > 0.0 and math.isfinite(last):
            each[str(iid)] = last / first - 1.0
    total = sum(each.values()) / len(each) if each else None
    return total, each


def buy_and_hold_curve(run: RunData, initial: float) -> pd.Series | None:
    """Value at each price sample of ``initial`` split equally between the instruments and held.

    The curve of :func:`buy_and_hold`: each instrument's share is bought at its first price and
    held (no fees); an instrument with no price yet (its data starts later) keeps its share in
    cash until then, so the curve ends at ``initial * (1 + buy_and_hold(run)[0])``. ``None``
    without prices. Indexed by the samples' ``dt``.
    """
    if run.prices.empty:
        return None
    wide = run.prices.pivot_table(index="dt", columns="instrument", values="price", aggfunc="last").ffill()
    wide = wide.loc[:, [iid for iid in wide.columns if iid in buy_and_hold(run)[1]]]
    if wide.empty:
        return None
    # Each instrument's first row, not its value at its first time: a first price at a sample's time
    # has the sample's row (the last price of that time) after it.
    first = run.prices.groupby("instrument", sort=False)["price"].first()
    return (wide / first[wide.columns]).fillna(1.0).mean(axis=1) * initial
