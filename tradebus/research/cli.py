"""``tradebus research dataset|labels|cv|walkforward|lookahead|alpha``.

Every command reads a research config (:mod:`tradebus.research.config`; ``lookahead``
reads a backtest config), writes Parquet/JSON into ``--out`` (default
``runs/research/<config stem>``) and prints a summary. Files are written to a
temporary name and renamed, and only the command's own files are written. Exit codes
as ``tradebus backtest``: 2 invalid config, 3 invalid data, 1 other errors; the
lookahead command exits 4 when it finds a lookahead.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import pandas as pd
import typer
from loguru import logger
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tradebus.engine.clock import iso_ns
from tradebus.errors import ConfigError, DataError, TradebusError
from tradebus.ops.logs import setup_logging
from tradebus.reports.summary import print_titled
from tradebus.research.output import write_json

if TYPE_CHECKING:
    from tradebus.config import RunConfig

__all__ = ["research_app"]

research_app = typer.Typer(
    help="Research: datasets, labels, purged CV, walk-forward retraining, lookahead checks, alpha reports.",
    no_args_is_help=True,
)

@research_app.callback()
def _logging(
    log_level: Annotated[str, typer.Option(help="Log level on stderr (DEBUG, INFO, WARNING, ...).")] = "WARNING",
) -> None:
    from tradebus.cli import check_log_level  # the CLI module imports this one

    setup_logging(check_log_level(log_level))


ConfigArg = Annotated[Path, typer.Argument(help="Research config (YAML).", show_default=False)]
OutOption = Annotated[Path | None, typer.Option("--out", "-o", help="Output directory.", show_default="runs/research/<stem>")]

_EXIT = ((ConfigError, 2), (DataError, 3), (TradebusError, 1))
#: Exit code of ``lookahead`` when a lookahead was found.
LOOKAHEAD_FOUND = 4


def _fail(exc: TradebusError, config: Path | None = None) -> None:
    """Print ``exc`` and exit with its code; a config error, or its window's, names ``config`` if it does not yet."""
    from tradebus.research.dataset import EmptyWindow

    code = next(code for cls, code in _EXIT if isinstance(exc, cls))
    message = str(exc)
    if config is not None and isinstance(exc, ConfigError | EmptyWindow) and not message.startswith(str(config)):
        message = f"{config}: {message}"
    Console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _out_path(out: Path | None, config: Path) -> Path:
    """The output directory, checked to be one the run can create or write into; nothing is created.

    A command whose config is refused leaves no directory behind, and a path that cannot be a
    directory fails before a long run.
    """
    path = out if out is not None else Path("runs") / "research" / config.stem
    existing = path.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        _fail(ConfigError(f"--out {path}: cannot create the output directory ({os.strerror(errno.ENOTDIR)}: "
                          f"{existing})"))
    if not os.access(existing, os.W_OK | os.X_OK):
        _fail(ConfigError(f"--out {path}: cannot create the output directory ({os.strerror(errno.EACCES)}: "
                          f"{existing})"))
    return path


def _out_dir(out: Path | None, config: Path) -> Path:
    path = out if out is not None else Path("runs") / "research" / config.stem
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _fail(ConfigError(f"--out {path}: cannot create the output directory ({exc.strerror})"))
    return path


def _progress(console: Console) -> Progress:
    """A transient progress bar (drawn only on a terminal)."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True, disable=not console.is_terminal)


def _table(rows: dict[str, Any], title: str | None = None) -> Table:
    table = Table(title=title, show_header=False)
    for key, value in rows.items():
        table.add_row(escape(key), f"{value:,.6g}" if isinstance(value, float) else escape(str(value)))
    return table


# ---------------------------------------------------------------------------- shared steps


def _window_bars(dataset: Any, source: Any) -> tuple[pd.DataFrame, int, tuple[int, int] | None]:
    """A source's bars before ``dataset.end_ns``, the position of its first bar in the window and its data span."""
    from tradebus.research.dataset import load_events, window_bounds

    kind, bars = load_events(dataset.catalog, source.dataset)
    if kind != "bars":
        raise ConfigError(f"{source.dataset} holds {kind}; labels and forward returns are built on bars")
    ts = bars["ts_event"].to_numpy()
    lo, hi = window_bounds(ts, dataset.start_ns, dataset.end_ns)
    span = (int(ts[0]), int(ts[-1])) if len(ts) else None
    return bars.iloc[:hi], lo, span


def _check_horizons(horizons: list[int], longest: int, field: str) -> None:
    """Refuse a horizon that no row of the window can reach (its forward returns would all be NaN)."""
    for h in horizons:
        if h > longest:
            raise ConfigError(f"{field}: a horizon of {h} bars is longer than the data: no row has "
                              f"a bar {h} bars later (the longest horizon with a value is {max(longest, 0)} bars)")


def _labels(config: Any, dataset: Any) -> pd.DataFrame:
    """Labels of the events in every source's window, stacked in time order (``instrument`` column first).

    Only bars before ``dataset.end_ns`` are read: a label that needs later bars is incomplete
    (triple barrier: ``complete`` False, ``label`` null, ``ret`` NaN) or NaN (forward). Bars before
    ``dataset.start_ns`` warm up the volatility and the CUSUM filter but carry no label (nor set
    ``clip_quantile``'s bounds).
    """
    from tradebus.research.dataset import empty_window
    from tradebus.research.labels import (
        average_uniqueness,
        clip_forward_returns,
        cusum_events,
        forward_returns,
        mark_incomplete,
        triple_barrier,
        volatility,
    )

    lab = config.labels
    frames = []
    spans: dict[str, tuple[int, int] | None] = {}
    longest = 0
    vol_ready = 0  # window bars with a barrier width, over every source
    for source in dataset.sources:
        bars, lo, spans[f"{source.instrument} ({source.dataset})"] = _window_bars(dataset, source)
        if lo >= len(bars):
            continue
        longest = max(longest, len(bars) - 1 - lo)
        try:
            if lab.method == "forward":
                out = forward_returns(bars, lab.horizons, lab.kind).iloc[lo:].reset_index(drop=True)
                if lab.clip_quantile is not None:  # by the window's rows only
                    out = clip_forward_returns(out, lab.horizons, lab.clip_quantile)
            else:
                vol = volatility(bars, lab.vol_method, lab.vol_span)
                vol_ready += int((vol[lo:] > 0).sum())
                if lab.cusum is not None:
                    events = cusum_events(bars["close"].to_numpy(), lab.cusum * vol)
                    events = events[events >= lo]
                else:
                    events = np.arange(lo, len(bars))
                out = triple_barrier(bars, events, width=vol, pt=lab.pt, sl=lab.sl, max_bars=lab.max_bars,
                                     side=float(lab.side), tie_break=lab.tie_break)
                out["uniqueness"] = average_uniqueness(out["index"].to_numpy(), out["end_index"].to_numpy(), len(bars))
                out = mark_incomplete(out)
        except DataError as exc:
            raise DataError(f"{source.instrument} ({source.dataset}): {exc}") from None
        out.insert(0, "instrument", source.instrument)
        frames.append(out)
    if not frames:
        raise empty_window(dataset, spans)
    if lab.method == "forward":
        _check_horizons(lab.horizons, longest, "labels.horizons")
    elif sum(len(f) for f in frames) == 0:
        # an empty labels.parquet would pass for a result
        if vol_ready == 0:
            raise ConfigError(f"labels.vol_span: the {lab.vol_method} volatility of span {lab.vol_span} is ready "
                              f"at no bar of the window (at most {longest + 1} bars): no event has a barrier width; "
                              "use a shorter vol_span")
        raise ConfigError(f"labels.cusum: a CUSUM threshold of {lab.cusum} x volatility samples no event in the window")
    return pd.concat(frames, ignore_index=True).sort_values("ts_event", kind="stable").reset_index(drop=True)


def _splitter(cv: Any, t0: np.ndarray, t1: np.ndarray) -> Any:
    from tradebus.research.splitters import CombinatorialPurgedCV, PurgedKFold, PurgedWalkForward

    if cv.method == "kfold":
        return PurgedKFold(cv.n_splits, t0=t0, t1=t1, embargo=cv.embargo)
    if cv.method == "cpcv":
        return CombinatorialPurgedCV(cv.n_splits, cv.n_test_folds, t0=t0, t1=t1, embargo=cv.embargo)
    test_size = cv.test_size or max(len(t0) // (cv.n_splits + 1), 1)
    expanding = cv.expanding if cv.expanding is not None else cv.train_size is None
    return PurgedWalkForward(test_size, t0=t0, t1=t1, train_size=cv.train_size, n_splits=cv.n_splits,
                             expanding=expanding, gap=cv.gap, embargo=cv.embargo)


# ---------------------------------------------------------------------------- commands


@research_app.command()
def dataset(config: ConfigArg, out: OutOption = None) -> None:
    """Build the feature dataset (the bank's values, batch = live) and write dataset.parquet."""
    from tradebus.research.config import load_research_config
    from tradebus.research.dataset import build_dataset, write_parquet

    console = Console()
    try:
        _, ds = load_research_config(config)
        with console.status("building dataset"):
            frame = build_dataset(ds)
        path = write_parquet(frame, _out_dir(out, config) / "dataset.parquet")
    except TradebusError as exc:
        _fail(exc, config)
    ready = int((~frame.iloc[:, 2:].isna().any(axis=1)).sum())
    rows = {"rows": len(frame), "columns": frame.shape[1] - 2, "rows with every feature ready": ready,
            "instruments": frame["instrument"].nunique()}
    print_titled(console, f"dataset -> {path}", _table(rows))


@research_app.command()
def labels(config: ConfigArg, out: OutOption = None) -> None:
    """Build labels (forward returns, or triple barrier with uniqueness weights and optional CUSUM sampling).

    labels.parquet, triple barrier (one row per event): instrument, ts_event (the event's bar), t1 (the bar that ended the label), index and end_index (those bars' positions among the source's catalog bars, the warm-up before dataset.start_ns included: not dataset.parquet rows; join by instrument and ts_event), side, ret, label, barrier (+1 profit, -1 stop, 0 vertical), pt_width, sl_width, complete, uniqueness. Forward: instrument, ts_event, then fwd_<h> and t1_<h> per horizon (NaN and -1 past the data or window).
    """
    from tradebus.research.config import load_research_config
    from tradebus.research.dataset import write_parquet

    console = Console()
    try:
        cfg, ds = load_research_config(config)
        with console.status("labelling"):
            frame = _labels(cfg, ds)
        path = write_parquet(frame, _out_dir(out, config) / "labels.parquet")
    except TradebusError as exc:
        _fail(exc, config)
    summary: dict[str, Any] = {"rows": len(frame), "method": cfg.labels.method}
    if "label" in frame.columns:
        counts = frame["label"].value_counts().to_dict()
        summary.update({f"label {k}": v for k, v in sorted(counts.items())})
        summary["complete"] = int(frame["complete"].sum())
        summary["incomplete (label null)"] = int((~frame["complete"]).sum())
    print_titled(console, f"labels -> {path}", _table(summary))


@research_app.command()
def cv(config: ConfigArg, out: OutOption = None) -> None:
    """Generate the purged splits over the labels and write cv.json (sizes and time ranges per split).

    Per split (times in epoch ns, each with its ISO-8601 UTC text beside it as <name>_time): test_start and test_last, the first and last test sample's time; test_end, the latest end of the test samples' labels (after test_last: a label ends when its return is known); with cpcv, test_groups, the groups tested (test_start..test_end then spans the training groups between them).

    cv.embargo (samples, or a fraction < 1 of them): kfold and cpcv drop that many training samples after each test fold's labels end; walkforward, whose training precedes its test window, drops the last that many training samples purging kept before each test window. purged_or_embargoed counts the training candidates (walkforward: the training window) removed by purging or embargo.
    """
    from tradebus.research.config import load_research_config
    from tradebus.research.labels import forward_label_end

    console = Console()
    try:
        cfg, ds = load_research_config(config)
        frame = _labels(cfg, ds)
        if "t1" not in frame.columns:
            end = forward_label_end(frame, cfg.labels.horizons)
            frame = frame.assign(t1=end)[end >= 0]
        elif "complete" in frame.columns:
            frame = frame[frame["complete"]]
        t0, t1 = frame["ts_event"].to_numpy(), frame["t1"].to_numpy()
        splitter = _splitter(cfg.cv, t0, t1)
        splits = []
        try:
            # a walk-forward trains on its training window: the samples outside it are not removed
            windows = splitter.train_windows(len(t0)) if cfg.cv.method == "walkforward" else None
            for k, (train, test) in enumerate(splitter.split(np.zeros(len(t0)))):
                candidates = len(t0) - len(test) if windows is None else windows[k][1] - windows[k][0]
                times = {"test_start": int(t0[test[0]]), "test_last": int(t0[test[-1]]), "test_end": int(t1[test].max())}
                split = {"split": k, "train": len(train), "test": len(test), **times,
                         **{f"{name}_time": iso_ns(ns) for name, ns in times.items()},
                         "purged_or_embargoed": int(candidates - len(train))}
                if cfg.cv.method == "cpcv":
                    split["test_groups"] = splitter.test_set_index[k].tolist()
                splits.append(split)
        except ConfigError as exc:
            raise ConfigError(f"{config}: cv: {exc}") from None
        payload: dict[str, Any] = {"method": cfg.cv.method, "samples": len(t0), "splits": splits}
        if cfg.cv.method == "cpcv":
            payload["n_test_paths"] = splitter.n_test_paths
            payload["recombined_paths"] = splitter.recombined_paths.tolist()
        path = write_json(payload, _out_dir(out, config) / "cv.json")
    except TradebusError as exc:
        _fail(exc, config)
    table = Table()
    for col in ("split", "train", "test", "purged_or_embargoed"):
        table.add_column(col, justify="right")
    for s in splits:
        table.add_row(*(str(s[c]) for c in ("split", "train", "test", "purged_or_embargoed")))
    print_titled(console, f"cv ({cfg.cv.method}) -> {path}", table)


@research_app.command()
def walkforward(config: ConfigArg, out: OutOption = None) -> None:
    """Retrain the model every N bars on purged past data, trade each next segment on the kernel."""
    from tradebus.research.config import load_research_config, make_estimator
    from tradebus.research.dataset import write_parquet
    from tradebus.research.labels import known_returns
    from tradebus.research.walkforward import walk_forward

    console = Console()
    try:
        cfg, ds = load_research_config(config)
        if cfg.model is None or cfg.walkforward is None:
            raise ConfigError(f"{config}: walkforward needs the 'model' and 'walkforward' sections")
        wf = cfg.walkforward
        instrument = wf.instrument.to_instrument()
        # load_research_config checked that walkforward.instrument is one of the sources
        k, source = next((k, s) for k, s in enumerate(ds.sources) if s.instrument == instrument.instrument_id)
        others = [s.instrument for s in ds.sources if s is not source]
        if others:
            logger.warning("{}: walkforward trains and trades dataset.sources[{}] ({}, walkforward.instrument) alone; "
                           "the other {} source(s) ({}) are left out", config, k, source.instrument, len(others),
                           ", ".join(others))
        # the bars before the window warm up the features and are not traded
        bars, lo, _ = _window_bars(ds, source)
        # walk_forward clips each segment's labels by its training rows: whole-sample bounds would know the future
        unclipped = cfg.model_copy(update={"labels": cfg.labels.model_copy(update={"clip_quantile": None})})
        frame = _labels(unclipped, ds.model_copy(update={"sources": [source]}))
        if lo + wf.min_train >= len(bars):
            raise ConfigError(f"{config}: walkforward.min_train {wf.min_train} leaves no bar to trade: "
                              f"{source.dataset} has {len(bars) - lo} bars in the dataset window")
        ret = np.full(len(bars), np.nan)
        t1 = np.full(len(bars), -1, dtype=np.int64)
        if "ret" in frame.columns:
            # ModelSignal goes long on a high output: train on the price's direction, a short label's return negated
            ret[frame["index"].to_numpy()] = known_returns(frame) * frame["side"].to_numpy()
            t1[frame["index"].to_numpy()] = frame["t1"].to_numpy()
        else:
            h = wf.horizon if wf.horizon is not None else cfg.labels.horizons[-1]
            ret[lo:], t1[lo:] = frame[f"fwd_{h}"].to_numpy(), frame[f"t1_{h}"].to_numpy()
        with _progress(console) as progress:
            task = progress.add_task("walk-forward: training", total=None)
            step = lambda done, total: progress.update(task, completed=done, total=total)  # noqa: E731
            result = walk_forward(bars, instrument, ds.features, cfg.model.columns, ret, t1,
                                  make_estimator(cfg.model), retrain_every=wf.retrain_every,
                                  retrain_every_ns=wf.retrain_every_ns,
                                  min_train=lo + wf.min_train, quantity=wf.quantity, upper=wf.upper, lower=wf.lower,
                                  mode=wf.mode, venue=wf.venue, initial_cash=wf.initial_cash, seed=wf.seed,
                                  clip_quantile=cfg.labels.clip_quantile, on_segment=step)
        target = _out_dir(out, config)
        write_parquet(result.segments, target / "walkforward_segments.parquet")
        write_parquet(result.equity, target / "walkforward_equity.parquet")
        write_parquet(result.fills, target / "walkforward_fills.parquet")
        summary = result.summary()
        write_json({"summary": summary, "segments": result.segments.to_dict(orient="records")},
                    target / "walkforward.json")
    except TradebusError as exc:
        _fail(exc, config)
    print_titled(console, f"walk-forward -> {target}", _table(summary))


@research_app.command()
def lookahead(
    config: Annotated[Path, typer.Argument(help="Backtest config (YAML).", show_default=False)],
    cuts: Annotated[int, typer.Option(help="Number of random cut times.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the cuts and perturbations.")] = 0,
    out: OutOption = None,
) -> None:
    """Perturb the data after random cuts and report any feature, model output or decision that changed before."""
    from tradebus.research.lookahead import MAX_PER_CUT, check_config

    console = Console()
    try:
        with _progress(console) as progress:
            task = progress.add_task("lookahead: runs", total=cuts + 1)
            report = check_config(config, n_cuts=cuts, seed=seed, on_run=lambda: progress.advance(task))
        path = write_json(report.to_dict(), _out_dir(out, config) / "lookahead.json")
    except TradebusError as exc:
        _fail(exc, config)
    rows = {"cuts": len(report.cuts), "records checked": report.records_checked,
            f"violations (the first {MAX_PER_CUT} a cut)": len(report.violations)}
    print_titled(console, f"lookahead -> {path}", _table(rows))
    if not report.ok:
        first = report.violations[0]
        console.print("[bold red]lookahead:[/] " + escape(f"{first['kind']} at {iso_ns(first['ts'])} ({first['key']}) "
                                                          f"changed when data after {iso_ns(first['cut'])} changed"),
                      highlight=False)
        raise typer.Exit(LOOKAHEAD_FOUND)


@research_app.command()
def alpha(
    config: ConfigArg,
    backtest: Annotated[Path | None, typer.Option(help="Backtest config for PSR, Monte Carlo and cost stress.")] = None,
    trials: Annotated[int, typer.Option(min=1, help="Number of strategy variants tried (deflated Sharpe).")] = 1,
    out: OutOption = None,
) -> None:
    """IC per horizon, ICIR, decay, turnover, quantile returns; with --backtest: PSR/DSR, Monte Carlo, cost stress."""
    from tradebus.research import alpha as reports
    from tradebus.research.config import load_research_config
    from tradebus.research.dataset import build_dataset
    from tradebus.research.labels import forward_returns

    from tradebus.config import load_config

    console = Console()
    try:
        cfg, ds = load_research_config(config)
        if cfg.alpha is None:
            raise ConfigError(f"{config}: alpha needs the 'alpha' section")
        run_config = None if backtest is None else load_config(backtest)  # its strategy params too, before any data
        with console.status("alpha: features and forward returns"):
            frame = build_dataset(ds)
            # forward returns read no bar at or after the window's end
            windows = [_window_bars(ds, s) for s in ds.sources]
            _check_horizons(cfg.alpha.horizons, max(len(bars) - 1 - lo for bars, lo, _ in windows), "alpha.horizons")
            fwd = pd.concat([forward_returns(bars, cfg.alpha.horizons).assign(instrument=s.instrument)
                             for s, (bars, _, _) in zip(ds.sources, windows, strict=True)], ignore_index=True)
            # bars sharing a time (threshold bars) are told apart by their position among them, in file order
            key = ["instrument", "ts_event"]
            nth = {"nth": lambda f: f.groupby(key, observed=True).cumcount()}
            merged = frame.assign(**nth).merge(fwd.assign(**nth), on=[*key, "nth"], how="left").drop(columns="nth")
        by = merged["ts_event"] if len(ds.sources) > 1 else None
        instrument = merged["instrument"] if by is not None else None
        payload: dict[str, Any] = {"factors": {}}
        for factor in cfg.alpha.factors:
            forwards = {h: merged[f"fwd_{h}"] for h in cfg.alpha.horizons}
            try:
                ic = reports.ic_summary(merged[factor], forwards, by, cfg.alpha.period, instrument)
                buckets = reports.quantile_returns(merged[factor], merged[f"fwd_{cfg.alpha.horizons[0]}"],
                                                   cfg.alpha.quantiles)
            except ConfigError as exc:
                raise ConfigError(f"{config}: {exc} (factor {factor!r})") from None
            except DataError as exc:
                raise DataError(f"{config}: {exc} (factor {factor!r})") from None
            report: dict[str, Any] = {"ic": ic.to_dict(orient="records")}
            try:
                report["turnover"] = reports.factor_turnover(merged[factor], by=by, instrument=instrument)
            except DataError as exc:  # the IC and quantiles stand without it
                report.update(turnover=None, turnover_undefined=str(exc))
                logger.warning("{}: factor {!r}: {}", config, factor, exc)
            payload["factors"][factor] = {**report, "quantile_returns": buckets.to_dict(orient="records")}
        if backtest is not None and run_config is not None:
            payload["backtest"] = _backtest_robustness(backtest, run_config, trials)
        path = write_json(payload, _out_dir(out, config) / "alpha.json")
    except TradebusError as exc:
        _fail(exc, config)
    table = Table()
    for col in ("factor", "horizon", "IC", "ICIR", "n"):
        table.add_column(col, justify="right")
    for factor, rep in payload["factors"].items():
        for row in rep["ic"]:
            table.add_row(factor, str(row["horizon"]), f"{row['ic_mean']:.4f}", f"{row['icir']:.3f}", str(row["n"]))
    print_titled(console, f"alpha -> {path}", table)
    if "backtest" in payload:
        console.print(_table(_robustness_rows(payload["backtest"]), "backtest robustness"))


def _robustness_rows(report: dict[str, Any]) -> dict[str, Any]:
    """The summary lines of ``alpha.json``'s ``backtest`` (every figure, intervals on one line)."""
    rows: dict[str, Any] = {k: v for k, v in report.items() if not isinstance(v, (dict, list))}
    for name, ci in report["bootstrap"].items():
        rows[f"bootstrap {name}"] = f"{ci['estimate']:.4g} (95 % interval {ci['ci_low']:.4g} to {ci['ci_high']:.4g})"
    shuffle = report["trade_shuffle"]
    rows["trade shuffle max drawdown"] = (
        f"observed {shuffle['observed_max_drawdown']:.4g}, median {shuffle['median_max_drawdown']:.4g}, "
        f"p95 {shuffle['p95_max_drawdown']:.4g}"
    )
    for row in report["cost_stress"]:
        sharpe = row["sharpe"]
        rows[f"costs x{row['multiplier']:g}"] = (
            f"return {row['total_return']:.4g}, sharpe {'-' if sharpe is None else format(sharpe, '.4g')}, "
            f"max drawdown {row['max_drawdown']:.4g}, fills {row['fills']}"
        )
    return rows


def _backtest_robustness(config: Path, run_config: RunConfig, trials: int) -> dict[str, Any]:
    """PSR/DSR, bootstrap, trade shuffle and cost stress of the backtest ``config`` (loaded as ``run_config``)."""
    from tradebus.cli import build_kernel, build_replay
    from tradebus.reports.metrics import daily_returns, periods_per_year
    from tradebus.research import alpha as reports

    kernel = build_kernel(run_config)
    result = kernel.run(build_replay(run_config))
    equity = np.array([e.equity for e in result.equity])
    returns = equity[1:] / equity[:-1] - 1.0
    realised = _round_trip_pnl(result, {iid: inst.contract_size for iid, inst in kernel.instruments.items()})
    out: dict[str, Any] = {"probabilistic_sharpe": reports.probabilistic_sharpe_ratio(returns)}
    if trials > 1:
        # without the trials' own Sharpe ratios, their spread is taken as the estimator's
        # sampling variance under the null, 1 / (n - 1)
        out["deflated_sharpe"] = reports.deflated_sharpe_ratio(returns, n_trials=trials,
                                                                sr_variance=1.0 / max(len(returns) - 1, 1))
    # The Sharpe ratio of metrics.json (and of cost_stress): daily returns, annualised by their periods a year.
    daily = np.array(daily_returns(result.equity, result.initial_cash))
    out["bootstrap"] = reports.bootstrap_ci(daily, periods_per_year=periods_per_year(result.equity))
    out["trade_shuffle"] = reports.trade_shuffle(realised, run_config.initial_cash)
    out["cost_stress"] = reports.cost_stress(config).to_dict(orient="records")
    return out


def _round_trip_pnl(result: Any, contract_sizes: dict[str, float] | None = None) -> np.ndarray:
    """Realised PnL per fill, fees included: the attribution's average-cost accounting per instrument.

    A price move is worth ``contract_sizes[instrument]`` (1 when not given) per unit of quantity.
    """
    from tradebus.reports.attribution import Attribution

    sizes = contract_sizes or {}
    books: dict[str, Attribution] = {}
    pnl = []
    for f in result.fills:
        book = books.get(f.instrument_id)
        if book is None:
            book = books[f.instrument_id] = Attribution("", f.instrument_id, multiplier=sizes.get(f.instrument_id, 1.0))
        before = book.realized_pnl
        book.add_fill(1 if f.side == "BUY" else -1, f.quantity, f.price, f.fee)
        pnl.append(book.realized_pnl - before - f.fee)
    return np.asarray(pnl, dtype=np.float64)


from tradebus.research.systems import run as _run_system  # noqa: E402  (the registry imports this module lazily)

research_app.command("run")(_run_system)
